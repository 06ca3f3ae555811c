//! Salary and batch direct payments (5201 with `BusinessTypeCode` 3 工资 / 4 批量, DOMAIN
//! §3.2): the agent bank pays each detail row on its own, and finance gives the unpaid part
//! back to its plan.
//!
//! - [`decide_rows`] (pure): which rows the bank pays. A row whose payee account number is
//!   not an account number, whose payee name is empty, or whose account the bank's
//!   [`RowRules::refused_accounts`] names (closed accounts) is not paid.
//! - [`fill_batch_receipt`] (pure): the receipt — a paid row's `XPayAmt` is its `PayAmt`,
//!   an unpaid row's is `0.00` with the reason in `XAddWord`; the header's `XPayAmt` is the
//!   sum paid (DOMAIN §3.2 step 4, [DAT95]).
//! - [`check_batch_receipt`] (pure): finance's check of such a receipt against its original,
//!   every problem listed; the amounts paid and unpaid.
//! - [`restore_unpaid`]: finance gives the unpaid part back to the plan the 5201 consumed,
//!   once (its own operation id, so a later refund's restore of the paid part is not
//!   taken for it).
//! - [`merge_8207`] (pure): the rows of the 8207s (财政批量业务支付明细) that carry a
//!   large batch, merged into the 5201 they belong to (`OriVoucherNo`), sums and counts
//!   checked ([`assess_8207`] for a bank that is still waiting for some).
//!
//! The bank's and finance's steps that use these are [`super::direct::pay_record_with`] and
//! [`super::direct::book_receipt`]. Every row's payment is one book operation whose id comes
//! from the voucher key and the row number ([`row_op_id`]), so a repeated step books
//! nothing twice.
//!
//! # The 8207 transport (财政批量业务支付明细)
//!
//! A large batch travels as a master — the 5201 without rows (the registry lets a 5201 of
//! `BusinessTypeCode` 3 or 4 come without details, `details_optional_when`; a single
//! payment still needs its detail) — and 8207s carrying its rows, each naming it
//! (`OriVoucherNo`, `OriginalVtCode` 5201). Finance's [`crate::party::Party::issue_direct`]
//! chooses this path by itself for a batch with more rows than the party's
//! `rows_per_8207` (default [`ROWS_PER_8207`]; 0 keeps every batch's rows in its 5201);
//! `Party::issue_direct_8207` asks for it.
//!
//! - [`split_8207`] (pure): the master and its 8207s, numbered [`part_voucher_no`] (the
//!   master's number and `-001`…, or a derived 20-character number when that does not fit).
//! - [`issue_with_8207s`] (finance): checks the 8207s (numbers, stamps, [`merge_8207`]),
//!   consumes the plan's quota once for the master, writes and sends the master and every
//!   8207 to the same bank through the library's outbox.
//! - [`assess_8207`] (pure): whether the 8207s a bank holds for a master are still short of
//!   it ([`PartsState::Incomplete`]), complete it ([`PartsState::Complete`], the merged
//!   rows) or contradict it ([`PartsState::Contradicts`], every reason).
//! - [`pay_master`] (bank, from [`super::direct::pay_or_hold`]): a read master waits — read,
//!   not acknowledged ([`PayOutcome::Waiting`]) — until the 8207s naming it have all been
//!   read and add up to it; then it is paid row by row exactly as a batch with rows
//!   ([`decide_rows`], one book operation per row, [`row_op_id`] over the merged rows in
//!   8207-number order). Each 8207 is acknowledged, booked (处理成功) and answered by its
//!   own sealed receipt carrying its rows' `XPayAmt`/`XAddWord` ([`fill_8207_receipt`]);
//!   the master's receipt keeps the master's bytes with `XPayDate`, `XAgentBusinessNo` and
//!   `XPayAmt` = the sum paid ([`fill_master_receipt`]), so finance's stamps still verify.
//!   8207s that contradict the master return it (退回) with [`merge_8207`]'s reasons and
//!   refuse (签收失败) the 8207s read; nothing is booked.
//! - [`pay_part`] (bank): the step of a read 8207. 8207s may come before their master: they
//!   wait, read. When an 8207 arrives for a master that waits, the master's step runs then
//!   (the worker's tick dispatches the 8207, [`crate::party::Party::dispatch`]); the
//!   read-again sweep also takes waiting masters and 8207s up again. An 8207 arriving after
//!   its master was paid or returned is refused. A repeated delivery of an 8207 is stored
//!   once by the library and takes effect once.
//! - [`book_8207_receipt`] and [`check_master_receipt`] (finance): each 8207 receipt is
//!   checked against the 8207 finance sent (rows, amounts, `XPayAmt` = `PayAmt` or 0.00
//!   with `XAddWord`) and booked; the master's receipt waits, read, until every 8207's
//!   receipt is in ([`super::direct::ReceiptOutcome::Waiting`]), then is booked as a batch
//!   receipt is, the unpaid part restored to the plan once ([`restore_unpaid`]); the last
//!   8207 receipt to arrive books a master receipt that waited.
//!
//! Limits: at most [`ROWS_PER_8207_MAX`] rows per 8207 and [`PARTS_MAX`] 8207s per master;
//! the bank finds a master's 8207s by looking through the 8207s it has received and not yet
//! acknowledged (at most [`WAITING_SCAN_MAX`]); resuming a master after a crash, it finds
//! the acknowledged ones by finance's numbering, else by looking through all acknowledged
//! 8207s (within the same limit). An 8207 row carries no function class or unit of its own:
//! every row of a batch sent this way must have the master's (or none). An 8207 whose master
//! never comes stays read and is not refused after any time (the read-again sweep takes it
//! up in turn with the other stopped vouchers, going on from where the last sweep ended).

use guoku_domain::{AccountNo, Amount, BusinessType, gbk_len};
use guoku_store::Store;
use guoku_store::books::{
    AccountKind, Applied, BookAccount, BookFilter, BookOp, IndicatorKey, OpCode,
};
use guoku_store::library::{Direction, LIST_MAX, NewVoucher, VoucherRecord, content_hash};
use guoku_voucher::lifecycle::{Exchange, Leg, Processing, ProcessingEvent};
use guoku_voucher::{EnvelopeBody, Fields, Registry, Voucher, VoucherFlag, VoucherKey};

use crate::stamping::{self, Positions};

use super::common::{
    ReceiptCheck, Returner, accept_for_processing, envelope_bytes, record_booking,
    record_receipt_check, seal_and_return,
};
use super::direct::{
    Bank, CheckedReceipt, DirectError, PayOutcome, Payment, ReceiptOutcome, Route, VT_5201,
    check_receipt, field, invalid, op_id, pay_rows, serial_for, stored_body, tenant_of,
};

/// The batch payment details' type code (财政批量业务支付明细).
pub const VT_8207: &str = "8207";

/// The most bytes (GBK) of a row's failure reason (`XAddWord`).
const REASON_MAX_BYTES: usize = 200;

/// What the bank refuses to pay into, beside what the voucher itself gets wrong.
#[derive(Clone, Copy, Debug, Default)]
pub struct RowRules<'a> {
    /// Payee account numbers the bank will not pay (closed, frozen): empty by default.
    pub refused_accounts: &'a [&'a str],
}

/// The bank's decision on one detail row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RowDecision {
    /// Paid its `PayAmt`.
    Pay {
        /// The row's `PayAmt`.
        amount: Amount,
    },
    /// Not paid: `XPayAmt` 0.00 and the reason in `XAddWord`.
    Refuse {
        /// The row's `PayAmt`, which stays unpaid.
        amount: Amount,
        /// Why (at most 200 GBK bytes).
        reason: String,
    },
}

impl RowDecision {
    /// The row's ordered amount.
    #[must_use]
    pub fn amount(&self) -> Amount {
        match self {
            Self::Pay { amount } | Self::Refuse { amount, .. } => *amount,
        }
    }
}

/// Whether a 5201 is a salary or batch payment (`BusinessTypeCode` 3 or 4), paid row by
/// row. A missing code is a single payment (1), as before batches were known.
///
/// # Errors
/// [`DirectError::Invalid`] for a code that is not 1, 3 or 4.
pub fn is_batch(voucher: &Voucher) -> Result<bool, DirectError> {
    match voucher.header.value("BusinessTypeCode") {
        None => Ok(false),
        Some(code) => match code.parse::<BusinessType>() {
            Ok(BusinessType::Single) => Ok(false),
            Ok(BusinessType::Salary | BusinessType::Batch) => Ok(true),
            Err(_) => Err(invalid(format!(
                "BusinessTypeCode {code:?} is not 1 (单笔), 3 (工资) or 4 (批量)"
            ))),
        },
    }
}

/// The id of the book operation paying row `row` (1-based) of the voucher `key`.
#[must_use]
pub fn row_op_id(key: &VoucherKey, row: usize) -> u128 {
    op_id(&format!("pay-row-{row}"), key)
}

/// `reason` cut to at most [`REASON_MAX_BYTES`] GBK bytes, on a character boundary.
pub(crate) fn clip(reason: String) -> String {
    if gbk_len(&reason) <= REASON_MAX_BYTES {
        return reason;
    }
    let mut out = String::new();
    for c in reason.chars() {
        let mut next = out.clone();
        next.push(c);
        if gbk_len(&next) > REASON_MAX_BYTES {
            break;
        }
        out = next;
    }
    out
}

/// The amounts of the rows, each a positive `PayAmt`, adding up to the header's `PayAmt`;
/// every problem listed.
fn row_amounts(voucher: &Voucher) -> Result<Vec<Amount>, Vec<String>> {
    let mut problems = Vec::new();
    if voucher.details.is_empty() {
        problems.push(format!(
            "a salary or batch {} has no detail rows",
            voucher.vt_code()
        ));
    }
    let mut amounts = Vec::new();
    for (i, detail) in voucher.details.iter().enumerate() {
        match detail.value("PayAmt").map(str::parse::<Amount>) {
            Some(Ok(a)) if a.is_positive() => amounts.push(a),
            _ => problems.push(format!(
                "row {}: PayAmt is missing, not an amount or not positive",
                i + 1
            )),
        }
    }
    let master = voucher.header.value("PayAmt").map(str::parse::<Amount>);
    match master {
        Some(Ok(master)) if problems.is_empty() => {
            let sum = amounts
                .iter()
                .try_fold(Amount::ZERO, |s, a| s.checked_add(*a));
            if sum != Some(master) {
                problems.push(format!(
                    "the rows add up to {}, not the PayAmt {master}",
                    sum.map_or_else(|| "an overflow".to_owned(), |s| s.to_string())
                ));
            }
        }
        Some(Ok(_)) => {}
        _ => problems.push("PayAmt is missing or not an amount".to_owned()),
    }
    if problems.is_empty() {
        Ok(amounts)
    } else {
        Err(problems)
    }
}

/// Which rows of a salary or batch 5201 the bank pays (see the module documentation).
///
/// # Errors
/// [`DirectError::Invalid`] naming every problem when the voucher itself is malformed: no
/// rows, a row's `PayAmt` not a positive amount, rows not adding up to the header's
/// `PayAmt`. Then nothing may be paid.
pub fn decide_rows(
    voucher: &Voucher,
    rules: &RowRules<'_>,
) -> Result<Vec<RowDecision>, DirectError> {
    let amounts = row_amounts(voucher).map_err(|p| invalid(p.join("; ")))?;
    Ok(voucher
        .details
        .iter()
        .zip(amounts)
        .map(|(detail, amount)| {
            let mut reasons = Vec::new();
            let acct = detail.get("PayeeAcctNo").unwrap_or("");
            if acct.parse::<AccountNo>().is_err() {
                reasons.push(format!(
                    "收款人账号不合法 (PayeeAcctNo {acct:?} is not an account number)"
                ));
            } else if rules.refused_accounts.contains(&acct) {
                reasons.push(format!(
                    "收款人账户已销户 (the bank refuses account {acct})"
                ));
            }
            if detail
                .value("PayeeAcctName")
                .is_none_or(|n| n.trim().is_empty())
            {
                reasons.push("收款人名称为空 (PayeeAcctName is empty)".to_owned());
            }
            if reasons.is_empty() {
                RowDecision::Pay { amount }
            } else {
                RowDecision::Refuse {
                    amount,
                    reason: clip(reasons.join("; ")),
                }
            }
        })
        .collect())
}

/// The sum of the rows paid.
///
/// # Errors
/// [`DirectError::Invalid`] on an overflow.
pub fn paid_sum(rows: &[RowDecision]) -> Result<Amount, DirectError> {
    rows.iter()
        .filter_map(|r| match r {
            RowDecision::Pay { amount } => Some(*amount),
            RowDecision::Refuse { .. } => None,
        })
        .try_fold(Amount::ZERO, Amount::checked_add)
        .ok_or_else(|| invalid("the rows paid overflow"))
}

/// Why no row can be paid: every row's reason, numbered.
#[must_use]
pub fn nothing_payable(rows: &[RowDecision]) -> Option<String> {
    let mut reasons = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        match row {
            RowDecision::Pay { .. } => return None,
            RowDecision::Refuse { reason, .. } => reasons.push(format!("row {}: {reason}", i + 1)),
        }
    }
    Some(format!("no row can be paid: {}", reasons.join("; ")))
}

/// The receipt of a salary or batch 5201: flag 回单, `XPayDate` and `XAgentBusinessNo` on
/// the header, each row's `XPayAmt` (its `PayAmt` when paid, else `0.00` with `XAddWord`)
/// and `XPayDate` on paid rows, the header's `XPayAmt` the sum paid. No stamp yet.
///
/// # Errors
/// [`DirectError::Invalid`] when `rows` is not one decision per detail, or on an overflow.
pub fn fill_batch_receipt(
    original: &EnvelopeBody,
    payment: &Payment,
    rows: &[RowDecision],
) -> Result<EnvelopeBody, DirectError> {
    if rows.len() != original.voucher.details.len() {
        return Err(invalid(format!(
            "{} decisions for {} rows",
            rows.len(),
            original.voucher.details.len()
        )));
    }
    let paid = paid_sum(rows)?;
    let mut receipt = original.clone();
    receipt.flag = VoucherFlag::Receipt;
    let date = payment.date.to_string();
    let voucher = &mut receipt.voucher;
    voucher.header.set("XPayDate", date.clone());
    voucher
        .header
        .set("XAgentBusinessNo", payment.serial.clone());
    voucher.header.set("XPayAmt", paid.to_string());
    for (detail, row) in voucher.details.iter_mut().zip(rows) {
        match row {
            RowDecision::Pay { amount } => {
                detail.set("XPayAmt", amount.to_string());
                detail.set("XPayDate", date.clone());
            }
            RowDecision::Refuse { reason, .. } => {
                detail.set("XPayAmt", Amount::ZERO.to_string());
                detail.set("XAddWord", reason.clone());
            }
        }
    }
    Ok(receipt)
}

/// What a batch receipt says was paid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchPaid {
    /// The sum of the rows paid (the header's `XPayAmt`).
    pub paid: Amount,
    /// The sum of the rows not paid, to go back to the plan.
    pub unpaid: Amount,
    /// How many rows were not paid.
    pub unpaid_rows: usize,
}

/// Finance's check of a salary or batch receipt against its original: the same rows (every
/// field but the X fields unchanged), each row's `XPayAmt` either its `PayAmt` or `0.00`
/// with an `XAddWord`, the header's `XPayAmt` the sum paid.
///
/// # Errors
/// Every problem found.
pub fn check_batch_receipt(
    original: &Voucher,
    receipt: &Voucher,
) -> Result<BatchPaid, Vec<String>> {
    let amounts = row_amounts(original)?;
    let mut problems = Vec::new();
    let Some(checked) = check_rows(original, receipt, &amounts, &mut problems) else {
        return Err(problems);
    };
    match receipt.header.value("XPayAmt").map(str::parse::<Amount>) {
        Some(Ok(x)) if x == checked.paid => {}
        Some(Ok(x)) => problems.push(format!(
            "the header's XPayAmt {x} is not the sum of the rows paid, {}",
            checked.paid
        )),
        _ => problems.push("the header's XPayAmt is missing or not an amount".to_owned()),
    }
    if checked.paid.is_zero() {
        problems.push("no row is paid: such a batch is returned, not receipted".to_owned());
    }
    if problems.is_empty() {
        Ok(checked)
    } else {
        Err(problems)
    }
}

/// The rows of `receipt` against those of `original` (whose amounts are `amounts`): the
/// same rows, every field but the X fields unchanged, each `XPayAmt` its `PayAmt` or 0.00
/// with an `XAddWord`. What was paid, the problems pushed; `None` on an overflow.
fn check_rows(
    original: &Voucher,
    receipt: &Voucher,
    amounts: &[Amount],
    problems: &mut Vec<String>,
) -> Option<BatchPaid> {
    if receipt.details.len() != original.details.len() {
        problems.push(format!(
            "the receipt has {} rows, the original {}",
            receipt.details.len(),
            original.details.len()
        ));
    }
    let mut paid = Some(Amount::ZERO);
    let mut unpaid = Some(Amount::ZERO);
    let mut unpaid_rows = 0;
    for (i, ((o, r), amount)) in original
        .details
        .iter()
        .zip(&receipt.details)
        .zip(amounts)
        .enumerate()
    {
        let n = i + 1;
        if let Some((name, _)) = o
            .iter()
            .filter(|(name, _)| !name.starts_with('X'))
            .find(|(name, value)| r.get(name) != Some(*value))
        {
            problems.push(format!("row {n}: {name} differs from the original"));
        }
        match r.value("XPayAmt").map(str::parse::<Amount>) {
            Some(Ok(x)) if x == *amount => paid = paid.and_then(|p| p.checked_add(x)),
            Some(Ok(x)) if x.is_zero() => {
                if r.value("XAddWord").is_none() {
                    problems.push(format!(
                        "row {n}: unpaid (XPayAmt 0.00) without a reason (XAddWord)"
                    ));
                }
                unpaid = unpaid.and_then(|u| u.checked_add(*amount));
                unpaid_rows += 1;
            }
            Some(Ok(x)) => problems.push(format!(
                "row {n}: XPayAmt {x} is neither the PayAmt {amount} nor 0.00"
            )),
            _ => problems.push(format!("row {n}: XPayAmt is missing or not an amount")),
        }
    }
    let (Some(paid), Some(unpaid)) = (paid, unpaid) else {
        problems.push("the rows' amounts overflow".to_owned());
        return None;
    };
    Some(BatchPaid {
        paid,
        unpaid,
        unpaid_rows,
    })
}

/// Finance gives the unpaid part of a batch 5201 `key` back to the plan its issue
/// consumed (`BookOp::pay_from_plan` under [`op_id`]`("quota", key)`), used → plan, once:
/// the operation id is the voucher's own (`"restore-unpaid"`), distinct from the one a
/// return, void or refund restores under, so repeating this answers
/// [`Applied::AlreadyDone`] and a later refund of the paid part still restores.
/// `None` when the issue consumed no plan quota in these books.
///
/// # Errors
/// [`DirectError::Refused`] (nothing changed), [`DirectError::Invalid`] when the plan the
/// issue consumed cannot be found, a store error.
pub async fn restore_unpaid(
    store: &Store,
    key: &VoucherKey,
    unpaid: Amount,
    now: u64,
) -> Result<Option<Applied>, DirectError> {
    let tenant = tenant_of(key)?;
    let issued = store
        .transfers(vec![BookOp::transfer_id(op_id("quota", key), 0)])
        .await?;
    let Some(issued) = issued.into_iter().next() else {
        return Ok(None);
    };
    let mut filter = BookFilter::all(AccountKind::PlanUsed, tenant);
    if let Some(record) = store.library().status(key, Leg::Original).await?
        && let Ok(body) = super::common::stored_body(&record.body, VoucherFlag::Original)
        && let Some(unit) = body.voucher.header.value("AgencyCode")
    {
        filter.unit = unit.to_owned();
    }
    let used = store
        .book_accounts(filter)
        .await?
        .into_iter()
        .map(|(label, _)| BookAccount { tenant, label })
        .find(|a| a.id() == issued.transfer.credit_account_id)
        .ok_or_else(|| invalid(format!("{key}: the plan it consumed is not in the books")))?;
    let mut plan = used.clone();
    plan.label.kind = AccountKind::Plan;
    if plan.id() != issued.transfer.debit_account_id {
        return Err(invalid(format!(
            "{key}: the issue did not consume the plan of its used account"
        )));
    }
    let op = BookOp::transfer(
        op_id("restore-unpaid", key),
        used,
        plan,
        unpaid,
        OpCode::Restore,
    )?;
    let outcome = store
        .apply_book_ops(now, &[op])
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| invalid("the books answered nothing"))?;
    Ok(Some(outcome?))
}

// ---------------------------------------------------------------------------------------
// 8207: the rows of a large batch
// ---------------------------------------------------------------------------------------

/// What merging the 8207s of a master found: every problem of the parts themselves, the
/// sum of the parts (`None` when a part's amounts do not parse or add up), the master's
/// `PayAmt`, and the merged rows.
struct Merge {
    problems: Vec<String>,
    total: Option<Amount>,
    master_amount: Option<Amount>,
    rows: Vec<Fields>,
}

/// Merges the rows of `parts` under `master` without comparing their sum with the
/// master's amount (see [`merge_8207`]).
fn merge_parts(master: &Voucher, parts: &[Voucher]) -> Merge {
    let mut problems = Vec::new();
    let key = master.key();
    if master.vt_code() != VT_5201 {
        problems.push(format!("the master is a {}, not a 5201", master.vt_code()));
    }
    match is_batch(master) {
        Ok(true) => {}
        Ok(false) => problems
            .push("the master is not a salary or batch 5201 (BusinessTypeCode 3 or 4)".to_owned()),
        Err(e) => problems.push(e.to_string()),
    }
    if !master.details.is_empty() {
        problems.push(format!(
            "the master already has {} detail rows",
            master.details.len()
        ));
    }
    let master_amount = match field(master, "PayAmt").and_then(|v| {
        v.parse::<Amount>()
            .map_err(|_| invalid("the master's PayAmt is not an amount"))
    }) {
        Ok(a) => Some(a),
        Err(e) => {
            problems.push(e.to_string());
            None
        }
    };
    let func = master.header.get("ExpFuncCode").unwrap_or("");
    let agency = master.header.get("AgencyCode");
    let mut total = Some(Amount::ZERO);
    let mut rows = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for part in parts {
        let no = part.header.get("VoucherNo").unwrap_or("");
        let at = |what: String| format!("8207 {no}: {what}");
        if part.vt_code() != VT_8207 {
            problems.push(at(format!("is a {}, not an 8207", part.vt_code())));
            continue;
        }
        if seen.contains(&no) {
            problems.push(at("is given twice".to_owned()));
            continue;
        }
        seen.push(no);
        let pk = part.key();
        if pk.adm_div_code != key.adm_div_code || pk.st_year != key.st_year {
            problems.push(at("is not of the master's division and year".to_owned()));
        }
        if part.header.get("OriVoucherNo") != Some(key.voucher_no.as_str()) {
            problems.push(at(format!(
                "OriVoucherNo {:?} is not the master's {}",
                part.header.get("OriVoucherNo").unwrap_or(""),
                key.voucher_no
            )));
        }
        if part.header.get("OriginalVtCode") != Some(VT_5201) {
            problems.push(at("OriginalVtCode is not 5201".to_owned()));
        }
        match part.header.value("AllNum").map(str::parse::<usize>) {
            Some(Ok(n)) if n == part.details.len() => {}
            Some(Ok(n)) => problems.push(at(format!(
                "AllNum says {n} rows, it has {}",
                part.details.len()
            ))),
            _ => problems.push(at("AllNum is missing or not a count".to_owned())),
        }
        if part.details.is_empty() {
            problems.push(at("has no rows".to_owned()));
        }
        let mut sum = Some(Amount::ZERO);
        for (i, row) in part.details.iter().enumerate() {
            match row.value("PayAmt").map(str::parse::<Amount>) {
                Some(Ok(a)) if a.is_positive() => sum = sum.and_then(|s| s.checked_add(a)),
                _ => {
                    problems.push(at(format!(
                        "row {}: PayAmt is missing, not an amount or not positive",
                        i + 1
                    )));
                    sum = None;
                }
            }
            let mut merged = Fields::new();
            merged.set("Id", (rows.len() + 1).to_string());
            merged.set("VoucherBillNo", no);
            if let Some(agency) = agency {
                merged.set("AgencyCode", agency);
            }
            merged.set("ExpFuncCode", func);
            for name in PART_ROW_FIELDS {
                if let Some(value) = row.get(name) {
                    merged.set(name, value);
                }
            }
            merged.set("XPayAmt", "");
            rows.push(merged);
        }
        match (sum, part.header.value("PayAmt").map(str::parse::<Amount>)) {
            (Some(s), Some(Ok(said))) if s == said => total = total.and_then(|t| t.checked_add(s)),
            (Some(s), Some(Ok(said))) => {
                problems.push(at(format!("its rows add up to {s}, not its PayAmt {said}")));
                total = None;
            }
            (_, Some(Ok(_))) => total = None,
            (_, _) => {
                problems.push(at("PayAmt is missing or not an amount".to_owned()));
                total = None;
            }
        }
    }
    Merge {
        problems,
        total,
        master_amount,
        rows,
    }
}

/// The 5201 `master` with the rows of the 8207s `parts` (财政批量业务支付明细 whose
/// `OriVoucherNo` is the master's number) as its details, in order. Each part must be an
/// 8207 of the master's division and year naming it (`OriginalVtCode` 5201), its `AllNum`
/// its number of rows, its rows positive amounts adding up to its `PayAmt`; the parts
/// together must add up to the master's `PayAmt`; the master must be a salary or batch
/// 5201 without details of its own. A merged row takes the master's `ExpFuncCode` and
/// `AgencyCode`, and the 8207's number as `VoucherBillNo`.
///
/// # Errors
/// Every problem found, each naming its 8207 and row.
pub fn merge_8207(master: &Voucher, parts: &[Voucher]) -> Result<Voucher, Vec<String>> {
    let Merge {
        mut problems,
        total,
        master_amount,
        rows,
    } = merge_parts(master, parts);
    if parts.is_empty() {
        problems.push("no 8207 to merge".to_owned());
    }
    if let (Some(total), Some(master_amount)) = (total, master_amount)
        && total != master_amount
    {
        problems.push(format!(
            "the 8207s add up to {total}, not the master's PayAmt {master_amount}"
        ));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let mut merged = master.clone();
    merged.details = rows;
    Ok(merged)
}

/// The row fields an 8207 carries, beside its `Id` and the receipt's `XPayAmt` and
/// `XAddWord`.
const PART_ROW_FIELDS: [&str; 6] = [
    "PayeeAcctNo",
    "PayeeAcctName",
    "PayeeAcctBankName",
    "PayeeAcctBankNo",
    "PayAmt",
    "PaySummaryName",
];

/// Rows per 8207 by default: finance sends a salary or batch 5201 with more rows than this
/// as a master without rows and 8207s of at most this many rows each.
pub const ROWS_PER_8207: usize = 500;

/// Most rows one 8207 may carry (bounds a stored voucher's size).
pub const ROWS_PER_8207_MAX: usize = 5_000;

/// Most 8207s one master may have (their numbers end in three digits).
pub const PARTS_MAX: usize = 999;

/// Most waiting 8207s the bank looks through for the parts of one master.
pub const WAITING_SCAN_MAX: usize = 10_000;

/// Whether `voucher` is a master: a salary or batch 5201 (`BusinessTypeCode` 3 or 4)
/// without rows of its own, whose rows travel in 8207s.
#[must_use]
pub fn is_master(voucher: &Voucher) -> bool {
    voucher.vt_code() == VT_5201
        && voucher.details.is_empty()
        && matches!(is_batch(voucher), Ok(true))
}

/// The number of the `part`-th (1-based) 8207 of the master `master`: its own number and
/// `-001` … `-999` when that fits a VoucherNo (20 characters), else `B`, 16 characters
/// derived from the master's key and the three digits. Finance numbers its 8207s so and
/// finds them again by number; a bank finds them by `OriVoucherNo`, whatever their number.
#[must_use]
pub fn part_voucher_no(master: &VoucherKey, part: usize) -> String {
    let no = &master.voucher_no;
    if no.len() + 4 <= guoku_domain::VoucherNo::MAX_LEN {
        return format!("{no}-{part:03}");
    }
    const ALPHABET: &[u8; 32] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut bits = op_id("8207-number", master);
    let mut out = String::from("B");
    for _ in 0..16 {
        let index = usize::try_from(bits & 31).unwrap_or(0);
        out.push(char::from(ALPHABET[index]));
        bits >>= 5;
    }
    out.push_str(&format!("{part:03}"));
    out
}

/// The key of the 8207 numbered `no` in the master's division and year.
fn part_key(master: &VoucherKey, no: String) -> VoucherKey {
    VoucherKey {
        adm_div_code: master.adm_div_code.clone(),
        st_year: master.st_year.clone(),
        vt_code: VT_8207.to_owned(),
        voucher_no: no,
    }
}

/// The key of the 5201 an 8207 names (`OriVoucherNo`, `OriginalVtCode` 5201).
fn master_key_of(part: &Voucher) -> Option<VoucherKey> {
    if part.header.get("OriginalVtCode") != Some(VT_5201) {
        return None;
    }
    let no = part.header.value("OriVoucherNo")?;
    let mut key = part.key();
    key.vt_code = VT_5201.to_owned();
    key.voucher_no = no.to_owned();
    Some(key)
}

/// A salary or batch 5201 with its rows split for the wire: the master (the same header,
/// no rows) and 8207s of at most `rows_per_part` rows each, in row order, numbered by
/// [`part_voucher_no`], each naming the master (`OriVoucherNo`, `OriginalVtCode` 5201)
/// with its own `PayAmt` and `AllNum`. An 8207 row carries the payee, the amount and the
/// purpose (`PART_ROW_FIELDS`); the bank gives it the master's `ExpFuncCode` and
/// `AgencyCode` ([`merge_8207`]), so every row must have the master's (or none). Nothing
/// is stamped.
///
/// # Errors
/// [`DirectError::Invalid`] naming every problem: not a salary or batch 5201, rows that
/// are not positive amounts adding up to `PayAmt`, a row of another function class or
/// unit, `rows_per_part` outside 1..=[`ROWS_PER_8207_MAX`], more than [`PARTS_MAX`] parts.
pub fn split_8207(
    voucher: &Voucher,
    rows_per_part: usize,
) -> Result<(Voucher, Vec<Voucher>), DirectError> {
    if voucher.vt_code() != VT_5201 || !is_batch(voucher)? {
        return Err(invalid(
            "only a salary or batch 5201 (BusinessTypeCode 3 or 4) travels with 8207s",
        ));
    }
    if !(1..=ROWS_PER_8207_MAX).contains(&rows_per_part) {
        return Err(invalid(format!(
            "rows per 8207 must be 1 to {ROWS_PER_8207_MAX}, not {rows_per_part}"
        )));
    }
    let amounts = row_amounts(voucher).map_err(|p| invalid(p.join("; ")))?;
    let parts = voucher.details.len().div_ceil(rows_per_part);
    if parts > PARTS_MAX {
        return Err(invalid(format!(
            "{} rows make {parts} 8207s of {rows_per_part}, more than {PARTS_MAX}",
            voucher.details.len()
        )));
    }
    let func = voucher.header.get("ExpFuncCode").unwrap_or("");
    let agency = voucher.header.get("AgencyCode").unwrap_or("");
    let mut problems = Vec::new();
    for (i, row) in voucher.details.iter().enumerate() {
        for (name, master) in [("ExpFuncCode", func), ("AgencyCode", agency)] {
            if let Some(own) = row.value(name)
                && own != master
            {
                problems.push(format!(
                    "row {}: {name} {own} is not the master's {master:?}, and an 8207 row \
                     takes the master's",
                    i + 1
                ));
            }
        }
    }
    if !problems.is_empty() {
        return Err(invalid(problems.join("; ")));
    }
    let key = voucher.key();
    let mut master = voucher.clone();
    master.details.clear();
    let parts = voucher
        .details
        .chunks(rows_per_part)
        .zip(amounts.chunks(rows_per_part))
        .enumerate()
        .map(|(i, (rows, amounts))| part_of(voucher, &key, i + 1, rows, amounts))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((master, parts))
}

/// The `n`-th 8207 of `master`, of `rows` whose amounts are `amounts`.
fn part_of(
    master: &Voucher,
    key: &VoucherKey,
    n: usize,
    rows: &[Fields],
    amounts: &[Amount],
) -> Result<Voucher, DirectError> {
    let no = part_voucher_no(key, n);
    let sum = amounts
        .iter()
        .try_fold(Amount::ZERO, |s, a| s.checked_add(*a))
        .ok_or_else(|| invalid("the rows overflow"))?;
    let mut header = Fields::new();
    header.set("Id", no.clone());
    header.set("AdmDivCode", key.adm_div_code.clone());
    header.set("StYear", key.st_year.clone());
    header.set("VtCode", VT_8207);
    header.set("VouDate", master.header.get("VouDate").unwrap_or(""));
    header.set("VoucherNo", no);
    header.set("OriVoucherNo", key.voucher_no.clone());
    header.set("OriginalVtCode", VT_5201);
    for name in ["AgencyCode", "AgencyName"] {
        if let Some(value) = master.header.value(name) {
            header.set(name, value);
        }
    }
    header.set("PayAmt", sum.to_string());
    header.set("AllNum", rows.len().to_string());
    let details = rows
        .iter()
        .enumerate()
        .map(|(i, row)| {
            let mut d = Fields::new();
            d.set("Id", (i + 1).to_string());
            for name in PART_ROW_FIELDS {
                if let Some(value) = row.get(name) {
                    d.set(name, value);
                }
            }
            d.set("XPayAmt", "");
            d
        })
        .collect();
    Ok(Voucher { header, details })
}

/// Where the 8207s a bank holds for a master stand.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PartsState {
    /// They add up to less than the master (none yet, or not all): more are to come.
    Incomplete {
        /// What the 8207s so far add up to.
        have: Amount,
        /// The master's `PayAmt`.
        need: Amount,
    },
    /// They add up to the master: the master with their rows ([`merge_8207`]).
    Complete(Voucher),
    /// They contradict the master or themselves: every problem ([`merge_8207`]'s, or a sum
    /// above the master's).
    Contradicts(Vec<String>),
}

/// Whether the 8207s `parts` received so far complete `master`, are still short of it, or
/// contradict it.
#[must_use]
pub fn assess_8207(master: &Voucher, parts: &[Voucher]) -> PartsState {
    let Merge {
        problems,
        total,
        master_amount,
        rows,
    } = merge_parts(master, parts);
    if !problems.is_empty() {
        return PartsState::Contradicts(problems);
    }
    let (Some(have), Some(need)) = (total, master_amount) else {
        return PartsState::Contradicts(vec!["the 8207s' amounts overflow".to_owned()]);
    };
    if parts.is_empty() || have.fen() < need.fen() {
        return PartsState::Incomplete { have, need };
    }
    if have.fen() > need.fen() {
        return PartsState::Contradicts(vec![format!(
            "the 8207s add up to {have}, more than the master's PayAmt {need}"
        )]);
    }
    let mut merged = master.clone();
    merged.details = rows;
    PartsState::Complete(merged)
}

/// The receipt of a master: its own bytes, flag 回单, and on the header `XPayDate`,
/// `XAgentBusinessNo` and `XPayAmt` = `paid`, the sum of the rows paid (the rows' results
/// go back on the 8207s' receipts, [`fill_8207_receipt`]). No stamp yet.
#[must_use]
pub fn fill_master_receipt(
    original: &EnvelopeBody,
    payment: &Payment,
    paid: Amount,
) -> EnvelopeBody {
    let mut receipt = original.clone();
    receipt.flag = VoucherFlag::Receipt;
    let header = &mut receipt.voucher.header;
    header.set("XPayDate", payment.date.to_string());
    header.set("XAgentBusinessNo", payment.serial.clone());
    header.set("XPayAmt", paid.to_string());
    receipt
}

/// The receipt of an 8207: flag 回单, each row's `XPayAmt` its `PayAmt` when paid, else
/// `0.00` with the reason in `XAddWord`. No stamp yet.
///
/// # Errors
/// [`DirectError::Invalid`] when `rows` is not one decision per row.
pub fn fill_8207_receipt(
    part: &EnvelopeBody,
    rows: &[RowDecision],
) -> Result<EnvelopeBody, DirectError> {
    if rows.len() != part.voucher.details.len() {
        return Err(invalid(format!(
            "{} decisions for the {} rows of 8207 {}",
            rows.len(),
            part.voucher.details.len(),
            part.voucher.key().voucher_no
        )));
    }
    let mut receipt = part.clone();
    receipt.flag = VoucherFlag::Receipt;
    for (detail, row) in receipt.voucher.details.iter_mut().zip(rows) {
        match row {
            RowDecision::Pay { amount } => detail.set("XPayAmt", amount.to_string()),
            RowDecision::Refuse { reason, .. } => {
                detail.set("XPayAmt", Amount::ZERO.to_string());
                detail.set("XAddWord", reason.clone());
            }
        }
    }
    Ok(receipt)
}

/// Finance's check of an 8207's receipt against the 8207 it sent: the same voucher (every
/// header field and every row field but the X fields unchanged), each row's `XPayAmt` its
/// `PayAmt` or `0.00` with an `XAddWord`. What it says was paid; unlike a whole batch, an
/// 8207 may have no row paid (the master's other 8207s may).
///
/// # Errors
/// Every problem found.
pub fn check_8207_receipt(original: &Voucher, receipt: &Voucher) -> Result<BatchPaid, Vec<String>> {
    let mut problems = Vec::new();
    if original.key() != receipt.key() {
        problems.push("the receipt is for another voucher".to_owned());
    }
    if let Some((name, _)) = original
        .header
        .iter()
        .filter(|(name, _)| !name.starts_with('X'))
        .find(|(name, value)| receipt.header.get(name) != Some(*value))
    {
        problems.push(format!("{name} differs from the original"));
    }
    let amounts = row_amounts(original)?;
    let checked = check_rows(original, receipt, &amounts, &mut problems);
    match checked {
        Some(checked) if problems.is_empty() => Ok(checked),
        _ => Err(problems),
    }
}

/// Finance's check of a master's receipt: [`check_receipt`] (the same voucher, `XPayDate`,
/// `XAgentBusinessNo`, `XPayAmt` within the ordered amount), the 8207s it sent (`parts`:
/// each original with the receipt that came back) adding up to the master
/// ([`merge_8207`]), each receipt checked against its 8207 ([`check_8207_receipt`]), the
/// master's `XPayAmt` the sum the 8207s' receipts say was paid, and not zero.
///
/// # Errors
/// [`DirectError::Invalid`] naming every problem, each with its 8207.
pub fn check_master_receipt(
    master: &Voucher,
    receipt: &Voucher,
    parts: &[(Voucher, Voucher)],
) -> Result<CheckedReceipt, DirectError> {
    let said = check_receipt(master, receipt)?;
    let originals: Vec<Voucher> = parts.iter().map(|(o, _)| o.clone()).collect();
    let mut problems = merge_8207(master, &originals).err().unwrap_or_default();
    let mut paid = Some(Amount::ZERO);
    let mut unpaid = Some(Amount::ZERO);
    for (original, part_receipt) in parts {
        match check_8207_receipt(original, part_receipt) {
            Ok(part) => {
                paid = paid.and_then(|p| p.checked_add(part.paid));
                unpaid = unpaid.and_then(|u| u.checked_add(part.unpaid));
            }
            Err(found) => {
                let no = original.key().voucher_no;
                problems.extend(found.into_iter().map(|p| format!("8207 {no}: {p}")));
            }
        }
    }
    match (paid, unpaid) {
        (Some(paid), Some(_)) if problems.is_empty() && paid != said => problems.push(format!(
            "the master's XPayAmt {said} is not what its 8207s' receipts say was paid, {paid}"
        )),
        (Some(_), Some(_)) => {}
        _ => problems.push("the 8207s' amounts overflow".to_owned()),
    }
    if said.is_zero() {
        problems.push("no row is paid: such a batch is returned, not receipted".to_owned());
    }
    if !problems.is_empty() {
        return Err(invalid(problems.join("; ")));
    }
    let unpaid = unpaid.unwrap_or(Amount::ZERO);
    Ok(CheckedReceipt {
        paid: said,
        unpaid: (!unpaid.is_zero()).then_some(unpaid),
    })
}

// ---------------------------------------------------------------------------------------
// 8207: finance sends a master and its 8207s
// ---------------------------------------------------------------------------------------

/// Finance issues a master (a stamped salary or batch 5201 without rows) and its stamped
/// 8207s: checked first (the master as [`super::direct::issue`] checks it, the 8207s
/// stamped at every original position, numbered by [`part_voucher_no`] in order, adding
/// up to the master by [`merge_8207`]); then the master is issued (the plan's quota
/// consumed once, refused with the books' reason when short, and then nothing is
/// written) and each 8207 written and sent to the same bank. The outbox delivers them.
///
/// Repeating a completed issue changes nothing; one cut short (a crash after the master)
/// writes and sends what is missing.
///
/// # Errors
/// [`DirectError::Invalid`] (every problem of the 8207s), the master's as
/// [`super::direct::issue`].
#[allow(clippy::too_many_arguments, reason = "issue's arguments and the 8207s")]
pub async fn issue_with_8207s(
    store: &Store,
    registry: &Registry,
    indicator: &IndicatorKey,
    month: u8,
    master: &EnvelopeBody,
    parts: &[EnvelopeBody],
    route: Route<'_>,
    now: u64,
) -> Result<(VoucherRecord, Vec<VoucherRecord>), DirectError> {
    let key = master.voucher.key();
    if !is_master(&master.voucher) {
        return Err(invalid(format!(
            "{key} is not a salary or batch 5201 without rows: its rows cannot travel in 8207s"
        )));
    }
    if parts.len() > PARTS_MAX {
        return Err(invalid(format!(
            "{} 8207s, more than {PARTS_MAX}",
            parts.len()
        )));
    }
    let vouchers: Vec<Voucher> = parts.iter().map(|p| p.voucher.clone()).collect();
    let mut problems = merge_8207(&master.voucher, &vouchers)
        .err()
        .unwrap_or_default();
    let library = store.library();
    for (i, part) in parts.iter().enumerate() {
        let pk = part.voucher.key();
        let want = part_voucher_no(&key, i + 1);
        if pk.voucher_no != want {
            problems.push(format!(
                "8207 {}: the {}-th 8207 of {} is numbered {want}",
                pk.voucher_no,
                i + 1,
                key.voucher_no
            ));
        }
        if part.flag != VoucherFlag::Original {
            problems.push(format!("8207 {}: not an original", pk.voucher_no));
        }
        let ty = stamping::type_of(registry, &part.voucher)?;
        let positions = Positions::of(ty)?;
        if let Some(missing) = positions
            .original
            .iter()
            .find(|p| !part.signatures.iter().any(|b| b.no.to_string() == p.name))
        {
            problems.push(format!(
                "8207 {}: not stamped at position {}",
                pk.voucher_no, missing.name
            ));
        }
        if let Some(stored) = library.status(&pk, Leg::Original).await?
            && stored.content_sha256 != content_hash(&part.voucher)
        {
            problems.push(format!("{pk} is stored with other content"));
        }
    }
    if !problems.is_empty() {
        return Err(invalid(problems.join("; ")));
    }
    let record =
        super::direct::issue(store, registry, indicator, month, master, route, now).await?;
    let mut sent = Vec::with_capacity(parts.len());
    for part in parts {
        let new = NewVoucher::new(
            &part.voucher,
            Leg::Original,
            route.me,
            route.to,
            envelope_bytes(part),
        );
        let stored = library.write(new, route.actor, now).await?;
        sent.push(if stored.record.exchange == Exchange::NotSent {
            library
                .send(&part.voucher.key(), Leg::Original, route.actor, now)
                .await?
        } else {
            stored.record
        });
    }
    Ok((record, sent))
}

// ---------------------------------------------------------------------------------------
// 8207: the bank pays a master once its 8207s are in
// ---------------------------------------------------------------------------------------

/// The received 8207s in exchange state `states` naming the master `master` (its number
/// as `OriVoucherNo`, `OriginalVtCode` 5201, its division and year), ordered by number,
/// with their bodies. 8207s whose body cannot be read are left to their own step, which
/// refuses them.
async fn received_parts(
    store: &Store,
    master: &VoucherKey,
    states: &[Exchange],
) -> Result<Vec<(VoucherRecord, EnvelopeBody)>, DirectError> {
    let library = store.library();
    let mut found = Vec::new();
    let mut scanned = 0;
    for &state in states {
        let mut after = 0;
        loop {
            let page = library
                .by_status(VT_8207, Leg::Original, state, after, LIST_MAX)
                .await?;
            scanned += page.items.len();
            if scanned > WAITING_SCAN_MAX {
                return Err(invalid(format!(
                    "more than {WAITING_SCAN_MAX} 8207s wait: {master} cannot be matched"
                )));
            }
            for record in page.items {
                let k = &record.key;
                if record.direction != Direction::Received
                    || k.adm_div_code != master.adm_div_code
                    || k.st_year != master.st_year
                {
                    continue;
                }
                let Ok(body) = stored_body(&record.body, VoucherFlag::Original) else {
                    continue;
                };
                if master_key_of(&body.voucher).as_ref() == Some(master) {
                    found.push((record, body));
                }
            }
            match page.next {
                Some(next) => after = next,
                None => break,
            }
        }
    }
    found.sort_by(|a, b| a.0.key.voucher_no.cmp(&b.0.key.voucher_no));
    Ok(found)
}

/// The 8207s of a master resumed after a crash: some were acknowledged (or answered)
/// already. Those numbered as finance numbers them ([`part_voucher_no`]) are found by key,
/// the unacknowledged ones by looking through the waiting 8207s; only when these do not
/// complete the master are all acknowledged 8207s looked through too.
async fn resumed_parts(
    store: &Store,
    master: &VoucherKey,
    voucher: &Voucher,
) -> Result<Vec<(VoucherRecord, EnvelopeBody)>, DirectError> {
    let library = store.library();
    let mut parts = received_parts(store, master, &[Exchange::Received]).await?;
    for n in 1..=PARTS_MAX {
        let pk = part_key(master, part_voucher_no(master, n));
        let Some(record) = library.status(&pk, Leg::Original).await? else {
            break;
        };
        if record.direction != Direction::Received || parts.iter().any(|(r, _)| r.key == pk) {
            continue;
        }
        let body = stored_body(&record.body, VoucherFlag::Original)?;
        if master_key_of(&body.voucher).as_ref() == Some(master) {
            parts.push((record, body));
        }
    }
    parts.sort_by(|a, b| a.0.key.voucher_no.cmp(&b.0.key.voucher_no));
    let vouchers: Vec<Voucher> = parts.iter().map(|(_, b)| b.voucher.clone()).collect();
    if matches!(assess_8207(voucher, &vouchers), PartsState::Complete(_)) {
        return Ok(parts);
    }
    received_parts(store, master, &[Exchange::Received, Exchange::Acknowledged]).await
}

/// Pays a read master (`record`, its body `original`) once the 8207s naming it have all
/// been read and add up to it ([`assess_8207`]), row by row as a batch 5201 with rows is
/// paid ([`decide_rows`], one book operation per row): the master is acknowledged and
/// approved, each 8207 too and booked (处理成功), each 8207's receipt carries its rows'
/// results ([`fill_8207_receipt`]) and the master's the sum paid
/// ([`fill_master_receipt`]), all sealed with the bank's 转讫章 and sent to finance.
///
/// Until then the master waits, read and not acknowledged ([`PayOutcome::Waiting`]); the
/// step of an 8207 ([`pay_part`]) and the worker's read-again sweep take it up again. 8207s
/// that contradict the master (sums, counts, another master, the same one twice, more
/// than the master) return it (退回) with every reason and refuse (签收失败) the read
/// 8207s; nothing is booked. When no row can be paid, the master is returned as a batch
/// 5201 is. A master resumed after a crash finds its 8207s acknowledged already.
///
/// # Errors
/// As [`super::direct::pay_received`]; [`DirectError::Invalid`] for a master resumed after a
/// crash whose 8207s no longer complete it (it stays where it stopped).
pub async fn pay_master(
    store: &Store,
    registry: &Registry,
    bank: &Bank<'_>,
    rules: &RowRules<'_>,
    record: &VoucherRecord,
    original: &EnvelopeBody,
    now: u64,
) -> Result<PayOutcome, DirectError> {
    let key = &record.key;
    let fresh = record.processing == Some(Processing::Read);
    let parts = if fresh {
        received_parts(store, key, &[Exchange::Received]).await?
    } else {
        resumed_parts(store, key, &original.voucher).await?
    };
    let vouchers: Vec<Voucher> = parts.iter().map(|(_, b)| b.voucher.clone()).collect();
    let merged = match assess_8207(&original.voucher, &vouchers) {
        PartsState::Complete(merged) => merged,
        PartsState::Incomplete { have, need } if fresh => {
            return Ok(PayOutcome::Waiting {
                key: key.clone(),
                reason: format!(
                    "待8207: its {} 8207s received add up to {have} of its PayAmt {need}",
                    parts.len()
                ),
            });
        }
        PartsState::Contradicts(problems) if fresh => {
            let reason = clip(format!("8207明细与主单不符: {}", problems.join("; ")));
            return_master(store, bank.actor, record, &parts, &reason, true, now).await?;
            return Ok(PayOutcome::Failed {
                key: key.clone(),
                reason,
            });
        }
        other => {
            return Err(invalid(format!(
                "{key}: resuming its payment, its 8207s no longer match it: {other:?}"
            )));
        }
    };
    if parts.iter().any(|(r, _)| r.processing.is_none()) {
        return Ok(PayOutcome::Waiting {
            key: key.clone(),
            reason: "待8207: an 8207 of it is not read yet".to_owned(),
        });
    }
    let tenant = tenant_of(key)?;
    let ty = stamping::type_of(registry, &original.voucher)?;
    let rows = decide_rows(&merged, rules)?;
    accept_for_processing::<DirectError>(store, key, bank.actor, now).await?;
    let rows = pay_rows(store, key, tenant, rows, now).await?;
    if let Some(reason) =
        record_booking::<DirectError>(store, record, nothing_payable(&rows), bank.actor, now)
            .await?
    {
        let reason = clip(reason);
        return_master(store, bank.actor, record, &parts, &reason, false, now).await?;
        return Ok(PayOutcome::Failed {
            key: key.clone(),
            reason,
        });
    }
    let returner = Returner {
        suite: bank.suite,
        sealer: bank.sealer,
        me: bank.me,
        actor: bank.actor,
    };
    let mut offset = 0;
    for (part, body) in &parts {
        let n = body.voucher.details.len();
        let decided = rows
            .get(offset..offset + n)
            .ok_or_else(|| invalid("the 8207s' rows are not the merged rows"))?;
        offset += n;
        let part_ty = stamping::type_of(registry, &body.voucher)?;
        accept_for_processing::<DirectError>(store, &part.key, bank.actor, now).await?;
        record_booking::<DirectError>(store, part, None, bank.actor, now).await?;
        let mut receipt = fill_8207_receipt(body, decided)?;
        seal_and_return::<DirectError>(store, part_ty, part, &mut receipt, &returner, now).await?;
    }
    let paid = paid_sum(&rows)?;
    let payment = Payment {
        date: bank.pay_date,
        serial: serial_for(bank.serial_prefix, key),
    };
    let mut receipt = fill_master_receipt(original, &payment, paid);
    seal_and_return::<DirectError>(store, ty, record, &mut receipt, &returner, now).await?;
    Ok(PayOutcome::Paid {
        key: key.clone(),
        amount: paid,
    })
}

/// Returns (退回) a master with `reason` and refuses (签收失败) its read 8207s, naming the
/// master. `unchecked`: the master is only read (validation fails with the reason first);
/// otherwise its booking failed already.
async fn return_master(
    store: &Store,
    actor: &str,
    record: &VoucherRecord,
    parts: &[(VoucherRecord, EnvelopeBody)],
    reason: &str,
    unchecked: bool,
    now: u64,
) -> Result<(), DirectError> {
    let library = store.library();
    let key = &record.key;
    if unchecked {
        library.acknowledge(key, Leg::Original, actor, now).await?;
        for (event, why) in [
            (ProcessingEvent::StartValidation, None),
            (ProcessingEvent::FailValidation, Some(reason)),
        ] {
            library
                .process(key, Leg::Original, event, why, actor, now)
                .await?;
        }
    }
    library
        .return_voucher(key, Leg::Original, reason, actor, now)
        .await?;
    let part_reason = clip(format!("主单 5201 {} 已退回: {reason}", key.voucher_no));
    for (part, _) in parts {
        if part.processing == Some(Processing::Read) {
            library
                .refuse(&part.key, Leg::Original, &part_reason, actor, now)
                .await?;
        }
    }
    Ok(())
}

/// What became of a read 8207 at the bank.
#[derive(Debug)]
pub enum PartOutcome {
    /// Its master's step took it: paid (its receipt sent), or returned with the master.
    Taken {
        /// The 8207.
        key: VoucherKey,
        /// Its master.
        master: VoucherKey,
    },
    /// It waits, read, for its master or the master's other 8207s.
    Waiting {
        /// The 8207.
        key: VoucherKey,
        /// Why.
        reason: String,
    },
    /// Refused (签收失败) with the reason: unreadable, naming no 5201, or its master is
    /// done without it.
    Refused {
        /// The 8207.
        key: VoucherKey,
        /// Why.
        reason: String,
    },
}

/// The bank's step for a read 8207 (`record`): when its master has been read and waits,
/// the master's step runs now ([`pay_master`]) and takes this 8207 with the others; when
/// the master has not arrived or is being paid, the 8207 waits, read; an 8207 that cannot
/// be read, names no 5201, names a 5201 this bank sent, or comes after its master was paid
/// or returned is refused. A repeated step changes nothing.
///
/// # Errors
/// As [`super::direct::pay_received`].
pub async fn pay_part(
    store: &Store,
    registry: &Registry,
    bank: &Bank<'_>,
    rules: &RowRules<'_>,
    record: &VoucherRecord,
    now: u64,
) -> Result<PartOutcome, DirectError> {
    let library = store.library();
    let key = &record.key;
    let current = library.status(key, Leg::Original).await?;
    let Some(current) = current.filter(|c| c.processing == Some(Processing::Read)) else {
        // Taken by its master's step already (or refused): nothing to do.
        let master = stored_body(&record.body, VoucherFlag::Original)
            .ok()
            .and_then(|b| master_key_of(&b.voucher))
            .unwrap_or_default();
        return Ok(PartOutcome::Taken {
            key: key.clone(),
            master,
        });
    };
    let refuse = |reason: String| refuse_part(store, key, reason, bank.actor, now);
    let body = match stored_body(&current.body, VoucherFlag::Original) {
        Ok(body) => body,
        Err(e) => return refuse(e.to_string()).await,
    };
    let Some(master_key) = master_key_of(&body.voucher) else {
        return refuse(
            "an 8207 is paid with the 5201 it names: OriginalVtCode must be 5201 and \
             OriVoucherNo its number"
                .to_owned(),
        )
        .await;
    };
    let master = library.status(&master_key, Leg::Original).await?;
    let waiting = |reason: String| PartOutcome::Waiting {
        key: key.clone(),
        reason,
    };
    let Some(master) = master else {
        return Ok(waiting(format!(
            "待主单: 5201 {} has not arrived",
            master_key.voucher_no
        )));
    };
    if master.direction != Direction::Received {
        return refuse(format!(
            "its master 5201 {} is not one this bank received",
            master_key.voucher_no
        ))
        .await;
    }
    match master.processing {
        None => Ok(waiting(format!(
            "待主单: 5201 {} is not read yet",
            master_key.voucher_no
        ))),
        Some(Processing::Read) => {
            let outcome = super::direct::pay_or_hold(
                store,
                registry,
                bank,
                rules,
                super::direct::PayeeBankRule::Optional,
                &master,
                now,
            )
            .await?;
            let after = library.status(key, Leg::Original).await?;
            if after.is_some_and(|a| a.processing == Some(Processing::Read)) {
                return Ok(waiting(match outcome {
                    PayOutcome::Waiting { reason, .. } => reason,
                    other => format!("its master's step ended {other:?}"),
                }));
            }
            Ok(PartOutcome::Taken {
                key: key.clone(),
                master: master_key,
            })
        }
        Some(
            Processing::ReceiptSent
            | Processing::Returned
            | Processing::AckFailed
            | Processing::Bounced
            | Processing::ValidationFailed
            | Processing::CheckFailed,
        ) => {
            let state = master.processing.map(|p| p.to_string()).unwrap_or_default();
            refuse(format!(
                "its master 5201 {} is {state} already, without this 8207",
                master_key.voucher_no
            ))
            .await
        }
        Some(_) => Ok(waiting(format!(
            "待主单: 5201 {} is being paid",
            master_key.voucher_no
        ))),
    }
}

/// Refuses (签收失败) a read 8207 with `reason`.
async fn refuse_part(
    store: &Store,
    key: &VoucherKey,
    reason: String,
    actor: &str,
    now: u64,
) -> Result<PartOutcome, DirectError> {
    let reason = clip(reason);
    store
        .library()
        .refuse(key, Leg::Original, &reason, actor, now)
        .await?;
    Ok(PartOutcome::Refused {
        key: key.clone(),
        reason,
    })
}

// ---------------------------------------------------------------------------------------
// 8207: finance books the receipts
// ---------------------------------------------------------------------------------------

/// The 8207s finance sent for the master `master` (numbered by [`part_voucher_no`]), each
/// with the receipt that came back; `None` while a receipt is missing.
///
/// # Errors
/// [`DirectError::Invalid`] when there is no such 8207 or a stored body cannot be read; a
/// store error.
pub async fn sent_parts(
    store: &Store,
    master: &VoucherKey,
) -> Result<Option<Vec<(Voucher, Voucher)>>, DirectError> {
    let library = store.library();
    let mut parts = Vec::new();
    for n in 1..=PARTS_MAX {
        let pk = part_key(master, part_voucher_no(master, n));
        let Some(sent) = library.status(&pk, Leg::Original).await? else {
            break;
        };
        if sent.direction != Direction::Sent {
            return Err(invalid(format!("{pk} is not an 8207 this node sent")));
        }
        let Some(receipt) = library.status(&pk, Leg::Receipt).await? else {
            return Ok(None);
        };
        parts.push((
            stored_body(&sent.body, VoucherFlag::Original)?.voucher,
            stored_body(&receipt.body, VoucherFlag::Receipt)?.voucher,
        ));
    }
    if parts.is_empty() {
        return Err(invalid(format!("no 8207 of ours names {master}")));
    }
    Ok(Some(parts))
}

/// Finance books one read 8207 receipt against the 8207 it sent ([`check_8207_receipt`]):
/// the 8207 marked acknowledged and 已收到对方回单, the receipt processed (处理成功); one
/// that does not match is left ValidationFailed with the reason. Then the master's receipt,
/// if it waits for this one, is booked ([`super::direct::book_receipt`]). A repeated step
/// changes nothing.
///
/// # Errors
/// A store failure.
pub async fn book_8207_receipt(
    store: &Store,
    actor: &str,
    record: &VoucherRecord,
    now: u64,
) -> Result<ReceiptOutcome, DirectError> {
    let library = store.library();
    let key = &record.key;
    let original = library.status(key, Leg::Original).await?;
    let checked = match &original {
        None => Err("no 8207 of ours for the receipt".to_owned()),
        Some(sent) if sent.sender != record.receiver || sent.receiver != record.sender => {
            Err("the receipt's parties are not the original's".to_owned())
        }
        Some(sent) => stored_body(&sent.body, VoucherFlag::Original)
            .and_then(|o| Ok((o, stored_body(&record.body, VoucherFlag::Receipt)?)))
            .map_err(|e| e.to_string())
            .and_then(|(o, r)| {
                check_8207_receipt(&o.voucher, &r.voucher)
                    .map(|paid| (paid, master_key_of(&o.voucher)))
                    .map_err(|p| p.join("; "))
            }),
    };
    let booked = library
        .status(key, Leg::Receipt)
        .await?
        .is_some_and(|r| r.processing == Some(Processing::Processed));
    if !booked {
        let check = match &checked {
            Err(reason) => ReceiptCheck::Failed(reason),
            Ok(_) => ReceiptCheck::Passed { book: true },
        };
        record_receipt_check::<DirectError>(store, key, original.as_ref(), check, actor, now)
            .await?;
        if let Err(reason) = checked {
            return Ok(ReceiptOutcome::Failed {
                key: key.clone(),
                reason,
            });
        }
    }
    let (paid, master) = match checked {
        Ok(found) => found,
        Err(reason) => {
            return Ok(ReceiptOutcome::Failed {
                key: key.clone(),
                reason,
            });
        }
    };
    // The master's receipt may have waited for this one.
    if let Some(master) = master
        && let Some(waiting) = library.status(&master, Leg::Receipt).await?
        && waiting.direction == Direction::Received
        && waiting.processing == Some(Processing::Read)
    {
        super::direct::book_receipt(store, actor, &waiting, now).await?;
    }
    Ok(ReceiptOutcome::Done {
        key: key.clone(),
        paid: paid.paid,
    })
}
