//! apps/v1 ControllerRevision: an immutable snapshot of a StatefulSet's or DaemonSet's template (rollout history and undo).

use crate::kinds::prelude::*;

pub(crate) const KIND: Kind = Kind {
    info: ResourceInfo {
        group: "apps",
        version: "v1",
        kind: "ControllerRevision",
        list_kind: "ControllerRevisionList",
        plural: "controllerrevisions",
        singular: "controllerrevision",
        namespaced: true,
        short_names: &[],
        categories: &[],
        verbs: FULL,
        subresources: &[],
    },
    ..Kind::BASE
};
