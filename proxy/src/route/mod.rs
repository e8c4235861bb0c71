//! Where each statement goes: the classifier (pure: statement text in, route out) and the
//! router's choice among the servers of the current topology.

pub mod classify;
