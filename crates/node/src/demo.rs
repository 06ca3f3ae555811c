//! The demo province: finance, PBOC, two agent banks and the budget units' counter in one
//! process, on SQLite, talking through the exchange protocol in memory (issue 5).
//!
//! [`Demo::open`] creates a data directory on first use — a deployment PKI (an SM2 or
//! Ed25519 root), three people and the seals of every party, each key in a PIN key store,
//! one SQLite store per party, and the seeded books — and resumes it on every later start.
//! The province ([`province`]) is Hunan with two cities and two counties under them as
//! administrative divisions (the tenants of one provincial finance deployment), two budget
//! units in each, banks, indicators and monthly plans.
//!
//! Seeding runs the real flows: finance's clearing-quota notices (5108/5106) go to PBOC and
//! its authorized quota notices (5105) to the banks as signed vouchers, and the receivers
//! book them on receipt. Indicators and plans at finance, the TSA's funding at PBOC and the
//! accounts a bank opens for its customers are onboarding, written straight into the books.

use std::fs;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use guoku_domain::{AdmDivCode, Amount, BizDate, PayType, StYear};
use guoku_ledger::CreateAccountResult;
use guoku_seal::keystore::{KdfParams, KeyStoreFile, Pin};
use guoku_seal::pki::{
    CaSubject, Certificate, CertificateAuthority, OrgRole, Organisation, Person, Post,
    RevocationPolicy, Serial, Sm2CertId, TlsNode, Validity, make_root_ca,
};
use guoku_seal::ses::{CertListForm, Seal, SealPicture, SealSpec, make_seal};
use guoku_seal::voucher::StampKind;
use guoku_seal::{KeyAlgorithm, SigningKey, Suite};
use guoku_store::access::{BusinessWindow, Division as AccessDivision, NewUser};
use guoku_store::books::{BookAccount, BookOp, ClearingKey, IndicatorKey, Tenant, UnitCode};
use guoku_store::library::Backoff;
use guoku_store::{PgConfig, SqliteConfig, Store, StoreError};
use guoku_voucher::lifecycle::Leg;
use guoku_voucher::sample::{Style, sample};
use guoku_voucher::{Registry, Voucher, VoucherFlag, VoucherKey};
use time::OffsetDateTime;

use crate::exchange::{
    Clock, ExchangeState, InMemory, InMemoryNetwork, Peer, ReceiveLimits, VoucherTrust, app,
};
use crate::flows::quota::{self, notice_voucher};
use crate::party::{AUDIT_HEAD_EVERY_SECS, Holder, Party, PartyConfig, PartyError, Staff};

/// The demo's key-store PIN. Demo only: a real deployment's people choose their own.
pub const DEMO_PIN: &str = "123456";
/// The file that marks a directory as a guoku demo (and is the only thing `--fresh` trusts
/// before deleting).
const MARKER: &str = "guoku-demo.txt";
/// The function class every demo indicator pays (2050201 行政运行, education).
pub const FUNC: &str = "2050201";
/// The economic class of the demo indicators.
pub const ECO: &str = "30201";
/// The fund type (1 一般公共预算资金).
pub const FUND: &str = "1";

/// Finance's zero-balance account in `division` (direct payments are paid from it).
#[must_use]
pub fn finance_zba(division: &str) -> String {
    format!("1901-{division}0000")
}
/// Each unit's monthly direct plan and authorized plan quota, in fen (5,000,000.00 yuan).
const MONTHLY_PLAN_FEN: i64 = 500_000_000;
/// What the TSA is funded with per division, in fen.
const TSA_FUNDING_FEN: i64 = 1_000_000_000_000;

/// An administrative division of the demo province.
#[derive(Clone, Debug)]
pub struct Division {
    pub code: &'static str,
    pub name: &'static str,
}

/// A budget unit: its code, name, division and the bank keeping its zero-balance account.
#[derive(Clone, Debug)]
pub struct Unit {
    pub code: String,
    pub name: String,
    pub division: &'static str,
    /// Index into [`Province::banks`].
    pub bank: usize,
    /// Its zero-balance account (零余额账户) at that bank.
    pub zba: String,
}

/// One organisation of the demo.
#[derive(Clone, Debug)]
pub struct Org {
    pub role: OrgRole,
    pub code: &'static str,
    pub name: &'static str,
    /// Its bank number (banks and PBOC).
    pub bank_no: &'static str,
}

impl Org {
    fn organisation(&self) -> Organisation {
        Organisation {
            role: self.role,
            code: self.code.into(),
            name: self.name.into(),
        }
    }

    /// The exchange identity.
    #[must_use]
    pub fn peer(&self) -> Peer {
        Peer {
            role: self.role,
            org_code: self.code.into(),
        }
    }
}

/// The demo province.
#[derive(Clone, Debug)]
pub struct Province {
    pub divisions: Vec<Division>,
    pub finance: Org,
    pub pboc: Org,
    pub banks: Vec<Org>,
    pub counter: Org,
    pub units: Vec<Unit>,
}

impl Province {
    /// Finance's direct-payment bank (holding finance's zero-balance accounts).
    #[must_use]
    pub fn direct_bank(&self) -> &Org {
        &self.banks[0]
    }

    /// Every organisation.
    pub fn orgs(&self) -> impl Iterator<Item = &Org> {
        [&self.finance, &self.pboc, &self.counter]
            .into_iter()
            .chain(self.banks.iter())
    }
}

/// Hunan: the province, two cities and a county (district) under each; two units in each
/// division; ICBC holds finance's accounts and half the units', CCB the other half.
#[must_use]
pub fn province() -> Province {
    let divisions = vec![
        Division {
            code: "430000",
            name: "湖南省",
        },
        Division {
            code: "430100",
            name: "长沙市",
        },
        Division {
            code: "430102",
            name: "长沙市芙蓉区",
        },
        Division {
            code: "430200",
            name: "株洲市",
        },
        Division {
            code: "430202",
            name: "株洲市荷塘区",
        },
    ];
    let unit_names = [
        ["教育厅", "卫生健康委员会"],
        ["教育局", "交通运输局"],
        ["教育局", "城市管理局"],
        ["教育局", "农业农村局"],
        ["教育局", "民政局"],
    ];
    let mut units = Vec::new();
    for (d, division) in divisions.iter().enumerate() {
        for (i, name) in unit_names[d].iter().enumerate() {
            let n = d * 2 + i;
            units.push(Unit {
                code: format!("A{}{:02}", division.code, i + 1),
                name: format!("{}{name}", division.name),
                division: division.code,
                bank: n % 2,
                zba: format!("1901-{}{:04}", division.code, i + 1),
            });
        }
    }
    Province {
        divisions,
        finance: Org {
            role: OrgRole::Finance,
            code: "11430000006",
            name: "湖南省财政厅",
            bank_no: "",
        },
        pboc: Org {
            role: OrgRole::Pboc,
            code: "001430000001",
            name: "中国人民银行湖南省分行国库",
            bank_no: "001551000010",
        },
        banks: vec![
            Org {
                role: OrgRole::AgentBank,
                code: "102551000015",
                name: "中国工商银行长沙分行",
                bank_no: "102551000015",
            },
            Org {
                role: OrgRole::AgentBank,
                code: "105551000011",
                name: "中国建设银行长沙分行",
                bank_no: "105551000011",
            },
        ],
        counter: Org {
            role: OrgRole::BudgetUnit,
            code: "DW4300000001",
            name: "湖南省预算单位自助柜面",
            bank_no: "",
        },
        units,
    }
}

/// The demo's people: three per organisation.
const PEOPLE: [(Post, &str); 3] = [
    (Post::Maker, "maker"),
    (Post::Checker, "checker"),
    (Post::Signer, "signer"),
];

/// A demo user, as printed at start.
#[derive(Clone, Debug)]
pub struct DemoUser {
    pub login: String,
    pub name: String,
    pub organisation: String,
    /// The post the user holds (business users: the post of their certificate).
    pub post: crate::access::Post,
    /// The organisation's code (the party whose store keeps the user).
    pub org_code: String,
    /// The divisions the user sees (and those under them).
    pub divisions: Vec<String>,
    /// The budget units (AgencyCode) a unit's user acts for; empty for everybody else.
    pub units: Vec<String>,
}

/// The administrators of every organisation (三权分立: three people, a post each).
const ADMINS: [(crate::access::Post, &str, &str); 3] = [
    (crate::access::Post::SystemAdmin, "sysadmin", "系统管理员"),
    (crate::access::Post::SecurityAdmin, "secadmin", "安全管理员"),
    (crate::access::Post::AuditAdmin, "auditor", "审计管理员"),
];

/// The budget units whose own people sign in at the counter (a maker, a checker and a
/// signer each): a provincial unit and a county one.
pub const COUNTER_UNITS: [&str; 2] = ["A43000001", "A43010201"];

/// The division a finance trio of the demo is limited to (长沙市芙蓉区), to show a user of
/// a county who sees only its own vouchers.
pub const COUNTY_DIVISION: &str = "430102";

/// The stored password hash of the demo's users: not a hash of anything, so no password
/// logs them in; they use their API tokens.
const TOKEN_ONLY_HASH: &str = "$guoku$api-token-only";

/// Who the demo's access records are written by.
const SEED_ACTOR: &str = "demo-seed";

/// The demo's business windows: open all day, every day (Beijing time), so the demo works
/// at any hour. A deployment stores its divisions' real windows
/// ([`guoku_store::access::Access::put_division`]).
/// The demo province's divisions as the access store keeps them, each with the demo's
/// business window and its parent within the province.
///
/// # Errors
/// [`DemoError::Seed`] if a code does not parse (a bug).
pub fn access_divisions() -> Result<Vec<AccessDivision>, DemoError> {
    let province = province();
    let window = demo_window()?;
    province
        .divisions
        .iter()
        .map(|d| {
            let code: AdmDivCode = d.code.parse().map_err(seed)?;
            let parent = code
                .parent()
                .filter(|p| province.divisions.iter().any(|x| x.code == p.as_str()));
            Ok(AccessDivision {
                code,
                parent,
                name: d.name.into(),
                window,
            })
        })
        .collect()
}

fn demo_window() -> Result<BusinessWindow, DemoError> {
    BusinessWindow::new(0, 24 * 60, BusinessWindow::EVERY_DAY, 8 * 60).map_err(seed)
}

/// Why the demo cannot start.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} exists and is not a guoku demo directory; refusing to use or delete it")]
    NotADemo(PathBuf),
    #[error("the key or certificate material failed: {0}")]
    Seal(#[from] guoku_seal::Error),
    #[error("the store failed: {0}")]
    Store(#[from] StoreError),
    #[error("seeding failed: {0}")]
    Seed(String),
    #[error(transparent)]
    Party(#[from] PartyError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DemoError + '_ {
    move |source| DemoError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Options of [`Demo::open`].
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// The data directory.
    pub dir: PathBuf,
    /// Delete the directory's demo data first.
    pub fresh: bool,
    /// The signature suite of a new deployment (a resumed one keeps its own).
    pub suite: Suite,
    /// PostgreSQL instead of SQLite: every party in its own schema of one database.
    pub postgres: Option<DemoPostgres>,
}

/// Where a demo keeps its parties on PostgreSQL.
#[derive(Clone, Debug)]
pub struct DemoPostgres {
    /// The database URL.
    pub url: String,
    /// Each party's schema is this prefix and its organisation code (e.g. `guoku_demo_`).
    pub schema_prefix: String,
}

/// The running demo: every party, on one in-memory network.
pub struct Demo {
    pub province: Province,
    pub finance: Arc<Party<InMemory>>,
    pub pboc: Arc<Party<InMemory>>,
    pub banks: Vec<Arc<Party<InMemory>>>,
    pub counter: Arc<Party<InMemory>>,
    pub users: Vec<DemoUser>,
    pub year: StYear,
    /// Whether this start created the data (false: resumed).
    pub created: bool,
    /// The data directory: each organisation's keys are in `dir/<org code>/`.
    pub dir: PathBuf,
    next_voucher: AtomicU64,
}

impl Demo {
    /// Opens (creating on first use) the demo in `options.dir` (see the module
    /// documentation), with the clock `clock`.
    ///
    /// # Errors
    /// [`DemoError`]: a directory that is not a demo's, I/O, keys, stores, seeding.
    pub async fn open(options: &DemoOptions, clock: Clock) -> Result<Demo, DemoError> {
        let dir = &options.dir;
        let marker = dir.join(MARKER);
        if options.fresh && dir.exists() {
            if !marker.exists() && fs::read_dir(dir).map_err(io(dir))?.next().is_some() {
                return Err(DemoError::NotADemo(dir.clone()));
            }
            fs::remove_dir_all(dir).map_err(io(dir))?;
        }
        if dir.exists() && !marker.exists() && fs::read_dir(dir).map_err(io(dir))?.next().is_some()
        {
            return Err(DemoError::NotADemo(dir.clone()));
        }
        let province = province();
        let now = clock();
        let created = !marker.exists();
        if created {
            fs::create_dir_all(dir).map_err(io(dir))?;
            create_pki(dir, &province, options.suite, now)?;
        }
        let suite = read_suite(dir)?;
        let root = Certificate::from_der(&read(&dir.join("pki").join("root.der"))?)?;
        let trust = VoucherTrust {
            anchor: root,
            intermediates: Vec::new(),
            crls: Vec::new(),
            revocation: RevocationPolicy::CheckIfPresent,
        };
        let registry = Arc::new(Registry::builtin());
        let network = InMemoryNetwork::new();
        let year: StYear = crate::party::business_date(now)
            .to_string()
            .get(..4)
            .and_then(|y| y.parse().ok())
            .ok_or_else(|| DemoError::Seed("no budget year for today".into()))?;
        let pin = Pin::new(DEMO_PIN)?;
        let open_party = async |org: &Org,
                                config: PartyConfig|
               -> Result<Arc<Party<InMemory>>, DemoError> {
            let org_dir = dir.join(org.code);
            let store = match &options.postgres {
                None => Store::open_sqlite(SqliteConfig::new(org_dir.join("guoku.db"))).await?,
                Some(pg) => {
                    let schema = format!("{}{}", pg.schema_prefix, org.code.to_ascii_lowercase());
                    Store::prepare_postgres_schema(&pg.url, &schema, created).await?;
                    let mut config = PgConfig::new(pg.url.clone());
                    config.schema = Some(schema);
                    Store::connect_postgres(config).await?
                }
            };
            let staff = load_staff(&org_dir, &pin)?;
            let state = ExchangeState::new(
                org.peer(),
                suite,
                (*registry).clone(),
                trust.clone(),
                store.clone(),
                clock.clone(),
                ReceiveLimits::default(),
            );
            network.register(org.code, app(state));
            let transport = InMemory::new(network.clone(), org.peer());
            Ok(Arc::new(Party::new(
                config,
                registry.clone(),
                store,
                staff,
                transport,
                clock.clone(),
            )))
        };
        let base = |org: &Org| PartyConfig {
            me: org.peer(),
            name: org.name.into(),
            suite,
            finance: province.finance.code.into(),
            pboc: province.pboc.code.into(),
            bank_no: org.bank_no.into(),
            unit_accounts: Vec::new(),
            clearing_templates: Vec::new(),
            backoff: Backoff { base: 2, cap: 60 },
            clearing_every_secs: 0,
            status_every_secs: 5,
            audit_head_every_secs: AUDIT_HEAD_EVERY_SECS,
            require_payee_bank_no: false,
            rows_per_8207: crate::flows::batch::ROWS_PER_8207,
            banks: province
                .banks
                .iter()
                .map(|b| (b.code.to_owned(), b.bank_no.to_owned()))
                .collect(),
            divisions: province
                .divisions
                .iter()
                .map(|d| d.code.to_owned())
                .collect(),
            reconcile_every_secs: if matches!(org.role, OrgRole::Pboc | OrgRole::Finance) {
                RECONCILE_EVERY_SECS
            } else {
                0
            },
        };
        let finance = open_party(&province.finance, base(&province.finance)).await?;
        let pboc = open_party(&province.pboc, base(&province.pboc)).await?;
        let counter = open_party(&province.counter, base(&province.counter)).await?;
        let mut banks = Vec::new();
        for (b, org) in province.banks.iter().enumerate() {
            let mut config = base(org);
            config.unit_accounts = province
                .units
                .iter()
                .filter(|u| u.bank == b)
                .map(|u| (u.code.clone(), u.zba.clone()))
                .collect();
            config.clearing_templates = province
                .divisions
                .iter()
                .map(|d| {
                    crate::flows::clearing::request_template(
                        &registry,
                        d.code,
                        &year.get().to_string(),
                        org.bank_no,
                        crate::party::business_date(now),
                    )
                })
                .collect();
            config.clearing_every_secs = 10;
            banks.push(open_party(org, config).await?);
        }
        let province_code = province.divisions[0].code;
        let mut users: Vec<DemoUser> = province
            .orgs()
            .flat_map(|org| {
                PEOPLE.iter().map(move |(post, login)| DemoUser {
                    login: format!("{}-{login}", org.code),
                    name: person_name(org, *post),
                    organisation: org.name.into(),
                    post: (*post).into(),
                    org_code: org.code.into(),
                    divisions: vec![province_code.into()],
                    units: Vec::new(),
                })
            })
            .collect();
        // Finance's county trio: they see 长沙市芙蓉区 only.
        users.extend(PEOPLE.iter().map(|(post, login)| DemoUser {
            login: format!("{}-{login}-{COUNTY_DIVISION}", province.finance.code),
            name: format!("{}（芙蓉区）", person_name(&province.finance, *post)),
            organisation: province.finance.name.into(),
            post: (*post).into(),
            org_code: province.finance.code.into(),
            divisions: vec![COUNTY_DIVISION.into()],
            units: Vec::new(),
        }));
        // Each organisation's three administrators, for the whole province.
        for org in province.orgs() {
            users.extend(ADMINS.iter().map(|(post, login, title)| DemoUser {
                login: format!("{}-{login}", org.code),
                name: format!("{}{title}", org.name),
                organisation: org.name.into(),
                post: *post,
                org_code: org.code.into(),
                divisions: vec![province_code.into()],
                units: Vec::new(),
            }));
        }
        // The counter's unit people: they act for their own unit only.
        for code in COUNTER_UNITS {
            let Some(unit) = province.units.iter().find(|u| u.code == code) else {
                continue;
            };
            users.extend(PEOPLE.iter().map(|(post, login)| DemoUser {
                login: format!("{code}-{login}"),
                name: person_name_in(&unit.name, *post),
                organisation: unit.name.clone(),
                post: (*post).into(),
                org_code: province.counter.code.into(),
                divisions: vec![unit.division.into()],
                units: vec![code.into()],
            }));
        }
        let demo = Demo {
            province,
            finance,
            pboc,
            banks,
            counter,
            users,
            year,
            created,
            dir: dir.clone(),
            next_voucher: AtomicU64::new(0),
        };
        demo.seed_access().await?;
        if created {
            demo.seed().await?;
        }
        demo.send_monthly_quota().await?;
        if created {
            fs::write(
                &marker,
                "guoku demo data directory: `guoku demo --fresh` deletes and recreates it.\n",
            )
            .map_err(io(&marker))?;
        }
        Ok(demo)
    }

    /// Writes the demo's access records into every party's store, leaving alone what is
    /// there: the province's divisions with their business windows ([`demo_window`]), and
    /// each demo user of the party with their post and divisions.
    async fn seed_access(&self) -> Result<(), DemoError> {
        let (_, now) = self.finance.now();
        let window = demo_window()?;
        for party in self.parties() {
            let access = party.store.access();
            for d in &self.province.divisions {
                let code: AdmDivCode = d.code.parse().map_err(seed)?;
                if access.division(&code).await.map_err(seed)?.is_some() {
                    continue;
                }
                let parent = code
                    .parent()
                    .filter(|p| self.province.divisions.iter().any(|x| x.code == p.as_str()));
                let division = AccessDivision {
                    code,
                    parent,
                    name: d.name.into(),
                    window,
                };
                access
                    .put_division(&division, SEED_ACTOR, now)
                    .await
                    .map_err(seed)?;
            }
            // A unit's maker is also known to finance, whose drafts keep the unit's direct
            // payment applications (made by them, checked and signed by finance's people).
            let here = |u: &&DemoUser| {
                u.org_code == party.org_code()
                    || (party.role() == OrgRole::Finance
                        && !u.units.is_empty()
                        && u.post == crate::access::Post::Maker)
            };
            for user in self.users.iter().filter(here) {
                let record = match access.user_by_login(&user.login).await.map_err(seed)? {
                    Some(record) => record,
                    None => {
                        let new = NewUser {
                            login: user.login.clone(),
                            display_name: user.name.clone(),
                            password_hash: TOKEN_ONLY_HASH.into(),
                        };
                        access
                            .create_user(new, SEED_ACTOR, now)
                            .await
                            .map_err(seed)?
                    }
                };
                let post = user.post.code();
                if !record.posts.iter().any(|p| p == post) {
                    access
                        .grant_post(record.id, post, SEED_ACTOR, now, |_| {
                            Ok::<(), std::convert::Infallible>(())
                        })
                        .await
                        .map_err(seed)?
                        .map_err(seed)?;
                }
                for division in &user.divisions {
                    let code: AdmDivCode = division.parse().map_err(seed)?;
                    if !record.divisions.contains(&code) {
                        access
                            .grant_division(record.id, &code, SEED_ACTOR, now)
                            .await
                            .map_err(seed)?;
                    }
                }
                for unit in &user.units {
                    if !record.units.contains(unit) {
                        access
                            .grant_unit(record.id, unit, SEED_ACTOR, now)
                            .await
                            .map_err(seed)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Every party, for a loop that ticks them all.
    #[must_use]
    pub fn parties(&self) -> Vec<Arc<Party<InMemory>>> {
        let mut all = vec![
            self.finance.clone(),
            self.pboc.clone(),
            self.counter.clone(),
        ];
        all.extend(self.banks.iter().cloned());
        all
    }

    /// Ticks every party until a whole round does nothing (at most `rounds` rounds); the
    /// rounds run.
    ///
    /// # Errors
    /// The first party's failure.
    pub async fn settle(&self, rounds: usize) -> Result<usize, PartyError> {
        for round in 0..rounds {
            let mut idle = true;
            for party in self.parties() {
                idle &= party.tick().await?.is_idle();
            }
            if idle {
                return Ok(round + 1);
            }
        }
        Ok(rounds)
    }

    /// A fresh voucher number: `prefix` and 15 digits, 17 characters in all (so it fits
    /// every type, 5106 too), unique in this process and across restarts (see
    /// [`voucher_serial`]).
    pub fn voucher_no(&self, prefix: &str) -> String {
        let millis = (self.finance.clock)().unix_timestamp_nanos() / 1_000_000;
        let millis = u64::try_from(millis).unwrap_or(0);
        format!("{prefix}{:015}", voucher_serial(&self.next_voucher, millis))
    }

    /// The direct indicator of `unit`.
    ///
    /// # Errors
    /// [`DemoError::Seed`] for an unknown unit.
    pub fn indicator(&self, unit: &str) -> Result<IndicatorKey, DemoError> {
        let u = self
            .province
            .units
            .iter()
            .find(|u| u.code == unit)
            .ok_or_else(|| DemoError::Seed(format!("no unit {unit}")))?;
        indicator_of(u, self.year)
    }

    /// A direct payment (5201) of `amount` from `unit` to a payee, unstamped, for
    /// [`Party::issue_direct`].
    ///
    /// # Errors
    /// [`DemoError::Seed`] for an unknown unit.
    pub fn direct_voucher(
        &self,
        unit: &str,
        amount: Amount,
        payee: &Payee,
        date: BizDate,
    ) -> Result<Voucher, DemoError> {
        let u = self.unit(unit)?;
        let ty = self
            .finance
            .registry
            .get("5201")
            .ok_or_else(|| DemoError::Seed("the registry has no 5201".into()))?;
        let mut v = sample(ty, date, VoucherFlag::Original, Style::Plain, 1);
        let no = self.voucher_no("ZF");
        let bank = self.province.direct_bank();
        for (name, value) in [
            ("Id", no.as_str()),
            ("VoucherNo", no.as_str()),
            ("AdmDivCode", u.division),
            ("StYear", &self.year.get().to_string()),
            ("VouDate", &date.to_string()),
            ("FundTypeCode", FUND),
            ("PayTypeCode", "11"),
            ("AgencyCode", &u.code),
            ("AgencyName", &u.name),
            ("ExpFuncCode", FUNC),
            ("ExpEcoCode", ECO),
            ("PayeeAcctNo", &payee.account),
            ("PayeeAcctName", &payee.name),
            ("PayeeAcctBankName", &payee.bank_name),
            ("PayAcctNo", &finance_zba(u.division)),
            (
                "PayAcctName",
                &format!("{}零余额账户", self.province.finance.name),
            ),
            ("PayAcctBankName", bank.name),
            ("PayAmt", &amount.to_string()),
            ("PaySummaryName", &payee.summary),
            ("BusinessTypeCode", "1"),
        ] {
            v.header.set(name, value);
        }
        crate::flows::common::single_detail(&self.finance.registry, &mut v);
        Ok(v)
    }

    /// A salary payment (5201, BusinessTypeCode 3) from `unit` of one row per amount in
    /// `rows`, each to its own employee's account, unstamped, for [`Party::issue_direct`];
    /// `n` numbers the employees' accounts apart from other batches'.
    ///
    /// # Errors
    /// [`DemoError::Seed`] for an unknown unit, no rows, or a total that overflows.
    pub fn salary_voucher(
        &self,
        unit: &str,
        rows: &[Amount],
        n: u64,
        date: BizDate,
    ) -> Result<Voucher, DemoError> {
        let total = rows
            .iter()
            .try_fold(Amount::ZERO, |sum, a| sum.checked_add(*a))
            .filter(|t| t.is_positive())
            .ok_or_else(|| DemoError::Seed("a salary batch needs rows of a total".into()))?;
        let payee = Payee::demo(n);
        let mut v = self.direct_voucher(unit, total, &payee, date)?;
        let template = v
            .details
            .first()
            .cloned()
            .ok_or_else(|| DemoError::Seed("the 5201 sample has no detail row".into()))?;
        v.header.set("BusinessTypeCode", "3");
        v.header.set("PaySummaryName", "工资");
        v.details = rows
            .iter()
            .enumerate()
            .map(|(i, amount)| {
                let mut d = template.clone();
                d.set("Id", (i + 1).to_string());
                d.set("ExpFuncCode", FUNC);
                d.set("AgencyCode", unit);
                d.set("PayeeAcctNo", format!("6217-{n:08}-{:05}", i + 1));
                d.set("PayeeAcctName", format!("职工{}", i + 1));
                d.set("PayAmt", amount.to_string());
                d
            })
            .collect();
        Ok(v)
    }

    /// An authorized payment (8202) of `amount` from `unit`'s zero-balance account,
    /// unstamped, for [`Party::issue_authorized`]; the bank it goes to.
    ///
    /// # Errors
    /// [`DemoError::Seed`] for an unknown unit.
    pub fn authorized_voucher(
        &self,
        unit: &str,
        amount: Amount,
        payee: &Payee,
        date: BizDate,
    ) -> Result<(Voucher, &'static str), DemoError> {
        let u = self.unit(unit)?;
        let ty = self
            .counter
            .registry
            .get("8202")
            .ok_or_else(|| DemoError::Seed("the registry has no 8202".into()))?;
        let mut v = sample(ty, date, VoucherFlag::Original, Style::Plain, 1);
        let no = self.voucher_no("SQ");
        let bank = &self.province.banks[u.bank];
        for (name, value) in [
            ("Id", no.as_str()),
            ("VoucherNo", no.as_str()),
            ("AdmDivCode", u.division),
            ("StYear", &self.year.get().to_string()),
            ("VouDate", &date.to_string()),
            ("FundTypeCode", FUND),
            ("PayTypeCode", "12"),
            ("AgencyCode", &u.code),
            ("AgencyName", &u.name),
            ("ExpFuncCode", FUNC),
            ("ExpEcoCode", ECO),
            ("PayeeAcctNo", &payee.account),
            ("PayeeAcctName", &payee.name),
            ("PayeeAcctBankName", &payee.bank_name),
            ("PayAcctNo", &u.zba),
            ("PayAcctName", &format!("{}零余额账户", u.name)),
            ("PayAcctBankName", bank.name),
            ("PayAmt", &amount.to_string()),
            ("PaySummaryName", &payee.summary),
        ] {
            v.header.set(name, value);
        }
        crate::flows::common::single_detail(&self.finance.registry, &mut v);
        Ok((v, bank.code))
    }

    fn unit(&self, code: &str) -> Result<&Unit, DemoError> {
        self.province
            .units
            .iter()
            .find(|u| u.code == code)
            .ok_or_else(|| DemoError::Seed(format!("no unit {code}")))
    }

    /// Seeds a new demo's books and sends finance's clearing-quota notices to PBOC.
    async fn seed(&self) -> Result<(), DemoError> {
        let p = &self.province;
        let year = self.year;
        let plan =
            Amount::from_fen(MONTHLY_PLAN_FEN).map_err(|e| DemoError::Seed(e.to_string()))?;
        let yearly =
            Amount::from_fen(MONTHLY_PLAN_FEN * 12).map_err(|e| DemoError::Seed(e.to_string()))?;
        let (_, now) = self.finance.now();
        let mut ids = 1_000_u128..;
        let mut next = || ids.next().expect("ids");
        // Finance: an indicator per unit, with a plan in every month.
        let mut accounts = Vec::new();
        let mut ops = Vec::new();
        let mut tenants = Vec::new();
        for u in &p.units {
            let key = indicator_of(u, year)?;
            if !tenants.contains(&key.tenant) {
                tenants.push(key.tenant);
                accounts.push(BookAccount::budget_source(key.tenant));
            }
            accounts.push(BookAccount::indicator(&key));
            ops.push(BookOp::approve_indicator(next(), &key, yearly).map_err(seed)?);
            for month in 1..=12 {
                accounts.push(BookAccount::plan(&key, month).map_err(seed)?);
                accounts.push(BookAccount::plan_used(&key, month).map_err(seed)?);
                ops.push(BookOp::approve_plan(next(), &key, month, plan).map_err(seed)?);
            }
        }
        book(&self.finance.store, accounts, &ops, now).await?;
        // Banks: money books per division and the units' zero-balance accounts (onboarding);
        // the units' plan quota comes from finance's 5105 notices below.
        for (b, bank) in self.banks.iter().enumerate() {
            let mut accounts = Vec::new();
            for d in &p.divisions {
                let t = tenant(d.code, year)?;
                accounts.extend([
                    BookAccount::advance(t),
                    BookAccount::finance_zba(t),
                    BookAccount::payees(t),
                    BookAccount::receivable_pboc(t),
                    BookAccount::pboc_reserve(t),
                ]);
            }
            for u in p.units.iter().filter(|u| u.bank == b) {
                let t = tenant(u.division, year)?;
                let code: UnitCode = u.code.parse().map_err(seed)?;
                accounts.push(BookAccount::unit_zba(t, &code));
            }
            book(&bank.store, accounts, &[], now).await?;
        }
        // PBOC: the TSA funded, each bank's clearing account.
        let mut accounts = Vec::new();
        let mut ops = Vec::new();
        let funding =
            Amount::from_fen(TSA_FUNDING_FEN).map_err(|e| DemoError::Seed(e.to_string()))?;
        for d in &p.divisions {
            let t = tenant(d.code, year)?;
            accounts.extend([BookAccount::revenue(t), BookAccount::tsa(t)]);
            for bank in &p.banks {
                accounts.push(BookAccount::bank_clearing(
                    t,
                    &bank
                        .bank_no
                        .parse()
                        .map_err(|_| DemoError::Seed("bank no".into()))?,
                ));
            }
            ops.push(BookOp::fund_tsa(next(), t, funding).map_err(seed)?);
        }
        book(&self.pboc.store, accounts, &ops, now).await?;
        // Finance → PBOC: a year's clearing quota per unit, direct (5108, through finance's
        // bank) and authorized (5106, through the unit's bank), as signed notices.
        let date = crate::party::business_date(self.finance.now().0);
        // Each notice is made from a sample of its own type (5108 direct, 5106 authorized).
        let template_of = |vt_code: &str| {
            self.finance
                .registry
                .get(vt_code)
                .map(|ty| sample(ty, date, VoucherFlag::Original, Style::Plain, 1))
                .ok_or_else(|| DemoError::Seed(format!("the registry has no {vt_code}")))
        };
        let direct_template = template_of(quota::VT_5108)?;
        let authorized_template = template_of(quota::VT_5106)?;
        for u in &p.units {
            for (pay, bank) in [
                (PayType::Direct, p.direct_bank()),
                (PayType::Authorized, &p.banks[u.bank]),
            ] {
                let key = ClearingKey {
                    tenant: tenant(u.division, year)?,
                    bank: bank
                        .bank_no
                        .parse()
                        .map_err(|_| DemoError::Seed("bank no".into()))?,
                    unit: u.code.parse().map_err(seed)?,
                    func: FUNC.parse().map_err(|_| DemoError::Seed("func".into()))?,
                    fund: FUND.parse().map_err(|_| DemoError::Seed("fund".into()))?,
                    pay,
                };
                let no = self.voucher_no("ED");
                let template = match key.pay {
                    PayType::Authorized => &authorized_template,
                    _ => &direct_template,
                };
                let voucher = notice_voucher(template, &key, yearly, &no, date)
                    .map_err(|e| DemoError::Seed(e.to_string()))?;
                self.finance.send_quota_notice(voucher, "seed").await?;
            }
        }
        self.settle(20).await?;
        Ok(())
    }

    /// Finance → each bank: this month's and next month's plan quota (5105) of the units
    /// whose zero-balance accounts it keeps, one notice per division and month, as finance
    /// sends them before each month. Run at every start: a notice whose number finance's
    /// library holds is not sent again, and a demo resumed in a later month gets that
    /// month's quota.
    ///
    /// # Errors
    /// [`DemoError`] if a notice cannot be made or sent.
    pub async fn send_monthly_quota(&self) -> Result<(), DemoError> {
        let p = &self.province;
        let year = self.year;
        let plan = Amount::from_fen(MONTHLY_PLAN_FEN).map_err(seed)?;
        let today = crate::party::business_date(self.finance.now().0);
        let this_month = u8::from(today.as_date().month());
        let months: Vec<u8> = [this_month, this_month + 1]
            .into_iter()
            .filter(|m| (1..=12).contains(m))
            .collect();
        let template_ty = self
            .finance
            .registry
            .get(quota::VT_5105)
            .ok_or_else(|| DemoError::Seed("the registry has no 5105".into()))?;
        for (b, bank) in p.banks.iter().enumerate() {
            for d in &p.divisions {
                let lines = p
                    .units
                    .iter()
                    .filter(|u| u.bank == b && u.division == d.code)
                    .map(|u| {
                        Ok(quota::UnitQuotaLine {
                            unit: u.code.parse().map_err(seed)?,
                            zba: u.zba.clone(),
                            func: FUNC.parse().map_err(|_| DemoError::Seed("func".into()))?,
                            amount: plan,
                        })
                    })
                    .collect::<Result<Vec<_>, DemoError>>()?;
                if lines.is_empty() {
                    continue;
                }
                for &month in &months {
                    // Numbered by year, month, division and bank, and sent once: a number
                    // finance's library holds is not sent again.
                    let no = format!("SE{}{month:02}{}{b}", year.get(), d.code);
                    let key = VoucherKey {
                        adm_div_code: d.code.to_owned(),
                        st_year: year.get().to_string(),
                        vt_code: quota::VT_5105.to_owned(),
                        voucher_no: no.clone(),
                    };
                    if self
                        .finance
                        .store
                        .library()
                        .status(&key, Leg::Original)
                        .await
                        .map_err(PartyError::from)?
                        .is_some()
                    {
                        continue;
                    }
                    // Dated the first day of the month before (January's on January 1st):
                    // sent ahead of its month, a notice is never dated in the future.
                    let dated = month.saturating_sub(1).max(1);
                    let date: BizDate = format!("{}{dated:02}01", year.get())
                        .parse()
                        .map_err(|_| DemoError::Seed("a month's first day".into()))?;
                    let template =
                        sample(template_ty, date, VoucherFlag::Original, Style::Plain, 1);
                    let notice = quota::UnitQuotaNotice {
                        tenant: tenant(d.code, year)?,
                        bank: bank
                            .bank_no
                            .parse()
                            .map_err(|_| DemoError::Seed("bank no".into()))?,
                        fund: FUND.parse().map_err(|_| DemoError::Seed("fund".into()))?,
                        month,
                        lines: lines.clone(),
                    };
                    let voucher = quota::notice_5105_voucher(&template, &notice, &no, date)
                        .map_err(|e| DemoError::Seed(e.to_string()))?;
                    self.finance
                        .send_unit_quota_notice(voucher, bank.code, SEED_ACTOR)
                        .await?;
                }
            }
        }
        self.settle(20).await?;
        Ok(())
    }
}

/// A payee of a demo payment.
#[derive(Clone, Debug)]
pub struct Payee {
    pub name: String,
    pub account: String,
    pub bank_name: String,
    pub summary: String,
}

impl Payee {
    /// The demo's usual payee.
    #[must_use]
    pub fn demo(n: u64) -> Payee {
        Payee {
            name: "长沙市芙蓉建筑工程有限公司".into(),
            account: format!("6222-{:012}", n % 1_000_000_000_000),
            bank_name: "中国建设银行长沙芙蓉支行".into(),
            summary: "采购办公设备".into(),
        }
    }
}

fn seed(e: impl std::fmt::Display) -> DemoError {
    DemoError::Seed(e.to_string())
}

fn tenant(division: &str, year: StYear) -> Result<Tenant, DemoError> {
    Ok(Tenant {
        adm_div: division.parse::<AdmDivCode>().map_err(seed)?,
        year,
    })
}

/// The next voucher serial: the millisecond times 100 plus a count, and always above the
/// last one given (`last`). Up to 100 numbers a millisecond follow the clock; more run ahead
/// of it and stay unique. A restart starts again from the clock, so it never gives a number
/// given before unless the last run made more than 100 a millisecond on average right up to
/// the restart.
fn voucher_serial(last: &AtomicU64, millis: u64) -> u64 {
    let floor = millis.saturating_mul(100);
    let mut current = last.load(Ordering::Relaxed);
    loop {
        let next = floor.max(current + 1);
        match last.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next,
            Err(seen) => current = seen,
        }
    }
}

fn indicator_of(u: &Unit, year: StYear) -> Result<IndicatorKey, DemoError> {
    Ok(IndicatorKey {
        tenant: tenant(u.division, year)?,
        unit: u.code.parse().map_err(seed)?,
        func: FUNC.parse().map_err(|_| DemoError::Seed("func".into()))?,
        eco: ECO.parse().map_err(|_| DemoError::Seed("eco".into()))?,
        fund: FUND.parse().map_err(|_| DemoError::Seed("fund".into()))?,
        pay: PayType::Direct,
    })
}

/// Creates accounts (existing ones are fine) and applies `ops`, all of which must succeed.
async fn book(
    store: &Store,
    accounts: Vec<BookAccount>,
    ops: &[BookOp],
    now: u64,
) -> Result<(), DemoError> {
    for chunk in accounts.chunks(1_000) {
        for r in store.create_book_accounts(chunk.to_vec()).await? {
            if !matches!(r, CreateAccountResult::Ok | CreateAccountResult::Exists) {
                return Err(DemoError::Seed(format!("account refused: {r:?}")));
            }
        }
    }
    for chunk in ops.chunks(1_000) {
        for r in store.apply_book_ops(now, chunk).await? {
            r.map_err(seed)?;
        }
    }
    Ok(())
}

fn read(path: &Path) -> Result<Vec<u8>, DemoError> {
    fs::read(path).map_err(io(path))
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), DemoError> {
    fs::write(path, bytes).map_err(io(path))
}

fn read_suite(dir: &Path) -> Result<Suite, DemoError> {
    let path = dir.join("pki").join("suite");
    match String::from_utf8_lossy(&read(&path)?).trim() {
        "sm" => Ok(Suite::Sm),
        "intl" => Ok(Suite::Intl),
        other => Err(DemoError::Seed(format!(
            "unknown suite {other:?} in {}",
            path.display()
        ))),
    }
}

fn person_name(org: &Org, post: Post) -> String {
    person_name_in(org.name, post)
}

fn person_name_in(organisation: &str, post: Post) -> String {
    let who = match post {
        Post::Maker => "经办员",
        Post::Checker => "复核员",
        Post::Signer => "签章员",
    };
    format!("{organisation}{who}")
}

/// The deployment PKI: a root, and for every organisation three people, a business seal
/// and (banks and PBOC) a paid seal, keys in PIN key stores.
fn create_pki(
    dir: &Path,
    province: &Province,
    suite: Suite,
    now: OffsetDateTime,
) -> Result<(), DemoError> {
    let mut rng = rand::rng();
    let algorithm = match suite {
        Suite::Sm => KeyAlgorithm::Sm2,
        Suite::Intl => KeyAlgorithm::Ed25519,
    };
    let pki = dir.join("pki");
    fs::create_dir_all(&pki).map_err(io(&pki))?;
    write(
        &pki.join("suite"),
        match suite {
            Suite::Sm => b"sm",
            Suite::Intl => b"intl",
        },
    )?;
    let root_validity = Validity::days_from(now - time::Duration::days(2), 10 * 365);
    let validity = Validity::days_from(now - time::Duration::days(1), 3 * 365);
    let root_key = SigningKey::generate(algorithm, &mut rng)?;
    let root = make_root_ca(
        &root_key,
        &CaSubject {
            organisation: province.finance.name.into(),
            common_name: "guoku demo root CA".into(),
        },
        &Serial::random(&mut rng),
        root_validity,
        Sm2CertId::default(),
    )?;
    write(&pki.join("root.der"), root.to_der())?;
    let ca = CertificateAuthority::new(root, root_key)?;
    let pin = Pin::new(DEMO_PIN)?;
    for org in province.orgs() {
        let org_dir = dir.join(org.code);
        fs::create_dir_all(&org_dir).map_err(io(&org_dir))?;
        let organisation = org.organisation();
        let mut signer = None;
        for (i, (post, file)) in PEOPLE.iter().enumerate() {
            let key = SigningKey::generate(algorithm, &mut rng)?;
            let person = Person {
                organisation: organisation.clone(),
                post: *post,
                name: person_name(org, *post),
                staff_id: format!("{:03}", i + 1),
            };
            let cert = ca.issue_person(
                key.verifying_key(),
                &person,
                &Serial::random(&mut rng),
                validity,
            )?;
            write(&org_dir.join(format!("{file}.der")), cert.to_der())?;
            KeyStoreFile::create(
                org_dir.join(format!("{file}.key")),
                &key,
                &pin,
                suite,
                KdfParams::default(),
                5,
                &mut rng,
            )?;
            if *post == Post::Signer {
                signer = Some((key, cert));
            }
        }
        let (signer_key, signer_cert) = signer.expect("a signer");
        let mut kinds = vec![(StampKind::Ywzyz, "business_seal", "业务专用章")];
        if matches!(org.role, OrgRole::AgentBank | OrgRole::Pboc) {
            kinds.push((StampKind::Zqz, "paid_seal", "转讫章"));
        }
        for (kind, file, caption) in kinds {
            let seal_key = SigningKey::generate(algorithm, &mut rng)?;
            let seal_cert = ca.issue_organisation(
                seal_key.verifying_key(),
                &organisation,
                &Serial::random(&mut rng),
                validity,
            )?;
            let spec = SealSpec {
                es_id: format!("{}-{}", org.code, kind.code()),
                kind,
                name: format!("{}{caption}", org.name),
                holders: vec![signer_cert.clone()],
                list_form: CertListForm::Certificates,
                picture: SealPicture::demo(org.name, caption, 40),
                created: now,
                validity,
            };
            let seal = make_seal(suite, &spec, &seal_key, &seal_cert)?;
            write(&org_dir.join(format!("{file}.der")), seal.to_der())?;
        }
        drop(signer_key);
        let tls_key = SigningKey::generate(KeyAlgorithm::EcdsaP256, &mut rng)?;
        let node = TlsNode {
            organisation: org.name.into(),
            common_name: format!("{}-node", org.code),
            dns_names: vec!["localhost".into()],
            ip_addresses: vec![IpAddr::V4(Ipv4Addr::LOCALHOST)],
        };
        let tls_cert = ca.issue_tls_for_organisation(
            tls_key.verifying_key(),
            &organisation,
            &node,
            &Serial::random(&mut rng),
            validity,
        )?;
        write(&org_dir.join("tls.der"), tls_cert.to_der())?;
        write_secret(&org_dir.join("tls.key"), tls_key.to_pkcs8_pem()?.as_bytes())?;
    }
    write_node_configs(dir, province, suite)?;
    Ok(())
}

/// How often the demo's PBOC and finance reconcile the day so far with the banks.
pub const RECONCILE_EVERY_SECS: u64 = 600;

/// The first exchange port of the parties run as separate processes (`guoku serve`); the
/// API ports start at [`API_PORT_BASE`]. Each party gets base + its index in
/// [`Province::orgs`].
pub const EXCHANGE_PORT_BASE: u16 = 7401;
/// See [`EXCHANGE_PORT_BASE`].
pub const API_PORT_BASE: u16 = 8401;

/// Writes `<dir>/<code>/node.toml` for every party, for `guoku serve --config`.
fn write_node_configs(dir: &Path, province: &Province, suite: Suite) -> Result<(), DemoError> {
    let orgs: Vec<&Org> = province.orgs().collect();
    let port = |base: u16, i: usize| base + u16::try_from(i).expect("a few parties");
    for (i, org) in orgs.iter().enumerate() {
        let bank = province.banks.iter().position(|b| b.code == org.code);
        let config = crate::config::NodeConfig {
            role: crate::config::role_name(org.role).into(),
            org_code: org.code.into(),
            name: org.name.into(),
            suite: match suite {
                Suite::Sm => "sm",
                Suite::Intl => "intl",
            }
            .into(),
            dir: PathBuf::from("."),
            root: PathBuf::from("../pki/root.der"),
            postgres: None,
            postgres_schema: None,
            exchange_listen: SocketAddr::from((Ipv4Addr::LOCALHOST, port(EXCHANGE_PORT_BASE, i))),
            api_listen: SocketAddr::from((Ipv4Addr::LOCALHOST, port(API_PORT_BASE, i))),
            finance: province.finance.code.into(),
            pboc: province.pboc.code.into(),
            bank_no: org.bank_no.into(),
            unit_accounts: province
                .units
                .iter()
                .filter(|u| Some(u.bank) == bank)
                .map(|u| [u.code.clone(), u.zba.clone()])
                .collect(),
            clearing_divisions: if bank.is_some() {
                province
                    .divisions
                    .iter()
                    .map(|d| d.code.to_owned())
                    .collect()
            } else {
                Vec::new()
            },
            clearing_every_secs: if bank.is_some() { 10 } else { 0 },
            require_payee_bank_no: false,
            rows_per_8207: crate::flows::batch::ROWS_PER_8207,
            status_every_secs: 5,
            idempotency_lease_secs: guoku_store::idempotency::IdempotencyConfig::default()
                .lease_secs,
            audit_head_every_secs: AUDIT_HEAD_EVERY_SECS,
            reconcile_banks: if matches!(org.role, OrgRole::Pboc | OrgRole::Finance) {
                province
                    .banks
                    .iter()
                    .map(|b| [b.code.to_owned(), b.bank_no.to_owned()])
                    .collect()
            } else {
                Vec::new()
            },
            reconcile_divisions: province
                .divisions
                .iter()
                .map(|d| d.code.to_owned())
                .collect(),
            reconcile_every_secs: if matches!(org.role, OrgRole::Pboc | OrgRole::Finance) {
                RECONCILE_EVERY_SECS
            } else {
                0
            },
            backoff_secs: [2, 60],
            api_tokens: None,
            portal_key: Some(PathBuf::from("portal.key")),
            portal_secure_cookies: false,
            peers: orgs
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(j, other)| crate::config::PeerAddress {
                    org_code: other.code.into(),
                    addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port(EXCHANGE_PORT_BASE, j))),
                    server_name: "localhost".into(),
                })
                .collect(),
            audit_retention_months: crate::config::DEFAULT_AUDIT_RETENTION_MONTHS,
        };
        let path = dir.join(org.code).join("node.toml");
        write(&path, config.to_toml().as_bytes())?;
        // The demo's portal key (public, as the demo's passwords are): the users seeded in
        // this store can sign in to the organisation's own node too.
        write_secret(&dir.join(org.code).join("portal.key"), &portal_key_bytes())?;
    }
    Ok(())
}

/// The demo's portal key, which seals its users' authenticator secrets: public, as the
/// demo's passwords are (a deployment makes its own, 32 random bytes kept secret).
#[must_use]
pub fn portal_key_bytes() -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(b"guoku demo portal key: not a secret").into()
}

/// Writes a file only its owner can read.
fn write_secret(path: &Path, bytes: &[u8]) -> Result<(), DemoError> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options.open(path).map_err(io(path))?;
    file.write_all(bytes).map_err(io(path))
}

/// An organisation's staff from its directory, keys unlocked with `pin`.
pub fn load_staff(org_dir: &Path, pin: &Pin) -> Result<Staff, DemoError> {
    let holder = |file: &str| -> Result<Holder, DemoError> {
        let certificate = Certificate::from_der(&read(&org_dir.join(format!("{file}.der")))?)?;
        let key = KeyStoreFile::open(org_dir.join(format!("{file}.key"))).unlock(pin)?;
        Ok(Holder {
            name: certificate.subject_info().common_name.unwrap_or_default(),
            key,
            certificate,
        })
    };
    let paid = org_dir.join("paid_seal.der");
    Ok(Staff {
        maker: holder("maker")?,
        checker: holder("checker")?,
        signer: holder("signer")?,
        business_seal: Seal::from_der(&read(&org_dir.join("business_seal.der"))?)?,
        paid_seal: if paid.exists() {
            Some(Seal::from_der(&read(&paid)?)?)
        } else {
            None
        },
    })
}

#[cfg(test)]
mod numbering_tests {
    use super::*;

    #[test]
    fn voucher_serials_rise_fit_17_characters_and_a_restart_starts_above_the_last_run() {
        let last = AtomicU64::new(0);
        let millis = 1_795_810_278_000;
        // 250 numbers in one millisecond: they run ahead of the clock and stay unique.
        let first_run: Vec<u64> = (0..250).map(|_| voucher_serial(&last, millis)).collect();
        assert!(first_run.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(first_run[0], millis * 100);
        // The clock moving on does not go back below what was given.
        let later = voucher_serial(&last, millis + 1);
        assert!(later > first_run[249]);
        // The clock well ahead: numbers follow it again.
        assert_eq!(voucher_serial(&last, millis + 10), (millis + 10) * 100);
        // A restart 5 ms after a run that made 100 a millisecond gives new numbers.
        let old = AtomicU64::new(0);
        let made: Vec<u64> = (0..5)
            .flat_map(|ms| (0..100).map(move |_| millis + ms))
            .map(|ms| voucher_serial(&old, ms))
            .collect();
        let restarted = AtomicU64::new(0);
        assert!(voucher_serial(&restarted, millis + 5) > *made.last().unwrap());
        let no = format!("ED{:015}", voucher_serial(&restarted, millis + 5));
        assert_eq!(no.len(), 17);
    }
}
