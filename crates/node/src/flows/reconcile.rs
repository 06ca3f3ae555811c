//! Daily reconciliation (对账, DOMAIN §3.6): two parties compare one business day of the
//! vouchers they exchanged — counts, amounts and states — and every difference is listed
//! with its voucher number.
//!
//! | request | from → to | compares | answered by |
//! |---|---|---|---|
//! | 3502 凭证对账 | PBOC → bank | the day's vouchers of one `EVoucherType` (2301, 2302…): VoucherNo, amount, ProState (0 正常 / 1 退回) | the receipt (回单) |
//! | 3507 清算信息对账 | PBOC → bank | per PayBankCode × ExpFuncCode × PayTypeCode: cleared (2301) and refunded (2302) amounts | a 2507 reply (回执) |
//! | 5501 授权额度对账 | finance → bank | per AgencyCode × ExpFuncCode: the authorized quota notified (5105) | the receipt |
//! | 5502 支付明细对账 | finance → bank | the day's paid 5201s: VoucherNo and the amount paid (receipt XPayAmt) | the receipt |
//! | 5503 支付凭证对账 | finance → bank | the day's vouchers of one `EVoucherType` (5201…): VoucherNo, amount, ProState | the receipt |
//!
//! # Shape
//! - **A pure core**, [`reconcile`]: our entries and theirs (voucher number, amount,
//!   state) in, a [`Summary`] out — count and sum on each side, how many matched, and every
//!   [`Difference`] (missing on our side, missing on theirs, amount differs, state differs)
//!   in voucher-number order. Sorting both sides and merging them makes a million entries a
//!   fraction of a second ([`bench_reconcile`]); duplicates or blank numbers in either side
//!   are refused, all of them named, before anything is compared.
//! - **Each side derives its entries from its own library** the same way: the day's
//!   vouchers between the two parties ([`guoku_store::daybook`]), amounts parsed from the
//!   stored bodies, the state from the exchange state ([`pro_state`]). The originator's
//!   entries become the request's details; the receiver turns those details back into
//!   entries with the same function ([`entries_of`]), so both sides mean the same thing.
//! - **Steps**: [`send_check`] (PBOC or finance originates, stamps with its 业务专用章,
//!   writes and sends; the outbox delivers); [`on_check_request`] (the bank: one read
//!   request → compare → sealed receipt with XCheckResult/XDiffNum/XCheckReason, or a 2507
//!   for a 3507; a request that cannot be compared is returned, 退回); [`on_check_answer`]
//!   (the originator: one read receipt or 2507 → the result recorded).
//! - **Multi-packet**: a day whose details exceed `packet_details` goes in packets sharing
//!   `VoucherCheckNo`, with `ChildPackNum` and `CurPackNo`; packet `n` is numbered
//!   `{VoucherCheckNo}{n:04}`. The receiver holds each packet at 校验中 until all have
//!   arrived, then compares the whole day once and answers every packet with the result.
//! - **The day** is a [`Window`] of `now`s computed from a [`BizDate`] by the node's
//!   [`Calendar`]; nothing here reads the clock.
//! - **One reconciliation worker per store**: packets are gathered and answered one after
//!   another. A packet whose siblings never come stays at 校验中 (an operator may return
//!   it); the originator sends the day again under another `VoucherCheckNo`.
//!
//! # Limits of this version
//! - 3507 compares only what both libraries hold: PayAmt (2301) and RefundAmt (2302).
//!   PlanAmt comes from the clearing-quota notices (5106/5108) PBOC received from finance
//!   ([`PlanNotices`]) and PlanRemainAmt = PlanAmt − PayAmt − RefundAmt (the refund is
//!   negative, so it gives quota back); a bank does not hold those notices, so both are
//!   carried for information only. The finance copy (3507 → finance, 5507) is not built: the
//!   registry has no 5507.
//! - 5501 compares PlanAmt only: finance's library holds no 8202s (they go from the unit to
//!   the bank), so its PayAmt is 0.00 and PlanRemainAmt = PlanAmt.
//! - A voucher is in the day in which this library recorded it (written or received); one
//!   recorded near midnight may fall in different days at the two parties and is then
//!   listed as a difference, which is what a reconciliation should show.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use guoku_domain::{Amount, BizDate, PayType, VoucherNo, gbk_len};
use guoku_seal::Suite;
use guoku_seal::voucher::Signer;
use guoku_store::daybook::{DAYBOOK_PAGE_MAX, DayQuery, Window};
use guoku_store::library::{Direction, LibraryError, VoucherRecord, truncate_reason};
use guoku_store::{Calendar, Store, StoreError};
use guoku_voucher::lifecycle::{Exchange, Leg, Processing, ProcessingEvent};
use guoku_voucher::validate::{Context, validate};
use guoku_voucher::{EnvelopeBody, Fields, Registry, Voucher, VoucherFlag, VoucherKey};

use super::common::{Returner, seal_and_return, stamp_write_send};
use super::direct::Route;
use crate::stamping::{self, StampingError};

/// 人民银行与代理银行凭证对账.
pub const VT_3502: &str = "3502";
/// 清算信息对账.
pub const VT_3507: &str = "3507";
/// 清算信息对账回执 (商业银行): the bank's reply to a 3507.
pub const VT_2507: &str = "2507";
/// 授权额度对账请求.
pub const VT_5501: &str = "5501";
/// 支付明细对账请求.
pub const VT_5502: &str = "5502";
/// 支付凭证对账请求.
pub const VT_5503: &str = "5503";
/// The payments a 5502 lists: direct payments, whose receipts come back to finance.
pub const PAYMENT_DETAIL_VT: &str = "5201";

/// Most entries on one side of a reconciliation.
pub const ENTRIES_MAX: usize = 4_000_000;
/// Most details in one packet.
pub const PACKET_DETAILS_MAX: usize = 10_000;
/// Most packets of one reconciliation (the packet number has four digits).
pub const PACKETS_MAX: u32 = 9_999;
/// Longest `VoucherCheckNo`: the packets' VoucherNos append four digits to it.
pub const CHECK_NO_MAX_LEN: usize = VoucherNo::MAX_LEN - 4;
/// Longest span of a BeginDate..EndDate reconciliation, in days.
pub const SPAN_DAYS_MAX: i64 = 31;
/// How long before a packet its siblings may have arrived (seconds of `now`).
pub const PACKET_SPREAD: u64 = 2 * 86_400;
/// Longest XCheckReason, in GBK bytes (the registry's limit).
pub const CHECK_REASON_MAX_GBK_BYTES: usize = 200;

// ---------------------------------------------------------------------------------------
// The pure core
// ---------------------------------------------------------------------------------------

/// A voucher's processing state as a reconciliation states it (`ProState`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProState {
    /// 0 正常: taken into business.
    Normal,
    /// 1 退回: returned or refused by its receiver.
    Returned,
}

impl ProState {
    /// The standard's code.
    #[must_use]
    pub fn code(self) -> &'static str {
        match self {
            ProState::Normal => "0",
            ProState::Returned => "1",
        }
    }

    /// The state a code stands for.
    #[must_use]
    pub fn from_code(code: &str) -> Option<ProState> {
        match code {
            "0" => Some(ProState::Normal),
            "1" => Some(ProState::Returned),
            _ => None,
        }
    }

    /// 正常 / 退回.
    #[must_use]
    pub fn name_zh(self) -> &'static str {
        match self {
            ProState::Normal => "正常",
            ProState::Returned => "退回",
        }
    }
}

/// One line a side brings to the comparison: a voucher (or an aggregate key), its amount
/// and its state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The voucher number, or for an aggregate its key and column
    /// (`102551000015/2010101/11/PayAmt`).
    pub no: String,
    pub amount: Amount,
    pub state: ProState,
}

/// An entry's amount and state as one side has it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Booked {
    pub amount: Amount,
    pub state: ProState,
}

/// How an entry differs between the sides.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DiffKind {
    /// They have it, we do not (本方无).
    MissingOurs,
    /// We have it, they do not (对方无).
    MissingTheirs,
    /// Both have it with other amounts (金额不符).
    AmountDiffers,
    /// Both have it in other states (状态不符).
    StateDiffers,
    /// Both have it with other amounts and in other states.
    AmountAndStateDiffer,
}

/// One difference, with its voucher number and what each side has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Difference {
    pub no: String,
    pub kind: DiffKind,
    /// What we have (`None` when missing on our side).
    pub ours: Option<Booked>,
    /// What they have (`None` when missing on theirs).
    pub theirs: Option<Booked>,
}

impl fmt::Display for Difference {
    /// One line of XCheckReason, in Chinese, from our side's view: `V1 金额不符(本方1.00
    /// 对方1.01)`, `V2 对方无(本方1.00正常)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let no = &self.no;
        let both = |what: &str, show: &dyn Fn(Booked) -> String| match (self.ours, self.theirs) {
            (Some(o), Some(t)) => format!("{no} {what}(本方{} 对方{})", show(o), show(t)),
            _ => format!("{no} {what}"),
        };
        let line = match self.kind {
            DiffKind::MissingOurs => match self.theirs {
                Some(t) => format!("{no} 本方无(对方{}{})", t.amount, t.state.name_zh()),
                None => format!("{no} 本方无"),
            },
            DiffKind::MissingTheirs => match self.ours {
                Some(o) => format!("{no} 对方无(本方{}{})", o.amount, o.state.name_zh()),
                None => format!("{no} 对方无"),
            },
            DiffKind::AmountDiffers => both("金额不符", &|b| b.amount.to_string()),
            DiffKind::StateDiffers => both("状态不符", &|b| b.state.name_zh().to_owned()),
            DiffKind::AmountAndStateDiffer => both("金额状态不符", &|b| {
                format!("{}{}", b.amount, b.state.name_zh())
            }),
        };
        f.write_str(&line)
    }
}

/// Count and sum of one side's entries (all of them, whatever their state).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub count: u64,
    /// In fen; an `i128` cannot overflow on [`ENTRIES_MAX`] amounts.
    pub sum_fen: i128,
}

impl Tally {
    fn add(&mut self, amount: Amount) {
        self.count += 1;
        self.sum_fen += i128::from(amount.fen());
    }
}

/// The result of a comparison.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub ours: Tally,
    pub theirs: Tally,
    /// Entries both sides have with the same amount and state.
    pub matched: u64,
    /// Every difference, in voucher-number order.
    pub differences: Vec<Difference>,
}

/// Which side of a comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    Ours,
    Theirs,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Ours => "our side",
            Side::Theirs => "their side",
        })
    }
}

/// Why an input to [`reconcile`] is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InputProblem {
    /// A voucher number appears twice on one side.
    #[error("{side}: voucher {no} is listed {times} times")]
    Duplicate {
        side: Side,
        no: String,
        times: usize,
    },
    /// An entry without a voucher number (1-based position in the input).
    #[error("{side}: entry {position} has no voucher number")]
    BlankNo { side: Side, position: usize },
    /// More entries than [`ENTRIES_MAX`].
    #[error("{side}: {len} entries, at most {ENTRIES_MAX} allowed")]
    TooMany { side: Side, len: usize },
}

/// Every problem of a refused input; nothing was compared.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct RefusedInput(pub Vec<InputProblem>);

fn by_no(a: &Entry, b: &Entry) -> Ordering {
    a.no.cmp(&b.no)
}

/// Sorts a side and lists its problems.
fn prepare(side: Side, entries: &mut [Entry], problems: &mut Vec<InputProblem>) {
    if entries.len() > ENTRIES_MAX {
        problems.push(InputProblem::TooMany {
            side,
            len: entries.len(),
        });
        return;
    }
    for (i, e) in entries.iter().enumerate() {
        if e.no.trim().is_empty() {
            problems.push(InputProblem::BlankNo {
                side,
                position: i + 1,
            });
        }
    }
    entries.sort_unstable_by(by_no);
    for run in entries.chunk_by(|a, b| a.no == b.no) {
        if run.len() > 1 && !run[0].no.trim().is_empty() {
            problems.push(InputProblem::Duplicate {
                side,
                no: run[0].no.clone(),
                times: run.len(),
            });
        }
    }
}

/// Compares our entries with theirs: counts and sums on each side, the entries that match,
/// and every difference in voucher-number order.
///
/// # Errors
/// [`RefusedInput`] listing every duplicate voucher number, blank number and oversized
/// side; then nothing was compared.
pub fn reconcile(mut ours: Vec<Entry>, mut theirs: Vec<Entry>) -> Result<Summary, RefusedInput> {
    let mut problems = Vec::new();
    prepare(Side::Ours, &mut ours, &mut problems);
    prepare(Side::Theirs, &mut theirs, &mut problems);
    if !problems.is_empty() {
        return Err(RefusedInput(problems));
    }
    let mut summary = Summary::default();
    for e in &ours {
        summary.ours.add(e.amount);
    }
    for e in &theirs {
        summary.theirs.add(e.amount);
    }
    let booked = |e: &Entry| Booked {
        amount: e.amount,
        state: e.state,
    };
    let (mut i, mut j) = (0, 0);
    while i < ours.len() || j < theirs.len() {
        let order = match (ours.get(i), theirs.get(j)) {
            (Some(o), Some(t)) => by_no(o, t),
            (Some(_), None) => Ordering::Less,
            _ => Ordering::Greater,
        };
        let difference = match order {
            Ordering::Less => {
                let o = &ours[i];
                i += 1;
                Some(Difference {
                    no: o.no.clone(),
                    kind: DiffKind::MissingTheirs,
                    ours: Some(booked(o)),
                    theirs: None,
                })
            }
            Ordering::Greater => {
                let t = &theirs[j];
                j += 1;
                Some(Difference {
                    no: t.no.clone(),
                    kind: DiffKind::MissingOurs,
                    ours: None,
                    theirs: Some(booked(t)),
                })
            }
            Ordering::Equal => {
                let (o, t) = (&ours[i], &theirs[j]);
                i += 1;
                j += 1;
                let kind = match (o.amount == t.amount, o.state == t.state) {
                    (true, true) => None,
                    (false, true) => Some(DiffKind::AmountDiffers),
                    (true, false) => Some(DiffKind::StateDiffers),
                    (false, false) => Some(DiffKind::AmountAndStateDiffer),
                };
                kind.map(|kind| Difference {
                    no: o.no.clone(),
                    kind,
                    ours: Some(booked(o)),
                    theirs: Some(booked(t)),
                })
            }
        };
        match difference {
            Some(d) => summary.differences.push(d),
            None => summary.matched += 1,
        }
    }
    Ok(summary)
}

/// Fen as the standard's yuan text, for sums beyond an [`Amount`].
fn yuan(fen: i128) -> String {
    let sign = if fen < 0 { "-" } else { "" };
    let abs = fen.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

impl Summary {
    /// Both sides agree (相符): the same entries, amounts and states.
    #[must_use]
    pub fn agrees(&self) -> bool {
        self.differences.is_empty()
    }

    /// `XCheckResult`: 0 相符, 1 不符.
    #[must_use]
    pub fn check_result(&self) -> &'static str {
        if self.agrees() { "0" } else { "1" }
    }

    /// `XDiffNum`: how many entries differ.
    #[must_use]
    pub fn diff_num(&self) -> usize {
        self.differences.len()
    }

    /// `XCheckReason`: the counts and sums when they differ, then the differences, cut to
    /// [`CHECK_REASON_MAX_GBK_BYTES`] with how many there are in all; empty when the sides
    /// agree. The full list stays in [`Summary::differences`].
    #[must_use]
    pub fn check_reason(&self) -> String {
        if self.agrees() {
            return String::new();
        }
        let mut parts = Vec::new();
        if self.ours != self.theirs {
            parts.push(format!(
                "笔数 本方{} 对方{}, 金额 本方{} 对方{}",
                self.ours.count,
                self.theirs.count,
                yuan(self.ours.sum_fen),
                yuan(self.theirs.sum_fen)
            ));
        }
        let total = self.differences.len();
        let suffix = format!("; …共{total}笔不符");
        let mut out = String::new();
        let mut shown = 0;
        let lines = parts
            .into_iter()
            .map(|p| (p, false))
            .chain(self.differences.iter().map(|d| (d.to_string(), true)));
        for (line, is_difference) in lines {
            let candidate = if out.is_empty() {
                line
            } else {
                format!("{out}; {line}")
            };
            let all_shown = shown + usize::from(is_difference) == total;
            let room = if all_shown {
                CHECK_REASON_MAX_GBK_BYTES
            } else {
                CHECK_REASON_MAX_GBK_BYTES.saturating_sub(gbk_len(&suffix))
            };
            if gbk_len(&candidate) > room {
                break;
            }
            out = candidate;
            shown += usize::from(is_difference);
        }
        if shown < total {
            out.push_str(&suffix);
        }
        truncate_reason(&out)
    }
}

/// A deterministic bijection of `u64` (SplitMix64's finaliser): distinct inputs give
/// distinct outputs, so generated voucher numbers never collide.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The entries of a benchmark day: `entries` vouchers in a scrambled order on our side;
/// theirs the same except for one in a thousand missing, one in a thousand with another
/// amount, one in a thousand in another state, plus one in a thousand only they have.
#[must_use]
pub fn bench_entries(entries: usize, seed: u64) -> (Vec<Entry>, Vec<Entry>) {
    let n = entries as u64;
    let fen = |f: u64| Amount::from_fen(i64::try_from(f).unwrap_or(0)).unwrap_or(Amount::ZERO);
    let entry = |i: u64| Entry {
        no: format!("{:016X}", mix(i ^ seed)),
        amount: fen(mix(i.wrapping_add(seed)) % 100_000_000),
        state: ProState::Normal,
    };
    let ours: Vec<Entry> = (0..n).map(entry).collect();
    let mut theirs = Vec::with_capacity(entries);
    for (i, e) in (0..n).zip(&ours) {
        match i % 1000 {
            0 => continue,
            1 => theirs.push(Entry {
                amount: e.amount.checked_add(fen(1)).unwrap_or(Amount::ZERO),
                ..e.clone()
            }),
            2 => theirs.push(Entry {
                state: ProState::Returned,
                ..e.clone()
            }),
            3 => {
                theirs.push(e.clone());
                theirs.push(entry(n + i));
            }
            _ => theirs.push(e.clone()),
        }
    }
    (ours, theirs)
}

/// Benchmark of the core (DESIGN target: a day of 1,000,000 entries in ≤ 10 s): compares
/// [`bench_entries`]`(entries, seed)` and returns the time [`reconcile`] took (generating the
/// entries is not counted) and its summary. This is the only place here that reads a clock,
/// and only to measure. Not a test: `guoku bench reconcile` prints it.
///
/// # Panics
/// If `entries` exceeds [`ENTRIES_MAX`] (the input would be refused).
#[must_use]
pub fn bench_reconcile(entries: usize, seed: u64) -> (Duration, Summary) {
    let (ours, theirs) = bench_entries(entries, seed);
    let start = Instant::now();
    let summary = reconcile(ours, theirs).expect("benchmark entries are unique and bounded");
    (start.elapsed(), summary)
}

// ---------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------

/// Why a reconciliation step stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The request or a stored voucher cannot be used (bad argument, field, or a stored
    /// body that does not parse). Retrying the same call cannot help.
    #[error("{0}")]
    Invalid(String),
    /// One side's entries were refused (duplicates, blank numbers, too many).
    #[error("refused input: {0}")]
    Input(#[from] RefusedInput),
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

impl ReconcileError {
    /// Whether retrying the same call may succeed (only when the store was unavailable).
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Library(e) => e.is_retryable(),
            Self::Store(e) => e.is_retryable(),
            _ => false,
        }
    }
}

fn invalid(what: impl Into<String>) -> ReconcileError {
    ReconcileError::Invalid(what.into())
}

// ---------------------------------------------------------------------------------------
// Kinds, days and details (pure)
// ---------------------------------------------------------------------------------------

/// What is reconciled: one kind per request type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CheckKind {
    /// 3502: PBOC and a bank, the day's vouchers of one EVoucherType.
    Vouchers,
    /// 3507: PBOC and a bank, cleared and refunded amounts per bank × function × pay type.
    Clearing,
    /// 5501: finance and a bank, authorized quota per unit × function.
    Quota,
    /// 5502: finance and a bank, the day's paid 5201s.
    PaymentDetails,
    /// 5503: finance and a bank, the day's vouchers of one EVoucherType.
    PaymentVouchers,
}

impl CheckKind {
    /// Every kind.
    pub const ALL: [CheckKind; 5] = [
        CheckKind::Vouchers,
        CheckKind::Clearing,
        CheckKind::Quota,
        CheckKind::PaymentDetails,
        CheckKind::PaymentVouchers,
    ];

    /// The request's type code.
    #[must_use]
    pub fn vt_code(self) -> &'static str {
        match self {
            CheckKind::Vouchers => VT_3502,
            CheckKind::Clearing => VT_3507,
            CheckKind::Quota => VT_5501,
            CheckKind::PaymentDetails => VT_5502,
            CheckKind::PaymentVouchers => VT_5503,
        }
    }

    /// The kind of a request type code.
    #[must_use]
    pub fn of(vt_code: &str) -> Option<CheckKind> {
        Self::ALL.into_iter().find(|k| k.vt_code() == vt_code)
    }

    /// Whether the request names the reconciled type (`EVoucherType`).
    #[must_use]
    pub fn names_type(self) -> bool {
        matches!(self, CheckKind::Vouchers | CheckKind::PaymentVouchers)
    }

    /// The detail field holding a voucher's amount, for per-voucher kinds.
    fn amount_field(self) -> &'static str {
        match self {
            CheckKind::Vouchers => "Amt",
            _ => "PayAmt",
        }
    }
}

/// The day a business date stands for, by `calendar`: from its local midnight to the next.
#[must_use]
pub fn day_window(calendar: Calendar, date: BizDate) -> Window {
    span_window(calendar, date, date)
}

/// From the start of `begin` to the end of `end` (inclusive dates).
fn span_window(calendar: Calendar, begin: BizDate, end: BizDate) -> Window {
    let tpd = i128::from(calendar.ticks_per_day.max(1));
    let start = |d: BizDate| {
        let days = i128::from(d.as_date().to_julian_day()) - i128::from(UNIX_EPOCH_JULIAN_DAY);
        days * tpd - i128::from(calendar.offset_ticks)
    };
    let clamp = |t: i128| u64::try_from(t.max(0)).unwrap_or(u64::MAX);
    Window {
        from: clamp(start(begin)),
        to: clamp(start(end) + tpd),
    }
}

const UNIX_EPOCH_JULIAN_DAY: i32 = 2_440_588;

/// The business date of `now` by `calendar`.
///
/// # Errors
/// [`ReconcileError::Invalid`] for a `now` beyond the calendar.
pub fn business_date(calendar: Calendar, now: u64) -> Result<BizDate, ReconcileError> {
    let day =
        i32::try_from(calendar.day(now)).map_err(|_| invalid("now is beyond the calendar"))?;
    day.checked_add(UNIX_EPOCH_JULIAN_DAY)
        .and_then(|j| time::Date::from_julian_day(j).ok())
        .map(BizDate::from)
        .ok_or_else(|| invalid("now is beyond the calendar"))
}

/// The state a reconciliation gives a stored voucher, or `None` when it does not count:
/// one that never reached the other library (not sent, refused by it, voided). Returned or
/// refused at acknowledgement is 退回; everything else that was exchanged — in transit,
/// received, acknowledged, receipted — is 正常.
#[must_use]
pub fn pro_state(record: &VoucherRecord) -> Option<ProState> {
    match record.exchange {
        Exchange::NotSent | Exchange::ReceiveFailed | Exchange::Voided => None,
        Exchange::Returned | Exchange::AckFailed => Some(ProState::Returned),
        Exchange::NotReceived
        | Exchange::Received
        | Exchange::Acknowledged
        | Exchange::ReceiptReceived => Some(ProState::Normal),
    }
}

fn get<'f>(fields: &'f Fields, name: &str, at: &str) -> Result<&'f str, String> {
    fields
        .value(name)
        .ok_or_else(|| format!("{at}{name} is missing"))
}

fn amount_in(fields: &Fields, name: &str, at: &str) -> Result<Amount, String> {
    let text = get(fields, name, at)?;
    text.parse::<Amount>()
        .map_err(|_| format!("{at}{name} is not an amount: {text}"))
}

/// A pay type code in its two-digit form (`001001` → `11`); unknown codes as written.
fn pay_code(text: &str) -> String {
    text.parse::<PayType>()
        .map_or_else(|_| text.to_owned(), |p| p.code().to_owned())
}

/// The key fields of an aggregate kind and its compared columns.
fn aggregate_layout(kind: CheckKind) -> Option<(&'static [&'static str], &'static [&'static str])> {
    match kind {
        CheckKind::Clearing => Some((
            &["PayBankCode", "ExpFuncCode", "PayTypeCode"],
            &["PayAmt", "RefundAmt"],
        )),
        CheckKind::Quota => Some((&["AgencyCode", "ExpFuncCode"], &["PlanAmt"])),
        _ => None,
    }
}

/// The entries a request's details stand for, the same for both sides: per voucher, its
/// number, amount and ProState (5502: 正常); per aggregate row, one entry per compared
/// column that is not zero, numbered `key/…/column` (an absent row and a zero one agree).
///
/// # Errors
/// Every detail problem (missing field, bad amount or state), one line each, naming the
/// detail (1-based).
pub fn entries_of(kind: CheckKind, details: &[Fields]) -> Result<Vec<Entry>, Vec<String>> {
    let mut entries = Vec::with_capacity(details.len());
    let mut problems = Vec::new();
    for (i, d) in details.iter().enumerate() {
        let at = format!("detail {}: ", i + 1);
        if let Err(p) = push_entries(kind, d, &at, &mut entries) {
            problems.push(p);
        }
    }
    if problems.is_empty() {
        Ok(entries)
    } else {
        Err(problems)
    }
}

/// The entries of one detail.
fn push_entries(
    kind: CheckKind,
    d: &Fields,
    at: &str,
    entries: &mut Vec<Entry>,
) -> Result<(), String> {
    if let Some((keys, columns)) = aggregate_layout(kind) {
        let mut key = Vec::with_capacity(keys.len());
        for name in keys {
            let value = get(d, name, at)?;
            key.push(if *name == "PayTypeCode" {
                pay_code(value)
            } else {
                value.to_owned()
            });
        }
        let key = key.join("/");
        for column in columns {
            let amount = amount_in(d, column, at)?;
            if !amount.is_zero() {
                entries.push(Entry {
                    no: format!("{key}/{column}"),
                    amount,
                    state: ProState::Normal,
                });
            }
        }
        return Ok(());
    }
    let no = get(d, "VoucherNo", at)?.to_owned();
    let amount = amount_in(d, kind.amount_field(), at)?;
    let state = if kind == CheckKind::PaymentDetails {
        ProState::Normal
    } else {
        let code = get(d, "ProState", at)?;
        ProState::from_code(code)
            .ok_or_else(|| format!("{at}ProState must be 0 or 1, got {code}"))?
    };
    entries.push(Entry { no, amount, state });
    Ok(())
}

/// What a request says about its day and packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestHead {
    pub kind: CheckKind,
    /// The day (CheckDate) or the first day (BeginDate).
    pub begin: BizDate,
    /// The last day (CheckDate or EndDate).
    pub end: BizDate,
    /// The reconciled type, for 3502 and 5503.
    pub e_voucher_type: Option<String>,
    /// `VoucherCheckNo`, or the VoucherNo for a single packet without one.
    pub check_no: String,
    /// `ChildPackNum` (1 when absent).
    pub packets: u32,
    /// `CurPackNo` (1 when absent).
    pub packet: u32,
}

/// Reads the head of a request.
///
/// # Errors
/// Every problem found, one line each.
pub fn request_head(voucher: &Voucher) -> Result<RequestHead, Vec<String>> {
    let h = &voucher.header;
    let Some(kind) = CheckKind::of(voucher.vt_code()) else {
        return Err(vec![format!(
            "not a reconciliation request: VtCode {}",
            voucher.vt_code()
        )]);
    };
    let mut problems = Vec::new();
    let mut date = |name: &str| match h.value(name).map(str::parse::<BizDate>) {
        Some(Ok(d)) => Some(d),
        _ => {
            problems.push(format!("{name} is missing or not a date"));
            None
        }
    };
    let (begin, end) = if kind == CheckKind::Vouchers {
        let d = date("CheckDate");
        (d, d)
    } else {
        (date("BeginDate"), date("EndDate"))
    };
    let e_voucher_type = if kind.names_type() {
        let t = h.value("EVoucherType").map(str::to_owned);
        if t.is_none() {
            problems.push("EVoucherType is missing".into());
        }
        t
    } else {
        None
    };
    let mut count = |name: &str| match h.value(name) {
        None => Some(1),
        Some(v) => match v.parse::<u32>() {
            Ok(n) if (1..=PACKETS_MAX).contains(&n) => Some(n),
            _ => {
                problems.push(format!("{name} must be 1..={PACKETS_MAX}, got {v}"));
                None
            }
        },
    };
    let packets = count("ChildPackNum");
    let packet = count("CurPackNo");
    if let (Some(n), Some(p)) = (packets, packet)
        && p > n
    {
        problems.push(format!("CurPackNo {p} is beyond ChildPackNum {n}"));
    }
    let check_no = h
        .value("VoucherCheckNo")
        .or_else(|| h.value("VoucherNo"))
        .unwrap_or("")
        .to_owned();
    if let (Some(b), Some(e)) = (begin, end) {
        let days = i64::from(e.as_date().to_julian_day() - b.as_date().to_julian_day());
        if !(0..SPAN_DAYS_MAX).contains(&days) {
            problems.push(format!(
                "the span {b}..{e} must be 1 to {SPAN_DAYS_MAX} days"
            ));
        }
    }
    match (begin, end, packets, packet) {
        (Some(begin), Some(end), Some(packets), Some(packet)) if problems.is_empty() => {
            Ok(RequestHead {
                kind,
                begin,
                end,
                e_voucher_type,
                check_no,
                packets,
                packet,
            })
        }
        _ => Err(problems),
    }
}

/// Fills a receipt's (or a 2507's) result fields: XCheckResult, XDiffNum, and
/// XCheckReason when the sides differ.
pub fn fill_result(header: &mut Fields, summary: &Summary) {
    header.set("XCheckResult", summary.check_result());
    header.set("XDiffNum", summary.diff_num().to_string());
    if summary.agrees() {
        header.remove("XCheckReason");
    } else {
        header.set("XCheckReason", summary.check_reason());
    }
}

/// What an answer (receipt or 2507) says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckResult {
    /// XCheckResult = 0 (相符).
    pub agrees: bool,
    /// XDiffNum.
    pub diff_num: u64,
    /// XCheckReason (may be cut; the answering side has the full list).
    pub reason: String,
}

/// Reads an answer's result fields.
///
/// # Errors
/// A line naming the bad field.
pub fn read_result(header: &Fields) -> Result<CheckResult, String> {
    let agrees = match header.value("XCheckResult") {
        Some("0") => true,
        Some("1") => false,
        other => return Err(format!("XCheckResult must be 0 or 1, got {other:?}")),
    };
    let diff_num = match header.value("XDiffNum") {
        None if agrees => 0,
        None => return Err("XDiffNum is missing".into()),
        Some(v) => v
            .parse::<u64>()
            .map_err(|_| format!("XDiffNum is not a count: {v}"))?,
    };
    if agrees != (diff_num == 0) {
        return Err(format!(
            "XCheckResult {} does not go with XDiffNum {diff_num}",
            u8::from(!agrees)
        ));
    }
    Ok(CheckResult {
        agrees,
        diff_num,
        reason: header.value("XCheckReason").unwrap_or("").to_owned(),
    })
}

// ---------------------------------------------------------------------------------------
// A side's details from its own library
// ---------------------------------------------------------------------------------------

/// Finance's clearing-quota notices (5106/5108) that give a 3507 its PlanAmt.
#[derive(Clone, Copy, Debug)]
pub struct PlanNotices<'a> {
    /// Finance's organisation code (the notices' sender).
    pub from: &'a str,
    /// The bank's number: only notices with this PayBankNo count.
    pub bank_no: &'a str,
}

/// Whose day a side reads.
struct Scope<'a> {
    adm_div_code: &'a str,
    st_year: &'a str,
    counterparty: &'a str,
    window: Window,
    e_voucher_type: Option<&'a str>,
    plan: Option<PlanNotices<'a>>,
}

fn stored_body(bytes: &[u8], flag: VoucherFlag) -> Result<EnvelopeBody, ReconcileError> {
    super::common::stored_body(bytes, flag).map_err(invalid)
}

fn flag_of(leg: Leg) -> VoucherFlag {
    match leg {
        Leg::Original => VoucherFlag::Original,
        Leg::Receipt => VoucherFlag::Receipt,
    }
}

/// Visits every voucher of the day that counts ([`pro_state`]) in the scope's division and
/// year, page by page, with its state and parsed body; the bodies are not kept.
async fn fold_day<F>(
    store: &Store,
    scope: &Scope<'_>,
    vt_code: &str,
    leg: Leg,
    counterparty: &str,
    mut visit: F,
) -> Result<(), ReconcileError>
where
    F: FnMut(&VoucherRecord, ProState, &Voucher) -> Result<(), ReconcileError>,
{
    let daybook = store.daybook();
    let query = DayQuery {
        vt_code,
        leg,
        counterparty,
        window: scope.window,
    };
    let mut after = 0;
    let mut seen = 0usize;
    loop {
        let page = daybook.vouchers(&query, after, DAYBOOK_PAGE_MAX).await?;
        for record in &page.items {
            if record.key.adm_div_code != scope.adm_div_code || record.key.st_year != scope.st_year
            {
                continue;
            }
            let Some(state) = pro_state(record) else {
                continue;
            };
            seen += 1;
            if seen > ENTRIES_MAX {
                return Err(invalid(format!(
                    "more than {ENTRIES_MAX} {vt_code} vouchers in the day"
                )));
            }
            let voucher = super::common::stored_voucher(&record.body, flag_of(leg))
                .map_err(|e| invalid(format!("{}: {e}", record.key)))?;
            visit(record, state, &voucher)?;
        }
        match page.next {
            Some(next) => after = next,
            None => return Ok(()),
        }
    }
}

fn detail(pairs: &[(&str, String)]) -> Fields {
    pairs.iter().map(|(n, v)| (*n, v.clone())).collect()
}

fn add_to(slot: &mut Amount, amount: Amount) -> Result<(), ReconcileError> {
    *slot = slot
        .checked_add(amount)
        .ok_or_else(|| invalid("amount overflow"))?;
    Ok(())
}

/// Sums per aggregate key: one amount per column.
type Aggregates<const N: usize> = BTreeMap<Vec<String>, [Amount; N]>;

/// This side's details for `kind` over the scope's day, in a stable order (by voucher
/// number or aggregate key), without `Id`s.
async fn our_details(
    store: &Store,
    registry: &Registry,
    kind: CheckKind,
    scope: &Scope<'_>,
) -> Result<Vec<Fields>, ReconcileError> {
    let cp = scope.counterparty;
    let in_voucher =
        |record: &VoucherRecord, what: String| invalid(format!("{}: {what}", record.key));
    match kind {
        CheckKind::Vouchers | CheckKind::PaymentVouchers => {
            let vt = scope
                .e_voucher_type
                .ok_or_else(|| invalid("EVoucherType is needed"))?;
            let amount_field = registry
                .get(vt)
                .and_then(|t| t.amount.clone())
                .ok_or_else(|| invalid(format!("type {vt} has no amount in the registry")))?;
            let mut rows: Vec<(String, Amount, ProState)> = Vec::new();
            fold_day(store, scope, vt, Leg::Original, cp, |record, state, v| {
                let amount =
                    amount_in(&v.header, &amount_field, "").map_err(|e| in_voucher(record, e))?;
                rows.push((record.key.voucher_no.clone(), amount, state));
                Ok(())
            })
            .await?;
            rows.sort_by(|a, b| a.0.cmp(&b.0));
            let amount_name = kind.amount_field();
            Ok(rows
                .into_iter()
                .map(|(no, amount, state)| {
                    detail(&[
                        ("VoucherNo", no),
                        (amount_name, amount.to_string()),
                        ("ProState", state.code().to_owned()),
                    ])
                })
                .collect())
        }
        CheckKind::PaymentDetails => {
            let mut rows: Vec<Fields> = Vec::new();
            fold_day(
                store,
                scope,
                PAYMENT_DETAIL_VT,
                Leg::Receipt,
                cp,
                |record, state, v| {
                    if state != ProState::Normal {
                        return Ok(());
                    }
                    let h = &v.header;
                    let field = |name: &str| {
                        get(h, name, "")
                            .map(str::to_owned)
                            .map_err(|e| in_voucher(record, e))
                    };
                    let paid = amount_in(h, "XPayAmt", "").map_err(|e| in_voucher(record, e))?;
                    rows.push(detail(&[
                        ("VoucherNo", record.key.voucher_no.clone()),
                        ("AgencyCode", field("AgencyCode")?),
                        ("ExpFuncCode", field("ExpFuncCode")?),
                        ("PayDate", field("XPayDate")?),
                        ("PayAmt", paid.to_string()),
                    ]));
                    Ok(())
                },
            )
            .await?;
            rows.sort_by(|a, b| a.get("VoucherNo").cmp(&b.get("VoucherNo")));
            Ok(rows)
        }
        CheckKind::Clearing => clearing_details(store, scope).await,
        CheckKind::Quota => {
            let mut rows: Aggregates<1> = BTreeMap::new();
            fold_day(
                store,
                scope,
                "5105",
                Leg::Original,
                cp,
                |record, state, v| {
                    if state != ProState::Normal {
                        return Ok(());
                    }
                    for (i, d) in v.details.iter().enumerate() {
                        let at = format!("detail {}: ", i + 1);
                        let key = ["AgencyCode", "ExpFuncCode"]
                            .iter()
                            .map(|n| get(d, n, &at).map(str::to_owned))
                            .collect::<Result<Vec<_>, _>>()
                            .map_err(|e| in_voucher(record, e))?;
                        let plan =
                            amount_in(d, "PlanAmt", &at).map_err(|e| in_voucher(record, e))?;
                        add_to(&mut rows.entry(key).or_insert([Amount::ZERO])[0], plan)?;
                    }
                    Ok(())
                },
            )
            .await?;
            Ok(rows
                .into_iter()
                .map(|(key, [plan])| {
                    detail(&[
                        ("AgencyCode", key[0].clone()),
                        ("ExpFuncCode", key[1].clone()),
                        ("PlanAmt", plan.to_string()),
                        ("PayAmt", Amount::ZERO.to_string()),
                        ("PlanRemainAmt", plan.to_string()),
                    ])
                })
                .collect())
        }
    }
}

/// 3507 rows: per PayBankCode (the vouchers' PayBankNo) × ExpFuncCode × PayTypeCode, the
/// cleared (2301), planned (5106/5108 from [`PlanNotices`]) and refunded (2302) amounts.
async fn clearing_details(store: &Store, scope: &Scope<'_>) -> Result<Vec<Fields>, ReconcileError> {
    const PAY: usize = 0;
    const PLAN: usize = 1;
    const REFUND: usize = 2;
    let mut rows: Aggregates<3> = BTreeMap::new();
    for (vt, column) in [("2301", PAY), ("2302", REFUND)] {
        fold_day(
            store,
            scope,
            vt,
            Leg::Original,
            scope.counterparty,
            |record, state, v| {
                if state != ProState::Normal {
                    return Ok(());
                }
                let fail = |e: String| invalid(format!("{}: {e}", record.key));
                let bank = get(&v.header, "PayBankNo", "").map_err(fail)?.to_owned();
                let pay = pay_code(get(&v.header, "PayTypeCode", "").map_err(fail)?);
                for (i, d) in v.details.iter().enumerate() {
                    let at = format!("detail {}: ", i + 1);
                    let func = get(d, "ExpFuncCode", &at).map_err(fail)?.to_owned();
                    let amount = amount_in(d, "PayAmt", &at).map_err(fail)?;
                    let slot = rows
                        .entry(vec![bank.clone(), func, pay.clone()])
                        .or_insert([Amount::ZERO; 3]);
                    add_to(&mut slot[column], amount)?;
                }
                Ok(())
            },
        )
        .await?;
    }
    if let Some(plan) = scope.plan {
        for (vt, field, pay) in [
            ("5108", "PayAmt", PayType::Direct),
            ("5106", "PlanAmt", PayType::Authorized),
        ] {
            fold_day(
                store,
                scope,
                vt,
                Leg::Original,
                plan.from,
                |record, state, v| {
                    if state != ProState::Normal
                        || v.header.value("PayBankNo") != Some(plan.bank_no)
                    {
                        return Ok(());
                    }
                    let fail = |e: String| invalid(format!("{}: {e}", record.key));
                    for (i, d) in v.details.iter().enumerate() {
                        let at = format!("detail {}: ", i + 1);
                        let func = get(d, "ExpFuncCode", &at).map_err(fail)?.to_owned();
                        let amount = amount_in(d, field, &at).map_err(fail)?;
                        let slot = rows
                            .entry(vec![plan.bank_no.to_owned(), func, pay.code().to_owned()])
                            .or_insert([Amount::ZERO; 3]);
                        add_to(&mut slot[PLAN], amount)?;
                    }
                    Ok(())
                },
            )
            .await?;
        }
    }
    rows.into_iter()
        .map(|(key, amounts)| {
            let remain = amounts[PLAN]
                .checked_sub(amounts[PAY])
                .and_then(|r| r.checked_sub(amounts[REFUND]))
                .ok_or_else(|| invalid("amount overflow"))?;
            Ok(detail(&[
                ("PayBankCode", key[0].clone()),
                ("ExpFuncCode", key[1].clone()),
                ("PayTypeCode", key[2].clone()),
                ("PayAmt", amounts[PAY].to_string()),
                ("PlanAmt", amounts[PLAN].to_string()),
                ("RefundAmt", amounts[REFUND].to_string()),
                ("PlanRemainAmt", remain.to_string()),
            ]))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// 1. PBOC or finance sends the request
// ---------------------------------------------------------------------------------------

/// Who originates a reconciliation (PBOC, or finance).
pub struct Originator<'a> {
    /// The signature suite.
    pub suite: Suite,
    /// Position 1 of every request: the 业务专用章 (a [`Signer::Seal`]).
    pub sealer: &'a Signer<'a>,
    /// This node, the bank it reconciles with, and the actor recorded.
    pub route: Route<'a>,
    /// How `now` maps to business days.
    pub calendar: Calendar,
}

/// What to reconcile.
pub struct CheckRequest<'a> {
    pub kind: CheckKind,
    /// Header values this node knows: AdmDivCode and StYear (the day's vouchers are those
    /// of this division and year), and the type's own fields (3502: TreCode and
    /// PayBankCode; 3507: ClearBankCode, ClearAccNo; 5501–5503: PayBankCode). Fields the
    /// type does not have and receipt (X*) fields are ignored.
    pub template: &'a Fields,
    /// The business day.
    pub date: BizDate,
    /// The reconciled type for 3502 and 5503 (e.g. 2301, 5201).
    pub e_voucher_type: Option<&'a str>,
    /// VoucherCheckNo (1..=[`CHECK_NO_MAX_LEN`] of letters, digits, `-`, `_`); packet `n`
    /// is VoucherNo `{check_no}{n:04}`.
    pub check_no: &'a str,
    /// Most details in one packet (1..=[`PACKET_DETAILS_MAX`]).
    pub packet_details: usize,
    /// 3507 only: where PlanAmt comes from (`None`: 0.00).
    pub plan_notices: Option<PlanNotices<'a>>,
}

/// What [`send_check`] wrote and sent.
#[derive(Debug)]
pub struct Sent {
    /// One record per packet, in packet order.
    pub records: Vec<VoucherRecord>,
    /// The details listed over all packets.
    pub details: usize,
}

/// A packet's voucher: the type's header in its registry order.
fn packet_voucher(
    registry: &Registry,
    kind: CheckKind,
    values: &BTreeMap<&str, String>,
    template: &Fields,
    details: Vec<Fields>,
) -> Result<Voucher, ReconcileError> {
    let ty = registry
        .get(kind.vt_code())
        .ok_or_else(|| invalid(format!("no type {} in the registry", kind.vt_code())))?;
    let mut header = Fields::new();
    for spec in &ty.header {
        let name = spec.name.as_str();
        if let Some(v) = values.get(name) {
            header.set(name, v.clone());
        } else if !spec.receipt
            && let Some(v) = template.value(name)
        {
            header.set(name, v);
        }
    }
    let numbered = details
        .into_iter()
        .enumerate()
        .map(|(i, d)| {
            let mut f = Fields::new();
            f.set("Id", (i + 1).to_string());
            for (n, v) in d.iter() {
                f.set(n, v);
            }
            f
        })
        .collect();
    Ok(Voucher {
        header,
        details: numbered,
    })
}

fn check_voucher(
    registry: &Registry,
    voucher: &Voucher,
    today: BizDate,
    flag: VoucherFlag,
) -> Result<(), ReconcileError> {
    let problems = validate(voucher, registry, &Context { today, flag });
    if problems.is_empty() {
        return Ok(());
    }
    Err(invalid(format!(
        "{} {} does not validate: {}",
        voucher.vt_code(),
        voucher.key().voucher_no,
        problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    )))
}

/// PBOC (3502, 3507) or finance (5501–5503) builds the day's request for one bank from its
/// own library — one packet per `packet_details` details, an empty day as one packet with
/// AllNum 0 — checks each packet against the registry, stamps it with its 业务专用章, writes
/// it and sends it to the bank; the outbox delivers. Sending the same day again with the same
/// `check_no` changes nothing; if the day changed meanwhile, the library refuses the new
/// content ([`LibraryError::Conflict`]): use another `check_no`.
///
/// # Errors
/// [`ReconcileError::Invalid`] for a bad request or a stored voucher that cannot be read;
/// [`ReconcileError::Stamping`], [`ReconcileError::Library`], [`ReconcileError::Store`].
pub async fn send_check(
    store: &Store,
    registry: &Registry,
    origin: &Originator<'_>,
    request: &CheckRequest<'_>,
    now: u64,
) -> Result<Sent, ReconcileError> {
    let kind = request.kind;
    let check_no = request.check_no;
    if check_no.len() > CHECK_NO_MAX_LEN || check_no.parse::<VoucherNo>().is_err() {
        return Err(invalid(format!(
            "check_no must be 1..={CHECK_NO_MAX_LEN} letters, digits, '-' or '_': {check_no:?}"
        )));
    }
    if !(1..=PACKET_DETAILS_MAX).contains(&request.packet_details) {
        return Err(invalid(format!(
            "packet_details must be 1..={PACKET_DETAILS_MAX}"
        )));
    }
    if kind.names_type() != request.e_voucher_type.is_some() {
        return Err(invalid(format!(
            "a {} {} EVoucherType",
            kind.vt_code(),
            if kind.names_type() {
                "needs an"
            } else {
                "has no"
            }
        )));
    }
    let tenant = |name: &str| {
        request
            .template
            .value(name)
            .ok_or_else(|| invalid(format!("the template has no {name}")))
    };
    let scope = Scope {
        adm_div_code: tenant("AdmDivCode")?,
        st_year: tenant("StYear")?,
        counterparty: origin.route.to,
        window: day_window(origin.calendar, request.date),
        e_voucher_type: request.e_voucher_type,
        plan: request.plan_notices,
    };
    let details = our_details(store, registry, kind, &scope).await?;
    let total = details.len();
    let chunks: Vec<Vec<Fields>> = if details.is_empty() {
        vec![Vec::new()]
    } else {
        details
            .chunks(request.packet_details)
            .map(<[Fields]>::to_vec)
            .collect()
    };
    let packets = u32::try_from(chunks.len())
        .ok()
        .filter(|n| *n <= PACKETS_MAX)
        .ok_or_else(|| {
            invalid(format!(
                "more than {PACKETS_MAX} packets: raise packet_details"
            ))
        })?;
    let ty = registry
        .get(kind.vt_code())
        .ok_or_else(|| invalid(format!("no type {} in the registry", kind.vt_code())))?;
    let sum_field = ty
        .sums
        .first()
        .map(|(_, d)| d.clone())
        .ok_or_else(|| invalid(format!("type {} has no sum rule", kind.vt_code())))?;
    let today = business_date(origin.calendar, now)?;
    let date = request.date.to_string();
    let mut vouchers = Vec::with_capacity(chunks.len());
    for (i, chunk) in chunks.into_iter().enumerate() {
        let n = i + 1;
        let voucher_no = format!("{check_no}{n:04}");
        let mut all_amt = Amount::ZERO;
        for d in &chunk {
            let a = amount_in(d, &sum_field, "").map_err(invalid)?;
            add_to(&mut all_amt, a)?;
        }
        let mut values: BTreeMap<&str, String> = BTreeMap::new();
        values.insert("Id", voucher_no.clone());
        values.insert("VtCode", kind.vt_code().to_owned());
        values.insert("VouDate", date.clone());
        values.insert("VoucherNo", voucher_no);
        if kind == CheckKind::Vouchers {
            values.insert("CheckDate", date.clone());
        } else {
            values.insert("BeginDate", date.clone());
            values.insert("EndDate", date.clone());
        }
        if let Some(t) = request.e_voucher_type {
            values.insert("EVoucherType", t.to_owned());
        }
        values.insert("AllNum", chunk.len().to_string());
        values.insert("AllAmt", all_amt.to_string());
        values.insert("VoucherCheckNo", check_no.to_owned());
        values.insert("ChildPackNum", packets.to_string());
        values.insert("CurPackNo", n.to_string());
        let voucher = packet_voucher(registry, kind, &values, request.template, chunk)?;
        check_voucher(registry, &voucher, today, VoucherFlag::Original)?;
        vouchers.push(voucher);
    }
    let mut records = Vec::with_capacity(vouchers.len());
    for voucher in vouchers {
        records.push(
            stamp_write_send::<ReconcileError>(
                store,
                ty,
                voucher,
                origin.suite,
                &[origin.sealer],
                (origin.route.me, origin.route.to),
                origin.route.actor,
                now,
            )
            .await?,
        );
    }
    Ok(Sent {
        records,
        details: total,
    })
}

// ---------------------------------------------------------------------------------------
// 2. The bank compares and answers
// ---------------------------------------------------------------------------------------

/// The bank's reconciliation clerk.
pub struct Answerer<'a> {
    /// The signature suite.
    pub suite: Suite,
    /// The bank's 业务专用章 (a [`Signer::Seal`]): receipts' position 11, 2507's position 1.
    pub sealer: &'a Signer<'a>,
    /// The bank's organisation code.
    pub me: &'a str,
    /// The user or worker recorded on every event.
    pub actor: &'a str,
    /// How `now` maps to business days.
    pub calendar: Calendar,
}

/// What became of one read request.
#[derive(Debug)]
pub enum CheckOutcome {
    /// Compared and answered: every packet's receipt (or 2507) is sealed and sent with the
    /// result.
    Answered {
        /// The packets answered, in packet order.
        keys: Vec<VoucherKey>,
        /// The comparison with its full list of differences (XCheckReason may be cut).
        summary: Summary,
    },
    /// A packet held at 校验中 until the others arrive.
    Waiting {
        key: VoucherKey,
        /// Packets here so far.
        have: u32,
        /// ChildPackNum.
        of: u32,
    },
    /// Returned (退回) with the reasons: the request could not be compared. All its waiting
    /// packets are returned with it.
    Returned {
        keys: Vec<VoucherKey>,
        reasons: Vec<String>,
    },
    /// Unreadable: refused (签收失败).
    Refused { key: VoucherKey, reason: String },
    /// Not a reconciliation request: left for its own flow.
    NotMine { key: VoucherKey, leg: Leg },
}

/// A waiting packet of a request.
struct Packet {
    record: VoucherRecord,
    body: EnvelopeBody,
    head: RequestHead,
}

/// Returns every packet (at 校验中) with the reasons.
async fn give_back(
    store: &Store,
    packets: &[Packet],
    reasons: Vec<String>,
    actor: &str,
    now: u64,
) -> Result<CheckOutcome, ReconcileError> {
    let library = store.library();
    let reason = reasons.join("; ");
    for p in packets {
        let key = &p.record.key;
        library
            .process(
                key,
                Leg::Original,
                ProcessingEvent::FailValidation,
                Some(&reason),
                actor,
                now,
            )
            .await?;
        library
            .return_voucher(key, Leg::Original, &reason, actor, now)
            .await?;
    }
    Ok(CheckOutcome::Returned {
        keys: packets.iter().map(|p| p.record.key.clone()).collect(),
        reasons,
    })
}

/// The other packets of `current`'s request waiting at 校验中, by packet number, and the
/// VoucherNo of one that claims `current`'s own number, if any.
async fn waiting_siblings(
    store: &Store,
    current: &Packet,
    now: u64,
) -> Result<(BTreeMap<u32, Packet>, Option<String>), ReconcileError> {
    let mut packets = BTreeMap::new();
    let record = &current.record;
    let query = DayQuery {
        vt_code: &record.key.vt_code,
        leg: Leg::Original,
        counterparty: &record.sender,
        window: Window {
            from: record.created_at.saturating_sub(PACKET_SPREAD),
            to: now.max(record.created_at).saturating_add(1),
        },
    };
    let daybook = store.daybook();
    let mut after = 0;
    let mut clash = None;
    loop {
        let page = daybook.vouchers(&query, after, DAYBOOK_PAGE_MAX).await?;
        for r in page.items {
            if r.direction != Direction::Received
                || r.seq == record.seq
                || r.processing != Some(Processing::Validating)
                || r.key.adm_div_code != record.key.adm_div_code
                || r.key.st_year != record.key.st_year
            {
                continue;
            }
            let Ok(body) = stored_body(&r.body, VoucherFlag::Original) else {
                continue;
            };
            let Ok(head) = request_head(&body.voucher) else {
                continue;
            };
            let c = &current.head;
            if head.check_no != c.check_no
                || head.packets != c.packets
                || head.begin != c.begin
                || head.end != c.end
                || head.e_voucher_type != c.e_voucher_type
            {
                continue;
            }
            if head.packet == c.packet {
                clash = Some(r.key.voucher_no.clone());
            }
            packets.entry(head.packet).or_insert(Packet {
                record: r,
                body,
                head,
            });
        }
        match page.next {
            Some(next) => after = next,
            None => break,
        }
    }
    Ok((packets, clash))
}

/// The bank handles one read reconciliation request (3502, 3507, 5501, 5502, 5503): signs
/// for it, checks it against the registry, and once every packet of the request is here
/// compares the request's entries with its own day's ([`entries_of`], [`reconcile`]) and
/// answers each packet — a sealed receipt with XCheckResult, XDiffNum and XCheckReason, or
/// for a 3507 a stamped 2507 with the same fields — sent back to the originator. A request
/// that does not validate or whose entries are refused is returned (退回) with the reasons;
/// an unreadable one is refused (签收失败).
///
/// # Errors
/// [`ReconcileError::Invalid`] when this library's own vouchers cannot be read (the request
/// stays at 校验中); [`ReconcileError::Stamping`], [`ReconcileError::Library`],
/// [`ReconcileError::Store`].
pub async fn on_check_request(
    store: &Store,
    registry: &Registry,
    ctx: &Answerer<'_>,
    record: &VoucherRecord,
    now: u64,
) -> Result<CheckOutcome, ReconcileError> {
    let library = store.library();
    let key = &record.key;
    let Some(kind) = CheckKind::of(&key.vt_code)
        .filter(|_| record.leg == Leg::Original && record.direction == Direction::Received)
    else {
        return Ok(CheckOutcome::NotMine {
            key: key.clone(),
            leg: record.leg,
        });
    };
    let body = match stored_body(&record.body, VoucherFlag::Original) {
        Ok(body) => body,
        Err(e) => {
            let reason = e.to_string();
            library
                .refuse(key, Leg::Original, &reason, ctx.actor, now)
                .await?;
            return Ok(CheckOutcome::Refused {
                key: key.clone(),
                reason,
            });
        }
    };
    library
        .acknowledge(key, Leg::Original, ctx.actor, now)
        .await?;
    library
        .process(
            key,
            Leg::Original,
            ProcessingEvent::StartValidation,
            None,
            ctx.actor,
            now,
        )
        .await?;
    let today = business_date(ctx.calendar, now)?;
    let mut record = record.clone();
    record.processing = Some(Processing::Validating);
    let mut problems: Vec<String> = validate(
        &body.voucher,
        registry,
        &Context {
            today,
            flag: VoucherFlag::Original,
        },
    )
    .iter()
    .map(ToString::to_string)
    .collect();
    let head = match request_head(&body.voucher) {
        Ok(head) => Some(head),
        Err(more) => {
            problems.extend(more);
            None
        }
    };
    if let Some(t) = head.as_ref().and_then(|h| h.e_voucher_type.as_deref())
        && registry.get(t).and_then(|ty| ty.amount.as_ref()).is_none()
    {
        problems.push(format!("EVoucherType {t} is not a type with an amount"));
    }
    let head = match head {
        Some(head) if problems.is_empty() => head,
        _ => {
            let only = [Packet {
                record,
                body,
                head: RequestHead {
                    kind,
                    begin: today,
                    end: today,
                    e_voucher_type: None,
                    check_no: key.voucher_no.clone(),
                    packets: 1,
                    packet: 1,
                },
            }];
            return give_back(store, &only, problems, ctx.actor, now).await;
        }
    };
    let current = Packet { record, body, head };
    let packets: Vec<Packet> = if current.head.packets == 1 {
        vec![current]
    } else {
        let (mut found, clash) = waiting_siblings(store, &current, now).await?;
        if let Some(other) = clash {
            // The duplicate alone goes back; the packets already here keep waiting.
            let reason = format!(
                "packet {} of {} was already received as {other}",
                current.head.packet, current.head.check_no
            );
            return give_back(store, &[current], vec![reason], ctx.actor, now).await;
        }
        let (number, of) = (current.head.packet, current.head.packets);
        found.insert(number, current);
        let have = u32::try_from(found.len()).unwrap_or(u32::MAX);
        if have < of {
            return Ok(CheckOutcome::Waiting {
                key: key.clone(),
                have,
                of,
            });
        }
        found.into_values().collect()
    };
    let first = &packets[0];
    let details: Vec<Fields> = packets
        .iter()
        .flat_map(|p| p.body.voucher.details.iter().cloned())
        .collect();
    let theirs = match entries_of(kind, &details) {
        Ok(entries) => entries,
        Err(reasons) => return give_back(store, &packets, reasons, ctx.actor, now).await,
    };
    let scope = Scope {
        adm_div_code: &first.record.key.adm_div_code,
        st_year: &first.record.key.st_year,
        counterparty: &first.record.sender,
        window: span_window(ctx.calendar, first.head.begin, first.head.end),
        e_voucher_type: first.head.e_voucher_type.as_deref(),
        plan: None,
    };
    let ours_details = our_details(store, registry, kind, &scope).await?;
    let ours = entries_of(kind, &ours_details).map_err(|p| invalid(p.join("; ")))?;
    let summary = match reconcile(ours, theirs) {
        Ok(summary) => summary,
        Err(refused) => {
            let reasons = refused.0.iter().map(ToString::to_string).collect();
            return give_back(store, &packets, reasons, ctx.actor, now).await;
        }
    };
    let mut keys = Vec::with_capacity(packets.len());
    for packet in &packets {
        answer_packet(store, registry, ctx, packet, &summary, today, now).await?;
        keys.push(packet.record.key.clone());
    }
    Ok(CheckOutcome::Answered { keys, summary })
}

/// Takes one compared packet through to its answer.
async fn answer_packet(
    store: &Store,
    registry: &Registry,
    ctx: &Answerer<'_>,
    packet: &Packet,
    summary: &Summary,
    today: BizDate,
    now: u64,
) -> Result<(), ReconcileError> {
    let library = store.library();
    let key = &packet.record.key;
    for event in [
        ProcessingEvent::PassValidation,
        ProcessingEvent::Check,
        ProcessingEvent::Approve,
        ProcessingEvent::Book,
    ] {
        library
            .process(key, Leg::Original, event, None, ctx.actor, now)
            .await?;
    }
    if packet.head.kind == CheckKind::Clearing {
        let mut reply = packet.body.voucher.clone();
        reply.header.set("VtCode", VT_2507);
        fill_result(&mut reply.header, summary);
        check_voucher(registry, &reply, today, VoucherFlag::Original)?;
        let ty = stamping::type_of(registry, &reply)?;
        stamp_write_send::<ReconcileError>(
            store,
            ty,
            reply,
            ctx.suite,
            &[ctx.sealer],
            (ctx.me, packet.record.sender.as_str()),
            ctx.actor,
            now,
        )
        .await?;
        return Ok(());
    }
    let mut receipt = packet.body.clone();
    receipt.flag = VoucherFlag::Receipt;
    fill_result(&mut receipt.voucher.header, summary);
    check_voucher(registry, &receipt.voucher, today, VoucherFlag::Receipt)?;
    let ty = stamping::type_of(registry, &receipt.voucher)?;
    let returner = Returner {
        suite: ctx.suite,
        sealer: ctx.sealer,
        me: ctx.me,
        actor: ctx.actor,
    };
    seal_and_return::<ReconcileError>(store, ty, &packet.record, &mut receipt, &returner, now).await
}

// ---------------------------------------------------------------------------------------
// 3. The originator takes the answer
// ---------------------------------------------------------------------------------------

/// Who takes answers at the originator.
pub struct AnswerTaker<'a> {
    /// The user or worker recorded on every event.
    pub actor: &'a str,
}

/// What became of one read answer.
#[derive(Debug)]
pub enum AnswerOutcome {
    /// The answer matches a request this node sent: the request is 已收到对方回单 (12), the
    /// answer processed (处理成功).
    Taken {
        /// The request (3502, 3507, 5501–5503) answered.
        request: VoucherKey,
        result: CheckResult,
    },
    /// The answer does not match a request of ours, or its result fields are bad: left at
    /// 校验失败 with the reason.
    Failed { key: VoucherKey, reason: String },
    /// Not an answer to a reconciliation: left for its own flow.
    NotMine { key: VoucherKey, leg: Leg },
}

/// PBOC or finance handles one read answer: the receipt of a 3502/5501/5502/5503, or a 2507
/// answering a 3507. It is signed for and checked against the request this node sent to
/// the answer's sender (same key, sent there; the result fields readable); the request is
/// then marked answered (已收到对方回单) and the answer processed, and the result is
/// returned. A mismatching answer is left at 校验失败 with the reason.
///
/// # Errors
/// [`ReconcileError::Library`], [`ReconcileError::Store`].
pub async fn on_check_answer(
    store: &Store,
    ctx: &AnswerTaker<'_>,
    record: &VoucherRecord,
    now: u64,
) -> Result<AnswerOutcome, ReconcileError> {
    let key = &record.key;
    let is_reply = key.vt_code == VT_2507 && record.leg == Leg::Original;
    let is_receipt = record.leg == Leg::Receipt
        && CheckKind::of(&key.vt_code).is_some_and(|k| k != CheckKind::Clearing);
    if record.direction != Direction::Received || !(is_reply || is_receipt) {
        return Ok(AnswerOutcome::NotMine {
            key: key.clone(),
            leg: record.leg,
        });
    }
    let request = VoucherKey {
        vt_code: if is_reply {
            VT_3507.to_owned()
        } else {
            key.vt_code.clone()
        },
        ..key.clone()
    };
    let library = store.library();
    let original = library.status(&request, Leg::Original).await?;
    let checked = match &original {
        None => Err(format!("no request {request} of ours for this answer")),
        Some(sent) if sent.direction != Direction::Sent || sent.receiver != record.sender => Err(
            format!("the request {request} was not sent to {}", record.sender),
        ),
        Some(_) => stored_body(&record.body, flag_of(record.leg))
            .map_err(|e| e.to_string())
            .and_then(|body| {
                if body.voucher.key() != *key {
                    return Err("the answer's voucher is not the one stored".into());
                }
                read_result(&body.voucher.header)
            }),
    };
    library.acknowledge(key, record.leg, ctx.actor, now).await?;
    library
        .process(
            key,
            record.leg,
            ProcessingEvent::StartValidation,
            None,
            ctx.actor,
            now,
        )
        .await?;
    let result = match checked {
        Ok(result) => result,
        Err(reason) => {
            library
                .process(
                    key,
                    record.leg,
                    ProcessingEvent::FailValidation,
                    Some(&reason),
                    ctx.actor,
                    now,
                )
                .await?;
            return Ok(AnswerOutcome::Failed {
                key: key.clone(),
                reason,
            });
        }
    };
    // The answer proves the bank signed for the request: record it, then the answer.
    if let Some(sent) = &original
        && matches!(
            sent.exchange,
            Exchange::NotReceived | Exchange::Received | Exchange::Acknowledged
        )
    {
        super::common::receipt_proves_delivery::<ReconcileError>(
            store,
            &request,
            Some(sent),
            ctx.actor,
            now,
        )
        .await?;
    }
    for event in [
        ProcessingEvent::PassValidation,
        ProcessingEvent::Check,
        ProcessingEvent::Approve,
        ProcessingEvent::Book,
    ] {
        library
            .process(key, record.leg, event, None, ctx.actor, now)
            .await?;
    }
    Ok(AnswerOutcome::Taken { request, result })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(no: &str, fen: i64, state: ProState) -> Entry {
        Entry {
            no: no.into(),
            amount: Amount::from_fen(fen).unwrap(),
            state,
        }
    }

    fn n(no: &str, fen: i64) -> Entry {
        e(no, fen, ProState::Normal)
    }

    #[test]
    fn matching_sides_agree() {
        let s = reconcile(
            vec![n("B", 200), n("A", 100)],
            vec![n("A", 100), n("B", 200)],
        )
        .unwrap();
        assert!(s.agrees());
        assert_eq!(s.matched, 2);
        assert_eq!(
            s.ours,
            Tally {
                count: 2,
                sum_fen: 300
            }
        );
        assert_eq!(s.ours, s.theirs);
        assert_eq!((s.check_result(), s.diff_num()), ("0", 0));
        assert_eq!(s.check_reason(), "");
    }

    #[test]
    fn empty_days_agree_and_an_empty_side_misses_everything() {
        let s = reconcile(Vec::new(), Vec::new()).unwrap();
        assert!(s.agrees());
        assert_eq!((s.matched, s.ours.count, s.theirs.count), (0, 0, 0));
        let s = reconcile(Vec::new(), vec![n("A", 1), n("B", 2)]).unwrap();
        assert_eq!(s.diff_num(), 2);
        assert!(
            s.differences
                .iter()
                .all(|d| d.kind == DiffKind::MissingOurs)
        );
        let s = reconcile(vec![n("A", 1)], Vec::new()).unwrap();
        assert_eq!(s.differences[0].kind, DiffKind::MissingTheirs);
        assert_eq!(s.differences[0].theirs, None);
    }

    #[test]
    fn every_kind_of_difference_is_listed_in_voucher_order() {
        let ours = vec![n("E", 5), n("D", 100), n("C", 7), n("A", 1), n("F", 9)];
        let theirs = vec![
            n("E", 5),
            n("D", 101),
            e("C", 7, ProState::Returned),
            n("B", 2),
            e("F", 8, ProState::Returned),
        ];
        let s = reconcile(ours, theirs).unwrap();
        let got: Vec<(&str, DiffKind)> = s
            .differences
            .iter()
            .map(|d| (d.no.as_str(), d.kind))
            .collect();
        assert_eq!(
            got,
            [
                ("A", DiffKind::MissingTheirs),
                ("B", DiffKind::MissingOurs),
                ("C", DiffKind::StateDiffers),
                ("D", DiffKind::AmountDiffers),
                ("F", DiffKind::AmountAndStateDiffer),
            ]
        );
        assert_eq!(s.matched, 1);
        assert_eq!(
            s.ours,
            Tally {
                count: 5,
                sum_fen: 122
            }
        );
        assert_eq!(
            s.theirs,
            Tally {
                count: 5,
                sum_fen: 123
            }
        );
        let d = &s.differences[3];
        assert_eq!(d.ours.unwrap().amount.fen(), 100);
        assert_eq!(d.theirs.unwrap().amount.fen(), 101);
        assert_eq!(d.to_string(), "D 金额不符(本方1.00 对方1.01)");
        assert_eq!(s.differences[0].to_string(), "A 对方无(本方0.01正常)");
        assert_eq!(
            s.differences[2].to_string(),
            "C 状态不符(本方正常 对方退回)"
        );
        assert_eq!(s.check_result(), "1");
        assert_eq!(
            s.check_reason(),
            "笔数 本方5 对方5, 金额 本方1.22 对方1.23; A 对方无(本方0.01正常); \
             B 本方无(对方0.02正常); C 状态不符(本方正常 对方退回); \
             D 金额不符(本方1.00 对方1.01); F 金额状态不符(本方0.09正常 对方0.08退回)"
        );
    }

    #[test]
    fn duplicates_and_blank_numbers_are_refused_all_at_once() {
        let refused = reconcile(
            vec![n("A", 1), n("A", 2), n("A", 3), n(" ", 4)],
            vec![n("B", 1), n("B", 1)],
        )
        .unwrap_err();
        assert_eq!(
            refused.0,
            vec![
                InputProblem::BlankNo {
                    side: Side::Ours,
                    position: 4
                },
                InputProblem::Duplicate {
                    side: Side::Ours,
                    no: "A".into(),
                    times: 3
                },
                InputProblem::Duplicate {
                    side: Side::Theirs,
                    no: "B".into(),
                    times: 2
                },
            ]
        );
        assert!(refused.to_string().contains("voucher A is listed 3 times"));
    }

    #[test]
    fn a_long_reason_is_cut_within_the_field_and_says_how_many() {
        let ours: Vec<Entry> = (0..50).map(|i| n(&format!("V{i:04}"), 100)).collect();
        let s = reconcile(ours, Vec::new()).unwrap();
        let reason = s.check_reason();
        assert!(gbk_len(&reason) <= CHECK_REASON_MAX_GBK_BYTES, "{reason}");
        assert!(reason.ends_with("…共50笔不符"), "{reason}");
        assert!(reason.contains("V0000"), "{reason}");
        assert_eq!(s.differences.len(), 50);
        // A short list is not cut.
        let s = reconcile(vec![n("V1", 1)], Vec::new()).unwrap();
        assert!(!s.check_reason().contains('…'));
    }

    #[test]
    fn bench_days_differ_as_generated() {
        let (d, s) = bench_reconcile(10_000, 7);
        assert!(d.as_secs() < 600);
        // Per thousand: one missing theirs, one amount, one state, one extra of theirs.
        let count = |k| s.differences.iter().filter(|d| d.kind == k).count();
        assert_eq!(count(DiffKind::MissingTheirs), 10);
        assert_eq!(count(DiffKind::AmountDiffers), 10);
        assert_eq!(count(DiffKind::StateDiffers), 10);
        assert_eq!(count(DiffKind::MissingOurs), 10);
        assert_eq!(s.matched, 10_000 - 30);
        assert_eq!(bench_reconcile(10_000, 7).1, s);
    }

    #[test]
    fn aggregates_compare_non_zero_columns_by_key() {
        let row = |func: &str, pay: &str, refund: &str| {
            detail(&[
                ("PayBankCode", "102551000015".into()),
                ("ExpFuncCode", func.into()),
                ("PayTypeCode", "001001".into()),
                ("PayAmt", pay.into()),
                ("PlanAmt", "9.00".into()),
                ("RefundAmt", refund.into()),
                ("PlanRemainAmt", "0.00".into()),
            ])
        };
        let entries = entries_of(
            CheckKind::Clearing,
            &[
                row("2010101", "5.00", "0.00"),
                row("2010102", "0.00", "-1.00"),
            ],
        )
        .unwrap();
        let nos: Vec<&str> = entries.iter().map(|e| e.no.as_str()).collect();
        assert_eq!(
            nos,
            [
                "102551000015/2010101/11/PayAmt",
                "102551000015/2010102/11/RefundAmt"
            ]
        );
        let bad = entries_of(
            CheckKind::Vouchers,
            &[detail(&[
                ("VoucherNo", "A".into()),
                ("Amt", "x".into()),
                ("ProState", "2".into()),
            ])],
        )
        .unwrap_err();
        assert_eq!(bad, ["detail 1: Amt is not an amount: x"]);
        let bad = entries_of(
            CheckKind::Vouchers,
            &[detail(&[
                ("VoucherNo", "A".into()),
                ("Amt", "1.00".into()),
                ("ProState", "2".into()),
            ])],
        )
        .unwrap_err();
        assert_eq!(bad, ["detail 1: ProState must be 0 or 1, got 2"]);
    }

    #[test]
    fn a_business_date_is_its_local_day() {
        let cal = Calendar::default();
        let date: BizDate = "20250115".parse().unwrap();
        let w = day_window(cal, date);
        // 2025-01-15 00:00 at UTC+8 is 2025-01-14 16:00 UTC.
        assert_eq!(w.from, 1_736_870_400);
        assert_eq!(w.to - w.from, 86_400);
        assert_eq!(business_date(cal, w.from).unwrap(), date);
        assert_eq!(business_date(cal, w.to - 1).unwrap(), date);
        assert_ne!(business_date(cal, w.to).unwrap(), date);
        let end: BizDate = "20250117".parse().unwrap();
        assert_eq!(span_window(cal, date, end).to, w.from + 3 * 86_400);
    }

    #[test]
    fn results_round_trip_and_bad_ones_are_named() {
        let s = reconcile(vec![n("A", 1)], vec![n("A", 2)]).unwrap();
        let mut h = Fields::new();
        fill_result(&mut h, &s);
        let r = read_result(&h).unwrap();
        assert_eq!((r.agrees, r.diff_num), (false, 1));
        assert!(r.reason.contains("A 金额不符"));
        let ok = reconcile(vec![n("A", 1)], vec![n("A", 1)]).unwrap();
        fill_result(&mut h, &ok);
        assert!(read_result(&h).unwrap().agrees);
        assert_eq!(h.get("XCheckReason"), None);
        h.set("XDiffNum", "2");
        assert!(read_result(&h).is_err());
        h.set("XCheckResult", "3");
        assert!(read_result(&h).is_err());
    }
}
