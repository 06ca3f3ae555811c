//! Rebuilding a [`State`] from stored parts: the whole state ([`State::from_parts`]) or a
//! consistent part of a larger one ([`State::from_subset`]), each re-checked on the way in.

use std::collections::BTreeSet;
use std::collections::hash_map::Entry;

use super::{InvariantViolation, LedgerTotals, State};
use crate::account::Account;
use crate::hash::FxHashMap;
use crate::transfer::{PendingStatus, TransferFlags, TransferRecord};

type V = InvariantViolation;

/// Accounts by id, refusing an id given twice.
fn account_map(
    accounts: impl IntoIterator<Item = Account>,
) -> Result<FxHashMap<u128, Account>, InvariantViolation> {
    let mut map = FxHashMap::default();
    for account in accounts {
        match map.entry(account.id) {
            Entry::Occupied(_) => {
                return Err(V::Duplicate {
                    what: "account",
                    id: account.id,
                });
            }
            Entry::Vacant(vacant) => {
                vacant.insert(account);
            }
        }
    }
    Ok(map)
}

/// Transfers in the given order, their index, and the deadlines of the pending ones.
type TransferParts = (
    Vec<TransferRecord>,
    FxHashMap<u128, usize>,
    BTreeSet<(u64, u128)>,
);

fn transfer_parts(
    transfers: impl IntoIterator<Item = TransferRecord>,
) -> Result<TransferParts, InvariantViolation> {
    let transfers: Vec<TransferRecord> = transfers.into_iter().collect();
    let mut index = FxHashMap::with_capacity_and_hasher(transfers.len(), Default::default());
    let mut expiries = BTreeSet::new();
    for (position, record) in transfers.iter().enumerate() {
        let id = record.transfer.id;
        if index.insert(id, position).is_some() {
            return Err(V::Duplicate {
                what: "transfer",
                id,
            });
        }
        if record.status == PendingStatus::Pending
            && let Some(at) = record.expires_at()
        {
            expiries.insert((at, id));
        }
    }
    Ok((transfers, index, expiries))
}

impl State {
    /// Rebuilds a whole state from its accounts, its transfers **in the order they were
    /// applied**, and the latest `now`, as a store reads them back.
    ///
    /// The per-ledger totals and the index of pending deadlines are derived, then every
    /// invariant is checked with the full scan of [`check_invariants`](Self::check_invariants):
    /// a state that comes back is one the engine could have produced, and equal (`==`) to the
    /// state that was stored.
    ///
    /// # Errors
    /// The first broken invariant found, including an id given twice.
    pub fn from_parts(
        accounts: impl IntoIterator<Item = Account>,
        transfers: impl IntoIterator<Item = TransferRecord>,
        now: u64,
    ) -> Result<Self, InvariantViolation> {
        let accounts = account_map(accounts)?;
        let (transfers, transfer_index, expiries) = transfer_parts(transfers)?;
        let mut ledgers: FxHashMap<u32, LedgerTotals> = FxHashMap::default();
        for account in accounts.values() {
            ledgers
                .entry(account.ledger)
                .or_default()
                .add_account(account);
        }
        let state = Self {
            accounts,
            transfers,
            transfer_index,
            ledgers,
            expiries,
            now,
        };
        state.check_invariants()?;
        Ok(state)
    }

    /// Builds a working state from a *part* of a larger, consistent state, so that a store
    /// can apply a batch to only what the batch touches and write back what changed.
    ///
    /// The part must hold every account the batch names, every transfer whose id the batch
    /// uses (as its id or as a `pending_id`), the pending transfer of each post or void it
    /// holds, and every pending transfer that expires by the batch's `now`, with their
    /// accounts. Given that, applying the batch gives the same results as applying it to the
    /// whole state, and changes the part exactly as it would change there.
    ///
    /// What can be checked on a part is checked: no id twice; every account within its
    /// limits and without overflow; each still-pending transfer has both accounts in the
    /// part, on its ledger, with at least its amount reserved, and a deadline after `now`;
    /// each post or void has its pending transfer in the part.
    ///
    /// The per-ledger running totals of a part cannot be the ledger's: they are set to the
    /// part's sums, with the smaller side of each (debits or credits, pending and posted)
    /// raised to the larger one, so the per-event check that every event moves debits and
    /// credits together still runs. [`check_invariants`](Self::check_invariants) and
    /// [`ledger_totals`](Self::ledger_totals) are therefore meaningless on such a state.
    ///
    /// # Errors
    /// The first broken invariant found.
    pub fn from_subset(
        accounts: impl IntoIterator<Item = Account>,
        transfers: impl IntoIterator<Item = TransferRecord>,
        now: u64,
    ) -> Result<Self, InvariantViolation> {
        let accounts = account_map(accounts)?;
        let (transfers, transfer_index, expiries) = transfer_parts(transfers)?;

        // Reservations of the part's still-pending transfers, per account:
        // [debits_pending, credits_pending].
        let mut reserved: FxHashMap<u128, [u128; 2]> = FxHashMap::default();
        for record in &transfers {
            let t = &record.transfer;
            let broken = |reason| V::Transfer { id: t.id, reason };
            let pending = t.flags.contains(TransferFlags::PENDING);
            if pending == (record.status == PendingStatus::None) {
                return Err(broken("pending flag and pending status disagree"));
            }
            if !pending && t.pending_id != 0 && !transfer_index.contains_key(&t.pending_id) {
                return Err(broken(
                    "a post or void without its pending transfer in the part",
                ));
            }
            if record.status != PendingStatus::Pending {
                continue;
            }
            let (Some(dr), Some(cr)) = (
                accounts.get(&t.debit_account_id),
                accounts.get(&t.credit_account_id),
            ) else {
                return Err(broken(
                    "a pending transfer without its accounts in the part",
                ));
            };
            if t.debit_account_id == t.credit_account_id {
                return Err(broken("debits and credits the same account"));
            }
            if dr.ledger != t.ledger || cr.ledger != t.ledger {
                return Err(broken("is not on its accounts' ledger"));
            }
            if record.expires_at().is_some_and(|at| at <= now) {
                return Err(broken("pending past its deadline"));
            }
            let overflow = || V::AccountBalances {
                id: t.debit_account_id,
            };
            let debit = reserved.entry(t.debit_account_id).or_default();
            debit[0] = debit[0].checked_add(t.amount).ok_or_else(overflow)?;
            let overflow = || V::AccountBalances {
                id: t.credit_account_id,
            };
            let credit = reserved.entry(t.credit_account_id).or_default();
            credit[1] = credit[1].checked_add(t.amount).ok_or_else(overflow)?;
        }

        let mut ledgers: FxHashMap<u32, LedgerTotals> = FxHashMap::default();
        for account in accounts.values() {
            let id = account.id;
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
            let [debits, credits] = reserved.get(&id).copied().unwrap_or_default();
            if debits > account.debits_pending || credits > account.credits_pending {
                return Err(V::AccountBalances { id });
            }
            ledgers
                .entry(account.ledger)
                .or_default()
                .add_account(account);
        }
        for totals in ledgers.values_mut() {
            let pending = totals.debits_pending.max(totals.credits_pending);
            totals.debits_pending = pending;
            totals.credits_pending = pending;
            let posted = totals.debits_posted.max(totals.credits_posted);
            totals.debits_posted = posted;
            totals.credits_posted = posted;
        }
        Ok(Self {
            accounts,
            transfers,
            transfer_index,
            ledgers,
            expiries,
            now,
        })
    }
}
