//! The admission hooks of the kinds that have any, one module per kind, and the registry table
//! that maps (group, kind) to them. A kind without an entry gets the generic path only.

mod endpoints;
mod namespaces;
mod nodes;
mod pods;
mod services;

use crate::admission::Registry;

/// Every kind's hooks; `default_toleration_seconds` is the pods' DefaultTolerationSeconds.
pub(crate) fn registry(default_toleration_seconds: i64) -> Registry {
    Registry::default()
        .with("", "Namespace", namespaces::NamespaceHooks)
        .with("", "Node", nodes::NodeHooks)
        .with(
            "",
            "Pod",
            pods::PodHooks {
                default_toleration_seconds,
            },
        )
        .with("", "Service", services::ServiceHooks)
        .with("", "Endpoints", endpoints::EndpointAddresses)
        .with("discovery.k8s.io", "EndpointSlice", endpoints::EndpointAddresses)
}
