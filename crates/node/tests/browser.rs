//! The portal's journeys in a real headless Chromium: the demo province served as
//! `guoku demo` serves it (portal and API on `127.0.0.1`, a free port), a private browser
//! window per test, clicks and typing through the DevTools protocol, and the store looked
//! at afterwards.
//!
//! - signing in takes the password, then the code, and the home page names the person and
//!   the organisation; what the page fetches carries the `HttpOnly` session cookie;
//! - the language switches to English and back, and stays across pages and sign-in;
//! - five wrong passwords lock the user, and the page then answers the right password
//!   exactly as a wrong one;
//! - after signing out, neither the back button nor the home page's address shows the
//!   signed-in page: the sign-in form comes instead;
//! - a double-clicked submit signs in once (one session in the store).
//!
//! Chromium: `GUOKU_CHROMIUM`, else `chromium`, `chromium-browser` or `google-chrome` on
//! `PATH` (`scripts/test.sh` installs Debian's `chromium`). Without one every test says
//! SKIPPED loudly, and fails when `CI=true`. One browser serves the tests that run at the
//! same time (see `browser/chromium.rs`); the page helpers are in `browser/tab.rs`.

#[path = "browser/chromium.rs"]
mod chromium;
#[path = "browser/tab.rs"]
mod tab;

use std::sync::Arc;

use guoku_node::demo::{Demo, DemoOptions};
use guoku_node::exchange::{Clock, InMemory};
use guoku_node::party::Party;
use guoku_node::portal::{DEMO_PASSWORD, DemoLogin, Lang, demo_totp_secret, i18n, seed_demo_users};
use guoku_node::serve::{demo_tokens, serve_demo_api};
use guoku_seal::Suite;
use guoku_store::sessions::{SessionRecord, SessionStage};
use time::OffsetDateTime;

use chromium::Chromium;
use tab::Tab;

const FINANCE: &str = "11430000006";

/// The demo served on a free port of `127.0.0.1`, on the real clock.
struct Portal {
    demo: Arc<Demo>,
    logins: Vec<DemoLogin>,
    base: String,
    _stop: tokio::sync::watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

impl Portal {
    async fn open() -> Portal {
        let dir = tempfile::tempdir().unwrap();
        let clock: Clock = Arc::new(OffsetDateTime::now_utc);
        let options = DemoOptions {
            dir: dir.path().join("guoku-data"),
            fresh: false,
            suite: Suite::Sm,
            postgres: None,
        };
        let demo = Arc::new(Demo::open(&options, clock).await.unwrap());
        let logins = seed_demo_users(&demo).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tokens, _) = demo_tokens(&demo);
        let (stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(serve_demo_api(listener, demo.clone(), tokens, stopped));
        Portal {
            demo,
            logins,
            base,
            _stop: stop,
            _dir: dir,
        }
    }

    fn login(&self, login: &str) -> &DemoLogin {
        self.logins
            .iter()
            .find(|l| l.login == login)
            .unwrap_or_else(|| panic!("no demo login {login}"))
    }

    fn party(&self, org: &str) -> Arc<Party<InMemory>> {
        self.demo
            .parties()
            .into_iter()
            .find(|p| p.org_code() == org)
            .unwrap()
    }

    fn now(&self) -> u64 {
        u64::try_from(OffsetDateTime::now_utc().unix_timestamp()).unwrap()
    }

    /// The code `login`'s authenticator shows now.
    fn code(&self, login: &str) -> String {
        demo_totp_secret(login).code_at(self.now())
    }

    /// The live sessions of `login` in its organisation's store.
    async fn sessions_of(&self, login: &str) -> Vec<SessionRecord> {
        let party = self.party(&self.login(login).org_code);
        let user = party
            .store
            .access()
            .user_by_login(login)
            .await
            .unwrap()
            .unwrap();
        party
            .store
            .sessions()
            .sessions_of(user.id, self.now())
            .await
            .unwrap()
    }
}

/// A test's world: the browser (none: the test is skipped) and the portal.
async fn world(test: &str) -> Option<(Tab, Portal)> {
    let chromium = Chromium::shared(test).await?;
    let portal = Portal::open().await;
    let tab = chromium.window(&portal.base).await;
    Some((tab, portal))
}

fn maker(org: &str) -> String {
    format!("{org}-maker")
}

fn checker(org: &str) -> String {
    format!("{org}-checker")
}

fn signer(org: &str) -> String {
    format!("{org}-signer")
}

fn home_path(org: &str) -> String {
    format!("/o/{org}")
}

/// Types the password of `login` (its organisation chosen) and submits, `clicks` times.
async fn submit_password(tab: &Tab, lang: Lang, p: &Portal, login: &str, password: &str) {
    submit_password_clicks(tab, lang, p, login, password, 1).await;
}

async fn submit_password_clicks(
    tab: &Tab,
    lang: Lang,
    p: &Portal,
    login: &str,
    password: &str,
    clicks: usize,
) {
    let t = lang.texts();
    tab.wait_for("form[action=\"/login\"]").await;
    tab.select("org", &p.login(login).org_code).await;
    tab.fill("login", login).await;
    tab.fill("password", password).await;
    tab.mark_page().await;
    tab.clicks_on_button("form[action=\"/login\"]", t.sign_in_button, clicks)
        .await;
    tab.next_page().await;
}

/// Types the code shown now and submits, `clicks` times.
async fn submit_code_clicks(tab: &Tab, lang: Lang, p: &Portal, login: &str, clicks: usize) {
    let t = lang.texts();
    tab.wait_for("form[action=\"/login/totp\"]").await;
    tab.fill("code", &p.code(login)).await;
    tab.mark_page().await;
    tab.clicks_on_button("form[action=\"/login/totp\"]", t.verify_button, clicks)
        .await;
    tab.next_page().await;
}

/// Signs `login` in through both forms, from wherever the tab is: ends on the home page.
async fn sign_in(tab: &Tab, lang: Lang, p: &Portal, login: &str) {
    tab.open("/login").await;
    submit_password(tab, lang, p, login, DEMO_PASSWORD).await;
    submit_code_clicks(tab, lang, p, login, 1).await;
    let t = lang.texts();
    tab.wait_for_text("main h1", t.home_title).await;
}

// ----- the journeys ------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_in_takes_a_password_then_a_code_and_shows_who_and_where() {
    let Some((tab, p)) = world("signing_in").await else {
        return;
    };
    let t = Lang::Zh.texts();
    let login = maker(FINANCE);
    let who = p.login(&login);
    let org_name = p.party(FINANCE).config.name.clone();

    // Anyone who is not signed in is sent to the form, in the browser's language.
    tab.open("/").await;
    tab.wait_for("form[action=\"/login\"]").await;
    assert_eq!(tab.path().await, "/login");
    assert_eq!(
        tab.call::<String>("() => document.documentElement.lang", &[])
            .await,
        "zh-CN"
    );
    assert_eq!(tab.text("main h1").await, t.sign_in_title);

    // The password opens the code form, naming who is signing in; no page yet.
    submit_password(&tab, Lang::Zh, &p, &login, DEMO_PASSWORD).await;
    tab.wait_for("form[action=\"/login/totp\"]").await;
    let form = tab.text("form[action=\"/login/totp\"]").await;
    assert!(form.contains(&who.name) && form.contains(&login), "{form}");
    let stored = p.sessions_of(&login).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].stage, SessionStage::SecondFactor);

    // The code signs in: the home page says who and where.
    submit_code_clicks(&tab, Lang::Zh, &p, &login, 1).await;
    tab.wait_for_text("main h1", t.home_title).await;
    let main = tab.text("main").await;
    for shown in [
        who.name.as_str(),
        login.as_str(),
        org_name.as_str(),
        FINANCE,
        t.signed_in_as,
    ] {
        assert!(main.contains(shown), "the home page shows {shown}:\n{main}");
    }
    assert!(tab.has("header form[action=\"/logout\"]", None).await);
    let stored = p.sessions_of(&login).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].stage, SessionStage::SignedIn);

    // Opened by its address, the home page is there; the sign-in form sends you home.
    tab.open(&home_path(FINANCE)).await;
    tab.wait_for_text("main h1", t.home_title).await;
    tab.open("/login").await;
    tab.wait_for_text("main h1", t.home_title).await;
    assert_eq!(tab.location().await, tab.url_of(&home_path(FINANCE)));

    // What the page fetches goes with its session (an HttpOnly cookie no script can read).
    let cookies: String = tab.call("() => document.cookie", &[]).await;
    assert!(!cookies.contains("gk_session"), "{cookies}");
    let home = tab.download(&home_path(FINANCE)).await;
    assert_eq!(home.status, 200, "{}", home.url);
    assert!(String::from_utf8_lossy(&home.bytes).contains(&who.name));
    let css = tab.download("/assets/portal.css").await;
    assert_eq!(css.status, 200);
    assert!(css.content_type.unwrap_or_default().starts_with("text/css"));
    assert_eq!(
        css.bytes,
        include_bytes!("../src/portal/assets/portal.css").as_slice()
    );

    tab.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_language_switches_and_stays_across_pages() {
    let Some((tab, p)) = world("language").await else {
        return;
    };
    let (zh, en) = (Lang::Zh.texts(), Lang::En.texts());
    let html_lang = || async {
        tab.call::<String>("() => document.documentElement.lang", &[])
            .await
    };

    tab.open("/login").await;
    assert_eq!(tab.text("main h1").await, zh.sign_in_title);
    tab.mark_page().await;
    tab.click_button("header form[action=\"/lang\"]", en.lang_en)
        .await;
    tab.next_page().await;
    assert_eq!(tab.text("main h1").await, en.sign_in_title);
    // A new load of the page, and the next pages, stay in English.
    tab.open("/login").await;
    assert_eq!(tab.text("main h1").await, en.sign_in_title);
    assert_eq!(html_lang().await, "en");
    let login = signer(FINANCE);
    submit_password(&tab, Lang::En, &p, &login, DEMO_PASSWORD).await;
    assert_eq!(tab.text("main h1").await, en.second_factor_title);
    submit_code_clicks(&tab, Lang::En, &p, &login, 1).await;
    tab.wait_for_text("main h1", en.home_title).await;
    let main = tab.text("main").await;
    assert!(main.contains(en.signed_in_as), "{main}");
    assert!(tab.has("header button", Some(en.sign_out)).await);

    // Back to Chinese on the home page, signed in; it stays on every page.
    tab.mark_page().await;
    tab.click_button("header form[action=\"/lang\"]", zh.lang_zh)
        .await;
    tab.next_page().await;
    tab.wait_for_text("main h1", zh.home_title).await;
    let main = tab.text("main").await;
    assert!(main.contains(zh.signed_in_as), "{main}");
    tab.open(&home_path(FINANCE)).await;
    tab.wait_for_text("main h1", zh.home_title).await;
    assert_eq!(html_lang().await, "zh-CN");
    assert!(tab.has("header button", Some(zh.sign_out)).await);
    assert!(!tab.body_text().await.contains(en.signed_in_as));

    tab.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_wrong_passwords_lock_the_user_and_the_page_does_not_tell() {
    let Some((tab, p)) = world("lockout").await else {
        return;
    };
    let t = Lang::Zh.texts();
    let refusal = i18n::fill(t.bad_credentials, &[("max", "5"), ("lock", "30")]);
    let login = checker(FINANCE);
    tab.open("/login").await;
    let mut wrong_answer = String::new();
    for attempt in 1..=5 {
        submit_password(&tab, Lang::Zh, &p, &login, "Wrong-pass-1").await;
        let alert = tab.text("main [role=alert]").await;
        assert_eq!(alert, refusal, "attempt {attempt}");
        assert!(
            !tab.has("form[action=\"/login/totp\"]", None).await,
            "attempt {attempt}"
        );
        wrong_answer = tab.text("main").await;
    }
    let party = p.party(FINANCE);
    let user = party
        .store
        .access()
        .user_by_login(&login)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(user.login_state.failed_attempts, 5);
    assert!(user.login_state.locked_until.is_some(), "locked");

    // Locked: the right password gets the very page a wrong one got.
    submit_password(&tab, Lang::Zh, &p, &login, DEMO_PASSWORD).await;
    let right_answer = tab.text("main").await;
    assert_eq!(right_answer, wrong_answer);
    assert!(!right_answer.contains(t.locked.split('{').next().unwrap()));
    assert!(!tab.has("form[action=\"/login/totp\"]", None).await);
    assert!(p.sessions_of(&login).await.is_empty(), "no session opened");

    // Another user of the same organisation still signs in.
    sign_in(&tab, Lang::Zh, &p, &maker(FINANCE)).await;

    tab.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_signing_out_back_and_the_home_address_bring_the_sign_in_form() {
    let Some((tab, p)) = world("sign_out").await else {
        return;
    };
    let t = Lang::Zh.texts();
    let login = maker(FINANCE);
    let who = p.login(&login).name.clone();
    sign_in(&tab, Lang::Zh, &p, &login).await;
    // A second page, so there is history to go back through.
    tab.open(&home_path(FINANCE)).await;
    tab.wait_for_text("main h1", t.home_title).await;

    tab.mark_page().await;
    tab.click("header form[action=\"/logout\"] button").await;
    tab.next_page().await;
    tab.wait_for("form[action=\"/login\"]").await;
    assert!(p.sessions_of(&login).await.is_empty(), "the session ended");

    // The back button: the signed-in page does not come back.
    tab.mark_page().await;
    tab.back().await;
    tab.next_page().await;
    assert!(
        !tab.body_text().await.contains(&who),
        "back after signing out shows the signed-in page again (kept by the browser or by \
         htmx's history cache)\n{}",
        tab.where_am_i().await
    );
    tab.wait_for("form[action=\"/login\"]").await;

    // The home page's address: the form.
    tab.open(&home_path(FINANCE)).await;
    tab.wait_for("form[action=\"/login\"]").await;
    assert_eq!(tab.path().await, "/login");
    assert!(!tab.body_text().await.contains(&who));

    tab.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_double_clicked_submit_signs_in_once() {
    let Some((tab, p)) = world("double_click").await else {
        return;
    };
    let t = Lang::Zh.texts();
    let login = maker(FINANCE);
    tab.open("/login").await;
    submit_password_clicks(&tab, Lang::Zh, &p, &login, DEMO_PASSWORD, 2).await;
    tab.wait_for("form[action=\"/login/totp\"]").await;
    submit_code_clicks(&tab, Lang::Zh, &p, &login, 2).await;
    tab.wait_for_text("main h1", t.home_title).await;
    let sessions = p.sessions_of(&login).await;
    assert_eq!(
        sessions.iter().map(|s| s.stage).collect::<Vec<_>>(),
        [SessionStage::SignedIn],
        "one session, signed in"
    );
    // And it is this window's: the home page opens by its address.
    tab.open(&home_path(FINANCE)).await;
    tab.wait_for_text("main h1", t.home_title).await;

    tab.close().await;
}
