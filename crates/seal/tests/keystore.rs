//! The PIN-protected key store.

mod common;

use common::rng;
use guoku_seal::keystore::{DEFAULT_MAX_ATTEMPTS, KdfParams, KeyStoreFile, Pin, SealedKey};
use guoku_seal::{Error, KeyAlgorithm, SigningKey, Suite};

fn pin(s: &str) -> Pin {
    Pin::new(s).unwrap()
}

fn sealed(suite: Suite, max_attempts: u8, seed: u64) -> (SigningKey, SealedKey) {
    let mut r = rng(seed);
    let key = SigningKey::generate(suite.signature_algorithm(), &mut r).unwrap();
    let s = SealedKey::seal(
        &key,
        &pin("123456"),
        suite,
        KdfParams::default(),
        max_attempts,
        &mut r,
    )
    .unwrap();
    (key, s)
}

#[test]
fn right_pin_opens_for_both_suites() {
    for suite in Suite::ALL {
        let (key, mut s) = sealed(suite, DEFAULT_MAX_ATTEMPTS, 1);
        assert_eq!(s.suite(), suite);
        assert_eq!(s.params(), KdfParams::MINIMUM);
        let back = s.unlock(&pin("123456")).unwrap();
        assert_eq!(back.verifying_key(), key.verifying_key());
        assert_eq!(s.status().failed_attempts, 0);
        // The file starts with its magic and version, and holds no plaintext key.
        assert_eq!(&s.as_bytes()[..5], b"GKKS\x01");
        let der = key.to_pkcs8_der().unwrap();
        assert!(
            !s.as_bytes()
                .windows(16)
                .any(|w| der.windows(16).any(|d| d == w))
        );
    }
}

#[test]
fn wrong_pin_counts_and_right_pin_resets() {
    let (_key, mut s) = sealed(Suite::Sm, 5, 2);
    let err = s.unlock(&pin("654321")).unwrap_err();
    assert!(matches!(err, Error::WrongPin { remaining: 4 }), "{err:?}");
    assert!(err.is_refusal());
    let err = s.unlock(&pin("000000")).unwrap_err();
    assert!(matches!(err, Error::WrongPin { remaining: 3 }), "{err:?}");
    assert_eq!(s.status().failed_attempts, 2);
    s.unlock(&pin("123456")).unwrap();
    assert_eq!(s.status().failed_attempts, 0);
}

#[test]
fn locks_after_max_attempts_until_admin_reset() {
    let (key, mut s) = sealed(Suite::Intl, 2, 3);
    assert!(matches!(
        s.unlock(&pin("111111")),
        Err(Error::WrongPin { remaining: 1 })
    ));
    assert!(matches!(
        s.unlock(&pin("222222")),
        Err(Error::WrongPin { remaining: 0 })
    ));
    assert!(s.status().is_locked());
    // Even the right PIN is refused now.
    assert!(matches!(s.unlock(&pin("123456")), Err(Error::Locked)));
    s.admin_reset();
    let back = s.unlock(&pin("123456")).unwrap();
    assert_eq!(back.verifying_key(), key.verifying_key());
}

#[test]
fn file_store_persists_the_counter() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("signer.gkks");
    let mut r = rng(4);
    let key = SigningKey::generate(KeyAlgorithm::Sm2, &mut r).unwrap();
    let store = KeyStoreFile::create(
        &path,
        &key,
        &pin("246810"),
        Suite::Sm,
        KdfParams::default(),
        2,
        &mut r,
    )
    .unwrap();
    assert!(matches!(
        store.unlock(&pin("000000")),
        Err(Error::WrongPin { remaining: 1 })
    ));
    // A new handle (a new process) sees the failed attempt.
    let again = KeyStoreFile::open(&path);
    assert_eq!(again.status().unwrap().failed_attempts, 1);
    assert!(matches!(
        again.unlock(&pin("000001")),
        Err(Error::WrongPin { remaining: 0 })
    ));
    assert!(matches!(again.unlock(&pin("246810")), Err(Error::Locked)));
    assert!(KeyStoreFile::open(&path).status().unwrap().is_locked());
    again.admin_reset().unwrap();
    let back = again.unlock(&pin("246810")).unwrap();
    assert_eq!(back.verifying_key(), key.verifying_key());
    assert_eq!(again.status().unwrap().failed_attempts, 0);

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // Creating over an existing store is refused.
    let err = KeyStoreFile::create(
        &path,
        &key,
        &pin("246810"),
        Suite::Sm,
        KdfParams::default(),
        2,
        &mut r,
    )
    .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)));
}

#[test]
fn change_pin() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.gkks");
    let mut r = rng(5);
    let key = SigningKey::generate(KeyAlgorithm::Ed25519, &mut r).unwrap();
    let store = KeyStoreFile::create(
        &path,
        &key,
        &pin("old-pin-1"),
        Suite::Intl,
        KdfParams::default(),
        3,
        &mut r,
    )
    .unwrap();
    store
        .change_pin(&pin("old-pin-1"), &pin("new-pin-2"), &mut r)
        .unwrap();
    assert!(matches!(
        store.unlock(&pin("old-pin-1")),
        Err(Error::WrongPin { .. })
    ));
    let back = store.unlock(&pin("new-pin-2")).unwrap();
    assert_eq!(back.verifying_key(), key.verifying_key());
}

#[test]
fn altered_header_does_not_open() {
    // Raising max_attempts (or any header byte but the counter) breaks the AEAD.
    let (_key, s) = sealed(Suite::Sm, 3, 6);
    let mut bytes = s.as_bytes().to_vec();
    bytes[6] = 200;
    let mut altered = SealedKey::from_bytes(bytes).unwrap();
    assert!(matches!(
        altered.unlock(&pin("123456")),
        Err(Error::WrongPin { .. })
    ));
}

#[test]
fn weak_or_foreign_files_are_refused() {
    let mut r = rng(7);
    let key = SigningKey::generate(KeyAlgorithm::Sm2, &mut r).unwrap();
    let weak = KdfParams {
        m_cost_kib: 4096,
        t_cost: 2,
        p_cost: 1,
    };
    let err = SealedKey::seal(&key, &pin("123456"), Suite::Sm, weak, 5, &mut r).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    let err = SealedKey::seal(
        &key,
        &pin("123456"),
        Suite::Sm,
        KdfParams::default(),
        0,
        &mut r,
    )
    .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");

    let (_k, s) = sealed(Suite::Sm, 3, 8);
    let mut weakened = s.as_bytes().to_vec();
    weakened[8..12].copy_from_slice(&1024u32.to_be_bytes());
    assert!(matches!(
        SealedKey::from_bytes(weakened),
        Err(Error::Malformed { .. })
    ));
    let mut v2 = s.as_bytes().to_vec();
    v2[4] = 2;
    assert!(matches!(
        SealedKey::from_bytes(v2),
        Err(Error::Unsupported(_))
    ));
    assert!(matches!(
        SealedKey::from_bytes(b"-----BEGIN PRIVATE KEY-----".to_vec()),
        Err(Error::Malformed { .. })
    ));
}

#[test]
fn no_secret_in_debug_or_errors() {
    let p = pin("987654");
    assert_eq!(format!("{p:?}"), "Pin(****)");
    let (key, mut s) = sealed(Suite::Sm, 5, 9);
    let dbg = format!("{s:?}");
    assert!(!dbg.contains("123456"), "{dbg}");
    let err = s.unlock(&p).unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(
        !shown.contains("987654") && !shown.contains("123456"),
        "{shown}"
    );
    let _ = key;
    let secret = [0x5au8; 32];
    for alg in [
        KeyAlgorithm::Sm2,
        KeyAlgorithm::Ed25519,
        KeyAlgorithm::EcdsaP256,
    ] {
        let k = SigningKey::from_secret_bytes(alg, &secret).unwrap();
        let key_dbg = format!("{k:?} {k:#?}");
        assert!(key_dbg.contains("****"), "{key_dbg}");
        assert!(
            !key_dbg.contains("5a5a") && !key_dbg.contains("90, 90"),
            "{key_dbg}"
        );
    }
    assert!(Pin::new("12345").is_err());
}
