//! Every refusal code of a transfer, each on a clone of one fixture: the result must be the
//! expected code and the state must be exactly as before (nothing half-applied).

mod common;

use common::{CODE, LEDGER, apply, apply_ok, balances, create_accounts, new_account, pending};
use common::{post, transfer, void};
use guoku_ledger::{AccountFlags, CreateTransferResult as R, State, Transfer, TransferFlags};

const MAX: u128 = u128::MAX;
/// The `now` at which the fixture ends and the cases are applied.
const NOW: u64 = 20;

/// Accounts 1, 2, 3, 7 plain, 4 `DEBITS_MUST_NOT_EXCEED_CREDITS`, 5
/// `CREDITS_MUST_NOT_EXCEED_DEBITS` on ledger 1; 6 on ledger 2; 8..=13 on ledger 3.
///
/// Transfers: 100 (1→2, 50), 101 (1→4, 100), pending 200 (1→2, 30, still pending), pending
/// 201 (posted in full by 301), pending 202 (voided by 302), pending 203 (timeout 5 at
/// now 10: expired at 20), 800 (8→9, u128::MAX), pending 400 (11→12, u128::MAX).
fn fixture() -> State {
    let mut state = State::new();
    let plain = AccountFlags::NONE;
    let mut accounts = vec![
        new_account(1, LEDGER, plain),
        new_account(2, LEDGER, plain),
        new_account(3, LEDGER, plain),
        new_account(7, LEDGER, plain),
        new_account(4, LEDGER, AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS),
        new_account(5, LEDGER, AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS),
        new_account(6, 2, plain),
    ];
    accounts.extend((8..=13).map(|id| new_account(id, 3, plain)));
    create_accounts(&mut state, &accounts);
    let on_ledger_3 = |t: Transfer| Transfer { ledger: 3, ..t };
    apply_ok(
        &mut state,
        10,
        &[
            transfer(100, 1, 2, 50),
            transfer(101, 1, 4, 100),
            pending(200, 1, 2, 30, 0),
            pending(201, 1, 2, 40, 0),
            pending(202, 1, 2, 20, 0),
            pending(203, 1, 2, 10, 5),
            post(301, 201, 0),
            void(302, 202),
            on_ledger_3(transfer(800, 8, 9, MAX)),
            on_ledger_3(pending(400, 11, 12, MAX, 0)),
        ],
    );
    apply_ok(&mut state, NOW, &[]);
    state
}

#[test]
fn fixture_is_what_the_cases_assume() {
    let state = fixture();
    // 1 paid 50 and 100, posted 40 of pending 201; 200 (30) is still reserved.
    assert_eq!(balances(&state, 1), [30, 190, 0, 0]);
    assert_eq!(balances(&state, 2), [0, 0, 30, 90]);
    assert_eq!(balances(&state, 4), [0, 0, 0, 100]);
    assert_eq!(balances(&state, 8), [0, MAX, 0, 0]);
    assert_eq!(balances(&state, 12), [0, 0, MAX, 0]);
    use guoku_ledger::PendingStatus as S;
    let status = |id| state.transfer(id).map(|r| r.status);
    assert_eq!(status(200), Some(S::Pending));
    assert_eq!(status(201), Some(S::Posted));
    assert_eq!(status(202), Some(S::Voided));
    assert_eq!(status(203), Some(S::Expired));
    assert_eq!(status(100), Some(S::None));
    state.check_invariants().unwrap();
}

/// Applies each case to a clone of the fixture; collects every mismatch before failing.
fn check(cases: &[(&str, Transfer, R)]) {
    let fixture = fixture();
    let mut failures = Vec::new();
    for (name, t, expected) in cases {
        let mut state = fixture.clone();
        let results = apply(&mut state, NOW, &[*t]);
        if results != [*expected] {
            failures.push(format!("{name}: expected {expected:?}, got {results:?}"));
        } else if state != fixture {
            failures.push(format!("{name}: refused but the state changed"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn with(t: Transfer, change: impl FnOnce(&mut Transfer)) -> Transfer {
    let mut t = t;
    change(&mut t);
    t
}

#[test]
fn malformed_transfers_are_refused() {
    let t = transfer(500, 1, 2, 1);
    check(&[
        ("id zero", transfer(0, 1, 2, 1), R::IdMustNotBeZero),
        ("id max", transfer(MAX, 1, 2, 1), R::IdMustNotBeIntMax),
        (
            "pending and post",
            with(t, |t| {
                t.flags = TransferFlags::PENDING | TransferFlags::POST_PENDING_TRANSFER
            }),
            R::FlagsAreMutuallyExclusive,
        ),
        (
            "post and void",
            with(post(500, 200, 0), |t| {
                t.flags |= TransferFlags::VOID_PENDING_TRANSFER
            }),
            R::FlagsAreMutuallyExclusive,
        ),
        (
            "debit zero",
            transfer(500, 0, 2, 1),
            R::DebitAccountIdMustNotBeZero,
        ),
        (
            "debit max",
            transfer(500, MAX, 2, 1),
            R::DebitAccountIdMustNotBeIntMax,
        ),
        (
            "credit zero",
            transfer(500, 1, 0, 1),
            R::CreditAccountIdMustNotBeZero,
        ),
        (
            "credit max",
            transfer(500, 1, MAX, 1),
            R::CreditAccountIdMustNotBeIntMax,
        ),
        (
            "same account",
            transfer(500, 1, 1, 1),
            R::AccountsMustBeDifferent,
        ),
        (
            "pending id on single-phase",
            with(t, |t| t.pending_id = 200),
            R::PendingIdMustBeZero,
        ),
        (
            "post without pending id",
            post(500, 0, 0),
            R::PendingIdMustNotBeZero,
        ),
        (
            "void with pending id max",
            void(500, MAX),
            R::PendingIdMustNotBeIntMax,
        ),
        (
            "post of itself",
            post(500, 500, 0),
            R::PendingIdMustBeDifferent,
        ),
        (
            "timeout on single-phase",
            with(t, |t| t.timeout = 5),
            R::TimeoutReservedForPendingTransfer,
        ),
        (
            "timeout on post",
            with(post(500, 200, 0), |t| t.timeout = 5),
            R::TimeoutReservedForPendingTransfer,
        ),
        (
            "zero amount",
            transfer(500, 1, 2, 0),
            R::AmountMustNotBeZero,
        ),
        (
            "zero pending amount",
            pending(500, 1, 2, 0, 0),
            R::AmountMustNotBeZero,
        ),
        (
            "ledger zero",
            with(t, |t| t.ledger = 0),
            R::LedgerMustNotBeZero,
        ),
        ("code zero", with(t, |t| t.code = 0), R::CodeMustNotBeZero),
    ]);
}

#[test]
fn transfers_between_unknown_or_foreign_accounts_are_refused() {
    check(&[
        (
            "unknown debit",
            transfer(500, 99, 2, 1),
            R::DebitAccountNotFound,
        ),
        (
            "unknown credit",
            transfer(500, 1, 99, 1),
            R::CreditAccountNotFound,
        ),
        (
            "other tenant",
            transfer(500, 1, 6, 1),
            R::AccountsMustHaveTheSameLedger,
        ),
        (
            "other tenant reversed",
            with(transfer(500, 6, 1, 1), |t| t.ledger = 2),
            R::AccountsMustHaveTheSameLedger,
        ),
        (
            "transfer ledger not the accounts'",
            with(transfer(500, 1, 2, 1), |t| t.ledger = 2),
            R::TransferMustHaveTheSameLedgerAsAccounts,
        ),
    ]);
}

#[test]
fn posts_and_voids_that_do_not_fit_their_pending_transfer_are_refused() {
    check(&[
        (
            "post of unknown",
            post(500, 999, 0),
            R::PendingTransferNotFound,
        ),
        (
            "void of unknown",
            void(500, 999),
            R::PendingTransferNotFound,
        ),
        (
            "post of single-phase",
            post(500, 100, 0),
            R::PendingTransferNotPending,
        ),
        (
            "post of a post",
            post(500, 301, 0),
            R::PendingTransferNotPending,
        ),
        (
            "other debit",
            with(post(500, 200, 0), |t| t.debit_account_id = 3),
            R::PendingTransferHasDifferentDebitAccountId,
        ),
        (
            "other credit",
            with(void(500, 200), |t| t.credit_account_id = 3),
            R::PendingTransferHasDifferentCreditAccountId,
        ),
        (
            "other ledger",
            with(post(500, 200, 0), |t| t.ledger = 2),
            R::PendingTransferHasDifferentLedger,
        ),
        (
            "other code",
            with(post(500, 200, 0), |t| t.code = CODE + 1),
            R::PendingTransferHasDifferentCode,
        ),
        (
            "post above pending",
            post(500, 200, 31),
            R::ExceedsPendingTransferAmount,
        ),
        (
            "void of another amount",
            with(void(500, 200), |t| t.amount = 29),
            R::PendingTransferHasDifferentAmount,
        ),
        (
            "post of posted",
            post(500, 201, 0),
            R::PendingTransferAlreadyPosted,
        ),
        (
            "void of posted",
            void(500, 201),
            R::PendingTransferAlreadyPosted,
        ),
        (
            "post of voided",
            post(500, 202, 0),
            R::PendingTransferAlreadyVoided,
        ),
        (
            "void of voided",
            void(500, 202),
            R::PendingTransferAlreadyVoided,
        ),
        (
            "post of expired",
            post(500, 203, 0),
            R::PendingTransferExpired,
        ),
        ("void of expired", void(500, 203), R::PendingTransferExpired),
    ]);
}

#[test]
fn resent_ids_are_idempotent_and_different_fields_are_named() {
    let paid = transfer(100, 1, 2, 50);
    let reserved = pending(200, 1, 2, 30, 0);
    check(&[
        ("same single-phase", paid, R::Exists),
        ("same pending", reserved, R::Exists),
        ("same post, fields implied", post(301, 201, 0), R::Exists),
        (
            "same post, fields spelled out",
            Transfer {
                debit_account_id: 1,
                credit_account_id: 2,
                ledger: LEDGER,
                code: CODE,
                ..post(301, 201, 40)
            },
            R::Exists,
        ),
        ("same void", void(302, 202), R::Exists),
        (
            "same void with its amount",
            with(void(302, 202), |t| t.amount = 20),
            R::Exists,
        ),
        (
            "flags",
            with(paid, |t| t.flags = TransferFlags::PENDING),
            R::ExistsWithDifferentFlags,
        ),
        (
            "single-phase resent as post",
            post(100, 200, 0),
            R::ExistsWithDifferentFlags,
        ),
        (
            "debit",
            with(paid, |t| t.debit_account_id = 3),
            R::ExistsWithDifferentDebitAccountId,
        ),
        (
            "credit",
            with(paid, |t| t.credit_account_id = 3),
            R::ExistsWithDifferentCreditAccountId,
        ),
        (
            "amount",
            with(paid, |t| t.amount = 51),
            R::ExistsWithDifferentAmount,
        ),
        (
            "user data",
            with(paid, |t| t.user_data = 9),
            R::ExistsWithDifferentUserData,
        ),
        (
            "timeout",
            with(reserved, |t| t.timeout = 7),
            R::ExistsWithDifferentTimeout,
        ),
        (
            "ledger",
            with(paid, |t| t.ledger = 2),
            R::ExistsWithDifferentLedger,
        ),
        (
            "code",
            with(paid, |t| t.code = CODE + 1),
            R::ExistsWithDifferentCode,
        ),
        (
            "post's pending id",
            post(301, 200, 0),
            R::ExistsWithDifferentPendingId,
        ),
        (
            "post's amount",
            post(301, 201, 39),
            R::ExistsWithDifferentAmount,
        ),
        (
            "post's debit",
            with(post(301, 201, 0), |t| t.debit_account_id = 3),
            R::ExistsWithDifferentDebitAccountId,
        ),
        (
            "post's credit",
            with(post(301, 201, 0), |t| t.credit_account_id = 3),
            R::ExistsWithDifferentCreditAccountId,
        ),
        (
            "post's user data",
            with(post(301, 201, 0), |t| t.user_data = 9),
            R::ExistsWithDifferentUserData,
        ),
        (
            "post's ledger",
            with(post(301, 201, 0), |t| t.ledger = 2),
            R::ExistsWithDifferentLedger,
        ),
        (
            "post's code",
            with(post(301, 201, 0), |t| t.code = CODE + 1),
            R::ExistsWithDifferentCode,
        ),
        (
            "void's amount",
            with(void(302, 202), |t| t.amount = 19),
            R::ExistsWithDifferentAmount,
        ),
        (
            "void resent as post",
            post(302, 202, 0),
            R::ExistsWithDifferentFlags,
        ),
    ]);
}

#[test]
fn balances_never_overflow() {
    let l3 = |t: Transfer| Transfer { ledger: 3, ..t };
    check(&[
        (
            "debits posted",
            l3(transfer(500, 8, 10, 1)),
            R::OverflowsDebitsPosted,
        ),
        (
            "credits posted",
            l3(transfer(500, 10, 9, 1)),
            R::OverflowsCreditsPosted,
        ),
        (
            "debits pending",
            l3(pending(500, 11, 13, 1, 0)),
            R::OverflowsDebitsPending,
        ),
        (
            "credits pending",
            l3(pending(500, 13, 12, 1, 0)),
            R::OverflowsCreditsPending,
        ),
        (
            "debits pending plus posted",
            l3(pending(500, 8, 10, 1, 0)),
            R::OverflowsDebits,
        ),
        (
            "credits pending plus posted",
            l3(pending(500, 10, 9, 1, 0)),
            R::OverflowsCredits,
        ),
        (
            "deadline",
            pending(500, 1, 2, 1, u64::MAX),
            R::OverflowsTimeout,
        ),
    ]);
}

#[test]
fn limit_flags_are_never_exceeded() {
    check(&[
        (
            "debit past credits",
            transfer(500, 4, 1, 101),
            R::ExceedsCredits,
        ),
        (
            "pending debit past credits",
            pending(500, 4, 1, 101, 0),
            R::ExceedsCredits,
        ),
        (
            "credit past debits",
            transfer(500, 1, 5, 1),
            R::ExceedsDebits,
        ),
        (
            "pending credit past debits",
            pending(500, 1, 5, 1, 0),
            R::ExceedsDebits,
        ),
    ]);
}

#[test]
fn a_limit_can_be_reached_exactly_and_reservations_count_against_it() {
    let mut state = fixture();
    // 4 holds 100 of credits: reserve 60, then only 40 remain.
    apply_ok(&mut state, NOW, &[pending(500, 4, 1, 60, 0)]);
    assert_eq!(
        apply(&mut state, NOW, &[transfer(501, 4, 1, 41)]),
        [R::ExceedsCredits]
    );
    apply_ok(&mut state, NOW, &[transfer(501, 4, 1, 40)]);
    assert_eq!(balances(&state, 4), [60, 40, 0, 100]);
    // Voiding the reservation frees it again.
    apply_ok(&mut state, NOW, &[void(502, 500)]);
    apply_ok(&mut state, NOW, &[transfer(503, 4, 1, 60)]);
    assert_eq!(balances(&state, 4), [0, 100, 0, 100]);
    assert_eq!(
        apply(&mut state, NOW, &[transfer(504, 4, 1, 1)]),
        [R::ExceedsCredits]
    );
}

#[test]
fn a_credit_limit_follows_the_debits() {
    let mut state = fixture();
    apply_ok(&mut state, NOW, &[transfer(500, 5, 1, 25)]);
    assert_eq!(
        apply(&mut state, NOW, &[transfer(501, 1, 5, 26)]),
        [R::ExceedsDebits]
    );
    apply_ok(&mut state, NOW, &[transfer(501, 1, 5, 25)]);
    assert_eq!(balances(&state, 5), [0, 25, 0, 25]);
}

#[test]
fn refused_ids_stay_free_for_a_correct_transfer() {
    let mut state = fixture();
    assert_eq!(
        apply(&mut state, NOW, &[transfer(500, 1, 2, 0)]),
        [R::AmountMustNotBeZero]
    );
    assert!(state.transfer(500).is_none());
    apply_ok(&mut state, NOW, &[transfer(500, 1, 2, 5)]);
    assert_eq!(state.transfer(500).map(|r| r.transfer.amount), Some(5));
}
