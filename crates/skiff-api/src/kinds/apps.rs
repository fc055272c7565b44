//! The apps group: v1 workload kinds.

pub(crate) mod daemonset;
pub(crate) mod deployment;
pub(crate) mod replicaset;
