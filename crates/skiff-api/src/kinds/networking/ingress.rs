//! networking.k8s.io/v1 Ingress: HTTP routing rules for an Ingress controller (skiff ships none yet).

use crate::kinds::prelude::*;

pub(crate) const KIND: Kind = Kind {
    info: ResourceInfo {
        group: "networking.k8s.io",
        version: "v1",
        kind: "Ingress",
        list_kind: "IngressList",
        plural: "ingresses",
        singular: "ingress",
        namespaced: true,
        short_names: &["ing"],
        categories: &[],
        verbs: FULL,
        subresources: &["status"],
    },
    ..Kind::BASE
};
