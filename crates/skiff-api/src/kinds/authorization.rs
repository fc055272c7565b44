//! authorization.k8s.io/v1: SubjectAccessReview, SelfSubjectAccessReview,
//! LocalSubjectAccessReview and SelfSubjectRulesReview (`kubectl auth can-i [--list]`) —
//! computed per request by the server's authorizer and never stored (create only).

use crate::kinds::authentication::CREATE_ONLY;
use crate::kinds::prelude::*;

const GROUP: &str = "authorization.k8s.io";

const fn review(
    kind: &'static str,
    list_kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    namespaced: bool,
) -> Kind {
    Kind {
        info: ResourceInfo {
            group: GROUP,
            version: "v1",
            kind,
            list_kind,
            plural,
            singular,
            namespaced,
            short_names: &[],
            categories: &[],
            verbs: CREATE_ONLY,
            subresources: &[],
        },
        ..Kind::BASE
    }
}

pub(crate) const LOCAL_SUBJECT_ACCESS_REVIEW: Kind = review(
    "LocalSubjectAccessReview",
    "LocalSubjectAccessReviewList",
    "localsubjectaccessreviews",
    "localsubjectaccessreview",
    true,
);

pub(crate) const SELF_SUBJECT_ACCESS_REVIEW: Kind = review(
    "SelfSubjectAccessReview",
    "SelfSubjectAccessReviewList",
    "selfsubjectaccessreviews",
    "selfsubjectaccessreview",
    false,
);

pub(crate) const SELF_SUBJECT_RULES_REVIEW: Kind = review(
    "SelfSubjectRulesReview",
    "SelfSubjectRulesReviewList",
    "selfsubjectrulesreviews",
    "selfsubjectrulesreview",
    false,
);

pub(crate) const SUBJECT_ACCESS_REVIEW: Kind = review(
    "SubjectAccessReview",
    "SubjectAccessReviewList",
    "subjectaccessreviews",
    "subjectaccessreview",
    false,
);
