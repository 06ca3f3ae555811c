//! The web portal's foundation on the demo province, driven with `tower::ServiceExt::oneshot`
//! (no socket, no browser: a small cookie jar plays the browser), on SQLite and on
//! PostgreSQL:
//!
//! - signing in takes the password and then a TOTP code; each step gets a new session id,
//!   the cookies are `HttpOnly`, `SameSite=Strict`, `Path=/` (and `Secure`, `__Host-`, with
//!   the default configuration), the store keeps only the ids' hashes, a code is taken once;
//! - five wrong attempts in a row, passwords or codes in any mix, lock the user, and the
//!   refusal does not tell a locked user from a wrong password; the lock ends;
//! - sessions end after 15 idle minutes and after 8 hours however busy; the code waits 5
//!   minutes;
//! - a POST without the right CSRF token, or from another origin, is 403 and changes
//!   nothing; a GET changes no state; signing out ends the session;
//! - the language switches and stays; every page escapes what it shows;
//! - a user of one organisation cannot open another's pages, nor carry a session over;
//! - seeding the demo users is idempotent; the assets are served from the binary.
//!
//! PostgreSQL is found through `GUOKU_TEST_PG_URL`, else
//! `postgres://postgres@127.0.0.1:5432/postgres`; without a server the PostgreSQL tests say
//! SKIPPED loudly, and fail when `CI=true`.

mod common;
#[path = "common/web.rs"]
mod web;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use guoku_node::access::{Password, hash_password};
use guoku_node::portal::{
    self, DEMO_PASSWORD, Portal, PortalConfig, TotpSecret, demo_key, demo_totp_secret,
    seed_demo_users,
};
use guoku_store::access::{AccessEvent, NewUser};
use guoku_store::sessions::{SessionRecord, SessionStage};
use sha2::{Digest, Sha256};
use web::*;

impl Env {
    async fn sessions_of(&self, login: &str) -> Vec<SessionRecord> {
        let user = self.user(login).await;
        let org = &self.login(login).org_code;
        self.party(org)
            .store
            .sessions()
            .sessions_of(user.id, self.now())
            .await
            .unwrap()
    }

    /// Every access event of every party.
    async fn events(&self) -> Vec<(String, AccessEvent)> {
        let mut all = Vec::new();
        for party in self.demo.parties() {
            for e in party.store.access().events(0, 1000).await.unwrap() {
                all.push((party.org_code().to_owned(), e));
            }
        }
        all
    }
}

/// A form's fields.
type Fields<'a> = Vec<(&'a str, &'a str)>;
/// Request headers.
type Headers<'a> = &'a [(&'a str, &'a str)];

/// A code `login`'s authenticator does not show around now (none of the steps taken).
fn wrong_code(env: &Env, login: &str) -> String {
    let secret = demo_totp_secret(login);
    let step = env.now() / 30;
    let taken: Vec<String> = (step - 1..=step + 1)
        .map(|s| secret.code_for_step(s, 6))
        .collect();
    (0..)
        .map(|n: u32| format!("{:06}", n * 7919 % 1_000_000))
        .find(|c| !taken.contains(c))
        .unwrap()
}

fn sha256_of_cookie_id(cookie_value: &str) -> [u8; 32] {
    let (_, hex) = cookie_value.split_once('.').unwrap();
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    assert_eq!(bytes.len(), 32, "a 256-bit id");
    Sha256::digest(&bytes).into()
}

// ----- the tests -------------------------------------------------------------------------

web::both!(
    signing_in_takes_a_password_and_a_code_and_rotates_the_session,
    |env| {
        let app = &env.app;
        let login = maker(FINANCE);
        let mut b = Browser::default();

        let a = b.get(app, "/").await;
        assert_eq!((a.status, a.location()), (StatusCode::SEE_OTHER, "/login"));
        let form = b.get(app, "/login").await;
        assert_eq!(form.status, StatusCode::OK);
        assert!(form.body.contains("<html lang=\"zh-CN\">"));
        assert!(
            form.body.contains("湖南省财政厅"),
            "organisations to choose"
        );
        let pre = form.set_cookie("gk_pre").expect("the pre-session cookie");
        assert!(
            pre.contains("HttpOnly") && pre.contains("SameSite=Strict") && pre.contains("Path=/")
        );

        // The password: a second-factor session, not yet signed in.
        let csrf = form.csrf("/login");
        let a = b
            .post(
                app,
                "/login",
                &[
                    ("csrf", &csrf),
                    ("org", FINANCE),
                    ("login", &login),
                    ("password", DEMO_PASSWORD),
                ],
            )
            .await;
        assert_eq!(
            (a.status, a.location()),
            (StatusCode::SEE_OTHER, "/login/totp"),
            "{}",
            a.body
        );
        let set = a.set_cookie("gk_session").unwrap();
        for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
            assert!(set.contains(attribute), "{set}");
        }
        assert!(
            !set.contains("Secure"),
            "the demo configuration serves plain HTTP: {set}"
        );
        let pending = b.session().unwrap().to_owned();
        assert!(pending.starts_with(&format!("{FINANCE}.")));
        let stored = env.sessions_of(&login).await;
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].stage, SessionStage::SecondFactor);
        assert_eq!(
            stored[0].id_sha256,
            sha256_of_cookie_id(&pending),
            "the store keeps the hash"
        );
        assert_eq!(stored[0].expires_at, env.now() + 300);
        let a = b.get(app, &format!("/o/{FINANCE}")).await;
        assert_eq!(
            a.location(),
            "/login/totp",
            "the password alone opens no page"
        );

        // The code: a new id, signed in.
        let page = b.get(app, "/login/totp").await;
        assert!(
            page.body.contains(&login),
            "the code form names who is signing in"
        );
        let a = code(&mut b, app, &env.code(&login)).await;
        assert_eq!(
            (a.status, a.location()),
            (StatusCode::SEE_OTHER, format!("/o/{FINANCE}").as_str())
        );
        let signed = b.session().unwrap().to_owned();
        assert_ne!(signed, pending, "the id is rotated at sign-in");
        let stored = env.sessions_of(&login).await;
        assert_eq!(stored.len(), 1, "the second-factor session is gone");
        assert_eq!(stored[0].stage, SessionStage::SignedIn);
        assert_eq!(stored[0].id_sha256, sha256_of_cookie_id(&signed));
        assert_eq!(
            (stored[0].idle_until, stored[0].expires_at),
            (env.now() + 900, env.now() + 8 * 3600)
        );

        // The home page.
        let home = b.get(app, &format!("/o/{FINANCE}")).await;
        assert_eq!(home.status, StatusCode::OK, "{}", home.body);
        let user = env.user(&login).await;
        for shown in [
            user.display_name.as_str(),
            login.as_str(),
            "湖南省财政厅",
            FINANCE,
            "财政",
            "经办",
            "430000",
            "湖南省",
            "/api/v1/openapi.json",
            "/assets/htmx.min.js",
            "hx-boost=\"true\"",
        ] {
            assert!(home.body.contains(shown), "home shows {shown}");
        }
        assert!(!home.body.contains("审核</span>"), "only the posts held");
        let csp = home.header("content-security-policy").unwrap();
        assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
        assert_eq!(home.header("cache-control"), Some("no-store"));
        assert_eq!(b.get(app, "/").await.location(), format!("/o/{FINANCE}"));
        assert_eq!(
            b.get(app, "/login").await.location(),
            format!("/o/{FINANCE}")
        );

        // The old (second-factor) id opens nothing.
        let mut old = Browser::default();
        old.jar.insert("gk_session".into(), pending);
        assert_eq!(
            old.get(app, &format!("/o/{FINANCE}")).await.location(),
            "/login"
        );

        // The code is used up: the same code cannot sign in again, even within its step.
        let mut again = Browser::default();
        let a = password(env, &mut again, app, &login, DEMO_PASSWORD).await;
        assert_eq!(a.status, StatusCode::SEE_OTHER);
        let a = code(&mut again, app, &env.code(&login)).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
        assert!(a.body.contains("动态口令错误"));
        // The next step's code is taken.
        env.advance(30);
        let a = code(&mut again, app, &env.code(&login)).await;
        assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);

        // With the default configuration the cookies are Secure, with the __Host- prefix.
        let secure = env.app_with(PortalConfig::default());
        let mut s = Browser::default();
        let form = s.get(&secure, "/login").await;
        let pre = form
            .set_cookie("__Host-gk_pre")
            .expect("the __Host- pre-session cookie");
        assert!(pre.contains("; Secure"));
        assert!(form.header("strict-transport-security").is_some());
        let signer = signer(FINANCE);
        let csrf = form.csrf("/login");
        let a = s
            .post(
                &secure,
                "/login",
                &[
                    ("csrf", &csrf),
                    ("org", FINANCE),
                    ("login", &signer),
                    ("password", DEMO_PASSWORD),
                ],
            )
            .await;
        assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
        let set = a.set_cookie("__Host-gk_session").unwrap();
        for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Secure"] {
            assert!(set.contains(attribute), "{set}");
        }
        assert!(!set.contains("Domain"), "a __Host- cookie has no Domain");
        let a = code(&mut s, &secure, &env.code(&signer)).await;
        assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
        assert!(
            a.set_cookie("__Host-gk_session")
                .unwrap()
                .contains("Secure")
        );
    }
);

web::both!(five_wrong_attempts_lock_the_user, |env| {
    let app = &env.app;
    let refusal = "用户名或密码错误";

    // Five wrong passwords.
    let login = checker(FINANCE);
    let mut b = Browser::default();
    for i in 1..=5 {
        let a = password(env, &mut b, app, &login, "Wrong-pass-1").await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "attempt {i}");
        assert!(a.body.contains(refusal), "attempt {i}");
        assert!(a.set_cookie("gk_session").is_none());
    }
    let state = env.user(&login).await.login_state;
    assert_eq!(state.failed_attempts, 5);
    assert_eq!(state.locked_until, Some(env.now() + 30 * 60));
    // Locked: the right password gets the very same answer as a wrong one or a stranger.
    let right = password(env, &mut b, app, &login, DEMO_PASSWORD).await;
    let wrong = password(env, &mut b, app, &login, "Wrong-pass-1").await;
    let someone_else = password(env, &mut b, app, &maker(FINANCE), "Wrong-pass-1").await;
    for a in [&right, &wrong, &someone_else] {
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
        assert!(a.body.contains(refusal));
        assert!(a.set_cookie("gk_session").is_none());
    }
    assert_eq!(
        right.body.replace(&login, ""),
        wrong.body.replace(&login, ""),
        "a locked user's right password tells nothing"
    );
    assert_eq!(
        env.user(&login).await.login_state,
        state,
        "a lock is not extended"
    );
    let mut nobody = Browser::default();
    let form = nobody.get(app, "/login").await;
    let csrf = form.csrf("/login");
    let a = nobody
        .post(
            app,
            "/login",
            &[
                ("csrf", &csrf),
                ("org", FINANCE),
                ("login", "no-such-user"),
                ("password", "x"),
            ],
        )
        .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert!(a.body.contains(refusal));
    // The lock ends.
    env.advance(30 * 60);
    let a = password(env, &mut b, app, &login, DEMO_PASSWORD).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);

    // Passwords and codes count together: a right password does not clear the count.
    let login = signer(PBOC);
    let mut b = Browser::default();
    for _ in 0..4 {
        let a = password(env, &mut b, app, &login, "Wrong-pass-1").await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    }
    let a = password(env, &mut b, app, &login, DEMO_PASSWORD).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert_eq!(env.user(&login).await.login_state.failed_attempts, 4);
    let a = code(&mut b, app, &wrong_code(env, &login)).await;
    assert_eq!(
        a.status,
        StatusCode::FORBIDDEN,
        "the fifth failure locks: {}",
        a.body
    );
    assert!(a.body.contains("账户已锁定"));
    assert!(b.session().is_none(), "the second-factor session ends");
    assert!(env.sessions_of(&login).await.is_empty());
    assert!(env.user(&login).await.login_state.is_locked(env.now()));
    let a = password(env, &mut b, app, &login, DEMO_PASSWORD).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);

    // Five wrong codes after a right password.
    let login = maker(PBOC);
    let mut b = Browser::default();
    let a = password(env, &mut b, app, &login, DEMO_PASSWORD).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    for i in 1..=4 {
        let a = code(&mut b, app, "12345x").await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "code {i}");
        assert!(a.body.contains("动态口令错误"));
    }
    let a = code(&mut b, app, &wrong_code(env, &login)).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    // Not even the right code gets in now.
    let mut b = Browser::default();
    let a = password(env, &mut b, app, &login, DEMO_PASSWORD).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    let events = env.events().await;
    let failed = |action: &str| {
        events
            .iter()
            .filter(|(org, e)| org == PBOC && e.action == action && e.actor == login)
            .count()
    };
    assert_eq!(failed("second_factor_failed"), 5);
});

web::both!(sessions_end_after_idle_time_and_absolute_lifetime, |env| {
    let app = &env.app;
    let login = maker(FINANCE);
    let home = format!("/o/{FINANCE}");

    // Idle: each request moves the end on; 15 minutes without one end the session.
    let mut b = sign_in(env, app, &login).await;
    env.advance(14 * 60);
    assert_eq!(b.get(app, &home).await.status, StatusCode::OK);
    env.advance(14 * 60);
    assert_eq!(
        b.get(app, &home).await.status,
        StatusCode::OK,
        "activity keeps it"
    );
    env.advance(15 * 60);
    let a = b.get(app, &home).await;
    assert_eq!((a.status, a.location()), (StatusCode::SEE_OTHER, "/login"));
    assert!(env.sessions_of(&login).await.is_empty());

    // Absolute: 8 hours, however busy.
    env.advance(30);
    let mut b = sign_in(env, app, &login).await;
    let started = env.now();
    while env.now() + 10 * 60 < started + 8 * 3600 {
        env.advance(10 * 60);
        assert_eq!(b.get(app, &home).await.status, StatusCode::OK);
    }
    env.advance(started + 8 * 3600 - env.now() - 1);
    assert_eq!(
        b.get(app, &home).await.status,
        StatusCode::OK,
        "a second before the end"
    );
    env.advance(1);
    let a = b.get(app, &home).await;
    assert_eq!((a.status, a.location()), (StatusCode::SEE_OTHER, "/login"));

    // The code waits five minutes after the password.
    env.advance(30);
    let mut b = Browser::default();
    let a = password(env, &mut b, app, &login, DEMO_PASSWORD).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    env.advance(5 * 60);
    let a = b.get(app, "/login/totp").await;
    assert_eq!((a.status, a.location()), (StatusCode::SEE_OTHER, "/login"));
});

web::both!(
    posts_without_the_right_token_or_origin_change_nothing,
    |env| {
        let app = &env.app;
        let login = maker(FINANCE);
        let home = format!("/o/{FINANCE}");
        let mut b = sign_in(env, app, &login).await;
        let page = b.get(app, &home).await;
        let token = page.csrf("/logout");
        let other = sign_in(env, app, &checker(FINANCE)).await;
        let mut other_b = other.clone();
        let other_token = other_b.get(app, &home).await.csrf("/logout");
        let events = env.events().await;
        let sessions = env.sessions_of(&login).await;

        let zeros = "0".repeat(64);
        let evil = [
            ("origin", "http://evil.example"),
            ("sec-fetch-site", "cross-site"),
        ];
        let same = [
            ("origin", "http://portal.test"),
            ("sec-fetch-site", "same-origin"),
        ];
        let cross_site = [("sec-fetch-site", "cross-site")];
        let null_origin = [("origin", "null")];
        let refusals: Vec<(&str, Fields, Headers)> = vec![
            ("no token", vec![], &same),
            ("a wrong token", vec![("csrf", &zeros)], &same),
            ("a malformed token", vec![("csrf", "x")], &same),
            (
                "another session's token",
                vec![("csrf", &other_token)],
                &same,
            ),
            ("another origin", vec![("csrf", &token)], &evil),
            ("a cross-site fetch", vec![("csrf", &token)], &cross_site),
            ("an opaque origin", vec![("csrf", &token)], &null_origin),
        ];
        for (why, fields, headers) in &refusals {
            for path in ["/logout", "/lang"] {
                let mut fields = fields.clone();
                fields.push(("lang", "en"));
                let a = b.post_with(app, path, &fields, headers).await;
                assert_eq!(a.status, StatusCode::FORBIDDEN, "{path} with {why}");
                assert!(a.set_cookie("gk_lang").is_none() && a.set_cookie("gk_session").is_none());
            }
        }
        // Not a form at all.
        let mut request_b = b.clone();
        let a = request_b
            .send(
                app,
                Request::builder()
                    .method(Method::POST)
                    .uri("/logout")
                    .header(header::CONTENT_TYPE, "application/json"),
                Body::from(format!("{{\"csrf\":\"{token}\"}}")),
            )
            .await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST);
        // Nothing changed: still signed in, in Chinese, no event, the same session.
        let page = b.get(app, &home).await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(page.body.contains("<html lang=\"zh-CN\">"));
        assert_eq!(env.events().await.len(), events.len());
        let after = env.sessions_of(&login).await;
        assert_eq!(after.len(), 1);
        assert_eq!(after[0].id_sha256, sessions[0].id_sha256);
        assert_eq!(after[0].csrf_token, sessions[0].csrf_token);

        // The password form: without the token, or with one for another browser, a wrong
        // password is not even counted.
        let victim = signer(FINANCE);
        let mut attacker = Browser::default();
        let foreign = attacker.get(app, "/login").await.csrf("/login");
        let mut fresh = Browser::default();
        fresh.get(app, "/login").await;
        for (why, csrf) in [
            ("no token", None),
            ("another browser's token", Some(foreign.as_str())),
        ] {
            let mut fields = vec![
                ("org", FINANCE),
                ("login", victim.as_str()),
                ("password", "Wrong-1"),
            ];
            if let Some(csrf) = csrf {
                fields.push(("csrf", csrf));
            }
            let a = fresh.post(app, "/login", &fields).await;
            assert_eq!(a.status, StatusCode::FORBIDDEN, "{why}");
        }
        // No pre-session cookie at all.
        let mut bare = Browser::default();
        let a = bare
            .post(
                app,
                "/login",
                &[
                    ("csrf", &foreign),
                    ("org", FINANCE),
                    ("login", &victim),
                    ("password", "Wrong-1"),
                ],
            )
            .await;
        assert_eq!(a.status, StatusCode::FORBIDDEN);
        assert_eq!(env.user(&victim).await.login_state.failed_attempts, 0);

        // The code form: a wrong token does not use the code, nor count.
        let mut half = Browser::default();
        let a = password(env, &mut half, app, &victim, DEMO_PASSWORD).await;
        assert_eq!(a.status, StatusCode::SEE_OTHER);
        let right = env.code(&victim);
        let a = half
            .post(app, "/login/totp", &[("csrf", &zeros), ("code", &right)])
            .await;
        assert_eq!(a.status, StatusCode::FORBIDDEN);
        let a = half
            .post_with(app, "/login/totp", &[("code", &right)], &evil)
            .await;
        assert_eq!(a.status, StatusCode::FORBIDDEN);
        assert_eq!(
            env.sessions_of(&victim).await[0].stage,
            SessionStage::SecondFactor
        );
        assert_eq!(env.user(&victim).await.login_state.failed_attempts, 0);
        let a = code(&mut half, app, &right).await;
        assert_eq!(
            a.status,
            StatusCode::SEE_OTHER,
            "the code was not used up: {}",
            a.body
        );
    }
);

web::both!(get_requests_change_no_state, |env| {
    let app = &env.app;
    let login = maker(FINANCE);
    let home = format!("/o/{FINANCE}");
    let mut b = sign_in(env, app, &login).await;
    let before_events = env.events().await;
    let before_user = env.user(&login).await;
    let before = env.sessions_of(&login).await;
    let victim = checker(FINANCE);

    let code_now = env.code(&login);
    let probes = [
        "/logout".to_owned(),
        "/lang?lang=en".to_owned(),
        format!("/login?org={FINANCE}&login={victim}&password=Wrong-1"),
        format!("/login/totp?code={code_now}"),
        "/".to_owned(),
        home.clone(),
        format!("/o/{PBOC}"),
        "/assets/portal.css".to_owned(),
    ];
    for path in &probes {
        let a = b.get(app, path).await;
        assert!(
            a.set_cookie("gk_lang").is_none(),
            "GET {path} set the language"
        );
        assert!(
            a.set_cookie("gk_session").is_none(),
            "GET {path} touched the session cookie"
        );
    }
    assert_eq!(
        b.get(app, "/logout").await.status,
        StatusCode::METHOD_NOT_ALLOWED
    );
    assert_eq!(
        b.get(app, "/lang").await.status,
        StatusCode::METHOD_NOT_ALLOWED
    );
    // An anonymous GET with credentials in the query signs nobody in.
    let mut anonymous = Browser::default();
    for path in &probes {
        anonymous.get(app, path).await;
    }
    assert!(anonymous.session().is_none());

    assert_eq!(env.events().await.len(), before_events.len(), "no event");
    assert_eq!(env.user(&victim).await.login_state.failed_attempts, 0);
    let after_user = env.user(&login).await;
    assert_eq!(after_user, before_user);
    let after = env.sessions_of(&login).await;
    assert_eq!(after.len(), before.len());
    for (a, b) in after.iter().zip(&before) {
        assert_eq!(
            (
                a.id_sha256,
                a.stage,
                a.csrf_token,
                a.created_at,
                a.expires_at
            ),
            (
                b.id_sha256,
                b.stage,
                b.csrf_token,
                b.created_at,
                b.expires_at
            ),
            "a GET only moves the idle end of its own session"
        );
    }
    assert_eq!(
        b.get(app, &home).await.status,
        StatusCode::OK,
        "still signed in"
    );
});

web::both!(signing_out_ends_the_session, |env| {
    let app = &env.app;
    let login = maker(FINANCE);
    let home = format!("/o/{FINANCE}");
    let mut b = sign_in(env, app, &login).await;
    let stolen = b.clone();
    let page = b.get(app, &home).await;
    let a = b
        .post(app, "/logout", &[("csrf", &page.csrf("/logout"))])
        .await;
    assert_eq!((a.status, a.location()), (StatusCode::SEE_OTHER, "/login"));
    let cleared = a.set_cookie("gk_session").unwrap();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    assert!(b.session().is_none());
    assert!(env.sessions_of(&login).await.is_empty());
    assert_eq!(b.get(app, &home).await.location(), "/login");
    // The old cookie, kept elsewhere, opens nothing either.
    let mut stolen = stolen;
    assert_eq!(stolen.get(app, &home).await.location(), "/login");
    let logouts = env
        .events()
        .await
        .into_iter()
        .filter(|(org, e)| org == FINANCE && e.action == "logout" && e.actor == login)
        .count();
    assert_eq!(logouts, 1);

    // A second-factor session can be ended the same way (a sign-in given up).
    let mut half = Browser::default();
    env.advance(30);
    password(env, &mut half, app, &login, DEMO_PASSWORD).await;
    let form = half.get(app, "/login/totp").await;
    let a = half
        .post(app, "/logout", &[("csrf", &form.csrf("/logout"))])
        .await;
    assert_eq!(a.location(), "/login");
    assert!(env.sessions_of(&login).await.is_empty());
});

web::both!(the_language_switches_and_stays, |env| {
    let app = &env.app;
    let mut b = Browser::default();
    let zh = b.get(app, "/login").await;
    assert!(zh.body.contains("<html lang=\"zh-CN\">"));
    assert!(zh.body.contains("用户名") && zh.body.contains("密码"));
    let en = Browser::default()
        .get_with(app, "/login", &[("accept-language", "en-GB,en;q=0.9")])
        .await;
    assert!(en.body.contains("<html lang=\"en\">"));
    assert!(en.body.contains(">Sign in<") && en.body.contains("Password"));

    // Switched, remembered in a cookie.
    let a = b
        .post(
            app,
            "/lang",
            &[
                ("csrf", &zh.csrf("/lang")),
                ("lang", "en"),
                ("next", "/login"),
            ],
        )
        .await;
    assert_eq!((a.status, a.location()), (StatusCode::SEE_OTHER, "/login"));
    let cookie = a.set_cookie("gk_lang").unwrap();
    assert!(
        cookie.starts_with("gk_lang=en;") && cookie.contains("Max-Age="),
        "{cookie}"
    );
    let page = b.get(app, "/login").await;
    assert!(page.body.contains("<html lang=\"en\">") && page.body.contains("Login"));
    let refused = b
        .post(
            app,
            "/lang",
            &[("csrf", &page.csrf("/lang")), ("lang", "fr")],
        )
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(
        refused.body.contains("malformed"),
        "refusals are in the chosen language"
    );
    // Redirects stay on the site.
    let a = b
        .post(
            app,
            "/lang",
            &[
                ("csrf", &page.csrf("/lang")),
                ("lang", "en"),
                ("next", "//evil.example/"),
            ],
        )
        .await;
    assert_eq!(a.location(), "/");

    // Signed in, the home page follows, and the switch takes the session's token.
    let login = maker(FINANCE);
    let mut s = sign_in(env, app, &login).await;
    s.jar.insert("gk_lang".into(), "en".into());
    let home = format!("/o/{FINANCE}");
    let page = s.get(app, &home).await;
    for shown in ["Finance", "Maker", "Administrative divisions", "Sign out"] {
        assert!(page.body.contains(shown), "{shown}");
    }
    let login_token = b.get(app, "/login").await.csrf("/lang");
    let a = s
        .post(
            app,
            "/lang",
            &[("csrf", &login_token), ("lang", "zh"), ("next", &home)],
        )
        .await;
    assert_eq!(
        a.status,
        StatusCode::FORBIDDEN,
        "a signed-in switch takes the session's token"
    );
    let a = s
        .post(
            app,
            "/lang",
            &[
                ("csrf", &page.csrf("/lang")),
                ("lang", "zh"),
                ("next", &home),
            ],
        )
        .await;
    assert_eq!(a.location(), home);
    let page = s.get(app, &home).await;
    for shown in ["财政", "经办", "行政区划", "退出登录"] {
        assert!(page.body.contains(shown), "{shown}");
    }
});

web::both!(a_user_sees_only_their_own_organisations_pages, |env| {
    let app = &env.app;
    let login = maker(FINANCE);
    let mut b = sign_in(env, app, &login).await;
    assert_eq!(
        b.get(app, &format!("/o/{FINANCE}")).await.status,
        StatusCode::OK
    );
    for other in [PBOC, "102551000015", "no-such-org"] {
        let a = b.get(app, &format!("/o/{other}")).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{other}");
        assert!(a.body.contains("只能访问本机构的页面"));
        assert!(
            !a.body.contains("湖南省财政厅"),
            "nothing of the other party"
        );
    }
    // The session's id under another organisation's name finds nothing there.
    let (_, id) = b.session().unwrap().split_once('.').unwrap();
    let mut forged = Browser::default();
    forged
        .jar
        .insert("gk_session".into(), format!("{PBOC}.{id}"));
    assert_eq!(
        forged.get(app, &format!("/o/{PBOC}")).await.location(),
        "/login"
    );
    assert_eq!(
        forged.get(app, &format!("/o/{FINANCE}")).await.location(),
        "/login"
    );
    // Finance's user is no user at PBOC.
    let mut c = Browser::default();
    let form = c.get(app, "/login").await;
    let a = c
        .post(
            app,
            "/login",
            &[
                ("csrf", &form.csrf("/login")),
                ("org", PBOC),
                ("login", &login),
                ("password", DEMO_PASSWORD),
            ],
        )
        .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    // PBOC's own user sees PBOC's page, with its role.
    let pboc = maker(PBOC);
    let mut p = sign_in(env, app, &pboc).await;
    let page = p.get(app, &format!("/o/{PBOC}")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("人民银行国库") && page.body.contains("清算额度"));
    assert_eq!(
        p.get(app, &format!("/o/{FINANCE}")).await.status,
        StatusCode::FORBIDDEN
    );
    // The county trio sees its county only.
    let county = format!("{FINANCE}-maker-430102");
    let mut k = sign_in(env, app, &county).await;
    let page = k.get(app, &format!("/o/{FINANCE}")).await;
    assert!(page.body.contains("430102") && page.body.contains("长沙市芙蓉区"));
    assert!(!page.body.contains("<code>430000</code>"));
});

web::both!(demo_users_are_seeded_once, |env| {
    assert_eq!(env.logins.len(), env.demo.users.len());
    for (login, user) in env.logins.iter().zip(&env.demo.users) {
        assert_eq!(login.login, user.login, "in the demo's order");
        assert_eq!(login.password, DEMO_PASSWORD);
        assert!(
            login
                .otpauth_uri
                .starts_with(&format!("otpauth://totp/guoku:{}?secret=", login.login)),
            "{}",
            login.otpauth_uri
        );
        assert!(login.otpauth_uri.contains(&login.secret_base32));
        assert_eq!(login.code_now, env.code(&login.login));
        let shown = format!("{login:?}");
        assert!(!shown.contains(DEMO_PASSWORD) && !shown.contains(&login.secret_base32));
        let record = env.user(&login.login).await;
        assert!(record.password_hash.starts_with("$argon2id$"));
    }
    let mut before = Vec::new();
    for l in &env.logins {
        let party = env.party(&l.org_code);
        let user = env.user(&l.login).await;
        let factor = party.store.sessions().totp(user.id).await.unwrap().unwrap();
        // Kept sealed, and it opens (with the demo key, for this user only) to the secret
        // printed.
        let text = l.secret_base32.as_bytes();
        assert!(!factor.sealed.windows(text.len()).any(|w| w == text));
        let opened = TotpSecret::unseal(&demo_key(), user.id, &factor.sealed).unwrap();
        assert_eq!(*opened.base32(), l.secret_base32);
        before.push((user.password_hash, factor.sealed));
    }
    let events = env.events().await.len();
    env.advance(60);
    let again = seed_demo_users(&env.demo).await.unwrap();
    assert_eq!(
        again.iter().map(|l| &l.otpauth_uri).collect::<Vec<_>>(),
        env.logins
            .iter()
            .map(|l| &l.otpauth_uri)
            .collect::<Vec<_>>()
    );
    let mut after = Vec::new();
    for l in &env.logins {
        let party = env.party(&l.org_code);
        let user = env.user(&l.login).await;
        let factor = party.store.sessions().totp(user.id).await.unwrap().unwrap();
        after.push((user.password_hash, factor.sealed));
    }
    assert_eq!(after, before, "nothing re-hashed or re-sealed");
    assert_eq!(env.events().await.len(), events, "no event on a resume");
    // The seeded users sign in (the demo key opens what seeding sealed).
    sign_in(env, &env.app, &maker(FINANCE)).await;
});

web::both!(
    pages_escape_what_they_show_and_assets_come_from_the_binary,
    |env| {
        let app = &env.app;
        // What a user typed comes back escaped.
        let mut b = Browser::default();
        let form = b.get(app, "/login").await;
        let typed = "\"><script>alert(1)</script>";
        let a = b
            .post(
                app,
                "/login",
                &[
                    ("csrf", &form.csrf("/login")),
                    ("org", FINANCE),
                    ("login", typed),
                    ("password", "x"),
                ],
            )
            .await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
        assert!(!a.body.contains("<script>alert"), "{}", a.body);
        assert!(
            a.body
                .contains("&#34;&#62;&#60;script&#62;alert(1)&#60;/script&#62;"),
            "{}",
            a.body
        );

        // What the store holds comes back escaped: a user whose name is markup.
        let party = env.party(FINANCE);
        let access = party.store.access();
        let now = env.now();
        let hash = tokio::task::spawn_blocking(|| {
            hash_password(&Password::new(DEMO_PASSWORD).unwrap(), &mut rand::rng()).unwrap()
        })
        .await
        .unwrap();
        let user = access
            .create_user(
                NewUser {
                    login: "markup".into(),
                    display_name: "<b onclick=\"x\">王</b>".into(),
                    password_hash: hash,
                },
                "test",
                now,
            )
            .await
            .unwrap();
        access
            .grant_post(user.id, "maker", "test", now, |_| {
                Ok::<(), std::convert::Infallible>(())
            })
            .await
            .unwrap()
            .unwrap();
        let secret = TotpSecret::generate();
        party
            .store
            .sessions()
            .put_totp(user.id, secret.seal(&demo_key(), user.id).unwrap(), now)
            .await
            .unwrap();
        let mut m = Browser::default();
        let form = m.get(app, "/login").await;
        let a = m
            .post(
                app,
                "/login",
                &[
                    ("csrf", &form.csrf("/login")),
                    ("org", FINANCE),
                    ("login", "markup"),
                    ("password", DEMO_PASSWORD),
                ],
            )
            .await;
        assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
        let a = code(&mut m, app, &secret.code_at(env.now())).await;
        assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
        let page = m.get(app, &format!("/o/{FINANCE}")).await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(!page.body.contains("<b onclick"));
        assert!(
            page.body
                .contains("&#60;b onclick=&#34;x&#34;&#62;王&#60;/b&#62;"),
            "{}",
            page.body
        );
        assert!(page.body.contains("<p>无</p>"), "no divisions granted");

        // The assets.
        let js = b.get(app, "/assets/htmx.min.js").await;
        assert_eq!(js.status, StatusCode::OK);
        assert!(
            js.header("content-type")
                .unwrap()
                .starts_with("text/javascript")
        );
        assert!(js.body.starts_with("var htmx=function()"));
        assert_eq!(
            js.body.len(),
            include_bytes!("../src/portal/assets/htmx.min.js").len()
        );
        let css = b.get(app, "/assets/portal.css").await;
        assert!(css.header("content-type").unwrap().starts_with("text/css"));
        assert_eq!(css.header("x-content-type-options"), Some("nosniff"));
        // The portal merges with the API's router, whose description the home page links to.
        let api = guoku_node::api::router(guoku_node::api::Api::demo(
            env.demo.clone(),
            Arc::new(guoku_node::api::TokenTable::default()),
            guoku_node::api::ApiConfig::default(),
        ));
        let merged = api.merge(portal::router(Portal::demo(&env.demo)));
        let mut both = Browser::default();
        for path in [
            "/login",
            "/api/v1/openapi.json",
            "/healthz",
            "/assets/portal.css",
        ] {
            assert_eq!(
                both.get(&merged, path).await.status,
                StatusCode::OK,
                "{path}"
            );
        }
        assert_eq!(
            b.get(app, "/assets/../Cargo.toml").await.status,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            b.get(app, "/assets/other.js").await.status,
            StatusCode::NOT_FOUND
        );
    }
);
