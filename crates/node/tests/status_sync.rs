//! The status query (状态查询) and the sender's status sweep: finance sends signed 5201s to
//! an agent bank; the bank acknowledges, refuses or returns them in its library; a sweep on
//! finance's side asks the bank and records on finance's legs what the bank did, once. A
//! node asking about vouchers it did not send learns nothing (-1), in memory and over HTTPS
//! with mutual TLS; oversized or malformed queries are refused whole.
//!
//! Every test runs with both parties' libraries on SQLite and on PostgreSQL (each test in
//! its own file or schema). PostgreSQL is found through `GUOKU_TEST_PG_URL`, else
//! `postgres://postgres@127.0.0.1:5432/postgres`; without a server the PostgreSQL tests say
//! SKIPPED loudly, and fail when `CI=true`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use bytes::Bytes;
use guoku_node::exchange::{
    DeliveryOutcome, ExchangeError, Https, InMemory, InMemoryNetwork, NodeAddress, Peer,
    STATUS_BODY_MAX_BYTES, STATUS_KEYS_MAX, STATUS_NOT_FOUND, STATUS_PATH, ServeLimits, StatusKey,
    Transport, VoucherStatus, WireLeg, app, serve_tls,
};
use guoku_node::outbox::deliver_due;
use guoku_node::status_sync::{STATUS_SYNC_ACTOR, Sweep, SyncReport, sync_sent};
use guoku_seal::pki::OrgRole;
use guoku_seal::transport::{FixedClock, client_config, server_config};
use guoku_store::library::NewVoucher;
use guoku_voucher::lifecycle::{Exchange, Leg};
use guoku_voucher::{Encoding, Envelope, EnvelopeBody, Registry, VoucherKey, write_envelope};
use rustls::pki_types::ServerName;
use tower::ServiceExt;

mod common;
use common::*;

// ----- the parties -------------------------------------------------------------------------

const OTHER_BANK_CODE: &str = "103551000016";
const BANK_CLERK: &str = "bank-clerk";

fn other_bank_peer() -> Peer {
    Peer {
        role: OrgRole::AgentBank,
        org_code: OTHER_BANK_CODE.into(),
    }
}

/// Finance and an agent bank, each with its library, the bank reachable in memory.
struct Parties {
    pki: Pki,
    registry: Registry,
    network: InMemoryNetwork,
    finance: TestStore,
    bank: TestStore,
    /// Finance's side of the in-memory exchange.
    transport: InMemory,
    now: u64,
}

async fn parties(backend: Backend) -> Parties {
    let pki = Pki::new("测试根CA");
    let finance = backend.store().await;
    let bank = backend.store().await;
    let network = InMemoryNetwork::new();
    network.register(
        BANK_CODE,
        app(exchange_state(&pki, bank_peer(), &bank.store)),
    );
    let transport = InMemory::new(network.clone(), finance_peer());
    let now = u64::try_from(pki.now.unix_timestamp()).unwrap();
    Parties {
        pki,
        registry: Registry::builtin(),
        network,
        finance,
        bank,
        transport,
        now,
    }
}

fn envelope(bodies: Vec<EnvelopeBody>) -> Vec<u8> {
    write_envelope(&Envelope { bodies }, Encoding::Gbk)
}

impl Parties {
    /// Finance writes and sends 5201 number `n` of each of `ns` to the bank; the outbox
    /// delivers them. Their keys.
    async fn send(&self, ns: &[u64]) -> Vec<VoucherKey> {
        let library = self.finance.store.library();
        let mut keys = Vec::new();
        for &n in ns {
            let body = signed_5201(&self.pki, &self.registry, n);
            let new = NewVoucher::new(
                &body.voucher,
                Leg::Original,
                FINANCE_CODE,
                BANK_CODE,
                envelope(vec![body.clone()]),
            );
            library.write(new, "clerk", self.now).await.unwrap();
            let key = body.voucher.key();
            library
                .send(&key, Leg::Original, "clerk", self.now)
                .await
                .unwrap();
            keys.push(key);
        }
        let report = deliver_due(&self.finance.store, &self.transport, self.now, 100, BACKOFF)
            .await
            .unwrap();
        assert_eq!(report.delivered, ns.len(), "{report:?}");
        for key in &keys {
            assert_eq!(self.finance_code(key).await, 1, "delivered: 接收成功");
        }
        keys
    }

    /// The bank reads everything new (已读取).
    async fn bank_reads(&self, count: usize) {
        let read = self
            .bank
            .store
            .library()
            .read(100, BANK_CLERK, self.now)
            .await
            .unwrap();
        assert_eq!(read.len(), count);
    }

    /// The standard's status code of finance's original.
    async fn finance_code(&self, key: &VoucherKey) -> i8 {
        self.finance
            .store
            .library()
            .status_code(key, Leg::Original)
            .await
            .unwrap()
    }

    async fn finance_reason(&self, key: &VoucherKey) -> Option<String> {
        self.finance
            .store
            .library()
            .status(key, Leg::Original)
            .await
            .unwrap()
            .unwrap()
            .reason
    }

    async fn finance_events(&self, key: &VoucherKey) -> usize {
        self.finance
            .store
            .library()
            .events(key, Leg::Original)
            .await
            .unwrap()
            .len()
    }

    async fn bank_events(&self, key: &VoucherKey) -> usize {
        self.bank
            .store
            .library()
            .events(key, Leg::Original)
            .await
            .unwrap()
            .len()
    }

    async fn sync(&self, sweep: &mut Sweep, at: u64, limit: u32) -> SyncReport {
        sync_sent(
            &self.finance.store,
            &self.transport,
            sweep,
            STATUS_SYNC_ACTOR,
            at,
            limit,
        )
        .await
        .unwrap()
    }
}

/// The changes of a report as (key, status code, reason).
fn changes(report: &SyncReport) -> Vec<(VoucherKey, i8, Option<String>)> {
    let mut out: Vec<_> = report
        .changes
        .iter()
        .map(|c| {
            assert_eq!(c.key, c.record.key);
            assert_eq!(c.status, c.record.exchange);
            (
                c.key.clone(),
                c.status.code(c.leg).unwrap(),
                c.reason.clone(),
            )
        })
        .collect();
    out.sort();
    out
}

fn only(keys: &[StatusKey], answer: &[VoucherStatus]) -> Vec<i8> {
    assert_eq!(answer.len(), keys.len(), "{answer:?}");
    for (k, a) in keys.iter().zip(answer) {
        assert_eq!(&a.key, k, "answers come in query order");
    }
    answer.iter().map(|a| a.status).collect()
}

// ----- the sweep ---------------------------------------------------------------------------

both_backends!(
    the_sender_learns_acknowledgement_refusal_and_return_once,
    |backend| {
        let p = parties(backend).await;
        let keys = p.send(&[1, 2, 3, 4]).await;
        let (refused, acknowledged, returned, untouched) = (&keys[0], &keys[1], &keys[2], &keys[3]);
        let mut sweep = Sweep::new(["5201"]);

        // Nothing happened at the bank yet: asked, nothing changes.
        let report = p.sync(&mut sweep, p.now + 1, 100).await;
        assert_eq!((report.examined, report.answered), (4, 4), "{report:?}");
        assert!(report.changes.is_empty(), "{report:?}");
        assert!(report.mismatches.is_empty() && report.unreachable.is_empty());

        // The bank reads all four, refuses one with a reason and acknowledges two.
        p.bank_reads(4).await;
        let bank = p.bank.store.library();
        let refusal = "收款人账号与户名不符";
        bank.refuse(refused, Leg::Original, refusal, BANK_CLERK, p.now + 2)
            .await
            .unwrap();
        for key in [acknowledged, returned] {
            bank.acknowledge(key, Leg::Original, BANK_CLERK, p.now + 2)
                .await
                .unwrap();
        }
        let report = p.sync(&mut sweep, p.now + 3, 100).await;
        let mut expected = vec![
            (refused.clone(), 4, Some(refusal.to_owned())),
            (acknowledged.clone(), 3, None),
            (returned.clone(), 3, None),
        ];
        expected.sort();
        assert_eq!(changes(&report), expected, "{report:?}");
        assert_eq!(p.finance_code(refused).await, 4, "签收失败");
        assert_eq!(p.finance_reason(refused).await.as_deref(), Some(refusal));
        assert_eq!(p.finance_code(acknowledged).await, 3, "签收成功");
        assert_eq!(p.finance_code(untouched).await, 1, "still 接收成功");
        let events = p
            .finance
            .store
            .library()
            .events(refused, Leg::Original)
            .await
            .unwrap();
        let last = events.last().unwrap();
        assert_eq!(
            (last.action.as_str(), last.actor.as_str(), last.at),
            ("refuse", STATUS_SYNC_ACTOR, p.now + 3)
        );
        assert_eq!(last.reason.as_deref(), Some(refusal));

        // After acknowledging, the bank returns one (before money moved), with a reason.
        let why = "预算科目有误，退回重开";
        bank.return_voucher(returned, Leg::Original, why, BANK_CLERK, p.now + 4)
            .await
            .unwrap();
        let report = p.sync(&mut sweep, p.now + 5, 100).await;
        assert_eq!(
            changes(&report),
            vec![(returned.clone(), 5, Some(why.to_owned()))],
            "{report:?}"
        );
        assert_eq!(p.finance_code(returned).await, 5, "已退回");
        assert_eq!(p.finance_reason(returned).await.as_deref(), Some(why));
        assert!(!report.changes[0].record.body.is_empty());

        // Again: nothing changes, nothing is written.
        let before = [
            p.finance_events(refused).await,
            p.finance_events(acknowledged).await,
            p.finance_events(returned).await,
            p.finance_events(untouched).await,
        ];
        for at in [p.now + 6, p.now + 7] {
            let report = p.sync(&mut sweep, at, 100).await;
            assert!(report.changes.is_empty(), "{report:?}");
            assert!(report.mismatches.is_empty(), "{report:?}");
            assert_eq!(report.skipped, 0);
            // Only the ones still waiting are asked: the untouched and the acknowledged one.
            assert_eq!(report.examined, 2, "{report:?}");
        }
        let after = [
            p.finance_events(refused).await,
            p.finance_events(acknowledged).await,
            p.finance_events(returned).await,
            p.finance_events(untouched).await,
        ];
        assert_eq!(before, after);
        assert_eq!(
            [
                p.finance_code(refused).await,
                p.finance_code(acknowledged).await,
                p.finance_code(returned).await,
                p.finance_code(untouched).await
            ],
            [4, 3, 5, 1]
        );
    }
);

both_backends!(
    a_small_limit_reaches_every_waiting_voucher_in_turn,
    |backend| {
        let p = parties(backend).await;
        let keys = p.send(&[1, 2, 3]).await;
        p.bank_reads(3).await;
        for key in &keys {
            p.bank
                .store
                .library()
                .acknowledge(key, Leg::Original, BANK_CLERK, p.now + 1)
                .await
                .unwrap();
        }
        let mut sweep = Sweep::for_registry(&p.registry);
        let first = p.sync(&mut sweep, p.now + 2, 2).await;
        assert_eq!(first.examined, 2);
        // The first two sent (arrival order), not the third.
        let mut expected = vec![(keys[0].clone(), 3, None), (keys[1].clone(), 3, None)];
        expected.sort();
        assert_eq!(changes(&first), expected);
        // The next sweep goes on where the first stopped: the third is reached.
        let second = p.sync(&mut sweep, p.now + 3, 2).await;
        assert_eq!(changes(&second), vec![(keys[2].clone(), 3, None)]);
        for key in &keys {
            assert_eq!(p.finance_code(key).await, 3);
        }
        // And further sweeps change nothing.
        for at in [p.now + 4, p.now + 5, p.now + 6] {
            let report = p.sync(&mut sweep, at, 2).await;
            assert!(report.changes.is_empty(), "{report:?}");
            assert!(report.examined <= 2);
        }
        // A limit out of range is refused.
        let err = sync_sent(
            &p.finance.store,
            &p.transport,
            &mut sweep,
            STATUS_SYNC_ACTOR,
            p.now,
            0,
        )
        .await
        .unwrap_err();
        assert!(!err.is_retryable(), "{err}");
        // So is an empty actor.
        let err = sync_sent(&p.finance.store, &p.transport, &mut sweep, "", p.now, 10)
            .await
            .unwrap_err();
        assert!(!err.is_retryable(), "{err}");
    }
);

/// A transport that only delivers (the trait's default status query).
struct DeliverOnly;

impl Transport for DeliverOnly {
    async fn deliver(
        &self,
        _destination: &str,
        _envelope: Bytes,
    ) -> Result<DeliveryOutcome, ExchangeError> {
        Ok(DeliveryOutcome {
            results: Vec::new(),
        })
    }
}

both_backends!(
    unreachable_receivers_and_answers_that_do_not_fit_change_nothing,
    |backend| {
        let p = parties(backend).await;
        let keys = p.send(&[1, 2]).await;
        p.bank_reads(2).await;
        p.bank
            .store
            .library()
            .acknowledge(&keys[0], Leg::Original, BANK_CLERK, p.now + 1)
            .await
            .unwrap();
        let mut sweep = Sweep::new(["5201"]);

        // No route to the bank: reported, nothing changes.
        let lost = InMemory::new(InMemoryNetwork::new(), finance_peer());
        let report = sync_sent(
            &p.finance.store,
            &lost,
            &mut sweep,
            STATUS_SYNC_ACTOR,
            p.now + 2,
            100,
        )
        .await
        .unwrap();
        assert!(report.changes.is_empty());
        assert_eq!(report.unreachable.len(), 1, "{report:?}");
        assert_eq!(report.unreachable[0].destination, BANK_CODE);
        assert_eq!(report.unreachable[0].keys, 2);
        assert!(matches!(
            report.unreachable[0].error,
            ExchangeError::UnknownDestination(_)
        ));
        // A transport without status queries: the same.
        let report = sync_sent(
            &p.finance.store,
            &DeliverOnly,
            &mut sweep,
            STATUS_SYNC_ACTOR,
            p.now + 2,
            100,
        )
        .await
        .unwrap();
        assert!(report.changes.is_empty());
        assert!(matches!(
            report.unreachable[0].error,
            ExchangeError::Unsupported(_)
        ));
        assert_eq!(p.finance_code(&keys[0]).await, 1);

        // A voucher finance marked delivered but the bank never got: the bank answers -1.
        let body = signed_5201(&p.pki, &p.registry, 9);
        let ghost = body.voucher.key();
        let library = p.finance.store.library();
        let new = NewVoucher::new(
            &body.voucher,
            Leg::Original,
            FINANCE_CODE,
            BANK_CODE,
            envelope(vec![body.clone()]),
        );
        library.write(new, "clerk", p.now).await.unwrap();
        library
            .send(&ghost, Leg::Original, "clerk", p.now)
            .await
            .unwrap();
        library
            .delivered(&ghost, Leg::Original, "clerk", p.now)
            .await
            .unwrap();
        let events = p.finance_events(&ghost).await;

        // Once the bank is reachable: the acknowledgement is recorded, the ghost is a mismatch.
        let report = p.sync(&mut sweep, p.now + 3, 100).await;
        assert_eq!(changes(&report), vec![(keys[0].clone(), 3, None)]);
        assert_eq!(report.mismatches.len(), 1, "{report:?}");
        let m = &report.mismatches[0];
        assert_eq!(
            (&m.key, m.ours, m.theirs, m.destination.as_str()),
            (
                &ghost,
                Exchange::Received,
                Some(STATUS_NOT_FOUND),
                BANK_CODE
            )
        );
        assert_eq!(p.finance_code(&ghost).await, 1);
        assert_eq!(p.finance_events(&ghost).await, events);
    }
);

// ----- the status query: only the sender learns --------------------------------------------

both_backends!(
    in_memory_only_the_sender_learns_a_vouchers_status,
    |backend| {
        let p = parties(backend).await;
        let keys = p.send(&[1]).await;
        let key = &keys[0];
        p.bank_reads(1).await;
        p.bank
            .store
            .library()
            .refuse(key, Leg::Original, "金额有误", BANK_CLERK, p.now + 1)
            .await
            .unwrap();

        // A voucher the bank sent to finance: finance is a party to it, but not its sender.
        let body = signed_5201(&p.pki, &p.registry, 7);
        let bank_sent = body.voucher.key();
        p.bank
            .store
            .library()
            .write(
                NewVoucher::new(
                    &body.voucher,
                    Leg::Original,
                    BANK_CODE,
                    FINANCE_CODE,
                    envelope(vec![body.clone()]),
                ),
                BANK_CLERK,
                p.now,
            )
            .await
            .unwrap();
        let mut unknown = key.clone();
        unknown.voucher_no = "NOSUCHVOUCHER".into();
        let asked = vec![
            StatusKey::new(key, Leg::Original),
            StatusKey::new(key, Leg::Receipt),
            StatusKey::new(&unknown, Leg::Original),
            StatusKey::new(&bank_sent, Leg::Original),
        ];

        // Finance, the sender: its refused voucher's status, processing code and reason.
        let answer = p.transport.query_status(BANK_CODE, &asked).await.unwrap();
        assert_eq!(only(&asked, &answer.statuses), [4, -1, -1, -1]);
        let first = &answer.statuses[0];
        assert_eq!(first.key.leg, WireLeg::Original);
        assert_eq!(first.processing, Some(16), "签收失败");
        assert_eq!(first.reason.as_deref(), Some("金额有误"));
        assert_eq!(first.exchange(), Some(Exchange::AckFailed));
        assert!(
            answer.statuses[1..]
                .iter()
                .all(|s| s.processing.is_none() && s.reason.is_none() && s.exchange().is_none())
        );

        // Another bank, and a finance node with another code: nothing about anything.
        for peer in [
            other_bank_peer(),
            Peer {
                role: OrgRole::Finance,
                org_code: "11430100001".into(),
            },
        ] {
            let stranger = InMemory::new(p.network.clone(), peer);
            let answer = stranger.query_status(BANK_CODE, &asked).await.unwrap();
            assert_eq!(only(&asked, &answer.statuses), [-1, -1, -1, -1]);
            assert!(
                answer
                    .statuses
                    .iter()
                    .all(|s| s.processing.is_none() && s.reason.is_none())
            );
        }
        // An empty query is answered empty.
        let answer = p.transport.query_status(BANK_CODE, &[]).await.unwrap();
        assert!(answer.statuses.is_empty());
    }
);

both_backends!(
    over_https_only_the_sender_learns_a_vouchers_status,
    |backend| {
        let p = parties(backend).await;
        let keys = p.send(&[1]).await;
        let key = &keys[0];
        p.bank_reads(1).await;
        p.bank
            .store
            .library()
            .acknowledge(key, Leg::Original, BANK_CLERK, p.now + 1)
            .await
            .unwrap();

        let clock = Arc::new(FixedClock(p.pki.now));
        let bank_tls = p.pki.tls(&bank(), BANK_HOST);
        let server = server_config(&bank_tls, &p.pki.peer_trust(), clock.clone()).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server_task = tokio::spawn(serve_tls(
            listener,
            Arc::new(server),
            app(exchange_state(&p.pki, bank_peer(), &p.bank.store)),
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
        let https = |o: &guoku_seal::pki::Organisation, dns: &str| {
            let tls = p.pki.tls(o, dns);
            let client = client_config(&tls, &p.pki.peer_trust(), clock.clone()).unwrap();
            Https::new(client, nodes.clone(), Duration::from_secs(30))
        };
        let asked = vec![StatusKey::new(key, Leg::Original)];

        // Finance, identified by its certificate: the status.
        let finance_https = https(&finance(), "finance.guoku.test");
        let answer = finance_https.query_status(BANK_CODE, &asked).await.unwrap();
        assert_eq!(only(&asked, &answer.statuses), [3]);
        assert_eq!(answer.statuses[0].processing, Some(15));

        // Another bank of the same deployment connects, and learns nothing.
        let other = org(OrgRole::AgentBank, OTHER_BANK_CODE, "建设银行长沙分行");
        let answer = https(&other, "ccb.guoku.test")
            .query_status(BANK_CODE, &asked)
            .await
            .unwrap();
        assert_eq!(only(&asked, &answer.statuses), [STATUS_NOT_FOUND]);
        assert_eq!(answer.statuses[0].processing, None);

        // The sweep over HTTPS records the acknowledgement.
        let mut sweep = Sweep::new(["5201"]);
        let report = sync_sent(
            &p.finance.store,
            &finance_https,
            &mut sweep,
            STATUS_SYNC_ACTOR,
            p.now + 2,
            100,
        )
        .await
        .unwrap();
        assert_eq!(changes(&report), vec![(key.clone(), 3, None)]);
        assert_eq!(p.finance_code(key).await, 3);

        stop.send(()).unwrap();
        server_task.await.unwrap().unwrap();
    }
);

// ----- the status query: bounded -----------------------------------------------------------

async fn post_status(router: axum::Router, peer: Option<Peer>, body: Vec<u8>) -> (u16, String) {
    let mut request = Request::post(STATUS_PATH)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .unwrap();
    if let Some(peer) = peer {
        request.extensions_mut().insert(peer);
    }
    let response = router.oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    (status, body["error"].as_str().unwrap_or("").to_owned())
}

both_backends!(
    oversized_and_malformed_status_queries_are_refused_whole,
    |backend| {
        let p = parties(backend).await;
        let keys = p.send(&[1]).await;
        let key = &keys[0];
        let events = p.bank_events(key).await;
        let router = app(exchange_state(&p.pki, bank_peer(), &p.bank.store));

        // More keys than the receiver answers at once.
        let many = vec![StatusKey::new(key, Leg::Original); STATUS_KEYS_MAX + 1];
        match p
            .transport
            .query_status(BANK_CODE, &many)
            .await
            .unwrap_err()
        {
            ExchangeError::Rejected { status, code } => {
                assert_eq!((status, code.as_str()), (413, "too_many_keys"));
            }
            other => panic!("{other:?}"),
        }
        // Exactly the most is answered.
        let most = &many[..STATUS_KEYS_MAX];
        let answer = p.transport.query_status(BANK_CODE, most).await.unwrap();
        assert_eq!(only(most, &answer.statuses), vec![1; STATUS_KEYS_MAX]);

        // A body beyond the size limit, even if it would parse.
        let padded = format!("{{\"keys\":[]{}}}", " ".repeat(STATUS_BODY_MAX_BYTES));
        assert_eq!(
            post_status(router.clone(), Some(finance_peer()), padded.into_bytes()).await,
            (413, "status_query_too_large".into())
        );
        // Not JSON, or not a query.
        for garbage in [
            &b"<MOF/>"[..],
            b"{\"keys\":7}",
            b"{\"keys\":[{\"leg\":\"sideways\"}]}",
        ] {
            assert_eq!(
                post_status(router.clone(), Some(finance_peer()), garbage.to_vec()).await,
                (400, "status_query_invalid".into())
            );
        }
        // A key out of the library's limits.
        let mut bad = StatusKey::new(key, Leg::Original);
        bad.voucher_no = String::new();
        bad.adm_div_code = "4".repeat(65);
        let err = p
            .transport
            .query_status(BANK_CODE, &[StatusKey::new(key, Leg::Original), bad])
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ExchangeError::Rejected { status: 400, code } if code == "status_query_invalid"),
            "{err:?}"
        );
        assert!(!err.is_retryable());
        // No caller identity.
        assert_eq!(
            post_status(router, None, b"{\"keys\":[]}".to_vec()).await,
            (
                StatusCode::UNAUTHORIZED.as_u16(),
                "peer_unidentified".into()
            )
        );
        // Nothing changed at the bank, and the voucher is still unread there.
        assert_eq!(p.bank_events(key).await, events);
        p.bank_reads(1).await;
    }
);
