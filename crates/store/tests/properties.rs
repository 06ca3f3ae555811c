//! Property tests over random operation sequences, on SQLite and on PostgreSQL.
//!
//! Random accounts (with and without limit flags, on two ledgers) and random batches of
//! single-phase, pending, post, void, linked and resent transfers, with time moving forward
//! so that deadlines pass. After every batch the store's results equal the in-memory
//! engine's; at the end the state read back equals the engine's state (which re-runs the
//! full invariant scan: money conserved in every ledger, every balance the sum of its
//! transfers, no limit-flagged balance past its limit), and replaying the same batches into
//! a fresh store gives the same results and the same state.
//!
//! Case counts are modest on PostgreSQL (~100 µs per round trip).

mod common;

use std::sync::OnceLock;

use common::TestStore;
use guoku_ledger::{
    AccountFlags, CreateTransferResult, NewAccount, State, Transfer, TransferFlags,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime")
    })
}

/// (kind, account a, account b, amount, target transfer, linked).
type Event = (u8, u128, u128, u128, u128, bool);

#[derive(Clone, Debug)]
struct Scenario {
    /// (ledger 1 or 2, limit 0 none / 1 debits / 2 credits) of accounts 1, 2, …
    accounts: Vec<(u32, u8)>,
    /// (time advance, events as (kind, a, b, amount, target, linked)).
    batches: Vec<(u64, Vec<Event>)>,
}

fn scenario() -> impl Strategy<Value = Scenario> {
    let accounts = prop::collection::vec((1..=2u32, 0..3u8), 3..7);
    let amount =
        prop_oneof![8 => 1..=500u128, 1 => Just(0u128), 1 => (u128::MAX - 100)..=u128::MAX];
    let event = (
        0..7u8,
        1..=7u128,
        1..=7u128,
        amount,
        0..30u128,
        prop::bool::weighted(0.2),
    );
    let batch = (0..4u64, prop::collection::vec(event, 0..10));
    (accounts, prop::collection::vec(batch, 1..8))
        .prop_map(|(accounts, batches)| Scenario { accounts, batches })
}

fn build(s: &Scenario) -> (Vec<NewAccount>, Vec<(u64, Vec<Transfer>)>) {
    let flags = [
        AccountFlags::NONE,
        AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS,
        AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS,
    ];
    let accounts: Vec<NewAccount> = s
        .accounts
        .iter()
        .enumerate()
        .map(|(i, &(ledger, limit))| NewAccount {
            id: u128::try_from(i).unwrap() + 1,
            user_data: 0,
            ledger,
            code: 1,
            flags: flags[usize::from(limit)],
        })
        .collect();
    let mut now = 1;
    let mut next_id = 100u128;
    let mut batches = Vec::new();
    for (advance, events) in &s.batches {
        now += advance;
        let batch = events
            .iter()
            .map(|&(kind, a, b, amount, target, linked)| {
                next_id += 1;
                let target = 100 + target;
                let base = Transfer {
                    id: next_id,
                    debit_account_id: a,
                    credit_account_id: b,
                    amount,
                    ledger: 1,
                    code: 1,
                    ..Transfer::default()
                };
                let t = match kind {
                    0 | 1 => base,
                    2 => Transfer {
                        flags: TransferFlags::PENDING,
                        timeout: u64::try_from(amount % 4).unwrap(),
                        ..base
                    },
                    3 => Transfer {
                        id: next_id,
                        pending_id: target,
                        amount: amount % 3 * 50,
                        flags: TransferFlags::POST_PENDING_TRANSFER,
                        ..Transfer::default()
                    },
                    4 => Transfer {
                        id: next_id,
                        pending_id: target,
                        flags: TransferFlags::VOID_PENDING_TRANSFER,
                        ..Transfer::default()
                    },
                    5 => Transfer { id: target, ..base },
                    _ => Transfer { ledger: 2, ..base },
                };
                if linked {
                    Transfer {
                        flags: t.flags | TransferFlags::LINKED,
                        ..t
                    }
                } else {
                    t
                }
            })
            .collect();
        batches.push((now, batch));
    }
    (accounts, batches)
}

async fn run(
    t: &TestStore,
    accounts: &[NewAccount],
    batches: &[(u64, Vec<Transfer>)],
) -> Result<(Vec<Vec<CreateTransferResult>>, State), TestCaseError> {
    let store = &t.store;
    let mut engine = State::new();
    let expected = engine.create_accounts(accounts).unwrap();
    prop_assert_eq!(
        store.create_accounts(accounts.to_vec()).await.unwrap(),
        expected
    );
    // Seed money both ways so that limited accounts can move.
    let seed: Vec<Transfer> = accounts
        .windows(2)
        .enumerate()
        .filter(|(_, pair)| pair[0].ledger == pair[1].ledger)
        .map(|(i, pair)| Transfer {
            id: 1 + u128::try_from(i).unwrap(),
            debit_account_id: pair[0].id,
            credit_account_id: pair[1].id,
            amount: 1_000,
            ledger: pair[0].ledger,
            code: 1,
            ..Transfer::default()
        })
        .collect();
    let mut all = Vec::new();
    for (now, batch) in std::iter::once(&(1u64, seed)).chain(batches) {
        let stored = store.create_transfers(*now, batch.clone()).await.unwrap();
        let expected = engine.create_transfers(*now, batch).unwrap();
        prop_assert_eq!(&stored, &expected, "batch at {}", now);
        all.push(stored);
    }
    let state = store.load_state().await.unwrap();
    prop_assert_eq!(&state, &engine);
    state.check_invariants().unwrap();
    for ledger in [1, 2] {
        if let Some(totals) = state.ledger_totals(ledger) {
            prop_assert!(totals.is_balanced(), "money conserved on ledger {}", ledger);
        }
    }
    prop_assert!(state.accounts().all(guoku_ledger::Account::within_limits));
    Ok((all, state))
}

async fn check(
    first: TestStore,
    second: TestStore,
    scenario: &Scenario,
) -> Result<(), TestCaseError> {
    let (accounts, batches) = build(scenario);
    let (results, state) = run(&first, &accounts, &batches).await?;
    let (replayed, replayed_state) = run(&second, &accounts, &batches).await?;
    prop_assert_eq!(results, replayed);
    prop_assert_eq!(state, replayed_state);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn sqlite_matches_the_engine_and_replays(scenario in scenario()) {
        runtime().block_on(async {
            let first = common::sqlite_store().await;
            let second = common::sqlite_store().await;
            check(first, second, &scenario).await
        })?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(10))]
    #[test]
    fn postgres_matches_the_engine_and_replays(scenario in scenario()) {
        runtime().block_on(async {
            let Some(first) = common::pg_store().await else { return Ok(()) };
            let Some(second) = common::pg_store().await else { return Ok(()) };
            check(first, second, &scenario).await
        })?;
    }
}
