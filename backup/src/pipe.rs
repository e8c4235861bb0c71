//! Moving bytes between the client programs and the backup files: a dump's output is
//! compressed (zstd) and hashed (sha256) on its way to disk; a restore's file is checked
//! and decompressed on its way into `mariadb`. Blocking code, run on its own thread.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::error::BackupError;

/// Chunk size of the copies.
const CHUNK: usize = 256 * 1024;

/// What a written file ended up as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Written {
    /// Bytes on disk.
    pub bytes: u64,
    /// Bytes before compression.
    pub raw_bytes: u64,
    /// sha256 of the bytes on disk.
    pub sha256: String,
}

/// How much of a backup file may be written before the disk is asked to take it.
///
/// Left to itself the kernel keeps a dump's output in the page cache (up to 10 % of the
/// memory) and writes it in one burst at the file's `fsync`; a master's commit on the same
/// disk then waits behind tens of megabytes. Handing each megabyte over as it is written
/// keeps the disk's queue short, and dropping the written pages keeps the backup from
/// pushing the servers' pages out of the cache.
const WRITE_BEHIND: u64 = 1 << 20;

/// A backup file on disk: hashes and counts what is written, and writes behind (see
/// [`WRITE_BEHIND`]).
struct DiskFile {
    file: File,
    hash: Sha256,
    bytes: u64,
    /// Bytes already handed to the disk.
    handed: u64,
}

impl DiskFile {
    /// Asks the kernel to start writing the newest bytes out and to drop the clean pages
    /// of the MiB before them (`POSIX_FADV_DONTNEED` starts the write-back of the dirty
    /// pages in its range without waiting for it, and drops the clean ones).
    fn hand_over(&mut self) {
        let start = self.handed.saturating_sub(WRITE_BEHIND);
        let len = std::num::NonZeroU64::new(self.bytes - start);
        // Advice only: a file system that ignores it writes at `sync_all` as before.
        let _ = rustix::fs::fadvise(&self.file, start, len, rustix::fs::Advice::DontNeed);
        self.handed = self.bytes;
    }
}

impl Write for DiskFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        if self.bytes - self.handed >= WRITE_BEHIND {
            self.hand_over();
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A file being written compressed: write SQL into it, then [`Compressed::finish`].
pub(crate) struct Compressed {
    /// zstd buffers its output (a block, about 128 KiB) before it writes to the file.
    encoder: zstd::Encoder<'static, DiskFile>,
    raw: u64,
}

impl Compressed {
    /// Creates `path` (which must not exist) compressed at `level`.
    pub fn create(path: &Path, level: i32) -> std::io::Result<Compressed> {
        let file = File::options().write(true).create_new(true).open(path)?;
        let out = DiskFile {
            file,
            hash: Sha256::new(),
            bytes: 0,
            handed: 0,
        };
        Ok(Compressed {
            encoder: zstd::Encoder::new(out, level)?,
            raw: 0,
        })
    }

    /// Appends `buf`.
    pub fn write(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.raw += buf.len() as u64;
        self.encoder.write_all(buf)
    }

    /// Ends the frame, syncs the file to disk and says what was written.
    pub fn finish(self) -> std::io::Result<Written> {
        let mut out = self.encoder.finish()?;
        out.file.sync_all()?;
        out.hand_over();
        Ok(Written {
            bytes: out.bytes,
            raw_bytes: self.raw,
            sha256: hex::encode(out.hash.finalize()),
        })
    }
}

/// Reads a child's error output on a thread; [`StderrTail::message`] gives its end.
pub(crate) struct StderrTail(std::thread::JoinHandle<String>);

impl StderrTail {
    /// Starts reading `stderr`.
    pub fn start(stderr: Option<ChildStderr>) -> StderrTail {
        StderrTail(std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut s) = stderr {
                let _ = s.read_to_string(&mut text);
            }
            text
        }))
    }

    /// The last lines the child wrote (at most 600 characters).
    pub fn message(self) -> String {
        let text = self.0.join().unwrap_or_default();
        let text = text.trim();
        let start = text
            .char_indices()
            .rev()
            .nth(600)
            .map(|(i, _)| i)
            .unwrap_or(0);
        text[start..].replace('\n', " | ")
    }
}

/// A client program running with one end piped to us and its error output collected.
struct Running {
    child: Child,
    stderr: StderrTail,
    program: String,
    what: String,
}

impl Running {
    /// Starts `cmd` with its standard input (`feed`) or output piped; `what` names the
    /// file or table in errors.
    fn start(mut cmd: Command, what: &str, feed: bool) -> Result<Running, BackupError> {
        let program = cmd.get_program().to_string_lossy().into_owned();
        let (stdin, stdout) = if feed {
            (Stdio::piped(), Stdio::null())
        } else {
            (Stdio::null(), Stdio::piped())
        };
        let mut child = cmd
            .stdin(stdin)
            .stdout(stdout)
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| BackupError::Tool {
                program: program.clone(),
                what: what.to_owned(),
                message: format!("could not start: {e}"),
            })?;
        Ok(Running {
            stderr: StderrTail::start(child.stderr.take()),
            child,
            program,
            what: what.to_owned(),
        })
    }

    /// Watches `abort` on a thread and kills the program when it is raised.
    fn kill_on(&self, abort: &Arc<AtomicBool>) -> AbortWatch {
        let (done, ended) = std::sync::mpsc::channel::<()>();
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32);
        let abort = abort.clone();
        let thread = std::thread::spawn(move || loop {
            if abort.load(Ordering::Relaxed) {
                if let Some(pid) = pid {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                }
                return;
            }
            // Woken at once when the watch ends (its sender dropped), so a job never
            // waits out a polling period after its program exits.
            match ended.recv_timeout(std::time::Duration::from_millis(50)) {
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                _ => return,
            }
        });
        AbortWatch {
            done: Some(done),
            thread: Some(thread),
        }
    }

    /// Ends the program: killed if our side failed (`outcome`), else waited for; an exit
    /// status other than success is an error with the end of its error output.
    fn finish<T>(mut self, outcome: Result<T, BackupError>) -> Result<T, BackupError> {
        if outcome.is_err() {
            let _ = self.child.kill();
        }
        let status = self.child.wait();
        let message = self.stderr.message();
        let value = outcome?;
        let tool = |message: String| BackupError::Tool {
            program: self.program.clone(),
            what: self.what.clone(),
            message,
        };
        let status = status.map_err(|e| tool(e.to_string()))?;
        if !status.success() {
            return Err(tool(format!("{status}: {message}")));
        }
        Ok(value)
    }
}

/// Runs `cmd` and writes its standard output, compressed, to `path`. Stops (and kills
/// the child) when `abort` is raised or writing fails (a full disk).
pub(crate) fn dump_to_file(
    cmd: Command,
    path: &Path,
    level: i32,
    what: &str,
    abort: &Arc<AtomicBool>,
) -> Result<Written, BackupError> {
    let mut running = Running::start(cmd, what, false)?;
    let watch = running.kill_on(abort);
    let copied = copy_out(&mut running.child, path, level, abort);
    watch.end();
    running.finish(copied)
}

/// Kills a child when `abort` is raised, even while it writes nothing (see
/// [`Running::kill_on`]).
struct AbortWatch {
    done: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl AbortWatch {
    /// Stops watching (before the child is reaped, so its pid cannot be reused).
    fn end(mut self) {
        drop(self.done.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn copy_out(
    child: &mut Child,
    path: &Path,
    level: i32,
    abort: &Arc<AtomicBool>,
) -> Result<Written, BackupError> {
    let Some(mut out) = child.stdout.take() else {
        return Err(BackupError::Stopped("no output pipe".into()));
    };
    let io = |e| BackupError::io(path, e);
    let mut file = Compressed::create(path, level).map_err(io)?;
    let mut buf = vec![0u8; CHUNK];
    loop {
        if abort.load(Ordering::Relaxed) {
            return Err(BackupError::Stopped(
                "another part of the backup failed".into(),
            ));
        }
        let n = match out.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(BackupError::io(path, e)),
        };
        file.write(&buf[..n]).map_err(io)?;
    }
    file.finish().map_err(io)
}

/// The sha256 and size of a file on disk.
pub(crate) fn hash_file(path: &Path) -> std::io::Result<(u64, String)> {
    let mut f = File::open(path)?;
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut bytes = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        bytes += n as u64;
    }
    Ok((bytes, hex::encode(hash.finalize())))
}

/// Decompresses `path` into the standard input of `cmd` (the `mariadb` client) and waits
/// for it; `what` names the file in errors.
pub(crate) fn load_file(
    cmd: Command,
    path: &Path,
    what: &str,
    abort: &Arc<AtomicBool>,
) -> Result<(), BackupError> {
    let file = File::open(path).map_err(|e| BackupError::io(path, e))?;
    let mut decoder = zstd::Decoder::new(file).map_err(|e| BackupError::io(path, e))?;
    let mut running = Running::start(cmd, what, true)?;
    let mut fed: Result<(), BackupError> = Ok(());
    if let Some(mut stdin) = running.child.stdin.take() {
        let mut buf = vec![0u8; CHUNK];
        loop {
            if abort.load(Ordering::Relaxed) {
                fed = Err(BackupError::Stopped(
                    "another part of the restore failed".into(),
                ));
                break;
            }
            let n = match decoder.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    fed = Err(BackupError::io(path, e));
                    break;
                }
            };
            // A write error means the client exited; its status and message say why.
            if stdin.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    }
    running.finish(fed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressed_files_hash_what_is_on_disk_and_decompress_to_the_input() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.sql.zst");
        let mut f = Compressed::create(&path, 3).unwrap();
        let text = "INSERT INTO t VALUES (1),(2),(3);\n".repeat(10_000);
        f.write(text.as_bytes()).unwrap();
        let w = f.finish().unwrap();
        assert_eq!(w.raw_bytes, text.len() as u64);
        assert_eq!(hash_file(&path).unwrap(), (w.bytes, w.sha256.clone()));
        assert!(w.bytes < w.raw_bytes / 10);
        let back = zstd::decode_all(File::open(&path).unwrap()).unwrap();
        assert_eq!(back, text.as_bytes());
        assert!(Compressed::create(&path, 3).is_err(), "never overwrites");
    }

    #[test]
    fn a_failing_program_reports_its_status_and_message() {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo partial; echo 'Got error: 1045' >&2; exit 2"]);
        let abort = Arc::new(AtomicBool::new(false));
        let err = dump_to_file(cmd, &dir.path().join("x.zst"), 3, "db.t", &abort)
            .unwrap_err()
            .to_string();
        assert!(err.contains("sh (db.t) failed"), "{err}");
        assert!(err.contains("Got error: 1045"), "{err}");
        let err = dump_to_file(
            Command::new("/nonexistent/mariadb-dump"),
            &dir.path().join("y.zst"),
            3,
            "db.t",
            &abort,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("could not start"), "{err}");
    }
}
