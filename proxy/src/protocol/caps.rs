//! Capability flags, including MariaDB's extended (upper 32 bits) capabilities.

/// The 64-bit capability set: the standard flags in the low 32 bits, MariaDB's extended
/// flags (sent in the handshake's reserved bytes) in the high 32 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Caps(pub u64);

#[allow(missing_docs)]
impl Caps {
    pub const CLIENT_MYSQL: u64 = 1; // LONG_PASSWORD; cleared by MariaDB servers
    pub const FOUND_ROWS: u64 = 1 << 1;
    pub const LONG_FLAG: u64 = 1 << 2;
    pub const CONNECT_WITH_DB: u64 = 1 << 3;
    pub const NO_SCHEMA: u64 = 1 << 4;
    pub const COMPRESS: u64 = 1 << 5;
    pub const ODBC: u64 = 1 << 6;
    pub const LOCAL_FILES: u64 = 1 << 7;
    pub const IGNORE_SPACE: u64 = 1 << 8;
    pub const PROTOCOL_41: u64 = 1 << 9;
    pub const INTERACTIVE: u64 = 1 << 10;
    pub const SSL: u64 = 1 << 11;
    pub const IGNORE_SIGPIPE: u64 = 1 << 12;
    pub const TRANSACTIONS: u64 = 1 << 13;
    pub const RESERVED: u64 = 1 << 14;
    pub const SECURE_CONNECTION: u64 = 1 << 15;
    pub const MULTI_STATEMENTS: u64 = 1 << 16;
    pub const MULTI_RESULTS: u64 = 1 << 17;
    pub const PS_MULTI_RESULTS: u64 = 1 << 18;
    pub const PLUGIN_AUTH: u64 = 1 << 19;
    pub const CONNECT_ATTRS: u64 = 1 << 20;
    pub const PLUGIN_AUTH_LENENC_DATA: u64 = 1 << 21;
    pub const CAN_HANDLE_EXPIRED_PASSWORDS: u64 = 1 << 22;
    pub const SESSION_TRACK: u64 = 1 << 23;
    pub const DEPRECATE_EOF: u64 = 1 << 24;
    pub const OPTIONAL_RESULTSET_METADATA: u64 = 1 << 25;
    pub const ZSTD_COMPRESSION: u64 = 1 << 26;
    pub const QUERY_ATTRIBUTES: u64 = 1 << 27;
    pub const MULTI_FACTOR_AUTH: u64 = 1 << 28;
    pub const PROGRESS_OBSOLETE: u64 = 1 << 29;
    pub const SSL_VERIFY_SERVER_CERT: u64 = 1 << 30;
    pub const REMEMBER_OPTIONS: u64 = 1 << 31;
    // MariaDB extended capabilities.
    pub const MARIADB_PROGRESS: u64 = 1 << 32;
    pub const MARIADB_COM_MULTI: u64 = 1 << 33;
    pub const MARIADB_STMT_BULK_OPERATIONS: u64 = 1 << 34;
    pub const MARIADB_EXTENDED_METADATA: u64 = 1 << 35;
    pub const MARIADB_CACHE_METADATA: u64 = 1 << 36;
    pub const MARIADB_BULK_UNIT_RESULTS: u64 = 1 << 37;

    /// What the proxy can carry verbatim. Left out: TLS (terminated later by the proxy
    /// itself), compression (would need re-framing), progress reports and COM_MULTI
    /// (responses the tracker does not follow), metadata caching (column definitions
    /// would differ per backend connection), query attributes and optional metadata
    /// (MySQL-only), multi-factor auth.
    pub const PROXYABLE: u64 = Self::CLIENT_MYSQL
        | Self::FOUND_ROWS
        | Self::LONG_FLAG
        | Self::CONNECT_WITH_DB
        | Self::NO_SCHEMA
        | Self::ODBC
        | Self::LOCAL_FILES
        | Self::IGNORE_SPACE
        | Self::PROTOCOL_41
        | Self::INTERACTIVE
        | Self::IGNORE_SIGPIPE
        | Self::TRANSACTIONS
        | Self::RESERVED
        | Self::SECURE_CONNECTION
        | Self::MULTI_STATEMENTS
        | Self::MULTI_RESULTS
        | Self::PS_MULTI_RESULTS
        | Self::PLUGIN_AUTH
        | Self::CONNECT_ATTRS
        | Self::PLUGIN_AUTH_LENENC_DATA
        | Self::CAN_HANDLE_EXPIRED_PASSWORDS
        | Self::SESSION_TRACK
        | Self::DEPRECATE_EOF
        | Self::REMEMBER_OPTIONS
        | Self::MARIADB_STMT_BULK_OPERATIONS
        | Self::MARIADB_EXTENDED_METADATA;

    /// Whether every flag in `flags` is set.
    #[inline]
    pub fn has(self, flags: u64) -> bool {
        self.0 & flags == flags
    }

    /// The low 32 bits (the standard capability field).
    pub fn lower(self) -> u32 {
        self.0 as u32
    }

    /// The high 32 bits (MariaDB's extended capabilities).
    pub fn upper(self) -> u32 {
        (self.0 >> 32) as u32
    }

    /// Builds from the standard and extended halves.
    pub fn from_parts(lower: u32, upper: u32) -> Caps {
        Caps(lower as u64 | (upper as u64) << 32)
    }
}
