//! autoscaling/v2 HorizontalPodAutoscaler: scales a workload's scale subresource from metrics.

use crate::kinds::prelude::*;

pub(crate) const KIND: Kind = Kind {
    info: ResourceInfo {
        group: "autoscaling",
        version: "v2",
        kind: "HorizontalPodAutoscaler",
        list_kind: "HorizontalPodAutoscalerList",
        plural: "horizontalpodautoscalers",
        singular: "horizontalpodautoscaler",
        namespaced: true,
        short_names: &["hpa"],
        categories: ALL,
        verbs: FULL,
        subresources: &["status"],
    },
    ..Kind::BASE
};
