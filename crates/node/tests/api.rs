//! The HTTP JSON API, driven with `tower::ServiceExt::oneshot` (no socket):
//!
//! - on the demo province (SQLite): direct and authorized payments through the API, paid,
//!   receipted and read back (12, 已收到对方回单); idempotency (one voucher per key, a
//!   reused key refused, a missing one 400); bad input listing every problem and writing
//!   nothing; tokens and organisations refused; voucher steps; /healthz, /metrics,
//!   X-Request-Id, a request id on every log line; the OpenAPI description covering every
//!   route;
//! - on SQLite and PostgreSQL: a finance node alone (its vouchers built from a
//!   `Catalogue`), where the idempotency keys live in its store: one voucher per key,
//!   concurrent identical requests, and /healthz failing when its store is gone.
//!
//! PostgreSQL is found through `GUOKU_TEST_PG_URL`, else
//! `postgres://postgres@127.0.0.1:5432/postgres`; without a server the PostgreSQL tests say
//! SKIPPED loudly, and fail when `CI=true`.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use guoku_domain::{Amount, PayType, StYear};
use guoku_ledger::CreateAccountResult;
use guoku_node::api::{
    Api, ApiConfig, Catalogue, CatalogueBank, CatalogueUnit, Principal, TokenTable,
    demo_principals, router, routes,
};
use guoku_node::demo::{Demo, DemoOptions, DemoPostgres};
use guoku_node::exchange::{Clock, InMemory, InMemoryNetwork, Peer};
use guoku_node::party::{Holder, Party, PartyConfig, Staff};
use guoku_seal::Suite;
use guoku_seal::pki::{OrgRole, Post};
use guoku_seal::voucher::StampKind;
use guoku_store::access::UserId;
use guoku_store::books::{BookAccount, BookOp, IndicatorKey, Tenant};
use guoku_store::library::Backoff;
use guoku_store::{PgConfig, SqliteConfig, Store};
use guoku_voucher::Registry;
use guoku_voucher::lifecycle::{Exchange, Leg};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use time::OffsetDateTime;
use tower::ServiceExt;

mod common;
use common::{FINANCE_CODE, Pki};

// ----- requests ----------------------------------------------------------------------------

/// An answer: status, headers, body (JSON when it parses, else a string).
struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Value,
    text: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn error_code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }

    /// The problems' (field, rule) pairs.
    fn problems(&self) -> BTreeSet<(String, String)> {
        self.body["error"]["problems"]
            .as_array()
            .map(|ps| {
                ps.iter()
                    .map(|p| {
                        (
                            p["field"].as_str().unwrap_or("").to_owned(),
                            p["rule"].as_str().unwrap_or("").to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// One request.
#[derive(Default)]
struct Call<'a> {
    token: Option<&'a str>,
    key: Option<&'a str>,
    request_id: Option<&'a str>,
    body: Option<Value>,
}

async fn call(app: &Router, method: Method, uri: &str, c: Call<'_>) -> Answer {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(token) = c.token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    if let Some(key) = c.key {
        request = request.header("idempotency-key", key);
    }
    if let Some(id) = c.request_id {
        request = request.header("x-request-id", id);
    }
    let body = match c.body {
        Some(v) => {
            request = request.header(header::CONTENT_TYPE, "application/json");
            Body::from(serde_json::to_vec(&v).unwrap())
        }
        None => Body::empty(),
    };
    let response = app
        .clone()
        .oneshot(request.body(body).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::String(text.clone()));
    Answer {
        status,
        headers,
        body,
        text,
    }
}

fn payee() -> Value {
    json!({
        "name": "长沙市芙蓉建筑工程有限公司",
        "account": "6222-000000000001",
        "bank_name": "中国建设银行长沙芙蓉支行",
    })
}

fn direct_body(unit: &str, amount: &str, month: u8) -> Value {
    json!({
        "unit": unit,
        "amount": amount,
        "payee": payee(),
        "summary": "采购办公设备",
        "month": month,
    })
}

fn voucher_path(v: &Value) -> String {
    format!(
        "/api/v1/vouchers/{}/{}/{}/{}",
        v["adm_div"].as_str().unwrap(),
        v["year"].as_str().unwrap(),
        v["vt_code"].as_str().unwrap(),
        v["voucher_no"].as_str().unwrap()
    )
}

/// How many legs of `vt_code` on `leg` the store holds, in any state.
async fn count(store: &Store, vt_code: &str, leg: Leg) -> usize {
    let mut n = 0;
    for state in Exchange::ALL {
        if state.code(leg).is_none() {
            continue;
        }
        let page = store
            .library()
            .by_status(vt_code, leg, state, 0, 100)
            .await
            .unwrap();
        n += page.items.len();
    }
    n
}

// ----- both backends ----------------------------------------------------------------------

const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

#[derive(Clone, Copy, Debug)]
enum Backend {
    Sqlite,
    Postgres,
}

fn pg_url() -> String {
    std::env::var("GUOKU_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_PG_URL.to_owned())
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

async fn pg_connect() -> Result<tokio_postgres::Client, String> {
    let connected = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_postgres::connect(&pg_url(), tokio_postgres::NoTls),
    )
    .await;
    match connected {
        Ok(Ok((client, connection))) => {
            tokio::spawn(connection);
            Ok(client)
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".into()),
    }
}

/// Whether PostgreSQL answers; says so loudly when not (and fails under CI).
async fn pg_reachable() -> bool {
    match pg_connect().await {
        Ok(_) => true,
        Err(why) => {
            let url = pg_url();
            assert!(
                !in_ci(),
                "CI=true but PostgreSQL is unreachable at {url}: {why}"
            );
            eprintln!(
                "\n*** SKIPPED: PostgreSQL test — no server at {url} ({why}). \
                 Set GUOKU_TEST_PG_URL or run scripts/test.sh. ***\n"
            );
            false
        }
    }
}

/// Drops a test schema when the test ends, even after a panic.
struct SchemaGuard(String);

impl Drop for SchemaGuard {
    fn drop(&mut self) {
        let schema = self.0.clone();
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                if let Ok(client) = pg_connect().await {
                    let _ = client
                        .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                        .await;
                }
            });
        });
        let _ = done.join();
    }
}

struct TestStore {
    store: Store,
    schema: Option<String>,
    _dir: Option<tempfile::TempDir>,
    _guard: Option<SchemaGuard>,
}

static NEXT_SCHEMA: AtomicU64 = AtomicU64::new(0);

impl Backend {
    async fn store(self) -> TestStore {
        match self {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let store = Store::open_sqlite(SqliteConfig::new(dir.path().join("node.db")))
                    .await
                    .unwrap();
                TestStore {
                    store,
                    schema: None,
                    _dir: Some(dir),
                    _guard: None,
                }
            }
            Backend::Postgres => {
                let client = pg_connect().await.expect("PostgreSQL");
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.subsec_nanos());
                let schema = format!(
                    "guoku_api_{}_{}_{nanos}",
                    std::process::id(),
                    NEXT_SCHEMA.fetch_add(1, Ordering::Relaxed)
                );
                client
                    .batch_execute(&format!("CREATE SCHEMA {schema}"))
                    .await
                    .unwrap();
                let guard = SchemaGuard(schema.clone());
                let mut config = PgConfig::new(pg_url());
                config.schema = Some(schema.clone());
                config.pool_size = 4;
                let store = Store::connect_postgres(config).await.unwrap();
                TestStore {
                    store,
                    schema: Some(schema),
                    _dir: None,
                    _guard: Some(guard),
                }
            }
        }
    }
}

/// The same async test body on SQLite and on PostgreSQL, as two tests.
macro_rules! both_backends {
    ($name:ident, |$backend:ident| $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn body($backend: Backend) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                body(Backend::Sqlite).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if pg_reachable().await {
                    body(Backend::Postgres).await;
                }
            }
        }
    };
}

// ----- the demo ----------------------------------------------------------------------------

/// A clock the test moves.
fn clock() -> (Clock, Arc<AtomicI64>) {
    let t = Arc::new(AtomicI64::new(OffsetDateTime::now_utc().unix_timestamp()));
    let c = t.clone();
    let clock: Clock = Arc::new(move || {
        OffsetDateTime::from_unix_timestamp(c.load(Ordering::SeqCst)).expect("a time")
    });
    (clock, t)
}

struct DemoApi {
    demo: Arc<Demo>,
    app: Router,
    /// Tokens by login.
    tokens: HashMap<String, String>,
    clock: Clock,
    _schemas: Option<PrefixGuard>,
    _dir: tempfile::TempDir,
}

/// Drops every schema with a prefix when the test ends, even after a panic.
struct PrefixGuard(String);

impl Drop for PrefixGuard {
    fn drop(&mut self) {
        let prefix = self.0.clone();
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                let Ok(client) = pg_connect().await else {
                    return;
                };
                let Ok(rows) = client
                    .query(
                        "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1)",
                        &[&prefix],
                    )
                    .await
                else {
                    return;
                };
                for row in rows {
                    let name: String = row.get(0);
                    let _ = client
                        .batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                        .await;
                }
            });
        });
        let _ = done.join();
    }
}

impl DemoApi {
    async fn open(backend: Backend) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (clock, _) = clock();
        let (postgres, schemas) = match backend {
            Backend::Sqlite => (None, None),
            Backend::Postgres => {
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.subsec_nanos());
                let prefix = format!(
                    "t_api_{}_{}_{nanos}_",
                    std::process::id(),
                    NEXT_SCHEMA.fetch_add(1, Ordering::Relaxed)
                );
                (
                    Some(DemoPostgres {
                        url: pg_url(),
                        schema_prefix: prefix.clone(),
                    }),
                    Some(PrefixGuard(prefix)),
                )
            }
        };
        let options = DemoOptions {
            dir: dir.path().join("guoku-data"),
            fresh: false,
            suite: Suite::Sm,
            postgres,
        };
        let demo = Arc::new(Demo::open(&options, clock.clone()).await.unwrap());
        let (table, handed) = TokenTable::with_random_tokens(demo_principals(&demo));
        let tokens = handed
            .into_iter()
            .map(|(p, t)| (p.login, t.expose().to_owned()))
            .collect();
        let api = Api::demo(demo.clone(), Arc::new(table), ApiConfig::default());
        Self {
            app: router(api),
            demo,
            tokens,
            clock,
            _schemas: schemas,
            _dir: dir,
        }
    }

    fn token(&self, org: &str, post: &str) -> &str {
        &self.tokens[&format!("{org}-{post}")]
    }

    fn finance(&self) -> &str {
        self.token(self.demo.province.finance.code, "maker")
    }

    fn counter(&self) -> &str {
        self.token(self.demo.province.counter.code, "maker")
    }

    fn bank(&self) -> &str {
        self.token(self.demo.province.banks[0].code, "maker")
    }

    fn month(&self) -> u8 {
        u8::from((self.clock)().month())
    }

    fn unit(&self, i: usize) -> String {
        self.demo.province.units[i].code.clone()
    }
}

both_backends!(
    payments_through_the_api_are_paid_receipted_and_read_back,
    |backend| {
        let env = DemoApi::open(backend).await;
        let app = &env.app;
        let finance_org = env.demo.province.finance.code;
        let body = direct_body(&env.unit(4), "1234.56", env.month());

        // Finance issues a 5201.
        let first = call(
            app,
            Method::POST,
            "/api/v1/direct-payments",
            Call {
                token: Some(env.finance()),
                key: Some("pay-1"),
                body: Some(body.clone()),
                ..Call::default()
            },
        )
        .await;
        assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
        assert_eq!(first.body["vt_code"], "5201");
        assert_eq!(first.body["amount"], "1234.56");
        assert_eq!(first.body["status"]["code"], 0, "sent, not yet received");
        assert_eq!(first.body["direction"], "sent");

        // Double-clicked: the same answer, no second voucher.
        let again = call(
            app,
            Method::POST,
            "/api/v1/direct-payments",
            Call {
                token: Some(env.finance()),
                key: Some("pay-1"),
                body: Some(body.clone()),
                ..Call::default()
            },
        )
        .await;
        assert_eq!(again.status, StatusCode::CREATED);
        assert_eq!(again.header("idempotent-replayed"), Some("true"));
        assert_eq!(again.body, first.body);
        assert_eq!(
            count(&env.demo.finance.store, "5201", Leg::Original).await,
            1
        );

        // The same key for another payment is refused; no key at all is a 400.
        let other = call(
            app,
            Method::POST,
            "/api/v1/direct-payments",
            Call {
                token: Some(env.finance()),
                key: Some("pay-1"),
                body: Some(direct_body(&env.unit(4), "99.00", env.month())),
                ..Call::default()
            },
        )
        .await;
        assert_eq!(
            other.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            other.text
        );
        assert_eq!(other.error_code(), "idempotency_key_reused");
        let keyless = call(
            app,
            Method::POST,
            "/api/v1/direct-payments",
            Call {
                token: Some(env.finance()),
                body: Some(body.clone()),
                ..Call::default()
            },
        )
        .await;
        assert_eq!(keyless.status, StatusCode::BAD_REQUEST);
        assert_eq!(keyless.error_code(), "idempotency_key_missing");
        assert_eq!(
            count(&env.demo.finance.store, "5201", Leg::Original).await,
            1
        );

        // The counter sends an 8202.
        let authorized = call(
            app,
            Method::POST,
            "/api/v1/authorized-payments",
            Call {
                token: Some(env.counter()),
                key: Some("auth-1"),
                body: Some(json!({
                    "unit": env.unit(1),
                    "amount": "88.00",
                    "payee": payee(),
                    "summary": "差旅费",
                })),
                ..Call::default()
            },
        )
        .await;
        assert_eq!(
            authorized.status,
            StatusCode::CREATED,
            "{}",
            authorized.text
        );
        assert_eq!(authorized.body["vt_code"], "8202");

        // The parties work; the receipts come back.
        env.demo.settle(20).await.unwrap();
        let detail = call(
            app,
            Method::GET,
            &format!("{}?org={finance_org}", voucher_path(&first.body)),
            Call {
                token: Some(env.finance()),
                ..Call::default()
            },
        )
        .await;
        assert_eq!(detail.status, StatusCode::OK, "{}", detail.text);
        let status = &detail.body["voucher"]["status"];
        assert_eq!(status["code"], 12, "{status}");
        assert_eq!(status["zh"], "已收到对方回单");
        assert_eq!(status["en"], "receipt received");
        assert_eq!(detail.body["fields"]["PayAmt"], "1234.56");
        let actors: BTreeSet<&str> = detail.body["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["actor"].as_str().unwrap())
            .collect();
        assert!(
            actors.contains(format!("{finance_org}-maker").as_str()),
            "the user who issued it is the actor: {actors:?}"
        );
        assert!(actors.contains("worker"), "{actors:?}");

        let at_counter = call(
            app,
            Method::GET,
            &voucher_path(&authorized.body),
            Call {
                token: Some(env.counter()),
                ..Call::default()
            },
        )
        .await;
        assert_eq!(
            at_counter.body["voucher"]["status"]["code"], 12,
            "{}",
            at_counter.text
        );

        // The list: finance's 5201s with their receipt back — exactly the one.
        let page = call(
            app,
            Method::GET,
            "/api/v1/vouchers?vt_code=5201&state=12&limit=10",
            Call {
                token: Some(env.finance()),
                ..Call::default()
            },
        )
        .await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        let items = page.body["items"].as_array().unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0]["voucher_no"], first.body["voucher_no"]);
        assert_eq!(page.body["next"], Value::Null);

        // The bank paid it: it can no longer be returned.
        let bank_org = env.demo.province.banks[0].code;
        let returned = call(
            app,
            Method::POST,
            &format!("{}/return", voucher_path(&first.body)),
            Call {
                token: Some(env.bank()),
                key: Some("ret-1"),
                body: Some(json!({"reason": "收款人账号有误"})),
                ..Call::default()
            },
        )
        .await;
        assert_eq!(returned.status, StatusCode::CONFLICT, "{}", returned.text);
        assert_eq!(returned.error_code(), "illegal_transition");
        let at_bank = env.demo.banks[0]
            .store
            .library()
            .status(
                &guoku_voucher::VoucherKey {
                    adm_div_code: first.body["adm_div"].as_str().unwrap().into(),
                    st_year: first.body["year"].as_str().unwrap().into(),
                    vt_code: "5201".into(),
                    voucher_no: first.body["voucher_no"].as_str().unwrap().into(),
                },
                Leg::Original,
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(at_bank.receiver, bank_org);
        assert_ne!(at_bank.exchange, Exchange::Returned);
    }
);

both_backends!(
    bad_input_lists_every_problem_and_writes_nothing,
    |backend| {
        let env = DemoApi::open(backend).await;
        let app = &env.app;
        let bad = call(
            app,
            Method::POST,
            "/api/v1/direct-payments",
            Call {
                token: Some(env.finance()),
                key: Some("bad-1"),
                body: Some(json!({
                    "unit": "NOPE",
                    "amount": "1.5e3",
                    "payee": {},
                    "summary": "采购办公设备",
                    "month": 13,
                    "colour": "red",
                })),
                ..Call::default()
            },
        )
        .await;
        assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.text);
        assert_eq!(bad.error_code(), "invalid_request");
        let expected: BTreeSet<(String, String)> = [
            ("unit", "unknown_unit"),
            ("amount", "format"),
            ("payee.name", "required"),
            ("payee.account", "required"),
            ("payee.bank_name", "required"),
            ("month", "range"),
            ("colour", "unknown_field"),
        ]
        .into_iter()
        .map(|(f, r)| (f.to_owned(), r.to_owned()))
        .collect();
        assert_eq!(bad.problems(), expected);

        // Numbers are not amounts; an empty payee name and a bad account are named.
        let numbers = call(
            app,
            Method::POST,
            "/api/v1/direct-payments",
            Call {
                token: Some(env.finance()),
                key: Some("bad-2"),
                body: Some(json!({
                    "unit": env.unit(0),
                    "amount": 1500.0,
                    "payee": {"name": " ", "account": "6222 0000", "bank_name": "某银行"},
                    "summary": "采购办公设备",
                    "month": env.month(),
                })),
                ..Call::default()
            },
        )
        .await;
        assert_eq!(numbers.status, StatusCode::UNPROCESSABLE_ENTITY);
        let expected: BTreeSet<(String, String)> = [
            ("amount", "type"),
            ("payee.name", "required"),
            ("payee.account", "format"),
        ]
        .into_iter()
        .map(|(f, r)| (f.to_owned(), r.to_owned()))
        .collect();
        assert_eq!(numbers.problems(), expected);

        // Not JSON at all.
        let request = Request::post("/api/v1/direct-payments")
            .header(header::AUTHORIZATION, format!("Bearer {}", env.finance()))
            .header("idempotency-key", "bad-3")
            .body(Body::from("amount=1234.56"))
            .unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);

        // Too large: refused before it is read.
        let huge = call(
            app,
            Method::POST,
            "/api/v1/direct-payments",
            Call {
                token: Some(env.finance()),
                key: Some("bad-4"),
                body: Some(json!({"summary": "x".repeat(70_000)})),
                ..Call::default()
            },
        )
        .await;
        assert_eq!(huge.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", huge.text);
        assert_eq!(huge.error_code(), "body_too_large");

        // Nothing was written: no voucher, and the keys are still free.
        assert_eq!(
            count(&env.demo.finance.store, "5201", Leg::Original).await,
            0
        );
        let good = call(
            app,
            Method::POST,
            "/api/v1/direct-payments",
            Call {
                token: Some(env.finance()),
                key: Some("bad-1"),
                body: Some(direct_body(&env.unit(0), "1500.00", env.month())),
                ..Call::default()
            },
        )
        .await;
        assert_eq!(good.status, StatusCode::CREATED, "{}", good.text);
        assert_eq!(
            count(&env.demo.finance.store, "5201", Leg::Original).await,
            1
        );
    }
);

both_backends!(
    wrong_tokens_and_organisations_are_refused_and_write_nothing,
    |backend| {
        let env = DemoApi::open(backend).await;
        let app = &env.app;
        let body = direct_body(&env.unit(0), "10.00", env.month());
        let post = |token: Option<&'static str>| Call {
            token,
            key: Some("k"),
            body: Some(body.clone()),
            ..Call::default()
        };

        let anonymous = call(app, Method::POST, "/api/v1/direct-payments", post(None)).await;
        assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
        assert_eq!(anonymous.error_code(), "unauthenticated");
        assert!(anonymous.header("www-authenticate").is_some());
        let forged = call(
            app,
            Method::POST,
            "/api/v1/direct-payments",
            post(Some(
                "gk_0000000000000000000000000000000000000000000000000000000000000000",
            )),
        )
        .await;
        assert_eq!(forged.status, StatusCode::UNAUTHORIZED);

        // A bank's user cannot issue a 5201, nor the counter's.
        for token in [env.bank(), env.counter()] {
            let a = call(
                app,
                Method::POST,
                "/api/v1/direct-payments",
                Call {
                    token: Some(token),
                    key: Some("k"),
                    body: Some(body.clone()),
                    ..Call::default()
                },
            )
            .await;
            assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.text);
            assert_eq!(a.error_code(), "forbidden");
        }
        // Finance cannot act for, or read, a bank.
        let bank_org = env.demo.province.banks[0].code;
        let as_bank = call(
            app,
            Method::POST,
            &format!("/api/v1/direct-payments?org={bank_org}"),
            Call {
                token: Some(env.finance()),
                key: Some("k"),
                body: Some(body.clone()),
                ..Call::default()
            },
        )
        .await;
        assert_eq!(as_bank.status, StatusCode::FORBIDDEN);
        let read_bank = call(
            app,
            Method::GET,
            &format!("/api/v1/vouchers?org={bank_org}&vt_code=5201&state=1"),
            Call {
                token: Some(env.finance()),
                ..Call::default()
            },
        )
        .await;
        assert_eq!(read_bank.status, StatusCode::FORBIDDEN);
        let anonymous_read = call(
            app,
            Method::GET,
            "/api/v1/vouchers?vt_code=5201&state=1",
            Call::default(),
        )
        .await;
        assert_eq!(anonymous_read.status, StatusCode::UNAUTHORIZED);
        // A bank user cannot send finance's clearing requests either, nor finance a bank's.
        let clearing = call(
            app,
            Method::POST,
            "/api/v1/clearing-requests",
            Call {
                token: Some(env.finance()),
                key: Some("c"),
                body: Some(json!({})),
                ..Call::default()
            },
        )
        .await;
        assert_eq!(clearing.status, StatusCode::FORBIDDEN);

        for store in [&env.demo.finance.store, &env.demo.banks[0].store] {
            assert_eq!(count(store, "5201", Leg::Original).await, 0);
        }
        // The key "k" was never taken: finance can use it now.
        let good = call(
            app,
            Method::POST,
            "/api/v1/direct-payments",
            Call {
                token: Some(env.finance()),
                key: Some("k"),
                body: Some(body.clone()),
                ..Call::default()
            },
        )
        .await;
        assert_eq!(good.status, StatusCode::CREATED, "{}", good.text);
    }
);

both_backends!(health_metrics_and_request_ids, |backend| {
    let env = DemoApi::open(backend).await;
    let app = &env.app;
    let health = call(app, Method::GET, "/healthz", Call::default()).await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.body["status"], "ok");
    assert_eq!(health.body["parties"].as_array().unwrap().len(), 5);

    // A well-formed id is kept; a malformed one replaced; errors carry it in the body.
    let kept = call(
        app,
        Method::GET,
        "/healthz",
        Call {
            request_id: Some("req-42.a:b"),
            ..Call::default()
        },
    )
    .await;
    assert_eq!(kept.header("x-request-id"), Some("req-42.a:b"));
    let replaced = call(
        app,
        Method::GET,
        "/api/v1/vouchers",
        Call {
            request_id: Some("no spaces allowed!"),
            ..Call::default()
        },
    )
    .await;
    let id = replaced.header("x-request-id").unwrap().to_owned();
    assert_eq!(id.len(), 32, "{id}");
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(replaced.status, StatusCode::UNAUTHORIZED);
    assert_eq!(replaced.body["error"]["request_id"], id.as_str());
    let unknown = call(app, Method::GET, "/nowhere", Call::default()).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.error_code(), "not_found");
    assert_eq!(
        unknown.body["error"]["request_id"].as_str(),
        unknown.header("x-request-id")
    );
    let wrong_method = call(app, Method::DELETE, "/healthz", Call::default()).await;
    assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(wrong_method.error_code(), "method_not_allowed");

    // A payment, paid and receipted: the figures show it.
    let paid = call(
        app,
        Method::POST,
        "/api/v1/direct-payments",
        Call {
            token: Some(env.finance()),
            key: Some("m-1"),
            body: Some(direct_body(&env.unit(2), "500.00", env.month())),
            ..Call::default()
        },
    )
    .await;
    assert_eq!(paid.status, StatusCode::CREATED, "{}", paid.text);
    env.demo.settle(20).await.unwrap();
    let metrics = call(app, Method::GET, "/metrics", Call::default()).await;
    assert_eq!(metrics.status, StatusCode::OK);
    assert!(
        metrics
            .header("content-type")
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let finance_org = env.demo.province.finance.code;
    let bank_org = env.demo.province.banks[0].code;
    for line in [
        format!(
            "guoku_vouchers{{org=\"{finance_org}\",vt_code=\"5201\",leg=\"original\",status=\"12\"}} 1"
        ),
        format!(
            "guoku_vouchers{{org=\"{bank_org}\",vt_code=\"5201\",leg=\"receipt\",status=\"7\"}} 1"
        ),
        format!("guoku_api_payments_total{{org=\"{finance_org}\",kind=\"direct\"}} 1"),
        format!("guoku_api_payment_amount_fen_total{{org=\"{finance_org}\",kind=\"direct\"}} 50000"),
        format!("guoku_vouchers_unread{{org=\"{finance_org}\",role=\"finance\"}} 0"),
        format!("guoku_outbox_entries{{org=\"{finance_org}\",role=\"finance\"}} 0"),
        "guoku_http_request_duration_seconds_count{method=\"POST\",route=\"/api/v1/direct-payments\",status=\"201\"} 1".to_owned(),
        "guoku_http_request_duration_seconds_count{method=\"GET\",route=\"unmatched\",status=\"404\"} 1".to_owned(),
        "guoku_api_idempotency_total{outcome=\"proceeded\"} 1".to_owned(),
        "guoku_metrics_truncated 0".to_owned(),
    ] {
        assert!(metrics.text.contains(&line), "{line} missing from\n{}", metrics.text);
    }
    assert!(metrics.text.contains(&format!(
        "guoku_worker_vouchers_handled_total{{org=\"{bank_org}\",role=\"agent_bank\"}}"
    )));
    assert!(metrics.text.trim_end().ends_with("# EOF"));
});

both_backends!(
    vouchers_are_voided_with_their_quota_back_and_missing_ones_are_404,
    |backend| {
        let env = DemoApi::open(backend).await;
        let app = &env.app;
        let issued = call(
            app,
            Method::POST,
            "/api/v1/direct-payments",
            Call {
                token: Some(env.finance()),
                key: Some("v-1"),
                body: Some(direct_body(&env.unit(3), "700.00", env.month())),
                ..Call::default()
            },
        )
        .await;
        assert_eq!(issued.status, StatusCode::CREATED, "{}", issued.text);
        let path = voucher_path(&issued.body);
        // Not delivered yet (nobody ticked): finance may void it.
        let without_reason = call(
            app,
            Method::POST,
            &format!("{path}/void"),
            Call {
                token: Some(env.finance()),
                key: Some("void-1"),
                body: Some(json!({})),
                ..Call::default()
            },
        )
        .await;
        assert_eq!(without_reason.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            without_reason.problems(),
            [("reason".to_owned(), "required".to_owned())].into()
        );
        let voided = call(
            app,
            Method::POST,
            &format!("{path}/void"),
            Call {
                token: Some(env.finance()),
                key: Some("void-1"),
                body: Some(json!({"reason": "金额填错"})),
                ..Call::default()
            },
        )
        .await;
        assert_eq!(voided.status, StatusCode::OK, "{}", voided.text);
        assert_eq!(voided.body["status"]["code"], -1);
        assert_eq!(voided.body["reason"], "金额填错");
        let detail = call(
            app,
            Method::GET,
            &path,
            Call {
                token: Some(env.finance()),
                ..Call::default()
            },
        )
        .await;
        let void_event = detail.body["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["action"] == "void")
            .cloned()
            .unwrap();
        assert_eq!(
            void_event["actor"],
            format!("{}-maker", env.demo.province.finance.code)
        );

        // Its plan came back: the unit can spend the whole month's plan again.
        let whole = call(
            app,
            Method::POST,
            "/api/v1/direct-payments",
            Call {
                token: Some(env.finance()),
                key: Some("v-2"),
                body: Some(direct_body(&env.unit(3), "5000000.00", env.month())),
                ..Call::default()
            },
        )
        .await;
        assert_eq!(whole.status, StatusCode::CREATED, "{}", whole.text);
        let over = call(
            app,
            Method::POST,
            "/api/v1/direct-payments",
            Call {
                token: Some(env.finance()),
                key: Some("v-3"),
                body: Some(direct_body(&env.unit(3), "0.01", env.month())),
                ..Call::default()
            },
        )
        .await;
        assert_eq!(
            over.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            over.text
        );
        assert_eq!(over.error_code(), "refused_by_books");

        let missing = call(
            app,
            Method::POST,
            "/api/v1/vouchers/430000/2020/5201/NOSUCH/refuse",
            Call {
                token: Some(env.bank()),
                key: Some("r-1"),
                body: Some(json!({"reason": "无此凭证"})),
                ..Call::default()
            },
        )
        .await;
        assert_eq!(missing.status, StatusCode::NOT_FOUND, "{}", missing.text);
        assert_eq!(missing.error_code(), "voucher_not_found");
    }
);

#[tokio::test]
async fn openapi_describes_every_route_and_only_those() {
    let doc: Value = guoku_node::api::openapi::document();
    assert_eq!(doc["openapi"], "3.1.0");
    let mut described = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            described.insert((method.to_uppercase(), path.clone()));
            let responses = op["responses"].as_object().unwrap();
            assert!(
                responses.keys().any(|s| s.starts_with('2')),
                "{method} {path} has no success response"
            );
        }
    }
    let served: BTreeSet<(String, String)> = routes()
        .into_iter()
        .map(|(m, p)| (m.as_str().to_owned(), p.to_owned()))
        .collect();
    assert_eq!(described, served);

    // Every reference resolves.
    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r.clone());
                }
                m.values().for_each(|v| refs(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(!all.is_empty());
    for r in all {
        let pointer = r.strip_prefix('#').unwrap();
        assert!(doc.pointer(pointer).is_some(), "{r} does not resolve");
    }
    // Every error code is in the error schema and used by some response.
    let codes: BTreeSet<&str> = doc
        .pointer("/components/schemas/Error/properties/error/properties/code/enum")
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    fn listed(v: &Value, out: &mut BTreeSet<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::Array(codes)) = m.get("x-error-codes") {
                    out.extend(codes.iter().filter_map(|c| c.as_str().map(str::to_owned)));
                }
                m.values().for_each(|v| listed(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| listed(v, out)),
            _ => {}
        }
    }
    let mut answered = BTreeSet::new();
    listed(&doc, &mut answered);
    for code in guoku_node::api::ErrorCode::ALL {
        assert!(codes.contains(code.as_str()), "{code:?}");
        assert!(
            answered.contains(code.as_str()),
            "{} is in no response's x-error-codes",
            code.as_str()
        );
    }
    assert_eq!(answered.len(), codes.len(), "{answered:?}");

    // And it is what the router serves; every described route is routed (not a 404 or 405).
    let env_app = {
        let table = TokenTable::new(Vec::new());
        let api: Api<InMemory> = Api::new(
            Arc::new(table),
            Arc::new(empty_catalogue()),
            ApiConfig::default(),
        );
        router(api)
    };
    let served_doc = call(
        &env_app,
        Method::GET,
        "/api/v1/openapi.json",
        Call::default(),
    )
    .await;
    assert_eq!(served_doc.body, doc);
    for (method, path) in routes() {
        let concrete = path
            .replace("{adm_div}", "430000")
            .replace("{year}", "2026")
            .replace("{vt_code}", "5201")
            .replace("{voucher_no}", "X1");
        let a = call(&env_app, method.clone(), &concrete, Call::default()).await;
        assert!(
            !matches!(a.error_code(), "not_found" | "method_not_allowed"),
            "{method} {path}: {}",
            a.text
        );
    }
}

// ----- logs ----------------------------------------------------------------------------

mod capture {
    use std::sync::{Arc, Mutex};

    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id};
    use tracing::{Event, Subscriber};
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::Context;
    use tracing_subscriber::registry::LookupSpan;

    /// (the request id of the enclosing `request` span, the message) of every event.
    pub type Lines = Arc<Mutex<Vec<(Option<String>, String)>>>;

    pub struct Capture(pub Lines);

    struct RequestIdOf(String);

    #[derive(Default)]
    struct Fields {
        request_id: Option<String>,
        message: Option<String>,
    }

    impl Visit for Fields {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            match field.name() {
                "request_id" => self.request_id = Some(format!("{value:?}")),
                "message" => self.message = Some(format!("{value:?}")),
                _ => {}
            }
        }

        fn record_str(&mut self, field: &Field, value: &str) {
            match field.name() {
                "request_id" => self.request_id = Some(value.to_owned()),
                "message" => self.message = Some(value.to_owned()),
                _ => {}
            }
        }
    }

    impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
        fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
            let mut fields = Fields::default();
            attrs.record(&mut fields);
            if let (Some(rid), Some(span)) = (fields.request_id, ctx.span(id)) {
                span.extensions_mut().insert(RequestIdOf(rid));
            }
        }

        fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
            let rid = ctx.event_scope(event).and_then(|scope| {
                scope
                    .from_root()
                    .find_map(|s| s.extensions().get::<RequestIdOf>().map(|r| r.0.clone()))
            });
            let mut fields = Fields::default();
            event.record(&mut fields);
            self.0
                .lock()
                .unwrap()
                .push((rid, fields.message.unwrap_or_default()));
        }
    }
}

#[tokio::test]
async fn every_log_line_of_a_request_carries_its_request_id() {
    use tracing_subscriber::layer::SubscriberExt;

    let env = DemoApi::open(Backend::Sqlite).await;
    let lines: capture::Lines = Arc::new(Mutex::new(Vec::new()));
    let subscriber = tracing_subscriber::registry().with(capture::Capture(lines.clone()));
    let guard = tracing::subscriber::set_default(subscriber);
    let paid = call(
        &env.app,
        Method::POST,
        "/api/v1/direct-payments",
        Call {
            token: Some(env.finance()),
            key: Some("log-1"),
            request_id: Some("log-req-1"),
            body: Some(direct_body(&env.unit(0), "1.00", env.month())),
        },
    )
    .await;
    assert_eq!(paid.status, StatusCode::CREATED, "{}", paid.text);
    let refused = call(
        &env.app,
        Method::POST,
        "/api/v1/direct-payments",
        Call {
            token: Some(env.bank()),
            key: Some("log-2"),
            request_id: Some("log-req-2"),
            body: Some(direct_body(&env.unit(0), "1.00", env.month())),
        },
    )
    .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    drop(guard);

    let lines = lines.lock().unwrap().clone();
    assert!(!lines.is_empty());
    for (rid, message) in &lines {
        assert!(rid.is_some(), "a line without a request id: {message}");
    }
    let of = |id: &str| -> Vec<&str> {
        lines
            .iter()
            .filter(|(r, _)| r.as_deref() == Some(id))
            .map(|(_, m)| m.as_str())
            .collect()
    };
    let first = of("log-req-1");
    assert!(first.contains(&"direct payment issued"), "{first:?}");
    assert!(first.contains(&"request answered"), "{first:?}");
    let second = of("log-req-2");
    assert!(second.contains(&"request refused"), "{second:?}");
    assert!(second.contains(&"request answered"), "{second:?}");
}

// ----- a finance node alone, on SQLite and PostgreSQL ----------------------------------------

const UNIT: &str = "A43000001";
const ADM_DIV: &str = "430000";
const BANK: &str = "102551000015";
const MONTHLY_PLAN_FEN: i64 = 100_000;
const TOKEN: &str = "gk_finance-maker-token";
const LOGIN: &str = "finance-maker";

fn empty_catalogue() -> Catalogue {
    Catalogue {
        registry: Arc::new(Registry::builtin()),
        year: "2026".parse().unwrap(),
        finance_name: "湖南省财政厅".into(),
        direct_bank: CatalogueBank {
            code: BANK.into(),
            name: "中国工商银行长沙分行".into(),
        },
        banks: Vec::new(),
        units: Vec::new(),
        direct_defaults: Vec::new(),
        authorized_defaults: Vec::new(),
    }
}

/// Finance alone on `backend`: one unit with a monthly plan, its vouchers built from a
/// catalogue, one user.
struct FinanceNode {
    app: Router,
    party: Arc<Party<InMemory>>,
    store: TestStore,
    year: StYear,
    month: u8,
}

async fn finance_node(backend: Backend) -> FinanceNode {
    let pki = Pki::new("测试根CA");
    let store = backend.store().await;
    let registry = Arc::new(Registry::builtin());
    let now = OffsetDateTime::now_utc();
    let clock: Clock = Arc::new(OffsetDateTime::now_utc);
    let date = Party::<InMemory>::business_date(now);
    let year: StYear = date.to_string()[..4].parse().unwrap();
    let month = u8::from(
        (now + time::Duration::hours(8)).month(), // the business day's month (UTC+8)
    );

    // The books: an indicator for the unit, a plan in every month.
    let key = IndicatorKey {
        tenant: Tenant {
            adm_div: ADM_DIV.parse().unwrap(),
            year,
        },
        unit: UNIT.parse().unwrap(),
        func: "2050201".parse().unwrap(),
        eco: "30201".parse().unwrap(),
        fund: "1".parse().unwrap(),
        pay: PayType::Direct,
    };
    let mut accounts = vec![
        BookAccount::budget_source(key.tenant),
        BookAccount::indicator(&key),
    ];
    let mut ops = vec![
        BookOp::approve_indicator(1, &key, Amount::from_fen(MONTHLY_PLAN_FEN * 12).unwrap())
            .unwrap(),
    ];
    for m in 1..=12 {
        accounts.push(BookAccount::plan(&key, m).unwrap());
        accounts.push(BookAccount::plan_used(&key, m).unwrap());
        ops.push(
            BookOp::approve_plan(
                1 + u128::from(m),
                &key,
                m,
                Amount::from_fen(MONTHLY_PLAN_FEN).unwrap(),
            )
            .unwrap(),
        );
    }
    for r in store.store.create_book_accounts(accounts).await.unwrap() {
        assert!(matches!(r, CreateAccountResult::Ok), "{r:?}");
    }
    let secs = u64::try_from(now.unix_timestamp()).unwrap();
    for r in store.store.apply_book_ops(secs, &ops).await.unwrap() {
        r.unwrap();
    }

    // The staff and the party.
    let org = common::finance();
    let holder = |post, name: &str| {
        let h = pki.person(&org, post, name);
        Holder {
            name: name.into(),
            key: h.key,
            certificate: h.cert,
        }
    };
    let signer_keys = pki.person(&org, Post::Signer, "王五");
    let business_seal = pki.seal(&org, StampKind::Ywzyz, "财政业务专用章", &signer_keys);
    let staff = Staff {
        maker: holder(Post::Maker, "张三"),
        checker: holder(Post::Checker, "李四"),
        signer: Holder {
            name: "王五".into(),
            key: signer_keys.key,
            certificate: signer_keys.cert,
        },
        business_seal,
        paid_seal: None,
    };
    let me = Peer {
        role: OrgRole::Finance,
        org_code: FINANCE_CODE.into(),
    };
    let config = PartyConfig {
        me: me.clone(),
        name: "湖南省财政厅".into(),
        suite: Suite::Sm,
        finance: FINANCE_CODE.into(),
        pboc: "001430000001".into(),
        bank_no: String::new(),
        unit_accounts: Vec::new(),
        clearing_templates: Vec::new(),
        backoff: Backoff { base: 2, cap: 60 },
        clearing_every_secs: 0,
        status_every_secs: 0,
    };
    let transport = InMemory::new(InMemoryNetwork::new(), me);
    let party = Arc::new(Party::new(
        config,
        registry.clone(),
        store.store.clone(),
        staff,
        transport,
        clock,
    ));

    let catalogue = Catalogue {
        registry,
        year,
        units: vec![CatalogueUnit {
            code: UNIT.into(),
            name: "湖南省教育厅".into(),
            adm_div: ADM_DIV.into(),
            func: "2050201".into(),
            eco: "30201".into(),
            fund: "1".into(),
            zba: "1901-4300000001".into(),
            bank: 0,
            finance_zba: "1901-4300000000".into(),
        }],
        ..empty_catalogue()
    };
    let table = TokenTable::new(vec![(
        guoku_node::api::token_hash(TOKEN),
        Principal {
            user: UserId(7),
            login: LOGIN.into(),
            org: FINANCE_CODE.into(),
            post: Post::Maker,
        },
    )]);
    let api =
        Api::new(Arc::new(table), Arc::new(catalogue), ApiConfig::default()).serve(party.clone());
    FinanceNode {
        app: router(api),
        party,
        store,
        year,
        month,
    }
}

fn finance_call(key: &str, body: Value) -> Call<'_> {
    Call {
        token: Some(TOKEN),
        key: Some(key),
        body: Some(body),
        ..Call::default()
    }
}

both_backends!(
    a_key_makes_one_voucher_and_another_body_is_refused,
    |backend| {
        let node = finance_node(backend).await;
        let body = direct_body(UNIT, "321.00", node.month);
        let first = call(
            &node.app,
            Method::POST,
            "/api/v1/direct-payments",
            finance_call("once", body.clone()),
        )
        .await;
        assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
        let again = call(
            &node.app,
            Method::POST,
            "/api/v1/direct-payments",
            finance_call("once", body.clone()),
        )
        .await;
        assert_eq!(again.status, StatusCode::CREATED);
        assert_eq!(again.header("idempotent-replayed"), Some("true"));
        assert_eq!(again.body["voucher_no"], first.body["voucher_no"]);
        let other = call(
            &node.app,
            Method::POST,
            "/api/v1/direct-payments",
            finance_call("once", direct_body(UNIT, "322.00", node.month)),
        )
        .await;
        assert_eq!(
            other.error_code(),
            "idempotency_key_reused",
            "{}",
            other.text
        );
        assert_eq!(count(&node.store.store, "5201", Leg::Original).await, 1);

        // A refusal of the books is answered the same way again, without asking them twice.
        let too_much = direct_body(UNIT, "5000.00", node.month);
        let refused = call(
            &node.app,
            Method::POST,
            "/api/v1/direct-payments",
            finance_call("too-much", too_much.clone()),
        )
        .await;
        assert_eq!(refused.error_code(), "refused_by_books", "{}", refused.text);
        let refused_again = call(
            &node.app,
            Method::POST,
            "/api/v1/direct-payments",
            finance_call("too-much", too_much),
        )
        .await;
        assert_eq!(refused_again.error_code(), "refused_by_books");
        assert_eq!(refused_again.header("idempotent-replayed"), Some("true"));
        assert_eq!(
            refused_again.body["error"]["request_id"].as_str(),
            refused_again.header("x-request-id"),
            "a replayed error names this request"
        );

        // Read back: not yet received by the bank (nobody delivered), the user as actor.
        let detail = call(
            &node.app,
            Method::GET,
            &voucher_path(&first.body),
            Call {
                token: Some(TOKEN),
                ..Call::default()
            },
        )
        .await;
        assert_eq!(detail.status, StatusCode::OK, "{}", detail.text);
        assert_eq!(detail.body["voucher"]["status"]["code"], 0);
        assert_eq!(detail.body["voucher"]["status"]["zh"], "对方未接收");
        assert!(
            detail.body["events"]
                .as_array()
                .unwrap()
                .iter()
                .all(|e| e["actor"] == LOGIN),
            "{}",
            detail.text
        );
        let health = call(&node.app, Method::GET, "/healthz", Call::default()).await;
        assert_eq!(health.status, StatusCode::OK);
        let metrics = call(&node.app, Method::GET, "/metrics", Call::default()).await;
        let line = format!(
            "guoku_vouchers{{org=\"{FINANCE_CODE}\",vt_code=\"5201\",leg=\"original\",status=\"0\"}} 1"
        );
        assert!(metrics.text.contains(&line), "{}", metrics.text);
        assert!(metrics.text.contains(&format!(
            "guoku_outbox_entries{{org=\"{FINANCE_CODE}\",role=\"finance\"}} 1"
        )));
    }
);

both_backends!(concurrent_identical_requests_make_one_voucher, |backend| {
    let node = finance_node(backend).await;
    let body = direct_body(UNIT, "12.34", node.month);
    let (a, b, c) = tokio::join!(
        call(
            &node.app,
            Method::POST,
            "/api/v1/direct-payments",
            finance_call("race", body.clone())
        ),
        call(
            &node.app,
            Method::POST,
            "/api/v1/direct-payments",
            finance_call("race", body.clone())
        ),
        call(
            &node.app,
            Method::POST,
            "/api/v1/direct-payments",
            finance_call("race", body.clone())
        ),
    );
    let answers = [&a, &b, &c];
    let fresh = answers
        .iter()
        .filter(|x| x.status == StatusCode::CREATED && x.header("idempotent-replayed").is_none())
        .count();
    assert_eq!(
        fresh, 1,
        "exactly one proceeds: {} {} {}",
        a.text, b.text, c.text
    );
    for x in answers {
        assert!(
            x.status == StatusCode::CREATED
                || (x.status == StatusCode::CONFLICT
                    && x.error_code() == "idempotency_key_in_use"
                    && x.header("retry-after").is_some()),
            "{} {}",
            x.status,
            x.text
        );
    }
    assert_eq!(count(&node.store.store, "5201", Leg::Original).await, 1);
    // The plan was drawn on once.
    let used = node
        .party
        .store
        .account(
            BookAccount::plan_used(
                &IndicatorKey {
                    tenant: Tenant {
                        adm_div: ADM_DIV.parse().unwrap(),
                        year: node.year,
                    },
                    unit: UNIT.parse().unwrap(),
                    func: "2050201".parse().unwrap(),
                    eco: "30201".parse().unwrap(),
                    fund: "1".parse().unwrap(),
                    pay: PayType::Direct,
                },
                node.month,
            )
            .unwrap()
            .id(),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(used.debits_posted + used.credits_posted, 1_234);
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_answers_503_when_the_store_is_gone() {
    if !pg_reachable().await {
        return;
    }
    let node = finance_node(Backend::Postgres).await;
    let ok = call(&node.app, Method::GET, "/healthz", Call::default()).await;
    assert_eq!(ok.status, StatusCode::OK);
    let schema = node.store.schema.clone().unwrap();
    pg_connect()
        .await
        .unwrap()
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
    let gone = call(&node.app, Method::GET, "/healthz", Call::default()).await;
    assert_eq!(
        gone.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        gone.text
    );
    assert_eq!(gone.body["status"], "unavailable");
    assert_eq!(gone.body["parties"][0]["store"], "unavailable");
}
