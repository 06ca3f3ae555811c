//! Quota notices (额度下达, DOMAIN §3.1).
//!
//! Clearing-quota notices (汇总清算额度通知单, step 2): finance tells PBOC how much it may
//! clear per (bank, unit, function class, fund type, pay type) — 5108 for direct payment,
//! 5106 for authorized payment. A negative amount is an adjustment.
//!
//! 1. [`notice_voucher`] and [`send_notice`]: finance builds the notice from a
//!    [`ClearingKey`] and an amount, stamps it (maker's signature, 财政业务专用章), writes it
//!    and sends it to PBOC; the outbox delivers it.
//! 2. [`book_notices`]: PBOC reads its unread vouchers and, for each 5106/5108 original,
//!    acknowledges it, runs [`check_notice`] (VtCode, amount ≠ 0, details adding up),
//!    books the clearing-quota notice ([`notice_op`]: a negative adjustment only while the
//!    quota stays ≥ 0; refused → 核算失败 with the books' reason), seals the receipt with
//!    its 国库业务专用章 and sends it back. A notice that fails the check is returned (退回).
//! 3. [`receive_receipts`]: finance takes PBOC's receipts; the original moves to 已收到对方
//!    回单 (12).
//!
//! The authorized quota notice to the agent bank (授权额度通知单, 5105, step 3): finance
//! tells the bank each budget unit's plan quota (计划额度) for a month.
//!
//! 1. [`notice_5105_voucher`] and [`send_unit_quota_notice`]: finance builds the notice from
//!    a [`UnitQuotaNotice`], stamps it (maker, 财政业务专用章), writes it and sends it to the
//!    bank.
//! 2. [`on_unit_quota_notice`]: the bank signs for one read 5105, runs
//!    [`check_unit_quota_notice`] (every unit's zero-balance account kept by this bank,
//!    SetMonth, amounts adding up; refused → 退回 with every reason), opens the units'
//!    plan-quota accounts if missing, books the change once ([`unit_quota_op`], keyed by
//!    the notice; a negative adjustment never below what payments used, refused →
//!    核算失败), seals the receipt with its 业务专用章 and sends it back.
//! 3. [`take_receipt`]: finance takes the bank's receipt as it takes PBOC's.

use std::collections::BTreeMap;

use guoku_domain::{Amount, BankNo, BizDate, FuncClass, FundType, PayType};
use guoku_seal::Suite;
use guoku_seal::voucher::Signer;
use guoku_store::books::{BookAccount, BookOp, ClearingKey, Refusal, Tenant, UnitCode};
use guoku_store::library::{LibraryError, VoucherRecord};
use guoku_store::{Store, StoreError};
use guoku_voucher::lifecycle::{Leg, ProcessingEvent};
use guoku_voucher::{EnvelopeBody, Registry, Voucher, VoucherFlag, VoucherKey};

use super::authorized::UnitAccount;
use super::common::{Returner, record_booking, seal_and_return, stamp_write_send};
use super::direct::{op_id, tenant_of};
use crate::stamping::{self, StampingError};

/// The authorized payment clearing-quota notice (财政授权支付汇总清算额度通知单).
pub const VT_5106: &str = "5106";
/// The direct payment clearing-quota notice (财政直接支付汇总清算额度通知单).
pub const VT_5108: &str = "5108";
/// The authorized quota notice to the agent bank (财政授权支付额度通知单).
pub const VT_5105: &str = "5105";

/// Why a step of the quota-notice flow stopped.
#[derive(Debug, thiserror::Error)]
pub enum QuotaError {
    /// The voucher cannot be written or read as a clearing-quota notice.
    #[error("{0}")]
    Invalid(String),
    /// The stamps cannot be applied.
    #[error("stamping: {0}")]
    Stamping(#[from] StampingError),
    /// The library refused or failed.
    #[error("library: {0}")]
    Library(#[from] LibraryError),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

impl QuotaError {
    /// Whether retrying the same call may succeed (an unavailable store); a bad voucher or
    /// a seal that cannot stamp stays so.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Library(e) => e.is_retryable(),
            Self::Store(e) => e.is_retryable(),
            Self::Invalid(_) | Self::Stamping(_) => false,
        }
    }
}

fn invalid(what: impl Into<String>) -> QuotaError {
    QuotaError::Invalid(what.into())
}

/// The notice's amount field and pay type: 5108 `PayAmt`, direct; 5106 `PlanAmt`,
/// authorized.
#[must_use]
pub fn notice_kind(vt_code: &str) -> Option<(&'static str, PayType)> {
    match vt_code {
        VT_5108 => Some(("PayAmt", PayType::Direct)),
        VT_5106 => Some(("PlanAmt", PayType::Authorized)),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------
// The pure check
// ---------------------------------------------------------------------------------------

/// PBOC's check of a notice: a 5106/5108, its amount ≠ 0, at least one detail, every
/// detail amount an amount, and the details adding up to the master.
///
/// # Errors
/// Every reason found, one line each.
pub fn check_notice(notice: &Voucher) -> Result<Amount, Vec<String>> {
    let Some((field, _)) = notice_kind(notice.vt_code()) else {
        return Err(vec![format!(
            "not a clearing-quota notice (5106/5108): VtCode {}",
            notice.vt_code()
        )]);
    };
    let mut reasons = Vec::new();
    let master = match notice.header.get(field).map(str::parse::<Amount>) {
        Some(Ok(a)) if !a.is_zero() => Some(a),
        Some(Ok(_)) => {
            reasons.push(format!("{field} must not be zero"));
            None
        }
        _ => {
            reasons.push(format!("{field} is missing or not an amount"));
            None
        }
    };
    if notice.details.is_empty() {
        reasons.push("the notice lists no detail".to_owned());
    }
    let mut sum = Some(Amount::ZERO);
    let mut amount_bad = false;
    for (i, d) in notice.details.iter().enumerate() {
        match d.get(field).map(str::parse::<Amount>) {
            Some(Ok(a)) => sum = sum.and_then(|s| s.checked_add(a)),
            _ => {
                reasons.push(format!(
                    "detail {}: {field} is missing or not an amount",
                    i + 1
                ));
                amount_bad = true;
            }
        }
    }
    if let Some(master) = master
        && !notice.details.is_empty()
        && !amount_bad
        && sum != Some(master)
    {
        let details = sum.map_or_else(|| "(overflow)".to_owned(), |s| s.to_string());
        reasons.push(format!(
            "the details add up to {details}, not the master {field} {master}"
        ));
    }
    match master {
        Some(master) if reasons.is_empty() => Ok(master),
        _ => Err(reasons),
    }
}

/// The clearing-quota keys a notice touches and the change to each, grouped by (unit,
/// function class); groups netting to zero are left out.
///
/// # Errors
/// [`QuotaError::Invalid`] for a field that does not parse.
pub fn notice_deltas(notice: &Voucher) -> Result<Vec<(ClearingKey, Amount)>, QuotaError> {
    let (field, pay) =
        notice_kind(notice.vt_code()).ok_or_else(|| invalid("not a 5106/5108 notice"))?;
    let key = notice.key();
    let tenant = tenant_of(&key).map_err(|e| invalid(e.to_string()))?;
    let head = |name: &str| {
        notice
            .header
            .get(name)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| invalid(format!("{name} is missing")))
    };
    let bank: guoku_domain::BankNo = head("PayBankNo")?
        .parse()
        .map_err(|_| invalid("bad PayBankNo"))?;
    let fund: guoku_domain::FundType = head("FundTypeCode")?
        .parse()
        .map_err(|_| invalid("bad FundTypeCode"))?;
    let mut groups: BTreeMap<(String, String), Amount> = BTreeMap::new();
    for (i, d) in notice.details.iter().enumerate() {
        let get = |name: &str| {
            d.get(name)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| invalid(format!("detail {}: {name} is missing", i + 1)))
        };
        let amount = get(field)?
            .parse::<Amount>()
            .map_err(|_| invalid(format!("detail {}: bad {field}", i + 1)))?;
        let slot = groups
            .entry((
                get("AgencyCode")?.to_owned(),
                get("ExpFuncCode")?.to_owned(),
            ))
            .or_insert(Amount::ZERO);
        *slot = slot
            .checked_add(amount)
            .ok_or_else(|| invalid("amount overflow"))?;
    }
    let mut deltas = Vec::new();
    for ((unit, func), delta) in groups {
        if delta.is_zero() {
            continue;
        }
        let ck = ClearingKey {
            tenant,
            bank: bank.clone(),
            unit: unit
                .parse()
                .map_err(|_| invalid(format!("bad AgencyCode {unit}")))?,
            func: func
                .parse::<FuncClass>()
                .map_err(|_| invalid(format!("bad ExpFuncCode {func}")))?,
            fund: fund.clone(),
            pay,
        };
        deltas.push((ck, delta));
    }
    if deltas.is_empty() {
        return Err(invalid("the notice changes no clearing quota"));
    }
    Ok(deltas)
}

/// The books' operation for a notice: one all-or-nothing operation adjusting every
/// clearing quota it names, keyed by the notice so that a resend is not booked twice.
///
/// # Errors
/// [`QuotaError::Invalid`] as for [`notice_deltas`].
pub fn notice_op(notice: &Voucher, deltas: &[(ClearingKey, Amount)]) -> Result<BookOp, QuotaError> {
    let mut op = BookOp {
        id: op_id("quota-notice", &notice.key()),
        legs: Vec::new(),
    };
    for (key, delta) in deltas {
        let part = BookOp::clearing_quota_notice(op.id, key, *delta)
            .map_err(|e| invalid(e.to_string()))?;
        op.legs.extend(part.legs);
    }
    Ok(op)
}

/// The reason PBOC records when its books refuse a notice.
#[must_use]
pub fn notice_reason(refusal: &Refusal) -> String {
    match refusal {
        Refusal::NotEnough { .. } => {
            format!("额度值已经使用不能被退回 (the quota would fall below zero): {refusal}")
        }
        Refusal::NoSuchAccount { .. } => format!("no clearing quota to adjust: {refusal}"),
        other => format!("clearing-quota notice refused by the books: {other}"),
    }
}

fn stored_body(bytes: &[u8], flag: VoucherFlag) -> Result<EnvelopeBody, QuotaError> {
    super::common::stored_body(bytes, flag).map_err(invalid)
}

// ---------------------------------------------------------------------------------------
// 1. Finance builds and sends the notice
// ---------------------------------------------------------------------------------------

/// A notice of `amount` (negative: an adjustment) on the clearing quota `key`: the
/// template's header (its X fields dropped) and first detail, with VtCode 5108 for a
/// direct key or 5106 for an authorized one, the key's division, year, bank, fund type,
/// unit and function class, `voucher_no` and `date`.
///
/// # Errors
/// [`QuotaError::Invalid`] for an allocation pay type or a zero amount.
pub fn notice_voucher(
    template: &Voucher,
    key: &ClearingKey,
    amount: Amount,
    voucher_no: &str,
    date: BizDate,
) -> Result<Voucher, QuotaError> {
    let vt_code = match key.pay {
        PayType::Direct => VT_5108,
        PayType::Authorized => VT_5106,
        PayType::Allocation => return Err(invalid("no clearing quota for allocation")),
    };
    if amount.is_zero() {
        return Err(invalid("a clearing-quota notice must not be zero"));
    }
    let (field, _) = notice_kind(vt_code).ok_or_else(|| invalid("not a notice"))?;
    let mut header = guoku_voucher::Fields::new();
    for (name, value) in template.header.iter() {
        if !name.starts_with('X') {
            header.set(name, value);
        }
    }
    header.set("Id", voucher_no);
    header.set("VtCode", vt_code);
    header.set("VoucherNo", voucher_no);
    header.set("VouDate", date.to_string());
    header.set("AdmDivCode", key.tenant.adm_div.as_str());
    header.set("StYear", key.tenant.year.get().to_string());
    header.set("PayBankNo", key.bank.as_str());
    header.set("FundTypeCode", key.fund.as_str());
    header.set(field, amount.to_string());
    let mut detail = template.details.first().cloned().unwrap_or_default();
    detail.set("Id", "1");
    detail.set("AgencyCode", key.unit.as_str());
    detail.set("ExpFuncCode", key.func.to_string());
    detail.set(field, amount.to_string());
    Ok(Voucher {
        header,
        details: vec![detail],
    })
}

/// Finance's quota clerk.
pub struct Notifier<'a> {
    /// Finance's organisation code.
    pub me: &'a str,
    /// PBOC's organisation code.
    pub pboc: &'a str,
    /// The user or worker recorded on every event.
    pub actor: &'a str,
    /// The signature suite.
    pub suite: Suite,
    /// Position 1: the maker's signature (经办人签名).
    pub maker: &'a Signer<'a>,
    /// Position 2: finance's 业务专用章 (a [`Signer::Seal`]).
    pub sealer: &'a Signer<'a>,
}

/// Stamps a notice at its original positions (maker, then finance's seal), writes it and
/// sends it to PBOC; the outbox delivers it.
///
/// # Errors
/// [`QuotaError::Invalid`] for a voucher that is not a 5106/5108,
/// [`QuotaError::Stamping`], [`QuotaError::Library`].
pub async fn send_notice(
    store: &Store,
    registry: &Registry,
    notifier: &Notifier<'_>,
    voucher: Voucher,
    now: u64,
) -> Result<VoucherRecord, QuotaError> {
    if notice_kind(voucher.vt_code()).is_none() {
        return Err(invalid("not a 5106/5108"));
    }
    let ty = stamping::type_of(registry, &voucher)?;
    stamp_write_send::<QuotaError>(
        store,
        ty,
        voucher,
        notifier.suite,
        &[notifier.maker, notifier.sealer],
        (notifier.me, notifier.pboc),
        notifier.actor,
        now,
    )
    .await
}

// ---------------------------------------------------------------------------------------
// 2. PBOC books the notice
// ---------------------------------------------------------------------------------------

/// PBOC's side of the notices.
pub struct Treasury<'a> {
    /// PBOC's organisation code.
    pub me: &'a str,
    /// The user or worker recorded on every event.
    pub actor: &'a str,
    /// The signature suite.
    pub suite: Suite,
    /// PBOC's signer with its 国库业务专用章 (a [`Signer::Seal`]).
    pub sealer: &'a Signer<'a>,
}

/// What became of one received notice (a 5106/5108 at PBOC, a 5105 at the bank).
#[derive(Debug)]
pub enum NoticeOutcome {
    /// Booked: the clearing quota (5106/5108) or the units' plan quota (5105) changed, the
    /// sealed receipt written and sent.
    Booked {
        /// The notice.
        key: VoucherKey,
        /// The notice's amount (negative: an adjustment down).
        amount: Amount,
    },
    /// The books refused it (核算失败); nothing changed.
    BookingFailed {
        /// The notice.
        key: VoucherKey,
        /// The books' reason.
        reason: String,
    },
    /// Returned (退回) with the reasons; nothing booked.
    Returned {
        /// The notice.
        key: VoucherKey,
        /// Why, one line per reason.
        reasons: Vec<String>,
    },
    /// Not an original of the notice type this step takes: left for its own flow.
    NotMine {
        /// The voucher.
        key: VoucherKey,
        /// Its leg.
        leg: Leg,
    },
}

/// One run at PBOC: reads up to `limit` unread vouchers and books each 5106/5108 original.
///
/// # Errors
/// [`QuotaError::Library`], [`QuotaError::Store`], [`QuotaError::Stamping`] if PBOC's
/// seal cannot stamp.
pub async fn book_notices(
    store: &Store,
    registry: &Registry,
    treasury: &Treasury<'_>,
    limit: u32,
    now: u64,
) -> Result<Vec<NoticeOutcome>, QuotaError> {
    let mut outcomes = Vec::new();
    for record in store.library().read(limit, treasury.actor, now).await? {
        if notice_kind(&record.key.vt_code).is_none() || record.leg != Leg::Original {
            outcomes.push(NoticeOutcome::NotMine {
                key: record.key,
                leg: record.leg,
            });
            continue;
        }
        outcomes.push(book_record(store, registry, treasury, &record, now).await?);
    }
    Ok(outcomes)
}

/// The accounts a positive notice may open (the clearing-quota row is created by its first
/// notice); a lowering notice opens nothing and is refused on a missing row.
async fn open_accounts(store: &Store, deltas: &[(ClearingKey, Amount)]) -> Result<(), QuotaError> {
    let mut missing = Vec::new();
    for (key, delta) in deltas {
        if !delta.is_positive() {
            continue;
        }
        for account in [
            BookAccount::clearing_notice_source(key.tenant),
            BookAccount::clearing_quota(key),
            BookAccount::cleared(key),
        ] {
            if store.account(account.id()).await?.is_none() && !missing.contains(&account) {
                missing.push(account);
            }
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let results = store.create_book_accounts(missing).await?;
    if let Some(bad) = results
        .iter()
        .find(|r| **r != guoku_ledger::CreateAccountResult::Ok)
    {
        return Err(invalid(format!("cannot open the clearing quota: {bad:?}")));
    }
    Ok(())
}

/// Books one read 5106/5108 original (the body of [`book_notices`]).
///
/// # Errors
/// As [`book_notices`].
pub async fn book_record(
    store: &Store,
    registry: &Registry,
    treasury: &Treasury<'_>,
    record: &VoucherRecord,
    now: u64,
) -> Result<NoticeOutcome, QuotaError> {
    let library = store.library();
    let key = &record.key;
    let body = match stored_body(&record.body, VoucherFlag::Original) {
        Ok(body) => body,
        Err(e) => {
            let reason = e.to_string();
            library
                .refuse(key, Leg::Original, &reason, treasury.actor, now)
                .await?;
            return Ok(NoticeOutcome::Returned {
                key: key.clone(),
                reasons: vec![reason],
            });
        }
    };
    library
        .acknowledge(key, Leg::Original, treasury.actor, now)
        .await?;
    let checked = check_notice(&body.voucher).and_then(|amount| {
        let deltas = notice_deltas(&body.voucher).map_err(|e| vec![e.to_string()])?;
        let op = notice_op(&body.voucher, &deltas).map_err(|e| vec![e.to_string()])?;
        Ok((amount, deltas, op))
    });
    let (amount, deltas, op) = match checked {
        Ok(checked) => checked,
        Err(reasons) => {
            library
                .return_voucher(key, Leg::Original, &reasons.join("; "), treasury.actor, now)
                .await?;
            return Ok(NoticeOutcome::Returned {
                key: key.clone(),
                reasons,
            });
        }
    };
    for event in [
        ProcessingEvent::StartValidation,
        ProcessingEvent::PassValidation,
        ProcessingEvent::Check,
        ProcessingEvent::Approve,
    ] {
        library
            .process(key, Leg::Original, event, None, treasury.actor, now)
            .await?;
    }
    open_accounts(store, &deltas).await?;
    let booked = store
        .apply_book_ops(now, &[op])
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| invalid("the books answered nothing"))?;
    let refusal = booked.err().map(|r| notice_reason(&r));
    if let Some(reason) =
        record_booking::<QuotaError>(store, record, refusal, treasury.actor, now).await?
    {
        return Ok(NoticeOutcome::BookingFailed {
            key: key.clone(),
            reason,
        });
    }
    let mut receipt = body.clone();
    receipt.flag = VoucherFlag::Receipt;
    let ty = stamping::type_of(registry, &receipt.voucher)?;
    let returner = Returner {
        suite: treasury.suite,
        sealer: treasury.sealer,
        me: treasury.me,
        actor: treasury.actor,
    };
    seal_and_return::<QuotaError>(store, ty, record, &mut receipt, &returner, now).await?;
    Ok(NoticeOutcome::Booked {
        key: key.clone(),
        amount,
    })
}

// ---------------------------------------------------------------------------------------
// 3. Finance takes the receipts
// ---------------------------------------------------------------------------------------

/// What became of one voucher finance read.
#[derive(Debug)]
pub enum ReceiptOutcome {
    /// The receipt of a notice finance sent: its original is now 已收到对方回单 (12).
    Received {
        /// The notice.
        key: VoucherKey,
    },
    /// A receipt that does not answer a notice finance sent to its sender.
    Failed {
        /// The notice key.
        key: VoucherKey,
        /// Why.
        reason: String,
    },
    /// Not a 5105/5106/5108 receipt.
    NotMine {
        /// The voucher.
        key: VoucherKey,
        /// Its leg.
        leg: Leg,
    },
}

/// Finance reads up to `limit` unread vouchers and takes each 5105/5106/5108 receipt: the
/// receipt leg is acknowledged and the original moves to 已收到对方回单.
///
/// # Errors
/// [`QuotaError::Library`].
pub async fn receive_receipts(
    store: &Store,
    actor: &str,
    limit: u32,
    now: u64,
) -> Result<Vec<ReceiptOutcome>, QuotaError> {
    let mut outcomes = Vec::new();
    for record in store.library().read(limit, actor, now).await? {
        let notice = notice_kind(&record.key.vt_code).is_some() || record.key.vt_code == VT_5105;
        if !notice || record.leg != Leg::Receipt {
            outcomes.push(ReceiptOutcome::NotMine {
                key: record.key,
                leg: record.leg,
            });
            continue;
        }
        outcomes.push(take_receipt(store, actor, &record, now).await?);
    }
    Ok(outcomes)
}

/// Takes one read receipt of a notice finance sent (the body of [`receive_receipts`]):
/// PBOC's 5106/5108 receipts and the bank's 5105 receipts alike. It checks only that the
/// receipt answers a notice of ours sent to its sender; the caller routes notice types here.
///
/// # Errors
/// [`QuotaError::Library`].
pub async fn take_receipt(
    store: &Store,
    actor: &str,
    record: &VoucherRecord,
    now: u64,
) -> Result<ReceiptOutcome, QuotaError> {
    let library = store.library();
    let key = record.key.clone();
    let original = library.status(&key, Leg::Original).await?;
    let matches = original
        .as_ref()
        .is_some_and(|sent| sent.sender == record.receiver && sent.receiver == record.sender);
    if !matches {
        let reason = "no notice of ours to the receipt's sender".to_owned();
        library
            .refuse(&key, Leg::Receipt, &reason, actor, now)
            .await?;
        return Ok(ReceiptOutcome::Failed { key, reason });
    }
    library.acknowledge(&key, Leg::Receipt, actor, now).await?;
    super::common::receipt_proves_delivery::<QuotaError>(
        store,
        &key,
        original.as_ref(),
        actor,
        now,
    )
    .await?;
    Ok(ReceiptOutcome::Received { key })
}

// ---------------------------------------------------------------------------------------
// The authorized quota notice to the bank (授权额度通知单, 5105)
// ---------------------------------------------------------------------------------------

/// One line of a 5105: the change to a unit's plan quota, paid from its zero-balance
/// account at the bank.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnitQuotaLine {
    /// The budget unit (AgencyCode).
    pub unit: UnitCode,
    /// The unit's zero-balance account at the bank (AgencyAccoCode).
    pub zba: String,
    /// The function class (ExpFuncCode).
    pub func: FuncClass,
    /// The change (PlanAmt; negative: an adjustment down). Never zero.
    pub amount: Amount,
}

/// What a 5105 tells the bank: for one month, each line's change to a unit's plan quota.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnitQuotaNotice {
    /// The division and year (AdmDivCode, StYear).
    pub tenant: Tenant,
    /// The bank notified (PayBankNo).
    pub bank: BankNo,
    /// The fund type (FundTypeCode).
    pub fund: FundType,
    /// The plan month (SetMonth), 1..=12.
    pub month: u8,
    /// At least one line.
    pub lines: Vec<UnitQuotaLine>,
}

/// The 5105 for `notice`: the template's header (its X fields dropped) and first detail as
/// the pattern of every detail, with VtCode 5105, PayTypeCode 12, `voucher_no`, `date`,
/// the notice's division, year, bank, fund type and SetMonth, one detail per line and the
/// master PlanAmt their sum.
///
/// # Errors
/// [`QuotaError::Invalid`] naming every problem: a month outside 1..=12, no line, a zero
/// line, an empty zero-balance account, a zero or overflowing total.
pub fn notice_5105_voucher(
    template: &Voucher,
    notice: &UnitQuotaNotice,
    voucher_no: &str,
    date: BizDate,
) -> Result<Voucher, QuotaError> {
    let mut problems = Vec::new();
    if !(1..=12).contains(&notice.month) {
        problems.push(format!("SetMonth must be 1 to 12, got {}", notice.month));
    }
    if notice.lines.is_empty() {
        problems.push("a quota notice names at least one unit".to_owned());
    }
    for (i, line) in notice.lines.iter().enumerate() {
        if line.amount.is_zero() {
            problems.push(format!("line {}: PlanAmt must not be zero", i + 1));
        }
        if line.zba.is_empty() {
            problems.push(format!("line {}: AgencyAccoCode is empty", i + 1));
        }
    }
    let total = notice
        .lines
        .iter()
        .try_fold(Amount::ZERO, |sum, l| sum.checked_add(l.amount));
    match total {
        None => problems.push("the lines' sum overflows".to_owned()),
        Some(t) if t.is_zero() && !notice.lines.is_empty() => {
            problems.push("the master PlanAmt (the lines' sum) must not be zero".to_owned());
        }
        Some(_) => {}
    }
    let total = match total {
        Some(total) if problems.is_empty() => total,
        _ => return Err(invalid(problems.join("; "))),
    };
    let mut header = guoku_voucher::Fields::new();
    for (name, value) in template.header.iter() {
        if !name.starts_with('X') {
            header.set(name, value);
        }
    }
    header.set("Id", voucher_no);
    header.set("VtCode", VT_5105);
    header.set("VoucherNo", voucher_no);
    header.set("VouDate", date.to_string());
    header.set("AdmDivCode", notice.tenant.adm_div.as_str());
    header.set("StYear", notice.tenant.year.get().to_string());
    header.set("PayBankNo", notice.bank.as_str());
    header.set("FundTypeCode", notice.fund.as_str());
    header.set("PayTypeCode", PayType::Authorized.code());
    header.set("SetMonth", format!("{:02}", notice.month));
    header.set("PlanAmt", total.to_string());
    let pattern = template.details.first().cloned().unwrap_or_default();
    let details = notice
        .lines
        .iter()
        .enumerate()
        .map(|(i, line)| {
            let mut d = pattern.clone();
            d.set("Id", (i + 1).to_string());
            d.set("AgencyCode", line.unit.as_str());
            d.set("AgencyAccoCode", line.zba.clone());
            d.set("ExpFuncCode", line.func.as_str());
            d.set("PlanAmt", line.amount.to_string());
            d
        })
        .collect();
    Ok(Voucher { header, details })
}

/// What a checked 5105 changes at the bank: each unit's plan quota for one month.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnitQuotaChange {
    /// The division and year.
    pub tenant: Tenant,
    /// The plan month.
    pub month: u8,
    /// The master PlanAmt.
    pub total: Amount,
    /// The change per unit (details of one unit summed; units netting to zero left out).
    pub deltas: Vec<(UnitCode, Amount)>,
}

/// The bank's check of a 5105: VtCode 5105, PayTypeCode (if given) authorized, SetMonth
/// 1..=12, PlanAmt ≠ 0, at least one detail, every detail naming a unit whose zero-balance
/// account (AgencyAccoCode) is one of `accounts` (the accounts this bank keeps), details
/// adding up to the master, and some unit's quota changing.
///
/// # Errors
/// Every reason found, one line each.
pub fn check_unit_quota_notice(
    notice: &Voucher,
    accounts: &[UnitAccount<'_>],
) -> Result<UnitQuotaChange, Vec<String>> {
    if notice.vt_code() != VT_5105 {
        return Err(vec![format!(
            "not an authorized quota notice (5105): VtCode {}",
            notice.vt_code()
        )]);
    }
    let mut reasons = Vec::new();
    let tenant = tenant_of(&notice.key())
        .map_err(|e| reasons.push(e.to_string()))
        .ok();
    if let Some(code) = notice.header.get("PayTypeCode").filter(|c| !c.is_empty())
        && code.parse::<PayType>().ok() != Some(PayType::Authorized)
    {
        reasons.push(format!("PayTypeCode {code} is not authorized (12)"));
    }
    let month = match notice.header.get("SetMonth").map(str::parse::<u8>) {
        Some(Ok(m)) if (1..=12).contains(&m) => Some(m),
        _ => {
            reasons.push("SetMonth is missing or not 01 to 12".to_owned());
            None
        }
    };
    let master = match notice.header.get("PlanAmt").map(str::parse::<Amount>) {
        Some(Ok(a)) if !a.is_zero() => Some(a),
        Some(Ok(_)) => {
            reasons.push("PlanAmt must not be zero".to_owned());
            None
        }
        _ => {
            reasons.push("PlanAmt is missing or not an amount".to_owned());
            None
        }
    };
    if notice.details.is_empty() {
        reasons.push("the notice lists no detail".to_owned());
    }
    let mut groups: BTreeMap<UnitCode, Amount> = BTreeMap::new();
    let mut sum = Some(Amount::ZERO);
    let mut amount_bad = false;
    for (i, d) in notice.details.iter().enumerate() {
        let n = i + 1;
        let amount = match d.get("PlanAmt").map(str::parse::<Amount>) {
            Some(Ok(a)) => {
                sum = sum.and_then(|s| s.checked_add(a));
                Some(a)
            }
            _ => {
                reasons.push(format!("detail {n}: PlanAmt is missing or not an amount"));
                amount_bad = true;
                None
            }
        };
        let unit = match d.get("AgencyCode").map(str::parse::<UnitCode>) {
            Some(Ok(unit)) => unit,
            _ => {
                reasons.push(format!(
                    "detail {n}: AgencyCode is missing or not a unit code"
                ));
                continue;
            }
        };
        let Some(zba) = d.get("AgencyAccoCode").filter(|v| !v.is_empty()) else {
            reasons.push(format!("detail {n}: AgencyAccoCode is missing"));
            continue;
        };
        if !accounts
            .iter()
            .any(|a| a.unit == unit.as_str() && a.acct_no == zba)
        {
            reasons.push(format!(
                "detail {n}: unit {}'s zero-balance account {zba} is not kept by this bank",
                unit.as_str()
            ));
            continue;
        }
        if let Some(amount) = amount {
            let slot = groups.entry(unit).or_insert(Amount::ZERO);
            match slot.checked_add(amount) {
                Some(total) => *slot = total,
                None => reasons.push(format!("detail {n}: the unit's total overflows")),
            }
        }
    }
    if let Some(master) = master
        && !notice.details.is_empty()
        && !amount_bad
        && sum != Some(master)
    {
        let details = sum.map_or_else(|| "(overflow)".to_owned(), |s| s.to_string());
        reasons.push(format!(
            "the details add up to {details}, not the master PlanAmt {master}"
        ));
    }
    let deltas: Vec<(UnitCode, Amount)> =
        groups.into_iter().filter(|(_, d)| !d.is_zero()).collect();
    if reasons.is_empty() && deltas.is_empty() {
        reasons.push("the notice changes no unit's plan quota".to_owned());
    }
    match (tenant, month, master) {
        (Some(tenant), Some(month), Some(total)) if reasons.is_empty() => Ok(UnitQuotaChange {
            tenant,
            month,
            total,
            deltas,
        }),
        _ => Err(reasons),
    }
}

/// The books' operation for a checked 5105: one all-or-nothing operation moving each
/// unit's plan quota for the month (quota notice source → unit quota, or back for a
/// negative change), keyed by the notice so that it is booked once.
///
/// # Errors
/// [`QuotaError::Invalid`] for a change the books cannot express (a bad month).
pub fn unit_quota_op(key: &VoucherKey, change: &UnitQuotaChange) -> Result<BookOp, QuotaError> {
    let mut op = BookOp {
        id: op_id("unit-quota-notice", key),
        legs: Vec::new(),
    };
    for (unit, delta) in &change.deltas {
        let part = BookOp::notice_unit_quota(op.id, change.tenant, unit, change.month, *delta)
            .map_err(|e| invalid(e.to_string()))?;
        op.legs.extend(part.legs);
    }
    Ok(op)
}

/// The reason the bank records when its books refuse a 5105.
#[must_use]
pub fn unit_quota_reason(refusal: &Refusal) -> String {
    match refusal {
        Refusal::NotEnough { .. } => format!(
            "额度值已经使用不能被退回 (the plan quota would fall below what was used): {refusal}"
        ),
        Refusal::NoSuchAccount { .. } => format!("no plan quota to adjust: {refusal}"),
        other => format!("quota notice refused by the books: {other}"),
    }
}

/// Finance's clerk for the bank's quota notices.
pub struct UnitQuotaNotifier<'a> {
    /// Finance's organisation code.
    pub me: &'a str,
    /// The agent bank's organisation code.
    pub bank: &'a str,
    /// The user or worker recorded on every event.
    pub actor: &'a str,
    /// The signature suite.
    pub suite: Suite,
    /// Position 1: the maker's signature (经办人签名).
    pub maker: &'a Signer<'a>,
    /// Position 2: finance's 业务专用章 (a [`Signer::Seal`]).
    pub sealer: &'a Signer<'a>,
}

/// Stamps a 5105 at its original positions (maker, then finance's seal), writes it and
/// sends it to the bank; the outbox delivers it. Sending the same notice again returns the
/// stored record and sends nothing.
///
/// # Errors
/// [`QuotaError::Invalid`] for a voucher that is not a 5105, [`QuotaError::Stamping`],
/// [`QuotaError::Library`] (e.g. another voucher stored under the same key).
pub async fn send_unit_quota_notice(
    store: &Store,
    registry: &Registry,
    notifier: &UnitQuotaNotifier<'_>,
    voucher: Voucher,
    now: u64,
) -> Result<VoucherRecord, QuotaError> {
    if voucher.vt_code() != VT_5105 {
        return Err(invalid("not a 5105"));
    }
    let ty = stamping::type_of(registry, &voucher)?;
    stamp_write_send::<QuotaError>(
        store,
        ty,
        voucher,
        notifier.suite,
        &[notifier.maker, notifier.sealer],
        (notifier.me, notifier.bank),
        notifier.actor,
        now,
    )
    .await
}

/// The bank's desk for finance's 5105s.
pub struct BankDesk<'a> {
    /// The bank's organisation code.
    pub me: &'a str,
    /// The user or worker recorded on every event.
    pub actor: &'a str,
    /// The signature suite.
    pub suite: Suite,
    /// The bank's signer with its 业务专用章 (a [`Signer::Seal`]), for the receipt.
    pub sealer: &'a Signer<'a>,
    /// The unit zero-balance accounts this bank keeps.
    pub accounts: &'a [UnitAccount<'a>],
}

/// The plan-quota accounts a raising change opens (a unit's plan quota is created by its
/// first notice of the month); a lowering change opens nothing and is refused by the books
/// on a missing quota.
async fn open_unit_quota(store: &Store, change: &UnitQuotaChange) -> Result<(), QuotaError> {
    let mut missing = Vec::new();
    for (unit, delta) in &change.deltas {
        if !delta.is_positive() {
            continue;
        }
        let bad_month = |e: Refusal| invalid(e.to_string());
        for account in [
            BookAccount::quota_notice_source(change.tenant),
            BookAccount::unit_quota(change.tenant, unit, change.month).map_err(bad_month)?,
            BookAccount::unit_quota_used(change.tenant, unit, change.month).map_err(bad_month)?,
        ] {
            if store.account(account.id()).await?.is_none() && !missing.contains(&account) {
                missing.push(account);
            }
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let results = store.create_book_accounts(missing).await?;
    // `Exists` is another worker's creation of the same account: fine.
    if let Some(bad) = results.iter().find(|r| {
        !matches!(
            r,
            guoku_ledger::CreateAccountResult::Ok | guoku_ledger::CreateAccountResult::Exists
        )
    }) {
        return Err(invalid(format!("cannot open the plan quota: {bad:?}")));
    }
    Ok(())
}

/// The bank handles one read 5105 original: signs for it, checks it
/// ([`check_unit_quota_notice`]; refused → 退回 with every reason, nothing booked), opens
/// the units' plan-quota accounts if missing, books the change once ([`unit_quota_op`]; a
/// negative change below what payments used is refused → 核算失败 with the books' reason,
/// nothing changed), seals the receipt with its 业务专用章 and sends it back to finance.
/// A record that is not a 5105 original is left untouched ([`NoticeOutcome::NotMine`]).
///
/// # Errors
/// [`QuotaError::Library`], [`QuotaError::Store`] (retryable when the store is
/// unavailable), [`QuotaError::Stamping`] if the bank's seal cannot stamp.
pub async fn on_unit_quota_notice(
    store: &Store,
    registry: &Registry,
    desk: &BankDesk<'_>,
    record: &VoucherRecord,
    now: u64,
) -> Result<NoticeOutcome, QuotaError> {
    let key = &record.key;
    if key.vt_code != VT_5105 || record.leg != Leg::Original {
        return Ok(NoticeOutcome::NotMine {
            key: key.clone(),
            leg: record.leg,
        });
    }
    let library = store.library();
    let body = match stored_body(&record.body, VoucherFlag::Original) {
        Ok(body) => body,
        Err(e) => {
            let reason = e.to_string();
            library
                .refuse(key, Leg::Original, &reason, desk.actor, now)
                .await?;
            return Ok(NoticeOutcome::Returned {
                key: key.clone(),
                reasons: vec![reason],
            });
        }
    };
    library
        .acknowledge(key, Leg::Original, desk.actor, now)
        .await?;
    let checked = check_unit_quota_notice(&body.voucher, desk.accounts).and_then(|change| {
        let op = unit_quota_op(key, &change).map_err(|e| vec![e.to_string()])?;
        Ok((change, op))
    });
    let (change, op) = match checked {
        Ok(checked) => checked,
        Err(reasons) => {
            library
                .return_voucher(key, Leg::Original, &reasons.join("; "), desk.actor, now)
                .await?;
            return Ok(NoticeOutcome::Returned {
                key: key.clone(),
                reasons,
            });
        }
    };
    for event in [
        ProcessingEvent::StartValidation,
        ProcessingEvent::PassValidation,
        ProcessingEvent::Check,
        ProcessingEvent::Approve,
    ] {
        library
            .process(key, Leg::Original, event, None, desk.actor, now)
            .await?;
    }
    open_unit_quota(store, &change).await?;
    let booked = store
        .apply_book_ops(now, &[op])
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| invalid("the books answered nothing"))?;
    let refusal = booked.err().map(|r| unit_quota_reason(&r));
    if let Some(reason) =
        record_booking::<QuotaError>(store, record, refusal, desk.actor, now).await?
    {
        return Ok(NoticeOutcome::BookingFailed {
            key: key.clone(),
            reason,
        });
    }
    let mut receipt = body.clone();
    receipt.flag = VoucherFlag::Receipt;
    let ty = stamping::type_of(registry, &receipt.voucher)?;
    let returner = Returner {
        suite: desk.suite,
        sealer: desk.sealer,
        me: desk.me,
        actor: desk.actor,
    };
    seal_and_return::<QuotaError>(store, ty, record, &mut receipt, &returner, now).await?;
    Ok(NoticeOutcome::Booked {
        key: key.clone(),
        amount: change.total,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use guoku_voucher::Fields;

    fn notice(vt: &str, master: &str, details: &[&str]) -> Voucher {
        let mut header = Fields::new();
        for (n, v) in [
            ("AdmDivCode", "430000"),
            ("StYear", "2025"),
            ("VtCode", vt),
            ("VoucherNo", "QE1"),
            ("PayAmt", master),
        ] {
            header.set(n, v);
        }
        let details = details
            .iter()
            .map(|a| {
                let mut d = Fields::new();
                d.set("PayAmt", *a);
                d
            })
            .collect();
        Voucher { header, details }
    }

    #[test]
    fn the_check_takes_either_sign_and_refuses_zero_wrong_type_and_bad_sums() {
        assert_eq!(
            check_notice(&notice("5108", "-30.00", &["-10.00", "-20.00"])),
            Ok("-30.00".parse().unwrap())
        );
        assert_eq!(
            check_notice(&notice("5108", "0.00", &["0.00"]))
                .unwrap_err()
                .len(),
            1
        );
        let r = check_notice(&notice("5108", "30.00", &["10.00"])).unwrap_err();
        assert!(r[0].contains("10.00"), "{r:?}");
        assert!(check_notice(&notice("5108", "30.00", &[])).is_err());
        assert!(check_notice(&notice("2301", "30.00", &["30.00"])).is_err());
    }
}
