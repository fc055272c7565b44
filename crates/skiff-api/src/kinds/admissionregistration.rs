//! The admissionregistration.k8s.io group: admission webhook configurations and CEL admission
//! policies.

pub(crate) mod policies;
pub(crate) mod webhooks;
