//! Choosing the replica to promote: pure, so every rule is tested without servers.
//!
//! A candidate must hold every write the proxy acknowledged (the acked position) in what
//! it has received (relay log included: it is applied before promotion). Among those,
//! the one that received the most wins, then the configured priority, then the name.
//! Servers marked `no_promote` or in maintenance are never chosen; if one of them
//! received more than the chosen one, the chosen one first catches up from it (and the
//! acknowledged-write check counts what it will get from there); a warning remains only
//! for another one that has more still.

use crate::gtid::GtidList;

pub(crate) mod absent;

/// A replica of the failed master, as the last probe saw it.
#[derive(Debug, Clone)]
pub(crate) struct Candidate {
    /// Config index.
    pub index: usize,
    /// Server name.
    pub name: String,
    /// `@@server_id`.
    pub server_id: u32,
    /// Everything it has: `gtid_current_pos` raised to its `Gtid_IO_Pos`.
    pub received: GtidList,
    /// `servers.priority` (higher wins a tie).
    pub priority: i32,
    /// False for `no_promote` or maintenance.
    pub eligible: bool,
}

/// The chosen candidate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Choice {
    /// Config index of the server to promote.
    pub index: usize,
    /// A replica that may not be promoted (`no_promote`, maintenance) but received
    /// transactions the chosen one lacks: the chosen one replicates from it until it has
    /// them all, before its promotion (failover.md scenario 3).
    pub catch_up_from: Option<usize>,
    /// Why this choice is not ideal, if it is not (another replica received more).
    pub warning: Option<String>,
}

/// Picks the replica to promote, or says why none may be.
pub(crate) fn choose(candidates: &[Candidate], acked: &GtidList) -> Result<Choice, String> {
    let mut most = GtidList::default();
    for c in candidates {
        most.raise_all(&c.received);
    }
    let by_most = |a: &&Candidate, b: &&Candidate| {
        a.received
            .behind(&most)
            .cmp(&b.received.behind(&most))
            .then(b.priority.cmp(&a.priority))
            .then(a.name.cmp(&b.name))
    };
    let mut eligible: Vec<&Candidate> = candidates.iter().filter(|c| c.eligible).collect();
    if eligible.is_empty() {
        return Err(if candidates.is_empty() {
            "no reachable replica of the failed master".to_string()
        } else {
            "every reachable replica is no_promote or in maintenance".to_string()
        });
    }
    eligible.sort_by(by_most);
    // The replica that may not be promoted and received the most: the one to catch up from.
    let donor = candidates.iter().filter(|c| !c.eligible).min_by(by_most);
    let after_catch_up = |c: &Candidate| {
        let mut r = c.received.clone();
        if let Some(d) = donor {
            r.raise_all(&d.received);
        }
        r
    };
    let Some(best) = eligible.iter().find(|c| after_catch_up(c).contains(acked)) else {
        let top = eligible[0];
        return Err(format!(
            "no promotable replica has every acknowledged write: acknowledged {acked}, \
             best candidate {} has {}",
            top.name,
            if top.received.is_empty() {
                "nothing".to_string()
            } else {
                top.received.to_string()
            }
        ));
    };
    let catch_up_from = donor
        .filter(|d| !best.received.contains(&d.received))
        .map(|d| d.index);
    let has = after_catch_up(best);
    let warning = candidates
        .iter()
        .filter(|c| !c.received.is_empty() && !has.contains(&c.received))
        .map(|c| {
            format!(
                "{} received more ({}) than the promoted {} ({}): its extra transactions \
                 will keep it from following the new master",
                c.name, c.received, best.name, has
            )
        })
        .next();
    Ok(Choice {
        index: best.index,
        catch_up_from,
        warning,
    })
}

/// The replicas (of `candidates`) that hold transactions the master `master_has`
/// (its `gtid_current_pos`) lacks. A replica only ever has what its master sent, so any
/// such transaction is one the master lost: it crashed and came back without it
/// (`--init-rpl-role=SLAVE` crash recovery removes binlogged transactions whose InnoDB
/// commit was not yet durable, and under semi-sync AFTER_SYNC those may have been
/// acknowledged: a replica had them). Such a master must not take writes again; the
/// replica holding them is promoted instead.
pub(crate) fn ahead_of_master(candidates: &[Candidate], master_has: &GtidList) -> Vec<usize> {
    candidates
        .iter()
        .filter(|c| !master_has.contains(&c.received))
        .map(|c| c.index)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(index: usize, name: &str, received: &str, priority: i32, eligible: bool) -> Candidate {
        Candidate {
            index,
            name: name.into(),
            server_id: index as u32 + 1,
            received: received.parse().unwrap(),
            priority,
            eligible,
        }
    }

    fn pos(s: &str) -> GtidList {
        s.parse().unwrap()
    }

    #[test]
    fn the_replica_that_received_most_wins_then_priority_then_name() {
        let c = [
            cand(1, "db2", "0-1-10", 0, true),
            cand(2, "db3", "0-1-12", 0, true),
        ];
        assert_eq!(choose(&c, &pos("0-1-10")).unwrap().index, 2);
        let c = [
            cand(1, "db2", "0-1-12", 0, true),
            cand(2, "db3", "0-1-12", 5, true),
        ];
        assert_eq!(choose(&c, &pos("")).unwrap().index, 2);
        let c = [
            cand(2, "db3", "0-1-12", 0, true),
            cand(1, "db2", "0-1-12", 0, true),
        ];
        assert_eq!(
            choose(&c, &pos("")).unwrap(),
            Choice {
                index: 1,
                catch_up_from: None,
                warning: None
            }
        );
    }

    #[test]
    fn never_a_replica_lacking_an_acknowledged_write() {
        let c = [
            cand(1, "db2", "0-1-9", 0, true),
            cand(2, "db3", "0-1-8", 0, true),
        ];
        let e = choose(&c, &pos("0-1-10")).unwrap_err();
        assert!(
            e.contains("acknowledged 0-1-10") && e.contains("db2 has 0-1-9"),
            "{e}"
        );
        // The best is excluded: the promotable one is chosen and catches up from it
        // first (scenario 3), also when only that one has every acknowledged write.
        let c = [
            cand(1, "db2", "0-1-12", 0, false),
            cand(2, "db3", "0-1-10", 0, true),
        ];
        for acked in ["0-1-10", "0-1-12"] {
            assert_eq!(
                choose(&c, &pos(acked)).unwrap(),
                Choice {
                    index: 2,
                    catch_up_from: Some(1),
                    warning: None
                }
            );
        }
        // Two excluded: the one that received most is the source; the other, if it has
        // more still (another domain), is named in a warning.
        let c = [
            cand(1, "db2", "0-1-12", 0, false),
            cand(2, "db3", "0-1-10", 0, true),
            cand(3, "db4", "0-1-11,1-4-1", 0, false),
        ];
        let choice = choose(&c, &pos("0-1-12")).unwrap();
        assert_eq!((choice.index, choice.catch_up_from), (2, Some(1)));
        assert!(choice.warning.unwrap().contains("db4 received more"));
        // Nothing to catch up: no source.
        let c = [
            cand(1, "db2", "0-1-9", 0, false),
            cand(2, "db3", "0-1-10", 0, true),
        ];
        assert_eq!(choose(&c, &pos("0-1-10")).unwrap().catch_up_from, None);
        let c = [cand(1, "db2", "0-1-12", 0, false)];
        assert!(choose(&c, &pos("")).unwrap_err().contains("no_promote"));
        assert!(choose(&[], &pos(""))
            .unwrap_err()
            .contains("no reachable replica"));
    }

    #[test]
    fn a_replica_with_what_the_restarted_master_lacks_is_ahead() {
        let master: GtidList = "0-1-100".parse().unwrap();
        let replicas = [
            cand(1, "db2", "0-1-100", 0, true),
            cand(2, "db3", "0-1-103", 0, true),
            cand(3, "db4", "0-1-90", 0, true),
        ];
        assert_eq!(ahead_of_master(&replicas, &master), vec![2]);
        // Another domain the master never had counts too (it cannot come from elsewhere).
        let other = [cand(1, "db2", "0-1-100,1-2-5", 0, true)];
        assert_eq!(ahead_of_master(&other, &master), vec![1]);
        assert!(ahead_of_master(&replicas[..1], &master).is_empty());
    }
}
