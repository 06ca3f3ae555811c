//! `guoku bench …`: benchmarks that print figures. Speed is measured here, never in tests.

use std::process::ExitCode;

use clap::Subcommand;

use crate::Global;

#[path = "bench_http.rs"]
mod bench_http;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// The ledger engine: transfers per second in memory (and durable, per backend).
    Ledger {
        /// Transfers to apply.
        #[arg(long, default_value_t = 4_000_000)]
        transfers: usize,
        /// Transfers per batch (TigerBeetle's batch is 8,190).
        #[arg(long, default_value_t = guoku_ledger::BATCH_MAX)]
        batch: usize,
        /// Accounts the transfers move money between.
        #[arg(long, default_value_t = 10_000)]
        accounts: usize,
        /// Runs; the best and the median are printed.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Transfers for the durable runs, every one debiting the same hot account.
        #[arg(long, default_value_t = 409_500)]
        durable_transfers: usize,
        /// Where the durable SQLite runs write (a fresh database each run).
        #[arg(long, default_value_os_t = std::env::temp_dir())]
        dir: std::path::PathBuf,
        /// PostgreSQL for the durable runs (a throwaway schema each run).
        #[arg(
            long,
            env = "GUOKU_TEST_PG_URL",
            default_value = "postgres://postgres@127.0.0.1:5432/postgres"
        )]
        pg_url: String,
    },
    /// The full payment life cycle in the all-in-one process (made, signed, sent,
    /// acknowledged, paid, receipted, cleared): payments/s, latency, CPU by part.
    E2e {
        /// Direct payments to drive.
        #[arg(long, default_value_t = 2_000)]
        payments: usize,
        /// Payments per voucher: 1 (a single 5201 each), or up to 500 (salary 5201s of that
        /// many rows, each row a payment the bank books and answers on its own).
        #[arg(long, default_value_t = 1)]
        rows: usize,
        /// Vouchers finance makes at once.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// Signature suites to run: sm, intl, or both.
        #[arg(long, default_value = "sm")]
        suite: String,
        /// Stores to run on: sqlite, postgres, or both.
        #[arg(long, default_value = "sqlite")]
        store: String,
        /// Where the SQLite runs keep their data (a fresh directory each run).
        #[arg(long, default_value_os_t = std::env::temp_dir())]
        dir: std::path::PathBuf,
        /// PostgreSQL for the postgres runs (throwaway schemas).
        #[arg(
            long,
            env = "GUOKU_TEST_PG_URL",
            default_value = "postgres://postgres@127.0.0.1:5432/postgres"
        )]
        pg_url: String,
    },
    /// Daily reconciliation: compares two sides of N entries with differences planted
    /// (missing on either side, amounts and states changed) and lists every difference.
    Reconcile {
        /// Entries on each side.
        #[arg(long, default_value_t = 1_000_000)]
        entries: usize,
        /// Runs; the best and the median are printed.
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// The API and the portal over HTTP at a fixed rate (open loop: latency counted from
    /// each request's due time): achieved rate, errors, p50/p90/p99/p999/max per route.
    Http {
        /// Requests per second, each sent at its due time.
        #[arg(long, default_value_t = 1_000)]
        rate: u32,
        /// Seconds of load.
        #[arg(long, default_value_t = 10)]
        seconds: u32,
        /// Keep-alive connections the requests share.
        #[arg(long, default_value_t = 32)]
        connections: usize,
        /// Signature suite of the demo province: sm or intl.
        #[arg(long, default_value = "sm")]
        suite: String,
    },
    /// The audit log: leaves appended per second (through the store, in transactions) and
    /// leaves verified per second (the stored log recomputed and checked against a head),
    /// for SM3 and SHA-256.
    Audit {
        /// Leaves to append, then verify.
        #[arg(long, default_value_t = 1_000_000)]
        leaves: usize,
        /// Leaves per transaction while appending.
        #[arg(long, default_value_t = 1_000)]
        per_commit: usize,
        /// Stores to run on: sqlite, postgres, or both.
        #[arg(long, default_value = "sqlite")]
        store: String,
        /// Where the SQLite runs write (a fresh database each run).
        #[arg(long, default_value_os_t = std::env::temp_dir())]
        dir: std::path::PathBuf,
        /// PostgreSQL for the postgres runs (a throwaway schema each run).
        #[arg(
            long,
            env = "GUOKU_TEST_PG_URL",
            default_value = "postgres://postgres@127.0.0.1:5432/postgres"
        )]
        pg_url: String,
    },
    /// Signatures: sign/s and verify/s per core for each suite, batch sign-and-seal of
    /// 2,000 vouchers on all cores, batch-signature mode for 10,000, beside `openssl speed sm2`.
    Sign {
        /// Skip the ~6 s `openssl speed -seconds 3 sm2` baseline.
        #[arg(long)]
        no_openssl: bool,
    },
}

/// The machine, printed above every benchmark so figures are read in context.
fn print_machine() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load = load
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ");
    outln!(
        "machine: {cores} cores, load average {load}, guoku {} ({} build)",
        env!("CARGO_PKG_VERSION"),
        if cfg!(debug_assertions) {
            "DEBUG: figures are meaningless"
        } else {
            "release"
        }
    );
}

/// (best, median) of the figures.
fn best_and_median(mut figures: Vec<f64>) -> (f64, f64) {
    figures.sort_by(f64::total_cmp);
    let best = figures.last().copied().unwrap_or(0.0);
    let median = figures.get(figures.len() / 2).copied().unwrap_or(0.0);
    (best, median)
}

pub fn run(command: BenchCommand, _global: &Global) -> anyhow::Result<ExitCode> {
    print_machine();
    match command {
        BenchCommand::Ledger {
            transfers,
            batch,
            accounts,
            runs,
            durable_transfers,
            dir,
            pg_url,
        } => {
            anyhow::ensure!(
                (1..=guoku_ledger::BATCH_MAX).contains(&batch),
                "--batch must be 1 to {}",
                guoku_ledger::BATCH_MAX
            );
            anyhow::ensure!(accounts >= 2 && runs >= 1, "--accounts ≥ 2 and --runs ≥ 1");
            let figures: Vec<f64> = (0..runs)
                .map(|_| {
                    guoku_ledger::bench::bench_in_memory(transfers, batch, accounts)
                        .transfers_per_sec
                })
                .collect();
            let (best, median) = best_and_median(figures);
            outln!(
                "ledger in memory, one core: {transfers} transfers in batches of {batch} over {accounts} accounts"
            );
            outln!(
                "  best {best:>12.0} transfers/s   median {median:>12.0} transfers/s   (target ≥ 1,000,000; TigerBeetle reports ~1.17 M/s)"
            );
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            runtime.block_on(durable(&dir, &pg_url, durable_transfers, batch, runs))?;
        }
        BenchCommand::Sign { no_openssl } => sign(no_openssl)?,
        BenchCommand::Audit {
            leaves,
            per_commit,
            store,
            dir,
            pg_url,
        } => {
            anyhow::ensure!(
                leaves >= 1 && per_commit >= 1,
                "--leaves and --per-commit ≥ 1"
            );
            let (sqlite, postgres) = match store.as_str() {
                "sqlite" => (true, false),
                "postgres" => (false, true),
                "both" => (true, true),
                other => anyhow::bail!("--store is sqlite, postgres or both, not {other:?}"),
            };
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            runtime.block_on(audit(AuditBench {
                leaves,
                per_commit,
                sqlite,
                postgres,
                dir: &dir,
                pg_url: &pg_url,
            }))?;
        }
        BenchCommand::Reconcile { entries, runs } => {
            anyhow::ensure!(entries >= 1 && runs >= 1, "--entries and --runs ≥ 1");
            let mut seconds = Vec::new();
            let mut differences = 0;
            for run in 0..runs {
                let (took, summary) =
                    guoku_node::flows::reconcile::bench_reconcile(entries, run as u64 + 1);
                seconds.push(took.as_secs_f64());
                differences = summary.differences.len();
            }
            seconds.sort_by(f64::total_cmp);
            outln!(
                "reconcile: {entries} entries a side, {differences} differences listed: best {:.3} s, median {:.3} s ({:.0} entries/s)   (target ≤ 10 s for 1,000,000)",
                seconds[0],
                seconds[seconds.len() / 2],
                entries as f64 / seconds[seconds.len() / 2]
            );
        }
        BenchCommand::Http {
            rate,
            seconds,
            connections,
            suite,
        } => {
            let suite = match suite.as_str() {
                "sm" => guoku_seal::Suite::Sm,
                "intl" => guoku_seal::Suite::Intl,
                other => anyhow::bail!("--suite is sm or intl, not {other:?}"),
            };
            bench_http::run(bench_http::HttpBench {
                rate,
                seconds,
                connections,
                suite,
            })?;
        }
        BenchCommand::E2e {
            payments,
            rows,
            concurrency,
            suite,
            store,
            dir,
            pg_url,
        } => e2e(
            E2eShape {
                payments,
                rows,
                concurrency,
            },
            &suite,
            &store,
            &dir,
            &pg_url,
        )?,
    }
    Ok(ExitCode::SUCCESS)
}

fn print_durable(name: &str, reports: &[guoku_store::bench::DurableReport], target: &str) {
    let (best, median) = best_and_median(reports.iter().map(|r| r.transfers_per_sec).collect());
    let bytes = reports
        .iter()
        .map(|r| r.bytes_per_transfer)
        .fold(f64::INFINITY, f64::min);
    outln!(
        "  {name}: best {best:>9.0} transfers/s   median {median:>9.0} transfers/s   {bytes:.0} bytes stored per payment   {target}"
    );
}

/// The durable runs: every transfer debits one hot account, committed in batches.
async fn durable(
    dir: &std::path::Path,
    pg_url: &str,
    transfers: usize,
    batch: usize,
    runs: usize,
) -> anyhow::Result<()> {
    use guoku_store::bench::{bench_postgres_fresh, bench_sqlite_fresh};
    outln!("ledger durable: {transfers} transfers in batches of {batch}, all on one hot account");
    let mut sqlite = Vec::new();
    for _ in 0..runs {
        sqlite.push(bench_sqlite_fresh(dir, transfers, batch).await?);
    }
    print_durable(
        "SQLite (WAL, synchronous=FULL)",
        &sqlite,
        "(target ≥ 100,000)",
    );
    let mut postgres = Vec::new();
    for _ in 0..runs {
        match bench_postgres_fresh(pg_url, transfers, batch).await? {
            Some(report) => postgres.push(report),
            None => {
                outln!("  PostgreSQL: SKIPPED, no server at {pg_url}");
                return Ok(());
            }
        }
    }
    print_durable("PostgreSQL", &postgres, "(reported, no target)");
    Ok(())
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

fn sign(no_openssl: bool) -> anyhow::Result<()> {
    use guoku_seal::Suite;
    use guoku_seal::bench::{BenchConfig, openssl_speed_sm2, run_suite};
    let config = BenchConfig::default();
    let openssl = if no_openssl {
        None
    } else {
        openssl_speed_sm2(3)
    };
    match openssl {
        Some(o) => outln!(
            "openssl speed -seconds 3 sm2 (this machine, now): {:.0} sign/s, {:.0} verify/s",
            o.sign_per_s,
            o.verify_per_s
        ),
        None => outln!("openssl speed sm2: not run"),
    }
    for suite in Suite::ALL {
        let report = run_suite(suite, &config)?;
        outln!("{report}");
        if suite != Suite::Sm {
            continue;
        }
        if let Some(o) = openssl {
            let single = report.sign_per_s / o.sign_per_s;
            let batched = report.sign_many_per_s / o.sign_per_s;
            outln!(
                "  SM2 sign per core ≥ 5 × OpenSSL ({:.0}/s): batched {batched:.2} × → {}; one signature per call {single:.2} ×",
                5.0 * o.sign_per_s,
                verdict(batched >= 5.0)
            );
        }
        let batch = report.batch_sign_s.median();
        outln!(
            "  {} SM2 vouchers signed and sealed ≤ 0.25 s: median {batch:.3} s → {}",
            report.batch_vouchers,
            verdict(batch <= 0.25)
        );
        let mode = report.batch_mode_s.median();
        outln!(
            "  batch-signature mode, {} vouchers ≤ 0.1 s: median {mode:.3} s → {}",
            report.batch_mode_vouchers,
            verdict(mode <= 0.1)
        );
    }
    Ok(())
}

/// What `guoku bench e2e` drives: payments, rows per voucher, vouchers at once.
struct E2eShape {
    payments: usize,
    rows: usize,
    concurrency: usize,
}

/// `guoku bench e2e`: one run per suite × store.
fn e2e(
    E2eShape {
        payments,
        rows,
        concurrency,
    }: E2eShape,
    suites: &str,
    stores: &str,
    dir: &std::path::Path,
    pg_url: &str,
) -> anyhow::Result<()> {
    use guoku_node::bench::{E2eOptions, e2e};
    use guoku_node::demo::DemoPostgres;
    let suites: Vec<guoku_seal::Suite> = match suites {
        "sm" => vec![guoku_seal::Suite::Sm],
        "intl" => vec![guoku_seal::Suite::Intl],
        "both" => vec![guoku_seal::Suite::Sm, guoku_seal::Suite::Intl],
        other => anyhow::bail!("--suite is sm, intl or both, not {other:?}"),
    };
    let stores: Vec<bool> = match stores {
        "sqlite" => vec![false],
        "postgres" => vec![true],
        "both" => vec![false, true],
        other => anyhow::bail!("--store is sqlite, postgres or both, not {other:?}"),
    };
    anyhow::ensure!(
        payments >= 1 && concurrency >= 1 && (1..=500).contains(&rows),
        "--payments and --concurrency ≥ 1, --rows 1 to 500"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    if rows == 1 {
        outln!(
            "e2e: {payments} direct payments, {concurrency} at a time, each made, stamped (3), sent, verified, paid, receipted (sealed), verified, booked, then cleared (2301), settled and reconciled (3502, 5503)"
        );
    } else {
        outln!(
            "e2e: {payments} direct payments as rows of salary 5201s of {rows} rows, {concurrency} vouchers at a time; each voucher made, stamped (3), sent, verified, each row booked and paid on its own, the receipt (sealed) answering every row, verified, booked, then cleared (2301), settled and reconciled (3502, 5503)"
        );
    }
    for suite in suites {
        for postgres in &stores {
            let run_dir = dir.join(format!("guoku-bench-e2e-{}", std::process::id()));
            let options = E2eOptions {
                payments,
                rows,
                concurrency,
                suite,
                dir: run_dir.clone(),
                postgres: postgres.then(|| DemoPostgres {
                    url: pg_url.to_owned(),
                    schema_prefix: format!("guoku_bench_{}_", std::process::id()),
                }),
            };
            let bar = indicatif::ProgressBar::new(payments.div_ceil(rows) as u64 * rows as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "  {bar:40} {pos}/{len} receipts {per_sec}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            // The bare signing rates, on a quiet machine: the stamps' ceiling is printed
            // with the run's figures.
            let rates =
                guoku_seal::bench::core_rates(suite, std::time::Duration::from_millis(500), 1_536)?;
            let progress = |done: usize, _total: usize| bar.set_position(done as u64);
            let report = runtime.block_on(e2e(&options, &progress));
            bar.finish_and_clear();
            let _ = std::fs::remove_dir_all(&run_dir);
            let report = report?;
            let store = if *postgres { "PostgreSQL" } else { "SQLite" };
            let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
            let cpu = report.cpu_total.as_secs_f64().max(f64::EPSILON);
            let crypto = report.cpu_crypto.as_secs_f64();
            let storage = report.cpu_storage.as_secs_f64();
            outln!(
                "  {suite:?} on {store}: {:.0} payments/s ({} in {} vouchers in {:.2} s; receipts all back after {:.2} s; {} clearing requests, {} reconciliations; setup {:.1} s, not counted)",
                report.per_second(),
                report.payments,
                report.vouchers,
                report.elapsed.as_secs_f64(),
                report.receipted.as_secs_f64(),
                report.clearing_requests,
                report.reconciliations,
                report.setup.as_secs_f64(),
            );
            outln!(
                "    latency per voucher (made → receipt booked): p50 {:.1} ms, p99 {:.1} ms",
                ms(report.p50),
                ms(report.p99)
            );
            outln!(
                "    CPU {:.2} s: signing and verifying {:.2} s ({:.0}%), SQLite writer threads {:.2} s ({:.0}%), the rest {:.2} s ({:.0}%)",
                cpu,
                crypto,
                100.0 * crypto / cpu,
                storage,
                100.0 * storage / cpu,
                (cpu - crypto - storage).max(0.0),
                100.0 * (cpu - crypto - storage).max(0.0) / cpu,
            );
            print_stamp_ceiling(rates, &report);
        }
    }
    outln!("  target: ≥ 3,000 payments/s with SM2 on SQLite on the 2-core machine");
    Ok(())
}

/// What the stamps alone allow: each payment's share of the stamps made and checked, at
/// this machine's per-core `rates` for the bare operations (measured just before the run)
/// and at the CPU the run's signing and verifying took, on every core and nothing else.
fn print_stamp_ceiling(rates: guoku_seal::bench::CoreRates, report: &guoku_node::bench::E2eReport) {
    let payments = report.payments.max(1) as f64;
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get) as f64;
    let made = report.stamps_made as f64 / payments;
    let checked = report.stamps_checked as f64 / payments;
    let bare = made / rates.sign_per_s + checked / rates.verify_per_s;
    let spent = report.cpu_crypto.as_secs_f64() / payments;
    let most = |per_payment: f64| {
        if per_payment > 0.0 {
            format!("{:.0}", cores / per_payment)
        } else {
            "no limit".to_owned()
        }
    };
    outln!(
        "    stamps per payment: {made:.2} made, {checked:.2} checked; at {:.0} signatures/s and {:.0} verifications/s per core (measured before the run), these alone allow at most {} payments/s on {cores:.0} cores; as the run spent them ({:.3} ms of CPU a payment, reading and checking stamps included), at most {}",
        rates.sign_per_s,
        rates.verify_per_s,
        most(bare),
        spent * 1e3,
        most(spent),
    );
}

struct AuditBench<'a> {
    leaves: usize,
    per_commit: usize,
    sqlite: bool,
    postgres: bool,
    dir: &'a std::path::Path,
    pg_url: &'a str,
}

/// `guoku bench audit`: for each store and suite, a fresh log of `leaves` leaves appended,
/// then verified from the store and from memory.
async fn audit(b: AuditBench<'_>) -> anyhow::Result<()> {
    use guoku_store::{PgConfig, SqliteConfig, Store};
    outln!(
        "audit log: {} voucher-write leaves, {} per commit; verify = rows read, leaves hashed, tree recomputed, compared with the head",
        b.leaves,
        b.per_commit
    );
    for suite in [guoku_seal::Suite::Sm, guoku_seal::Suite::Intl] {
        if b.sqlite {
            let path = b
                .dir
                .join(format!("guoku-bench-audit-{}.db", std::process::id()));
            let store = Store::open_sqlite(SqliteConfig::new(path.clone())).await?;
            let run = bench_audit_run(&store, suite, &b).await;
            drop(store);
            for suffix in ["", "-wal", "-shm"] {
                let mut name = path.clone().into_os_string();
                name.push(suffix);
                let _ = std::fs::remove_file(name);
            }
            run?;
        }
        if b.postgres {
            let schema = format!("guoku_bench_audit_{}", std::process::id());
            if Store::prepare_postgres_schema(b.pg_url, &schema, true)
                .await
                .is_err()
            {
                outln!("  PostgreSQL: SKIPPED, no server at {}", b.pg_url);
                continue;
            }
            let mut config = PgConfig::new(b.pg_url);
            config.schema = Some(schema.clone());
            let run = async {
                let store = Store::connect_postgres(config).await?;
                bench_audit_run(&store, suite, &b).await
            }
            .await;
            Store::drop_postgres_schema(b.pg_url, &schema).await?;
            run?;
        }
    }
    Ok(())
}

async fn bench_audit_run(
    store: &guoku_store::Store,
    suite: guoku_seal::Suite,
    b: &AuditBench<'_>,
) -> anyhow::Result<()> {
    let append = guoku_store::bench::bench_audit_append(store, b.leaves, b.per_commit).await?;
    let verify = guoku_node::audit::bench_verify(store, suite).await?;
    let alg = guoku_node::audit::alg_of(suite);
    let n = verify.leaves as f64;
    outln!(
        "  {:<8} {:<6} {} leaves of {:.0} bytes on average; read alone {:.0} leaves/s; {:.0} MB/s of leaf data hashed in memory",
        store.backend(),
        alg.name(),
        verify.leaves,
        verify.leaf_bytes as f64 / n,
        n / verify.read_secs,
        verify.leaf_bytes as f64 / verify.in_memory_secs / 1e6
    );
    outln!(
        "  {:<8} {:<6} appended {:>10.0} leaves/s   verified from the store {:>10.0} leaves/s   in memory {:>10.0} leaves/s   (target ≥ 1,000,000 verified/s: from the store {}, in memory {})",
        store.backend(),
        alg.name(),
        append.leaves_per_sec,
        n / verify.from_store_secs,
        n / verify.in_memory_secs,
        verdict(n / verify.from_store_secs >= 1_000_000.0),
        verdict(n / verify.in_memory_secs >= 1_000_000.0)
    );
    Ok(())
}
