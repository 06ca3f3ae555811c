//! The parties of treasury payment at work: what each node (finance, PBOC, agent bank,
//! budget units' counter) does with vouchers.
//!
//! - [`stamping`]: signing, sealing and verifying vouchers at the seal positions their
//!   type asks for — the bridge between the voucher standard and the security support
//!   control (安全支撑控件).
//! - [`exchange`]: the exchange protocol between libraries, in memory and over HTTPS with
//!   mutual TLS; every received voucher is verified before it is stored. [`outbox`]
//!   delivers what a node sent; [`status_sync`] asks receivers what they did with it.
//! - [`flows`]: the business flows, each one step per received voucher.
//! - [`party`]: one party — store, staff keys and seals, link, worker — dispatching every
//!   read voucher to its flow step; [`demo`] runs the demo province in one process,
//!   [`serve`] one party as its own process.
//! - [`access`]: posts, segregation of duties, divisions, business windows, passwords;
//!   [`api`]: the HTTP JSON API; [`bench`]: `guoku bench e2e`.
//!
//! `node` sits above `voucher`, `seal`, `ledger` and `store`; the binary sits above it.

pub mod access;
pub mod api;
pub mod audit;
pub mod audit_archive;
pub mod bench;
pub mod config;
pub mod demo;
pub mod exchange;
pub mod flows;
pub mod outbox;
pub mod party;
pub mod portal;
pub mod serve;
pub mod stamping;
pub mod status_sync;
