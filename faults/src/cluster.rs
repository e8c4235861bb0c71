//! Verdicts over a running sandbox cluster: which servers are writable, whether their GTID
//! positions converged, whether a table's checksum agrees everywhere.
//!
//! These are synchronous, like [`Sandbox`] itself: they run the `mariadb` client as root.
//! Server state (read_only, `@@gtid_current_pos`) comes from [`Sandbox::status`], which
//! probes each server with a timeout, so a SIGSTOPped server is reported as not answering
//! rather than hanging the caller. From async code, call them in
//! `tokio::task::spawn_blocking`.
use std::time::{Duration, Instant};

use kohaproxy_sandbox::{ProcessState, Sandbox, SandboxError, ServerStatus};

/// The names of the servers that are running, answer, and have `@@read_only = 0`, in the
/// sandbox's order. After a correct failover there is exactly one; two is a split brain.
/// A server that cannot be asked is not counted as writable.
pub fn writable_servers(sb: &Sandbox) -> Vec<String> {
    match sb.status() {
        Ok(rows) => rows
            .into_iter()
            .filter(|s| s.is_up() && s.read_only == Some(false))
            .map(|s| s.name)
            .collect(),
        Err(e) => {
            tracing::warn!("cannot read the sandbox status: {e}");
            Vec::new()
        }
    }
}

/// `@@gtid_current_pos` of one server (errors if it is down, stopped or does not answer
/// within the sandbox's probe timeout).
pub fn gtid_current_pos(sb: &Sandbox, name: &str) -> Result<String, SandboxError> {
    let rows = sb.status()?;
    let row = find(&rows, name)?;
    answering(row)?;
    row.gtid_current_pos
        .clone()
        .ok_or_else(|| SandboxError::Parse {
            server: name.to_string(),
            detail: "no @@gtid_current_pos".into(),
        })
}

/// Waits until every listed server answers with the same `@@gtid_current_pos` and returns
/// that position. Polls every 100 ms; on timeout the error says what each server had last.
pub fn wait_converged(
    sb: &Sandbox,
    names: &[&str],
    timeout: Duration,
) -> Result<String, SandboxError> {
    let deadline = Instant::now() + timeout;
    loop {
        let rows = sb.status()?;
        let mut positions = Vec::with_capacity(names.len());
        for name in names {
            let row = find(&rows, name)?;
            positions.push((name, answering(row).ok().and(row.gtid_current_pos.clone())));
        }
        if let Some((_, Some(first))) = positions.first() {
            if positions.iter().all(|(_, p)| p.as_ref() == Some(first)) {
                return Ok(first.clone());
            }
        }
        if Instant::now() >= deadline {
            return Err(SandboxError::Timeout {
                what: format!("GTID positions to converge (last seen: {positions:?})"),
                timeout,
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `CHECKSUM TABLE table` on each listed server, as `(name, checksum)`. The checksum is
/// the text the server printed (`NULL` when the table does not exist). Each server must be
/// running and answering (checked first, so a stopped server errors instead of hanging).
pub fn checksums(
    sb: &Sandbox,
    names: &[&str],
    table: &str,
) -> Result<Vec<(String, String)>, SandboxError> {
    let rows = sb.status()?;
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        answering(find(&rows, name)?)?;
        let text = sb.sql(name, &format!("CHECKSUM TABLE {table}"))?;
        // "db.table\t12345": the checksum is the last field of the only row.
        let sum = text
            .lines()
            .next()
            .and_then(|line| line.rsplit('\t').next())
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| SandboxError::Parse {
                server: name.to_string(),
                detail: format!("CHECKSUM TABLE printed {text:?}"),
            })?;
        out.push((name.to_string(), sum.to_string()));
    }
    tracing::debug!(table, ?out, "checksums");
    Ok(out)
}

/// True when `CHECKSUM TABLE table` gives the same value on every listed server (see
/// [`checksums`]). Compare only after [`wait_converged`].
pub fn checksums_equal(sb: &Sandbox, names: &[&str], table: &str) -> Result<bool, SandboxError> {
    let sums = checksums(sb, names, table)?;
    Ok(sums.windows(2).all(|w| w[0].1 == w[1].1))
}

fn find<'a>(rows: &'a [ServerStatus], name: &str) -> Result<&'a ServerStatus, SandboxError> {
    rows.iter()
        .find(|s| s.name == name)
        .ok_or_else(|| SandboxError::UnknownServer {
            name: name.to_string(),
            known: rows
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// Ok when the server runs and answered the status probe.
fn answering(row: &ServerStatus) -> Result<(), SandboxError> {
    match (row.process, &row.error) {
        (ProcessState::Alive, None) => Ok(()),
        (ProcessState::Alive, Some(e)) => Err(SandboxError::Query {
            server: row.name.clone(),
            query: "status probe".into(),
            output: e.clone(),
        }),
        (ProcessState::Stopped, _) | (ProcessState::Down, _) => Err(SandboxError::NotRunning {
            server: row.name.clone(),
        }),
    }
}
