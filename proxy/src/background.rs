//! Work beside the sessions that must end before the process exits: a backup resuming
//! the replica it paused. Shutdown waits for it (bounded) after the sessions.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

/// Counts background work in progress; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Background(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    running: AtomicUsize,
    done: Notify,
}

/// Keeps the process from exiting until dropped (see [`Background::enter`]).
#[derive(Debug)]
pub struct Running(Arc<Inner>);

impl Drop for Running {
    fn drop(&mut self) {
        if self.0.running.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.done.notify_waiters();
        }
    }
}

impl Background {
    /// Counts one piece of work until the returned guard drops.
    pub fn enter(&self) -> Running {
        self.0.running.fetch_add(1, Ordering::SeqCst);
        Running(self.0.clone())
    }

    /// Waits until no work is counted, at most `bound`; false if some still runs.
    pub async fn wait(&self, bound: Duration) -> bool {
        let until = tokio::time::Instant::now() + bound;
        loop {
            let done = self.0.done.notified();
            if self.0.running.load(Ordering::SeqCst) == 0 {
                return true;
            }
            if tokio::time::timeout_at(until, done).await.is_err() {
                return self.0.running.load(Ordering::SeqCst) == 0;
            }
        }
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
