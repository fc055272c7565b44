//! networking.k8s.io/v1 IngressClass: names the controller that implements a class of Ingresses.

use crate::kinds::prelude::*;

pub(crate) const KIND: Kind = Kind {
    info: ResourceInfo {
        group: "networking.k8s.io",
        version: "v1",
        kind: "IngressClass",
        list_kind: "IngressClassList",
        plural: "ingressclasses",
        singular: "ingressclass",
        namespaced: false,
        short_names: &[],
        categories: &[],
        verbs: FULL,
        subresources: &[],
    },
    ..Kind::BASE
};
