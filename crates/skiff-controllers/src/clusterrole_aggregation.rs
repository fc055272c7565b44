//! ClusterRole aggregation, like kube-controller-manager's clusterrole-aggregation controller:
//! a ClusterRole with `aggregationRule.clusterRoleSelectors` gets as its rules the union of the
//! rules of every other ClusterRole matching one of the selectors (roles taken by name, rules
//! without repeats, in order), kept current as roles come, go and change.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::watcher;
use serde_json::json;
use skiff_semantics::labels::label_selector_matches;

use crate::{Context, Error, Result};

/// The rules `role` should have given `all` ClusterRoles; None when it aggregates nothing.
pub fn aggregated_rules(role: &ClusterRole, all: &[ClusterRole]) -> Option<Vec<PolicyRule>> {
    let selectors = role
        .aggregation_rule
        .as_ref()?
        .cluster_role_selectors
        .as_ref()?;
    let own = role.metadata.name.as_deref();
    let mut matching: BTreeMap<&str, &ClusterRole> = BTreeMap::new();
    for other in all {
        let Some(name) = other.metadata.name.as_deref() else {
            continue;
        };
        if Some(name) == own {
            continue;
        }
        let labels = other.metadata.labels.clone().unwrap_or_default();
        if selectors.iter().any(|s| label_selector_matches(s, &labels)) {
            matching.insert(name, other);
        }
    }
    let mut rules: Vec<PolicyRule> = Vec::new();
    for r in matching.values() {
        for rule in r.rules.iter().flatten() {
            if !rules.contains(rule) {
                rules.push(rule.clone());
            }
        }
    }
    Some(rules)
}

async fn reconcile_all(api: &Api<ClusterRole>) -> Result<()> {
    let all = api.list(&ListParams::default()).await?.items;
    for role in &all {
        let Some(rules) = aggregated_rules(role, &all) else {
            continue;
        };
        if role.rules.clone().unwrap_or_default() == rules {
            continue;
        }
        let Some(name) = role.metadata.name.as_deref() else {
            continue;
        };
        let patch = json!({"rules": rules});
        match api
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => tracing::debug!(clusterrole = name, "aggregated rules updated"),
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(e) => return Err(Error::Kube(e)),
        }
    }
    Ok(())
}

/// Re-aggregates after every ClusterRole change (a burst is handled once) and every 5 minutes.
pub async fn run(ctx: Arc<Context>) -> Result<()> {
    let api: Api<ClusterRole> = Api::all(ctx.client.clone());
    let mut events = watcher(api.clone(), watcher::Config::default()).boxed();
    let mut tick = tokio::time::interval(Duration::from_secs(300));
    loop {
        tokio::select! {
            event = events.next() => match event {
                Some(Ok(_)) => {
                    // Let a burst (an initial list, an applied bundle) settle first.
                    let settle = tokio::time::sleep(Duration::from_millis(50));
                    tokio::pin!(settle);
                    loop {
                        tokio::select! {
                            more = events.next() => match more {
                                Some(_) => continue,
                                None => return Ok(()),
                            },
                            _ = &mut settle => break,
                        }
                    }
                    reconcile_all(&api).await?
                }
                Some(Err(e)) => {
                    tracing::debug!("clusterrole watch: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                None => return Ok(()),
            },
            _ = tick.tick() => reconcile_all(&api).await?,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(name: &str, labels: &[(&str, &str)], rules: serde_json::Value) -> ClusterRole {
        let labels: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        serde_json::from_value(
            json!({"metadata": {"name": name, "labels": labels}, "rules": rules}),
        )
        .unwrap()
    }

    #[test]
    fn union_of_matching_roles_by_name_without_repeats() {
        let mut agg = role("agg", &[("x", "1")], json!([]));
        agg.aggregation_rule = serde_json::from_value(json!({"clusterRoleSelectors": [
            {"matchLabels": {"x": "1"}},
            {"matchExpressions": [{"key": "y", "operator": "Exists"}]}]}))
        .unwrap();
        let get_x = json!({"apiGroups": [""], "resources": ["x"], "verbs": ["get"]});
        let get_y = json!({"apiGroups": [""], "resources": ["y"], "verbs": ["get"]});
        let all = vec![
            role("b", &[("x", "1")], json!([get_x])),
            role("a", &[("y", "")], json!([get_y, get_x])),
            role(
                "c",
                &[("x", "2")],
                json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]),
            ),
            agg.clone(),
        ];
        let rules = aggregated_rules(&agg, &all).unwrap();
        let as_json: Vec<serde_json::Value> = rules
            .iter()
            .map(|r| serde_json::to_value(r).unwrap())
            .collect();
        assert_eq!(as_json, vec![get_y, get_x]);
        assert!(aggregated_rules(&all[0], &all).is_none());
    }
}
