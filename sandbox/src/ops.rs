//! Operating a sandbox: signals, restarts, shutdown, status and waiting for replication.
use std::time::{Duration, Instant};

use crate::client::{self, Output, Probe};
use crate::cluster::{ClusterKind, Sandbox, START_TIMEOUT};
use crate::error::{Result, SandboxError};
use crate::galera::wsrep_probe;
use crate::process::{proc_state, send, ProcState, Signal};
use crate::server::{launch, mariadbd_args, Role};
use crate::status::{ProcessState, ReplicationThreads, ServerStatus};

/// How long `down` waits after SIGTERM before SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(10);
/// How long a probe of one server may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

impl Sandbox {
    /// Sends `signal` to the server's mariadbd (only if it is this server's process).
    /// With [`Signal::Kill`] it returns once the process is gone.
    pub fn kill(&self, name: &str, signal: Signal) -> Result<()> {
        let idx = self.index(name)?;
        let (pid, _) = self.live_pid(idx).ok_or_else(|| SandboxError::NotRunning {
            server: name.to_string(),
        })?;
        send(pid, signal).map_err(|error| SandboxError::Signal {
            server: name.to_string(),
            pid,
            signal: signal.to_string(),
            error,
        })?;
        tracing::info!(server = name, pid, %signal, "signal sent");
        if signal == Signal::Kill && !self.wait_gone(&[pid], Duration::from_secs(10)).is_empty() {
            return Err(SandboxError::Timeout {
                what: format!("{name} (pid {pid}) to exit after SIGKILL"),
                timeout: Duration::from_secs(10),
            });
        }
        Ok(())
    }

    /// Starts a server that is not running, with the options and datadir of its first
    /// start, and returns once it accepts connections. A replica resumes replicating on
    /// its own (its master.info is in the datadir).
    ///
    /// A Galera node rejoins the nodes that run (by IST when its position is known, after
    /// a crash by `mariadbd --wsrep-recover`, else by SST); when none of them runs, it
    /// bootstraps a new cluster (`safe_to_bootstrap: 1` in its grastate.dat and
    /// `--wsrep-new-cluster`). It returns once the node is Synced.
    pub fn start(&self, name: &str) -> Result<()> {
        let idx = self.index(name)?;
        if let Some((pid, _)) = self.live_pid(idx) {
            return Err(SandboxError::AlreadyRunning {
                server: name.to_string(),
                pid,
            });
        }
        if self.kind == ClusterKind::Galera {
            return self.start_galera(idx);
        }
        let info = &self.servers[idx];
        let args = mariadbd_args(info, self.buffer_pool_mb);
        let child = launch(&self.bins, info, args, START_TIMEOUT)?;
        {
            let mut rt = self.lock();
            if let Some(slot) = rt.pids.get_mut(idx) {
                *slot = Some(child.id());
            }
            rt.children.push(child);
        }
        self.save()
    }

    /// Stops every server of this sandbox: SIGCONT (in case it was stopped), SIGTERM,
    /// up to 10 s for a clean shutdown, then SIGKILL. Only processes that are this
    /// sandbox's mariadbd (checked by command line and datadir) are signalled.
    pub fn down(&self) -> Result<()> {
        let targets: Vec<(usize, u32)> = (0..self.servers.len())
            .filter_map(|idx| self.live_pid(idx).map(|(pid, _)| (idx, pid)))
            .collect();
        for &(idx, pid) in &targets {
            let _ = send(pid, Signal::Cont);
            if let Err(e) = send(pid, Signal::Term) {
                tracing::warn!(server = %self.servers[idx].name, pid, "SIGTERM failed: {e}");
            }
        }
        let pids: Vec<u32> = targets.iter().map(|&(_, pid)| pid).collect();
        let mut left = self.wait_gone(&pids, TERM_GRACE);
        if !left.is_empty() {
            tracing::warn!(
                ?left,
                "servers still running {TERM_GRACE:?} after SIGTERM; sending SIGKILL"
            );
            for &pid in &left {
                let _ = send(pid, Signal::Kill);
            }
            left = self.wait_gone(&left, Duration::from_secs(5));
        }
        self.lock().pids.iter_mut().for_each(|p| *p = None);
        if self.kind == ClusterKind::Galera && left.is_empty() {
            for idx in 0..self.servers.len() {
                self.clean_sst_leftovers(idx);
            }
        }
        self.save()?;
        if left.is_empty() {
            Ok(())
        } else {
            Err(SandboxError::Timeout {
                what: format!("pids {left:?} to exit after SIGKILL"),
                timeout: TERM_GRACE + Duration::from_secs(5),
            })
        }
    }

    /// Each server's process state, read_only, GTID position and replica threads (for a
    /// Galera node: its wsrep state instead of replica threads).
    pub fn status(&self) -> Result<Vec<ServerStatus>> {
        let rows = std::thread::scope(|s| {
            let handles: Vec<_> = (0..self.servers.len())
                .map(|idx| s.spawn(move || self.server_status(idx)))
                .collect();
            handles.into_iter().map(|h| h.join()).collect::<Vec<_>>()
        });
        rows.into_iter()
            .map(|r| {
                r.map_err(|_| {
                    SandboxError::io("status", std::io::Error::other("a status thread panicked"))
                })
            })
            .collect()
    }

    fn server_status(&self, idx: usize) -> ServerStatus {
        let info = &self.servers[idx];
        let live = self.live_pid(idx);
        let mut row = ServerStatus {
            name: info.name.clone(),
            port: info.port,
            role: info.role,
            pid: live
                .map(|(pid, _)| pid)
                .or_else(|| self.lock().pids.get(idx).copied().flatten()),
            process: match live {
                None => ProcessState::Down,
                Some((_, ProcState::Stopped)) => ProcessState::Stopped,
                Some(_) => ProcessState::Alive,
            },
            read_only: None,
            gtid_current_pos: None,
            replication: None,
            wsrep: None,
            error: None,
        };
        if row.process == ProcessState::Alive && info.role == Role::Node {
            match wsrep_probe(&self.bins, info) {
                Ok(w) => {
                    row.read_only = Some(w.read_only);
                    row.gtid_current_pos = Some(w.gtid_current_pos.clone());
                    row.wsrep = Some(w);
                }
                Err(e) => row.error = Some(e.to_string()),
            }
        } else if row.process == ProcessState::Alive {
            match client::probe(&self.bins, &info.name, info.port, PROBE_TIMEOUT) {
                Ok(p) => {
                    row.read_only = Some(p.read_only);
                    row.gtid_current_pos = Some(p.gtid_current_pos);
                    row.replication = p.slave.map(|s| ReplicationThreads {
                        io_running: s.io_running,
                        sql_running: s.sql_running,
                        seconds_behind_master: s.seconds_behind_master,
                        master_port: s.master_port,
                        last_error: s.last_error,
                    });
                }
                Err(e) => row.error = Some(e.to_string()),
            }
        }
        row
    }

    /// Waits until there is exactly one writable server (the live master), every other
    /// running server replicates from it with both threads running, and each has applied
    /// the master's `@@gtid_binlog_pos`. Servers that are down are skipped; a stopped
    /// (SIGSTOP) one makes this time out.
    ///
    /// In a Galera sandbox: every running node Synced in one Primary component of the
    /// running size (as [`Sandbox::wait_galera_synced`]), with an empty receive queue and
    /// the same `@@gtid_binlog_pos` on all of them.
    pub fn wait_replication(&self, timeout: Duration) -> Result<()> {
        if self.kind == ClusterKind::Galera {
            return self.wait_galera_caught_up(timeout);
        }
        let deadline = Instant::now() + timeout;
        loop {
            let why = match self.replication_lag() {
                Ok(()) => return Ok(()),
                Err(why) => why,
            };
            if Instant::now() >= deadline {
                return Err(SandboxError::Timeout {
                    what: format!("replication to catch up (last seen: {why})"),
                    timeout,
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Ok when replication has caught up, else what is still missing.
    fn replication_lag(&self) -> Result<(), String> {
        let mut probes: Vec<(usize, Probe)> = Vec::new();
        for idx in 0..self.servers.len() {
            let info = &self.servers[idx];
            match self.live_pid(idx) {
                None => continue,
                Some((_, ProcState::Stopped)) => return Err(format!("{} is stopped", info.name)),
                Some(_) => {}
            }
            let probe = client::probe(&self.bins, &info.name, info.port, PROBE_TIMEOUT)
                .map_err(|e| e.to_string())?;
            probes.push((idx, probe));
        }
        let writable: Vec<&(usize, Probe)> = probes.iter().filter(|(_, p)| !p.read_only).collect();
        let [(master_idx, master)] = writable.as_slice() else {
            let names: Vec<&str> = writable
                .iter()
                .map(|(i, _)| self.servers[*i].name.as_str())
                .collect();
            return Err(format!(
                "{} writable servers ({names:?}), expected one",
                names.len()
            ));
        };
        let master_info = &self.servers[*master_idx];
        for (idx, probe) in &probes {
            if idx == master_idx {
                continue;
            }
            let name = &self.servers[*idx].name;
            let Some(slave) = &probe.slave else {
                return Err(format!("{name} is not replicating"));
            };
            if slave.io_running != "Yes" || slave.sql_running != "Yes" {
                return Err(format!(
                    "{name}: IO {} SQL {} {}",
                    slave.io_running, slave.sql_running, slave.last_error
                ));
            }
            if slave.master_port != Some(master_info.port) {
                return Err(format!(
                    "{name} replicates from port {:?}, not from the writable {} ({})",
                    slave.master_port, master_info.name, master_info.port
                ));
            }
            if !client::gtid_covers(&probe.gtid_slave_pos, &master.gtid_binlog_pos) {
                return Err(format!(
                    "{name} has applied {:?}, {} is at {:?}",
                    probe.gtid_slave_pos, master_info.name, master.gtid_binlog_pos
                ));
            }
        }
        Ok(())
    }

    /// Runs SQL as root on one server through the `mariadb` client (`-N -B`: tab-separated
    /// rows, no header) and returns its stdout.
    pub fn sql(&self, name: &str, query: &str) -> Result<String> {
        let info = &self.servers[self.index(name)?];
        client::query(
            &self.bins,
            &info.name,
            info.port,
            query,
            Output::Plain,
            None,
        )
    }

    /// Waits until none of `pids` is alive; returns those still alive at the timeout.
    fn wait_gone(&self, pids: &[u32], timeout: Duration) -> Vec<u32> {
        let deadline = Instant::now() + timeout;
        loop {
            self.reap();
            let left: Vec<u32> = pids
                .iter()
                .copied()
                .filter(|&pid| proc_state(pid) != ProcState::Gone)
                .collect();
            if left.is_empty() || Instant::now() >= deadline {
                return left;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
