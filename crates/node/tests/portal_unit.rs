//! The budget unit's desk at the counter (自助柜面), driven through the portal's forms on
//! the demo province:
//!
//! - a unit's maker pays by 8202 through the form; every bad field is reported next to its
//!   field and nothing is made; a double-clicked submit makes one draft;
//! - the unit's checker checks it and its signer signs it: the 8202 is stamped and sent to
//!   the bank, which pays it and returns its receipt, whose X fields the page then shows;
//! - the maker cannot check their own payment (segregation of duties); another unit's
//!   payment is 404 for them, and the search finds payments by payee;
//! - the home page shows the unit's quota by month.

mod common;
#[path = "common/web.rs"]
mod web;
#[allow(unused_imports)]
use web::*;

const COUNTER: &str = "DW4300000001";
const UNIT: &str = "A43000001";
const OTHER_UNIT: &str = "A43010201";

fn unit_user(unit: &str, post: &str) -> String {
    format!("{unit}-{post}")
}

/// The path of the payment a 303 after the pay form leads to.
fn payment_path(a: &Answer) -> String {
    let location = a.location().to_owned();
    assert!(
        location.starts_with(&format!("/o/{COUNTER}/unit/v/")),
        "{} {location} {}",
        a.status,
        a.body
    );
    location
}

async fn pay(
    env: &Env,
    b: &mut Browser,
    fields: &[(&str, &str)],
) -> (Answer, Option<(String, String)>) {
    let path = format!("/o/{COUNTER}/unit/pay");
    let form = b.get(&env.app, &path).await;
    assert_eq!(form.status, StatusCode::OK, "{}", form.body);
    let csrf = form.csrf(&path);
    let form_id = form.form_id(&path);
    let mut all = vec![("csrf", csrf.as_str()), ("form_id", form_id.as_str())];
    all.extend_from_slice(fields);
    let a = b.post(&env.app, &path, &all).await;
    (a, Some((csrf, form_id)))
}

const GOOD: [(&str, &str); 6] = [
    ("unit", UNIT),
    ("payee_name", "长沙市办公用品有限公司"),
    ("payee_account", "6222-0001-0002"),
    ("payee_bank", "中国工商银行长沙分行"),
    ("amount", "1,234.50"),
    ("summary", "办公用品"),
];

web::both!(
    a_unit_pays_by_8202_and_its_checker_and_signer_approve,
    |env| {
        let mut maker = sign_in(env, &env.app, &unit_user(UNIT, "maker")).await;
        let (a, ids) = pay(env, &mut maker, &GOOD).await;
        assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
        let payment = payment_path(&a);

        // A double click: the same form id again leads to the same payment, nothing new.
        let (csrf, form_id) = ids.unwrap();
        let path = format!("/o/{COUNTER}/unit/pay");
        let mut again = vec![("csrf", csrf.as_str()), ("form_id", form_id.as_str())];
        again.extend_from_slice(&GOOD);
        let second = maker.post(&env.app, &path, &again).await;
        assert_eq!(second.status, StatusCode::SEE_OTHER);
        assert_eq!(second.location(), payment);
        let list = maker
            .get(&env.app, &format!("/o/{COUNTER}/unit/vouchers"))
            .await;
        assert_eq!(
            list.body.matches("长沙市办公用品有限公司").count(),
            1,
            "{}",
            list.body
        );

        // The maker may not check their own payment.
        let page = maker.get(&env.app, &payment).await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(!page.has_form(&format!("{payment}/check")), "{}", page.body);
        let own = maker
            .post(
                &env.app,
                &format!("{payment}/check"),
                &[
                    ("csrf", page.form_value("csrf").unwrap().as_str()),
                    ("form_id", "0123456789abcdef0123456789abcdef"),
                ],
            )
            .await;
        assert_eq!(own.status, StatusCode::FORBIDDEN, "{}", own.body);

        // The checker checks, the signer signs: stamped and sent to the bank.
        let mut checker = sign_in(env, &env.app, &unit_user(UNIT, "checker")).await;
        let page = checker.get(&env.app, &payment).await;
        let action = format!("{payment}/check");
        let checked = checker
            .post(
                &env.app,
                &action,
                &[
                    ("csrf", page.csrf(&action).as_str()),
                    ("form_id", page.form_id(&action).as_str()),
                ],
            )
            .await;
        assert_eq!(checked.status, StatusCode::SEE_OTHER, "{}", checked.body);
        let mut signer = sign_in(env, &env.app, &unit_user(UNIT, "signer")).await;
        let page = signer.get(&env.app, &payment).await;
        let action = format!("{payment}/sign");
        let (csrf, form_id) = (page.csrf(&action), page.form_id(&action));
        // The signer's PIN opens the signing key; a wrong one signs nothing.
        let wrong = signer
            .post(
                &env.app,
                &action,
                &[("csrf", &csrf), ("form_id", &form_id), ("pin", "000000")],
            )
            .await;
        assert_eq!(
            wrong.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            wrong.body
        );
        assert!(
            !signer
                .get(&env.app, &payment)
                .await
                .body
                .contains("receipt-fields")
        );
        let signed = signer
            .post(
                &env.app,
                &action,
                &[("csrf", &csrf), ("form_id", &form_id), ("pin", "123456")],
            )
            .await;
        assert_eq!(signed.status, StatusCode::SEE_OTHER, "{}", signed.body);

        // The bank pays and returns its receipt; the page shows the receipt's X fields.
        env.demo.settle(20).await.unwrap();
        let page = signer.get(&env.app, &payment).await;
        assert!(page.body.contains("id=\"receipt-fields\""), "{}", page.body);
        assert!(page.body.contains("XPayAmt"), "{}", page.body);
        assert!(page.body.contains("1234.50"), "{}", page.body);

        // The receipt and the credit advice download as PDFs naming the payee.
        for (doc, title) in [
            ("receipt.pdf", "支付凭证回单"),
            ("notice.pdf", "入账通知书"),
        ] {
            let pdf = signer.get(&env.app, &format!("{payment}/{doc}")).await;
            assert_eq!(pdf.status, StatusCode::OK, "{doc}: {}", pdf.body);
            assert_eq!(pdf.header("content-type"), Some("application/pdf"));
            let text = pdf_text(&pdf.bytes);
            assert!(text.contains("长沙市办公用品有限公司"), "{doc}: {text}");
            assert!(text.contains(title), "{doc}: {text}");
            assert!(text.contains("壹仟贰佰叁拾肆元伍角"), "{doc}: {text}");
        }
        // Another unit's people cannot download it.
        let mut other = sign_in(env, &env.app, &unit_user(OTHER_UNIT, "maker")).await;
        let denied = other.get(&env.app, &format!("{payment}/receipt.pdf")).await;
        assert_eq!(denied.status, StatusCode::NOT_FOUND);
    }
);

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

web::sqlite!(every_bad_field_is_shown_and_nothing_is_made, |env| {
    let mut maker = sign_in(env, &env.app, &unit_user(UNIT, "maker")).await;
    let (a, _) = pay(
        env,
        &mut maker,
        &[
            ("unit", OTHER_UNIT),
            ("payee_name", ""),
            ("payee_account", "12ab"),
            ("payee_bank", "中国工商银行长沙分行"),
            ("amount", "-5"),
            ("summary", "办公用品"),
        ],
    )
    .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.body);
    for field in ["unit", "payee_name", "payee_account", "amount"] {
        assert!(
            a.body.contains(&format!("data-field=\"{field}\"")),
            "{field}: {}",
            a.body
        );
    }
    assert!(!a.body.contains("data-field=\"summary\""));
    let list = maker
        .get(&env.app, &format!("/o/{COUNTER}/unit/vouchers"))
        .await;
    assert!(!list.body.contains("id=\"payments\""), "{}", list.body);
});

web::sqlite!(
    another_units_payment_is_not_found_and_search_finds_by_payee,
    |env| {
        let mut maker = sign_in(env, &env.app, &unit_user(UNIT, "maker")).await;
        let (a, _) = pay(env, &mut maker, &GOOD).await;
        let payment = payment_path(&a);
        let mut other = sign_in(env, &env.app, &unit_user(OTHER_UNIT, "checker")).await;
        let page = other.get(&env.app, &payment).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{}", page.body);
        let list = other
            .get(&env.app, &format!("/o/{COUNTER}/unit/vouchers"))
            .await;
        assert!(!list.body.contains("长沙市办公用品有限公司"));

        let found = maker
            .get(
                &env.app,
                &format!("/o/{COUNTER}/unit/vouchers?q=%E5%8A%9E%E5%85%AC"),
            )
            .await;
        assert!(
            found.body.contains("长沙市办公用品有限公司"),
            "{}",
            found.body
        );
        let missed = maker
            .get(&env.app, &format!("/o/{COUNTER}/unit/vouchers?q=nobody"))
            .await;
        assert!(!missed.body.contains("长沙市办公用品有限公司"));

        // The home page's quota panel: this month's authorized quota from the bank.
        let home = maker.get(&env.app, &format!("/o/{COUNTER}")).await;
        assert!(home.body.contains("quota-panel"), "{}", home.body);
        assert!(home.body.contains("<svg class=\"chart\""), "{}", home.body);
        assert!(home.body.contains("plan-by-class"), "{}", home.body);
    }
);

const FINANCE: &str = "11430000006";

/// Finance's drafts of `unit`, as (voucher number, state code, detail count).
async fn finance_drafts(env: &Env, unit: &str) -> Vec<(String, String, usize)> {
    use guoku_store::drafts::DraftFilter;
    let page = env
        .party(FINANCE)
        .store
        .drafts()
        .list(&DraftFilter {
            state: None,
            within: vec!["430000".parse().unwrap()],
            units: vec![unit.to_owned()],
            after: 0,
            limit: 100,
        })
        .await
        .unwrap();
    page.items
        .iter()
        .map(|d| {
            let (v, _) =
                guoku_voucher::parse_voucher(&d.body, &guoku_voucher::Limits::default()).unwrap();
            (
                d.key.voucher_no.clone(),
                d.state.code().to_owned(),
                v.details.len(),
            )
        })
        .collect()
}

web::both!(a_direct_payment_application_waits_at_finance, |env| {
    let mut maker = sign_in(env, &env.app, &unit_user(UNIT, "maker")).await;
    let path = format!("/o/{COUNTER}/unit/apply");
    let form = maker.get(&env.app, &path).await;
    assert_eq!(form.status, StatusCode::OK, "{}", form.body);
    let csrf = form.csrf(&path);
    let form_id = form.form_id(&path);
    let mut fields = vec![("csrf", csrf.as_str()), ("form_id", form_id.as_str())];
    fields.extend_from_slice(&GOOD);
    let a = maker.post(&env.app, &path, &fields).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    let application = a.location().to_owned();
    assert!(
        application.starts_with(&format!("/o/{COUNTER}/unit/a/")),
        "{application}"
    );
    // It waits at finance as a draft of the unit, made by the unit's maker.
    let drafts = finance_drafts(env, UNIT).await;
    assert_eq!(drafts.len(), 1, "{drafts:?}");
    assert_eq!(drafts[0].1, "made");
    assert!(application.ends_with(&drafts[0].0));
    let page = maker.get(&env.app, &application).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("长沙市办公用品有限公司"));
    // The unit checker does not check it (finance does); another unit does not see it.
    let mut checker = sign_in(env, &env.app, &unit_user(UNIT, "checker")).await;
    let page = checker.get(&env.app, &application).await;
    assert!(!page.body.contains("check-button"), "{}", page.body);
    let mut other = sign_in(env, &env.app, &unit_user(OTHER_UNIT, "maker")).await;
    assert_eq!(
        other.get(&env.app, &application).await.status,
        StatusCode::NOT_FOUND
    );
    let list = maker
        .get(&env.app, &format!("/o/{COUNTER}/unit/vouchers"))
        .await;
    assert!(list.body.contains("id=\"applications\""), "{}", list.body);
});

/// A multipart upload of the import form.
async fn upload(env: &Env, b: &mut Browser, kind: &str, action: &str, file: &[u8]) -> Answer {
    let path = format!("/o/{COUNTER}/unit/import");
    let form = b.get(&env.app, &path).await;
    assert_eq!(form.status, StatusCode::OK, "{}", form.body);
    let boundary = "guoku-test-boundary-7MA4YWxkTrZu0gW";
    let mut body = Vec::new();
    for (name, value) in [
        ("csrf", form.csrf(&path)),
        ("form_id", form.form_id(&path)),
        ("kind", kind.to_owned()),
        ("unit", UNIT.to_owned()),
        ("action", action.to_owned()),
    ] {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"list.csv\"\r\nContent-Type: text/csv\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(file);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let request = axum::http::Request::builder()
        .method(axum::http::Method::POST)
        .uri(&path)
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .header("origin", "http://portal.test")
        .header("sec-fetch-site", "same-origin");
    b.send(&env.app, request, axum::body::Body::from(body))
        .await
}

web::sqlite!(
    a_salary_list_shows_row_errors_then_goes_to_finance_as_one_batch,
    |env| {
        let mut maker = sign_in(env, &env.app, &unit_user(UNIT, "maker")).await;
        let bad = "姓名,账号,开户行,金额\n张三,6222000011112222,中国工商银行长沙分行,5000.00\n,6222000011113333,中国建设银行长沙分行,4800.00\n王五,62220000abc,中国建设银行长沙分行,-1\n";
        let a = upload(env, &mut maker, "salary", "submit", bad.as_bytes()).await;
        assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.body);
        assert!(a.body.contains("id=\"row-errors\""), "{}", a.body);
        assert!(
            a.body.matches("class=\"row-error\"").count() >= 3,
            "{}",
            a.body
        );
        assert!(
            finance_drafts(env, UNIT).await.is_empty(),
            "nothing was submitted"
        );

        let good = "姓名,账号,开户行,金额\n张三,6222000011112222,中国工商银行长沙分行,\"5,000.00\"\n李四,6222000011113333,中国建设银行长沙分行,4800.00\n王五,6222000011114444,中国建设银行长沙分行,4750.50\n";
        let checked = upload(env, &mut maker, "salary", "check", good.as_bytes()).await;
        assert_eq!(checked.status, StatusCode::OK, "{}", checked.body);
        assert!(
            checked.body.contains("<dd id=\"rows-ok\">3</dd>"),
            "{}",
            checked.body
        );
        assert!(checked.body.contains("14550.50"), "{}", checked.body);
        assert!(
            finance_drafts(env, UNIT).await.is_empty(),
            "a check submits nothing"
        );

        let submitted = upload(env, &mut maker, "salary", "submit", good.as_bytes()).await;
        assert_eq!(
            submitted.status,
            StatusCode::SEE_OTHER,
            "{}",
            submitted.body
        );
        let drafts = finance_drafts(env, UNIT).await;
        assert_eq!(drafts.len(), 1, "{drafts:?}");
        assert_eq!(drafts[0].2, 3, "one detail per row");
    }
);
