//! The data path: accepts MySQL clients, authenticates them, and carries their sessions to
//! the backend servers, forwarding packets verbatim.

/// Why the proxy stopped.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The configured address.
        addr: std::net::SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Runs the proxy until shutdown.
pub async fn run(_config: kohaproxy_config::Config) -> Result<(), ProxyError> {
    unimplemented!()
}
