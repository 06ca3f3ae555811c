//! Durable ledger throughput and bytes per payment, on SQLite and PostgreSQL.
//!
//! `cargo run --release --example bench_ledger -p guoku-store -- [transfers] [batch_size] [runs]`
//!
//! Defaults: 409,500 transfers (50 batches of 8,190), every one debiting the same hot
//! account, 3 runs per backend, each on a fresh database. PostgreSQL is found through
//! `GUOKU_TEST_PG_URL`, else `postgres://postgres@127.0.0.1:5432/postgres`; each run uses
//! a throwaway schema. Best and median runs are printed: other work on a shared machine
//! only ever slows a run down.

use guoku_store::bench::{DurableReport, bench_postgres_fresh, bench_sqlite_fresh};

fn arg(index: usize, default: usize) -> usize {
    match std::env::args().nth(index) {
        None => default,
        Some(text) => text.parse().unwrap_or_else(|_| {
            eprintln!("argument {index} must be a whole number, got {text:?}");
            std::process::exit(2);
        }),
    }
}

fn summary(name: &str, reports: &[DurableReport]) {
    let mut rates: Vec<f64> = reports.iter().map(|r| r.transfers_per_sec).collect();
    rates.sort_by(f64::total_cmp);
    let bytes = reports
        .iter()
        .map(|r| r.bytes_per_transfer)
        .fold(f64::NAN, f64::min);
    println!(
        "ledger durable on {name}: best {:.0} transfers/s, median {:.0} transfers/s, {bytes:.0} bytes per payment",
        rates[rates.len() - 1],
        rates[rates.len() / 2]
    );
}

fn print_run(run: usize, r: &DurableReport) {
    println!(
        "{} run {run}: {} transfers in batches of {}: {:.3} s, {:.0} transfers/s, {:.0} bytes/transfer",
        r.backend, r.transfers, r.batch_size, r.seconds, r.transfers_per_sec, r.bytes_per_transfer
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let transfers = arg(1, 409_500);
    let batch_size = arg(2, 8_190);
    let runs = arg(3, 3).max(1);

    let mut sqlite = Vec::new();
    for run in 1..=runs {
        let dir = tempfile::tempdir()?;
        let report = bench_sqlite_fresh(dir.path(), transfers, batch_size).await?;
        print_run(run, &report);
        sqlite.push(report);
    }
    summary("SQLite (WAL, synchronous=FULL)", &sqlite);

    let url = std::env::var("GUOKU_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let mut postgres = Vec::new();
    for run in 1..=runs {
        match bench_postgres_fresh(&url, transfers, batch_size).await? {
            Some(report) => {
                print_run(run, &report);
                postgres.push(report);
            }
            None => {
                println!("ledger durable on PostgreSQL: SKIPPED (no server at {url})");
                return Ok(());
            }
        }
    }
    summary("PostgreSQL", &postgres);
    Ok(())
}
