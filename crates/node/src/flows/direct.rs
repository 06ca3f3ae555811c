//! Direct payment (财政直接支付, DOMAIN §3.2): single 5201s, and salary or batch 5201s
//! (`BusinessTypeCode` 3/4) paid row by row ([`super::batch`]).
//!
//! 1. [`issue`]: finance consumes the direct quota of a monthly plan (plan → used, refused
//!    with the books' reason when short: then nothing is written), writes the stamped 5201
//!    into its library and sends it; the outbox ([`crate::outbox::deliver_due`]) delivers it.
//! 2. [`pay_received`]: the agent bank reads its unread vouchers, acknowledges each 5201,
//!    moves it through validation, check and approval, books the payment (advance → finance
//!    zero-balance account → payees), fills the receipt fields, stamps the receipt with its
//!    转讫章, writes and sends it back to finance, up to ReceiptSent (回单成功).
//!    A bank whose rule requires the payee's bank number ([`PayeeBankRule`]) stops a single
//!    5201 without it at 待补录 (74) instead ([`pay_or_hold`]); a person completes the
//!    number ([`complete_payee_bank`]) and the same step pays it, the receipt carrying the
//!    number where the registry has [`X_PAYEE_BANK_NO`].
//!    A salary or batch master whose rows travel in 8207s waits, read, until its 8207s are
//!    in, and is then paid by [`super::batch::pay_master`].
//! 3. [`book_receipts`]: finance reads the receipts its library received (the exchange
//!    verified their stamps), records that the bank acknowledged and returned the original
//!    (已收到对方回单, 12) and marks the receipt processed (处理成功): the payment is done.
//!    A master's receipt waits until the receipts of its 8207s are in
//!    ([`super::batch::check_master_receipt`]).
//!
//! The decisions (what a 5201 must say, the amount, the receipt's fields, the operation
//! ids) are pure functions; the I/O goes through the [`Store`] passed in. Every book
//! operation's id is derived from the voucher key, so a repeated step is not booked twice.

use guoku_domain::{Amount, BankNo, BizDate, FuncClass, FundType, PayType};
use guoku_seal::Suite;
use guoku_seal::voucher::Signer;
use guoku_store::books::{Applied, BookOp, IndicatorKey, Refusal, Tenant};
use guoku_store::library::{LibraryError, NewVoucher, VoucherRecord, content_hash};
use guoku_store::{Store, StoreError};
use guoku_voucher::lifecycle::{Exchange, Leg, Processing, ProcessingEvent};
use guoku_voucher::registry::VoucherType;
use guoku_voucher::{EnvelopeBody, Registry, Voucher, VoucherFlag, VoucherKey};

use crate::stamping::{self, Positions, StampingError};

use super::batch::{
    RowDecision, RowRules, check_batch_receipt, clip, decide_rows, fill_batch_receipt, is_batch,
    nothing_payable, paid_sum, restore_unpaid, row_op_id,
};

use super::common::{
    ReceiptCheck, Returner, accept_for_processing, envelope_bytes, hold_for_completion,
    is_awaiting_completion, record_booking, record_completion, record_receipt_check,
    seal_and_return,
};

/// The direct payment voucher's type code.
pub const VT_5201: &str = "5201";

/// Why a step of the flow stopped.
#[derive(Debug, thiserror::Error)]
pub enum DirectError {
    /// The voucher is not a direct payment this flow can issue or pay.
    #[error("{0}")]
    Invalid(String),
    /// The books refused (e.g. not enough quota); nothing was booked.
    #[error("refused by the books: {0}")]
    Refused(#[from] Refusal),
    /// The voucher's stamps are missing or cannot be applied.
    #[error("stamping: {0}")]
    Stamping(#[from] StampingError),
    /// The library refused or failed.
    #[error("library: {0}")]
    Library(#[from] LibraryError),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

pub(crate) fn invalid(what: impl Into<String>) -> DirectError {
    DirectError::Invalid(what.into())
}

// ---------------------------------------------------------------------------------------
// Pure decisions
// ---------------------------------------------------------------------------------------

/// FNV-1a, 128-bit: a stable operation id from a purpose and a voucher key.
fn fnv1a_128(bytes: &[u8]) -> u128 {
    const OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;
    bytes.iter().fold(OFFSET, |hash, &b| {
        (hash ^ u128::from(b)).wrapping_mul(PRIME)
    })
}

/// The id of the book operation `purpose` for the voucher `key`: the same for a repeated
/// step, so the books apply it once.
#[must_use]
pub fn op_id(purpose: &str, key: &VoucherKey) -> u128 {
    fnv1a_128(format!("direct/{purpose}/{key}").as_bytes())
}

/// The books' tenant of a voucher: its division and budget year.
///
/// # Errors
/// [`DirectError::Invalid`] for a key whose division or year does not parse.
pub fn tenant_of(key: &VoucherKey) -> Result<Tenant, DirectError> {
    Ok(Tenant {
        adm_div: key
            .adm_div_code
            .parse()
            .map_err(|_| invalid(format!("bad AdmDivCode {}", key.adm_div_code)))?,
        year: key
            .st_year
            .parse()
            .map_err(|_| invalid(format!("bad StYear {}", key.st_year)))?,
    })
}

pub(crate) fn field<'v>(voucher: &'v Voucher, name: &str) -> Result<&'v str, DirectError> {
    voucher
        .header
        .get(name)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| invalid(format!("{name} is missing")))
}

/// A field's amount.
fn amount_of(value: &str, name: &str) -> Result<Amount, DirectError> {
    value
        .parse::<Amount>()
        .map_err(|_| invalid(format!("{name} is not an amount: {value}")))
}

/// The payment's amount (`PayAmt`), which must be positive.
///
/// # Errors
/// [`DirectError::Invalid`].
pub fn payment_amount(voucher: &Voucher) -> Result<Amount, DirectError> {
    let amount = amount_of(field(voucher, "PayAmt")?, "PayAmt")?;
    if !amount.is_positive() {
        return Err(invalid(format!("PayAmt must be positive, got {amount}")));
    }
    Ok(amount)
}

/// What finance checks before issuing: an original 5201 of direct payment, of the
/// indicator's division, year, unit, function class and fund type, stamped at every
/// original position; its amount.
///
/// # Errors
/// [`DirectError::Invalid`], [`DirectError::Stamping`] for an unknown type.
pub fn check_issue(
    registry: &Registry,
    indicator: &IndicatorKey,
    body: &EnvelopeBody,
) -> Result<Amount, DirectError> {
    let voucher = &body.voucher;
    if voucher.vt_code() != VT_5201 || body.flag != VoucherFlag::Original {
        return Err(invalid(format!(
            "not an original 5201: {} flag {:?}",
            voucher.vt_code(),
            body.flag
        )));
    }
    let key = voucher.key();
    if tenant_of(&key)? != indicator.tenant {
        return Err(invalid(format!(
            "{key} is not in the indicator's division and year"
        )));
    }
    let pay: PayType = field(voucher, "PayTypeCode")?
        .parse()
        .map_err(|_| invalid("bad PayTypeCode"))?;
    if pay != PayType::Direct || indicator.pay != PayType::Direct {
        return Err(invalid(
            "a direct payment needs PayTypeCode 11 and a direct indicator",
        ));
    }
    if field(voucher, "AgencyCode")? != indicator.unit.as_str() {
        return Err(invalid("AgencyCode is not the indicator's unit"));
    }
    let func: FuncClass = field(voucher, "ExpFuncCode")?
        .parse()
        .map_err(|_| invalid("bad ExpFuncCode"))?;
    let fund: FundType = field(voucher, "FundTypeCode")?
        .parse()
        .map_err(|_| invalid("bad FundTypeCode"))?;
    if func != indicator.func || fund != indicator.fund {
        return Err(invalid(
            "ExpFuncCode or FundTypeCode is not the indicator's",
        ));
    }
    let ty = stamping::type_of(registry, voucher)?;
    let positions = Positions::of(ty)?;
    if let Some(missing) = positions
        .original
        .iter()
        .find(|p| !body.signatures.iter().any(|b| b.no.to_string() == p.name))
    {
        return Err(invalid(format!(
            "the 5201 is not stamped at position {}",
            missing.name
        )));
    }
    payment_amount(voucher)
}

/// What the bank puts on the receipt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payment {
    /// 实际支付日期.
    pub date: BizDate,
    /// 银行交易流水号.
    pub serial: String,
}

/// The bank's serial for a payment: `prefix` and a stable number from the voucher key
/// (at most 42 characters).
#[must_use]
pub fn serial_for(prefix: &str, key: &VoucherKey) -> String {
    let n = op_id("serial", key) % 10u128.pow(16);
    let mut serial = format!("{prefix}{n:016}");
    serial.truncate(42);
    serial
}

/// The receipt of a paid original: a copy with flag 回单 and its X fields filled
/// (`XPayDate`, `XAgentBusinessNo`, `XPayAmt` on the header and on every detail), without
/// any receipt stamp yet.
///
/// # Errors
/// [`DirectError::Invalid`] for a detail without `PayAmt`.
pub fn fill_receipt(
    original: &EnvelopeBody,
    payment: &Payment,
) -> Result<EnvelopeBody, DirectError> {
    let mut receipt = original.clone();
    receipt.flag = VoucherFlag::Receipt;
    let date = payment.date.to_string();
    let voucher = &mut receipt.voucher;
    let total = field(voucher, "PayAmt")?.to_owned();
    voucher.header.set("XPayDate", date);
    voucher
        .header
        .set("XAgentBusinessNo", payment.serial.clone());
    voucher.header.set("XPayAmt", total);
    for detail in &mut voucher.details {
        let amount = detail
            .get("PayAmt")
            .ok_or_else(|| invalid("a detail has no PayAmt"))?
            .to_owned();
        detail.set("XPayAmt", amount);
    }
    Ok(receipt)
}

/// The header field naming the payee's bank (收款银行行号).
pub const PAYEE_BANK_NO: &str = "PayeeAcctBankNo";

/// The receipt field for the payee's bank number a bank completed (实际收款银行行号), where
/// the registry has it: [`fill_completed_bank_no`].
pub const X_PAYEE_BANK_NO: &str = "XPayeeAcctBankNo";

/// Whether a bank pays a single payment (5201 or 8202 of `BusinessTypeCode` 1) that does
/// not name the payee's bank ([`PAYEE_BANK_NO`]): a rule that varies by province, so it
/// comes from the bank's configuration (`require_payee_bank_no`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PayeeBankRule {
    /// It is paid (the default).
    #[default]
    Optional,
    /// It waits for a person to complete the number (待补录).
    Required,
}

impl PayeeBankRule {
    /// The rule a configuration's `require_payee_bank_no` names.
    #[must_use]
    pub fn required_if(required: bool) -> Self {
        if required {
            Self::Required
        } else {
            Self::Optional
        }
    }

    /// Whether `voucher`, a single payment, waits for a person under this rule.
    #[must_use]
    pub fn holds(self, voucher: &Voucher) -> bool {
        self == Self::Required
            && voucher
                .header
                .get(PAYEE_BANK_NO)
                .is_none_or(|no| no.trim().is_empty())
    }
}

/// Writes the payee's bank number a person completed into `receipt`'s [`X_PAYEE_BANK_NO`]
/// when its type `ty` has that receipt field. A registry without it has no place for the
/// number on the receipt (a field outside the registry would break the original's
/// stamps): the library's event log keeps it then.
pub fn fill_completed_bank_no(ty: &VoucherType, receipt: &mut EnvelopeBody, bank_no: &BankNo) {
    if ty.header_field(X_PAYEE_BANK_NO).is_some_and(|f| f.receipt) {
        receipt
            .voucher
            .header
            .set(X_PAYEE_BANK_NO, bank_no.as_str().to_owned());
    }
}

/// What finance checks on a receipt against its original: the same voucher, paid no more
/// than ordered, with the bank's X fields; the amount paid.
///
/// # Errors
/// [`DirectError::Invalid`].
pub fn check_receipt(original: &Voucher, receipt: &Voucher) -> Result<Amount, DirectError> {
    if original.key() != receipt.key() {
        return Err(invalid("the receipt is for another voucher"));
    }
    field(receipt, "XPayDate")?;
    field(receipt, "XAgentBusinessNo")?;
    let ordered = payment_amount(original)?;
    let paid = amount_of(field(receipt, "XPayAmt")?, "XPayAmt")?;
    if paid.is_negative() || paid.fen() > ordered.fen() {
        return Err(invalid(format!(
            "XPayAmt {paid} is not within the ordered {ordered}"
        )));
    }
    Ok(paid)
}

/// The body of `flag` in a stored one-voucher envelope.
pub(crate) fn stored_body(bytes: &[u8], flag: VoucherFlag) -> Result<EnvelopeBody, DirectError> {
    super::common::stored_body(bytes, flag).map_err(invalid)
}

/// [`super::common::stored_voucher`], its reason a [`DirectError::Invalid`].
fn stored_voucher(bytes: &[u8], flag: VoucherFlag) -> Result<Voucher, DirectError> {
    super::common::stored_voucher(bytes, flag).map_err(invalid)
}

fn first(outcomes: Vec<Result<Applied, Refusal>>) -> Result<Applied, DirectError> {
    outcomes
        .into_iter()
        .next()
        .ok_or_else(|| invalid("the books answered nothing"))?
        .map_err(DirectError::from)
}

// ---------------------------------------------------------------------------------------
// 1. Finance issues the 5201
// ---------------------------------------------------------------------------------------

/// Who sends a voucher to whom, and who does it.
#[derive(Clone, Copy, Debug)]
pub struct Route<'a> {
    /// This node's organisation code.
    pub me: &'a str,
    /// The receiver's organisation code.
    pub to: &'a str,
    /// The user or worker recorded on every event.
    pub actor: &'a str,
}

/// Finance issues a stamped 5201 against the indicator's monthly plan: the quota is
/// consumed first (refused with the books' reason when short, and then nothing is
/// written), the voucher is written and sent. The outbox delivers it.
///
/// Repeating a completed issue changes nothing (the books answer "already done", the
/// library "already stored"); a different voucher under the same key is refused before
/// the books.
///
/// # Errors
/// [`DirectError::Refused`] (e.g. `NotEnough` on the plan), [`DirectError::Invalid`],
/// [`DirectError::Library`], [`DirectError::Store`].
pub async fn issue(
    store: &Store,
    registry: &Registry,
    indicator: &IndicatorKey,
    month: u8,
    body: &EnvelopeBody,
    route: Route<'_>,
    now: u64,
) -> Result<VoucherRecord, DirectError> {
    let amount = check_issue(registry, indicator, body)?;
    let key = body.voucher.key();
    let library = store.library();
    let existing = library.status(&key, Leg::Original).await?;
    if let Some(record) = &existing
        && record.content_sha256 != content_hash(&body.voucher)
    {
        return Err(invalid(format!("{key} is stored with other content")));
    }
    let op = BookOp::pay_from_plan(op_id("quota", &key), indicator, month, amount)?;
    first(store.apply_book_ops(now, &[op]).await?)?;
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

/// The bank's side of a payment run.
pub struct Bank<'a> {
    /// The bank's organisation code.
    pub me: &'a str,
    /// The user or worker recorded on every event.
    pub actor: &'a str,
    /// The date paid (XPayDate).
    pub pay_date: BizDate,
    /// The prefix of the bank's serials (XAgentBusinessNo).
    pub serial_prefix: &'a str,
    /// The signature suite.
    pub suite: Suite,
    /// The bank's signer with its 转讫章 (a [`Signer::Seal`]).
    pub sealer: &'a Signer<'a>,
}

/// What became of one received voucher in a payment run.
#[derive(Debug)]
pub enum PayOutcome {
    /// Paid; the sealed receipt is written and sent (ReceiptSent, 回单成功).
    Paid {
        /// The voucher.
        key: VoucherKey,
        /// The amount paid.
        amount: Amount,
    },
    /// Acknowledged and approved, waiting for a person to complete the payee's bank number
    /// (待补录, 74); nothing booked.
    AwaitingCompletion {
        /// The voucher.
        key: VoucherKey,
    },
    /// A salary or batch master whose rows travel in 8207s, waiting (read, not
    /// acknowledged) until the 8207s naming it have arrived and add up to it
    /// ([`super::batch::pay_master`]); nothing booked.
    Waiting {
        /// The voucher.
        key: VoucherKey,
        /// What it waits for.
        reason: String,
    },
    /// Refused or returned before any money moved, or booking failed; the reason.
    Failed {
        /// The voucher.
        key: VoucherKey,
        /// Why.
        reason: String,
    },
    /// Not a direct-payment original: read and left for its own flow.
    NotMine {
        /// The voucher.
        key: VoucherKey,
        /// Its leg.
        leg: Leg,
    },
}

/// One payment run at the bank: reads up to `limit` unread vouchers and pays each 5201
/// among them (see the module documentation). A 5201 that does not parse is refused
/// (签收失败); one the books refuse is left at BookingFailed (核算失败) with the reason.
///
/// # Errors
/// [`DirectError::Library`] or [`DirectError::Store`] for a store failure (the run stops;
/// what was recorded stays), [`DirectError::Stamping`] if the bank's seal cannot stamp.
pub async fn pay_received(
    store: &Store,
    registry: &Registry,
    bank: &Bank<'_>,
    limit: u32,
    now: u64,
) -> Result<Vec<PayOutcome>, DirectError> {
    let library = store.library();
    let mut outcomes = Vec::new();
    for record in library.read(limit, bank.actor, now).await? {
        if record.key.vt_code != VT_5201 || record.leg != Leg::Original {
            outcomes.push(PayOutcome::NotMine {
                key: record.key,
                leg: record.leg,
            });
            continue;
        }
        outcomes.push(pay_record(store, registry, bank, &record, now).await?);
    }
    Ok(outcomes)
}

/// Pays one read 5201 original (the body of [`pay_received`], for a runtime that reads
/// and dispatches itself), with no account refused by the bank ([`RowRules::default`]).
///
/// # Errors
/// As [`pay_received`].
pub async fn pay_record(
    store: &Store,
    registry: &Registry,
    bank: &Bank<'_>,
    record: &VoucherRecord,
    now: u64,
) -> Result<PayOutcome, DirectError> {
    pay_record_with(store, registry, bank, &RowRules::default(), record, now).await
}

/// Pays one read 5201 original. A single payment (`BusinessTypeCode` 1) is paid whole. A
/// salary or batch payment (3, 4) is paid row by row ([`super::batch`]): each payable row
/// is one book operation ([`row_op_id`]); a row that cannot be paid (bad account number,
/// empty payee name, an account `rules` refuses, or one the books refuse) gets `XPayAmt`
/// 0.00 and its reason in `XAddWord`; the receipt's `XPayAmt` is the sum paid. When no row
/// can be paid, the voucher is returned (退回) with every row's reason and nothing is
/// booked.
///
/// # Errors
/// As [`pay_received`].
pub async fn pay_record_with(
    store: &Store,
    registry: &Registry,
    bank: &Bank<'_>,
    rules: &RowRules<'_>,
    record: &VoucherRecord,
    now: u64,
) -> Result<PayOutcome, DirectError> {
    pay_or_hold(
        store,
        registry,
        bank,
        rules,
        PayeeBankRule::Optional,
        record,
        now,
    )
    .await
}

/// Pays one read 5201 original as [`pay_record_with`] does, unless `payee_bank` requires
/// the payee's bank number and this single payment has none: then it is acknowledged and
/// approved and waits for a person at 待补录 (74, [`PayOutcome::AwaitingCompletion`]),
/// nothing booked, until [`complete_payee_bank`]. Batches are paid as they are.
///
/// # Errors
/// As [`pay_received`].
pub async fn pay_or_hold(
    store: &Store,
    registry: &Registry,
    bank: &Bank<'_>,
    rules: &RowRules<'_>,
    payee_bank: PayeeBankRule,
    record: &VoucherRecord,
    now: u64,
) -> Result<PayOutcome, DirectError> {
    let key = &record.key;
    // Read once: what decides the payment, and the stamps its receipt carries.
    let original = stored_body(&record.body, VoucherFlag::Original);
    // A salary or batch master whose rows travel in 8207s.
    if let Ok(original) = &original
        && super::batch::is_master(&original.voucher)
    {
        return super::batch::pay_master(store, registry, bank, rules, record, original, now).await;
    }
    let decided =
        match original.and_then(|original| decide_payment(registry, rules, record, original)) {
            Ok(decided) => decided,
            Err(e) => return refuse_payment(store, key, e.to_string(), bank.actor, now).await,
        };
    accept_for_processing::<DirectError>(store, key, bank.actor, now).await?;
    if decided.rows.is_none() && payee_bank.holds(&decided.original.voucher) {
        hold_for_completion::<DirectError>(store, key, bank.actor, now).await?;
        return Ok(PayOutcome::AwaitingCompletion { key: key.clone() });
    }
    pay_approved(store, bank, record, decided, None, now).await
}

/// Refuses (签收失败) a received payment voucher the bank cannot pay, with `reason`.
pub(crate) async fn refuse_payment(
    store: &Store,
    key: &VoucherKey,
    reason: String,
    actor: &str,
    now: u64,
) -> Result<PayOutcome, DirectError> {
    store
        .library()
        .refuse(key, Leg::Original, &reason, actor, now)
        .await?;
    Ok(PayOutcome::Failed {
        key: key.clone(),
        reason,
    })
}

/// Returns (退回) a payment voucher of which nothing was paid, with the books' `reason`,
/// which its sender's status then shows; the sender restores its quota.
pub(crate) async fn return_payment(
    store: &Store,
    key: &VoucherKey,
    reason: String,
    actor: &str,
    now: u64,
) -> Result<PayOutcome, DirectError> {
    store
        .library()
        .return_voucher(key, Leg::Original, &reason, actor, now)
        .await?;
    Ok(PayOutcome::Failed {
        key: key.clone(),
        reason,
    })
}

/// A person at the bank completes the payee's bank number of a 5201 waiting at 待补录
/// (`record`, as the library holds it now): the number goes into the event log
/// (待补录 → 复核), then the voucher is paid as [`pay_or_hold`] pays an approved one, and
/// its sealed receipt carries the number ([`fill_completed_bank_no`]). The original keeps
/// its signed body.
///
/// # Errors
/// [`DirectError::Invalid`] for a voucher not waiting at 待补录 (a second completion:
/// nothing changes); [`DirectError::Library`] with [`LibraryError::Illegal`] when another
/// completion won the race; otherwise as [`pay_received`].
pub async fn complete_payee_bank(
    store: &Store,
    registry: &Registry,
    bank: &Bank<'_>,
    rules: &RowRules<'_>,
    record: &VoucherRecord,
    bank_no: &BankNo,
    now: u64,
) -> Result<PayOutcome, DirectError> {
    if record.key.vt_code != VT_5201 || !is_awaiting_completion(record) {
        return Err(not_awaiting(&record.key));
    }
    let original = stored_body(&record.body, VoucherFlag::Original)?;
    let decided = decide_payment(registry, rules, record, original)?;
    record_completion::<DirectError>(store, &record.key, bank_no, bank.actor, now).await?;
    pay_approved(store, bank, record, decided, Some(bank_no), now).await
}

/// The refusal of a completion for a voucher not waiting at 待补录.
pub(crate) fn not_awaiting(key: &VoucherKey) -> DirectError {
    invalid(format!(
        "{key} is not waiting for its payee's bank number (待补录)"
    ))
}

/// What the bank reads from a 5201 before paying it.
struct Decided<'r> {
    original: EnvelopeBody,
    amount: Amount,
    tenant: Tenant,
    ty: &'r VoucherType,
    /// A salary or batch payment's rows; `None` for a single payment.
    rows: Option<Vec<RowDecision>>,
}

fn decide_payment<'r>(
    registry: &'r Registry,
    rules: &RowRules<'_>,
    record: &VoucherRecord,
    original: EnvelopeBody,
) -> Result<Decided<'r>, DirectError> {
    let amount = payment_amount(&original.voucher)?;
    let tenant = tenant_of(&record.key)?;
    let ty = stamping::type_of(registry, &original.voucher)?;
    let rows = if is_batch(&original.voucher)? {
        Some(decide_rows(&original.voucher, rules)?)
    } else {
        None
    };
    Ok(Decided {
        original,
        amount,
        tenant,
        ty,
        rows,
    })
}

/// Books an approved 5201 (复核) and returns its sealed receipt, with the payee's bank
/// number a person `completed`, if any; returns (退回) the voucher when nothing could be
/// paid.
async fn pay_approved(
    store: &Store,
    bank: &Bank<'_>,
    record: &VoucherRecord,
    decided: Decided<'_>,
    completed: Option<&BankNo>,
    now: u64,
) -> Result<PayOutcome, DirectError> {
    let key = &record.key;
    let Decided {
        original,
        amount,
        tenant,
        ty,
        rows,
    } = decided;
    let (refusal, rows) = match rows {
        // Pay first (垫付): advance → finance ZBA → payees, all or nothing.
        None => {
            let op = BookOp::pay_direct(op_id("pay", key), tenant, amount)?;
            let refusal = first(store.apply_book_ops(now, &[op]).await?)
                .err()
                .map(|e| e.to_string());
            (refusal, None)
        }
        Some(rows) => {
            let rows = pay_rows(store, key, tenant, rows, now).await?;
            (nothing_payable(&rows), Some(rows))
        }
    };
    if let Some(reason) =
        record_booking::<DirectError>(store, record, refusal, bank.actor, now).await?
    {
        return return_payment(store, key, reason, bank.actor, now).await;
    }
    let payment = Payment {
        date: bank.pay_date,
        serial: serial_for(bank.serial_prefix, key),
    };
    let (mut receipt, amount) = match &rows {
        None => (fill_receipt(&original, &payment)?, amount),
        Some(rows) => (
            fill_batch_receipt(&original, &payment, rows)?,
            paid_sum(rows)?,
        ),
    };
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
        amount,
    })
}

/// Most rows booked in one call to the books (each row's payment is two transfers, well
/// within the books' batch limit).
const ROWS_PER_BOOKING: usize = 1_000;

/// Books the payable rows of a batch, each on its own (advance → finance ZBA → payees),
/// and answers the decisions with the rows the books refused turned unpaid. Nothing is
/// booked when no row is payable.
pub(crate) async fn pay_rows(
    store: &Store,
    key: &VoucherKey,
    tenant: Tenant,
    mut rows: Vec<RowDecision>,
    now: u64,
) -> Result<Vec<RowDecision>, DirectError> {
    let mut payable = Vec::new();
    let mut ops = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        if let RowDecision::Pay { amount } = row {
            ops.push(BookOp::pay_direct(row_op_id(key, i + 1), tenant, *amount)?);
            payable.push(i);
        }
    }
    if ops.is_empty() {
        return Ok(rows);
    }
    // A large batch (its rows from 8207s) is booked in chunks within the books' batch limit;
    // each row's operation id is its own, so a chunk repeated after a crash books nothing
    // twice.
    let mut outcomes = Vec::with_capacity(ops.len());
    for chunk in ops.chunks(ROWS_PER_BOOKING) {
        outcomes.extend(store.apply_book_ops(now, chunk).await?);
    }
    if outcomes.len() != ops.len() {
        return Err(invalid("the books did not answer every row"));
    }
    for (i, outcome) in payable.into_iter().zip(outcomes) {
        if let Err(refusal) = outcome {
            let amount = rows[i].amount();
            rows[i] = RowDecision::Refuse {
                amount,
                reason: clip(format!("核算失败 (refused by the books: {refusal})")),
            };
        }
    }
    Ok(rows)
}

// ---------------------------------------------------------------------------------------
// 3. Finance books the receipt
// ---------------------------------------------------------------------------------------

/// What became of one received voucher at finance.
#[derive(Debug)]
pub enum ReceiptOutcome {
    /// The payment is done: the original is 已收到对方回单 (12), the receipt processed.
    Done {
        /// The voucher.
        key: VoucherKey,
        /// The amount the bank paid.
        paid: Amount,
    },
    /// The receipt of a master waits, read, for the receipts of its 8207s
    /// ([`super::batch::book_8207_receipt`] books it when the last one comes).
    Waiting {
        /// The voucher.
        key: VoucherKey,
    },
    /// The receipt does not match the original; it is left ValidationFailed with the
    /// reason.
    Failed {
        /// The voucher.
        key: VoucherKey,
        /// Why.
        reason: String,
    },
    /// Not a direct-payment receipt: read and left for its own flow.
    NotMine {
        /// The voucher.
        key: VoucherKey,
        /// Its leg.
        leg: Leg,
    },
}

/// Finance reads up to `limit` unread vouchers and books each 5201 receipt: checked against
/// the original it sent, the original marked acknowledged (the receipt proves it) and
/// 已收到对方回单, the receipt signed for and processed (处理成功).
///
/// # Errors
/// [`DirectError::Library`] or [`DirectError::Store`] for a store failure.
pub async fn book_receipts(
    store: &Store,
    actor: &str,
    limit: u32,
    now: u64,
) -> Result<Vec<ReceiptOutcome>, DirectError> {
    book_receipts_of(VT_5201, store, actor, limit, now).await
}

/// [`book_receipts`] for the receipts of payment vouchers of type `vt_code` (5201, 8202).
pub(crate) async fn book_receipts_of(
    vt_code: &str,
    store: &Store,
    actor: &str,
    limit: u32,
    now: u64,
) -> Result<Vec<ReceiptOutcome>, DirectError> {
    let library = store.library();
    let mut outcomes = Vec::new();
    for record in library.read(limit, actor, now).await? {
        if record.key.vt_code != vt_code || record.leg != Leg::Receipt {
            outcomes.push(ReceiptOutcome::NotMine {
                key: record.key,
                leg: record.leg,
            });
            continue;
        }
        outcomes.push(book_receipt(store, actor, &record, now).await?);
    }
    Ok(outcomes)
}

/// Books one read payment receipt (5201 or 8202) against the original this node sent (the
/// body of [`book_receipts`]).
///
/// # Errors
/// As [`book_receipts`].
pub async fn book_receipt(
    store: &Store,
    actor: &str,
    record: &VoucherRecord,
    now: u64,
) -> Result<ReceiptOutcome, DirectError> {
    let library = store.library();
    let key = &record.key;
    let original = library.status(key, Leg::Original).await?;
    let checked = match &original {
        None => Err(invalid("no original of ours for the receipt")),
        Some(sent) if sent.sender != record.receiver || sent.receiver != record.sender => {
            Err(invalid("the receipt's parties are not the original's"))
        }
        Some(sent) => {
            // What the vouchers say: their stamps were checked when the receipt arrived.
            match (
                stored_voucher(&sent.body, VoucherFlag::Original),
                stored_voucher(&record.body, VoucherFlag::Receipt),
            ) {
                // A master: checked with its 8207s and their receipts, once all are in.
                (Ok(o), Ok(r)) if super::batch::is_master(&o) => {
                    match super::batch::sent_parts(store, key).await {
                        Ok(None) => {
                            return Ok(ReceiptOutcome::Waiting { key: key.clone() });
                        }
                        Ok(Some(parts)) => super::batch::check_master_receipt(&o, &r, &parts),
                        Err(e @ DirectError::Invalid(_)) => Err(e),
                        Err(e) => return Err(e),
                    }
                }
                (Ok(o), Ok(r)) => check_payment_receipt(&o, &r),
                (Err(e), _) | (_, Err(e)) => Err(e),
            }
        }
    };
    // Booked already (a repeated step): the unpaid part's restore answers "already done".
    let booked = library
        .status(key, Leg::Receipt)
        .await?
        .is_some_and(|r| r.processing == Some(Processing::Processed));
    if booked {
        return match checked {
            Ok(checked) => {
                if let Some(unpaid) = checked.unpaid {
                    restore_unpaid(store, key, unpaid, now).await?;
                }
                Ok(ReceiptOutcome::Done {
                    key: key.clone(),
                    paid: checked.paid,
                })
            }
            Err(e) => Ok(ReceiptOutcome::Failed {
                key: key.clone(),
                reason: e.to_string(),
            }),
        };
    }
    let checked = match checked {
        Ok(checked) => checked,
        Err(e) => {
            let reason = e.to_string();
            let failed = ReceiptCheck::Failed(&reason);
            record_receipt_check::<DirectError>(store, key, original.as_ref(), failed, actor, now)
                .await?;
            return Ok(ReceiptOutcome::Failed {
                key: key.clone(),
                reason,
            });
        }
    };
    // The receipt proves the bank took and signed for the original: recorded with the
    // receipt's check; booked with it unless unpaid rows go back to the plan first.
    let passed = ReceiptCheck::Passed {
        book: checked.unpaid.is_none(),
    };
    record_receipt_check::<DirectError>(store, key, original.as_ref(), passed, actor, now).await?;
    // A batch's unpaid rows go back to the plan the 5201 consumed, once.
    let Some(unpaid) = checked.unpaid else {
        return Ok(ReceiptOutcome::Done {
            key: key.clone(),
            paid: checked.paid,
        });
    };
    let (event, reason) = match restore_unpaid(store, key, unpaid, now).await {
        Ok(_) => (ProcessingEvent::Book, None),
        Err(e @ (DirectError::Refused(_) | DirectError::Invalid(_))) => {
            (ProcessingEvent::FailBooking, Some(e.to_string()))
        }
        Err(e) => return Err(e),
    };
    library
        .process(key, Leg::Receipt, event, reason.as_deref(), actor, now)
        .await?;
    Ok(match reason {
        Some(reason) => ReceiptOutcome::Failed {
            key: key.clone(),
            reason,
        },
        None => ReceiptOutcome::Done {
            key: key.clone(),
            paid: checked.paid,
        },
    })
}

/// What finance learns from a checked payment receipt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckedReceipt {
    /// The amount paid (`XPayAmt`).
    pub paid: Amount,
    /// For a salary or batch 5201 with rows not paid: their sum, to go back to the plan.
    pub unpaid: Option<Amount>,
}

/// [`check_receipt`], and for a salary or batch 5201 also [`check_batch_receipt`] (the
/// rows, every problem listed).
///
/// # Errors
/// [`DirectError::Invalid`].
pub fn check_payment_receipt(
    original: &Voucher,
    receipt: &Voucher,
) -> Result<CheckedReceipt, DirectError> {
    let paid = check_receipt(original, receipt)?;
    if original.vt_code() != VT_5201 || !is_batch(original)? {
        return Ok(CheckedReceipt { paid, unpaid: None });
    }
    let batch = check_batch_receipt(original, receipt).map_err(|p| invalid(p.join("; ")))?;
    Ok(CheckedReceipt {
        paid: batch.paid,
        unpaid: (!batch.unpaid.is_zero()).then_some(batch.unpaid),
    })
}
