//! The business flows, each driven by signed vouchers, the libraries and the books.
//!
//! - [`direct`]: direct payment (财政直接支付, DOMAIN §3.2): finance issues a 5201 against
//!   its direct quota, the agent bank pays first and returns a sealed receipt, finance
//!   books the receipt.
//! - [`batch`]: salary and batch 5201s (BusinessTypeCode 3/4) paid row by row, the unpaid
//!   rows restored to finance's plan once; a large batch travels as a master and 8207s carrying
//!   its rows, each 8207 answered by its own receipt.
//! - [`authorized`]: authorized payment (财政授权支付, DOMAIN §3.3): a unit's 8202, paid by the bank against the unit's plan quota.
//! - [`clearing`]: the agent bank's clearing request (申请划款, 2301) and PBOC's check —
//!   only paid and receipted vouchers, each cleared once, details adding up to the master
//!   (防止先清算后支付) — against the clearing quota, answered by a sealed receipt or a return.
//! - [`refund`]: refunds (退款, §3.4): the bank's 2203/2204 to finance and 2302 to PBOC,
//!   restoring plan and clearing quota once per payment.
//! - [`returns`]: returns (退回) and voids (作废, §3.5), restoring what the voucher consumed,
//!   exactly once whatever the cause.
//! - [`reconcile`]: daily reconciliation (对账, §3.6): 3502, 3507/2507, 5501–5503; counts
//!   and sums compared, every difference listed with its voucher.
//! - [`quota`]: finance's clearing-quota notices (5106/5108, DOMAIN §3.1 step 2): PBOC checks and books them on its clearing quota (never below zero) and returns a sealed receipt.

pub(crate) mod common;

pub mod authorized;
pub mod batch;
pub mod clearing;
pub mod direct;
pub mod quota;
pub mod reconcile;
pub mod refund;
pub mod returns;
