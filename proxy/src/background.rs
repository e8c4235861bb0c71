//! Work beside the sessions that must end before the process exits: a backup resuming
//! the replica it paused. Shutdown waits for it (bounded) after the sessions.

use std::time::Duration;

use tokio_util::task::task_tracker::{TaskTracker, TaskTrackerToken};

/// Counts background work in progress; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Background(TaskTracker);

/// Keeps the process from exiting until dropped (see [`Background::enter`]).
#[derive(Debug)]
pub struct Running {
    _token: TaskTrackerToken,
}

impl Background {
    /// Counts one piece of work until the returned guard drops.
    pub fn enter(&self) -> Running {
        Running {
            _token: self.0.token(),
        }
    }

    /// Waits until no work is counted, at most `bound`; false if some still runs. Called
    /// at shutdown (work counted after it is still waited for by a later call).
    pub async fn wait(&self, bound: Duration) -> bool {
        self.0.close();
        tokio::time::timeout(bound, self.0.wait()).await.is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waits_for_the_work_and_no_longer() {
        let b = Background::default();
        assert!(b.wait(Duration::from_millis(1)).await);
        let running = b.enter();
        assert!(!b.wait(Duration::from_millis(20)).await);
        let waiter = tokio::spawn({
            let b = b.clone();
            async move { b.wait(Duration::from_secs(5)).await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        drop(running);
        assert!(waiter.await.unwrap());
    }
}
