//! The agent bank's desk (代理银行), issue 6 part 4: incoming vouchers, exceptions needing a
//! person, payments, clearing requests, receipts, reconciliation.
//!
//! Routes, under `/o/{org}/bank`:
//!
//! - `GET ` (incoming): the 5201, 8202 and 5105 originals this bank received, newest last,
//!   with their status (状态) and processing state (处理状态);
//! - `GET /exceptions`: received vouchers the worker could not take through: stuck read
//!   (已读取), refused (签收失败), returned (已退回) or stopped in processing (核算失败,
//!   待补录 …), with their reasons;
//! - `GET /v/{adm_div}/{year}/{vt_code}/{voucher_no}`: one voucher: its fields, the X
//!   fields of its receipt, its history; for a checker (审核) an exception's actions:
//!   `POST …/return` (退回, through the same returns flow as the API) and `POST …/refuse`
//!   (签收失败, the library's step), each with a required reason; for a payment waiting for
//!   its payee's bank number (待补录), `POST …/complete` (补录收款行行号: 12 digits, then
//!   the payment is made, [`Party::complete_payee_bank`]), also offered on the exceptions
//!   page;
//! - `GET /payments`: payments made (receipts written for 5201/8202), today's count and sum;
//! - `GET /clearing`: clearing requests (2301/2302) sent, with PBOC's receipt;
//!   `POST /clearing/request` (a checker): send the clearing requests due now
//!   ([`Party::request_clearing`]);
//! - `GET /receipts`: the receipts this bank sent;
//! - `GET /reconcile`: reconciliation requests (3502, 3507, 5501–5503) and the results
//!   this bank answered.
//!
//! Every list is a page of at most [`PAGE`] vouchers of the user's divisions (a `next`
//! link carries the cursor); a voucher outside them answers 404, as in the API.
//!
//! The voucher list, the detail page and the pager are shared with the PBOC desk and the
//! auditor's read-only list ([`super::pboc`], [`super::admin`]).

use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use axum::routing::{get, post};
use guoku_domain::{Amount, BankNo, gbk_len};
use guoku_seal::pki::OrgRole;
use guoku_store::library::{Direction, LibraryError, REASON_MAX_GBK_BYTES, VoucherRecord};
use guoku_store::{Calendar, Store};
use guoku_voucher::lifecycle::{Exchange, Leg, Processing, ProcessingEvent};
use guoku_voucher::{Registry, VoucherKey};
use time::{OffsetDateTime, UtcOffset};

use super::desk::{Desk, FieldErrors, Fields, body};
use super::i18n::{Lang, text_table};
use super::{Inner, PortalError, Shared, lang_of, respond};
use crate::access::Action;
use crate::api::view::header_fields;
use crate::exchange::Transport;
use crate::flows::direct::DirectError;
use crate::flows::returns::{self, ReturnsCtx};
use crate::party::{Party, PartyError};

/// Most vouchers one page lists.
pub(super) const PAGE: u32 = 50;
/// Most receipt legs read to sum today's payments (the sum says "at least" beyond it).
const TODAY_SCAN_MAX: usize = 2_000;

/// What the bank receives to pay or book: direct and authorized payments, unit quota
/// notices.
const INCOMING: [&str; 3] = ["5201", "8202", "5105"];
/// The receipts the bank writes.
const RECEIPTS: [&str; 7] = ["5201", "8202", "5105", "3502", "5501", "5502", "5503"];
/// Clearing requests.
pub(super) const CLEARING: [&str; 2] = ["2301", "2302"];
/// Reconciliation requests a bank answers.
const CHECKS: [&str; 5] = ["3502", "3507", "5501", "5502", "5503"];
/// The states of a received leg.
pub(super) const RECEIVED_STATES: [Exchange; 4] = [
    Exchange::Received,
    Exchange::Acknowledged,
    Exchange::AckFailed,
    Exchange::Returned,
];

text_table! {
    /// The agent bank's pages, and what the voucher lists and pages show on every desk.
    BankTexts, BANK_ZH, BANK_EN;
    nav_incoming: "来账凭证", "Incoming vouchers";
    nav_exceptions: "异常处理", "Exceptions";
    nav_payments: "支付处理", "Payments";
    nav_clearing: "申请划款", "Clearing requests";
    nav_receipts: "回单", "Receipts";
    nav_reconcile: "对账", "Reconciliation";
    incoming_hint: "本行收到的财政直接支付凭证（5201）、财政授权支付凭证（8202）和授权额度通知单（5105）。", "The direct payment (5201), authorized payment (8202) and quota notice (5105) vouchers this bank received.";
    exceptions_hint: "工作进程未能处理完毕、需要人工处理的凭证：已读取未处理、签收失败、已退回或处理中止（含待补录），附原因。审核岗可退回（须填原因）或签收失败，待补录的凭证补录收款行行号后即支付。", "Vouchers the worker could not take through and a person must look at: read but not processed, refused, returned, or stopped in processing (awaiting completion among them), with the reason. A checker may return them (with a reason) or refuse them, and pays a voucher awaiting completion by completing its payee bank number.";
    payments_hint: "本行已支付并返回回单的凭证。", "Vouchers this bank paid and returned a receipt for.";
    paid_today: "今日支付", "Paid today";
    paid_count: "笔数", "Count";
    paid_sum: "金额合计", "Total";
    at_least: "（至少，仅统计最近的回单）", "(at least: only the latest receipts are counted)";
    clearing_hint: "本行向人民银行国库发送的申请划款凭证（2301）和申请退款凭证（2302），及国库回单。", "The clearing requests (2301) and refund clearing requests (2302) this bank sent to the PBOC treasury, with the treasury's receipts.";
    request_clearing: "立即申请划款", "Request clearing now";
    request_clearing_hint: "为已支付并回单、尚未申请划款的凭证生成并发送申请划款凭证（2301）。", "Writes and sends clearing requests (2301) for the paid and receipted vouchers not yet claimed.";
    clearing_sent: "已发送申请划款凭证：", "Clearing requests sent: ";
    receipts_hint: "本行发出的回单及其状态。", "The receipts this bank sent, and their status.";
    reconcile_hint: "人民银行国库和财政发来的对账请求（3502、3507、5501–5503），及本行的对账结果。", "The reconciliation requests from the PBOC treasury and finance (3502, 3507, 5501–5503), and this bank's results.";
    col_type: "凭证类型", "Type";
    col_no: "凭证号", "Voucher number";
    col_div: "行政区划", "Division";
    col_peer: "对方机构", "Counterparty";
    col_status: "状态", "Status";
    col_processing: "处理状态", "Processing";
    col_reason: "原因", "Reason";
    col_amount: "金额", "Amount";
    col_at: "时间", "Time";
    col_receipt: "回单", "Receipt";
    col_result: "对账结果", "Result";
    empty: "暂无记录。", "Nothing here.";
    next_page: "下一页", "Next page";
    first_page: "第一页", "First page";
    leg_original: "原凭证", "Original";
    leg_receipt: "回单", "Receipt";
    unread: "未读取", "not read";
    detail_title: "凭证详情", "Voucher";
    fields_title: "凭证要素", "Fields";
    receipt_fields_title: "回单要素（X 字段）", "Receipt fields (X fields)";
    no_receipt: "暂无回单。", "No receipt yet.";
    history_title: "处理记录", "History";
    col_actor: "操作人", "By";
    col_action: "操作", "Action";
    col_from: "原状态", "From";
    col_to: "新状态", "To";
    actions_title: "人工处理", "Act on this voucher";
    reason: "原因", "Reason";
    return_button: "退回", "Return";
    refuse_button: "签收失败", "Refuse";
    return_hint: "退回：凭证已签收但尚未支付时，退回发送方并说明原因。", "Return: a voucher acknowledged but not paid goes back to its sender with the reason.";
    refuse_hint: "签收失败：已读取但未签收的凭证，拒绝签收并说明原因。", "Refuse: a voucher read but not acknowledged is refused with the reason.";
    reason_required: "请填写原因。", "A reason is required.";
    reason_too_long: "原因过长（最多 200 字节）。", "The reason is too long (at most 200 bytes).";
    no_action: "该凭证当前状态下无需人工处理。", "Nothing for a person to do on this voucher in its state.";
    back_to_list: "返回列表", "Back to the list";
    complete_title: "补录收款行行号", "Complete the payee bank number";
    complete_hint: "该笔支付未注明收款银行行号，本行须补录后方可支付。请填写 12 位收款银行行号；提交后即按原凭证支付，并将行号写入回单。", "This payment does not name the payee's bank number, which this bank needs before paying. Enter the 12-digit bank number: the voucher is then paid as ordered and the number goes on its receipt.";
    bank_no: "收款银行行号", "Payee bank number";
    complete_button: "补录并支付", "Complete and pay";
    bank_no_required: "请填写收款银行行号。", "The payee bank number is required.";
    bank_no_format: "收款银行行号应为 12 位数字。", "The payee bank number must be 12 digits.";
    not_awaiting: "该凭证已不在待补录状态，未做任何处理。", "This voucher no longer awaits completion; nothing was done.";
    awaiting_title: "待补录", "Awaiting completion";
    awaiting_hint: "以下支付凭证缺少收款银行行号，补录后即支付。", "These payments lack their payee's bank number and are paid once it is completed.";
}

/// The bank's links.
pub(crate) fn nav<T: Transport>(desk: &Desk<T>) -> Vec<(&'static str, &'static str)> {
    if desk.party.role() != OrgRole::AgentBank || !desk.may(Action::ViewVouchers) {
        return Vec::new();
    }
    let b = BankTexts::of(desk.lang);
    vec![
        ("/bank", b.nav_incoming),
        ("/bank/exceptions", b.nav_exceptions),
        ("/bank/payments", b.nav_payments),
        ("/bank/clearing", b.nav_clearing),
        ("/bank/receipts", b.nav_receipts),
        ("/bank/reconcile", b.nav_reconcile),
    ]
}

/// The bank's routes.
pub(crate) fn routes<T: Transport + 'static>() -> Router<Shared<T>> {
    Router::new()
        .route("/o/{org}/bank", get(incoming::<T>))
        .route("/o/{org}/bank/exceptions", get(exceptions::<T>))
        .route("/o/{org}/bank/payments", get(payments::<T>))
        .route("/o/{org}/bank/clearing", get(clearing::<T>))
        .route(
            "/o/{org}/bank/clearing/request",
            post(request_clearing::<T>),
        )
        .route("/o/{org}/bank/receipts", get(receipts::<T>))
        .route("/o/{org}/bank/reconcile", get(reconcile::<T>))
        .route(
            "/o/{org}/bank/v/{adm_div}/{year}/{vt_code}/{voucher_no}",
            get(detail::<T>),
        )
        .route(
            "/o/{org}/bank/v/{adm_div}/{year}/{vt_code}/{voucher_no}/return",
            post(return_voucher::<T>),
        )
        .route(
            "/o/{org}/bank/v/{adm_div}/{year}/{vt_code}/{voucher_no}/refuse",
            post(refuse_voucher::<T>),
        )
        .route(
            "/o/{org}/bank/v/{adm_div}/{year}/{vt_code}/{voucher_no}/complete",
            post(complete_voucher::<T>),
        )
}

// ---------------------------------------------------------------------------------------
// Shared with the other desks: opening a page, listing vouchers, showing one.

/// The desk of a GET for `role`'s pages and `action`, or the answer: 404 for another
/// role's desk, 403 when the user's posts do not allow `action`.
pub(super) async fn open<T: Transport>(
    p: &Inner<T>,
    headers: &HeaderMap,
    uri: &Uri,
    org: &str,
    role: Option<OrgRole>,
    action: Action,
) -> Result<Result<Desk<T>, Response>, PortalError> {
    let lang = lang_of(headers);
    let desk = match p.desk(headers, uri, org, lang).await? {
        Ok(desk) => desk,
        Err(response) => return Ok(Err(response)),
    };
    Ok(match refusal(&desk, role, action) {
        Some(response) => Err(response),
        None => Ok(desk),
    })
}

/// As [`open`], for a POST: its checked fields too.
pub(super) async fn open_post<T: Transport>(
    p: &Inner<T>,
    headers: &HeaderMap,
    uri: &Uri,
    body: &Bytes,
    org: &str,
    role: Option<OrgRole>,
    action: Action,
) -> Result<Result<(Desk<T>, Fields), Response>, PortalError> {
    let lang = lang_of(headers);
    let (desk, fields) = match p.desk_post(headers, uri, body, org, lang).await? {
        Ok(opened) => opened,
        Err(response) => return Ok(Err(response)),
    };
    Ok(match refusal(&desk, role, action) {
        Some(response) => Err(response),
        None => Ok((desk, fields)),
    })
}

/// The answer refusing `desk` the page: 404 for another role's desk, 403 for an action
/// the user's posts do not allow; `None` when the page is theirs.
fn refusal<T: Transport>(
    desk: &Desk<T>,
    role: Option<OrgRole>,
    action: Action,
) -> Option<Response> {
    if role.is_some_and(|role| desk.party.role() != role) {
        return Some(desk.not_found());
    }
    if !desk.may(action) {
        return Some(desk.forbidden());
    }
    None
}

/// A query parameter of `uri`, trimmed, if present and not blank.
pub(super) fn param(uri: &Uri, name: &str) -> Option<String> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(uri.query().unwrap_or("")).unwrap_or_default();
    pairs
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// The `after` cursor of a list page (0: the first page).
pub(super) fn cursor(uri: &Uri) -> u64 {
    param(uri, "after")
        .and_then(|a| a.parse().ok())
        .unwrap_or(0)
}

/// Unix seconds as Beijing time, `YYYY-MM-DD HH:MM:SS`.
pub(super) fn when(t: u64) -> String {
    let offset = UtcOffset::from_hms(8, 0, 0).unwrap_or(UtcOffset::UTC);
    match i64::try_from(t)
        .ok()
        .and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok())
    {
        Some(at) => {
            let at = at.to_offset(offset);
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
                at.year(),
                u8::from(at.month()),
                at.day(),
                at.hour(),
                at.minute(),
                at.second()
            )
        }
        None => t.to_string(),
    }
}

/// Fen as yuan text (`1234.56`); a sum beyond an amount shows its fen.
pub(super) fn yuan(fen: u128) -> String {
    i64::try_from(fen)
        .ok()
        .and_then(|f| Amount::from_fen(f).ok())
        .map_or_else(|| format!("{fen} fen"), |a| a.to_string())
}

/// Which voucher legs a list shows.
pub(super) struct Selection<'a> {
    pub vt_codes: &'a [&'a str],
    pub leg: Leg,
    pub states: &'a [Exchange],
    /// Only legs this node sent, or received; `None`: both.
    pub direction: Option<Direction>,
}

/// A page of the legs `selection` names, in arrival order after the cursor `after`, in
/// the user's divisions and passing `keep`: the legs, and the cursor of the next page.
///
/// Each (type, state) is read from its index after the cursor, at most [`PAGE`] each; the
/// first [`PAGE`] of them all, in arrival order, make the page (so none is skipped), and
/// those outside the user's divisions or refused by `keep` are left out of it.
pub(super) async fn legs<T: Transport>(
    desk: &Desk<T>,
    selection: &Selection<'_>,
    after: u64,
    keep: impl Fn(&VoucherRecord) -> bool,
) -> Result<(Vec<VoucherRecord>, Option<u64>), PortalError> {
    let library = desk.party.store.library();
    let mut all = Vec::new();
    let mut more = false;
    for vt in selection.vt_codes {
        // A state the leg has no code for (a receipt's receipt) holds nothing.
        for state in selection
            .states
            .iter()
            .filter(|s| s.code(selection.leg).is_some())
        {
            let page = library
                .by_status(vt, selection.leg, *state, after, PAGE)
                .await
                .map_err(library_error)?;
            more |= page.next.is_some();
            all.extend(page.items);
        }
    }
    all.sort_by_key(|r| r.seq);
    all.dedup_by_key(|r| r.seq);
    let limit = PAGE as usize;
    more |= all.len() > limit;
    all.truncate(limit);
    let next = if more {
        all.last().map(|r| r.seq)
    } else {
        None
    };
    let shown = all
        .into_iter()
        .filter(|r| selection.direction.is_none_or(|d| r.direction == d))
        .filter(|r| desk.sees_code(&r.key.adm_div_code))
        .filter(|r| keep(r))
        .collect();
    Ok((shown, next))
}

/// A library failure as the portal's.
pub(super) fn library_error(e: LibraryError) -> PortalError {
    match e {
        LibraryError::Store(e) => PortalError::Store(e),
        other => PortalError::Work(other.to_string()),
    }
}

/// One voucher leg in a list.
pub(super) struct Line {
    pub href: String,
    pub vt_code: String,
    pub vt_name: String,
    pub voucher_no: String,
    pub adm_div: String,
    pub leg: &'static str,
    pub peer: String,
    pub status: String,
    pub processing: String,
    pub reason: String,
    pub amount: String,
    pub at: String,
    /// A second line of text (a receipt's status, a reconciliation's result).
    pub extra: String,
}

/// The path of a voucher's page under `base` (e.g. `/o/{org}/bank/v`).
pub(super) fn voucher_href(base: &str, key: &VoucherKey) -> String {
    format!(
        "{base}/{}/{}/{}/{}",
        key.adm_div_code, key.st_year, key.vt_code, key.voucher_no
    )
}

/// The status code and its name, in `lang`.
pub(super) fn status_text(record: &VoucherRecord, lang: Lang) -> String {
    let name = match lang {
        Lang::Zh => record.exchange.name_zh(),
        Lang::En => record.exchange.name_en(),
    };
    format!("{} {name}", record.status_code())
}

/// The processing code and its name, in `lang` (empty when none).
pub(super) fn processing_text(processing: Option<Processing>, lang: Lang) -> String {
    processing.map_or_else(String::new, |p| {
        let name = match lang {
            Lang::Zh => p.name_zh(),
            Lang::En => p.name_en(),
        };
        format!("{} {name}", p.code())
    })
}

fn type_name(registry: &Registry, vt_code: &str, lang: Lang) -> String {
    registry
        .get(vt_code)
        .map(|ty| match lang {
            Lang::Zh => ty.name_zh.clone(),
            Lang::En => ty.name_en.clone(),
        })
        .unwrap_or_default()
}

/// The list line of `record`, its page under `base`.
pub(super) fn line<T: Transport>(desk: &Desk<T>, base: &str, record: &VoucherRecord) -> Line {
    let b = BankTexts::of(desk.lang);
    let registry = &desk.party.registry;
    let fields = header_fields(record).unwrap_or_default();
    let amount = registry
        .get(&record.key.vt_code)
        .and_then(|ty| ty.amount.as_deref())
        .and_then(|name| fields.iter().find(|(n, _)| n == name))
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let processing = match (record.direction, record.processing) {
        (Direction::Received, None) => b.unread.to_owned(),
        (_, p) => processing_text(p, desk.lang),
    };
    Line {
        href: voucher_href(base, &record.key),
        vt_code: record.key.vt_code.clone(),
        vt_name: type_name(registry, &record.key.vt_code, desk.lang),
        voucher_no: record.key.voucher_no.clone(),
        adm_div: record.key.adm_div_code.clone(),
        leg: match record.leg {
            Leg::Original => b.leg_original,
            Leg::Receipt => b.leg_receipt,
        },
        peer: match record.direction {
            Direction::Sent => record.receiver.clone(),
            Direction::Received => record.sender.clone(),
        },
        status: status_text(record, desk.lang),
        processing,
        reason: record.reason.clone().unwrap_or_default(),
        amount,
        at: when(record.updated_at),
        extra: String::new(),
    }
}

/// A list page: a title, a hint, the lines and the pager.
#[derive(Template)]
#[template(
    ext = "html",
    source = r#"<h1>{{ title }}</h1>
<p class="hint">{{ hint }}</p>
{{ before|safe }}
{% if lines.is_empty() %}<p class="card">{{ b.empty }}</p>{% else %}<table class="vouchers">
<thead><tr><th>{{ b.col_type }}</th><th>{{ b.col_no }}</th><th>{{ b.col_div }}</th><th>{{ b.col_peer }}</th><th>{{ b.col_amount }}</th><th>{{ b.col_status }}</th><th>{{ b.col_processing }}</th><th>{{ extra_title }}</th><th>{{ b.col_reason }}</th><th>{{ b.col_at }}</th></tr></thead>
<tbody>
{% for l in lines %}<tr><td>{{ l.vt_code }} {{ l.vt_name }}{% if l.leg != b.leg_original %} · {{ l.leg }}{% endif %}</td><td><a href="{{ l.href }}">{{ l.voucher_no }}</a></td><td>{{ l.adm_div }}</td><td>{{ l.peer }}</td><td class="amount">{{ l.amount }}</td><td>{{ l.status }}</td><td>{{ l.processing }}</td><td>{{ l.extra }}</td><td>{{ l.reason }}</td><td>{{ l.at }}</td></tr>
{% endfor %}</tbody></table>{% endif %}
<p class="pager">{% if let Some(first) = first_href %}<a href="{{ first }}">{{ b.first_page }}</a> {% endif %}{% if let Some(next) = next_href %}<a href="{{ next }}" rel="next">{{ b.next_page }}</a>{% endif %}</p>
"#
)]
pub(super) struct ListBody<'a> {
    pub b: &'static BankTexts,
    pub title: &'a str,
    pub hint: &'a str,
    /// Rendered (and escaped) by its own template: a summary, a form, filters.
    pub before: String,
    pub extra_title: &'a str,
    pub lines: Vec<Line>,
    pub first_href: Option<String>,
    pub next_href: Option<String>,
}

/// The pager's links of a list at `path` (its other query parameters in `keep`).
pub(super) fn pager(
    path: &str,
    keep: &[(&str, &str)],
    after: u64,
    next: Option<u64>,
) -> (Option<String>, Option<String>) {
    let with = |after: Option<u64>| {
        let mut pairs: Vec<(String, String)> = keep
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        if let Some(after) = after {
            pairs.push(("after".into(), after.to_string()));
        }
        let query = serde_urlencoded::to_string(&pairs).unwrap_or_default();
        if query.is_empty() {
            path.to_owned()
        } else {
            format!("{path}?{query}")
        }
    };
    ((after > 0).then(|| with(None)), next.map(|n| with(Some(n))))
}

/// A field of a voucher, with its label.
pub(super) struct FieldRow {
    pub name: String,
    pub label: String,
    pub value: String,
}

/// One event of a voucher leg.
pub(super) struct EventRow {
    pub at: String,
    pub actor: String,
    pub action: String,
    pub from: String,
    pub to: String,
    pub reason: String,
}

/// What a checker may do on an exception, and the form's state.
pub(super) struct Actions {
    pub return_href: String,
    pub refuse_href: String,
    pub complete_href: String,
    pub can_return: bool,
    pub can_refuse: bool,
    /// The voucher waits for its payee's bank number (待补录).
    pub can_complete: bool,
    pub csrf: String,
    pub form_id: String,
    /// The completion form's own one-time id.
    pub complete_form_id: String,
    pub reason: String,
    /// The bank number typed into the completion form.
    pub bank_no: String,
    pub errors: FieldErrors,
}

/// One voucher: its fields, its receipt's X fields, its history, and the actions.
#[derive(Template)]
#[template(
    ext = "html",
    source = r#"<h1>{{ b.detail_title }} {{ line.vt_code }} {{ line.voucher_no }}</h1>
<p><a href="{{ back }}">{{ b.back_to_list }}</a></p>
<section class="card">
<dl>
<dt>{{ b.col_type }}</dt><dd>{{ line.vt_code }} {{ line.vt_name }}</dd>
<dt>{{ b.col_div }}</dt><dd>{{ line.adm_div }}</dd>
<dt>{{ b.col_peer }}</dt><dd>{{ line.peer }}</dd>
<dt>{{ b.col_amount }}</dt><dd>{{ line.amount }}</dd>
<dt>{{ b.col_status }}</dt><dd class="status">{{ line.status }}</dd>
<dt>{{ b.col_processing }}</dt><dd class="processing">{{ line.processing }}</dd>
{% if !line.reason.is_empty() %}<dt>{{ b.col_reason }}</dt><dd class="reason">{{ line.reason }}</dd>{% endif %}
<dt>{{ b.col_at }}</dt><dd>{{ line.at }}</dd>
</dl>
</section>
{% if let Some(a) = actions %}<section class="card">
<h2>{{ b.actions_title }}</h2>
{% if a.can_complete %}<form method="post" action="{{ a.complete_href }}" class="card">
<input type="hidden" name="csrf" value="{{ a.csrf }}">
<input type="hidden" name="form_id" value="{{ a.complete_form_id }}">
<h3>{{ b.complete_title }}</h3>
<p class="hint">{{ b.complete_hint }}</p>
<label>{{ b.bank_no }}<input name="bank_no" required inputmode="numeric" pattern="[0-9]{12}" minlength="12" maxlength="12" autocomplete="off" value="{{ a.bank_no }}"></label>
{% if a.errors.has("bank_no") %}<p class="error" role="alert">{{ a.errors.of("bank_no") }}</p>{% endif %}
<button type="submit" hx-disabled-elt="this">{{ b.complete_button }}</button>
</form>{% else if a.errors.has("bank_no") %}<p class="error" role="alert">{{ a.errors.of("bank_no") }}</p>{% endif %}
{% if a.can_return || a.can_refuse %}<p class="hint">{% if a.can_return %}{{ b.return_hint }} {% endif %}{% if a.can_refuse %}{{ b.refuse_hint }}{% endif %}</p>
{% if a.can_return %}<form method="post" action="{{ a.return_href }}" class="card">
<input type="hidden" name="csrf" value="{{ a.csrf }}">
<input type="hidden" name="form_id" value="{{ a.form_id }}">
<label>{{ b.reason }}<input name="reason" required maxlength="100" value="{{ a.reason }}"></label>
{% if a.errors.has("reason") %}<p class="error" role="alert">{{ a.errors.of("reason") }}</p>{% endif %}
<button type="submit" hx-disabled-elt="this">{{ b.return_button }}</button>
</form>{% endif %}
{% if a.can_refuse %}<form method="post" action="{{ a.refuse_href }}" class="card">
<input type="hidden" name="csrf" value="{{ a.csrf }}">
<input type="hidden" name="form_id" value="{{ a.form_id }}">
<label>{{ b.reason }}<input name="reason" required maxlength="100" value="{{ a.reason }}"></label>
{% if a.errors.has("reason") %}<p class="error" role="alert">{{ a.errors.of("reason") }}</p>{% endif %}
<button type="submit" hx-disabled-elt="this">{{ b.refuse_button }}</button>
</form>{% endif %}
{% else if !a.can_complete %}<p class="hint">{{ b.no_action }}</p>{% if a.errors.has("reason") %}<p class="error" role="alert">{{ a.errors.of("reason") }}</p>{% endif %}{% endif %}
</section>{% endif %}
<section class="card">
<h2>{{ b.fields_title }}</h2>
<table class="fields"><tbody>
{% for f in fields %}<tr><th>{{ f.label }}</th><td><code>{{ f.name }}</code></td><td>{{ f.value }}</td></tr>
{% endfor %}</tbody></table>
</section>
<section class="card">
<h2>{{ b.receipt_fields_title }}</h2>
{% if let Some(r) = receipt %}<p>{{ b.col_receipt }}: <span class="receipt-status">{{ r.status }}</span>{% if !r.processing.is_empty() %} · {{ r.processing }}{% endif %}{% if !r.reason.is_empty() %} · {{ r.reason }}{% endif %}</p>
<table class="fields"><tbody>
{% for f in receipt_fields %}<tr><th>{{ f.label }}</th><td><code>{{ f.name }}</code></td><td>{{ f.value }}</td></tr>
{% endfor %}</tbody></table>{% else %}<p>{{ b.no_receipt }}</p>{% endif %}
</section>
<section class="card">
<h2>{{ b.history_title }}</h2>
<table class="events"><thead><tr><th>{{ b.col_at }}</th><th>{{ b.col_actor }}</th><th>{{ b.col_action }}</th><th>{{ b.col_from }}</th><th>{{ b.col_to }}</th><th>{{ b.col_reason }}</th></tr></thead><tbody>
{% for e in events %}<tr><td>{{ e.at }}</td><td>{{ e.actor }}</td><td>{{ e.action }}</td><td>{{ e.from }}</td><td>{{ e.to }}</td><td>{{ e.reason }}</td></tr>
{% endfor %}</tbody></table>
</section>
"#
)]
pub(super) struct DetailBody {
    pub b: &'static BankTexts,
    pub back: String,
    pub line: Line,
    pub actions: Option<Actions>,
    pub fields: Vec<FieldRow>,
    pub receipt: Option<Line>,
    pub receipt_fields: Vec<FieldRow>,
    pub events: Vec<EventRow>,
}

/// The voucher `key` as this library holds it (the original, else the receipt leg), if in
/// the user's divisions: `None` answers 404.
pub(super) async fn find<T: Transport>(
    desk: &Desk<T>,
    key: &VoucherKey,
) -> Result<Option<(VoucherRecord, Option<VoucherRecord>)>, PortalError> {
    if !desk.sees_code(&key.adm_div_code) {
        return Ok(None);
    }
    let library = desk.party.store.library();
    let original = match library.status(key, Leg::Original).await {
        Ok(found) => found,
        // A key that breaks the library's rules is no voucher of it.
        Err(LibraryError::InvalidArgument(_)) => return Ok(None),
        Err(e) => return Err(library_error(e)),
    };
    let receipt = library
        .status(key, Leg::Receipt)
        .await
        .map_err(library_error)?;
    Ok(match (original, receipt) {
        (Some(original), receipt) => Some((original, receipt)),
        (None, Some(receipt)) => Some((receipt, None)),
        (None, None) => None,
    })
}

fn field_rows(registry: &Registry, record: &VoucherRecord, receipt_only: bool) -> Vec<FieldRow> {
    let ty = registry.get(&record.key.vt_code);
    header_fields(record)
        .unwrap_or_default()
        .into_iter()
        .filter(|(name, _)| {
            let is_receipt = ty
                .and_then(|t| t.header_field(name))
                .map_or(name.starts_with('X'), |f| f.receipt);
            is_receipt == receipt_only
        })
        .map(|(name, value)| FieldRow {
            label: ty
                .and_then(|t| t.header_field(&name))
                .and_then(|f| f.label_zh.clone())
                .unwrap_or_default(),
            name,
            value,
        })
        .collect()
}

async fn event_rows(
    store: &Store,
    record: &VoucherRecord,
    lang: Lang,
) -> Result<Vec<EventRow>, PortalError> {
    let status = |code: i16, leg: Leg| {
        let found = Exchange::ALL
            .into_iter()
            .find(|s| s.code(leg).map(i16::from) == Some(code));
        match found {
            Some(s) => format!(
                "{code} {}",
                match lang {
                    Lang::Zh => s.name_zh(),
                    Lang::En => s.name_en(),
                }
            ),
            None => code.to_string(),
        }
    };
    let processing = |code: Option<i16>| {
        processing_text(
            code.and_then(|c| u8::try_from(c).ok())
                .and_then(Processing::from_code),
            lang,
        )
    };
    let events = store
        .library()
        .events(&record.key, record.leg)
        .await
        .map_err(library_error)?;
    Ok(events
        .into_iter()
        .map(|e| {
            let from = e
                .from_exchange
                .map(|c| status(c, record.leg))
                .unwrap_or_default();
            let from_p = processing(e.from_processing);
            let to_p = processing(e.to_processing);
            EventRow {
                at: when(e.at),
                actor: e.actor,
                action: e.action,
                from: if from_p.is_empty() {
                    from
                } else {
                    format!("{from} / {from_p}")
                },
                to: if to_p.is_empty() {
                    status(e.to_exchange, record.leg)
                } else {
                    format!("{} / {to_p}", status(e.to_exchange, record.leg))
                },
                reason: e.reason.unwrap_or_default(),
            }
        })
        .collect())
}

/// The page of one voucher, listed under `back`, its actions (for the bank's checker) in
/// `actions`.
pub(super) async fn detail_page<T: Transport>(
    desk: &Desk<T>,
    base: &str,
    back: String,
    found: (VoucherRecord, Option<VoucherRecord>),
    actions: Option<Actions>,
    status: StatusCode,
) -> Result<Response, PortalError> {
    let b = BankTexts::of(desk.lang);
    let (record, receipt) = found;
    let registry = &desk.party.registry;
    let mut events = event_rows(&desk.party.store, &record, desk.lang).await?;
    if let Some(receipt) = &receipt {
        events.extend(event_rows(&desk.party.store, receipt, desk.lang).await?);
    }
    let page = DetailBody {
        b,
        back,
        line: line(desk, base, &record),
        actions,
        fields: field_rows(registry, &record, false),
        receipt_fields: receipt
            .as_ref()
            .map(|r| field_rows(registry, r, true))
            .unwrap_or_default(),
        receipt: receipt.as_ref().map(|r| line(desk, base, r)),
        events,
    };
    desk.page(status, b.detail_title, body(&page)?)
}

// ---------------------------------------------------------------------------------------
// The bank's pages

fn base<T: Transport>(desk: &Desk<T>) -> String {
    desk.href("/bank/v")
}

/// What a list page shows besides its lines.
pub(super) struct Listing<'a> {
    /// Where its vouchers' pages are (`…/v`).
    pub base: String,
    pub title: &'a str,
    pub hint: &'a str,
    /// Rendered (and escaped) by its own template: a summary, a form, filters.
    pub before: String,
    /// The extra column's heading and content.
    pub extra_title: &'a str,
    pub extra: Extra,
    /// The query parameters the pager keeps.
    pub keep: &'a [(&'a str, &'a str)],
}

/// A list page with nothing before its lines: the desk of `role` for users who may view
/// vouchers, the legs `selection` names, as `listing` (given the desk) shows them.
pub(super) async fn plain_list<T: Transport>(
    p: &Inner<T>,
    (org, headers, uri): (&str, &HeaderMap, &Uri),
    role: OrgRole,
    selection: &Selection<'_>,
    listing: impl FnOnce(&Desk<T>) -> Listing<'static>,
) -> Response {
    let lang = lang_of(headers);
    let outcome = async {
        let desk = match open(p, headers, uri, org, Some(role), Action::ViewVouchers).await? {
            Ok(desk) => desk,
            Err(response) => return Ok(response),
        };
        let page = legs(&desk, selection, cursor(uri), |_| true).await?;
        list_page(&desk, uri, listing(&desk), page).await
    };
    respond(lang, outcome.await)
}

/// A list page of `records`, `next` the cursor of the page after.
pub(super) async fn list_page<T: Transport>(
    desk: &Desk<T>,
    uri: &Uri,
    listing: Listing<'_>,
    (records, next): (Vec<VoucherRecord>, Option<u64>),
) -> Result<Response, PortalError> {
    let Listing {
        base,
        title,
        hint,
        before,
        extra_title,
        extra,
        keep,
    } = listing;
    let base = base.as_str();
    let b = BankTexts::of(desk.lang);
    let mut lines = Vec::with_capacity(records.len());
    for record in &records {
        let mut l = line(desk, base, record);
        l.extra = match extra {
            Extra::None => String::new(),
            Extra::Receipt => receipt_text(desk, record).await?,
            Extra::Result => result_text(desk, record).await?,
        };
        lines.push(l);
    }
    let (first_href, next_href) = pager(uri.path(), keep, cursor(uri), next);
    let page = ListBody {
        b,
        title,
        hint,
        before,
        extra_title,
        lines,
        first_href,
        next_href,
    };
    desk.page(StatusCode::OK, title, body(&page)?)
}

/// What a list's extra column shows.
#[derive(Clone, Copy)]
pub(super) enum Extra {
    None,
    /// The status of the voucher's receipt.
    Receipt,
    /// The reconciliation result its receipt carries.
    Result,
}

/// The receipt leg of `record`'s voucher, as a short text (status, processing).
pub(super) async fn receipt_text<T: Transport>(
    desk: &Desk<T>,
    record: &VoucherRecord,
) -> Result<String, PortalError> {
    let receipt = desk
        .party
        .store
        .library()
        .status(&record.key, Leg::Receipt)
        .await
        .map_err(library_error)?;
    Ok(receipt.map_or_else(String::new, |r| {
        let p = processing_text(r.processing, desk.lang);
        if p.is_empty() {
            status_text(&r, desk.lang)
        } else {
            format!("{} · {p}", status_text(&r, desk.lang))
        }
    }))
}

/// The reconciliation result a receipt leg carries (XCheckResult, XDiffNum, XCheckReason).
async fn result_text<T: Transport>(
    desk: &Desk<T>,
    record: &VoucherRecord,
) -> Result<String, PortalError> {
    let receipt = desk
        .party
        .store
        .library()
        .status(&record.key, Leg::Receipt)
        .await
        .map_err(library_error)?;
    Ok(receipt.map_or_else(String::new, |r| check_result(&r)))
}

/// `XCheckResult XDiffNum XCheckReason` of a reconciliation receipt.
pub(super) fn check_result(receipt: &VoucherRecord) -> String {
    let fields = header_fields(receipt).unwrap_or_default();
    let get = |name: &str| {
        fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    };
    [get("XCheckResult"), get("XDiffNum"), get("XCheckReason")]
        .iter()
        .filter(|s| !s.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(" · ")
}

async fn incoming<T: Transport>(
    State(p): State<Shared<T>>,
    Path(org): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let selection = Selection {
        vt_codes: &INCOMING,
        leg: Leg::Original,
        states: &RECEIVED_STATES,
        direction: Some(Direction::Received),
    };
    plain_list(
        &p,
        (&org, &headers, &uri),
        OrgRole::AgentBank,
        &selection,
        |desk| {
            let b = BankTexts::of(desk.lang);
            Listing {
                base: base(desk),
                title: b.nav_incoming,
                hint: b.incoming_hint,
                before: String::new(),
                extra_title: "",
                extra: Extra::None,
                keep: &[],
            }
        },
    )
    .await
}

/// Whether a received original needs a person: read and left (已读取), refused, returned,
/// or acknowledged and stopped in processing before money moved (校验失败, 核算失败,
/// 待补录, or a step the worker did not finish).
fn is_exception(record: &VoucherRecord) -> bool {
    match record.exchange {
        Exchange::Received => record.processing == Some(Processing::Read),
        Exchange::AckFailed | Exchange::Returned => true,
        Exchange::Acknowledged => record
            .processing
            .is_some_and(|p| !p.money_moved() && p != Processing::Returned),
        _ => false,
    }
}

async fn exceptions<T: Transport>(
    State(p): State<Shared<T>>,
    Path(org): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let lang = lang_of(&headers);
    let outcome = async {
        let desk = match open(
            &p,
            &headers,
            &uri,
            &org,
            Some(OrgRole::AgentBank),
            Action::ViewVouchers,
        )
        .await?
        {
            Ok(desk) => desk,
            Err(response) => return Ok(response),
        };
        let b = BankTexts::of(desk.lang);
        let selection = Selection {
            vt_codes: &INCOMING,
            leg: Leg::Original,
            states: &RECEIVED_STATES,
            direction: Some(Direction::Received),
        };
        let page = legs(&desk, &selection, cursor(&uri), is_exception).await?;
        let before = awaiting_forms(&desk, &page.0)?;
        list_page(
            &desk,
            &uri,
            Listing {
                base: base(&desk),
                title: b.nav_exceptions,
                hint: b.exceptions_hint,
                before,
                extra_title: "",
                extra: Extra::None,
                keep: &[],
            },
            page,
        )
        .await
    };
    respond(lang, outcome.await)
}

/// One payment waiting for its payee's bank number, on the exceptions page.
struct AwaitingRow {
    line: Line,
    /// The completion form's one-time id; `None` for a user who may not complete.
    form_id: Option<String>,
}

/// The payments of an exceptions page waiting for their payee's bank number (待补录), each
/// with its completion form (补录收款行行号) for a checker.
#[derive(Template)]
#[template(
    ext = "html",
    source = r#"{% if !rows.is_empty() %}<section class="card awaiting">
<h2>{{ b.awaiting_title }}</h2>
<p class="hint">{{ b.awaiting_hint }}</p>
<table class="vouchers"><thead><tr><th>{{ b.col_type }}</th><th>{{ b.col_no }}</th><th>{{ b.col_peer }}</th><th>{{ b.col_amount }}</th><th>{{ b.complete_title }}</th></tr></thead>
<tbody>
{% for r in rows %}<tr><td>{{ r.line.vt_code }} {{ r.line.vt_name }}</td><td><a href="{{ r.line.href }}">{{ r.line.voucher_no }}</a></td><td>{{ r.line.peer }}</td><td class="amount">{{ r.line.amount }}</td><td>{% if let Some(form_id) = r.form_id %}<form method="post" action="{{ r.line.href }}/complete" class="inline">
<input type="hidden" name="csrf" value="{{ csrf }}">
<input type="hidden" name="form_id" value="{{ form_id }}">
<label>{{ b.bank_no }} <input name="bank_no" required inputmode="numeric" pattern="[0-9]{12}" minlength="12" maxlength="12" autocomplete="off"></label>
<button type="submit" hx-disabled-elt="this">{{ b.complete_button }}</button>
</form>{% endif %}</td></tr>
{% endfor %}</tbody></table></section>{% endif %}
"#
)]
struct AwaitingBody {
    b: &'static BankTexts,
    csrf: String,
    rows: Vec<AwaitingRow>,
}

/// The exceptions page's section of payments waiting for their payee's bank number.
fn awaiting_forms<T: Transport>(
    desk: &Desk<T>,
    records: &[VoucherRecord],
) -> Result<String, PortalError> {
    let may_complete = desk.may(Action::CheckVoucher);
    let base = base(desk);
    let rows = records
        .iter()
        .filter(|r| awaits_completion(r))
        .map(|r| AwaitingRow {
            line: line(desk, &base, r),
            form_id: may_complete.then(|| desk.form_id().to_string()),
        })
        .collect();
    body(&AwaitingBody {
        b: BankTexts::of(desk.lang),
        csrf: desk.csrf.clone(),
        rows,
    })
}

/// Today's payments: count and sum.
#[derive(Template)]
#[template(
    ext = "html",
    source = r#"<section class="card"><h2>{{ b.paid_today }}</h2>
<dl><dt>{{ b.paid_count }}</dt><dd class="paid-count">{{ count }}</dd><dt>{{ b.paid_sum }}</dt><dd class="paid-sum">{{ sum }}{% if partial %} {{ b.at_least }}{% endif %}</dd></dl></section>
"#
)]
struct TodayBody {
    b: &'static BankTexts,
    count: usize,
    sum: String,
    partial: bool,
}

/// The first `now` of today (Beijing time) by the store's calendar.
fn day_start(now: u64) -> u64 {
    let c = Calendar::default();
    let tpd = c.ticks_per_day.max(1);
    ((now + c.offset_ticks) / tpd * tpd).saturating_sub(c.offset_ticks)
}

/// A payment receipt's amount paid (`XPayAmt`), else the original's amount field.
fn paid_amount(registry: &Registry, receipt: &VoucherRecord) -> Option<Amount> {
    let fields = header_fields(receipt)?;
    let amount_field = registry.get(&receipt.key.vt_code)?.amount.clone()?;
    let get = |name: &str| fields.iter().find(|(n, _)| n == name).map(|(_, v)| v);
    get("XPayAmt")
        .or_else(|| get(&amount_field))
        .and_then(|v| v.parse().ok())
}

async fn payments<T: Transport>(
    State(p): State<Shared<T>>,
    Path(org): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let lang = lang_of(&headers);
    let outcome = async {
        let desk = match open(
            &p,
            &headers,
            &uri,
            &org,
            Some(OrgRole::AgentBank),
            Action::ViewVouchers,
        )
        .await?
        {
            Ok(desk) => desk,
            Err(response) => return Ok(response),
        };
        let b = BankTexts::of(desk.lang);
        let registry = desk.party.registry.clone();
        let sent_states: Vec<Exchange> = Exchange::ALL
            .into_iter()
            .filter(|s| *s != Exchange::ReceiptReceived)
            .collect();
        // Today: every payment receipt written since the day began, up to a bound.
        let from = day_start(desk.now);
        let (mut count, mut sum, mut scanned, mut after) = (0usize, 0u128, 0usize, 0u64);
        let today = Selection {
            vt_codes: &["5201", "8202"],
            leg: Leg::Receipt,
            states: &sent_states,
            direction: Some(Direction::Sent),
        };
        let partial = loop {
            let (records, next) = legs(&desk, &today, after, |r| r.created_at >= from).await?;
            for r in &records {
                if let Some(a) = paid_amount(&registry, r) {
                    count += 1;
                    sum += u128::try_from(a.fen()).unwrap_or(0);
                }
            }
            scanned += PAGE as usize;
            match next {
                Some(n) if scanned < TODAY_SCAN_MAX => after = n,
                Some(_) => break true,
                None => break false,
            }
        };
        let before = body(&TodayBody {
            b,
            count,
            sum: yuan(sum),
            partial,
        })?;
        let paid = Selection {
            vt_codes: &["5201", "8202"],
            leg: Leg::Original,
            states: &[Exchange::Acknowledged],
            direction: Some(Direction::Received),
        };
        let page = legs(&desk, &paid, cursor(&uri), |r| {
            r.processing.is_some_and(Processing::money_moved)
        })
        .await?;
        list_page(
            &desk,
            &uri,
            Listing {
                base: base(&desk),
                title: b.nav_payments,
                hint: b.payments_hint,
                before,
                extra_title: "",
                extra: Extra::None,
                keep: &[],
            },
            page,
        )
        .await
    };
    respond(lang, outcome.await)
}

/// The clearing page's form: request clearing now (a checker).
#[derive(Template)]
#[template(
    ext = "html",
    source = r#"{% if let Some(n) = sent %}<p class="card" role="status">{{ b.clearing_sent }}<span class="clearing-sent">{{ n }}</span></p>{% endif %}
{% if let Some(form_id) = form_id %}<form method="post" action="{{ action }}" class="card">
<input type="hidden" name="csrf" value="{{ csrf }}">
<input type="hidden" name="form_id" value="{{ form_id }}">
<p class="hint">{{ b.request_clearing_hint }}</p>
<button type="submit" hx-disabled-elt="this">{{ b.request_clearing }}</button>
</form>{% endif %}
"#
)]
struct ClearingForm {
    b: &'static BankTexts,
    sent: Option<String>,
    action: String,
    csrf: String,
    form_id: Option<String>,
}

async fn clearing<T: Transport>(
    State(p): State<Shared<T>>,
    Path(org): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let lang = lang_of(&headers);
    let outcome = async {
        let desk = match open(
            &p,
            &headers,
            &uri,
            &org,
            Some(OrgRole::AgentBank),
            Action::ViewVouchers,
        )
        .await?
        {
            Ok(desk) => desk,
            Err(response) => return Ok(response),
        };
        let b = BankTexts::of(desk.lang);
        let may_request = desk.may(Action::CheckVoucher) && sees_templates(&desk);
        let before = body(&ClearingForm {
            b,
            sent: param(&uri, "sent").filter(|s| s.bytes().all(|c| c.is_ascii_digit())),
            action: desk.href("/bank/clearing/request"),
            csrf: desk.csrf.clone(),
            form_id: may_request.then(|| desk.form_id().to_string()),
        })?;
        let selection = Selection {
            vt_codes: &CLEARING,
            leg: Leg::Original,
            states: &Exchange::ALL,
            direction: Some(Direction::Sent),
        };
        let page = legs(&desk, &selection, cursor(&uri), |_| true).await?;
        list_page(
            &desk,
            &uri,
            Listing {
                base: base(&desk),
                title: b.nav_clearing,
                hint: b.clearing_hint,
                before,
                extra_title: b.col_receipt,
                extra: Extra::Receipt,
                keep: &[],
            },
            page,
        )
        .await
    };
    respond(lang, outcome.await)
}

/// Whether the user sees every division the bank's clearing requests are written for.
fn sees_templates<T: Transport>(desk: &Desk<T>) -> bool {
    desk.party
        .config
        .clearing_templates
        .iter()
        .all(|t| t.get("AdmDivCode").is_some_and(|d| desk.sees_code(d)))
}

async fn request_clearing<T: Transport>(
    State(p): State<Shared<T>>,
    Path(org): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    bytes: Bytes,
) -> Response {
    let lang = lang_of(&headers);
    let outcome = async {
        let (desk, fields) = match open_post(
            &p,
            &headers,
            &uri,
            &bytes,
            &org,
            Some(OrgRole::AgentBank),
            Action::CheckVoucher,
        )
        .await?
        {
            Ok(opened) => opened,
            Err(response) => return Ok(response),
        };
        if !sees_templates(&desk) {
            return Ok(desk.forbidden());
        }
        let back = desk.href("/bank/clearing");
        desk.once(&fields, async {
            let sent = desk
                .party
                .request_clearing(&desk.user.login)
                .await
                .map_err(|e| PortalError::Work(e.to_string()))?;
            tracing::info!(org = %desk.org(), user = %desk.user.login, sent = sent.len(), "clearing requested from the portal");
            Ok(Ok(format!("{back}?sent={}", sent.len())))
        })
        .await
    };
    respond(lang, outcome.await)
}

async fn receipts<T: Transport>(
    State(p): State<Shared<T>>,
    Path(org): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let selection = Selection {
        vt_codes: &RECEIPTS,
        leg: Leg::Receipt,
        states: &Exchange::ALL,
        direction: Some(Direction::Sent),
    };
    plain_list(
        &p,
        (&org, &headers, &uri),
        OrgRole::AgentBank,
        &selection,
        |desk| {
            let b = BankTexts::of(desk.lang);
            Listing {
                base: base(desk),
                title: b.nav_receipts,
                hint: b.receipts_hint,
                before: String::new(),
                extra_title: "",
                extra: Extra::None,
                keep: &[],
            }
        },
    )
    .await
}

async fn reconcile<T: Transport>(
    State(p): State<Shared<T>>,
    Path(org): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let selection = Selection {
        vt_codes: &CHECKS,
        leg: Leg::Original,
        states: &RECEIVED_STATES,
        direction: Some(Direction::Received),
    };
    plain_list(
        &p,
        (&org, &headers, &uri),
        OrgRole::AgentBank,
        &selection,
        |desk| {
            let b = BankTexts::of(desk.lang);
            Listing {
                base: base(desk),
                title: b.nav_reconcile,
                hint: b.reconcile_hint,
                before: String::new(),
                extra_title: b.col_result,
                extra: Extra::Result,
                keep: &[],
            }
        },
    )
    .await
}

type KeyPath = Path<(String, String, String, String, String)>;

fn key_of(
    (org, adm_div_code, st_year, vt_code, voucher_no): (String, String, String, String, String),
) -> (String, VoucherKey) {
    (
        org,
        VoucherKey {
            adm_div_code,
            st_year,
            vt_code,
            voucher_no,
        },
    )
}

/// Whether `record` is an original this bank received that waits for its payee's bank
/// number (待补录).
fn awaits_completion(record: &VoucherRecord) -> bool {
    record.direction == Direction::Received
        && record.leg == Leg::Original
        && record.processing == Some(Processing::AwaitingCompletion)
}

/// What a checker may do on `record` (an original this bank received).
fn possible(record: &VoucherRecord) -> (bool, bool) {
    let received = record.direction == Direction::Received && record.leg == Leg::Original;
    let can_return = received
        && record
            .processing
            .is_some_and(|p| p.apply(ProcessingEvent::Return).is_ok());
    let can_refuse = received
        && record.exchange == Exchange::Received
        && record.processing == Some(Processing::Read);
    (can_return, can_refuse)
}

/// What the forms of a voucher's page hold: the reason and bank number typed, the errors.
#[derive(Default)]
struct Typed {
    reason: String,
    bank_no: String,
    errors: FieldErrors,
}

fn actions_for<T: Transport>(
    desk: &Desk<T>,
    key: &VoucherKey,
    record: &VoucherRecord,
    typed: Typed,
) -> Option<Actions> {
    let (may_return, may_complete) = (
        desk.may(Action::ReturnVoucher),
        desk.may(Action::CheckVoucher),
    );
    if !may_return && !may_complete {
        return None;
    }
    let (can_return, can_refuse) = possible(record);
    let href = voucher_href(&base(desk), key);
    Some(Actions {
        return_href: format!("{href}/return"),
        refuse_href: format!("{href}/refuse"),
        complete_href: format!("{href}/complete"),
        can_return: may_return && can_return,
        can_refuse: may_return && can_refuse,
        can_complete: may_complete && awaits_completion(record),
        csrf: desk.csrf.clone(),
        form_id: desk.form_id().to_string(),
        complete_form_id: desk.form_id().to_string(),
        reason: typed.reason,
        bank_no: typed.bank_no,
        errors: typed.errors,
    })
}

async fn detail<T: Transport>(
    State(p): State<Shared<T>>,
    Path(path): KeyPath,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let lang = lang_of(&headers);
    let (org, key) = key_of(path);
    let outcome = async {
        let desk = match open(
            &p,
            &headers,
            &uri,
            &org,
            Some(OrgRole::AgentBank),
            Action::ViewVouchers,
        )
        .await?
        {
            Ok(desk) => desk,
            Err(response) => return Ok(response),
        };
        let Some(found) = find(&desk, &key).await? else {
            return Ok(desk.not_found());
        };
        let actions = actions_for(&desk, &key, &found.0, Typed::default());
        detail_page(
            &desk,
            &base(&desk),
            desk.href("/bank"),
            found,
            actions,
            StatusCode::OK,
        )
        .await
    };
    respond(lang, outcome.await)
}

/// The two steps a checker takes on an exception.
#[derive(Clone, Copy)]
enum Step {
    Return,
    Refuse,
}

async fn return_voucher<T: Transport>(
    State(p): State<Shared<T>>,
    Path(path): KeyPath,
    headers: HeaderMap,
    uri: Uri,
    bytes: Bytes,
) -> Response {
    let lang = lang_of(&headers);
    respond(
        lang,
        step(&p, path, &headers, &uri, &bytes, Step::Return).await,
    )
}

async fn refuse_voucher<T: Transport>(
    State(p): State<Shared<T>>,
    Path(path): KeyPath,
    headers: HeaderMap,
    uri: Uri,
    bytes: Bytes,
) -> Response {
    let lang = lang_of(&headers);
    respond(
        lang,
        step(&p, path, &headers, &uri, &bytes, Step::Refuse).await,
    )
}

async fn step<T: Transport>(
    p: &Inner<T>,
    path: (String, String, String, String, String),
    headers: &HeaderMap,
    uri: &Uri,
    bytes: &Bytes,
    step: Step,
) -> Result<Response, PortalError> {
    let (org, key) = key_of(path);
    let (desk, fields) = match open_post(
        p,
        headers,
        uri,
        bytes,
        &org,
        Some(OrgRole::AgentBank),
        Action::ReturnVoucher,
    )
    .await?
    {
        Ok(opened) => opened,
        Err(response) => return Ok(response),
    };
    let Some(found) = find(&desk, &key).await? else {
        return Ok(desk.not_found());
    };
    if found.0.direction != Direction::Received || found.0.leg != Leg::Original {
        return Ok(desk.not_found());
    }
    let b = BankTexts::of(desk.lang);
    let reason = fields.text("reason");
    let mut errors = FieldErrors::default();
    if reason.is_empty() {
        errors.add("reason", b.reason_required);
    } else if gbk_len(&reason) > REASON_MAX_GBK_BYTES {
        errors.add("reason", b.reason_too_long);
    }
    let href = voucher_href(&base(&desk), &key);
    if !errors.is_empty() {
        let typed = Typed {
            reason,
            errors,
            ..Typed::default()
        };
        return again(&desk, &key, typed).await;
    }
    desk.once(&fields, async {
        let (_, now) = desk.party.now();
        let login = desk.user.login.clone();
        let refused = match step {
            Step::Return => {
                let ctx = ReturnsCtx { actor: &login };
                match returns::return_received(&desk.party.store, &desk.party.registry, &ctx, &key, &reason, now).await {
                    Ok(_) => None,
                    Err(e) if e.refusal().is_some() => Some(e.to_string()),
                    Err(e) if e.is_retryable() => return Err(PortalError::Work(e.to_string())),
                    Err(e) => Some(e.to_string()),
                }
            }
            Step::Refuse => match desk.party.store.library().refuse(&key, Leg::Original, &reason, &login, now).await {
                Ok(_) => None,
                Err(e @ (LibraryError::Illegal { .. } | LibraryError::InvalidArgument(_))) => Some(e.to_string()),
                Err(e) => return Err(library_error(e)),
            },
        };
        match refused {
            None => {
                tracing::info!(key = %key, user = %login, "voucher returned or refused at the bank's desk");
                Ok(Ok(href.clone()))
            }
            Some(why) => {
                let mut errors = FieldErrors::default();
                errors.add("reason", why);
                let typed = Typed {
                    reason: reason.clone(),
                    errors,
                    ..Typed::default()
                };
                Ok(Err(again(&desk, &key, typed).await?))
            }
        }
    })
    .await
}

/// The payee bank number typed into a completion form, or the message for its field.
fn read_bank_no(b: &BankTexts, typed: &str) -> Result<BankNo, &'static str> {
    if typed.is_empty() {
        return Err(b.bank_no_required);
    }
    typed.parse().map_err(|_| b.bank_no_format)
}

async fn complete_voucher<T: Transport>(
    State(p): State<Shared<T>>,
    Path(path): KeyPath,
    headers: HeaderMap,
    uri: Uri,
    bytes: Bytes,
) -> Response {
    let lang = lang_of(&headers);
    respond(lang, complete(&p, path, &headers, &uri, &bytes).await)
}

/// 补录收款行行号: a checker completes the payee's bank number of a payment waiting at
/// 待补录, and the bank pays it ([`Party::complete_payee_bank`]); the voucher's page
/// follows, showing it processed. A number that is not 12 digits, or a voucher that no
/// longer waits, is an error next to the field and changes nothing.
async fn complete<T: Transport>(
    p: &Inner<T>,
    path: (String, String, String, String, String),
    headers: &HeaderMap,
    uri: &Uri,
    bytes: &Bytes,
) -> Result<Response, PortalError> {
    let (org, key) = key_of(path);
    let (desk, fields) = match open_post(
        p,
        headers,
        uri,
        bytes,
        &org,
        Some(OrgRole::AgentBank),
        Action::CheckVoucher,
    )
    .await?
    {
        Ok(opened) => opened,
        Err(response) => return Ok(response),
    };
    let Some(found) = find(&desk, &key).await? else {
        return Ok(desk.not_found());
    };
    if found.0.direction != Direction::Received || found.0.leg != Leg::Original {
        return Ok(desk.not_found());
    }
    let b = BankTexts::of(desk.lang);
    let typed = fields.text("bank_no");
    let refused = |message: String| {
        let mut errors = FieldErrors::default();
        errors.add("bank_no", message);
        Typed {
            bank_no: typed.clone(),
            errors,
            ..Typed::default()
        }
    };
    let bank_no = match read_bank_no(b, &typed) {
        Ok(bank_no) => bank_no,
        Err(message) => return again(&desk, &key, refused(message.to_owned())).await,
    };
    let href = voucher_href(&base(&desk), &key);
    // A repeat of a form that went through (a double click) is answered by `once` with where
    // the first led; a voucher no longer waiting is refused by the completion itself.
    desk.once(&fields, async {
        let login = desk.user.login.clone();
        match desk
            .party
            .complete_payee_bank(&key, bank_no.as_str(), &login)
            .await
        {
            Ok(outcome) => {
                tracing::info!(key = %key, user = %login, outcome = ?outcome, "payee bank number completed at the bank's desk");
                Ok(Ok(href.clone()))
            }
            // Another completion won, or the voucher moved on meanwhile: nothing was done.
            Err(PartyError::Direct(
                DirectError::Invalid(_) | DirectError::Library(LibraryError::Illegal { .. }),
            )) => Ok(Err(again(&desk, &key, refused(b.not_awaiting.to_owned())).await?)),
            Err(e) => Err(PortalError::Work(e.to_string())),
        }
    })
    .await
}

/// The voucher's page again, with the form's errors (nothing was done).
async fn again<T: Transport>(
    desk: &Desk<T>,
    key: &VoucherKey,
    typed: Typed,
) -> Result<Response, PortalError> {
    let Some(found) = find(desk, key).await? else {
        return Ok(desk.not_found());
    };
    let actions = actions_for(desk, key, &found.0, typed);
    detail_page(
        desk,
        &base(desk),
        desk.href("/bank/exceptions"),
        found,
        actions,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await
}

/// The party's business date today, for pages that show the year's books.
pub(super) fn year_of<T: Transport>(party: &Party<T>) -> Option<guoku_domain::StYear> {
    let (t, _) = party.now();
    Party::<T>::business_date(t)
        .to_string()
        .get(..4)
        .and_then(|y| y.parse().ok())
}
