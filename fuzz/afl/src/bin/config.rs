//! AFL++ entry point for the `config` target (see `kohaproxy_fuzz::config`).
fn main() {
    afl::fuzz!(|data: &[u8]| kohaproxy_fuzz::config(data));
}
