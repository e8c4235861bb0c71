//! The lexer: one forward pass over statement text, yielding tokens and skipping
//! whitespace and comments, the way MariaDB lexes them.

use super::words::{
    contains_ignoring_case, keyword, Keyword, MASTER_SYSTEM_VARIABLES, PREVIOUS_SYSTEM_VARIABLES,
};
use super::Hint;

/// How quoted strings end: MariaDB's default, or `NO_BACKSLASH_ESCAPES`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Escapes {
    /// `\x` escapes the next byte, and a doubled quote is a quote.
    Backslash,
    /// Only a doubled quote is a quote; a backslash is an ordinary byte.
    DoubledQuoteOnly,
}

/// Why the lexer stopped before the end of the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LexError {
    /// A quote, comment or executable comment is never closed: the server rejects the
    /// statement in which that happens.
    Unterminated,
    /// Inside an executable comment, a string or comment contains `*/`: whether the server
    /// ends the executable comment there depends on its version.
    Ambiguous,
}

/// What reading a system variable tells about where the statement may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SystemVariableUse {
    /// Anything else (`@@server_id`, `@@session.sql_mode`): fine on a replica.
    Plain,
    /// `@@last_insert_id` and the like, or a spelling the lexer does not follow.
    MasterOnly,
    /// `@@warning_count`, `@@error_count`.
    PreviousStatement,
}

/// One token of statement text.
#[derive(Debug, Clone, Copy)]
pub(super) enum Token<'a> {
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
pub(super) struct Lexer<'a> {
    sql: &'a [u8],
    pos: usize,
    escapes: Escapes,
    /// How many executable comments (`/*! ... */`, `/*M! ... */`) are open.
    executable_depth: u32,
    /// The previous token was a `.`.
    after_dot: bool,
    pub(super) hint: Option<Hint>,
    pub(super) error: Option<LexError>,
    /// A backslash appeared inside a quoted string (so the other escape mode may read the
    /// text differently).
    pub(super) backslash_in_quotes: bool,
}

impl<'a> Lexer<'a> {
    pub(super) fn new(sql: &'a [u8], escapes: Escapes) -> Self {
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
    pub(super) fn next(&mut self) -> Option<Token<'a>> {
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
