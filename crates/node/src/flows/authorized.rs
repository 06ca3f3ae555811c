//! Authorized payment (财政授权支付, DOMAIN §3.3), first version: single 8202s.
//!
//! 1. [`issue`]: the budget unit checks its stamped 8202 (PayTypeCode 12, paid from its
//!    zero-balance account), writes it into its library and sends it to the agent bank; the
//!    outbox ([`crate::outbox::deliver_due`]) delivers it.
//! 2. [`pay_received`]: the agent bank reads its unread vouchers, acknowledges each 8202
//!    paid from a unit zero-balance account it keeps, moves it through validation, check and
//!    approval, consumes the unit's remaining plan quota and pays (advance → unit
//!    zero-balance account → payees) in one book operation — refused with the books' reason
//!    when the quota is short, leaving the 8202 at BookingFailed (核算失败) with nothing
//!    paid — then fills the receipt fields, stamps the receipt with its 转讫章 and sends it
//!    back to the unit, up to ReceiptSent (回单成功).
//! 3. [`book_receipts`]: the unit reads the receipts its library received, checks them
//!    against its originals, records 已收到对方回单 (12) and marks the receipt processed.
//!
//! The pure parts (amounts, receipt fields, serials, operation ids) come from
//! [`super::direct`]; every book operation's id is derived from the voucher key, so a
//! repeated step is not booked twice.

use guoku_domain::{Amount, BankNo, BizDate, PayType};
use guoku_store::Store;
use guoku_store::books::{BookOp, Tenant, UnitCode};
use guoku_store::library::{NewVoucher, VoucherRecord, content_hash};
use guoku_voucher::lifecycle::{Exchange, Leg};
use guoku_voucher::registry::VoucherType;
use guoku_voucher::{EnvelopeBody, Registry, Voucher, VoucherFlag};

use super::batch::is_batch;
use super::direct::{
    Bank, DirectError, PayOutcome, PayeeBankRule, Payment, ReceiptOutcome, Route,
    fill_completed_bank_no, fill_receipt, op_id, payment_amount, serial_for, tenant_of,
};
use crate::stamping::{self, Positions};

use super::common::{
    Returner, accept_for_processing, envelope_bytes, hold_for_completion, is_awaiting_completion,
    record_booking, record_completion, seal_and_return,
};
use super::direct::{self, field, invalid, stored_body};

/// The authorized payment voucher's type code.
pub const VT_8202: &str = "8202";

/// A budget unit's zero-balance account (零余额账户) at the agent bank.
#[derive(Clone, Copy, Debug)]
pub struct UnitAccount<'a> {
    /// The unit's code (`AgencyCode`).
    pub unit: &'a str,
    /// The account number (`PayAcctNo`).
    pub acct_no: &'a str,
}

/// What an 8202 asks the bank to pay: the unit, the month of its plan quota (from
/// `VouDate`), the amount.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authorized {
    /// The books' tenant (division, year).
    pub tenant: Tenant,
    /// The paying unit.
    pub unit: UnitCode,
    /// The month of the plan quota consumed.
    pub month: u8,
    /// `PayAmt`.
    pub amount: Amount,
}

/// What an original 8202 says: an authorized payment (PayTypeCode 12) with a positive
/// amount, a unit, a date and a paying account.
///
/// # Errors
/// [`DirectError::Invalid`].
pub fn check_8202(voucher: &Voucher) -> Result<Authorized, DirectError> {
    if voucher.vt_code() != VT_8202 {
        return Err(invalid(format!("not an 8202: {}", voucher.vt_code())));
    }
    let pay: PayType = field(voucher, "PayTypeCode")?
        .parse()
        .map_err(|_| invalid("bad PayTypeCode"))?;
    if pay != PayType::Authorized {
        return Err(invalid("an authorized payment needs PayTypeCode 12"));
    }
    let unit: UnitCode = field(voucher, "AgencyCode")?
        .parse()
        .map_err(|_| invalid("bad AgencyCode"))?;
    let date: BizDate = field(voucher, "VouDate")?
        .parse()
        .map_err(|_| invalid("bad VouDate"))?;
    field(voucher, "PayAcctNo")?;
    Ok(Authorized {
        tenant: tenant_of(&voucher.key())?,
        unit,
        month: date.month(),
        amount: payment_amount(voucher)?,
    })
}

/// What the unit checks before sending: an original 8202 of `unit`, paid from its
/// zero-balance account `acct_no`, stamped at every original position.
///
/// # Errors
/// [`DirectError::Invalid`], [`DirectError::Stamping`] for an unknown type.
pub fn check_issue(
    registry: &Registry,
    account: UnitAccount<'_>,
    body: &EnvelopeBody,
) -> Result<Authorized, DirectError> {
    let voucher = &body.voucher;
    if body.flag != VoucherFlag::Original {
        return Err(invalid("not an original"));
    }
    let authorized = check_8202(voucher)?;
    if authorized.unit.as_str() != account.unit {
        return Err(invalid("AgencyCode is not the unit's"));
    }
    if field(voucher, "PayAcctNo")? != account.acct_no {
        return Err(invalid("PayAcctNo is not the unit's zero-balance account"));
    }
    let ty = stamping::type_of(registry, voucher)?;
    let positions = Positions::of(ty)?;
    if let Some(missing) = positions
        .original
        .iter()
        .find(|p| !body.signatures.iter().any(|b| b.no.to_string() == p.name))
    {
        return Err(invalid(format!(
            "the 8202 is not stamped at position {}",
            missing.name
        )));
    }
    Ok(authorized)
}

/// The receipt of a paid 8202: [`fill_receipt`], and the payee the bank paid
/// (`XPayeeAcctNo/Name/BankName`).
///
/// # Errors
/// [`DirectError::Invalid`].
pub fn fill_authorized_receipt(
    original: &EnvelopeBody,
    payment: &Payment,
) -> Result<EnvelopeBody, DirectError> {
    let mut receipt = fill_receipt(original, payment)?;
    let header = &mut receipt.voucher.header;
    for (from, to) in [
        ("PayeeAcctNo", "XPayeeAcctNo"),
        ("PayeeAcctName", "XPayeeAcctName"),
        ("PayeeAcctBankName", "XPayeeAcctBankName"),
    ] {
        if let Some(value) = header.get(from).map(str::to_owned) {
            header.set(to, value);
        }
    }
    Ok(receipt)
}

// ---------------------------------------------------------------------------------------
// 1. The unit sends the 8202
// ---------------------------------------------------------------------------------------

/// The unit writes its stamped 8202 and sends it to the bank; the outbox delivers it. No
/// quota is consumed here: the bank keeps the unit's plan quota.
///
/// Repeating a completed issue changes nothing; a different voucher under the same key is
/// refused.
///
/// # Errors
/// [`DirectError::Invalid`], [`DirectError::Stamping`], [`DirectError::Library`].
pub async fn issue(
    store: &Store,
    registry: &Registry,
    account: UnitAccount<'_>,
    body: &EnvelopeBody,
    route: Route<'_>,
    now: u64,
) -> Result<VoucherRecord, DirectError> {
    check_issue(registry, account, body)?;
    let key = body.voucher.key();
    let library = store.library();
    if let Some(record) = library.status(&key, Leg::Original).await?
        && record.content_sha256 != content_hash(&body.voucher)
    {
        return Err(invalid(format!("{key} is stored with other content")));
    }
    let new = NewVoucher::new(
        &body.voucher,
        Leg::Original,
        route.me,
        route.to,
        envelope_bytes(body),
    );
    let stored = library.write(new, route.actor, now).await?;
    if stored.record.exchange != Exchange::NotSent {
        return Ok(stored.record);
    }
    Ok(library.send(&key, Leg::Original, route.actor, now).await?)
}

// ---------------------------------------------------------------------------------------
// 2. The bank pays
// ---------------------------------------------------------------------------------------

/// One payment run at the bank: reads up to `limit` unread vouchers and pays each 8202
/// among them from the unit zero-balance accounts in `accounts`. An 8202 that does not
/// parse, or names an account not in `accounts`, is refused (签收失败); one the books
/// refuse (e.g. not enough plan quota) is left at BookingFailed (核算失败) with the reason.
///
/// # Errors
/// [`DirectError::Library`] or [`DirectError::Store`] for a store failure (the run stops;
/// what was recorded stays), [`DirectError::Stamping`] if the bank's seal cannot stamp.
pub async fn pay_received(
    store: &Store,
    registry: &Registry,
    bank: &Bank<'_>,
    accounts: &[UnitAccount<'_>],
    limit: u32,
    now: u64,
) -> Result<Vec<PayOutcome>, DirectError> {
    let library = store.library();
    let mut outcomes = Vec::new();
    for record in library.read(limit, bank.actor, now).await? {
        if record.key.vt_code != VT_8202 || record.leg != Leg::Original {
            outcomes.push(PayOutcome::NotMine {
                key: record.key,
                leg: record.leg,
            });
            continue;
        }
        outcomes.push(pay_record(store, registry, bank, accounts, &record, now).await?);
    }
    Ok(outcomes)
}

/// Pays one read 8202 original (the body of [`pay_received`]).
///
/// # Errors
/// As [`pay_received`].
pub async fn pay_record(
    store: &Store,
    registry: &Registry,
    bank: &Bank<'_>,
    accounts: &[UnitAccount<'_>],
    record: &VoucherRecord,
    now: u64,
) -> Result<PayOutcome, DirectError> {
    pay_or_hold(
        store,
        registry,
        bank,
        accounts,
        PayeeBankRule::Optional,
        record,
        now,
    )
    .await
}

/// Pays one read 8202 original as [`pay_record`] does, unless `payee_bank` requires the
/// payee's bank number and this single payment (`BusinessTypeCode` 1) has none: then it is
/// acknowledged and approved and waits for a person at 待补录 (74,
/// [`PayOutcome::AwaitingCompletion`]), nothing booked, until [`complete_payee_bank`].
///
/// # Errors
/// As [`pay_received`].
pub async fn pay_or_hold(
    store: &Store,
    registry: &Registry,
    bank: &Bank<'_>,
    accounts: &[UnitAccount<'_>],
    payee_bank: PayeeBankRule,
    record: &VoucherRecord,
    now: u64,
) -> Result<PayOutcome, DirectError> {
    let key = &record.key;
    let decided = match decide_payment(registry, accounts, record) {
        Ok(decided) => decided,
        Err(e) => return direct::refuse_payment(store, key, e.to_string(), bank.actor, now).await,
    };
    accept_for_processing::<DirectError>(store, key, bank.actor, now).await?;
    let voucher = &decided.0.voucher;
    // A batch (or a BusinessTypeCode this flow does not know) is paid as it is.
    if is_batch(voucher).is_ok_and(|batch| !batch) && payee_bank.holds(voucher) {
        hold_for_completion::<DirectError>(store, key, bank.actor, now).await?;
        return Ok(PayOutcome::AwaitingCompletion { key: key.clone() });
    }
    pay_approved(store, bank, record, decided, None, now).await
}

/// A person at the bank completes the payee's bank number of an 8202 waiting at 待补录
/// (`record`, as the library holds it now): the number goes into the event log
/// (待补录 → 复核), then the voucher is paid as [`pay_or_hold`] pays an approved one, and
/// its sealed receipt carries the number ([`fill_completed_bank_no`]).
///
/// # Errors
/// As [`direct::complete_payee_bank`].
pub async fn complete_payee_bank(
    store: &Store,
    registry: &Registry,
    bank: &Bank<'_>,
    accounts: &[UnitAccount<'_>],
    record: &VoucherRecord,
    bank_no: &BankNo,
    now: u64,
) -> Result<PayOutcome, DirectError> {
    if record.key.vt_code != VT_8202 || !is_awaiting_completion(record) {
        return Err(direct::not_awaiting(&record.key));
    }
    let decided = decide_payment(registry, accounts, record)?;
    record_completion::<DirectError>(store, &record.key, bank_no, bank.actor, now).await?;
    pay_approved(store, bank, record, decided, Some(bank_no), now).await
}

/// What the bank reads from an 8202 before paying it: the original, what it asks, its type.
type Decided<'r> = (EnvelopeBody, Authorized, &'r VoucherType);

fn decide_payment<'r>(
    registry: &'r Registry,
    accounts: &[UnitAccount<'_>],
    record: &VoucherRecord,
) -> Result<Decided<'r>, DirectError> {
    let body = stored_body(&record.body, VoucherFlag::Original)?;
    let authorized = check_8202(&body.voucher)?;
    let acct_no = field(&body.voucher, "PayAcctNo")?;
    if !accounts
        .iter()
        .any(|a| a.unit == authorized.unit.as_str() && a.acct_no == acct_no)
    {
        return Err(invalid(format!(
            "PayAcctNo {acct_no} is not a zero-balance account of unit {}",
            authorized.unit.as_str()
        )));
    }
    let ty = stamping::type_of(registry, &body.voucher)?;
    Ok((body, authorized, ty))
}

/// Books an approved 8202 (复核) and returns its sealed receipt, with the payee's bank
/// number a person `completed`, if any; returns (退回) the voucher when the books refuse.
async fn pay_approved(
    store: &Store,
    bank: &Bank<'_>,
    record: &VoucherRecord,
    (original, authorized, ty): Decided<'_>,
    completed: Option<&BankNo>,
    now: u64,
) -> Result<PayOutcome, DirectError> {
    let key = &record.key;
    // Plan quota used and money fronted (advance → unit ZBA → payees), all or nothing.
    let booked = BookOp::pay_authorized(
        op_id("authorized-pay", key),
        authorized.tenant,
        &authorized.unit,
        authorized.month,
        authorized.amount,
    )
    .map_err(DirectError::from);
    let refusal = match booked {
        Ok(op) => match store.apply_book_ops(now, &[op]).await?.into_iter().next() {
            Some(Ok(_)) => None,
            Some(Err(refusal)) => Some(DirectError::from(refusal).to_string()),
            None => Some("the books answered nothing".to_owned()),
        },
        Err(e) => Some(e.to_string()),
    };
    if let Some(reason) =
        record_booking::<DirectError>(store, record, refusal, bank.actor, now).await?
    {
        // Nothing was paid: the voucher goes back to its sender (退回).
        return direct::return_payment(store, key, reason, bank.actor, now).await;
    }
    let payment = Payment {
        date: bank.pay_date,
        serial: serial_for(bank.serial_prefix, key),
    };
    let mut receipt = fill_authorized_receipt(&original, &payment)?;
    if let Some(bank_no) = completed {
        fill_completed_bank_no(ty, &mut receipt, bank_no);
    }
    let returner = Returner {
        suite: bank.suite,
        sealer: bank.sealer,
        me: bank.me,
        actor: bank.actor,
    };
    seal_and_return::<DirectError>(store, ty, record, &mut receipt, &returner, now).await?;
    Ok(PayOutcome::Paid {
        key: key.clone(),
        amount: authorized.amount,
    })
}

// ---------------------------------------------------------------------------------------
// 3. The unit books the receipt
// ---------------------------------------------------------------------------------------

/// The unit reads up to `limit` unread vouchers and books each 8202 receipt: checked
/// against the original it sent, the original marked acknowledged and 已收到对方回单 (12),
/// the receipt signed for and processed (处理成功).
///
/// # Errors
/// [`DirectError::Library`] or [`DirectError::Store`] for a store failure.
pub async fn book_receipts(
    store: &Store,
    actor: &str,
    limit: u32,
    now: u64,
) -> Result<Vec<ReceiptOutcome>, DirectError> {
    direct::book_receipts_of(VT_8202, store, actor, limit, now).await
}
