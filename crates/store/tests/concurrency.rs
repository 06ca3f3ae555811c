//! The database, not luck, decides who gets the last yuan: concurrent payments and resends
//! on both backends.

mod common;

use std::sync::Arc;

use guoku_ledger::{AccountFlags, CreateTransferResult as R, NewAccount, Transfer};
use guoku_store::Store;

const LEDGER: u32 = 3;
const QUOTA: u128 = 1;
const USED: u128 = 2;
const SOURCE: u128 = 3;
const FEN: u128 = 250;

async fn quota_with_room_for(store: &Store, payments: u128) {
    let limited = NewAccount {
        id: QUOTA,
        ledger: LEDGER,
        code: 1,
        flags: AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS,
        ..NewAccount::default()
    };
    let plain = |id| NewAccount {
        id,
        flags: AccountFlags::NONE,
        ..limited
    };
    store
        .create_accounts(vec![limited, plain(USED), plain(SOURCE)])
        .await
        .unwrap();
    let grant = Transfer {
        id: 1,
        debit_account_id: SOURCE,
        credit_account_id: QUOTA,
        amount: payments * FEN,
        ledger: LEDGER,
        code: 1,
        ..Transfer::default()
    };
    assert_eq!(
        store.create_transfers(1, vec![grant]).await.unwrap(),
        [R::Ok]
    );
}

fn payment(id: u128) -> Transfer {
    Transfer {
        id,
        debit_account_id: QUOTA,
        credit_account_id: USED,
        amount: FEN,
        ledger: LEDGER,
        code: 2,
        ..Transfer::default()
    }
}

async fn run_concurrently(store: &Store, batches: Vec<Vec<Transfer>>) -> Vec<R> {
    let store = Arc::new(store.clone());
    let tasks: Vec<_> = batches
        .into_iter()
        .map(|batch| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.create_transfers(2, batch).await })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        results.extend(task.await.expect("task").expect("store call"));
    }
    results
}

both_backends!(two_hundred_payments_for_a_hundred_yuan_slots, |store| {
    quota_with_room_for(store, 100).await;
    let batches = (0..200u128).map(|i| vec![payment(1_000 + i)]).collect();
    let results = run_concurrently(store, batches).await;
    let ok = results.iter().filter(|r| **r == R::Ok).count();
    let refused = results.iter().filter(|r| **r == R::ExceedsCredits).count();
    assert_eq!((ok, refused), (100, 100), "{results:?}");
    let quota = store.account(QUOTA).await.unwrap().unwrap();
    let used = store.account(USED).await.unwrap().unwrap();
    assert_eq!(quota.debits_posted, 100 * FEN);
    assert_eq!(quota.debits_posted, quota.credits_posted);
    assert_eq!(used.credits_posted, 100 * FEN);
    store.load_state().await.unwrap();
});

both_backends!(fifty_resends_of_one_id_take_effect_once, |store| {
    quota_with_room_for(store, 100).await;
    let batches = (0..50).map(|_| vec![payment(77)]).collect();
    let results = run_concurrently(store, batches).await;
    let ok = results.iter().filter(|r| **r == R::Ok).count();
    let exists = results.iter().filter(|r| **r == R::Exists).count();
    assert_eq!((ok, exists), (1, 49), "{results:?}");
    let used = store.account(USED).await.unwrap().unwrap();
    assert_eq!(used.credits_posted, FEN);
    assert_eq!(store.load_state().await.unwrap().transfer_count(), 2);
});
