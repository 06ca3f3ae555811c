//! A party's configuration file (`guoku serve --config FILE`), which `guoku demo` writes
//! for every party of the demo province, and the API's tokens file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use guoku_seal::Suite;
use guoku_seal::pki::OrgRole;
use guoku_store::StoreError;
use serde::{Deserialize, Serialize};

/// A party's configuration file.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// `finance`, `pboc`, `bank` or `counter`.
    pub role: String,
    /// The organisation code (in its certificates' `serialNumber`).
    pub org_code: String,
    /// The organisation's name.
    pub name: String,
    /// `sm` or `intl`.
    pub suite: String,
    /// The directory with the staff's keys and certificates (`maker`, `checker`,
    /// `signer`: `.der` and PIN key store `.key`), its seals (`business_seal.der`,
    /// `paid_seal.der`), its TLS certificate and key (`tls.der`, `tls.key`), and the SQLite
    /// store unless `postgres` is set.
    pub dir: PathBuf,
    /// The deployment root certificate (DER).
    pub root: PathBuf,
    /// A PostgreSQL URL for the store instead of SQLite.
    #[serde(default)]
    pub postgres: Option<String>,
    /// The PostgreSQL schema (created if missing).
    #[serde(default)]
    pub postgres_schema: Option<String>,
    /// Where the exchange endpoint listens (mutual TLS).
    pub exchange_listen: SocketAddr,
    /// Where the HTTP API listens.
    pub api_listen: SocketAddr,
    /// Finance's organisation code.
    pub finance: String,
    /// PBOC's organisation code.
    pub pboc: String,
    /// This party's bank number (banks, PBOC).
    #[serde(default)]
    pub bank_no: String,
    /// A bank: the unit zero-balance accounts it keeps, `[unit code, account]`.
    #[serde(default)]
    pub unit_accounts: Vec<[String; 2]>,
    /// A bank: the divisions it sends clearing requests for.
    #[serde(default)]
    pub clearing_divisions: Vec<String>,
    /// A bank: seconds between clearing rounds (0: only when asked).
    #[serde(default)]
    pub clearing_every_secs: u64,
    /// A bank: a single payment (5201 or 8202 of `BusinessTypeCode` 1) without the payee's
    /// bank number (`PayeeAcctBankNo`) waits for a person to complete it (待补录, on the
    /// bank desk's exceptions page) instead of being paid. Optional; default `false`.
    #[serde(default)]
    pub require_payee_bank_no: bool,
    /// Finance: a salary or batch 5201 with more rows than this travels as a master without
    /// rows and 8207s (财政批量业务支付明细) of at most this many rows each; 0: the rows
    /// always travel in the 5201. Optional; default 500.
    #[serde(default = "default_rows_per_8207")]
    pub rows_per_8207: usize,
    /// Seconds between asking receivers what became of the vouchers sent (0: never).
    #[serde(default = "default_status_every")]
    pub status_every_secs: u64,
    /// Seconds a request holds its idempotency key before another may take it over (the
    /// request's process may have died). Default 300; a node restarted after a crash answers
    /// a retried request once the lease is over.
    #[serde(default = "default_idempotency_lease")]
    pub idempotency_lease_secs: u64,
    /// Seconds between signed tree heads of the audit log (0: only at each business-day
    /// close and when asked). Default 300.
    #[serde(default = "default_audit_head_every")]
    pub audit_head_every_secs: u64,
    /// PBOC and finance: the banks they reconcile with, `[organisation code, bank number]`.
    #[serde(default)]
    pub reconcile_banks: Vec<[String; 2]>,
    /// PBOC and finance: the divisions they reconcile.
    #[serde(default)]
    pub reconcile_divisions: Vec<String>,
    /// PBOC and finance: seconds between reconciliation rounds (0: never).
    #[serde(default)]
    pub reconcile_every_secs: u64,
    /// The outbox's first retry delay and its cap, in seconds.
    #[serde(default = "default_backoff")]
    pub backoff_secs: [u64; 2],
    /// The API's users: a TOML file of `[[token]]` entries (`login`, `post`,
    /// `sha256` = the hex SHA-256 of the bearer token); none: the API refuses every call.
    #[serde(default)]
    pub api_tokens: Option<PathBuf>,
    /// The web portal: a file of the 32 secret bytes that seal the users' authenticator
    /// secrets (relative to this file; `guoku demo --init-only` writes the demo's). None:
    /// the node serves no portal.
    #[serde(default)]
    pub portal_key: Option<PathBuf>,
    /// Mark the portal's cookies `Secure` (the default). Off only for a portal served over
    /// plain HTTP on the loopback, as the demo's nodes are.
    #[serde(default = "default_true")]
    pub portal_secure_cookies: bool,
    /// The other parties' exchange endpoints.
    #[serde(default)]
    pub peers: Vec<PeerAddress>,
    /// Months the audit log's leaves stay online (默认 12): `guoku audit archive` moves
    /// older ones to a file, never younger ones (docs/audit.md). Optional; default 12.
    #[serde(default = "default_audit_retention_months")]
    pub audit_retention_months: u32,
}

/// One API user in a tokens file.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    /// The login recorded as the actor.
    pub login: String,
    /// `maker`, `checker` or `signer`.
    pub post: String,
    /// The hex SHA-256 of the token.
    pub sha256: String,
}

/// A tokens file.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenFile {
    #[serde(default)]
    pub token: Vec<TokenEntry>,
}

impl TokenFile {
    /// Reads a tokens file.
    ///
    /// # Errors
    /// [`ConfigError::Io`], [`ConfigError::Config`] for bad TOML, a bad post or hash.
    pub fn load(path: &Path) -> Result<TokenFile, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_owned(),
            source,
        })?;
        let bad = |detail: String| ConfigError::Config {
            path: path.to_owned(),
            detail,
        };
        let file: TokenFile = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
        for t in &file.token {
            parse_post(&t.post).map_err(bad)?;
            if t.sha256.len() != 64 || !t.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad(format!("{}: sha256 must be 64 hex digits", t.login)));
            }
        }
        Ok(file)
    }
}

/// A post's name in configuration files.
///
/// # Errors
/// An unknown post.
pub fn parse_post(post: &str) -> Result<guoku_seal::pki::Post, String> {
    use guoku_seal::pki::Post;
    match post {
        "maker" => Ok(Post::Maker),
        "checker" => Ok(Post::Checker),
        "signer" => Ok(Post::Signer),
        other => Err(format!("unknown post {other:?}: maker, checker or signer")),
    }
}

fn default_idempotency_lease() -> u64 {
    guoku_store::idempotency::IdempotencyConfig::default().lease_secs
}

fn default_audit_head_every() -> u64 {
    crate::party::AUDIT_HEAD_EVERY_SECS
}

fn default_status_every() -> u64 {
    5
}

fn default_rows_per_8207() -> usize {
    crate::flows::batch::ROWS_PER_8207
}

fn default_true() -> bool {
    true
}

/// The audit log's default online retention, in months.
pub const DEFAULT_AUDIT_RETENTION_MONTHS: u32 = 12;

fn default_audit_retention_months() -> u32 {
    DEFAULT_AUDIT_RETENTION_MONTHS
}

fn default_backoff() -> [u64; 2] {
    [2, 60]
}

/// Where another party's exchange endpoint is.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerAddress {
    pub org_code: String,
    pub addr: SocketAddr,
    /// The name its TLS certificate carries (a DNS name or an IP address).
    pub server_name: String,
}

/// Why a configuration cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {detail}")]
    Config { path: PathBuf, detail: String },
    #[error("keys or certificates: {0}")]
    Seal(#[from] guoku_seal::Error),
    #[error("the store: {0}")]
    Store(#[from] StoreError),
}

/// The role a configuration names.
///
/// # Errors
/// An unknown role name.
pub fn parse_role(role: &str) -> Result<OrgRole, String> {
    match role {
        "finance" => Ok(OrgRole::Finance),
        "pboc" => Ok(OrgRole::Pboc),
        "bank" => Ok(OrgRole::AgentBank),
        "counter" => Ok(OrgRole::BudgetUnit),
        other => Err(format!(
            "unknown role {other:?}: finance, pboc, bank or counter"
        )),
    }
}

/// The role's name in configurations.
#[must_use]
pub fn role_name(role: OrgRole) -> &'static str {
    match role {
        OrgRole::Finance => "finance",
        OrgRole::Pboc => "pboc",
        OrgRole::AgentBank => "bank",
        OrgRole::BudgetUnit => "counter",
    }
}

impl NodeConfig {
    /// Reads and checks a configuration file; its relative paths are made relative to the
    /// file's directory.
    ///
    /// # Errors
    /// [`ConfigError::Io`], [`ConfigError::Config`].
    pub fn load(path: &Path) -> Result<NodeConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_owned(),
            source,
        })?;
        let bad = |detail: String| ConfigError::Config {
            path: path.to_owned(),
            detail,
        };
        let mut config: NodeConfig = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
        parse_role(&config.role).map_err(bad)?;
        parse_suite(&config.suite).map_err(bad)?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [&mut config.dir, &mut config.root]
            .into_iter()
            .chain(config.api_tokens.as_mut())
            .chain(config.portal_key.as_mut())
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        if config.backoff_secs[0] == 0 || config.backoff_secs[1] < config.backoff_secs[0] {
            return Err(bad("backoff_secs must be [first > 0, cap ≥ first]".into()));
        }
        Ok(config)
    }

    /// The configuration as TOML text.
    ///
    /// # Panics
    /// Never: every field serializes.
    #[must_use]
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a node configuration serializes")
    }
}

pub fn parse_suite(suite: &str) -> Result<Suite, String> {
    match suite {
        "sm" => Ok(Suite::Sm),
        "intl" => Ok(Suite::Intl),
        other => Err(format!("unknown suite {other:?}: sm or intl")),
    }
}
