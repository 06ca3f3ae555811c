//! `guoku audit` as an operator and an auditor run it: seal a head, verify the log, prove a
//! voucher's leaves and check the proof elsewhere; exit codes 0 (verified), 1 (altered or
//! not proven), 2 (cannot run). The edits themselves are covered by the node's tests.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use guoku_node::demo::{DEMO_PIN, Demo, DemoOptions, Payee};
use guoku_node::exchange::InMemory;
use guoku_node::party::Party;
use guoku_seal::Suite;
use time::OffsetDateTime;

fn guoku(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_guoku"))
        .args(args)
        .env("GUOKU_KEY_PIN", DEMO_PIN)
        .env("GUOKU_LANG", "en")
        .output()
        .expect("guoku runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_verify_prove_check() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("guoku-data");
    let options = DemoOptions {
        dir: data.clone(),
        fresh: false,
        suite: Suite::Sm,
        postgres: None,
    };
    let demo = Demo::open(&options, Arc::new(OffsetDateTime::now_utc))
        .await
        .unwrap();
    let today = Party::<InMemory>::business_date(OffsetDateTime::now_utc());
    let unit = demo.province.units[4].clone();
    let voucher = demo
        .direct_voucher(
            &unit.code,
            "321.00".parse().unwrap(),
            &Payee::demo(9),
            today,
        )
        .unwrap();
    let number = voucher.key().voucher_no;
    let indicator = demo.indicator(&unit.code).unwrap();
    let bank = demo.province.direct_bank().code.to_owned();
    let month = u8::from(OffsetDateTime::now_utc().month());
    demo.finance
        .issue_direct(voucher, &indicator, month, &bank, "maker")
        .await
        .unwrap();
    demo.settle(20).await.unwrap();
    let finance = demo.finance.org_code().to_owned();
    drop(demo);

    let config = data.join(&finance).join("node.toml");
    let config = config.to_str().unwrap();
    let head = guoku(&["audit", "head", "--config", config]);
    assert!(head.status.success(), "{}", text(&head));
    assert!(text(&head).contains("signed tree head"), "{}", text(&head));
    let again = guoku(&["audit", "head", "--config", config]);
    assert!(again.status.success());
    assert!(
        text(&again).contains("nothing logged since"),
        "{}",
        text(&again)
    );

    let verify = guoku(&["audit", "verify", "--config", config]);
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify));
    assert!(text(&verify).contains("verified"));

    let proof = dir.path().join("proof.json");
    let prove = guoku(&[
        "audit",
        "prove",
        "--config",
        config,
        "--voucher",
        &number,
        "--out",
        proof.to_str().unwrap(),
    ]);
    assert!(prove.status.success(), "{}", text(&prove));
    let root = data.join("pki").join("root.der");
    let check = |proof: &Path| {
        guoku(&[
            "audit",
            "check",
            "--proof",
            proof.to_str().unwrap(),
            "--root",
            root.to_str().unwrap(),
        ])
    };
    let checked = check(&proof);
    assert_eq!(checked.status.code(), Some(0), "{}", text(&checked));

    // The same proof with one hex digit of a leaf changed does not check.
    let doc = std::fs::read_to_string(&proof).unwrap();
    let at = doc.find("\"data\": \"").unwrap() + "\"data\": \"".len() + 40;
    let mut bytes = doc.into_bytes();
    bytes[at] = if bytes[at] == b'a' { b'b' } else { b'a' };
    let forged = dir.path().join("forged.json");
    std::fs::write(&forged, bytes).unwrap();
    assert_eq!(check(&forged).status.code(), Some(1));
    // Not a proof at all.
    std::fs::write(&forged, "{}").unwrap();
    assert_eq!(check(&forged).status.code(), Some(1));
    // A voucher the log does not know, and a missing config: cannot run.
    let unknown = guoku(&["audit", "prove", "--config", config, "--voucher", "NO-SUCH"]);
    assert_eq!(unknown.status.code(), Some(2), "{}", text(&unknown));
    let missing = guoku(&["audit", "verify", "--config", "/nonexistent/node.toml"]);
    assert_eq!(missing.status.code(), Some(2));
}
