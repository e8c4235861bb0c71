//! What `sandbox status` reports per server, and its table.
use crate::server::Role;

/// Whether a server's process is there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcessState {
    /// Running.
    Alive,
    /// Stopped by SIGSTOP (hung).
    Stopped,
    /// Not running.
    Down,
}

/// The replica threads of a server, from `SHOW SLAVE STATUS`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicationThreads {
    /// `Slave_IO_Running`: Yes, No or Connecting.
    pub io_running: String,
    /// `Slave_SQL_Running`: Yes or No.
    pub sql_running: String,
    /// `Seconds_Behind_Master` (None when NULL).
    pub seconds_behind_master: Option<u64>,
    /// The port of the master it replicates from.
    pub master_port: Option<u16>,
    /// `Last_IO_Error` and `Last_SQL_Error`, joined (empty if none).
    pub last_error: String,
}

/// A Galera node's wsrep state, from `SHOW GLOBAL STATUS` and a few variables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WsrepStatus {
    /// `wsrep_local_state`: 1 Joining, 2 Donor/Desynced, 3 Joined, 4 Synced.
    pub local_state: u32,
    /// `wsrep_local_state_comment`: Synced, Donor/Desynced, Joining, Initialized, ...
    pub local_state_comment: String,
    /// `wsrep_cluster_status`: Primary, non-Primary or Disconnected.
    pub cluster_status: String,
    /// `wsrep_cluster_size`: nodes in this node's component.
    pub cluster_size: u32,
    /// `wsrep_ready`: ON when the node accepts queries.
    pub ready: bool,
    /// `wsrep_connected`.
    pub connected: bool,
    /// `wsrep_local_recv_queue`: write sets received and not yet applied.
    pub local_recv_queue: u64,
    /// `wsrep_local_index` (None when the node is in no component).
    pub local_index: Option<u32>,
    /// `wsrep_cluster_state_uuid`: the same on every node of one cluster.
    pub cluster_state_uuid: String,
    /// `wsrep_last_committed`: the seqno of the last write set committed here.
    pub last_committed: Option<i64>,
    /// `@@wsrep_desync`.
    pub desync: bool,
    /// `@@read_only`.
    pub read_only: bool,
    /// `@@gtid_binlog_pos`.
    pub gtid_binlog_pos: String,
    /// `@@gtid_current_pos`.
    pub gtid_current_pos: String,
}

impl WsrepStatus {
    /// Synced (state 4), ready, and in a Primary component.
    pub fn is_synced(&self) -> bool {
        self.local_state == 4 && self.ready && self.cluster_status == "Primary"
    }
}

/// One server's state, as `Sandbox::status` sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerStatus {
    /// db1, db2, ...
    pub name: String,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// The role it was started in (the live role may differ after a failover).
    pub role: Role,
    /// The pid of its mariadbd, if one is running (else the last one recorded).
    pub pid: Option<u32>,
    /// Whether that process is running.
    pub process: ProcessState,
    /// `@@read_only` (None when it could not be asked).
    pub read_only: Option<bool>,
    /// `@@gtid_current_pos` (None when it could not be asked).
    pub gtid_current_pos: Option<String>,
    /// The replica threads; None for a server that is not a replica.
    pub replication: Option<ReplicationThreads>,
    /// The wsrep state of a Galera node (None for replication servers, or when it could
    /// not be asked).
    pub wsrep: Option<WsrepStatus>,
    /// Why the server could not be asked, if it is running but did not answer.
    pub error: Option<String>,
}

impl ServerStatus {
    /// Running and answering queries.
    pub fn is_up(&self) -> bool {
        self.process == ProcessState::Alive && self.error.is_none()
    }
}

/// The status table printed by `kohaproxy sandbox status`: replication columns, or
/// wsrep columns when the rows are Galera nodes.
pub fn render_table(rows: &[ServerStatus]) -> String {
    if rows.iter().any(|r| r.role == Role::Node) {
        return render_galera_table(rows);
    }
    let mut table = vec![vec![
        "NAME".to_string(),
        "PORT".into(),
        "PID".into(),
        "STATE".into(),
        "READ_ONLY".into(),
        "GTID_CURRENT_POS".into(),
        "IO".into(),
        "SQL".into(),
    ]];
    let mut notes = Vec::new();
    for r in rows {
        let state = state_word(r);
        if let Some(e) = &r.error {
            notes.push(format!("{}: {e}", r.name));
        }
        if let Some(rep) = r
            .replication
            .as_ref()
            .filter(|rep| !rep.last_error.is_empty())
        {
            notes.push(format!("{}: replication error: {}", r.name, rep.last_error));
        }
        let dash = || "-".to_string();
        table.push(vec![
            r.name.clone(),
            r.port.to_string(),
            r.pid.map_or_else(dash, |p| p.to_string()),
            state.to_string(),
            r.read_only
                .map_or_else(dash, |ro| if ro { "ON" } else { "OFF" }.to_string()),
            r.gtid_current_pos
                .clone()
                .filter(|g| !g.is_empty())
                .unwrap_or_else(dash),
            r.replication
                .as_ref()
                .map_or_else(dash, |t| t.io_running.clone()),
            r.replication
                .as_ref()
                .map_or_else(dash, |t| t.sql_running.clone()),
        ]);
    }
    let mut out = render(&table);
    for n in notes {
        out.push_str(&n);
        out.push('\n');
    }
    out
}

/// "down", "stopped", "no answer" or "alive".
fn state_word(r: &ServerStatus) -> &'static str {
    match (r.process, &r.error) {
        (ProcessState::Down, _) => "down",
        (ProcessState::Stopped, _) => "stopped",
        (ProcessState::Alive, Some(_)) => "no answer",
        (ProcessState::Alive, None) => "alive",
    }
}

fn render_galera_table(rows: &[ServerStatus]) -> String {
    let mut table = vec![vec![
        "NAME".to_string(),
        "PORT".into(),
        "PID".into(),
        "STATE".into(),
        "WSREP_STATE".into(),
        "CLUSTER".into(),
        "SIZE".into(),
        "READY".into(),
        "RECV_QUEUE".into(),
        "GTID_BINLOG_POS".into(),
    ]];
    let mut notes = Vec::new();
    let dash = || "-".to_string();
    for r in rows {
        if let Some(e) = &r.error {
            notes.push(format!("{}: {e}", r.name));
        }
        let w = r.wsrep.as_ref();
        table.push(vec![
            r.name.clone(),
            r.port.to_string(),
            r.pid.map_or_else(dash, |p| p.to_string()),
            state_word(r).to_string(),
            w.map_or_else(dash, |w| w.local_state_comment.clone()),
            w.map_or_else(dash, |w| w.cluster_status.clone()),
            w.map_or_else(dash, |w| w.cluster_size.to_string()),
            w.map_or_else(dash, |w| if w.ready { "ON" } else { "OFF" }.to_string()),
            w.map_or_else(dash, |w| w.local_recv_queue.to_string()),
            w.map(|w| w.gtid_binlog_pos.clone())
                .filter(|g| !g.is_empty())
                .unwrap_or_else(dash),
        ]);
    }
    let mut out = render(&table);
    for n in notes {
        out.push_str(&n);
        out.push('\n');
    }
    out
}

/// Left-aligned columns separated by two spaces.
pub(crate) fn render(table: &[Vec<String>]) -> String {
    let columns = table.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            table
                .iter()
                .filter_map(|row| row.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in table {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(c, cell)| format!("{cell:<width$}", width = widths[c]))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}
