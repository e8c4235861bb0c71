//! The published view of the cluster.

use std::sync::Arc;

use arc_swap::ArcSwap;

/// How the monitor sees one server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerState {
    /// Not probed yet.
    Unknown,
    /// The last probe succeeded.
    Up,
    /// `fail_count` probes in a row failed.
    Down,
}

impl std::fmt::Display for ServerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ServerState::Unknown => "unknown",
            ServerState::Up => "up",
            ServerState::Down => "down",
        })
    }
}

/// One server in a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerView {
    /// Name from the config.
    pub name: String,
    /// host:port from the config.
    pub address: String,
    /// Reachability.
    pub state: ServerState,
    /// `@@read_only` at the last good probe.
    pub read_only: Option<bool>,
    /// The last probe error, if the last probe failed.
    pub last_error: Option<String>,
}

/// An immutable snapshot of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// Every configured server, in config order.
    pub servers: Vec<ServerView>,
    /// Index into `servers` of the master: the one reachable writable server. `None`
    /// when there is none, or when more than one is writable (never guessed).
    pub master: Option<usize>,
}

impl Topology {
    /// The master's view, if there is one.
    pub fn master(&self) -> Option<&ServerView> {
        self.master.and_then(|i| self.servers.get(i))
    }

    /// Picks the master from the servers' states: the single reachable server with
    /// read_only OFF. Returns `Err` with the names when several are writable.
    pub fn elect(servers: &[ServerView]) -> Result<Option<usize>, Vec<String>> {
        let writable: Vec<usize> = servers
            .iter()
            .enumerate()
            .filter(|(_, s)| s.state == ServerState::Up && s.read_only == Some(false))
            .map(|(i, _)| i)
            .collect();
        match writable.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(*one)),
            many => Err(many.iter().map(|&i| servers[i].name.clone()).collect()),
        }
    }
}

/// A cheap, clonable handle for reading the current snapshot.
#[derive(Debug, Clone)]
pub struct TopologyHandle(pub(crate) Arc<ArcSwap<Topology>>);

impl TopologyHandle {
    /// The current snapshot (lock-free).
    pub fn load(&self) -> Arc<Topology> {
        self.0.load_full()
    }

    /// A handle over a fixed snapshot (for tests and tools).
    pub fn fixed(topology: Topology) -> Self {
        TopologyHandle(Arc::new(ArcSwap::from_pointee(topology)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(name: &str, state: ServerState, read_only: Option<bool>) -> ServerView {
        ServerView {
            name: name.into(),
            address: "127.0.0.1:1".into(),
            state,
            read_only,
            last_error: None,
        }
    }

    #[test]
    fn the_single_reachable_writable_server_is_master() {
        let s = vec![
            server("db1", ServerState::Up, Some(true)),
            server("db2", ServerState::Up, Some(false)),
            server("db3", ServerState::Down, Some(false)),
        ];
        assert_eq!(Topology::elect(&s), Ok(Some(1)));
    }

    #[test]
    fn two_writable_servers_are_never_guessed_between() {
        let s = vec![
            server("db1", ServerState::Up, Some(false)),
            server("db2", ServerState::Up, Some(false)),
        ];
        assert_eq!(
            Topology::elect(&s),
            Err(vec!["db1".to_string(), "db2".to_string()])
        );
        let none = vec![server("db1", ServerState::Unknown, None)];
        assert_eq!(Topology::elect(&none), Ok(None));
    }
}
