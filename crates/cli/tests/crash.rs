//! Crash safety: the parties killed with SIGKILL at random moments under payment load.
//!
//! Finance, PBOC and ICBC (finance's direct-payment bank) each run as their own
//! `guoku serve` process, on the stores of a fresh demo province (SQLite, then PostgreSQL).
//! Clients make direct payments through finance's API — maker, checker and signer, each
//! POST with its own `Idempotency-Key` — while the test, [`CYCLES`] times, waits a random
//! moment, picks a party at random (each party once in the first three cycles), kills it
//! with SIGKILL, starts it again with the same configuration and waits until it answers
//! `/healthz`. A request the killed process did not answer is sent again with the same key;
//! if the key is still held by the request the killed process was running (409
//! `idempotency_key_in_use`), the payment is sent again when the `Retry-After` it is told
//! has passed, and the client goes on with other payments meanwhile. A payment is
//! acknowledged once its signing step was answered 201.
//! Each party signs a tree head of its audit log every [`AUDIT_HEAD_EVERY_SECS`], so heads
//! are signed while the kills come too.
//!
//! Then everything settles (every payment receipted at finance and cleared, every outbox
//! empty), the processes are stopped and their stores opened directly: every acknowledged
//! payment is there, and once — one draft issued per payment and nothing else, paid once at
//! the bank, cleared once by a receipted clearing request — finance's plans, PBOC's clearing
//! quota and the money moved by exactly the payments' sum, the zero-balance accounts are at
//! zero, every ledger invariant holds ([`guoku_store::Store::load_state`]), and each party's
//! audit log verifies (`guoku audit verify`).
//!
//! The random choices (payments, kill moments, victims) come from a seed printed at the
//! start; `GUOKU_CRASH_SEED=<seed>` replays them (the processes' timing is the machine's).
//! On failure the seed and the end of each process's standard error are printed; the
//! processes are killed if the test panics. With `CI=true` the PostgreSQL run must find
//! its server.

mod procs;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use guoku_node::demo::province;
use guoku_node::serve::NodeConfig;
use guoku_store::drafts::{DraftFilter, DraftState};
use guoku_voucher::VoucherKey;
use guoku_voucher::lifecycle::{Exchange, Leg};
use procs::{
    Backend, Cluster, DIRECT_PAYMENTS, DropSchemas, FINANCE, Figures, ICBC, PARTIES, POLL, Payment,
    Reply, Run, business_date_now, call, check_stores, configure, free_port, init_demo,
    payment_request, poll_until, post_request, postgres, seed_from_env, tenants, text, voucher_key,
    voucher_path, wanted,
};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use serde_json::json;
use tokio::task::JoinHandle;

/// Kill-and-restart cycles per backend.
const CYCLES: usize = 12;
/// Clients making payments at the same time (each drives one payment at a time).
const CLIENTS: u64 = 2;
/// How long after the last restart answered the next kill comes, in milliseconds.
const KILL_AFTER_MS: std::ops::RangeInclusive<u64> = 200..=2_500;
/// The idempotency lease the parties run with: a request the killed process was running
/// holds its key this long, then a retry takes it over.
const IDEMPOTENCY_LEASE_SECS: u64 = 3;
/// How long one payment may take, its requests sent again, before the test fails: well
/// over the lease, the restarts and the settling.
const REQUEST_DEADLINE: Duration = Duration::from_secs(60);
/// Seconds between the signed tree heads of each party's audit log.
const AUDIT_HEAD_EVERY_SECS: u64 = 2;
/// How long the payments may take to be receipted, cleared and settled after the last
/// one was acknowledged.
const SETTLE_DEADLINE: Duration = Duration::from_secs(120);

/// The two runs share a 2-core machine: one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledged_payment_lost_or_doubled_across_sigkills_on_sqlite() {
    let _one = ONE_AT_A_TIME.lock().await;
    crash_cycles(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledged_payment_lost_or_doubled_across_sigkills_on_postgres() {
    let Some(pg) = postgres("t_crash_").await else {
        return;
    };
    let _one = ONE_AT_A_TIME.lock().await;
    let _schemas = SchemasKeptIfFailing(Some(DropSchemas(pg.clone())));
    crash_cycles(Backend::Postgres(pg)).await;
}

// ----- the scenario ----------------------------------------------------------------------

async fn crash_cycles(backend: Backend) {
    let seed = seed_from_env("GUOKU_CRASH_SEED");
    let name = backend.name();
    eprintln!("crash ({name}): seed {seed} (replay: GUOKU_CRASH_SEED={seed})");
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = KeptIfFailing(Some(tempfile::tempdir().expect("a temporary directory")));
    let data = dir.path().join("guoku-data");
    init_demo(&backend, &data).await;

    // Free loopback ports for every process; the parties reach each other directly.
    let mut ports = BTreeMap::new();
    for (org, _) in PARTIES {
        ports.insert(org, (free_port(), free_port()));
    }
    let peers: BTreeMap<String, SocketAddr> = PARTIES
        .iter()
        .map(|(org, _)| ((*org).to_owned(), ports[org].0))
        .collect();
    let run = Run {
        backend: &backend,
        data: &data,
        peers: &peers,
        clearing_every_secs: rng.random_range(1..=2),
    };
    let mut tokens = BTreeMap::new();
    for (org, role) in PARTIES {
        let token = format!("gk_crash_{org}_{seed}");
        configure(&run, org, role, ports[org], &token);
        sign_audit_heads_often(&data.join(org).join("node.toml"));
        tokens.insert(org, token);
    }
    let tenants = tenants();
    let before = Figures::read(&backend, &data, &tenants).await;

    let mut cluster = Cluster::new(
        seed,
        format!("crash ({name}) FAILED with seed {seed} (replay: GUOKU_CRASH_SEED={seed})"),
    );
    for (org, role) in PARTIES {
        cluster.spawn(org, role, &data.join(org).join("node.toml"), ports[org].1);
    }
    cluster.wait_ready().await;
    let ready = started.elapsed();

    // The clients pay until the cycles are over.
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let month = business_date_now().1;
    let clients: Vec<JoinHandle<Vec<Payment>>> = (0..CLIENTS)
        .map(|id| {
            let client = Client {
                id,
                seed,
                addr: ports[FINANCE].1,
                maker: format!("{}-maker", tokens[FINANCE]),
                checker: format!("{}-checker", tokens[FINANCE]),
                signer: format!("{}-signer", tokens[FINANCE]),
                tally: tally.clone(),
            };
            let rng = StdRng::seed_from_u64(seed.wrapping_add(id + 1));
            tokio::spawn(client.run(rng, month, stop.clone()))
        })
        .collect();

    // The cycles: a random moment, a random party, SIGKILL, the same party again.
    let cycles_started = Instant::now();
    let mut kills: BTreeMap<&str, usize> = BTreeMap::new();
    let mut restart_times = Vec::with_capacity(CYCLES);
    for (cycle, org) in victims(&mut rng).into_iter().enumerate() {
        let after = Duration::from_millis(rng.random_range(KILL_AFTER_MS));
        keep_running(&mut cluster, &clients, after).await;
        cluster.kill(org).await;
        *kills.entry(org).or_default() += 1;
        cluster.restart(org, &format!("cycle {cycle}: killed with SIGKILL"));
        let took = cluster.wait_ready_one(org).await;
        restart_times.push(took);
        eprintln!(
            "crash ({name}): cycle {cycle}: {org} killed {after:?} after the last restart, \
             answering again {took:?} later; {} payments acknowledged so far",
            tally.acknowledged.load(Ordering::Relaxed)
        );
    }
    let cycles_took = cycles_started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut payments = Vec::new();
    for client in clients {
        match client.await {
            Ok(made) => payments.extend(made),
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }

    let (wanted, total_fen) = wanted(&payments);
    assert!(!payments.is_empty(), "no payment was acknowledged");
    assert_eq!(
        wanted.len(),
        payments.len(),
        "every payment its own voucher"
    );
    // Then everything receipted, cleared and delivered.
    let settling = Instant::now();
    let settled = poll_until(
        &mut cluster,
        &tokens,
        &wanted,
        (settling, SETTLE_DEADLINE),
        |p| p.settled(wanted.len(), total_fen),
    )
    .await;
    let last = match settled {
        Ok(progress) => progress,
        Err(progress) => {
            // What became of the payments that did not end: read from the stores.
            cluster.stop().await;
            let stuck = stuck_payments(&backend, &data, &payments).await;
            panic!(
                "not settled {SETTLE_DEADLINE:?} after the last acknowledgement (seed {seed}): \
                 {progress:?} of {} payments; client {tally:?}\n{stuck}",
                payments.len()
            );
        }
    };
    let settle_took = settling.elapsed();
    cluster.stop().await;

    check_stores(&backend, &data, &payments, total_fen).await;
    check_drafts(&backend.open(&data, FINANCE).await, &payments).await;
    let after = Figures::read(&backend, &data, &tenants).await;
    let total = i128::from(total_fen);
    assert_eq!(
        after.minus(&before),
        Figures::moved_by(total),
        "each book moved by exactly the payments' sum ({total} fen), once"
    );
    let slowest = restart_times.iter().max().copied().unwrap_or_default();
    eprintln!(
        "crash ({name}): {CYCLES} cycles (kills {kills:?}) in {cycles_took:?}, slowest \
         restart {slowest:?}; {} payments ({total_fen} fen) acknowledged, settled \
         {settle_took:?} after the last acknowledgement; client {tally:?}; {last:?}; \
         {:?} in all ({ready:?} to start)",
        payments.len(),
        started.elapsed()
    );

    // The kills did happen, and hit the clients: the run proved something.
    for (org, _) in PARTIES {
        assert!(
            kills.get(org).is_some_and(|n| *n > 0),
            "{org} was never killed"
        );
    }
    assert!(
        tally.unanswered.load(Ordering::Relaxed) > 0,
        "no request went unanswered: no kill hit the clients ({tally:?})"
    );

    for (org, _) in PARTIES {
        let config = data.join(org).join("node.toml");
        assert!(
            audit_verifies(&config),
            "{org}: the audit log does not verify after {} SIGKILLs",
            kills.get(org).copied().unwrap_or(0)
        );
    }
}

/// Makes a party sign a tree head of its audit log every [`AUDIT_HEAD_EVERY_SECS`], so
/// heads are signed while the kills come and `guoku audit verify` has many to check, and
/// hold idempotency keys for [`IDEMPOTENCY_LEASE_SECS`] only.
fn sign_audit_heads_often(path: &Path) {
    let mut config = NodeConfig::load(path).expect("node.toml loads");
    config.audit_head_every_secs = AUDIT_HEAD_EVERY_SECS;
    config.idempotency_lease_secs = IDEMPOTENCY_LEASE_SECS;
    std::fs::write(path, config.to_toml()).expect("node.toml is written");
}

/// The party killed in each cycle: every party once in the first three cycles (in a
/// random order), then any.
fn victims(rng: &mut StdRng) -> Vec<&'static str> {
    let mut first: Vec<&'static str> = PARTIES.iter().map(|(org, _)| *org).collect();
    first.shuffle(rng);
    let mut all = first;
    while all.len() < CYCLES {
        all.push(PARTIES[rng.random_range(0..PARTIES.len())].0);
    }
    all.truncate(CYCLES);
    all
}

/// Lets the processes and the clients run for `time`, failing as soon as a process
/// exits or a client panics.
async fn keep_running(cluster: &mut Cluster, clients: &[JoinHandle<Vec<Payment>>], time: Duration) {
    let until = Instant::now() + time;
    loop {
        cluster.check_running();
        assert!(
            clients.iter().all(|c| !c.is_finished()),
            "a client stopped before the cycles were over"
        );
        let now = Instant::now();
        if now >= until {
            return;
        }
        tokio::time::sleep((until - now).min(Duration::from_millis(50))).await;
    }
}

/// A run's directory, left in place (and named) if the test fails, for a look at the
/// stores and the logs.
struct KeptIfFailing(Option<tempfile::TempDir>);

impl KeptIfFailing {
    fn path(&self) -> &Path {
        self.0.as_ref().expect("the directory").path()
    }
}

impl Drop for KeptIfFailing {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(dir) = self.0.take()
        {
            eprintln!(
                "crash: the run's directory is kept: {}",
                dir.keep().display()
            );
        }
    }
}

/// A run's PostgreSQL schemas: dropped at the end, but left in place (and named) if the
/// test fails.
struct SchemasKeptIfFailing(Option<DropSchemas>);

impl Drop for SchemasKeptIfFailing {
    fn drop(&mut self) {
        if std::thread::panicking()
            && let Some(schemas) = self.0.take()
        {
            eprintln!(
                "crash: the run's schemas are kept: {}* at {}",
                schemas.0.schema_prefix, schemas.0.url
            );
            std::mem::forget(schemas);
        }
    }
}

// ----- the clients -------------------------------------------------------------------------

/// What the clients met.
#[derive(Debug, Default)]
struct Tally {
    /// Payments whose signing step was answered 201.
    acknowledged: AtomicU64,
    /// Requests that got no answer (the process was killed or not up yet): sent again.
    unanswered: AtomicU64,
    /// Requests answered from their key's record (the killed process had done them).
    replayed: AtomicU64,
    /// Requests told their key is still held by a request the killed process was running
    /// (409 `idempotency_key_in_use`): the payment waits for `Retry-After`, the client
    /// goes on with others meanwhile.
    in_use: AtomicU64,
    /// Seconds payments waited for such keys.
    in_use_waited_secs: AtomicU64,
    /// Answers 503 (the store unavailable for a moment): sent again.
    unavailable: AtomicU64,
}

/// One of finance's API clients: its maker, checker and signer. It drives one payment at a
/// time; a payment whose key is held by a request a killed process was running waits for
/// its `Retry-After` while the client goes on with others.
struct Client {
    id: u64,
    seed: u64,
    addr: SocketAddr,
    maker: String,
    checker: String,
    signer: String,
    tally: Arc<Tally>,
}

/// The three steps of a payment, each a POST with its own key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Make,
    Check,
    Sign,
}

/// A payment on its way.
struct InFlight {
    key: String,
    division: &'static str,
    amount: guoku_domain::Amount,
    body: serde_json::Value,
    step: Step,
    /// The voucher and its API path, once made.
    made: Option<(VoucherKey, String)>,
    /// When its first request was sent.
    since: Instant,
    /// When it may be sent again (a held key).
    ready_at: Instant,
}

/// What one request did for a payment.
enum Sent {
    /// Answered: the payment is a step further.
    Answered(Reply),
    /// Its key is held by a request a killed process was running: again after this long.
    Held(Duration),
}

impl Client {
    /// Pays until `stop`, then finishes the payments waiting for their keys; returns the
    /// payments acknowledged.
    async fn run(self, mut rng: StdRng, month: u8, stop: Arc<AtomicBool>) -> Vec<Payment> {
        let mut payments = Vec::new();
        let mut waiting: Vec<InFlight> = Vec::new();
        let mut made = 0;
        loop {
            let now = Instant::now();
            let next = if let Some(i) = waiting.iter().position(|p| p.ready_at <= now) {
                waiting.swap_remove(i)
            } else if !stop.load(Ordering::Relaxed) {
                let n = usize::try_from(self.id).expect("a small id") * 100_000 + made;
                made += 1;
                let (division, amount, body) = payment_request(&mut rng, n, month);
                InFlight {
                    key: format!("crash-{}-{n}", self.seed),
                    division,
                    amount,
                    body,
                    step: Step::Make,
                    made: None,
                    since: now,
                    ready_at: now,
                }
            } else if let Some(soonest) = waiting.iter().map(|p| p.ready_at).min() {
                tokio::time::sleep(soonest.saturating_duration_since(now).min(POLL)).await;
                continue;
            } else {
                return payments;
            };
            if let Some(payment) = self.drive(next, &mut waiting).await {
                payments.push(payment);
                self.tally.acknowledged.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Takes `p` through its remaining steps: the payment once its signing step is
    /// answered, or `None` when it has to wait for a held key (it joins `waiting`).
    async fn drive(&self, mut p: InFlight, waiting: &mut Vec<InFlight>) -> Option<Payment> {
        loop {
            let (path, token, key, body, status) = match (&p.step, &p.made) {
                (Step::Make, _) => (
                    DIRECT_PAYMENTS.to_owned(),
                    &self.maker,
                    p.key.clone(),
                    p.body.clone(),
                    201,
                ),
                (Step::Check, Some((_, path))) => (
                    format!("{path}/check"),
                    &self.checker,
                    format!("{}-check", p.key),
                    json!({}),
                    200,
                ),
                (Step::Sign, Some((_, path))) => (
                    format!("{path}/sign"),
                    &self.signer,
                    format!("{}-sign", p.key),
                    json!({}),
                    201,
                ),
                (step, None) => panic!("payment {}: {step:?} before it was made", p.key),
            };
            let reply = match self.send(&path, token, &key, &body, p.since).await {
                Sent::Answered(reply) => reply,
                Sent::Held(wait) => {
                    p.ready_at = Instant::now() + wait;
                    waiting.push(p);
                    return None;
                }
            };
            assert_eq!(
                reply.status,
                status,
                "payment {}, {:?}: {}",
                p.key,
                p.step,
                reply.text()
            );
            let view = reply.json()["draft"].clone();
            match p.step {
                Step::Make => {
                    let voucher = voucher_key(&view);
                    assert_eq!(voucher.vt_code, "5201");
                    assert_eq!(voucher.adm_div_code, p.division);
                    p.made = Some((voucher, voucher_path(&view)));
                    p.step = Step::Check;
                }
                Step::Check => p.step = Step::Sign,
                Step::Sign => {
                    // The acknowledgement: the draft issued as this voucher.
                    let (voucher, _) = p.made.expect("made before it was signed");
                    assert_eq!(text(&view, "state"), "issued", "payment {}: {view}", p.key);
                    assert_eq!(voucher_key(&view), voucher, "payment {}", p.key);
                    return Some(Payment {
                        key: p.key,
                        body: p.body,
                        voucher,
                        amount: p.amount,
                    });
                }
            }
        }
    }

    /// POSTs `body` with `key` until the API answers, or says the key is held.
    async fn send(
        &self,
        path: &str,
        token: &str,
        key: &str,
        body: &serde_json::Value,
        since: Instant,
    ) -> Sent {
        loop {
            match call(self.addr, post_request(self.addr, path, token, key, body)).await {
                Err(_) => {
                    self.tally.unanswered.fetch_add(1, Ordering::Relaxed);
                }
                Ok(reply)
                    if reply.status == 409 && reply.text().contains("idempotency_key_in_use") =>
                {
                    let secs: u64 = reply
                        .header("retry-after")
                        .and_then(|s| s.trim().parse().ok())
                        .unwrap_or(1);
                    self.tally.in_use.fetch_add(1, Ordering::Relaxed);
                    self.tally
                        .in_use_waited_secs
                        .fetch_add(secs, Ordering::Relaxed);
                    eprintln!(
                        "crash: POST {path} ({key}): the key is held by a request a killed \
                         process was running; again in {secs} s"
                    );
                    let wait = Duration::from_secs(secs);
                    assert!(
                        since.elapsed() + wait < REQUEST_DEADLINE,
                        "POST {path} ({key}): the payment would take over {REQUEST_DEADLINE:?}"
                    );
                    return Sent::Held(wait);
                }
                Ok(reply) if reply.status == 503 => {
                    self.tally.unavailable.fetch_add(1, Ordering::Relaxed);
                }
                Ok(reply) => {
                    if reply.header("idempotent-replayed").as_deref() == Some("true") {
                        self.tally.replayed.fetch_add(1, Ordering::Relaxed);
                    }
                    return Sent::Answered(reply);
                }
            }
            assert!(
                since.elapsed() + POLL < REQUEST_DEADLINE,
                "POST {path} ({key}): the payment took over {REQUEST_DEADLINE:?}"
            );
            tokio::time::sleep(POLL).await;
        }
    }
}

// ----- the final checks beyond the shared ones ---------------------------------------------

/// Finance made exactly one draft per acknowledged payment, each issued: a request sent
/// again after a kill made nothing twice.
async fn check_drafts(finance: &guoku_store::Store, payments: &[Payment]) {
    let within: Vec<_> = province()
        .divisions
        .iter()
        .map(|d| d.code.parse().expect("a division code"))
        .collect();
    let mut drafts = Vec::new();
    let mut after = 0;
    loop {
        let page = finance
            .drafts()
            .list(&DraftFilter {
                state: None,
                within: within.clone(),
                units: Vec::new(),
                after,
                limit: 100,
            })
            .await
            .expect("the drafts read");
        drafts.extend(page.items);
        match page.next {
            Some(next) => after = next,
            None => break,
        }
    }
    let wanted: BTreeSet<&VoucherKey> = payments.iter().map(|p| &p.voucher).collect();
    for d in &drafts {
        assert!(
            wanted.contains(&d.key),
            "finance: an unexpected draft {}",
            d.key
        );
        assert_eq!(d.state, DraftState::Issued, "finance: draft {}", d.key);
    }
    assert_eq!(
        drafts.len(),
        payments.len(),
        "finance holds one draft per payment"
    );
}

/// The payments whose original is not receipted (12) at finance, with each leg's record
/// and events at finance and at ICBC.
async fn stuck_payments(backend: &Backend, data: &Path, payments: &[Payment]) -> String {
    let finance = backend.open(data, FINANCE).await.library();
    let icbc = backend.open(data, ICBC).await.library();
    let mut out = String::new();
    for p in payments {
        let original = finance
            .status(&p.voucher, Leg::Original)
            .await
            .expect("finance's library reads");
        if original
            .as_ref()
            .is_some_and(|r| r.exchange == Exchange::ReceiptReceived)
        {
            continue;
        }
        let _ = writeln!(out, "----- payment {} ({}) -----", p.voucher, p.key);
        for (org, library) in [(FINANCE, &finance), (ICBC, &icbc)] {
            for leg in [Leg::Original, Leg::Receipt] {
                let record = library
                    .status(&p.voucher, leg)
                    .await
                    .expect("the library reads");
                let Some(r) = record else {
                    let _ = writeln!(out, "{org} {leg:?}: none");
                    continue;
                };
                let _ = writeln!(
                    out,
                    "{org} {leg:?}: {:?} {:?} {:?}, reason {:?}",
                    r.direction, r.exchange, r.processing, r.reason
                );
                for e in library
                    .events(&p.voucher, leg)
                    .await
                    .expect("the events read")
                {
                    let _ = writeln!(out, "    {e:?}");
                }
            }
        }
    }
    out
}

/// Whether `guoku audit verify --config config` finds the party's audit log intact: the
/// tree recomputed from the stored rows matches its signed tree heads (exit 0); exit 1 is
/// "tampered or inconsistent". Any other exit is an error of the command, not a verdict,
/// and fails the test.
fn audit_verifies(config: &Path) -> bool {
    let out = Command::new(env!("CARGO_BIN_EXE_guoku"))
        .args(["audit", "verify", "--config"])
        .arg(config)
        .output()
        .expect("guoku audit verify runs");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    match out.status.code() {
        Some(0) => true,
        Some(1) => {
            eprintln!("guoku audit verify --config {}: {said}", config.display());
            false
        }
        _ => panic!(
            "guoku audit verify --config {} could not verify ({}): {said}",
            config.display(),
            out.status
        ),
    }
}
