//! `guoku bench e2e`: the full payment life cycle in the all-in-one process (issue 5).
//!
//! A fresh demo province is created (not timed), then `payments` direct payments are
//! driven through every step: finance makes and stamps each 5201 (maker, checker, seal)
//! and consumes its plan quota, the outbox delivers it, the bank verifies, acknowledges,
//! pays and returns a sealed receipt, finance verifies and books the receipt; then the
//! bank sends its clearing requests (2301) and PBOC verifies, checks and clears them and
//! the bank settles PBOC's receipts; then PBOC (3502) and finance (5503) reconcile the day
//! with every bank and the banks answer. Each party's worker runs in its own task, as in
//! `guoku demo`.
//!
//! With `rows` above 1 each voucher is a salary 5201 of that many rows, each row a payment
//! to its own account that the bank books and pays on its own and answers on the receipt
//! (XPayAmt per row): how payroll travels, one set of stamps for many payments.
//!
//! Figures: payments per second over the whole run (up to the last clearing settled),
//! latency per voucher from "finance starts making it" to "finance booked its receipt"
//! (p50, p99), and where the CPU time went: signing and verifying (timed around every
//! stamp and check), the SQLite writer threads (their CPU time from
//! `/proc/self/task/*/stat`), and the rest.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use guoku_domain::Amount;
use guoku_seal::Suite;
use guoku_voucher::VoucherKey;
use time::OffsetDateTime;
use tokio::sync::watch;

use crate::demo::{Demo, DemoError, DemoOptions, Payee};
use crate::exchange::{Clock, InMemory};
use crate::party::{Party, PartyError};
use crate::stamping;

/// What to run.
#[derive(Clone, Debug)]
pub struct E2eOptions {
    /// Direct payments to drive.
    pub payments: usize,
    /// Payments per voucher: 1, a single 5201 each; more, salary 5201s (BusinessTypeCode
    /// 3) of that many rows, each row a payment to its own account that the bank books,
    /// pays and answers on the receipt on its own (at most `rows_per_8207`: larger
    /// batches travel as 8207s, which this benchmark does not drive).
    pub rows: usize,
    /// Vouchers finance makes at once.
    pub concurrency: usize,
    /// The signature suite.
    pub suite: Suite,
    /// A directory for the demo's data (deleted and recreated).
    pub dir: PathBuf,
    /// PostgreSQL instead of SQLite (the parties' schemas are dropped and recreated).
    pub postgres: Option<crate::demo::DemoPostgres>,
}

/// What a run measured.
#[derive(Clone, Debug)]
pub struct E2eReport {
    pub payments: usize,
    /// The 5201s they travelled in.
    pub vouchers: usize,
    /// Creating and seeding the province (not in the figures).
    pub setup: Duration,
    /// From the first payment made to the last clearing settled.
    pub elapsed: Duration,
    /// Until the last receipt was booked at finance.
    pub receipted: Duration,
    pub p50: Duration,
    pub p99: Duration,
    /// Process CPU time during the run.
    pub cpu_total: Duration,
    /// Signing and verifying.
    pub cpu_crypto: Duration,
    /// The SQLite writer threads.
    pub cpu_storage: Duration,
    /// Stamps (signatures and seals) made during the run, by every party.
    pub stamps_made: u64,
    /// Stamps checked during the run (each received voucher's, every one of its stamps).
    pub stamps_checked: u64,
    /// Clearing requests PBOC cleared.
    pub clearing_requests: usize,
    /// Reconciliation requests answered (PBOC's 3502s and finance's 5503s).
    pub reconciliations: usize,
}

impl E2eReport {
    /// Payments per second over the whole run (made to reconciled).
    #[must_use]
    pub fn per_second(&self) -> f64 {
        self.payments as f64 / self.elapsed.as_secs_f64()
    }
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Demo(#[from] DemoError),
    #[error(transparent)]
    Party(#[from] PartyError),
    #[error("the run stalled: {0}")]
    Stalled(String),
    #[error("{0}")]
    Options(String),
}

/// CPU time of this process, split: (all, SQLite writers). Linux only; elsewhere zero.
///
/// The whole is the process's own count (`/proc/self/stat`), which keeps the time of threads
/// that have ended (the short-lived threads that check a large envelope on every core); the
/// writers are long-lived, so their threads' own counts (`/proc/self/task/*/stat`) are read.
fn process_cpu() -> (Duration, Duration) {
    let ticks_per_second = 100.0; // USER_HZ, fixed at 100 on Linux.
    // utime and stime: the 12th and 13th fields after the ")" that closes the command name.
    let ticks = |stat: &str| -> f64 {
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            return 0.0;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        [11, 12]
            .iter()
            .filter_map(|&i| fields.get(i).and_then(|f| f.parse::<f64>().ok()))
            .sum()
    };
    let all = ticks(&std::fs::read_to_string("/proc/self/stat").unwrap_or_default());
    let mut storage = 0.0;
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for task in tasks.flatten() {
            let path = task.path();
            let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
            if comm.starts_with("guoku-sqlite") {
                storage += ticks(&std::fs::read_to_string(path.join("stat")).unwrap_or_default());
            }
        }
    }
    (
        Duration::from_secs_f64(all / ticks_per_second),
        Duration::from_secs_f64(storage / ticks_per_second),
    )
}

/// Runs the benchmark; `progress(done, total)` is called as receipts come back.
///
/// # Errors
/// [`BenchError`]: the demo could not be created, a party failed, or nothing moved for
/// 60 seconds.
pub async fn e2e(
    options: &E2eOptions,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<E2eReport, BenchError> {
    let rows = options.rows.max(1);
    if rows > crate::flows::batch::ROWS_PER_8207 {
        return Err(BenchError::Options(format!(
            "at most {} rows per voucher (larger salary batches travel as 8207s)",
            crate::flows::batch::ROWS_PER_8207
        )));
    }
    let clock: Clock = Arc::new(OffsetDateTime::now_utc);
    let setup_start = Instant::now();
    let demo = Demo::open(
        &DemoOptions {
            dir: options.dir.clone(),
            fresh: true,
            suite: options.suite,
            postgres: options.postgres.clone(),
        },
        clock.clone(),
    )
    .await?;
    let setup = setup_start.elapsed();
    let demo = Arc::new(demo);
    // Vouchers to make, and the payments (rows) in them.
    let total = options.payments.div_ceil(rows);
    let payments = total * rows;
    let started: Arc<Mutex<HashMap<VoucherKey, Instant>>> = Arc::default();
    let mut latencies = Vec::with_capacity(total);

    // The workers: every party but finance runs its loop; finance's ticks are watched
    // for completed payments here.
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut workers = Vec::new();
    for party in demo.parties() {
        if Arc::ptr_eq(&party, &demo.finance) {
            continue;
        }
        workers.push(tokio::spawn(
            party.run(Duration::from_millis(2), stop_rx.clone()),
        ));
    }

    let (t0, cpu0, crypto0, stamps0) = (
        Instant::now(),
        process_cpu(),
        stamping::crypto_time(),
        stamping::stamp_counts(),
    );
    // The makers: `concurrency` tasks issuing payments round-robin over the units.
    let mut makers = Vec::new();
    let per_task = total.div_ceil(options.concurrency.max(1));
    for task in 0..options.concurrency.max(1) {
        let demo = demo.clone();
        let started = started.clone();
        let from = task * per_task;
        let to = ((task + 1) * per_task).min(total);
        makers.push(tokio::spawn(async move {
            for n in from..to {
                let units = &demo.province.units;
                let unit = &units[n % units.len()];
                let today = Party::<InMemory>::business_date((demo.finance.clock)());
                let amount = Amount::from_fen(10_000 + (n as i64 % 9_000)).expect("an amount");
                let voucher = if rows == 1 {
                    demo.direct_voucher(&unit.code, amount, &Payee::demo(n as u64), today)?
                } else {
                    let amounts: Vec<Amount> = (0..rows)
                        .map(|i| Amount::from_fen(10_000 + (i as i64 % 100)).expect("an amount"))
                        .collect();
                    demo.salary_voucher(&unit.code, &amounts, n as u64, today)?
                };
                let key = voucher.key();
                let indicator = demo.indicator(&unit.code)?;
                let month = u8::from(today_month(&demo));
                started
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .insert(key, Instant::now());
                demo.finance
                    .issue_direct(
                        voucher,
                        &indicator,
                        month,
                        demo.province.direct_bank().code,
                        "bench",
                    )
                    .await?;
            }
            Ok::<(), BenchError>(())
        }));
    }

    // Finance's worker, here: books receipts and records each payment's latency.
    let mut last_progress = Instant::now();
    while latencies.len() < total {
        let report = demo.finance.tick().await?;
        let now = Instant::now();
        if !report.completed.is_empty() {
            last_progress = now;
            let started = started
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for key in &report.completed {
                if let Some(t) = started.get(key) {
                    latencies.push(now - *t);
                }
            }
            progress(latencies.len() * rows, payments);
        } else if now - last_progress > Duration::from_secs(60) {
            return Err(BenchError::Stalled(format!(
                "{} of {total} receipts after 60 s without progress",
                latencies.len()
            )));
        } else if report.is_idle() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    for maker in makers {
        maker
            .await
            .map_err(|e| BenchError::Stalled(e.to_string()))??;
    }
    let receipted = t0.elapsed();

    // Clearing: every bank asks now (each on its own, as separate banks do) for what its
    // own clearing rounds have not claimed yet; PBOC clears; the banks settle. Done when
    // every 2301 the banks sent is settled.
    futures_util::future::try_join_all(
        demo.banks.iter().map(|bank| bank.request_clearing("bench")),
    )
    .await?;
    let settled_start = Instant::now();
    let mut requests;
    loop {
        let (mut sent, mut settled, mut refused) = (0, 0, 0);
        for bank in &demo.banks {
            for count in bank
                .store
                .library()
                .counts()
                .await
                .map_err(PartyError::from)?
            {
                if count.vt_code == crate::flows::clearing::VT_2301
                    && count.leg == guoku_voucher::lifecycle::Leg::Original
                {
                    use guoku_voucher::lifecycle::Exchange;
                    sent += count.legs;
                    match count.exchange {
                        Exchange::ReceiptReceived => settled += count.legs,
                        Exchange::ReceiveFailed | Exchange::AckFailed | Exchange::Returned => {
                            refused += count.legs;
                        }
                        _ => {}
                    }
                }
            }
        }
        if refused > 0 {
            // Every payment was paid and receipted: PBOC refusing or returning a clearing
            // request is a fault, said at once rather than waited out.
            return Err(BenchError::Stalled(format!(
                "PBOC refused or returned {refused} of {sent} clearing requests \
                 (see the banks' 2301s for the reason)"
            )));
        }
        requests = usize::try_from(sent).unwrap_or(usize::MAX);
        if sent > 0 && settled == sent {
            break;
        }
        if settled_start.elapsed() > Duration::from_secs(60) {
            return Err(BenchError::Stalled(format!(
                "{settled} of {sent} clearing requests settled after 60 s"
            )));
        }
        turn_finance(&demo).await?;
    }
    // Reconciliation: PBOC and finance reconcile the day with every bank; all answered.
    let (pboc, finance) = tokio::try_join!(
        demo.pboc.reconcile_day("bench"),
        demo.finance.reconcile_day("bench")
    )?;
    let asked = pboc + finance;
    let reconciled_start = Instant::now();
    loop {
        let mut answered = 0;
        for (party, vt) in [(&demo.pboc, "3502"), (&demo.finance, "5503")] {
            answered += party
                .store
                .library()
                .by_status(
                    vt,
                    guoku_voucher::lifecycle::Leg::Receipt,
                    guoku_voucher::lifecycle::Exchange::Acknowledged,
                    0,
                    guoku_store::library::LIST_MAX,
                )
                .await
                .map_err(PartyError::from)?
                .items
                .len();
        }
        if answered >= asked {
            break;
        }
        if reconciled_start.elapsed() > Duration::from_secs(60) {
            return Err(BenchError::Stalled(format!(
                "{answered} of {asked} reconciliations answered after 60 s"
            )));
        }
        turn_finance(&demo).await?;
    }
    let elapsed = t0.elapsed();
    let (cpu1, crypto1, stamps1) = (
        process_cpu(),
        stamping::crypto_time(),
        stamping::stamp_counts(),
    );
    let _ = stop_tx.send(true);
    for worker in workers {
        let _ = worker.await;
    }
    latencies.sort();
    let pick = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Ok(E2eReport {
        payments,
        vouchers: total,
        setup,
        elapsed,
        receipted,
        p50: pick(0.50),
        p99: pick(0.99),
        cpu_total: cpu1.0.saturating_sub(cpu0.0),
        cpu_crypto: crypto1.saturating_sub(crypto0),
        cpu_storage: cpu1.1.saturating_sub(cpu0.1),
        stamps_made: stamps1.0.saturating_sub(stamps0.0),
        stamps_checked: stamps1.1.saturating_sub(stamps0.1),
        clearing_requests: requests,
        reconciliations: asked,
    })
}

/// How often the clearing and reconciliation waits look at the stores: each look counts
/// every voucher. Looked at every 2 ms, the counting was 7% of the CPU samples at the end
/// of a run, taken from the parties being measured.
const POLL: Duration = Duration::from_millis(20);

/// Runs finance's worker (the benchmark is its worker) for [`POLL`]: between two looks at
/// the stores, finance goes on answering as it would on its own.
async fn turn_finance(demo: &Demo) -> Result<(), BenchError> {
    let until = Instant::now() + POLL;
    while Instant::now() < until {
        if demo.finance.tick().await?.is_idle() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    Ok(())
}

fn today_month(demo: &Demo) -> time::Month {
    let t = (demo.finance.clock)();
    t.to_offset(
        time::UtcOffset::from_hms(crate::party::BUSINESS_OFFSET_HOURS, 0, 0).expect("offset"),
    )
    .month()
}
