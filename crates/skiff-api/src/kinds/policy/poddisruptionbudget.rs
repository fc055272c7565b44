//! policy/v1 PodDisruptionBudget: how many of a set of pods voluntary disruptions (evictions) may take down.

use crate::kinds::prelude::*;

pub(crate) const KIND: Kind = Kind {
    info: ResourceInfo {
        group: "policy",
        version: "v1",
        kind: "PodDisruptionBudget",
        list_kind: "PodDisruptionBudgetList",
        plural: "poddisruptionbudgets",
        singular: "poddisruptionbudget",
        namespaced: true,
        short_names: &["pdb"],
        categories: &[],
        verbs: FULL,
        subresources: &["status"],
    },
    ..Kind::BASE
};
