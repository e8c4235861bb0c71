//! The packet codec: `wire` readers and writers, and the OK/ERR/EOF helpers of `packets`.

use kohaproxy_proxy::protocol::packets::{
    eof_status, err_code, is_result_terminator, ok_packet, ok_status, packet, terminator_status,
    ErrPacket,
};
use kohaproxy_proxy::protocol::wire::{put_lenenc, read_lenenc, Reader};
use kohaproxy_proxy::protocol::{payload_len, Caps, HEADER_LEN, MAX_PAYLOAD};

/// Input: the bytes are both the program and the buffer of a `Reader` (each byte picks the
/// next read), then every packet helper reads them as a payload, and the writers encode
/// values taken from them and read them back.
pub fn codec(data: &[u8]) {
    reader_program(data);
    lenenc_round_trip(data);
    helpers(data);
    writers(data);
}

/// Runs one `Reader` method per input byte over the input itself; every read must move the
/// position by exactly what it returned, and a failed read of a fixed-size value, a string
/// or a length must not move it (`lenenc_bytes` may: its length was read).
fn reader_program(data: &[u8]) {
    let mut r = Reader::new(data, "fuzz");
    for &op in data.iter().take(64) {
        let before = r.remaining().len();
        let used = match op % 8 {
            0 => r.u8().map(|_| 1),
            1 => r.u16().map(|_| 2),
            2 => r.u32().map(|_| 4),
            3 => r.take(usize::from(op >> 3)).map(<[u8]>::len),
            4 => r.null_str().map(|s| s.len() + 1),
            5 => {
                let s = r.null_str_or_rest();
                Ok(if s.len() < before {
                    s.len() + 1
                } else {
                    s.len()
                })
            }
            6 => r.lenenc().map(|_| before - r.remaining().len()),
            _ => r
                .lenenc_bytes()
                .map(|s| s.len() + read_lenenc(&data[data.len() - before..]).map_or(0, |x| x.1)),
        };
        let after = r.remaining().len();
        match used {
            Ok(n) => assert_eq!(before - after, n, "read {op:#x} moved the wrong distance"),
            Err(_) if op % 8 == 7 => {}
            Err(_) => assert_eq!(before, after, "failed read {op:#x} moved the position"),
        }
        assert_eq!(r.is_empty(), after == 0);
    }
}

/// A length-encoded integer that reads is written back to something that reads the same,
/// and byte for byte the same when it was written in its shortest form.
fn lenenc_round_trip(data: &[u8]) {
    let Some((v, n)) = read_lenenc(data) else {
        return;
    };
    assert!(n <= data.len() && n >= 1);
    let mut out = Vec::new();
    put_lenenc(&mut out, v);
    assert_eq!(read_lenenc(&out), Some((v, out.len())));
    if out.len() == n {
        assert_eq!(out, &data[..n], "shortest lenenc form differs");
    }
}

/// The header readers never panic, and agree with each other.
fn helpers(data: &[u8]) {
    let _ = eof_status(data);
    let _ = err_code(data);
    let ok = ok_status(data);
    for caps in [Caps(0), Caps(Caps::DEPRECATE_EOF)] {
        let t = terminator_status(data, caps);
        if caps.has(Caps::DEPRECATE_EOF) {
            assert_eq!(t, ok);
        }
        if let Some(&first) = data.first() {
            let _ = is_result_terminator(first, data.len(), caps);
        }
    }
    if data.len() >= HEADER_LEN {
        assert!(payload_len(data) <= MAX_PAYLOAD);
    }
}

/// The writers frame what they are given, and the readers read it back.
fn writers(data: &[u8]) {
    let seq = data.first().copied().unwrap_or(0);
    let p = packet(seq, data);
    assert_eq!(payload_len(&p), data.len());
    assert_eq!(p[3], seq);
    assert_eq!(&p[HEADER_LEN..], data);

    let (head, rest) = crate::prefix::<10>(data);
    let code = u16::from_le_bytes([head[0], head[1]]);
    let status = u16::from_le_bytes([head[0], head[1]]);
    let rows = u64::from_le_bytes([
        head[2], head[3], head[4], head[5], head[6], head[7], head[8], head[9],
    ]);
    let message = String::from_utf8_lossy(rest);
    let state = String::from_utf8_lossy(rest.get(..5).unwrap_or_default());
    let e = ErrPacket::new(code, &state, message.clone()).to_packet(seq);
    assert_eq!(payload_len(&e) + HEADER_LEN, e.len());
    assert_eq!(err_code(&e[HEADER_LEN..]), Some(code));
    assert!(e[HEADER_LEN + 9..].ends_with(message.as_bytes()));

    let ok = ok_packet(seq, rows, status);
    assert_eq!(payload_len(&ok) + HEADER_LEN, ok.len());
    assert_eq!(ok_status(&ok[HEADER_LEN..]), Some(status));
}
