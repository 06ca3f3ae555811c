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
///
/// Every field of every received voucher is measured, so this is on the hot path: ASCII
/// and the CJK Unified Ideographs GBK holds whole (U+4E00..=U+9FA5) are counted without
/// the encoder, and any other character is encoded alone into a stack buffer.
pub fn gbk_len(text: &str) -> usize {
    if text.is_ascii() {
        return text.len();
    }
    text.chars()
        .map(|c| match c as u32 {
            0..=0x7F => 1,
            GBK_HANZI_FIRST..=GBK_HANZI_LAST => 2,
            // U+0080 and U+20AC are single bytes in the WHATWG GBK encoder, but the
            // standard's GBK has no such bytes; count them as two.
            _ if in_gbk(c) => 2,
            _ => 4,
        })
        .sum()
}

/// GBK holds every CJK Unified Ideograph of Unicode 1.1, U+4E00 to U+9FA5 (checked against
/// the encoder by a test below).
const GBK_HANZI_FIRST: u32 = 0x4E00;
const GBK_HANZI_LAST: u32 = 0x9FA5;

fn in_gbk(c: char) -> bool {
    let mut utf8 = [0u8; 4];
    let mut out = [0u8; 8];
    let mut encoder = encoding_rs::GBK.new_encoder();
    let (result, _, _) =
        encoder.encode_from_utf8_without_replacement(c.encode_utf8(&mut utf8), &mut out, true);
    result == encoding_rs::EncoderResult::InputEmpty
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
        assert_eq!(gbk_len("€·"), 4);
    }

    /// The shortcut for U+4E00..=U+9FA5 says what the encoder says of each of them.
    #[test]
    fn the_hanzi_block_is_whole_in_gbk() {
        for cp in GBK_HANZI_FIRST..=GBK_HANZI_LAST {
            let c = char::from_u32(cp).expect("a scalar value");
            let mut utf8 = [0; 4];
            let (bytes, _, unmappable) = encoding_rs::GBK.encode(c.encode_utf8(&mut utf8));
            assert!(!unmappable && bytes.len() == 2, "U+{cp:04X}");
            assert!(in_gbk(c), "U+{cp:04X}");
        }
        // Just outside the block: a later ideograph GBK lacks.
        assert!(!in_gbk('\u{9FA6}'));
        assert_eq!(gbk_len("\u{9FA6}"), 4);
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
