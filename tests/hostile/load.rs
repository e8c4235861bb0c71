//! Slow readers of a big result and connect-and-vanish loops.

#[allow(unused_imports)]
use super::*;

// ---------------------------------------------------------------------------------------
// 2. Slow readers.
// ---------------------------------------------------------------------------------------

/// Result rows of 1 MB each (64 MiB): far more than the kernel's socket buffers can hold.
pub(super) const BIG_QUERY: &[u8] = b"\x03SELECT REPEAT('x', 1000000) FROM seq_1_to_64";

/// A client with a small receive buffer that asks for `BIG_QUERY` and reads its answer at
/// about 10 KiB/s (1 KiB every 100 ms) for `secs`, then leaves; returns the bytes read.
pub(super) async fn slow_reader(port: u16, secs: u64) -> Result<u64, String> {
    let socket = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
    socket
        .set_recv_buffer_size(16 * 1024)
        .map_err(|e| e.to_string())?;
    let mut s = socket
        .connect(([127, 0, 0, 1], port).into())
        .await
        .map_err(|e| e.to_string())?;
    let (_, greeting) = read_packet(&mut s).await.ok_or("no greeting")?;
    let greeting = HandshakeV10::decode(&greeting).map_err(|e| e.to_string())?;
    s.write_all(&packet(1, &login_payload(&greeting, "koha", "koha", false)))
        .await
        .map_err(|e| e.to_string())?;
    let (_, ok) = read_packet(&mut s).await.ok_or("no login reply")?;
    if ok.first() != Some(&0) {
        return Err(format!("login refused: {ok:?}"));
    }
    s.write_all(&packet(0, BIG_QUERY))
        .await
        .map_err(|e| e.to_string())?;
    let end = Instant::now() + Duration::from_secs(secs);
    let mut pace = tokio::time::interval(Duration::from_millis(100));
    let mut buf = [0u8; 1024];
    let mut read = 0u64;
    while Instant::now() < end {
        pace.tick().await;
        match s.read(&mut buf).await {
            Ok(0) => return Err(format!("the proxy closed the result after {read} bytes")),
            Ok(n) => read += n as u64,
            Err(e) => return Err(format!("read failed after {read} bytes: {e}")),
        }
    }
    Ok(read)
}

/// Samples the proxy's VmRSS every 200 ms until `stop`; returns the largest seen (KiB).
pub(super) async fn sample_rss(pid: u32, stop: Arc<AtomicBool>) -> u64 {
    let mut max = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        max = max.max(ProcStats::of(pid).rss_kib);
    }
    max
}

// ---------------------------------------------------------------------------------------
// 3. Connect and vanish.
// ---------------------------------------------------------------------------------------

/// Ways a client vanishes, in the order `vanish_once` takes them.
pub(super) const VANISH_KINDS: [&str; 5] = [
    "close at once",
    "close after the greeting",
    "close mid-login",
    "close after sending a valid login",
    "reset after the greeting",
];

/// Connection number `i` connects and vanishes the `i % 5`th way (see `VANISH_KINDS`);
/// returns the code when the proxy refused it at the greeting.
pub(super) async fn vanish_once(port: u16, i: u64) -> Result<Option<u16>, String> {
    let kind = (i % VANISH_KINDS.len() as u64) as usize;
    if kind == 0 {
        let s = TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| e.to_string())?;
        drop(s);
        return Ok(None);
    }
    let (mut s, greeting) = match greet(port).await {
        Ok(g) => g,
        Err(LoginFail::Refused(code, _)) => return Ok(Some(code)),
        Err(LoginFail::Broken(e)) => return Err(e),
    };
    let login = packet(1, &login_payload(&greeting, "koha", "koha", false));
    match kind {
        1 => {}
        2 => {
            let _ = s.write_all(&login[..login.len() / 2]).await;
        }
        3 => {
            let _ = s.write_all(&login).await;
        }
        _ => s.set_zero_linger().map_err(|e| e.to_string())?,
    }
    drop(s);
    Ok(None)
}
