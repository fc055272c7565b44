//! Preemption (upstream's DefaultPreemption PostFilter): when a pod fits on no node, find the
//! node where deleting strictly lower-priority pods makes room, with upstream's choices —
//! victims are the fewest needed (every lower-priority pod is removed, then they are given
//! back most important first, those whose eviction would break a PodDisruptionBudget first),
//! and the node is picked by fewest budget violations, then the lowest highest-victim priority,
//! the lowest priority sum, the fewest victims, the latest start among the top victims.
//! The decision is made inside the scheduling pass (pure over its snapshot); the deletes and
//! the `nominatedNodeName` write are issued by [`execute`].

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::json;
use skiff_client::events::EventType;

use super::plugins::{self, NodeInfo, PodFacts};
use super::{pod_ref, Cached, COMPONENT};
use crate::Context;

/// The pod's priority (0 when unset, as upstream's `corev1helpers.PodPriority`).
pub fn priority(pod: &Pod) -> i32 {
    pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

/// `status.nominatedNodeName`, if set.
pub fn nominated_node(pod: &Pod) -> Option<&str> {
    pod.status
        .as_ref()
        .and_then(|s| s.nominated_node_name.as_deref())
        .filter(|n| !n.is_empty())
}

/// Whether a pod may preempt at all (upstream's `PodEligibleToPreemptOthers`): not with
/// `preemptionPolicy: Never`, and not again while lower-priority pods on the node it was
/// nominated to are still terminating (its earlier preemption is under way).
pub fn eligible(
    pod: &Pod,
    nominated: Option<&str>,
    on_node: &[&Cached],
    victims_pending: bool,
) -> bool {
    if pod
        .spec
        .as_ref()
        .and_then(|s| s.preemption_policy.as_deref())
        == Some("Never")
    {
        return false;
    }
    if nominated.is_some() {
        let prio = priority(pod);
        let terminating = on_node
            .iter()
            .any(|c| c.pod.metadata.deletion_timestamp.is_some() && priority(&c.pod) < prio);
        if terminating || victims_pending {
            return false;
        }
    }
    true
}

/// One node where preemption would make room.
pub struct Candidate {
    pub node: String,
    /// Most important first.
    pub victims: Vec<Arc<Pod>>,
    pub pdb_violations: usize,
}

/// The budgets a pod falls under (same namespace; an empty selector matches nothing).
fn matching<'a>(pod: &Pod, pdbs: &'a [Arc<PodDisruptionBudget>]) -> Vec<&'a PodDisruptionBudget> {
    let empty = Default::default();
    let labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
    pdbs.iter()
        .map(Arc::as_ref)
        .filter(|b| b.metadata.namespace == pod.metadata.namespace)
        .filter(|b| {
            b.spec
                .as_ref()
                .and_then(|s| s.selector.as_ref())
                .is_some_and(|sel| {
                    !skiff_semantics::labels::label_selector_is_empty(sel)
                        && skiff_semantics::labels::label_selector_matches(sel, labels)
                })
        })
        .collect()
}

/// Upstream's `filterPodsWithPDBViolation`: splits pods (most important first) into those
/// whose eviction would take a budget below zero and the rest, counting earlier pods against
/// the budgets as it goes.
fn split_by_pdb<'a>(
    pods: &[&'a Cached],
    pdbs: &[Arc<PodDisruptionBudget>],
) -> (Vec<&'a Cached>, Vec<&'a Cached>) {
    let mut allowed: HashMap<String, i32> = HashMap::new();
    let (mut violating, mut fine) = (Vec::new(), Vec::new());
    for c in pods {
        let mut violates = false;
        let name = c.pod.metadata.name.as_deref().unwrap_or("");
        for pdb in matching(&c.pod, pdbs) {
            let status = pdb.status.as_ref();
            // A pod the eviction API already counted does not count again.
            if status
                .and_then(|s| s.disrupted_pods.as_ref())
                .is_some_and(|d| d.contains_key(name))
            {
                continue;
            }
            let key = format!(
                "{}/{}",
                pdb.metadata.namespace.as_deref().unwrap_or(""),
                pdb.metadata.name.as_deref().unwrap_or("")
            );
            let left = allowed
                .entry(key)
                .or_insert_with(|| status.map_or(0, |s| s.disruptions_allowed));
            *left -= 1;
            if *left < 0 {
                violates = true;
            }
        }
        if violates {
            violating.push(*c);
        } else {
            fine.push(*c);
        }
    }
    (violating, fine)
}

fn start_time(pod: &Pod) -> Option<jiff::Timestamp> {
    pod.status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .or(pod.metadata.creation_timestamp.as_ref())
        .map(|t| t.0)
}

/// Upstream's `MoreImportantPod` as a sort key: higher priority, then earlier start.
fn importance_order(a: &Pod, b: &Pod) -> std::cmp::Ordering {
    priority(b)
        .cmp(&priority(a))
        .then_with(|| start_time(a).cmp(&start_time(b)))
}

/// Upstream's `SelectVictimsOnNode`: None when even removing every lower-priority pod does
/// not make the pod fit.
pub fn select_victims(
    pod: &Pod,
    facts: &PodFacts,
    node: &Node,
    on_node: &[&Cached],
    pdbs: &[Arc<PodDisruptionBudget>],
) -> Option<Candidate> {
    let prio = priority(pod);
    let mut keep: Vec<&Cached> = Vec::new();
    let mut potential: Vec<&Cached> = Vec::new();
    for c in on_node {
        // Pods already going away are no victims (their room comes anyway).
        if priority(&c.pod) < prio && c.pod.metadata.deletion_timestamp.is_none() {
            potential.push(c);
        } else {
            keep.push(c);
        }
    }
    if potential.is_empty() {
        return None;
    }
    let info_of = |pods: &[&Cached]| {
        let mut info = NodeInfo::default();
        for c in pods {
            info.add(&c.facts);
        }
        info
    };
    if plugins::filter(pod, facts, node, &info_of(&keep)).is_err() {
        return None;
    }
    potential.sort_by(|a, b| importance_order(&a.pod, &b.pod));
    let (violating, fine) = split_by_pdb(&potential, pdbs);
    let mut victims: Vec<Arc<Pod>> = Vec::new();
    let mut pdb_violations = 0;
    for (group, violates) in [(violating, true), (fine, false)] {
        for c in group {
            keep.push(c);
            if plugins::filter(pod, facts, node, &info_of(&keep)).is_err() {
                keep.pop();
                victims.push(c.pod.clone());
                if violates {
                    pdb_violations += 1;
                }
            }
        }
    }
    if victims.is_empty() {
        return None;
    }
    victims.sort_by(|a, b| importance_order(a, b));
    Some(Candidate {
        node: node.metadata.name.clone().unwrap_or_default(),
        victims,
        pdb_violations,
    })
}

/// Upstream's `pickOneNodeForPreemption` over the candidates.
pub fn pick(mut candidates: Vec<Candidate>) -> Option<Candidate> {
    candidates.sort_by(|a, b| {
        let top = |c: &Candidate| c.victims.first().map_or(i32::MIN, |p| priority(p));
        let sum = |c: &Candidate| {
            c.victims
                .iter()
                .map(|p| i64::from(priority(p)) + i64::from(i32::MAX) + 1)
                .sum::<i64>()
        };
        // The latest start among the highest-priority victims: later is better.
        let latest = |c: &Candidate| {
            let t = top(c);
            c.victims
                .iter()
                .filter(|p| priority(p) == t)
                .filter_map(|p| start_time(p))
                .min()
        };
        a.pdb_violations
            .cmp(&b.pdb_violations)
            .then_with(|| top(a).cmp(&top(b)))
            .then_with(|| sum(a).cmp(&sum(b)))
            .then_with(|| a.victims.len().cmp(&b.victims.len()))
            .then_with(|| latest(b).cmp(&latest(a)))
    });
    candidates.into_iter().next()
}

/// What the scheduling pass decided: delete these pods so `pod` can go to `node`.
pub struct Preemption {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub node: String,
    pub victims: Vec<Arc<Pod>>,
}

impl Preemption {
    pub fn new(pod: &Pod, c: Candidate) -> Self {
        Preemption {
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            node: c.node,
            victims: c.victims,
        }
    }
}

/// Marks each victim with the `DisruptionTarget` condition (reason `PreemptionByScheduler`),
/// deletes it, records a `Preempted` event, then nominates the node on the preemptor.
pub async fn execute(ctx: Arc<Context>, p: Preemption) {
    for victim in &p.victims {
        let ns = victim.metadata.namespace.as_deref().unwrap_or("");
        let name = victim.metadata.name.as_deref().unwrap_or("");
        let api: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
        let cond = json!({"status": {"conditions": [{
            "type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler",
            "message": format!("{COMPONENT}: preempting to accommodate a higher priority pod"),
            "lastProbeTime": null,
            "lastTransitionTime": jiff::Timestamp::now().to_string(),
        }]}});
        if let Err(err) = api
            .patch_status(name, &PatchParams::default(), &Patch::Strategic(&cond))
            .await
        {
            tracing::debug!(pod = name, %err, "preemption: DisruptionTarget condition");
        }
        let mut dp = DeleteParams::default();
        if let Some(uid) = &victim.metadata.uid {
            dp.preconditions = Some(kube::api::Preconditions {
                uid: Some(uid.clone()),
                resource_version: None,
            });
        }
        match api.delete(name, &dp).await {
            Ok(_) => {
                ctx.events
                    .publish(
                        COMPONENT,
                        &pod_ref(victim),
                        EventType::Normal,
                        "Preempted",
                        &format!("Preempted by pod {} on node {}", p.uid, p.node),
                    )
                    .await;
            }
            Err(err) => {
                tracing::warn!(victim = name, %err, "preemption: deleting a victim failed");
            }
        }
    }
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &p.namespace);
    let patch = json!({"status": {"nominatedNodeName": p.node}});
    if let Err(err) = api
        .patch_status(&p.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        tracing::warn!(pod = %p.name, %err, "preemption: setting nominatedNodeName");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn node(name: &str, cpu: &str) -> Node {
        serde_json::from_value(json!({"metadata": {"name": name},
            "status": {"allocatable": {"cpu": cpu, "memory": "8Gi", "pods": "110"},
                "conditions": [{"type": "Ready", "status": "True"}]}}))
        .expect("node")
    }

    fn pod(name: &str, priority: i32, cpu: &str, extra: Value) -> Cached {
        let mut p = json!({"metadata": {"name": name, "namespace": "d", "labels": {"app": name}},
            "spec": {"priority": priority, "containers": [{"name": "c", "image": "i",
                "resources": {"requests": {"cpu": cpu}}}]}});
        if let (Some(s), Some(e)) = (p["spec"].as_object_mut(), extra.as_object()) {
            s.extend(e.clone());
        }
        Cached::new(serde_json::from_value(p).expect("pod"))
    }

    fn pdb(app: &str, allowed: i32) -> Arc<PodDisruptionBudget> {
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": app, "namespace": "d"},
                "spec": {"selector": {"matchLabels": {"app": app}}},
                "status": {"disruptionsAllowed": allowed, "currentHealthy": 1,
                    "desiredHealthy": 1, "expectedPods": 1}}))
            .expect("pdb"),
        )
    }

    fn names(c: &Candidate) -> Vec<&str> {
        c.victims
            .iter()
            .filter_map(|p| p.metadata.name.as_deref())
            .collect()
    }

    #[test]
    fn fewest_lower_priority_victims() {
        let n = node("n", "2");
        let on = [
            pod("low-a", 1, "500m", json!({})),
            pod("low-b", 2, "500m", json!({})),
            pod("same", 10, "500m", json!({})),
            pod("high", 20, "500m", json!({})),
        ];
        let refs: Vec<&Cached> = on.iter().collect();
        let incoming = pod("in", 10, "500m", json!({}));
        let c = select_victims(&incoming.pod, &incoming.facts, &n, &refs, &[]).expect("victims");
        // One 500m pod must go: the least important (priority 1) one.
        assert_eq!(names(&c), ["low-a"]);
        // Needing more than all lower pods free: no candidate.
        let big = pod("big", 10, "1500m", json!({}));
        assert!(select_victims(&big.pod, &big.facts, &n, &refs, &[]).is_none());
        // Equal priority is never a victim.
        let eq = pod("eq", 2, "500m", json!({}));
        let c = select_victims(&eq.pod, &eq.facts, &n, &refs, &[]).expect("victims");
        assert_eq!(names(&c), ["low-a"]);
    }

    #[test]
    fn budgets_are_broken_last_and_nodes_ranked() {
        let incoming = pod("in", 100, "1", json!({}));
        let a = node("a", "1");
        let b = node("b", "1");
        let on_a = [pod("guarded", 1, "1", json!({}))];
        let on_b = [pod("free", 5, "1", json!({}))];
        let pdbs = [pdb("guarded", 0)];
        let ca = select_victims(
            &incoming.pod,
            &incoming.facts,
            &a,
            &on_a.iter().collect::<Vec<_>>(),
            &pdbs,
        )
        .expect("a");
        let cb = select_victims(
            &incoming.pod,
            &incoming.facts,
            &b,
            &on_b.iter().collect::<Vec<_>>(),
            &pdbs,
        )
        .expect("b");
        assert_eq!((ca.pdb_violations, cb.pdb_violations), (1, 0));
        // Node b wins although its victim has the higher priority: no budget broken.
        assert_eq!(pick(vec![ca, cb]).expect("pick").node, "b");
    }

    #[test]
    fn never_policy_and_pending_preemptions_are_not_eligible() {
        let never = pod("n", 100, "1", json!({"preemptionPolicy": "Never"}));
        assert!(!eligible(&never.pod, None, &[], false));
        let p = pod("p", 100, "1", json!({}));
        assert!(eligible(&p.pod, None, &[], false));
        assert!(!eligible(&p.pod, Some("a"), &[], true));
        let mut going = pod("going", 1, "1", json!({}));
        let mut gp = (*going.pod).clone();
        gp.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now()),
        );
        going = Cached::new(gp);
        assert!(!eligible(&p.pod, Some("a"), &[&going], false));
    }
}
