//! The end-to-end harness: a real sandbox cluster (mariadbd processes) with the real
//! `kohaproxy` binary in front of it. Everything listens on 127.0.0.1, on free ports, and
//! everything started here is stopped by pid when the `Env` is dropped.
#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod failover;
pub mod raw;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use kohaproxy_sandbox::{Sandbox, SandboxGuard, UpOptions};

/// A sandbox cluster plus a running proxy in front of it.
pub struct Env {
    /// The proxy process (dropped first: stopped before the servers).
    pub proxy: Option<ProxyProcess>,
    /// The cluster.
    pub sandbox: SandboxGuard,
    /// Owns the directory; removed last.
    _dir: tempfile::TempDir,
}

/// A `kohaproxy run` child process, killed on drop.
pub struct ProxyProcess {
    child: Child,
    /// Its log file.
    pub log: PathBuf,
}

impl ProxyProcess {
    /// The process id (to read its /proc entries: memory, open file descriptors).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free TCP port on 127.0.0.1 (bound then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port on 127.0.0.1")
}

impl Env {
    /// A master with `replicas` replicas and the proxy in front, with the config as the
    /// sandbox writes it.
    pub fn start(replicas: usize) -> Env {
        Env::start_with(replicas, |_| {})
    }

    /// Like `start`, letting the test edit the proxy config text before the proxy starts.
    pub fn start_with(replicas: usize, edit: impl FnOnce(&mut String)) -> Env {
        Env::up(
            |dir| {
                let mut opts = UpOptions::new(dir);
                opts.replicas = replicas;
                opts
            },
            edit,
        )
    }

    /// A Galera cluster of `nodes` nodes and the proxy in front, with the config as the
    /// sandbox writes it.
    pub fn start_galera(nodes: usize) -> Env {
        Env::up(|dir| UpOptions::galera(dir, nodes), |_| {})
    }

    /// Starts the sandbox `options` makes for a directory (on a free proxy port), lets
    /// `edit` change the proxy config text, and starts the proxy.
    fn up(options: impl FnOnce(PathBuf) -> UpOptions, edit: impl FnOnce(&mut String)) -> Env {
        let dir = tempfile::Builder::new()
            .prefix("kp")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let mut opts = options(dir.path().join("sb"));
        opts.proxy_port = free_port();
        let sandbox = SandboxGuard(Sandbox::up(&opts).expect("sandbox up"));
        let config = sandbox.0.config_path();
        let mut text = std::fs::read_to_string(&config).expect("read proxy config");
        edit(&mut text);
        std::fs::write(&config, text).expect("write proxy config");
        let mut env = Env {
            proxy: None,
            sandbox,
            _dir: dir,
        };
        env.start_proxy();
        env
    }

    /// The sandbox.
    pub fn sb(&self) -> &Sandbox {
        &self.sandbox.0
    }

    /// Starts (or restarts) the proxy and waits until it greets clients.
    pub fn start_proxy(&mut self) {
        self.start_proxy_with("proxy.log", &[]);
    }

    /// Starts (or restarts) the proxy with `vars` added to its environment, logging to
    /// `log_name` in the sandbox directory, and waits until it greets clients.
    pub fn start_proxy_with(&mut self, log_name: &str, vars: &[(&str, &str)]) {
        self.proxy = None;
        let log = self.sb().dir().join(log_name);
        self.proxy = Some(spawn_proxy_with(
            &self.sb().config_path(),
            log,
            self.proxy_port(),
            vars,
        ));
    }

    /// The running proxy's process id.
    pub fn pid(&self) -> u32 {
        self.proxy.as_ref().expect("proxy running").pid()
    }

    /// Sends SIGTERM to the proxy (by its pid), as a service manager would.
    pub fn terminate_proxy(&self) {
        let pid = self.pid();
        let status = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {pid} failed");
    }

    /// Waits up to `limit` for the proxy process to exit by itself; returns how long it took.
    pub fn wait_proxy_exit(&mut self, limit: Duration) -> Option<Duration> {
        let start = Instant::now();
        let proxy = self.proxy.as_mut()?;
        while start.elapsed() < limit {
            if let Ok(Some(_)) = proxy.child.try_wait() {
                return Some(start.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// What the proxy logged so far.
    pub fn proxy_log(&self) -> String {
        self.proxy
            .as_ref()
            .and_then(|p| std::fs::read_to_string(&p.log).ok())
            .unwrap_or_default()
    }

    /// The proxy's port.
    pub fn proxy_port(&self) -> u16 {
        self.sb().proxy_port()
    }

    /// The master's port (for direct comparisons).
    pub fn master_port(&self) -> u16 {
        self.sb().master_port()
    }

    /// mysql_async options for `user`/`password` on `port`, database `db`.
    pub fn opts(port: u16, user: &str, password: &str, db: Option<&str>) -> mysql_async::Opts {
        mysql_async::OptsBuilder::default()
            .ip_or_hostname("127.0.0.1")
            .tcp_port(port)
            .user(Some(user))
            .pass(Some(password))
            .db_name(db)
            .prefer_socket(false)
            .into()
    }

    /// koha/koha on the proxy, database koha.
    pub fn proxy_opts(&self) -> mysql_async::Opts {
        Env::opts(self.proxy_port(), "koha", "koha", Some("koha"))
    }

    /// koha/koha directly on the master, database koha.
    pub fn direct_opts(&self) -> mysql_async::Opts {
        Env::opts(self.master_port(), "koha", "koha", Some("koha"))
    }

    /// Runs the `mariadb` client as koha on `port` with `args`, `stdin` fed in.
    pub fn mariadb(port: u16, args: &[&str], stdin: &[u8]) -> Output {
        run_client("mariadb", port, args, stdin)
    }

    /// Runs `mariadb-dump` as koha on `port` with `args`.
    pub fn mariadb_dump(port: u16, args: &[&str]) -> Output {
        run_client("mariadb-dump", port, args, b"")
    }
}

/// Starts `kohaproxy run --config CONFIG` logging to `log`, and waits until it listens on
/// `port` (it is killed when the returned value is dropped).
pub fn spawn_proxy(config: &Path, log: PathBuf, port: u16) -> ProxyProcess {
    spawn_proxy_with(config, log, port, &[])
}

/// [`spawn_proxy`] with `vars` added to the proxy's environment.
pub fn spawn_proxy_with(
    config: &Path,
    log: PathBuf,
    port: u16,
    vars: &[(&str, &str)],
) -> ProxyProcess {
    let child = Command::new(env!("CARGO_BIN_EXE_kohaproxy"))
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .envs(vars.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("proxy log"))
        .spawn()
        .expect("spawn kohaproxy");
    let proxy = ProxyProcess { child, log };
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "proxy did not listen: {}",
            std::fs::read_to_string(&proxy.log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    proxy
}

/// Runs a MariaDB command-line tool against 127.0.0.1:`port` as koha/koha.
fn run_client(tool: &str, port: u16, args: &[&str], stdin: &[u8]) -> Output {
    use std::io::Write;
    let mut child = Command::new(tool)
        .arg("--no-defaults")
        .args(["-h127.0.0.1", "--protocol=TCP", "-ukoha", "-pkoha"])
        .arg(format!("-P{port}"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {tool}: {e}"));
    let mut input = child.stdin.take().expect("stdin");
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().expect("wait");
    let _ = writer.join();
    out
}

/// sysbench `test` as koha/koha on 127.0.0.1:`port`, database `sbtest`, 4 tables of
/// `rows` rows; the caller adds the rest (threads, time, `prepare`/`run`).
pub fn sysbench(port: u16, test: &str, rows: u32) -> Command {
    let mut cmd = Command::new("sysbench");
    cmd.arg(test).args([
        "--db-driver=mysql",
        "--mysql-host=127.0.0.1",
        &format!("--mysql-port={port}"),
        "--mysql-user=koha",
        "--mysql-password=koha",
        "--mysql-db=sbtest",
        "--tables=4",
        &format!("--table-size={rows}"),
    ]);
    cmd
}

/// Asserts a command succeeded, showing its stderr if not; returns its stdout.
pub fn ok(out: Output, what: &str) -> Vec<u8> {
    assert!(
        out.status.success(),
        "{what} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The repository's shared/ folder (Koha schema and sample data), beside the repo.
pub fn shared_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared")
}

/// A second (third, ...) kohaproxy in front of an `Env`'s sandbox: the sandbox's config
/// with its own port, admin socket and log, changed by the test's `edit`.
pub struct Peer {
    /// Its client port.
    pub port: u16,
    /// Its config file.
    pub config: PathBuf,
    /// Its admin socket.
    pub socket: PathBuf,
    /// Its log file.
    pub log: PathBuf,
    process: Option<ProxyProcess>,
}

impl Peer {
    /// Starts a proxy called `name` with the sandbox's config as `edit` changes it.
    pub fn new(env: &Env, name: &str, edit: impl FnOnce(String) -> String) -> Peer {
        let dir = env.sb().dir();
        let port = free_port();
        let socket = dir.join(format!("admin-{name}.sock"));
        let text = std::fs::read_to_string(env.sb().config_path()).expect("read config");
        let text = edit(text)
            .replace(
                &format!("127.0.0.1:{}", env.proxy_port()),
                &format!("127.0.0.1:{port}"),
            )
            .replace(
                &dir.join("admin.sock").to_string_lossy().to_string(),
                &socket.to_string_lossy(),
            );
        let config = dir.join(format!("kohaproxy-{name}.toml"));
        std::fs::write(&config, text).expect("write config");
        let mut peer = Peer {
            port,
            config,
            socket,
            log: dir.join(format!("proxy-{name}.log")),
            process: None,
        };
        peer.start();
        peer
    }

    /// Starts it (SIGKILLs the running process first, as a crash would).
    pub fn start(&mut self) {
        self.process = None;
        self.process = Some(spawn_proxy(&self.config, self.log.clone(), self.port));
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}
