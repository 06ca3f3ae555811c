//! `guoku sign` and `guoku verify` over a CA made by `guoku pki`: a batch of 5201s goes
//! through maker, checker and seal; incomplete, tampered and wrongly signed vouchers fail.

use std::path::Path;
use std::process::{Command, Output};

fn guoku(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_guoku"))
        .args(args)
        .current_dir(dir)
        .env("GUOKU_CA_PIN", "ca-pin-123")
        .env("GUOKU_KEY_PIN", "key-pin-123")
        .env("GUOKU_LANG", "en")
        .env_remove("GUOKU_REGISTRY")
        .output()
        .expect("the guoku binary runs")
}

fn ok(output: Output) -> String {
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn verify(dir: &Path, file: &str) -> (i32, String) {
    let out = guoku(
        dir,
        &["verify", file, "--ca", "pki/ca.crt", "--crl", "pki/ca.crl"],
    );
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn a_batch_is_signed_sealed_and_verified() {
    let dir = std::env::temp_dir().join(format!("guoku-sign-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    ok(guoku(
        &dir,
        &["pki", "init", "--org", "湖南省财政厅", "--name", "根CA"],
    ));
    let finance = [
        "--role",
        "finance",
        "--code",
        "11430000006",
        "--org",
        "湖南省财政厅",
    ];
    let issue = |extra: &[&str]| {
        let mut args = vec!["pki", "issue"];
        args.extend(extra);
        args.extend(finance);
        ok(guoku(&dir, &args));
    };
    issue(&["--kind", "org", "--out", "finance"]);
    issue(&[
        "--kind",
        "person",
        "--name",
        "张三",
        "--post",
        "maker",
        "--staff-id",
        "1",
        "--out",
        "maker",
    ]);
    issue(&[
        "--kind",
        "person",
        "--name",
        "李四",
        "--post",
        "checker",
        "--staff-id",
        "2",
        "--out",
        "checker",
    ]);
    issue(&[
        "--kind",
        "person",
        "--name",
        "王五",
        "--post",
        "signer",
        "--staff-id",
        "3",
        "--out",
        "signer",
    ]);
    ok(guoku(
        &dir,
        &[
            "pki",
            "seal",
            "--kind",
            "ywzyz",
            "--name",
            "财政业务专用章",
            "--maker-key",
            "finance.key",
            "--maker-cert",
            "finance.crt",
            "--holder",
            "signer.crt",
            "--out",
            "finance.seal",
        ],
    ));
    for seed in ["1", "2", "3"] {
        let out = ok(guoku(
            &dir,
            &[
                "voucher", "sample", "5201", "--to", "envelope", "--seed", seed,
            ],
        ));
        std::fs::write(dir.join(format!("v{seed}.xml")), out).unwrap();
    }
    let (code, _) = verify(&dir, "v1.xml");
    assert_eq!(code, 1, "an unsigned voucher is not complete");

    ok(guoku(
        &dir,
        &[
            "sign",
            "v1.xml",
            "v2.xml",
            "v3.xml",
            "--key",
            "maker.key",
            "--cert",
            "maker.crt",
            "--out",
            "s1.xml",
        ],
    ));
    // The maker cannot take the checker's position.
    let out = guoku(
        &dir,
        &[
            "sign",
            "s1.xml",
            "--key",
            "maker.key",
            "--cert",
            "maker.crt",
            "--out",
            "x.xml",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        !dir.join("x.xml").exists(),
        "a refused batch writes nothing"
    );
    ok(guoku(
        &dir,
        &[
            "sign",
            "s1.xml",
            "--key",
            "checker.key",
            "--cert",
            "checker.crt",
            "--out",
            "s2.xml",
        ],
    ));
    let (code, report) = verify(&dir, "s2.xml");
    assert_eq!(code, 1, "{report}");
    assert!(report.contains("3: missing"), "{report}");
    ok(guoku(
        &dir,
        &[
            "sign",
            "s2.xml",
            "--key",
            "signer.key",
            "--cert",
            "signer.crt",
            "--seal",
            "finance.seal",
            "--out",
            "s3.xml",
        ],
    ));
    let (code, report) = verify(&dir, "s3.xml");
    assert_eq!(code, 0, "{report}");
    assert_eq!(report.matches("complete and valid").count(), 3, "{report}");
    assert!(report.contains("seal \"财政业务专用章\""), "{report}");

    // A wrong PIN unlocks nothing.
    let out = Command::new(env!("CARGO_BIN_EXE_guoku"))
        .args([
            "sign",
            "s2.xml",
            "--key",
            "signer.key",
            "--cert",
            "signer.crt",
            "--seal",
            "finance.seal",
        ])
        .current_dir(&dir)
        .env("GUOKU_KEY_PIN", "wrong-pin-1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("wrong PIN") && log.contains("remaining=4"),
        "the refusal is logged: {log}"
    );
    assert!(
        !log.contains("wrong-pin-1"),
        "the PIN itself is never logged: {log}"
    );

    // A changed payee in one voucher fails that voucher only.
    let signed = std::fs::read(dir.join("s3.xml")).unwrap();
    let (decoded, encoding) =
        guoku_voucher::parse_envelope(&signed, &guoku_voucher::Limits::default()).unwrap();
    let mut tampered = decoded.clone();
    tampered.bodies[1]
        .voucher
        .header
        .set("PayeeAcctName", "别人的公司");
    std::fs::write(
        dir.join("t.xml"),
        guoku_voucher::write_envelope(&tampered, encoding),
    )
    .unwrap();
    let (code, report) = verify(&dir, "t.xml");
    assert_eq!(code, 1, "{report}");
    assert_eq!(
        report.matches("NOT complete and valid").count(),
        1,
        "{report}"
    );

    // Revoking the checker's certificate makes every voucher they checked fail.
    let listed = ok(guoku(&dir, &["pki", "list"]));
    let checker = listed
        .lines()
        .find(|l| l.contains("李四"))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    ok(guoku(&dir, &["pki", "revoke", &checker]));
    let (code, report) = verify(&dir, "s3.xml");
    assert_eq!(code, 1, "{report}");
    assert!(report.to_lowercase().contains("revoked"), "{report}");
    std::fs::remove_dir_all(&dir).unwrap();
}
