//! Shared fixtures of the node tests: a deployment PKI (SM2 root issuing people, seals and
//! P-256 TLS nodes), signed 5201s, and a bank node receiving on SQLite; stores on both
//! backends ([`pg`]), parties on an in-memory network ([`parties`]), and seeding and reading
//! books ([`books`]), the demo province ([`demo`]).
#![allow(dead_code)]

mod books;
mod demo;
mod parties;
mod pg;

// Each test file uses a different subset.
#[allow(unused_imports)]
pub use books::*;
#[allow(unused_imports)]
pub use demo::*;
#[allow(unused_imports)]
pub use parties::*;
#[allow(unused_imports)]
pub(crate) use pg::both_backends;
#[allow(unused_imports)]
pub use pg::{Backend, SchemaGuard, TestStore, in_ci, pg_connect, pg_reachable, pg_url};

use std::net::{IpAddr, Ipv4Addr};

use guoku_domain::BizDate;
use guoku_node::exchange::{ExchangeState, Peer, VoucherTrust};
use guoku_node::stamping::{stamp_next, type_of};
use guoku_seal::pki::{
    CaSubject, Certificate, CertificateAuthority, OrgRole, Organisation, Person, Post,
    RevocationPolicy, Serial, Sm2CertId, TlsNode, Validity, make_root_ca,
};
use guoku_seal::ses::{CertListForm, Seal, SealPicture, SealSpec, make_seal};
use guoku_seal::transport::{PeerTrust, TlsIdentity};
use guoku_seal::voucher::{Signer, StampKind};
use guoku_seal::{KeyAlgorithm, SigningKey, Suite};
use guoku_store::{SqliteConfig, Store};
use guoku_voucher::sample::{Style, sample};
use guoku_voucher::{EnvelopeBody, Registry, VoucherFlag};
use time::OffsetDateTime;

pub const FINANCE_CODE: &str = "11430000006";
pub const BANK_CODE: &str = "102551000015";
pub const BANK_HOST: &str = "bank.guoku.test";

pub struct Holder {
    pub key: SigningKey,
    pub cert: Certificate,
}

pub fn org(role: OrgRole, code: &str, name: &str) -> Organisation {
    Organisation {
        role,
        code: code.into(),
        name: name.into(),
    }
}

pub fn finance() -> Organisation {
    org(OrgRole::Finance, FINANCE_CODE, "湖南省财政厅")
}

pub fn bank() -> Organisation {
    org(OrgRole::AgentBank, BANK_CODE, "工商银行长沙分行")
}

pub fn finance_peer() -> Peer {
    Peer {
        role: OrgRole::Finance,
        org_code: FINANCE_CODE.into(),
    }
}

pub fn bank_peer() -> Peer {
    Peer {
        role: OrgRole::AgentBank,
        org_code: BANK_CODE.into(),
    }
}

/// A root CA (SM2) issuing people, seals and TLS node certificates (P-256).
pub struct Pki {
    pub ca: CertificateAuthority,
    pub root: Certificate,
    pub now: OffsetDateTime,
}

impl Pki {
    pub fn new(name: &str) -> Self {
        let mut rng = rand::rng();
        let now = OffsetDateTime::now_utc();
        let root_key = SigningKey::generate(KeyAlgorithm::Sm2, &mut rng).unwrap();
        let subject = CaSubject {
            organisation: "湖南省财政厅".into(),
            common_name: name.into(),
        };
        let root = make_root_ca(
            &root_key,
            &subject,
            &Serial::random(&mut rng),
            Validity::days_from(now - time::Duration::days(2), 400),
            Sm2CertId::default(),
        )
        .unwrap();
        let ca = CertificateAuthority::new(root.clone(), root_key).unwrap();
        Self { ca, root, now }
    }

    pub fn validity(&self) -> Validity {
        Validity::days_from(self.now - time::Duration::days(1), 365)
    }

    pub fn person(&self, o: &Organisation, post: Post, name: &str) -> Holder {
        let mut rng = rand::rng();
        let key = SigningKey::generate(KeyAlgorithm::Sm2, &mut rng).unwrap();
        let p = Person {
            organisation: o.clone(),
            post,
            name: name.into(),
            staff_id: "001".into(),
        };
        let cert = self
            .ca
            .issue_person(
                key.verifying_key(),
                &p,
                &Serial::random(&mut rng),
                self.validity(),
            )
            .unwrap();
        Holder { key, cert }
    }

    pub fn seal(&self, o: &Organisation, kind: StampKind, name: &str, holder: &Holder) -> Seal {
        let mut rng = rand::rng();
        let key = SigningKey::generate(KeyAlgorithm::Sm2, &mut rng).unwrap();
        let cert = self
            .ca
            .issue_organisation(
                key.verifying_key(),
                o,
                &Serial::random(&mut rng),
                self.validity(),
            )
            .unwrap();
        let spec = SealSpec {
            es_id: format!("{}-{}", o.code, kind.code()),
            kind,
            name: name.into(),
            holders: vec![holder.cert.clone()],
            list_form: CertListForm::Certificates,
            picture: SealPicture::demo(&o.name, name, 40),
            created: self.now,
            validity: self.validity(),
        };
        make_seal(Suite::Sm, &spec, &key, &cert).unwrap()
    }

    pub fn tls(&self, o: &Organisation, dns: &str) -> TlsIdentity {
        let mut rng = rand::rng();
        let key = SigningKey::generate(KeyAlgorithm::EcdsaP256, &mut rng).unwrap();
        let node = TlsNode {
            organisation: o.name.clone(),
            common_name: format!("{}-node", o.code),
            dns_names: vec![dns.into()],
            ip_addresses: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
        };
        let cert = self
            .ca
            .issue_tls_for_organisation(
                key.verifying_key(),
                o,
                &node,
                &Serial::random(&mut rng),
                self.validity(),
            )
            .unwrap();
        TlsIdentity::new(&[cert], &key).unwrap()
    }

    pub fn peer_trust(&self) -> PeerTrust {
        PeerTrust::new(
            self.root.clone(),
            Vec::new(),
            RevocationPolicy::CheckIfPresent,
        )
        .unwrap()
    }

    pub fn voucher_trust(&self) -> VoucherTrust {
        VoucherTrust {
            anchor: self.root.clone(),
            intermediates: Vec::new(),
            crls: Vec::new(),
            revocation: RevocationPolicy::CheckIfPresent,
        }
    }
}

pub fn sign(h: &Holder) -> Signer<'_> {
    Signer::Signature {
        key: &h.key,
        certificate: &h.cert,
    }
}

/// A 5201 from finance, stamped at every original position.
pub fn signed_5201(pki: &Pki, registry: &Registry, n: u64) -> EnvelopeBody {
    signed_5201_with(pki, registry, n, |_| {})
}

/// As [`signed_5201`], with `edit` applied to the voucher before it is stamped.
pub fn signed_5201_with(
    pki: &Pki,
    registry: &Registry,
    n: u64,
    edit: impl FnOnce(&mut guoku_voucher::Voucher),
) -> EnvelopeBody {
    let finance = finance();
    let maker = pki.person(&finance, Post::Maker, "张三");
    let checker = pki.person(&finance, Post::Checker, "李四");
    let signer = pki.person(&finance, Post::Signer, "王五");
    let seal = pki.seal(&finance, StampKind::Ywzyz, "财政业务专用章", &signer);
    let ty = registry.get("5201").unwrap();
    let today: BizDate = "20250115".parse().unwrap();
    let mut body = EnvelopeBody {
        flag: VoucherFlag::Original,
        attach: "SUCCESS".into(),
        voucher: sample(ty, today, VoucherFlag::Original, Style::Plain, n),
        signatures: Vec::new(),
    };
    edit(&mut body.voucher);
    stamp_next(Suite::Sm, ty, &mut body, &sign(&maker)).unwrap();
    stamp_next(Suite::Sm, ty, &mut body, &sign(&checker)).unwrap();
    let sealer = Signer::Seal {
        seal: &seal,
        key: &signer.key,
        certificate: &signer.cert,
        time: pki.now,
    };
    stamp_next(Suite::Sm, ty, &mut body, &sealer).unwrap();
    assert!(type_of(registry, &body.voucher).is_ok());
    body
}

/// The bank's receiving side, on SQLite in `dir`.
pub async fn bank_node(pki: &Pki, dir: &tempfile::TempDir) -> (ExchangeState, Store) {
    let store = Store::open_sqlite(SqliteConfig::new(dir.path().join("bank.db")))
        .await
        .unwrap();
    let state = exchange_state(pki, bank_peer(), &store);
    (state, store)
}
