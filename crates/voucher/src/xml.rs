//! The `<Voucher>` XML document, in GBK or UTF-8.
//!
//! Reading is bounded (see [`Limits`]): element depth is fixed by the document's shape,
//! field values and counts are capped, a DOCTYPE is refused (no entity expansion can
//! happen), and every failure is a [`DecodeError`] naming what is wrong. quick-xml does
//! the tokenizing; this module only gives the tokens the voucher's shape.

use std::borrow::Cow;

use quick_xml::XmlVersion;
use quick_xml::events::Event;
use quick_xml::reader::Reader;

use crate::error::DecodeError;
use crate::limits::Limits;
use crate::model::{Fields, Voucher, is_field_name};

/// The character encodings the standard's documents use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Encoding {
    /// GBK, the standard's encoding ("GBK throughout"). GB2312 and GB18030 documents are
    /// read too; characters GBK lacks are written as character references.
    #[default]
    Gbk,
    Utf8,
}

impl Encoding {
    /// The label written in the XML declaration.
    pub fn label(self) -> &'static str {
        match self {
            Encoding::Gbk => "GBK",
            Encoding::Utf8 => "UTF-8",
        }
    }
}

/// Decodes an XML document's bytes to text according to its declaration (UTF-8 when it
/// declares none), refusing bytes that are not valid in the declared encoding.
pub fn decode_text(bytes: &[u8], limits: &Limits) -> Result<(String, Encoding), DecodeError> {
    decode_text_or(bytes, limits, Encoding::Utf8)
}

/// As [`decode_text`], with `undeclared` for a document without an encoding declaration.
pub(crate) fn decode_text_or(
    bytes: &[u8],
    limits: &Limits,
    undeclared: Encoding,
) -> Result<(String, Encoding), DecodeError> {
    if bytes.len() > limits.max_input_bytes {
        return Err(DecodeError::TooLarge {
            len: bytes.len(),
            limit: limits.max_input_bytes,
        });
    }
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(DecodeError::Empty);
    }
    if bytes.starts_with(b"\xFF\xFE") || bytes.starts_with(b"\xFE\xFF") {
        return Err(DecodeError::UnsupportedEncoding("UTF-16".into()));
    }
    let encoding = match declared_encoding(bytes)? {
        None => undeclared,
        Some(label) => match label.to_ascii_uppercase().as_str() {
            "UTF-8" | "UTF8" => Encoding::Utf8,
            "GBK" | "GB2312" | "GB18030" | "CP936" | "X-GBK" => Encoding::Gbk,
            _ => return Err(DecodeError::UnsupportedEncoding(label)),
        },
    };
    let text = match encoding {
        Encoding::Utf8 => std::str::from_utf8(bytes)
            .map_err(|e| DecodeError::BadBytes {
                encoding: "UTF-8",
                offset: e.valid_up_to(),
            })?
            .to_owned(),
        Encoding::Gbk => decode_gbk(bytes)?,
    };
    Ok((text, encoding))
}

/// GBK (read as GB18030, its superset) without replacement: a malformed byte sequence is
/// an error with its offset, never a silent U+FFFD.
fn decode_gbk(bytes: &[u8]) -> Result<String, DecodeError> {
    let mut decoder = encoding_rs::GB18030.new_decoder_without_bom_handling();
    let capacity = decoder
        .max_utf8_buffer_length_without_replacement(bytes.len())
        .ok_or(DecodeError::TooLarge {
            len: bytes.len(),
            limit: usize::MAX / 4,
        })?;
    let mut out = String::with_capacity(capacity);
    let (result, read) = decoder.decode_to_string_without_replacement(bytes, &mut out, true);
    match result {
        encoding_rs::DecoderResult::InputEmpty => Ok(out),
        encoding_rs::DecoderResult::Malformed(bad, extra) => Err(DecodeError::BadBytes {
            encoding: "GBK",
            offset: read.saturating_sub(usize::from(bad) + usize::from(extra)),
        }),
        // The buffer was sized for the worst case, so the decoder cannot run out of room.
        encoding_rs::DecoderResult::OutputFull => Err(DecodeError::BadBytes {
            encoding: "GBK",
            offset: read,
        }),
    }
}

/// The `encoding="…"` of a leading `<?xml …?>` declaration, read as ASCII.
fn declared_encoding(bytes: &[u8]) -> Result<Option<String>, DecodeError> {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(0);
    let rest = &bytes[start..];
    if !rest.starts_with(b"<?xml") {
        return Ok(None);
    }
    let Some(end) = rest.iter().take(512).position(|&b| b == b'>') else {
        return Err(DecodeError::Xml {
            position: start as u64,
            message: "the XML declaration is not closed".into(),
        });
    };
    let decl = String::from_utf8_lossy(&rest[..end]);
    let Some(at) = decl.find("encoding") else {
        return Ok(None);
    };
    let after = decl[at + "encoding".len()..].trim_start();
    let after = after
        .strip_prefix('=')
        .map(str::trim_start)
        .ok_or_else(|| DecodeError::Xml {
            position: (start + at) as u64,
            message: "malformed encoding declaration".into(),
        })?;
    let quote = after.chars().next().filter(|c| *c == '"' || *c == '\'');
    let label = quote
        .and_then(|q| {
            after[1..]
                .split(q)
                .next()
                .filter(|_| after[1..].contains(q))
        })
        .ok_or_else(|| DecodeError::Xml {
            position: (start + at) as u64,
            message: "malformed encoding declaration".into(),
        })?;
    Ok(Some(label.to_owned()))
}

/// One token of a voucher-shaped document.
pub(crate) enum Token {
    /// A start tag; `empty` for `<a/>`.
    Start {
        name: String,
        attributes: Vec<(String, String)>,
        empty: bool,
    },
    End(String),
    /// Character data between tags, references resolved.
    Text(String),
    Eof,
}

/// quick-xml's reader, narrowed to what a voucher needs.
pub(crate) struct Tokens<'a> {
    reader: Reader<&'a [u8]>,
}

impl<'a> Tokens<'a> {
    pub(crate) fn new(text: &'a str) -> Tokens<'a> {
        let mut reader = Reader::from_str(text);
        let config = reader.config_mut();
        config.check_end_names = true;
        config.check_comments = true;
        Tokens { reader }
    }

    /// Passes over the rest of the element `name` whose start tag was just read, its
    /// content unread (it must still be well-formed).
    pub(crate) fn skip_element(&mut self, name: &str) -> Result<(), DecodeError> {
        self.reader
            .read_to_end(quick_xml::name::QName(name))
            .map(|_| ())
            .map_err(|e| self.xml_error(e))
    }

    /// The byte offset in the text just after the last token read.
    pub(crate) fn position(&self) -> usize {
        usize::try_from(self.reader.buffer_position()).unwrap_or(usize::MAX)
    }

    fn xml_error(&self, error: impl std::fmt::Display) -> DecodeError {
        DecodeError::Xml {
            position: self.reader.error_position(),
            message: error.to_string(),
        }
    }

    pub(crate) fn next(&mut self) -> Result<Token, DecodeError> {
        loop {
            let event = self.reader.read_event().map_err(|e| self.xml_error(e))?;
            return Ok(match event {
                Event::Start(ref e) | Event::Empty(ref e) => {
                    let name = e.name().as_ref().to_owned();
                    let mut attributes = Vec::new();
                    for attribute in e.attributes() {
                        let attribute = attribute.map_err(|e| self.xml_error(e))?;
                        let value = attribute
                            .normalized_value(XmlVersion::Implicit1_0)
                            .map_err(|e| self.xml_error(e))?;
                        attributes.push((attribute.key.as_ref().to_owned(), value.into_owned()));
                    }
                    Token::Start {
                        name,
                        attributes,
                        empty: matches!(event, Event::Empty(_)),
                    }
                }
                Event::End(e) => Token::End(e.name().as_ref().to_owned()),
                Event::Text(e) => Token::Text(e.xml10_content().into_owned()),
                Event::CData(e) => Token::Text(e.xml10_content().into_owned()),
                Event::GeneralRef(r) => Token::Text(resolve_reference(&r)?.into()),
                Event::DocType(_) => return Err(DecodeError::DocType),
                Event::Decl(_) | Event::Comment(_) | Event::PI(_) => continue,
                Event::Eof => Token::Eof,
            });
        }
    }

    /// The text of a leaf element whose start tag was just read, up to its end tag.
    /// Refuses child elements and values longer than `limit` bytes.
    pub(crate) fn leaf_text(&mut self, name: &str, limit: usize) -> Result<String, DecodeError> {
        let mut value = String::new();
        loop {
            match self.next()? {
                Token::Text(text) => {
                    if value.len() + text.len() > limit {
                        return Err(DecodeError::FieldTooLong {
                            field: name.to_owned(),
                            limit,
                        });
                    }
                    value.push_str(&text);
                }
                Token::End(_) => return Ok(value),
                Token::Start { name: child, .. } => {
                    return Err(DecodeError::TooDeep { element: child });
                }
                Token::Eof => return Err(DecodeError::Truncated(name.to_owned())),
            }
        }
    }
}

fn resolve_reference(r: &quick_xml::events::BytesRef<'_>) -> Result<char, DecodeError> {
    let unknown = || DecodeError::UnknownEntity(r.as_ref().to_owned());
    if r.is_char_ref() {
        return r.resolve_char_ref().ok().flatten().ok_or_else(unknown);
    }
    match r.as_ref() {
        "lt" => Ok('<'),
        "gt" => Ok('>'),
        "amp" => Ok('&'),
        "apos" => Ok('\''),
        "quot" => Ok('"'),
        _ => Err(unknown()),
    }
}

fn is_blank(text: &str) -> bool {
    text.chars().all(|c| matches!(c, ' ' | '\t' | '\r' | '\n'))
}

/// Skips blank text, comments and the declaration up to the root's start tag.
pub(crate) fn root(
    tokens: &mut Tokens<'_>,
    expected: &'static str,
) -> Result<(Vec<(String, String)>, bool), DecodeError> {
    loop {
        match tokens.next()? {
            Token::Text(t) if is_blank(&t) => continue,
            Token::Text(t) => {
                return Err(DecodeError::UnexpectedText {
                    parent: "(document)".into(),
                    text: preview(&t),
                });
            }
            Token::Start {
                name,
                attributes,
                empty,
            } => {
                if name != expected {
                    return Err(DecodeError::WrongRoot {
                        expected,
                        found: name,
                    });
                }
                return Ok((attributes, empty));
            }
            Token::End(name) => {
                return Err(DecodeError::UnexpectedElement {
                    parent: "(document)".into(),
                    found: format!("/{name}"),
                });
            }
            Token::Eof => return Err(DecodeError::Empty),
        }
    }
}

/// After the root closes only blank text and comments may follow.
pub(crate) fn end_of_document(tokens: &mut Tokens<'_>) -> Result<(), DecodeError> {
    loop {
        match tokens.next()? {
            Token::Eof => return Ok(()),
            Token::Text(t) if is_blank(&t) => continue,
            _ => return Err(DecodeError::TrailingContent),
        }
    }
}

pub(crate) fn preview(text: &str) -> String {
    let cut: String = text.chars().take(40).collect();
    if cut.len() < text.len() {
        format!("{cut}…")
    } else {
        cut
    }
}

/// Reads one record's fields (the header or a `<Detail>`) until `</{record}>`. In the
/// header, `<DetailList>` is handed to `details`.
fn read_record(
    tokens: &mut Tokens<'_>,
    record: &str,
    limits: &Limits,
    mut details: Option<&mut Vec<Fields>>,
) -> Result<Fields, DecodeError> {
    let mut fields = Fields::new();
    loop {
        match tokens.next()? {
            Token::Text(t) if is_blank(&t) => {}
            Token::Text(t) => {
                return Err(DecodeError::UnexpectedText {
                    parent: record.to_owned(),
                    text: preview(&t),
                });
            }
            Token::End(_) => return Ok(fields),
            Token::Eof => return Err(DecodeError::Truncated(record.to_owned())),
            Token::Start { name, empty, .. } => {
                if name == "DetailList" {
                    let Some(list) = details.as_deref_mut() else {
                        return Err(DecodeError::TooDeep { element: name });
                    };
                    if !empty {
                        read_detail_list(tokens, limits, list)?;
                    }
                    continue;
                }
                if !is_field_name(&name) {
                    return Err(DecodeError::BadFieldName { name });
                }
                let value = if empty {
                    String::new()
                } else {
                    tokens.leaf_text(&name, limits.max_field_bytes)?
                };
                if fields.len() >= limits.max_fields {
                    return Err(DecodeError::TooMany {
                        what: "fields in one record",
                        limit: limits.max_fields,
                    });
                }
                if !fields.push_new(name.clone(), value) {
                    return Err(DecodeError::DuplicateField {
                        field: name,
                        record: record.to_owned(),
                    });
                }
            }
        }
    }
}

fn read_detail_list(
    tokens: &mut Tokens<'_>,
    limits: &Limits,
    details: &mut Vec<Fields>,
) -> Result<(), DecodeError> {
    loop {
        match tokens.next()? {
            Token::Text(t) if is_blank(&t) => {}
            Token::Text(t) => {
                return Err(DecodeError::UnexpectedText {
                    parent: "DetailList".into(),
                    text: preview(&t),
                });
            }
            Token::End(_) => return Ok(()),
            Token::Eof => return Err(DecodeError::Truncated("DetailList".into())),
            Token::Start { name, empty, .. } => {
                if name != "Detail" {
                    return Err(DecodeError::UnexpectedElement {
                        parent: "DetailList".into(),
                        found: name,
                    });
                }
                if details.len() >= limits.max_details {
                    return Err(DecodeError::TooMany {
                        what: "details in one voucher",
                        limit: limits.max_details,
                    });
                }
                let detail = if empty {
                    Fields::new()
                } else {
                    let record = format!("Detail[{}]", details.len() + 1);
                    read_record(tokens, &record, limits, None)?
                };
                details.push(detail);
            }
        }
    }
}

/// Reads a `<Voucher>` document from text already decoded.
pub(crate) fn parse_voucher_text(text: &str, limits: &Limits) -> Result<Voucher, DecodeError> {
    let mut tokens = Tokens::new(text);
    let (_, empty) = root(&mut tokens, "Voucher")?;
    let mut details = Vec::new();
    let header = if empty {
        Fields::new()
    } else {
        read_record(&mut tokens, "Voucher", limits, Some(&mut details))?
    };
    end_of_document(&mut tokens)?;
    Ok(Voucher { header, details })
}

/// Reads a `<Voucher>` document from its bytes (GBK or UTF-8, per its declaration).
pub fn parse_voucher(bytes: &[u8], limits: &Limits) -> Result<(Voucher, Encoding), DecodeError> {
    let (text, encoding) = decode_text(bytes, limits)?;
    Ok((parse_voucher_text(&text, limits)?, encoding))
}

/// Escapes text for element content. `\r` becomes a character reference so that it
/// survives XML's line-end normalisation.
pub(crate) fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\r' => out.push_str("&#13;"),
            _ => out.push(c),
        }
    }
}

/// How a document is laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// One line, as the voucher libraries exchange it.
    Compact,
    /// One field a line, indented, for people.
    Indented,
}

/// Writes `<name>value</name>`.
pub(crate) fn write_field(out: &mut String, name: &str, value: &str) {
    out.push('<');
    out.push_str(name);
    out.push('>');
    escape_into(out, value);
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

fn write_record(out: &mut String, fields: &Fields, indent: Option<&str>) {
    for (name, value) in fields.iter() {
        if let Some(indent) = indent {
            out.push_str(indent);
        }
        write_field(out, name, value);
        if indent.is_some() {
            out.push('\n');
        }
    }
}

/// Writes the `<Voucher>` element (no declaration) as text.
pub(crate) fn voucher_element(voucher: &Voucher, layout: Layout) -> String {
    let indented = layout == Layout::Indented;
    let nl = if indented { "\n" } else { "" };
    let mut out = String::with_capacity(1024);
    out.push_str("<Voucher>");
    out.push_str(nl);
    write_record(&mut out, &voucher.header, indented.then_some("  "));
    out.push_str(if indented {
        "  <DetailList>\n"
    } else {
        "<DetailList>"
    });
    for detail in &voucher.details {
        out.push_str(if indented {
            "    <Detail>\n"
        } else {
            "<Detail>"
        });
        write_record(&mut out, detail, indented.then_some("      "));
        out.push_str(if indented {
            "    </Detail>\n"
        } else {
            "</Detail>"
        });
    }
    out.push_str(if indented {
        "  </DetailList>\n"
    } else {
        "</DetailList>"
    });
    out.push_str("</Voucher>");
    out.push_str(nl);
    out
}

/// Encodes a document's text. In GBK, characters GBK lacks become `&#N;` references,
/// which XML reads back as the same characters, so nothing is lost.
pub(crate) fn encode(text: &str, encoding: Encoding) -> Vec<u8> {
    match encoding {
        Encoding::Utf8 => text.as_bytes().to_vec(),
        Encoding::Gbk => match encoding_rs::GBK.encode(text).0 {
            Cow::Borrowed(b) => b.to_vec(),
            Cow::Owned(b) => b,
        },
    }
}

/// The `<?xml …?>` declaration for `encoding`.
pub(crate) fn declaration(encoding: Encoding) -> String {
    format!("<?xml version=\"1.0\" encoding=\"{}\"?>", encoding.label())
}

/// Writes a whole `<Voucher>` document in `encoding`.
pub fn write_voucher(voucher: &Voucher, encoding: Encoding, layout: Layout) -> Vec<u8> {
    let mut text = declaration(encoding);
    if layout == Layout::Indented {
        text.push('\n');
    }
    text.push_str(&voucher_element(voucher, layout));
    encode(&text, encoding)
}
