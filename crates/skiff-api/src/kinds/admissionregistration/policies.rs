//! admissionregistration.k8s.io/v1 ValidatingAdmissionPolicy and
//! ValidatingAdmissionPolicyBinding.

use crate::kinds::prelude::*;

pub(crate) const POLICY: Kind = Kind {
    info: ResourceInfo {
        group: "admissionregistration.k8s.io",
        version: "v1",
        kind: "ValidatingAdmissionPolicy",
        list_kind: "ValidatingAdmissionPolicyList",
        plural: "validatingadmissionpolicies",
        singular: "validatingadmissionpolicy",
        namespaced: false,
        short_names: &[],
        categories: &["api-extensions"],
        verbs: FULL,
        subresources: &["status"],
    },
    ..Kind::BASE
};

pub(crate) const BINDING: Kind = Kind {
    info: ResourceInfo {
        group: "admissionregistration.k8s.io",
        version: "v1",
        kind: "ValidatingAdmissionPolicyBinding",
        list_kind: "ValidatingAdmissionPolicyBindingList",
        plural: "validatingadmissionpolicybindings",
        singular: "validatingadmissionpolicybinding",
        namespaced: false,
        short_names: &[],
        categories: &["api-extensions"],
        verbs: FULL,
        subresources: &[],
    },
    ..Kind::BASE
};
