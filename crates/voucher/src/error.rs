//! Why bytes could not be read as a voucher. These are refusals of the input: retrying
//! the same bytes cannot help.

/// The input could not be decoded into a voucher or envelope. Each variant names what is
/// wrong and where.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("input is {len} bytes, more than the limit of {limit}")]
    TooLarge { len: usize, limit: usize },
    #[error("input is empty")]
    Empty,
    #[error("unsupported encoding {0:?}: GBK (GB2312, GB18030) or UTF-8 only")]
    UnsupportedEncoding(String),
    #[error("the bytes are not valid {encoding} at byte offset {offset}")]
    BadBytes {
        encoding: &'static str,
        offset: usize,
    },
    #[error("XML is not well-formed at byte {position}: {message}")]
    Xml { position: u64, message: String },
    #[error("a document type declaration (DOCTYPE) is not allowed in a voucher")]
    DocType,
    #[error(
        "unknown entity &{0}; (only the five XML entities and character references are allowed)"
    )]
    UnknownEntity(String),
    #[error("expected root element <{expected}>, found <{found}>")]
    WrongRoot {
        expected: &'static str,
        found: String,
    },
    #[error(
        "element <{element}> is nested deeper than a voucher allows (a field holds text, not elements)"
    )]
    TooDeep { element: String },
    #[error("unexpected element <{found}> inside <{parent}>")]
    UnexpectedElement { parent: String, found: String },
    #[error("unexpected text {text:?} inside <{parent}>")]
    UnexpectedText { parent: String, text: String },
    #[error(
        "{name:?} is not a field name (ASCII letters, digits, '_', '-' or '.', starting with a letter or '_', at most 64)"
    )]
    BadFieldName { name: String },
    #[error("field <{field}> appears twice in {record}")]
    DuplicateField { field: String, record: String },
    #[error("field <{field}> is longer than {limit} bytes")]
    FieldTooLong { field: String, limit: usize },
    #[error("more than {limit} {what}")]
    TooMany { what: &'static str, limit: usize },
    #[error("the document ends before <{0}> is closed")]
    Truncated(String),
    #[error("content after the root element")]
    TrailingContent,
    #[error("{field}: base64 is invalid: {message}")]
    Base64 { field: String, message: String },
    #[error("envelope: {0}")]
    Envelope(String),
    #[error("JSON: {0}")]
    Json(String),
}
