//! Seeding and reading a party's books and library: amounts, book accounts, the indicator
//! and clearing-quota keys a payment voucher books against, and envelopes' bodies.

use guoku_domain::{Amount, BankNo, BizDate, PayType};
use guoku_node::flows::direct::tenant_of;
use guoku_store::Store;
use guoku_store::books::{
    AccountKind, BookAccount, BookFilter, BookOp, ClearingKey, IndicatorKey, Tenant,
};
use guoku_store::library::{Backoff, VoucherRecord};
use guoku_voucher::lifecycle::Leg;
use guoku_voucher::{EnvelopeBody, Limits, Voucher, VoucherFlag, VoucherKey, parse_envelope};

use super::BANK_CODE;

/// The outbox's retry backoff in the tests.
pub const BACKOFF: Backoff = Backoff { base: 30, cap: 600 };
/// The plan month of the sample vouchers (dated in January).
pub const MONTH: u8 = 1;

/// The business date of the sample vouchers.
pub fn today() -> BizDate {
    "20250115".parse().unwrap()
}

pub fn fen(n: i64) -> Amount {
    Amount::from_fen(n).unwrap()
}

pub fn fen_of(amount: Amount) -> u128 {
    u128::from(amount.fen().unsigned_abs())
}

/// The body of `flag` in an envelope.
pub fn body_of(bytes: &[u8], flag: VoucherFlag) -> EnvelopeBody {
    let (envelope, _) = parse_envelope(bytes, &Limits::default()).unwrap();
    envelope
        .bodies
        .into_iter()
        .find(|b| b.flag == flag)
        .unwrap()
}

/// Creates the book accounts; each must be new.
pub async fn create(store: &Store, accounts: Vec<BookAccount>) {
    let results = store.create_book_accounts(accounts).await.unwrap();
    assert!(
        results
            .iter()
            .all(|r| *r == guoku_ledger::CreateAccountResult::Ok),
        "{results:?}"
    );
}

/// Creates those of the book accounts the store does not have yet.
pub async fn create_missing(store: &Store, accounts: Vec<BookAccount>) {
    let mut missing = Vec::new();
    for a in accounts {
        if store.account(a.id()).await.unwrap().is_none() && !missing.contains(&a) {
            missing.push(a);
        }
    }
    if missing.is_empty() {
        return;
    }
    create(store, missing).await;
}

/// Applies book operations; each must succeed.
pub async fn apply(store: &Store, now: u64, ops: &[BookOp]) {
    for outcome in store.apply_book_ops(now, ops).await.unwrap() {
        outcome.unwrap();
    }
}

/// The direct indicator a payment voucher pays from.
pub fn indicator_of(voucher: &Voucher) -> IndicatorKey {
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

/// The clearing quota a direct payment voucher is cleared against at PBOC.
pub fn clearing_key(voucher: &Voucher) -> ClearingKey {
    clearing_key_of(voucher, PayType::Direct)
}

/// The clearing quota a payment voucher of `pay` is cleared against at PBOC.
pub fn clearing_key_of(voucher: &Voucher, pay: PayType) -> ClearingKey {
    let h = &voucher.header;
    ClearingKey {
        tenant: tenant_of(&voucher.key()).unwrap(),
        bank: BANK_CODE.parse::<BankNo>().unwrap(),
        unit: h.get("AgencyCode").unwrap().parse().unwrap(),
        func: h.get("ExpFuncCode").unwrap().parse().unwrap(),
        fund: h.get("FundTypeCode").unwrap().parse().unwrap(),
        pay,
    }
}

/// Quota (granted, remaining) over the accounts of `kind`.
pub async fn quota(store: &Store, kind: AccountKind, tenant: Tenant) -> (u128, u128) {
    let s = store
        .quota_summary(BookFilter::all(kind, tenant))
        .await
        .unwrap();
    (s.granted, s.remaining)
}

/// (debits, credits) posted on a book account.
pub async fn posted(store: &Store, account: &BookAccount) -> (u128, u128) {
    let a = store.account(account.id()).await.unwrap().unwrap();
    (a.debits_posted, a.credits_posted)
}

/// A voucher's leg in the library.
pub async fn status(store: &Store, key: &VoucherKey, leg: Leg) -> Option<VoucherRecord> {
    store.library().status(key, leg).await.unwrap()
}
