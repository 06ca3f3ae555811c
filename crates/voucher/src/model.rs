//! The voucher as data: ordered header fields and detail records of text values.
//!
//! A voucher is kept as text, exactly as it was written, because signatures cover text.
//! Typed meaning (amounts, codes, dates) comes from the registry during validation.

use std::fmt;

/// Whether `name` can be a field's name: the standard's names are ASCII XML names
/// (`PayAmt`, `XPayDate`, `Hold1`). Checking it on every way in keeps a name from JSON
/// from breaking the XML it is written into.
pub fn is_field_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 64
        && (bytes[0].is_ascii_alphabetic() || bytes[0] == b'_')
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// An ordered list of named text fields, as one XML element's children. Names are unique.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fields(Vec<(String, String)>);

impl Fields {
    pub fn new() -> Fields {
        Fields(Vec::new())
    }

    /// The value of `name`, if present (possibly empty).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `name` when present and not empty.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.get(name).filter(|v| !v.is_empty())
    }

    pub fn contains(&self, name: &str) -> bool {
        self.0.iter().any(|(n, _)| n == name)
    }

    /// Sets `name` to `value`, in place when present, else at the end.
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let (name, value) = (name.into(), value.into());
        match self.0.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => self.0.push((name, value)),
        }
    }

    /// Appends a field that must not be present yet; returns false (and changes nothing)
    /// when it is.
    pub fn push_new(&mut self, name: String, value: String) -> bool {
        if self.contains(&name) {
            return false;
        }
        self.0.push((name, value));
        true
    }

    pub fn remove(&mut self, name: &str) -> Option<String> {
        let at = self.0.iter().position(|(n, _)| n == name)?;
        Some(self.0.remove(at).1)
    }

    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<N: Into<String>, V: Into<String>> FromIterator<(N, V)> for Fields {
    fn from_iter<I: IntoIterator<Item = (N, V)>>(iter: I) -> Fields {
        let mut fields = Fields::new();
        for (n, v) in iter {
            fields.set(n, v);
        }
        fields
    }
}

/// One electronic voucher (电子凭证): the `<Voucher>` document.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Voucher {
    /// The fields directly under `<Voucher>`, in document order.
    pub header: Fields,
    /// The `<Detail>` records under `<DetailList>`, in document order.
    pub details: Vec<Fields>,
}

impl Voucher {
    /// The voucher's type code as written (`VtCode`), possibly empty.
    pub fn vt_code(&self) -> &str {
        self.header.get("VtCode").unwrap_or("")
    }

    /// The identity fields as written, for messages and envelopes.
    pub fn key(&self) -> VoucherKey {
        let f = |n| self.header.get(n).unwrap_or("").to_owned();
        VoucherKey {
            adm_div_code: f("AdmDivCode"),
            st_year: f("StYear"),
            vt_code: f("VtCode"),
            voucher_no: f("VoucherNo"),
        }
    }
}

/// A voucher's identity: (AdmDivCode, StYear, VtCode, VoucherNo), as text. A voucher
/// takes effect once per key.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VoucherKey {
    pub adm_div_code: String,
    pub st_year: String,
    pub vt_code: String,
    pub voucher_no: String,
}

impl fmt::Display for VoucherKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}/{}",
            self.adm_div_code, self.st_year, self.vt_code, self.voucher_no
        )
    }
}

/// Whether a voucher travels as the sender's original or as the receiver's receipt
/// (回单, `VoucherFlag=1`) with its `X*` fields filled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum VoucherFlag {
    #[default]
    Original,
    Receipt,
}

impl VoucherFlag {
    pub fn code(self) -> &'static str {
        match self {
            VoucherFlag::Original => "0",
            VoucherFlag::Receipt => "1",
        }
    }
}
