//! The `guoku` binary: parses arguments, builds a typed configuration, calls the
//! libraries, and maps errors to exit codes. Nothing else lives here.

/// `println!` that treats a closed standard output (`guoku … | head`) as the reader's
/// choice: the process ends quietly instead of panicking, with the status a process
/// killed by SIGPIPE has (141), so a pipeline never mistakes it for success.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::write_line(format_args!($($arg)*))
    };
}

/// Writes one line to standard output; see [`outln!`].
pub fn write_line(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.write_all(b"\n")) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(141);
        }
        eprintln!("guoku: cannot write to standard output: {e}");
        std::process::exit(2);
    }
}

/// mimalloc instead of glibc's malloc: see the dependency's note in Cargo.toml.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod audit_archive_cmd;
mod audit_cmd;
mod backup_cmd;
mod bench_cmd;
mod node_cmd;
mod pki_cmd;
mod sign_cmd;
mod voucher_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// guoku (国库): paperless treasury centralized payment (国库集中支付电子化管理).
#[derive(Parser)]
#[command(name = "guoku", version, about, long_about = None)]
struct Cli {
    /// Voucher type registry to use instead of the built-in one (a province's own file).
    #[arg(long, global = true, env = "GUOKU_REGISTRY", value_name = "FILE")]
    registry: Option<PathBuf>,
    /// Language of messages: zh (中文) or en. Default: from LANG.
    #[arg(long, global = true, value_enum, env = "GUOKU_LANG")]
    lang: Option<Lang>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Electronic vouchers: validate, convert, list types, make samples (电子凭证).
    #[command(subcommand)]
    Voucher(voucher_cmd::VoucherCommand),
    /// The deployment's certificate authority: init, issue, revoke, CRLs (证书).
    #[command(subcommand)]
    Pki(pki_cmd::PkiCommand),
    /// Sign or seal vouchers at their next seal position, a whole batch with one PIN (签章).
    Sign(sign_cmd::SignArgs),
    /// Check every signature and seal of signed vouchers; exit 0 only when complete and valid (验签).
    Verify(sign_cmd::VerifyArgs),
    /// The demo province: finance, PBOC, two agent banks and the units' counter in one
    /// process, with the portal and the API on localhost (演示).
    Demo(node_cmd::DemoArgs),
    /// Run one party (finance, PBOC, an agent bank, the units' counter) as its own node (服务).
    Serve(node_cmd::ServeArgs),
    /// The audit log: verify it, sign a tree head, prove a voucher's leaves, check a proof (电子审计).
    #[command(subcommand)]
    Audit(audit_cmd::AuditCommand),
    /// Benchmarks that print figures (性能测试).
    #[command(subcommand)]
    Bench(bench_cmd::BenchCommand),
    /// Back up a node's store while it runs, into one checked file (备份).
    Backup(backup_cmd::BackupArgs),
    /// Restore a node's store from a backup and verify its audit log (恢复).
    Restore(backup_cmd::RestoreArgs),
}

/// The interface language.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Lang {
    Zh,
    En,
}

impl Lang {
    fn from_env() -> Lang {
        let lang = std::env::var("LC_ALL")
            .or_else(|_| std::env::var("LANG"))
            .unwrap_or_default();
        if lang.starts_with("zh") {
            Lang::Zh
        } else {
            Lang::En
        }
    }

    /// Picks the text for this language.
    pub fn pick<'a>(self, zh: &'a str, en: &'a str) -> &'a str {
        match self {
            Lang::Zh => zh,
            Lang::En => en,
        }
    }
}

/// Global settings every command receives.
pub struct Global {
    pub registry: Option<PathBuf>,
    pub lang: Lang,
}

fn main() -> ExitCode {
    // Logs go to standard error; GUOKU_LOG sets the level (default: warnings and errors).
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("GUOKU_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let cli = Cli::parse();
    let global = Global {
        registry: cli.registry,
        lang: cli.lang.unwrap_or_else(Lang::from_env),
    };
    let result = match cli.command {
        Command::Voucher(command) => voucher_cmd::run(command, &global),
        Command::Pki(command) => pki_cmd::run(command, &global),
        Command::Bench(command) => bench_cmd::run(command, &global),
        Command::Audit(command) => audit_cmd::run(command, &global),
        Command::Demo(args) => node_cmd::demo(args, &global),
        Command::Serve(args) => node_cmd::serve(args, &global),
        Command::Sign(args) => sign_cmd::sign(args, &global),
        Command::Verify(args) => sign_cmd::run_verify(args, &global),
        Command::Backup(args) => backup_cmd::backup(args, &global),
        Command::Restore(args) => backup_cmd::restore(args, &global),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("guoku: {error:#}");
            ExitCode::from(2)
        }
    }
}
