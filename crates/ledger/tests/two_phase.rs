//! Single-phase effects and the two-phase life cycle: reserve, post (all or less), void,
//! expire; and the batch-level errors.

mod common;

use common::{LEDGER, apply, apply_ok, balances, create_accounts, new_account};
use common::{pending, post, transfer, void};
use guoku_ledger::{
    AccountFlags, BATCH_MAX, BatchError, CreateTransferResult as R, PendingStatus, State, Transfer,
};

/// Accounts 1 and 2, plain, on [`LEDGER`].
fn two_accounts() -> State {
    let mut state = State::new();
    create_accounts(
        &mut state,
        &[
            new_account(1, LEDGER, AccountFlags::NONE),
            new_account(2, LEDGER, AccountFlags::NONE),
        ],
    );
    state
}

fn status(state: &State, id: u128) -> Option<PendingStatus> {
    state.transfer(id).map(|r| r.status)
}

#[test]
fn single_phase_moves_posted_balances_and_is_recorded() {
    let mut state = two_accounts();
    let t = Transfer {
        user_data: 0x5201,
        ..transfer(10, 1, 2, 1_500)
    };
    apply_ok(&mut state, 7, &[t]);
    assert_eq!(balances(&state, 1), [0, 1_500, 0, 0]);
    assert_eq!(balances(&state, 2), [0, 0, 0, 1_500]);
    let record = state.transfer(10).unwrap();
    assert_eq!(record.transfer, t);
    assert_eq!(record.timestamp, 7);
    assert_eq!(record.status, PendingStatus::None);
    let totals = state.ledger_totals(LEDGER).unwrap();
    assert_eq!(totals.debits_posted.to_u128(), Some(1_500));
    assert_eq!(totals.credits_posted.to_u128(), Some(1_500));
    assert_eq!(totals.accounts, 2);
}

#[test]
fn resending_a_transfer_changes_nothing() {
    let mut state = two_accounts();
    apply_ok(&mut state, 1, &[transfer(10, 1, 2, 100)]);
    let before = state.clone();
    // In the same batch twice, and again later: applied once.
    assert_eq!(
        apply(
            &mut state,
            1,
            &[transfer(10, 1, 2, 100), transfer(10, 1, 2, 100)]
        ),
        [R::Exists, R::Exists]
    );
    assert_eq!(state, before);
    let mut fresh = two_accounts();
    assert_eq!(
        apply(
            &mut fresh,
            1,
            &[transfer(10, 1, 2, 100), transfer(10, 1, 2, 100)]
        ),
        [R::Ok, R::Exists]
    );
    assert_eq!(fresh, before);
}

#[test]
fn pending_reserves_then_post_moves_all_of_it() {
    let mut state = two_accounts();
    apply_ok(&mut state, 1, &[pending(10, 1, 2, 300, 0)]);
    assert_eq!(balances(&state, 1), [300, 0, 0, 0]);
    assert_eq!(balances(&state, 2), [0, 0, 300, 0]);
    assert_eq!(status(&state, 10), Some(PendingStatus::Pending));

    apply_ok(&mut state, 2, &[post(11, 10, 0)]);
    assert_eq!(balances(&state, 1), [0, 300, 0, 0]);
    assert_eq!(balances(&state, 2), [0, 0, 0, 300]);
    assert_eq!(status(&state, 10), Some(PendingStatus::Posted));
    // The post is stored resolved: accounts, ledger, code and amount of the pending transfer.
    let posted = state.transfer(11).unwrap().transfer;
    assert_eq!(
        (
            posted.debit_account_id,
            posted.credit_account_id,
            posted.amount,
            posted.ledger
        ),
        (1, 2, 300, LEDGER)
    );
}

#[test]
fn post_may_move_less_and_releases_the_rest() {
    let mut state = two_accounts();
    apply_ok(
        &mut state,
        1,
        &[Transfer {
            user_data: 77,
            ..pending(10, 1, 2, 300, 0)
        }],
    );
    apply_ok(&mut state, 2, &[post(11, 10, 120)]);
    assert_eq!(balances(&state, 1), [0, 120, 0, 0]);
    assert_eq!(balances(&state, 2), [0, 0, 0, 120]);
    // user_data left 0 is taken from the pending transfer.
    assert_eq!(state.transfer(11).unwrap().transfer.user_data, 77);
    // The rest cannot be posted later.
    assert_eq!(
        apply(&mut state, 3, &[post(12, 10, 0)]),
        [R::PendingTransferAlreadyPosted]
    );
}

#[test]
fn void_releases_the_reservation() {
    let mut state = two_accounts();
    apply_ok(&mut state, 1, &[pending(10, 1, 2, 300, 0)]);
    apply_ok(&mut state, 2, &[void(11, 10)]);
    assert_eq!(balances(&state, 1), [0, 0, 0, 0]);
    assert_eq!(balances(&state, 2), [0, 0, 0, 0]);
    assert_eq!(status(&state, 10), Some(PendingStatus::Voided));
    assert_eq!(state.transfer(11).unwrap().transfer.amount, 300);
    assert_eq!(
        apply(&mut state, 3, &[post(12, 10, 0)]),
        [R::PendingTransferAlreadyVoided]
    );
}

#[test]
fn pending_expires_at_its_deadline_and_is_released() {
    let mut state = two_accounts();
    apply_ok(&mut state, 100, &[pending(10, 1, 2, 300, 50)]);
    assert_eq!(state.transfer(10).unwrap().expires_at(), Some(150));
    // Just before the deadline it can still be posted (checked on a snapshot).
    let mut before_deadline = state.clone();
    apply_ok(&mut before_deadline, 149, &[post(11, 10, 0)]);
    assert_eq!(balances(&before_deadline, 2), [0, 0, 0, 300]);
    // At the deadline it expires as the batch begins, even an empty one.
    apply_ok(&mut state, 150, &[]);
    assert_eq!(status(&state, 10), Some(PendingStatus::Expired));
    assert_eq!(balances(&state, 1), [0, 0, 0, 0]);
    assert_eq!(balances(&state, 2), [0, 0, 0, 0]);
    assert_eq!(
        apply(&mut state, 151, &[post(11, 10, 0)]),
        [R::PendingTransferExpired]
    );
    assert_eq!(
        apply(&mut state, 151, &[void(11, 10)]),
        [R::PendingTransferExpired]
    );
}

#[test]
fn pending_expiry_is_seen_by_the_same_batch_that_passes_the_deadline() {
    let mut state = two_accounts();
    apply_ok(&mut state, 100, &[pending(10, 1, 2, 300, 50)]);
    assert_eq!(
        apply(&mut state, 1_000, &[post(11, 10, 0)]),
        [R::PendingTransferExpired]
    );
    state.check_invariants().unwrap();
}

#[test]
fn pending_without_timeout_never_expires() {
    let mut state = two_accounts();
    apply_ok(&mut state, 1, &[pending(10, 1, 2, 300, 0)]);
    assert_eq!(state.transfer(10).unwrap().expires_at(), None);
    apply_ok(&mut state, u64::MAX, &[post(11, 10, 0)]);
    assert_eq!(status(&state, 10), Some(PendingStatus::Posted));
}

#[test]
fn expiry_releases_deadlines_in_order_and_only_due_ones() {
    let mut state = two_accounts();
    apply_ok(
        &mut state,
        0,
        &[
            pending(10, 1, 2, 1, 30),
            pending(11, 1, 2, 2, 10),
            pending(12, 1, 2, 4, 20),
        ],
    );
    apply_ok(&mut state, 20, &[]);
    assert_eq!(status(&state, 11), Some(PendingStatus::Expired));
    assert_eq!(status(&state, 12), Some(PendingStatus::Expired));
    assert_eq!(status(&state, 10), Some(PendingStatus::Pending));
    assert_eq!(balances(&state, 1), [1, 0, 0, 0]);
}

#[test]
fn now_must_not_go_backwards() {
    let mut state = two_accounts();
    apply_ok(&mut state, 10, &[]);
    let before = state.clone();
    assert_eq!(
        state.create_transfers(9, &[transfer(10, 1, 2, 1)]),
        Err(BatchError::NowWentBackwards { now: 9, last: 10 })
    );
    assert_eq!(state, before);
    apply_ok(&mut state, 10, &[transfer(10, 1, 2, 1)]);
    assert_eq!(state.now(), 10);
}

#[test]
fn batches_above_the_limit_are_refused_whole() {
    let mut state = two_accounts();
    let before = state.clone();
    let batch: Vec<Transfer> = (1..=BATCH_MAX as u128 + 1)
        .map(|id| transfer(id, 1, 2, 1))
        .collect();
    assert_eq!(
        state.create_transfers(1, &batch),
        Err(BatchError::TooLarge {
            len: BATCH_MAX + 1,
            max: BATCH_MAX
        })
    );
    assert_eq!(state, before);
    // Exactly at the limit is fine.
    let results = apply(&mut state, 1, &batch[..BATCH_MAX]);
    assert!(results.iter().all(|&r| r == R::Ok));
    assert_eq!(state.transfer_count(), BATCH_MAX);
    assert_eq!(balances(&state, 2)[3], BATCH_MAX as u128);
}
