//! Backups against a real sandbox with the real proxy: taken off a paused replica while
//! sysbench writes through the proxy, restored into a fresh server that then replicates
//! from the master to an identical state; retention; and failures (a write error on the
//! target, the process killed mid-backup, the replica killed mid-dump) that leave earlier
//! backups intact, nothing that looks finished, and replication running.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::Env;
use kohaproxy_sandbox::{Sandbox, SandboxGuard, Signal, UpOptions};

/// The bound on every wait: generous for a loaded 2-core machine.
const DEADLINE: Duration = Duration::from_secs(60);

fn kohaproxy(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kohaproxy"))
        .args(args)
        .env("RUST_LOG", "info")
        .output()
        .expect("run kohaproxy")
}

fn text(out: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn config(env: &Env) -> String {
    env.sb().config_path().to_string_lossy().into_owned()
}

fn admin(env: &Env, sql: &str) -> Result<String, String> {
    kohaproxy_faults::admin(&env.sb().dir().join("admin.sock"), sql)
}

/// Runs `sql` as root on sandbox server `name`, tab-separated rows.
fn sql(sb: &Sandbox, name: &str, sql: &str) -> String {
    sb.sql(name, sql)
        .unwrap_or_else(|e| panic!("{name}: {sql}: {e}"))
}

/// Runs `sql` as root on 127.0.0.1:`port`.
fn sql_port(port: u16, sql: &str) -> String {
    let out = Command::new("mariadb")
        .args([
            "--no-defaults",
            "-h127.0.0.1",
            "--protocol=TCP",
            "-uroot",
            "-N",
            "-B",
        ])
        .arg(format!("-P{port}"))
        .args(["-e", sql])
        .output()
        .expect("run mariadb");
    assert!(out.status.success(), "{sql} on {port}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Polls `cond` every 50 ms until it returns `Some`, up to [`DEADLINE`].
fn wait_for<T>(what: &str, mut cond: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = cond() {
            return v;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "{what}: not within {DEADLINE:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether `name`'s replication threads are (IO, SQL) running.
fn threads(sb: &Sandbox, name: &str) -> (bool, bool) {
    let status = sb.status().unwrap_or_default();
    let r = status
        .iter()
        .find(|s| s.name == name)
        .and_then(|s| s.replication.clone());
    r.map_or((false, false), |r| {
        (r.io_running == "Yes", r.sql_running == "Yes")
    })
}

/// Backup directories that look finished (no `.partial` / `.failed` suffix).
fn finished_dirs(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.path().is_dir())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.') && !n.contains('.'))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// `(id, state)` of every backup, newest first, from `kohaproxy backup list`.
fn list(config: &str) -> Vec<(String, String)> {
    let out = kohaproxy(&["backup", "list", "--config", config]);
    assert!(out.status.success(), "backup list: {}", text(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1)
        .map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            let state = cols
                .iter()
                .find(|c| {
                    [
                        "ok",
                        "verified",
                        "failed",
                        "failed:",
                        "running",
                        "interrupted",
                    ]
                    .contains(c)
                })
                .map(|s| s.trim_end_matches(':').to_owned())
                .unwrap_or_default();
            (cols[0].to_owned(), state)
        })
        .collect()
}

/// The per-second 95th percentile latencies sysbench reported, by second.
fn latencies(report: &str) -> Vec<(u64, f64)> {
    report
        .lines()
        .filter_map(|l| {
            let second = l
                .strip_prefix("[ ")?
                .split('s')
                .next()?
                .trim()
                .parse()
                .ok()?;
            let lat = l
                .split("lat (ms,95%): ")
                .nth(1)?
                .split_whitespace()
                .next()?;
            Some((second, lat.parse().ok()?))
        })
        .collect()
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.iter().sum::<f64>() / v.len() as f64
}

fn sysbench(port: u16, test: &str, extra: &[&str]) -> Command {
    let mut cmd = common::sysbench(port, test, 5000);
    cmd.args(extra);
    cmd
}

/// Kills a child we started, by pid (dropping it does not).
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_backup_under_write_load_restores_and_the_restored_server_replicates_to_identical() {
    let env = Env::start(2);
    let sb = env.sb();
    sql(sb, "db1", "CREATE DATABASE sbtest");
    // A Koha-like database with a trigger, a view, a routine and an account of its own.
    sql(
        sb,
        "db1",
        "CREATE DATABASE koha_lib; \
         CREATE TABLE koha_lib.issues (id INT PRIMARY KEY AUTO_INCREMENT, item INT, \
           note VARCHAR(80) CHARACTER SET utf8mb4, raw BLOB); \
         CREATE TABLE koha_lib.action_logs (id INT PRIMARY KEY AUTO_INCREMENT, issue INT); \
         CREATE TRIGGER koha_lib.log_issue AFTER INSERT ON koha_lib.issues FOR EACH ROW \
           INSERT INTO koha_lib.action_logs (issue) VALUES (NEW.id); \
         CREATE VIEW koha_lib.open_issues AS SELECT COUNT(*) AS n FROM koha_lib.issues; \
         CREATE PROCEDURE koha_lib.count_issues() SELECT COUNT(*) FROM koha_lib.issues; \
         USE koha_lib; INSERT INTO koha_lib.issues (item, note, raw) SELECT seq, CONCAT('prêt ', seq), \
           UNHEX(MD5(seq)) FROM seq_1_to_3000; \
         CREATE USER 'opac'@'%' IDENTIFIED BY 'opac-pw'; \
         GRANT SELECT ON koha_lib.* TO 'opac'@'%'",
    );
    let port = env.proxy_port();
    let prepared = sysbench(port, "oltp_write_only", &["prepare"])
        .output()
        .expect("sysbench prepare");
    assert!(prepared.status.success(), "{}", text(&prepared));

    // Writes (whose latency is measured) and autocommit reads through the proxy.
    let log_dir = sb.dir();
    let writes_log = log_dir.join("writes.log");
    let writer = Killed(
        sysbench(
            port,
            "oltp_write_only",
            &["--threads=1", "--time=16", "--report-interval=1", "run"],
        )
        .stdout(std::fs::File::create(&writes_log).expect("log"))
        .stderr(Stdio::null())
        .spawn()
        .expect("sysbench writes"),
    );
    let reader = Killed(
        sysbench(
            port,
            "oltp_read_only",
            // Two sessions: the proxy spreads them over both replicas.
            &[
                "--threads=2",
                "--time=16",
                "--skip_trx=on",
                "--db-ps-mode=disable",
                "run",
            ],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sysbench reads"),
    );
    let load_started = Instant::now();
    std::thread::sleep(Duration::from_secs(4));

    let before_backup = load_started.elapsed();
    let said = admin(&env, "BACKUP NOW").expect("BACKUP NOW");
    let words: Vec<&str> = said.split_whitespace().collect();
    assert_eq!(words.first(), Some(&"backup"), "{said}");
    let id = words[1].to_owned();
    let source = words[4].trim_end_matches(';').to_owned();
    assert!(source == "db2" || source == "db3", "{said}");
    eprintln!("{}", said.trim());

    // While the source is out of rotation, the proxy sends it nothing.
    let mut out_of_rotation: Option<(u64, u64, u32)> = None;
    let state = wait_for("backup finished", || {
        let servers = admin(&env, "SHOW SERVERS").unwrap_or_default();
        if let Some(cols) = servers
            .lines()
            .map(|l| l.split('\t').collect::<Vec<_>>())
            .find(|c| c.first() == Some(&source.as_str()))
        {
            let statements: u64 = cols.get(9).and_then(|s| s.parse().ok()).unwrap_or(0);
            let note = cols.get(kohaproxy_faults::NOTE_COLUMN);
            if note.is_some_and(|n| n.contains("maintenance")) {
                let seen = out_of_rotation.get_or_insert((statements, statements, 0));
                seen.1 = statements;
                seen.2 += 1;
            }
        }
        let backups = admin(&env, "SHOW BACKUPS").unwrap_or_default();
        let row = backups.lines().find(|l| l.starts_with(&id))?.to_owned();
        let cols: Vec<&str> = row.split('\t').collect();
        let state = cols.get(6).copied().unwrap_or("");
        (state != "running").then(|| row.clone())
    });
    let after_backup = load_started.elapsed();
    assert!(state.contains("\tok\t"), "backup did not succeed: {state}");
    let (first, last, polls) = out_of_rotation.expect("the source was never seen out of rotation");
    eprintln!("source {source} out of rotation for {polls} polls: statements {first} -> {last}");
    assert!(
        first > 0,
        "{source} served no reads before the backup: the check says nothing"
    );
    assert_eq!(first, last, "reads reached {source} while it was paused");

    let listed = admin(&env, "SHOW BACKUPS").unwrap();
    assert!(listed.lines().count() == 1, "{listed}");
    // Never the master unless allowed; names are checked.
    let refused = admin(&env, "BACKUP NOW FROM db1").unwrap_err();
    assert!(refused.contains("db1 is the master"), "{refused}");
    let refused = admin(&env, "BACKUP NOW FROM db9").unwrap_err();
    assert!(refused.contains("no server is called db9"), "{refused}");
    let backup_dir = sb.dir().join("backups").join(&id);
    let manifest = kohaproxy_backup::Manifest::read(&backup_dir).expect("manifest");
    assert_eq!(manifest.source, source);
    let gtid = manifest.gtid_position.clone();
    assert!(!gtid.is_empty(), "{manifest:?}");
    assert!(
        manifest.tables.iter().any(|t| t.table == "sbtest1")
            && manifest.tables.iter().any(|t| t.table == "issues"),
        "{manifest:?}"
    );

    // The source replicates again.
    wait_for("source replicating again", || {
        (threads(sb, &source) == (true, true)).then_some(())
    });

    // The restore test: a throw-away server gets the counts and checksums recorded
    // from the paused replica at the recorded GTID.
    let verified = kohaproxy(&[
        "backup",
        "verify",
        &id,
        "--config",
        &config(&env),
        "--restore-test",
    ]);
    assert!(verified.status.success(), "{}", text(&verified));
    assert!(
        text(&verified).contains("counts and checksums match"),
        "{}",
        text(&verified)
    );

    // A fresh server restored from the backup and made a replica of the master.
    let fresh_dir = sb.dir().join("fresh");
    let mut up = UpOptions::new(&fresh_dir);
    up.replicas = 0;
    up.proxy_port = common::free_port();
    let fresh = SandboxGuard(Sandbox::up(&up).expect("fresh server"));
    let fresh_port = fresh.servers()[0].port;
    let master = manifest.master.clone().unwrap_or_else(|| "db1".into());
    let restore = || {
        kohaproxy(&[
            "backup",
            "restore",
            &id,
            "--config",
            &config(&env),
            "--to",
            &format!("127.0.0.1:{fresh_port}"),
            "--as-replica-of",
            &master,
        ])
    };
    // A fresh server has the sandbox master's server_id (1): refused before any load.
    let clash = restore();
    assert!(!clash.status.success(), "{}", text(&clash));
    assert!(
        text(&clash).contains("has server_id 1, as db1 (127.0.0.1:"),
        "{}",
        text(&clash)
    );
    let tables = sql_port(
        fresh_port,
        "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'koha_lib'",
    );
    assert_eq!(tables.trim(), "0", "nothing loaded");
    sql_port(fresh_port, "SET GLOBAL server_id = 77");
    let restored = restore();
    assert!(restored.status.success(), "{}", text(&restored));

    // Let the load end, then the restored server must catch up to an identical state.
    let mut writer = writer;
    let _ = writer.0.wait();
    drop(reader);
    let pos = sql(sb, &master, "SELECT @@gtid_binlog_pos");
    let waited = sql_port(
        fresh_port,
        &format!("SELECT MASTER_GTID_WAIT('{}', 60)", pos.trim()),
    );
    assert_eq!(
        waited.trim(),
        "0",
        "the restored server did not catch up to {pos}"
    );
    let checksum = "CHECKSUM TABLE sbtest.sbtest1, sbtest.sbtest2, sbtest.sbtest3, \
                    sbtest.sbtest4, koha_lib.issues, koha_lib.action_logs";
    let on_master = sql(sb, &master, checksum);
    let on_fresh = sql_port(fresh_port, checksum);
    assert_eq!(
        on_master, on_fresh,
        "restored replica differs from the master"
    );
    // Koha's account and the application's own came back with their grants.
    let koha = Env::mariadb(
        fresh_port,
        &["-N", "-e", "SELECT COUNT(*) FROM sbtest.sbtest1"],
        b"",
    );
    assert!(
        koha.status.success(),
        "koha login on the restored server: {}",
        text(&koha)
    );
    let opac = sql_port(fresh_port, "SHOW GRANTS FOR 'opac'@'%'");
    assert!(opac.contains("GRANT SELECT ON `koha_lib`.*"), "{opac}");
    let routines = sql_port(fresh_port, "SHOW PROCEDURE STATUS WHERE Db = 'koha_lib'");
    assert!(routines.contains("count_issues"), "{routines}");

    // Write latency on the master before, during and after the backup (reported, not
    // asserted: speed lives in benchmarks).
    let report = std::fs::read_to_string(&writes_log).unwrap_or_default();
    let lat = latencies(&report);
    let phase = |from: Duration, to: Duration| -> Vec<f64> {
        lat.iter()
            .filter(|(s, _)| *s > from.as_secs() && *s <= to.as_secs().max(from.as_secs() + 1))
            .map(|(_, l)| *l)
            .collect()
    };
    let before = phase(Duration::ZERO, before_backup);
    let during = phase(before_backup, after_backup);
    let after = phase(after_backup, Duration::from_secs(100));
    eprintln!(
        "RUN backup {id} from {source} at {gtid}: {} files, {} bytes, duration {} ms, replica paused {} ms; \
         write latency p95 per second (ms): before {:.2} ({} s), during {:.2} ({} s), after {:.2} ({} s)",
        manifest.files.len(),
        manifest.bytes(),
        manifest.duration_ms,
        manifest.paused_ms,
        mean(&before),
        before.len(),
        mean(&during),
        during.len(),
        mean(&after),
        after.len(),
    );
}

/// A `mariadb-dump` that waits while `slow` exists (a window to break things in).
fn slow_dump(dir: &Path) -> (PathBuf, PathBuf) {
    let flag = dir.join("slow");
    let script = dir.join("slow-mariadb-dump");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nwhile [ -f '{}' ]; do sleep 0.1; done\nexec mariadb-dump \"$@\"\n",
            flag.display()
        ),
    )
    .expect("write wrapper");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    (script, flag)
}

/// The scheduling policy (`/proc/PID/sched`; 0 normal, 5 SCHED_IDLE) of each running
/// process whose command line mentions `program`.
fn policies_of(program: &Path) -> Vec<String> {
    let needle = program.to_string_lossy().into_owned();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let dir = entry.path();
        let cmdline = std::fs::read(dir.join("cmdline")).unwrap_or_default();
        if !String::from_utf8_lossy(&cmdline).contains(&needle) {
            continue;
        }
        let sched = std::fs::read_to_string(dir.join("sched")).unwrap_or_default();
        if let Some(line) = sched.lines().find(|l| l.starts_with("policy")) {
            found.push(line.split(':').nth(1).unwrap_or("").trim().to_owned());
        }
    }
    found
}

fn spawn_run(config: &str, stderr: &Path) -> Killed {
    Killed(
        Command::new(env!("CARGO_BIN_EXE_kohaproxy"))
            .args(["backup", "run", "--config", config])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(stderr).expect("log"))
            .spawn()
            .expect("kohaproxy backup run"),
    )
}

#[test]
fn retention_and_failures_keep_earlier_backups_and_replication() {
    let tools = tempfile::tempdir().expect("tempdir");
    let (script, slow) = slow_dump(tools.path());
    let mut env = Env::start_with(1, |text| {
        text.push_str(&format!(
            "keep = 2\nmariadb_dump = \"{}\"\n",
            script.display()
        ));
    });
    let sb = env.sb();
    let cfg = config(&env);
    let backups = sb.dir().join("backups");
    // About 1 MB of SQL that compresses poorly.
    sql(
        sb,
        "db1",
        "CREATE DATABASE koha_data; \
         CREATE TABLE koha_data.items (id INT PRIMARY KEY, barcode CHAR(32), h CHAR(64)); \
         USE koha_data; INSERT INTO koha_data.items SELECT seq, MD5(seq), SHA2(seq, 256) FROM seq_1_to_10000",
    );
    sb.wait_replication(DEADLINE).expect("replication");

    // Retention: N + 3 backups leave the N newest.
    let mut ids = Vec::new();
    for _ in 0..5 {
        let out = kohaproxy(&["backup", "run", "--config", &cfg]);
        assert!(out.status.success(), "{}", text(&out));
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let id = stdout
            .lines()
            .last()
            .and_then(|l| l.split_whitespace().nth(1))
            .expect("backup id")
            .to_owned();
        ids.push(id);
    }
    let kept: Vec<String> = ids[3..].to_vec();
    assert_eq!(
        finished_dirs(&backups),
        kept,
        "retention keeps the 2 newest"
    );
    assert_eq!(
        list(&cfg),
        vec![
            (kept[1].clone(), "ok".into()),
            (kept[0].clone(), "ok".into())
        ]
    );

    // One at a time; then the process killed while the replica is paused.
    std::fs::write(&slow, "").expect("flag");
    let first_log = sb.dir().join("first.log");
    let mut first = spawn_run(&cfg, &first_log);
    wait_for("replica paused", || {
        let paused = threads(sb, "db2") == (true, false);
        let dumping = std::fs::read_to_string(&first_log)
            .unwrap_or_default()
            .contains("backup started");
        (paused && dumping).then_some(())
    });
    // The dump's programs run at the default `backup.priority`: SCHED_IDLE.
    let policies = wait_for("the dump's programs", || {
        let p = policies_of(&script);
        (!p.is_empty()).then_some(p)
    });
    assert!(policies.iter().all(|p| p == "5"), "{policies:?}");
    let second = kohaproxy(&["backup", "run", "--config", &cfg]);
    assert!(!second.status.success());
    assert!(
        text(&second).contains("a backup is already running"),
        "{}",
        text(&second)
    );
    let _ = first.0.kill();
    let _ = first.0.wait();
    assert_eq!(
        threads(sb, "db2"),
        (true, false),
        "paused by the killed backup"
    );
    let listed = list(&cfg);
    assert_eq!(listed[0].1, "interrupted", "{listed:?}");
    std::fs::remove_file(&slow).expect("flag");
    let recovered = kohaproxy(&["backup", "run", "--config", &cfg]);
    assert!(recovered.status.success(), "{}", text(&recovered));
    // The next backup resumes the replica; or the proxy did first (its scheduler retries
    // every 30 s while a replica is marked paused, and may tick just after the kill).
    let resumed = "replication resumed on the replica an interrupted backup had paused";
    assert!(
        text(&recovered).contains(resumed) || env.proxy_log().contains(resumed),
        "{}\n--- proxy:\n{}",
        text(&recovered),
        env.proxy_log()
    );
    assert_eq!(threads(sb, "db2"), (true, true));
    let listed = list(&cfg);
    assert_eq!(listed[0].1, "ok", "{listed:?}");
    assert_eq!(listed[1].1, "failed", "{listed:?}");
    let good: Vec<String> = finished_dirs(&backups);
    assert_eq!(good.len(), 2, "{good:?}");

    // The target cannot take a file (a file size limit: the same write error as a full
    // disk): the backup fails, nothing else changes.
    let full = Command::new("sh")
        .args([
            "-c",
            "trap '' XFSZ; ulimit -f 100; exec \"$0\" backup run --config \"$1\"",
            env!("CARGO_BIN_EXE_kohaproxy"),
            &cfg,
        ])
        .env("RUST_LOG", "info")
        .output()
        .expect("run under a file size limit");
    assert!(!full.status.success(), "{}", text(&full));
    assert!(text(&full).contains("File too large"), "{}", text(&full));
    assert_eq!(finished_dirs(&backups), good, "earlier backups untouched");
    assert_eq!(list(&cfg)[0].1, "failed");
    assert_eq!(threads(sb, "db2"), (true, true), "replication resumed");

    // Replication restarted under the dump (by hand, or a failover re-pointing the
    // replica): the data moved, so the backup is refused.
    std::fs::write(&slow, "").expect("flag");
    let moved_log = sb.dir().join("moved.log");
    let mut moved = spawn_run(&cfg, &moved_log);
    wait_for("replica paused", || {
        (threads(sb, "db2") == (true, false)).then_some(())
    });
    sql(sb, "db2", "START SLAVE SQL_THREAD");
    sql(
        sb,
        "db1",
        "INSERT INTO koha_data.items VALUES (20001, 'moved', 'moved')",
    );
    sb.wait_replication(DEADLINE).expect("replication");
    std::fs::remove_file(&slow).expect("flag");
    let status = moved.0.wait().expect("wait");
    let said = std::fs::read_to_string(&moved_log).unwrap_or_default();
    assert!(!status.success(), "{said}");
    assert!(said.contains("data changed during the dump"), "{said}");
    assert_eq!(finished_dirs(&backups), good, "earlier backups untouched");
    assert_eq!(threads(sb, "db2"), (true, true));

    // The replica killed mid-dump.
    std::fs::write(&slow, "").expect("flag");
    let third_log = sb.dir().join("third.log");
    let mut third = spawn_run(&cfg, &third_log);
    wait_for("replica paused", || {
        (threads(sb, "db2") == (true, false)).then_some(())
    });
    sb.kill("db2", Signal::Kill).expect("kill db2");
    std::fs::remove_file(&slow).expect("flag");
    let status = third.0.wait().expect("wait");
    assert!(
        !status.success(),
        "{}",
        std::fs::read_to_string(&third_log).unwrap_or_default()
    );
    assert_eq!(finished_dirs(&backups), good, "earlier backups untouched");
    assert_eq!(list(&cfg)[0].1, "failed");
    sb.start("db2").expect("restart db2");
    wait_for("db2 replicating after its restart", || {
        (threads(sb, "db2") == (true, true)).then_some(())
    });

    // The proxy shut down while its backup has the replica paused: the backup stops, the
    // replica replicates again before the process exits.
    std::fs::write(&slow, "").expect("flag");
    wait_for("proxy sees db2 healthy", || admin(&env, "BACKUP NOW").ok());
    wait_for("replica paused by the proxy's backup", || {
        (threads(sb, "db2") == (true, false)).then_some(())
    });
    env.terminate_proxy();
    let exited = env.wait_proxy_exit(DEADLINE);
    assert!(
        exited.is_some(),
        "the proxy did not exit:\n{}",
        env.proxy_log()
    );
    assert_eq!(
        threads(env.sb(), "db2"),
        (true, true),
        "{}",
        env.proxy_log()
    );
    std::fs::remove_file(&slow).expect("flag");
    let listed = kohaproxy(&["backup", "list", "--config", &cfg]);
    assert!(
        text(&listed).contains("failed: stopped: the proxy shut down"),
        "{}",
        text(&listed)
    );
    assert_eq!(finished_dirs(&backups), good, "earlier backups untouched");

    // What is left is intact.
    for id in &good {
        let out = kohaproxy(&["backup", "verify", id, "--config", &cfg]);
        assert!(out.status.success(), "{}", text(&out));
    }
    let after = kohaproxy(&["backup", "run", "--config", &cfg]);
    assert!(after.status.success(), "{}", text(&after));
    assert_eq!(finished_dirs(&backups).len(), 2);
    // A damaged file is caught.
    let newest = finished_dirs(&backups).pop().expect("a backup");
    let file = backups.join(&newest).join("koha_data/tables/items.sql.zst");
    let mut bytes = std::fs::read(&file).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&file, bytes).expect("write");
    let out = kohaproxy(&["backup", "verify", &newest, "--config", &cfg]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("koha_data/tables/items.sql.zst: sha256 differs"),
        "{}",
        text(&out)
    );
}

#[test]
fn without_replicas_the_master_is_used_only_when_allowed() {
    let env = Env::start(0);
    let sb = env.sb();
    let cfg = config(&env);
    sql(
        sb,
        "db1",
        "CREATE DATABASE koha_solo; \
         CREATE TABLE koha_solo.borrowers (id INT PRIMARY KEY, name VARCHAR(40)); \
         USE koha_solo; INSERT INTO koha_solo.borrowers SELECT seq, CONCAT('b', seq) \
         FROM seq_1_to_500",
    );
    let refused = kohaproxy(&["backup", "run", "--config", &cfg]);
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("no healthy replica to back up from")
            && text(&refused).contains("backup.allow_master is off"),
        "{}",
        text(&refused)
    );

    let mut allowed = std::fs::read_to_string(&cfg).expect("config");
    allowed.push_str("allow_master = true\n");
    std::fs::write(&cfg, allowed).expect("config");
    let out = kohaproxy(&["backup", "run", "--config", &cfg]);
    assert!(out.status.success(), "{}", text(&out));
    let id = list(&cfg)[0].0.clone();
    let m =
        kohaproxy_backup::Manifest::read(&sb.dir().join("backups").join(&id)).expect("manifest");
    assert_eq!(m.source_role, "master");
    let pos = sql(sb, "db1", "SELECT @@gtid_binlog_pos");
    assert_eq!(
        m.gtid_position,
        pos.trim(),
        "the position the dump recorded"
    );
    let verified = kohaproxy(&["backup", "verify", &id, "--config", &cfg, "--restore-test"]);
    assert!(verified.status.success(), "{}", text(&verified));
    assert!(
        text(&verified).contains("taken from the master"),
        "{}",
        text(&verified)
    );

    // A scheduled time passed while the proxy was down (the newest backup began two hours
    // ago, the schedule names an hour ago): the proxy takes it when it starts, once.
    let date = |args: &[&str]| {
        let out = Command::new("date").args(args).output().expect("date");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let dir = sb.dir().join("backups").join(&id);
    let mut m = kohaproxy_backup::Manifest::read(&dir).expect("manifest");
    m.started = date(&["-d", "-2 hours", "--iso-8601=seconds"]);
    m.write(&dir).expect("manifest");
    let mut text_cfg = std::fs::read_to_string(&cfg).expect("config");
    text_cfg = text_cfg.replace(
        "schedule = \"off\"",
        &format!(
            "schedule = \"daily {}\"",
            date(&["-d", "-1 hour", "+%H:%M"])
        ),
    );
    std::fs::write(&cfg, text_cfg).expect("config");
    let mut env = env;
    env.start_proxy();
    let made_up = wait_for("the missed backup taken at start", || {
        let l = list(&cfg);
        (l.len() == 2 && l[0].1 == "ok").then_some(l)
    });
    assert_ne!(made_up[0].0, id);
    assert!(
        env.proxy_log().contains("a scheduled backup was missed"),
        "{}",
        env.proxy_log()
    );
    // Started again: the made-up backup is newer than the missed time, nothing more.
    // (The restarted proxy logs to a fresh file; the scheduler decides on a missed
    // backup right after it logs the schedule.)
    env.start_proxy();
    wait_for("the restarted scheduler's decision", || {
        env.proxy_log().contains("backups scheduled").then_some(())
    });
    assert!(
        !env.proxy_log().contains("a scheduled backup was missed"),
        "{}",
        env.proxy_log()
    );
    assert_eq!(list(&cfg).len(), 2, "{:?}", list(&cfg));
}
