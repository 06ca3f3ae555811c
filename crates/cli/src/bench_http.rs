//! `guoku bench http`: the demo's API and portal over real HTTP at a fixed rate.
//!
//! The demo province is opened in a temporary directory in this process, some direct
//! payments are issued so there are vouchers to read, and the API and the portal are
//! served on `127.0.0.1` (a free port) exactly as `guoku demo` serves them. A portal user
//! signs in through the real forms (password, then the TOTP code) and finance's maker takes
//! an API token. Then requests are sent open-loop: request *i* is due at `start + i / rate`
//! whether or not earlier ones have answered, and its latency is counted from when it was
//! due, not from when a connection was free to send it, so a stall shows in the figures
//! instead of slowing the load down (no coordinated omission). The requests go over
//! `--connections` keep-alive HTTP/1.1 connections (plain hyper 1 clients, one request at
//! a time on each).
//!
//! The mix, by tenths: `GET /healthz` 1, `GET /api/v1/vouchers?…` (a page of the list) 2,
//! `GET /api/v1/vouchers/{key}` (a seeded voucher) 2, the portal's home page with the
//! session cookie 2, `GET /metrics` 1, the portal's static style sheet 1, and
//! `POST /lang` 1: the language switch, a real CSRF-checked form post that changes no
//! record (it only sets the browser's language cookie). No API POST moves nothing: each
//! makes a draft or moves a voucher, so the API part is reads only.
//!
//! The load generator runs on a thread of its own with its own single-threaded runtime,
//! beside the server's two worker threads; on the 2-core machine they share the cores, as
//! a client on the same machine would.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use guoku_node::api::{TokenTable, demo_principals};
use guoku_node::demo::{Demo, DemoOptions, Payee};
use guoku_node::exchange::{Clock, InMemory};
use guoku_node::party::{BUSINESS_OFFSET_HOURS, Party};
use guoku_node::portal::{DEMO_PASSWORD, demo_totp_secret, seed_demo_users};
use guoku_seal::Suite;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use time::OffsetDateTime;
use tokio::sync::{Mutex, mpsc, watch};

/// The 20 ms target for p99 (issue 6).
const P99_TARGET_MS: f64 = 20.0;
/// Direct payments issued before the run, whose vouchers the detail requests read.
const SEEDED_VOUCHERS: usize = 100;
/// Longest wait for one answer; a request taking longer counts as an error (`timeout`).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Most answer bytes read (the largest, `/metrics`, is a few tens of KiB).
const BODY_MAX_BYTES: usize = 4 * 1024 * 1024;

/// What to run.
#[derive(Clone, Copy, Debug)]
pub struct HttpBench {
    /// Requests per second, scheduled at exact intervals.
    pub rate: u32,
    /// How long requests are scheduled for.
    pub seconds: u32,
    /// Keep-alive connections the requests share.
    pub connections: usize,
    /// The signature suite of the demo province.
    pub suite: Suite,
}

/// The routes of the mix: a name for the report, and how many tenths of the load.
const ROUTES: [(&str, u32); 7] = [
    ("GET /healthz", 1),
    ("GET /api/v1/vouchers?…", 2),
    ("GET /api/v1/vouchers/{key}", 2),
    ("GET /o/{org} (portal home)", 2),
    ("GET /metrics", 1),
    ("GET /assets/portal.css", 1),
    ("POST /lang (portal form)", 1),
];

/// The route of request `n`: the mix spread evenly over every ten requests.
fn route_of(n: u64) -> usize {
    let slot = u32::try_from(n % 10).unwrap_or(0);
    let mut upto = 0;
    for (i, (_, tenths)) in ROUTES.iter().enumerate() {
        upto += tenths;
        if slot < upto {
            return i;
        }
    }
    0
}

/// Everything a request needs: the address, the session, the token, the vouchers.
struct Target {
    addr: SocketAddr,
    host: String,
    /// `gk_session=…; gk_lang=…` of the signed-in portal user.
    cookies: String,
    home: String,
    /// The CSRF token of the signed-in session's forms.
    csrf: String,
    /// `Bearer …` of finance's maker.
    bearer: String,
    list: String,
    details: Vec<String>,
}

/// One answered (or failed) request.
struct Outcome {
    route: usize,
    /// The status, or `None` when no answer came (connection error, timeout).
    status: Result<StatusCode, &'static str>,
    latency: Duration,
}

/// Runs the benchmark and prints its figures.
///
/// # Errors
/// The demo cannot be opened or served, signing in fails, the options are out of range.
pub fn run(options: HttpBench) -> anyhow::Result<()> {
    ensure!(
        (1..=100_000).contains(&options.rate),
        "--rate must be 1 to 100000"
    );
    ensure!(
        (1..=3_600).contains(&options.seconds),
        "--seconds must be 1 to 3600"
    );
    ensure!(
        (1..=1_024).contains(&options.connections),
        "--connections must be 1 to 1024"
    );
    let dir = std::env::temp_dir().join(format!("guoku-bench-http-{}", std::process::id()));
    let server = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let outcome = run_in(&server, &dir, options);
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    outcome
}

fn run_in(
    server: &tokio::runtime::Runtime,
    dir: &std::path::Path,
    options: HttpBench,
) -> anyhow::Result<()> {
    let setup = Instant::now();
    let (demo, vouchers) = server.block_on(open_demo(dir, options.suite))?;
    let (table, handed) = TokenTable::with_random_tokens(demo_principals(&demo));
    let finance = demo.finance.org_code().to_owned();
    let maker = format!("{finance}-maker");
    let bearer = handed
        .iter()
        .find(|(p, _)| p.login == maker)
        .map(|(_, token)| format!("Bearer {}", token.expose()))
        .context("the demo has no finance maker")?;
    let listener = server.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = watch::channel(false);
    let serving = server.spawn(guoku_node::serve::serve_demo_api(
        listener,
        demo.clone(),
        table,
        stopped,
    ));

    let total = u64::from(options.rate) * u64::from(options.seconds);
    outln!(
        "http: open-loop {} requests/s for {} s ({total} requests) over {} keep-alive connections; demo province ({:?} suite, SQLite), {} vouchers seeded",
        options.rate,
        options.seconds,
        options.connections,
        options.suite,
        vouchers.len()
    );
    outln!(
        "  mix per 10 requests: {}",
        ROUTES
            .iter()
            .map(|(name, tenths)| format!("{tenths} {name}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    outln!(
        "  (the POST is the portal's language switch: CSRF-checked, changes no record; every API POST moves a draft or a voucher, so the API part is reads only)"
    );

    // The client: its own thread and runtime.
    let finance_for_client = finance.clone();
    let client = std::thread::Builder::new()
        .name("bench-http-client".into())
        .spawn(move || -> anyhow::Result<Report> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                let target =
                    prepare(addr, &finance_for_client, &maker, bearer, &vouchers).await?;
                outln!(
                    "  setup {:.1} s (not counted): demo opened, vouchers issued, {maker} signed in with password and code",
                    setup.elapsed().as_secs_f64()
                );
                drive(Arc::new(target), options).await
            })
        })?;
    let report = client
        .join()
        .map_err(|_| anyhow::anyhow!("the client thread panicked"))?;
    let _ = stop.send(true);
    let _ = server.block_on(serving);
    print_report(&report?, options);
    Ok(())
}

/// The demo, its portal users seeded and `SEEDED_VOUCHERS` direct payments issued: the
/// vouchers' paths.
async fn open_demo(
    dir: &std::path::Path,
    suite: Suite,
) -> anyhow::Result<(Arc<Demo>, Vec<String>)> {
    let clock: Clock = Arc::new(OffsetDateTime::now_utc);
    let demo = Demo::open(
        &DemoOptions {
            dir: dir.to_path_buf(),
            fresh: true,
            suite,
            postgres: None,
        },
        clock.clone(),
    )
    .await?;
    seed_demo_users(&demo).await?;
    let offset = time::UtcOffset::from_hms(BUSINESS_OFFSET_HOURS, 0, 0)?;
    let mut paths = Vec::with_capacity(SEEDED_VOUCHERS);
    for n in 0..SEEDED_VOUCHERS {
        let units = &demo.province.units;
        let unit = &units[n % units.len()];
        let now = clock();
        let today = Party::<InMemory>::business_date(now);
        let month = u8::from(now.to_offset(offset).month());
        let amount = guoku_domain::Amount::from_fen(10_000 + n as i64)?;
        let voucher = demo.direct_voucher(&unit.code, amount, &Payee::demo(n as u64), today)?;
        let key = voucher.key();
        let indicator = demo.indicator(&unit.code)?;
        demo.finance
            .issue_direct(
                voucher,
                &indicator,
                month,
                demo.province.direct_bank().code,
                "bench-http",
            )
            .await?;
        paths.push(format!(
            "/api/v1/vouchers/{}/{}/{}/{}",
            key.adm_div_code, key.st_year, key.vt_code, key.voucher_no
        ));
    }
    Ok((Arc::new(demo), paths))
}

// ----- a small HTTP/1.1 client ------------------------------------------------------------

/// An answer: status, `Set-Cookie` pairs, body.
struct Answer {
    status: StatusCode,
    cookies: Vec<(String, String)>,
    location: Option<String>,
    body: Bytes,
}

impl Answer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

async fn connect(addr: SocketAddr) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

async fn send(
    sender: &mut SendRequest<Full<Bytes>>,
    request: Request<Full<Bytes>>,
) -> anyhow::Result<Answer> {
    sender.ready().await?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let cookies = response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next()?.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let location = response
        .headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = http_body_util::Limited::new(response.into_body(), BODY_MAX_BYTES)
        .collect()
        .await
        .map_err(|e| anyhow::anyhow!("reading an answer: {e}"))?
        .to_bytes();
    Ok(Answer {
        status,
        cookies,
        location,
        body,
    })
}

fn get(host: &str, path: &str, cookies: &str, bearer: Option<&str>) -> Request<Full<Bytes>> {
    let mut request = Request::builder()
        .method(Method::GET)
        .uri(path)
        .header(header::HOST, host);
    if !cookies.is_empty() {
        request = request.header(header::COOKIE, cookies);
    }
    if let Some(bearer) = bearer {
        request = request.header(header::AUTHORIZATION, bearer);
    }
    request
        .body(Full::new(Bytes::new()))
        .expect("a well-formed request")
}

/// A form posted from the portal's own page, as a browser posts it.
fn post_form(
    host: &str,
    path: &str,
    cookies: &str,
    fields: &[(&str, &str)],
) -> Request<Full<Bytes>> {
    let body = fields
        .iter()
        .map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(header::HOST, host)
        .header(header::ORIGIN, format!("http://{host}"))
        .header("sec-fetch-site", "same-origin")
        .header(header::COOKIE, cookies)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(body)))
        .expect("a well-formed request")
}

/// `application/x-www-form-urlencoded` escaping of one value. (Written here because the
/// values are a few ASCII codes and tokens; the portal parses them with serde_urlencoded.)
fn form_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                char::from(b).to_string()
            }
            b' ' => "+".to_owned(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The CSRF token of the form posting to `action` in `page`.
fn csrf_of(page: &str, action: &str) -> anyhow::Result<String> {
    let form = page
        .find(&format!("action=\"{action}\""))
        .with_context(|| format!("no form posting to {action}"))?;
    let marker = "name=\"csrf\" value=\"";
    let start = page[form..]
        .find(marker)
        .context("a form without its CSRF token")?
        + form
        + marker.len();
    let end = page[start..].find('"').context("an unterminated token")? + start;
    Ok(page[start..end].to_owned())
}

fn cookie_header(jar: &BTreeMap<String, String>) -> String {
    jar.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Sends `request`, keeping the cookies the answer sets in `jar`.
async fn step(
    c: &mut SendRequest<Full<Bytes>>,
    jar: &mut BTreeMap<String, String>,
    request: Request<Full<Bytes>>,
) -> anyhow::Result<Answer> {
    let answer = send(c, request).await?;
    for (k, v) in &answer.cookies {
        jar.insert(k.clone(), v.clone());
    }
    Ok(answer)
}

/// Signs the finance maker in through the portal's forms and finds what the requests read.
async fn prepare(
    addr: SocketAddr,
    finance: &str,
    login: &str,
    bearer: String,
    vouchers: &[String],
) -> anyhow::Result<Target> {
    let host = addr.to_string();
    let mut c = connect(addr).await?;
    let mut jar = BTreeMap::new();
    let form = step(&mut c, &mut jar, get(&host, "/login", "", None)).await?;
    ensure!(form.status == StatusCode::OK, "GET /login: {}", form.status);
    let csrf = csrf_of(&form.text(), "/login")?;
    let request = post_form(
        &host,
        "/login",
        &cookie_header(&jar),
        &[
            ("csrf", &csrf),
            ("org", finance),
            ("login", login),
            ("password", DEMO_PASSWORD),
        ],
    );
    let answer = step(&mut c, &mut jar, request).await?;
    ensure!(
        answer.status == StatusCode::SEE_OTHER && answer.location.as_deref() == Some("/login/totp"),
        "the password was refused: {}",
        answer.status
    );
    let request = get(&host, "/login/totp", &cookie_header(&jar), None);
    let form = step(&mut c, &mut jar, request).await?;
    let csrf = csrf_of(&form.text(), "/login/totp")?;
    let now = u64::try_from(OffsetDateTime::now_utc().unix_timestamp())?;
    let code = demo_totp_secret(login).code_at(now);
    let request = post_form(
        &host,
        "/login/totp",
        &cookie_header(&jar),
        &[("csrf", &csrf), ("code", &code)],
    );
    let answer = step(&mut c, &mut jar, request).await?;
    let home = format!("/o/{finance}");
    ensure!(
        answer.status == StatusCode::SEE_OTHER && answer.location.as_deref() == Some(home.as_str()),
        "the code was refused: {}",
        answer.status
    );
    jar.insert("gk_lang".into(), "zh".into());
    let cookies = cookie_header(&jar);
    let page = send(&mut c, get(&host, &home, &cookies, None)).await?;
    ensure!(page.status == StatusCode::OK, "GET {home}: {}", page.status);
    let csrf = csrf_of(&page.text(), "/lang")?;

    // The list asks for the vouchers in the state the seeded ones are in.
    let first = vouchers.first().context("no voucher seeded")?;
    let detail = send(&mut c, get(&host, first, "", Some(&bearer))).await?;
    ensure!(
        detail.status == StatusCode::OK,
        "GET {first}: {} {}",
        detail.status,
        detail.text()
    );
    let json: serde_json::Value = serde_json::from_slice(&detail.body)?;
    let state = find_status_code(&json).with_context(|| format!("no status code in {json}"))?;
    let list = format!("/api/v1/vouchers?vt_code=5201&state={state}&limit=20");
    let page = send(&mut c, get(&host, &list, "", Some(&bearer))).await?;
    ensure!(
        page.status == StatusCode::OK,
        "GET {list}: {} {}",
        page.status,
        page.text()
    );
    Ok(Target {
        addr,
        host,
        cookies,
        home,
        csrf,
        bearer,
        list,
        details: vouchers.to_vec(),
    })
}

/// The voucher's status code (状态查询) in a detail answer: `status.code`, wherever the
/// voucher's view sits in it.
fn find_status_code(v: &serde_json::Value) -> Option<i64> {
    if let Some(code) = v
        .get("status")
        .and_then(|s| s.get("code"))
        .and_then(serde_json::Value::as_i64)
    {
        return Some(code);
    }
    match v {
        serde_json::Value::Object(map) => map.values().find_map(find_status_code),
        serde_json::Value::Array(items) => items.iter().find_map(find_status_code),
        _ => None,
    }
}

fn request_for(target: &Target, n: u64) -> (usize, Request<Full<Bytes>>) {
    let route = route_of(n);
    let host = target.host.as_str();
    let request = match route {
        0 => get(host, "/healthz", "", None),
        1 => get(host, &target.list, "", Some(&target.bearer)),
        2 => {
            let i = usize::try_from(n / 10).unwrap_or(0) % target.details.len();
            get(host, &target.details[i], "", Some(&target.bearer))
        }
        3 => get(host, &target.home, &target.cookies, None),
        4 => get(host, "/metrics", "", None),
        5 => get(host, "/assets/portal.css", "", None),
        _ => post_form(
            host,
            "/lang",
            &target.cookies,
            &[
                ("csrf", &target.csrf),
                ("lang", "zh"),
                ("next", &target.home),
            ],
        ),
    };
    (route, request)
}

// ----- the load ----------------------------------------------------------------------------

/// What a run measured.
struct Report {
    outcomes: Vec<Outcome>,
    elapsed: Duration,
    cpu: Duration,
}

/// Sends `rate × seconds` requests, each at its due time, over the connections.
async fn drive(target: Arc<Target>, options: HttpBench) -> anyhow::Result<Report> {
    let total = u64::from(options.rate) * u64::from(options.seconds);
    let interval = Duration::from_secs(1).as_nanos() / u128::from(options.rate);
    let (due_tx, due_rx) = mpsc::unbounded_channel::<(u64, Instant)>();
    let due_rx = Arc::new(Mutex::new(due_rx));
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Outcome>();
    let mut senders = Vec::with_capacity(options.connections);
    for _ in 0..options.connections {
        senders.push(connect(target.addr).await?);
    }
    let cpu0 = cpu_time::ProcessTime::now();
    let start = Instant::now() + Duration::from_millis(20);
    let due = move |n: u64| {
        let nanos = u64::try_from(u128::from(n) * interval).unwrap_or(u64::MAX);
        start + Duration::from_nanos(nanos)
    };
    let mut workers = Vec::with_capacity(options.connections);
    for mut sender in senders {
        let (target, due_rx, done_tx) = (target.clone(), due_rx.clone(), done_tx.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let next = due_rx.lock().await.recv().await;
                let Some((n, at)) = next else { break };
                let (route, request) = request_for(&target, n);
                let answer =
                    tokio::time::timeout(REQUEST_TIMEOUT, send(&mut sender, request)).await;
                let status = match answer {
                    Ok(Ok(answer)) => Ok(answer.status),
                    Ok(Err(_)) => Err("connection"),
                    Err(_) => Err("timeout"),
                };
                let broken = status.is_err();
                let _ = done_tx.send(Outcome {
                    route,
                    status,
                    latency: at.elapsed(),
                });
                if broken {
                    // A new connection for the next request (the old one may be stuck).
                    match connect(target.addr).await {
                        Ok(fresh) => sender = fresh,
                        Err(_) => break,
                    }
                }
            }
        }));
    }
    drop(done_tx);

    // The schedule: every request released at its due time (those due meanwhile at once).
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template("  {bar:40} {pos}/{len} answered {per_sec}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let scheduler = tokio::spawn(async move {
        let mut n = 0;
        while n < total {
            let now = Instant::now();
            while n < total && due(n) <= now {
                if due_tx.send((n, due(n))).is_err() {
                    return;
                }
                n += 1;
            }
            if n < total {
                tokio::time::sleep_until(due(n).into()).await;
            }
        }
    });
    let mut outcomes = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    let mut last_line = Instant::now();
    while let Some(outcome) = done_rx.recv().await {
        outcomes.push(outcome);
        bar.inc(1);
        if bar.is_hidden() && last_line.elapsed() >= Duration::from_secs(1) {
            // Not a terminal: a line a second instead of the bar.
            last_line = Instant::now();
            eprintln!("  {} of {total} answered", outcomes.len());
        }
        if outcomes.len() as u64 == total {
            break;
        }
    }
    bar.finish_and_clear();
    let elapsed = start.elapsed();
    let cpu = cpu0.elapsed();
    scheduler.abort();
    for worker in workers {
        worker.abort();
    }
    if (outcomes.len() as u64) < total {
        bail!(
            "only {} of {total} requests were answered or failed: the connections were lost",
            outcomes.len()
        );
    }
    Ok(Report {
        outcomes,
        elapsed,
        cpu,
    })
}

// ----- the figures -------------------------------------------------------------------------

/// The `q` quantile (0..=1) of sorted latencies, in milliseconds (nearest rank).
fn quantile_ms(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1].as_secs_f64() * 1e3
}

fn print_row(name: &str, latencies: &mut [Duration]) {
    latencies.sort_unstable();
    outln!(
        "  {name:<30} {:>7} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2}",
        latencies.len(),
        quantile_ms(latencies, 0.50),
        quantile_ms(latencies, 0.90),
        quantile_ms(latencies, 0.99),
        quantile_ms(latencies, 0.999),
        latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
    );
}

fn print_report(report: &Report, options: HttpBench) {
    let count = report.outcomes.len();
    let wall = report.elapsed.as_secs_f64().max(f64::EPSILON);
    outln!(
        "  sent {count} requests in {wall:.2} s: achieved {:.1} requests/s (asked {})",
        count as f64 / wall,
        options.rate
    );
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    for o in &report.outcomes {
        match o.status {
            Ok(s) if s.is_success() || s.is_redirection() => {}
            Ok(s) => {
                *errors
                    .entry(format!("{} {}", ROUTES[o.route].0, s.as_u16()))
                    .or_default() += 1
            }
            Err(why) => {
                *errors
                    .entry(format!("{} {why}", ROUTES[o.route].0))
                    .or_default() += 1
            }
        }
    }
    if errors.is_empty() {
        outln!("  errors: none");
    } else {
        let listed: Vec<String> = errors.iter().map(|(k, n)| format!("{k} ×{n}")).collect();
        outln!(
            "  errors: {} ({})",
            errors.values().sum::<usize>(),
            listed.join(", ")
        );
    }
    outln!(
        "  {:<30} {:>7} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "latency from due time, ms",
        "count",
        "p50",
        "p90",
        "p99",
        "p999",
        "max"
    );
    let mut all: Vec<Duration> = report.outcomes.iter().map(|o| o.latency).collect();
    for (i, (name, _)) in ROUTES.iter().enumerate() {
        let mut of_route: Vec<Duration> = report
            .outcomes
            .iter()
            .filter(|o| o.route == i)
            .map(|o| o.latency)
            .collect();
        print_row(name, &mut of_route);
    }
    print_row("overall", &mut all);
    let cpu = report.cpu.as_secs_f64();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    outln!(
        "  CPU of the process (server and client) during the run: {cpu:.2} s in {wall:.2} s = {:.0}% of one core, {:.0}% of the machine's {cores}",
        100.0 * cpu / wall,
        100.0 * cpu / wall / cores as f64
    );
    let p99 = quantile_ms(&all, 0.99);
    outln!(
        "  p99 {p99:.2} ms against the target of ≤ {P99_TARGET_MS} ms on the 2-core machine → {}",
        if p99 <= P99_TARGET_MS {
            "met"
        } else {
            "MISSED"
        }
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_spreads_each_route_by_its_tenths() {
        let mut counts = [0u32; ROUTES.len()];
        for n in 0..1_000 {
            counts[route_of(n)] += 1;
        }
        let expected: Vec<u32> = ROUTES.iter().map(|(_, tenths)| tenths * 100).collect();
        assert_eq!(counts.to_vec(), expected);
        assert_eq!(ROUTES.iter().map(|(_, t)| t).sum::<u32>(), 10);
    }

    #[test]
    fn quantiles_take_the_nearest_rank() {
        let sorted: Vec<Duration> = (1..=1_000).map(Duration::from_millis).collect();
        assert_eq!(quantile_ms(&sorted, 0.5), 500.0);
        assert_eq!(quantile_ms(&sorted, 0.99), 990.0);
        assert_eq!(quantile_ms(&sorted, 0.999), 999.0);
        assert_eq!(quantile_ms(&sorted[..1], 0.999), 1.0);
        assert_eq!(quantile_ms(&[], 0.5), 0.0);
    }

    #[test]
    fn form_values_are_escaped_and_tokens_found() {
        assert_eq!(form_encode("a b&c=d/é"), "a+b%26c%3Dd%2F%C3%A9");
        let page = r#"<form action="/x"><input name="csrf" value="aa"></form><form method="post" action="/lang"><input type="hidden" name="csrf" value="0f1e"></form>"#;
        assert_eq!(csrf_of(page, "/lang").unwrap(), "0f1e");
        assert!(csrf_of(page, "/logout").is_err());
    }
}
