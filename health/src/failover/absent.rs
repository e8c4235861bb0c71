//! Servers that cannot be compared: what they may hold that the promoted replica must have.
//!
//! Under semi-sync every acknowledged write is on the master and on at least one replica.
//! When every replica of the failed master answers, the one that received the most has
//! every acknowledged write, whichever kohaproxy acknowledged it. A replica that does not
//! answer may be the only one holding some: the writes another kohaproxy acknowledged,
//! or this one before a restart, are in no acknowledged position this proxy knows.
//!
//! A replica that answers again after a restart is no better: it acknowledged writes as
//! soon as they were in its relay log, and a restarted replica (GTID mode, or
//! `relay_log_recovery`) discards its relay log and fetches it again from the master. If
//! the master dies before that, the writes it had received and not applied are gone from
//! it (measured: an acknowledged write on the dead master only). So a replica stays
//! absent from its first failed probe until it is seen replicating from the master again.
//!
//! Such a replica is accounted for only by what this monitor saw of the master: at its
//! last answered probe, begun after the replica had stopped answering, the master listed
//! its connected replicas (SHOW SLAVE HOSTS, read before its binlog position) and the
//! absent one was not among them. It then held nothing beyond the master's
//! `gtid_binlog_pos` of that probe (the `bound`), and the promoted replica must hold that
//! bound. Otherwise the failover waits for the replica or the master to answer.
//!
//! A replica that is dead cannot reconnect unseen; one cut off from this kohaproxy alone
//! while the master was too (two links down at once) could: that case is not covered.

use std::time::Instant;

use crate::gtid::GtidList;

/// A server (other than the failed master) not seen replicating from it since it last
/// failed a probe: unreachable now, or back but restarted (a restarted replica discards
/// the relay log it had received and fetches it again from the master, which is gone).
#[derive(Debug, Clone)]
pub(crate) struct Absent {
    /// Server name.
    pub name: String,
    /// The end of its first failed probe since it last replicated from the master.
    pub since: Instant,
}

/// The failed master at its last answered probe.
#[derive(Debug, Clone)]
pub(crate) struct MasterSeen {
    /// Server name.
    pub name: String,
    /// When that probe began.
    pub probed_at: Instant,
    /// The `server_id`s connected to its binlog then; `None` if it did not say.
    pub clients: Option<Vec<u32>>,
    /// Its `gtid_binlog_pos`, read after the list.
    pub binlog: GtidList,
}

/// What the promoted replica must hold so that no absent server has a write it lacks
/// (empty when nothing is absent), or why this cannot be known. `compared` are the
/// `server_id`s of the replicas that answered and are compared as candidates.
pub(crate) fn bound(
    absent: &[Absent],
    master: Option<&MasterSeen>,
    compared: &[u32],
) -> Result<GtidList, String> {
    let Some(first) = absent.first() else {
        return Ok(GtidList::default());
    };
    let names = absent
        .iter()
        .map(|a| a.name.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let may_hold = |why: String| {
        format!(
            "{names} cannot be reached and may hold acknowledged writes no reachable replica \
             has ({why})"
        )
    };
    let Some(m) = master else {
        return Err(may_hold(format!(
            "this kohaproxy never saw {} answer",
            first.name
        )));
    };
    let Some(clients) = &m.clients else {
        return Err(may_hold(format!("{} did not list its replicas", m.name)));
    };
    if let Some(id) = clients.iter().find(|id| !compared.contains(id)) {
        return Err(may_hold(format!(
            "at its last probe {} was sending its binlog to server_id {id}, which is not \
             among the replicas compared now",
            m.name
        )));
    }
    if let Some(late) = absent.iter().find(|a| a.since >= m.probed_at) {
        return Err(may_hold(format!(
            "{} stopped answering after the last probe of {}",
            late.name, m.name
        )));
    }
    Ok(m.binlog.clone())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn absent(name: &str, since: Instant) -> Absent {
        Absent {
            name: name.into(),
            since,
        }
    }

    fn master(at: Instant, clients: Option<Vec<u32>>) -> MasterSeen {
        MasterSeen {
            name: "db1".into(),
            probed_at: at,
            clients,
            binlog: "0-1-100".parse().unwrap(),
        }
    }

    #[test]
    fn with_every_replica_compared_nothing_more_is_required() {
        assert_eq!(bound(&[], None, &[2]).unwrap(), GtidList::default());
    }

    #[test]
    fn an_absent_replica_the_master_no_longer_served_bounds_the_promotion() {
        let t0 = Instant::now();
        let later = t0 + Duration::from_millis(500);
        let m = master(later, Some(vec![3]));
        assert_eq!(
            bound(&[absent("db2", t0)], Some(&m), &[3])
                .unwrap()
                .to_string(),
            "0-1-100"
        );
    }

    #[test]
    fn an_absent_replica_may_hold_writes_unless_the_master_showed_otherwise() {
        let t0 = Instant::now();
        let later = t0 + Duration::from_millis(500);
        let gone = [absent("db2", t0)];
        // A restarted proxy that never saw the master answer (chaos seeds 3 and 4).
        let e = bound(&gone, None, &[3]).unwrap_err();
        assert!(
            e.contains("db2 cannot be reached") && e.contains("never saw"),
            "{e}"
        );
        // The master did not list its replicas.
        let e = bound(&gone, Some(&master(later, None)), &[3]).unwrap_err();
        assert!(e.contains("did not list"), "{e}");
        // The master was still sending to a server that is not compared now.
        let e = bound(&gone, Some(&master(later, Some(vec![2, 3]))), &[3]).unwrap_err();
        assert!(e.contains("server_id 2"), "{e}");
        // It stopped answering after the master's last probe began: a double fault.
        let e = bound(&gone, Some(&master(t0, Some(vec![3]))), &[3]).unwrap_err();
        assert!(e.contains("stopped answering after"), "{e}");
    }
}
