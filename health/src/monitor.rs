//! The monitor task: probes each server over its own connection with the monitor user.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use kohaproxy_config::Config;
use mysql_async::prelude::Queryable;
use tracing::{info, warn};

use crate::topology::{ServerState, ServerView, Topology, TopologyHandle};

/// Probes the servers and publishes snapshots.
pub struct Monitor {
    servers: Vec<Probe>,
    interval: Duration,
    timeout: Duration,
    fail_count: u32,
    published: Arc<ArcSwap<Topology>>,
}

/// One server's probe state.
struct Probe {
    view: ServerView,
    opts: mysql_async::Opts,
    conn: Option<mysql_async::Conn>,
    failures: u32,
}

impl Monitor {
    /// Runs one round of probes (so the first snapshot is real), then spawns the probe
    /// loop on the current tokio runtime and returns the handle to read snapshots.
    pub async fn spawn(config: &Config) -> TopologyHandle {
        let servers = config
            .servers
            .iter()
            .map(|s| Probe {
                view: ServerView {
                    name: s.name.clone(),
                    address: s.address.clone(),
                    state: ServerState::Unknown,
                    read_only: None,
                    last_error: None,
                },
                opts: probe_opts(&s.address, &config.monitor.user, &config.monitor.password),
                conn: None,
                failures: 0,
            })
            .collect::<Vec<_>>();
        let initial = Topology {
            servers: servers.iter().map(|p| p.view.clone()).collect(),
            master: None,
        };
        let mut monitor = Monitor {
            servers,
            interval: config.monitor.interval,
            timeout: config.monitor.timeout,
            // The very first round decides at once: there is no earlier state to keep.
            fail_count: config.monitor.fail_count,
            published: Arc::new(ArcSwap::from_pointee(initial)),
        };
        monitor.round(true).await;
        let handle = TopologyHandle(monitor.published.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(monitor.interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                monitor.round(false).await;
            }
        });
        handle
    }

    /// Probes every server concurrently, then publishes if anything changed.
    async fn round(&mut self, first: bool) {
        let timeout = self.timeout;
        let fail_count = if first { 1 } else { self.fail_count };
        let probes = self
            .servers
            .iter_mut()
            .map(|p| p.probe(timeout, fail_count));
        futures::future::join_all(probes).await;
        let servers: Vec<ServerView> = self.servers.iter().map(|p| p.view.clone()).collect();
        let master = match Topology::elect(&servers) {
            Ok(m) => m,
            Err(names) => {
                warn!(servers = ?names, "several servers are writable; no master until this is resolved");
                None
            }
        };
        let next = Topology { servers, master };
        let current = self.published.load();
        if **current != next {
            if current.master != next.master {
                match next.master() {
                    Some(m) => info!(master = %m.name, "master is {}", m.address),
                    None => warn!("no master available"),
                }
            }
            self.published.store(Arc::new(next));
        }
    }
}

impl Probe {
    async fn probe(&mut self, timeout: Duration, fail_count: u32) {
        match tokio::time::timeout(timeout, self.read_only()).await {
            Ok(Ok(read_only)) => {
                if self.view.state != ServerState::Up {
                    info!(server = %self.view.name, "server is up");
                }
                self.failures = 0;
                self.view.state = ServerState::Up;
                self.view.read_only = Some(read_only);
                self.view.last_error = None;
            }
            outcome => {
                let error = match outcome {
                    Ok(Err(e)) => e.to_string(),
                    _ => format!("probe timed out after {} ms", timeout.as_millis()),
                };
                // A connection that failed or hung is not reused.
                self.conn = None;
                self.failures += 1;
                if self.failures >= fail_count && self.view.state != ServerState::Down {
                    warn!(server = %self.view.name, %error, "server is down");
                    self.view.state = ServerState::Down;
                }
                self.view.last_error = Some(error);
            }
        }
    }

    async fn read_only(&mut self) -> Result<bool, mysql_async::Error> {
        if self.conn.is_none() {
            self.conn = Some(mysql_async::Conn::new(self.opts.clone()).await?);
        }
        let conn = self.conn.as_mut().ok_or(mysql_async::Error::Driver(
            mysql_async::DriverError::ConnectionClosed,
        ))?;
        let read_only: Option<bool> = conn.query_first("SELECT @@read_only").await?;
        Ok(read_only.unwrap_or(true))
    }
}

/// Connection options for probing `address` (host:port) as the monitor user.
fn probe_opts(address: &str, user: &str, password: &str) -> mysql_async::Opts {
    let (host, port) = address
        .rsplit_once(':')
        .and_then(|(h, p)| p.parse::<u16>().ok().map(|p| (h.to_string(), p)))
        .unwrap_or_else(|| (address.to_string(), 3306));
    mysql_async::OptsBuilder::default()
        .ip_or_hostname(host)
        .tcp_port(port)
        .user(Some(user))
        .pass(Some(password))
        .prefer_socket(false)
        .into()
}
