//! Reading the file, turning TOML/serde errors into messages that name the file, the place
//! and the key, and handing the raw structs to validation.

use crate::raw::RawConfig;
use crate::Config;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Why a configuration file was refused: always names the file and, where there is one, the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The text is not valid TOML or does not fit the schema (unknown key, wrong type).
    #[error("{path}: {}{}{message}", at(.line, .column), key_prefix(.key))]
    Toml {
        /// The file.
        path: PathBuf,
        /// 1-based line of the offending text, when known.
        line: Option<usize>,
        /// 1-based column (in characters) of the offending text, when known.
        column: Option<usize>,
        /// Dotted key such as `proxy.max_connections`, when it could be determined.
        key: Option<String>,
        /// What is wrong (never contains a password or hash value).
        message: String,
    },
    /// The file parsed but a value is not acceptable.
    #[error("{path}: {}{key}: {message}", at(.line, .column))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line of the offending value, when known.
        line: Option<usize>,
        /// 1-based column (in characters) of the offending value, when known.
        column: Option<usize>,
        /// Dotted key such as `servers[1].address` or `users[0]`.
        key: String,
        /// What is wrong (never contains a password or hash value).
        message: String,
    },
}

impl ConfigError {
    /// The dotted key the error is about (e.g. `monitor.interval_ms`), if known.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Read { .. } => None,
            ConfigError::Toml { key, .. } => key.as_deref(),
            ConfigError::Invalid { key, .. } => Some(key),
        }
    }

    /// The 1-based line the error points at, if known.
    pub fn line(&self) -> Option<usize> {
        match self {
            ConfigError::Read { .. } => None,
            ConfigError::Toml { line, .. } | ConfigError::Invalid { line, .. } => *line,
        }
    }
}

/// Formats "line L, column C: " or nothing.
fn at(line: &Option<usize>, column: &Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!("line {l}, column {c}: "),
        (Some(l), None) => format!("line {l}: "),
        _ => String::new(),
    }
}

/// Formats "key: " or nothing.
fn key_prefix(key: &Option<String>) -> String {
    key.as_ref().map(|k| format!("{k}: ")).unwrap_or_default()
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// Reads `path` and parses it (see [`parse`]).
pub(crate) fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, path)
}

/// Deserializes `text` into the raw structs, then validates it into a [`Config`].
pub(crate) fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let raw: RawConfig = toml::from_str(text).map_err(|e| toml_error(text, path, &e))?;
    crate::validate::validate(raw, text, path)
}

/// Where in the file an offset falls: which table, and which entry of an array of tables.
enum Section {
    TopLevel,
    Table(String),
    Entry(String, usize),
}

impl Section {
    /// Dotted prefix for keys inside this section (`proxy`, `servers[1]`), if any.
    fn key(&self) -> Option<String> {
        match self {
            Section::TopLevel => None,
            Section::Table(name) => Some(name.clone()),
            Section::Entry(name, i) => Some(format!("{name}[{i}]")),
        }
    }

    /// How to name the section in a sentence.
    fn describe(&self) -> String {
        match self {
            Section::TopLevel => "at top level".to_owned(),
            Section::Table(name) => format!("in [{name}]"),
            Section::Entry(name, i) => format!("in [[{name}]] entry {name}[{i}]"),
        }
    }
}

/// The table header a line declares, if it is one: `("proxy", false)` or `("servers", true)`.
fn header(line: &str) -> Option<(String, bool)> {
    let t = line.trim();
    let (inner, array) = if let Some(rest) = t.strip_prefix("[[") {
        (rest.split("]]").next()?, true)
    } else if let Some(rest) = t.strip_prefix('[') {
        (rest.split(']').next()?, false)
    } else {
        return None;
    };
    let name: String = inner
        .split('.')
        .map(|part| part.trim().trim_matches(|c| c == '"' || c == '\''))
        .collect::<Vec<_>>()
        .join(".");
    Some((name, array))
}

/// The section containing the line that starts at `line_start` (headers before it only).
fn section_at(text: &str, line_start: usize) -> Section {
    let mut section = Section::TopLevel;
    let mut counts: Vec<(String, usize)> = Vec::new();
    for line in text[..line_start].lines() {
        let Some((name, array)) = header(line) else {
            continue;
        };
        section = if array {
            let index = match counts.iter_mut().find(|(n, _)| *n == name) {
                Some((_, count)) => {
                    *count += 1;
                    *count - 1
                }
                None => {
                    counts.push((name.clone(), 1));
                    0
                }
            };
            Section::Entry(name, index)
        } else {
            Section::Table(name)
        };
    }
    section
}

/// The bare key written just before `offset` on its line (`key = <offset>`), if any.
fn key_before(line_prefix: &str) -> Option<String> {
    let t = line_prefix.trim_end().strip_suffix('=')?.trim_end();
    let start = t
        .char_indices()
        .rev()
        .find(|&(_, c)| !(c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '"'))
        .map_or(0, |(i, c)| i + c.len_utf8());
    let key = t[start..].trim_matches('"');
    (!key.is_empty()).then(|| key.to_owned())
}

/// Keys whose values must never appear in a message.
fn is_secret(key: &str) -> bool {
    let last = key.rsplit('.').next().unwrap_or(key);
    last == "password" || last == "password_hash"
}

/// Turns a toml/serde error into a `ConfigError::Toml` naming the line, the key and the problem.
fn toml_error(text: &str, path: &Path, err: &toml::de::Error) -> ConfigError {
    let message = err.message().trim().to_owned();
    let Some(span) = err.span() else {
        return ConfigError::Toml {
            path: path.to_path_buf(),
            line: None,
            column: None,
            key: None,
            message,
        };
    };
    let (line, column) = line_col(text, span.start);
    let (key, message) = describe(text, span, message);
    ConfigError::Toml {
        path: path.to_path_buf(),
        line: Some(line),
        column: Some(column),
        key,
        message,
    }
}

/// Works out the key for an error at `span` and rewrites serde's wording into the file's terms.
fn describe(text: &str, span: Range<usize>, message: String) -> (Option<String>, String) {
    let start = span.start.min(text.len());
    let line_start = text
        .get(..start)
        .and_then(|t| t.rfind('\n'))
        .map_or(0, |i| i + 1);
    let line_prefix = text.get(line_start..start).unwrap_or("");
    let section = section_at(text, line_start);

    if let Some(rest) = message.strip_prefix("unknown field `") {
        if let Some((name, tail)) = rest.split_once('`') {
            let tail = tail.replace('`', "");
            let is_header = line_prefix.trim_start().starts_with('[');
            let what = if is_header {
                format!("unknown section [{name}]")
            } else {
                format!("unknown key `{name}` {}", section.describe())
            };
            return (None, format!("{what}{tail}"));
        }
    }

    // The error may point at a value (`key = <here>`) or at the key itself (duplicate key).
    let own_key = key_before(line_prefix).or_else(|| {
        let rest = text.get(start..).unwrap_or("");
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
            .unwrap_or(rest.len());
        let at_key = line_prefix.trim().is_empty() && rest[end..].trim_start().starts_with('=');
        (at_key && end > 0).then(|| rest[..end].to_owned())
    });
    let key = match (section.key(), own_key) {
        (Some(s), Some(k)) => Some(format!("{s}.{k}")),
        (None, Some(k)) => Some(k),
        (s, None) => s,
    };
    let message = match &key {
        // serde quotes the offending value in backticks or double quotes: drop it.
        Some(k) if is_secret(k) && (message.contains('`') || message.contains('"')) => {
            let kind = if message.starts_with("invalid type") {
                "invalid type"
            } else {
                "invalid value"
            };
            let expected = message.find(", expected").map_or("", |i| &message[i..]);
            format!("{kind}{expected}")
        }
        _ => plain_types(&message),
    };
    (key, message)
}

/// Replaces Rust type names in serde's "expected" wording with plain words.
fn plain_types(message: &str) -> String {
    let Some((head, tail)) = message.rsplit_once(", expected ") else {
        return message.to_owned();
    };
    let tail = match tail {
        "u64" | "u32" | "usize" => "a non-negative integer",
        "i32" | "i64" => "an integer",
        other => other,
    };
    format!("{head}, expected {tail}")
}
