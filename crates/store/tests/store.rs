//! The store on both backends: it gives the same results as the in-memory engine, keeps
//! them across reopening, refuses bad batches whole, and answers queries.

mod common;

use guoku_ledger::{
    AccountFlags, BATCH_MAX, BatchError, CreateAccountResult as A, CreateTransferResult as R,
    NewAccount, State, Transfer, TransferFlags,
};
use guoku_store::{SqliteConfig, Store, StoreError};

const LEDGER: u32 = 7;

fn account(id: u128, flags: AccountFlags) -> NewAccount {
    NewAccount {
        id,
        user_data: id * 10,
        ledger: LEDGER,
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
        ledger: LEDGER,
        code: 3,
        ..Transfer::default()
    }
}

fn pending(id: u128, debit: u128, credit: u128, amount: u128, timeout: u64) -> Transfer {
    Transfer {
        flags: TransferFlags::PENDING,
        timeout,
        ..transfer(id, debit, credit, amount)
    }
}

fn settle(id: u128, pending_id: u128, flags: TransferFlags) -> Transfer {
    Transfer {
        id,
        pending_id,
        flags,
        ..Transfer::default()
    }
}

/// A scenario touching every path: limits, pending, post, void, expiry, linked chains,
/// resends, a reused id with another amount, unknown accounts, different ledgers.
fn scenario() -> (Vec<NewAccount>, Vec<(u64, Vec<Transfer>)>) {
    let accounts = vec![
        account(1, AccountFlags::NONE),
        account(2, AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS),
        account(3, AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS),
        NewAccount {
            ledger: LEDGER + 1,
            ..account(4, AccountFlags::NONE)
        },
    ];
    let linked = |t: Transfer| Transfer {
        flags: t.flags | TransferFlags::LINKED,
        ..t
    };
    let batches = vec![
        (
            10,
            vec![
                transfer(1, 1, 2, 1_000),
                pending(2, 2, 1, 300, 5),
                pending(3, 2, 1, 200, 0),
                pending(4, 2, 1, 100, 0),
                transfer(5, 2, 1, 500),
                transfer(6, 2, 1, 1),
            ],
        ),
        (
            12,
            vec![
                settle(7, 3, TransferFlags::POST_PENDING_TRANSFER),
                settle(8, 4, TransferFlags::VOID_PENDING_TRANSFER),
                transfer(1, 1, 2, 1_000),
                transfer(1, 1, 2, 999),
                transfer(9, 1, 99, 5),
                transfer(10, 1, 4, 5),
                linked(transfer(11, 3, 1, 50)),
                transfer(12, 2, 1, 1_000_000),
            ],
        ),
        // Transfer 2 expires at 15: its reservation is released before this batch.
        (
            15,
            vec![
                settle(13, 2, TransferFlags::POST_PENDING_TRANSFER),
                transfer(14, 2, 1, 300),
                settle(7, 3, TransferFlags::POST_PENDING_TRANSFER),
            ],
        ),
        (16, vec![]),
    ];
    (accounts, batches)
}

both_backends!(gives_the_engines_results_and_state, |store| {
    let (accounts, batches) = scenario();
    let mut engine = State::new();
    assert_eq!(
        store.create_accounts(accounts.clone()).await.unwrap(),
        engine.create_accounts(&accounts).unwrap()
    );
    for (now, batch) in batches {
        let stored = store.create_transfers(now, batch.clone()).await.unwrap();
        let expected = engine.create_transfers(now, &batch).unwrap();
        assert_eq!(stored, expected, "batch at {now}");
    }
    // The scenario really hits the interesting paths.
    let state = store.load_state().await.unwrap();
    assert_eq!(state, engine);
    assert_eq!(
        state.transfer(2).unwrap().status,
        guoku_ledger::PendingStatus::Expired
    );
    assert_eq!(store.now().await.unwrap(), 16);
    let two = store.account(2).await.unwrap().unwrap();
    assert_eq!(Some(&two), engine.account(2));
});

both_backends!(account_resends_are_idempotent_and_changes_named, |store| {
    let first = store
        .create_accounts(vec![account(1, AccountFlags::NONE)])
        .await
        .unwrap();
    assert_eq!(first, [A::Ok]);
    let again = store
        .create_accounts(vec![
            account(1, AccountFlags::NONE),
            account(1, AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS),
            NewAccount {
                code: 2,
                ..account(1, AccountFlags::NONE)
            },
            account(0, AccountFlags::NONE),
        ])
        .await
        .unwrap();
    assert_eq!(
        again,
        [
            A::Exists,
            A::ExistsWithDifferentFlags,
            A::ExistsWithDifferentCode,
            A::IdMustNotBeZero
        ]
    );
    let stored = store.accounts(vec![1, 2, 1]).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].user_data, 10);
});

both_backends!(a_linked_account_chain_is_all_or_nothing, |store| {
    let chain = vec![
        NewAccount {
            flags: AccountFlags::LINKED,
            ..account(5, AccountFlags::NONE)
        },
        account(0, AccountFlags::NONE),
    ];
    let results = store.create_accounts(chain).await.unwrap();
    assert_eq!(results, [A::LinkedEventFailed, A::IdMustNotBeZero]);
    assert_eq!(store.account(5).await.unwrap(), None);
});

both_backends!(now_going_backwards_refuses_the_whole_batch, |store| {
    store
        .create_accounts(vec![
            account(1, AccountFlags::NONE),
            account(2, AccountFlags::NONE),
        ])
        .await
        .unwrap();
    store
        .create_transfers(100, vec![transfer(1, 1, 2, 5)])
        .await
        .unwrap();
    let error = store
        .create_transfers(99, vec![transfer(2, 1, 2, 5)])
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            StoreError::Batch(BatchError::NowWentBackwards { now: 99, last: 100 })
        ),
        "{error:?}"
    );
    assert!(!error.is_retryable());
    assert!(store.transfers(vec![2]).await.unwrap().is_empty());
});

both_backends!(an_oversized_batch_is_refused_whole, |store| {
    store
        .create_accounts(vec![
            account(1, AccountFlags::NONE),
            account(2, AccountFlags::NONE),
        ])
        .await
        .unwrap();
    let batch: Vec<Transfer> = (1..=u128::try_from(BATCH_MAX + 1).unwrap())
        .map(|id| transfer(id, 1, 2, 1))
        .collect();
    let error = store.create_transfers(1, batch).await.unwrap_err();
    assert!(matches!(
        error,
        StoreError::Batch(BatchError::TooLarge { .. })
    ));
    assert_eq!(store.account(1).await.unwrap().unwrap().debits_posted, 0);
});

both_backends!(
    huge_amounts_round_trip_and_overflow_as_in_the_engine,
    |store| {
        let accounts = vec![
            account(1, AccountFlags::NONE),
            account(2, AccountFlags::NONE),
        ];
        let mut engine = State::new();
        engine.create_accounts(&accounts).unwrap();
        store.create_accounts(accounts).await.unwrap();
        let big = u128::MAX - 10;
        let batch = vec![
            transfer(1, 1, 2, big),
            transfer(2, 1, 2, 11),
            transfer(3, 1, 2, 10),
            transfer(4, 2, 1, u128::from(u64::MAX) + 7),
        ];
        let expected = engine.create_transfers(1, &batch).unwrap();
        assert_eq!(expected[1], R::OverflowsDebitsPosted);
        assert_eq!(store.create_transfers(1, batch).await.unwrap(), expected);
        assert_eq!(store.load_state().await.unwrap(), engine);
        // The database sums in limbs exactly: big + 10 + (2^64 + 6).
        let sum = store.single_phase_sum(LEDGER).await.unwrap();
        assert_eq!(sum, None, "the sum exceeds u128");
    }
);

both_backends!(exact_sums_in_sql, |store| {
    store
        .create_accounts(vec![
            account(1, AccountFlags::NONE),
            account(2, AccountFlags::NONE),
        ])
        .await
        .unwrap();
    let amounts = [u128::from(u64::MAX), 1 << 63, 3, (5 << 64) + 9];
    let batch = amounts
        .iter()
        .enumerate()
        .map(|(i, &a)| transfer(u128::try_from(i).unwrap() + 1, 1, 2, a))
        .collect();
    store.create_transfers(1, batch).await.unwrap();
    assert_eq!(
        store.single_phase_sum(LEDGER).await.unwrap(),
        Some(amounts.iter().sum())
    );
});

both_backends!(history_is_paged_oldest_first, |store| {
    store
        .create_accounts(vec![
            account(1, AccountFlags::NONE),
            account(2, AccountFlags::NONE),
            account(3, AccountFlags::NONE),
        ])
        .await
        .unwrap();
    // 25 transfers touch account 1 (as debit or credit), 5 do not.
    let mut batch = Vec::new();
    for id in 1..=30u128 {
        batch.push(match id % 6 {
            0 => transfer(id, 2, 3, id),
            1 | 2 => transfer(id, 2, 1, id),
            _ => transfer(id, 1, 2, id),
        });
    }
    store.create_transfers(5, batch).await.unwrap();
    let mut seen = Vec::new();
    let mut after = 0;
    let mut pages = 0;
    loop {
        let page = store.history(1, after, 10).await.unwrap();
        pages += 1;
        seen.extend(page.items.iter().map(|e| e.record.transfer.id));
        match page.next {
            Some(next) => after = next,
            None => break,
        }
    }
    let expected: Vec<u128> = (1..=30u128).filter(|id| id % 6 != 0).collect();
    assert_eq!(seen, expected);
    assert_eq!(pages, 3);
    assert!(store.history(1, 0, 0).await.is_err());
});

both_backends!(daily_totals_count_posted_money_per_day, |store| {
    store
        .create_accounts(vec![
            account(1, AccountFlags::NONE),
            account(2, AccountFlags::NONE),
        ])
        .await
        .unwrap();
    // Days of 86,400 s starting at 16:00 UTC (UTC+8 midnight).
    let day0 = 20_000u64;
    let t0 = day0 * 86_400 - 8 * 3_600;
    store
        .create_transfers(
            t0 + 10,
            vec![
                transfer(1, 1, 2, 100),
                transfer(2, 1, 2, 50),
                pending(3, 1, 2, 7, 0),
            ],
        )
        .await
        .unwrap();
    store
        .create_transfers(
            t0 + 86_400 + 5,
            vec![
                settle(4, 3, TransferFlags::POST_PENDING_TRANSFER),
                transfer(5, 2, 1, 1),
            ],
        )
        .await
        .unwrap();
    let totals = store.daily_totals(LEDGER, day0, day0 + 2).await.unwrap();
    let summary: Vec<(u64, u16, u64, u128)> = totals
        .iter()
        .map(|t| (t.day, t.code, t.transfers, t.amount))
        .collect();
    assert_eq!(summary, [(day0, 3, 2, 150), (day0 + 1, 3, 2, 8)]);
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_keeps_everything_across_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("reopen.db");
    let (accounts, batches) = scenario();
    let mut engine = State::new();
    engine.create_accounts(&accounts).unwrap();
    {
        let store = Store::open_sqlite(SqliteConfig::new(&path)).await.unwrap();
        store.create_accounts(accounts).await.unwrap();
        for (now, batch) in &batches[..2] {
            engine.create_transfers(*now, batch).unwrap();
            store.create_transfers(*now, batch.clone()).await.unwrap();
        }
    }
    // Reopening runs the migrations again (a no-op) and finds the same state.
    let store = Store::open_sqlite(SqliteConfig::new(&path)).await.unwrap();
    assert_eq!(store.load_state().await.unwrap(), engine);
    let (now, batch) = &batches[2];
    assert_eq!(
        store.create_transfers(*now, batch.clone()).await.unwrap(),
        engine.create_transfers(*now, batch).unwrap()
    );
    assert_eq!(store.load_state().await.unwrap(), engine);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_detects_a_tampered_balance_on_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tampered.db");
    let store = Store::open_sqlite(SqliteConfig::new(&path)).await.unwrap();
    store
        .create_accounts(vec![
            account(1, AccountFlags::NONE),
            account(2, AccountFlags::NONE),
        ])
        .await
        .unwrap();
    store
        .create_transfers(1, vec![transfer(1, 1, 2, 10)])
        .await
        .unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute(
        "UPDATE accounts SET credits_posted_lo = credits_posted_lo + 1",
        [],
    )
    .unwrap();
    drop(conn);
    let error = store.load_state().await.unwrap_err();
    assert!(matches!(error, StoreError::Corrupt(_)), "{error:?}");
    assert!(!error.is_retryable());
}

// Each batch below reuses ids in a way the optimistic attempt (which does not load the
// transfers named by the events' own ids) cannot see, so it must be rolled back and redone
// carefully: the results and the state must be exactly the engine's.
both_backends!(
    reused_ids_found_by_an_optimistic_attempt_give_the_careful_results,
    |store| {
        let accounts = vec![
            account(1, AccountFlags::NONE),
            account(2, AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS),
            account(3, AccountFlags::NONE),
        ];
        let linked = |t: Transfer| Transfer {
            flags: t.flags | TransferFlags::LINKED,
            ..t
        };
        let batches: Vec<(u64, Vec<Transfer>)> = vec![
            // Account 2 gets 100 to spend and spends all of it (ids 1..=3).
            (
                10,
                vec![
                    transfer(1, 1, 2, 100),
                    transfer(2, 2, 3, 60),
                    transfer(3, 2, 3, 40),
                ],
            ),
            // A resend with the same fields, among new transfers: the optimistic attempt
            // creates it again and the UNIQUE index refuses it.
            (
                11,
                vec![
                    transfer(4, 1, 3, 5),
                    transfer(1, 1, 2, 100),
                    transfer(5, 1, 3, 5),
                ],
            ),
            // A resend with another amount: the same, but `ExistsWithDifferentAmount`.
            (12, vec![transfer(6, 3, 1, 1), transfer(2, 2, 3, 61)]),
            // A resend the optimistic attempt refuses for another reason (account 2 has no
            // credits left): no row hits the index, the lookup of refused ids finds it.
            (13, vec![transfer(3, 2, 3, 40)]),
            // A reused id inside a linked chain: carefully it `Exists` and the chain applies.
            (
                14,
                vec![
                    linked(transfer(7, 1, 3, 2)),
                    linked(transfer(1, 1, 2, 100)),
                    transfer(8, 3, 1, 2),
                ],
            ),
            // Resends within the batch and across batches together, and a refused event
            // whose id was never used (the optimistic attempt stands).
            (
                15,
                vec![
                    transfer(9, 1, 3, 1),
                    transfer(9, 1, 3, 1),
                    transfer(9, 1, 3, 2),
                    transfer(10, 1, 99, 1),
                    transfer(4, 1, 3, 5),
                ],
            ),
            (16, vec![transfer(10, 1, 3, 1), transfer(11, 2, 3, 1)]),
        ];
        let mut engine = State::new();
        engine.create_accounts(&accounts).unwrap();
        store.create_accounts(accounts).await.unwrap();
        for (now, batch) in batches {
            let expected = engine.create_transfers(now, &batch).unwrap();
            let stored = store.create_transfers(now, batch).await.unwrap();
            assert_eq!(stored, expected, "batch at {now}");
        }
        assert_eq!(store.load_state().await.unwrap(), engine);
        // The paths were really taken: resends answered as resends.
        let resent = store
            .create_transfers(17, vec![transfer(3, 2, 3, 40)])
            .await;
        assert_eq!(resent.unwrap(), [R::Exists]);
        let history = store.history(2, 0, 100).await.unwrap();
        let ids: Vec<u128> = history.items.iter().map(|e| e.record.transfer.id).collect();
        assert_eq!(ids, [1, 2, 3]);
    }
);

// Accounts created over several batches (with resends and a refused chain in between) get
// distinct numbers, so each history holds exactly that account's transfers.
both_backends!(history_keys_accounts_created_in_several_batches, |store| {
    store
        .create_accounts(vec![
            account(1, AccountFlags::NONE),
            account(2, AccountFlags::NONE),
        ])
        .await
        .unwrap();
    let chain = vec![
        NewAccount {
            flags: AccountFlags::LINKED,
            ..account(3, AccountFlags::NONE)
        },
        account(0, AccountFlags::NONE),
    ];
    store.create_accounts(chain).await.unwrap();
    let second = store
        .create_accounts(vec![
            account(2, AccountFlags::NONE),
            account(4, AccountFlags::NONE),
            account(3, AccountFlags::NONE),
        ])
        .await
        .unwrap();
    assert_eq!(second, [A::Exists, A::Ok, A::Ok]);
    let batch = vec![
        transfer(1, 1, 4, 1),
        transfer(2, 3, 2, 1),
        transfer(3, 4, 3, 1),
        transfer(4, 2, 1, 1),
    ];
    store.create_transfers(1, batch).await.unwrap();
    for (account, expected) in [
        (1, vec![1, 4]),
        (2, vec![2, 4]),
        (3, vec![2, 3]),
        (4, vec![1, 3]),
    ] {
        let page = store.history(account, 0, 10).await.unwrap();
        let ids: Vec<u128> = page.items.iter().map(|e| e.record.transfer.id).collect();
        assert_eq!(ids, expected, "history of account {account}");
    }
    let unknown = store.history(99, 0, 10).await.unwrap();
    assert!(unknown.items.is_empty() && unknown.next.is_none());
});
