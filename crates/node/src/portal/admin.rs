//! Administration (系统管理), issue 6 part 6: users, posts and divisions, by three separate
//! administrators (三权分立), and the auditor's read-only view. For every organisation.
//!
//! Routes, under `/o/{org}/admin`:
//!
//! - `GET ` (users): the users of the organisation with their posts, divisions, budget
//!   units, status and lock, a page at a time (the three administrators and the auditor);
//! - `GET /users/new`, `POST /users`: the system administrator (系统管理员) creates a user
//!   with an initial password;
//! - `GET /users/{id}`: one user, with the forms its reader's post allows:
//!   - `POST /users/{id}/status` (system administrator): switch the user off or on;
//!   - `POST /users/{id}/posts`, `POST /users/{id}/posts/revoke`, `POST
//!     /users/{id}/divisions`, `POST /users/{id}/divisions/revoke`, `POST
//!     /users/{id}/unlock` (security administrator, 安全管理员): grant and revoke posts and
//!     divisions, unlock;
//!   - `POST /users/{id}/totp` (security administrator): enrol the user's authenticator
//!     (重置动态口令) with a fresh secret, sealed with the portal's key; the answer to the
//!     POST itself shows the secret, once (a 200 page, `no-store`, not a redirect), and
//!     nothing shows it again; the old secret stops working and the user's sessions end;
//! - `GET /log`: the administrative log (`access.events`), for the audit administrator
//!   (审计管理员);
//! - `GET /vouchers?vt=&leg=`, `GET /vouchers/v/{adm_div}/{year}/{vt_code}/{voucher_no}`:
//!   the library's vouchers of one type, read only (the auditor reads everything; a budget
//!   unit's user only their units' vouchers, as on their desk and in the API).
//!
//! **The policy decides** ([`crate::access`]): what a post may do ([`Action`]), that an
//! administrator post is held alone (`check_posts`: its refusal is shown next to the
//! field), and that nobody changes their own access (`check_grant`). Every change is a
//! POST with the form token and a one-time form id, and the store records it with its
//! actor in the administrative log. A user none of whose divisions the reader sees answers
//! 404 (a user with no division yet is everybody's to see, so a new user can be granted
//! one).

use std::collections::BTreeSet;

use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::header::CACHE_CONTROL;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::Response;
use axum::routing::{get, post};
use guoku_domain::AdmDivCode;
use guoku_store::access::{AccessError, LoginState, UserId, UserRecord, UserStatus};
use guoku_store::library::Direction;
use guoku_voucher::VoucherKey;
use guoku_voucher::lifecycle::{Exchange, Leg};

use super::bank::{
    self, BankTexts, Extra, Listing, Selection, cursor, find, legs, list_page, open, open_post,
    pager, param, when,
};
use super::desk::{Desk, FieldErrors, body};
use super::i18n::{fill, text_table};
use super::totp::TotpSecret;
use super::{Inner, PortalError, Shared, lang_of, respond};
use crate::access::{
    self as policy, AccessDenied, Action, Denied, Password, PasswordError, PolicyError, Post,
    SodViolation,
};
use crate::api::view::header_fields;
use crate::exchange::Transport;

/// Most users or events one page lists.
const PAGE: u32 = 100;

text_table! {
    /// The administration pages.
    AdminTexts, ADMIN_ZH, ADMIN_EN;
    nav_users: "用户管理", "Users";
    nav_log: "管理日志", "Administrative log";
    nav_vouchers: "凭证查询", "Vouchers";
    users_hint: "本机构的用户及其岗位、行政区划、状态和锁定情况。系统管理员、安全管理员、审计管理员三权分立，各由一人单独担任。", "The organisation's users with their posts, divisions, status and locks. The system, security and audit administrators are separate (三权分立): each post is held alone.";
    new_user: "新建用户", "New user";
    new_user_hint: "系统管理员创建用户并设置初始密码；岗位和行政区划由安全管理员授予。", "The system administrator creates a user with an initial password; the security administrator grants posts and divisions.";
    login: "用户名", "Login";
    display_name: "姓名", "Name";
    initial_password: "初始密码", "Initial password";
    password_rule: "至少 8 个字符，包含小写字母、大写字母、数字、其他字符中的三类。", "At least 8 characters, from three of: lower case, upper case, digits, others.";
    create: "创建", "Create";
    col_posts: "岗位", "Posts";
    col_divisions: "行政区划", "Divisions";
    col_units: "预算单位", "Budget units";
    col_status: "状态", "Status";
    col_lock: "锁定", "Lock";
    status_active: "启用", "active";
    status_disabled: "停用", "switched off";
    locked_until: "锁定至 {until}", "locked until {until}";
    failed_attempts: "连续错误 {n} 次", "{n} wrong attempts";
    not_locked: "未锁定", "not locked";
    user_title: "用户", "User";
    switch_off: "停用", "Switch off";
    switch_on: "启用", "Switch on";
    grant_post: "授予岗位", "Grant a post";
    revoke: "收回", "Revoke";
    grant_division: "授予行政区划", "Grant a division";
    unlock: "解除锁定", "Unlock";
    grant: "授予", "Grant";
    own_access: "不能更改本人的用户状态或权限。", "You cannot change your own status or access.";
    self_grant: "不能更改本人的权限（三权分立）。", "Nobody may change their own access (三权分立).";
    incompatible: "三权分立：已任{held}的用户不能再任{wanted}。", "Segregation of duties (三权分立): a holder of {held} may not also be {wanted}.";
    policy_refused: "权限规则不允许：{why}", "The access policy refuses: {why}";
    outside_divisions: "该行政区划不在您的管理范围内。", "That division is outside yours.";
    unknown_post: "请选择岗位。", "Choose a post.";
    unknown_division: "请选择行政区划。", "Choose a division.";
    login_required: "请填写用户名。", "A login is required.";
    login_rule: "用户名为 1–64 个字母、数字或 . _ - 字符。", "A login is 1 to 64 letters, digits or . _ - characters.";
    login_taken: "该用户名已被使用。", "That login is taken.";
    name_required: "请填写姓名。", "A name is required.";
    name_rule: "姓名过长或含有不允许的字符。", "The name is too long or holds characters not allowed.";
    weak_password: "密码强度不足：至少 8 个字符，包含三类字符。", "The password is too weak: at least 8 characters from three classes.";
    password_length: "密码为 1–128 字节。", "A password is 1 to 128 bytes.";
    log_hint: "所有管理操作及登录记录，含操作人和时间。只有审计管理员可查看。", "Every administrative act and sign-in, with who and when. For the audit administrator.";
    col_id: "编号", "No.";
    col_at: "时间", "Time";
    col_actor: "操作人", "By";
    col_action: "操作", "Action";
    col_subject: "对象", "Subject";
    col_detail: "内容", "Detail";
    vouchers_hint: "本机构凭证库中的凭证（只读）。", "The vouchers in this organisation's library (read only).";
    vt: "凭证类型", "Voucher type";
    leg: "凭证联", "Leg";
    show: "查看", "Show";
    empty: "暂无记录。", "Nothing here.";
    none: "无", "none";
    totp: "动态口令", "Authenticator";
    totp_enrolled: "已绑定（{at} 设置）", "enrolled ({at})";
    totp_missing: "未绑定：该用户无法登录。", "not enrolled: the user cannot sign in.";
    totp_enrol: "重置动态口令", "Enrol authenticator";
    totp_enrol_hint: "生成新的动态口令密钥：原密钥立即失效，该用户已登录的会话全部结束。", "Makes a new secret: the old one stops working at once and the user's sessions end.";
    totp_done: "动态口令已重置", "Authenticator enrolled";
    totp_hand_over: "请将以下密钥交给用户 {login} 本人，由其录入手机上的身份验证器（扫描或输入）。密钥只显示这一次：离开或刷新本页后无法再次查看，遗失时请重新重置。", "Hand this secret to {login} in person, to enter into the authenticator app on their phone. It is shown this once: after leaving or reloading this page nobody can see it again; if it is lost, enrol again.";
    totp_secret: "密钥（Base32）", "Secret (base32)";
    totp_uri: "otpauth 链接", "otpauth URI";
    back_to_user: "返回用户页面", "Back to the user";
}

/// The administration links.
pub(crate) fn nav<T: Transport>(desk: &Desk<T>) -> Vec<(&'static str, &'static str)> {
    let t = AdminTexts::of(desk.lang);
    let mut links = Vec::new();
    if desk.may(Action::ViewUsers) {
        links.push(("/admin", t.nav_users));
    }
    if desk.may(Action::ViewAuditLog) {
        links.push(("/admin/log", t.nav_log));
        links.push(("/admin/vouchers", t.nav_vouchers));
    }
    links
}

/// The administration routes.
pub(crate) fn routes<T: Transport + 'static>() -> Router<Shared<T>> {
    Router::new()
        .route("/o/{org}/admin", get(users::<T>))
        .route("/o/{org}/admin/users", post(create::<T>))
        .route("/o/{org}/admin/users/new", get(new_user::<T>))
        .route("/o/{org}/admin/users/{id}", get(user::<T>))
        .route("/o/{org}/admin/users/{id}/status", post(set_status::<T>))
        .route("/o/{org}/admin/users/{id}/posts", post(grant_post::<T>))
        .route(
            "/o/{org}/admin/users/{id}/posts/revoke",
            post(revoke_post::<T>),
        )
        .route(
            "/o/{org}/admin/users/{id}/divisions",
            post(grant_division::<T>),
        )
        .route(
            "/o/{org}/admin/users/{id}/divisions/revoke",
            post(revoke_division::<T>),
        )
        .route("/o/{org}/admin/users/{id}/unlock", post(unlock::<T>))
        .route("/o/{org}/admin/users/{id}/totp", post(enrol::<T>))
        .route("/o/{org}/admin/log", get(log::<T>))
        .route("/o/{org}/admin/vouchers", get(vouchers::<T>))
        .route(
            "/o/{org}/admin/vouchers/v/{adm_div}/{year}/{vt_code}/{voucher_no}",
            get(voucher::<T>),
        )
}

// ---------------------------------------------------------------------------------------
// Users

/// Whether the reader sees `user`: one of the user's divisions is theirs (or under one),
/// or the user has none yet.
fn visible<T: Transport>(desk: &Desk<T>, user: &UserRecord) -> bool {
    user.divisions.is_empty() || user.divisions.iter().any(|d| desk.sees(d))
}

fn post_names(t: &'static super::i18n::Texts, codes: &[String]) -> Vec<String> {
    codes
        .iter()
        .map(|c| {
            c.parse::<Post>()
                .map_or_else(|_| c.clone(), |p| t.post(p).to_owned())
        })
        .collect()
}

/// A user in the list.
struct UserLine {
    href: String,
    login: String,
    name: String,
    posts: Vec<String>,
    divisions: Vec<String>,
    units: Vec<String>,
    status: &'static str,
    lock: String,
}

fn lock_text(a: &AdminTexts, state: &LoginState, now: u64) -> String {
    match state.locked_until {
        Some(until) if state.is_locked(now) => fill(a.locked_until, &[("until", &when(until))]),
        _ if state.failed_attempts > 0 => fill(
            a.failed_attempts,
            &[("n", &state.failed_attempts.to_string())],
        ),
        _ => a.not_locked.to_owned(),
    }
}

fn user_line<T: Transport>(desk: &Desk<T>, user: &UserRecord) -> UserLine {
    let a = AdminTexts::of(desk.lang);
    UserLine {
        href: desk.href(&format!("/admin/users/{}", user.id.0)),
        login: user.login.clone(),
        name: user.display_name.clone(),
        posts: post_names(desk.t(), &user.posts),
        divisions: user.divisions.iter().map(ToString::to_string).collect(),
        units: user.units.clone(),
        status: match user.status {
            UserStatus::Active => a.status_active,
            UserStatus::Disabled => a.status_disabled,
        },
        lock: lock_text(a, &user.login_state, desk.now),
    }
}

#[derive(Template)]
#[template(
    ext = "html",
    source = r#"<h1>{{ a.nav_users }}</h1>
<p class="hint">{{ a.users_hint }}</p>
{% if let Some(href) = new_href %}<p><a href="{{ href }}">{{ a.new_user }}</a></p>{% endif %}
{% if users.is_empty() %}<p class="card">{{ a.empty }}</p>{% else %}<table class="users">
<thead><tr><th>{{ a.login }}</th><th>{{ a.display_name }}</th><th>{{ a.col_posts }}</th><th>{{ a.col_divisions }}</th><th>{{ a.col_units }}</th><th>{{ a.col_status }}</th><th>{{ a.col_lock }}</th></tr></thead>
<tbody>
{% for u in users %}<tr><td><a href="{{ u.href }}">{{ u.login }}</a></td><td>{{ u.name }}</td><td>{% for p in u.posts %}<span class="tag">{{ p }}</span>{% endfor %}</td><td>{% for d in u.divisions %}<code>{{ d }}</code> {% endfor %}</td><td>{% for d in u.units %}<code>{{ d }}</code> {% endfor %}</td><td>{{ u.status }}</td><td>{{ u.lock }}</td></tr>
{% endfor %}</tbody></table>{% endif %}
<p class="pager">{% if let Some(first) = first_href %}<a href="{{ first }}">{{ b.first_page }}</a> {% endif %}{% if let Some(next) = next_href %}<a href="{{ next }}" rel="next">{{ b.next_page }}</a>{% endif %}</p>
"#
)]
struct UsersBody {
    a: &'static AdminTexts,
    b: &'static BankTexts,
    new_href: Option<String>,
    users: Vec<UserLine>,
    first_href: Option<String>,
    next_href: Option<String>,
}

async fn users<T: Transport>(
    State(p): State<Shared<T>>,
    Path(org): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let lang = lang_of(&headers);
    let outcome = async {
        let desk = match open(&p, &headers, &uri, &org, None, Action::ViewUsers).await? {
            Ok(desk) => desk,
            Err(response) => return Ok(response),
        };
        let (a, b) = (AdminTexts::of(desk.lang), BankTexts::of(desk.lang));
        let after = cursor(&uri);
        let page = desk.party.store.access().users(after, PAGE).await?;
        let next = (page.len() == PAGE as usize)
            .then(|| page.last().map(|u| u.id.0))
            .flatten();
        let users = page
            .iter()
            .filter(|u| visible(&desk, u))
            .map(|u| user_line(&desk, u))
            .collect();
        let (first_href, next_href) = pager(uri.path(), &[], after, next);
        let page = UsersBody {
            a,
            b,
            new_href: desk
                .may(Action::ManageUsers)
                .then(|| desk.href("/admin/users/new")),
            users,
            first_href,
            next_href,
        };
        desk.page(StatusCode::OK, a.nav_users, body(&page)?)
    };
    respond(lang, outcome.await)
}

#[derive(Template)]
#[template(
    ext = "html",
    source = r#"<h1>{{ a.new_user }}</h1>
<p class="hint">{{ a.new_user_hint }}</p>
{% if !errors.is_empty() %}<p class="error" role="alert">{{ t.form_has_errors }}</p>{% endif %}
<form method="post" action="{{ action }}" class="card">
<input type="hidden" name="csrf" value="{{ csrf }}">
<input type="hidden" name="form_id" value="{{ form_id }}">
<label>{{ a.login }}<input name="login" value="{{ login }}" required maxlength="64" autocomplete="off" autocapitalize="none" spellcheck="false"></label>
{% if errors.has("login") %}<p class="error" role="alert">{{ errors.of("login") }}</p>{% endif %}
<label>{{ a.display_name }}<input name="display_name" value="{{ display_name }}" required maxlength="30"></label>
{% if errors.has("display_name") %}<p class="error" role="alert">{{ errors.of("display_name") }}</p>{% endif %}
<label>{{ a.initial_password }}<input name="password" type="password" required maxlength="128" autocomplete="new-password"></label>
<p class="hint">{{ a.password_rule }}</p>
{% if errors.has("password") %}<p class="error" role="alert">{{ errors.of("password") }}</p>{% endif %}
<button type="submit" hx-disabled-elt="this">{{ a.create }}</button>
</form>
"#
)]
struct NewUserBody {
    a: &'static AdminTexts,
    t: &'static super::i18n::Texts,
    action: String,
    csrf: String,
    form_id: String,
    login: String,
    display_name: String,
    errors: FieldErrors,
}

fn new_user_page<T: Transport>(
    desk: &Desk<T>,
    status: StatusCode,
    login: String,
    display_name: String,
    errors: FieldErrors,
) -> Result<Response, PortalError> {
    let a = AdminTexts::of(desk.lang);
    let page = NewUserBody {
        a,
        t: desk.t(),
        action: desk.href("/admin/users"),
        csrf: desk.csrf.clone(),
        form_id: desk.form_id().to_string(),
        login,
        display_name,
        errors,
    };
    desk.page(status, a.new_user, body(&page)?)
}

async fn new_user<T: Transport>(
    State(p): State<Shared<T>>,
    Path(org): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let lang = lang_of(&headers);
    let outcome = async {
        let desk = match open(&p, &headers, &uri, &org, None, Action::ManageUsers).await? {
            Ok(desk) => desk,
            Err(response) => return Ok(response),
        };
        new_user_page(
            &desk,
            StatusCode::OK,
            String::new(),
            String::new(),
            FieldErrors::default(),
        )
    };
    respond(lang, outcome.await)
}

async fn create<T: Transport>(
    State(p): State<Shared<T>>,
    Path(org): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    bytes: Bytes,
) -> Response {
    let lang = lang_of(&headers);
    let outcome = async {
        let (desk, fields) =
            match open_post(&p, &headers, &uri, &bytes, &org, None, Action::ManageUsers).await? {
                Ok(opened) => opened,
                Err(response) => return Ok(response),
            };
        let a = AdminTexts::of(desk.lang);
        let (login, name) = (fields.text("login"), fields.text("display_name"));
        let mut errors = FieldErrors::default();
        if login.is_empty() {
            errors.add("login", a.login_required);
        }
        if name.is_empty() {
            errors.add("display_name", a.name_required);
        }
        let password = match Password::new(fields.get("password").unwrap_or_default()) {
            Ok(password) => match policy::check_new_password(&password) {
                Ok(()) => Some(password),
                Err(_) => {
                    errors.add("password", a.weak_password);
                    None
                }
            },
            Err(_) => {
                errors.add("password", a.password_length);
                None
            }
        };
        let again = |errors| {
            new_user_page(
                &desk,
                StatusCode::UNPROCESSABLE_ENTITY,
                login.clone(),
                name.clone(),
                errors,
            )
        };
        let Some(password) = password.filter(|_| errors.is_empty()) else {
            return again(errors);
        };
        desk.once(&fields, async {
            let (_, now) = desk.party.now();
            let rng = rand::make_rng::<rand::rngs::StdRng>();
            let created = policy::create_user(
                &desk.party.store,
                &desk.principal,
                &login,
                &name,
                &password,
                rng,
                now,
            )
            .await;
            let mut errors = FieldErrors::default();
            match created {
                Ok(user) => {
                    tracing::info!(org = %desk.org(), by = %desk.user.login, user = %user.login, "user created from the portal");
                    return Ok(Ok(desk.href(&format!("/admin/users/{}", user.id.0))));
                }
                Err(AccessDenied::Access(AccessError::Duplicate { .. })) => {
                    errors.add("login", a.login_taken);
                }
                Err(AccessDenied::Access(AccessError::InvalidArgument(why))) => {
                    if why.contains("login") {
                        errors.add("login", a.login_rule);
                    } else {
                        errors.add("display_name", a.name_rule);
                    }
                }
                Err(AccessDenied::Password(PasswordError::Weak)) => {
                    errors.add("password", a.weak_password);
                }
                Err(AccessDenied::Password(PasswordError::Length)) => {
                    errors.add("password", a.password_length);
                }
                Err(AccessDenied::Denied(_)) => return Ok(Err(desk.forbidden())),
                Err(e) => return Err(PortalError::Work(e.to_string())),
            }
            Ok(Err(again(errors)?))
        })
        .await
    };
    respond(lang, outcome.await)
}

/// A choice of a form's select.
struct Choice {
    value: String,
    text: String,
}

/// A held post or division, with its revoke button.
struct Held {
    value: String,
    text: String,
}

/// The one-time ids of the user page's forms (each form its own, so one submit never
/// stands for another).
struct FormIds {
    status: String,
    grant_post: String,
    revoke_post: String,
    grant_division: String,
    revoke_division: String,
    unlock: String,
    totp: String,
}

#[derive(Template)]
#[template(
    ext = "html",
    source = r#"<h1>{{ a.user_title }} {{ u.login }}</h1>
<p><a href="{{ back }}">{{ a.nav_users }}</a></p>
<section class="card">
<dl>
<dt>{{ a.login }}</dt><dd class="login">{{ u.login }}</dd>
<dt>{{ a.display_name }}</dt><dd>{{ u.name }}</dd>
<dt>{{ a.col_posts }}</dt><dd class="posts">{% for p in u.posts %}<span class="tag">{{ p }}</span>{% endfor %}{% if u.posts.is_empty() %}{{ a.none }}{% endif %}</dd>
<dt>{{ a.col_divisions }}</dt><dd class="divisions">{% for d in u.divisions %}<code>{{ d }}</code> {% endfor %}{% if u.divisions.is_empty() %}{{ a.none }}{% endif %}</dd>
<dt>{{ a.col_units }}</dt><dd>{% for d in u.units %}<code>{{ d }}</code> {% endfor %}{% if u.units.is_empty() %}{{ a.none }}{% endif %}</dd>
<dt>{{ a.col_status }}</dt><dd class="status">{{ u.status }}</dd>
<dt>{{ a.col_lock }}</dt><dd class="lock">{{ u.lock }}</dd>
</dl>
</section>
{% if own %}<p class="hint">{{ a.own_access }}</p>{% endif %}
{% if !manage && !grant %}{% for e in errors.0 %}<p class="error" role="alert">{{ e.message }}</p>
{% endfor %}{% endif %}
{% if errors.has("form") %}<p class="error" role="alert">{{ errors.of("form") }}</p>{% endif %}
{% if manage %}<section class="card">
<h2>{{ a.col_status }}</h2>
<form method="post" action="{{ action }}/status" class="inline">
<input type="hidden" name="csrf" value="{{ csrf }}">
<input type="hidden" name="form_id" value="{{ ids.status }}">
{% if active %}<input type="hidden" name="status" value="disabled"><button type="submit">{{ a.switch_off }}</button>{% else %}<input type="hidden" name="status" value="active"><button type="submit">{{ a.switch_on }}</button>{% endif %}
</form>
{% if errors.has("status") %}<p class="error" role="alert">{{ errors.of("status") }}</p>{% endif %}
</section>{% endif %}
{% if grant %}<section class="card">
<h2>{{ a.col_posts }}</h2>
{% for h in held_posts %}<form method="post" action="{{ action }}/posts/revoke" class="inline">
<input type="hidden" name="csrf" value="{{ csrf }}">
<input type="hidden" name="form_id" value="{{ ids.revoke_post }}">
<input type="hidden" name="post" value="{{ h.value }}">
<span class="tag">{{ h.text }}</span><button type="submit">{{ a.revoke }}</button>
</form>
{% endfor %}
<form method="post" action="{{ action }}/posts" class="inline">
<input type="hidden" name="csrf" value="{{ csrf }}">
<input type="hidden" name="form_id" value="{{ ids.grant_post }}">
<label>{{ a.grant_post }} <select name="post">
{% for c in post_choices %}<option value="{{ c.value }}">{{ c.text }}</option>
{% endfor %}</select></label>
<button type="submit">{{ a.grant }}</button>
</form>
{% if errors.has("post") %}<p class="error" role="alert">{{ errors.of("post") }}</p>{% endif %}
</section>
<section class="card">
<h2>{{ a.col_divisions }}</h2>
{% for h in held_divisions %}<form method="post" action="{{ action }}/divisions/revoke" class="inline">
<input type="hidden" name="csrf" value="{{ csrf }}">
<input type="hidden" name="form_id" value="{{ ids.revoke_division }}">
<input type="hidden" name="division" value="{{ h.value }}">
<code>{{ h.text }}</code><button type="submit">{{ a.revoke }}</button>
</form>
{% endfor %}
<form method="post" action="{{ action }}/divisions" class="inline">
<input type="hidden" name="csrf" value="{{ csrf }}">
<input type="hidden" name="form_id" value="{{ ids.grant_division }}">
<label>{{ a.grant_division }} <select name="division">
{% for c in division_choices %}<option value="{{ c.value }}">{{ c.text }}</option>
{% endfor %}</select></label>
<button type="submit">{{ a.grant }}</button>
</form>
{% if errors.has("division") %}<p class="error" role="alert">{{ errors.of("division") }}</p>{% endif %}
</section>
<section class="card">
<h2>{{ a.col_lock }}</h2>
<form method="post" action="{{ action }}/unlock" class="inline">
<input type="hidden" name="csrf" value="{{ csrf }}">
<input type="hidden" name="form_id" value="{{ ids.unlock }}">
<button type="submit">{{ a.unlock }}</button>
</form>
{% if errors.has("unlock") %}<p class="error" role="alert">{{ errors.of("unlock") }}</p>{% endif %}
</section>{% endif %}
<section class="card">
<h2>{{ a.totp }}</h2>
<p class="totp">{{ totp }}</p>
{% if grant %}<form method="post" action="{{ action }}/totp" class="inline">
<input type="hidden" name="csrf" value="{{ csrf }}">
<input type="hidden" name="form_id" value="{{ ids.totp }}">
<button type="submit" hx-disabled-elt="this">{{ a.totp_enrol }}</button>
</form>
<p class="hint">{{ a.totp_enrol_hint }}</p>{% endif %}
{% if errors.has("totp") %}<p class="error" role="alert">{{ errors.of("totp") }}</p>{% endif %}
</section>
"#
)]
struct UserBody {
    a: &'static AdminTexts,
    back: String,
    u: UserLine,
    own: bool,
    manage: bool,
    grant: bool,
    active: bool,
    action: String,
    csrf: String,
    ids: FormIds,
    held_posts: Vec<Held>,
    post_choices: Vec<Choice>,
    held_divisions: Vec<Held>,
    division_choices: Vec<Choice>,
    /// Whether the user has an authenticator, and since when.
    totp: String,
    errors: FieldErrors,
}

/// The user `id` if the reader sees them.
async fn target<T: Transport>(desk: &Desk<T>, id: &str) -> Result<Option<UserRecord>, PortalError> {
    let Ok(id) = id.parse::<u64>() else {
        return Ok(None);
    };
    let user = desk.party.store.access().user(UserId(id)).await?;
    Ok(user.filter(|u| visible(desk, u)))
}

async fn user_page<T: Transport>(
    desk: &Desk<T>,
    user: &UserRecord,
    status: StatusCode,
    errors: FieldErrors,
) -> Result<Response, PortalError> {
    let (a, t) = (AdminTexts::of(desk.lang), desk.t());
    let own = policy::check_grant(&desk.principal, user.id).is_err();
    let held: BTreeSet<&str> = user.posts.iter().map(String::as_str).collect();
    let divisions = desk.party.store.access().divisions().await?;
    let totp = match desk.party.store.sessions().totp(user.id).await? {
        Some(factor) => fill(a.totp_enrolled, &[("at", &when(factor.enrolled_at))]),
        None => a.totp_missing.to_owned(),
    };
    let form_id = || desk.form_id().to_string();
    let page = UserBody {
        a,
        back: desk.href("/admin"),
        u: user_line(desk, user),
        own,
        manage: !own && desk.may(Action::ManageUsers),
        grant: !own && desk.may(Action::GrantAccess),
        active: user.status == UserStatus::Active,
        action: desk.href(&format!("/admin/users/{}", user.id.0)),
        csrf: desk.csrf.clone(),
        ids: FormIds {
            status: form_id(),
            grant_post: form_id(),
            revoke_post: form_id(),
            grant_division: form_id(),
            revoke_division: form_id(),
            unlock: form_id(),
            totp: form_id(),
        },
        held_posts: user
            .posts
            .iter()
            .map(|code| Held {
                value: code.clone(),
                text: code
                    .parse::<Post>()
                    .map_or_else(|_| code.clone(), |p| t.post(p).to_owned()),
            })
            .collect(),
        post_choices: Post::ALL
            .into_iter()
            .filter(|p| !held.contains(p.code()))
            .map(|p| Choice {
                value: p.code().to_owned(),
                text: t.post(p).to_owned(),
            })
            .collect(),
        held_divisions: user
            .divisions
            .iter()
            .filter(|d| desk.sees(d))
            .map(|d| Held {
                value: d.to_string(),
                text: d.to_string(),
            })
            .collect(),
        division_choices: divisions
            .iter()
            .filter(|d| desk.sees(&d.code) && !user.divisions.contains(&d.code))
            .map(|d| Choice {
                value: d.code.to_string(),
                text: format!("{} {}", d.code, d.name),
            })
            .collect(),
        totp,
        errors,
    };
    desk.page(status, a.user_title, body(&page)?)
}

async fn user<T: Transport>(
    State(p): State<Shared<T>>,
    Path((org, id)): Path<(String, String)>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let lang = lang_of(&headers);
    let outcome = async {
        let desk = match open(&p, &headers, &uri, &org, None, Action::ViewUsers).await? {
            Ok(desk) => desk,
            Err(response) => return Ok(response),
        };
        let Some(user) = target(&desk, &id).await? else {
            return Ok(desk.not_found());
        };
        user_page(&desk, &user, StatusCode::OK, FieldErrors::default()).await
    };
    respond(lang, outcome.await)
}

/// A change to a user an administrator makes.
#[derive(Clone, Copy, Debug)]
enum Change {
    Status,
    GrantPost,
    RevokePost,
    GrantDivision,
    RevokeDivision,
    Unlock,
}

impl Change {
    fn action(self) -> Action {
        match self {
            Change::Status => Action::ManageUsers,
            _ => Action::GrantAccess,
        }
    }

    /// The form field its errors show next to.
    fn field(self) -> &'static str {
        match self {
            Change::Status => "status",
            Change::GrantPost | Change::RevokePost => "post",
            Change::GrantDivision | Change::RevokeDivision => "division",
            Change::Unlock => "unlock",
        }
    }
}

/// What a change refused says, in the reader's language.
fn sod_text(desk_t: &'static super::i18n::Texts, a: &AdminTexts, v: &SodViolation) -> String {
    match v {
        SodViolation::SelfGrant => a.self_grant.to_owned(),
        SodViolation::IncompatiblePosts { held, wanted } => fill(
            a.incompatible,
            &[
                ("held", desk_t.post(*held)),
                ("wanted", desk_t.post(*wanted)),
            ],
        ),
        other => fill(a.policy_refused, &[("why", &other.to_string())]),
    }
}

async fn change<T: Transport>(
    p: &Inner<T>,
    (org, id): (String, String),
    headers: &HeaderMap,
    uri: &Uri,
    bytes: &Bytes,
    change: Change,
) -> Result<Response, PortalError> {
    let (desk, fields) =
        match open_post(p, headers, uri, bytes, &org, None, change.action()).await? {
            Ok(opened) => opened,
            Err(response) => return Ok(response),
        };
    let Some(user) = target(&desk, &id).await? else {
        return Ok(desk.not_found());
    };
    let (a, t) = (AdminTexts::of(desk.lang), desk.t());
    let field = change.field();
    let refuse = async |message: String| {
        let mut errors = FieldErrors::default();
        errors.add(field, message);
        // Read again: the page shows the user as they are.
        let now = desk.party.store.access().user(user.id).await?;
        user_page(
            &desk,
            now.as_ref().unwrap_or(&user),
            StatusCode::UNPROCESSABLE_ENTITY,
            errors,
        )
        .await
    };
    // Nobody changes their own access (三权分立); the policy says so before anything.
    if let Err(v) = policy::check_grant(&desk.principal, user.id) {
        return refuse(sod_text(t, a, &v)).await;
    }
    let post = fields.get("post").and_then(|p| p.parse::<Post>().ok());
    let division = fields
        .get("division")
        .and_then(|d| d.parse::<AdmDivCode>().ok());
    let status = match fields.get("status") {
        Some("active") => Some(UserStatus::Active),
        Some("disabled") => Some(UserStatus::Disabled),
        _ => None,
    };
    match change {
        Change::GrantPost | Change::RevokePost if post.is_none() => {
            return refuse(a.unknown_post.to_owned()).await;
        }
        Change::GrantDivision | Change::RevokeDivision if division.is_none() => {
            return refuse(a.unknown_division.to_owned()).await;
        }
        Change::Status if status.is_none() => {
            return refuse(a.status_active.to_owned()).await;
        }
        _ => {}
    }
    if let Some(d) = &division
        && !desk.sees(d)
    {
        return refuse(a.outside_divisions.to_owned()).await;
    }
    let back = desk.href(&format!("/admin/users/{}", user.id.0));
    desk.once(&fields, async {
        let (_, now) = desk.party.now();
        let store = &desk.party.store;
        let access = store.access();
        let actor = desk.principal.login.as_str();
        let done: Result<(), AccessDenied> = match (change, post, division, status) {
            (Change::Status, _, _, Some(status)) => access
                .set_status(user.id, status, actor, now)
                .await
                .map(|_| ())
                .map_err(AccessDenied::from),
            (Change::GrantPost, Some(post), _, _) => {
                policy::grant_post(store, &desk.principal, user.id, post, now)
                    .await
                    .map(|_| ())
            }
            (Change::RevokePost, Some(post), _, _) => {
                let allowed = user
                    .divisions
                    .iter()
                    .try_for_each(|d| policy::may(&desk.principal, Action::GrantAccess, d));
                match allowed {
                    Ok(()) => access
                        .revoke_post(user.id, post.code(), actor, now)
                        .await
                        .map(|_| ())
                        .map_err(AccessDenied::from),
                    Err(denied) => Err(denied.into()),
                }
            }
            (Change::GrantDivision, _, Some(division), _) => {
                policy::grant_division(store, &desk.principal, user.id, &division, now)
                    .await
                    .map(|_| ())
            }
            (Change::RevokeDivision, _, Some(division), _) => {
                match policy::may(&desk.principal, Action::GrantAccess, &division) {
                    Ok(()) => access
                        .revoke_division(user.id, &division, actor, now)
                        .await
                        .map(|_| ())
                        .map_err(AccessDenied::from),
                    Err(denied) => Err(denied.into()),
                }
            }
            (Change::Unlock, _, _, _) => access
                .update_login(user.id, "unlock", actor, now, |_| LoginState::default())
                .await
                .map(|_| ())
                .map_err(AccessDenied::from),
            _ => return Err(PortalError::Work("a checked change is incomplete".into())),
        };
        let message = match done {
            Ok(()) => {
                tracing::info!(org = %desk.org(), by = %actor, user = %user.login, change = ?change, "user changed from the portal");
                return Ok(Ok(back.clone()));
            }
            Err(AccessDenied::Sod(v) | AccessDenied::Policy(PolicyError::Sod(v))) => {
                sod_text(t, a, &v)
            }
            Err(AccessDenied::Policy(e)) => fill(a.policy_refused, &[("why", &e.to_string())]),
            Err(AccessDenied::Denied(Denied::Division { .. })) => a.outside_divisions.to_owned(),
            Err(AccessDenied::Denied(_)) => return Ok(Err(desk.forbidden())),
            Err(AccessDenied::Access(AccessError::NotFound { .. })) => {
                return Ok(Err(desk.not_found()));
            }
            Err(AccessDenied::Access(AccessError::InvalidArgument(why))) => {
                fill(a.policy_refused, &[("why", &why)])
            }
            Err(AccessDenied::Access(e)) => return Err(e.into()),
            Err(e) => return Err(PortalError::Work(e.to_string())),
        };
        Ok(Err(refuse(message).await?))
    })
    .await
}

macro_rules! change_route {
    ($name:ident, $change:expr) => {
        async fn $name<T: Transport>(
            State(p): State<Shared<T>>,
            Path(path): Path<(String, String)>,
            headers: HeaderMap,
            uri: Uri,
            bytes: Bytes,
        ) -> Response {
            let lang = lang_of(&headers);
            respond(
                lang,
                change(&p, path, &headers, &uri, &bytes, $change).await,
            )
        }
    };
}

change_route!(set_status, Change::Status);
change_route!(grant_post, Change::GrantPost);
change_route!(revoke_post, Change::RevokePost);
change_route!(grant_division, Change::GrantDivision);
change_route!(revoke_division, Change::RevokeDivision);
change_route!(unlock, Change::Unlock);

// ---------------------------------------------------------------------------------------
// The authenticator

/// The issuer authenticator apps show next to the account.
const ISSUER: &str = "guoku";

#[derive(Template)]
#[template(
    ext = "html",
    source = r#"<h1>{{ a.totp_done }}</h1>
<section class="card">
<p class="hint">{{ hand_over }}</p>
<dl>
<dt>{{ a.login }}</dt><dd class="login">{{ login }}</dd>
<dt>{{ a.totp_secret }}</dt><dd><code class="totp-secret">{{ secret }}</code></dd>
<dt>{{ a.totp_uri }}</dt><dd><code class="totp-uri">{{ uri }}</code></dd>
</dl>
</section>
<p><a href="{{ back }}">{{ a.back_to_user }}</a></p>
"#
)]
struct EnrolledBody<'a> {
    a: &'static AdminTexts,
    hand_over: String,
    login: &'a str,
    secret: &'a str,
    uri: &'a str,
    back: &'a str,
}

async fn enrol<T: Transport>(
    State(p): State<Shared<T>>,
    Path(path): Path<(String, String)>,
    headers: HeaderMap,
    uri: Uri,
    bytes: Bytes,
) -> Response {
    let lang = lang_of(&headers);
    respond(lang, enrol_totp(&p, path, &headers, &uri, &bytes).await)
}

/// `POST /users/{id}/totp`: a fresh secret for the user, sealed for them with the portal's
/// key, stored with an `enrol_totp` event (the store ends the user's sessions in the same
/// transaction), and shown in this answer only. A repeat of the same form (a double click)
/// enrols nothing more and goes to the user's page, which never shows a secret.
async fn enrol_totp<T: Transport>(
    p: &Inner<T>,
    (org, id): (String, String),
    headers: &HeaderMap,
    uri: &Uri,
    bytes: &Bytes,
) -> Result<Response, PortalError> {
    let (mut desk, fields) =
        match open_post(p, headers, uri, bytes, &org, None, Action::GrantAccess).await? {
            Ok(opened) => opened,
            Err(response) => return Ok(response),
        };
    let Some(user) = target(&desk, &id).await? else {
        return Ok(desk.not_found());
    };
    let (a, t) = (AdminTexts::of(desk.lang), desk.t());
    let refuse = async |desk: &Desk<T>, message: String| {
        let mut errors = FieldErrors::default();
        errors.add("totp", message);
        user_page(desk, &user, StatusCode::UNPROCESSABLE_ENTITY, errors).await
    };
    // Nobody enrols their own authenticator (三权分立): the policy says so first.
    if let Err(v) = policy::check_grant(&desk.principal, user.id) {
        return refuse(&desk, sod_text(t, a, &v)).await;
    }
    // In every division the user holds, as for revoking a post.
    if user
        .divisions
        .iter()
        .any(|d| policy::may(&desk.principal, Action::GrantAccess, d).is_err())
    {
        return refuse(&desk, a.outside_divisions.to_owned()).await;
    }
    let back = desk.href(&format!("/admin/users/{}", user.id.0));
    let mut enrolled: Option<TotpSecret> = None;
    let answer = desk
        .once(&fields, async {
            let secret = TotpSecret::generate();
            let sealed = secret.seal(&p.key, user.id)?;
            let (_, now) = desk.party.now();
            let actor = desk.principal.login.as_str();
            match desk
                .party
                .store
                .sessions()
                .enrol_totp(user.id, sealed, actor, now)
                .await
            {
                Ok(ended) => {
                    // Never the secret.
                    tracing::info!(org = %desk.org(), by = %actor, user = %user.login, sessions_ended = ended, "authenticator enrolled from the portal");
                }
                Err(guoku_store::sessions::SessionError::NotFound { .. }) => {
                    return Ok(Err(desk.not_found()));
                }
                Err(e) => return Err(e.into()),
            }
            enrolled = Some(secret);
            Ok(Ok(back.clone()))
        })
        .await?;
    let Some(secret) = enrolled else {
        // Refused, or a repeat of a form already done: its answer as it is.
        return Ok(answer);
    };
    // The frame's language switch returns to the user's page, not to this POST.
    desk.path.clone_from(&back);
    let base32 = secret.base32();
    let account = format!("{}@{}", user.login, desk.org());
    let otpauth = secret.otpauth_uri(ISSUER, &account);
    let page = EnrolledBody {
        a,
        hand_over: fill(a.totp_hand_over, &[("login", &user.login)]),
        login: &user.login,
        secret: &base32,
        uri: &otpauth,
        back: &back,
    };
    let mut response = desk.page(StatusCode::OK, a.totp_done, body(&page)?)?;
    // Kept by no cache, shown again by no Back button.
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

// ---------------------------------------------------------------------------------------
// The log and the auditor's vouchers

/// The budget unit (AgencyCode) a stored voucher leg names, if it names one and reads.
fn agency_of(record: &guoku_store::library::VoucherRecord) -> Option<String> {
    header_fields(record)?
        .into_iter()
        .find(|(name, _)| name == "AgencyCode")
        .map(|(_, value)| value)
}

struct EventLine {
    id: u64,
    at: String,
    actor: String,
    action: String,
    subject: String,
    detail: String,
}

#[derive(Template)]
#[template(
    ext = "html",
    source = r#"<h1>{{ a.nav_log }}</h1>
<p class="hint">{{ a.log_hint }}</p>
{% if events.is_empty() %}<p class="card">{{ a.empty }}</p>{% else %}<table class="events">
<thead><tr><th>{{ a.col_id }}</th><th>{{ a.col_at }}</th><th>{{ a.col_actor }}</th><th>{{ a.col_action }}</th><th>{{ a.col_subject }}</th><th>{{ a.col_detail }}</th></tr></thead>
<tbody>
{% for e in events %}<tr><td>{{ e.id }}</td><td>{{ e.at }}</td><td class="actor">{{ e.actor }}</td><td class="action">{{ e.action }}</td><td>{{ e.subject }}</td><td>{{ e.detail }}</td></tr>
{% endfor %}</tbody></table>{% endif %}
<p class="pager">{% if let Some(first) = first_href %}<a href="{{ first }}">{{ b.first_page }}</a> {% endif %}{% if let Some(next) = next_href %}<a href="{{ next }}" rel="next">{{ b.next_page }}</a>{% endif %}</p>
"#
)]
struct LogBody {
    a: &'static AdminTexts,
    b: &'static BankTexts,
    events: Vec<EventLine>,
    first_href: Option<String>,
    next_href: Option<String>,
}

async fn log<T: Transport>(
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
        let (a, b) = (AdminTexts::of(desk.lang), BankTexts::of(desk.lang));
        let after = cursor(&uri);
        let events = desk.party.store.access().events(after, PAGE).await?;
        let next = (events.len() == PAGE as usize)
            .then(|| events.last().map(|e| e.id))
            .flatten();
        let (first_href, next_href) = pager(uri.path(), &[], after, next);
        let page = LogBody {
            a,
            b,
            events: events
                .into_iter()
                .map(|e| EventLine {
                    id: e.id,
                    at: when(e.at),
                    actor: e.actor,
                    action: e.action,
                    subject: e.subject,
                    detail: e.detail.unwrap_or_default(),
                })
                .collect(),
            first_href,
            next_href,
        };
        desk.page(StatusCode::OK, a.nav_log, body(&page)?)
    };
    respond(lang, outcome.await)
}

#[derive(Template)]
#[template(
    ext = "html",
    source = r#"<form method="get" action="{{ action }}" class="inline">
<label>{{ a.vt }} <select name="vt">
{% for c in types %}<option value="{{ c.value }}"{% if c.value == vt %} selected{% endif %}>{{ c.text }}</option>
{% endfor %}</select></label>
<label>{{ a.leg }} <select name="leg">
<option value="original"{% if !receipt %} selected{% endif %}>{{ b.leg_original }}</option>
<option value="receipt"{% if receipt %} selected{% endif %}>{{ b.leg_receipt }}</option>
</select></label>
<button type="submit">{{ a.show }}</button>
</form>
"#
)]
struct VoucherFilter {
    a: &'static AdminTexts,
    b: &'static BankTexts,
    action: String,
    types: Vec<Choice>,
    vt: String,
    receipt: bool,
}

async fn vouchers<T: Transport>(
    State(p): State<Shared<T>>,
    Path(org): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let lang = lang_of(&headers);
    let outcome = async {
        let desk = match open(&p, &headers, &uri, &org, None, Action::ViewVouchers).await? {
            Ok(desk) => desk,
            Err(response) => return Ok(response),
        };
        let (a, b) = (AdminTexts::of(desk.lang), BankTexts::of(desk.lang));
        let registry = desk.party.registry.clone();
        let vt = param(&uri, "vt")
            .filter(|vt| registry.get(vt).is_some())
            // The direct payment first: what an auditor reads most.
            .or_else(|| registry.get("5201").map(|t| t.vt_code.to_string()))
            .or_else(|| registry.types().next().map(|t| t.vt_code.to_string()))
            .unwrap_or_default();
        let receipt = param(&uri, "leg").as_deref() == Some("receipt");
        let before = body(&VoucherFilter {
            a,
            b,
            action: desk.href("/admin/vouchers"),
            types: registry
                .types()
                .map(|t| Choice {
                    value: t.vt_code.to_string(),
                    text: format!(
                        "{} {}",
                        t.vt_code,
                        match desk.lang {
                            super::Lang::Zh => &t.name_zh,
                            super::Lang::En => &t.name_en,
                        }
                    ),
                })
                .collect(),
            vt: vt.clone(),
            receipt,
        })?;
        let codes = [vt.as_str()];
        let selection = Selection {
            vt_codes: &codes,
            leg: if receipt { Leg::Receipt } else { Leg::Original },
            states: &Exchange::ALL,
            direction: None::<Direction>,
        };
        // A budget unit's user reads their units' vouchers only, as everywhere.
        let page = legs(&desk, &selection, cursor(&uri), |r| {
            desk.principal.acts_for(agency_of(r).as_deref())
        })
        .await?;
        // The pager keeps the type and leg.
        let leg = if receipt { "receipt" } else { "" };
        list_page(
            &desk,
            &uri,
            Listing {
                base: desk.href("/admin/vouchers/v"),
                title: a.nav_vouchers,
                hint: a.vouchers_hint,
                before,
                extra_title: "",
                extra: Extra::None,
                keep: &[("vt", &vt), ("leg", leg)],
            },
            page,
        )
        .await
    };
    respond(lang, outcome.await)
}

async fn voucher<T: Transport>(
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
        let desk = match open(&p, &headers, &uri, &org, None, Action::ViewVouchers).await? {
            Ok(desk) => desk,
            Err(response) => return Ok(response),
        };
        let Some(found) = find(&desk, &key)
            .await?
            .filter(|(record, _)| desk.principal.acts_for(agency_of(record).as_deref()))
        else {
            return Ok(desk.not_found());
        };
        bank::detail_page(
            &desk,
            &desk.href("/admin/vouchers/v"),
            desk.href("/admin/vouchers"),
            found,
            None,
            StatusCode::OK,
        )
        .await
    };
    respond(lang, outcome.await)
}
