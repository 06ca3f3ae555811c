//! The voucher-library envelope (`<MOF>`), as vouchers travel between libraries:
//!
//! ```xml
//! <?xml version="1.0" encoding="GBK"?>
//! <MOF><VoucherCount>1</VoucherCount>
//!  <VoucherBody AdmDivCode="430000" StYear="2025" VtCode="5201" VoucherNo="…">
//!   <VoucherFlag>0</VoucherFlag><Attach>SUCCESS</Attach>
//!   <Voucher>BASE64 of the voucher document's bytes</Voucher>
//!  </VoucherBody></MOF>
//! ```

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::error::DecodeError;
use crate::limits::Limits;
use crate::model::{Voucher, VoucherFlag, VoucherKey};
use crate::xml::{self, Encoding, Layout, Token, Tokens};

/// Most bytes the standard allows in `<Attach>`.
pub const ATTACH_MAX_BYTES: usize = 32;

/// One voucher in an envelope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvelopeBody {
    pub flag: VoucherFlag,
    /// A short note the sender attaches (`SUCCESS`, or a reason), ≤ 32 bytes.
    pub attach: String,
    pub voucher: Voucher,
    /// The signatures and seals on the voucher, by seal position, as opaque bytes (the
    /// seal crate encodes and checks them).
    pub signatures: Vec<SignatureBlob>,
}

/// A signature or seal at a seal position, carried as `<Signature No="n">BASE64</Signature>`
/// after the `<Voucher>` of its body. guoku's own element: the standard's libraries keep
/// signatures beside the voucher rather than in the exchange document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignatureBlob {
    /// The seal position (`<Stamp No>` of the standard).
    pub no: u32,
    pub data: Vec<u8>,
}

/// Most signatures one voucher may carry.
pub const MAX_SIGNATURES: usize = 32;

/// A `<MOF>` envelope of one or more vouchers.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Envelope {
    pub bodies: Vec<EnvelopeBody>,
}

const KEY_ATTRIBUTES: [&str; 4] = ["AdmDivCode", "StYear", "VtCode", "VoucherNo"];

fn envelope_error(message: impl Into<String>) -> DecodeError {
    DecodeError::Envelope(message.into())
}

/// Reads an envelope. Each body's attributes must match its voucher's own fields, and
/// `VoucherCount` must match the number of bodies.
pub fn parse_envelope(bytes: &[u8], limits: &Limits) -> Result<(Envelope, Encoding), DecodeError> {
    let (text, encoding) = xml::decode_text(bytes, limits)?;
    Ok((parse_envelope_text(&text, encoding, limits)?, encoding))
}

/// A body of an envelope read by [`parse_envelope_split`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitBody {
    pub body: EnvelopeBody,
    /// A one-voucher envelope of the body's element as received, in the envelope's
    /// encoding.
    pub alone: Vec<u8>,
}

/// Reads an envelope, and gives each body with an envelope of its own made of its
/// `<VoucherBody>` element as received: what a receiver stores keeps the sender's bytes
/// (its `<Voucher>` and signatures exactly as signed and sent), and nothing is written
/// again. The checks are [`parse_envelope`]'s.
///
/// # Errors
/// As [`parse_envelope`].
pub fn parse_envelope_split(
    bytes: &[u8],
    limits: &Limits,
) -> Result<(Vec<SplitBody>, Encoding), DecodeError> {
    let (text, encoding) = xml::decode_text(bytes, limits)?;
    let (envelope, spans) = parse_envelope_spans(&text, encoding, limits, Signatures::Read)?;
    let split = envelope
        .bodies
        .into_iter()
        .zip(spans)
        .map(|(body, span)| {
            let mut alone = envelope_head(encoding, 1);
            alone.push_str(&text[span]);
            alone.push_str(ENVELOPE_TAIL);
            let alone = match encoding {
                Encoding::Utf8 => alone.into_bytes(),
                // GBK text holding a character GBK lacks (a GB 18030 four-byte sequence
                // the decoder took) would come back as a reference, which inside CDATA or
                // a comment is not the character: such a body is written again instead.
                Encoding::Gbk => match encoding_rs::GBK.encode(&alone) {
                    (bytes, _, false) => bytes.into_owned(),
                    (_, _, true) => write_envelope(
                        &Envelope {
                            bodies: vec![body.clone()],
                        },
                        encoding,
                    ),
                },
            };
            SplitBody { body, alone }
        })
        .collect();
    Ok((split, encoding))
}

/// Reads an envelope from text already decoded from `encoding`.
pub(crate) fn parse_envelope_text(
    text: &str,
    encoding: Encoding,
    limits: &Limits,
) -> Result<Envelope, DecodeError> {
    parse_envelope_spans(text, encoding, limits, Signatures::Read).map(|(envelope, _)| envelope)
}

/// The vouchers of an envelope with their flags, in order, their signatures passed over
/// (well-formed, not decoded): what a node reads back from its own library, whose
/// signatures were checked when the voucher came in or was made. The other checks are
/// [`parse_envelope`]'s.
///
/// # Errors
/// As [`parse_envelope`].
pub fn parse_envelope_vouchers(
    bytes: &[u8],
    limits: &Limits,
) -> Result<Vec<(VoucherFlag, Voucher)>, DecodeError> {
    let (text, encoding) = xml::decode_text(bytes, limits)?;
    let (envelope, _) = parse_envelope_spans(&text, encoding, limits, Signatures::Skip)?;
    Ok(envelope
        .bodies
        .into_iter()
        .map(|body| (body.flag, body.voucher))
        .collect())
}

/// Whether a body's signatures are decoded or passed over.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Signatures {
    Read,
    Skip,
}

/// [`parse_envelope_text`], with where each `<VoucherBody>` element lies in `text`.
fn parse_envelope_spans(
    text: &str,
    encoding: Encoding,
    limits: &Limits,
    signatures: Signatures,
) -> Result<(Envelope, Vec<std::ops::Range<usize>>), DecodeError> {
    let mut tokens = Tokens::new(text);
    let mut spans = Vec::new();
    let (_, empty) = xml::root(&mut tokens, "MOF")?;
    if empty {
        return Err(envelope_error("<MOF> is empty: VoucherCount is missing"));
    }
    let mut count: Option<usize> = None;
    let mut envelope = Envelope::default();
    loop {
        let start = tokens.position();
        match tokens.next()? {
            Token::Text(t) if t.trim().is_empty() => {}
            Token::Text(t) => {
                return Err(DecodeError::UnexpectedText {
                    parent: "MOF".into(),
                    text: xml::preview(&t),
                });
            }
            Token::End(_) => break,
            Token::Eof => return Err(DecodeError::Truncated("MOF".into())),
            Token::Start {
                name,
                attributes,
                empty,
            } => match name.as_str() {
                "VoucherCount" if count.is_none() => {
                    let text = if empty {
                        String::new()
                    } else {
                        tokens.leaf_text(&name, 16)?
                    };
                    count = Some(text.trim().parse().map_err(|_| {
                        envelope_error(format!("VoucherCount {text:?} is not a number"))
                    })?);
                }
                "VoucherBody" => {
                    if envelope.bodies.len() >= limits.max_vouchers {
                        return Err(DecodeError::TooMany {
                            what: "vouchers in one envelope",
                            limit: limits.max_vouchers,
                        });
                    }
                    if empty {
                        return Err(envelope_error("<VoucherBody> is empty"));
                    }
                    let index = envelope.bodies.len() + 1;
                    let body = read_body(&mut tokens, &attributes, encoding, limits, signatures)
                        .map_err(|e| match e {
                            DecodeError::Envelope(m) => {
                                envelope_error(format!("VoucherBody {index}: {m}"))
                            }
                            other => other,
                        })?;
                    envelope.bodies.push(body);
                    spans.push(start..tokens.position());
                }
                _ => {
                    return Err(DecodeError::UnexpectedElement {
                        parent: "MOF".into(),
                        found: name,
                    });
                }
            },
        }
    }
    xml::end_of_document(&mut tokens)?;
    let count = count.ok_or_else(|| envelope_error("VoucherCount is missing"))?;
    if count != envelope.bodies.len() {
        return Err(envelope_error(format!(
            "VoucherCount says {count} but the envelope holds {}",
            envelope.bodies.len()
        )));
    }
    Ok((envelope, spans))
}

fn read_body(
    tokens: &mut Tokens<'_>,
    attributes: &[(String, String)],
    encoding: Encoding,
    limits: &Limits,
    read_signatures: Signatures,
) -> Result<EnvelopeBody, DecodeError> {
    let mut flag = None;
    let mut attach = None;
    let mut voucher = None;
    let mut signatures = Vec::new();
    loop {
        match tokens.next()? {
            Token::Text(t) if t.trim().is_empty() => {}
            Token::Text(t) => {
                return Err(DecodeError::UnexpectedText {
                    parent: "VoucherBody".into(),
                    text: xml::preview(&t),
                });
            }
            Token::End(_) => break,
            Token::Eof => return Err(DecodeError::Truncated("VoucherBody".into())),
            Token::Start {
                name,
                empty,
                attributes: signature_attributes,
            } => {
                if name == "Signature" {
                    if signatures.len() >= MAX_SIGNATURES {
                        return Err(DecodeError::TooMany {
                            what: "signatures on one voucher",
                            limit: MAX_SIGNATURES,
                        });
                    }
                    let no = signature_attributes
                        .iter()
                        .find(|(n, _)| n == "No")
                        .and_then(|(_, v)| v.parse::<u32>().ok())
                        .ok_or_else(|| {
                            envelope_error("<Signature> needs a numeric No attribute")
                        })?;
                    if signatures.iter().any(|s: &SignatureBlob| s.no == no) {
                        return Err(envelope_error(format!("two signatures at position {no}")));
                    }
                    let data = if empty {
                        Vec::new()
                    } else if read_signatures == Signatures::Skip {
                        tokens.skip_element(&name)?;
                        Vec::new()
                    } else {
                        decode_base64(&tokens.leaf_text(&name, 1 << 20)?, "Signature")?
                    };
                    signatures.push(SignatureBlob { no, data });
                    continue;
                }
                let limit = match name.as_str() {
                    "VoucherFlag" | "Attach" => 256,
                    "Voucher" => limits.max_input_bytes,
                    _ => {
                        return Err(DecodeError::UnexpectedElement {
                            parent: "VoucherBody".into(),
                            found: name,
                        });
                    }
                };
                let text = if empty {
                    String::new()
                } else {
                    tokens.leaf_text(&name, limit)?
                };
                let slot = match name.as_str() {
                    "VoucherFlag" => &mut flag,
                    "Attach" => &mut attach,
                    _ => &mut voucher,
                };
                if slot.replace(text).is_some() {
                    return Err(DecodeError::DuplicateField {
                        field: name,
                        record: "VoucherBody".into(),
                    });
                }
            }
        }
    }
    let flag = match flag.as_deref().map(str::trim) {
        Some("0") => VoucherFlag::Original,
        Some("1") => VoucherFlag::Receipt,
        Some(other) => {
            return Err(envelope_error(format!(
                "VoucherFlag {other:?} is neither 0 (original) nor 1 (receipt)"
            )));
        }
        None => return Err(envelope_error("VoucherFlag is missing")),
    };
    let attach = attach.unwrap_or_default();
    if guoku_domain::gbk_len(&attach) > ATTACH_MAX_BYTES {
        return Err(envelope_error(format!(
            "Attach is longer than {ATTACH_MAX_BYTES} bytes"
        )));
    }
    let encoded = voucher.ok_or_else(|| envelope_error("<Voucher> is missing"))?;
    let bytes = decode_base64(&encoded, "Voucher")?;
    let (text, _) = xml::decode_text_or(&bytes, limits, encoding)?;
    let voucher = xml::parse_voucher_text(&text, limits)?;
    let key = voucher.key();
    let own = [
        &key.adm_div_code,
        &key.st_year,
        &key.vt_code,
        &key.voucher_no,
    ];
    for (attribute, own) in KEY_ATTRIBUTES.iter().zip(own) {
        let said = attributes
            .iter()
            .find(|(n, _)| n == attribute)
            .map(|(_, v)| v.as_str())
            .ok_or_else(|| envelope_error(format!("attribute {attribute} is missing")))?;
        if said != own {
            return Err(envelope_error(format!(
                "attribute {attribute}={said:?} but the voucher says {own:?}"
            )));
        }
    }
    Ok(EnvelopeBody {
        flag,
        attach,
        voucher,
        signatures,
    })
}

/// Base64 as the libraries write it, line breaks allowed.
fn decode_base64(text: &str, field: &str) -> Result<Vec<u8>, DecodeError> {
    // Most senders write one line: decode it as it is, and copy only text with breaks.
    let bytes = text.as_bytes();
    let compact: std::borrow::Cow<'_, [u8]> = if bytes.iter().any(u8::is_ascii_whitespace) {
        bytes
            .iter()
            .copied()
            .filter(|b| !b.is_ascii_whitespace())
            .collect::<Vec<u8>>()
            .into()
    } else {
        bytes.into()
    };
    STANDARD.decode(&compact).map_err(|e| DecodeError::Base64 {
        field: field.into(),
        message: e.to_string(),
    })
}

/// Escapes an attribute value.
fn escape_attribute(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '"' => out.push_str("&quot;"),
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            _ => xml::escape_into(out, c.encode_utf8(&mut [0; 4])),
        }
    }
}

/// Writes an envelope; each voucher inside is a compact document in the same encoding.
pub fn write_envelope(envelope: &Envelope, encoding: Encoding) -> Vec<u8> {
    let mut text = envelope_head(encoding, envelope.bodies.len());
    for (i, body) in envelope.bodies.iter().enumerate() {
        if i > 0 {
            text.push('\n');
        }
        push_body_element(&mut text, body, encoding);
    }
    text.push_str(ENVELOPE_TAIL);
    xml::encode(&text, encoding)
}

/// The `<VoucherBody>` element of `body` in `encoding`, as [`write_envelope`] writes it:
/// what [`join_body_elements`] puts into an envelope, for a body read from a stored
/// envelope [`body_element`] cannot take apart.
#[must_use]
pub fn write_body_element(body: &EnvelopeBody, encoding: Encoding) -> Vec<u8> {
    let mut text = String::new();
    push_body_element(&mut text, body, encoding);
    xml::encode(&text, encoding)
}

fn push_body_element(text: &mut String, body: &EnvelopeBody, encoding: Encoding) {
    body_start_tag(text, &body.voucher.key());
    text.push_str("<VoucherFlag>");
    text.push_str(body.flag.code());
    text.push_str("</VoucherFlag><Attach>");
    xml::escape_into(text, &body.attach);
    text.push_str("</Attach><Voucher>");
    let inner = xml::write_voucher(&body.voucher, encoding, Layout::Compact);
    text.push_str(&STANDARD.encode(inner));
    text.push_str("</Voucher>");
    for signature in &body.signatures {
        text.push_str(&format!("<Signature No=\"{}\">", signature.no));
        text.push_str(&STANDARD.encode(&signature.data));
        text.push_str("</Signature>");
    }
    text.push_str("</VoucherBody>");
}

/// The declaration, `<MOF>` and `<VoucherCount>` of an envelope of `count` bodies, up to
/// its first `<VoucherBody>`.
fn envelope_head(encoding: Encoding, count: usize) -> String {
    let mut text = xml::declaration(encoding);
    text.push_str("\n<MOF><VoucherCount>");
    text.push_str(&count.to_string());
    text.push_str("</VoucherCount>\n");
    text
}

/// What follows an envelope's last `</VoucherBody>`.
const ENVELOPE_TAIL: &str = "\n</MOF>\n";

/// `<VoucherBody …>` with `key`'s attributes, as [`write_envelope`] writes it.
fn body_start_tag(out: &mut String, key: &VoucherKey) {
    out.push_str("<VoucherBody");
    for (name, value) in KEY_ATTRIBUTES.iter().zip([
        &key.adm_div_code,
        &key.st_year,
        &key.vt_code,
        &key.voucher_no,
    ]) {
        out.push(' ');
        out.push_str(name);
        out.push_str("=\"");
        escape_attribute(out, value);
        out.push('"');
    }
    out.push('>');
}

/// Where the `<VoucherBody>` element of `key`'s `flag` leg lies in a one-voucher envelope
/// in `encoding` as this crate writes them ([`write_envelope`], [`parse_envelope_split`]),
/// found without reading the envelope: what an outbox puts in a new envelope
/// ([`join_body_elements`]). `None` for anything else (another encoding or layout, more
/// than one body, another voucher or leg), which the caller then reads whole.
#[must_use]
pub fn body_element(
    envelope: &[u8],
    key: &VoucherKey,
    flag: VoucherFlag,
    encoding: Encoding,
) -> Option<std::ops::Range<usize>> {
    let head = envelope_head(encoding, 1);
    if !envelope.starts_with(head.as_bytes()) || !envelope.ends_with(ENVELOPE_TAIL.as_bytes()) {
        return None;
    }
    let (start, end) = (head.len(), envelope.len().checked_sub(ENVELOPE_TAIL.len())?);
    let element = envelope.get(start..end)?;
    // `<` and the tags' letters are ASCII, which are never part of a GBK or UTF-8
    // multi-byte character: a byte match is a match of characters.
    let mut expected = String::new();
    body_start_tag(&mut expected, key);
    expected.push_str("<VoucherFlag>");
    expected.push_str(flag.code());
    expected.push_str("</VoucherFlag>");
    let once = |tag: &[u8]| memchr::memmem::find_iter(element, tag).take(2).count() == 1;
    (element.starts_with(expected.as_bytes())
        && element.ends_with(b"</VoucherBody>")
        && once(b"<VoucherBody")
        && once(b"</VoucherBody>"))
    .then_some(start..end)
}

/// An envelope in `encoding` of `elements`, `<VoucherBody>` elements in that encoding (as
/// [`body_element`] finds them), in order, put in as they are.
#[must_use]
pub fn join_body_elements(elements: &[&[u8]], encoding: Encoding) -> Vec<u8> {
    let size = elements.iter().map(|e| e.len() + 1).sum::<usize>() + 128;
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&xml::encode(
        &envelope_head(encoding, elements.len()),
        encoding,
    ));
    for (i, element) in elements.iter().enumerate() {
        if i > 0 {
            out.push(b'\n');
        }
        out.extend_from_slice(element);
    }
    out.extend_from_slice(ENVELOPE_TAIL.as_bytes());
    out
}
