//! The events.k8s.io group.

pub(crate) mod event;
