//! The statement classifier: reads a COM_QUERY text and says whether it may run on a
//! replica, must run on the master, or must run where the previous statement ran, and what
//! it does to the session. A pure function: no I/O, no allocation.
//!
//! Misclassifying a write as a read loses data, so anything not recognised as a plain read
//! goes to the master.

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
    /// `START TRANSACTION READ ONLY` (possibly with WITH CONSISTENT SNAPSHOT).
    pub read_only_transaction: bool,
    /// A hint comment, if the statement has one.
    pub hint: Option<Hint>,
}

/// Classifies one COM_QUERY statement text (the bytes after the command byte).
pub fn classify(sql: &[u8]) -> Class {
    let mut class = Class {
        route: Route::Master,
        pin: false,
        replay: false,
        read_only_transaction: false,
        hint: None,
    };
    let mut lexer = Lexer::new(sql);
    let mut tokens = [Tok::End; 8];
    let mut scan = Scan::default();
    // A window of the last tokens, newest at the end, for the few rules that look back.
    loop {
        let tok = lexer.next();
        tokens.rotate_left(1);
        tokens[7] = tok;
        if scan.step(&tokens) {
            break;
        }
    }
    class.hint = lexer.hint;
    if lexer.broken {
        // Unterminated quote or comment: the server will refuse it; the master says so.
        return class;
    }
    class.pin = scan.pin;
    class.read_only_transaction = scan.first == First::StartTransaction && scan.read_only;
    match scan.first {
        First::Select if !scan.master && !scan.multi => {
            class.route = if scan.previous {
                Route::Previous
            } else {
                Route::Read
            };
        }
        First::ShowDiagnostics if !scan.multi => class.route = Route::Previous,
        First::Set if !scan.multi => {
            if scan.user_vars && !scan.non_literal {
                class.replay = true;
            } else if scan.user_vars {
                class.pin = true;
            }
        }
        _ => {}
    }
    if scan.multi {
        // Several statements in one: run on the master, and stay there (any of them may
        // have changed the session in ways the proxy does not follow).
        class.pin = true;
    }
    class
}

/// A lexical token. Words are not case-folded: compare with [`is`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok<'a> {
    /// A keyword or identifier (unquoted), or a number.
    Word(&'a [u8]),
    /// A backquoted identifier.
    Ident,
    /// A quoted string.
    Str,
    /// `@name` (or `@'name'`).
    UserVar,
    /// `@@name`, `@@session.name`: the name without the scope.
    SysVar(&'a [u8]),
    /// `:=`.
    Assign,
    /// One punctuation byte.
    Sym(u8),
    /// End of the text.
    End,
}

/// Case-insensitive keyword comparison.
fn is(word: &[u8], keyword: &str) -> bool {
    word.eq_ignore_ascii_case(keyword.as_bytes())
}

/// Splits statement text into tokens, treating comments as blanks, except hints (recorded)
/// and executable comments (`/*! ... */`, `/*M! ... */`: their content is code).
struct Lexer<'a> {
    s: &'a [u8],
    i: usize,
    /// Inside an executable comment: its `*/` is skipped.
    in_exec: bool,
    /// A hint comment was seen.
    hint: Option<Hint>,
    /// Unterminated quote or comment.
    broken: bool,
}

impl<'a> Lexer<'a> {
    fn new(s: &'a [u8]) -> Self {
        Lexer {
            s,
            i: 0,
            in_exec: false,
            hint: None,
            broken: false,
        }
    }

    fn peek(&self, at: usize) -> u8 {
        self.s.get(self.i + at).copied().unwrap_or(0)
    }

    fn next(&mut self) -> Tok<'a> {
        loop {
            let c = self.peek(0);
            match c {
                0 if self.i >= self.s.len() => return Tok::End,
                b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c => self.i += 1,
                b'#' => self.skip_line(),
                b'-' if self.peek(1) == b'-'
                    && (self.peek(2).is_ascii_whitespace()
                        || self.peek(2).is_ascii_control()
                        || self.i + 2 >= self.s.len()) =>
                {
                    self.skip_line()
                }
                b'/' if self.peek(1) == b'*' => {
                    // `/*m!` is a plain comment to MariaDB; read as code anyway (when in
                    // doubt, the master).
                    let mariadb = matches!(self.peek(2), b'M' | b'm') && self.peek(3) == b'!';
                    if self.peek(2) == b'!' || mariadb {
                        self.i += if self.peek(2) == b'!' { 3 } else { 4 };
                        while self.peek(0).is_ascii_digit() {
                            self.i += 1;
                        }
                        self.in_exec = true;
                    } else {
                        self.comment();
                    }
                }
                b'*' if self.in_exec && self.peek(1) == b'/' => {
                    self.i += 2;
                    self.in_exec = false;
                }
                b'\'' | b'"' => {
                    self.quoted(c);
                    return Tok::Str;
                }
                b'`' => {
                    self.quoted(c);
                    return Tok::Ident;
                }
                b'@' if self.peek(1) == b'@' => {
                    self.i += 2;
                    let mut name = self.word();
                    let scoped = ["session", "global", "local"].iter().any(|s| is(name, s));
                    if scoped && self.peek(0) == b'.' {
                        self.i += 1;
                        name = self.word();
                    }
                    return Tok::SysVar(name);
                }
                b'@' => {
                    self.i += 1;
                    match self.peek(0) {
                        q @ (b'\'' | b'"' | b'`') => self.quoted(q),
                        _ => {
                            self.word();
                        }
                    }
                    return Tok::UserVar;
                }
                b':' if self.peek(1) == b'=' => {
                    self.i += 2;
                    return Tok::Assign;
                }
                c if is_word_byte(c) => return Tok::Word(self.word()),
                c => {
                    self.i += 1;
                    return Tok::Sym(c);
                }
            }
        }
    }

    /// A run of identifier bytes (letters, digits, `_`, `$`, non-ASCII), or a number
    /// with its decimal point.
    fn word(&mut self) -> &'a [u8] {
        let start = self.i;
        while self.i < self.s.len() {
            let c = self.s[self.i];
            let decimal_point = c == b'.'
                && self.peek(1).is_ascii_digit()
                && self.s[start..self.i].iter().all(u8::is_ascii_digit)
                && self.i > start;
            if !(is_word_byte(c) || decimal_point) {
                break;
            }
            self.i += 1;
        }
        &self.s[start..self.i]
    }

    fn skip_line(&mut self) {
        while self.i < self.s.len() && self.s[self.i] != b'\n' {
            self.i += 1;
        }
    }

    /// A plain comment: skipped, but a hint in it is recorded.
    fn comment(&mut self) {
        let start = self.i + 2;
        match self.s[start..].windows(2).position(|w| w == b"*/") {
            Some(n) => {
                let body = self.s[start..start + n].trim_ascii();
                if is(body, "kohaproxy:master") {
                    self.hint = Some(Hint::Master);
                } else if is(body, "kohaproxy:replica") {
                    self.hint = Some(Hint::Replica);
                }
                self.i = start + n + 2;
            }
            None => {
                self.broken = true;
                self.i = self.s.len();
            }
        }
    }

    /// A quoted string or identifier: backslash escapes (not in backquotes) and doubled
    /// quotes.
    fn quoted(&mut self, q: u8) {
        self.i += 1;
        while self.i < self.s.len() {
            let c = self.s[self.i];
            if c == b'\\' && q != b'`' {
                self.i += 2;
            } else if c == q {
                if self.peek(1) == q {
                    self.i += 2;
                } else {
                    self.i += 1;
                    return;
                }
            } else {
                self.i += 1;
            }
        }
        self.broken = true;
        self.i = self.s.len();
    }
}

fn is_word_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80
}

/// What the first keyword says the statement is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum First {
    /// Nothing seen yet.
    #[default]
    None,
    /// SELECT, WITH or a parenthesised SELECT: may be a read.
    Select,
    /// SHOW WARNINGS / SHOW ERRORS / SHOW COUNT(*) ...: about the previous statement.
    ShowDiagnostics,
    /// SET.
    Set,
    /// START TRANSACTION.
    StartTransaction,
    /// Anything else.
    Other,
}

/// The rules, applied token by token.
#[derive(Debug, Default)]
struct Scan {
    first: First,
    /// Tokens seen (not counting leading parentheses).
    count: usize,
    /// Parenthesis depth (for SET's top-level commas).
    depth: usize,
    /// A reason to run on the master was found.
    master: bool,
    /// The statement is about the previous statement's diagnostics.
    previous: bool,
    /// Stay on the master after it.
    pin: bool,
    /// More than one statement.
    multi: bool,
    /// After a `;` at the end: only blanks may follow.
    after_semicolon: bool,
    /// START TRANSACTION ... READ ONLY.
    read_only: bool,
    /// SET: a user variable is assigned.
    user_vars: bool,
    /// SET: a user variable gets something other than a literal.
    non_literal: bool,
    /// SET: the current assignment's target is a user variable.
    assigning_user: bool,
    /// SET: tokens in the current assignment's value.
    value_tokens: usize,
    /// SET: the value so far is a literal.
    value_literal: bool,
    /// SET: past the `=` of the current assignment.
    in_value: bool,
}

impl Scan {
    /// Applies the rules to the newest token (`w[7]`, with `w[6]`, `w[5]`... before it).
    /// True when the end is reached.
    fn step(&mut self, w: &[Tok<'_>; 8]) -> bool {
        let tok = w[7];
        if tok == Tok::End {
            self.end_assignment();
            if self.first == First::Select {
                self.read_rules(w);
            }
            return true;
        }
        if self.after_semicolon {
            if tok != Tok::Sym(b';') {
                self.multi = true;
                self.master = true;
            }
            return false;
        }
        if tok == Tok::Sym(b';') {
            self.after_semicolon = true;
            return false;
        }
        if self.first == First::None {
            match tok {
                Tok::Sym(b'(') => return false,
                Tok::Word(k) if is(k, "SELECT") || is(k, "WITH") => self.first = First::Select,
                Tok::Word(k) if is(k, "SET") => self.first = First::Set,
                Tok::Word(k) if is(k, "SHOW") => self.first = First::Other,
                Tok::Word(k) if is(k, "START") => self.first = First::StartTransaction,
                Tok::Word(k)
                    if ["CALL", "HANDLER", "PREPARE", "LOCK"]
                        .iter()
                        .any(|p| is(k, p)) =>
                {
                    // Procedures may change session state; handlers, prepared SQL
                    // statements and table locks live on one connection.
                    self.first = First::Other;
                    self.pin = true;
                }
                _ => self.first = First::Other,
            }
            self.count = 1;
            return false;
        }
        self.count += 1;
        // SHOW WARNINGS / ERRORS / COUNT(*) WARNINGS.
        if let (Tok::Word(show), Tok::Word(what)) = (w[6], tok) {
            if self.count == 2 && is(show, "SHOW") && (is(what, "WARNINGS") || is(what, "ERRORS")) {
                self.first = First::ShowDiagnostics;
            }
        }
        if let (Tok::Word(show), Tok::Word(what)) = (w[2], tok) {
            if self.count == 6 && is(show, "SHOW") && (is(what, "WARNINGS") || is(what, "ERRORS")) {
                self.first = First::ShowDiagnostics;
            }
        }
        match tok {
            Tok::Sym(b'(') => self.depth += 1,
            Tok::Sym(b')') => self.depth = self.depth.saturating_sub(1),
            _ => {}
        }
        match self.first {
            First::Set => self.set_rules(w),
            First::StartTransaction => {
                if let (Tok::Word(a), Tok::Word(b)) = (w[6], tok) {
                    if is(a, "READ") && is(b, "ONLY") {
                        self.read_only = true;
                    }
                }
            }
            _ => {}
        }
        self.global_rules(w);
        if self.first == First::Select {
            self.read_rules(w);
        }
        false
    }

    /// Rules for every statement: what pins the session.
    fn global_rules(&mut self, w: &[Tok<'_>; 8]) {
        let tok = w[7];
        match tok {
            Tok::Assign if self.first != First::Set => {
                self.pin = true;
                self.master = true;
            }
            Tok::UserVar if matches!(w[6], Tok::Word(k) if is(k, "INTO")) => {
                self.pin = true;
                self.master = true;
            }
            Tok::Word(k) if is(k, "SQL_CALC_FOUND_ROWS") => {
                self.pin = true;
                self.master = true;
            }
            Tok::Word(k) if is(k, "TEMPORARY") => self.pin = true,
            Tok::Sym(b'(') => {
                if let Tok::Word(f) = w[6] {
                    if is(f, "GET_LOCK") {
                        self.pin = true;
                    }
                }
            }
            _ => {}
        }
    }

    /// Rules that make a SELECT run on the master (or after the previous statement).
    fn read_rules(&mut self, w: &[Tok<'_>; 8]) {
        let (before, tok) = (w[6], w[7]);
        let qualified = before == Tok::Sym(b'.');
        // REPLACE(, INSERT(, TRUNCATE( are string and number functions; the same words
        // anywhere else in a SELECT are not a read.
        if let Tok::Word(k) = before {
            let as_word = w[5] != Tok::Sym(b'.') && tok != Tok::Sym(b'(');
            if as_word && FUNCTION_OR_WRITE.iter().any(|x| is(k, x)) {
                self.master = true;
            }
        }
        match tok {
            Tok::Word(k) if !qualified && FUNCTION_OR_WRITE.iter().any(|x| is(k, x)) => {}
            Tok::Word(k) if !qualified => {
                if WRITE_WORDS.iter().any(|x| is(k, x)) {
                    // CAST(x AS CHAR CHARACTER SET utf8mb4) is the one SET a read has.
                    let charset =
                        is(k, "SET") && matches!(before, Tok::Word(c) if is(c, "CHARACTER"));
                    if !charset {
                        self.master = true;
                    }
                }
                if (is(k, "SHARE") && matches!(before, Tok::Word(f) if is(f, "FOR")))
                    || (is(k, "VALUE")
                        && matches!(before, Tok::Word(n) if is(n, "NEXT") || is(n, "PREVIOUS")))
                {
                    self.master = true;
                }
            }
            Tok::SysVar(name) => {
                if MASTER_VARIABLES.iter().any(|v| is(name, v)) {
                    self.master = true;
                } else if is(name, "warning_count") || is(name, "error_count") {
                    self.previous = true;
                }
            }
            Tok::Sym(b'(') => {
                if let Tok::Word(f) = before {
                    let call_qualified = w[5] == Tok::Sym(b'.');
                    if call_qualified || !(is_syntax(f) || is_builtin(f)) {
                        self.master = true;
                    }
                } else if before == Tok::Ident && w[5] == Tok::Sym(b'.') {
                    self.master = true;
                }
            }
            _ => {}
        }
    }

    /// SET: user variables get literals (replayed) or anything else (pinned).
    fn set_rules(&mut self, w: &[Tok<'_>; 8]) {
        let tok = w[7];
        if self.count == 2 {
            if let Tok::Word(k) = tok {
                if [
                    "GLOBAL",
                    "PERSIST",
                    "STATEMENT",
                    "TRANSACTION",
                    "NAMES",
                    "CHARACTER",
                    "CHARSET",
                    "PASSWORD",
                    "ROLE",
                    "DEFAULT",
                ]
                .iter()
                .any(|x| is(k, x))
                {
                    // Learned from the server or not session state at all.
                    self.first = First::Other;
                    return;
                }
            }
        }
        if self.depth == 0 && tok == Tok::Sym(b',') {
            self.end_assignment();
            return;
        }
        if !self.in_value {
            if tok == Tok::UserVar && self.value_tokens == 0 {
                self.assigning_user = true;
                self.user_vars = true;
            }
            if matches!(tok, Tok::Sym(b'=') | Tok::Assign) && self.depth == 0 {
                self.in_value = true;
                self.value_literal = true;
            }
            return;
        }
        if !self.assigning_user {
            return;
        }
        self.value_tokens += 1;
        let literal = match tok {
            Tok::Str => true,
            Tok::Sym(b'-' | b'+') => self.value_tokens == 1,
            Tok::Word(k) => {
                let number = k.iter().all(|c| c.is_ascii_digit() || *c == b'.')
                    || (k.len() > 2
                        && is(&k[..2], "0x")
                        && k[2..].iter().all(u8::is_ascii_hexdigit));
                let keyword = ["NULL", "TRUE", "FALSE"].iter().any(|x| is(k, x));
                // A charset introducer or x'..' / b'..' prefix: the string must follow.
                let prefix = (k.first() == Some(&b'_') || is(k, "x") || is(k, "b"))
                    && self.value_tokens <= 2;
                number || keyword || prefix
            }
            _ => false,
        };
        self.value_literal &= literal;
    }

    /// The end of one SET assignment.
    fn end_assignment(&mut self) {
        if self.first == First::Set
            && self.assigning_user
            && (!self.value_literal || self.value_tokens == 0)
        {
            self.non_literal = true;
        }
        self.assigning_user = false;
        self.in_value = false;
        self.value_tokens = 0;
        self.value_literal = false;
    }
}

/// Words that, outside a function call, make a SELECT more than a read.
const WRITE_WORDS: &[&str] = &[
    "ALTER", "CALL", "CREATE", "DELETE", "DO", "DROP", "DUMPFILE", "GRANT", "HANDLER", "INSERT",
    "INTO", "LOAD", "LOCK", "OUTFILE", "RENAME", "REPLACE", "REVOKE", "SET", "TRUNCATE", "UNLOCK",
    "UPDATE",
];

/// Write words that are also function names: a write only when not followed by `(`.
const FUNCTION_OR_WRITE: &[&str] = &["INSERT", "REPLACE", "TRUNCATE"];

/// System variables whose value belongs to the master connection's last statement.
const MASTER_VARIABLES: &[&str] = &["identity", "insert_id", "last_gtid", "last_insert_id"];

/// Keywords that may stand before `(` without being a function call.
const SYNTAX: &[&str] = &[
    "ALL",
    "AND",
    "ANY",
    "AS",
    "BETWEEN",
    "BINARY",
    "BY",
    "CASE",
    "CHAR",
    "CHARACTER",
    "COLUMNS",
    "DATETIME",
    "DEC",
    "DECIMAL",
    "DISTINCT",
    "DIV",
    "DOUBLE",
    "ELSE",
    "ESCAPE",
    "EXCEPT",
    "EXISTS",
    "FLOAT",
    "FOR",
    "FORCE",
    "FROM",
    "HAVING",
    "IGNORE",
    "IN",
    "INDEX",
    "INT",
    "INTEGER",
    "INTERSECT",
    "INTERVAL",
    "IS",
    "JOIN",
    "KEY",
    "LATERAL",
    "LIKE",
    "LIMIT",
    "NCHAR",
    "NOT",
    "NUMERIC",
    "OF",
    "OFFSET",
    "ON",
    "OR",
    "ORDER",
    "OVER",
    "PARTITION",
    "RECURSIVE",
    "REGEXP",
    "RLIKE",
    "ROW",
    "ROWS",
    "SELECT",
    "SIGNED",
    "SOME",
    "THEN",
    "UNION",
    "UNSIGNED",
    "USE",
    "USING",
    "VALUES",
    "VARCHAR",
    "WHEN",
    "WHERE",
    "WITH",
    "XOR",
];

/// MariaDB built-in functions without side effects that do not depend on the connection
/// (sorted, upper case). Anything else called in a SELECT sends it to the master.
const BUILTINS: &[&str] = &[
    "ABS",
    "ACOS",
    "ADDDATE",
    "ADDTIME",
    "AES_DECRYPT",
    "AES_ENCRYPT",
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
    "CHARACTER_LENGTH",
    "CHARSET",
    "CHAR_LENGTH",
    "COALESCE",
    "COERCIBILITY",
    "COLLATION",
    "COLUMN_CHECK",
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
    "JSON_EXISTS",
    "JSON_EXTRACT",
    "JSON_INSERT",
    "JSON_KEYS",
    "JSON_LENGTH",
    "JSON_MERGE",
    "JSON_MERGE_PATCH",
    "JSON_MERGE_PRESERVE",
    "JSON_OBJECT",
    "JSON_OBJECTAGG",
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

/// Whether `f` is a built-in read-safe function (binary search, no allocation).
fn is_builtin(f: &[u8]) -> bool {
    BUILTINS
        .binary_search_by(|b| {
            let b = b.as_bytes();
            b.iter()
                .map(u8::to_ascii_uppercase)
                .cmp(f.iter().map(u8::to_ascii_uppercase))
        })
        .is_ok()
}

fn is_syntax(f: &[u8]) -> bool {
    SYNTAX.iter().any(|k| is(f, k))
}

#[cfg(test)]
mod tests;
