//! core/v1 ComponentStatus (deprecated upstream, still listed by kubectl get cs): the health of the control plane's components, computed on read.

use crate::kinds::prelude::*;

pub(crate) const KIND: Kind = Kind {
    info: ResourceInfo {
        group: "",
        version: "v1",
        kind: "ComponentStatus",
        list_kind: "ComponentStatusList",
        plural: "componentstatuses",
        singular: "componentstatus",
        namespaced: false,
        short_names: &["cs"],
        categories: &[],
        verbs: GET_LIST,
        subresources: &[],
    },
    ..Kind::BASE
};
