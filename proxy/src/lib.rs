//! kohaproxy-proxy
