//! Running a backup's own work at the priority `backup.priority` asks for: each dump job
//! runs on a thread of its own that is lowered first, and the `mariadb-dump` it starts
//! inherits the lowering (Linux keeps the scheduling policy and nice value across `fork`).

use std::sync::atomic::{AtomicBool, Ordering};

use kohaproxy_config::BackupPriority;
use tracing::{debug, warn};

use crate::error::BackupError;

/// Runs `work` on a new thread lowered to `priority` and waits (asynchronously) for it.
pub(crate) async fn run<T: Send + 'static>(
    priority: BackupPriority,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, BackupError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("kohaproxy-dump".into())
        .spawn(move || {
            lower_this_thread(priority);
            let _ = tx.send(work());
        })
        .map_err(|e| BackupError::Stopped(format!("could not start a dump thread: {e}")))?;
    rx.await
        .map_err(|_| BackupError::Stopped("a dump thread panicked".into()))
}

/// Lowers the calling thread to `priority`. A failure (a system that refuses it) is
/// logged once; the work then runs at the proxy's priority.
fn lower_this_thread(priority: BackupPriority) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    let result = match priority {
        BackupPriority::Normal => return,
        BackupPriority::Idle => to_idle(),
        BackupPriority::Low => {
            rustix::process::setpriority_process(None, 19).map_err(|e| e.to_string())
        }
    };
    match result {
        Ok(()) => debug!(?priority, "dump thread lowered"),
        Err(e) if !WARNED.swap(true, Ordering::Relaxed) => warn!(
            ?priority,
            error = %e,
            "could not lower the backup's priority; it runs at the proxy's"
        ),
        Err(_) => {}
    }
}

/// `SCHED_IDLE` for the calling thread. The crate also sets the nice value to 0 after the
/// policy, which a proxy started under `nice` may not do; the policy is what counts.
fn to_idle() -> Result<(), String> {
    use thread_priority::unix::{
        set_thread_priority_and_policy, thread_native_id, thread_schedule_policy,
        NormalThreadSchedulePolicy, ThreadSchedulePolicy,
    };
    let idle = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);
    match set_thread_priority_and_policy(
        thread_native_id(),
        thread_priority::ThreadPriority::Min,
        idle,
    ) {
        Ok(()) => Ok(()),
        Err(_) if thread_schedule_policy().ok() == Some(idle) => Ok(()),
        Err(e) => Err(format!("{e:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The policy a process reports in `/proc/PID/sched` (`policy : N`; 5 is SCHED_IDLE).
    fn policy_of_child(priority: BackupPriority) -> (String, String) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(run(priority, || {
            let out = std::process::Command::new("sh")
                .args([
                    "-c",
                    "grep -E '^policy' /proc/self/sched; cut -d' ' -f19 /proc/self/stat",
                ])
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let mut lines = text.lines();
            let policy = lines
                .next()
                .unwrap_or("")
                .split(':')
                .nth(1)
                .unwrap_or("")
                .trim()
                .to_owned();
            let nice = lines.next().unwrap_or("").trim().to_owned();
            (policy, nice)
        }))
        .unwrap()
    }

    #[test]
    fn programs_started_by_a_lowered_job_inherit_its_priority() {
        let (normal_policy, _) = policy_of_child(BackupPriority::Normal);
        assert_eq!(policy_of_child(BackupPriority::Idle).0, "5");
        assert_eq!(
            policy_of_child(BackupPriority::Low),
            (normal_policy, "19".into())
        );
    }
}
