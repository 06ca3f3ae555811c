//! The voucher library (电子凭证库) on both backends: every operation, exactly-once receipt,
//! illegal transitions, bounded reads, the outbox's backoff, and one event per change.

mod common;

use std::sync::Arc;

use guoku_store::Store;
use guoku_store::library::{
    Backoff, Direction, LibraryError, NewVoucher, READ_MAX, REASON_MAX_GBK_BYTES, Step,
};
use guoku_voucher::lifecycle::{Exchange, Leg, Processing, ProcessingEvent};
use guoku_voucher::{Encoding, Envelope, EnvelopeBody, Voucher, VoucherFlag, VoucherKey};

const FINANCE: &str = "011430000";
const BANK: &str = "102";

fn voucher(no: &str, amount: &str) -> Voucher {
    Voucher {
        header: [
            ("AdmDivCode", "430000"),
            ("StYear", "2025"),
            ("VtCode", "5201"),
            ("VoucherNo", no),
            ("PayAmt", amount),
            ("PayeeAcctName", "长沙市某某公司"),
        ]
        .into_iter()
        .collect(),
        details: vec![],
    }
}

/// The envelope body bytes, as a library sends them (GBK).
fn envelope_body(v: &Voucher, flag: VoucherFlag) -> Vec<u8> {
    guoku_voucher::write_envelope(
        &Envelope {
            bodies: vec![EnvelopeBody {
                flag,
                attach: "SUCCESS".into(),
                voucher: v.clone(),
                signatures: vec![],
            }],
        },
        Encoding::Gbk,
    )
}

/// An original from finance to the bank.
fn original(no: &str, amount: &str) -> NewVoucher {
    let v = voucher(no, amount);
    NewVoucher::new(
        &v,
        Leg::Original,
        FINANCE,
        BANK,
        envelope_body(&v, VoucherFlag::Original),
    )
}

fn key(no: &str) -> VoucherKey {
    voucher(no, "1.00").key()
}

async fn events(store: &Store, no: &str, leg: Leg) -> Vec<String> {
    store
        .library()
        .events(&key(no), leg)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect()
}

fn is_illegal(result: Result<impl std::fmt::Debug, LibraryError>, state: &str, event: &str) {
    match result {
        Err(LibraryError::Illegal { transition, .. }) => {
            assert!(transition.state.contains(state), "{transition}");
            assert_eq!(transition.event, event, "{transition}");
        }
        other => panic!("expected an illegal {event} in {state}, got {other:?}"),
    }
}

both_backends!(sender_happy_path, |store| {
    let lib = store.library();
    let k = key("S1");
    let stored = lib
        .write(original("S1", "12.50"), "maker", 100)
        .await
        .unwrap();
    assert!(stored.created);
    let r = stored.record;
    assert_eq!(r.direction, Direction::Sent);
    assert_eq!((r.exchange, r.status_code()), (Exchange::NotSent, 13));
    assert_eq!(r.processing, None);
    assert_eq!(r.created_at, 100);
    assert_eq!(r.body, original("S1", "12.50").body);
    assert_eq!(
        lib.status(&k, Leg::Original).await.unwrap(),
        Some(r.clone())
    );

    let r = lib.send(&k, Leg::Original, "signer", 110).await.unwrap();
    assert_eq!(r.status_code(), 0);
    let due = lib.due(110, 10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(
        (
            due[0].key.clone(),
            due[0].destination.as_str(),
            due[0].attempts
        ),
        (k.clone(), BANK, 0)
    );
    assert_eq!(due[0].body, r.body);

    let r = lib
        .delivered(&k, Leg::Original, "outbox", 120)
        .await
        .unwrap();
    assert_eq!(r.status_code(), 1);
    assert!(lib.due(u64::MAX >> 1, 10).await.unwrap().is_empty());
    let r = lib
        .acknowledge(&k, Leg::Original, "bank", 130)
        .await
        .unwrap();
    assert_eq!(r.status_code(), 3);
    let r = lib.receipt_arrives(&k, "bank", 140).await.unwrap();
    assert_eq!(
        (r.exchange, r.status_code()),
        (Exchange::ReceiptReceived, 12)
    );
    assert_eq!(r.updated_at, 140);
    assert_eq!(lib.status_code(&k, Leg::Original).await.unwrap(), 12);
    assert_eq!(
        lib.status_code(&key("nope"), Leg::Original).await.unwrap(),
        -1
    );

    // One event per change, with who, what, from, to, when.
    let log = lib.events(&k, Leg::Original).await.unwrap();
    let actions: Vec<&str> = log.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "write",
            "send",
            "delivered",
            "acknowledge",
            "receipt_arrives"
        ]
    );
    let steps: Vec<(Option<i16>, i16, u64)> = log
        .iter()
        .map(|e| (e.from_exchange, e.to_exchange, e.at))
        .collect();
    assert_eq!(
        steps,
        [
            (None, 13, 100),
            (Some(13), 0, 110),
            (Some(0), 1, 120),
            (Some(1), 3, 130),
            (Some(3), 12, 140)
        ]
    );
    assert_eq!(log[1].actor, "signer");
    // A repeated delivery report changes nothing and writes no event.
    let again = lib
        .delivered(&k, Leg::Original, "outbox", 150)
        .await
        .unwrap();
    assert_eq!(again.updated_at, 140);
    assert_eq!(lib.events(&k, Leg::Original).await.unwrap().len(), 5);

    // The other outcomes the receiver can report back.
    for (no, outcome) in [
        ("S2", "refuse"),
        ("S3", "return"),
        ("S4", "delivery_refused"),
    ] {
        let k = key(no);
        lib.write(original(no, "1.00"), "maker", 200).await.unwrap();
        lib.send(&k, Leg::Original, "signer", 201).await.unwrap();
        let r = match outcome {
            "delivery_refused" => lib
                .delivery_refused(&k, Leg::Original, "签名无效", "outbox", 202)
                .await
                .unwrap(),
            _ => {
                lib.delivered(&k, Leg::Original, "outbox", 202)
                    .await
                    .unwrap();
                if outcome == "refuse" {
                    lib.refuse(&k, Leg::Original, "账号不符", "bank", 203)
                        .await
                        .unwrap()
                } else {
                    lib.return_voucher(&k, Leg::Original, "额度不足", "bank", 203)
                        .await
                        .unwrap()
                }
            }
        };
        let expected = match outcome {
            "refuse" => 4,
            "return" => 5,
            _ => 2,
        };
        assert_eq!(r.status_code(), expected, "{outcome}");
        assert!(r.reason.is_some());
        assert!(lib.due(u64::MAX >> 1, 10).await.unwrap().is_empty());
    }
    // A voucher the receiver's library refused may be sent again, and then voided.
    let k4 = key("S4");
    lib.send(&k4, Leg::Original, "signer", 300).await.unwrap();
    assert_eq!(lib.due(300, 10).await.unwrap().len(), 1);
    let r = lib
        .void(&k4, Leg::Original, Some("重开"), "maker", 301)
        .await
        .unwrap();
    assert_eq!((r.exchange, r.status_code()), (Exchange::Voided, -1));
    assert!(lib.due(u64::MAX >> 1, 10).await.unwrap().is_empty());
    assert_eq!(
        events(store, "S4", Leg::Original).await,
        ["write", "send", "delivery_refused", "send", "void"]
    );
});

both_backends!(steps_apply_together_or_not_at_all, |store| {
    use ProcessingEvent as P;
    let lib = store.library();
    let k = key("T1");
    lib.receive(original("T1", "8.00"), "inbox", 10)
        .await
        .unwrap();
    lib.read(READ_MAX, "clerk", 11).await.unwrap();
    let before = lib.events(&k, Leg::Original).await.unwrap().len();
    let audit_before = store.audit().size().await.unwrap();

    // A run whose last step is illegal (复核 before 审核): nothing of it is written.
    let refused = lib
        .apply(
            vec![
                Step::Acknowledge(k.clone(), Leg::Original),
                Step::process(&k, Leg::Original, P::StartValidation),
                Step::process(&k, Leg::Original, P::Book),
            ],
            "clerk",
            12,
        )
        .await;
    is_illegal(refused, "校验中", "Book");
    let r = lib.status(&k, Leg::Original).await.unwrap().unwrap();
    assert_eq!(
        (r.exchange, r.processing),
        (Exchange::Received, Some(Processing::Read)),
        "the acknowledgement before the illegal step was rolled back"
    );
    assert_eq!(lib.events(&k, Leg::Original).await.unwrap().len(), before);
    assert_eq!(store.audit().size().await.unwrap(), audit_before);

    // A whole run: each step its own event (and audit leaf), in order, one record each.
    let mut receipt = voucher("T1", "8.00");
    receipt.header.set("XPayAmt", "8.00");
    let receipt = NewVoucher::new(
        &receipt,
        Leg::Receipt,
        BANK,
        FINANCE,
        envelope_body(&receipt, VoucherFlag::Receipt),
    );
    let mut steps = vec![Step::Acknowledge(k.clone(), Leg::Original)];
    for event in [P::StartValidation, P::PassValidation, P::Check, P::Approve] {
        steps.push(Step::process(&k, Leg::Original, event));
    }
    steps.extend([
        Step::process(&k, Leg::Original, P::Book),
        Step::process(&k, Leg::Original, P::Seal),
        Step::WriteAndSend(receipt.clone()),
        Step::process(&k, Leg::Original, P::SendReceipt),
    ]);
    let records = lib.apply(steps, "clerk", 13).await.unwrap();
    assert_eq!(records.len(), 9);
    assert_eq!(records[0].processing, Some(Processing::Acknowledged));
    assert_eq!(records[7].leg, Leg::Receipt);
    assert_eq!(
        records[7].status_code(),
        6,
        "the receipt is written and sent (对方未接收)"
    );
    assert_eq!(records[8].processing, Some(Processing::ReceiptSent));
    let actions = events(store, "T1", Leg::Original).await;
    assert_eq!(
        actions[before..],
        [
            "acknowledge",
            "process:StartValidation",
            "process:PassValidation",
            "process:Check",
            "process:Approve",
            "process:Book",
            "process:Seal",
            "process:SendReceipt"
        ]
    );
    assert_eq!(events(store, "T1", Leg::Receipt).await, ["write", "send"]);
    assert_eq!(
        store.audit().size().await.unwrap(),
        audit_before + 10,
        "a leaf per change"
    );
    assert_eq!(lib.due(13, 10).await.unwrap().len(), 1);

    // The same run again (a flow resumed after a crash): the steps already taken are
    // no-ops and the receipt is not sent twice.
    let again = lib
        .apply(
            vec![
                Step::process(&k, Leg::Original, P::Seal),
                Step::WriteAndSend(receipt),
                Step::process(&k, Leg::Original, P::SendReceipt),
            ],
            "clerk",
            14,
        )
        .await
        .unwrap();
    assert_eq!(again[1].status_code(), 6);
    assert_eq!(events(store, "T1", Leg::Receipt).await, ["write", "send"]);
    assert_eq!(store.audit().size().await.unwrap(), audit_before + 10);

    // A step with a bad argument is refused before anything runs.
    let bad = lib
        .apply(
            vec![Step::Return(k.clone(), Leg::Original, "  ".into())],
            "clerk",
            15,
        )
        .await;
    assert!(
        matches!(bad, Err(LibraryError::InvalidArgument(_))),
        "{bad:?}"
    );
});

both_backends!(receiver_happy_path, |store| {
    let lib = store.library();
    let k = key("R1");
    let stored = lib
        .receive(original("R1", "8.00"), "inbox", 10)
        .await
        .unwrap();
    assert!(stored.created);
    let r = stored.record;
    assert_eq!(r.direction, Direction::Received);
    assert_eq!((r.exchange, r.processing), (Exchange::Received, None));

    let read = lib.read(READ_MAX, "clerk", 11).await.unwrap();
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].processing, Some(Processing::Read));
    let r = lib
        .acknowledge(&k, Leg::Original, "clerk", 12)
        .await
        .unwrap();
    assert_eq!(
        (r.exchange, r.processing),
        (Exchange::Acknowledged, Some(Processing::Acknowledged))
    );
    use ProcessingEvent as P;
    let steps = [
        P::StartValidation,
        P::PassValidation,
        P::Check,
        P::Approve,
        P::Book,
        P::Seal,
        P::SendReceipt,
    ];
    for (now, step) in (13..).zip(steps) {
        lib.process(&k, Leg::Original, step, None, "checker", now)
            .await
            .unwrap();
    }
    let r = lib.status(&k, Leg::Original).await.unwrap().unwrap();
    assert_eq!(r.processing, Some(Processing::ReceiptSent));
    assert_eq!(r.processing.map(Processing::code), Some(80));
    // Every change has its event row.
    assert_eq!(
        lib.events(&k, Leg::Original).await.unwrap().len(),
        3 + steps.len()
    );
    let last = lib.events(&k, Leg::Original).await.unwrap().pop().unwrap();
    assert_eq!(
        (
            last.from_processing,
            last.to_processing,
            last.action.as_str()
        ),
        (Some(73), Some(80), "process:SendReceipt")
    );

    // The bank's receipt goes back as the receipt leg of the same key.
    let mut receipt = voucher("R1", "8.00");
    receipt.header.set("XPayAmt", "8.00");
    let new = NewVoucher::new(
        &receipt,
        Leg::Receipt,
        BANK,
        FINANCE,
        envelope_body(&receipt, VoucherFlag::Receipt),
    );
    let w = lib.write(new, "clerk", 30).await.unwrap().record;
    assert_eq!(w.status_code(), 14);
    let w = lib.send(&k, Leg::Receipt, "clerk", 31).await.unwrap();
    assert_eq!(w.status_code(), 6);

    // 签收失败 and 退回 with their reasons.
    lib.receive(original("R2", "1.00"), "inbox", 40)
        .await
        .unwrap();
    lib.receive(original("R3", "1.00"), "inbox", 40)
        .await
        .unwrap();
    assert_eq!(lib.read(READ_MAX, "clerk", 41).await.unwrap().len(), 2);
    let r = lib
        .refuse(&key("R2"), Leg::Original, "收款人账号错误", "clerk", 42)
        .await
        .unwrap();
    assert_eq!(
        (r.exchange, r.processing, r.reason.as_deref()),
        (
            Exchange::AckFailed,
            Some(Processing::AckFailed),
            Some("收款人账号错误")
        )
    );
    lib.acknowledge(&key("R3"), Leg::Original, "clerk", 42)
        .await
        .unwrap();
    let r = lib
        .return_voucher(&key("R3"), Leg::Original, "额度不足", "checker", 43)
        .await
        .unwrap();
    assert_eq!(
        (r.exchange, r.processing),
        (Exchange::Returned, Some(Processing::Returned))
    );
    assert_eq!(r.status_code(), 5);
    assert_eq!(
        events(store, "R2", Leg::Original).await,
        ["receive", "read", "refuse"]
    );
    assert_eq!(
        events(store, "R3", Leg::Original).await,
        ["receive", "read", "acknowledge", "return"]
    );
});

both_backends!(reasons_are_cut_to_200_gbk_bytes, |store| {
    let lib = store.library();
    lib.receive(original("T1", "1.00"), "inbox", 1)
        .await
        .unwrap();
    lib.read(1, "clerk", 2).await.unwrap();
    let long = "退".repeat(150);
    let r = lib
        .refuse(&key("T1"), Leg::Original, &long, "clerk", 3)
        .await
        .unwrap();
    let reason = r.reason.unwrap();
    let (gbk, _, _) = encoding_rs::GBK.encode(&reason);
    assert_eq!(gbk.len(), REASON_MAX_GBK_BYTES);
    assert_eq!(reason, "退".repeat(100));
    let stored = lib
        .status(&key("T1"), Leg::Original)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.reason.as_deref(), Some(reason.as_str()));
    let event = lib
        .events(&key("T1"), Leg::Original)
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(event.reason.as_deref(), Some(reason.as_str()));
    // A reason is required where the standard asks for one.
    lib.receive(original("T2", "1.00"), "inbox", 4)
        .await
        .unwrap();
    lib.read(1, "clerk", 5).await.unwrap();
    let err = lib
        .refuse(&key("T2"), Leg::Original, "  ", "clerk", 6)
        .await;
    assert!(
        matches!(err, Err(LibraryError::InvalidArgument(_))),
        "{err:?}"
    );
});

both_backends!(receive_takes_each_voucher_exactly_once, |store| {
    let lib = store.library();
    let first = lib
        .receive(original("E1", "5.00"), "inbox", 1)
        .await
        .unwrap();
    assert!(first.created);
    // Resent identically (even later, by someone else): the same record, no new event.
    let again = lib
        .receive(original("E1", "5.00"), "inbox2", 9)
        .await
        .unwrap();
    assert!(!again.created);
    assert_eq!(again.record, first.record);
    assert_eq!(events(store, "E1", Leg::Original).await, ["receive"]);

    // Same key, different content: refused and reported; the stored voucher is unchanged.
    let err = lib.receive(original("E1", "500.00"), "inbox", 10).await;
    match err {
        Err(LibraryError::Conflict {
            key: k,
            leg,
            detail,
        }) => {
            assert_eq!((*k, leg), (key("E1"), Leg::Original));
            assert!(detail.contains("sha256"), "{detail}");
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    let stored = lib
        .status(&key("E1"), Leg::Original)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored, first.record);
    assert_eq!(
        events(store, "E1", Leg::Original).await,
        ["receive", "conflict"]
    );
    // Writing a voucher this node received under the same key is refused as well.
    let err = lib.write(original("E1", "5.00"), "maker", 11).await;
    assert!(matches!(err, Err(LibraryError::Conflict { .. })), "{err:?}");
    assert_eq!(
        lib.status(&key("E1"), Leg::Original)
            .await
            .unwrap()
            .unwrap(),
        first.record
    );
    // Writing is idempotent the same way.
    let w1 = lib
        .write(original("E2", "1.00"), "maker", 12)
        .await
        .unwrap();
    let w2 = lib
        .write(original("E2", "1.00"), "maker", 13)
        .await
        .unwrap();
    assert!(w1.created && !w2.created);
    assert_eq!(w1.record, w2.record);
    assert_eq!(events(store, "E2", Leg::Original).await, ["write"]);
});

both_backends!(twenty_concurrent_receives_take_effect_once, |store| {
    let lib = Arc::new(store.library());
    let mut tasks = Vec::new();
    for i in 0..20u64 {
        let lib = Arc::clone(&lib);
        tasks.push(tokio::spawn(async move {
            lib.receive(original("C1", "3.00"), "inbox", 100 + i).await
        }));
    }
    let mut created = 0;
    let mut seqs = std::collections::BTreeSet::new();
    for task in tasks {
        let stored = task.await.unwrap().unwrap();
        created += usize::from(stored.created);
        seqs.insert(stored.record.seq);
    }
    assert_eq!(created, 1);
    assert_eq!(seqs.len(), 1);
    assert_eq!(events(store, "C1", Leg::Original).await, ["receive"]);
    assert_eq!(lib.read(READ_MAX, "clerk", 200).await.unwrap().len(), 1);
});

both_backends!(
    illegal_transitions_are_refused_and_change_nothing,
    |store| {
        let lib = store.library();
        lib.receive(original("I1", "1.00"), "inbox", 1)
            .await
            .unwrap();
        let k = key("I1");
        let before = lib.status(&k, Leg::Original).await.unwrap().unwrap();
        // Not read yet: it cannot be signed for.
        is_illegal(
            lib.acknowledge(&k, Leg::Original, "clerk", 2).await,
            "unread",
            "Acknowledge",
        );
        // A received voucher is not this node's to send or void.
        assert!(matches!(
            lib.send(&k, Leg::Original, "clerk", 2).await,
            Err(LibraryError::WrongDirection { .. })
        ));
        assert!(matches!(
            lib.void(&k, Leg::Original, None, "clerk", 2).await,
            Err(LibraryError::WrongDirection { .. })
        ));
        lib.read(1, "clerk", 3).await.unwrap();
        // Not acknowledged: it cannot be returned (退回 follows 签收), nor validated.
        is_illegal(
            lib.return_voucher(&k, Leg::Original, "原因", "clerk", 4)
                .await,
            "read",
            "Return",
        );
        is_illegal(
            lib.process(
                &k,
                Leg::Original,
                ProcessingEvent::StartValidation,
                None,
                "x",
                4,
            )
            .await,
            "read",
            "StartValidation",
        );
        // Read twice? No.
        let after_read = lib.status(&k, Leg::Original).await.unwrap().unwrap();
        assert_eq!(after_read.exchange, before.exchange);
        assert_eq!(after_read.updated_at, 3);
        assert_eq!(
            events(store, "I1", Leg::Original).await,
            ["receive", "read"]
        );

        // Sender side.
        lib.write(original("I2", "1.00"), "maker", 10)
            .await
            .unwrap();
        let k2 = key("I2");
        is_illegal(
            lib.receipt_arrives(&k2, "bank", 11).await,
            "not sent",
            "ReceiptArrives",
        );
        is_illegal(
            lib.acknowledge(&k2, Leg::Original, "bank", 11).await,
            "not sent",
            "Acknowledge",
        );
        lib.send(&k2, Leg::Original, "signer", 12).await.unwrap();
        is_illegal(
            lib.send(&k2, Leg::Original, "signer", 13).await,
            "not yet received",
            "Send",
        );
        let r = lib.status(&k2, Leg::Original).await.unwrap().unwrap();
        assert_eq!((r.exchange, r.updated_at), (Exchange::NotReceived, 12));
        assert_eq!(events(store, "I2", Leg::Original).await, ["write", "send"]);
        // The outbox row is untouched by the refused resend.
        let due = lib.due(100, 10).await.unwrap();
        assert_eq!((due.len(), due[0].attempts, due[0].next_at), (1, 0, 12));
        // Unknown vouchers.
        assert!(matches!(
            lib.send(&key("none"), Leg::Original, "signer", 13).await,
            Err(LibraryError::NotFound { .. })
        ));
    }
);

both_backends!(void_after_acknowledgement_is_refused, |store| {
    let lib = store.library();
    let k = key("V1");
    lib.write(original("V1", "1.00"), "maker", 1).await.unwrap();
    lib.send(&k, Leg::Original, "signer", 2).await.unwrap();
    lib.delivered(&k, Leg::Original, "outbox", 3).await.unwrap();
    lib.acknowledge(&k, Leg::Original, "bank", 4).await.unwrap();
    is_illegal(
        lib.void(&k, Leg::Original, Some("晚了"), "maker", 5).await,
        "acknowledged",
        "Void",
    );
    let r = lib.status(&k, Leg::Original).await.unwrap().unwrap();
    assert_eq!(
        (r.exchange, r.reason, r.updated_at),
        (Exchange::Acknowledged, None, 4)
    );
    assert_eq!(events(store, "V1", Leg::Original).await.len(), 4);
    // Before acknowledgement (even unsent) it can be voided, and nothing follows a void.
    lib.write(original("V2", "1.00"), "maker", 6).await.unwrap();
    lib.void(&key("V2"), Leg::Original, None, "maker", 7)
        .await
        .unwrap();
    is_illegal(
        lib.send(&key("V2"), Leg::Original, "signer", 8).await,
        "voided",
        "Send",
    );
});

both_backends!(read_returns_at_most_100_unread_oldest_first, |store| {
    let lib = store.library();
    for i in 0..150 {
        lib.receive(original(&format!("N{i:03}"), "1.00"), "inbox", 1000 + i)
            .await
            .unwrap();
    }
    // Vouchers this node wrote are never "unread".
    lib.write(original("W1", "1.00"), "maker", 999)
        .await
        .unwrap();
    assert!(matches!(
        lib.read(READ_MAX + 1, "clerk", 2000).await,
        Err(LibraryError::InvalidArgument(_))
    ));
    let first = lib.read(READ_MAX, "clerk", 2000).await.unwrap();
    assert_eq!(first.len(), 100);
    let nos: Vec<String> = first.iter().map(|r| r.key.voucher_no.clone()).collect();
    let expected: Vec<String> = (0..100).map(|i| format!("N{i:03}")).collect();
    assert_eq!(nos, expected);
    assert!(first.iter().all(|r| r.processing == Some(Processing::Read)));
    let second = lib.read(READ_MAX, "clerk", 2001).await.unwrap();
    assert_eq!(second.len(), 50);
    assert_eq!(second[0].key.voucher_no, "N100");
    assert!(lib.read(READ_MAX, "clerk", 2002).await.unwrap().is_empty());
    assert_eq!(
        events(store, "N000", Leg::Original).await,
        ["receive", "read"]
    );
    // A newly received one is unread again, and only it.
    lib.receive(original("N150", "1.00"), "inbox", 3000)
        .await
        .unwrap();
    let third = lib.read(READ_MAX, "clerk", 3001).await.unwrap();
    assert_eq!(third.len(), 1);
    assert_eq!(third[0].key.voucher_no, "N150");
});

both_backends!(outbox_backs_off_and_clears_on_delivery, |store| {
    let lib = store.library();
    for no in ["O1", "O2", "O3"] {
        lib.write(original(no, "1.00"), "maker", 1).await.unwrap();
        lib.send(&key(no), Leg::Original, "signer", 1000)
            .await
            .unwrap();
    }
    assert_eq!(lib.due(999, 100).await.unwrap().len(), 0);
    assert_eq!(lib.due(1000, 100).await.unwrap().len(), 3);
    assert_eq!(lib.due(1000, 2).await.unwrap().len(), 2);
    assert!(matches!(
        lib.due(1000, 101).await,
        Err(LibraryError::InvalidArgument(_))
    ));

    let backoff = Backoff { base: 10, cap: 60 };
    let k = key("O1");
    let mut now = 1000;
    let mut schedule = Vec::new();
    for _ in 0..6 {
        let e = lib
            .record_attempt(&k, Leg::Original, now, backoff)
            .await
            .unwrap();
        schedule.push((e.attempts, e.next_at - now));
        // Not due before its time, due at it.
        let due_nos = |d: Vec<guoku_store::library::OutboxEntry>| {
            d.into_iter().map(|e| e.key.voucher_no).collect::<Vec<_>>()
        };
        assert!(!due_nos(lib.due(e.next_at - 1, 100).await.unwrap()).contains(&"O1".into()));
        assert!(due_nos(lib.due(e.next_at, 100).await.unwrap()).contains(&"O1".into()));
        now = e.next_at;
    }
    assert_eq!(
        schedule,
        [(1, 10), (2, 20), (3, 40), (4, 60), (5, 60), (6, 60)]
    );
    // Earliest first: the two never retried come before O1.
    let due = lib.due(now, 100).await.unwrap();
    let nos: Vec<&str> = due.iter().map(|e| e.key.voucher_no.as_str()).collect();
    assert_eq!(nos, ["O2", "O3", "O1"]);
    assert_eq!(due[2].attempts, 6);

    // Delivered: gone from the outbox; attempts are not state changes (no events).
    lib.delivered(&k, Leg::Original, "outbox", now)
        .await
        .unwrap();
    let nos: Vec<String> = lib
        .due(u64::MAX >> 1, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.key.voucher_no)
        .collect();
    assert_eq!(nos, ["O2", "O3"]);
    assert!(matches!(
        lib.record_attempt(&k, Leg::Original, now, backoff).await,
        Err(LibraryError::NotInOutbox { .. })
    ));
    assert_eq!(
        events(store, "O1", Leg::Original).await,
        ["write", "send", "delivered"]
    );
    // The backoff itself saturates instead of overflowing.
    assert_eq!(Backoff { base: 10, cap: 60 }.delay(1_000), 60);
    assert_eq!(
        Backoff {
            base: u64::MAX,
            cap: u64::MAX
        }
        .delay(3),
        u64::MAX
    );
});

both_backends!(status_queries_page_by_type_and_state, |store| {
    let lib = store.library();
    for i in 0..5 {
        lib.write(original(&format!("P{i}"), "1.00"), "maker", i)
            .await
            .unwrap();
    }
    lib.send(&key("P2"), Leg::Original, "signer", 10)
        .await
        .unwrap();
    let mut after = 0;
    let mut seen = Vec::new();
    loop {
        let page = lib
            .by_status("5201", Leg::Original, Exchange::NotSent, after, 2)
            .await
            .unwrap();
        seen.extend(page.items.iter().map(|r| r.key.voucher_no.clone()));
        match page.next {
            Some(next) => after = next,
            None => break,
        }
    }
    assert_eq!(seen, ["P0", "P1", "P3", "P4"]);
    let sent = lib
        .by_status("5201", Leg::Original, Exchange::NotReceived, 0, 100)
        .await
        .unwrap();
    assert_eq!(sent.items.len(), 1);
    assert_eq!(sent.items[0].key.voucher_no, "P2");
    assert!(
        lib.by_status("5106", Leg::Original, Exchange::NotSent, 0, 100)
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert!(matches!(
        lib.by_status("5201", Leg::Original, Exchange::NotSent, 0, 101)
            .await,
        Err(LibraryError::InvalidArgument(_))
    ));
});

/// The event log refuses to be rewritten (checked on the SQLite file directly; the
/// PostgreSQL trigger is the same rule).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_log_is_append_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("guoku.db");
    let store = Store::open_sqlite(guoku_store::SqliteConfig::new(&path))
        .await
        .unwrap();
    store
        .library()
        .write(original("A1", "1.00"), "maker", 1)
        .await
        .unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    let count = |conn: &rusqlite::Connection| -> i64 {
        conn.query_row("SELECT COUNT(*) FROM library_events", [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(count(&conn), 1);
    assert!(
        conn.execute("UPDATE library_events SET actor = 'x'", [])
            .is_err()
    );
    assert!(conn.execute("DELETE FROM library_events", []).is_err());
    assert_eq!(count(&conn), 1);
}

// Many writers at once: on SQLite their jobs reach the writer thread together and are
// committed as groups; a job that fails inside a group (a key stored with other content) must
// undo only itself, and every caller must be answered with its own outcome.
both_backends!(concurrent_writes_fail_alone_and_succeed_together, |store| {
    let lib = store.library();
    // Ten vouchers stored first; their keys are then written again with other content.
    for i in 0..10 {
        lib.write(original(&format!("G{i}"), "1.00"), "maker", 1_000)
            .await
            .unwrap();
    }
    let mut tasks = Vec::new();
    for i in 0..200 {
        let lib = store.library();
        tasks.push(tokio::spawn(async move {
            let (no, amount) = if i % 20 == 0 {
                (format!("G{}", i / 20), "2.00") // conflicts with a stored voucher
            } else {
                (format!("N{i}"), "3.00")
            };
            let written = lib.write(original(&no, amount), "maker", 1_001).await;
            (no, written.map(|s| s.record.content_sha256))
        }));
    }
    let mut ok = 0;
    for task in tasks {
        let (no, written) = task.await.unwrap();
        if no.starts_with('G') {
            assert!(written.is_err(), "{no} with other content must be refused");
        } else {
            written.unwrap();
            ok += 1;
        }
    }
    assert_eq!(ok, 190);
    // Everything answered as written is there, with exactly one creation event each; the
    // refused rewrites changed nothing.
    for i in 0..200 {
        if i % 20 == 0 {
            continue;
        }
        let no = format!("N{i}");
        let stored = lib.status(&key(&no), Leg::Original).await.unwrap();
        assert!(
            stored.is_some(),
            "{no} was answered as written but is missing"
        );
        assert_eq!(events(store, &no, Leg::Original).await.len(), 1, "{no}");
    }
    for i in 0..10 {
        let no = format!("G{i}");
        let stored = lib.status(&key(&no), Leg::Original).await.unwrap().unwrap();
        let first = original(&no, "1.00");
        assert_eq!(
            stored.content_sha256, first.content_sha256,
            "{no} keeps its first content"
        );
        // Its creation, and the refused attempt recorded as a conflict (invariant 5).
        let actions = events(store, &no, Leg::Original).await;
        assert_eq!(actions.len(), 2, "{no}: {actions:?}");
        assert_eq!(actions[1], "conflict", "{no}: {actions:?}");
    }
});

// 重新读取: a voucher read but not taken further is found again (once it is old enough), and
// only such vouchers; reading again changes nothing.
both_backends!(read_again_finds_what_a_failed_step_left_read, |store| {
    let lib = store.library();
    for (i, no) in ["A1", "A2", "A3"].iter().enumerate() {
        lib.receive(original(no, "1.00"), "inbox", 10 + i as u64)
            .await
            .unwrap();
    }
    assert!(
        lib.read_again(READ_MAX, 1_000, 0).await.unwrap().is_empty(),
        "nothing read yet"
    );
    assert_eq!(lib.read(READ_MAX, "worker", 20).await.unwrap().len(), 3);
    // A2 is taken further; A1 and A3 are left as a failed step leaves them.
    lib.acknowledge(&key("A2"), Leg::Original, "worker", 21)
        .await
        .unwrap();
    assert!(
        lib.read_again(READ_MAX, 19, 0).await.unwrap().is_empty(),
        "too recent"
    );
    let again: Vec<String> = lib
        .read_again(READ_MAX, 20, 0)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.key.voucher_no)
        .collect();
    assert_eq!(again, ["A1", "A3"]);
    let first = lib.read_again(1, 20, 0).await.unwrap();
    assert_eq!(first.len(), 1, "the limit holds");
    assert_eq!(first[0].key.voucher_no, "A1");
    // Going on from the last one found: the next turn is A3's, then nothing is left.
    let next = lib.read_again(1, 20, first[0].seq).await.unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].key.voucher_no, "A3");
    assert!(lib.read_again(1, 20, next[0].seq).await.unwrap().is_empty());
    assert!(lib.read_again(0, 20, 0).await.is_err());
    // Nothing changed: the same two are found again, and still read.
    let again = lib.read_again(READ_MAX, 20, 0).await.unwrap();
    assert_eq!(again.len(), 2);
    assert!(again.iter().all(|r| r.processing == Some(Processing::Read)));
    assert_eq!(events(store, "A1", Leg::Original).await.len(), 2);
});

// A process killed between two steps of a flow: the voucher is found again wherever it
// stopped on the normal path (not at 待补录 or an end), and the steps already taken pass
// through unchanged when the flow starts over, while a step out of order is still refused.
both_backends!(read_again_resumes_a_flow_cut_between_steps, |store| {
    let lib = store.library();
    for no in ["R1", "R2"] {
        lib.receive(original(no, "1.00"), "inbox", 10)
            .await
            .unwrap();
    }
    lib.read(READ_MAX, "worker", 11).await.unwrap();
    for no in ["R1", "R2"] {
        lib.acknowledge(&key(no), Leg::Original, "worker", 12)
            .await
            .unwrap();
        for event in [
            ProcessingEvent::StartValidation,
            ProcessingEvent::PassValidation,
            ProcessingEvent::Check,
        ] {
            lib.process(&key(no), Leg::Original, event, None, "worker", 12)
                .await
                .unwrap();
        }
    }
    // R2 reaches its end: approved, booked, sealed, receipt sent.
    for event in [
        ProcessingEvent::Approve,
        ProcessingEvent::Book,
        ProcessingEvent::Seal,
        ProcessingEvent::SendReceipt,
    ] {
        lib.process(&key("R2"), Leg::Original, event, None, "worker", 13)
            .await
            .unwrap();
    }
    let again: Vec<String> = lib
        .read_again(READ_MAX, 100, 0)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.key.voucher_no)
        .collect();
    assert_eq!(again, ["R1"], "R1 stopped at 审核 (40); R2 is done");
    // The flow starts over on R1: what it did passes, and it goes on.
    let before = events(store, "R1", Leg::Original).await.len();
    lib.acknowledge(&key("R1"), Leg::Original, "worker", 200)
        .await
        .unwrap();
    for event in [
        ProcessingEvent::StartValidation,
        ProcessingEvent::PassValidation,
        ProcessingEvent::Check,
    ] {
        let r = lib
            .process(&key("R1"), Leg::Original, event, None, "worker", 200)
            .await
            .unwrap();
        assert_eq!(r.processing, Some(Processing::Checked));
    }
    assert_eq!(
        events(store, "R1", Leg::Original).await.len(),
        before,
        "steps already taken write nothing"
    );
    let r = lib
        .process(
            &key("R1"),
            Leg::Original,
            ProcessingEvent::Approve,
            None,
            "worker",
            200,
        )
        .await
        .unwrap();
    assert_eq!(r.processing, Some(Processing::Approved));
    // Out of order is still refused: sealing before booking.
    assert!(
        lib.process(
            &key("R1"),
            Leg::Original,
            ProcessingEvent::Seal,
            None,
            "worker",
            201
        )
        .await
        .is_err()
    );
});

// A voucher written and never sent (the process died in between) is found, once old
// enough; a sent one is not.
both_backends!(unsent_finds_what_was_written_and_not_sent, |store| {
    let lib = store.library();
    lib.write(original("U1", "1.00"), "maker", 10)
        .await
        .unwrap();
    lib.write(original("U2", "1.00"), "maker", 10)
        .await
        .unwrap();
    lib.send(&key("U2"), Leg::Original, "maker", 11)
        .await
        .unwrap();
    assert!(
        lib.unsent(READ_MAX, 9).await.unwrap().is_empty(),
        "too recent"
    );
    let unsent: Vec<String> = lib
        .unsent(READ_MAX, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.key.voucher_no)
        .collect();
    assert_eq!(unsent, ["U1"]);
    assert!(lib.unsent(0, 100).await.is_err());
});

// The grouped counts /metrics reads: by type, leg, state and direction, unread ones apart;
// the outbox's due and waiting entries.
both_backends!(counts_group_every_leg_and_the_outbox, |store| {
    let lib = store.library();
    assert!(lib.counts().await.unwrap().is_empty());
    lib.write(original("C1", "1.00"), "maker", 10)
        .await
        .unwrap();
    lib.write(original("C2", "1.00"), "maker", 10)
        .await
        .unwrap();
    lib.send(&key("C1"), Leg::Original, "maker", 11)
        .await
        .unwrap();
    lib.receive(original("C3", "1.00"), "inbox", 12)
        .await
        .unwrap();
    lib.receive(original("C4", "1.00"), "inbox", 12)
        .await
        .unwrap();
    assert_eq!(lib.read(1, "worker", 13).await.unwrap().len(), 1);
    let counts: Vec<(Exchange, Direction, u64, u64)> = lib
        .counts()
        .await
        .unwrap()
        .into_iter()
        .map(|c| {
            assert_eq!((c.vt_code.as_str(), c.leg), ("5201", Leg::Original));
            (c.exchange, c.direction, c.legs, c.unread)
        })
        .collect();
    let expected = [
        (Exchange::NotSent, Direction::Sent, 1, 0),
        (Exchange::NotReceived, Direction::Sent, 1, 0),
        (Exchange::Received, Direction::Received, 2, 1),
    ];
    for want in expected {
        assert!(counts.contains(&want), "{want:?} in {counts:?}");
    }
    assert_eq!(counts.len(), expected.len(), "{counts:?}");
    let (due, all) = lib.outbox_counts(11).await.unwrap();
    assert_eq!((due, all), (1, 1));
});

// What the worker asks after a crash is served by the partial indexes of migration 0009,
// not by reading the whole library (the queries' WHERE, as `read_again` and `unsent` run
// them).
both_raw!(resume_queries_use_their_partial_indexes, |_store, t| {
    let queries = [
        (
            "library_vouchers_resume",
            "SELECT seq FROM library_vouchers WHERE direction = 'received' \
             AND (processing IN (10, 15, 17, 20, 40, 50) \
                  OR (leg = 0 AND processing IN (71, 73))) \
             AND updated_at <= 100 AND seq > 0 ORDER BY seq LIMIT 10",
        ),
        (
            "library_vouchers_unsent",
            "SELECT seq FROM library_vouchers WHERE direction = 'sent' \
             AND ((leg = 0 AND exchange = 13) OR (leg = 1 AND exchange = 14)) \
             AND updated_at <= 100 ORDER BY seq LIMIT 10",
        ),
    ];
    for (index, sql) in queries {
        let plan = t.plan(sql).await.unwrap();
        assert!(plan.contains(index), "{index} unused:\n{plan}");
    }
});
