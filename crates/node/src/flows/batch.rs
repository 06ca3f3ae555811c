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
//!   checked.
//!
//! The bank's and finance's steps that use these are [`super::direct::pay_record_with`] and
//! [`super::direct::book_receipt`]. Every row's payment is one book operation whose id comes
//! from the voucher key and the row number ([`row_op_id`]), so a repeated step books
//! nothing twice.
//!
//! Not done yet (transport of 8207s): the bank keeps a received 8207 (its library stores it
//! like any voucher), and a 5201 of type 3/4 without details waits — is left read but not
//! acknowledged — until the 8207s whose `OriVoucherNo` is its number add up to it; then
//! [`merge_8207`] gives the rows to pay. The receipt of such a batch needs a decision: the
//! merged rows on the 5201 receipt change the bytes finance stamped (finance's check would
//! compare against its original without rows), so the rows' `XPayAmt`/`XAddWord` should go
//! back on 8207 receipts (the registry has their receipt seal) and finance check each one
//! against the 8207 it sent. The registry also requires details on a 5201 today
//! (`details = "required"`), which a detail-less master breaks.

use guoku_domain::{AccountNo, Amount, BusinessType, gbk_len};
use guoku_store::Store;
use guoku_store::books::{AccountKind, Applied, BookAccount, BookFilter, BookOp, OpCode};
use guoku_voucher::lifecycle::Leg;
use guoku_voucher::{EnvelopeBody, Fields, Voucher, VoucherFlag, VoucherKey};

use super::direct::{DirectError, Payment, VT_5201, field, invalid, op_id, tenant_of};

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
        problems.push("a salary or batch 5201 has no detail rows".to_owned());
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
        .zip(&amounts)
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
        return Err(problems);
    };
    match receipt.header.value("XPayAmt").map(str::parse::<Amount>) {
        Some(Ok(x)) if x == paid => {}
        Some(Ok(x)) => problems.push(format!(
            "the header's XPayAmt {x} is not the sum of the rows paid, {paid}"
        )),
        _ => problems.push("the header's XPayAmt is missing or not an amount".to_owned()),
    }
    if paid.is_zero() {
        problems.push("no row is paid: such a batch is returned, not receipted".to_owned());
    }
    if problems.is_empty() {
        Ok(BatchPaid {
            paid,
            unpaid,
            unpaid_rows,
        })
    } else {
        Err(problems)
    }
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
    if parts.is_empty() {
        problems.push("no 8207 to merge".to_owned());
    }
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
            for name in [
                "PayeeAcctNo",
                "PayeeAcctName",
                "PayeeAcctBankName",
                "PayeeAcctBankNo",
                "PayAmt",
                "PaySummaryName",
            ] {
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
