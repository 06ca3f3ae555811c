//! `guoku audit`: sign a tree head, verify a node's log, prove a voucher's leaves, check a
//! proof anywhere (电子审计).
//!
//! Exit codes: 0 verified; 1 the log or the proof does not verify (tampered, inconsistent);
//! 2 the command could not run (bad arguments, unreachable store).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use guoku_node::audit::{self as audit, ProofDocument};
use guoku_node::config::parse_suite;
use guoku_node::serve::{NodeConfig, open_store};
use guoku_seal::pki::{Certificate, RevocationPolicy, TrustContext};
use time::OffsetDateTime;

use crate::Global;

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Recompute the tree from the stored rows and check it against every signed tree head
    /// and its seal signature; exit 1 if anything differs.
    Verify(ConfigArg),
    /// Sign a tree head over everything logged so far (needs the party's PIN: GUOKU_KEY_PIN).
    Head(ConfigArg),
    /// Print an inclusion proof, under the latest signed head, for the leaves of a voucher
    /// (a voucher number or key, as the log names it) that anyone can check.
    Prove {
        #[command(flatten)]
        node: ConfigArg,
        /// The voucher: a number or a key (AdmDivCode/StYear/VtCode/VoucherNo).
        #[arg(long)]
        voucher: String,
        /// Write the proof here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Check a proof from `guoku audit prove` with nothing but the deployment's root
    /// certificate: the leaves are in the signed tree and the head's seal is valid.
    Check {
        /// The proof document (JSON).
        #[arg(long)]
        proof: PathBuf,
        /// The deployment's root certificate (DER); without it only the tree is checked.
        #[arg(long)]
        root: Option<PathBuf>,
        /// The signature suite: sm or intl.
        #[arg(long, default_value = "sm")]
        suite: String,
    },
    /// Move the leaves older than the retention (audit_retention_months, default 12) to an
    /// archive file ending at a signed tree head, then out of the online store (归档).
    Archive(crate::audit_archive_cmd::ArchiveArgs),
}

#[derive(Args)]
pub struct ConfigArg {
    /// The node's configuration file (as `guoku serve --config`).
    #[arg(long)]
    config: PathBuf,
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

pub fn run(command: AuditCommand, global: &Global) -> anyhow::Result<ExitCode> {
    let lang = global.lang;
    match command {
        AuditCommand::Verify(node) => {
            let config = NodeConfig::load(&node.config)?;
            let suite = parse_suite(&config.suite).map_err(anyhow::Error::msg)?;
            let root = Certificate::from_der(
                &std::fs::read(&config.root).with_context(|| config.root.display().to_string())?,
            )?;
            let report = runtime()?.block_on(async {
                let store = open_store(&config).await?;
                let trust = TrustContext {
                    anchor: &root,
                    intermediates: &[],
                    crls: &[],
                    revocation: RevocationPolicy::CheckIfPresent,
                    now: OffsetDateTime::now_utc(),
                };
                anyhow::Ok(audit::verify(&store, suite, &config.org_code, Some(&trust)).await?)
            })?;
            outln!(
                "{} {}: {} {}, {} {}, {} {}",
                lang.pick("审计日志", "audit log of"),
                config.org_code,
                report.leaves,
                lang.pick("个叶子", "leaves"),
                report.heads,
                lang.pick("个签名树头已重算", "signed heads recomputed"),
                report.signatures,
                lang.pick("个签章已验证", "seal signatures verified"),
            );
            if let Some(root) = report.root {
                outln!("root {}", hex(&root));
            }
            if report.verified() {
                outln!("{}", lang.pick("验证通过 verified", "verified"));
                Ok(ExitCode::SUCCESS)
            } else {
                for p in &report.problems {
                    outln!("  ✗ {p}");
                }
                outln!(
                    "{} ({})",
                    lang.pick(
                        "验证失败：日志被篡改或不一致",
                        "NOT VERIFIED: the log was altered or is inconsistent"
                    ),
                    report.problems.len()
                );
                Ok(ExitCode::from(1))
            }
        }
        AuditCommand::Head(node) => {
            let config = NodeConfig::load(&node.config)?;
            let suite = parse_suite(&config.suite).map_err(anyhow::Error::msg)?;
            let pin = crate::pki_cmd::read_pin("GUOKU_KEY_PIN", "PIN of the party's keys", false)?;
            let staff = guoku_node::demo::load_staff(&config.dir, &pin)?;
            let head = runtime()?.block_on(async {
                let store = open_store(&config).await?;
                anyhow::Ok(
                    audit::issue_head(
                        &store,
                        suite,
                        &config.org_code,
                        &staff,
                        OffsetDateTime::now_utc(),
                        "manual",
                    )
                    .await?,
                )
            })?;
            match head {
                Some(head) => outln!(
                    "{} size {} root {}",
                    lang.pick("已签发树头", "signed tree head:"),
                    head.size,
                    hex(&head.root)
                ),
                None => outln!(
                    "{}",
                    lang.pick(
                        "自上一个树头以来没有新叶子，未签发",
                        "nothing logged since the last head: none signed"
                    )
                ),
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Prove { node, voucher, out } => {
            let config = NodeConfig::load(&node.config)?;
            let suite = parse_suite(&config.suite).map_err(anyhow::Error::msg)?;
            let doc = runtime()?.block_on(async {
                let store = open_store(&config).await?;
                anyhow::Ok(audit::prove(&store, suite, &config.org_code, &voucher).await?)
            })?;
            let json = serde_json::to_string_pretty(&doc)?;
            match out {
                Some(path) => {
                    std::fs::write(&path, json).with_context(|| path.display().to_string())?;
                    outln!(
                        "{} {} → {}",
                        doc.leaves.len(),
                        lang.pick("个叶子的包含证明", "leaves proven"),
                        path.display()
                    );
                }
                None => outln!("{json}"),
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Archive(args) => crate::audit_archive_cmd::run_archive(args, global),
        AuditCommand::Check { proof, root, suite } => {
            let suite = parse_suite(&suite).map_err(anyhow::Error::msg)?;
            let text =
                std::fs::read_to_string(&proof).with_context(|| proof.display().to_string())?;
            let doc: ProofDocument = match serde_json::from_str(&text) {
                Ok(doc) => doc,
                Err(e) => {
                    outln!(
                        "✗ {}: {e}",
                        lang.pick("不是证明文件", "not a proof document")
                    );
                    return Ok(ExitCode::from(1));
                }
            };
            let anchor = match &root {
                Some(path) => Some(Certificate::from_der(
                    &std::fs::read(path).with_context(|| path.display().to_string())?,
                )?),
                None => None,
            };
            match audit::check(&doc, suite, anchor.as_ref()) {
                Ok(report) => {
                    outln!(
                        "{} {} {} {} (size {}, root {})",
                        lang.pick("验证通过：", "verified:"),
                        report.leaves,
                        lang.pick("个叶子在", "leaves are in the tree of"),
                        doc.head.org,
                        doc.head.size,
                        doc.head.root
                    );
                    if !report.signature_checked {
                        outln!(
                            "{}",
                            lang.pick(
                                "注意：未给出根证书（--root），树头签章未验证",
                                "note: no --root given, the head's seal signature was not checked"
                            )
                        );
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    outln!("✗ {} {e}", lang.pick("验证失败：", "NOT VERIFIED:"));
                    Ok(ExitCode::from(1))
                }
            }
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
