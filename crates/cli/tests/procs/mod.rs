//! The demo's parties as `guoku serve` processes on loopback, for the tests that run them
//! as separate organisations do (`multiprocess.rs`, `crash.rs`).
//!
//! - a fresh demo province on SQLite or PostgreSQL ([`Backend`], [`init_demo`]) and each
//!   party's node.toml rewritten for a run ([`configure`]);
//! - the processes ([`Cluster`]): started, polled until `/healthz` answers, killed with
//!   SIGKILL and started again, stopped with SIGTERM, and killed when the cluster is dropped,
//!   with the run's seed and the end of each process's standard error printed if the test
//!   is failing;
//! - finance's API as a client sees it ([`payment_request`], [`Progress`]) and plain HTTP
//!   ([`get`], [`post`], [`call`]);
//! - the stores opened directly once the processes stopped ([`check_stores`], [`Figures`]).
// Each test file uses a different subset.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
use rand::RngExt;
use rand::rngs::StdRng;
use serde_json::{Value, json};
use time::{OffsetDateTime, UtcOffset};

pub const FINANCE: &str = "11430000006";
pub const PBOC: &str = "001430000001";
pub const ICBC: &str = "102551000015";
/// The parties run as processes: (organisation code, `--role`).
pub const PARTIES: [(&str, &str); 3] = [(FINANCE, "finance"), (PBOC, "pboc"), (ICBC, "bank")];

/// Finance's route for direct payments.
pub const DIRECT_PAYMENTS: &str = "/api/v1/direct-payments";
/// How long the processes may take to answer `/healthz` (they unlock their keys first).
pub const READY_DEADLINE: Duration = Duration::from_secs(60);
/// How long a process may take to stop after SIGTERM.
pub const STOP_DEADLINE: Duration = Duration::from_secs(20);
/// How long a process may take to be gone after SIGKILL.
pub const KILL_DEADLINE: Duration = Duration::from_secs(10);
/// How often a condition is polled.
pub const POLL: Duration = Duration::from_millis(300);
/// Longest wait for one API answer.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// Lines of each process's standard error printed on failure.
pub const TAIL_LINES: usize = 40;

// ----- payments ------------------------------------------------------------------------------

/// A payment made through the API.
pub struct Payment {
    pub key: String,
    pub body: Value,
    pub voucher: VoucherKey,
    pub amount: Amount,
}

/// The payments' voucher numbers, and what they add up to in fen.
pub fn wanted(payments: &[Payment]) -> (BTreeSet<String>, i64) {
    let nos = payments
        .iter()
        .map(|p| p.voucher.voucher_no.clone())
        .collect();
    (nos, payments.iter().map(|p| p.amount.fen()).sum())
}

/// The request of direct payment number `n`: a unit, an amount and a payee drawn from
/// `rng`. Returns the unit's division, the amount and the JSON body.
pub fn payment_request(rng: &mut StdRng, n: usize, month: u8) -> (&'static str, Amount, Value) {
    let units = province().units;
    let unit = &units[rng.random_range(0..units.len())];
    let amount = Amount::from_fen(rng.random_range(100..=2_000_000)).expect("an amount");
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
    (unit.division, amount, body)
}

/// The API path of the voucher a draft view names (its steps are `{path}/check`, …).
pub fn voucher_path(view: &Value) -> String {
    format!(
        "/api/v1/vouchers/{}/{}/{}/{}",
        text(view, "adm_div"),
        text(view, "year"),
        text(view, "vt_code"),
        text(view, "voucher_no")
    )
}

/// The voucher key a draft view names.
pub fn voucher_key(view: &Value) -> VoucherKey {
    VoucherKey {
        adm_div_code: text(view, "adm_div"),
        st_year: text(view, "year"),
        vt_code: text(view, "vt_code"),
        voucher_no: text(view, "voucher_no"),
    }
}

/// Polls the processes until `done` holds of their progress; fails `within` after
/// `started`, saying how far they got (and `detail()`).
pub async fn wait_for(
    cluster: &mut Cluster,
    tokens: &BTreeMap<&str, String>,
    wanted: &BTreeSet<String>,
    (started, within): (Instant, Duration),
    detail: &dyn Fn() -> String,
    done: impl Fn(&Progress) -> bool,
) -> Progress {
    match poll_until(cluster, tokens, wanted, (started, within), done).await {
        Ok(progress) => progress,
        Err(progress) => panic!(
            "not settled after {within:?} (seed {}): {progress:?} of {} payments; {}",
            cluster.seed,
            wanted.len(),
            detail()
        ),
    }
}

/// Polls the processes until `done` holds of their progress (`Ok`), or until `within`
/// after `started` has passed (`Err`, with how far they got).
pub async fn poll_until(
    cluster: &mut Cluster,
    tokens: &BTreeMap<&str, String>,
    wanted: &BTreeSet<String>,
    (started, within): (Instant, Duration),
    done: impl Fn(&Progress) -> bool,
) -> Result<Progress, Progress> {
    loop {
        cluster.check_running();
        let progress = Progress::read(cluster, tokens, wanted).await;
        if done(&progress) {
            return Ok(progress);
        }
        if started.elapsed() >= within {
            return Err(progress);
        }
        tokio::time::sleep(POLL).await;
    }
}

// ----- the stores, read directly after the processes stopped ------------------------------

pub async fn check_stores(backend: &Backend, data: &Path, payments: &[Payment], total_fen: i64) {
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
pub async fn all_legs(store: &Store, vt_code: &str, leg: Leg) -> Vec<VoucherRecord> {
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
pub fn clearing_details(record: &VoucherRecord) -> (Vec<String>, i64) {
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
pub struct Figures {
    /// Finance: plan quota consumed (debits of the monthly plans).
    pub finance_plan_consumed: i128,
    pub finance_plan_used: i128,
    /// PBOC: clearing quota left, and what it cleared.
    pub pboc_quota_remaining: i128,
    pub pboc_cleared: i128,
    pub pboc_tsa: i128,
    /// PBOC: ICBC's clearing account.
    pub pboc_icbc_clearing: i128,
    /// ICBC's money books.
    pub bank_payees: i128,
    pub bank_advance: i128,
    pub bank_receivable: i128,
    pub bank_pboc_reserve: i128,
}

impl Figures {
    pub async fn read(backend: &Backend, data: &Path, tenants: &[Tenant]) -> Figures {
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

    pub fn minus(&self, before: &Figures) -> Figures {
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

    /// What every book must have moved by when payments of `total` fen were each paid
    /// and cleared once.
    pub fn moved_by(total: i128) -> Figures {
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

/// The tenants (every division, this business year) the payments touch.
pub fn tenants() -> Vec<Tenant> {
    let year = business_date_now().0;
    province()
        .divisions
        .iter()
        .map(|d| Tenant {
            adm_div: d.code.parse().expect("a division code"),
            year: year.to_string().parse().expect("a year"),
        })
        .collect()
}

// ----- progress, read from the running processes -----------------------------------------

/// What the processes say while the payments move.
#[derive(Debug, Default)]
pub struct Progress {
    /// Payments whose original is 12 (已收到对方回单) at finance.
    pub receipted: usize,
    /// What ICBC's receipted clearing requests (2301, status 12) add up to, in fen.
    pub cleared_fen: i64,
    /// Per process: outbox entries not yet taken, received vouchers not yet read.
    pub outbox: Vec<Option<u64>>,
    pub unread: Vec<Option<u64>>,
}

impl Progress {
    pub async fn read(
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

    /// Every payment receipted at finance and cleared, every outbox empty and every
    /// received voucher read.
    pub fn settled(&self, payments: usize, total_fen: i64) -> bool {
        self.receipted == payments
            && self.cleared_fen == total_fen
            && self.outbox.iter().all(|n| *n == Some(0))
            && self.unread.iter().all(|n| *n == Some(0))
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
pub struct Node {
    pub org: &'static str,
    role: String,
    config: PathBuf,
    pub api: SocketAddr,
    stderr: PathBuf,
    stdout: PathBuf,
    child: Option<Child>,
    /// How often it was killed with SIGKILL and started again.
    pub restarts: u32,
}

/// The processes of a run: killed when dropped, with `failure_note` (the seed and how to
/// replay it) and their last log lines printed if the test is failing.
pub struct Cluster {
    pub seed: u64,
    failure_note: String,
    pub nodes: Vec<Node>,
}

impl Cluster {
    pub fn new(seed: u64, failure_note: String) -> Self {
        Self {
            seed,
            failure_note,
            nodes: Vec::new(),
        }
    }

    /// Starts `guoku serve --role role --config config` for `org`, its API at `api`.
    pub fn spawn(&mut self, org: &'static str, role: &str, config: &Path, api: SocketAddr) {
        let dir = config.parent().expect("the party's directory");
        let mut node = Node {
            org,
            role: role.to_owned(),
            config: config.to_owned(),
            api,
            stderr: dir.join("serve.stderr"),
            stdout: dir.join("serve.stdout"),
            child: None,
            restarts: 0,
        };
        node.child = Some(start(&node, false));
        self.nodes.push(node);
    }

    fn node_mut(&mut self, org: &str) -> &mut Node {
        self.nodes
            .iter_mut()
            .find(|n| n.org == org)
            .expect("a party of the run")
    }

    pub fn api(&self, org: &str) -> SocketAddr {
        self.nodes
            .iter()
            .find(|n| n.org == org)
            .expect("a running party")
            .api
    }

    /// Kills `org`'s process with SIGKILL (`Child::kill`) and waits until it is gone.
    pub async fn kill(&mut self, org: &str) {
        let node = self.node_mut(org);
        let mut child = node.child.take().expect("the party is running");
        if let Ok(Some(status)) = child.try_wait() {
            panic!("guoku serve of {org} exited before it was killed: {status}");
        }
        child.kill().expect("SIGKILL is sent");
        let started = Instant::now();
        loop {
            if child.try_wait().expect("the child's status").is_some() {
                return;
            }
            assert!(
                started.elapsed() < KILL_DEADLINE,
                "{org} is still there {KILL_DEADLINE:?} after SIGKILL"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts `org`'s process again with the same configuration (its log goes on in the
    /// same files, after a line saying so).
    pub fn restart(&mut self, org: &str, why: &str) {
        let node = self.node_mut(org);
        assert!(node.child.is_none(), "{org} is still running");
        node.restarts += 1;
        let line = format!("----- test: {why}; started again -----\n");
        for path in [&node.stderr, &node.stdout] {
            std::fs::OpenOptions::new()
                .append(true)
                .open(path)
                .and_then(|mut f| f.write_all(line.as_bytes()))
                .expect("the log file is appended to");
        }
        node.child = Some(start(node, true));
    }

    /// Panics if a process has exited.
    pub fn check_running(&mut self) {
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
    pub async fn wait_ready(&mut self) {
        let orgs: Vec<&'static str> = self.nodes.iter().map(|n| n.org).collect();
        for org in orgs {
            self.wait_ready_one(org).await;
        }
    }

    /// Polls `org`'s `/healthz` until it answers 200; returns how long that took.
    pub async fn wait_ready_one(&mut self, org: &str) -> Duration {
        let started = Instant::now();
        let api = self.api(org);
        loop {
            self.check_running();
            let reply = get(api, "/healthz", None).await;
            if reply.is_some_and(|r| r.status == 200) {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < READY_DEADLINE,
                "{org} did not answer /healthz within {READY_DEADLINE:?}",
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// SIGTERM to every process, then waits for each to exit cleanly.
    pub async fn stop(&mut self) {
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

    pub fn tails(&self) -> String {
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

/// Starts `node`'s process, its output to its files (appended to when `again`).
fn start(node: &Node, again: bool) -> Child {
    let open = |path: &Path| {
        if again {
            std::fs::OpenOptions::new().append(true).open(path)
        } else {
            std::fs::File::create(path)
        }
        .expect("a log file")
    };
    Command::new(env!("CARGO_BIN_EXE_guoku"))
        .args(["serve", "--role", &node.role, "--config"])
        .arg(&node.config)
        .env("GUOKU_KEY_PIN", DEMO_PIN)
        .env("GUOKU_LOG", "info,guoku_node::api::request_id=warn")
        .stdin(Stdio::null())
        .stdout(open(&node.stdout))
        .stderr(open(&node.stderr))
        .spawn()
        .expect("guoku serve starts")
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}\n{}", self.failure_note, self.tails());
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
pub enum Backend {
    Sqlite,
    Postgres(DemoPostgres),
}

impl Backend {
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    fn schema(pg: &DemoPostgres, org: &str) -> String {
        format!("{}{}", pg.schema_prefix, org.to_ascii_lowercase())
    }

    /// The store of party `org`, as its process opens it.
    pub async fn open(&self, data: &Path, org: &str) -> Store {
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
pub async fn init_demo(backend: &Backend, data: &Path) {
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
pub struct Run<'a> {
    pub backend: &'a Backend,
    pub data: &'a Path,
    /// Where a party reaches each running peer (by organisation code).
    pub peers: &'a BTreeMap<String, SocketAddr>,
    pub clearing_every_secs: u64,
}

/// Rewrites `org`'s node.toml: its own free ports, every running peer at its address in
/// `run.peers`, quick clearing rounds and retries, an API token for its maker, the run's
/// store.
pub fn configure(
    run: &Run<'_>,
    org: &str,
    role: &str,
    (exchange, api): (SocketAddr, SocketAddr),
    token: &str,
) {
    let Run {
        backend,
        data,
        peers,
        clearing_every_secs,
    } = *run;
    let dir = data.join(org);
    let path = dir.join("node.toml");
    let mut config = NodeConfig::load(&path).expect("the demo's node.toml loads");
    assert_eq!(config.role, role);
    config.exchange_listen = exchange;
    config.api_listen = api;
    for peer in &mut config.peers {
        if let Some(addr) = peers.get(&peer.org_code) {
            peer.addr = *addr;
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

/// A loopback port free right now, for a process to listen on later, and handed out once
/// per test process. It is taken below the kernel's ephemeral range
/// (`/proc/sys/net/ipv4/ip_local_port_range`): a port from `bind(0)`, closed until the
/// node binds it, can meanwhile be given to any connection a test's processes open (a node
/// once failed to start with "Address already in use" that way).
pub fn free_port() -> SocketAddr {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static TAKEN: AtomicUsize = AtomicUsize::new(0);
    const FIRST: u16 = 10_000;
    let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    let span = usize::from(ephemeral.saturating_sub(FIRST));
    if span == 0 {
        return std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .expect("a free port");
    }
    // Test processes started one after another begin at different places.
    let start = std::process::id() as usize % span;
    for _ in 0..span {
        let offset = (start + TAKEN.fetch_add(1, Ordering::Relaxed)) % span;
        let port = FIRST + u16::try_from(offset).expect("the span fits a port");
        if let Ok(listener) = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)) {
            return listener
                .local_addr()
                .expect("a bound listener has an address");
        }
    }
    panic!("no free loopback port from {FIRST} to {ephemeral}");
}

/// The seed of this run: the environment variable `var`, else a random one.
pub fn seed_from_env(var: &str) -> u64 {
    match std::env::var(var) {
        Ok(text) => text
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{var} is a whole number")),
        Err(_) => rand::random(),
    }
}

/// Today's business year and month (China Standard Time), as the nodes reckon them.
pub fn business_date_now() -> (i32, u8) {
    let offset = UtcOffset::from_hms(8, 0, 0).expect("UTC+8");
    let now = OffsetDateTime::now_utc().to_offset(offset);
    (now.year(), u8::from(now.month()))
}

// ----- PostgreSQL --------------------------------------------------------------------------

/// PostgreSQL for a run: a unique schema prefix starting with `prefix`; `None` (said
/// loudly) when no server answers, which fails under `CI=true`.
pub async fn postgres(prefix: &str) -> Option<DemoPostgres> {
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
        schema_prefix: format!("{prefix}{}_{nanos}_", std::process::id()),
    })
}

/// Drops a run's schemas when it ends, failed or not.
pub struct DropSchemas(pub DemoPostgres);

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
pub struct Reply {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }
}

pub fn text(value: &Value, field: &str) -> String {
    value[field]
        .as_str()
        .unwrap_or_else(|| panic!("no text {field} in {value}"))
        .to_owned()
}

/// A GET; `None` when the process does not answer (yet).
pub async fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> Option<Reply> {
    let mut request = hyper::Request::get(path).header("host", addr.to_string());
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let request = request.body(Full::new(Bytes::new())).expect("a request");
    call(addr, request).await.ok()
}

/// A POST of JSON with a bearer token and an idempotency key.
pub fn post_request(
    addr: SocketAddr,
    path: &str,
    token: &str,
    key: &str,
    body: &Value,
) -> hyper::Request<Full<Bytes>> {
    hyper::Request::post(path)
        .header("host", addr.to_string())
        .header("authorization", format!("Bearer {token}"))
        .header("idempotency-key", key)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("a request")
}

/// A POST of JSON with a bearer token and an idempotency key; the API must answer.
pub async fn post(addr: SocketAddr, path: &str, token: &str, key: &str, body: &Value) -> Reply {
    call(addr, post_request(addr, path, token, key, body))
        .await
        .unwrap_or_else(|e| panic!("POST {path} to {addr}: {e}"))
}

/// Sends `request` on a connection of its own; an error when nothing (whole) came back.
pub async fn call(addr: SocketAddr, request: hyper::Request<Full<Bytes>>) -> Result<Reply, String> {
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
