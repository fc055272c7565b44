//! core/v1 PersistentVolumeClaim: a pod's request for storage, bound to a PersistentVolume.

use crate::kinds::prelude::*;

pub(crate) const KIND: Kind = Kind {
    info: ResourceInfo {
        group: "",
        version: "v1",
        kind: "PersistentVolumeClaim",
        list_kind: "PersistentVolumeClaimList",
        plural: "persistentvolumeclaims",
        singular: "persistentvolumeclaim",
        namespaced: true,
        short_names: &["pvc"],
        categories: &[],
        verbs: FULL,
        subresources: &["status"],
    },
    ..Kind::BASE
};
