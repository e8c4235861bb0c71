//! AFL++ entry point for the `handshake` target (see `kohaproxy_fuzz::handshake`).
fn main() {
    afl::fuzz!(|data: &[u8]| kohaproxy_fuzz::handshake(data));
}
