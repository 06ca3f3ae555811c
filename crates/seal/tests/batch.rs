//! Batch signing on many threads, and batch-signature mode.

mod common;

use std::sync::Mutex;

use common::{Deployment, NOW, rng};
use guoku_seal::batch::{
    BatchSignature, MAX_BATCH, Parallelism, PositionSigner, VoucherToSign, batch_leaf_hash,
    batch_sign, sign_messages, sign_vouchers, tree_head_message, try_map_parallel,
};
use guoku_seal::pki::{
    Certificate, OrgRole, Purpose, RevocationPolicy, Serial, ValidationOptions, Validity,
};
use guoku_seal::voucher::{SignaturePosition, TrustContext, sign_voucher, verify_voucher};
use guoku_seal::{Error, SigningKey, Suite, hash};

fn voucher(i: usize) -> Vec<u8> {
    format!(
        "<Voucher><VtCode>5201</VtCode><VoucherNo>{i:08}</VoucherNo>\
         <PayAmt>{}.{:02}</PayAmt></Voucher>",
        100 + i * 13,
        i % 100
    )
    .into_bytes()
}

fn vouchers(n: usize) -> Vec<Vec<u8>> {
    (0..n).map(voucher).collect()
}

/// A finance organisation's key and certificate under the deployment's root.
fn signer(suite: Suite, seed: u64) -> (Deployment, SigningKey, Certificate) {
    let d = Deployment::new(suite, seed);
    let (key, cert) = d.org_under_root(&mut rng(seed + 1), 50);
    (d, key, cert)
}

fn seal_position() -> Vec<SignaturePosition> {
    vec![SignaturePosition {
        name: "finance.seal".into(),
        role: Some(OrgRole::Finance),
        post: None,
    }]
}

// ----- one signature per voucher ----------------------------------------------------------

#[test]
fn parallel_signatures_equal_sequential_ones_for_any_thread_count() {
    for suite in Suite::ALL {
        let (_, key, _) = signer(suite, 1);
        let msgs = vouchers(37);
        let expected: Vec<_> = msgs.iter().map(|m| key.sign(m).unwrap()).collect();
        for threads in [1, 2, 3, 8] {
            let got = sign_messages(&key, &msgs, Parallelism::threads(threads), None).unwrap();
            assert_eq!(got, expected, "{suite}, {threads} threads");
        }
        for (m, s) in msgs.iter().zip(&expected) {
            key.verifying_key().verify(m, s).unwrap();
        }
    }
}

#[test]
fn progress_is_increasing_and_ends_at_the_total() {
    for (n, threads) in [(1, 1), (10, 2), (1000, 2), (1000, 3), (257, 8)] {
        let calls = Mutex::new(Vec::new());
        let progress = |done: usize, total: usize| calls.lock().unwrap().push((done, total));
        let items: Vec<usize> = (0..n).collect();
        let out = try_map_parallel(
            &items,
            Parallelism::threads(threads),
            Some(&progress),
            |i| Ok(i * 2),
        )
        .unwrap();
        assert_eq!(out, items.iter().map(|i| i * 2).collect::<Vec<_>>());
        let calls = calls.into_inner().unwrap();
        assert!(!calls.is_empty(), "n = {n}");
        assert!(calls.iter().all(|&(_, total)| total == n));
        assert!(calls.windows(2).all(|w| w[0].0 < w[1].0), "{calls:?}");
        assert_eq!(calls.last(), Some(&(n, n)));
    }
    // An empty batch does nothing and reports nothing.
    let calls = Mutex::new(0);
    let progress = |_: usize, _: usize| *calls.lock().unwrap() += 1;
    let out = try_map_parallel(
        &[] as &[u8],
        Parallelism::threads(4),
        Some(&progress),
        |b| Ok(*b),
    )
    .unwrap();
    assert!(out.is_empty());
    assert_eq!(calls.into_inner().unwrap(), 0);
}

#[test]
fn the_lowest_failing_item_is_reported_whatever_the_thread_count() {
    let items: Vec<usize> = (0..1000).collect();
    for threads in [1, 2, 4, 16] {
        let err = try_map_parallel(&items, Parallelism::threads(threads), None, |&i| {
            if [137, 500, 999].contains(&i) {
                Err(Error::InvalidArgument(format!("item {i}")))
            } else {
                Ok(i)
            }
        })
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid argument: item 137",
            "{threads} threads"
        );
    }
}

#[test]
fn oversized_batches_are_refused() {
    let items = vec![0u8; MAX_BATCH + 1];
    let err = try_map_parallel(&items, Parallelism::SINGLE, None, |b| Ok(*b)).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
}

#[test]
fn batch_voucher_signatures_are_the_ordinary_ones_and_verify() {
    for suite in Suite::ALL {
        let (d, key, cert) = signer(suite, 2);
        let positions = seal_position();
        let docs = vouchers(23);
        let to_sign: Vec<VoucherToSign<'_>> = docs
            .iter()
            .map(|v| VoucherToSign {
                canonical: v,
                existing: &[],
            })
            .collect();
        let s = PositionSigner {
            suite,
            key: &key,
            certificate: &cert,
            positions: &positions,
            position: "finance.seal",
        };
        let sigs = sign_vouchers(&s, &to_sign, Parallelism::threads(2), None).unwrap();
        assert_eq!(sigs.len(), docs.len());
        let trust = TrustContext {
            anchor: d.root.certificate(),
            intermediates: &[],
            crls: &[],
            revocation: RevocationPolicy::CheckIfPresent,
            now: NOW,
        };
        for (doc, sig) in docs.iter().zip(&sigs) {
            let one =
                sign_voucher(suite, doc, &positions, &[], "finance.seal", &key, &cert).unwrap();
            assert_eq!(&one, sig);
            let report =
                verify_voucher(suite, doc, &positions, std::slice::from_ref(sig), &trust).unwrap();
            assert!(report.is_complete_and_valid(), "{report}");
        }
        // A voucher whose position is already signed fails the whole batch.
        let taken = [sigs[0].clone()];
        let mut bad = to_sign.clone();
        bad[5].existing = &taken;
        assert!(sign_vouchers(&s, &bad, Parallelism::threads(2), None).is_err());
    }
}

// ----- batch-signature mode ---------------------------------------------------------------

#[test]
fn tree_head_message_is_the_documented_bytes() {
    let root = [0xabu8; 32];
    let cert_der = b"not really a certificate";
    for suite in Suite::ALL {
        let mut expected = b"guoku-batch-tree-head/1\0".to_vec();
        expected.extend_from_slice(suite.name().as_bytes());
        expected.push(0);
        expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0x27, 0x10]);
        expected.extend_from_slice(&root);
        expected.extend_from_slice(&hash(suite, cert_der));
        assert_eq!(tree_head_message(suite, 10_000, &root, cert_der), expected);
    }
}

#[test]
fn every_batch_signature_verifies_alone_and_only_for_its_voucher() {
    for suite in Suite::ALL {
        let (d, key, cert) = signer(suite, 3);
        for n in [1usize, 2, 3, 7, 16, 33] {
            let docs = vouchers(n);
            let batch =
                batch_sign(suite, &key, &cert, &docs, Parallelism::threads(2), None).unwrap();
            assert_eq!(batch.len(), n);
            let leaves: Vec<_> = docs.iter().map(|v| batch_leaf_hash(suite, v)).collect();
            let alg = match suite {
                Suite::Sm => guoku_audit::HashAlgorithm::Sm3,
                Suite::Intl => guoku_audit::HashAlgorithm::Sha256,
            };
            assert_eq!(batch.head().root, guoku_audit::root(alg, &leaves));
            assert_eq!(batch.head().size, n as u64);
            let message = tree_head_message(suite, n as u64, &batch.head().root, cert.to_der());
            key.verifying_key()
                .verify(&message, batch.root_signature())
                .unwrap();
            let options = ValidationOptions {
                now: NOW,
                purpose: Purpose::VoucherSigning,
                crls: &[],
                revocation: RevocationPolicy::CheckIfPresent,
            };
            for (i, doc) in docs.iter().enumerate() {
                let sig = batch.signature(i).unwrap();
                assert_eq!((sig.leaf_index, sig.tree_size), (i as u64, n as u64));
                sig.verify(suite, doc).unwrap();
                sig.verify_trusted(suite, doc, &[], d.root.certificate(), &options)
                    .unwrap();
                // Encoding round trip, and the direct encoder agrees.
                let bytes = sig.to_bytes().unwrap();
                assert_eq!(batch.encoded_signature(i).unwrap(), bytes);
                assert_eq!(BatchSignature::from_bytes(&bytes).unwrap(), sig);
                // Not another voucher, not a changed voucher, not in the other suite.
                let other = voucher(i + 1000);
                assert!(matches!(
                    sig.verify(suite, &other),
                    Err(Error::BadSignature)
                ));
                let mut changed = doc.clone();
                changed[3] ^= 1;
                assert!(sig.verify(suite, &changed).is_err());
                let other_suite = if suite == Suite::Sm {
                    Suite::Intl
                } else {
                    Suite::Sm
                };
                assert!(sig.verify(other_suite, doc).is_err());
                if n > 1 {
                    let j = (i + 1) % n;
                    assert!(
                        sig.verify(suite, &docs[j]).is_err(),
                        "leaf {i} verified {j}"
                    );
                }
            }
            let all = batch.encoded_signatures(Parallelism::threads(2)).unwrap();
            assert_eq!(all.len(), n);
            assert_eq!(all[n - 1], batch.encoded_signature(n - 1).unwrap());
            assert!(batch.signature(n).is_err());
        }
    }
}

#[test]
fn batch_signature_from_an_untrusted_certificate_is_refused_by_verify_trusted() {
    let (_, key, cert) = signer(Suite::Sm, 4);
    let (stranger, _, _) = signer(Suite::Sm, 40);
    let docs = vouchers(4);
    let batch = batch_sign(Suite::Sm, &key, &cert, &docs, Parallelism::SINGLE, None).unwrap();
    let sig = batch.signature(2).unwrap();
    let options = ValidationOptions {
        now: NOW,
        purpose: Purpose::VoucherSigning,
        crls: &[],
        revocation: RevocationPolicy::CheckIfPresent,
    };
    sig.verify(Suite::Sm, &docs[2]).unwrap();
    assert!(
        sig.verify_trusted(
            Suite::Sm,
            &docs[2],
            &[],
            stranger.root.certificate(),
            &options
        )
        .is_err()
    );
}

#[test]
fn batch_sign_refuses_what_it_cannot_sign() {
    let (d, key, cert) = signer(Suite::Sm, 5);
    let docs = vouchers(3);
    let none: [Vec<u8>; 0] = [];
    let p = Parallelism::SINGLE;
    assert!(batch_sign(Suite::Sm, &key, &cert, &none, p, None).is_err());
    // The suite's algorithm is not the key's.
    assert!(batch_sign(Suite::Intl, &key, &cert, &docs, p, None).is_err());
    // The key does not match the certificate.
    let (other_key, _) = d.org_under_root(&mut rng(99), 51);
    assert!(batch_sign(Suite::Sm, &other_key, &cert, &docs, p, None).is_err());
}

/// Flip every bit of a sample encoding: each one must fail to decode or fail to verify.
#[test]
fn every_bit_of_a_batch_signature_matters() {
    for suite in Suite::ALL {
        let (_, key, cert) = signer(suite, 6);
        let docs = vouchers(11);
        let batch = batch_sign(suite, &key, &cert, &docs, Parallelism::SINGLE, None).unwrap();
        let index = 6;
        let bytes = batch.encoded_signature(index).unwrap();
        let doc = &docs[index];
        BatchSignature::from_bytes(&bytes)
            .unwrap()
            .verify(suite, doc)
            .unwrap();
        // Ed25519 is slow in unoptimised test builds, so spread the flips over every core.
        let bits: Vec<usize> = (0..bytes.len() * 8).collect();
        let verdicts = try_map_parallel(&bits, Parallelism::all_cores(), None, |&bit| {
            let mut flipped = bytes.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            Ok(BatchSignature::from_bytes(&flipped).is_ok_and(|s| s.verify(suite, doc).is_ok()))
        })
        .unwrap();
        let accepted: Vec<usize> = bits.iter().copied().filter(|&b| verdicts[b]).collect();
        assert!(
            accepted.is_empty(),
            "{suite}: flipped bits {accepted:?} still verify"
        );
        // Every truncation, and any trailing byte, is refused by the decoder.
        for len in 0..bytes.len() {
            assert!(
                BatchSignature::from_bytes(&bytes[..len]).is_err(),
                "{suite}: length {len}"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(BatchSignature::from_bytes(&longer).is_err());
    }
}

#[test]
fn decoder_refuses_out_of_range_fields() {
    let (_, key, cert) = signer(Suite::Intl, 7);
    let docs = vouchers(5);
    let batch = batch_sign(Suite::Intl, &key, &cert, &docs, Parallelism::SINGLE, None).unwrap();
    let good = batch.encoded_signature(4).unwrap();
    let cert_len = cert.to_der().len();
    let size_at = 4 + 1 + 1 + 2 + cert_len;
    let index_at = size_at + 8;
    // Leaf index equal to the tree size.
    let mut bad = good.clone();
    bad[index_at..index_at + 8].copy_from_slice(&5u64.to_be_bytes());
    assert!(matches!(
        BatchSignature::from_bytes(&bad),
        Err(Error::Malformed { .. })
    ));
    // Unknown version and suite.
    let mut bad = good.clone();
    bad[4] = 2;
    assert!(matches!(
        BatchSignature::from_bytes(&bad),
        Err(Error::Unsupported(_))
    ));
    let mut bad = good.clone();
    bad[5] = 9;
    assert!(BatchSignature::from_bytes(&bad).is_err());
    // The encoder refuses what the decoder would.
    let mut sig = batch.signature(1).unwrap();
    sig.leaf_index = sig.tree_size;
    assert!(sig.to_bytes().is_err());
    sig.leaf_index = 1;
    sig.inclusion_proof = vec![[0; 32]; 65];
    assert!(sig.to_bytes().is_err());
    // A well-formed signature from another certificate with the same key still binds its
    // own certificate: swapping the certificate breaks it.
    let d = Deployment::new(Suite::Intl, 7);
    let other_cert = d
        .root
        .issue_organisation(
            key.verifying_key(),
            &common::finance(),
            &Serial::from_u64(77).unwrap(),
            Validity::days_from(common::ISSUED, 30),
        )
        .unwrap();
    let mut swapped = batch.signature(4).unwrap();
    swapped.certificate = other_cert;
    assert!(matches!(
        swapped.verify(Suite::Intl, &docs[4]),
        Err(Error::BadSignature)
    ));
}
