//! admissionregistration.k8s.io/v1 ValidatingWebhookConfiguration and
//! MutatingWebhookConfiguration.

use crate::kinds::prelude::*;

pub(crate) const VALIDATING: Kind = Kind {
    info: ResourceInfo {
        group: "admissionregistration.k8s.io",
        version: "v1",
        kind: "ValidatingWebhookConfiguration",
        list_kind: "ValidatingWebhookConfigurationList",
        plural: "validatingwebhookconfigurations",
        singular: "validatingwebhookconfiguration",
        namespaced: false,
        short_names: &[],
        categories: &["api-extensions"],
        verbs: FULL,
        subresources: &[],
    },
    ..Kind::BASE
};

pub(crate) const MUTATING: Kind = Kind {
    info: ResourceInfo {
        group: "admissionregistration.k8s.io",
        version: "v1",
        kind: "MutatingWebhookConfiguration",
        list_kind: "MutatingWebhookConfigurationList",
        plural: "mutatingwebhookconfigurations",
        singular: "mutatingwebhookconfiguration",
        namespaced: false,
        short_names: &[],
        categories: &["api-extensions"],
        verbs: FULL,
        subresources: &[],
    },
    ..Kind::BASE
};
