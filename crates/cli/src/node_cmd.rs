//! `guoku demo` (every party in one process) and `guoku serve` (one party, as its own
//! organisation).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use guoku_node::demo::{DEMO_PIN, Demo, DemoOptions};
use guoku_node::exchange::Clock;
use guoku_node::serve::{Node, NodeConfig, parse_role};
use guoku_seal::Suite;
use time::OffsetDateTime;
use tokio::sync::watch;

use crate::{Global, Lang};

#[derive(Args)]
pub struct DemoArgs {
    /// The data directory; an existing demo there is resumed.
    #[arg(long, default_value = "guoku-data")]
    dir: PathBuf,
    /// Delete the demo's data and start over.
    #[arg(long)]
    fresh: bool,
    /// The signature suite of a new demo: sm (SM2/SM3/SM4) or intl (Ed25519/SHA-256/AES-GCM).
    #[arg(long, default_value = "sm")]
    suite: String,
    /// Where the portal and the API listen.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Create (or check) the data directory and exit: for running the parties as separate
    /// processes with `guoku serve`.
    #[arg(long)]
    init_only: bool,
}

#[derive(Args)]
pub struct ServeArgs {
    /// The party's role: finance, pboc, bank or counter (must match the configuration).
    #[arg(long)]
    role: String,
    /// The party's configuration file (`guoku demo` writes one per party:
    /// `<data dir>/<organisation code>/node.toml`).
    #[arg(long)]
    config: PathBuf,
}

fn system_clock() -> Clock {
    Arc::new(OffsetDateTime::now_utc)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// Waits for Ctrl-C or SIGTERM, then turns `stop` on.
async fn stop_on_signal(stop: watch::Sender<bool>) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("a SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    let _ = stop.send(true);
}

pub fn demo(args: DemoArgs, global: &Global) -> anyhow::Result<ExitCode> {
    let suite = match args.suite.as_str() {
        "sm" => Suite::Sm,
        "intl" => Suite::Intl,
        other => anyhow::bail!("--suite is sm or intl, not {other:?}"),
    };
    let lang = global.lang;
    runtime()?.block_on(async move {
        let options = DemoOptions {
            dir: args.dir.clone(),
            fresh: args.fresh,
            suite,
            postgres: None,
        };
        outln!(
            "{}",
            lang.pick(
                "正在打开演示省份（首次运行将生成证书、印章和账簿）……",
                "Opening the demo province (the first start makes certificates, seals and books)…"
            )
        );
        let demo = Arc::new(Demo::open(&options, system_clock()).await?);
        // The portal's users (passwords, authenticator secrets) before anything serves, so
        // the organisations' own nodes (`guoku serve`) take them too.
        let logins = guoku_node::portal::seed_demo_users(&demo).await?;
        if args.init_only {
            outln!(
                "{} {}",
                lang.pick("演示数据已就绪：", "The demo's data is ready in"),
                args.dir.display()
            );
            return Ok(ExitCode::SUCCESS);
        }
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut workers = Vec::new();
        for party in demo.parties() {
            workers.push(tokio::spawn(
                party.run(Duration::from_millis(200), stop_rx.clone()),
            ));
        }
        let listener = tokio::net::TcpListener::bind(args.listen).await?;
        let (tokens, token_lines) = guoku_node::serve::demo_tokens(&demo);
        print_demo(
            &demo,
            &args,
            listener.local_addr()?,
            &token_lines,
            &logins,
            lang,
        );
        let server =
            guoku_node::serve::serve_demo_api(listener, demo.clone(), tokens, stop_rx.clone());
        tokio::spawn(stop_on_signal(stop_tx));
        server.await?;
        for worker in workers {
            let _ = worker.await;
        }
        outln!("{}", lang.pick("已停止。", "Stopped."));
        Ok(ExitCode::SUCCESS)
    })
}

fn print_demo(
    demo: &Demo,
    args: &DemoArgs,
    addr: SocketAddr,
    tokens: &[String],
    logins: &[guoku_node::portal::DemoLogin],
    lang: Lang,
) {
    let p = &demo.province;
    outln!(
        "{} {}",
        lang.pick("数据目录", "data directory"),
        args.dir.display()
    );
    outln!(
        "{}",
        if demo.created {
            lang.pick("（新建）", "(new)")
        } else {
            lang.pick("（已恢复上次的数据）", "(resumed)")
        }
    );
    outln!(
        "{}: {}",
        lang.pick("行政区划", "divisions"),
        p.divisions
            .iter()
            .map(|d| format!("{} {}", d.code, d.name))
            .collect::<Vec<_>>()
            .join(", ")
    );
    outln!("");
    outln!(
        "  http://{addr}/   {}",
        lang.pick(
            "门户：预算单位自助柜面、财政、代理银行、人民银行与系统管理",
            "portal: the budget units' counter, finance, banks, PBOC, administration"
        )
    );
    outln!(
        "  http://{addr}/api/v1/openapi.json   {}",
        lang.pick("接口说明", "API description")
    );
    outln!("");
    outln!(
        "{}",
        lang.pick(
            "演示用户（网页登录：密码加动态口令，口令密钥可加入任一身份验证器应用；仅供演示）：",
            "Demo users (the portal asks for the password and a one-time code: add the secret to any authenticator app; demo only):"
        )
    );
    for user in &demo.users {
        let secret = logins
            .iter()
            .find(|l| l.login == user.login)
            .map_or("", |l| l.secret_base32.as_str());
        outln!(
            "  {:<26} {:<8} {}  {}  TOTP {}",
            user.login,
            user.post.code(),
            user.organisation,
            user.name,
            secret
        );
    }
    if let Some(first) = logins.first() {
        outln!("  {} {}", lang.pick("密码：", "password:"), first.password);
    }
    outln!("  {} {DEMO_PIN}", lang.pick("签章 PIN：", "signing PIN:"));
    outln!(
        "{}",
        lang.pick(
            "API 令牌（每次启动重新生成；Authorization: Bearer <令牌>）：",
            "API tokens (new at every start; Authorization: Bearer <token>):"
        )
    );
    for line in tokens {
        outln!("  {line}");
    }
    outln!("");
    outln!(
        "{}",
        lang.pick(
            "各方也可作为独立进程运行：guoku serve --role <角色> --config <数据目录>/<机构代码>/node.toml",
            "Each party can also run as its own process: guoku serve --role <role> --config <data dir>/<org code>/node.toml"
        )
    );
    outln!("{}", lang.pick("按 Ctrl-C 停止。", "Press Ctrl-C to stop."));
}

pub fn serve(args: ServeArgs, global: &Global) -> anyhow::Result<ExitCode> {
    let config = NodeConfig::load(&args.config)?;
    let asked = parse_role(&args.role).map_err(anyhow::Error::msg)?;
    let configured = parse_role(&config.role).map_err(anyhow::Error::msg)?;
    anyhow::ensure!(
        asked == configured,
        "--role {} but {} configures a {} node",
        args.role,
        args.config.display(),
        config.role
    );
    let pin = crate::pki_cmd::read_pin("GUOKU_KEY_PIN", "PIN of the party's keys", false)?;
    let lang = global.lang;
    runtime()?.block_on(async move {
        let node = Arc::new(Node::open(config, &pin, system_clock()).await?);
        let (stop_tx, stop_rx) = watch::channel(false);
        let api = tokio::net::TcpListener::bind(node.config.api_listen).await?;
        outln!(
            "{} {} ({}) — {} {}, API http://{}",
            lang.pick("节点", "node"),
            node.config.org_code,
            node.config.name,
            lang.pick("交换端口（双向 TLS）", "exchange (mutual TLS)"),
            node.config.exchange_listen,
            api.local_addr()?
        );
        let api_server = tokio::spawn(guoku_node::serve::serve_node_api(
            api,
            node.clone(),
            stop_rx.clone(),
        ));
        tokio::spawn(stop_on_signal(stop_tx));
        node.run_exchange_and_worker(stop_rx).await?;
        api_server.await??;
        Ok(ExitCode::SUCCESS)
    })
}
