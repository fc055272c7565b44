//! apiregistration.k8s.io/v1 APIService: a group/version served by this server ("Local") or
//! by an extension API server behind a Service.

use crate::kinds::prelude::*;

pub(crate) const API_SERVICE: Kind = Kind {
    info: ResourceInfo {
        group: "apiregistration.k8s.io",
        version: "v1",
        kind: "APIService",
        list_kind: "APIServiceList",
        plural: "apiservices",
        singular: "apiservice",
        namespaced: false,
        short_names: &[],
        categories: &["api-extensions"],
        verbs: FULL,
        subresources: &["status"],
    },
    ..Kind::BASE
};
