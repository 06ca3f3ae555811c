//! The exchange protocol: finance delivers a signed 5201 to an agent bank's library, in
//! memory and over HTTPS with mutual TLS on loopback; the bank stores it once, refuses
//! tampered vouchers and vouchers from another party than the one on the connection.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use guoku_node::exchange::{
    DeliveryOutcome, ExchangeError, ExchangeState, Https, InMemory, InMemoryNetwork, NodeAddress,
    Peer, ReceiveLimits, Received, RefusalCode, ServeLimits, Transport, app, serve_tls,
};
use guoku_seal::Suite;
use guoku_seal::pki::OrgRole;
use guoku_seal::transport::{FixedClock, client_config, server_config};
use guoku_store::SqliteConfig;
use guoku_store::Store;
use guoku_voucher::lifecycle::Leg;
use guoku_voucher::{Encoding, Envelope, EnvelopeBody, Registry, write_envelope};
use rustls::pki_types::ServerName;

mod common;
use common::*;

fn envelope(bodies: Vec<EnvelopeBody>) -> Bytes {
    Bytes::from(write_envelope(&Envelope { bodies }, Encoding::Gbk))
}

fn only(outcome: &DeliveryOutcome) -> &Received {
    assert_eq!(outcome.results.len(), 1, "{outcome:?}");
    &outcome.results[0].received
}

/// A bank's library on SQLite, reached in memory by finance.
struct Scene {
    pki: Pki,
    registry: Registry,
    store: Store,
    network: InMemoryNetwork,
    finance: InMemory,
    _dir: tempfile::TempDir,
}

impl Scene {
    async fn new() -> Self {
        let pki = Pki::new("测试根CA");
        let dir = tempfile::tempdir().unwrap();
        let (state, store) = bank_node(&pki, &dir).await;
        let network = InMemoryNetwork::new();
        network.register(BANK_CODE, app(state));
        Self {
            pki,
            registry: Registry::builtin(),
            store,
            finance: InMemory::new(network.clone(), finance_peer()),
            network,
            _dir: dir,
        }
    }
}

#[tokio::test]
async fn in_memory_delivery_stores_once_and_refuses_tampering_and_impostors() {
    let scene = Scene::new().await;
    let (pki, registry, finance) = (&scene.pki, &scene.registry, &scene.finance);
    let (network, library) = (&scene.network, scene.store.library());

    // Delivered once: taken and stored as received from finance.
    let body = signed_5201(pki, registry, 1);
    let key = body.voucher.key();
    let outcome = finance
        .deliver(BANK_CODE, envelope(vec![body.clone()]))
        .await
        .unwrap();
    assert_eq!(only(&outcome), &Received::Taken);
    assert_eq!(outcome.results[0].key(), key);
    let record = library.status(&key, Leg::Original).await.unwrap().unwrap();
    assert_eq!(record.sender, FINANCE_CODE);
    assert_eq!(record.receiver, BANK_CODE);
    let events = library.events(&key, Leg::Original).await.unwrap();
    assert_eq!(events.len(), 1, "{events:?}");

    // The same envelope again: already had it, nothing new.
    let outcome = finance
        .deliver(BANK_CODE, envelope(vec![body.clone()]))
        .await
        .unwrap();
    assert_eq!(only(&outcome), &Received::AlreadyHad);
    assert_eq!(library.events(&key, Leg::Original).await.unwrap().len(), 1);

    // Other content under the same key, properly signed: refused as a conflict.
    let changed = signed_5201_with(pki, registry, 1, |v| {
        v.header.set("PayeeAcctName", "另一个收款人");
    });
    assert_eq!(changed.voucher.key(), key);
    let outcome = finance
        .deliver(BANK_CODE, envelope(vec![changed]))
        .await
        .unwrap();
    assert!(
        matches!(
            only(&outcome),
            Received::Refused {
                code: RefusalCode::Conflict,
                ..
            }
        ),
        "{outcome:?}"
    );
    let record = library.status(&key, Leg::Original).await.unwrap().unwrap();
    assert_eq!(
        record.content_sha256,
        guoku_store::library::content_hash(&body.voucher),
        "the first content stays"
    );

    // A changed payee on another voucher: the stamps no longer hold; refused, not stored.
    let mut tampered = signed_5201(pki, registry, 2);
    tampered.voucher.header.set("PayeeAcctName", "别人的公司");
    let tampered_key = tampered.voucher.key();
    let outcome = finance
        .deliver(BANK_CODE, envelope(vec![tampered]))
        .await
        .unwrap();
    assert!(
        matches!(
            only(&outcome),
            Received::Refused {
                code: RefusalCode::BadStamps,
                ..
            }
        ),
        "{outcome:?}"
    );
    assert!(
        library
            .status(&tampered_key, Leg::Original)
            .await
            .unwrap()
            .is_none()
    );

    // Stamps removed: incomplete, refused.
    let mut unsigned = signed_5201(pki, registry, 3);
    unsigned.signatures.pop();
    let unsigned_key = unsigned.voucher.key();
    let outcome = finance
        .deliver(BANK_CODE, envelope(vec![unsigned]))
        .await
        .unwrap();
    match only(&outcome) {
        Received::Refused {
            code: RefusalCode::BadStamps,
            reason,
        } => assert!(reason.contains("missing positions 3"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert!(
        library
            .status(&unsigned_key, Leg::Original)
            .await
            .unwrap()
            .is_none()
    );

    // Finance's voucher delivered by another party (here: a second agent bank).
    let impostor = InMemory::new(
        network.clone(),
        Peer {
            role: OrgRole::AgentBank,
            org_code: "103551000016".into(),
        },
    );
    let other = signed_5201(pki, registry, 4);
    let other_key = other.voucher.key();
    let outcome = impostor
        .deliver(BANK_CODE, envelope(vec![other.clone()]))
        .await
        .unwrap();
    assert!(
        matches!(
            only(&outcome),
            Received::Refused {
                code: RefusalCode::WrongSender,
                ..
            }
        ),
        "{outcome:?}"
    );
    assert!(
        library
            .status(&other_key, Leg::Original)
            .await
            .unwrap()
            .is_none()
    );
    // A finance node with another organisation code is refused too.
    let other_finance = InMemory::new(
        network.clone(),
        Peer {
            role: OrgRole::Finance,
            org_code: "11430100001".into(),
        },
    );
    let outcome = other_finance
        .deliver(BANK_CODE, envelope(vec![other]))
        .await
        .unwrap();
    assert!(
        matches!(
            only(&outcome),
            Received::Refused {
                code: RefusalCode::WrongSender,
                ..
            }
        ),
        "{outcome:?}"
    );

    // Garbage is an error for the envelope as a whole, with a stable code.
    let err = finance
        .deliver(BANK_CODE, Bytes::from_static(b"<MOF><oops/></MOF>"))
        .await
        .unwrap_err();
    match err {
        ExchangeError::Rejected { status, code } => {
            assert_eq!((status, code.as_str()), (400, "envelope_unreadable"));
        }
        other => panic!("{other:?}"),
    }
    let err = finance
        .deliver("000000000", envelope(Vec::new()))
        .await
        .unwrap_err();
    assert!(matches!(err, ExchangeError::UnknownDestination(_)), "{err}");
}

#[tokio::test]
async fn in_memory_envelopes_beyond_the_size_limit_are_refused_whole() {
    let pki = Pki::new("测试根CA");
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(SqliteConfig::new(dir.path().join("bank.db")))
        .await
        .unwrap();
    let now = pki.now;
    let state = ExchangeState::new(
        bank_peer(),
        Suite::Sm,
        Registry::builtin(),
        pki.voucher_trust(),
        store,
        Arc::new(move || now),
        ReceiveLimits {
            body_max_bytes: 1024,
            ..ReceiveLimits::default()
        },
    );
    let network = InMemoryNetwork::new();
    network.register(BANK_CODE, app(state));
    let finance = InMemory::new(network, finance_peer());
    let err = finance
        .deliver(BANK_CODE, Bytes::from(vec![b' '; 4096]))
        .await
        .unwrap_err();
    match err {
        ExchangeError::Rejected { status, code } => {
            assert_eq!((status, code.as_str()), (413, "envelope_too_large"));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn over_https_a_delivery_succeeds_and_a_foreign_client_cannot_connect() {
    let pki = Pki::new("测试根CA");
    let registry = Registry::builtin();
    let dir = tempfile::tempdir().unwrap();
    let (state, store) = bank_node(&pki, &dir).await;
    let clock = Arc::new(FixedClock(pki.now));

    let bank_tls = pki.tls(&bank(), BANK_HOST);
    let server = server_config(&bank_tls, &pki.peer_trust(), clock.clone()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server_task = tokio::spawn(serve_tls(
        listener,
        Arc::new(server),
        app(state),
        ServeLimits::default(),
        async {
            let _ = stopped.await;
        },
    ));

    let nodes = HashMap::from([(
        BANK_CODE.to_owned(),
        NodeAddress {
            addr,
            server_name: ServerName::try_from(BANK_HOST).unwrap().to_owned(),
        },
    )]);
    let finance_tls = pki.tls(&finance(), "finance.guoku.test");
    let client = client_config(&finance_tls, &pki.peer_trust(), clock.clone()).unwrap();
    let finance = Https::new(client, nodes.clone(), Duration::from_secs(30));

    let body = signed_5201(&pki, &registry, 1);
    let key = body.voucher.key();
    let outcome = finance
        .deliver(BANK_CODE, envelope(vec![body.clone()]))
        .await
        .unwrap();
    assert_eq!(only(&outcome), &Received::Taken);
    let record = store
        .library()
        .status(&key, Leg::Original)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.sender, FINANCE_CODE);
    let outcome = finance
        .deliver(BANK_CODE, envelope(vec![body.clone()]))
        .await
        .unwrap();
    assert_eq!(only(&outcome), &Received::AlreadyHad);

    // A node of the same deployment that is not the voucher's sender: connects, refused.
    let other_bank = org(OrgRole::AgentBank, "103551000016", "建设银行长沙分行");
    let other_tls = pki.tls(&other_bank, "ccb.guoku.test");
    let other_client = client_config(&other_tls, &pki.peer_trust(), clock.clone()).unwrap();
    let impostor = Https::new(other_client, nodes.clone(), Duration::from_secs(30));
    let other = signed_5201(&pki, &registry, 2);
    let outcome = impostor
        .deliver(BANK_CODE, envelope(vec![other]))
        .await
        .unwrap();
    assert!(
        matches!(
            only(&outcome),
            Received::Refused {
                code: RefusalCode::WrongSender,
                ..
            }
        ),
        "{outcome:?}"
    );

    // A client whose certificate comes from a foreign root: the handshake fails.
    let foreign = Pki::new("外来根CA");
    let foreign_tls = foreign.tls(
        &org(OrgRole::Finance, FINANCE_CODE, "湖南省财政厅"),
        "finance.guoku.test",
    );
    // It trusts our root for the server, so only the server's check of it can fail.
    let foreign_client = client_config(&foreign_tls, &pki.peer_trust(), clock.clone()).unwrap();
    let foreign = Https::new(foreign_client, nodes, Duration::from_secs(30));
    let err = foreign
        .deliver(BANK_CODE, envelope(vec![body]))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ExchangeError::Connect(_) | ExchangeError::Http(_) | ExchangeError::BadAnswer(_)
        ),
        "{err:?}"
    );
    assert_eq!(
        store
            .library()
            .events(&key, Leg::Original)
            .await
            .unwrap()
            .len(),
        1
    );

    stop.send(()).unwrap();
    server_task.await.unwrap().unwrap();
}

/// 校验 before 签收: a voucher stamped properly but breaking its type's rules (an amount
/// badly written, a field the type does not have, a VoucherNo too long, a date in the
/// future) is refused as invalid with the field named, and nothing is stored.
#[tokio::test]
async fn a_properly_stamped_voucher_that_breaks_its_types_rules_is_refused_as_invalid() {
    let scene = Scene::new().await;
    let (pki, registry, finance) = (&scene.pki, &scene.registry, &scene.finance);
    let library = scene.store.library();
    type Edit = fn(&mut guoku_voucher::Voucher);
    let cases: [(&str, Edit); 4] = [
        ("PayAmt", |v| v.header.set("PayAmt", "12.3")),
        ("Extra", |v| v.header.set("Extra", "x")),
        ("VoucherNo", |v| {
            let long = format!("{}{}", v.key().voucher_no, "9".repeat(20));
            v.header.set("VoucherNo", &long);
            v.header.set("Id", &long);
        }),
        ("VouDate", |v| v.header.set("VouDate", "20991231")),
    ];
    for (n, (field, edit)) in cases.into_iter().enumerate() {
        let body = signed_5201_with(pki, registry, 40 + n as u64, edit);
        let key = body.voucher.key();
        let outcome = finance
            .deliver(BANK_CODE, envelope(vec![body]))
            .await
            .unwrap();
        match only(&outcome) {
            Received::Refused {
                code: RefusalCode::Invalid,
                reason,
            } => assert!(reason.contains(field), "{field}: {reason}"),
            other => panic!("{field}: {other:?}"),
        }
        assert!(
            library.status(&key, Leg::Original).await.unwrap().is_none(),
            "{field}"
        );
    }
    // The same voucher without the fault is taken.
    let good = signed_5201(pki, registry, 50);
    let outcome = finance
        .deliver(BANK_CODE, envelope(vec![good]))
        .await
        .unwrap();
    assert_eq!(only(&outcome), &Received::Taken);
}
