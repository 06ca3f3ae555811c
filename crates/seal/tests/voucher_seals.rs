//! Signatures and GM/T 0031 seals at a voucher's positions, receipts that keep the original's
//! stamps, the per-position report, and single-bit flips.

mod common;

use common::{Deployment, ISSUED, NOW, agent_bank, finance, rng};
use guoku_seal::pki::{
    Certificate, CertificateAuthority, Crl, OrgRole, Organisation, Person, Post, RevocationPolicy,
    Serial, Validity,
};
use guoku_seal::ses::{
    CertListForm, Seal, SealPicture, SealProblem, SealSignature, SealSpec, make_seal,
};
use guoku_seal::voucher::{
    PathStatus, SignaturePosition, Signer, Stamp, StampKind, StampPosition, StampedVoucher,
    TrustContext, VoucherSignature, sign_voucher, stamp_receipt, stamp_voucher, verify_receipt,
    verify_stamps, verify_voucher,
};
use guoku_seal::{Error, Signature, SigningKey, Suite};
use time::Duration;

/// The canonical bytes of a 5201 without its receipt fields (a few hundred bytes).
const ORIGINAL: &[u8] = "<Voucher><AdmDivCode>110000</AdmDivCode>\
<PayAcctName>北京市财政局</PayAcctName><PayAmt>1234.56</PayAmt><PayTypeCode>11</PayTypeCode>\
<PayeeAcctName>某某科技有限公司</PayeeAcctName><PayeeAcctNo>6222000011112222</PayeeAcctNo>\
<StYear>2026</StYear><VoucherNo>000042</VoucherNo><VtCode>5201</VtCode></Voucher>"
    .as_bytes();

/// The receipt's full canonical bytes: the original's fields and the bank's `X*` fields.
fn receipt_bytes(original: &[u8]) -> Vec<u8> {
    let text = std::str::from_utf8(original).unwrap();
    text.replace(
        "</Voucher>",
        "<XPayAmt>1234.56</XPayAmt><XPayDate>20260601</XPayDate></Voucher>",
    )
    .into_bytes()
}

fn position(name: &str, kind: StampKind, role: OrgRole, post: Post) -> StampPosition {
    StampPosition {
        name: name.into(),
        kind,
        role: Some(role),
        post: Some(post),
    }
}

fn original_positions() -> Vec<StampPosition> {
    vec![
        position("1", StampKind::Qm, OrgRole::Finance, Post::Maker),
        position("2", StampKind::Fhyqm, OrgRole::Finance, Post::Checker),
        position("3", StampKind::Ywzyz, OrgRole::Finance, Post::Signer),
    ]
}

fn receipt_positions() -> Vec<StampPosition> {
    vec![position(
        "11",
        StampKind::Zqz,
        OrgRole::AgentBank,
        Post::Signer,
    )]
}

type KeyCert = (SigningKey, Certificate);

struct Fixture {
    suite: Suite,
    d: Deployment,
    /// Finance maker, checker, signer.
    finance: Vec<KeyCert>,
    bank_signer: KeyCert,
    finance_seal: Seal,
    bank_seal: Seal,
    subs: Vec<Certificate>,
    crls: Vec<Crl>,
}

fn issue_person(
    ca: &CertificateAuthority,
    suite: Suite,
    r: &mut rand::rngs::StdRng,
    organisation: Organisation,
    post: Post,
    serial: u64,
) -> KeyCert {
    let key = SigningKey::generate(suite.signature_algorithm(), r).unwrap();
    let cert = ca
        .issue_person(
            key.verifying_key(),
            &Person {
                organisation,
                post,
                name: format!("签章人{serial}"),
                staff_id: format!("S{serial:04}"),
            },
            &Serial::from_u64(serial).unwrap(),
            Validity::days_from(ISSUED, 365),
        )
        .unwrap();
    (key, cert)
}

fn seal_for(
    suite: Suite,
    kind: StampKind,
    owner: &str,
    holder: &Certificate,
    maker: &KeyCert,
    validity: Validity,
    picture: SealPicture,
) -> Seal {
    make_seal(
        suite,
        &SealSpec {
            es_id: format!("{}-{kind}", holder.serial()),
            kind,
            name: format!("{owner}{}", kind.name_zh()),
            holders: vec![holder.clone()],
            list_form: CertListForm::Certificates,
            picture,
            created: ISSUED,
            validity,
        },
        &maker.0,
        &maker.1,
    )
    .unwrap()
}

/// People under the sub-CA (or, `fast`, under the root with no CRLs required, so that the
/// bit-flip tests verify fewer certificate signatures).
fn build(suite: Suite, seed: u64, fast: bool, seal_validity: Validity) -> Fixture {
    let d = Deployment::new(suite, seed);
    let mut r = rng(seed + 1);
    let ca = if fast { &d.root } else { &d.sub };
    let finance = [Post::Maker, Post::Checker, Post::Signer]
        .into_iter()
        .enumerate()
        .map(|(i, post)| issue_person(ca, suite, &mut r, finance(), post, 100 + i as u64))
        .collect::<Vec<_>>();
    let bank_signer = issue_person(ca, suite, &mut r, agent_bank(), Post::Signer, 200);
    let maker = {
        let key = SigningKey::generate(suite.signature_algorithm(), &mut r).unwrap();
        let cert = d
            .root
            .issue_organisation(
                key.verifying_key(),
                &Organisation {
                    role: OrgRole::Finance,
                    code: "11000000SEALMAKER".into(),
                    name: "guoku 制章中心".into(),
                },
                &Serial::from_u64(50).unwrap(),
                Validity::days_from(ISSUED, 365),
            )
            .unwrap();
        (key, cert)
    };
    let picture = |owner: &str, caption: &str| {
        if fast {
            SealPicture {
                format: "SVG".into(),
                data: b"<svg/>".to_vec(),
                width_mm: 40,
                height_mm: 40,
            }
        } else {
            SealPicture::demo(owner, caption, 42)
        }
    };
    let finance_seal = seal_for(
        suite,
        StampKind::Ywzyz,
        "北京市财政局",
        &finance[2].1,
        &maker,
        seal_validity,
        picture("北京市财政局", "业务专用章"),
    );
    let bank_seal = seal_for(
        suite,
        StampKind::Zqz,
        "中国工商银行北京分行",
        &bank_signer.1,
        &maker,
        seal_validity,
        picture("中国工商银行北京分行", "转讫章"),
    );
    let crls = if fast { Vec::new() } else { crls(&d, &[]) };
    let subs = vec![d.sub.certificate().clone()];
    Fixture {
        suite,
        d,
        finance,
        bank_signer,
        finance_seal,
        bank_seal,
        subs,
        crls,
    }
}

fn fixture(suite: Suite, seed: u64) -> Fixture {
    build(suite, seed, false, Validity::days_from(ISSUED, 365))
}

fn crls(d: &Deployment, revoked: &[&Certificate]) -> Vec<Crl> {
    let serials: Vec<_> = revoked.iter().map(|c| c.serial()).collect();
    common::crls(d, &serials, ISSUED + Duration::days(2))
}

const SIGNED_AT: time::OffsetDateTime = time::macros::datetime!(2026-05-31 09:30 UTC);

impl Fixture {
    fn trust_with<'a>(&'a self, crls: &'a [Crl], now: time::OffsetDateTime) -> TrustContext<'a> {
        TrustContext {
            anchor: self.d.root.certificate(),
            intermediates: &self.subs,
            crls,
            revocation: if crls.is_empty() {
                RevocationPolicy::CheckIfPresent
            } else {
                RevocationPolicy::RequireCrl
            },
            now,
        }
    }

    fn trust(&self) -> TrustContext<'_> {
        self.trust_with(&self.crls, NOW)
    }

    /// The signer for original position `i` (0-based).
    fn original_signer(&self, i: usize) -> Signer<'_> {
        let (key, certificate) = (&self.finance[i].0, &self.finance[i].1);
        if i == 2 {
            Signer::Seal {
                seal: &self.finance_seal,
                key,
                certificate,
                time: SIGNED_AT,
            }
        } else {
            Signer::Signature { key, certificate }
        }
    }

    fn stamp_original(&self, canonical: &[u8], positions: &[StampPosition]) -> Vec<Stamp> {
        let mut stamps = Vec::new();
        for (i, p) in positions.iter().enumerate() {
            let voucher = StampedVoucher {
                canonical,
                positions,
                stamps: &stamps,
            };
            let stamp =
                stamp_voucher(self.suite, &voucher, &p.name, &self.original_signer(i)).unwrap();
            stamps.push(stamp);
        }
        stamps
    }

    fn bank_signer(&self) -> Signer<'_> {
        Signer::Seal {
            seal: &self.bank_seal,
            key: &self.bank_signer.0,
            certificate: &self.bank_signer.1,
            time: SIGNED_AT + Duration::hours(2),
        }
    }

    fn stamp_receipt(&self, original: &StampedVoucher<'_>, canonical: &[u8]) -> Vec<Stamp> {
        let positions = receipt_positions();
        let receipt = StampedVoucher {
            canonical,
            positions: &positions,
            stamps: &[],
        };
        vec![stamp_receipt(self.suite, original, &receipt, "11", &self.bank_signer()).unwrap()]
    }
}

fn voucher<'a>(
    canonical: &'a [u8],
    positions: &'a [StampPosition],
    stamps: &'a [Stamp],
) -> StampedVoucher<'a> {
    StampedVoucher {
        canonical,
        positions,
        stamps,
    }
}

// ----- originals ----------------------------------------------------------------------------

#[test]
fn signed_and_sealed_voucher_verifies_and_reports_each_position() {
    for suite in Suite::ALL {
        let f = fixture(suite, 10);
        let positions = original_positions();
        let stamps = f.stamp_original(ORIGINAL, &positions);
        assert!(!stamps[0].is_seal() && !stamps[1].is_seal() && stamps[2].is_seal());
        let report =
            verify_stamps(suite, &voucher(ORIGINAL, &positions, &stamps), &f.trust()).unwrap();
        assert!(report.is_complete_and_valid(), "{suite}:\n{report}");
        let kinds: Vec<_> = report.positions.iter().map(|p| p.kind).collect();
        assert_eq!(
            kinds,
            [
                Some(StampKind::Qm),
                Some(StampKind::Fhyqm),
                Some(StampKind::Ywzyz)
            ]
        );
        let seal = &report.positions[2];
        assert!(seal.sealed);
        assert_eq!(seal.signer.post, Some(Post::Signer));
        assert_eq!(seal.signer.organisation.as_deref(), Some("北京市财政局"));
        let seal_report = seal.seal.as_ref().unwrap();
        assert_eq!(seal_report.seal.name, "北京市财政局业务专用章");
        assert_eq!(seal_report.signing_time, SIGNED_AT);
        assert_eq!(
            seal_report.seal.maker.organisation.as_deref(),
            Some("guoku 制章中心")
        );
        assert_eq!(report.positions[1].signer.post, Some(Post::Checker));
        let text = report.to_string();
        assert_eq!(text.matches(" valid\n").count(), 3, "{text}");
        assert!(
            text.contains("3 [ywzyz] seal \"北京市财政局业务专用章\""),
            "{text}"
        );
        // The seal's propertyInfo binds position, order and the earlier signatures.
        let Stamp::Seal { signature, .. } = &stamps[2] else {
            unreachable!()
        };
        assert!(
            signature.property_info().starts_with(&format!(
                "guoku-voucher-seal/1;suite={suite};index=2;prior="
            )),
            "{}",
            signature.property_info()
        );
        assert!(signature.property_info().ends_with(";position=3"));
    }
}

#[test]
fn partially_stamped_voucher_lists_the_missing_positions() {
    let f = fixture(Suite::Sm, 20);
    let positions = original_positions();
    let stamps = f.stamp_original(ORIGINAL, &positions);
    let report = verify_stamps(
        Suite::Sm,
        &voucher(ORIGINAL, &positions, &stamps[..1]),
        &f.trust(),
    )
    .unwrap();
    assert!(!report.is_complete_and_valid());
    assert!(report.positions[0].is_valid());
    assert_eq!(report.missing_positions, ["2", "3"]);
    assert!(report.to_string().contains("3: missing"));
}

#[test]
fn signature_only_positions_sign_exactly_as_sign_voucher() {
    for suite in Suite::ALL {
        let f = fixture(suite, 30);
        let posts = [Post::Maker, Post::Checker];
        let old_positions: Vec<SignaturePosition> = posts
            .iter()
            .map(|&post| SignaturePosition {
                name: format!("p{post}"),
                role: Some(OrgRole::Finance),
                post: Some(post),
            })
            .collect();
        let new_positions: Vec<StampPosition> = posts
            .iter()
            .map(|&post| position(&format!("p{post}"), StampKind::Qm, OrgRole::Finance, post))
            .collect();
        let mut old: Vec<VoucherSignature> = Vec::new();
        let mut new: Vec<Stamp> = Vec::new();
        for (i, p) in old_positions.iter().enumerate() {
            let (key, cert) = &f.finance[i];
            old.push(
                sign_voucher(suite, ORIGINAL, &old_positions, &old, &p.name, key, cert).unwrap(),
            );
            let signer = Signer::Signature {
                key,
                certificate: cert,
            };
            new.push(
                stamp_voucher(
                    suite,
                    &voucher(ORIGINAL, &new_positions, &new),
                    &p.name,
                    &signer,
                )
                .unwrap(),
            );
        }
        let as_old: Vec<VoucherSignature> = new
            .iter()
            .map(|s| match s {
                Stamp::Signature(v) => v.clone(),
                Stamp::Seal { .. } => panic!("no seal expected"),
            })
            .collect();
        assert_eq!(as_old, old, "{suite}");
        let report = verify_voucher(suite, ORIGINAL, &old_positions, &as_old, &f.trust()).unwrap();
        assert!(report.is_complete_and_valid(), "{report}");
    }
}

// ----- receipts -----------------------------------------------------------------------------

#[test]
fn receipt_keeps_the_original_stamps_and_adds_the_receiver_s() {
    for suite in Suite::ALL {
        let f = fixture(suite, 40);
        let (op, rp) = (original_positions(), receipt_positions());
        let stamps = f.stamp_original(ORIGINAL, &op);
        let original = voucher(ORIGINAL, &op, &stamps);
        let receipt_canonical = receipt_bytes(ORIGINAL);
        let receipt_stamps = f.stamp_receipt(&original, &receipt_canonical);
        let receipt = voucher(&receipt_canonical, &rp, &receipt_stamps);
        let report = verify_receipt(suite, &original, &receipt, &f.trust()).unwrap();
        assert!(report.is_complete_and_valid(), "{suite}:\n{report}");
        assert_eq!(report.original.positions.len(), 3);
        let bank = &report.receipt.positions[0];
        assert_eq!(bank.kind, Some(StampKind::Zqz));
        assert_eq!(bank.signer.role, Some(OrgRole::AgentBank));
        assert_eq!(bank.signer.organisation, Some(agent_bank().name));
        let Stamp::Seal { signature, .. } = &receipt_stamps[0] else {
            unreachable!()
        };
        assert!(signature.property_info().contains(";index=3;"));
        let text = report.to_string();
        assert!(
            text.starts_with("original:\n") && text.contains("receipt:\n11 [zqz]"),
            "{text}"
        );
        // The original's stamps alone still verify over the bytes without receipt fields…
        assert!(
            verify_stamps(suite, &original, &f.trust())
                .unwrap()
                .is_complete_and_valid()
        );
        // …and not over the receipt's full bytes.
        assert!(
            !verify_stamps(
                suite,
                &voucher(&receipt_canonical, &op, &stamps),
                &f.trust()
            )
            .unwrap()
            .is_complete_and_valid()
        );
    }
}

#[test]
fn receipt_whose_original_fields_were_altered_fails() {
    let f = fixture(Suite::Sm, 50);
    let (op, rp) = (original_positions(), receipt_positions());
    let stamps = f.stamp_original(ORIGINAL, &op);
    let receipt_canonical = receipt_bytes(ORIGINAL);
    let receipt_stamps = f.stamp_receipt(&voucher(ORIGINAL, &op, &stamps), &receipt_canonical);
    // Someone changes the payee account in the receipt: both byte strings change.
    let altered = String::from_utf8(ORIGINAL.to_vec())
        .unwrap()
        .replace("6222000011112222", "6222000099999999")
        .into_bytes();
    let altered_receipt = receipt_bytes(&altered);
    let report = verify_receipt(
        Suite::Sm,
        &voucher(&altered, &op, &stamps),
        &voucher(&altered_receipt, &rp, &receipt_stamps),
        &f.trust(),
    )
    .unwrap();
    assert!(!report.is_complete_and_valid());
    assert!(report.original.positions.iter().all(|p| !p.is_valid()));
    assert!(!report.receipt.positions[0].is_valid());
    let seal = report.original.positions[2].seal.as_ref().unwrap();
    assert!(seal.problems.contains(&SealProblem::DataHashMismatch));
    assert!(
        report.receipt.positions[0]
            .seal
            .as_ref()
            .unwrap()
            .problems
            .contains(&SealProblem::DataHashMismatch)
    );
    // Altering only a receipt field breaks only the receiver's seal.
    let receipt_changed = String::from_utf8(receipt_canonical.clone())
        .unwrap()
        .replace("<XPayDate>20260601", "<XPayDate>20260602")
        .into_bytes();
    let report = verify_receipt(
        Suite::Sm,
        &voucher(ORIGINAL, &op, &stamps),
        &voucher(&receipt_changed, &rp, &receipt_stamps),
        &f.trust(),
    )
    .unwrap();
    assert!(report.original.is_complete_and_valid());
    assert!(!report.receipt.is_complete_and_valid());
}

#[test]
fn receipt_whose_original_stamps_were_dropped_or_replaced_fails() {
    let f = fixture(Suite::Intl, 60);
    let (op, rp) = (original_positions(), receipt_positions());
    let stamps = f.stamp_original(ORIGINAL, &op);
    let receipt_canonical = receipt_bytes(ORIGINAL);
    let receipt_stamps = f.stamp_receipt(&voucher(ORIGINAL, &op, &stamps), &receipt_canonical);
    let receipt = voucher(&receipt_canonical, &rp, &receipt_stamps);

    // All original stamps dropped.
    let report = verify_receipt(
        Suite::Intl,
        &voucher(ORIGINAL, &op, &[]),
        &receipt,
        &f.trust(),
    )
    .unwrap();
    assert!(!report.is_complete_and_valid());
    assert_eq!(report.original.missing_positions, ["1", "2", "3"]);
    let bank = &report.receipt.positions[0];
    assert!(!bank.is_valid());
    assert!(
        bank.seal
            .as_ref()
            .unwrap()
            .problems
            .contains(&SealProblem::PropertyInfoMismatch)
    );

    // Only the finance seal dropped: the two signatures are still fine, the receipt is not.
    let report = verify_receipt(
        Suite::Intl,
        &voucher(ORIGINAL, &op, &stamps[..2]),
        &receipt,
        &f.trust(),
    )
    .unwrap();
    assert!(report.original.positions.iter().all(|p| p.is_valid()));
    assert_eq!(report.original.missing_positions, ["3"]);
    assert!(!report.receipt.positions[0].is_valid());

    // The checker's signature replaced by a new, valid-looking one from another checker.
    let mut r = rng(61);
    let other = issue_person(&f.d.sub, Suite::Intl, &mut r, finance(), Post::Checker, 150);
    let replaced = stamp_voucher(
        Suite::Intl,
        &voucher(ORIGINAL, &op, &stamps[..1]),
        "2",
        &Signer::Signature {
            key: &other.0,
            certificate: &other.1,
        },
    )
    .unwrap();
    let mut swapped = stamps.clone();
    swapped[1] = replaced;
    let report = verify_receipt(
        Suite::Intl,
        &voucher(ORIGINAL, &op, &swapped),
        &receipt,
        &f.trust(),
    )
    .unwrap();
    assert!(
        report.original.positions[1].is_valid(),
        "the replacement itself verifies"
    );
    assert!(
        !report.original.positions[2].is_valid(),
        "the seal attests the old one"
    );
    assert!(!report.receipt.positions[0].is_valid());
}

#[test]
fn receipt_is_stamped_only_on_a_complete_original_with_distinct_positions() {
    let f = fixture(Suite::Sm, 70);
    let op = original_positions();
    let stamps = f.stamp_original(ORIGINAL, &op);
    let receipt_canonical = receipt_bytes(ORIGINAL);
    let rp = receipt_positions();
    let empty = voucher(&receipt_canonical, &rp, &[]);
    let err = stamp_receipt(
        Suite::Sm,
        &voucher(ORIGINAL, &op, &stamps[..2]),
        &empty,
        "11",
        &f.bank_signer(),
    )
    .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    let clash = vec![position(
        "3",
        StampKind::Zqz,
        OrgRole::AgentBank,
        Post::Signer,
    )];
    let err = stamp_receipt(
        Suite::Sm,
        &voucher(ORIGINAL, &op, &stamps),
        &voucher(&receipt_canonical, &clash, &[]),
        "3",
        &f.bank_signer(),
    )
    .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    let err = verify_receipt(
        Suite::Sm,
        &voucher(ORIGINAL, &op, &stamps),
        &voucher(&receipt_canonical, &clash, &[]),
        &f.trust(),
    )
    .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
}

// ----- refusals and reports at positions ----------------------------------------------------

#[test]
fn stamping_refuses_the_wrong_kind_holder_seal_or_order() {
    let f = fixture(Suite::Sm, 80);
    let op = original_positions();
    let stamps = f.stamp_original(ORIGINAL, &op);
    let at = |n: usize| voucher(ORIGINAL, &op, &stamps[..n]);
    let (fkey, fcert) = (&f.finance[2].0, &f.finance[2].1);
    let cases: Vec<(&str, StampedVoucher<'_>, &str, Signer<'_>)> = vec![
        (
            "a signature at a seal position",
            at(2),
            "3",
            Signer::Signature {
                key: fkey,
                certificate: fcert,
            },
        ),
        (
            "a seal at a signature position",
            at(0),
            "1",
            Signer::Seal {
                seal: &f.finance_seal,
                key: &f.finance[0].0,
                certificate: &f.finance[0].1,
                time: SIGNED_AT,
            },
        ),
        (
            "a zqz seal at a ywzyz position",
            at(2),
            "3",
            Signer::Seal {
                seal: &f.bank_seal,
                key: fkey,
                certificate: fcert,
                time: SIGNED_AT,
            },
        ),
        (
            "a bank signer at a finance position",
            at(2),
            "3",
            Signer::Seal {
                seal: &f.finance_seal,
                key: &f.bank_signer.0,
                certificate: &f.bank_signer.1,
                time: SIGNED_AT,
            },
        ),
        ("not the next position", at(1), "3", f.original_signer(2)),
        ("every position stamped", at(3), "3", f.original_signer(2)),
    ];
    for (what, v, pos, signer) in cases {
        let err = stamp_voucher(Suite::Sm, &v, pos, &signer).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{what}: {err}");
    }
    // A seal position's name goes into propertyInfo (IA5String): printable ASCII only.
    let chinese = vec![
        op[0].clone(),
        op[1].clone(),
        position("业务章", StampKind::Ywzyz, OrgRole::Finance, Post::Signer),
    ];
    let err = stamp_voucher(
        Suite::Sm,
        &voucher(ORIGINAL, &chinese, &stamps[..2]),
        "业务章",
        &f.original_signer(2),
    )
    .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    // A holder who is not on the seal's list is refused as a seal refusal.
    let mut r = rng(81);
    let other = issue_person(&f.d.sub, Suite::Sm, &mut r, finance(), Post::Signer, 160);
    let err = stamp_voucher(
        Suite::Sm,
        &at(2),
        "3",
        &Signer::Seal {
            seal: &f.finance_seal,
            key: &other.0,
            certificate: &other.1,
            time: SIGNED_AT,
        },
    )
    .unwrap_err();
    assert!(
        matches!(err, Error::SealRefused(SealProblem::SignerNotListed)),
        "{err}"
    );
}

#[test]
fn stamps_moved_reordered_or_of_the_wrong_kind_are_reported() {
    let f = fixture(Suite::Sm, 90);
    let op = original_positions();
    let stamps = f.stamp_original(ORIGINAL, &op);
    let check = |stamps: &[Stamp], positions: &[StampPosition]| {
        verify_stamps(Suite::Sm, &voucher(ORIGINAL, positions, stamps), &f.trust()).unwrap()
    };

    // The two signatures swapped.
    let mut swapped = stamps.clone();
    swapped.swap(0, 1);
    let report = check(&swapped, &op);
    assert!(!report.is_complete_and_valid());
    assert!(!report.positions[0].in_order && !report.positions[0].signature_valid);
    assert!(
        !report.positions[2].is_valid(),
        "the seal attests the original order"
    );

    // The seal signature relabelled to another position name.
    let mut relabelled = stamps.clone();
    let Stamp::Seal { signature, .. } = stamps[2].clone() else {
        unreachable!()
    };
    relabelled[2] = Stamp::Seal {
        position: "4".into(),
        signature: signature.clone(),
    };
    let mut more = op.clone();
    more.push(position(
        "4",
        StampKind::Ywzyz,
        OrgRole::Finance,
        Post::Signer,
    ));
    let report = check(&relabelled, &more);
    let p = &report.positions[2];
    assert!(!p.in_order);
    assert!(
        p.seal
            .as_ref()
            .unwrap()
            .problems
            .contains(&SealProblem::PropertyInfoMismatch)
    );
    assert_eq!(report.missing_positions, ["3"]);

    // The seal lifted onto another voucher.
    let other = String::from_utf8(ORIGINAL.to_vec())
        .unwrap()
        .replace("000042", "000043")
        .into_bytes();
    let report = verify_stamps(Suite::Sm, &voucher(&other, &op, &stamps), &f.trust()).unwrap();
    assert!(report.positions.iter().all(|p| !p.is_valid()));

    // A plain signature where the configuration asks for a seal.
    let plain = vec![
        op[0].clone(),
        op[1].clone(),
        position("3", StampKind::Qm, OrgRole::Finance, Post::Signer),
    ];
    let mut signed = stamps[..2].to_vec();
    signed.push(
        stamp_voucher(
            Suite::Sm,
            &voucher(ORIGINAL, &plain, &signed),
            "3",
            &Signer::Signature {
                key: &f.finance[2].0,
                certificate: &f.finance[2].1,
            },
        )
        .unwrap(),
    );
    assert!(check(&signed, &plain).is_complete_and_valid());
    let report = check(&signed, &op);
    let p = &report.positions[2];
    assert!(p.signature_valid && !p.kind_matches && !p.is_valid());
    assert!(
        p.reasons()
            .iter()
            .any(|r| r.contains("ywzyz seal is required")),
        "{:?}",
        p.reasons()
    );
    // And a seal where a signature is asked for.
    let report = check(&stamps, &plain);
    assert!(!report.positions[2].kind_matches);
}

#[test]
fn revoked_or_foreign_signer_is_reported_at_its_position() {
    let f = fixture(Suite::Sm, 100);
    let op = original_positions();
    let stamps = f.stamp_original(ORIGINAL, &op);
    let revoked = crls(&f.d, &[&f.finance[1].1, &f.finance[2].1]);
    let report = verify_stamps(
        Suite::Sm,
        &voucher(ORIGINAL, &op, &stamps),
        &f.trust_with(&revoked, NOW),
    )
    .unwrap();
    assert!(report.positions[0].is_valid());
    assert_eq!(report.positions[1].path, PathStatus::Revoked);
    assert_eq!(report.positions[2].path, PathStatus::Revoked);
    assert!(report.positions[1].signature_valid && report.positions[2].signature_valid);
    let text = report.to_string();
    assert!(
        text.contains("INVALID: signer certificate: revoked"),
        "{text}"
    );

    // The same voucher checked against a foreign deployment's trust anchor.
    let foreign = fixture(Suite::Sm, 101);
    let report = verify_stamps(
        Suite::Sm,
        &voucher(ORIGINAL, &op, &stamps),
        &foreign.trust(),
    )
    .unwrap();
    assert!(
        report
            .positions
            .iter()
            .all(|p| matches!(p.path, PathStatus::Refused(_)))
    );
    let seal = report.positions[2].seal.as_ref().unwrap();
    assert!(matches!(seal.seal.maker_path, PathStatus::Refused(_)));
}

#[test]
fn expired_seal_or_certificates_are_reported_at_their_positions() {
    let f = build(Suite::Intl, 110, false, Validity::days_from(ISSUED, 200));
    let op = original_positions();
    let stamps = f.stamp_original(ORIGINAL, &op);
    let v = voucher(ORIGINAL, &op, &stamps);
    // Day 250: the seal expired on day 200; certificates and CRLs are still current.
    let day_250 = ISSUED + Duration::days(250);
    let report = verify_stamps(Suite::Intl, &v, &f.trust_with(&f.crls, day_250)).unwrap();
    assert!(report.positions[0].is_valid() && report.positions[1].is_valid());
    let p = &report.positions[2];
    assert!(p.signature_valid && p.path == PathStatus::Valid && !p.is_valid());
    assert_eq!(
        p.seal.as_ref().unwrap().seal.problems,
        [SealProblem::NotValidNow]
    );
    assert!(
        p.reasons().iter().any(|r| r.contains("expired")),
        "{:?}",
        p.reasons()
    );
    // Day 400: every certificate has expired.
    let report = verify_stamps(
        Suite::Intl,
        &v,
        &f.trust_with(&f.crls, ISSUED + Duration::days(400)),
    )
    .unwrap();
    assert!(
        report
            .positions
            .iter()
            .all(|p| p.path == PathStatus::NotValidAtTime)
    );
}

// ----- single-bit flips ---------------------------------------------------------------------

fn flip(bytes: &[u8], bit: usize) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out[bit / 8] ^= 1 << (bit % 8);
    out
}

/// A voucher with a maker's signature and the finance seal, people under the root and no
/// CRLs, so that each verification checks few certificate signatures. SM2 is built with
/// opt-level 3 in dev, which keeps a few thousand verifications to seconds.
struct Flips {
    f: Fixture,
    positions: Vec<StampPosition>,
    stamps: Vec<Stamp>,
}

fn flips() -> Flips {
    let suite = Suite::Sm;
    let f = build(suite, 120, true, Validity::days_from(ISSUED, 365));
    let positions = vec![
        position("1", StampKind::Qm, OrgRole::Finance, Post::Maker),
        position("3", StampKind::Ywzyz, OrgRole::Finance, Post::Signer),
    ];
    let maker = Signer::Signature {
        key: &f.finance[0].0,
        certificate: &f.finance[0].1,
    };
    let first = stamp_voucher(suite, &voucher(ORIGINAL, &positions, &[]), "1", &maker).unwrap();
    let second = stamp_voucher(
        suite,
        &voucher(ORIGINAL, &positions, std::slice::from_ref(&first)),
        "3",
        &f.original_signer(2),
    )
    .unwrap();
    let stamps = vec![first, second];
    let flips = Flips {
        f,
        positions,
        stamps,
    };
    assert!(flips.accepts(ORIGINAL, &flips.stamps));
    flips
}

impl Flips {
    fn accepts(&self, canonical: &[u8], stamps: &[Stamp]) -> bool {
        verify_stamps(
            Suite::Sm,
            &voucher(canonical, &self.positions, stamps),
            &self.f.trust(),
        )
        .unwrap()
        .is_complete_and_valid()
    }

    fn signature(&self) -> &VoucherSignature {
        let Stamp::Signature(sig) = &self.stamps[0] else {
            unreachable!()
        };
        sig
    }

    /// The stamps with the maker's signature replaced.
    fn with_signature(&self, sig: VoucherSignature) -> Vec<Stamp> {
        let mut s = self.stamps.clone();
        s[0] = Stamp::Signature(sig);
        s
    }
}

/// The issue's check: every single-bit flip of a signed and sealed voucher's canonical bytes
/// is rejected.
#[test]
fn every_single_bit_flip_of_the_canonical_bytes_is_detected() {
    let t = flips();
    assert!(ORIGINAL.len() >= 300, "{}", ORIGINAL.len());
    let accepted: Vec<usize> = (0..ORIGINAL.len() * 8)
        .filter(|&bit| t.accepts(&flip(ORIGINAL, bit), &t.stamps))
        .collect();
    assert!(accepted.is_empty(), "canonical bits accepted: {accepted:?}");
}

#[test]
fn every_single_bit_flip_of_a_signature_value_is_detected() {
    let t = flips();
    let sig = t.signature();
    let bytes = sig.signature.as_bytes();
    let accepted: Vec<usize> = (0..bytes.len() * 8)
        .filter(|&bit| {
            let flipped = VoucherSignature {
                signature: Signature::from_bytes(flip(bytes, bit)),
                ..sig.clone()
            };
            t.accepts(ORIGINAL, &t.with_signature(flipped))
        })
        .collect();
    assert!(accepted.is_empty(), "signature bits accepted: {accepted:?}");
}

/// Every 5th bit of the signer's certificate (every bit of a full seal, certificate included,
/// is flipped in tests/ses.rs).
#[test]
fn single_bit_flips_of_a_signer_certificate_are_detected() {
    let t = flips();
    let sig = t.signature();
    let der = sig.certificate.to_der();
    let accepted: Vec<usize> = (0..der.len() * 8)
        .step_by(5)
        .filter(|&bit| {
            let Ok(certificate) = Certificate::from_der(&flip(der, bit)) else {
                return false;
            };
            let flipped = VoucherSignature {
                certificate,
                ..sig.clone()
            };
            t.accepts(ORIGINAL, &t.with_signature(flipped))
        })
        .collect();
    assert!(
        accepted.is_empty(),
        "certificate bits accepted: {accepted:?}"
    );
}

/// Every 5th bit of the seal signature's DER, which carries the seal, both certificates, the
/// data hash, the binding and the signature.
#[test]
fn single_bit_flips_of_a_seal_signature_are_detected() {
    let t = flips();
    let Stamp::Seal {
        position,
        signature,
    } = &t.stamps[1]
    else {
        unreachable!()
    };
    let der = signature.to_der();
    let accepted: Vec<usize> = (0..der.len() * 8)
        .step_by(5)
        .filter(|&bit| {
            let Ok(signature) = SealSignature::from_der(&flip(der, bit)) else {
                return false;
            };
            let mut s = t.stamps.clone();
            s[1] = Stamp::Seal {
                position: position.clone(),
                signature,
            };
            t.accepts(ORIGINAL, &s)
        })
        .collect();
    assert!(
        accepted.is_empty(),
        "SES_Signature bits accepted: {accepted:?}"
    );
}

#[test]
fn stamp_kinds_parse_and_split_into_seals_and_signatures() {
    let seals: Vec<&str> = StampKind::ALL
        .into_iter()
        .filter(|k| k.is_seal())
        .map(StampKind::code)
        .collect();
    assert_eq!(seals, ["ywzyz", "zqz", "gz", "fjz", "sz", "jzysz", "fhysz"]);
    for kind in StampKind::ALL {
        assert_eq!(kind.code().parse::<StampKind>().unwrap(), kind);
        if let Some(code) = kind.seal_type_code() {
            assert_eq!(StampKind::from_seal_type_code(code), Some(kind));
        }
    }
    assert_eq!(StampKind::from_seal_type_code(0), None);
    assert!(matches!(
        "seal".parse::<StampKind>(),
        Err(Error::InvalidArgument(_))
    ));
}
