//! Clearing (清算, DOMAIN §3.2 step 5 and §3.3 step 4), first version: the agent bank asks
//! PBOC to clear the payments it fronted (2301 申请划款凭证), PBOC checks the request and
//! deducts its clearing quota, then returns a sealed receipt or returns (退回) the request.
//!
//! DESIGN invariant 3, **no clearing before payment** (防止先清算后支付), lives in the pure
//! [`check_clearing_request`]: every detail names a 5201/8202 this bank paid and receipted
//! (回单成功), of the request's PayTypeCode, not cleared before nor listed twice, and the
//! details add up to the master `PayAmt`.
//!
//! 1. [`build_request`] (PayTypeCode 11) and [`build_authorized_request`] (PayTypeCode 12):
//!    the bank lists its paid, receipted, not-yet-claimed 5201s or 8202s ([`clearable_of`]),
//!    books the fronted total as a receivable from PBOC, writes the 2301
//!    ([`request_voucher`]), stamps it with its maker's signature and 业务专用章 and sends it
//!    to PBOC ([`send_request`]); the outbox delivers it.
//! 2. [`clear_received`]: PBOC reads its unread vouchers and, for each 2301, runs the check,
//!    deducts the clearing quota and pays TSA → the bank's clearing account in one
//!    all-or-nothing operation (refused: 超出清算范围; 5108 quota for 11, 5106 for 12),
//!    fills the X fields, seals the receipt
//!    with its 国库转讫章 and sends it back; a refused 2301 is returned (退回) with the
//!    reasons and nothing is booked.
//!
//! 3. [`settle_receipt`]: the bank books PBOC's receipt (`BookOp::clearing_settled`).
//!
//! Not yet here: the finance copy of the 2301.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use guoku_domain::{Amount, BankNo, BizDate, FuncClass, FundType, PayType};
use guoku_seal::Suite;
use guoku_seal::voucher::Signer;
use guoku_store::books::{BookOp, ClearingKey, Refusal, Tenant};
use guoku_store::library::{LIST_MAX, LibraryError, VoucherRecord};
use guoku_store::{Store, StoreError};
use guoku_voucher::lifecycle::{Exchange, Leg, Processing, ProcessingEvent};
use guoku_voucher::{EnvelopeBody, Fields, Registry, Voucher, VoucherFlag, VoucherKey};

use super::direct::{VT_5201, op_id, tenant_of};
use crate::stamping::{self, StampingError};

use super::common::{
    ReceiptCheck, Returner, record_receipt_check, seal_and_return, stamp_write_send,
    stamped_original,
};

/// The clearing request's type code (申请划款凭证).
pub const VT_2301: &str = "2301";
/// The authorized payment voucher's type code.
pub const VT_8202: &str = "8202";

// ---------------------------------------------------------------------------------------
// The pure check (DESIGN invariant 3)
// ---------------------------------------------------------------------------------------

/// What is known about a payment voucher a 2301 lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PaidState {
    /// No such voucher is known to have reached this bank.
    Unknown,
    /// Received but not (yet) paid and receipted: no 回单 was sent.
    NotReceipted,
    /// Paid, and its sealed receipt sent (回单成功, `ReceiptSent`): may be cleared.
    ReceiptSent,
    /// Already listed in an accepted 2301.
    Cleared,
}

/// Why a 2301 is refused; each names the detail (1-based, as a person reads the list).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClearingRefusal {
    /// The voucher is not a 2301.
    #[error("not a clearing request (2301): VtCode {0}")]
    NotAClearingRequest(String),
    /// A header field is missing or wrong (PayAmt, PayTypeCode).
    #[error("{0}")]
    BadHeader(String),
    /// A 2301 lists at least one voucher.
    #[error("the clearing request lists no voucher")]
    NoDetails,
    /// A detail lacks a field or holds a bad one.
    #[error("detail {detail}: {reason}")]
    BadDetail {
        /// The detail (1-based).
        detail: usize,
        /// What is wrong.
        reason: String,
    },
    /// 防止先清算后支付: the listed voucher was not paid and receipted by this bank.
    #[error(
        "detail {detail}: voucher {voucher_no} was not paid and receipted (回单) by the bank: {state:?}"
    )]
    NotPaid {
        /// The detail (1-based).
        detail: usize,
        /// The listed VoucherNo.
        voucher_no: String,
        /// What is known of it.
        state: PaidState,
    },
    /// The voucher was cleared by an earlier accepted 2301.
    #[error("detail {detail}: voucher {voucher_no} is already cleared")]
    AlreadyCleared {
        /// The detail (1-based).
        detail: usize,
        /// The listed VoucherNo.
        voucher_no: String,
    },
    /// The voucher is listed twice in this 2301.
    #[error("detail {detail}: voucher {voucher_no} is already listed in detail {first}")]
    ListedTwice {
        /// The detail (1-based).
        detail: usize,
        /// The listed VoucherNo.
        voucher_no: String,
        /// Where it was listed first.
        first: usize,
    },
    /// The voucher is a paid voucher of the other pay type (5201 vs 8202).
    #[error(
        "detail {detail}: voucher {voucher_no} is a paid {vt_code}, not of PayTypeCode {pay_type}"
    )]
    PayTypeMismatch {
        /// The detail (1-based).
        detail: usize,
        /// The listed VoucherNo.
        voucher_no: String,
        /// The paid voucher's type.
        vt_code: String,
        /// The 2301's PayTypeCode.
        pay_type: String,
    },
    /// Σ Detail.PayAmt ≠ master PayAmt.
    #[error("the details add up to {details}, not the master PayAmt {master}")]
    SumMismatch {
        /// The details' sum (`None`: it overflows).
        details: Sum,
        /// The master PayAmt.
        master: Amount,
    },
}

/// A sum of amounts, or an overflow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sum(pub Option<Amount>);

impl fmt::Display for Sum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(a) => write!(f, "{a}"),
            None => f.write_str("(overflow)"),
        }
    }
}

/// The payment voucher type a pay type clears: 5201 for direct, 8202 for authorized.
#[must_use]
pub fn paid_vt_code(pay: PayType) -> Option<&'static str> {
    match pay {
        PayType::Direct => Some(VT_5201),
        PayType::Authorized => Some(VT_8202),
        PayType::Allocation => None,
    }
}

/// The key of a listed voucher of type `vt_code`: the 2301's division and year.
fn listed_key(request: &Voucher, vt_code: &str, voucher_no: &str) -> VoucherKey {
    let key = request.key();
    VoucherKey {
        adm_div_code: key.adm_div_code,
        st_year: key.st_year,
        vt_code: vt_code.to_owned(),
        voucher_no: voucher_no.to_owned(),
    }
}

/// DESIGN invariant 3 on a clearing request: refuses, naming the detail, every listed
/// VoucherNo that is not a voucher of the request's pay type (5201 for 11, 8202 for 12) in
/// state [`PaidState::ReceiptSent`] by `paid`, every one already cleared or listed twice,
/// a paid voucher of the other pay type, and details that do not add up to the master
/// `PayAmt`. `paid` answers for keys in the 2301's division and year.
///
/// # Errors
/// Every refusal found (all of them, not just the first).
pub fn check_clearing_request(
    request: &Voucher,
    paid: &impl Fn(&VoucherKey) -> PaidState,
) -> Result<(), Vec<ClearingRefusal>> {
    if request.vt_code() != VT_2301 {
        return Err(vec![ClearingRefusal::NotAClearingRequest(
            request.vt_code().to_owned(),
        )]);
    }
    let mut refusals = Vec::new();
    let master = match request.header.get("PayAmt").map(str::parse::<Amount>) {
        Some(Ok(a)) if a.is_positive() => Some(a),
        Some(Ok(a)) => {
            refusals.push(ClearingRefusal::BadHeader(format!(
                "PayAmt must be positive, got {a}"
            )));
            None
        }
        _ => {
            refusals.push(ClearingRefusal::BadHeader(
                "PayAmt is missing or not an amount".into(),
            ));
            None
        }
    };
    let pay_code = request.header.get("PayTypeCode").unwrap_or("");
    let wanted = pay_code.parse::<PayType>().ok().and_then(paid_vt_code);
    if wanted.is_none() {
        refusals.push(ClearingRefusal::BadHeader(format!(
            "PayTypeCode {pay_code:?} is not direct (11) or authorized (12)"
        )));
    }
    if request.details.is_empty() {
        refusals.push(ClearingRefusal::NoDetails);
    }
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut sum = Some(Amount::ZERO);
    let mut amount_bad = false;
    for (i, detail) in request.details.iter().enumerate() {
        let n = i + 1;
        let bad = |reason: &str| ClearingRefusal::BadDetail {
            detail: n,
            reason: reason.to_owned(),
        };
        match detail.get("PayAmt").map(str::parse::<Amount>) {
            Some(Ok(a)) if a.is_positive() => sum = sum.and_then(|s| s.checked_add(a)),
            _ => {
                refusals.push(bad("PayAmt is missing, not an amount or not positive"));
                amount_bad = true;
            }
        }
        let Some(no) = detail.get("VoucherNo").filter(|v| !v.is_empty()) else {
            refusals.push(bad("VoucherNo is missing"));
            continue;
        };
        if let Some(&first) = seen.get(no) {
            refusals.push(ClearingRefusal::ListedTwice {
                detail: n,
                voucher_no: no.to_owned(),
                first,
            });
            continue;
        }
        seen.insert(no, n);
        let Some(wanted) = wanted else { continue };
        let state = paid(&listed_key(request, wanted, no));
        match state {
            PaidState::ReceiptSent => {}
            PaidState::Cleared => refusals.push(ClearingRefusal::AlreadyCleared {
                detail: n,
                voucher_no: no.to_owned(),
            }),
            PaidState::Unknown | PaidState::NotReceipted => {
                let other = if wanted == VT_5201 { VT_8202 } else { VT_5201 };
                let refusal = if paid(&listed_key(request, other, no)) == PaidState::ReceiptSent {
                    ClearingRefusal::PayTypeMismatch {
                        detail: n,
                        voucher_no: no.to_owned(),
                        vt_code: other.to_owned(),
                        pay_type: pay_code.to_owned(),
                    }
                } else {
                    ClearingRefusal::NotPaid {
                        detail: n,
                        voucher_no: no.to_owned(),
                        state,
                    }
                };
                refusals.push(refusal);
            }
        }
    }
    if let Some(master) = master
        && !request.details.is_empty()
        && !amount_bad
        && sum != Some(master)
    {
        refusals.push(ClearingRefusal::SumMismatch {
            details: Sum(sum),
            master,
        });
    }
    if refusals.is_empty() {
        Ok(())
    } else {
        Err(refusals)
    }
}

// ---------------------------------------------------------------------------------------
// Errors and helpers
// ---------------------------------------------------------------------------------------

/// Why a step of the clearing flow stopped.
#[derive(Debug, thiserror::Error)]
pub enum ClearingError {
    /// The voucher cannot be written or read as a clearing request.
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

impl ClearingError {
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

fn invalid(what: impl Into<String>) -> ClearingError {
    ClearingError::Invalid(what.into())
}

/// The reason PBOC gives for a refusal of its books on a clearing: no quota row or not
/// enough left is "超出清算范围".
#[must_use]
pub fn quota_reason(refusal: &Refusal) -> String {
    match refusal {
        Refusal::NoSuchAccount { .. } => {
            format!("超出清算范围 (因为没有额度，不能出现清算信息): {refusal}")
        }
        Refusal::NotEnough { .. } => format!("超出清算范围: {refusal}"),
        other => format!("clearing refused by the books: {other}"),
    }
}

fn header<'v>(voucher: &'v Voucher, name: &str) -> Result<&'v str, ClearingError> {
    voucher
        .header
        .get(name)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| invalid(format!("{name} is missing")))
}

fn stored_body(bytes: &[u8], flag: VoucherFlag) -> Result<EnvelopeBody, ClearingError> {
    super::common::stored_body(bytes, flag).map_err(invalid)
}

fn stored_voucher(bytes: &[u8], flag: VoucherFlag) -> Result<Voucher, ClearingError> {
    super::common::stored_voucher(bytes, flag).map_err(invalid)
}

/// Every stored leg of `vt_code` in `state`, all pages.
async fn all_in(
    store: &Store,
    vt_code: &str,
    leg: Leg,
    state: Exchange,
) -> Result<Vec<VoucherRecord>, ClearingError> {
    let library = store.library();
    let mut all = Vec::new();
    let mut after = 0;
    loop {
        let page = library
            .by_status(vt_code, leg, state, after, LIST_MAX)
            .await?;
        all.extend(page.items);
        match page.next {
            Some(next) => after = next,
            None => return Ok(all),
        }
    }
}

/// A payment voucher a 2301 lists: its tenant, type (5201 or 8202) and VoucherNo.
type ListedKey = (Tenant, &'static str, String);

/// The payment vouchers listed by the stored 2301s among `records`, typed by each 2301's
/// PayTypeCode (a 5201 and an 8202 may share a VoucherNo). A 2301 whose PayTypeCode names
/// neither claims the number for both types.
fn listed_in(records: &[VoucherRecord]) -> Result<HashSet<ListedKey>, ClearingError> {
    let mut listed = HashSet::new();
    for record in records {
        let tenant = tenant_of(&record.key).map_err(|e| invalid(e.to_string()))?;
        let body = stored_body(&record.body, VoucherFlag::Original)?;
        let types: &[&'static str] = match body
            .voucher
            .header
            .get("PayTypeCode")
            .and_then(|c| c.parse::<PayType>().ok())
            .and_then(paid_vt_code)
        {
            Some(VT_5201) => &[VT_5201],
            Some(_) => &[VT_8202],
            None => &[VT_5201, VT_8202],
        };
        for detail in &body.voucher.details {
            if let Some(no) = detail.get("VoucherNo") {
                for vt_code in types {
                    listed.insert((tenant, *vt_code, no.to_owned()));
                }
            }
        }
    }
    Ok(listed)
}

// ---------------------------------------------------------------------------------------
// 1. The bank builds and sends the 2301
// ---------------------------------------------------------------------------------------

/// One payment a 2301 lists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    /// The payment voucher's VoucherNo (支付凭证单号).
    pub voucher_no: String,
    /// The budget unit (AgencyCode).
    pub agency: String,
    /// The function class (ExpFuncCode).
    pub func: String,
    /// The amount paid.
    pub amount: Amount,
    /// The payment summary, if any.
    pub summary: Option<String>,
}

/// The 2301 listing `listed`: the template's header (the bank's and the treasury's
/// accounts, TreCode, AdmDivCode, StYear…; its X fields dropped) with VtCode 2301,
/// `voucher_no`, `date`, the pay type, and PayAmt the sum of the details.
///
/// # Errors
/// [`ClearingError::Invalid`] for nothing listed or a sum that overflows.
pub fn request_voucher(
    template: &Fields,
    voucher_no: &str,
    date: BizDate,
    pay: PayType,
    listed: &[Listed],
) -> Result<Voucher, ClearingError> {
    if listed.is_empty() {
        return Err(invalid("a clearing request lists at least one voucher"));
    }
    let total = listed
        .iter()
        .try_fold(Amount::ZERO, |sum, l| sum.checked_add(l.amount))
        .ok_or_else(|| invalid("the details' sum overflows"))?;
    let mut header = Fields::new();
    for (name, value) in template.iter() {
        if !name.starts_with('X') {
            header.set(name, value);
        }
    }
    header.set("Id", voucher_no);
    header.set("VtCode", VT_2301);
    header.set("VouDate", date.to_string());
    header.set("VoucherNo", voucher_no);
    header.set("PayTypeCode", pay.code());
    header.set("PayAmt", total.to_string());
    let details = listed
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let mut d = Fields::new();
            d.set("Id", (i + 1).to_string());
            d.set("VoucherNo", l.voucher_no.clone());
            d.set("AgencyCode", l.agency.clone());
            d.set("ExpFuncCode", l.func.clone());
            d.set("PayAmt", l.amount.to_string());
            if let Some(s) = &l.summary {
                d.set("PaySummaryName", s.clone());
            }
            d
        })
        .collect();
    Ok(Voucher { header, details })
}

/// The bank's clearing clerk.
pub struct Clearer<'a> {
    /// The bank's organisation code.
    pub me: &'a str,
    /// PBOC's organisation code.
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

/// Stamps a 2301 at its original positions (maker, then the bank's seal), writes it and
/// sends it to PBOC; the outbox delivers it.
///
/// Books nothing: a bank's clearing round ([`Clearer`], `Party::request_clearing`) writes
/// its 2301, books the receivable, then sends. This sends a given 2301 as it is, to test
/// what PBOC refuses (a voucher listed twice, a sum that does not add up), which no round
/// of the bank would write; it is not for a bank's own requests.
///
/// # Errors
/// [`ClearingError::Stamping`], [`ClearingError::Library`].
pub async fn send_request(
    store: &Store,
    registry: &Registry,
    clearer: &Clearer<'_>,
    voucher: Voucher,
    now: u64,
) -> Result<VoucherRecord, ClearingError> {
    if voucher.vt_code() != VT_2301 {
        return Err(invalid("not a 2301"));
    }
    let ty = stamping::type_of(registry, &voucher)?;
    stamp_write_send::<ClearingError>(
        store,
        ty,
        voucher,
        clearer.suite,
        &[clearer.maker, clearer.sealer],
        (clearer.me, clearer.pboc),
        clearer.actor,
        now,
    )
    .await
}

/// The exchange states of a 2301 the bank sent that still claims its vouchers: everything
/// but refused, returned or voided.
const CLAIMING: [Exchange; 5] = [
    Exchange::NotSent,
    Exchange::NotReceived,
    Exchange::Received,
    Exchange::Acknowledged,
    Exchange::ReceiptReceived,
];

/// The bank's 5201s that may be cleared by a direct 2301 ([`clearable_of`] for
/// [`PayType::Direct`]).
///
/// # Errors
/// As [`clearable_of`].
pub async fn clearable(store: &Store, template: &Fields) -> Result<Vec<Listed>, ClearingError> {
    clearable_of(store, template, PayType::Direct).await
}

/// The bank's payment vouchers of `pay` (5201s for direct, 8202s for authorized) that may
/// be cleared: paid and receipted (回单成功), of the template's division, year and fund
/// type, and not listed in a 2301 of its own of that pay type that still claims them (see
/// [`CLAIMING`]).
///
/// # Errors
/// [`ClearingError::Invalid`] for an allocation pay type or a stored voucher unreadable,
/// [`ClearingError::Library`].
pub async fn clearable_of(
    store: &Store,
    template: &Fields,
    pay: PayType,
) -> Result<Vec<Listed>, ClearingError> {
    let vt_code =
        paid_vt_code(pay).ok_or_else(|| invalid("only direct and authorized payments clear"))?;
    let tenant_key = VoucherKey {
        adm_div_code: template.get("AdmDivCode").unwrap_or("").to_owned(),
        st_year: template.get("StYear").unwrap_or("").to_owned(),
        ..VoucherKey::default()
    };
    let tenant = tenant_of(&tenant_key).map_err(|e| invalid(e.to_string()))?;
    let fund = template.get("FundTypeCode").unwrap_or("");
    let mut claiming = Vec::new();
    for state in CLAIMING {
        claiming.extend(all_in(store, VT_2301, Leg::Original, state).await?);
    }
    let claimed = listed_in(&claiming)?;
    let mut listed = Vec::new();
    for record in all_in(store, vt_code, Leg::Original, Exchange::Acknowledged).await? {
        if record.processing != Some(Processing::ReceiptSent)
            || tenant_of(&record.key).ok() != Some(tenant)
            || claimed.contains(&(tenant, vt_code, record.key.voucher_no.clone()))
        {
            continue;
        }
        let v = &stored_voucher(&record.body, VoucherFlag::Original)?;
        if v.header.get("FundTypeCode") != Some(fund) {
            continue;
        }
        // What the bank paid: its receipt's XPayAmt (a batch's unpaid rows are not
        // cleared), else the ordered PayAmt.
        let receipt = store.library().status(&record.key, Leg::Receipt).await?;
        let paid = match &receipt {
            Some(r) => stored_voucher(&r.body, VoucherFlag::Receipt)?
                .header
                .value("XPayAmt")
                .map(str::to_owned),
            None => None,
        };
        let amount = match &paid {
            Some(paid) => paid.as_str(),
            None => header(v, "PayAmt")?,
        }
        .parse::<Amount>()
        .map_err(|_| invalid("PayAmt or XPayAmt is not an amount"))?;
        listed.push(Listed {
            voucher_no: record.key.voucher_no.clone(),
            agency: header(v, "AgencyCode")?.to_owned(),
            func: header(v, "ExpFuncCode")?.to_owned(),
            amount,
            summary: v.header.get("PaySummaryName").map(str::to_owned),
        });
    }
    Ok(listed)
}

/// The bank builds a 2301 (PayTypeCode 11) from its [`clearable`] 5201s and sends it to
/// PBOC, stamped; `None` when there is nothing to clear.
///
/// # Errors
/// As [`clearable`] and [`send_request`]; [`ClearingError::Invalid`] when the books refuse
/// the receivable (e.g. its accounts are not open).
pub async fn build_request(
    store: &Store,
    registry: &Registry,
    clearer: &Clearer<'_>,
    template: &Fields,
    voucher_no: &str,
    date: BizDate,
    now: u64,
) -> Result<Option<VoucherRecord>, ClearingError> {
    let request = Request {
        template,
        voucher_no,
        date,
    };
    build_request_of(store, registry, clearer, PayType::Direct, &request, now).await
}

/// The bank builds a 2301 (PayTypeCode 12) from its paid and receipted 8202s
/// ([`clearable_of`] for [`PayType::Authorized`]) and sends it to PBOC, stamped; PBOC
/// checks it against the authorized (5106) clearing quota. `None` when there is nothing to
/// clear. The bank's books are those of a direct request: the fronted total becomes a
/// receivable from PBOC (the units' zero-balance accounts are already back at zero), which
/// PBOC's receipt settles ([`settle_receipt`]).
///
/// # Errors
/// As [`build_request`].
pub async fn build_authorized_request(
    store: &Store,
    registry: &Registry,
    clearer: &Clearer<'_>,
    template: &Fields,
    voucher_no: &str,
    date: BizDate,
    now: u64,
) -> Result<Option<VoucherRecord>, ClearingError> {
    let request = Request {
        template,
        voucher_no,
        date,
    };
    build_request_of(store, registry, clearer, PayType::Authorized, &request, now).await
}

/// What a new 2301 is built from besides the vouchers it lists.
struct Request<'a> {
    template: &'a Fields,
    voucher_no: &'a str,
    date: BizDate,
}

async fn build_request_of(
    store: &Store,
    registry: &Registry,
    clearer: &Clearer<'_>,
    pay: PayType,
    request: &Request<'_>,
    now: u64,
) -> Result<Option<VoucherRecord>, ClearingError> {
    let listed = clearable_of(store, request.template, pay).await?;
    if listed.is_empty() {
        return Ok(None);
    }
    let voucher = request_voucher(
        request.template,
        request.voucher_no,
        request.date,
        pay,
        &listed,
    )?;
    let key = voucher.key();
    tenant_of(&key).map_err(|e| invalid(e.to_string()))?;
    let total = listed
        .iter()
        .try_fold(Amount::ZERO, |sum, l| sum.checked_add(l.amount))
        .ok_or_else(|| invalid("amount overflow"))?;
    // Written first (from then on it claims its vouchers), then what was fronted becomes a
    // receivable from PBOC under the 2301's key, then it is sent. A kill between two of
    // these leaves the 2301 written and unsent: the worker's sweep books it (once) and
    // sends it ([`book_unsent_request`]). Booking first could leave a receivable booked
    // for a 2301 that was never written, its vouchers claimed again by the next one.
    let ty = stamping::type_of(registry, &voucher)?;
    let new = stamped_original(
        ty,
        voucher,
        clearer.suite,
        &[clearer.maker, clearer.sealer],
        (clearer.me, clearer.pboc),
    )?;
    let library = store.library();
    let stored = library.write(new, clearer.actor, now).await?;
    book_request(store, &key, total, now).await?;
    if stored.record.exchange != Exchange::NotSent {
        return Ok(Some(stored.record));
    }
    Ok(Some(
        library
            .send(&key, Leg::Original, clearer.actor, now)
            .await?,
    ))
}

/// The receivable of a 2301: what the bank fronted, owed by PBOC; booked once under the
/// 2301's key.
async fn book_request(
    store: &Store,
    key: &VoucherKey,
    total: Amount,
    now: u64,
) -> Result<(), ClearingError> {
    let tenant = tenant_of(key).map_err(|e| invalid(e.to_string()))?;
    let op = BookOp::request_clearing(op_id("clearing-request", key), tenant, total)
        .map_err(|e| invalid(e.to_string()))?;
    if let Some(Err(refusal)) = store.apply_book_ops(now, &[op]).await?.into_iter().next() {
        return Err(invalid(format!("the books refused the request: {refusal}")));
    }
    Ok(())
}

/// Before the worker sends a 2301 a killed process wrote but did not send: its receivable
/// booked (nothing when it was booked already). Any other voucher: nothing to do.
///
/// # Errors
/// [`ClearingError::Invalid`] for an unreadable stored 2301 or a refusal of the books;
/// [`ClearingError::Store`].
pub async fn book_unsent_request(
    store: &Store,
    record: &VoucherRecord,
    now: u64,
) -> Result<(), ClearingError> {
    if record.key.vt_code != VT_2301 || record.leg != Leg::Original {
        return Ok(());
    }
    let body = stored_body(&record.body, VoucherFlag::Original)?;
    let total: Amount = header(&body.voucher, "PayAmt")?
        .parse()
        .map_err(|_| invalid("bad PayAmt"))?;
    book_request(store, &record.key, total, now).await
}

/// What became of one PBOC receipt at the bank.
#[derive(Debug)]
pub enum SettleOutcome {
    /// The receivable is settled (PBOC reserve → receivable); the 2301 is 已收到对方回单.
    Settled {
        /// The 2301.
        key: VoucherKey,
        /// The amount PBOC paid (XPayAmt, else the master PayAmt).
        amount: Amount,
    },
    /// The receipt does not answer a 2301 of ours; refused (签收失败) with the reason.
    Failed {
        /// The 2301.
        key: VoucherKey,
        /// Why.
        reason: String,
    },
}

/// The bank takes one read 2301 receipt from PBOC: checked against the 2301 it sent,
/// the receivable settled once, the receipt signed for and processed, the original
/// 已收到对方回单.
///
/// # Errors
/// [`ClearingError::Library`], [`ClearingError::Store`].
pub async fn settle_receipt(
    store: &Store,
    actor: &str,
    record: &VoucherRecord,
    now: u64,
) -> Result<SettleOutcome, ClearingError> {
    let library = store.library();
    let key = record.key.clone();
    let original = library.status(&key, Leg::Original).await?;
    let checked = match &original {
        Some(sent) if sent.sender == record.receiver && sent.receiver == record.sender => {
            stored_voucher(&record.body, VoucherFlag::Receipt).and_then(|r| {
                let paid = r
                    .header
                    .get("XPayAmt")
                    .filter(|v| !v.is_empty())
                    .or_else(|| r.header.get("PayAmt"))
                    .ok_or_else(|| invalid("the receipt has no amount"))?;
                let paid: Amount = paid.parse().map_err(|_| invalid("bad XPayAmt"))?;
                let o = stored_voucher(&sent.body, VoucherFlag::Original)?;
                let asked: Amount = header(&o, "PayAmt")?
                    .parse()
                    .map_err(|_| invalid("bad PayAmt"))?;
                if paid != asked {
                    return Err(invalid(format!(
                        "PBOC paid {paid}, the request asked {asked}"
                    )));
                }
                Ok(paid)
            })
        }
        _ => Err(invalid("no 2301 of ours to the receipt's sender")),
    };
    let amount = match checked {
        Ok(amount) => amount,
        Err(e) => {
            let reason = e.to_string();
            library
                .refuse(&key, Leg::Receipt, &reason, actor, now)
                .await?;
            return Ok(SettleOutcome::Failed { key, reason });
        }
    };
    let tenant = tenant_of(&key).map_err(|e| invalid(e.to_string()))?;
    let op = BookOp::clearing_settled(op_id("clearing-settled", &key), tenant, amount)
        .map_err(|e| invalid(e.to_string()))?;
    let refusal = store
        .apply_book_ops(now, &[op])
        .await?
        .into_iter()
        .next()
        .and_then(Result::err)
        .map(|refusal| format!("the books refused the settlement: {refusal}"));
    let check = match &refusal {
        Some(reason) => ReceiptCheck::Failed(reason),
        None => ReceiptCheck::Passed { book: true },
    };
    record_receipt_check::<ClearingError>(store, &key, original.as_ref(), check, actor, now)
        .await?;
    if let Some(reason) = refusal {
        return Ok(SettleOutcome::Failed { key, reason });
    }
    Ok(SettleOutcome::Settled { key, amount })
}

// ---------------------------------------------------------------------------------------
// 2. PBOC clears or returns
// ---------------------------------------------------------------------------------------

/// PBOC's side of a clearing run.
pub struct Pboc<'a> {
    /// PBOC's organisation code.
    pub me: &'a str,
    /// PBOC's bank number, filled as XPaySndBnkNo.
    pub bank_no: &'a str,
    /// The user or worker recorded on every event.
    pub actor: &'a str,
    /// The clearing date (XClearDate).
    pub clear_date: BizDate,
    /// The signature suite.
    pub suite: Suite,
    /// PBOC's signer with its 国库转讫章 (a [`Signer::Seal`]).
    pub sealer: &'a Signer<'a>,
}

/// What became of one received voucher in a clearing run.
#[derive(Debug)]
pub enum ClearOutcome {
    /// Cleared: quota deducted, TSA paid the bank, the sealed receipt written and sent.
    Cleared {
        /// The 2301.
        key: VoucherKey,
        /// The amount cleared.
        amount: Amount,
    },
    /// Returned (退回) with the reasons; nothing booked.
    Returned {
        /// The 2301.
        key: VoucherKey,
        /// Why, one line per refusal.
        reasons: Vec<String>,
    },
    /// Not a 2301 original: read and left for its own flow.
    NotMine {
        /// The voucher.
        key: VoucherKey,
        /// Its leg.
        leg: Leg,
    },
}

/// The clearing quota operation for a checked 2301: one all-or-nothing operation whose
/// legs deduct the quota of each (unit, function class) and pay TSA → the bank, keyed by
/// the 2301 so that a resend is not booked twice.
///
/// # Errors
/// [`ClearingError::Invalid`] for a field that does not parse.
pub fn clearing_op(request: &Voucher) -> Result<(BookOp, Amount), ClearingError> {
    let key = request.key();
    let tenant = tenant_of(&key).map_err(|e| invalid(e.to_string()))?;
    let bank: BankNo = header(request, "PayBankNo")?
        .parse()
        .map_err(|_| invalid("bad PayBankNo"))?;
    let fund: FundType = header(request, "FundTypeCode")?
        .parse()
        .map_err(|_| invalid("bad FundTypeCode"))?;
    let pay: PayType = header(request, "PayTypeCode")?
        .parse()
        .map_err(|_| invalid("bad PayTypeCode"))?;
    let mut groups: BTreeMap<(String, String), Amount> = BTreeMap::new();
    for (i, d) in request.details.iter().enumerate() {
        let get = |name: &str| {
            d.get(name)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| invalid(format!("detail {}: {name} is missing", i + 1)))
        };
        let amount = get("PayAmt")?
            .parse::<Amount>()
            .map_err(|_| invalid(format!("detail {}: bad PayAmt", i + 1)))?;
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
        id: op_id("clearing", &key),
        legs: Vec::new(),
    };
    let mut total = Amount::ZERO;
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
        let part = BookOp::clear(op.id, &ck, amount).map_err(|e| invalid(e.to_string()))?;
        op.legs.extend(part.legs);
        total = total
            .checked_add(amount)
            .ok_or_else(|| invalid("amount overflow"))?;
    }
    Ok((op, total))
}

/// The payment vouchers PBOC has cleared: listed in 2301s it received and booked.
async fn cleared_at_pboc(store: &Store) -> Result<HashSet<ListedKey>, ClearingError> {
    let booked: Vec<VoucherRecord> = all_in(store, VT_2301, Leg::Original, Exchange::Acknowledged)
        .await?
        .into_iter()
        .filter(|r| {
            matches!(
                r.processing,
                Some(Processing::Processed | Processing::Sealed | Processing::ReceiptSent)
            )
        })
        .collect();
    listed_in(&booked)
}

/// One clearing run at PBOC: reads up to `limit` unread vouchers and, for each 2301, runs
/// [`check_clearing_request`], deducts the clearing quota ([`clearing_op`]; refused:
/// 超出清算范围) and returns the sealed receipt, or returns (退回) the 2301 with the
/// reasons, nothing booked.
///
/// What PBOC knows: the vouchers listed by the 2301s it already booked count as
/// [`PaidState::Cleared`] whatever `paid` says. Whether the bank paid and receipted a
/// listed voucher PBOC cannot see in the bank's library; this first version takes `paid`
/// from the caller. The real check needs the evidence at PBOC: the 5201/8202 receipts (回单)
/// copied to PBOC, or finance's copy of the 2301 matched against finance's booked receipts.
///
/// The check against earlier 2301s assumes one clearing worker per PBOC store (the run
/// reads and books its 2301s one after another).
///
/// # Errors
/// [`ClearingError::Library`], [`ClearingError::Store`], [`ClearingError::Stamping`] if
/// PBOC's seal cannot stamp.
pub async fn clear_received<F>(
    store: &Store,
    registry: &Registry,
    pboc: &Pboc<'_>,
    paid: &F,
    limit: u32,
    now: u64,
) -> Result<Vec<ClearOutcome>, ClearingError>
where
    F: Fn(&VoucherKey) -> PaidState,
{
    let library = store.library();
    let mut outcomes = Vec::new();
    for record in library.read(limit, pboc.actor, now).await? {
        if record.key.vt_code != VT_2301 || record.leg != Leg::Original {
            outcomes.push(ClearOutcome::NotMine {
                key: record.key,
                leg: record.leg,
            });
            continue;
        }
        outcomes.push(clear_record(store, registry, pboc, paid, &record, now).await?);
    }
    Ok(outcomes)
}

async fn give_back(
    store: &Store,
    pboc: &Pboc<'_>,
    key: &VoucherKey,
    reasons: Vec<String>,
    now: u64,
) -> Result<ClearOutcome, ClearingError> {
    store
        .library()
        .return_voucher(key, Leg::Original, &reasons.join("; "), pboc.actor, now)
        .await?;
    Ok(ClearOutcome::Returned {
        key: key.clone(),
        reasons,
    })
}

/// Clears or returns one read 2301 original (the body of [`clear_received`]).
///
/// # Errors
/// As [`clear_received`].
pub async fn clear_record<F>(
    store: &Store,
    registry: &Registry,
    pboc: &Pboc<'_>,
    paid: &F,
    record: &VoucherRecord,
    now: u64,
) -> Result<ClearOutcome, ClearingError>
where
    F: Fn(&VoucherKey) -> PaidState,
{
    let library = store.library();
    let key = &record.key;
    let body = match stored_body(&record.body, VoucherFlag::Original) {
        Ok(body) => body,
        Err(e) => {
            let reason = e.to_string();
            library
                .refuse(key, Leg::Original, &reason, pboc.actor, now)
                .await?;
            return Ok(ClearOutcome::Returned {
                key: key.clone(),
                reasons: vec![reason],
            });
        }
    };
    library
        .acknowledge(key, Leg::Original, pboc.actor, now)
        .await?;
    // Resumed after a crash past its booking (处理成功 or 签章成功): the request is cleared
    // already (its vouchers now count as cleared, by this very request), so only its
    // receipt is left to seal and return.
    if matches!(
        record.processing,
        Some(Processing::Processed | Processing::Sealed)
    ) {
        let (_, amount) = clearing_op(&body.voucher).map_err(|e| invalid(e.to_string()))?;
        return return_clearing_receipt(store, registry, pboc, record, &body, amount, now).await;
    }
    let cleared = cleared_at_pboc(store).await?;
    let tenant = tenant_of(key).ok();
    let known = |k: &VoucherKey| {
        let listed = |t: Tenant| {
            [VT_5201, VT_8202]
                .into_iter()
                .find(|vt| *vt == k.vt_code)
                .is_some_and(|vt| cleared.contains(&(t, vt, k.voucher_no.clone())))
        };
        if tenant.is_some_and(listed) {
            PaidState::Cleared
        } else {
            paid(k)
        }
    };
    let checked = check_clearing_request(&body.voucher, &known)
        .map_err(|refusals| refusals.iter().map(ToString::to_string).collect::<Vec<_>>())
        .and_then(|()| clearing_op(&body.voucher).map_err(|e| vec![e.to_string()]));
    let (op, amount) = match checked {
        Ok(checked) => checked,
        Err(reasons) => return give_back(store, pboc, key, reasons, now).await,
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
    let booked = store
        .apply_book_ops(now, &[op])
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| invalid("the books answered nothing"))?;
    if let Err(refusal) = booked {
        let reason = quota_reason(&refusal);
        library
            .process(
                key,
                Leg::Original,
                ProcessingEvent::FailBooking,
                Some(&reason),
                pboc.actor,
                now,
            )
            .await?;
        return give_back(store, pboc, key, vec![reason], now).await;
    }
    library
        .process(
            key,
            Leg::Original,
            ProcessingEvent::Book,
            None,
            pboc.actor,
            now,
        )
        .await?;
    return_clearing_receipt(store, registry, pboc, record, &body, amount, now).await
}

/// PBOC's last steps on a booked 2301: its receipt with the X fields, sealed and returned.
async fn return_clearing_receipt(
    store: &Store,
    registry: &Registry,
    pboc: &Pboc<'_>,
    record: &VoucherRecord,
    body: &EnvelopeBody,
    amount: Amount,
    now: u64,
) -> Result<ClearOutcome, ClearingError> {
    let mut receipt = body.clone();
    receipt.flag = VoucherFlag::Receipt;
    let h = &mut receipt.voucher.header;
    h.set("XPaySndBnkNo", pboc.bank_no);
    h.set("XClearDate", pboc.clear_date.to_string());
    h.set("XPayAmt", amount.to_string());
    let ty = stamping::type_of(registry, &receipt.voucher)?;
    let returner = Returner {
        suite: pboc.suite,
        sealer: pboc.sealer,
        me: pboc.me,
        actor: pboc.actor,
    };
    seal_and_return::<ClearingError>(store, ty, record, &mut receipt, &returner, now).await?;
    Ok(ClearOutcome::Cleared {
        key: record.key.clone(),
        amount,
    })
}

/// A bank's 2301 header template for one division and year: the registry's sample header
/// with the division, year, fund type 1 and the bank's number.
pub fn request_template(
    registry: &Registry,
    division: &str,
    year: &str,
    bank_no: &str,
    date: BizDate,
) -> Fields {
    use guoku_voucher::VoucherFlag;
    use guoku_voucher::sample::{Style, sample};
    let ty = registry
        .get("2301")
        .expect("the built-in registry has 2301");
    let mut header = sample(ty, date, VoucherFlag::Original, Style::Plain, 7).header;
    header.set("AdmDivCode", division);
    header.set("StYear", year);
    header.set("FundTypeCode", "1");
    header.set("PayBankNo", bank_no);
    header
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(pay: &str, master: &str, details: &[(&str, &str)]) -> Voucher {
        let mut header = Fields::new();
        for (n, v) in [
            ("AdmDivCode", "430000"),
            ("StYear", "2025"),
            ("VtCode", VT_2301),
            ("VoucherNo", "QS0001"),
            ("PayTypeCode", pay),
            ("PayAmt", master),
        ] {
            header.set(n, v);
        }
        let details = details
            .iter()
            .map(|(no, amt)| {
                let mut d = Fields::new();
                d.set("VoucherNo", *no);
                d.set("PayAmt", *amt);
                d
            })
            .collect();
        Voucher { header, details }
    }

    /// 5201 "P1", "P2" paid and receipted; "P3" received, not paid; "C1" cleared before;
    /// 8202 "A1" paid and receipted.
    fn paid(k: &VoucherKey) -> PaidState {
        assert_eq!(
            (k.adm_div_code.as_str(), k.st_year.as_str()),
            ("430000", "2025")
        );
        match (k.vt_code.as_str(), k.voucher_no.as_str()) {
            ("5201", "P1" | "P2") | ("8202", "A1") => PaidState::ReceiptSent,
            ("5201", "P3") => PaidState::NotReceipted,
            ("5201", "C1") => PaidState::Cleared,
            _ => PaidState::Unknown,
        }
    }

    fn refusals(v: &Voucher) -> Vec<ClearingRefusal> {
        check_clearing_request(v, &paid).unwrap_err()
    }

    #[test]
    fn a_request_listing_paid_receipted_vouchers_that_add_up_passes() {
        let v = request("11", "300.00", &[("P1", "100.00"), ("P2", "200.00")]);
        assert_eq!(check_clearing_request(&v, &paid), Ok(()));
        let a = request("12", "5.00", &[("A1", "5.00")]);
        assert_eq!(check_clearing_request(&a, &paid), Ok(()));
    }

    #[test]
    fn an_unpaid_or_unknown_voucher_is_refused_naming_the_detail() {
        let v = request(
            "11",
            "300.00",
            &[("P1", "100.00"), ("P3", "100.00"), ("ZZ", "100.00")],
        );
        let r = refusals(&v);
        assert_eq!(
            r,
            vec![
                ClearingRefusal::NotPaid {
                    detail: 2,
                    voucher_no: "P3".into(),
                    state: PaidState::NotReceipted
                },
                ClearingRefusal::NotPaid {
                    detail: 3,
                    voucher_no: "ZZ".into(),
                    state: PaidState::Unknown
                },
            ]
        );
        assert!(r[0].to_string().contains("detail 2"), "{}", r[0]);
        assert!(r[0].to_string().contains("P3"), "{}", r[0]);
    }

    #[test]
    fn a_voucher_cleared_before_is_refused() {
        let v = request("11", "150.00", &[("P1", "100.00"), ("C1", "50.00")]);
        assert_eq!(
            refusals(&v),
            vec![ClearingRefusal::AlreadyCleared {
                detail: 2,
                voucher_no: "C1".into()
            }]
        );
    }

    #[test]
    fn a_voucher_listed_twice_is_refused() {
        let v = request("11", "200.00", &[("P1", "100.00"), ("P1", "100.00")]);
        let r = refusals(&v);
        assert_eq!(
            r,
            vec![ClearingRefusal::ListedTwice {
                detail: 2,
                voucher_no: "P1".into(),
                first: 1
            }]
        );
        assert!(r[0].to_string().contains("detail 2"));
    }

    #[test]
    fn details_not_adding_up_to_the_master_are_refused() {
        let v = request("11", "300.01", &[("P1", "100.00"), ("P2", "200.00")]);
        let r = refusals(&v);
        assert!(
            matches!(&r[..], [ClearingRefusal::SumMismatch { master, .. }] if master.to_string() == "300.01"),
            "{r:?}"
        );
        assert!(r[0].to_string().contains("300.00"), "{}", r[0]);
        // Details whose sum overflows never pass.
        let max = Amount::MAX.to_string();
        let v = request("11", "1.00", &[("P1", max.as_str()), ("P2", max.as_str())]);
        let r = check_clearing_request(&v, &paid).unwrap_err();
        assert!(
            matches!(
                &r[..],
                [ClearingRefusal::SumMismatch {
                    details: Sum(None),
                    ..
                }]
            ),
            "{r:?}"
        );
    }

    #[test]
    fn a_pay_type_that_does_not_match_the_listed_vouchers_is_refused() {
        // A paid 8202 listed under direct payment, and a paid 5201 under authorized.
        let v = request("11", "5.00", &[("A1", "5.00")]);
        assert_eq!(
            refusals(&v),
            vec![ClearingRefusal::PayTypeMismatch {
                detail: 1,
                voucher_no: "A1".into(),
                vt_code: "8202".into(),
                pay_type: "11".into()
            }]
        );
        let a = request("12", "100.00", &[("P1", "100.00")]);
        assert!(matches!(
            &refusals(&a)[..],
            [ClearingRefusal::PayTypeMismatch { detail: 1, .. }]
        ));
        let bad = request("91", "100.00", &[("P1", "100.00")]);
        assert!(matches!(
            &refusals(&bad)[..],
            [ClearingRefusal::BadHeader(_)]
        ));
    }

    #[test]
    fn malformed_requests_are_refused() {
        let mut not = request("11", "100.00", &[("P1", "100.00")]);
        not.header.set("VtCode", "2302");
        assert!(matches!(
            &refusals(&not)[..],
            [ClearingRefusal::NotAClearingRequest(_)]
        ));
        assert_eq!(
            refusals(&request("11", "100.00", &[])),
            vec![ClearingRefusal::NoDetails]
        );
        let r = refusals(&request("11", "100.00", &[("P1", "-100.00")]));
        assert!(
            matches!(&r[..], [ClearingRefusal::BadDetail { detail: 1, .. }]),
            "{r:?}"
        );
        let r = refusals(&request("11", "0.00", &[("P1", "100.00")]));
        assert!(matches!(&r[..], [ClearingRefusal::BadHeader(_)]), "{r:?}");
    }
}
