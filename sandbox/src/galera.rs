//! Galera sandboxes: N `mariadbd` nodes on 127.0.0.1 forming one Galera cluster.
//!
//! Each node (db1, db2, ...) has its own client port, gcomm port (`gmcast.listen_addr`),
//! IST port (`ist.recv_addr`) and SST port (`wsrep_sst_receive_address`), all free ports
//! on 127.0.0.1 recorded in sandbox.json. The nodes run with rsync SST,
//! `binlog_format=ROW`, `innodb_autoinc_lock_mode=2`, InnoDB as the default engine, and
//! wsrep GTID mode: `wsrep_gtid_mode=ON`, one `wsrep_gtid_domain_id`
//! ([`GALERA_GTID_DOMAIN`]) for the cluster's write sets, `log_bin` and
//! `log_slave_updates`, so that a write on any node has the same GTID on every node
//! (`@@gtid_binlog_pos`, `WSREP_LAST_SEEN_GTID()`, `WSREP_SYNC_WAIT_UPTO_GTID`). Each node
//! keeps its own `server_id` and `gtid_domain_id` (its number): in wsrep GTID mode a
//! joining node takes the server_id of the node that bootstrapped the cluster for the
//! cluster's GTIDs ("Ignoring server id N for non bootstrap node" in its log), and a
//! node's own domain only shows up if something is written outside Galera replication.
//! The group-communication timeouts are short, for the sandbox only
//! (`evs.suspect_timeout=PT2S`, `evs.inactive_timeout=PT4S`), so the survivors of a
//! killed node form a new Primary component within about 2 s.
//!
//! `up` bootstraps db1 (`--wsrep-new-cluster`, a copy of the template datadir), waits
//! until it is Synced, then starts the others one at a time with an empty datadir: each
//! receives a full rsync SST from a donor. `start NAME` rejoins a stopped node with the
//! gcomm addresses of the other nodes. When it crashed (`seqno: -1` in grastate.dat) its
//! position is first recovered with `mariadbd --wsrep-recover`, as the Debian service does,
//! so it can catch up by IST. When no other node of the sandbox runs, `start` bootstraps
//! a new cluster from this node: it sets `safe_to_bootstrap: 1` in its grastate.dat and
//! starts it with `--wsrep-new-cluster`. Start the most advanced node first: the others
//! then rejoin it, and what only they had is lost (as with a real cluster).
//!
//! **Non-root rule:** the joiner's rsync SST fails when mariadbd runs as root (the rsync
//! daemon drops to `nobody`). So when this process is root, every Galera mariadbd runs
//! with `--user=mysql` (the user Debian's mariadb-server creates), each node's directory
//! is owned by it, the sandbox directory is made searchable by others (o+x), and every
//! directory above it must already be searchable by `mysql`. Not as root, the nodes run as
//! the current user. Replication sandboxes still run as root.
use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::client::{self, Output};
use crate::cluster::{clear_stopped_sandbox, plan_servers, ClusterKind, Runtime, Sandbox};
use crate::cluster::{UpOptions, START_TIMEOUT};
use crate::error::{Result, SandboxError};
use crate::process::{send, sst_helpers, ProcState, Signal};
use crate::server::ServerInfo;
use crate::server::{free_ports, launch, log_since, log_tail_text, GaleraPorts, LaunchError};
use crate::state::write_proxy_config;
use crate::status::WsrepStatus;
use crate::template::{copy_dir, describe, ensure_template, find_program, prefixed, Binaries};

/// The `wsrep_gtid_domain_id` of every sandbox Galera cluster: the domain of the GTIDs
/// of its write sets (a node's own `gtid_domain_id` is its number, 1..N).
pub const GALERA_GTID_DOMAIN: u32 = 100;

/// The user Galera nodes run as when the sandbox runs as root.
pub const GALERA_USER: &str = "mysql";

/// Where the Galera 4 provider may be, first match wins.
const PROVIDERS: [&str; 4] = [
    "/usr/lib/galera/libgalera_smm.so",
    "/usr/lib/libgalera_smm.so",
    "/usr/lib64/galera-4/libgalera_smm.so",
    "/usr/lib64/galera/libgalera_smm.so",
];

/// Group-communication settings for the sandbox only: a dead peer is suspected after 2 s
/// and dropped after 4 s (production defaults: 5 s and 15 s). The keepalive must stay
/// below a third of the suspect timeout or the provider refuses to start.
const EVS_OPTIONS: &str = "evs.keepalive_period=PT0.5S;evs.suspect_timeout=PT2S;\
     evs.inactive_timeout=PT4S;evs.install_timeout=PT3S";

/// Files an interrupted SST leaves in a datadir; the next SST waits for them (up to 30 s).
const STALE_SST_FILES: [&str; 3] = ["rsync_sst.pid", "rsync_sst.conf", "wsrep_sst.pid"];

/// How long one node may take to become Synced once it answers queries.
const SYNC_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a probe of one node may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// The all-zero Galera UUID of a node that never joined a cluster.
const NIL_UUID: &str = "00000000-0000-0000-0000-000000000000";

/// The user the Galera nodes run as (when this process is root).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RunAs {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

/// How one node is started.
#[derive(Clone, Debug)]
pub(crate) struct NodeStart<'a> {
    /// `wsrep_cluster_name`.
    pub cluster_name: &'a str,
    /// The gcomm addresses (`127.0.0.1:PORT`) of the other nodes.
    pub peers: Vec<String>,
    /// Start a new cluster from this node (`--wsrep-new-cluster`).
    pub bootstrap: bool,
    /// `--wsrep-start-position`, recovered after a crash.
    pub start_position: Option<String>,
    /// `--user=`, when running as root.
    pub user: Option<&'a str>,
    /// The Galera provider library.
    pub provider: &'a Path,
}

/// The mariadbd command line of a Galera node. Deterministic but for the bootstrap flag
/// and the start position.
pub(crate) fn galera_args(
    info: &ServerInfo,
    ports: &GaleraPorts,
    start: &NodeStart<'_>,
    buffer_pool_mb: u32,
) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["--no-defaults".into()];
    if let Some(user) = start.user {
        args.push(format!("--user={user}").into());
    }
    args.extend([
        prefixed("--datadir=", &info.datadir),
        prefixed("--socket=", &info.socket()),
        prefixed("--pid-file=", &info.pid_file()),
        prefixed("--log-error=", &info.error_log()),
    ]);
    let provider_options = format!(
        "base_port={g};gmcast.listen_addr=tcp://127.0.0.1:{g};ist.recv_addr=127.0.0.1:{i};\
         gcache.size=32M;{EVS_OPTIONS}",
        g = ports.gcomm,
        i = ports.ist
    );
    let owned = [
        format!("--port={}", info.port),
        "--bind-address=127.0.0.1".into(),
        format!("--server-id={}", info.server_id),
        format!("--gtid-domain-id={}", info.server_id),
        "--log-bin=mysql-bin".into(),
        "--log-slave-updates=ON".into(),
        "--binlog-format=ROW".into(),
        "--innodb-autoinc-lock-mode=2".into(),
        "--default-storage-engine=InnoDB".into(),
        "--max-allowed-packet=256M".into(),
        "--max-connections=2000".into(),
        "--local-infile=ON".into(),
        "--character-set-server=utf8mb4".into(),
        "--collation-server=utf8mb4_general_ci".into(),
        "--skip-name-resolve".into(),
        "--performance-schema=OFF".into(),
        format!("--innodb-buffer-pool-size={buffer_pool_mb}M"),
        "--wsrep-on=ON".into(),
        format!("--wsrep-provider={}", start.provider.display()),
        format!("--wsrep-cluster-name={}", start.cluster_name),
        format!("--wsrep-cluster-address=gcomm://{}", start.peers.join(",")),
        format!("--wsrep-node-name={}", info.name),
        format!("--wsrep-node-address=127.0.0.1:{}", ports.gcomm),
        format!("--wsrep-node-incoming-address=127.0.0.1:{}", info.port),
        format!("--wsrep-provider-options={provider_options}"),
        "--wsrep-sst-method=rsync".into(),
        format!("--wsrep-sst-receive-address=127.0.0.1:{}", ports.sst),
        "--wsrep-gtid-mode=ON".into(),
        format!("--wsrep-gtid-domain-id={GALERA_GTID_DOMAIN}"),
    ];
    args.extend(owned.into_iter().map(OsString::from));
    if start.bootstrap {
        args.push("--wsrep-new-cluster".into());
    }
    if let Some(pos) = &start.start_position {
        args.push(format!("--wsrep-start-position={pos}").into());
    }
    args
}

/// `wsrep_cluster_name` of the sandbox in `dir`: unique per directory, so that a node
/// pointed at a stale port of another sandbox does not join it. At most 32 bytes: gcomm
/// rejects longer group names (a joiner then never reaches the primary view).
pub(crate) fn cluster_name(dir: &Path) -> String {
    // FNV-1a, 64 bits.
    let hash = dir
        .as_os_str()
        .as_encoded_bytes()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
    format!("kohaproxy-{hash:016x}")
}

/// What grastate.dat says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Grastate {
    pub uuid: String,
    pub seqno: i64,
    pub safe_to_bootstrap: bool,
}

impl Grastate {
    /// The node crashed (or is mid-state-transfer): its position is only in InnoDB.
    pub fn needs_recovery(&self) -> bool {
        self.seqno == -1 && !self.uuid.is_empty() && self.uuid != NIL_UUID
    }
}

/// Parses grastate.dat (missing fields: empty uuid, seqno -1, not safe to bootstrap).
pub(crate) fn parse_grastate(text: &str) -> Grastate {
    let mut state = Grastate {
        uuid: String::new(),
        seqno: -1,
        safe_to_bootstrap: false,
    };
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match key.trim() {
            "uuid" => state.uuid = value.to_string(),
            "seqno" => state.seqno = value.parse().unwrap_or(-1),
            "safe_to_bootstrap" => state.safe_to_bootstrap = value == "1",
            _ => {}
        }
    }
    state
}

/// grastate.dat with `safe_to_bootstrap: 1` (replacing the line, or appending it).
pub(crate) fn with_safe_to_bootstrap(text: &str) -> String {
    let mut found = false;
    let mut out = String::with_capacity(text.len() + 24);
    for line in text.lines() {
        if line.trim_start().starts_with("safe_to_bootstrap:") {
            out.push_str("safe_to_bootstrap: 1");
            found = true;
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    if !found {
        out.push_str("safe_to_bootstrap: 1\n");
    }
    out
}

/// The position `mariadbd --wsrep-recover` logged (`UUID:SEQNO[,GTID]`), unless it found
/// none.
pub(crate) fn parse_recovered_position(log: &str) -> Option<String> {
    const MARK: &str = "WSREP: Recovered position: ";
    let pos = log
        .lines()
        .filter_map(|l| l.split_once(MARK).map(|(_, p)| p.trim()))
        .next_back()?;
    let (uuid, rest) = pos.split_once(':')?;
    let seqno = rest.split(',').next().unwrap_or_default();
    if uuid == NIL_UUID || seqno == "-1" || seqno.parse::<i64>().is_err() {
        None
    } else {
        Some(pos.to_string())
    }
}

/// Finds the Galera provider library.
pub(crate) fn provider() -> Result<PathBuf> {
    PROVIDERS
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or_else(|| {
            SandboxError::InvalidOptions(format!(
                "no Galera provider (looked for {}); install galera-4",
                PROVIDERS.join(", ")
            ))
        })
}

/// The user to run the Galera nodes as: `mysql` when this process is root, else None
/// (they run as the current user).
pub(crate) fn run_as() -> Result<Option<RunAs>> {
    if !rustix::process::geteuid().is_root() {
        return Ok(None);
    }
    lookup_user(GALERA_USER).map(Some)
}

/// Looks a user up in /etc/passwd, then through `getent passwd`.
fn lookup_user(name: &str) -> Result<RunAs> {
    let from_file = fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|text| parse_passwd(&text, name));
    let found = from_file.or_else(|| {
        Command::new("getent")
            .args(["passwd", name])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| parse_passwd(&String::from_utf8_lossy(&o.stdout), name))
    });
    found.ok_or_else(|| SandboxError::NoSuchUser {
        user: name.to_string(),
    })
}

/// The user's entry in passwd(5) text.
pub(crate) fn parse_passwd(text: &str, name: &str) -> Option<RunAs> {
    text.lines().find_map(|line| {
        let mut f = line.split(':');
        if f.next()? != name {
            return None;
        }
        let _password = f.next()?;
        let uid = f.next()?.parse().ok()?;
        let gid = f.next()?.parse().ok()?;
        Some(RunAs {
            name: name.to_string(),
            uid,
            gid,
        })
    })
}

/// Whether a user (uid, gid; supplementary groups ignored) may search a directory with
/// this owner, group and mode.
pub(crate) fn can_search(owner: u32, group: u32, mode: u32, uid: u32, gid: u32) -> bool {
    if uid == 0 {
        return true;
    }
    if owner == uid {
        mode & 0o100 != 0
    } else if group == gid {
        mode & 0o010 != 0
    } else {
        mode & 0o001 != 0
    }
}

/// Makes `dir` searchable by everyone (o+x) and checks that `user` can reach it.
fn open_path_for(dir: &Path, user: &RunAs) -> Result<()> {
    let meta = fs::metadata(dir)
        .map_err(|e| SandboxError::io(format!("cannot stat {}", dir.display()), e))?;
    let mode = meta.permissions().mode();
    if mode & 0o001 == 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode((mode | 0o001) & 0o7777))
            .map_err(|e| SandboxError::io(format!("cannot chmod o+x {}", dir.display()), e))?;
    }
    for ancestor in dir.ancestors().skip(1) {
        let meta = fs::metadata(ancestor)
            .map_err(|e| SandboxError::io(format!("cannot stat {}", ancestor.display()), e))?;
        let mode = meta.permissions().mode();
        if !can_search(meta.uid(), meta.gid(), mode, user.uid, user.gid) {
            return Err(SandboxError::NotTraversable {
                path: ancestor.to_path_buf(),
                user: user.name.clone(),
            });
        }
    }
    Ok(())
}

/// chown -R (symlinks themselves, not their targets).
fn chown_tree(path: &Path, user: &RunAs) -> Result<()> {
    std::os::unix::fs::lchown(path, Some(user.uid), Some(user.gid)).map_err(|e| {
        SandboxError::io(
            format!("cannot chown {} to {}", path.display(), user.name),
            e,
        )
    })?;
    let meta = fs::symlink_metadata(path)
        .map_err(|e| SandboxError::io(format!("cannot stat {}", path.display()), e))?;
    if meta.is_dir() {
        let entries = fs::read_dir(path)
            .map_err(|e| SandboxError::io(format!("cannot list {}", path.display()), e))?;
        for entry in entries {
            let entry = entry
                .map_err(|e| SandboxError::io(format!("cannot list {}", path.display()), e))?;
            chown_tree(&entry.path(), user)?;
        }
    }
    Ok(())
}

/// The SQL of one wsrep probe: variables first, then the wsrep status counters.
const WSREP_SQL: &str = "SELECT @@gtid_binlog_pos, @@gtid_current_pos, @@wsrep_desync, \
     @@read_only; SHOW GLOBAL STATUS WHERE Variable_name IN ('wsrep_local_state', \
     'wsrep_local_state_comment', 'wsrep_cluster_status', 'wsrep_cluster_size', \
     'wsrep_ready', 'wsrep_connected', 'wsrep_local_recv_queue', 'wsrep_local_index', \
     'wsrep_cluster_state_uuid', 'wsrep_last_committed')";

/// Parses the `-N -B` output of [`WSREP_SQL`].
pub(crate) fn parse_wsrep(text: &str) -> Result<WsrepStatus, String> {
    let mut lines = text.lines();
    let first = lines
        .next()
        .ok_or_else(|| format!("empty output {text:?}"))?;
    let vars: Vec<&str> = first.split('\t').collect();
    let [binlog, current, desync, read_only] = vars.as_slice() else {
        return Err(format!("unexpected first row {first:?}"));
    };
    let mut st = WsrepStatus {
        local_state: 0,
        local_state_comment: String::new(),
        cluster_status: String::new(),
        cluster_size: 0,
        ready: false,
        connected: false,
        local_recv_queue: 0,
        local_index: None,
        cluster_state_uuid: String::new(),
        last_committed: None,
        desync: *desync == "1",
        read_only: *read_only == "1",
        gtid_binlog_pos: binlog.to_string(),
        gtid_current_pos: current.to_string(),
    };
    let mut seen_state = false;
    for line in lines {
        let Some((name, value)) = line.split_once('\t') else {
            continue;
        };
        let name = name.to_ascii_lowercase();
        match name.as_str() {
            "wsrep_local_state" => {
                st.local_state = value
                    .parse()
                    .map_err(|_| format!("wsrep_local_state {value:?}"))?;
                seen_state = true;
            }
            "wsrep_local_state_comment" => st.local_state_comment = value.to_string(),
            "wsrep_cluster_status" => st.cluster_status = value.to_string(),
            "wsrep_cluster_size" => st.cluster_size = value.parse().unwrap_or(0),
            "wsrep_ready" => st.ready = value == "ON",
            "wsrep_connected" => st.connected = value == "ON",
            "wsrep_local_recv_queue" => st.local_recv_queue = value.parse().unwrap_or(0),
            "wsrep_local_index" => st.local_index = value.parse().ok(),
            "wsrep_cluster_state_uuid" => st.cluster_state_uuid = value.to_string(),
            "wsrep_last_committed" => st.last_committed = value.parse().ok(),
            _ => {}
        }
    }
    if seen_state {
        Ok(st)
    } else {
        Err("no wsrep_local_state: is this a Galera node?".into())
    }
}

impl Sandbox {
    /// [`Sandbox::up`] for [`ClusterKind::Galera`].
    pub(crate) fn up_galera(opts: &UpOptions) -> Result<Sandbox> {
        if opts.nodes == 0 || opts.nodes > 32 {
            return Err(SandboxError::InvalidOptions(format!(
                "a Galera sandbox has 1 to 32 nodes, not {}",
                opts.nodes
            )));
        }
        if opts.buffer_pool_mb < 8 {
            return Err(SandboxError::InvalidOptions(
                "the buffer pool must be at least 8 MiB".into(),
            ));
        }
        let bins = Binaries::locate()?;
        let provider = provider()?;
        find_program(&["rsync"]).map_err(|_| {
            SandboxError::InvalidOptions(
                "rsync is not installed; Galera joiners need it for SST (apt-get install rsync)"
                    .into(),
            )
        })?;
        let run_as = run_as()?;
        fs::create_dir_all(&opts.dir)
            .map_err(|e| SandboxError::io(format!("cannot create {}", opts.dir.display()), e))?;
        let dir = fs::canonicalize(&opts.dir)
            .map_err(|e| SandboxError::io(format!("cannot resolve {}", opts.dir.display()), e))?;
        clear_stopped_sandbox(&dir)?;
        if let Some(user) = &run_as {
            open_path_for(&dir, user)?;
        }
        let template = ensure_template(&bins)?;

        let count = opts.nodes;
        let mut ports = free_ports(4 * count + usize::from(opts.proxy_port == 0))?;
        let proxy_port = match opts.proxy_port {
            0 => ports.pop().unwrap_or_default(),
            p => p,
        };
        let mut servers = plan_servers(&dir, &ports[..count], ClusterKind::Galera)?;
        for (i, info) in servers.iter_mut().enumerate() {
            let p = &ports[count + 3 * i..count + 3 * i + 3];
            info.galera = Some(GaleraPorts {
                gcomm: p[0],
                ist: p[1],
                sst: p[2],
            });
        }
        let mut sandbox = Sandbox {
            bins,
            kind: ClusterKind::Galera,
            dir,
            proxy_port,
            buffer_pool_mb: opts.buffer_pool_mb,
            runtime: std::sync::Mutex::new(Runtime {
                pids: vec![None; count],
                children: Vec::new(),
            }),
            servers,
        };
        // Recorded before anything starts, so that a failed `up` leaves a stopped sandbox
        // that the next `up` may replace.
        sandbox.save()?;
        let started = Instant::now();
        for idx in 0..count {
            let result =
                sandbox.launch_fresh_node(idx, &template, run_as.as_ref(), &provider, idx == 0);
            if let Err(error) = result {
                sandbox.abort();
                return Err(error);
            }
            tracing::info!(
                node = %sandbox.servers[idx].name,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "Galera node Synced"
            );
        }
        let finish = sandbox.wait_galera_synced(SYNC_TIMEOUT).and_then(|()| {
            write_proxy_config(
                &sandbox.dir,
                sandbox.kind,
                sandbox.proxy_port,
                &sandbox.servers,
            )
        });
        if let Err(error) = finish {
            sandbox.abort();
            return Err(error);
        }
        Ok(sandbox)
    }

    /// Prepares a new node's directory (db1: a copy of the template; the others: an empty
    /// datadir, filled by SST) and starts it, moving to other free ports if one was taken.
    fn launch_fresh_node(
        &mut self,
        idx: usize,
        template: &Path,
        run_as: Option<&RunAs>,
        provider: &Path,
        bootstrap: bool,
    ) -> Result<()> {
        const ATTEMPTS: usize = 5;
        for attempt in 1..=ATTEMPTS {
            let info = &self.servers[idx];
            fs::create_dir_all(&info.dir).map_err(|e| {
                SandboxError::io(format!("cannot create {}", info.dir.display()), e)
            })?;
            if info.datadir.exists() {
                fs::remove_dir_all(&info.datadir).map_err(|e| {
                    SandboxError::io(format!("cannot remove {}", info.datadir.display()), e)
                })?;
            }
            if bootstrap {
                copy_dir(template, &info.datadir)?;
            } else {
                fs::create_dir_all(&info.datadir).map_err(|e| {
                    SandboxError::io(format!("cannot create {}", info.datadir.display()), e)
                })?;
            }
            if let Some(user) = run_as {
                chown_tree(&info.dir, user)?;
            }
            match self.launch_node(idx, bootstrap, None, run_as, provider) {
                Ok(()) => return Ok(()),
                Err(LaunchError::PortInUse(e)) if attempt < ATTEMPTS => {
                    let ports = free_ports(4)?;
                    let info = &mut self.servers[idx];
                    tracing::warn!(server = %info.name, "a port was taken, trying others: {e}");
                    info.port = ports[0];
                    info.galera = Some(GaleraPorts {
                        gcomm: ports[1],
                        ist: ports[2],
                        sst: ports[3],
                    });
                    self.save()?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(SandboxError::InvalidOptions(format!(
            "no free ports for {} after {ATTEMPTS} attempts",
            self.servers[idx].name
        )))
    }

    /// Spawns a node, records it, and waits until it is Synced.
    fn launch_node(
        &self,
        idx: usize,
        bootstrap: bool,
        start_position: Option<String>,
        run_as: Option<&RunAs>,
        provider: &Path,
    ) -> Result<(), LaunchError> {
        let info = &self.servers[idx];
        let ports = galera_ports(info)?;
        let name = cluster_name(&self.dir);
        let start = NodeStart {
            cluster_name: &name,
            peers: self.peers(idx),
            bootstrap,
            start_position,
            user: run_as.map(|u| u.name.as_str()),
            provider,
        };
        let args = galera_args(info, &ports, &start, self.buffer_pool_mb);
        let log_start = fs::metadata(info.error_log()).map_or(0, |m| m.len());
        let child = launch(&self.bins, info, args, START_TIMEOUT)?;
        {
            let mut rt = self.lock();
            if let Some(slot) = rt.pids.get_mut(idx) {
                *slot = Some(child.id());
            }
            rt.children.push(child);
        }
        self.save()?;
        self.wait_node_synced(idx, SYNC_TIMEOUT, log_start)?;
        Ok(())
    }

    /// The gcomm addresses of every node but `idx`.
    fn peers(&self, idx: usize) -> Vec<String> {
        self.servers
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != idx)
            .filter_map(|(_, s)| s.galera.map(|g| format!("127.0.0.1:{}", g.gcomm)))
            .collect()
    }

    /// [`Sandbox::start`] for a Galera node: rejoins the running nodes (IST when its
    /// position is known, else SST), or bootstraps a new cluster when none runs.
    pub(crate) fn start_galera(&self, idx: usize) -> Result<()> {
        let run_as = run_as()?;
        let provider = provider()?;
        let info = &self.servers[idx];
        let bootstrap = !(0..self.servers.len()).any(|i| i != idx && self.live_pid(i).is_some());
        self.clean_sst_leftovers(idx);
        let grastate_path = info.datadir.join("grastate.dat");
        let grastate = match fs::read_to_string(&grastate_path) {
            Ok(text) => {
                if bootstrap {
                    // fs::write keeps the file's owner (the mysql user when root).
                    fs::write(&grastate_path, with_safe_to_bootstrap(&text)).map_err(|e| {
                        SandboxError::io(format!("cannot write {}", grastate_path.display()), e)
                    })?;
                }
                Some(parse_grastate(&text))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(SandboxError::io(
                    format!("cannot read {}", grastate_path.display()),
                    e,
                ))
            }
        };
        let start_position = match &grastate {
            Some(g) if g.needs_recovery() => {
                self.recover_position(idx, run_as.as_ref(), &provider)?
            }
            _ => None,
        };
        tracing::info!(
            server = %info.name,
            bootstrap,
            start_position = start_position.as_deref().unwrap_or("-"),
            "starting Galera node"
        );
        self.launch_node(idx, bootstrap, start_position, run_as.as_ref(), &provider)?;
        Ok(())
    }

    /// Runs `mariadbd --wsrep-recover` on a stopped node and returns the position it
    /// logged (None if it found none: the node then needs SST).
    fn recover_position(
        &self,
        idx: usize,
        run_as: Option<&RunAs>,
        provider: &Path,
    ) -> Result<Option<String>> {
        let info = &self.servers[idx];
        let ports = galera_ports(info)?;
        let name = cluster_name(&self.dir);
        let start = NodeStart {
            cluster_name: &name,
            peers: self.peers(idx),
            bootstrap: false,
            start_position: None,
            user: run_as.map(|u| u.name.as_str()),
            provider,
        };
        let log = info.dir.join("wsrep-recover.log");
        let _ = fs::remove_file(&log);
        let mut cmd = Command::new(&self.bins.mariadbd);
        cmd.args(galera_args(info, &ports, &start, self.buffer_pool_mb))
            .arg("--wsrep-recover")
            .arg(prefixed("--log-error=", &log))
            .arg(prefixed("--pid-file=", &info.dir.join("wsrep-recover.pid")))
            .arg("--skip-networking");
        let command = describe(&cmd);
        let started = Instant::now();
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .map_err(|error| SandboxError::Spawn {
                command: command.clone(),
                error,
            })?;
        let text = fs::read_to_string(&log).unwrap_or_default();
        if !out.status.success() {
            return Err(SandboxError::CommandFailed {
                command,
                status: out.status.to_string(),
                output: log_tail_text(&text, 20),
            });
        }
        let position = parse_recovered_position(&text);
        tracing::info!(
            server = %info.name,
            position = position.as_deref().unwrap_or("none"),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "wsrep position recovered"
        );
        Ok(position)
    }

    /// Removes the pid and config files of an interrupted SST from a stopped node's
    /// datadir, and kills SST helpers (the joiner's rsync daemon, wsrep_sst_rsync) still
    /// running for that datadir.
    pub(crate) fn clean_sst_leftovers(&self, idx: usize) {
        let info = &self.servers[idx];
        for pid in sst_helpers(&info.datadir) {
            if proc_gone_after_kill(pid) {
                tracing::warn!(server = %info.name, pid, "killed a leftover SST process");
            }
        }
        for file in STALE_SST_FILES {
            let path = info.datadir.join(file);
            match fs::remove_file(&path) {
                Ok(()) => tracing::info!(path = %path.display(), "removed a stale SST file"),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!(path = %path.display(), "cannot remove: {e}"),
            }
        }
    }

    /// The wsrep status of a running node (works on a node outside a Primary component).
    pub fn wsrep_status(&self, name: &str) -> Result<WsrepStatus> {
        let info = &self.servers[self.index(name)?];
        wsrep_probe(&self.bins, info)
    }

    /// Waits until every running node is Synced (`wsrep_local_state` 4), `wsrep_ready`
    /// is ON, and all of them form one Primary component whose size is the number of
    /// running nodes (same `wsrep_cluster_state_uuid`). Nodes that are down are
    /// skipped; a stopped (SIGSTOP) node makes this time out, as does having no node
    /// running.
    pub fn wait_galera_synced(&self, timeout: Duration) -> Result<()> {
        self.wait_galera(timeout, false)
    }

    /// [`Sandbox::wait_galera_synced`], and also every running node at the same
    /// `@@gtid_binlog_pos` with an empty receive queue: what `wait_replication` means for
    /// a Galera sandbox.
    pub(crate) fn wait_galera_caught_up(&self, timeout: Duration) -> Result<()> {
        self.wait_galera(timeout, true)
    }

    fn wait_galera(&self, timeout: Duration, same_gtid: bool) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let why = match self.galera_view(same_gtid) {
                Ok(()) => return Ok(()),
                Err(why) => why,
            };
            if Instant::now() >= deadline {
                return Err(SandboxError::Timeout {
                    what: format!("the Galera nodes to be Synced (last seen: {why})"),
                    timeout,
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Ok when the running nodes form one synced Primary component, else what is not so.
    fn galera_view(&self, same_gtid: bool) -> Result<(), String> {
        let mut seen: Vec<(&str, WsrepStatus)> = Vec::new();
        for (idx, info) in self.servers.iter().enumerate() {
            match self.live_pid(idx) {
                None => continue,
                Some((_, ProcState::Stopped)) => return Err(format!("{} is stopped", info.name)),
                Some(_) => {}
            }
            let st = wsrep_probe(&self.bins, info).map_err(|e| e.to_string())?;
            seen.push((&info.name, st));
        }
        let running = seen.len();
        let Some((first_name, first)) = seen.first() else {
            return Err("no node is running".into());
        };
        for (name, st) in &seen {
            if !st.is_synced() {
                return Err(format!(
                    "{name} is {} ({}), ready {}, in a {} component",
                    st.local_state, st.local_state_comment, st.ready, st.cluster_status
                ));
            }
            if usize::try_from(st.cluster_size).ok() != Some(running) {
                return Err(format!(
                    "{name} sees a cluster of {}, {running} nodes run",
                    st.cluster_size
                ));
            }
            if st.cluster_state_uuid != first.cluster_state_uuid {
                return Err(format!(
                    "{name} is in cluster {}, {first_name} in {}",
                    st.cluster_state_uuid, first.cluster_state_uuid
                ));
            }
            if same_gtid {
                if st.local_recv_queue > 0 {
                    return Err(format!(
                        "{name} has {} write sets to apply",
                        st.local_recv_queue
                    ));
                }
                if st.gtid_binlog_pos != first.gtid_binlog_pos {
                    return Err(format!(
                        "{name} is at {:?}, {first_name} at {:?}",
                        st.gtid_binlog_pos, first.gtid_binlog_pos
                    ));
                }
            }
        }
        Ok(())
    }

    /// Waits until one node is Synced and ready in a Primary component; fails at once
    /// if its mariadbd exits.
    fn wait_node_synced(&self, idx: usize, timeout: Duration, log_start: u64) -> Result<()> {
        let info = &self.servers[idx];
        let deadline = Instant::now() + timeout;
        let mut last = String::from("no answer yet");
        loop {
            if self.live_pid(idx).is_none() {
                return Err(SandboxError::ServerStart {
                    server: info.name.clone(),
                    reason: format!("mariadbd exited before it was Synced (last: {last})"),
                    log: info.error_log(),
                    log_tail: log_tail_text(&log_since(&info.error_log(), log_start), 20),
                });
            }
            match wsrep_probe(&self.bins, info) {
                Ok(st) if st.is_synced() => return Ok(()),
                Ok(st) => {
                    last = format!(
                        "state {} ({}), ready {}, {} component of {}",
                        st.local_state,
                        st.local_state_comment,
                        st.ready,
                        st.cluster_status,
                        st.cluster_size
                    )
                }
                Err(e) => last = e.to_string(),
            }
            if Instant::now() >= deadline {
                return Err(SandboxError::Timeout {
                    what: format!("{} to be Synced (last seen: {last})", info.name),
                    timeout,
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// One wsrep probe of a node.
pub(crate) fn wsrep_probe(bins: &Binaries, info: &ServerInfo) -> Result<WsrepStatus> {
    let text = client::query(
        bins,
        &info.name,
        info.port,
        WSREP_SQL,
        Output::Plain,
        Some(PROBE_TIMEOUT),
    )?;
    parse_wsrep(&text).map_err(|detail| SandboxError::Parse {
        server: info.name.clone(),
        detail,
    })
}

fn galera_ports(info: &ServerInfo) -> Result<GaleraPorts> {
    info.galera
        .ok_or_else(|| SandboxError::InvalidOptions(format!("{} has no Galera ports", info.name)))
}

/// SIGKILLs a pid and reports whether it is gone within a second.
fn proc_gone_after_kill(pid: u32) -> bool {
    if send(pid, Signal::Kill).is_err() {
        return false;
    }
    let deadline = Instant::now() + Duration::from_secs(1);
    while Instant::now() < deadline {
        if crate::process::proc_state(pid) == ProcState::Gone {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::Role;

    fn node(n: u16) -> ServerInfo {
        let dir = PathBuf::from(format!("/tmp/sb/db{n}"));
        ServerInfo {
            name: format!("db{n}"),
            port: 40000 + n,
            server_id: u32::from(n),
            datadir: dir.join("data"),
            dir,
            role: Role::Node,
            galera: Some(GaleraPorts {
                gcomm: 41000 + n,
                ist: 42000 + n,
                sst: 43000 + n,
            }),
        }
    }

    fn strings(args: &[OsString]) -> Vec<String> {
        args.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn option_lines_of_a_joiner() {
        let info = node(2);
        let ports = info.galera.unwrap();
        let start = NodeStart {
            cluster_name: "kohaproxy-sandbox-x",
            peers: vec!["127.0.0.1:41001".into(), "127.0.0.1:41003".into()],
            bootstrap: false,
            start_position: None,
            user: Some("mysql"),
            provider: Path::new("/usr/lib/galera/libgalera_smm.so"),
        };
        let args = strings(&galera_args(&info, &ports, &start, 64));
        for want in [
            "--no-defaults",
            "--user=mysql",
            "--datadir=/tmp/sb/db2/data",
            "--port=40002",
            "--bind-address=127.0.0.1",
            "--server-id=2",
            "--gtid-domain-id=2",
            "--log-bin=mysql-bin",
            "--log-slave-updates=ON",
            "--binlog-format=ROW",
            "--innodb-autoinc-lock-mode=2",
            "--default-storage-engine=InnoDB",
            "--wsrep-on=ON",
            "--wsrep-provider=/usr/lib/galera/libgalera_smm.so",
            "--wsrep-cluster-name=kohaproxy-sandbox-x",
            "--wsrep-cluster-address=gcomm://127.0.0.1:41001,127.0.0.1:41003",
            "--wsrep-node-name=db2",
            "--wsrep-node-address=127.0.0.1:41002",
            "--wsrep-node-incoming-address=127.0.0.1:40002",
            "--wsrep-provider-options=base_port=41002;gmcast.listen_addr=tcp://127.0.0.1:41002;\
             ist.recv_addr=127.0.0.1:42002;gcache.size=32M;evs.keepalive_period=PT0.5S;\
             evs.suspect_timeout=PT2S;evs.inactive_timeout=PT4S;evs.install_timeout=PT3S",
            "--wsrep-sst-method=rsync",
            "--wsrep-sst-receive-address=127.0.0.1:43002",
            "--wsrep-gtid-mode=ON",
            "--wsrep-gtid-domain-id=100",
        ] {
            assert!(args.iter().any(|a| a == want), "missing {want} in {args:?}");
        }
        assert!(!args.iter().any(|a| a == "--wsrep-new-cluster"));
        assert!(!args.iter().any(|a| a.starts_with("--wsrep-start-position")));
        assert_eq!(args[0], "--no-defaults");
    }

    #[test]
    fn option_lines_of_a_bootstrap_after_a_crash_without_root() {
        let info = node(1);
        let ports = info.galera.unwrap();
        let start = NodeStart {
            cluster_name: "c",
            peers: Vec::new(),
            bootstrap: true,
            start_position: Some("b6b94266-f0b3-11f1-8d90-dea170f96db2:9,100-1-4".into()),
            user: None,
            provider: Path::new("/p.so"),
        };
        let args = strings(&galera_args(&info, &ports, &start, 64));
        assert!(!args.iter().any(|a| a.starts_with("--user")));
        assert!(args.iter().any(|a| a == "--wsrep-cluster-address=gcomm://"));
        assert!(args.iter().any(|a| a == "--wsrep-new-cluster"));
        assert!(args
            .iter()
            .any(|a| a == "--wsrep-start-position=b6b94266-f0b3-11f1-8d90-dea170f96db2:9,100-1-4"));
    }

    #[test]
    fn evs_keepalive_below_a_third_of_suspect() {
        // The provider refuses keepalive >= suspect/3, and inactive must exceed suspect.
        let ms = |key: &str| -> f64 {
            let v = EVS_OPTIONS
                .split(';')
                .find_map(|kv| kv.strip_prefix(&format!("{key}=PT")))
                .and_then(|v| v.strip_suffix('S'))
                .unwrap();
            v.parse::<f64>().unwrap() * 1000.0
        };
        assert!(ms("evs.keepalive_period") < ms("evs.suspect_timeout") / 3.0);
        assert!(ms("evs.inactive_timeout") > ms("evs.suspect_timeout"));
    }

    const CRASHED: &str = "# GALERA saved state\nversion: 2.1\n\
        uuid:    16a652bb-f0b4-11f1-a03d-9fd61b7b9614\nseqno:   -1\nsafe_to_bootstrap: 0\n";

    #[test]
    fn grastate_parsing_and_editing() {
        let g = parse_grastate(CRASHED);
        assert_eq!(g.uuid, "16a652bb-f0b4-11f1-a03d-9fd61b7b9614");
        assert_eq!(g.seqno, -1);
        assert!(!g.safe_to_bootstrap);
        assert!(g.needs_recovery());

        let edited = with_safe_to_bootstrap(CRASHED);
        assert_eq!(
            edited,
            CRASHED.replace("safe_to_bootstrap: 0", "safe_to_bootstrap: 1")
        );
        assert!(parse_grastate(&edited).safe_to_bootstrap);
        assert_eq!(with_safe_to_bootstrap(&edited), edited);

        let old = "# GALERA saved state\nversion: 2.1\nuuid: x\nseqno: 12\n";
        let edited = with_safe_to_bootstrap(old);
        assert_eq!(edited, format!("{old}safe_to_bootstrap: 1\n"));
        let g = parse_grastate(&edited);
        assert_eq!(g.seqno, 12);
        assert!(!g.needs_recovery());

        let fresh = parse_grastate(&format!("uuid: {NIL_UUID}\nseqno: -1\n"));
        assert!(!fresh.needs_recovery());
    }

    #[test]
    fn recovered_position() {
        let log = "2026-12-05 13:57:36 0 [Note] InnoDB: something\n\
            2026-12-05 13:57:36 0 [Note] WSREP: Recovered position: \
            b6b94266-f0b3-11f1-8d90-dea170f96db2:9,100-1-4\n";
        assert_eq!(
            parse_recovered_position(log).as_deref(),
            Some("b6b94266-f0b3-11f1-8d90-dea170f96db2:9,100-1-4")
        );
        let none = format!("x [Note] WSREP: Recovered position: {NIL_UUID}:-1\n");
        assert_eq!(parse_recovered_position(&none), None);
        assert_eq!(parse_recovered_position("nothing here\n"), None);
    }

    #[test]
    fn wsrep_probe_output() {
        let text = "100-1-3\t100-1-3\t0\t0\n\
            wsrep_local_state_comment\tSynced\nwsrep_local_state\t4\n\
            wsrep_cluster_status\tPrimary\nwsrep_cluster_size\t3\nwsrep_ready\tON\n\
            wsrep_connected\tON\nwsrep_local_recv_queue\t0\nwsrep_local_index\t1\n\
            wsrep_cluster_state_uuid\tb6b94266-f0b3-11f1-8d90-dea170f96db2\n\
            wsrep_last_committed\t12\n";
        let st = parse_wsrep(text).unwrap();
        assert!(st.is_synced());
        assert_eq!(st.cluster_size, 3);
        assert_eq!(st.gtid_binlog_pos, "100-1-3");
        assert_eq!(st.local_index, Some(1));
        assert_eq!(st.last_committed, Some(12));

        let lonely = "\t\t0\t0\nwsrep_local_state\t0\nwsrep_local_state_comment\tInitialized\n\
            wsrep_cluster_status\tnon-Primary\nwsrep_cluster_size\t1\nwsrep_ready\tOFF\n\
            wsrep_local_index\t18446744073709551615\n";
        let st = parse_wsrep(lonely).unwrap();
        assert!(!st.is_synced());
        assert_eq!(st.gtid_binlog_pos, "");
        assert_eq!(st.local_index, None);

        assert!(parse_wsrep("1\t2\t0\t0\n").is_err());
    }

    #[test]
    fn passwd_and_search_permission() {
        let text =
            "root:x:0:0:root:/root:/bin/bash\nmysql:x:102:105:MariaDB:/nonexistent:/bin/false\n";
        assert_eq!(
            parse_passwd(text, "mysql"),
            Some(RunAs {
                name: "mysql".into(),
                uid: 102,
                gid: 105
            })
        );
        assert_eq!(parse_passwd(text, "mysq"), None);
        // /root (root:root 0700) is closed to mysql; /tmp (1777) is open.
        assert!(!can_search(0, 0, 0o40700, 102, 105));
        assert!(can_search(0, 0, 0o41777, 102, 105));
        assert!(can_search(102, 0, 0o40700, 102, 105));
        assert!(can_search(0, 105, 0o40750, 102, 105));
        assert!(!can_search(0, 105, 0o40701, 102, 105));
    }

    #[test]
    fn cluster_names_differ_per_directory() {
        let a = cluster_name(Path::new("/tmp/a"));
        assert_eq!(a, cluster_name(Path::new("/tmp/a")));
        assert_ne!(a, cluster_name(Path::new("/tmp/b")));
        assert!(a.starts_with("kohaproxy-"));
        assert!(a.len() <= 32, "{a} is too long for gcomm");
    }
}
