//! The discovery.k8s.io group.

pub(crate) mod endpointslice;
