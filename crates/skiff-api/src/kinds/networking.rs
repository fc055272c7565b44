//! The networking.k8s.io group.

pub(crate) mod ingress;
pub(crate) mod ingressclass;
pub(crate) mod networkpolicy;
