//! Digital envelopes: round trips for both suites, the wrong receiver, tampering, truncation,
//! and the SM2 key wrap read by OpenSSL 3.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{Deployment, ISSUED, agent_bank, finance, rng};
use der::Decode;
use guoku_seal::envelope::{Envelope, MAGIC, Receiver, ReceiverKey, VERSION, seal};
use guoku_seal::pki::{Certificate, Serial, Validity};
use guoku_seal::{Error, ErrorKind, KeyAlgorithm, SigningKey, Suite, SymmetricKey};

const PAYLOAD: &[u8] = "<Voucher><VoucherNo>5201-0001</VoucherNo><PayAmt>1234.56</PayAmt><PayeeAcctName>北京某某公司</PayeeAcctName></Voucher>".as_bytes();

/// An organisation's key and certificate issued by the deployment root.
fn party(
    d: &Deployment,
    org: guoku_seal::pki::Organisation,
    serial: u64,
) -> (SigningKey, Certificate) {
    let key = SigningKey::generate(d.suite.signature_algorithm(), &mut rng(5000 + serial)).unwrap();
    let cert = d
        .root
        .issue_organisation(
            key.verifying_key(),
            &org,
            &Serial::from_u64(serial).unwrap(),
            Validity::days_from(ISSUED, 365),
        )
        .unwrap();
    (key, cert)
}

/// A deployment with the finance department (the receiver, serial 10) and an agent bank
/// (serial 11).
struct Parties {
    d: Deployment,
    finance: (SigningKey, Certificate),
    bank: (SigningKey, Certificate),
}

fn parties(suite: Suite, seed: u64) -> Parties {
    let d = Deployment::new(suite, seed);
    let finance = party(&d, finance(), 10);
    let bank = party(&d, agent_bank(), 11);
    Parties { d, finance, bank }
}

fn sealed_for_finance(p: &Parties, payload: &[u8], seed: u64) -> Vec<u8> {
    let receiver = Receiver::from_certificate(p.d.suite, &p.finance.1).unwrap();
    seal(&receiver, payload, &mut rng(seed)).unwrap()
}

fn finance_key(p: &Parties) -> ReceiverKey {
    ReceiverKey::new(p.d.suite, &p.finance.1, &p.finance.0).unwrap()
}

#[test]
fn round_trip_for_both_suites() {
    for (suite, seed) in [(Suite::Sm, 6001), (Suite::Intl, 6002)] {
        let p = parties(suite, seed);
        let key = finance_key(&p);
        for payload in [&b""[..], b"x", PAYLOAD, &vec![0xa5; 70_000]] {
            let bytes = sealed_for_finance(&p, payload, seed + 10);
            assert_eq!(&key.open(&bytes).unwrap()[..], payload, "{suite}");

            let envelope = Envelope::decode(&bytes).unwrap();
            assert_eq!(envelope.suite(), suite);
            assert_eq!(envelope.receiver(), key.name());
            assert_eq!(envelope.receiver().serial, Serial::from_u64(10).unwrap());
            assert_eq!(envelope.receiver().subject, p.finance.1.subject());
            assert_eq!(envelope.payload_len(), payload.len());
            assert_eq!(envelope.encode(), bytes);
            assert_eq!(&bytes[..4], &MAGIC);
            assert_eq!(bytes[4], VERSION);
            // The payload does not appear in clear.
            if payload.len() > 8 {
                assert!(!bytes.windows(payload.len()).any(|w| w == payload));
            }
        }
        // Two envelopes of the same payload differ (fresh content key, nonce, ephemeral key).
        assert_ne!(
            sealed_for_finance(&p, PAYLOAD, 1),
            sealed_for_finance(&p, PAYLOAD, 2)
        );
    }
}

#[test]
fn sm_key_wrap_is_a_gmt_0009_sm2_cipher() {
    #[derive(der::Sequence)]
    struct Sm2Cipher {
        x: der::asn1::Uint,
        y: der::asn1::Uint,
        hash: der::asn1::OctetString,
        cipher_text: der::asn1::OctetString,
    }
    let p = parties(Suite::Sm, 6010);
    let envelope = Envelope::decode(&sealed_for_finance(&p, PAYLOAD, 6011)).unwrap();
    let cipher = Sm2Cipher::from_der(envelope.wrapped_key()).unwrap();
    assert!(cipher.x.as_bytes().len() <= 32 && cipher.y.as_bytes().len() <= 32);
    assert_eq!(cipher.hash.as_bytes().len(), 32, "C3 is an SM3 digest");
    assert_eq!(cipher.cipher_text.as_bytes().len(), 16, "C2 is the SM4 key");

    let intl = parties(Suite::Intl, 6012);
    let envelope = Envelope::decode(&sealed_for_finance(&intl, PAYLOAD, 6013)).unwrap();
    assert_eq!(envelope.wrapped_key().len(), 32 + 32 + 16);
}

#[test]
fn the_wrong_receiver_cannot_open_it() {
    for (suite, seed) in [(Suite::Sm, 6020), (Suite::Intl, 6021)] {
        let p = parties(suite, seed);
        let bytes = sealed_for_finance(&p, PAYLOAD, seed + 1);
        let bank = ReceiverKey::new(suite, &p.bank.1, &p.bank.0).unwrap();

        // Named for finance: the bank is told so.
        let err = bank.open(&bytes).unwrap_err();
        assert!(
            matches!(err, Error::WrongRecipient { .. }),
            "{suite}: {err}"
        );
        assert!(err.is_refusal());
        assert!(err.to_string().contains(&p.finance.1.subject()), "{err}");

        // Relabelled for the bank: the content key is wrapped to finance's key, so the bank
        // cannot unwrap it.
        let relabelled = relabel(&bytes, &p.finance.1, &p.bank.1);
        assert_eq!(
            Envelope::decode(&relabelled).unwrap().receiver(),
            bank.name()
        );
        assert!(matches!(
            bank.open(&relabelled),
            Err(Error::DecryptionFailed)
        ));
    }
}

#[test]
fn the_receiver_name_is_bound_to_the_ciphertext() {
    // Finance's certificate is renewed with the same key: the key could unwrap the content
    // key, but an envelope for the old certificate relabelled for the new one must not open,
    // because the name is associated data.
    for (suite, seed) in [(Suite::Sm, 6030), (Suite::Intl, 6031)] {
        let p = parties(suite, seed);
        let renewed =
            p.d.root
                .issue_organisation(
                    p.finance.0.verifying_key(),
                    &finance(),
                    &Serial::from_u64(12).unwrap(),
                    Validity::days_from(ISSUED, 365),
                )
                .unwrap();
        let renewed_key = ReceiverKey::new(suite, &renewed, &p.finance.0).unwrap();
        let bytes = sealed_for_finance(&p, PAYLOAD, seed + 1);
        let relabelled = relabel(&bytes, &p.finance.1, &renewed);
        assert_eq!(
            Envelope::decode(&relabelled).unwrap().receiver(),
            renewed_key.name()
        );
        assert!(matches!(
            renewed_key.open(&relabelled),
            Err(Error::DecryptionFailed)
        ));
        // The control: the renewed certificate's own envelopes open.
        let receiver = Receiver::from_certificate(suite, &renewed).unwrap();
        let own = seal(&receiver, PAYLOAD, &mut rng(seed + 2)).unwrap();
        assert_eq!(&renewed_key.open(&own).unwrap()[..], PAYLOAD);
    }
}

/// Replace the receiver name of `from` in an encoded envelope by the name of `to`, keeping
/// everything else byte for byte.
fn relabel(bytes: &[u8], from: &Certificate, to: &Certificate) -> Vec<u8> {
    let name_len = |c: &Certificate| 1 + c.serial().as_bytes().len() + 2 + c.subject().len() + 32;
    let encode_name = |c: &Certificate, suite: Suite| {
        let key = guoku_seal::hash(
            suite,
            &der::Encode::to_der(c.x509().tbs_certificate().subject_public_key_info()).unwrap(),
        );
        let mut out = vec![c.serial().as_bytes().len() as u8];
        out.extend_from_slice(c.serial().as_bytes());
        out.extend_from_slice(&(c.subject().len() as u16).to_be_bytes());
        out.extend_from_slice(c.subject().as_bytes());
        out.extend_from_slice(&key);
        out
    };
    let suite = Envelope::decode(bytes).unwrap().suite();
    let mut out = bytes[..6].to_vec();
    out.extend(encode_name(to, suite));
    out.extend_from_slice(&bytes[6 + name_len(from)..]);
    out
}

#[test]
fn every_single_bit_flip_is_rejected() {
    for (suite, seed) in [(Suite::Sm, 6040), (Suite::Intl, 6041)] {
        let p = parties(suite, seed);
        let key = finance_key(&p);
        let bytes = sealed_for_finance(&p, b"pay 1234.56 to account 6222 0200 0000 0001", seed + 1);
        assert!(key.open(&bytes).is_ok());
        let header_len = bytes.len() - Envelope::decode(&bytes).unwrap().payload_len() - 16;
        let mut decryption_failures = 0;
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut flipped = bytes.clone();
                flipped[i] ^= 1 << bit;
                let err = match key.open(&flipped) {
                    Ok(_) => panic!("{suite}: flipping bit {bit} of byte {i} went unnoticed"),
                    Err(e) => e,
                };
                assert!(
                    matches!(
                        err,
                        Error::Malformed { .. }
                            | Error::Unsupported(_)
                            | Error::WrongRecipient { .. }
                            | Error::DecryptionFailed
                    ),
                    "{suite}: byte {i} bit {bit}: {err:?}"
                );
                if i >= header_len {
                    // Inside the ciphertext only the AEAD can notice.
                    assert!(
                        matches!(err, Error::DecryptionFailed),
                        "{suite}: byte {i}: {err:?}"
                    );
                }
                if matches!(err, Error::DecryptionFailed) {
                    decryption_failures += 1;
                }
            }
        }
        // Wrapped key, nonce and ciphertext are checked cryptographically, not by parsing.
        assert!(
            decryption_failures > 8 * (16 + 12),
            "{suite}: {decryption_failures}"
        );
    }
}

#[test]
fn truncated_input_is_rejected_with_a_clear_error() {
    for (suite, seed) in [(Suite::Sm, 6050), (Suite::Intl, 6051)] {
        let p = parties(suite, seed);
        let key = finance_key(&p);
        let bytes = sealed_for_finance(&p, PAYLOAD, seed + 1);
        for len in 0..bytes.len() {
            let err = key.open(&bytes[..len]).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{suite}: {len}: {err}");
            let message = err.to_string();
            assert!(
                message.contains("malformed envelope: truncated:"),
                "{suite}: prefix of {len} bytes: {message}"
            );
        }
        assert_eq!(
            Envelope::decode(&[]).unwrap_err().to_string(),
            "malformed envelope: truncated: magic needs 4 bytes at offset 0, 0 remain"
        );
        // A trailing byte is refused too.
        let mut longer = bytes.clone();
        longer.push(0);
        let err = key.open(&longer).unwrap_err();
        assert!(
            err.to_string().contains("1 bytes follow the ciphertext"),
            "{err}"
        );
    }
}

#[test]
fn header_fields_are_checked() {
    let p = parties(Suite::Intl, 6060);
    let bytes = sealed_for_finance(&p, PAYLOAD, 6061);
    let mut other_version = bytes.clone();
    other_version[4] = 2;
    assert!(matches!(
        Envelope::decode(&other_version),
        Err(Error::Unsupported(m)) if m == "envelope version 2"
    ));
    let mut other_magic = bytes.clone();
    other_magic[0] = b'X';
    assert!(matches!(
        Envelope::decode(&other_magic),
        Err(Error::Malformed { .. })
    ));
    // The suite byte says `sm`: the intl key refuses it as not addressed to it.
    let mut other_suite = bytes.clone();
    other_suite[5] = 1;
    assert!(matches!(
        finance_key(&p).open(&other_suite),
        Err(Error::WrongRecipient { .. })
    ));
}

#[test]
fn keys_and_certificates_of_the_wrong_kind_are_refused() {
    let sm = parties(Suite::Sm, 6070);
    let intl = parties(Suite::Intl, 6071);
    // An SM2 certificate is not an intl receiver, nor an Ed25519 one an sm receiver.
    assert!(matches!(
        Receiver::from_certificate(Suite::Intl, &sm.finance.1),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        Receiver::from_certificate(Suite::Sm, &intl.finance.1),
        Err(Error::InvalidArgument(_))
    ));
    // The private key must match the certificate.
    assert!(matches!(
        ReceiverKey::new(Suite::Sm, &sm.finance.1, &sm.bank.0),
        Err(Error::InvalidArgument(_))
    ));
    // A P-256 (TLS) key is neither.
    let p256 = SigningKey::generate(KeyAlgorithm::EcdsaP256, &mut rng(6072)).unwrap();
    assert!(matches!(
        ReceiverKey::new(Suite::Intl, &intl.finance.1, &p256),
        Err(Error::InvalidArgument(_))
    ));
    // Debug never shows the secret.
    let key = finance_key(&sm);
    assert!(format!("{key:?}").contains("****"));
}

// ----- interoperation with OpenSSL 3 ---------------------------------------------------------

/// OpenSSL 3, or `None` after a loud message when it is absent outside CI.
fn openssl() -> Option<PathBuf> {
    let bin = PathBuf::from("openssl");
    let found = Command::new(&bin)
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success() && o.stdout.starts_with(b"OpenSSL 3"));
    if found {
        return Some(bin);
    }
    assert_ne!(
        std::env::var("CI").as_deref(),
        Ok("true"),
        "OpenSSL 3 is required in CI"
    );
    eprintln!("!!! SKIPPED: OpenSSL 3 not found; the SM2 key wrap was not checked against it !!!");
    None
}

#[test]
fn openssl_unwraps_the_sm2_content_key() {
    let Some(openssl) = openssl() else { return };
    let p = parties(Suite::Sm, 6080);
    let bytes = sealed_for_finance(&p, PAYLOAD, 6081);
    let envelope = Envelope::decode(&bytes).unwrap();

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("key.pem"),
        p.finance.0.to_pkcs8_pem().unwrap().as_bytes(),
    )
    .unwrap();
    std::fs::write(dir.path().join("wrapped.der"), envelope.wrapped_key()).unwrap();
    let out = Command::new(&openssl)
        .current_dir(dir.path())
        .args([
            "pkeyutl",
            "-decrypt",
            "-inkey",
            "key.pem",
            "-in",
            "wrapped.der",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl pkeyutl -decrypt: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let content_key = out.stdout;
    assert_eq!(content_key.len(), 16);

    // With the key OpenSSL recovered, the payload decrypts by the documented layout: nonce
    // and ciphertext length before the ciphertext, everything before it as associated data.
    let ciphertext_start = bytes.len() - envelope.payload_len() - 16;
    let nonce: [u8; 12] = bytes[ciphertext_start - 16..ciphertext_start - 4]
        .try_into()
        .unwrap();
    let key = SymmetricKey::from_bytes(Suite::Sm, &content_key).unwrap();
    let payload = key
        .decrypt(
            &nonce,
            &bytes[..ciphertext_start],
            &bytes[ciphertext_start..],
        )
        .unwrap();
    assert_eq!(&payload[..], PAYLOAD);
}
