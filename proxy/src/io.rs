//! Whole-packet reads for the connection phase (the command phase streams instead).

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::protocol::{payload_len, HEADER_LEN, MAX_PAYLOAD};

/// Why a packet could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The socket failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The peer closed the connection.
    #[error("connection closed by peer")]
    Closed,
    /// The packet is larger than allowed at this point.
    #[error("packet of {0} bytes is too large here")]
    TooLarge(usize),
}

/// Capacity a connection's read buffer starts with.
pub const INITIAL_BUFFER: usize = 4 * 1024;

/// Largest free space a read asks for: a session moving big rows grows its buffer up to
/// this (plus what it holds) and keeps it; a session of small statements stays at a few
/// KiB, so idle connections cost kilobytes.
pub const MAX_READ: usize = 64 * 1024;

/// Makes room for the next read in `buf`: at least 1 KiB free, doubling up to `MAX_READ`.
/// An empty buffer reuses its allocation from the start (no allocation per packet).
#[inline]
pub fn make_room(buf: &mut BytesMut) {
    if buf.capacity() - buf.len() < 1024 {
        buf.reserve(buf.capacity().clamp(INITIAL_BUFFER, MAX_READ));
    }
}

/// Reads bytes into `buf` until it holds at least `n`.
pub async fn fill<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut BytesMut,
    n: usize,
) -> Result<(), ReadError> {
    while buf.len() < n {
        buf.reserve(n - buf.len());
        make_room(buf);
        if r.read_buf(buf).await? == 0 {
            return Err(ReadError::Closed);
        }
    }
    Ok(())
}

/// Reads one whole packet of at most `max` payload bytes (never a multi-packet message):
/// returns its sequence id and payload, and leaves any further bytes in `buf`.
pub async fn read_packet<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut BytesMut,
    max: usize,
) -> Result<(u8, BytesMut), ReadError> {
    fill(r, buf, HEADER_LEN).await?;
    let len = payload_len(buf);
    if len > max || len >= MAX_PAYLOAD {
        return Err(ReadError::TooLarge(len));
    }
    fill(r, buf, HEADER_LEN + len).await?;
    let seq = buf[3];
    buf.advance(HEADER_LEN);
    Ok((seq, buf.split_to(len)))
}

/// Reads one whole packet of at most `max` payload bytes without reading anything past it
/// (two exact reads): for the packet after which a client may start TLS, whose first
/// bytes must stay in the socket for the TLS handshake.
pub async fn read_packet_exact<R: AsyncRead + Unpin>(
    r: &mut R,
    max: usize,
) -> Result<(u8, BytesMut), ReadError> {
    let mut header = [0u8; HEADER_LEN];
    read_exact(r, &mut header).await?;
    let len = payload_len(&header);
    if len > max || len >= MAX_PAYLOAD {
        return Err(ReadError::TooLarge(len));
    }
    let mut payload = BytesMut::zeroed(len);
    read_exact(r, &mut payload).await?;
    Ok((header[3], payload))
}

async fn read_exact<R: AsyncRead + Unpin>(r: &mut R, buf: &mut [u8]) -> Result<(), ReadError> {
    match r.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(ReadError::Closed),
        Err(e) => Err(ReadError::Io(e)),
    }
}

/// Writes one packet (payload shorter than 16 MiB - 1) with sequence id `seq`.
pub async fn write_packet<W: AsyncWrite + Unpin>(
    w: &mut W,
    seq: u8,
    payload: &[u8],
) -> std::io::Result<()> {
    w.write_all(&crate::protocol::packets::packet(seq, payload))
        .await
}
