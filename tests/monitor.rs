//! The health monitor against a real sandbox cluster (a master and two replicas): roles are
//! discovered, GTID positions and lag follow writes and a stopped SQL thread, a hung
//! replica goes down and comes back, and a dead master means no master, never a guess.
//!
//! The monitor runs in-process (`Monitor::spawn`) with interval_ms = 200, fail_count = 2 and
//! manual failover;
//! every wait polls the snapshot every 50 ms up to a deadline.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kohaproxy_config::Config;
use kohaproxy_health::{
    GtidList, Monitor, Role, ServerState, ThreadState, Topology, TopologyHandle,
};
use kohaproxy_sandbox::{Sandbox, SandboxGuard, Signal, UpOptions};

/// The bound on every wait: generous for a loaded 2-core machine, far below "forever".
const DEADLINE: Duration = Duration::from_secs(15);

/// Polls `handle` every 50 ms until `cond` holds; returns how long it took.
fn wait_for(handle: &TopologyHandle, what: &str, cond: impl Fn(&Topology) -> bool) -> Duration {
    let start = Instant::now();
    loop {
        let t = handle.load();
        if cond(&t) {
            let took = start.elapsed();
            eprintln!("{what}: {took:?}");
            return took;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "{what}: not within {DEADLINE:?}; last snapshot: {t:#?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn master_name(t: &Topology) -> Option<&str> {
    t.master().map(|m| m.name.as_str())
}

fn state(t: &Topology, name: &str) -> Option<ServerState> {
    t.server(name).map(|s| s.state)
}

fn role(t: &Topology, name: &str) -> Option<Role> {
    t.server(name).map(|s| s.role)
}

/// The master's `gtid_binlog_pos` in `t`.
fn master_pos(t: &Topology) -> Option<GtidList> {
    t.master()
        .and_then(|m| m.status.as_ref())
        .map(|s| s.gtid_binlog_pos.clone())
}

/// `name`'s replication threads (IO, SQL).
fn threads(t: &Topology, name: &str) -> Option<(ThreadState, ThreadState)> {
    let s = t.server(name)?.status.as_ref()?;
    s.replication.first().map(|r| (r.io_thread, r.sql_thread))
}

const RUNNING: (ThreadState, ThreadState) = (ThreadState::Running, ThreadState::Running);

#[test]
fn monitor_follows_the_cluster() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("kohaproxy_health=info")
        .try_init();
    // Dropped in reverse order: the runtime (and the monitor) first, then the servers,
    // then the directory.
    let dir = tempfile::Builder::new()
        .prefix("kpmon")
        .tempdir_in("/tmp")
        .expect("tempdir");
    let mut opts = UpOptions::new(dir.path().join("sb"));
    opts.replicas = 2;
    let sb = SandboxGuard(Sandbox::up(&opts).expect("sandbox up"));
    let text = std::fs::read_to_string(sb.config_path()).expect("read config");
    // Manual failover: this test watches discovery alone (a dead master is no master, and
    // it is the master again once restarted); failover has its own tests.
    let text = text.replace(
        "interval_ms = 500\n",
        "interval_ms = 200\nfail_count = 2\nfailover = \"manual\"\n",
    );
    assert!(
        text.contains("fail_count = 2"),
        "config edit failed: {text}"
    );
    std::fs::write(sb.config_path(), text).expect("write config");
    let config = Config::load(&sb.config_path()).expect("load config");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let handle = rt.block_on(Monitor::spawn(&config));
    let port = |name: &str| sb.server(name).map(|s| s.port).expect("server");

    // A watcher: no snapshot ever names a master other than db1 (no guess, no flapping).
    let stop = Arc::new(AtomicBool::new(false));
    let wrong: Arc<Mutex<Vec<String>>> = Arc::default();
    let watcher = {
        let (handle, stop, wrong) = (handle.clone(), stop.clone(), wrong.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let t = handle.load();
                if let Some(m) = master_name(&t).filter(|m| *m != "db1") {
                    if let Ok(mut w) = wrong.lock() {
                        w.push(format!("{m}: {t:?}"));
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };

    // 1. Roles are discovered: db1 master, db2 and db3 read-only replicas following it.
    wait_for(&handle, "roles discovered", |t| {
        master_name(t) == Some("db1")
            && role(t, "db2") == Some(Role::Replica)
            && role(t, "db3") == Some(Role::Replica)
    });
    let t = handle.load();
    assert_eq!(t.problem, None);
    let master = t.master().expect("master");
    assert_eq!(master.read_only, Some(false));
    assert_eq!(master.state, ServerState::Up);
    for name in ["db2", "db3"] {
        let s = t.server(name).expect("replica");
        assert_eq!(s.read_only, Some(true), "{name}");
        let status = s.status.as_ref().expect("status");
        let link = status.replication.first().expect("replication");
        assert_eq!(link.master_port, port("db1"), "{name} follows db1");
        assert_ne!(
            status.server_id,
            master.status.as_ref().expect("status").server_id
        );
    }

    // 2. A write on the master advances its GTID position; the replicas catch up.
    let before = master_pos(&t).expect("master position");
    sb.sql(
        "db1",
        "CREATE DATABASE kpmon; CREATE TABLE kpmon.t (id INT PRIMARY KEY); \
         INSERT INTO kpmon.t VALUES (1), (2)",
    )
    .expect("write on the master");
    wait_for(&handle, "master GTID advanced", |t| {
        master_pos(t).is_some_and(|p| p.contains(&before) && !before.contains(&p))
    });
    let after = master_pos(&handle.load()).expect("master position");
    wait_for(&handle, "replicas caught up", |t| {
        ["db2", "db3"].iter().all(|name| {
            t.server(name).is_some_and(|s| {
                s.lag
                    .is_some_and(|l| l.caught_up && l.transactions_behind == 0)
                    && s.status
                        .as_ref()
                        .is_some_and(|st| st.gtid_current_pos.contains(&after))
            })
        })
    });

    // 3. A stopped SQL thread: no Seconds_Behind_Master, and behind after a write while
    // the IO thread still receives it.
    sb.sql("db2", "STOP SLAVE SQL_THREAD")
        .expect("stop SQL thread");
    wait_for(&handle, "db2 SQL thread stopped", |t| {
        threads(t, "db2") == Some((ThreadState::Running, ThreadState::Stopped))
            && t.server("db2")
                .and_then(|s| s.lag)
                .is_some_and(|l| l.seconds_behind_master.is_none())
            && role(t, "db2") == Some(Role::Replica)
            && master_name(t) == Some("db1")
    });
    sb.sql("db1", "INSERT INTO kpmon.t VALUES (3)")
        .expect("write");
    wait_for(&handle, "db2 behind, db3 caught up", |t| {
        let Some(pos) = master_pos(t).filter(|p| !after.contains(p)) else {
            return false;
        };
        let db2 = t.server("db2").and_then(|s| s.lag);
        let db2_received = t
            .server("db2")
            .and_then(|s| s.status.as_ref())
            .and_then(|s| s.replication.first())
            .is_some_and(|r| r.gtid_io_pos.contains(&pos));
        db2.is_some_and(|l| !l.caught_up && l.transactions_behind >= 1)
            && db2_received
            && t.server("db3")
                .and_then(|s| s.lag)
                .is_some_and(|l| l.caught_up)
    });
    sb.sql("db2", "START SLAVE SQL_THREAD")
        .expect("start SQL thread");
    wait_for(&handle, "db2 caught up again", |t| {
        threads(t, "db2") == Some(RUNNING)
            && t.server("db2")
                .and_then(|s| s.lag)
                .is_some_and(|l| l.caught_up)
    });

    // 4. A hung replica (SIGSTOP) goes down within a bound, the master stays; SIGCONT
    // brings it back.
    sb.kill("db3", Signal::Stop).expect("SIGSTOP db3");
    let took = wait_for(&handle, "hung db3 down", |t| {
        state(t, "db3") == Some(ServerState::Down)
    });
    assert!(took < Duration::from_secs(10), "{took:?}");
    let t = handle.load();
    assert_eq!(master_name(&t), Some("db1"));
    assert_eq!(role(&t, "db2"), Some(Role::Replica));
    assert!(t
        .server("db3")
        .and_then(|s| s.last_error.as_ref())
        .is_some());
    sb.kill("db3", Signal::Cont).expect("SIGCONT db3");
    wait_for(&handle, "db3 up again", |t| {
        state(t, "db3") == Some(ServerState::Up) && role(t, "db3") == Some(Role::Replica)
    });

    // 5. A dead master: no master (no guess among the replicas); started again, it is the
    // master again and the replicas follow it.
    sb.kill("db1", Signal::Kill).expect("SIGKILL db1");
    wait_for(&handle, "no master after the kill", |t| {
        master_name(t).is_none() && state(t, "db1") == Some(ServerState::Down)
    });
    let t = handle.load();
    assert_eq!(
        t.problem, None,
        "replicas of a dead master are no contradiction"
    );
    assert!(t.replicas().next().is_none());
    sb.start("db1").expect("restart db1");
    wait_for(&handle, "db1 master again, replicas running", |t| {
        master_name(t) == Some("db1")
            && ["db2", "db3"]
                .iter()
                .all(|n| role(t, n) == Some(Role::Replica) && threads(t, n) == Some(RUNNING))
    });

    stop.store(true, Ordering::Relaxed);
    watcher.join().expect("watcher");
    let wrong = wrong.lock().map(|w| w.clone()).unwrap_or_default();
    assert!(
        wrong.is_empty(),
        "a snapshot named another master: {wrong:?}"
    );
    drop(rt);
}
