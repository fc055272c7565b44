//! The coordination.k8s.io group.

pub(crate) mod lease;
