//! The audit console (电子审计, issue 7 part 4) on the demo province, on SQLite and on
//! PostgreSQL, driven with `tower::ServiceExt::oneshot` and a cookie jar ([`web`]):
//!
//! - after a payment, the auditor's search by voucher number lists every leaf the store
//!   has for it (and the filters by kind, action, user and UTC dates narrow it; a bad date
//!   is a field error); the pages go back in time with the `before` cursor;
//! - the CSV export parses back (BOM, header row, RFC 4180 quoting, CRLF) to exactly the
//!   stored entries, and cells that would start a spreadsheet formula are neutralised;
//! - the heads, the other parties' heads and the alarms are shown;
//! - nobody but the auditor reads any of it.

mod common;
#[path = "common/web.rs"]
mod web;

use std::collections::BTreeSet;

use guoku_audit::{Entry, Frontier, HashAlgorithm};
use guoku_domain::Amount;
use guoku_node::demo::Payee;
use guoku_node::party::business_date;
use guoku_store::Store;
use guoku_store::audit::{Context, Filter, PeerHead, PeerHeadState, SignedHead, scope};
use guoku_store::library::NewVoucher;
use guoku_voucher::lifecycle::Leg;
use guoku_voucher::{Encoding, Envelope, EnvelopeBody, Voucher, VoucherFlag, VoucherKey};
use web::*;

const ROUTES: [&str; 5] = [
    "/audit",
    "/audit/export.csv",
    "/audit/heads",
    "/audit/peers",
    "/audit/alarms",
];

fn auditor(org: &str) -> String {
    format!("{org}-auditor")
}

/// Finance issues a direct payment (5201) of `yuan` for the province's first unit to the
/// direct bank: its key.
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

/// Every entry of `store` matching `filter` (up to the search limit), newest first.
async fn stored(store: &Store, filter: Filter) -> Vec<Entry> {
    store
        .audit()
        .search(&Filter {
            limit: guoku_store::audit::SEARCH_MAX,
            ..filter
        })
        .await
        .unwrap()
}

/// The positions a search page lists, in page order.
fn seqs(body: &str) -> Vec<u64> {
    let marker = "<td class=\"num seq\">";
    body.match_indices(marker)
        .map(|(at, _)| {
            let rest = &body[at + marker.len()..];
            rest[..rest.find('<').unwrap()].parse().unwrap()
        })
        .collect()
}

/// The `rel="next"` link of a page, its entities decoded.
fn next_link(body: &str) -> Option<String> {
    let at = body.find("rel=\"next\"")?;
    let open = body[..at].rfind("href=\"")? + 6;
    let end = open + body[open..].find('"')?;
    Some(body[open..end].replace("&amp;", "&").replace("&#x2f;", "/"))
}

/// The UTC date of `t`, `YYYY-MM-DD`.
fn utc_date(t: u64) -> String {
    let at = time::OffsetDateTime::from_unix_timestamp(i64::try_from(t).unwrap()).unwrap();
    format!(
        "{:04}-{:02}-{:02}",
        at.year(),
        u8::from(at.month()),
        at.day()
    )
}

both!(search_finds_a_vouchers_leaves_after_a_payment, |env| {
    env.demo.settle(30).await.unwrap();
    let app = &env.app;
    let key = issue_5201(env, "1234.00").await;
    env.demo.settle(30).await.unwrap();
    let no = key.voucher_no.clone();

    for org in [FINANCE, ICBC] {
        let store = &env.party(org).store;
        let expected = stored(
            store,
            Filter {
                object: Some(no.clone()),
                ..Filter::default()
            },
        )
        .await;
        // The original was written, sent or received, acknowledged, processed; a receipt
        // came back or went out.
        assert!(expected.len() >= 3, "{org}: {expected:?}");
        assert!(expected.iter().all(|e| e.object.contains(&no)));
        assert!(expected.iter().any(|e| e.object.ends_with("#original")));
        assert!(expected.iter().any(|e| e.object.ends_with("#receipt")));
        let mut b = sign_in(env, app, &auditor(org)).await;
        let page = b.get(app, &format!("/o/{org}/audit?object={no}")).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        let want: Vec<u64> = expected.iter().map(|e| e.seq).collect();
        assert_eq!(seqs(&page.body), want, "{org}: newest first, every leaf");
        for e in &expected {
            assert!(page.body.contains(&e.action), "{}", e.action);
        }
        // Narrowed by kind: no ledger leaf names the voucher.
        let ledger = b
            .get(app, &format!("/o/{org}/audit?object={no}&kind=ledger"))
            .await;
        assert_eq!(ledger.status, StatusCode::OK);
        assert!(seqs(&ledger.body).is_empty());
        assert!(ledger.body.contains("没有符合条件的记录"));
        // By action and by user, exactly.
        let first = &expected[0];
        let by_action = b
            .get(
                app,
                &format!(
                    "/o/{org}/audit?object={no}&action={}",
                    urlencode(&first.action)
                ),
            )
            .await;
        let acted: Vec<u64> = expected
            .iter()
            .filter(|e| e.action == first.action)
            .map(|e| e.seq)
            .collect();
        assert_eq!(seqs(&by_action.body), acted);
        let by_actor = b
            .get(
                app,
                &format!(
                    "/o/{org}/audit?object={no}&actor={}",
                    urlencode(&first.actor)
                ),
            )
            .await;
        let by: Vec<u64> = expected
            .iter()
            .filter(|e| e.actor == first.actor)
            .map(|e| e.seq)
            .collect();
        assert_eq!(seqs(&by_actor.body), by);
        // By UTC dates: today holds them, tomorrow nothing; a bad date is a field error.
        let today = utc_date(first.at);
        let dated = b
            .get(
                app,
                &format!("/o/{org}/audit?object={no}&from={today}&to={today}"),
            )
            .await;
        let that_day: Vec<u64> = expected
            .iter()
            .filter(|e| utc_date(e.at) == today)
            .map(|e| e.seq)
            .collect();
        assert!(!that_day.is_empty());
        assert_eq!(seqs(&dated.body), that_day);
        let tomorrow = utc_date(first.at + 86_400);
        let later = b
            .get(app, &format!("/o/{org}/audit?object={no}&from={tomorrow}"))
            .await;
        assert!(seqs(&later.body).is_empty());
        let bad = b.get(app, &format!("/o/{org}/audit?from=2026-13-01")).await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
        assert!(bad.body.contains("YYYY-MM-DD"), "{}", bad.body);
    }

    // Paging: 100 a page, newest first, the next page below the last position shown.
    // The next time step: the auditor signs in again with a code not used yet (a leaf).
    env.advance(30);
    let mut b = sign_in(env, app, &auditor(FINANCE)).await;
    let first = b.get(app, &format!("/o/{FINANCE}/audit")).await;
    let everything = stored(&env.party(FINANCE).store, Filter::default()).await;
    assert!(everything.len() > 100, "{} leaves", everything.len());
    let page_one = seqs(&first.body);
    let newest: Vec<u64> = everything.iter().take(100).map(|e| e.seq).collect();
    assert_eq!(page_one, newest);
    let next = next_link(&first.body).expect("a next page");
    assert!(next.contains(&format!("before={}", page_one[99])), "{next}");
    let second = b.get(app, &next).await;
    assert_eq!(second.status, StatusCode::OK);
    let page_two = seqs(&second.body);
    let want: Vec<u64> = everything
        .iter()
        .skip(100)
        .take(100)
        .map(|e| e.seq)
        .collect();
    assert_eq!(page_two, want);
    let one: BTreeSet<u64> = page_one.into_iter().collect();
    assert!(page_two.iter().all(|s| !one.contains(s)));
});

/// `text` for a query string.
fn urlencode(text: &str) -> String {
    serde_urlencoded::to_string([("x", text)]).unwrap()[2..].to_owned()
}

fn new_voucher(no: &str) -> NewVoucher {
    let v = Voucher {
        header: [
            ("AdmDivCode", "430000"),
            ("StYear", "2026"),
            ("VtCode", "5201"),
            ("VoucherNo", no),
            ("PayAmt", "12.00"),
        ]
        .into_iter()
        .collect(),
        details: vec![],
    };
    let body = guoku_voucher::write_envelope(
        &Envelope {
            bodies: vec![EnvelopeBody {
                flag: VoucherFlag::Original,
                attach: "SUCCESS".into(),
                voucher: v.clone(),
                signatures: vec![],
            }],
        },
        Encoding::Gbk,
    );
    NewVoucher::new(&v, Leg::Original, FINANCE, ICBC, body)
}

/// The cell as it was before the export neutralised it.
fn restored(cell: &str) -> &str {
    match cell.strip_prefix('\'') {
        Some(rest) if rest.starts_with(['=', '+', '-', '@', '\t', '\r']) => rest,
        _ => cell,
    }
}

both!(csv_export_parses_back_and_neutralises_formulas, |env| {
    let app = &env.app;
    let store = &env.party(FINANCE).store;
    // Leaves whose user, post, source and request id would be formulas in a spreadsheet,
    // with quotes, commas and Chinese inside.
    let hostile = "=HYPERLINK(\"http://evil.test\",\"点我, 查看\")";
    let context = Context {
        actor: String::new(),
        post: "+post".into(),
        source: "-10.0.0.1".into(),
        request_id: "\trequest".into(),
    };
    scope(
        context,
        store
            .library()
            .write(new_voucher("INJECT01"), hostile, env.now()),
    )
    .await
    .unwrap();
    let context = Context {
        actor: String::new(),
        post: "checker".into(),
        source: "127.0.0.1:1".into(),
        request_id: "\rcarriage".into(),
    };
    scope(
        context,
        store
            .library()
            .write(new_voucher("INJECT02"), "@SUM(1,2)", env.now()),
    )
    .await
    .unwrap();
    let expected = stored(
        store,
        Filter {
            object: Some("INJECT0".into()),
            ..Filter::default()
        },
    )
    .await;
    assert_eq!(expected.len(), 2);

    let mut b = sign_in(env, app, &auditor(FINANCE)).await;
    let page = b
        .get(app, &format!("/o/{FINANCE}/audit?object=INJECT0"))
        .await;
    assert_eq!(page.status, StatusCode::OK);
    let link = format!("/o/{FINANCE}/audit/export.csv?object=INJECT0");
    assert!(page.body.contains(&link.replace('/', "&#x2f;")) || page.body.contains(&link));

    for (lang, header) in [
        (
            "zh",
            [
                "位置",
                "时间（UTC）",
                "类别",
                "用户",
                "岗位",
                "操作",
                "对象",
                "结果",
                "来源地址",
                "请求编号",
                "内容",
            ],
        ),
        (
            "en",
            [
                "Position",
                "Time (UTC)",
                "Kind",
                "User",
                "Post",
                "Action",
                "Object",
                "Result",
                "Source address",
                "Request id",
                "Detail",
            ],
        ),
    ] {
        let file = b.get_with(app, &link, &[("accept-language", lang)]).await;
        assert_eq!(file.status, StatusCode::OK, "{}", file.body);
        assert_eq!(file.header("content-type"), Some("text/csv; charset=utf-8"));
        let disposition = file.header("content-disposition").unwrap();
        assert!(
            disposition.starts_with("attachment; filename=\"audit-")
                && disposition.ends_with(".csv\""),
            "{disposition}"
        );
        assert_eq!(file.header("cache-control"), Some("no-store"));
        assert_eq!(file.header("x-guoku-rows"), Some("2"));
        assert!(file.header("x-guoku-next-before").is_none());
        let bytes = &file.bytes;
        assert!(bytes.starts_with(b"\xEF\xBB\xBF"), "a BOM first");
        let text = std::str::from_utf8(&bytes[3..]).unwrap();
        // RFC 4180: CRLF line ends, quotes doubled inside a quoted field.
        assert!(text.ends_with("\r\n"));
        assert!(
            text.contains("\"'=HYPERLINK(\"\"http://evil.test\"\",\"\"点我, 查看\"\")\""),
            "{text}"
        );
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .from_reader(&bytes[3..]);
        let got: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
        assert_eq!(got, header);
        let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert_eq!(rows.len(), expected.len());
        for (row, e) in rows.iter().zip(&expected) {
            assert_eq!(row.len(), 11);
            // No cell starts a formula.
            for cell in row {
                assert!(
                    !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
                    "{cell:?}"
                );
            }
            let cells: Vec<&str> = row.iter().map(restored).collect();
            assert_eq!(cells[0], e.seq.to_string());
            assert_eq!(cells[1], guoku_node::audit_archive::utc(e.at));
            assert_eq!(cells[2], e.kind.name());
            assert_eq!(
                cells[3..].to_vec(),
                [
                    e.actor.as_str(),
                    &e.post,
                    &e.action,
                    &e.object,
                    &e.result,
                    &e.source,
                    &e.request_id,
                    &e.detail
                ]
            );
        }
        // The hostile cells came out quoted with a leading apostrophe.
        let second = &rows[1]; // INJECT01 (newest first)
        assert_eq!(&second[3], format!("'{hostile}"));
        assert_eq!(&second[4], "'+post");
        assert_eq!(&second[8], "'-10.0.0.1");
        assert_eq!(&second[9], "'\trequest");
        assert_eq!(&rows[0][3], "'@SUM(1,2)");
        assert_eq!(&rows[0][9], "'\rcarriage");
    }
    // An export with a bad filter is the search page with its error, not a file.
    let bad = b
        .get(app, &format!("/o/{FINANCE}/audit/export.csv?kind=nonsense"))
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.header("content-type").unwrap().starts_with("text/html"));
    assert!(bad.body.contains("未知的类别"), "{}", bad.body);
});

both!(heads_peer_heads_and_alarms_are_shown, |env| {
    env.demo.settle(30).await.unwrap();
    let app = &env.app;
    let store = &env.party(FINANCE).store;
    let log = store.audit();
    // A head over everything logged so far (the demo's suite is sm: SM3), recomputed from
    // the rows; a peer's head in each state; an alarm.
    let size = log.size().await.unwrap();
    let mut frontier = Frontier::new(HashAlgorithm::Sm3);
    for e in log.entries(0, u32::try_from(size).unwrap()).await.unwrap() {
        frontier.push_data(&e.to_bytes());
    }
    log.put_head(&SignedHead {
        size,
        at: env.now(),
        alg: HashAlgorithm::Sm3,
        root: frontier.root(),
        frontier: frontier.to_bytes(),
        signature: vec![0x30, 0x00],
        reason: "manual".into(),
    })
    .await
    .unwrap();
    for (size, state) in [
        (3, PeerHeadState::Pending),
        (5, PeerHeadState::Consistent),
        (8, PeerHeadState::Inconsistent),
    ] {
        log.put_peer_head(&PeerHead {
            peer: ICBC.into(),
            size,
            at: env.now() - 60,
            alg: HashAlgorithm::Sm3,
            root: [u8::try_from(size).unwrap(); 32],
            signature: vec![0x30, 0x00],
            received_at: env.now(),
            state,
        })
        .await
        .unwrap();
    }
    log.raise(
        env.now(),
        ICBC,
        "head of 8 leaves does not extend the head of 5",
    )
    .await
    .unwrap();

    let mut b = sign_in(env, app, &auditor(FINANCE)).await;
    let heads = b.get(app, &format!("/o/{FINANCE}/audit/heads")).await;
    assert_eq!(heads.status, StatusCode::OK, "{}", heads.body);
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let signed = log.heads().await.unwrap();
    let ours = signed.iter().find(|h| h.size == size).expect("the head");
    assert_eq!(ours.root, frontier.root(), "the head at that size is ours");
    for head in signed.iter().rev().take(100) {
        assert!(heads.body.contains(&hex(&head.root)), "head {}", head.size);
        assert!(
            heads
                .body
                .contains(&format!("<td class=\"num\">{}</td>", head.size))
        );
    }
    assert!(
        heads
            .body
            .contains(&format!("日志叶子数：{}", log.size().await.unwrap()))
    );
    assert!(heads.body.contains("尚无归档"));

    let peers = b.get(app, &format!("/o/{FINANCE}/audit/peers")).await;
    assert_eq!(peers.status, StatusCode::OK);
    for (root, state) in [(3u8, "待核验"), (5, "一致"), (8, "不一致")] {
        assert!(peers.body.contains(&hex(&[root; 32])));
        assert!(peers.body.contains(state));
    }
    let alarms = b.get(app, &format!("/o/{FINANCE}/audit/alarms")).await;
    assert_eq!(alarms.status, StatusCode::OK);
    assert!(alarms.body.contains("does not extend the head of 5"));
    assert!(alarms.body.contains(ICBC));
});

both!(nobody_but_the_auditor_reads_the_log, |env| {
    let app = &env.app;
    // Nobody signed in: the sign-in form.
    let mut anonymous = Browser::default();
    for route in ROUTES {
        let answer = anonymous.get(app, &format!("/o/{FINANCE}{route}")).await;
        assert_eq!(answer.status, StatusCode::SEE_OTHER, "{route}");
        assert_eq!(answer.location(), "/login");
    }
    // Finance's business posts and the other two administrators: 403, and no link.
    for post in ["maker", "checker", "signer", "sysadmin", "secadmin"] {
        let login = format!("{FINANCE}-{post}");
        let mut b = sign_in(env, app, &login).await;
        let home = b.get(app, &format!("/o/{FINANCE}")).await;
        assert!(
            !home.body.contains(&format!("/o/{FINANCE}/audit")),
            "{login}"
        );
        for route in ROUTES {
            let answer = b.get(app, &format!("/o/{FINANCE}{route}")).await;
            assert_eq!(answer.status, StatusCode::FORBIDDEN, "{login} {route}");
            assert!(
                answer
                    .header("content-type")
                    .unwrap()
                    .starts_with("text/html"),
                "{login} {route}: no file"
            );
            assert!(!answer.body.contains("<td class=\"num seq\">"));
        }
    }
    // Another organisation's auditor: 403 (not theirs).
    let mut other = sign_in(env, app, &auditor(ICBC)).await;
    for route in ROUTES {
        let answer = other.get(app, &format!("/o/{FINANCE}{route}")).await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{route}");
    }
    // The auditor: every page, and the link on their home page.
    let mut b = sign_in(env, app, &auditor(FINANCE)).await;
    let home = b.get(app, &format!("/o/{FINANCE}")).await;
    assert!(
        home.body.contains(&format!("/o/{FINANCE}/audit"))
            || home
                .body
                .contains(&format!("&#x2f;o&#x2f;{FINANCE}&#x2f;audit")),
        "{}",
        home.body
    );
    for route in ROUTES {
        let answer = b.get(app, &format!("/o/{FINANCE}{route}")).await;
        assert_eq!(answer.status, StatusCode::OK, "{route}");
    }
    // Reading changed nothing: no leaf for a GET.
    let log = env.party(FINANCE).store.audit();
    let before = log.size().await.unwrap();
    for route in ROUTES {
        b.get(app, &format!("/o/{FINANCE}{route}")).await;
    }
    assert_eq!(log.size().await.unwrap(), before);
});
