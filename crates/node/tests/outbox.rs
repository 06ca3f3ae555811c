//! The outbox worker: finance writes and sends signed 5201s; passes of the worker deliver
//! them to the agent bank's library over the in-memory exchange, retry an unreachable bank
//! with backoff, and stop at a refusal. No sleeping: each pass is given its `now`.

use std::sync::Arc;

use guoku_domain::BizDate;
use guoku_node::exchange::{
    DeliveryOutcome, ExchangeError, ExchangeState, InMemory, InMemoryNetwork, Peer, ReceiveLimits,
    Transport, VoucherTrust, app,
};
use guoku_node::outbox::{OUTBOX_ACTOR, OutboxReport, deliver_due};
use guoku_node::stamping::{stamp_next, type_of};
use guoku_seal::pki::{
    CaSubject, Certificate, CertificateAuthority, OrgRole, Organisation, Person, Post,
    RevocationPolicy, Serial, Sm2CertId, Validity, make_root_ca,
};
use guoku_seal::ses::{CertListForm, Seal, SealPicture, SealSpec, make_seal};
use guoku_seal::voucher::{Signer, StampKind};
use guoku_seal::{KeyAlgorithm, SigningKey, Suite};
use guoku_store::library::{Backoff, NewVoucher};
use guoku_store::{SqliteConfig, Store};
use guoku_voucher::lifecycle::{Exchange, Leg};
use guoku_voucher::sample::{Style, sample};
use guoku_voucher::{
    Encoding, Envelope, EnvelopeBody, Registry, VoucherFlag, VoucherKey, write_envelope,
};
use time::OffsetDateTime;

const FINANCE_CODE: &str = "11430000006";
const BANK_CODE: &str = "102551000015";

struct Holder {
    key: SigningKey,
    cert: Certificate,
}

fn org(role: OrgRole, code: &str, name: &str) -> Organisation {
    Organisation {
        role,
        code: code.into(),
        name: name.into(),
    }
}

fn finance() -> Organisation {
    org(OrgRole::Finance, FINANCE_CODE, "湖南省财政厅")
}

fn finance_peer() -> Peer {
    Peer {
        role: OrgRole::Finance,
        org_code: FINANCE_CODE.into(),
    }
}

fn bank_peer() -> Peer {
    Peer {
        role: OrgRole::AgentBank,
        org_code: BANK_CODE.into(),
    }
}

/// A root CA (SM2) issuing people, seals and TLS node certificates (P-256).
struct Pki {
    ca: CertificateAuthority,
    root: Certificate,
    now: OffsetDateTime,
}

impl Pki {
    fn new(name: &str) -> Self {
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

    fn validity(&self) -> Validity {
        Validity::days_from(self.now - time::Duration::days(1), 365)
    }

    fn person(&self, o: &Organisation, post: Post, name: &str) -> Holder {
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

    fn seal(&self, o: &Organisation, kind: StampKind, name: &str, holder: &Holder) -> Seal {
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

    fn voucher_trust(&self) -> VoucherTrust {
        VoucherTrust {
            anchor: self.root.clone(),
            intermediates: Vec::new(),
            crls: Vec::new(),
            revocation: RevocationPolicy::CheckIfPresent,
        }
    }
}

fn sign(h: &Holder) -> Signer<'_> {
    Signer::Signature {
        key: &h.key,
        certificate: &h.cert,
    }
}

/// A 5201 from finance, stamped at every original position.
fn signed_5201(pki: &Pki, registry: &Registry, n: u64) -> EnvelopeBody {
    signed_5201_with(pki, registry, n, |_| {})
}

/// As [`signed_5201`], with `edit` applied to the voucher before it is stamped.
fn signed_5201_with(
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

fn envelope(bodies: Vec<EnvelopeBody>) -> Vec<u8> {
    write_envelope(&Envelope { bodies }, Encoding::Gbk)
}

/// The bank's receiving side, on SQLite in `dir`.
async fn bank_node(pki: &Pki, dir: &tempfile::TempDir) -> (ExchangeState, Store) {
    let store = Store::open_sqlite(SqliteConfig::new(dir.path().join("bank.db")))
        .await
        .unwrap();
    let now = pki.now;
    let state = ExchangeState::new(
        bank_peer(),
        Suite::Sm,
        Registry::builtin(),
        pki.voucher_trust(),
        store.clone(),
        Arc::new(move || now),
        ReceiveLimits::default(),
    );
    (state, store)
}

const BACKOFF: Backoff = Backoff { base: 30, cap: 600 };

/// Finance's side: its library on SQLite in `dir`, and a transport into `network`.
async fn finance_node(dir: &tempfile::TempDir, network: &InMemoryNetwork) -> (Store, InMemory) {
    let store = Store::open_sqlite(SqliteConfig::new(dir.path().join("finance.db")))
        .await
        .unwrap();
    (store, InMemory::new(network.clone(), finance_peer()))
}

/// Finance writes `body` to the bank and sends it at `now`; its key.
async fn write_and_send(store: &Store, body: &EnvelopeBody, now: u64) -> VoucherKey {
    let library = store.library();
    let new = NewVoucher::new(
        &body.voucher,
        Leg::Original,
        FINANCE_CODE,
        BANK_CODE,
        envelope(vec![body.clone()]),
    );
    library.write(new, "clerk", now).await.unwrap();
    let key = body.voucher.key();
    let record = library
        .send(&key, Leg::Original, "clerk", now)
        .await
        .unwrap();
    assert_eq!(record.exchange, Exchange::NotReceived);
    key
}

async fn exchange_state(store: &Store, key: &VoucherKey) -> Exchange {
    store
        .library()
        .status(key, Leg::Original)
        .await
        .unwrap()
        .unwrap()
        .exchange
}

fn t0(pki: &Pki) -> u64 {
    u64::try_from(pki.now.unix_timestamp()).unwrap()
}

fn report(delivered: usize, refused: usize, retried: usize) -> OutboxReport {
    OutboxReport {
        delivered,
        refused,
        retried,
        skipped: 0,
    }
}

#[tokio::test]
async fn a_sent_voucher_is_delivered_on_the_first_pass_and_only_once() {
    let pki = Pki::new("测试根CA");
    let registry = Registry::builtin();
    let dir = tempfile::tempdir().unwrap();
    let network = InMemoryNetwork::new();
    let (state, bank_store) = bank_node(&pki, &dir).await;
    network.register(BANK_CODE, app(state));
    let (store, transport) = finance_node(&dir, &network).await;
    let now = t0(&pki);

    // Two vouchers to the same bank: one envelope, both taken.
    let first = write_and_send(&store, &signed_5201(&pki, &registry, 1), now).await;
    let second = write_and_send(&store, &signed_5201(&pki, &registry, 2), now).await;
    let done = deliver_due(&store, &transport, now, 10, BACKOFF)
        .await
        .unwrap();
    assert_eq!(done, report(2, 0, 0));
    for key in [&first, &second] {
        assert_eq!(exchange_state(&store, key).await, Exchange::Received);
        let received = bank_store
            .library()
            .status(key, Leg::Original)
            .await
            .unwrap()
            .expect("the bank stored it");
        assert_eq!(received.sender, FINANCE_CODE);
        let events = store.library().events(key, Leg::Original).await.unwrap();
        let last = events.last().unwrap();
        assert_eq!(last.action, "delivered");
        assert_eq!(last.actor, OUTBOX_ACTOR);
    }

    // The outbox is empty: later passes deliver nothing and the bank sees nothing new.
    assert!(
        store
            .library()
            .due(now + 10_000, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let again = deliver_due(&store, &transport, now + 10_000, 10, BACKOFF)
        .await
        .unwrap();
    assert_eq!(again, OutboxReport::default());
    assert_eq!(
        bank_store
            .library()
            .events(&first, Leg::Original)
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn an_unreachable_receiver_is_retried_on_the_backoff_schedule() {
    let pki = Pki::new("测试根CA");
    let registry = Registry::builtin();
    let dir = tempfile::tempdir().unwrap();
    let network = InMemoryNetwork::new();
    let (store, transport) = finance_node(&dir, &network).await;
    let library = store.library();
    let now = t0(&pki);
    let key = write_and_send(&store, &signed_5201(&pki, &registry, 1), now).await;

    // The bank is not on the network: the attempt is recorded, due again after 30 s.
    let done = deliver_due(&store, &transport, now, 10, BACKOFF)
        .await
        .unwrap();
    assert_eq!(done, report(0, 0, 1));
    assert_eq!(exchange_state(&store, &key).await, Exchange::NotReceived);
    let entries = library.due(now + 30, 10).await.unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].attempts, 1);
    assert_eq!(entries[0].next_at, now + 30);

    // Before it is due, a pass does nothing.
    assert!(library.due(now + 29, 10).await.unwrap().is_empty());
    let early = deliver_due(&store, &transport, now + 29, 10, BACKOFF)
        .await
        .unwrap();
    assert_eq!(early, OutboxReport::default());

    // Due: tried again, still unreachable; the wait doubles (60 s).
    let t1 = now + 30;
    let done = deliver_due(&store, &transport, t1, 10, BACKOFF)
        .await
        .unwrap();
    assert_eq!(done, report(0, 0, 1));
    assert!(library.due(t1 + 59, 10).await.unwrap().is_empty());
    let entries = library.due(t1 + 60, 10).await.unwrap();
    assert_eq!(entries[0].attempts, 2);
    assert_eq!(entries[0].next_at, t1 + 60);

    // The bank comes up: the next due pass delivers.
    let (state, bank_store) = bank_node(&pki, &dir).await;
    network.register(BANK_CODE, app(state));
    let done = deliver_due(&store, &transport, t1 + 60, 10, BACKOFF)
        .await
        .unwrap();
    assert_eq!(done, report(1, 0, 0));
    assert_eq!(exchange_state(&store, &key).await, Exchange::Received);
    assert!(
        bank_store
            .library()
            .status(&key, Leg::Original)
            .await
            .unwrap()
            .is_some()
    );
    assert!(library.due(u64::MAX / 4, 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_refused_voucher_is_marked_with_the_reason_and_not_retried() {
    let pki = Pki::new("测试根CA");
    let registry = Registry::builtin();
    let dir = tempfile::tempdir().unwrap();
    let network = InMemoryNetwork::new();
    let (state, bank_store) = bank_node(&pki, &dir).await;
    network.register(BANK_CODE, app(state));
    let (store, transport) = finance_node(&dir, &network).await;
    let library = store.library();
    let now = t0(&pki);

    // One good voucher and one changed after it was signed, in the same envelope.
    let good = write_and_send(&store, &signed_5201(&pki, &registry, 1), now).await;
    let mut tampered = signed_5201(&pki, &registry, 2);
    tampered.voucher.header.set("PayeeAcctName", "别人的公司");
    let bad = write_and_send(&store, &tampered, now).await;

    let done = deliver_due(&store, &transport, now, 10, BACKOFF)
        .await
        .unwrap();
    assert_eq!(done, report(1, 1, 0));
    assert_eq!(exchange_state(&store, &good).await, Exchange::Received);
    let record = library.status(&bad, Leg::Original).await.unwrap().unwrap();
    assert_eq!(record.exchange, Exchange::ReceiveFailed);
    let reason = record.reason.expect("a refusal reason");
    assert!(reason.starts_with("bad_stamps"), "{reason}");
    assert!(
        bank_store
            .library()
            .status(&bad, Leg::Original)
            .await
            .unwrap()
            .is_none(),
        "the bank stored nothing"
    );

    // Not retried: out of the outbox, later passes leave it alone.
    assert!(library.due(now + 10_000, 10).await.unwrap().is_empty());
    let again = deliver_due(&store, &transport, now + 10_000, 10, BACKOFF)
        .await
        .unwrap();
    assert_eq!(again, OutboxReport::default());
    assert_eq!(exchange_state(&store, &bad).await, Exchange::ReceiveFailed);
}

#[tokio::test]
async fn a_bad_limit_or_backoff_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let network = InMemoryNetwork::new();
    let (store, transport) = finance_node(&dir, &network).await;
    assert!(
        deliver_due(&store, &transport, 0, 0, BACKOFF)
            .await
            .is_err()
    );
    let zero = Backoff { base: 0, cap: 10 };
    assert!(deliver_due(&store, &transport, 0, 10, zero).await.is_err());
}

/// A receiver that answers every envelope, but says nothing about any voucher.
struct Mute;

impl Transport for Mute {
    async fn deliver(
        &self,
        _destination: &str,
        _envelope: bytes::Bytes,
    ) -> Result<DeliveryOutcome, ExchangeError> {
        Ok(DeliveryOutcome {
            results: Vec::new(),
        })
    }
}

#[tokio::test]
async fn a_voucher_the_answer_does_not_mention_is_retried() {
    let pki = Pki::new("测试根CA");
    let registry = Registry::builtin();
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = finance_node(&dir, &InMemoryNetwork::new()).await;
    let now = t0(&pki);
    let key = write_and_send(&store, &signed_5201(&pki, &registry, 1), now).await;
    let done = deliver_due(&store, &Mute, now, 10, BACKOFF).await.unwrap();
    assert_eq!(done, report(0, 0, 1));
    assert_eq!(exchange_state(&store, &key).await, Exchange::NotReceived);
    let entries = store.library().due(now + 30, 10).await.unwrap();
    assert_eq!(entries[0].attempts, 1);
}
