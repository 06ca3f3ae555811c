//! The demo province end to end in one process: created, seeded through the real quota
//! notices, a direct payment (5201) and an authorized payment (8202) paid, receipted,
//! cleared and settled, zero-balance accounts back to zero; then resumed from its directory.

use std::sync::atomic::Ordering;

use guoku_domain::Amount;
use guoku_node::demo::{Demo, DemoOptions, DemoPostgres, Payee};
use guoku_node::party::Party;
use guoku_seal::Suite;
use guoku_store::access::UserId;
use guoku_store::books::{AccountKind, BookAccount, BookFilter, Tenant};
use guoku_store::idempotency::{Begin, IdempotencyConfig, request_fingerprint};
use guoku_voucher::lifecycle::{Exchange, Leg, Processing};

mod common;
use common::{clock, demo_postgres, pg_reachable};

/// PBOC's clearing quota over every division: (granted, remaining) in fen.
async fn pboc_quota(demo: &Demo) -> (u128, u128) {
    let mut sum = (0, 0);
    for d in &demo.province.divisions {
        let tenant = Tenant {
            adm_div: d.code.parse().unwrap(),
            year: demo.year,
        };
        let s = demo
            .pboc
            .store
            .quota_summary(BookFilter::all(AccountKind::ClearingQuota, tenant))
            .await
            .unwrap();
        sum.0 += s.granted;
        sum.1 += s.remaining;
    }
    sum
}

fn yuan(text: &str) -> Amount {
    text.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_direct_and_an_authorized_payment_go_from_voucher_to_clearing_on_sqlite() {
    payments_go_from_voucher_to_clearing(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_direct_and_an_authorized_payment_go_from_voucher_to_clearing_on_postgres() {
    let Some(pg) = postgres().await else {
        return;
    };
    payments_go_from_voucher_to_clearing(Some(pg.clone())).await;
    drop_schemas(&pg).await;
}

/// PostgreSQL for a test: a unique schema prefix in the test database; `None` (said
/// loudly) when no server answers, which fails under `CI=true`.
async fn postgres() -> Option<DemoPostgres> {
    if !pg_reachable().await {
        return None;
    }
    Some(demo_postgres())
}

async fn drop_schemas(pg: &DemoPostgres) {
    let (client, conn) = tokio_postgres::connect(&pg.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let rows = client
        .query(
            "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1)",
            &[&pg.schema_prefix],
        )
        .await
        .unwrap();
    for row in rows {
        let name: String = row.get(0);
        client
            .batch_execute(&format!("DROP SCHEMA {name} CASCADE"))
            .await
            .unwrap();
    }
}

/// A new demo province in a directory of its own, on its test clock.
async fn open_demo(
    postgres: Option<DemoPostgres>,
) -> (
    tempfile::TempDir,
    DemoOptions,
    Demo,
    guoku_node::exchange::Clock,
    std::sync::Arc<std::sync::atomic::AtomicI64>,
) {
    let dir = tempfile::tempdir().unwrap();
    let (clock, t) = clock();
    let options = DemoOptions {
        dir: dir.path().join("guoku-data"),
        fresh: false,
        suite: Suite::Sm,
        postgres,
    };
    let demo = Demo::open(&options, clock.clone()).await.unwrap();
    (dir, options, demo, clock, t)
}

async fn payments_go_from_voucher_to_clearing(postgres: Option<DemoPostgres>) {
    let (_dir, options, demo, clock, t) = open_demo(postgres).await;
    assert!(demo.created);
    let today = Party::<guoku_node::exchange::InMemory>::business_date(clock());

    // PBOC booked every seeded clearing-quota notice.
    let units = demo.province.units.len() as u128;
    assert_eq!(
        pboc_quota(&demo).await,
        (units * 2 * 6_000_000_000, units * 2 * 6_000_000_000),
        "a year's quota per unit, direct and authorized"
    );

    // A direct payment from a county unit.
    let unit = demo.province.units[4].clone();
    let voucher = demo
        .direct_voucher(&unit.code, yuan("1234.56"), &Payee::demo(1), today)
        .unwrap();
    let key = voucher.key();
    let indicator = demo.indicator(&unit.code).unwrap();
    let bank = demo.province.direct_bank().code;
    let month = u8::from(clock().month());
    demo.finance
        .issue_direct(voucher, &indicator, month, bank, "maker")
        .await
        .unwrap();
    // An authorized payment from a unit at the other bank.
    let unit2 = demo.province.units[1].clone();
    let (voucher2, bank2) = demo
        .authorized_voucher(&unit2.code, yuan("88.00"), &Payee::demo(2), today)
        .unwrap();
    let key2 = voucher2.key();
    demo.counter
        .issue_authorized(voucher2, bank2, "maker")
        .await
        .unwrap();
    demo.settle(20).await.unwrap();

    let sent = demo
        .finance
        .store
        .library()
        .status(&key, Leg::Original)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sent.exchange, Exchange::ReceiptReceived, "{sent:?}");
    let at_counter = demo
        .counter
        .store
        .library()
        .status(&key2, Leg::Original)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(at_counter.exchange, Exchange::ReceiptReceived);

    // Clearing: two rounds asked at once at the bank (a person at the desk while the
    // worker's round runs) claim each paid voucher once: one after the other, the second
    // finds nothing left to claim. Then the banks' next rounds; PBOC clears every 2301.
    let icbc = &demo.banks[0];
    let (first, second) = tokio::join!(
        icbc.request_clearing("desk"),
        icbc.request_clearing("worker")
    );
    let (first, second) = (first.unwrap(), second.unwrap());
    assert_eq!(
        first.len() + second.len(),
        1,
        "one 2301 claims the direct payment: {first:?} {second:?}"
    );
    t.fetch_add(60, Ordering::SeqCst);
    demo.settle(20).await.unwrap();
    for bank in &demo.banks {
        let library = bank.store.library();
        let returned = library
            .by_status("2301", Leg::Original, Exchange::Returned, 0, 100)
            .await
            .unwrap()
            .items;
        assert!(returned.is_empty(), "PBOC returned a 2301: {returned:?}");
        let settled = library
            .by_status("2301", Leg::Original, Exchange::ReceiptReceived, 0, 100)
            .await
            .unwrap()
            .items;
        assert_eq!(settled.len(), 1, "each bank's one 2301 is settled");
    }
    let tenant = Tenant {
        adm_div: unit.division.parse().unwrap(),
        year: demo.year,
    };
    let receivable = icbc
        .store
        .account(BookAccount::receivable_pboc(tenant).id())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (receivable.debits_posted, receivable.credits_posted),
        (123_456, 123_456),
        "the fronted payment became a receivable and PBOC settled it"
    );
    let paid = icbc
        .store
        .library()
        .status(&key, Leg::Original)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(paid.processing, Some(Processing::ReceiptSent));
    assert!(
        icbc.store.nonzero_zbas(tenant).await.unwrap().is_empty(),
        "zero-balance accounts end at zero"
    );
    assert_eq!(
        pboc_quota(&demo).await,
        (
            units * 2 * 6_000_000_000,
            units * 2 * 6_000_000_000 - 123_456 - 8_800
        ),
        "PBOC deducted both cleared payments (direct and authorized) from the clearing quota"
    );
    let ccb = &demo.banks[1];
    let tenant2 = Tenant {
        adm_div: unit2.division.parse().unwrap(),
        year: demo.year,
    };
    assert!(
        ccb.store.nonzero_zbas(tenant2).await.unwrap().is_empty(),
        "the unit's zero-balance account is back at zero after its 8202 was cleared"
    );

    // Reconciliation: PBOC (3502 of the day's 2301s) and finance (5503 of the day's 5201s)
    // with every bank for every division; every answer agrees (XCheckResult 0, 相符).
    let pboc_sent = demo.pboc.reconcile_day("test").await.unwrap();
    let finance_sent = demo.finance.reconcile_day("test").await.unwrap();
    assert_eq!(pboc_sent, 2 * demo.province.divisions.len());
    assert_eq!(finance_sent, pboc_sent);
    demo.settle(20).await.unwrap();
    for (party, vt) in [(&demo.pboc, "3502"), (&demo.finance, "5503")] {
        let receipts = party
            .store
            .library()
            .by_status(vt, Leg::Receipt, Exchange::Acknowledged, 0, 100)
            .await
            .unwrap()
            .items;
        assert_eq!(receipts.len(), pboc_sent, "{vt}: every request answered");
        for r in receipts {
            let (envelope, _) =
                guoku_voucher::parse_envelope(&r.body, &guoku_voucher::Limits::default()).unwrap();
            let v = &envelope.bodies[0].voucher;
            assert_eq!(
                v.header.get("XCheckResult"),
                Some("0"),
                "{vt} {}: {:?}",
                r.key,
                v.header.get("XCheckReason")
            );
        }
    }

    // Housekeeping: an idempotency key is kept for its day, then the worker forgets it.
    let keys = demo
        .finance
        .store
        .idempotency(IdempotencyConfig::default())
        .unwrap();
    let (first, other) = (
        request_fingerprint("POST", "/x", b"a"),
        request_fingerprint("POST", "/x", b"b"),
    );
    let now = demo.finance.now().1;
    assert!(matches!(
        keys.begin(UserId(1), "housekeeping", first, now)
            .await
            .unwrap(),
        Begin::Proceed(_)
    ));
    assert!(
        keys.begin(UserId(1), "housekeeping", other, now)
            .await
            .is_err(),
        "the key is held: another request under it is refused"
    );
    t.fetch_add(2 * 86_400, Ordering::SeqCst);
    demo.finance.tick().await.unwrap();
    assert!(
        matches!(
            keys.begin(UserId(1), "housekeeping", other, demo.finance.now().1)
                .await
                .unwrap(),
            Begin::Proceed(_)
        ),
        "the worker forgot the expired key"
    );

    // Resume: the same directory opens without seeding again and keeps the vouchers.
    drop(demo);
    let again = Demo::open(&options, clock.clone()).await.unwrap();
    assert!(!again.created);
    assert!(
        again
            .finance
            .store
            .library()
            .status(&key, Leg::Original)
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn fresh_refuses_a_directory_that_is_not_a_demo() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("precious.txt"), b"keep me").unwrap();
    let (clock, _) = clock();
    let options = DemoOptions {
        dir: dir.path().to_owned(),
        fresh: true,
        suite: Suite::Sm,
        postgres: None,
    };
    let e = Demo::open(&options, clock).await.err().expect("refused");
    assert!(e.to_string().contains("not a guoku demo"), "{e}");
    assert!(dir.path().join("precious.txt").exists());
}

/// A 2301 the bank wrote for `amount` and never sent (its process died in between), in the
/// bank's library; its key.
async fn unsent_clearing_request(
    demo: &Demo,
    bank: &Party<guoku_node::exchange::InMemory>,
    voucher_no: &str,
    amount: &str,
) -> guoku_voucher::VoucherKey {
    let org = &demo.province.banks[0];
    let division = demo.province.divisions[0].code;
    let today = Party::<guoku_node::exchange::InMemory>::business_date(bank.now().0);
    let mut header = guoku_node::flows::clearing::request_template(
        &bank.registry,
        division,
        &demo.year.get().to_string(),
        org.bank_no,
        today,
    );
    header.set("Id", voucher_no);
    header.set("VoucherNo", voucher_no);
    header.set("PayTypeCode", "11");
    header.set("PayAmt", amount);
    let voucher = guoku_voucher::Voucher {
        header,
        details: Vec::new(),
    };
    let body = guoku_voucher::EnvelopeBody {
        flag: guoku_voucher::VoucherFlag::Original,
        attach: String::new(),
        voucher: voucher.clone(),
        signatures: Vec::new(),
    };
    let bytes = guoku_voucher::write_envelope(
        &guoku_voucher::Envelope { bodies: vec![body] },
        guoku_voucher::Encoding::Gbk,
    );
    let new = guoku_store::library::NewVoucher::new(
        &voucher,
        Leg::Original,
        bank.org_code(),
        demo.province.pboc.code,
        bytes,
    );
    let (_, now) = bank.now();
    bank.store
        .library()
        .write(new, "worker", now)
        .await
        .unwrap();
    voucher.key()
}

async fn an_unsent_request_the_books_refuse_stays_unsent(postgres: Option<DemoPostgres>) {
    let (_dir, _, demo, _, t) = open_demo(postgres).await;
    let bank = &demo.banks[0];
    // Two 2301s written and never sent: the books refuse a receivable of zero, and take
    // one of 1.00.
    let zero = unsent_clearing_request(&demo, bank, "QSTESTZERO", "0.00").await;
    let one = unsent_clearing_request(&demo, bank, "QSTESTONE", "1.00").await;
    t.fetch_add(
        i64::try_from(guoku_node::party::STUCK_AFTER_SECS).unwrap() + 1,
        Ordering::SeqCst,
    );
    let swept = bank.retry_stuck().await.unwrap();
    assert!(swept >= 2, "both found by the sweep: {swept}");
    let exchange = |key: guoku_voucher::VoucherKey| async move {
        bank.store
            .library()
            .status(&key, Leg::Original)
            .await
            .unwrap()
            .unwrap()
            .exchange
    };
    assert_eq!(
        exchange(zero.clone()).await,
        Exchange::NotSent,
        "refused: stays unsent"
    );
    assert_ne!(
        exchange(one.clone()).await,
        Exchange::NotSent,
        "the other one goes on"
    );
    let tenant = Tenant {
        adm_div: demo.province.divisions[0].code.parse().unwrap(),
        year: demo.year,
    };
    let receivable = bank
        .store
        .account(BookAccount::receivable_pboc(tenant).id())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(receivable.debits_posted, 100, "only the 1.00 was booked");
    // The next sweep tries it again, and it still stays unsent.
    t.fetch_add(
        i64::try_from(guoku_node::party::STUCK_AFTER_SECS).unwrap() + 1,
        Ordering::SeqCst,
    );
    bank.retry_stuck().await.unwrap();
    assert_eq!(exchange(zero).await, Exchange::NotSent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsent_request_the_books_refuse_stays_unsent_on_sqlite() {
    an_unsent_request_the_books_refuse_stays_unsent(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsent_request_the_books_refuse_stays_unsent_on_postgres() {
    let Some(pg) = postgres().await else { return };
    an_unsent_request_the_books_refuse_stays_unsent(Some(pg.clone())).await;
    drop_schemas(&pg).await;
}
