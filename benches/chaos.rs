//! The chaos soak: for a bounded time, two kohaproxy instances in front of one sandbox
//! (master and two replicas) carry the write ledger (autocommit INSERTs and `BEGIN ...
//! COMMIT` transactions) and Koha-shaped Perl DBI pages (the session row written through
//! proxy 0, read back through proxy 1), while a schedule drawn from a seed
//! ([`kohaproxy_faults::chaos`]) injects SIGKILL, SIGSTOP/SIGCONT and clean restarts of any
//! server, SIGKILL and restart of either proxy, cuts and blackholes of proxy 1's link to a
//! server (proxy 1 reaches every server through a [`FaultRelay`], so replicas it re-points
//! replicate through those links too), switchovers, maintenance, and a backup every
//! minute.
//!
//! Invariants, checked during the run (sampled) and at the end, after everything is healed:
//! no acknowledged write lost; no stale read; never two writable servers at one sample;
//! every server converged to the master's data; every backup verified, ok, or failed with a
//! reason; no replica left paused. A failure prints the seed and the timeline; the same
//! seed replays the same schedule.
//!
//! With `GALERA=1` the sandbox is a three-node Galera cluster instead: at most one node
//! out of service at a time (quorum), no "one writable server" sampling (every node is
//! writable; the proxies send writes to one), and the end waits for every node Synced
//! with the same data, both proxies naming the same writer.
//!
//! ```sh
//! cargo bench --bench chaos                       # 10 minutes, a seed from the clock
//! GALERA=1 SEEDS="1 2" cargo bench --bench chaos  # the same on Galera
//! SEED=42 DURATION=3600 cargo bench --bench chaos # one hour, seed 42
//! SEEDS="1 2 3" DURATION=1200 cargo bench --bench chaos
//! ```
//!
//! The markdown report goes to stdout and to `target/bench-results/chaos-STAMP.md`.
//! `tests/benches.rs` runs three minutes of a fixed seed in the test suite.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kohaproxy_faults::chaos::{Event, Schedule, Shape};
use kohaproxy_faults::report;
use kohaproxy_faults::{
    admin, checksums_equal, koha_opts, longest_outage, proxy_master, verify_blocking,
    writable_servers, Ledger, LedgerHandle, LedgerOptions,
};

#[path = "chaos/world.rs"]
mod world;

use world::{wait, Cluster, Proxy, Undo, World};

type Result<T> = std::result::Result<T, String>;

/// Two writable servers for longer than this fails the run (a woken hung master is
/// fenced within a probe round or two).
const FENCE_BOUND: Duration = Duration::from_secs(2);

/// How long the end waits for the healed cluster to be whole and converged.
const HEAL_DEADLINE: Duration = Duration::from_secs(120);

/// One soak run.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// The schedule's seed.
    pub seed: u64,
    /// The whole run (faults stop 20 s before its end).
    pub duration: Duration,
    /// The kohaproxy binary.
    pub binary: &'static str,
    /// `backup.rebuild_diverged_after_s` of both proxies (`None`: the default, manual).
    pub rebuild_after_s: Option<u64>,
    /// A three-node Galera cluster instead of master and two replicas.
    pub galera: bool,
}

/// The ledger through proxy 0 until stopped.
fn start_ledger(port: u16, transactions: bool) -> LedgerHandle {
    let mut opts = LedgerOptions::new(koha_opts(port));
    opts.clients = if transactions { 2 } else { 4 };
    opts.transactions = transactions;
    if transactions {
        opts.database = "koha_ledger_txn".into();
    }
    opts.duration = Duration::from_secs(24 * 3600);
    Ledger::spawn(opts)
}

/// What happened to one scheduled event.
#[derive(Debug, Clone)]
struct Done {
    /// When it actually started (from the start of the run).
    at: Duration,
    event: Event,
    /// `ok`, or why the cluster or the proxy refused it.
    outcome: String,
}

/// Koha-shaped pages through the proxies (`tests/perl/koha_pages.pl`) for `seconds`.
fn start_pages(write_port: u16, read_port: u16, seconds: u64) -> Result<Child> {
    Command::new("perl")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/perl/koha_pages.pl"))
        .args(["--write-port", &write_port.to_string()])
        .args(["--read-port", &read_port.to_string()])
        .args(["--seconds", &seconds.to_string()])
        .args(["--workers", "2", "--max-connect-wait", "120"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("run koha_pages.pl: {e}"))
}

/// A `key=value` figure of koha_pages.pl's summary line.
fn page_figure<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

/// The backups SHOW BACKUPS lists: (id, state, error) per row (columns id, started,
/// source, gtid, bytes, duration_ms, state, error).
fn backups(socket: &Path) -> Vec<(String, String, String)> {
    admin(socket, "SHOW BACKUPS")
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            let col = |i: usize| cols.get(i).copied().unwrap_or("").to_string();
            (col(0), col(6), col(7))
        })
        .collect()
}

/// Carries out the schedule from `started`, each fault and its undoing when due; returns
/// when the last one is undone.
fn carry_out(
    world: &mut World<'_>,
    schedule: &Schedule,
    started: Instant,
    done: &mut Vec<Done>,
) -> Instant {
    let mut pending: Vec<(Instant, Undo)> = Vec::new();
    let mut events = schedule.events.iter().peekable();
    loop {
        let now = Instant::now();
        pending.sort_by_key(|(due, _)| *due);
        if let Some(&(due, undo)) = pending.first() {
            if due <= now {
                pending.remove(0);
                let outcome = world.undo(undo);
                if outcome != "ok" {
                    eprintln!(
                        "chaos {:>8.3} s  undo {undo:?}: {outcome}",
                        started.elapsed().as_secs_f64()
                    );
                }
                continue;
            }
        }
        if let Some(event) = events.peek() {
            if started + event.at <= now {
                let event = **event;
                events.next();
                let at = started.elapsed();
                let (undo, outcome) = world.apply(event.fault, Instant::now());
                eprintln!(
                    "chaos {:>8.3} s  {}: {outcome}",
                    at.as_secs_f64(),
                    event.fault
                );
                if let Some(u) = undo {
                    pending.push(u);
                }
                done.push(Done { at, event, outcome });
                continue;
            }
        }
        if events.peek().is_none() && pending.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Instant::now()
}

/// Runs one soak; its markdown report, or the report with why it failed.
pub fn run(opts: Options) -> Result<String> {
    let shape = if opts.galera {
        Shape::galera(opts.duration)
    } else {
        Shape::new(opts.duration)
    };
    let schedule = Schedule::draw(opts.seed, &shape);
    let cluster = Cluster::up(opts.galera)?;
    let sb = &cluster.sb.0;
    let mut world = World::start(sb, opts.binary, opts.rebuild_after_s, opts.galera)?;
    let writes = start_ledger(world.proxies[0].port, false);
    let transactions = start_ledger(world.proxies[0].port, true);
    let pages = start_pages(
        world.proxies[0].port,
        world.proxies[1].port,
        opts.duration.as_secs(),
    )?;
    let started = Instant::now();
    // Stretches of samples with two writable servers: (first, last, servers). One is
    // expected briefly when a hung master wakes after a failover (writable until a proxy
    // fences it, one probe round); longer than FENCE_BOUND fails the run.
    let stop = AtomicBool::new(false);
    let split_brain: Mutex<Vec<(Duration, Duration, Vec<String>)>> = Mutex::default();
    let samples = AtomicU64::new(0);
    let sample = || {
        let mut open = false;
        // On Galera every node is writable by design.
        while !opts.galera && !stop.load(Ordering::Relaxed) {
            let writable = writable_servers(sb);
            let now = started.elapsed();
            let two = writable.len() > 1;
            if let Ok(mut v) = split_brain.lock() {
                match (two, open, v.last_mut()) {
                    (true, true, Some(last)) => last.1 = now,
                    (true, _, _) => v.push((now, now, writable)),
                    (false, _, _) => {}
                }
            }
            open = two;
            samples.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(250));
        }
    };
    let mut done: Vec<Done> = Vec::new();
    let (faults_end, healed) = std::thread::scope(|scope| {
        scope.spawn(sample);
        let ended = carry_out(&mut world, &schedule, started, &mut done);
        let healed = world.heal();
        // The quiet tail: the workloads run on a whole cluster.
        std::thread::sleep((started + opts.duration).saturating_duration_since(Instant::now()));
        stop.store(true, Ordering::Relaxed);
        (ended, healed)
    });
    let writes = writes.stop_and_join().map_err(|e| format!("ledger: {e}"))?;
    let transactions = transactions
        .stop_and_join()
        .map_err(|e| format!("ledger: {e}"))?;
    let pages = pages
        .wait_with_output()
        .map_err(|e| format!("koha_pages.pl: {e}"))?;
    let pages_line = String::from_utf8_lossy(&pages.stdout).trim().to_string();

    let mut failures: Vec<String> = Vec::new();
    let (master, diverged) = match healed {
        Ok(h) => (h.master, h.diverged),
        Err(e) => {
            failures.push(format!("the cluster did not heal: {e}"));
            let master = proxy_master(&world.proxies[0].socket).unwrap_or_else(|| "db1".into());
            (master, world.diverged())
        }
    };
    let port = world
        .sb()
        .server(&master)
        .map(|s| s.port)
        .ok_or("no master")?;
    let mut verdicts = Vec::new();
    for (what, report) in [("autocommit", &writes), ("transactions", &transactions)] {
        match verify_blocking(report, koha_opts(port)) {
            Ok(v) => {
                if !v.lost.is_empty() || !v.torn.is_empty() {
                    failures.push(format!("{what} ledger: {v}"));
                }
                verdicts.push((what, v));
            }
            Err(e) => failures.push(format!("{what} ledger: cannot verify: {e}")),
        }
    }
    let names: Vec<String> = world
        .sb()
        .servers()
        .iter()
        .map(|s| s.name.clone())
        .collect();
    let all: Vec<&str> = names
        .iter()
        .map(String::as_str)
        .filter(|n| !diverged.iter().any(|d| d == n))
        .collect();
    if opts.galera {
        // Every node has applied what it received (an empty receive queue, one position).
        if let Err(e) = world.sb().wait_replication(HEAL_DEADLINE) {
            failures.push(format!("the nodes did not catch up: {e}"));
        }
    }
    for table in ["koha_ledger.acks", "koha_ledger_txn.acks"] {
        if !checksums_equal(world.sb(), &all, table).unwrap_or(false) {
            failures.push(format!("{table} differs between servers"));
        }
    }
    let stale: u64 = page_figure(&pages_line, "stale")
        .and_then(|v| v.parse().ok())
        .unwrap_or(u64::MAX);
    if stale != 0 {
        let shown: Vec<String> = String::from_utf8_lossy(&pages.stderr)
            .lines()
            .filter(|l| l.contains("STALE"))
            .map(str::to_string)
            .collect();
        failures.push(format!(
            "stale reads: {pages_line}\n  {}",
            shown.join("\n  ")
        ));
    }
    if !pages.status.success() {
        failures.push(format!(
            "koha_pages.pl failed: {pages_line} {}",
            String::from_utf8_lossy(&pages.stderr)
                .lines()
                .rev()
                .take(5)
                .collect::<Vec<_>>()
                .join(" / ")
        ));
    }
    let split_brain = split_brain.lock().map(|v| v.clone()).unwrap_or_default();
    for (first, last, servers) in &split_brain {
        if *last - *first > FENCE_BOUND {
            failures.push(format!(
                "two writable servers {servers:?} from {:.3} s to {:.3} s",
                first.as_secs_f64(),
                last.as_secs_f64()
            ));
        }
    }
    if !diverged.is_empty() {
        eprintln!("chaos: servers reported diverged at the end: {diverged:?}");
    }
    // Backups: none still running, each failure with a reason; no replica left paused.
    let _ = wait("backups to finish", Duration::from_secs(60), || {
        !backups(&world.proxies[0].socket)
            .iter()
            .any(|(_, state, _)| state == "running")
    });
    let listed = backups(&world.proxies[0].socket);
    for (id, state, error) in &listed {
        let fine = matches!(state.as_str(), "ok" | "verified")
            || (state.starts_with("failed") && !error.is_empty() && error != "NULL");
        if !fine {
            failures.push(format!("backup {id}: {state} {error}"));
        }
    }
    if let Ok(rows) = world
        .sb()
        .status()
        .map(|r| if opts.galera { Vec::new() } else { r })
    {
        for row in rows
            .iter()
            .filter(|r| r.name != master && !diverged.contains(&r.name))
        {
            let running = row
                .replication
                .as_ref()
                .is_some_and(|t| t.io_running == "Yes" && t.sql_running == "Yes");
            if !running {
                failures.push(format!(
                    "{} is not replicating at the end: {row:?}",
                    row.name
                ));
            }
        }
    }

    // The report.
    let reports = [&writes, &transactions];
    let outage = longest_outage(&reports, started + shape.warmup, faults_end);
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    for r in reports {
        for (e, n) in r.error_summary(usize::MAX) {
            let code = e.split(':').next().unwrap_or(&e).to_string();
            *errors.entry(code).or_default() += n;
        }
    }
    let logs: String = world.proxies.iter().map(Proxy::log_text).collect();
    // Galera: a writer moved on its own is a failover, one moved by a person a switchover.
    let galera_switchovers = logs.matches("(switchover) to ").count();
    let failovers = logs.matches("promoted\"").count()
        + logs.matches(" promoted ").count()
        + logs.matches("Galera writer moved from ").count()
        - galera_switchovers;
    let switchovers = logs.matches("switchover done").count() + galera_switchovers;
    let rebuilds = logs.matches(" rebuilt from backup ").count();
    let rebuilds_failed = logs.matches("rebuild failed:").count();
    let mut by_kind: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for d in &done {
        let e = by_kind.entry(d.event.fault.kind()).or_default();
        if d.outcome.starts_with("ok") {
            e.0 += 1;
        } else {
            e.1 += 1;
        }
    }
    let acked: usize = verdicts.iter().map(|(_, v)| v.acked).sum();
    let lost: usize = verdicts.iter().map(|(_, v)| v.lost.len()).sum();
    let mut md = String::new();
    md.push_str(&format!(
        "## Chaos soak{}: seed {}, {} s\n\n",
        if opts.galera { " (Galera)" } else { "" },
        opts.seed,
        opts.duration.as_secs()
    ));
    md.push_str(if opts.galera {
        "Sandbox: three Galera nodes (one out of service at a time), "
    } else {
        "Sandbox: master + 2 replicas, "
    });
    md.push_str(
        "two kohaproxy instances (proxy 1 through fault \
         relays), 4 autocommit + 2 transaction ledger clients through proxy 0, 2 Koha-page \
         workers writing through proxy 0 and reading through proxy 1. Diverged servers \
         rebuilt: ",
    );
    md.push_str(&match opts.rebuild_after_s {
        Some(n) => format!("on their own after {n} s.\n\n"),
        None => "only by `REBUILD` (the default; the soak types none).\n\n".into(),
    });
    md.push_str("| fault | carried out | refused |\n|---|---:|---:|\n");
    for (kind, (ok, refused)) in &by_kind {
        md.push_str(&format!("| {kind} | {ok} | {refused} |\n"));
    }
    md.push_str("\n| measure | value |\n|---|---|\n");
    md.push_str(&format!(
        "| failovers (promotions logged) | {failovers} |\n"
    ));
    md.push_str(&format!("| switchovers done | {switchovers} |\n"));
    md.push_str(&format!(
        "| diverged servers rebuilt / rebuilds failed | {rebuilds} / {rebuilds_failed} |\n"
    ));
    md.push_str(&format!("| writes acknowledged | {acked} |\n"));
    md.push_str(&format!("| acknowledged writes lost | {lost} |\n"));
    md.push_str(&format!("| Koha pages | {pages_line} |\n"));
    md.push_str(&format!(
        "| ledger client errors by code | {} |\n",
        errors
            .iter()
            .map(|(c, n)| format!("{c}: {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    md.push_str(&format!(
        "| longest write outage (no write acknowledged) | {} ms |\n",
        outage.as_millis()
    ));
    md.push_str(&format!(
        "| samples of writable servers / stretches with two (longest) | {} / {} ({} ms) |\n",
        samples.load(Ordering::Relaxed),
        split_brain.len(),
        split_brain
            .iter()
            .map(|(a, b, _)| (*b - *a).as_millis())
            .max()
            .unwrap_or(0)
    ));
    md.push_str(&format!("| servers reported diverged | {diverged:?} |\n"));
    md.push_str(&format!("| backups | {listed:?} |\n"));
    if failures.is_empty() {
        return Ok(md);
    }
    // The proxies' whole logs outlive the run's directory.
    let kept = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-results");
    let mut kept_logs = Vec::new();
    if std::fs::create_dir_all(&kept).is_ok() {
        for (i, p) in world.proxies.iter().enumerate() {
            let to = kept.join(format!("chaos-{}-proxy-{i}.log", opts.seed));
            if std::fs::copy(&p.log, &to).is_ok() {
                kept_logs.push(to.display().to_string());
            }
        }
    }
    let mut timeline = String::new();
    for d in &done {
        timeline.push_str(&format!(
            "{:>8.3} s (planned {:>8.3})  {}: {}\n",
            d.at.as_secs_f64(),
            d.event.at.as_secs_f64(),
            d.event.fault,
            d.outcome
        ));
    }
    Err(format!(
        "{md}\nFAILED (seed {}; rerun with {}SEED={} DURATION={}):\n- {}\n\nTimeline:\n{timeline}\nThe proxies' logs: {kept_logs:?}\n--- proxy 0 log (tail):\n{}\n--- proxy 1 log (tail):\n{}",
        opts.seed,
        if opts.galera { "GALERA=1 " } else { "" },
        opts.seed,
        opts.duration.as_secs(),
        failures.join("\n- "),
        tail(&world.proxies[0].log_text(), 60),
        tail(&world.proxies[1].log_text(), 60),
    ))
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn main() {
    // `cargo bench` passes --bench; nothing else is accepted.
    let duration = std::env::var("DURATION")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(600);
    let clock_seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(1);
    let seeds: Vec<u64> = std::env::var("SEEDS")
        .or_else(|_| std::env::var("SEED"))
        .map(|v| {
            v.split_whitespace()
                .filter_map(|s| s.parse().ok())
                .collect()
        })
        .unwrap_or_else(|_| vec![clock_seed]);
    let (report, failed) = report::run_all(seeds, |seed| {
        run(Options {
            seed,
            duration: Duration::from_secs(duration),
            binary: env!("CARGO_BIN_EXE_kohaproxy"),
            rebuild_after_s: std::env::var("REBUILD_DIVERGED_AFTER_S")
                .ok()
                .and_then(|v| v.parse().ok()),
            galera: std::env::var("GALERA").is_ok_and(|v| v == "1"),
        })
    });
    report::finish(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-results"),
        "chaos",
        &report,
        failed,
    )
}
