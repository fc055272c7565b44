//! The storage.k8s.io group.

pub(crate) mod storageclass;
