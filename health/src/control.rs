//! Commands people give the monitor through the admin console: planned switchover, forced
//! failover, maintenance. The monitor runs them between probe rounds, one at a time.

use tokio::sync::{mpsc, oneshot};

/// An operation on the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Planned change of master to `target` (or the best replica): writes wait briefly,
    /// nothing is lost, no client sees an error.
    Switchover {
        /// The server to promote; `None` picks the most up-to-date eligible replica.
        target: Option<String>,
    },
    /// Promote a replica now that the master is down, without waiting for the replicas to
    /// confirm it (manual mode). Never promotes a replica lacking an acknowledged write.
    Failover,
    /// Take a server out of (or back into) traffic.
    Maintenance {
        /// Server name.
        server: String,
        /// True: no new traffic; false: back in service.
        on: bool,
    },
}

/// A command with the channel its answer goes back on.
pub(crate) type Request = (Command, oneshot::Sender<Result<String, String>>);

/// Sends commands to the monitor; cheap to clone.
#[derive(Debug, Clone)]
pub struct Control(pub(crate) mpsc::Sender<Request>);

impl Control {
    /// Runs `command` and returns what was done, or why it was refused or failed.
    pub async fn run(&self, command: Command) -> Result<String, String> {
        let (tx, rx) = oneshot::channel();
        self.0
            .send((command, tx))
            .await
            .map_err(|_| "the monitor is not running".to_string())?;
        rx.await
            .map_err(|_| "the monitor stopped before answering".to_string())?
    }

    /// A control whose commands are all refused (for tools and tests without a monitor).
    pub fn detached() -> Control {
        Control(mpsc::channel(1).0)
    }
}
