//! The business flows, each driven by signed vouchers, the libraries and the books.
//!
//! - [`direct`]: direct payment (财政直接支付, DOMAIN §3.2): finance issues a 5201 against
//!   its direct quota, the agent bank pays first and returns a sealed receipt, finance
//!   books the receipt.
//! - [`clearing`]: the agent bank's clearing request (申请划款, 2301) and PBOC's check —
//!   only paid and receipted vouchers, each cleared once, details adding up to the master
//!   (防止先清算后支付) — against the clearing quota, answered by a sealed receipt or a return.

pub mod clearing;
pub mod direct;
