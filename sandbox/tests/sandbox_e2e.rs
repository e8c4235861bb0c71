//! End to end: a real master and two replicas in a temporary directory.
use std::time::Duration;

use kohaproxy_sandbox::{ProcessState, Role, Sandbox, SandboxGuard, Signal, UpOptions};

mod common;
use common::{as_koha, processes_under, TestResult};

const WAIT: Duration = Duration::from_secs(30);

#[test]
fn master_two_replicas_write_replicate_kill_restart_down() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let sb = SandboxGuard(Sandbox::up(&UpOptions::new(tmp.path()))?);

    // Shape and files.
    let names: Vec<&str> = sb.servers().iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["db1", "db2", "db3"]);
    assert_eq!(sb.server("db1").map(|s| s.role), Some(Role::Master));
    assert_eq!(sb.master_port(), sb.servers()[0].port);
    let config = std::fs::read_to_string(sb.config_path())?;
    assert!(config.starts_with(&format!(
        "[proxy]\nlisten = \"127.0.0.1:{}\"\n",
        sb.proxy_port()
    )));
    for s in sb.servers() {
        assert!(config.contains(&format!(
            "name = \"{}\"\naddress = \"127.0.0.1:{}\"\n",
            s.name, s.port
        )));
    }
    let reopened = Sandbox::open(tmp.path())?;
    assert_eq!(reopened.servers(), sb.servers());

    // Write on the master, read it on both replicas.
    sb.sql(
        "db1",
        "CREATE TABLE koha.e2e (id INT PRIMARY KEY, v VARCHAR(20)); \
         INSERT INTO koha.e2e VALUES (1, 'hello')",
    )?;
    sb.wait_replication(WAIT)?;
    for replica in ["db2", "db3"] {
        assert_eq!(
            sb.sql(replica, "SELECT v FROM koha.e2e WHERE id = 1")?
                .trim(),
            "hello"
        );
        assert_eq!(sb.sql(replica, "SELECT @@read_only")?.trim(), "1");
    }
    assert_eq!(sb.sql("db1", "SELECT @@read_only")?.trim(), "0");

    // The app user writes on the master but read_only stops it on a replica.
    let replica_port = sb.server("db2").map(|s| s.port).ok_or("no db2")?;
    let (ok, err) = as_koha(sb.master_port(), "INSERT INTO koha.e2e VALUES (100, 'app')")?;
    assert!(ok, "koha cannot write on the master: {err}");
    let (ok, err) = as_koha(replica_port, "INSERT INTO koha.e2e VALUES (101, 'app')")?;
    assert!(
        !ok && err.contains("read-only"),
        "koha wrote on a replica: {err}"
    );

    // Crash a replica, write meanwhile, bring it back: it catches up.
    let old_pid = sb.pid("db2").ok_or("db2 has no pid")?;
    sb.kill("db2", Signal::Kill)?;
    assert_eq!(sb.pid("db2"), None);
    let status = sb.status()?;
    assert_eq!(status[1].process, ProcessState::Down);
    assert!(status[0].is_up() && status[2].is_up());
    sb.sql("db1", "INSERT INTO koha.e2e VALUES (2, 'while down')")?;
    sb.start("db2")?;
    let new_pid = sb.pid("db2").ok_or("db2 did not restart")?;
    assert_ne!(old_pid, new_pid);
    sb.wait_replication(WAIT)?;
    assert_eq!(sb.sql("db2", "SELECT COUNT(*) FROM koha.e2e")?.trim(), "3");
    for s in sb.status()?.iter().skip(1) {
        let threads = s.replication.as_ref().ok_or("replica without threads")?;
        assert_eq!(
            (threads.io_running.as_str(), threads.sql_running.as_str()),
            ("Yes", "Yes")
        );
    }

    // Down: nothing of this sandbox is left running.
    let pids: Vec<u32> = names.iter().filter_map(|n| sb.pid(n)).collect();
    assert_eq!(pids.len(), 3);
    sb.down()?;
    for n in &names {
        assert_eq!(sb.pid(n), None, "{n} still running");
    }
    assert_eq!(processes_under(tmp.path()), Vec::<u32>::new());
    assert!(sb.status()?.iter().all(|s| s.process == ProcessState::Down));
    Ok(())
}
