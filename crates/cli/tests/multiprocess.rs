//! The parties as separate processes on loopback, with a faulty network between them.
//!
//! Finance, PBOC and ICBC (finance's direct-payment bank) each run as their own
//! `guoku serve` process, on the stores of a fresh demo province. Every exchange connection
//! goes through [`fault_proxy`], which drops connections, cuts answers (the receiver handled
//! the request, the sender retries: a duplicate), and delays requests and answers (so later
//! deliveries overtake earlier ones). Direct payments are made through finance's API, some
//! posted twice with the same `Idempotency-Key`. When every payment's original is 12
//! (已收到对方回单) at finance, ICBC has cleared them all and every outbox is empty, the
//! processes are stopped and their stores opened directly: each payment was paid once and
//! cleared once, finance's plans, PBOC's clearing quota and the money moved by exactly the
//! sum, the zero-balance accounts are at zero, no outbox holds anything, and every ledger
//! invariant holds.
//!
//! The faults come from a seed, printed at the start; `GUOKU_FAULT_SEED=<seed>` replays a
//! run's faults (the processes' timing is the machine's). On failure the seed and the end
//! of each process's standard error are printed. The processes are killed if the test
//! panics. Runs on SQLite, and on PostgreSQL when a server answers (with `CI=true` it must).

mod fault_proxy;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fault_proxy::{FaultProxy, Plan, Tally};
use guoku_domain::Amount;
use guoku_node::demo::{DEMO_PIN, Demo, DemoOptions, DemoPostgres, province};
use guoku_node::serve::NodeConfig;
use guoku_seal::Suite;
use guoku_store::books::{AccountKind, BookFilter, Tenant};
use guoku_store::library::VoucherRecord;
use guoku_store::{PgConfig, SqliteConfig, Store};
use guoku_voucher::lifecycle::{Exchange, Leg, Processing};
use guoku_voucher::{Limits, VoucherFlag, VoucherKey, parse_envelope};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};
use time::{OffsetDateTime, UtcOffset};

const FINANCE: &str = "11430000006";
const PBOC: &str = "001430000001";
const ICBC: &str = "102551000015";
/// The parties run as processes: (organisation code, `--role`).
const PARTIES: [(&str, &str); 3] = [(FINANCE, "finance"), (PBOC, "pboc"), (ICBC, "bank")];

/// Waves of direct payments, and payments in each.
const WAVES: usize = 3;
const PER_WAVE: usize = 20;
/// Requests of each wave posted again with the same key.
const REPEATS_PER_WAVE: usize = 3;
/// Connections dropped, answers cut and messages delayed, in percent.
const DROP_PERCENT: u8 = 15;
const CUT_PERCENT: u8 = 15;
const DELAY_PERCENT: u8 = 30;
/// Longest delay of a request or an answer.
const DELAY_MAX_MS: u64 = 800;

/// Finance's route for direct payments.
const DIRECT_PAYMENTS: &str = "/api/v1/direct-payments";
/// How long the processes may take to answer `/healthz` (they unlock their keys first).
const READY_DEADLINE: Duration = Duration::from_secs(60);
/// How long all the payments may take to be receipted, cleared and settled.
const SETTLE_DEADLINE: Duration = Duration::from_secs(75);
/// How long a process may take to stop after SIGTERM.
const STOP_DEADLINE: Duration = Duration::from_secs(20);
/// How often a condition is polled.
const POLL: Duration = Duration::from_millis(300);
/// Longest wait for one API answer.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// Lines of each process's standard error printed on failure.
const TAIL_LINES: usize = 40;

/// The two runs share a 2-core machine: one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payments_end_exactly_once_through_a_faulty_network_on_sqlite() {
    let _one = ONE_AT_A_TIME.lock().await;
    payments_end_exactly_once(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payments_end_exactly_once_through_a_faulty_network_on_postgres() {
    let Some(pg) = postgres().await else {
        return;
    };
    let _one = ONE_AT_A_TIME.lock().await;
    let _schemas = DropSchemas(pg.clone());
    payments_end_exactly_once(Backend::Postgres(pg)).await;
}

// ----- the scenario ----------------------------------------------------------------------

async fn payments_end_exactly_once(backend: Backend) {
    let seed = fault_seed();
    eprintln!(
        "multiprocess ({}): fault seed {seed} (replay: GUOKU_FAULT_SEED={seed})",
        backend.name()
    );
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let data = dir.path().join("guoku-data");
    init_demo(&backend, &data).await;

    // Free loopback ports for every process, and the proxy in front of each exchange.
    let mut ports = BTreeMap::new();
    for (org, _) in PARTIES {
        ports.insert(org, (free_port(), free_port()));
    }
    let upstreams: Vec<(String, SocketAddr)> = PARTIES
        .iter()
        .map(|(org, _)| ((*org).to_owned(), ports[org].0))
        .collect();
    let plan = Plan {
        seed,
        drop_percent: DROP_PERCENT,
        cut_percent: CUT_PERCENT,
        delay_percent: DELAY_PERCENT,
        delay_max_ms: DELAY_MAX_MS,
        every_fault_first: true,
    };
    let proxy = FaultProxy::start(plan, &upstreams)
        .await
        .expect("the proxy listens");
    let run = Run {
        backend: &backend,
        data: &data,
        proxy: &proxy,
        clearing_every_secs: rng.random_range(1..=2),
    };
    let mut tokens = BTreeMap::new();
    for (org, role) in PARTIES {
        let token = format!("gk_multiprocess_{org}_{seed}");
        configure(&run, org, role, ports[org], &token);
        tokens.insert(org, token);
    }

    let divisions: Vec<&str> = province().divisions.iter().map(|d| d.code).collect();
    let year = business_date_now().0;
    let tenants: Vec<Tenant> = divisions
        .iter()
        .map(|d| Tenant {
            adm_div: d.parse().expect("a division code"),
            year: year.to_string().parse().expect("a year"),
        })
        .collect();
    let before = Figures::read(&backend, &data, &tenants).await;

    let mut cluster = Cluster::new(seed);
    for (org, role) in PARTIES {
        cluster.spawn(org, role, &data.join(org).join("node.toml"), ports[org].1);
    }
    cluster.wait_ready().await;
    // Every node serves its own portal beside its API (the demo's users sign in there).
    for (org, _) in PARTIES {
        let login = get(ports[org].1, "/login", None)
            .await
            .expect("the portal answers");
        let page = String::from_utf8_lossy(&login.body);
        assert_eq!(login.status, 200, "{org}: {page}");
        assert!(page.contains("name=\"password\""), "{org}: {page}");
    }

    // Payments through finance's API, in waves: each wave is posted while the one before
    // is still being cleared, so deliveries, receipts and clearing requests overlap.
    let api = Api {
        addr: ports[FINANCE].1,
        token: format!("{}-maker", tokens[FINANCE]),
        checker: format!("{}-checker", tokens[FINANCE]),
        signer: format!("{}-signer", tokens[FINANCE]),
    };
    let month = business_date_now().1;
    let started = Instant::now();
    let mut payments: Vec<Payment> = Vec::with_capacity(WAVES * PER_WAVE);
    for wave in 0..WAVES {
        for _ in 0..PER_WAVE {
            let n = payments.len();
            payments.push(api.pay(&mut rng, seed, n, month).await);
        }
        // Some requests again, this wave's and earlier ones': the same vouchers, nothing new.
        for _ in 0..REPEATS_PER_WAVE {
            let p = &payments[rng.random_range(0..payments.len())];
            api.repeat(p).await;
        }
        if wave == 0 {
            // The same key for another request is refused and changes nothing.
            api.reuse_key_for_another_request(&payments[0]).await;
        }
        let receipted = payments.len();
        let (wanted, _) = wanted(&payments);
        wait_for(&mut cluster, &tokens, &wanted, started, &proxy, |p| {
            p.receipted == receipted
        })
        .await;
    }

    let (wanted, total_fen) = wanted(&payments);
    assert_eq!(
        wanted.len(),
        payments.len(),
        "every payment its own voucher"
    );
    // Then everything receipted, cleared and delivered.
    let last = wait_for(&mut cluster, &tokens, &wanted, started, &proxy, |p| {
        p.receipted == wanted.len()
            && p.cleared_fen == total_fen
            && p.outbox.iter().all(|n| *n == Some(0))
            && p.unread.iter().all(|n| *n == Some(0))
    })
    .await;
    eprintln!(
        "multiprocess ({}): {} payments settled in {:?}; proxy {:?}; {last:?}",
        backend.name(),
        payments.len(),
        started.elapsed(),
        proxy.tally()
    );
    cluster.stop().await;

    check_stores(&backend, &data, &payments, total_fen).await;
    let after = Figures::read(&backend, &data, &tenants).await;
    let total = i128::from(total_fen);
    let moved = after.minus(&before);
    assert_eq!(
        moved,
        Figures {
            finance_plan_consumed: total,
            finance_plan_used: total,
            pboc_quota_remaining: -total,
            pboc_cleared: total,
            pboc_tsa: -total,
            pboc_icbc_clearing: total,
            bank_payees: total,
            bank_advance: 0,
            bank_receivable: 0,
            bank_pboc_reserve: -total,
        },
        "each book moved by exactly the payments' sum ({total} fen), once"
    );

    // The faults did happen: the run proved something.
    let tally = proxy.tally();
    assert_faults_happened(tally);
}

fn assert_faults_happened(t: Tally) {
    assert!(t.dropped > 0, "no connection was dropped: {t:?}");
    assert!(t.answers_lost > 0, "no answer was cut: {t:?}");
    assert!(t.delayed > 0, "nothing was delayed: {t:?}");
    assert!(t.passed > 0, "nothing passed: {t:?}");
}

/// A payment made through the API.
struct Payment {
    key: String,
    body: Value,
    voucher: VoucherKey,
    amount: Amount,
}

/// The payments' voucher numbers, and what they add up to in fen.
fn wanted(payments: &[Payment]) -> (BTreeSet<String>, i64) {
    let nos = payments
        .iter()
        .map(|p| p.voucher.voucher_no.clone())
        .collect();
    (nos, payments.iter().map(|p| p.amount.fen()).sum())
}

/// Finance's API as its maker, checker and signer call it.
struct Api {
    addr: SocketAddr,
    /// The maker's token.
    token: String,
    checker: String,
    signer: String,
}

impl Api {
    /// Direct payment number `n`: a unit, an amount and a payee drawn from `rng`.
    async fn pay(&self, rng: &mut StdRng, seed: u64, n: usize, month: u8) -> Payment {
        let units = province().units;
        let unit = &units[rng.random_range(0..units.len())];
        let amount = Amount::from_fen(rng.random_range(100..=2_000_000)).expect("an amount");
        let key = format!("multiprocess-{seed}-{n}");
        let body = json!({
            "unit": unit.code,
            "amount": amount.to_string(),
            "payee": {
                "name": "长沙市芙蓉建筑工程有限公司",
                "account": format!("6222-{:012}", n + 1),
                "bank_name": "中国建设银行长沙芙蓉支行",
            },
            "summary": "采购办公设备",
            "month": month,
        });
        // Three people: the maker's request makes a draft, a checker checks it, a signer
        // signs it, and only then is it stamped and sent.
        let reply = post(self.addr, DIRECT_PAYMENTS, &self.token, &key, &body).await;
        assert_eq!(reply.status, 201, "payment {n}: {}", reply.text());
        let view = reply.json()["draft"].clone();
        let path = format!(
            "/api/v1/vouchers/{}/{}/{}/{}",
            text(&view, "adm_div"),
            text(&view, "year"),
            text(&view, "vt_code"),
            text(&view, "voucher_no")
        );
        for (step, token, status) in [("check", &self.checker, 200), ("sign", &self.signer, 201)] {
            let reply = post(
                self.addr,
                &format!("{path}/{step}"),
                token,
                &format!("{key}-{step}"),
                &json!({}),
            )
            .await;
            assert_eq!(
                reply.status,
                status,
                "payment {n}, {step}: {}",
                reply.text()
            );
        }
        let voucher = VoucherKey {
            adm_div_code: text(&view, "adm_div"),
            st_year: text(&view, "year"),
            vt_code: text(&view, "vt_code"),
            voucher_no: text(&view, "voucher_no"),
        };
        assert_eq!(voucher.vt_code, "5201");
        assert_eq!(voucher.adm_div_code, unit.division);
        Payment {
            key,
            body,
            voucher,
            amount,
        }
    }

    /// Posts `p`'s request again with its key: answered from the key's record.
    async fn repeat(&self, p: &Payment) {
        let reply = post(self.addr, DIRECT_PAYMENTS, &self.token, &p.key, &p.body).await;
        assert_eq!(reply.status, 201, "a repeat: {}", reply.text());
        assert_eq!(
            reply.header("idempotent-replayed").as_deref(),
            Some("true"),
            "a repeat is answered from the key's record"
        );
        assert_eq!(
            text(&reply.json()["draft"], "voucher_no"),
            p.voucher.voucher_no
        );
    }

    /// Posts another request with `p`'s key: refused.
    async fn reuse_key_for_another_request(&self, p: &Payment) {
        let mut other = p.body.clone();
        other["amount"] = json!("1.00");
        let reply = post(self.addr, DIRECT_PAYMENTS, &self.token, &p.key, &other).await;
        assert_eq!(reply.status, 422, "{}", reply.text());
        assert!(
            reply.text().contains("idempotency_key_reused"),
            "{}",
            reply.text()
        );
    }
}

/// Polls the processes until `done` holds of their progress; fails at [`SETTLE_DEADLINE`]
/// after `started`, saying how far they got.
async fn wait_for(
    cluster: &mut Cluster,
    tokens: &BTreeMap<&str, String>,
    wanted: &BTreeSet<String>,
    started: Instant,
    proxy: &FaultProxy,
    done: impl Fn(&Progress) -> bool,
) -> Progress {
    loop {
        cluster.check_running();
        let progress = Progress::read(cluster, tokens, wanted).await;
        if done(&progress) {
            return progress;
        }
        assert!(
            started.elapsed() < SETTLE_DEADLINE,
            "not settled after {SETTLE_DEADLINE:?} (seed {}): {progress:?} of {} payments; \
             proxy {:?}",
            cluster.seed,
            wanted.len(),
            proxy.tally()
        );
        tokio::time::sleep(POLL).await;
    }
}

// ----- the stores, read directly after the processes stopped ------------------------------

async fn check_stores(backend: &Backend, data: &Path, payments: &[Payment], total_fen: i64) {
    let finance = backend.open(data, FINANCE).await;
    let pboc = backend.open(data, PBOC).await;
    let icbc = backend.open(data, ICBC).await;
    for (org, store) in [(FINANCE, &finance), (PBOC, &pboc), (ICBC, &icbc)] {
        store
            .load_state()
            .await
            .unwrap_or_else(|e| panic!("{org}: a ledger invariant is broken: {e}"));
        // Every entry, however far off its next attempt (the store's clock is an i64).
        let due = store
            .library()
            .due(i64::MAX.unsigned_abs(), 100)
            .await
            .expect("the outbox reads");
        assert!(
            due.is_empty(),
            "{org}: the outbox still holds {:?}",
            due.iter().map(|e| &e.key).collect::<Vec<_>>()
        );
    }

    // Finance: each payment once, its receipt back.
    let wanted: BTreeSet<&VoucherKey> = payments.iter().map(|p| &p.voucher).collect();
    let sent = all_legs(&finance, "5201", Leg::Original).await;
    assert_eq!(
        sent.len(),
        payments.len(),
        "finance holds each payment once"
    );
    for r in &sent {
        assert!(
            wanted.contains(&r.key),
            "finance: an unexpected 5201 {}",
            r.key
        );
        assert_eq!(r.exchange, Exchange::ReceiptReceived, "finance: {}", r.key);
    }

    // ICBC: each payment received once, paid and receipted.
    let received = all_legs(&icbc, "5201", Leg::Original).await;
    assert_eq!(
        received.len(),
        payments.len(),
        "ICBC holds each payment once"
    );
    for r in &received {
        assert!(
            wanted.contains(&r.key),
            "ICBC: an unexpected 5201 {}",
            r.key
        );
        assert_eq!(r.exchange, Exchange::Acknowledged, "ICBC: {}", r.key);
        assert_eq!(
            r.processing,
            Some(Processing::ReceiptSent),
            "ICBC: {}",
            r.key
        );
    }
    // …and each cleared once, by a 2301 PBOC receipted.
    let mut cleared: BTreeMap<String, usize> = BTreeMap::new();
    let mut cleared_fen = 0;
    for r in all_legs(&icbc, "2301", Leg::Original).await {
        match r.exchange {
            Exchange::ReceiptReceived => {
                let (nos, fen) = clearing_details(&r);
                cleared_fen += fen;
                for no in nos {
                    *cleared.entry(no).or_default() += 1;
                }
            }
            // A request PBOC refused or returned claims nothing.
            Exchange::ReceiveFailed | Exchange::AckFailed | Exchange::Returned => {}
            other => panic!("ICBC: 2301 {} is still {other:?}", r.key),
        }
    }
    let once: BTreeMap<String, usize> = payments
        .iter()
        .map(|p| (p.voucher.voucher_no.clone(), 1))
        .collect();
    assert_eq!(cleared, once, "each payment cleared exactly once");
    assert_eq!(
        cleared_fen, total_fen,
        "the cleared sum is the payments' sum"
    );

    for division in province().divisions {
        let tenant = Tenant {
            adm_div: division.code.parse().expect("a division"),
            year: payments[0].voucher.st_year.parse().expect("a year"),
        };
        let nonzero = icbc.nonzero_zbas(tenant).await.expect("the books read");
        assert!(
            nonzero.is_empty(),
            "ICBC: zero-balance accounts not at zero: {nonzero:?}"
        );
    }
}

/// Every stored leg of `vt_code` on `leg`, in every state.
async fn all_legs(store: &Store, vt_code: &str, leg: Leg) -> Vec<VoucherRecord> {
    let library = store.library();
    let mut all = Vec::new();
    for state in Exchange::ALL {
        if state.code(leg).is_none() {
            continue;
        }
        let mut after = 0;
        loop {
            let page = library
                .by_status(vt_code, leg, state, after, 100)
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

/// The payment vouchers a stored 2301 lists, and its amount in fen.
fn clearing_details(record: &VoucherRecord) -> (Vec<String>, i64) {
    let limits = Limits {
        max_input_bytes: guoku_store::library::BODY_MAX_BYTES,
        ..Limits::default()
    };
    let (envelope, _) = parse_envelope(&record.body, &limits).expect("a stored 2301 parses");
    let body = envelope
        .bodies
        .into_iter()
        .find(|b| b.flag == VoucherFlag::Original)
        .expect("the original 2301");
    let fen = body
        .voucher
        .header
        .get("PayAmt")
        .and_then(|a| a.parse::<Amount>().ok())
        .expect("a 2301 has a PayAmt")
        .fen();
    let nos = body
        .voucher
        .details
        .iter()
        .map(|d| d.get("VoucherNo").unwrap_or("").to_owned())
        .collect();
    (nos, fen)
}

/// Net balances (credits − debits, in fen) of the books the payments move, summed over
/// the tenants.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Figures {
    /// Finance: plan quota consumed (debits of the monthly plans).
    finance_plan_consumed: i128,
    finance_plan_used: i128,
    /// PBOC: clearing quota left, and what it cleared.
    pboc_quota_remaining: i128,
    pboc_cleared: i128,
    pboc_tsa: i128,
    /// PBOC: ICBC's clearing account.
    pboc_icbc_clearing: i128,
    /// ICBC's money books.
    bank_payees: i128,
    bank_advance: i128,
    bank_receivable: i128,
    bank_pboc_reserve: i128,
}

impl Figures {
    async fn read(backend: &Backend, data: &Path, tenants: &[Tenant]) -> Figures {
        let finance = backend.open(data, FINANCE).await;
        let pboc = backend.open(data, PBOC).await;
        let icbc = backend.open(data, ICBC).await;
        let mut f = Figures::default();
        for t in tenants {
            let plan = sum(&finance, BookFilter::all(AccountKind::Plan, *t)).await;
            f.finance_plan_consumed += plan.debits;
            f.finance_plan_used += sum(&finance, BookFilter::all(AccountKind::PlanUsed, *t))
                .await
                .net();
            f.pboc_quota_remaining += sum(&pboc, BookFilter::all(AccountKind::ClearingQuota, *t))
                .await
                .net();
            f.pboc_cleared += sum(&pboc, BookFilter::all(AccountKind::Cleared, *t))
                .await
                .net();
            f.pboc_tsa += sum(&pboc, BookFilter::all(AccountKind::Tsa, *t))
                .await
                .net();
            let mut clearing = BookFilter::all(AccountKind::BankClearing, *t);
            clearing.bank = ICBC.to_owned();
            f.pboc_icbc_clearing += sum(&pboc, clearing).await.net();
            f.bank_payees += sum(&icbc, BookFilter::all(AccountKind::Payees, *t))
                .await
                .net();
            f.bank_advance += sum(&icbc, BookFilter::all(AccountKind::Advance, *t))
                .await
                .net();
            f.bank_receivable += sum(&icbc, BookFilter::all(AccountKind::ReceivablePboc, *t))
                .await
                .net();
            f.bank_pboc_reserve += sum(&icbc, BookFilter::all(AccountKind::PbocReserve, *t))
                .await
                .net();
        }
        f
    }

    fn minus(&self, before: &Figures) -> Figures {
        Figures {
            finance_plan_consumed: self.finance_plan_consumed - before.finance_plan_consumed,
            finance_plan_used: self.finance_plan_used - before.finance_plan_used,
            pboc_quota_remaining: self.pboc_quota_remaining - before.pboc_quota_remaining,
            pboc_cleared: self.pboc_cleared - before.pboc_cleared,
            pboc_tsa: self.pboc_tsa - before.pboc_tsa,
            pboc_icbc_clearing: self.pboc_icbc_clearing - before.pboc_icbc_clearing,
            bank_payees: self.bank_payees - before.bank_payees,
            bank_advance: self.bank_advance - before.bank_advance,
            bank_receivable: self.bank_receivable - before.bank_receivable,
            bank_pboc_reserve: self.bank_pboc_reserve - before.bank_pboc_reserve,
        }
    }
}

/// Posted credits and debits of the accounts a filter selects (none pending).
struct Sum {
    credits: i128,
    debits: i128,
}

impl Sum {
    fn net(&self) -> i128 {
        self.credits - self.debits
    }
}

async fn sum(store: &Store, filter: BookFilter) -> Sum {
    let mut s = Sum {
        credits: 0,
        debits: 0,
    };
    for (label, a) in store.book_accounts(filter).await.expect("the books read") {
        assert_eq!(
            (a.debits_pending, a.credits_pending),
            (0, 0),
            "{label:?}: nothing stays pending"
        );
        s.credits += i128::try_from(a.credits_posted).expect("credits fit");
        s.debits += i128::try_from(a.debits_posted).expect("debits fit");
    }
    s
}

// ----- progress, read from the running processes -----------------------------------------

/// What the processes say while the payments move.
#[derive(Debug, Default)]
struct Progress {
    /// Payments whose original is 12 (已收到对方回单) at finance.
    receipted: usize,
    /// What ICBC's receipted clearing requests (2301, status 12) add up to, in fen.
    cleared_fen: i64,
    /// Per process: outbox entries not yet taken, received vouchers not yet read.
    outbox: Vec<Option<u64>>,
    unread: Vec<Option<u64>>,
}

impl Progress {
    async fn read(
        cluster: &Cluster,
        tokens: &BTreeMap<&str, String>,
        wanted: &BTreeSet<String>,
    ) -> Progress {
        let mut p = Progress::default();
        let finance = cluster.api(FINANCE);
        for item in list(finance, &format!("{}-maker", tokens[FINANCE]), "5201", 12).await {
            if wanted.contains(&text(&item, "voucher_no")) {
                p.receipted += 1;
            }
        }
        for item in list(
            cluster.api(ICBC),
            &format!("{}-maker", tokens[ICBC]),
            "2301",
            12,
        )
        .await
        {
            let amount: Amount = text(&item, "amount").parse().expect("a 2301's amount");
            p.cleared_fen += amount.fen();
        }
        for node in &cluster.nodes {
            let metrics = get(node.api, "/metrics", None).await;
            let metrics = metrics.filter(|r| r.status == 200).map(|r| r.text());
            p.outbox.push(
                metrics
                    .as_deref()
                    .and_then(|m| gauge(m, "guoku_outbox_entries")),
            );
            p.unread.push(
                metrics
                    .as_deref()
                    .and_then(|m| gauge(m, "guoku_vouchers_unread")),
            );
        }
        p
    }
}

/// The sum of a gauge's samples in Prometheus text, if it has any.
fn gauge(text: &str, name: &str) -> Option<u64> {
    let mut found = None;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !rest.starts_with('{') && !rest.starts_with(' ') {
            continue;
        }
        let value: u64 = line.rsplit(' ').next()?.parse().ok()?;
        found = Some(found.unwrap_or(0) + value);
    }
    found
}

/// Every voucher of `vt_code` in status `state` (original leg) the API lists.
async fn list(api: SocketAddr, token: &str, vt_code: &str, state: i8) -> Vec<Value> {
    let mut items = Vec::new();
    let mut after: Option<u64> = None;
    loop {
        let mut path = format!("/api/v1/vouchers?vt_code={vt_code}&state={state}&limit=100");
        if let Some(a) = after {
            let _ = write!(path, "&after={a}");
        }
        let Some(reply) = get(api, &path, Some(token)).await else {
            return items;
        };
        assert_eq!(reply.status, 200, "GET {path}: {}", reply.text());
        let page = reply.json();
        items.extend(page["items"].as_array().cloned().unwrap_or_default());
        match page["next"].as_u64() {
            Some(next) => after = Some(next),
            None => return items,
        }
    }
}

// ----- the processes ---------------------------------------------------------------------

/// A `guoku serve` process.
struct Node {
    org: &'static str,
    api: SocketAddr,
    stderr: PathBuf,
    child: Option<Child>,
}

/// The processes of a run: killed when dropped, with the seed and their last log lines
/// printed if the test is failing.
struct Cluster {
    seed: u64,
    nodes: Vec<Node>,
}

impl Cluster {
    fn new(seed: u64) -> Self {
        Self {
            seed,
            nodes: Vec::new(),
        }
    }

    fn spawn(&mut self, org: &'static str, role: &str, config: &Path, api: SocketAddr) {
        let dir = config.parent().expect("the party's directory");
        let stderr = dir.join("serve.stderr");
        let stdout = dir.join("serve.stdout");
        let child = Command::new(env!("CARGO_BIN_EXE_guoku"))
            .args(["serve", "--role", role, "--config"])
            .arg(config)
            .env("GUOKU_KEY_PIN", DEMO_PIN)
            .env("GUOKU_LOG", "info,guoku_node::api::request_id=warn")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).expect("a stdout file"))
            .stderr(std::fs::File::create(&stderr).expect("a stderr file"))
            .spawn()
            .expect("guoku serve starts");
        self.nodes.push(Node {
            org,
            api,
            stderr,
            child: Some(child),
        });
    }

    fn api(&self, org: &str) -> SocketAddr {
        self.nodes
            .iter()
            .find(|n| n.org == org)
            .expect("a running party")
            .api
    }

    /// Panics if a process has exited.
    fn check_running(&mut self) {
        for node in &mut self.nodes {
            if let Some(child) = node.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                node.child = None;
                panic!("guoku serve of {} exited early: {status}", node.org);
            }
        }
    }

    /// Polls every process's `/healthz` until it answers 200.
    async fn wait_ready(&mut self) {
        let started = Instant::now();
        for i in 0..self.nodes.len() {
            loop {
                self.check_running();
                let reply = get(self.nodes[i].api, "/healthz", None).await;
                if reply.is_some_and(|r| r.status == 200) {
                    break;
                }
                assert!(
                    started.elapsed() < READY_DEADLINE,
                    "{} did not answer /healthz within {READY_DEADLINE:?}",
                    self.nodes[i].org
                );
                tokio::time::sleep(POLL).await;
            }
        }
    }

    /// SIGTERM to every process, then waits for each to exit cleanly.
    async fn stop(&mut self) {
        for node in &self.nodes {
            if let Some(child) = &node.child {
                let sent = Command::new("kill")
                    .args(["-TERM", &child.id().to_string()])
                    .status()
                    .expect("kill runs");
                assert!(sent.success(), "SIGTERM to {}", node.org);
            }
        }
        let started = Instant::now();
        let mut statuses: Vec<(&str, ExitStatus)> = Vec::new();
        for node in &mut self.nodes {
            let Some(child) = node.child.as_mut() else {
                continue;
            };
            loop {
                if let Some(status) = child.try_wait().expect("the child's status") {
                    statuses.push((node.org, status));
                    node.child = None;
                    break;
                }
                assert!(
                    started.elapsed() < STOP_DEADLINE,
                    "{} did not stop within {STOP_DEADLINE:?} of SIGTERM",
                    node.org
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        for (org, status) in statuses {
            assert!(status.success(), "{org} stopped with {status}");
        }
    }

    fn tails(&self) -> String {
        let mut out = String::new();
        for node in &self.nodes {
            let text = std::fs::read_to_string(&node.stderr).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let from = lines.len().saturating_sub(TAIL_LINES);
            let _ = writeln!(
                out,
                "----- {} ({}), last {} lines -----",
                node.org,
                node.stderr.display(),
                lines.len() - from
            );
            for line in &lines[from..] {
                let _ = writeln!(out, "{line}");
            }
        }
        out
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "multiprocess FAILED with fault seed {seed} (replay: GUOKU_FAULT_SEED={seed})\n{}",
                self.tails(),
                seed = self.seed
            );
        }
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

// ----- the demo and the configurations ---------------------------------------------------

/// Where the stores are.
enum Backend {
    Sqlite,
    Postgres(DemoPostgres),
}

impl Backend {
    fn name(&self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    fn schema(pg: &DemoPostgres, org: &str) -> String {
        format!("{}{}", pg.schema_prefix, org.to_ascii_lowercase())
    }

    /// The store of party `org`, as its process opens it.
    async fn open(&self, data: &Path, org: &str) -> Store {
        match self {
            Backend::Sqlite => {
                Store::open_sqlite(SqliteConfig::new(data.join(org).join("guoku.db")))
                    .await
                    .expect("the SQLite store opens")
            }
            Backend::Postgres(pg) => {
                let mut config = PgConfig::new(pg.url.clone());
                config.schema = Some(Self::schema(pg, org));
                config.pool_size = 2;
                Store::connect_postgres(config)
                    .await
                    .expect("the PostgreSQL store opens")
            }
        }
    }
}

/// A fresh demo province in `data`: on SQLite by `guoku demo --init-only`; on PostgreSQL
/// (which the command does not offer) by the same library call from here.
async fn init_demo(backend: &Backend, data: &Path) {
    match backend {
        Backend::Sqlite => {
            let out = Command::new(env!("CARGO_BIN_EXE_guoku"))
                .args(["demo", "--fresh", "--init-only", "--dir"])
                .arg(data)
                .output()
                .expect("guoku demo runs");
            assert!(
                out.status.success(),
                "guoku demo --init-only: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Backend::Postgres(pg) => {
            let options = DemoOptions {
                dir: data.to_owned(),
                fresh: true,
                suite: Suite::Sm,
                postgres: Some(pg.clone()),
            };
            let demo = Demo::open(&options, Arc::new(OffsetDateTime::now_utc))
                .await
                .expect("the demo province is made");
            drop(demo);
        }
    }
}

/// What every party's configuration shares in a run.
#[derive(Clone, Copy)]
struct Run<'a> {
    backend: &'a Backend,
    data: &'a Path,
    proxy: &'a FaultProxy,
    clearing_every_secs: u64,
}

/// Rewrites `org`'s node.toml: its own free ports, every running peer through the proxy,
/// quick clearing rounds and retries, an API token for its maker, the run's store.
fn configure(
    run: &Run<'_>,
    org: &str,
    role: &str,
    (exchange, api): (SocketAddr, SocketAddr),
    token: &str,
) {
    let Run {
        backend,
        data,
        proxy,
        clearing_every_secs,
    } = *run;
    let dir = data.join(org);
    let path = dir.join("node.toml");
    let mut config = NodeConfig::load(&path).expect("the demo's node.toml loads");
    assert_eq!(config.role, role);
    config.exchange_listen = exchange;
    config.api_listen = api;
    for peer in &mut config.peers {
        if let Some(addr) = proxy.addr(&peer.org_code) {
            peer.addr = addr;
        }
    }
    if role == "bank" {
        config.clearing_every_secs = clearing_every_secs;
    }
    config.status_every_secs = 2;
    config.backoff_secs = [1, 2];
    if let Backend::Postgres(pg) = backend {
        config.postgres = Some(pg.url.clone());
        config.postgres_schema = Some(Backend::schema(pg, org));
    }
    let tokens = dir.join("api-tokens.toml");
    let mut file = String::new();
    for post in ["maker", "checker", "signer"] {
        let hash: String = guoku_node::api::token_hash(&format!("{token}-{post}"))
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        file.push_str(&format!(
            "[[token]]\nlogin = \"{org}-{post}\"\npost = \"{post}\"\nsha256 = \"{hash}\"\n"
        ));
    }
    std::fs::write(&tokens, file).expect("the tokens file is written");
    config.api_tokens = Some(tokens);
    std::fs::write(&path, config.to_toml()).expect("node.toml is written");
}

/// A loopback port free right now.
fn free_port() -> SocketAddr {
    std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("a free port")
}

/// The seed of this run: `GUOKU_FAULT_SEED`, else a random one.
fn fault_seed() -> u64 {
    match std::env::var("GUOKU_FAULT_SEED") {
        Ok(text) => text
            .trim()
            .parse()
            .expect("GUOKU_FAULT_SEED is a whole number"),
        Err(_) => rand::random(),
    }
}

/// Today's business year and month (China Standard Time), as the nodes reckon them.
fn business_date_now() -> (i32, u8) {
    let offset = UtcOffset::from_hms(8, 0, 0).expect("UTC+8");
    let now = OffsetDateTime::now_utc().to_offset(offset);
    (now.year(), u8::from(now.month()))
}

// ----- PostgreSQL --------------------------------------------------------------------------

/// PostgreSQL for a run: a unique schema prefix; `None` (said loudly) when no server
/// answers, which fails under `CI=true`.
async fn postgres() -> Option<DemoPostgres> {
    let url = std::env::var("GUOKU_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let reachable = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_postgres::connect(&url, tokio_postgres::NoTls),
    )
    .await
    .is_ok_and(|c| c.is_ok());
    if !reachable {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
        assert!(!ci, "CI=true and PostgreSQL at {url} does not answer");
        eprintln!("SKIPPED: PostgreSQL at {url} does not answer");
        return None;
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .subsec_nanos();
    Some(DemoPostgres {
        url,
        schema_prefix: format!("t_mp_{}_{nanos}_", std::process::id()),
    })
}

/// Drops a run's schemas when it ends, failed or not.
struct DropSchemas(DemoPostgres);

impl Drop for DropSchemas {
    fn drop(&mut self) {
        let pg = self.0.clone();
        // Drop runs inside the test's runtime: a thread with its own.
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            rt.block_on(async {
                let Ok((client, conn)) =
                    tokio_postgres::connect(&pg.url, tokio_postgres::NoTls).await
                else {
                    return;
                };
                tokio::spawn(conn);
                let Ok(rows) = client
                    .query(
                        "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1)",
                        &[&pg.schema_prefix],
                    )
                    .await
                else {
                    return;
                };
                for row in rows {
                    let name: String = row.get(0);
                    let _ = client
                        .batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                        .await;
                }
            });
        });
        let _ = done.join();
    }
}

// ----- HTTP --------------------------------------------------------------------------------

/// An API answer.
struct Reply {
    status: u16,
    headers: hyper::HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }
}

fn text(value: &Value, field: &str) -> String {
    value[field]
        .as_str()
        .unwrap_or_else(|| panic!("no text {field} in {value}"))
        .to_owned()
}

/// A GET; `None` when the process does not answer (yet).
async fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> Option<Reply> {
    let mut request = hyper::Request::get(path).header("host", addr.to_string());
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let request = request.body(Full::new(Bytes::new())).expect("a request");
    call(addr, request).await.ok()
}

/// A POST of JSON with a bearer token and an idempotency key; the API must answer.
async fn post(addr: SocketAddr, path: &str, token: &str, key: &str, body: &Value) -> Reply {
    let request = hyper::Request::post(path)
        .header("host", addr.to_string())
        .header("authorization", format!("Bearer {token}"))
        .header("idempotency-key", key)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("a request");
    call(addr, request)
        .await
        .unwrap_or_else(|e| panic!("POST {path} to {addr}: {e}"))
}

async fn call(addr: SocketAddr, request: hyper::Request<Full<Bytes>>) -> Result<Reply, String> {
    let exchange = async {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| e.to_string())?;
        let driver = tokio::spawn(connection);
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes()
            .to_vec();
        driver.abort();
        Ok(Reply {
            status,
            headers,
            body,
        })
    };
    tokio::time::timeout(HTTP_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("no answer within {HTTP_TIMEOUT:?}"))?
}
