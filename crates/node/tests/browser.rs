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
//! - a double-clicked submit signs in once (one session in the store);
//! - a unit pays by 8202 at the counter: its maker fills the form, its checker checks, its
//!   signer signs with the PIN, the parties' workers run, and the payment's page shows the
//!   bank's receipt fields; the receipt and the credit advice download as PDFs whose
//!   extracted text names the payee;
//! - a salary list is checked and submitted from a file chosen in the file input, finance's
//!   checker and signer approve the batch in their queue, and the bank pays it;
//! - finance's signer batch-signs 2,000 checked direct payments with one PIN, watching the
//!   progress bar until it says done.
//!
//! Chromium: `GUOKU_CHROMIUM`, else `chromium`, `chromium-browser` or `google-chrome` on
//! `PATH` (`scripts/test.sh` installs Debian's `chromium`). Without one every test says
//! SKIPPED loudly, and fails when `CI=true`. One browser serves the tests that run at the
//! same time (see `browser/chromium.rs`); the page helpers are in `browser/tab.rs`.

#[path = "browser/chromium.rs"]
mod chromium;
#[path = "browser/drafts.rs"]
mod drafts;
#[path = "browser/tab.rs"]
mod tab;

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use guoku_node::demo::{DEMO_PIN, Demo, DemoOptions};
use guoku_node::exchange::{Clock, InMemory};
use guoku_node::party::Party;
use guoku_node::portal::{DEMO_PASSWORD, DemoLogin, Lang, demo_totp_secret, i18n, seed_demo_users};
use guoku_node::serve::{demo_tokens, serve_demo_api};
use guoku_seal::Suite;
use guoku_store::library::Direction;
use guoku_store::sessions::{SessionRecord, SessionStage};
use guoku_voucher::lifecycle::Leg;
use time::OffsetDateTime;

use chromium::Chromium;
use tab::Tab;

const FINANCE: &str = "11430000006";
/// The budget units' counter (自助柜面), a province unit, and a county unit.
const COUNTER: &str = "DW4300000001";
const UNIT: &str = "A43000001";
const COUNTY_UNIT: &str = "A43010201";
/// Rounds of the parties' workers, then a reload, at most this many times, until the
/// bank's receipt shows.
const RECEIPT_RELOADS: usize = 5;

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

fn unit_user(post: &str) -> String {
    format!("{UNIT}-{post}")
}

/// The payee of the 8202 journey, and what is paid them.
const PAYEE: &str = "长沙市办公用品有限公司";
const PAID: &str = "1234.50";

/// Lets the parties' workers run until they are idle, then reloads `path` in `tab`, until
/// `#receipt-fields` shows (at most [`RECEIPT_RELOADS`] times).
async fn reload_until_the_receipt(tab: &Tab, p: &Portal, path: &str) {
    for _ in 0..RECEIPT_RELOADS {
        p.demo.settle(20).await.expect("the parties' workers");
        tab.open(path).await;
        tab.wait_for("#voucher-fields").await;
        if tab.has("#receipt-fields", None).await {
            return;
        }
    }
    panic!(
        "no receipt after {RECEIPT_RELOADS} rounds of the workers\n{}",
        tab.where_am_i().await
    );
}

/// A unit pays by 8202 through the counter's pages (maker, checker, signer, each in their
/// own window) and the bank pays it: the payment's path, and the signer's window on it
/// showing the bank's receipt.
async fn a_unit_pays_by_8202(maker_tab: &Tab, p: &Portal) -> (String, Tab) {
    sign_in(maker_tab, Lang::Zh, p, &unit_user("maker")).await;
    maker_tab.open(&format!("/o/{COUNTER}/unit/pay")).await;
    maker_tab.select("unit", UNIT).await;
    for (field, value) in [
        ("payee_name", PAYEE),
        ("payee_account", "6222-0001-0002"),
        ("payee_bank", "中国工商银行长沙分行"),
        ("amount", PAID),
        ("summary", "办公用品"),
    ] {
        maker_tab.fill(field, value).await;
    }
    maker_tab.mark_page().await;
    maker_tab.click_button("#pay-form", "提交审核").await;
    maker_tab.next_page().await;
    maker_tab.wait_for_text("#draft-state", "待审核").await;
    let path = maker_tab.path().await;
    assert!(
        path.starts_with(&format!("/o/{COUNTER}/unit/v/")) && path.contains("/8202/"),
        "{path}"
    );
    assert!(maker_tab.text("#voucher-fields").await.contains(PAYEE));
    // Whoever made it cannot check it.
    assert!(!maker_tab.has("#check-button", None).await);

    let checker_tab = maker_tab.another_window().await;
    sign_in(&checker_tab, Lang::Zh, p, &unit_user("checker")).await;
    checker_tab.open(&path).await;
    checker_tab.mark_page().await;
    checker_tab.click("#check-button").await;
    checker_tab.next_page().await;
    checker_tab.wait_for_text("#draft-state", "待签章").await;
    // A checker does not sign.
    assert!(!checker_tab.has("#sign-button", None).await);
    checker_tab.close().await;

    let signer_tab = maker_tab.another_window().await;
    sign_in(&signer_tab, Lang::Zh, p, &unit_user("signer")).await;
    signer_tab.open(&path).await;
    signer_tab.fill("pin", DEMO_PIN).await;
    signer_tab.mark_page().await;
    signer_tab.click("#sign-button").await;
    signer_tab.next_page().await;
    signer_tab.wait_for_text("#draft-state", "已发送").await;
    assert!(!signer_tab.has("#sign-button", None).await);

    reload_until_the_receipt(&signer_tab, p, &path).await;
    (path, signer_tab)
}

/// The text of a PDF's pages as a reader extracts it, whitespace dropped.
fn pdf_text(pdf: &[u8]) -> String {
    let doc = lopdf::Document::load_mem(pdf).expect("a readable PDF");
    let pages: Vec<u32> = doc.get_pages().keys().copied().collect();
    doc.extract_text(&pages)
        .expect("text extraction")
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect()
}

/// `N` in `<span class="{class}">N</span>` of the batch job's progress.
async fn progress_count(tab: &Tab, class: &str) -> u64 {
    let text = tab.text(&format!("#batch-progress .counts .{class}")).await;
    text.trim()
        .parse()
        .unwrap_or_else(|_| panic!("{class} is {text:?}"))
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unit_pays_by_8202_and_the_checker_approves() {
    let Some((tab, p)) = world("pay_8202").await else {
        return;
    };
    let (path, signer_tab) = a_unit_pays_by_8202(&tab, &p).await;

    // The bank's receipt: its X fields, the amount paid among them.
    let receipt = signer_tab.text("#receipt-fields").await;
    assert!(receipt.contains("XPayAmt"), "{receipt}");
    assert!(receipt.contains(PAID), "{receipt}");
    // The maker sees it too, and the payment in the unit's list.
    tab.open(&path).await;
    assert!(tab.text("#receipt-fields").await.contains("XPayAmt"));
    tab.open(&format!("/o/{COUNTER}/unit/vouchers")).await;
    let list = tab.text("main").await;
    assert_eq!(list.matches(PAYEE).count(), 1, "{list}");

    signer_tab.close().await;
    tab.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_pdf_downloads_and_names_the_payee() {
    let Some((tab, p)) = world("receipt_pdf").await else {
        return;
    };
    let (path, signer_tab) = a_unit_pays_by_8202(&tab, &p).await;

    for (link, file, title) in [
        ("#receipt-pdf", "/receipt.pdf", "支付凭证回单"),
        ("#notice-pdf", "/notice.pdf", "入账通知书"),
    ] {
        let href = signer_tab
            .attribute(link, "href")
            .await
            .unwrap_or_else(|| panic!("{link} has no href"));
        assert_eq!(href, format!("{path}{file}"));
        let pdf = signer_tab.download(&href).await;
        assert_eq!(pdf.status, 200, "{}", pdf.url);
        assert_eq!(pdf.content_type.as_deref(), Some("application/pdf"));
        assert!(pdf.bytes.starts_with(b"%PDF-"), "{link}");
        let text = pdf_text(&pdf.bytes);
        assert!(text.contains(PAYEE), "{link}: {text}");
        assert!(text.contains(title), "{link}: {text}");
    }
    // Another unit's people do not get it.
    let other = tab.another_window().await;
    sign_in(&other, Lang::Zh, &p, &format!("{COUNTY_UNIT}-maker")).await;
    let denied = other.download(&format!("{path}/receipt.pdf")).await;
    assert_eq!(denied.status, 404);

    other.close().await;
    signer_tab.close().await;
    tab.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_salary_batch_is_imported_and_paid() {
    let Some((tab, p)) = world("salary_batch").await else {
        return;
    };
    let files = tempfile::tempdir().unwrap();
    let list = files.path().join("工资.csv");
    std::fs::write(
        &list,
        "姓名,账号,开户行,金额\n\
         张三,6222000011112222,中国工商银行长沙分行,5000.00\n\
         李四,6222000011113333,中国建设银行长沙分行,4800.00\n\
         王五,6222000011114444,中国建设银行长沙分行,4750.50\n",
    )
    .unwrap();
    let list: &Path = &list;

    // The unit's maker checks the file, then submits it.
    sign_in(&tab, Lang::Zh, &p, &unit_user("maker")).await;
    tab.open(&format!("/o/{COUNTER}/unit/import")).await;
    tab.click("#import-form input[name=\"kind\"][value=\"salary\"]")
        .await;
    tab.select("unit", UNIT).await;
    tab.set_files("#import-form input[name=\"file\"]", &[list])
        .await;
    tab.mark_page().await;
    tab.click("#check-file").await;
    tab.next_page().await;
    assert_eq!(tab.text("#rows-ok").await, "3");
    assert_eq!(tab.text("#rows-total").await, "14550.50");
    assert!(!tab.has("#row-errors", None).await);
    assert_eq!(tab.path().await, format!("/o/{COUNTER}/unit/import"));
    // A file input keeps no file across pages: choose it again to submit.
    tab.set_files("#import-form input[name=\"file\"]", &[list])
        .await;
    tab.mark_page().await;
    tab.click("#submit-file").await;
    tab.next_page().await;
    tab.wait_for("#draft-state").await;
    let application = tab.path().await;
    assert!(
        application.starts_with(&format!("/o/{COUNTER}/unit/a/")) && application.contains("/5201/"),
        "{application}"
    );
    let no = application.rsplit('/').next().unwrap().to_owned();
    assert!(tab.text("#voucher-fields").await.contains("14550.50"));

    // Finance's checker finds it in the queue and checks it.
    let checker_tab = tab.another_window().await;
    sign_in(&checker_tab, Lang::Zh, &p, &checker(FINANCE)).await;
    checker_tab
        .open(&format!("/o/{FINANCE}/finance/approvals"))
        .await;
    let row = format!("main table.drafts a[href$=\"/5201/{no}\"]");
    checker_tab.mark_page().await;
    checker_tab.click(&row).await;
    checker_tab.next_page().await;
    assert!(checker_tab.text("main h1").await.contains(&no));
    assert_eq!(checker_tab.text("main dd.state").await, "待审核");
    checker_tab.mark_page().await;
    checker_tab.click_button("main", "审核通过").await;
    checker_tab.next_page().await;
    assert_eq!(checker_tab.text("main dd.state").await, "待签章");
    checker_tab.close().await;

    // Finance's signer signs it with the signing PIN.
    let signer_tab = tab.another_window().await;
    sign_in(&signer_tab, Lang::Zh, &p, &signer(FINANCE)).await;
    signer_tab
        .open(&format!("/o/{FINANCE}/finance/approvals?state=checked"))
        .await;
    signer_tab.mark_page().await;
    signer_tab.click(&row).await;
    signer_tab.next_page().await;
    signer_tab.fill("pin", "123456").await;
    signer_tab.mark_page().await;
    signer_tab.click("#sign-button").await;
    signer_tab.next_page().await;
    assert_eq!(signer_tab.text("main dd.state").await, "已发送");
    signer_tab.close().await;

    // The bank pays the three rows; the unit sees the receipt on the application's page.
    reload_until_the_receipt(&tab, &p, &application).await;
    let receipt = tab.text("#receipt-fields").await;
    assert!(receipt.contains("XPayAmt"), "{receipt}");
    assert!(receipt.contains("14550.50"), "{receipt}");

    tab.close().await;
}

/// How long the batch's progress may stand still before the journey gives up, in
/// milliseconds (a liveness bound: each signature moves it).
const PROGRESS_STALL_MS: u64 = 60_000;
/// The batch finance signs.
const BATCH: u64 = 2_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finance_batch_signs_two_thousand_vouchers_with_one_pin() {
    let Some((tab, p)) = world("batch_sign").await else {
        return;
    };
    let made = Instant::now();
    let keys = drafts::checked_drafts(
        &p.demo,
        &maker(FINANCE),
        &checker(FINANCE),
        COUNTY_UNIT,
        100,
        usize::try_from(BATCH).unwrap(),
    )
    .await;
    eprintln!(
        "batch_sign: {BATCH} checked drafts made in {:.1} s",
        made.elapsed().as_secs_f64()
    );
    assert_eq!(keys.len() as u64, BATCH);

    sign_in(&tab, Lang::Zh, &p, &signer(FINANCE)).await;
    tab.open(&format!("/o/{FINANCE}/finance/batch-sign")).await;
    tab.click("main form input[name=\"all\"]").await;
    tab.fill("pin", DEMO_PIN).await;
    tab.mark_page().await;
    tab.click_button("main form", "开始签章").await;
    tab.next_page().await;
    let signing = Instant::now();
    tab.wait_for("#batch-progress progress").await;
    let job = tab.path().await;
    assert!(
        job.starts_with(&format!("/o/{FINANCE}/finance/batch-sign/jobs/")),
        "{job}"
    );
    assert_eq!(progress_count(&tab, "total").await, BATCH);

    // The bar moves (htmx asks every second) until the job says it is done.
    let done = "#batch-progress .job-state[data-finished=\"true\"]";
    let mut finished = false;
    for _ in 0..=BATCH + 1 {
        if tab.has(done, None).await {
            finished = true;
            break;
        }
        let handled: String = tab
            .call(
                "() => { const p = document.querySelector('#batch-progress progress'); \
                 return p ? p.getAttribute('value') : ''; }",
                &[],
            )
            .await;
        tab.wait_for_within(
            &format!("#batch-progress progress:not([value=\"{handled}\"]), {done}"),
            PROGRESS_STALL_MS,
        )
        .await;
    }
    assert!(finished, "{}", tab.where_am_i().await);
    let took = signing.elapsed().as_secs_f64();
    eprintln!(
        "batch_sign: {BATCH} vouchers signed in {took:.1} s ({:.0} a second)",
        BATCH as f64 / took
    );
    assert_eq!(tab.text("#batch-progress .job-state").await, "签章已完成。");
    assert_eq!(progress_count(&tab, "signed").await, BATCH);
    assert_eq!(progress_count(&tab, "failed").await, 0);
    assert!(!tab.has("#batch-progress table.failures", None).await);
    assert_eq!(
        tab.attribute("#batch-progress progress", "value").await,
        Some(BATCH.to_string())
    );

    // Finance's library holds them all as sent direct payments.
    let sent: u64 = p
        .party(FINANCE)
        .store
        .library()
        .counts()
        .await
        .unwrap()
        .iter()
        .filter(|c| c.vt_code == "5201" && c.leg == Leg::Original && c.direction == Direction::Sent)
        .map(|c| c.legs)
        .sum();
    assert_eq!(sent, BATCH);

    tab.close().await;
}
