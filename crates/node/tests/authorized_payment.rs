//! Authorized payment end to end (DOMAIN §3.3): the budget unit sends a stamped 8202 paid
//! from its zero-balance account, the bank consumes the unit's plan quota, pays first and
//! returns a sealed receipt, the unit books it. A payment above the unit's remaining plan
//! quota is refused by the books (核算失败) and returned (退回) with their reason, moving no money. In-memory
//! network, SQLite in temporary directories, no sleeping.

use std::sync::Arc;

use guoku_domain::{Amount, BizDate};
use guoku_node::exchange::{ExchangeState, InMemory, InMemoryNetwork, Peer, ReceiveLimits, app};
use guoku_node::flows::authorized::{
    UnitAccount, VT_8202, book_receipts, check_8202, issue, pay_received,
};
use guoku_node::flows::direct::{Bank, DirectError, PayOutcome, ReceiptOutcome, Route};
use guoku_node::outbox::deliver_due;
use guoku_node::stamping::{Verification, stamp_next, type_of, verify};
use guoku_seal::Suite;
use guoku_seal::pki::{OrgRole, Organisation, Post, RevocationPolicy};
use guoku_seal::voucher::{Signer, StampKind, TrustContext};
use guoku_store::books::{AccountKind, BookAccount, BookFilter, BookOp, Refusal, Tenant, UnitCode};
use guoku_store::library::Backoff;
use guoku_store::{SqliteConfig, Store};
use guoku_voucher::lifecycle::{Exchange, Leg, Processing};
use guoku_voucher::sample::{Style, sample};
use guoku_voucher::{EnvelopeBody, Limits, Registry, VoucherFlag, parse_envelope};

mod common;
use common::*;

const BACKOFF: Backoff = Backoff { base: 30, cap: 600 };
const UNIT_CODE: &str = "A43000101";
const UNIT_ZBA: &str = "1901-430001010001";
const ACCOUNTS: &[UnitAccount<'static>] = &[UnitAccount {
    unit: UNIT_CODE,
    acct_no: UNIT_ZBA,
}];

fn fen(n: i64) -> Amount {
    Amount::from_fen(n).unwrap()
}

fn fen_of(amount: Amount) -> u128 {
    u128::from(amount.fen().unsigned_abs())
}

fn t0(pki: &Pki) -> u64 {
    u64::try_from(pki.now.unix_timestamp()).unwrap()
}

fn unit() -> Organisation {
    org(OrgRole::BudgetUnit, UNIT_CODE, "湖南省教育厅")
}

fn unit_peer() -> Peer {
    Peer {
        role: OrgRole::BudgetUnit,
        org_code: UNIT_CODE.into(),
    }
}

fn unit_account() -> UnitAccount<'static> {
    ACCOUNTS[0]
}

/// An 8202 of the unit, from its zero-balance account, stamped by the unit's maker,
/// checker and finance seal.
fn signed_8202(pki: &Pki, registry: &Registry, n: u64) -> EnvelopeBody {
    let unit = unit();
    let maker = pki.person(&unit, Post::Maker, "张三");
    let checker = pki.person(&unit, Post::Checker, "李四");
    let signer = pki.person(&unit, Post::Signer, "王五");
    let seal = pki.seal(&unit, StampKind::Ywzyz, "单位财务专用章", &signer);
    let ty = registry.get(VT_8202).unwrap();
    let today: BizDate = "20250115".parse().unwrap();
    let mut body = EnvelopeBody {
        flag: VoucherFlag::Original,
        attach: "SUCCESS".into(),
        voucher: sample(ty, today, VoucherFlag::Original, Style::Plain, n),
        signatures: Vec::new(),
    };
    body.voucher.header.set("PayTypeCode", "12");
    body.voucher.header.set("AgencyCode", UNIT_CODE);
    body.voucher.header.set("PayAcctNo", UNIT_ZBA);
    stamp_next(Suite::Sm, ty, &mut body, &sign(&maker)).unwrap();
    stamp_next(Suite::Sm, ty, &mut body, &sign(&checker)).unwrap();
    let sealer = Signer::Seal {
        seal: &seal,
        key: &signer.key,
        certificate: &signer.cert,
        time: pki.now,
    };
    stamp_next(Suite::Sm, ty, &mut body, &sealer).unwrap();
    body
}

/// The unit's node: its library receiving on SQLite in `dir`, and its transport.
async fn unit_node(
    pki: &Pki,
    dir: &tempfile::TempDir,
    network: &InMemoryNetwork,
) -> (Store, InMemory) {
    let store = Store::open_sqlite(SqliteConfig::new(dir.path().join("unit.db")))
        .await
        .unwrap();
    let now = pki.now;
    let state = ExchangeState::new(
        unit_peer(),
        Suite::Sm,
        Registry::builtin(),
        pki.voucher_trust(),
        store.clone(),
        Arc::new(move || now),
        ReceiveLimits::default(),
    );
    network.register(UNIT_CODE, app(state));
    (store, InMemory::new(network.clone(), unit_peer()))
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
    for outcome in store.apply_book_ops(0, &[op]).await.unwrap() {
        outcome.unwrap();
    }
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

struct Teller {
    signer: Holder,
    seal: guoku_seal::ses::Seal,
}

impl Teller {
    fn new(pki: &Pki) -> Self {
        let bank_org = bank();
        let signer = pki.person(&bank_org, Post::Signer, "赵六");
        let seal = pki.seal(&bank_org, StampKind::Zqz, "转讫章", &signer);
        Self { signer, seal }
    }

    fn sealer<'a>(&'a self, pki: &Pki) -> Signer<'a> {
        Signer::Seal {
            seal: &self.seal,
            key: &self.signer.key,
            certificate: &self.signer.cert,
            time: pki.now,
        }
    }
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
    let dir = tempfile::tempdir().unwrap();
    let network = InMemoryNetwork::new();
    let (bank_state, bank_store) = bank_node(&pki, &dir).await;
    network.register(BANK_CODE, app(bank_state));
    let bank_transport = InMemory::new(network.clone(), bank_peer());
    let (unit_store, unit_transport) = unit_node(&pki, &dir, &network).await;
    let now = t0(&pki);

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
    let teller = Teller::new(&pki);
    let sealer = teller.sealer(&pki);
    let run = bank_run(&sealer);
    let paid = pay_received(&bank_store, &registry, &run, ACCOUNTS, 100, now)
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
        pay_received(&bank_store, &registry, &run, ACCOUNTS, 100, now)
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
    let dir = tempfile::tempdir().unwrap();
    let network = InMemoryNetwork::new();
    let (bank_state, bank_store) = bank_node(&pki, &dir).await;
    network.register(BANK_CODE, app(bank_state));
    let (unit_store, unit_transport) = unit_node(&pki, &dir, &network).await;
    let now = t0(&pki);

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

    let teller = Teller::new(&pki);
    let sealer = teller.sealer(&pki);
    let run = bank_run(&sealer);
    let outcomes = pay_received(&bank_store, &registry, &run, ACCOUNTS, 100, now)
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
