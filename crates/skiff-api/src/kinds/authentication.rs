//! authentication.k8s.io/v1: SelfSubjectReview (`kubectl auth whoami`) — computed per request
//! from the caller's identity and never stored (the server answers create and nothing else).

use crate::kinds::prelude::*;

/// The verbs of a review kind: create only.
pub(crate) const CREATE_ONLY: &[&str] = &["create"];

pub(crate) const SELF_SUBJECT_REVIEW: Kind = Kind {
    info: ResourceInfo {
        group: "authentication.k8s.io",
        version: "v1",
        kind: "SelfSubjectReview",
        list_kind: "SelfSubjectReviewList",
        plural: "selfsubjectreviews",
        singular: "selfsubjectreview",
        namespaced: false,
        short_names: &[],
        categories: &[],
        verbs: CREATE_ONLY,
        subresources: &[],
    },
    ..Kind::BASE
};

/// TokenReview: whether a bearer token authenticates, and as whom (webhook token
/// authentication, `system:auth-delegator`); computed, never stored.
pub(crate) const TOKEN_REVIEW: Kind = Kind {
    info: ResourceInfo {
        group: "authentication.k8s.io",
        version: "v1",
        kind: "TokenReview",
        list_kind: "TokenReviewList",
        plural: "tokenreviews",
        singular: "tokenreview",
        namespaced: false,
        short_names: &[],
        categories: &[],
        verbs: CREATE_ONLY,
        subresources: &[],
    },
    ..Kind::BASE
};
