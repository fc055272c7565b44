//! The node lifecycle controller (upstream's node_lifecycle_controller + taint eviction
//! controller, reduced): every `node_monitor_period` it judges each Node by its Lease in
//! `kube-node-lease` (and its Ready heartbeat); a node silent for longer than
//! `node_monitor_grace_period` gets Ready/MemoryPressure/DiskPressure/PIDPressure = Unknown
//! (`NodeStatusUnknown`). Conditions map to taints (Ready=Unknown → `node.kubernetes.io/
//! unreachable`, Ready=False → `not-ready`, both NoSchedule + NoExecute; pressure conditions and
//! `spec.unschedulable` → NoSchedule taints), removed when the node recovers. Pods on a node with
//! NoExecute taints are evicted (graceful delete, `DisruptionTarget` condition,
//! `TaintManagerEviction` event) at once if a taint is not tolerated, or `tolerationSeconds` after
//! the taint's `timeAdded`. If every node is unhealthy (full disruption) nothing is evicted and
//! the not-ready/unreachable NoExecute taints are withheld, as upstream does.
//! Besides the periodic pass, a change of a node's conditions or `spec.unschedulable` (a
//! cordon/uncordon) triggers a pass at once, so taints follow within milliseconds.

mod eviction;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, ObjectReference, Pod, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;

use crate::scheduler::plugins::ready_status;
use crate::{Context, Result};
use skiff_client::events::EventType;
use skiff_semantics::wellknown::taints;

const COMPONENT: &str = "node-controller";
const LEASE_NAMESPACE: &str = "kube-node-lease";
/// Conditions the controller marks Unknown when the kubelet goes silent.
const KUBELET_CONDITIONS: [&str; 4] = ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

/// Taints this controller owns: (key, effect). Others' taints are never touched.
const OWNED_TAINTS: [(&str, &str); 8] = [
    (taints::NOT_READY, "NoSchedule"),
    (taints::NOT_READY, "NoExecute"),
    (taints::UNREACHABLE, "NoSchedule"),
    (taints::UNREACHABLE, "NoExecute"),
    (taints::MEMORY_PRESSURE, "NoSchedule"),
    (taints::DISK_PRESSURE, "NoSchedule"),
    (taints::PID_PRESSURE, "NoSchedule"),
    (taints::NETWORK_UNAVAILABLE, "NoSchedule"),
];

/// What the controller remembers about a node between passes.
struct Health {
    /// Last seen Lease renewTime / Ready lastHeartbeatTime (as strings: only change matters).
    renew: Option<String>,
    heartbeat: Option<String>,
    /// Local time the heartbeat last advanced: judged with our own clock, like upstream, so
    /// clock skew between node and server doesn't matter.
    observed: Instant,
    /// Ready status seen on the previous pass (for the NodeNotReady transition).
    ready: Option<String>,
}

/// Runs this controller until the process stops (errors are retried inside).
/// What decides a node's taints: `spec.unschedulable` and each condition's status.
fn taint_facts(node: &Node) -> (bool, Vec<(String, String)>) {
    let unschedulable = node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true);
    let mut conditions: Vec<(String, String)> = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .map(|c| {
            c.iter()
                .map(|c| (c.type_.clone(), c.status.clone()))
                .collect()
        })
        .unwrap_or_default();
    conditions.sort();
    (unschedulable, conditions)
}

/// Watches Nodes and wakes the controller when a node's taint facts change (heartbeats alone
/// don't); reconnects on errors.
async fn watch_taint_facts(ctx: Arc<Context>, wake: Arc<tokio::sync::Notify>) {
    use futures::StreamExt;
    use kube::runtime::watcher;
    let api: Api<Node> = Api::all(ctx.client.clone());
    let mut seen: HashMap<String, (bool, Vec<(String, String)>)> = HashMap::new();
    let mut stream = watcher(api, watcher::Config::default()).boxed();
    while let Some(ev) = stream.next().await {
        let changed = match ev {
            Ok(watcher::Event::Apply(node)) | Ok(watcher::Event::InitApply(node)) => {
                let name = node.metadata.name.clone().unwrap_or_default();
                let facts = taint_facts(&node);
                seen.insert(name, facts.clone()) != Some(facts)
            }
            Ok(watcher::Event::Delete(node)) => {
                seen.remove(node.metadata.name.as_deref().unwrap_or(""));
                false
            }
            Ok(_) => false,
            Err(err) => {
                tracing::debug!(%err, "node lifecycle watch");
                false
            }
        };
        if changed {
            wake.notify_one();
        }
    }
}

pub async fn run(ctx: Arc<Context>) -> Result<()> {
    let wake = Arc::new(tokio::sync::Notify::new());
    let watch = tokio::spawn(watch_taint_facts(ctx.clone(), wake.clone()));
    // Aborted when the controller's future is dropped (the manager restarts it).
    let _watch = tokio_util::task::AbortOnDropHandle::new(watch);
    let mut c = Controller {
        ctx,
        health: HashMap::new(),
        full_disruption: false,
        evicted: HashSet::new(),
        taint_seen: HashMap::new(),
    };
    loop {
        let next = match c.pass().await {
            Ok(next) => next,
            Err(err) => {
                tracing::warn!(%err, "node lifecycle pass failed; retrying");
                None
            }
        };
        let period = c.ctx.options.node_monitor_period;
        let sleep = next
            .map(|t| t.saturating_duration_since(Instant::now()))
            .unwrap_or(period)
            .min(period)
            .max(Duration::from_millis(10));
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            _ = wake.notified() => {
                // Let a burst of node updates settle into one pass.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

struct Controller {
    ctx: Arc<Context>,
    health: HashMap<String, Health>,
    full_disruption: bool,
    /// Pods (uid) already deleted by us, so a stale read doesn't repeat the event.
    evicted: HashSet<String>,
    /// First time a NoExecute taint without timeAdded was seen (node/key/effect/value), used
    /// as its timeAdded so tolerationSeconds still runs out.
    taint_seen: HashMap<String, Time>,
}

fn condition<'a>(node: &'a Node, type_: &str) -> Option<&'a NodeCondition> {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == type_))
}

fn now_time() -> Time {
    Time(jiff::Timestamp::now())
}

fn node_ref(node: &Node) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Node".into()),
        name: node.metadata.name.clone(),
        uid: node.metadata.name.clone(),
        ..Default::default()
    }
}

/// The taints a node should carry given its conditions (only the controller-owned kinds).
fn desired_taints(node: &Node, no_execute: bool) -> Vec<(&'static str, &'static str)> {
    let mut out = Vec::new();
    let ready_key = match ready_status(node) {
        Some("False") => Some(taints::NOT_READY),
        Some("Unknown") => Some(taints::UNREACHABLE),
        _ => None,
    };
    if let Some(key) = ready_key {
        out.push((key, "NoSchedule"));
        if no_execute {
            out.push((key, "NoExecute"));
        }
    }
    let is_true = |t: &str| condition(node, t).is_some_and(|c| c.status == "True");
    for (cond, key) in [
        ("MemoryPressure", taints::MEMORY_PRESSURE),
        ("DiskPressure", taints::DISK_PRESSURE),
        ("PIDPressure", taints::PID_PRESSURE),
        ("NetworkUnavailable", taints::NETWORK_UNAVAILABLE),
    ] {
        if is_true(cond) {
            out.push((key, "NoSchedule"));
        }
    }
    if node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        out.push((taints::UNSCHEDULABLE, "NoSchedule"));
    }
    out
}

fn owned(t: &Taint) -> bool {
    OWNED_TAINTS
        .iter()
        .chain(std::iter::once(&(taints::UNSCHEDULABLE, "NoSchedule")))
        .any(|(k, e)| t.key == *k && t.effect == *e)
}

/// The node's new taint list, or None when it already matches. Kept taints keep their
/// timeAdded; new ones get now.
pub fn reconcile_taints(
    current: &[Taint],
    desired: &[(&str, &str)],
    now: &Time,
) -> Option<Vec<Taint>> {
    let mut out: Vec<Taint> = current
        .iter()
        .filter(|t| !owned(t) || desired.iter().any(|(k, e)| t.key == *k && t.effect == *e))
        .cloned()
        .collect();
    let mut changed = out.len() != current.len();
    for (k, e) in desired {
        if !out.iter().any(|t| t.key == *k && t.effect == *e) {
            out.push(Taint {
                key: (*k).into(),
                effect: (*e).into(),
                value: None,
                time_added: Some(now.clone()),
            });
            changed = true;
        }
    }
    changed.then_some(out)
}

impl Controller {
    /// One monitoring pass; returns when the next eviction is due (if any).
    async fn pass(&mut self) -> Result<Option<Instant>> {
        let client = self.ctx.client.clone();
        let nodes_api: Api<Node> = Api::all(client.clone());
        let leases_api: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
        let mut nodes = nodes_api.list(&ListParams::default()).await?.items;
        let leases: HashMap<String, String> = leases_api
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .filter_map(|l| {
                let renew = l.spec.as_ref()?.renew_time.as_ref()?.0.to_string();
                Some((l.metadata.name?, renew))
            })
            .collect();
        let names: HashSet<String> = nodes
            .iter()
            .filter_map(|n| n.metadata.name.clone())
            .collect();
        self.health.retain(|n, _| names.contains(n));
        self.taint_seen
            .retain(|k, _| k.split('/').next().is_some_and(|n| names.contains(n)));

        // 1. Health: mark silent nodes Unknown.
        let grace = self.ctx.options.node_monitor_grace_period;
        let now = Instant::now();
        for node in nodes.iter_mut() {
            let Some(name) = node.metadata.name.clone() else {
                continue;
            };
            let renew = leases.get(&name).cloned();
            let heartbeat = condition(node, "Ready")
                .and_then(|c| c.last_heartbeat_time.as_ref())
                .map(|t| t.0.to_string());
            let h = self.health.entry(name.clone()).or_insert_with(|| Health {
                renew: renew.clone(),
                heartbeat: heartbeat.clone(),
                observed: now,
                ready: ready_status(node).map(str::to_string),
            });
            if h.renew != renew || h.heartbeat != heartbeat {
                h.renew = renew;
                h.heartbeat = heartbeat;
                h.observed = now;
            }
            let stale = now.duration_since(h.observed) > grace;
            if stale {
                self.mark_unknown(&nodes_api, node).await;
            }
            let ready = ready_status(node).map(str::to_string);
            let prev = self.health.get(&name).and_then(|h| h.ready.clone());
            if prev.as_deref() == Some("True") && ready.as_deref() != Some("True") {
                self.node_not_ready(node).await;
            }
            if let Some(h) = self.health.get_mut(&name) {
                h.ready = ready;
            }
        }

        // 2. Full disruption: every node unhealthy ⇒ assume a control-plane/network problem.
        let healthy = nodes
            .iter()
            .filter(|n| ready_status(n) == Some("True"))
            .count();
        let full = !nodes.is_empty() && healthy == 0;
        if full != self.full_disruption {
            if full {
                tracing::warn!(
                    nodes = nodes.len(),
                    "all nodes are not ready: entering full disruption mode, taint-based eviction stopped"
                );
            } else {
                tracing::info!("a node is ready again: leaving full disruption mode");
            }
            self.full_disruption = full;
        }

        // 3. Taints.
        for node in nodes.iter_mut() {
            let desired = desired_taints(node, !full);
            let current = node
                .spec
                .as_ref()
                .and_then(|s| s.taints.clone())
                .unwrap_or_default();
            let Some(taints) = reconcile_taints(&current, &desired, &now_time()) else {
                continue;
            };
            let name = node.metadata.name.clone().unwrap_or_default();
            // resourceVersion makes this a compare-and-swap: a concurrent taint edit wins and
            // we recompute next pass.
            let patch = json!({
                "metadata": {"resourceVersion": node.metadata.resource_version},
                "spec": {"taints": taints},
            });
            match nodes_api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(updated) => *node = updated,
                Err(err) => tracing::debug!(node = %name, %err, "updating taints failed"),
            }
        }

        // 4. Taint-based eviction.
        if full {
            return Ok(None);
        }
        let mut next: Option<Instant> = None;
        for node in &nodes {
            let taints: Vec<Taint> = node
                .spec
                .as_ref()
                .and_then(|s| s.taints.as_ref())
                .map(|t| {
                    t.iter()
                        .filter(|t| t.effect == "NoExecute")
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            if taints.is_empty() {
                continue;
            }
            let name = node.metadata.name.as_deref().unwrap_or("");
            let taints: Vec<Taint> = taints
                .into_iter()
                .map(|mut t| {
                    if t.time_added.is_none() {
                        let key = format!(
                            "{name}/{}/{}/{}",
                            t.key,
                            t.effect,
                            t.value.as_deref().unwrap_or("")
                        );
                        let seen = self.taint_seen.entry(key).or_insert_with(now_time);
                        t.time_added = Some(seen.clone());
                    }
                    t
                })
                .collect();
            if let Some(t) = self.evict_from(node, &taints).await? {
                next = Some(next.map_or(t, |n: Instant| n.min(t)));
            }
        }
        Ok(next)
    }

    /// Sets the kubelet-owned conditions to Unknown (upstream's tryUpdateNodeHealth).
    async fn mark_unknown(&self, api: &Api<Node>, node: &mut Node) {
        let now = now_time();
        let mut changes = Vec::new();
        for type_ in KUBELET_CONDITIONS {
            let cur = condition(node, type_);
            if cur.is_some_and(|c| c.status == "Unknown") {
                continue;
            }
            let (reason, message) = if cur.is_some() {
                ("NodeStatusUnknown", "Kubelet stopped posting node status.")
            } else {
                (
                    "NodeStatusNeverUpdated",
                    "Kubelet never posted node status.",
                )
            };
            changes.push(NodeCondition {
                type_: type_.into(),
                status: "Unknown".into(),
                reason: Some(reason.into()),
                message: Some(message.into()),
                last_heartbeat_time: cur
                    .and_then(|c| c.last_heartbeat_time.clone())
                    .or_else(|| node.metadata.creation_timestamp.clone()),
                last_transition_time: Some(now.clone()),
            });
        }
        if changes.is_empty() {
            return;
        }
        let name = node.metadata.name.clone().unwrap_or_default();
        tracing::info!(node = %name, "node stopped posting status; marking it Unknown");
        // Strategic merge on conditions (merge key "type") leaves other conditions alone.
        let patch = json!({"status": {"conditions": changes}});
        match api
            .patch_status(&name, &PatchParams::default(), &Patch::Strategic(&patch))
            .await
        {
            Ok(updated) => *node = updated,
            Err(err) => tracing::warn!(node = %name, %err, "marking node Unknown failed"),
        }
    }

    /// Ready went from True to something else: event on the Node, and its pods' Ready
    /// condition set False so endpoints stop using them (upstream's MarkPodsNotReady).
    async fn node_not_ready(&self, node: &Node) {
        let name = node.metadata.name.clone().unwrap_or_default();
        self.ctx
            .events
            .publish(
                COMPONENT,
                &node_ref(node),
                EventType::Normal,
                "NodeNotReady",
                &format!("Node {name} status is now: NodeNotReady"),
            )
            .await;
        let pods: Api<Pod> = Api::all(self.ctx.client.clone());
        let list = match pods
            .list(&ListParams::default().fields(&format!("spec.nodeName={name}")))
            .await
        {
            Ok(l) => l.items,
            Err(err) => {
                tracing::warn!(node = %name, %err, "listing pods of a not-ready node failed");
                return;
            }
        };
        for pod in list {
            let ready = pod
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            let (Some(ns), Some(pname)) = (&pod.metadata.namespace, &pod.metadata.name) else {
                continue;
            };
            if !ready {
                continue;
            }
            let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), ns);
            let patch = json!({"status": {"conditions": [{"type": "Ready", "status": "False",
                "lastTransitionTime": now_time()}]}});
            if let Err(err) = api
                .patch_status(pname, &PatchParams::default(), &Patch::Strategic(&patch))
                .await
            {
                tracing::debug!(pod = %pname, %err, "marking pod not ready failed");
                continue;
            }
            self.ctx
                .events
                .publish(
                    COMPONENT,
                    &eviction::pod_ref(&pod),
                    EventType::Warning,
                    "NodeNotReady",
                    "Node is not ready",
                )
                .await;
        }
    }

    /// Evicts what is due on one node; returns when the next eviction on it is due.
    async fn evict_from(&mut self, node: &Node, taints: &[Taint]) -> Result<Option<Instant>> {
        let name = node.metadata.name.clone().unwrap_or_default();
        let pods: Api<Pod> = Api::all(self.ctx.client.clone());
        let list = pods
            .list(&ListParams::default().fields(&format!("spec.nodeName={name}")))
            .await?
            .items;
        let now = jiff::Timestamp::now();
        let mut next: Option<Instant> = None;
        for pod in list {
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            if pod.metadata.deletion_timestamp.is_some() || self.evicted.contains(&uid) {
                continue;
            }
            let tolerations = pod
                .spec
                .as_ref()
                .and_then(|s| s.tolerations.clone())
                .unwrap_or_default();
            match eviction::eviction_time(taints, &tolerations) {
                eviction::When::Never => {}
                eviction::When::At(at) if at > now => {
                    let wait = at.duration_since(now);
                    let wait = Duration::try_from(wait).unwrap_or_default();
                    let due = Instant::now() + wait;
                    next = Some(next.map_or(due, |n: Instant| n.min(due)));
                }
                _ => {
                    if eviction::evict(&self.ctx, &pod).await {
                        self.evicted.insert(uid);
                    }
                }
            }
        }
        // Forget evicted uids that no longer matter (bounded memory).
        if self.evicted.len() > 10_000 {
            self.evicted.clear();
        }
        Ok(next)
    }
}

#[cfg(test)]
mod tests;
