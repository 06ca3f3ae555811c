//! Disaster recovery (灾备) with PostgreSQL streaming replication: no acknowledged payment
//! is lost when the primary (主库) dies and its synchronous standby (备库) takes over (切换).
//!
//! Two throwaway clusters are made on free loopback ports ([`cluster`]): a primary with
//! `synchronous_standby_names = '*'` and `synchronous_commit = on`, and a standby made from
//! it with `pg_basebackup -R -X stream`, checked to stream synchronously before any load.
//! The demo province runs in-process with every party's store on the primary (a store
//! opened on the standby meanwhile reads but cannot write). Finance's
//! direct payments (5201, [`Party::issue_direct`], as the API's signer step calls it) are
//! made by several workers at once while the parties tick; each payment the call
//! acknowledged (returned success) is recorded. While payments are in flight the primary is
//! killed (`pg_ctl stop -m immediate`), the standby promoted (`pg_promote`) and the demo
//! reopened with the standby's URL, as an operator points a node's `postgres` setting at
//! it. Then:
//!
//! - every acknowledged payment is on the new primary: its 5201 sent, its plan booked;
//! - the payments cut off mid-call are retried with the same voucher and take effect once;
//! - the node goes on paying; every payment reaches the bank, is paid once and receipted;
//! - finance's plan used and the bank's payees were moved by exactly the payments' sum, and
//!   every party's ledger invariants hold (`Store::load_state`).
//!
//! The failover time — from the kill to the first payment acknowledged on the promoted
//! standby, including reopening the node — is printed, with its parts.
//!
//! Without `initdb`/`pg_basebackup` the test says SKIPPED loudly; with `CI=true` it fails.

#[path = "replication/cluster.rs"]
mod cluster;
mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cluster::{Pair, PgBin, STANDBY_NAME};
use common::{clock, in_ci};
use guoku_domain::{Amount, BizDate};
use guoku_node::demo::{Demo, DemoOptions, DemoPostgres, Payee};
use guoku_node::exchange::InMemory;
use guoku_node::flows::direct::op_id;
use guoku_node::party::Party;
use guoku_seal::Suite;
use guoku_store::books::{BookAccount, BookOp, IndicatorKey, Tenant};
use guoku_store::library::VoucherRecord;
use guoku_store::{PgConfig, Store};
use guoku_voucher::lifecycle::{Exchange, Leg, Processing};
use guoku_voucher::{Voucher, VoucherKey};

/// Workers paying at once.
const WORKERS: usize = 2;
/// Payments acknowledged before the primary is killed.
const ACKED_BEFORE_KILL: usize = 30;
/// Payments made on the promoted standby after the first one.
const PAID_AFTER: usize = 5;
/// How long the standby may take to stream synchronously.
const SYNC_DEADLINE: Duration = Duration::from_secs(30);
/// How long the load may take to reach [`ACKED_BEFORE_KILL`], and the workers to stop
/// after the kill.
const LOAD_DEADLINE: Duration = Duration::from_secs(30);
/// How long every payment may take to be paid and receipted after the failover.
const SETTLE_DEADLINE: Duration = Duration::from_secs(30);
/// Pause between the ticker's rounds while the load runs (pacing, not synchronisation).
const TICK_PAUSE: Duration = Duration::from_millis(20);
/// Who the test's payments are recorded as made by.
const ACTOR: &str = "replication-test";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledged_payment_is_lost_when_the_primary_dies_and_the_standby_is_promoted() {
    let bin = match PgBin::find() {
        Ok(bin) => bin,
        Err(why) => {
            assert!(
                !in_ci(),
                "CI=true but the replication test cannot run: {why}"
            );
            eprintln!(
                "\n*** SKIPPED: replication test — {why}. Install PostgreSQL's server \
                 programs (Debian: postgresql) or run scripts/test.sh. ***\n"
            );
            return;
        }
    };
    let setup = Instant::now();
    let pair = Pair::start(bin.clone()).unwrap_or_else(|e| panic!("the clusters: {e}"));
    let replication = pair
        .wait_synchronous(SYNC_DEADLINE)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(replication.application_name, STANDBY_NAME);
    eprintln!(
        "replication: primary :{} and standby :{} ({}) in {:.1?}; standby {replication:?}",
        pair.primary.port,
        pair.standby.port,
        bin.dir().display(),
        setup.elapsed()
    );
    check_primary_settings(&pair).await;

    // The demo province with every party's store on the primary.
    let data = tempfile::tempdir().expect("a temporary directory");
    let (clock, t) = clock();
    let schema_prefix = "guoku_dr_".to_owned();
    let mut options = DemoOptions {
        dir: data.path().join("guoku-data"),
        fresh: false,
        suite: Suite::Sm,
        postgres: Some(DemoPostgres {
            url: pair.primary.url(),
            schema_prefix: schema_prefix.clone(),
        }),
    };
    let opened = Instant::now();
    let demo = Arc::new(
        Demo::open(&options, clock.clone())
            .await
            .unwrap_or_else(|e| panic!("the demo on the primary: {e}\n{}", pair.log_tails())),
    );
    assert!(demo.created);
    eprintln!(
        "replication: the demo seeded on the primary in {:.1?}",
        opened.elapsed()
    );
    standby_is_read_only_before_promotion(&pair, &schema_prefix, &demo).await;
    let today = Party::<InMemory>::business_date(clock());
    let month = u8::from(clock().month());

    // Load: workers pay until their call fails; a ticker moves the vouchers on meanwhile.
    let numbers = Arc::new(AtomicU64::new(0));
    let acked_count = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let (demo, numbers, acked_count) = (demo.clone(), numbers.clone(), acked_count.clone());
            tokio::spawn(async move {
                let mut acked = Vec::new();
                loop {
                    let n = numbers.fetch_add(1, Ordering::Relaxed);
                    let payment = Payment::new(&demo, n, today);
                    match issue(&demo, &payment, month).await {
                        Ok(record) => {
                            acked.push((payment, record));
                            acked_count.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(why) => {
                            return Worker {
                                acked,
                                cut: payment,
                                why,
                                failed_at: Instant::now(),
                            };
                        }
                    }
                }
            })
        })
        .collect();
    let ticker = {
        let (demo, stop) = (demo.clone(), stop.clone());
        tokio::spawn(async move {
            let mut rounds = 0_u64;
            while !stop.load(Ordering::SeqCst) {
                if let Err(e) = demo.settle(1).await {
                    return (rounds, Some((e.to_string(), Instant::now())));
                }
                rounds += 1;
                tokio::time::sleep(TICK_PAUSE).await;
            }
            (rounds, None)
        })
    };
    let load_started = Instant::now();
    while acked_count.load(Ordering::SeqCst) < ACKED_BEFORE_KILL {
        assert!(
            load_started.elapsed() < LOAD_DEADLINE,
            "only {} payments acknowledged after {LOAD_DEADLINE:?}",
            acked_count.load(Ordering::SeqCst)
        );
        if workers.iter().any(tokio::task::JoinHandle::is_finished) {
            break; // A payment failed before the kill: said below, with its reason.
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // The primary dies with payments in flight.
    let killed_at = Instant::now();
    tokio::task::block_in_place(|| pair.kill_primary())
        .unwrap_or_else(|e| panic!("killing the primary: {e}"));
    let killed_in = killed_at.elapsed();
    stop.store(true, Ordering::SeqCst);
    let mut acked: Vec<(Payment, VoucherRecord)> = Vec::new();
    let mut cut = Vec::new();
    for w in workers {
        let w = tokio::time::timeout(LOAD_DEADLINE, w)
            .await
            .expect("a worker stops once the primary is gone")
            .expect("a worker does not panic");
        assert!(
            w.failed_at >= killed_at,
            "a payment failed before the primary was killed: {}",
            w.why
        );
        acked.extend(w.acked);
        cut.push((w.cut, w.why));
    }
    let (rounds, ticker_failed) = tokio::time::timeout(LOAD_DEADLINE, ticker)
        .await
        .expect("the ticker stops")
        .expect("the ticker does not panic");
    if let Some((why, at)) = &ticker_failed {
        assert!(
            *at >= killed_at,
            "the parties' tick failed before the kill: {why}"
        );
    }
    eprintln!(
        "replication: killed the primary after {} acknowledged payments ({} ticker rounds); \
         {} calls cut off, e.g. {:?}",
        acked.len(),
        rounds,
        cut.len(),
        cut.first().map(|c| &c.1)
    );
    assert!(acked.len() >= ACKED_BEFORE_KILL);

    // Failover: promote the standby, reopen the node on it, pay.
    pair.promote_standby()
        .await
        .unwrap_or_else(|e| panic!("promoting the standby: {e}"));
    let promoted_in = killed_at.elapsed();
    drop(demo);
    // The demo numbers vouchers by the clock's second and a counter that restarts.
    t.fetch_add(1, Ordering::SeqCst);
    options.postgres = Some(DemoPostgres {
        url: pair.standby.url(),
        schema_prefix,
    });
    let demo = Demo::open(&options, clock.clone())
        .await
        .unwrap_or_else(|e| {
            panic!(
                "the demo on the promoted standby: {e}\n{}",
                pair.log_tails()
            )
        });
    assert!(!demo.created, "the node resumes its data on the standby");
    let reopened_in = killed_at.elapsed();
    let first = Payment::new(&demo, numbers.fetch_add(1, Ordering::Relaxed), today);
    let first_record = issue(&demo, &first, month)
        .await
        .unwrap_or_else(|e| panic!("the first payment on the promoted standby: {e}"));
    let failover = killed_at.elapsed();
    eprintln!(
        "replication: FAILOVER {:.2} s from the kill to the first payment acknowledged on the \
         promoted standby (kill {:.2} s, promoted at {:.2} s, node reopened at {:.2} s)",
        failover.as_secs_f64(),
        killed_in.as_secs_f64(),
        promoted_in.as_secs_f64(),
        reopened_in.as_secs_f64()
    );

    // Nothing acknowledged was lost: each acknowledged 5201 is stored with the same content
    // and sent, and its plan booked.
    for (p, record) in &acked {
        let now = finance_leg(&demo, &p.key)
            .await
            .unwrap_or_else(|| panic!("acknowledged payment {} is lost", p.key));
        assert_eq!(now.content_sha256, record.content_sha256, "{}", p.key);
        assert_ne!(now.exchange, Exchange::NotSent, "{} was sent", p.key);
    }
    check_plan_booked(&demo.finance.store, acked.iter().map(|(p, _)| p), month).await;

    // The calls cut off are retried with the same voucher (a client's retry).
    let (mut booked, mut written) = (0, 0);
    for (p, _) in &cut {
        let booking = BookOp::transfer_id(op_id("quota", &p.key), 0);
        let found = demo.finance.store.transfers(vec![booking]).await;
        booked += found.expect("finance's books read").len();
        written += usize::from(finance_leg(&demo, &p.key).await.is_some());
        issue(&demo, p, month)
            .await
            .unwrap_or_else(|e| panic!("retrying {}: {e}", p.key));
    }
    eprintln!(
        "replication: of {} payments cut off, {booked} had their plan booked and {written} their \
         5201 written before the kill; each retried",
        cut.len()
    );

    // The node goes on paying on the new primary.
    assert_ne!(first_record.exchange, Exchange::NotSent);
    let mut after = vec![first];
    for _ in 0..PAID_AFTER {
        let p = Payment::new(&demo, numbers.fetch_add(1, Ordering::Relaxed), today);
        issue(&demo, &p, month)
            .await
            .unwrap_or_else(|e| panic!("a payment on the promoted standby: {e}"));
        after.push(p);
    }

    let all: Vec<&Payment> = acked
        .iter()
        .map(|(p, _)| p)
        .chain(cut.iter().map(|(p, _)| p))
        .chain(after.iter())
        .collect();
    let wanted: BTreeSet<VoucherKey> = all.iter().map(|p| p.key.clone()).collect();
    assert_eq!(wanted.len(), all.len(), "every payment has its own voucher");
    let total_fen: u128 = all.iter().map(|p| u128::from(p.fen.unsigned_abs())).sum();

    // Every payment reaches the bank, is paid and receipted (outbox retries are moved on
    // by the clock).
    let settling = Instant::now();
    loop {
        demo.settle(50)
            .await
            .unwrap_or_else(|e| panic!("ticking on the promoted standby: {e}"));
        let receipted = legs(&demo.finance.store, Leg::Original)
            .await
            .iter()
            .filter(|r| r.exchange == Exchange::ReceiptReceived)
            .count();
        if receipted == wanted.len() {
            break;
        }
        assert!(
            settling.elapsed() < SETTLE_DEADLINE,
            "{receipted} of {} payments receipted after {SETTLE_DEADLINE:?}",
            wanted.len()
        );
        t.fetch_add(3, Ordering::SeqCst);
    }

    // Each payment once at finance and once at the bank, paid and receipted.
    let sent = legs(&demo.finance.store, Leg::Original).await;
    let sent_keys: BTreeSet<VoucherKey> = sent.iter().map(|r| r.key.clone()).collect();
    assert_eq!(sent.len(), sent_keys.len(), "finance holds each 5201 once");
    assert_eq!(sent_keys, wanted, "finance holds exactly the payments made");
    let icbc = &demo.banks[0];
    let received = legs(&icbc.store, Leg::Original).await;
    let received_keys: BTreeSet<VoucherKey> = received.iter().map(|r| r.key.clone()).collect();
    assert_eq!(
        received.len(),
        received_keys.len(),
        "ICBC holds each 5201 once"
    );
    assert_eq!(
        received_keys, wanted,
        "ICBC received exactly the payments made"
    );
    for r in &received {
        assert_eq!(r.exchange, Exchange::Acknowledged, "ICBC: {}", r.key);
        assert_eq!(
            r.processing,
            Some(Processing::ReceiptSent),
            "ICBC: {}",
            r.key
        );
    }

    // The books moved by exactly the payments' sum: nothing applied twice.
    check_plan_booked(&demo.finance.store, all.iter().copied(), month).await;
    let mut plan_used = 0;
    for unit in &demo.province.units {
        let key = demo.indicator(&unit.code).expect("a demo unit");
        let account = BookAccount::plan_used(&key, month).expect("a month");
        plan_used += demo
            .finance
            .store
            .account(account.id())
            .await
            .expect("finance's books read")
            .map_or(0, |a| a.credits_posted);
    }
    assert_eq!(
        plan_used, total_fen,
        "finance's plan used is the payments' sum"
    );
    for p in &all {
        let pay = BookOp::transfer_id(op_id("pay", &p.key), 1);
        let found = icbc
            .store
            .transfers(vec![pay])
            .await
            .expect("ICBC's books read");
        assert_eq!(found.len(), 1, "ICBC paid {} once", p.key);
        assert_eq!(
            found[0].transfer.amount,
            u128::from(p.fen.unsigned_abs()),
            "{}",
            p.key
        );
    }
    let mut paid = 0;
    for division in &demo.province.divisions {
        let tenant = Tenant {
            adm_div: division.code.parse().expect("a division"),
            year: demo.year,
        };
        paid += icbc
            .store
            .account(BookAccount::payees(tenant).id())
            .await
            .expect("ICBC's books read")
            .map_or(0, |a| a.credits_posted);
    }
    assert_eq!(paid, total_fen, "ICBC paid out the payments' sum");
    for party in demo.parties() {
        party
            .store
            .load_state()
            .await
            .unwrap_or_else(|e| panic!("{}: a ledger invariant is broken: {e}", party.org_code()));
    }
    eprintln!(
        "replication: {} payments ({} acknowledged before the kill, {} cut off and retried, \
         {} after) each paid once; total {:.1?}",
        all.len(),
        acked.len(),
        cut.len(),
        after.len(),
        setup.elapsed()
    );
}

/// One direct payment: its voucher (kept for a retry) and what it books.
struct Payment {
    voucher: Voucher,
    key: VoucherKey,
    indicator: IndicatorKey,
    fen: i64,
}

impl Payment {
    /// Payment number `n`: a unit and an amount (1.00 to 10,000.00 yuan) drawn from `n`.
    fn new(demo: &Demo, n: u64, today: BizDate) -> Payment {
        let units = &demo.province.units;
        let unit = &units[usize::try_from(n).expect("a small n") % units.len()];
        let fen = 100 + i64::try_from(n.wrapping_mul(7_919) % 999_901).expect("small");
        let amount = Amount::from_fen(fen).expect("an amount");
        let voucher = demo
            .direct_voucher(&unit.code, amount, &Payee::demo(n), today)
            .expect("a 5201");
        Payment {
            key: voucher.key(),
            indicator: demo.indicator(&unit.code).expect("a demo unit"),
            voucher,
            fen,
        }
    }
}

/// What a worker did: the payments acknowledged, and the one whose call failed.
struct Worker {
    acked: Vec<(Payment, VoucherRecord)>,
    cut: Payment,
    why: String,
    failed_at: Instant,
}

/// Finance issues `p` to its direct-payment bank.
async fn issue(demo: &Demo, p: &Payment, month: u8) -> Result<VoucherRecord, String> {
    demo.finance
        .issue_direct(
            p.voucher.clone(),
            &p.indicator,
            month,
            demo.province.direct_bank().code,
            ACTOR,
        )
        .await
        .map_err(|e| e.to_string())
}

/// Finance's stored 5201 of `key`.
async fn finance_leg(demo: &Demo, key: &VoucherKey) -> Option<VoucherRecord> {
    demo.finance
        .store
        .library()
        .status(key, Leg::Original)
        .await
        .expect("finance's library reads")
}

/// Each payment's plan booking (plan → plan used, under the flow's id) is there once.
async fn check_plan_booked<'a>(
    store: &Store,
    payments: impl Iterator<Item = &'a Payment>,
    month: u8,
) {
    let payments: Vec<&Payment> = payments.collect();
    let ids: Vec<u128> = payments
        .iter()
        .map(|p| BookOp::transfer_id(op_id("quota", &p.key), 0))
        .collect();
    let found = store
        .transfers(ids.clone())
        .await
        .expect("finance's books read");
    assert_eq!(
        found.len(),
        payments.len(),
        "every payment's plan booking is stored once"
    );
    for (p, id) in payments.iter().zip(&ids) {
        let t = found
            .iter()
            .find(|t| t.transfer.id == *id)
            .unwrap_or_else(|| panic!("{}: its plan booking is lost", p.key));
        assert_eq!(
            t.transfer.amount,
            u128::from(p.fen.unsigned_abs()),
            "{}",
            p.key
        );
        let plan = BookAccount::plan(&p.indicator, month).expect("a month");
        let used = BookAccount::plan_used(&p.indicator, month).expect("a month");
        assert_eq!(
            (t.transfer.debit_account_id, t.transfer.credit_account_id),
            (plan.id(), used.id()),
            "{}",
            p.key
        );
    }
}

/// Every stored 5201 leg `leg` in `store`, in every state.
async fn legs(store: &Store, leg: Leg) -> Vec<VoucherRecord> {
    let library = store.library();
    let mut all = Vec::new();
    for state in Exchange::ALL {
        if state.code(leg).is_none() {
            continue;
        }
        let mut after = 0;
        loop {
            let page = library
                .by_status("5201", leg, state, after, 100)
                .await
                .expect("the library reads");
            all.extend(page.items);
            match page.next {
                Some(next) => after = next,
                None => break,
            }
        }
    }
    all
}

/// A node pointed at the standby while it still follows the primary opens its store and
/// reads (what `/healthz` asks), but every write fails: a standby in recovery is read-only.
async fn standby_is_read_only_before_promotion(pair: &Pair, schema_prefix: &str, demo: &Demo) {
    let mut config = PgConfig::new(pair.standby.url());
    let org = demo.finance.org_code().to_ascii_lowercase();
    config.schema = Some(format!("{schema_prefix}{org}"));
    let store = Store::connect_postgres(config)
        .await
        .unwrap_or_else(|e| panic!("the store opens on the standby: {e}"));
    store.now().await.expect("the standby answers reads");
    // What `guoku serve` checks before it starts: it refuses such a database.
    assert!(store.in_recovery().await.expect("the standby answers"));
    let key = demo
        .indicator(&demo.province.units[0].code)
        .expect("a demo unit");
    let op = BookOp::approve_plan(u128::MAX, &key, 1, Amount::from_fen(1).expect("1 fen"))
        .expect("an operation");
    match store.apply_book_ops(demo.finance.now().1, &[op]).await {
        Ok(_) => panic!("the standby in recovery took a write"),
        Err(e) => eprintln!("replication: before promotion a write on the standby fails: {e}"),
    }
}

/// The primary runs as the documentation says: synchronous commit to any one standby.
async fn check_primary_settings(pair: &Pair) {
    let primary = cluster::connect(&pair.primary.url())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for (name, want) in [
        ("synchronous_commit", "on"),
        ("synchronous_standby_names", "*"),
        ("wal_level", "replica"),
    ] {
        let row = primary
            .query_one(&format!("SHOW {name}"), &[])
            .await
            .unwrap_or_else(|e| panic!("SHOW {name}: {e}"));
        let got: String = row.get(0);
        assert_eq!(got, want, "the primary's {name}");
    }
}
