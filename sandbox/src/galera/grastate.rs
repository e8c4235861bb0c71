//! grastate.dat and `--wsrep-recover`: a node's saved position, and bootstrapping from it.

/// The all-zero Galera UUID of a node that never joined a cluster.
const NIL_UUID: &str = "00000000-0000-0000-0000-000000000000";

/// What grastate.dat says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Grastate {
    pub uuid: String,
    pub seqno: i64,
    pub safe_to_bootstrap: bool,
}

impl Grastate {
    /// The node crashed (or is mid-state-transfer): its position is only in InnoDB.
    pub fn needs_recovery(&self) -> bool {
        self.seqno == -1 && !self.uuid.is_empty() && self.uuid != NIL_UUID
    }
}

/// Parses grastate.dat (missing fields: empty uuid, seqno -1, not safe to bootstrap).
pub(crate) fn parse_grastate(text: &str) -> Grastate {
    let mut state = Grastate {
        uuid: String::new(),
        seqno: -1,
        safe_to_bootstrap: false,
    };
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match key.trim() {
            "uuid" => state.uuid = value.to_string(),
            "seqno" => state.seqno = value.parse().unwrap_or(-1),
            "safe_to_bootstrap" => state.safe_to_bootstrap = value == "1",
            _ => {}
        }
    }
    state
}

/// grastate.dat with `safe_to_bootstrap: 1` (replacing the line, or appending it).
pub(crate) fn with_safe_to_bootstrap(text: &str) -> String {
    let mut found = false;
    let mut out = String::with_capacity(text.len() + 24);
    for line in text.lines() {
        if line.trim_start().starts_with("safe_to_bootstrap:") {
            out.push_str("safe_to_bootstrap: 1");
            found = true;
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    if !found {
        out.push_str("safe_to_bootstrap: 1\n");
    }
    out
}

/// The position `mariadbd --wsrep-recover` logged (`UUID:SEQNO[,GTID]`), unless it found
/// none.
pub(crate) fn parse_recovered_position(log: &str) -> Option<String> {
    const MARK: &str = "WSREP: Recovered position: ";
    let pos = log
        .lines()
        .filter_map(|l| l.split_once(MARK).map(|(_, p)| p.trim()))
        .next_back()?;
    let (uuid, rest) = pos.split_once(':')?;
    let seqno = rest.split(',').next().unwrap_or_default();
    if uuid == NIL_UUID || seqno == "-1" || seqno.parse::<i64>().is_err() {
        None
    } else {
        Some(pos.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CRASHED: &str = "# GALERA saved state\nversion: 2.1\n\
        uuid:    16a652bb-f0b4-11f1-a03d-9fd61b7b9614\nseqno:   -1\nsafe_to_bootstrap: 0\n";

    #[test]
    fn grastate_parsing_and_editing() {
        let g = parse_grastate(CRASHED);
        assert_eq!(g.uuid, "16a652bb-f0b4-11f1-a03d-9fd61b7b9614");
        assert_eq!(g.seqno, -1);
        assert!(!g.safe_to_bootstrap);
        assert!(g.needs_recovery());

        let edited = with_safe_to_bootstrap(CRASHED);
        assert_eq!(
            edited,
            CRASHED.replace("safe_to_bootstrap: 0", "safe_to_bootstrap: 1")
        );
        assert!(parse_grastate(&edited).safe_to_bootstrap);
        assert_eq!(with_safe_to_bootstrap(&edited), edited);

        let old = "# GALERA saved state\nversion: 2.1\nuuid: x\nseqno: 12\n";
        let edited = with_safe_to_bootstrap(old);
        assert_eq!(edited, format!("{old}safe_to_bootstrap: 1\n"));
        let g = parse_grastate(&edited);
        assert_eq!(g.seqno, 12);
        assert!(!g.needs_recovery());

        let fresh = parse_grastate(&format!("uuid: {NIL_UUID}\nseqno: -1\n"));
        assert!(!fresh.needs_recovery());
    }

    #[test]
    fn recovered_position() {
        let log = "2026-12-05 13:57:36 0 [Note] InnoDB: something\n\
            2026-12-05 13:57:36 0 [Note] WSREP: Recovered position: \
            b6b94266-f0b3-11f1-8d90-dea170f96db2:9,100-1-4\n";
        assert_eq!(
            parse_recovered_position(log).as_deref(),
            Some("b6b94266-f0b3-11f1-8d90-dea170f96db2:9,100-1-4")
        );
        let none = format!("x [Note] WSREP: Recovered position: {NIL_UUID}:-1\n");
        assert_eq!(parse_recovered_position(&none), None);
        assert_eq!(parse_recovered_position("nothing here\n"), None);
    }
}
