//! Direct payment end to end (DOMAIN §3.2): finance consumes its direct quota and issues a
//! stamped 5201, the outbox delivers it to the agent bank, the bank pays first and returns a
//! sealed receipt, finance books it. A payment above the remaining quota is refused before
//! anything is written or sent. In-memory network, SQLite in temporary directories, no
//! sleeping.

use std::sync::Arc;

use guoku_domain::{Amount, PayType};
use guoku_node::exchange::{ExchangeState, InMemory, InMemoryNetwork, ReceiveLimits, app};
use guoku_node::flows::direct::{
    Bank, DirectError, PayOutcome, ReceiptOutcome, Route, book_receipts, issue, pay_received,
    payment_amount, tenant_of,
};
use guoku_node::outbox::{OutboxReport, deliver_due};
use guoku_node::stamping::{Verification, type_of, verify};
use guoku_seal::Suite;
use guoku_seal::pki::{Post, RevocationPolicy};
use guoku_seal::voucher::{Signer, StampKind, TrustContext};
use guoku_store::books::{
    AccountKind, BookAccount, BookFilter, BookOp, IndicatorKey, Refusal, Tenant,
};
use guoku_store::library::Backoff;
use guoku_store::{SqliteConfig, Store};
use guoku_voucher::lifecycle::{Exchange, Leg, Processing};
use guoku_voucher::{EnvelopeBody, Limits, Registry, Voucher, VoucherFlag, parse_envelope};

mod common;
use common::*;

const BACKOFF: Backoff = Backoff { base: 30, cap: 600 };
const MONTH: u8 = 1;

fn fen(n: i64) -> Amount {
    Amount::from_fen(n).unwrap()
}

fn t0(pki: &Pki) -> u64 {
    u64::try_from(pki.now.unix_timestamp()).unwrap()
}

/// Finance's node: its library receiving on SQLite in `dir`, and its transport.
async fn finance_node(
    pki: &Pki,
    dir: &tempfile::TempDir,
    network: &InMemoryNetwork,
) -> (Store, InMemory) {
    let store = Store::open_sqlite(SqliteConfig::new(dir.path().join("finance.db")))
        .await
        .unwrap();
    let now = pki.now;
    let state = ExchangeState::new(
        finance_peer(),
        Suite::Sm,
        Registry::builtin(),
        pki.voucher_trust(),
        store.clone(),
        Arc::new(move || now),
        ReceiveLimits::default(),
    );
    network.register(FINANCE_CODE, app(state));
    (store, InMemory::new(network.clone(), finance_peer()))
}

/// The direct indicator the voucher pays from.
fn indicator_of(voucher: &Voucher) -> IndicatorKey {
    let h = &voucher.header;
    IndicatorKey {
        tenant: tenant_of(&voucher.key()).unwrap(),
        unit: h.get("AgencyCode").unwrap().parse().unwrap(),
        func: h.get("ExpFuncCode").unwrap().parse().unwrap(),
        eco: "30201".parse().unwrap(),
        fund: h.get("FundTypeCode").unwrap().parse().unwrap(),
        pay: PayType::Direct,
    }
}

async fn create(store: &Store, accounts: Vec<BookAccount>) {
    let results = store.create_book_accounts(accounts).await.unwrap();
    assert!(
        results
            .iter()
            .all(|r| *r == guoku_ledger::CreateAccountResult::Ok),
        "{results:?}"
    );
}

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
    for outcome in store.apply_book_ops(now, &ops).await.unwrap() {
        outcome.unwrap();
    }
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

/// Quota (granted, remaining) over the accounts of `kind`.
async fn quota(store: &Store, kind: AccountKind, tenant: Tenant) -> (u128, u128) {
    let s = store
        .quota_summary(BookFilter::all(kind, tenant))
        .await
        .unwrap();
    (s.granted, s.remaining)
}

/// (debits, credits) posted on a book account.
async fn posted(store: &Store, account: &BookAccount) -> (u128, u128) {
    let a = store.account(account.id()).await.unwrap().unwrap();
    (a.debits_posted, a.credits_posted)
}

fn body_of(bytes: &[u8], flag: VoucherFlag) -> EnvelopeBody {
    let (envelope, _) = parse_envelope(bytes, &Limits::default()).unwrap();
    envelope
        .bodies
        .into_iter()
        .find(|b| b.flag == flag)
        .unwrap()
}

fn fen_of(amount: Amount) -> u128 {
    u128::from(amount.fen().unsigned_abs())
}

#[tokio::test]
async fn a_direct_payment_runs_end_to_end() {
    let pki = Pki::new("测试根CA");
    let registry = Registry::builtin();
    let dir = tempfile::tempdir().unwrap();
    let network = InMemoryNetwork::new();
    let (bank_state, bank_store) = bank_node(&pki, &dir).await;
    network.register(BANK_CODE, app(bank_state));
    let bank_transport = InMemory::new(network.clone(), bank_peer());
    let (finance_store, finance_transport) = finance_node(&pki, &dir, &network).await;
    let now = t0(&pki);

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
    let dir = tempfile::tempdir().unwrap();
    let network = InMemoryNetwork::new();
    let (bank_state, bank_store) = bank_node(&pki, &dir).await;
    network.register(BANK_CODE, app(bank_state));
    let (finance_store, finance_transport) = finance_node(&pki, &dir, &network).await;
    let now = t0(&pki);

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
