//! The DaemonSet controller (upstream `pkg/controller/daemon`): one pod of each DaemonSet on
//! every node that should run it.
//!
//! A node should run a daemon pod when it matches the template's nodeSelector and required node
//! affinity and every NoSchedule/NoExecute taint is tolerated, counting the tolerations the
//! controller adds to every daemon pod (not-ready/unreachable NoExecute; disk/memory/pid
//! pressure and unschedulable NoSchedule; network-unavailable for hostNetwork pods), so daemon
//! pods also land on cordoned nodes. Pods are created with required node affinity
//! `metadata.name In [node]` and bound by the scheduler, as upstream does since 1.12. Extra,
//! failed and misplaced pods are deleted. Updates: `RollingUpdate` (default, `maxUnavailable` 1)
//! replaces pods whose `controller-revision-hash` differs from the template's, never leaving more
//! than `maxUnavailable` nodes without an available pod; `OnDelete` waits for the user. Each
//! template gets a ControllerRevision (`daemonset_history`) for `kubectl rollout history|undo`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::{stream, TryStreamExt};
use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    Taint, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{self, reflector, ObjectRef, Store};
use kube::runtime::watcher;
use kube::runtime::WatchStreamExt;
use kube::{Resource, ResourceExt};
use sha2::{Digest, Sha256};

use crate::owned::{owner, owner_triggers, pod_key, pod_triggers};
use crate::replicaset::expectations::Expectations;
use crate::replicaset::pods::{is_available, pod_from_template};
use crate::scheduler::plugins::{matches_node_affinity, tolerated_by};
use crate::{api_message, Context, Error, Result};
use skiff_client::driver::{drive, requeue_after};
use skiff_client::events::EventType;
use skiff_semantics::labels::Selector;
use skiff_semantics::wellknown::{labels, taints};

const COMPONENT: &str = "daemonset-controller";
const ERROR_REQUEUE: Duration = Duration::from_secs(2);
const UNSATISFIED_RECHECK: Duration = Duration::from_secs(30);

/// A daemon pod as one sync sees it: (`ns/name`, revision hash, available).
type DaemonPod = (String, String, bool);
/// Per node: whether it should run the daemon, and its live daemon pods.
type NodePods = BTreeMap<String, (bool, Vec<DaemonPod>)>;

struct Dsc {
    ctx: Arc<Context>,
    pod_store: Store<Pod>,
    node_store: Store<Node>,
    ds_store: Store<DaemonSet>,
    expectations: Arc<Expectations>,
}

/// Runs this controller until the process stops (errors are retried inside).
pub async fn run(ctx: Arc<Context>) -> Result<()> {
    let client = ctx.client.clone();
    let (ds_store, ds_writer) = reflector::store::<DaemonSet>();
    let (pod_store, pod_writer) = reflector::store::<Pod>();
    let (node_store, node_writer) = reflector::store::<Node>();
    let dsc = Arc::new(Dsc {
        ctx,
        pod_store,
        node_store,
        ds_store: ds_store.clone(),
        expectations: Arc::new(Expectations::default()),
    });
    let ds_triggers = owner_triggers(
        ds_writer,
        Api::<DaemonSet>::all(client.clone()),
        dsc.expectations.clone(),
    );
    let pod_triggers = pod_triggers::<DaemonSet>(
        pod_writer,
        Api::<Pod>::all(client.clone()),
        dsc.expectations.clone(),
        "DaemonSet",
        "apps",
        // Orphans: not adopted (upstream does; a DaemonSet recreates its own pods).
        None,
    );

    // Any node change may change where daemons should run: sync every DaemonSet.
    let node_triggers = reflector(
        node_writer,
        watcher(Api::<Node>::all(client), watcher::Config::default()),
    )
    .default_backoff()
    .map_ok({
        let dsc = dsc.clone();
        move |ev| {
            let refs: Vec<ObjectRef<DaemonSet>> = match ev {
                watcher::Event::Apply(_) | watcher::Event::Delete(_) => dsc
                    .ds_store
                    .state()
                    .iter()
                    .map(|d| ObjectRef::from_obj(d.as_ref()))
                    .collect(),
                _ => vec![],
            };
            stream::iter(refs.into_iter().map(Ok::<_, watcher::Error>))
        }
    })
    .try_flatten();

    let queue = stream::select(stream::select(ds_triggers, pod_triggers), node_triggers);
    drive(
        "daemonset",
        dsc,
        ds_store,
        queue,
        requeue_after("daemonset", ERROR_REQUEUE),
        |obj, c| Box::pin(async move { c.reconcile(obj).await }),
    )
    .await;
    Err(Error::WatchEnded("daemonset"))
}

fn ds_owner(p: &Pod) -> Option<(String, String)> {
    owner(&p.metadata, "DaemonSet", "apps")
}

/// The template's hash (what `controller-revision-hash` carries).
fn template_hash(ds: &DaemonSet) -> String {
    let template = ds.spec.as_ref().map(|s| &s.template);
    let json = serde_json::to_vec(&template).unwrap_or_default();
    let digest = Sha256::digest(&json);
    hex::encode(&digest[..5])
}

fn toleration(key: &str, effect: &str) -> Toleration {
    Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some(effect.into()),
        ..Default::default()
    }
}

/// Upstream's `AddOrUpdateDaemonPodTolerations`.
fn add_daemon_tolerations(pod: &mut Pod) {
    let Some(spec) = pod.spec.as_mut() else {
        return;
    };
    let mut wanted = vec![
        toleration(taints::NOT_READY, "NoExecute"),
        toleration(taints::UNREACHABLE, "NoExecute"),
        toleration(taints::DISK_PRESSURE, "NoSchedule"),
        toleration(taints::MEMORY_PRESSURE, "NoSchedule"),
        toleration(taints::PID_PRESSURE, "NoSchedule"),
        toleration(taints::UNSCHEDULABLE, "NoSchedule"),
    ];
    if spec.host_network == Some(true) {
        wanted.push(toleration(taints::NETWORK_UNAVAILABLE, "NoSchedule"));
    }
    let list = spec.tolerations.get_or_insert_with(Vec::new);
    for t in wanted {
        if !list.iter().any(|x| x.key == t.key && x.effect == t.effect) {
            list.push(t);
        }
    }
}

/// The daemon pod for `node` (template + tolerations + node affinity + revision label).
fn new_pod(ds: &DaemonSet, node: &str, hash: &str) -> Pod {
    let owner = OwnerReference {
        api_version: "apps/v1".into(),
        kind: "DaemonSet".into(),
        name: ds.name_any(),
        uid: ds.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    let mut pod = pod_from_template(
        ds.spec.as_ref().map(|s| s.template.clone()),
        ds.metadata.namespace.clone(),
        owner,
    );
    pod.metadata
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert(labels::CONTROLLER_REVISION_HASH.into(), hash.into());
    add_daemon_tolerations(&mut pod);
    if let Some(spec) = pod.spec.as_mut() {
        // Upstream's ReplaceDaemonSetPodNodeNameNodeAffinity: the scheduler binds it there.
        let term = NodeSelectorTerm {
            match_fields: Some(vec![NodeSelectorRequirement {
                key: "metadata.name".into(),
                operator: "In".into(),
                values: Some(vec![node.into()]),
            }]),
            match_expressions: None,
        };
        let affinity = spec.affinity.get_or_insert_with(Affinity::default);
        let na = affinity
            .node_affinity
            .get_or_insert_with(NodeAffinity::default);
        na.required_during_scheduling_ignored_during_execution = Some(NodeSelector {
            node_selector_terms: vec![term],
        });
    }
    pod
}

/// Whether `node` should run a pod of `ds` (upstream `NodeShouldRunDaemonPod`).
fn should_run(ds: &DaemonSet, node: &Node) -> bool {
    let mut proto = pod_from_template(
        ds.spec.as_ref().map(|s| s.template.clone()),
        None,
        OwnerReference::default(),
    );
    add_daemon_tolerations(&mut proto);
    if !matches_node_affinity(&proto, node) {
        return false;
    }
    let tolerations = proto
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.clone())
        .unwrap_or_default();
    let taints: Vec<Taint> = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    taints
        .iter()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .all(|t| tolerated_by(&tolerations, t))
}

/// The node a daemon pod is for: its binding, else its node-affinity target.
fn target_node(p: &Pod) -> Option<String> {
    let spec = p.spec.as_ref()?;
    if let Some(n) = spec.node_name.clone().filter(|n| !n.is_empty()) {
        return Some(n);
    }
    spec.affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms
        .iter()
        .flat_map(|t| t.match_fields.iter().flatten())
        .find(|r| r.key == "metadata.name" && r.operator == "In")
        .and_then(|r| r.values.as_ref()?.first().cloned())
}

fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// What one sync decided (pure, for tests).
#[derive(Debug, Default, PartialEq)]
struct Decision {
    /// Nodes that need a new pod.
    create: Vec<String>,
    /// Pods (`ns/name`) to delete.
    delete: Vec<String>,
}

/// Per node: `should` run a daemon there, and its live pods.
fn decide(nodes: &NodePods, failed: &[String], hash: &str, rolling: Option<i64>) -> Decision {
    let mut d = Decision {
        delete: failed.to_vec(),
        ..Default::default()
    };
    // Nodes without an available pod (counted against maxUnavailable).
    let mut unavailable = 0i64;
    let mut old_available: Vec<String> = Vec::new();
    for (node, (should, pods)) in nodes {
        if !should {
            d.delete.extend(pods.iter().map(|p| p.0.clone()));
            continue;
        }
        match pods.as_slice() {
            [] => {
                d.create.push(node.clone());
                unavailable += 1;
            }
            [first, rest @ ..] => {
                // Keep one: the current revision if there is one, else the first.
                let keep = pods.iter().find(|p| p.1 == hash).unwrap_or(first);
                d.delete.extend(
                    std::iter::once(first)
                        .chain(rest)
                        .filter(|p| p.0 != keep.0)
                        .map(|p| p.0.clone()),
                );
                if !keep.2 {
                    unavailable += 1;
                }
                if rolling.is_some() && keep.1 != hash {
                    if keep.2 {
                        old_available.push(keep.0.clone());
                    } else {
                        // An old pod that is not even available: replace it at once.
                        d.delete.push(keep.0.clone());
                    }
                }
            }
        }
    }
    if let Some(max) = rolling {
        let budget = (max - unavailable).max(0) as usize;
        d.delete.extend(old_available.into_iter().take(budget));
    }
    d
}

impl Dsc {
    async fn reconcile(&self, ds: Arc<DaemonSet>) -> Result<Action> {
        let cache = |e: reflector::store::WriterDropped| Error::Other(format!("cache: {e}"));
        self.pod_store.wait_until_ready().await.map_err(cache)?;
        self.node_store.wait_until_ready().await.map_err(cache)?;
        if ds.metadata.deletion_timestamp.is_some() {
            return Ok(Action::await_change());
        }
        let ns = ds.namespace().unwrap_or_default();
        let uid = ds.metadata.uid.clone().unwrap_or_default();
        let Some(spec) = ds.spec.as_ref() else {
            return Ok(Action::await_change());
        };
        let Ok(selector) = Selector::from_label_selector(&spec.selector) else {
            return Ok(Action::await_change());
        };
        let hash = template_hash(&ds);
        let nodes = self.node_store.state();
        let pods: Vec<Arc<Pod>> = self
            .pod_store
            .state()
            .into_iter()
            .filter(|p| p.namespace().as_deref() == Some(ns.as_str()))
            .filter(|p| ds_owner(p).is_some_and(|(_, u)| u == uid))
            .filter(|p| selector.matches(&p.metadata.labels.as_ref()))
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect();
        let min_ready = spec.min_ready_seconds.unwrap_or(0);
        let now = jiff::Timestamp::now();
        let mut by_node: NodePods = nodes
            .iter()
            .map(|n| (n.name_any(), (should_run(&ds, n), Vec::new())))
            .collect();
        let mut failed = Vec::new();
        let mut orphans = Vec::new();
        for p in &pods {
            if phase(p) == "Failed" || phase(p) == "Succeeded" {
                failed.push(pod_key(p));
                continue;
            }
            let rev = p
                .labels()
                .get(labels::CONTROLLER_REVISION_HASH)
                .cloned()
                .unwrap_or_default();
            match target_node(p).and_then(|n| by_node.get_mut(&n)) {
                Some((_, list)) => list.push((pod_key(p), rev, is_available(p, min_ready, now))),
                // Its node is gone.
                None => orphans.push(pod_key(p)),
            }
        }
        let rolling = match spec
            .update_strategy
            .as_ref()
            .and_then(|s| s.type_.as_deref())
        {
            Some("OnDelete") => None,
            _ => Some(max_unavailable(
                &ds,
                by_node.values().filter(|v| v.0).count(),
            )),
        };
        let live: std::collections::HashSet<String> = pods
            .iter()
            .filter_map(|p| p.labels().get(labels::CONTROLLER_REVISION_HASH).cloned())
            .collect();
        crate::daemonset_history::sync(&self.ctx.client, &ds, &hash, &live).await?;
        let mut decision = decide(&by_node, &failed, &hash, rolling);
        decision.delete.extend(orphans);

        let mut requeue = None;
        if self.expectations.satisfied(&uid) {
            self.create_pods(&ds, &decision.create, &hash).await?;
            self.delete_pods(&ds, &decision.delete).await?;
        } else {
            requeue = Some(UNSATISFIED_RECHECK);
        }
        self.update_status(&ds, &by_node, &hash, &pods).await?;
        // minReadySeconds pass without any event.
        if min_ready > 0 && pods.iter().any(|p| !is_available(p, min_ready, now)) {
            let wait = Duration::from_secs(u64::try_from(min_ready).unwrap_or(0));
            requeue = Some(requeue.map_or(wait, |r: Duration| r.min(wait)));
        }
        Ok(requeue.map_or_else(Action::await_change, Action::requeue))
    }

    async fn create_pods(&self, ds: &DaemonSet, nodes: &[String], hash: &str) -> Result<()> {
        if nodes.is_empty() {
            return Ok(());
        }
        let uid = ds.metadata.uid.clone().unwrap_or_default();
        let api: Api<Pod> =
            Api::namespaced(self.ctx.client.clone(), &ds.namespace().unwrap_or_default());
        self.expectations.expect_creations(&uid, nodes.len());
        let mut first_err = None;
        for node in nodes {
            match api
                .create(&PostParams::default(), &new_pod(ds, node, hash))
                .await
            {
                Ok(p) => {
                    self.event(
                        ds,
                        EventType::Normal,
                        "SuccessfulCreate",
                        &format!("Created pod: {}", p.name_any()),
                    )
                    .await
                }
                Err(e) => {
                    self.expectations.lower_creations(&uid, 1);
                    let msg = format!("Error creating: {}", api_message(&e));
                    self.event(ds, EventType::Warning, "FailedCreate", &msg)
                        .await;
                    first_err.get_or_insert(msg);
                }
            }
        }
        first_err.map_or(Ok(()), |e| Err(Error::Other(e)))
    }

    async fn delete_pods(&self, ds: &DaemonSet, keys: &[String]) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let uid = ds.metadata.uid.clone().unwrap_or_default();
        self.expectations
            .expect_deletions(&uid, keys.iter().cloned());
        for key in keys {
            let (ns, name) = key.split_once('/').unwrap_or(("", key));
            let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), ns);
            match api.delete(name, &DeleteParams::default()).await {
                Ok(_) => {
                    self.event(
                        ds,
                        EventType::Normal,
                        "SuccessfulDelete",
                        &format!("Deleted pod: {name}"),
                    )
                    .await
                }
                Err(e) => {
                    self.expectations.deletion_observed(&uid, key);
                    if !matches!(&e, kube::Error::Api(s) if s.code == 404) {
                        return Err(e.into());
                    }
                }
            }
        }
        Ok(())
    }

    async fn update_status(
        &self,
        ds: &DaemonSet,
        by_node: &NodePods,
        hash: &str,
        pods: &[Arc<Pod>],
    ) -> Result<()> {
        let ready: HashMap<String, bool> = pods
            .iter()
            .map(|p| (pod_key(p), crate::replicaset::pods::is_ready(p)))
            .collect();
        let (mut desired, mut current, mut mis, mut nready, mut updated, mut available) =
            (0, 0, 0, 0, 0, 0);
        for (should, list) in by_node.values() {
            if *should {
                desired += 1;
                if let Some(p) = list.first() {
                    current += 1;
                    if ready.get(&p.0) == Some(&true) {
                        nready += 1;
                    }
                    if p.2 {
                        available += 1;
                    }
                }
                if list.iter().any(|p| p.1 == hash) {
                    updated += 1;
                }
            } else if !list.is_empty() {
                mis += 1;
            }
        }
        let status = DaemonSetStatus {
            current_number_scheduled: current,
            desired_number_scheduled: desired,
            number_misscheduled: mis,
            number_ready: nready,
            updated_number_scheduled: Some(updated),
            number_available: Some(available),
            number_unavailable: Some(desired - available).filter(|n| *n > 0),
            observed_generation: ds.metadata.generation,
            collision_count: ds.status.as_ref().and_then(|s| s.collision_count),
            conditions: ds.status.as_ref().and_then(|s| s.conditions.clone()),
        };
        if ds.status.as_ref() == Some(&status) {
            return Ok(());
        }
        let api: Api<DaemonSet> =
            Api::namespaced(self.ctx.client.clone(), &ds.namespace().unwrap_or_default());
        let mut obj = ds.clone();
        obj.status = Some(status);
        match api
            .replace_status(&ds.name_any(), &PostParams::default(), &obj)
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn event(&self, ds: &DaemonSet, kind: EventType, reason: &str, message: &str) {
        self.ctx
            .events
            .publish(COMPONENT, &ds.object_ref(&()), kind, reason, message)
            .await;
    }
}

/// `maxUnavailable` of a RollingUpdate (an int or a percentage of the desired nodes, rounded
/// up, at least 1 as upstream requires when maxSurge is 0).
fn max_unavailable(ds: &DaemonSet, desired: usize) -> i64 {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let v = ds
        .spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.rolling_update.as_ref())
        .and_then(|r| r.max_unavailable.clone());
    let n = match v {
        Some(IntOrString::Int(i)) => i64::from(i),
        Some(IntOrString::String(s)) => s
            .strip_suffix('%')
            .and_then(|p| p.parse::<i64>().ok())
            .map(|p| (p * desired as i64 + 99) / 100)
            .unwrap_or(1),
        None => 1,
    };
    n.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    type Spec<'a> = (&'a str, bool, &'a [(&'a str, &'a str, bool)]);

    fn nodes(list: &[Spec]) -> NodePods {
        list.iter()
            .map(|(n, should, pods)| {
                (
                    n.to_string(),
                    (
                        *should,
                        pods.iter()
                            .map(|(k, h, a)| (k.to_string(), h.to_string(), *a))
                            .collect(),
                    ),
                )
            })
            .collect()
    }

    #[test]
    fn one_pod_per_eligible_node() {
        let d = decide(
            &nodes(&[
                ("a", true, &[]),
                ("b", true, &[("ns/p1", "h", true), ("ns/p2", "h", true)]),
                ("c", false, &[("ns/p3", "h", true)]),
            ]),
            &["ns/dead".to_string()],
            "h",
            Some(1),
        );
        assert_eq!(d.create, vec!["a".to_string()]);
        let mut del = d.delete.clone();
        del.sort();
        assert_eq!(del, vec!["ns/dead", "ns/p2", "ns/p3"]);
    }

    #[test]
    fn rolling_update_respects_max_unavailable() {
        let three_old = nodes(&[
            ("a", true, &[("ns/a", "old", true)]),
            ("b", true, &[("ns/b", "old", true)]),
            ("c", true, &[("ns/c", "old", true)]),
        ]);
        assert_eq!(decide(&three_old, &[], "new", Some(1)).delete.len(), 1);
        assert_eq!(decide(&three_old, &[], "new", Some(2)).delete.len(), 2);
        assert!(
            decide(&three_old, &[], "new", None).delete.is_empty(),
            "OnDelete"
        );
        // One node is already without an available pod: nothing more may go.
        let busy = nodes(&[
            ("a", true, &[("ns/a", "new", false)]),
            ("b", true, &[("ns/b", "old", true)]),
        ]);
        assert!(decide(&busy, &[], "new", Some(1)).delete.is_empty());
    }

    #[test]
    fn daemon_pods_tolerate_cordon_and_target_their_node() {
        let ds: DaemonSet = serde_json::from_value(json!({
            "metadata": {"name": "agent", "namespace": "kube-system", "uid": "u1"},
            "spec": {"selector": {"matchLabels": {"app": "agent"}},
                "template": {"metadata": {"labels": {"app": "agent"}},
                    "spec": {"nodeSelector": {"disk": "ssd"},
                        "containers": [{"name": "c", "image": "x"}]}}}
        }))
        .expect("ds");
        let node = |labels: serde_json::Value, spec: serde_json::Value| -> Node {
            serde_json::from_value(
                json!({"metadata": {"name": "n1", "labels": labels}, "spec": spec}),
            )
            .expect("node")
        };
        let cordoned = node(
            json!({"disk": "ssd"}),
            json!({"unschedulable": true, "taints": [
                {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]}),
        );
        assert!(should_run(&ds, &cordoned));
        assert!(!should_run(&ds, &node(json!({"disk": "hdd"}), json!({}))));
        let tainted = node(
            json!({"disk": "ssd"}),
            json!({"taints": [{"key": "gpu", "effect": "NoSchedule"}]}),
        );
        assert!(!should_run(&ds, &tainted));
        let pod = new_pod(&ds, "n1", "abc");
        assert_eq!(target_node(&pod).as_deref(), Some("n1"));
        assert_eq!(
            pod.labels()
                .get(labels::CONTROLLER_REVISION_HASH)
                .map(String::as_str),
            Some("abc")
        );
    }
}
