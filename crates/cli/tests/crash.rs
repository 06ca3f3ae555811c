//! Crash safety: the parties killed with SIGKILL at random moments under payment load.
//!
//! Finance, PBOC and ICBC (finance's direct-payment bank) each run as their own
//! `guoku serve` process, on the stores of a fresh demo province (SQLite, then PostgreSQL).
//! Clients make direct payments through finance's API — maker, checker and signer, each
//! POST with its own `Idempotency-Key` — while the test, [`CYCLES`] times, waits a random
//! moment, picks a party at random (each party once in the first three cycles), kills it
//! with SIGKILL, starts it again with the same configuration and waits until it answers
//! `/healthz`. A request the killed process did not answer is sent again with the same key
//! (and, if the dead process's lease still holds the key, again when the `Retry-After` it
//! is told has passed). A payment is acknowledged once its signing step was answered 201.
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
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use guoku_node::demo::province;
use guoku_store::drafts::{DraftFilter, DraftState};
use guoku_voucher::VoucherKey;
use procs::{
    Backend, Cluster, DIRECT_PAYMENTS, DropSchemas, FINANCE, Figures, PARTIES, POLL, Payment,
    Reply, Run, business_date_now, call, check_stores, configure, free_port, init_demo,
    payment_request, post_request, postgres, seed_from_env, tenants, text, voucher_key,
    voucher_path, wait_for, wanted,
};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use serde_json::json;
use tokio::task::JoinHandle;

/// Kill-and-restart cycles per backend.
const CYCLES: usize = 12;
/// Clients making payments at the same time (each one payment after another).
const CLIENTS: u64 = 2;
/// How long after the last restart answered the next kill comes, in milliseconds.
const KILL_AFTER_MS: std::ops::RangeInclusive<u64> = 200..=2_500;
/// How long one request may stay unanswered, retried, before the test fails: longer
/// than the API's idempotency lease (5 minutes), which a request the killed process was
/// running holds until it ends.
const REQUEST_DEADLINE: Duration = Duration::from_secs(330);
/// How long the payments may take to be receipted, cleared and settled after the last
/// cycle.
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
    let _schemas = DropSchemas(pg.clone());
    crash_cycles(Backend::Postgres(pg)).await;
}

// ----- the scenario ----------------------------------------------------------------------

async fn crash_cycles(backend: Backend) {
    let seed = seed_from_env("GUOKU_CRASH_SEED");
    let name = backend.name();
    eprintln!("crash ({name}): seed {seed} (replay: GUOKU_CRASH_SEED={seed})");
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().expect("a temporary directory");
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
    let last = wait_for(
        &mut cluster,
        &tokens,
        &wanted,
        (settling, SETTLE_DEADLINE),
        &|| format!("client {tally:?}"),
        |p| p.settled(wanted.len(), total_fen),
    )
    .await;
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
         restart {slowest:?}; {} payments ({total_fen} fen) acknowledged and settled \
         {settle_took:?} after the last cycle; client {tally:?}; {last:?}; \
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
    /// (409 `idempotency_key_in_use`): sent again after `Retry-After`.
    in_use: AtomicU64,
    /// Seconds spent waiting for such keys.
    in_use_waited_secs: AtomicU64,
    /// Answers 503 (the store unavailable for a moment): sent again.
    unavailable: AtomicU64,
}

/// One of finance's API clients: its maker, checker and signer, one payment at a time.
struct Client {
    id: u64,
    seed: u64,
    addr: SocketAddr,
    maker: String,
    checker: String,
    signer: String,
    tally: Arc<Tally>,
}

impl Client {
    /// Pays until `stop`; returns the payments acknowledged.
    async fn run(self, mut rng: StdRng, month: u8, stop: Arc<AtomicBool>) -> Vec<Payment> {
        let mut payments = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let n = usize::try_from(self.id).expect("a small id") * 100_000 + payments.len();
            payments.push(self.pay(&mut rng, n, month).await);
            self.tally.acknowledged.fetch_add(1, Ordering::Relaxed);
        }
        payments
    }

    /// Direct payment number `n`, made, checked and signed; every request sent until it
    /// is answered.
    async fn pay(&self, rng: &mut StdRng, n: usize, month: u8) -> Payment {
        let (division, amount, body) = payment_request(rng, n, month);
        let key = format!("crash-{}-{n}", self.seed);
        let reply = self.send(DIRECT_PAYMENTS, &self.maker, &key, &body).await;
        assert_eq!(reply.status, 201, "payment {key}: {}", reply.text());
        let view = reply.json()["draft"].clone();
        let path = voucher_path(&view);
        let voucher = voucher_key(&view);
        assert_eq!(voucher.vt_code, "5201");
        assert_eq!(voucher.adm_div_code, division);
        let mut signed = None;
        for (step, token, status) in [("check", &self.checker, 200), ("sign", &self.signer, 201)] {
            let reply = self
                .send(
                    &format!("{path}/{step}"),
                    token,
                    &format!("{key}-{step}"),
                    &json!({}),
                )
                .await;
            assert_eq!(
                reply.status,
                status,
                "payment {key}, {step}: {}",
                reply.text()
            );
            signed = Some(reply);
        }
        // The acknowledgement: the draft issued as this voucher.
        let signed = signed.expect("the signing step was answered").json();
        assert_eq!(
            text(&signed["draft"], "state"),
            "issued",
            "payment {key}: {signed}"
        );
        assert_eq!(voucher_key(&signed["draft"]), voucher, "payment {key}");
        Payment {
            key,
            body,
            voucher,
            amount,
        }
    }

    /// POSTs `body` with `key` until the API answers something else than "not now".
    async fn send(&self, path: &str, token: &str, key: &str, body: &serde_json::Value) -> Reply {
        let started = Instant::now();
        loop {
            let wait = match call(self.addr, post_request(self.addr, path, token, key, body)).await
            {
                Err(_) => {
                    self.tally.unanswered.fetch_add(1, Ordering::Relaxed);
                    POLL
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
                    Duration::from_secs(secs)
                }
                Ok(reply) if reply.status == 503 => {
                    self.tally.unavailable.fetch_add(1, Ordering::Relaxed);
                    POLL
                }
                Ok(reply) => {
                    if reply.header("idempotent-replayed").as_deref() == Some("true") {
                        self.tally.replayed.fetch_add(1, Ordering::Relaxed);
                    }
                    return reply;
                }
            };
            assert!(
                started.elapsed() + wait < REQUEST_DEADLINE,
                "POST {path} ({key}) not answered within {REQUEST_DEADLINE:?}"
            );
            tokio::time::sleep(wait).await;
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
