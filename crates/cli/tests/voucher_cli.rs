//! The `guoku voucher` commands, run as a user runs them.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn guoku(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_guoku"))
        .args(args)
        .env("GUOKU_LANG", "en")
        .env_remove("GUOKU_REGISTRY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the guoku binary runs");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn code(output: &Output) -> i32 {
    output.status.code().expect("exited normally")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn vt_codes() -> Vec<String> {
    let out = guoku(&["voucher", "types"], b"");
    assert_eq!(code(&out), 0);
    text(&out.stdout)
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().next().unwrap().to_owned())
        .collect()
}

#[test]
fn types_lists_the_registry() {
    let codes = vt_codes();
    for required in [
        "5201", "8202", "8207", "5105", "5106", "5108", "2301", "2302", "2203", "2204", "2206",
        "3502", "3507", "2507", "5501", "5502", "5503",
    ] {
        assert!(codes.iter().any(|c| c == required), "{required} missing");
    }
    let zh = guoku(&["--lang", "zh", "voucher", "types"], b"");
    assert!(text(&zh.stdout).contains("财政直接支付凭证"));
}

#[test]
fn every_sample_validates_in_every_form() {
    for vt in vt_codes() {
        for form in [
            vec!["--to", "xml"],
            vec!["--to", "json"],
            vec!["--to", "envelope", "--encoding", "gbk"],
            vec!["--receipt", "--to", "envelope"],
        ] {
            let mut args = vec!["voucher", "sample", vt.as_str()];
            args.extend(&form);
            let sample = guoku(&args, b"");
            assert_eq!(code(&sample), 0, "{vt} {form:?}: {}", text(&sample.stderr));
            let check = guoku(&["voucher", "validate", "-"], &sample.stdout);
            assert_eq!(code(&check), 0, "{vt} {form:?}: {}", text(&check.stdout));
            assert!(text(&check.stdout).contains("valid"));
        }
    }
}

#[test]
fn convert_round_trips_through_every_form() {
    let xml = guoku(&["voucher", "sample", "8202", "--seed", "3"], b"").stdout;
    let json = guoku(&["voucher", "convert", "--to", "json"], &xml).stdout;
    let gbk = guoku(
        &["voucher", "convert", "--to", "xml", "--encoding", "gbk"],
        &json,
    )
    .stdout;
    assert!(gbk.starts_with(b"<?xml version=\"1.0\" encoding=\"GBK\"?>"));
    assert!(
        std::str::from_utf8(&gbk).is_err(),
        "GBK bytes are not UTF-8"
    );
    let envelope = guoku(&["voucher", "convert", "--to", "envelope"], &gbk).stdout;
    let back = guoku(
        &["voucher", "convert", "--to", "xml", "--encoding", "utf-8"],
        &envelope,
    );
    assert_eq!(code(&back), 0, "{}", text(&back.stderr));
    assert_eq!(text(&back.stdout), text(&xml));
}

#[test]
fn an_invalid_voucher_exits_1_with_every_problem() {
    let xml = text(&guoku(&["voucher", "sample", "5201"], b"").stdout);
    let start = xml.find("<PayAmt>").unwrap();
    let end = xml[start..].find("</PayAmt>").unwrap() + start;
    let broken = format!("{}<PayAmt>1.5{}", &xml[..start], &xml[end..]).replace(
        "<AdmDivCode>430000</AdmDivCode>",
        "<AdmDivCode>43</AdmDivCode>",
    );
    let out = guoku(&["voucher", "validate", "-"], broken.as_bytes());
    assert_eq!(code(&out), 1);
    let report = text(&out.stdout);
    assert!(report.contains("invalid, problems: 2"), "{report}");
    assert!(report.contains("PayAmt: format"), "{report}");
    assert!(report.contains("AdmDivCode: format"), "{report}");
}

#[test]
fn unreadable_input_exits_2_and_wins_over_invalid() {
    let out = guoku(&["voucher", "validate", "-"], b"<Voucher><A>");
    assert_eq!(code(&out), 2);
    assert!(text(&out.stdout).contains("unreadable"));
    let out = guoku(&["voucher", "validate", "/nonexistent/voucher.xml"], b"");
    assert_eq!(code(&out), 2);
    assert!(text(&out.stdout).contains("cannot open"));
}

#[test]
fn an_unknown_type_is_refused_clearly() {
    let out = guoku(&["voucher", "sample", "9999"], b"");
    assert_eq!(code(&out), 2);
    assert!(text(&out.stderr).contains("no voucher type \"9999\""));
    let out = guoku(&["voucher", "validate", "-"], br#"{"VtCode":"9999"}"#);
    assert_eq!(code(&out), 1);
    assert!(text(&out.stdout).contains("unknown_type"));
}

#[test]
fn a_province_registry_replaces_the_builtin_one() {
    let dir = std::env::temp_dir().join(format!("guoku-registry-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("registry.toml");
    let builtin = guoku_voucher::registry::DEFAULT_REGISTRY_TOML;
    // This province's 5201 has no Hold2 field.
    let edited = builtin.replace(
        r#"header_last = ["Hold1?", "Hold2?"]"#,
        r#"header_last = ["Hold1?"]"#,
    );
    assert_ne!(edited, builtin);
    std::fs::write(&path, edited).unwrap();
    let sample = guoku(&["voucher", "sample", "5201"], b"").stdout;
    let registry = path.to_str().unwrap();
    let out = guoku(
        &["--registry", registry, "voucher", "validate", "-"],
        &sample,
    );
    assert_eq!(code(&out), 1, "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("Hold2: unknown_field"));
    std::fs::write(&path, "not = [toml").unwrap();
    let out = guoku(&["--registry", registry, "voucher", "types"], b"");
    assert_eq!(code(&out), 2);
    assert!(text(&out.stderr).contains("voucher type registry"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn help_and_version() {
    let out = guoku(&["--help"], b"");
    assert_eq!(code(&out), 0);
    assert!(text(&out.stdout).contains("voucher"));
    let out = guoku(&["--version"], b"");
    assert_eq!(code(&out), 0);
    assert!(text(&out.stdout).starts_with("guoku "));
}
