//! core/v1 PersistentVolume: a piece of storage on the cluster (hostPath, local), bound to one claim.

use crate::kinds::prelude::*;

pub(crate) const KIND: Kind = Kind {
    info: ResourceInfo {
        group: "",
        version: "v1",
        kind: "PersistentVolume",
        list_kind: "PersistentVolumeList",
        plural: "persistentvolumes",
        singular: "persistentvolume",
        namespaced: false,
        short_names: &["pv"],
        categories: &[],
        verbs: FULL,
        subresources: &["status"],
    },
    ..Kind::BASE
};
