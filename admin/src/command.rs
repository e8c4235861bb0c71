//! What an admin client can say: a small, pure parser from statement text to [`Command`].
//!
//! Words are matched without case; surrounding whitespace and trailing `;` are ignored.
//! Besides the console's own commands it accepts the few probes MySQL clients send on
//! their own at connect (`SELECT @@version_comment LIMIT 1`, `SELECT @@max_allowed_packet,
//! @@wait_timeout`, `SELECT DATABASE()`, `SELECT USER()`), so that any client works.

/// The console's own commands, as the error for an unknown statement lists them.
pub const KNOWN_COMMANDS: &[&str] = &[
    "SHOW SERVERS",
    "SHOW SESSIONS",
    "SHOW STATS",
    "SHOW TOPOLOGY",
    "SWITCHOVER [TO <name>]",
    "FAILOVER",
    "SET SERVER <name> MAINTENANCE|ONLINE",
    "BACKUP NOW [FROM <name>]",
    "SHOW BACKUPS",
    "REBUILD <name>",
];

/// One parsed admin statement.
///
/// Further commands are further variants, with their arguments as fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `SHOW SERVERS`: one row per configured server.
    ShowServers,
    /// `SHOW SESSIONS`: one row per client session.
    ShowSessions,
    /// `SHOW STATS`: the proxy's counters as name/value rows.
    ShowStats,
    /// `SHOW TOPOLOGY`: the master and the topology problem, if any.
    ShowTopology,
    /// `SWITCHOVER [TO <name>]`, `FAILOVER`, `SET SERVER <name> MAINTENANCE|ONLINE`: run
    /// by the monitor.
    Cluster(kohaproxy_health::Command),
    /// `BACKUP NOW [FROM <name>]`: start a backup (from the best replica, or `name`).
    BackupNow {
        /// The server to back up from.
        from: Option<String>,
    },
    /// `SHOW BACKUPS`: every backup, newest first.
    ShowBackups,
    /// `REBUILD <name>`: replace a server's data by a backup and make it a replica of
    /// the master (a server kept out as diverged, or any replica).
    Rebuild {
        /// The server to rebuild.
        server: String,
    },
    /// `SELECT <probe>, ... [LIMIT n]`: what clients ask on their own at connect
    /// (`@@version_comment`, `@@max_allowed_packet`, `DATABASE()`, `USER()`).
    Select(Vec<Probe>),
}

/// One item of a client's `SELECT` probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// A server variable, as written (`@@version_comment`, `@@session.wait_timeout`).
    Variable(String),
    /// `DATABASE()` or `SCHEMA()`: the schema given at login or by `USE`.
    Database,
    /// `USER()`, `CURRENT_USER()`, `SESSION_USER()` or `SYSTEM_USER()`.
    User,
}

/// A statement the console does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown admin command; known: {}", KNOWN_COMMANDS.join(", "))]
pub struct UnknownCommand {
    /// The statement as received (trimmed).
    pub statement: String,
}

/// Parses one admin statement.
pub fn parse(statement: &str) -> Result<Command, UnknownCommand> {
    let text = statement
        .trim()
        .trim_end_matches(|c: char| c == ';' || c.is_whitespace());
    let unknown = || UnknownCommand {
        statement: text.to_string(),
    };
    let words: Vec<String> = text
        .split_whitespace()
        .map(|w| w.to_ascii_uppercase())
        .collect();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    // Server names keep their case.
    let original: Vec<&str> = text.split_whitespace().collect();
    let name = |i: usize| original.get(i).map(|n| n.trim_matches('`').to_string());
    use kohaproxy_health::Command as Op;
    match words.as_slice() {
        ["SWITCHOVER"] => Ok(Command::Cluster(Op::Switchover { target: None })),
        ["SWITCHOVER", "TO", _] => Ok(Command::Cluster(Op::Switchover { target: name(2) })),
        ["FAILOVER"] => Ok(Command::Cluster(Op::Failover)),
        ["SET", "SERVER", _, state @ ("MAINTENANCE" | "ONLINE")] => {
            Ok(Command::Cluster(Op::Maintenance {
                server: name(2).ok_or_else(unknown)?,
                on: *state == "MAINTENANCE",
            }))
        }
        ["SHOW", "SERVERS"] => Ok(Command::ShowServers),
        ["SHOW", "SESSIONS"] => Ok(Command::ShowSessions),
        ["SHOW", "STATS"] => Ok(Command::ShowStats),
        ["SHOW", "TOPOLOGY"] => Ok(Command::ShowTopology),
        ["BACKUP", "NOW"] => Ok(Command::BackupNow { from: None }),
        ["BACKUP", "NOW", "FROM", _] => Ok(Command::BackupNow { from: name(3) }),
        ["SHOW", "BACKUPS"] => Ok(Command::ShowBackups),
        ["REBUILD", _] => Ok(Command::Rebuild {
            server: name(1).ok_or_else(unknown)?,
        }),
        ["SELECT", ..] => parse_select(text).ok_or_else(unknown),
        _ => Err(unknown()),
    }
}

/// `SELECT <probe>, ... [LIMIT n]`.
fn parse_select(text: &str) -> Option<Command> {
    // "SELECT" is ASCII, so byte 6 is a char boundary.
    let rest = text.get(6..)?;
    if !rest.starts_with(char::is_whitespace) {
        return None;
    }
    let mut list = rest.trim();
    // A trailing LIMIT <n> (the mariadb CLI sends `select @@version_comment limit 1`).
    let upper = list.to_ascii_uppercase();
    if let Some(at) = upper.rfind("LIMIT") {
        let (head, tail) = list.split_at(at);
        let n = tail.get(5..)?.trim();
        if head.ends_with(char::is_whitespace)
            && !n.is_empty()
            && n.bytes().all(|b| b.is_ascii_digit())
        {
            list = head.trim_end();
        }
    }
    list.split(',')
        .map(probe)
        .collect::<Option<Vec<_>>>()
        .map(Command::Select)
}

/// One item of a SELECT list, if the console can answer it.
fn probe(item: &str) -> Option<Probe> {
    let item = item.trim();
    let compact: String = item
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_uppercase();
    match compact.as_str() {
        "DATABASE()" | "SCHEMA()" => return Some(Probe::Database),
        "USER()" | "CURRENT_USER()" | "CURRENT_USER" | "SESSION_USER()" | "SYSTEM_USER()" => {
            return Some(Probe::User)
        }
        _ => {}
    }
    let name = item.strip_prefix("@@")?;
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.');
    valid.then(|| Probe::Variable(item.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_commands_keep_the_server_name_case() {
        use kohaproxy_health::Command as Op;
        assert_eq!(
            parse("switchover to DB2;").unwrap(),
            Command::Cluster(Op::Switchover {
                target: Some("DB2".into())
            })
        );
        assert_eq!(
            parse("SWITCHOVER").unwrap(),
            Command::Cluster(Op::Switchover { target: None })
        );
        assert_eq!(parse(" failover ").unwrap(), Command::Cluster(Op::Failover));
        assert_eq!(
            parse("set server db3 maintenance").unwrap(),
            Command::Cluster(Op::Maintenance {
                server: "db3".into(),
                on: true
            })
        );
        assert_eq!(
            parse("SET SERVER `db3` ONLINE").unwrap(),
            Command::Cluster(Op::Maintenance {
                server: "db3".into(),
                on: false
            })
        );
        assert!(parse("SET SERVER db3 sideways").is_err());
        assert!(parse("SWITCHOVER db2").is_err());
    }

    #[test]
    fn backup_commands() {
        assert_eq!(parse("backup now"), Ok(Command::BackupNow { from: None }));
        assert_eq!(
            parse("BACKUP NOW FROM `DB3`;"),
            Ok(Command::BackupNow {
                from: Some("DB3".into())
            })
        );
        assert_eq!(parse("show backups"), Ok(Command::ShowBackups));
        assert!(parse("BACKUP NOW db3").is_err());
        assert_eq!(
            parse("rebuild `db1`;"),
            Ok(Command::Rebuild {
                server: "db1".into()
            })
        );
        assert!(parse("REBUILD").is_err());
        assert!(parse("BACKUP").is_err());
    }

    #[test]
    fn show_commands_ignore_case_whitespace_and_semicolons() {
        assert_eq!(parse("SHOW SERVERS"), Ok(Command::ShowServers));
        assert_eq!(parse("  show   servers ;; "), Ok(Command::ShowServers));
        assert_eq!(parse("Show Sessions;"), Ok(Command::ShowSessions));
        assert_eq!(parse("show\tstats\n"), Ok(Command::ShowStats));
        assert_eq!(parse("SHOW TOPOLOGY ;"), Ok(Command::ShowTopology));
    }

    #[test]
    fn unknown_statements_list_the_known_commands() {
        for s in [
            "",
            ";",
            "SHOW",
            "SHOW SERVERS x",
            "DROP TABLE t",
            "SELECT 1",
            "show tables",
        ] {
            let e = parse(s).expect_err(s);
            assert!(e
                .to_string()
                .starts_with("unknown admin command; known: SHOW SERVERS, SHOW SESSIONS, SHOW STATS, SHOW TOPOLOGY, SWITCHOVER"));
        }
        assert_eq!(parse(" nope; ").unwrap_err().statement, "nope");
    }

    #[test]
    fn client_probes() {
        let var = |v: &str| Probe::Variable(v.to_string());
        assert_eq!(
            parse("select @@version_comment limit 1"),
            Ok(Command::Select(vec![var("@@version_comment")]))
        );
        assert_eq!(
            parse("SELECT @@max_allowed_packet,@@wait_timeout"),
            Ok(Command::Select(vec![
                var("@@max_allowed_packet"),
                var("@@wait_timeout")
            ]))
        );
        assert_eq!(
            parse("SELECT @@session.autocommit, @@socket"),
            Ok(Command::Select(vec![
                var("@@session.autocommit"),
                var("@@socket")
            ]))
        );
        assert_eq!(
            parse("SELECT DATABASE()"),
            Ok(Command::Select(vec![Probe::Database]))
        );
        assert_eq!(
            parse("select database( );"),
            Ok(Command::Select(vec![Probe::Database]))
        );
        assert_eq!(
            parse("SELECT USER()"),
            Ok(Command::Select(vec![Probe::User]))
        );
        assert_eq!(
            parse("select database(), current_user(), @@version"),
            Ok(Command::Select(vec![
                Probe::Database,
                Probe::User,
                var("@@version")
            ]))
        );
        assert!(parse("SELECT @@").is_err());
        assert!(parse("SELECT @@a, 1").is_err());
        assert!(parse("SELECT @@a limit").is_err());
        assert!(parse("SELECTUSER()").is_err());
        assert!(parse("SELECT @@a; DROP TABLE x").is_err());
    }

    #[test]
    fn odd_input_never_panics() {
        for s in [
            "SELECT",
            "SELECT ",
            "select é",
            "SELECT LIMIT",
            "ÉSELECT",
            "SELECT\u{0}",
        ] {
            let _ = parse(s);
        }
    }
}
