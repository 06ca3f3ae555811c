//! The outbox worker: finance writes and sends signed 5201s; passes of the worker deliver
//! them to the agent bank's library over the in-memory exchange, retry an unreachable bank
//! with backoff, and stop at a refusal. No sleeping: each pass is given its `now`.

use guoku_node::exchange::{
    DeliveryOutcome, ExchangeError, InMemory, InMemoryNetwork, Transport, app,
};
use guoku_node::outbox::{OUTBOX_ACTOR, OutboxReport, deliver_due};
use guoku_store::library::{Backoff, NewVoucher};
use guoku_store::{SqliteConfig, Store};
use guoku_voucher::lifecycle::{Exchange, Leg};
use guoku_voucher::{
    Encoding, Envelope, EnvelopeBody, Limits, Registry, VoucherKey, parse_envelope, write_envelope,
};

mod common;
use common::*;

fn envelope(bodies: Vec<EnvelopeBody>, encoding: Encoding) -> Vec<u8> {
    write_envelope(&Envelope { bodies }, encoding)
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
    write_and_send_in(store, body, Encoding::Gbk, now).await
}

/// [`write_and_send`], the voucher stored in an envelope in `encoding`.
async fn write_and_send_in(
    store: &Store,
    body: &EnvelopeBody,
    encoding: Encoding,
    now: u64,
) -> VoucherKey {
    let library = store.library();
    let new = NewVoucher::new(
        &body.voucher,
        Leg::Original,
        FINANCE_CODE,
        BANK_CODE,
        envelope(vec![body.clone()], encoding),
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

/// Finance and the bank on one in-memory network, the bank's receiver on it.
struct Scene {
    pki: Pki,
    registry: Registry,
    _dir: tempfile::TempDir,
    bank_store: Store,
    store: Store,
    transport: InMemory,
    now: u64,
}

async fn scene() -> Scene {
    let pki = Pki::new("测试根CA");
    let dir = tempfile::tempdir().unwrap();
    let network = InMemoryNetwork::new();
    let (state, bank_store) = bank_node(&pki, &dir).await;
    network.register(BANK_CODE, app(state));
    let (store, transport) = finance_node(&dir, &network).await;
    let now = t0(&pki);
    Scene {
        pki,
        registry: Registry::builtin(),
        _dir: dir,
        bank_store,
        store,
        transport,
        now,
    }
}

#[tokio::test]
async fn a_sent_voucher_is_delivered_on_the_first_pass_and_only_once() {
    let Scene {
        pki,
        registry,
        _dir,
        bank_store,
        store,
        transport,
        now,
    } = scene().await;

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

/// A voucher stored in an envelope the outbox cannot take apart as it is (here in UTF-8)
/// is read and written again as a GBK element; the bank takes it with its stamps as signed.
#[tokio::test]
async fn a_voucher_stored_in_utf8_is_written_again_and_delivered() {
    let Scene {
        pki,
        registry,
        _dir,
        bank_store,
        store,
        transport,
        now,
    } = scene().await;
    let body = signed_5201(&pki, &registry, 1);
    let key = write_and_send_in(&store, &body, Encoding::Utf8, now).await;
    let done = deliver_due(&store, &transport, now, 10, BACKOFF)
        .await
        .unwrap();
    assert_eq!(done, report(1, 0, 0));
    assert_eq!(exchange_state(&store, &key).await, Exchange::Received);
    let received = bank_store
        .library()
        .status(&key, Leg::Original)
        .await
        .unwrap()
        .expect("the bank stored it");
    let (stored, encoding) = parse_envelope(&received.body, &Limits::default()).unwrap();
    assert_eq!(encoding, Encoding::Gbk);
    assert_eq!(stored.bodies, vec![body]);
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
    let Scene {
        pki,
        registry,
        _dir,
        bank_store,
        store,
        transport,
        now,
    } = scene().await;
    let library = store.library();

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

/// A link to the bank whose receiver takes envelopes of at most `limit` bytes and answers
/// 413 to a larger one, as an HTTPS receiver with a smaller limit does.
struct Limited {
    inner: InMemory,
    limit: usize,
    /// Envelopes refused for their size.
    refused: std::sync::atomic::AtomicUsize,
}

impl Transport for Limited {
    async fn deliver(
        &self,
        destination: &str,
        envelope: bytes::Bytes,
    ) -> Result<DeliveryOutcome, ExchangeError> {
        if envelope.len() > self.limit {
            self.refused
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Err(ExchangeError::Rejected {
                status: 413,
                code: "envelope_too_large".into(),
            });
        }
        self.inner.deliver(destination, envelope).await
    }
}

#[tokio::test]
async fn an_envelope_too_large_goes_voucher_by_voucher_and_a_voucher_too_large_is_refused() {
    let Scene {
        pki,
        registry,
        _dir,
        bank_store,
        store,
        transport: inner,
        now,
    } = scene().await;
    let first = signed_5201(&pki, &registry, 1);
    let one = envelope(vec![first.clone()], Encoding::Gbk).len();
    let two = envelope(
        vec![first.clone(), signed_5201(&pki, &registry, 2)],
        Encoding::Gbk,
    )
    .len();
    assert!(two > one + one / 2, "two vouchers make a larger envelope");

    // The receiver takes one voucher an envelope, not two: both are delivered in the pass.
    let link = Limited {
        inner,
        limit: (one + two) / 2,
        refused: 0.into(),
    };
    let a = write_and_send(&store, &first, now).await;
    let b = write_and_send(&store, &signed_5201(&pki, &registry, 2), now).await;
    let done = deliver_due(&store, &link, now, 10, BACKOFF).await.unwrap();
    assert_eq!(done, report(2, 0, 0));
    assert_eq!(link.refused.load(std::sync::atomic::Ordering::Relaxed), 1);
    for key in [&a, &b] {
        assert_eq!(exchange_state(&store, key).await, Exchange::Received);
        assert!(
            bank_store
                .library()
                .status(key, Leg::Original)
                .await
                .unwrap()
                .is_some()
        );
    }

    // A receiver that takes not even one: the voucher is refused with the reason, not
    // retried, and the bank stored nothing.
    let link = Limited {
        inner: link.inner,
        limit: one / 2,
        refused: 0.into(),
    };
    let c = write_and_send(&store, &signed_5201(&pki, &registry, 3), now).await;
    let done = deliver_due(&store, &link, now, 10, BACKOFF).await.unwrap();
    assert_eq!(done, report(0, 1, 0));
    let record = store
        .library()
        .status(&c, Leg::Original)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.exchange, Exchange::ReceiveFailed);
    let reason = record.reason.expect("a refusal reason");
    assert!(reason.starts_with("envelope_too_large"), "{reason}");
    assert!(
        store
            .library()
            .due(now + 10_000, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        bank_store
            .library()
            .status(&c, Leg::Original)
            .await
            .unwrap()
            .is_none()
    );
}
