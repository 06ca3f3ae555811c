//! The web portal every node serves: server-rendered pages in Chinese and English, signed
//! in with a password and a TOTP code (issue 6, part 1: the foundation later pages build
//! on).
//!
//! [`router`] builds the app from a [`Portal`] (the parties this node serves, a
//! [`PortalConfig`], a [`PortalKey`]); tests drive it with `tower::ServiceExt::oneshot`.
//! It sets no catch-all fallback, so it merges with the API's router
//! (`api::router(api).merge(portal::router(portal))`).
//!
//! - **Routes.** `GET /` sends you where you belong; `GET|POST /login` (the password),
//!   `GET|POST /login/totp` (the code), `POST /logout`, `POST /lang` (zh/en, kept in a
//!   cookie); `GET /o/{org}` is an organisation's home page for its signed-in users: who you
//!   are, your organisation and its role, your posts and divisions, what the organisation
//!   does, the API description; `GET /assets/{file}` serves htmx and the style sheet from
//!   the binary.
//! - **Signing in** (`signin`): a right password opens a short second-factor session
//!   (5 minutes); a right code replaces it with a signed-in session under a new id. Five
//!   wrong attempts in a row, passwords or codes, lock the user (30 minutes).
//! - **Sessions** live in the party's store ([`guoku_store::sessions`]): random 256-bit ids
//!   kept as their SHA-256, ended after 15 idle minutes or 8 hours whatever happens; cookies
//!   `HttpOnly`, `SameSite=Strict`, `Path=/`, and `Secure` (with the `__Host-` prefix) unless
//!   [`PortalConfig::secure_cookies`] is off, as the demo on `http://127.0.0.1` has it.
//! - **CSRF**: every form carries a token checked in constant time on every POST, and a POST
//!   must come from this origin (`Sec-Fetch-Site`, `Origin`); see `session`. A GET never
//!   signs anyone in or out, never changes a setting, a counter or a record: the only write
//!   a GET makes is moving its own session's idle end on.
//! - **A user of one organisation sees only its pages**: a session lives in its party's
//!   store and names its organisation; another organisation's pages answer 403.
//! - **Every text** comes from [`i18n`]'s table and every page is an askama template, so
//!   everything shown is HTML-escaped; each answer carries a Content Security Policy that
//!   allows scripts, styles and requests from this site only.
//!
//! The clock is each party's ([`Party::now`]); randomness comes from the operating system.

pub mod i18n;
pub mod import;
pub mod pdf;
pub mod totp;

mod admin;
mod audit_desk;
mod bank;
mod desk;
mod finance;
mod pages;
mod pboc;
mod seed;
mod session;
mod signin;
mod unit;

use std::collections::BTreeMap;
use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::header::{ACCEPT_LANGUAGE, CACHE_CONTROL, CONTENT_TYPE, LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use guoku_store::access::AccessError;
use guoku_store::sessions::{NewSession, SessionError, SessionRecord, SessionStage};
use serde::Deserialize;

pub use i18n::Lang;
pub use seed::{DEMO_PASSWORD, DemoLogin, demo_key, demo_totp_secret, seed_demo_users};
pub use totp::{PortalKey, SealError, TotpSecret};

use crate::access::{LockoutPolicy, PasswordError, Principal};
use crate::api::VoucherBuilder;
use crate::demo::Demo;
use crate::exchange::{InMemory, Transport};
use crate::party::Party;
use pages::{CodeBody, DivisionLine, Frame, HomeBody, LoginBody, MessageBody, OrgChoice};
use session::{CookieNames, LANG_COOKIE, LANG_COOKIE_SECS, SessionId};
use signin::Refusal;

/// The style sheet.
const PORTAL_CSS: &[u8] = include_bytes!("assets/portal.css");
/// htmx 2.0.11, vendored (see `assets/README.md`).
const HTMX_JS: &[u8] = include_bytes!("assets/htmx.min.js");

/// The portal's timeouts, limits and cookie settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortalConfig {
    /// Mark cookies `Secure` (and name them with the `__Host-` prefix), and send
    /// `Strict-Transport-Security`. On in every deployment; off only for a demo served
    /// over plain HTTP, where some browsers would drop `Secure` cookies.
    pub secure_cookies: bool,
    /// Seconds without a request after which a session ends.
    pub idle_secs: u64,
    /// Seconds after sign-in after which a session ends, however busy.
    pub absolute_secs: u64,
    /// Seconds between a right password and the code it waits for.
    pub second_factor_secs: u64,
    /// Wrong attempts (passwords or codes) that lock a user, and for how long.
    pub lockout: LockoutPolicy,
    /// Largest form body taken, in bytes.
    pub body_max_bytes: usize,
}

impl Default for PortalConfig {
    /// Secure cookies; 15 idle minutes, 8 hours at most, 5 minutes for the code; five
    /// wrong attempts lock for 30 minutes; forms up to 16 KiB.
    fn default() -> Self {
        Self {
            secure_cookies: true,
            idle_secs: 15 * 60,
            absolute_secs: 8 * 60 * 60,
            second_factor_secs: 5 * 60,
            lockout: LockoutPolicy::default(),
            body_max_bytes: 16 * 1024,
        }
    }
}

impl PortalConfig {
    /// The demo's: the defaults, but cookies without `Secure`, because `guoku demo` serves
    /// `http://127.0.0.1` without TLS.
    #[must_use]
    pub fn demo() -> Self {
        Self {
            secure_cookies: false,
            ..Self::default()
        }
    }

    /// Whether the configuration makes sense: every timeout at least a minute, the idle
    /// timeout and the code's wait within the absolute lifetime, a lock after at least one
    /// wrong attempt lasting at least a minute, forms of 1..=1024 KiB.
    ///
    /// # Errors
    /// [`PortalError::InvalidConfig`] naming the rule broken.
    pub fn check(&self) -> Result<(), PortalError> {
        let rules = [
            (
                self.idle_secs >= 60 && self.second_factor_secs >= 60,
                "the idle timeout and the code's wait are at least a minute",
            ),
            (
                self.idle_secs <= self.absolute_secs
                    && self.second_factor_secs <= self.absolute_secs,
                "the idle timeout and the code's wait are within the absolute lifetime",
            ),
            (
                self.absolute_secs <= i64::MAX as u64 / 2,
                "the absolute lifetime fits the store's times",
            ),
            (
                self.lockout.max_failures >= 1 && self.lockout.lock_secs >= 60,
                "a lock follows at least one wrong attempt and lasts at least a minute",
            ),
            (
                (1024..=1024 * 1024).contains(&self.body_max_bytes),
                "forms are 1 KiB to 1 MiB",
            ),
        ];
        match rules.iter().find(|(ok, _)| !ok) {
            Some((_, rule)) => Err(PortalError::InvalidConfig(rule)),
            None => Ok(()),
        }
    }
}

/// Why the portal could not answer (or seed). Refusals (a wrong password, a bad token)
/// are pages, not errors; these are failures.
#[derive(Debug, thiserror::Error)]
pub enum PortalError {
    /// The access records failed.
    #[error(transparent)]
    Access(#[from] AccessError),
    /// The sessions failed.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// A stored second factor does not open with this portal's key (the key changed).
    #[error(transparent)]
    Seal(#[from] SealError),
    /// A password could not be hashed.
    #[error(transparent)]
    Password(#[from] PasswordError),
    /// The configuration breaks a rule ([`PortalConfig::check`]). Retrying cannot help.
    #[error("invalid portal configuration: {0}")]
    InvalidConfig(&'static str),
    /// A user the demo lists is missing from its organisation's store.
    #[error("demo user {0} is not in its organisation's store")]
    MissingUser(String),
    /// A page failed to render (a bug).
    #[error("a page failed to render: {0}")]
    Render(String),
    /// The blocking pool is gone (the runtime is shutting down).
    #[error("a blocking task failed: {0}")]
    Runtime(String),
    /// A form's one-time id could not be taken or kept.
    #[error(transparent)]
    Idempotency(#[from] guoku_store::idempotency::IdempotencyError),
    /// The store failed under a desk page.
    #[error(transparent)]
    Store(#[from] guoku_store::StoreError),
    /// A flow step failed for a reason that is not the user's input.
    #[error("{0}")]
    Work(String),
}

impl PortalError {
    /// Whether retrying the same request may succeed.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Access(e) => e.is_retryable(),
            Self::Session(e) => e.is_retryable(),
            Self::Runtime(_) => true,
            Self::Idempotency(e) => e.is_retryable(),
            Self::Store(e) => e.is_retryable(),
            _ => false,
        }
    }
}

impl From<askama::Error> for PortalError {
    fn from(e: askama::Error) -> Self {
        Self::Render(e.to_string())
    }
}

/// What the portal serves: the parties by organisation code, its configuration and key.
pub struct Portal<T> {
    parties: BTreeMap<String, Arc<Party<T>>>,
    config: PortalConfig,
    key: PortalKey,
    /// Each organisation's directory of staff keys (`signer.key`: the signer's PIN key
    /// store, which finance's batch signing opens to check the PIN).
    key_dirs: BTreeMap<String, std::path::PathBuf>,
    builder: Option<Arc<dyn VoucherBuilder>>,
}

impl<T: Transport> Portal<T> {
    /// A portal serving no party yet; add them with [`Portal::serve`]. `key` must be the
    /// one the users' second factors were sealed with.
    ///
    /// # Errors
    /// [`PortalError::InvalidConfig`] ([`PortalConfig::check`]).
    pub fn new(config: PortalConfig, key: PortalKey) -> Result<Self, PortalError> {
        config.check()?;
        Ok(Self {
            parties: BTreeMap::new(),
            config,
            key,
            key_dirs: BTreeMap::new(),
            builder: None,
        })
    }

    /// Builds the payment vouchers the budget units' pages make with `builder` (without
    /// one, those pages say the counter takes no payments here).
    #[must_use]
    pub fn with_builder(mut self, builder: Arc<dyn VoucherBuilder>) -> Self {
        self.builder = Some(builder);
        self
    }

    /// The directory of `org`'s staff keys (where its `signer.key` PIN key store is).
    #[must_use]
    pub fn key_dir(mut self, org: &str, dir: impl Into<std::path::PathBuf>) -> Self {
        self.key_dirs.insert(org.to_owned(), dir.into());
        self
    }

    /// Serves `party`'s users too (keyed by its organisation code).
    #[must_use]
    pub fn serve(mut self, party: Arc<Party<T>>) -> Self {
        self.parties.insert(party.org_code().to_owned(), party);
        self
    }
}

impl Portal<InMemory> {
    /// The demo: every party of the province, [`PortalConfig::demo`], [`demo_key`] (the key
    /// [`seed_demo_users`] seals with).
    #[must_use]
    pub fn demo(demo: &Arc<Demo>) -> Self {
        let builder: Arc<dyn VoucherBuilder> = demo.clone();
        let mut portal = Portal::new(PortalConfig::demo(), demo_key())
            .expect("the demo configuration passes its checks")
            .with_builder(builder);
        for party in demo.parties() {
            let org = party.org_code().to_owned();
            portal = portal.serve(party).key_dir(&org, demo.dir.join(&org));
        }
        portal
    }
}

/// The state every handler shares.
struct Inner<T> {
    parties: BTreeMap<String, Arc<Party<T>>>,
    config: PortalConfig,
    key: PortalKey,
    names: CookieNames,
    /// Each organisation's directory of staff keys ([`Portal::key_dir`]).
    key_dirs: BTreeMap<String, std::path::PathBuf>,
    /// The budget units' payment vouchers' builder ([`Portal::with_builder`]).
    builder: Option<Arc<dyn VoucherBuilder>>,
    /// The CJK font of receipts, found on first use (or why none was found).
    font: std::sync::OnceLock<Result<Arc<pdf::CjkFont>, String>>,
}

type Shared<T> = Arc<Inner<T>>;

/// The app: the routes above, the body limit and the security headers. No catch-all
/// fallback (see the module documentation); a route asked with the wrong method answers
/// 405 (so `GET /logout` changes nothing).
pub fn router<T: Transport + 'static>(portal: Portal<T>) -> Router {
    let secure = portal.config.secure_cookies;
    let body_max = portal.config.body_max_bytes;
    let shared: Shared<T> = Arc::new(Inner {
        names: CookieNames::new(secure),
        parties: portal.parties,
        config: portal.config,
        key: portal.key,
        key_dirs: portal.key_dirs,
        builder: portal.builder,
        font: std::sync::OnceLock::new(),
    });
    Router::new()
        .route("/", get(root::<T>))
        .route("/login", get(login_page::<T>).post(login_submit::<T>))
        .route("/login/totp", get(code_page::<T>).post(code_submit::<T>))
        .route("/logout", post(logout::<T>))
        .route("/lang", post(switch_lang::<T>))
        .route("/o/{org}", get(home::<T>))
        .route("/assets/{file}", get(asset))
        .merge(unit::routes::<T>())
        .merge(finance::routes::<T>())
        .merge(bank::routes::<T>())
        .merge(pboc::routes::<T>())
        .merge(admin::routes::<T>())
        .merge(audit_desk::routes::<T>())
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_max))
        .layer(axum::middleware::from_fn(crate::audit::http_context))
        .layer(axum::middleware::map_response(move |r: Response| {
            security_headers(r, secure)
        }))
        .with_state(shared)
}

// ---------------------------------------------------------------------------------------
// Requests

/// The language of a request: its cookie, else the browser's first of ours, else Chinese.
fn lang_of(headers: &HeaderMap) -> Lang {
    session::cookie(headers, LANG_COOKIE)
        .and_then(Lang::from_code)
        .or_else(|| {
            headers
                .get(ACCEPT_LANGUAGE)
                .and_then(|v| v.to_str().ok())
                .and_then(Lang::from_accept_language)
        })
        .unwrap_or(Lang::Zh)
}

fn home_path(org: &str) -> String {
    format!("/o/{org}")
}

/// A live session of the request's cookie.
struct Current<T> {
    party: Arc<Party<T>>,
    id_hash: [u8; 32],
    record: SessionRecord,
    now: u64,
}

/// Why a POST was refused before its handler looked at it. Nothing was changed.
enum Rejected {
    /// Not from this site, or without the right token: 403.
    Forgery,
    /// Not a form, or a malformed one: 400.
    Malformed,
}

/// The fields of the portal's forms (each form uses some).
#[derive(Debug, Default, Deserialize)]
struct Form {
    csrf: Option<String>,
    org: Option<String>,
    login: Option<String>,
    password: Option<String>,
    code: Option<String>,
    lang: Option<String>,
    next: Option<String>,
}

impl<T: Transport> Inner<T> {
    /// The party and session id the request's session cookie names, if well formed and
    /// served here.
    fn cookie_session(&self, headers: &HeaderMap) -> Option<(Arc<Party<T>>, SessionId)> {
        let value = session::cookie(headers, self.names.session)?;
        let (org, id) = SessionId::parse_cookie(value)?;
        Some((self.parties.get(org)?.clone(), id))
    }

    /// The request's live session; with `touch`, the request counts as activity in it.
    async fn session(
        &self,
        headers: &HeaderMap,
        touch: bool,
    ) -> Result<Option<Current<T>>, PortalError> {
        let Some((party, id)) = self.cookie_session(headers) else {
            return Ok(None);
        };
        let (_, now) = party.now();
        let id_hash = id.hash();
        let sessions = party.store.sessions();
        let record = if touch {
            sessions.touch(&id_hash, now, self.config.idle_secs).await?
        } else {
            sessions.get(&id_hash, now).await?
        };
        Ok(record.map(|record| Current {
            party,
            id_hash,
            record,
            now,
        }))
    }

    /// The request's pre-session value, or a fresh one and the cookie that sets it.
    fn pre_session(&self, headers: &HeaderMap) -> (String, Option<HeaderValue>) {
        match session::cookie(headers, self.names.pre).filter(|v| session::is_pre_value(v)) {
            Some(value) => (value.to_owned(), None),
            None => {
                let value = session::new_pre_value();
                let cookie =
                    session::set_cookie(self.names.pre, &value, self.config.secure_cookies, None);
                (value, Some(cookie))
            }
        }
    }

    /// The token of the frame's forms: the session's, else the login form's.
    fn frame_token(&self, current: Option<&Current<T>>, pre: &str) -> String {
        match current {
            Some(c) => session::hex(&c.record.csrf_token),
            None => session::hex(&session::login_token(&self.key, pre)),
        }
    }

    /// The form of a POST, if it comes from this site and parses.
    fn form(&self, headers: &HeaderMap, uri: &Uri, body: &[u8]) -> Result<Form, Rejected> {
        if !session::same_origin(headers, uri) {
            return Err(Rejected::Forgery);
        }
        let is_form = headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(';').next().is_some_and(|m| {
                    m.trim()
                        .eq_ignore_ascii_case("application/x-www-form-urlencoded")
                })
            });
        if !is_form {
            return Err(Rejected::Malformed);
        }
        serde_urlencoded::from_bytes(body).map_err(|_| Rejected::Malformed)
    }

    fn session_cookie(&self, id: &SessionId, org: &str) -> HeaderValue {
        session::set_cookie(
            self.names.session,
            &id.cookie_value(org),
            self.config.secure_cookies,
            None,
        )
    }

    fn clear_session_cookie(&self) -> HeaderValue {
        session::clear_cookie(self.names.session, self.config.secure_cookies)
    }

    /// Numbers the texts name.
    fn lock_minutes(&self) -> String {
        (self.config.lockout.lock_secs / 60).to_string()
    }

    fn refusal_text(&self, t: &i18n::Texts, refusal: Refusal) -> String {
        let max = self.config.lockout.max_failures.to_string();
        let lock = self.lock_minutes();
        let slots = [("max", max.as_str()), ("lock", lock.as_str())];
        match refusal {
            Refusal::BadCredentials => i18n::fill(t.bad_credentials, &slots),
            Refusal::WrongCode => i18n::fill(t.wrong_code, &slots),
            Refusal::Locked => i18n::fill(t.locked, &slots),
            Refusal::Disabled => t.disabled.to_owned(),
            Refusal::NoSecondFactor => t.no_second_factor.to_owned(),
            Refusal::Inconsistent => t.access_inconsistent.to_owned(),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Answers

/// A page to answer with.
struct Page<'a> {
    status: StatusCode,
    title: &'a str,
    body: String,
    /// Where the language switch returns to.
    next: Option<&'a str>,
    /// The token of the frame's forms (`None`: no forms, as on message pages).
    frame_token: Option<String>,
    /// Show the sign-out button (there is a session to end).
    signed: bool,
    cookies: Vec<HeaderValue>,
    /// The desk's navigation (empty outside the desks).
    nav: Vec<desk::NavLink>,
}

fn render(lang: Lang, page: Page<'_>) -> Result<Response, PortalError> {
    let t = lang.texts();
    let token = page.frame_token.as_deref();
    let frame = Frame {
        t,
        html_lang: lang.html_lang(),
        lang: lang.code(),
        title: page.title,
        htmx_config: Frame::htmx_config(),
        lang_csrf: token,
        next: page.next.unwrap_or("/"),
        logout_csrf: token.filter(|_| page.signed),
        body: &page.body,
        nav: &page.nav,
    };
    let html = frame.render()?;
    let mut response = (page.status, html).into_response();
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    for cookie in page.cookies {
        headers.append(SET_COOKIE, cookie);
    }
    Ok(response)
}

/// 303 See Other to `location` (a path of this site), setting `cookies`.
fn see_other(location: &str, cookies: Vec<HeaderValue>) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(location) {
        headers.insert(LOCATION, value);
    }
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    for cookie in cookies {
        headers.append(SET_COOKIE, cookie);
    }
    response
}

/// A message page without forms.
fn message(
    lang: Lang,
    status: StatusCode,
    title: &str,
    text: &str,
    link: &str,
    link_text: &str,
) -> Response {
    let body = MessageBody {
        title,
        message: text,
        link,
        link_text,
    }
    .render();
    let page = body.map_err(PortalError::from).and_then(|body| {
        render(
            lang,
            Page {
                status,
                title,
                body,
                next: None,
                frame_token: None,
                signed: false,
                cookies: Vec::new(),
                nav: Vec::new(),
            },
        )
    });
    page.unwrap_or_else(|e| {
        tracing::error!(error = %e, "portal: a message page failed to render");
        status.into_response()
    })
}

/// The answer to a failure: logged in full, shown without details.
fn failure(lang: Lang, error: &PortalError) -> Response {
    tracing::error!(error = %error, retryable = error.is_retryable(), "portal request failed");
    let t = lang.texts();
    let status = if error.is_retryable() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    message(lang, status, t.error_title, t.unavailable, "/", t.back_home)
}

fn rejected(lang: Lang, why: Rejected) -> Response {
    let t = lang.texts();
    match why {
        Rejected::Forgery => message(
            lang,
            StatusCode::FORBIDDEN,
            t.csrf_title,
            t.csrf_failed,
            "/",
            t.back_home,
        ),
        Rejected::Malformed => message(
            lang,
            StatusCode::BAD_REQUEST,
            t.csrf_title,
            t.bad_request,
            "/",
            t.back_home,
        ),
    }
}

/// Unwraps a handler's outcome into a response.
fn respond(lang: Lang, outcome: Result<Response, PortalError>) -> Response {
    outcome.unwrap_or_else(|e| failure(lang, &e))
}

const SECURITY_HEADERS: [(&str, &str); 6] = [
    (
        "content-security-policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
         connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "same-origin"),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
];

async fn security_headers(mut response: Response, secure: bool) -> Response {
    let headers = response.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    if secure {
        headers.insert(
            HeaderName::from_static("strict-transport-security"),
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    response
}

// ---------------------------------------------------------------------------------------
// Handlers

/// `GET /`: home when signed in, the code when half-way, else the sign-in form.
async fn root<T: Transport>(State(p): State<Shared<T>>, headers: HeaderMap) -> Response {
    let lang = lang_of(&headers);
    match p.session(&headers, false).await {
        Ok(Some(c)) if c.record.stage == SessionStage::SignedIn => {
            see_other(&home_path(c.party.org_code()), Vec::new())
        }
        Ok(Some(_)) => see_other("/login/totp", Vec::new()),
        Ok(None) => see_other("/login", Vec::new()),
        Err(e) => failure(lang, &e),
    }
}

/// What the sign-in form shows.
struct LoginView<'a> {
    status: StatusCode,
    org: Option<&'a str>,
    login: &'a str,
    error: Option<String>,
    /// Cookies to set besides the pre-session one.
    cookies: Vec<HeaderValue>,
}

/// The sign-in form, with the pre-session cookie it needs.
fn login_form<T: Transport>(
    p: &Inner<T>,
    lang: Lang,
    headers: &HeaderMap,
    current: Option<&Current<T>>,
    view: LoginView<'_>,
) -> Result<Response, PortalError> {
    let t = lang.texts();
    let (pre, set_pre) = p.pre_session(headers);
    let token = session::hex(&session::login_token(&p.key, &pre));
    let orgs = p
        .parties
        .values()
        .map(|party| OrgChoice {
            code: party.org_code().to_owned(),
            name: party.config.name.clone(),
            selected: view.org == Some(party.org_code()),
        })
        .collect();
    let body = LoginBody {
        t,
        csrf: &token,
        orgs,
        login: view.login,
        error: view.error,
    }
    .render()?;
    let mut cookies = view.cookies;
    cookies.extend(set_pre);
    render(
        lang,
        Page {
            status: view.status,
            title: t.sign_in_title,
            body,
            next: Some("/login"),
            frame_token: Some(p.frame_token(current, &pre)),
            signed: current.is_some(),
            cookies,
            nav: Vec::new(),
        },
    )
}

/// `GET /login`: the password form (or home, when signed in).
async fn login_page<T: Transport>(State(p): State<Shared<T>>, headers: HeaderMap) -> Response {
    let lang = lang_of(&headers);
    let outcome = async {
        let current = p.session(&headers, false).await?;
        if let Some(c) = &current
            && c.record.stage == SessionStage::SignedIn
        {
            return Ok(see_other(&home_path(c.party.org_code()), Vec::new()));
        }
        login_form(
            &p,
            lang,
            &headers,
            current.as_ref(),
            LoginView {
                status: StatusCode::OK,
                org: None,
                login: "",
                error: None,
                cookies: Vec::new(),
            },
        )
    };
    respond(lang, outcome.await)
}

fn refusal_status(refusal: Refusal) -> StatusCode {
    match refusal {
        Refusal::BadCredentials | Refusal::WrongCode => StatusCode::UNAUTHORIZED,
        Refusal::Disabled | Refusal::NoSecondFactor | Refusal::Inconsistent | Refusal::Locked => {
            StatusCode::FORBIDDEN
        }
    }
}

/// `POST /login`: checks the password; a right one opens a second-factor session under a
/// new id (ending any session the browser had) and asks for the code.
async fn login_submit<T: Transport>(
    State(p): State<Shared<T>>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    let lang = lang_of(&headers);
    let form = match p.form(&headers, &uri, &body) {
        Ok(form) => form,
        Err(why) => return rejected(lang, why),
    };
    let pre = session::cookie(&headers, p.names.pre).filter(|v| session::is_pre_value(v));
    let Some(pre) = pre else {
        return rejected(lang, Rejected::Forgery);
    };
    if !session::token_matches(&session::login_token(&p.key, pre), form.csrf.as_deref()) {
        return rejected(lang, Rejected::Forgery);
    }
    respond(lang, sign_in_password(&p, lang, &headers, form).await)
}

async fn sign_in_password<T: Transport>(
    p: &Inner<T>,
    lang: Lang,
    headers: &HeaderMap,
    form: Form,
) -> Result<Response, PortalError> {
    let t = lang.texts();
    let org = form.org.unwrap_or_default();
    let login = form.login.unwrap_or_default();
    let password = form.password.unwrap_or_default();
    // A second-factor session the browser may hold stays as it is until a password is right.
    let current = p.session(headers, false).await?;
    let refuse = |refusal: Refusal| {
        login_form(
            p,
            lang,
            headers,
            current.as_ref(),
            LoginView {
                status: refusal_status(refusal),
                org: Some(&org),
                login: &login,
                error: Some(p.refusal_text(t, refusal)),
                cookies: Vec::new(),
            },
        )
    };
    let Some(party) = p.parties.get(&org).cloned() else {
        // An organisation this node does not serve: refused like a wrong password, after
        // the same cost.
        signin::dummy_check(&password).await?;
        return refuse(Refusal::BadCredentials);
    };
    let (_, now) = party.now();
    let user = match signin::check_password(&party.store, &login, &password, now, p.config.lockout)
        .await?
    {
        Ok(user) => user,
        Err(refusal) => return refuse(refusal),
    };
    if Principal::from_record(&user).is_err() {
        return refuse(Refusal::Inconsistent);
    }
    let sessions = party.store.sessions();
    if sessions.totp(user.id).await?.is_none() {
        return refuse(Refusal::NoSecondFactor);
    }
    // Whatever session the browser had ends: the next one has a new id.
    if let Some((old_party, old_id)) = p.cookie_session(headers) {
        old_party.store.sessions().end(&old_id.hash()).await?;
    }
    let id = SessionId::generate();
    let until = now.saturating_add(p.config.second_factor_secs);
    sessions
        .create(&NewSession {
            id_sha256: id.hash(),
            user: user.id,
            stage: SessionStage::SecondFactor,
            csrf_token: *session::random(),
            created_at: now,
            idle_until: until,
            expires_at: until,
        })
        .await?;
    Ok(see_other("/login/totp", vec![p.session_cookie(&id, &org)]))
}

/// `GET /login/totp`: the code form, for a second-factor session.
async fn code_page<T: Transport>(State(p): State<Shared<T>>, headers: HeaderMap) -> Response {
    let lang = lang_of(&headers);
    let outcome = async {
        let Some(current) = p.session(&headers, true).await? else {
            return Ok(see_other("/login", vec![p.clear_session_cookie()]));
        };
        if current.record.stage == SessionStage::SignedIn {
            return Ok(see_other(&home_path(current.party.org_code()), Vec::new()));
        }
        code_form(&p, lang, &current, StatusCode::OK, None).await
    };
    respond(lang, outcome.await)
}

async fn code_form<T: Transport>(
    p: &Inner<T>,
    lang: Lang,
    current: &Current<T>,
    status: StatusCode,
    error: Option<String>,
) -> Result<Response, PortalError> {
    let t = lang.texts();
    let Some(user) = current
        .party
        .store
        .access()
        .user(current.record.user)
        .await?
    else {
        return Ok(see_other("/login", vec![p.clear_session_cookie()]));
    };
    let token = session::hex(&current.record.csrf_token);
    let body = CodeBody {
        t,
        csrf: &token,
        name: &user.display_name,
        login: &user.login,
        error,
    }
    .render()?;
    render(
        lang,
        Page {
            status,
            title: t.second_factor_title,
            body,
            next: Some("/login/totp"),
            frame_token: Some(token.clone()),
            signed: true,
            cookies: Vec::new(),
            nav: Vec::new(),
        },
    )
}

/// `POST /login/totp`: checks the code; a right one replaces the second-factor session
/// with a signed-in one under a new id.
async fn code_submit<T: Transport>(
    State(p): State<Shared<T>>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    let lang = lang_of(&headers);
    let form = match p.form(&headers, &uri, &body) {
        Ok(form) => form,
        Err(why) => return rejected(lang, why),
    };
    respond(lang, sign_in_code(&p, lang, &headers, form).await)
}

async fn sign_in_code<T: Transport>(
    p: &Inner<T>,
    lang: Lang,
    headers: &HeaderMap,
    form: Form,
) -> Result<Response, PortalError> {
    let t = lang.texts();
    let Some(current) = p.session(headers, false).await? else {
        return Ok(see_other("/login", vec![p.clear_session_cookie()]));
    };
    if !session::token_matches(&current.record.csrf_token, form.csrf.as_deref()) {
        return Ok(rejected(lang, Rejected::Forgery));
    }
    if current.record.stage == SessionStage::SignedIn {
        return Ok(see_other(&home_path(current.party.org_code()), Vec::new()));
    }
    let (party, now) = (&current.party, current.now);
    let code = form.code.unwrap_or_default();
    let checked = signin::check_code(
        &party.store,
        &p.key,
        current.record.user,
        code.trim(),
        now,
        p.config.lockout,
    )
    .await?;
    match checked {
        Ok(_) => {
            let id = SessionId::generate();
            let new = NewSession {
                id_sha256: id.hash(),
                user: current.record.user,
                stage: SessionStage::SignedIn,
                csrf_token: *session::random(),
                created_at: now,
                idle_until: now.saturating_add(p.config.idle_secs),
                expires_at: now.saturating_add(p.config.absolute_secs),
            };
            let replaced = party
                .store
                .sessions()
                .replace(&current.id_hash, now, &new)
                .await?;
            if !replaced {
                // The second-factor session ended meanwhile (or another request used it).
                return Ok(see_other("/login", vec![p.clear_session_cookie()]));
            }
            let org = party.org_code();
            Ok(see_other(&home_path(org), vec![p.session_cookie(&id, org)]))
        }
        Err(Refusal::WrongCode) => {
            let text = p.refusal_text(t, Refusal::WrongCode);
            code_form(p, lang, &current, StatusCode::UNAUTHORIZED, Some(text)).await
        }
        Err(refusal) => {
            // Locked, switched off meanwhile, or no second factor any more: start again.
            party.store.sessions().end(&current.id_hash).await?;
            login_form(
                p,
                lang,
                headers,
                None,
                LoginView {
                    status: refusal_status(refusal),
                    org: Some(party.org_code()),
                    login: "",
                    error: Some(p.refusal_text(t, refusal)),
                    cookies: vec![p.clear_session_cookie()],
                },
            )
        }
    }
}

/// `POST /logout`: ends the session (recording a `logout` event) and clears its cookie.
async fn logout<T: Transport>(
    State(p): State<Shared<T>>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    let lang = lang_of(&headers);
    let form = match p.form(&headers, &uri, &body) {
        Ok(form) => form,
        Err(why) => return rejected(lang, why),
    };
    let outcome = async {
        let Some(current) = p.session(&headers, false).await? else {
            return Ok(see_other("/login", vec![p.clear_session_cookie()]));
        };
        if !session::token_matches(&current.record.csrf_token, form.csrf.as_deref()) {
            return Ok(rejected(lang, Rejected::Forgery));
        }
        let store = &current.party.store;
        store.sessions().end(&current.id_hash).await?;
        if let Some(user) = store.access().user(current.record.user).await? {
            store
                .access()
                .update_login(user.id, "logout", &user.login, current.now, |s| s)
                .await?;
        }
        Ok(see_other("/login", vec![p.clear_session_cookie()]))
    };
    respond(lang, outcome.await)
}

/// `POST /lang`: keeps the chosen language in a cookie and goes back to `next`.
async fn switch_lang<T: Transport>(
    State(p): State<Shared<T>>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    let lang = lang_of(&headers);
    let form = match p.form(&headers, &uri, &body) {
        Ok(form) => form,
        Err(why) => return rejected(lang, why),
    };
    let outcome = async {
        let current = p.session(&headers, false).await?;
        let expected = match &current {
            Some(c) => c.record.csrf_token,
            None => {
                let pre =
                    session::cookie(&headers, p.names.pre).filter(|v| session::is_pre_value(v));
                let Some(pre) = pre else {
                    return Ok(rejected(lang, Rejected::Forgery));
                };
                session::login_token(&p.key, pre)
            }
        };
        if !session::token_matches(&expected, form.csrf.as_deref()) {
            return Ok(rejected(lang, Rejected::Forgery));
        }
        let Some(chosen) = form.lang.as_deref().and_then(Lang::from_code) else {
            return Ok(rejected(lang, Rejected::Malformed));
        };
        let next = form
            .next
            .as_deref()
            .and_then(session::local_path)
            .unwrap_or("/");
        let cookie = session::set_cookie(
            LANG_COOKIE,
            chosen.code(),
            p.config.secure_cookies,
            Some(LANG_COOKIE_SECS),
        );
        Ok(see_other(next, vec![cookie]))
    };
    respond(lang, outcome.await)
}

/// `GET /o/{org}`: the organisation's home page, for its own signed-in users.
async fn home<T: Transport>(
    State(p): State<Shared<T>>,
    Path(org): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let lang = lang_of(&headers);
    respond(lang, home_page(&p, lang, &org, &headers, &uri).await)
}

async fn home_page<T: Transport>(
    p: &Inner<T>,
    lang: Lang,
    org: &str,
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<Response, PortalError> {
    let desk = match p.desk(headers, uri, org, lang).await? {
        Ok(desk) => desk,
        Err(response) => return Ok(response),
    };
    let t = lang.texts();
    let party = &desk.party;
    let names: BTreeMap<String, String> = party
        .store
        .access()
        .divisions()
        .await?
        .into_iter()
        .map(|d| (d.code.to_string(), d.name))
        .collect();
    let divisions = desk
        .principal
        .divisions
        .iter()
        .map(|code| DivisionLine {
            code: code.to_string(),
            name: names.get(code.as_str()).cloned().unwrap_or_default(),
        })
        .collect();
    let idle = (p.config.idle_secs / 60).to_string();
    let life = (p.config.absolute_secs / 60).to_string();
    let role_panel = unit::home_panel(p, &desk).await?;
    let body = HomeBody {
        t,
        name: &desk.user.display_name,
        login: &desk.user.login,
        org_name: &party.config.name,
        org_code: party.org_code(),
        role: t.role(party.role()),
        work: t.work(party.role()),
        posts: desk
            .principal
            .posts
            .iter()
            .map(|post| t.post(*post).to_owned())
            .collect(),
        divisions,
        session_note: i18n::fill(t.session_ends, &[("idle", &idle), ("life", &life)]),
        role_panel,
    }
    .render()?;
    desk.page(StatusCode::OK, t.home_title, body)
}

/// The navigation links of the desk's role and posts, after "home": (path under the
/// organisation, text).
fn nav_of<T: Transport>(desk: &desk::Desk<T>) -> Vec<(&'static str, &'static str)> {
    let mut links = Vec::new();
    links.extend(unit::nav(desk));
    links.extend(finance::nav(desk));
    links.extend(bank::nav(desk));
    links.extend(pboc::nav(desk));
    links.extend(admin::nav(desk));
    links.extend(audit_desk::nav(desk));
    links
}

/// `GET /assets/{file}`: the vendored htmx and the style sheet.
async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    let (bytes, content_type) = match file.as_str() {
        "htmx.min.js" => (HTMX_JS, "text/javascript; charset=utf-8"),
        "portal.css" => (PORTAL_CSS, "text/css; charset=utf-8"),
        _ => {
            let lang = lang_of(&headers);
            let t = lang.texts();
            return message(
                lang,
                StatusCode::NOT_FOUND,
                t.not_found_title,
                t.not_found,
                "/",
                t.back_home,
            );
        }
    };
    (
        [
            (CONTENT_TYPE, content_type),
            (CACHE_CONTROL, "public, max-age=3600"),
        ],
        bytes,
    )
        .into_response()
}

async fn method_not_allowed(headers: HeaderMap) -> Response {
    let lang = lang_of(&headers);
    let t = lang.texts();
    message(
        lang,
        StatusCode::METHOD_NOT_ALLOWED,
        t.not_found_title,
        t.method_not_allowed,
        "/",
        t.back_home,
    )
}

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};

    use super::*;

    #[test]
    fn the_vendored_htmx_is_the_published_2_0_11() {
        let digest: [u8; 32] = Sha256::digest(HTMX_JS).into();
        assert_eq!(
            session::hex(&digest),
            "d6fdc75f204e6bdefa99b69bf1e6d4ac69b8a364f77929f45c13476b4000f717"
        );
    }

    #[test]
    fn configurations_are_checked() {
        assert!(PortalConfig::default().check().is_ok());
        assert!(PortalConfig::demo().check().is_ok());
        let bad = [
            PortalConfig {
                idle_secs: 0,
                ..PortalConfig::default()
            },
            PortalConfig {
                idle_secs: 9 * 3600,
                ..PortalConfig::default()
            },
            PortalConfig {
                second_factor_secs: 59,
                ..PortalConfig::default()
            },
            PortalConfig {
                absolute_secs: u64::MAX,
                idle_secs: u64::MAX,
                second_factor_secs: 60,
                ..PortalConfig::default()
            },
            PortalConfig {
                lockout: LockoutPolicy {
                    max_failures: 0,
                    lock_secs: 600,
                },
                ..PortalConfig::default()
            },
            PortalConfig {
                body_max_bytes: 100,
                ..PortalConfig::default()
            },
        ];
        for config in bad {
            assert!(
                matches!(config.check(), Err(PortalError::InvalidConfig(_))),
                "{config:?}"
            );
        }
    }

    #[test]
    fn the_demo_differs_from_the_default_only_in_secure_cookies() {
        let (demo, default) = (PortalConfig::demo(), PortalConfig::default());
        assert!(default.secure_cookies && !demo.secure_cookies);
        assert_eq!(
            PortalConfig {
                secure_cookies: true,
                ..demo
            },
            default
        );
        assert_eq!((default.idle_secs, default.absolute_secs), (900, 28_800));
        assert_eq!(default.lockout.max_failures, 5);
    }
}
