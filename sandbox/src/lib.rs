//! kohaproxy-sandbox
