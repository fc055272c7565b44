//! The ReplicaSet controller (upstream `pkg/controller/replicaset`): keeps `spec.replicas` active
//! pods per ReplicaSet.
//!
//! Reflectors on ReplicaSets and Pods feed the shared driver (`skiff_client::driver`: a
//! de-duplicating queue, one reconcile per object at a time). A reconcile claims pods (adopt matching orphans, release
//! owned pods that stopped matching), then — only when its expectations are satisfied, so a
//! lagging cache never causes double creates/deletes — creates missing pods in slow-start
//! batches or deletes the most deletable surplus pods, and finally writes `status` when it
//! changed. Pod watch events satisfy expectations and enqueue the owning (or, for orphans,
//! every matching) ReplicaSet.

pub(crate) mod expectations;
pub(crate) mod pods;
mod ranking;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::{stream, StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{
    ReplicaSet, ReplicaSetCondition, ReplicaSetSpec, ReplicaSetStatus,
};
use k8s_openapi::api::core::v1::{
    Pod, ReplicationController, ReplicationControllerCondition, ReplicationControllerSpec,
    ReplicationControllerStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, ObjectMeta, OwnerReference, Time,
};
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{self, reflector, ObjectRef, Store};
use kube::runtime::watcher;
use kube::runtime::WatchStreamExt;
use kube::{Resource, ResourceExt};
use skiff_semantics::labels::{matches_set, Selector};

use self::expectations::Expectations;
use self::pods::{
    controller_ref, is_active, is_available, is_ready, pod_from_template, ready_since,
};
use crate::{api_message, Context, Error, Result};
use skiff_client::driver::{drive, requeue_after};
use skiff_client::events::EventType;

const COMPONENT: &str = "replicaset-controller";
/// Max creates or deletes per sync (upstream `BurstReplicas`).
const BURST_REPLICAS: usize = 500;
/// Re-check an RS whose expectations are pending (covers watch events lost in a relist).
const UNSATISFIED_RECHECK: Duration = Duration::from_secs(30);
/// Retry delay after a failed sync.
const ERROR_REQUEUE: Duration = Duration::from_secs(2);

/// Which kind an instance of this controller drives. ReplicationControllers run through the
/// same logic as ReplicaSets (upstream's replication controller is the ReplicaSet controller
/// behind a conversion adapter): the watch converts each RC to a ReplicaSet with its map
/// selector as `matchLabels`, and writes go back to the RC API.
#[derive(Debug, Clone, Copy)]
struct Flavor {
    /// Driver and error name.
    name: &'static str,
    /// Event source component.
    component: &'static str,
    api_version: &'static str,
    kind: &'static str,
}

const REPLICA_SET: Flavor = Flavor {
    name: "replicaset",
    component: COMPONENT,
    api_version: "apps/v1",
    kind: "ReplicaSet",
};

const REPLICATION_CONTROLLER: Flavor = Flavor {
    name: "replicationcontroller",
    component: "replication-controller",
    api_version: "v1",
    kind: "ReplicationController",
};

impl Flavor {
    fn is_rc(self) -> bool {
        self.kind == REPLICATION_CONTROLLER.kind
    }

    /// The (name, uid) of this flavor's controller of `meta`, if any.
    fn owner(self, meta: &ObjectMeta) -> Option<(String, String)> {
        controller_ref(meta)
            .filter(|r| {
                r.kind == self.kind
                    && if self.is_rc() {
                        r.api_version == "v1"
                    } else {
                        r.api_version.starts_with("apps/")
                    }
            })
            .map(|r| (r.name.clone(), r.uid.clone()))
    }
}

/// An RC seen as a ReplicaSet (upstream `conversion.go` of the replication controller).
fn rc_to_rs(rc: ReplicationController) -> ReplicaSet {
    let spec = rc.spec.map(|s| ReplicaSetSpec {
        replicas: s.replicas,
        min_ready_seconds: s.min_ready_seconds,
        selector: LabelSelector {
            match_labels: s.selector,
            match_expressions: None,
        },
        template: s.template,
    });
    let status = rc.status.map(|s| ReplicaSetStatus {
        replicas: s.replicas,
        fully_labeled_replicas: s.fully_labeled_replicas,
        ready_replicas: s.ready_replicas,
        available_replicas: s.available_replicas,
        observed_generation: s.observed_generation,
        conditions: s.conditions.map(|cs| {
            cs.into_iter()
                .map(|c| ReplicaSetCondition {
                    type_: c.type_,
                    status: c.status,
                    reason: c.reason,
                    message: c.message,
                    last_transition_time: c.last_transition_time,
                })
                .collect()
        }),
        ..Default::default()
    });
    ReplicaSet {
        metadata: rc.metadata,
        spec,
        status,
    }
}

/// The RC a converted ReplicaSet came from, with `status` for a status write.
fn rs_to_rc(rs: &ReplicaSet) -> ReplicationController {
    let spec = rs.spec.as_ref().map(|s| ReplicationControllerSpec {
        replicas: s.replicas,
        min_ready_seconds: s.min_ready_seconds,
        selector: s.selector.match_labels.clone(),
        template: s.template.clone(),
    });
    let status = rs.status.as_ref().map(|s| ReplicationControllerStatus {
        replicas: s.replicas,
        fully_labeled_replicas: s.fully_labeled_replicas,
        ready_replicas: s.ready_replicas,
        available_replicas: s.available_replicas,
        observed_generation: s.observed_generation,
        conditions: s.conditions.as_ref().map(|cs| {
            cs.iter()
                .map(|c| ReplicationControllerCondition {
                    type_: c.type_.clone(),
                    status: c.status.clone(),
                    reason: c.reason.clone(),
                    message: c.message.clone(),
                    last_transition_time: c.last_transition_time.clone(),
                })
                .collect()
        }),
    });
    ReplicationController {
        metadata: rs.metadata.clone(),
        spec,
        status,
    }
}

fn rc_event(ev: watcher::Event<ReplicationController>) -> watcher::Event<ReplicaSet> {
    match ev {
        watcher::Event::Apply(o) => watcher::Event::Apply(rc_to_rs(o)),
        watcher::Event::InitApply(o) => watcher::Event::InitApply(rc_to_rs(o)),
        watcher::Event::Delete(o) => watcher::Event::Delete(rc_to_rs(o)),
        watcher::Event::Init => watcher::Event::Init,
        watcher::Event::InitDone => watcher::Event::InitDone,
    }
}

/// Shared state of the controller.
struct Rsc {
    flavor: Flavor,
    ctx: Arc<Context>,
    rs_store: Store<ReplicaSet>,
    pod_store: Store<Pod>,
    expectations: Expectations,
}

/// What the pod watch last saw of a pod (to tell adds from updates and notice owner changes).
#[derive(Debug, Clone)]
struct SeenPod {
    uid: String,
    owner: Option<(String, String)>,
    terminating: bool,
}

/// Pod-watch bookkeeping.
#[derive(Default)]
struct PodTracker {
    known: HashMap<String, SeenPod>,
    /// Keys listed since the current relist began (None outside a relist).
    relisting: Option<HashSet<String>>,
}

/// Runs this controller until the process stops (errors are retried inside).
pub async fn run(ctx: Arc<Context>) -> Result<()> {
    run_flavor(ctx, REPLICA_SET).await
}

/// The replication controller: core/v1 ReplicationControllers through the same logic.
pub async fn run_replication_controllers(ctx: Arc<Context>) -> Result<()> {
    run_flavor(ctx, REPLICATION_CONTROLLER).await
}

async fn run_flavor(ctx: Arc<Context>, flavor: Flavor) -> Result<()> {
    let client = ctx.client.clone();
    let (rs_store, rs_writer) = reflector::store::<ReplicaSet>();
    let (pod_store, pod_writer) = reflector::store::<Pod>();
    let rsc = Arc::new(Rsc {
        flavor,
        ctx,
        rs_store: rs_store.clone(),
        pod_store,
        expectations: Expectations::default(),
    });

    let source = if flavor.is_rc() {
        let rc_api: Api<ReplicationController> = Api::all(client.clone());
        watcher(rc_api, watcher::Config::default())
            .map_ok(rc_event)
            .boxed()
    } else {
        let rs_api: Api<ReplicaSet> = Api::all(client.clone());
        watcher(rs_api, watcher::Config::default()).boxed()
    };
    let rs_triggers = reflector(rs_writer, source)
        .default_backoff()
        .map_ok({
            let rsc = rsc.clone();
            move |ev| stream::iter(rsc.rs_event(ev).into_iter().map(Ok::<_, watcher::Error>))
        })
        .try_flatten();

    let pod_api: Api<Pod> = Api::all(client);
    let mut tracker = PodTracker::default();
    let pod_triggers = reflector(pod_writer, watcher(pod_api, watcher::Config::default()))
        .default_backoff()
        .map_ok({
            let rsc = rsc.clone();
            move |ev| {
                stream::iter(
                    rsc.pod_event(ev, &mut tracker)
                        .into_iter()
                        .map(Ok::<_, watcher::Error>),
                )
            }
        })
        .try_flatten();

    let queue = stream::select(rs_triggers, pod_triggers);
    drive(
        flavor.name,
        rsc,
        rs_store,
        queue,
        requeue_after(flavor.name, ERROR_REQUEUE),
        |rs, rsc| Box::pin(async move { rsc.reconcile(rs).await }),
    )
    .await;
    Err(Error::WatchEnded(flavor.name))
}

fn rs_ref(namespace: &str, name: &str) -> ObjectRef<ReplicaSet> {
    ObjectRef::new(name).within(namespace)
}

fn pod_key(p: &Pod) -> String {
    format!("{}/{}", p.namespace().unwrap_or_default(), p.name_any())
}

impl Rsc {
    /// RS watch: forget expectations of deleted ReplicaSets; enqueue the rest.
    fn rs_event(&self, ev: watcher::Event<ReplicaSet>) -> Vec<ObjectRef<ReplicaSet>> {
        match ev {
            watcher::Event::Apply(rs) | watcher::Event::InitApply(rs) => {
                vec![ObjectRef::from_obj(&rs)]
            }
            watcher::Event::Delete(rs) => {
                if let Some(uid) = rs.metadata.uid.as_deref() {
                    self.expectations.forget(uid);
                }
                vec![]
            }
            watcher::Event::Init | watcher::Event::InitDone => vec![],
        }
    }

    /// Pod watch: record observed creations/deletions and return the ReplicaSets to sync.
    fn pod_event(&self, ev: watcher::Event<Pod>, t: &mut PodTracker) -> Vec<ObjectRef<ReplicaSet>> {
        match ev {
            watcher::Event::Init => {
                t.relisting = Some(HashSet::new());
                vec![]
            }
            watcher::Event::InitApply(pod) => {
                if let Some(seen) = t.relisting.as_mut() {
                    seen.insert(pod_key(&pod));
                }
                self.pod_applied(&pod, t)
            }
            watcher::Event::Apply(pod) => self.pod_applied(&pod, t),
            watcher::Event::Delete(pod) => self.pod_deleted(&pod_key(&pod), Some(&pod), t),
            watcher::Event::InitDone => {
                // Pods that vanished while the watch was down: treat as deleted.
                let seen = t.relisting.take().unwrap_or_default();
                let gone: Vec<String> = t
                    .known
                    .keys()
                    .filter(|k| !seen.contains(*k))
                    .cloned()
                    .collect();
                let mut out = vec![];
                for k in gone {
                    out.extend(self.pod_deleted(&k, None, t));
                }
                // Deletions we expected of pods not in the fresh list happened too.
                for (owner, key) in self.expectations.pending_deletions() {
                    if t.known.get(&key).is_none_or(|p| p.terminating) {
                        self.expectations.deletion_observed(&owner, &key);
                    }
                }
                out
            }
        }
    }

    fn pod_applied(&self, pod: &Pod, t: &mut PodTracker) -> Vec<ObjectRef<ReplicaSet>> {
        let key = pod_key(pod);
        let ns = pod.namespace().unwrap_or_default();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let owner = self.flavor.owner(&pod.metadata);
        let terminating = pod.metadata.deletion_timestamp.is_some();
        let prev = t.known.get(&key).filter(|p| p.uid == uid).cloned();
        if let Some((_, owner_uid)) = &owner {
            match &prev {
                None if terminating => self.expectations.deletion_observed(owner_uid, &key),
                None => self.expectations.creation_observed(owner_uid),
                Some(p) if terminating && !p.terminating => {
                    self.expectations.deletion_observed(owner_uid, &key)
                }
                Some(_) => {}
            }
        }
        let mut out = vec![];
        match &owner {
            Some((name, _)) => out.push(rs_ref(&ns, name)),
            // An orphan: every ReplicaSet that might adopt it.
            None if !terminating => out.extend(self.matching_replicasets(pod)),
            None => {}
        }
        if let Some((old_name, _)) = prev.as_ref().and_then(|p| p.owner.clone()) {
            if owner.as_ref().is_none_or(|(n, _)| *n != old_name) {
                out.push(rs_ref(&ns, &old_name));
            }
        }
        t.known.insert(
            key,
            SeenPod {
                uid,
                owner,
                terminating,
            },
        );
        out
    }

    fn pod_deleted(
        &self,
        key: &str,
        pod: Option<&Pod>,
        t: &mut PodTracker,
    ) -> Vec<ObjectRef<ReplicaSet>> {
        let prev = t.known.remove(key);
        let owner = pod
            .and_then(|p| self.flavor.owner(&p.metadata))
            .or_else(|| prev.as_ref().and_then(|p| p.owner.clone()));
        let Some((name, owner_uid)) = owner else {
            return vec![];
        };
        self.expectations.deletion_observed(&owner_uid, key);
        let ns = key.split('/').next().unwrap_or_default();
        vec![rs_ref(ns, &name)]
    }

    fn matching_replicasets(&self, pod: &Pod) -> Vec<ObjectRef<ReplicaSet>> {
        let ns = pod.namespace();
        self.rs_store
            .state()
            .iter()
            .filter(|rs| rs.namespace() == ns)
            .filter(|rs| {
                rs.spec
                    .as_ref()
                    .and_then(|s| Selector::from_label_selector(&s.selector).ok())
                    .is_some_and(|sel| sel.matches(&pod.metadata.labels.as_ref()))
            })
            .map(|rs| ObjectRef::from_obj(rs.as_ref()))
            .collect()
    }

    /// One sync of one ReplicaSet (upstream `syncReplicaSet`).
    async fn reconcile(&self, rs: Arc<ReplicaSet>) -> Result<Action> {
        // Never act on a partial pod cache.
        self.pod_store
            .wait_until_ready()
            .await
            .map_err(|e| Error::Other(format!("pod cache: {e}")))?;
        let ns = rs.namespace().unwrap_or_default();
        let uid = rs.metadata.uid.clone().unwrap_or_default();
        let Some(spec) = rs.spec.as_ref() else {
            return Ok(Action::await_change());
        };
        let selector = match Selector::from_label_selector(&spec.selector) {
            Ok(s) => s,
            Err(e) => {
                // A spec error: retrying cannot help until the object changes.
                tracing::warn!(replicaset = %rs.name_any(), error = %e, "invalid selector");
                return Ok(Action::await_change());
            }
        };
        let needs_sync = self.expectations.satisfied(&uid);
        let all_pods: Vec<Arc<Pod>> = self
            .pod_store
            .state()
            .into_iter()
            .filter(|p| p.namespace().as_deref() == Some(ns.as_str()))
            .collect();
        let active: Vec<Arc<Pod>> = all_pods.iter().filter(|p| is_active(p)).cloned().collect();
        let claimed = self.claim_pods(&rs, &selector, active).await?;

        let mut manage_err = None;
        if needs_sync && rs.metadata.deletion_timestamp.is_none() {
            if let Err(e) = self.manage_replicas(&rs, &claimed, &all_pods).await {
                manage_err = Some(e);
            }
        }

        let now = jiff::Timestamp::now();
        let status = calculate_status(&rs, &claimed, manage_err.as_ref(), now);
        self.update_status(&rs, status).await?;
        if let Some(e) = manage_err {
            return Err(e);
        }
        // A ready pod becomes available minReadySeconds later without any watch event.
        let min_ready = spec.min_ready_seconds.unwrap_or(0);
        if min_ready > 0 {
            let next = claimed
                .iter()
                .filter(|p| is_ready(p) && !is_available(p, min_ready, now))
                .filter_map(|p| ready_since(p))
                .filter_map(|t| {
                    t.checked_add(jiff::SignedDuration::from_secs(i64::from(min_ready)))
                        .ok()
                })
                .min();
            if let Some(at) = next {
                let wait = at.duration_since(now).unsigned_abs() + Duration::from_millis(500);
                return Ok(Action::requeue(wait.min(Duration::from_secs(
                    i64::from(min_ready).unsigned_abs() + 1,
                ))));
            }
        }
        if !self.expectations.satisfied(&uid) {
            return Ok(Action::requeue(UNSATISFIED_RECHECK));
        }
        Ok(Action::await_change())
    }

    /// Adopts matching orphans and releases owned pods that stopped matching; returns the
    /// pods this RS owns afterwards.
    async fn claim_pods(
        &self,
        rs: &ReplicaSet,
        selector: &Selector,
        pods: Vec<Arc<Pod>>,
    ) -> Result<Vec<Arc<Pod>>> {
        crate::owned::claim_pods(
            &self.ctx.client,
            &rs.namespace().unwrap_or_default(),
            controller_owner_ref(self.flavor, rs),
            rs.metadata.deletion_timestamp.is_some(),
            selector,
            pods,
            self.recheck(rs),
        )
        .await
    }

    /// An uncached read of the object behind `name`, as a ReplicaSet.
    async fn get_fresh(
        &self,
        ns: &str,
        name: &str,
    ) -> std::result::Result<ReplicaSet, kube::Error> {
        if self.flavor.is_rc() {
            let api: Api<ReplicationController> = Api::namespaced(self.ctx.client.clone(), ns);
            api.get(name).await.map(rc_to_rs)
        } else {
            let api: Api<ReplicaSet> = Api::namespaced(self.ctx.client.clone(), ns);
            api.get(name).await
        }
    }

    /// PUT of the status subresource (resourceVersion-checked).
    async fn write_status(
        &self,
        ns: &str,
        obj: &ReplicaSet,
    ) -> std::result::Result<(), kube::Error> {
        let pp = PostParams::default();
        if self.flavor.is_rc() {
            let api: Api<ReplicationController> = Api::namespaced(self.ctx.client.clone(), ns);
            api.replace_status(&obj.name_any(), &pp, &rs_to_rc(obj))
                .await
                .map(|_| ())
        } else {
            let api: Api<ReplicaSet> = Api::namespaced(self.ctx.client.clone(), ns);
            api.replace_status(&obj.name_any(), &pp, obj)
                .await
                .map(|_| ())
        }
    }

    /// An uncached read: the RS still exists with the same uid and is not being deleted.
    async fn recheck(&self, rs: &ReplicaSet) -> std::result::Result<(), String> {
        let ns = rs.namespace().unwrap_or_default();
        let fresh = self
            .get_fresh(&ns, &rs.name_any())
            .await
            .map_err(|e| e.to_string())?;
        if fresh.metadata.uid != rs.metadata.uid {
            return Err(format!(
                "original {} {ns}/{} is gone: got uid {}, wanted {}",
                self.flavor.kind,
                rs.name_any(),
                fresh.metadata.uid.unwrap_or_default(),
                rs.metadata.uid.clone().unwrap_or_default()
            ));
        }
        if fresh.metadata.deletion_timestamp.is_some() {
            return Err(format!("{ns}/{} has just been deleted", rs.name_any()));
        }
        Ok(())
    }

    /// Creates or deletes pods to reach `spec.replicas` (upstream `manageReplicas`).
    async fn manage_replicas(
        &self,
        rs: &ReplicaSet,
        owned: &[Arc<Pod>],
        all_pods: &[Arc<Pod>],
    ) -> Result<()> {
        let want = rs
            .spec
            .as_ref()
            .and_then(|s| s.replicas)
            .unwrap_or(1)
            .max(0) as usize;
        let uid = rs.metadata.uid.clone().unwrap_or_default();
        let ns = rs.namespace().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &ns);
        let mut reference = rs.object_ref(&());
        reference.api_version = Some(self.flavor.api_version.into());
        reference.kind = Some(self.flavor.kind.into());
        if owned.len() < want {
            let diff = (want - owned.len()).min(BURST_REPLICAS);
            // Set before any request so watch events for our own pods are never missed.
            self.expectations.expect_creations(&uid, diff);
            let template = new_pod(self.flavor, rs);
            let pp = PostParams::default();
            let mut remaining = diff;
            let mut batch = remaining.min(1);
            let mut successes = 0;
            let mut first_err = None;
            while batch > 0 {
                let results =
                    futures::future::join_all((0..batch).map(|_| api.create(&pp, &template))).await;
                let mut errs = 0;
                for r in results {
                    match r {
                        Ok(p) => {
                            successes += 1;
                            let msg = format!("Created pod: {}", p.name_any());
                            self.ctx
                                .events
                                .publish(
                                    self.flavor.component,
                                    &reference,
                                    EventType::Normal,
                                    "SuccessfulCreate",
                                    &msg,
                                )
                                .await;
                        }
                        Err(e) => {
                            errs += 1;
                            let msg = format!("Error creating: {}", api_message(&e));
                            self.ctx
                                .events
                                .publish(
                                    self.flavor.component,
                                    &reference,
                                    EventType::Warning,
                                    "FailedCreate",
                                    &msg,
                                )
                                .await;
                            first_err.get_or_insert(api_message(&e));
                        }
                    }
                }
                if errs > 0 {
                    break;
                }
                remaining -= batch;
                batch = (2 * batch).min(remaining);
            }
            // Creations that failed or never ran will not show up in the watch.
            if diff > successes {
                self.expectations.lower_creations(&uid, diff - successes);
            }
            if let Some(e) = first_err {
                return Err(Error::Other(e));
            }
        } else if owned.len() > want {
            let diff = (owned.len() - want).min(BURST_REPLICAS);
            let related = self.related_pods(rs, all_pods);
            let candidates: Vec<&Pod> = owned.iter().map(|p| p.as_ref()).collect();
            let related_refs: Vec<&Pod> = related.iter().map(|p| p.as_ref()).collect();
            let victims =
                ranking::pods_to_delete(&candidates, &related_refs, diff, jiff::Timestamp::now());
            self.expectations
                .expect_deletions(&uid, victims.iter().map(|p| pod_key(p)));
            let results = futures::future::join_all(victims.iter().map(|p| async {
                (
                    *p,
                    api.delete(&p.name_any(), &DeleteParams::default()).await,
                )
            }))
            .await;
            let mut first_err = None;
            for (p, r) in results {
                match r {
                    Ok(_) => {
                        let msg = format!("Deleted pod: {}", p.name_any());
                        self.ctx
                            .events
                            .publish(
                                self.flavor.component,
                                &reference,
                                EventType::Normal,
                                "SuccessfulDelete",
                                &msg,
                            )
                            .await;
                    }
                    Err(e) => {
                        self.expectations.deletion_observed(&uid, &pod_key(p));
                        if !is_not_found(&e) {
                            let msg = format!("Error deleting: {}", api_message(&e));
                            self.ctx
                                .events
                                .publish(
                                    self.flavor.component,
                                    &reference,
                                    EventType::Warning,
                                    "FailedDelete",
                                    &msg,
                                )
                                .await;
                            first_err.get_or_insert(api_message(&e));
                        }
                    }
                }
            }
            if let Some(e) = first_err {
                return Err(Error::Other(e));
            }
        }
        Ok(())
    }

    /// Active pods of this RS and of its siblings (RSes with the same controller), for ranking.
    fn related_pods(&self, rs: &ReplicaSet, all_pods: &[Arc<Pod>]) -> Vec<Arc<Pod>> {
        let mut owners: HashSet<String> = rs.metadata.uid.iter().cloned().collect();
        if let Some(ctrl) = controller_ref(&rs.metadata) {
            for other in self.rs_store.state() {
                if other.namespace() == rs.namespace()
                    && controller_ref(&other.metadata).is_some_and(|r| r.uid == ctrl.uid)
                {
                    owners.extend(other.metadata.uid.clone());
                }
            }
        }
        all_pods
            .iter()
            .filter(|p| is_active(p))
            .filter(|p| controller_ref(&p.metadata).is_some_and(|r| owners.contains(&r.uid)))
            .cloned()
            .collect()
    }

    /// Writes status through replicasets/status when it changed (one re-read on conflict).
    async fn update_status(&self, rs: &ReplicaSet, status: ReplicaSetStatus) -> Result<()> {
        let generation = rs.metadata.generation;
        let current = rs.status.clone().unwrap_or_default();
        if current.replicas == status.replicas
            && current.fully_labeled_replicas == status.fully_labeled_replicas
            && current.ready_replicas == status.ready_replicas
            && current.available_replicas == status.available_replicas
            && current.conditions == status.conditions
            && current.observed_generation == generation
        {
            return Ok(());
        }
        let ns = rs.namespace().unwrap_or_default();
        let mut obj = rs.clone();
        for attempt in 0..2 {
            let mut s = status.clone();
            s.observed_generation = obj.metadata.generation;
            obj.status = Some(s);
            match self.write_status(&ns, &obj).await {
                Ok(()) => return Ok(()),
                Err(e) if is_not_found(&e) => return Ok(()),
                Err(e) if attempt == 0 && is_conflict(&e) => {
                    obj = self.get_fresh(&ns, &rs.name_any()).await?;
                    if obj.metadata.uid != rs.metadata.uid {
                        return Ok(());
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

/// Status from the claimed active pods (upstream `calculateStatus`).
fn calculate_status(
    rs: &ReplicaSet,
    pods: &[Arc<Pod>],
    manage_err: Option<&Error>,
    now: jiff::Timestamp,
) -> ReplicaSetStatus {
    let mut status = rs.status.clone().unwrap_or_default();
    let spec = rs.spec.as_ref();
    let template_labels: BTreeMap<String, String> = spec
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let min_ready = spec.and_then(|s| s.min_ready_seconds).unwrap_or(0);
    let (mut fully, mut ready, mut available) = (0, 0, 0);
    for p in pods {
        let labels = p.metadata.labels.as_ref();
        if matches_set(&template_labels, &labels) {
            fully += 1;
        }
        if is_ready(p) {
            ready += 1;
            if is_available(p, min_ready, now) {
                available += 1;
            }
        }
    }
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    let has_failure = conditions.iter().any(|c| c.type_ == "ReplicaFailure");
    match manage_err {
        Some(e) if !has_failure => {
            let want = spec.and_then(|s| s.replicas).unwrap_or(1).max(0) as usize;
            let reason = match pods.len().cmp(&want) {
                std::cmp::Ordering::Less => "FailedCreate",
                std::cmp::Ordering::Greater => "FailedDelete",
                std::cmp::Ordering::Equal => "",
            };
            conditions.push(ReplicaSetCondition {
                type_: "ReplicaFailure".into(),
                status: "True".into(),
                reason: Some(reason.into()),
                message: Some(e.to_string()),
                last_transition_time: Some(Time(now)),
            });
        }
        None if has_failure => conditions.retain(|c| c.type_ != "ReplicaFailure"),
        _ => {}
    }
    if conditions.is_empty() {
        status.conditions = None;
    }
    // Upstream omits zero counts (omitempty) except `replicas`.
    let opt = |n: i32| (n > 0).then_some(n);
    status.replicas = pods.len() as i32;
    status.fully_labeled_replicas = opt(fully);
    status.ready_replicas = opt(ready);
    status.available_replicas = opt(available);
    status
}

/// The controller ownerReference every pod of `rs` carries.
fn controller_owner_ref(flavor: Flavor, rs: &ReplicaSet) -> OwnerReference {
    OwnerReference {
        api_version: flavor.api_version.into(),
        kind: flavor.kind.into(),
        name: rs.name_any(),
        uid: rs.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// A pod from the template (upstream `GetPodFromTemplate`).
fn new_pod(flavor: Flavor, rs: &ReplicaSet) -> Pod {
    pod_from_template(
        rs.spec.as_ref().and_then(|s| s.template.clone()),
        rs.metadata.namespace.clone(),
        controller_owner_ref(flavor, rs),
    )
}

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::ReplicaSetSpec;
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus, PodTemplateSpec};

    fn rs() -> ReplicaSet {
        ReplicaSet {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                uid: Some("rs-uid".into()),
                generation: Some(2),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(3),
                min_ready_seconds: Some(10),
                template: Some(PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some([("app".to_string(), "web".to_string())].into()),
                        ..Default::default()
                    }),
                    spec: None,
                }),
                ..Default::default()
            }),
            status: None,
        }
    }

    fn pod(labels: &[(&str, &str)], ready_at: Option<i64>) -> Arc<Pod> {
        let mut p = Pod::default();
        p.metadata.labels = Some(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        p.status = Some(PodStatus {
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: if ready_at.is_some() { "True" } else { "False" }.into(),
                last_transition_time: ready_at.map(|s| {
                    Time(jiff::Timestamp::from_second(s).unwrap_or(jiff::Timestamp::UNIX_EPOCH))
                }),
                ..Default::default()
            }]),
            ..Default::default()
        });
        Arc::new(p)
    }

    #[test]
    fn status_counts() {
        let now = jiff::Timestamp::from_second(1000).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        let pods = vec![
            pod(&[("app", "web")], Some(900)),
            pod(&[("app", "web")], Some(995)),
            pod(&[("other", "x")], None),
        ];
        let s = calculate_status(&rs(), &pods, None, now);
        assert_eq!(s.replicas, 3);
        assert_eq!(s.fully_labeled_replicas, Some(2));
        assert_eq!(s.ready_replicas, Some(2));
        assert_eq!(s.available_replicas, Some(1));
        assert!(s.conditions.is_none());
        let err = Error::Other("quota".into());
        let s = calculate_status(&rs(), &pods[..1], Some(&err), now);
        let c = s.conditions.unwrap_or_default();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].reason.as_deref(), Some("FailedCreate"));
    }

    #[test]
    fn pod_from_template() {
        let p = new_pod(REPLICA_SET, &rs());
        assert_eq!(p.metadata.generate_name.as_deref(), Some("web-"));
        assert_eq!(
            p.metadata
                .labels
                .unwrap_or_default()
                .get("app")
                .map(String::as_str),
            Some("web")
        );
        let owners = p.metadata.owner_references.unwrap_or_default();
        assert_eq!(owners.len(), 1);
        assert_eq!(owners[0].controller, Some(true));
        assert_eq!(owners[0].block_owner_deletion, Some(true));
        assert_eq!(owners[0].uid, "rs-uid");
    }
}
