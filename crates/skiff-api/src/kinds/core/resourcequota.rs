//! core/v1 ResourceQuota: aggregate limits on what a namespace may consume.

use crate::kinds::prelude::*;

pub(crate) const KIND: Kind = Kind {
    info: ResourceInfo {
        group: "",
        version: "v1",
        kind: "ResourceQuota",
        list_kind: "ResourceQuotaList",
        plural: "resourcequotas",
        singular: "resourcequota",
        namespaced: true,
        short_names: &["quota"],
        categories: &[],
        verbs: FULL,
        subresources: &["status"],
    },
    ..Kind::BASE
};
