//! Commands the proxy runs itself on a backend connection (its session tracking, state
//! replay on replicas, causal waits): each response is read whole here and never reaches
//! the client.

use std::time::Duration;

use crate::backend::Backend;
use crate::io::{read_packet, write_packet};
use crate::protocol::packets::{err_code, is_result_terminator, ERR, OK};
use crate::protocol::response::ResponseTracker;
use crate::protocol::wire::Reader;
use crate::protocol::{command, Caps};

/// Largest response packet an internal command accepts.
const MAX_PACKET: usize = 1 << 20;

/// What the server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reply {
    /// An OK; its payload.
    Ok(Vec<u8>),
    /// An ERR: number and message.
    Err(u16, String),
    /// A result set: the first column of its first row (`None` for NULL or no row).
    Value(Option<Vec<u8>>),
}

/// Runs `sql` (a COM_QUERY) on `backend`, within `limit`.
pub(crate) async fn query(
    backend: &mut Backend,
    sql: &[u8],
    limit: Duration,
) -> Result<Reply, String> {
    let mut payload = Vec::with_capacity(1 + sql.len());
    payload.push(command::QUERY);
    payload.extend_from_slice(sql);
    run(backend, &payload, limit).await
}

/// Sends the command `payload` on `backend` and reads its whole response, within `limit`.
pub(crate) async fn run(
    backend: &mut Backend,
    payload: &[u8],
    limit: Duration,
) -> Result<Reply, String> {
    match tokio::time::timeout(limit, exchange(backend, payload)).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {} ms", limit.as_millis())),
    }
}

async fn exchange(backend: &mut Backend, payload: &[u8]) -> Result<Reply, String> {
    let caps = backend.caps;
    let Some(mut tracker) = ResponseTracker::for_command(payload[0], caps) else {
        write_packet(&mut backend.stream, 0, payload)
            .await
            .map_err(|e| e.to_string())?;
        return Ok(Reply::Ok(Vec::new()));
    };
    write_packet(&mut backend.stream, 0, payload)
        .await
        .map_err(|e| e.to_string())?;
    let mut index = 0u64;
    let mut first_row_at = None;
    let mut reply = None;
    loop {
        let (_, p) = read_packet(&mut backend.stream, &mut backend.buf, MAX_PACKET)
            .await
            .map_err(|e| e.to_string())?;
        let head = &p[..p.len().min(crate::protocol::response::PEEK)];
        let step = tracker
            .on_packet(p.len(), head)
            .map_err(|e| e.to_string())?;
        if index == 0 {
            match p.first() {
                Some(&OK) => reply = Some(Reply::Ok(p.to_vec())),
                Some(&ERR) => {
                    let message = String::from_utf8_lossy(p.get(9..).unwrap_or_default());
                    reply = Some(Reply::Err(err_code(&p).unwrap_or(0), message.into_owned()));
                }
                _ => {
                    let columns = Reader::new(&p, "column count")
                        .lenenc()
                        .map_err(|e| e.to_string())?;
                    let eof = u64::from(!caps.has(Caps::DEPRECATE_EOF));
                    first_row_at = Some(1 + columns + eof);
                    reply = Some(Reply::Value(None));
                }
            }
        } else if Some(index) == first_row_at {
            let first = p.first().copied().unwrap_or(0);
            if first == ERR {
                let message = String::from_utf8_lossy(p.get(9..).unwrap_or_default());
                reply = Some(Reply::Err(err_code(&p).unwrap_or(0), message.into_owned()));
            } else if !is_result_terminator(first, p.len(), caps) && first != 0xfb {
                let value = Reader::new(&p, "row")
                    .lenenc_bytes()
                    .map_err(|e| e.to_string())?;
                reply = Some(Reply::Value(Some(value.to_vec())));
            }
        }
        index += 1;
        if step == crate::protocol::response::Step::Done {
            return reply.ok_or_else(|| "empty response".to_string());
        }
        if step == crate::protocol::response::Step::LocalInfile {
            return Err("unexpected LOCAL INFILE request".into());
        }
    }
}
