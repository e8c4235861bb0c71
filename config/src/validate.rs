//! Maps the raw serde structs into the public types, applying defaults and checking every
//! value; the first problem found is returned, naming the file, the key and the line.

use crate::load::{line_col, ConfigError};
use crate::raw::{
    parse_size, RawAdmin, RawBackup, RawCausal, RawCluster, RawClusterKind, RawConfig,
    RawDurability, RawFailover, RawMonitor, RawPriority, RawProxy, RawRouting, RawServer, RawSize,
    RawUser,
};
use crate::{
    AdminConfig, BackupConfig, BackupPriority, CausalReads, ClusterConfig, ClusterKind, Config,
    Durability, FailoverMode, MonitorConfig, PasswordHash, ProxyConfig, RoutingConfig, Schedule,
    ServerConfig, TlsFiles, UserConfig, DEFAULT_MAX_RECV_QUEUE,
};
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

/// Longest millisecond timeout accepted (one day): keeps `Instant + timeout` far from overflow.
const MAX_MS: u64 = 86_400_000;
/// Longest second-valued setting accepted (one year).
const MAX_S: u64 = 365 * 86_400;
/// Smallest and largest `max_allowed_packet`.
const MIN_PACKET: u64 = 1 << 10;
const MAX_PACKET: u64 = 1 << 30;

/// The file being validated, for building errors.
struct Ctx<'a> {
    text: &'a str,
    path: &'a Path,
}

impl Ctx<'_> {
    /// An error about `key`, located at `span` when known.
    fn err(&self, key: &str, span: Option<Range<usize>>, message: String) -> ConfigError {
        let (line, column) = match span {
            Some(s) => {
                let (l, c) = line_col(self.text, s.start);
                (Some(l), Some(c))
            }
            None => (None, None),
        };
        ConfigError::Invalid {
            path: self.path.to_path_buf(),
            line,
            column,
            key: key.to_owned(),
            message,
        }
    }

    /// A required string: present and non-empty.
    fn required(
        &self,
        v: Option<Spanned<String>>,
        key: &str,
        at: Range<usize>,
    ) -> Result<Spanned<String>, ConfigError> {
        match v {
            None => Err(self.err(key, Some(at), "is required but missing".to_owned())),
            Some(s) if s.get_ref().trim().is_empty() => {
                Err(self.err(key, Some(s.span()), "must not be empty".to_owned()))
            }
            Some(s) => Ok(s),
        }
    }

    /// A number with a default, checked to lie within `min..=max`.
    fn ranged<T: Copy + PartialOrd + std::fmt::Display>(
        &self,
        v: Option<Spanned<T>>,
        key: &str,
        default: T,
        (min, max): (T, T),
    ) -> Result<T, ConfigError> {
        let Some(v) = v else { return Ok(default) };
        let n = *v.get_ref();
        if n < min || n > max {
            return Err(self.err(
                key,
                Some(v.span()),
                format!("{n} is out of range (must be between {min} and {max})"),
            ));
        }
        Ok(n)
    }

    /// A file that must exist and be readable; a relative path is taken from the config
    /// file's folder.
    fn readable_file(&self, v: Spanned<String>, key: &str) -> Result<PathBuf, ConfigError> {
        let span = v.span();
        let written = v.into_inner();
        let mut path = PathBuf::from(&written);
        if path.is_relative() {
            if let Some(dir) = self.path.parent() {
                path = dir.join(path);
            }
        }
        match std::fs::File::open(&path) {
            Ok(_) => Ok(path),
            Err(e) => Err(self.err(key, Some(span), format!("cannot read {:?}: {e}", path))),
        }
    }

    /// An IP address and port to listen on (port 0 allowed: the system picks one).
    fn socket_addr(&self, v: &Spanned<String>, key: &str) -> Result<SocketAddr, ConfigError> {
        v.get_ref().trim().parse().map_err(|_| {
            self.err(
                key,
                Some(v.span()),
                format!(
                    "{:?} is not an IP address and port (e.g. \"127.0.0.1:6033\" or \"[::1]:6033\")",
                    v.get_ref()
                ),
            )
        })
    }
}

/// Applies defaults and checks to the raw file, returning the first problem found.
pub(crate) fn validate(raw: RawConfig, text: &str, path: &Path) -> Result<Config, ConfigError> {
    let cx = Ctx { text, path };
    let proxy = match raw.proxy {
        Some(p) => proxy(&cx, p)?,
        None => return Err(cx.err("proxy", None, "missing required section [proxy]".into())),
    };
    let admin = admin(&cx, raw.admin)?;
    if raw.users.is_empty() {
        let msg = "at least one [[users]] entry is required".to_owned();
        return Err(cx.err("users", None, msg));
    }
    let users = users(&cx, raw.users)?;
    let monitor = match raw.monitor {
        Some(m) => monitor(&cx, m)?,
        None => return Err(cx.err("monitor", None, "missing required section [monitor]".into())),
    };
    let cluster = cluster(&cx, raw.cluster)?;
    if raw.servers.is_empty() {
        let msg = "at least one [[servers]] entry is required".to_owned();
        return Err(cx.err("servers", None, msg));
    }
    let servers = servers(&cx, raw.servers)?;
    let routing = routing(&cx, raw.routing)?;
    let backup = backup(&cx, raw.backup, &monitor)?;
    Ok(Config {
        path: path.to_path_buf(),
        proxy,
        admin,
        users,
        monitor,
        cluster,
        servers,
        routing,
        backup,
    })
}

fn proxy(cx: &Ctx, p: Spanned<RawProxy>) -> Result<ProxyConfig, ConfigError> {
    let at = p.span();
    let p = p.into_inner();
    let listen = cx.required(p.listen, "proxy.listen", at.clone())?;
    let listen = cx.socket_addr(&listen, "proxy.listen")?;
    let key = "proxy.max_connections";
    let max_connections = cx.ranged(p.max_connections, key, 10_000, (1, 1_000_000))?;
    let key = "proxy.handshake_timeout_ms";
    let handshake = cx.ranged(p.handshake_timeout_ms, key, 10_000, (1, MAX_MS))?;
    let key = "proxy.connect_timeout_ms";
    let connect = cx.ranged(p.connect_timeout_ms, key, 5_000, (1, MAX_MS))?;
    let idle = cx.ranged(p.idle_timeout_s, "proxy.idle_timeout_s", 28_800, (0, MAX_S))?;
    let max_allowed_packet = match p.max_allowed_packet {
        None => MAX_PACKET,
        Some(v) => packet_size(cx, v)?,
    };
    let threads = cx.ranged(p.threads, "proxy.threads", 0, (0, 1024))?;
    let key = "proxy.shutdown_grace_s";
    let grace = cx.ranged(p.shutdown_grace_s, key, 30, (0, 3600))?;
    let tls = match (p.tls_cert, p.tls_key) {
        (None, None) => None,
        (Some(cert), Some(key)) => Some(TlsFiles {
            cert: cx.readable_file(cert, "proxy.tls_cert")?,
            key: cx.readable_file(key, "proxy.tls_key")?,
        }),
        (Some(_), None) => {
            let msg = "set together with proxy.tls_cert (the private key, PEM)".to_owned();
            return Err(cx.err("proxy.tls_key", Some(at), msg));
        }
        (None, Some(_)) => {
            let msg = "set together with proxy.tls_key (the certificate chain, PEM)".to_owned();
            return Err(cx.err("proxy.tls_cert", Some(at), msg));
        }
    };
    Ok(ProxyConfig {
        listen,
        threads: usize::try_from(threads).unwrap_or(usize::MAX),
        shutdown_grace: Duration::from_secs(grace),
        tls,
        max_connections: usize::try_from(max_connections).unwrap_or(usize::MAX),
        handshake_timeout: Duration::from_millis(handshake),
        connect_timeout: Duration::from_millis(connect),
        max_allowed_packet: usize::try_from(max_allowed_packet).unwrap_or(usize::MAX),
        idle_timeout: (idle > 0).then(|| Duration::from_secs(idle)),
    })
}

fn packet_size(cx: &Ctx, v: Spanned<RawSize>) -> Result<u64, ConfigError> {
    let key = "proxy.max_allowed_packet";
    let span = v.span();
    let bytes = match v.into_inner() {
        RawSize::Bytes(n) => u64::try_from(n).ok(),
        RawSize::Text(t) => Some(parse_size(&t).map_err(|m| cx.err(key, Some(span.clone()), m))?),
    };
    match bytes {
        Some(n) if (MIN_PACKET..=MAX_PACKET).contains(&n) => Ok(n),
        _ => Err(cx.err(
            key,
            Some(span),
            "must be between 1K (1024 bytes) and 1G (1073741824 bytes)".to_owned(),
        )),
    }
}

fn admin(cx: &Ctx, a: Option<RawAdmin>) -> Result<AdminConfig, ConfigError> {
    let Some(a) = a else {
        return Ok(AdminConfig {
            socket: None,
            listen: None,
            password: None,
        });
    };
    let socket = match a.socket {
        Some(s) if s.get_ref().trim().is_empty() => {
            let msg = "must not be empty (leave the key out for no socket)".to_owned();
            return Err(cx.err("admin.socket", Some(s.span()), msg));
        }
        Some(s) => Some(PathBuf::from(s.into_inner())),
        None => None,
    };
    let listen = match &a.listen {
        Some(l) => Some(cx.socket_addr(l, "admin.listen")?),
        None => None,
    };
    if let Some(l) = &a.listen {
        match &a.password {
            None => {
                let msg = "is required when admin.listen is set".to_owned();
                return Err(cx.err("admin.password", Some(l.span()), msg));
            }
            Some(p) if p.get_ref().is_empty() => {
                let msg = "must not be empty when admin.listen is set".to_owned();
                return Err(cx.err("admin.password", Some(p.span()), msg));
            }
            Some(_) => {}
        }
    }
    Ok(AdminConfig {
        socket,
        listen,
        password: a.password.map(Spanned::into_inner),
    })
}

fn users(cx: &Ctx, raw: Vec<Spanned<RawUser>>) -> Result<Vec<UserConfig>, ConfigError> {
    let mut users: Vec<UserConfig> = Vec::with_capacity(raw.len());
    for (i, u) in raw.into_iter().enumerate() {
        let at = u.span();
        let u = u.into_inner();
        let key = format!("users[{i}]");
        let name = cx.required(u.name, &format!("{key}.name"), at.clone())?;
        if let Some(j) = users.iter().position(|o| o.name == *name.get_ref()) {
            let msg = format!("duplicate user {:?} (also users[{j}])", name.get_ref());
            return Err(cx.err(&format!("{key}.name"), Some(name.span()), msg));
        }
        let password = match (u.password, u.password_hash) {
            (Some(_), Some(_)) => {
                let msg = "set either password or password_hash, not both".to_owned();
                return Err(cx.err(&key, Some(at), msg));
            }
            (None, None) => {
                let msg = "set either password or password_hash (use password = \"\" for none)";
                return Err(cx.err(&key, Some(at), msg.to_owned()));
            }
            (Some(p), None) => PasswordHash::from_plain(p.get_ref()),
            (None, Some(h)) => PasswordHash::parse_hex(h.get_ref())
                .map_err(|m| cx.err(&format!("{key}.password_hash"), Some(h.span()), m))?,
        };
        users.push(UserConfig {
            name: name.into_inner(),
            password,
        });
    }
    Ok(users)
}

fn monitor(cx: &Ctx, m: Spanned<RawMonitor>) -> Result<MonitorConfig, ConfigError> {
    let at = m.span();
    let m: RawMonitor = m.into_inner();
    let user = cx.required(m.user, "monitor.user", at)?.into_inner();
    let interval = cx.ranged(m.interval_ms, "monitor.interval_ms", 500, (1, MAX_MS))?;
    let timeout = cx.ranged(m.timeout_ms, "monitor.timeout_ms", 1_000, (1, MAX_MS))?;
    let fail_count = cx.ranged(m.fail_count, "monitor.fail_count", 3, (1, 1_000_000))?;
    let failover = match m.failover.unwrap_or(RawFailover::Auto) {
        RawFailover::Auto => FailoverMode::Auto,
        RawFailover::Manual => FailoverMode::Manual,
    };
    let hold = cx.ranged(
        m.failover_hold_ms,
        "monitor.failover_hold_ms",
        10_000,
        (0, MAX_MS),
    )?;
    let key = "monitor.catchup_timeout_ms";
    let catchup = cx.ranged(m.catchup_timeout_ms, key, 10_000, (1, MAX_MS))?;
    let password = m.password.unwrap_or_default();
    let (replication_user, replication_password) = match m.replication_user {
        Some(u) => (u.into_inner(), m.replication_password.unwrap_or_default()),
        None => (user.clone(), password.clone()),
    };
    Ok(MonitorConfig {
        user,
        password,
        interval: Duration::from_millis(interval),
        timeout: Duration::from_millis(timeout),
        fail_count,
        failover,
        replication_user,
        replication_password,
        failover_hold: Duration::from_millis(hold),
        catchup_timeout: Duration::from_millis(catchup),
        durability: match m.durability.unwrap_or(RawDurability::Replicated) {
            RawDurability::Replicated => Durability::Replicated,
            RawDurability::Available => Durability::Available,
            RawDurability::Unmanaged => Durability::Unmanaged,
        },
    })
}

fn cluster(cx: &Ctx, c: Option<RawCluster>) -> Result<ClusterConfig, ConfigError> {
    let Some(c) = c else {
        return Ok(ClusterConfig::default());
    };
    let kind = match c.kind.unwrap_or(RawClusterKind::Replication) {
        RawClusterKind::Replication => ClusterKind::Replication,
        RawClusterKind::Galera => ClusterKind::Galera,
    };
    let max_recv_queue = cx.ranged(
        c.max_recv_queue,
        "cluster.max_recv_queue",
        DEFAULT_MAX_RECV_QUEUE,
        (0, u64::from(u32::MAX)),
    )?;
    Ok(ClusterConfig {
        kind,
        failback: c.failback.unwrap_or(false),
        donor_serves_reads: c.donor_serves_reads.unwrap_or(false),
        max_recv_queue,
    })
}

fn servers(cx: &Ctx, raw: Vec<Spanned<RawServer>>) -> Result<Vec<ServerConfig>, ConfigError> {
    let mut servers: Vec<ServerConfig> = Vec::with_capacity(raw.len());
    for (i, s) in raw.into_iter().enumerate() {
        let at = s.span();
        let s = s.into_inner();
        let name_key = format!("servers[{i}].name");
        let name = cx.required(s.name, &name_key, at.clone())?;
        if let Some(j) = servers.iter().position(|o| o.name == *name.get_ref()) {
            let msg = format!(
                "duplicate server name {:?} (also servers[{j}])",
                name.get_ref()
            );
            return Err(cx.err(&name_key, Some(name.span()), msg));
        }
        let addr_key = format!("servers[{i}].address");
        let address = cx.required(s.address, &addr_key, at)?;
        check_host_port(address.get_ref())
            .map_err(|m| cx.err(&addr_key, Some(address.span()), m))?;
        let addr = address.get_ref().trim();
        if let Some(j) = servers
            .iter()
            .position(|o| o.address.eq_ignore_ascii_case(addr))
        {
            let msg = format!("duplicate address {addr:?} (also servers[{j}])");
            return Err(cx.err(&addr_key, Some(address.span()), msg));
        }
        servers.push(ServerConfig {
            name: name.into_inner(),
            address: addr.to_owned(),
            no_promote: s.no_promote.unwrap_or(false),
            priority: s.priority.unwrap_or(0),
        });
    }
    Ok(servers)
}

/// Checks `host:port` (IPv6 hosts in brackets) with a port from 1 to 65535.
pub(crate) fn check_host_port(address: &str) -> Result<(), String> {
    let a = address.trim();
    let bad = |why: &str| format!("{address:?} is not host:port ({why})");
    let (host, port) = if let Some(rest) = a.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(|| bad("missing ']'"))?;
        let port = after.strip_prefix(':').ok_or_else(|| bad("missing port"))?;
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(bad("invalid IPv6 address in brackets"));
        }
        (host, port)
    } else {
        let (host, port) = a.rsplit_once(':').ok_or_else(|| bad("missing port"))?;
        if host.contains(':') {
            return Err(bad("put an IPv6 address in brackets, e.g. [::1]:3306"));
        }
        (host, port)
    };
    if host.is_empty() {
        return Err(bad("missing host"));
    }
    if host
        .chars()
        .any(|c| c.is_whitespace() || c == '/' || c == '@')
    {
        return Err(bad("invalid character in host"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(bad("port must be a number from 1 to 65535")),
    }
}

fn routing(cx: &Ctx, r: Option<RawRouting>) -> Result<RoutingConfig, ConfigError> {
    let (split, lag, causal, wait) = match r {
        Some(r) => (
            r.read_write_split,
            r.max_replication_lag_s,
            r.causal_reads,
            r.causal_wait_ms,
        ),
        None => (None, None, None, None),
    };
    let key = "routing.max_replication_lag_s";
    let lag = cx.ranged(lag, key, 5, (0, MAX_S))?;
    let wait = cx.ranged(wait, "routing.causal_wait_ms", 100, (0, MAX_MS))?;
    let causal_reads = match causal.unwrap_or(RawCausal::Global) {
        RawCausal::Global => CausalReads::Global,
        RawCausal::Local => CausalReads::Local,
        RawCausal::Session => CausalReads::Session,
        RawCausal::Off => CausalReads::Off,
    };
    Ok(RoutingConfig {
        read_write_split: split.unwrap_or(true),
        max_replication_lag: Duration::from_secs(lag),
        causal_reads,
        causal_wait: Duration::from_millis(wait),
    })
}

fn backup(
    cx: &Ctx,
    b: Option<RawBackup>,
    monitor: &MonitorConfig,
) -> Result<BackupConfig, ConfigError> {
    let b = b.unwrap_or(RawBackup {
        dir: None,
        schedule: None,
        keep: None,
        keep_days: None,
        parallel: None,
        compression_level: None,
        priority: None,
        allow_master: None,
        rebuild_diverged_after_s: None,
        user: None,
        password: None,
        mariadb_dump: None,
        mariadb: None,
    });
    let not_empty = |v: Option<Spanned<String>>, key: &str, why: &str| match v {
        Some(d) if d.get_ref().trim().is_empty() => {
            Err(cx.err(key, Some(d.span()), format!("must not be empty{why}")))
        }
        Some(d) => Ok(Some(d.into_inner())),
        None => Ok(None),
    };
    let dir =
        not_empty(b.dir, "backup.dir", " (leave the key out for no backups)")?.map(PathBuf::from);
    let schedule = match b.schedule {
        Some(s) => s
            .get_ref()
            .parse()
            .map_err(|m| cx.err("backup.schedule", Some(s.span()), m))?,
        None => Schedule::Daily {
            hour: 2,
            minute: 30,
        },
    };
    let keep = cx.ranged(b.keep, "backup.keep", 7, (1, 100_000))?;
    let keep_days = match b.keep_days {
        Some(d) => Some(cx.ranged(Some(d), "backup.keep_days", 0, (1, 100_000))?),
        None => None,
    };
    let parallel = cx.ranged(b.parallel, "backup.parallel", 2, (1, 64))?;
    let level = cx.ranged(b.compression_level, "backup.compression_level", 3, (1, 19))?;
    let key = "backup.rebuild_diverged_after_s";
    let rebuild_after = cx.ranged(b.rebuild_diverged_after_s, key, 0, (0, MAX_S))?;
    let user = not_empty(b.user, "backup.user", "")?;
    let (user, password) = match user {
        Some(u) => (u, b.password.unwrap_or_default()),
        None => (monitor.user.clone(), monitor.password.clone()),
    };
    let program = |v, key, default: &str| {
        not_empty(v, key, "").map(|p| PathBuf::from(p.unwrap_or_else(|| default.to_owned())))
    };
    Ok(BackupConfig {
        dir,
        schedule,
        keep,
        keep_days,
        parallel: parallel as usize,
        compression_level: level as i32,
        priority: match b.priority.unwrap_or(RawPriority::Idle) {
            RawPriority::Idle => BackupPriority::Idle,
            RawPriority::Low => BackupPriority::Low,
            RawPriority::Normal => BackupPriority::Normal,
        },
        allow_master: b.allow_master.unwrap_or(false),
        rebuild_diverged_after: (rebuild_after > 0).then(|| Duration::from_secs(rebuild_after)),
        user,
        password,
        mariadb_dump: program(b.mariadb_dump, "backup.mariadb_dump", "mariadb-dump")?,
        mariadb: program(b.mariadb, "backup.mariadb", "mariadb")?,
    })
}
