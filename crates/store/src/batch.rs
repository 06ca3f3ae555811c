//! What a batch needs from the database and what it changes, the same for both backends.
//!
//! A backend, inside one write transaction: reads the [`Clock`]; loads the transfers named
//! by [`transfer_ids`] (and then [`missing_pending_ids`]) and those expiring by `now`; loads
//! (and locks) the accounts of [`account_ids`]; calls [`apply_transfers`], which runs the
//! pure engine on that part of the ledger; writes back the [`TransferOutcome`]; commits.
//!
//! A batch is first attempted [`IdCheck::Optimistic`]ally: without loading the transfers its
//! events' own ids might name, which costs one index lookup per event and almost always
//! finds nothing. The attempt proves its assumption before it commits, and if it was wrong
//! it is rolled back and the batch redone [`IdCheck::Careful`]ly, so the results are always
//! the careful ones.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use guoku_ledger::{
    Account, BATCH_MAX, BatchError, CreateAccountResult, CreateTransferResult, NewAccount,
    PendingStatus, State, Transfer, TransferFlags, TransferRecord,
};

use crate::codec::NewTransferRow;
use crate::error::StoreError;

/// The store's clock row: the latest committed `now` and the next transfer sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Clock {
    pub now: u64,
    pub next_seq: u64,
}

/// How `now` maps to business days for the daily totals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Calendar {
    /// Ticks of `now` in a day (86,400 when `now` is in seconds).
    pub ticks_per_day: u64,
    /// Added to `now` before dividing, to start days at local midnight (28,800 = UTC+8 in
    /// seconds).
    pub offset_ticks: u64,
}

impl Default for Calendar {
    fn default() -> Self {
        Self {
            ticks_per_day: 86_400,
            offset_ticks: 8 * 3_600,
        }
    }
}

impl Calendar {
    /// The day number of `now`.
    #[must_use]
    pub fn day(&self, now: u64) -> u64 {
        now.saturating_add(self.offset_ticks) / self.ticks_per_day.max(1)
    }
}

/// The time a batch is applied at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Now {
    /// Exactly this; a batch before the books' last `now` is refused
    /// ([`BatchError::NowWentBackwards`]).
    Exactly(u64),
    /// This, or the books' last `now` if that is later: for callers whose concurrent tasks
    /// read the clock in one order and commit in another (the books' time never goes back).
    AtLeast(u64),
}

impl Now {
    /// The `now` to apply against the books' clock.
    pub(crate) fn against(self, clock: Clock) -> u64 {
        match self {
            Now::Exactly(now) => now,
            Now::AtLeast(now) => now.max(clock.now),
        }
    }
}

impl From<u64> for Now {
    fn from(now: u64) -> Self {
        Now::Exactly(now)
    }
}

/// Refuses a batch before anything is read: too large, or `now` going backwards.
pub(crate) fn check_transfer_batch(clock: Clock, now: u64, len: usize) -> Result<(), StoreError> {
    if len > BATCH_MAX {
        return Err(BatchError::TooLarge {
            len,
            max: BATCH_MAX,
        }
        .into());
    }
    if now < clock.now {
        return Err(BatchError::NowWentBackwards {
            now,
            last: clock.now,
        }
        .into());
    }
    Ok(())
}

pub(crate) fn check_account_batch(len: usize) -> Result<(), StoreError> {
    if len > BATCH_MAX {
        return Err(BatchError::TooLarge {
            len,
            max: BATCH_MAX,
        }
        .into());
    }
    Ok(())
}

/// How an attempt at a transfer batch learns which of its events' ids are already taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IdCheck {
    /// Assume no event reuses the id of a transfer stored before the batch: load only the
    /// transfers named as `pending_id`s (and those expiring). The assumption is proven before
    /// the commit: the unique index on `transfers.id` refuses any transfer the attempt creates
    /// under a taken id, and the backend looks up [`TransferOutcome::unchecked_ids`], the ids
    /// of refused events. If either finds a taken id, the attempt is rolled back and the
    /// batch redone with `Careful`.
    Optimistic,
    /// Load every transfer the batch names, as an event's id or as a `pending_id`.
    Careful,
}

/// How an attempt at a transfer batch ended.
pub(crate) enum Attempt<T> {
    /// Committed, with these results.
    Done(T),
    /// An optimistic attempt found a reused id and rolled back: redo it carefully.
    IdReused,
}

/// The transfer ids to load for `batch` before applying it, sorted.
pub(crate) fn transfer_ids(batch: &[Transfer], check: IdCheck) -> Vec<u128> {
    let mut ids = BTreeSet::new();
    for t in batch {
        if check == IdCheck::Careful {
            ids.insert(t.id);
        }
        ids.insert(t.pending_id);
    }
    ids.remove(&0);
    ids.into_iter().collect()
}

/// The pending transfers of loaded posts and voids that are not loaded yet.
pub(crate) fn missing_pending_ids(loaded: &BTreeMap<u64, TransferRecord>) -> Vec<u128> {
    let have: BTreeSet<u128> = loaded.values().map(|r| r.transfer.id).collect();
    let missing: BTreeSet<u128> = loaded
        .values()
        .map(|r| r.transfer.pending_id)
        .filter(|id| *id != 0 && !have.contains(id))
        .collect();
    missing.into_iter().collect()
}

/// The accounts a batch touches: those it names and those of the still-pending transfers
/// loaded for it, sorted (the order PostgreSQL locks them in, so batches cannot deadlock).
pub(crate) fn account_ids(batch: &[Transfer], loaded: &BTreeMap<u64, TransferRecord>) -> Vec<u128> {
    let mut ids = BTreeSet::new();
    for t in batch {
        ids.insert(t.debit_account_id);
        ids.insert(t.credit_account_id);
    }
    for r in loaded.values() {
        if r.status == PendingStatus::Pending {
            ids.insert(r.transfer.debit_account_id);
            ids.insert(r.transfer.credit_account_id);
        }
    }
    ids.remove(&0);
    ids.remove(&u128::MAX);
    ids.into_iter().collect()
}

/// A change to the daily totals: posted money moved on `(ledger, day, code)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DailyDelta {
    pub ledger: u32,
    pub day: u64,
    pub code: u16,
    pub transfers: u64,
    pub amount: u128,
}

/// An account as loaded for a write: the engine's account and the store's number for it.
pub(crate) type NumberedAccount = (Account, i64);

/// What a transfer batch changes.
pub(crate) struct TransferOutcome {
    pub results: Vec<CreateTransferResult>,
    /// In an optimistic attempt: the ids of refused events that were neither loaded nor
    /// created by the batch, sorted. If one of them is taken in the database, the engine
    /// judged that event without its stored namesake and the attempt must be redone.
    /// Always empty in a careful attempt.
    pub unchecked_ids: Vec<u128>,
    pub changed_accounts: Vec<Account>,
    pub new_transfers: Vec<NewTransferRow>,
    /// Loaded pending transfers whose status changed (posted, voided, expired).
    pub status_changes: Vec<(u128, PendingStatus)>,
    pub daily: Vec<DailyDelta>,
    pub clock: Clock,
}

/// Applies `batch` at `now` to the loaded part of the ledger with the pure engine.
///
/// The part is re-checked on the way in ([`State::from_subset`]); the engine asserts its
/// invariants after every event.
pub(crate) fn apply_transfers(
    clock: Clock,
    now: u64,
    batch: &[Transfer],
    accounts: Vec<NumberedAccount>,
    loaded: BTreeMap<u64, TransferRecord>,
    calendar: Calendar,
    check: IdCheck,
) -> Result<TransferOutcome, StoreError> {
    let before: BTreeMap<u128, Account> = accounts.iter().map(|(a, _)| (a.id, *a)).collect();
    let nums: HashMap<u128, i64> = accounts.iter().map(|(a, num)| (a.id, *num)).collect();
    let loaded: Vec<TransferRecord> = loaded.into_values().collect();
    let mut part = State::from_subset(
        accounts.into_iter().map(|(a, _)| a),
        loaded.iter().copied(),
        clock.now,
    )?;
    let results = part.create_transfers(now, batch)?;

    let unchecked_ids = match check {
        IdCheck::Careful => Vec::new(),
        IdCheck::Optimistic => {
            let known: BTreeSet<u128> = loaded.iter().map(|r| r.transfer.id).collect();
            let created: BTreeSet<u128> = batch
                .iter()
                .zip(&results)
                .filter(|(_, r)| **r == CreateTransferResult::Ok)
                .map(|(t, _)| t.id)
                .collect();
            let unchecked: BTreeSet<u128> = batch
                .iter()
                .zip(&results)
                .filter(|(t, r)| {
                    **r != CreateTransferResult::Ok
                        && t.id != 0
                        && !known.contains(&t.id)
                        && !created.contains(&t.id)
                })
                .map(|(t, _)| t.id)
                .collect();
            unchecked.into_iter().collect()
        }
    };

    let changed_accounts: Vec<Account> = before
        .iter()
        .filter_map(|(id, old)| part.account(*id).filter(|new| *new != old).copied())
        .collect();
    let status_changes: Vec<(u128, PendingStatus)> = loaded
        .iter()
        .filter_map(|old| {
            let new = part.transfer(old.transfer.id)?;
            (new.status != old.status).then_some((old.transfer.id, new.status))
        })
        .collect();
    let day = calendar.day(now);
    let mut daily: BTreeMap<(u32, u16), DailyDelta> = BTreeMap::new();
    let mut new_transfers = Vec::new();
    let mut seq = clock.next_seq;
    let num = |id: u128| {
        nums.get(&id).copied().ok_or_else(|| {
            StoreError::Corrupt(format!(
                "a new transfer names account {id}, which was not loaded"
            ))
        })
    };
    for record in part.transfers().skip(loaded.len()) {
        let t = &record.transfer;
        let nums = (num(t.debit_account_id)?, num(t.credit_account_id)?);
        new_transfers.push(NewTransferRow::encode(seq, record, nums));
        seq += 1;
        let moves_posted_money = !t.flags.contains(TransferFlags::PENDING)
            && !t.flags.contains(TransferFlags::VOID_PENDING_TRANSFER);
        if moves_posted_money {
            let entry = daily.entry((t.ledger, t.code)).or_insert(DailyDelta {
                ledger: t.ledger,
                day,
                code: t.code,
                transfers: 0,
                amount: 0,
            });
            entry.transfers += 1;
            entry.amount = entry.amount.saturating_add(t.amount);
        }
    }
    Ok(TransferOutcome {
        results,
        unchecked_ids,
        changed_accounts,
        new_transfers,
        status_changes,
        daily: daily.into_values().collect(),
        clock: Clock { now, next_seq: seq },
    })
}

/// What an account batch changes.
pub(crate) struct AccountOutcome {
    pub results: Vec<CreateAccountResult>,
    /// The accounts created, with the index of their event in the batch.
    pub new_accounts: Vec<(usize, Account)>,
}

/// Applies an account batch to the accounts with the same ids that exist already.
pub(crate) fn apply_accounts(
    existing: Vec<Account>,
    batch: &[NewAccount],
) -> Result<AccountOutcome, StoreError> {
    let mut part = State::from_subset(existing, [], 0)?;
    let results = part.create_accounts(batch)?;
    let mut seen = BTreeSet::new();
    let new_accounts = batch
        .iter()
        .zip(&results)
        .enumerate()
        .filter(|(_, (n, r))| **r == CreateAccountResult::Ok && seen.insert(n.id))
        .filter_map(|(i, (n, _))| part.account(n.id).map(|a| (i, *a)))
        .collect();
    Ok(AccountOutcome {
        results,
        new_accounts,
    })
}

/// The sorted, distinct, non-zero ids of an account batch.
pub(crate) fn new_account_ids(batch: &[NewAccount]) -> Vec<u128> {
    let ids: BTreeSet<u128> = batch.iter().map(|a| a.id).filter(|id| *id != 0).collect();
    ids.into_iter().collect()
}
