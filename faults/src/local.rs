//! This machine's side of a test or benchmark: a free port, Koha's account on a local one.

/// A TCP port on 127.0.0.1 that nothing listens on right now.
pub fn free_port() -> std::io::Result<u16> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
}

/// Koha's user (`koha`/`koha`, as the sandbox creates it) on 127.0.0.1:`port`, over TCP
/// (mysql_async would otherwise switch to the server's Unix socket behind a proxy).
pub fn koha_opts(port: u16) -> mysql_async::Opts {
    mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some("koha"))
        .pass(Some("koha"))
        .prefer_socket(false)
        .into()
}
