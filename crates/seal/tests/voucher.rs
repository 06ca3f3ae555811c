//! Voucher signatures at ordered positions, and the verification report.

mod common;

use common::{Deployment, ISSUED, NOW, rng};
use guoku_seal::pki::Certificate;
use guoku_seal::pki::{Crl, OrgRole, Post, RevocationPolicy};
use guoku_seal::voucher::{
    PathStatus, SignaturePosition, TrustContext, VoucherSignature, sign_voucher, verify_voucher,
};
use guoku_seal::{Error, Signature, SigningKey, Suite};
use time::Duration;

const VOUCHER: &[u8] = b"<Voucher><VtCode>5201</VtCode><VoucherNo>000042</VoucherNo>\
<PayAmt>1234.56</PayAmt></Voucher>";

fn positions() -> Vec<SignaturePosition> {
    [Post::Maker, Post::Checker, Post::Signer]
        .into_iter()
        .map(|post| SignaturePosition {
            name: format!("finance.{post}"),
            role: Some(OrgRole::Finance),
            post: Some(post),
        })
        .collect()
}

struct Fixture {
    d: Deployment,
    signers: Vec<(SigningKey, Certificate)>,
    crls: Vec<Crl>,
}

fn fixture(suite: Suite, seed: u64) -> Fixture {
    let d = Deployment::new(suite, seed);
    let mut r = rng(seed + 1);
    let signers = [Post::Maker, Post::Checker, Post::Signer]
        .into_iter()
        .enumerate()
        .map(|(i, post)| d.person_under_sub(&mut r, post, 100 + i as u64))
        .collect();
    let crls = crls(&d, &[]);
    Fixture { d, signers, crls }
}

fn crls(d: &Deployment, revoked: &[&Certificate]) -> Vec<Crl> {
    let serials: Vec<_> = revoked.iter().map(|c| c.serial()).collect();
    common::crls(d, &serials, ISSUED + Duration::days(2))
}

fn sign_all(f: &Fixture, suite: Suite, upto: usize) -> Vec<VoucherSignature> {
    let pos = positions();
    let mut sigs = Vec::new();
    for (p, (key, cert)) in pos.iter().zip(&f.signers).take(upto) {
        let s = sign_voucher(suite, VOUCHER, &pos, &sigs, &p.name, key, cert).unwrap();
        sigs.push(s);
    }
    sigs
}

fn trust<'a>(f: &'a Fixture, subs: &'a [Certificate], crls: &'a [Crl]) -> TrustContext<'a> {
    TrustContext {
        anchor: f.d.root.certificate(),
        intermediates: subs,
        crls,
        revocation: RevocationPolicy::RequireCrl,
        now: NOW,
    }
}

#[test]
fn fully_signed_voucher_verifies_for_both_suites() {
    for suite in Suite::ALL {
        let f = fixture(suite, 10);
        let sigs = sign_all(&f, suite, 3);
        let subs = [f.d.sub.certificate().clone()];
        let report = verify_voucher(
            suite,
            VOUCHER,
            &positions(),
            &sigs,
            &trust(&f, &subs, &f.crls),
        )
        .unwrap();
        assert!(report.is_complete_and_valid(), "{report}");
        assert!(report.missing_positions.is_empty());
        assert_eq!(report.signatures.len(), 3);
        assert_eq!(report.signatures[1].signer.post, Some(Post::Checker));
        assert_eq!(
            report.signatures[2].signer.common_name.as_deref(),
            Some("张三")
        );
    }
}

#[test]
fn partially_signed_voucher_reports_missing_positions() {
    let f = fixture(Suite::Sm, 20);
    let sigs = sign_all(&f, Suite::Sm, 1);
    let subs = [f.d.sub.certificate().clone()];
    let report = verify_voucher(
        Suite::Sm,
        VOUCHER,
        &positions(),
        &sigs,
        &trust(&f, &subs, &f.crls),
    )
    .unwrap();
    assert!(!report.is_complete_and_valid());
    assert!(report.signatures[0].is_valid());
    assert_eq!(
        report.missing_positions,
        vec!["finance.checker".to_string(), "finance.signer".to_string()]
    );
}

#[test]
fn changed_voucher_invalidates_every_signature() {
    let f = fixture(Suite::Intl, 30);
    let sigs = sign_all(&f, Suite::Intl, 3);
    let subs = [f.d.sub.certificate().clone()];
    let mut changed = VOUCHER.to_vec();
    let at = changed.windows(7).position(|w| w == b"1234.56").unwrap();
    changed[at] = b'9';
    let report = verify_voucher(
        Suite::Intl,
        &changed,
        &positions(),
        &sigs,
        &trust(&f, &subs, &f.crls),
    )
    .unwrap();
    assert!(
        report.signatures.iter().all(|s| !s.signature_valid),
        "{report}"
    );
    assert!(
        report
            .signatures
            .iter()
            .all(|s| s.path == PathStatus::Valid)
    );
}

#[test]
fn reordered_or_removed_signatures_are_detected() {
    let f = fixture(Suite::Sm, 40);
    let sigs = sign_all(&f, Suite::Sm, 3);
    let subs = [f.d.sub.certificate().clone()];
    // Dropping the maker's signature breaks the later ones (they cover it) and its position.
    let dropped = sigs[1..].to_vec();
    let report = verify_voucher(
        Suite::Sm,
        VOUCHER,
        &positions(),
        &dropped,
        &trust(&f, &subs, &f.crls),
    )
    .unwrap();
    assert_eq!(report.missing_positions, vec!["finance.maker".to_string()]);
    assert!(
        report
            .signatures
            .iter()
            .all(|s| !s.signature_valid && !s.in_order)
    );
    // Swapping two signatures.
    let swapped = vec![sigs[1].clone(), sigs[0].clone(), sigs[2].clone()];
    let report = verify_voucher(
        Suite::Sm,
        VOUCHER,
        &positions(),
        &swapped,
        &trust(&f, &subs, &f.crls),
    )
    .unwrap();
    assert!(!report.is_complete_and_valid());
    assert!(!report.signatures[0].in_order && !report.signatures[1].in_order);
}

#[test]
fn revoked_signer_is_reported() {
    let f = fixture(Suite::Sm, 50);
    let sigs = sign_all(&f, Suite::Sm, 3);
    let subs = [f.d.sub.certificate().clone()];
    let crls = crls(&f.d, &[&f.signers[1].1]);
    let report = verify_voucher(
        Suite::Sm,
        VOUCHER,
        &positions(),
        &sigs,
        &trust(&f, &subs, &crls),
    )
    .unwrap();
    assert!(!report.is_complete_and_valid());
    assert_eq!(report.signatures[1].path, PathStatus::Revoked);
    assert!(report.signatures[1].signature_valid);
    assert!(report.signatures[0].is_valid() && report.signatures[2].is_valid());
}

#[test]
fn expired_signer_and_missing_crl_are_reported() {
    let f = fixture(Suite::Intl, 60);
    let sigs = sign_all(&f, Suite::Intl, 3);
    let subs = [f.d.sub.certificate().clone()];
    let mut t = trust(&f, &subs, &f.crls);
    t.now = ISSUED + Duration::days(400);
    let report = verify_voucher(Suite::Intl, VOUCHER, &positions(), &sigs, &t).unwrap();
    assert!(
        report
            .signatures
            .iter()
            .all(|s| s.path == PathStatus::NotValidAtTime)
    );

    let t = trust(&f, &subs, &[]);
    let report = verify_voucher(Suite::Intl, VOUCHER, &positions(), &sigs, &t).unwrap();
    assert!(
        report
            .signatures
            .iter()
            .all(|s| s.path == PathStatus::NoCurrentCrl)
    );
}

#[test]
fn forged_signature_bytes_are_invalid() {
    let f = fixture(Suite::Sm, 70);
    let mut sigs = sign_all(&f, Suite::Sm, 3);
    let mut bytes = sigs[2].signature.as_bytes().to_vec();
    let n = bytes.len();
    bytes[n - 2] ^= 0x01;
    sigs[2].signature = Signature::from_bytes(bytes);
    let subs = [f.d.sub.certificate().clone()];
    let report = verify_voucher(
        Suite::Sm,
        VOUCHER,
        &positions(),
        &sigs,
        &trust(&f, &subs, &f.crls),
    )
    .unwrap();
    assert!(!report.signatures[2].signature_valid);
    assert!(report.signatures[0].is_valid() && report.signatures[1].is_valid());
}

#[test]
fn signing_refuses_wrong_order_wrong_post_and_wrong_key() {
    let f = fixture(Suite::Sm, 80);
    let pos = positions();
    let (maker_key, maker_cert) = &f.signers[0];
    let (checker_key, checker_cert) = &f.signers[1];
    // Out of order.
    let err = sign_voucher(
        Suite::Sm,
        VOUCHER,
        &pos,
        &[],
        "finance.checker",
        checker_key,
        checker_cert,
    )
    .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    // A checker may not sign at the maker's position.
    let err = sign_voucher(
        Suite::Sm,
        VOUCHER,
        &pos,
        &[],
        "finance.maker",
        checker_key,
        checker_cert,
    )
    .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    // Key and certificate of different people.
    let err = sign_voucher(
        Suite::Sm,
        VOUCHER,
        &pos,
        &[],
        "finance.maker",
        checker_key,
        maker_cert,
    )
    .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    // An SM2 key under the intl suite.
    let err = sign_voucher(
        Suite::Intl,
        VOUCHER,
        &pos,
        &[],
        "finance.maker",
        maker_key,
        maker_cert,
    )
    .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    // Duplicate position names.
    let mut dup = pos.clone();
    dup[1].name = dup[0].name.clone();
    let err = sign_voucher(
        Suite::Sm,
        VOUCHER,
        &dup,
        &[],
        "finance.maker",
        maker_key,
        maker_cert,
    )
    .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
}

#[test]
fn signature_from_wrong_post_is_reported() {
    // A valid signature by the signer placed at the checker's position: the report flags it.
    let f = fixture(Suite::Intl, 90);
    let mut sigs = sign_all(&f, Suite::Intl, 2);
    sigs[1].certificate = f.signers[2].1.clone();
    let subs = [f.d.sub.certificate().clone()];
    let report = verify_voucher(
        Suite::Intl,
        VOUCHER,
        &positions(),
        &sigs,
        &trust(&f, &subs, &f.crls),
    )
    .unwrap();
    assert!(!report.signatures[1].holder_matches);
    assert!(!report.signatures[1].signature_valid);
}
