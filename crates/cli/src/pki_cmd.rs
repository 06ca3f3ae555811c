//! `guoku pki …`: a deployment's certificate authority in a directory.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Subcommand, ValueEnum};
use guoku_seal::Suite;
use guoku_seal::authority::{Authority, InitOptions, Subject};
use guoku_seal::keystore::{DEFAULT_MAX_ATTEMPTS, KdfParams, KeyStoreFile, Pin};
use guoku_seal::pki::{OrgRole, Organisation, Person, Post, Serial, TlsNode};
use time::OffsetDateTime;

use crate::Global;

#[derive(Subcommand)]
pub enum PkiCommand {
    /// Make a deployment root CA (voucher root and TLS root) in a directory.
    Init {
        /// The CA directory to create.
        #[arg(long, default_value = "pki")]
        dir: PathBuf,
        /// The deployment's suite: sm (SM2/SM3/SM4) or intl (Ed25519/SHA-256/AES-GCM).
        #[arg(long, value_enum, default_value = "sm")]
        suite: SuiteArg,
        /// The organisation running the CA, e.g. 湖南省财政厅.
        #[arg(long)]
        org: String,
        /// The CA's name.
        #[arg(long)]
        name: String,
        /// Validity of the roots in days.
        #[arg(long, default_value_t = 3650)]
        days: u32,
    },
    /// Issue a certificate and a new key (the key goes into a PIN-protected key store).
    Issue {
        #[arg(long, default_value = "pki")]
        dir: PathBuf,
        /// What to certify.
        #[arg(long, value_enum)]
        kind: KindArg,
        /// The organisation's role (org and person): finance, pboc, agent-bank, budget-unit.
        #[arg(long)]
        role: Option<String>,
        /// The organisation's code (org and person), e.g. its unified social credit code.
        #[arg(long)]
        code: Option<String>,
        /// The organisation's name (org and person; for tls: the organisation running the node).
        #[arg(long)]
        org: String,
        /// The person's name (person) or the node's name (tls).
        #[arg(long)]
        name: Option<String>,
        /// The person's post (person): maker, checker, signer.
        #[arg(long)]
        post: Option<String>,
        /// The person's staff id (person).
        #[arg(long)]
        staff_id: Option<String>,
        /// DNS names of the node (tls).
        #[arg(long)]
        dns: Vec<String>,
        /// IP addresses of the node (tls).
        #[arg(long)]
        ip: Vec<IpAddr>,
        /// Validity in days.
        #[arg(long, default_value_t = 730)]
        days: u32,
        /// Output path prefix: writes PREFIX.crt and PREFIX.key.
        #[arg(long)]
        out: PathBuf,
    },
    /// Revoke an issued certificate by serial (hex) and re-issue the CRLs.
    Revoke {
        #[arg(long, default_value = "pki")]
        dir: PathBuf,
        serial: String,
    },
    /// Re-issue the CRLs (they are valid for 30 days).
    Crl {
        #[arg(long, default_value = "pki")]
        dir: PathBuf,
    },
    /// List the certificates issued.
    List {
        #[arg(long, default_value = "pki")]
        dir: PathBuf,
    },
    /// Make an electronic seal (GM/T 0031): the sealmaker signs it; its holders may apply it.
    Seal {
        /// The seal's kind: ywzyz 业务专用章, zqz 转讫章, gz 公章, fjz 附件章, sz 私章, jzysz, fhysz.
        #[arg(long)]
        kind: String,
        /// The seal's name, e.g. 财政业务专用章.
        #[arg(long)]
        name: String,
        /// The sealmaker's key store (its PIN from GUOKU_KEY_PIN or the terminal).
        #[arg(long)]
        maker_key: PathBuf,
        /// The sealmaker's certificate: the organisation's own, or a seal-maker's.
        #[arg(long)]
        maker_cert: PathBuf,
        /// Certificates of the people allowed to apply the seal.
        #[arg(long, required = true)]
        holder: Vec<PathBuf>,
        /// Validity in days.
        #[arg(long, default_value_t = 365)]
        days: u32,
        /// Where to write the seal (DER).
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum SuiteArg {
    Sm,
    Intl,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum KindArg {
    /// An organisation's signing and sealing certificate.
    Org,
    /// A person's signing certificate, by post.
    Person,
    /// A node's TLS certificate (ECDSA P-256).
    Tls,
}

/// Reads a PIN from the environment variable `var`, else from the terminal.
/// PINs never appear in arguments (they would show in the process list).
pub fn read_pin(var: &str, prompt: &str, confirm: bool) -> anyhow::Result<Pin> {
    if let Ok(pin) = std::env::var(var) {
        return Pin::new(pin).with_context(|| var.to_string());
    }
    if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        bail!("{prompt}: set {var} or run on a terminal");
    }
    let pin = rpassword::prompt_password(format!("{prompt}: "))?;
    if confirm && rpassword::prompt_password(format!("{prompt} (again): "))? != pin {
        bail!("the PINs differ");
    }
    Ok(Pin::new(pin)?)
}

fn field(value: Option<String>, name: &str, kind: &str) -> anyhow::Result<String> {
    value.with_context(|| format!("--{name} is needed for --kind {kind}"))
}

fn organisation(
    role: Option<String>,
    code: Option<String>,
    org: String,
    kind: &str,
) -> anyhow::Result<Organisation> {
    Ok(Organisation {
        role: field(role, "role", kind)?.parse::<OrgRole>()?,
        code: field(code, "code", kind)?,
        name: org,
    })
}

pub fn run(command: PkiCommand, _global: &Global) -> anyhow::Result<ExitCode> {
    let now = OffsetDateTime::now_utc();
    let mut rng = rand::rng();
    match command {
        PkiCommand::Init {
            dir,
            suite,
            org,
            name,
            days,
        } => {
            let suite = match suite {
                SuiteArg::Sm => Suite::Sm,
                SuiteArg::Intl => Suite::Intl,
            };
            let pin = read_pin("GUOKU_CA_PIN", "new CA PIN", true)?;
            let options = InitOptions {
                suite,
                organisation: org,
                name,
                validity_days: days,
            };
            let authority = Authority::init(&dir, &options, &pin, now, &mut rng)?;
            outln!("CA created in {} (suite {suite})", dir.display());
            outln!("  voucher root: {}", authority.ca().subject());
            outln!("  TLS root:     {}", authority.tls_ca().subject());
        }
        PkiCommand::Issue {
            dir,
            kind,
            role,
            code,
            org,
            name,
            post,
            staff_id,
            dns,
            ip,
            days,
            out,
        } => {
            let authority =
                Authority::open(&dir).with_context(|| format!("no CA in {}", dir.display()))?;
            let subject = match kind {
                KindArg::Org => Subject::Organisation(organisation(role, code, org, "org")?),
                KindArg::Person => Subject::Person(Person {
                    post: field(post, "post", "person")?.parse::<Post>()?,
                    name: field(name, "name", "person")?,
                    staff_id: field(staff_id, "staff-id", "person")?,
                    organisation: organisation(role, code, org, "person")?,
                }),
                KindArg::Tls => {
                    if dns.is_empty() && ip.is_empty() {
                        bail!("--dns or --ip is needed for --kind tls");
                    }
                    Subject::Tls(TlsNode {
                        organisation: org,
                        common_name: field(name, "name", "tls")?,
                        dns_names: dns,
                        ip_addresses: ip,
                    })
                }
            };
            let (crt, key) = (with_suffix(&out, "crt"), with_suffix(&out, "key"));
            for path in [&crt, &key] {
                if path.exists() {
                    bail!("{} already exists", path.display());
                }
            }
            let ca_pin = read_pin("GUOKU_CA_PIN", "CA PIN", false)?;
            let holder_pin = read_pin("GUOKU_KEY_PIN", "new PIN for the issued key", true)?;
            let issued = authority.issue(&ca_pin, &subject, days, now, &mut rng)?;
            KeyStoreFile::create(
                &key,
                &issued.key,
                &holder_pin,
                authority.suite(),
                KdfParams::MINIMUM,
                DEFAULT_MAX_ATTEMPTS,
                &mut rng,
            )?;
            std::fs::write(&crt, issued.certificate.to_pem()?)
                .with_context(|| format!("cannot write {}", crt.display()))?;
            outln!(
                "issued {} serial {}",
                issued.certificate.subject(),
                issued.certificate.serial()
            );
            outln!("  certificate: {}", crt.display());
            outln!("  key store:   {}", key.display());
        }
        PkiCommand::Revoke { dir, serial } => {
            let authority = Authority::open(&dir)?;
            let serial = Serial::from_hex(&serial)?;
            let pin = read_pin("GUOKU_CA_PIN", "CA PIN", false)?;
            authority.revoke(&pin, &serial, now)?;
            outln!("revoked {serial}; CRLs re-issued");
        }
        PkiCommand::Crl { dir } => {
            let authority = Authority::open(&dir)?;
            let pin = read_pin("GUOKU_CA_PIN", "CA PIN", false)?;
            authority.refresh_crls(&pin, now)?;
            outln!("CRLs re-issued in {}", dir.display());
        }
        PkiCommand::Seal {
            kind,
            name,
            maker_key,
            maker_cert,
            holder,
            days,
            out,
        } => make_seal(
            &kind,
            name,
            &maker_key,
            &maker_cert,
            &holder,
            days,
            &out,
            now,
            &mut rng,
        )?,
        PkiCommand::List { dir } => {
            let authority = Authority::open(&dir)?;
            for (cert, revoked) in authority.issued()? {
                let validity = cert.validity();
                outln!(
                    "{}  {}  until {}  {}",
                    cert.serial(),
                    if revoked { "REVOKED" } else { "valid  " },
                    validity.not_after.date(),
                    cert.subject()
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut name = prefix.as_os_str().to_owned();
    name.push(".");
    name.push(suffix);
    PathBuf::from(name)
}

fn read_certificate(path: &Path) -> anyhow::Result<guoku_seal::pki::Certificate> {
    let pem =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(guoku_seal::pki::Certificate::from_pem(&pem)?)
}

#[allow(clippy::too_many_arguments, reason = "the fields of one CLI command")]
fn make_seal(
    kind: &str,
    name: String,
    maker_key: &Path,
    maker_cert: &Path,
    holders: &[PathBuf],
    days: u32,
    out: &Path,
    now: OffsetDateTime,
    rng: &mut impl rand::CryptoRng,
) -> anyhow::Result<()> {
    use guoku_seal::ses::{CertListForm, SealPicture, SealSpec, make_seal};
    use guoku_seal::voucher::StampKind;
    if out.exists() {
        bail!("{} already exists", out.display());
    }
    let kind: StampKind = kind.parse()?;
    let maker = read_certificate(maker_cert)?;
    let suite = match maker.public_key()?.algorithm() {
        guoku_seal::KeyAlgorithm::Sm2 => Suite::Sm,
        guoku_seal::KeyAlgorithm::Ed25519 => Suite::Intl,
        guoku_seal::KeyAlgorithm::EcdsaP256 => bail!("a TLS certificate cannot make seals"),
    };
    let holders = holders
        .iter()
        .map(|p| read_certificate(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let info = maker.subject_info();
    let organisation = info.organisation.clone().unwrap_or_else(|| name.clone());
    let mut tag = [0u8; 4];
    rng.fill_bytes(&mut tag);
    let es_id = format!(
        "{}-{}-{}",
        info.org_code.as_deref().unwrap_or("seal"),
        kind.code(),
        tag.iter().map(|b| format!("{b:02x}")).collect::<String>()
    );
    let spec = SealSpec {
        es_id: es_id.clone(),
        kind,
        picture: SealPicture::demo(&organisation, &name, 40),
        name,
        holders,
        list_form: CertListForm::Certificates,
        created: now,
        validity: guoku_seal::pki::Validity::days_from(now, days),
    };
    let pin = read_pin("GUOKU_KEY_PIN", "PIN of the sealmaker's key", false)?;
    let key = KeyStoreFile::open(maker_key).unlock(&pin)?;
    let seal = make_seal(suite, &spec, &key, &maker)?;
    std::fs::write(out, seal.to_der())
        .with_context(|| format!("cannot write {}", out.display()))?;
    outln!(
        "seal {es_id} ({}) written to {}",
        seal.name(),
        out.display()
    );
    Ok(())
}
