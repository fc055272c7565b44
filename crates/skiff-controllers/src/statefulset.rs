//! The StatefulSet controller (upstream `pkg/controller/statefulset` and `pkg/controller/history`):
//! pods with stable names `<set>-<ordinal>`, hostnames and per-pod claims, started, stopped and
//! updated in order.
//!
//! One sync: find or create the ControllerRevision of the current template (the update
//! revision), claim pods (adopt matching orphans, release non-matching), then
//! 1. create missing pods in `[start, start+replicas)` (claims from `volumeClaimTemplates`
//!    first) and delete failed ones; `OrderedReady` creates one at a time and waits for each to
//!    be Running and Ready (and available for `minReadySeconds`) before the next;
//! 2. delete pods whose ordinal is out of range, highest first (`OrderedReady`: one at a time);
//! 3. `RollingUpdate`: delete outdated pods from the highest ordinal down to `partition`, at
//!    most `maxUnavailable` (default 1) unavailable at once; they are recreated from the update
//!    revision. `OnDelete` leaves that to the user.
//!
//! Then the status (replicas, ready, available, current, updated, revisions,
//! observedGeneration, collisionCount) is written and old revisions beyond
//! `revisionHistoryLimit` that no pod uses are deleted. The pod's `controller-revision-hash`
//! label names the revision it was made from.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::stream;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::{Resource, ResourceExt};
use serde_json::{json, Value};

use crate::owned::{claim_pods, owner_triggers, pod_triggers, OrphanMatcher};
use crate::replicaset::expectations::Expectations;
use crate::replicaset::pods::{controller_ref, is_available, is_ready, pod_from_template};
use crate::{api_message, Context, Error, Result};
use skiff_client::driver::{drive, requeue_after};
use skiff_client::events::EventType;
use skiff_semantics::labels::Selector;
use skiff_semantics::wellknown::labels;

const COMPONENT: &str = "statefulset-controller";
const ERROR_REQUEUE: Duration = Duration::from_secs(2);
/// Label with the pod's own name (services can select one member).
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// Label with the pod's ordinal.
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";
/// Label on a ControllerRevision with its hash (upstream `ControllerRevisionHashLabel`).
pub const REVISION_HASH_LABEL: &str = "controller.kubernetes.io/hash";
/// Attempts at a revision name when the hashed name is taken by different data.
const MAX_COLLISIONS: i32 = 8;

struct Ssc {
    ctx: Arc<Context>,
    pod_store: Store<Pod>,
}

/// Runs this controller until the process stops (errors are retried inside).
pub async fn run(ctx: Arc<Context>) -> Result<()> {
    let client = ctx.client.clone();
    let (sts_store, sts_writer) = reflector::store::<StatefulSet>();
    let (pod_store, pod_writer) = reflector::store::<Pod>();
    // Pods have fixed names, so no creation expectations are needed: a stale cache at worst
    // retries a create (AlreadyExists) or a delete (guarded by the pod's uid).
    let expectations = Arc::new(Expectations::default());
    let ssc = Arc::new(Ssc { ctx, pod_store });
    let set_triggers = owner_triggers(
        sts_writer,
        Api::<StatefulSet>::all(client.clone()),
        expectations.clone(),
    );
    let sets = sts_store.clone();
    let orphans: OrphanMatcher<StatefulSet> = Arc::new(move |p: &Pod| {
        let ns = p.namespace().unwrap_or_default();
        sets.state()
            .iter()
            .filter(|s| s.namespace().as_deref() == Some(ns.as_str()))
            .filter(|s| selector(s).is_some_and(|sel| sel.matches(&p.metadata.labels.as_ref())))
            .map(|s| ObjectRef::from_obj(s.as_ref()))
            .collect()
    });
    let pod_triggers = pod_triggers::<StatefulSet>(
        pod_writer,
        Api::<Pod>::all(client),
        expectations,
        "StatefulSet",
        "apps",
        Some(orphans),
    );
    drive(
        "statefulset",
        ssc,
        sts_store,
        stream::select(set_triggers, pod_triggers),
        requeue_after("statefulset", ERROR_REQUEUE),
        |obj, c| Box::pin(async move { c.reconcile(obj).await }),
    )
    .await;
    Err(Error::WatchEnded("statefulset"))
}

fn selector(set: &StatefulSet) -> Option<Selector> {
    let sel = &set.spec.as_ref()?.selector;
    let s = Selector::from_label_selector(sel).ok()?;
    // An empty selector selects nothing for a StatefulSet (validation forbids it anyway).
    (!s.is_empty()).then_some(s)
}

/// The ordinal of `pod` when it is named `<set>-<n>` (upstream `getParentNameAndOrdinal`).
pub fn ordinal(set: &str, pod: &str) -> Option<i32> {
    let rest = pod.strip_prefix(set)?.strip_prefix('-')?;
    if rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    rest.parse().ok()
}

/// The pod's revision (its `controller-revision-hash` label).
fn pod_revision(p: &Pod) -> &str {
    p.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(labels::CONTROLLER_REVISION_HASH))
        .map_or("", String::as_str)
}

fn is_terminating(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_some()
}

fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn is_failed(p: &Pod) -> bool {
    matches!(phase(p), "Failed" | "Succeeded")
}

fn running_and_ready(p: &Pod) -> bool {
    phase(p) == "Running" && is_ready(p)
}

/// Running, Ready for `min_ready` seconds and not being deleted (upstream `isHealthy` plus
/// availability).
fn healthy(p: &Pod, min_ready: i32, now: jiff::Timestamp) -> bool {
    running_and_ready(p) && !is_terminating(p) && is_available(p, min_ready, now)
}

/// FNV-1a, 32 bits (upstream hashes revision data with it).
fn fnv32a(parts: &[&[u8]]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for part in parts {
        for b in *part {
            h ^= u32::from(*b);
            h = h.wrapping_mul(0x0100_0193);
        }
    }
    h
}

/// Upstream `rand.SafeEncodeString`: each byte as one character of an alphabet without vowels
/// or look-alikes, so hashes never spell words.
fn safe_encode(s: &str) -> String {
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    s.bytes()
        .map(|b| char::from(ALPHANUMS[usize::from(b) % ALPHANUMS.len()]))
        .collect()
}

/// The hash naming a revision of `data` (`HashControllerRevision`; the collision count, when
/// non-zero, changes it).
pub fn revision_hash(data: &Value, collision_count: i32) -> String {
    let raw = serde_json::to_vec(data).unwrap_or_default();
    let probe = collision_count.to_string();
    let sum = if collision_count > 0 {
        fnv32a(&[&raw, probe.as_bytes()])
    } else {
        fnv32a(&[&raw])
    };
    safe_encode(&sum.to_string())
}

/// What a revision stores (upstream `getPatch`): the template, marked to replace the whole
/// template when `kubectl rollout undo` applies it as a strategic merge patch.
pub fn revision_data(set: &StatefulSet) -> Value {
    let mut template =
        serde_json::to_value(set.spec.as_ref().map(|s| &s.template)).unwrap_or(Value::Null);
    if let Some(t) = template.as_object_mut() {
        t.insert("$patch".into(), json!("replace"));
    }
    json!({"spec": {"template": template}})
}

/// The template a revision's data holds.
fn template_of(rev: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut t = rev.data.as_ref()?.0.pointer("/spec/template")?.clone();
    if let Some(m) = t.as_object_mut() {
        m.remove("$patch");
    }
    serde_json::from_value(t).ok()
}

fn set_owner_ref(set: &StatefulSet, controller: bool) -> OwnerReference {
    OwnerReference {
        api_version: "apps/v1".into(),
        kind: "StatefulSet".into(),
        name: set.name_any(),
        uid: set.metadata.uid.clone().unwrap_or_default(),
        controller: Some(controller),
        block_owner_deletion: Some(true),
    }
}

/// The claim name of template `tmpl` for ordinal `ord`.
pub fn claim_name(tmpl: &str, set: &str, ord: i32) -> String {
    format!("{tmpl}-{set}-{ord}")
}

/// The pod of ordinal `ord` from `template` (upstream `newVersionedStatefulSetPod`).
fn new_pod(set: &StatefulSet, template: PodTemplateSpec, ord: i32, revision: &str) -> Pod {
    let set_name = set.name_any();
    let name = format!("{set_name}-{ord}");
    let mut pod = pod_from_template(Some(template), set.namespace(), set_owner_ref(set, true));
    pod.metadata.generate_name = None;
    pod.metadata.name = Some(name.clone());
    let l = pod.metadata.labels.get_or_insert_with(BTreeMap::new);
    l.insert(POD_NAME_LABEL.into(), name.clone());
    l.insert(POD_INDEX_LABEL.into(), ord.to_string());
    l.insert(labels::CONTROLLER_REVISION_HASH.into(), revision.into());
    let spec = set.spec.as_ref();
    let service = spec
        .and_then(|s| s.service_name.clone())
        .unwrap_or_default();
    if let Some(ps) = pod.spec.as_mut() {
        ps.hostname = Some(name);
        if !service.is_empty() {
            ps.subdomain = Some(service);
        }
        let vols = ps.volumes.get_or_insert_with(Vec::new);
        for tmpl in spec
            .and_then(|s| s.volume_claim_templates.as_ref())
            .into_iter()
            .flatten()
        {
            let tname = tmpl.metadata.name.clone().unwrap_or_default();
            vols.retain(|v| v.name != tname);
            vols.push(Volume {
                name: tname.clone(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: claim_name(&tname, &set_name, ord),
                    read_only: None,
                }),
                ..Default::default()
            });
        }
        if vols.is_empty() {
            ps.volumes = None;
        }
    }
    pod
}

fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

fn policy(set: &StatefulSet) -> (bool, bool) {
    let p = set
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_claim_retention_policy.as_ref());
    let del = |v: Option<&String>| v.map(String::as_str) == Some("Delete");
    (
        del(p.and_then(|p| p.when_deleted.as_ref())),
        del(p.and_then(|p| p.when_scaled.as_ref())),
    )
}

/// What one sync decided about waiting.
enum Step {
    Continue,
    Wait,
}

impl Ssc {
    async fn reconcile(&self, set: Arc<StatefulSet>) -> Result<Action> {
        // An unsynced pod cache would make every pod look missing (and the status zero).
        self.pod_store
            .wait_until_ready()
            .await
            .map_err(|e| Error::Other(format!("cache: {e}")))?;
        if set.metadata.deletion_timestamp.is_some() {
            return Ok(Action::await_change());
        }
        let ns = set.namespace().unwrap_or_default();
        let client = &self.ctx.client;
        // The cache may lag our own status writes; the live object has the current status.
        let sets: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
        let set = match sets.get(&set.name_any()).await {
            Ok(s) if s.metadata.uid == set.metadata.uid => Arc::new(s),
            Ok(_) => return Ok(Action::await_change()),
            Err(e) if is_status(&e, 404) => return Ok(Action::await_change()),
            Err(e) => return Err(e.into()),
        };
        let Some(sel) = selector(&set) else {
            return Ok(Action::await_change());
        };
        let (revisions, current, update, collisions) = self.revisions(&set).await?;
        let pods = self.claim(&set, &sel).await?;
        let now = jiff::Timestamp::now();
        let requeue = self.sync_pods(&set, &pods, &current, &update, now).await?;
        self.write_status(&set, &pods, &current, &update, collisions, now)
            .await?;
        self.truncate_history(&set, &revisions, &pods, &current, &update)
            .await?;
        Ok(requeue.map_or_else(Action::await_change, Action::requeue))
    }

    /// Claimed pods of `set` (adopting matching orphans, releasing non-matching children).
    async fn claim(&self, set: &StatefulSet, sel: &Selector) -> Result<Vec<Arc<Pod>>> {
        let ns = set.namespace().unwrap_or_default();
        let uid = set.metadata.uid.clone().unwrap_or_default();
        let candidates: Vec<Arc<Pod>> = self
            .pod_store
            .state()
            .into_iter()
            .filter(|p| p.namespace().as_deref() == Some(ns.as_str()))
            .filter(|p| match controller_ref(&p.metadata) {
                Some(r) => r.uid == uid,
                None => sel.matches(&p.metadata.labels.as_ref()),
            })
            .collect();
        let sets: Api<StatefulSet> = Api::namespaced(self.ctx.client.clone(), &ns);
        let name = set.name_any();
        let recheck = async move {
            match sets.get(&name).await {
                Ok(s)
                    if s.metadata.uid.as_deref() == Some(uid.as_str())
                        && s.metadata.deletion_timestamp.is_none() =>
                {
                    Ok(())
                }
                Ok(_) => Err(format!("original StatefulSet {ns}/{name} is gone")),
                Err(e) => Err(e.to_string()),
            }
        };
        claim_pods(
            &self.ctx.client,
            &set.namespace().unwrap_or_default(),
            set_owner_ref(set, true),
            false,
            sel,
            candidates,
            recheck,
        )
        .await
    }

    /// The set's revisions (oldest first), the current and update revisions, and the
    /// collision count used (upstream `getStatefulSetRevisions`).
    async fn revisions(
        &self,
        set: &StatefulSet,
    ) -> Result<(
        Vec<ControllerRevision>,
        ControllerRevision,
        ControllerRevision,
        i32,
    )> {
        let ns = set.namespace().unwrap_or_default();
        let api: Api<ControllerRevision> = Api::namespaced(self.ctx.client.clone(), &ns);
        let uid = set.metadata.uid.clone().unwrap_or_default();
        let mut revs: Vec<ControllerRevision> = api
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .filter(|r| controller_ref(&r.metadata).is_some_and(|o| o.uid == uid))
            .collect();
        revs.sort_by_key(|a| (a.revision, a.name_any()));
        let data = revision_data(set);
        let next = revs.last().map_or(1, |r| r.revision + 1);
        let mut collisions = set
            .status
            .as_ref()
            .and_then(|s| s.collision_count)
            .unwrap_or(0);
        let equal: Vec<usize> = revs
            .iter()
            .enumerate()
            .filter(|(_, r)| r.data.as_ref().map(|d| &d.0) == Some(&data))
            .map(|(i, _)| i)
            .collect();
        let update = match equal.last() {
            Some(&i) if i + 1 == revs.len() => revs[i].clone(),
            Some(&i) => {
                // An older template came back (e.g. rollout undo): it becomes the newest.
                let patch = json!({"revision": next});
                let r = api
                    .patch(
                        &revs[i].name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await?;
                revs[i] = r.clone();
                r
            }
            None => {
                let r = self
                    .create_revision(set, &api, &data, next, &mut collisions)
                    .await?;
                revs.push(r.clone());
                r
            }
        };
        revs.sort_by_key(|a| (a.revision, a.name_any()));
        let current_name = set
            .status
            .as_ref()
            .and_then(|s| s.current_revision.clone())
            .unwrap_or_default();
        let current = revs
            .iter()
            .find(|r| r.name_any() == current_name)
            .cloned()
            .unwrap_or_else(|| update.clone());
        Ok((revs, current, update, collisions))
    }

    /// Creates the revision of `data`, bumping the collision count while the hashed name is
    /// taken by another template (upstream `CreateControllerRevision`).
    async fn create_revision(
        &self,
        set: &StatefulSet,
        api: &Api<ControllerRevision>,
        data: &Value,
        revision: i64,
        collisions: &mut i32,
    ) -> Result<ControllerRevision> {
        let template_labels = set
            .spec
            .as_ref()
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        for _ in 0..MAX_COLLISIONS {
            let hash = revision_hash(data, *collisions);
            let mut l = template_labels.clone();
            l.insert(REVISION_HASH_LABEL.into(), hash.clone());
            let rev = ControllerRevision {
                metadata: ObjectMeta {
                    name: Some(format!("{}-{hash}", set.name_any())),
                    namespace: set.namespace(),
                    labels: Some(l),
                    // kubectl's history shows the set's change-cause annotation per revision.
                    annotations: set.metadata.annotations.clone(),
                    owner_references: Some(vec![set_owner_ref(set, true)]),
                    ..Default::default()
                },
                data: Some(RawExtension(data.clone())),
                revision,
            };
            match api.create(&PostParams::default(), &rev).await {
                Ok(r) => return Ok(r),
                Err(e) if is_status(&e, 409) => {
                    let existing = api.get(&rev.name_any()).await?;
                    let ours = controller_ref(&existing.metadata)
                        .is_some_and(|o| Some(&o.uid) == set.metadata.uid.as_ref());
                    if ours && existing.data.as_ref().map(|d| &d.0) == Some(data) {
                        return Ok(existing);
                    }
                    *collisions += 1;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Other(format!(
            "no free ControllerRevision name for StatefulSet {} after {MAX_COLLISIONS} collisions",
            set.name_any()
        )))
    }

    /// Creates, deletes and replaces pods; returns when to look again (for minReadySeconds).
    async fn sync_pods(
        &self,
        set: &StatefulSet,
        pods: &[Arc<Pod>],
        current: &ControllerRevision,
        update: &ControllerRevision,
        now: jiff::Timestamp,
    ) -> Result<Option<Duration>> {
        let Some(spec) = set.spec.as_ref() else {
            return Ok(None);
        };
        let name = set.name_any();
        let start = spec.ordinals.as_ref().and_then(|o| o.start).unwrap_or(0);
        let replicas = spec.replicas.unwrap_or(1).max(0);
        let min_ready = spec.min_ready_seconds.unwrap_or(0);
        let monotonic = spec.pod_management_policy.as_deref() != Some("Parallel");
        let mut slots: Vec<Option<Arc<Pod>>> = vec![None; usize::try_from(replicas).unwrap_or(0)];
        let mut condemned: Vec<(i32, Arc<Pod>)> = Vec::new();
        for p in pods {
            let Some(ord) = ordinal(&name, &p.name_any()) else {
                continue;
            };
            if ord >= start && ord - start < replicas {
                if let Some(slot) = usize::try_from(ord - start)
                    .ok()
                    .and_then(|i| slots.get_mut(i))
                {
                    *slot = Some(p.clone());
                }
            } else {
                condemned.push((ord, p.clone()));
            }
        }
        condemned.sort_by_key(|c| std::cmp::Reverse(c.0));
        let rolling = spec
            .update_strategy
            .as_ref()
            .and_then(|s| s.type_.as_deref())
            .unwrap_or("RollingUpdate")
            == "RollingUpdate";
        let partition = spec
            .update_strategy
            .as_ref()
            .and_then(|s| s.rolling_update.as_ref())
            .and_then(|r| r.partition)
            .unwrap_or(0);
        let mut requeue = None;
        let mut wait_ready = |p: &Pod| {
            if running_and_ready(p) && !is_available(p, min_ready, now) {
                requeue = Some(Duration::from_secs(1));
            }
        };

        // 1. Missing and failed pods of the wanted ordinals, lowest first.
        for (i, slot) in slots.iter().enumerate() {
            let ord = start + i32::try_from(i).unwrap_or(i32::MAX);
            match slot {
                None => {
                    // Pods below the partition stay at the current revision.
                    let (tmpl, rev) = if rolling && ord - start < partition {
                        (template_of(current), current.name_any())
                    } else {
                        (Some(spec.template.clone()), update.name_any())
                    };
                    let tmpl = tmpl.unwrap_or_else(|| spec.template.clone());
                    self.create_claims(set, ord).await?;
                    self.create_pod(set, new_pod(set, tmpl, ord, &rev)).await?;
                    if monotonic {
                        return Ok(requeue);
                    }
                }
                Some(p) if is_failed(p) && !is_terminating(p) => {
                    self.delete_pod(set, p, "recreate failed").await?;
                    if monotonic {
                        return Ok(requeue);
                    }
                }
                Some(p) => {
                    if monotonic && !healthy(p, min_ready, now) {
                        wait_ready(p);
                        return Ok(requeue);
                    }
                    wait_ready(p);
                }
            }
        }

        // 2. Pods beyond the wanted range, highest first.
        let (_, delete_on_scale) = policy(set);
        for (ord, p) in &condemned {
            if is_terminating(p) {
                if monotonic {
                    return Ok(requeue);
                }
                continue;
            }
            if delete_on_scale {
                self.own_claims_by_pod(set, *ord, p).await?;
            }
            self.delete_pod(set, p, "scale down").await?;
            if monotonic {
                return Ok(requeue);
            }
        }

        // 3. Rolling update from the highest ordinal down to the partition.
        if !rolling {
            return Ok(requeue);
        }
        if let Step::Wait = self
            .roll(set, &slots, update, partition, min_ready, now)
            .await?
        {
            return Ok(requeue);
        }
        Ok(requeue)
    }

    async fn roll(
        &self,
        set: &StatefulSet,
        slots: &[Option<Arc<Pod>>],
        update: &ControllerRevision,
        partition: i32,
        min_ready: i32,
        now: jiff::Timestamp,
    ) -> Result<Step> {
        let replicas = slots.len();
        let max_unavailable = set
            .spec
            .as_ref()
            .and_then(|s| s.update_strategy.as_ref())
            .and_then(|s| s.rolling_update.as_ref())
            .and_then(|r| r.max_unavailable.as_ref())
            .map_or(1, |m| match m {
                IntOrString::Int(n) => i64::from(*n),
                IntOrString::String(s) => {
                    let pct: i64 = s.trim_end_matches('%').parse().unwrap_or(0);
                    // Upstream rounds a percentage down, then allows at least one.
                    pct * i64::try_from(replicas).unwrap_or(0) / 100
                }
            })
            .max(1);
        let mut unavailable = slots
            .iter()
            .filter(|s| s.as_ref().is_none_or(|p| !healthy(p, min_ready, now)))
            .count() as i64;
        let low = usize::try_from(partition.max(0)).unwrap_or(0).min(replicas);
        let update_name = update.name_any();
        for target in (low..replicas).rev() {
            let Some(p) = slots.get(target).and_then(Option::as_ref) else {
                continue;
            };
            if pod_revision(p) != update_name && !is_terminating(p) {
                let was_healthy = healthy(p, min_ready, now);
                if was_healthy && unavailable >= max_unavailable {
                    return Ok(Step::Wait);
                }
                self.delete_pod(set, p, "update").await?;
                if was_healthy {
                    unavailable += 1;
                }
                continue;
            }
            if !healthy(p, min_ready, now) && unavailable >= max_unavailable {
                return Ok(Step::Wait);
            }
        }
        Ok(Step::Continue)
    }

    /// Creates the claims of ordinal `ord` that do not exist yet.
    async fn create_claims(&self, set: &StatefulSet, ord: i32) -> Result<()> {
        let Some(spec) = set.spec.as_ref() else {
            return Ok(());
        };
        let ns = set.namespace().unwrap_or_default();
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.ctx.client.clone(), &ns);
        let (delete_with_set, _) = policy(set);
        for tmpl in spec.volume_claim_templates.iter().flatten() {
            let tname = tmpl.metadata.name.clone().unwrap_or_default();
            let name = claim_name(&tname, &set.name_any(), ord);
            match api.get(&name).await {
                Ok(_) => continue,
                Err(e) if is_status(&e, 404) => {}
                Err(e) => return Err(e.into()),
            }
            let mut l = tmpl.metadata.labels.clone().unwrap_or_default();
            for (k, v) in spec.selector.match_labels.iter().flatten() {
                l.insert(k.clone(), v.clone());
            }
            let claim = PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(ns.clone()),
                    labels: Some(l),
                    annotations: tmpl.metadata.annotations.clone(),
                    owner_references: delete_with_set.then(|| vec![set_owner_ref(set, false)]),
                    ..Default::default()
                },
                spec: tmpl.spec.clone(),
                status: None,
            };
            match api.create(&PostParams::default(), &claim).await {
                Ok(_) => {
                    self.event(
                        set,
                        EventType::Normal,
                        "SuccessfulCreate",
                        format!(
                            "create Claim {name} Pod {}-{ord} in StatefulSet {} success",
                            set.name_any(),
                            set.name_any()
                        ),
                    )
                    .await;
                }
                Err(e) if is_status(&e, 409) => {}
                Err(e) => {
                    self.event(
                        set,
                        EventType::Warning,
                        "FailedCreate",
                        format!(
                            "create Claim {name} for Pod {}-{ord} in StatefulSet {} failed error: {}",
                            set.name_any(),
                            set.name_any(),
                            api_message(&e)
                        ),
                    )
                    .await;
                    return Err(e.into());
                }
            }
        }
        Ok(())
    }

    /// `whenScaled: Delete`: the claims of a pod about to be scaled away get the pod as their
    /// only owner, so the garbage collector deletes them with it.
    async fn own_claims_by_pod(&self, set: &StatefulSet, ord: i32, pod: &Pod) -> Result<()> {
        let Some(spec) = set.spec.as_ref() else {
            return Ok(());
        };
        let ns = set.namespace().unwrap_or_default();
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.ctx.client.clone(), &ns);
        let owner = OwnerReference {
            api_version: "v1".into(),
            kind: "Pod".into(),
            name: pod.name_any(),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            controller: Some(false),
            block_owner_deletion: Some(true),
        };
        for tmpl in spec.volume_claim_templates.iter().flatten() {
            let tname = tmpl.metadata.name.clone().unwrap_or_default();
            let name = claim_name(&tname, &set.name_any(), ord);
            let claim = match api.get(&name).await {
                Ok(c) => c,
                Err(e) if is_status(&e, 404) => continue,
                Err(e) => return Err(e.into()),
            };
            let mut refs = claim.metadata.owner_references.clone().unwrap_or_default();
            // The set's reference goes: the collector deletes a dependent only when every
            // owner is gone.
            let set_uid = set.metadata.uid.clone().unwrap_or_default();
            let had_set = refs.iter().any(|r| r.uid == set_uid);
            refs.retain(|r| r.uid != set_uid);
            if refs.iter().any(|r| r.uid == owner.uid) && !had_set {
                continue;
            }
            if !refs.iter().any(|r| r.uid == owner.uid) {
                refs.push(owner.clone());
            }
            let patch = json!({"metadata": {"ownerReferences": refs,
                "resourceVersion": claim.metadata.resource_version}});
            api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
        }
        Ok(())
    }

    async fn create_pod(&self, set: &StatefulSet, pod: Pod) -> Result<()> {
        let ns = set.namespace().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &ns);
        let name = pod.name_any();
        match api.create(&PostParams::default(), &pod).await {
            Ok(_) => {
                self.event(
                    set,
                    EventType::Normal,
                    "SuccessfulCreate",
                    format!(
                        "create Pod {name} in StatefulSet {} successful",
                        set.name_any()
                    ),
                )
                .await;
                Ok(())
            }
            // A stale cache: the pod exists already.
            Err(e) if is_status(&e, 409) => Ok(()),
            Err(e) => {
                self.event(
                    set,
                    EventType::Warning,
                    "FailedCreate",
                    format!(
                        "create Pod {name} in StatefulSet {} failed error: {}",
                        set.name_any(),
                        api_message(&e)
                    ),
                )
                .await;
                Err(e.into())
            }
        }
    }

    async fn delete_pod(&self, set: &StatefulSet, pod: &Pod, why: &str) -> Result<()> {
        let ns = set.namespace().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &ns);
        let name = pod.name_any();
        // The uid guard: a cached pod may already have been replaced by a new one of that name.
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                uid: pod.metadata.uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(&name, &dp).await {
            Ok(_) => {
                tracing::debug!(pod = %name, why, "statefulset deleted pod");
                self.event(
                    set,
                    EventType::Normal,
                    "SuccessfulDelete",
                    format!(
                        "delete Pod {name} in StatefulSet {} successful",
                        set.name_any()
                    ),
                )
                .await;
                Ok(())
            }
            Err(e) if is_status(&e, 404) || is_status(&e, 409) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Upstream `computeReplicaStatus` and `completeRollingUpdate`, written when changed.
    async fn write_status(
        &self,
        set: &StatefulSet,
        pods: &[Arc<Pod>],
        current: &ControllerRevision,
        update: &ControllerRevision,
        collisions: i32,
        now: jiff::Timestamp,
    ) -> Result<()> {
        let spec = set.spec.as_ref();
        let min_ready = spec.and_then(|s| s.min_ready_seconds).unwrap_or(0);
        let name = set.name_any();
        let (cur, upd) = (current.name_any(), update.name_any());
        let mut st = StatefulSetStatus {
            observed_generation: set.metadata.generation,
            collision_count: Some(collisions),
            current_revision: Some(cur.clone()),
            update_revision: Some(upd.clone()),
            ..Default::default()
        };
        let (mut replicas, mut ready, mut available, mut current_n, mut updated) = (0, 0, 0, 0, 0);
        for p in pods
            .iter()
            .filter(|p| ordinal(&name, &p.name_any()).is_some())
        {
            replicas += 1;
            if running_and_ready(p) {
                ready += 1;
                if is_available(p, min_ready, now) {
                    available += 1;
                }
            }
            if !is_terminating(p) {
                if pod_revision(p) == cur {
                    current_n += 1;
                }
                if pod_revision(p) == upd {
                    updated += 1;
                }
            }
        }
        st.replicas = replicas;
        st.ready_replicas = Some(ready);
        st.available_replicas = Some(available);
        st.current_replicas = Some(current_n);
        st.updated_replicas = Some(updated);
        let rolling = spec
            .and_then(|s| s.update_strategy.as_ref())
            .and_then(|s| s.type_.as_deref())
            .unwrap_or("RollingUpdate")
            == "RollingUpdate";
        let want = spec.and_then(|s| s.replicas).unwrap_or(1);
        if rolling && updated == replicas && ready == replicas && replicas == want {
            st.current_replicas = Some(updated);
            st.current_revision = Some(upd);
        }
        st.conditions = set.status.as_ref().and_then(|s| s.conditions.clone());
        if set.status.as_ref() == Some(&st) {
            return Ok(());
        }
        let ns = set.namespace().unwrap_or_default();
        let api: Api<StatefulSet> = Api::namespaced(self.ctx.client.clone(), &ns);
        let patch = json!({"status": st});
        match api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_status(&e, 404) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes the oldest revisions beyond `revisionHistoryLimit` that neither the status nor
    /// any pod uses (upstream `truncateHistory`).
    async fn truncate_history(
        &self,
        set: &StatefulSet,
        revisions: &[ControllerRevision],
        pods: &[Arc<Pod>],
        current: &ControllerRevision,
        update: &ControllerRevision,
    ) -> Result<()> {
        let limit = set
            .spec
            .as_ref()
            .and_then(|s| s.revision_history_limit)
            .unwrap_or(10)
            .max(0);
        let live = |r: &ControllerRevision| {
            let n = r.name_any();
            n == current.name_any()
                || n == update.name_any()
                || pods.iter().any(|p| pod_revision(p) == n)
        };
        let history: Vec<&ControllerRevision> = revisions.iter().filter(|r| !live(r)).collect();
        let excess = history
            .len()
            .saturating_sub(usize::try_from(limit).unwrap_or(0));
        if excess == 0 {
            return Ok(());
        }
        let api: Api<ControllerRevision> = Api::namespaced(
            self.ctx.client.clone(),
            &set.namespace().unwrap_or_default(),
        );
        for r in history.into_iter().take(excess) {
            match api.delete(&r.name_any(), &DeleteParams::default()).await {
                Ok(_) => {}
                Err(e) if is_status(&e, 404) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    async fn event(&self, set: &StatefulSet, ty: EventType, reason: &str, message: String) {
        self.ctx
            .events
            .publish(COMPONENT, &set.object_ref(&()), ty, reason, &message)
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinals_parse_only_exact_children() {
        assert_eq!(ordinal("web", "web-0"), Some(0));
        assert_eq!(ordinal("web", "web-12"), Some(12));
        assert_eq!(ordinal("web", "web-x"), None);
        assert_eq!(ordinal("web", "web-"), None);
        assert_eq!(ordinal("web", "webs-1"), None);
        assert_eq!(ordinal("web-1", "web-1-2"), Some(2));
    }

    #[test]
    fn revision_hash_depends_on_data_and_collisions() {
        let a = json!({"spec": {"template": {"a": 1}}});
        let b = json!({"spec": {"template": {"a": 2}}});
        assert_eq!(revision_hash(&a, 0), revision_hash(&a, 0));
        assert_ne!(revision_hash(&a, 0), revision_hash(&b, 0));
        assert_ne!(revision_hash(&a, 0), revision_hash(&a, 1));
        assert!(revision_hash(&a, 0)
            .chars()
            .all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)));
    }

    #[test]
    fn pods_get_identity_and_claims() {
        let set: StatefulSet = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "u1"},
            "spec": {
                "serviceName": "nginx",
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "c", "image": "i"}]}},
                "volumeClaimTemplates": [{"metadata": {"name": "data"},
                    "spec": {"accessModes": ["ReadWriteOnce"]}}]
            }
        }))
        .expect("set");
        let tmpl = set
            .spec
            .as_ref()
            .map(|s| s.template.clone())
            .expect("template");
        let pod = new_pod(&set, tmpl, 2, "web-abc");
        assert_eq!(pod.metadata.name.as_deref(), Some("web-2"));
        let l = pod.metadata.labels.clone().unwrap_or_default();
        assert_eq!(l[POD_NAME_LABEL], "web-2");
        assert_eq!(l[POD_INDEX_LABEL], "2");
        assert_eq!(l[labels::CONTROLLER_REVISION_HASH], "web-abc");
        let spec = pod.spec.expect("spec");
        assert_eq!(spec.hostname.as_deref(), Some("web-2"));
        assert_eq!(spec.subdomain.as_deref(), Some("nginx"));
        let vols = spec.volumes.expect("volumes");
        assert_eq!(
            vols[0]
                .persistent_volume_claim
                .as_ref()
                .map(|c| c.claim_name.as_str()),
            Some("data-web-2")
        );
    }
}
