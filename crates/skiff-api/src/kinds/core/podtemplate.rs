//! core/v1 PodTemplate: a stored pod template.

use crate::kinds::prelude::*;

pub(crate) const KIND: Kind = Kind {
    info: ResourceInfo {
        group: "",
        version: "v1",
        kind: "PodTemplate",
        list_kind: "PodTemplateList",
        plural: "podtemplates",
        singular: "podtemplate",
        namespaced: true,
        short_names: &[],
        categories: &[],
        verbs: FULL,
        subresources: &[],
    },
    ..Kind::BASE
};
