//! Small pod and label-selector helpers shared by the ReplicaSet and Job controllers.

use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

/// Not finished (Succeeded/Failed) and not being deleted (upstream `IsPodActive`).
pub fn is_active(p: &Pod) -> bool {
    let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
    !matches!(phase, Some("Succeeded") | Some("Failed")) && p.metadata.deletion_timestamp.is_none()
}

fn ready_condition(p: &Pod) -> Option<&k8s_openapi::api::core::v1::PodCondition> {
    p.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
}

/// The Ready condition is True.
pub fn is_ready(p: &Pod) -> bool {
    ready_condition(p).is_some_and(|c| c.status == "True")
}

/// When the pod became Ready (None when not ready or unknown).
pub fn ready_since(p: &Pod) -> Option<jiff::Timestamp> {
    ready_condition(p)
        .filter(|c| c.status == "True")
        .and_then(|c| c.last_transition_time.as_ref())
        .map(|t| t.0)
}

/// Ready for at least `min_ready_seconds` (upstream `IsPodAvailable`: strictly before now).
pub fn is_available(p: &Pod, min_ready_seconds: i32, now: jiff::Timestamp) -> bool {
    if !is_ready(p) {
        return false;
    }
    if min_ready_seconds <= 0 {
        return true;
    }
    match ready_since(p) {
        Some(t) => t
            .checked_add(jiff::SignedDuration::from_secs(i64::from(
                min_ready_seconds,
            )))
            .is_ok_and(|at| at < now),
        None => false,
    }
}

/// The ownerReference with `controller: true`, if any.
pub fn controller_ref(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Option<&OwnerReference> {
    meta.owner_references
        .as_ref()?
        .iter()
        .find(|r| r.controller == Some(true))
}

/// A pod from a controller's template, controlled by `owner` (upstream `GetPodFromTemplate`):
/// named `<owner>-<random>` when that prefix can form a valid name.
pub fn pod_from_template(
    template: Option<PodTemplateSpec>,
    namespace: Option<String>,
    owner: OwnerReference,
) -> Pod {
    let template = template.unwrap_or_default();
    let tmeta = template.metadata.unwrap_or_default();
    let generate_name = (owner.name.len() < 253).then(|| format!("{}-", owner.name));
    Pod {
        metadata: ObjectMeta {
            generate_name,
            namespace,
            labels: tmeta.labels,
            annotations: tmeta.annotations,
            finalizers: tmeta.finalizers,
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: template.spec,
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
    use skiff_semantics::labels::Selector;
    use std::collections::BTreeMap;

    #[test]
    fn selector_matching() {
        let s = LabelSelector {
            match_labels: Some([("app".to_string(), "web".to_string())].into()),
            match_expressions: Some(vec![
                LabelSelectorRequirement {
                    key: "tier".into(),
                    operator: "In".into(),
                    values: Some(vec!["a".into(), "b".into()]),
                },
                LabelSelectorRequirement {
                    key: "x".into(),
                    operator: "DoesNotExist".into(),
                    values: None,
                },
            ]),
        };
        let sel = Selector::from_label_selector(&s).expect("valid selector");
        let l = |v: &[(&str, &str)]| -> BTreeMap<String, String> {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        assert!(sel.matches(&Some(&l(&[("app", "web"), ("tier", "a")]))));
        assert!(!sel.matches(&Some(&l(&[("app", "web"), ("tier", "c")]))));
        assert!(!sel.matches(&Some(&l(&[("app", "web"), ("tier", "a"), ("x", "1")]))));
        assert!(!sel.matches(&None::<&BTreeMap<String, String>>));
        let bad = LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "k".into(),
                operator: "Near".into(),
                values: None,
            }]),
            ..Default::default()
        };
        assert!(Selector::from_label_selector(&bad).is_err());
    }
}
