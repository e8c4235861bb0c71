//! Dumping the frozen source: every non-system database's schema (tables, views,
//! routines, events), each table's rows, each database's triggers, and the accounts and
//! grants of non-system users, as zstd files. `mariadb-dump` jobs run in parallel, the
//! biggest tables first; each table's row count and `CHECKSUM TABLE` are recorded too.

use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use kohaproxy_config::BackupPriority;
use mysql_async::prelude::Queryable;
use mysql_async::Conn;
use tempfile::NamedTempFile;

use crate::error::BackupError;
use crate::manifest::{FileEntry, FileKind, TableEntry};
use crate::pipe::{self, Compressed};
use crate::priority;
use crate::progress::Progress;
use crate::source::Endpoint;

/// Databases that are the server's own, never backed up as data.
pub(crate) const SYSTEM_DATABASES: [&str; 4] =
    ["mysql", "information_schema", "performance_schema", "sys"];

/// Accounts that belong to the server itself (a restore never replaces them).
const SYSTEM_USERS: [&str; 5] = ["root", "mariadb.sys", "mysql", "PUBLIC", ""];

/// What the dump is given.
pub(crate) struct DumpJob<'a> {
    /// The (paused) server.
    pub source: &'a Endpoint,
    /// The `mariadb-dump` program.
    pub program: &'a Path,
    /// zstd level.
    pub level: i32,
    /// The priority of the jobs' threads and programs.
    pub priority: BackupPriority,
    /// Jobs at once.
    pub parallel: usize,
    /// The backup's directory (being written).
    pub dir: &'a Path,
    /// The source is the master (its data moves): one consistent stream for all rows,
    /// no per-table counts.
    pub from_master: bool,
    /// Raised to stop every job (a failure elsewhere, or shutdown).
    pub abort: Arc<AtomicBool>,
    /// Whether to show a progress bar on a terminal.
    pub bar: bool,
}

/// What the dump produced.
#[derive(Debug, Default)]
pub(crate) struct Dumped {
    /// Every file, in restore order.
    pub files: Vec<FileEntry>,
    /// Every base table with its count and checksum (empty from a master).
    pub tables: Vec<TableEntry>,
    /// From a master: the position `mariadb-dump --master-data` recorded.
    pub master_position: Option<String>,
}

#[derive(Debug, Clone)]
enum Part {
    Schema { db: String },
    Data { db: String, table: String },
    AllData { dbs: Vec<String> },
    Triggers { db: String },
}

/// A file name for a database or table name: letters, digits, `_` and `-` as they are,
/// every other byte as `@xx` (so no name can climb out of the directory).
pub(crate) fn file_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(b as char);
        } else {
            out.push_str(&format!("@{b:02x}"));
        }
    }
    out
}

/// `name` quoted as an identifier.
pub(crate) fn ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// An option file with the password, readable only by us, for `--defaults-extra-file`
/// (a password on the command line would show in `ps`).
pub(crate) fn password_file(password: &str) -> Result<NamedTempFile, BackupError> {
    let mut f = tempfile::Builder::new()
        .prefix("kohaproxy-client-")
        .suffix(".cnf")
        .tempfile()
        .map_err(|e| BackupError::io(std::env::temp_dir(), e))?;
    let escaped = password.replace('\\', "\\\\").replace('"', "\\\"");
    writeln!(f, "[client]\npassword=\"{escaped}\"")
        .and_then(|_| f.flush())
        .map_err(|e| BackupError::io(f.path().to_path_buf(), e))?;
    Ok(f)
}

/// The connection options every client program gets (the option file first, as the
/// programs require).
pub(crate) fn client_args(cmd: &mut Command, options: &Path, to: &Endpoint) {
    cmd.arg(format!("--defaults-extra-file={}", options.display()))
        .arg("--protocol=TCP")
        .arg(format!("--host={}", to.host))
        .arg(format!("--port={}", to.port))
        .arg(format!("--user={}", to.user))
        .arg("--max-allowed-packet=1G")
        .arg("--default-character-set=utf8mb4");
}

impl Part {
    fn path(&self) -> String {
        match self {
            Part::Schema { db } => format!("{}/schema.sql.zst", file_name(db)),
            Part::Triggers { db } => format!("{}/triggers.sql.zst", file_name(db)),
            Part::Data { db, table } => {
                format!("{}/tables/{}.sql.zst", file_name(db), file_name(table))
            }
            Part::AllData { .. } => "data.sql.zst".to_owned(),
        }
    }

    fn args(&self, cmd: &mut Command) {
        cmd.args(["--skip-dump-date", "--hex-blob"]);
        match self {
            Part::Schema { db } => {
                cmd.args(["--no-data", "--skip-triggers", "--routines", "--events"])
                    .args(["--databases", db]);
            }
            Part::Triggers { db } => {
                cmd.args(["--no-data", "--no-create-info", "--no-create-db"])
                    .args(["--skip-routines", "--skip-events", "--triggers", db]);
            }
            Part::Data { db, table } => {
                cmd.args(["--no-create-info", "--no-create-db", "--skip-triggers"])
                    .args(["--single-transaction", "--quick", db, table]);
            }
            Part::AllData { dbs } => {
                cmd.args(["--no-create-info", "--no-create-db", "--skip-triggers"])
                    .args([
                        "--single-transaction",
                        "--quick",
                        "--gtid",
                        "--master-data=2",
                    ])
                    .arg("--databases")
                    .args(dbs);
            }
        }
    }

    fn entry(&self, written: pipe::Written) -> FileEntry {
        let (kind, database, table) = match self {
            Part::Schema { db } => (FileKind::Schema, Some(db.clone()), None),
            Part::Triggers { db } => (FileKind::Triggers, Some(db.clone()), None),
            Part::Data { db, table } => (FileKind::Data, Some(db.clone()), Some(table.clone())),
            Part::AllData { .. } => (FileKind::Data, None, None),
        };
        FileEntry {
            path: self.path(),
            kind,
            database,
            table,
            bytes: written.bytes,
            raw_bytes: written.raw_bytes,
            sha256: written.sha256,
        }
    }
}

/// Dumps everything; on failure the first error (and every job stopped).
pub(crate) async fn dump(job: DumpJob<'_>) -> Result<Dumped, BackupError> {
    let source = job.source;
    let mut conn = source.connect().await?;
    let (dbs, tables) = inventory(&mut conn, &source.name).await?;
    let mut parts: VecDeque<Part> = VecDeque::new();
    for db in &dbs {
        parts.push_back(Part::Schema { db: db.clone() });
    }
    if job.from_master {
        parts.push_back(Part::AllData { dbs: dbs.clone() });
    } else {
        // Biggest first, so the last job to finish is a small one.
        let mut by_size = tables.clone();
        by_size.sort_by_key(|t| std::cmp::Reverse(t.2));
        for (db, table, _) in by_size {
            parts.push_back(Part::Data { db, table });
        }
    }
    for db in &dbs {
        parts.push_back(Part::Triggers { db: db.clone() });
    }
    for db in &dbs {
        let d = job.dir.join(file_name(db)).join("tables");
        std::fs::create_dir_all(&d).map_err(|e| BackupError::io(&d, e))?;
    }
    let options = Arc::new(password_file(&source.password)?);
    let progress = Arc::new(Progress::new(
        format!("dump of {}", source.name),
        parts.len() as u64 + 1,
        job.bar,
    ));
    let queue = Arc::new(Mutex::new(parts));
    let out = Arc::new(Mutex::new(Dumped::default()));
    let first_error: Arc<Mutex<Option<BackupError>>> = Arc::new(Mutex::new(None));

    let mut workers = Vec::new();
    for _ in 0..job.parallel.max(1) {
        let w = Worker {
            queue: queue.clone(),
            out: out.clone(),
            first_error: first_error.clone(),
            abort: job.abort.clone(),
            options: options.clone(),
            progress: progress.clone(),
            source: source.clone(),
            program: job.program.to_path_buf(),
            dir: job.dir.to_path_buf(),
            level: job.level,
            priority: job.priority,
            count: !job.from_master,
        };
        workers.push(tokio::spawn(w.run()));
    }
    for w in workers {
        if let Err(e) = w.await {
            fail(
                &first_error,
                &job.abort,
                BackupError::Stopped(e.to_string()),
            );
        }
    }
    if let Some(e) = first_error.lock().ok().and_then(|mut e| e.take()) {
        progress.finish();
        return Err(e);
    }
    let users = users(&mut conn, &source.name, job.dir, job.level).await?;
    progress.step("users.sql.zst", users.raw_bytes);
    progress.finish();
    let _ = conn.disconnect().await;

    let mut dumped = std::mem::take(&mut *out.lock().map_err(|_| poisoned())?);
    dumped.files.push(users);
    let order = |f: &FileEntry| match f.kind {
        FileKind::Schema => 0,
        FileKind::Data => 1,
        FileKind::Triggers => 2,
        FileKind::Users => 3,
    };
    dumped
        .files
        .sort_by(|a, b| (order(a), &a.path).cmp(&(order(b), &b.path)));
    dumped
        .tables
        .sort_by(|a, b| (&a.database, &a.table).cmp(&(&b.database, &b.table)));
    if job.from_master {
        dumped.master_position = master_position(job.dir)?;
    }
    Ok(dumped)
}

fn poisoned() -> BackupError {
    BackupError::Stopped("a dump worker panicked".into())
}

fn fail(first: &Mutex<Option<BackupError>>, abort: &AtomicBool, e: BackupError) {
    abort.store(true, Ordering::Relaxed);
    if let Ok(mut first) = first.lock() {
        first.get_or_insert(e);
    }
}

/// One of the parallel dumpers: takes parts off the queue until it is empty or the
/// dump is aborted.
struct Worker {
    queue: Arc<Mutex<VecDeque<Part>>>,
    out: Arc<Mutex<Dumped>>,
    first_error: Arc<Mutex<Option<BackupError>>>,
    abort: Arc<AtomicBool>,
    options: Arc<NamedTempFile>,
    progress: Arc<Progress>,
    source: Endpoint,
    program: PathBuf,
    dir: PathBuf,
    level: i32,
    priority: BackupPriority,
    count: bool,
}

impl Worker {
    async fn run(self) {
        let mut conn: Option<Conn> = None;
        loop {
            if self.abort.load(Ordering::Relaxed) {
                return;
            }
            let next = self.queue.lock().ok().and_then(|mut q| q.pop_front());
            let Some(part) = next else { break };
            if let Err(e) = self.one(&part, &mut conn).await {
                fail(&self.first_error, &self.abort, e);
                return;
            }
        }
        if let Some(c) = conn {
            let _ = c.disconnect().await;
        }
    }

    async fn one(&self, part: &Part, conn: &mut Option<Conn>) -> Result<(), BackupError> {
        let mut cmd = Command::new(&self.program);
        client_args(&mut cmd, self.options.path(), &self.source);
        part.args(&mut cmd);
        let path = self.dir.join(part.path());
        let what = part.path();
        let (level, abort) = (self.level, self.abort.clone());
        let written = priority::run(self.priority, move || {
            pipe::dump_to_file(cmd, &path, level, &what, &abort)
        })
        .await??;
        self.progress.step(&part.path(), written.raw_bytes);
        let table = match part {
            Part::Data { db, table } if self.count => {
                if conn.is_none() {
                    *conn = Some(self.source.connect().await?);
                }
                match conn.as_mut() {
                    Some(c) => Some(table_stats(c, &self.source.name, db, table).await?),
                    None => None,
                }
            }
            _ => None,
        };
        let mut out = self.out.lock().map_err(|_| poisoned())?;
        out.files.push(part.entry(written));
        out.tables.extend(table);
        Ok(())
    }
}

/// The databases to back up and their base tables (database, table, bytes).
async fn inventory(
    conn: &mut Conn,
    server: &str,
) -> Result<(Vec<String>, Vec<(String, String, u64)>), BackupError> {
    let system = SYSTEM_DATABASES
        .iter()
        .map(|d| format!("'{d}'"))
        .collect::<Vec<_>>()
        .join(",");
    let sql = format!(
        "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA \
         WHERE SCHEMA_NAME NOT IN ({system}) ORDER BY SCHEMA_NAME"
    );
    let dbs: Vec<String> = conn
        .query(&sql)
        .await
        .map_err(|e| BackupError::sql(server, &sql, e))?;
    let sql = format!(
        "SELECT TABLE_SCHEMA, TABLE_NAME, CAST(IFNULL(DATA_LENGTH, 0) + IFNULL(INDEX_LENGTH, 0) \
         AS UNSIGNED) FROM information_schema.TABLES \
         WHERE TABLE_TYPE = 'BASE TABLE' AND TABLE_SCHEMA NOT IN ({system})"
    );
    let tables: Vec<(String, String, u64)> = conn
        .query(&sql)
        .await
        .map_err(|e| BackupError::sql(server, &sql, e))?;
    Ok((dbs, tables))
}

/// `COUNT(*)` and `CHECKSUM TABLE` of one table.
pub(crate) async fn table_stats(
    conn: &mut Conn,
    server: &str,
    db: &str,
    table: &str,
) -> Result<TableEntry, BackupError> {
    let name = format!("{}.{}", ident(db), ident(table));
    let sql = format!("SELECT COUNT(*) FROM {name}");
    let rows: Option<u64> = conn
        .query_first(&sql)
        .await
        .map_err(|e| BackupError::sql(server, &sql, e))?;
    let sql = format!("CHECKSUM TABLE {name}");
    let checksum: Option<(String, Option<u64>)> = conn
        .query_first(&sql)
        .await
        .map_err(|e| BackupError::sql(server, &sql, e))?;
    Ok(TableEntry {
        database: db.to_owned(),
        table: table.to_owned(),
        rows: rows.unwrap_or(0),
        checksum: checksum.and_then(|c| c.1),
    })
}

/// Writes `users.sql.zst`: every non-system account (`CREATE OR REPLACE USER`, with
/// its password hash and options) and role, and their grants.
async fn users(
    conn: &mut Conn,
    server: &str,
    dir: &Path,
    level: i32,
) -> Result<FileEntry, BackupError> {
    let system = SYSTEM_USERS
        .iter()
        .map(|u| format!("'{u}'"))
        .collect::<Vec<_>>()
        .join(",");
    let sql = format!(
        "SELECT User, Host, is_role FROM mysql.user WHERE User NOT IN ({system}) \
         ORDER BY is_role DESC, User, Host"
    );
    let accounts: Vec<(String, String, String)> = conn
        .query(&sql)
        .await
        .map_err(|e| BackupError::sql(server, &sql, e))?;
    let mut text = String::from(
        "-- Accounts and grants of the non-system users (kohaproxy backup)\n\
         SET SESSION sql_mode = '';\n",
    );
    for (user, host, is_role) in &accounts {
        let lit = kohaproxy_health::literal;
        if is_role == "Y" {
            text.push_str(&format!("CREATE ROLE IF NOT EXISTS {};\n", lit(user)));
            continue;
        }
        let account = format!("{}@{}", lit(user), lit(host));
        let sql = format!("SHOW CREATE USER {account}");
        let create: Option<String> = conn
            .query_first(&sql)
            .await
            .map_err(|e| BackupError::sql(server, &sql, e))?;
        if let Some(create) = create {
            let create = create
                .strip_prefix("CREATE USER")
                .map(|rest| format!("CREATE OR REPLACE USER{rest}"))
                .unwrap_or(create);
            text.push_str(&create);
            text.push_str(";\n");
        }
    }
    for (user, host, is_role) in &accounts {
        let lit = kohaproxy_health::literal;
        let account = if is_role == "Y" {
            lit(user)
        } else {
            format!("{}@{}", lit(user), lit(host))
        };
        let sql = format!("SHOW GRANTS FOR {account}");
        let grants: Vec<String> = conn
            .query(&sql)
            .await
            .map_err(|e| BackupError::sql(server, &sql, e))?;
        for g in grants {
            text.push_str(&g);
            text.push_str(";\n");
        }
    }
    text.push_str("FLUSH PRIVILEGES;\n");
    let path = dir.join("users.sql.zst");
    let write = || -> std::io::Result<pipe::Written> {
        let mut f = Compressed::create(&path, level)?;
        f.write(text.as_bytes())?;
        f.finish()
    };
    let written = write().map_err(|e| BackupError::io(&path, e))?;
    Ok(FileEntry {
        path: "users.sql.zst".into(),
        kind: FileKind::Users,
        database: None,
        table: None,
        bytes: written.bytes,
        raw_bytes: written.raw_bytes,
        sha256: written.sha256,
    })
}

/// The position `mariadb-dump --gtid --master-data=2` wrote near the start of
/// `data.sql.zst` (`-- SET GLOBAL gtid_slave_pos='...'`).
fn master_position(dir: &Path) -> Result<Option<String>, BackupError> {
    use std::io::Read;
    let path = dir.join("data.sql.zst");
    let f = std::fs::File::open(&path).map_err(|e| BackupError::io(&path, e))?;
    let mut head = Vec::new();
    zstd::Decoder::new(f)
        .and_then(|d| d.take(1 << 20).read_to_end(&mut head))
        .map_err(|e| BackupError::io(&path, e))?;
    let head = String::from_utf8_lossy(&head);
    let key = "gtid_slave_pos='";
    Ok(head.find(key).and_then(|i| {
        let rest = &head[i + key.len()..];
        rest.find('\'').map(|j| rest[..j].to_owned())
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_stay_inside_the_directory() {
        assert_eq!(file_name("koha_library"), "koha_library");
        assert_eq!(file_name("../x y"), "@2e@2e@2fx@20y");
        assert_eq!(file_name("bibliothèque"), "biblioth@c3@a8que");
        assert_eq!(ident("a`b"), "`a``b`");
    }

    #[test]
    fn passwords_go_in_an_option_file_escaped() {
        let f = password_file("p\"w\\x").unwrap();
        let text = std::fs::read_to_string(f.path()).unwrap();
        assert_eq!(text, "[client]\npassword=\"p\\\"w\\\\x\"\n");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(f.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "only the owner reads it");
    }
}
