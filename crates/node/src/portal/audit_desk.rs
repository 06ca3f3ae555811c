//! The audit console (电子审计), issue 7 part 4: the audit administrator's (审计管理员) view
//! of the node's tamper-evident log ([`guoku_store::audit`]). For every organisation, and
//! for nobody else: every page asks for [`Action::ViewAuditLog`], which only the audit
//! administrator post holds, so anyone else signed in at the organisation gets 403 (and
//! another organisation's user 403 too, as on every desk).
//!
//! Routes, under `/o/{org}/audit`:
//!
//! - `GET ` (search): the log's entries, newest first, 100 a page (a `before` cursor:
//!   positions below it), by voucher or any object (`object`: the object contains the
//!   text), user (`actor`, exactly), action (`action`, exactly), kind (`kind`) and a range
//!   of UTC dates (`from`, `to`, both included); each entry with its position, time (UTC),
//!   kind, user, post, action, object, result, source address, request id and detail;
//! - `GET /export.csv` (same parameters): the search as a CSV file (UTF-8 with a byte
//!   order mark, so Excel reads the Chinese right; a header row; RFC 4180 quoting; a cell
//!   that starts with `=`, `+`, `-`, `@`, a tab or a carriage return is prefixed with `'`
//!   so no spreadsheet runs it as a formula), at most [`SEARCH_MAX`] rows a file (when a
//!   file is full, the answer's `x-guoku-next-before` header names the `before` of the next);
//! - `GET /heads`: this node's signed tree heads (size, time, root, reason), newest first,
//!   with the log's size and archive point;
//! - `GET /peers`: the heads received from the other parties and what checking them found;
//! - `GET /alarms`: alarms, newest first.
//!
//! Every page only reads: no GET writes anything (so reading the log is not itself a leaf).

use askama::Template;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use guoku_audit::{Entry, Kind};
use guoku_store::audit::{Filter, PeerHeadState, SEARCH_MAX};

use super::bank::{cursor, open, pager, param};
use super::desk::{Desk, FieldErrors, body};
use super::i18n::{Lang, text_table};
use super::{PortalError, Shared, lang_of, respond};
use crate::access::Action;
use crate::audit_archive::utc;
use crate::exchange::Transport;

/// Entries one page of the search lists.
const PAGE: u32 = 100;
/// Heads, peer heads or alarms one page lists.
const LIST_PAGE: usize = 100;
/// Longest search text taken, in bytes.
const TEXT_MAX: usize = 256;
/// The byte order mark that starts an exported file.
const BOM: &[u8] = b"\xEF\xBB\xBF";

text_table! {
    /// The audit console's pages.
    AuditTexts, AUDIT_ZH, AUDIT_EN;
    nav_audit: "电子审计", "Audit log";
    search_title: "审计日志检索", "Search the audit log";
    search_hint: "本节点防篡改审计日志（RFC 6962 默克尔树）的全部记录：凭证状态变化、账务批次、审批步骤和管理操作，按时间倒序。时间均为协调世界时（UTC）。只有审计管理员可查看。", "Every leaf of this node's tamper-evident audit log (an RFC 6962 Merkle tree): voucher state changes, ledger batches, approval steps and administrative acts, newest first. Times are UTC. For the audit administrator only.";
    object: "凭证号或对象（包含）", "Voucher or object (contains)";
    actor: "用户（精确）", "User (exact)";
    action: "操作（精确）", "Action (exact)";
    kind: "类别", "Kind";
    any_kind: "全部", "any";
    from: "起始日期（UTC，含）", "From (UTC date, included)";
    to: "截止日期（UTC，含）", "To (UTC date, included)";
    search: "查询", "Search";
    export: "导出 CSV", "Export CSV";
    export_hint: "导出当前查询条件下的记录（UTF-8 带 BOM，可直接用 Excel 打开），每个文件最多 {max} 条，从最新的开始；超出部分请缩小查询范围，或按页面提示从下一位置继续导出。以 = + - @ 等字符开头的内容前加单引号，防止被表格软件当作公式执行。", "Exports the records this search finds (UTF-8 with a BOM, so Excel opens it directly), at most {max} rows a file, newest first; for more, narrow the search or continue from the position the page gives. Cells starting with = + - @ and the like get a leading quote so no spreadsheet runs them as formulas.";
    bad_date: "日期格式应为 YYYY-MM-DD。", "A date is written YYYY-MM-DD.";
    bad_range: "起始日期不能晚于截止日期。", "The start date is after the end date.";
    bad_kind: "未知的类别。", "Unknown kind.";
    too_long: "查询内容过长（最多 256 字节）。", "The search text is too long (at most 256 bytes).";
    col_seq: "位置", "Position";
    col_at: "时间（UTC）", "Time (UTC)";
    col_kind: "类别", "Kind";
    col_actor: "用户", "User";
    col_post: "岗位", "Post";
    col_action: "操作", "Action";
    col_object: "对象", "Object";
    col_result: "结果", "Result";
    col_source: "来源地址", "Source address";
    col_request: "请求编号", "Request id";
    col_detail: "内容", "Detail";
    kind_voucher: "凭证", "voucher";
    kind_ledger: "账务", "ledger";
    kind_admin: "管理", "admin";
    kind_draft: "审批", "draft";
    empty: "没有符合条件的记录。", "Nothing matches.";
    next_page: "下一页（更早）", "Next page (older)";
    first_page: "第一页（最新）", "First page (newest)";
    sub_search: "日志检索", "Search";
    sub_heads: "本方树头", "Our tree heads";
    sub_peers: "对方树头", "Other parties' heads";
    sub_alarms: "告警", "Alarms";
    heads_title: "本方签名树头", "Our signed tree heads";
    heads_hint: "本节点按计划、每个营业日结束时及备份时用业务专用章签署的树头：叶子数、时间、根哈希和签署原因。每个树头承诺了当时的全部日志，任何修改、删除或重排都会使根哈希不符。", "The tree heads this node signed with its business seal on a schedule, at every business-day close and at backups: size, time, root and why. Each commits to the whole log as it was; any edited, deleted or reordered row makes a root disagree.";
    log_size: "日志叶子数：{size}", "Leaves logged: {size}";
    archived_to: "已归档（移出在线库）的叶子：位置 {size} 之前，{at} 归档。", "Archived (moved out of the online store): the leaves before position {size}, on {at}.";
    not_archived: "尚无归档：全部叶子均在线。", "Nothing archived: every leaf is online.";
    col_size: "叶子数", "Size";
    col_root: "根哈希", "Root";
    col_reason: "原因", "Reason";
    no_heads: "尚未签署树头。", "No tree head signed yet.";
    peers_title: "对方树头", "The other parties' tree heads";
    peers_hint: "其他参与方随凭证发来的签名树头，及本方对其一致性证明的核验结果；不一致即告警。", "The signed tree heads the other parties sent with their vouchers, and what checking their consistency proofs found; an inconsistent one raises an alarm.";
    col_party: "参与方", "Party";
    col_received: "收到时间（UTC）", "Received (UTC)";
    col_state: "核验状态", "Check";
    state_pending: "待核验", "pending";
    state_consistent: "一致", "consistent";
    state_inconsistent: "不一致", "inconsistent";
    no_peers: "尚未收到其他参与方的树头。", "No head received from another party yet.";
    alarms_title: "告警", "Alarms";
    alarms_hint: "对方树头前后矛盾、或本方日志核验失败时产生的告警，按时间倒序，最多显示最新 {max} 条。", "Alarms raised when a party's heads contradict each other or this node's log fails to verify, newest first; the newest {max} are shown.";
    col_id: "编号", "No.";
    no_alarms: "没有告警。", "No alarm.";
}

/// The console's link: for the audit administrator.
pub(crate) fn nav<T: Transport>(desk: &Desk<T>) -> Vec<(&'static str, &'static str)> {
    if desk.may(Action::ViewAuditLog) {
        vec![("/audit", AuditTexts::of(desk.lang).nav_audit)]
    } else {
        Vec::new()
    }
}

/// The console's routes.
pub(crate) fn routes<T: Transport + 'static>() -> Router<Shared<T>> {
    Router::new()
        .route("/o/{org}/audit", get(search::<T>))
        .route("/o/{org}/audit/export.csv", get(export::<T>))
        .route("/o/{org}/audit/heads", get(heads::<T>))
        .route("/o/{org}/audit/peers", get(peers::<T>))
        .route("/o/{org}/audit/alarms", get(alarms::<T>))
}

fn kind_text(a: &AuditTexts, kind: Kind) -> &'static str {
    match kind {
        Kind::Voucher => a.kind_voucher,
        Kind::Ledger => a.kind_ledger,
        Kind::Admin => a.kind_admin,
        Kind::Draft => a.kind_draft,
    }
}

/// Seconds since the epoch of a UTC date written `YYYY-MM-DD`.
fn date_start(text: &str) -> Option<u64> {
    let mut parts = text.splitn(3, '-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let month = time::Month::try_from(m.parse::<u8>().ok()?).ok()?;
    let date = time::Date::from_calendar_date(y.parse().ok()?, month, d.parse().ok()?).ok()?;
    u64::try_from(date.midnight().assume_utc().unix_timestamp()).ok()
}

/// A search as asked in the query string: the texts as typed (to show them again), the
/// store's filter, and the fields' errors.
struct Search {
    object: String,
    actor: String,
    action: String,
    kind: String,
    from: String,
    to: String,
    filter: Filter,
    errors: FieldErrors,
}

impl Search {
    fn read(uri: &Uri, a: &AuditTexts) -> Search {
        let mut errors = FieldErrors::default();
        let mut text = |name: &'static str| {
            let value = param(uri, name).unwrap_or_default();
            if value.len() > TEXT_MAX {
                errors.add(name, a.too_long);
                return String::new();
            }
            value
        };
        let (object, actor, action, kind, from, to) = (
            text("object"),
            text("actor"),
            text("action"),
            text("kind"),
            text("from"),
            text("to"),
        );
        let some = |s: &String| (!s.is_empty()).then(|| s.clone());
        let mut filter = Filter {
            object: some(&object),
            actor: some(&actor),
            action: some(&action),
            before: param(uri, "before").and_then(|b| b.parse().ok()),
            ..Filter::default()
        };
        if !kind.is_empty() {
            match Kind::parse(&kind) {
                Ok(k) => filter.kind = Some(k),
                Err(_) => errors.add("kind", a.bad_kind),
            }
        }
        if !from.is_empty() {
            match date_start(&from) {
                Some(t) => filter.from = Some(t),
                None => errors.add("from", a.bad_date),
            }
        }
        if !to.is_empty() {
            match date_start(&to) {
                // The whole day: before the next one starts.
                Some(t) => filter.to = Some(t + 86_400),
                None => errors.add("to", a.bad_date),
            }
        }
        if let (Some(from), Some(to)) = (filter.from, filter.to)
            && from >= to
        {
            errors.add("to", a.bad_range);
        }
        Search {
            object,
            actor,
            action,
            kind,
            from,
            to,
            filter,
            errors,
        }
    }

    /// The search's parameters (not the cursor), for links that keep it.
    fn keep(&self) -> [(&'static str, &str); 6] {
        [
            ("object", &self.object),
            ("actor", &self.actor),
            ("action", &self.action),
            ("kind", &self.kind),
            ("from", &self.from),
            ("to", &self.to),
        ]
    }

    /// `path` with the search's parameters, and `before` when given.
    fn href(&self, path: &str, before: Option<u64>) -> String {
        let mut pairs: Vec<(&str, String)> = self
            .keep()
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| (k, v.to_owned()))
            .collect();
        if let Some(before) = before {
            pairs.push(("before", before.to_string()));
        }
        let query = serde_urlencoded::to_string(&pairs).unwrap_or_default();
        if query.is_empty() {
            path.to_owned()
        } else {
            format!("{path}?{query}")
        }
    }
}

/// The console's sub-navigation.
struct SubNav {
    search: String,
    heads: String,
    peers: String,
    alarms: String,
}

impl SubNav {
    fn of<T: Transport>(desk: &Desk<T>) -> Self {
        Self {
            search: desk.href("/audit"),
            heads: desk.href("/audit/heads"),
            peers: desk.href("/audit/peers"),
            alarms: desk.href("/audit/alarms"),
        }
    }
}

/// An entry as a row of the page.
struct Line {
    seq: u64,
    at: String,
    kind: &'static str,
    actor: String,
    post: String,
    action: String,
    object: String,
    result: String,
    source: String,
    request_id: String,
    detail: String,
}

impl Line {
    fn of(a: &AuditTexts, e: Entry) -> Self {
        Self {
            seq: e.seq,
            at: utc(e.at),
            kind: kind_text(a, e.kind),
            actor: e.actor,
            post: e.post,
            action: e.action,
            object: e.object,
            result: e.result,
            source: e.source,
            request_id: e.request_id,
            detail: e.detail,
        }
    }
}

#[derive(Template)]
#[template(
    ext = "html",
    source = r#"<h1>{{ a.search_title }}</h1>
<p class="pager sub"><a href="{{ sub.search }}">{{ a.sub_search }}</a> <a href="{{ sub.heads }}">{{ a.sub_heads }}</a> <a href="{{ sub.peers }}">{{ a.sub_peers }}</a> <a href="{{ sub.alarms }}">{{ a.sub_alarms }}</a></p>
<p class="hint">{{ a.search_hint }}</p>
{% if !s.errors.is_empty() %}<p class="error" role="alert">{{ form_has_errors }}</p>{% endif %}
<form method="get" action="{{ action }}" class="card inline-form">
<label>{{ a.object }} <input name="object" value="{{ s.object }}" maxlength="256" spellcheck="false"></label>
<label>{{ a.actor }} <input name="actor" value="{{ s.actor }}" maxlength="256" autocapitalize="none" spellcheck="false"></label>
<label>{{ a.action }} <input name="action" value="{{ s.action }}" maxlength="256" autocapitalize="none" spellcheck="false"></label>
<label>{{ a.kind }} <select name="kind">
<option value="">{{ a.any_kind }}</option>
{% for k in kinds %}<option value="{{ k.0 }}"{% if k.0 == s.kind %} selected{% endif %}>{{ k.1 }}</option>
{% endfor %}</select></label>
<label>{{ a.from }} <input name="from" type="date" value="{{ s.from }}"></label>
<label>{{ a.to }} <input name="to" type="date" value="{{ s.to }}"></label>
<button type="submit">{{ a.search }}</button>
</form>
{% for e in s.errors.0 %}<p class="error" role="alert">{{ e.message }}</p>{% endfor %}
{% if s.errors.is_empty() %}<p><a href="{{ export_href }}" download>{{ a.export }}</a></p>
<p class="hint">{{ export_hint }}</p>
{% if lines.is_empty() %}<p class="card">{{ a.empty }}</p>{% else %}<table class="audit">
<thead><tr><th>{{ a.col_seq }}</th><th>{{ a.col_at }}</th><th>{{ a.col_kind }}</th><th>{{ a.col_actor }}</th><th>{{ a.col_post }}</th><th>{{ a.col_action }}</th><th>{{ a.col_object }}</th><th>{{ a.col_result }}</th><th>{{ a.col_source }}</th><th>{{ a.col_request }}</th><th>{{ a.col_detail }}</th></tr></thead>
<tbody>
{% for l in lines %}<tr><td class="num seq">{{ l.seq }}</td><td>{{ l.at }}</td><td>{{ l.kind }}</td><td class="actor">{{ l.actor }}</td><td>{{ l.post }}</td><td class="action">{{ l.action }}</td><td class="object">{{ l.object }}</td><td>{{ l.result }}</td><td>{{ l.source }}</td><td>{{ l.request_id }}</td><td>{{ l.detail }}</td></tr>
{% endfor %}</tbody></table>{% endif %}
<p class="pager">{% if let Some(first) = first_href %}<a href="{{ first }}">{{ a.first_page }}</a> {% endif %}{% if let Some(next) = next_href %}<a href="{{ next }}" rel="next">{{ a.next_page }}</a>{% endif %}</p>{% endif %}
"#
)]
struct SearchBody<'a> {
    a: &'static AuditTexts,
    form_has_errors: &'static str,
    sub: SubNav,
    action: String,
    s: &'a Search,
    kinds: Vec<(&'static str, &'static str)>,
    export_href: String,
    export_hint: String,
    lines: Vec<Line>,
    first_href: Option<String>,
    next_href: Option<String>,
}

async fn search<T: Transport>(
    State(p): State<Shared<T>>,
    Path(org): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let lang = lang_of(&headers);
    let outcome = async {
        let desk = match open(&p, &headers, &uri, &org, None, Action::ViewAuditLog).await? {
            Ok(desk) => desk,
            Err(response) => return Ok(response),
        };
        let a = AuditTexts::of(desk.lang);
        let s = Search::read(&uri, a);
        let mut lines = Vec::new();
        let mut next = None;
        if s.errors.is_empty() {
            let filter = Filter {
                limit: PAGE + 1,
                ..s.filter.clone()
            };
            let mut found = desk.party.store.audit().search(&filter).await?;
            if found.len() > PAGE as usize {
                found.truncate(PAGE as usize);
                next = found.last().map(|e| e.seq);
            }
            lines = found.into_iter().map(|e| Line::of(a, e)).collect();
        }
        let path = desk.href("/audit");
        let page = SearchBody {
            a,
            form_has_errors: desk.t().form_has_errors,
            sub: SubNav::of(&desk),
            action: path.clone(),
            s: &s,
            kinds: Kind::ALL
                .into_iter()
                .map(|k| (k.name(), kind_text(a, k)))
                .collect(),
            export_href: s.href(&desk.href("/audit/export.csv"), s.filter.before),
            export_hint: super::i18n::fill(a.export_hint, &[("max", &SEARCH_MAX.to_string())]),
            lines,
            first_href: s.filter.before.map(|_| s.href(&path, None)),
            next_href: next.map(|n| s.href(&path, Some(n))),
        };
        let status = if s.errors.is_empty() {
            StatusCode::OK
        } else {
            StatusCode::BAD_REQUEST
        };
        desk.page(status, a.search_title, body(&page)?)
    };
    respond(lang, outcome.await)
}

// ---------------------------------------------------------------------------------------
// CSV

/// `text` made safe for a spreadsheet: a leading `'` when it starts with a character a
/// spreadsheet may take for the start of a formula (OWASP's list: `=`, `+`, `-`, `@`, tab,
/// carriage return).
fn neutral(text: &str) -> std::borrow::Cow<'_, str> {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        std::borrow::Cow::Owned(format!("'{text}"))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

/// The entries as a CSV file: BOM, header row, one row each, CRLF line ends, fields quoted
/// when they hold a comma, a quote or a line break (RFC 4180).
fn csv_file(lang: Lang, entries: &[Entry]) -> Result<Vec<u8>, PortalError> {
    let a = AuditTexts::of(lang);
    let mut writer = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .quote_style(csv::QuoteStyle::Necessary)
        .from_writer(BOM.to_vec());
    let failed = |e: csv::Error| PortalError::Work(format!("the CSV export: {e}"));
    writer
        .write_record([
            a.col_seq,
            a.col_at,
            a.col_kind,
            a.col_actor,
            a.col_post,
            a.col_action,
            a.col_object,
            a.col_result,
            a.col_source,
            a.col_request,
            a.col_detail,
        ])
        .map_err(failed)?;
    for e in entries {
        let (seq, at) = (e.seq.to_string(), utc(e.at));
        let cells = [
            seq.as_str(),
            &at,
            e.kind.name(),
            &e.actor,
            &e.post,
            &e.action,
            &e.object,
            &e.result,
            &e.source,
            &e.request_id,
            &e.detail,
        ];
        writer
            .write_record(cells.iter().map(|c| neutral(c).into_owned()))
            .map_err(failed)?;
    }
    writer
        .into_inner()
        .map_err(|e| PortalError::Work(format!("the CSV export: {e}")))
}

async fn export<T: Transport>(
    State(p): State<Shared<T>>,
    Path(org): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let lang = lang_of(&headers);
    let outcome = async {
        let desk = match open(&p, &headers, &uri, &org, None, Action::ViewAuditLog).await? {
            Ok(desk) => desk,
            Err(response) => return Ok(response),
        };
        let a = AuditTexts::of(desk.lang);
        let s = Search::read(&uri, a);
        if !s.errors.is_empty() {
            // The search page says what is wrong with it.
            return search_page_again(&desk, &s).await;
        }
        let filter = Filter {
            limit: SEARCH_MAX,
            ..s.filter.clone()
        };
        let entries = desk.party.store.audit().search(&filter).await?;
        let file = csv_file(desk.lang, &entries)?;
        let name = format!(
            "audit-{}-{}.csv",
            desk.org(),
            utc(desk.now).replace([':', '-'], "")
        );
        let mut response = (StatusCode::OK, file).into_response();
        let h = response.headers_mut();
        h.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/csv; charset=utf-8"),
        );
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
            h.insert(CONTENT_DISPOSITION, value);
        }
        h.insert("x-guoku-rows", HeaderValue::from(entries.len()));
        if entries.len() == SEARCH_MAX as usize
            && let Some(last) = entries.last()
        {
            // The file is full: the next one starts below its last position.
            h.insert("x-guoku-next-before", HeaderValue::from(last.seq));
        }
        Ok(response)
    };
    respond(lang, outcome.await)
}

/// The search page for a search that has errors (an export asked with them).
async fn search_page_again<T: Transport>(
    desk: &Desk<T>,
    s: &Search,
) -> Result<Response, PortalError> {
    let a = AuditTexts::of(desk.lang);
    let path = desk.href("/audit");
    let page = SearchBody {
        a,
        form_has_errors: desk.t().form_has_errors,
        sub: SubNav::of(desk),
        action: path,
        s,
        kinds: Kind::ALL
            .into_iter()
            .map(|k| (k.name(), kind_text(a, k)))
            .collect(),
        export_href: String::new(),
        export_hint: String::new(),
        lines: Vec::new(),
        first_href: None,
        next_href: None,
    };
    desk.page(StatusCode::BAD_REQUEST, a.search_title, body(&page)?)
}

// ---------------------------------------------------------------------------------------
// Heads, peer heads, alarms

struct HeadLine {
    size: u64,
    at: String,
    root: String,
    reason: String,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Template)]
#[template(
    ext = "html",
    source = r#"<h1>{{ a.heads_title }}</h1>
<p class="pager sub"><a href="{{ sub.search }}">{{ a.sub_search }}</a> <a href="{{ sub.heads }}">{{ a.sub_heads }}</a> <a href="{{ sub.peers }}">{{ a.sub_peers }}</a> <a href="{{ sub.alarms }}">{{ a.sub_alarms }}</a></p>
<p class="hint">{{ a.heads_hint }}</p>
<section class="card"><p class="log-size">{{ size }}</p><p>{{ archived }}</p></section>
{% if heads.is_empty() %}<p class="card">{{ a.no_heads }}</p>{% else %}<table class="heads">
<thead><tr><th>{{ a.col_size }}</th><th>{{ a.col_at }}</th><th>{{ a.col_root }}</th><th>{{ a.col_reason }}</th></tr></thead>
<tbody>
{% for h in heads %}<tr><td class="num">{{ h.size }}</td><td>{{ h.at }}</td><td><code class="root">{{ h.root }}</code></td><td>{{ h.reason }}</td></tr>
{% endfor %}</tbody></table>{% endif %}
<p class="pager">{% if let Some(first) = first_href %}<a href="{{ first }}">{{ a.first_page }}</a> {% endif %}{% if let Some(next) = next_href %}<a href="{{ next }}" rel="next">{{ a.next_page }}</a>{% endif %}</p>
"#
)]
struct HeadsBody {
    a: &'static AuditTexts,
    sub: SubNav,
    size: String,
    archived: String,
    heads: Vec<HeadLine>,
    first_href: Option<String>,
    next_href: Option<String>,
}

async fn heads<T: Transport>(
    State(p): State<Shared<T>>,
    Path(org): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let lang = lang_of(&headers);
    let outcome = async {
        let desk = match open(&p, &headers, &uri, &org, None, Action::ViewAuditLog).await? {
            Ok(desk) => desk,
            Err(response) => return Ok(response),
        };
        let a = AuditTexts::of(desk.lang);
        let log = desk.party.store.audit();
        let size = log.size().await?;
        let archived = match log.archived().await? {
            Some(point) => super::i18n::fill(
                a.archived_to,
                &[("size", &point.size.to_string()), ("at", &utc(point.at))],
            ),
            None => a.not_archived.to_owned(),
        };
        // Newest first, below the `before` size cursor.
        let before = param(&uri, "before").and_then(|b| b.parse::<u64>().ok());
        let mut all = log.heads().await?;
        all.reverse();
        let mut page: Vec<_> = all
            .into_iter()
            .filter(|h| before.is_none_or(|b| h.size < b))
            .take(LIST_PAGE + 1)
            .collect();
        let next = (page.len() > LIST_PAGE).then(|| {
            page.truncate(LIST_PAGE);
            page.last().map(|h| h.size)
        });
        let path = desk.href("/audit/heads");
        let at = |b: u64| format!("{path}?before={b}");
        let body_ = HeadsBody {
            a,
            sub: SubNav::of(&desk),
            size: super::i18n::fill(a.log_size, &[("size", &size.to_string())]),
            archived,
            heads: page
                .into_iter()
                .map(|h| HeadLine {
                    size: h.size,
                    at: utc(h.at),
                    root: hex(&h.root),
                    reason: h.reason,
                })
                .collect(),
            first_href: before.map(|_| path.clone()),
            next_href: next.flatten().map(at),
        };
        desk.page(StatusCode::OK, a.heads_title, body(&body_)?)
    };
    respond(lang, outcome.await)
}

struct PeerLine {
    peer: String,
    size: u64,
    at: String,
    root: String,
    received: String,
    state: &'static str,
    inconsistent: bool,
}

#[derive(Template)]
#[template(
    ext = "html",
    source = r#"<h1>{{ a.peers_title }}</h1>
<p class="pager sub"><a href="{{ sub.search }}">{{ a.sub_search }}</a> <a href="{{ sub.heads }}">{{ a.sub_heads }}</a> <a href="{{ sub.peers }}">{{ a.sub_peers }}</a> <a href="{{ sub.alarms }}">{{ a.sub_alarms }}</a></p>
<p class="hint">{{ a.peers_hint }}</p>
{% if peers.is_empty() %}<p class="card">{{ a.no_peers }}</p>{% else %}<table class="peers">
<thead><tr><th>{{ a.col_party }}</th><th>{{ a.col_size }}</th><th>{{ a.col_at }}</th><th>{{ a.col_root }}</th><th>{{ a.col_received }}</th><th>{{ a.col_state }}</th></tr></thead>
<tbody>
{% for h in peers %}<tr><td>{{ h.peer }}</td><td class="num">{{ h.size }}</td><td>{{ h.at }}</td><td><code>{{ h.root }}</code></td><td>{{ h.received }}</td><td{% if h.inconsistent %} class="error"{% endif %}>{{ h.state }}</td></tr>
{% endfor %}</tbody></table>{% endif %}
<p class="pager">{% if let Some(first) = first_href %}<a href="{{ first }}">{{ a.first_page }}</a> {% endif %}{% if let Some(next) = next_href %}<a href="{{ next }}" rel="next">{{ a.next_page }}</a>{% endif %}</p>
"#
)]
struct PeersBody {
    a: &'static AuditTexts,
    sub: SubNav,
    peers: Vec<PeerLine>,
    first_href: Option<String>,
    next_href: Option<String>,
}

async fn peers<T: Transport>(
    State(p): State<Shared<T>>,
    Path(org): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let lang = lang_of(&headers);
    let outcome = async {
        let desk = match open(&p, &headers, &uri, &org, None, Action::ViewAuditLog).await? {
            Ok(desk) => desk,
            Err(response) => return Ok(response),
        };
        let a = AuditTexts::of(desk.lang);
        // By party, newest first; `after` counts the lines of the pages before.
        let all = desk.party.store.audit().peer_heads(None).await?;
        let after = usize::try_from(cursor(&uri)).unwrap_or(usize::MAX);
        let more = all.len() > after.saturating_add(LIST_PAGE);
        let peers = all
            .into_iter()
            .skip(after)
            .take(LIST_PAGE)
            .map(|h| PeerLine {
                peer: h.peer,
                size: h.size,
                at: utc(h.at),
                root: hex(&h.root),
                received: utc(h.received_at),
                state: match h.state {
                    PeerHeadState::Pending => a.state_pending,
                    PeerHeadState::Consistent => a.state_consistent,
                    PeerHeadState::Inconsistent => a.state_inconsistent,
                },
                inconsistent: h.state == PeerHeadState::Inconsistent,
            })
            .collect();
        let next = more.then(|| (after + LIST_PAGE) as u64);
        let (first_href, next_href) = pager(uri.path(), &[], after as u64, next);
        let page = PeersBody {
            a,
            sub: SubNav::of(&desk),
            peers,
            first_href,
            next_href,
        };
        desk.page(StatusCode::OK, a.peers_title, body(&page)?)
    };
    respond(lang, outcome.await)
}

struct AlarmLine {
    id: u64,
    at: String,
    peer: String,
    detail: String,
}

#[derive(Template)]
#[template(
    ext = "html",
    source = r#"<h1>{{ a.alarms_title }}</h1>
<p class="pager sub"><a href="{{ sub.search }}">{{ a.sub_search }}</a> <a href="{{ sub.heads }}">{{ a.sub_heads }}</a> <a href="{{ sub.peers }}">{{ a.sub_peers }}</a> <a href="{{ sub.alarms }}">{{ a.sub_alarms }}</a></p>
<p class="hint">{{ hint }}</p>
{% if alarms.is_empty() %}<p class="card">{{ a.no_alarms }}</p>{% else %}<table class="alarms">
<thead><tr><th>{{ a.col_id }}</th><th>{{ a.col_at }}</th><th>{{ a.col_party }}</th><th>{{ a.col_detail }}</th></tr></thead>
<tbody>
{% for l in alarms %}<tr><td class="num">{{ l.id }}</td><td>{{ l.at }}</td><td>{{ l.peer }}</td><td class="error">{{ l.detail }}</td></tr>
{% endfor %}</tbody></table>{% endif %}
"#
)]
struct AlarmsBody {
    a: &'static AuditTexts,
    sub: SubNav,
    hint: String,
    alarms: Vec<AlarmLine>,
}

async fn alarms<T: Transport>(
    State(p): State<Shared<T>>,
    Path(org): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let lang = lang_of(&headers);
    let outcome = async {
        let desk = match open(&p, &headers, &uri, &org, None, Action::ViewAuditLog).await? {
            Ok(desk) => desk,
            Err(response) => return Ok(response),
        };
        let a = AuditTexts::of(desk.lang);
        let alarms = desk
            .party
            .store
            .audit()
            .alarms(LIST_PAGE as u32)
            .await?
            .into_iter()
            .map(|l| AlarmLine {
                id: l.id,
                at: utc(l.at),
                peer: l.peer,
                detail: l.detail,
            })
            .collect();
        let page = AlarmsBody {
            a,
            sub: SubNav::of(&desk),
            hint: super::i18n::fill(a.alarms_hint, &[("max", &LIST_PAGE.to_string())]),
            alarms,
        };
        desk.page(StatusCode::OK, a.alarms_title, body(&page)?)
    };
    respond(lang, outcome.await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_cells_are_neutralised_and_others_kept() {
        for bad in ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx"] {
            assert_eq!(neutral(bad), format!("'{bad}"));
        }
        for good in ["", "ok", "430000/2026/5201/1#original", "'quoted", " =x"] {
            assert_eq!(neutral(good), good);
        }
    }

    #[test]
    fn dates_are_utc_days() {
        assert_eq!(date_start("1970-01-02"), Some(86_400));
        assert_eq!(date_start("2026-02-29"), None);
        assert_eq!(date_start("2026-1-2"), None);
        assert_eq!(date_start("x"), None);
    }

    #[test]
    fn both_languages_fill_every_text() {
        for t in [&AUDIT_ZH, &AUDIT_EN] {
            assert!(t.entries().iter().all(|(_, text)| !text.is_empty()));
        }
    }
}
