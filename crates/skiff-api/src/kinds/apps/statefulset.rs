//! apps/v1 StatefulSet: pods with stable identities and per-pod storage, started and updated in order.

use crate::kinds::prelude::*;

pub(crate) const KIND: Kind = Kind {
    info: ResourceInfo {
        group: "apps",
        version: "v1",
        kind: "StatefulSet",
        list_kind: "StatefulSetList",
        plural: "statefulsets",
        singular: "statefulset",
        namespaced: true,
        short_names: &["sts"],
        categories: ALL,
        verbs: FULL,
        subresources: &["status", "scale"],
    },
    ..Kind::BASE
};
