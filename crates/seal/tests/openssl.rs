//! Interoperation with the machine's OpenSSL 3 (`openssl` binary).
//!
//! Each test skips loudly when `openssl` is missing, and fails instead when `CI=true`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{Deployment, ISSUED, NOW, rng};
use guoku_seal::pki::{
    Certificate, Crl, Post, Purpose, Revocation, RevocationPolicy, Sm2CertId, ValidationOptions,
    validate_path,
};
use guoku_seal::{KeyAlgorithm, Signature, SigningKey, Suite, VerifyingKey};
use time::Duration;

/// The `openssl` binary, or `None` (after a loud message) when it is absent outside CI.
fn openssl() -> Option<PathBuf> {
    let candidates = [PathBuf::from("/usr/bin/openssl"), PathBuf::from("openssl")];
    for c in candidates {
        if let Ok(out) = Command::new(&c).arg("version").output()
            && out.status.success()
            && String::from_utf8_lossy(&out.stdout).starts_with("OpenSSL 3")
        {
            return Some(c);
        }
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("OpenSSL 3 is required in CI but `openssl` was not found");
    }
    eprintln!("!!! SKIPPED: OpenSSL 3 `openssl` binary not found; interop not tested !!!");
    None
}

fn run(bin: &Path, dir: &Path, args: &[&str]) -> Output {
    let out = Command::new(bin)
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run openssl");
    eprintln!(
        "$ openssl {}\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn ok(bin: &Path, dir: &Path, args: &[&str]) -> String {
    let out = run(bin, dir, args);
    assert!(out.status.success(), "openssl {args:?} failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn write(dir: &Path, name: &str, content: impl AsRef<[u8]>) {
    std::fs::write(dir.join(name), content).unwrap();
}

fn attime() -> String {
    NOW.unix_timestamp().to_string()
}

fn write_pki(dir: &Path, d: &Deployment, leaf: &Certificate, revoked: &[Certificate]) {
    write(dir, "root.pem", d.root.certificate().to_pem().unwrap());
    write(dir, "sub.pem", d.sub.certificate().to_pem().unwrap());
    write(dir, "leaf.pem", leaf.to_pem().unwrap());
    let revs: Vec<Revocation> = revoked
        .iter()
        .map(|c| Revocation {
            serial: c.serial(),
            revoked_at: ISSUED + Duration::days(1),
        })
        .collect();
    let root_crl = d
        .root
        .issue_crl(&[], 1, ISSUED, ISSUED + Duration::days(365))
        .unwrap();
    let sub_crl = d
        .sub
        .issue_crl(&revs, 1, ISSUED, ISSUED + Duration::days(365))
        .unwrap();
    write(
        dir,
        "crls.pem",
        format!(
            "{}{}",
            root_crl.to_pem().unwrap(),
            sub_crl.to_pem().unwrap()
        ),
    );
    write(dir, "sub-crl.pem", sub_crl.to_pem().unwrap());
}

#[test]
fn openssl_verifies_our_chain_and_crls() {
    let Some(bin) = openssl() else { return };
    for suite in Suite::ALL {
        let dir = tempfile::tempdir().unwrap();
        // OpenSSL 3.0 checks SM2 certificate signatures under the empty user ID only.
        let d = Deployment::with_sm2_id(suite, 100, Sm2CertId::Empty);
        let (_k, leaf) = d.person_under_sub(&mut rng(101), Post::Signer, 500);
        write_pki(dir.path(), &d, &leaf, &[]);
        let t = attime();
        let out = ok(
            &bin,
            dir.path(),
            &[
                "verify",
                "-attime",
                &t,
                "-CAfile",
                "root.pem",
                "-untrusted",
                "sub.pem",
                "leaf.pem",
            ],
        );
        assert!(out.contains("leaf.pem: OK"), "{suite}: {out}");
        let out = ok(
            &bin,
            dir.path(),
            &[
                "verify",
                "-attime",
                &t,
                "-crl_check_all",
                "-CRLfile",
                "crls.pem",
                "-CAfile",
                "root.pem",
                "-untrusted",
                "sub.pem",
                "leaf.pem",
            ],
        );
        assert!(out.contains("leaf.pem: OK"), "{suite}: {out}");
        // OpenSSL checks the CRL's signature itself.
        let out = run(
            &bin,
            dir.path(),
            &["crl", "-in", "sub-crl.pem", "-CAfile", "sub.pem", "-noout"],
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("verify OK"),
            "{suite}"
        );
    }
}

#[test]
fn openssl_sees_our_revocation_and_expiry() {
    let Some(bin) = openssl() else { return };
    for suite in Suite::ALL {
        let dir = tempfile::tempdir().unwrap();
        let d = Deployment::with_sm2_id(suite, 102, Sm2CertId::Empty);
        let (_k, leaf) = d.person_under_sub(&mut rng(103), Post::Maker, 501);
        write_pki(dir.path(), &d, &leaf, std::slice::from_ref(&leaf));
        let t = attime();
        let out = run(
            &bin,
            dir.path(),
            &[
                "verify",
                "-attime",
                &t,
                "-crl_check_all",
                "-CRLfile",
                "crls.pem",
                "-CAfile",
                "root.pem",
                "-untrusted",
                "sub.pem",
                "leaf.pem",
            ],
        );
        assert!(!out.status.success(), "{suite}: revoked leaf accepted");
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(text.contains("certificate revoked"), "{suite}: {text}");

        let late = (ISSUED + Duration::days(400)).unix_timestamp().to_string();
        let out = run(
            &bin,
            dir.path(),
            &[
                "verify",
                "-attime",
                &late,
                "-CAfile",
                "root.pem",
                "-untrusted",
                "sub.pem",
                "leaf.pem",
            ],
        );
        assert!(!out.status.success(), "{suite}: expired leaf accepted");
    }
}

#[test]
fn openssl_reads_our_certificate_fields() {
    let Some(bin) = openssl() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = Deployment::new(Suite::Sm, 104);
    let (_k, leaf) = d.person_under_sub(&mut rng(105), Post::Checker, 502);
    write_pki(dir.path(), &d, &leaf, &[]);
    let text = ok(
        &bin,
        dir.path(),
        &[
            "x509",
            "-in",
            "leaf.pem",
            "-noout",
            "-text",
            "-nameopt",
            "utf8,sep_comma_plus",
        ],
    );
    assert!(text.contains("SM2-with-SM3"), "{text}");
    assert!(
        text.contains("Digital Signature, Non Repudiation"),
        "{text}"
    );
    assert!(
        text.contains("OU=budget-unit") || text.contains("OU=finance"),
        "{text}"
    );
    assert!(text.contains("title=checker"), "{text}");
    assert!(text.contains("serialNumber=11000000000000000X"), "{text}");
    assert!(text.contains("CN=张三"), "{text}");
    let root = ok(
        &bin,
        dir.path(),
        &["x509", "-in", "root.pem", "-noout", "-text"],
    );
    assert!(root.contains("Certificate Sign, CRL Sign"), "{root}");
    assert!(root.contains("CA:TRUE"), "{root}");
}

#[test]
fn openssl_verifies_p256_tls_certificate_for_ssl_purposes() {
    let Some(bin) = openssl() else { return };
    for suite in Suite::ALL {
        let dir = tempfile::tempdir().unwrap();
        let d = Deployment::with_sm2_id(suite, 106, Sm2CertId::Empty);
        let (_k, tls) = d.tls(&d.sub, &mut rng(107), 503);
        write_pki(dir.path(), &d, &tls, &[]);
        let t = attime();
        for purpose in ["sslserver", "sslclient"] {
            let out = ok(
                &bin,
                dir.path(),
                &[
                    "verify",
                    "-attime",
                    &t,
                    "-purpose",
                    purpose,
                    "-CAfile",
                    "root.pem",
                    "-untrusted",
                    "sub.pem",
                    "leaf.pem",
                ],
            );
            assert!(out.contains("leaf.pem: OK"), "{suite} {purpose}: {out}");
        }
        let text = ok(
            &bin,
            dir.path(),
            &["x509", "-in", "leaf.pem", "-noout", "-text"],
        );
        assert!(text.contains("DNS:localhost"), "{text}");
        assert!(text.contains("IP Address:127.0.0.1"), "{text}");
        assert!(text.contains("TLS Web Server Authentication"), "{text}");
        assert!(text.contains("TLS Web Client Authentication"), "{text}");
    }
}

#[test]
fn openssl_reads_our_private_keys() {
    let Some(bin) = openssl() else { return };
    for alg in [
        KeyAlgorithm::Sm2,
        KeyAlgorithm::Ed25519,
        KeyAlgorithm::EcdsaP256,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::generate(alg, &mut rng(108)).unwrap();
        write(
            dir.path(),
            "key.pem",
            key.to_pkcs8_pem().unwrap().as_bytes(),
        );
        let public = ok(&bin, dir.path(), &["pkey", "-in", "key.pem", "-pubout"]);
        assert_eq!(
            VerifyingKey::from_pem(&public).unwrap(),
            *key.verifying_key(),
            "{alg}"
        );
        // OpenSSL writes the key back out in the same PKCS#8 form.
        let again = ok(&bin, dir.path(), &["pkey", "-in", "key.pem"]);
        let back = SigningKey::from_pkcs8_pem(&again).unwrap();
        assert_eq!(back.verifying_key(), key.verifying_key(), "{alg}");
        if alg == KeyAlgorithm::Sm2 {
            let text = ok(
                &bin,
                dir.path(),
                &["pkey", "-in", "key.pem", "-noout", "-text"],
            );
            assert!(text.contains("ASN1 OID: SM2"), "{text}");
        }
    }
}

#[test]
fn we_read_keys_generated_by_openssl() {
    let Some(bin) = openssl() else { return };
    let cases: [(&[&str], KeyAlgorithm); 4] = [
        (
            &[
                "genpkey",
                "-algorithm",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:SM2",
            ],
            KeyAlgorithm::Sm2,
        ),
        (&["genpkey", "-algorithm", "SM2"], KeyAlgorithm::Sm2),
        (&["genpkey", "-algorithm", "ed25519"], KeyAlgorithm::Ed25519),
        (
            &[
                "genpkey",
                "-algorithm",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ],
            KeyAlgorithm::EcdsaP256,
        ),
    ];
    for (args, alg) in cases {
        let dir = tempfile::tempdir().unwrap();
        let mut a = args.to_vec();
        a.extend(["-out", "key.pem"]);
        ok(&bin, dir.path(), &a);
        let pem = std::fs::read_to_string(dir.path().join("key.pem")).unwrap();
        let key = SigningKey::from_pkcs8_pem(&pem).unwrap();
        assert_eq!(key.algorithm(), alg);
        let public = ok(&bin, dir.path(), &["pkey", "-in", "key.pem", "-pubout"]);
        assert_eq!(
            VerifyingKey::from_pem(&public).unwrap(),
            *key.verifying_key()
        );
    }
}

/// `pkeyutl` arguments for signing or verifying raw bytes with `alg`. OpenSSL 3.0 needs
/// `-rawin` (sign the message, not a digest) and, for SM2, `-digest sm3` and an explicit
/// `distid`: without it pkeyutl uses an empty ID and the signatures do not match GM/T 0009.
fn pkeyutl_args(alg: KeyAlgorithm) -> Vec<&'static str> {
    match alg {
        KeyAlgorithm::Sm2 => vec![
            "-rawin",
            "-digest",
            "sm3",
            "-pkeyopt",
            "distid:1234567812345678",
        ],
        KeyAlgorithm::Ed25519 => vec!["-rawin"],
        KeyAlgorithm::EcdsaP256 => vec!["-rawin", "-digest", "sha256"],
    }
}

#[test]
fn openssl_signature_verifies_in_guoku() {
    let Some(bin) = openssl() else { return };
    let msg = "国库集中支付 5201 No.000042 金额 1234.56".as_bytes();
    for (curve, alg) in [
        (Some("SM2"), KeyAlgorithm::Sm2),
        (None, KeyAlgorithm::Ed25519),
        (Some("P-256"), KeyAlgorithm::EcdsaP256),
    ] {
        let dir = tempfile::tempdir().unwrap();
        match curve {
            Some(c) => ok(
                &bin,
                dir.path(),
                &[
                    "genpkey",
                    "-algorithm",
                    "ec",
                    "-pkeyopt",
                    &format!("ec_paramgen_curve:{c}"),
                    "-out",
                    "key.pem",
                ],
            ),
            None => ok(
                &bin,
                dir.path(),
                &["genpkey", "-algorithm", "ed25519", "-out", "key.pem"],
            ),
        };
        write(dir.path(), "msg.bin", msg);
        let mut args = vec![
            "pkeyutl", "-sign", "-inkey", "key.pem", "-in", "msg.bin", "-out", "sig.bin",
        ];
        args.extend(pkeyutl_args(alg));
        ok(&bin, dir.path(), &args);
        let sig = Signature::from_bytes(std::fs::read(dir.path().join("sig.bin")).unwrap());
        let key = SigningKey::from_pkcs8_pem(
            &std::fs::read_to_string(dir.path().join("key.pem")).unwrap(),
        )
        .unwrap();
        key.verifying_key().verify(msg, &sig).unwrap();
        assert!(
            key.verifying_key()
                .verify(b"another message", &sig)
                .is_err(),
            "{alg}"
        );
    }
}

#[test]
fn guoku_signature_verifies_in_openssl() {
    let Some(bin) = openssl() else { return };
    let msg = "国库集中支付 2301 申请划款".as_bytes();
    for alg in [
        KeyAlgorithm::Sm2,
        KeyAlgorithm::Ed25519,
        KeyAlgorithm::EcdsaP256,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::generate(alg, &mut rng(109)).unwrap();
        write(dir.path(), "pub.pem", key.verifying_key().to_pem().unwrap());
        write(dir.path(), "msg.bin", msg);
        write(dir.path(), "other.bin", b"tampered");
        write(dir.path(), "sig.bin", key.sign(msg).unwrap().as_bytes());
        let mut args = vec![
            "pkeyutl", "-verify", "-pubin", "-inkey", "pub.pem", "-in", "msg.bin", "-sigfile",
            "sig.bin",
        ];
        args.extend(pkeyutl_args(alg));
        let out = ok(&bin, dir.path(), &args);
        assert!(
            out.contains("Signature Verified Successfully"),
            "{alg}: {out}"
        );
        args[6] = "other.bin";
        let out = run(&bin, dir.path(), &args);
        assert!(
            !out.status.success(),
            "{alg}: openssl accepted a tampered message"
        );
    }
}

#[test]
fn we_read_crl_written_by_openssl_parser_round_trip() {
    // OpenSSL re-encodes our CRL (crl -outform PEM); we read it back unchanged.
    let Some(bin) = openssl() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = Deployment::new(Suite::Sm, 110);
    let (_k, leaf) = d.person_under_sub(&mut rng(111), Post::Maker, 504);
    write_pki(dir.path(), &d, &leaf, std::slice::from_ref(&leaf));
    let out = ok(&bin, dir.path(), &["crl", "-in", "sub-crl.pem"]);
    let crl = Crl::from_pem(&out).unwrap();
    assert!(crl.lists(&leaf.serial()));
    crl.verify_signature(d.sub.certificate()).unwrap();
}

/// With the standard GM/T 0015 ID, OpenSSL 3.0 can still check a one-level chain when told the
/// leaf's ID with `-vfyopt distid:` (it does not check the trust anchor's own signature).
#[test]
fn openssl_verifies_standard_id_leaf_with_vfyopt_distid() {
    let Some(bin) = openssl() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = Deployment::new(Suite::Sm, 112);
    let (_k, leaf) = d.org_under_root(&mut rng(113), 505);
    write(
        dir.path(),
        "root.pem",
        d.root.certificate().to_pem().unwrap(),
    );
    write(dir.path(), "leaf.pem", leaf.to_pem().unwrap());
    let t = attime();
    let out = ok(
        &bin,
        dir.path(),
        &[
            "verify",
            "-attime",
            &t,
            "-vfyopt",
            "distid:1234567812345678",
            "-CAfile",
            "root.pem",
            "leaf.pem",
        ],
    );
    assert!(out.contains("leaf.pem: OK"), "{out}");
}

/// A CA, a CRL and a signing certificate all made by OpenSSL 3.0 pass our validator.
#[test]
fn our_validator_accepts_an_openssl_made_sm2_chain() {
    let Some(bin) = openssl() else { return };
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let sm2 = ["-algorithm", "ec", "-pkeyopt", "ec_paramgen_curve:SM2"];
    ok(
        &bin,
        p,
        &[&["genpkey"][..], &sm2, &["-out", "ca.key"]].concat(),
    );
    ok(
        &bin,
        p,
        &[&["genpkey"][..], &sm2, &["-out", "leaf.key"]].concat(),
    );
    write(
        p,
        "ext.cnf",
        "[leaf]\nbasicConstraints=critical,CA:FALSE\n\
         keyUsage=critical,digitalSignature,nonRepudiation\n",
    );
    ok(
        &bin,
        p,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            "ca.key",
            "-sm3",
            "-subj",
            "/C=CN/O=ossl/CN=ossl CA",
            "-days",
            "3650",
            "-set_serial",
            "1",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-out",
            "ca.pem",
        ],
    );
    ok(
        &bin,
        p,
        &[
            "req",
            "-new",
            "-key",
            "leaf.key",
            "-sm3",
            "-subj",
            "/C=CN/O=ossl/OU=agent-bank/CN=ossl bank/serialNumber=102100099996",
            "-out",
            "leaf.csr",
        ],
    );
    ok(
        &bin,
        p,
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-sm3",
            "-set_serial",
            "7",
            "-days",
            "365",
            "-extfile",
            "ext.cnf",
            "-extensions",
            "leaf",
            "-out",
            "leaf.pem",
        ],
    );
    let read = |name: &str| std::fs::read_to_string(p.join(name)).unwrap();
    let ca = Certificate::from_pem(&read("ca.pem")).unwrap();
    let leaf = Certificate::from_pem(&read("leaf.pem")).unwrap();
    // OpenSSL picks its own validity from the real clock: validate inside it.
    let now = leaf.validity().not_before + Duration::hours(1);
    let path = validate_path(
        &leaf,
        &[],
        &ca,
        &ValidationOptions {
            now,
            purpose: Purpose::VoucherSigning,
            crls: &[],
            revocation: RevocationPolicy::CheckIfPresent,
        },
    )
    .unwrap();
    assert_eq!(path.subject.org_code.as_deref(), Some("102100099996"));
    assert_eq!(path.subject.role, Some(guoku_seal::pki::OrgRole::AgentBank));
}
