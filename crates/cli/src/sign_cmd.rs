//! `guoku sign` and `guoku verify`: signatures and seals at a voucher's seal positions.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use guoku_node::stamping::{stamp_batch, type_of, verify};
use guoku_seal::batch::Parallelism;
use guoku_seal::keystore::KeyStoreFile;
use guoku_seal::pki::{Certificate, Crl, RevocationPolicy};
use guoku_seal::ses::Seal;
use guoku_seal::voucher::{Signer, TrustContext};
use guoku_seal::{KeyAlgorithm, Suite};
use guoku_voucher::{
    Decoded, Encoding, Envelope, EnvelopeBody, Limits, decode_any, write_envelope,
};
use time::OffsetDateTime;

use crate::pki_cmd::read_pin;
use crate::voucher_cmd::{load_registry, read_input};
use crate::{Global, Lang};

/// `guoku sign`'s arguments.
#[derive(clap::Args)]
pub struct SignArgs {
    /// Vouchers to sign: envelopes, <Voucher> documents or JSON; `-` reads standard input.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// The signer's key store (its PIN from GUOKU_KEY_PIN, or asked once on the terminal).
    #[arg(long)]
    key: PathBuf,
    /// The signer's certificate.
    #[arg(long)]
    cert: PathBuf,
    /// The seal to apply, when the next position is a seal (made by `guoku pki seal`).
    #[arg(long)]
    seal: Option<PathBuf>,
    /// Where to write the signed envelope (default: standard output).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Output encoding.
    #[arg(long, value_enum, default_value = "gbk")]
    encoding: crate::voucher_cmd::EncodingArg,
    /// Worker threads (default: every core).
    #[arg(long)]
    threads: Option<usize>,
}

/// `guoku verify`'s arguments.
#[derive(clap::Args)]
pub struct VerifyArgs {
    /// Signed envelopes; `-` reads standard input.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// The deployment's voucher root certificate.
    #[arg(long)]
    ca: PathBuf,
    /// CRLs to check revocation against (every issuer must have a current one).
    #[arg(long)]
    crl: Vec<PathBuf>,
}

fn suite_of(cert: &Certificate) -> anyhow::Result<Suite> {
    match cert.public_key()?.algorithm() {
        KeyAlgorithm::Sm2 => Ok(Suite::Sm),
        KeyAlgorithm::Ed25519 => Ok(Suite::Intl),
        KeyAlgorithm::EcdsaP256 => bail!("a P-256 certificate is for TLS, not for vouchers"),
    }
}

fn read_text(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Every voucher of every file, as envelope bodies.
fn read_bodies(files: &[PathBuf]) -> anyhow::Result<Vec<EnvelopeBody>> {
    let mut bodies = Vec::new();
    for file in files {
        let bytes = read_input(file)?;
        let (decoded, _) = decode_any(&bytes, &Limits::default())
            .with_context(|| format!("{}: unreadable", file.display()))?;
        bodies.extend(decoded.into_iter().map(
            |Decoded {
                 voucher,
                 flag,
                 attach,
                 signatures,
             }| EnvelopeBody {
                flag: flag.unwrap_or_default(),
                attach: attach.unwrap_or_else(|| "SUCCESS".into()),
                voucher,
                signatures,
            },
        ));
    }
    Ok(bodies)
}

pub fn sign(args: SignArgs, global: &Global) -> anyhow::Result<ExitCode> {
    let registry = load_registry(global.registry.as_deref())?;
    let cert = Certificate::from_pem(&read_text(&args.cert)?)?;
    let suite = suite_of(&cert)?;
    let seal = match &args.seal {
        Some(path) => Some(Seal::from_der(
            &std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?,
        )?),
        None => None,
    };
    let mut bodies = read_bodies(&args.files)?;
    if bodies.is_empty() {
        bail!("no vouchers to sign");
    }
    // One PIN entry for the whole batch.
    let pin = read_pin("GUOKU_KEY_PIN", "PIN of the signing key", false)?;
    let key = KeyStoreFile::open(&args.key).unlock(&pin)?;
    let signer = match &seal {
        Some(seal) => Signer::Seal {
            seal,
            key: &key,
            certificate: &cert,
            time: OffsetDateTime::now_utc(),
        },
        None => Signer::Signature {
            key: &key,
            certificate: &cert,
        },
    };
    let parallelism = args
        .threads
        .map_or_else(Parallelism::all_cores, Parallelism::threads);
    let bar = indicatif::ProgressBar::new(bodies.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} {per_sec} eta {eta}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_message(global.lang.pick("签章", "signing"));
    let progress = |done: usize, _total: usize| bar.set_position(done as u64);
    let started = std::time::Instant::now();
    let positions = stamp_batch(
        suite,
        &registry,
        &mut bodies,
        &signer,
        parallelism,
        Some(&progress),
    )?;
    bar.finish_and_clear();
    let bytes = write_envelope(&Envelope { bodies }, Encoding::from(args.encoding));
    match &args.out {
        Some(path) => std::fs::write(path, &bytes)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => crate::voucher_cmd::write_out(&bytes)?,
    }
    let mut filled: Vec<u32> = positions.clone();
    filled.sort_unstable();
    filled.dedup();
    eprintln!(
        "{} {} {} ({:.2} s), {} {filled:?}",
        global.lang.pick("已签章", "signed"),
        positions.len(),
        global.lang.pick("张凭证", "vouchers"),
        started.elapsed().as_secs_f64(),
        global.lang.pick("位置", "positions"),
    );
    Ok(ExitCode::SUCCESS)
}

pub fn run_verify(args: VerifyArgs, global: &Global) -> anyhow::Result<ExitCode> {
    let registry = load_registry(global.registry.as_deref())?;
    let anchor = Certificate::from_pem(&read_text(&args.ca)?)?;
    let suite = suite_of(&anchor)?;
    let crls = args
        .crl
        .iter()
        .map(|path| Ok(Crl::from_pem(&read_text(path)?)?))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let trust = TrustContext {
        anchor: &anchor,
        intermediates: &[],
        crls: &crls,
        revocation: if crls.is_empty() {
            RevocationPolicy::CheckIfPresent
        } else {
            RevocationPolicy::RequireCrl
        },
        now: OffsetDateTime::now_utc(),
    };
    if crls.is_empty() {
        eprintln!(
            "{}",
            global.lang.pick(
                "警告：未提供CRL，未检查证书吊销",
                "warning: no CRL given, revocation is not checked"
            )
        );
    }
    let mut worst = 0u8;
    for file in &args.files {
        let bodies = match read_bodies(std::slice::from_ref(file)) {
            Ok(bodies) => bodies,
            Err(e) => {
                outln!(
                    "{}: {} {e:#}",
                    file.display(),
                    global.lang.pick("无法读取:", "unreadable:")
                );
                worst = 2;
                continue;
            }
        };
        for body in &bodies {
            let key = body.voucher.key();
            let report =
                type_of(&registry, &body.voucher).and_then(|ty| verify(suite, ty, body, &trust));
            match report {
                Ok(report) if report.is_complete_and_valid() => {
                    outln!(
                        "{}: {key} {}",
                        file.display(),
                        pick_valid(global.lang, true)
                    );
                    outln!("{}", indent(&report.to_string()));
                }
                Ok(report) => {
                    outln!(
                        "{}: {key} {}",
                        file.display(),
                        pick_valid(global.lang, false)
                    );
                    outln!("{}", indent(&report.to_string()));
                    worst = worst.max(1);
                }
                Err(e) => {
                    outln!(
                        "{}: {key} {}: {e}",
                        file.display(),
                        pick_valid(global.lang, false)
                    );
                    worst = worst.max(1);
                }
            }
        }
    }
    Ok(ExitCode::from(worst))
}

fn pick_valid(lang: Lang, valid: bool) -> &'static str {
    match (valid, lang) {
        (true, Lang::Zh) => "签章完整有效",
        (true, Lang::En) => "complete and valid",
        (false, Lang::Zh) => "签章不完整或无效",
        (false, Lang::En) => "NOT complete and valid",
    }
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
