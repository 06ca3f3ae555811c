//! The ledger engine of guoku: accounts and transfers in fen, as a pure, deterministic
//! state machine in the spirit of TigerBeetle.
//!
//! **This crate never sees SQL, HTTP or the clock**, nor randomness or any other I/O. The
//! caller passes everything in, including `now`, and stores the [`State`] it gets back; so
//! replaying the same batches from the same state gives the same results and an equal state.
//!
//! # Model
//! - An [`Account`] lives on one *ledger* (a `u32` book, e.g. one per AdmDivCode and year)
//!   and holds four `u128` balances in fen: `debits_pending`, `debits_posted`,
//!   `credits_pending`, `credits_posted`. A limit flag makes it a quota that cannot be
//!   overspent ([`AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS`]).
//! - A [`Transfer`] debits one account and credits another of the same ledger by the same
//!   amount, so each ledger's debits always equal its credits. Two-phase transfers reserve
//!   with [`TransferFlags::PENDING`], then post (all or less) or void the reservation; a
//!   pending transfer with a timeout expires once `now` reaches its deadline.
//! - Events come in batches ([`State::create_accounts`], [`State::create_transfers`]) with
//!   one result code per event. A refused event changes nothing. Events flagged `LINKED`
//!   chain with the next one and apply all or nothing.
//! - Ids are chosen by the client. Resending an event is idempotent (`Exists`); the same id
//!   with different fields is refused naming the field. History is immutable: corrections
//!   are new transfers.
//! - Invariants (money conserved per ledger, no limit-flagged account past its limit) are
//!   asserted after every event in release builds too, in O(1) thanks to running per-ledger
//!   totals; [`State::check_invariants`] re-derives everything with a full scan.
//!
//! ```
//! use guoku_ledger::{AccountFlags, CreateTransferResult, NewAccount, State, Transfer};
//!
//! let mut state = State::new();
//! let quota = NewAccount { id: 1, ledger: 7, code: 1, flags: AccountFlags::NONE, ..Default::default() };
//! let payee = NewAccount { id: 2, ledger: 7, code: 2, ..Default::default() };
//! state.create_accounts(&[quota, payee]).unwrap();
//!
//! let pay = Transfer { id: 10, debit_account_id: 1, credit_account_id: 2, amount: 1_500, ledger: 7, code: 1, ..Default::default() };
//! assert_eq!(state.create_transfers(100, &[pay]).unwrap(), [CreateTransferResult::Ok]);
//! assert_eq!(state.create_transfers(101, &[pay]).unwrap(), [CreateTransferResult::Exists]);
//! assert_eq!(state.account(2).map(|a| a.credits_posted), Some(1_500));
//! state.check_invariants().unwrap();
//! ```

mod account;
pub mod bench;
mod flags;
mod hash;
mod state;
mod transfer;

pub use account::{Account, AccountFlags, CreateAccountResult, NewAccount};
pub use state::{BATCH_MAX, BatchError, InvariantViolation, LedgerTotals, State, Sum256};
pub use transfer::{CreateTransferResult, PendingStatus, Transfer, TransferFlags, TransferRecord};
