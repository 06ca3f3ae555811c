//! Helpers the voucher tests share.

/// `text` with the base64 after the first `open` (up to the next `<`) broken into CRLF
/// lines of 76, as MIME writers break it.
pub fn wrap_base64(text: &str, open: &str) -> String {
    let start = text.find(open).expect("the element is there") + open.len();
    let end = start + text[start..].find('<').expect("the element ends");
    let lines: Vec<&str> = text.as_bytes()[start..end]
        .chunks(76)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!("{}{}{}", &text[..start], lines.join("\r\n"), &text[end..])
}
