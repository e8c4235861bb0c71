//! Where each statement goes: the classifier (pure: statement text in, route out) and the
//! router's choice among the servers of the current topology.

pub mod causal;
pub mod classify;
pub mod state;
pub mod target;
