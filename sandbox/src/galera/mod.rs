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

mod grastate;
mod options;
mod user;
mod wsrep;

use grastate::{parse_grastate, parse_recovered_position, with_safe_to_bootstrap};
use options::{cluster_name, galera_args, provider, NodeStart};
use user::{chown_tree, open_path_for, run_as, RunAs};
pub(crate) use wsrep::wsrep_probe;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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

/// Files an interrupted SST leaves in a datadir; the next SST waits for them (up to 30 s).
const STALE_SST_FILES: [&str; 3] = ["rsync_sst.pid", "rsync_sst.conf", "wsrep_sst.pid"];

/// How long one node may take to become Synced once it answers queries.
const SYNC_TIMEOUT: Duration = Duration::from_secs(120);

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
