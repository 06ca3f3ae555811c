//! `guoku audit archive`: moves the audit leaves older than the retention out of the online
//! store into an archive file, ending at a signed tree head, after checking the log against
//! its heads (审计日志归档; `guoku_node::audit_archive`).
//!
//! Exit codes: 0 archived, or nothing is older than the retention; 1 nothing archived
//! because no signed head ends within the old leaves, or the log does not verify; 2 the
//! command could not run (bad arguments, the file exists, an unreachable store, a role
//! that may not delete audit rows).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use guoku_node::audit_archive::{ArchiveError, ArchiveRequest, archive, utc};
use guoku_node::serve::{NodeConfig, open_store};

use crate::Global;

/// `guoku audit archive --config node.toml --out FILE [--before-months N]`.
#[derive(Args)]
pub struct ArchiveArgs {
    /// The node's configuration file (as `guoku serve --config`). On PostgreSQL its URL
    /// must name the owner role: the application's role may not delete audit rows.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// The archive file to write (JSON lines: a header, then one leaf a line); never
    /// overwritten.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Archive the leaves older than this many months. Default, and the least allowed: the
    /// configuration's `audit_retention_months` (12 unless set).
    #[arg(long, value_name = "N")]
    before_months: Option<u32>,
}

/// Runs `guoku audit archive`.
///
/// # Errors
/// What stops the command from running (exit 2).
pub fn run_archive(args: ArchiveArgs, global: &Global) -> anyhow::Result<ExitCode> {
    let lang = global.lang;
    let config = NodeConfig::load(&args.config)?;
    let retention = config.audit_retention_months;
    let months = args.before_months.unwrap_or(retention);
    let now = u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let outcome = runtime.block_on(async {
        let store = open_store(&config).await?;
        let request = ArchiveRequest {
            org: &config.org_code,
            out: &args.out,
            months,
            retention_months: retention,
            now,
        };
        anyhow::Ok(archive(&store, &request).await)
    })?;
    match outcome {
        Ok(report) => {
            outln!(
                "{} {}: {} {}..{} ({} {}) → {} ({} {})",
                lang.pick("审计日志归档", "audit log archived for"),
                config.org_code,
                lang.pick("叶子", "leaves"),
                report.from,
                report.to,
                report.removed,
                lang.pick("行已移出在线库", "rows removed from the online store"),
                args.out.display(),
                report.bytes,
                lang.pick("字节", "bytes"),
            );
            outln!(
                "{} {}; {} {} {}, {} {}",
                lang.pick("截止时间（UTC）", "cut-off (UTC)"),
                utc(report.cutoff),
                lang.pick("已核对", "checked"),
                report.heads_checked,
                lang.pick("个签名树头", "signed heads"),
                lang.pick("直至叶子数", "up to size"),
                report.checked_to,
            );
            if let Ok(check) = guoku_node::audit_archive::read_archive(&args.out) {
                outln!(
                    "{} {} root {}",
                    lang.pick("归档止于签名树头", "ends at the signed head of size"),
                    check.header.head.size,
                    check.header.head.root
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e @ ArchiveError::NothingOld { .. }) => {
            outln!("{}: {e}", lang.pick("无需归档", "nothing archived"));
            Ok(ExitCode::SUCCESS)
        }
        Err(e @ (ArchiveError::NoSignedHead { .. } | ArchiveError::Mismatch(_))) => {
            eprintln!("guoku: {}: {e}", lang.pick("未归档", "nothing archived"));
            Ok(ExitCode::from(1))
        }
        Err(e) => Err(e.into()),
    }
}
