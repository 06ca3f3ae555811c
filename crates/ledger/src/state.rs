//! The state of the engine and the pure functions that change it.

use std::collections::BTreeSet;
use std::collections::hash_map::Entry;

use thiserror::Error;

use crate::account::{Account, AccountFlags, CreateAccountResult, NewAccount};
use crate::hash::FxHashMap;
use crate::transfer::{
    CreateTransferResult, PendingStatus, Transfer, TransferFlags, TransferRecord,
};

mod parts;

/// The most events one batch may hold (TigerBeetle's limit, for the same reason: a batch is
/// one message and one unit of work, and every limit is explicit).
pub const BATCH_MAX: usize = 8190;

/// Why a whole batch was refused before any of its events was looked at. Nothing changed.
///
/// Both are caller bugs: retrying the same call cannot help.
#[derive(Clone, Copy, Debug, Error, PartialEq, Eq)]
pub enum BatchError {
    /// The batch holds more than [`BATCH_MAX`] events.
    #[error("batch of {len} events is above the limit of {max}")]
    TooLarge {
        /// Events in the batch.
        len: usize,
        /// [`BATCH_MAX`].
        max: usize,
    },
    /// `now` is before the `now` of an earlier batch: the caller's clock went backwards.
    #[error("now ({now}) is before the now of an earlier batch ({last})")]
    NowWentBackwards {
        /// The `now` passed.
        now: u64,
        /// The latest `now` the state has seen.
        last: u64,
    },
}

/// A broken invariant found by [`State::check_invariants`]. The state must not be used.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum InvariantViolation {
    /// A ledger's debits and credits differ: money was created or destroyed.
    #[error("ledger {ledger}: debits and credits differ")]
    LedgerUnbalanced {
        /// The ledger.
        ledger: u32,
    },
    /// A ledger's running totals are not the sums of its accounts.
    #[error("ledger {ledger}: running totals differ from the sums of its accounts")]
    LedgerTotalsMismatch {
        /// The ledger.
        ledger: u32,
    },
    /// An account's balances are not what its transfers add up to.
    #[error("account {id}: balances differ from the sum of its transfers")]
    AccountBalances {
        /// The account.
        id: u128,
    },
    /// A limit-flagged account is past its limit.
    #[error("account {id}: past the limit its flags set")]
    AccountLimit {
        /// The account.
        id: u128,
    },
    /// An account's pending plus posted debits, or credits, overflow.
    #[error("account {id}: pending plus posted overflows")]
    AccountOverflow {
        /// The account.
        id: u128,
    },
    /// A stored transfer is inconsistent with the accounts or with its pending transfer.
    #[error("transfer {id}: {reason}")]
    Transfer {
        /// The transfer.
        id: u128,
        /// What is wrong.
        reason: &'static str,
    },
    /// The bookkeeping of pending transfers (deadline index, posts and voids) disagrees
    /// with the pending transfers.
    #[error("pending transfers: {reason}")]
    PendingBookkeeping {
        /// What is wrong.
        reason: &'static str,
    },
    /// The parts given to [`State::from_parts`] or [`State::from_subset`] hold the same
    /// account or transfer id twice.
    #[error("{what} {id} appears twice")]
    Duplicate {
        /// `"account"` or `"transfer"`.
        what: &'static str,
        /// The id.
        id: u128,
    },
}

/// An unsigned 256-bit sum, so that per-ledger totals of `u128` balances never overflow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sum256 {
    /// The high 128 bits.
    pub high: u128,
    /// The low 128 bits.
    pub low: u128,
}

impl Sum256 {
    /// The sum as a `u128`, if it fits.
    #[must_use]
    pub const fn to_u128(self) -> Option<u128> {
        if self.high == 0 { Some(self.low) } else { None }
    }

    #[inline]
    fn add(&mut self, amount: u128) {
        let (low, carry) = self.low.overflowing_add(amount);
        self.low = low;
        // 2^128 carries would need 2^128 accounts: impossible.
        self.high = self
            .high
            .checked_add(u128::from(carry))
            .expect("a 256-bit sum of u128 balances cannot overflow");
    }

    #[inline]
    fn sub(&mut self, amount: u128) {
        let (low, borrow) = self.low.overflowing_sub(amount);
        self.low = low;
        self.high = self
            .high
            .checked_sub(u128::from(borrow))
            .expect("ledger invariant: a running total never goes below zero");
    }
}

/// Running totals of one ledger, kept up to date by every event so that conservation of
/// money is checked in O(1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct LedgerTotals {
    /// Accounts on the ledger.
    pub accounts: u64,
    /// Σ `debits_pending` of its accounts.
    pub debits_pending: Sum256,
    /// Σ `debits_posted` of its accounts.
    pub debits_posted: Sum256,
    /// Σ `credits_pending` of its accounts.
    pub credits_pending: Sum256,
    /// Σ `credits_posted` of its accounts.
    pub credits_posted: Sum256,
}

impl LedgerTotals {
    /// Whether debits equal credits, pending and posted: money is conserved.
    #[must_use]
    pub fn is_balanced(&self) -> bool {
        self.debits_pending == self.credits_pending && self.debits_posted == self.credits_posted
    }

    fn add_account(&mut self, account: &Account) {
        self.accounts += 1;
        self.debits_pending.add(account.debits_pending);
        self.debits_posted.add(account.debits_posted);
        self.credits_pending.add(account.credits_pending);
        self.credits_posted.add(account.credits_posted);
    }

    /// Panics (in release builds too) if money was created or destroyed.
    #[inline]
    fn assert_balanced(&self, ledger: u32) {
        assert!(
            self.is_balanced(),
            "ledger invariant broken: ledger {ledger} debits differ from credits: {self:?}"
        );
    }
}

/// Adds where an invariant guarantees the sum fits; panics (in release builds too) if not.
#[inline]
fn inc(balance: u128, amount: u128) -> u128 {
    balance
        .checked_add(amount)
        .expect("ledger invariant broken: a checked balance overflowed")
}

/// Subtracts where an invariant guarantees `amount <= balance`; panics (in release builds
/// too) if not.
#[inline]
fn dec(balance: u128, amount: u128) -> u128 {
    balance
        .checked_sub(amount)
        .expect("ledger invariant broken: a balance would go below zero")
}

/// Panics (in release builds too) if a limit-flagged account is past its limit.
#[inline]
fn assert_within_limits(account: &Account) {
    assert!(
        account.within_limits(),
        "ledger invariant broken: account past its limit: {account:?}"
    );
}

/// The whole state of the engine: accounts, transfers, per-ledger totals and the index of
/// pending deadlines.
///
/// It is plain data: `Clone` takes a snapshot and `==` compares two states, so replaying the
/// same batches from equal states gives equal states.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct State {
    accounts: FxHashMap<u128, Account>,
    /// Every transfer in the order applied. Appending keeps writes sequential, and the
    /// index below holds only 32-byte slots, so a random id costs few cache misses.
    transfers: Vec<TransferRecord>,
    /// Transfer id → position in `transfers`.
    transfer_index: FxHashMap<u128, usize>,
    ledgers: FxHashMap<u32, LedgerTotals>,
    /// `(expires_at, id)` of every pending transfer with a timeout that is still pending.
    expiries: BTreeSet<(u64, u128)>,
    /// The latest `now` seen.
    now: u64,
}

/// An event of a batch, as the chain logic sees it.
trait Event {
    fn id(&self) -> u128;
    fn linked(&self) -> bool;
}

impl Event for NewAccount {
    fn id(&self) -> u128 {
        self.id
    }
    fn linked(&self) -> bool {
        self.flags.contains(AccountFlags::LINKED)
    }
}

impl Event for Transfer {
    fn id(&self) -> u128 {
        self.id
    }
    fn linked(&self) -> bool {
        self.flags.contains(TransferFlags::LINKED)
    }
}

/// A result code, as the chain logic sees it.
trait Outcome: Copy + Eq {
    const OK: Self;
    const LINKED_EVENT_FAILED: Self;
    const LINKED_EVENT_CHAIN_OPEN: Self;
    fn is_success(self) -> bool;
}

impl Outcome for CreateAccountResult {
    const OK: Self = Self::Ok;
    const LINKED_EVENT_FAILED: Self = Self::LinkedEventFailed;
    const LINKED_EVENT_CHAIN_OPEN: Self = Self::LinkedEventChainOpen;
    fn is_success(self) -> bool {
        Self::is_success(self)
    }
}

impl Outcome for CreateTransferResult {
    const OK: Self = Self::Ok;
    const LINKED_EVENT_FAILED: Self = Self::LinkedEventFailed;
    const LINKED_EVENT_CHAIN_OPEN: Self = Self::LinkedEventChainOpen;
    fn is_success(self) -> bool {
        Self::is_success(self)
    }
}

fn check_batch_len(len: usize) -> Result<(), BatchError> {
    if len > BATCH_MAX {
        Err(BatchError::TooLarge {
            len,
            max: BATCH_MAX,
        })
    } else {
        Ok(())
    }
}

impl State {
    /// An empty state.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty state with room for `accounts` accounts and `transfers` transfers, so that
    /// the maps need not grow while batches are applied.
    #[must_use]
    pub fn with_capacity(accounts: usize, transfers: usize) -> Self {
        Self {
            accounts: FxHashMap::with_capacity_and_hasher(accounts, Default::default()),
            transfers: Vec::with_capacity(transfers),
            transfer_index: FxHashMap::with_capacity_and_hasher(transfers, Default::default()),
            ..Self::default()
        }
    }

    /// The account `id`.
    #[must_use]
    pub fn account(&self, id: u128) -> Option<&Account> {
        self.accounts.get(&id)
    }

    /// The transfer `id`, with its fields resolved (see [`TransferRecord`]).
    #[must_use]
    pub fn transfer(&self, id: u128) -> Option<&TransferRecord> {
        let &index = self.transfer_index.get(&id)?;
        self.transfers.get(index)
    }

    fn transfer_mut(&mut self, id: u128) -> Option<&mut TransferRecord> {
        let &index = self.transfer_index.get(&id)?;
        self.transfers.get_mut(index)
    }

    /// Stores a new transfer whose id is not yet taken.
    fn push_transfer(&mut self, record: TransferRecord) {
        let previous = self
            .transfer_index
            .insert(record.transfer.id, self.transfers.len());
        assert!(
            previous.is_none(),
            "ledger invariant broken: a transfer id was reused"
        );
        self.transfers.push(record);
    }

    /// The running totals of `ledger`, if it has an account.
    #[must_use]
    pub fn ledger_totals(&self, ledger: u32) -> Option<&LedgerTotals> {
        self.ledgers.get(&ledger)
    }

    /// Every account, in no particular order.
    pub fn accounts(&self) -> impl Iterator<Item = &Account> {
        self.accounts.values()
    }

    /// Every transfer, in the order applied.
    pub fn transfers(&self) -> impl Iterator<Item = &TransferRecord> {
        self.transfers.iter()
    }

    /// Number of accounts.
    #[must_use]
    pub fn account_count(&self) -> usize {
        self.accounts.len()
    }

    /// Number of transfers.
    #[must_use]
    pub fn transfer_count(&self) -> usize {
        self.transfers.len()
    }

    /// The latest `now` passed to [`create_transfers`](Self::create_transfers).
    #[must_use]
    pub fn now(&self) -> u64 {
        self.now
    }

    /// Creates accounts, one result per event, in order.
    ///
    /// Events apply one after the other, so a later event sees the earlier ones. Consecutive
    /// events with [`AccountFlags::LINKED`] and the first one after them without it form a
    /// chain that applies all or nothing.
    ///
    /// # Errors
    /// [`BatchError::TooLarge`] if `batch` holds more than [`BATCH_MAX`] events; then nothing
    /// changed.
    pub fn create_accounts(
        &mut self,
        batch: &[NewAccount],
    ) -> Result<Vec<CreateAccountResult>, BatchError> {
        check_batch_len(batch.len())?;
        let results = self.run_batch(batch, Self::create_account, Self::undo_account);
        Ok(results)
    }

    /// Applies transfers at time `now`, one result per event, in order.
    ///
    /// First every pending transfer whose deadline is at or before `now` expires (its
    /// reservation is released), so an empty batch is a way to advance time. Then events
    /// apply one after the other, so a later event sees the earlier ones. Consecutive events
    /// with [`TransferFlags::LINKED`] and the first one after them without it form a chain
    /// that applies all or nothing. A refused event changes nothing.
    ///
    /// `now` is a plain number in whatever unit the caller uses for `timeout`s; the engine
    /// never reads a clock.
    ///
    /// # Errors
    /// [`BatchError::TooLarge`] if `batch` holds more than [`BATCH_MAX`] events;
    /// [`BatchError::NowWentBackwards`] if `now` is before the `now` of an earlier batch.
    /// Then nothing changed.
    ///
    /// # Panics
    /// Only if an invariant of the ledger is broken (money not conserved, an account past its
    /// limit), which is a bug in this crate: the caller must not carry on with this state.
    pub fn create_transfers(
        &mut self,
        now: u64,
        batch: &[Transfer],
    ) -> Result<Vec<CreateTransferResult>, BatchError> {
        check_batch_len(batch.len())?;
        if now < self.now {
            return Err(BatchError::NowWentBackwards {
                now,
                last: self.now,
            });
        }
        self.now = now;
        self.expire_pending_transfers(now);
        let results = self.run_batch(
            batch,
            |state, transfer| state.create_transfer(now, transfer),
            Self::undo_transfer,
        );
        Ok(results)
    }

    /// Runs the events of a batch with the linked-chain rules. `apply` must change nothing
    /// unless it returns `OK`; `undo` reverts one event that returned `OK`.
    fn run_batch<E: Event, R: Outcome>(
        &mut self,
        batch: &[E],
        mut apply: impl FnMut(&mut Self, &E) -> R,
        mut undo: impl FnMut(&mut Self, u128),
    ) -> Vec<R> {
        let mut results: Vec<R> = Vec::with_capacity(batch.len());
        // Index of the first event of the open chain, if any.
        let mut chain_start: Option<usize> = None;
        let mut chain_broken = false;
        // Ids applied so far in the open chain; allocates only if a batch has chains.
        let mut applied_in_chain: Vec<u128> = Vec::new();

        for (index, event) in batch.iter().enumerate() {
            let linked = event.linked();
            if chain_start.is_none() && linked {
                chain_start = Some(index);
                chain_broken = false;
                applied_in_chain.clear();
            }

            let result = if chain_broken {
                R::LINKED_EVENT_FAILED
            } else if linked && index + 1 == batch.len() {
                R::LINKED_EVENT_CHAIN_OPEN
            } else {
                apply(self, event)
            };

            if let Some(start) = chain_start {
                if !chain_broken {
                    if result == R::OK {
                        applied_in_chain.push(event.id());
                    } else if !result.is_success() {
                        chain_broken = true;
                        for &id in applied_in_chain.iter().rev() {
                            undo(self, id);
                        }
                        applied_in_chain.clear();
                        for earlier in &mut results[start..] {
                            *earlier = R::LINKED_EVENT_FAILED;
                        }
                    }
                }
                if !linked {
                    // This event closes the chain.
                    chain_start = None;
                    chain_broken = false;
                    applied_in_chain.clear();
                }
            }
            results.push(result);
        }
        results
    }

    fn create_account(&mut self, new: &NewAccount) -> CreateAccountResult {
        use CreateAccountResult as R;
        if new.id == 0 {
            return R::IdMustNotBeZero;
        }
        if new.id == u128::MAX {
            return R::IdMustNotBeIntMax;
        }
        if new.flags.contains(
            AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS
                | AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS,
        ) {
            return R::FlagsAreMutuallyExclusive;
        }
        if new.ledger == 0 {
            return R::LedgerMustNotBeZero;
        }
        if new.code == 0 {
            return R::CodeMustNotBeZero;
        }
        match self.accounts.entry(new.id) {
            Entry::Occupied(existing) => {
                let e = existing.get();
                if new.flags != e.flags {
                    R::ExistsWithDifferentFlags
                } else if new.user_data != e.user_data {
                    R::ExistsWithDifferentUserData
                } else if new.ledger != e.ledger {
                    R::ExistsWithDifferentLedger
                } else if new.code != e.code {
                    R::ExistsWithDifferentCode
                } else {
                    R::Exists
                }
            }
            Entry::Vacant(vacant) => {
                let account = vacant.insert(Account::new(new));
                self.ledgers
                    .entry(new.ledger)
                    .or_default()
                    .add_account(account);
                R::Ok
            }
        }
    }

    fn undo_account(&mut self, id: u128) {
        let account = self
            .accounts
            .remove(&id)
            .expect("ledger invariant broken: an account created in the open chain is gone");
        let Entry::Occupied(mut totals) = self.ledgers.entry(account.ledger) else {
            panic!("ledger invariant broken: an account's ledger has no totals");
        };
        // No transfer can have touched an account created in the same account batch.
        assert!(
            account.debits_pending == 0
                && account.debits_posted == 0
                && account.credits_pending == 0
                && account.credits_posted == 0,
            "ledger invariant broken: a new account has balances"
        );
        totals.get_mut().accounts -= 1;
        if totals.get().accounts == 0 {
            assert_eq!(
                *totals.get(),
                LedgerTotals::default(),
                "ledger invariant broken: a ledger without accounts has totals"
            );
            totals.remove();
        }
    }

    /// Releases every pending transfer whose deadline is at or before `now`.
    fn expire_pending_transfers(&mut self, now: u64) {
        while let Some(&(expires_at, id)) = self.expiries.first() {
            if expires_at > now {
                break;
            }
            self.expiries.pop_first();
            let record = self
                .transfer_mut(id)
                .expect("ledger invariant broken: an indexed pending transfer is gone");
            assert_eq!(
                record.status,
                PendingStatus::Pending,
                "ledger invariant broken: the deadline index holds a transfer that is not pending"
            );
            record.status = PendingStatus::Expired;
            let p = record.transfer;
            let [Some(dr), Some(cr)] = self
                .accounts
                .get_disjoint_mut([&p.debit_account_id, &p.credit_account_id])
            else {
                panic!("ledger invariant broken: a pending transfer's account is gone");
            };
            dr.debits_pending = dec(dr.debits_pending, p.amount);
            cr.credits_pending = dec(cr.credits_pending, p.amount);
            let totals = self
                .ledgers
                .get_mut(&p.ledger)
                .expect("ledger invariant broken: an account's ledger has no totals");
            totals.debits_pending.sub(p.amount);
            totals.credits_pending.sub(p.amount);
            totals.assert_balanced(p.ledger);
        }
    }

    fn create_transfer(&mut self, now: u64, t: &Transfer) -> CreateTransferResult {
        use CreateTransferResult as R;
        if t.id == 0 {
            return R::IdMustNotBeZero;
        }
        if t.id == u128::MAX {
            return R::IdMustNotBeIntMax;
        }
        let pending = t.flags.contains(TransferFlags::PENDING);
        let post = t.flags.contains(TransferFlags::POST_PENDING_TRANSFER);
        let void = t.flags.contains(TransferFlags::VOID_PENDING_TRANSFER);
        if u8::from(pending) + u8::from(post) + u8::from(void) > 1 {
            return R::FlagsAreMutuallyExclusive;
        }
        if post || void {
            return self.post_or_void_pending_transfer(now, t, post);
        }

        if t.pending_id != 0 {
            return R::PendingIdMustBeZero;
        }
        if t.debit_account_id == 0 {
            return R::DebitAccountIdMustNotBeZero;
        }
        if t.debit_account_id == u128::MAX {
            return R::DebitAccountIdMustNotBeIntMax;
        }
        if t.credit_account_id == 0 {
            return R::CreditAccountIdMustNotBeZero;
        }
        if t.credit_account_id == u128::MAX {
            return R::CreditAccountIdMustNotBeIntMax;
        }
        if t.debit_account_id == t.credit_account_id {
            return R::AccountsMustBeDifferent;
        }
        if !pending && t.timeout != 0 {
            return R::TimeoutReservedForPendingTransfer;
        }
        if t.amount == 0 {
            return R::AmountMustNotBeZero;
        }
        if t.ledger == 0 {
            return R::LedgerMustNotBeZero;
        }
        if t.code == 0 {
            return R::CodeMustNotBeZero;
        }

        let vacant = match self.transfer_index.entry(t.id) {
            Entry::Occupied(existing) => {
                return exists(t, &self.transfers[*existing.get()].transfer);
            }
            Entry::Vacant(vacant) => vacant,
        };
        // The two ids differ (checked above), so `get_disjoint_mut` cannot panic.
        let [dr, cr] = self
            .accounts
            .get_disjoint_mut([&t.debit_account_id, &t.credit_account_id]);
        let Some(dr) = dr else {
            return R::DebitAccountNotFound;
        };
        let Some(cr) = cr else {
            return R::CreditAccountNotFound;
        };
        if dr.ledger != cr.ledger {
            return R::AccountsMustHaveTheSameLedger;
        }
        if t.ledger != dr.ledger {
            return R::TransferMustHaveTheSameLedgerAsAccounts;
        }

        let amount = t.amount;
        // Every new balance is computed with checked arithmetic before anything changes.
        let (dr_pending, cr_pending, dr_posted, cr_posted) = if pending {
            let Some(dr_pending) = dr.debits_pending.checked_add(amount) else {
                return R::OverflowsDebitsPending;
            };
            let Some(cr_pending) = cr.credits_pending.checked_add(amount) else {
                return R::OverflowsCreditsPending;
            };
            (dr_pending, cr_pending, dr.debits_posted, cr.credits_posted)
        } else {
            let Some(dr_posted) = dr.debits_posted.checked_add(amount) else {
                return R::OverflowsDebitsPosted;
            };
            let Some(cr_posted) = cr.credits_posted.checked_add(amount) else {
                return R::OverflowsCreditsPosted;
            };
            (dr.debits_pending, cr.credits_pending, dr_posted, cr_posted)
        };
        let Some(dr_debits) = dr_pending.checked_add(dr_posted) else {
            return R::OverflowsDebits;
        };
        let Some(cr_credits) = cr_pending.checked_add(cr_posted) else {
            return R::OverflowsCredits;
        };
        let expires_at = if pending && t.timeout != 0 {
            let Some(expires_at) = now.checked_add(t.timeout) else {
                return R::OverflowsTimeout;
            };
            Some(expires_at)
        } else {
            None
        };
        if dr
            .flags
            .contains(AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS)
            && dr_debits > dr.credits_posted
        {
            return R::ExceedsCredits;
        }
        if cr
            .flags
            .contains(AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS)
            && cr_credits > cr.debits_posted
        {
            return R::ExceedsDebits;
        }

        // Apply: nothing below can be refused.
        dr.debits_pending = dr_pending;
        dr.debits_posted = dr_posted;
        cr.credits_pending = cr_pending;
        cr.credits_posted = cr_posted;
        assert_within_limits(dr);
        assert_within_limits(cr);
        let totals = self
            .ledgers
            .get_mut(&t.ledger)
            .expect("ledger invariant broken: an account's ledger has no totals");
        if pending {
            totals.debits_pending.add(amount);
            totals.credits_pending.add(amount);
        } else {
            totals.debits_posted.add(amount);
            totals.credits_posted.add(amount);
        }
        totals.assert_balanced(t.ledger);
        vacant.insert(self.transfers.len());
        self.transfers.push(TransferRecord {
            transfer: *t,
            timestamp: now,
            status: if pending {
                PendingStatus::Pending
            } else {
                PendingStatus::None
            },
        });
        if let Some(expires_at) = expires_at {
            self.expiries.insert((expires_at, t.id));
        }
        R::Ok
    }

    fn post_or_void_pending_transfer(
        &mut self,
        now: u64,
        t: &Transfer,
        post: bool,
    ) -> CreateTransferResult {
        use CreateTransferResult as R;
        if t.pending_id == 0 {
            return R::PendingIdMustNotBeZero;
        }
        if t.pending_id == u128::MAX {
            return R::PendingIdMustNotBeIntMax;
        }
        if t.pending_id == t.id {
            return R::PendingIdMustBeDifferent;
        }
        if t.timeout != 0 {
            return R::TimeoutReservedForPendingTransfer;
        }
        if let Some(existing) = self.transfer(t.id) {
            return self.post_or_void_exists(t, &existing.transfer);
        }
        let Some(pending_record) = self.transfer(t.pending_id) else {
            return R::PendingTransferNotFound;
        };
        let p = pending_record.transfer;
        let status = pending_record.status;
        let expires_at = pending_record.expires_at();
        if status == PendingStatus::None {
            return R::PendingTransferNotPending;
        }
        if t.debit_account_id != 0 && t.debit_account_id != p.debit_account_id {
            return R::PendingTransferHasDifferentDebitAccountId;
        }
        if t.credit_account_id != 0 && t.credit_account_id != p.credit_account_id {
            return R::PendingTransferHasDifferentCreditAccountId;
        }
        if t.ledger != 0 && t.ledger != p.ledger {
            return R::PendingTransferHasDifferentLedger;
        }
        if t.code != 0 && t.code != p.code {
            return R::PendingTransferHasDifferentCode;
        }
        let amount = if post {
            let amount = if t.amount == 0 { p.amount } else { t.amount };
            if amount > p.amount {
                return R::ExceedsPendingTransferAmount;
            }
            amount
        } else {
            if t.amount != 0 && t.amount != p.amount {
                return R::PendingTransferHasDifferentAmount;
            }
            p.amount
        };
        match status {
            PendingStatus::Pending => {}
            PendingStatus::Posted => return R::PendingTransferAlreadyPosted,
            PendingStatus::Voided => return R::PendingTransferAlreadyVoided,
            PendingStatus::Expired => return R::PendingTransferExpired,
            PendingStatus::None => return R::PendingTransferNotPending,
        }
        // Deadlines at or before `now` were expired when the batch began.
        assert!(
            expires_at.is_none_or(|at| at > now),
            "ledger invariant broken: a pending transfer outlived its deadline"
        );

        // Apply: nothing below can be refused. A pending transfer's accounts exist (accounts
        // are never removed once a transfer used them), and posting cannot overflow: the
        // pending amount is already counted in `debits_pending + debits_posted`, which every
        // event keeps within `u128`, and a post moves at most that amount into posted.
        let [Some(dr), Some(cr)] = self
            .accounts
            .get_disjoint_mut([&p.debit_account_id, &p.credit_account_id])
        else {
            panic!("ledger invariant broken: a pending transfer's account is gone");
        };
        dr.debits_pending = dec(dr.debits_pending, p.amount);
        cr.credits_pending = dec(cr.credits_pending, p.amount);
        if post {
            dr.debits_posted = inc(dr.debits_posted, amount);
            cr.credits_posted = inc(cr.credits_posted, amount);
        }
        assert_within_limits(dr);
        assert_within_limits(cr);
        let totals = self
            .ledgers
            .get_mut(&p.ledger)
            .expect("ledger invariant broken: an account's ledger has no totals");
        totals.debits_pending.sub(p.amount);
        totals.credits_pending.sub(p.amount);
        if post {
            totals.debits_posted.add(amount);
            totals.credits_posted.add(amount);
        }
        totals.assert_balanced(p.ledger);

        if let Some(at) = expires_at {
            let removed = self.expiries.remove(&(at, p.id));
            assert!(
                removed,
                "ledger invariant broken: a pending deadline was not indexed"
            );
        }
        let pending_record = self
            .transfer_mut(p.id)
            .expect("ledger invariant broken: the pending transfer vanished while posting");
        pending_record.status = if post {
            PendingStatus::Posted
        } else {
            PendingStatus::Voided
        };
        self.push_transfer(TransferRecord {
            transfer: Transfer {
                id: t.id,
                debit_account_id: p.debit_account_id,
                credit_account_id: p.credit_account_id,
                amount,
                pending_id: p.id,
                user_data: if t.user_data == 0 {
                    p.user_data
                } else {
                    t.user_data
                },
                timeout: 0,
                ledger: p.ledger,
                code: p.code,
                flags: t.flags,
            },
            timestamp: now,
            status: PendingStatus::None,
        });
        R::Ok
    }

    /// Compares a resent post or void with the stored one. Fields left 0 ("as the pending
    /// transfer") match what was resolved.
    fn post_or_void_exists(&self, t: &Transfer, e: &Transfer) -> CreateTransferResult {
        use CreateTransferResult as R;
        if t.flags != e.flags {
            return R::ExistsWithDifferentFlags;
        }
        if t.pending_id != e.pending_id {
            return R::ExistsWithDifferentPendingId;
        }
        if t.debit_account_id != 0 && t.debit_account_id != e.debit_account_id {
            return R::ExistsWithDifferentDebitAccountId;
        }
        if t.credit_account_id != 0 && t.credit_account_id != e.credit_account_id {
            return R::ExistsWithDifferentCreditAccountId;
        }
        let asked = if t.amount == 0 {
            self.transfer(e.pending_id)
                .expect("ledger invariant broken: a post or void's pending transfer is gone")
                .transfer
                .amount
        } else {
            t.amount
        };
        if asked != e.amount {
            return R::ExistsWithDifferentAmount;
        }
        if t.user_data != 0 && t.user_data != e.user_data {
            return R::ExistsWithDifferentUserData;
        }
        if t.ledger != 0 && t.ledger != e.ledger {
            return R::ExistsWithDifferentLedger;
        }
        if t.code != 0 && t.code != e.code {
            return R::ExistsWithDifferentCode;
        }
        R::Exists
    }

    /// Reverts the transfer `id`, applied earlier in the open chain of this batch.
    fn undo_transfer(&mut self, id: u128) {
        // The open chain's transfers are the last ones appended, undone newest first.
        let position = self
            .transfer_index
            .remove(&id)
            .expect("ledger invariant broken: a transfer applied in the open chain is gone");
        let record = self
            .transfers
            .pop()
            .expect("ledger invariant broken: a transfer applied in the open chain is gone");
        assert!(
            position == self.transfers.len() && record.transfer.id == id,
            "ledger invariant broken: chain undone out of order"
        );
        let t = record.transfer;
        let [Some(dr), Some(cr)] = self
            .accounts
            .get_disjoint_mut([&t.debit_account_id, &t.credit_account_id])
        else {
            panic!("ledger invariant broken: a transfer's account is gone");
        };
        let totals = self
            .ledgers
            .get_mut(&t.ledger)
            .expect("ledger invariant broken: an account's ledger has no totals");
        let post = t.flags.contains(TransferFlags::POST_PENDING_TRANSFER);
        let void = t.flags.contains(TransferFlags::VOID_PENDING_TRANSFER);
        if t.flags.contains(TransferFlags::PENDING) {
            dr.debits_pending = dec(dr.debits_pending, t.amount);
            cr.credits_pending = dec(cr.credits_pending, t.amount);
            totals.debits_pending.sub(t.amount);
            totals.credits_pending.sub(t.amount);
            if let Some(at) = record.expires_at() {
                self.expiries.remove(&(at, id));
            }
        } else if post || void {
            let pending_record = self
                .transfer_index
                .get(&t.pending_id)
                .and_then(|&position| self.transfers.get_mut(position))
                .expect("ledger invariant broken: a post or void's pending transfer is gone");
            pending_record.status = PendingStatus::Pending;
            let reserved = pending_record.transfer.amount;
            dr.debits_pending = inc(dr.debits_pending, reserved);
            cr.credits_pending = inc(cr.credits_pending, reserved);
            totals.debits_pending.add(reserved);
            totals.credits_pending.add(reserved);
            if post {
                dr.debits_posted = dec(dr.debits_posted, t.amount);
                cr.credits_posted = dec(cr.credits_posted, t.amount);
                totals.debits_posted.sub(t.amount);
                totals.credits_posted.sub(t.amount);
            }
            if let Some(at) = pending_record.expires_at() {
                self.expiries.insert((at, t.pending_id));
            }
        } else {
            dr.debits_posted = dec(dr.debits_posted, t.amount);
            cr.credits_posted = dec(cr.credits_posted, t.amount);
            totals.debits_posted.sub(t.amount);
            totals.credits_posted.sub(t.amount);
        }
        assert_within_limits(dr);
        assert_within_limits(cr);
        totals.assert_balanced(t.ledger);
    }

    /// Checks every invariant with a full scan, O(accounts + transfers): each account's
    /// balances equal what its transfers add up to; no limit-flagged account is past its
    /// limit; each ledger's running totals equal the sums of its accounts and its debits
    /// equal its credits; every post or void matches its pending transfer; the index of
    /// pending deadlines holds exactly the pending transfers that have one.
    ///
    /// The engine checks the cheap part of this after every event; call this in tests and
    /// after reading a state back from storage.
    ///
    /// # Errors
    /// The first broken invariant found.
    pub fn check_invariants(&self) -> Result<(), InvariantViolation> {
        type V = InvariantViolation;
        // [debits_pending, debits_posted, credits_pending, credits_posted] from transfers.
        let mut balances: FxHashMap<u128, [u128; 4]> =
            self.accounts.keys().map(|&id| (id, [0u128; 4])).collect();
        let mut resolved_pending: FxHashMap<u128, u128> = FxHashMap::default();
        let mut with_deadline = 0usize;
        let mut settled = 0usize;

        if self.transfer_index.len() != self.transfers.len() {
            return Err(V::PendingBookkeeping {
                reason: "the transfer index and the transfers differ in length",
            });
        }
        for (position, record) in self.transfers.iter().enumerate() {
            let t = &record.transfer;
            let broken = |reason| V::Transfer { id: t.id, reason };
            if self.transfer_index.get(&t.id) != Some(&position) {
                return Err(broken("is not indexed at its position"));
            }
            let (Some(dr), Some(cr)) = (
                self.accounts.get(&t.debit_account_id),
                self.accounts.get(&t.credit_account_id),
            ) else {
                return Err(broken("names an account that does not exist"));
            };
            if t.debit_account_id == t.credit_account_id {
                return Err(broken("debits and credits the same account"));
            }
            if dr.ledger != t.ledger || cr.ledger != t.ledger {
                return Err(broken("is not on its accounts' ledger"));
            }
            let pending = t.flags.contains(TransferFlags::PENDING);
            let post = t.flags.contains(TransferFlags::POST_PENDING_TRANSFER);
            let void = t.flags.contains(TransferFlags::VOID_PENDING_TRANSFER);
            // (index into the balances, amount) for the debit and the credit side.
            let effect: Option<(usize, usize, u128)> = if pending {
                match record.status {
                    PendingStatus::None => return Err(broken("pending without a status")),
                    PendingStatus::Pending => {
                        if let Some(at) = record.expires_at() {
                            if !self.expiries.contains(&(at, t.id)) {
                                return Err(broken("pending deadline not indexed"));
                            }
                            if at <= self.now {
                                return Err(broken("pending past its deadline"));
                            }
                            with_deadline += 1;
                        }
                        Some((0, 2, t.amount))
                    }
                    PendingStatus::Posted | PendingStatus::Voided => {
                        settled += 1;
                        None
                    }
                    PendingStatus::Expired => None,
                }
            } else {
                if record.status != PendingStatus::None {
                    return Err(broken("has a pending status but is not pending"));
                }
                if post || void {
                    let Some(p) = self.transfer(t.pending_id) else {
                        return Err(broken("its pending transfer does not exist"));
                    };
                    let expected = if post {
                        PendingStatus::Posted
                    } else {
                        PendingStatus::Voided
                    };
                    if p.status != expected {
                        return Err(broken("its pending transfer has another status"));
                    }
                    if p.transfer.debit_account_id != t.debit_account_id
                        || p.transfer.credit_account_id != t.credit_account_id
                        || p.transfer.ledger != t.ledger
                        || p.transfer.code != t.code
                    {
                        return Err(broken("differs from its pending transfer"));
                    }
                    if (post && t.amount > p.transfer.amount)
                        || (void && t.amount != p.transfer.amount)
                    {
                        return Err(broken("amount does not fit its pending transfer"));
                    }
                    if resolved_pending.insert(t.pending_id, t.id).is_some() {
                        return Err(broken("its pending transfer was settled twice"));
                    }
                    if post { Some((1, 3, t.amount)) } else { None }
                } else {
                    if t.amount == 0 {
                        return Err(broken("moves nothing"));
                    }
                    Some((1, 3, t.amount))
                }
            };
            if let Some((debit_index, credit_index, amount)) = effect {
                let mismatch = || V::AccountBalances {
                    id: t.debit_account_id,
                };
                let debit = balances.get_mut(&t.debit_account_id).ok_or_else(mismatch)?;
                debit[debit_index] = debit[debit_index]
                    .checked_add(amount)
                    .ok_or_else(mismatch)?;
                let mismatch = || V::AccountBalances {
                    id: t.credit_account_id,
                };
                let credit = balances
                    .get_mut(&t.credit_account_id)
                    .ok_or_else(mismatch)?;
                credit[credit_index] = credit[credit_index]
                    .checked_add(amount)
                    .ok_or_else(mismatch)?;
            }
        }
        if settled != resolved_pending.len() {
            return Err(V::PendingBookkeeping {
                reason: "a posted or voided pending transfer has no post or void",
            });
        }
        if with_deadline != self.expiries.len() {
            return Err(V::PendingBookkeeping {
                reason: "the deadline index holds a transfer that is not pending",
            });
        }

        let mut sums: FxHashMap<u32, LedgerTotals> = FxHashMap::default();
        for account in self.accounts.values() {
            let id = account.id;
            let expected = balances.get(&id).copied().unwrap_or_default();
            if expected
                != [
                    account.debits_pending,
                    account.debits_posted,
                    account.credits_pending,
                    account.credits_posted,
                ]
            {
                return Err(V::AccountBalances { id });
            }
            if account
                .debits_pending
                .checked_add(account.debits_posted)
                .is_none()
                || account
                    .credits_pending
                    .checked_add(account.credits_posted)
                    .is_none()
            {
                return Err(V::AccountOverflow { id });
            }
            if !account.within_limits() {
                return Err(V::AccountLimit { id });
            }
            sums.entry(account.ledger).or_default().add_account(account);
        }
        for (&ledger, sum) in &sums {
            if !sum.is_balanced() {
                return Err(V::LedgerUnbalanced { ledger });
            }
            if self.ledgers.get(&ledger) != Some(sum) {
                return Err(V::LedgerTotalsMismatch { ledger });
            }
        }
        if let Some(&ledger) = self.ledgers.keys().find(|l| !sums.contains_key(l)) {
            return Err(V::LedgerTotalsMismatch { ledger });
        }
        Ok(())
    }
}

/// Compares a resent single-phase or pending transfer with the stored one.
fn exists(t: &Transfer, e: &Transfer) -> CreateTransferResult {
    use CreateTransferResult as R;
    if t.flags != e.flags {
        R::ExistsWithDifferentFlags
    } else if t.debit_account_id != e.debit_account_id {
        R::ExistsWithDifferentDebitAccountId
    } else if t.credit_account_id != e.credit_account_id {
        R::ExistsWithDifferentCreditAccountId
    } else if t.amount != e.amount {
        R::ExistsWithDifferentAmount
    } else if t.user_data != e.user_data {
        R::ExistsWithDifferentUserData
    } else if t.timeout != e.timeout {
        R::ExistsWithDifferentTimeout
    } else if t.ledger != e.ledger {
        R::ExistsWithDifferentLedger
    } else if t.code != e.code {
        R::ExistsWithDifferentCode
    } else {
        R::Exists
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(id: u128, flags: AccountFlags) -> NewAccount {
        NewAccount {
            id,
            user_data: 0,
            ledger: 1,
            code: 1,
            flags,
        }
    }

    fn transfer(id: u128, debit: u128, credit: u128, amount: u128) -> Transfer {
        Transfer {
            id,
            debit_account_id: debit,
            credit_account_id: credit,
            amount,
            ledger: 1,
            code: 1,
            ..Transfer::default()
        }
    }

    /// Accounts 1 (plain), 2 (debit limit); 2 funded with 100, a pending 1→2 of 30 with a
    /// deadline at 50, a pending 2→1 of 10 posted 4.
    fn busy_state() -> State {
        let mut state = State::new();
        let results = state
            .create_accounts(&[
                account(1, AccountFlags::NONE),
                account(2, AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS),
            ])
            .unwrap();
        assert!(results.iter().all(|r| *r == CreateAccountResult::Ok));
        let pending = |id, debit, credit, amount, timeout| Transfer {
            flags: TransferFlags::PENDING,
            timeout,
            ..transfer(id, debit, credit, amount)
        };
        let results = state
            .create_transfers(
                10,
                &[
                    transfer(1, 1, 2, 100),
                    pending(2, 1, 2, 30, 40),
                    pending(3, 2, 1, 10, 0),
                    Transfer {
                        id: 4,
                        pending_id: 3,
                        amount: 4,
                        flags: TransferFlags::POST_PENDING_TRANSFER,
                        ..Transfer::default()
                    },
                ],
            )
            .unwrap();
        assert!(
            results.iter().all(|r| *r == CreateTransferResult::Ok),
            "{results:?}"
        );
        state.check_invariants().unwrap();
        state
    }

    #[test]
    fn sum256_carries_and_borrows() {
        let mut sum = Sum256::default();
        sum.add(u128::MAX);
        sum.add(2);
        assert_eq!(sum, Sum256 { high: 1, low: 1 });
        assert_eq!(sum.to_u128(), None);
        sum.sub(2);
        assert_eq!(sum.to_u128(), Some(u128::MAX));
    }

    #[test]
    #[should_panic(expected = "below zero")]
    fn sum256_refuses_to_go_negative() {
        let mut sum = Sum256::default();
        sum.sub(1);
    }

    #[test]
    fn scan_finds_a_tampered_balance() {
        let mut state = busy_state();
        if let Some(a) = state.accounts.get_mut(&1) {
            a.debits_posted += 1;
        }
        assert_eq!(
            state.check_invariants(),
            Err(InvariantViolation::AccountBalances { id: 1 })
        );
    }

    #[test]
    fn scan_finds_money_created_out_of_nothing() {
        // Both the account and its transfer agree, but nothing was debited.
        let mut state = busy_state();
        if let Some(a) = state.accounts.get_mut(&2) {
            a.credits_posted += 5;
        }
        state.transfers[0].transfer.amount += 5;
        if let Some(totals) = state.ledgers.get_mut(&1) {
            totals.credits_posted.add(5);
        }
        assert!(matches!(
            state.check_invariants(),
            Err(InvariantViolation::AccountBalances { id: 1 })
        ));
        // A credit with no transfer behind it, even with the running totals made to match.
        let mut state = busy_state();
        if let Some(a) = state.accounts.get_mut(&2) {
            a.credits_posted += 5;
        }
        if let Some(totals) = state.ledgers.get_mut(&1) {
            totals.credits_posted.add(5);
        }
        assert_eq!(
            state.check_invariants(),
            Err(InvariantViolation::AccountBalances { id: 2 })
        );
    }

    #[test]
    fn scan_finds_running_totals_that_drifted() {
        let mut state = busy_state();
        if let Some(totals) = state.ledgers.get_mut(&1) {
            totals.debits_posted.add(1);
            totals.credits_posted.add(1);
        }
        assert_eq!(
            state.check_invariants(),
            Err(InvariantViolation::LedgerTotalsMismatch { ledger: 1 })
        );
    }

    #[test]
    fn scan_finds_an_account_past_its_limit() {
        // Account 2 has a debit limit; make its history overspend it consistently.
        let mut state = busy_state();
        state.transfers[0].transfer.amount = 3; // 1→2 funded only 3, but 2 spent 4.
        if let Some(a) = state.accounts.get_mut(&1) {
            a.debits_posted = 3;
        }
        if let Some(a) = state.accounts.get_mut(&2) {
            a.credits_posted = 3;
        }
        if let Some(totals) = state.ledgers.get_mut(&1) {
            totals.debits_posted.sub(97);
            totals.credits_posted.sub(97);
        }
        assert_eq!(
            state.check_invariants(),
            Err(InvariantViolation::AccountLimit { id: 2 })
        );
    }

    #[test]
    fn scan_finds_a_lost_deadline() {
        let mut state = busy_state();
        state.expiries.clear();
        assert!(matches!(
            state.check_invariants(),
            Err(InvariantViolation::Transfer { id: 2, .. })
        ));
        let mut state = busy_state();
        state.expiries.insert((99, 1));
        assert!(matches!(
            state.check_invariants(),
            Err(InvariantViolation::PendingBookkeeping { .. })
        ));
    }

    #[test]
    fn scan_finds_a_post_of_a_transfer_not_marked_posted() {
        let mut state = busy_state();
        state.transfers[2].status = PendingStatus::Voided;
        assert!(matches!(
            state.check_invariants(),
            Err(InvariantViolation::Transfer { id: 4, .. })
        ));
    }

    #[test]
    fn scan_finds_a_broken_index() {
        let mut state = busy_state();
        state.transfer_index.insert(1, 3);
        assert!(matches!(
            state.check_invariants(),
            Err(InvariantViolation::Transfer { .. })
        ));
    }

    #[test]
    #[should_panic(expected = "ledger invariant broken")]
    fn applying_on_a_corrupt_state_aborts_instead_of_carrying_on() {
        // A reservation the accounts do not hold: releasing it must not wrap around.
        let mut state = busy_state();
        if let Some(a) = state.accounts.get_mut(&1) {
            a.debits_pending = 0;
        }
        let void = Transfer {
            id: 9,
            pending_id: 2,
            flags: TransferFlags::VOID_PENDING_TRANSFER,
            ..Transfer::default()
        };
        let _ = state.create_transfers(10, &[void]);
    }
}
