//! Small readers and writers for the protocol's basic types.

use super::Malformed;

/// A bounds-checked cursor over a payload.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    /// A reader over `buf`; `what` names the packet in errors.
    pub fn new(buf: &'a [u8], what: &'static str) -> Self {
        Reader { buf, pos: 0, what }
    }

    fn err(&self) -> Malformed {
        Malformed { what: self.what }
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    /// Whether everything was read.
    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// Next `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        let end = self.pos.checked_add(n).ok_or(self.err())?;
        let s = self.buf.get(self.pos..end).ok_or(self.err())?;
        self.pos = end;
        Ok(s)
    }

    /// One byte.
    pub fn u8(&mut self) -> Result<u8, Malformed> {
        Ok(self.take(1)?[0])
    }

    /// A little-endian u16.
    pub fn u16(&mut self) -> Result<u16, Malformed> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    /// A little-endian u32.
    pub fn u32(&mut self) -> Result<u32, Malformed> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A NUL-terminated string (without the NUL); the rest if there is no NUL.
    pub fn null_str(&mut self) -> Result<&'a [u8], Malformed> {
        let rest = self.remaining();
        match rest.iter().position(|&b| b == 0) {
            Some(i) => {
                self.pos += i + 1;
                Ok(&rest[..i])
            }
            None => Err(self.err()),
        }
    }

    /// A NUL-terminated string, or everything left when the NUL is missing (some clients
    /// omit the final NUL of the last field).
    pub fn null_str_or_rest(&mut self) -> &'a [u8] {
        let rest = self.remaining();
        match rest.iter().position(|&b| b == 0) {
            Some(i) => {
                self.pos += i + 1;
                &rest[..i]
            }
            None => {
                self.pos = self.buf.len();
                rest
            }
        }
    }

    /// A length-encoded integer.
    pub fn lenenc(&mut self) -> Result<u64, Malformed> {
        read_lenenc(self.remaining())
            .map(|(v, n)| {
                self.pos += n;
                v
            })
            .ok_or(self.err())
    }

    /// A length-encoded string.
    pub fn lenenc_bytes(&mut self) -> Result<&'a [u8], Malformed> {
        let n = self.lenenc()?;
        let n = usize::try_from(n).map_err(|_| self.err())?;
        self.take(n)
    }
}

/// Decodes a length-encoded integer at the start of `b`: (value, bytes used).
/// `None` if `b` is too short or starts with a byte that is not a length (0xfb NULL, 0xff).
#[inline]
pub fn read_lenenc(b: &[u8]) -> Option<(u64, usize)> {
    let first = *b.first()?;
    let n = match first {
        0..=0xfa => return Some((first as u64, 1)),
        0xfc => 2,
        0xfd => 3,
        0xfe => 8,
        _ => return None,
    };
    let bytes = b.get(1..1 + n)?;
    let mut v = 0u64;
    for (i, &x) in bytes.iter().enumerate() {
        v |= (x as u64) << (8 * i);
    }
    Some((v, 1 + n))
}

/// Appends a length-encoded integer.
pub fn put_lenenc(out: &mut Vec<u8>, v: u64) {
    match v {
        0..=0xfa => out.push(v as u8),
        0xfb..=0xffff => {
            out.push(0xfc);
            out.extend_from_slice(&(v as u16).to_le_bytes());
        }
        0x1_0000..=0xff_ffff => {
            out.push(0xfd);
            out.extend_from_slice(&(v as u32).to_le_bytes()[..3]);
        }
        _ => {
            out.push(0xfe);
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
}

/// Appends a NUL-terminated string.
pub fn put_null_str(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(s);
    out.push(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenenc_round_trips_at_every_width() {
        for v in [
            0u64,
            250,
            251,
            0xffff,
            0x1_0000,
            0xff_ffff,
            0x100_0000,
            u64::MAX,
        ] {
            let mut out = Vec::new();
            put_lenenc(&mut out, v);
            assert_eq!(read_lenenc(&out), Some((v, out.len())), "value {v}");
        }
    }

    #[test]
    fn lenenc_rejects_short_and_invalid_input() {
        assert_eq!(read_lenenc(&[]), None);
        assert_eq!(read_lenenc(&[0xfc, 1]), None);
        assert_eq!(read_lenenc(&[0xfe, 1, 2, 3]), None);
        assert_eq!(read_lenenc(&[0xfb]), None);
        assert_eq!(read_lenenc(&[0xff, 0, 0]), None);
    }

    #[test]
    fn reader_never_reads_past_the_end() {
        let mut r = Reader::new(&[1, 2, 3], "test");
        assert_eq!(r.u16(), Ok(0x0201));
        assert!(r.u16().is_err());
        assert_eq!(r.u8(), Ok(3));
        assert!(r.u8().is_err());
        assert!(Reader::new(b"abc", "t").null_str().is_err());
        assert_eq!(Reader::new(b"abc", "t").null_str_or_rest(), b"abc");
    }
}
