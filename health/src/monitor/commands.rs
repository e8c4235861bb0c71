//! The admin commands the monitor runs between probe rounds (SWITCHOVER, FAILOVER and
//! MAINTENANCE on or off), one at a time.

use tracing::info;

use super::promote::Why;
use super::Monitor;
use crate::control::Command;
use crate::topology::{ServerState, ServerView, Topology};

impl Monitor {
    /// Runs an admin command.
    pub(super) async fn command(&mut self, command: Command) -> Result<String, String> {
        if !self.acts && !matches!(command, Command::Maintenance { .. }) {
            return Err("this monitor only observes".into());
        }
        if self.galera.is_some() {
            return self.galera_command(command).await;
        }
        match command {
            Command::Switchover { target } => self.switchover(target).await,
            Command::Failover => {
                self.probe().await;
                let t = Topology::build_under(
                    self.servers.iter().map(super::Slot::view).collect(),
                    self.master,
                );
                let Some(h) = self.master else {
                    return Err("no master was ever seen: nothing to fail over from".into());
                };
                if t.servers[h].state == ServerState::Up {
                    let views: Vec<ServerView> =
                        self.servers.iter().map(super::Slot::view).collect();
                    if views[h].read_only == Some(true) && self.lost_by_master(&views, h).is_some()
                    {
                        return self.failover(h, Why::BehindReplicas).await;
                    }
                    return Err(format!(
                        "the master {} is up: use SWITCHOVER for a planned change",
                        self.servers[h].name
                    ));
                }
                self.master_down(&t, h, Why::Forced).await
            }
            Command::Maintenance { server, on } => {
                let i = self.index_of(&server)?;
                if on && self.master == Some(i) {
                    return Err(format!(
                        "{server} is the master: SWITCHOVER to another server first"
                    ));
                }
                Ok(self.set_maintenance(i, on))
            }
        }
    }

    /// The config index of the server called `name`.
    pub(super) fn index_of(&self, name: &str) -> Result<usize, String> {
        self.servers
            .iter()
            .position(|s| s.name == name)
            .ok_or_else(|| format!("no server is called {name}"))
    }

    /// Puts server `i` in maintenance (`on`) or back online.
    pub(super) fn set_maintenance(&mut self, i: usize, on: bool) -> String {
        let server = self.servers[i].name.clone();
        self.servers[i].maintenance = on;
        let state = if on {
            "maintenance: no new traffic"
        } else {
            "online"
        };
        info!(server = %server, "{state}");
        format!("{server} is in {state}")
    }
}
