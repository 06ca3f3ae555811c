//! The treasury's books mapped onto ledger accounts and transfers.
//!
//! The mapping is pure (no I/O): each business operation becomes a [`BookOp`], a linked
//! chain of transfers that applies all or nothing, and the engine's limit flags enforce "no
//! quota below zero". It lives in `store`, not in `ledger`, because it speaks the domain's
//! vocabulary (administrative divisions, budget classifications, bank numbers, from
//! `guoku-domain`) and needs the labels that the store keeps beside each account for
//! queries by level; the ledger stays a generic engine of `u128` ids and codes.
//!
//! # Ledgers
//! Each (AdmDivCode, year) has two ledgers in a party's store, one for money and one for
//! quota ([`Tenant::ledger`]), so every book sums to zero on its own and a transfer between
//! different divisions or years is refused by the engine (`AccountsMustHaveTheSameLedger`).
//!
//! # Books ("a → b" moves the amount from a's balance to b's; balance = credits − debits)
//! - **Finance, quota**: budget source → indicator (指标) → monthly plan (用款计划) →
//!   used. Indicators and plans carry `DEBITS_MUST_NOT_EXCEED_CREDITS`: a plan cannot be
//!   approved beyond its indicator, a payment cannot exceed the plan, and a negative
//!   adjustment cannot take either below what is already allotted or used. Returns and
//!   refunds move used → plan (`used` is limited too: nothing restores more than was used).
//! - **Bank, money**: a payment fronts money advance → zero-balance account → payees (the
//!   ZBA is back at zero at once); a clearing request moves the fronted amount into the
//!   receivable from PBOC (receivable → advance), and the PBOC receipt settles it
//!   (PBOC reserve → receivable). A refund comes back payees → ZBA and leaves by 2302
//!   (ZBA → PBOC reserve), so every ZBA ends the day at zero once clearing is done.
//! - **Bank, quota**: the quota notice (授权额度通知单) → each unit's monthly plan quota →
//!   used, limited like finance's plans; authorized payments (8202) consume it.
//! - **PBOC, money**: revenue → TSA (limited: it cannot pay out more than it holds) →
//!   each agent bank's clearing account.
//! - **PBOC, quota**: 5106/5108 notices → clearing quota per (bank, unit, function class,
//!   fund type, pay type) → cleared. A 2301 clearing request moves quota and money in one
//!   chain; with no quota row it is refused "no clearing quota", beyond it "超出清算范围".
//!   A 2302 refund (or the return of an accepted 2301) moves both back.

use std::fmt;
use std::str::FromStr;

use guoku_domain::{AdmDivCode, Amount, BankNo, EcoClass, FuncClass, FundType, PayType, StYear};
use guoku_ledger::{AccountFlags, CreateTransferResult, NewAccount, Transfer, TransferFlags};
use thiserror::Error;

use crate::{Store, StoreError};

/// One of a tenant's two ledgers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Book {
    /// Money in fen.
    Money,
    /// Quota (额度) in fen: what may still be spent.
    Quota,
}

/// An administrative division's books for one budget year.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Tenant {
    /// The administrative division.
    pub adm_div: AdmDivCode,
    /// The budget year.
    pub year: StYear,
}

impl Tenant {
    /// The ledger number of `book`: `((division × 1024 + (year − 1990)) × 2 + book)`,
    /// unique per (division, year, book) and below `u32::MAX` for every valid code.
    #[must_use]
    pub fn ledger(&self, book: Book) -> u32 {
        let division: u32 = self.adm_div.as_str().parse().unwrap_or(0);
        let year = u32::from(self.year.get().saturating_sub(1990));
        let book = match book {
            Book::Money => 0,
            Book::Quota => 1,
        };
        (division * 1024 + year) * 2 + book
    }
}

/// A budget unit's code (预算单位编码): 1–32 ASCII letters, digits, `-` or `_`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UnitCode(String);

impl UnitCode {
    /// The code.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for UnitCode {
    type Err = Refusal;
    fn from_str(text: &str) -> Result<Self, Refusal> {
        let ok = !text.is_empty()
            && text.len() <= 32
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok {
            Ok(Self(text.to_owned()))
        } else {
            Err(Refusal::BadUnitCode)
        }
    }
}

/// The kinds of book account; the value is the engine account's `code`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum AccountKind {
    BudgetSource = 1001,
    Indicator = 1101,
    Plan = 1201,
    PlanUsed = 1301,
    Advance = 2001,
    FinanceZba = 2002,
    UnitZba = 2003,
    ReceivablePboc = 2004,
    Payees = 2005,
    PbocReserve = 2006,
    QuotaNoticeSource = 2101,
    UnitQuota = 2102,
    UnitQuotaUsed = 2103,
    Revenue = 3001,
    Tsa = 3002,
    BankClearing = 3003,
    ClearingNoticeSource = 3101,
    ClearingQuota = 3102,
    Cleared = 3103,
}

const KINDS: [(AccountKind, &str); 19] = [
    (AccountKind::BudgetSource, "budget_source"),
    (AccountKind::Indicator, "indicator"),
    (AccountKind::Plan, "plan"),
    (AccountKind::PlanUsed, "plan_used"),
    (AccountKind::Advance, "advance"),
    (AccountKind::FinanceZba, "finance_zba"),
    (AccountKind::UnitZba, "unit_zba"),
    (AccountKind::ReceivablePboc, "receivable_pboc"),
    (AccountKind::Payees, "payees"),
    (AccountKind::PbocReserve, "pboc_reserve"),
    (AccountKind::QuotaNoticeSource, "quota_notice_source"),
    (AccountKind::UnitQuota, "unit_quota"),
    (AccountKind::UnitQuotaUsed, "unit_quota_used"),
    (AccountKind::Revenue, "revenue"),
    (AccountKind::Tsa, "tsa"),
    (AccountKind::BankClearing, "bank_clearing"),
    (AccountKind::ClearingNoticeSource, "clearing_notice_source"),
    (AccountKind::ClearingQuota, "clearing_quota"),
    (AccountKind::Cleared, "cleared"),
];

impl AccountKind {
    /// The stored name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        KINDS
            .iter()
            .find(|(k, _)| *k == self)
            .map_or("unknown", |(_, name)| name)
    }

    fn book(self) -> Book {
        use AccountKind as K;
        match self {
            K::Advance
            | K::FinanceZba
            | K::UnitZba
            | K::ReceivablePboc
            | K::Payees
            | K::PbocReserve
            | K::Revenue
            | K::Tsa
            | K::BankClearing => Book::Money,
            _ => Book::Quota,
        }
    }

    fn flags(self) -> AccountFlags {
        use AccountKind as K;
        match self {
            K::Indicator
            | K::Plan
            | K::PlanUsed
            | K::UnitQuota
            | K::UnitQuotaUsed
            | K::Tsa
            | K::ClearingQuota
            | K::Cleared => AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS,
            _ => AccountFlags::NONE,
        }
    }

    /// Whether the account is a quota that payments consume.
    #[must_use]
    pub fn is_quota(self) -> bool {
        matches!(
            self,
            Self::Indicator | Self::Plan | Self::UnitQuota | Self::ClearingQuota
        )
    }
}

impl fmt::Display for AccountKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AccountKind {
    type Err = StoreError;
    fn from_str(text: &str) -> Result<Self, StoreError> {
        KINDS
            .iter()
            .find(|(_, name)| *name == text)
            .map(|(k, _)| *k)
            .ok_or_else(|| StoreError::corrupt_row("unknown book account kind"))
    }
}

/// What the store keeps beside a book account, for queries by level. Empty text and 0 mean
/// "not part of this kind's key".
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub struct BookLabel {
    pub kind: AccountKind,
    pub adm_div: String,
    pub year: u16,
    pub unit: String,
    pub func_class: String,
    pub eco_class: String,
    pub fund_type: String,
    pub pay_type: String,
    pub month: u8,
    pub bank: String,
}

/// The label columns as the databases return them.
pub(crate) type LabelColumns = (
    String,
    String,
    i64,
    String,
    String,
    String,
    String,
    String,
    i64,
    String,
);

impl BookLabel {
    fn new(kind: AccountKind, tenant: Tenant) -> Self {
        Self {
            kind,
            adm_div: tenant.adm_div.as_str().to_owned(),
            year: tenant.year.get(),
            unit: String::new(),
            func_class: String::new(),
            eco_class: String::new(),
            fund_type: String::new(),
            pay_type: String::new(),
            month: 0,
            bank: String::new(),
        }
    }

    pub(crate) fn from_columns(c: LabelColumns) -> Result<Self, StoreError> {
        Ok(Self {
            kind: c.0.parse()?,
            adm_div: c.1,
            year: u16::try_from(c.2).map_err(|_| StoreError::corrupt_row("year"))?,
            unit: c.3,
            func_class: c.4,
            eco_class: c.5,
            fund_type: c.6,
            pay_type: c.7,
            month: u8::try_from(c.8).map_err(|_| StoreError::corrupt_row("month"))?,
            bank: c.9,
        })
    }

    /// The canonical text of the key, from which the account id is derived.
    #[must_use]
    pub fn canonical(&self) -> String {
        format!(
            "{}|{}|{}|{}|{}|{}|{}|{}|{}|{}",
            self.kind.as_str(),
            self.adm_div,
            self.year,
            self.unit,
            self.func_class,
            self.eco_class,
            self.fund_type,
            self.pay_type,
            self.month,
            self.bank
        )
    }
}

/// FNV-1a, 128-bit: a stable id from a key's canonical bytes. Not collision-resistant
/// against an adversary; keys come from authenticated finance data, and a collision would
/// surface as an account that "exists with different" fields, never as a silent merge.
fn fnv1a_128(bytes: &[u8]) -> u128 {
    const OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;
    bytes.iter().fold(OFFSET, |hash, &b| {
        (hash ^ u128::from(b)).wrapping_mul(PRIME)
    })
}

/// A budget indicator's key (指标): (AdmDivCode, year, unit, function class, economic
/// class, fund type, pay type).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub struct IndicatorKey {
    pub tenant: Tenant,
    pub unit: UnitCode,
    pub func: FuncClass,
    pub eco: EcoClass,
    pub fund: FundType,
    pub pay: PayType,
}

/// A clearing quota's key at PBOC (TV_AMT_CONTROL_INFO without the treasury code, which the
/// store's party already is).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub struct ClearingKey {
    pub tenant: Tenant,
    pub bank: BankNo,
    pub unit: UnitCode,
    pub func: FuncClass,
    pub fund: FundType,
    pub pay: PayType,
}

/// A book account: its tenant and label; its id and engine account follow from them.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BookAccount {
    /// The tenant.
    pub tenant: Tenant,
    /// The label (kind and key).
    pub label: BookLabel,
}

fn checked_month(month: u8) -> Result<u8, Refusal> {
    if (1..=12).contains(&month) {
        Ok(month)
    } else {
        Err(Refusal::BadMonth { month })
    }
}

impl BookAccount {
    fn of(kind: AccountKind, tenant: Tenant) -> Self {
        Self {
            tenant,
            label: BookLabel::new(kind, tenant),
        }
    }

    fn indicator_label(kind: AccountKind, key: &IndicatorKey, month: u8) -> Self {
        let mut a = Self::of(kind, key.tenant);
        a.label.unit = key.unit.as_str().to_owned();
        a.label.func_class = key.func.as_str().to_owned();
        a.label.eco_class = key.eco.as_str().to_owned();
        a.label.fund_type = key.fund.as_str().to_owned();
        a.label.pay_type = key.pay.code().to_owned();
        a.label.month = month;
        a
    }

    fn clearing_label(kind: AccountKind, key: &ClearingKey) -> Self {
        let mut a = Self::of(kind, key.tenant);
        a.label.bank = key.bank.as_str().to_owned();
        a.label.unit = key.unit.as_str().to_owned();
        a.label.func_class = key.func.as_str().to_owned();
        a.label.fund_type = key.fund.as_str().to_owned();
        a.label.pay_type = key.pay.code().to_owned();
        a
    }

    fn unit_month(kind: AccountKind, tenant: Tenant, unit: &UnitCode, month: u8) -> Self {
        let mut a = Self::of(kind, tenant);
        a.label.unit = unit.as_str().to_owned();
        a.label.month = month;
        a
    }

    /// Finance: where approved budget comes from.
    #[must_use]
    pub fn budget_source(tenant: Tenant) -> Self {
        Self::of(AccountKind::BudgetSource, tenant)
    }
    /// Finance: a budget indicator (指标).
    #[must_use]
    pub fn indicator(key: &IndicatorKey) -> Self {
        Self::indicator_label(AccountKind::Indicator, key, 0)
    }
    /// Finance: the monthly spending plan (用款计划) under an indicator; `month` 1..=12.
    ///
    /// # Errors
    /// [`Refusal::BadMonth`].
    pub fn plan(key: &IndicatorKey, month: u8) -> Result<Self, Refusal> {
        Ok(Self::indicator_label(
            AccountKind::Plan,
            key,
            checked_month(month)?,
        ))
    }
    /// Finance: what payments used of a monthly plan.
    ///
    /// # Errors
    /// [`Refusal::BadMonth`].
    pub fn plan_used(key: &IndicatorKey, month: u8) -> Result<Self, Refusal> {
        Ok(Self::indicator_label(
            AccountKind::PlanUsed,
            key,
            checked_month(month)?,
        ))
    }
    /// Bank: the advance account (垫支户) payments are fronted from.
    #[must_use]
    pub fn advance(tenant: Tenant) -> Self {
        Self::of(AccountKind::Advance, tenant)
    }
    /// Bank: the finance zero-balance account (direct payments).
    #[must_use]
    pub fn finance_zba(tenant: Tenant) -> Self {
        Self::of(AccountKind::FinanceZba, tenant)
    }
    /// Bank: a budget unit's zero-balance account (authorized payments).
    #[must_use]
    pub fn unit_zba(tenant: Tenant, unit: &UnitCode) -> Self {
        let mut a = Self::of(AccountKind::UnitZba, tenant);
        a.label.unit = unit.as_str().to_owned();
        a
    }
    /// Bank: what PBOC owes the bank for payments it fronted and asked to clear.
    #[must_use]
    pub fn receivable_pboc(tenant: Tenant) -> Self {
        Self::of(AccountKind::ReceivablePboc, tenant)
    }
    /// Bank: money paid out to payees (outward).
    #[must_use]
    pub fn payees(tenant: Tenant) -> Self {
        Self::of(AccountKind::Payees, tenant)
    }
    /// Bank: its reserve account at PBOC, where clearing money arrives.
    #[must_use]
    pub fn pboc_reserve(tenant: Tenant) -> Self {
        Self::of(AccountKind::PbocReserve, tenant)
    }
    /// Bank: where plan quota from finance's quota notices comes from.
    #[must_use]
    pub fn quota_notice_source(tenant: Tenant) -> Self {
        Self::of(AccountKind::QuotaNoticeSource, tenant)
    }
    /// Bank: a unit's plan quota for a month.
    ///
    /// # Errors
    /// [`Refusal::BadMonth`].
    pub fn unit_quota(tenant: Tenant, unit: &UnitCode, month: u8) -> Result<Self, Refusal> {
        Ok(Self::unit_month(
            AccountKind::UnitQuota,
            tenant,
            unit,
            checked_month(month)?,
        ))
    }
    /// Bank: what a unit's payments used of its plan quota for a month.
    ///
    /// # Errors
    /// [`Refusal::BadMonth`].
    pub fn unit_quota_used(tenant: Tenant, unit: &UnitCode, month: u8) -> Result<Self, Refusal> {
        Ok(Self::unit_month(
            AccountKind::UnitQuotaUsed,
            tenant,
            unit,
            checked_month(month)?,
        ))
    }
    /// PBOC: budget revenue flowing into the TSA.
    #[must_use]
    pub fn revenue(tenant: Tenant) -> Self {
        Self::of(AccountKind::Revenue, tenant)
    }
    /// PBOC: the treasury single account.
    #[must_use]
    pub fn tsa(tenant: Tenant) -> Self {
        Self::of(AccountKind::Tsa, tenant)
    }
    /// PBOC: an agent bank's clearing account.
    #[must_use]
    pub fn bank_clearing(tenant: Tenant, bank: &BankNo) -> Self {
        let mut a = Self::of(AccountKind::BankClearing, tenant);
        a.label.bank = bank.as_str().to_owned();
        a
    }
    /// PBOC: where clearing quota from 5106/5108 comes from.
    #[must_use]
    pub fn clearing_notice_source(tenant: Tenant) -> Self {
        Self::of(AccountKind::ClearingNoticeSource, tenant)
    }
    /// PBOC: a clearing quota (清算额度).
    #[must_use]
    pub fn clearing_quota(key: &ClearingKey) -> Self {
        Self::clearing_label(AccountKind::ClearingQuota, key)
    }
    /// PBOC: what clearing requests used of a clearing quota.
    #[must_use]
    pub fn cleared(key: &ClearingKey) -> Self {
        Self::clearing_label(AccountKind::Cleared, key)
    }

    /// The engine account id, derived from the canonical key.
    #[must_use]
    pub fn id(&self) -> u128 {
        fnv1a_128(self.label.canonical().as_bytes())
    }

    /// The ledger this account lives on.
    #[must_use]
    pub fn ledger(&self) -> u32 {
        self.tenant.ledger(self.label.kind.book())
    }

    /// The engine account to create.
    #[must_use]
    pub fn new_account(&self) -> NewAccount {
        NewAccount {
            id: self.id(),
            user_data: 0,
            ledger: self.ledger(),
            code: self.label.kind as u16,
            flags: self.label.kind.flags(),
        }
    }
}

/// The operation codes written as transfer `code`s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum OpCode {
    Approve = 1,
    Adjust = 2,
    Allot = 3,
    Pay = 4,
    Restore = 5,
    Front = 6,
    RequestClearing = 7,
    Settle = 8,
    Refund = 9,
    Clear = 10,
    Fund = 11,
}

/// Why a book operation was refused. Nothing of it was applied. Retrying the same operation
/// cannot help (the books must change first, e.g. more quota issued).
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum Refusal {
    /// A payment, approval or restore of zero or less.
    #[error("amount must be positive, got {fen} fen")]
    AmountMustBePositive {
        /// The amount given.
        fen: i64,
    },
    /// An adjustment of zero.
    #[error("an adjustment must not be zero")]
    AdjustmentMustNotBeZero,
    /// A month outside 1..=12.
    #[error("month must be 1 to 12, got {month}")]
    BadMonth {
        /// The month given.
        month: u8,
    },
    /// A unit code that is not 1–32 letters, digits, `-` or `_`.
    #[error("a unit code is 1 to 32 letters, digits, '-' or '_'")]
    BadUnitCode,
    /// The account (e.g. the quota key) does not exist. For a clearing quota:
    /// 因为没有额度，不能出现清算信息.
    #[error("no {kind} for {key}")]
    NoSuchAccount {
        /// Its kind.
        kind: AccountKind,
        /// Its canonical key.
        key: String,
    },
    /// Not enough left: quota exceeded (for a clearing quota: 超出清算范围), funds short,
    /// or a restore or negative adjustment beyond what is there.
    #[error("not enough left on {kind} {key}")]
    NotEnough {
        /// Its kind.
        kind: AccountKind,
        /// Its canonical key.
        key: String,
    },
    /// The two accounts are in different divisions, years or books.
    #[error("a transfer between different ledgers (division, year or book)")]
    DifferentLedgers,
    /// The operation id was used before for an operation with other fields.
    #[error("operation id reused with a different {field}")]
    IdReused {
        /// The first field that differs.
        field: &'static str,
    },
    /// A balance would overflow.
    #[error("a balance would overflow")]
    Overflow,
    /// Another refusal of the engine.
    #[error("refused by the ledger: {0:?}")]
    Ledger(CreateTransferResult),
}

/// How an operation that was not refused went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// Applied now.
    Done,
    /// Applied before under the same id (a resend): nothing changed.
    AlreadyDone,
}

/// One transfer of an operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leg {
    /// Debited (the amount leaves its balance).
    pub debit: BookAccount,
    /// Credited.
    pub credit: BookAccount,
    /// Fen.
    pub amount: u128,
    /// What kind of move.
    pub code: OpCode,
}

/// A business operation: legs that apply all or nothing, under a client-chosen id (e.g.
/// derived from the voucher key). Resending it is idempotent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BookOp {
    /// The operation id.
    pub id: u128,
    /// The legs, in order.
    pub legs: Vec<Leg>,
}

fn positive(amount: Amount) -> Result<u128, Refusal> {
    if amount.is_positive() {
        Ok(u128::from(amount.fen().unsigned_abs()))
    } else {
        Err(Refusal::AmountMustBePositive { fen: amount.fen() })
    }
}

fn leg(debit: BookAccount, credit: BookAccount, amount: u128, code: OpCode) -> Leg {
    Leg {
        debit,
        credit,
        amount,
        code,
    }
}

/// `from → to` for a positive `delta`, `to → from` for a negative one.
fn adjust(id: u128, from: BookAccount, to: BookAccount, delta: Amount) -> Result<BookOp, Refusal> {
    if delta.is_zero() {
        return Err(Refusal::AdjustmentMustNotBeZero);
    }
    let amount = u128::from(delta.fen().unsigned_abs());
    let legs = if delta.is_positive() {
        vec![leg(from, to, amount, OpCode::Adjust)]
    } else {
        vec![leg(to, from, amount, OpCode::Adjust)]
    };
    Ok(BookOp { id, legs })
}

impl BookOp {
    /// A plain move between two book accounts, refused if they are on different ledgers.
    ///
    /// # Errors
    /// [`Refusal::AmountMustBePositive`], [`Refusal::DifferentLedgers`].
    pub fn transfer(
        id: u128,
        debit: BookAccount,
        credit: BookAccount,
        amount: Amount,
        code: OpCode,
    ) -> Result<Self, Refusal> {
        let amount = positive(amount)?;
        if debit.ledger() != credit.ledger() {
            return Err(Refusal::DifferentLedgers);
        }
        Ok(Self {
            id,
            legs: vec![leg(debit, credit, amount, code)],
        })
    }

    /// Finance: approve an indicator (budget source → indicator).
    ///
    /// # Errors
    /// [`Refusal::AmountMustBePositive`].
    pub fn approve_indicator(
        id: u128,
        key: &IndicatorKey,
        amount: Amount,
    ) -> Result<Self, Refusal> {
        let amount = positive(amount)?;
        Ok(Self {
            id,
            legs: vec![leg(
                BookAccount::budget_source(key.tenant),
                BookAccount::indicator(key),
                amount,
                OpCode::Approve,
            )],
        })
    }

    /// Finance: adjust an indicator up or down; down never below what plans hold.
    ///
    /// # Errors
    /// [`Refusal::AdjustmentMustNotBeZero`].
    pub fn adjust_indicator(id: u128, key: &IndicatorKey, delta: Amount) -> Result<Self, Refusal> {
        adjust(
            id,
            BookAccount::budget_source(key.tenant),
            BookAccount::indicator(key),
            delta,
        )
    }

    /// Finance: approve a monthly plan under an indicator (indicator → plan).
    ///
    /// # Errors
    /// [`Refusal::AmountMustBePositive`], [`Refusal::BadMonth`].
    pub fn approve_plan(
        id: u128,
        key: &IndicatorKey,
        month: u8,
        amount: Amount,
    ) -> Result<Self, Refusal> {
        let amount = positive(amount)?;
        Ok(Self {
            id,
            legs: vec![leg(
                BookAccount::indicator(key),
                BookAccount::plan(key, month)?,
                amount,
                OpCode::Allot,
            )],
        })
    }

    /// Finance: adjust a plan up (from its indicator) or down (back to it); down never
    /// below what payments used.
    ///
    /// # Errors
    /// [`Refusal::AdjustmentMustNotBeZero`], [`Refusal::BadMonth`].
    pub fn adjust_plan(
        id: u128,
        key: &IndicatorKey,
        month: u8,
        delta: Amount,
    ) -> Result<Self, Refusal> {
        adjust(
            id,
            BookAccount::indicator(key),
            BookAccount::plan(key, month)?,
            delta,
        )
    }

    /// Finance: a payment consumes plan quota (plan → used).
    ///
    /// # Errors
    /// [`Refusal::AmountMustBePositive`], [`Refusal::BadMonth`].
    pub fn pay_from_plan(
        id: u128,
        key: &IndicatorKey,
        month: u8,
        amount: Amount,
    ) -> Result<Self, Refusal> {
        let amount = positive(amount)?;
        Ok(Self {
            id,
            legs: vec![leg(
                BookAccount::plan(key, month)?,
                BookAccount::plan_used(key, month)?,
                amount,
                OpCode::Pay,
            )],
        })
    }

    /// Finance: a returned or refunded payment restores plan quota (used → plan).
    ///
    /// # Errors
    /// [`Refusal::AmountMustBePositive`], [`Refusal::BadMonth`].
    pub fn restore_to_plan(
        id: u128,
        key: &IndicatorKey,
        month: u8,
        amount: Amount,
    ) -> Result<Self, Refusal> {
        let amount = positive(amount)?;
        Ok(Self {
            id,
            legs: vec![leg(
                BookAccount::plan_used(key, month)?,
                BookAccount::plan(key, month)?,
                amount,
                OpCode::Restore,
            )],
        })
    }

    /// Bank: a quota notice raises (or, negative, lowers) a unit's monthly plan quota.
    ///
    /// # Errors
    /// [`Refusal::AdjustmentMustNotBeZero`], [`Refusal::BadMonth`].
    pub fn notice_unit_quota(
        id: u128,
        tenant: Tenant,
        unit: &UnitCode,
        month: u8,
        delta: Amount,
    ) -> Result<Self, Refusal> {
        adjust(
            id,
            BookAccount::quota_notice_source(tenant),
            BookAccount::unit_quota(tenant, unit, month)?,
            delta,
        )
    }

    /// Bank: an authorized payment (8202): consumes the unit's plan quota and fronts the
    /// money advance → unit ZBA → payees, all or nothing.
    ///
    /// # Errors
    /// [`Refusal::AmountMustBePositive`], [`Refusal::BadMonth`].
    pub fn pay_authorized(
        id: u128,
        tenant: Tenant,
        unit: &UnitCode,
        month: u8,
        amount: Amount,
    ) -> Result<Self, Refusal> {
        let amount = positive(amount)?;
        let zba = BookAccount::unit_zba(tenant, unit);
        Ok(Self {
            id,
            legs: vec![
                leg(
                    BookAccount::unit_quota(tenant, unit, month)?,
                    BookAccount::unit_quota_used(tenant, unit, month)?,
                    amount,
                    OpCode::Pay,
                ),
                leg(
                    BookAccount::advance(tenant),
                    zba.clone(),
                    amount,
                    OpCode::Front,
                ),
                leg(zba, BookAccount::payees(tenant), amount, OpCode::Pay),
            ],
        })
    }

    /// Bank: a direct payment (5201) fronted advance → finance ZBA → payees.
    ///
    /// # Errors
    /// [`Refusal::AmountMustBePositive`].
    pub fn pay_direct(id: u128, tenant: Tenant, amount: Amount) -> Result<Self, Refusal> {
        let amount = positive(amount)?;
        let zba = BookAccount::finance_zba(tenant);
        Ok(Self {
            id,
            legs: vec![
                leg(
                    BookAccount::advance(tenant),
                    zba.clone(),
                    amount,
                    OpCode::Front,
                ),
                leg(zba, BookAccount::payees(tenant), amount, OpCode::Pay),
            ],
        })
    }

    /// Bank: a clearing request (2301) turns fronted money into a receivable from PBOC.
    ///
    /// # Errors
    /// [`Refusal::AmountMustBePositive`].
    pub fn request_clearing(id: u128, tenant: Tenant, amount: Amount) -> Result<Self, Refusal> {
        Self::transfer(
            id,
            BookAccount::receivable_pboc(tenant),
            BookAccount::advance(tenant),
            amount,
            OpCode::RequestClearing,
        )
    }

    /// Bank: PBOC's 2301 receipt settles the receivable (PBOC reserve → receivable).
    ///
    /// # Errors
    /// [`Refusal::AmountMustBePositive`].
    pub fn clearing_settled(id: u128, tenant: Tenant, amount: Amount) -> Result<Self, Refusal> {
        Self::transfer(
            id,
            BookAccount::pboc_reserve(tenant),
            BookAccount::receivable_pboc(tenant),
            amount,
            OpCode::Settle,
        )
    }

    /// Bank: a payment bounced back into a ZBA (payees → ZBA); for an authorized payment
    /// (`quota` = unit and month) the unit's plan quota is restored in the same chain.
    ///
    /// # Errors
    /// [`Refusal::AmountMustBePositive`], [`Refusal::BadMonth`].
    pub fn refund_received(
        id: u128,
        zba: BookAccount,
        quota: Option<(&UnitCode, u8)>,
        amount: Amount,
    ) -> Result<Self, Refusal> {
        let amount = positive(amount)?;
        let tenant = zba.tenant;
        let mut legs = vec![leg(
            BookAccount::payees(tenant),
            zba,
            amount,
            OpCode::Refund,
        )];
        if let Some((unit, month)) = quota {
            legs.push(leg(
                BookAccount::unit_quota_used(tenant, unit, month)?,
                BookAccount::unit_quota(tenant, unit, month)?,
                amount,
                OpCode::Restore,
            ));
        }
        Ok(Self { id, legs })
    }

    /// Bank: a 2302 refund sends refunded money back to the TSA (ZBA → PBOC reserve).
    ///
    /// # Errors
    /// [`Refusal::AmountMustBePositive`].
    pub fn refund_cleared(id: u128, zba: BookAccount, amount: Amount) -> Result<Self, Refusal> {
        let reserve = BookAccount::pboc_reserve(zba.tenant);
        Self::transfer(id, zba, reserve, amount, OpCode::Refund)
    }

    /// PBOC: budget revenue into the TSA.
    ///
    /// # Errors
    /// [`Refusal::AmountMustBePositive`].
    pub fn fund_tsa(id: u128, tenant: Tenant, amount: Amount) -> Result<Self, Refusal> {
        Self::transfer(
            id,
            BookAccount::revenue(tenant),
            BookAccount::tsa(tenant),
            amount,
            OpCode::Fund,
        )
    }

    /// PBOC: a 5106/5108 notice raises a clearing quota, or (negative, or the return of a
    /// notice) lowers it, never below what was cleared (额度值已经使用不能被退回).
    ///
    /// # Errors
    /// [`Refusal::AdjustmentMustNotBeZero`].
    pub fn clearing_quota_notice(
        id: u128,
        key: &ClearingKey,
        delta: Amount,
    ) -> Result<Self, Refusal> {
        adjust(
            id,
            BookAccount::clearing_notice_source(key.tenant),
            BookAccount::clearing_quota(key),
            delta,
        )
    }

    /// PBOC: a 2301 clearing request: deducts the clearing quota and pays TSA → the bank's
    /// clearing account, all or nothing.
    ///
    /// # Errors
    /// [`Refusal::AmountMustBePositive`].
    pub fn clear(id: u128, key: &ClearingKey, amount: Amount) -> Result<Self, Refusal> {
        let amount = positive(amount)?;
        Ok(Self {
            id,
            legs: vec![
                leg(
                    BookAccount::clearing_quota(key),
                    BookAccount::cleared(key),
                    amount,
                    OpCode::Clear,
                ),
                leg(
                    BookAccount::tsa(key.tenant),
                    BookAccount::bank_clearing(key.tenant, &key.bank),
                    amount,
                    OpCode::Clear,
                ),
            ],
        })
    }

    /// PBOC: a 2302 refund (or the return of an accepted 2301): money back to the TSA and
    /// the clearing quota restored, never beyond what was cleared. `amount` is the refund's
    /// size (2302's `PayAmt` is negative; pass its absolute value).
    ///
    /// # Errors
    /// [`Refusal::AmountMustBePositive`].
    pub fn refund_clearing(id: u128, key: &ClearingKey, amount: Amount) -> Result<Self, Refusal> {
        let amount = positive(amount)?;
        Ok(Self {
            id,
            legs: vec![
                leg(
                    BookAccount::cleared(key),
                    BookAccount::clearing_quota(key),
                    amount,
                    OpCode::Restore,
                ),
                leg(
                    BookAccount::bank_clearing(key.tenant, &key.bank),
                    BookAccount::tsa(key.tenant),
                    amount,
                    OpCode::Refund,
                ),
            ],
        })
    }

    /// The id of the `index`-th transfer of the operation `id`.
    #[must_use]
    pub fn transfer_id(id: u128, index: usize) -> u128 {
        let mut bytes = id.to_be_bytes().to_vec();
        bytes.extend_from_slice(&(index as u64).to_be_bytes());
        fnv1a_128(&bytes)
    }

    /// The engine transfers: one per leg, linked so that they apply all or nothing.
    #[must_use]
    pub fn transfers(&self) -> Vec<Transfer> {
        let last = self.legs.len().saturating_sub(1);
        self.legs
            .iter()
            .enumerate()
            .map(|(i, l)| Transfer {
                id: Self::transfer_id(self.id, i),
                debit_account_id: l.debit.id(),
                credit_account_id: l.credit.id(),
                amount: l.amount,
                user_data: self.id,
                ledger: l.debit.ledger(),
                code: l.code as u16,
                flags: if i < last {
                    TransferFlags::LINKED
                } else {
                    TransferFlags::NONE
                },
                ..Transfer::default()
            })
            .collect()
    }

    /// The outcome of the operation from the engine's results for its transfers.
    ///
    /// # Errors
    /// The [`Refusal`] of the first leg that failed for a reason of its own.
    pub fn outcome(&self, results: &[CreateTransferResult]) -> Result<Applied, Refusal> {
        use CreateTransferResult as R;
        for (l, &r) in self.legs.iter().zip(results) {
            let named = |a: &BookAccount| (a.label.kind, a.label.canonical());
            let refusal = match r {
                R::Ok | R::Exists | R::LinkedEventFailed => continue,
                R::DebitAccountNotFound => {
                    let (kind, key) = named(&l.debit);
                    Refusal::NoSuchAccount { kind, key }
                }
                R::CreditAccountNotFound => {
                    let (kind, key) = named(&l.credit);
                    Refusal::NoSuchAccount { kind, key }
                }
                R::ExceedsCredits => {
                    let (kind, key) = named(&l.debit);
                    Refusal::NotEnough { kind, key }
                }
                R::ExceedsDebits => {
                    let (kind, key) = named(&l.credit);
                    Refusal::NotEnough { kind, key }
                }
                R::AccountsMustHaveTheSameLedger | R::TransferMustHaveTheSameLedgerAsAccounts => {
                    Refusal::DifferentLedgers
                }
                R::ExistsWithDifferentAmount => Refusal::IdReused { field: "amount" },
                R::ExistsWithDifferentDebitAccountId => Refusal::IdReused {
                    field: "debit account",
                },
                R::ExistsWithDifferentCreditAccountId => Refusal::IdReused {
                    field: "credit account",
                },
                R::ExistsWithDifferentCode => Refusal::IdReused { field: "code" },
                R::ExistsWithDifferentLedger => Refusal::IdReused { field: "ledger" },
                R::ExistsWithDifferentFlags => Refusal::IdReused { field: "flags" },
                R::ExistsWithDifferentUserData => Refusal::IdReused { field: "user data" },
                R::ExistsWithDifferentPendingId => Refusal::IdReused {
                    field: "pending id",
                },
                R::ExistsWithDifferentTimeout => Refusal::IdReused { field: "timeout" },
                R::OverflowsDebits
                | R::OverflowsCredits
                | R::OverflowsDebitsPosted
                | R::OverflowsCreditsPosted
                | R::OverflowsDebitsPending
                | R::OverflowsCreditsPending => Refusal::Overflow,
                other => Refusal::Ledger(other),
            };
            return Err(refusal);
        }
        if results.iter().all(|r| *r == R::Exists) {
            Ok(Applied::AlreadyDone)
        } else {
            Ok(Applied::Done)
        }
    }
}

/// Which book accounts a query covers. Empty text and 0 match anything.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BookFilter {
    /// The kind of account.
    pub kind: AccountKind,
    /// The division.
    pub adm_div: String,
    /// The year.
    pub year: u16,
    /// One unit, or all.
    pub unit: String,
    /// A function-class prefix (类 `201`, 款 `20101`, 项 `2010101`), or all.
    pub func_class_prefix: String,
    /// One month (1..=12), or all (0).
    pub month: u8,
    /// One bank, or all.
    pub bank: String,
}

impl BookFilter {
    /// Every account of `kind` in `tenant`.
    #[must_use]
    pub fn all(kind: AccountKind, tenant: Tenant) -> Self {
        Self {
            kind,
            adm_div: tenant.adm_div.as_str().to_owned(),
            year: tenant.year.get(),
            unit: String::new(),
            func_class_prefix: String::new(),
            month: 0,
            bank: String::new(),
        }
    }
}

/// Quota summed over the accounts a [`BookFilter`] selects.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QuotaSummary {
    /// Accounts summed.
    pub accounts: u64,
    /// Quota received (credits posted).
    pub granted: u128,
    /// Quota given on or consumed (debits posted).
    pub consumed: u128,
    /// Quota reserved by pending transfers (debits pending).
    pub reserved: u128,
    /// What may still be spent: `granted − consumed − reserved`.
    pub remaining: u128,
}

impl Store {
    /// Applies book operations at `now` as one batch, one outcome per operation. A `now`
    /// before the books' last one is taken as that last one: the flows of one node run
    /// concurrently, read the clock in one order and commit in another, and the books'
    /// time never goes back.
    ///
    /// # Errors
    /// [`StoreError`] as for [`Store::create_transfers`]; then nothing was committed.
    pub async fn apply_book_ops(
        &self,
        now: u64,
        ops: &[BookOp],
    ) -> Result<Vec<Result<Applied, Refusal>>, StoreError> {
        let batch: Vec<Transfer> = ops.iter().flat_map(BookOp::transfers).collect();
        let now = crate::batch::Now::AtLeast(now);
        let results = match self {
            Store::Sqlite(s) => s.create_transfers(now, batch).await,
            Store::Postgres(s) => s.create_transfers(now, batch).await,
        }?;
        let mut outcomes = Vec::with_capacity(ops.len());
        let mut rest = &results[..];
        for op in ops {
            let (mine, tail) = rest.split_at(op.legs.len().min(rest.len()));
            outcomes.push(op.outcome(mine));
            rest = tail;
        }
        Ok(outcomes)
    }

    /// Quota at any level: sums the accounts `filter` selects (e.g. one unit's plans of a
    /// month, every indicator under a function class).
    ///
    /// # Errors
    /// An infrastructure error, or [`StoreError::Corrupt`] if a sum overflows.
    pub async fn quota_summary(&self, filter: BookFilter) -> Result<QuotaSummary, StoreError> {
        let overflow = || StoreError::Corrupt("a quota sum overflows u128".into());
        let mut s = QuotaSummary::default();
        for (_, a) in self.book_accounts(filter).await? {
            s.accounts += 1;
            s.granted = s
                .granted
                .checked_add(a.credits_posted)
                .ok_or_else(overflow)?;
            s.consumed = s
                .consumed
                .checked_add(a.debits_posted)
                .ok_or_else(overflow)?;
            s.reserved = s
                .reserved
                .checked_add(a.debits_pending)
                .ok_or_else(overflow)?;
        }
        s.remaining = s
            .granted
            .checked_sub(s.consumed)
            .and_then(|r| r.checked_sub(s.reserved))
            .ok_or_else(|| StoreError::Corrupt("quota consumed beyond what was granted".into()))?;
        Ok(s)
    }

    /// The zero-balance accounts of `tenant` that are not at zero (posted or pending).
    ///
    /// # Errors
    /// An infrastructure error.
    pub async fn nonzero_zbas(&self, tenant: Tenant) -> Result<Vec<BookLabel>, StoreError> {
        let mut out = Vec::new();
        for kind in [AccountKind::FinanceZba, AccountKind::UnitZba] {
            for (label, a) in self.book_accounts(BookFilter::all(kind, tenant)).await? {
                if a.debits_posted != a.credits_posted
                    || a.debits_pending != 0
                    || a.credits_pending != 0
                {
                    out.push(label);
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(adm: &str, year: &str) -> Tenant {
        Tenant {
            adm_div: adm.parse().unwrap(),
            year: year.parse().unwrap(),
        }
    }

    #[test]
    fn ledgers_differ_by_division_year_and_book() {
        let a = tenant("430000", "2026");
        let b = tenant("430100", "2026");
        let c = tenant("430000", "2027");
        let all = [
            a.ledger(Book::Money),
            a.ledger(Book::Quota),
            b.ledger(Book::Money),
            c.ledger(Book::Money),
        ];
        for (i, x) in all.iter().enumerate() {
            assert!(*x != 0);
            for y in &all[i + 1..] {
                assert_ne!(x, y);
            }
        }
        let top = tenant("829999", "2999");
        assert!(top.ledger(Book::Quota) > top.ledger(Book::Money));
    }

    #[test]
    fn ids_follow_the_key() {
        let t = tenant("430000", "2026");
        let unit: UnitCode = "U001".parse().unwrap();
        let other: UnitCode = "U002".parse().unwrap();
        assert_eq!(
            BookAccount::unit_zba(t, &unit).id(),
            BookAccount::unit_zba(t, &unit).id()
        );
        assert_ne!(
            BookAccount::unit_zba(t, &unit).id(),
            BookAccount::unit_zba(t, &other).id()
        );
        assert_ne!(
            BookAccount::unit_quota(t, &unit, 1).unwrap().id(),
            BookAccount::unit_quota_used(t, &unit, 1).unwrap().id()
        );
    }

    #[test]
    fn refuses_bad_input_before_the_engine() {
        let t = tenant("430000", "2026");
        let u: UnitCode = "U1".parse().unwrap();
        let zero = Amount::from_fen(0).unwrap();
        let minus = Amount::from_fen(-5).unwrap();
        assert_eq!(
            BookOp::pay_direct(1, t, zero),
            Err(Refusal::AmountMustBePositive { fen: 0 })
        );
        assert_eq!(
            BookOp::pay_authorized(1, t, &u, 3, minus),
            Err(Refusal::AmountMustBePositive { fen: -5 })
        );
        assert_eq!(
            BookOp::notice_unit_quota(1, t, &u, 3, zero),
            Err(Refusal::AdjustmentMustNotBeZero)
        );
        assert_eq!(
            BookOp::notice_unit_quota(1, t, &u, 13, minus),
            Err(Refusal::BadMonth { month: 13 })
        );
        assert_eq!("".parse::<UnitCode>(), Err(Refusal::BadUnitCode));
        let other_year = tenant("430000", "2027");
        assert_eq!(
            BookOp::transfer(
                1,
                BookAccount::advance(t),
                BookAccount::advance(other_year),
                Amount::from_fen(1).unwrap(),
                OpCode::Front
            ),
            Err(Refusal::DifferentLedgers)
        );
    }

    #[test]
    fn legs_are_linked_all_but_the_last() {
        let t = tenant("430000", "2026");
        let u: UnitCode = "U1".parse().unwrap();
        let op = BookOp::pay_authorized(9, t, &u, 3, Amount::from_fen(100).unwrap()).unwrap();
        let transfers = op.transfers();
        assert_eq!(transfers.len(), 3);
        assert!(transfers[0].flags.contains(TransferFlags::LINKED));
        assert!(transfers[1].flags.contains(TransferFlags::LINKED));
        assert!(!transfers[2].flags.contains(TransferFlags::LINKED));
        assert_ne!(transfers[0].ledger, transfers[1].ledger);
    }
}
