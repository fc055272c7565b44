//! networking.k8s.io/v1 NetworkPolicy: which traffic selected pods may receive and send, enforced by each node.

use crate::kinds::prelude::*;

pub(crate) const KIND: Kind = Kind {
    info: ResourceInfo {
        group: "networking.k8s.io",
        version: "v1",
        kind: "NetworkPolicy",
        list_kind: "NetworkPolicyList",
        plural: "networkpolicies",
        singular: "networkpolicy",
        namespaced: true,
        short_names: &["netpol"],
        categories: &[],
        verbs: FULL,
        subresources: &[],
    },
    ..Kind::BASE
};
