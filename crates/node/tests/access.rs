//! The access policy: the whole post × action matrix, segregation of duties on voucher
//! steps and on posts (三权分立), division visibility down the AdmDivCode chain, business
//! windows, passwords and lockout; and the same rules through the store on SQLite and on
//! PostgreSQL (each test in its own file or schema; PostgreSQL is found through
//! `GUOKU_TEST_PG_URL`, else `postgres://postgres@127.0.0.1:5432/postgres`; without a server
//! the PostgreSQL tests say SKIPPED loudly, and fail when `CI=true`).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use guoku_domain::AdmDivCode;
use guoku_node::access::{
    AccessDenied, Action, Denied, LockoutPolicy, LoginError, Password, PasswordError, PolicyError,
    Post, Principal, SodViolation, Step, after_failure, after_success, check_new_password,
    check_posts, check_step, check_window, create_user, grant_division, grant_post, hash_password,
    login, may, needs_rehash, take_step, verify_password, window_open,
};
use guoku_store::access::{
    AccessError, BudgetUnit, BusinessWindow, Division, LoginState, StepRecord, UserId, UserRecord,
    UserStatus,
};
use guoku_store::{PgConfig, SqliteConfig, Store};
use guoku_voucher::VoucherKey;
use rand::SeedableRng;
use rand::rngs::StdRng;

fn code(s: &str) -> AdmDivCode {
    s.parse().unwrap()
}

fn principal(id: u64, posts: &[Post], divisions: &[&str]) -> Principal {
    Principal {
        id: UserId(id),
        login: format!("user{id}"),
        posts: posts.iter().copied().collect(),
        divisions: divisions.iter().map(|d| code(d)).collect(),
        units: BTreeSet::new(),
        active: true,
    }
}

// ---------------------------------------------------------------------------------------
// The permission matrix

/// Every post × action pair: `Y` may, `.` may not. Columns in [`Action::ALL`] order:
/// view vouchers, view books, make, check, approve, sign, return, void, manage divisions,
/// manage users, grant access, manage seals, view users, view audit log.
#[rustfmt::skip]
const MATRIX: &[(Post, &str)] = &[
    //                    VV VB MV CV AV SV RV XV MD MU GA MS VU VA
    (Post::Maker,         "Y  Y  Y  .  .  .  .  .  .  .  .  .  .  ."),
    (Post::Checker,       "Y  Y  .  Y  Y  .  Y  Y  .  .  .  .  .  ."),
    (Post::Signer,        "Y  Y  .  .  .  Y  .  .  .  .  .  .  .  ."),
    (Post::SystemAdmin,   ".  .  .  .  .  .  .  .  Y  Y  .  .  Y  ."),
    (Post::SecurityAdmin, ".  .  .  .  .  .  .  .  .  .  Y  Y  Y  ."),
    (Post::AuditAdmin,    "Y  Y  .  .  .  .  .  .  .  .  .  .  Y  Y"),
];

#[test]
fn every_post_and_action_pair_of_the_matrix() {
    assert_eq!(MATRIX.len(), Post::ALL.len());
    let mut checked = 0;
    for (post, row) in MATRIX {
        let marks: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(marks.len(), Action::ALL.len(), "{post}");
        let user = principal(1, &[*post], &["430000"]);
        for (action, mark) in Action::ALL.into_iter().zip(marks) {
            let result = may(&user, action, &code("430102"));
            match mark {
                "Y" => assert_eq!(result, Ok(()), "{post} × {action}"),
                "." => assert_eq!(
                    result,
                    Err(Denied::Post {
                        action,
                        needs: action.posts()
                    }),
                    "{post} × {action}"
                ),
                other => panic!("bad mark {other}"),
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 6 * 14);
}

#[test]
fn the_auditor_reads_everything_and_changes_nothing() {
    let auditor = principal(9, &[Post::AuditAdmin], &["430000"]);
    for action in Action::ALL {
        assert_eq!(
            may(&auditor, action, &code("430103")).is_ok(),
            action.is_read_only(),
            "{action}"
        );
    }
    // And only the auditor reads the administrative log.
    let holders: Vec<Post> = Action::ViewAuditLog.posts().to_vec();
    assert_eq!(holders, [Post::AuditAdmin]);
}

#[test]
fn a_disabled_user_may_do_nothing() {
    let mut user = principal(1, &Post::ALL[..3], &["430000"]);
    assert!(may(&user, Action::MakeVoucher, &code("430000")).is_ok());
    user.active = false;
    for action in Action::ALL {
        assert_eq!(
            may(&user, action, &code("430000")),
            Err(Denied::Disabled),
            "{action}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Divisions

#[test]
fn a_user_sees_their_divisions_and_those_under_them() {
    // (granted, division, sees)
    let table = [
        ("430000", "430000", true),
        ("430000", "430100", true),
        ("430000", "430102", true),
        ("430000", "430103", true),
        ("430000", "440000", false),
        ("430000", "440103", false),
        ("430100", "430100", true),
        ("430100", "430102", true),
        ("430100", "430000", false),
        ("430100", "430200", false),
        ("430100", "430202", false),
        ("430102", "430102", true),
        ("430102", "430103", false),
        ("430102", "430100", false),
        ("430102", "430000", false),
    ];
    for (granted, division, sees) in table {
        let user = principal(1, &[Post::Maker], &[granted]);
        assert_eq!(user.sees(&code(division)), sees, "{granted} → {division}");
        let verdict = may(&user, Action::ViewVouchers, &code(division));
        if sees {
            assert_eq!(verdict, Ok(()));
        } else {
            assert_eq!(
                verdict,
                Err(Denied::Division {
                    division: code(division)
                })
            );
        }
    }
    // Several grants add up.
    let user = principal(1, &[Post::Maker], &["430102", "430203"]);
    assert!(user.sees(&code("430203")) && !user.sees(&code("430200")));
    let nobody = principal(1, &[Post::Maker], &[]);
    assert!(!nobody.sees(&code("430000")));
}

#[test]
fn visible_filters_a_deployments_divisions() {
    let all: Vec<Division> = ["430000", "430100", "430102", "430103", "430200"]
        .into_iter()
        .map(|c| Division {
            code: code(c),
            parent: None,
            name: c.into(),
            window: BusinessWindow::default(),
        })
        .collect();
    let user = principal(1, &[Post::Checker], &["430100"]);
    let seen: Vec<String> = user
        .visible(&all)
        .into_iter()
        .map(|d| d.code.to_string())
        .collect();
    assert_eq!(seen, ["430100", "430102", "430103"]);
}

// ---------------------------------------------------------------------------------------
// Business windows

/// 2025-01-06 00:00 UTC, a Monday (08:00 in Beijing).
const MONDAY_UTC: u64 = 1_736_121_600;
const HOUR: u64 = 3_600;

#[test]
fn business_windows_follow_local_hours_and_days() {
    let beijing = BusinessWindow::default(); // 08:00–17:00, Monday to Friday, UTC+8
    // (seconds after Monday 00:00 UTC, open)
    let table = [
        (0, true),                          // Monday 08:00 Beijing: opens
        (9 * HOUR - 1, true),               // 16:59:59
        (9 * HOUR, false),                  // 17:00: closed
        (24 * HOUR - 1, false),             // Tuesday 07:59:59
        (24 * HOUR, true),                  // Tuesday 08:00
        (4 * 24 * HOUR + 2 * HOUR, true),   // Friday 10:00
        (5 * 24 * HOUR + 2 * HOUR, false),  // Saturday 10:00
        (6 * 24 * HOUR + 2 * HOUR, false),  // Sunday 10:00
        (7 * 24 * HOUR - 10 * HOUR, false), // Sunday 22:00 is still Sunday in Beijing
    ];
    for (offset, open) in table {
        assert_eq!(
            window_open(&beijing, MONDAY_UTC + offset),
            open,
            "+{offset}s"
        );
    }
    // The same instant is Sunday 16:00 in UTC−08:00: outside a weekday window there.
    let west =
        BusinessWindow::new(8 * 60, 17 * 60, BusinessWindow::MONDAY_TO_FRIDAY, -480).unwrap();
    assert!(!window_open(&west, MONDAY_UTC));
    let weekend = BusinessWindow::new(0, 24 * 60, 0b110_0000, -480).unwrap();
    assert!(window_open(&weekend, MONDAY_UTC));

    let division = Division {
        code: code("430102"),
        parent: Some(code("430100")),
        name: "芙蓉区".into(),
        window: beijing,
    };
    assert!(check_window(&division, MONDAY_UTC + HOUR).is_ok());
    let refused = check_window(&division, MONDAY_UTC + 10 * HOUR).unwrap_err();
    assert_eq!(refused.division, code("430102"));
}

// ---------------------------------------------------------------------------------------
// Segregation of duties

fn steps(taken: &[(&str, u64)]) -> Vec<StepRecord> {
    taken
        .iter()
        .enumerate()
        .map(|(i, (step, user))| StepRecord {
            seq: i as u64 + 1,
            key: key("V1"),
            step: (*step).into(),
            user: UserId(*user),
            at: 100 + i as u64,
        })
        .collect()
}

/// Steps so far: (step code, user).
type Taken = &'static [(&'static str, u64)];

#[test]
fn steps_are_taken_once_in_order_each_by_another_person() {
    use SodViolation::*;
    use Step::*;
    // (steps so far, user, step, verdict)
    let table: Vec<(Taken, u64, Step, Result<(), SodViolation>)> = vec![
        // The happy paths: originated, with and without 复核, and received (no make here).
        (&[], 1, Make, Ok(())),
        (&[("make", 1)], 2, Check, Ok(())),
        (&[("make", 1), ("check", 2)], 3, Approve, Ok(())),
        (
            &[("make", 1), ("check", 2), ("approve", 3)],
            4,
            Sign,
            Ok(()),
        ),
        (&[("make", 1), ("check", 2)], 4, Sign, Ok(())),
        (&[], 2, Check, Ok(())),
        (&[("check", 2)], 3, Sign, Ok(())),
        // The maker cannot check, approve or sign their own voucher.
        (
            &[("make", 1)],
            1,
            Check,
            Err(SameUser {
                step: Check,
                earlier: Make,
            }),
        ),
        (
            &[("make", 1), ("check", 2)],
            1,
            Approve,
            Err(SameUser {
                step: Approve,
                earlier: Make,
            }),
        ),
        (
            &[("make", 1), ("check", 2)],
            1,
            Sign,
            Err(SameUser {
                step: Sign,
                earlier: Make,
            }),
        ),
        // The checker cannot approve (复核 is a second person) nor sign.
        (
            &[("make", 1), ("check", 2)],
            2,
            Approve,
            Err(SameUser {
                step: Approve,
                earlier: Check,
            }),
        ),
        (
            &[("make", 1), ("check", 2)],
            2,
            Sign,
            Err(SameUser {
                step: Sign,
                earlier: Check,
            }),
        ),
        (
            &[("check", 2)],
            2,
            Sign,
            Err(SameUser {
                step: Sign,
                earlier: Check,
            }),
        ),
        // The approver cannot sign.
        (
            &[("make", 1), ("check", 2), ("approve", 3)],
            3,
            Sign,
            Err(SameUser {
                step: Sign,
                earlier: Approve,
            }),
        ),
        // Each step once.
        (
            &[("make", 1), ("check", 2)],
            3,
            Check,
            Err(Repeated { step: Check }),
        ),
        (&[("make", 1)], 5, Make, Err(Repeated { step: Make })),
        // In order.
        (
            &[("make", 1), ("check", 2), ("sign", 4)],
            3,
            Approve,
            Err(OutOfOrder {
                step: Approve,
                after: Sign,
            }),
        ),
        (
            &[("check", 2)],
            1,
            Make,
            Err(OutOfOrder {
                step: Make,
                after: Check,
            }),
        ),
        // Approve and sign need a check.
        (
            &[("make", 1)],
            2,
            Sign,
            Err(Missing {
                step: Sign,
                needs: Check,
            }),
        ),
        (
            &[],
            1,
            Approve,
            Err(Missing {
                step: Approve,
                needs: Check,
            }),
        ),
        // A step this program does not know is refused, not ignored.
        (
            &[("stamp", 1)],
            2,
            Check,
            Err(UnknownStep {
                code: "stamp".into(),
            }),
        ),
    ];
    for (taken, user, step, verdict) in table {
        assert_eq!(
            check_step(&steps(taken), UserId(user), step),
            verdict,
            "{taken:?}, user {user}, {step}"
        );
    }
}

#[test]
fn administrators_hold_their_post_alone() {
    let set = |posts: &[Post]| posts.iter().copied().collect::<BTreeSet<Post>>();
    for admin in [Post::SystemAdmin, Post::SecurityAdmin, Post::AuditAdmin] {
        assert_eq!(check_posts(&set(&[]), admin), Ok(()));
        assert_eq!(check_posts(&set(&[admin]), admin), Ok(()), "{admin} again");
        for other in Post::ALL.into_iter().filter(|p| *p != admin) {
            assert_eq!(
                check_posts(&set(&[other]), admin),
                Err(SodViolation::IncompatiblePosts {
                    held: other,
                    wanted: admin
                }),
                "{other} then {admin}"
            );
            assert_eq!(
                check_posts(&set(&[admin]), other),
                Err(SodViolation::IncompatiblePosts {
                    held: admin,
                    wanted: other
                }),
                "{admin} then {other}"
            );
        }
    }
    // Business posts combine (per-voucher rules keep one person to one step).
    assert_eq!(
        check_posts(&set(&[Post::Maker, Post::Checker]), Post::Signer),
        Ok(())
    );
}

fn record(posts: &[&str], status: UserStatus) -> UserRecord {
    UserRecord {
        id: UserId(5),
        login: "li.si".into(),
        display_name: "李四".into(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaA".into(),
        status,
        login_state: LoginState::default(),
        posts: posts.iter().map(|p| (*p).to_owned()).collect(),
        divisions: vec![code("430100")],
        units: Vec::new(),
        created_at: 1,
        updated_at: 1,
    }
}

#[test]
fn principals_come_from_records_that_keep_the_rules() {
    let p = Principal::from_record(&record(&["checker", "maker"], UserStatus::Active)).unwrap();
    assert_eq!(p.posts, [Post::Checker, Post::Maker].into_iter().collect());
    assert!(p.active && p.sees(&code("430103")));
    let off = Principal::from_record(&record(&["maker"], UserStatus::Disabled)).unwrap();
    assert!(!off.active);
    assert_eq!(
        Principal::from_record(&record(&["root"], UserStatus::Active)),
        Err(PolicyError::UnknownPost("root".into()))
    );
    assert!(matches!(
        Principal::from_record(&record(&["audit_admin", "maker"], UserStatus::Active)),
        Err(PolicyError::Sod(SodViolation::IncompatiblePosts { .. }))
    ));
}

// ---------------------------------------------------------------------------------------
// Passwords and lockout

fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

#[test]
fn passwords_hash_to_argon2id_phc_strings_and_verify() {
    let right = Password::new("Guoku-2025!").unwrap();
    let hash = hash_password(&right, &mut rng(1)).unwrap();
    assert!(
        hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{hash}"
    );
    assert_eq!(hash.split('$').count(), 6, "{hash}");
    assert!(!hash.contains("Guoku-2025!"));
    assert!(verify_password(&right, &hash).unwrap());
    assert!(!verify_password(&Password::new("Guoku-2025?").unwrap(), &hash).unwrap());
    assert!(!verify_password(&Password::new("guoku-2025!").unwrap(), &hash).unwrap());
    // A fresh salt each time.
    let again = hash_password(&right, &mut rng(2)).unwrap();
    assert_ne!(hash, again);
    assert!(verify_password(&right, &again).unwrap());
    assert!(!needs_rehash(&hash));
}

#[test]
fn only_supported_hashes_are_verified() {
    let password = Password::new("Guoku-2025!").unwrap();
    for bad in [
        "",
        "plain",
        "$2b$12$abcdefghijklmnopqrstuuM0Tn5mG0wz3cTz9X8p1bWq9u4Zp6xK.",
        // Argon2i, not Argon2id.
        "$argon2i$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA",
        // Weaker than the policy, or a memory cost that would exhaust the host.
        "$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA",
        "$argon2id$v=19$m=4194304,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA",
    ] {
        assert_eq!(
            verify_password(&password, bad),
            Err(PasswordError::UnsupportedHash),
            "{bad}"
        );
        assert!(needs_rehash(bad), "{bad}");
    }
}

#[test]
fn new_passwords_must_be_strong_and_bounded() {
    for weak in ["short1A", "alllowercase", "ALLUPPER123", "12345678901"] {
        let p = Password::new(weak).unwrap();
        assert_eq!(check_new_password(&p), Err(PasswordError::Weak), "{weak}");
        assert_eq!(
            hash_password(&p, &mut rng(3)),
            Err(PasswordError::Weak),
            "{weak}"
        );
    }
    for strong in ["Guoku-2025!", "abcdEFGH1234", "财政支付-2025a"] {
        assert_eq!(check_new_password(&Password::new(strong).unwrap()), Ok(()));
    }
    assert_eq!(Password::new("").unwrap_err(), PasswordError::Length);
    assert_eq!(
        Password::new("x".repeat(Password::MAX_BYTES + 1)).unwrap_err(),
        PasswordError::Length
    );
}

#[test]
fn passwords_never_show_in_debug_output_or_errors() {
    let secret = "Secret-Passw0rd";
    let p = Password::new(secret).unwrap();
    assert_eq!(format!("{p:?}"), "Password(****)");
    let errors = [
        format!(
            "{:?}",
            hash_password(&Password::new("weak").unwrap(), &mut rng(4))
        ),
        format!("{:?}", verify_password(&p, "not a hash")),
        LoginError::BadCredentials.to_string(),
        LoginError::Locked { until: 9 }.to_string(),
    ];
    for e in errors {
        assert!(!e.contains(secret), "{e}");
    }
    let stored = record(&["maker"], UserStatus::Active);
    assert!(!format!("{stored:?}").contains("c2FsdHNhbHRzYWx0"));
}

#[test]
fn five_wrong_passwords_lock_until_the_lock_ends() {
    let policy = LockoutPolicy::default();
    assert_eq!((policy.max_failures, policy.lock_secs), (5, 1_800));
    let mut state = LoginState::default();
    for n in 1..=4 {
        state = after_failure(state, 1_000 + n, policy);
        assert_eq!(
            state,
            LoginState {
                failed_attempts: u32::try_from(n).unwrap(),
                locked_until: None
            }
        );
    }
    state = after_failure(state, 1_005, policy);
    assert_eq!(
        state,
        LoginState {
            failed_attempts: 5,
            locked_until: Some(1_005 + 1_800)
        }
    );
    assert!(state.is_locked(2_804) && !state.is_locked(2_805));
    // While locked nothing moves: neither more failures nor a right password.
    assert_eq!(after_failure(state, 2_000, policy), state);
    assert_eq!(after_success(state, 2_000), state);
    // After the lock, counting starts afresh; a right password clears everything.
    let fresh = after_failure(state, 2_805, policy);
    assert_eq!(
        fresh,
        LoginState {
            failed_attempts: 1,
            locked_until: None
        }
    );
    assert_eq!(after_success(fresh, 2_806), LoginState::default());
    assert_eq!(after_success(state, 2_805), LoginState::default());
}

// ---------------------------------------------------------------------------------------
// Through the store, on both backends

const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

fn pg_url() -> String {
    std::env::var("GUOKU_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_PG_URL.to_owned())
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

/// Drops a test schema when the test ends, even after a panic.
struct SchemaGuard(String);

impl Drop for SchemaGuard {
    fn drop(&mut self) {
        let schema = self.0.clone();
        // Drop runs inside the test's runtime: use a thread with its own.
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

/// A store for one test; fields drop in order (connections first, then file or schema).
struct TestStore {
    store: Store,
    _dir: Option<tempfile::TempDir>,
    _schema: Option<SchemaGuard>,
}

async fn sqlite_store() -> TestStore {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(SqliteConfig::new(dir.path().join("access.db")))
        .await
        .unwrap();
    TestStore {
        store,
        _dir: Some(dir),
        _schema: None,
    }
}

static NEXT_SCHEMA: AtomicU64 = AtomicU64::new(0);

/// A store in a fresh schema, or `None` (after saying so loudly, failing under CI).
async fn pg_store() -> Option<TestStore> {
    let client = match pg_connect().await {
        Ok(client) => client,
        Err(why) => {
            let url = pg_url();
            assert!(
                !std::env::var("CI").is_ok_and(|v| v == "true" || v == "1"),
                "CI=true but PostgreSQL is unreachable at {url}: {why}"
            );
            eprintln!(
                "\n*** SKIPPED: PostgreSQL test — no server at {url} ({why}). \
                 Set GUOKU_TEST_PG_URL or run scripts/test.sh. ***\n"
            );
            return None;
        }
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let schema = format!(
        "guoku_node_access_{}_{}_{nanos}",
        std::process::id(),
        NEXT_SCHEMA.fetch_add(1, Ordering::Relaxed)
    );
    client
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .await
        .unwrap();
    let guard = SchemaGuard(schema.clone());
    let mut config = PgConfig::new(pg_url());
    config.schema = Some(schema);
    config.pool_size = 4;
    let store = Store::connect_postgres(config).await.unwrap();
    Some(TestStore {
        store,
        _dir: None,
        _schema: Some(guard),
    })
}

/// The same async test body on SQLite and on PostgreSQL, as two tests.
macro_rules! both_backends {
    ($name:ident, |$store:ident| $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn body($store: &Store) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let t = sqlite_store().await;
                body(&t.store).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(t) = pg_store().await else { return };
                body(&t.store).await;
            }
        }
    };
}

const BOOTSTRAP: &str = "bootstrap";

fn key(no: &str) -> VoucherKey {
    VoucherKey {
        adm_div_code: "430102".into(),
        st_year: "2025".into(),
        vt_code: "5201".into(),
        voucher_no: no.into(),
    }
}

/// 湖南省 → 长沙市 → 芙蓉区 (430102), 天心区 (430103), with a budget unit in 芙蓉区.
async fn hunan(store: &Store) {
    let access = store.access();
    for (c, parent, name) in [
        ("430000", None, "湖南省"),
        ("430100", Some("430000"), "长沙市"),
        ("430102", Some("430100"), "芙蓉区"),
        ("430103", Some("430100"), "天心区"),
    ] {
        let d = Division {
            code: code(c),
            parent: parent.map(code),
            name: name.into(),
            window: BusinessWindow::default(),
        };
        access.put_division(&d, BOOTSTRAP, 1).await.unwrap();
    }
    let unit = BudgetUnit {
        adm_div: code("430102"),
        code: "102001".into(),
        name: "芙蓉区教育局".into(),
        active: true,
    };
    access.put_budget_unit(&unit, BOOTSTRAP, 1).await.unwrap();
}

/// The first administrators, as a deployment's set-up creates them (before any exists).
async fn admins(store: &Store) -> (Principal, Principal) {
    let access = store.access();
    let mut made = Vec::new();
    for (login, post) in [
        ("sys.admin", Post::SystemAdmin),
        ("sec.admin", Post::SecurityAdmin),
    ] {
        let hash = hash_password(&Password::new("Admin-Pass-1").unwrap(), &mut rng(7)).unwrap();
        let user = access
            .create_user(
                guoku_store::access::NewUser {
                    login: login.into(),
                    display_name: login.into(),
                    password_hash: hash,
                },
                BOOTSTRAP,
                1,
            )
            .await
            .unwrap();
        access
            .grant_post(user.id, post.code(), BOOTSTRAP, 1, |_| Ok::<(), ()>(()))
            .await
            .unwrap()
            .unwrap();
        let user = access
            .grant_division(user.id, &code("430000"), BOOTSTRAP, 1)
            .await
            .unwrap();
        made.push(Principal::from_record(&user).unwrap());
    }
    let sec = made.pop().unwrap();
    let sys = made.pop().unwrap();
    (sys, sec)
}

/// A user with `post` in `division`, created and granted by the administrators.
async fn staff(
    store: &Store,
    (sys, sec): &(Principal, Principal),
    login_name: &str,
    post: Post,
    division: &str,
) -> Principal {
    let password = Password::new("Staff-Pass-1").unwrap();
    let user = create_user(store, sys, login_name, login_name, &password, rng(11), 2)
        .await
        .unwrap();
    grant_post(store, sec, user.id, post, 3).await.unwrap();
    let user = grant_division(store, sec, user.id, &code(division), 4)
        .await
        .unwrap();
    Principal::from_record(&user).unwrap()
}

both_backends!(a_voucher_goes_maker_checker_approver_signer, |store| {
    hunan(store).await;
    let a = admins(store).await;
    let maker = staff(store, &a, "maker", Post::Maker, "430102").await;
    let checker = staff(store, &a, "checker", Post::Checker, "430100").await;
    let approver = staff(store, &a, "approver", Post::Checker, "430000").await;
    let signer = staff(store, &a, "signer", Post::Signer, "430102").await;
    let v = key("V1");

    take_step(store, &maker, &v, Step::Make, 100).await.unwrap();
    // The maker cannot check: they lack the post, and would break SoD anyway.
    assert!(matches!(
        take_step(store, &maker, &v, Step::Check, 101).await,
        Err(AccessDenied::Denied(Denied::Post { .. }))
    ));
    // A signer cannot sign before a check.
    assert!(matches!(
        take_step(store, &signer, &v, Step::Sign, 101).await,
        Err(AccessDenied::Sod(SodViolation::Missing { .. }))
    ));
    take_step(store, &checker, &v, Step::Check, 102)
        .await
        .unwrap();
    // The checker cannot also approve.
    assert!(matches!(
        take_step(store, &checker, &v, Step::Approve, 103).await,
        Err(AccessDenied::Sod(SodViolation::SameUser {
            step: Step::Approve,
            earlier: Step::Check
        }))
    ));
    take_step(store, &approver, &v, Step::Approve, 104)
        .await
        .unwrap();
    take_step(store, &signer, &v, Step::Sign, 105)
        .await
        .unwrap();

    let recorded: Vec<(String, UserId, u64)> = store
        .access()
        .steps(&v)
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.step, s.user, s.at))
        .collect();
    assert_eq!(
        recorded,
        [
            ("make".to_owned(), maker.id, 100),
            ("check".to_owned(), checker.id, 102),
            ("approve".to_owned(), approver.id, 104),
            ("sign".to_owned(), signer.id, 105),
        ]
    );
});

both_backends!(a_maker_cannot_check_their_own_voucher, |store| {
    hunan(store).await;
    let a = admins(store).await;
    // One person holding both business posts still cannot take two steps of one voucher.
    let both = staff(store, &a, "both", Post::Maker, "430102").await;
    let both = Principal::from_record(
        &grant_post(store, &a.1, both.id, Post::Checker, 5)
            .await
            .unwrap(),
    )
    .unwrap();
    let other = staff(store, &a, "other", Post::Checker, "430102").await;
    take_step(store, &both, &key("V2"), Step::Make, 10)
        .await
        .unwrap();
    assert!(matches!(
        take_step(store, &both, &key("V2"), Step::Check, 11).await,
        Err(AccessDenied::Sod(SodViolation::SameUser {
            step: Step::Check,
            earlier: Step::Make
        }))
    ));
    assert_eq!(store.access().steps(&key("V2")).await.unwrap().len(), 1);
    take_step(store, &other, &key("V2"), Step::Check, 12)
        .await
        .unwrap();
    // A checker without the maker's post makes nothing.
    assert!(matches!(
        take_step(store, &other, &key("V3"), Step::Make, 13).await,
        Err(AccessDenied::Denied(Denied::Post { .. }))
    ));
    // The person holding both posts checks another maker's voucher.
    let maker = staff(store, &a, "maker", Post::Maker, "430102").await;
    take_step(store, &maker, &key("V3"), Step::Make, 14)
        .await
        .unwrap();
    take_step(store, &both, &key("V3"), Step::Check, 15)
        .await
        .unwrap();
});

both_backends!(
    a_unit_of_430102_cannot_be_acted_on_by_a_user_of_430103,
    |store| {
        hunan(store).await;
        let a = admins(store).await;
        let tianxin = staff(store, &a, "tianxin.maker", Post::Maker, "430103").await;
        let changsha = staff(store, &a, "changsha.maker", Post::Maker, "430100").await;
        let unit = store
            .access()
            .budget_unit(&code("430102"), "102001")
            .await
            .unwrap()
            .unwrap();

        assert_eq!(
            may(&tianxin, Action::MakeVoucher, &unit.adm_div),
            Err(Denied::Division {
                division: code("430102")
            })
        );
        assert_eq!(
            may(&tianxin, Action::ViewVouchers, &unit.adm_div),
            Err(Denied::Division {
                division: code("430102")
            })
        );
        assert!(matches!(
            take_step(store, &tianxin, &key("U1"), Step::Make, 20).await,
            Err(AccessDenied::Denied(Denied::Division { .. }))
        ));
        assert!(store.access().steps(&key("U1")).await.unwrap().is_empty());
        // The city above sees it.
        assert_eq!(may(&changsha, Action::MakeVoucher, &unit.adm_div), Ok(()));
        take_step(store, &changsha, &key("U1"), Step::Make, 21)
            .await
            .unwrap();
        // The county's own visible divisions exclude its neighbour and the city above.
        let all = store.access().divisions().await.unwrap();
        let seen: Vec<String> = tianxin
            .visible(&all)
            .into_iter()
            .map(|d| d.code.to_string())
            .collect();
        assert_eq!(seen, ["430103"]);
    }
);

both_backends!(grants_keep_the_three_administrators_apart, |store| {
    hunan(store).await;
    let (sys, sec) = admins(store).await;
    let staffer = staff(
        store,
        &(sys.clone(), sec.clone()),
        "staffer",
        Post::Maker,
        "430102",
    )
    .await;

    // Nobody grants themselves anything.
    assert!(matches!(
        grant_post(store, &sec, sec.id, Post::AuditAdmin, 10).await,
        Err(AccessDenied::Sod(SodViolation::SelfGrant))
    ));
    assert!(matches!(
        grant_division(store, &sec, sec.id, &code("430102"), 10).await,
        Err(AccessDenied::Sod(SodViolation::SelfGrant))
    ));
    // An administrator post is held alone.
    assert!(matches!(
        grant_post(store, &sec, staffer.id, Post::AuditAdmin, 10).await,
        Err(AccessDenied::Policy(PolicyError::Sod(
            SodViolation::IncompatiblePosts {
                held: Post::Maker,
                wanted: Post::AuditAdmin
            }
        )))
    ));
    assert!(matches!(
        grant_post(store, &sec, sys.id, Post::SecurityAdmin, 10).await,
        Err(AccessDenied::Policy(PolicyError::Sod(
            SodViolation::IncompatiblePosts { .. }
        )))
    ));
    // The system administrator creates users but grants nothing.
    assert!(matches!(
        grant_post(store, &sys, staffer.id, Post::Signer, 10).await,
        Err(AccessDenied::Denied(Denied::Post { .. }))
    ));
    let after = store.access().user(staffer.id).await.unwrap().unwrap();
    assert_eq!(after.posts, ["maker"]);
    // The security administrator creates no users.
    assert!(matches!(
        create_user(
            store,
            &sec,
            "nobody",
            "nobody",
            &Password::new("Staff-Pass-1").unwrap(),
            rng(12),
            10
        )
        .await,
        Err(AccessDenied::Denied(Denied::Post { .. }))
    ));
    assert_eq!(store.access().user_by_login("nobody").await.unwrap(), None);
    // A county's security administrator grants nothing in the city above.
    let county_sec = {
        let hash = hash_password(&Password::new("Admin-Pass-1").unwrap(), &mut rng(13)).unwrap();
        let access = store.access();
        let user = access
            .create_user(
                guoku_store::access::NewUser {
                    login: "county.sec".into(),
                    display_name: "county.sec".into(),
                    password_hash: hash,
                },
                BOOTSTRAP,
                1,
            )
            .await
            .unwrap();
        grant_post(store, &sec, user.id, Post::SecurityAdmin, 11)
            .await
            .unwrap();
        let user = grant_division(store, &sec, user.id, &code("430103"), 11)
            .await
            .unwrap();
        Principal::from_record(&user).unwrap()
    };
    assert!(matches!(
        grant_division(store, &county_sec, staffer.id, &code("430100"), 12).await,
        Err(AccessDenied::Denied(Denied::Division { .. }))
    ));
    // Nor to a user of another county.
    assert!(matches!(
        grant_post(store, &county_sec, staffer.id, Post::Checker, 12).await,
        Err(AccessDenied::Denied(Denied::Division { .. }))
    ));
    // Every grant was recorded, by whom.
    let events = store.access().events(0, 1_000).await.unwrap();
    assert!(events.iter().any(|e| e.action == "grant_post"
        && e.actor == "sec.admin"
        && e.subject == staffer.id.to_string()));
    assert!(
        events
            .iter()
            .all(|e| !e.detail.clone().unwrap_or_default().contains("argon2"))
    );
});

both_backends!(logins_lock_after_five_wrong_passwords, |store| {
    hunan(store).await;
    let a = admins(store).await;
    let user = staff(store, &a, "zhang.san", Post::Maker, "430102").await;
    let right = Password::new("Staff-Pass-1").unwrap();
    let wrong = Password::new("Staff-Pass-2").unwrap();
    let policy = LockoutPolicy::default();
    let t = 1_000;

    let me = login(store, "zhang.san", &right, t, policy).await.unwrap();
    assert_eq!(me, user);
    assert!(matches!(
        login(store, "nobody", &right, t, policy).await,
        Err(LoginError::BadCredentials)
    ));
    assert!(matches!(
        login(store, "bad login\n", &right, t, policy).await,
        Err(LoginError::BadCredentials)
    ));
    for n in 1..=4u32 {
        assert!(matches!(
            login(store, "zhang.san", &wrong, t + u64::from(n), policy).await,
            Err(LoginError::BadCredentials)
        ));
        let state = store
            .access()
            .user(user.id)
            .await
            .unwrap()
            .unwrap()
            .login_state;
        assert_eq!(state.failed_attempts, n);
    }
    // A right password clears the counter.
    login(store, "zhang.san", &right, t + 5, policy)
        .await
        .unwrap();
    let state = store
        .access()
        .user(user.id)
        .await
        .unwrap()
        .unwrap()
        .login_state;
    assert_eq!(state, LoginState::default());

    for n in 0..5 {
        assert!(matches!(
            login(store, "zhang.san", &wrong, t + 10 + n, policy).await,
            Err(LoginError::BadCredentials)
        ));
    }
    let until = t + 14 + policy.lock_secs;
    // Locked: even the right password is refused, and nothing is counted.
    for at in [t + 15, until - 1] {
        match login(store, "zhang.san", &right, at, policy).await {
            Err(LoginError::Locked { until: u }) => assert_eq!(u, until),
            other => panic!("expected a lock, got {other:?}"),
        }
    }
    let state = store
        .access()
        .user(user.id)
        .await
        .unwrap()
        .unwrap()
        .login_state;
    assert_eq!(
        state,
        LoginState {
            failed_attempts: 5,
            locked_until: Some(until)
        }
    );
    // When the lock ends the right password works again.
    login(store, "zhang.san", &right, until, policy)
        .await
        .unwrap();

    // A disabled user with the right password is told so; with a wrong one, not.
    store
        .access()
        .set_status(user.id, UserStatus::Disabled, "sys.admin", until + 1)
        .await
        .unwrap();
    assert!(matches!(
        login(store, "zhang.san", &right, until + 2, policy).await,
        Err(LoginError::Disabled)
    ));
    assert!(matches!(
        login(store, "zhang.san", &wrong, until + 2, policy).await,
        Err(LoginError::BadCredentials)
    ));

    // The stored hash is an Argon2id PHC string; no password or hash reached the log.
    let stored = store.access().user(user.id).await.unwrap().unwrap();
    assert!(
        stored
            .password_hash
            .starts_with("$argon2id$v=19$m=19456,t=2,p=1$")
    );
    for e in store.access().events(0, 1_000).await.unwrap() {
        let text = format!("{e:?}");
        assert!(!text.contains("Staff-Pass"), "{text}");
        assert!(!text.contains("$argon2"), "{text}");
    }
    let logins: Vec<String> = store
        .access()
        .events(0, 1_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.subject == user.id.to_string() && e.action.starts_with("login"))
        .map(|e| e.action)
        .collect();
    assert_eq!(logins.iter().filter(|a| *a == "login").count(), 3);
    assert_eq!(logins.iter().filter(|a| *a == "login_failed").count(), 10);
});

both_backends!(access_errors_say_whether_a_retry_helps, |store| {
    let a = AccessDenied::Access(AccessError::InvalidArgument("x".into()));
    assert!(!a.is_retryable());
    assert!(!AccessDenied::Sod(SodViolation::SelfGrant).is_retryable());
    assert!(LoginError::Locked { until: 1 }.is_retryable());
    assert!(!LoginError::BadCredentials.is_retryable());
    // A step by a user the store does not know is refused by the store, not recorded.
    hunan(store).await;
    let ghost = principal(4_242, &[Post::Maker], &["430000"]);
    assert!(matches!(
        take_step(store, &ghost, &key("G1"), Step::Make, 1).await,
        Err(AccessDenied::Access(AccessError::NotFound {
            what: "user",
            ..
        }))
    ));
    assert!(store.access().steps(&key("G1")).await.unwrap().is_empty());
});
