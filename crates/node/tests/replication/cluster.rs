//! Two throwaway PostgreSQL clusters for the disaster-recovery test: a primary (主库) and a
//! synchronous standby (备库) made from it with `pg_basebackup -R -X stream`, each on a free
//! loopback port with its unix socket in a temporary directory.
//!
//! The PostgreSQL programs are found on `PATH` or in `/usr/lib/postgresql/<version>/bin`
//! (newest first); as root they run as the `postgres` user through `runuser`. Dropping the
//! [`Pair`] stops both clusters with `pg_ctl stop -m immediate` and removes the directory,
//! also when the test panics.

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The programs a pair needs.
const TOOLS: [&str; 4] = ["initdb", "pg_ctl", "pg_basebackup", "postgres"];
/// The standby's name (its `cluster_name`, which its WAL receiver reports as
/// `application_name`) and its replication slot on the primary.
pub const STANDBY_NAME: &str = "guoku_standby";
/// How often a condition is polled.
const POLL: Duration = Duration::from_millis(50);
/// Lines of each server log printed on failure.
const TAIL_LINES: usize = 30;

/// Where the PostgreSQL programs are, and whether to run them as `postgres`.
#[derive(Clone, Debug)]
pub struct PgBin {
    dir: PathBuf,
    as_postgres: bool,
}

impl PgBin {
    /// The first directory holding every program the pair needs: those of `initdb` on
    /// `PATH` (symbolic links followed), then `/usr/lib/postgresql/*/bin`, newest first.
    ///
    /// # Errors
    /// Why none was found, or why the programs cannot be run (root without a `postgres`
    /// user or `runuser`).
    pub fn find() -> Result<PgBin, String> {
        let mut candidates = Vec::new();
        if let Some(path) = std::env::var_os("PATH") {
            for dir in std::env::split_paths(&path) {
                let initdb = dir.join("initdb");
                if initdb.is_file() {
                    let real = fs::canonicalize(&initdb).unwrap_or(initdb);
                    if let Some(parent) = real.parent() {
                        candidates.push(parent.to_owned());
                    }
                }
            }
        }
        let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter_map(|e| {
                        let version = e.file_name().to_str()?.parse().ok()?;
                        Some((version, e.path().join("bin")))
                    })
                    .collect()
            })
            .unwrap_or_default();
        versions.sort_by_key(|v| std::cmp::Reverse(v.0));
        candidates.extend(versions.into_iter().map(|(_, dir)| dir));
        let dir = candidates
            .into_iter()
            .find(|dir| TOOLS.iter().all(|t| dir.join(t).is_file()))
            .ok_or_else(|| {
                format!(
                    "no directory holds all of {TOOLS:?} (looked on PATH and in \
                     /usr/lib/postgresql/*/bin)"
                )
            })?;
        let as_postgres = is_root();
        if as_postgres {
            let user = Command::new("id").args(["-u", "postgres"]).output();
            if !user.is_ok_and(|o| o.status.success()) {
                return Err("running as root, but there is no postgres user".into());
            }
            let runuser = Command::new("runuser").arg("--help").output();
            if runuser.is_err() {
                return Err("running as root, but runuser is missing".into());
            }
        }
        Ok(PgBin { dir, as_postgres })
    }

    /// The program `tool`, run as `postgres` when this process is root.
    fn command(&self, tool: &str) -> Command {
        let program = self.dir.join(tool);
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        }
    }

    /// Runs `tool` with `args`; its output, or what it said when it failed.
    fn run(&self, tool: &str, args: &[&str]) -> Result<Output, String> {
        let output = self
            .command(tool)
            .args(args)
            .output()
            .map_err(|e| format!("{tool}: {e}"))?;
        if output.status.success() {
            Ok(output)
        } else {
            Err(format!(
                "{tool} {args:?} failed ({}): {}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    }

    /// The directory the programs were found in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Whether this process runs as root (the owner of `/proc/self`, else `id -u`).
fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    match fs::metadata("/proc/self") {
        Ok(m) => m.uid() == 0,
        Err(_) => Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0"),
    }
}

/// One cluster: its data directory, port and server log.
#[derive(Clone, Debug)]
pub struct Cluster {
    pub name: &'static str,
    pub data: PathBuf,
    pub port: u16,
    pub log: PathBuf,
}

impl Cluster {
    /// The URL the node's stores use (the `postgres` database, trust on loopback).
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn running(&self) -> bool {
        self.data.join("postmaster.pid").exists()
    }

    /// The last lines of the server log.
    fn tail(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n")
    }
}

/// A row of the primary's `pg_stat_replication`.
#[derive(Clone, Debug)]
pub struct Replication {
    pub application_name: String,
    pub state: String,
    pub sync_state: String,
}

/// A primary and its synchronous standby, stopped and removed on drop.
pub struct Pair {
    bin: PgBin,
    pub primary: Cluster,
    pub standby: Cluster,
    dir: tempfile::TempDir,
}

impl Pair {
    /// Makes and starts both clusters (see the module documentation).
    ///
    /// # Errors
    /// The failing step's output; whatever was started is stopped again.
    pub fn start(bin: PgBin) -> Result<Pair, String> {
        let dir = tempfile::Builder::new()
            .prefix("guoku-repl.")
            .tempdir()
            .map_err(|e| format!("a temporary directory: {e}"))?;
        let cluster = |name: &'static str| Cluster {
            name,
            data: dir.path().join(name),
            port: free_port(),
            log: dir.path().join(format!("{name}.log")),
        };
        let primary = cluster("primary");
        let mut standby = cluster("standby");
        while standby.port == primary.port {
            standby.port = free_port();
        }
        let pair = Pair {
            primary,
            standby,
            bin,
            dir,
        };
        pair.make_primary()?;
        pair.make_standby()?;
        Ok(pair)
    }

    /// `initdb`, the primary's replication settings, and start.
    fn make_primary(&self) -> Result<(), String> {
        let root = self.dir.path();
        use std::os::unix::fs::PermissionsExt as _;
        fs::set_permissions(root, fs::Permissions::from_mode(0o755))
            .map_err(|e| format!("{}: {e}", root.display()))?;
        if self.bin.as_postgres {
            let chown = Command::new("chown")
                .arg("postgres")
                .arg(root)
                .output()
                .map_err(|e| format!("chown: {e}"))?;
            if !chown.status.success() {
                return Err(format!(
                    "chown postgres {}: {}",
                    root.display(),
                    String::from_utf8_lossy(&chown.stderr)
                ));
            }
        }
        let p = &self.primary;
        // --no-sync: the throwaway cluster's creation need not survive a power cut; what
        // the test checks (commits) is fsynced as in production.
        self.bin.run(
            "initdb",
            &[
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-D",
                &path_str(&p.data)?,
            ],
        )?;
        append(
            &p.data.join("postgresql.conf"),
            &format!(
                "\n# guoku disaster-recovery test: the primary (主库)\n\
                 listen_addresses = '127.0.0.1'\n\
                 port = {port}\n\
                 unix_socket_directories = '{socket}'\n\
                 wal_level = replica\n\
                 max_wal_senders = 4\n\
                 max_replication_slots = 4\n\
                 synchronous_commit = on\n\
                 synchronous_standby_names = '*'\n\
                 fsync = on\n\
                 shared_buffers = 32MB\n",
                port = p.port,
                socket = path_str(root)?,
            ),
        )?;
        append(
            &p.data.join("pg_hba.conf"),
            "\n# the standby streams over loopback\n\
             host replication postgres 127.0.0.1/32 trust\n",
        )?;
        self.pg_ctl_start(p)
    }

    /// `pg_basebackup -R -X stream` from the primary (with a replication slot), the
    /// standby's own port and name, and start.
    fn make_standby(&self) -> Result<(), String> {
        let (p, s) = (&self.primary, &self.standby);
        self.bin.run(
            "pg_basebackup",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &p.port.to_string(),
                "-U",
                "postgres",
                "-D",
                &path_str(&s.data)?,
                "-R",
                "-X",
                "stream",
                "-C",
                "-S",
                STANDBY_NAME,
                "-c",
                "fast",
                "--no-sync",
            ],
        )?;
        if !s.data.join("standby.signal").exists() {
            return Err("pg_basebackup -R wrote no standby.signal".into());
        }
        append(
            &s.data.join("postgresql.conf"),
            &format!(
                "\n# guoku disaster-recovery test: the standby (备库)\n\
                 port = {port}\n\
                 cluster_name = '{STANDBY_NAME}'\n\
                 hot_standby = on\n\
                 # Once promoted it is alone: no standby to wait for until one is attached.\n\
                 synchronous_standby_names = ''\n",
                port = s.port,
            ),
        )?;
        self.pg_ctl_start(s)
    }

    fn pg_ctl_start(&self, c: &Cluster) -> Result<(), String> {
        self.bin
            .run(
                "pg_ctl",
                &[
                    "-D",
                    &path_str(&c.data)?,
                    "-l",
                    &path_str(&c.log)?,
                    "-w",
                    "-t",
                    "60",
                    "start",
                ],
            )
            .map(drop)
            .map_err(|e| format!("{}: {e}\n{}", c.name, c.tail()))
    }

    /// Polls the primary until the standby streams and is synchronous
    /// (`pg_stat_replication.sync_state = 'sync'`), and checks the standby is in recovery.
    ///
    /// # Errors
    /// What the primary last reported, at `deadline`.
    pub async fn wait_synchronous(&self, deadline: Duration) -> Result<Replication, String> {
        let started = Instant::now();
        let primary = connect(&self.primary.url()).await?;
        let last = loop {
            let rows = primary
                .query(
                    "SELECT application_name, state, sync_state FROM pg_stat_replication",
                    &[],
                )
                .await
                .map_err(|e| format!("pg_stat_replication: {e}"))?;
            let rows: Vec<Replication> = rows
                .iter()
                .map(|r| Replication {
                    application_name: r.get(0),
                    state: r.get(1),
                    sync_state: r.get(2),
                })
                .collect();
            if let Some(r) = rows
                .iter()
                .find(|r| r.state == "streaming" && r.sync_state == "sync")
            {
                break Ok(r.clone());
            }
            if started.elapsed() > deadline {
                break Err(format!(
                    "the standby is not a streaming synchronous standby after {deadline:?}: \
                     {rows:?}\n{}",
                    self.log_tails()
                ));
            }
            tokio::time::sleep(POLL).await;
        }?;
        let standby = connect(&self.standby.url()).await?;
        let in_recovery: bool = standby
            .query_one("SELECT pg_is_in_recovery()", &[])
            .await
            .map_err(|e| format!("pg_is_in_recovery: {e}"))?
            .get(0);
        if !in_recovery {
            return Err("the standby is not in recovery".into());
        }
        Ok(last)
    }

    /// Kills the primary hard: `pg_ctl stop -m immediate` (every server process quits at
    /// once, no checkpoint: on disk, as after a crash).
    ///
    /// # Errors
    /// `pg_ctl`'s output.
    pub fn kill_primary(&self) -> Result<(), String> {
        let p = &self.primary;
        self.bin
            .run(
                "pg_ctl",
                &["-D", &path_str(&p.data)?, "-m", "immediate", "stop"],
            )
            .map(drop)
    }

    /// Promotes the standby (`SELECT pg_promote(wait => true)`) and checks it left recovery.
    ///
    /// # Errors
    /// What failed.
    pub async fn promote_standby(&self) -> Result<(), String> {
        let standby = connect(&self.standby.url()).await?;
        let promoted: bool = standby
            .query_one("SELECT pg_promote(wait => true, wait_seconds => 60)", &[])
            .await
            .map_err(|e| format!("pg_promote: {e}"))?
            .get(0);
        let in_recovery: bool = standby
            .query_one("SELECT pg_is_in_recovery()", &[])
            .await
            .map_err(|e| format!("pg_is_in_recovery: {e}"))?
            .get(0);
        if !promoted || in_recovery {
            return Err(format!(
                "the standby was not promoted (pg_promote: {promoted}, in recovery: \
                 {in_recovery})\n{}",
                self.standby.tail()
            ));
        }
        Ok(())
    }

    /// The end of both server logs, for a failure message.
    pub fn log_tails(&self) -> String {
        let mut out = String::new();
        for c in [&self.primary, &self.standby] {
            let _ = writeln!(
                out,
                "--- {} log ({}) ---\n{}",
                c.name,
                c.log.display(),
                c.tail()
            );
        }
        out
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        for c in [&self.standby, &self.primary] {
            if c.running()
                && let Ok(data) = path_str(&c.data)
            {
                let _ = self
                    .bin
                    .command("pg_ctl")
                    .args(["-D", &data, "-m", "immediate", "stop"])
                    .output();
            }
        }
        // The temporary directory is removed when `dir` drops, after this.
    }
}

/// A client of `url`, its connection driven on the runtime.
///
/// # Errors
/// Why it could not connect.
pub async fn connect(url: &str) -> Result<tokio_postgres::Client, String> {
    let (client, connection) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_postgres::connect(url, tokio_postgres::NoTls),
    )
    .await
    .map_err(|_| format!("{url}: connecting timed out"))?
    .map_err(|e| format!("{url}: {e}"))?;
    tokio::spawn(connection);
    Ok(client)
}

/// A loopback port nobody listens on now.
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn path_str(path: &Path) -> Result<String, String> {
    path.to_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("{} is not UTF-8", path.display()))
}

fn append(path: &Path, text: &str) -> Result<(), String> {
    fs::OpenOptions::new()
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| format!("{}: {e}", path.display()))
}
