//! Commands the proxy runs itself on a backend connection (its session tracking, state
//! replay on replicas, causal waits and position reads): each response is read whole here
//! and never reaches the client. A client's statement whose answer must not reach the
//! client (a replica turned out to lack a write) is dropped with `discard`.

use std::time::Duration;

use bytes::Buf;
use tokio::io::AsyncReadExt;

use crate::backend::Backend;
use crate::io::{read_packet, write_packet};
use crate::protocol::packets::{err_code, is_result_terminator, ERR, OK};
use crate::protocol::relay::{Relay, Scan};
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
    within(limit, exchange(backend, payload)).await
}

async fn exchange(backend: &mut Backend, payload: &[u8]) -> Result<Reply, String> {
    write_packet(&mut backend.stream, 0, payload)
        .await
        .map_err(|e| e.to_string())?;
    receive(backend, payload[0]).await
}

/// Appends a COM_QUERY packet for `sql` (sequence id 0) to `out`, to be sent with others
/// in one write.
pub(crate) fn push_query(out: &mut Vec<u8>, sql: &[u8]) {
    let len = 1 + sql.len();
    out.extend_from_slice(&(len as u32).to_le_bytes()[..3]);
    out.push(0);
    out.push(command::QUERY);
    out.extend_from_slice(sql);
}

/// Reads the whole response to a command `cmd` sent earlier on `backend`, within `limit`.
pub(crate) async fn receive_within(
    backend: &mut Backend,
    cmd: u8,
    limit: Duration,
) -> Result<Reply, String> {
    within(limit, receive(backend, cmd)).await
}

/// Runs `work`, or fails with "no answer" after `limit`.
async fn within<T>(
    limit: Duration,
    work: impl std::future::Future<Output = Result<T, String>>,
) -> Result<T, String> {
    match tokio::time::timeout(limit, work).await {
        Ok(r) => r,
        Err(_) => Err(format!("no answer within {} ms", limit.as_millis())),
    }
}

/// Reads and drops a whole response (any size: it is scanned in place, never buffered
/// whole) to a command sent earlier on `backend`, within `limit`.
pub(crate) async fn discard(
    backend: &mut Backend,
    tracker: ResponseTracker,
    limit: Duration,
) -> Result<(), String> {
    let drain = async {
        let mut relay = Relay::new(tracker);
        loop {
            let (n, scan) = relay.scan(&backend.buf).map_err(|e| e.to_string())?;
            backend.buf.advance(n);
            match scan {
                Scan::Done => return Ok(()),
                Scan::NeedMore => {}
                Scan::LocalInfile | Scan::StateOk(_) => {
                    return Err("unexpected LOCAL INFILE request or state OK".into())
                }
            }
            crate::io::make_room(&mut backend.buf);
            if backend
                .stream
                .read_buf(&mut backend.buf)
                .await
                .map_err(|e| e.to_string())?
                == 0
            {
                return Err("connection closed".into());
            }
        }
    };
    within(limit, drain).await
}

async fn receive(backend: &mut Backend, cmd: u8) -> Result<Reply, String> {
    let caps = backend.caps;
    let Some(mut tracker) = ResponseTracker::for_command(cmd, caps) else {
        return Ok(Reply::Ok(Vec::new()));
    };
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
