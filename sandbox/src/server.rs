//! One mariadbd: its identity, its command line, starting it and waiting until it serves.
use std::ffi::OsString;
use std::fs::{self, File};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::client;
use crate::error::{Result, SandboxError};
use crate::template::{describe, prefixed, Binaries};

/// The role a server was started in. The live role may differ after a failover: ask the
/// server (`@@read_only`, `SHOW SLAVE STATUS`), as the proxy's monitor does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The writable primary (db1 in a fresh sandbox).
    Master,
    /// A read-only GTID replica of the master.
    Replica,
    /// A Galera node: every node of a Galera sandbox is writable and equal.
    Node,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Master => "master",
            Role::Replica => "replica",
            Role::Node => "node",
        })
    }
}

/// A sandbox server: where it lives and how it was started.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerInfo {
    /// db1 (the first master), db2, db3, ...
    pub name: String,
    /// Its TCP port on 127.0.0.1.
    pub port: u16,
    /// Its unique `server_id` (1 for db1, 2 for db2, ...).
    pub server_id: u32,
    /// `DIR/<name>`: error.log, socket, pid file and the datadir.
    pub dir: PathBuf,
    /// `DIR/<name>/data`.
    pub datadir: PathBuf,
    /// The role it was started in.
    pub role: Role,
    /// Its Galera ports (None for a replication server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub galera: Option<GaleraPorts>,
}

/// The ports a Galera node listens on besides its client port, all on 127.0.0.1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GaleraPorts {
    /// Group communication (`gmcast.listen_addr`, the address in `gcomm://`).
    pub gcomm: u16,
    /// Incremental state transfer receiver (`ist.recv_addr`).
    pub ist: u16,
    /// State snapshot transfer receiver (`wsrep_sst_receive_address`: the joiner's rsync daemon).
    pub sst: u16,
}

impl ServerInfo {
    /// `127.0.0.1:PORT`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `DIR/<name>/error.log`.
    pub fn error_log(&self) -> PathBuf {
        self.dir.join("error.log")
    }

    /// `DIR/<name>/mysqld.sock`.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("mysqld.sock")
    }

    /// `DIR/<name>/mysqld.pid`, written by mariadbd itself.
    pub fn pid_file(&self) -> PathBuf {
        self.dir.join("mysqld.pid")
    }

    /// Where mariadbd's stdout and stderr go (normally empty: it logs to error.log).
    pub(crate) fn output_log(&self) -> PathBuf {
        self.dir.join("mariadbd.out")
    }

    /// The pid in the pid file, if there is one.
    pub(crate) fn pid_from_file(&self) -> Option<u32> {
        fs::read_to_string(self.pid_file())
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }
}

/// The mariadbd command line for a server. Deterministic, so `start` after a kill uses
/// exactly the options of the first start.
pub(crate) fn mariadbd_args(info: &ServerInfo, buffer_pool_mb: u32) -> Vec<OsString> {
    let mut args = base_args(info, Some("root"), buffer_pool_mb);
    let owned = [
        "--report-host=127.0.0.1".into(),
        format!("--report-port={}", info.port),
        "--relay-log=relay-bin".into(),
        "--gtid-strict-mode=ON".into(),
        "--relay-log-recovery=ON".into(),
        "--rpl-semi-sync-master-enabled=ON".into(),
        "--rpl-semi-sync-slave-enabled=ON".into(),
        "--rpl-semi-sync-master-timeout=10000".into(),
        "--rpl-semi-sync-master-wait-point=AFTER_SYNC".into(),
        // A replica is a semi-sync master without replicas: with the default (ON) its SQL
        // thread would stall rpl_semi_sync_master_timeout on its first applied transaction.
        "--rpl-semi-sync-master-wait-no-slave=OFF".into(),
        // A replica notices a hung master within this many seconds (heartbeats every 1 s).
        "--slave-net-timeout=5".into(),
        // Every server starts read-only, as production servers should: a server that
        // restarts after a crash must not take writes before the proxy decides its role
        // (`up` makes the first master writable; after that, the proxy does).
        "--read-only=ON".into(),
        // After a crash, roll back binlogged transactions no replica acknowledged, so an
        // old master can rejoin as a replica instead of holding writes nobody else has.
        "--init-rpl-role=SLAVE".into(),
        // ... and make each InnoDB commit durable before the client's OK: with 1, MariaDB
        // syncs the binlog but leaves the InnoDB commit to be redone from it, and the
        // recovery above distrusts exactly that tail: an acknowledged write would go.
        "--innodb-flush-log-at-trx-commit=3".into(),
    ];
    args.extend(owned.into_iter().map(OsString::from));
    args
}

/// The options every sandbox server has, replication or Galera: its files under its
/// directory, 127.0.0.1 only, its server id, a row-based binlog that records what it
/// applies, and the limits and character set the tests rely on. `user`: `--user=`.
pub(crate) fn base_args(
    info: &ServerInfo,
    user: Option<&str>,
    buffer_pool_mb: u32,
) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["--no-defaults".into()];
    if let Some(user) = user {
        args.push(format!("--user={user}").into());
    }
    args.extend([
        prefixed("--datadir=", &info.datadir),
        prefixed("--socket=", &info.socket()),
        prefixed("--pid-file=", &info.pid_file()),
        prefixed("--log-error=", &info.error_log()),
    ]);
    let owned = [
        format!("--port={}", info.port),
        "--bind-address=127.0.0.1".into(),
        format!("--server-id={}", info.server_id),
        "--log-bin=mysql-bin".into(),
        "--binlog-format=ROW".into(),
        "--log-slave-updates=ON".into(),
        "--max-allowed-packet=256M".into(),
        "--max-connections=2000".into(),
        "--local-infile=ON".into(),
        "--character-set-server=utf8mb4".into(),
        "--collation-server=utf8mb4_general_ci".into(),
        "--skip-name-resolve".into(),
        "--performance-schema=OFF".into(),
        format!("--innodb-buffer-pool-size={buffer_pool_mb}M"),
    ];
    args.extend(owned.into_iter().map(OsString::from));
    args
}

/// Why a launch failed: a port taken between choosing it and binding it can be retried
/// with another port.
#[derive(Debug)]
pub(crate) enum LaunchError {
    /// mariadbd could not bind its port.
    PortInUse(SandboxError),
    /// Anything else.
    Other(SandboxError),
}

impl From<LaunchError> for SandboxError {
    fn from(e: LaunchError) -> SandboxError {
        match e {
            LaunchError::PortInUse(e) | LaunchError::Other(e) => e,
        }
    }
}

impl From<SandboxError> for LaunchError {
    fn from(e: SandboxError) -> LaunchError {
        LaunchError::Other(e)
    }
}

/// Starts mariadbd for `info` with `args` (from [`mariadbd_args`] or
/// [`crate::galera::galera_args`]) in its own process group (so it outlives this process
/// and a Ctrl-C aimed at it) and waits until it answers queries on its port.
pub(crate) fn launch(
    bins: &Binaries,
    info: &ServerInfo,
    args: Vec<OsString>,
    timeout: Duration,
) -> Result<Child, LaunchError> {
    let log_start = fs::metadata(info.error_log()).map_or(0, |m| m.len());
    let out_path = info.output_log();
    let out = File::options()
        .create(true)
        .append(true)
        .open(&out_path)
        .map_err(|e| SandboxError::io(format!("cannot open {}", out_path.display()), e))?;
    let err = out
        .try_clone()
        .map_err(|e| SandboxError::io(format!("cannot reopen {}", out_path.display()), e))?;
    let mut cmd = Command::new(&bins.mariadbd);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0);
    let mut child = cmd.spawn().map_err(|error| SandboxError::Spawn {
        command: describe(&cmd),
        error,
    })?;
    tracing::debug!(server = %info.name, pid = child.id(), port = info.port, "mariadbd spawned");
    match wait_ready(bins, info, &mut child, timeout) {
        Ok(()) => {
            tracing::debug!(server = %info.name, pid = child.id(), "mariadbd ready");
            Ok(child)
        }
        Err(reason) => {
            // Ours, just spawned: make sure it is not left half-started.
            let _ = child.kill();
            let _ = child.wait();
            let new_log = log_since(&info.error_log(), log_start);
            let error = SandboxError::ServerStart {
                server: info.name.clone(),
                reason,
                log: info.error_log(),
                log_tail: log_tail_text(&new_log, 20),
            };
            if new_log.contains("Address already in use") {
                Err(LaunchError::PortInUse(error))
            } else {
                Err(LaunchError::Other(error))
            }
        }
    }
}

/// Polls until the server on `info.port` is this datadir's mariadbd and answers a query.
fn wait_ready(
    bins: &Binaries,
    info: &ServerInfo,
    child: &mut Child,
    timeout: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, info.port));
    let want = info
        .datadir
        .to_string_lossy()
        .trim_end_matches('/')
        .to_string();
    let mut last = String::from("no connection yet");
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Err(format!("mariadbd exited ({status})")),
            Ok(None) => {}
            Err(e) => return Err(format!("cannot wait for mariadbd: {e}")),
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            let probe = client::query(
                bins,
                &info.name,
                info.port,
                "SELECT @@datadir",
                client::Output::Plain,
                Some(Duration::from_secs(5)),
            );
            match probe {
                Ok(out) if out.trim().trim_end_matches('/') == want => return Ok(()),
                Ok(out) => {
                    last = format!(
                        "port {} answers for another datadir ({})",
                        info.port,
                        out.trim()
                    )
                }
                Err(e) => last = e.to_string(),
            }
        }
        if Instant::now() >= deadline {
            return Err(format!("not ready after {timeout:?} (last: {last})"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Free TCP ports on 127.0.0.1, all distinct (the listeners are held together).
pub(crate) fn free_ports(n: usize) -> Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| SandboxError::io("cannot bind 127.0.0.1:0 to find a free port", e))?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| SandboxError::io("cannot read a bound port", e))
}

/// The text appended to a log since byte `offset`.
pub(crate) fn log_since(path: &Path, offset: u64) -> String {
    let bytes = fs::read(path).unwrap_or_default();
    let start = usize::try_from(offset).unwrap_or(0).min(bytes.len());
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

pub(crate) fn log_tail_text(text: &str, lines: usize) -> String {
    if text.trim().is_empty() {
        return "(nothing new in the log)".into();
    }
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
