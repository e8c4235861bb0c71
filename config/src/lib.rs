//! kohaproxy's configuration: the TOML schema, its defaults, and validation that names the
//! file, the key and what is wrong.
//!
//! The public types below are the contract the other crates read; `Config::load` is the only
//! way to obtain one, so every `Config` in the program has passed validation.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The whole configuration file, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Where the file was read from (for messages and reload).
    pub path: PathBuf,
    /// `[proxy]`: the client-facing listener and per-connection limits.
    pub proxy: ProxyConfig,
    /// `[admin]`: the admin console.
    pub admin: AdminConfig,
    /// `[[users]]`: who may log in through the proxy.
    pub users: Vec<UserConfig>,
    /// `[monitor]`: how servers are probed.
    pub monitor: MonitorConfig,
    /// `[cluster]`: replication or Galera.
    pub cluster: ClusterConfig,
    /// `[[servers]]`: the MariaDB servers behind the proxy, in file order.
    pub servers: Vec<ServerConfig>,
    /// `[routing]`: read/write split settings.
    pub routing: RoutingConfig,
    /// `[backup]`: scheduled backups.
    pub backup: BackupConfig,
}

/// `[proxy]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct ProxyConfig {
    /// Address clients connect to. Required.
    pub listen: SocketAddr,
    /// Most client connections served at once (default 10000); further ones get error 1040.
    pub max_connections: usize,
    /// A client must finish its login within this (default 10 s, key `handshake_timeout_ms`).
    pub handshake_timeout: Duration,
    /// Timeout for opening a backend connection (default 5 s, key `connect_timeout_ms`).
    pub connect_timeout: Duration,
    /// Largest client message accepted, in bytes (default 1 GiB, key `max_allowed_packet`,
    /// accepts an integer or a string such as "64M"); bigger ones get error 1153.
    pub max_allowed_packet: usize,
    /// Idle client sessions are closed after this (default 8 h, key `idle_timeout_s`, 0 = never).
    pub idle_timeout: Option<Duration>,
    /// Threads serving clients (default 0: one per CPU core).
    pub threads: usize,
    /// On SIGTERM, how long sessions inside a transaction may go on to finish it (default
    /// 30 s, key `shutdown_grace_s`); idle sessions are closed at once.
    pub shutdown_grace: Duration,
    /// TLS toward clients: offered when both `tls_cert` and `tls_key` are set.
    pub tls: Option<TlsFiles>,
}

/// A certificate chain and its private key, both PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain (key `tls_cert`).
    pub cert: PathBuf,
    /// The private key (key `tls_key`).
    pub key: PathBuf,
}

/// `[admin]` section.
#[derive(Clone, PartialEq)]
pub struct AdminConfig {
    /// Unix socket path of the admin console (optional).
    pub socket: Option<PathBuf>,
    /// Optional TCP address of the admin console.
    pub listen: Option<SocketAddr>,
    /// Password required on the TCP admin port (required when `listen` is set).
    pub password: Option<String>,
}

/// One `[[users]]` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct UserConfig {
    /// The MySQL user name, the same on the proxy and on every server.
    pub name: String,
    /// The stored credential.
    pub password: PasswordHash,
}

/// A user's credential as MariaDB stores it for mysql_native_password: SHA1(SHA1(password)),
/// or no password at all. Built from either `password = "plain"` or
/// `password_hash = "*HEX40"` (exactly one of the two keys; `password = ""` means none).
#[derive(Clone, PartialEq, Eq)]
pub enum PasswordHash {
    /// The account has an empty password.
    Empty,
    /// SHA1(SHA1(password)), the 20 bytes behind mysql.user's `*HEX` string.
    DoubleSha1([u8; 20]),
}

impl std::fmt::Debug for PasswordHash {
    // Never print credential material, even hashed, in debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PasswordHash::Empty => f.write_str("PasswordHash::Empty"),
            PasswordHash::DoubleSha1(_) => f.write_str("PasswordHash::DoubleSha1(..)"),
        }
    }
}

impl std::fmt::Debug for AdminConfig {
    // The admin password is never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminConfig")
            .field("socket", &self.socket)
            .field("listen", &self.listen)
            .field("password", &self.password.as_ref().map(|_| Redacted))
            .finish()
    }
}

/// Stands in for a secret in `Debug` output.
struct Redacted;

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// `[monitor]` section.
#[derive(Clone, PartialEq)]
pub struct MonitorConfig {
    /// User the monitor logs in as. Required.
    pub user: String,
    /// Its password (plain; the monitor needs it to log in). Default empty.
    pub password: String,
    /// Probe interval (default 500 ms, key `interval_ms`).
    pub interval: Duration,
    /// A probe that takes longer than this counts as failed (default 1000 ms, key `timeout_ms`).
    pub timeout: Duration,
    /// Consecutive failed probes before a server is marked down (default 3).
    pub fail_count: u32,
    /// Automatic or manual failover (default auto).
    pub failover: FailoverMode,
    /// The account replicas use to reach a new master (CHANGE MASTER's MASTER_USER) when
    /// the proxy re-points them or rejoins an old master; default: the monitor's account.
    pub replication_user: String,
    /// Its password (default: the monitor's password when the user defaulted, else empty).
    pub replication_password: String,
    /// Statements that need the master wait this long for a failover or switchover to
    /// give them one before they get an error (default 10 s, key `failover_hold_ms`).
    pub failover_hold: Duration,
    /// How long a promotion waits for the candidate to apply the relay log it already
    /// has, or a switchover target to reach the old master's position (default 10 s, key
    /// `catchup_timeout_ms`).
    pub catchup_timeout: Duration,
    /// Whether a write may be acknowledged that no replica has received (default
    /// [`Durability::Replicated`], key `durability`).
    pub durability: Durability,
}

impl std::fmt::Debug for MonitorConfig {
    // The monitor password is never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MonitorConfig")
            .field("user", &self.user)
            .field("password", &Redacted)
            .field("interval", &self.interval)
            .field("timeout", &self.timeout)
            .field("fail_count", &self.fail_count)
            .field("failover", &self.failover)
            .field("replication_user", &self.replication_user)
            .field("replication_password", &Redacted)
            .field("failover_hold", &self.failover_hold)
            .field("catchup_timeout", &self.catchup_timeout)
            .field("durability", &self.durability)
            .finish()
    }
}

/// Whether the proxy promotes a replica by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailoverMode {
    /// Promote automatically once the master's failure is confirmed.
    Auto,
    /// Only on the admin command FAILOVER.
    Manual,
}

/// What the proxy promises about an acknowledged write when no replica receives the
/// master's writes (`monitor.durability`; replication clusters with semi-synchronous
/// replication). See docs/ARCHITECTURE.md, "Durability".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Never acknowledge a write no replica has received: the monitor keeps the master's
    /// commits waiting for a replica's ack (`rpl_semi_sync_master_wait_no_slave` ON, the
    /// semi-sync timeout a day). Writes wait while no replica receives, until one returns
    /// or a failover; a failover never loses an acknowledged write, even when the
    /// master's disk is lost.
    Replicated,
    /// Stay writable: the master holds commits for its `rpl_semi_sync_master_timeout`,
    /// then acknowledges writes only it has (logged as an error and shown in SHOW
    /// TOPOLOGY). While it does, a failover is refused until it returns; losing its disk
    /// loses those writes.
    Available,
    /// Leave the servers' semi-sync settings as they are (warnings only).
    Unmanaged,
}

/// `[cluster]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterConfig {
    /// The kind of cluster (default replication).
    pub kind: ClusterKind,
    /// Galera: when the highest-ranked node (priority, then config order) is usable again
    /// and is not the writer, make it the writer (default false: the writer is sticky).
    pub failback: bool,
    /// Galera: a Donor node keeps serving reads when its SST method does not block it
    /// (mariabackup); never with rsync or mysqldump (default false).
    pub donor_serves_reads: bool,
    /// Galera: a node with more write sets than this queued to apply
    /// (`wsrep_local_recv_queue`) gets no reads (default 16).
    pub max_recv_queue: u64,
}

/// Default of `cluster.max_recv_queue`.
pub const DEFAULT_MAX_RECV_QUEUE: u64 = 16;

impl Default for ClusterConfig {
    fn default() -> ClusterConfig {
        ClusterConfig {
            kind: ClusterKind::Replication,
            failback: false,
            donor_serves_reads: false,
            max_recv_queue: DEFAULT_MAX_RECV_QUEUE,
        }
    }
}

/// The kind of cluster behind the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterKind {
    /// One master, asynchronous or semi-synchronous GTID replicas.
    Replication,
    /// A Galera (wsrep) cluster.
    Galera,
}

/// One `[[servers]]` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// Unique name (used in logs and admin commands). Required.
    pub name: String,
    /// host:port. Required. Kept as written (a host name is resolved at connect time).
    pub address: String,
    /// Never promote this server (default false, key `no_promote`).
    pub no_promote: bool,
    /// Higher is preferred among equally up-to-date candidates (default 0).
    pub priority: i32,
}

/// `[routing]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct RoutingConfig {
    /// Send plain reads to replicas (default true).
    pub read_write_split: bool,
    /// Replicas lagging more than this get no reads (default 5 s, key `max_replication_lag_s`).
    pub max_replication_lag: Duration,
    /// Which acknowledged writes a read must see (default global).
    pub causal_reads: CausalReads,
    /// How long a read may wait for a replica to apply the writes it must see before it
    /// goes to the master instead (default 100 ms, key `causal_wait_ms`; 0: never wait).
    pub causal_wait: Duration,
}

/// Which writes a read routed to a replica is guaranteed to see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CausalReads {
    /// Every write acknowledged to any client, through any proxy of the cluster, before
    /// the read arrived: the master's position is read for each read sent to a replica.
    Global,
    /// Every write this proxy process acknowledged (and, after a start, everything the
    /// master had when it was first probed): cheapest, right for one proxy in front of
    /// the cluster.
    Local,
    /// Every write acknowledged to the same client session.
    Session,
    /// None: a replica within the lag limit serves reads as it is.
    Off,
}

/// `[backup]` section.
#[derive(Clone, PartialEq, Eq)]
pub struct BackupConfig {
    /// Where backups are written (optional; no backups without it).
    pub dir: Option<PathBuf>,
    /// When scheduled backups run (default daily at 02:30 local time).
    pub schedule: Schedule,
    /// How many of the newest successful backups to keep (default 7).
    pub keep: u32,
    /// Also keep every successful backup younger than this many days (default: none).
    pub keep_days: Option<u32>,
    /// Dump (and restore) jobs run at once (default 2).
    pub parallel: usize,
    /// zstd level of the backup files, 1..=19 (default 3).
    pub compression_level: i32,
    /// How the dump's own work (`mariadb-dump`, compression) shares this host's CPU with
    /// others, such as a server or Koha on the same machine (default `Idle`).
    pub priority: BackupPriority,
    /// Whether the master may be the source when no replica is healthy (default false).
    pub allow_master: bool,
    /// How long a server stays diverged before it is rebuilt from a backup on its own
    /// (`None`, from 0, the default: only by `REBUILD`).
    pub rebuild_diverged_after: Option<Duration>,
    /// Account that dumps and pauses the replica (default: the monitor's).
    pub user: String,
    /// Its password.
    pub password: String,
    /// The `mariadb-dump` program (default found on PATH).
    pub mariadb_dump: PathBuf,
    /// The `mariadb` client program, for restores (default found on PATH).
    pub mariadb: PathBuf,
}

impl std::fmt::Debug for BackupConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackupConfig")
            .field("dir", &self.dir)
            .field("schedule", &self.schedule)
            .field("keep", &self.keep)
            .field("keep_days", &self.keep_days)
            .field("parallel", &self.parallel)
            .field("compression_level", &self.compression_level)
            .field("priority", &self.priority)
            .field("allow_master", &self.allow_master)
            .field("rebuild_diverged_after", &self.rebuild_diverged_after)
            .field("user", &self.user)
            .field("mariadb_dump", &self.mariadb_dump)
            .field("mariadb", &self.mariadb)
            .finish_non_exhaustive()
    }
}

/// `backup.priority`: the CPU priority of a backup's dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupPriority {
    /// Linux `SCHED_IDLE`: the dump runs only on CPU time nothing else on the host wants.
    /// The default.
    Idle,
    /// `nice 19`: the lowest normal priority; it still takes a small share of busy cores.
    Low,
    /// The proxy's own priority.
    Normal,
}

mod load;
mod raw;
mod schedule;
pub use schedule::{Schedule, SCHEDULE_FORMS};
#[cfg(test)]
mod tests;
mod validate;
pub use load::ConfigError;

impl PasswordHash {
    /// The credential for plain password `pw`: SHA1(SHA1(pw)), or `Empty` for "".
    pub fn from_plain(pw: &str) -> PasswordHash {
        use sha1::{Digest, Sha1};
        if pw.is_empty() {
            return PasswordHash::Empty;
        }
        let stage1 = Sha1::digest(pw.as_bytes());
        PasswordHash::DoubleSha1(Sha1::digest(stage1).into())
    }

    /// Parses mysql.user's form: `*` followed by 40 hex digits (any case), or "" for `Empty`.
    /// The error message never repeats the input.
    pub fn parse_hex(s: &str) -> Result<PasswordHash, String> {
        if s.is_empty() {
            return Ok(PasswordHash::Empty);
        }
        let format = "must be \"*\" followed by 40 hex digits, as in mysql.user";
        let Some(hex_part) = s.strip_prefix('*') else {
            return Err(format!("{format} (missing leading \"*\")"));
        };
        if hex_part.len() != 40 {
            return Err(format!(
                "{format} (got {} characters after \"*\")",
                hex_part.chars().count()
            ));
        }
        let mut bytes = [0u8; 20];
        hex::decode_to_slice(hex_part, &mut bytes)
            .map_err(|_| format!("{format} (contains a non-hex character)"))?;
        Ok(PasswordHash::DoubleSha1(bytes))
    }
}

impl Config {
    /// Reads, parses and validates the file at `path`.
    pub fn load(path: &std::path::Path) -> Result<Config, ConfigError> {
        load::load(path)
    }

    /// Parses and validates `text` as if read from `path` (used by tests and reload).
    pub fn parse(text: &str, path: &std::path::Path) -> Result<Config, ConfigError> {
        load::parse(text, path)
    }

    /// The `[[users]]` entry named `name`, if any.
    pub fn user(&self, name: &str) -> Option<&UserConfig> {
        self.users.iter().find(|u| u.name == name)
    }

    /// The `[[servers]]` entry named `name`, if any.
    pub fn server(&self, name: &str) -> Option<&ServerConfig> {
        self.servers.iter().find(|s| s.name == name)
    }
}
