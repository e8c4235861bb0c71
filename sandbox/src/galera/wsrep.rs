//! Reading a node's wsrep state.

use std::time::Duration;

use crate::client::{self, Output};
use crate::error::{Result, SandboxError};
use crate::server::ServerInfo;
use crate::status::WsrepStatus;
use crate::template::Binaries;

/// How long a probe of one node may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// The SQL of one wsrep probe: variables first, then the wsrep status counters.
const WSREP_SQL: &str = "SELECT @@gtid_binlog_pos, @@gtid_current_pos, @@wsrep_desync, \
     @@read_only; SHOW GLOBAL STATUS WHERE Variable_name IN ('wsrep_local_state', \
     'wsrep_local_state_comment', 'wsrep_cluster_status', 'wsrep_cluster_size', \
     'wsrep_ready', 'wsrep_connected', 'wsrep_local_recv_queue', 'wsrep_local_index', \
     'wsrep_cluster_state_uuid', 'wsrep_last_committed')";

/// Parses the `-N -B` output of [`WSREP_SQL`].
pub(crate) fn parse_wsrep(text: &str) -> Result<WsrepStatus, String> {
    let mut lines = text.lines();
    let first = lines
        .next()
        .ok_or_else(|| format!("empty output {text:?}"))?;
    let vars: Vec<&str> = first.split('\t').collect();
    let [binlog, current, desync, read_only] = vars.as_slice() else {
        return Err(format!("unexpected first row {first:?}"));
    };
    let mut st = WsrepStatus {
        local_state: 0,
        local_state_comment: String::new(),
        cluster_status: String::new(),
        cluster_size: 0,
        ready: false,
        connected: false,
        local_recv_queue: 0,
        local_index: None,
        cluster_state_uuid: String::new(),
        last_committed: None,
        desync: *desync == "1",
        read_only: *read_only == "1",
        gtid_binlog_pos: binlog.to_string(),
        gtid_current_pos: current.to_string(),
    };
    let mut seen_state = false;
    for line in lines {
        let Some((name, value)) = line.split_once('\t') else {
            continue;
        };
        let name = name.to_ascii_lowercase();
        match name.as_str() {
            "wsrep_local_state" => {
                st.local_state = value
                    .parse()
                    .map_err(|_| format!("wsrep_local_state {value:?}"))?;
                seen_state = true;
            }
            "wsrep_local_state_comment" => st.local_state_comment = value.to_string(),
            "wsrep_cluster_status" => st.cluster_status = value.to_string(),
            "wsrep_cluster_size" => st.cluster_size = value.parse().unwrap_or(0),
            "wsrep_ready" => st.ready = value == "ON",
            "wsrep_connected" => st.connected = value == "ON",
            "wsrep_local_recv_queue" => st.local_recv_queue = value.parse().unwrap_or(0),
            "wsrep_local_index" => st.local_index = value.parse().ok(),
            "wsrep_cluster_state_uuid" => st.cluster_state_uuid = value.to_string(),
            "wsrep_last_committed" => st.last_committed = value.parse().ok(),
            _ => {}
        }
    }
    if seen_state {
        Ok(st)
    } else {
        Err("no wsrep_local_state: is this a Galera node?".into())
    }
}

/// One wsrep probe of a node.
pub(crate) fn wsrep_probe(bins: &Binaries, info: &ServerInfo) -> Result<WsrepStatus> {
    let text = client::query(
        bins,
        &info.name,
        info.port,
        WSREP_SQL,
        Output::Plain,
        Some(PROBE_TIMEOUT),
    )?;
    parse_wsrep(&text).map_err(|detail| SandboxError::Parse {
        server: info.name.clone(),
        detail,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn wsrep_probe_output() {
        let text = "100-1-3\t100-1-3\t0\t0\n\
            wsrep_local_state_comment\tSynced\nwsrep_local_state\t4\n\
            wsrep_cluster_status\tPrimary\nwsrep_cluster_size\t3\nwsrep_ready\tON\n\
            wsrep_connected\tON\nwsrep_local_recv_queue\t0\nwsrep_local_index\t1\n\
            wsrep_cluster_state_uuid\tb6b94266-f0b3-11f1-8d90-dea170f96db2\n\
            wsrep_last_committed\t12\n";
        let st = parse_wsrep(text).unwrap();
        assert!(st.is_synced());
        assert_eq!(st.cluster_size, 3);
        assert_eq!(st.gtid_binlog_pos, "100-1-3");
        assert_eq!(st.local_index, Some(1));
        assert_eq!(st.last_committed, Some(12));

        let lonely = "\t\t0\t0\nwsrep_local_state\t0\nwsrep_local_state_comment\tInitialized\n\
            wsrep_cluster_status\tnon-Primary\nwsrep_cluster_size\t1\nwsrep_ready\tOFF\n\
            wsrep_local_index\t18446744073709551615\n";
        let st = parse_wsrep(lonely).unwrap();
        assert!(!st.is_synced());
        assert_eq!(st.gtid_binlog_pos, "");
        assert_eq!(st.local_index, None);

        assert!(parse_wsrep("1\t2\t0\t0\n").is_err());
    }
}
