//! Finance's desk (财政, issue 6 part 3): the approval queue of direct payments, batch
//! signing with one PIN and a progress bar, quota notices, refunds and returns,
//! reconciliation results and the budget execution dashboard.
//!
//! - **Approvals** (`/o/{org}/finance/approvals`): the direct-payment drafts (5201) of the
//!   user's divisions waiting for a check (checkers) or a signature (signers); each opens a
//!   page with the voucher's fields, the steps taken on it (who, when) and the buttons of
//!   the user's posts: check (审核通过), return to the maker with a reason (退回经办), sign
//!   (签章). The steps are the API's ([`crate::api::drafts`]): segregation of duties (maker
//!   ≠ checker ≠ signer) is decided there, inside the store's transaction, and a refusal is
//!   shown on the page.
//! - **Batch signing** (`/o/{org}/finance/batch-sign`): a signer picks checked drafts (the
//!   boxes of a page, or every checked draft of their divisions, up to [`BATCH_MAX`]),
//!   enters the signing PIN once, which is checked by opening the signer's PIN key store
//!   (a wrong PIN counts towards the store's lock, and is a field error; nothing is signed);
//!   a background task then signs the drafts one by one as the user, and the job's page
//!   shows a progress bar that htmx refreshes every second. Jobs live in this process
//!   ([`jobs`]), keyed by organisation and a random id, at most [`JOBS_MAX`], finished ones
//!   kept for [`JOB_KEEP_SECS`]; only the user who started a job sees it.
//! - **Quota notices** (5106/5108 to PBOC, 5105 to banks), **refunds and returns** (2203/2204
//!   received, 5201s returned by banks), **reconciliation** (5501–5503 and their receipts'
//!   results): pages of at most [`PAGE`] records of the user's divisions, read from the
//!   voucher library; at most [`SCAN_MAX`] library records are read for one page.
//! - **Budget execution** (`/o/{org}/finance/execution`): paid amounts and remaining plan
//!   quota by division, unit, function class (类) and month from finance's books, as tables
//!   and a bar chart drawn on the server (SVG, no script).
//!
//! Every page is for finance's own users: another role's desk answers 404 here, an action
//! the user's posts do not allow 403, a record of a division the user does not see 404.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use guoku_domain::{AdmDivCode, Amount, StYear, gbk_len};
use guoku_seal::pki::OrgRole;
use guoku_store::access::UserId;
use guoku_store::books::{AccountKind, BookFilter, Tenant};
use guoku_store::drafts::{DraftFilter, DraftRecord, DraftState, LIST_MAX};
use guoku_store::library::{Direction, REASON_MAX_GBK_BYTES, VoucherRecord};
use guoku_voucher::VoucherKey;
use guoku_voucher::lifecycle::{Exchange, Leg};
use time::OffsetDateTime;

use super::desk::FormId;
use super::desk::{Desk, FieldErrors, Fields, body};
use super::i18n::{Lang, text_table};
use super::{Inner, PortalError, Shared, lang_of, respond};
use crate::access::Action;
use crate::api::drafts::{self as api_drafts};
use crate::api::error::ErrorCode;
use crate::api::scope::Acting;
use crate::api::view;
use crate::exchange::Transport;
use crate::party::Party;

/// Records on one page of a list.
pub const PAGE: usize = 100;
/// Most library records read to fill one page of a list with the user's divisions.
pub const SCAN_MAX: usize = 1_000;
/// Most drafts one batch signs.
pub const BATCH_MAX: usize = 5_000;
/// Most batch jobs kept in this process (running or finished).
pub const JOBS_MAX: usize = 64;
/// How long a finished job stays visible, in seconds.
pub const JOB_KEEP_SECS: u64 = 3_600;
/// Most failures a job keeps with their reasons.
const FAILURES_KEPT: usize = 1_000;
/// The voucher type of a direct payment.
const VT_5201: &str = "5201";
/// Which file of an organisation's key directory is the signer's PIN key store.
/// The offset the desk shows times in (China Standard Time, UTC+8).
const SHOWN_OFFSET_SECS: i64 = 8 * 3_600;

text_table! {
    /// The finance desk's texts.
    FinanceTexts, FINANCE_ZH, FINANCE_EN;
    nav_approvals: "审核签章", "Approvals";
    nav_batch: "批量签章", "Batch signing";
    nav_quotas: "额度通知", "Quota notices";
    nav_returns: "退款与退回", "Refunds and returns";
    nav_reconcile: "对账结果", "Reconciliation";
    nav_execution: "预算执行", "Budget execution";
    nav_indicators: "指标与计划", "Indicators and plans";
    indicators_title: "预算指标与用款计划", "Budget indicators and spending plans";
    indicators_hint: "指标为各单位本年度批复的预算指标；用款计划按月从指标下达，直接支付从计划中支出。", "An indicator is a unit's budget approved for the year; monthly spending plans are drawn from it, and direct payments from the plans.";
    indicators: "预算指标", "Indicators";
    plans: "用款计划", "Spending plans";
    eco_class: "经济分类", "Economic class";
    fund_type: "资金性质", "Fund type";
    pay_type: "支付方式", "Payment type";
    approved: "批复", "Approved";
    to_plans: "已下达计划", "Given to plans";
    granted: "下达", "Granted";
    used: "已用", "Used";
    remaining_col: "可用", "Remaining";
    rows_cut: "仅显示前 {max} 行。", "Only the first {max} rows are shown.";
    nothing: "无记录。", "Nothing recorded.";

    approvals_title: "直接支付审核签章", "Direct payments to check and sign";
    approvals_hint: "本人所辖区划内待审核或待签章的直接支付凭证（5201）。", "Direct payments (5201) of your divisions waiting for a check or a signature.";
    waiting_check: "待审核", "Waiting for a check";
    waiting_sign: "待签章", "Waiting for a signature";
    voucher_no: "凭证号", "Voucher no.";
    division: "区划", "Division";
    amount: "金额（元）", "Amount (yuan)";
    unit: "预算单位", "Budget unit";
    payee: "收款人", "Payee";
    maker: "经办人", "Maker";
    when: "时间（北京时间）", "Time (Beijing)";
    state: "状态", "State";
    none_waiting: "没有待处理的凭证。", "Nothing is waiting.";
    next_page: "下一页", "Next page";
    first_page: "第一页", "First page";
    open: "查看", "Open";

    draft_title: "直接支付凭证", "Direct payment voucher";
    fields: "凭证要素", "Voucher fields";
    field: "要素", "Field";
    value: "值", "Value";
    steps: "办理环节", "Steps taken";
    step: "环节", "Step";
    who: "办理人", "By";
    events: "状态变化", "State changes";
    reason: "原因", "Reason";
    check_button: "审核通过", "Check (approve)";
    reject_button: "退回经办", "Return to the maker";
    reject_reason: "退回原因", "Reason for returning";
    sign_button: "签章", "Sign";
    reason_required: "请填写退回原因。", "Give the reason for returning it.";
    reason_too_long: "退回原因过长（最多 {max} 字节）。", "The reason is too long (at most {max} GBK bytes).";
    refused_title: "操作未执行", "Not done";
    back_to_queue: "返回待办列表", "Back to the queue";
    step_make: "经办", "Make";
    step_check: "审核", "Check";
    step_sign: "签章", "Sign";
    step_reject: "退回", "Return";
    state_made: "待审核", "Waiting for a check";
    state_checked: "待签章", "Waiting for a signature";
    state_signed: "已签章", "Signed";
    state_issued: "已发送", "Issued";
    state_rejected: "已退回经办", "Returned to the maker";
    state_failed: "发送失败", "Could not be issued";

    batch_title: "批量签章", "Batch signing";
    batch_hint: "勾选已审核的凭证，或选择本人所辖区划内全部已审核凭证，输入一次签章 PIN，系统逐笔签章并发送。", "Tick checked vouchers, or choose every checked voucher of your divisions, enter your signing PIN once, and they are signed and sent one by one.";
    select_all: "选择本人所辖区划内全部已审核凭证（最多 {max} 笔）", "Every checked voucher of my divisions (at most {max})";
    select: "选择", "Select";
    pin: "签章 PIN", "Signing PIN";
    pin_hint: "连续输错 5 次将锁定签章密钥，需安全管理员解锁。", "Five wrong PINs in a row lock the signing key until the security administrator resets it.";
    start_button: "开始签章", "Sign them";
    nothing_selected: "请至少选择一笔凭证。", "Select at least one voucher.";
    too_many: "一次最多签章 {max} 笔。", "At most {max} vouchers are signed at once.";
    none_checked: "所选范围内没有已审核的凭证。", "There is no checked voucher in the selection.";
    too_many_jobs: "当前批量签章任务过多，请稍后再试。", "Too many batch jobs are running; try again shortly.";
    job_title: "批量签章进度", "Batch signing progress";
    job_signed: "已签章", "Signed";
    job_failed: "失败", "Failed";
    job_total: "总数", "Total";
    job_running: "正在签章……", "Signing…";
    job_finished: "签章已完成。", "Finished.";
    failures: "失败明细", "Failures";
    not_found_reason: "凭证不存在或不在本人所辖区划内", "no such voucher in your divisions";
    internal_reason: "系统暂时无法处理", "the system could not do it";
    new_batch: "继续批量签章", "Sign another batch";

    quotas_title: "额度通知", "Quota notices";
    quotas_hint: "本人所辖区划内财政发出的清算额度通知（5106/5108，发往人民银行国库）和授权额度通知（5105，发往代理银行）。", "The clearing quota notices finance sent to PBOC (5106/5108) and the authorized quota notices to banks (5105), of your divisions.";
    vt: "凭证类型", "Voucher type";
    receiver: "接收方", "Receiver";
    sender: "发送方", "Sender";
    status: "状态", "Status";
    receipt: "回单", "Receipt";
    receipt_yes: "已收到回单", "Receipt received";
    receipt_no: "未收到回单", "No receipt yet";
    none_found: "没有记录。", "No records.";

    returns_title: "退款与退回", "Refunds and returns";
    returns_hint: "代理银行发来的退款通知（2203 直接支付、2204 授权支付），以及被代理银行退回的直接支付凭证（5201）和原因。", "Refund notices from the banks (2203 direct, 2204 authorized), and direct payments (5201) the banks returned, with their reasons.";
    returned_5201: "被退回的直接支付（5201）", "Returned direct payments (5201)";
    refund_2203: "直接支付退款通知（2203）", "Direct payment refunds (2203)";
    refund_2204: "授权支付退款通知（2204）", "Authorized payment refunds (2204)";
    original_no: "原凭证号", "Original voucher";

    reconcile_title: "对账结果", "Reconciliation results";
    reconcile_hint: "财政与各代理银行的对账（5501 授权额度、5502 支付明细、5503 支付凭证）及代理银行回单中的结果；差异明细为代理银行所列（“本方”指代理银行）。", "Finance's reconciliations with each bank (5501 authorized quota, 5502 payment details, 5503 payment vouchers) and the result in the bank's receipt; differences as the bank listed them (\"本方\" is the bank).";
    check_no: "对账单号", "Check no.";
    bank: "代理银行", "Bank";
    result: "结果", "Result";
    agrees: "相符", "Agrees";
    differs: "不符", "Differs";
    waiting: "等待回单", "Waiting for the receipt";
    diff_num: "差异笔数", "Differences";
    differences: "差异明细", "Differences listed";

    execution_title: "预算执行", "Budget execution";
    execution_hint: "本人所辖区划内直接支付用款计划的已支付金额和剩余额度（元）。", "Paid amounts and remaining plan quota of direct payments in your divisions (yuan).";
    year: "年度", "Year";
    paid: "已支付", "Paid";
    remaining: "剩余额度", "Remaining quota";
    by_division: "按区划", "By division";
    by_unit: "按预算单位", "By budget unit";
    by_func: "按功能分类（类）", "By function class";
    by_month: "按月份", "By month";
    month: "月份", "Month";
    func_class: "功能分类", "Function class";
    chart_title: "各月已支付与剩余额度", "Paid and remaining quota by month";
    show: "查看", "Show";
}

/// This desk's links in the navigation: (path under the organisation, text).
pub(crate) fn nav<T: Transport>(desk: &Desk<T>) -> Vec<(&'static str, &'static str)> {
    if desk.party.role() != OrgRole::Finance {
        return Vec::new();
    }
    let t = FinanceTexts::of(desk.lang);
    let mut links = Vec::new();
    if desk.may(Action::CheckVoucher) || desk.may(Action::SignVoucher) {
        links.push(("/finance/approvals", t.nav_approvals));
    }
    if desk.may(Action::SignVoucher) {
        links.push(("/finance/batch-sign", t.nav_batch));
    }
    if desk.may(Action::ViewVouchers) {
        links.push(("/finance/quotas", t.nav_quotas));
        links.push(("/finance/returns", t.nav_returns));
        links.push(("/finance/reconcile", t.nav_reconcile));
    }
    if desk.may(Action::ViewBooks) {
        links.push(("/finance/indicators", t.nav_indicators));
        links.push(("/finance/execution", t.nav_execution));
    }
    links
}

/// This desk's routes.
pub(crate) fn routes<T: Transport + 'static>() -> Router<Shared<T>> {
    const KEY: &str = "{adm}/{year}/{vt}/{no}";
    Router::new()
        .route("/o/{org}/finance/approvals", get(approvals::<T>))
        .route(
            &format!("/o/{{org}}/finance/approvals/{KEY}"),
            get(draft_page::<T>),
        )
        .route(
            &format!("/o/{{org}}/finance/approvals/{KEY}/check"),
            post(check::<T>),
        )
        .route(
            &format!("/o/{{org}}/finance/approvals/{KEY}/reject"),
            post(reject::<T>),
        )
        .route(
            &format!("/o/{{org}}/finance/approvals/{KEY}/sign"),
            post(sign::<T>),
        )
        .route(
            "/o/{org}/finance/batch-sign",
            get(batch_page::<T>).post(batch_start::<T>),
        )
        .route("/o/{org}/finance/batch-sign/jobs/{id}", get(job_page::<T>))
        .route(
            "/o/{org}/finance/batch-sign/jobs/{id}/progress",
            get(job_progress::<T>),
        )
        .route("/o/{org}/finance/quotas", get(quotas::<T>))
        .route("/o/{org}/finance/returns", get(returns::<T>))
        .route("/o/{org}/finance/reconcile", get(reconcile::<T>))
        .route("/o/{org}/finance/execution", get(execution::<T>))
        .route("/o/{org}/finance/indicators", get(indicators::<T>))
}

// ---------------------------------------------------------------------------------------
// Shared pieces

/// What a handler answers first: the response to send as it is, or the finance desk.
type Opened<D> = Result<D, Response>;

/// A finance user's desk at `org` for a GET, or the answer sending them elsewhere (another
/// role's desk: 404).
async fn open<T: Transport>(
    p: &Inner<T>,
    headers: &HeaderMap,
    uri: &Uri,
    org: &str,
    lang: Lang,
) -> Result<Opened<Desk<T>>, PortalError> {
    let desk = match p.desk(headers, uri, org, lang).await? {
        Ok(desk) => desk,
        Err(response) => return Ok(Err(response)),
    };
    if desk.party.role() != OrgRole::Finance {
        return Ok(Err(desk.not_found()));
    }
    Ok(Ok(desk))
}

/// As [`open`], for a checked POST (origin and CSRF token).
async fn open_post<T: Transport>(
    p: &Inner<T>,
    headers: &HeaderMap,
    uri: &Uri,
    body: &Bytes,
    org: &str,
    lang: Lang,
) -> Result<Opened<(Desk<T>, Fields)>, PortalError> {
    let (desk, fields) = match p.desk_post(headers, uri, body, org, lang).await? {
        Ok(opened) => opened,
        Err(response) => return Ok(Err(response)),
    };
    if desk.party.role() != OrgRole::Finance {
        return Ok(Err(desk.not_found()));
    }
    Ok(Ok((desk, fields)))
}

/// The query's pairs (an unparsable query counts as none).
fn query_of(uri: &Uri) -> Vec<(String, String)> {
    uri.query()
        .and_then(|q| serde_urlencoded::from_str(q).ok())
        .unwrap_or_default()
}

fn param<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

/// `secs` as `YYYY-MM-DD HH:MM` in Beijing time.
fn when(secs: u64) -> String {
    let shown = i64::try_from(secs)
        .ok()
        .and_then(|s| s.checked_add(SHOWN_OFFSET_SECS))
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok());
    match shown {
        Some(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute()
        ),
        None => String::new(),
    }
}

/// Fen as yuan text (`-12.30`), for sums that may not fit an [`Amount`].
fn yuan(fen: i128) -> String {
    let sign = if fen < 0 { "-" } else { "" };
    let abs = fen.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

fn amount_text(fen: Option<i64>) -> String {
    fen.and_then(|f| Amount::from_fen(f).ok())
        .map_or_else(String::new, |a| a.to_string())
}

/// The key `adm/year/vt/no` of a path or a checkbox.
fn key_of(adm: &str, year: &str, vt: &str, no: &str) -> VoucherKey {
    VoucherKey {
        adm_div_code: adm.to_owned(),
        st_year: year.to_owned(),
        vt_code: vt.to_owned(),
        voucher_no: no.to_owned(),
    }
}

fn key_path(key: &VoucherKey) -> String {
    format!(
        "{}/{}/{}/{}",
        key.adm_div_code, key.st_year, key.vt_code, key.voucher_no
    )
}

fn parse_key_path(text: &str) -> Option<VoucherKey> {
    let mut parts = text.split('/');
    let (adm, year, vt, no) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || [adm, year, vt, no].iter().any(|p| p.is_empty()) {
        return None;
    }
    Some(key_of(adm, year, vt, no))
}

/// The user acting through the API's draft steps: the signed-in user with all their posts.
fn acting_of<T>(desk: &Desk<T>) -> Acting {
    Acting {
        login: desk.user.login.clone(),
        who: desk.principal.clone(),
    }
}

/// A page of the desk with `body`.
fn page<T: Transport>(
    desk: &Desk<T>,
    status: StatusCode,
    title: &str,
    body: String,
) -> Result<Response, PortalError> {
    desk.page(status, title, body)
}

/// A link under the desk with a query.
fn with_query(base: &str, pairs: &[(&str, &str)]) -> String {
    let pairs: Vec<(&str, &str)> = pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .copied()
        .collect();
    if pairs.is_empty() {
        return base.to_owned();
    }
    format!(
        "{base}?{}",
        serde_urlencoded::to_string(pairs).unwrap_or_default()
    )
}

// ---------------------------------------------------------------------------------------
// The approval queue

/// A draft in a list.
struct DraftRow {
    href: String,
    key_path: String,
    voucher_no: String,
    adm_div: String,
    amount: String,
    unit: String,
    payee: String,
    maker: String,
    when: String,
}

/// The logins of the users `ids`, cached.
async fn login_of(
    party_store: &guoku_store::Store,
    cache: &mut HashMap<UserId, String>,
    id: UserId,
) -> Result<String, PortalError> {
    if let Some(login) = cache.get(&id) {
        return Ok(login.clone());
    }
    let login = party_store
        .access()
        .user(id)
        .await?
        .map_or_else(|| format!("user:{id}"), |u| u.login);
    cache.insert(id, login.clone());
    Ok(login)
}

async fn draft_rows<T: Transport>(
    desk: &Desk<T>,
    drafts: &[DraftRecord],
) -> Result<Vec<DraftRow>, PortalError> {
    let mut cache = HashMap::new();
    let mut rows = Vec::with_capacity(drafts.len());
    for d in drafts.iter().filter(|d| d.key.vt_code == VT_5201) {
        let voucher = api_drafts::voucher_of(d).ok();
        let field = |name: &str| {
            voucher
                .as_ref()
                .and_then(|v| v.header.get(name))
                .unwrap_or_default()
                .to_owned()
        };
        let unit = match (field("AgencyName"), field("AgencyCode")) {
            (name, code) if name.is_empty() => code,
            (name, code) => format!("{name} ({code})"),
        };
        rows.push(DraftRow {
            href: desk.href(&format!("/finance/approvals/{}", key_path(&d.key))),
            key_path: key_path(&d.key),
            voucher_no: d.key.voucher_no.clone(),
            adm_div: d.key.adm_div_code.clone(),
            amount: amount_text(d.amount_fen),
            unit,
            payee: field("PayeeAcctName"),
            maker: login_of(&desk.party.store, &mut cache, d.maker).await?,
            when: when(d.created_at),
        });
    }
    Ok(rows)
}

/// A page of the drafts in `state` of the user's divisions after the cursor `after`.
async fn drafts_page<T: Transport>(
    desk: &Desk<T>,
    state: DraftState,
    after: u64,
) -> Result<(Vec<DraftRecord>, Option<u64>), PortalError> {
    let filter = DraftFilter {
        state: Some(state),
        within: desk.principal.divisions.clone(),
        units: desk.principal.units.iter().cloned().collect(),
        after,
        limit: LIST_MAX,
    };
    let page = desk
        .party
        .store
        .drafts()
        .list(&filter)
        .await
        .map_err(|e| PortalError::Work(e.to_string()))?;
    Ok((page.items, page.next))
}

#[derive(Template)]
#[template(
    ext = "html",
    source = r#"<h1>{{ f.approvals_title }}</h1>
<p class="hint">{{ f.approvals_hint }}</p>
<p>{% if may_check %}<a href="{{ check_href }}"{% if state == "made" %} aria-current="page"{% endif %}>{{ f.waiting_check }}</a> {% endif %}{% if may_sign %}<a href="{{ sign_href }}"{% if state == "checked" %} aria-current="page"{% endif %}>{{ f.waiting_sign }}</a>{% endif %}</p>
<section class="card">
{% if rows.is_empty() %}<p>{{ f.none_waiting }}</p>{% else %}
<table class="drafts">
<thead><tr><th>{{ f.voucher_no }}</th><th>{{ f.division }}</th><th>{{ f.amount }}</th><th>{{ f.unit }}</th><th>{{ f.payee }}</th><th>{{ f.maker }}</th><th>{{ f.when }}</th><th></th></tr></thead>
<tbody>
{% for r in rows %}<tr><td><code>{{ r.voucher_no }}</code></td><td>{{ r.adm_div }}</td><td class="num">{{ r.amount }}</td><td>{{ r.unit }}</td><td>{{ r.payee }}</td><td>{{ r.maker }}</td><td>{{ r.when }}</td><td><a href="{{ r.href }}">{{ f.open }}</a></td></tr>
{% endfor %}</tbody>
</table>{% endif %}
<p>{% if let Some(first) = first %}<a href="{{ first }}">{{ f.first_page }}</a> {% endif %}{% if let Some(next) = next %}<a href="{{ next }}" rel="next">{{ f.next_page }}</a>{% endif %}</p>
</section>
"#
)]
struct ApprovalsBody<'a> {
    f: &'static FinanceTexts,
    state: &'a str,
    may_check: bool,
    may_sign: bool,
    check_href: String,
    sign_href: String,
    rows: Vec<DraftRow>,
    first: Option<String>,
    next: Option<String>,
}

/// `GET /o/{org}/finance/approvals?state=made|checked&after=`: the queue.
async fn approvals<T: Transport + 'static>(
    State(p): State<Shared<T>>,
    Path(org): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let lang = lang_of(&headers);
    respond(lang, approvals_page(&p, lang, &org, &headers, &uri).await)
}

async fn approvals_page<T: Transport>(
    p: &Inner<T>,
    lang: Lang,
    org: &str,
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<Response, PortalError> {
    let desk = match open(p, headers, uri, org, lang).await? {
        Ok(desk) => desk,
        Err(response) => return Ok(response),
    };
    let (may_check, may_sign) = (
        desk.may(Action::CheckVoucher),
        desk.may(Action::SignVoucher),
    );
    if !may_check && !may_sign {
        return Ok(desk.forbidden());
    }
    let query = query_of(uri);
    let state = match param(&query, "state") {
        Some("checked") if may_sign => DraftState::Checked,
        Some("made") if may_check => DraftState::Made,
        Some("checked" | "made") => return Ok(desk.forbidden()),
        _ if may_check => DraftState::Made,
        _ => DraftState::Checked,
    };
    let after = param(&query, "after")
        .and_then(|a| a.parse::<u64>().ok())
        .unwrap_or(0);
    let (drafts, next) = drafts_page(&desk, state, after).await?;
    let rows = draft_rows(&desk, &drafts).await?;
    let base = desk.href("/finance/approvals");
    let f = FinanceTexts::of(lang);
    let body = body(&ApprovalsBody {
        f,
        state: state.code(),
        may_check,
        may_sign,
        check_href: with_query(&base, &[("state", "made")]),
        sign_href: with_query(&base, &[("state", "checked")]),
        rows,
        first: (after > 0).then(|| with_query(&base, &[("state", state.code())])),
        next: next
            .map(|n| with_query(&base, &[("state", state.code()), ("after", &n.to_string())])),
    })?;
    page(&desk, StatusCode::OK, f.approvals_title, body)
}

/// A step on a draft, as shown.
struct StepLine {
    step: String,
    login: String,
    when: String,
}

/// A state change of a draft, as shown.
struct EventLine {
    to: String,
    actor: String,
    reason: String,
    when: String,
}

fn state_text(f: &'static FinanceTexts, code: &str) -> &'static str {
    match code {
        "made" => f.state_made,
        "checked" => f.state_checked,
        "signed" => f.state_signed,
        "issued" => f.state_issued,
        "rejected" => f.state_rejected,
        _ => f.state_failed,
    }
}

fn step_text(f: &'static FinanceTexts, code: &str) -> String {
    match code {
        "make" => f.step_make.to_owned(),
        "check" => f.step_check.to_owned(),
        "sign" => f.step_sign.to_owned(),
        "reject" => f.step_reject.to_owned(),
        other => other.to_owned(),
    }
}

#[derive(Template)]
#[template(
    ext = "html",
    source = r#"<h1>{{ f.draft_title }} <code>{{ voucher_no }}</code></h1>
<p><a href="{{ queue }}">{{ f.back_to_queue }}</a></p>
{% if let Some(error) = error %}<p class="error" role="alert">{{ error }}</p>{% endif %}
<section class="card">
<dl>
<dt>{{ f.state }}</dt><dd class="state">{{ state }}</dd>
<dt>{{ f.amount }}</dt><dd>{{ amount }}</dd>
<dt>{{ f.maker }}</dt><dd>{{ maker }}</dd>
<dt>{{ f.when }}</dt><dd>{{ made_at }}</dd>
{% if !reason.is_empty() %}<dt>{{ f.reason }}</dt><dd>{{ reason }}</dd>{% endif %}
</dl>
{% if may_check %}<form method="post" action="{{ action_check }}" class="inline">
<input type="hidden" name="csrf" value="{{ csrf }}">
<input type="hidden" name="form_id" value="{{ form_check }}">
<button type="submit" id="check-button" hx-disabled-elt="this">{{ f.check_button }}</button>
</form>{% endif %}
{% if may_sign %}<form method="post" action="{{ action_sign }}" class="inline">
<input type="hidden" name="csrf" value="{{ csrf }}">
<input type="hidden" name="form_id" value="{{ form_sign }}">
<label>{{ pin_label }} <input name="pin" type="password" autocomplete="off" minlength="6" maxlength="64" required></label>
<button type="submit" id="sign-button" hx-disabled-elt="this">{{ f.sign_button }}</button>
</form>{% endif %}
{% if may_reject %}<form method="post" action="{{ action_reject }}" class="card">
<input type="hidden" name="csrf" value="{{ csrf }}">
<input type="hidden" name="form_id" value="{{ form_reject }}">
<label>{{ f.reject_reason }}
<input name="reason" value="{{ reason_typed }}" maxlength="200" required{% if !reason_error.is_empty() %} aria-invalid="true"{% endif %}></label>
{% if !reason_error.is_empty() %}<p class="error" role="alert">{{ reason_error }}</p>{% endif %}
<button type="submit" id="reject-button" hx-disabled-elt="this">{{ f.reject_button }}</button>
</form>{% endif %}
</section>
<section class="card">
<h2>{{ f.steps }}</h2>
<table class="steps"><thead><tr><th>{{ f.step }}</th><th>{{ f.who }}</th><th>{{ f.when }}</th></tr></thead>
<tbody>{% for s in steps %}<tr><td>{{ s.step }}</td><td>{{ s.login }}</td><td>{{ s.when }}</td></tr>
{% endfor %}</tbody></table>
<h2>{{ f.events }}</h2>
<table class="events"><thead><tr><th>{{ f.state }}</th><th>{{ f.who }}</th><th>{{ f.reason }}</th><th>{{ f.when }}</th></tr></thead>
<tbody>{% for e in events %}<tr><td>{{ e.to }}</td><td>{{ e.actor }}</td><td>{{ e.reason }}</td><td>{{ e.when }}</td></tr>
{% endfor %}</tbody></table>
</section>
<section class="card">
<h2>{{ f.fields }}</h2>
<table class="fields"><thead><tr><th>{{ f.field }}</th><th>{{ f.value }}</th></tr></thead>
<tbody>{% for (name, value) in fields %}<tr><td><code>{{ name }}</code></td><td>{{ value }}</td></tr>
{% endfor %}</tbody></table>
</section>
"#
)]
struct DraftBody<'a> {
    f: &'static FinanceTexts,
    csrf: &'a str,
    voucher_no: &'a str,
    queue: String,
    error: Option<String>,
    state: &'static str,
    amount: String,
    maker: String,
    made_at: String,
    reason: String,
    may_check: bool,
    may_sign: bool,
    may_reject: bool,
    action_check: String,
    action_sign: String,
    action_reject: String,
    pin_label: &'static str,
    form_check: String,
    form_sign: String,
    form_reject: String,
    reason_typed: String,
    reason_error: String,
    steps: Vec<StepLine>,
    events: Vec<EventLine>,
    fields: Vec<(String, String)>,
}

/// The draft `key` if the user sees it: a 5201 of one of their divisions.
async fn seen_draft<T: Transport>(
    desk: &Desk<T>,
    key: &VoucherKey,
) -> Result<Option<DraftRecord>, PortalError> {
    if key.vt_code != VT_5201 || !desk.sees_code(&key.adm_div_code) {
        return Ok(None);
    }
    desk.party
        .store
        .drafts()
        .get(key)
        .await
        .map_err(|e| PortalError::Work(e.to_string()))
}

/// How a draft page shows again after a POST: an error on top, the reason typed and its
/// error.
#[derive(Default)]
struct Shown {
    status: Option<StatusCode>,
    error: Option<String>,
    reason_typed: String,
    reason_error: String,
}

/// The draft's page (the user sees it: checked by the caller).
async fn draft_view<T: Transport>(
    desk: &Desk<T>,
    draft: &DraftRecord,
    shown: Shown,
) -> Result<Response, PortalError> {
    let f = FinanceTexts::of(desk.lang);
    let store = &desk.party.store;
    let api = |e: crate::api::ApiError| PortalError::Work(e.body().message);
    let (view, events) = api_drafts::draft_with_events(store, desk.org(), draft)
        .await
        .map_err(api)?;
    let steps = api_drafts::steps_of(store, &draft.key).await.map_err(api)?;
    let fields = api_drafts::voucher_of(draft)
        .map(|v| {
            v.header
                .iter()
                .map(|(n, v)| (n.to_owned(), v.to_owned()))
                .collect()
        })
        .unwrap_or_default();
    let path = desk.href(&format!("/finance/approvals/{}", key_path(&draft.key)));
    let may_reject = (desk.may(Action::CheckVoucher) || desk.may(Action::SignVoucher))
        && matches!(draft.state, DraftState::Made | DraftState::Checked);
    let body = body(&DraftBody {
        f,
        csrf: &desk.csrf,
        voucher_no: &draft.key.voucher_no,
        queue: desk.href("/finance/approvals"),
        error: shown.error,
        state: state_text(f, draft.state.code()),
        amount: view.amount.unwrap_or_default(),
        maker: view.maker,
        made_at: when(draft.created_at),
        reason: draft.reason.clone().unwrap_or_default(),
        may_check: desk.may(Action::CheckVoucher) && draft.state == DraftState::Made,
        may_sign: desk.may(Action::SignVoucher) && draft.state == DraftState::Checked,
        may_reject,
        action_check: format!("{path}/check"),
        action_sign: format!("{path}/sign"),
        action_reject: format!("{path}/reject"),
        pin_label: desk.t().pin,
        form_check: desk.form_id().to_string(),
        form_sign: desk.form_id().to_string(),
        form_reject: desk.form_id().to_string(),
        reason_typed: shown.reason_typed,
        reason_error: shown.reason_error,
        steps: steps
            .into_iter()
            .map(|s| StepLine {
                step: step_text(f, &s.step),
                login: s.login,
                when: when(s.at),
            })
            .collect(),
        events: events
            .into_iter()
            .map(|e| EventLine {
                to: state_text(f, e.to).to_owned(),
                actor: e.actor,
                reason: e.reason.unwrap_or_default(),
                when: when(e.at),
            })
            .collect(),
        fields,
    })?;
    page(
        desk,
        shown.status.unwrap_or(StatusCode::OK),
        f.draft_title,
        body,
    )
}

/// The path pieces of a draft's key.
type KeyPath = (String, String, String, String, String);

/// `GET /o/{org}/finance/approvals/{adm}/{year}/{vt}/{no}`: a draft, its steps, its buttons.
async fn draft_page<T: Transport + 'static>(
    State(p): State<Shared<T>>,
    Path((org, adm, year, vt, no)): Path<KeyPath>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let lang = lang_of(&headers);
    let outcome = async {
        let desk = match open(&p, &headers, &uri, &org, lang).await? {
            Ok(desk) => desk,
            Err(response) => return Ok(response),
        };
        if !desk.may(Action::ViewVouchers) {
            return Ok(desk.forbidden());
        }
        let key = key_of(&adm, &year, &vt, &no);
        match seen_draft(&desk, &key).await? {
            Some(draft) => draft_view(&desk, &draft, Shown::default()).await,
            None => Ok(desk.not_found()),
        }
    };
    respond(lang, outcome.await)
}

/// A step a person takes on one draft from its page.
#[derive(Clone, Copy, PartialEq, Eq)]
enum PageStep {
    Check,
    Sign,
    Reject,
}

async fn check<T: Transport + 'static>(
    State(p): State<Shared<T>>,
    Path(key): Path<KeyPath>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    step(&p, key, &headers, &uri, &body, PageStep::Check).await
}

async fn sign<T: Transport + 'static>(
    State(p): State<Shared<T>>,
    Path(key): Path<KeyPath>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    step(&p, key, &headers, &uri, &body, PageStep::Sign).await
}

async fn reject<T: Transport + 'static>(
    State(p): State<Shared<T>>,
    Path(key): Path<KeyPath>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    step(&p, key, &headers, &uri, &body, PageStep::Reject).await
}

/// `POST …/check|sign|reject`: the step through the API's draft functions, once per form.
async fn step<T: Transport>(
    p: &Inner<T>,
    (org, adm, year, vt, no): KeyPath,
    headers: &HeaderMap,
    uri: &Uri,
    body: &Bytes,
    step: PageStep,
) -> Response {
    let lang = lang_of(headers);
    let outcome = async {
        let (desk, fields) = match open_post(p, headers, uri, body, &org, lang).await? {
            Ok(opened) => opened,
            Err(response) => return Ok(response),
        };
        let allowed = match step {
            PageStep::Check => desk.may(Action::CheckVoucher),
            PageStep::Sign => desk.may(Action::SignVoucher),
            PageStep::Reject => desk.may(Action::CheckVoucher) || desk.may(Action::SignVoucher),
        };
        if !allowed {
            return Ok(desk.forbidden());
        }
        let key = key_of(&adm, &year, &vt, &no);
        let Some(draft) = seen_draft(&desk, &key).await? else {
            return Ok(desk.not_found());
        };
        let f = FinanceTexts::of(lang);
        let reason = fields.text("reason");
        if step == PageStep::Reject {
            let problem = if reason.is_empty() {
                Some(f.reason_required.to_owned())
            } else if gbk_len(&reason) > REASON_MAX_GBK_BYTES {
                Some(super::i18n::fill(
                    f.reason_too_long,
                    &[("max", &REASON_MAX_GBK_BYTES.to_string())],
                ))
            } else {
                None
            };
            if let Some(problem) = problem {
                let shown = Shown {
                    status: Some(StatusCode::UNPROCESSABLE_ENTITY),
                    error: None,
                    reason_typed: reason,
                    reason_error: problem,
                };
                return draft_view(&desk, &draft, shown).await;
            }
        }
        if step == PageStep::Sign {
            // The signer proves they hold the signing key: its PIN opens the key store.
            let t = desk.t();
            let checked = match super::desk::read_pin(t, fields.get("pin")) {
                Ok(pin) => {
                    let key_dir = p.key_dirs.get(desk.org()).map(std::path::PathBuf::as_path);
                    super::desk::open_signer(t, key_dir, pin).await?
                }
                Err(message) => Err(message.to_owned()),
            };
            if let Err(message) = checked {
                let shown = Shown {
                    status: Some(StatusCode::UNPROCESSABLE_ENTITY),
                    error: Some(format!("{}: {message}", t.pin)),
                    reason_typed: reason,
                    reason_error: String::new(),
                };
                return draft_view(&desk, &draft, shown).await;
            }
        }
        let location = desk.href(&format!("/finance/approvals/{}", key_path(&key)));
        desk.once(&fields, async {
            let acting = acting_of(&desk);
            let party = &desk.party;
            let done = match step {
                PageStep::Check => api_drafts::check_draft(party, &acting, &key).await,
                PageStep::Sign => api_drafts::sign_draft(None, party, &acting, &key).await,
                PageStep::Reject => api_drafts::reject_draft(party, &acting, &key, &reason).await,
            };
            match done {
                Ok(_) => Ok(Ok(location.clone())),
                Err(e) if e.code() == ErrorCode::VoucherNotFound => Ok(Err(desk.not_found())),
                Err(e) if e.code() == ErrorCode::Internal => Err(PortalError::Work(format!(
                    "draft {key}: {}",
                    e.body().message
                ))),
                Err(e) => {
                    // A refusal (segregation of duties, the order of the steps, the books,
                    // the business window): the page again, saying why.
                    let now = seen_draft(&desk, &key).await?.unwrap_or(draft.clone());
                    let shown = Shown {
                        status: Some(StatusCode::CONFLICT),
                        error: Some(format!("{}：{}", f.refused_title, e.body().message)),
                        reason_typed: reason.clone(),
                        reason_error: String::new(),
                    };
                    Ok(Err(draft_view(&desk, &now, shown).await?))
                }
            }
        })
        .await
    };
    respond(lang, outcome.await)
}

// ---------------------------------------------------------------------------------------
// Batch signing

/// One batch signing job.
struct Job {
    /// Who started it: only they see it.
    user: UserId,
    total: u64,
    signed: AtomicU64,
    failed: AtomicU64,
    /// (voucher number, reason), at most [`FAILURES_KEPT`].
    failures: Mutex<Vec<(String, String)>>,
    finished: AtomicBool,
    /// When it finished (the party's clock), 0 while running.
    finished_at: AtomicU64,
}

/// The jobs of this process by (organisation, job id).
type Jobs = Mutex<HashMap<(String, String), Arc<Job>>>;

fn jobs() -> &'static Jobs {
    static JOBS: OnceLock<Jobs> = OnceLock::new();
    JOBS.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Keeps `job` under a fresh id, pruning finished jobs older than [`JOB_KEEP_SECS`] (and,
/// when still full, the oldest finished ones); `None` when [`JOBS_MAX`] jobs are running.
fn register(org: &str, job: Arc<Job>, now: u64) -> Option<String> {
    let mut all = jobs()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    all.retain(|_, j| {
        !j.finished.load(Ordering::SeqCst)
            || j.finished_at
                .load(Ordering::SeqCst)
                .saturating_add(JOB_KEEP_SECS)
                > now
    });
    while all.len() >= JOBS_MAX {
        let oldest = all
            .iter()
            .filter(|(_, j)| j.finished.load(Ordering::SeqCst))
            .min_by_key(|(_, j)| j.finished_at.load(Ordering::SeqCst))
            .map(|(k, _)| k.clone());
        match oldest {
            Some(k) => {
                all.remove(&k);
            }
            None => return None,
        }
    }
    let id = FormId::new().to_string();
    all.insert((org.to_owned(), id.clone()), job);
    Some(id)
}

/// The job `id` of `org` if `user` started it.
fn job_of(org: &str, id: &str, user: UserId) -> Option<Arc<Job>> {
    let all = jobs()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    all.get(&(org.to_owned(), id.to_owned()))
        .filter(|j| j.user == user)
        .cloned()
}

/// Signs `keys` one by one as `acting`, counting into `job`.
async fn run_job<T: Transport>(
    party: Arc<Party<T>>,
    acting: Acting,
    keys: Vec<VoucherKey>,
    job: Arc<Job>,
    texts: &'static FinanceTexts,
) {
    for key in keys {
        let seen = key
            .adm_div_code
            .parse::<AdmDivCode>()
            .is_ok_and(|d| acting.who.sees(&d));
        let outcome = if seen {
            api_drafts::sign_draft(None, &party, &acting, &key).await
        } else {
            Err(crate::api::ApiError::new(ErrorCode::VoucherNotFound))
        };
        match outcome {
            Ok(_) => {
                job.signed.fetch_add(1, Ordering::SeqCst);
            }
            Err(e) => {
                let reason = match e.code() {
                    ErrorCode::VoucherNotFound => texts.not_found_reason.to_owned(),
                    ErrorCode::Internal => {
                        tracing::error!(key = %key, error = %e.body().message, "batch signing: a draft failed");
                        texts.internal_reason.to_owned()
                    }
                    _ => e.body().message,
                };
                let mut failures = job
                    .failures
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if failures.len() < FAILURES_KEPT {
                    failures.push((key.voucher_no.clone(), reason));
                }
                drop(failures);
                job.failed.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
    let (_, now) = party.now();
    job.finished_at.store(now, Ordering::SeqCst);
    job.finished.store(true, Ordering::SeqCst);
    tracing::info!(
        user = %acting.login,
        signed = job.signed.load(Ordering::SeqCst),
        failed = job.failed.load(Ordering::SeqCst),
        "batch signing finished"
    );
}

#[derive(Template)]
#[template(
    ext = "html",
    source = r#"<h1>{{ f.batch_title }}</h1>
<p class="hint">{{ f.batch_hint }}</p>
<form method="post" action="{{ action }}" class="card">
<input type="hidden" name="csrf" value="{{ csrf }}">
<input type="hidden" name="form_id" value="{{ form_id }}">
{% if !select_error.is_empty() %}<p class="error" role="alert">{{ select_error }}</p>{% endif %}
<label><input type="checkbox" name="all" value="1"{% if all %} checked{% endif %}> {{ select_all }}</label>
{% if rows.is_empty() %}<p>{{ f.none_waiting }}</p>{% else %}
<table class="drafts">
<thead><tr><th>{{ f.select }}</th><th>{{ f.voucher_no }}</th><th>{{ f.division }}</th><th>{{ f.amount }}</th><th>{{ f.unit }}</th><th>{{ f.payee }}</th><th>{{ f.maker }}</th><th>{{ f.when }}</th></tr></thead>
<tbody>
{% for r in rows %}<tr><td><input type="checkbox" name="key" value="{{ r.key_path }}"{% if chosen.contains(r.key_path) %} checked{% endif %} aria-label="{{ r.voucher_no }}"></td><td><a href="{{ r.href }}"><code>{{ r.voucher_no }}</code></a></td><td>{{ r.adm_div }}</td><td class="num">{{ r.amount }}</td><td>{{ r.unit }}</td><td>{{ r.payee }}</td><td>{{ r.maker }}</td><td>{{ r.when }}</td></tr>
{% endfor %}</tbody>
</table>{% endif %}
<label>{{ f.pin }}
<input name="pin" type="password" required minlength="6" maxlength="64" autocomplete="off"{% if !pin_error.is_empty() %} aria-invalid="true"{% endif %}></label>
{% if !pin_error.is_empty() %}<p class="error" role="alert">{{ pin_error }}</p>{% endif %}
<p class="hint">{{ f.pin_hint }}</p>
<button type="submit" hx-disabled-elt="this">{{ f.start_button }}</button>
</form>
<p>{% if let Some(first) = first %}<a href="{{ first }}">{{ f.first_page }}</a> {% endif %}{% if let Some(next) = next %}<a href="{{ next }}" rel="next">{{ f.next_page }}</a>{% endif %}</p>
"#
)]
struct BatchBody<'a> {
    f: &'static FinanceTexts,
    csrf: &'a str,
    form_id: String,
    action: String,
    select_all: String,
    all: bool,
    rows: Vec<DraftRow>,
    chosen: Vec<String>,
    select_error: String,
    pin_error: String,
    first: Option<String>,
    next: Option<String>,
}

/// The batch form with the checked drafts after `after`, what was chosen, and errors.
async fn batch_form<T: Transport>(
    desk: &Desk<T>,
    after: u64,
    status: StatusCode,
    chosen: Vec<String>,
    all: bool,
    errors: &FieldErrors,
) -> Result<Response, PortalError> {
    let f = FinanceTexts::of(desk.lang);
    let (drafts, next) = drafts_page(desk, DraftState::Checked, after).await?;
    let rows = draft_rows(desk, &drafts).await?;
    let base = desk.href("/finance/batch-sign");
    let body = body(&BatchBody {
        f,
        csrf: &desk.csrf,
        form_id: desk.form_id().to_string(),
        action: base.clone(),
        select_all: super::i18n::fill(f.select_all, &[("max", &BATCH_MAX.to_string())]),
        all,
        rows,
        chosen,
        select_error: errors.of("key"),
        pin_error: errors.of("pin"),
        first: (after > 0).then(|| base.clone()),
        next: next.map(|n| with_query(&base, &[("after", &n.to_string())])),
    })?;
    page(desk, status, f.batch_title, body)
}

/// `GET /o/{org}/finance/batch-sign?after=`: the checked drafts to pick, and the PIN.
async fn batch_page<T: Transport + 'static>(
    State(p): State<Shared<T>>,
    Path(org): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let lang = lang_of(&headers);
    let outcome = async {
        let desk = match open(&p, &headers, &uri, &org, lang).await? {
            Ok(desk) => desk,
            Err(response) => return Ok(response),
        };
        if !desk.may(Action::SignVoucher) {
            return Ok(desk.forbidden());
        }
        let query = query_of(&uri);
        let after = param(&query, "after")
            .and_then(|a| a.parse::<u64>().ok())
            .unwrap_or(0);
        batch_form(
            &desk,
            after,
            StatusCode::OK,
            Vec::new(),
            false,
            &FieldErrors::default(),
        )
        .await
    };
    respond(lang, outcome.await)
}

/// Every checked draft of the user's divisions, oldest first, at most `max + 1`.
async fn all_checked<T: Transport>(
    desk: &Desk<T>,
    max: usize,
) -> Result<Vec<VoucherKey>, PortalError> {
    let mut keys = Vec::new();
    let mut after = 0;
    loop {
        let (drafts, next) = drafts_page(desk, DraftState::Checked, after).await?;
        keys.extend(
            drafts
                .into_iter()
                .filter(|d| d.key.vt_code == VT_5201)
                .map(|d| d.key),
        );
        match next {
            Some(n) if keys.len() <= max => after = n,
            _ => return Ok(keys),
        }
    }
}

/// `POST /o/{org}/finance/batch-sign`: checks the selection and the PIN, then starts the
/// job and goes to its page (once per form).
async fn batch_start<T: Transport + 'static>(
    State(p): State<Shared<T>>,
    Path(org): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    let lang = lang_of(&headers);
    let outcome = async {
        let (desk, fields) = match open_post(&p, &headers, &uri, &body, &org, lang).await? {
            Ok(opened) => opened,
            Err(response) => return Ok(response),
        };
        if !desk.may(Action::SignVoucher) {
            return Ok(desk.forbidden());
        }
        let key_dir = p.key_dirs.get(desk.org()).cloned();
        desk.once(&fields, start_job(&desk, &fields, key_dir)).await
    };
    respond(lang, outcome.await)
}

async fn start_job<T: Transport + 'static>(
    desk: &Desk<T>,
    fields: &Fields,
    key_dir: Option<PathBuf>,
) -> Result<Result<String, Response>, PortalError> {
    let f = FinanceTexts::of(desk.lang);
    let all = fields.get("all") == Some("1");
    let chosen: Vec<String> = fields.all("key").into_iter().map(str::to_owned).collect();
    let mut errors = FieldErrors::default();
    if !all && chosen.is_empty() {
        errors.add("key", f.nothing_selected);
    }
    if chosen.len() > BATCH_MAX {
        errors.add(
            "key",
            super::i18n::fill(f.too_many, &[("max", &BATCH_MAX.to_string())]),
        );
    }
    let t = desk.t();
    let pin = match super::desk::read_pin(t, fields.get("pin")) {
        Ok(pin) => Some(pin),
        Err(message) => {
            errors.add("pin", message);
            None
        }
    };
    let again = |errors: FieldErrors, chosen: Vec<String>| async move {
        let status = StatusCode::UNPROCESSABLE_ENTITY;
        Ok(Err(batch_form(desk, 0, status, chosen, all, &errors).await?))
    };
    let (Some(pin), true) = (pin, errors.is_empty()) else {
        return again(errors, chosen).await;
    };
    if let Err(message) = super::desk::open_signer(t, key_dir.as_deref(), pin).await? {
        errors.add("pin", message);
        return again(errors, chosen).await;
    }
    let keys = if all {
        all_checked(desk, BATCH_MAX).await?
    } else {
        chosen.iter().filter_map(|k| parse_key_path(k)).collect()
    };
    if keys.is_empty() {
        errors.add("key", f.none_checked);
        return again(errors, chosen).await;
    }
    if keys.len() > BATCH_MAX {
        errors.add(
            "key",
            super::i18n::fill(f.too_many, &[("max", &BATCH_MAX.to_string())]),
        );
        return again(errors, chosen).await;
    }
    let job = Arc::new(Job {
        user: desk.user.id,
        total: keys.len() as u64,
        signed: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        failures: Mutex::new(Vec::new()),
        finished: AtomicBool::new(false),
        finished_at: AtomicU64::new(0),
    });
    let Some(id) = register(desk.org(), job.clone(), desk.now) else {
        errors.add("key", f.too_many_jobs);
        return again(errors, chosen).await;
    };
    tracing::info!(user = %desk.user.login, drafts = keys.len(), "batch signing started");
    tokio::spawn(run_job(desk.party.clone(), acting_of(desk), keys, job, f));
    Ok(Ok(desk.href(&format!("/finance/batch-sign/jobs/{id}"))))
}

#[derive(Template)]
#[template(
    ext = "html",
    source = r#"<div id="batch-progress" class="card"{% if !finished %} hx-get="{{ poll }}" hx-trigger="every 1s" hx-swap="outerHTML"{% endif %} aria-live="polite">
<progress max="{{ total }}" value="{{ handled }}">{{ handled }} / {{ total }}</progress>
<p class="counts"><span class="tag">{{ f.job_signed }} <span class="signed">{{ signed }}</span></span> <span class="tag">{{ f.job_failed }} <span class="failed">{{ failed }}</span></span> <span class="tag">{{ f.job_total }} <span class="total">{{ total }}</span></span></p>
<p class="job-state" data-finished="{{ finished }}">{% if finished %}{{ f.job_finished }}{% else %}{{ f.job_running }}{% endif %}</p>
{% if !failures.is_empty() %}<h2>{{ f.failures }}</h2>
<table class="failures"><thead><tr><th>{{ f.voucher_no }}</th><th>{{ f.reason }}</th></tr></thead>
<tbody>{% for (no, why) in failures %}<tr><td><code>{{ no }}</code></td><td>{{ why }}</td></tr>
{% endfor %}</tbody></table>{% endif %}
</div>
"#
)]
struct ProgressBody<'a> {
    f: &'static FinanceTexts,
    poll: &'a str,
    total: u64,
    signed: u64,
    failed: u64,
    handled: u64,
    finished: bool,
    failures: Vec<(String, String)>,
}

fn progress_of(f: &'static FinanceTexts, poll: &str, job: &Job) -> Result<String, PortalError> {
    // Read `finished` first: the counts read after it are final when it is set.
    let finished = job.finished.load(Ordering::SeqCst);
    let signed = job.signed.load(Ordering::SeqCst);
    let failed = job.failed.load(Ordering::SeqCst);
    let failures = job
        .failures
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    body(&ProgressBody {
        f,
        poll,
        total: job.total,
        signed,
        failed,
        handled: signed + failed,
        finished,
        failures,
    })
}

#[derive(Template)]
#[template(
    ext = "html",
    source = r#"<h1>{{ f.job_title }}</h1>
{{ progress|safe }}
<p><a href="{{ again }}">{{ f.new_batch }}</a></p>
"#
)]
struct JobBody<'a> {
    f: &'static FinanceTexts,
    /// The progress fragment, rendered and escaped by its template.
    progress: &'a str,
    again: String,
}

/// The signer's desk and their batch job `id`, or the answer that sends them elsewhere
/// (a job is seen only by the signer who started it).
async fn open_job<T: Transport>(
    p: &Inner<T>,
    headers: &HeaderMap,
    uri: &Uri,
    (org, id): (&str, &str),
    lang: Lang,
) -> Result<Result<(Desk<T>, Arc<Job>), Response>, PortalError> {
    let desk = match open(p, headers, uri, org, lang).await? {
        Ok(desk) => desk,
        Err(response) => return Ok(Err(response)),
    };
    if !desk.may(Action::SignVoucher) {
        return Ok(Err(desk.forbidden()));
    }
    match job_of(desk.org(), id, desk.user.id) {
        Some(job) => Ok(Ok((desk, job))),
        None => Ok(Err(desk.not_found())),
    }
}

/// `GET /o/{org}/finance/batch-sign/jobs/{id}`: the job's page, refreshing its progress.
async fn job_page<T: Transport + 'static>(
    State(p): State<Shared<T>>,
    Path((org, id)): Path<(String, String)>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let lang = lang_of(&headers);
    let outcome = async {
        let (desk, job) = match open_job(&p, &headers, &uri, (&org, &id), lang).await? {
            Ok(opened) => opened,
            Err(response) => return Ok(response),
        };
        let f = FinanceTexts::of(lang);
        let poll = desk.href(&format!("/finance/batch-sign/jobs/{id}/progress"));
        let progress = progress_of(f, &poll, &job)?;
        let body = body(&JobBody {
            f,
            progress: &progress,
            again: desk.href("/finance/batch-sign"),
        })?;
        page(&desk, StatusCode::OK, f.job_title, body)
    };
    respond(lang, outcome.await)
}

/// `GET …/jobs/{id}/progress`: the progress fragment htmx swaps in (no frame); it stops
/// asking once the job has finished.
async fn job_progress<T: Transport + 'static>(
    State(p): State<Shared<T>>,
    Path((org, id)): Path<(String, String)>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let lang = lang_of(&headers);
    let outcome = async {
        let (desk, job) = match open_job(&p, &headers, &uri, (&org, &id), lang).await? {
            Ok(opened) => opened,
            Err(response) => return Ok(response),
        };
        let f = FinanceTexts::of(lang);
        let html = progress_of(f, &desk.path, &job)?;
        let mut response = (StatusCode::OK, html).into_response();
        let h = response.headers_mut();
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        Ok(response)
    };
    respond(lang, outcome.await)
}

// ---------------------------------------------------------------------------------------
// Library lists: quota notices, refunds and returns, reconciliation

/// Where a library list goes on: the index of the state in the list's states and the
/// arrival-order cursor inside it. Written `state.seq`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Cursor {
    state: usize,
    after: u64,
}

impl Cursor {
    fn parse(text: Option<&str>) -> Cursor {
        text.and_then(|t| t.split_once('.'))
            .and_then(|(s, a)| {
                Some(Cursor {
                    state: s.parse().ok()?,
                    after: a.parse().ok()?,
                })
            })
            .unwrap_or_default()
    }

    fn text(self) -> String {
        format!("{}.{}", self.state, self.after)
    }
}

/// Up to [`PAGE`] legs of type `vt` on `leg` in `direction`, in `states` (in that order,
/// each in arrival order) from `cursor`, of divisions the user sees; at most [`SCAN_MAX`]
/// legs are read. The legs and where the next page starts.
async fn scan<T: Transport>(
    desk: &Desk<T>,
    vt: &str,
    leg: Leg,
    direction: Direction,
    states: &[Exchange],
    mut cursor: Cursor,
) -> Result<(Vec<VoucherRecord>, Option<Cursor>), PortalError> {
    let library = desk.party.store.library();
    let mut found = Vec::new();
    let mut scanned = 0usize;
    while cursor.state < states.len() && found.len() < PAGE && scanned < SCAN_MAX {
        if states[cursor.state].code(leg).is_none() {
            // A state the leg has no code for holds nothing.
            cursor = Cursor {
                state: cursor.state + 1,
                after: 0,
            };
            continue;
        }
        let page = library
            .by_status(vt, leg, states[cursor.state], cursor.after, LIST_MAX)
            .await
            .map_err(|e| PortalError::Work(e.to_string()))?;
        let mut stopped = false;
        for record in page.items {
            cursor.after = record.seq;
            scanned += 1;
            if record.direction == direction && desk.sees_code(&record.key.adm_div_code) {
                found.push(record);
            }
            if found.len() >= PAGE || scanned >= SCAN_MAX {
                stopped = true;
                break;
            }
        }
        if !stopped && page.next.is_none() {
            cursor = Cursor {
                state: cursor.state + 1,
                after: 0,
            };
        }
    }
    let next = (cursor.state < states.len()).then_some(cursor);
    Ok((found, next))
}

/// A voucher leg in a list.
struct VoucherLine {
    vt: String,
    voucher_no: String,
    adm_div: String,
    amount: String,
    counterparty: String,
    status: String,
    reason: String,
    when: String,
    /// The receipt: when it came, or "" when none did.
    receipt: String,
    /// A field of the type worth showing (the original of a refund).
    extra: String,
    /// Reconciliation: the result, the count of differences, and the differences.
    result: String,
    diff_num: String,
    differences: Vec<String>,
}

fn status_text(lang: Lang, record: &VoucherRecord) -> String {
    let name = match lang {
        Lang::Zh => record.exchange.name_zh(),
        Lang::En => record.exchange.name_en(),
    };
    format!("{} {name}", record.status_code())
}

fn field_of(fields: Option<&[(String, String)]>, name: &str) -> String {
    fields
        .and_then(|fs| fs.iter().find(|(n, _)| n == name))
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

async fn voucher_line<T: Transport>(
    desk: &Desk<T>,
    record: &VoucherRecord,
    with_receipt: bool,
    extra_field: Option<&str>,
) -> Result<VoucherLine, PortalError> {
    let fields = view::header_fields(record);
    let shown = view::view_with(&desk.party.registry, desk.org(), record, fields.as_deref());
    let counterparty = match record.direction {
        Direction::Sent => record.receiver.clone(),
        Direction::Received => record.sender.clone(),
    };
    let receipt = if with_receipt {
        desk.party
            .store
            .library()
            .status(&record.key, Leg::Receipt)
            .await
            .map_err(|e| PortalError::Work(e.to_string()))?
    } else {
        None
    };
    let f = FinanceTexts::of(desk.lang);
    let mut line = VoucherLine {
        vt: record.key.vt_code.clone(),
        voucher_no: record.key.voucher_no.clone(),
        adm_div: record.key.adm_div_code.clone(),
        amount: shown.amount.unwrap_or_default(),
        counterparty,
        status: status_text(desk.lang, record),
        reason: record.reason.clone().unwrap_or_default(),
        when: when(record.created_at),
        receipt: receipt
            .as_ref()
            .map_or_else(String::new, |r| when(r.created_at)),
        extra: extra_field.map_or_else(String::new, |n| field_of(fields.as_deref(), n)),
        result: String::new(),
        diff_num: String::new(),
        differences: Vec::new(),
    };
    if with_receipt && extra_field.is_none() && record.key.vt_code.starts_with("550") {
        match &receipt {
            None => line.result = f.waiting.to_owned(),
            Some(r) => {
                let answer = view::header_fields(r);
                let result = field_of(answer.as_deref(), "XCheckResult");
                line.result = match result.as_str() {
                    "0" => f.agrees.to_owned(),
                    "1" => f.differs.to_owned(),
                    other => other.to_owned(),
                };
                line.diff_num = field_of(answer.as_deref(), "XDiffNum");
                line.differences = field_of(answer.as_deref(), "XCheckReason")
                    .split("; ")
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect();
            }
        }
    }
    Ok(line)
}

/// A tab of a list page.
struct Tab {
    href: String,
    text: String,
    current: bool,
}

#[derive(Template)]
#[template(
    ext = "html",
    source = r#"<h1>{{ title }}</h1>
<p class="hint">{{ hint }}</p>
<p class="tabs">{% for tab in tabs %}<a href="{{ tab.href }}"{% if tab.current %} aria-current="page"{% endif %}>{{ tab.text }}</a> {% endfor %}</p>
<section class="card">
{% if lines.is_empty() %}<p>{{ f.none_found }}</p>{% else %}
<table class="vouchers">
<thead><tr><th>{{ f.vt }}</th><th>{% if reconcile %}{{ f.check_no }}{% else %}{{ f.voucher_no }}{% endif %}</th><th>{{ f.division }}</th>{% if !reconcile %}<th>{{ f.amount }}</th>{% endif %}<th>{{ counterparty }}</th><th>{{ f.when }}</th><th>{{ f.status }}</th>{% if let Some(extra) = extra %}<th>{{ extra }}</th>{% endif %}{% if receipts %}<th>{{ f.receipt }}</th>{% endif %}{% if reconcile %}<th>{{ f.result }}</th><th>{{ f.diff_num }}</th><th>{{ f.differences }}</th>{% endif %}<th>{{ f.reason }}</th></tr></thead>
<tbody>
{% for l in lines %}<tr><td>{{ l.vt }}</td><td><code>{{ l.voucher_no }}</code></td><td>{{ l.adm_div }}</td>{% if !reconcile %}<td class="num">{{ l.amount }}</td>{% endif %}<td>{{ l.counterparty }}</td><td>{{ l.when }}</td><td class="status">{{ l.status }}</td>{% if extra.is_some() %}<td><code>{{ l.extra }}</code></td>{% endif %}{% if receipts %}<td>{% if l.receipt.is_empty() %}{{ f.receipt_no }}{% else %}{{ f.receipt_yes }} {{ l.receipt }}{% endif %}</td>{% endif %}{% if reconcile %}<td class="result">{{ l.result }}</td><td>{{ l.diff_num }}</td><td>{% if !l.differences.is_empty() %}<ul class="differences">{% for d in l.differences %}<li>{{ d }}</li>{% endfor %}</ul>{% endif %}</td>{% endif %}<td>{{ l.reason }}</td></tr>
{% endfor %}</tbody>
</table>{% endif %}
<p>{% if let Some(first) = first %}<a href="{{ first }}">{{ f.first_page }}</a> {% endif %}{% if let Some(next) = next %}<a href="{{ next }}" rel="next">{{ f.next_page }}</a>{% endif %}</p>
</section>
"#
)]
struct ListBody<'a> {
    f: &'static FinanceTexts,
    title: &'a str,
    hint: &'a str,
    tabs: Vec<Tab>,
    counterparty: &'a str,
    extra: Option<&'a str>,
    receipts: bool,
    reconcile: bool,
    lines: Vec<VoucherLine>,
    first: Option<String>,
    next: Option<String>,
}

/// One kind of list: its tabs (voucher type, label), what it reads and shows.
struct ListSpec {
    area: &'static str,
    title: &'static str,
    hint: &'static str,
    tabs: Vec<(&'static str, &'static str)>,
}

/// What one tab of a list reads.
struct TabSpec {
    direction: Direction,
    states: &'static [Exchange],
    counterparty: &'static str,
    extra: Option<(&'static str, &'static str)>,
    receipts: bool,
    reconcile: bool,
}

/// A list page: the tab chosen by `vt`, a page of it from `at`.
async fn list_page<T: Transport>(
    p: &Inner<T>,
    headers: &HeaderMap,
    uri: &Uri,
    org: &str,
    spec: fn(&'static FinanceTexts) -> ListSpec,
    tab_spec: fn(&'static FinanceTexts, &str) -> TabSpec,
) -> Result<Response, PortalError> {
    let lang = lang_of(headers);
    let desk = match open(p, headers, uri, org, lang).await? {
        Ok(desk) => desk,
        Err(response) => return Ok(response),
    };
    if !desk.may(Action::ViewVouchers) {
        return Ok(desk.forbidden());
    }
    let f = FinanceTexts::of(lang);
    let spec = spec(f);
    let query = query_of(uri);
    let vt = param(&query, "vt")
        .and_then(|v| spec.tabs.iter().find(|(code, _)| *code == v))
        .or(spec.tabs.first())
        .map_or("", |(code, _)| *code);
    let tab = tab_spec(f, vt);
    let cursor = Cursor::parse(param(&query, "at"));
    let (records, next) = scan(&desk, vt, Leg::Original, tab.direction, tab.states, cursor).await?;
    let mut lines = Vec::with_capacity(records.len());
    for record in &records {
        lines.push(voucher_line(&desk, record, tab.receipts, tab.extra.map(|(n, _)| n)).await?);
    }
    let base = desk.href(spec.area);
    let body = body(&ListBody {
        f,
        title: spec.title,
        hint: spec.hint,
        tabs: spec
            .tabs
            .iter()
            .map(|(code, text)| Tab {
                href: with_query(&base, &[("vt", code)]),
                text: (*text).to_owned(),
                current: *code == vt,
            })
            .collect(),
        counterparty: tab.counterparty,
        extra: tab.extra.map(|(_, label)| label),
        receipts: tab.receipts,
        reconcile: tab.reconcile,
        lines,
        first: (cursor != Cursor::default()).then(|| with_query(&base, &[("vt", vt)])),
        next: next.map(|c| with_query(&base, &[("vt", vt), ("at", &c.text())])),
    })?;
    page(&desk, StatusCode::OK, spec.title, body)
}

/// `GET /o/{org}/finance/quotas?vt=5106|5108|5105&at=`: the quota notices finance sent.
async fn quotas<T: Transport + 'static>(
    State(p): State<Shared<T>>,
    Path(org): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let spec = |f: &'static FinanceTexts| ListSpec {
        area: "/finance/quotas",
        title: f.quotas_title,
        hint: f.quotas_hint,
        tabs: vec![
            ("5106", "5106 清算额度通知"),
            ("5108", "5108 清算额度通知"),
            ("5105", "5105 授权额度通知"),
        ],
    };
    let tab = |f: &'static FinanceTexts, _vt: &str| TabSpec {
        direction: Direction::Sent,
        states: &Exchange::ALL,
        counterparty: f.receiver,
        extra: None,
        receipts: true,
        reconcile: false,
    };
    let lang = lang_of(&headers);
    respond(lang, list_page(&p, &headers, &uri, &org, spec, tab).await)
}

/// `GET /o/{org}/finance/returns?vt=5201|2203|2204&at=`: 5201s the banks returned, and
/// the refund notices received.
async fn returns<T: Transport + 'static>(
    State(p): State<Shared<T>>,
    Path(org): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let spec = |f: &'static FinanceTexts| ListSpec {
        area: "/finance/returns",
        title: f.returns_title,
        hint: f.returns_hint,
        tabs: vec![
            ("5201", f.returned_5201),
            ("2203", f.refund_2203),
            ("2204", f.refund_2204),
        ],
    };
    let tab = |f: &'static FinanceTexts, vt: &str| {
        if vt == VT_5201 {
            TabSpec {
                direction: Direction::Sent,
                states: &[Exchange::Returned],
                counterparty: f.receiver,
                extra: None,
                receipts: false,
                reconcile: false,
            }
        } else {
            TabSpec {
                direction: Direction::Received,
                states: &Exchange::ALL,
                counterparty: f.sender,
                extra: Some(("OriVoucherNo", f.original_no)),
                receipts: false,
                reconcile: false,
            }
        }
    };
    let lang = lang_of(&headers);
    respond(lang, list_page(&p, &headers, &uri, &org, spec, tab).await)
}

/// `GET /o/{org}/finance/reconcile?vt=5501|5502|5503&at=`: the rounds with each bank and
/// the results their receipts carry.
async fn reconcile<T: Transport + 'static>(
    State(p): State<Shared<T>>,
    Path(org): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let spec = |f: &'static FinanceTexts| ListSpec {
        area: "/finance/reconcile",
        title: f.reconcile_title,
        hint: f.reconcile_hint,
        tabs: vec![
            ("5501", "5501 授权额度对账"),
            ("5502", "5502 支付明细对账"),
            ("5503", "5503 支付凭证对账"),
        ],
    };
    let tab = |f: &'static FinanceTexts, _vt: &str| TabSpec {
        direction: Direction::Sent,
        states: &Exchange::ALL,
        counterparty: f.bank,
        extra: None,
        receipts: true,
        reconcile: true,
    };
    let lang = lang_of(&headers);
    respond(lang, list_page(&p, &headers, &uri, &org, spec, tab).await)
}

// ---------------------------------------------------------------------------------------
// Budget execution

/// Paid and remaining, in fen.
#[derive(Clone, Copy, Debug, Default)]
struct Sums {
    paid: i128,
    remaining: i128,
}

/// A row of an execution table.
struct SumRow {
    label: String,
    paid: String,
    remaining: String,
}

/// A bar of the chart (SVG user units).
struct Bar {
    x: u32,
    y: u32,
    height: u32,
    kind: &'static str,
    title: String,
}

/// A month's label under the chart.
struct Tick {
    x: u32,
    text: String,
}

const CHART_HEIGHT: u32 = 160;
const CHART_TOP: u32 = 20;
const BAR_WIDTH: u32 = 14;
const MONTH_WIDTH: u32 = 40;

#[derive(Template)]
#[template(
    ext = "html",
    source = r##"<h1>{{ f.execution_title }}</h1>
<p class="hint">{{ f.execution_hint }}</p>
<form method="get" action="{{ action }}" class="inline">
<label>{{ f.year }} <input name="year" value="{{ year }}" inputmode="numeric" pattern="[0-9]{4}" maxlength="4"></label>
<button type="submit">{{ f.show }}</button>
</form>
<section class="card">
<h2>{{ f.chart_title }}</h2>
<svg class="chart" role="img" aria-label="{{ f.chart_title }}" viewBox="0 0 {{ width }} {{ height }}" width="{{ width }}" height="{{ height }}" xmlns="http://www.w3.org/2000/svg">
<line x1="0" y1="{{ base }}" x2="{{ width }}" y2="{{ base }}" stroke="#888"/>
<rect class="bar-used" x="4" y="2" width="10" height="10"/><text x="18" y="11" font-size="11">{{ f.paid }}</text>
<rect class="bar-granted" x="110" y="2" width="10" height="10"/><text x="124" y="11" font-size="11">{{ f.remaining }}</text>
{% for b in bars %}<rect class="{{ b.kind }}" x="{{ b.x }}" y="{{ b.y }}" width="{{ bar_width }}" height="{{ b.height }}"><title>{{ b.title }}</title></rect>
{% endfor %}{% for t in ticks %}<text x="{{ t.x }}" y="{{ label_y }}" font-size="11" text-anchor="middle">{{ t.text }}</text>
{% endfor %}</svg>
</section>
{% for (title, first, rows) in tables %}<section class="card">
<h2>{{ title }}</h2>
<table class="execution"><thead><tr><th>{{ first }}</th><th>{{ f.paid }}</th><th>{{ f.remaining }}</th></tr></thead>
<tbody>{% for r in rows %}<tr><td>{{ r.label }}</td><td class="num">{{ r.paid }}</td><td class="num">{{ r.remaining }}</td></tr>
{% endfor %}</tbody></table>
</section>
{% endfor %}"##
)]
struct ExecutionBody<'a> {
    f: &'static FinanceTexts,
    action: String,
    year: &'a str,
    width: u32,
    height: u32,
    base: u32,
    label_y: u32,
    bar_width: u32,
    bars: Vec<Bar>,
    ticks: Vec<Tick>,
    tables: Vec<(&'static str, &'static str, Vec<SumRow>)>,
}

fn net(credits: u128, debits: u128) -> i128 {
    i128::try_from(credits).unwrap_or(i128::MAX) - i128::try_from(debits).unwrap_or(i128::MAX)
}

fn rows_of(map: &BTreeMap<String, Sums>) -> Vec<SumRow> {
    map.iter()
        .map(|(label, s)| SumRow {
            label: label.clone(),
            paid: yuan(s.paid),
            remaining: yuan(s.remaining),
        })
        .collect()
}

/// The chart's bars: per month, paid then remaining, scaled to the largest.
fn chart(months: &[Sums; 12]) -> (Vec<Bar>, Vec<Tick>) {
    let top = months
        .iter()
        .flat_map(|s| [s.paid, s.remaining])
        .max()
        .unwrap_or(0)
        .max(1);
    let scale = |v: i128| -> u32 {
        let v = v.max(0);
        u32::try_from(v * i128::from(CHART_HEIGHT) / top).unwrap_or(CHART_HEIGHT)
    };
    let mut bars = Vec::new();
    let mut ticks = Vec::new();
    for (i, s) in (0u32..).zip(months.iter()) {
        let x = i * MONTH_WIDTH + 4;
        let kinds = [
            (s.paid, "bar-used paid"),
            (s.remaining, "bar-granted remaining"),
        ];
        for (j, (value, kind)) in (0u32..).zip(kinds) {
            let height = scale(value);
            bars.push(Bar {
                x: x + j * (BAR_WIDTH + 2),
                y: CHART_TOP + CHART_HEIGHT - height,
                height,
                kind,
                title: format!("{:02} {}", i + 1, yuan(value)),
            });
        }
        ticks.push(Tick {
            x: x + BAR_WIDTH,
            text: (i + 1).to_string(),
        });
    }
    (bars, ticks)
}

/// `GET /o/{org}/finance/execution?year=`: paid and remaining by division, unit, function
/// class and month, for the divisions the user sees.
async fn execution<T: Transport + 'static>(
    State(p): State<Shared<T>>,
    Path(org): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let lang = lang_of(&headers);
    let outcome = async {
        let desk = match open(&p, &headers, &uri, &org, lang).await? {
            Ok(desk) => desk,
            Err(response) => return Ok(response),
        };
        if !desk.may(Action::ViewBooks) {
            return Ok(desk.forbidden());
        }
        let f = FinanceTexts::of(lang);
        let query = query_of(&uri);
        let (today, _) = desk.party.now();
        let this_year = today.year().to_string();
        let year_text = param(&query, "year").unwrap_or(&this_year).to_owned();
        let year: StYear = match year_text.parse() {
            Ok(y) => y,
            Err(_) => this_year
                .parse()
                .map_err(|_| PortalError::Work("no budget year for today".into()))?,
        };
        let store = &desk.party.store;
        let divisions: Vec<_> = store
            .access()
            .divisions()
            .await?
            .into_iter()
            .filter(|d| desk.sees(&d.code))
            .collect();
        let mut by_division = BTreeMap::new();
        let mut by_unit = BTreeMap::new();
        let mut by_func = BTreeMap::new();
        let mut by_month = [Sums::default(); 12];
        let mut unit_names: HashMap<(AdmDivCode, String), String> = HashMap::new();
        for division in &divisions {
            let tenant = Tenant {
                adm_div: division.code,
                year,
            };
            for (kind, paid) in [(AccountKind::PlanUsed, true), (AccountKind::Plan, false)] {
                for (label, account) in store.book_accounts(BookFilter::all(kind, tenant)).await? {
                    let value = if paid {
                        net(account.credits_posted, account.debits_posted)
                    } else {
                        net(account.credits_posted, account.debits_posted)
                            - i128::try_from(account.debits_pending).unwrap_or(i128::MAX)
                    };
                    let add = |s: &mut Sums| {
                        if paid {
                            s.paid += value;
                        } else {
                            s.remaining += value;
                        }
                    };
                    add(by_division
                        .entry(format!("{} {}", division.code, division.name))
                        .or_default());
                    let name = match unit_names.get(&(division.code, label.unit.clone())) {
                        Some(name) => name.clone(),
                        None => {
                            let name = store
                                .access()
                                .budget_unit(&division.code, &label.unit)
                                .await?
                                .map_or_else(String::new, |u| u.name);
                            unit_names.insert((division.code, label.unit.clone()), name.clone());
                            name
                        }
                    };
                    add(by_unit.entry(format!("{} {name}", label.unit)).or_default());
                    let class = label.func_class.get(..3).unwrap_or(&label.func_class);
                    add(by_func.entry(class.to_owned()).or_default());
                    if let Some(m) = usize::from(label.month).checked_sub(1).filter(|m| *m < 12) {
                        add(&mut by_month[m]);
                    }
                }
            }
        }
        let (bars, ticks) = chart(&by_month);
        let months: BTreeMap<String, Sums> = (1..=12)
            .zip(by_month.iter())
            .map(|(m, s)| (format!("{m:02}"), *s))
            .collect();
        let width = 12 * MONTH_WIDTH + 8;
        let body = body(&ExecutionBody {
            f,
            action: desk.href("/finance/execution"),
            year: &year.get().to_string(),
            width,
            height: CHART_TOP + CHART_HEIGHT + 20,
            base: CHART_TOP + CHART_HEIGHT,
            label_y: CHART_TOP + CHART_HEIGHT + 14,
            bar_width: BAR_WIDTH,
            bars,
            ticks,
            tables: vec![
                (f.by_division, f.division, rows_of(&by_division)),
                (f.by_unit, f.unit, rows_of(&by_unit)),
                (f.by_func, f.func_class, rows_of(&by_func)),
                (f.by_month, f.month, rows_of(&months)),
            ],
        })?;
        page(&desk, StatusCode::OK, f.execution_title, body)
    };
    respond(lang, outcome.await)
}

/// Most rows each table of the indicators page shows.
const BOOK_ROWS_MAX: usize = 1_000;

/// A row of the indicators page: what it is, then its amounts.
struct BookRow {
    cells: Vec<String>,
    amounts: Vec<String>,
}

#[derive(Template)]
#[template(
    ext = "html",
    source = r##"<h1>{{ f.indicators_title }}</h1>
<p class="hint">{{ f.indicators_hint }}</p>
<form method="get" action="{{ action }}" class="inline-form">
<label>{{ f.year }} <input name="year" value="{{ year }}" inputmode="numeric" maxlength="4"></label>
<button type="submit">{{ f.show }}</button>
</form>
{% for table in tables %}<section class="card">
<h2>{{ table.0 }}</h2>
{% if table.2.is_empty() %}<p>{{ f.nothing }}</p>{% else %}
<table class="list books"><thead><tr>{% for h in table.1 %}<th>{{ h }}</th>{% endfor %}</tr></thead>
<tbody>{% for r in table.2 %}<tr>{% for c in r.cells %}<td>{{ c }}</td>{% endfor %}{% for a in r.amounts %}<td class="num">{{ a }}</td>{% endfor %}</tr>
{% endfor %}</tbody></table>{% endif %}
{% if table.3 %}<p class="hint">{{ cut }}</p>{% endif %}
</section>{% endfor %}
"##
)]
struct IndicatorsBody<'a> {
    f: &'static FinanceTexts,
    action: String,
    year: &'a str,
    /// (title, headings, rows, cut short)
    tables: Vec<(&'static str, Vec<&'static str>, Vec<BookRow>, bool)>,
    cut: String,
}

/// `GET /o/{org}/finance/indicators?year=`: the units' budget indicators and their monthly
/// spending plans in the user's divisions, from finance's books.
async fn indicators<T: Transport + 'static>(
    State(p): State<Shared<T>>,
    Path(org): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let lang = lang_of(&headers);
    let outcome = async {
        let desk = match open(&p, &headers, &uri, &org, lang).await? {
            Ok(desk) => desk,
            Err(response) => return Ok(response),
        };
        if !desk.may(Action::ViewBooks) {
            return Ok(desk.forbidden());
        }
        let f = FinanceTexts::of(lang);
        let query = query_of(&uri);
        let (today, _) = desk.party.now();
        let this_year = today.year().to_string();
        let year: StYear = param(&query, "year")
            .and_then(|y| y.parse().ok())
            .map_or_else(|| this_year.parse(), Ok)
            .map_err(|_| PortalError::Work("no budget year for today".into()))?;
        let store = &desk.party.store;
        let divisions: Vec<_> = store
            .access()
            .divisions()
            .await?
            .into_iter()
            .filter(|d| desk.sees(&d.code))
            .collect();
        let (mut indicator_rows, mut plan_rows) = (Vec::new(), Vec::new());
        for division in &divisions {
            let tenant = Tenant {
                adm_div: division.code,
                year,
            };
            for (label, a) in store
                .book_accounts(BookFilter::all(AccountKind::Indicator, tenant))
                .await?
            {
                let remaining = net(a.credits_posted, a.debits_posted)
                    - i128::try_from(a.debits_pending).unwrap_or(i128::MAX);
                indicator_rows.push(BookRow {
                    cells: vec![
                        division.code.to_string(),
                        label.unit,
                        label.func_class,
                        label.eco_class,
                        label.fund_type,
                        label.pay_type,
                    ],
                    amounts: vec![
                        yuan(i128::try_from(a.credits_posted).unwrap_or(i128::MAX)),
                        yuan(i128::try_from(a.debits_posted).unwrap_or(i128::MAX)),
                        yuan(remaining),
                    ],
                });
            }
            for (label, a) in store
                .book_accounts(BookFilter::all(AccountKind::Plan, tenant))
                .await?
            {
                let used = a.debits_posted.saturating_add(a.debits_pending);
                plan_rows.push(BookRow {
                    cells: vec![
                        division.code.to_string(),
                        label.unit,
                        format!("{:02}", label.month),
                        label.func_class,
                    ],
                    amounts: vec![
                        yuan(i128::try_from(a.credits_posted).unwrap_or(i128::MAX)),
                        yuan(i128::try_from(used).unwrap_or(i128::MAX)),
                        yuan(net(a.credits_posted, used)),
                    ],
                });
            }
        }
        let cut_indicators = indicator_rows.len() > BOOK_ROWS_MAX;
        let cut_plans = plan_rows.len() > BOOK_ROWS_MAX;
        indicator_rows.truncate(BOOK_ROWS_MAX);
        plan_rows.truncate(BOOK_ROWS_MAX);
        let body = body(&IndicatorsBody {
            f,
            action: desk.href("/finance/indicators"),
            year: &year.get().to_string(),
            tables: vec![
                (
                    f.indicators,
                    vec![
                        f.division,
                        f.unit,
                        f.func_class,
                        f.eco_class,
                        f.fund_type,
                        f.pay_type,
                        f.approved,
                        f.to_plans,
                        f.remaining_col,
                    ],
                    indicator_rows,
                    cut_indicators,
                ),
                (
                    f.plans,
                    vec![
                        f.division,
                        f.unit,
                        f.month,
                        f.func_class,
                        f.granted,
                        f.used,
                        f.remaining_col,
                    ],
                    plan_rows,
                    cut_plans,
                ),
            ],
            cut: super::i18n::fill(f.rows_cut, &[("max", &BOOK_ROWS_MAX.to_string())]),
        })?;
        page(&desk, StatusCode::OK, f.indicators_title, body)
    };
    respond(lang, outcome.await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_languages_fill_every_text() {
        for (key, zh) in FINANCE_ZH.entries() {
            assert!(!zh.is_empty(), "{key}");
        }
        for (key, en) in FINANCE_EN.entries() {
            assert!(!en.is_empty(), "{key}");
        }
    }

    #[test]
    fn cursors_and_keys_read_back() {
        let c = Cursor {
            state: 3,
            after: 42,
        };
        assert_eq!(Cursor::parse(Some(&c.text())), c);
        assert_eq!(Cursor::parse(Some("x")), Cursor::default());
        let key = key_of("430102", "2026", "5201", "ZF1");
        assert_eq!(parse_key_path(&key_path(&key)), Some(key));
        assert_eq!(parse_key_path("430102/2026/5201"), None);
        assert_eq!(parse_key_path("430102/2026/5201/ZF1/x"), None);
        assert_eq!(parse_key_path("430102//5201/ZF1"), None);
    }

    #[test]
    fn amounts_and_times_read_as_people_write_them() {
        assert_eq!(yuan(0), "0.00");
        assert_eq!(yuan(12_345), "123.45");
        assert_eq!(yuan(-5), "-0.05");
        // 2026-01-01 00:00 UTC is 08:00 in Beijing.
        assert_eq!(when(1_767_225_600), "2026-01-01 08:00");
    }

    #[test]
    fn the_chart_scales_to_the_largest_bar() {
        let mut months = [Sums::default(); 12];
        months[0].paid = 50;
        months[0].remaining = 100;
        months[11].paid = -7;
        let (bars, ticks) = chart(&months);
        assert_eq!((bars.len(), ticks.len()), (24, 12));
        assert_eq!(bars[1].height, CHART_HEIGHT);
        assert_eq!(bars[0].height, CHART_HEIGHT / 2);
        assert_eq!(bars[22].height, 0, "a negative sum draws nothing");
        assert_eq!(bars[1].y, CHART_TOP);
    }
}
