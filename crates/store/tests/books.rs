//! The treasury's books on both backends: quotas that cannot be overspent, refusals with a
//! reason and nothing half-applied, zero-balance accounts back at zero after clearing.

mod common;

use guoku_domain::{Amount, PayType};
use guoku_ledger::CreateAccountResult;
use guoku_store::Store;
use guoku_store::books::{
    AccountKind, Applied, BookAccount, BookFilter, BookOp, ClearingKey, IndicatorKey, Leg, OpCode,
    Refusal, Tenant, UnitCode,
};

fn fen(value: i64) -> Amount {
    Amount::from_fen(value).unwrap()
}

fn tenant() -> Tenant {
    Tenant {
        adm_div: "430000".parse().unwrap(),
        year: "2026".parse().unwrap(),
    }
}

fn unit(code: &str) -> UnitCode {
    code.parse().unwrap()
}

fn indicator(unit_code: &str, func: &str) -> IndicatorKey {
    IndicatorKey {
        tenant: tenant(),
        unit: unit(unit_code),
        func: func.parse().unwrap(),
        eco: "30201".parse().unwrap(),
        fund: "1".parse().unwrap(),
        pay: PayType::Direct,
    }
}

fn clearing_key() -> ClearingKey {
    ClearingKey {
        tenant: tenant(),
        bank: "102100099996".parse().unwrap(),
        unit: unit("U001"),
        func: "2010101".parse().unwrap(),
        fund: "1".parse().unwrap(),
        pay: PayType::Authorized,
    }
}

async fn create(store: &Store, accounts: Vec<BookAccount>) {
    let results = store.create_book_accounts(accounts).await.unwrap();
    assert!(
        results.iter().all(|r| *r == CreateAccountResult::Ok),
        "{results:?}"
    );
}

async fn one(store: &Store, now: u64, op: BookOp) -> Result<Applied, Refusal> {
    let mut outcomes = store.apply_book_ops(now, &[op]).await.unwrap();
    assert_eq!(outcomes.len(), 1);
    outcomes.remove(0)
}

both_backends!(
    finance_quota_cannot_be_overspent_or_adjusted_below_use,
    |store| {
        let key = indicator("U001", "2010101");
        let other = indicator("U002", "2050201");
        let t = tenant();
        create(
            store,
            vec![
                BookAccount::budget_source(t),
                BookAccount::indicator(&key),
                BookAccount::plan(&key, 3).unwrap(),
                BookAccount::plan_used(&key, 3).unwrap(),
                BookAccount::indicator(&other),
                BookAccount::plan(&other, 3).unwrap(),
                BookAccount::plan_used(&other, 3).unwrap(),
            ],
        )
        .await;
        assert_eq!(
            one(
                store,
                1,
                BookOp::approve_indicator(1, &key, fen(1_000)).unwrap()
            )
            .await,
            Ok(Applied::Done)
        );
        assert_eq!(
            one(
                store,
                1,
                BookOp::approve_indicator(2, &other, fen(5_000)).unwrap()
            )
            .await,
            Ok(Applied::Done)
        );
        // A plan beyond its indicator is refused.
        assert!(matches!(
            one(
                store,
                2,
                BookOp::approve_plan(3, &key, 3, fen(1_001)).unwrap()
            )
            .await,
            Err(Refusal::NotEnough {
                kind: AccountKind::Indicator,
                ..
            })
        ));
        assert_eq!(
            one(
                store,
                2,
                BookOp::approve_plan(4, &key, 3, fen(600)).unwrap()
            )
            .await,
            Ok(Applied::Done)
        );
        assert_eq!(
            one(
                store,
                2,
                BookOp::approve_plan(5, &other, 3, fen(2_000)).unwrap()
            )
            .await,
            Ok(Applied::Done)
        );
        // The indicator cannot be cut below what plans hold (1,000 − 600 = 400 free).
        assert!(matches!(
            one(
                store,
                3,
                BookOp::adjust_indicator(6, &key, fen(-401)).unwrap()
            )
            .await,
            Err(Refusal::NotEnough {
                kind: AccountKind::Indicator,
                ..
            })
        ));
        assert_eq!(
            one(
                store,
                3,
                BookOp::adjust_indicator(7, &key, fen(-400)).unwrap()
            )
            .await,
            Ok(Applied::Done)
        );
        // Payments consume the plan; the one that does not fit is refused whole.
        assert_eq!(
            one(
                store,
                4,
                BookOp::pay_from_plan(8, &key, 3, fen(500)).unwrap()
            )
            .await,
            Ok(Applied::Done)
        );
        assert!(matches!(
            one(
                store,
                4,
                BookOp::pay_from_plan(9, &key, 3, fen(101)).unwrap()
            )
            .await,
            Err(Refusal::NotEnough {
                kind: AccountKind::Plan,
                ..
            })
        ));
        // A negative plan adjustment may not take it below what is used (100 left).
        assert!(matches!(
            one(
                store,
                5,
                BookOp::adjust_plan(10, &key, 3, fen(-101)).unwrap()
            )
            .await,
            Err(Refusal::NotEnough {
                kind: AccountKind::Plan,
                ..
            })
        ));
        assert_eq!(
            one(
                store,
                5,
                BookOp::adjust_plan(11, &key, 3, fen(-100)).unwrap()
            )
            .await,
            Ok(Applied::Done)
        );
        // A refund restores quota, never more than was used.
        assert!(matches!(
            one(
                store,
                6,
                BookOp::restore_to_plan(12, &key, 3, fen(501)).unwrap()
            )
            .await,
            Err(Refusal::NotEnough {
                kind: AccountKind::PlanUsed,
                ..
            })
        ));
        assert_eq!(
            one(
                store,
                6,
                BookOp::restore_to_plan(13, &key, 3, fen(200)).unwrap()
            )
            .await,
            Ok(Applied::Done)
        );
        // Resending is idempotent; the same id with another amount is refused, naming it.
        assert_eq!(
            one(
                store,
                7,
                BookOp::restore_to_plan(13, &key, 3, fen(200)).unwrap()
            )
            .await,
            Ok(Applied::AlreadyDone)
        );
        assert_eq!(
            one(
                store,
                7,
                BookOp::restore_to_plan(13, &key, 3, fen(201)).unwrap()
            )
            .await,
            Err(Refusal::IdReused { field: "amount" })
        );

        // Quota at each level.
        let mut plans = BookFilter::all(AccountKind::Plan, t);
        let all = store.quota_summary(plans.clone()).await.unwrap();
        assert_eq!((all.accounts, all.remaining), (2, 200 + 2_000));
        plans.unit = "U001".into();
        assert_eq!(
            store.quota_summary(plans.clone()).await.unwrap().remaining,
            200
        );
        plans.unit.clear();
        plans.func_class_prefix = "205".into();
        assert_eq!(
            store.quota_summary(plans.clone()).await.unwrap().remaining,
            2_000
        );
        plans.month = 4;
        assert_eq!(store.quota_summary(plans).await.unwrap().accounts, 0);
        let indicators = store
            .quota_summary(BookFilter::all(AccountKind::Indicator, t))
            .await
            .unwrap();
        // U001: 1,000 − 400 cut − 600 to the plan + 100 given back by the plan; U002: 3,000.
        assert_eq!(indicators.remaining, 100 + 3_000);
        store.load_state().await.unwrap();
    }
);

both_backends!(a_quota_key_that_does_not_exist_is_refused, |store| {
    let key = indicator("U001", "2010101");
    let op = BookOp::pay_from_plan(1, &key, 3, fen(5)).unwrap();
    assert!(matches!(
        one(store, 1, op).await,
        Err(Refusal::NoSuchAccount {
            kind: AccountKind::Plan,
            ..
        })
    ));
    assert!(
        store
            .transfers(
                BookOp::approve_plan(1, &key, 3, fen(1))
                    .unwrap()
                    .transfers()
                    .iter()
                    .map(|t| t.id)
                    .collect()
            )
            .await
            .unwrap()
            .is_empty()
    );
});

both_backends!(different_divisions_or_years_never_meet, |store| {
    let here = tenant();
    let next_year = Tenant {
        year: "2027".parse().unwrap(),
        ..here
    };
    create(
        store,
        vec![BookAccount::advance(here), BookAccount::advance(next_year)],
    )
    .await;
    // Built by hand, past the constructor's own check: the engine refuses it too.
    let op = BookOp {
        id: 1,
        legs: vec![Leg {
            debit: BookAccount::advance(here),
            credit: BookAccount::advance(next_year),
            amount: 10,
            code: OpCode::Front,
        }],
    };
    assert_eq!(one(store, 1, op).await, Err(Refusal::DifferentLedgers));
});

both_backends!(bank_zero_balance_accounts_end_the_day_at_zero, |store| {
    let t = tenant();
    let u = unit("U001");
    create(
        store,
        vec![
            BookAccount::advance(t),
            BookAccount::finance_zba(t),
            BookAccount::unit_zba(t, &u),
            BookAccount::receivable_pboc(t),
            BookAccount::payees(t),
            BookAccount::pboc_reserve(t),
            BookAccount::quota_notice_source(t),
            BookAccount::unit_quota(t, &u, 3).unwrap(),
            BookAccount::unit_quota_used(t, &u, 3).unwrap(),
        ],
    )
    .await;
    let ops = vec![
        BookOp::notice_unit_quota(1, t, &u, 3, fen(1_000)).unwrap(),
        BookOp::pay_authorized(2, t, &u, 3, fen(700)).unwrap(),
        // Beyond the plan quota: refused whole, no money moves either.
        BookOp::pay_authorized(3, t, &u, 3, fen(301)).unwrap(),
        BookOp::pay_direct(4, t, fen(5_000)).unwrap(),
        BookOp::refund_received(5, BookAccount::unit_zba(t, &u), Some((&u, 3)), fen(200)).unwrap(),
        // A negative notice below what is used is refused.
        BookOp::notice_unit_quota(6, t, &u, 3, fen(-501)).unwrap(),
    ];
    let outcomes = store.apply_book_ops(10, &ops).await.unwrap();
    assert_eq!(outcomes[0], Ok(Applied::Done));
    assert_eq!(outcomes[1], Ok(Applied::Done));
    assert!(matches!(
        &outcomes[2],
        Err(Refusal::NotEnough {
            kind: AccountKind::UnitQuota,
            ..
        })
    ));
    assert_eq!(outcomes[3], Ok(Applied::Done));
    assert_eq!(outcomes[4], Ok(Applied::Done));
    assert!(matches!(
        &outcomes[5],
        Err(Refusal::NotEnough {
            kind: AccountKind::UnitQuota,
            ..
        })
    ));
    let payees = store
        .account(BookAccount::payees(t).id())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        payees.credits_posted - payees.debits_posted,
        700 + 5_000 - 200
    );
    // The refund sits in the unit's ZBA until the 2302 sends it back to the TSA.
    let open = store.nonzero_zbas(t).await.unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].kind, AccountKind::UnitZba);
    let quota = store
        .quota_summary(BookFilter::all(AccountKind::UnitQuota, t))
        .await
        .unwrap();
    assert_eq!(quota.remaining, 1_000 - 700 + 200);
    let day_end = vec![
        BookOp::refund_cleared(7, BookAccount::unit_zba(t, &u), fen(200)).unwrap(),
        BookOp::request_clearing(8, t, fen(5_700)).unwrap(),
        BookOp::clearing_settled(9, t, fen(5_700)).unwrap(),
    ];
    let outcomes = store.apply_book_ops(20, &day_end).await.unwrap();
    assert!(
        outcomes.iter().all(|o| *o == Ok(Applied::Done)),
        "{outcomes:?}"
    );
    assert!(store.nonzero_zbas(t).await.unwrap().is_empty());
    for id in [
        BookAccount::advance(t).id(),
        BookAccount::receivable_pboc(t).id(),
    ] {
        let a = store.account(id).await.unwrap().unwrap();
        assert_eq!(
            a.debits_posted, a.credits_posted,
            "advance and receivable settled"
        );
    }
    store.load_state().await.unwrap();
});

both_backends!(pboc_clearing_quota_rules, |store| {
    let t = tenant();
    let key = clearing_key();
    create(
        store,
        vec![
            BookAccount::revenue(t),
            BookAccount::tsa(t),
            BookAccount::bank_clearing(t, &key.bank),
        ],
    )
    .await;
    assert_eq!(
        one(store, 1, BookOp::fund_tsa(1, t, fen(1_000_000)).unwrap()).await,
        Ok(Applied::Done)
    );
    // No quota row yet: "因为没有额度，不能出现清算信息".
    let refused = one(store, 2, BookOp::clear(2, &key, fen(100)).unwrap()).await;
    assert!(
        matches!(
            refused,
            Err(Refusal::NoSuchAccount {
                kind: AccountKind::ClearingQuota,
                ..
            })
        ),
        "{refused:?}"
    );
    create(
        store,
        vec![
            BookAccount::clearing_notice_source(t),
            BookAccount::clearing_quota(&key),
            BookAccount::cleared(&key),
        ],
    )
    .await;
    assert_eq!(
        one(
            store,
            3,
            BookOp::clearing_quota_notice(3, &key, fen(500)).unwrap()
        )
        .await,
        Ok(Applied::Done)
    );
    // Beyond the quota: "超出清算范围"; and nothing left the TSA.
    let refused = one(store, 4, BookOp::clear(4, &key, fen(501)).unwrap()).await;
    assert!(matches!(
        refused,
        Err(Refusal::NotEnough {
            kind: AccountKind::ClearingQuota,
            ..
        })
    ));
    let tsa = store
        .account(BookAccount::tsa(t).id())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(tsa.debits_posted, 0);
    assert_eq!(
        one(store, 5, BookOp::clear(5, &key, fen(400)).unwrap()).await,
        Ok(Applied::Done)
    );
    // Returning the notice fails once its quota is used (额度值已经使用不能被退回).
    assert!(matches!(
        one(
            store,
            6,
            BookOp::clearing_quota_notice(6, &key, fen(-500)).unwrap()
        )
        .await,
        Err(Refusal::NotEnough {
            kind: AccountKind::ClearingQuota,
            ..
        })
    ));
    // A 2302 refund restores quota and money, never more than was cleared.
    assert!(matches!(
        one(
            store,
            7,
            BookOp::refund_clearing(7, &key, fen(401)).unwrap()
        )
        .await,
        Err(Refusal::NotEnough {
            kind: AccountKind::Cleared,
            ..
        })
    ));
    assert_eq!(
        one(
            store,
            8,
            BookOp::refund_clearing(8, &key, fen(150)).unwrap()
        )
        .await,
        Ok(Applied::Done)
    );
    let quota = store
        .quota_summary(BookFilter::all(AccountKind::ClearingQuota, t))
        .await
        .unwrap();
    assert_eq!(quota.remaining, 500 - 400 + 150);
    let tsa = store
        .account(BookAccount::tsa(t).id())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        tsa.credits_posted - tsa.debits_posted,
        1_000_000 - 400 + 150
    );
    store.load_state().await.unwrap();
});

// Concurrent flows of one node read the clock in one order and commit in another: a book
// operation stamped before the books' last `now` is applied at that `now`, while the raw
// ledger API still refuses time going back.
both_backends!(book_operations_never_move_the_books_clock_back, |store| {
    let key = indicator("U001", "2010101");
    create(
        store,
        vec![
            BookAccount::budget_source(tenant()),
            BookAccount::indicator(&key),
        ],
    )
    .await;
    assert_eq!(
        one(
            store,
            100,
            BookOp::approve_indicator(1, &key, fen(1_000)).unwrap()
        )
        .await,
        Ok(Applied::Done)
    );
    assert_eq!(
        one(
            store,
            99,
            BookOp::adjust_indicator(2, &key, fen(5)).unwrap()
        )
        .await,
        Ok(Applied::Done),
        "a late-committing operation is applied, not refused"
    );
    let refused = store.create_transfers(99, Vec::new()).await.unwrap_err();
    assert!(refused.to_string().contains("before the now"), "{refused}");
    let state = store.load_state().await.unwrap();
    assert_eq!(state.now(), 100, "the books' clock did not go back");
});
