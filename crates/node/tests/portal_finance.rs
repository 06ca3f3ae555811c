//! Finance's desk in the portal (issue 6 part 3), on the demo province, driven with
//! `tower::ServiceExt::oneshot` and a cookie jar ([`web`]):
//!
//! - the approval journey: a maker's direct payment is checked in the portal by a checker
//!   and signed by a signer, and is then in the library as sent; whoever made a draft cannot
//!   check it (the refusal is a message on the page); a county checker sees only the
//!   county's drafts, and another division's draft is 404;
//! - batch signing: 200 checked drafts signed with one PIN (a wrong PIN first is a field
//!   error and signs nothing), the progress polled until done, all issued; the same form
//!   submitted twice starts one job;
//! - a POST without the CSRF token is 403 and changes nothing; a bank's user opening
//!   finance's pages is refused;
//! - the quota notices, reconciliation and budget execution pages show what the books and
//!   the library hold, of the user's divisions only.

mod common;
#[path = "common/web.rs"]
mod web;

use guoku_domain::Amount;
use guoku_node::demo::{DEMO_PIN, Payee};
use guoku_node::party::business_date;
use guoku_store::drafts::{DraftState, NewDraft};
use guoku_store::library::{Direction, content_hash};
use guoku_voucher::lifecycle::Leg;
use guoku_voucher::{Encoding, Layout, VoucherKey, write_voucher};
use web::*;

/// A unit of the province (430000) and one of the county (430102).
const PROVINCE_UNIT: &str = "A43000001";
const COUNTY_UNIT: &str = "A43010201";
const COUNTY: &str = "430102";

fn county_checker() -> String {
    format!("{FINANCE}-checker-{COUNTY}")
}

/// A direct payment of `fen` for `unit` made by `login` (the make step and the draft, as
/// the API's make does): its key.
async fn make_draft(env: &Env, login: &str, unit: &str, fen: i64) -> VoucherKey {
    let finance = &env.demo.finance;
    let user = env.user(login).await;
    let (t, now) = finance.now();
    let date = business_date(t);
    let voucher = env
        .demo
        .direct_voucher(unit, Amount::from_fen(fen).unwrap(), &Payee::demo(1), date)
        .unwrap();
    let key = voucher.key();
    finance
        .store
        .access()
        .record_step::<(), _>(&key, "make", user.id, now, |_| Ok(()))
        .await
        .unwrap()
        .unwrap();
    let new = NewDraft {
        key: key.clone(),
        receiver: env.demo.province.direct_bank().code.to_owned(),
        plan_month: Some(u8::from(t.month())),
        amount_fen: Some(fen),
        maker: user.id,
        body: write_voucher(&voucher, Encoding::Utf8, Layout::Compact),
        content_sha256: content_hash(&voucher),
        agency_code: Some(unit.to_owned()),
    };
    finance.store.drafts().make(new, login, now).await.unwrap();
    key
}

/// `key`'s check step by `login`, straight in the store (for batches).
async fn check_in_store(env: &Env, login: &str, key: &VoucherKey) {
    let finance = &env.demo.finance;
    let user = env.user(login).await;
    let (_, now) = finance.now();
    finance
        .store
        .access()
        .record_step::<(), _>(key, "check", user.id, now, |_| Ok(()))
        .await
        .unwrap()
        .unwrap();
    finance
        .store
        .drafts()
        .transition(key, DraftState::Checked, login, None, now)
        .await
        .unwrap();
}

async fn state_of(env: &Env, key: &VoucherKey) -> DraftState {
    env.demo
        .finance
        .store
        .drafts()
        .get(key)
        .await
        .unwrap()
        .unwrap()
        .state
}

fn draft_path(key: &VoucherKey) -> String {
    format!(
        "/o/{FINANCE}/finance/approvals/{}/{}/{}/{}",
        key.adm_div_code, key.st_year, key.vt_code, key.voucher_no
    )
}

/// Posts the form of `page` that posts to `action` with its token, form id and `extra`.
async fn submit(
    b: &mut Browser,
    env: &Env,
    page: &Answer,
    action: &str,
    extra: &[(&str, &str)],
) -> Answer {
    let csrf = page.csrf(action);
    let form_id = page.form_id(action);
    let mut fields = vec![("csrf", csrf.as_str()), ("form_id", form_id.as_str())];
    fields.extend_from_slice(extra);
    b.post(&env.app, action, &fields).await
}

/// The number in `<span class="{class}">N</span>`.
fn count(body: &str, class: &str) -> u64 {
    let marker = format!("<span class=\"{class}\">");
    let start = body
        .find(&marker)
        .unwrap_or_else(|| panic!("no {class} in {body}"))
        + marker.len();
    let end = start + body[start..].find('<').unwrap();
    body[start..end].parse().unwrap()
}

web::both!(a_payment_is_checked_and_signed_in_the_portal, |env| {
    let app = &env.app;
    let key = make_draft(env, &maker(FINANCE), COUNTY_UNIT, 12_345).await;

    // The checker finds it in the queue and checks it.
    let mut checker_b = sign_in(env, app, &checker(FINANCE)).await;
    let queue = checker_b
        .get(app, &format!("/o/{FINANCE}/finance/approvals"))
        .await;
    assert_eq!(queue.status, StatusCode::OK, "{}", queue.body);
    assert!(queue.body.contains(&key.voucher_no), "{}", queue.body);
    assert!(queue.body.contains("123.45"), "the amount");
    assert!(
        queue.body.contains("长沙市芙蓉建筑工程有限公司"),
        "the payee"
    );
    assert!(queue.body.contains(&maker(FINANCE)), "the maker");
    let page = checker_b.get(app, &draft_path(&key)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("PayeeAcctName"), "the voucher's fields");
    assert!(
        !page.has_form(&format!("{}/sign", draft_path(&key))),
        "a checker is not offered the signature"
    );
    let done = submit(
        &mut checker_b,
        env,
        &page,
        &format!("{}/check", draft_path(&key)),
        &[],
    )
    .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(done.location(), draft_path(&key));
    assert_eq!(state_of(env, &key).await, DraftState::Checked);

    // The signer finds it waiting for a signature and signs it.
    let mut signer_b = sign_in(env, app, &signer(FINANCE)).await;
    let queue = signer_b
        .get(
            app,
            &format!("/o/{FINANCE}/finance/approvals?state=checked"),
        )
        .await;
    assert!(queue.body.contains(&key.voucher_no), "{}", queue.body);
    let page = signer_b.get(app, &draft_path(&key)).await;
    assert!(
        page.body.contains(&checker(FINANCE)),
        "the check step and who took it"
    );
    let done = submit(
        &mut signer_b,
        env,
        &page,
        &format!("{}/sign", draft_path(&key)),
        &[("pin", DEMO_PIN)],
    )
    .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(state_of(env, &key).await, DraftState::Issued);
    let sent = env
        .demo
        .finance
        .store
        .library()
        .status(&key, Leg::Original)
        .await
        .unwrap()
        .expect("the voucher is in the library");
    assert_eq!(sent.direction, Direction::Sent);
    let steps = env.demo.finance.store.access().steps(&key).await.unwrap();
    let takers: Vec<(String, String)> = {
        let mut out = Vec::new();
        for s in steps {
            let user = env.demo.finance.store.access().user(s.user).await.unwrap();
            out.push((s.step, user.unwrap().login));
        }
        out
    };
    assert_eq!(
        takers,
        [
            ("make".to_owned(), maker(FINANCE)),
            ("check".to_owned(), checker(FINANCE)),
            ("sign".to_owned(), signer(FINANCE)),
        ]
    );
    let page = signer_b.get(app, &draft_path(&key)).await;
    assert!(page.body.contains("已发送"), "{}", page.body);
});

web::both!(whoever_made_a_draft_cannot_check_it, |env| {
    let app = &env.app;
    // The checker made this one: checking it is refused by segregation of duties.
    let key = make_draft(env, &checker(FINANCE), PROVINCE_UNIT, 500).await;
    let mut b = sign_in(env, app, &checker(FINANCE)).await;
    let page = b.get(app, &draft_path(&key)).await;
    let refused = submit(
        &mut b,
        env,
        &page,
        &format!("{}/check", draft_path(&key)),
        &[],
    )
    .await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.body);
    assert!(refused.body.contains("class=\"error\""), "{}", refused.body);
    assert!(refused.body.contains("操作未执行"), "{}", refused.body);
    assert_eq!(state_of(env, &key).await, DraftState::Made);

    // A maker's post does not check at all.
    let key = make_draft(env, &maker(FINANCE), PROVINCE_UNIT, 500).await;
    let mut m = sign_in(env, app, &maker(FINANCE)).await;
    let queue = m.get(app, &format!("/o/{FINANCE}/finance/approvals")).await;
    assert_eq!(queue.status, StatusCode::FORBIDDEN);
    let page = m.get(app, &draft_path(&key)).await;
    assert_eq!(page.status, StatusCode::OK, "a maker may read it");
    assert!(!page.has_form(&format!("{}/check", draft_path(&key))));
    let forged = m
        .post(
            app,
            &format!("{}/check", draft_path(&key)),
            &[
                ("csrf", &page.csrf("/logout")),
                ("form_id", "0123456789abcdef0123456789abcdef"),
            ],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert_eq!(state_of(env, &key).await, DraftState::Made);
});

web::both!(a_returned_draft_needs_a_reason, |env| {
    let app = &env.app;
    let key = make_draft(env, &maker(FINANCE), PROVINCE_UNIT, 700).await;
    let mut b = sign_in(env, app, &checker(FINANCE)).await;
    let page = b.get(app, &draft_path(&key)).await;
    let action = format!("{}/reject", draft_path(&key));
    let blank = submit(&mut b, env, &page, &action, &[("reason", "  ")]).await;
    assert_eq!(blank.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(blank.body.contains("请填写退回原因"), "{}", blank.body);
    assert_eq!(state_of(env, &key).await, DraftState::Made);
    let done = submit(&mut b, env, &blank, &action, &[("reason", "收款账号有误")]).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(state_of(env, &key).await, DraftState::Rejected);
    let page = b.get(app, &draft_path(&key)).await;
    assert!(page.body.contains("收款账号有误"), "{}", page.body);
});

web::both!(a_county_checker_sees_only_the_county, |env| {
    let app = &env.app;
    let county = make_draft(env, &maker(FINANCE), COUNTY_UNIT, 100).await;
    let province = make_draft(env, &maker(FINANCE), PROVINCE_UNIT, 100).await;
    let mut b = sign_in(env, app, &county_checker()).await;
    let queue = b.get(app, &format!("/o/{FINANCE}/finance/approvals")).await;
    assert_eq!(queue.status, StatusCode::OK, "{}", queue.body);
    assert!(queue.body.contains(&county.voucher_no));
    assert!(!queue.body.contains(&province.voucher_no), "{}", queue.body);
    let hidden = b.get(app, &draft_path(&province)).await;
    assert_eq!(hidden.status, StatusCode::NOT_FOUND);
    let page = b.get(app, &draft_path(&county)).await;
    let refused = b
        .post(
            app,
            &format!("{}/check", draft_path(&province)),
            &[
                ("csrf", &page.csrf("/logout")),
                (
                    "form_id",
                    &page.form_id(&format!("{}/check", draft_path(&county))),
                ),
            ],
        )
        .await;
    assert_eq!(refused.status, StatusCode::NOT_FOUND);
    assert_eq!(state_of(env, &province).await, DraftState::Made);
});

web::sqlite!(two_hundred_drafts_are_signed_with_one_pin, |env| {
    let app = &env.app;
    let mut keys = Vec::new();
    for _ in 0..200 {
        let key = make_draft(env, &maker(FINANCE), COUNTY_UNIT, 100).await;
        check_in_store(env, &checker(FINANCE), &key).await;
        keys.push(key);
    }
    let mut b = sign_in(env, app, &signer(FINANCE)).await;
    let action = format!("/o/{FINANCE}/finance/batch-sign");
    let form = b.get(app, &action).await;
    assert_eq!(form.status, StatusCode::OK, "{}", form.body);
    assert_eq!(
        form.body.matches("name=\"key\"").count(),
        100,
        "a page of 100 to tick"
    );

    // A wrong PIN: a field error, nothing signed.
    let wrong = submit(
        &mut b,
        env,
        &form,
        &action,
        &[("all", "1"), ("pin", "654321")],
    )
    .await;
    assert_eq!(
        wrong.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        wrong.body
    );
    assert!(
        wrong.body.contains("签章 PIN 错误，还可尝试 4 次"),
        "{}",
        wrong.body
    );
    for key in &keys {
        assert_eq!(state_of(env, key).await, DraftState::Checked);
    }

    // The right one: a job, polled until it is done.
    let started = submit(
        &mut b,
        env,
        &wrong,
        &action,
        &[("all", "1"), ("pin", DEMO_PIN)],
    )
    .await;
    assert_eq!(started.status, StatusCode::SEE_OTHER, "{}", started.body);
    let job = started.location().to_owned();
    assert!(job.starts_with(&format!("{action}/jobs/")), "{job}");
    let page = b.get(app, &job).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("<progress"), "{}", page.body);
    assert!(
        page.body.contains("hx-trigger=\"every 1s\"")
            || page.body.contains("data-finished=\"true\"")
    );
    let poll = format!("{job}/progress");
    let mut polls = 0u32;
    let last = loop {
        let a = b.get_with(app, &poll, &[("hx-request", "true")]).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        assert!(!a.body.contains("<html"), "a fragment, not a page");
        if a.body.contains("data-finished=\"true\"") {
            break a;
        }
        assert!(
            a.body.contains("hx-trigger=\"every 1s\""),
            "it asks again while running"
        );
        polls += 1;
        assert!(polls < 60_000, "the job never finished");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    assert!(
        !last.body.contains("hx-trigger"),
        "a finished job stops the polling"
    );
    assert_eq!(count(&last.body, "total"), 200);
    assert_eq!(count(&last.body, "failed"), 0, "{}", last.body);
    assert_eq!(count(&last.body, "signed"), 200);
    let library = env.demo.finance.store.library();
    for key in &keys {
        assert_eq!(state_of(env, key).await, DraftState::Issued);
        let sent = library.status(key, Leg::Original).await.unwrap();
        assert!(sent.is_some_and(|r| r.direction == Direction::Sent));
    }
    let signer_user = env.user(&signer(FINANCE)).await;
    let steps = env
        .demo
        .finance
        .store
        .access()
        .steps(&keys[0])
        .await
        .unwrap();
    assert!(
        steps
            .iter()
            .any(|s| s.step == "sign" && s.user == signer_user.id),
        "signed as the user"
    );

    // Another signer does not see the job.
    let mut county = sign_in(env, app, &format!("{FINANCE}-signer-{COUNTY}")).await;
    assert_eq!(county.get(app, &job).await.status, StatusCode::NOT_FOUND);
});

web::both!(a_double_submit_starts_one_job, |env| {
    let app = &env.app;
    let key = make_draft(env, &maker(FINANCE), PROVINCE_UNIT, 100).await;
    check_in_store(env, &checker(FINANCE), &key).await;
    let mut b = sign_in(env, app, &signer(FINANCE)).await;
    let action = format!("/o/{FINANCE}/finance/batch-sign");
    let form = b.get(app, &action).await;
    let path = format!(
        "{}/{}/{}/{}",
        key.adm_div_code, key.st_year, key.vt_code, key.voucher_no
    );
    let first = submit(
        &mut b,
        env,
        &form,
        &action,
        &[("key", &path), ("pin", DEMO_PIN)],
    )
    .await;
    let second = submit(
        &mut b,
        env,
        &form,
        &action,
        &[("key", &path), ("pin", DEMO_PIN)],
    )
    .await;
    assert_eq!(first.status, StatusCode::SEE_OTHER, "{}", first.body);
    assert_eq!(second.status, StatusCode::SEE_OTHER, "{}", second.body);
    assert_eq!(first.location(), second.location(), "the same job");
    let poll = format!("{}/progress", first.location());
    let mut polls = 0u32;
    let last = loop {
        let a = b.get(app, &poll).await;
        if a.body.contains("data-finished=\"true\"") {
            break a;
        }
        polls += 1;
        assert!(polls < 60_000, "the job never finished");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    assert_eq!(count(&last.body, "signed"), 1, "{}", last.body);
    assert_eq!(state_of(env, &key).await, DraftState::Issued);
});

web::both!(a_post_without_the_token_is_refused, |env| {
    let app = &env.app;
    let key = make_draft(env, &maker(FINANCE), PROVINCE_UNIT, 100).await;
    let mut b = sign_in(env, app, &checker(FINANCE)).await;
    let page = b.get(app, &draft_path(&key)).await;
    let action = format!("{}/check", draft_path(&key));
    let form_id = page.form_id(&action);
    let refused = b.post(app, &action, &[("form_id", &form_id)]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let wrong = b
        .post(
            app,
            &action,
            &[("form_id", &form_id), ("csrf", &"0".repeat(64))],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    assert_eq!(state_of(env, &key).await, DraftState::Made);
    let mut s = sign_in(env, app, &signer(FINANCE)).await;
    let batch = format!("/o/{FINANCE}/finance/batch-sign");
    let refused = s
        .post(app, &batch, &[("all", "1"), ("pin", DEMO_PIN)])
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
});

web::sqlite!(a_bank_user_cannot_open_finance_pages, |env| {
    let app = &env.app;
    let mut b = sign_in(env, app, &checker(ICBC)).await;
    for area in [
        "approvals",
        "batch-sign",
        "quotas",
        "returns",
        "reconcile",
        "execution",
    ] {
        let theirs = b.get(app, &format!("/o/{FINANCE}/finance/{area}")).await;
        assert_eq!(theirs.status, StatusCode::FORBIDDEN, "{area}");
        let own = b.get(app, &format!("/o/{ICBC}/finance/{area}")).await;
        assert_eq!(own.status, StatusCode::NOT_FOUND, "{area}");
    }
    let home = b.get(app, &format!("/o/{ICBC}")).await;
    assert!(
        !home.body.contains("/finance/"),
        "no finance links for a bank"
    );
    let mut f = sign_in(env, app, &checker(FINANCE)).await;
    let home = f.get(app, &format!("/o/{FINANCE}")).await;
    for area in ["approvals", "quotas", "returns", "reconcile", "execution"] {
        assert!(
            home.body.contains(&format!("/o/{FINANCE}/finance/{area}")),
            "{area} in {}",
            home.body
        );
    }
    assert!(
        !home.body.contains("/finance/batch-sign"),
        "batch signing is a signer's"
    );
});

web::sqlite!(the_quota_notices_of_the_users_divisions_are_listed, |env| {
    let app = &env.app;
    let mut b = sign_in(env, app, &checker(FINANCE)).await;
    let page = b
        .get(app, &format!("/o/{FINANCE}/finance/quotas?vt=5105"))
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    // The demo sends each division's 5105 to each bank for this month and the next.
    assert!(page.body.contains("430000"), "{}", page.body);
    assert!(page.body.contains("430102"));
    assert!(page.body.contains(ICBC));
    assert!(page.body.contains("签收成功") || page.body.contains("已收到对方回单"));
    let mut county = sign_in(env, app, &county_checker()).await;
    let page = county
        .get(app, &format!("/o/{FINANCE}/finance/quotas?vt=5105"))
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("<td>430102</td>"), "{}", page.body);
    assert!(!page.body.contains("<td>430000</td>"), "{}", page.body);
});

web::sqlite!(reconciliation_rounds_show_the_banks_results, |env| {
    let app = &env.app;
    let key = make_draft(env, &maker(FINANCE), PROVINCE_UNIT, 100).await;
    let mut c = sign_in(env, app, &checker(FINANCE)).await;
    let page = c.get(app, &draft_path(&key)).await;
    submit(
        &mut c,
        env,
        &page,
        &format!("{}/check", draft_path(&key)),
        &[],
    )
    .await;
    let mut s = sign_in(env, app, &signer(FINANCE)).await;
    let page = s.get(app, &draft_path(&key)).await;
    let signed = submit(
        &mut s,
        env,
        &page,
        &format!("{}/sign", draft_path(&key)),
        &[("pin", DEMO_PIN)],
    )
    .await;
    assert_eq!(signed.status, StatusCode::SEE_OTHER, "{}", signed.body);
    env.demo.settle(30).await.unwrap();
    let sent = env.demo.finance.reconcile_day("test").await.unwrap();
    assert!(sent > 0);
    env.demo.settle(30).await.unwrap();
    let page = c
        .get(app, &format!("/o/{FINANCE}/finance/reconcile?vt=5503"))
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("<td class=\"result\">"), "{}", page.body);
    assert!(
        page.body.contains("<td class=\"result\">相符</td>")
            || page.body.contains("<td class=\"result\">不符</td>"),
        "a result from the bank's receipt: {}",
        page.body
    );
});

web::sqlite!(budget_execution_sums_the_books, |env| {
    let app = &env.app;
    let key = make_draft(env, &maker(FINANCE), COUNTY_UNIT, 12_300).await;
    check_in_store(env, &checker(FINANCE), &key).await;
    let mut s = sign_in(env, app, &signer(FINANCE)).await;
    let page = s.get(app, &draft_path(&key)).await;
    let signed = submit(
        &mut s,
        env,
        &page,
        &format!("{}/sign", draft_path(&key)),
        &[("pin", DEMO_PIN)],
    )
    .await;
    assert_eq!(signed.status, StatusCode::SEE_OTHER, "{}", signed.body);

    let mut county = sign_in(env, app, &county_checker()).await;
    let page = county
        .get(app, &format!("/o/{FINANCE}/finance/execution"))
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("<svg"), "a chart");
    assert!(page.body.contains("class=\"bar-used paid\""));
    let main = &page.body[page.body.find("<main>").unwrap()..];
    assert!(!main.contains("<script"), "the chart needs no script");
    assert!(page.body.contains("430102 长沙市芙蓉区"), "{}", page.body);
    assert!(!page.body.contains("430000 湖南省"), "only the county");
    assert!(
        page.body.contains("<td class=\"num\">123.00</td>"),
        "the paid amount: {}",
        page.body
    );
});

web::sqlite!(the_refunds_and_returns_page_has_its_three_lists, |env| {
    let app = &env.app;
    let mut b = sign_in(env, app, &checker(FINANCE)).await;
    for vt in ["5201", "2203", "2204"] {
        let page = b
            .get(app, &format!("/o/{FINANCE}/finance/returns?vt={vt}"))
            .await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        assert!(
            page.body.contains(&format!(
                "href=\"/o/{FINANCE}/finance/returns?vt={vt}\" aria-current=\"page\""
            )),
            "{vt} is the tab shown: {}",
            page.body
        );
        // Nothing was returned or refunded in a fresh demo.
        assert!(page.body.contains("没有记录"), "{}", page.body);
    }
});

web::sqlite!(indicators_and_plans_show_each_units_budget, |env| {
    let app = &env.app;
    let mut county = sign_in(env, app, &county_checker()).await;
    let page = county
        .get(app, &format!("/o/{FINANCE}/finance/indicators"))
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    // The county's units, not the province's: the county checker sees 430102 only.
    assert!(page.body.contains(COUNTY_UNIT), "{}", page.body);
    assert!(!page.body.contains(PROVINCE_UNIT), "{}", page.body);
    assert!(page.body.contains("<h2>预算指标</h2>"), "{}", page.body);
    assert!(page.body.contains("<h2>用款计划</h2>"), "{}", page.body);
    // A bank's user does not open finance's books.
    let mut bank = sign_in(env, app, &checker(ICBC)).await;
    let other = bank
        .get(app, &format!("/o/{ICBC}/finance/indicators"))
        .await;
    assert_eq!(other.status, StatusCode::NOT_FOUND);
});
