//! The business flows of issue 5, each driven by signed vouchers, the libraries and the
//! books.
//!
//! - [`direct`]: direct payment (财政直接支付, DOMAIN §3.2): finance issues a 5201 against
//!   its direct quota, the agent bank pays first and returns a sealed receipt, finance
//!   books the receipt.

pub mod direct;
