//! Reading request bodies and queries so that every broken rule is reported at once.
//!
//! Bodies are parsed as JSON values and read field by field (serde's derive would stop at
//! the first error). Rules, by their stable code: `required`, `type`, `unknown_field`,
//! `format`, `positive`, `range`, `too_long`, `control_character`, `unknown_unit`,
//! `duplicate`.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use guoku_domain::{AccountNo, Amount, TextError, check_text};
use serde_json::{Map, Value};

use super::error::{ApiError, ErrorCode, FieldProblem};

/// The body's bytes, or why there are none.
pub(crate) fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(ErrorCode::BodyTooLarge)
        } else {
            ApiError::new(ErrorCode::MalformedRequest).with_detail(e.body_text())
        }
    })
}

/// The body as a JSON object (an empty body is an empty object).
pub(crate) fn json_object(bytes: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::new(ErrorCode::MalformedRequest)
            .with_message("the body must be a JSON object")),
        Err(e) => Err(ApiError::new(ErrorCode::MalformedRequest)
            .with_message(format!("the body is not JSON: {e}"))),
    }
}

/// Collects the problems of one request.
#[derive(Debug, Default)]
pub(crate) struct Problems(pub Vec<FieldProblem>);

impl Problems {
    pub fn push(&mut self, field: &str, rule: &str, message: impl Into<String>) {
        self.0.push(FieldProblem::new(field, rule, message));
    }

    /// `Ok(())` when nothing broke, else `invalid_request` listing everything.
    pub fn finish(self) -> Result<(), ApiError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ApiError::invalid(self.0))
        }
    }

    /// Fields of `object` not in `allowed` (under `prefix`).
    pub fn unknown_fields(&mut self, object: &Map<String, Value>, allowed: &[&str], prefix: &str) {
        for name in object.keys() {
            if !allowed.contains(&name.as_str()) {
                self.push(
                    &format!("{prefix}{name}"),
                    "unknown_field",
                    format!("unknown field; expected one of {}", allowed.join(", ")),
                );
            }
        }
    }

    /// A required, non-blank string of at most `max_gbk` GBK bytes, trimmed.
    pub fn text(
        &mut self,
        object: &Map<String, Value>,
        name: &str,
        path: &str,
        max_gbk: usize,
    ) -> Option<String> {
        match object.get(name) {
            None | Some(Value::Null) => {
                self.push(path, "required", "required");
                None
            }
            Some(Value::String(s)) => {
                let s = s.trim();
                if s.is_empty() {
                    self.push(path, "required", "must not be empty");
                    return None;
                }
                match check_text(s, max_gbk) {
                    Ok(()) => Some(s.to_owned()),
                    Err(TextError::TooLong { len, max }) => {
                        self.push(
                            path,
                            "too_long",
                            format!("{len} GBK bytes, at most {max} allowed"),
                        );
                        None
                    }
                    Err(e @ TextError::Control(_)) => {
                        self.push(path, "control_character", e.to_string());
                        None
                    }
                }
            }
            Some(_) => {
                self.push(path, "type", "must be a string");
                None
            }
        }
    }

    /// A required positive amount in the standard's yuan text (`1234.50`: digits, a point
    /// and exactly two decimals; never a number, never an exponent).
    pub fn amount(
        &mut self,
        object: &Map<String, Value>,
        name: &str,
        path: &str,
    ) -> Option<Amount> {
        match object.get(name) {
            None | Some(Value::Null) => {
                self.push(path, "required", "required");
                None
            }
            Some(Value::String(s)) => match s.parse::<Amount>() {
                Ok(a) if a.is_positive() => Some(a),
                Ok(_) => {
                    self.push(path, "positive", "must be more than 0.00");
                    None
                }
                Err(_) => {
                    self.push(
                        path,
                        "format",
                        "yuan as text with exactly two decimals, e.g. \"1234.50\"",
                    );
                    None
                }
            },
            Some(_) => {
                self.push(
                    path,
                    "type",
                    "must be a string of yuan with two decimals, e.g. \"1234.50\" (never a number)",
                );
                None
            }
        }
    }

    /// A required account number (`[0-9A-Z-]{1,32}`).
    pub fn account(
        &mut self,
        object: &Map<String, Value>,
        name: &str,
        path: &str,
    ) -> Option<String> {
        let text = self.text(object, name, path, 32)?;
        match text.parse::<AccountNo>() {
            Ok(_) => Some(text),
            Err(_) => {
                self.push(path, "format", "1 to 32 digits, capital letters or '-'");
                None
            }
        }
    }

    /// A required whole number in `range`.
    pub fn integer(
        &mut self,
        object: &Map<String, Value>,
        name: &str,
        path: &str,
        range: std::ops::RangeInclusive<u64>,
    ) -> Option<u64> {
        match object.get(name) {
            None | Some(Value::Null) => {
                self.push(path, "required", "required");
                None
            }
            Some(Value::Number(n)) => match n.as_u64() {
                Some(v) if range.contains(&v) => Some(v),
                _ => {
                    self.push(
                        path,
                        "range",
                        format!("a whole number from {} to {}", range.start(), range.end()),
                    );
                    None
                }
            },
            Some(_) => {
                self.push(path, "type", "must be a whole number");
                None
            }
        }
    }

    /// A required object.
    pub fn object<'v>(
        &mut self,
        object: &'v Map<String, Value>,
        name: &str,
        path: &str,
    ) -> Option<&'v Map<String, Value>> {
        match object.get(name) {
            None | Some(Value::Null) => {
                self.push(path, "required", "required");
                None
            }
            Some(Value::Object(m)) => Some(m),
            Some(_) => {
                self.push(path, "type", "must be an object");
                None
            }
        }
    }
}

/// Query parameters, each at most once, none unknown.
pub(crate) struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    /// Checks `pairs` against `allowed`: duplicates and unknown names are problems.
    pub fn new(pairs: Vec<(String, String)>, allowed: &[&str], problems: &mut Problems) -> Self {
        let mut seen: Vec<&str> = Vec::new();
        for (name, _) in &pairs {
            if !allowed.contains(&name.as_str()) {
                problems.push(
                    name,
                    "unknown_field",
                    format!(
                        "unknown query parameter; expected one of {}",
                        allowed.join(", ")
                    ),
                );
            } else if seen.contains(&name.as_str()) {
                problems.push(name, "duplicate", "given more than once");
            } else {
                seen.push(name);
            }
        }
        Self { pairs }
    }

    /// The value of `name`, if given.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// A whole number, `default` when absent.
    pub fn number(
        &self,
        name: &str,
        default: u64,
        range: std::ops::RangeInclusive<u64>,
        problems: &mut Problems,
    ) -> Option<u64> {
        let Some(text) = self.get(name) else {
            return Some(default);
        };
        match text.parse::<u64>() {
            Ok(v) if range.contains(&v) => Some(v),
            _ => {
                problems.push(
                    name,
                    "range",
                    format!("a whole number from {} to {}", range.start(), range.end()),
                );
                None
            }
        }
    }
}
