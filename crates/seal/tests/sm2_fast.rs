//! The SM2 fast path of `SigningKey` (the cached `(1 + d)⁻¹` and `Z_A`, and the batch path
//! that converts many `k·G` to affine form with one inversion) against the `sm2` crate: every
//! signature must be byte-for-byte the crate's own (same RFC 6979 nonce, same `Z_A`), and the
//! crate's verifier must accept it. Seeds are fixed; failures name the seed and the case.

mod common;

use common::{Deployment, NOW, rng};
use guoku_seal::batch::{Parallelism, PositionSigner, VoucherToSign, sign_vouchers};
use guoku_seal::pki::RevocationPolicy;
use guoku_seal::voucher::{
    SignaturePosition, TrustContext, VoucherSignature, sign_voucher, verify_voucher,
};
use guoku_seal::{KeyAlgorithm, SM2_DEFAULT_ID, Signature, SigningKey, Suite};
use hex_literal::hex;
use rand::rngs::StdRng;
use rand::{Rng, RngExt, SeedableRng};
use signature::{RandomizedSigner, Signer, Verifier};

/// A random valid SM2 secret and our key and the crate's key (under `id`) for it.
fn key_pair(rng: &mut StdRng, id: &str) -> ([u8; 32], SigningKey, sm2::dsa::SigningKey) {
    loop {
        let mut secret = [0u8; 32];
        rng.fill_bytes(&mut secret);
        if let (Ok(ours), Ok(theirs)) = (
            SigningKey::from_secret_bytes(KeyAlgorithm::Sm2, &secret),
            sm2::dsa::SigningKey::from_slice(id, &secret),
        ) {
            return (secret, ours, theirs);
        }
    }
}

/// A random message of 0 to `max_len` bytes.
fn message(rng: &mut StdRng, max_len: usize) -> Vec<u8> {
    let len = rng.random_range(0..=max_len);
    let mut m = vec![0u8; len];
    rng.fill_bytes(&mut m);
    m
}

/// The crate's deterministic signature, DER-encoded as ours are.
fn crate_signature(key: &sm2::dsa::SigningKey, message: &[u8]) -> Vec<u8> {
    let sig: sm2::dsa::Signature = key.sign(message);
    sm2::dsa::DerSignature::from(sig).to_vec()
}

/// The crate's verifier accepts `signature` over `message`.
fn crate_verifies(key: &sm2::dsa::VerifyingKey, message: &[u8], signature: &Signature) -> bool {
    sm2::dsa::DerSignature::from_bytes(signature.as_bytes())
        .and_then(sm2::dsa::Signature::try_from)
        .and_then(|sig| key.verify(message, &sig))
        .is_ok()
}

#[test]
fn single_signatures_are_the_crates_byte_for_byte_for_2000_random_keys_and_messages() {
    let seed = 0x5a_0001;
    let mut rng = rng(seed);
    for case in 0..2000 {
        let (_, ours, theirs) = key_pair(&mut rng, SM2_DEFAULT_ID);
        let m = message(&mut rng, 300);
        let sig = ours.sign(&m).unwrap();
        assert_eq!(
            sig.as_bytes(),
            crate_signature(&theirs, &m),
            "seed {seed:#x}, case {case}"
        );
        assert!(
            crate_verifies(theirs.verifying_key(), &m, &sig),
            "seed {seed:#x}, case {case}"
        );
    }
}

#[test]
fn batch_signatures_are_the_crates_byte_for_byte_for_2000_random_keys_and_messages() {
    let seed = 0x5a_0002;
    let mut rng = rng(seed);
    let mut pairs = 0;
    while pairs < 2000 {
        let (_, ours, theirs) = key_pair(&mut rng, SM2_DEFAULT_ID);
        let count = rng.random_range(1..=70);
        let messages: Vec<Vec<u8>> = (0..count).map(|_| message(&mut rng, 300)).collect();
        let sigs = ours.sign_many(&messages).unwrap();
        assert_eq!(sigs.len(), messages.len(), "seed {seed:#x}");
        for (i, (m, sig)) in messages.iter().zip(&sigs).enumerate() {
            assert_eq!(
                sig.as_bytes(),
                crate_signature(&theirs, m),
                "seed {seed:#x}, pair {}, message {i} of {count}",
                pairs + i
            );
            assert!(
                crate_verifies(theirs.verifying_key(), m, sig),
                "seed {seed:#x}, pair {}",
                pairs + i
            );
        }
        pairs += count;
    }
}

#[test]
fn batch_path_around_the_group_size_equals_single_signatures() {
    let seed = 0x5a_0003;
    let mut rng = rng(seed);
    let (_, ours, theirs) = key_pair(&mut rng, SM2_DEFAULT_ID);
    for count in [0, 1, 2, 31, 32, 33, 63, 64, 65, 97] {
        let messages: Vec<Vec<u8>> = (0..count).map(|_| message(&mut rng, 200)).collect();
        let batch = ours.sign_many(&messages).unwrap();
        assert_eq!(batch.len(), count, "seed {seed:#x}, {count} messages");
        for (i, (m, sig)) in messages.iter().zip(&batch).enumerate() {
            assert_eq!(
                *sig,
                ours.sign(m).unwrap(),
                "seed {seed:#x}, {count} messages, #{i}"
            );
            assert_eq!(sig.as_bytes(), crate_signature(&theirs, m));
            ours.verifying_key().verify(m, sig).unwrap();
        }
    }
    // The same message many times gives the same signature each time (RFC 6979).
    let same = vec![b"the same voucher".as_slice(); 40];
    let sigs = ours.sign_many(&same).unwrap();
    assert!(sigs.iter().all(|s| *s == sigs[0]));
}

#[test]
fn empty_and_64_kib_messages() {
    let seed = 0x5a_0004;
    let mut rng = rng(seed);
    let (_, ours, theirs) = key_pair(&mut rng, SM2_DEFAULT_ID);
    let mut big = vec![0u8; 64 * 1024];
    rng.fill_bytes(&mut big);
    for m in [&[][..], &big[..]] {
        let sig = ours.sign(m).unwrap();
        assert_eq!(
            sig.as_bytes(),
            crate_signature(&theirs, m),
            "{} bytes",
            m.len()
        );
        assert!(crate_verifies(theirs.verifying_key(), m, &sig));
        ours.verifying_key().verify(m, &sig).unwrap();
        assert_eq!(ours.sign_many(&[m]).unwrap(), vec![sig]);
    }
    let both = ours.sign_many(&[&[][..], &big[..]]).unwrap();
    assert_eq!(both[0].as_bytes(), crate_signature(&theirs, &[]));
    assert_eq!(both[1].as_bytes(), crate_signature(&theirs, &big));
    // A one-bit change in the big message is a different signature, and the old one fails.
    big[40_000] ^= 1;
    assert!(ours.verifying_key().verify(&big, &both[1]).is_err());
}

/// GB/T 32918.2-2016 annex A: its key pair and ID `ALICE123@YAHOO.COM`. The annex's nonce is
/// random, so its signature cannot be reproduced; the crate's verifier checks ours (which
/// needs our `Z_A` under that ID to equal the crate's).
#[test]
fn standard_key_under_the_standards_id_and_others() {
    let d = hex!("3945208F7B2144B13F36E38AC6D39F95889393692860B51A42FB81EF4DF7C5B8");
    let ours = SigningKey::from_secret_bytes(KeyAlgorithm::Sm2, &d).unwrap();
    let long_id = "x".repeat(1000);
    for id in ["ALICE123@YAHOO.COM", "", SM2_DEFAULT_ID, long_id.as_str()] {
        let theirs = sm2::dsa::SigningKey::from_slice(id, &d).unwrap();
        for m in [&b"message digest"[..], b"", &[0xA5; 1000]] {
            let sig = ours.sign_sm2_with_id(id, m).unwrap();
            assert_eq!(sig.as_bytes(), crate_signature(&theirs, m), "id {id:?}");
            assert!(crate_verifies(theirs.verifying_key(), m, &sig), "id {id:?}");
            ours.verifying_key()
                .verify_sm2_with_id(id, m, &sig)
                .unwrap();
        }
    }
    // ENTL is 16 bits: an ID of 8192 bytes or more does not fit.
    let too_long = "x".repeat(8192);
    assert!(ours.sign_sm2_with_id(&too_long, b"m").is_err());
}

#[test]
fn hedged_signatures_are_the_crates_randomized_ones() {
    let seed = 0x5a_0005;
    let mut keys = rng(seed);
    for case in 0..50 {
        let (_, ours, theirs) = key_pair(&mut keys, SM2_DEFAULT_ID);
        let m = message(&mut keys, 500);
        let sig = ours
            .sign_with_rng(&mut StdRng::seed_from_u64(case), &m)
            .unwrap();
        let expected: sm2::dsa::Signature = theirs
            .try_sign_with_rng(&mut StdRng::seed_from_u64(case), &m)
            .unwrap();
        assert_eq!(
            sig.as_bytes(),
            sm2::dsa::DerSignature::from(expected).to_vec(),
            "seed {seed:#x}, case {case}"
        );
        assert_ne!(sig, ours.sign(&m).unwrap(), "seed {seed:#x}, case {case}");
        ours.verifying_key().verify(&m, &sig).unwrap();
    }
}

#[test]
fn the_secret_n_minus_1_is_refused_and_its_neighbours_sign() {
    // d = n − 1 makes 1 + d = 0 (no inverse): GB/T 32918 keeps d in [1, n − 2].
    let n_minus_1 = hex!("FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54122");
    assert!(SigningKey::from_secret_bytes(KeyAlgorithm::Sm2, &n_minus_1).is_err());
    let n_minus_2 = hex!("FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54121");
    let mut one = [0u8; 32];
    one[31] = 1;
    for d in [n_minus_2, one] {
        let ours = SigningKey::from_secret_bytes(KeyAlgorithm::Sm2, &d).unwrap();
        let theirs = sm2::dsa::SigningKey::from_slice(SM2_DEFAULT_ID, &d).unwrap();
        let sig = ours.sign(b"edge").unwrap();
        assert_eq!(sig.as_bytes(), crate_signature(&theirs, b"edge"));
        assert_eq!(ours.sign_many(&[b"edge"]).unwrap(), vec![sig]);
    }
}

#[test]
fn keys_read_back_from_pkcs8_sign_the_same() {
    let mut rng = rng(0x5a_0006);
    let (_, ours, _) = key_pair(&mut rng, SM2_DEFAULT_ID);
    let again = SigningKey::from_pkcs8_der(&ours.to_pkcs8_der().unwrap()).unwrap();
    assert_eq!(again.sign(b"m").unwrap(), ours.sign(b"m").unwrap());
    assert_eq!(
        again.sign_many(&[b"a", b"b"]).unwrap(),
        ours.sign_many(&[b"a", b"b"]).unwrap()
    );
}

#[test]
fn other_algorithms_sign_many_as_they_sign_one() {
    for alg in [KeyAlgorithm::Ed25519, KeyAlgorithm::EcdsaP256] {
        let key = SigningKey::generate(alg, &mut rng(7)).unwrap();
        let messages: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; usize::from(i)]).collect();
        let sigs = key.sign_many(&messages).unwrap();
        for (m, s) in messages.iter().zip(&sigs) {
            assert_eq!(*s, key.sign(m).unwrap(), "{alg}");
        }
    }
}

// ----- batch voucher signing over the fast path -------------------------------------------

fn positions() -> Vec<SignaturePosition> {
    ["finance.seal", "finance.second"]
        .into_iter()
        .map(|name| SignaturePosition {
            name: name.into(),
            role: Some(guoku_seal::pki::OrgRole::Finance),
            post: None,
        })
        .collect()
}

#[test]
fn sign_vouchers_over_many_chunks_equals_sign_voucher() {
    let d = Deployment::new(Suite::Sm, 0x5a_0007);
    let (key, cert) = d.org_under_root(&mut rng(0x5a_0008), 60);
    let positions = positions();
    let docs: Vec<Vec<u8>> = (0..300)
        .map(|i| format!("<Voucher><No>{i}</No></Voucher>").into_bytes())
        .collect();
    let to_sign: Vec<VoucherToSign<'_>> = docs
        .iter()
        .map(|v| VoucherToSign {
            canonical: v,
            existing: &[],
        })
        .collect();
    let signer = PositionSigner {
        suite: Suite::Sm,
        key: &key,
        certificate: &cert,
        positions: &positions,
        position: "finance.seal",
    };
    let one_by_one: Vec<VoucherSignature> = docs
        .iter()
        .map(|doc| {
            sign_voucher(Suite::Sm, doc, &positions, &[], "finance.seal", &key, &cert).unwrap()
        })
        .collect();
    for threads in [1, 2, 3] {
        let got = sign_vouchers(&signer, &to_sign, Parallelism::threads(threads), None).unwrap();
        assert_eq!(got, one_by_one, "{threads} threads");
    }
    let trust = TrustContext {
        anchor: d.root.certificate(),
        intermediates: &[],
        crls: &[],
        revocation: RevocationPolicy::CheckIfPresent,
        now: NOW,
    };
    for (doc, sig) in docs.iter().zip(&one_by_one).step_by(7) {
        let report = verify_voucher(
            Suite::Sm,
            doc,
            &positions,
            std::slice::from_ref(sig),
            &trust,
        )
        .unwrap();
        assert!(report.signatures[0].signature_valid, "{report:?}");
    }

    // Two bad vouchers in different chunks: the lower one's error is reported.
    let first = [one_by_one[0].clone()];
    let mut second_too = one_by_one[0].clone();
    second_too.position = "finance.second".into();
    let both = [one_by_one[0].clone(), second_too];
    let mut bad = to_sign.clone();
    bad[77].existing = &first; // the next position is finance.second, not finance.seal
    bad[250].existing = &both; // every position is signed
    for threads in [1, 2, 3] {
        let err = sign_vouchers(&signer, &bad, Parallelism::threads(threads), None).unwrap_err();
        assert!(
            err.to_string().contains("the next position to sign"),
            "{threads} threads: {err}"
        );
    }
    bad[77].existing = &[];
    let err = sign_vouchers(&signer, &bad, Parallelism::threads(2), None).unwrap_err();
    assert!(
        err.to_string().contains("already signed"),
        "the later failure alone: {err}"
    );
}

/// `sig` with one byte of its DER `r` or `s` changed (the length bytes are kept, so it still
/// parses unless the change leaves the range `[1, n − 1]`).
fn altered(sig: &Signature, at_s: bool) -> Signature {
    let mut der = sig.as_bytes().to_vec();
    // SEQUENCE { INTEGER r, INTEGER s }: r's last byte sits just before s's tag.
    let r_len = usize::from(der[3]);
    let index = if at_s { der.len() - 1 } else { 4 + r_len - 1 };
    der[index] ^= 0x01;
    Signature::from_bytes(der)
}

/// The verifier (the crate's on a key's first use, its own tables from the second on)
/// answers as the crate's verifier does, for every key, valid signatures and altered ones:
/// another message, another key, `r` or `s` changed, and a user ID other than the signer's.
#[test]
fn verifying_with_a_keys_table_answers_as_the_crate_does() {
    let seed = 0x5a_0009;
    let mut rng = rng(seed);
    let (_, other, other_theirs) = key_pair(&mut rng, SM2_DEFAULT_ID);
    for case in 0..40 {
        let (_, ours, theirs) = key_pair(&mut rng, SM2_DEFAULT_ID);
        // Three rounds per key: the first through the crate, then through the table.
        for round in 0..3 {
            let m = message(&mut rng, 2000);
            let sig = ours.sign(&m).unwrap();
            let at = format!("seed {seed:#x}, case {case}, round {round}");
            assert!(ours.verifying_key().verify(&m, &sig).is_ok(), "{at}");
            let mut wrong = m.clone();
            wrong.push(round);
            for (message, signature, key, crate_key) in [
                (&wrong, sig.clone(), &ours, &theirs),
                (&m, sig.clone(), &other, &other_theirs),
                (&m, altered(&sig, false), &ours, &theirs),
                (&m, altered(&sig, true), &ours, &theirs),
            ] {
                let key = key.verifying_key();
                assert_eq!(
                    key.verify(message, &signature).is_ok(),
                    crate_verifies(crate_key.verifying_key(), message, &signature),
                    "{at}"
                );
                assert!(key.verify(message, &signature).is_err(), "{at}");
            }
            assert!(
                ours.verifying_key()
                    .verify_sm2_with_id("ALICE123@YAHOO.COM", &m, &sig)
                    .is_err(),
                "{at}"
            );
        }
    }
}
