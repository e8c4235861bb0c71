//! Processes by pid: are they alive, are they ours, signals.
//!
//! A pid read from sandbox.json may have been reused by an unrelated process after the
//! server died, so before any signal we check /proc/PID/cmdline: it must be a mariadbd
//! started with this server's `--datadir=`. A killed server whose parent has not reaped it
//! yet is a zombie; it counts as gone.
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::process::{Pid, Signal as RawSignal};

/// A signal for [`crate::Sandbox::kill`]: fault injection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Signal {
    /// SIGKILL: the server dies at once (a crash).
    #[value(name = "KILL", alias = "kill", alias = "SIGKILL")]
    Kill,
    /// SIGTERM: a clean shutdown.
    #[value(name = "TERM", alias = "term", alias = "SIGTERM")]
    Term,
    /// SIGSTOP: the server hangs (connections open, nothing answers).
    #[value(name = "STOP", alias = "stop", alias = "SIGSTOP")]
    Stop,
    /// SIGCONT: a stopped server resumes.
    #[value(name = "CONT", alias = "cont", alias = "SIGCONT")]
    Cont,
}

impl Signal {
    fn raw(self) -> RawSignal {
        match self {
            Signal::Kill => RawSignal::KILL,
            Signal::Term => RawSignal::TERM,
            Signal::Stop => RawSignal::STOP,
            Signal::Cont => RawSignal::CONT,
        }
    }
}

impl std::fmt::Display for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Signal::Kill => "KILL",
            Signal::Term => "TERM",
            Signal::Stop => "STOP",
            Signal::Cont => "CONT",
        })
    }
}

/// What a pid is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ProcState {
    /// Alive and scheduled.
    Running,
    /// Alive but stopped by SIGSTOP.
    Stopped,
    /// Exited (or a zombie waiting to be reaped).
    Gone,
}

/// The state of `pid`, from /proc/PID/stat (or kill(pid, 0) without /proc).
pub(crate) fn proc_state(pid: u32) -> ProcState {
    match std::fs::read(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // "PID (comm) S ...": comm may hold spaces and parentheses, so look after the last ')'.
            let after = stat
                .iter()
                .rposition(|&b| b == b')')
                .map_or(&stat[..], |i| &stat[i + 1..]);
            match after.iter().find(|b| !b.is_ascii_whitespace()) {
                Some(b'Z' | b'X' | b'x') | None => ProcState::Gone,
                Some(b'T' | b't') => ProcState::Stopped,
                Some(_) => ProcState::Running,
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => ProcState::Gone,
        Err(_) => match to_pid(pid).map(rustix::process::test_kill_process) {
            Some(Ok(())) => ProcState::Running,
            _ => ProcState::Gone,
        },
    }
}

/// Ok if `pid` is a mariadbd started with `--datadir=<datadir>`, else why not.
pub(crate) fn check_ours(pid: u32, datadir: &Path) -> Result<(), String> {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
        .map_err(|e| format!("cannot read /proc/{pid}/cmdline: {e}"))?;
    let mut args = cmdline
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(OsStr::from_bytes);
    let program = args.next().ok_or("it has no command line (a zombie?)")?;
    let program_name = Path::new(program)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !(program_name.contains("mariadbd") || program_name.contains("mysqld")) {
        return Err(format!("it is {program_name:?}, not mariadbd"));
    }
    let mut want = b"--datadir=".to_vec();
    want.extend_from_slice(datadir.as_os_str().as_bytes());
    if args.any(|a| a.as_bytes() == want.as_slice()) {
        Ok(())
    } else {
        Err(format!(
            "it is a mariadbd for another datadir than {}",
            datadir.display()
        ))
    }
}

/// Sends `signal` to `pid`.
pub(crate) fn send(pid: u32, signal: Signal) -> std::io::Result<()> {
    let pid = to_pid(pid).ok_or_else(|| std::io::Error::other("invalid pid"))?;
    rustix::process::kill_process(pid, signal.raw()).map_err(std::io::Error::from)
}

fn to_pid(pid: u32) -> Option<Pid> {
    i32::try_from(pid).ok().and_then(Pid::from_raw)
}
