//! `guoku backup` (online, while the node runs) and `guoku restore` (into a stopped node's
//! store, then the restored audit log checked against its last signed tree head).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use clap::Args;
use guoku_node::serve::NodeConfig;
use guoku_store::backup::{
    self, BackupOptions, Location, Manifest, Phase, Progress, RestoreOptions, RootCheck, Step,
};
use guoku_store::{PgConfig, SqliteConfig, Store};
use time::OffsetDateTime;

use crate::{Global, Lang};

#[derive(Args)]
pub struct BackupArgs {
    /// The node's configuration file (the one `guoku serve --config` reads).
    #[arg(long)]
    config: PathBuf,
    /// The backup file to write (it must not exist).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// The directory of PostgreSQL's pg_dump and pg_restore (default: the PATH).
    #[arg(long, env = "GUOKU_PG_BIN", value_name = "DIR")]
    pg_bin: Option<PathBuf>,
}

#[derive(Args)]
pub struct RestoreArgs {
    /// The node's configuration file: its store is the target (stop the node first).
    #[arg(long)]
    config: PathBuf,
    /// The backup file.
    #[arg(long, value_name = "FILE")]
    from: PathBuf,
    /// Replace a target store that already holds data.
    #[arg(long)]
    force: bool,
    /// The directory of PostgreSQL's pg_dump and pg_restore (default: the PATH).
    #[arg(long, env = "GUOKU_PG_BIN", value_name = "DIR")]
    pg_bin: Option<PathBuf>,
}

/// Where the node of `config` keeps its store.
fn location(config: &NodeConfig, tools: Option<PathBuf>) -> Location {
    match &config.postgres {
        None => Location::Sqlite(config.dir.join("guoku.db")),
        Some(url) => Location::Postgres {
            url: url.clone(),
            schema: config.postgres_schema.clone(),
            tools,
        },
    }
}

/// Opens the store of `config` as `guoku serve` does.
async fn open_store(config: &NodeConfig) -> anyhow::Result<Store> {
    Ok(match &config.postgres {
        None => Store::open_sqlite(SqliteConfig::new(config.dir.join("guoku.db"))).await?,
        Some(url) => {
            let mut pg = PgConfig::new(url.clone());
            pg.pool_size = 2;
            if let Some(schema) = &config.postgres_schema {
                Store::prepare_postgres_schema(url, schema, false).await?;
                pg.schema = Some(schema.clone());
            }
            Store::connect_postgres(pg).await?
        }
    })
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// Prints each phase once, as it starts, and a bar for pages and bytes on a terminal.
struct Reporter {
    lang: Lang,
    state: Mutex<(Option<&'static str>, Option<indicatif::ProgressBar>)>,
}

impl Reporter {
    fn progress(lang: Lang) -> Progress {
        let reporter = Reporter {
            lang,
            state: Mutex::new((None, None)),
        };
        Arc::new(move |step| reporter.step(step))
    }

    fn step(&self, step: Step) {
        let lang = self.lang;
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        let (phase, total, done) = match step {
            Step::Snapshot { audit_size } => {
                outln!(
                    "  {} {audit_size}",
                    lang.pick(
                        "已取得一致快照，审计日志条目数",
                        "consistent snapshot taken; audit log entries:"
                    )
                );
                return;
            }
            Step::Pages { done, total } => (
                lang.pick("复制数据库页", "copying database pages"),
                total,
                done,
            ),
            Step::Tool(tool) => {
                if let Some(bar) = state.1.take() {
                    bar.finish_and_clear();
                }
                state.0 = None;
                outln!("  {} {tool}", lang.pick("正在运行", "running"));
                return;
            }
            Step::Bytes {
                phase: Phase::Checksum,
                done,
                total,
            } => (lang.pick("校验 SHA-256", "checking SHA-256"), total, done),
            Step::Bytes {
                phase: Phase::Write,
                done,
                total,
            } => (lang.pick("写入", "writing"), total, done),
            Step::Opening => {
                if let Some(bar) = state.1.take() {
                    bar.finish_and_clear();
                }
                state.0 = None;
                outln!(
                    "  {}",
                    lang.pick(
                        "打开恢复的库（迁移与检查）",
                        "opening the restored store (migrations, checks)"
                    )
                );
                return;
            }
        };
        if state.0 != Some(phase) {
            if let Some(bar) = state.1.take() {
                bar.finish_and_clear();
            }
            outln!(
                "  {phase} ({})",
                size_text(total, matches!(step, Step::Pages { .. }))
            );
            let bar = indicatif::ProgressBar::new(total);
            bar.set_style(
                indicatif::ProgressStyle::with_template("  [{bar:40}] {percent}% {eta}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            *state = (Some(phase), Some(bar));
        }
        if let Some(bar) = &state.1 {
            bar.set_position(done);
            if done >= total {
                bar.finish_and_clear();
            }
        }
    }
}

fn size_text(n: u64, pages: bool) -> String {
    if pages {
        format!("{n} pages")
    } else if n >= 1 << 20 {
        format!("{:.1} MiB", n as f64 / f64::from(1 << 20))
    } else {
        format!("{n} bytes")
    }
}

fn when(seconds: u64) -> String {
    i64::try_from(seconds)
        .ok()
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| seconds.to_string())
}

fn print_manifest(manifest: &Manifest, lang: Lang) {
    outln!(
        "  {} {} / {} {} / {} {}",
        lang.pick("节点", "node"),
        manifest.node,
        lang.pick("后端", "backend"),
        manifest.backend.name(),
        lang.pick("库结构版本", "schema version"),
        manifest.schema_version
    );
    if let Some(schema) = &manifest.pg_schema {
        outln!(
            "  {} {schema}",
            lang.pick("PostgreSQL 模式", "PostgreSQL schema")
        );
    }
    outln!(
        "  {} {} ({})",
        lang.pick("备份时间", "made at"),
        when(manifest.created_at),
        manifest.created_at
    );
    outln!(
        "  {} {}",
        lang.pick("审计日志条目数", "audit log entries"),
        manifest.audit_size
    );
    match &manifest.head {
        Some(head) => outln!(
            "  {} {} {} {}",
            lang.pick("最近签名树头：条目数", "last signed tree head: size"),
            head.size,
            head.alg,
            backup::hash_hex(&head.root)
        ),
        None => outln!(
            "  {}",
            lang.pick("最近签名树头：无", "last signed tree head: none")
        ),
    }
    outln!(
        "  {} {} bytes, SHA-256 {}",
        lang.pick("数据", "payload"),
        manifest.payload_bytes,
        backup::hash_hex(&manifest.payload_sha256)
    );
}

fn now_unix() -> u64 {
    u64::try_from(OffsetDateTime::now_utc().unix_timestamp()).unwrap_or(0)
}

pub fn backup(args: BackupArgs, global: &Global) -> anyhow::Result<ExitCode> {
    let lang = global.lang;
    let config = NodeConfig::load(&args.config)?;
    let source = location(&config, args.pg_bin.clone());
    outln!(
        "{} {} ({}) → {}",
        lang.pick("在线备份节点", "Backing up node"),
        config.org_code,
        source,
        args.out.display()
    );
    let started = Instant::now();
    let options = BackupOptions {
        node: config.org_code.clone(),
        created_at: now_unix(),
        progress: Reporter::progress(lang),
    };
    let manifest = runtime()?.block_on(backup::backup(&source, &args.out, options))?;
    outln!(
        "{} {} ({:.1} s)",
        lang.pick("备份完成：", "Backup written:"),
        args.out.display(),
        started.elapsed().as_secs_f64()
    );
    print_manifest(&manifest, lang);
    Ok(ExitCode::SUCCESS)
}

pub fn restore(args: RestoreArgs, global: &Global) -> anyhow::Result<ExitCode> {
    let lang = global.lang;
    let config = NodeConfig::load(&args.config)?;
    let target = location(&config, args.pg_bin.clone());
    outln!(
        "{} {} → {} {} ({})",
        lang.pick("从备份恢复", "Restoring"),
        args.from.display(),
        lang.pick("节点", "node"),
        config.org_code,
        target
    );
    let started = Instant::now();
    let options = RestoreOptions {
        node: Some(config.org_code.clone()),
        force: args.force,
        progress: Reporter::progress(lang),
    };
    runtime()?.block_on(async {
        let manifest = backup::restore(&args.from, &target, options).await?;
        outln!(
            "{} ({:.1} s)",
            lang.pick("恢复完成。", "Restored."),
            started.elapsed().as_secs_f64()
        );
        print_manifest(&manifest, lang);
        outln!(
            "{}",
            lang.pick(
                "校验：按最近签名树头的条目数重算审计树根……",
                "Verifying: recomputing the audit root at the last signed tree head's size…"
            )
        );
        let store = open_store(&config).await?;
        let check = backup::verify(&store).await?;
        Ok(report_check(&check, &manifest, lang))
    })
}

/// Prints what the check found; success only when the root matches the last signed head
/// and the restored log and head are the backup's.
fn report_check(check: &RootCheck, manifest: &Manifest, lang: Lang) -> ExitCode {
    outln!(
        "  {} {}",
        lang.pick("恢复后的审计日志条目数", "restored audit log entries"),
        check.size
    );
    match &check.head {
        Some(head) => outln!(
            "  {} {} {} {}",
            lang.pick("最近签名树头的根    ", "last signed head root"),
            head.size,
            head.alg,
            backup::hash_hex(&head.root)
        ),
        None => outln!("  {}", lang.pick("没有签名树头", "no signed tree head")),
    }
    if let Some(computed) = &check.computed {
        let size = check.head.map_or(0, |h| h.size);
        outln!(
            "  {} {size} {}",
            lang.pick("重算的根            ", "recomputed root      "),
            backup::hash_hex(computed)
        );
    }
    let mut problems = Vec::new();
    if let Some(problem) = &check.problem {
        problems.push(problem.clone());
    }
    if check.head != manifest.head {
        problems.push(
            lang.pick(
                "恢复后的最近签名树头与备份清单不一致",
                "the restored store's last signed head is not the one the backup names",
            )
            .to_owned(),
        );
    }
    if check.size != manifest.audit_size {
        problems.push(format!(
            "{} {} ≠ {}",
            lang.pick(
                "恢复后的审计日志条目数与备份清单不一致",
                "the restored log's size differs from the backup's"
            ),
            check.size,
            manifest.audit_size
        ));
    }
    if check.verified() && problems.is_empty() {
        outln!("{}", lang.pick("verified（已验证）", "verified"));
        ExitCode::SUCCESS
    } else {
        if check.computed.is_some() && !check.verified() {
            problems.push(
                lang.pick(
                    "重算的根与签名树头的根不同",
                    "the recomputed root differs from the signed head's",
                )
                .to_owned(),
            );
        }
        outln!(
            "{}",
            lang.pick("NOT verified（未通过验证）", "NOT verified")
        );
        for problem in problems {
            outln!("  {problem}");
        }
        ExitCode::from(1)
    }
}
