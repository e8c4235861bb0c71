//! MariaDB GTID positions (`@@gtid_current_pos`, `@@gtid_binlog_pos`, `@@gtid_slave_pos`,
//! `Gtid_IO_Pos`): a list of `domain-server_id-seq_no`, at most one per replication domain.
//!
//! Within a domain, order is decided by `seq_no` only (the server_id says who wrote the
//! transaction, not where it sits): this is how MariaDB itself compares positions
//! (MASTER_GTID_WAIT, gtid_strict_mode). Two histories that diverged at equal seq_no look
//! alike here; detecting divergence needs `gtid_binlog_state` and is left to failover.

use std::fmt;
use std::str::FromStr;

/// One GTID: `domain-server_id-seq_no`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Gtid {
    /// The replication domain.
    pub domain: u32,
    /// The server_id of the server that first wrote the transaction.
    pub server_id: u32,
    /// The transaction's sequence number within its domain.
    pub seq_no: u64,
}

impl fmt::Display for Gtid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}-{}", self.domain, self.server_id, self.seq_no)
    }
}

/// A GTID position: the last GTID per domain, sorted by domain. Empty means "nothing yet".
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct GtidList(Vec<Gtid>);

/// A GTID position that is not `domain-server_id-seq_no[,...]` with one entry per domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseGtidError {
    /// The text that did not parse.
    pub input: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl fmt::Display for ParseGtidError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad GTID position {:?}: {}", self.input, self.reason)
    }
}

impl std::error::Error for ParseGtidError {}

impl FromStr for Gtid {
    type Err = ParseGtidError;

    /// One `domain-server_id-seq_no` (what `last_gtid` reports).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let list: GtidList = s.parse()?;
        match list.0.as_slice() {
            [one] => Ok(*one),
            _ => Err(ParseGtidError {
                input: s.to_string(),
                reason: "expected exactly one GTID",
            }),
        }
    }
}

impl FromStr for GtidList {
    type Err = ParseGtidError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| ParseGtidError {
            input: s.to_string(),
            reason,
        };
        let mut list: Vec<Gtid> = Vec::new();
        // MariaDB writes "0-1-5,1-2-7" (newlines appear in long SHOW output): split on both.
        for part in s
            .split([',', '\n'])
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            let mut fields = part.split('-');
            let (Some(domain), Some(server_id), Some(seq_no), None) =
                (fields.next(), fields.next(), fields.next(), fields.next())
            else {
                return Err(err("expected domain-server_id-seq_no"));
            };
            let gtid = Gtid {
                domain: domain.parse().map_err(|_| err("bad domain id"))?,
                server_id: server_id.parse().map_err(|_| err("bad server_id"))?,
                seq_no: seq_no.parse().map_err(|_| err("bad seq_no"))?,
            };
            if list.iter().any(|g| g.domain == gtid.domain) {
                return Err(err("two GTIDs for one domain"));
            }
            list.push(gtid);
        }
        list.sort_by_key(|g| g.domain);
        Ok(GtidList(list))
    }
}

/// GTIDs as MariaDB prints them: comma-separated, no spaces.
fn write_gtids(f: &mut fmt::Formatter<'_>, gtids: &[Gtid]) -> fmt::Result {
    for (i, g) in gtids.iter().enumerate() {
        if i > 0 {
            f.write_str(",")?;
        }
        write!(f, "{g}")?;
    }
    Ok(())
}

impl fmt::Display for GtidList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_gtids(f, &self.0)
    }
}

impl GtidList {
    /// True when there is no GTID in any domain.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The GTIDs, sorted by domain.
    pub fn iter(&self) -> impl Iterator<Item = &Gtid> {
        self.0.iter()
    }

    /// The last GTID of `domain`, if any.
    pub fn get(&self, domain: u32) -> Option<&Gtid> {
        self.0.iter().find(|g| g.domain == domain)
    }

    /// Raises this position to `gtid` in its domain (if `gtid` is further); true if it moved.
    pub fn raise(&mut self, gtid: Gtid) -> bool {
        match self.0.iter_mut().find(|g| g.domain == gtid.domain) {
            Some(g) if g.seq_no >= gtid.seq_no => false,
            Some(g) => {
                *g = gtid;
                true
            }
            None => {
                self.0.push(gtid);
                self.0.sort_by_key(|g| g.domain);
                true
            }
        }
    }

    /// Raises this position to `other` in every domain where `other` is further.
    pub fn raise_all(&mut self, other: &GtidList) {
        for g in &other.0 {
            self.raise(*g);
        }
    }

    /// True when this position has reached `other` in every domain of `other` (seq_no
    /// equal or higher). Every position contains the empty one.
    pub fn contains(&self, other: &GtidList) -> bool {
        other
            .0
            .iter()
            .all(|o| self.get(o.domain).is_some_and(|g| g.seq_no >= o.seq_no))
    }

    /// How many transactions `other` has that this position has not reached yet, summed
    /// over domains (0 when `self.contains(other)`).
    pub fn behind(&self, other: &GtidList) -> u64 {
        other
            .0
            .iter()
            .map(|o| {
                let have = self.get(o.domain).map_or(0, |g| g.seq_no);
                o.seq_no.saturating_sub(have)
            })
            .fold(0u64, u64::saturating_add)
    }
}

/// `@@gtid_binlog_state`: the last GTID per (domain, server_id) ever written to a binlog.
/// Unlike a position it keeps one entry per server that wrote in a domain, which is what
/// shows transactions a server has and another lacks even at equal seq_no.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct GtidState(Vec<Gtid>);

impl FromStr for GtidState {
    type Err = ParseGtidError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut all = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let list: GtidList = part.parse()?;
            all.extend(list.0);
        }
        all.sort_by_key(|g| (g.domain, g.server_id));
        Ok(GtidState(all))
    }
}

impl fmt::Display for GtidState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_gtids(f, &self.0)
    }
}

impl GtidState {
    /// The entries of this state that `other` lacks: a (domain, server_id) that `other`
    /// never saw, or saw only up to a lower seq_no. Empty when a server with this state
    /// can replicate from one with `other` without losing or repeating anything.
    pub fn extra_over(&self, other: &GtidState) -> Vec<Gtid> {
        self.0
            .iter()
            .filter(|g| {
                !other.0.iter().any(|o| {
                    o.domain == g.domain && o.server_id == g.server_id && o.seq_no >= g.seq_no
                })
            })
            .copied()
            .collect()
    }

    /// True when no GTID was ever written.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raise_moves_forward_only() {
        let mut p: GtidList = "0-1-5".parse().unwrap();
        assert!(!p.raise("0-1-4".parse().unwrap()));
        assert!(p.raise("0-2-6".parse().unwrap()));
        assert!(p.raise("1-1-1".parse().unwrap()));
        assert_eq!(p.to_string(), "0-2-6,1-1-1");
        p.raise_all(&"0-1-9,2-1-1".parse().unwrap());
        assert_eq!(p.to_string(), "0-1-9,1-1-1,2-1-1");
        assert!("0-1-1,1-1-1".parse::<Gtid>().is_err());
        assert!("".parse::<Gtid>().is_err());
    }

    fn list(s: &str) -> GtidList {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_prints_sorted_by_domain() {
        let l = list("1-2-5, 0-1-100");
        assert_eq!(l.to_string(), "0-1-100,1-2-5");
        assert_eq!(
            l.get(1),
            Some(&Gtid {
                domain: 1,
                server_id: 2,
                seq_no: 5
            })
        );
        assert!(list("").is_empty());
        assert!(list("  ").is_empty());
        assert_eq!(list("0-1-1,\n1-1-2").iter().count(), 2);
    }

    #[test]
    fn rejects_what_is_not_a_position() {
        for bad in [
            "0-1",
            "0-1-2-3",
            "a-1-2",
            "0-1-x",
            "0-1--2",
            "0-1-2,0-2-3",
            "-1-2-3",
        ] {
            let e = bad.parse::<GtidList>().unwrap_err();
            assert_eq!(e.input, bad);
            assert!(e.to_string().contains(bad), "{e}");
        }
    }

    #[test]
    fn contains_compares_seq_no_per_domain() {
        let master = list("0-1-100,1-2-5");
        assert!(list("0-1-100,1-2-5").contains(&master));
        assert!(list("0-1-101,1-2-5,2-3-1").contains(&master));
        // A different server_id at a higher seq_no still counts (seq_no decides).
        assert!(list("0-3-100,1-2-6").contains(&master));
        assert!(!list("0-1-99,1-2-5").contains(&master));
        assert!(!list("0-1-100").contains(&master), "domain 1 missing");
        assert!(list("").contains(&list("")));
        assert!(list("0-1-1").contains(&list("")));
        assert!(!list("").contains(&list("0-1-1")));
    }

    #[test]
    fn behind_counts_missing_transactions() {
        let master = list("0-1-100,1-2-5");
        assert_eq!(list("0-1-100,1-2-5").behind(&master), 0);
        assert_eq!(list("0-1-90,1-2-5").behind(&master), 10);
        assert_eq!(list("0-1-90").behind(&master), 15);
        assert_eq!(list("0-1-200,1-2-9").behind(&master), 0);
        assert_eq!(list("").behind(&list("")), 0);
    }

    #[test]
    fn binlog_states_show_what_a_server_has_that_another_lacks() {
        let old: GtidState = "0-1-101,0-2-50".parse().unwrap();
        let new: GtidState = "0-2-150,0-1-100".parse().unwrap();
        let extra = old.extra_over(&new);
        assert_eq!(extra.len(), 1);
        assert_eq!(extra[0].to_string(), "0-1-101");
        assert!(new
            .extra_over(&"0-1-100,0-2-150,0-3-151".parse().unwrap())
            .is_empty());
        let other_server: GtidState = "0-3-7".parse().unwrap();
        assert_eq!(other_server.extra_over(&new).len(), 1);
        assert!(GtidState::default().extra_over(&new).is_empty());
        assert_eq!(new.to_string(), "0-1-100,0-2-150");
    }
}
