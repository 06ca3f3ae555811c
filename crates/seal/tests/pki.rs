//! PKI: issuing, PEM, CRLs and path validation.

mod common;

use common::{Deployment, ISSUED, NOW, finance, rng};
use guoku_seal::pki::{
    CaSubject, Certificate, CertificateAuthority, Crl, OrgRole, Post, Purpose, Revocation,
    RevocationPolicy, Serial, Sm2CertId, ValidationOptions, Validity, make_root_ca, validate_path,
};
use guoku_seal::{Error, KeyAlgorithm, PathProblem, SigningKey, Suite};
use time::Duration;

fn opts(crls: &[Crl]) -> ValidationOptions<'_> {
    ValidationOptions {
        now: NOW,
        purpose: Purpose::VoucherSigning,
        crls,
        revocation: RevocationPolicy::CheckIfPresent,
    }
}

fn crls_for(d: &Deployment, revoked_by_sub: &[Serial]) -> Vec<Crl> {
    common::crls(d, revoked_by_sub, ISSUED + Duration::days(30))
}

#[test]
fn one_level_chain_validates_for_both_suites() {
    for suite in Suite::ALL {
        let d = Deployment::new(suite, 1);
        let (key, cert) = d.org_under_root(&mut rng(2), 10);
        let path = validate_path(&cert, &[], d.root.certificate(), &opts(&[])).unwrap();
        assert_eq!(path.leaf_key, *key.verifying_key());
        assert_eq!(path.subject.role, Some(OrgRole::Finance));
        assert_eq!(path.subject.org_code.as_deref(), Some("11000000000000000X"));
        assert_eq!(path.subject.organisation.as_deref(), Some("北京市财政局"));
        assert_eq!(path.path_serials, vec![Serial::from_u64(10).unwrap()]);
    }
}

#[test]
fn root_ca_is_self_signed_ca_of_the_suite_algorithm() {
    for suite in Suite::ALL {
        let d = Deployment::new(suite, 3);
        let root = d.root.certificate();
        assert!(root.is_ca());
        assert_eq!(root.subject(), root.issuer());
        assert_eq!(
            root.public_key().unwrap().algorithm(),
            suite.signature_algorithm()
        );
        let oid = root.x509().signature_algorithm().oid.to_string();
        let want = match suite {
            Suite::Sm => "1.2.156.10197.1.501",
            Suite::Intl => "1.3.101.112",
        };
        assert_eq!(oid, want);
    }
}

#[test]
fn two_level_chain_with_person_certificate() {
    for suite in Suite::ALL {
        let d = Deployment::new(suite, 4);
        let (_key, cert) = d.person_under_sub(&mut rng(5), Post::Checker, 20);
        let crls = crls_for(&d, &[]);
        let mut o = opts(&crls);
        o.revocation = RevocationPolicy::RequireCrl;
        let path = validate_path(
            &cert,
            &[d.sub.certificate().clone()],
            d.root.certificate(),
            &o,
        )
        .unwrap();
        assert_eq!(path.subject.post, Some(Post::Checker));
        assert_eq!(path.subject.staff_id.as_deref(), Some("S0020"));
        assert_eq!(path.subject.common_name.as_deref(), Some("张三"));
        assert_eq!(path.path_serials.len(), 2);
    }
}

#[test]
fn missing_intermediate_is_unknown_issuer() {
    let d = Deployment::new(Suite::Sm, 6);
    let (_key, cert) = d.person_under_sub(&mut rng(7), Post::Maker, 21);
    let err = validate_path(&cert, &[], d.root.certificate(), &opts(&[])).unwrap_err();
    assert!(matches!(
        err,
        Error::Untrusted {
            problem: PathProblem::UnknownIssuer,
            ..
        }
    ));
    assert!(err.is_refusal());
}

#[test]
fn expired_and_not_yet_valid_are_refused() {
    let d = Deployment::new(Suite::Intl, 8);
    let key = SigningKey::generate(KeyAlgorithm::Ed25519, &mut rng(9)).unwrap();
    let start = ISSUED + Duration::days(10);
    let cert = d
        .root
        .issue_organisation(
            key.verifying_key(),
            &finance(),
            &Serial::from_u64(11).unwrap(),
            Validity::days_from(start, 100),
        )
        .unwrap();
    for now in [
        start - Duration::seconds(1),
        start + Duration::days(100) + Duration::seconds(1),
    ] {
        let mut o = opts(&[]);
        o.now = now;
        let err = validate_path(&cert, &[], d.root.certificate(), &o).unwrap_err();
        assert!(
            matches!(&err, Error::NotValidAtTime { serial } if serial == "0b"),
            "{err:?}"
        );
    }
    // Both ends of the period are inclusive.
    for now in [start, start + Duration::days(100)] {
        let mut o = opts(&[]);
        o.now = now;
        validate_path(&cert, &[], d.root.certificate(), &o).unwrap();
    }
    // Before the root itself is valid, the trust anchor is refused.
    let mut o = opts(&[]);
    o.now = ISSUED - Duration::seconds(1);
    let err = validate_path(&cert, &[], d.root.certificate(), &o).unwrap_err();
    assert!(
        matches!(&err, Error::NotValidAtTime { serial } if serial == "01"),
        "{err:?}"
    );
}

#[test]
fn revoked_certificate_is_refused() {
    for suite in Suite::ALL {
        let d = Deployment::new(suite, 10);
        let (_k1, revoked) = d.person_under_sub(&mut rng(11), Post::Signer, 30);
        let (_k2, good) = d.person_under_sub(&mut rng(12), Post::Signer, 31);
        let crls = crls_for(&d, &[revoked.serial()]);
        let subs = [d.sub.certificate().clone()];
        let err = validate_path(&revoked, &subs, d.root.certificate(), &opts(&crls)).unwrap_err();
        assert!(
            matches!(&err, Error::Revoked { serial } if serial == "1e"),
            "{err:?}"
        );
        validate_path(&good, &subs, d.root.certificate(), &opts(&crls)).unwrap();
    }
}

#[test]
fn revoked_sub_ca_revokes_everything_below() {
    let d = Deployment::new(Suite::Sm, 13);
    let (_k, cert) = d.person_under_sub(&mut rng(14), Post::Maker, 40);
    let root_crl = d
        .root
        .issue_crl(
            &[Revocation {
                serial: d.sub.certificate().serial(),
                revoked_at: ISSUED,
            }],
            2,
            ISSUED,
            ISSUED + Duration::days(365),
        )
        .unwrap();
    let err = validate_path(
        &cert,
        &[d.sub.certificate().clone()],
        d.root.certificate(),
        &opts(&[root_crl]),
    )
    .unwrap_err();
    assert!(
        matches!(&err, Error::Revoked { serial } if serial == "02"),
        "{err:?}"
    );
}

#[test]
fn required_crl_missing_or_stale_is_refused() {
    let d = Deployment::new(Suite::Intl, 15);
    let (_k, cert) = d.org_under_root(&mut rng(16), 12);
    let mut o = opts(&[]);
    o.revocation = RevocationPolicy::RequireCrl;
    let err = validate_path(&cert, &[], d.root.certificate(), &o).unwrap_err();
    assert!(matches!(err, Error::NoCurrentCrl { .. }), "{err:?}");

    let stale = d
        .root
        .issue_crl(&[], 1, ISSUED, ISSUED + Duration::days(7))
        .unwrap();
    let crls = [stale];
    let mut o = opts(&crls);
    o.revocation = RevocationPolicy::RequireCrl;
    let err = validate_path(&cert, &[], d.root.certificate(), &o).unwrap_err();
    assert!(matches!(err, Error::NoCurrentCrl { .. }), "{err:?}");
}

#[test]
fn crl_signed_by_an_impostor_is_refused() {
    let d = Deployment::new(Suite::Sm, 17);
    let (_k, cert) = d.org_under_root(&mut rng(18), 13);
    // Same subject name as the real root, different key.
    let impostor = Deployment::new(Suite::Sm, 99);
    let fake = impostor
        .root
        .issue_crl(&[], 5, ISSUED, ISSUED + Duration::days(30))
        .unwrap();
    assert_eq!(fake.issuer(), d.root.certificate().subject());
    let err = validate_path(&cert, &[], d.root.certificate(), &opts(&[fake])).unwrap_err();
    assert!(matches!(err, Error::BadSignature), "{err:?}");
}

#[test]
fn certificate_from_another_root_with_same_name_is_refused() {
    let d = Deployment::new(Suite::Intl, 19);
    let other = Deployment::new(Suite::Intl, 20);
    let (_k, cert) = other.org_under_root(&mut rng(21), 14);
    let err = validate_path(&cert, &[], d.root.certificate(), &opts(&[])).unwrap_err();
    assert!(matches!(err, Error::BadSignature), "{err:?}");
}

#[test]
fn tampered_certificate_is_refused() {
    let d = Deployment::new(Suite::Sm, 22);
    let (_k, cert) = d.org_under_root(&mut rng(23), 15);
    let mut der = cert.to_der().to_vec();
    // Change one byte of the organisation code inside the signed part.
    let pos = der
        .windows(4)
        .position(|w| w == b"1100")
        .expect("org code in DER");
    der[pos] = b'2';
    let tampered = Certificate::from_der(&der).unwrap();
    let err = validate_path(&tampered, &[], d.root.certificate(), &opts(&[])).unwrap_err();
    assert!(matches!(err, Error::BadSignature), "{err:?}");
}

#[test]
fn key_usage_is_enforced_per_purpose() {
    let d = Deployment::new(Suite::Sm, 24);
    let (_k, tls) = d.tls(&d.root, &mut rng(25), 50);
    let (_k, org) = d.org_under_root(&mut rng(26), 51);
    let err = validate_path(&tls, &[], d.root.certificate(), &opts(&[])).unwrap_err();
    assert!(matches!(err, Error::WrongKeyUsage { .. }), "{err:?}");
    for purpose in [Purpose::TlsServer, Purpose::TlsClient] {
        let mut o = opts(&[]);
        o.purpose = purpose;
        validate_path(&tls, &[], d.root.certificate(), &o).unwrap();
        let err = validate_path(&org, &[], d.root.certificate(), &o).unwrap_err();
        assert!(matches!(err, Error::WrongKeyUsage { .. }), "{err:?}");
    }
}

#[test]
fn ca_certificate_is_not_accepted_as_leaf() {
    let d = Deployment::new(Suite::Intl, 27);
    let err =
        validate_path(d.sub.certificate(), &[], d.root.certificate(), &opts(&[])).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Untrusted {
                problem: PathProblem::LeafIsCa,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn sub_ca_may_not_issue_ca_certificates() {
    let d = Deployment::new(Suite::Sm, 28);
    let key = SigningKey::generate(KeyAlgorithm::Sm2, &mut rng(29)).unwrap();
    let err = d
        .sub
        .issue_sub_ca(
            key.verifying_key(),
            &CaSubject {
                organisation: "x".into(),
                common_name: "too deep".into(),
            },
            &Serial::from_u64(60).unwrap(),
            Validity::days_from(ISSUED, 30),
        )
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
}

#[test]
fn leaf_signed_by_non_ca_is_refused() {
    // An end-entity key pretending to be a CA: pairing it as a CA is refused up front.
    let d = Deployment::new(Suite::Sm, 30);
    let (key, cert) = d.org_under_root(&mut rng(31), 61);
    let err = CertificateAuthority::new(cert, key).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
}

#[test]
fn ca_refuses_mismatched_key_and_out_of_range_validity() {
    let d = Deployment::new(Suite::Intl, 32);
    let wrong = SigningKey::generate(KeyAlgorithm::Ed25519, &mut rng(33)).unwrap();
    assert!(CertificateAuthority::new(d.root.certificate().clone(), wrong).is_err());

    let key = SigningKey::generate(KeyAlgorithm::Ed25519, &mut rng(34)).unwrap();
    let err = d
        .sub
        .issue_organisation(
            key.verifying_key(),
            &finance(),
            &Serial::from_u64(62).unwrap(),
            Validity::days_from(ISSUED, 20 * 365),
        )
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
}

#[test]
fn tls_certificate_has_sans_and_refuses_sm2_keys() {
    let d = Deployment::new(Suite::Intl, 35);
    let (key, cert) = d.tls(&d.root, &mut rng(36), 70);
    assert_eq!(key.algorithm(), KeyAlgorithm::EcdsaP256);
    assert_eq!(
        cert.dns_names(),
        vec!["localhost".to_string(), "finance.guoku.test".to_string()]
    );
    assert_eq!(
        cert.ip_addresses(),
        vec!["127.0.0.1".parse::<std::net::IpAddr>().unwrap()]
    );

    let sm2 = SigningKey::generate(KeyAlgorithm::Sm2, &mut rng(37)).unwrap();
    let err = d
        .root
        .issue_tls(
            sm2.verifying_key(),
            &guoku_seal::pki::TlsNode {
                organisation: "o".into(),
                common_name: "n".into(),
                dns_names: vec!["localhost".into()],
                ip_addresses: vec![],
            },
            &Serial::from_u64(71).unwrap(),
            Validity::days_from(ISSUED, 30),
        )
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)));
}

#[test]
fn p256_tls_root_for_sm_deployments() {
    let mut r = rng(38);
    let key = SigningKey::generate(KeyAlgorithm::EcdsaP256, &mut r).unwrap();
    let cert = make_root_ca(
        &key,
        &CaSubject {
            organisation: "guoku".into(),
            common_name: "guoku TLS root".into(),
        },
        &Serial::from_u64(1).unwrap(),
        Validity::days_from(ISSUED, 3650),
        Sm2CertId::Standard,
    )
    .unwrap();
    let ca = CertificateAuthority::new(cert, key).unwrap();
    let d = Deployment::new(Suite::Sm, 39);
    let (_k, tls) = d.tls(&ca, &mut r, 2);
    let mut o = opts(&[]);
    o.purpose = Purpose::TlsServer;
    validate_path(&tls, &[], ca.certificate(), &o).unwrap();
}

#[test]
fn pem_round_trips() {
    for suite in Suite::ALL {
        let d = Deployment::new(suite, 40);
        let (key, cert) = d.person_under_sub(&mut rng(41), Post::Maker, 80);
        let pem = cert.to_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert_eq!(Certificate::from_pem(&pem).unwrap(), cert);

        let chain = format!("{pem}{}", d.sub.certificate().to_pem().unwrap());
        let parsed = Certificate::chain_from_pem(&chain).unwrap();
        assert_eq!(parsed, vec![cert.clone(), d.sub.certificate().clone()]);

        let crl = crls_for(&d, &[cert.serial()]).remove(1);
        let crl_pem = crl.to_pem().unwrap();
        assert!(crl_pem.starts_with("-----BEGIN X509 CRL-----"));
        let back = Crl::from_pem(&crl_pem).unwrap();
        assert_eq!(back, crl);
        assert!(back.lists(&cert.serial()));
        back.verify_signature(d.sub.certificate()).unwrap();

        let key_pem = key.to_pkcs8_pem().unwrap();
        assert!(key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let key2 = SigningKey::from_pkcs8_pem(&key_pem).unwrap();
        assert_eq!(key2.verifying_key(), key.verifying_key());
        let pub_pem = key.verifying_key().to_pem().unwrap();
        assert_eq!(
            guoku_seal::VerifyingKey::from_pem(&pub_pem).unwrap(),
            *key.verifying_key()
        );
    }
}

#[test]
fn p256_key_pem_round_trip_and_signatures() {
    let key = SigningKey::generate(KeyAlgorithm::EcdsaP256, &mut rng(42)).unwrap();
    let key2 = SigningKey::from_pkcs8_pem(&key.to_pkcs8_pem().unwrap()).unwrap();
    let sig = key2.sign_with_rng(&mut rng(43), b"hello").unwrap();
    key.verifying_key().verify(b"hello", &sig).unwrap();
    assert!(key.verifying_key().verify(b"hellO", &sig).is_err());
}

#[test]
fn bad_subject_fields_are_refused() {
    let d = Deployment::new(Suite::Sm, 44);
    let key = SigningKey::generate(KeyAlgorithm::Sm2, &mut rng(45)).unwrap();
    let mut org = finance();
    org.code = "代码".into(); // not a PrintableString
    let err = d
        .root
        .issue_organisation(
            key.verifying_key(),
            &org,
            &Serial::from_u64(90).unwrap(),
            Validity::days_from(ISSUED, 30),
        )
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err:?}");
    assert!(!err.is_refusal());
}

#[test]
fn serial_parsing() {
    assert_eq!(Serial::from_hex("00ff").unwrap().to_string(), "ff");
    assert!(Serial::from_hex("").is_err());
    assert!(Serial::from_hex("0").is_err());
    assert!(Serial::from_u64(0).is_err());
    let r = Serial::random(&mut rng(46));
    assert_eq!(r.as_bytes().len(), 16);
    assert!(r.as_bytes()[0] < 0x80);
}

#[test]
fn sm2_certificates_signed_with_the_empty_id_validate_too() {
    // OpenSSL 3.0 signs SM2 certificates with the empty user ID; we accept both.
    let d = Deployment::with_sm2_id(Suite::Sm, 47, Sm2CertId::Empty);
    let (_k, cert) = d.person_under_sub(&mut rng(48), Post::Signer, 91);
    let crls = crls_for(&d, &[]);
    let mut o = opts(&crls);
    o.revocation = RevocationPolicy::RequireCrl;
    validate_path(
        &cert,
        &[d.sub.certificate().clone()],
        d.root.certificate(),
        &o,
    )
    .unwrap();
    // The signature really is under the empty ID: the standard ID does not verify it.
    let tbs = der::Encode::to_der(cert.x509().tbs_certificate()).unwrap();
    let sig = guoku_seal::Signature::from_bytes(cert.x509().signature().as_bytes().unwrap());
    let sub_key = d.sub.certificate().public_key().unwrap();
    assert!(sub_key.verify(&tbs, &sig).is_err());
    sub_key.verify_sm2_with_id("", &tbs, &sig).unwrap();
}
