//! Texts as the standard counts them: lengths in GBK bytes.

/// Why a text is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    #[error("{len} GBK bytes, at most {max} allowed")]
    TooLong { len: usize, max: usize },
    #[error("control character U+{0:04X} is not allowed")]
    Control(u32),
}

/// The length of `text` in GBK bytes, as the standard counts field lengths: one byte for
/// ASCII, two for a character GBK has. A character GBK lacks is counted as the four bytes
/// GB 18030 gives it, so that such a text never passes as shorter than it is.
pub fn gbk_len(text: &str) -> usize {
    text.chars()
        .map(|c| match c as u32 {
            0..=0x7F => 1,
            // U+0080 and U+20AC are single bytes in the WHATWG GBK encoder, but the
            // standard's GBK has no such bytes; count them as two.
            _ if in_gbk(c) => 2,
            _ => 4,
        })
        .sum()
}

fn in_gbk(c: char) -> bool {
    let mut buf = [0u8; 4];
    let s = c.encode_utf8(&mut buf);
    let (_, _, unmappable) = encoding_rs::GBK.encode(s);
    !unmappable
}

/// A text field's content check: no control characters (tab, CR and LF aside) and at
/// most `max_gbk_bytes` GBK bytes.
pub fn check_text(text: &str, max_gbk_bytes: usize) -> Result<(), TextError> {
    if let Some(c) = text
        .chars()
        .find(|c| c.is_control() && !matches!(c, '\t' | '\r' | '\n'))
    {
        return Err(TextError::Control(c as u32));
    }
    let len = gbk_len(text);
    if len > max_gbk_bytes {
        return Err(TextError::TooLong {
            len,
            max: max_gbk_bytes,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_gbk_bytes() {
        assert_eq!(gbk_len("abc"), 3);
        assert_eq!(gbk_len("国库"), 4);
        assert_eq!(gbk_len("国库A1"), 6);
        assert_eq!(gbk_len("😀"), 4);
        assert_eq!(gbk_len(""), 0);
    }

    #[test]
    fn thirty_hanzi_fill_a_sixty_byte_name() {
        let name = "国".repeat(30);
        assert_eq!(check_text(&name, 60), Ok(()));
        assert_eq!(
            check_text(&format!("{name}a"), 60),
            Err(TextError::TooLong { len: 61, max: 60 })
        );
    }

    #[test]
    fn refuses_control_characters() {
        assert_eq!(check_text("a\u{1}b", 60), Err(TextError::Control(1)));
        assert_eq!(check_text("a\tb\r\n", 60), Ok(()));
    }
}
