//! The result sets the console answers with, built by pure functions from snapshots (the
//! topology, the counters, the session registry), so they are tested without a socket.

use std::time::SystemTime;

use kohaproxy_health::{ServerState, Topology};
use kohaproxy_proxy::stats::{SessionInfo, StatsSnapshot};

use crate::command::Probe;

/// What the console's `@@version_comment` says (the mariadb CLI prints it at connect).
pub const VERSION_COMMENT: &str = "kohaproxy admin console";

/// A column's type on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Text (`MYSQL_TYPE_VAR_STRING`).
    Text,
    /// An unsigned count (`MYSQL_TYPE_LONGLONG`).
    Count,
}

/// One cell; `None` is SQL NULL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell {
    /// A text cell.
    Text(Option<String>),
    /// A count cell.
    Count(Option<u64>),
}

impl Cell {
    fn text(s: impl Into<String>) -> Cell {
        Cell::Text(Some(s.into()))
    }
}

/// A result set: named, typed columns and rows of cells (one per column).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// Column names and types.
    pub columns: Vec<(String, Kind)>,
    /// The rows.
    pub rows: Vec<Vec<Cell>>,
}

impl Table {
    fn new(columns: &[(&str, Kind)]) -> Table {
        Table {
            columns: columns.iter().map(|(n, k)| (n.to_string(), *k)).collect(),
            rows: Vec::new(),
        }
    }

    /// The cell in `row` under column `name` (for tests and tools).
    pub fn get(&self, row: usize, name: &str) -> Option<&Cell> {
        let col = self.columns.iter().position(|(n, _)| n == name)?;
        self.rows.get(row)?.get(col)
    }
}

/// `SHOW SERVERS`: one row per configured server, in config order. `stats` gives the
/// proxy's own connections and statements per server.
pub fn servers(topology: &Topology, stats: &StatsSnapshot) -> Table {
    use Kind::{Count, Text};
    let mut t = Table::new(&[
        ("name", Text),
        ("address", Text),
        ("role", Text),
        ("state", Text),
        ("read_only", Text),
        ("lag_s", Count),
        ("behind_trx", Count),
        ("gtid", Text),
        ("connections", Count),
        ("statements", Count),
        ("last_error", Text),
        ("note", Text),
        ("wsrep", Text),
    ]);
    for s in &topology.servers {
        let role = match s.state {
            ServerState::Down => "down".to_string(),
            _ => s.role.to_string(),
        };
        let counters = stats.servers.iter().find(|c| c.name == s.name);
        t.rows.push(vec![
            Cell::text(&s.name),
            Cell::text(&s.address),
            Cell::text(role),
            Cell::text(s.state.to_string()),
            Cell::Text(
                s.read_only
                    .map(|r| if r { "ON" } else { "OFF" }.to_string()),
            ),
            Cell::Count(s.lag.and_then(|l| l.seconds_behind_master)),
            Cell::Count(s.lag.map(|l| l.transactions_behind)),
            Cell::Text(s.status.as_ref().map(|st| st.gtid_current_pos.to_string())),
            Cell::Count(counters.map(|c| c.connections)),
            Cell::Count(counters.map(|c| c.statements)),
            Cell::Text(s.last_error.clone()),
            Cell::Text(match (s.maintenance, &s.note) {
                (true, Some(n)) => Some(format!("maintenance; {n}")),
                (true, None) => Some("maintenance".into()),
                (false, n) => n.as_ref().map(ToString::to_string),
            }),
            Cell::Text(s.status.as_ref().and_then(|st| st.wsrep.as_ref()).map(|w| {
                format!(
                    "{}, {}, size {}, recv queue {}{}",
                    w.local_state_comment,
                    w.cluster_status,
                    w.cluster_size,
                    w.recv_queue,
                    if w.desync { ", desynced" } else { "" }
                )
            })),
        ]);
    }
    t
}

/// The one-row answer of a command that acts: what was done.
pub fn message(text: &str) -> Table {
    let mut t = Table::new(&[("result", Kind::Text)]);
    t.rows.push(vec![Cell::text(text)]);
    t
}

/// `SHOW TOPOLOGY`: one row, the master's name and the topology problem (each or NULL).
pub fn topology(topology: &Topology) -> Table {
    let mut t = Table::new(&[
        ("master", Kind::Text),
        ("problem", Kind::Text),
        ("term", Kind::Count),
        ("operation", Kind::Text),
    ]);
    t.rows.push(vec![
        Cell::Text(topology.master().map(|m| m.name.clone())),
        Cell::Text(topology.problem.clone()),
        Cell::Count(Some(topology.term)),
        Cell::Text(topology.operation.clone()),
    ]);
    t
}

/// `SHOW BACKUPS`: newest first, the id first; then start time, source, GTID position,
/// size on disk, duration, state and the reason of a failure.
pub fn backups(list: &[kohaproxy_backup::Listing]) -> Table {
    use Kind::{Count, Text};
    let mut t = Table::new(&[
        ("id", Text),
        ("started", Text),
        ("source", Text),
        ("gtid", Text),
        ("bytes", Count),
        ("duration_ms", Count),
        ("state", Text),
        ("error", Text),
    ]);
    for b in list {
        let m = b.manifest.as_ref();
        t.rows.push(vec![
            Cell::text(&b.id),
            Cell::Text(m.map(|m| m.started.clone())),
            Cell::Text(m.map(|m| m.source.clone())),
            Cell::Text(m.map(|m| m.gtid_position.clone())),
            Cell::Count(m.map(|m| m.bytes())),
            Cell::Count(m.map(|m| m.duration_ms)),
            Cell::text(&b.status),
            Cell::Text(b.problem.clone()),
        ]);
    }
    t
}

/// `SHOW SESSIONS`: one row per client session; `now` dates `connected_s`, `servers`
/// names the servers by config index (`state`).
pub fn sessions(sessions: &[SessionInfo], now: SystemTime, servers: &[&str]) -> Table {
    use Kind::{Count, Text};
    let mut t = Table::new(&[
        ("id", Count),
        ("user", Text),
        ("client", Text),
        ("backends", Text),
        ("in_transaction", Text),
        ("pinned", Text),
        ("statements", Count),
        ("connected_s", Count),
        ("state", Text),
    ]);
    let name = |i: usize| servers.get(i).map(|n| n.to_string());
    let yes_no = |b: bool| Cell::text(if b { "yes" } else { "no" });
    for s in sessions {
        let age = now.duration_since(s.started).unwrap_or_default().as_secs();
        t.rows.push(vec![
            Cell::Count(Some(u64::from(s.id))),
            Cell::text(&s.user),
            Cell::text(s.peer.to_string()),
            Cell::text(s.backends.join(",")),
            yes_no(s.in_transaction),
            s.pinned
                .map_or_else(|| Cell::text("no"), |r| Cell::text(r.describe())),
            Cell::Count(Some(s.statements)),
            Cell::Count(Some(age)),
            Cell::text(s.phase.describe(name)),
        ]);
    }
    t
}

/// `SHOW STATS`: name/value rows, the proxy-wide counters first, then four per server.
pub fn stats(stats: &StatsSnapshot) -> Table {
    let mut t = Table::new(&[("name", Kind::Text), ("value", Kind::Count)]);
    let mut row = |name: String, value: u64| {
        t.rows
            .push(vec![Cell::Text(Some(name)), Cell::Count(Some(value))]);
    };
    row("routed_master".into(), stats.routed_master);
    row("routed_replica".into(), stats.routed_replica);
    row("causal_ready".into(), stats.causal_ready);
    row(
        "causal_master_positions".into(),
        stats.causal_master_positions,
    );
    row("causal_discarded".into(), stats.causal_discarded);
    row("causal_waits".into(), stats.causal_waits);
    row("causal_master_checked".into(), stats.causal_master_checked);
    row("causal_master_demoted".into(), stats.causal_master_demoted);
    row("causal_to_master".into(), stats.causal_to_master);
    for (reason, n) in &stats.causal_to_master_by {
        row(format!("causal_to_master.{reason}"), *n);
    }
    row("errors".into(), stats.errors);
    for (kind, n) in &stats.refused {
        let r = kind.row();
        row(format!("refused.{}.{}", r.code, r.name), *n);
    }
    row("sessions".into(), stats.sessions);
    for s in &stats.servers {
        row(format!("server.{}.statements", s.name), s.statements);
        row(format!("server.{}.connections", s.name), s.connections);
        row(format!("server.{}.outstanding", s.name), s.outstanding);
        row(format!("server.{}.failures", s.name), s.failures);
    }
    t
}

/// What a connection's `SELECT` probes are answered from.
#[derive(Debug, Clone, Copy)]
pub struct Connection<'a> {
    /// The console's version string (`@@version`).
    pub version: &'a str,
    /// The schema given at login or by `USE` (`DATABASE()`).
    pub database: Option<&'a str>,
    /// `user@host` as logged in (`USER()`).
    pub user: &'a str,
}

/// `SELECT <probe>, ...`: one row, a column per probe named as written. Variables the
/// console has no value for are NULL (a client probing at connect must not fail).
pub fn select(probes: &[Probe], cx: &Connection<'_>) -> Table {
    let mut t = Table {
        columns: Vec::new(),
        rows: vec![Vec::new()],
    };
    for p in probes {
        let (column, kind, cell) = match p {
            Probe::Database => (
                "DATABASE()".to_string(),
                Kind::Text,
                Cell::Text(cx.database.map(str::to_string)),
            ),
            Probe::User => ("USER()".to_string(), Kind::Text, Cell::text(cx.user)),
            Probe::Variable(expr) => {
                let (kind, cell) = variable(expr, cx.version);
                (expr.clone(), kind, cell)
            }
        };
        t.columns.push((column, kind));
        t.rows[0].push(cell);
    }
    t
}

/// The console's value of `@@name` (with or without `session.`/`global.`).
fn variable(expr: &str, version: &str) -> (Kind, Cell) {
    let name = expr.trim_start_matches('@').to_ascii_lowercase();
    let name = name
        .strip_prefix("session.")
        .or_else(|| name.strip_prefix("global."))
        .unwrap_or(&name);
    match name {
        "version_comment" => (Kind::Text, Cell::text(VERSION_COMMENT)),
        "version" => (Kind::Text, Cell::text(version)),
        "max_allowed_packet" => (Kind::Count, Cell::Count(Some(16 << 20))),
        "wait_timeout" | "interactive_timeout" => (Kind::Count, Cell::Count(Some(28_800))),
        "autocommit" => (Kind::Count, Cell::Count(Some(1))),
        "character_set_client" | "character_set_connection" | "character_set_results" => {
            (Kind::Text, Cell::text("utf8mb4"))
        }
        _ => (Kind::Text, Cell::Text(None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kohaproxy_health::{Lag, Role, ServerView, Status};
    use kohaproxy_proxy::stats::Stats;
    use std::time::{Duration, Instant};

    fn view(name: &str, state: ServerState, role: Role) -> ServerView {
        let mut v = ServerView::new(name, &format!("127.0.0.1:{}", name.len()), Instant::now());
        v.state = state;
        v.role = role;
        v
    }

    fn snapshot() -> StatsSnapshot {
        let stats = Stats::new(["db1", "db2", "db3"]);
        stats
            .routed_master
            .store(7, std::sync::atomic::Ordering::Relaxed);
        stats.servers[0]
            .connections
            .store(2, std::sync::atomic::Ordering::Relaxed);
        stats.servers[0]
            .statements
            .store(9, std::sync::atomic::Ordering::Relaxed);
        stats.snapshot(1)
    }

    fn status(gtid: &str) -> Status {
        Status {
            read_only: false,
            server_id: 1,
            gtid_current_pos: gtid.parse().unwrap(),
            gtid_binlog_pos: gtid.parse().unwrap(),
            gtid_slave_pos: "".parse().unwrap(),
            gtid_binlog_state: Default::default(),
            semi_sync_active: None,
            replication: Vec::new(),
            session_track_system_variables: String::new(),
            session_track_schema: false,
            wsrep: None,
            semi_sync_wait_no_slave: None,
            semi_sync_timeout_ms: None,
            semi_sync_clients: None,
            master_term: None,
            dump_clients: None,
        }
    }

    #[test]
    fn servers_table() {
        let mut master = view("db1", ServerState::Up, Role::Master);
        master.read_only = Some(false);
        master.status = Some(status("0-1-5"));
        let mut replica = view("db2", ServerState::Up, Role::Replica);
        replica.read_only = Some(true);
        replica.lag = Some(Lag {
            seconds_behind_master: Some(3),
            caught_up: false,
            transactions_behind: 2,
        });
        let mut down = view("db3", ServerState::Down, Role::Unknown);
        down.last_error = Some("connection refused".into());
        let topo = Topology {
            servers: vec![master, replica, down],
            master: Some(0),
            problem: None,
            term: 1,
            operation: None,
        };
        let t = servers(&topo, &snapshot());
        assert_eq!(t.rows.len(), 3);
        assert!(t.rows.iter().all(|r| r.len() == t.columns.len()));
        assert_eq!(t.get(0, "name"), Some(&Cell::text("db1")));
        assert_eq!(t.get(0, "role"), Some(&Cell::text("master")));
        assert_eq!(t.get(0, "read_only"), Some(&Cell::text("OFF")));
        assert_eq!(t.get(0, "gtid"), Some(&Cell::text("0-1-5")));
        assert_eq!(t.get(0, "connections"), Some(&Cell::Count(Some(2))));
        assert_eq!(t.get(0, "statements"), Some(&Cell::Count(Some(9))));
        assert_eq!(t.get(0, "lag_s"), Some(&Cell::Count(None)));
        assert_eq!(t.get(0, "last_error"), Some(&Cell::Text(None)));
        assert_eq!(t.get(1, "role"), Some(&Cell::text("replica")));
        assert_eq!(t.get(1, "read_only"), Some(&Cell::text("ON")));
        assert_eq!(t.get(1, "lag_s"), Some(&Cell::Count(Some(3))));
        assert_eq!(t.get(1, "behind_trx"), Some(&Cell::Count(Some(2))));
        assert_eq!(t.get(1, "gtid"), Some(&Cell::Text(None)));
        assert_eq!(t.get(2, "role"), Some(&Cell::text("down")));
        assert_eq!(t.get(2, "state"), Some(&Cell::text("down")));
        assert_eq!(t.get(2, "read_only"), Some(&Cell::Text(None)));
        assert_eq!(
            t.get(2, "last_error"),
            Some(&Cell::text("connection refused"))
        );
        assert_eq!(t.get(2, "note"), Some(&Cell::Text(None)));
    }

    #[test]
    fn topology_row() {
        let topo = Topology {
            servers: vec![view("db1", ServerState::Up, Role::Unknown)],
            master: None,
            problem: Some("two writable servers".into()),
            term: 3,
            operation: Some("failover from db1: choosing a replica".into()),
        };
        let t = topology(&topo);
        assert_eq!(
            t.rows,
            vec![vec![
                Cell::Text(None),
                Cell::text("two writable servers"),
                Cell::Count(Some(3)),
                Cell::text("failover from db1: choosing a replica"),
            ]]
        );
    }

    #[test]
    fn sessions_table() {
        let started = SystemTime::now() - Duration::from_secs(5);
        let s = SessionInfo {
            id: 1 << 30,
            peer: "127.0.0.1:4000".parse().unwrap(),
            started,
            user: "koha".into(),
            master_thread: 12,
            statements: 3,
            in_transaction: true,
            pinned: None,
            backends: vec!["db1".into(), "db2".into()],
            phase: kohaproxy_proxy::phase::Phase::Running(kohaproxy_proxy::phase::On::Replica(1)),
        };
        let t = sessions(&[s], started + Duration::from_secs(5), &["db1", "db2"]);
        assert_eq!(
            t.rows,
            vec![vec![
                Cell::Count(Some(1 << 30)),
                Cell::text("koha"),
                Cell::text("127.0.0.1:4000"),
                Cell::text("db1,db2"),
                Cell::text("yes"),
                Cell::text("no"),
                Cell::Count(Some(3)),
                Cell::Count(Some(5)),
                Cell::text("running on db2"),
            ]]
        );
        // A clock that went backwards gives 0, not a panic.
        let t = sessions(&t_info(started), started - Duration::from_secs(1), &[]);
        assert_eq!(t.get(0, "connected_s"), Some(&Cell::Count(Some(0))));
    }

    fn t_info(started: SystemTime) -> Vec<SessionInfo> {
        vec![SessionInfo {
            id: 1,
            peer: "127.0.0.1:1".parse().unwrap(),
            started,
            user: String::new(),
            master_thread: 0,
            statements: 0,
            in_transaction: false,
            pinned: None,
            backends: Vec::new(),
            phase: kohaproxy_proxy::phase::Phase::Idle,
        }]
    }

    #[test]
    fn stats_rows() {
        let t = stats(&snapshot());
        let names: Vec<String> = t
            .rows
            .iter()
            .map(|r| match &r[0] {
                Cell::Text(Some(n)) => n.clone(),
                other => panic!("{other:?}"),
            })
            .collect();
        // One row per refusal kind after `errors`, then the rest.
        let refused = kohaproxy_proxy::refusal::Kind::ALL.len();
        assert_eq!(names[14], "refused.1040.too_many_connections");
        assert_eq!(
            names[14 + refused - 1],
            "refused.1213.replica_lost_in_transaction"
        );
        let names: Vec<String> = names[..14]
            .iter()
            .chain(&names[14 + refused..])
            .cloned()
            .collect();
        assert_eq!(
            &names[..16],
            [
                "routed_master",
                "routed_replica",
                "causal_ready",
                "causal_master_positions",
                "causal_discarded",
                "causal_waits",
                "causal_master_checked",
                "causal_master_demoted",
                "causal_to_master",
                "causal_to_master.starting",
                "causal_to_master.behind",
                "causal_to_master.wait_timed_out",
                "causal_to_master.no_master_position",
                "errors",
                "sessions",
                "server.db1.statements"
            ]
        );
        assert_eq!(names.len(), 15 + 3 * 4);
        assert!(names.contains(&"server.db3.failures".to_string()));
        assert_eq!(t.rows[0][1], Cell::Count(Some(7)));
        assert_eq!(t.rows[14 + refused][1], Cell::Count(Some(1)), "sessions");
    }

    #[test]
    fn select_row() {
        let var = |v: &str| Probe::Variable(v.to_string());
        let cx = Connection {
            version: "v",
            database: None,
            user: "me@localhost",
        };
        let t = select(
            &[
                var("@@version_comment"),
                var("@@max_allowed_packet"),
                var("@@SESSION.wait_timeout"),
                var("@@nonsense"),
                Probe::Database,
                Probe::User,
            ],
            &cx,
        );
        assert_eq!(t.columns[0], ("@@version_comment".to_string(), Kind::Text));
        assert_eq!(t.columns[4], ("DATABASE()".to_string(), Kind::Text));
        assert_eq!(
            t.rows,
            vec![vec![
                Cell::text("kohaproxy admin console"),
                Cell::Count(Some(16 << 20)),
                Cell::Count(Some(28_800)),
                Cell::Text(None),
                Cell::Text(None),
                Cell::text("me@localhost"),
            ]]
        );
    }
}
