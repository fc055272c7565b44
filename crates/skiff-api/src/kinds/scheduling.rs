//! The scheduling.k8s.io group.

pub(crate) mod priorityclass;
