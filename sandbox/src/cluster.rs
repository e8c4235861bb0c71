//! A sandbox cluster: bringing it up and finding it again.
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Result, SandboxError};
use crate::process::{check_ours, proc_state, ProcState};
use crate::server::{free_ports, launch, mariadbd_args, LaunchError, Role, ServerInfo};
use crate::state::{write_proxy_config, SandboxState, ServerRecord, CONFIG_FILE, STATE_FILE};
use crate::template::{copy_dir, ensure_template, Binaries};

/// How long a server may take to accept connections after it is spawned (InnoDB crash
/// recovery after a SIGKILL included).
pub(crate) const START_TIMEOUT: Duration = Duration::from_secs(120);
/// How long `up` waits for replication to run on every replica.
const UP_REPLICATION_TIMEOUT: Duration = Duration::from_secs(60);
/// sockaddr_un holds 108 bytes including the terminating NUL.
pub(crate) const MAX_SOCKET_PATH: usize = 107;

/// What kind of cluster a sandbox runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClusterKind {
    /// One master and N GTID replicas with semi-synchronous replication.
    #[default]
    Replication,
    /// N equal Galera nodes (multi-master, synchronous), rsync SST, wsrep GTID mode.
    Galera,
}

impl ClusterKind {
    /// The name used in sandbox.json and in the proxy config's `[cluster] kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            ClusterKind::Replication => "replication",
            ClusterKind::Galera => "galera",
        }
    }
}

/// Options for [`Sandbox::up`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpOptions {
    /// The sandbox directory (created if missing; made absolute).
    pub dir: PathBuf,
    /// Replication (the default) or Galera.
    pub kind: ClusterKind,
    /// How many replicas besides the master (replication only).
    pub replicas: usize,
    /// How many Galera nodes (Galera only).
    pub nodes: usize,
    /// The port written into the proxy config's `listen`; 0 picks a free port.
    pub proxy_port: u16,
    /// innodb_buffer_pool_size of every server, in MiB.
    pub buffer_pool_mb: u32,
}

impl UpOptions {
    /// Replication with two replicas, a free proxy port, a 64 MiB buffer pool.
    pub fn new(dir: impl Into<PathBuf>) -> UpOptions {
        UpOptions {
            dir: dir.into(),
            kind: ClusterKind::Replication,
            replicas: 2,
            nodes: 3,
            proxy_port: 0,
            buffer_pool_mb: 64,
        }
    }

    /// A Galera cluster of `nodes` nodes, a free proxy port, a 64 MiB buffer pool.
    pub fn galera(dir: impl Into<PathBuf>, nodes: usize) -> UpOptions {
        UpOptions {
            kind: ClusterKind::Galera,
            nodes,
            ..UpOptions::new(dir)
        }
    }
}

/// A running (or stopped) sandbox cluster. Cheap to share between threads: every method
/// takes `&self`.
///
/// The servers outlive this value and the process that started them; call
/// [`Sandbox::down`] (or hold a [`SandboxGuard`](crate::SandboxGuard)) to stop them.
#[derive(Debug)]
pub struct Sandbox {
    pub(crate) bins: Binaries,
    pub(crate) kind: ClusterKind,
    pub(crate) dir: PathBuf,
    pub(crate) proxy_port: u16,
    pub(crate) buffer_pool_mb: u32,
    pub(crate) servers: Vec<ServerInfo>,
    pub(crate) runtime: Mutex<Runtime>,
}

/// What changes while a sandbox runs.
#[derive(Debug)]
pub(crate) struct Runtime {
    /// The pid of each server's last start (index as in `servers`).
    pub pids: Vec<Option<u32>>,
    /// mariadbd processes this process spawned, kept to reap them when they exit.
    pub children: Vec<Child>,
}

impl Sandbox {
    /// Starts a master (db1) and `opts.replicas` replicas (db2, ...) under `opts.dir`,
    /// writes `DIR/sandbox.json` and `DIR/kohaproxy.toml`, and returns once replication
    /// runs on every replica. A directory holding a stopped sandbox is reused (its
    /// server directories are replaced); one holding a running sandbox is refused.
    ///
    /// With `opts.kind` [`ClusterKind::Galera`] it starts `opts.nodes` Galera nodes
    /// instead (db1 bootstraps, the others join one at a time by rsync SST) and returns
    /// once every node is Synced in one Primary component; see [`crate::galera`].
    pub fn up(opts: &UpOptions) -> Result<Sandbox> {
        if opts.kind == ClusterKind::Galera {
            return Sandbox::up_galera(opts);
        }
        if opts.replicas > 32 {
            return Err(SandboxError::InvalidOptions(format!(
                "{} replicas is too many for a sandbox (at most 32)",
                opts.replicas
            )));
        }
        if opts.buffer_pool_mb < 8 {
            return Err(SandboxError::InvalidOptions(
                "the buffer pool must be at least 8 MiB".into(),
            ));
        }
        let bins = Binaries::locate()?;
        fs::create_dir_all(&opts.dir)
            .map_err(|e| SandboxError::io(format!("cannot create {}", opts.dir.display()), e))?;
        let dir = fs::canonicalize(&opts.dir)
            .map_err(|e| SandboxError::io(format!("cannot resolve {}", opts.dir.display()), e))?;
        clear_stopped_sandbox(&dir)?;
        let template = ensure_template(&bins)?;

        let count = opts.replicas + 1;
        let mut ports = free_ports(count + usize::from(opts.proxy_port == 0))?;
        let proxy_port = match opts.proxy_port {
            0 => ports.pop().unwrap_or_default(),
            p => p,
        };
        let infos = plan_servers(&dir, &ports[..count], ClusterKind::Replication)?;
        // Recorded before anything starts, so that a failed `up` leaves a stopped sandbox
        // that the next `up` may replace.
        SandboxState {
            kind: ClusterKind::Replication,
            dir: dir.clone(),
            proxy_port,
            buffer_pool_mb: opts.buffer_pool_mb,
            servers: infos
                .iter()
                .map(|info| ServerRecord {
                    info: info.clone(),
                    pid: None,
                })
                .collect(),
        }
        .save()?;

        let launched: Vec<Result<(ServerInfo, Child)>> = std::thread::scope(|s| {
            let handles: Vec<_> = infos
                .into_iter()
                .map(|info| {
                    let (bins, template) = (&bins, &template);
                    s.spawn(move || launch_fresh(bins, template, info, opts.buffer_pool_mb))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(SandboxError::io(
                            "starting a server",
                            std::io::Error::other("the launching thread panicked"),
                        ))
                    })
                })
                .collect()
        });
        let mut servers = Vec::with_capacity(count);
        let mut children = Vec::with_capacity(count);
        let mut first_error = None;
        for result in launched {
            match result {
                Ok((info, child)) => {
                    servers.push(info);
                    children.push(child);
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(error) = first_error {
            for mut child in children {
                let _ = child.kill(); // our own, just started
                let _ = child.wait();
            }
            return Err(error);
        }

        let sandbox = Sandbox {
            bins,
            kind: ClusterKind::Replication,
            dir,
            proxy_port,
            buffer_pool_mb: opts.buffer_pool_mb,
            runtime: Mutex::new(Runtime {
                pids: children.iter().map(|c| Some(c.id())).collect(),
                children,
            }),
            servers,
        };
        if let Err(error) = sandbox.finish_up() {
            sandbox.abort();
            return Err(error);
        }
        Ok(sandbox)
    }

    /// Points the replicas at the master, waits for replication, writes the proxy config.
    fn finish_up(&self) -> Result<()> {
        self.save()?;
        let master = self.master();
        let change = format!(
            "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={}, MASTER_USER='repl', \
             MASTER_PASSWORD='repl', MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1, \
             MASTER_HEARTBEAT_PERIOD=1; START SLAVE",
            master.port
        );
        self.sql(&master.name, "SET GLOBAL read_only = OFF")?;
        for replica in self.servers.iter().filter(|s| s.role == Role::Replica) {
            self.sql(&replica.name, &change)?;
        }
        tracing::debug!("replication configured");
        self.wait_replication(UP_REPLICATION_TIMEOUT)?;
        tracing::debug!("replication running");
        write_proxy_config(&self.dir, self.kind, self.proxy_port, &self.servers)?;
        Ok(())
    }

    /// Kills (SIGKILL) every server this value started: for a failed `up`.
    pub(crate) fn abort(&self) {
        let mut rt = self.lock();
        for child in &mut rt.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        rt.children.clear();
        rt.pids.iter_mut().for_each(|p| *p = None);
        drop(rt);
        let _ = self.save();
    }

    /// Opens the sandbox recorded in `DIR/sandbox.json` (running or not).
    pub fn open(dir: impl AsRef<Path>) -> Result<Sandbox> {
        let dir = dir.as_ref();
        let dir = fs::canonicalize(dir).map_err(|e| {
            SandboxError::io(
                format!("cannot open sandbox directory {}", dir.display()),
                e,
            )
        })?;
        let state = SandboxState::load(&dir)?;
        let bad = |reason: String| SandboxError::State {
            path: dir.join(STATE_FILE),
            reason,
        };
        match state.kind {
            ClusterKind::Replication => {
                let masters = state
                    .servers
                    .iter()
                    .filter(|s| s.info.role == Role::Master)
                    .count();
                if masters != 1 {
                    return Err(bad(format!("expected one master, found {masters}")));
                }
            }
            ClusterKind::Galera => {
                if state.servers.is_empty() {
                    return Err(bad("a Galera sandbox without nodes".into()));
                }
                if let Some(s) = state
                    .servers
                    .iter()
                    .find(|s| s.info.role != Role::Node || s.info.galera.is_none())
                {
                    return Err(bad(format!(
                        "{} is not a Galera node (role {}, Galera ports {:?})",
                        s.info.name, s.info.role, s.info.galera
                    )));
                }
            }
        }
        Ok(Sandbox {
            bins: Binaries::locate()?,
            kind: state.kind,
            proxy_port: state.proxy_port,
            buffer_pool_mb: state.buffer_pool_mb,
            runtime: Mutex::new(Runtime {
                pids: state.servers.iter().map(|s| s.pid).collect(),
                children: Vec::new(),
            }),
            servers: state.servers.into_iter().map(|s| s.info).collect(),
            dir,
        })
    }

    /// The sandbox directory (absolute).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The kind of cluster.
    pub fn kind(&self) -> ClusterKind {
        self.kind
    }

    /// Every server, master (or db1) first.
    pub fn servers(&self) -> &[ServerInfo] {
        &self.servers
    }

    /// The server with this name.
    pub fn server(&self, name: &str) -> Option<&ServerInfo> {
        self.servers.iter().find(|s| s.name == name)
    }

    /// The port of the server started as master (db1). After a failover the live master
    /// is another server: ask the servers, not this. In a Galera sandbox: db1's port.
    pub fn master_port(&self) -> u16 {
        self.master().port
    }

    /// The port in the proxy config's `listen`.
    pub fn proxy_port(&self) -> u16 {
        self.proxy_port
    }

    /// `DIR/kohaproxy.toml`.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join(CONFIG_FILE)
    }

    /// The pid of the server's running mariadbd (None if it is not running).
    pub fn pid(&self, name: &str) -> Option<u32> {
        let idx = self.index(name).ok()?;
        self.live_pid(idx).map(|(pid, _)| pid)
    }

    pub(crate) fn master(&self) -> &ServerInfo {
        // `up` and `open` guarantee exactly one master; db1 is the fallback regardless.
        self.servers
            .iter()
            .find(|s| s.role == Role::Master)
            .unwrap_or(&self.servers[0])
    }

    pub(crate) fn index(&self, name: &str) -> Result<usize> {
        self.servers
            .iter()
            .position(|s| s.name == name)
            .ok_or_else(|| SandboxError::UnknownServer {
                name: name.to_string(),
                known: self
                    .servers
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Runtime> {
        self.runtime
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Reaps exited children of this process (they would stay zombies otherwise).
    pub(crate) fn reap(&self) {
        self.lock()
            .children
            .retain_mut(|c| matches!(c.try_wait(), Ok(None)));
    }

    /// The pid of the server's mariadbd if one runs: the recorded pid, else the pid file,
    /// whichever is a live mariadbd on this server's datadir.
    pub(crate) fn live_pid(&self, idx: usize) -> Option<(u32, ProcState)> {
        self.reap();
        let info = self.servers.get(idx)?;
        let recorded = self.lock().pids.get(idx).copied().flatten();
        [recorded, info.pid_from_file()]
            .into_iter()
            .flatten()
            .find_map(|pid| match proc_state(pid) {
                ProcState::Gone => None,
                state => check_ours(pid, &info.datadir).ok().map(|()| (pid, state)),
            })
    }

    /// Writes sandbox.json from the current state.
    pub(crate) fn save(&self) -> Result<()> {
        let rt = self.lock();
        SandboxState {
            kind: self.kind,
            dir: self.dir.clone(),
            proxy_port: self.proxy_port,
            buffer_pool_mb: self.buffer_pool_mb,
            servers: self
                .servers
                .iter()
                .zip(rt.pids.iter())
                .map(|(info, pid)| ServerRecord {
                    info: info.clone(),
                    pid: *pid,
                })
                .collect(),
        }
        .save()
    }
}

/// db1 (master) and db2.. (replicas) on the given ports; for Galera, db1.. (nodes).
pub(crate) fn plan_servers(
    dir: &Path,
    ports: &[u16],
    kind: ClusterKind,
) -> Result<Vec<ServerInfo>> {
    let mut infos = Vec::with_capacity(ports.len());
    for (i, &port) in ports.iter().enumerate() {
        let name = format!("db{}", i + 1);
        let server_dir = dir.join(&name);
        if server_dir.exists() {
            return Err(SandboxError::InvalidOptions(format!(
                "{} already exists and is not part of a stopped sandbox; use an empty directory",
                server_dir.display()
            )));
        }
        let info = ServerInfo {
            name,
            port,
            server_id: u32::try_from(i + 1).unwrap_or(u32::MAX),
            datadir: server_dir.join("data"),
            dir: server_dir,
            role: match kind {
                ClusterKind::Galera => Role::Node,
                ClusterKind::Replication if i == 0 => Role::Master,
                ClusterKind::Replication => Role::Replica,
            },
            galera: None,
        };
        if info.socket().as_os_str().len() > MAX_SOCKET_PATH {
            return Err(SandboxError::InvalidOptions(format!(
                "the socket path {} is longer than {MAX_SOCKET_PATH} bytes; use a shorter --dir",
                info.socket().display()
            )));
        }
        infos.push(info);
    }
    Ok(infos)
}

/// If `dir` holds a sandbox, refuses when any of its servers runs, else removes its
/// server directories and files so `up` starts afresh.
pub(crate) fn clear_stopped_sandbox(dir: &Path) -> Result<()> {
    if !dir.join(STATE_FILE).exists() {
        return Ok(());
    }
    let old = Sandbox::open(dir)?;
    for (idx, info) in old.servers.iter().enumerate() {
        if let Some((pid, _)) = old.live_pid(idx) {
            return Err(SandboxError::AlreadyRunning {
                server: info.name.clone(),
                pid,
            });
        }
    }
    tracing::info!(dir = %dir.display(), "replacing the stopped sandbox in this directory");
    for info in &old.servers {
        // Only directories this sandbox made: DIR/<name>.
        if info.dir == dir.join(&info.name) && info.dir.exists() {
            fs::remove_dir_all(&info.dir).map_err(|e| {
                SandboxError::io(format!("cannot remove {}", info.dir.display()), e)
            })?;
        }
    }
    for file in [STATE_FILE, CONFIG_FILE] {
        let path = dir.join(file);
        fs::remove_file(&path)
            .map_err(|e| SandboxError::io(format!("cannot remove {}", path.display()), e))
            .or_else(|e| if path.exists() { Err(e) } else { Ok(()) })?;
    }
    Ok(())
}

/// Copies the template into a new server's datadir and starts it, moving to another free
/// port if the chosen one was taken in the meantime.
fn launch_fresh(
    bins: &Binaries,
    template: &Path,
    mut info: ServerInfo,
    buffer_pool_mb: u32,
) -> Result<(ServerInfo, Child)> {
    const ATTEMPTS: usize = 5;
    fs::create_dir_all(&info.dir)
        .map_err(|e| SandboxError::io(format!("cannot create {}", info.dir.display()), e))?;
    for attempt in 1..=ATTEMPTS {
        if info.datadir.exists() {
            fs::remove_dir_all(&info.datadir).map_err(|e| {
                SandboxError::io(format!("cannot remove {}", info.datadir.display()), e)
            })?;
        }
        copy_dir(template, &info.datadir)?;
        tracing::debug!(server = %info.name, "datadir copied");
        let args = mariadbd_args(&info, buffer_pool_mb);
        match launch(bins, &info, args, START_TIMEOUT) {
            Ok(child) => return Ok((info, child)),
            Err(LaunchError::PortInUse(e)) if attempt < ATTEMPTS => {
                tracing::warn!(server = %info.name, port = info.port, "port taken, trying another: {e}");
                info.port = free_ports(1)?.first().copied().unwrap_or_default();
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(SandboxError::InvalidOptions(format!(
        "no free port for {} after {ATTEMPTS} attempts",
        info.name
    )))
}
