//! The voucher standard (一套标准规范): what every party's system speaks.
//!
//! - [`registry`]: the voucher types, from configuration;
//! - [`xml`], [`envelope`], [`json`]: the codecs, lossless between each other;
//! - [`canonical`]: the bytes signatures cover;
//! - [`validate`]: every broken rule of a voucher, at once;
//! - [`sample`]: valid example vouchers of every type;
//! - [`lifecycle`]: the exchange and processing state machines with the standard's status codes.
//!
//! This crate never sees keys, storage, the network or the clock.

pub mod canonical;
pub mod envelope;
pub mod error;
pub mod json;
pub mod lifecycle;
pub mod limits;
pub mod model;
pub mod registry;
pub mod sample;
pub mod validate;
pub mod xml;

pub use canonical::{canonical_bytes, canonical_bytes_without};
pub use envelope::{
    Envelope, EnvelopeBody, SignatureBlob, SplitBody, body_element, join_body_elements,
    parse_envelope, parse_envelope_split, parse_envelope_vouchers, write_body_element,
    write_envelope,
};
pub use error::DecodeError;
pub use limits::Limits;
pub use model::{Fields, Voucher, VoucherFlag, VoucherKey};
pub use registry::{Registry, VoucherType};
pub use validate::{Context, Problem, Rule, validate};
pub use xml::{Encoding, Layout, parse_voucher, write_voucher};

/// What a document turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// A `<Voucher>` document.
    Xml(Encoding),
    /// A `<MOF>` envelope.
    Envelope(Encoding),
    /// JSON: one voucher object or an array of them.
    Json,
}

/// One voucher read from a document, with the flag its envelope gave it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decoded {
    pub voucher: Voucher,
    pub flag: Option<VoucherFlag>,
    pub attach: Option<String>,
    /// The signatures and seals the envelope carried (none for XML and JSON).
    pub signatures: Vec<SignatureBlob>,
}

/// Reads any of the standard's forms, recognising which from the bytes: JSON when the
/// first non-blank byte is `{` or `[`, else XML whose root is `<Voucher>` or `<MOF>`.
pub fn decode_any(bytes: &[u8], limits: &Limits) -> Result<(Vec<Decoded>, Format), DecodeError> {
    let first = bytes
        .iter()
        .copied()
        .find(|b| !b.is_ascii_whitespace() && !matches!(b, 0xEF | 0xBB | 0xBF));
    if matches!(first, Some(b'{' | b'[')) {
        let vouchers = json::parse_json(bytes, limits)?;
        let decoded = vouchers
            .into_iter()
            .map(|voucher| Decoded {
                voucher,
                flag: None,
                attach: None,
                signatures: Vec::new(),
            })
            .collect();
        return Ok((decoded, Format::Json));
    }
    let (text, encoding) = xml::decode_text(bytes, limits)?;
    if root_name(&text).as_deref() == Some("MOF") {
        let envelope = envelope::parse_envelope_text(&text, encoding, limits)?;
        let decoded = envelope
            .bodies
            .into_iter()
            .map(|b| Decoded {
                voucher: b.voucher,
                flag: Some(b.flag),
                attach: Some(b.attach),
                signatures: b.signatures,
            })
            .collect();
        return Ok((decoded, Format::Envelope(encoding)));
    }
    let voucher = xml::parse_voucher_text(&text, limits)?;
    Ok((
        vec![Decoded {
            voucher,
            flag: None,
            attach: None,
            signatures: Vec::new(),
        }],
        Format::Xml(encoding),
    ))
}

/// The root element's name, if the text has one.
fn root_name(text: &str) -> Option<String> {
    let mut tokens = xml::Tokens::new(text);
    loop {
        match tokens.next().ok()? {
            xml::Token::Start { name, .. } => return Some(name),
            xml::Token::Text(t) if t.trim().is_empty() => continue,
            _ => return None,
        }
    }
}
