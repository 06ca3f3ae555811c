//! Rebuilding a state from stored parts: `from_parts` gives back an equal state and refuses
//! broken parts; `from_subset` applies a batch exactly as the whole state would.

mod common;

use std::collections::BTreeSet;

use common::*;
use guoku_ledger::{
    Account, AccountFlags, CreateTransferResult, InvariantViolation, PendingStatus, State,
    Transfer, TransferFlags, TransferRecord,
};
use proptest::prelude::*;

/// Accounts 1 (plain), 2 (debit limit), 3 (credit limit); money moved, a pending transfer
/// with a deadline, one posted, one voided.
fn busy_state() -> State {
    let mut state = State::new();
    create_accounts(
        &mut state,
        &[
            new_account(1, LEDGER, AccountFlags::NONE),
            new_account(2, LEDGER, AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS),
            new_account(3, LEDGER, AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS),
        ],
    );
    apply_ok(
        &mut state,
        10,
        &[
            transfer(1, 1, 2, 100),
            transfer(2, 3, 1, 50),
            pending(3, 2, 1, 30, 40),
            pending(4, 2, 1, 10, 0),
            post(5, 4, 4),
            pending(6, 1, 3, 20, 0),
            void(7, 6),
        ],
    );
    state
}

fn parts(state: &State) -> (Vec<Account>, Vec<TransferRecord>) {
    (
        state.accounts().copied().collect(),
        state.transfers().copied().collect(),
    )
}

#[test]
fn from_parts_gives_back_an_equal_state() {
    let state = busy_state();
    let (accounts, transfers) = parts(&state);
    let rebuilt = State::from_parts(accounts.into_iter().rev(), transfers, state.now()).unwrap();
    assert_eq!(rebuilt, state);
    // And it carries on exactly as the original.
    let mut a = state.clone();
    let mut b = rebuilt;
    let batch = [post(8, 3, 0), transfer(9, 2, 1, 60)];
    assert_eq!(apply(&mut a, 20, &batch), apply(&mut b, 20, &batch));
    assert_eq!(a, b);
}

#[test]
fn from_parts_of_nothing_is_the_empty_state() {
    assert_eq!(
        State::from_parts(Vec::new(), Vec::new(), 0).unwrap(),
        State::new()
    );
}

#[test]
fn from_parts_refuses_a_tampered_balance() {
    let state = busy_state();
    let (mut accounts, transfers) = parts(&state);
    let first = accounts.iter_mut().find(|a| a.id == 1).unwrap();
    first.credits_posted += 1;
    assert_eq!(
        State::from_parts(accounts, transfers, state.now()),
        Err(InvariantViolation::AccountBalances { id: 1 })
    );
}

#[test]
fn from_parts_refuses_a_lost_transfer() {
    let state = busy_state();
    let (accounts, mut transfers) = parts(&state);
    transfers.remove(0);
    assert!(State::from_parts(accounts, transfers, state.now()).is_err());
}

#[test]
fn from_parts_refuses_an_id_given_twice() {
    let state = busy_state();
    let (mut accounts, transfers) = parts(&state);
    accounts.push(accounts[0]);
    assert!(matches!(
        State::from_parts(accounts, transfers.clone(), state.now()),
        Err(InvariantViolation::Duplicate {
            what: "account",
            ..
        })
    ));
    let (accounts, mut transfers) = parts(&state);
    transfers.push(transfers[0]);
    assert!(matches!(
        State::from_parts(accounts, transfers, state.now()),
        Err(InvariantViolation::Duplicate {
            what: "transfer",
            ..
        })
    ));
}

#[test]
fn from_parts_refuses_a_pending_transfer_past_its_deadline() {
    // Transfer 3 expires at 50: a state read back at 60 must already have expired it.
    let state = busy_state();
    let (accounts, transfers) = parts(&state);
    assert!(matches!(
        State::from_parts(accounts, transfers, 60),
        Err(InvariantViolation::Transfer { id: 3, .. })
    ));
}

#[test]
fn from_subset_refuses_a_pending_transfer_without_its_accounts() {
    let state = busy_state();
    let pending = *state.transfer(3).unwrap();
    let only_one = *state.account(2).unwrap();
    assert!(matches!(
        State::from_subset([only_one], [pending], state.now()),
        Err(InvariantViolation::Transfer { id: 3, .. })
    ));
}

#[test]
fn from_subset_refuses_an_account_past_its_limit() {
    let state = busy_state();
    let mut overspent = *state.account(2).unwrap();
    overspent.debits_posted = overspent.credits_posted + 1;
    assert_eq!(
        State::from_subset([overspent], [], state.now()),
        Err(InvariantViolation::AccountLimit { id: 2 })
    );
}

#[test]
fn from_subset_refuses_a_reservation_the_account_does_not_hold() {
    let state = busy_state();
    let pending = *state.transfer(3).unwrap();
    let mut debit = *state.account(2).unwrap();
    debit.debits_pending = 0;
    let credit = *state.account(1).unwrap();
    assert_eq!(
        State::from_subset([debit, credit], [pending], state.now()),
        Err(InvariantViolation::AccountBalances { id: 2 })
    );
}

#[test]
fn from_subset_refuses_a_post_without_its_pending_transfer() {
    let state = busy_state();
    let posted = *state.transfer(5).unwrap();
    assert!(matches!(
        State::from_subset([], [posted], state.now()),
        Err(InvariantViolation::Transfer { id: 5, .. })
    ));
}

/// The part of `state` that a batch at `now` needs, chosen as a store would choose it.
fn subset_for(state: &State, now: u64, batch: &[Transfer]) -> State {
    let mut account_ids = BTreeSet::new();
    let mut transfer_ids = BTreeSet::new();
    for t in batch {
        account_ids.extend([t.debit_account_id, t.credit_account_id]);
        transfer_ids.extend([t.id, t.pending_id]);
    }
    for record in state.transfers() {
        let expiring = record.status == PendingStatus::Pending
            && record.expires_at().is_some_and(|at| at <= now);
        if expiring {
            transfer_ids.insert(record.transfer.id);
        }
    }
    // The pending transfers of posts and voids already stored under the batch's ids.
    let extra: Vec<u128> = transfer_ids
        .iter()
        .filter_map(|&id| state.transfer(id))
        .map(|r| r.transfer.pending_id)
        .collect();
    transfer_ids.extend(extra);
    let records: Vec<TransferRecord> = state
        .transfers()
        .filter(|r| transfer_ids.contains(&r.transfer.id))
        .copied()
        .collect();
    for r in &records {
        if r.status == PendingStatus::Pending {
            account_ids.extend([r.transfer.debit_account_id, r.transfer.credit_account_id]);
        }
    }
    let accounts: Vec<Account> = account_ids
        .iter()
        .filter_map(|&id| state.account(id).copied())
        .collect();
    State::from_subset(accounts, records, state.now()).expect("a part of a valid state")
}

/// A transfer from a few random numbers: single, pending, post, void or a resend.
fn event(kind: u8, a: u128, b: u128, amount: u128, target: u128, id: u128) -> Transfer {
    let linked = if kind & 0x80 != 0 {
        TransferFlags::LINKED
    } else {
        TransferFlags::NONE
    };
    let t = match kind % 6 {
        0 | 1 => transfer(id, a, b, amount),
        2 => pending(id, a, b, amount, u64::try_from(amount % 5).unwrap()),
        3 => post(id, target, amount % 3 * 7),
        4 => void(id, target),
        _ => transfer(target, a, b, amount),
    };
    Transfer {
        flags: t.flags | linked,
        ..t
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Applying a batch to the part a store would load gives the same results as applying it
    /// to the whole state, and leaves every loaded account and transfer as the whole state
    /// does; the new transfers come out in the same order.
    #[test]
    fn a_batch_on_a_subset_matches_the_whole_state(
        batches in prop::collection::vec(
            (0..4u64, prop::collection::vec(
                (any::<u8>(), 1..=6u128, 1..=6u128, 1..=60u128, 1..=40u128), 0..12)),
            1..10)
    ) {
        let mut whole = State::new();
        let flags = [
            AccountFlags::NONE,
            AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS,
            AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS,
        ];
        let accounts: Vec<_> = (1..=6u128)
            .map(|id| new_account(id, LEDGER, flags[usize::try_from(id % 3).unwrap()]))
            .collect();
        create_accounts(&mut whole, &accounts);
        // Seed money so that limited accounts can move.
        apply_ok(&mut whole, 1, &[
            transfer(1, 3, 1, 500),
            transfer(2, 6, 4, 500),
            transfer(3, 2, 3, 500),
            transfer(4, 5, 6, 500),
        ]);
        let mut now = 1;
        let mut next_id = 100u128;
        for (advance, events) in batches {
            now += advance;
            let batch: Vec<Transfer> = events
                .iter()
                .map(|&(kind, a, b, amount, target)| {
                    next_id += 1;
                    event(kind, a, b, amount, 99 + target, next_id)
                })
                .collect();
            let mut part = subset_for(&whole, now, &batch);
            let loaded: Vec<TransferRecord> = part.transfers().copied().collect();
            let part_results = part.create_transfers(now, &batch).unwrap();
            let whole_results = whole.create_transfers(now, &batch).unwrap();
            prop_assert_eq!(&part_results, &whole_results);
            for account in part.accounts() {
                prop_assert_eq!(Some(account), whole.account(account.id));
            }
            for record in part.transfers() {
                prop_assert_eq!(Some(record), whole.transfer(record.transfer.id));
            }
            let new_in_part: Vec<u128> =
                part.transfers().skip(loaded.len()).map(|r| r.transfer.id).collect();
            let applied = whole_results.iter().filter(|r| **r == CreateTransferResult::Ok).count();
            let new_in_whole: Vec<u128> = whole
                .transfers()
                .skip(whole.transfer_count() - applied)
                .map(|r| r.transfer.id)
                .collect();
            prop_assert_eq!(new_in_part, new_in_whole);
            whole.check_invariants().unwrap();
        }
    }
}
