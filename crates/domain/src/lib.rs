//! Domain types of treasury centralized payment (国库集中支付).
//!
//! Every type here is parsed, not validated: a constructor returns `Result`, and once a
//! value exists it is valid. The crate knows money in fen, codes, administrative divisions
//! and budget classifications. It never does I/O, never reads the clock, never sees SQL
//! or HTTP.

mod amount;
mod code;
mod date;
mod division;
mod text;

pub use amount::{Amount, AmountError};
pub use code::{
    AccountNo, BankNo, BusinessType, CodeError, EcoClass, FinOrgCode, FuncClass, FundType, PayType,
    StYear, SubjectLevel, TreCode, VoucherNo, VtCode,
};
pub use date::{BizDate, DateError};
pub use division::{AdmDivCode, DivisionLevel};
pub use text::{TextError, check_text, gbk_len};
