//! Codes of the standard: years, voucher types and numbers, banks, accounts and the
//! budget classifications.

use std::fmt;
use std::str::FromStr;

/// Why a text is not a valid code. The payload names what was expected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    #[error("expected {0}")]
    Format(&'static str),
    #[error("not a known {0}")]
    Unknown(&'static str),
}

fn all_digits(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

/// A string-backed code whose constructor checks a rule once.
macro_rules! string_code {
    ($(#[$doc:meta])* $name:ident, $check:expr) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = CodeError;
            fn from_str(text: &str) -> Result<Self, CodeError> {
                let check: fn(&str) -> Result<(), CodeError> = $check;
                check(text)?;
                Ok($name(text.to_owned()))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

string_code!(
    /// Voucher type code (凭证类型), four digits: `5201`.
    VtCode,
    |t| if t.len() == 4 && all_digits(t) { Ok(()) } else { Err(CodeError::Format("four digits")) }
);

const VOUCHER_NO_MAX_LEN: usize = 20;

string_code!(
    /// Voucher number (凭证号): 1–20 ASCII letters, digits, `-` or `_`. Unique per
    /// (AdmDivCode, StYear, VtCode).
    VoucherNo,
    |t| {
        if t.is_empty() || t.len() > VOUCHER_NO_MAX_LEN {
            Err(CodeError::Format("1 to 20 characters"))
        } else if !t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            Err(CodeError::Format("letters, digits, '-' or '_'"))
        } else {
            Ok(())
        }
    }
);

impl VoucherNo {
    /// Most bytes a voucher number may have; some types allow fewer (5106: 17).
    pub const MAX_LEN: usize = VOUCHER_NO_MAX_LEN;
}

string_code!(
    /// Bank number (行号, CNAPS participant code): 12 digits.
    BankNo,
    |t| if t.len() == 12 && all_digits(t) { Ok(()) } else { Err(CodeError::Format("12 digits")) }
);

string_code!(
    /// Account number: 1–32 of `0-9`, `A-Z` and `-`.
    AccountNo,
    |t| {
        if !t.is_empty() && t.len() <= 32 && t.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_uppercase() || b == b'-') {
            Ok(())
        } else {
            Err(CodeError::Format("1 to 32 of 0-9, A-Z and '-'"))
        }
    }
);

string_code!(
    /// Treasury code (国库代码): 10 digits, `0900000000`.
    TreCode,
    |t| if t.len() == 10 && all_digits(t) { Ok(()) } else { Err(CodeError::Format("10 digits")) }
);

string_code!(
    /// Finance organisation code (财政机关代码): 1–12 digits.
    FinOrgCode,
    |t| if t.len() <= 12 && all_digits(t) { Ok(()) } else { Err(CodeError::Format("1 to 12 digits")) }
);

string_code!(
    /// Economic classification (支出经济分类): 类 (3 digits) or 类+款 (5 digits), `30101`.
    EcoClass,
    |t| if matches!(t.len(), 3 | 5) && all_digits(t) { Ok(()) } else { Err(CodeError::Format("3 or 5 digits")) }
);

string_code!(
    /// Fund type (资金性质): 1–6 digits starting with 1, 2, 3, 8 or 9; `1` is the default.
    FundType,
    |t| {
        if t.len() > 6 || !all_digits(t) {
            Err(CodeError::Format("1 to 6 digits"))
        } else if !matches!(t.as_bytes()[0], b'1' | b'2' | b'3' | b'8' | b'9') {
            Err(CodeError::Unknown("fund type (must start with 1, 2, 3, 8 or 9)"))
        } else {
            Ok(())
        }
    }
);

/// The budget year (预算年度), four digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StYear(u16);

impl StYear {
    pub fn get(self) -> u16 {
        self.0
    }
}

impl FromStr for StYear {
    type Err = CodeError;
    fn from_str(text: &str) -> Result<StYear, CodeError> {
        if text.len() != 4 || !all_digits(text) {
            return Err(CodeError::Format("a four-digit year"));
        }
        let year: u16 = text
            .parse()
            .map_err(|_| CodeError::Format("a four-digit year"))?;
        if !(1990..=2999).contains(&year) {
            return Err(CodeError::Format("a year from 1990 to 2999"));
        }
        Ok(StYear(year))
    }
}

impl fmt::Display for StYear {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}", self.0)
    }
}

/// Level of a function classification code (科目级次).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SubjectLevel {
    /// 类, 3 digits.
    Class = 1,
    /// 款, 5 digits.
    Kind = 2,
    /// 项, 7 digits.
    Item = 3,
}

/// Function classification (支出功能分类): 类 3 digits + 款 2 + 项 2, e.g. `2010101`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FuncClass(String);

impl FuncClass {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn level(&self) -> SubjectLevel {
        match self.0.len() {
            3 => SubjectLevel::Class,
            5 => SubjectLevel::Kind,
            _ => SubjectLevel::Item,
        }
    }

    /// The code one level up (款 → 类, 项 → 款); none for a 类.
    pub fn parent(&self) -> Option<FuncClass> {
        match self.level() {
            SubjectLevel::Class => None,
            SubjectLevel::Kind => Some(FuncClass(self.0[..3].to_owned())),
            SubjectLevel::Item => Some(FuncClass(self.0[..5].to_owned())),
        }
    }
}

impl FromStr for FuncClass {
    type Err = CodeError;
    fn from_str(text: &str) -> Result<FuncClass, CodeError> {
        if matches!(text.len(), 3 | 5 | 7) && all_digits(text) && !text.starts_with('0') {
            Ok(FuncClass(text.to_owned()))
        } else {
            Err(CodeError::Format(
                "3, 5 or 7 digits (类/款/项), not starting with 0",
            ))
        }
    }
}

impl fmt::Display for FuncClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Pay type (支付方式).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PayType {
    /// 财政直接支付, `11` (or `001001`).
    Direct,
    /// 财政授权支付, `12` (or `001002`).
    Authorized,
    /// 实拨, `91` (or `002`).
    Allocation,
}

impl PayType {
    /// The two-digit code.
    pub fn code(self) -> &'static str {
        match self {
            PayType::Direct => "11",
            PayType::Authorized => "12",
            PayType::Allocation => "91",
        }
    }
}

impl FromStr for PayType {
    type Err = CodeError;
    fn from_str(text: &str) -> Result<PayType, CodeError> {
        match text {
            "11" | "001001" => Ok(PayType::Direct),
            "12" | "001002" => Ok(PayType::Authorized),
            "91" | "002" => Ok(PayType::Allocation),
            _ => Err(CodeError::Unknown("pay type (11, 12, 91)")),
        }
    }
}

/// Business type (业务类型) of a payment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BusinessType {
    /// 单笔, `1`.
    Single,
    /// 工资, `3`: details in an 8207 list.
    Salary,
    /// 批量, `4`: details in an 8207 list.
    Batch,
}

impl BusinessType {
    pub fn code(self) -> &'static str {
        match self {
            BusinessType::Single => "1",
            BusinessType::Salary => "3",
            BusinessType::Batch => "4",
        }
    }
}

impl FromStr for BusinessType {
    type Err = CodeError;
    fn from_str(text: &str) -> Result<BusinessType, CodeError> {
        match text {
            "1" => Ok(BusinessType::Single),
            "3" => Ok(BusinessType::Salary),
            "4" => Ok(BusinessType::Batch),
            _ => Err(CodeError::Unknown("business type (1, 3, 4)")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_codes() {
        assert!("5201".parse::<VtCode>().is_ok());
        assert!("PAY-2025_0001".parse::<VoucherNo>().is_ok());
        assert!("102100099996".parse::<BankNo>().is_ok());
        assert!("1901-0000-ABC".parse::<AccountNo>().is_ok());
        assert!("0900000000".parse::<TreCode>().is_ok());
        assert!("430000000001".parse::<FinOrgCode>().is_ok());
        assert!("30101".parse::<EcoClass>().is_ok());
        assert!("1".parse::<FundType>().is_ok());
        assert_eq!("2025".parse::<StYear>().unwrap().get(), 2025);
        assert_eq!("001002".parse::<PayType>(), Ok(PayType::Authorized));
        assert_eq!("3".parse::<BusinessType>(), Ok(BusinessType::Salary));
    }

    #[test]
    fn refuses_invalid_codes() {
        assert!("520".parse::<VtCode>().is_err());
        assert!("52O1".parse::<VtCode>().is_err());
        assert!("".parse::<VoucherNo>().is_err());
        assert!("A".repeat(21).parse::<VoucherNo>().is_err());
        assert!("凭证1".parse::<VoucherNo>().is_err());
        assert!("10210009999".parse::<BankNo>().is_err());
        assert!("abc".parse::<AccountNo>().is_err());
        assert!("A".repeat(33).parse::<AccountNo>().is_err());
        assert!("090000000".parse::<TreCode>().is_err());
        assert!("1234567890123".parse::<FinOrgCode>().is_err());
        assert!("3010".parse::<EcoClass>().is_err());
        assert!("4".parse::<FundType>().is_err());
        assert!("1989".parse::<StYear>().is_err());
        assert!("13".parse::<PayType>().is_err());
        assert!("2".parse::<BusinessType>().is_err());
        assert!("201010".parse::<FuncClass>().is_err());
        assert!("0101010".parse::<FuncClass>().is_err());
    }

    #[test]
    fn function_class_levels() {
        let item: FuncClass = "2010101".parse().unwrap();
        assert_eq!(item.level(), SubjectLevel::Item);
        let kind = item.parent().unwrap();
        assert_eq!(kind.as_str(), "20101");
        assert_eq!(kind.parent().unwrap().as_str(), "201");
        assert_eq!(kind.parent().unwrap().parent(), None);
    }
}
