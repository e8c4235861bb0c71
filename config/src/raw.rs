//! The file as serde sees it: every key optional so that validation, not serde, reports what
//! is missing, and values that validation checks wrapped in `Spanned` so errors carry a line.

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use toml::Spanned;

/// The whole file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub proxy: Option<Spanned<RawProxy>>,
    pub admin: Option<RawAdmin>,
    #[serde(default)]
    pub users: Vec<Spanned<RawUser>>,
    pub monitor: Option<Spanned<RawMonitor>>,
    pub cluster: Option<RawCluster>,
    #[serde(default)]
    pub servers: Vec<Spanned<RawServer>>,
    pub routing: Option<RawRouting>,
    pub backup: Option<RawBackup>,
}

/// `[proxy]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProxy {
    pub listen: Option<Spanned<String>>,
    pub max_connections: Option<Spanned<u64>>,
    pub handshake_timeout_ms: Option<Spanned<u64>>,
    pub connect_timeout_ms: Option<Spanned<u64>>,
    pub max_allowed_packet: Option<Spanned<RawSize>>,
    pub idle_timeout_s: Option<Spanned<u64>>,
    pub threads: Option<Spanned<u64>>,
    pub shutdown_grace_s: Option<Spanned<u64>>,
    pub tls_cert: Option<Spanned<String>>,
    pub tls_key: Option<Spanned<String>>,
}

/// `[admin]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAdmin {
    pub socket: Option<Spanned<String>>,
    pub listen: Option<Spanned<String>>,
    pub password: Option<Spanned<String>>,
}

/// One `[[users]]` entry.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawUser {
    pub name: Option<Spanned<String>>,
    pub password: Option<Spanned<String>>,
    pub password_hash: Option<Spanned<String>>,
}

/// `[monitor]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMonitor {
    pub user: Option<Spanned<String>>,
    pub password: Option<String>,
    pub interval_ms: Option<Spanned<u64>>,
    pub timeout_ms: Option<Spanned<u64>>,
    pub fail_count: Option<Spanned<u32>>,
    pub failover: Option<RawFailover>,
    pub replication_user: Option<Spanned<String>>,
    pub replication_password: Option<String>,
    pub failover_hold_ms: Option<Spanned<u64>>,
    pub catchup_timeout_ms: Option<Spanned<u64>>,
    pub durability: Option<RawDurability>,
}

/// `monitor.durability`.
#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RawDurability {
    Replicated,
    Available,
    Unmanaged,
}

/// `monitor.failover`.
#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RawFailover {
    Auto,
    Manual,
}

/// `[cluster]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCluster {
    pub kind: Option<RawClusterKind>,
    pub failback: Option<bool>,
    pub donor_serves_reads: Option<bool>,
    pub max_recv_queue: Option<Spanned<u64>>,
}

/// `cluster.kind`.
#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RawClusterKind {
    Replication,
    Galera,
}

/// One `[[servers]]` entry.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServer {
    pub name: Option<Spanned<String>>,
    pub address: Option<Spanned<String>>,
    pub no_promote: Option<bool>,
    pub priority: Option<i32>,
}

/// `[routing]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRouting {
    pub read_write_split: Option<bool>,
    pub max_replication_lag_s: Option<Spanned<u64>>,
    pub causal_reads: Option<RawCausal>,
    pub causal_wait_ms: Option<Spanned<u64>>,
}

/// `routing.causal_reads`.
#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RawCausal {
    Global,
    Local,
    Session,
    Off,
}

/// `[backup]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBackup {
    pub dir: Option<Spanned<String>>,
    pub schedule: Option<Spanned<String>>,
    pub keep: Option<Spanned<u32>>,
    pub keep_days: Option<Spanned<u32>>,
    pub parallel: Option<Spanned<u32>>,
    pub compression_level: Option<Spanned<u32>>,
    pub priority: Option<RawPriority>,
    pub allow_master: Option<bool>,
    pub rebuild_diverged_after_s: Option<Spanned<u64>>,
    pub user: Option<Spanned<String>>,
    pub password: Option<String>,
    pub mariadb_dump: Option<Spanned<String>>,
    pub mariadb: Option<Spanned<String>>,
}

/// `backup.priority`.
#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub(crate) enum RawPriority {
    Idle,
    Low,
    Normal,
}

/// A byte size written either as an integer or as text such as "64M".
pub(crate) enum RawSize {
    Bytes(i64),
    Text(String),
}

impl<'de> Deserialize<'de> for RawSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SizeVisitor;

        impl Visitor<'_> for SizeVisitor {
            type Value = RawSize;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a number of bytes or a size such as \"64M\"")
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawSize, E> {
                Ok(RawSize::Bytes(v))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawSize, E> {
                i64::try_from(v)
                    .map(RawSize::Bytes)
                    .map_err(|_| E::custom("size is too large"))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawSize, E> {
                Ok(RawSize::Text(v.to_owned()))
            }
        }

        deserializer.deserialize_any(SizeVisitor)
    }
}

/// Parses "64M", "1G", "512K", "1024", "16MiB" or "16MB" (binary multiples, as MariaDB does).
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let digits_end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, suffix) = t.split_at(digits_end);
    if digits.is_empty() {
        return Err(format!(
            "{text:?} is not a size (expected a number with an optional K, M or G suffix)"
        ));
    }
    let multiplier: u64 = match suffix.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        _ => {
            return Err(format!(
                "{text:?} has an unknown unit (expected K, M or G, e.g. \"64M\")"
            ))
        }
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(|| format!("{text:?} is too large"))
}
