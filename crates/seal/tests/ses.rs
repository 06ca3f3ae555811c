//! GM/T 0031 v4 electronic seals and seal signatures: DER layout and round trips, the
//! sealmaker's and the signer's checks, and bad input of every kind.

mod common;

use std::process::Command;

use common::{Deployment, ISSUED, NOW, agent_bank, finance, person, rng};
use der::asn1::{BitString, GeneralizedTime, Ia5String, OctetString};
use der::{Decode, Encode};
use guoku_seal::pki::{
    Certificate, Crl, OrgRole, Organisation, Person, Post, Revocation, RevocationPolicy, Serial,
    Validity,
};
use guoku_seal::ses::{
    CertListForm, ExtData, SESeal, Seal, SealPicture, SealProblem, SealSignature, SealSpec,
    SesCertList, SesSignature, TbsSign, demo_seal_svg, make_seal, sign_with_seal, verify_seal,
    verify_seal_signature,
};
use guoku_seal::voucher::{PathStatus, StampKind, TrustContext};
use guoku_seal::{Error, ErrorKind, SigningKey, Suite, hash};
use time::{Duration, OffsetDateTime};

const DATA: &[u8] = b"<Voucher><VtCode>5201</VtCode><VoucherNo>000042</VoucherNo></Voucher>";

/// A deployment with a sealmaker (an organisation certificate under the root), a seal holder
/// (a person under the sub-CA) and a seal listing the holder.
struct Fixture {
    suite: Suite,
    d: Deployment,
    maker: (SigningKey, Certificate),
    holder: (SigningKey, Certificate),
    subs: Vec<Certificate>,
    crls: Vec<Crl>,
    seal: Seal,
}

fn sealmaker_org() -> Organisation {
    Organisation {
        role: OrgRole::Finance,
        code: "11000000SEALMAKER".into(),
        name: "guoku 制章中心".into(),
    }
}

fn spec(suite: Suite, holders: Vec<Certificate>, form: CertListForm) -> SealSpec {
    SealSpec {
        es_id: format!("11000000000000000X-ywzyz-{suite}"),
        kind: StampKind::Ywzyz,
        name: "北京市财政局业务专用章".into(),
        holders,
        list_form: form,
        picture: SealPicture::demo("北京市财政局", "业务专用章", 42),
        created: ISSUED,
        validity: Validity::days_from(ISSUED, 365),
    }
}

fn fixture(suite: Suite, seed: u64) -> Fixture {
    let d = Deployment::new(suite, seed);
    let mut r = rng(seed + 1);
    let alg = suite.signature_algorithm();
    let maker_key = SigningKey::generate(alg, &mut r).unwrap();
    let maker_cert = d
        .root
        .issue_organisation(
            maker_key.verifying_key(),
            &sealmaker_org(),
            &Serial::from_u64(50).unwrap(),
            Validity::days_from(ISSUED, 365),
        )
        .unwrap();
    let holder = d.person_under_sub(&mut r, Post::Signer, 60);
    let seal = make_seal(
        suite,
        &spec(suite, vec![holder.1.clone()], CertListForm::Certificates),
        &maker_key,
        &maker_cert,
    )
    .unwrap();
    let subs = vec![d.sub.certificate().clone()];
    let crls = crls(&d, &[]);
    Fixture {
        suite,
        d,
        maker: (maker_key, maker_cert),
        holder,
        subs,
        crls,
        seal,
    }
}

fn crls(d: &Deployment, revoked: &[&Certificate]) -> Vec<Crl> {
    let serials: Vec<_> = revoked.iter().map(|c| c.serial()).collect();
    common::crls(d, &serials, ISSUED + Duration::days(2))
}

impl Fixture {
    fn trust_at<'a>(&'a self, crls: &'a [Crl], now: OffsetDateTime) -> TrustContext<'a> {
        TrustContext {
            anchor: self.d.root.certificate(),
            intermediates: &self.subs,
            crls,
            revocation: RevocationPolicy::RequireCrl,
            now,
        }
    }

    fn trust(&self) -> TrustContext<'_> {
        self.trust_at(&self.crls, NOW)
    }

    fn sign(&self, data: &[u8]) -> SealSignature {
        sign_with_seal(
            self.suite,
            &self.seal,
            data,
            "voucher 000042",
            &self.holder.0,
            &self.holder.1,
            NOW - Duration::hours(1),
        )
        .unwrap()
    }

    /// Re-sign a changed `SES_SealInfo` with another key than the sealmaker's, or just
    /// re-encode it with the old signature (`key: None`).
    fn reseal(&self, mut asn1: SESeal, key: Option<&SigningKey>) -> Seal {
        if let Some(key) = key {
            let sig = key.sign(&asn1.e_seal_info.to_der().unwrap()).unwrap();
            asn1.signed_value = BitString::from_bytes(sig.as_bytes()).unwrap();
        }
        Seal::from_der(&asn1.to_der().unwrap()).unwrap()
    }
}

/// Sign `tbs` with `key` and assemble an `SES_Signature`, bypassing `sign_with_seal`'s checks
/// (how a forger would).
fn forge_signature(
    suite: Suite,
    tbs: TbsSign,
    key: &SigningKey,
    cert: &Certificate,
) -> SealSignature {
    let sig = key.sign(&tbs.to_der().unwrap()).unwrap();
    let asn1 = SesSignature {
        to_sign: tbs,
        cert: OctetString::new(cert.to_der().to_vec()).unwrap(),
        signature_alg_id: suite.signature_algorithm().signature_oid(),
        signature: BitString::from_bytes(sig.as_bytes()).unwrap(),
        time_stamp: None,
    };
    SealSignature::from_der(&asn1.to_der().unwrap()).unwrap()
}

// ----- good seals ---------------------------------------------------------------------------

#[test]
fn seal_and_seal_signature_verify_for_both_suites() {
    for suite in Suite::ALL {
        let f = fixture(suite, 100);
        let report = verify_seal(suite, &f.seal, &f.trust());
        assert!(report.is_valid(), "{suite}: {report:?}");
        assert_eq!(report.kind, Some(StampKind::Ywzyz));
        assert_eq!(report.name, "北京市财政局业务专用章");
        assert_eq!(report.maker.organisation.as_deref(), Some("guoku 制章中心"));

        let sig = f.sign(DATA);
        let report = verify_seal_signature(suite, &sig, DATA, &f.trust());
        assert!(report.is_valid(), "{suite}: {:?}", report.reasons());
        assert!(report.reasons().is_empty());
        assert_eq!(report.signer.post, Some(Post::Signer));
        assert_eq!(report.signing_time, NOW - Duration::hours(1));
        assert_eq!(sig.property_info(), "voucher 000042");
        assert_eq!(
            sig.asn1().to_sign.data_hash.as_bytes(),
            Some(&hash(suite, DATA)[..])
        );
        assert_eq!(
            sig.asn1().signature_alg_id.to_string(),
            match suite {
                Suite::Sm => "1.2.156.10197.1.501",
                Suite::Intl => "1.3.101.112",
            }
        );
    }
}

#[test]
fn seal_fields_follow_the_v4_layout() {
    let f = fixture(Suite::Sm, 110);
    let info = &f.seal.asn1().e_seal_info;
    assert_eq!(info.header.id.as_str(), "ES");
    assert_eq!(info.header.version, 4);
    assert_eq!(info.header.vid.as_str(), "guoku");
    assert_eq!(info.property.seal_type, 2);
    let SesCertList::Certs(certs) = &info.property.cert_list else {
        panic!("expected certListType 1");
    };
    assert_eq!(certs[0].as_bytes(), f.holder.1.to_der());
    assert_eq!(info.picture.picture_type.as_str(), "SVG");
    assert_eq!((info.picture.width, info.picture.height), (42, 42));
    assert_eq!(f.seal.maker().to_der(), f.maker.1.to_der());
    assert_eq!(f.seal.validity(), Validity::days_from(ISSUED, 365));
    assert_eq!(f.seal.created(), ISSUED);

    // SESeal ::= SEQUENCE { SEQUENCE, OCTET STRING, OBJECT IDENTIFIER, BIT STRING }
    let fields = Vec::<der::Any>::from_der(f.seal.to_der()).unwrap();
    let tags: Vec<der::Tag> = fields.iter().map(der::Tagged::tag).collect();
    assert_eq!(
        tags,
        [
            der::Tag::Sequence,
            der::Tag::OctetString,
            der::Tag::ObjectIdentifier,
            der::Tag::BitString
        ]
    );
}

#[test]
fn seal_listing_certificate_digests_verifies() {
    for suite in Suite::ALL {
        let f = fixture(suite, 120);
        let seal = make_seal(
            suite,
            &spec(suite, vec![f.holder.1.clone()], CertListForm::Digests),
            &f.maker.0,
            &f.maker.1,
        )
        .unwrap();
        let SesCertList::Digests(digests) = &seal.asn1().e_seal_info.property.cert_list else {
            panic!("expected certListType 2");
        };
        assert_eq!(
            digests[0].value.as_bytes(),
            hash(suite, f.holder.1.to_der())
        );
        assert!(seal.lists(suite, &f.holder.1));
        let sig = sign_with_seal(suite, &seal, DATA, "x", &f.holder.0, &f.holder.1, NOW).unwrap();
        let report = verify_seal_signature(suite, &sig, DATA, &f.trust());
        assert!(report.is_valid(), "{suite}: {:?}", report.reasons());
    }
}

#[test]
fn der_of_seal_and_signature_decodes_and_reencodes_identically() {
    for suite in Suite::ALL {
        let f = fixture(suite, 130);
        let seal_der = f.seal.to_der();
        let again = Seal::from_der(seal_der).unwrap();
        assert_eq!(again, f.seal);
        assert_eq!(
            SESeal::from_der(seal_der).unwrap().to_der().unwrap(),
            seal_der
        );

        let sig = f.sign(DATA);
        let again = SealSignature::from_der(sig.to_der()).unwrap();
        assert_eq!(again, sig);
        assert_eq!(again.to_der(), sig.to_der());
        assert_eq!(again.seal().to_der(), seal_der);
        assert_eq!(
            SesSignature::from_der(sig.to_der())
                .unwrap()
                .to_der()
                .unwrap(),
            sig.to_der()
        );
    }
}

#[test]
fn optional_fields_use_explicit_context_tags_and_round_trip() {
    let f = fixture(Suite::Sm, 140);
    let ext = ExtData {
        extn_id: "1.2.3.4".parse().unwrap(),
        critical: true,
        extn_value: OctetString::new(vec![1, 2, 3]).unwrap(),
    };
    let mut asn1 = f.sign(DATA).asn1().clone();
    asn1.to_sign.ext_datas = Some(vec![ext.clone()]);
    asn1.time_stamp = Some(BitString::from_bytes(&[0xAB; 8]).unwrap());
    let der = asn1.to_der().unwrap();
    let decoded = SesSignature::from_der(&der).unwrap();
    assert_eq!(decoded, asn1);
    assert_eq!(decoded.to_der().unwrap(), der);
    // timeStamp [0] EXPLICIT BIT STRING: A0 len 03 len 00 AB…, last in the outer SEQUENCE.
    let tail = &der[der.len() - 13..];
    assert_eq!(tail[..5], [0xA0, 0x0B, 0x03, 0x09, 0x00]);
    // extDatas [0] EXPLICIT SEQUENCE OF ExtData, last in TBS_Sign.
    let tbs = decoded.to_sign.to_der().unwrap();
    let ext_der = vec![ext].to_der().unwrap();
    let tagged_at = tbs.len() - ext_der.len() - 2;
    assert_eq!(tbs[tagged_at], 0xA0);
    assert_eq!(&tbs[tagged_at + 2..], &ext_der[..]);
    // And a seal with extDatas in SES_SealInfo (untagged, OPTIONAL) round-trips too.
    let mut seal = f.seal.asn1().clone();
    seal.e_seal_info.ext_datas = Some(vec![]);
    let der = seal.to_der().unwrap();
    assert_eq!(SESeal::from_der(&der).unwrap(), seal);
}

fn openssl_available() -> bool {
    Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn openssl_asn1parse_reads_seal_and_signature() {
    if !openssl_available() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "openssl is required in CI"
        );
        eprintln!("SKIPPED: openssl is not installed; GM/T 0031 DER was not cross-checked");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for suite in Suite::ALL {
        let f = fixture(suite, 150);
        let sig = f.sign(DATA);
        for (name, der) in [("seal", f.seal.to_der()), ("signature", sig.to_der())] {
            let path = dir.path().join(format!("{suite}-{name}.der"));
            std::fs::write(&path, der).unwrap();
            let out = Command::new("openssl")
                .args(["asn1parse", "-inform", "DER", "-in"])
                .arg(&path)
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "{suite} {name}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(text.contains(":ES"), "{text}");
            assert!(text.contains("GENERALIZEDTIME"), "{text}");
            assert!(text.contains("UTF8STRING"), "{text}");
            if name == "signature" {
                assert!(text.contains(":voucher 000042"), "{text}");
            }
        }
    }
}

#[test]
fn demo_picture_is_an_svg_with_the_escaped_name() {
    let svg = demo_seal_svg("A&B <财政>", "业务专用章", 40);
    assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"40mm\""));
    assert!(svg.ends_with("</svg>"));
    assert!(svg.contains("A&amp;B &lt;财政&gt;"));
    assert!(!svg.contains("<财政>"));
    assert!(svg.contains("业务专用章"));
    assert_eq!(svg.matches("<polygon").count(), 1);
    let picture = SealPicture::demo("北京市财政局", "公章", 42);
    assert_eq!(picture.format, "SVG");
    assert_eq!(
        picture.data,
        demo_seal_svg("北京市财政局", "公章", 42).into_bytes()
    );
}

// ----- refused when making or using a seal --------------------------------------------------

#[test]
fn make_seal_refuses_bad_arguments() {
    let f = fixture(Suite::Sm, 200);
    let good = spec(
        Suite::Sm,
        vec![f.holder.1.clone()],
        CertListForm::Certificates,
    );
    let cases: Vec<(&str, SealSpec)> = vec![
        (
            "signature kind",
            SealSpec {
                kind: StampKind::Qm,
                ..good.clone()
            },
        ),
        (
            "no holders",
            SealSpec {
                holders: vec![],
                ..good.clone()
            },
        ),
        (
            "non-ASCII id",
            SealSpec {
                es_id: "印章1".into(),
                ..good.clone()
            },
        ),
        (
            "empty name",
            SealSpec {
                name: String::new(),
                ..good.clone()
            },
        ),
        (
            "validity backwards",
            SealSpec {
                validity: Validity {
                    not_before: NOW,
                    not_after: ISSUED,
                },
                ..good.clone()
            },
        ),
        (
            "empty picture",
            SealSpec {
                picture: SealPicture {
                    data: vec![],
                    ..good.picture.clone()
                },
                ..good.clone()
            },
        ),
    ];
    for (what, spec) in cases {
        let err = make_seal(Suite::Sm, &spec, &f.maker.0, &f.maker.1).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{what}: {err}");
    }
    // The key must be the certificate's, and the suite's.
    let err = make_seal(Suite::Sm, &good, &f.holder.0, &f.maker.1).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    let intl = fixture(Suite::Intl, 201);
    let err = make_seal(Suite::Sm, &good, &intl.maker.0, &intl.maker.1).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
}

#[test]
fn signer_not_on_the_cert_list_is_refused_and_a_forged_signature_is_reported() {
    for suite in Suite::ALL {
        let f = fixture(suite, 210);
        let mut r = rng(211);
        let (key, cert) = f.d.person_under_sub(&mut r, Post::Signer, 61);
        let err = sign_with_seal(suite, &f.seal, DATA, "x", &key, &cert, NOW).unwrap_err();
        assert!(
            matches!(err, Error::SealRefused(SealProblem::SignerNotListed)),
            "{err}"
        );
        assert!(err.is_refusal());

        // A forger who signs TBS_Sign anyway is caught by the verifier.
        let tbs = f.sign(DATA).asn1().to_sign.clone();
        let forged = forge_signature(suite, tbs, &key, &cert);
        let report = verify_seal_signature(suite, &forged, DATA, &f.trust());
        assert!(!report.is_valid());
        assert_eq!(report.problems, [SealProblem::SignerNotListed]);
        assert_eq!(report.signer.staff_id.as_deref(), Some("S0061"));
    }
}

#[test]
fn the_listed_signer_s_certificate_with_someone_else_s_key_is_caught() {
    let f = fixture(Suite::Sm, 215);
    let mut r = rng(216);
    let other = SigningKey::generate(Suite::Sm.signature_algorithm(), &mut r).unwrap();
    let tbs = f.sign(DATA).asn1().to_sign.clone();
    let forged = forge_signature(Suite::Sm, tbs, &other, &f.holder.1);
    let report = verify_seal_signature(Suite::Sm, &forged, DATA, &f.trust());
    assert_eq!(report.problems, [SealProblem::SignatureInvalid]);
    // sign_with_seal itself refuses a key that is not the certificate's.
    let err = sign_with_seal(Suite::Sm, &f.seal, DATA, "x", &other, &f.holder.1, NOW).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
}

#[test]
fn expired_seal_is_refused_for_signing_and_reported_when_verified() {
    let f = fixture(Suite::Sm, 220);
    let short = make_seal(
        Suite::Sm,
        &SealSpec {
            validity: Validity::days_from(ISSUED, 30),
            ..spec(
                Suite::Sm,
                vec![f.holder.1.clone()],
                CertListForm::Certificates,
            )
        },
        &f.maker.0,
        &f.maker.1,
    )
    .unwrap();
    // Using it after it expired is refused.
    let err =
        sign_with_seal(Suite::Sm, &short, DATA, "x", &f.holder.0, &f.holder.1, NOW).unwrap_err();
    assert!(
        matches!(err, Error::SealRefused(SealProblem::NotValidAtSigning)),
        "{err}"
    );
    // Used while valid, but checked after it expired.
    let used = ISSUED + Duration::days(10);
    let sig = sign_with_seal(Suite::Sm, &short, DATA, "x", &f.holder.0, &f.holder.1, used).unwrap();
    let report = verify_seal_signature(Suite::Sm, &sig, DATA, &f.trust());
    assert!(!report.is_valid());
    assert_eq!(report.seal.problems, [SealProblem::NotValidNow]);
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    // While the seal is still valid, the same signature is fine.
    let report = verify_seal_signature(
        Suite::Sm,
        &sig,
        DATA,
        &f.trust_at(&f.crls, ISSUED + Duration::days(20)),
    );
    assert!(report.is_valid(), "{:?}", report.reasons());
    // A signature claiming a time outside the seal's validity (forged) is reported.
    let mut tbs = sig.asn1().to_sign.clone();
    tbs.time_info = gtime(ISSUED + Duration::days(40));
    let forged = forge_signature(Suite::Sm, tbs, &f.holder.0, &f.holder.1);
    let report = verify_seal_signature(Suite::Sm, &forged, DATA, &f.trust());
    assert!(report.problems.contains(&SealProblem::NotValidAtSigning));
}

fn gtime(t: OffsetDateTime) -> GeneralizedTime {
    GeneralizedTime::from_unix_duration(std::time::Duration::from_secs(t.unix_timestamp() as u64))
        .unwrap()
}

#[test]
fn signing_time_in_the_future_or_outside_the_signer_s_certificate_is_reported() {
    let f = fixture(Suite::Intl, 225);
    let base = f.sign(DATA).asn1().to_sign.clone();
    let mut tbs = base.clone();
    tbs.time_info = gtime(NOW + Duration::days(1));
    let forged = forge_signature(Suite::Intl, tbs, &f.holder.0, &f.holder.1);
    let report = verify_seal_signature(Suite::Intl, &forged, DATA, &f.trust());
    assert_eq!(report.problems, [SealProblem::SignedInFuture]);
    // Within the clock skew allowance it is accepted.
    let mut tbs = base.clone();
    tbs.time_info = gtime(NOW + Duration::minutes(4));
    let ok = forge_signature(Suite::Intl, tbs, &f.holder.0, &f.holder.1);
    assert!(verify_seal_signature(Suite::Intl, &ok, DATA, &f.trust()).is_valid());
    // Before the signer's certificate was issued.
    let mut tbs = base;
    tbs.time_info = gtime(ISSUED - Duration::days(1));
    let forged = forge_signature(Suite::Intl, tbs, &f.holder.0, &f.holder.1);
    let report = verify_seal_signature(Suite::Intl, &forged, DATA, &f.trust());
    assert!(
        report
            .problems
            .contains(&SealProblem::SignerNotValidAtSigning)
    );
}

// ----- tampering ----------------------------------------------------------------------------

/// A change made to a seal after the sealmaker signed it.
type Change = Box<dyn Fn(&mut SESeal)>;

#[test]
fn picture_or_properties_changed_after_sealing_break_the_sealmaker_s_signature() {
    for suite in Suite::ALL {
        let f = fixture(suite, 230);
        let mut r = rng(231);
        let (_, intruder) = f.d.person_under_sub(&mut r, Post::Signer, 62);
        let changes: Vec<(&str, Change)> = vec![
            (
                "picture",
                Box::new(|s| {
                    let mut data = s.e_seal_info.picture.data.as_bytes().to_vec();
                    data.extend_from_slice(b"<!-- -->");
                    s.e_seal_info.picture.data = OctetString::new(data).unwrap();
                }),
            ),
            (
                "picture size",
                Box::new(|s| s.e_seal_info.picture.width = 60),
            ),
            (
                "name",
                Box::new(|s| s.e_seal_info.property.name = "北京市财政局公章".into()),
            ),
            ("type", Box::new(|s| s.e_seal_info.property.seal_type = 3)),
            (
                "validEnd",
                Box::new(|s| s.e_seal_info.property.valid_end = gtime(NOW + Duration::days(3650))),
            ),
            (
                "esID",
                Box::new(|s| s.e_seal_info.es_id = Ia5String::new("other-seal").unwrap()),
            ),
            (
                "certList",
                Box::new(move |s| {
                    if let SesCertList::Certs(c) = &mut s.e_seal_info.property.cert_list {
                        c.push(OctetString::new(intruder.to_der().to_vec()).unwrap());
                    }
                }),
            ),
        ];
        for (what, change) in changes {
            let mut asn1 = f.seal.asn1().clone();
            change(&mut asn1);
            let changed = f.reseal(asn1, None);
            let report = verify_seal(suite, &changed, &f.trust());
            assert!(!report.is_valid(), "{suite} {what}");
            assert_eq!(
                report.problems,
                [SealProblem::MakerSignatureInvalid],
                "{suite} {what}"
            );
            // Nobody can sign with it any more.
            let err = sign_with_seal(suite, &changed, DATA, "x", &f.holder.0, &f.holder.1, NOW)
                .unwrap_err();
            assert!(
                matches!(err, Error::SealRefused(SealProblem::MakerSignatureInvalid)),
                "{suite} {what}: {err}"
            );
        }
    }
}

#[test]
fn seal_swapped_inside_a_seal_signature_breaks_the_signer_s_signature() {
    let f = fixture(Suite::Sm, 235);
    let other = make_seal(
        Suite::Sm,
        &SealSpec {
            es_id: "another".into(),
            ..spec(
                Suite::Sm,
                vec![f.holder.1.clone()],
                CertListForm::Certificates,
            )
        },
        &f.maker.0,
        &f.maker.1,
    )
    .unwrap();
    let mut asn1 = f.sign(DATA).asn1().clone();
    asn1.to_sign.eseal = other.asn1().clone();
    let swapped = SealSignature::from_der(&asn1.to_der().unwrap()).unwrap();
    let report = verify_seal_signature(Suite::Sm, &swapped, DATA, &f.trust());
    assert!(report.seal.is_valid(), "the swapped-in seal is itself fine");
    assert_eq!(report.problems, [SealProblem::SignatureInvalid]);
}

#[test]
fn seal_forged_by_an_untrusted_or_wrong_sealmaker_is_reported() {
    for suite in Suite::ALL {
        let f = fixture(suite, 240);
        // A complete foreign deployment makes a look-alike seal.
        let foreign = fixture(suite, 241);
        let forged = make_seal(
            suite,
            &spec(suite, vec![f.holder.1.clone()], CertListForm::Certificates),
            &foreign.maker.0,
            &foreign.maker.1,
        )
        .unwrap();
        let report = verify_seal(suite, &forged, &f.trust());
        assert!(report.problems.is_empty());
        assert!(
            matches!(report.maker_path, PathStatus::Refused(_)),
            "{:?}",
            report.maker_path
        );
        assert!(!report.is_valid());
        // The trusted sealmaker's certificate with a signature by another key.
        let mut r = rng(242);
        let stranger = SigningKey::generate(suite.signature_algorithm(), &mut r).unwrap();
        let mut asn1 = forged.asn1().clone();
        asn1.cert = OctetString::new(f.maker.1.to_der().to_vec()).unwrap();
        let forged = f.reseal(asn1, Some(&stranger));
        let report = verify_seal(suite, &forged, &f.trust());
        assert_eq!(report.maker_path, PathStatus::Valid);
        assert_eq!(report.problems, [SealProblem::MakerSignatureInvalid]);
        // A seal claiming the other suite's algorithm.
        let mut asn1 = f.seal.asn1().clone();
        asn1.sign_alg_id = match suite {
            Suite::Sm => Suite::Intl,
            Suite::Intl => Suite::Sm,
        }
        .signature_algorithm()
        .signature_oid();
        let report = verify_seal(suite, &f.reseal(asn1, None), &f.trust());
        assert!(
            matches!(report.problems[..], [SealProblem::UnexpectedAlgorithm(_)]),
            "{:?}",
            report.problems
        );
    }
}

#[test]
fn data_changed_after_sealing_is_detected() {
    for suite in Suite::ALL {
        let f = fixture(suite, 250);
        let sig = f.sign(DATA);
        let mut changed = DATA.to_vec();
        let at = changed.len() - 20;
        changed[at] = b'9';
        let report = verify_seal_signature(suite, &sig, &changed, &f.trust());
        assert_eq!(report.problems, [SealProblem::DataHashMismatch]);
        assert!(!report.is_valid());
    }
}

#[test]
fn expired_revoked_and_foreign_certificates_are_reported() {
    let f = fixture(Suite::Sm, 260);
    let sig = f.sign(DATA);
    // Revoked signer.
    let revoked = crls(&f.d, &[&f.holder.1]);
    let report = verify_seal_signature(Suite::Sm, &sig, DATA, &f.trust_at(&revoked, NOW));
    assert_eq!(report.signer_path, PathStatus::Revoked);
    assert!(report.problems.is_empty());
    assert!(!report.is_valid());
    assert!(
        report.reasons().iter().any(|r| r.contains("revoked")),
        "{:?}",
        report.reasons()
    );
    // Revoked sealmaker (issued by the root).
    let root_crl = vec![
        f.d.root
            .issue_crl(
                &[Revocation {
                    serial: f.maker.1.serial(),
                    revoked_at: ISSUED + Duration::days(2),
                }],
                2,
                ISSUED,
                ISSUED + Duration::days(365),
            )
            .unwrap(),
        f.crls[1].clone(),
    ];
    let report = verify_seal_signature(Suite::Sm, &sig, DATA, &f.trust_at(&root_crl, NOW));
    assert_eq!(report.seal.maker_path, PathStatus::Revoked);
    assert!(!report.is_valid());
    // Everything expired: checked two years on (CRLs fresh enough are not the point here).
    let later = ISSUED + Duration::days(400);
    let report = verify_seal_signature(Suite::Sm, &sig, DATA, &f.trust_at(&f.crls, later));
    assert_eq!(report.signer_path, PathStatus::NotValidAtTime);
    assert_eq!(report.seal.maker_path, PathStatus::NotValidAtTime);
    assert_eq!(report.seal.problems, [SealProblem::NotValidNow]);
    // A signer from a foreign deployment, listed on a seal made by the trusted sealmaker.
    let foreign = fixture(Suite::Sm, 261);
    let seal = make_seal(
        Suite::Sm,
        &spec(
            Suite::Sm,
            vec![foreign.holder.1.clone()],
            CertListForm::Certificates,
        ),
        &f.maker.0,
        &f.maker.1,
    )
    .unwrap();
    let sig = sign_with_seal(
        Suite::Sm,
        &seal,
        DATA,
        "x",
        &foreign.holder.0,
        &foreign.holder.1,
        NOW,
    )
    .unwrap();
    let report = verify_seal_signature(Suite::Sm, &sig, DATA, &f.trust());
    assert!(matches!(report.signer_path, PathStatus::Refused(_)));
    assert!(report.seal.is_valid());
    assert!(!report.is_valid());
}

#[test]
fn truncated_extended_and_non_canonical_der_is_malformed() {
    let f = fixture(Suite::Sm, 270);
    let sig = f.sign(DATA);
    for der in [f.seal.to_der(), sig.to_der()] {
        for len in 0..der.len() {
            let err = SealSignature::from_der(&der[..len])
                .map(|_| ())
                .and(Seal::from_der(&der[..len]).map(|_| ()))
                .unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "prefix {len}: {err}");
        }
        let mut longer = der.to_vec();
        longer.push(0);
        assert!(Seal::from_der(&longer).is_err());
        assert!(SealSignature::from_der(&longer).is_err());
    }
    // BER, not DER: the outer length in long form with a leading zero byte.
    let der = f.seal.to_der();
    assert_eq!(der[1], 0x82, "the seal is longer than 255 bytes");
    let mut ber = vec![0x30, 0x83, 0x00];
    ber.extend_from_slice(&der[2..]);
    let err = Seal::from_der(&ber).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    // critical BOOLEAN DEFAULT FALSE written out explicitly: `der` reads it, but it is not
    // DER, so the seal is refused.
    let explicit = SealWithExplicitDefault {
        info: SealInfoWithExplicitDefault {
            header: f.seal.asn1().e_seal_info.header.clone(),
            es_id: f.seal.asn1().e_seal_info.es_id.clone(),
            property: f.seal.asn1().e_seal_info.property.clone(),
            picture: f.seal.asn1().e_seal_info.picture.clone(),
            ext_datas: vec![ExtDataExplicit {
                extn_id: "1.2.3".parse().unwrap(),
                critical: false,
                extn_value: OctetString::new(vec![]).unwrap(),
            }],
        },
        cert: f.seal.asn1().cert.clone(),
        sign_alg_id: f.seal.asn1().sign_alg_id,
        signed_value: f.seal.asn1().signed_value.clone(),
    }
    .to_der()
    .unwrap();
    let lenient = SESeal::from_der(&explicit).unwrap();
    assert_ne!(lenient.to_der().unwrap(), explicit);
    let err = Seal::from_der(&explicit).unwrap_err();
    assert!(err.to_string().contains("canonical"), "{err}");
}

#[derive(der::Sequence)]
struct ExtDataExplicit {
    extn_id: der::asn1::ObjectIdentifier,
    critical: bool,
    extn_value: OctetString,
}

#[derive(der::Sequence)]
struct SealInfoWithExplicitDefault {
    header: guoku_seal::ses::SesHeader,
    es_id: Ia5String,
    property: guoku_seal::ses::SesEsPropertyInfo,
    picture: guoku_seal::ses::SesEsPictureInfo,
    ext_datas: Vec<ExtDataExplicit>,
}

#[derive(der::Sequence)]
struct SealWithExplicitDefault {
    info: SealInfoWithExplicitDefault,
    cert: OctetString,
    sign_alg_id: der::asn1::ObjectIdentifier,
    signed_value: BitString,
}

/// Every bit of a full seal for `sm` (SM2 is built with opt-level 3 in dev); every 61st bit
/// for `intl`, whose Ed25519 is some 20 times slower unoptimised.
#[test]
fn every_single_bit_flip_of_a_full_seal_is_detected() {
    for (suite, stride) in [(Suite::Sm, 1), (Suite::Intl, 61)] {
        // A short picture keeps this to a few thousand verifications.
        let f = fixture(suite, 280);
        let seal = make_seal(
            suite,
            &SealSpec {
                picture: SealPicture {
                    format: "SVG".into(),
                    data: b"<svg/>".to_vec(),
                    width_mm: 40,
                    height_mm: 40,
                },
                ..spec(suite, vec![f.holder.1.clone()], CertListForm::Digests)
            },
            &f.maker.0,
            &f.maker.1,
        )
        .unwrap();
        // Faster checks: no CRLs; the sealmaker's certificate is issued by the root.
        let trust = TrustContext {
            revocation: RevocationPolicy::CheckIfPresent,
            crls: &[],
            ..f.trust()
        };
        assert!(verify_seal(suite, &seal, &trust).is_valid());
        let der = seal.to_der();
        let mut accepted = Vec::new();
        for bit in (0..der.len() * 8).step_by(stride) {
            let mut flipped = der.to_vec();
            flipped[bit / 8] ^= 1 << (bit % 8);
            if let Ok(s) = Seal::from_der(&flipped)
                && verify_seal(suite, &s, &trust).is_valid()
            {
                accepted.push(bit);
            }
        }
        assert!(
            accepted.is_empty(),
            "{suite}: {} of {} flips accepted: {accepted:?}",
            accepted.len(),
            der.len() * 8
        );
    }
}

#[test]
fn seal_for_a_person_can_be_made_by_the_organisation_itself() {
    // An organisation that is its own sealmaker: its organisation certificate signs the seal.
    let suite = Suite::Intl;
    let d = Deployment::new(suite, 290);
    let mut r = rng(291);
    let (org_key, org_cert) = d.org_under_root(&mut r, 70);
    let key = SigningKey::generate(suite.signature_algorithm(), &mut r).unwrap();
    let cert = d
        .sub
        .issue_person(
            key.verifying_key(),
            &Person {
                organisation: agent_bank(),
                ..person(Post::Signer, "B0001")
            },
            &Serial::from_u64(71).unwrap(),
            Validity::days_from(ISSUED, 365),
        )
        .unwrap();
    let seal = make_seal(
        suite,
        &SealSpec {
            kind: StampKind::Sz,
            name: "张三印".into(),
            ..spec(suite, vec![cert.clone()], CertListForm::Certificates)
        },
        &org_key,
        &org_cert,
    )
    .unwrap();
    assert_eq!(seal.kind(), Some(StampKind::Sz));
    assert_eq!(
        seal.maker().subject_info().organisation,
        Some(finance().name)
    );
    let sig = sign_with_seal(suite, &seal, DATA, "p", &key, &cert, NOW).unwrap();
    let subs = [d.sub.certificate().clone()];
    let trust = TrustContext {
        anchor: d.root.certificate(),
        intermediates: &subs,
        crls: &[],
        revocation: RevocationPolicy::CheckIfPresent,
        now: NOW,
    };
    let report = verify_seal_signature(suite, &sig, DATA, &trust);
    assert!(report.is_valid(), "{:?}", report.reasons());
    assert_eq!(report.signer.organisation, Some(agent_bank().name));
}
