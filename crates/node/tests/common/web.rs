//! The portal in a test, without a socket or a browser: the demo province with a clock the
//! test moves and the portal's router over its parties ([`Env`]), a cookie jar playing the
//! browser ([`Browser`], [`Answer`]), signing in with both factors ([`sign_in`]), and a test
//! run on SQLite and on PostgreSQL ([`both`]).
//!
//! A test file includes it beside `common` (whose PostgreSQL helpers it uses):
//!
//! ```ignore
//! mod common;
//! #[path = "common/web.rs"]
//! mod web;
//! use web::*;
//!
//! web::both!(a_finance_user_sees_the_queue, |env| {
//!     let mut b = sign_in(env, &env.app, "11430000006-checker").await;
//!     let page = b.get(&env.app, "/o/11430000006/finance/approvals").await;
//!     assert_eq!(page.status, StatusCode::OK);
//! });
//! ```
//!
//! PostgreSQL is found through `GUOKU_TEST_PG_URL`, else
//! `postgres://postgres@127.0.0.1:5432/postgres`; without a server the PostgreSQL half of a
//! test says SKIPPED loudly and passes, and fails when `CI=true`.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, header};
use guoku_node::demo::{Demo, DemoOptions, DemoPostgres};
use guoku_node::exchange::{Clock, InMemory};
use guoku_node::party::Party;
use guoku_node::portal::{
    self, DEMO_PASSWORD, DemoLogin, Portal, PortalConfig, demo_key, demo_totp_secret,
    seed_demo_users,
};
use guoku_seal::Suite;
use guoku_store::access::UserRecord;
use http_body_util::BodyExt;
use time::OffsetDateTime;
use tower::ServiceExt;

pub use axum::http::StatusCode;

use crate::common::{PrefixGuard, demo_postgres, pg_reachable};

/// Finance's organisation code in the demo.
pub const FINANCE: &str = "11430000006";
/// The PBOC treasury's organisation code in the demo.
pub const PBOC: &str = "001430000001";
/// ICBC's organisation code in the demo.
pub const ICBC: &str = "102551000015";
/// CCB's organisation code in the demo.
pub const CCB: &str = "105551000011";
/// The host every request names (and the origin of the forms posted).
pub const HOST: &str = "portal.test";

// ----- the demo and its clock ----------------------------------------------------------

/// The demo province on one backend, its seeded portal users, and the portal over it.
pub struct Env {
    pub demo: Arc<Demo>,
    /// The portal with the demo's configuration (cookies without `Secure`).
    pub app: Router,
    /// The clock's reading, in Unix seconds: [`Env::advance`] moves it.
    pub time: Arc<AtomicI64>,
    pub logins: Vec<DemoLogin>,
    _dir: tempfile::TempDir,
    _schemas: Option<PrefixGuard>,
}

impl Env {
    /// The demo on SQLite in a temporary directory (`None`) or on PostgreSQL under a schema
    /// prefix of its own (dropped when the `Env` drops), with the demo users seeded.
    pub async fn open(postgres: Option<DemoPostgres>) -> Env {
        let dir = tempfile::tempdir().unwrap();
        // A fixed start, mid-step, so the one-time codes' steps fall where tests put them.
        let start = (OffsetDateTime::now_utc().unix_timestamp() / 30) * 30 + 1;
        let time = Arc::new(AtomicI64::new(start));
        let t = time.clone();
        let clock: Clock = Arc::new(move || {
            OffsetDateTime::from_unix_timestamp(t.load(Ordering::SeqCst)).expect("a time")
        });
        let schemas = postgres
            .as_ref()
            .map(|pg| PrefixGuard(pg.schema_prefix.clone()));
        let options = DemoOptions {
            dir: dir.path().join("guoku-data"),
            fresh: false,
            suite: Suite::Sm,
            postgres,
        };
        let demo = Arc::new(Demo::open(&options, clock).await.unwrap());
        let logins = seed_demo_users(&demo).await.unwrap();
        // Each organisation's keys are in its directory of the demo's (`signer.key`…).
        let mut portal = Portal::demo(&demo);
        for party in demo.parties() {
            let org = party.org_code();
            portal = portal.key_dir(org, options.dir.join(org));
        }
        let app = portal::router(portal);
        Env {
            demo,
            app,
            time,
            logins,
            _dir: dir,
            _schemas: schemas,
        }
    }

    /// The demo's directory (each organisation's keys are in `<dir>/<org>/`).
    pub fn dir(&self) -> std::path::PathBuf {
        self._dir.path().join("guoku-data")
    }

    /// The portal with `config` over the same parties.
    pub fn app_with(&self, config: PortalConfig) -> Router {
        let mut portal = Portal::new(config, demo_key()).unwrap();
        for party in self.demo.parties() {
            let org = party.org_code().to_owned();
            portal = portal.serve(party).key_dir(&org, self.dir().join(&org));
        }
        portal::router(portal)
    }

    /// The clock's reading, in Unix seconds.
    pub fn now(&self) -> u64 {
        u64::try_from(self.time.load(Ordering::SeqCst)).unwrap()
    }

    /// Moves the clock on by `secs`.
    pub fn advance(&self, secs: u64) {
        self.time
            .fetch_add(i64::try_from(secs).unwrap(), Ordering::SeqCst);
    }

    /// The seeded demo login `login`.
    pub fn login(&self, login: &str) -> &DemoLogin {
        self.logins
            .iter()
            .find(|l| l.login == login)
            .unwrap_or_else(|| panic!("no demo login {login}"))
    }

    /// The party of organisation `org`.
    pub fn party(&self, org: &str) -> Arc<Party<InMemory>> {
        self.demo
            .parties()
            .into_iter()
            .find(|p| p.org_code() == org)
            .unwrap_or_else(|| panic!("no demo party {org}"))
    }

    /// The code `login`'s authenticator shows now.
    pub fn code(&self, login: &str) -> String {
        demo_totp_secret(login).code_at(self.now())
    }

    /// The stored user behind `login`.
    pub async fn user(&self, login: &str) -> UserRecord {
        let org = &self.login(login).org_code;
        self.party(org)
            .store
            .access()
            .user_by_login(login)
            .await
            .unwrap()
            .unwrap()
    }
}

/// `<org>-maker`.
pub fn maker(org: &str) -> String {
    format!("{org}-maker")
}

/// `<org>-checker`.
pub fn checker(org: &str) -> String {
    format!("{org}-checker")
}

/// `<org>-signer`.
pub fn signer(org: &str) -> String {
    format!("{org}-signer")
}

// ----- PostgreSQL ------------------------------------------------------------------------

/// PostgreSQL for a demo in a test: a unique schema prefix, or `None` (said loudly on
/// stderr) when no server answers, which fails under `CI=true`.
pub async fn postgres() -> Option<DemoPostgres> {
    if pg_reachable().await {
        Some(demo_postgres())
    } else {
        None
    }
}

/// Runs a test body `|env| { … }` (with `env: &Env`) on the demo on SQLite and on
/// PostgreSQL, as two tests `$name::sqlite` and `$name::postgres`.
#[allow(unused_macros)] // Not every test file runs on both backends.
macro_rules! both {
    ($name:ident, |$env:ident| $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn body($env: &Env) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let env = Env::open(None).await;
                body(&env).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(pg) = super::postgres().await else {
                    return;
                };
                let env = Env::open(Some(pg)).await;
                body(&env).await;
            }
        }
    };
}
#[allow(unused_imports)]
pub(crate) use both;

/// Runs a test body `|env| { … }` on the demo on SQLite only (for tests about rendering).
#[allow(unused_macros)]
macro_rules! sqlite {
    ($name:ident, |$env:ident| $body:block) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let env = Env::open(None).await;
            let $env = &env;
            $body
        }
    };
}
#[allow(unused_imports)]
pub(crate) use sqlite;

// ----- a browser -----------------------------------------------------------------------

/// An answer: status, headers, body text.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
    /// The body as it came (a PDF, say).
    pub bytes: Vec<u8>,
}

impl Answer {
    /// The `Location` header, or "".
    pub fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `Set-Cookie` header setting `name`, whole.
    pub fn set_cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.split_once('=').is_some_and(|(n, _)| n == name))
            .map(str::to_owned)
    }

    /// The text of the form posting to `action`, from its opening tag to its end.
    pub fn form(&self, action: &str) -> &str {
        let start = self
            .body
            .find(&format!("action=\"{action}\""))
            .unwrap_or_else(|| panic!("no form for {action} in {}", self.body));
        let rest = &self.body[start..];
        let end = rest.find("</form>").unwrap_or(rest.len());
        &rest[..end]
    }

    /// Whether the page has a form posting to `action`.
    pub fn has_form(&self, action: &str) -> bool {
        self.body.contains(&format!("action=\"{action}\""))
    }

    /// The CSRF token of the form posting to `action`.
    pub fn csrf(&self, action: &str) -> String {
        value_in(self.form(action), "csrf")
            .unwrap_or_else(|| panic!("no csrf field in the form for {action}"))
    }

    /// The `form_id` of the form posting to `action`.
    pub fn form_id(&self, action: &str) -> String {
        value_in(self.form(action), "form_id")
            .unwrap_or_else(|| panic!("no form_id field in the form for {action}"))
    }

    /// The value of the first input named `name` anywhere on the page.
    pub fn form_value(&self, name: &str) -> Option<String> {
        value_in(&self.body, name)
    }
}

/// The `value` of the first `<input … name="{name}" … value="…">` in `html` (attributes in
/// any order), with the five entities askama writes decoded.
fn value_in(html: &str, name: &str) -> Option<String> {
    let needle = format!("name=\"{name}\"");
    let at = html.find(&needle)?;
    let open = html[..at].rfind('<')?;
    let close = at + html[at..].find('>')?;
    let tag = &html[open..close];
    let start = tag.find(" value=\"")? + 8;
    let end = start + tag[start..].find('"')?;
    Some(
        tag[start..end]
            .replace("&#34;", "\"")
            .replace("&quot;", "\"")
            .replace("&#39;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&"),
    )
}

/// A browser: a cookie jar over the app.
#[derive(Clone, Default)]
pub struct Browser {
    pub jar: BTreeMap<String, String>,
}

impl Browser {
    /// Sends `request` with the jar's cookies and keeps the cookies the answer sets.
    pub async fn send(
        &mut self,
        app: &Router,
        request: axum::http::request::Builder,
        body: Body,
    ) -> Answer {
        let mut request = request.header(header::HOST, HOST);
        if !self.jar.is_empty() {
            let cookies: Vec<String> = self.jar.iter().map(|(k, v)| format!("{k}={v}")).collect();
            request = request.header(header::COOKIE, cookies.join("; "));
        }
        let response = app
            .clone()
            .oneshot(request.body(body).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        for set in headers.get_all(header::SET_COOKIE) {
            let text = set.to_str().unwrap();
            let (pair, attributes) = text.split_once(';').unwrap_or((text, ""));
            let (name, value) = pair.split_once('=').unwrap();
            if attributes.contains("Max-Age=0") {
                self.jar.remove(name);
            } else {
                self.jar.insert(name.to_owned(), value.to_owned());
            }
        }
        Answer {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
            bytes: bytes.to_vec(),
        }
    }

    /// A GET.
    pub async fn get(&mut self, app: &Router, path: &str) -> Answer {
        self.get_with(app, path, &[]).await
    }

    /// A GET with extra headers (e.g. `("hx-request", "true")`).
    pub async fn get_with(&mut self, app: &Router, path: &str, headers: &[(&str, &str)]) -> Answer {
        let mut request = Request::builder().method(Method::GET).uri(path);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        self.send(app, request, Body::empty()).await
    }

    /// A form posted from this site (`Origin` and `Sec-Fetch-Site` as a browser sends them).
    pub async fn post(&mut self, app: &Router, path: &str, fields: &[(&str, &str)]) -> Answer {
        let origin = format!("http://{HOST}");
        self.post_with(
            app,
            path,
            fields,
            &[("origin", &origin), ("sec-fetch-site", "same-origin")],
        )
        .await
    }

    /// A form posted with exactly `headers` (e.g. none, or another origin).
    pub async fn post_with(
        &mut self,
        app: &Router,
        path: &str,
        fields: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let body = serde_urlencoded::to_string(fields).unwrap();
        self.send(app, request, Body::from(body)).await
    }

    /// The session cookie's value.
    pub fn session(&self) -> Option<&str> {
        self.jar
            .iter()
            .find(|(k, _)| k.ends_with("gk_session"))
            .map(|(_, v)| v.as_str())
    }
}

/// Posts the password form: the answer.
pub async fn password(env: &Env, b: &mut Browser, app: &Router, login: &str, pw: &str) -> Answer {
    let org = env.login(login).org_code.clone();
    let form = b.get(app, "/login").await;
    assert_eq!(form.status, StatusCode::OK, "{}", form.body);
    let csrf = form.csrf("/login");
    b.post(
        app,
        "/login",
        &[
            ("csrf", &csrf),
            ("org", &org),
            ("login", login),
            ("password", pw),
        ],
    )
    .await
}

/// Posts a code on the code form: the answer.
pub async fn code(b: &mut Browser, app: &Router, code: &str) -> Answer {
    let form = b.get(app, "/login/totp").await;
    assert_eq!(form.status, StatusCode::OK, "{}", form.body);
    let csrf = form.csrf("/login/totp");
    b.post(app, "/login/totp", &[("csrf", &csrf), ("code", code)])
        .await
}

/// Signs `login` in with both factors: the browser, holding the session.
pub async fn sign_in(env: &Env, app: &Router, login: &str) -> Browser {
    let mut b = Browser::default();
    let a = password(env, &mut b, app, login, DEMO_PASSWORD).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    assert_eq!(a.location(), "/login/totp");
    let a = code(&mut b, app, &env.code(login)).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    assert_eq!(a.location(), format!("/o/{}", env.login(login).org_code));
    b
}
