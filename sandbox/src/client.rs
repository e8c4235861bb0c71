//! Queries through the `mariadb` command-line client, as root over TCP, and parsing of its
//! batch (`-B`) output. This keeps the crate free of a MySQL client library.
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::error::{Result, SandboxError};
use crate::template::Binaries;

/// How the client prints results.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Output {
    /// `-N -B`: tab-separated rows, no header.
    Plain,
    /// `-B`: a header line before each result set's rows.
    WithHeaders,
}

/// Runs `sql` as root on 127.0.0.1:`port` and returns stdout. With a timeout, a client
/// still running after it is killed (it is our own child) and the query fails.
pub(crate) fn query(
    bins: &Binaries,
    server: &str,
    port: u16,
    sql: &str,
    output: Output,
    timeout: Option<Duration>,
) -> Result<String> {
    let mut cmd = Command::new(&bins.client);
    cmd.args([
        "--no-defaults",
        "-h127.0.0.1",
        &format!("-P{port}"),
        "-uroot",
        "--protocol=TCP",
        "--skip-ssl",
        "--connect-timeout=5",
        "-B",
    ]);
    if output == Output::Plain {
        cmd.arg("-N");
    }
    cmd.arg("-e").arg(sql);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let failed = |output: String| SandboxError::Query {
        server: server.to_string(),
        query: sql.to_string(),
        output,
    };
    let mut child = cmd
        .spawn()
        .map_err(|e| failed(format!("cannot run {}: {e}", bins.client.display())))?;
    let result = match timeout {
        None => child.wait_with_output(),
        Some(limit) => {
            // Read both pipes on threads and poll the child, so a stuck client can be
            // killed through its still-unreaped handle.
            let stdout = child.stdout.take().map(read_all);
            let stderr = child.stderr.take().map(read_all);
            let deadline = std::time::Instant::now() + limit;
            let status = loop {
                match child.try_wait() {
                    Ok(Some(status)) => break Ok(status),
                    Ok(None) if std::time::Instant::now() >= deadline => {
                        let _ = child.kill();
                        let _ = child.wait();
                        return Err(failed(format!("no answer within {limit:?}")));
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                    Err(e) => break Err(e),
                }
            };
            let collect = |h: Option<mpsc::Receiver<Vec<u8>>>| {
                h.and_then(|rx| rx.recv().ok()).unwrap_or_default()
            };
            status.map(|status| std::process::Output {
                status,
                stdout: collect(stdout),
                stderr: collect(stderr),
            })
        }
    };
    let out = result.map_err(|e| failed(format!("cannot wait for the client: {e}")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(failed(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ))
    }
}

/// Reads a pipe to its end on a thread.
fn read_all<R: std::io::Read + Send + 'static>(mut pipe: R) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        let _ = tx.send(buf);
    });
    rx
}

/// The replication part of `SHOW SLAVE STATUS`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct SlaveStatus {
    pub io_running: String,
    pub sql_running: String,
    pub seconds_behind_master: Option<u64>,
    pub master_port: Option<u16>,
    pub last_error: String,
}

/// What one round trip tells about a server.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Probe {
    pub read_only: bool,
    pub gtid_current_pos: String,
    pub gtid_binlog_pos: String,
    pub gtid_slave_pos: String,
    /// None when the server is not a replica.
    pub slave: Option<SlaveStatus>,
}

const PROBE_SQL: &str = "SELECT @@read_only AS ro, @@gtid_current_pos AS cur, \
     @@gtid_binlog_pos AS bin, @@gtid_slave_pos AS sl; SHOW SLAVE STATUS";

/// Reads read_only, the GTID positions and the replica threads in one client call.
pub(crate) fn probe(bins: &Binaries, server: &str, port: u16, timeout: Duration) -> Result<Probe> {
    let text = query(
        bins,
        server,
        port,
        PROBE_SQL,
        Output::WithHeaders,
        Some(timeout),
    )?;
    parse_probe(&text).map_err(|detail| SandboxError::Parse {
        server: server.to_string(),
        detail,
    })
}

fn parse_probe(text: &str) -> Result<Probe, String> {
    let lines: Vec<&str> = text.lines().collect();
    let first = lines
        .get(..2)
        .ok_or_else(|| format!("short output {text:?}"))?;
    let vars = record(first[0], first[1]);
    let get = |k: &str| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let mut probe = Probe {
        read_only: get("ro").ok_or("no read_only")? == "1",
        gtid_current_pos: get("cur").unwrap_or_default(),
        gtid_binlog_pos: get("bin").unwrap_or_default(),
        gtid_slave_pos: get("sl").unwrap_or_default(),
        slave: None,
    };
    if let (Some(header), Some(values)) = (lines.get(2), lines.get(3)) {
        let fields = record(header, values);
        let get = |k: &str| {
            fields
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let last_error = [get("Last_IO_Error"), get("Last_SQL_Error")]
            .into_iter()
            .filter(|e| !e.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        probe.slave = Some(SlaveStatus {
            io_running: get("Slave_IO_Running"),
            sql_running: get("Slave_SQL_Running"),
            seconds_behind_master: get("Seconds_Behind_Master").parse().ok(),
            master_port: get("Master_Port").parse().ok(),
            last_error,
        });
    }
    Ok(probe)
}

/// Pairs a header line with a value line of batch output.
fn record(header: &str, values: &str) -> Vec<(String, String)> {
    header
        .split('\t')
        .zip(values.split('\t'))
        .map(|(k, v)| (k.to_string(), unescape(v)))
        .collect()
}

/// Undoes the batch-mode escaping of `\t`, `\n`, `\0` and `\\`.
fn unescape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('0') => out.push('\0'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

/// True when GTID position `have` includes every domain of `want` at an equal or
/// higher sequence number (`want` empty: always).
pub(crate) fn gtid_covers(have: &str, want: &str) -> bool {
    let parse = |pos: &str| -> Vec<(u32, u64)> {
        pos.split(',')
            .filter_map(|g| {
                let mut parts = g.trim().split('-');
                let domain = parts.next()?.parse().ok()?;
                let _server = parts.next()?;
                let seq = parts.next()?.parse().ok()?;
                Some((domain, seq))
            })
            .collect()
    };
    let have = parse(have);
    parse(want)
        .iter()
        .all(|(d, s)| have.iter().any(|(hd, hs)| hd == d && hs >= s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_of_a_master() {
        let p = parse_probe("ro\tcur\tbin\tsl\n0\t0-1-5\t0-1-5\t\n").unwrap();
        assert!(!p.read_only);
        assert_eq!(p.gtid_binlog_pos, "0-1-5");
        assert_eq!(p.gtid_slave_pos, "");
        assert!(p.slave.is_none());
    }

    #[test]
    fn probe_of_a_replica() {
        let text = "ro\tcur\tbin\tsl\n1\t0-1-5\t0-1-5\t0-1-5\n\
            Slave_IO_State\tMaster_Port\tSlave_IO_Running\tSlave_SQL_Running\tLast_IO_Error\tSeconds_Behind_Master\n\
            Waiting\t3307\tYes\tNo\tbad\\tthing\t0\n";
        let p = parse_probe(text).unwrap();
        let s = p.slave.unwrap();
        assert_eq!(
            (s.io_running.as_str(), s.sql_running.as_str()),
            ("Yes", "No")
        );
        assert_eq!(s.master_port, Some(3307));
        assert_eq!(s.seconds_behind_master, Some(0));
        assert_eq!(s.last_error, "bad\tthing");
    }

    #[test]
    fn gtid_comparison() {
        assert!(gtid_covers("", ""));
        assert!(gtid_covers("0-1-5", "0-1-5"));
        assert!(gtid_covers("0-2-7,1-1-3", "0-1-6,1-1-3"));
        assert!(!gtid_covers("0-1-4", "0-1-5"));
        assert!(!gtid_covers("", "0-1-1"));
        assert!(!gtid_covers("0-1-9", "1-1-1"));
    }
}
