//! `KILL [HARD|SOFT] [CONNECTION|QUERY] <id>` aimed at a proxy session id.
//!
//! Clients learn the proxy's session id from the greeting, not a server thread id. Proxy
//! ids start at [`FIRST_SESSION_ID`], far above the thread ids servers hand out, so a KILL
//! naming a proxy id is translated to the thread id of that session's backend connection,
//! and any other id (one read from SHOW PROCESSLIST) goes to the server unchanged.

/// The first proxy session id (2^30: fits the protocol's u32 and drivers' signed i32).
pub const FIRST_SESSION_ID: u32 = 1 << 30;

/// A parsed KILL statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kill {
    /// `KILL QUERY`: stop the running statement, keep the connection.
    pub query_only: bool,
    /// `HARD`/`SOFT` as written, if at all (passed on).
    pub modifier: Option<&'static str>,
    /// The id named.
    pub id: u64,
}

impl Kill {
    /// Parses a COM_QUERY text; `None` unless it is exactly one KILL by numeric id.
    pub fn parse(sql: &[u8]) -> Option<Kill> {
        let text = std::str::from_utf8(sql).ok()?;
        let text = text.trim().trim_end_matches(';').trim_end();
        let mut words = text.split_ascii_whitespace();
        if !words.next()?.eq_ignore_ascii_case("KILL") {
            return None;
        }
        let mut word = words.next()?;
        let mut modifier = None;
        for m in ["HARD", "SOFT"] {
            if word.eq_ignore_ascii_case(m) {
                modifier = Some(m);
                word = words.next()?;
            }
        }
        let mut query_only = false;
        if word.eq_ignore_ascii_case("QUERY") {
            query_only = true;
            word = words.next()?;
        } else if word.eq_ignore_ascii_case("CONNECTION") {
            word = words.next()?;
        }
        let id = word.parse().ok()?;
        words.next().is_none().then_some(Kill {
            query_only,
            modifier,
            id,
        })
    }

    /// The statement to send to the server, aimed at `thread_id`.
    pub fn to_sql(&self, thread_id: u32) -> String {
        let modifier = self.modifier.map(|m| format!("{m} ")).unwrap_or_default();
        let what = if self.query_only {
            "QUERY"
        } else {
            "CONNECTION"
        };
        format!("KILL {modifier}{what} {thread_id}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kill_forms_are_recognised() {
        let k = |s: &str| Kill::parse(s.as_bytes());
        assert_eq!(
            k("KILL 1073741825"),
            Some(Kill {
                query_only: false,
                modifier: None,
                id: 1073741825
            })
        );
        assert_eq!(
            k("  kill query 7 ;"),
            Some(Kill {
                query_only: true,
                modifier: None,
                id: 7
            })
        );
        assert_eq!(
            k("KILL HARD CONNECTION 9"),
            Some(Kill {
                query_only: false,
                modifier: Some("HARD"),
                id: 9
            })
        );
        assert_eq!(k("KILL USER koha"), None);
        assert_eq!(k("KILL QUERY ID 5"), None);
        assert_eq!(k("KILL 5 6"), None);
        assert_eq!(k("SELECT 1"), None);
        assert_eq!(k("KILLx 5"), None);
        assert_eq!(k("KILL"), None);
    }

    #[test]
    fn translated_statement_names_the_thread() {
        let kill = Kill {
            query_only: true,
            modifier: Some("SOFT"),
            id: 1 << 30,
        };
        assert_eq!(kill.to_sql(42), "KILL SOFT QUERY 42");
    }
}
