//! The access records and the idempotency keys on both backends: round trips of divisions,
//! units, banks, users, posts, steps and keys; checks made under the row's lock (so races
//! cannot slip past them); refusals that change nothing; one event per administrative act.

mod common;

use std::sync::Arc;

use guoku_domain::AdmDivCode;
use guoku_store::Store;
use guoku_store::access::{
    AccessError, AgentBank, BudgetUnit, BusinessWindow, Division, LoginState, NewUser, UserId,
    UserStatus,
};
use guoku_store::idempotency::{
    Begin, IdempotencyConfig, IdempotencyError, StoredResponse, request_fingerprint,
};
use guoku_voucher::VoucherKey;

const ADMIN: &str = "sysadmin";
const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$SECRETHASHVALUE";

fn code(s: &str) -> AdmDivCode {
    s.parse().unwrap()
}

fn division(c: &str, parent: Option<&str>, name: &str) -> Division {
    Division {
        code: code(c),
        parent: parent.map(code),
        name: name.into(),
        window: BusinessWindow::default(),
    }
}

/// 湖南省 → 长沙市 → 芙蓉区, 天心区.
async fn hunan(store: &Store) {
    let access = store.access();
    for d in [
        division("430000", None, "湖南省"),
        division("430100", Some("430000"), "长沙市"),
        division("430102", Some("430100"), "芙蓉区"),
        division("430103", Some("430100"), "天心区"),
    ] {
        access.put_division(&d, ADMIN, 10).await.unwrap();
    }
}

fn new_user(login: &str) -> NewUser {
    NewUser {
        login: login.into(),
        display_name: format!("用户{login}"),
        password_hash: HASH.into(),
    }
}

fn key(no: &str) -> VoucherKey {
    VoucherKey {
        adm_div_code: "430102".into(),
        st_year: "2025".into(),
        vt_code: "5201".into(),
        voucher_no: no.into(),
    }
}

async fn event_actions(store: &Store) -> Vec<String> {
    store
        .access()
        .events(0, 1_000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect()
}

both_backends!(divisions_round_trip_and_refuse_broken_parents, |store| {
    hunan(store).await;
    let access = store.access();
    let all = access.divisions().await.unwrap();
    let codes: Vec<String> = all.iter().map(|d| d.code.to_string()).collect();
    assert_eq!(codes, ["430000", "430100", "430102", "430103"]);
    assert_eq!(
        access.division(&code("430102")).await.unwrap().unwrap(),
        division("430102", Some("430100"), "芙蓉区")
    );
    assert_eq!(access.division(&code("440000")).await.unwrap(), None);

    // A new window replaces the old one.
    let night = BusinessWindow::new(0, 6 * 60, BusinessWindow::EVERY_DAY, 480).unwrap();
    let mut furong = division("430102", Some("430100"), "芙蓉区");
    furong.window = night;
    access.put_division(&furong, ADMIN, 11).await.unwrap();
    let stored = access.division(&code("430102")).await.unwrap().unwrap();
    assert_eq!(stored.window, night);
    assert_eq!((night.open_min(), night.close_min()), (0, 360));

    // A parent not stored, and a parent not above the division, are refused.
    let orphan = division("440103", Some("440100"), "荔湾区");
    assert!(matches!(
        access.put_division(&orphan, ADMIN, 12).await,
        Err(AccessError::NotFound {
            what: "division",
            ..
        })
    ));
    let sideways = division("430103", Some("430102"), "天心区");
    assert!(matches!(
        access.put_division(&sideways, ADMIN, 12).await,
        Err(AccessError::InvalidArgument(_))
    ));
    let own = division("430103", Some("430103"), "天心区");
    assert!(access.put_division(&own, ADMIN, 12).await.is_err());
    let nameless = division("430104", Some("430100"), " ");
    assert!(access.put_division(&nameless, ADMIN, 12).await.is_err());
    assert_eq!(access.divisions().await.unwrap().len(), 4);
    assert_eq!(
        access
            .division(&code("430103"))
            .await
            .unwrap()
            .unwrap()
            .parent,
        Some(code("430100"))
    );
    // Four puts and the window change: five events, none for the refusals.
    assert_eq!(event_actions(store).await, vec!["put_division"; 5]);
});

both_backends!(budget_units_and_banks_belong_to_one_division, |store| {
    hunan(store).await;
    let access = store.access();
    let unit = |div: &str, c: &str| BudgetUnit {
        adm_div: code(div),
        code: c.into(),
        name: format!("单位{c}"),
        active: true,
    };
    for u in [
        unit("430102", "102001"),
        unit("430102", "102002"),
        unit("430102", "102003"),
        unit("430103", "103001"),
    ] {
        access.put_budget_unit(&u, ADMIN, 20).await.unwrap();
    }
    let furong: Vec<String> = access
        .budget_units(&code("430102"), "", 10)
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.code)
        .collect();
    assert_eq!(furong, ["102001", "102002", "102003"]);
    // Pages by code.
    let first = access.budget_units(&code("430102"), "", 2).await.unwrap();
    assert_eq!(first.len(), 2);
    let rest = access
        .budget_units(&code("430102"), &first[1].code, 2)
        .await
        .unwrap();
    assert_eq!(rest, [unit("430102", "102003")]);
    // A division's own units only, not those under it.
    assert!(
        access
            .budget_units(&code("430100"), "", 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        access.budget_unit(&code("430103"), "103001").await.unwrap(),
        Some(unit("430103", "103001"))
    );
    assert_eq!(
        access.budget_unit(&code("430103"), "102001").await.unwrap(),
        None
    );
    // Deactivating replaces the row.
    let mut closed = unit("430102", "102002");
    closed.active = false;
    access.put_budget_unit(&closed, ADMIN, 21).await.unwrap();
    assert_eq!(
        access.budget_unit(&code("430102"), "102002").await.unwrap(),
        Some(closed)
    );
    // A unit of a division not stored, or with a bad code, is refused.
    assert!(matches!(
        access
            .put_budget_unit(&unit("430104", "104001"), ADMIN, 22)
            .await,
        Err(AccessError::NotFound { .. })
    ));
    assert!(matches!(
        access
            .put_budget_unit(&unit("430102", "bad code"), ADMIN, 22)
            .await,
        Err(AccessError::InvalidArgument(_))
    ));
    assert!(access.budget_units(&code("430102"), "", 0).await.is_err());

    let bank = AgentBank {
        adm_div: code("430102"),
        bank_no: "102551000015".parse().unwrap(),
        name: "工商银行长沙分行".into(),
    };
    access.put_bank(&bank, ADMIN, 23).await.unwrap();
    assert_eq!(
        access.banks(&code("430102")).await.unwrap(),
        std::slice::from_ref(&bank)
    );
    assert!(access.banks(&code("430103")).await.unwrap().is_empty());
    let mut elsewhere = bank;
    elsewhere.adm_div = code("430104");
    assert!(access.put_bank(&elsewhere, ADMIN, 24).await.is_err());
});

both_backends!(users_posts_and_divisions_round_trip, |store| {
    hunan(store).await;
    let access = store.access();
    let created = access
        .create_user(new_user("zhang.san"), ADMIN, 30)
        .await
        .unwrap();
    assert_eq!(created.login, "zhang.san");
    assert_eq!(created.display_name, "用户zhang.san");
    assert_eq!(created.password_hash, HASH);
    assert_eq!(created.status, UserStatus::Active);
    assert_eq!(created.login_state, LoginState::default());
    assert!(created.posts.is_empty() && created.divisions.is_empty());
    assert_eq!((created.created_at, created.updated_at), (30, 30));
    let id = created.id;

    assert_eq!(access.user(id).await.unwrap().unwrap(), created);
    assert_eq!(
        access.user_by_login("zhang.san").await.unwrap().unwrap(),
        created
    );
    assert_eq!(access.user_by_login("li.si").await.unwrap(), None);
    assert_eq!(access.user_by_login("no such\nlogin").await.unwrap(), None);
    assert_eq!(access.user(UserId(9_999)).await.unwrap(), None);

    // A login is taken once; bad input is refused.
    assert!(matches!(
        access.create_user(new_user("zhang.san"), ADMIN, 31).await,
        Err(AccessError::Duplicate { what: "login", .. })
    ));
    assert!(
        access
            .create_user(new_user("张三"), ADMIN, 31)
            .await
            .is_err()
    );
    let mut unhashed = new_user("wang.wu");
    unhashed.password_hash = "plain text".into();
    let refused = access.create_user(unhashed, ADMIN, 31).await.unwrap_err();
    assert!(!refused.to_string().contains("plain text"), "{refused}");

    // Posts, granted under a check that sees the posts held.
    let granted = access
        .grant_post(id, "maker", ADMIN, 32, |held| {
            assert!(held.is_empty());
            Ok::<(), String>(())
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(granted.posts, ["maker"]);
    let refusal = access
        .grant_post(id, "audit_admin", ADMIN, 33, |held| {
            if held.iter().any(|p| p == "maker") {
                Err(format!("{held:?} excludes audit_admin"))
            } else {
                Ok(())
            }
        })
        .await
        .unwrap();
    assert_eq!(refusal.unwrap_err(), "[\"maker\"] excludes audit_admin");
    let granted = access
        .grant_post(id, "checker", ADMIN, 34, |_| Ok::<(), ()>(()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(granted.posts, ["checker", "maker"]);
    assert!(
        access
            .grant_post(id, "Not A Code", ADMIN, 34, |_| Ok::<(), ()>(()))
            .await
            .is_err()
    );
    assert!(matches!(
        access
            .grant_post(UserId(9_999), "maker", ADMIN, 34, |_| Ok::<(), ()>(()))
            .await,
        Err(AccessError::NotFound { what: "user", .. })
    ));

    // Divisions.
    access
        .grant_division(id, &code("430102"), ADMIN, 35)
        .await
        .unwrap();
    let user = access
        .grant_division(id, &code("430100"), ADMIN, 36)
        .await
        .unwrap();
    assert_eq!(user.divisions, [code("430100"), code("430102")]);
    assert!(matches!(
        access.grant_division(id, &code("440000"), ADMIN, 37).await,
        Err(AccessError::NotFound {
            what: "division",
            ..
        })
    ));
    let user = access
        .revoke_division(id, &code("430100"), ADMIN, 38)
        .await
        .unwrap();
    assert_eq!(user.divisions, [code("430102")]);
    let user = access.revoke_post(id, "checker", ADMIN, 39).await.unwrap();
    assert_eq!(user.posts, ["maker"]);
    assert_eq!(user.updated_at, 39);

    // Status and password.
    let user = access
        .set_status(id, UserStatus::Disabled, ADMIN, 40)
        .await
        .unwrap();
    assert_eq!(user.status, UserStatus::Disabled);
    let (before, user) = access
        .update_login(id, "login_failed", "zhang.san", 41, |s| LoginState {
            failed_attempts: s.failed_attempts + 5,
            locked_until: Some(1_000),
        })
        .await
        .unwrap();
    assert_eq!(before, LoginState::default());
    assert_eq!(
        user.login_state,
        LoginState {
            failed_attempts: 5,
            locked_until: Some(1_000)
        }
    );
    assert!(user.login_state.is_locked(999) && !user.login_state.is_locked(1_000));
    let new_hash = "$argon2id$v=19$m=19456,t=2,p=1$bmV3c2FsdHNhbHQ$NEWSECRETHASH";
    let user = access
        .set_password_hash(id, new_hash.into(), ADMIN, 42)
        .await
        .unwrap();
    assert_eq!(user.password_hash, new_hash);
    assert_eq!(user.login_state, LoginState::default());

    let listed = access.users(0, 10).await.unwrap();
    assert_eq!(listed, std::slice::from_ref(&user));
    assert!(access.users(id.0, 10).await.unwrap().is_empty());

    // One event per change, none for refusals or no-ops, and never a hash.
    let events = access.events(0, 1_000).await.unwrap();
    let actions: Vec<&str> = events
        .iter()
        .skip(4) // the divisions
        .map(|e| e.action.as_str())
        .collect();
    assert_eq!(
        actions,
        [
            "create_user",
            "grant_post",
            "grant_post",
            "grant_division",
            "grant_division",
            "revoke_division",
            "revoke_post",
            "set_status",
            "login_failed",
            "set_password",
        ]
    );
    for e in &events {
        let text = format!("{e:?}");
        assert!(!text.contains("SECRET"), "{text}");
    }
    assert!(events.windows(2).all(|w| w[0].id < w[1].id));
    let login_failed = events.iter().find(|e| e.action == "login_failed").unwrap();
    assert_eq!(login_failed.actor, "zhang.san");
    assert_eq!(login_failed.subject, format!("user:{}", id.0));
    assert_eq!(
        login_failed.detail.as_deref(),
        Some("failed_attempts=5 locked_until=1000")
    );
    assert!(!format!("{user:?}").contains("SECRET"));
});

both_backends!(concurrent_login_failures_are_all_counted, |store| {
    let user = store
        .access()
        .create_user(new_user("target"), ADMIN, 1)
        .await
        .unwrap();
    let store = Arc::new(store.clone());
    let tasks: Vec<_> = (0..12)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                store
                    .access()
                    .update_login(user.id, "login_failed", "target", 2, |s| LoginState {
                        failed_attempts: s.failed_attempts + 1,
                        ..s
                    })
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut seen = Vec::new();
    for task in tasks {
        seen.push(task.await.unwrap().0.failed_attempts);
    }
    seen.sort_unstable();
    assert_eq!(seen, (0..12).collect::<Vec<u32>>());
    let after = store.access().user(user.id).await.unwrap().unwrap();
    assert_eq!(after.login_state.failed_attempts, 12);
});

both_backends!(concurrent_grants_are_checked_one_after_the_other, |store| {
    let access = store.access();
    let user = access
        .create_user(new_user("admin.candidate"), ADMIN, 1)
        .await
        .unwrap();
    // Each admin post excludes every other post: of three racing grants, one wins.
    let store = Arc::new(store.clone());
    let tasks: Vec<_> = ["system_admin", "security_admin", "audit_admin"]
        .into_iter()
        .map(|post| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                store
                    .access()
                    .grant_post(user.id, post, ADMIN, 2, |held| {
                        if held.is_empty() {
                            Ok(())
                        } else {
                            Err(held.to_vec())
                        }
                    })
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut granted = 0;
    for task in tasks {
        granted += usize::from(task.await.unwrap().is_ok());
    }
    assert_eq!(granted, 1);
    let after = store.access().user(user.id).await.unwrap().unwrap();
    assert_eq!(after.posts.len(), 1);
});

both_backends!(steps_record_who_did_what_in_order, |store| {
    let access = store.access();
    let maker = access
        .create_user(new_user("maker"), ADMIN, 1)
        .await
        .unwrap();
    let checker = access
        .create_user(new_user("checker"), ADMIN, 1)
        .await
        .unwrap();
    let none = |_: &[guoku_store::access::StepRecord]| Ok::<(), ()>(());
    let made = access
        .record_step(&key("V1"), "make", maker.id, 100, none)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (made.step.as_str(), made.user, made.at, &made.key),
        ("make", maker.id, 100, &key("V1"))
    );
    // The check sees what was done before, under the voucher's lock; its refusal writes
    // nothing.
    let refused = access
        .record_step(&key("V1"), "check", maker.id, 101, move |so_far| {
            if so_far.iter().any(|s| s.user == maker.id) {
                Err("maker may not check")
            } else {
                Ok(())
            }
        })
        .await
        .unwrap();
    assert_eq!(refused.unwrap_err(), "maker may not check");
    let checked = access
        .record_step(&key("V1"), "check", checker.id, 102, |so_far| {
            assert_eq!(so_far.len(), 1);
            Ok::<(), ()>(())
        })
        .await
        .unwrap()
        .unwrap();
    let steps = access.steps(&key("V1")).await.unwrap();
    assert_eq!(steps, [made.clone(), checked]);
    assert!(steps[0].seq < steps[1].seq);
    // Other vouchers are untouched.
    assert!(access.steps(&key("V2")).await.unwrap().is_empty());

    // A step is taken once per voucher, even if a check lets it through.
    assert!(matches!(
        access
            .record_step(&key("V1"), "make", maker.id, 103, none)
            .await,
        Err(AccessError::Duplicate { what: "step", .. })
    ));
    assert!(matches!(
        access
            .record_step(&key("V1"), "sign", UserId(9_999), 103, none)
            .await,
        Err(AccessError::NotFound { what: "user", .. })
    ));
    assert!(
        access
            .record_step(&key("V1"), "Sign!", maker.id, 103, none)
            .await
            .is_err()
    );
    assert_eq!(access.steps(&key("V1")).await.unwrap().len(), 2);
});

both_backends!(racing_steps_by_one_user_cannot_both_pass, |store| {
    // The same person tries to approve and sign one voucher at once; the rule "each step by
    // a different person" is checked under the voucher's lock, so one of them loses.
    let access = store.access();
    let user = access
        .create_user(new_user("eager"), ADMIN, 1)
        .await
        .unwrap();
    let maker = access
        .create_user(new_user("maker"), ADMIN, 1)
        .await
        .unwrap();
    let store = Arc::new(store.clone());
    for round in 0..8 {
        let no = format!("R{round}");
        // Made first, so the racing steps meet on an existing voucher.
        access
            .record_step(&key(&no), "make", maker.id, 4, |_| Ok::<(), ()>(()))
            .await
            .unwrap()
            .unwrap();
        let tasks: Vec<_> = ["approve", "sign"]
            .into_iter()
            .map(|step| {
                let (store, no) = (Arc::clone(&store), no.clone());
                tokio::spawn(async move {
                    store
                        .access()
                        .record_step(&key(&no), step, user.id, 5, move |so_far| {
                            if so_far.iter().any(|s| s.user == user.id) {
                                Err(())
                            } else {
                                Ok(())
                            }
                        })
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut passed = 0;
        for task in tasks {
            passed += usize::from(task.await.unwrap().is_ok());
        }
        assert_eq!(passed, 1, "round {round}");
        assert_eq!(store.access().steps(&key(&no)).await.unwrap().len(), 2);
    }
});

// ---------------------------------------------------------------------------------------
// Idempotency keys

fn response(status: u16, body: &str) -> StoredResponse {
    StoredResponse {
        status,
        body: body.as_bytes().to_vec(),
    }
}

both_backends!(
    idempotency_replays_refuses_and_reports_in_progress,
    |store| {
        let keys = store.idempotency(IdempotencyConfig::default()).unwrap();
        let (alice, bob) = (UserId(1), UserId(2));
        let body = request_fingerprint("POST", "/payments", b"{\"amount\":\"10.00\"}");
        let other = request_fingerprint("POST", "/payments", b"{\"amount\":\"99.00\"}");

        let Begin::Proceed(lease) = keys.begin(alice, "k-1", body, 1_000).await.unwrap() else {
            panic!("the first request proceeds");
        };
        assert_eq!(
            (lease.user(), lease.key(), lease.attempt()),
            (alice, "k-1", 1)
        );
        // While it runs: in progress for the same request, conflict for another.
        assert_eq!(
            keys.begin(alice, "k-1", body, 1_001).await.unwrap(),
            Begin::InProgress { until: 1_300 }
        );
        assert!(matches!(
            keys.begin(alice, "k-1", other, 1_001).await,
            Err(IdempotencyError::Conflict { .. })
        ));
        // Keys are per user.
        assert!(matches!(
            keys.begin(bob, "k-1", other, 1_001).await.unwrap(),
            Begin::Proceed(_)
        ));

        let stored = response(201, "{\"voucher\":\"V1\"}");
        keys.complete(&lease, stored.clone()).await.unwrap();
        assert_eq!(
            keys.begin(alice, "k-1", body, 1_002).await.unwrap(),
            Begin::Replay(stored.clone())
        );
        assert!(matches!(
            keys.begin(alice, "k-1", other, 1_002).await,
            Err(IdempotencyError::Conflict { .. })
        ));
        // Completing twice is refused and keeps the first response.
        assert!(matches!(
            keys.complete(&lease, response(500, "late")).await,
            Err(IdempotencyError::LeaseLost { .. })
        ));
        assert_eq!(
            keys.begin(alice, "k-1", body, 1_003).await.unwrap(),
            Begin::Replay(stored)
        );
        // Bad input changes nothing.
        assert!(matches!(
            keys.begin(alice, "", body, 1_003).await,
            Err(IdempotencyError::InvalidArgument(_))
        ));
        assert!(keys.complete(&lease, response(42, "")).await.is_err());

        // After 24 hours the key is free again, for any request.
        let Begin::Proceed(again) = keys
            .begin(alice, "k-1", other, 1_000 + 86_400)
            .await
            .unwrap()
        else {
            panic!("an expired key is free");
        };
        assert_eq!(again.attempt(), 2);
    }
);

both_backends!(idempotency_leases_end_and_can_be_abandoned, |store| {
    let config = IdempotencyConfig {
        ttl_secs: 3_600,
        lease_secs: 60,
    };
    let keys = store.idempotency(config).unwrap();
    assert!(
        store
            .idempotency(IdempotencyConfig {
                ttl_secs: 10,
                lease_secs: 11
            })
            .is_err()
    );
    let user = UserId(7);
    let body = request_fingerprint("POST", "/vouchers/5201", b"V");

    let Begin::Proceed(first) = keys.begin(user, "k", body, 100).await.unwrap() else {
        panic!("first");
    };
    assert_eq!(
        keys.begin(user, "k", body, 159).await.unwrap(),
        Begin::InProgress { until: 160 }
    );
    // The first request went quiet: at the lease's end a repeat takes the key over, and
    // the first can no longer complete it.
    let Begin::Proceed(second) = keys.begin(user, "k", body, 160).await.unwrap() else {
        panic!("take-over");
    };
    assert_eq!(second.attempt(), 2);
    assert!(matches!(
        keys.complete(&first, response(200, "first")).await,
        Err(IdempotencyError::LeaseLost { .. })
    ));
    assert!(matches!(
        keys.abandon(&first).await,
        Err(IdempotencyError::LeaseLost { .. })
    ));
    // The second gives up: the key is forgotten and the next request proceeds afresh.
    keys.abandon(&second).await.unwrap();
    let Begin::Proceed(third) = keys.begin(user, "k", body, 161).await.unwrap() else {
        panic!("after abandon");
    };
    assert_eq!(third.attempt(), 1);
    keys.complete(&third, response(200, "ok")).await.unwrap();

    // Purging removes expired keys only, in bounded batches.
    let Begin::Proceed(late) = keys.begin(user, "later", body, 2_000).await.unwrap() else {
        panic!("later");
    };
    assert_eq!(keys.purge_expired(100 + 3_600, 100).await.unwrap(), 0);
    assert_eq!(keys.purge_expired(161 + 3_600, 100).await.unwrap(), 1);
    assert!(keys.purge_expired(0, 0).await.is_err());
    assert_eq!(
        keys.begin(user, "later", body, 2_001).await.unwrap(),
        Begin::InProgress { until: 2_060 }
    );
    keys.complete(&late, response(204, "")).await.unwrap();
    assert_eq!(
        keys.begin(user, "later", body, 2_002).await.unwrap(),
        Begin::Replay(response(204, ""))
    );
});

both_backends!(
    concurrent_first_requests_with_one_key_proceed_once,
    |store| {
        let keys = store.idempotency(IdempotencyConfig::default()).unwrap();
        let body = request_fingerprint("POST", "/payments", b"pay 10.00");
        for round in 0..5 {
            let key = format!("race-{round}");
            let tasks: Vec<_> = (0..8)
                .map(|_| {
                    let (keys, key) = (keys.clone(), key.clone());
                    tokio::spawn(
                        async move { keys.begin(UserId(3), &key, body, 50).await.unwrap() },
                    )
                })
                .collect();
            let mut outcomes = Vec::new();
            for task in tasks {
                outcomes.push(task.await.unwrap());
            }
            let proceeded = outcomes
                .iter()
                .filter(|b| matches!(b, Begin::Proceed(_)))
                .count();
            let waiting = outcomes
                .iter()
                .filter(|b| matches!(b, Begin::InProgress { .. }))
                .count();
            assert_eq!((proceeded, waiting), (1, 7), "round {round}: {outcomes:?}");
        }
    }
);

both_backends!(
    users_list_in_pages_with_their_posts_and_divisions,
    |store| {
        hunan(store).await;
        let access = store.access();
        let mut made = Vec::new();
        for (login, post, division) in [
            ("a.maker", "maker", "430102"),
            ("b.checker", "checker", "430100"),
            ("c.signer", "signer", "430103"),
        ] {
            let user = access.create_user(new_user(login), ADMIN, 1).await.unwrap();
            access
                .grant_post(user.id, post, ADMIN, 2, |_| Ok::<(), ()>(()))
                .await
                .unwrap()
                .unwrap();
            made.push(
                access
                    .grant_division(user.id, &code(division), ADMIN, 3)
                    .await
                    .unwrap(),
            );
        }
        let first = access.users(0, 2).await.unwrap();
        assert_eq!(first, made[..2]);
        let rest = access.users(first[1].id.0, 2).await.unwrap();
        assert_eq!(rest, made[2..]);
        assert_eq!(rest[0].posts, ["signer"]);
        assert_eq!(rest[0].divisions, [code("430103")]);
        assert!(access.users(0, 0).await.is_err());
    }
);
