//! The scheduler (upstream kube-scheduler's default profile, reduced): watches all pods and
//! nodes, takes unscheduled pods (`spec.nodeName` empty, schedulerName `default-scheduler` or
//! unset, not terminating, no scheduling gates) in priority-then-FIFO order, filters nodes
//! ([`plugins::filter`]), scores the feasible ones (least-allocated + spreading of a controller's
//! pods), and binds through the `pods/binding` subresource. Decisions are made in batches against
//! an in-memory picture of every node plus an assumed-pod cache, so back-to-back decisions see
//! pods bound a moment ago; bindings run concurrently. Pods that fit nowhere get
//! `PodScheduled=False/Unschedulable` with upstream's "0/N nodes are available: …" message and a
//! `FailedScheduling` event, and are retried when nodes or assigned pods change (after a 1 s →
//! 10 s back-off) and at least every 10 s.

pub mod plugins;
mod preemption;
mod volumes;

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, ObjectReference, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use kube::runtime::WatchStreamExt;
use rand::Rng;
use serde_json::json;
use tokio::sync::{Notify, Semaphore};

use crate::{Context, Result};
use plugins::{NodeInfo, PodFacts, Rejection};
use skiff_client::events::EventType;

/// The scheduler name pods select by default.
pub const DEFAULT_SCHEDULER: &str = "default-scheduler";
/// Event source component.
const COMPONENT: &str = "default-scheduler";
/// Unschedulable pods are retried at least this often even without cluster events.
const MAX_PARKED: Duration = Duration::from_secs(10);
/// Back-off of an unschedulable pod: doubles per attempt from the initial value.
const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Concurrent binding/status requests (bindings are independent; the decisions are serial).
const PARALLEL_WRITES: usize = 32;
/// An assumed pod whose binding succeeded but that the watch never showed bound is forgotten
/// after this (upstream's assumed-pod TTL idea), so its resources are not held forever.
const ASSUME_TTL: Duration = Duration::from_secs(30);

/// Runs this controller until the process stops (errors are retried inside).
pub async fn run(ctx: Arc<Context>) -> Result<()> {
    let shared = Arc::new(Shared::default());
    let pods: Api<Pod> = Api::all(ctx.client.clone());
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let pod_task = tokio::spawn(watch_pods(pods, shared.clone()));
    let node_task = tokio::spawn(watch_nodes(nodes, shared.clone()));
    let pdbs: Api<PodDisruptionBudget> = Api::all(ctx.client.clone());
    let pdb_task = tokio::spawn(watch_pdbs(pdbs, shared.clone()));
    let (stores, volume_tasks) = volumes::start(&ctx.client, shared.clone());
    let writes = Arc::new(Semaphore::new(PARALLEL_WRITES));
    // The watch tasks never end on their own; if they do (panic), stop so the manager notices.
    let abort: Vec<_> = [pod_task, node_task, pdb_task]
        .into_iter()
        .chain(volume_tasks)
        .map(tokio_util::task::AbortOnDropHandle::new)
        .collect();
    stores.wait_ready().await;
    shared.lock().volumes = Some(stores);
    loop {
        let notified = shared.notify.notified();
        let (work, wake_at) = {
            let mut st = shared.lock();
            let work = st.cycle(Instant::now());
            (work, st.next_wake())
        };
        for b in work.bindings {
            tokio::spawn(bind(ctx.clone(), shared.clone(), writes.clone(), b));
        }
        for f in work.failures {
            tokio::spawn(report_unschedulable(ctx.clone(), writes.clone(), f));
        }
        for p in work.preemptions {
            tokio::spawn(preemption::execute(ctx.clone(), p));
        }
        let sleep = wake_at
            .map(|t| t.saturating_duration_since(Instant::now()))
            .unwrap_or(MAX_PARKED)
            .min(MAX_PARKED);
        tokio::select! {
            _ = notified => {}
            _ = tokio::time::sleep(sleep) => {}
        }
        if abort.iter().any(|t| t.is_finished()) {
            return Err(crate::Error::Other("scheduler watch task ended".into()));
        }
    }
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    notify: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent-enough maps; keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A pod placed on a node by this scheduler before the watch shows it bound.
struct Assumed {
    node: String,
    since: Instant,
    /// Set once the binding call succeeded (then only the TTL or the watch clears it).
    bound: bool,
}

/// Retry bookkeeping for a pod that did not fit.
struct Backoff {
    attempts: u32,
    /// Not retried before this, whatever happens.
    backoff_until: Instant,
    /// Retried at this time even without a cluster event.
    parked_until: Instant,
}

/// A pod and what the plugins need from it, computed once per pod version.
#[derive(Clone)]
struct Cached {
    pod: Arc<Pod>,
    facts: Arc<PodFacts>,
}

impl Cached {
    fn new(pod: Pod) -> Self {
        let facts = Arc::new(PodFacts::of(&pod));
        Cached {
            pod: Arc::new(pod),
            facts,
        }
    }
}

#[derive(Default)]
struct State {
    pods: HashMap<String, Cached>,
    nodes: BTreeMap<String, Arc<Node>>,
    pods_synced: bool,
    nodes_synced: bool,
    /// Buffers while a watcher (re)lists.
    pod_init: Option<HashMap<String, Cached>>,
    node_init: Option<BTreeMap<String, Arc<Node>>>,
    assumed: HashMap<String, Assumed>,
    unschedulable: HashMap<String, Backoff>,
    /// Claims, volumes and classes (None in unit tests: volume checks are skipped).
    volumes: Option<volumes::Stores>,
    /// Something changed that may make a pending pod schedulable.
    dirty: bool,
    pre: Preempting,
}

/// What preemption keeps between passes.
#[derive(Default)]
struct Preempting {
    /// PodDisruptionBudgets by namespace/name (preemption prefers not to break them).
    pdbs: HashMap<String, Arc<PodDisruptionBudget>>,
    /// Pods this scheduler nominated to a node by preempting (pod key → node), until the
    /// watch shows them bound or gone.
    nominated: HashMap<String, String>,
    /// Victims deleted by a preemption (pod key → node, when) the watch still shows.
    victims: HashMap<String, (String, Instant)>,
}

/// A binding to issue.
struct Binding {
    key: String,
    namespace: String,
    name: String,
    uid: String,
    node: String,
    pod_ref: ObjectReference,
    /// WaitForFirstConsumer claims to annotate with the node first: (namespace, name).
    claims: Vec<(String, String)>,
}

/// A pod that fit nowhere.
struct Failure {
    namespace: String,
    name: String,
    message: String,
    /// The pod already shows this exact condition; only the event is due.
    condition_current: bool,
    /// PodScheduled is already False: keep its lastTransitionTime (only the message changes).
    already_false: bool,
    pod_ref: ObjectReference,
}

#[derive(Default)]
struct Work {
    bindings: Vec<Binding>,
    failures: Vec<Failure>,
    preemptions: Vec<preemption::Preemption>,
}

fn key_of(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or(""),
        pod.metadata.name.as_deref().unwrap_or("")
    )
}

fn pod_ref(pod: &Pod) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        namespace: pod.metadata.namespace.clone(),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
        resource_version: pod.metadata.resource_version.clone(),
        ..Default::default()
    }
}

fn node_name(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

fn terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// Whether this scheduler is responsible for placing the pod now.
pub fn needs_scheduling(pod: &Pod) -> bool {
    let Some(spec) = &pod.spec else { return false };
    node_name(pod).is_none()
        && pod.metadata.deletion_timestamp.is_none()
        && !terminal(pod)
        && spec
            .scheduler_name
            .as_deref()
            .is_none_or(|s| s.is_empty() || s == DEFAULT_SCHEDULER)
        && spec.scheduling_gates.as_ref().is_none_or(|g| g.is_empty())
}

/// What about a node can change a scheduling decision (heartbeats don't).
fn node_signature(node: &Node) -> String {
    let spec = node.spec.as_ref();
    json!({
        "labels": node.metadata.labels,
        "taints": spec.and_then(|s| s.taints.as_ref()),
        "unschedulable": spec.and_then(|s| s.unschedulable),
        "allocatable": node.status.as_ref().and_then(|s| s.allocatable.as_ref()),
        "ready": plugins::ready_status(node),
    })
    .to_string()
}

/// The PodScheduled=False condition the pod shows, if any: its message.
fn unschedulable_message(pod: &Pod) -> Option<&str> {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"))
        .filter(|c| c.status == "False" && c.reason.as_deref() == Some("Unschedulable"))
        .and_then(|c| c.message.as_deref())
}

impl State {
    /// Un-parks every unschedulable pod (a node or an assigned pod changed); they are retried
    /// once their back-off has passed.
    fn flush_unschedulable(&mut self) {
        for b in self.unschedulable.values_mut() {
            b.parked_until = b.parked_until.min(b.backoff_until);
        }
        self.dirty = true;
    }

    fn apply_pod(&mut self, pod: Pod) {
        let key = key_of(&pod);
        let cached = Cached::new(pod);
        let pod = cached.pod.clone();
        let old = self.pods.insert(key.clone(), cached).map(|c| c.pod);
        if node_name(&pod).is_some() {
            self.assumed.remove(&key);
            self.unschedulable.remove(&key);
            self.pre.nominated.remove(&key);
            // An assigned pod finishing frees its node's resources.
            if terminal(&pod) && old.as_deref().is_some_and(|o| !terminal(o)) {
                self.flush_unschedulable();
            }
        } else if needs_scheduling(&pod) {
            let spec_changed = old.as_ref().is_some_and(|o| o.spec != pod.spec);
            if old.is_none() || spec_changed {
                self.unschedulable.remove(&key);
            }
            self.dirty = true;
        }
    }

    fn delete_pod(&mut self, pod: &Pod) {
        let key = key_of(pod);
        let old = self.pods.remove(&key).map(|c| c.pod);
        let was_assigned = old.as_deref().is_some_and(|p| node_name(p).is_some())
            || self.assumed.contains_key(&key);
        self.assumed.remove(&key);
        self.unschedulable.remove(&key);
        self.pre.nominated.remove(&key);
        self.pre.victims.remove(&key);
        if was_assigned {
            self.flush_unschedulable();
        }
    }

    fn apply_node(&mut self, node: Node) {
        let name = node.metadata.name.clone().unwrap_or_default();
        let changed = self
            .nodes
            .get(&name)
            .is_none_or(|old| node_signature(old) != node_signature(&node));
        self.nodes.insert(name, Arc::new(node));
        if changed {
            self.flush_unschedulable();
        }
    }

    /// When the loop must wake up for parked pods or expiring assumptions.
    fn next_wake(&self) -> Option<Instant> {
        let parked = self.unschedulable.values().map(|b| b.parked_until).min();
        let assumed = self
            .assumed
            .values()
            .filter(|a| a.bound)
            .map(|a| a.since + ASSUME_TTL)
            .min();
        match (parked, assumed) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// One scheduling pass over every pending pod that is due.
    fn cycle(&mut self, now: Instant) -> Work {
        let mut work = Work::default();
        if !self.pods_synced || !self.nodes_synced {
            return work;
        }
        self.assumed
            .retain(|_, a| !(a.bound && now.duration_since(a.since) > ASSUME_TTL));
        self.pre
            .victims
            .retain(|_, (_, since)| now.duration_since(*since) <= ASSUME_TTL);
        let due = self.unschedulable.values().any(|b| b.parked_until <= now);
        if !self.dirty && !due {
            return work;
        }
        self.dirty = false;

        let mut pending: Vec<Cached> = self
            .pods
            .iter()
            .filter(|(k, c)| {
                needs_scheduling(&c.pod)
                    && !self.assumed.contains_key(*k)
                    && self
                        .unschedulable
                        .get(*k)
                        .is_none_or(|b| b.parked_until <= now)
            })
            .map(|(_, c)| c.clone())
            .collect();
        if pending.is_empty() {
            return work;
        }
        pending.sort_by(|a, b| {
            let (a, b) = (&a.pod, &b.pod);
            let prio = |p: &Pod| Reverse(p.spec.as_ref().and_then(|s| s.priority).unwrap_or(0));
            let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
            (prio(a), created(a), key_of(a)).cmp(&(prio(b), created(b), key_of(b)))
        });

        // The picture of every node: assigned pods plus pods assumed by us.
        let mut infos: HashMap<&str, NodeInfo> = self
            .nodes
            .keys()
            .map(|n| (n.as_str(), NodeInfo::default()))
            .collect();
        for (key, c) in &self.pods {
            if terminal(&c.pod) {
                continue;
            }
            let node = node_name(&c.pod).or_else(|| self.assumed.get(key).map(|a| a.node.as_str()));
            if let Some(info) = node.and_then(|n| infos.get_mut(n)) {
                info.add(&c.facts);
            }
        }

        let nodes: Vec<(&str, &Node)> = self
            .nodes
            .iter()
            .map(|(n, node)| (n.as_str(), node.as_ref()))
            .collect();
        let mut rng = rand::thread_rng();
        // Built on the first pod that fits nowhere (preemption needs it), once per pass.
        let mut by_node: Option<HashMap<String, Vec<Cached>>> = None;
        let mut placed: Vec<(String, String)> = Vec::new();
        for Cached { pod, facts } in &pending {
            let key = key_of(pod);
            let vols = match &self.volumes {
                Some(stores) => volumes::pre_filter(pod, stores)
                    .map_err(|m| volumes::pre_filter_error(nodes.len(), &m)),
                None => Ok(volumes::PodVolumes::default()),
            };
            let result = vols.and_then(|vols| {
                let check = |n: &Node| match &self.volumes {
                    Some(stores) => volumes::filter(&vols, stores, n),
                    None => Ok(()),
                };
                schedule_one(pod, facts, &nodes, &infos, &mut rng, &check)
                    .map(|node| (node, vols.to_select()))
            });
            match result {
                Ok((node, claims)) => {
                    if let Some(info) = infos.get_mut(node) {
                        info.add(facts);
                    }
                    placed.push((key.clone(), node.to_string()));
                    work.bindings.push(Binding {
                        key,
                        namespace: pod.metadata.namespace.clone().unwrap_or_default(),
                        name: pod.metadata.name.clone().unwrap_or_default(),
                        uid: pod.metadata.uid.clone().unwrap_or_default(),
                        node: node.to_string(),
                        pod_ref: pod_ref(pod),
                        claims,
                    });
                }
                Err(message) => {
                    let by_node =
                        by_node.get_or_insert_with(|| pods_by_node(&self.pods, &self.assumed));
                    preempt(
                        &mut self.pre,
                        by_node,
                        (pod, facts, &key),
                        &nodes,
                        &mut infos,
                        &mut work,
                    );
                    let b = self.unschedulable.entry(key).or_insert(Backoff {
                        attempts: 0,
                        backoff_until: now,
                        parked_until: now,
                    });
                    b.attempts = b.attempts.saturating_add(1);
                    let backoff = INITIAL_BACKOFF
                        .saturating_mul(1 << (b.attempts - 1).min(8))
                        .min(MAX_BACKOFF);
                    b.backoff_until = now + backoff;
                    b.parked_until = now + MAX_PARKED;
                    work.failures.push(Failure {
                        namespace: pod.metadata.namespace.clone().unwrap_or_default(),
                        name: pod.metadata.name.clone().unwrap_or_default(),
                        condition_current: unschedulable_message(pod) == Some(message.as_str()),
                        already_false: unschedulable_message(pod).is_some(),
                        message,
                        pod_ref: pod_ref(pod),
                    });
                }
            }
        }
        for (key, node) in placed {
            self.unschedulable.remove(&key);
            self.assumed.insert(
                key,
                Assumed {
                    node,
                    since: now,
                    bound: false,
                },
            );
        }
        work
    }
}

/// The PostFilter step for a pod that fit nowhere: a pod already nominated keeps its room
/// reserved against lower-priority pods of this pass; otherwise, if it may preempt, the best
/// node's victims are chosen and the preemption is queued.
/// The non-terminal pods on each node, bound or assumed.
fn pods_by_node(
    pods: &HashMap<String, Cached>,
    assumed: &HashMap<String, Assumed>,
) -> HashMap<String, Vec<Cached>> {
    let mut by_node: HashMap<String, Vec<Cached>> = HashMap::new();
    for (k, c) in pods {
        if terminal(&c.pod) {
            continue;
        }
        let node = node_name(&c.pod).or_else(|| assumed.get(k).map(|a| a.node.as_str()));
        if let Some(n) = node {
            by_node.entry(n.to_string()).or_default().push(c.clone());
        }
    }
    by_node
}

fn preempt<'n>(
    pre: &mut Preempting,
    by_node: &HashMap<String, Vec<Cached>>,
    (pod, facts, key): (&Pod, &PodFacts, &str),
    nodes: &[(&'n str, &Node)],
    infos: &mut HashMap<&'n str, NodeInfo>,
    work: &mut Work,
) {
    let nominated = pre
        .nominated
        .get(key)
        .cloned()
        .or_else(|| preemption::nominated_node(pod).map(str::to_string));
    let victims_pending = nominated
        .as_deref()
        .is_some_and(|n| pre.victims.values().any(|(v, _)| v == n));
    let on_nominated: Vec<&Cached> = nominated
        .as_deref()
        .and_then(|n| by_node.get(n))
        .into_iter()
        .flatten()
        .collect();
    if !preemption::eligible(pod, nominated.as_deref(), &on_nominated, victims_pending) {
        if let Some(info) = nominated.as_deref().and_then(|n| infos.get_mut(n)) {
            info.add(facts);
        }
        return;
    }
    let pdbs: Vec<Arc<PodDisruptionBudget>> = pre.pdbs.values().cloned().collect();
    let empty = NodeInfo::default();
    let mut candidates = Vec::new();
    for (name, node) in nodes {
        let info = infos.get(name).unwrap_or(&empty);
        match plugins::filter(pod, facts, node, info) {
            Err(r) if r.resolvable => {}
            _ => continue,
        }
        // Victims of an earlier preemption are as good as gone.
        let on_node: Vec<&Cached> = by_node
            .get(*name)
            .into_iter()
            .flatten()
            .filter(|c| !pre.victims.contains_key(&key_of(&c.pod)))
            .collect();
        if let Some(c) = preemption::select_victims(pod, facts, node, &on_node, &pdbs) {
            candidates.push(c);
        }
    }
    let Some(best) = preemption::pick(candidates) else {
        return;
    };
    let now = Instant::now();
    for v in &best.victims {
        pre.victims.insert(key_of(v), (best.node.clone(), now));
    }
    if let Some(info) = infos.get_mut(best.node.as_str()) {
        info.add(facts);
    }
    pre.nominated.insert(key.to_string(), best.node.clone());
    work.preemptions
        .push(preemption::Preemption::new(pod, best));
}

/// Filters and scores all nodes for one pod; the best node or upstream's FitError message.
fn schedule_one<'a>(
    pod: &Pod,
    facts: &PodFacts,
    nodes: &[(&'a str, &Node)],
    infos: &HashMap<&str, NodeInfo>,
    rng: &mut impl Rng,
    volume_filter: &dyn Fn(&Node) -> std::result::Result<(), Rejection>,
) -> std::result::Result<&'a str, String> {
    let empty = NodeInfo::default();
    let mut feasible: Vec<(&'a str, &Node, &NodeInfo)> = Vec::new();
    let mut rejections: Vec<Rejection> = Vec::new();
    for (name, node) in nodes {
        let info = infos.get(name).unwrap_or(&empty);
        match plugins::filter(pod, facts, node, info).and_then(|()| volume_filter(node)) {
            Ok(()) => feasible.push((name, node, info)),
            Err(r) => rejections.push(r),
        }
    }
    if feasible.is_empty() {
        return Err(plugins::fit_error(nodes.len(), &rejections));
    }
    let owner_count = |info: &NodeInfo| {
        facts
            .owner
            .as_ref()
            .and_then(|o| info.owners.get(o).copied())
            .unwrap_or(0)
    };
    let max_owner = feasible
        .iter()
        .map(|(_, _, info)| owner_count(info))
        .max()
        .unwrap_or(0);
    let mut best: Vec<&'a str> = Vec::new();
    let mut best_score = i64::MIN;
    for (name, node, info) in &feasible {
        let score = plugins::WEIGHT_LEAST_ALLOCATED * plugins::least_allocated(facts, node, info)
            + plugins::WEIGHT_SPREAD * plugins::spread(owner_count(info), max_owner);
        if score > best_score {
            best_score = score;
            best.clear();
        }
        if score == best_score {
            best.push(name);
        }
    }
    let pick = rng.gen_range(0..best.len());
    Ok(best[pick])
}

async fn bind(ctx: Arc<Context>, shared: Arc<Shared>, writes: Arc<Semaphore>, b: Binding) {
    let result = async {
        let _permit = writes.acquire().await;
        volumes::select_node(&ctx.client, &b.claims, &b.node).await?;
        let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &b.namespace);
        let body = json!({
            "apiVersion": "v1", "kind": "Binding",
            "metadata": {"name": b.name, "namespace": b.namespace, "uid": b.uid},
            "target": {"apiVersion": "v1", "kind": "Node", "name": b.node},
        });
        api.create_subresource::<_, serde_json::Value>(
            "binding",
            &b.name,
            &PostParams::default(),
            &body,
        )
        .await
    }
    .await;
    match result {
        Ok(_) => {
            if let Some(a) = shared.lock().assumed.get_mut(&b.key) {
                a.bound = true;
                a.since = Instant::now();
            }
            ctx.events
                .publish(
                    COMPONENT,
                    &b.pod_ref,
                    EventType::Normal,
                    "Scheduled",
                    &format!(
                        "Successfully assigned {}/{} to {}",
                        b.namespace, b.name, b.node
                    ),
                )
                .await;
        }
        Err(err) => {
            // Forget the assumption; the pod is retried on the next pass (if it still exists
            // and is still unassigned, which the watch decides).
            tracing::warn!(pod = %b.key, node = %b.node, %err, "binding failed");
            let mut st = shared.lock();
            st.assumed.remove(&b.key);
            st.dirty = true;
            drop(st);
            shared.notify.notify_one();
        }
    }
}

async fn report_unschedulable(ctx: Arc<Context>, writes: Arc<Semaphore>, f: Failure) {
    let _permit = writes.acquire().await;
    tracing::debug!(pod = %format!("{}/{}", f.namespace, f.name), message = %f.message, "unschedulable");
    if !f.condition_current {
        let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &f.namespace);
        let mut cond = json!({
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": f.message, "lastProbeTime": null,
        });
        if !f.already_false {
            cond["lastTransitionTime"] = json!(jiff::Timestamp::now().to_string());
        }
        // Strategic merge: conditions merge by type, other conditions stay.
        let patch = json!({"status": {"conditions": [cond]}});
        if let Err(err) = api
            .patch_status(&f.name, &PatchParams::default(), &Patch::Strategic(&patch))
            .await
        {
            tracing::debug!(pod = %f.name, %err, "could not set PodScheduled=False");
        }
    }
    ctx.events
        .publish(
            COMPONENT,
            &f.pod_ref,
            EventType::Warning,
            "FailedScheduling",
            &f.message,
        )
        .await;
}

async fn watch_pods(api: Api<Pod>, shared: Arc<Shared>) {
    let mut stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(ev) = stream.next().await {
        let ev = match ev {
            Ok(ev) => ev,
            Err(err) => {
                tracing::warn!(%err, "scheduler: pod watch failed; retrying");
                continue;
            }
        };
        let mut st = shared.lock();
        match ev {
            watcher::Event::Init => st.pod_init = Some(HashMap::new()),
            watcher::Event::InitApply(p) => {
                let key = key_of(&p);
                st.pod_init
                    .get_or_insert_with(HashMap::new)
                    .insert(key, Cached::new(p));
            }
            watcher::Event::InitDone => {
                let fresh = st.pod_init.take().unwrap_or_default();
                // Keep assumptions for pods that still exist unbound; drop the rest.
                st.assumed
                    .retain(|k, _| fresh.get(k).is_some_and(|c| node_name(&c.pod).is_none()));
                st.unschedulable.retain(|k, _| fresh.contains_key(k));
                st.pods = fresh;
                st.pods_synced = true;
                st.flush_unschedulable();
            }
            watcher::Event::Apply(p) => st.apply_pod(p),
            watcher::Event::Delete(p) => st.delete_pod(&p),
        }
        let dirty = st.dirty;
        drop(st);
        if dirty {
            shared.notify.notify_one();
        }
    }
}

async fn watch_nodes(api: Api<Node>, shared: Arc<Shared>) {
    let mut stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(ev) = stream.next().await {
        let ev = match ev {
            Ok(ev) => ev,
            Err(err) => {
                tracing::warn!(%err, "scheduler: node watch failed; retrying");
                continue;
            }
        };
        let mut st = shared.lock();
        match ev {
            watcher::Event::Init => st.node_init = Some(BTreeMap::new()),
            watcher::Event::InitApply(n) => {
                let name = n.metadata.name.clone().unwrap_or_default();
                st.node_init
                    .get_or_insert_with(BTreeMap::new)
                    .insert(name, Arc::new(n));
            }
            watcher::Event::InitDone => {
                st.nodes = st.node_init.take().unwrap_or_default();
                st.nodes_synced = true;
                st.flush_unschedulable();
            }
            watcher::Event::Apply(n) => st.apply_node(n),
            watcher::Event::Delete(n) => {
                let name = n.metadata.name.clone().unwrap_or_default();
                st.nodes.remove(&name);
                // Pods assumed onto a vanished node go back to the queue.
                st.assumed.retain(|_, a| a.node != name);
                st.dirty = true;
            }
        }
        let dirty = st.dirty;
        drop(st);
        if dirty {
            shared.notify.notify_one();
        }
    }
}

async fn watch_pdbs(api: Api<PodDisruptionBudget>, shared: Arc<Shared>) {
    let mut stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut init: Option<HashMap<String, Arc<PodDisruptionBudget>>> = None;
    let key = |b: &PodDisruptionBudget| {
        format!(
            "{}/{}",
            b.metadata.namespace.as_deref().unwrap_or(""),
            b.metadata.name.as_deref().unwrap_or("")
        )
    };
    while let Some(ev) = stream.next().await {
        let ev = match ev {
            Ok(ev) => ev,
            Err(err) => {
                tracing::warn!(%err, "scheduler: PodDisruptionBudget watch failed; retrying");
                continue;
            }
        };
        match ev {
            watcher::Event::Init => init = Some(HashMap::new()),
            watcher::Event::InitApply(b) => {
                init.get_or_insert_with(HashMap::new)
                    .insert(key(&b), Arc::new(b));
            }
            watcher::Event::InitDone => shared.lock().pre.pdbs = init.take().unwrap_or_default(),
            watcher::Event::Apply(b) => {
                shared.lock().pre.pdbs.insert(key(&b), Arc::new(b));
            }
            watcher::Event::Delete(b) => {
                shared.lock().pre.pdbs.remove(&key(&b));
            }
        }
    }
}

#[cfg(test)]
mod tests;
