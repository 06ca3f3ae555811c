//! PBOC treasury's desk (人民银行国库), issue 6 part 5: clearing requests and quotas, TSA
//! movements, reconciliation.
//!
//! Routes, under `/o/{org}/pboc`:
//!
//! - `GET ` (clearing): the clearing requests (2301) and refund clearing requests (2302) the
//!   banks sent, with their state, PBOC's result (cleared, returned, refused, with the
//!   reason) and the receipt PBOC returned;
//! - `GET /v/{adm_div}/{year}/{vt_code}/{voucher_no}`: one voucher (fields, receipt X
//!   fields, history), read only;
//! - `GET /quotas?div=`: the clearing quotas (清算额度) from PBOC's books, by division, bank,
//!   budget unit, function class, fund type and pay type (5108: direct 11, 5106:
//!   authorized 12): notified, cleared, remaining;
//! - `GET /tsa?div=`: the postings of the treasury single account (国库单一账户) of a
//!   division this budget year, oldest first;
//! - `GET /reconcile`: the reconciliation requests PBOC sent (3502, 3507) with the banks'
//!   results, and the banks' 2507 replies.
//!
//! Every page reads; nothing here changes state. Lists are pages of at most
//! [`super::bank::PAGE`] rows of the user's divisions; another division's voucher or books
//! answer 404.

use askama::Template;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use axum::routing::get;
use guoku_domain::AdmDivCode;
use guoku_seal::pki::OrgRole;
use guoku_store::books::{AccountKind, BookAccount, BookFilter, OpCode, Tenant};
use guoku_store::library::Direction;
use guoku_voucher::VoucherKey;
use guoku_voucher::lifecycle::{Exchange, Leg};

use super::bank::{
    self, BankTexts, CLEARING, Extra, Listing, RECEIVED_STATES, Selection, cursor, find, open,
    pager, param, plain_list, when, yuan,
};
use super::desk::{Desk, body};
use super::i18n::text_table;
use super::{PortalError, Shared, lang_of, respond};
use crate::access::Action;
use crate::exchange::Transport;

/// Reconciliation vouchers at PBOC: the requests it sends and the banks' 3507 replies.
const CHECKS: [&str; 3] = ["3502", "3507", "2507"];

text_table! {
    /// PBOC's pages.
    PbocTexts, PBOC_ZH, PBOC_EN;
    nav_clearing: "清算申请", "Clearing requests";
    nav_quotas: "清算额度", "Clearing quotas";
    nav_tsa: "国库单一账户", "Treasury single account";
    nav_reconcile: "对账", "Reconciliation";
    clearing_hint: "代理银行发来的申请划款凭证（2301）和申请退款凭证（2302）：处理状态、清算结果（已清算、退回、签收失败及原因）和国库回单。", "The clearing requests (2301) and refund clearing requests (2302) the agent banks sent: their state, the result (cleared, returned or refused, with the reason) and the treasury's receipt.";
    quotas_hint: "本国库账簿中的清算额度：按行政区划、代理银行、预算单位、功能分类、资金性质和支付方式（11 直接支付：5108；12 授权支付：5106）。", "The clearing quotas in the treasury's books, by division, agent bank, budget unit, function class, fund type and pay type (11 direct: 5108; 12 authorized: 5106).";
    tsa_hint: "国库单一账户本预算年度的记账流水（最早的在前）。", "The postings of the treasury single account this budget year, oldest first.";
    reconcile_hint: "国库发出的对账请求（3502 凭证对账、3507 清算信息对账）及代理银行的对账结果和回执（2507）。", "The reconciliation requests the treasury sent (3502 vouchers, 3507 clearing information) with the agent banks' results and replies (2507).";
    division: "行政区划", "Division";
    show: "查看", "Show";
    year: "预算年度", "Budget year";
    col_bank: "代理银行", "Agent bank";
    col_unit: "预算单位", "Budget unit";
    col_func: "功能分类", "Function class";
    col_fund: "资金性质", "Fund type";
    col_pay: "支付方式", "Pay type";
    col_granted: "下达额度", "Notified";
    col_used: "已清算", "Cleared";
    col_remaining: "可用额度", "Remaining";
    col_in: "收入", "In";
    col_out: "支出", "Out";
    col_op: "业务", "Operation";
    col_transfer: "记账编号", "Posting";
    balance: "余额", "Balance";
    op_approve: "下达", "Notice";
    op_adjust: "调整", "Adjustment";
    op_allot: "分配", "Allotment";
    op_pay: "支付", "Payment";
    op_restore: "恢复额度", "Restore";
    op_front: "垫付", "Fronted";
    op_request_clearing: "申请划款", "Clearing request";
    op_settle: "清算到账", "Settled";
    op_refund: "退款", "Refund";
    op_clear: "清算", "Clearing";
    op_fund: "拨入", "Funding";
    op_other: "其他", "Other";
}

/// PBOC's links.
pub(crate) fn nav<T: Transport>(desk: &Desk<T>) -> Vec<(&'static str, &'static str)> {
    if desk.party.role() != OrgRole::Pboc {
        return Vec::new();
    }
    let t = PbocTexts::of(desk.lang);
    let mut links = Vec::new();
    if desk.may(Action::ViewVouchers) {
        links.push(("/pboc", t.nav_clearing));
    }
    if desk.may(Action::ViewBooks) {
        links.push(("/pboc/quotas", t.nav_quotas));
        links.push(("/pboc/tsa", t.nav_tsa));
    }
    if desk.may(Action::ViewVouchers) {
        links.push(("/pboc/reconcile", t.nav_reconcile));
    }
    links
}

/// PBOC's routes.
pub(crate) fn routes<T: Transport + 'static>() -> Router<Shared<T>> {
    Router::new()
        .route("/o/{org}/pboc", get(clearing::<T>))
        .route("/o/{org}/pboc/quotas", get(quotas::<T>))
        .route("/o/{org}/pboc/tsa", get(tsa::<T>))
        .route("/o/{org}/pboc/reconcile", get(reconcile::<T>))
        .route(
            "/o/{org}/pboc/v/{adm_div}/{year}/{vt_code}/{voucher_no}",
            get(detail::<T>),
        )
}

fn base<T: Transport>(desk: &Desk<T>) -> String {
    desk.href("/pboc/v")
}

async fn clearing<T: Transport>(
    State(p): State<Shared<T>>,
    Path(org): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let selection = Selection {
        vt_codes: &CLEARING,
        leg: Leg::Original,
        states: &RECEIVED_STATES,
        direction: Some(Direction::Received),
    };
    plain_list(
        &p,
        (&org, &headers, &uri),
        OrgRole::Pboc,
        &selection,
        |desk| {
            let (b, t) = (BankTexts::of(desk.lang), PbocTexts::of(desk.lang));
            Listing {
                base: base(desk),
                title: t.nav_clearing,
                hint: t.clearing_hint,
                before: String::new(),
                extra_title: b.col_receipt,
                extra: Extra::Receipt,
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
        states: &Exchange::ALL,
        direction: None,
    };
    plain_list(
        &p,
        (&org, &headers, &uri),
        OrgRole::Pboc,
        &selection,
        |desk| {
            let (b, t) = (BankTexts::of(desk.lang), PbocTexts::of(desk.lang));
            Listing {
                base: base(desk),
                title: t.nav_reconcile,
                hint: t.reconcile_hint,
                before: String::new(),
                extra_title: b.col_result,
                extra: Extra::Result,
                keep: &[],
            }
        },
    )
    .await
}

async fn detail<T: Transport>(
    State(p): State<Shared<T>>,
    Path((org, adm_div_code, st_year, vt_code, voucher_no)): Path<(
        String,
        String,
        String,
        String,
        String,
    )>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let lang = lang_of(&headers);
    let key = VoucherKey {
        adm_div_code,
        st_year,
        vt_code,
        voucher_no,
    };
    let outcome = async {
        let desk = match open(
            &p,
            &headers,
            &uri,
            &org,
            Some(OrgRole::Pboc),
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
        bank::detail_page(
            &desk,
            &base(&desk),
            desk.href("/pboc"),
            found,
            None,
            StatusCode::OK,
        )
        .await
    };
    respond(lang, outcome.await)
}

/// The divisions a books page shows: the one asked for (`None` when the user does not see
/// it: 404), else every division PBOC serves that the user sees.
fn divisions_of<T: Transport>(desk: &Desk<T>, uri: &Uri) -> Option<Vec<AdmDivCode>> {
    match param(uri, "div") {
        Some(code) => {
            let code: AdmDivCode = code.parse().ok()?;
            desk.sees(&code).then(|| vec![code])
        }
        None => Some(
            desk.party
                .config
                .divisions
                .iter()
                .filter_map(|d| d.parse::<AdmDivCode>().ok())
                .filter(|d| desk.sees(d))
                .collect(),
        ),
    }
}

/// A division to choose.
struct Choice {
    code: String,
    selected: bool,
}

fn choices<T: Transport>(desk: &Desk<T>, uri: &Uri) -> Vec<Choice> {
    let asked = param(uri, "div");
    desk.party
        .config
        .divisions
        .iter()
        .filter(|d| desk.sees_code(d))
        .map(|d| Choice {
            code: d.clone(),
            selected: asked.as_deref() == Some(d.as_str()),
        })
        .collect()
}

/// One clearing quota account.
struct QuotaRow {
    division: String,
    bank: String,
    unit: String,
    func: String,
    fund: String,
    pay: String,
    granted: String,
    used: String,
    remaining: String,
}

#[derive(Template)]
#[template(
    ext = "html",
    source = r#"<h1>{{ t.nav_quotas }}</h1>
<p class="hint">{{ t.quotas_hint }}</p>
<form method="get" action="{{ action }}" class="inline">
<label>{{ t.division }} <select name="div"><option value="">—</option>
{% for c in choices %}<option value="{{ c.code }}"{% if c.selected %} selected{% endif %}>{{ c.code }}</option>
{% endfor %}</select></label>
<button type="submit">{{ t.show }}</button>
</form>
<p>{{ t.year }}: {{ year }}</p>
{% if rows.is_empty() %}<p class="card">{{ b.empty }}</p>{% else %}<table class="quotas">
<thead><tr><th>{{ t.division }}</th><th>{{ t.col_bank }}</th><th>{{ t.col_unit }}</th><th>{{ t.col_func }}</th><th>{{ t.col_fund }}</th><th>{{ t.col_pay }}</th><th>{{ t.col_granted }}</th><th>{{ t.col_used }}</th><th>{{ t.col_remaining }}</th></tr></thead>
<tbody>
{% for r in rows %}<tr><td>{{ r.division }}</td><td>{{ r.bank }}</td><td>{{ r.unit }}</td><td>{{ r.func }}</td><td>{{ r.fund }}</td><td>{{ r.pay }}</td><td class="amount">{{ r.granted }}</td><td class="amount">{{ r.used }}</td><td class="amount">{{ r.remaining }}</td></tr>
{% endfor %}</tbody></table>{% endif %}
<p class="pager">{% if let Some(first) = first_href %}<a href="{{ first }}">{{ b.first_page }}</a> {% endif %}{% if let Some(next) = next_href %}<a href="{{ next }}" rel="next">{{ b.next_page }}</a>{% endif %}</p>
"#
)]
struct QuotasBody {
    t: &'static PbocTexts,
    b: &'static BankTexts,
    action: String,
    choices: Vec<Choice>,
    year: String,
    rows: Vec<QuotaRow>,
    first_href: Option<String>,
    next_href: Option<String>,
}

async fn quotas<T: Transport>(
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
            Some(OrgRole::Pboc),
            Action::ViewBooks,
        )
        .await?
        {
            Ok(desk) => desk,
            Err(response) => return Ok(response),
        };
        let (b, t) = (BankTexts::of(desk.lang), PbocTexts::of(desk.lang));
        let Some(divisions) = divisions_of(&desk, &uri) else {
            return Ok(desk.not_found());
        };
        let Some(year) = bank::year_of(&desk.party) else {
            return Err(PortalError::Work("no budget year for today".into()));
        };
        let mut rows = Vec::new();
        for division in divisions {
            let tenant = Tenant {
                adm_div: division,
                year,
            };
            let mut accounts = desk
                .party
                .store
                .book_accounts(BookFilter::all(AccountKind::ClearingQuota, tenant))
                .await?;
            accounts.sort_by(|a, b| {
                (&a.0.bank, &a.0.unit, &a.0.func_class, &a.0.pay_type).cmp(&(
                    &b.0.bank,
                    &b.0.unit,
                    &b.0.func_class,
                    &b.0.pay_type,
                ))
            });
            for (label, account) in accounts {
                let remaining = account
                    .credits_posted
                    .saturating_sub(account.debits_posted)
                    .saturating_sub(account.debits_pending);
                rows.push(QuotaRow {
                    division: label.adm_div,
                    bank: label.bank,
                    unit: label.unit,
                    func: label.func_class,
                    fund: label.fund_type,
                    pay: label.pay_type,
                    granted: yuan(account.credits_posted),
                    used: yuan(account.debits_posted),
                    remaining: yuan(remaining),
                });
            }
        }
        // A page of the rows, by position.
        let after = usize::try_from(cursor(&uri)).unwrap_or(usize::MAX);
        let limit = bank::PAGE as usize;
        let total = rows.len();
        let rows: Vec<QuotaRow> = rows.into_iter().skip(after).take(limit).collect();
        let next = (after.saturating_add(limit) < total).then(|| (after + limit) as u64);
        let div = param(&uri, "div").unwrap_or_default();
        let (first_href, next_href) = pager(uri.path(), &[("div", &div)], cursor(&uri), next);
        let page = QuotasBody {
            t,
            b,
            action: desk.href("/pboc/quotas"),
            choices: choices(&desk, &uri),
            year: year.get().to_string(),
            rows,
            first_href,
            next_href,
        };
        desk.page(StatusCode::OK, t.nav_quotas, body(&page)?)
    };
    respond(lang, outcome.await)
}

/// One posting of the TSA.
struct Posting {
    id: String,
    at: String,
    op: &'static str,
    amount_in: String,
    amount_out: String,
}

#[derive(Template)]
#[template(
    ext = "html",
    source = r#"<h1>{{ t.nav_tsa }} · {{ division }}</h1>
<p class="hint">{{ t.tsa_hint }}</p>
<form method="get" action="{{ action }}" class="inline">
<label>{{ t.division }} <select name="div">
{% for c in choices %}<option value="{{ c.code }}"{% if c.code == division %} selected{% endif %}>{{ c.code }}</option>
{% endfor %}</select></label>
<button type="submit">{{ t.show }}</button>
</form>
<dl><dt>{{ t.year }}</dt><dd>{{ year }}</dd><dt>{{ t.balance }}</dt><dd class="balance">{{ balance }}</dd></dl>
{% if postings.is_empty() %}<p class="card">{{ b.empty }}</p>{% else %}<table class="postings">
<thead><tr><th>{{ b.col_at }}</th><th>{{ t.col_op }}</th><th>{{ t.col_in }}</th><th>{{ t.col_out }}</th><th>{{ t.col_transfer }}</th></tr></thead>
<tbody>
{% for r in postings %}<tr><td>{{ r.at }}</td><td>{{ r.op }}</td><td class="amount">{{ r.amount_in }}</td><td class="amount">{{ r.amount_out }}</td><td><code>{{ r.id }}</code></td></tr>
{% endfor %}</tbody></table>{% endif %}
<p class="pager">{% if let Some(first) = first_href %}<a href="{{ first }}">{{ b.first_page }}</a> {% endif %}{% if let Some(next) = next_href %}<a href="{{ next }}" rel="next">{{ b.next_page }}</a>{% endif %}</p>
"#
)]
struct TsaBody {
    t: &'static PbocTexts,
    b: &'static BankTexts,
    action: String,
    choices: Vec<Choice>,
    division: String,
    year: String,
    balance: String,
    postings: Vec<Posting>,
    first_href: Option<String>,
    next_href: Option<String>,
}

fn op_name(t: &'static PbocTexts, code: u16) -> &'static str {
    let ops = [
        (OpCode::Approve, t.op_approve),
        (OpCode::Adjust, t.op_adjust),
        (OpCode::Allot, t.op_allot),
        (OpCode::Pay, t.op_pay),
        (OpCode::Restore, t.op_restore),
        (OpCode::Front, t.op_front),
        (OpCode::RequestClearing, t.op_request_clearing),
        (OpCode::Settle, t.op_settle),
        (OpCode::Refund, t.op_refund),
        (OpCode::Clear, t.op_clear),
        (OpCode::Fund, t.op_fund),
    ];
    ops.into_iter()
        .find(|(op, _)| *op as u16 == code)
        .map_or(t.op_other, |(_, name)| name)
}

async fn tsa<T: Transport>(
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
            Some(OrgRole::Pboc),
            Action::ViewBooks,
        )
        .await?
        {
            Ok(desk) => desk,
            Err(response) => return Ok(response),
        };
        let (b, t) = (BankTexts::of(desk.lang), PbocTexts::of(desk.lang));
        let Some(division) = divisions_of(&desk, &uri).and_then(|d| d.into_iter().next()) else {
            return Ok(desk.not_found());
        };
        let Some(year) = bank::year_of(&desk.party) else {
            return Err(PortalError::Work("no budget year for today".into()));
        };
        let tenant = Tenant {
            adm_div: division,
            year,
        };
        let account = BookAccount::tsa(tenant).id();
        let store = &desk.party.store;
        let balance = store.account(account).await?.map_or(0i128, |a| {
            // Money comes in as credits (funding) and goes out as debits (clearing).
            i128::try_from(a.credits_posted).unwrap_or(i128::MAX)
                - i128::try_from(a.debits_posted).unwrap_or(i128::MAX)
        });
        let after = cursor(&uri);
        let page = store.history(account, after, bank::PAGE).await?;
        let postings = page
            .items
            .iter()
            .map(|e| {
                let tr = &e.record.transfer;
                let (amount_in, amount_out) = if tr.credit_account_id == account {
                    (yuan(tr.amount), String::new())
                } else {
                    (String::new(), yuan(tr.amount))
                };
                Posting {
                    id: format!("{:x}", tr.id),
                    at: when(e.record.timestamp),
                    op: op_name(t, tr.code),
                    amount_in,
                    amount_out,
                }
            })
            .collect();
        let div = division.as_str().to_owned();
        let (first_href, next_href) = pager(uri.path(), &[("div", &div)], after, page.next);
        let balance = if balance < 0 {
            format!("-{}", yuan(balance.unsigned_abs()))
        } else {
            yuan(balance.unsigned_abs())
        };
        let page = TsaBody {
            t,
            b,
            action: desk.href("/pboc/tsa"),
            choices: choices(&desk, &uri),
            division: div,
            year: year.get().to_string(),
            balance,
            postings,
            first_href,
            next_href,
        };
        desk.page(StatusCode::OK, t.nav_tsa, body(&page)?)
    };
    respond(lang, outcome.await)
}
