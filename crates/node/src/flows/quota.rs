//! Clearing-quota notices (汇总清算额度通知单, DOMAIN §3.1 step 2): finance tells PBOC how
//! much it may clear per (bank, unit, function class, fund type, pay type) — 5108 for
//! direct payment, 5106 for authorized payment. A negative amount is an adjustment.
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

use std::collections::BTreeMap;

use guoku_domain::{Amount, BizDate, FuncClass, PayType};
use guoku_seal::Suite;
use guoku_seal::voucher::Signer;
use guoku_store::books::{BookAccount, BookOp, ClearingKey, Refusal};
use guoku_store::library::{BODY_MAX_BYTES, LibraryError, VoucherRecord};
use guoku_store::{Store, StoreError};
use guoku_voucher::lifecycle::{Exchange, Leg, ProcessingEvent};
use guoku_voucher::{
    EnvelopeBody, Limits, Registry, Voucher, VoucherFlag, VoucherKey, parse_envelope,
};

use super::common::{Returner, record_booking, seal_and_return, stamp_write_send};
use super::direct::{op_id, tenant_of};
use crate::stamping::{self, StampingError};

/// The authorized payment clearing-quota notice (财政授权支付汇总清算额度通知单).
pub const VT_5106: &str = "5106";
/// The direct payment clearing-quota notice (财政直接支付汇总清算额度通知单).
pub const VT_5108: &str = "5108";

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
    let limits = Limits {
        max_input_bytes: BODY_MAX_BYTES,
        ..Limits::default()
    };
    let (envelope, _) = parse_envelope(bytes, &limits)
        .map_err(|e| invalid(format!("stored envelope unreadable: {e}")))?;
    envelope
        .bodies
        .into_iter()
        .find(|b| b.flag == flag)
        .ok_or_else(|| invalid("the stored envelope does not hold the voucher"))
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

/// What became of one received voucher.
#[derive(Debug)]
pub enum NoticeOutcome {
    /// Booked: the clearing quota changed, the sealed receipt written and sent.
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
    /// Not a 5106/5108 original: read and left for its own flow.
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
    /// Not a 5106/5108 receipt.
    NotMine {
        /// The voucher.
        key: VoucherKey,
        /// Its leg.
        leg: Leg,
    },
}

/// Finance reads up to `limit` unread vouchers and takes each 5106/5108 receipt: the
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
        if notice_kind(&record.key.vt_code).is_none() || record.leg != Leg::Receipt {
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

/// Takes one read 5106/5108 receipt (the body of [`receive_receipts`]).
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
    if original.is_some_and(|o| o.exchange == Exchange::Received) {
        library.acknowledge(&key, Leg::Original, actor, now).await?;
    }
    library.receipt_arrives(&key, actor, now).await?;
    Ok(ReceiptOutcome::Received { key })
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
