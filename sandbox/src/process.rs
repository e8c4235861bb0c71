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

/// Processes that an SST for `datadir` started and that may outlive it: the joiner's
/// `rsync --daemon` (its `--config` is in the datadir) and the `wsrep_sst_*` scripts
/// (given `--datadir`, run through `sh -c` and bash). Matched by program name and by the
/// datadir on their command line.
pub(crate) fn sst_helpers(datadir: &Path) -> Vec<u32> {
    let needle = datadir.as_os_str().as_bytes();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                return false;
            };
            let args: Vec<&[u8]> = cmdline
                .split(|&b| b == 0)
                .filter(|a| !a.is_empty())
                .collect();
            is_sst_helper(&args, needle)
        })
        .collect()
}

/// Whether a command line (its arguments) is an SST helper for the datadir `dir`.
fn is_sst_helper(args: &[&[u8]], dir: &[u8]) -> bool {
    // The program's name, or the first word of a `sh -c "..."` script.
    let base = |a: &[u8]| {
        let word = a.split(|&b| b == b' ').next().unwrap_or_default();
        Path::new(OsStr::from_bytes(word))
            .file_name()
            .map(|n| n.as_bytes().to_vec())
            .unwrap_or_default()
    };
    // rsync --daemon ...; sh -c "wsrep_sst_rsync ..."; bash /usr/bin/wsrep_sst_rsync ...
    let is_helper = args.first().is_some_and(|p| base(p) == b"rsync")
        || args
            .iter()
            .take(3)
            .any(|a| base(a).starts_with(b"wsrep_sst_"));
    is_helper && args.iter().any(|a| mentions_dir(a, dir))
}

/// Whether `arg` holds the path `dir` as a whole path or a prefix of one (followed by
/// `/`, the end, or a quote or space as in a generated command string).
fn mentions_dir(arg: &[u8], dir: &[u8]) -> bool {
    if dir.is_empty() {
        return false;
    }
    (0..arg.len().saturating_sub(dir.len()) + 1).any(|i| {
        arg[i..].starts_with(dir)
            && matches!(
                arg.get(i + dir.len()),
                None | Some(b'/' | b'\'' | b'"' | b' ')
            )
    })
}

/// Sends `signal` to `pid`.
pub(crate) fn send(pid: u32, signal: Signal) -> std::io::Result<()> {
    let pid = to_pid(pid).ok_or_else(|| std::io::Error::other("invalid pid"))?;
    rustix::process::kill_process(pid, signal.raw()).map_err(std::io::Error::from)
}

fn to_pid(pid: u32) -> Option<Pid> {
    i32::try_from(pid).ok().and_then(Pid::from_raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_datadir_on_a_command_line() {
        let dir = b"/tmp/sb/db2/data";
        assert!(mentions_dir(b"/tmp/sb/db2/data", dir));
        assert!(mentions_dir(
            b"--config=/tmp/sb/db2/data/rsync_sst.conf",
            dir
        ));
        assert!(mentions_dir(b"--datadir '/tmp/sb/db2/data/'", dir));
        assert!(!mentions_dir(b"/tmp/sb/db2/data2/rsync_sst.conf", dir));
        assert!(!mentions_dir(b"/tmp/sb/db2", dir));
        assert!(!mentions_dir(b"anything", b""));
    }

    #[test]
    fn sst_helper_command_lines() {
        let dir = b"/tmp/sb/db2/data";
        let helper = |args: &[&str]| {
            let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
            is_sst_helper(&args, dir)
        };
        // Seen during a joiner's SST (ps), one entry per argument.
        assert!(helper(&[
            "rsync",
            "--daemon",
            "--no-detach",
            "--port",
            "33673",
            "--config",
            "/tmp/sb/db2/data/rsync_sst.conf",
        ]));
        assert!(helper(&[
            "sh",
            "-c",
            "wsrep_sst_rsync --role 'joiner' --address '127.0.0.1:33673' --datadir '/tmp/sb/db2/data/' --parent 20356",
        ]));
        assert!(helper(&[
            "bash",
            "/usr//bin/wsrep_sst_rsync",
            "--role",
            "joiner",
            "--datadir",
            "/tmp/sb/db2/data/",
        ]));
        // The donor's script and the server itself are not db2's helpers.
        assert!(!helper(&[
            "bash",
            "/usr//bin/wsrep_sst_rsync",
            "--role",
            "donor",
            "--datadir",
            "/tmp/sb/db1/data/",
        ]));
        assert!(!helper(&[
            "/usr/sbin/mariadbd",
            "--datadir=/tmp/sb/db2/data",
        ]));
    }
}
