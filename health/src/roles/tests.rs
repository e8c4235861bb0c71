use std::time::Instant;

use super::*;
use crate::gtid::GtidList;
use crate::topology::Topology;

fn gtid(s: &str) -> GtidList {
    s.parse().unwrap()
}

fn link(host: &str, port: u16, io: ThreadState, sql: ThreadState) -> Replication {
    Replication {
        connection_name: String::new(),
        master_host: host.into(),
        master_port: port,
        io_thread: io,
        sql_thread: sql,
        seconds_behind_master: (sql == ThreadState::Running).then_some(0),
        gtid_io_pos: GtidList::default(),
        master_server_id: 1,
        last_io_error: None,
        last_sql_error: None,
        received_heartbeats: 0,
        heartbeat_period_ms: 0,
    }
}

fn running(host: &str, port: u16) -> Replication {
    link(host, port, ThreadState::Running, ThreadState::Running)
}

/// An up server `name` at 127.0.0.1:`port`.
fn server(name: &str, port: u16, read_only: bool, replication: Vec<Replication>) -> ServerView {
    let mut v = ServerView::new(name, &format!("127.0.0.1:{port}"), Instant::now());
    v.state = ServerState::Up;
    v.read_only = Some(read_only);
    v.status = Some(Status {
        read_only,
        server_id: u32::from(port),
        gtid_current_pos: gtid("0-1-10"),
        gtid_binlog_pos: gtid("0-1-10"),
        gtid_slave_pos: gtid(if read_only { "0-1-10" } else { "" }),
        gtid_binlog_state: Default::default(),
        semi_sync_active: None,
        replication,
        session_track_system_variables: String::new(),
        session_track_schema: true,
        wsrep: None,
        semi_sync_wait_no_slave: None,
        semi_sync_timeout_ms: None,
        semi_sync_clients: None,
        master_term: None,
        dump_clients: None,
    });
    v
}

fn down(mut v: ServerView) -> ServerView {
    v.state = ServerState::Down;
    v
}

/// db1 (port 1) master, db2 and db3 replicas following it.
fn cluster() -> Vec<ServerView> {
    vec![
        server("db1", 1, false, vec![]),
        server("db2", 2, true, vec![running("127.0.0.1", 1)]),
        server("db3", 3, true, vec![running("localhost", 1)]),
    ]
}

#[test]
fn the_writable_server_the_replicas_follow_is_master() {
    let d = discover(&cluster(), None);
    assert_eq!(d.problem, None);
    assert_eq!(d.master, Some(0));
    assert_eq!(d.roles, vec![Role::Master, Role::Replica, Role::Replica]);
}

#[test]
fn a_master_with_no_replicas_and_a_stopped_or_broken_replica() {
    assert_eq!(discover(&cluster()[..1], None).master, Some(0));
    let mut s = cluster();
    // A replica whose threads are stopped still follows the master.
    s[1] = server(
        "db2",
        2,
        true,
        vec![link(
            "127.0.0.1",
            1,
            ThreadState::Connecting,
            ThreadState::Stopped,
        )],
    );
    let d = discover(&s, None);
    assert_eq!((d.master, d.problem), (Some(0), None));
    assert_eq!(d.roles[1], Role::Replica);
    // A read-only server that replicates from nobody is standalone, not a problem.
    s[2] = server("db3", 3, true, vec![]);
    let d = discover(&s, None);
    assert_eq!(d.master, Some(0));
    assert_eq!(d.roles[2], Role::Standalone);
}

#[test]
fn two_writable_servers_mean_no_master() {
    let mut s = cluster();
    s[1] = server("db2", 2, false, vec![]);
    let d = discover(&s, None);
    assert_eq!(d.master, None);
    let problem = d.problem.unwrap();
    assert!(
        problem.contains("several servers are writable: db1, db2"),
        "{problem}"
    );
    assert!(!d.roles.contains(&Role::Master) && !d.roles.contains(&Role::Replica));
}

#[test]
fn a_replica_following_an_unknown_host_means_no_master() {
    let mut s = cluster();
    let mut unknown = running("10.9.9.9", 1);
    unknown.master_server_id = 99;
    s[2] = server("db3", 3, true, vec![unknown.clone()]);
    let d = discover(&s, None);
    assert_eq!(d.master, None);
    let problem = d.problem.unwrap();
    assert!(
        problem.contains("db3 replicates from 10.9.9.9:1, which is not a configured server"),
        "{problem}"
    );
    // The right host on the wrong port is unknown too.
    unknown.master_host = "127.0.0.1".into();
    unknown.master_port = 9;
    s[2] = server("db3", 3, true, vec![unknown]);
    assert_eq!(discover(&s, None).master, None);
    // Another route (a relay) to the server whose server_id the link reports is that
    // server.
    s[2] = server("db3", 3, true, vec![running("127.0.0.1", 9)]);
    let d = discover(&s, None);
    assert_eq!((d.master, d.roles[2]), (Some(0), Role::Replica));
}

#[test]
fn under_a_term_master_strays_are_stale_not_a_problem() {
    let mut s = cluster();
    // db2 was promoted (term master), db1 is back writable, db3 still follows db1.
    s[1] = server("db2", 2, false, vec![]);
    let d = discover(&s, Some(1));
    assert_eq!(d.problem, None);
    assert_eq!(d.master, Some(1));
    assert_eq!(d.roles, vec![Role::Stale, Role::Master, Role::Stale]);
    // Without the term, two writable servers are a problem and there is no master.
    assert_eq!(discover(&s, None).master, None);
    // A term master that is down or read-only is not kept: discovery starts afresh.
    s[1] = down(s[1].clone());
    assert_eq!(discover(&s, Some(1)).master, Some(0));
}

#[test]
fn a_replica_following_another_replica_means_no_master() {
    let mut s = cluster();
    s[2] = server("db3", 3, true, vec![running("127.0.0.1", 2)]);
    let d = discover(&s, None);
    assert_eq!(d.master, None);
    assert!(d
        .problem
        .unwrap()
        .contains("db3 replicates from db2, not from the writable db1"));
}

#[test]
fn a_writable_server_that_replicates_is_not_master() {
    let mut s = cluster();
    s[0] = server("db1", 1, false, vec![running("127.0.0.1", 2)]);
    let d = discover(&s, None);
    assert_eq!(d.master, None);
    assert!(d
        .problem
        .unwrap()
        .contains("db1 is writable but itself replicates from db2"));
    // A leftover connection whose threads are both stopped is not replicating.
    s[0] = server(
        "db1",
        1,
        false,
        vec![link(
            "127.0.0.1",
            2,
            ThreadState::Stopped,
            ThreadState::Stopped,
        )],
    );
    assert_eq!(discover(&s, None).master, Some(0));
}

#[test]
fn a_down_master_means_no_master_and_no_problem() {
    let mut s = cluster();
    s[0] = down(s[0].clone());
    let d = discover(&s, None);
    assert_eq!(
        d,
        Discovery {
            master: None,
            roles: vec![Role::Unknown, Role::Unknown, Role::Unknown],
            problem: None,
        }
    );
    // A down server's last known status never counts: a down writable one is no rival.
    let mut s = cluster();
    s.push(down(server("db4", 4, false, vec![])));
    assert_eq!(discover(&s, None).master, Some(0));
    // Unknown (not probed yet) servers do not count either.
    let mut s = cluster();
    s[0].state = ServerState::Unknown;
    assert_eq!(discover(&s, None).master, None);
}

#[test]
fn replicas_of_a_dead_master_following_different_servers_are_reported() {
    let mut s = cluster();
    s[0] = down(s[0].clone());
    s.push(down(server("db4", 4, false, vec![])));
    s[2] = server("db3", 3, true, vec![running("127.0.0.1", 4)]);
    let d = discover(&s, None);
    assert_eq!(d.master, None);
    assert!(d
        .problem
        .unwrap()
        .contains("replicas follow different masters: db1, db4"));
}

#[test]
fn multi_source_and_self_replication_are_problems() {
    let mut s = cluster();
    s[1] = server(
        "db2",
        2,
        true,
        vec![running("127.0.0.1", 1), running("127.0.0.1", 3)],
    );
    assert!(discover(&s, None).problem.unwrap().contains("multi-source"));
    let mut s = cluster();
    s[1] = server("db2", 2, true, vec![running("127.0.0.1", 2)]);
    assert!(discover(&s, None)
        .problem
        .unwrap()
        .contains("db2 replicates from itself"));
}

#[test]
fn host_spellings() {
    assert!(same_host("127.0.0.1", "localhost"));
    assert!(same_host("LOCALHOST", "::1"));
    assert!(
        same_host("127.0.1.1", "127.0.0.1"),
        "all of 127/8 is loopback"
    );
    assert!(same_host("[::1]", "127.0.0.1"));
    assert!(same_host("DB1.example", "db1.example"));
    assert!(!same_host("db1.example", "db2.example"));
    assert!(!same_host("10.0.0.1", "127.0.0.1"));
}

#[test]
fn lag_from_gtid_positions_and_threads() {
    let mut s = cluster();
    s[0].status.as_mut().unwrap().gtid_binlog_pos = gtid("0-1-15");
    let mut stopped = link("127.0.0.1", 1, ThreadState::Running, ThreadState::Stopped);
    stopped.seconds_behind_master = None;
    s[2] = server("db3", 3, true, vec![stopped]);
    let t = Topology::build(s);
    assert_eq!(t.master().map(|m| m.name.as_str()), Some("db1"));
    let lag = |name: &str| t.server(name).and_then(|v| v.lag);
    assert_eq!(
        lag("db2"),
        Some(Lag {
            seconds_behind_master: Some(0),
            caught_up: false,
            transactions_behind: 5
        })
    );
    assert_eq!(lag("db3").map(|l| l.seconds_behind_master), Some(None));
    assert_eq!(lag("db1"), None, "the master has no lag");
    assert_eq!(t.replicas().count(), 2);

    let caught_up = Topology::build(cluster());
    assert!(caught_up
        .replicas()
        .all(|r| r.lag.is_some_and(|l| l.caught_up)));
    // Seconds_Behind_Master is ignored while the SQL thread is stopped.
    let replica = Status {
        replication: vec![link("h", 1, ThreadState::Running, ThreadState::Stopped)],
        ..cluster()[1].status.clone().unwrap()
    };
    let mut odd = replica.clone();
    odd.replication[0].seconds_behind_master = Some(7);
    assert_eq!(lag_of(&odd), None);
}

fn lag_of(replica: &Status) -> Option<u64> {
    let master = cluster()[0].status.clone().unwrap();
    lag(replica, &master).seconds_behind_master
}

#[test]
fn the_server_every_replica_follows_when_none_is_writable() {
    // All restarted read-only: db1 replicates from nobody, the others follow it.
    let mut servers = cluster();
    servers[0].status.as_mut().unwrap().read_only = true;
    servers[0].read_only = Some(true);
    assert_eq!(followed_by_all(&servers), Some(Followed::Alive(0)));
    // db1 is down: the master died, perhaps before this proxy ever saw it.
    let dead: Vec<ServerView> = servers
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, v)| if i == 0 { down(v) } else { v })
        .collect();
    assert_eq!(followed_by_all(&dead), Some(Followed::Dead(0)));
    // Not yet known up or down (the first probes): nothing.
    let mut unknown = dead.clone();
    unknown[0].state = ServerState::Unknown;
    assert_eq!(followed_by_all(&unknown), None);
    // A stopped link still says whom a replica follows (a promoting proxy died after
    // STOP SLAVE, before its term record).
    let mut stopped = dead.clone();
    stopped[1].status.as_mut().unwrap().replication = vec![link(
        "127.0.0.1",
        1,
        ThreadState::Stopped,
        ThreadState::Stopped,
    )];
    assert_eq!(followed_by_all(&stopped), Some(Followed::Dead(0)));
    // A writable server, replicas following different servers, or nobody following
    // anyone: nothing.
    assert_eq!(followed_by_all(&cluster()), None);
    let mut split = dead.clone();
    split[2].status.as_mut().unwrap().replication = vec![running("127.0.0.1", 2)];
    assert_eq!(followed_by_all(&split), None);
    let alone = vec![
        down(server("db1", 1, true, vec![])),
        server("db2", 2, true, vec![]),
    ];
    assert_eq!(followed_by_all(&alone), None);
}
