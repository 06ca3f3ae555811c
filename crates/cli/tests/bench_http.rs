//! `guoku bench http` with a tiny load: it signs in through the portal's forms, sends every
//! request of the mix, and prints figures that parse, with no request failed. (How fast is
//! not checked here: benchmarks print figures, tests check behaviour.)

use std::process::Command;

/// The figures of one row of the latency table: count, p50, p90, p99, p999, max.
fn row(out: &str, name: &str) -> (u64, [f64; 5]) {
    let line = out
        .lines()
        .find(|l| l.trim_start().starts_with(name))
        .unwrap_or_else(|| panic!("no row {name:?} in:\n{out}"));
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert!(fields.len() >= 6, "{line}");
    let numbers = &fields[fields.len() - 6..];
    let count = numbers[0]
        .parse()
        .unwrap_or_else(|_| panic!("count in {line}"));
    let mut ms = [0.0; 5];
    for (slot, text) in ms.iter_mut().zip(&numbers[1..]) {
        *slot = text
            .parse()
            .unwrap_or_else(|_| panic!("a figure in {line}"));
    }
    (count, ms)
}

#[test]
fn a_tiny_load_is_answered_without_errors_and_its_figures_parse() {
    let output = Command::new(env!("CARGO_BIN_EXE_guoku"))
        .args([
            "bench",
            "http",
            "--rate",
            "50",
            "--seconds",
            "1",
            "--connections",
            "4",
        ])
        .env("GUOKU_LOG", "error")
        .output()
        .expect("guoku runs");
    let out = String::from_utf8_lossy(&output.stdout);
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{out}\n{err}");

    assert!(out.contains("errors: none"), "{out}");
    let sent = out
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("sent "))
        .unwrap_or_else(|| panic!("no 'sent' line in:\n{out}"));
    assert!(sent.starts_with("50 requests"), "{sent}");
    let (count, overall) = row(&out, "overall");
    assert_eq!(count, 50);
    assert!(
        overall.windows(2).all(|w| w[0] <= w[1]),
        "quantiles rise: {overall:?}"
    );
    // Every route of the mix was asked (each is 1 or 2 of every 10 requests).
    let mut per_route = 0;
    for name in [
        "GET /healthz",
        "GET /api/v1/vouchers?",
        "GET /api/v1/vouchers/{key}",
        "GET /o/{org}",
        "GET /metrics",
        "GET /assets/portal.css",
        "POST /lang",
    ] {
        let (n, _) = row(&out, name);
        assert!(n >= 5, "{name}: {n}");
        per_route += n;
    }
    assert_eq!(per_route, 50);
    assert!(out.contains("CPU of the process"), "{out}");
    assert!(
        out.contains("against the target of ≤ 20 ms"),
        "the p99 line: {out}"
    );
}
