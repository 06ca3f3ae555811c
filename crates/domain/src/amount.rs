//! Money: an amount in fen (分, 1/100 yuan) held in an `i64`.

use std::fmt;
use std::str::FromStr;

/// Most integer digits the standard allows in an amount (yuan part).
pub const MAX_INTEGER_DIGITS: usize = 15;

/// An amount of money in fen. The field is private: an `Amount` is only made by parsing
/// the standard's text form or from a fen count, so it is always in range.
///
/// The standard's text form is yuan with an optional sign, 1–15 integer digits without
/// leading zeros, a point and exactly two decimals, without separators: `-1234.50`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Amount(i64);

/// Why a text is not an amount.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("empty amount")]
    Empty,
    #[error("an amount is yuan with exactly two decimals, like 1234.50")]
    Format,
    #[error("an amount has at most {MAX_INTEGER_DIGITS} integer digits")]
    TooManyDigits,
    #[error("an amount's integer part must not start with 0")]
    LeadingZero,
    #[error("amount out of range")]
    Overflow,
}

impl Amount {
    /// Zero yuan.
    pub const ZERO: Amount = Amount(0);
    /// The largest amount the text form can hold: 999,999,999,999,999.99 yuan.
    pub const MAX: Amount = Amount(99_999_999_999_999_999);
    /// The smallest amount the text form can hold.
    pub const MIN: Amount = Amount(-99_999_999_999_999_999);

    /// An amount of `fen`; refused outside what the text form can hold.
    pub fn from_fen(fen: i64) -> Result<Amount, AmountError> {
        if (Self::MIN.0..=Self::MAX.0).contains(&fen) {
            Ok(Amount(fen))
        } else {
            Err(AmountError::Overflow)
        }
    }

    /// The amount in fen.
    pub fn fen(self) -> i64 {
        self.0
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }

    pub fn is_positive(self) -> bool {
        self.0 > 0
    }

    pub fn is_negative(self) -> bool {
        self.0 < 0
    }

    /// Sum, refused when it leaves the text form's range.
    pub fn checked_add(self, other: Amount) -> Option<Amount> {
        self.0
            .checked_add(other.0)
            .and_then(|f| Amount::from_fen(f).ok())
    }

    /// Difference, refused when it leaves the text form's range.
    pub fn checked_sub(self, other: Amount) -> Option<Amount> {
        self.0
            .checked_sub(other.0)
            .and_then(|f| Amount::from_fen(f).ok())
    }

    /// The negated amount (always in range: the range is symmetric).
    pub fn negated(self) -> Amount {
        Amount(-self.0)
    }
}

impl FromStr for Amount {
    type Err = AmountError;

    fn from_str(text: &str) -> Result<Amount, AmountError> {
        let bytes = text.as_bytes();
        if bytes.is_empty() {
            return Err(AmountError::Empty);
        }
        let (negative, digits) = match bytes[0] {
            b'-' => (true, &bytes[1..]),
            b'+' => (false, &bytes[1..]),
            _ => (false, bytes),
        };
        let point = digits.len().checked_sub(3).ok_or(AmountError::Format)?;
        let (integer, fraction) = (&digits[..point], &digits[point..]);
        if integer.is_empty()
            || fraction[0] != b'.'
            || !fraction[1..].iter().all(u8::is_ascii_digit)
            || !integer.iter().all(u8::is_ascii_digit)
        {
            return Err(AmountError::Format);
        }
        if integer.len() > MAX_INTEGER_DIGITS {
            return Err(AmountError::TooManyDigits);
        }
        if integer.len() > 1 && integer[0] == b'0' {
            return Err(AmountError::LeadingZero);
        }
        // At most 17 digits in all: fits an i64 without overflow.
        let fen = integer
            .iter()
            .chain(&fraction[1..])
            .fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0'));
        Ok(Amount(if negative { -fen } else { fen }))
    }
}

impl fmt::Display for Amount {
    /// The standard's text form: `-1234.50`; never a `+`, never `-0.00`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        write!(f, "{sign}{}.{:02}", abs / 100, abs % 100)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_the_standard_form() {
        assert_eq!("0.00".parse::<Amount>().unwrap().fen(), 0);
        assert_eq!("1234.50".parse::<Amount>().unwrap().fen(), 123_450);
        assert_eq!("-0.01".parse::<Amount>().unwrap().fen(), -1);
        assert_eq!("+7.00".parse::<Amount>().unwrap().fen(), 700);
        assert_eq!("999999999999999.99".parse::<Amount>().unwrap(), Amount::MAX);
        assert_eq!(
            "-999999999999999.99".parse::<Amount>().unwrap(),
            Amount::MIN
        );
    }

    #[test]
    fn refuses_everything_else() {
        for (text, err) in [
            ("", AmountError::Empty),
            ("1.5", AmountError::Format),
            ("1", AmountError::Format),
            ("1.500", AmountError::Format),
            (".50", AmountError::Format),
            ("1,000.00", AmountError::Format),
            ("1e3", AmountError::Format),
            ("NaN", AmountError::Format),
            ("inf", AmountError::Format),
            (" 1.00", AmountError::Format),
            ("1.00 ", AmountError::Format),
            ("--1.00", AmountError::Format),
            ("-", AmountError::Format),
            ("１.００", AmountError::Format),
            ("1000000000000000.00", AmountError::TooManyDigits),
            ("99999999999999999999999.00", AmountError::TooManyDigits),
            ("01.00", AmountError::LeadingZero),
        ] {
            assert_eq!(text.parse::<Amount>(), Err(err), "{text:?}");
        }
    }

    #[test]
    fn formats_without_plus_or_negative_zero() {
        assert_eq!("-0.00".parse::<Amount>().unwrap().to_string(), "0.00");
        assert_eq!("+1.05".parse::<Amount>().unwrap().to_string(), "1.05");
        assert_eq!(Amount::from_fen(-5).unwrap().to_string(), "-0.05");
    }

    #[test]
    fn arithmetic_is_checked() {
        assert_eq!(Amount::MAX.checked_add(Amount::from_fen(1).unwrap()), None);
        assert_eq!(Amount::MIN.checked_sub(Amount::from_fen(1).unwrap()), None);
        assert_eq!(
            Amount::from_fen(Amount::MAX.fen() + 1),
            Err(AmountError::Overflow)
        );
    }

    proptest! {
        #[test]
        fn text_round_trips(fen in Amount::MIN.fen()..=Amount::MAX.fen()) {
            let amount = Amount::from_fen(fen).unwrap();
            prop_assert_eq!(amount.to_string().parse::<Amount>().unwrap(), amount);
        }
    }
}
