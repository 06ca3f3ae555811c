//! The budget unit's desk (预算单位, the self-service counter 自助柜面), at the counter's
//! organisation: a unit's people pay by authorized payment (8202) at any hour, approve
//! each other's payments, follow every voucher through its life and see their quota.
//!
//! - `GET|POST /o/{org}/unit/pay`: the 8202 form (maker): unit, payee (with the payee book
//!   of payees paid before), amount, purpose. Every field is checked on the server and each
//!   error shown next to its field; the form's one-time id makes a double click one draft.
//! - `GET /o/{org}/unit/vouchers?q=&state=`: the unit's payments, newest first, searched by
//!   payee, voucher number or amount; `GET /o/{org}/unit/v/{adm}/{year}/{vt}/{no}`: one
//!   payment with its fields, the steps taken (who, when), its exchange status and the
//!   bank's receipt fields once the receipt is in.
//! - `POST /o/{org}/unit/v/{adm}/{year}/{vt}/{no}/{check|sign|reject}`: the checker checks
//!   (审核), the signer signs (签章: the counter stamps and sends it to the bank), either
//!   rejects with a reason. Segregation of duties is the API's: the same functions decide.
//! - The home page's panel: the unit's authorized-payment quota by month (granted, used,
//!   remaining) as a table and a bar chart drawn on the server (SVG, no script).
//!
//! A unit's user (one with units granted) sees only their units' payments; another unit's
//! payment answers 404 like a missing one.

use std::collections::BTreeSet;
use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use guoku_domain::Amount;
use guoku_seal::pki::OrgRole;
use guoku_store::books::{AccountKind, BookFilter};
use guoku_store::drafts::{DraftFilter, DraftRecord, DraftState};
use guoku_voucher::lifecycle::Leg;
use guoku_voucher::{VoucherFlag, VoucherKey};

use super::desk::{Desk, FieldErrors, Fields, body};
use super::i18n::{Lang, text_table};
use super::{Inner, PortalError, Shared, lang_of, respond};
use super::{import, pdf};
use crate::access::{Action, Post, Principal};
use crate::api::{Acting, Making, PaymentOrder};
use crate::demo::Payee;
use crate::exchange::Transport;
use crate::party::Party;

text_table! {
    /// The budget unit desk's texts.
    UnitTexts, UNIT_ZH, UNIT_EN;
    nav_pay: "授权支付", "Pay (authorized)";
    nav_vouchers: "支付查询", "Payments";
    pay_title: "财政授权支付（8202）", "Authorized payment (8202)";
    pay_hint: "经办录入后，由本单位审核员审核、签章员签章，凭证即发送代理银行支付。", "After you enter it, your unit's checker checks it and its signer signs it; then it goes to the agent bank to be paid.";
    unit: "预算单位", "Budget unit";
    payee_name: "收款人全称", "Payee name";
    payee_account: "收款人账号", "Payee account";
    payee_bank: "收款人开户行", "Payee bank";
    amount: "金额（元）", "Amount (yuan)";
    summary: "用途", "Purpose";
    payee_book: "收款人名录（以往收款人，可直接选用）", "Payee book (payees paid before: pick one)";
    submit_pay: "提交审核", "Submit for checking";
    required: "必填。", "Required.";
    too_long: "过长。", "Too long.";
    bad_amount: "金额须为正数，最多两位小数，如 1234.50。", "The amount must be positive with at most two decimals, e.g. 1234.50.";
    bad_account: "账号只能包含数字和连字符，6 至 32 位。", "An account is 6 to 32 digits or hyphens.";
    not_your_unit: "只能为本单位支付。", "You pay only for your own unit.";
    no_builder: "本节点的自助柜面不受理支付。", "This node's counter takes no payments.";
    refused: "未能提交：", "Not submitted: ";
    vouchers_title: "支付查询", "Payments";
    search: "查询", "Search";
    search_hint: "收款人、凭证号或金额", "Payee, voucher number or amount";
    state: "状态", "State";
    any_state: "全部", "Any";
    voucher_no: "凭证号", "Voucher no.";
    date: "日期", "Date";
    exchange: "交换状态", "Exchange status";
    none_found: "没有符合条件的支付。", "No payment matches.";
    more: "下一页", "Next page";
    detail_title: "支付凭证", "Payment voucher";
    fields: "凭证要素", "Voucher fields";
    steps: "办理记录", "Steps";
    who: "办理人", "By";
    when: "时间", "When";
    receipt: "银行回单", "The bank's receipt";
    no_receipt: "尚未收到银行回单。", "No receipt from the bank yet.";
    check: "审核通过", "Check (approve)";
    sign: "签章发送", "Sign and send";
    reject: "退回经办", "Reject";
    reason: "退回原因", "Reason";
    quota_title: "授权支付额度（按月）", "Authorized-payment quota by month";
    quota_hint: "额度来自代理银行收到的授权额度通知单（5105）。", "From the quota notices (5105) the agent bank holds.";
    month: "月份", "Month";
    granted: "下达", "Granted";
    used: "已用", "Used";
    remaining: "可用", "Remaining";
    no_quota: "本节点看不到代理银行的额度账。", "This node cannot see the agent bank's quota books.";
    draft_made: "待审核", "To check";
    draft_checked: "待签章", "To sign";
    draft_signed: "签章中", "Being signed";
    draft_issued: "已发送", "Sent";
    draft_rejected: "已退回", "Rejected";
    draft_failed: "失败", "Failed";
    nav_apply: "直接支付申请", "Apply (direct)";
    nav_import: "批量导入", "Batch import";
    apply_title: "财政直接支付申请（5201）", "Direct payment application (5201)";
    apply_hint: "申请提交财政，由财政审核、签章后向代理银行发出直接支付凭证；占用本月用款计划。", "The application goes to finance, whose people check and sign it; the direct payment voucher then goes to the agent bank. It draws on this month's spending plan.";
    submit_apply: "提交财政", "Submit to finance";
    not_at_finance: "您尚未在财政登记，不能提交直接支付申请。", "You are not registered with finance and cannot apply for direct payments.";
    no_finance: "本节点不连接财政，不受理直接支付申请。", "This node is not connected to finance and takes no direct payment applications.";
    applications: "直接支付申请", "Direct payment applications";
    import_title: "批量导入（工资、公务卡）", "Batch import (salary, official card)";
    import_hint: "上传 CSV 或 XLSX 文件。先“检查”查看逐行错误；全部无误后“提交财政”，整张清单作为一笔批量直接支付申请提交。有任何错误都不会提交。", "Upload a CSV or XLSX file. Check it first to see every row's errors; when it has none, submit it to finance as one batch direct payment application. Nothing is submitted while any row has an error.";
    list_kind: "清单类型", "List";
    kind_salary: "工资发放清单", "Salary list";
    kind_card: "公务卡报销清单", "Official-card reimbursement list";
    file: "文件", "File";
    check_file: "检查", "Check";
    submit_file: "提交财政", "Submit to finance";
    no_file: "请选择文件。", "Choose a file.";
    line: "行", "Line";
    column: "列", "Column";
    value: "内容", "Value";
    problem: "问题", "Problem";
    rows_ok: "行数", "Rows";
    total: "合计", "Total";
    file_ok: "清单无误，可以提交。", "The list has no errors; it may be submitted.";
    file_has_errors: "清单有错误，未提交。请修改后重新上传。", "The list has errors and was not submitted. Correct them and upload it again.";
    warnings: "提示", "Warnings";
    too_many_rows: "一张批量申请最多 {max} 行，请拆分清单。", "A batch application takes at most {max} rows; split the list.";
    receipt_pdf: "下载回单（PDF）", "Download the receipt (PDF)";
    plan_title: "直接支付用款计划（按功能分类、月份）", "Direct-payment plans by function class and month";
    func_class: "功能分类", "Function class";
    notice_pdf: "下载入账通知书（PDF）", "Download the credit advice (PDF)";
    no_font: "无法生成 PDF：", "The PDF cannot be made: ";
}

fn draft_state_text(t: &UnitTexts, state: DraftState) -> &'static str {
    match state {
        DraftState::Made => t.draft_made,
        DraftState::Checked => t.draft_checked,
        DraftState::Signed => t.draft_signed,
        DraftState::Issued => t.draft_issued,
        DraftState::Rejected => t.draft_rejected,
        DraftState::Failed => t.draft_failed,
    }
}

fn is_unit_desk<T: Transport>(desk: &Desk<T>) -> bool {
    desk.party.role() == OrgRole::BudgetUnit
}

/// This desk's links in the navigation: (path under the organisation, text).
pub(crate) fn nav<T: Transport>(desk: &Desk<T>) -> Vec<(&'static str, &'static str)> {
    if !is_unit_desk(desk) {
        return Vec::new();
    }
    let t = UnitTexts::of(desk.lang);
    let mut links = Vec::new();
    if desk.may(Action::MakeVoucher) {
        links.push(("/unit/pay", t.nav_pay));
        links.push(("/unit/apply", t.nav_apply));
        links.push(("/unit/import", t.nav_import));
    }
    if desk.may(Action::ViewVouchers) {
        links.push(("/unit/vouchers", t.nav_vouchers));
    }
    links
}

/// This desk's routes.
pub(crate) fn routes<T: Transport + 'static>() -> Router<Shared<T>> {
    Router::new()
        .route(
            "/o/{org}/unit/pay",
            get(|s, o, h, u| form_page::<T>(s, o, h, u, PayKind::Authorized))
                .post(|s, o, h, u, b| form_submit::<T>(s, o, h, u, b, PayKind::Authorized)),
        )
        .route(
            "/o/{org}/unit/apply",
            get(|s, o, h, u| form_page::<T>(s, o, h, u, PayKind::Direct))
                .post(|s, o, h, u, b| form_submit::<T>(s, o, h, u, b, PayKind::Direct)),
        )
        .route(
            "/o/{org}/unit/import",
            get(import_page::<T>)
                .post(import_submit::<T>)
                .layer(axum::extract::DefaultBodyLimit::max(IMPORT_BODY_MAX)),
        )
        .route("/o/{org}/unit/vouchers", get(vouchers_page::<T>))
        .route(
            "/o/{org}/unit/a/{adm}/{year}/{vt}/{no}",
            get(|s, k, h, u| draft_page::<T>(s, k, h, u, true)),
        )
        .route(
            "/o/{org}/unit/v/{adm}/{year}/{vt}/{no}/receipt.pdf",
            get(|s, p, h, u| pdf_of::<T>(s, p, h, u, "v", pdf::DocKind::PaymentReceipt)),
        )
        .route(
            "/o/{org}/unit/v/{adm}/{year}/{vt}/{no}/notice.pdf",
            get(|s, p, h, u| pdf_of::<T>(s, p, h, u, "v", pdf::DocKind::CreditAdvice)),
        )
        .route(
            "/o/{org}/unit/a/{adm}/{year}/{vt}/{no}/receipt.pdf",
            get(|s, p, h, u| pdf_of::<T>(s, p, h, u, "a", pdf::DocKind::PaymentReceipt)),
        )
        .route(
            "/o/{org}/unit/a/{adm}/{year}/{vt}/{no}/notice.pdf",
            get(|s, p, h, u| pdf_of::<T>(s, p, h, u, "a", pdf::DocKind::CreditAdvice)),
        )
        .route(
            "/o/{org}/unit/v/{adm}/{year}/{vt}/{no}",
            get(|s, k, h, u| draft_page::<T>(s, k, h, u, false)),
        )
        .route(
            "/o/{org}/unit/v/{adm}/{year}/{vt}/{no}/{step}",
            post(voucher_step::<T>),
        )
}

/// The units the user pays for: theirs when they are a unit's user, else every unit of
/// their divisions the builder knows (none without a builder).
fn units_of<T: Transport>(p: &Inner<T>, desk: &Desk<T>) -> Vec<(String, String)> {
    let Some(builder) = &p.builder else {
        return Vec::new();
    };
    builder
        .units()
        .into_iter()
        .filter(|(code, _, adm_div)| desk.principal.acts_for(Some(code)) && desk.sees_code(adm_div))
        .map(|(code, name, _)| (code, name))
        .collect()
}

fn acting<T: Transport>(desk: &Desk<T>) -> Acting {
    Acting {
        login: desk.user.login.clone(),
        who: desk.principal.clone(),
    }
}

fn application_path(key: &VoucherKey) -> String {
    format!(
        "/unit/a/{}/{}/{}/{}",
        key.adm_div_code, key.st_year, key.vt_code, key.voucher_no
    )
}

fn key_path(key: &VoucherKey) -> String {
    format!(
        "/unit/v/{}/{}/{}/{}",
        key.adm_div_code, key.st_year, key.vt_code, key.voucher_no
    )
}

// ---------------------------------------------------------------------------------------
// Paying

/// The 8202 form's values as typed.
#[derive(Default)]
struct PayForm {
    unit: String,
    payee_name: String,
    payee_account: String,
    payee_bank: String,
    amount: String,
    summary: String,
}

#[derive(Template)]
#[template(
    ext = "html",
    source = r#"<h1>{{ title }}</h1>
<p class="hint">{{ hint }}</p>
{% if let Some(error) = error %}<p class="error" role="alert">{{ error }}</p>{% endif %}
{% if units.is_empty() %}<p class="error">{{ t.no_builder }}</p>{% else %}
<form method="post" action="{{ action }}" class="card" id="pay-form" hx-disabled-elt="find button[type=submit]">
<input type="hidden" name="csrf" value="{{ csrf }}">
<input type="hidden" name="form_id" value="{{ form_id }}">
<label>{{ t.unit }}
<select name="unit" required>
{% for u in units %}<option value="{{ u.0 }}"{% if u.0 == form.unit %} selected{% endif %}>{{ u.1 }} ({{ u.0 }})</option>
{% endfor %}</select></label>
{% if errors.has("unit") %}<p class="error field-error" data-field="unit">{{ errors.of("unit") }}</p>{% endif %}
<label>{{ t.payee_name }}
<input name="payee_name" value="{{ form.payee_name }}" maxlength="60" list="payee-book" required></label>
{% if errors.has("payee_name") %}<p class="error field-error" data-field="payee_name">{{ errors.of("payee_name") }}</p>{% endif %}
<datalist id="payee-book">{% for p in payees %}<option value="{{ p.name }}">{{ p.account }} {{ p.bank_name }}</option>{% endfor %}</datalist>
<label>{{ t.payee_account }}
<input name="payee_account" value="{{ form.payee_account }}" maxlength="32" inputmode="numeric" required></label>
{% if errors.has("payee_account") %}<p class="error field-error" data-field="payee_account">{{ errors.of("payee_account") }}</p>{% endif %}
<label>{{ t.payee_bank }}
<input name="payee_bank" value="{{ form.payee_bank }}" maxlength="60" required></label>
{% if errors.has("payee_bank") %}<p class="error field-error" data-field="payee_bank">{{ errors.of("payee_bank") }}</p>{% endif %}
<label>{{ t.amount }}
<input name="amount" value="{{ form.amount }}" inputmode="decimal" maxlength="20" required></label>
{% if errors.has("amount") %}<p class="error field-error" data-field="amount">{{ errors.of("amount") }}</p>{% endif %}
<label>{{ t.summary }}
<input name="summary" value="{{ form.summary }}" maxlength="60" required></label>
{% if errors.has("summary") %}<p class="error field-error" data-field="summary">{{ errors.of("summary") }}</p>{% endif %}
<button type="submit">{{ submit }}</button>
</form>
{% if !payees.is_empty() %}<section class="card"><h2>{{ t.payee_book }}</h2><table>
<tr><th>{{ t.payee_name }}</th><th>{{ t.payee_account }}</th><th>{{ t.payee_bank }}</th></tr>
{% for p in payees %}<tr><td>{{ p.name }}</td><td>{{ p.account }}</td><td>{{ p.bank_name }}</td></tr>
{% endfor %}</table></section>{% endif %}
{% endif %}
"#
)]
struct PayBody<'a> {
    t: &'static UnitTexts,
    title: &'static str,
    hint: &'static str,
    submit: &'static str,
    action: String,
    csrf: &'a str,
    form_id: String,
    units: Vec<(String, String)>,
    payees: Vec<Payee>,
    form: PayForm,
    errors: FieldErrors,
    error: Option<String>,
}

/// The payee book: distinct payees of the unit's latest payments.
async fn payee_book<T: Transport>(desk: &Desk<T>) -> Result<Vec<Payee>, PortalError> {
    let drafts = unit_drafts(desk, &desk.party, None, 0, 100).await?;
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for d in drafts.iter().rev() {
        if let Ok(v) = draft_voucher(d) {
            let account = v.header.get("PayeeAcctNo").unwrap_or_default().to_owned();
            if seen.insert(account.clone()) {
                out.push(Payee {
                    name: v.header.get("PayeeAcctName").unwrap_or_default().to_owned(),
                    account,
                    bank_name: v
                        .header
                        .get("PayeeAcctBankName")
                        .unwrap_or_default()
                        .to_owned(),
                    summary: String::new(),
                });
            }
        }
    }
    Ok(out)
}

/// The two payment forms: an authorized payment the counter sends to the bank, or a direct
/// payment application finance issues.
#[derive(Clone, Copy, PartialEq, Eq)]
enum PayKind {
    Authorized,
    Direct,
}

impl PayKind {
    fn path(self) -> &'static str {
        match self {
            PayKind::Authorized => "/unit/pay",
            PayKind::Direct => "/unit/apply",
        }
    }

    fn texts(self, t: &'static UnitTexts) -> (&'static str, &'static str, &'static str) {
        match self {
            PayKind::Authorized => (t.pay_title, t.pay_hint, t.submit_pay),
            PayKind::Direct => (t.apply_title, t.apply_hint, t.submit_apply),
        }
    }
}

/// The finance party this portal serves, if any (the demo serves every party).
fn finance_of<T: Transport>(p: &Inner<T>) -> Option<Arc<Party<T>>> {
    p.parties
        .values()
        .find(|party| party.role() == OrgRole::Finance)
        .cloned()
}

/// The desk's user as finance knows them (a unit's maker is registered there too), if
/// active there.
async fn acting_at<T: Transport>(
    party: &Party<T>,
    desk: &Desk<T>,
) -> Result<Option<Acting>, PortalError> {
    let record = party.store.access().user_by_login(&desk.user.login).await?;
    Ok(record
        .and_then(|r| Principal::from_record(&r).ok())
        .filter(|who| who.active && who.units == desk.principal.units)
        .map(|who| Acting {
            login: desk.user.login.clone(),
            who,
        }))
}

async fn pay_view<T: Transport>(
    p: &Inner<T>,
    desk: &Desk<T>,
    kind: PayKind,
    form: PayForm,
    errors: FieldErrors,
    error: Option<String>,
    status: StatusCode,
) -> Result<Response, PortalError> {
    let t = UnitTexts::of(desk.lang);
    let (title, hint, submit) = kind.texts(t);
    let units = units_of(p, desk);
    let form = PayForm {
        unit: if form.unit.is_empty() {
            units.first().map(|u| u.0.clone()).unwrap_or_default()
        } else {
            form.unit
        },
        ..form
    };
    let html = body(&PayBody {
        t,
        title,
        hint,
        submit,
        action: desk.href(kind.path()),
        csrf: &desk.csrf,
        form_id: desk.form_id().to_string(),
        units,
        payees: payee_book(desk).await?,
        form,
        errors,
        error,
    })?;
    desk.page(status, title, html)
}

/// `GET /o/{org}/unit/pay` and `…/apply`: the payment's form.
async fn form_page<T: Transport>(
    State(p): State<Shared<T>>,
    Path(org): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    kind: PayKind,
) -> Response {
    let lang = lang_of(&headers);
    let work = async {
        let desk = match p.desk(&headers, &uri, &org, lang).await? {
            Ok(desk) => desk,
            Err(r) => return Ok(r),
        };
        if !is_unit_desk(&desk) {
            return Ok(desk.not_found());
        }
        if !desk.may(Action::MakeVoucher) {
            return Ok(desk.forbidden());
        }
        pay_view(
            &p,
            &desk,
            kind,
            PayForm::default(),
            FieldErrors::default(),
            None,
            StatusCode::OK,
        )
        .await
    };
    respond(lang, work.await)
}

fn text_field(
    fields: &Fields,
    name: &'static str,
    max_bytes: usize,
    t: &UnitTexts,
    errors: &mut FieldErrors,
) -> String {
    let value = fields.text(name);
    if value.is_empty() {
        errors.add(name, t.required);
    } else if guoku_domain::gbk_len(&value) > max_bytes {
        errors.add(name, t.too_long);
    }
    value
}

/// Checks the 8202 form; the order's parts when it is right.
fn check_pay_form(
    fields: &Fields,
    units: &[(String, String)],
    t: &UnitTexts,
) -> (PayForm, FieldErrors, Option<(Payee, Amount)>) {
    let mut errors = FieldErrors::default();
    let unit = fields.text("unit");
    if unit.is_empty() {
        errors.add("unit", t.required);
    } else if !units.iter().any(|(code, _)| *code == unit) {
        errors.add("unit", t.not_your_unit);
    }
    let payee_name = text_field(fields, "payee_name", 60, t, &mut errors);
    let payee_account = fields.text("payee_account");
    if payee_account.is_empty() {
        errors.add("payee_account", t.required);
    } else if !(6..=32).contains(&payee_account.len())
        || !payee_account
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'-')
    {
        errors.add("payee_account", t.bad_account);
    }
    let payee_bank = text_field(fields, "payee_bank", 60, t, &mut errors);
    let summary = text_field(fields, "summary", 60, t, &mut errors);
    let amount_text = fields.text("amount");
    let amount = if amount_text.is_empty() {
        errors.add("amount", t.required);
        None
    } else {
        // People type thousands separators; the voucher's own parser takes none.
        let plain: String = amount_text
            .chars()
            .filter(|c| !matches!(c, ',' | '，' | ' '))
            .collect();
        match plain.parse::<Amount>() {
            Ok(a) if a.is_positive() => Some(a),
            _ => {
                errors.add("amount", t.bad_amount);
                None
            }
        }
    };
    let form = PayForm {
        unit,
        payee_name: payee_name.clone(),
        payee_account: payee_account.clone(),
        payee_bank: payee_bank.clone(),
        amount: amount_text,
        summary: summary.clone(),
    };
    let order = match amount {
        Some(amount) if errors.is_empty() => Some((
            Payee {
                name: payee_name,
                account: payee_account,
                bank_name: payee_bank,
                summary,
            },
            amount,
        )),
        _ => None,
    };
    (form, errors, order)
}

/// `POST /o/{org}/unit/pay` and `…/apply`: the payment made as a draft (once per form).
async fn form_submit<T: Transport>(
    State(p): State<Shared<T>>,
    Path(org): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
    kind: PayKind,
) -> Response {
    let lang = lang_of(&headers);
    let work = async {
        let (desk, fields) = match p.desk_post(&headers, &uri, &body, &org, lang).await? {
            Ok(opened) => opened,
            Err(r) => return Ok(r),
        };
        if !is_unit_desk(&desk) {
            return Ok(desk.not_found());
        }
        if !desk.may(Action::MakeVoucher) {
            return Ok(desk.forbidden());
        }
        let t = UnitTexts::of(desk.lang);
        let units = units_of(&p, &desk);
        let (form, errors, order) = check_pay_form(&fields, &units, t);
        let Some((payee, amount)) = order else {
            let status = StatusCode::UNPROCESSABLE_ENTITY;
            let form_error = Some(desk.t().form_has_errors.to_owned());
            return pay_view(&p, &desk, kind, form, errors, form_error, status).await;
        };
        let Some(builder) = p.builder.clone() else {
            return Ok(desk.forbidden());
        };
        desk.once(&fields, async {
            let party: &Party<T> = &desk.party;
            let (now, _) = party.now();
            let date = Party::<T>::business_date(now);
            let form_id = fields.get("form_id").unwrap_or_default();
            let prefix = match kind {
                PayKind::Authorized => "GM",
                PayKind::Direct => "ZS",
            };
            let no = crate::api::voucher_no(prefix, party.org_code(), desk.user.id, form_id);
            let order = PaymentOrder {
                unit: &form.unit,
                amount,
                payee: &payee,
                voucher_no: &no,
                date,
            };
            let refused = |why: String| {
                pay_view(
                    &p,
                    &desk,
                    kind,
                    PayForm {
                        ..form_again(&form)
                    },
                    FieldErrors::default(),
                    Some(format!("{}{why}", t.refused)),
                    StatusCode::UNPROCESSABLE_ENTITY,
                )
            };
            let (at, acting, making, path) = match kind {
                PayKind::Authorized => {
                    let draft = match builder.authorized(&order) {
                        Ok(draft) => draft,
                        Err(e) => return Ok(Err(refused(e.to_string()).await?)),
                    };
                    let path = key_path(&draft.voucher.key());
                    let making = Making {
                        voucher: draft.voucher,
                        receiver: draft.bank,
                        plan_month: None,
                        amount,
                    };
                    (desk.party.clone(), acting(&desk), making, path)
                }
                PayKind::Direct => {
                    let Some(finance) = finance_of(&p) else {
                        return Ok(Err(refused(t.no_finance.to_owned()).await?));
                    };
                    let Some(at_finance) = acting_at(&finance, &desk).await? else {
                        return Ok(Err(refused(t.not_at_finance.to_owned()).await?));
                    };
                    let draft = match builder.direct(&order) {
                        Ok(draft) => draft,
                        Err(e) => return Ok(Err(refused(e.to_string()).await?)),
                    };
                    let path = application_path(&draft.voucher.key());
                    let making = Making {
                        voucher: draft.voucher,
                        receiver: draft.bank,
                        plan_month: Some(date.month()),
                        amount,
                    };
                    (finance, at_finance, making, path)
                }
            };
            match crate::api::make_draft(&at, &acting, making).await {
                Ok(_) => Ok(Ok(desk.href(&path))),
                Err(e) if e.is_business() => Ok(Err(refused(e.body().message).await?)),
                Err(e) => Err(PortalError::Work(e.body().message)),
            }
        })
        .await
    };
    respond(lang, work.await)
}

fn form_again(form: &PayForm) -> PayForm {
    PayForm {
        unit: form.unit.clone(),
        payee_name: form.payee_name.clone(),
        payee_account: form.payee_account.clone(),
        payee_bank: form.payee_bank.clone(),
        amount: form.amount.clone(),
        summary: form.summary.clone(),
    }
}

// ---------------------------------------------------------------------------------------
// Following payments

/// A page of the unit's drafts (payments), in making order.
async fn unit_drafts<T: Transport>(
    desk: &Desk<T>,
    party: &Party<T>,
    state: Option<DraftState>,
    after: u64,
    limit: u32,
) -> Result<Vec<DraftRecord>, PortalError> {
    let filter = DraftFilter {
        state,
        within: desk.principal.divisions.clone(),
        units: desk.principal.units.iter().cloned().collect(),
        after,
        limit,
    };
    let page = party
        .store
        .drafts()
        .list(&filter)
        .await
        .map_err(|e| PortalError::Work(e.to_string()))?;
    Ok(page.items)
}

fn draft_voucher(d: &DraftRecord) -> Result<guoku_voucher::Voucher, PortalError> {
    guoku_voucher::parse_voucher(&d.body, &guoku_voucher::Limits::default())
        .map(|(v, _)| v)
        .map_err(|e| PortalError::Work(format!("draft {} unreadable: {e}", d.key)))
}

struct Line {
    href: String,
    voucher_no: String,
    date: String,
    payee: String,
    amount: String,
    state: &'static str,
}

#[derive(Template)]
#[template(
    ext = "html",
    source = r#"<h1>{{ t.vouchers_title }}</h1>
<form method="get" action="{{ action }}" class="card inline-form">
<label>{{ t.search }} <input name="q" value="{{ q }}" placeholder="{{ t.search_hint }}" maxlength="60"></label>
<label>{{ t.state }} <select name="state">
<option value="">{{ t.any_state }}</option>
{% for s in states %}<option value="{{ s.0 }}"{% if s.0 == state %} selected{% endif %}>{{ s.1 }}</option>
{% endfor %}</select></label>
<button type="submit">{{ t.search }}</button>
</form>
{% if lines.is_empty() %}<p>{{ t.none_found }}</p>{% else %}
<table class="list" id="payments">
<tr><th>{{ t.voucher_no }}</th><th>{{ t.date }}</th><th>{{ t.payee_name }}</th><th>{{ t.amount }}</th><th>{{ t.state }}</th></tr>
{% for l in lines %}<tr><td><a href="{{ l.href }}">{{ l.voucher_no }}</a></td><td>{{ l.date }}</td><td>{{ l.payee }}</td><td class="num">{{ l.amount }}</td><td>{{ l.state }}</td></tr>
{% endfor %}</table>{% endif %}
{% if let Some(next) = next %}<p><a href="{{ next }}">{{ t.more }}</a></p>{% endif %}
{% if !applications.is_empty() %}<h2>{{ t.applications }}</h2>
<table class="list" id="applications">
<tr><th>{{ t.voucher_no }}</th><th>{{ t.date }}</th><th>{{ t.payee_name }}</th><th>{{ t.amount }}</th><th>{{ t.state }}</th></tr>
{% for l in applications %}<tr><td><a href="{{ l.href }}">{{ l.voucher_no }}</a></td><td>{{ l.date }}</td><td>{{ l.payee }}</td><td class="num">{{ l.amount }}</td><td>{{ l.state }}</td></tr>
{% endfor %}</table>{% endif %}
"#
)]
struct VouchersBody {
    t: &'static UnitTexts,
    action: String,
    q: String,
    state: String,
    states: Vec<(&'static str, &'static str)>,
    lines: Vec<Line>,
    applications: Vec<Line>,
    next: Option<String>,
}

/// The unit's drafts at `party` matching `q` (payee, number or amount), newest first, up to
/// 100 from ten pages after `after`; and the next page's link when there is more.
async fn search<T: Transport>(
    desk: &Desk<T>,
    party: &Party<T>,
    (state, state_code): (Option<DraftState>, &str),
    q: &str,
    mut after: u64,
    path: fn(&VoucherKey) -> String,
) -> Result<(Vec<Line>, Option<String>), PortalError> {
    let t = UnitTexts::of(desk.lang);
    let mut lines = Vec::new();
    let mut next = None;
    for _ in 0..10 {
        let page = unit_drafts(desk, party, state, after, 100).await?;
        let full = page.len() == 100;
        for d in &page {
            after = d.seq;
            let Ok(v) = draft_voucher(d) else { continue };
            let payee = v.header.get("PayeeAcctName").unwrap_or_default().to_owned();
            let amount = d
                .amount_fen
                .and_then(|f| Amount::from_fen(f).ok())
                .map(|a| a.to_string())
                .unwrap_or_default();
            let matches =
                q.is_empty() || payee.contains(q) || d.key.voucher_no.contains(q) || amount == q;
            if matches {
                lines.push(Line {
                    href: desk.href(&path(&d.key)),
                    voucher_no: d.key.voucher_no.clone(),
                    date: v.header.get("VouDate").unwrap_or_default().to_owned(),
                    payee,
                    amount,
                    state: draft_state_text(t, d.state),
                });
            }
        }
        if !full || lines.len() >= 100 {
            if full {
                next = Some(format!(
                    "{}?q={}&state={}&after={after}",
                    desk.href("/unit/vouchers"),
                    urlencode(q),
                    urlencode(state_code)
                ));
            }
            break;
        }
    }
    lines.reverse();
    Ok((lines, next))
}

#[derive(serde::Deserialize, Default)]
struct ListQuery {
    q: Option<String>,
    state: Option<String>,
    after: Option<u64>,
}

async fn vouchers_page<T: Transport>(
    State(p): State<Shared<T>>,
    Path(org): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let lang = lang_of(&headers);
    let work = async {
        let desk = match p.desk(&headers, &uri, &org, lang).await? {
            Ok(desk) => desk,
            Err(r) => return Ok(r),
        };
        if !is_unit_desk(&desk) {
            return Ok(desk.not_found());
        }
        if !desk.may(Action::ViewVouchers) {
            return Ok(desk.forbidden());
        }
        let t = UnitTexts::of(desk.lang);
        let query = query.map(|Query(q)| q).unwrap_or_default();
        let q = query.q.unwrap_or_default().trim().to_owned();
        let state_code = query.state.unwrap_or_default();
        let state = DraftState::from_code(&state_code);
        // A search reads up to ten pages of the unit's payments and keeps the matches.
        let (lines, next) = search(
            &desk,
            &desk.party,
            (state, &state_code),
            &q,
            query.after.unwrap_or(0),
            key_path,
        )
        .await?;
        let applications = match finance_of(&p) {
            Some(finance) if !desk.principal.units.is_empty() => {
                search(
                    &desk,
                    &finance,
                    (state, &state_code),
                    &q,
                    0,
                    application_path,
                )
                .await?
                .0
            }
            _ => Vec::new(),
        };
        let states = DraftState::ALL
            .into_iter()
            .map(|s| (s.code(), draft_state_text(t, s)))
            .collect();
        let html = body(&VouchersBody {
            t,
            action: desk.href("/unit/vouchers"),
            q,
            state: state_code,
            states,
            lines,
            applications,
            next,
        })?;
        desk.page(StatusCode::OK, t.vouchers_title, html)
    };
    respond(lang, work.await)
}

fn urlencode(s: &str) -> String {
    serde_urlencoded::to_string([("", s)])
        .map(|e| e.trim_start_matches('=').to_owned())
        .unwrap_or_default()
}

struct StepLine {
    step: String,
    who: String,
    when: String,
}

#[derive(Template)]
#[template(
    ext = "html",
    source = r#"<h1>{{ t.detail_title }} {{ voucher_no }}</h1>
<section class="card"><h2>{{ t.fields }}</h2><dl class="fields" id="voucher-fields">
{% for f in fields %}<dt>{{ f.0 }}</dt><dd>{{ f.1 }}</dd>{% endfor %}
<dt>{{ t.state }}</dt><dd id="draft-state">{{ state }}</dd>
{% if let Some(exchange) = exchange %}<dt>{{ t.exchange }}</dt><dd id="exchange-status">{{ exchange }}</dd>{% endif %}
{% if let Some(reason) = reason %}<dt>{{ t.reason }}</dt><dd>{{ reason }}</dd>{% endif %}
</dl></section>
<section class="card"><h2>{{ t.steps }}</h2><table>
<tr><th>{{ t.state }}</th><th>{{ t.who }}</th><th>{{ t.when }}</th></tr>
{% for s in steps %}<tr><td>{{ s.step }}</td><td>{{ s.who }}</td><td>{{ s.when }}</td></tr>{% endfor %}
</table></section>
<section class="card"><h2>{{ t.receipt }}</h2>
{% if receipt.is_empty() %}<p>{{ t.no_receipt }}</p>{% else %}<dl class="fields" id="receipt-fields">
{% for f in receipt %}<dt>{{ f.0 }}</dt><dd>{{ f.1 }}</dd>{% endfor %}</dl>
{% if let Some(pdf) = pdf %}<p><a href="{{ pdf }}/receipt.pdf" hx-boost="false" id="receipt-pdf" download>{{ t.receipt_pdf }}</a>
<a href="{{ pdf }}/notice.pdf" hx-boost="false" id="notice-pdf" download>{{ t.notice_pdf }}</a></p>{% endif %}{% endif %}
</section>
{% if can_check || can_sign %}<section class="card">
{% if can_check %}<form method="post" action="{{ base }}/check" class="inline" hx-disabled-elt="find button">
<input type="hidden" name="csrf" value="{{ csrf }}"><input type="hidden" name="form_id" value="{{ form_id }}">
<button type="submit" id="check-button">{{ t.check }}</button></form>{% endif %}
{% if can_sign %}<form method="post" action="{{ base }}/sign" class="card" hx-disabled-elt="find button">
<input type="hidden" name="csrf" value="{{ csrf }}"><input type="hidden" name="form_id" value="{{ form_id }}">
<label>{{ pin_label }} <input name="pin" type="password" autocomplete="off" minlength="6" maxlength="64" required></label>
<button type="submit" id="sign-button">{{ t.sign }}</button></form>{% endif %}
<form method="post" action="{{ base }}/reject" class="card" hx-disabled-elt="find button">
<input type="hidden" name="csrf" value="{{ csrf }}"><input type="hidden" name="form_id" value="{{ form_id }}">
<label>{{ t.reason }} <input name="reason" maxlength="100" required></label>
<button type="submit" id="reject-button">{{ t.reject }}</button></form>
</section>{% endif %}
"#
)]
struct VoucherBody<'a> {
    t: &'static UnitTexts,
    voucher_no: String,
    fields: Vec<(&'static str, String)>,
    state: &'static str,
    exchange: Option<&'static str>,
    reason: Option<String>,
    steps: Vec<StepLine>,
    receipt: Vec<(String, String)>,
    pdf: Option<String>,
    can_check: bool,
    can_sign: bool,
    base: String,
    csrf: &'a str,
    form_id: String,
    pin_label: &'static str,
}

/// The unit's draft `key`, or `None` when it is not theirs to see.
async fn own_draft<T: Transport>(
    desk: &Desk<T>,
    party: &Party<T>,
    key: &VoucherKey,
) -> Result<Option<DraftRecord>, PortalError> {
    if !desk.sees_code(&key.adm_div_code) {
        return Ok(None);
    }
    let draft = party
        .store
        .drafts()
        .get(key)
        .await
        .map_err(|e| PortalError::Work(e.to_string()))?;
    Ok(draft.filter(|d| desk.principal.acts_for(d.agency_code.as_deref())))
}

fn time_text(unix: u64) -> String {
    i64::try_from(unix)
        .ok()
        .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
        .map(|t| {
            let t = t.to_offset(time::UtcOffset::from_hms(8, 0, 0).unwrap_or(time::UtcOffset::UTC));
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            )
        })
        .unwrap_or_default()
}

/// A payment's page: the counter's own (`application` false) or finance's application.
async fn draft_page<T: Transport>(
    State(p): State<Shared<T>>,
    Path((org, adm, year, vt, no)): Path<(String, String, String, String, String)>,
    headers: HeaderMap,
    uri: Uri,
    application: bool,
) -> Response {
    let key = VoucherKey {
        adm_div_code: adm,
        st_year: year,
        vt_code: vt,
        voucher_no: no,
    };
    let lang = lang_of(&headers);
    let work = async {
        let desk = match p.desk(&headers, &uri, &org, lang).await? {
            Ok(desk) => desk,
            Err(r) => return Ok(r),
        };
        if !is_unit_desk(&desk) {
            return Ok(desk.not_found());
        }
        if !desk.may(Action::ViewVouchers) {
            return Ok(desk.forbidden());
        }
        let party = if application {
            match finance_of(&p) {
                Some(finance) => finance,
                None => return Ok(desk.not_found()),
            }
        } else {
            desk.party.clone()
        };
        let Some(draft) = own_draft(&desk, &party, &key).await? else {
            return Ok(desk.not_found());
        };
        let t = UnitTexts::of(desk.lang);
        let v = draft_voucher(&draft)?;
        let field = |name: &str| v.header.get(name).unwrap_or_default().to_owned();
        let fields = vec![
            (
                t.unit,
                format!("{} ({})", field("AgencyName"), field("AgencyCode")),
            ),
            (t.date, field("VouDate")),
            (t.payee_name, field("PayeeAcctName")),
            (t.payee_account, field("PayeeAcctNo")),
            (t.payee_bank, field("PayeeAcctBankName")),
            (t.amount, field("PayAmt")),
            (t.summary, field("PaySummaryName")),
        ];
        let library = party.store.library();
        let sent = library
            .status(&key, Leg::Original)
            .await
            .map_err(|e| PortalError::Work(e.to_string()))?;
        let exchange = sent.as_ref().map(|r| match desk.lang {
            Lang::Zh => r.exchange.name_zh(),
            Lang::En => r.exchange.name_en(),
        });
        let receipt_record = library
            .status(&key, Leg::Receipt)
            .await
            .map_err(|e| PortalError::Work(e.to_string()))?;
        let receipt = match &receipt_record {
            Some(r) => crate::flows::common::stored_body(&r.body, VoucherFlag::Receipt)
                .map(|b| {
                    b.voucher
                        .header
                        .iter()
                        .filter(|(name, _)| name.starts_with('X'))
                        .map(|(n, v)| (n.to_owned(), v.to_owned()))
                        .collect()
                })
                .unwrap_or_default(),
            None => Vec::new(),
        };
        let events = party
            .store
            .drafts()
            .events(&key)
            .await
            .map_err(|e| PortalError::Work(e.to_string()))?;
        let steps = events
            .iter()
            .map(|e| StepLine {
                step: draft_state_text(t, e.to).to_owned(),
                who: e.actor.clone(),
                when: time_text(e.at),
            })
            .collect();
        // Finance checks and signs applications; the unit's own people the counter's.
        let ours = !application;
        let can_check =
            ours && draft.state == DraftState::Made && desk.principal.holds(Post::Checker);
        let can_sign =
            ours && draft.state == DraftState::Checked && desk.principal.holds(Post::Signer);
        let base = desk.href(&key_path(&key));
        let html = body(&VoucherBody {
            t,
            voucher_no: key.voucher_no.clone(),
            fields,
            state: draft_state_text(t, draft.state),
            exchange,
            reason: draft.reason.clone(),
            steps,
            pdf: (!receipt.is_empty()).then(|| {
                if application {
                    desk.href(&application_path(&key))
                } else {
                    desk.href(&key_path(&key))
                }
            }),
            receipt,
            can_check,
            can_sign,
            base,
            csrf: &desk.csrf,
            form_id: desk.form_id().to_string(),
            pin_label: desk.t().pin,
        })?;
        desk.page(StatusCode::OK, t.detail_title, html)
    };
    respond(lang, work.await)
}

async fn voucher_step<T: Transport>(
    State(p): State<Shared<T>>,
    Path((org, adm, year, vt, no, step)): Path<(String, String, String, String, String, String)>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    let lang = lang_of(&headers);
    let work = async {
        let (desk, fields) = match p.desk_post(&headers, &uri, &body, &org, lang).await? {
            Ok(opened) => opened,
            Err(r) => return Ok(r),
        };
        if !is_unit_desk(&desk) {
            return Ok(desk.not_found());
        }
        let action = match step.as_str() {
            "check" => Action::CheckVoucher,
            "sign" => Action::SignVoucher,
            "reject" => {
                if desk.may(Action::CheckVoucher) {
                    Action::CheckVoucher
                } else {
                    Action::SignVoucher
                }
            }
            _ => return Ok(desk.not_found()),
        };
        if !desk.may(action) {
            return Ok(desk.forbidden());
        }
        let key = VoucherKey {
            adm_div_code: adm,
            st_year: year,
            vt_code: vt,
            voucher_no: no,
        };
        if own_draft(&desk, &desk.party, &key).await?.is_none() {
            return Ok(desk.not_found());
        }
        let reason = fields.text("reason");
        if step == "reject" && reason.is_empty() {
            let t = UnitTexts::of(desk.lang);
            return Ok(super::message(
                desk.lang,
                StatusCode::UNPROCESSABLE_ENTITY,
                desk.t().form_has_errors,
                &format!("{}: {}", t.reason, t.required),
                &desk.href(&key_path(&key)),
                desk.t().back,
            ));
        }
        let back = desk.href(&key_path(&key));
        if step == "sign" {
            // The signer proves they hold the signing key: its PIN opens the key store.
            let t = desk.t();
            let refused = |message: String| {
                super::message(
                    desk.lang,
                    StatusCode::UNPROCESSABLE_ENTITY,
                    t.form_has_errors,
                    &format!("{}: {message}", t.pin),
                    &back,
                    t.back,
                )
            };
            let pin = match super::desk::read_pin(t, fields.get("pin")) {
                Ok(pin) => pin,
                Err(message) => return Ok(refused(message.to_owned())),
            };
            let key_dir = p.key_dirs.get(desk.org()).map(std::path::PathBuf::as_path);
            if let Err(message) = super::desk::open_signer(t, key_dir, pin).await? {
                return Ok(refused(message));
            }
        }
        desk.once(&fields, async {
            let acting = acting(&desk);
            let party = &desk.party;
            let done = match step.as_str() {
                "check" => crate::api::check_draft(party, &acting, &key)
                    .await
                    .map(|_| ()),
                "sign" => crate::api::sign_draft(None, party, &acting, &key)
                    .await
                    .map(|_| ()),
                _ => crate::api::reject_draft(party, &acting, &key, &reason)
                    .await
                    .map(|_| ()),
            };
            match done {
                Ok(()) => Ok(Ok(back.clone())),
                Err(e) if e.is_business() => Ok(Err(super::message(
                    desk.lang,
                    StatusCode::UNPROCESSABLE_ENTITY,
                    UnitTexts::of(desk.lang).refused,
                    &e.body().message,
                    &back,
                    desk.t().back,
                ))),
                Err(e) => Err(PortalError::Work(e.body().message)),
            }
        })
        .await
    };
    respond(lang, work.await)
}

// ---------------------------------------------------------------------------------------
// The home page's quota panel

struct MonthQuota {
    month: u8,
    granted: String,
    used: String,
    remaining: String,
    /// Bar heights in the chart (0..=100).
    granted_h: u32,
    used_h: u32,
    x: u32,
}

#[derive(Template)]
#[template(
    ext = "html",
    source = r#"{% for u in units %}<section class="card quota-panel">
<h2>{{ t.quota_title }} · {{ u.name }}</h2>
<p class="hint">{{ t.quota_hint }}</p>
{% if u.months.is_empty() %}<p>{{ t.no_quota }}</p>{% else %}
<svg class="chart" viewBox="0 0 400 130" role="img" aria-label="{{ t.quota_title }}">
{% for m in u.months %}<rect class="bar-granted" x="{{ m.x }}" y="{{ 110 - m.granted_h }}" width="12" height="{{ m.granted_h }}"><title>{{ m.month }} {{ t.granted }} {{ m.granted }}</title></rect>
<rect class="bar-used" x="{{ m.x + 13 }}" y="{{ 110 - m.used_h }}" width="12" height="{{ m.used_h }}"><title>{{ m.month }} {{ t.used }} {{ m.used }}</title></rect>
<text x="{{ m.x + 4 }}" y="124" font-size="9">{{ m.month }}</text>
{% endfor %}</svg>
<table class="list"><tr><th>{{ t.month }}</th><th>{{ t.granted }}</th><th>{{ t.used }}</th><th>{{ t.remaining }}</th></tr>
{% for m in u.months %}<tr><td>{{ m.month }}</td><td class="num">{{ m.granted }}</td><td class="num">{{ m.used }}</td><td class="num">{{ m.remaining }}</td></tr>
{% endfor %}</table>{% endif %}
{% if !u.plans.is_empty() %}<h3>{{ t.plan_title }}</h3>
<table class="list plan-by-class"><tr><th>{{ t.func_class }}</th><th>{{ t.month }}</th><th>{{ t.granted }}</th><th>{{ t.used }}</th><th>{{ t.remaining }}</th></tr>
{% for r in u.plans %}<tr><td>{{ r.class }}</td><td>{{ r.month }}</td><td class="num">{{ r.granted }}</td><td class="num">{{ r.used }}</td><td class="num">{{ r.remaining }}</td></tr>
{% endfor %}</table>{% endif %}
</section>{% endfor %}"#
)]
struct QuotaPanel {
    t: &'static UnitTexts,
    units: Vec<UnitQuota>,
}

struct UnitQuota {
    name: String,
    months: Vec<MonthQuota>,
    plans: Vec<PlanLine>,
}

/// A direct-payment plan line at finance: function class and month.
struct PlanLine {
    class: String,
    month: u8,
    granted: String,
    used: String,
    remaining: String,
}

/// The unit's direct-payment plans at finance, by function class and month.
async fn plan_lines<T: Transport>(
    finance: &Party<T>,
    adm_div: &str,
    year: u16,
    unit: &str,
) -> Result<Vec<PlanLine>, PortalError> {
    let filter = BookFilter {
        kind: AccountKind::Plan,
        adm_div: adm_div.to_owned(),
        year,
        unit: unit.to_owned(),
        func_class_prefix: String::new(),
        month: 0,
        bank: String::new(),
    };
    let mut sums: std::collections::BTreeMap<(String, u8), (u128, u128)> = Default::default();
    for (label, account) in finance.store.book_accounts(filter).await? {
        let e = sums.entry((label.func_class, label.month)).or_default();
        e.0 += account.credits_posted;
        e.1 += account.debits_posted + account.debits_pending;
    }
    Ok(sums
        .into_iter()
        .filter(|(_, (granted, used))| *granted > 0 || *used > 0)
        .map(|((class, month), (granted, used))| PlanLine {
            class,
            month,
            granted: yuan(granted),
            used: yuan(used),
            remaining: yuan(granted.saturating_sub(used)),
        })
        .collect())
}

fn yuan(fen: u128) -> String {
    i64::try_from(fen)
        .ok()
        .and_then(|f| Amount::from_fen(f).ok())
        .map(|a| a.to_string())
        .unwrap_or_else(|| fen.to_string())
}

/// The budget unit's panel on the home page (its quotas); empty for other roles.
pub(crate) async fn home_panel<T: Transport>(
    p: &Inner<T>,
    desk: &Desk<T>,
) -> Result<String, PortalError> {
    if !is_unit_desk(desk) || desk.principal.units.is_empty() {
        return Ok(String::new());
    }
    let t = UnitTexts::of(desk.lang);
    let banks: Vec<_> = p
        .parties
        .values()
        .filter(|party| party.role() == OrgRole::AgentBank)
        .collect();
    let year = p.builder.as_ref().map_or(0, |b| b.year());
    let mut units = Vec::new();
    for (code, name, adm_div) in p.builder.as_ref().map(|b| b.units()).unwrap_or_default() {
        if !desk.principal.units.contains(&code) {
            continue;
        }
        let mut rows = Vec::new();
        for month in 1..=12u8 {
            let mut granted = 0u128;
            let mut used = 0u128;
            let mut remaining = 0u128;
            for bank in &banks {
                let filter = BookFilter {
                    kind: AccountKind::UnitQuota,
                    adm_div: adm_div.clone(),
                    year,
                    unit: code.clone(),
                    func_class_prefix: String::new(),
                    month,
                    bank: String::new(),
                };
                let s = bank.store.quota_summary(filter).await?;
                granted += s.granted;
                used += s.consumed + s.reserved;
                remaining += s.remaining;
            }
            if granted > 0 || used > 0 {
                rows.push((month, granted, used, remaining));
            }
        }
        let top = rows.iter().map(|r| r.1.max(r.2)).max().unwrap_or(1).max(1);
        let height = |v: u128| u32::try_from(v * 100 / top).unwrap_or(100);
        let months = rows
            .iter()
            .enumerate()
            .map(|(i, (month, granted, used, remaining))| MonthQuota {
                month: *month,
                granted: yuan(*granted),
                used: yuan(*used),
                remaining: yuan(*remaining),
                granted_h: height(*granted),
                used_h: height(*used),
                x: 10 + 32 * u32::try_from(i).unwrap_or(0),
            })
            .collect();
        let plans = match finance_of(p) {
            Some(finance) => plan_lines(&finance, &adm_div, year, &code).await?,
            None => Vec::new(),
        };
        units.push(UnitQuota {
            name: format!("{name} ({code})"),
            months,
            plans,
        });
    }
    body(&QuotaPanel { t, units })
}

// ---------------------------------------------------------------------------------------
// Batch import: salary and official-card lists become one batch direct payment application

/// Largest upload body: the list's own limit (5 MB) and the multipart framing around it.
const IMPORT_BODY_MAX: usize = 6 * 1024 * 1024;
/// Most rows one batch application (one 5201 with its details) carries.
const BATCH_ROWS_MAX: usize = 1_000;

struct ErrorLine {
    line: usize,
    column: &'static str,
    value: String,
    problem: String,
}

#[derive(Template)]
#[template(
    ext = "html",
    source = r#"<h1>{{ t.import_title }}</h1>
<p class="hint">{{ t.import_hint }}</p>
{% if let Some(error) = error %}<p class="error" role="alert" id="import-error">{{ error }}</p>{% endif %}
{% if units.is_empty() %}<p class="error">{{ t.no_builder }}</p>{% else %}
<form method="post" action="{{ action }}" enctype="multipart/form-data" class="card" id="import-form" hx-boost="false">
<input type="hidden" name="csrf" value="{{ csrf }}">
<input type="hidden" name="form_id" value="{{ form_id }}">
<fieldset><legend>{{ t.list_kind }}</legend>
<label><input type="radio" name="kind" value="salary"{% if kind == "salary" %} checked{% endif %}> {{ t.kind_salary }}</label>
<label><input type="radio" name="kind" value="card"{% if kind == "card" %} checked{% endif %}> {{ t.kind_card }}</label>
</fieldset>
<label>{{ t.unit }}
<select name="unit" required>
{% for u in units %}<option value="{{ u.0 }}"{% if u.0 == unit %} selected{% endif %}>{{ u.1 }} ({{ u.0 }})</option>
{% endfor %}</select></label>
<label>{{ t.file }} <input type="file" name="file" accept=".csv,.xlsx,text/csv,application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" required></label>
<button type="submit" name="action" value="check" id="check-file">{{ t.check_file }}</button>
<button type="submit" name="action" value="submit" id="submit-file">{{ t.submit_file }}</button>
</form>{% endif %}
{% if let Some(rows) = rows %}<section class="card" id="import-result">
<dl><dt>{{ t.rows_ok }}</dt><dd id="rows-ok">{{ rows }}</dd><dt>{{ t.total }}</dt><dd id="rows-total">{{ total }}</dd></dl>
{% if errors.is_empty() %}<p class="ok">{{ t.file_ok }}</p>{% else %}<p class="error" role="alert">{{ t.file_has_errors }}</p>
<table class="list" id="row-errors"><tr><th>{{ t.line }}</th><th>{{ t.column }}</th><th>{{ t.value }}</th><th>{{ t.problem }}</th></tr>
{% for e in errors %}<tr class="row-error"><td>{{ e.line }}</td><td>{{ e.column }}</td><td>{{ e.value }}</td><td>{{ e.problem }}</td></tr>
{% endfor %}</table>{% endif %}
{% if !warnings.is_empty() %}<h2>{{ t.warnings }}</h2><table class="list" id="row-warnings"><tr><th>{{ t.line }}</th><th>{{ t.column }}</th><th>{{ t.value }}</th><th>{{ t.problem }}</th></tr>
{% for e in warnings %}<tr><td>{{ e.line }}</td><td>{{ e.column }}</td><td>{{ e.value }}</td><td>{{ e.problem }}</td></tr>
{% endfor %}</table>{% endif %}
</section>{% endif %}
"#
)]
struct ImportBody<'a> {
    t: &'static UnitTexts,
    action: String,
    csrf: &'a str,
    form_id: String,
    kind: &'a str,
    unit: String,
    units: Vec<(String, String)>,
    error: Option<String>,
    rows: Option<usize>,
    total: String,
    errors: Vec<ErrorLine>,
    warnings: Vec<ErrorLine>,
}

/// What an upload held, read so far.
#[derive(Default)]
struct Upload {
    kind: String,
    unit: String,
    file: Option<Vec<u8>>,
    error: Option<String>,
    imported: Option<import::Imported>,
}

fn error_lines(errors: &[import::RowError], lang: Lang) -> Vec<ErrorLine> {
    errors
        .iter()
        .map(|e| ErrorLine {
            line: e.line,
            column: e.column.map_or("", |c| c.label(lang)),
            value: e.value.clone(),
            problem: e.problem.message(lang),
        })
        .collect()
}

async fn import_view<T: Transport>(
    p: &Inner<T>,
    desk: &Desk<T>,
    upload: Upload,
    status: StatusCode,
) -> Result<Response, PortalError> {
    let t = UnitTexts::of(desk.lang);
    let units = units_of(p, desk);
    let unit = if upload.unit.is_empty() {
        units.first().map(|u| u.0.clone()).unwrap_or_default()
    } else {
        upload.unit.clone()
    };
    let kind = if upload.kind == "card" {
        "card"
    } else {
        "salary"
    };
    let (rows, total, errors, warnings) = match &upload.imported {
        Some(i) => (
            Some(i.rows.len()),
            i.total.to_string(),
            error_lines(&i.errors, desk.lang),
            error_lines(&i.warnings, desk.lang),
        ),
        None => (None, String::new(), Vec::new(), Vec::new()),
    };
    let html = body(&ImportBody {
        t,
        action: desk.href("/unit/import"),
        csrf: &desk.csrf,
        form_id: desk.form_id().to_string(),
        kind,
        unit,
        units,
        error: upload.error,
        rows,
        total,
        errors,
        warnings,
    })?;
    desk.page(status, t.import_title, html)
}

async fn import_page<T: Transport>(
    State(p): State<Shared<T>>,
    Path(org): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let lang = lang_of(&headers);
    let work = async {
        let desk = match p.desk(&headers, &uri, &org, lang).await? {
            Ok(desk) => desk,
            Err(r) => return Ok(r),
        };
        if !is_unit_desk(&desk) {
            return Ok(desk.not_found());
        }
        if !desk.may(Action::MakeVoucher) {
            return Ok(desk.forbidden());
        }
        import_view(&p, &desk, Upload::default(), StatusCode::OK).await
    };
    respond(lang, work.await)
}

/// Reads the multipart form: its text fields (at most 1 KiB each) and the file.
async fn read_upload(
    mut multipart: axum::extract::Multipart,
) -> Result<(Vec<(String, String)>, Option<Vec<u8>>), String> {
    let mut pairs = Vec::new();
    let mut file = None;
    while let Some(field) = multipart.next_field().await.map_err(|e| e.to_string())? {
        let name = field.name().unwrap_or_default().to_owned();
        if name == "file" {
            let bytes = field.bytes().await.map_err(|e| e.to_string())?;
            if !bytes.is_empty() {
                file = Some(bytes.to_vec());
            }
        } else {
            let text = field.text().await.map_err(|e| e.to_string())?;
            if text.len() > 1024 || pairs.len() > 16 {
                return Err("form field too long".into());
            }
            pairs.push((name, text));
        }
    }
    Ok((pairs, file))
}

async fn import_submit<T: Transport>(
    State(p): State<Shared<T>>,
    Path(org): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    multipart: Result<axum::extract::Multipart, axum::extract::multipart::MultipartRejection>,
) -> Response {
    let lang = lang_of(&headers);
    let work = async {
        let Ok(multipart) = multipart else {
            return Ok(super::rejected(lang, super::Rejected::Malformed));
        };
        let (pairs, file) = match read_upload(multipart).await {
            Ok(read) => read,
            Err(_) => return Ok(super::rejected(lang, super::Rejected::Malformed)),
        };
        let (desk, fields) = match p.desk_upload(&headers, &uri, &org, lang, pairs).await? {
            Ok(opened) => opened,
            Err(r) => return Ok(r),
        };
        if !is_unit_desk(&desk) {
            return Ok(desk.not_found());
        }
        if !desk.may(Action::MakeVoucher) {
            return Ok(desk.forbidden());
        }
        let t = UnitTexts::of(desk.lang);
        let mut upload = Upload {
            kind: fields.text("kind"),
            unit: fields.text("unit"),
            file,
            ..Upload::default()
        };
        let bad = StatusCode::UNPROCESSABLE_ENTITY;
        let units = units_of(&p, &desk);
        if !units.iter().any(|(code, _)| *code == upload.unit) {
            upload.error = Some(t.not_your_unit.to_owned());
            return import_view(&p, &desk, upload, bad).await;
        }
        let Some(bytes) = upload.file.take() else {
            upload.error = Some(t.no_file.to_owned());
            return import_view(&p, &desk, upload, bad).await;
        };
        let kind = if upload.kind == "card" {
            import::ListKind::OfficialCard
        } else {
            import::ListKind::Salary
        };
        let (now, _) = desk.party.now();
        let date = Party::<T>::business_date(now);
        let limits = import::Limits::for_registry(&desk.party.registry);
        let imported = match import::import(&bytes, kind, date, &limits) {
            Ok(imported) => imported,
            Err(e) => {
                upload.error = Some(e.message(desk.lang));
                return import_view(&p, &desk, upload, bad).await;
            }
        };
        let has_errors = !imported.errors.is_empty();
        let too_many = imported.rows.len() > BATCH_ROWS_MAX;
        if too_many {
            let max = BATCH_ROWS_MAX.to_string();
            upload.error = Some(super::i18n::fill(t.too_many_rows, &[("max", &max)]));
        }
        let submit = fields.get("action") == Some("submit");
        if !submit || has_errors || too_many || imported.rows.is_empty() {
            let status = if has_errors || too_many {
                bad
            } else {
                StatusCode::OK
            };
            upload.imported = Some(imported);
            return import_view(&p, &desk, upload, status).await;
        }
        let Some(builder) = p.builder.clone() else {
            return Ok(desk.forbidden());
        };
        let Some(finance) = finance_of(&p) else {
            upload.error = Some(t.no_finance.to_owned());
            return import_view(&p, &desk, upload, bad).await;
        };
        let Some(at_finance) = acting_at(&finance, &desk).await? else {
            upload.error = Some(t.not_at_finance.to_owned());
            return import_view(&p, &desk, upload, bad).await;
        };
        let unit = upload.unit.clone();
        desk.once(&fields, async {
            let form_id = fields.get("form_id").unwrap_or_default();
            let no = crate::api::voucher_no("PL", desk.party.org_code(), desk.user.id, form_id);
            let first = &imported.rows[0];
            let payee = Payee {
                name: first.payee_name.clone(),
                account: first.payee_account.as_str().to_owned(),
                bank_name: first.payee_bank.clone(),
                summary: first.purpose.clone().unwrap_or_default(),
            };
            let order = PaymentOrder {
                unit: &unit,
                amount: imported.total,
                payee: &payee,
                voucher_no: &no,
                date,
            };
            let draft = match builder.direct(&order) {
                Ok(draft) => draft,
                Err(e) => {
                    let upload = Upload {
                        kind: upload.kind.clone(),
                        unit: unit.clone(),
                        error: Some(format!("{}{e}", t.refused)),
                        ..Upload::default()
                    };
                    return Ok(Err(import_view(&p, &desk, upload, bad).await?));
                }
            };
            let mut voucher = draft.voucher;
            batch_rows(&finance, &mut voucher, &imported);
            let path = application_path(&voucher.key());
            let making = Making {
                voucher,
                receiver: draft.bank,
                plan_month: Some(date.month()),
                amount: imported.total,
            };
            match crate::api::make_draft(&finance, &at_finance, making).await {
                Ok(_) => Ok(Ok(desk.href(&path))),
                Err(e) if e.is_business() => {
                    let upload = Upload {
                        kind: upload.kind.clone(),
                        unit: unit.clone(),
                        error: Some(format!("{}{}", t.refused, e.body().message)),
                        ..Upload::default()
                    };
                    Ok(Err(import_view(&p, &desk, upload, bad).await?))
                }
                Err(e) => Err(PortalError::Work(e.body().message)),
            }
        })
        .await
    };
    respond(lang, work.await)
}

/// Makes `voucher` (a single 5201) the batch of `imported`: its business type, a detail
/// per row, the header's amount their total and its count their number.
fn batch_rows<T: Transport>(
    finance: &Party<T>,
    voucher: &mut guoku_voucher::Voucher,
    imported: &import::Imported,
) {
    let template = voucher.details.first().cloned().unwrap_or_default();
    voucher
        .header
        .set("BusinessTypeCode", imported.kind.business_type().code());
    voucher.details = imported
        .rows
        .iter()
        .enumerate()
        .map(|(i, row)| {
            let mut d = template.clone();
            d.set("Id", (i + 1).to_string());
            d.set("PayeeAcctNo", row.payee_account.as_str());
            d.set("PayeeAcctName", &row.payee_name);
            d.set("PayeeAcctBankName", &row.payee_bank);
            if let Some(bank_no) = &row.payee_bank_no {
                d.set("PayeeAcctBankNo", bank_no.as_str());
            }
            d.set("PayAmt", row.amount.to_string());
            if let Some(purpose) = &row.purpose {
                d.set("PaySummaryName", purpose);
            }
            d
        })
        .collect();
    voucher.header.set("PayAmt", imported.total.to_string());
    // The header's summary is required: the list's purpose when the form gave none.
    if voucher
        .header
        .value("PaySummaryName")
        .is_none_or(|s| s.trim().is_empty())
    {
        let summary = match imported.kind {
            import::ListKind::Salary => "工资",
            import::ListKind::OfficialCard => "公务卡报销",
        };
        voucher.header.set("PaySummaryName", summary);
    }
    if let Some(count) = finance
        .registry
        .get(voucher.vt_code())
        .and_then(|ty| ty.count.clone())
    {
        voucher.header.set(&count, imported.rows.len().to_string());
    }
}

// ---------------------------------------------------------------------------------------
// Receipts and account notices as PDF

/// `GET …/receipt.pdf` and `…/notice.pdf` of a payment (`v`) or an application (`a`).
async fn pdf_of<T: Transport>(
    State(p): State<Shared<T>>,
    Path((org, adm, year, vt, no)): Path<(String, String, String, String, String)>,
    headers: HeaderMap,
    uri: Uri,
    source: &'static str,
    kind: pdf::DocKind,
) -> Response {
    let key = VoucherKey {
        adm_div_code: adm,
        st_year: year,
        vt_code: vt,
        voucher_no: no,
    };
    document(p, org, headers, uri, (source, key), kind).await
}

/// The receipt (or account notice) of the unit's payment `key` as a PDF: from the bank's
/// sealed receipt in the library (verified when it arrived: nothing unsigned takes effect).
async fn document<T: Transport>(
    p: Shared<T>,
    org: String,
    headers: HeaderMap,
    uri: Uri,
    (source, key): (&'static str, VoucherKey),
    kind: pdf::DocKind,
) -> Response {
    let lang = lang_of(&headers);
    let work = async {
        let desk = match p.desk(&headers, &uri, &org, lang).await? {
            Ok(desk) => desk,
            Err(r) => return Ok(r),
        };
        if !is_unit_desk(&desk) {
            return Ok(desk.not_found());
        }
        if !desk.may(Action::ViewVouchers) {
            return Ok(desk.forbidden());
        }
        let party = match source {
            "v" => desk.party.clone(),
            "a" => match finance_of(&p) {
                Some(finance) => finance,
                None => return Ok(desk.not_found()),
            },
            _ => return Ok(desk.not_found()),
        };
        if own_draft(&desk, &party, &key).await?.is_none() {
            return Ok(desk.not_found());
        }
        let Some(record) = party
            .store
            .library()
            .status(&key, Leg::Receipt)
            .await
            .map_err(|e| PortalError::Work(e.to_string()))?
        else {
            return Ok(desk.not_found());
        };
        let receipt = crate::flows::common::stored_body(&record.body, VoucherFlag::Receipt)
            .map_err(PortalError::Work)?
            .voucher;
        let bank_name = p
            .parties
            .get(&record.sender)
            .map_or_else(|| record.sender.clone(), |b| b.config.name.clone());
        let division_name = party
            .store
            .access()
            .division(
                &key.adm_div_code
                    .parse()
                    .map_err(|_| PortalError::Work(format!("{key}: a bad AdmDivCode")))?,
            )
            .await?
            .map(|d| d.name)
            .unwrap_or_default();
        let doc = match receipt_doc(
            &receipt,
            kind,
            &bank_name,
            &division_name,
            desk.lang,
            desk.now,
        ) {
            Ok(doc) => doc,
            Err(why) => return Err(PortalError::Work(format!("{key}: {why}"))),
        };
        let font = p
            .font
            .get_or_init(|| {
                pdf::CjkFont::discover()
                    .map(Arc::new)
                    .map_err(|e| e.to_string())
            })
            .clone();
        let font = match font {
            Ok(font) => font,
            Err(why) => {
                let t = UnitTexts::of(desk.lang);
                return Ok(super::message(
                    desk.lang,
                    StatusCode::SERVICE_UNAVAILABLE,
                    desk.t().error_title,
                    &format!("{}{why}", t.no_font),
                    &desk.href(""),
                    desk.t().back_home,
                ));
            }
        };
        let bytes = tokio::task::spawn_blocking(move || pdf::render(&doc, &font))
            .await
            .map_err(|e| PortalError::Runtime(e.to_string()))?
            .map_err(|e| PortalError::Work(e.to_string()))?;
        let name = match kind {
            pdf::DocKind::PaymentReceipt => "receipt",
            pdf::DocKind::CreditAdvice => "credit-advice",
        };
        let disposition = format!(
            "attachment; filename=\"{name}-{}-{}.pdf\"",
            key.vt_code, key.voucher_no
        );
        let mut response = (StatusCode::OK, bytes).into_response();
        let h = response.headers_mut();
        h.insert(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/pdf"),
        );
        h.insert(
            axum::http::header::CACHE_CONTROL,
            axum::http::HeaderValue::from_static("no-store"),
        );
        if let Ok(value) = axum::http::HeaderValue::from_str(&disposition) {
            h.insert(axum::http::header::CONTENT_DISPOSITION, value);
        }
        Ok(response)
    };
    respond(lang, work.await)
}

/// What the PDF shows, from the bank's receipt (its X fields filled).
fn receipt_doc(
    receipt: &guoku_voucher::Voucher,
    kind: pdf::DocKind,
    bank_name: &str,
    division_name: &str,
    lang: Lang,
    now: u64,
) -> Result<pdf::ReceiptDoc, String> {
    let field = |name: &str| receipt.header.get(name).unwrap_or_default().to_owned();
    fn parse<F: std::str::FromStr>(v: &guoku_voucher::Voucher, name: &str) -> Result<F, String> {
        let text = v.header.get(name).unwrap_or_default();
        text.parse()
            .map_err(|_| format!("the receipt's {name} {text:?} does not parse"))
    }
    let amount: Amount = match receipt.header.get("XPayAmt").filter(|a| !a.is_empty()) {
        Some(paid) => paid.parse().map_err(|_| format!("XPayAmt {paid:?}"))?,
        None => parse(receipt, "PayAmt")?,
    };
    let pay_date = match receipt.header.get("XPayDate").filter(|d| !d.is_empty()) {
        Some(_) => parse(receipt, "XPayDate")?,
        None => parse(receipt, "VouDate")?,
    };
    let vt_name = match receipt.vt_code() {
        "5201" => "财政直接支付凭证",
        "8202" => "财政授权支付凭证",
        _ => "支付凭证",
    };
    Ok(pdf::ReceiptDoc {
        kind,
        vt_code: receipt
            .vt_code()
            .parse()
            .map_err(|_| "the receipt's VtCode does not parse".to_owned())?,
        vt_name: vt_name.to_owned(),
        voucher_no: parse(receipt, "VoucherNo")?,
        adm_div: parse(receipt, "AdmDivCode")?,
        adm_div_name: division_name.to_owned(),
        year: parse(receipt, "StYear")?,
        voucher_date: parse(receipt, "VouDate")?,
        payer: pdf::AccountParty {
            account_no: field("PayAcctNo"),
            name: field("PayAcctName"),
            bank: field("PayAcctBankName"),
        },
        payee: pdf::AccountParty {
            account_no: field("PayeeAcctNo"),
            name: field("PayeeAcctName"),
            bank: field("PayeeAcctBankName"),
        },
        amount,
        purpose: field("PaySummaryName"),
        pay_date,
        bank_serial: field("XAgentBusinessNo"),
        bank_name: bank_name.to_owned(),
        sealed_by: bank_name.to_owned(),
        seal_name: format!("{bank_name}转讫章"),
        seal_check: pdf::SealCheck::Verified,
        printed_at: time_text(now),
        lang,
    })
}
