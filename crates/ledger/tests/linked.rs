//! Linked chains of transfers apply all or nothing.

mod common;

use common::{LEDGER, apply, apply_ok, balances, create_accounts, new_account};
use common::{linked, pending, post, transfer, void};
use guoku_ledger::{AccountFlags, CreateTransferResult as R, PendingStatus, State};

/// Accounts 1, 2, 3 plain and 4 `DEBITS_MUST_NOT_EXCEED_CREDITS`, on [`LEDGER`].
fn accounts() -> State {
    let mut state = State::new();
    create_accounts(
        &mut state,
        &[
            new_account(1, LEDGER, AccountFlags::NONE),
            new_account(2, LEDGER, AccountFlags::NONE),
            new_account(3, LEDGER, AccountFlags::NONE),
            new_account(4, LEDGER, AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS),
        ],
    );
    state
}

#[test]
fn a_chain_applies_when_every_event_succeeds() {
    let mut state = accounts();
    let results = apply(
        &mut state,
        1,
        &[
            linked(transfer(10, 1, 4, 100)),
            linked(transfer(11, 4, 2, 60)),
            transfer(12, 4, 3, 40),
        ],
    );
    assert_eq!(results, [R::Ok, R::Ok, R::Ok]);
    assert_eq!(balances(&state, 4), [0, 100, 0, 100]);
    state.check_invariants().unwrap();
}

#[test]
fn one_failure_fails_the_whole_chain_and_names_itself() {
    let mut state = accounts();
    let before = state.clone();
    // Funding 4 then spending more than it holds: the overspend fails, so the funding too.
    let results = apply(
        &mut state,
        0,
        &[
            linked(transfer(10, 1, 4, 100)),
            linked(transfer(11, 4, 2, 101)),
            transfer(12, 1, 3, 5),
        ],
    );
    assert_eq!(
        results,
        [
            R::LinkedEventFailed,
            R::ExceedsCredits,
            R::LinkedEventFailed
        ]
    );
    assert_eq!(state, before);
    state.check_invariants().unwrap();
}

#[test]
fn events_outside_a_failed_chain_are_independent() {
    let mut state = accounts();
    let results = apply(
        &mut state,
        1,
        &[
            transfer(9, 1, 2, 1),
            linked(transfer(10, 1, 2, 5)),
            transfer(11, 1, 1, 5),
            transfer(12, 1, 3, 7),
            linked(transfer(13, 2, 3, 2)),
            transfer(14, 3, 1, 1),
        ],
    );
    assert_eq!(
        results,
        [
            R::Ok,
            R::LinkedEventFailed,
            R::AccountsMustBeDifferent,
            R::Ok,
            R::Ok,
            R::Ok
        ]
    );
    assert!(state.transfer(10).is_none());
    assert_eq!(balances(&state, 1), [0, 8, 0, 1]);
    state.check_invariants().unwrap();
}

#[test]
fn a_chain_left_open_at_the_end_of_the_batch_fails() {
    let mut state = accounts();
    let before = state.clone();
    let results = apply(
        &mut state,
        0,
        &[linked(transfer(10, 1, 2, 5)), linked(transfer(11, 1, 2, 5))],
    );
    assert_eq!(results, [R::LinkedEventFailed, R::LinkedEventChainOpen]);
    assert_eq!(state, before);
    let results = apply(&mut state, 0, &[linked(transfer(10, 1, 2, 5))]);
    assert_eq!(results, [R::LinkedEventChainOpen]);
    assert_eq!(state, before);
}

#[test]
fn a_failed_chain_undoes_pending_posts_and_voids_exactly() {
    let mut state = accounts();
    apply_ok(
        &mut state,
        10,
        &[pending(20, 1, 2, 50, 100), pending(21, 1, 3, 30, 5)],
    );
    let before = state.clone();
    let results = apply(
        &mut state,
        10,
        &[
            linked(pending(30, 1, 2, 70, 40)),
            linked(post(31, 30, 20)),
            linked(post(32, 20, 0)),
            linked(void(33, 21)),
            transfer(34, 4, 1, 1),
        ],
    );
    assert_eq!(
        results,
        [
            R::LinkedEventFailed,
            R::LinkedEventFailed,
            R::LinkedEventFailed,
            R::LinkedEventFailed,
            R::ExceedsCredits
        ]
    );
    // Balances, statuses, deadlines and the id index are as before the batch.
    assert_eq!(state, before);
    state.check_invariants().unwrap();
    // The restored reservations still expire on time.
    apply_ok(&mut state, 15, &[]);
    assert_eq!(
        state.transfer(21).map(|r| r.status),
        Some(PendingStatus::Expired)
    );
    assert_eq!(
        state.transfer(20).map(|r| r.status),
        Some(PendingStatus::Pending)
    );
    assert_eq!(balances(&state, 1), [50, 0, 0, 0]);
}

#[test]
fn ids_of_a_failed_chain_can_be_used_again() {
    let mut state = accounts();
    let results = apply(
        &mut state,
        0,
        &[linked(transfer(10, 1, 2, 5)), transfer(11, 1, 2, 0)],
    );
    assert_eq!(results, [R::LinkedEventFailed, R::AmountMustNotBeZero]);
    apply_ok(
        &mut state,
        0,
        &[linked(transfer(10, 1, 2, 5)), transfer(11, 1, 2, 6)],
    );
    assert_eq!(balances(&state, 2), [0, 0, 0, 11]);
}

#[test]
fn resending_a_whole_chain_is_idempotent() {
    let mut state = accounts();
    let chain = [linked(transfer(10, 1, 4, 100)), transfer(11, 4, 2, 100)];
    apply_ok(&mut state, 0, &chain);
    let before = state.clone();
    assert_eq!(apply(&mut state, 0, &chain), [R::Exists, R::Exists]);
    assert_eq!(state, before);
}

#[test]
fn a_resend_with_another_linked_flag_breaks_its_chain() {
    let mut state = accounts();
    apply_ok(&mut state, 0, &[transfer(10, 1, 2, 5)]);
    let before = state.clone();
    let results = apply(
        &mut state,
        0,
        &[linked(transfer(10, 1, 2, 5)), transfer(11, 1, 2, 6)],
    );
    assert_eq!(results, [R::ExistsWithDifferentFlags, R::LinkedEventFailed]);
    assert_eq!(state, before);
}

#[test]
fn a_duplicate_id_inside_a_chain_fails_it() {
    let mut state = accounts();
    let before = state.clone();
    let results = apply(
        &mut state,
        0,
        &[
            linked(transfer(10, 1, 2, 5)),
            linked(transfer(10, 1, 2, 6)),
            transfer(12, 1, 2, 1),
        ],
    );
    assert_eq!(
        results,
        [
            R::LinkedEventFailed,
            R::ExistsWithDifferentAmount,
            R::LinkedEventFailed
        ]
    );
    assert_eq!(state, before);
}
