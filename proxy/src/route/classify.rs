//! The statement classifier: reads a COM_QUERY text and says whether it may run on a
//! replica, must run on the master, or must run where the previous statement ran, and what
//! it does to the session. A pure function: no I/O, no allocation.
//!
//! Misclassifying a write as a read loses data, so anything not recognised as a plain read
//! goes to the master.
//!
//! One forward pass of a small lexer (whitespace, comments, quoted strings and identifiers,
//! numbers, variables, punctuation; executable comments `/*! ... */` are lexed as code)
//! feeds a reader that looks at the statement's first keywords for its shape (SELECT,
//! WITH, SHOW WARNINGS, SET, START TRANSACTION, ...) and at every token for what rules out
//! a replica: write and locking keywords, INTO, `:=`, calls to anything but a side-effect
//! free built-in, session-result system variables, a second statement.

/// Where a statement may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// A plain read: may run on a replica.
    Read,
    /// Must run on the master.
    Master,
    /// Must run on the backend the previous statement ran on (SHOW WARNINGS, SHOW ERRORS,
    /// `@@warning_count`, `@@error_count`).
    Previous,
}

/// A routing hint written in a comment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hint {
    /// `/* kohaproxy:master */`
    Master,
    /// `/* kohaproxy:replica */`
    Replica,
}

/// What the classifier found out about one statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Class {
    /// Where it may run (hints not applied: see `hint`).
    pub route: Route,
    /// After it, the session must stay on the master (until COM_RESET_CONNECTION or
    /// COM_CHANGE_USER): it creates a temporary table, takes a named or table lock, opens a
    /// HANDLER, prepares an SQL-level statement, uses SQL_CALC_FOUND_ROWS, or assigns a user
    /// variable in a way the proxy cannot replay.
    pub pin: bool,
    /// A `SET` whose user-variable assignments (`@x = ...`) all have literal right-hand
    /// sides (numbers, quoted strings, NULL, TRUE/FALSE): the proxy replays its text on
    /// replicas. System variables it sets are learned from the server, not from the text.
    pub replay: bool,
    /// The statement starts a transaction (`BEGIN [WORK]`, `START TRANSACTION ...`), and
    /// which kind.
    pub starts: Option<TransactionStart>,
    /// A hint comment, if the statement has one.
    pub hint: Option<Hint>,
}

/// Classifies one COM_QUERY statement text (the bytes after the command byte).
///
/// The text is lexed the way MariaDB lexes it with backslash escapes on (the default
/// `sql_mode`, and Koha's). When a quoted string holds a backslash, the token boundaries
/// would differ under `NO_BACKSLASH_ESCAPES` (or `ANSI_QUOTES`), so the text is lexed that
/// way too and the stricter of the two answers is returned; a reading the server would
/// reject as unterminated is left out, since the server runs nothing in that case. The
/// lexer works on bytes, which matches the server for ASCII-safe connection character sets
/// (utf8mb3, utf8mb4, latin1, binary), not for ones such as GBK or SJIS whose multi-byte
/// characters may contain a backslash byte.
pub fn classify(sql: &[u8]) -> Class {
    let with_backslash_escapes = Classifier::run(sql, Escapes::Backslash);
    if !with_backslash_escapes.backslash_in_quotes {
        return with_backslash_escapes.class.unwrap_or(MASTER);
    }
    let without_backslash_escapes = Classifier::run(sql, Escapes::DoubledQuoteOnly);
    match (
        with_backslash_escapes.class,
        without_backslash_escapes.class,
    ) {
        (Some(a), Some(b)) => stricter(a, b),
        (Some(only), None) | (None, Some(only)) => only,
        (None, None) => MASTER,
    }
}

/// The kind of transaction a statement starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionStart {
    /// `START TRANSACTION READ ONLY` (possibly WITH CONSISTENT SNAPSHOT): a replica may
    /// run it.
    ReadOnly,
    /// Any other `BEGIN [WORK]` or `START TRANSACTION`.
    ReadWrite,
}

/// The answer for text the classifier cannot vouch for.
const MASTER: Class = Class {
    route: Route::Master,
    pin: false,
    replay: false,
    starts: None,
    hint: None,
};

/// The answer that is safe under both of two readings of the same text.
fn stricter(a: Class, b: Class) -> Class {
    if a == b {
        return a;
    }
    Class {
        route: if a.route == b.route {
            a.route
        } else {
            Route::Master
        },
        pin: a.pin || b.pin || a.replay != b.replay,
        replay: a.replay && b.replay,
        starts: match (a.starts, b.starts) {
            (None, None) => None,
            (Some(TransactionStart::ReadOnly), Some(TransactionStart::ReadOnly)) => {
                Some(TransactionStart::ReadOnly)
            }
            // A start under either reading counts as one (the master checks it).
            _ => Some(TransactionStart::ReadWrite),
        },
        hint: match (a.hint, b.hint) {
            (Some(Hint::Master), _) | (_, Some(Hint::Master)) => Some(Hint::Master),
            (first, second) => first.or(second),
        },
    }
}

/// Built-in functions a read may call on a replica: no side effects, nothing that depends
/// on what this session did before (so no LAST_INSERT_ID, FOUND_ROWS, ROW_COUNT, GET_LOCK,
/// NEXTVAL, LOAD_FILE, MASTER_GTID_WAIT ...). Upper case, sorted by bytes: binary search.
const READ_ONLY_FUNCTIONS: &[&str] = &[
    "ABS",
    "ACOS",
    "ADDDATE",
    "ADDTIME",
    "AES_DECRYPT",
    "AES_ENCRYPT",
    "AGAINST",
    "ASCII",
    "ASIN",
    "ATAN",
    "ATAN2",
    "AVG",
    "BENCHMARK",
    "BIN",
    "BIT_AND",
    "BIT_COUNT",
    "BIT_LENGTH",
    "BIT_OR",
    "BIT_XOR",
    "CAST",
    "CEIL",
    "CEILING",
    "CHAR",
    "CHARACTER_LENGTH",
    "CHARSET",
    "CHAR_LENGTH",
    "CHR",
    "COALESCE",
    "COERCIBILITY",
    "COLLATION",
    "COLUMN_EXISTS",
    "COLUMN_GET",
    "COLUMN_JSON",
    "COLUMN_LIST",
    "COMPRESS",
    "CONCAT",
    "CONCAT_WS",
    "CONV",
    "CONVERT",
    "CONVERT_TZ",
    "COS",
    "COT",
    "COUNT",
    "CRC32",
    "CRC32C",
    "CUME_DIST",
    "CURDATE",
    "CURRENT_DATE",
    "CURRENT_ROLE",
    "CURRENT_TIME",
    "CURRENT_TIMESTAMP",
    "CURRENT_USER",
    "CURTIME",
    "DATABASE",
    "DATE",
    "DATEDIFF",
    "DATE_ADD",
    "DATE_FORMAT",
    "DATE_SUB",
    "DAY",
    "DAYNAME",
    "DAYOFMONTH",
    "DAYOFWEEK",
    "DAYOFYEAR",
    "DECODE_ORACLE",
    "DEFAULT",
    "DEGREES",
    "DENSE_RANK",
    "ELT",
    "EXP",
    "EXPORT_SET",
    "EXTRACT",
    "FIELD",
    "FIND_IN_SET",
    "FIRST_VALUE",
    "FLOOR",
    "FORMAT",
    "FROM_BASE64",
    "FROM_DAYS",
    "FROM_UNIXTIME",
    "GET_FORMAT",
    "GREATEST",
    "GROUP_CONCAT",
    "HEX",
    "HOUR",
    "IF",
    "IFNULL",
    "INET6_ATON",
    "INET6_NTOA",
    "INET_ATON",
    "INET_NTOA",
    "INSERT",
    "INSTR",
    "ISNULL",
    "IS_IPV4",
    "IS_IPV4_COMPAT",
    "IS_IPV4_MAPPED",
    "IS_IPV6",
    "JSON_ARRAY",
    "JSON_ARRAYAGG",
    "JSON_ARRAY_APPEND",
    "JSON_ARRAY_INSERT",
    "JSON_COMPACT",
    "JSON_CONTAINS",
    "JSON_CONTAINS_PATH",
    "JSON_DEPTH",
    "JSON_DETAILED",
    "JSON_EQUALS",
    "JSON_EXISTS",
    "JSON_EXTRACT",
    "JSON_INSERT",
    "JSON_KEYS",
    "JSON_LENGTH",
    "JSON_LOOSE",
    "JSON_MERGE",
    "JSON_MERGE_PATCH",
    "JSON_MERGE_PRESERVE",
    "JSON_NORMALIZE",
    "JSON_OBJECT",
    "JSON_OBJECTAGG",
    "JSON_OVERLAPS",
    "JSON_PRETTY",
    "JSON_QUERY",
    "JSON_QUOTE",
    "JSON_REMOVE",
    "JSON_REPLACE",
    "JSON_SEARCH",
    "JSON_SET",
    "JSON_TABLE",
    "JSON_TYPE",
    "JSON_UNQUOTE",
    "JSON_VALID",
    "JSON_VALUE",
    "LAG",
    "LAST_DAY",
    "LAST_VALUE",
    "LCASE",
    "LEAD",
    "LEAST",
    "LEFT",
    "LENGTH",
    "LENGTHB",
    "LN",
    "LOCALTIME",
    "LOCALTIMESTAMP",
    "LOCATE",
    "LOG",
    "LOG10",
    "LOG2",
    "LOWER",
    "LPAD",
    "LTRIM",
    "MAKEDATE",
    "MAKETIME",
    "MAKE_SET",
    "MATCH",
    "MAX",
    "MD5",
    "MEDIAN",
    "MICROSECOND",
    "MID",
    "MIN",
    "MINUTE",
    "MOD",
    "MONTH",
    "MONTHNAME",
    "NATURAL_SORT_KEY",
    "NOW",
    "NTH_VALUE",
    "NTILE",
    "NULLIF",
    "NVL",
    "NVL2",
    "OCT",
    "OCTET_LENGTH",
    "ORD",
    "PERCENTILE_CONT",
    "PERCENTILE_DISC",
    "PERCENT_RANK",
    "PERIOD_ADD",
    "PERIOD_DIFF",
    "PI",
    "POSITION",
    "POW",
    "POWER",
    "QUARTER",
    "QUOTE",
    "RADIANS",
    "RAND",
    "RANDOM_BYTES",
    "RANK",
    "REGEXP_INSTR",
    "REGEXP_REPLACE",
    "REGEXP_SUBSTR",
    "REPEAT",
    "REPLACE",
    "REVERSE",
    "RIGHT",
    "ROUND",
    "ROW_NUMBER",
    "RPAD",
    "RTRIM",
    "SCHEMA",
    "SECOND",
    "SEC_TO_TIME",
    "SESSION_USER",
    "SFORMAT",
    "SHA",
    "SHA1",
    "SHA2",
    "SIGN",
    "SIN",
    "SLEEP",
    "SOUNDEX",
    "SPACE",
    "SQRT",
    "STD",
    "STDDEV",
    "STDDEV_POP",
    "STDDEV_SAMP",
    "STRCMP",
    "STR_TO_DATE",
    "SUBDATE",
    "SUBSTR",
    "SUBSTRING",
    "SUBSTRING_INDEX",
    "SUBTIME",
    "SUM",
    "SYSDATE",
    "SYSTEM_USER",
    "SYS_GUID",
    "TAN",
    "TIME",
    "TIMEDIFF",
    "TIMESTAMP",
    "TIMESTAMPADD",
    "TIMESTAMPDIFF",
    "TIME_FORMAT",
    "TIME_TO_SEC",
    "TO_BASE64",
    "TO_CHAR",
    "TO_DAYS",
    "TO_SECONDS",
    "TRIM",
    "TRUNCATE",
    "UCASE",
    "UNCOMPRESS",
    "UNCOMPRESSED_LENGTH",
    "UNHEX",
    "UNIX_TIMESTAMP",
    "UPPER",
    "USER",
    "UTC_DATE",
    "UTC_TIME",
    "UTC_TIMESTAMP",
    "UUID",
    "UUID_SHORT",
    "VALUES",
    "VARIANCE",
    "VAR_POP",
    "VAR_SAMP",
    "VERSION",
    "WEEK",
    "WEEKDAY",
    "WEEKOFYEAR",
    "WEIGHT_STRING",
    "YEAR",
    "YEARWEEK",
];

/// Keywords and type names that a `(` may follow in a read without it being a call:
/// subqueries (`IN (`, `EXISTS (`, `FROM (`), window and index clauses (`OVER (`,
/// `USE INDEX (`, `PARTITION (`), `CAST(x AS DECIMAL(10,2))`, `JSON_TABLE(... COLUMNS (`.
/// Upper case, sorted by bytes.
const SYNTAX_BEFORE_PARENTHESIS: &[&str] = &[
    "ALL",
    "AND",
    "ANY",
    "AS",
    "BETWEEN",
    "BIGINT",
    "BINARY",
    "BIT",
    "BY",
    "CASE",
    "COLUMNS",
    "DATETIME",
    "DEC",
    "DECIMAL",
    "DISTINCT",
    "DISTINCTROW",
    "DIV",
    "DOUBLE",
    "ELSE",
    "EXCEPT",
    "EXISTS",
    "FIXED",
    "FLOAT",
    "FROM",
    "GROUP",
    "HAVING",
    "IN",
    "INDEX",
    "INT",
    "INTEGER",
    "INTERSECT",
    "INTERVAL",
    "JOIN",
    "KEY",
    "LIKE",
    "MEDIUMINT",
    "MINUS",
    "NCHAR",
    "NOT",
    "NUMERIC",
    "NVARCHAR",
    "OF",
    "ON",
    "OR",
    "OVER",
    "PARTITION",
    "REGEXP",
    "RLIKE",
    "ROW",
    "SELECT",
    "SMALLINT",
    "SOME",
    "STRAIGHT_JOIN",
    "THEN",
    "TINYINT",
    "TO",
    "UNION",
    "USING",
    "VARBINARY",
    "VARCHAR",
    "WHEN",
    "WHERE",
    "WITH",
    "XOR",
];

/// System variables whose value is the result of this session's last statements on the
/// master (or the master's own replication position): reading them on a replica is wrong.
const MASTER_SYSTEM_VARIABLES: &[&str] = &[
    "GTID_BINLOG_POS",
    "GTID_BINLOG_STATE",
    "GTID_CURRENT_POS",
    "GTID_SLAVE_POS",
    "IDENTITY",
    "INSERT_ID",
    "LAST_GTID",
    "LAST_INSERT_ID",
];

/// System variables that describe the previous statement wherever it ran.
const PREVIOUS_SYSTEM_VARIABLES: &[&str] = &["ERROR_COUNT", "WARNING_COUNT"];

/// Whether `name` is in `list` (upper case, sorted by bytes), ignoring ASCII case.
fn contains_ignoring_case(list: &[&str], name: &[u8]) -> bool {
    list.binary_search_by(|entry| {
        entry
            .bytes()
            .cmp(name.iter().map(|byte| byte.to_ascii_uppercase()))
    })
    .is_ok()
}

/// Whether a `(` right after the word `name` keeps a statement a read.
fn allowed_before_parenthesis(name: &[u8]) -> bool {
    contains_ignoring_case(READ_ONLY_FUNCTIONS, name)
        || contains_ignoring_case(SYNTAX_BEFORE_PARENTHESIS, name)
}

/// The keywords the classifier acts on; every other word is `Keyword::None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keyword {
    None,
    Alter,
    As,
    Backup,
    Begin,
    Call,
    Character,
    Charset,
    Consistent,
    Count,
    Create,
    Currval,
    Default,
    Delete,
    Do,
    Drop,
    Errors,
    Execute,
    Export,
    False,
    Flush,
    For,
    GetLock,
    Global,
    Grant,
    Handler,
    Insert,
    Into,
    Lastval,
    Limit,
    Load,
    Local,
    Lock,
    Locked,
    Names,
    Next,
    Nextval,
    Nowait,
    Null,
    Offset,
    Only,
    Password,
    Prepare,
    Previous,
    Read,
    Recursive,
    Rename,
    Replace,
    Revoke,
    Role,
    Select,
    Session,
    Set,
    Share,
    Show,
    Skip,
    Snapshot,
    SqlCalcFoundRows,
    Start,
    Statement,
    Temporary,
    Transaction,
    True,
    Truncate,
    Unlock,
    Update,
    Value,
    Warnings,
    With,
    Work,
    Write,
}

/// The keyword a word spells, ignoring ASCII case.
fn keyword(word: &[u8]) -> Keyword {
    const LONGEST: usize = 19; // SQL_CALC_FOUND_ROWS
    if word.len() < 2 || word.len() > LONGEST {
        return Keyword::None;
    }
    let mut buffer = [0u8; LONGEST];
    let upper = &mut buffer[..word.len()];
    upper.copy_from_slice(word);
    upper.make_ascii_uppercase();
    match &*upper {
        b"ALTER" => Keyword::Alter,
        b"AS" => Keyword::As,
        b"BACKUP" => Keyword::Backup,
        b"BEGIN" => Keyword::Begin,
        b"CALL" => Keyword::Call,
        b"CHARACTER" => Keyword::Character,
        b"CHARSET" => Keyword::Charset,
        b"CONSISTENT" => Keyword::Consistent,
        b"COUNT" => Keyword::Count,
        b"CREATE" => Keyword::Create,
        b"CURRVAL" => Keyword::Currval,
        b"DEFAULT" => Keyword::Default,
        b"DELETE" => Keyword::Delete,
        b"DO" => Keyword::Do,
        b"DROP" => Keyword::Drop,
        b"ERRORS" => Keyword::Errors,
        b"EXECUTE" => Keyword::Execute,
        b"EXPORT" => Keyword::Export,
        b"FALSE" => Keyword::False,
        b"FLUSH" => Keyword::Flush,
        b"FOR" => Keyword::For,
        b"GET_LOCK" => Keyword::GetLock,
        b"GLOBAL" => Keyword::Global,
        b"GRANT" => Keyword::Grant,
        b"HANDLER" => Keyword::Handler,
        b"INSERT" => Keyword::Insert,
        b"INTO" => Keyword::Into,
        b"LASTVAL" => Keyword::Lastval,
        b"LIMIT" => Keyword::Limit,
        b"LOAD" => Keyword::Load,
        b"LOCAL" => Keyword::Local,
        b"LOCK" => Keyword::Lock,
        b"LOCKED" => Keyword::Locked,
        b"NAMES" => Keyword::Names,
        b"NEXT" => Keyword::Next,
        b"NEXTVAL" => Keyword::Nextval,
        b"NOWAIT" => Keyword::Nowait,
        b"NULL" => Keyword::Null,
        b"OFFSET" => Keyword::Offset,
        b"ONLY" => Keyword::Only,
        b"PASSWORD" => Keyword::Password,
        b"PREPARE" => Keyword::Prepare,
        b"PREVIOUS" => Keyword::Previous,
        b"READ" => Keyword::Read,
        b"RECURSIVE" => Keyword::Recursive,
        b"RENAME" => Keyword::Rename,
        b"REPLACE" => Keyword::Replace,
        b"REVOKE" => Keyword::Revoke,
        b"ROLE" => Keyword::Role,
        b"SELECT" => Keyword::Select,
        b"SESSION" => Keyword::Session,
        b"SET" => Keyword::Set,
        b"SHARE" => Keyword::Share,
        b"SHOW" => Keyword::Show,
        b"SKIP" => Keyword::Skip,
        b"SNAPSHOT" => Keyword::Snapshot,
        b"SQL_CALC_FOUND_ROWS" => Keyword::SqlCalcFoundRows,
        b"START" => Keyword::Start,
        b"STATEMENT" => Keyword::Statement,
        b"TEMPORARY" => Keyword::Temporary,
        b"TRANSACTION" => Keyword::Transaction,
        b"TRUE" => Keyword::True,
        b"TRUNCATE" => Keyword::Truncate,
        b"UNLOCK" => Keyword::Unlock,
        b"UPDATE" => Keyword::Update,
        b"VALUE" => Keyword::Value,
        b"WARNINGS" => Keyword::Warnings,
        b"WITH" => Keyword::With,
        b"WORK" => Keyword::Work,
        b"WRITE" => Keyword::Write,
        _ => Keyword::None,
    }
}

/// How quoted strings end: MariaDB's default, or `NO_BACKSLASH_ESCAPES`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Escapes {
    /// `\x` escapes the next byte, and a doubled quote is a quote.
    Backslash,
    /// Only a doubled quote is a quote; a backslash is an ordinary byte.
    DoubledQuoteOnly,
}

/// Why the lexer stopped before the end of the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LexError {
    /// A quote, comment or executable comment is never closed: the server rejects the
    /// statement in which that happens.
    Unterminated,
    /// Inside an executable comment, a string or comment contains `*/`: whether the server
    /// ends the executable comment there depends on its version.
    Ambiguous,
}

/// What reading a system variable tells about where the statement may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SystemVariableUse {
    /// Anything else (`@@server_id`, `@@session.sql_mode`): fine on a replica.
    Plain,
    /// `@@last_insert_id` and the like, or a spelling the lexer does not follow.
    MasterOnly,
    /// `@@warning_count`, `@@error_count`.
    PreviousStatement,
}

/// One token of statement text.
#[derive(Debug, Clone, Copy)]
enum Token<'a> {
    /// An unquoted identifier or keyword.
    Word {
        text: &'a [u8],
        keyword: Keyword,
        /// Right after a `.`: a column, table or schema-qualified name, never a keyword.
        after_dot: bool,
    },
    /// A `` `quoted` `` identifier.
    QuotedIdentifier,
    /// A quoted string, including `x'..'`, `b'..'` and `n'..'`.
    Text {
        double_quoted: bool,
    },
    /// A number (or an identifier starting with a digit).
    Number,
    /// `@name`, `@'name'`.
    UserVariable,
    /// `@@name`, `@@global.name`.
    SystemVariable {
        global: bool,
        usage: SystemVariableUse,
    },
    /// `:=`
    Assign,
    Open,
    Close,
    Comma,
    Dot,
    Semicolon,
    Equals,
    Plus,
    Minus,
    Star,
    Other,
}

/// `BYTE_CLASS` bit: the byte may appear in an unquoted identifier.
const IDENTIFIER: u8 = 1;
/// `BYTE_CLASS` bit: the server skips the byte as whitespace.
const WHITESPACE: u8 = 2;

/// What each byte is to the lexer (one lookup instead of a chain of comparisons).
static BYTE_CLASS: [u8; 256] = {
    let mut classes = [0u8; 256];
    let mut byte = 0;
    while byte < 256 {
        let b = byte as u8;
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80 {
            classes[byte] = IDENTIFIER;
        }
        if matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c) {
            classes[byte] = WHITESPACE;
        }
        byte += 1;
    }
    classes
};

/// Bytes that may appear in an unquoted identifier.
fn is_identifier_byte(byte: u8) -> bool {
    BYTE_CLASS[usize::from(byte)] & IDENTIFIER != 0
}

/// How many bytes at the start of `bytes` are of `class`.
fn run_of(bytes: &[u8], class: u8) -> usize {
    bytes
        .iter()
        .position(|&byte| BYTE_CLASS[usize::from(byte)] & class == 0)
        .unwrap_or(bytes.len())
}

/// Whether `bytes` contain `*/`.
fn contains_comment_end(bytes: &[u8]) -> bool {
    bytes.windows(2).any(|pair| pair == b"*/")
}

/// The hint a comment's text spells, if any.
fn hint_in_comment(body: &[u8]) -> Option<Hint> {
    let body = body.trim_ascii();
    if body.eq_ignore_ascii_case(b"kohaproxy:master") {
        Some(Hint::Master)
    } else if body.eq_ignore_ascii_case(b"kohaproxy:replica") {
        Some(Hint::Replica)
    } else {
        None
    }
}

/// A single forward pass over statement text, yielding tokens and skipping whitespace and
/// comments (but not the content of executable comments, which is code).
struct Lexer<'a> {
    sql: &'a [u8],
    pos: usize,
    escapes: Escapes,
    /// How many executable comments (`/*! ... */`, `/*M! ... */`) are open.
    executable_depth: u32,
    /// The previous token was a `.`.
    after_dot: bool,
    hint: Option<Hint>,
    error: Option<LexError>,
    /// A backslash appeared inside a quoted string (so the other escape mode may read the
    /// text differently).
    backslash_in_quotes: bool,
}

impl<'a> Lexer<'a> {
    fn new(sql: &'a [u8], escapes: Escapes) -> Self {
        Lexer {
            sql,
            pos: 0,
            escapes,
            executable_depth: 0,
            after_dot: false,
            hint: None,
            error: None,
            backslash_in_quotes: false,
        }
    }

    fn peek(&self, ahead: usize) -> Option<u8> {
        self.sql.get(self.pos + ahead).copied()
    }

    /// The next token; `None` at the end of the text or after a lexing error.
    fn next(&mut self) -> Option<Token<'a>> {
        while self.error.is_none() {
            let Some(byte) = self.peek(0) else {
                if self.executable_depth > 0 {
                    self.error = Some(LexError::Unterminated);
                }
                return None;
            };
            match byte {
                b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c => {
                    self.pos += run_of(&self.sql[self.pos..], WHITESPACE);
                }
                b'#' => self.line_comment(self.pos + 1),
                // `--` starts a comment only before whitespace, a control byte or the end.
                b'-' if self.peek(1) == Some(b'-')
                    && self.peek(2).is_none_or(|next| next <= b' ' || next == 0x7f) =>
                {
                    self.line_comment(self.pos + 2)
                }
                b'/' if self.peek(1) == Some(b'*') => self.block_comment(),
                b'*' if self.executable_depth > 0 && self.peek(1) == Some(b'/') => {
                    self.pos += 2;
                    self.executable_depth -= 1;
                }
                _ => return self.token(byte),
            }
        }
        None
    }

    /// A comment from `body_start` to the end of the line (or a NUL byte, where the server
    /// also stops).
    fn line_comment(&mut self, body_start: usize) {
        let rest = self.sql.get(body_start..).unwrap_or_default();
        let length = rest
            .iter()
            .position(|&byte| byte == b'\n' || byte == 0)
            .unwrap_or(rest.len());
        let body = &rest[..length];
        if self.executable_depth > 0 && contains_comment_end(body) {
            self.error = Some(LexError::Ambiguous);
            return;
        }
        self.note_hint(body);
        self.pos = body_start + length;
    }

    /// `/* ... */` (a comment, optimizer hints included) or the start of an executable
    /// comment `/*! ... */`, `/*!50001 ... */`, `/*M! ... */`, `/*M!100301 ... */`.
    fn block_comment(&mut self) {
        let after_opening = self.pos + 2;
        let rest = self.sql.get(after_opening..).unwrap_or_default();
        let marker = match rest {
            [b'!', ..] => 1,
            // The server takes only `M`; a lower-case `m` is read as code too (the cautious
            // reading: more code, and strings in it may not hide a `*/`).
            [b'M' | b'm', b'!', ..] => 2,
            _ => 0,
        };
        if marker > 0 {
            // As the server does: a version is exactly 5 or 6 digits; the content is lexed
            // as code whatever the version says (more code is the cautious reading).
            let content = after_opening + marker;
            let digits = self
                .sql
                .get(content..)
                .unwrap_or_default()
                .iter()
                .take(6)
                .take_while(|byte| byte.is_ascii_digit())
                .count();
            self.pos = if digits >= 5 {
                content + digits
            } else {
                content
            };
            self.executable_depth += 1;
            return;
        }
        match rest.windows(2).position(|pair| pair == b"*/") {
            Some(end) => {
                self.note_hint(&rest[..end]);
                self.pos = after_opening + end + 2;
            }
            None => self.error = Some(LexError::Unterminated),
        }
    }

    fn note_hint(&mut self, body: &[u8]) {
        match hint_in_comment(body) {
            Some(Hint::Master) => self.hint = Some(Hint::Master),
            Some(Hint::Replica) if self.hint.is_none() => self.hint = Some(Hint::Replica),
            _ => {}
        }
    }

    fn token(&mut self, byte: u8) -> Option<Token<'a>> {
        let after_dot = std::mem::take(&mut self.after_dot);
        let start = self.pos;
        let token = match byte {
            b'\'' | b'"' => {
                self.quoted(byte)?;
                Token::Text {
                    double_quoted: byte == b'"',
                }
            }
            b'`' => {
                self.quoted(byte)?;
                Token::QuotedIdentifier
            }
            b'@' => {
                self.pos += 1;
                self.variable()?
            }
            b'0'..=b'9' => {
                self.number();
                Token::Number
            }
            b':' if self.peek(1) == Some(b'=') => {
                self.pos += 2;
                Token::Assign
            }
            _ if is_identifier_byte(byte) => return self.word(start, after_dot),
            _ => {
                self.pos += 1;
                match byte {
                    b'(' => Token::Open,
                    b')' => Token::Close,
                    b',' => Token::Comma,
                    b';' => Token::Semicolon,
                    b'=' => Token::Equals,
                    b'+' => Token::Plus,
                    b'-' => Token::Minus,
                    b'*' => Token::Star,
                    b'.' => {
                        self.after_dot = true;
                        Token::Dot
                    }
                    _ => Token::Other,
                }
            }
        };
        Some(token)
    }

    /// A quoted string or identifier starting at `self.pos` with `quote`.
    fn quoted(&mut self, quote: u8) -> Option<()> {
        let start = self.pos;
        let backslash_escapes = quote != b'`' && self.escapes == Escapes::Backslash;
        let mut end = start + 1;
        loop {
            let Some(&byte) = self.sql.get(end) else {
                self.error = Some(LexError::Unterminated);
                return None;
            };
            end += 1;
            if byte == quote {
                if self.sql.get(end) == Some(&quote) {
                    end += 1;
                    continue;
                }
                break;
            }
            if byte == b'\\' && quote != b'`' {
                self.backslash_in_quotes = true;
                if backslash_escapes {
                    end += 1;
                }
            }
        }
        if self.executable_depth > 0 && contains_comment_end(&self.sql[start..end]) {
            self.error = Some(LexError::Ambiguous);
            return None;
        }
        self.pos = end;
        Some(())
    }

    /// A variable; `self.pos` is just after its `@`.
    fn variable(&mut self) -> Option<Token<'a>> {
        match self.peek(0) {
            Some(b'@') => {
                self.pos += 1;
                Some(self.system_variable())
            }
            Some(quote @ (b'\'' | b'"' | b'`')) => {
                self.quoted(quote)?;
                Some(Token::UserVariable)
            }
            _ => {
                while self
                    .peek(0)
                    .is_some_and(|byte| is_identifier_byte(byte) || byte == b'.')
                {
                    self.pos += 1;
                }
                Some(Token::UserVariable)
            }
        }
    }

    /// A system variable; `self.pos` is just after its `@@`.
    fn system_variable(&mut self) -> Token<'a> {
        let mut scope: &[u8] = &[];
        let mut segments = 0;
        let name = loop {
            let start = self.pos;
            self.pos += run_of(&self.sql[start..], IDENTIFIER);
            let segment = &self.sql[start..self.pos];
            if segments == 0 {
                scope = segment;
            }
            segments += 1;
            if self.peek(0) == Some(b'.') {
                self.pos += 1;
            } else {
                break segment;
            }
        };
        // `@@session . name`, `` @@`name` ``, `@@session.` followed by a quote: spellings
        // whose real name the lexer does not see.
        let opaque = name.is_empty()
            || [&b"global"[..], b"session", b"local"]
                .iter()
                .any(|scope_word| name.eq_ignore_ascii_case(scope_word))
            || matches!(self.peek(0), Some(b'\'' | b'"' | b'`'));
        let global = opaque || (segments > 1 && scope.eq_ignore_ascii_case(b"global"));
        let usage = if opaque || contains_ignoring_case(MASTER_SYSTEM_VARIABLES, name) {
            SystemVariableUse::MasterOnly
        } else if contains_ignoring_case(PREVIOUS_SYSTEM_VARIABLES, name) {
            SystemVariableUse::PreviousStatement
        } else {
            SystemVariableUse::Plain
        };
        Token::SystemVariable { global, usage }
    }

    /// A number: digits with an optional fraction and exponent, or an identifier that
    /// starts with a digit (`0x1F`, `1e5`, `12abc`).
    fn number(&mut self) {
        let mut only_digits_and_dots = true;
        let mut end = self.pos;
        while let Some(&byte) = self.sql.get(end) {
            if byte.is_ascii_digit() || (byte == b'.' && only_digits_and_dots) {
                end += 1;
            } else if is_identifier_byte(byte) {
                if only_digits_and_dots
                    && (byte == b'e' || byte == b'E')
                    && matches!(self.sql.get(end + 1), Some(b'+' | b'-'))
                    && self.sql.get(end + 2).is_some_and(u8::is_ascii_digit)
                {
                    end += 2;
                }
                end += 1;
                only_digits_and_dots = false;
            } else {
                break;
            }
        }
        self.pos = end;
    }

    /// A word starting at `start`; `x'..'`, `b'..'` and `n'..'` are strings.
    fn word(&mut self, start: usize, after_dot: bool) -> Option<Token<'a>> {
        self.pos += run_of(&self.sql[self.pos..], IDENTIFIER);
        let text = &self.sql[start..self.pos];
        if let [prefix] = text {
            if matches!(prefix.to_ascii_lowercase(), b'x' | b'b' | b'n')
                && self.peek(0) == Some(b'\'')
            {
                self.quoted(b'\'')?;
                return Some(Token::Text {
                    double_quoted: false,
                });
            }
        }
        Some(Token::Word {
            text,
            keyword: keyword(text),
            after_dot,
        })
    }
}

/// The route a statement's shape allows, before what its tokens forbid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Candidate {
    /// SELECT, WITH ... SELECT, (SELECT ...): a read unless something in it says otherwise.
    Read,
    /// SHOW WARNINGS and the like.
    Previous,
    Master,
}

/// What a statement's shape says.
#[derive(Debug, Clone, Copy)]
struct Shape {
    candidate: Candidate,
    replay: bool,
    starts: Option<TransactionStart>,
}

impl Shape {
    const MASTER: Shape = Shape::candidate(Candidate::Master);

    const fn candidate(candidate: Candidate) -> Shape {
        Shape {
            candidate,
            replay: false,
            starts: None,
        }
    }
}

/// A token that may turn out to be a call, waiting for the token after it.
#[derive(Debug, Clone, Copy)]
struct Pending<'a> {
    /// `Some` for an unquoted word, `None` for a quoted identifier, a double-quoted string
    /// (an identifier under ANSI_QUOTES) or a number.
    word: Option<(&'a [u8], Keyword, bool)>,
    /// The keyword of the token before it.
    preceded_by: Keyword,
    /// The name of a common table expression: a `(` after it opens a column list.
    cte_name: bool,
}

/// How a statement read under one escape mode classified.
struct Outcome {
    /// `None` when the server would reject the text unrun (it is not lexable).
    class: Option<Class>,
    backslash_in_quotes: bool,
}

/// Statement forms nested inside another (`SET STATEMENT ... FOR <statement>`) at most.
const MAX_NESTING: u32 = 2;

/// The statement-level reader: asks the lexer for tokens, and notes in every token what
/// makes a statement unfit for a replica or pins the session.
struct Classifier<'a> {
    lexer: Lexer<'a>,
    /// Something forbids running this statement on a replica.
    master: bool,
    pin: bool,
    /// The statement reads `@@warning_count` or `@@error_count`.
    previous: bool,
    /// A token follows a `;`.
    multi_statement: bool,
    /// A `;` ended the statement.
    ended: bool,
    depth: u32,
    pending: Option<Pending<'a>>,
    /// The keyword of the last token (`Keyword::None` if it was not a keyword).
    last_keyword: Keyword,
    /// The next `:=` is a SET statement's assignment operator, not an expression.
    set_operator_expected: bool,
    nesting: u32,
}

impl<'a> Classifier<'a> {
    fn run(sql: &'a [u8], escapes: Escapes) -> Outcome {
        let mut classifier = Classifier {
            lexer: Lexer::new(sql, escapes),
            master: false,
            pin: false,
            previous: false,
            multi_statement: false,
            ended: false,
            depth: 0,
            pending: None,
            last_keyword: Keyword::None,
            set_operator_expected: false,
            nesting: 0,
        };
        let shape = classifier.statement();
        // Whatever follows the first statement (comments only, or another statement).
        while let Some(token) = classifier.lexer.next() {
            classifier.observe(Some(token));
        }
        classifier.observe(None);
        let hint = classifier.lexer.hint;
        let master_and_pinned = Class {
            route: Route::Master,
            pin: true,
            replay: false,
            starts: None,
            hint,
        };
        let class = match classifier.lexer.error {
            Some(LexError::Ambiguous) => Some(master_and_pinned),
            // Unterminated after a `;`: the statements before it may have run.
            Some(LexError::Unterminated) if classifier.ended => Some(master_and_pinned),
            Some(LexError::Unterminated) => None,
            None if classifier.multi_statement => Some(master_and_pinned),
            None => Some(classifier.class(shape, hint)),
        };
        Outcome {
            class,
            backslash_in_quotes: classifier.lexer.backslash_in_quotes,
        }
    }

    fn class(&self, shape: Shape, hint: Option<Hint>) -> Class {
        let route = match shape.candidate {
            _ if self.master => Route::Master,
            Candidate::Master => Route::Master,
            Candidate::Previous => Route::Previous,
            Candidate::Read if self.previous => Route::Previous,
            Candidate::Read => Route::Read,
        };
        Class {
            route,
            pin: self.pin,
            replay: shape.replay,
            starts: shape.starts,
            hint,
        }
    }

    /// The next token of the current statement (`None` at its `;` or at the end).
    fn next(&mut self) -> Option<Token<'a>> {
        if self.ended {
            return None;
        }
        let token = self.lexer.next();
        self.observe(token);
        match token {
            Some(Token::Semicolon) => {
                self.ended = true;
                None
            }
            other => other,
        }
    }

    /// Consumes the rest of the current statement.
    fn drain(&mut self) {
        while self.next().is_some() {}
    }

    /// Consumes the rest of the current statement; pins the session if one of `keywords`
    /// appears in it.
    fn drain_pinning_on(&mut self, keywords: &[Keyword]) {
        while let Some(token) = self.next() {
            if let Token::Word {
                keyword,
                after_dot: false,
                ..
            } = token
            {
                if keywords.contains(&keyword) {
                    self.pin = true;
                }
            }
        }
    }

    /// Notes what one token (or the end, `None`) says, whatever the statement.
    fn observe(&mut self, token: Option<Token<'a>>) {
        if let Some(pending) = self.pending.take() {
            self.judge(pending, token);
        }
        let Some(token) = token else {
            return;
        };
        if self.ended {
            self.multi_statement = true;
        }
        let preceded_by = self.last_keyword;
        self.last_keyword = Keyword::None;
        match token {
            Token::Open => self.depth += 1,
            Token::Close => self.depth = self.depth.saturating_sub(1),
            Token::Assign if !self.set_operator_expected => {
                // `@x := ...`: a user variable assigned from a query cannot be replayed.
                self.master = true;
                self.pin = true;
            }
            Token::SystemVariable { usage, .. } => match usage {
                SystemVariableUse::MasterOnly => self.master = true,
                SystemVariableUse::PreviousStatement => self.previous = true,
                SystemVariableUse::Plain => {}
            },
            Token::Word {
                text,
                keyword,
                after_dot,
            } => {
                if !after_dot {
                    self.last_keyword = keyword;
                }
                self.pending = Some(Pending {
                    word: Some((text, keyword, after_dot)),
                    preceded_by,
                    cte_name: false,
                });
            }
            Token::QuotedIdentifier
            | Token::Text {
                double_quoted: true,
            }
            | Token::Number => {
                self.pending = Some(Pending {
                    word: None,
                    preceded_by,
                    cte_name: false,
                });
            }
            _ => {}
        }
    }

    /// Decides about a word (or name) now that the token after it (`next`) is known.
    fn judge(&mut self, pending: Pending<'a>, next: Option<Token<'a>>) {
        let next_is_open = matches!(next, Some(Token::Open));
        let next_keyword = match next {
            Some(Token::Word {
                keyword,
                after_dot: false,
                ..
            }) => keyword,
            _ => Keyword::None,
        };
        let Some((text, keyword, after_dot)) = pending.word else {
            // `` `name`( ``, `"name"(`, `1abc(`: a stored or user-defined function.
            if next_is_open && !pending.cte_name {
                self.master = true;
            }
            return;
        };
        if after_dot {
            // `schema.function(` is a stored function; `sequence.nextval` (Oracle mode)
            // advances a sequence.
            if next_is_open
                || matches!(
                    keyword,
                    Keyword::Nextval | Keyword::Currval | Keyword::Lastval
                )
            {
                self.master = true;
            }
            return;
        }
        if next_is_open && !pending.cte_name {
            if keyword == Keyword::GetLock {
                self.pin = true;
            }
            if !allowed_before_parenthesis(text) {
                self.master = true;
            }
            return;
        }
        match keyword {
            Keyword::Insert
            | Keyword::Update
            | Keyword::Delete
            | Keyword::Replace
            | Keyword::Create
            | Keyword::Alter
            | Keyword::Drop
            | Keyword::Truncate
            | Keyword::Rename
            | Keyword::Grant
            | Keyword::Revoke
            | Keyword::Load
            | Keyword::Call
            | Keyword::Do
            | Keyword::Handler
            | Keyword::Lock
            | Keyword::Unlock
            | Keyword::Nowait => self.master = true,
            // `CAST(x AS CHAR CHARACTER SET utf8mb4)` is not a SET statement.
            Keyword::Set if pending.preceded_by != Keyword::Character => self.master = true,
            Keyword::Into => {
                self.master = true;
                if matches!(next, Some(Token::UserVariable)) {
                    self.pin = true;
                }
            }
            Keyword::SqlCalcFoundRows => {
                self.master = true;
                self.pin = true;
            }
            Keyword::Next | Keyword::Previous if next_keyword == Keyword::Value => {
                self.master = true
            }
            Keyword::Skip if next_keyword == Keyword::Locked => self.master = true,
            Keyword::For if matches!(next_keyword, Keyword::Share | Keyword::Update) => {
                self.master = true
            }
            _ => {}
        }
    }

    /// Reads one statement (up to its `;` or the end) and says what its shape allows.
    fn statement(&mut self) -> Shape {
        let mut parenthesized = false;
        let first = loop {
            match self.next() {
                Some(Token::Open) => parenthesized = true,
                Some(Token::Word { keyword, .. }) => break keyword,
                _ => {
                    self.drain();
                    return Shape::MASTER;
                }
            }
        };
        let shape = match first {
            Keyword::Select => Shape::candidate(Candidate::Read),
            Keyword::With => {
                self.with_clause();
                Shape::candidate(Candidate::Read)
            }
            _ if parenthesized => Shape::MASTER,
            Keyword::Show => Shape::candidate(self.show()),
            Keyword::Set => self.set_statement(),
            Keyword::Start => Shape {
                starts: self.start_transaction(),
                ..Shape::MASTER
            },
            Keyword::Begin => Shape {
                starts: self.begin(),
                ..Shape::MASTER
            },
            Keyword::Create => {
                self.drain_pinning_on(&[Keyword::Temporary]);
                Shape::MASTER
            }
            // FLUSH TABLES WITH READ LOCK, FLUSH TABLES t FOR EXPORT.
            Keyword::Flush => {
                self.drain_pinning_on(&[Keyword::Lock, Keyword::Export]);
                Shape::MASTER
            }
            // Table locks, HANDLER cursors, SQL-level prepared statements (and EXECUTE
            // IMMEDIATE), BACKUP LOCK / BACKUP STAGE, and stored procedures (which may do
            // any of these) all live in the master session.
            Keyword::Lock
            | Keyword::Handler
            | Keyword::Prepare
            | Keyword::Execute
            | Keyword::Backup
            | Keyword::Call => {
                self.pin = true;
                Shape::MASTER
            }
            _ => Shape::MASTER,
        };
        self.drain();
        shape
    }

    /// `WITH [RECURSIVE] name [(columns)] AS (...) [, ...]` up to the main statement, which
    /// must be a SELECT.
    fn with_clause(&mut self) {
        let base = self.depth;
        let mut token = self.next();
        if matches!(
            token,
            Some(Token::Word {
                keyword: Keyword::Recursive,
                ..
            })
        ) {
            token = self.next();
        }
        loop {
            if !matches!(token, Some(Token::Word { .. } | Token::QuotedIdentifier)) {
                self.master = true;
                return;
            }
            if let Some(pending) = &mut self.pending {
                pending.cte_name = true;
            }
            token = self.next();
            if matches!(token, Some(Token::Open)) {
                if !self.skip_to_depth(base) {
                    return;
                }
                token = self.next();
            }
            let as_keyword = matches!(
                token,
                Some(Token::Word {
                    keyword: Keyword::As,
                    ..
                })
            );
            if !as_keyword || !matches!(self.next(), Some(Token::Open)) {
                self.master = true;
                return;
            }
            if !self.skip_to_depth(base) {
                return;
            }
            match self.next() {
                Some(Token::Comma) => token = self.next(),
                Some(Token::Open)
                | Some(Token::Word {
                    keyword: Keyword::Select,
                    ..
                }) => return,
                _ => {
                    self.master = true;
                    return;
                }
            }
        }
    }

    /// Consumes tokens until a `)` brings the depth back to `base`; false (and Master) if
    /// the statement ends first.
    fn skip_to_depth(&mut self, base: u32) -> bool {
        loop {
            match self.next() {
                Some(Token::Close) if self.depth == base => return true,
                Some(_) => {}
                None => {
                    self.master = true;
                    return false;
                }
            }
        }
    }

    /// `SHOW WARNINGS|ERRORS [LIMIT ...]`, `SHOW COUNT(*) WARNINGS|ERRORS`: Previous;
    /// every other SHOW: Master.
    fn show(&mut self) -> Candidate {
        let warnings_or_errors = |token: Option<Token>| {
            matches!(
                token,
                Some(Token::Word {
                    keyword: Keyword::Warnings | Keyword::Errors,
                    ..
                })
            )
        };
        let shape_fits = match self.next() {
            token if warnings_or_errors(token) => match self.next() {
                None => true,
                Some(Token::Word {
                    keyword: Keyword::Limit,
                    ..
                }) => {
                    let mut any = false;
                    loop {
                        match self.next() {
                            None => break any,
                            Some(
                                Token::Number
                                | Token::Comma
                                | Token::Word {
                                    keyword: Keyword::Offset,
                                    ..
                                },
                            ) => any = true,
                            Some(_) => break false,
                        }
                    }
                }
                Some(_) => false,
            },
            Some(Token::Word {
                keyword: Keyword::Count,
                ..
            }) => {
                matches!(self.next(), Some(Token::Open))
                    && matches!(self.next(), Some(Token::Star))
                    && matches!(self.next(), Some(Token::Close))
                    && warnings_or_errors(self.next())
                    && self.next().is_none()
            }
            _ => false,
        };
        if shape_fits {
            Candidate::Previous
        } else {
            Candidate::Master
        }
    }

    /// `START TRANSACTION [READ ONLY | READ WRITE | WITH CONSISTENT SNAPSHOT] [, ...]`:
    /// which kind of transaction it starts (`None` for other `START` statements).
    fn start_transaction(&mut self) -> Option<TransactionStart> {
        if !matches!(
            self.next(),
            Some(Token::Word {
                keyword: Keyword::Transaction,
                ..
            })
        ) {
            return None;
        }
        Some(if self.read_only_characteristics() {
            TransactionStart::ReadOnly
        } else {
            TransactionStart::ReadWrite
        })
    }

    /// `BEGIN` or `BEGIN WORK` starts a transaction; `BEGIN NOT ATOMIC` (a compound
    /// statement) does not.
    fn begin(&mut self) -> Option<TransactionStart> {
        match self.next() {
            None => Some(TransactionStart::ReadWrite),
            Some(Token::Word {
                keyword: Keyword::Work,
                ..
            }) if self.next().is_none() => Some(TransactionStart::ReadWrite),
            Some(_) => None,
        }
    }

    /// The characteristics after `START TRANSACTION`: whether they make it read-only
    /// (and are well formed).
    fn read_only_characteristics(&mut self) -> bool {
        let mut read_only = false;
        let mut read_write = false;
        let mut expect_characteristic = true;
        while let Some(token) = self.next() {
            let Token::Word { keyword, .. } = token else {
                if matches!(token, Token::Comma) && !expect_characteristic {
                    expect_characteristic = true;
                    continue;
                }
                return false;
            };
            if !expect_characteristic {
                return false;
            }
            expect_characteristic = false;
            let second = match self.next() {
                Some(Token::Word { keyword, .. }) => keyword,
                _ => return false,
            };
            match (keyword, second) {
                (Keyword::Read, Keyword::Only) => read_only = true,
                (Keyword::Read, Keyword::Write) => read_write = true,
                (Keyword::With, Keyword::Consistent) => {
                    if !matches!(
                        self.next(),
                        Some(Token::Word {
                            keyword: Keyword::Snapshot,
                            ..
                        })
                    ) {
                        return false;
                    }
                }
                _ => return false,
            }
        }
        read_only && !read_write && !expect_characteristic
    }

    /// `SET ...`: replayable when it assigns user variables, all from literals, and
    /// nothing else in it is more than a literal or a word; pins the session when it
    /// assigns user variables otherwise.
    fn set_statement(&mut self) -> Shape {
        let base = self.depth;
        let mut token = self.next();
        match token {
            // SET STATEMENT var = value [, ...] FOR <statement>: the statement decides.
            Some(Token::Word {
                keyword: Keyword::Statement,
                ..
            }) => {
                while let Some(token) = self.next() {
                    if self.depth == base
                        && matches!(
                            token,
                            Token::Word {
                                keyword: Keyword::For,
                                after_dot: false,
                                ..
                            }
                        )
                    {
                        self.nested_statement();
                        break;
                    }
                }
                return Shape::MASTER;
            }
            Some(Token::Word {
                keyword: Keyword::Transaction | Keyword::Password | Keyword::Default,
                ..
            }) => return Shape::MASTER,
            // Roles are session state the proxy does not replay.
            Some(Token::Word {
                keyword: Keyword::Role,
                ..
            }) => {
                self.pin = true;
                return Shape::MASTER;
            }
            _ => {}
        }
        let mut user_assigned = false;
        let mut replayable = true;
        loop {
            if let Some(Token::Word {
                keyword: scope @ (Keyword::Global | Keyword::Session | Keyword::Local),
                ..
            }) = token
            {
                // Replaying SET GLOBAL on a replica would change the replica.
                if scope == Keyword::Global {
                    replayable = false;
                }
                token = self.next();
                if matches!(
                    token,
                    Some(Token::Word {
                        keyword: Keyword::Transaction,
                        ..
                    })
                ) {
                    return Shape::MASTER;
                }
            }
            let mut user_variable = false;
            let (value, more) = match token {
                Some(Token::Word {
                    keyword: Keyword::Names | Keyword::Charset,
                    ..
                }) => self.charset_clause(base),
                Some(Token::Word {
                    keyword: Keyword::Character,
                    ..
                }) => {
                    if matches!(
                        self.next(),
                        Some(Token::Word {
                            keyword: Keyword::Set,
                            ..
                        })
                    ) {
                        self.charset_clause(base)
                    } else {
                        (Value::Complex, self.skip_to_comma(base))
                    }
                }
                Some(Token::UserVariable) => {
                    user_variable = true;
                    self.assignment(base)
                }
                Some(Token::SystemVariable { global, usage }) => {
                    if global || usage != SystemVariableUse::Plain {
                        replayable = false;
                    }
                    self.assignment(base)
                }
                Some(Token::Word {
                    after_dot: false, ..
                }) => self.assignment(base),
                _ => (Value::Complex, self.skip_to_comma(base)),
            };
            if user_variable {
                user_assigned = true;
                if value != Value::Literal {
                    replayable = false;
                }
            } else if !matches!(value, Value::Literal | Value::Word) {
                replayable = false;
            }
            if !more {
                break;
            }
            token = self.next();
        }
        let replay = user_assigned && replayable;
        if user_assigned && !replayable {
            self.pin = true;
        }
        Shape {
            replay,
            ..Shape::MASTER
        }
    }

    /// The statement after `SET STATEMENT ... FOR`: its pins count.
    fn nested_statement(&mut self) {
        if self.nesting >= MAX_NESTING {
            self.pin = true;
            return;
        }
        self.nesting += 1;
        self.statement();
        self.nesting -= 1;
    }

    /// After a SET target: the rest of its name, `=` or `:=`, and the value. Returns the
    /// value's kind and whether a `,` (another assignment) follows.
    fn assignment(&mut self, base: u32) -> (Value, bool) {
        loop {
            self.set_operator_expected = true;
            let token = self.next();
            self.set_operator_expected = false;
            match token {
                // A structured variable: `SET hot_cache.key_buffer_size = ...`.
                Some(Token::Dot | Token::Word { .. }) => {}
                Some(Token::Equals | Token::Assign) => break,
                Some(Token::Comma) if self.depth == base => return (Value::Complex, true),
                None => return (Value::Complex, false),
                Some(_) => return (Value::Complex, self.skip_to_comma(base)),
            }
        }
        let mut value = Value::Empty;
        let more = self.for_each_to_comma(base, |token| value = value.then(token));
        (value, more)
    }

    /// `NAMES x [COLLATE y]`, `CHARACTER SET x`: a word if it is only words and strings.
    fn charset_clause(&mut self, base: u32) -> (Value, bool) {
        let mut simple = true;
        let more = self.for_each_to_comma(base, |token| {
            if !matches!(
                token,
                Token::Word {
                    after_dot: false,
                    ..
                } | Token::Text { .. }
            ) {
                simple = false;
            }
        });
        (if simple { Value::Word } else { Value::Complex }, more)
    }

    fn skip_to_comma(&mut self, base: u32) -> bool {
        self.for_each_to_comma(base, |_| {})
    }

    /// Feeds `each` the tokens up to a `,` at depth `base` (true) or the statement's end
    /// (false).
    fn for_each_to_comma(&mut self, base: u32, mut each: impl FnMut(Token<'a>)) -> bool {
        loop {
            match self.next() {
                None => return false,
                Some(Token::Comma) if self.depth == base => return true,
                Some(token) => each(token),
            }
        }
    }
}

/// What the tokens of a SET value amount to, read one at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Value {
    /// Nothing yet.
    Empty,
    /// Signs so far.
    Sign,
    /// `_utf8mb4` so far.
    Introducer,
    /// A number, string, NULL, TRUE or FALSE.
    Literal,
    /// One word (`ON`, `DEFAULT`, `utf8mb4`).
    Word,
    /// Anything else.
    Complex,
}

impl Value {
    fn then(self, token: Token) -> Value {
        match (self, token) {
            (Value::Empty | Value::Sign, Token::Plus | Token::Minus) => Value::Sign,
            (Value::Empty | Value::Sign, Token::Number) => Value::Literal,
            (Value::Empty | Value::Introducer, Token::Text { .. }) => Value::Literal,
            (
                Value::Empty,
                Token::Word {
                    keyword: Keyword::Null | Keyword::True | Keyword::False,
                    after_dot: false,
                    ..
                },
            ) => Value::Literal,
            (
                Value::Empty,
                Token::Word {
                    text,
                    after_dot: false,
                    ..
                },
            ) => {
                if text.starts_with(b"_") {
                    Value::Introducer
                } else {
                    Value::Word
                }
            }
            _ => Value::Complex,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const READ: Class = Class {
        route: Route::Read,
        pin: false,
        replay: false,
        starts: None,
        hint: None,
    };
    const PREVIOUS: Class = Class {
        route: Route::Previous,
        ..READ
    };
    const MASTER_ONLY: Class = MASTER;
    const PINNED: Class = Class {
        pin: true,
        ..MASTER
    };
    const REPLAYED: Class = Class {
        replay: true,
        ..MASTER
    };
    const BEGINS: Class = Class {
        starts: Some(TransactionStart::ReadWrite),
        ..MASTER
    };
    const READ_ONLY_TRANSACTION: Class = Class {
        starts: Some(TransactionStart::ReadOnly),
        ..MASTER
    };

    const fn hinted(class: Class, hint: Hint) -> Class {
        Class {
            hint: Some(hint),
            ..class
        }
    }

    /// Statements and what they must classify as.
    const CASES: &[(&str, Class)] = &[
        // Plain reads, with whitespace, comments and case variants around them.
        ("SELECT 1", READ),
        ("select 1", READ),
        ("SeLeCt 1", READ),
        (" \t\r\n\x0b\x0cSELECT\t1\r\n", READ),
        ("SELECT 1;", READ),
        ("SELECT 1 ;  \n", READ),
        ("SELECT 1; -- done", READ),
        ("SELECT 1; /* done */ ", READ),
        ("SELECT 1;# done", READ),
        ("SELECT 1;\n-- done\n/* really */", READ),
        ("/* leading */ SELECT 1", READ),
        ("/* one */ /* two */\n-- three\n# four\nSELECT 1", READ),
        ("-- leading\nSELECT 1", READ),
        ("--\tleading\nSELECT 1", READ),
        ("# leading\nSELECT 1", READ),
        ("SELECT/**/1", READ),
        ("SELECT /*+ NO_RANGE_OPTIMIZATION(t) */ * FROM t", READ),
        ("(SELECT 1)", READ),
        ("((SELECT 1))", READ),
        ("( /* c */ SELECT a FROM t) ORDER BY a", READ),
        ("(SELECT 1) UNION (SELECT 2)", READ),
        ("SELECT 1 UNION ALL SELECT 2 UNION (SELECT 3)", READ),
        ("SELECT a FROM t EXCEPT (SELECT a FROM u) INTERSECT SELECT 1", READ),
        // Common table expressions.
        ("WITH x AS (SELECT 1) SELECT * FROM x", READ),
        ("with x as (select 1) select * from x;", READ),
        (
            "WITH RECURSIVE seq (n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < 10) SELECT n FROM seq",
            READ,
        ),
        ("WITH a AS (SELECT 1 AS v), b (w) AS (SELECT v FROM a) SELECT * FROM b", READ),
        ("WITH `x` AS (SELECT 1) (SELECT * FROM `x`)", READ),
        ("(WITH x AS (SELECT 1) SELECT * FROM x)", READ),
        // Keyword-like names that are not keywords.
        ("SELECT `update` FROM t", READ),
        ("SELECT `delete`, `insert`, `set` FROM `lock`", READ),
        ("SELECT t.delete FROM t", READ),
        ("SELECT t.`insert`, t.set, t . update FROM t", READ),
        ("SELECT value FROM systempreferences WHERE variable = 'version'", READ),
        // Keywords inside strings and comments.
        ("SELECT 'FOR UPDATE' FROM t", READ),
        ("SELECT 'a;b' FROM t", READ),
        ("SELECT 'x'; ", READ),
        ("SELECT \"INSERT INTO t VALUES (1)\" AS q", READ),
        ("SELECT 'it''s', 'a\\'b', \"say \\\"hi\\\"\", \"\"\"\"", READ),
        ("SELECT '*/' FROM t", READ),
        ("SELECT '/*' FROM t WHERE a = '-- x' OR b = '#'", READ),
        ("SELECT 1 -- FOR UPDATE", READ),
        ("SELECT 1 # FOR UPDATE\n", READ),
        ("SELECT 1 /* FOR UPDATE; DELETE FROM t */", READ),
        ("SELECT 1 /* INTO @a */ FROM t", READ),
        ("SELECT 1--1", READ),
        ("SELECT 1 --x", READ),
        ("SELECT 1 ---1", READ),
        ("SELECT a FROM t WHERE b = 'a\\\\' AND c = 1", READ),
        ("SELECT surname FROM borrowers WHERE surname = 'O\\'Brien'", READ),
        ("SELECT surname FROM borrowers WHERE surname = 'O''Brien'", READ),
        ("SELECT `we``ird` FROM t", READ),
        ("SELECT 1 /*!50000 + 1 */", READ),
        ("SELECT 1 /*M!100301 + 1 */", READ),
        ("SELECT 1 /*!+ 1 */ FROM t", READ),
        ("SELECT 1 /*! /* nested */ + 1 */", READ),
        // Functions from the allowlist, and syntax followed by a parenthesis.
        ("SELECT COUNT(*) FROM issues WHERE borrowernumber = 42", READ),
        ("SELECT count (*) FROM t", READ),
        ("SELECT COUNT/* x */(*) FROM t", READ),
        ("SELECT CONCAT(firstname, ' ', surname) FROM borrowers", READ),
        ("SELECT INSERT('abc', 1, 1, 'x')", READ),
        ("SELECT REPLACE(title, 'a', 'b') FROM biblio", READ),
        ("SELECT TRUNCATE(1.55, 1), MOD(7, 2), 7 DIV 2", READ),
        ("SELECT DATE_FORMAT(NOW(), '%Y'), CURDATE(), UNIX_TIMESTAMP()", READ),
        ("SELECT IF(a > 1, 'x', 'y'), IFNULL(b, 0), COALESCE(c, d) FROM t", READ),
        ("SELECT LEFT(a, 2), RIGHT(a, 2) FROM t LEFT JOIN u ON (t.id = u.id)", READ),
        ("SELECT UUID(), RAND(), SLEEP(0), MD5('x'), SHA2('x', 256)", READ),
        ("SELECT VERSION(), DATABASE(), USER(), CURRENT_USER", READ),
        ("SELECT JSON_EXTRACT(j, '$.a'), JSON_SET(j, '$.b', 1) FROM t", READ),
        (
            "SELECT * FROM JSON_TABLE('[1]', '$[*]' COLUMNS (v INT PATH '$', s VARCHAR(10) PATH '$')) AS jt",
            READ,
        ),
        ("SELECT * FROM t WHERE id IN (SELECT id FROM u)", READ),
        ("SELECT * FROM t WHERE EXISTS (SELECT 1 FROM u WHERE u.id = t.id)", READ),
        ("SELECT * FROM t WHERE a = ANY (SELECT b FROM u) OR a = ALL (SELECT 1)", READ),
        ("SELECT * FROM t WHERE (a, b) IN ((1, 2), (3, 4))", READ),
        ("SELECT * FROM t USE INDEX (idx) WHERE a = 1", READ),
        ("SELECT * FROM t FORCE INDEX FOR ORDER BY (idx) IGNORE KEY (k) ORDER BY a", READ),
        ("SELECT * FROM t PARTITION (p0)", READ),
        ("SELECT ROW_NUMBER() OVER (PARTITION BY a ORDER BY b) FROM t", READ),
        ("SELECT a FROM t WINDOW w AS (ORDER BY a)", READ),
        ("SELECT PERCENTILE_CONT(0.5) WITHIN GROUP (ORDER BY a) OVER () FROM t", READ),
        ("SELECT CAST(price AS DECIMAL(10,2)), CONVERT(title USING utf8mb4) FROM t", READ),
        ("SELECT CAST(x AS CHAR(10) CHARACTER SET utf8mb4) FROM t", READ),
        ("SELECT CONVERT(x, DATETIME(6)), BINARY(x) FROM t", READ),
        ("SELECT a FROM t1 JOIN t2 USING (id) LEFT JOIN (t3) ON (t3.id = t1.id)", READ),
        ("SELECT DATE_ADD(d, INTERVAL 1 DAY) FROM t WHERE d > NOW() - INTERVAL (3) DAY", READ),
        ("SELECT MATCH (title) AGAINST ('koha' IN BOOLEAN MODE) FROM biblio", READ),
        ("SELECT SUBSTRING(x FROM 2 FOR 3), TRIM(LEADING 'x' FROM y) FROM t", READ),
        ("SELECT * FROM t FOR SYSTEM_TIME AS OF TIMESTAMP '2024-01-01 00:00:00'", READ),
        ("SELECT * FROM (VALUES (1), (2)) AS v", READ),
        ("SELECT GROUP_CONCAT(DISTINCT a ORDER BY a SEPARATOR ',') FROM t GROUP BY b", READ),
        ("SELECT DISTINCT(a) FROM t", READ),
        ("SELECT a, CASE WHEN (b > 1) THEN (c) ELSE (d) END FROM t", READ),
        ("SELECT a FROM t WHERE b BETWEEN (1) AND (2) OR NOT (c) XOR (d)", READ),
        ("SELECT a FROM t GROUP BY (a) HAVING (COUNT(*) > 1)", READ),
        ("SELECT 1 FROM t1 STRAIGHT_JOIN t2 WHERE a LIKE ('x%') AND b REGEXP ('^a')", READ),
        ("SELECT a FROM t WHERE b = 'x' LIMIT 10 OFFSET 20", READ),
        ("SELECT SQL_NO_CACHE HIGH_PRIORITY a FROM t", READ),
        ("SELECT x'4142', b'01', 0x41, N'x', _utf8mb4'x' COLLATE utf8mb4_bin", READ),
        ("SELECT 1.5e-3, .5, 1e10, 3-2, -1", READ),
        ("SELECT 1 FROM DUAL WHERE 1 = 0", READ),
        // Variables.
        ("SELECT @x", READ),
        ("SELECT * FROM t WHERE a = @x AND b = @`y` AND c = @'z'", READ),
        ("SELECT @@server_id, @@session.sql_mode, @@global.read_only, @@SQL_MODE", READ),
        ("SELECT @@warning_count", PREVIOUS),
        ("select @@WARNING_COUNT;", PREVIOUS),
        ("SELECT @@session.error_count, @@warning_count", PREVIOUS),
        // Hints.
        ("SELECT 1 /* kohaproxy:replica */", hinted(READ, Hint::Replica)),
        ("/* KohaProxy:Master */ SELECT 1", hinted(READ, Hint::Master)),
        ("/*kohaproxy:master*/SELECT 1", hinted(READ, Hint::Master)),
        ("SELECT 1 -- kohaproxy:replica", hinted(READ, Hint::Replica)),
        ("SELECT 1 # kohaproxy:master\n", hinted(READ, Hint::Master)),
        ("SELECT 1; /* kohaproxy:replica */", hinted(READ, Hint::Replica)),
        (
            "/* kohaproxy:replica */ SELECT 1 /* kohaproxy:master */",
            hinted(READ, Hint::Master),
        ),
        ("SELECT 1 /* kohaproxy:replicas */", READ),
        ("SELECT 1 /*+ kohaproxy:master */", READ),
        ("SELECT 1 /* kohaproxy: master */", READ),
        ("SELECT 'kohaproxy:master'", READ),
        ("SELECT 1 FROM t FOR UPDATE /* kohaproxy:replica */", hinted(MASTER_ONLY, Hint::Replica)),
        ("INSERT INTO t VALUES (1) -- kohaproxy:replica", hinted(MASTER_ONLY, Hint::Replica)),
        ("SET @a = 1 /* kohaproxy:master */", hinted(REPLAYED, Hint::Master)),
        // Locking reads, including ones hidden in executable comments and subqueries.
        ("SELECT * FROM t FOR UPDATE", MASTER_ONLY),
        ("select * from t for update nowait", MASTER_ONLY),
        ("SELECT * FROM t FOR UPDATE WAIT 5", MASTER_ONLY),
        ("SELECT * FROM t FOR UPDATE SKIP LOCKED", MASTER_ONLY),
        ("SELECT * FROM t LOCK IN SHARE MODE", MASTER_ONLY),
        ("SELECT * FROM t FOR SHARE", MASTER_ONLY),
        ("SELECT * FROM t WHERE a IN (SELECT b FROM u FOR UPDATE)", MASTER_ONLY),
        ("SELECT * FROM t WHERE a = 1 /*!50000 FOR UPDATE */", MASTER_ONLY),
        ("SELECT 1 /*!FOR UPDATE*/", MASTER_ONLY),
        ("SELECT 1 /*M!100301 FOR UPDATE */", MASTER_ONLY),
        ("SELECT 1 /*M! LOCK IN SHARE MODE */", MASTER_ONLY),
        ("SELECT 1 /*m!100301 FOR UPDATE */", MASTER_ONLY),
        ("SELECT 1 /*!50700 FOR UPDATE */", MASTER_ONLY),
        ("SELECT 1 /*!99999 FOR UPDATE */", MASTER_ONLY),
        ("SELECT * FROM t WHERE a = 1 -- \n FOR UPDATE", MASTER_ONLY),
        ("SELECT * FROM t WHERE a = 1 # x\rstill comment\nFOR UPDATE", MASTER_ONLY),
        ("SELECT a FROM t\r\nFOR\tUPDATE", MASTER_ONLY),
        ("SELECT a FROM t FOR\x0cUPDATE", MASTER_ONLY),
        ("SELECT 1 --x\nFOR UPDATE", MASTER_ONLY),
        ("(SELECT a FROM t FOR UPDATE)", MASTER_ONLY),
        ("WITH x AS (SELECT a FROM t FOR UPDATE) SELECT * FROM x", MASTER_ONLY),
        // INTO, assignments, SQL_CALC_FOUND_ROWS.
        ("SELECT 1 INTO @a", PINNED),
        ("SELECT a, b INTO @x, @y FROM t WHERE id = 1", PINNED),
        ("SELECT 1 /*!INTO @a */", PINNED),
        ("SELECT * FROM t INTO OUTFILE '/tmp/t.txt'", MASTER_ONLY),
        ("SELECT * INTO DUMPFILE '/tmp/x' FROM t", MASTER_ONLY),
        ("SELECT @a := 1", PINNED),
        ("SELECT @a:=a FROM t", PINNED),
        ("SELECT * FROM t WHERE (@n := @n + 1) > 0", PINNED),
        (
            "SELECT SQL_CALC_FOUND_ROWS items.* FROM items LEFT JOIN biblio ON biblio.biblionumber = items.biblionumber LIMIT 0, 20",
            PINNED,
        ),
        ("select sql_calc_found_rows * from t", PINNED),
        // Functions that are not side-effect free or depend on the session.
        ("SELECT FOUND_ROWS()", MASTER_ONLY),
        ("SELECT LAST_INSERT_ID()", MASTER_ONLY),
        ("SELECT last_insert_id ( )", MASTER_ONLY),
        ("SELECT ROW_COUNT()", MASTER_ONLY),
        ("SELECT GET_LOCK('koha', 10)", PINNED),
        ("select get_lock ('koha', 10)", PINNED),
        ("SELECT RELEASE_LOCK('koha')", MASTER_ONLY),
        ("SELECT RELEASE_ALL_LOCKS()", MASTER_ONLY),
        ("SELECT IS_FREE_LOCK('x'), IS_USED_LOCK('x')", MASTER_ONLY),
        ("SELECT NEXTVAL(s)", MASTER_ONLY),
        ("SELECT SETVAL(s, 10)", MASTER_ONLY),
        ("SELECT LASTVAL(s)", MASTER_ONLY),
        ("SELECT NEXT VALUE FOR s", MASTER_ONLY),
        ("SELECT PREVIOUS VALUE FOR s", MASTER_ONLY),
        ("SELECT s.nextval FROM dual", MASTER_ONLY),
        ("SELECT CONNECTION_ID()", MASTER_ONLY),
        ("SELECT MASTER_GTID_WAIT('0-1-1', 1)", MASTER_ONLY),
        ("SELECT MASTER_POS_WAIT('mysql-bin.000001', 4)", MASTER_ONLY),
        ("SELECT LOAD_FILE('/etc/passwd')", MASTER_ONLY),
        ("SELECT my_function(1)", MASTER_ONLY),
        ("SELECT koha.my_function(1)", MASTER_ONLY),
        ("SELECT `koha`.`f`(1)", MASTER_ONLY),
        ("SELECT `count`(*) FROM t", MASTER_ONLY),
        ("SELECT \"f\"(1)", MASTER_ONLY),
        ("SELECT * FROM t PROCEDURE ANALYSE()", MASTER_ONLY),
        ("SELECT * FROM t WHERE a = 1 AND myfunc(a) = 2", MASTER_ONLY),
        // Session-result system variables.
        ("SELECT @@last_insert_id", MASTER_ONLY),
        ("SELECT @@identity", MASTER_ONLY),
        ("SELECT @@INSERT_ID", MASTER_ONLY),
        ("SELECT @@session.last_insert_id", MASTER_ONLY),
        ("SELECT @@last_gtid", MASTER_ONLY),
        ("SELECT @@gtid_binlog_pos", MASTER_ONLY),
        ("SELECT @@session . last_insert_id", MASTER_ONLY),
        ("SELECT @@`last_insert_id`", MASTER_ONLY),
        ("SELECT @@warning_count, LAST_INSERT_ID()", MASTER_ONLY),
        ("SELECT @@error_count FROM t FOR UPDATE", MASTER_ONLY),
        // Write keywords inside a SELECT.
        ("SELECT update FROM t", MASTER_ONLY),
        ("SELECT 1 FROM t WHERE a = 1 /*! ; */", READ),
        // Multi-statements.
        ("SELECT 1; DELETE FROM t", PINNED),
        ("SELECT 1; SELECT 2", PINNED),
        ("SELECT 1;;", PINNED),
        ("SELECT 1 /*! ; DELETE FROM t */", PINNED),
        ("SELECT 'x'; /*! SELECT 2 */", PINNED),
        ("SET @a = 1; SELECT 1", PINNED),
        ("SHOW WARNINGS; SELECT 1", PINNED),
        ("; SELECT 1", PINNED),
        // Not lexable, or nothing to run.
        ("SELECT 'unterminated", MASTER_ONLY),
        ("SELECT \"unterminated", MASTER_ONLY),
        ("SELECT `unterminated", MASTER_ONLY),
        ("SELECT 1 /* unterminated", MASTER_ONLY),
        ("SELECT 1 /*! unterminated", MASTER_ONLY),
        // Unterminated with backslash escapes, a read under NO_BACKSLASH_ESCAPES.
        ("SELECT 'ends with a backslash\\'", READ),
        ("", MASTER_ONLY),
        ("   \n\t", MASTER_ONLY),
        ("/* only a comment */", MASTER_ONLY),
        ("-- only a comment", MASTER_ONLY),
        (";", MASTER_ONLY),
        // Executable comments whose end depends on the server version.
        ("SELECT 1 /*!50000 ' */ , GET_LOCK('a', 1) -- ' */", PINNED),
        ("SELECT 1 /*!99999 -- */ , GET_LOCK('a', 1)\n */", PINNED),
        // Backslashes read both ways (NO_BACKSLASH_ESCAPES, ANSI_QUOTES).
        ("SELECT 'a\\' , GET_LOCK('x', 1) -- '", PINNED),
        ("SELECT 'a\\'; DELETE FROM t; -- '", PINNED),
        ("SELECT \"a\\\" , myfunc(1) -- \"", MASTER_ONLY),
        // CTEs whose main statement writes, or that are not complete.
        ("WITH x AS (SELECT 1) UPDATE t SET a = 1", MASTER_ONLY),
        ("WITH x AS (SELECT 1) DELETE FROM t", MASTER_ONLY),
        ("WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x", MASTER_ONLY),
        ("WITH x AS (DELETE FROM t RETURNING *) SELECT 1", MASTER_ONLY),
        ("WITH x AS (SELECT 1)", MASTER_ONLY),
        ("WITH x (a) AS (SELECT 1) TABLE x", MASTER_ONLY),
        ("WITH x AS SELECT 1", MASTER_ONLY),
        ("(INSERT INTO t VALUES (1))", MASTER_ONLY),
        ("(VALUES (1))", MASTER_ONLY),
        // SHOW WARNINGS and friends run where the previous statement ran.
        ("SHOW WARNINGS", PREVIOUS),
        ("show errors", PREVIOUS),
        ("SHOW WARNINGS;", PREVIOUS),
        ("SHOW WARNINGS LIMIT 10", PREVIOUS),
        ("SHOW ERRORS LIMIT 5, 10", PREVIOUS),
        ("SHOW COUNT(*) WARNINGS", PREVIOUS),
        ("show count ( * ) errors", PREVIOUS),
        ("/* c */ SHOW WARNINGS -- c", PREVIOUS),
        ("SHOW WARNINGS /* kohaproxy:master */", hinted(PREVIOUS, Hint::Master)),
        ("SHOW WARNINGS ERRORS", MASTER_ONLY),
        ("SHOW COUNT(*) WARNINGS LIMIT 1", MASTER_ONLY),
        ("SHOW TABLES", MASTER_ONLY),
        ("SHOW VARIABLES LIKE 'gtid%'", MASTER_ONLY),
        ("SHOW MASTER STATUS", MASTER_ONLY),
        ("SHOW CREATE TABLE t", MASTER_ONLY),
        ("SHOW WARNINGS_X", MASTER_ONLY),
        // Writes and everything else that is not a plain read.
        ("INSERT INTO t VALUES (1)", MASTER_ONLY),
        ("insert into t values (1)", MASTER_ONLY),
        ("INSERT t (a) VALUES (1)", MASTER_ONLY),
        ("INSERT INTO t SELECT * FROM u", MASTER_ONLY),
        ("INSERT INTO t (a) VALUES (1) RETURNING a", MASTER_ONLY),
        ("UPDATE items SET onloan = NULL WHERE itemnumber = 1", MASTER_ONLY),
        ("DELETE FROM issues WHERE issue_id = 1", MASTER_ONLY),
        ("REPLACE INTO t VALUES (1)", MASTER_ONLY),
        ("REPLACE t (a) VALUES (1)", MASTER_ONLY),
        ("MERGE INTO t USING u ON (1) WHEN MATCHED THEN DELETE", MASTER_ONLY),
        ("CREATE TABLE t (a INT)", MASTER_ONLY),
        ("CREATE TABLE t SELECT * FROM u", MASTER_ONLY),
        ("ALTER TABLE t ADD b INT", MASTER_ONLY),
        ("DROP TABLE t", MASTER_ONLY),
        ("DROP TEMPORARY TABLE tmp", MASTER_ONLY),
        ("TRUNCATE TABLE t", MASTER_ONLY),
        ("TRUNCATE t", MASTER_ONLY),
        ("RENAME TABLE a TO b", MASTER_ONLY),
        ("GRANT SELECT ON *.* TO 'u'@'%'", MASTER_ONLY),
        ("REVOKE SELECT ON *.* FROM 'u'@'%'", MASTER_ONLY),
        ("LOAD DATA INFILE 'x' INTO TABLE t", MASTER_ONLY),
        ("DO 1", MASTER_ONLY),
        ("DO SLEEP(1)", MASTER_ONLY),
        ("DO GET_LOCK('x', 1)", PINNED),
        ("DO RELEASE_LOCK('x')", MASTER_ONLY),
        ("DO @a := 1", PINNED),
        ("UPDATE t SET a = (@n := @n + 1)", PINNED),
        ("UNLOCK TABLES", MASTER_ONLY),
        ("DROP TABLE IF EXISTS tmp_holdsqueue", MASTER_ONLY),
        ("DEALLOCATE PREPARE s", MASTER_ONLY),
        ("DESCRIBE t", MASTER_ONLY),
        ("DESC t", MASTER_ONLY),
        ("EXPLAIN SELECT 1", MASTER_ONLY),
        ("HELP 'contents'", MASTER_ONLY),
        ("BEGIN", BEGINS),
        ("begin work;", BEGINS),
        ("BEGIN /* c */ WORK -- c", BEGINS),
        ("BEGIN NOT ATOMIC SELECT 1; END", PINNED),
        ("BEGIN WORK WORK", MASTER_ONLY),
        ("BEGIN; SELECT 1", PINNED),
        ("START TRANSACTION", BEGINS),
        ("COMMIT", MASTER_ONLY),
        ("ROLLBACK", MASTER_ONLY),
        ("SAVEPOINT savepoint_1", MASTER_ONLY),
        ("RELEASE SAVEPOINT savepoint_1", MASTER_ONLY),
        ("ROLLBACK TO SAVEPOINT savepoint_1", MASTER_ONLY),
        ("XA START 'x'", MASTER_ONLY),
        ("USE koha", MASTER_ONLY),
        ("FLUSH TABLES", MASTER_ONLY),
        ("ANALYZE TABLE t", MASTER_ONLY),
        ("OPTIMIZE TABLE t", MASTER_ONLY),
        ("CHECK TABLE t", MASTER_ONLY),
        ("CHECKSUM TABLE t", MASTER_ONLY),
        ("KILL 5", MASTER_ONLY),
        ("KILL QUERY 5", MASTER_ONLY),
        ("BINLOG 'AAAA'", MASTER_ONLY),
        ("VALUES (1), (2)", MASTER_ONLY),
        ("TABLE t", MASTER_ONLY),
        ("`SELECT` 1", MASTER_ONLY),
        ("'SELECT 1'", MASTER_ONLY),
        // Statements that pin the session to the master.
        ("CALL p()", PINNED),
        ("HANDLER t OPEN", PINNED),
        ("HANDLER t READ FIRST", PINNED),
        ("LOCK TABLES t WRITE", PINNED),
        ("LOCK TABLE message_queue READ", PINNED),
        ("lock tables `creator_templates` WRITE", PINNED),
        ("CREATE TEMPORARY TABLE tmp (a INT)", PINNED),
        (
            "CREATE TEMPORARY TABLE tmpissuingrules ENGINE=memory SELECT * FROM issuingrules WHERE branchcode = 'CPL'",
            PINNED,
        ),
        ("CREATE OR REPLACE TEMPORARY TABLE tmp LIKE t", PINNED),
        ("create temporary table if not exists t (a int)", PINNED),
        ("PREPARE s FROM 'SELECT 1'", PINNED),
        ("EXECUTE s", PINNED),
        ("EXECUTE IMMEDIATE 'SET @a = NOW()'", PINNED),
        ("FLUSH TABLES WITH READ LOCK", PINNED),
        ("FLUSH TABLES t FOR EXPORT", PINNED),
        ("BACKUP STAGE START", PINNED),
        ("BACKUP LOCK t", PINNED),
        // START TRANSACTION READ ONLY.
        ("START TRANSACTION READ ONLY", READ_ONLY_TRANSACTION),
        ("start transaction read only;", READ_ONLY_TRANSACTION),
        ("START TRANSACTION READ ONLY, WITH CONSISTENT SNAPSHOT", READ_ONLY_TRANSACTION),
        ("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY", READ_ONLY_TRANSACTION),
        ("/* c */ START /* c */ TRANSACTION READ ONLY -- c", READ_ONLY_TRANSACTION),
        ("START TRANSACTION READ WRITE", BEGINS),
        ("START TRANSACTION WITH CONSISTENT SNAPSHOT", BEGINS),
        ("START TRANSACTION READ ONLY, READ WRITE", BEGINS),
        ("START TRANSACTION READ ONLY,", BEGINS),
        ("START TRANSACTION READ ONLY READ ONLY", BEGINS),
        ("START SLAVE", MASTER_ONLY),
        ("START TRANSACTION READ ONLY; SELECT 1", PINNED),
        // SET: system variables alone are learned from the server.
        ("SET NAMES 'utf8mb4'", MASTER_ONLY),
        ("SET NAMES utf8mb4 COLLATE utf8mb4_unicode_ci", MASTER_ONLY),
        ("SET CHARACTER SET utf8", MASTER_ONLY),
        ("SET time_zone = \"Europe/Helsinki\"", MASTER_ONLY),
        (
            "SET sql_mode = 'IGNORE_SPACE,NO_ZERO_IN_DATE,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION'",
            MASTER_ONLY,
        ),
        ("SET autocommit=0", MASTER_ONLY),
        ("SET autocommit=1", MASTER_ONLY),
        ("SET SESSION session_track_system_variables = '*'", MASTER_ONLY),
        ("SET @@session.sql_mode = 'x'", MASTER_ONLY),
        ("SET hot_cache.key_buffer_size = 0", MASTER_ONLY),
        ("/*!40014 SET FOREIGN_KEY_CHECKS=0 */", MASTER_ONLY),
        ("SET GLOBAL read_only = 1", MASTER_ONLY),
        ("SET @@global.max_connections = 100", MASTER_ONLY),
        ("SET sql_mode = CONCAT(@@sql_mode, ',ANSI')", MASTER_ONLY),
        ("SET TRANSACTION ISOLATION LEVEL READ COMMITTED", MASTER_ONLY),
        ("SET SESSION TRANSACTION READ ONLY", MASTER_ONLY),
        ("SET GLOBAL TRANSACTION ISOLATION LEVEL SERIALIZABLE", MASTER_ONLY),
        ("SET PASSWORD = PASSWORD('x')", MASTER_ONLY),
        ("SET DEFAULT ROLE r FOR u", MASTER_ONLY),
        ("SET STATEMENT max_statement_time = 5 FOR SELECT * FROM t", MASTER_ONLY),
        ("SET STATEMENT sql_mode = '' FOR UPDATE t SET a = 1", MASTER_ONLY),
        // SET: user variables from literals are replayed.
        ("SET @a = 1", REPLAYED),
        ("set @a=1;", REPLAYED),
        ("SET @a := 1", REPLAYED),
        ("SET @a = -1.5e3", REPLAYED),
        ("SET @a = - -2", REPLAYED),
        ("SET @a = 'x', @b = NULL, @c = TRUE, @d = x'41', @e = b'01', @f = _utf8mb4'x'", REPLAYED),
        ("SET @a = _latin1 'x', @b = N'y', @c = 0x1F, @d = false", REPLAYED),
        ("SET @`my var` = 0x1F", REPLAYED),
        ("SET @'my var' = \"x\"", REPLAYED),
        ("SET @a = 1, sql_mode = 'x'", REPLAYED),
        ("SET @a = 1, time_zone = DEFAULT, NAMES utf8mb4", REPLAYED),
        ("SET SESSION sql_mode = 'x', @a = 'y'", REPLAYED),
        ("SET @a = 'it\\'s'", REPLAYED),
        ("SET @a = 'a\\\\'", REPLAYED),
        ("SET @a = '\\\\', @b = 'x'", REPLAYED),
        ("SET @a = 1 -- one", REPLAYED),
        // SET: user variables the proxy cannot replay pin the session.
        ("SET @a = (SELECT 1)", PINNED),
        ("SET @a = @b + 1", PINNED),
        ("SET @a = @b", PINNED),
        ("SET @a = NOW()", PINNED),
        ("SET @a = 1 + 1", PINNED),
        ("SET @a = 'x' 'y'", PINNED),
        ("SET @a = 'x' COLLATE utf8mb4_bin", PINNED),
        ("SET @a = ON", PINNED),
        ("SET @a = 1, @b = @a", PINNED),
        ("SET @a = 1, sql_mode = CONCAT(@@sql_mode, ',X')", PINNED),
        ("SET @a = 1, sql_mode = @@global.sql_mode", PINNED),
        ("SET @OLD_CHARACTER_SET_CLIENT=@@CHARACTER_SET_CLIENT", PINNED),
        ("SET @saved_cs_client = @@character_set_client", PINNED),
        ("/*!40101 SET @OLD_SQL_MODE=@@SQL_MODE, SQL_MODE='NO_AUTO_VALUE_ON_ZERO' */", PINNED),
        ("SET GLOBAL max_connections = 1, @a = 1", PINNED),
        ("SET @@global.x = 1, @a = 1", PINNED),
        ("SET @a = @b := 1", PINNED),
        ("SET @a = 1, @b = (SELECT GET_LOCK('x', 1))", PINNED),
        ("SET ROLE librarian", PINNED),
        (
            "SET STATEMENT max_statement_time = 5 FOR CREATE TEMPORARY TABLE x (a INT)",
            PINNED,
        ),
        ("SET STATEMENT sql_mode = '' FOR SELECT 1 INTO @a", PINNED),
        ("SET STATEMENT x = 1 FOR SET STATEMENT y = 2 FOR SET STATEMENT z = 3 FOR DO 1", PINNED),
        // Koha's own statements.
        (
            "SELECT `a_session` FROM `sessions` WHERE `id` = 'a1b2c3d4e5f60718293a4b5c6d7e8f90'",
            READ,
        ),
        (
            "SELECT `me`.`borrowernumber`, `me`.`cardnumber`, `me`.`surname`, `me`.`firstname` FROM `borrowers` `me` WHERE ( `me`.`borrowernumber` = '42' )",
            READ,
        ),
        (
            "SELECT me.variable, me.value, me.options, me.explanation, me.type FROM systempreferences me WHERE ( me.variable = 'OPACBaseURL' )",
            READ,
        ),
        ("SELECT * FROM systempreferences WHERE 1 = 0", READ),
        ("SELECT me.* FROM items me WHERE me.biblionumber = 17 ORDER BY me.itemnumber", READ),
        (
            "SELECT * FROM branchtransfers WHERE itemnumber = 17 AND datearrived IS NULL AND datecancelled IS NULL ORDER BY datesent DESC LIMIT 1",
            READ,
        ),
        (
            "SELECT metadata FROM biblio_metadata WHERE biblionumber = 17 AND format = 'marcxml' AND `schema` = 'MARC21'",
            READ,
        ),
        (
            "SELECT COUNT( * ) FROM `borrowers` `me` WHERE ( ( `me`.`surname` LIKE 'smi%' OR `me`.`firstname` LIKE 'smi%' ) AND `me`.`branchcode` IN ( 'CPL', 'MPL' ) )",
            READ,
        ),
        ("SELECT count(*) FROM items WHERE barcode = '39999000001234'", READ),
        (
            "SELECT COUNT(*) FROM issues JOIN items USING (itemnumber) WHERE borrowernumber = 42 AND items.itype = 'BK'",
            READ,
        ),
        (
            "SELECT `me`.`id`, `me`.`branchcode`, `me`.`rule_name`, `me`.`rule_value` FROM `circulation_rules` `me` WHERE ( ( ( `branchcode` = 'CPL' OR `branchcode` IS NULL ) AND ( `categorycode` = 'PT' OR `categorycode` IS NULL ) AND `rule_name` IN ( 'maxissueqty', 'maxonsiteissueqty' ) ) ) ORDER BY `branchcode` DESC",
            READ,
        ),
        (
            "SELECT SUM(amountoutstanding) FROM accountlines WHERE borrowernumber = 42 AND amountoutstanding <> 0",
            READ,
        ),
        (
            "/* opac-detail */ SELECT biblio.biblionumber, biblio.title, items.itemnumber, items.barcode, issues.date_due -- due date\nFROM biblio JOIN items ON items.biblionumber = biblio.biblionumber LEFT JOIN issues ON issues.itemnumber = items.itemnumber /* current checkout */ WHERE biblio.biblionumber = 17 ORDER BY items.itemnumber",
            READ,
        ),
        (
            "INSERT INTO sessions (id, a_session) VALUES ('abc', '---\nlasttime: 1700000000\n') ON DUPLICATE KEY UPDATE a_session = '---\nlasttime: 1700000000\n'",
            MASTER_ONLY,
        ),
        (
            "INSERT INTO search_history (userid, sessionid, query_desc, query_cgi, type, total, time) VALUES (42, 'abc', 'kw,wrdl: koha', 'idx=kw&q=koha', 'biblio', 3, NOW())",
            MASTER_ONLY,
        ),
        (
            "UPDATE borrowers SET lastseen = '2024-05-01 10:00:00' WHERE borrowernumber = 42",
            MASTER_ONLY,
        ),
        (
            "DELETE tmp_holdsqueue, hold_fill_targets FROM tmp_holdsqueue LEFT JOIN hold_fill_targets USING ( itemnumber ) WHERE itemnumber = 17",
            MASTER_ONLY,
        ),
        ("UPDATE issues SET returndate = NOW() WHERE issue_id = 5", MASTER_ONLY),
        (
            "INSERT INTO statistics (datetime, branch, value, type, other, itemnumber, itemtype, location, borrowernumber, ccode, categorycode) VALUES (NOW(), 'CPL', 0, 'issue', '', 17, 'BK', NULL, 42, NULL, 'PT')",
            MASTER_ONLY,
        ),
        (
            "INSERT INTO `issues` ( `borrowernumber`, `branchcode`, `date_due`, `issuedate`, `itemnumber`) VALUES ( '42', 'CPL', '2024-05-15 23:59:00', '2024-05-01 10:00:00', '17' )",
            MASTER_ONLY,
        ),
    ];

    fn show(sql: &[u8]) -> String {
        String::from_utf8_lossy(sql).into_owned()
    }

    #[test]
    fn table() {
        let mut failures = Vec::new();
        for &(sql, expected) in CASES {
            let got = classify(sql.as_bytes());
            if got != expected {
                failures.push(format!(
                    "{sql:?}\n   expected {expected:?}\n        got {got:?}"
                ));
            }
        }
        assert!(
            failures.is_empty(),
            "{} of {} misclassified:\n{}",
            failures.len(),
            CASES.len(),
            failures.join("\n")
        );
        assert!(CASES.len() >= 150, "only {} cases", CASES.len());
    }

    #[test]
    fn invalid_utf8_in_literals() {
        let cases: &[(&[u8], Class)] = &[
            (b"SELECT * FROM t WHERE b = '\xff\xfe\x00\x80'", READ),
            (b"SELECT \xc3\xa4 FROM t WHERE x = '\xc3\x28'", READ),
            (b"SELECT '\xc3\x28' FROM t FOR UPDATE", MASTER_ONLY),
            (b"INSERT INTO t VALUES ('\xff\\'\xfe')", MASTER_ONLY),
            (
                b"INSERT INTO patronimage (borrowernumber, mimetype, imagefile) VALUES ((SELECT borrowernumber from borrowers WHERE cardnumber = '23'),'image/png','\x89PNG\r\n\x1a\n\x00\x00\\0\\'\\\\') ON DUPLICATE KEY UPDATE imagefile = '\x89PNG'",
                MASTER_ONLY,
            ),
            (b"SET @blob = '\xff\x00\xfe'", REPLAYED),
            (b"SELECT 1 /* \xff\xfe kohaproxy */", READ),
            (b"SELECT 1 \x00 FOR UPDATE", MASTER_ONLY),
        ];
        for &(sql, expected) in cases {
            assert_eq!(classify(sql), expected, "{}", show(sql));
        }
    }

    /// A small deterministic generator (no dependency, same cases every run).
    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            self.0 >> 33
        }
    }

    /// Flips the case of ASCII letters at random, except the `M` of `/*M!` (which the
    /// server only recognises in upper case).
    fn shuffle_case(sql: &[u8], random: &mut Lcg) -> Vec<u8> {
        let mut out = sql.to_vec();
        for index in 0..out.len() {
            let executable_marker = out[index] == b'M' && out.get(index + 1) == Some(&b'!');
            if out[index].is_ascii_alphabetic()
                && !executable_marker
                && random.next().is_multiple_of(2)
            {
                out[index] ^= 0x20;
            }
        }
        out
    }

    #[test]
    fn writes_stay_on_the_master_whatever_surrounds_them() {
        const PREFIXES: &[&str] = &[
            "",
            " ",
            "\t\r\n\x0c",
            "/* c */",
            "/* c */ ",
            "-- c\n",
            "--\tc\r\n",
            "# c\n",
            "/*+ hint */ ",
            "/* kohaproxy:replica */ ",
            "/**/\n/* ; */",
        ];
        const SUFFIXES: &[&str] = &[
            "",
            " ",
            ";",
            " ; ",
            "; -- c",
            ";/* c */\n",
            "\n# c",
            " -- c",
            "\n\t",
            "/* SELECT */",
        ];
        let mut random = Lcg(7);
        let mut checked = 0;
        for &(sql, expected) in CASES {
            // A suffix may close what the statement leaves open.
            if expected.route != Route::Master || sql.contains("unterminated") {
                continue;
            }
            for prefix in PREFIXES {
                for suffix in SUFFIXES {
                    let text = format!("{prefix}{sql}{suffix}");
                    for variant in [
                        text.as_bytes().to_vec(),
                        shuffle_case(text.as_bytes(), &mut random),
                    ] {
                        let got = classify(&variant);
                        assert_eq!(got.route, Route::Master, "{}", show(&variant));
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked > 10_000);
    }

    #[test]
    fn reads_stay_reads_whatever_surrounds_them() {
        const PREFIXES: &[&str] = &["", "\n ", "/* c */ ", "-- c\n", "# c\r\n"];
        const SUFFIXES: &[&str] = &["", ";", " ; -- c", "\n# c", "/* c */"];
        let mut random = Lcg(11);
        for &(sql, expected) in CASES {
            if expected.route != Route::Read || expected.hint.is_some() {
                continue;
            }
            for prefix in PREFIXES {
                for suffix in SUFFIXES {
                    // `SELECT 1;;` is two statements.
                    if sql.contains(';') && suffix.contains(';') {
                        continue;
                    }
                    let text = format!("{prefix}{sql}{suffix}");
                    let variant = shuffle_case(text.as_bytes(), &mut random);
                    assert_eq!(classify(&variant).route, Route::Read, "{}", show(&variant));
                }
            }
        }
    }

    #[test]
    fn token_soup_never_panics_and_reads_only_selects() {
        const PIECES: &[&str] = &[
            "SELECT", " ", "'", "\"", "`", "\\", "/*", "*/", "/*!", "/*M!", "--", "-- ", "#", "\n",
            ";", "(", ")", "@", "@@", ":=", "FOR", "UPDATE", "x", "1", ".", ",", "INTO", "\u{0}",
            "\u{ff}", "SET", "=", "WITH", "AS", "e", "+", "-", "*", "SHOW", "WARNINGS", "COUNT",
        ];
        let mut random = Lcg(3);
        for _ in 0..100_000 {
            let length = (random.next() % 14) as usize;
            let mut sql = Vec::new();
            for _ in 0..length {
                let piece = PIECES[(random.next() as usize) % PIECES.len()];
                sql.extend_from_slice(piece.as_bytes());
            }
            let class = classify(&sql);
            let text = show(&sql);
            if class.route == Route::Read {
                assert!(text.contains("SELECT"), "{text:?}");
                assert!(!class.pin && !class.replay, "{text:?}");
            }
            if class.replay {
                assert!(text.contains("SET") && text.contains('@'), "{text:?}");
            }
        }
    }

    #[test]
    fn allowlists_are_sorted_upper_case_and_disjoint() {
        for list in [
            READ_ONLY_FUNCTIONS,
            SYNTAX_BEFORE_PARENTHESIS,
            MASTER_SYSTEM_VARIABLES,
            PREVIOUS_SYSTEM_VARIABLES,
        ] {
            for pair in list.windows(2) {
                assert!(pair[0].as_bytes() < pair[1].as_bytes(), "{pair:?}");
            }
            for name in list {
                assert_eq!(name.to_ascii_uppercase(), *name);
            }
        }
        for name in SYNTAX_BEFORE_PARENTHESIS {
            assert!(!READ_ONLY_FUNCTIONS.contains(name), "{name}");
        }
        for forbidden in [
            "GET_LOCK",
            "RELEASE_LOCK",
            "RELEASE_ALL_LOCKS",
            "IS_FREE_LOCK",
            "IS_USED_LOCK",
            "LAST_INSERT_ID",
            "FOUND_ROWS",
            "ROW_COUNT",
            "NEXTVAL",
            "SETVAL",
            "LASTVAL",
            "CONNECTION_ID",
            "MASTER_GTID_WAIT",
            "MASTER_POS_WAIT",
            "LOAD_FILE",
        ] {
            assert!(
                !allowed_before_parenthesis(forbidden.as_bytes()),
                "{forbidden}"
            );
        }
        assert!(allowed_before_parenthesis(b"group_concat"));
        assert!(allowed_before_parenthesis(b"Json_Table"));
        assert!(!allowed_before_parenthesis(b"json_tablex"));
        assert!(!allowed_before_parenthesis(b""));
    }

    #[test]
    fn a_large_select_is_a_read() {
        let mut sql = String::from("SELECT biblionumber FROM biblio WHERE biblionumber IN (");
        for number in 0..800 {
            sql.push_str(&format!("{number}, "));
        }
        sql.push_str("0) /* kohaproxy:replica */");
        assert_eq!(classify(sql.as_bytes()), hinted(READ, Hint::Replica));
        sql.push_str(" FOR UPDATE");
        assert_eq!(classify(sql.as_bytes()).route, Route::Master);
    }
}
