//! apiextensions.k8s.io/v1 CustomResourceDefinition: the kind that defines kinds.

use crate::kinds::prelude::*;

pub(crate) const CRD: Kind = Kind {
    info: ResourceInfo {
        group: "apiextensions.k8s.io",
        version: "v1",
        kind: "CustomResourceDefinition",
        list_kind: "CustomResourceDefinitionList",
        plural: "customresourcedefinitions",
        singular: "customresourcedefinition",
        namespaced: false,
        short_names: &["crd", "crds"],
        categories: &["api-extensions"],
        verbs: FULL,
        subresources: &["status"],
    },
    ..Kind::BASE
};
