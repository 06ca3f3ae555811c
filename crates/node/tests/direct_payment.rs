//! Direct payment end to end (DOMAIN §3.2): finance consumes its direct quota and issues a
//! stamped 5201, the outbox delivers it to the agent bank, the bank pays first and returns a
//! sealed receipt, finance books it. A payment above the remaining quota is refused before
//! anything is written or sent. In-memory network, SQLite in temporary directories, no
//! sleeping.

use guoku_domain::Amount;
use guoku_node::flows::direct::{
    Bank, DirectError, PayOutcome, ReceiptOutcome, Route, book_receipts, issue, pay_received,
    payment_amount,
};
use guoku_node::outbox::{OutboxReport, deliver_due};
use guoku_node::stamping::{Verification, type_of, verify};
use guoku_seal::Suite;
use guoku_seal::pki::{Post, RevocationPolicy};
use guoku_seal::voucher::{Signer, StampKind, TrustContext};
use guoku_store::Store;
use guoku_store::books::{AccountKind, BookAccount, BookOp, IndicatorKey, Refusal, Tenant};
use guoku_voucher::lifecycle::{Exchange, Leg, Processing};
use guoku_voucher::{Registry, VoucherFlag};

mod common;
use common::*;

/// Finance's books: an indicator with a monthly plan of `plan` for the voucher's unit.
async fn finance_books(store: &Store, key: &IndicatorKey, plan: Amount, now: u64) {
    create(
        store,
        vec![
            BookAccount::budget_source(key.tenant),
            BookAccount::indicator(key),
            BookAccount::plan(key, MONTH).unwrap(),
            BookAccount::plan_used(key, MONTH).unwrap(),
        ],
    )
    .await;
    let ops = [
        BookOp::approve_indicator(1, key, plan).unwrap(),
        BookOp::approve_plan(2, key, MONTH, plan).unwrap(),
    ];
    apply(store, now, &ops).await;
}

/// The bank's money books for direct payments.
async fn bank_books(store: &Store, tenant: Tenant) {
    create(
        store,
        vec![
            BookAccount::advance(tenant),
            BookAccount::finance_zba(tenant),
            BookAccount::payees(tenant),
        ],
    )
    .await;
}

#[tokio::test]
async fn a_direct_payment_runs_end_to_end() {
    let pki = Pki::new("测试根CA");
    let registry = Registry::builtin();
    let mut nodes = Nodes::new(Backend::Sqlite);
    let (bank_store, bank_transport) = nodes.join(&pki, "bank", bank_peer()).await;
    let (finance_store, finance_transport) = nodes.join(&pki, "finance", finance_peer()).await;
    let now = unix_now(&pki);

    let body = signed_5201(&pki, &registry, 1);
    let key = body.voucher.key();
    let amount = payment_amount(&body.voucher).unwrap();
    let indicator = indicator_of(&body.voucher);
    let tenant = indicator.tenant;
    let plan = amount.checked_add(fen(10_000)).unwrap();
    finance_books(&finance_store, &indicator, plan, now).await;
    bank_books(&bank_store, tenant).await;

    // 1. Finance consumes the quota, writes and sends; the outbox delivers.
    let route = Route {
        me: FINANCE_CODE,
        to: BANK_CODE,
        actor: "clerk",
    };
    let record = issue(
        &finance_store,
        &registry,
        &indicator,
        MONTH,
        &body,
        route,
        now,
    )
    .await
    .unwrap();
    assert_eq!(record.exchange, Exchange::NotReceived);
    assert_eq!(
        quota(&finance_store, AccountKind::PlanUsed, tenant).await.0,
        fen_of(amount),
        "quota used equals the amount"
    );
    assert_eq!(
        quota(&finance_store, AccountKind::Plan, tenant).await.1,
        10_000
    );
    let sent = deliver_due(&finance_store, &finance_transport, now, 10, BACKOFF)
        .await
        .unwrap();
    assert_eq!(sent.delivered, 1, "{sent:?}");

    // 2. The bank pays first and returns the sealed receipt.
    let bank_org = bank();
    let bank_signer = pki.person(&bank_org, Post::Signer, "赵六");
    let bank_seal = pki.seal(&bank_org, StampKind::Zqz, "转讫章", &bank_signer);
    let sealer = Signer::Seal {
        seal: &bank_seal,
        key: &bank_signer.key,
        certificate: &bank_signer.cert,
        time: pki.now,
    };
    let teller = Bank {
        me: BANK_CODE,
        actor: "teller",
        pay_date: "20250115".parse().unwrap(),
        serial_prefix: "ICBC",
        suite: Suite::Sm,
        sealer: &sealer,
    };
    let paid = pay_received(&bank_store, &registry, &teller, 100, now)
        .await
        .unwrap();
    assert_eq!(paid.len(), 1, "{paid:?}");
    match &paid[0] {
        PayOutcome::Paid { key: k, amount: a } => {
            assert_eq!(k, &key);
            assert_eq!(*a, amount);
        }
        other => panic!("not paid: {other:?}"),
    }
    let at_bank = bank_store
        .library()
        .status(&key, Leg::Original)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(at_bank.exchange, Exchange::Acknowledged);
    assert_eq!(at_bank.processing, Some(Processing::ReceiptSent));
    // The books: advance fronted it, the ZBA is back at zero, the payee has it.
    let a = fen_of(amount);
    assert_eq!(
        posted(&bank_store, &BookAccount::advance(tenant)).await,
        (a, 0)
    );
    assert_eq!(
        posted(&bank_store, &BookAccount::finance_zba(tenant)).await,
        (a, a)
    );
    assert_eq!(
        posted(&bank_store, &BookAccount::payees(tenant)).await,
        (0, a)
    );
    assert!(bank_store.nonzero_zbas(tenant).await.unwrap().is_empty());
    // A second run finds nothing new: nothing paid twice.
    assert!(
        pay_received(&bank_store, &registry, &teller, 100, now)
            .await
            .unwrap()
            .is_empty()
    );
    let back = deliver_due(&bank_store, &bank_transport, now, 10, BACKOFF)
        .await
        .unwrap();
    assert_eq!(back.delivered, 1, "{back:?}");

    // 3. Finance books the receipt.
    let booked = book_receipts(&finance_store, "clerk", 100, now)
        .await
        .unwrap();
    assert_eq!(booked.len(), 1, "{booked:?}");
    match &booked[0] {
        ReceiptOutcome::Done { key: k, paid } => {
            assert_eq!(k, &key);
            assert_eq!(*paid, amount);
        }
        other => panic!("not booked: {other:?}"),
    }
    let library = finance_store.library();
    let receipt = library.status(&key, Leg::Receipt).await.unwrap().unwrap();
    assert_eq!(receipt.processing, Some(Processing::Processed));
    let receipt_body = body_of(&receipt.body, VoucherFlag::Receipt);
    let h = &receipt_body.voucher.header;
    assert_eq!(h.get("XPayAmt"), Some(amount.to_string().as_str()));
    assert_eq!(h.get("XPayDate"), Some("20250115"));
    assert!(h.get("XAgentBusinessNo").unwrap().starts_with("ICBC"));
    for detail in &receipt_body.voucher.details {
        assert_eq!(detail.get("XPayAmt"), detail.get("PayAmt"));
    }
    let trust = TrustContext {
        anchor: &pki.root,
        intermediates: &[],
        crls: &[],
        revocation: RevocationPolicy::CheckIfPresent,
        now: pki.now,
    };
    let ty = type_of(&registry, &receipt_body.voucher).unwrap();
    let verification = verify(Suite::Sm, ty, &receipt_body, &trust).unwrap();
    assert!(matches!(verification, Verification::Receipt(_)));
    assert!(verification.is_complete_and_valid(), "{verification}");
    assert_eq!(library.status_code(&key, Leg::Original).await.unwrap(), 12);
    let original = library.status(&key, Leg::Original).await.unwrap().unwrap();
    assert_eq!(original.exchange, Exchange::ReceiptReceived);
}

#[tokio::test]
async fn a_payment_above_the_remaining_quota_is_refused_before_anything_is_written() {
    let pki = Pki::new("测试根CA");
    let registry = Registry::builtin();
    let mut nodes = Nodes::new(Backend::Sqlite);
    let (bank_store, _bank_transport) = nodes.join(&pki, "bank", bank_peer()).await;
    let (finance_store, finance_transport) = nodes.join(&pki, "finance", finance_peer()).await;
    let now = unix_now(&pki);

    let body = signed_5201(&pki, &registry, 1);
    let key = body.voucher.key();
    let amount = payment_amount(&body.voucher).unwrap();
    assert!(amount.fen() > 1);
    let indicator = indicator_of(&body.voucher);
    let tenant = indicator.tenant;
    // One fen short: some quota remains, not enough.
    let plan = amount.checked_sub(fen(1)).unwrap();
    finance_books(&finance_store, &indicator, plan, now).await;

    let route = Route {
        me: FINANCE_CODE,
        to: BANK_CODE,
        actor: "clerk",
    };
    let refused = issue(
        &finance_store,
        &registry,
        &indicator,
        MONTH,
        &body,
        route,
        now,
    )
    .await
    .unwrap_err();
    match refused {
        DirectError::Refused(Refusal::NotEnough { kind, .. }) => {
            assert_eq!(kind, AccountKind::Plan);
        }
        other => panic!("not refused for quota: {other:?}"),
    }
    // Nothing used, written, sent or delivered.
    assert_eq!(
        quota(&finance_store, AccountKind::Plan, tenant).await,
        (fen_of(plan), fen_of(plan))
    );
    assert_eq!(
        quota(&finance_store, AccountKind::PlanUsed, tenant).await.0,
        0
    );
    let library = finance_store.library();
    assert!(library.status(&key, Leg::Original).await.unwrap().is_none());
    assert!(library.due(now + 10_000, 10).await.unwrap().is_empty());
    let pass = deliver_due(&finance_store, &finance_transport, now, 10, BACKOFF)
        .await
        .unwrap();
    assert_eq!(pass, OutboxReport::default());
    assert!(
        bank_store
            .library()
            .status(&key, Leg::Original)
            .await
            .unwrap()
            .is_none()
    );
}
