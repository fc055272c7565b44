//! scheduling.k8s.io/v1 PriorityClass: a named pod priority (resolved into `spec.priority` on create).

use crate::kinds::prelude::*;

pub(crate) const KIND: Kind = Kind {
    info: ResourceInfo {
        group: "scheduling.k8s.io",
        version: "v1",
        kind: "PriorityClass",
        list_kind: "PriorityClassList",
        plural: "priorityclasses",
        singular: "priorityclass",
        namespaced: false,
        short_names: &["pc"],
        categories: &[],
        verbs: FULL,
        subresources: &[],
    },
    ..Kind::BASE
};
