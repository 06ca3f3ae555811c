//! Account creation: refusals, idempotency and linked chains.

mod common;

use common::{LEDGER, new_account};
use guoku_ledger::{
    Account, AccountFlags, BATCH_MAX, BatchError, CreateAccountResult as R, NewAccount, State,
};

fn create(state: &mut State, batch: &[NewAccount]) -> Vec<R> {
    state.create_accounts(batch).expect("batch within limits")
}

fn plain(id: u128) -> NewAccount {
    new_account(id, LEDGER, AccountFlags::NONE)
}

#[test]
fn created_accounts_start_at_zero_with_the_given_fields() {
    let mut state = State::new();
    let new = NewAccount {
        user_data: 42,
        ..new_account(1, 7, AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS)
    };
    assert_eq!(create(&mut state, &[new]), [R::Ok]);
    assert_eq!(state.account(1), Some(&Account::new(&new)));
    let a = state.account(1).unwrap();
    assert_eq!((a.ledger, a.code, a.user_data), (7, common::CODE, 42));
    assert_eq!(
        [
            a.debits_pending,
            a.debits_posted,
            a.credits_pending,
            a.credits_posted
        ],
        [0; 4]
    );
    assert_eq!(state.ledger_totals(7).map(|t| t.accounts), Some(1));
    state.check_invariants().unwrap();
}

#[test]
fn malformed_accounts_are_refused_and_change_nothing() {
    let cases = [
        ("id zero", plain(0), R::IdMustNotBeZero),
        ("id max", plain(u128::MAX), R::IdMustNotBeIntMax),
        (
            "both limits",
            new_account(
                1,
                LEDGER,
                AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS
                    | AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS,
            ),
            R::FlagsAreMutuallyExclusive,
        ),
        (
            "ledger zero",
            new_account(1, 0, AccountFlags::NONE),
            R::LedgerMustNotBeZero,
        ),
        (
            "code zero",
            NewAccount {
                code: 0,
                ..plain(1)
            },
            R::CodeMustNotBeZero,
        ),
    ];
    for (name, new, expected) in cases {
        let mut state = State::new();
        assert_eq!(create(&mut state, &[new]), [expected], "{name}");
        assert_eq!(state, State::new(), "{name}");
    }
}

#[test]
fn recreating_an_account_is_idempotent_and_differences_are_named() {
    let mut state = State::new();
    let original = NewAccount {
        user_data: 5,
        ..plain(1)
    };
    assert_eq!(create(&mut state, &[original]), [R::Ok]);
    let before = state.clone();
    let cases = [
        ("same", original, R::Exists),
        (
            "flags",
            NewAccount {
                flags: AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS,
                ..original
            },
            R::ExistsWithDifferentFlags,
        ),
        (
            "user data",
            NewAccount {
                user_data: 6,
                ..original
            },
            R::ExistsWithDifferentUserData,
        ),
        (
            "ledger",
            NewAccount {
                ledger: 2,
                ..original
            },
            R::ExistsWithDifferentLedger,
        ),
        (
            "code",
            NewAccount {
                code: 11,
                ..original
            },
            R::ExistsWithDifferentCode,
        ),
    ];
    for (name, new, expected) in cases {
        assert_eq!(create(&mut state, &[new]), [expected], "{name}");
        assert_eq!(state, before, "{name}");
    }
}

#[test]
fn a_linked_chain_of_accounts_is_all_or_nothing() {
    let mut state = State::new();
    let link = |n: NewAccount| NewAccount {
        flags: n.flags | AccountFlags::LINKED,
        ..n
    };
    // The chain puts account 2 on a new ledger 9; the failure must also drop that ledger.
    let results = create(
        &mut state,
        &[
            plain(1),
            link(plain(2)),
            link(new_account(3, 9, AccountFlags::NONE)),
            NewAccount {
                code: 0,
                ..plain(4)
            },
            plain(5),
        ],
    );
    assert_eq!(
        results,
        [
            R::Ok,
            R::LinkedEventFailed,
            R::LinkedEventFailed,
            R::CodeMustNotBeZero,
            R::Ok
        ]
    );
    assert!(state.account(2).is_none() && state.account(3).is_none());
    assert!(state.ledger_totals(9).is_none());
    let mut expected = State::new();
    assert_eq!(create(&mut expected, &[plain(1), plain(5)]), [R::Ok, R::Ok]);
    assert_eq!(state, expected);
    state.check_invariants().unwrap();

    let results = create(&mut state, &[link(plain(2)), plain(3)]);
    assert_eq!(results, [R::Ok, R::Ok]);
    assert!(state.account(2).is_some() && state.account(3).is_some());
}

#[test]
fn an_account_chain_left_open_fails() {
    let mut state = State::new();
    let link = |n: NewAccount| NewAccount {
        flags: AccountFlags::LINKED,
        ..n
    };
    let results = create(&mut state, &[plain(1), link(plain(2)), link(plain(3))]);
    assert_eq!(
        results,
        [R::Ok, R::LinkedEventFailed, R::LinkedEventChainOpen]
    );
    assert_eq!(state.account_count(), 1);
}

#[test]
fn account_batches_above_the_limit_are_refused_whole() {
    let mut state = State::new();
    let batch: Vec<NewAccount> = (1..=BATCH_MAX as u128 + 1).map(plain).collect();
    assert_eq!(
        state.create_accounts(&batch),
        Err(BatchError::TooLarge {
            len: BATCH_MAX + 1,
            max: BATCH_MAX
        })
    );
    assert_eq!(state, State::new());
}

#[test]
fn flags_refuse_unknown_bits() {
    assert_eq!(
        AccountFlags::from_bits(0b111),
        Some(
            AccountFlags::LINKED
                | AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS
                | AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS
        )
    );
    assert_eq!(AccountFlags::from_bits(0b1000), None);
    assert_eq!(guoku_ledger::TransferFlags::from_bits(1 << 4), None);
    assert_eq!(
        format!(
            "{:?}",
            AccountFlags::LINKED | AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS
        ),
        "AccountFlags(LINKED | DEBITS_MUST_NOT_EXCEED_CREDITS)"
    );
}
