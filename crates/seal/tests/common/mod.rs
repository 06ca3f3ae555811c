//! Shared fixtures: a deterministic deployment PKI.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr};

use guoku_seal::pki::{
    CaSubject, Certificate, CertificateAuthority, Crl, OrgRole, Organisation, Person, Post,
    Revocation, Serial, Sm2CertId, TlsNode, Validity, make_root_ca,
};
use guoku_seal::{KeyAlgorithm, SigningKey, Suite};
use rand::SeedableRng;
use rand::rngs::StdRng;
use time::OffsetDateTime;
use time::macros::datetime;

/// A deterministic RNG; the seed is printed by the tests that use it on failure.
pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// The instant every fixture is issued at.
pub const ISSUED: OffsetDateTime = datetime!(2026-01-01 00:00 UTC);
/// A time when every fixture is valid.
pub const NOW: OffsetDateTime = datetime!(2026-06-01 12:00 UTC);

pub fn finance() -> Organisation {
    Organisation {
        role: OrgRole::Finance,
        code: "11000000000000000X".into(),
        name: "北京市财政局".into(),
    }
}

pub fn agent_bank() -> Organisation {
    Organisation {
        role: OrgRole::AgentBank,
        code: "102100099996".into(),
        name: "中国工商银行北京分行".into(),
    }
}

pub fn person(post: Post, staff_id: &str) -> Person {
    Person {
        organisation: finance(),
        post,
        name: "张三".into(),
        staff_id: staff_id.into(),
    }
}

/// A root CA, a sub-CA under it, and their keys.
pub struct Deployment {
    pub suite: Suite,
    pub root: CertificateAuthority,
    pub sub: CertificateAuthority,
}

impl Deployment {
    pub fn new(suite: Suite, seed: u64) -> Self {
        Self::with_sm2_id(suite, seed, Sm2CertId::Standard)
    }

    pub fn with_sm2_id(suite: Suite, seed: u64, sm2_id: Sm2CertId) -> Self {
        let mut rng = rng(seed);
        let alg = suite.signature_algorithm();
        let root_key = SigningKey::generate(alg, &mut rng).unwrap();
        let root_cert = make_root_ca(
            &root_key,
            &CaSubject {
                organisation: "guoku 测试部署".into(),
                common_name: format!("guoku {suite} root CA"),
            },
            &Serial::from_u64(1).unwrap(),
            Validity::days_from(ISSUED, 3650),
            sm2_id,
        )
        .unwrap();
        let root = CertificateAuthority::new(root_cert, root_key)
            .unwrap()
            .with_sm2_cert_id(sm2_id);
        let sub_key = SigningKey::generate(alg, &mut rng).unwrap();
        let sub_cert = root
            .issue_sub_ca(
                sub_key.verifying_key(),
                &CaSubject {
                    organisation: "guoku 测试部署".into(),
                    common_name: format!("guoku {suite} issuing CA"),
                },
                &Serial::from_u64(2).unwrap(),
                Validity::days_from(ISSUED, 1825),
            )
            .unwrap();
        let sub = CertificateAuthority::new(sub_cert, sub_key)
            .unwrap()
            .with_sm2_cert_id(sm2_id);
        Self { suite, root, sub }
    }

    /// A key and an organisation certificate issued directly by the root.
    pub fn org_under_root(&self, rng: &mut StdRng, serial: u64) -> (SigningKey, Certificate) {
        let key = SigningKey::generate(self.suite.signature_algorithm(), rng).unwrap();
        let cert = self
            .root
            .issue_organisation(
                key.verifying_key(),
                &finance(),
                &Serial::from_u64(serial).unwrap(),
                Validity::days_from(ISSUED, 365),
            )
            .unwrap();
        (key, cert)
    }

    /// A key and a person certificate issued by the sub-CA.
    pub fn person_under_sub(
        &self,
        rng: &mut StdRng,
        post: Post,
        serial: u64,
    ) -> (SigningKey, Certificate) {
        let key = SigningKey::generate(self.suite.signature_algorithm(), rng).unwrap();
        let cert = self
            .sub
            .issue_person(
                key.verifying_key(),
                &person(post, &format!("S{serial:04}")),
                &Serial::from_u64(serial).unwrap(),
                Validity::days_from(ISSUED, 365),
            )
            .unwrap();
        (key, cert)
    }

    /// A P-256 key and TLS certificate issued by `ca`.
    pub fn tls(
        &self,
        ca: &CertificateAuthority,
        rng: &mut StdRng,
        serial: u64,
    ) -> (SigningKey, Certificate) {
        let key = SigningKey::generate(KeyAlgorithm::EcdsaP256, rng).unwrap();
        let cert = ca
            .issue_tls(
                key.verifying_key(),
                &TlsNode {
                    organisation: "北京市财政局".into(),
                    common_name: "finance-node-1".into(),
                    dns_names: vec!["localhost".into(), "finance.guoku.test".into()],
                    ip_addresses: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
                },
                &Serial::from_u64(serial).unwrap(),
                Validity::days_from(ISSUED, 365),
            )
            .unwrap();
        (key, cert)
    }
}

/// Current CRLs of a deployment: the root's (empty) and the sub-CA's, which revokes
/// `revoked` as of `revoked_at`. Both valid for a year from [`ISSUED`].
pub fn crls(d: &Deployment, revoked: &[Serial], revoked_at: OffsetDateTime) -> Vec<Crl> {
    let revocations: Vec<Revocation> = revoked
        .iter()
        .map(|serial| Revocation {
            serial: serial.clone(),
            revoked_at,
        })
        .collect();
    let next = ISSUED + time::Duration::days(365);
    vec![
        d.root.issue_crl(&[], 1, ISSUED, next).unwrap(),
        d.sub.issue_crl(&revocations, 1, ISSUED, next).unwrap(),
    ]
}
