//! End to end: a real three-node Galera cluster in a temporary directory.
//!
//! Run with `--nocapture` to see how long `up`, the rejoins and the whole test take.
use std::time::{Duration, Instant};

use kohaproxy_sandbox::{
    ClusterKind, ProcessState, Role, Sandbox, SandboxGuard, Signal, UpOptions,
};

mod common;
use common::{as_koha, processes_under, TestResult};

const WAIT: Duration = Duration::from_secs(60);

/// Reads on `name` after waiting for every write the cluster had (wsrep_sync_wait=1):
/// the rows of koha.g, then @@gtid_binlog_pos and WSREP_LAST_SEEN_GTID().
fn causal_read(
    sb: &Sandbox,
    name: &str,
) -> Result<(String, String, String), Box<dyn std::error::Error>> {
    let out = sb.sql(
        name,
        "SET SESSION wsrep_sync_wait = 1; \
         SELECT GROUP_CONCAT(v ORDER BY v SEPARATOR ',') FROM koha.g; \
         SELECT @@gtid_binlog_pos, WSREP_LAST_SEEN_GTID()",
    )?;
    let lines: Vec<&str> = out.lines().collect();
    let [rows, gtids] = lines.as_slice() else {
        return Err(format!("unexpected output from {name}: {out:?}").into());
    };
    let (binlog, seen) = gtids
        .split_once('\t')
        .ok_or_else(|| format!("unexpected GTID row from {name}: {gtids:?}"))?;
    Ok((rows.to_string(), binlog.to_string(), seen.to_string()))
}

#[test]
fn three_nodes_write_anywhere_kill_rejoin_bootstrap_down() -> TestResult {
    let test_start = Instant::now();
    let tmp = tempfile::tempdir()?;
    let t = Instant::now();
    let sb = SandboxGuard(Sandbox::up(&UpOptions::galera(tmp.path(), 3))?);
    let up_time = t.elapsed();

    // Shape and files.
    assert_eq!(sb.kind(), ClusterKind::Galera);
    let names: Vec<&str> = sb.servers().iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["db1", "db2", "db3"]);
    assert!(sb.servers().iter().all(|s| s.role == Role::Node));
    let config = std::fs::read_to_string(sb.config_path())?;
    assert!(
        config.contains("[cluster]\nkind = \"galera\"\n"),
        "{config}"
    );
    for s in sb.servers() {
        assert!(config.contains(&format!(
            "name = \"{}\"\naddress = \"127.0.0.1:{}\"\n",
            s.name, s.port
        )));
        let st = sb.wsrep_status(&s.name)?;
        assert!(st.is_synced(), "{}: {st:?}", s.name);
        assert_eq!(st.cluster_size, 3);
        assert!(!st.read_only, "{} is read-only", s.name);
    }
    let reopened = Sandbox::open(tmp.path())?;
    assert_eq!(reopened.servers(), sb.servers());
    assert_eq!(reopened.kind(), ClusterKind::Galera);

    // A write on db1 is read on db3 with causal reads, and has one GTID everywhere.
    sb.sql(
        "db1",
        "CREATE TABLE koha.g (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(20)); \
         INSERT INTO koha.g (v) VALUES ('a-db1')",
    )?;
    let (rows, db3_gtid, _) = causal_read(&sb, "db3")?;
    assert_eq!(rows, "a-db1");
    let written = sb
        .sql("db1", "SELECT @@gtid_binlog_pos")?
        .trim()
        .to_string();
    assert!(!written.is_empty());
    assert_eq!(db3_gtid, written);
    for name in ["db1", "db2", "db3"] {
        let (rows, binlog, seen) = causal_read(&sb, name)?;
        assert_eq!(rows, "a-db1", "{name}");
        assert_eq!(binlog, written, "gtid_binlog_pos on {name}");
        assert_eq!(seen, written, "WSREP_LAST_SEEN_GTID() on {name}");
    }
    // Every node takes writes, from the app user too.
    let db2_port = sb.server("db2").map(|s| s.port).ok_or("no db2")?;
    let (ok, err) = as_koha(db2_port, "INSERT INTO koha.g (v) VALUES ('b-db2')")?;
    assert!(ok, "koha cannot write on db2: {err}");
    sb.wait_replication(WAIT)?;
    let (rows, _, _) = causal_read(&sb, "db1")?;
    assert_eq!(rows, "a-db1,b-db2");

    // SIGKILL db2: db1 and db3 form a Primary component of two and take writes.
    let old_pid = sb.pid("db2").ok_or("db2 has no pid")?;
    sb.kill("db2", Signal::Kill)?;
    assert_eq!(sb.pid("db2"), None);
    let t = Instant::now();
    sb.wait_galera_synced(WAIT)?;
    let evicted = t.elapsed();
    for name in ["db1", "db3"] {
        let st = sb.wsrep_status(name)?;
        assert_eq!(
            (st.cluster_status.as_str(), st.cluster_size),
            ("Primary", 2)
        );
    }
    let status = sb.status()?;
    assert_eq!(status[1].process, ProcessState::Down);
    assert!(status[0].is_up() && status[2].is_up());
    assert_eq!(
        status[0]
            .wsrep
            .as_ref()
            .map(|w| w.local_state_comment.as_str()),
        Some("Synced")
    );
    sb.sql("db1", "INSERT INTO koha.g (v) VALUES ('c-db2-down')")?;

    // `start db2` brings it back Synced, with the write it missed.
    let t = Instant::now();
    sb.start("db2")?;
    let rejoin = t.elapsed();
    assert_ne!(sb.pid("db2"), Some(old_pid));
    assert!(sb.wsrep_status("db2")?.is_synced());
    sb.wait_galera_synced(WAIT)?;
    assert_eq!(sb.wsrep_status("db1")?.cluster_size, 3);
    let (rows, db2_gtid, _) = causal_read(&sb, "db2")?;
    assert_eq!(rows, "a-db1,b-db2,c-db2-down");
    assert_eq!(db2_gtid, sb.sql("db1", "SELECT @@gtid_binlog_pos")?.trim());
    sb.wait_replication(WAIT)?;

    // SIGKILL all: `start db1` bootstraps a new cluster, `start db2` rejoins it.
    sb.sql("db3", "INSERT INTO koha.g (v) VALUES ('d-before-all-die')")?;
    sb.wait_replication(WAIT)?;
    for name in ["db1", "db2", "db3"] {
        sb.kill(name, Signal::Kill)?;
    }
    assert!(sb.status()?.iter().all(|s| s.process == ProcessState::Down));
    let t = Instant::now();
    sb.start("db1")?;
    let bootstrap = t.elapsed();
    let st = sb.wsrep_status("db1")?;
    assert!(st.is_synced());
    assert_eq!(st.cluster_size, 1);
    let t = Instant::now();
    sb.start("db2")?;
    let rejoin_after_bootstrap = t.elapsed();
    sb.wait_galera_synced(WAIT)?;
    assert_eq!(sb.wsrep_status("db2")?.cluster_size, 2);
    let (rows, _, _) = causal_read(&sb, "db2")?;
    assert_eq!(rows, "a-db1,b-db2,c-db2-down,d-before-all-die");
    sb.sql("db2", "INSERT INTO koha.g (v) VALUES ('e-after')")?;
    let (rows, _, _) = causal_read(&sb, "db1")?;
    assert!(rows.ends_with(",e-after"), "{rows}");

    // Down: nothing of this sandbox is left running.
    sb.down()?;
    for n in &names {
        assert_eq!(sb.pid(n), None, "{n} still running");
    }
    assert_eq!(processes_under(tmp.path()), Vec::<u32>::new());
    assert!(sb.status()?.iter().all(|s| s.process == ProcessState::Down));

    eprintln!(
        "galera timings: up {:.1} s; two-node Primary after SIGKILL {:.1} s; rejoin after \
         SIGKILL {:.1} s; bootstrap {:.1} s; rejoin after bootstrap {:.1} s; whole test {:.1} s",
        up_time.as_secs_f64(),
        evicted.as_secs_f64(),
        rejoin.as_secs_f64(),
        bootstrap.as_secs_f64(),
        rejoin_after_bootstrap.as_secs_f64(),
        test_start.elapsed().as_secs_f64()
    );
    Ok(())
}
