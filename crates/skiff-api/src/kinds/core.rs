//! The core (legacy, "") group: v1 kinds.

pub(crate) mod configmap;
pub(crate) mod endpoints;
pub(crate) mod event;
pub(crate) mod namespace;
pub(crate) mod node;
pub(crate) mod pod;
pub(crate) mod replicationcontroller;
pub(crate) mod secret;
pub(crate) mod service;
pub(crate) mod serviceaccount;
