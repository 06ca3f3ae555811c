//! Refunds (退款, DOMAIN §3.4): a payment the agent bank made bounces back (退汇) from the
//! payee's bank into the zero-balance account; the bank tells finance and sends the money
//! back to the TSA.
//!
//! 1. [`record_refund`] (bank): against an original 5201 or 8202 it paid, receipted and
//!    cleared, the bank books the money back (`BookOp::refund_received`: payees → ZBA, and
//!    for an 8202 the unit's plan quota restored), marks the original 退票成功, and writes,
//!    stamps and sends two vouchers: the refund notice to finance (2203 direct, 2204
//!    authorized: `OriVoucherNo`, `RefundType`) and the refund request to PBOC (2302:
//!    negative `PayAmt`, `TKLX` 1, copying the 2301 that cleared the payment).
//! 2. [`on_refund_notice`] (finance, one read 2203/2204): checks the notice refers to a
//!    payment finance knows — a 5201 it sent whose receipt it has — and is not above what
//!    was paid nor a second refund of it; restores the plan quota the 5201 consumed
//!    ([`super::returns::restore_direct_quota`]); seals and returns a receipt. A notice that
//!    fails is returned (退回) with the reasons, nothing booked.
//! 3. [`on_refund_request`] (PBOC, one read 2302): checks it (negative amounts adding up;
//!    with TKLX 1 every listed voucher cleared by a 2301 PBOC booked for this bank, of the
//!    same clearing quota, not above what was cleared, not refunded before), books
//!    `BookOp::refund_clearing` (clearing quota restored, money bank → TSA), fills the X
//!    fields, seals and returns the receipt; else returns the 2302 with the reasons.
//! 4. [`on_refund_receipt`] (bank, one read receipt of a 2203/2204/2302): records the
//!    receipt; for a 2302 books `BookOp::refund_cleared` (ZBA → PBOC reserve): the ZBA is
//!    back at zero.
//!
//! A refund is done once per original voucher and never above what was paid: the bank
//! refuses a second one (nothing booked or written), its book operation is keyed by the
//! original, finance and PBOC refuse a second notice or request for the same voucher.
//! Every operation id derives from a voucher key, so a repeated step books nothing twice.

use std::collections::{BTreeMap, HashMap};

use guoku_domain::{Amount, BankNo, BizDate, FuncClass, FundType, PayType};
use guoku_seal::Suite;
use guoku_seal::voucher::Signer;
use guoku_store::books::{Applied, BookAccount, BookOp, ClearingKey, Refusal, Tenant, UnitCode};
use guoku_store::library::{Direction, LIST_MAX, LibraryError, VoucherRecord};
use guoku_store::{Store, StoreError};
use guoku_voucher::lifecycle::{Exchange, Leg, Processing, ProcessingEvent};
use guoku_voucher::{
    Context, EnvelopeBody, Fields, Registry, Voucher, VoucherFlag, VoucherKey, validate,
};

use super::authorized::{VT_8202, check_8202};
use super::clearing::{Pboc, VT_2301};
use super::common::{
    ReceiptCheck, Returner, record_booking, record_receipt_check, seal_and_return, stamp_write_send,
};
use super::direct::{VT_5201, op_id, tenant_of};
use super::returns::{Restored, ReturnError, restore_direct_quota};
use crate::stamping::{self, StampingError};

/// 财政直接支付退款通知书 (bank → finance).
pub const VT_2203: &str = "2203";
/// 财政授权支付退款通知书 (bank → finance).
pub const VT_2204: &str = "2204";
/// 申请退款凭证 (bank → PBOC): the refund's money back to the TSA.
pub const VT_2302: &str = "2302";

// ---------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------

/// Why the bank refuses to record a refund. Nothing was booked or written; retrying the
/// same request cannot help.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RefundRefusal {
    /// Refunds are against payment vouchers.
    #[error("{0} is not a payment voucher (5201 or 8202)")]
    NotAPayment(Box<VoucherKey>),
    /// A refund of zero or less.
    #[error("a refund must be positive, got {0}")]
    NotPositive(Amount),
    /// The bank holds no such voucher it received.
    #[error("{0} is not a voucher this bank received")]
    Unknown(Box<VoucherKey>),
    /// The voucher was not paid and receipted (回单成功).
    #[error("{key} was not paid and receipted by this bank: it is {state}")]
    NotPaid {
        /// The original.
        key: Box<VoucherKey>,
        /// Its state.
        state: String,
    },
    /// No 2301 of this bank listing the voucher has PBOC's receipt yet.
    #[error("{0} is not cleared: no clearing request (2301) listing it has PBOC's receipt")]
    NotCleared(Box<VoucherKey>),
    /// The voucher was refunded before.
    #[error("{key} was already refunded ({by})")]
    AlreadyRefunded {
        /// The original.
        key: Box<VoucherKey>,
        /// By what.
        by: String,
    },
    /// More than was paid.
    #[error("the refund {amount} exceeds what was paid, {paid}")]
    AbovePaid {
        /// The refund.
        amount: Amount,
        /// What was paid.
        paid: Amount,
    },
    /// RefundType 2 (全部) gives back everything.
    #[error("RefundType 2 (全部) refunds all that was paid, {paid}, not {amount}")]
    NotAll {
        /// The refund.
        amount: Amount,
        /// What was paid.
        paid: Amount,
    },
    /// A voucher built from the request does not pass the registry's validation.
    #[error("the {vt_code} built for the refund is invalid: {problems}")]
    BadVoucher {
        /// Which voucher.
        vt_code: &'static str,
        /// Every problem, one per `;`.
        problems: String,
    },
    /// The books refused.
    #[error("refused by the books: {0}")]
    Books(Refusal),
}

/// Why a step of the refund flow stopped.
#[derive(Debug, thiserror::Error)]
pub enum RefundError {
    /// Refused; nothing booked or written.
    #[error("refund refused: {0}")]
    Refused(#[from] RefundRefusal),
    /// A stored voucher cannot be read as this flow expects.
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

impl RefundError {
    /// The refusal, when the step was refused.
    #[must_use]
    pub fn refusal(&self) -> Option<&RefundRefusal> {
        match self {
            Self::Refused(refusal) => Some(refusal),
            _ => None,
        }
    }

    /// Whether retrying the same call may succeed (an unavailable store).
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Library(e) => e.is_retryable(),
            Self::Store(e) => e.is_retryable(),
            Self::Refused(_) | Self::Invalid(_) | Self::Stamping(_) => false,
        }
    }
}

fn invalid(what: impl Into<String>) -> RefundError {
    RefundError::Invalid(what.into())
}

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

fn stored_body(bytes: &[u8], flag: VoucherFlag) -> Result<EnvelopeBody, RefundError> {
    super::common::stored_body(bytes, flag).map_err(invalid)
}

fn amount_field(fields: &Fields, name: &str) -> Result<Amount, String> {
    let value = fields
        .value(name)
        .ok_or_else(|| format!("{name} is missing"))?;
    value
        .parse::<Amount>()
        .map_err(|_| format!("{name} is not an amount: {value}"))
}

fn same_tenant_key(like: &VoucherKey, vt_code: &str, voucher_no: &str) -> VoucherKey {
    VoucherKey {
        adm_div_code: like.adm_div_code.clone(),
        st_year: like.st_year.clone(),
        vt_code: vt_code.to_owned(),
        voucher_no: voucher_no.to_owned(),
    }
}

fn booked(record: &VoucherRecord) -> bool {
    matches!(
        record.processing,
        Some(Processing::Processed | Processing::Sealed | Processing::ReceiptSent)
    )
}

fn state_of(record: &VoucherRecord) -> String {
    match record.processing {
        Some(p) => format!("{}, {p}", record.exchange),
        None => record.exchange.to_string(),
    }
}

/// Every stored leg of `vt_code` in any of `states`, all pages.
async fn all_in(
    store: &Store,
    vt_code: &str,
    leg: Leg,
    states: &[Exchange],
) -> Result<Vec<VoucherRecord>, RefundError> {
    let library = store.library();
    let mut all = Vec::new();
    for &state in states {
        let mut after = 0;
        loop {
            let page = library
                .by_status(vt_code, leg, state, after, LIST_MAX)
                .await?;
            all.extend(page.items);
            match page.next {
                Some(next) => after = next,
                None => break,
            }
        }
    }
    Ok(all)
}

/// The exchange states of a sent voucher that still stands (not refused, returned or
/// voided).
const STANDING: [Exchange; 5] = [
    Exchange::NotSent,
    Exchange::NotReceived,
    Exchange::Received,
    Exchange::Acknowledged,
    Exchange::ReceiptReceived,
];

fn check_with_registry(
    registry: &Registry,
    vt_code: &'static str,
    voucher: &Voucher,
    today: BizDate,
) -> Result<(), RefundError> {
    let problems = validate(
        voucher,
        registry,
        &Context {
            today,
            flag: VoucherFlag::Original,
        },
    );
    if problems.is_empty() {
        return Ok(());
    }
    let problems = problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    Err(RefundRefusal::BadVoucher { vt_code, problems }.into())
}

async fn apply_one(
    store: &Store,
    op: BookOp,
    now: u64,
) -> Result<Result<Applied, Refusal>, RefundError> {
    store
        .apply_book_ops(now, &[op])
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| invalid("the books answered nothing"))
}

/// Returns (退回) a received original with `reasons`, joined.
async fn give_back(
    store: &Store,
    key: &VoucherKey,
    reasons: &[String],
    actor: &str,
    now: u64,
) -> Result<(), RefundError> {
    store
        .library()
        .return_voucher(key, Leg::Original, &reasons.join("; "), actor, now)
        .await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 1. The bank records the refund
// ---------------------------------------------------------------------------------------

/// `RefundType` (退款类型).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefundType {
    /// 1 单笔: one payment (or part of it).
    Single,
    /// 2 全部: all that was paid.
    All,
    /// 5 不确定.
    Uncertain,
}

impl RefundType {
    /// The code written in the voucher.
    #[must_use]
    pub fn code(self) -> &'static str {
        match self {
            Self::Single => "1",
            Self::All => "2",
            Self::Uncertain => "5",
        }
    }
}

/// `PayMsgNo` (支付报文编号): which payment system carries the refund.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PayMsg {
    /// 100 大额.
    Large,
    /// 001 小额.
    Small,
}

impl PayMsg {
    /// The code written in the voucher.
    #[must_use]
    pub fn code(self) -> &'static str {
        match self {
            Self::Large => "100",
            Self::Small => "001",
        }
    }
}

/// What the bank records: a refund of `amount` against the payment voucher `original`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefundRequest {
    /// The paid 5201 or 8202.
    pub original: VoucherKey,
    /// How much came back (positive).
    pub amount: Amount,
    /// `RefundType`.
    pub refund_type: RefundType,
    /// The refund notice's VoucherNo (2203/2204).
    pub notice_no: String,
    /// The refund request's VoucherNo (2302).
    pub request_no: String,
    /// VouDate of both.
    pub date: BizDate,
    /// `PayDictateNo` (支付交易序号) of the bounced transfer, up to 20 digits.
    pub dictate_no: String,
    /// `PayMsgNo`.
    pub msg: PayMsg,
    /// `PayEntrustDate` (委托日期).
    pub entrust_date: BizDate,
    /// `Remark`, if any.
    pub remark: Option<String>,
}

/// The bank's refund clerk.
pub struct RefundDesk<'a> {
    /// The bank's organisation code.
    pub me: &'a str,
    /// Finance's organisation code (receives the 2203/2204).
    pub finance: &'a str,
    /// PBOC's organisation code (receives the 2302).
    pub pboc: &'a str,
    /// The user or worker recorded on every event.
    pub actor: &'a str,
    /// The signature suite.
    pub suite: Suite,
    /// Position 1: the maker's signature (经办人签名).
    pub maker: &'a Signer<'a>,
    /// Position 2: the bank's 业务专用章 (a [`Signer::Seal`]).
    pub sealer: &'a Signer<'a>,
}

/// What [`record_refund`] did.
#[derive(Clone, Debug)]
pub struct Refunded {
    /// The refund notice to finance, sent.
    pub notice: VoucherRecord,
    /// The refund request to PBOC, sent.
    pub request: VoucherRecord,
    /// The amount.
    pub amount: Amount,
    /// The bank's booking: now, or by an earlier call with this request.
    pub booked: Applied,
}

/// The refund notice type for a payment voucher type.
#[must_use]
pub fn notice_type_for(vt_code: &str) -> Option<&'static str> {
    match vt_code {
        VT_5201 => Some(VT_2203),
        VT_8202 => Some(VT_2204),
        _ => None,
    }
}

/// The pay type a payment voucher type clears under.
fn pay_type_of(vt_code: &str) -> Option<PayType> {
    match vt_code {
        VT_5201 | VT_2203 => Some(PayType::Direct),
        VT_8202 | VT_2204 => Some(PayType::Authorized),
        _ => None,
    }
}

/// The bank's check of a refund against what it paid: positive, not above `paid`, and all
/// of it for RefundType 2.
///
/// # Errors
/// [`RefundRefusal::NotPositive`], [`RefundRefusal::AbovePaid`], [`RefundRefusal::NotAll`].
pub fn check_amount(
    amount: Amount,
    paid: Amount,
    refund_type: RefundType,
) -> Result<(), RefundRefusal> {
    if !amount.is_positive() {
        return Err(RefundRefusal::NotPositive(amount));
    }
    if amount.fen() > paid.fen() {
        return Err(RefundRefusal::AbovePaid { amount, paid });
    }
    if refund_type == RefundType::All && amount != paid {
        return Err(RefundRefusal::NotAll { amount, paid });
    }
    Ok(())
}

/// The refund notice (2203 for a 5201, 2204 for an 8202) for `request`: the original's
/// budget, payee, payer and bank fields, `OriVoucherNo`, `RefundType`, `PayAmt` the refund,
/// and one detail.
///
/// # Errors
/// [`RefundError::Invalid`] for an original that is not a 5201/8202.
pub fn notice_voucher(original: &Voucher, request: &RefundRequest) -> Result<Voucher, RefundError> {
    let vt_code = notice_type_for(original.vt_code())
        .ok_or_else(|| invalid(format!("{} is not a 5201/8202", original.key())))?;
    let key = original.key();
    let from = &original.header;
    let mut header = Fields::new();
    header.set("Id", request.notice_no.clone());
    header.set("AdmDivCode", key.adm_div_code.clone());
    header.set("StYear", key.st_year.clone());
    header.set("VtCode", vt_code);
    header.set("VouDate", request.date.to_string());
    header.set("VoucherNo", request.notice_no.clone());
    header.set("OriVoucherNo", key.voucher_no.clone());
    header.set("RefundType", request.refund_type.code());
    for name in [
        "FundTypeCode",
        "PayTypeCode",
        "AgencyCode",
        "AgencyName",
        "ExpFuncCode",
        "PayeeAcctNo",
        "PayeeAcctName",
        "PayeeAcctBankName",
        "PayAcctNo",
        "PayAcctName",
        "PayAcctBankName",
        "PayBankCode",
        "PayBankName",
    ] {
        if let Some(value) = from.value(name) {
            header.set(name, value);
        }
    }
    let amount = request.amount.to_string();
    header.set("PayAmt", amount.clone());
    if let Some(remark) = &request.remark {
        header.set("Remark", remark.clone());
    }
    let mut detail = Fields::new();
    detail.set("Id", "1");
    detail.set("OriVoucherNo", key.voucher_no);
    for name in ["ExpFuncCode", "PayeeAcctNo", "PayeeAcctName"] {
        if let Some(value) = from.value(name) {
            detail.set(name, value);
        }
    }
    detail.set("PayAmt", amount);
    Ok(Voucher {
        header,
        details: vec![detail],
    })
}

/// The refund request (2302) for `request`: the header of the 2301 that cleared the
/// payment (accounts, treasury, bank, fund and pay type; its X fields dropped), `PayAmt`
/// the refund negated, TKLX 1 (正常退款), and the 2301's detail for the payment with the
/// negated amount.
///
/// # Errors
/// [`RefundError::Invalid`] when `clearing` does not list the payment.
pub fn request_voucher(
    clearing: &Voucher,
    request: &RefundRequest,
) -> Result<Voucher, RefundError> {
    let paid_no = request.original.voucher_no.as_str();
    let line = clearing
        .details
        .iter()
        .find(|d| d.get("VoucherNo") == Some(paid_no))
        .ok_or_else(|| invalid(format!("{} does not list {paid_no}", clearing.key())))?;
    let negated = request.amount.negated().to_string();
    let mut header = Fields::new();
    for (name, value) in clearing.header.iter() {
        if !name.starts_with('X') && !matches!(name, "PayAmt" | "Remark") {
            header.set(name, value);
        }
    }
    header.set("Id", request.request_no.clone());
    header.set("VtCode", VT_2302);
    header.set("VouDate", request.date.to_string());
    header.set("VoucherNo", request.request_no.clone());
    header.set("PayAmt", negated.clone());
    header.set("PayDictateNo", request.dictate_no.clone());
    header.set("PayMsgNo", request.msg.code());
    header.set("PayEntrustDate", request.entrust_date.to_string());
    header.set("TKLX", "1");
    if let Some(remark) = &request.remark {
        header.set("Remark", remark.clone());
    }
    let mut detail = Fields::new();
    detail.set("Id", "1");
    for name in [
        "VoucherNo",
        "SupDepCode",
        "AgencyCode",
        "ExpFuncCode",
        "PaySummaryName",
    ] {
        if let Some(value) = line.value(name) {
            detail.set(name, value);
        }
    }
    detail.set("PayAmt", negated);
    Ok(Voucher {
        header,
        details: vec![detail],
    })
}

/// The bank's 2301 that cleared `original`: a standing 2301 of its, of the payment's pay
/// type, listing it, whose receipt from PBOC is in the library.
async fn clearing_of(store: &Store, original: &VoucherKey) -> Result<Option<Voucher>, RefundError> {
    let library = store.library();
    let pay = pay_type_of(&original.vt_code);
    for record in all_in(store, VT_2301, Leg::Original, &STANDING).await? {
        if record.direction != Direction::Sent
            || record.key.adm_div_code != original.adm_div_code
            || record.key.st_year != original.st_year
        {
            continue;
        }
        let body = stored_body(&record.body, VoucherFlag::Original)?;
        let voucher = body.voucher;
        let same_pay = voucher
            .header
            .get("PayTypeCode")
            .and_then(|c| c.parse::<PayType>().ok())
            == pay;
        let lists = voucher
            .details
            .iter()
            .any(|d| d.get("VoucherNo") == Some(original.voucher_no.as_str()));
        if !same_pay || !lists {
            continue;
        }
        if library.status(&record.key, Leg::Receipt).await?.is_some() {
            return Ok(Some(voucher));
        }
    }
    Ok(None)
}

/// A standing voucher of `vt_code` this node sent that refers to `original` (by `field`
/// in the header or a detail), other than `except`.
async fn sent_refund_of(
    store: &Store,
    vt_code: &str,
    original: &VoucherKey,
    except: &VoucherKey,
) -> Result<Option<VoucherKey>, RefundError> {
    for record in all_in(store, vt_code, Leg::Original, &STANDING).await? {
        if record.direction != Direction::Sent
            || &record.key == except
            || record.key.adm_div_code != original.adm_div_code
            || record.key.st_year != original.st_year
        {
            continue;
        }
        let voucher = stored_body(&record.body, VoucherFlag::Original)?.voucher;
        let refers = if vt_code == VT_2302 {
            voucher
                .details
                .iter()
                .any(|d| d.get("VoucherNo") == Some(original.voucher_no.as_str()))
                && voucher
                    .header
                    .get("PayTypeCode")
                    .and_then(|c| c.parse::<PayType>().ok())
                    == pay_type_of(&original.vt_code)
        } else {
            voucher.header.get("OriVoucherNo") == Some(original.voucher_no.as_str())
        };
        if refers {
            return Ok(Some(record.key));
        }
    }
    Ok(None)
}

/// The bank's booking of the money that came back: payees → the paying ZBA (finance's for
/// a 5201, the unit's for an 8202, whose plan quota is restored in the same chain), keyed
/// by the original so that a payment is refunded once.
fn received_op(original: &Voucher, amount: Amount) -> Result<BookOp, RefundError> {
    let key = original.key();
    let id = op_id("refund-received", &key);
    let op = if key.vt_code == VT_8202 {
        let a = check_8202(original).map_err(|e| invalid(e.to_string()))?;
        let zba = BookAccount::unit_zba(a.tenant, &a.unit);
        BookOp::refund_received(id, zba, Some((&a.unit, a.month)), amount)
    } else {
        let tenant = tenant_of(&key).map_err(|e| invalid(e.to_string()))?;
        BookOp::refund_received(id, BookAccount::finance_zba(tenant), None, amount)
    };
    op.map_err(|r| RefundRefusal::Books(r).into())
}

/// The bank records a refund (退汇) against a payment it made: checks that `request.original`
/// is a 5201/8202 it received, paid and receipted (回单成功) and cleared (a 2301 listing it
/// has PBOC's receipt), that it was not refunded before and that the amount is within
/// what was paid; books the money back into the zero-balance account (and for an 8202 the
/// unit's plan quota); marks the original 退票成功; writes, stamps (maker, 业务专用章) and
/// sends the refund notice to finance and the refund request (2302) to PBOC. The outbox
/// delivers them.
///
/// Repeating a completed or interrupted call with the same request finishes it and books
/// nothing twice. A second refund of the same original (other numbers, or another amount)
/// is refused with [`RefundRefusal::AlreadyRefunded`], nothing booked or written.
///
/// # Errors
/// [`RefundError::Refused`] (nothing booked or written), [`RefundError::Stamping`],
/// [`RefundError::Library`], [`RefundError::Store`].
pub async fn record_refund(
    store: &Store,
    registry: &Registry,
    desk: &RefundDesk<'_>,
    request: &RefundRequest,
    now: u64,
) -> Result<Refunded, RefundError> {
    let library = store.library();
    let ori = &request.original;
    let notice_vt = notice_type_for(&ori.vt_code)
        .ok_or_else(|| RefundRefusal::NotAPayment(Box::new(ori.clone())))?;
    let record = library
        .status(ori, Leg::Original)
        .await?
        .filter(|r| r.direction == Direction::Received)
        .ok_or_else(|| RefundRefusal::Unknown(Box::new(ori.clone())))?;
    let resumed = match record.processing {
        Some(Processing::ReceiptSent) => false,
        Some(Processing::Bounced) => true,
        _ => {
            return Err(RefundRefusal::NotPaid {
                key: Box::new(ori.clone()),
                state: state_of(&record),
            }
            .into());
        }
    };
    let original = stored_body(&record.body, VoucherFlag::Original)?.voucher;
    let receipt =
        library
            .status(ori, Leg::Receipt)
            .await?
            .ok_or_else(|| RefundRefusal::NotPaid {
                key: Box::new(ori.clone()),
                state: "without the receipt it sent".into(),
            })?;
    let paid = amount_field(
        &stored_body(&receipt.body, VoucherFlag::Receipt)?
            .voucher
            .header,
        "XPayAmt",
    )
    .map_err(invalid)?;
    check_amount(request.amount, paid, request.refund_type)?;
    let notice_key = same_tenant_key(ori, notice_vt, &request.notice_no);
    let request_key = same_tenant_key(ori, VT_2302, &request.request_no);
    for (vt, mine) in [(notice_vt, &notice_key), (VT_2302, &request_key)] {
        if let Some(by) = sent_refund_of(store, vt, ori, mine).await? {
            return Err(RefundRefusal::AlreadyRefunded {
                key: Box::new(ori.clone()),
                by: format!("by {by}"),
            }
            .into());
        }
    }
    let clearing = clearing_of(store, ori)
        .await?
        .ok_or_else(|| RefundRefusal::NotCleared(Box::new(ori.clone())))?;
    let notice = notice_voucher(&original, request)?;
    check_with_registry(registry, notice_vt, &notice, request.date)?;
    let refund_request = request_voucher(&clearing, request)?;
    check_with_registry(registry, VT_2302, &refund_request, request.date)?;
    let notice_ty = stamping::type_of(registry, &notice)?;
    let request_ty = stamping::type_of(registry, &refund_request)?;

    // The booking is the claim: keyed by the original, a payment's refund is booked once.
    let booked = match apply_one(store, received_op(&original, request.amount)?, now).await? {
        Ok(applied) => applied,
        Err(Refusal::IdReused { .. }) => {
            return Err(RefundRefusal::AlreadyRefunded {
                key: Box::new(ori.clone()),
                by: "a refund of another amount is booked".into(),
            }
            .into());
        }
        Err(refusal) => return Err(RefundRefusal::Books(refusal).into()),
    };
    if !resumed {
        library
            .process(
                ori,
                Leg::Original,
                ProcessingEvent::Bounce,
                Some(&format!("refund {}", notice_key.voucher_no)),
                desk.actor,
                now,
            )
            .await?;
    }
    let signers = [desk.maker, desk.sealer];
    let notice = stamp_write_send::<RefundError>(
        store,
        notice_ty,
        notice,
        desk.suite,
        &signers,
        (desk.me, desk.finance),
        desk.actor,
        now,
    )
    .await?;
    let request_record = stamp_write_send::<RefundError>(
        store,
        request_ty,
        refund_request,
        desk.suite,
        &signers,
        (desk.me, desk.pboc),
        desk.actor,
        now,
    )
    .await?;
    Ok(Refunded {
        notice,
        request: request_record,
        amount: request.amount,
        booked,
    })
}

/// Stamps a 2302 at its original positions (maker, then the bank's seal), writes it and
/// sends it to PBOC — for a refund request built otherwise than by [`record_refund`] (e.g.
/// a 负凭证, TKLX 2). No book operation: the caller books what the request stands for.
///
/// # Errors
/// [`RefundError::Invalid`] for a voucher that is not a 2302, [`RefundError::Stamping`],
/// [`RefundError::Library`].
pub async fn send_request(
    store: &Store,
    registry: &Registry,
    desk: &RefundDesk<'_>,
    voucher: Voucher,
    now: u64,
) -> Result<VoucherRecord, RefundError> {
    if voucher.vt_code() != VT_2302 {
        return Err(invalid("not a 2302"));
    }
    let ty = stamping::type_of(registry, &voucher)?;
    stamp_write_send::<RefundError>(
        store,
        ty,
        voucher,
        desk.suite,
        &[desk.maker, desk.sealer],
        (desk.me, desk.pboc),
        desk.actor,
        now,
    )
    .await
}

// ---------------------------------------------------------------------------------------
// 2. Finance takes the refund notice
// ---------------------------------------------------------------------------------------

/// Finance's side of refund notices.
pub struct NoticeDesk<'a> {
    /// Finance's organisation code.
    pub me: &'a str,
    /// The user or worker recorded on every event.
    pub actor: &'a str,
    /// The signature suite.
    pub suite: Suite,
    /// Finance's signer with its 业务专用章 for the receipt (a [`Signer::Seal`]).
    pub sealer: &'a Signer<'a>,
}

/// What became of one refund notice.
#[derive(Debug)]
pub enum NoticeOutcome {
    /// Accepted: the quota restored (for a 2203), the sealed receipt written and sent.
    Accepted {
        /// The notice.
        key: VoucherKey,
        /// The payment refunded.
        original: VoucherKey,
        /// The refund.
        amount: Amount,
        /// What came back to finance's plan.
        restored: Restored,
    },
    /// Returned (退回) with the reasons; nothing booked.
    Returned {
        /// The notice.
        key: VoucherKey,
        /// Why.
        reasons: Vec<String>,
    },
    /// Unreadable: refused (签收失败).
    Refused {
        /// The notice.
        key: VoucherKey,
        /// Why.
        reason: String,
    },
    /// Not a received 2203/2204 original: left untouched.
    NotMine {
        /// The voucher.
        key: VoucherKey,
        /// Its leg.
        leg: Leg,
    },
}

/// What the notice says, checked on its own: the type's pay type, a positive amount the
/// details (if any) add up to, the refunded VoucherNo and a RefundType.
///
/// # Errors
/// Every reason found.
pub fn check_notice_form(notice: &Voucher) -> Result<(Amount, String, String), Vec<String>> {
    let mut reasons = Vec::new();
    let vt = notice.vt_code();
    let Some(pay) = pay_type_of(vt).filter(|_| matches!(vt, VT_2203 | VT_2204)) else {
        return Err(vec![format!(
            "not a refund notice (2203/2204): VtCode {vt}"
        )]);
    };
    let h = &notice.header;
    if h.get("PayTypeCode").and_then(|c| c.parse::<PayType>().ok()) != Some(pay) {
        reasons.push(format!("PayTypeCode must be {} for a {vt}", pay.code()));
    }
    let amount = match amount_field(h, "PayAmt") {
        Ok(a) if a.is_positive() => Some(a),
        Ok(a) => {
            reasons.push(format!("PayAmt must be positive, got {a}"));
            None
        }
        Err(e) => {
            reasons.push(e);
            None
        }
    };
    let ori = h.value("OriVoucherNo").map(str::to_owned);
    if ori.is_none() {
        reasons.push("OriVoucherNo is missing".into());
    }
    let refund_type = h.value("RefundType").map(str::to_owned);
    if !matches!(refund_type.as_deref(), Some("1" | "2" | "5")) {
        reasons.push("RefundType must be 1, 2 or 5".into());
    }
    if let Some(master) = amount
        && !notice.details.is_empty()
    {
        let mut sum = Some(Amount::ZERO);
        for (i, d) in notice.details.iter().enumerate() {
            match amount_field(d, "PayAmt") {
                Ok(a) => sum = sum.and_then(|s| s.checked_add(a)),
                Err(e) => {
                    reasons.push(format!("detail {}: {e}", i + 1));
                    sum = None;
                }
            }
        }
        if sum.is_some_and(|s| s != master) {
            reasons.push(format!("the details do not add up to PayAmt {master}"));
        }
    }
    match (amount, ori, refund_type) {
        (Some(a), Some(o), Some(t)) if reasons.is_empty() => Ok((a, o, t)),
        _ => Err(reasons),
    }
}

/// What finance knows of the payment a notice refunds: the amount paid, when it is a
/// payment finance sent to the notice's sender and whose receipt it booked.
async fn paid_by_sender(
    store: &Store,
    original: &VoucherKey,
    bank: &str,
) -> Result<Result<Amount, String>, RefundError> {
    let library = store.library();
    let Some(sent) = library
        .status(original, Leg::Original)
        .await?
        .filter(|r| r.direction == Direction::Sent)
    else {
        return Ok(Err(format!("{original} is not a payment finance sent")));
    };
    if sent.receiver != bank {
        return Ok(Err(format!("{original} was not sent to the bank {bank}")));
    }
    if sent.exchange != Exchange::ReceiptReceived {
        return Ok(Err(format!(
            "{original} has no receipt (回单) of payment: it is {}",
            sent.exchange
        )));
    }
    let Some(receipt) = library
        .status(original, Leg::Receipt)
        .await?
        .filter(|r| r.processing == Some(Processing::Processed))
    else {
        return Ok(Err(format!("{original}'s receipt is not booked")));
    };
    let voucher = stored_body(&receipt.body, VoucherFlag::Receipt)?.voucher;
    Ok(amount_field(&voucher.header, "XPayAmt"))
}

/// A booked notice of `vt_code` other than `except`, from `sender`, refunding `original`.
async fn received_notice_of(
    store: &Store,
    vt_code: &str,
    original: &VoucherKey,
    sender: &str,
    except: &VoucherKey,
) -> Result<Option<VoucherKey>, RefundError> {
    for record in all_in(store, vt_code, Leg::Original, &[Exchange::Acknowledged]).await? {
        if record.direction != Direction::Received
            || &record.key == except
            || record.sender != sender
            || !booked(&record)
            || record.key.adm_div_code != original.adm_div_code
            || record.key.st_year != original.st_year
        {
            continue;
        }
        let voucher = stored_body(&record.body, VoucherFlag::Original)?.voucher;
        if voucher.header.get("OriVoucherNo") == Some(original.voucher_no.as_str()) {
            return Ok(Some(record.key));
        }
    }
    Ok(None)
}

/// Finance takes one read refund notice (2203/2204): acknowledges it, checks it
/// ([`check_notice_form`]; for a 2203 the 5201 must be one finance sent to the notice's
/// sender with its receipt booked, the refund within what was paid — all of it for
/// RefundType 2 — and no other notice refunding it; a 2204's 8202 is checked the same way
/// when this node sent it, finance itself never sees 8202s), restores the plan quota the
/// 5201 consumed (once), records the booking, seals the receipt with its 业务专用章 and
/// sends it back. A notice that fails a check or whose restore the books refuse is
/// returned (退回) with the reasons; nothing is booked.
///
/// # Errors
/// [`RefundError::Library`], [`RefundError::Store`], [`RefundError::Stamping`] if the seal
/// cannot stamp.
pub async fn on_refund_notice(
    store: &Store,
    registry: &Registry,
    desk: &NoticeDesk<'_>,
    record: &VoucherRecord,
    now: u64,
) -> Result<NoticeOutcome, RefundError> {
    let key = &record.key;
    if !matches!(key.vt_code.as_str(), VT_2203 | VT_2204)
        || record.leg != Leg::Original
        || record.direction != Direction::Received
    {
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
            return Ok(NoticeOutcome::Refused {
                key: key.clone(),
                reason,
            });
        }
    };
    library
        .acknowledge(key, Leg::Original, desk.actor, now)
        .await?;
    let returned = |reasons: Vec<String>| NoticeOutcome::Returned {
        key: key.clone(),
        reasons,
    };
    let (amount, ori_no, refund_type) = match check_notice_form(&body.voucher) {
        Ok(form) => form,
        Err(reasons) => {
            give_back(store, key, &reasons, desk.actor, now).await?;
            return Ok(returned(reasons));
        }
    };
    let ori_vt = if key.vt_code == VT_2203 {
        VT_5201
    } else {
        VT_8202
    };
    let original = same_tenant_key(key, ori_vt, &ori_no);
    let must_know = key.vt_code == VT_2203
        || library
            .status(&original, Leg::Original)
            .await?
            .is_some_and(|r| r.direction == Direction::Sent);
    let mut reasons = Vec::new();
    if must_know {
        match paid_by_sender(store, &original, &record.sender).await? {
            Ok(paid) if amount.fen() > paid.fen() => {
                reasons.push(format!("the refund {amount} exceeds what was paid, {paid}"));
            }
            Ok(paid) if refund_type == "2" && amount != paid => reasons.push(format!(
                "RefundType 2 (全部) refunds all that was paid, {paid}, not {amount}"
            )),
            Ok(_) => {}
            Err(reason) => reasons.push(reason),
        }
    }
    if let Some(by) =
        received_notice_of(store, &key.vt_code, &original, &record.sender, key).await?
    {
        reasons.push(format!("{original} was already refunded by {by}"));
    }
    if !reasons.is_empty() {
        give_back(store, key, &reasons, desk.actor, now).await?;
        return Ok(returned(reasons));
    }
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
    let restored = if key.vt_code == VT_2203 {
        match restore_direct_quota(store, &original, Some(amount), now).await {
            Ok(restored) => Ok(restored),
            Err(ReturnError::Refused(refusal)) => Err(refusal.to_string()),
            Err(ReturnError::Invalid(what)) => Err(what),
            Err(ReturnError::Library(e)) => return Err(e.into()),
            Err(ReturnError::Store(e)) => return Err(e.into()),
        }
    } else {
        // The unit's plan quota of an authorized payment is kept at the bank, which
        // restored it when it booked the refund.
        Ok(Restored::Nothing)
    };
    let refusal = restored.as_ref().err().cloned();
    if let Some(reason) =
        record_booking::<RefundError>(store, record, refusal, desk.actor, now).await?
    {
        let reasons = vec![reason];
        give_back(store, key, &reasons, desk.actor, now).await?;
        return Ok(returned(reasons));
    }
    let restored = restored.unwrap_or(Restored::Nothing);
    let mut receipt = body.clone();
    receipt.flag = VoucherFlag::Receipt;
    let ty = stamping::type_of(registry, &receipt.voucher)?;
    let returner = Returner {
        suite: desk.suite,
        sealer: desk.sealer,
        me: desk.me,
        actor: desk.actor,
    };
    seal_and_return::<RefundError>(store, ty, record, &mut receipt, &returner, now).await?;
    Ok(NoticeOutcome::Accepted {
        key: key.clone(),
        original,
        amount,
        restored,
    })
}

// ---------------------------------------------------------------------------------------
// 3. PBOC takes the refund request
// ---------------------------------------------------------------------------------------

/// One payment PBOC cleared: a detail of a 2301 it booked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClearedLine {
    /// The 2301.
    pub request: VoucherKey,
    /// The 2301's pay type.
    pub pay: PayType,
    /// The 2301's FundTypeCode.
    pub fund: String,
    /// The 2301's PayBankNo.
    pub bank_no: String,
    /// The detail's AgencyCode.
    pub agency: String,
    /// The detail's ExpFuncCode.
    pub func: String,
    /// The amount cleared.
    pub amount: Amount,
}

/// What PBOC knows about the payments a 2302 lists, by (pay type, VoucherNo): the lines
/// of 2301s it cleared for the 2302's sender, and the payments refunded before (by which
/// 2302).
#[derive(Clone, Debug, Default)]
pub struct PbocKnows {
    /// Cleared payments.
    pub cleared: HashMap<(PayType, String), ClearedLine>,
    /// Payments refunded by an earlier booked 2302.
    pub refunded: HashMap<(PayType, String), VoucherKey>,
}

/// PBOC's check of a refund request: a 2302, negative `PayAmt` equal to the sum of its
/// negative details, TKLX 1 or 2, a direct or authorized pay type, no payment listed twice
/// or refunded before; with TKLX 1 (正常退款) every listed payment cleared by a 2301 PBOC
/// booked for this bank, of the same fund type, bank, unit and function class, and not
/// refunded beyond what was cleared. Returns the refund's size (positive).
///
/// # Errors
/// Every reason found.
pub fn check_refund_request(request: &Voucher, knows: &PbocKnows) -> Result<Amount, Vec<String>> {
    if request.vt_code() != VT_2302 {
        return Err(vec![format!(
            "not a refund request (2302): VtCode {}",
            request.vt_code()
        )]);
    }
    let h = &request.header;
    let mut reasons = Vec::new();
    let master = match amount_field(h, "PayAmt") {
        Ok(a) if a.is_negative() => Some(a),
        Ok(a) => {
            reasons.push(format!("PayAmt of a 2302 must be negative, got {a}"));
            None
        }
        Err(e) => {
            reasons.push(e);
            None
        }
    };
    let tklx = h.get("TKLX").unwrap_or("");
    if !matches!(tklx, "1" | "2") {
        reasons.push(format!(
            "TKLX must be 1 (正常退款) or 2 (负凭证), got {tklx:?}"
        ));
    }
    let pay = h
        .get("PayTypeCode")
        .and_then(|c| c.parse::<PayType>().ok())
        .filter(|p| *p != PayType::Allocation);
    if pay.is_none() {
        reasons.push("PayTypeCode must be direct (11) or authorized (12)".into());
    }
    if request.details.is_empty() {
        reasons.push("the refund request lists no payment".into());
    }
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut sum = Some(Amount::ZERO);
    let mut amount_bad = false;
    for (i, d) in request.details.iter().enumerate() {
        let n = i + 1;
        let amount = match amount_field(d, "PayAmt") {
            Ok(a) if a.is_negative() => Some(a),
            _ => {
                reasons.push(format!("detail {n}: PayAmt must be a negative amount"));
                amount_bad = true;
                None
            }
        };
        sum = match (sum, amount) {
            (Some(s), Some(a)) => s.checked_add(a),
            _ => None,
        };
        let Some(no) = d.value("VoucherNo") else {
            reasons.push(format!("detail {n}: VoucherNo is missing"));
            continue;
        };
        if let Some(&first) = seen.get(no) {
            reasons.push(format!(
                "detail {n}: {no} is already listed in detail {first}"
            ));
            continue;
        }
        seen.insert(no, n);
        let Some(pay) = pay else { continue };
        let line_key = (pay, no.to_owned());
        if let Some(by) = knows.refunded.get(&line_key) {
            reasons.push(format!("detail {n}: {no} was already refunded by {by}"));
        }
        if tklx != "1" {
            continue;
        }
        let Some(line) = knows.cleared.get(&line_key) else {
            reasons.push(format!(
                "detail {n}: {no} is not listed in a clearing request (2301) PBOC cleared for this bank"
            ));
            continue;
        };
        let mismatch = [
            ("FundTypeCode", h.get("FundTypeCode"), line.fund.as_str()),
            ("PayBankNo", h.get("PayBankNo"), line.bank_no.as_str()),
            ("AgencyCode", d.get("AgencyCode"), line.agency.as_str()),
            ("ExpFuncCode", d.get("ExpFuncCode"), line.func.as_str()),
        ]
        .into_iter()
        .find(|(_, mine, cleared)| *mine != Some(*cleared));
        if let Some((name, _, cleared)) = mismatch {
            reasons.push(format!(
                "detail {n}: {name} is not the one {} cleared ({cleared})",
                line.request
            ));
        }
        if let Some(a) = amount
            && a.negated().fen() > line.amount.fen()
        {
            reasons.push(format!(
                "detail {n}: the refund {} exceeds the {} {} cleared",
                a.negated(),
                line.amount,
                line.request
            ));
        }
    }
    if let Some(master) = master
        && !request.details.is_empty()
        && !amount_bad
        && sum != Some(master)
    {
        reasons.push(format!(
            "the details do not add up to the master PayAmt {master}"
        ));
    }
    match master {
        Some(master) if reasons.is_empty() => Ok(master.negated()),
        _ => Err(reasons),
    }
}

/// The books' operation for a checked 2302: per (unit, function class) the clearing quota
/// restored and the money back bank → TSA, all or nothing, keyed by the 2302.
///
/// # Errors
/// [`RefundError::Invalid`] for a field that does not parse.
pub fn refund_clearing_op(request: &Voucher) -> Result<BookOp, RefundError> {
    let key = request.key();
    let tenant = tenant_of(&key).map_err(|e| invalid(e.to_string()))?;
    let h = &request.header;
    let head = |name: &str| {
        h.value(name)
            .ok_or_else(|| invalid(format!("{name} is missing")))
    };
    let bank: BankNo = head("PayBankNo")?
        .parse()
        .map_err(|_| invalid("bad PayBankNo"))?;
    let fund: FundType = head("FundTypeCode")?
        .parse()
        .map_err(|_| invalid("bad FundTypeCode"))?;
    let pay: PayType = head("PayTypeCode")?
        .parse()
        .map_err(|_| invalid("bad PayTypeCode"))?;
    let mut groups: BTreeMap<(String, String), Amount> = BTreeMap::new();
    for (i, d) in request.details.iter().enumerate() {
        let get = |name: &str| {
            d.value(name)
                .ok_or_else(|| invalid(format!("detail {}: {name} is missing", i + 1)))
        };
        let amount = amount_field(d, "PayAmt").map_err(invalid)?.negated();
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
    let mut op = BookOp {
        id: op_id("refund-clearing", &key),
        legs: Vec::new(),
    };
    for ((unit, func), amount) in groups {
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
        let part =
            BookOp::refund_clearing(op.id, &ck, amount).map_err(|e| invalid(e.to_string()))?;
        op.legs.extend(part.legs);
    }
    Ok(op)
}

/// What PBOC's library says about the payments of `sender` in `tenant`.
async fn pboc_knows(
    store: &Store,
    sender: &str,
    tenant: Tenant,
    except: &VoucherKey,
) -> Result<PbocKnows, RefundError> {
    let mut knows = PbocKnows::default();
    let in_scope = |r: &VoucherRecord| {
        r.direction == Direction::Received
            && r.sender == sender
            && booked(r)
            && tenant_of(&r.key).ok() == Some(tenant)
    };
    for record in all_in(store, VT_2301, Leg::Original, &[Exchange::Acknowledged]).await? {
        if !in_scope(&record) {
            continue;
        }
        let v = stored_body(&record.body, VoucherFlag::Original)?.voucher;
        let Some(pay) = v
            .header
            .get("PayTypeCode")
            .and_then(|c| c.parse::<PayType>().ok())
        else {
            continue;
        };
        for d in &v.details {
            let (Some(no), Ok(amount)) = (d.value("VoucherNo"), amount_field(d, "PayAmt")) else {
                continue;
            };
            knows.cleared.insert(
                (pay, no.to_owned()),
                ClearedLine {
                    request: record.key.clone(),
                    pay,
                    fund: v.header.get("FundTypeCode").unwrap_or("").to_owned(),
                    bank_no: v.header.get("PayBankNo").unwrap_or("").to_owned(),
                    agency: d.get("AgencyCode").unwrap_or("").to_owned(),
                    func: d.get("ExpFuncCode").unwrap_or("").to_owned(),
                    amount,
                },
            );
        }
    }
    for record in all_in(store, VT_2302, Leg::Original, &[Exchange::Acknowledged]).await? {
        if !in_scope(&record) || &record.key == except {
            continue;
        }
        let v = stored_body(&record.body, VoucherFlag::Original)?.voucher;
        let Some(pay) = v
            .header
            .get("PayTypeCode")
            .and_then(|c| c.parse::<PayType>().ok())
        else {
            continue;
        };
        for d in &v.details {
            if let Some(no) = d.value("VoucherNo") {
                knows
                    .refunded
                    .insert((pay, no.to_owned()), record.key.clone());
            }
        }
    }
    Ok(knows)
}

/// What became of one refund request at PBOC.
#[derive(Debug)]
pub enum RequestOutcome {
    /// Booked: clearing quota restored, money back in the TSA, the sealed receipt sent.
    Refunded {
        /// The 2302.
        key: VoucherKey,
        /// The refund's size (positive).
        amount: Amount,
    },
    /// Returned (退回) with the reasons; nothing booked.
    Returned {
        /// The 2302.
        key: VoucherKey,
        /// Why.
        reasons: Vec<String>,
    },
    /// Unreadable: refused (签收失败).
    Refused {
        /// The 2302.
        key: VoucherKey,
        /// Why.
        reason: String,
    },
    /// Not a received 2302 original: left untouched.
    NotMine {
        /// The voucher.
        key: VoucherKey,
        /// Its leg.
        leg: Leg,
    },
}

/// PBOC takes one read refund request (2302): acknowledges it, runs
/// [`check_refund_request`] against the 2301s it cleared for the sender and the 2302s it
/// booked before, books [`refund_clearing_op`] (the clearing quota restored, never beyond
/// what was cleared; the money bank → TSA), fills `XPaySndBnkNo`, `XClearDate`, `XPayAmt`,
/// seals the receipt with its 国库转讫章 and sends it back. A request that fails the check
/// or that the books refuse is returned (退回) with the reasons; nothing is booked.
///
/// The check against earlier 2302s assumes one worker per PBOC store, as clearing does.
///
/// # Errors
/// [`RefundError::Library`], [`RefundError::Store`], [`RefundError::Stamping`].
pub async fn on_refund_request(
    store: &Store,
    registry: &Registry,
    pboc: &Pboc<'_>,
    record: &VoucherRecord,
    now: u64,
) -> Result<RequestOutcome, RefundError> {
    let key = &record.key;
    if key.vt_code != VT_2302
        || record.leg != Leg::Original
        || record.direction != Direction::Received
    {
        return Ok(RequestOutcome::NotMine {
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
                .refuse(key, Leg::Original, &reason, pboc.actor, now)
                .await?;
            return Ok(RequestOutcome::Refused {
                key: key.clone(),
                reason,
            });
        }
    };
    library
        .acknowledge(key, Leg::Original, pboc.actor, now)
        .await?;
    let returned = |reasons: Vec<String>| RequestOutcome::Returned {
        key: key.clone(),
        reasons,
    };
    let tenant = match tenant_of(key) {
        Ok(t) => t,
        Err(e) => {
            let reasons = vec![e.to_string()];
            give_back(store, key, &reasons, pboc.actor, now).await?;
            return Ok(returned(reasons));
        }
    };
    let knows = pboc_knows(store, &record.sender, tenant, key).await?;
    let checked = check_refund_request(&body.voucher, &knows).and_then(|amount| {
        let op = refund_clearing_op(&body.voucher).map_err(|e| vec![e.to_string()])?;
        Ok((amount, op))
    });
    let (amount, op) = match checked {
        Ok(checked) => checked,
        Err(reasons) => {
            give_back(store, key, &reasons, pboc.actor, now).await?;
            return Ok(returned(reasons));
        }
    };
    for event in [
        ProcessingEvent::StartValidation,
        ProcessingEvent::PassValidation,
        ProcessingEvent::Check,
        ProcessingEvent::Approve,
    ] {
        library
            .process(key, Leg::Original, event, None, pboc.actor, now)
            .await?;
    }
    let refusal = apply_one(store, op, now)
        .await?
        .err()
        .map(|r| format!("the refund cannot be booked: {r}"));
    if let Some(reason) =
        record_booking::<RefundError>(store, record, refusal, pboc.actor, now).await?
    {
        let reasons = vec![reason];
        give_back(store, key, &reasons, pboc.actor, now).await?;
        return Ok(returned(reasons));
    }
    let mut receipt = body.clone();
    receipt.flag = VoucherFlag::Receipt;
    let h = &mut receipt.voucher.header;
    h.set("XPaySndBnkNo", pboc.bank_no);
    h.set("XClearDate", pboc.clear_date.to_string());
    h.set("XPayAmt", amount.negated().to_string());
    let ty = stamping::type_of(registry, &receipt.voucher)?;
    let returner = Returner {
        suite: pboc.suite,
        sealer: pboc.sealer,
        me: pboc.me,
        actor: pboc.actor,
    };
    seal_and_return::<RefundError>(store, ty, record, &mut receipt, &returner, now).await?;
    Ok(RequestOutcome::Refunded {
        key: key.clone(),
        amount,
    })
}

// ---------------------------------------------------------------------------------------
// 4. The bank takes the receipts
// ---------------------------------------------------------------------------------------

/// What became of one receipt at the bank.
#[derive(Debug)]
pub enum ReceiptOutcome {
    /// Recorded: the original is 已收到对方回单 (12), the receipt processed; for a 2302 the
    /// money left the ZBA for PBOC.
    Booked {
        /// The voucher.
        key: VoucherKey,
        /// For a 2302, the refund's size sent back to the TSA.
        cleared: Option<Amount>,
    },
    /// The receipt does not answer a voucher of ours, or does not match it; left
    /// ValidationFailed (or BookingFailed) with the reason.
    Failed {
        /// The voucher.
        key: VoucherKey,
        /// Why.
        reason: String,
    },
    /// Not a received receipt of a 2203/2204/2302: left untouched.
    NotMine {
        /// The voucher.
        key: VoucherKey,
        /// Its leg.
        leg: Leg,
    },
}

/// The bank's booking of PBOC's 2302 receipt: each paying ZBA → PBOC reserve (finance's ZBA
/// for direct payment, each unit's for authorized), keyed by the 2302.
fn cleared_op(request: &Voucher) -> Result<(BookOp, Amount), String> {
    let key = request.key();
    let tenant = tenant_of(&key).map_err(|e| e.to_string())?;
    let pay: PayType = request
        .header
        .get("PayTypeCode")
        .and_then(|c| c.parse().ok())
        .ok_or("bad PayTypeCode")?;
    let mut zbas: BTreeMap<String, Amount> = BTreeMap::new();
    for (i, d) in request.details.iter().enumerate() {
        let amount = amount_field(d, "PayAmt")
            .map_err(|e| format!("detail {}: {e}", i + 1))?
            .negated();
        let unit = match pay {
            PayType::Authorized => d
                .value("AgencyCode")
                .ok_or_else(|| format!("detail {}: AgencyCode is missing", i + 1))?
                .to_owned(),
            _ => String::new(),
        };
        let slot = zbas.entry(unit).or_insert(Amount::ZERO);
        *slot = slot.checked_add(amount).ok_or("amount overflow")?;
    }
    let mut op = BookOp {
        id: op_id("refund-cleared", &key),
        legs: Vec::new(),
    };
    let mut total = Amount::ZERO;
    for (unit, amount) in zbas {
        let zba = if unit.is_empty() {
            BookAccount::finance_zba(tenant)
        } else {
            let unit: UnitCode = unit.parse().map_err(|_| format!("bad AgencyCode {unit}"))?;
            BookAccount::unit_zba(tenant, &unit)
        };
        let part = BookOp::refund_cleared(op.id, zba, amount).map_err(|e| e.to_string())?;
        op.legs.extend(part.legs);
        total = total.checked_add(amount).ok_or("amount overflow")?;
    }
    Ok((op, total))
}

/// Opens the bank's PBOC reserve account of `tenant` if it is not there yet (the first
/// refund sent back to the TSA).
async fn open_reserve(store: &Store, tenant: Tenant) -> Result<(), RefundError> {
    let reserve = BookAccount::pboc_reserve(tenant);
    if store.account(reserve.id()).await?.is_some() {
        return Ok(());
    }
    let results = store.create_book_accounts(vec![reserve]).await?;
    match results.first() {
        Some(guoku_ledger::CreateAccountResult::Ok | guoku_ledger::CreateAccountResult::Exists) => {
            Ok(())
        }
        other => Err(invalid(format!("cannot open the PBOC reserve: {other:?}"))),
    }
}

/// The bank takes one read receipt of a refund voucher it sent (2203/2204 from finance,
/// 2302 from PBOC): checks it answers the original it sent to the receipt's sender (for a
/// 2302: PBOC took back all of it, `XPayAmt` = `PayAmt`), records the receipt (original at
/// 已收到对方回单) and, for a 2302, books the money leaving the ZBA for PBOC
/// (`BookOp::refund_cleared`): the zero-balance account is back at zero.
///
/// # Errors
/// [`RefundError::Library`], [`RefundError::Store`].
pub async fn on_refund_receipt(
    store: &Store,
    actor: &str,
    record: &VoucherRecord,
    now: u64,
) -> Result<ReceiptOutcome, RefundError> {
    let key = &record.key;
    if !matches!(key.vt_code.as_str(), VT_2203 | VT_2204 | VT_2302)
        || record.leg != Leg::Receipt
        || record.direction != Direction::Received
    {
        return Ok(ReceiptOutcome::NotMine {
            key: key.clone(),
            leg: record.leg,
        });
    }
    let library = store.library();
    let original = library.status(key, Leg::Original).await?;
    let checked = match &original {
        Some(sent)
            if sent.direction == Direction::Sent
                && sent.sender == record.receiver
                && sent.receiver == record.sender =>
        {
            stored_body(&sent.body, VoucherFlag::Original)
                .map_err(|e| e.to_string())
                .and_then(|o| {
                    let r = stored_body(&record.body, VoucherFlag::Receipt)
                        .map_err(|e| e.to_string())?;
                    if o.voucher.key() != r.voucher.key() {
                        return Err("the receipt is for another voucher".into());
                    }
                    if key.vt_code != VT_2302 {
                        return Ok(None);
                    }
                    let asked = amount_field(&o.voucher.header, "PayAmt")?;
                    let took = amount_field(&r.voucher.header, "XPayAmt")?;
                    if took != asked {
                        return Err(format!("XPayAmt {took} is not the PayAmt {asked}"));
                    }
                    cleared_op(&o.voucher).map(Some)
                })
        }
        _ => Err("no refund voucher of ours to the receipt's sender".into()),
    };
    let op = match checked {
        Ok(op) => op,
        Err(reason) => {
            let failed = ReceiptCheck::Failed(&reason);
            record_receipt_check::<RefundError>(store, key, original.as_ref(), failed, actor, now)
                .await?;
            return Ok(ReceiptOutcome::Failed {
                key: key.clone(),
                reason,
            });
        }
    };
    let passed = ReceiptCheck::Passed { book: false };
    record_receipt_check::<RefundError>(store, key, original.as_ref(), passed, actor, now).await?;
    let mut cleared = None;
    let mut refusal = None;
    if let Some((op, total)) = op {
        let tenant = tenant_of(key).map_err(|e| invalid(e.to_string()))?;
        open_reserve(store, tenant).await?;
        match apply_one(store, op, now).await? {
            Ok(_) => cleared = Some(total),
            Err(r) => refusal = Some(format!("refused by the books: {r}")),
        }
    }
    let (event, reason) = match &refusal {
        Some(reason) => (ProcessingEvent::FailBooking, Some(reason.as_str())),
        None => (ProcessingEvent::Book, None),
    };
    library
        .process(key, Leg::Receipt, event, reason, actor, now)
        .await?;
    Ok(match refusal {
        Some(reason) => ReceiptOutcome::Failed {
            key: key.clone(),
            reason,
        },
        None => ReceiptOutcome::Booked {
            key: key.clone(),
            cleared,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fen(n: i64) -> Amount {
        Amount::from_fen(n).unwrap()
    }

    fn refund_request(details: &[(&str, &str)], master: &str, tklx: &str) -> Voucher {
        let mut header = Fields::new();
        for (n, v) in [
            ("AdmDivCode", "430000"),
            ("StYear", "2025"),
            ("VtCode", VT_2302),
            ("VoucherNo", "TK1"),
            ("PayTypeCode", "11"),
            ("FundTypeCode", "1"),
            ("PayBankNo", "102551000015"),
            ("PayAmt", master),
            ("TKLX", tklx),
        ] {
            header.set(n, v);
        }
        let details = details
            .iter()
            .map(|(no, amt)| {
                let mut d = Fields::new();
                d.set("VoucherNo", *no);
                d.set("AgencyCode", "U1");
                d.set("ExpFuncCode", "2010101");
                d.set("PayAmt", *amt);
                d
            })
            .collect();
        Voucher { header, details }
    }

    fn knows() -> PbocKnows {
        let line = |no: &str, amount: i64| {
            (
                (PayType::Direct, no.to_owned()),
                ClearedLine {
                    request: VoucherKey {
                        vt_code: VT_2301.into(),
                        voucher_no: "QS1".into(),
                        ..VoucherKey::default()
                    },
                    pay: PayType::Direct,
                    fund: "1".into(),
                    bank_no: "102551000015".into(),
                    agency: "U1".into(),
                    func: "2010101".into(),
                    amount: fen(amount),
                },
            )
        };
        PbocKnows {
            cleared: [line("P1", 10_000), line("P2", 5_000)]
                .into_iter()
                .collect(),
            refunded: [(
                (PayType::Direct, "P2".to_owned()),
                VoucherKey {
                    voucher_no: "TK0".into(),
                    ..VoucherKey::default()
                },
            )]
            .into_iter()
            .collect(),
        }
    }

    #[test]
    fn a_refund_of_a_cleared_payment_within_its_amount_passes() {
        let r = refund_request(&[("P1", "-100.00")], "-100.00", "1");
        assert_eq!(check_refund_request(&r, &knows()), Ok(fen(10_000)));
        let part = refund_request(&[("P1", "-40.00")], "-40.00", "1");
        assert_eq!(check_refund_request(&part, &knows()), Ok(fen(4_000)));
    }

    #[test]
    fn a_refund_beyond_what_was_cleared_not_cleared_or_again_is_refused() {
        let above = refund_request(&[("P1", "-100.01")], "-100.01", "1");
        let r = check_refund_request(&above, &knows()).unwrap_err();
        assert!(r.iter().any(|m| m.contains("exceeds")), "{r:?}");
        let unknown = refund_request(&[("P9", "-1.00")], "-1.00", "1");
        let r = check_refund_request(&unknown, &knows()).unwrap_err();
        assert!(r.iter().any(|m| m.contains("not listed")), "{r:?}");
        // A 负凭证 (TKLX 2) needs no 2301; a refunded payment is refused either way.
        assert_eq!(
            check_refund_request(&refund_request(&[("P9", "-1.00")], "-1.00", "2"), &knows()),
            Ok(fen(100))
        );
        let again = refund_request(&[("P2", "-1.00")], "-1.00", "2");
        let r = check_refund_request(&again, &knows()).unwrap_err();
        assert!(r.iter().any(|m| m.contains("already refunded")), "{r:?}");
    }

    #[test]
    fn signs_sums_and_duplicates_are_checked() {
        let positive = refund_request(&[("P1", "100.00")], "100.00", "1");
        let r = check_refund_request(&positive, &knows()).unwrap_err();
        assert!(r.iter().any(|m| m.contains("negative")), "{r:?}");
        let sum = refund_request(&[("P1", "-10.00")], "-20.00", "1");
        let r = check_refund_request(&sum, &knows()).unwrap_err();
        assert!(r.iter().any(|m| m.contains("add up")), "{r:?}");
        let twice = refund_request(&[("P1", "-10.00"), ("P1", "-10.00")], "-20.00", "1");
        let r = check_refund_request(&twice, &knows()).unwrap_err();
        assert!(r.iter().any(|m| m.contains("already listed")), "{r:?}");
        let tklx = refund_request(&[("P1", "-10.00")], "-10.00", "3");
        assert!(check_refund_request(&tklx, &knows()).is_err());
    }

    #[test]
    fn the_bank_refunds_within_what_it_paid() {
        assert_eq!(check_amount(fen(5), fen(10), RefundType::Single), Ok(()));
        assert_eq!(
            check_amount(fen(11), fen(10), RefundType::Single),
            Err(RefundRefusal::AbovePaid {
                amount: fen(11),
                paid: fen(10)
            })
        );
        assert!(matches!(
            check_amount(fen(5), fen(10), RefundType::All),
            Err(RefundRefusal::NotAll { .. })
        ));
        assert!(matches!(
            check_amount(fen(0), fen(10), RefundType::Single),
            Err(RefundRefusal::NotPositive(_))
        ));
    }
}
