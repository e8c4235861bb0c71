//! Helpers of the failover tests (tests/failover.rs, tests/failover_crash.rs): the
//! proxy's view through its admin console, bounded waits, the write ledger through one or
//! two proxies, and the check that ends every scenario (converged servers, no acknowledged
//! write lost, one writable master).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use kohaproxy_faults::{
    checksums_equal, verify_blocking, wait_converged, writable_servers, Ledger, LedgerHandle,
    LedgerOptions, LedgerReport, Outcome,
};

use super::Env;

/// The bound on every wait: generous for a loaded 2-core machine.
pub const DEADLINE: Duration = Duration::from_secs(40);

/// The admin console's socket of the sandbox's proxy config.
pub fn admin_socket(env: &Env) -> PathBuf {
    env.sb().dir().join("admin.sock")
}

pub fn admin(env: &Env, sql: &str) -> Result<String, String> {
    kohaproxy_faults::admin(&admin_socket(env), sql)
}

/// One server's row of SHOW SERVERS: (role, read_only, note).
pub fn server_row(env: &Env, name: &str) -> Option<(String, String, String)> {
    let row = kohaproxy_faults::server_row(&admin_socket(env), name)?;
    Some((row.role, row.read_only, row.note))
}

/// Runs `sql` on both replicas of a two-replica sandbox (db2 and db3).
pub fn on_replicas(env: &Env, sql: &str) {
    for replica in ["db2", "db3"] {
        if let Err(e) = env.sb().sql(replica, sql) {
            panic!("{replica}: {sql}: {e}");
        }
    }
}

/// The proxy's master (SHOW TOPOLOGY), if any.
pub fn proxy_master(env: &Env) -> Option<String> {
    kohaproxy_faults::proxy_master(&admin_socket(env))
}

/// Polls `cond` every 100 ms until it returns `Some`, up to [`DEADLINE`].
pub fn wait_for<T>(what: &str, cond: impl FnMut() -> Option<T>) -> T {
    poll(what, cond, String::new)
}

/// Like [`wait_for`], and a timeout shows the proxy's log.
pub fn wait_logged<T>(env: &Env, what: &str, cond: impl FnMut() -> Option<T>) -> T {
    poll(what, cond, || {
        format!("; the proxy's log:\n{}", env.proxy_log())
    })
}

/// Polls `cond` every 100 ms up to [`DEADLINE`]; a timeout panics with `what` and
/// `more()`.
fn poll<T>(what: &str, mut cond: impl FnMut() -> Option<T>, more: impl Fn() -> String) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = cond() {
            eprintln!("{what}: {:?}", start.elapsed());
            return v;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "{what}: not within {DEADLINE:?}{}",
            more()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The one writable server, when the proxy routes writes to it.
pub fn routed_master(env: &Env) -> Option<String> {
    match writable_servers(env.sb()).as_slice() {
        [one] if proxy_master(env).as_deref() == Some(one) => Some(one.clone()),
        _ => None,
    }
}

/// Waits until exactly one server is writable, the proxy routes to it, and it is not
/// `old`; returns its name.
pub fn wait_new_master(env: &Env, old: &str) -> String {
    wait_logged(env, &format!("a new master instead of {old}"), || {
        let writable = writable_servers(env.sb());
        match writable.as_slice() {
            [one] if one != old && proxy_master(env).as_deref() == Some(one) => Some(one.clone()),
            _ => None,
        }
    })
}

/// The other of db2 and db3 (the sandbox's replicas), once `new` of them is promoted.
pub fn other_replica(new: &str) -> &'static str {
    if new == "db2" {
        "db3"
    } else {
        "db2"
    }
}

/// Waits for a new master instead of db1 and for the other replica to follow it, then
/// lets the servers settle for a second; returns the new master.
pub fn wait_promoted_from_db1(env: &Env) -> String {
    let new = wait_new_master(env, "db1");
    wait_replica(env, other_replica(&new));
    std::thread::sleep(Duration::from_millis(1000));
    new
}

/// Waits until `name` replicates from the master with both threads running.
pub fn wait_replica(env: &Env, name: &str) {
    wait_for(&format!("{name} replicating again"), || {
        let (role, read_only, _) = server_row(env, name)?;
        (role == "replica" && read_only == "ON").then_some(())
    });
}

/// The ledger through the proxy: `clients` sessions writing until stopped.
pub fn ledger(env: &Env, clients: usize) -> LedgerHandle {
    let mut opts = LedgerOptions::new(env.proxy_opts());
    opts.clients = clients;
    opts.duration = Duration::from_secs(300);
    Ledger::spawn(opts)
}

/// The ledger through a second proxy on `port`: `clients` sessions writing until stopped,
/// into their own database (two ledgers starting together would pick the same client
/// ids).
pub fn second_ledger(port: u16, clients: usize) -> LedgerHandle {
    let mut opts = LedgerOptions::new(Env::opts(port, "koha", "koha", Some("koha")));
    opts.database = "koha_ledger2".into();
    opts.clients = clients;
    opts.duration = Duration::from_secs(300);
    Ledger::spawn(opts)
}

/// Direct koha options on server `name`.
pub fn direct(env: &Env, name: &str) -> mysql_async::Opts {
    let port = env.sb().server(name).expect("server").port;
    Env::opts(port, "koha", "koha", None)
}

/// Stops the ledger, waits for the cluster to converge, checks every acknowledged write is
/// on `master` and on every server in `all`, exactly one server is writable, and prints
/// the run. Returns the report.
pub fn settle_and_verify(
    env: &Env,
    scenario: &str,
    ledger: LedgerHandle,
    faults: &[Instant],
    master: &str,
    all: &[&str],
) -> LedgerReport {
    let report = ledger.stop_and_join().expect("ledger");
    let position = match wait_converged(env.sb(), all, DEADLINE) {
        Ok(p) => p,
        Err(e) => panic!(
            "servers converge: {e:?}; SHOW SERVERS:\n{}\nthe proxy's log:\n{}",
            admin(env, "SHOW SERVERS").unwrap_or_default(),
            env.proxy_log()
        ),
    };
    let verdict = verify_blocking(&report, direct(env, master)).expect("verify");
    let writable = writable_servers(env.sb());
    let rtos: Vec<String> = faults
        .iter()
        .map(|f| match report.rto(*f) {
            Some(d) => format!("{} ms", d.as_millis()),
            None => "none".into(),
        })
        .collect();
    eprintln!(
        "RUN {scenario}: RTO [{}], acknowledged {} lost {}, client errors {} ({:?}), \
         reconnects {}, longest write pause {} ms, writable {writable:?}, position {position}",
        rtos.join(", "),
        verdict.acked,
        verdict.lost.len(),
        report.errors().len(),
        report.error_summary(4),
        report.reconnects(),
        report.write_pause().as_millis(),
    );
    assert!(verdict.acked > 0, "{scenario}: nothing was acknowledged");
    assert!(
        verdict.lost.is_empty() && verdict.torn.is_empty() && verdict.unexpected == 0,
        "{scenario}: {verdict}"
    );
    assert_eq!(
        writable,
        vec![master.to_string()],
        "{scenario}: writable servers"
    );
    assert!(
        checksums_equal(env.sb(), all, "koha_ledger.acks").expect("checksums"),
        "{scenario}: the servers' ledgers differ"
    );
    report
}

/// The error codes clients saw, each once.
pub fn error_codes(report: &LedgerReport) -> Vec<Option<u16>> {
    let mut codes: Vec<Option<u16>> = report
        .errors()
        .iter()
        .map(|a| match &a.outcome {
            Outcome::Failed { code, .. } => *code,
            _ => None,
        })
        .collect();
    codes.sort();
    codes.dedup();
    codes
}

/// Writes a second proxy's config for `env`'s sandbox (its own port and admin socket
/// `admin2.sock`, `monitor_extra` added to its `[monitor]` section); returns its path and
/// port.
pub fn second_proxy_config(env: &Env, monitor_extra: &str) -> (PathBuf, u16) {
    let config = std::fs::read_to_string(env.sb().config_path()).expect("config");
    let port = super::free_port();
    let second = config
        .replace(
            &format!("listen = \"127.0.0.1:{}\"", env.proxy_port()),
            &format!("listen = \"127.0.0.1:{port}\""),
        )
        .replace("admin.sock", "admin2.sock")
        .replace("[monitor]\n", &format!("[monitor]\n{monitor_extra}"));
    let path = env.sb().dir().join("kohaproxy2.toml");
    std::fs::write(&path, second).expect("second config");
    (path, port)
}
