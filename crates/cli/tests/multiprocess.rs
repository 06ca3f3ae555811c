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
mod procs;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use fault_proxy::{FaultProxy, Plan, Tally};
use procs::{
    Backend, Cluster, DIRECT_PAYMENTS, DropSchemas, FINANCE, Figures, PARTIES, Payment, Run,
    business_date_now, check_stores, configure, free_port, get, init_demo, payment_request, post,
    postgres, seed_from_env, tenants, text, voucher_key, voucher_path, wait_for, wanted,
};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::json;

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

/// How long all the payments may take to be receipted, cleared and settled.
const SETTLE_DEADLINE: Duration = Duration::from_secs(75);

/// The two runs share a 2-core machine: one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payments_end_exactly_once_through_a_faulty_network_on_sqlite() {
    let _one = ONE_AT_A_TIME.lock().await;
    payments_end_exactly_once(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payments_end_exactly_once_through_a_faulty_network_on_postgres() {
    let Some(pg) = postgres("t_mp_").await else {
        return;
    };
    let _one = ONE_AT_A_TIME.lock().await;
    let _schemas = DropSchemas(pg.clone());
    payments_end_exactly_once(Backend::Postgres(pg)).await;
}

// ----- the scenario ----------------------------------------------------------------------

async fn payments_end_exactly_once(backend: Backend) {
    let seed = seed_from_env("GUOKU_FAULT_SEED");
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
    // Every running peer is reached through the proxy.
    let peers: BTreeMap<String, SocketAddr> = PARTIES
        .iter()
        .filter_map(|(org, _)| proxy.addr(org).map(|addr| ((*org).to_owned(), addr)))
        .collect();
    let run = Run {
        backend: &backend,
        data: &data,
        peers: &peers,
        clearing_every_secs: rng.random_range(1..=2),
    };
    let mut tokens = BTreeMap::new();
    for (org, role) in PARTIES {
        let token = format!("gk_multiprocess_{org}_{seed}");
        configure(&run, org, role, ports[org], &token);
        tokens.insert(org, token);
    }

    let tenants = tenants();
    let before = Figures::read(&backend, &data, &tenants).await;

    let mut cluster = Cluster::new(
        seed,
        format!("multiprocess FAILED with fault seed {seed} (replay: GUOKU_FAULT_SEED={seed})"),
    );
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
    let proxy_tally = || format!("proxy {:?}", proxy.tally());
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
        wait_for(
            &mut cluster,
            &tokens,
            &wanted,
            (started, SETTLE_DEADLINE),
            &proxy_tally,
            |p| p.receipted == receipted,
        )
        .await;
    }

    let (wanted, total_fen) = wanted(&payments);
    assert_eq!(
        wanted.len(),
        payments.len(),
        "every payment its own voucher"
    );
    // Then everything receipted, cleared and delivered.
    let last = wait_for(
        &mut cluster,
        &tokens,
        &wanted,
        (started, SETTLE_DEADLINE),
        &proxy_tally,
        |p| p.settled(wanted.len(), total_fen),
    )
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
        Figures::moved_by(total),
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
        let (division, amount, body) = payment_request(rng, n, month);
        let key = format!("multiprocess-{seed}-{n}");
        // Three people: the maker's request makes a draft, a checker checks it, a signer
        // signs it, and only then is it stamped and sent.
        let reply = post(self.addr, DIRECT_PAYMENTS, &self.token, &key, &body).await;
        assert_eq!(reply.status, 201, "payment {n}: {}", reply.text());
        let view = reply.json()["draft"].clone();
        let path = voucher_path(&view);
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
        let voucher = voucher_key(&view);
        assert_eq!(voucher.vt_code, "5201");
        assert_eq!(voucher.adm_div_code, division);
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
