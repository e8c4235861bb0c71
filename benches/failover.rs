//! The failover benchmark: `ROUNDS` SIGKILL failovers in a row (each time the current
//! master, each old master restarted and rejoined before the next), then `SWITCHOVERS`
//! planned switchovers, all under continuous write load through the proxy, on a sandbox
//! with the default settings. Reports RTO (fault to the first acknowledged write started
//! after it) min / median / max, acknowledged writes lost, client errors and reconnects,
//! and for switchovers the write pause (the longest interval with no acknowledged write
//! around each one).
//!
//! ```sh
//! cargo bench --bench failover                 # 20 failovers, 10 switchovers, 8 clients
//! ROUNDS=5 SWITCHOVERS=3 cargo bench --bench failover
//! ```
//!
//! The markdown report goes to stdout and to `target/bench-results/failover-STAMP.md`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kohaproxy_faults::{
    admin, checksums_equal, proxy_master, server_row, verify_blocking, wait_converged,
    writable_servers, Ledger, LedgerOptions, LedgerReport,
};
use kohaproxy_sandbox::{Sandbox, SandboxGuard, Signal, UpOptions};

/// The bound on every wait.
const DEADLINE: Duration = Duration::from_secs(60);

type Result<T> = std::result::Result<T, String>;

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The proxy process, killed on drop.
struct Proxy(Child);

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> Result<u16> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

fn wait_for<T>(what: &str, mut cond: impl FnMut() -> Option<T>) -> Result<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = cond() {
            return Ok(v);
        }
        if start.elapsed() > DEADLINE {
            return Err(format!("{what}: not within {DEADLINE:?}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn role(socket: &Path, name: &str) -> Option<String> {
    server_row(socket, name).map(|r| r.role)
}

fn wait_new_master(sb: &Sandbox, socket: &Path, old: &str) -> Result<String> {
    wait_for(
        &format!("a master instead of {old}"),
        || match writable_servers(sb).as_slice() {
            [one] if one != old && proxy_master(socket).as_deref() == Some(one) => {
                Some(one.clone())
            }
            _ => None,
        },
    )
}

fn wait_replica(socket: &Path, name: &str) -> Result<()> {
    wait_for(&format!("{name} a replica again"), || {
        (role(socket, name).as_deref() == Some("replica")).then_some(())
    })
}

/// The longest interval without an acknowledged write completing in `[from, to]`.
fn pause_within(report: &LedgerReport, from: Instant, to: Instant) -> Duration {
    let mut acks: Vec<Instant> = report
        .attempts
        .iter()
        .filter(|a| a.outcome.is_acked() && a.completed >= from && a.completed <= to)
        .map(|a| a.completed)
        .collect();
    acks.sort();
    let mut longest = Duration::ZERO;
    let mut last = from;
    for t in acks {
        longest = longest.max(t - last);
        last = t;
    }
    longest.max(to - last)
}

fn stats(mut values: Vec<Duration>) -> (String, String, String) {
    if values.is_empty() {
        return ("-".into(), "-".into(), "-".into());
    }
    values.sort();
    let ms = |d: Duration| format!("{}", d.as_millis());
    (
        ms(values[0]),
        ms(values[values.len() / 2]),
        ms(values[values.len() - 1]),
    )
}

fn run() -> Result<String> {
    let rounds = env_number("ROUNDS", 20);
    let switchovers = env_number("SWITCHOVERS", 10);
    let clients = env_number("CLIENTS", 8);
    let dir = tempfile::Builder::new()
        .prefix("kpbench")
        .tempdir_in("/tmp")
        .map_err(|e| format!("tempdir: {e}"))?;
    let mut opts = UpOptions::new(dir.path().join("sb"));
    opts.replicas = 2;
    opts.proxy_port = free_port()?;
    let sb = SandboxGuard(Sandbox::up(&opts).map_err(|e| format!("sandbox: {e}"))?);
    let sb = &sb.0;
    let log = sb.dir().join("proxy.log");
    let child = Command::new(env!("CARGO_BIN_EXE_kohaproxy"))
        .args(["run", "--config"])
        .arg(sb.config_path())
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).map_err(|e| format!("log: {e}"))?)
        .spawn()
        .map_err(|e| format!("spawn kohaproxy: {e}"))?;
    let _proxy = Proxy(child);
    let socket: PathBuf = sb.dir().join("admin.sock");
    wait_for("the proxy's master", || proxy_master(&socket))?;

    let proxy_opts: mysql_async::Opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(sb.proxy_port())
        .user(Some("koha"))
        .pass(Some("koha"))
        .prefer_socket(false)
        .into();
    let mut lopts = LedgerOptions::new(proxy_opts);
    lopts.clients = clients;
    lopts.duration = Duration::from_secs(3600);
    let ledger = Ledger::spawn(lopts);
    std::thread::sleep(Duration::from_secs(2));

    let mut master = "db1".to_string();
    let mut faults = Vec::new();
    for round in 1..=rounds {
        let fault = Instant::now();
        sb.kill(&master, Signal::Kill)
            .map_err(|e| format!("kill: {e}"))?;
        let new = wait_new_master(sb, &socket, &master)?;
        faults.push(fault);
        eprintln!(
            "failover {round}/{rounds}: {master} -> {new} ({} ms to the new master)",
            fault.elapsed().as_millis()
        );
        std::thread::sleep(Duration::from_millis(500));
        sb.start(&master).map_err(|e| format!("restart: {e}"))?;
        wait_replica(&socket, &master)?;
        master = new;
        std::thread::sleep(Duration::from_millis(1000));
    }
    let mut switches = Vec::new();
    for i in 1..=switchovers {
        let at = Instant::now();
        let done = admin(&socket, "SWITCHOVER")?;
        eprintln!("switchover {i}/{switchovers}: {}", done.trim());
        let new = proxy_master(&socket).ok_or("no master after a switchover")?;
        wait_replica(&socket, &master)?;
        switches.push(at);
        master = new;
        std::thread::sleep(Duration::from_millis(1000));
    }
    std::thread::sleep(Duration::from_millis(1000));
    let report = ledger.stop_and_join().map_err(|e| format!("ledger: {e}"))?;
    let all = ["db1", "db2", "db3"];
    wait_converged(sb, &all, DEADLINE).map_err(|e| format!("converge: {e}"))?;
    let port = sb.server(&master).ok_or("master gone")?.port;
    let direct: mysql_async::Opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some("koha"))
        .pass(Some("koha"))
        .prefer_socket(false)
        .into();
    let verdict = verify_blocking(&report, direct).map_err(|e| format!("verify: {e}"))?;
    let same = checksums_equal(sb, &all, "koha_ledger.acks").unwrap_or(false);
    let writable = writable_servers(sb);

    let rtos: Vec<Duration> = faults.iter().filter_map(|f| report.rto(*f)).collect();
    let missing = faults.len() - rtos.len();
    let pauses: Vec<Duration> = switches
        .iter()
        .map(|s| {
            pause_within(
                &report,
                *s - Duration::from_millis(200),
                *s + Duration::from_secs(2),
            )
        })
        .collect();
    let switch_errors = report
        .errors()
        .iter()
        .filter(|a| {
            switches.iter().any(|s| {
                a.invoked >= *s - Duration::from_millis(200)
                    && a.invoked <= *s + Duration::from_secs(2)
            })
        })
        .count();
    let (rmin, rmed, rmax) = stats(rtos);
    let (pmin, pmed, pmax) = stats(pauses);
    let mut md = String::new();
    md.push_str("## Failover benchmark\n\n");
    md.push_str(&format!(
        "Sandbox: master + 2 replicas (semi-sync AFTER_SYNC), default monitor settings \
         (500 ms probes, fail_count 3), {clients} ledger clients writing autocommit \
         INSERTs through kohaproxy; all on this machine's cores.\n\n"
    ));
    md.push_str("| measure | value |\n|---|---|\n");
    md.push_str(&format!("| SIGKILL failovers | {} |\n", faults.len()));
    md.push_str(&format!(
        "| RTO min / median / max (ms) | {rmin} / {rmed} / {rmax} |\n"
    ));
    md.push_str(&format!(
        "| failovers with no write acknowledged after them | {missing} |\n"
    ));
    md.push_str(&format!("| switchovers | {} |\n", switches.len()));
    md.push_str(&format!(
        "| switchover write pause min / median / max (ms) | {pmin} / {pmed} / {pmax} |\n"
    ));
    md.push_str(&format!(
        "| client errors around switchovers | {switch_errors} |\n"
    ));
    md.push_str(&format!("| writes acknowledged | {} |\n", verdict.acked));
    md.push_str(&format!(
        "| acknowledged writes lost | {} |\n",
        verdict.lost.len()
    ));
    md.push_str(&format!(
        "| client errors (all) | {} {:?} |\n",
        report.errors().len(),
        report.error_summary(3)
    ));
    md.push_str(&format!(
        "| client reconnects | {} |\n",
        report.reconnects()
    ));
    md.push_str(&format!("| writable servers at the end | {writable:?} |\n"));
    md.push_str(&format!(
        "| the three servers' ledgers identical | {same} |\n"
    ));
    if !verdict.lost.is_empty() || writable.len() != 1 || !same {
        return Err(format!(
            "{md}\nFAILED: lost writes, several masters or diverged servers"
        ));
    }
    Ok(md)
}

fn main() {
    // `cargo bench` passes --bench; nothing else is accepted.
    match run() {
        Ok(md) => {
            println!("{md}");
            let stamp = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-results");
            if std::fs::create_dir_all(&out).is_ok() {
                let _ = std::fs::write(out.join(format!("failover-{stamp}.md")), &md);
            }
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
}
