//! `spec.podFailurePolicy` and `spec.successPolicy` (upstream `pod_failure_policy.go`,
//! `success_policy.go`): which rule a failed pod matches, and whether enough indexes succeeded.

use k8s_openapi::api::batch::v1::{PodFailurePolicy, PodFailurePolicyRule, SuccessPolicy};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use kube::ResourceExt;

use super::indexes::IndexSet;

/// What a failed pod's first matching rule says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureAction {
    /// Fail the whole Job, with this condition message.
    FailJob(String),
    /// Fail the pod's index at once (with `backoffLimitPerIndex`).
    FailIndex,
    /// The failure does not count towards any limit.
    Ignore,
    /// Counted as usual (also when no rule matches).
    Count,
}

/// Upstream's `matchPodFailurePolicy`: the first rule matching a failed pod decides.
pub fn match_failure(policy: Option<&PodFailurePolicy>, pod: &Pod) -> FailureAction {
    let Some(policy) = policy else {
        return FailureAction::Count;
    };
    for (index, rule) in policy.rules.iter().enumerate() {
        if let Some(what) = matches_rule(rule, pod) {
            return match rule.action.as_str() {
                "FailJob" => {
                    FailureAction::FailJob(format!("{what} matching FailJob rule at index {index}"))
                }
                "FailIndex" => FailureAction::FailIndex,
                "Ignore" => FailureAction::Ignore,
                _ => FailureAction::Count,
            };
        }
    }
    FailureAction::Count
}

/// The message prefix when `rule` matches `pod`.
fn matches_rule(rule: &PodFailurePolicyRule, pod: &Pod) -> Option<String> {
    let ns = pod.namespace().unwrap_or_default();
    let name = pod.name_any();
    let status = pod.status.as_ref()?;
    if let Some(req) = &rule.on_exit_codes {
        // Init containers first, then app containers; successful exits never match.
        let statuses = status
            .init_container_statuses
            .iter()
            .flatten()
            .chain(status.container_statuses.iter().flatten());
        for cs in statuses {
            let Some(code) = exit_code(cs) else { continue };
            if code == 0 {
                continue;
            }
            if req.container_name.as_ref().is_some_and(|n| *n != cs.name) {
                continue;
            }
            let listed = req.values.contains(&code);
            let hit = match req.operator.as_str() {
                "In" => listed,
                "NotIn" => !listed,
                _ => false,
            };
            if hit {
                return Some(format!(
                    "Container {} for pod {ns}/{name} failed with exit code {code}",
                    cs.name
                ));
            }
        }
        return None;
    }
    for pattern in rule.on_pod_conditions.iter().flatten() {
        let want = pattern.status.as_str();
        let want = if want.is_empty() { "True" } else { want };
        let hit = status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == pattern.type_ && c.status == want);
        if hit {
            return Some(format!("Pod {ns}/{name} has condition {}", pattern.type_));
        }
    }
    None
}

fn exit_code(cs: &ContainerStatus) -> Option<i32> {
    Some(cs.state.as_ref()?.terminated.as_ref()?.exit_code)
}

/// Upstream's `matchSuccessPolicy`: the message of the first rule the succeeded indexes meet.
pub fn match_success(
    policy: Option<&SuccessPolicy>,
    completions: i32,
    succeeded: &IndexSet,
) -> Option<String> {
    for (index, rule) in policy?.rules.iter().enumerate() {
        let met = match (&rule.succeeded_indexes, rule.succeeded_count) {
            (Some(text), count) => {
                let wanted = IndexSet::parse(text, completions);
                let hits = wanted.iter().filter(|i| succeeded.contains(*i)).count();
                match count {
                    Some(c) => hits >= usize::try_from(c).unwrap_or(0),
                    None => !wanted.is_empty() && hits == wanted.len(),
                }
            }
            (None, Some(c)) => succeeded.len() >= usize::try_from(c).unwrap_or(0),
            (None, None) => false,
        };
        if met {
            return Some(format!("Matched rules at index {index}"));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn failed_pod(code: i32, conditions: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "status": {"phase": "Failed", "conditions": conditions, "containerStatuses": [
                {"name": "ok", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                 "state": {"terminated": {"exitCode": 0}}},
                {"name": "main", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                 "state": {"terminated": {"exitCode": code}}}]}
        }))
        .expect("pod")
    }

    fn policy(rules: serde_json::Value) -> PodFailurePolicy {
        serde_json::from_value(json!({ "rules": rules })).expect("policy")
    }

    #[test]
    fn exit_code_rules_in_order() {
        let p = policy(json!([
            {"action": "Ignore", "onExitCodes": {"operator": "In", "values": [1]}},
            {"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "NotIn", "values": [1, 2]}},
        ]));
        assert_eq!(
            match_failure(Some(&p), &failed_pod(1, json!([]))),
            FailureAction::Ignore
        );
        assert_eq!(
            match_failure(Some(&p), &failed_pod(2, json!([]))),
            FailureAction::Count
        );
        assert_eq!(
            match_failure(Some(&p), &failed_pod(42, json!([]))),
            FailureAction::FailJob(
                "Container main for pod ns/p failed with exit code 42 matching FailJob rule at index 1"
                    .into()
            )
        );
        assert_eq!(
            match_failure(None, &failed_pod(42, json!([]))),
            FailureAction::Count
        );
    }

    #[test]
    fn pod_condition_rules() {
        let p = policy(json!([
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
        ]));
        let cond = json!([{"type": "DisruptionTarget", "status": "True"}]);
        assert_eq!(
            match_failure(Some(&p), &failed_pod(137, cond)),
            FailureAction::Ignore
        );
        let p = policy(json!([
            {"action": "FailJob", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
        ]));
        let cond = json!([{"type": "DisruptionTarget", "status": "True"}]);
        assert_eq!(
            match_failure(Some(&p), &failed_pod(137, cond)),
            FailureAction::FailJob(
                "Pod ns/p has condition DisruptionTarget matching FailJob rule at index 0".into()
            )
        );
    }

    #[test]
    fn success_rules() {
        let sp: SuccessPolicy = serde_json::from_value(json!({"rules": [
            {"succeededIndexes": "0,1"},
            {"succeededIndexes": "2-5", "succeededCount": 2},
            {"succeededCount": 4},
        ]}))
        .expect("policy");
        let set = |t: &str| IndexSet::parse(t, 10);
        assert_eq!(match_success(Some(&sp), 10, &set("0")), None);
        assert_eq!(
            match_success(Some(&sp), 10, &set("0,1")).as_deref(),
            Some("Matched rules at index 0")
        );
        assert_eq!(
            match_success(Some(&sp), 10, &set("3,5")).as_deref(),
            Some("Matched rules at index 1")
        );
        assert_eq!(
            match_success(Some(&sp), 10, &set("0,6-8")).as_deref(),
            Some("Matched rules at index 2")
        );
    }
}
