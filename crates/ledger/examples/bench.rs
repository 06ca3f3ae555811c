//! Measures the in-memory throughput of the ledger engine.
//!
//! `cargo run --release --example bench -p guoku-ledger -- [transfers] [batch_size] [accounts] [runs]`
//!
//! Defaults: 4,000,000 transfers in batches of 8,190 over 10,000 accounts, 3 runs. Each run
//! starts from an empty state; the best and the median run are printed, since other work on
//! a shared machine only ever slows a run down.

use guoku_ledger::bench::bench_in_memory;

fn arg(index: usize, default: usize) -> usize {
    match std::env::args().nth(index) {
        None => default,
        Some(text) => text.parse().unwrap_or_else(|_| {
            eprintln!("argument {index} must be a whole number, got {text:?}");
            std::process::exit(2);
        }),
    }
}

fn main() {
    let transfers = arg(1, 4_000_000);
    let batch_size = arg(2, 8_190);
    let accounts = arg(3, 10_000);
    let runs = arg(4, 3).max(1);
    let mut rates = Vec::with_capacity(runs);
    for run in 1..=runs {
        let report = bench_in_memory(transfers, batch_size, accounts);
        println!(
            "run {run}: {} transfers in batches of {batch_size} over {accounts} accounts: {:.3} s, {:.0} transfers/s",
            report.transfers, report.seconds, report.transfers_per_sec
        );
        rates.push(report.transfers_per_sec);
    }
    rates.sort_by(f64::total_cmp);
    println!(
        "ledger in memory: best {:.0} transfers/s, median {:.0} transfers/s",
        rates[rates.len() - 1],
        rates[rates.len() / 2]
    );
}
