//! Which servers should hold commits for a replica's ack when none is connected
//! (`rpl_semi_sync_master_wait_no_slave`). Pure; the monitor applies the answer.
//!
//! With the setting OFF a master whose last replica disconnects acknowledges writes at
//! once, asynchronously: they exist only on the master. A kohaproxy that cannot reach the
//! master either (a partition that cuts it and the replicas off together) may then
//! promote a replica lacking writes another kohaproxy acknowledged. With it ON the master
//! holds each such commit up to `rpl_semi_sync_master_timeout`, time for the promotion to
//! be recorded and for every proxy to stop forwarding the old master's answers. But ON
//! on a replica stalls its SQL thread that long on its first applied transaction, so the
//! setting follows the role: ON on the master, OFF everywhere else.

/// One server as the decision needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// It answered its last probe.
    pub up: bool,
    /// Its `@@rpl_semi_sync_master_wait_no_slave`, when known.
    pub wait_no_slave: Option<bool>,
}

/// The changes to make: (server index, the value to set). `master` is the current
/// master's index; a cluster of one server is left alone (it has no replica to wait for).
pub fn changes(servers: &[Seen], master: usize) -> Vec<(usize, bool)> {
    if servers.len() < 2 {
        return Vec::new();
    }
    servers
        .iter()
        .enumerate()
        .filter(|(_, s)| s.up)
        .filter_map(|(i, s)| {
            let want = i == master;
            (s.wait_no_slave? != want).then_some((i, want))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(up: bool, v: Option<bool>) -> Seen {
        Seen {
            up,
            wait_no_slave: v,
        }
    }

    #[test]
    fn on_for_the_master_off_for_the_others() {
        let s = [
            seen(true, Some(false)),
            seen(true, Some(true)),
            seen(true, Some(false)),
        ];
        assert_eq!(changes(&s, 0), vec![(0, true), (1, false)]);
        assert_eq!(changes(&s, 1), vec![]);
    }

    #[test]
    fn unknown_or_down_servers_are_left_alone() {
        let s = [
            seen(true, None),
            seen(false, Some(true)),
            seen(true, Some(false)),
        ];
        assert_eq!(changes(&s, 0), vec![]);
    }

    #[test]
    fn a_lone_server_is_left_alone() {
        assert_eq!(changes(&[seen(true, Some(false))], 0), vec![]);
    }
}
