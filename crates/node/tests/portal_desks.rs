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
//! - the authorization matrix: every route of the three desks, GET and POST, for every
//!   role and post, answers what the table says; every link and form the pages show is a
//!   route of the table.

mod common;
#[path = "common/web.rs"]
mod web;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};

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
        let value = ALPHABET.iter().position(|&a| a == c).expect("a base32 digit");
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

both!(a_new_user_signs_in_with_the_authenticator_enrolled_for_them, |env| {
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
    let refused = password(env, &mut newcomer, app, login, password_text).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    assert!(refused.body.contains("尚未绑定动态口令"), "{}", refused.body);

    // The security administrator grants a post and a division, then enrols.
    let mut sec = sign_in(env, app, &admin(FINANCE, "secadmin")).await;
    for (rest, field, value) in [("posts", "post", "maker"), ("divisions", "division", "430000")] {
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
    assert!(!after.body.contains(&secret), "the user page shows no secret");
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
        !factor.sealed.windows(bytes.len()).any(|w| w == bytes.as_slice()),
        "stored sealed, not in the clear"
    );

    // The new user signs in with the password and a code from the shown secret.
    let secret = guoku_node::portal::TotpSecret::from_bytes(bytes.try_into().unwrap());
    let step = password(env, &mut newcomer, app, login, password_text).await;
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
    assert!(ended.location().starts_with("/login"), "{}", ended.location());

    // The auditor sees both enrolments, by whom and of whom, and never a secret.
    let mut auditor = sign_in(env, app, &admin(FINANCE, "auditor")).await;
    let log = auditor.get(app, &format!("/o/{FINANCE}/admin/log")).await;
    assert_eq!(log.status, StatusCode::OK);
    assert_eq!(log.body.matches("enrol_totp").count(), 2, "{}", log.body);
    assert!(log.body.contains(&user.id.to_string()));
    for shown_secret in [&code_text(&shown.body, "totp-secret").unwrap(), &newer] {
        assert!(!log.body.contains(shown_secret.as_str()), "no secret in the log");
    }
});

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

/// One route of the desks: its method, its path under `/o/{org}` (`{v}`: a voucher of the
/// organisation's library; `{id}`: one of its users), the role whose desk it is (`None`:
/// every organisation's) and the posts allowed.
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

/// Every route of the bank's, PBOC's and the administration desks.
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
    route("GET", "/pboc", TREASURY, READERS),
    route("GET", "/pboc/quotas", TREASURY, READERS),
    route("GET", "/pboc/tsa", TREASURY, READERS),
    route("GET", "/pboc/reconcile", TREASURY, READERS),
    route("GET", "/pboc/v/{v}", TREASURY, READERS),
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
    route("GET", "/admin/log", None, &["auditor"]),
    route("GET", "/admin/vouchers", None, READERS),
    route("GET", "/admin/vouchers/v/{v}", None, READERS),
];

/// A desk link or form target on a page, as a route of the table: `/o/{org}` and the query
/// taken off, a voucher's key and a user's number replaced by `{v}` and `{id}`.
fn as_route(org: &str, target: &str) -> Option<String> {
    let rest = target.strip_prefix(&format!("/o/{org}"))?;
    let rest = rest.split('?').next().unwrap_or(rest);
    let parts: Vec<&str> = rest.split('/').collect();
    if !matches!(parts.get(1), Some(&("bank" | "pboc" | "admin"))) {
        return None;
    }
    let mut out = Vec::new();
    let mut i = 0;
    while i < parts.len() {
        let part = parts[i];
        if part == "v" && parts.len() >= i + 5 {
            out.push("v");
            out.push("{v}");
            i += 5;
            continue;
        }
        if !part.is_empty()
            && part.bytes().all(|b| b.is_ascii_digit())
            && out.last() == Some(&"users")
        {
            out.push("{id}");
        } else {
            out.push(part);
        }
        i += 1;
    }
    Some(out.join("/"))
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

both!(the_authorization_matrix_holds, |env| {
    // Vouchers everywhere: a direct and an authorized payment, paid, receipted and cleared.
    env.demo.settle(30).await.unwrap();
    issue_5201(env, "10.00").await;
    let unit = env.demo.province.units[1].clone();
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
    env.demo
        .counter
        .issue_authorized(voucher, bank, "maker")
        .await
        .unwrap();
    env.demo.settle(30).await.unwrap();
    env.advance(11);
    env.demo.settle(30).await.unwrap();

    let app = &env.app;
    let orgs = [
        (FINANCE, OrgRole::Finance),
        (PBOC, OrgRole::Pboc),
        (ICBC, OrgRole::AgentBank),
        (COUNTER, OrgRole::BudgetUnit),
    ];
    let known: BTreeSet<String> = ROUTES.iter().map(|r| r.path.to_owned()).collect();
    let mut seen_targets = BTreeSet::new();
    let mut failures = Vec::new();
    for (org, role) in orgs {
        let v = key_path(&voucher_of(env, org).await);
        let id = env.user(&maker(org)).await.id.0.to_string();
        for post in POSTS {
            let login = format!("{org}-{post}");
            let mut b = sign_in(env, app, &login).await;
            let csrf = csrf_of(&mut b, env, org).await;
            for r in ROUTES {
                let path = format!("/o/{org}{}", r.path.replace("{v}", &v).replace("{id}", &id));
                let answer = if r.method == "GET" {
                    b.get(app, &path).await
                } else {
                    // Only the token and a form id: an allowed POST is refused for its
                    // blank fields (422) or acts harmlessly (303), changing no access.
                    b.post(app, &path, &[("csrf", &csrf), ("form_id", &form_id())])
                        .await
                };
                let desk_ok = r.role.is_none_or(|desk| desk == role);
                let allowed = desk_ok && r.posts.contains(&post);
                let ok = if allowed {
                    matches!(
                        answer.status,
                        StatusCode::OK | StatusCode::SEE_OTHER | StatusCode::UNPROCESSABLE_ENTITY
                    ) && (r.method == "POST" || answer.status == StatusCode::OK)
                } else if !desk_ok {
                    answer.status == StatusCode::NOT_FOUND
                } else {
                    answer.status == StatusCode::FORBIDDEN
                };
                if !ok {
                    failures.push(format!(
                        "{login} {} {path}: {} (allowed: {allowed})",
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
        "/admin/vouchers/v/{v}",
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
