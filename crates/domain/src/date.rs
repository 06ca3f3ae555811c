//! Business dates in the standard's `yyyyMMdd` form.

use std::fmt;
use std::str::FromStr;

/// A calendar date as the standard writes it (`20250131`). The clock is not read here:
/// whoever needs "today" passes it in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BizDate(time::Date);

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DateError {
    #[error("a date is 8 digits, yyyyMMdd")]
    Format,
    #[error("no such calendar date")]
    NoSuchDate,
}

impl BizDate {
    pub fn from_ymd(year: i32, month: u8, day: u8) -> Result<BizDate, DateError> {
        let month = time::Month::try_from(month).map_err(|_| DateError::NoSuchDate)?;
        time::Date::from_calendar_date(year, month, day)
            .map(BizDate)
            .map_err(|_| DateError::NoSuchDate)
    }

    pub fn year(self) -> i32 {
        self.0.year()
    }

    pub fn month(self) -> u8 {
        self.0.month() as u8
    }

    pub fn day(self) -> u8 {
        self.0.day()
    }

    /// The same date as a `time::Date`.
    pub fn as_date(self) -> time::Date {
        self.0
    }
}

impl From<time::Date> for BizDate {
    fn from(date: time::Date) -> BizDate {
        BizDate(date)
    }
}

impl FromStr for BizDate {
    type Err = DateError;

    fn from_str(text: &str) -> Result<BizDate, DateError> {
        if text.len() != 8 || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(DateError::Format);
        }
        let n = |r: std::ops::Range<usize>| text[r].parse::<i32>().map_err(|_| DateError::Format);
        let (y, m, d) = (n(0..4)?, n(4..6)?, n(6..8)?);
        if y < 1900 {
            return Err(DateError::NoSuchDate);
        }
        BizDate::from_ymd(y, m as u8, d as u8)
    }
}

impl fmt::Display for BizDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}{:02}{:02}", self.year(), self.month(), self.day())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats() {
        let d: BizDate = "20240229".parse().unwrap();
        assert_eq!((d.year(), d.month(), d.day()), (2024, 2, 29));
        assert_eq!(d.to_string(), "20240229");
    }

    #[test]
    fn refuses_bad_dates() {
        for (text, err) in [
            ("20230229", DateError::NoSuchDate),
            ("20241301", DateError::NoSuchDate),
            ("20240100", DateError::NoSuchDate),
            ("00010101", DateError::NoSuchDate),
            ("2024-01-01", DateError::Format),
            ("2024011", DateError::Format),
            ("2024O101", DateError::Format),
        ] {
            assert_eq!(text.parse::<BizDate>(), Err(err), "{text}");
        }
    }
}
