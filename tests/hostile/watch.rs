//! Watching the proxy process (RSS, descriptors, alive) and the master's connections.

#[allow(unused_imports)]
use super::*;

// ---------------------------------------------------------------------------------------
// Watching the proxy process and the master.
// ---------------------------------------------------------------------------------------

/// The proxy's memory and descriptors, from /proc.
#[derive(Debug, Clone, Copy)]
pub(super) struct ProcStats {
    /// Resident set size now (VmRSS), KiB.
    pub(super) rss_kib: u64,
    /// Peak resident set size so far (VmHWM), KiB.
    pub(super) hwm_kib: u64,
    /// Open file descriptors.
    pub(super) fds: usize,
}

impl ProcStats {
    /// Reads the figures of process `pid`.
    pub(super) fn of(pid: u32) -> ProcStats {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_else(|e| panic!("the proxy (pid {pid}) is gone: {e}"));
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
        };
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| d.count())
            .unwrap_or_else(|e| panic!("cannot list /proc/{pid}/fd: {e}"));
        ProcStats {
            rss_kib: field("VmRSS:"),
            hwm_kib: field("VmHWM:"),
            fds,
        }
    }
}

/// KiB as MiB, for printing.
pub(super) fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Whether process `pid` is still running (not exited and waiting to be reaped).
pub(super) fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("State:"))
            .is_some_and(|state| !state.trim_start().starts_with(['Z', 'X']))
    })
}

/// What the test watches: the proxy process and, through a direct root connection, the
/// master's connections of the hostile user.
pub(super) struct Watch {
    /// The proxy's pid.
    pub(super) pid: u32,
    /// A direct connection to the master, as root.
    pub(super) master: mysql_async::Conn,
    /// Open descriptors of the proxy when only the healthy session is connected.
    pub(super) fd_baseline: usize,
}

impl Watch {
    /// Connects to the master directly.
    pub(super) async fn new(env: &Env) -> Watch {
        let master = mysql_async::Conn::new(Env::opts(env.master_port(), "root", "", None))
            .await
            .expect("direct root connection to the master");
        let pid = env.pid();
        Watch {
            pid,
            master,
            fd_baseline: ProcStats::of(pid).fds,
        }
    }

    /// The master's connections of user koha (every hostile client logs in as koha).
    pub(super) async fn koha_connections(&mut self) -> u64 {
        self.master
            .query_first("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = 'koha'")
            .await
            .expect("count koha connections")
            .unwrap_or(0)
    }

    /// Panics unless the proxy process is running.
    pub(super) fn assert_alive(&self, phase: &str, env: &Env) {
        assert!(
            alive(self.pid),
            "the proxy died during {phase}:\n{}",
            env.proxy_log()
        );
    }

    /// Waits (polling, up to `limit`) until the master holds no koha connection and the
    /// proxy's descriptors are back to the baseline (+`slack`); panics with the figures
    /// otherwise. Returns the proxy's figures then and how long it took.
    pub(super) async fn settled(
        &mut self,
        phase: &str,
        env: &Env,
        slack: usize,
        limit: Duration,
    ) -> (ProcStats, Duration) {
        let start = Instant::now();
        loop {
            self.assert_alive(phase, env);
            let koha = self.koha_connections().await;
            let stats = ProcStats::of(self.pid);
            if koha == 0 && stats.fds <= self.fd_baseline + slack {
                return (stats, start.elapsed());
            }
            assert!(
                start.elapsed() < limit,
                "after {phase}: {koha} koha connections left on the master and {} proxy fds \
                 (baseline {}) after {limit:?}",
                stats.fds,
                self.fd_baseline
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
