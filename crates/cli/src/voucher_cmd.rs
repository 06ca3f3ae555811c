//! `guoku voucher …`: validate, convert, types, sample.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Subcommand, ValueEnum};
use guoku_domain::BizDate;
use guoku_voucher::sample::{Style, sample};
use guoku_voucher::{
    Context, Decoded, Encoding, Envelope, EnvelopeBody, Layout, Limits, Registry, Voucher,
    VoucherFlag, decode_any, json, validate, write_envelope, write_voucher,
};

use crate::{Global, Lang};

#[derive(Subcommand)]
pub enum VoucherCommand {
    /// Check vouchers against the standard; exit 0 valid, 1 invalid, 2 unreadable.
    Validate {
        /// Files holding a <Voucher>, a <MOF> envelope or JSON; `-` reads standard input.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Validate as receipts (回单: X fields filled). Envelopes say so themselves.
        #[arg(long)]
        receipt: bool,
        /// The business date to check VouDate against (yyyyMMdd). Default: today in China.
        #[arg(long, value_name = "YYYYMMDD")]
        today: Option<String>,
    },
    /// Convert a voucher between XML, the envelope and JSON.
    Convert {
        /// Output form.
        #[arg(long, value_enum)]
        to: Form,
        /// Output encoding for XML and envelopes: the standard's GBK, or UTF-8.
        #[arg(long, value_enum, default_value = "gbk")]
        encoding: EncodingArg,
        /// Mark vouchers as receipts (VoucherFlag 1) in an envelope made from XML or JSON.
        #[arg(long)]
        receipt: bool,
        /// Input file; `-` (the default) reads standard input.
        #[arg(default_value = "-")]
        file: PathBuf,
    },
    /// List the voucher types of the registry.
    Types,
    /// Print a valid example voucher of a type.
    Sample {
        /// The voucher type, e.g. 5201.
        vt_code: String,
        /// Output form.
        #[arg(long, value_enum, default_value = "xml")]
        to: Form,
        /// Output encoding for XML and envelopes (UTF-8 by default, to be read by people).
        #[arg(long, value_enum, default_value = "utf-8")]
        encoding: EncodingArg,
        /// Make a receipt (回单) with the X fields filled.
        #[arg(long)]
        receipt: bool,
        /// Vary the example.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Form {
    Xml,
    Json,
    Envelope,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum EncodingArg {
    Gbk,
    #[value(name = "utf-8", alias = "utf8")]
    Utf8,
}

impl From<EncodingArg> for Encoding {
    fn from(arg: EncodingArg) -> Encoding {
        match arg {
            EncodingArg::Gbk => Encoding::Gbk,
            EncodingArg::Utf8 => Encoding::Utf8,
        }
    }
}

pub fn run(command: VoucherCommand, global: &Global) -> anyhow::Result<ExitCode> {
    let registry = load_registry(global.registry.as_deref())?;
    match command {
        VoucherCommand::Validate {
            files,
            receipt,
            today,
        } => {
            let today = match today {
                Some(text) => text
                    .parse::<BizDate>()
                    .map_err(|e| anyhow::anyhow!("--today {text}: {e}"))?,
                None => today_in_china(),
            };
            Ok(validate_files(
                &files,
                receipt,
                today,
                &registry,
                global.lang,
            ))
        }
        VoucherCommand::Convert {
            to,
            encoding,
            receipt,
            file,
        } => {
            let bytes = read_input(&file)?;
            let (decoded, _) = decode_any(&bytes, &Limits::default())
                .with_context(|| format!("{}: unreadable", file.display()))?;
            let flag = receipt.then_some(VoucherFlag::Receipt);
            write_out(&encode(&decoded, to, encoding.into(), flag)?)?;
            Ok(ExitCode::SUCCESS)
        }
        VoucherCommand::Types => {
            print_types(&registry, global.lang);
            Ok(ExitCode::SUCCESS)
        }
        VoucherCommand::Sample {
            vt_code,
            to,
            encoding,
            receipt,
            seed,
        } => {
            let Some(ty) = registry.get(&vt_code) else {
                bail!(
                    "no voucher type {vt_code:?} in the registry; `guoku voucher types` lists them"
                );
            };
            let flag = if receipt {
                VoucherFlag::Receipt
            } else {
                VoucherFlag::Original
            };
            let voucher = sample(ty, today_in_china(), flag, Style::Plain, seed);
            let decoded = [Decoded {
                voucher,
                flag: Some(flag),
                attach: Some("SUCCESS".into()),
                signatures: Vec::new(),
            }];
            write_out(&encode(&decoded, to, encoding.into(), None)?)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub fn load_registry(path: Option<&Path>) -> anyhow::Result<Registry> {
    let Some(path) = path else {
        return Ok(Registry::builtin());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the registry {}", path.display()))?;
    Registry::from_toml(&text).with_context(|| format!("in {}", path.display()))
}

/// Today's date in China (UTC+8), where the business day is counted.
fn today_in_china() -> BizDate {
    let offset = time::UtcOffset::from_hms(8, 0, 0).expect("a valid offset");
    BizDate::from(time::OffsetDateTime::now_utc().to_offset(offset).date())
}

/// Reads a file, or standard input for `-`, refusing more than the decoder would take.
pub fn read_input(path: &Path) -> anyhow::Result<Vec<u8>> {
    let limit = Limits::default().max_input_bytes as u64 + 1;
    let mut bytes = Vec::new();
    if path == Path::new("-") {
        std::io::stdin()
            .lock()
            .take(limit)
            .read_to_end(&mut bytes)
            .context("cannot read standard input")?;
    } else {
        std::fs::File::open(path)
            .with_context(|| format!("cannot open {}", path.display()))?
            .take(limit)
            .read_to_end(&mut bytes)
            .with_context(|| format!("cannot read {}", path.display()))?;
    }
    Ok(bytes)
}

pub fn write_out(bytes: &[u8]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        // A closed pipe (`| head`) is the reader's choice, not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("cannot write to standard output"),
    }
}

fn encode(
    decoded: &[Decoded],
    to: Form,
    encoding: Encoding,
    flag: Option<VoucherFlag>,
) -> anyhow::Result<Vec<u8>> {
    Ok(match to {
        Form::Xml => {
            let [one] = decoded else {
                bail!(
                    "the input holds {} vouchers; a <Voucher> document holds one: convert to envelope or json",
                    decoded.len()
                );
            };
            write_voucher(&one.voucher, encoding, Layout::Indented)
        }
        Form::Json => match decoded {
            [one] => json::write_json(&one.voucher).into_bytes(),
            many => {
                let values: Vec<_> = many
                    .iter()
                    .map(|d| json::to_json_value(&d.voucher))
                    .collect();
                let mut text = serde_json_pretty(&values);
                text.push('\n');
                text.into_bytes()
            }
        },
        Form::Envelope => {
            let bodies = decoded
                .iter()
                .map(|d| EnvelopeBody {
                    flag: flag.or(d.flag).unwrap_or_default(),
                    attach: d.attach.clone().unwrap_or_else(|| "SUCCESS".into()),
                    voucher: d.voucher.clone(),
                    signatures: d.signatures.clone(),
                })
                .collect();
            write_envelope(&Envelope { bodies }, encoding)
        }
    })
}

fn serde_json_pretty(values: &[serde_json::Value]) -> String {
    serde_json::to_string_pretty(values).expect("JSON values always serialize")
}

/// Validates every voucher of every file and prints what is wrong.
/// Exit 0 when all are valid, 1 when any is invalid, 2 when any file is unreadable.
fn validate_files(
    files: &[PathBuf],
    receipt: bool,
    today: BizDate,
    registry: &Registry,
    lang: Lang,
) -> ExitCode {
    let limits = Limits::default();
    let mut worst = 0u8;
    for file in files {
        let name = file.display();
        let decoded = read_input(file).and_then(|bytes| {
            decode_any(&bytes, &limits)
                .map(|(d, _)| d)
                .map_err(anyhow::Error::from)
        });
        let decoded = match decoded {
            Ok(decoded) => decoded,
            Err(error) => {
                outln!(
                    "{name}: {} {error:#}",
                    lang.pick("无法读取:", "unreadable:")
                );
                worst = 2;
                continue;
            }
        };
        for Decoded { voucher, flag, .. } in &decoded {
            let flag = flag.unwrap_or(if receipt {
                VoucherFlag::Receipt
            } else {
                VoucherFlag::Original
            });
            let problems = validate(voucher, registry, &Context { today, flag });
            print_result(&name.to_string(), voucher, registry, &problems, lang);
            if !problems.is_empty() {
                worst = worst.max(1);
            }
        }
    }
    ExitCode::from(worst)
}

fn print_result(
    name: &str,
    voucher: &Voucher,
    registry: &Registry,
    problems: &[guoku_voucher::Problem],
    lang: Lang,
) {
    let key = voucher.key();
    if problems.is_empty() {
        outln!("{name}: {key} {}", lang.pick("有效", "valid"));
        return;
    }
    outln!(
        "{name}: {key} {} {}",
        lang.pick("无效，问题数", "invalid, problems:"),
        problems.len()
    );
    let ty = registry.get(voucher.vt_code());
    for p in problems {
        let field = p.path.rsplit('/').next().unwrap_or(&p.path);
        let label = ty
            .and_then(|t| t.header_field(field).or_else(|| t.detail_field(field)))
            .and_then(|f| f.label_zh.as_deref())
            .unwrap_or("");
        match lang {
            Lang::Zh => outln!(
                "  {} {label}: {} [{}] 值 {:?}: {}",
                p.path,
                p.rule.name_zh(),
                p.rule.code(),
                p.value,
                p.message
            ),
            Lang::En => outln!(
                "  {}: {} value {:?}: {}",
                p.path,
                p.rule.code(),
                p.value,
                p.message
            ),
        }
    }
}

fn print_types(registry: &Registry, lang: Lang) {
    let header = match lang {
        Lang::Zh => [
            "类型",
            "名称",
            "发送方 → 接收方",
            "金额符号",
            "字段(主/明细)",
            "签章位置",
        ],
        Lang::En => [
            "VtCode",
            "name",
            "sender → receiver",
            "amount sign",
            "fields (header/detail)",
            "seal positions",
        ],
    };
    let mut rows = vec![header.map(str::to_owned)];
    for ty in registry.types() {
        let roles = |roles: &[guoku_voucher::registry::Role]| {
            roles
                .iter()
                .map(|r| lang.pick(r.name_zh(), r.name_en()).to_owned())
                .collect::<Vec<_>>()
                .join(",")
        };
        let sign = match &ty.amount {
            Some(field) => format!("{field} {}", ty.sign.describe_en()),
            None => "-".into(),
        };
        rows.push([
            ty.vt_code.to_string(),
            lang.pick(&ty.name_zh, &ty.name_en).to_owned(),
            format!("{} → {}", roles(&ty.senders), roles(&ty.receivers)),
            sign,
            format!("{}/{}", ty.header.len(), ty.detail.len()),
            format!("{}+{}", ty.seals.len(), ty.receipt_seals.len()),
        ]);
    }
    // Column widths in display cells: a CJK character takes two.
    let cells = |s: &str| {
        s.chars()
            .map(|c| if c.is_ascii() { 1 } else { 2 })
            .sum::<usize>()
    };
    let widths: Vec<usize> = (0..6)
        .map(|i| rows.iter().map(|r| cells(&r[i])).max().unwrap_or(0))
        .collect();
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell}{}", " ".repeat(width - cells(cell))))
            .collect();
        outln!("{}", line.join("  ").trim_end());
    }
}
