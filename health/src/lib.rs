//! kohaproxy-health
