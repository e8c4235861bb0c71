//! Roles discovered from what the servers say, never from the config.
//!
//! The master is the one reachable writable server, provided it replicates from nobody and
//! every reachable read-only server that replicates follows it. A replica is a reachable
//! read-only server replicating from the master. Anything else that does not add up (two
//! writable servers, a replica following a host that is not configured or a server other
//! than the writable one, a writable server that itself replicates) is a *problem*: it is
//! reported and there is no master, since guessing could send writes to the wrong server.
//! Pure functions over the probed views: tested without servers.

use crate::probe::{split_address, Replication, Status, ThreadState};
use crate::topology::{Lag, Role, ServerState, ServerView};

/// What [`discover`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovery {
    /// Index of the master, if the topology makes sense and has one.
    pub master: Option<usize>,
    /// Each server's role, in the order given.
    pub roles: Vec<Role>,
    /// Why the topology makes no sense (then `master` is `None`).
    pub problem: Option<String>,
}

/// A server's last good probe, if it is up: the only servers that count.
fn live(s: &ServerView) -> Option<&Status> {
    (s.state == ServerState::Up)
        .then_some(s.status.as_ref())
        .flatten()
}

/// Works out the roles from the servers' states and last good probes. Only servers that are
/// [`ServerState::Up`] count; a down server's last known status is ignored.
///
/// `term_master` is the master of the monitor's current term, if it has one. While that
/// server is up and writable it stays the master whatever the others say: another
/// writable server, or one replicating from elsewhere, is [`Role::Stale`] (to be fenced
/// and rejoined), not a reason to stop all writes. Without it (or while it is down or
/// read-only) the roles are discovered from scratch, and anything that does not add up
/// is a problem.
pub fn discover(servers: &[ServerView], term_master: Option<usize>) -> Discovery {
    if let Some(h) = term_master.filter(|&h| {
        servers
            .get(h)
            .and_then(live)
            .is_some_and(|st| !st.read_only)
    }) {
        return discover_under(servers, h);
    }
    let mut roles: Vec<Role> = servers
        .iter()
        .map(|s| match live(s) {
            Some(st) if st.read_only && st.replication.is_empty() => Role::Standalone,
            _ => Role::Unknown,
        })
        .collect();
    let mut problems: Vec<String> = Vec::new();

    let writable: Vec<usize> = (0..servers.len())
        .filter(|&i| live(&servers[i]).is_some_and(|st| !st.read_only))
        .collect();
    let candidate = match writable.as_slice() {
        [] => None,
        [one] => Some(*one),
        many => {
            let names: Vec<&str> = many.iter().map(|&i| servers[i].name.as_str()).collect();
            problems.push(format!(
                "several servers are writable: {}",
                names.join(", ")
            ));
            None
        }
    };
    if let Some(w) = candidate {
        let mut links = live(&servers[w]).into_iter().flat_map(|st| &st.replication);
        if let Some(link) = links.find(|r| r.is_active()) {
            problems.push(format!(
                "{} is writable but itself replicates from {}",
                servers[w].name,
                describe(servers, link)
            ));
        }
    }

    // Whom each reachable read-only server follows.
    let mut followed: Vec<usize> = Vec::new();
    for (i, s) in servers.iter().enumerate() {
        let Some(st) = live(s).filter(|st| st.read_only) else {
            continue;
        };
        let link = match st.replication.as_slice() {
            [] => continue,
            [link] => link,
            many => {
                problems.push(format!(
                    "{} has {} replication connections (multi-source is not supported)",
                    s.name,
                    many.len()
                ));
                continue;
            }
        };
        match master_of(servers, link) {
            None => problems.push(format!(
                "{} replicates from {}:{}, which is not a configured server",
                s.name, link.master_host, link.master_port
            )),
            Some(m) if m == i => problems.push(format!("{} replicates from itself", s.name)),
            Some(m) => match candidate {
                Some(w) if m == w => roles[i] = Role::Replica,
                Some(w) => problems.push(format!(
                    "{} replicates from {}, not from the writable {}",
                    s.name, servers[m].name, servers[w].name
                )),
                None => {
                    if !followed.contains(&m) {
                        followed.push(m);
                    }
                }
            },
        }
    }
    if followed.len() > 1 {
        let names: Vec<&str> = followed.iter().map(|&m| servers[m].name.as_str()).collect();
        problems.push(format!(
            "replicas follow different masters: {}",
            names.join(", ")
        ));
    }

    if problems.is_empty() {
        if let Some(w) = candidate {
            roles[w] = Role::Master;
        }
        Discovery {
            master: candidate,
            roles,
            problem: None,
        }
    } else {
        for r in &mut roles {
            if *r == Role::Replica {
                *r = Role::Unknown;
            }
        }
        Discovery {
            master: None,
            roles,
            problem: Some(problems.join("; ")),
        }
    }
}

/// The roles while the term master `h` is up and writable.
fn discover_under(servers: &[ServerView], h: usize) -> Discovery {
    let roles = servers
        .iter()
        .enumerate()
        .map(|(i, s)| {
            if i == h {
                return Role::Master;
            }
            let Some(st) = live(s) else {
                return Role::Unknown;
            };
            if !st.read_only {
                return Role::Stale;
            }
            match st.replication.as_slice() {
                [] => Role::Standalone,
                [link] if master_of(servers, link) == Some(h) => Role::Replica,
                [link] if !link.is_active() => Role::Standalone,
                _ => Role::Stale,
            }
        })
        .collect();
    Discovery {
        master: Some(h),
        roles,
        problem: None,
    }
}

/// How far `replica` is behind `master`: Seconds_Behind_Master while the SQL thread runs,
/// and whether its `gtid_current_pos` has reached the master's `gtid_binlog_pos`.
pub fn lag(replica: &Status, master: &Status) -> Lag {
    let link: Option<&Replication> = replica.replication.first();
    Lag {
        seconds_behind_master: link
            .filter(|r| r.sql_thread == ThreadState::Running)
            .and_then(|r| r.seconds_behind_master),
        caught_up: replica.gtid_current_pos.contains(&master.gtid_binlog_pos),
        transactions_behind: replica.gtid_current_pos.behind(&master.gtid_binlog_pos),
    }
}

/// The configured server at `host:port`, if any.
pub(crate) fn find(servers: &[ServerView], host: &str, port: u16) -> Option<usize> {
    servers.iter().position(|s| {
        let (h, p) = split_address(&s.address);
        p == port && same_host(&h, host)
    })
}

/// The configured server a replication link reads from: by address, or else by the
/// server_id the link reports (`Master_Server_Id`) and a server was last probed with, so
/// a link through another route (a relay, NAT, another name) is still recognised.
pub(crate) fn master_of(servers: &[ServerView], link: &Replication) -> Option<usize> {
    find(servers, &link.master_host, link.master_port).or_else(|| {
        (link.master_server_id != 0)
            .then(|| {
                servers.iter().position(|s| {
                    s.status
                        .as_ref()
                        .is_some_and(|st| st.server_id == link.master_server_id)
                })
            })
            .flatten()
    })
}

/// `host` as a configured name, or `host:port` if it is none.
/// The server every replica follows when no server is writable (see
/// [`followed_by_all`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Followed {
    /// It is up and replicates from nobody: every server restarted read-only, as
    /// production servers come up; it is the master.
    Alive(usize),
    /// It is down: the master died (perhaps while no kohaproxy watched, or while the
    /// one promoting a replica died before changing anything); it is the master to fail
    /// over from.
    Dead(usize),
}

/// The server that every up replica's link points at, when no up server is writable and
/// at least one replica has a link, and every link points at that one server.
pub fn followed_by_all(servers: &[ServerView]) -> Option<Followed> {
    let up = || servers.iter().filter(|v| v.state == ServerState::Up);
    if up().any(|v| v.read_only != Some(true)) {
        return None;
    }
    let mut target = None;
    for v in up() {
        let st = v.status.as_ref()?;
        match st.replication.as_slice() {
            [] => {}
            [link] => {
                let x = master_of(servers, link)?;
                if target.is_some_and(|y| y != x) {
                    return None;
                }
                target = Some(x);
            }
            _ => return None,
        }
    }
    let x = target?;
    let leader = servers.get(x)?;
    match leader.state {
        ServerState::Up => leader
            .status
            .as_ref()
            .is_some_and(|s| s.replication.is_empty())
            .then_some(Followed::Alive(x)),
        ServerState::Down => Some(Followed::Dead(x)),
        ServerState::Unknown => None,
    }
}

fn describe(servers: &[ServerView], link: &Replication) -> String {
    match master_of(servers, link) {
        Some(i) => servers[i].name.clone(),
        None => format!("{}:{}", link.master_host, link.master_port),
    }
}

/// Host names compare without case; every loopback spelling (localhost, 127.x.x.x, ::1)
/// is the same host. Names are not resolved: write Master_Host as the config writes the
/// address (or both as IP addresses).
pub(crate) fn same_host(a: &str, b: &str) -> bool {
    let norm = |h: &str| {
        h.trim()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase()
    };
    let (a, b) = (norm(a), norm(b));
    a == b || (is_loopback(&a) && is_loopback(&b))
}

fn is_loopback(h: &str) -> bool {
    h == "localhost"
        || h == "::1"
        || h.parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests;
