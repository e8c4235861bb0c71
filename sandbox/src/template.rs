//! The cached template datadir that every sandbox server is copied from.
//!
//! `mariadb-install-db` plus the sandbox users takes about a second; copying a datadir
//! takes a fraction of that. The template is built once per mariadbd version (and per
//! [`TEMPLATE_FORMAT`]) in the cache directory, under a temporary name that is renamed into
//! place, while holding an exclusive lock on a lock file so that parallel test processes
//! build it once. The users are created with `mariadbd --bootstrap --skip-log-bin`, so the
//! template carries no binlog and no GTID history.
use std::ffi::OsStr;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::{Result, SandboxError};

/// Bump when the template's contents (users, grants, databases) change: old caches are
/// then ignored.
pub const TEMPLATE_FORMAT: u32 = 1;

/// SQL run once in bootstrap mode on the template: one statement per line (the bootstrap
/// reader splits on `;` at the end of a line).
const BOOTSTRAP_SQL: &str = "\
FLUSH PRIVILEGES;
CREATE DATABASE IF NOT EXISTS `koha` CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci;
CREATE USER IF NOT EXISTS 'root'@'localhost';
ALTER USER 'root'@'localhost' IDENTIFIED VIA mysql_native_password USING '';
GRANT ALL PRIVILEGES ON *.* TO 'root'@'localhost' WITH GRANT OPTION;
CREATE USER IF NOT EXISTS 'root'@'127.0.0.1';
ALTER USER 'root'@'127.0.0.1' IDENTIFIED VIA mysql_native_password USING '';
GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;
CREATE USER IF NOT EXISTS 'root'@'::1';
ALTER USER 'root'@'::1' IDENTIFIED VIA mysql_native_password USING '';
GRANT ALL PRIVILEGES ON *.* TO 'root'@'::1' WITH GRANT OPTION;
CREATE USER 'koha'@'%' IDENTIFIED VIA mysql_native_password USING PASSWORD('koha');
GRANT ALL PRIVILEGES ON `koha%`.* TO 'koha'@'%';
GRANT ALL PRIVILEGES ON `sbtest%`.* TO 'koha'@'%';
GRANT ALL PRIVILEGES ON `test%`.* TO 'koha'@'%';
GRANT PROCESS ON *.* TO 'koha'@'%';
CREATE USER 'kohaproxy_monitor'@'%' IDENTIFIED VIA mysql_native_password USING PASSWORD('monitor');
GRANT ALL PRIVILEGES ON *.* TO 'kohaproxy_monitor'@'%';
CREATE USER 'repl'@'%' IDENTIFIED VIA mysql_native_password USING PASSWORD('repl');
GRANT REPLICATION SLAVE ON *.* TO 'repl'@'%';
";

/// The MariaDB programs the sandbox runs.
#[derive(Clone, Debug)]
pub struct Binaries {
    /// The server, `mariadbd`.
    pub mariadbd: PathBuf,
    /// `mariadb-install-db`.
    pub install_db: PathBuf,
    /// The command-line client, `mariadb`.
    pub client: PathBuf,
}

impl Binaries {
    /// Finds the programs in PATH, then in /usr/sbin, /usr/local/sbin and /usr/bin.
    pub fn locate() -> Result<Binaries> {
        Ok(Binaries {
            mariadbd: find_program(&["mariadbd", "mysqld"])?,
            install_db: find_program(&["mariadb-install-db", "mysql_install_db"])?,
            client: find_program(&["mariadb", "mysql"])?,
        })
    }

    /// The server's version string, e.g. `10.11.19-MariaDB-0+deb12u1`.
    pub fn server_version(&self) -> Result<String> {
        let out = run_checked(Command::new(&self.mariadbd).arg("--version"))?;
        // "/usr/sbin/mariadbd  Ver 10.11.19-MariaDB-0+deb12u1 for debian-linux-gnu on x86_64 (Debian 12)"
        let mut words = out.split_whitespace();
        while let Some(w) = words.next() {
            if w == "Ver" {
                if let Some(v) = words.next() {
                    return Ok(v.to_string());
                }
            }
        }
        Err(SandboxError::CommandFailed {
            command: format!("{} --version", self.mariadbd.display()),
            status: "unrecognised output".into(),
            output: out,
        })
    }
}

/// The first of `names` found in PATH, /usr/sbin, /usr/local/sbin or /usr/bin.
pub(crate) fn find_program(names: &[&str]) -> Result<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    for extra in ["/usr/sbin", "/usr/local/sbin", "/usr/bin"] {
        dirs.push(PathBuf::from(extra));
    }
    for name in names {
        for dir in &dirs {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    Err(SandboxError::MissingProgram {
        program: names.first().copied().unwrap_or_default().to_string(),
    })
}

/// The cache directory: `$KOHAPROXY_SANDBOX_CACHE`, else `$XDG_CACHE_HOME/kohaproxy`,
/// else `~/.cache/kohaproxy`.
pub fn cache_dir() -> Result<PathBuf> {
    let non_empty = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(dir) = non_empty("KOHAPROXY_SANDBOX_CACHE") {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = non_empty("XDG_CACHE_HOME") {
        return Ok(PathBuf::from(dir).join("kohaproxy"));
    }
    if let Some(home) = non_empty("HOME") {
        return Ok(PathBuf::from(home).join(".cache").join("kohaproxy"));
    }
    Err(SandboxError::InvalidOptions(
        "no cache directory: set KOHAPROXY_SANDBOX_CACHE, XDG_CACHE_HOME or HOME".into(),
    ))
}

/// Returns the template datadir for the installed mariadbd, building it if needed.
pub fn ensure_template(bins: &Binaries) -> Result<PathBuf> {
    let version = bins.server_version()?;
    let cache = cache_dir()?;
    fs::create_dir_all(&cache)
        .map_err(|e| SandboxError::io(format!("cannot create {}", cache.display()), e))?;
    let key: String = format!("template-v{TEMPLATE_FORMAT}-{version}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let final_dir = cache.join(&key);
    let datadir = final_dir.join("data");
    if datadir.is_dir() {
        return Ok(datadir);
    }

    let lock_path = cache.join(format!("{key}.lock"));
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| SandboxError::io(format!("cannot open {}", lock_path.display()), e))?;
    lock.lock()
        .map_err(|e| SandboxError::io(format!("cannot lock {}", lock_path.display()), e))?;
    if datadir.is_dir() {
        return Ok(datadir); // another process built it while we waited
    }
    remove_stale_builds(&cache, &key)?;
    let tmp = cache.join(format!("{key}.tmp-{}", std::process::id()));
    tracing::info!(template = %final_dir.display(), "building the sandbox template datadir");
    build(bins, &tmp)?;
    fs::rename(&tmp, &final_dir).map_err(|e| {
        SandboxError::io(
            format!("cannot rename {} to {}", tmp.display(), final_dir.display()),
            e,
        )
    })?;
    drop(lock);
    Ok(datadir)
}

/// Removes half-built templates left by processes that died while holding the lock.
/// Called with the lock held, so nobody else is building.
fn remove_stale_builds(cache: &Path, key: &str) -> Result<()> {
    let prefix = format!("{key}.tmp-");
    let entries = fs::read_dir(cache)
        .map_err(|e| SandboxError::io(format!("cannot list {}", cache.display()), e))?;
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let path = entry.path();
            fs::remove_dir_all(&path)
                .map_err(|e| SandboxError::io(format!("cannot remove {}", path.display()), e))?;
        }
    }
    Ok(())
}

/// Builds a template under `dir`: `dir/data` is the datadir, logs go beside it.
fn build(bins: &Binaries, dir: &Path) -> Result<()> {
    let datadir = dir.join("data");
    fs::create_dir_all(dir)
        .map_err(|e| SandboxError::io(format!("cannot create {}", dir.display()), e))?;
    let install_log = dir.join("install-db.log");
    // `--user=root` only as root: a non-root mariadb-install-db cannot chown to root (and
    // the files are then the current user's anyway).
    let user: &[&str] = if rustix::process::geteuid().is_root() {
        &["--user=root"]
    } else {
        &[]
    };
    let mut install = Command::new(&bins.install_db);
    install
        .arg("--no-defaults")
        .arg(prefixed("--datadir=", &datadir))
        .args(user)
        .args([
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            "--skip-name-resolve",
        ]);
    run_logged(&mut install, &install_log, None)?;

    let boot_log = dir.join("bootstrap.log");
    let mut boot = Command::new(&bins.mariadbd);
    boot.arg("--no-defaults")
        .arg("--bootstrap")
        .args(user)
        .arg(prefixed("--datadir=", &datadir))
        .arg(prefixed("--log-error=", &boot_log))
        .args(["--skip-log-bin", "--skip-networking"]);
    run_logged(&mut boot, &boot_log, Some(BOOTSTRAP_SQL))
}

/// `--opt=` followed by a path, as one OsString (paths need not be UTF-8).
pub(crate) fn prefixed(opt: &str, path: &Path) -> std::ffi::OsString {
    let mut s = std::ffi::OsString::from(opt);
    s.push(path.as_os_str());
    s
}

/// Runs a command to completion with stdout+stderr in `log` and optional stdin text.
fn run_logged(cmd: &mut Command, log: &Path, stdin: Option<&str>) -> Result<()> {
    use std::io::Write;
    let command = describe(cmd);
    let out = File::create(log)
        .map_err(|e| SandboxError::io(format!("cannot create {}", log.display()), e))?;
    let err = out
        .try_clone()
        .map_err(|e| SandboxError::io(format!("cannot reopen {}", log.display()), e))?;
    cmd.stdout(out).stderr(err).stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut child = cmd.spawn().map_err(|error| SandboxError::Spawn {
        command: command.clone(),
        error,
    })?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // A write error means the child exited early; its status and log say why.
        let _ = pipe.write_all(text.as_bytes());
    }
    let status = child
        .wait()
        .map_err(|e| SandboxError::io(format!("cannot wait for `{command}`"), e))?;
    if status.success() {
        Ok(())
    } else {
        Err(SandboxError::CommandFailed {
            command,
            status: status.to_string(),
            output: log_tail(log, 20),
        })
    }
}

/// Runs a short command and returns its stdout, or an error with its stderr.
pub(crate) fn run_checked(cmd: &mut Command) -> Result<String> {
    let command = describe(cmd);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|error| SandboxError::Spawn {
            command: command.clone(),
            error,
        })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(SandboxError::CommandFailed {
            command,
            status: out.status.to_string(),
            output: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// A command line for messages.
pub(crate) fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(OsStr::to_string_lossy)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The last `lines` lines of a log file ("(no log)" if it cannot be read).
pub(crate) fn log_tail(path: &Path, lines: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// Copies a directory tree (regular files and directories only).
pub(crate) fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir_all(to)
        .map_err(|e| SandboxError::io(format!("cannot create {}", to.display()), e))?;
    let entries = fs::read_dir(from)
        .map_err(|e| SandboxError::io(format!("cannot list {}", from.display()), e))?;
    for entry in entries {
        let entry =
            entry.map_err(|e| SandboxError::io(format!("cannot list {}", from.display()), e))?;
        let src = entry.path();
        let dst = to.join(entry.file_name());
        let kind = entry
            .file_type()
            .map_err(|e| SandboxError::io(format!("cannot stat {}", src.display()), e))?;
        if kind.is_dir() {
            copy_dir(&src, &dst)?;
        } else if kind.is_file() {
            fs::copy(&src, &dst).map_err(|e| {
                SandboxError::io(
                    format!("cannot copy {} to {}", src.display(), dst.display()),
                    e,
                )
            })?;
        }
    }
    Ok(())
}
