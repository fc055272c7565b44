//! Small pod and label-selector helpers shared by the ReplicaSet and Job controllers.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};

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

/// A parsed label selector.
#[derive(Debug, Clone)]
pub struct Selector {
    reqs: Vec<Requirement>,
}

#[derive(Debug, Clone)]
enum Requirement {
    Eq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

impl Selector {
    /// Converts a metav1 LabelSelector (upstream `LabelSelectorAsSelector`; empty = everything).
    pub fn from_label_selector(s: &LabelSelector) -> Result<Selector, String> {
        let mut reqs = Vec::new();
        for (k, v) in s.match_labels.iter().flatten() {
            reqs.push(Requirement::Eq(k.clone(), v.clone()));
        }
        for e in s.match_expressions.iter().flatten() {
            let values = e.values.clone().unwrap_or_default();
            let r = match e.operator.as_str() {
                "In" if !values.is_empty() => Requirement::In(e.key.clone(), values),
                "NotIn" if !values.is_empty() => Requirement::NotIn(e.key.clone(), values),
                "Exists" if values.is_empty() => Requirement::Exists(e.key.clone()),
                "DoesNotExist" if values.is_empty() => Requirement::DoesNotExist(e.key.clone()),
                op => {
                    return Err(format!(
                        "invalid label selector operator {op:?} for key {:?}",
                        e.key
                    ));
                }
            };
            reqs.push(r);
        }
        Ok(Selector { reqs })
    }

    /// Whether `labels` satisfy every requirement.
    pub fn matches(&self, labels: Option<&BTreeMap<String, String>>) -> bool {
        let get = |k: &str| labels.and_then(|l| l.get(k));
        self.reqs.iter().all(|r| match r {
            Requirement::Eq(k, v) => get(k) == Some(v),
            Requirement::In(k, vs) => get(k).is_some_and(|v| vs.contains(v)),
            Requirement::NotIn(k, vs) => get(k).is_none_or(|v| !vs.contains(v)),
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::DoesNotExist(k) => get(k).is_none(),
        })
    }
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
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

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
        let sel = Selector::from_label_selector(&s).unwrap_or(Selector { reqs: vec![] });
        let l = |v: &[(&str, &str)]| -> BTreeMap<String, String> {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        assert!(sel.matches(Some(&l(&[("app", "web"), ("tier", "a")]))));
        assert!(!sel.matches(Some(&l(&[("app", "web"), ("tier", "c")]))));
        assert!(!sel.matches(Some(&l(&[("app", "web"), ("tier", "a"), ("x", "1")]))));
        assert!(!sel.matches(None));
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
