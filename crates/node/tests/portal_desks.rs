//! The agent bank's, PBOC's and the administration desks of the portal (issue 6 parts 4–6),
//! on the demo province, driven with `tower::ServiceExt::oneshot` and a cookie jar
//! ([`web`]), on SQLite and on PostgreSQL:
//!
//! - a bank's checker sees the vouchers of their bank only, returns (退回) an exception
//!   with a reason (a blank reason is a field error and changes nothing) and refuses
//!   (签收失败) a voucher left read; the sender learns both by its status query; a signer
//!   may do neither; another bank's desk does not know the voucher;
//! - after the demo settles, PBOC's clearing page lists the 2301 it cleared, the bank's its
//!   request and PBOC's receipt, and PBOC's quota and TSA pages show the books;
//! - a system administrator creates a user, a security administrator grants a post and a
//!   division; 三权分立 refusals are field errors; nobody changes their own access; the
//!   auditor reads the log with both acts and every administrative POST answers 403 to them;
//! - a POST without the form token is 403 and changes nothing;
//! - the authorization matrix: every route of the desks (the audit console's too), GET and
//!   POST, for every role and post, answers what the table says; every link and form the
//!   pages show is a route of the table.

mod common;
#[path = "common/web.rs"]
mod web;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use guoku_domain::Amount;
use guoku_node::demo::Payee;
use guoku_node::party::business_date;
use guoku_seal::pki::OrgRole;
use guoku_store::access::UserStatus;
use guoku_voucher::VoucherKey;
use guoku_voucher::lifecycle::{Exchange, Leg, Processing};
use web::*;

const COUNTER: &str = "DW4300000001";

fn key_path(key: &VoucherKey) -> String {
    format!(
        "{}/{}/{}/{}",
        key.adm_div_code, key.st_year, key.vt_code, key.voucher_no
    )
}

/// A fresh one-time form id (32 hex digits).
fn form_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!(
        "{:032x}",
        u128::from(NEXT.fetch_add(1, Ordering::SeqCst)) + (1 << 100)
    )
}

/// Finance issues a direct payment (5201) of `yuan` for the province's first unit to the
/// direct bank (ICBC): its key.
async fn issue_5201(env: &Env, yuan: &str) -> VoucherKey {
    let demo = &env.demo;
    let unit = demo.province.units[0].clone();
    let (t, _) = demo.finance.now();
    let voucher = demo
        .direct_voucher(
            &unit.code,
            yuan.parse::<Amount>().unwrap(),
            &Payee::demo(1),
            business_date(t),
        )
        .unwrap();
    let key = voucher.key();
    let indicator = demo.indicator(&unit.code).unwrap();
    demo.finance
        .issue_direct(
            voucher,
            &indicator,
            u8::from(t.month()),
            demo.province.direct_bank().code,
            "maker",
        )
        .await
        .unwrap();
    key
}

/// Finance delivers what it sent (one tick of finance alone), so the bank holds the
/// voucher received and unread.
async fn deliver_from_finance(env: &Env) {
    env.demo.finance.tick().await.unwrap();
}

/// The token of the signed-in user's forms (the frame's sign-out form carries it).
async fn csrf_of(b: &mut Browser, env: &Env, org: &str) -> String {
    let home = b.get(&env.app, &format!("/o/{org}")).await;
    assert_eq!(home.status, StatusCode::OK, "{}", home.body);
    home.csrf("/logout")
}

// ----- the bank ------------------------------------------------------------------------

both!(a_bank_checker_returns_and_refuses_exceptions, |env| {
    env.demo.settle(30).await.unwrap();
    let app = &env.app;
    let icbc = env.party(ICBC);
    let returned = issue_5201(env, "321.00").await;
    let refused = issue_5201(env, "654.00").await;
    deliver_from_finance(env).await;
    // A worker read both and acknowledged one, then stopped: two exceptions.
    let (_, now) = icbc.now();
    let library = icbc.store.library();
    let read = library.read(100, "test-worker", now).await.unwrap();
    let read: BTreeSet<_> = read.into_iter().map(|r| r.key).collect();
    assert_eq!(read, BTreeSet::from([returned.clone(), refused.clone()]));
    library
        .acknowledge(&returned, Leg::Original, "test-worker", now)
        .await
        .unwrap();

    // The bank's checker sees them; the other bank's checker does not know them.
    let mut teller = sign_in(env, app, &checker(ICBC)).await;
    let incoming = teller.get(app, &format!("/o/{ICBC}/bank")).await;
    assert_eq!(incoming.status, StatusCode::OK, "{}", incoming.body);
    assert!(incoming.body.contains(&returned.voucher_no));
    assert!(incoming.body.contains(&refused.voucher_no));
    let exceptions = teller.get(app, &format!("/o/{ICBC}/bank/exceptions")).await;
    assert!(
        exceptions.body.contains(&returned.voucher_no),
        "{}",
        exceptions.body
    );
    assert!(exceptions.body.contains(&refused.voucher_no));
    let mut other = sign_in(env, app, &checker(CCB)).await;
    let theirs = other.get(app, &format!("/o/{CCB}/bank")).await;
    assert_eq!(theirs.status, StatusCode::OK);
    assert!(!theirs.body.contains(&returned.voucher_no));
    let detail_at_ccb = format!("/o/{CCB}/bank/v/{}", key_path(&returned));
    assert_eq!(
        other.get(app, &detail_at_ccb).await.status,
        StatusCode::NOT_FOUND
    );
    let icbc_page = other.get(app, &format!("/o/{ICBC}/bank")).await;
    assert_eq!(icbc_page.status, StatusCode::FORBIDDEN);

    // Return: the page offers it (not refuse); a blank reason changes nothing.
    let detail = format!("/o/{ICBC}/bank/v/{}", key_path(&returned));
    let page = teller.get(app, &detail).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let action = format!("{detail}/return");
    assert!(page.has_form(&action));
    assert!(!page.has_form(&format!("{detail}/refuse")));
    let (csrf, id) = (page.csrf(&action), page.form_id(&action));
    let blank = teller
        .post(
            app,
            &action,
            &[("csrf", &csrf), ("form_id", &id), ("reason", " ")],
        )
        .await;
    assert_eq!(blank.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(blank.body.contains("请填写原因"), "{}", blank.body);
    let still = library
        .status(&returned, Leg::Original)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(still.exchange, Exchange::Acknowledged);

    // A signer may not return.
    let mut sealer = sign_in(env, app, &signer(ICBC)).await;
    let signer_csrf = csrf_of(&mut sealer, env, ICBC).await;
    let refused_post = sealer
        .post(
            app,
            &action,
            &[
                ("csrf", &signer_csrf),
                ("form_id", &form_id()),
                ("reason", "x"),
            ],
        )
        .await;
    assert_eq!(refused_post.status, StatusCode::FORBIDDEN);

    let reason = "收款人账号有误";
    let done = teller
        .post(
            app,
            &action,
            &[("csrf", &csrf), ("form_id", &id), ("reason", reason)],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(done.location(), detail);
    // The same form again (a double click) does nothing more.
    let again = teller
        .post(
            app,
            &action,
            &[("csrf", &csrf), ("form_id", &id), ("reason", reason)],
        )
        .await;
    assert_eq!(again.status, StatusCode::SEE_OTHER);
    let record = library
        .status(&returned, Leg::Original)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.exchange, Exchange::Returned);
    assert_eq!(record.processing, Some(Processing::Returned));
    assert_eq!(record.reason.as_deref(), Some(reason));
    let events = library.events(&returned, Leg::Original).await.unwrap();
    assert_eq!(
        events.iter().filter(|e| e.action == "return").count(),
        1,
        "returned once"
    );
    assert!(events.iter().any(|e| e.actor == checker(ICBC)));

    // Refuse the one left read.
    let detail = format!("/o/{ICBC}/bank/v/{}", key_path(&refused));
    let page = teller.get(app, &detail).await;
    let action = format!("{detail}/refuse");
    assert!(page.has_form(&action), "{}", page.body);
    assert!(!page.has_form(&format!("{detail}/return")));
    let done = teller
        .post(
            app,
            &action,
            &[
                ("csrf", &page.csrf(&action)),
                ("form_id", &page.form_id(&action)),
                ("reason", "凭证要素不全"),
            ],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    let record = library
        .status(&refused, Leg::Original)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.exchange, Exchange::AckFailed);

    // The sender learns both by its status query.
    env.demo.finance.sync_statuses().await.unwrap();
    let sent = env.demo.finance.store.library();
    let at_finance = sent
        .status(&returned, Leg::Original)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(at_finance.exchange, Exchange::Returned);
    assert_eq!(at_finance.reason.as_deref(), Some(reason));
    assert_eq!(sent.status_code(&refused, Leg::Original).await.unwrap(), 4);
    // The detail page shows the return and who made it.
    let page = teller
        .get(app, &format!("/o/{ICBC}/bank/v/{}", key_path(&returned)))
        .await;
    assert!(page.body.contains(reason) && page.body.contains(&checker(ICBC)));
});

// ----- PBOC --------------------------------------------------------------------------

both!(pboc_lists_the_2301_it_cleared, |env| {
    env.demo.settle(30).await.unwrap();
    let app = &env.app;
    let paid = issue_5201(env, "1000.00").await;
    env.demo.settle(30).await.unwrap();
    let icbc = env.party(ICBC);
    let at_bank = icbc
        .store
        .library()
        .status(&paid, Leg::Original)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(at_bank.processing, Some(Processing::ReceiptSent));

    // The bank's checker asks for clearing now (the worker may have done so already).
    let mut teller = sign_in(env, app, &checker(ICBC)).await;
    let clearing = format!("/o/{ICBC}/bank/clearing");
    let page = teller.get(app, &clearing).await;
    let action = format!("{clearing}/request");
    let asked = teller
        .post(
            app,
            &action,
            &[
                ("csrf", &page.csrf(&action)),
                ("form_id", &page.form_id(&action)),
            ],
        )
        .await;
    assert_eq!(asked.status, StatusCode::SEE_OTHER, "{}", asked.body);
    assert!(asked.location().starts_with(&format!("{clearing}?sent=")));
    env.demo.settle(30).await.unwrap();

    let pboc = env.party(PBOC);
    let cleared = pboc
        .store
        .library()
        .by_status("2301", Leg::Original, Exchange::Acknowledged, 0, 100)
        .await
        .unwrap()
        .items;
    let cleared: Vec<_> = cleared
        .into_iter()
        .filter(|r| r.processing == Some(Processing::ReceiptSent))
        .collect();
    assert!(!cleared.is_empty(), "PBOC cleared a 2301");
    let request = &cleared[0].key;

    let mut treasury = sign_in(env, app, &checker(PBOC)).await;
    let page = treasury.get(app, &format!("/o/{PBOC}/pboc")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains(&request.voucher_no), "{}", page.body);
    assert!(page.body.contains("80 回单成功"));
    let detail = treasury
        .get(app, &format!("/o/{PBOC}/pboc/v/{}", key_path(request)))
        .await;
    assert_eq!(detail.status, StatusCode::OK);
    assert!(detail.body.contains(&icbc.config.bank_no));
    // The bank sees its request with PBOC's receipt.
    let ours = teller.get(app, &clearing).await;
    assert!(ours.body.contains(&request.voucher_no));
    assert!(ours.body.contains("已收到对方回单"), "{}", ours.body);
    // The books: the quota cleared and the TSA's clearing posting.
    let quotas = treasury.get(app, &format!("/o/{PBOC}/pboc/quotas")).await;
    assert_eq!(quotas.status, StatusCode::OK);
    assert!(
        quotas.body.contains(guoku_node::demo::FUNC) && quotas.body.contains(&icbc.config.bank_no),
        "{}",
        quotas.body
    );
    let division = &env.demo.province.units[0].division;
    let tsa = treasury
        .get(app, &format!("/o/{PBOC}/pboc/tsa?div={division}"))
        .await;
    assert_eq!(tsa.status, StatusCode::OK);
    assert!(tsa.body.contains("<td>清算</td>"), "{}", tsa.body);
    // A division PBOC's user does not see, or that is not one, is 404.
    let elsewhere = treasury
        .get(app, &format!("/o/{PBOC}/pboc/tsa?div=110000"))
        .await;
    assert_eq!(elsewhere.status, StatusCode::NOT_FOUND);
});

// ----- administration ------------------------------------------------------------------

fn admin(org: &str, post: &str) -> String {
    format!("{org}-{post}")
}

both!(administrators_are_three_people, |env| {
    let app = &env.app;
    let users = format!("/o/{FINANCE}/admin/users");
    // The system administrator creates a user; a weak password and a taken login are
    // field errors.
    let mut sys = sign_in(env, app, &admin(FINANCE, "sysadmin")).await;
    let form = sys.get(app, &format!("{users}/new")).await;
    assert_eq!(form.status, StatusCode::OK, "{}", form.body);
    let (csrf, id) = (form.csrf(&users), form.form_id(&users));
    let weak = sys
        .post(
            app,
            &users,
            &[
                ("csrf", &csrf),
                ("form_id", &id),
                ("login", "new-clerk"),
                ("display_name", "新经办员"),
                ("password", "short"),
            ],
        )
        .await;
    assert_eq!(weak.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(weak.body.contains("密码强度不足"), "{}", weak.body);
    let taken = sys
        .post(
            app,
            &users,
            &[
                ("csrf", &csrf),
                ("form_id", &id),
                ("login", &maker(FINANCE)),
                ("display_name", "重名"),
                ("password", "Guoku-New-2026"),
            ],
        )
        .await;
    assert_eq!(taken.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(taken.body.contains("该用户名已被使用"), "{}", taken.body);
    let created = sys
        .post(
            app,
            &users,
            &[
                ("csrf", &csrf),
                ("form_id", &id),
                ("login", "new-clerk"),
                ("display_name", "新经办员"),
                ("password", "Guoku-New-2026"),
            ],
        )
        .await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.body);
    let clerk = env
        .party(FINANCE)
        .store
        .access()
        .user_by_login("new-clerk")
        .await
        .unwrap()
        .expect("created");
    let page_of = format!("{users}/{}", clerk.id.0);
    assert_eq!(created.location(), page_of);

    // The security administrator grants a post and a division.
    let mut sec = sign_in(env, app, &admin(FINANCE, "secadmin")).await;
    let page = sec.get(app, &page_of).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let grant = format!("{page_of}/posts");
    let granted = sec
        .post(
            app,
            &grant,
            &[
                ("csrf", &page.csrf(&grant)),
                ("form_id", &page.form_id(&grant)),
                ("post", "checker"),
            ],
        )
        .await;
    assert_eq!(granted.status, StatusCode::SEE_OTHER, "{}", granted.body);
    let page = sec.get(app, &page_of).await;
    let grant_div = format!("{page_of}/divisions");
    let granted = sec
        .post(
            app,
            &grant_div,
            &[
                ("csrf", &page.csrf(&grant_div)),
                ("form_id", &page.form_id(&grant_div)),
                ("division", "430100"),
            ],
        )
        .await;
    assert_eq!(granted.status, StatusCode::SEE_OTHER, "{}", granted.body);
    let clerk = env.user_by_id(FINANCE, clerk.id).await;
    assert_eq!(clerk.posts, vec!["checker".to_owned()]);
    assert_eq!(clerk.divisions, vec!["430100".parse().unwrap()]);

    // 三权分立: an administrator post is held alone; the refusal is next to the field.
    let page = sec.get(app, &page_of).await;
    let clash = sec
        .post(
            app,
            &grant,
            &[
                ("csrf", &page.csrf(&grant)),
                ("form_id", &page.form_id(&grant)),
                ("post", "system_admin"),
            ],
        )
        .await;
    assert_eq!(clash.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(clash.body.contains("三权分立"), "{}", clash.body);
    assert_eq!(
        env.user_by_id(FINANCE, clerk.id).await.posts,
        vec!["checker".to_owned()]
    );

    // Nobody changes their own access.
    let me = env.user(&admin(FINANCE, "secadmin")).await;
    let own = format!("{users}/{}", me.id.0);
    let page = sec.get(app, &own).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        !page.has_form(&format!("{own}/posts")),
        "no grant form on one's own page"
    );
    let csrf_sec = page.csrf("/logout");
    let selfish = sec
        .post(
            app,
            &format!("{own}/posts"),
            &[
                ("csrf", &csrf_sec),
                ("form_id", &form_id()),
                ("post", "audit_admin"),
            ],
        )
        .await;
    assert_eq!(selfish.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        selfish.body.contains("不能更改本人的权限"),
        "{}",
        selfish.body
    );
    assert_eq!(env.user_by_id(FINANCE, me.id).await.posts, me.posts);
    let sys_me = env.user(&admin(FINANCE, "sysadmin")).await;
    let csrf_sys = csrf_of(&mut sys, env, FINANCE).await;
    let off_self = sys
        .post(
            app,
            &format!("{users}/{}/status", sys_me.id.0),
            &[
                ("csrf", &csrf_sys),
                ("form_id", &form_id()),
                ("status", "disabled"),
            ],
        )
        .await;
    assert_eq!(off_self.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        env.user_by_id(FINANCE, sys_me.id).await.status,
        UserStatus::Active
    );
    // The system administrator switches the new user off.
    let page = sys.get(app, &page_of).await;
    let status = format!("{page_of}/status");
    let off = sys
        .post(
            app,
            &status,
            &[
                ("csrf", &page.csrf(&status)),
                ("form_id", &page.form_id(&status)),
                ("status", "disabled"),
            ],
        )
        .await;
    assert_eq!(off.status, StatusCode::SEE_OTHER, "{}", off.body);
    assert_eq!(
        env.user_by_id(FINANCE, clerk.id).await.status,
        UserStatus::Disabled
    );

    // The auditor reads both acts, and every administrative POST is refused to them.
    let mut auditor = sign_in(env, app, &admin(FINANCE, "auditor")).await;
    let log = auditor.get(app, &format!("/o/{FINANCE}/admin/log")).await;
    assert_eq!(log.status, StatusCode::OK, "{}", log.body);
    for needle in [
        "create_user",
        "grant_post",
        "grant_division",
        "set_status",
        &admin(FINANCE, "sysadmin"),
        &admin(FINANCE, "secadmin"),
    ] {
        assert!(log.body.contains(needle), "{needle} in the log");
    }
    let read = auditor.get(app, &page_of).await;
    assert_eq!(read.status, StatusCode::OK);
    assert!(
        !read.body.contains("name=\"form_id\""),
        "the auditor gets no forms"
    );
    let csrf_aud = csrf_of(&mut auditor, env, FINANCE).await;
    let events_before = env
        .party(FINANCE)
        .store
        .access()
        .events(0, 1000)
        .await
        .unwrap()
        .len();
    for rest in [
        "",
        "/status",
        "/posts",
        "/posts/revoke",
        "/divisions",
        "/divisions/revoke",
        "/unlock",
    ] {
        let path = if rest.is_empty() {
            users.clone()
        } else {
            format!("{page_of}{rest}")
        };
        let answer = auditor
            .post(
                app,
                &path,
                &[
                    ("csrf", &csrf_aud),
                    ("form_id", &form_id()),
                    ("status", "active"),
                    ("post", "maker"),
                    ("division", "430000"),
                    ("login", "auditor-made"),
                    ("display_name", "审计"),
                    ("password", "Guoku-New-2026"),
                ],
            )
            .await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{path}");
    }
    let events_after = env
        .party(FINANCE)
        .store
        .access()
        .events(0, 1000)
        .await
        .unwrap()
        .len();
    assert_eq!(events_before, events_after, "the auditor changed nothing");
});

/// RFC 4648 base32 (upper case, no padding) decoded: the test reads the secret the page
/// shows as a person types it into an app. Written here because no base32 crate is among
/// the node's test dependencies, and ten lines do.
fn base32_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let (mut buffer, mut bits, mut out) = (0u32, 0u32, Vec::new());
    for c in text.bytes() {
        let value = ALPHABET
            .iter()
            .position(|&a| a == c)
            .expect("a base32 digit");
        buffer = (buffer << 5) | u32::try_from(value).unwrap();
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((buffer >> bits) & 0xff).unwrap());
        }
    }
    out
}

/// The text of the first `<code class="{class}">…</code>` of a page, entities decoded.
fn code_text(body: &str, class: &str) -> Option<String> {
    let open = format!("<code class=\"{class}\">");
    let start = body.find(&open)? + open.len();
    let end = start + body[start..].find("</code>")?;
    Some(
        body[start..end]
            .replace("&#x2f;", "/")
            .replace("&#61;", "=")
            .replace("&#x3d;", "=")
            .replace("&amp;", "&"),
    )
}

/// Posts the password form for `login` of `org` (a user the demo did not seed).
async fn password_at(b: &mut Browser, app: &Router, org: &str, login: &str, pw: &str) -> Answer {
    let form = b.get(app, "/login").await;
    assert_eq!(form.status, StatusCode::OK, "{}", form.body);
    let csrf = form.csrf("/login");
    b.post(
        app,
        "/login",
        &[
            ("csrf", &csrf),
            ("org", org),
            ("login", login),
            ("password", pw),
        ],
    )
    .await
}

both!(
    a_new_user_signs_in_with_the_authenticator_enrolled_for_them,
    |env| {
        let app = &env.app;
        let users = format!("/o/{FINANCE}/admin/users");
        let (login, password_text) = ("new-signer", "Guoku-Enrol-2026");
        // The system administrator creates the user with a password.
        let mut sys = sign_in(env, app, &admin(FINANCE, "sysadmin")).await;
        let form = sys.get(app, &format!("{users}/new")).await;
        let created = sys
            .post(
                app,
                &users,
                &[
                    ("csrf", &form.csrf(&users)),
                    ("form_id", &form.form_id(&users)),
                    ("login", login),
                    ("display_name", "新签章员"),
                    ("password", password_text),
                ],
            )
            .await;
        assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.body);
        let page_of = created.location().to_owned();
        let user = env
            .party(FINANCE)
            .store
            .access()
            .user_by_login(login)
            .await
            .unwrap()
            .expect("created");
        // Without an authenticator the right password leads nowhere.
        let mut newcomer = Browser::default();
        let refused = password_at(&mut newcomer, app, FINANCE, login, password_text).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
        assert!(
            refused.body.contains("尚未绑定动态口令"),
            "{}",
            refused.body
        );

        // The security administrator grants a post and a division, then enrols.
        let mut sec = sign_in(env, app, &admin(FINANCE, "secadmin")).await;
        for (rest, field, value) in [
            ("posts", "post", "maker"),
            ("divisions", "division", "430000"),
        ] {
            let page = sec.get(app, &page_of).await;
            let action = format!("{page_of}/{rest}");
            let granted = sec
                .post(
                    app,
                    &action,
                    &[
                        ("csrf", &page.csrf(&action)),
                        ("form_id", &page.form_id(&action)),
                        (field, value),
                    ],
                )
                .await;
            assert_eq!(granted.status, StatusCode::SEE_OTHER, "{}", granted.body);
        }
        let page = sec.get(app, &page_of).await;
        assert!(page.body.contains("未绑定"), "{}", page.body);
        let enrol = format!("{page_of}/totp");
        assert!(page.has_form(&enrol), "{}", page.body);
        let (csrf, id) = (page.csrf(&enrol), page.form_id(&enrol));
        let shown = sec
            .post(app, &enrol, &[("csrf", &csrf), ("form_id", &id)])
            .await;
        assert_eq!(shown.status, StatusCode::OK, "{}", shown.body);
        assert_eq!(shown.header("cache-control"), Some("no-store"));
        let secret = code_text(&shown.body, "totp-secret").expect("the secret is shown");
        let uri = code_text(&shown.body, "totp-uri").expect("the otpauth URI is shown");
        assert_eq!(secret.len(), 32, "160 bits in base32: {secret}");
        assert!(
            uri.starts_with("otpauth://totp/guoku:new-signer%4011430000006?secret=")
                && uri.contains(&format!("secret={secret}&")),
            "{uri}"
        );
        assert!(shown.body.contains("只显示这一次"), "{}", shown.body);
        // Never again: the same form (a double click or a reload) enrols nothing more and goes
        // to the user's page, which shows no secret.
        let again = sec
            .post(app, &enrol, &[("csrf", &csrf), ("form_id", &id)])
            .await;
        assert_eq!(again.status, StatusCode::SEE_OTHER);
        assert_eq!(again.location(), page_of);
        let after = sec.get(app, &page_of).await;
        assert_eq!(after.status, StatusCode::OK);
        assert!(
            !after.body.contains(&secret),
            "the user page shows no secret"
        );
        assert!(after.body.contains("已绑定"), "{}", after.body);
        let events = env
            .party(FINANCE)
            .store
            .access()
            .events(0, 1000)
            .await
            .unwrap();
        let enrolments: Vec<_> = events.iter().filter(|e| e.action == "enrol_totp").collect();
        assert_eq!(enrolments.len(), 1, "enrolled once");
        assert_eq!(enrolments[0].actor, admin(FINANCE, "secadmin"));
        assert_eq!(enrolments[0].subject, user.id.to_string());
        let factor = env
            .party(FINANCE)
            .store
            .sessions()
            .totp(user.id)
            .await
            .unwrap()
            .expect("stored");
        let bytes = base32_decode(&secret);
        assert!(
            !factor
                .sealed
                .windows(bytes.len())
                .any(|w| w == bytes.as_slice()),
            "stored sealed, not in the clear"
        );

        // The new user signs in with the password and a code from the shown secret.
        let secret = guoku_node::portal::TotpSecret::from_bytes(bytes.try_into().unwrap());
        let step = password_at(&mut newcomer, app, FINANCE, login, password_text).await;
        assert_eq!(step.status, StatusCode::SEE_OTHER, "{}", step.body);
        assert_eq!(step.location(), "/login/totp");
        let signed = code(&mut newcomer, app, &secret.code_at(env.now())).await;
        assert_eq!(signed.status, StatusCode::SEE_OTHER, "{}", signed.body);
        assert_eq!(signed.location(), format!("/o/{FINANCE}"));
        let home = newcomer.get(app, &format!("/o/{FINANCE}")).await;
        assert_eq!(home.status, StatusCode::OK, "{}", home.body);
        assert!(home.body.contains("新签章员"), "{}", home.body);

        // Nobody enrols themselves; the system administrator may not enrol anybody.
        let me = env.user(&admin(FINANCE, "secadmin")).await;
        let csrf_sec = csrf_of(&mut sec, env, FINANCE).await;
        let own = sec
            .post(
                app,
                &format!("{users}/{}/totp", me.id.0),
                &[("csrf", &csrf_sec), ("form_id", &form_id())],
            )
            .await;
        assert_eq!(own.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", own.body);
        assert!(own.body.contains("不能更改本人的权限"), "{}", own.body);
        let csrf_sys = csrf_of(&mut sys, env, FINANCE).await;
        let by_sys = sys
            .post(app, &enrol, &[("csrf", &csrf_sys), ("form_id", &form_id())])
            .await;
        assert_eq!(by_sys.status, StatusCode::FORBIDDEN);

        // Enrolling again ends the user's sessions: the old factor's session does not outlive it.
        let page = sec.get(app, &page_of).await;
        let second = sec
            .post(
                app,
                &enrol,
                &[
                    ("csrf", &page.csrf(&enrol)),
                    ("form_id", &page.form_id(&enrol)),
                ],
            )
            .await;
        assert_eq!(second.status, StatusCode::OK, "{}", second.body);
        let newer = code_text(&second.body, "totp-secret").unwrap();
        assert_ne!(newer, code_text(&shown.body, "totp-secret").unwrap());
        let ended = newcomer.get(app, &format!("/o/{FINANCE}")).await;
        assert_eq!(ended.status, StatusCode::SEE_OTHER);
        assert!(
            ended.location().starts_with("/login"),
            "{}",
            ended.location()
        );

        // The auditor sees both enrolments, by whom and of whom, and never a secret.
        let mut auditor = sign_in(env, app, &admin(FINANCE, "auditor")).await;
        let log = auditor.get(app, &format!("/o/{FINANCE}/admin/log")).await;
        assert_eq!(log.status, StatusCode::OK);
        assert_eq!(log.body.matches("enrol_totp").count(), 2, "{}", log.body);
        assert!(log.body.contains(&user.id.to_string()));
        for shown_secret in [&code_text(&shown.body, "totp-secret").unwrap(), &newer] {
            assert!(
                !log.body.contains(shown_secret.as_str()),
                "no secret in the log"
            );
        }
    }
);

both!(a_post_without_its_token_is_403_and_changes_nothing, |env| {
    env.demo.settle(30).await.unwrap();
    let app = &env.app;
    let key = issue_5201(env, "42.00").await;
    deliver_from_finance(env).await;
    let icbc = env.party(ICBC);
    let (_, now) = icbc.now();
    icbc.store
        .library()
        .read(100, "test-worker", now)
        .await
        .unwrap();
    let mut teller = sign_in(env, app, &checker(ICBC)).await;
    let action = format!("/o/{ICBC}/bank/v/{}/refuse", key_path(&key));
    for csrf in [None, Some("00".repeat(32))] {
        let mut fields = vec![("form_id", form_id()), ("reason", "伪造".to_owned())];
        if let Some(csrf) = csrf {
            fields.push(("csrf", csrf));
        }
        let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let answer = teller.post(app, &action, &fields).await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN);
    }
    let record = icbc
        .store
        .library()
        .status(&key, Leg::Original)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.exchange, Exchange::Received);
    assert_eq!(record.processing, Some(Processing::Read));

    let mut sys = sign_in(env, app, &admin(FINANCE, "sysadmin")).await;
    let answer = sys
        .post(
            app,
            &format!("/o/{FINANCE}/admin/users"),
            &[
                ("form_id", &form_id()),
                ("login", "forged-user"),
                ("display_name", "伪造"),
                ("password", "Guoku-New-2026"),
            ],
        )
        .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    let forged = env
        .party(FINANCE)
        .store
        .access()
        .user_by_login("forged-user")
        .await
        .unwrap();
    assert!(forged.is_none());
});

// ----- the authorization matrix --------------------------------------------------------

/// The posts of the matrix, by the login suffix of the demo's users.
const POSTS: [&str; 6] = [
    "maker", "checker", "signer", "sysadmin", "secadmin", "auditor",
];
/// Readers of vouchers and books: the business posts and the auditor.
const READERS: &[&str] = &["maker", "checker", "signer", "auditor"];
/// Who reads users: the three administrators.
const ADMINS: &[&str] = &["sysadmin", "secadmin", "auditor"];
/// Who works the approval queue: checkers and signers.
const CHECK_SIGN: &[&str] = &["checker", "signer"];

/// The login suffix of a stored post code (the matrix names posts as the demo's logins).
fn post_name(code: &str) -> &str {
    match code {
        "system_admin" => "sysadmin",
        "security_admin" => "secadmin",
        "audit_admin" => "auditor",
        other => other,
    }
}

/// One route of the desks: its method, its path under `/o/{org}` with its record in
/// braces (`{v}`: a voucher of the organisation's library; `{id}`: one of its users;
/// `{d}`: a draft — finance's approvals, the counter's payments; `{a}`: a unit's
/// application, a draft at finance; `{job}`: a batch-signing job), the role whose desk it
/// is (`None`: every organisation's) and the posts allowed.
struct Route {
    method: &'static str,
    path: &'static str,
    role: Option<OrgRole>,
    posts: &'static [&'static str],
}

const fn route(
    method: &'static str,
    path: &'static str,
    role: Option<OrgRole>,
    posts: &'static [&'static str],
) -> Route {
    Route {
        method,
        path,
        role,
        posts,
    }
}

const BANK: Option<OrgRole> = Some(OrgRole::AgentBank);
const TREASURY: Option<OrgRole> = Some(OrgRole::Pboc);
const FINANCE_DESK: Option<OrgRole> = Some(OrgRole::Finance);
const UNIT_DESK: Option<OrgRole> = Some(OrgRole::BudgetUnit);

/// Every route of the desks.
const ROUTES: &[Route] = &[
    route("GET", "/bank", BANK, READERS),
    route("GET", "/bank/exceptions", BANK, READERS),
    route("GET", "/bank/payments", BANK, READERS),
    route("GET", "/bank/clearing", BANK, READERS),
    route("POST", "/bank/clearing/request", BANK, &["checker"]),
    route("GET", "/bank/receipts", BANK, READERS),
    route("GET", "/bank/reconcile", BANK, READERS),
    route("GET", "/bank/v/{v}", BANK, READERS),
    route("POST", "/bank/v/{v}/return", BANK, &["checker"]),
    route("POST", "/bank/v/{v}/refuse", BANK, &["checker"]),
    route("POST", "/bank/v/{v}/complete", BANK, &["checker"]),
    route("GET", "/pboc", TREASURY, READERS),
    route("GET", "/pboc/quotas", TREASURY, READERS),
    route("GET", "/pboc/tsa", TREASURY, READERS),
    route("GET", "/pboc/reconcile", TREASURY, READERS),
    route("GET", "/pboc/v/{v}", TREASURY, READERS),
    route("GET", "/finance/approvals", FINANCE_DESK, CHECK_SIGN),
    route("GET", "/finance/approvals/{d}", FINANCE_DESK, READERS),
    route(
        "POST",
        "/finance/approvals/{d}/check",
        FINANCE_DESK,
        &["checker"],
    ),
    route(
        "POST",
        "/finance/approvals/{d}/reject",
        FINANCE_DESK,
        CHECK_SIGN,
    ),
    route(
        "POST",
        "/finance/approvals/{d}/sign",
        FINANCE_DESK,
        &["signer"],
    ),
    route("GET", "/finance/batch-sign", FINANCE_DESK, &["signer"]),
    route("POST", "/finance/batch-sign", FINANCE_DESK, &["signer"]),
    route(
        "GET",
        "/finance/batch-sign/jobs/{job}",
        FINANCE_DESK,
        &["signer"],
    ),
    route(
        "GET",
        "/finance/batch-sign/jobs/{job}/progress",
        FINANCE_DESK,
        &["signer"],
    ),
    route("GET", "/finance/quotas", FINANCE_DESK, READERS),
    route("GET", "/finance/returns", FINANCE_DESK, READERS),
    route("GET", "/finance/reconcile", FINANCE_DESK, READERS),
    route("GET", "/finance/execution", FINANCE_DESK, READERS),
    route("GET", "/finance/indicators", FINANCE_DESK, READERS),
    route("GET", "/unit/pay", UNIT_DESK, &["maker"]),
    route("POST", "/unit/pay", UNIT_DESK, &["maker"]),
    route("GET", "/unit/apply", UNIT_DESK, &["maker"]),
    route("POST", "/unit/apply", UNIT_DESK, &["maker"]),
    route("GET", "/unit/import", UNIT_DESK, &["maker"]),
    route("POST", "/unit/import", UNIT_DESK, &["maker"]),
    route("GET", "/unit/vouchers", UNIT_DESK, READERS),
    route("GET", "/unit/v/{d}", UNIT_DESK, READERS),
    route("POST", "/unit/v/{d}/check", UNIT_DESK, &["checker"]),
    route("POST", "/unit/v/{d}/sign", UNIT_DESK, &["signer"]),
    route("POST", "/unit/v/{d}/reject", UNIT_DESK, CHECK_SIGN),
    route("GET", "/unit/v/{d}/receipt.pdf", UNIT_DESK, READERS),
    route("GET", "/unit/v/{d}/notice.pdf", UNIT_DESK, READERS),
    route("GET", "/unit/a/{a}", UNIT_DESK, READERS),
    route("GET", "/unit/a/{a}/receipt.pdf", UNIT_DESK, READERS),
    route("GET", "/unit/a/{a}/notice.pdf", UNIT_DESK, READERS),
    route("GET", "/admin", None, ADMINS),
    route("GET", "/admin/users/new", None, &["sysadmin"]),
    route("POST", "/admin/users", None, &["sysadmin"]),
    route("GET", "/admin/users/{id}", None, ADMINS),
    route("POST", "/admin/users/{id}/status", None, &["sysadmin"]),
    route("POST", "/admin/users/{id}/posts", None, &["secadmin"]),
    route(
        "POST",
        "/admin/users/{id}/posts/revoke",
        None,
        &["secadmin"],
    ),
    route("POST", "/admin/users/{id}/divisions", None, &["secadmin"]),
    route(
        "POST",
        "/admin/users/{id}/divisions/revoke",
        None,
        &["secadmin"],
    ),
    route("POST", "/admin/users/{id}/unlock", None, &["secadmin"]),
    route("POST", "/admin/users/{id}/totp", None, &["secadmin"]),
    route("GET", "/admin/log", None, &["auditor"]),
    route("GET", "/admin/vouchers", None, READERS),
    route("GET", "/admin/vouchers/v/{v}", None, READERS),
    route("GET", "/audit", None, &["auditor"]),
    route("GET", "/audit/export.csv", None, &["auditor"]),
    route("GET", "/audit/heads", None, &["auditor"]),
    route("GET", "/audit/peers", None, &["auditor"]),
    route("GET", "/audit/alarms", None, &["auditor"]),
];

/// The desks' areas (the first segment after `/o/{org}`).
const AREAS: [&str; 6] = ["bank", "pboc", "finance", "unit", "admin", "audit"];

/// A desk path (after `/o/{org}`, no query) as a route of the table: a voucher's key (four
/// segments after `v`, `a` or `approvals`) replaced by its record (`{d}` for finance's
/// approvals and the counter's payments, `{a}` for a unit's applications, else `{v}`), a
/// user's number by `{id}`, a job's by `{job}`. Works on the router's own paths too
/// (`{adm}/{year}/{vt}/{no}`, `{id}`), so both can be compared.
fn canonical(rest: &str) -> Option<String> {
    let parts: Vec<&str> = rest.split('/').collect();
    let area = *parts.get(1)?;
    if !AREAS.contains(&area) {
        return None;
    }
    let mut out: Vec<&str> = Vec::new();
    let mut i = 0;
    while i < parts.len() {
        let part = parts[i];
        let keyed = matches!(part, "v" | "a" | "approvals") && parts.len() >= i + 5;
        if keyed {
            out.push(part);
            out.push(match (area, part) {
                ("unit", "a") => "{a}",
                ("unit", "v") | ("finance", "approvals") => "{d}",
                _ => "{v}",
            });
            i += 5;
            continue;
        }
        let number = part.bytes().all(|b| b.is_ascii_digit()) || part.starts_with('{');
        match out.last() {
            Some(&"users") if !part.is_empty() && number && part != "{step}" => out.push("{id}"),
            Some(&"jobs") if !part.is_empty() => out.push("{job}"),
            _ => out.push(part),
        }
        i += 1;
    }
    Some(out.join("/"))
}

/// A desk link or form target on a page, as a route of the table.
fn as_route(org: &str, target: &str) -> Option<String> {
    let rest = target.strip_prefix(&format!("/o/{org}"))?;
    canonical(rest.split('?').next().unwrap_or(rest))
}

/// Every `href="…"` and `action="…"` of a page.
fn targets(body: &str) -> Vec<String> {
    let mut found = Vec::new();
    for attribute in ["href=\"", "action=\""] {
        let mut rest = body;
        while let Some(at) = rest.find(attribute) {
            rest = &rest[at + attribute.len()..];
            if let Some(end) = rest.find('"') {
                found.push(rest[..end].replace("&#x2f;", "/").replace("&amp;", "&"));
                rest = &rest[end..];
            }
        }
    }
    found
}

/// The desks' modules, whose `routes()` the table must cover.
const DESK_SOURCES: [(&str, &str); 6] = [
    ("bank", include_str!("../src/portal/bank.rs")),
    ("pboc", include_str!("../src/portal/pboc.rs")),
    ("finance", include_str!("../src/portal/finance.rs")),
    ("unit", include_str!("../src/portal/unit.rs")),
    ("admin", include_str!("../src/portal/admin.rs")),
    ("audit", include_str!("../src/portal/audit_desk.rs")),
];

/// The routes a module registers, as (method, canonical path), read from its `routes()`
/// source: each `.route(` call's path (a literal, or a `format!` with the `KEY` constant)
/// and the methods of its handlers. A route with a `{step}` segment stands for its steps.
fn registered(source: &str) -> Vec<(String, String)> {
    let start = source.find("fn routes<").expect("a routes() function");
    let body = &source[start..];
    let body = &body[..body.find("\n}\n").unwrap_or(body.len())];
    let key = body
        .find("const KEY: &str = \"")
        .map(|at| {
            let rest = &body[at + 19..];
            rest[..rest.find('"').unwrap()].to_owned()
        })
        .unwrap_or_default();
    let mut out = Vec::new();
    for call in body.split(".route(").skip(1) {
        let open = call.find('"').expect("a route's path");
        let close = open + 1 + call[open + 1..].find('"').unwrap();
        let path = call[open + 1..close]
            .replace("{{", "{")
            .replace("}}", "}")
            .replace("{KEY}", &key);
        let rest = path.strip_prefix("/o/{org}").expect("a desk path");
        let path = canonical(rest).unwrap_or_else(|| panic!("{rest} is no desk's"));
        let handlers = &call[close..];
        let mut methods = Vec::new();
        if handlers.contains("get(") {
            methods.push("GET");
        }
        if handlers.contains("post(") {
            methods.push("POST");
        }
        assert!(!methods.is_empty(), "{path}: no method read");
        for method in methods {
            if path.ends_with("/{step}") {
                for step in ["check", "sign", "reject"] {
                    out.push((method.to_owned(), path.replace("{step}", step)));
                }
            } else {
                out.push((method.to_owned(), path.clone()));
            }
        }
    }
    out
}

#[test]
fn every_registered_desk_route_has_a_row() {
    let table: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|r| (r.method.to_owned(), r.path.to_owned()))
        .collect();
    let mut all = BTreeSet::new();
    for (area, source) in DESK_SOURCES {
        let routes = registered(source);
        assert!(routes.len() >= 5, "{area}: {routes:?}");
        all.extend(routes);
    }
    let missing: Vec<_> = all.difference(&table).collect();
    assert!(missing.is_empty(), "routes without a row: {missing:?}");
    let stale: Vec<_> = table.difference(&all).collect();
    assert!(stale.is_empty(), "rows of no route: {stale:?}");
}

/// A voucher the organisation's library holds, to fill `{v}` with.
async fn voucher_of(env: &Env, org: &str) -> VoucherKey {
    let party = env.party(org);
    let library = party.store.library();
    for vt in ["5201", "2301", "8202", "5105"] {
        for state in Exchange::ALL {
            for leg in [Leg::Original, Leg::Receipt] {
                if let Ok(page) = library.by_status(vt, leg, state, 0, 1).await
                    && let Some(record) = page.items.into_iter().next()
                {
                    return record.key;
                }
            }
        }
    }
    panic!("no voucher in {org}'s library");
}

/// A record a route's path names: its path text, and who sees it (its division, the budget
/// unit it is of, the one user it belongs to).
#[derive(Clone)]
struct Record {
    path: String,
    division: String,
    unit: Option<String>,
    owner: Option<String>,
}

impl Record {
    fn of_key(key: &VoucherKey, unit: Option<&str>) -> Record {
        Record {
            path: key_path(key),
            division: key.adm_div_code.clone(),
            unit: unit.map(str::to_owned),
            owner: None,
        }
    }

    /// Whether `user` (signed in as `login`) sees the record: one of their divisions holds
    /// it (GB/T 2260: a province's code covers its cities', a city's its counties'), a
    /// unit's user only their units' records, a job only its starter.
    fn seen_by(&self, login: &str, user: &guoku_store::access::UserRecord) -> bool {
        let covers = |d: &guoku_domain::AdmDivCode| {
            let mut prefix = d.to_string();
            while prefix.ends_with("00") {
                prefix.truncate(prefix.len() - 2);
            }
            self.division.starts_with(&prefix)
        };
        let division = self.division.is_empty() || user.divisions.iter().any(covers);
        let unit =
            user.units.is_empty() || self.unit.as_ref().is_some_and(|u| user.units.contains(u));
        division && unit && self.owner.as_deref().is_none_or(|o| o == login)
    }
}

/// The counter's unit whose people pay in the matrix, and another unit's.
const OWN_UNIT: &str = "A43000001";

/// The fields of a good payment of `unit`.
fn payment(unit: &str) -> [(&'static str, String); 6] {
    [
        ("unit", unit.to_owned()),
        ("payee_name", "长沙市办公用品有限公司".to_owned()),
        ("payee_account", "6222-0001-0002".to_owned()),
        ("payee_bank", "中国工商银行长沙分行".to_owned()),
        ("amount", "88.00".to_owned()),
        ("summary", "办公用品".to_owned()),
    ]
}

/// Posts the form at `form_path` (read from the page first) with `fields`: the answer.
async fn submit(
    b: &mut Browser,
    app: &Router,
    page_path: &str,
    action: &str,
    fields: &[(&str, String)],
) -> Answer {
    let page = b.get(app, page_path).await;
    assert_eq!(page.status, StatusCode::OK, "{page_path}: {}", page.body);
    let (csrf, id) = (page.csrf(action), page.form_id(action));
    let mut all: Vec<(&str, &str)> = vec![("csrf", &csrf), ("form_id", &id)];
    all.extend(fields.iter().map(|(k, v)| (*k, v.as_str())));
    b.post(app, action, &all).await
}

/// A form posted as `multipart/form-data` from this site (the import's upload).
async fn post_multipart(
    b: &mut Browser,
    app: &Router,
    path: &str,
    fields: &[(&str, &str)],
) -> Answer {
    use axum::body::Body;
    use axum::http::{Method, Request, header};
    const BOUNDARY: &str = "guoku-matrix-boundary";
    let mut body = String::new();
    for (name, value) in fields {
        body.push_str(&format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
        ));
    }
    body.push_str(&format!("--{BOUNDARY}--\r\n"));
    let request = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(
            header::CONTENT_TYPE,
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .header("origin", format!("http://{HOST}"))
        .header("sec-fetch-site", "same-origin");
    b.send(app, request, Body::from(body)).await
}

/// The records of the matrix: vouchers everywhere, a unit's payment at the counter and its
/// application at finance (both paid, with receipts), and a batch-signing job of finance's
/// signer. Returns the records by organisation and placeholder.
async fn matrix_records(env: &Env) -> Vec<(&'static str, &'static str, Record)> {
    let app = &env.app;
    // A direct and an authorized payment (of another unit than OWN_UNIT), paid, receipted
    // and cleared.
    env.demo.settle(30).await.unwrap();
    issue_5201(env, "10.00").await;
    let unit = env.demo.province.units[1].clone();
    assert_ne!(unit.code, OWN_UNIT);
    let (t, _) = env.demo.counter.now();
    let (voucher, bank) = env
        .demo
        .authorized_voucher(
            &unit.code,
            "20.00".parse().unwrap(),
            &Payee::demo(2),
            business_date(t),
        )
        .unwrap();
    let other_unit_voucher = voucher.key();
    env.demo
        .counter
        .issue_authorized(voucher, bank, "maker")
        .await
        .unwrap();

    // OWN_UNIT's people pay (8202) and apply (5201, drafted at finance): checked and
    // signed through the desks.
    let unit_user = |post: &str| format!("{OWN_UNIT}-{post}");
    let mut payer = sign_in(env, app, &unit_user("maker")).await;
    let pay = format!("/o/{COUNTER}/unit/pay");
    let paid = submit(&mut payer, app, &pay, &pay, &payment(OWN_UNIT)).await;
    assert_eq!(paid.status, StatusCode::SEE_OTHER, "{}", paid.body);
    let own = paid.location().to_owned();
    let apply = format!("/o/{COUNTER}/unit/apply");
    let applied = submit(&mut payer, app, &apply, &apply, &payment(OWN_UNIT)).await;
    assert_eq!(applied.status, StatusCode::SEE_OTHER, "{}", applied.body);
    let application = applied.location().to_owned();
    let own_key = own
        .strip_prefix(&format!("/o/{COUNTER}/unit/v/"))
        .unwrap()
        .to_owned();
    let application_key = application
        .strip_prefix(&format!("/o/{COUNTER}/unit/a/"))
        .unwrap()
        .to_owned();
    let mut checker_b = sign_in(env, app, &unit_user("checker")).await;
    let done = submit(&mut checker_b, app, &own, &format!("{own}/check"), &[]).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    let mut signer_b = sign_in(env, app, &unit_user("signer")).await;
    let pin = [("pin", guoku_node::demo::DEMO_PIN.to_owned())];
    let done = submit(&mut signer_b, app, &own, &format!("{own}/sign"), &pin).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    let draft = format!("/o/{FINANCE}/finance/approvals/{application_key}");
    let mut checker_f = sign_in(env, app, &checker(FINANCE)).await;
    let done = submit(&mut checker_f, app, &draft, &format!("{draft}/check"), &[]).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    let mut signer_f = sign_in(env, app, &signer(FINANCE)).await;
    let done = submit(&mut signer_f, app, &draft, &format!("{draft}/sign"), &pin).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    // Finance's signer starts a batch (of a draft that is not there: the job runs and
    // fails it, and stays to be seen).
    let batch = format!("/o/{FINANCE}/finance/batch-sign");
    let fields = [
        ("pin", guoku_node::demo::DEMO_PIN.to_owned()),
        ("key", "430000/2026/5201/NOSUCHDRAFT".to_owned()),
    ];
    let started = submit(&mut signer_f, app, &batch, &batch, &fields).await;
    assert_eq!(started.status, StatusCode::SEE_OTHER, "{}", started.body);
    let job = started
        .location()
        .strip_prefix(&format!("{batch}/jobs/"))
        .expect("a job's page")
        .to_owned();
    env.demo.settle(30).await.unwrap();
    env.advance(11);
    env.demo.settle(30).await.unwrap();
    // Both payments came back receipted.
    let receipt = payer.get(app, &format!("{own}/receipt.pdf")).await;
    assert_eq!(receipt.status, StatusCode::OK, "{}", receipt.body);
    let receipt = payer.get(app, &format!("{application}/receipt.pdf")).await;
    assert_eq!(receipt.status, StatusCode::OK, "{}", receipt.body);
    // A second application stays in finance's queue, for its pages to link to.
    let waiting = submit(&mut payer, app, &apply, &apply, &payment(OWN_UNIT)).await;
    assert_eq!(waiting.status, StatusCode::SEE_OTHER, "{}", waiting.body);
    // The next time step: everybody signs in again with a code not used yet.
    env.advance(30);

    let key_record = |path: &str, unit: Option<&str>| {
        let division = path.split('/').next().unwrap().to_owned();
        Record {
            path: path.to_owned(),
            division,
            unit: unit.map(str::to_owned),
            owner: None,
        }
    };
    let mut records = Vec::new();
    for org in [FINANCE, PBOC, ICBC, COUNTER] {
        let v = if org == COUNTER {
            Record::of_key(&other_unit_voucher, Some(&unit.code))
        } else {
            Record::of_key(&voucher_of(env, org).await, None)
        };
        records.push((org, "{v}", v));
        // The user records are the organisation's maker (division 430000).
        let id = env.user(&maker(org)).await.id.0.to_string();
        records.push((
            org,
            "{id}",
            Record {
                path: id,
                division: String::new(),
                unit: None,
                owner: None,
            },
        ));
    }
    records.push((FINANCE, "{d}", key_record(&application_key, Some(OWN_UNIT))));
    records.push((
        FINANCE,
        "{job}",
        Record {
            path: job,
            division: String::new(),
            unit: None,
            owner: Some(signer(FINANCE)),
        },
    ));
    records.push((COUNTER, "{d}", key_record(&own_key, Some(OWN_UNIT))));
    records.push((COUNTER, "{a}", key_record(&application_key, Some(OWN_UNIT))));
    records
}

both!(the_authorization_matrix_holds, |env| {
    let records = matrix_records(env).await;
    let app = &env.app;
    let orgs = [
        (FINANCE, OrgRole::Finance),
        (PBOC, OrgRole::Pboc),
        (ICBC, OrgRole::AgentBank),
        (COUNTER, OrgRole::BudgetUnit),
    ];
    // Every organisation's people and administrators; finance's county trio (430102); the
    // counter's unit people, who act for their own unit only.
    let logins_of = |org: &str| {
        let mut logins: Vec<String> = POSTS.iter().map(|p| format!("{org}-{p}")).collect();
        let trio = ["maker", "checker", "signer"];
        if org == FINANCE {
            logins.extend(trio.iter().map(|p| format!("{org}-{p}-430102")));
        }
        if org == COUNTER {
            for unit in guoku_node::demo::COUNTER_UNITS {
                logins.extend(trio.iter().map(|p| format!("{unit}-{p}")));
            }
        }
        logins
    };
    // A record no organisation of another role has: its desk answers 404 before looking.
    let nowhere = Record {
        path: "430000/2026/5201/NONE".to_owned(),
        division: String::new(),
        unit: None,
        owner: None,
    };
    let known: BTreeSet<String> = ROUTES.iter().map(|r| r.path.to_owned()).collect();
    let mut seen_targets = BTreeSet::new();
    let mut failures = Vec::new();
    for (org, role) in orgs {
        let record = |placeholder: &str| {
            records
                .iter()
                .find(|(o, p, _)| *o == org && *p == placeholder)
                .map_or(&nowhere, |(_, _, r)| r)
        };
        for login in logins_of(org) {
            let user = env.user(&login).await;
            let posts: Vec<&str> = user.posts.iter().map(|p| post_name(p)).collect();
            let mut b = sign_in(env, app, &login).await;
            let csrf = csrf_of(&mut b, env, org).await;
            for r in ROUTES {
                let mut path = format!("/o/{org}{}", r.path);
                let mut seen = true;
                for placeholder in ["{v}", "{id}", "{d}", "{a}", "{job}"] {
                    if path.contains(placeholder) {
                        let rec = record(placeholder);
                        path = path.replace(placeholder, &rec.path);
                        seen &= rec.seen_by(&login, &user);
                    }
                }
                let fields = [("csrf", csrf.as_str()), ("form_id", &form_id())];
                let answer = match r.method {
                    "GET" => b.get(app, &path).await,
                    _ if r.path == "/unit/import" => {
                        post_multipart(&mut b, app, &path, &fields).await
                    }
                    // Only the token and a form id: an allowed POST is refused for its
                    // blank fields (422), refused by the record's state (409), or acts
                    // harmlessly (303; 200 for an authenticator shown once).
                    _ => b.post(app, &path, &fields).await,
                };
                let desk_ok = r.role.is_none_or(|desk| desk == role);
                let post_ok = r.posts.iter().any(|p| posts.contains(p));
                let expected = if !desk_ok {
                    "404"
                } else if !post_ok {
                    "403"
                } else if !seen {
                    "404"
                } else {
                    "allowed"
                };
                let ok = match expected {
                    "404" => answer.status == StatusCode::NOT_FOUND,
                    "403" => answer.status == StatusCode::FORBIDDEN,
                    _ if r.method == "GET" => answer.status == StatusCode::OK,
                    _ => matches!(
                        answer.status,
                        StatusCode::OK
                            | StatusCode::SEE_OTHER
                            | StatusCode::CONFLICT
                            | StatusCode::UNPROCESSABLE_ENTITY
                    ),
                };
                if !ok {
                    failures.push(format!(
                        "{login} {} {path}: {} (expected {expected})",
                        r.method, answer.status
                    ));
                }
                if answer.status == StatusCode::OK {
                    for target in targets(&answer.body) {
                        if let Some(route) = as_route(org, &target) {
                            seen_targets.insert(route);
                        }
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Every desk link and form the pages showed is a route of the table.
    let unknown: Vec<_> = seen_targets.difference(&known).collect();
    assert!(
        unknown.is_empty(),
        "routes missing from the table: {unknown:?}"
    );
    // And the pages showed most of the table (the table is not stale).
    for path in [
        "/bank/clearing/request",
        "/bank/v/{v}",
        "/pboc/v/{v}",
        "/admin/users/{id}/unlock",
        "/admin/users/{id}/totp",
        "/admin/vouchers/v/{v}",
        "/audit/export.csv",
        "/audit/alarms",
        "/finance/approvals/{d}",
        "/unit/v/{d}",
        "/unit/v/{d}/receipt.pdf",
        "/unit/a/{a}",
    ] {
        assert!(
            seen_targets.contains(path),
            "{path} was linked from no page"
        );
    }
});

impl Env {
    /// The stored user `id` of `org`.
    async fn user_by_id(
        &self,
        org: &str,
        id: guoku_store::access::UserId,
    ) -> guoku_store::access::UserRecord {
        self.party(org)
            .store
            .access()
            .user(id)
            .await
            .unwrap()
            .unwrap()
    }
}
