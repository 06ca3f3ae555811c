//! One party as its own process (`guoku serve --role … --config FILE`): its store, its
//! staff's keys, the exchange endpoint over mutual TLS and an outbox that reaches the other
//! parties over HTTPS (issue 5).
//!
//! The configuration is a TOML file ([`NodeConfig`]); paths in it are relative to the file.
//! `guoku demo` writes one for every party of the demo province next to its keys
//! (`<data dir>/<organisation code>/node.toml`), so the same province runs as separate
//! processes, as separate organisations do.

pub use crate::config::{
    ConfigError as ServeError, NodeConfig, PeerAddress, TokenEntry, TokenFile, parse_post,
    parse_role, parse_suite, role_name,
};

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use guoku_seal::SigningKey;
use guoku_seal::keystore::Pin;
use guoku_seal::pki::{Certificate, RevocationPolicy};
use guoku_seal::transport::{PeerTrust, TlsIdentity, client_config, server_config};
use guoku_store::library::Backoff;
use guoku_store::{PgConfig, SqliteConfig, Store};
use guoku_voucher::Registry;
use rustls::pki_types::ServerName;
use tokio::sync::watch;

use crate::exchange::{
    Clock, ExchangeState, Https, NodeAddress, Peer, ReceiveLimits, ServeLimits, VoucherTrust, app,
    serve_tls,
};
use crate::party::{Party, PartyConfig};

/// A party ready to run as its own process.
pub struct Node {
    pub config: NodeConfig,
    pub party: Arc<Party<Https>>,
    exchange: ExchangeState,
    server_tls: Arc<rustls::ServerConfig>,
}

fn read(path: &Path) -> Result<Vec<u8>, ServeError> {
    std::fs::read(path).map_err(|source| ServeError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Opens (and migrates) the store `config` names: `guoku.db` in its directory, or its
/// PostgreSQL URL and schema. Needs no key: for tools that read or copy a node's store.
///
/// # Errors
/// [`ServeError::Store`] when it cannot be opened; [`ServeError::Config`] for a
/// PostgreSQL standby still in recovery.
pub async fn open_store(config: &NodeConfig) -> Result<Store, ServeError> {
    let store = match &config.postgres {
        None => Store::open_sqlite(SqliteConfig::new(config.dir.join("guoku.db"))).await?,
        Some(url) => {
            let mut pg = PgConfig::new(url.clone());
            if let Some(schema) = &config.postgres_schema {
                Store::prepare_postgres_schema(url, schema, false).await?;
                pg.schema = Some(schema.clone());
            }
            Store::connect_postgres(pg).await?
        }
    };
    // A standby still following its primary answers reads but refuses every write: a node
    // pointed at it would look healthy and fail every payment.
    if store.in_recovery().await? {
        return Err(ServeError::Config {
            path: config.dir.clone(),
            detail: "the database is a standby in recovery (read-only): promote it first \
                     (pg_ctl promote, or SELECT pg_promote())"
                .into(),
        });
    }
    Ok(store)
}

impl Node {
    /// Opens the node of `config`: its store (migrated), its staff's keys (unlocked with
    /// `pin`), its TLS identity and its peers.
    ///
    /// # Errors
    /// [`ServeError`].
    pub async fn open(config: NodeConfig, pin: &Pin, clock: Clock) -> Result<Node, ServeError> {
        let role = parse_role(&config.role).map_err(|detail| ServeError::Config {
            path: config.dir.clone(),
            detail,
        })?;
        let suite = parse_suite(&config.suite).map_err(|detail| ServeError::Config {
            path: config.dir.clone(),
            detail,
        })?;
        let me = Peer {
            role,
            org_code: config.org_code.clone(),
        };
        let store = open_store(&config).await?;
        let staff = crate::demo::load_staff(&config.dir, pin).map_err(|e| ServeError::Config {
            path: config.dir.clone(),
            detail: e.to_string(),
        })?;
        let root = Certificate::from_der(&read(&config.root)?)?;
        let tls_cert = Certificate::from_der(&read(&config.dir.join("tls.der"))?)?;
        let tls_key_pem = String::from_utf8(read(&config.dir.join("tls.key"))?).map_err(|_| {
            ServeError::Config {
                path: config.dir.join("tls.key"),
                detail: "not a PEM file".into(),
            }
        })?;
        let tls_key = SigningKey::from_pkcs8_pem(&tls_key_pem)?;
        let identity = TlsIdentity::new(&[tls_cert], &tls_key)?;
        let peer_trust =
            PeerTrust::new(root.clone(), Vec::new(), RevocationPolicy::CheckIfPresent)?;
        let time: Arc<dyn rustls::time_provider::TimeProvider> =
            Arc::new(rustls::time_provider::DefaultTimeProvider);
        let server_tls = Arc::new(server_config(&identity, &peer_trust, time.clone())?);
        let client_tls = client_config(&identity, &peer_trust, time)?;
        let mut nodes = HashMap::new();
        for peer in &config.peers {
            let server_name =
                ServerName::try_from(peer.server_name.clone()).map_err(|e| ServeError::Config {
                    path: config.dir.clone(),
                    detail: format!("peer {}: bad server_name: {e}", peer.org_code),
                })?;
            nodes.insert(
                peer.org_code.clone(),
                NodeAddress {
                    addr: peer.addr,
                    server_name,
                },
            );
        }
        let transport = Https::new(client_tls, nodes, Duration::from_secs(30));
        let registry = Arc::new(Registry::builtin());
        let trust = VoucherTrust {
            anchor: root,
            intermediates: Vec::new(),
            crls: Vec::new(),
            revocation: RevocationPolicy::CheckIfPresent,
        };
        let exchange = ExchangeState::new(
            me.clone(),
            suite,
            (*registry).clone(),
            trust,
            store.clone(),
            clock.clone(),
            ReceiveLimits::default(),
        );
        let now = clock();
        let year = crate::party::business_date(now).to_string();
        let clearing_templates = config
            .clearing_divisions
            .iter()
            .map(|d| {
                crate::flows::clearing::request_template(
                    &registry,
                    d,
                    &year[..4],
                    &config.bank_no,
                    crate::party::business_date(now),
                )
            })
            .collect();
        let party_config = PartyConfig {
            me,
            name: config.name.clone(),
            suite,
            finance: config.finance.clone(),
            pboc: config.pboc.clone(),
            bank_no: config.bank_no.clone(),
            unit_accounts: config
                .unit_accounts
                .iter()
                .map(|[u, a]| (u.clone(), a.clone()))
                .collect(),
            clearing_templates,
            backoff: Backoff {
                base: config.backoff_secs[0],
                cap: config.backoff_secs[1],
            },
            clearing_every_secs: config.clearing_every_secs,
            status_every_secs: config.status_every_secs,
            audit_head_every_secs: config.audit_head_every_secs,
            require_payee_bank_no: config.require_payee_bank_no,
            rows_per_8207: config.rows_per_8207,
            banks: config
                .reconcile_banks
                .iter()
                .map(|[c, n]| (c.clone(), n.clone()))
                .collect(),
            divisions: config.reconcile_divisions.clone(),
            reconcile_every_secs: config.reconcile_every_secs,
        };
        let party = Arc::new(Party::new(
            party_config,
            registry,
            store,
            staff,
            transport,
            clock,
        ));
        Ok(Node {
            config,
            party,
            exchange,
            server_tls,
        })
    }

    /// Runs the exchange endpoint and the worker until `stop` turns true.
    ///
    /// # Errors
    /// The exchange listener cannot be bound or fails.
    pub async fn run_exchange_and_worker(
        &self,
        stop: watch::Receiver<bool>,
    ) -> Result<(), ServeError> {
        let listener = tokio::net::TcpListener::bind(self.config.exchange_listen)
            .await
            .map_err(|source| ServeError::Io {
                path: PathBuf::from(self.config.exchange_listen.to_string()),
                source,
            })?;
        let worker = tokio::spawn(
            self.party
                .clone()
                .run(Duration::from_millis(200), stop.clone()),
        );
        let mut shutdown = stop.clone();
        let served = serve_tls(
            listener,
            self.server_tls.clone(),
            app(self.exchange.clone()),
            ServeLimits::default(),
            async move {
                let _ = shutdown.wait_for(|stop| *stop).await;
            },
        )
        .await;
        let _ = worker.await;
        served.map_err(|source| ServeError::Io {
            path: PathBuf::from(self.config.exchange_listen.to_string()),
            source,
        })
    }
}

// ----- the HTTP API of a process -------------------------------------------------------------

/// Serves `router` on `listener` (plain HTTP: put it on loopback or behind a TLS-terminating
/// proxy) until `stop` turns true.
async fn serve_http(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    // The peer's address reaches the handlers (and the audit log) as `ConnectInfo`.
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        let _ = stop.wait_for(|stop| *stop).await;
    })
    .await
}

/// The start page of a node of its own: what it serves, in Chinese and English.
async fn landing() -> axum::response::Html<&'static str> {
    axum::response::Html(
        r#"<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>guoku 国库集中支付</title>
<style>body{font-family:sans-serif;max-width:46rem;margin:3rem auto;line-height:1.6}code{background:#eee;padding:0 .2rem}</style>
</head><body>
<h1>guoku 国库集中支付电子化管理</h1>
<p>本节点提供 HTTP JSON 接口（需 <code>Authorization: Bearer</code> 令牌，见启动时的输出）。
This node serves the HTTP JSON API (a bearer token is needed; see what the start printed).</p>
<ul>
<li><a href="/api/v1/openapi.json">/api/v1/openapi.json</a> — 接口说明 / the API description</li>
<li><a href="/healthz">/healthz</a> — 健康检查 / health</li>
<li><a href="/metrics">/metrics</a> — 监控指标 / Prometheus metrics</li>
</ul>
<p>自助柜面网页（预算单位、财政、代理银行、人民银行）尚在建设中。
The self-service counter and the parties' consoles in the browser are being built.</p>
</body></html>"#,
    )
}

/// The demo's API tokens: a fresh random token for every demo user at every start (only
/// their SHA-256 stays in memory), with the lines that hand them out.
#[must_use]
pub fn demo_tokens(demo: &crate::demo::Demo) -> (crate::api::TokenTable, Vec<String>) {
    let (table, handed) =
        crate::api::TokenTable::with_random_tokens(crate::api::demo_principals(demo));
    let lines = handed
        .iter()
        .map(|(principal, token)| format!("{:<26} {}", principal.login, token.expose()))
        .collect();
    (table, lines)
}

/// Serves the demo's portal and API (every party) until `stop` turns true.
///
/// # Errors
/// The listener fails.
pub async fn serve_demo_api(
    listener: tokio::net::TcpListener,
    demo: Arc<crate::demo::Demo>,
    tokens: crate::api::TokenTable,
    stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let portal = crate::portal::Portal::demo(&demo);
    let api = crate::api::Api::demo(demo, Arc::new(tokens), crate::api::ApiConfig::default());
    let router = crate::api::router(api).merge(crate::portal::router(portal));
    serve_http(listener, router, stop).await
}

/// The demo province's units and banks as a catalogue, for a node of the demo run as its
/// own process. (A deployment of its own would load its units and banks from its store.)
fn demo_catalogue(registry: Arc<Registry>, year: guoku_domain::StYear) -> crate::api::Catalogue {
    use crate::api::{Catalogue, CatalogueBank, CatalogueUnit};
    let province = crate::demo::province();
    let bank = |o: &crate::demo::Org| CatalogueBank {
        code: o.code.into(),
        name: o.name.into(),
    };
    Catalogue {
        registry,
        year,
        finance_name: province.finance.name.into(),
        direct_bank: bank(province.direct_bank()),
        banks: province.banks.iter().map(bank).collect(),
        units: province
            .units
            .iter()
            .map(|u| CatalogueUnit {
                code: u.code.clone(),
                name: u.name.clone(),
                adm_div: u.division.into(),
                func: crate::demo::FUNC.into(),
                eco: crate::demo::ECO.into(),
                fund: crate::demo::FUND.into(),
                zba: u.zba.clone(),
                bank: u.bank,
                finance_zba: crate::demo::finance_zba(u.division),
            })
            .collect(),
        direct_defaults: Vec::new(),
        authorized_defaults: Vec::new(),
    }
}

/// Serves a node's API until `stop` turns true; its users come from the configuration's
/// `api_tokens` file (none: every call is refused).
///
/// # Errors
/// The tokens file cannot be read; the listener fails.
pub async fn serve_node_api(
    listener: tokio::net::TcpListener,
    node: Arc<Node>,
    stop: watch::Receiver<bool>,
) -> Result<(), ServeError> {
    use crate::api::{Principal, TokenTable};
    let mut entries = Vec::new();
    if let Some(path) = &node.config.api_tokens {
        for (i, t) in TokenFile::load(path)?.token.into_iter().enumerate() {
            let mut hash = [0u8; 32];
            for (j, byte) in hash.iter_mut().enumerate() {
                *byte = u8::from_str_radix(&t.sha256[2 * j..2 * j + 2], 16).map_err(|_| {
                    ServeError::Config {
                        path: path.clone(),
                        detail: format!("{}: bad sha256", t.login),
                    }
                })?;
            }
            let post = parse_post(&t.post).map_err(|detail| ServeError::Config {
                path: path.clone(),
                detail,
            })?;
            entries.push((
                hash,
                Principal {
                    user: guoku_store::access::UserId(u64::try_from(i + 1).unwrap_or(u64::MAX)),
                    login: t.login,
                    org: node.config.org_code.clone(),
                    post,
                },
            ));
        }
    }
    let year = crate::party::business_date((node.party.clock)())
        .to_string()
        .get(..4)
        .and_then(|y| y.parse().ok())
        .ok_or_else(|| ServeError::Config {
            path: node.config.dir.clone(),
            detail: "no budget year for today".into(),
        })?;
    // The token holders as users of this party's store, seeing the whole province; a
    // deployment of its own manages its users in the store instead.
    let principals: Vec<Principal> = entries.iter().map(|(_, p)| p.clone()).collect();
    let divisions = crate::demo::access_divisions().map_err(|e| ServeError::Config {
        path: node.config.dir.clone(),
        detail: e.to_string(),
    })?;
    let province: Vec<guoku_domain::AdmDivCode> = divisions
        .iter()
        .filter(|d| d.parent.is_none())
        .map(|d| d.code)
        .collect();
    let (_, now) = node.party.now();
    crate::api::register_token_users(
        &node.party.store,
        &divisions,
        &principals,
        &province,
        "serve",
        now,
    )
    .await
    .map_err(|e| ServeError::Config {
        path: node.config.dir.clone(),
        detail: format!("registering the API's users: {e}"),
    })?;
    let catalogue = demo_catalogue(node.party.registry.clone(), year);
    let mut api_config = crate::api::ApiConfig::default();
    let lease = node.config.idempotency_lease_secs;
    if lease == 0 || lease > api_config.idempotency.ttl_secs {
        return Err(ServeError::Config {
            path: node.config.dir.clone(),
            detail: format!(
                "idempotency_lease_secs must be 1..={}",
                api_config.idempotency.ttl_secs
            ),
        });
    }
    api_config.idempotency.lease_secs = lease;
    let api = crate::api::Api::new(
        Arc::new(TokenTable::new(entries)),
        Arc::new(catalogue),
        api_config,
    )
    .serve(node.party.clone());
    let path = PathBuf::from(node.config.api_listen.to_string());
    let router = match &node.config.portal_key {
        // The portal beside the API, for the users of this party's store.
        Some(key_path) => {
            let bytes = std::fs::read(key_path).map_err(|source| ServeError::Io {
                path: key_path.clone(),
                source,
            })?;
            let key: [u8; 32] = bytes
                .as_slice()
                .try_into()
                .map_err(|_| ServeError::Config {
                    path: key_path.clone(),
                    detail: "a portal key is exactly 32 bytes".into(),
                })?;
            let config = crate::portal::PortalConfig {
                secure_cookies: node.config.portal_secure_cookies,
                ..crate::portal::PortalConfig::default()
            };
            let portal =
                crate::portal::Portal::new(config, crate::portal::PortalKey::from_bytes(key))
                    .map_err(|e| ServeError::Config {
                        path: key_path.clone(),
                        detail: e.to_string(),
                    })?
                    .serve(node.party.clone())
                    .key_dir(&node.config.org_code, node.config.dir.clone());
            crate::api::router(api).merge(crate::portal::router(portal))
        }
        // No portal: the start page says what the node serves.
        None => crate::api::router(api).route("/", axum::routing::get(landing)),
    };
    serve_http(listener, router, stop)
        .await
        .map_err(|source| ServeError::Io { path, source })
}
