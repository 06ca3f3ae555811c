//! The canonical byte form of a voucher: the bytes signatures and seals cover.
//!
//! The same voucher always gives the same bytes, whatever encoding, layout or field
//! order it arrived in:
//!
//! - UTF-8, no declaration, no whitespace between elements;
//! - `<Voucher>`, then the header fields sorted by name (byte order), then
//!   `<DetailList>` with each `<Detail>` in document order, its fields sorted by name;
//!   `<DetailList>` is left out when there are no details;
//! - fields with an empty value are left out (absent and empty mean the same);
//! - text escapes only `&`, `<`, `>` and carriage return (`&#13;`).
//!
//! It is independent of the type registry on purpose: a province changing its registry
//! cannot change the bytes an old signature covers. Values are taken as written (`+1.00`
//! and `1.00` are different texts).
//!
//! A receipt's original signatures cover the canonical bytes *without* the receipt
//! fields, which are empty in the original: [`canonical_bytes_without`] gives those.

use crate::model::{Fields, Voucher};
use crate::xml::write_field;

/// The canonical bytes of `voucher`.
pub fn canonical_bytes(voucher: &Voucher) -> Vec<u8> {
    canonical_bytes_without(voucher, |_| false)
}

/// The canonical bytes of `voucher` leaving out the fields `skip` names, e.g. the
/// receipt fields to check the original's signatures on a receipt.
pub fn canonical_bytes_without(voucher: &Voucher, skip: impl Fn(&str) -> bool) -> Vec<u8> {
    let mut out = String::with_capacity(1024);
    out.push_str("<Voucher>");
    record(&mut out, &voucher.header, &skip);
    if !voucher.details.is_empty() {
        out.push_str("<DetailList>");
        for detail in &voucher.details {
            out.push_str("<Detail>");
            record(&mut out, detail, &skip);
            out.push_str("</Detail>");
        }
        out.push_str("</DetailList>");
    }
    out.push_str("</Voucher>");
    out.into_bytes()
}

fn record(out: &mut String, fields: &Fields, skip: &impl Fn(&str) -> bool) {
    let mut sorted: Vec<(&str, &str)> = fields
        .iter()
        .filter(|(name, value)| !value.is_empty() && !skip(name))
        .collect();
    sorted.sort_unstable_by(|a, b| a.0.cmp(b.0));
    for (name, value) in sorted {
        write_field(out, name, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_order_and_empty_fields_do_not_matter() {
        let a = Voucher {
            header: [("VtCode", "5201"), ("AdmDivCode", "430000"), ("Hold1", "")]
                .into_iter()
                .collect(),
            details: vec![[("PayAmt", "1.00"), ("Id", "1")].into_iter().collect()],
        };
        let b = Voucher {
            header: [("AdmDivCode", "430000"), ("VtCode", "5201")]
                .into_iter()
                .collect(),
            details: vec![[("Id", "1"), ("PayAmt", "1.00")].into_iter().collect()],
        };
        assert_eq!(canonical_bytes(&a), canonical_bytes(&b));
        assert_eq!(
            String::from_utf8(canonical_bytes(&a)).unwrap(),
            "<Voucher><AdmDivCode>430000</AdmDivCode><VtCode>5201</VtCode><DetailList>\
             <Detail><Id>1</Id><PayAmt>1.00</PayAmt></Detail></DetailList></Voucher>"
        );
    }

    #[test]
    fn any_change_of_value_or_detail_order_changes_the_bytes() {
        let base = Voucher {
            header: [("PayeeAcctName", "国库<&>")].into_iter().collect(),
            details: vec![
                [("PayAmt", "1.00")].into_iter().collect(),
                [("PayAmt", "2.00")].into_iter().collect(),
            ],
        };
        let mut changed = base.clone();
        changed.header.set("PayeeAcctName", "国库<&> ");
        assert_ne!(canonical_bytes(&base), canonical_bytes(&changed));
        let mut swapped = base.clone();
        swapped.details.reverse();
        assert_ne!(canonical_bytes(&base), canonical_bytes(&swapped));
        let text = String::from_utf8(canonical_bytes(&base)).unwrap();
        assert!(text.contains("国库&lt;&amp;&gt;"), "{text}");
    }

    #[test]
    fn skipping_receipt_fields_recovers_the_original_bytes() {
        let original = Voucher {
            header: [("PayAmt", "1.00"), ("XPayAmt", "")].into_iter().collect(),
            details: vec![],
        };
        let mut receipt = original.clone();
        receipt.header.set("XPayAmt", "1.00");
        assert_ne!(canonical_bytes(&original), canonical_bytes(&receipt));
        assert_eq!(
            canonical_bytes(&original),
            canonical_bytes_without(&receipt, |n| n.starts_with('X'))
        );
    }
}
