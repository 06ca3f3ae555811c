//! The audit log (电子审计) on both backends: a leaf for every voucher change, ledger batch,
//! draft step and administrative action, in the change's own transaction, with the caller's
//! context; append-only; heads, peer heads, alarms and archiving.

mod common;

use guoku_audit::{Frontier, HashAlgorithm, Kind};
use guoku_ledger::{AccountFlags, NewAccount, Transfer, TransferFlags};
use guoku_store::audit::{Context, Filter, PeerHead, PeerHeadState, SignedHead, scope};
use guoku_store::library::NewVoucher;
use guoku_voucher::lifecycle::Leg;
use guoku_voucher::{Encoding, Envelope, EnvelopeBody, Voucher, VoucherFlag};

fn voucher(no: &str) -> Voucher {
    Voucher {
        header: [
            ("AdmDivCode", "430000"),
            ("StYear", "2026"),
            ("VtCode", "5201"),
            ("VoucherNo", no),
            ("PayAmt", "12.00"),
        ]
        .into_iter()
        .collect(),
        details: vec![],
    }
}

fn new_voucher(no: &str) -> NewVoucher {
    let v = voucher(no);
    let body = guoku_voucher::write_envelope(
        &Envelope {
            bodies: vec![EnvelopeBody {
                flag: VoucherFlag::Original,
                attach: "SUCCESS".into(),
                voucher: v.clone(),
                signatures: vec![],
            }],
        },
        Encoding::Gbk,
    );
    NewVoucher::new(&v, Leg::Original, "011430000", "102", body)
}

fn all(limit: u32) -> Filter {
    Filter {
        limit,
        ..Filter::default()
    }
}

both_backends!(every_change_is_a_leaf_with_its_context, |store| {
    let log = store.audit();
    assert_eq!(log.size().await.unwrap(), 0);
    let context = Context {
        actor: String::new(),
        post: "signer".into(),
        source: "192.0.2.7:50000".into(),
        request_id: "req-42".into(),
    };
    let lib = store.library();
    scope(context.clone(), async {
        lib.write(new_voucher("A1"), "finance-signer", 1_790_000_000)
            .await
            .unwrap();
        lib.send(
            &voucher("A1").key(),
            Leg::Original,
            "finance-signer",
            1_790_000_001,
        )
        .await
        .unwrap();
    })
    .await;
    // Without a context: the worker's own changes.
    let account = |id: u128| NewAccount {
        id,
        ledger: 1,
        code: 1,
        flags: AccountFlags::NONE,
        user_data: 0,
    };
    store
        .create_accounts(vec![account(1), account(2)])
        .await
        .unwrap();
    let transfer = Transfer {
        id: 10,
        debit_account_id: 1,
        credit_account_id: 2,
        amount: 1_200,
        pending_id: 0,
        user_data: 0,
        timeout: 0,
        ledger: 1,
        code: 1,
        flags: TransferFlags::NONE,
    };
    store
        .create_transfers(1_790_000_002, vec![transfer])
        .await
        .unwrap();

    assert_eq!(log.size().await.unwrap(), 4);
    let entries = log.entries(0, 100).await.unwrap();
    let seqs: Vec<u64> = entries.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, vec![0, 1, 2, 3], "positions are gapless and in order");
    let write = &entries[0];
    assert_eq!(write.kind, Kind::Voucher);
    assert_eq!(write.action, "write");
    assert_eq!(write.actor, "finance-signer");
    assert_eq!(write.post, "signer");
    assert_eq!(write.source, "192.0.2.7:50000");
    assert_eq!(write.request_id, "req-42");
    assert_eq!(write.object, "430000/2026/5201/A1#original");
    assert!(write.detail.contains("sha256 "), "{}", write.detail);
    assert_eq!(entries[1].action, "send");
    assert_eq!(entries[2].kind, Kind::Ledger);
    assert_eq!(entries[2].actor, "system");
    assert!(entries[2].detail.starts_with("accounts 2, created 2"));
    assert_eq!(entries[3].action, "transfers");
    assert!(
        entries[3].detail.contains("amount applied 1200 fen"),
        "{}",
        entries[3].detail
    );
    assert_eq!(entries[3].at, 1_790_000_002);
    // Every entry's bytes round-trip: what is stored is what is hashed.
    for e in &entries {
        assert_eq!(&guoku_audit::Entry::from_bytes(&e.to_bytes()).unwrap(), e);
    }
    // The page of leaf data the tree is recomputed from is those same bytes, and it picks
    // out what the write leaf recorded of its voucher.
    let page = log.leaves(1, 100).await.unwrap();
    assert_eq!(page.seqs, vec![1, 2, 3]);
    let bytes: Vec<Vec<u8>> = entries[1..]
        .iter()
        .map(guoku_audit::Entry::to_bytes)
        .collect();
    assert_eq!(
        page.data.slices(),
        bytes.iter().map(Vec::as_slice).collect::<Vec<_>>()
    );
    assert_eq!(
        page.voucher_writes().count(),
        0,
        "only write and receive leaves record one"
    );
    let page = log.leaves(0, 1).await.unwrap();
    assert_eq!(page.seqs, vec![0]);
    let stored = new_voucher("A1");
    let recorded: Vec<_> = page.voucher_writes().collect();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].0, "430000/2026/5201/A1#original");
    let (content, body) = guoku_store::audit::recorded_fingerprint(recorded[0].1).unwrap();
    assert_eq!(content, stored.content_sha256);
    assert_eq!(
        body,
        <[u8; 32]>::from(<sha2::Sha256 as sha2::Digest>::digest(&stored.body))
    );
    assert!(log.leaves(0, 0).await.is_err(), "a zero limit is refused");

    // Search: by object, actor, kind, time, newest first, with a cursor.
    let by_object = log
        .search(&Filter {
            object: Some("A1".into()),
            ..all(10)
        })
        .await
        .unwrap();
    assert_eq!(
        by_object.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![1, 0]
    );
    let by_kind = log
        .search(&Filter {
            kind: Some(Kind::Ledger),
            ..all(10)
        })
        .await
        .unwrap();
    assert_eq!(by_kind.len(), 2);
    let by_time = log
        .search(&Filter {
            from: Some(1_790_000_001),
            to: Some(1_790_000_002),
            ..all(10)
        })
        .await
        .unwrap();
    assert_eq!(by_time.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1]);
    let page = log
        .search(&Filter {
            before: Some(2),
            ..all(1)
        })
        .await
        .unwrap();
    assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1]);
    let wildcard = log
        .search(&Filter {
            object: Some("%".into()),
            ..all(10)
        })
        .await
        .unwrap();
    assert!(wildcard.is_empty(), "LIKE wildcards are matched literally");
    assert!(log.search(&all(0)).await.is_err());
});

both_backends!(a_refused_change_leaves_no_leaf, |store| {
    let lib = store.library();
    lib.write(new_voucher("B1"), "maker", 1_790_000_000)
        .await
        .unwrap();
    // Sending twice: the second is illegal and refused; nothing of it may be logged.
    lib.send(&voucher("B1").key(), Leg::Original, "maker", 1_790_000_001)
        .await
        .unwrap();
    let before = store.audit().size().await.unwrap();
    assert!(
        lib.acknowledge(&voucher("B1").key(), Leg::Original, "maker", 1_790_000_002)
            .await
            .is_err()
    );
    assert_eq!(store.audit().size().await.unwrap(), before);
});

both_raw!(the_log_is_append_only, |store, t| {
    store
        .library()
        .write(new_voucher("C1"), "maker", 1_790_000_000)
        .await
        .unwrap();
    for sql in [
        "UPDATE audit_log SET actor = 'someone else'",
        "DELETE FROM audit_log",
        "DELETE FROM audit_log WHERE seq = 0",
        "UPDATE audit_counter SET next = 0",
        "DELETE FROM audit_counter",
    ] {
        let refused = t.raw(sql).await;
        assert!(refused.is_err(), "{sql} must be refused");
    }
    assert_eq!(store.audit().size().await.unwrap(), 1);
    assert_eq!(store.audit().entries(0, 10).await.unwrap().len(), 1);
});

both_raw!(heads_peer_heads_alarms_and_archive, |store, t| {
    let log = store.audit();
    let lib = store.library();
    for no in ["D1", "D2", "D3"] {
        lib.write(new_voucher(no), "maker", 1_790_000_000)
            .await
            .unwrap();
    }
    let alg = HashAlgorithm::Sm3;
    let mut frontier = Frontier::new(alg);
    for e in log.entries(0, 10).await.unwrap() {
        frontier.push_data(&e.to_bytes());
    }
    let head = SignedHead {
        size: 3,
        at: 1_790_000_100,
        alg,
        root: frontier.root(),
        frontier: frontier.to_bytes(),
        signature: vec![1, 2, 3],
        reason: "schedule".into(),
    };
    assert!(log.put_head(&head).await.unwrap());
    assert!(!log.put_head(&head).await.unwrap(), "one head per size");
    assert_eq!(log.latest_head().await.unwrap(), Some(head.clone()));
    assert_eq!(log.heads().await.unwrap(), vec![head.clone()]);
    assert_eq!(head.frontier().unwrap(), frontier);
    assert!(t.raw("DELETE FROM audit_heads").await.is_err());

    let peer = PeerHead {
        peer: "001430000001".into(),
        size: 9,
        at: 1_790_000_050,
        alg,
        root: [9; 32],
        signature: vec![4, 5],
        received_at: 1_790_000_060,
        state: PeerHeadState::Pending,
    };
    assert!(log.put_peer_head(&peer).await.unwrap());
    assert!(!log.put_peer_head(&peer).await.unwrap());
    assert_eq!(
        log.pending_peer_heads(10).await.unwrap(),
        vec![peer.clone()]
    );
    assert_eq!(log.last_consistent(&peer.peer).await.unwrap(), None);
    log.set_peer_state(&peer.peer, 9, PeerHeadState::Consistent)
        .await
        .unwrap();
    assert!(log.pending_peer_heads(10).await.unwrap().is_empty());
    assert_eq!(
        log.last_consistent(&peer.peer)
            .await
            .unwrap()
            .map(|h| h.size),
        Some(9)
    );
    assert_eq!(log.peer_heads(Some(&peer.peer)).await.unwrap().len(), 1);

    log.raise(1_790_000_070, &peer.peer, "root differs")
        .await
        .unwrap();
    let alarms = log.alarms(10).await.unwrap();
    assert_eq!(alarms.len(), 1);
    assert_eq!(alarms[0].detail, "root differs");

    // Archive the first two leaves: they leave, the frontier stays, the size does not change.
    let mut prefix = Frontier::new(alg);
    for e in log.entries(0, 2).await.unwrap() {
        prefix.push_data(&e.to_bytes());
    }
    assert_eq!(log.archive(&prefix, 1_790_000_200).await.unwrap(), 2);
    assert_eq!(
        log.archived().await.unwrap().map(|a| a.frontier),
        Some(prefix.clone())
    );
    assert_eq!(log.size().await.unwrap(), 3);
    let left = log.entries(0, 10).await.unwrap();
    assert_eq!(left.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![2]);
    assert!(
        log.archive(&prefix, 1_790_000_300).await.is_err(),
        "not past the last point"
    );
    // Still no deleting above the archive point.
    assert!(t.raw("DELETE FROM audit_log").await.is_err());
});
