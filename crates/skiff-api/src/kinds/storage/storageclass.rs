//! storage.k8s.io/v1 StorageClass: how claims of a class are provisioned.

use crate::kinds::prelude::*;

pub(crate) const KIND: Kind = Kind {
    info: ResourceInfo {
        group: "storage.k8s.io",
        version: "v1",
        kind: "StorageClass",
        list_kind: "StorageClassList",
        plural: "storageclasses",
        singular: "storageclass",
        namespaced: false,
        short_names: &["sc"],
        categories: &[],
        verbs: FULL,
        subresources: &[],
    },
    ..Kind::BASE
};
