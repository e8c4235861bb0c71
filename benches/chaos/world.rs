//! The chaos soak's world: the kohaproxy processes it starts and kills, the sandbox it
//! runs in, and how each fault is carried out, undone, and healed at the end.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kohaproxy_faults::chaos::Fault;
use kohaproxy_faults::{
    admin, proxy_master, wait_converged, writable_servers, FaultRelay, NOTE_COLUMN,
};
use kohaproxy_sandbox::{ProcessState, Sandbox, SandboxGuard, Signal, UpOptions};

use super::{Result, HEAL_DEADLINE};

/// A kohaproxy process the soak starts, kills and starts again (killed on drop).
pub(super) struct Proxy {
    pub(super) config: PathBuf,
    pub(super) port: u16,
    pub(super) socket: PathBuf,
    pub(super) log: PathBuf,
    pub(super) binary: &'static str,
    pub(super) child: Option<Child>,
}

impl Proxy {
    pub(super) fn start(&mut self) -> Result<()> {
        self.kill();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| format!("{}: {e}", self.log.display()))?;
        let child = Command::new(self.binary)
            .args(["run", "--config"])
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("spawn kohaproxy: {e}"))?;
        self.child = Some(child);
        Ok(())
    }

    pub(super) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub(super) fn running(&self) -> bool {
        self.child.is_some()
    }

    pub(super) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.kill();
    }
}

pub(super) fn free_port() -> Result<u16> {
    kohaproxy_faults::free_port().map_err(|e| format!("no free port: {e}"))
}

/// A fault's undoing, due at `due`.
#[derive(Debug, Clone, Copy)]
pub(super) enum Undo {
    StartServer(usize),
    ContinueServer(usize),
    StartProxy(usize),
    HealLink(usize),
    Online(usize),
}

/// The sandbox of a run and its directory (removed when dropped, after the servers stop).
pub(super) struct Cluster {
    pub(super) sb: SandboxGuard,
    pub(super) _dir: tempfile::TempDir,
}

impl Cluster {
    /// Master and two replicas (or three Galera nodes) in a new directory.
    pub(super) fn up(galera: bool) -> Result<Cluster> {
        let dir = tempfile::Builder::new()
            .prefix("kpchaos")
            .tempdir_in("/tmp")
            .map_err(|e| format!("tempdir: {e}"))?;
        let mut up = if galera {
            UpOptions::galera(dir.path().join("sb"), 3)
        } else {
            let mut up = UpOptions::new(dir.path().join("sb"));
            up.replicas = 2;
            up
        };
        up.proxy_port = free_port()?;
        let sb = SandboxGuard(Sandbox::up(&up).map_err(|e| format!("sandbox: {e}"))?);
        Ok(Cluster { sb, _dir: dir })
    }
}

/// The cluster after the end's healing.
pub(super) struct Healed {
    /// The one master both proxies name.
    pub(super) master: String,
    /// Servers a proxy reported diverged (left out of the convergence checks).
    pub(super) diverged: Vec<String>,
}

/// What the soak acts on besides the servers: the proxies and proxy 1's relays.
pub(super) struct World<'a> {
    pub(super) sb: &'a Sandbox,
    pub(super) proxies: Vec<Proxy>,
    pub(super) relays: Vec<FaultRelay>,
    pub(super) galera: bool,
}

impl<'a> World<'a> {
    pub(super) fn sb(&self) -> &'a Sandbox {
        self.sb
    }

    pub(super) fn name(&self, server: usize) -> String {
        self.sb()
            .servers()
            .get(server)
            .map_or_else(|| format!("server{server}"), |s| s.name.clone())
    }

    /// Proxy 0 on the sandbox's config, proxy 1 on a copy whose servers are reached
    /// through relays.
    pub(super) fn start(
        sb: &'a Sandbox,
        binary: &'static str,
        rebuild_after_s: Option<u64>,
        galera: bool,
    ) -> Result<World<'a>> {
        let base = sb.dir().to_path_buf();
        let mut text = std::fs::read_to_string(sb.config_path())
            .map_err(|e| format!("read the sandbox config: {e}"))?;
        if let Some(n) = rebuild_after_s {
            text = text.replace(
                "[backup]\n",
                &format!("[backup]\nrebuild_diverged_after_s = {n}\n"),
            );
            std::fs::write(sb.config_path(), &text).map_err(|e| format!("write config: {e}"))?;
        }
        let mut relays = Vec::new();
        let mut relayed = text.clone();
        for s in sb.servers() {
            let real = format!("127.0.0.1:{}", s.port);
            let relay = FaultRelay::start(&real).map_err(|e| format!("relay: {e}"))?;
            relayed = relayed.replace(&format!("\"{real}\""), &format!("\"{}\"", relay.address()));
            relays.push(relay);
        }
        let port1 = free_port()?;
        let socket0 = base.join("admin.sock");
        let socket1 = base.join("admin-1.sock");
        relayed = relayed
            .replace(
                &format!("127.0.0.1:{}", sb.proxy_port()),
                &format!("127.0.0.1:{port1}"),
            )
            .replace(
                &socket0.to_string_lossy().to_string(),
                &socket1.to_string_lossy(),
            );
        let config1 = base.join("kohaproxy-1.toml");
        std::fs::write(&config1, relayed).map_err(|e| format!("write config: {e}"))?;
        let proxies = vec![
            Proxy {
                config: sb.config_path(),
                port: sb.proxy_port(),
                socket: socket0,
                log: base.join("proxy-0.log"),
                binary,
                child: None,
            },
            Proxy {
                config: config1,
                port: port1,
                socket: socket1,
                log: base.join("proxy-1.log"),
                binary,
                child: None,
            },
        ];
        let mut world = World {
            sb,
            proxies,
            relays,
            galera,
        };
        for p in &mut world.proxies {
            p.start()?;
        }
        for p in &world.proxies {
            wait(
                "a proxy to know the master",
                Duration::from_secs(30),
                || proxy_master(&p.socket).is_some(),
            )?;
        }
        Ok(world)
    }

    /// Carries out `fault`; what to undo and when, and the outcome.
    pub(super) fn apply(
        &mut self,
        fault: Fault,
        now: Instant,
    ) -> (Option<(Instant, Undo)>, String) {
        let outcome = |r: std::result::Result<String, String>| match r {
            Ok(text) => format!("ok: {}", first_line(&text)),
            Err(e) => format!("refused: {}", first_line(&e)),
        };
        match fault {
            Fault::KillServer { server, down } => {
                let r = self.sb().kill(&self.name(server), Signal::Kill);
                (
                    Some((now + down, Undo::StartServer(server))),
                    outcome(r.map(|_| String::new()).map_err(|e| e.to_string())),
                )
            }
            Fault::PauseServer { server, down } => {
                let r = self.sb().kill(&self.name(server), Signal::Stop);
                (
                    Some((now + down, Undo::ContinueServer(server))),
                    outcome(r.map(|_| String::new()).map_err(|e| e.to_string())),
                )
            }
            Fault::RestartServer { server } => {
                let name = self.name(server);
                let r = self
                    .sb()
                    .kill(&name, Signal::Term)
                    .map_err(|e| e.to_string())
                    .and_then(|_| self.start_server(server));
                (None, outcome(r.map(|_| String::new())))
            }
            Fault::KillProxy { proxy, down } => {
                if let Some(p) = self.proxies.get_mut(proxy) {
                    p.kill();
                }
                (Some((now + down, Undo::StartProxy(proxy))), "ok".into())
            }
            Fault::CutLink { server, down } => {
                if let Some(r) = self.relays.get(server) {
                    r.cut();
                }
                (Some((now + down, Undo::HealLink(server))), "ok".into())
            }
            Fault::BlackholeLink { server, down } => {
                if let Some(r) = self.relays.get(server) {
                    r.blackhole();
                }
                (Some((now + down, Undo::HealLink(server))), "ok".into())
            }
            Fault::Switchover { via } => {
                let socket = self.proxies[via.min(self.proxies.len() - 1)].socket.clone();
                (None, outcome(admin(&socket, "SWITCHOVER")))
            }
            Fault::Maintenance { server, down } => {
                let sql = format!("SET SERVER {} MAINTENANCE", self.name(server));
                let r = admin(&self.proxies[0].socket, &sql);
                let undo = r.is_ok().then_some((now + down, Undo::Online(server)));
                (undo, outcome(r))
            }
            Fault::Backup => (None, outcome(admin(&self.proxies[0].socket, "BACKUP NOW"))),
        }
    }

    /// Undoes one fault; the outcome.
    pub(super) fn undo(&mut self, undo: Undo) -> String {
        let r = match undo {
            Undo::StartServer(s) => self.start_server(s),
            Undo::ContinueServer(s) => self
                .sb()
                .kill(&self.name(s), Signal::Cont)
                .map_err(|e| e.to_string()),
            Undo::StartProxy(p) => self.proxies[p].start(),
            Undo::HealLink(s) => {
                if let Some(r) = self.relays.get(s) {
                    r.heal();
                }
                Ok(())
            }
            Undo::Online(s) => admin(
                &self.proxies[0].socket,
                &format!("SET SERVER {} ONLINE", self.name(s)),
            )
            .map(|_| ()),
        };
        match r {
            Ok(()) => "ok".into(),
            Err(e) => format!("failed: {}", first_line(&e)),
        }
    }

    /// Starts a server that is down (waiting up to 30 s for a clean shutdown to end).
    pub(super) fn start_server(&self, server: usize) -> std::result::Result<(), String> {
        let name = self.name(server);
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            match self.sb().start(&name) {
                Ok(()) => return Ok(()),
                Err(kohaproxy_sandbox::SandboxError::AlreadyRunning { .. })
                    if Instant::now() < until =>
                {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    /// Undoes whatever is left (a fault the run ended in), then waits until every server
    /// runs, exactly one is writable, both proxies name it and every server has its data.
    pub(super) fn heal(&mut self) -> Result<Healed> {
        for r in &self.relays {
            r.heal();
        }
        let names: Vec<String> = self.sb().servers().iter().map(|s| s.name.clone()).collect();
        let rows = self.sb().status().map_err(|e| format!("status: {e}"))?;
        for row in rows {
            match row.process {
                ProcessState::Stopped => {
                    let _ = self.sb().kill(&row.name, Signal::Cont);
                }
                ProcessState::Down => {
                    let i = names.iter().position(|n| *n == row.name).unwrap_or(0);
                    self.start_server(i)?;
                }
                ProcessState::Alive => {}
            }
        }
        for p in &mut self.proxies {
            if !p.running() {
                p.start()?;
            }
        }
        for n in &names {
            let _ = admin(&self.proxies[0].socket, &format!("SET SERVER {n} ONLINE"));
        }
        if self.galera {
            return self.heal_galera();
        }
        let master = wait_value("one master both proxies name", HEAL_DEADLINE, || {
            let writable = writable_servers(self.sb());
            let [one] = writable.as_slice() else {
                return None;
            };
            self.proxies
                .iter()
                .all(|p| proxy_master(&p.socket).as_deref() == Some(one.as_str()))
                .then(|| one.clone())
        })?;
        // Every server converges to the master's data, or a proxy reports it diverged
        // (it then gets no traffic and waits for the operator).
        let until = Instant::now() + HEAL_DEADLINE;
        loop {
            let diverged = self.diverged();
            let others: Vec<&str> = names
                .iter()
                .map(String::as_str)
                .filter(|n| !diverged.iter().any(|d| d == n))
                .collect();
            match wait_converged(self.sb(), &others, Duration::from_secs(10)) {
                Ok(_) => return Ok(Healed { master, diverged }),
                Err(e) if Instant::now() >= until => return Err(format!("converge: {e}")),
                Err(_) => {}
            }
        }
    }

    /// [`World::heal`] on Galera: every node Synced in one Primary component and both
    /// proxies naming the same writer. (That every node holds the same rows is checked
    /// after the workloads stop: under writes, two nodes' checksums are taken at different
    /// moments.)
    pub(super) fn heal_galera(&self) -> Result<Healed> {
        self.sb()
            .wait_galera_synced(HEAL_DEADLINE)
            .map_err(|e| format!("nodes Synced: {e}"))?;
        let master = wait_value("one writer both proxies name", HEAL_DEADLINE, || {
            let first = proxy_master(&self.proxies[0].socket)?;
            self.proxies
                .iter()
                .all(|p| proxy_master(&p.socket).as_deref() == Some(first.as_str()))
                .then_some(first)
        })?;
        Ok(Healed {
            master,
            diverged: Vec::new(),
        })
    }

    /// The servers a proxy's SHOW SERVERS notes as diverged.
    pub(super) fn diverged(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for p in &self.proxies {
            for line in admin(&p.socket, "SHOW SERVERS").unwrap_or_default().lines() {
                let cols: Vec<&str> = line.split('\t').collect();
                let note = cols.get(NOTE_COLUMN).copied().unwrap_or("");
                if note.contains("diverged") {
                    if let Some(name) = cols.first() {
                        if !out.iter().any(|n| n == name) {
                            out.push(name.to_string());
                        }
                    }
                }
            }
        }
        out
    }
}

/// The line that says what happened: the client's `ERROR ...` line when there is one (on
/// an error the mariadb CLI first echoes the statement between rows of dashes), else the
/// first line.
pub(super) fn first_line(text: &str) -> String {
    let text = text.trim();
    text.lines()
        .find(|l| l.starts_with("ERROR"))
        .or_else(|| text.lines().next())
        .unwrap_or("")
        .chars()
        .take(160)
        .collect()
}

pub(super) fn wait(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) -> Result<()> {
    wait_value(what, limit, || cond().then_some(()))
}

pub(super) fn wait_value<T>(
    what: &str,
    limit: Duration,
    mut cond: impl FnMut() -> Option<T>,
) -> Result<T> {
    let until = Instant::now() + limit;
    loop {
        if let Some(v) = cond() {
            return Ok(v);
        }
        if Instant::now() >= until {
            return Err(format!("{what}: not within {limit:?}"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
