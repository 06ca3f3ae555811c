//! Authorized payment end to end (DOMAIN §3.3): the budget unit sends a stamped 8202 paid
//! from its zero-balance account, the bank consumes the unit's plan quota, pays first and
//! returns a sealed receipt, the unit books it. A payment above the unit's remaining plan
//! quota is refused by the books (核算失败) and returned (退回) with their reason, moving no money. In-memory
//! network, SQLite in temporary directories, no sleeping.

use guoku_domain::Amount;
use guoku_node::flows::authorized::{UnitAccount, book_receipts, check_8202, issue, pay_received};
use guoku_node::flows::direct::{Bank, DirectError, PayOutcome, ReceiptOutcome, Route};
use guoku_node::outbox::deliver_due;
use guoku_node::stamping::{Verification, type_of, verify};
use guoku_seal::Suite;
use guoku_seal::pki::RevocationPolicy;
use guoku_seal::voucher::{Signer, StampKind, TrustContext};
use guoku_store::Store;
use guoku_store::books::{AccountKind, BookAccount, BookOp, Refusal, Tenant, UnitCode};
use guoku_voucher::lifecycle::{Exchange, Leg, Processing};
use guoku_voucher::{Registry, VoucherFlag};

mod common;
use common::*;

fn unit_account() -> UnitAccount<'static> {
    UNIT_ACCOUNTS[0]
}

/// The bank's books: the unit's plan quota for `month` from a quota notice of `quota`, and
/// the money accounts of authorized payments.
async fn bank_books(store: &Store, tenant: Tenant, unit: &UnitCode, month: u8, quota: Amount) {
    create(
        store,
        vec![
            BookAccount::quota_notice_source(tenant),
            BookAccount::unit_quota(tenant, unit, month).unwrap(),
            BookAccount::unit_quota_used(tenant, unit, month).unwrap(),
            BookAccount::advance(tenant),
            BookAccount::unit_zba(tenant, unit),
            BookAccount::payees(tenant),
        ],
    )
    .await;
    let op = BookOp::notice_unit_quota(1, tenant, unit, month, quota).unwrap();
    apply(store, 0, &[op]).await;
}

fn bank_run<'a>(sealer: &'a Signer<'a>) -> Bank<'a> {
    Bank {
        me: BANK_CODE,
        actor: "teller",
        pay_date: "20250115".parse().unwrap(),
        serial_prefix: "ICBC",
        suite: Suite::Sm,
        sealer,
    }
}

fn route() -> Route<'static> {
    Route {
        me: UNIT_CODE,
        to: BANK_CODE,
        actor: "cashier",
    }
}

#[tokio::test]
async fn an_authorized_payment_runs_end_to_end() {
    let pki = Pki::new("测试根CA");
    let registry = Registry::builtin();
    let mut nodes = Nodes::new(Backend::Sqlite);
    let (bank_store, bank_transport) = nodes.join(&pki, "bank", bank_peer()).await;
    let (unit_store, unit_transport) = nodes.join(&pki, "unit", unit_peer()).await;
    let now = unix_now(&pki);

    let body = signed_8202(&pki, &registry, 1);
    let key = body.voucher.key();
    let asked = check_8202(&body.voucher).unwrap();
    let amount = asked.amount;
    let tenant = asked.tenant;
    assert_eq!(asked.month, 1);
    let plan = amount.checked_add(fen(10_000)).unwrap();
    bank_books(&bank_store, tenant, &asked.unit, asked.month, plan).await;

    // 1. The unit writes and sends; the outbox delivers.
    let record = issue(&unit_store, &registry, unit_account(), &body, route(), now)
        .await
        .unwrap();
    assert_eq!(record.exchange, Exchange::NotReceived);
    let sent = deliver_due(&unit_store, &unit_transport, now, 10, BACKOFF)
        .await
        .unwrap();
    assert_eq!(sent.delivered, 1, "{sent:?}");

    // 2. The bank consumes the plan quota, pays first and returns the sealed receipt.
    let teller = SealHolder::new(&pki, &bank(), StampKind::Zqz, "转讫章");
    let sealer = teller.signer(&pki);
    let run = bank_run(&sealer);
    let paid = pay_received(&bank_store, &registry, &run, UNIT_ACCOUNTS, 100, now)
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
    let a = fen_of(amount);
    assert_eq!(
        quota(&bank_store, AccountKind::UnitQuotaUsed, tenant)
            .await
            .0,
        a,
        "plan quota used equals the amount"
    );
    assert_eq!(
        quota(&bank_store, AccountKind::UnitQuota, tenant).await,
        (fen_of(plan), 10_000)
    );
    assert_eq!(
        posted(&bank_store, &BookAccount::advance(tenant)).await,
        (a, 0)
    );
    assert_eq!(
        posted(&bank_store, &BookAccount::unit_zba(tenant, &asked.unit)).await,
        (a, a)
    );
    assert_eq!(
        posted(&bank_store, &BookAccount::payees(tenant)).await,
        (0, a)
    );
    assert!(bank_store.nonzero_zbas(tenant).await.unwrap().is_empty());
    // A second run finds nothing new: nothing paid twice.
    assert!(
        pay_received(&bank_store, &registry, &run, UNIT_ACCOUNTS, 100, now)
            .await
            .unwrap()
            .is_empty()
    );
    let back = deliver_due(&bank_store, &bank_transport, now, 10, BACKOFF)
        .await
        .unwrap();
    assert_eq!(back.delivered, 1, "{back:?}");

    // 3. The unit books the receipt.
    let booked = book_receipts(&unit_store, "cashier", 100, now)
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
    let library = unit_store.library();
    let receipt = library.status(&key, Leg::Receipt).await.unwrap().unwrap();
    assert_eq!(receipt.processing, Some(Processing::Processed));
    let receipt_body = body_of(&receipt.body, VoucherFlag::Receipt);
    let h = &receipt_body.voucher.header;
    assert_eq!(h.get("XPayAmt"), Some(amount.to_string().as_str()));
    assert_eq!(h.get("XPayDate"), Some("20250115"));
    assert!(h.get("XAgentBusinessNo").unwrap().starts_with("ICBC"));
    assert_eq!(h.get("XPayeeAcctNo"), h.get("PayeeAcctNo"));
    assert_eq!(h.get("PayAcctNo"), Some(UNIT_ZBA));
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
async fn a_payment_above_the_remaining_plan_quota_fails_booking_and_moves_no_money() {
    let pki = Pki::new("测试根CA");
    let registry = Registry::builtin();
    let mut nodes = Nodes::new(Backend::Sqlite);
    let (bank_store, _bank_transport) = nodes.join(&pki, "bank", bank_peer()).await;
    let (unit_store, unit_transport) = nodes.join(&pki, "unit", unit_peer()).await;
    let now = unix_now(&pki);

    let body = signed_8202(&pki, &registry, 1);
    let key = body.voucher.key();
    let asked = check_8202(&body.voucher).unwrap();
    let amount = asked.amount;
    let tenant = asked.tenant;
    assert!(amount.fen() > 1);
    // One fen short: some quota remains, not enough.
    let plan = amount.checked_sub(fen(1)).unwrap();
    bank_books(&bank_store, tenant, &asked.unit, asked.month, plan).await;

    issue(&unit_store, &registry, unit_account(), &body, route(), now)
        .await
        .unwrap();
    let sent = deliver_due(&unit_store, &unit_transport, now, 10, BACKOFF)
        .await
        .unwrap();
    assert_eq!(sent.delivered, 1, "{sent:?}");

    let teller = SealHolder::new(&pki, &bank(), StampKind::Zqz, "转讫章");
    let sealer = teller.signer(&pki);
    let run = bank_run(&sealer);
    let outcomes = pay_received(&bank_store, &registry, &run, UNIT_ACCOUNTS, 100, now)
        .await
        .unwrap();
    assert_eq!(outcomes.len(), 1, "{outcomes:?}");
    let expected = DirectError::Refused(Refusal::NotEnough {
        kind: AccountKind::UnitQuota,
        key: BookAccount::unit_quota(tenant, &asked.unit, asked.month)
            .unwrap()
            .label
            .canonical(),
    })
    .to_string();
    let reason = match &outcomes[0] {
        PayOutcome::Failed { key: k, reason } => {
            assert_eq!(k, &key);
            reason.clone()
        }
        other => panic!("not refused: {other:?}"),
    };
    assert_eq!(reason, expected);
    let library = bank_store.library();
    let at_bank = library.status(&key, Leg::Original).await.unwrap().unwrap();
    // Refused by the books (核算失败), then returned (退回) to the unit with the reason.
    assert_eq!(at_bank.exchange, Exchange::Returned);
    assert_eq!(at_bank.processing, Some(Processing::Returned));
    assert_eq!(at_bank.reason.as_deref(), Some(expected.as_str()));
    let steps: Vec<String> = library
        .events(&key, Leg::Original)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert!(
        steps.iter().any(|a| a.contains("FailBooking")),
        "the booking failure is on record: {steps:?}"
    );
    // Nothing used, fronted or paid; no receipt written or sent.
    assert_eq!(
        quota(&bank_store, AccountKind::UnitQuota, tenant).await,
        (fen_of(plan), fen_of(plan))
    );
    assert_eq!(
        quota(&bank_store, AccountKind::UnitQuotaUsed, tenant)
            .await
            .0,
        0
    );
    for account in [
        BookAccount::advance(tenant),
        BookAccount::unit_zba(tenant, &asked.unit),
        BookAccount::payees(tenant),
    ] {
        assert_eq!(posted(&bank_store, &account).await, (0, 0));
    }
    assert!(library.status(&key, Leg::Receipt).await.unwrap().is_none());
    assert!(library.due(now + 10_000, 10).await.unwrap().is_empty());
    assert!(
        unit_store
            .library()
            .status(&key, Leg::Receipt)
            .await
            .unwrap()
            .is_none()
    );
}
