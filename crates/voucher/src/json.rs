//! The JSON form of a voucher: one object whose members are the header fields in order,
//! every value a string, and `DetailList` an array of detail objects.
//!
//! ```json
//! {"AdmDivCode":"430000","StYear":"2025","VtCode":"5201","PayAmt":"100.00",
//!  "DetailList":[{"Id":"1","PayAmt":"100.00"}]}
//! ```
//! Amounts stay strings: JSON numbers are floating point.

use serde_json::{Map, Value};

use crate::error::DecodeError;
use crate::limits::Limits;
use crate::model::{Fields, Voucher, is_field_name};

fn json_error(message: impl Into<String>) -> DecodeError {
    DecodeError::Json(message.into())
}

fn record_to_json(fields: &Fields) -> Map<String, Value> {
    fields
        .iter()
        .map(|(n, v)| (n.to_owned(), Value::String(v.to_owned())))
        .collect()
}

/// The voucher as a JSON value.
pub fn to_json_value(voucher: &Voucher) -> Value {
    let mut object = record_to_json(&voucher.header);
    object.insert(
        "DetailList".into(),
        Value::Array(
            voucher
                .details
                .iter()
                .map(|d| Value::Object(record_to_json(d)))
                .collect(),
        ),
    );
    Value::Object(object)
}

/// The voucher as pretty-printed JSON text.
pub fn write_json(voucher: &Voucher) -> String {
    let mut text = serde_json::to_string_pretty(&to_json_value(voucher))
        .expect("a map of strings always serializes");
    text.push('\n');
    text
}

fn record_from_json(
    object: &Map<String, Value>,
    record: &str,
    limits: &Limits,
    details: Option<&mut Vec<Fields>>,
) -> Result<Fields, DecodeError> {
    if object.len() > limits.max_fields + 1 {
        return Err(DecodeError::TooMany {
            what: "fields in one record",
            limit: limits.max_fields,
        });
    }
    let mut fields = Fields::new();
    let mut details = details;
    for (name, value) in object {
        if name == "DetailList" {
            let list = details
                .as_deref_mut()
                .ok_or_else(|| json_error(format!("{record}: DetailList inside a detail")))?;
            let items = value
                .as_array()
                .ok_or_else(|| json_error("DetailList must be an array of objects"))?;
            if items.len() > limits.max_details {
                return Err(DecodeError::TooMany {
                    what: "details in one voucher",
                    limit: limits.max_details,
                });
            }
            for (i, item) in items.iter().enumerate() {
                let record = format!("Detail[{}]", i + 1);
                let object = item
                    .as_object()
                    .ok_or_else(|| json_error(format!("{record} must be an object")))?;
                list.push(record_from_json(object, &record, limits, None)?);
            }
            continue;
        }
        if !is_field_name(name) {
            return Err(DecodeError::BadFieldName { name: name.clone() });
        }
        let text = value.as_str().ok_or_else(|| {
            json_error(format!(
                "{record}.{name} must be a string (amounts too: \"100.00\"), found {value}"
            ))
        })?;
        if text.len() > limits.max_field_bytes {
            return Err(DecodeError::FieldTooLong {
                field: name.clone(),
                limit: limits.max_field_bytes,
            });
        }
        fields.set(name.clone(), text);
    }
    Ok(fields)
}

/// Reads one voucher from its JSON object.
pub fn voucher_from_json_value(value: &Value, limits: &Limits) -> Result<Voucher, DecodeError> {
    let object = value
        .as_object()
        .ok_or_else(|| json_error("a voucher is a JSON object"))?;
    let mut details = Vec::new();
    let header = record_from_json(object, "Voucher", limits, Some(&mut details))?;
    Ok(Voucher { header, details })
}

/// Reads JSON text holding one voucher object or an array of them.
pub fn parse_json(bytes: &[u8], limits: &Limits) -> Result<Vec<Voucher>, DecodeError> {
    if bytes.len() > limits.max_input_bytes {
        return Err(DecodeError::TooLarge {
            len: bytes.len(),
            limit: limits.max_input_bytes,
        });
    }
    // serde_json refuses nesting deeper than 128 levels and duplicate-free maps are not
    // required by JSON, so a repeated key keeps its last value, as JSON parsers do.
    let value: Value = serde_json::from_slice(bytes).map_err(|e| json_error(e.to_string()))?;
    match &value {
        Value::Array(items) => {
            if items.len() > limits.max_vouchers {
                return Err(DecodeError::TooMany {
                    what: "vouchers in one document",
                    limit: limits.max_vouchers,
                });
            }
            items
                .iter()
                .map(|item| voucher_from_json_value(item, limits))
                .collect()
        }
        _ => Ok(vec![voucher_from_json_value(&value, limits)?]),
    }
}
