//! Signing figures for both suites, compared with `openssl speed sm2` and the targets of
//! DESIGN.md: `cargo run --release --example bench_sign -p guoku-seal`.
//!
//! Set `GUOKU_BENCH_SKIP_OPENSSL=1` to skip the ~6 s OpenSSL run.

use guoku_seal::Suite;
use guoku_seal::bench::{BenchConfig, openssl_speed_sm2, run_suite};

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = BenchConfig::default();
    println!(
        "load average before: {} ({} threads for batches)",
        load(),
        config.parallelism.threads
    );
    let openssl = if std::env::var_os("GUOKU_BENCH_SKIP_OPENSSL").is_some() {
        None
    } else {
        openssl_speed_sm2(3)
    };
    match openssl {
        Some(o) => println!(
            "openssl speed -seconds 3 sm2: {:.0} sign/s, {:.0} verify/s",
            o.sign_per_s, o.verify_per_s
        ),
        None => println!("openssl speed sm2: not available"),
    }
    for suite in Suite::ALL {
        let r = run_suite(suite, &config)?;
        println!("{r}");
        if suite == Suite::Sm {
            if let Some(o) = openssl {
                let ratio = r.sign_per_s / o.sign_per_s;
                println!(
                    "  target SM2 sign >= 5 x OpenSSL ({:.0}/s): {:.2} x -> {}",
                    5.0 * o.sign_per_s,
                    ratio,
                    if ratio >= 5.0 { "met" } else { "MISSED" }
                );
            }
            let b = r.batch_sign_s.median();
            println!(
                "  target 2,000 SM2 sign+seal <= 0.25 s: median {b:.3} s -> {}",
                if b <= 0.25 { "met" } else { "MISSED" }
            );
        }
        let m = r.batch_mode_s.median();
        println!(
            "  target batch-signature mode 10,000 <= 0.1 s: median {m:.3} s -> {}",
            if m <= 0.1 { "met" } else { "MISSED" }
        );
    }
    println!("load average after: {}", load());
    Ok(())
}
