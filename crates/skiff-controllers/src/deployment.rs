//! The Deployment controller (upstream `pkg/controller/deployment`, k8s-semantics §1): a
//! kube-runtime `Controller` over apps/v1 Deployments that owns ReplicaSets and watches Pods (for
//! Recreate). Each reconcile is one level-triggered, idempotent `syncDeployment` pass: claim
//! ReplicaSets (adopt/release), paused conditions, proportional scaling or a RollingUpdate /
//! Recreate step, revision-history cleanup, and status with the Available/Progressing conditions.
//!
//! Reads go to the API server (a GET of the Deployment, LISTs of its namespace's ReplicaSets and,
//! for Recreate, Pods) rather than the watch caches: every write is derived from what the server
//! holds right now, so a lagging cache can never double-create or scale from stale sizes, and
//! writes carry resourceVersions (a Conflict just requeues).

mod util;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::Resource;

use crate::{Context, Error, Result};
use skiff_client::driver::{drive, mapped_triggers, owner_ref_triggers, self_triggers};
use skiff_client::events::EventType;
use skiff_semantics::labels::{label_selector_is_empty, label_selector_matches};
use util::*;

const COMPONENT: &str = "deployment-controller";
/// Fallback resync for settled Deployments (watch events normally drive everything).
const RESYNC: Duration = Duration::from_secs(300);
/// While a Recreate rollout waits for old pods to go, look again at least this often.
const RECREATE_POLL: Duration = Duration::from_secs(2);

/// Runs this controller until the process stops (errors are retried inside).
pub async fn run(ctx: Arc<Context>) -> Result<()> {
    let client = ctx.client.clone();
    let (store, writer) = reflector::store::<Deployment>();
    let d_triggers = self_triggers(writer, Api::<Deployment>::all(client.clone()));
    let rs_triggers = owner_ref_triggers::<Deployment, ReplicaSet>(client.clone());
    let pod_triggers = mapped_triggers(Api::<Pod>::all(client), {
        let store = store.clone();
        move |pod: Pod| recreate_deployments_for_pod(&store, &pod)
    });
    let queue = futures::stream::select_all([d_triggers, rs_triggers, pod_triggers]);
    drive("deployment", ctx, store, queue, error_policy, |d, ctx| {
        Box::pin(reconcile(d, ctx))
    })
    .await;
    Err(Error::WatchEnded("deployment"))
}

/// Pod events matter only to Recreate Deployments (they wait for old pods to disappear).
fn recreate_deployments_for_pod(
    store: &Store<Deployment>,
    pod: &Pod,
) -> Vec<ObjectRef<Deployment>> {
    let Some(ns) = pod.metadata.namespace.as_deref() else {
        return Vec::new();
    };
    store
        .state()
        .iter()
        .filter(|d| d.metadata.namespace.as_deref() == Some(ns) && !is_rolling(d))
        .filter(|d| {
            d.spec.as_ref().is_some_and(|s| {
                !label_selector_is_empty(&s.selector)
                    && label_selector_matches(&s.selector, &pod.metadata.labels.as_ref())
            })
        })
        .filter_map(|d| {
            d.metadata
                .name
                .as_deref()
                .map(|n| ObjectRef::new(n).within(ns))
        })
        .collect()
}

fn error_policy(_d: Arc<Deployment>, err: &Error, _ctx: Arc<Context>) -> Action {
    match err {
        Error::Kube(kube::Error::Api(s)) if s.is_conflict() || s.is_already_exists() => {
            Action::requeue(Duration::from_millis(200))
        }
        _ => Action::requeue(Duration::from_secs(1)),
    }
}

async fn reconcile(d: Arc<Deployment>, ctx: Arc<Context>) -> Result<Action> {
    let (Some(ns), Some(name)) = (d.metadata.namespace.clone(), d.metadata.name.clone()) else {
        return Ok(Action::await_change());
    };
    let d_api: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
    // Work from the server's current copy, not the cache (see module doc).
    let Some(d) = d_api.get_opt(&name).await? else {
        return Ok(Action::await_change());
    };
    if d.spec.is_none() {
        return Ok(Action::await_change());
    }
    let mut s = Syncer {
        ctx: &ctx,
        rs_api: Api::namespaced(ctx.client.clone(), &ns),
        pod_api: Api::namespaced(ctx.client.clone(), &ns),
        d_api,
        d,
        name,
    };
    s.sync_deployment().await
}

fn is_namespace_terminating(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.details.as_ref().is_some_and(|d| {
        d.causes.iter().any(|c| c.reason == "NamespaceTerminating")
    }))
}

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.is_not_found())
}

fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
}

/// One syncDeployment pass over a freshly read Deployment.
struct Syncer<'a> {
    ctx: &'a Context,
    d_api: Api<Deployment>,
    rs_api: Api<ReplicaSet>,
    pod_api: Api<Pod>,
    /// The Deployment as last read or written (status writes refresh it).
    d: Deployment,
    name: String,
}

impl Syncer<'_> {
    fn obj_ref(&self) -> ObjectReference {
        self.d.object_ref(&())
    }

    async fn event(&self, kind: EventType, reason: &str, message: &str) {
        let r = self.obj_ref();
        self.ctx
            .events
            .publish(COMPONENT, &r, kind, reason, message)
            .await;
    }

    fn uid(&self) -> &str {
        self.d.metadata.uid.as_deref().unwrap_or("")
    }

    fn selector(&self) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector {
        self.d
            .spec
            .as_ref()
            .map(|s| s.selector.clone())
            .unwrap_or_default()
    }

    fn template(&self) -> k8s_openapi::api::core::v1::PodTemplateSpec {
        self.d
            .spec
            .as_ref()
            .map(|s| s.template.clone())
            .unwrap_or_default()
    }

    /// UpdateStatus (status + annotations) with the current in-memory Deployment.
    async fn update_status(&mut self) -> Result<()> {
        self.d = self
            .d_api
            .replace_status(&self.name, &PostParams::default(), &self.d)
            .await?;
        Ok(())
    }

    /// `syncDeployment`.
    async fn sync_deployment(&mut self) -> Result<Action> {
        let selector = self.selector();
        if label_selector_is_empty(&selector) {
            self.event(
                EventType::Warning,
                "SelectingAll",
                "This deployment is selecting all pods. A non-empty selector is required.",
            )
            .await;
            let generation = self.d.metadata.generation.unwrap_or(0);
            let status = self.d.status.get_or_insert_with(Default::default);
            if status.observed_generation.unwrap_or(0) < generation {
                status.observed_generation = Some(generation);
                self.update_status().await?;
            }
            return Ok(Action::await_change());
        }

        let mut rs_list = self.claim_replica_sets().await?;

        if self.d.metadata.deletion_timestamp.is_some() {
            return self.sync_status_only(&mut rs_list).await;
        }

        self.check_paused_conditions().await?;

        if is_paused(&self.d) {
            return self.sync(&mut rs_list).await;
        }

        // The legacy rollbackTo annotation (extensions/v1beta1) is not supported; modern kubectl
        // rolls back by patching the template, which needs nothing special here.

        if self.is_scaling_event(&mut rs_list).await? {
            return self.sync(&mut rs_list).await;
        }

        if is_rolling(&self.d) {
            self.rollout_rolling(&mut rs_list).await
        } else {
            self.rollout_recreate(&mut rs_list).await
        }
    }

    /// ControllerRefManager: owned RSs that match the selector, adopting orphans and releasing
    /// owned ones that stopped matching.
    async fn claim_replica_sets(&mut self) -> Result<Vec<ReplicaSet>> {
        let selector = self.selector();
        let uid = self.uid().to_string();
        let deleting = self.d.metadata.deletion_timestamp.is_some();
        let list = self.rs_api.list(&ListParams::default()).await?;
        let mut claimed = Vec::new();
        for mut rs in list.items {
            let matches = label_selector_matches(&selector, &rs.metadata.labels.as_ref());
            match controller_of(&rs.metadata) {
                Some(c) if c.uid == uid => {
                    if matches {
                        claimed.push(rs);
                    } else if !deleting {
                        let Some(name) = rs.metadata.name.clone() else {
                            continue;
                        };
                        if let Some(refs) = rs.metadata.owner_references.as_mut() {
                            refs.retain(|o| o.uid != uid);
                        }
                        match self
                            .rs_api
                            .replace(&name, &PostParams::default(), &rs)
                            .await
                        {
                            Ok(_) => {}
                            Err(e) if is_not_found(&e) => {}
                            Err(e) => return Err(e.into()),
                        }
                    }
                }
                Some(_) => {}
                None => {
                    // The Deployment was just read from the server, which stands in for
                    // upstream's uncached "recheck" before adopting.
                    if !matches || deleting || rs.metadata.deletion_timestamp.is_some() {
                        continue;
                    }
                    let Some(name) = rs.metadata.name.clone() else {
                        continue;
                    };
                    rs.metadata
                        .owner_references
                        .get_or_insert_with(Vec::new)
                        .push(self.controller_ref());
                    match self
                        .rs_api
                        .replace(&name, &PostParams::default(), &rs)
                        .await
                    {
                        Ok(adopted) => claimed.push(adopted),
                        Err(e) if is_not_found(&e) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
        Ok(claimed)
    }

    fn controller_ref(&self) -> OwnerReference {
        OwnerReference {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            name: self.name.clone(),
            uid: self.uid().to_string(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }

    /// Pods matching the selector (for Recreate's "old pods running" check).
    async fn list_pods(&self) -> Result<Vec<Pod>> {
        let selector = self.selector();
        let lp = ListParams::default().labels(&selector_string(&selector));
        let pods = self.pod_api.list(&lp).await?;
        Ok(pods
            .items
            .into_iter()
            .filter(|p| label_selector_matches(&selector, &p.metadata.labels.as_ref()))
            .collect())
    }

    /// `checkPausedConditions`.
    async fn check_paused_conditions(&mut self) -> Result<()> {
        if !has_progress_deadline(&self.d) {
            return Ok(());
        }
        let cond = get_condition(self.d.status.as_ref(), COND_PROGRESSING);
        let reason = cond.and_then(|c| c.reason.as_deref());
        if reason == Some(REASON_TIMED_OUT) {
            return Ok(());
        }
        let paused_exists = reason == Some(REASON_PAUSED);
        let paused = is_paused(&self.d);
        let c = if paused && !paused_exists {
            new_condition(
                COND_PROGRESSING,
                "Unknown",
                REASON_PAUSED,
                "Deployment is paused".into(),
                now_seconds(),
            )
        } else if !paused && paused_exists {
            new_condition(
                COND_PROGRESSING,
                "Unknown",
                REASON_RESUMED,
                "Deployment is resumed".into(),
                now_seconds(),
            )
        } else {
            return Ok(());
        };
        set_condition(self.d.status.get_or_insert_with(Default::default), c);
        self.update_status().await
    }

    /// `getAllReplicaSetsAndSyncRevision`: (new RS, old RSs); `rs_list` is kept current with
    /// whatever was written.
    async fn all_rss(
        &mut self,
        rs_list: &mut Vec<ReplicaSet>,
        create: bool,
    ) -> Result<(Option<ReplicaSet>, Vec<ReplicaSet>)> {
        let template = self.template();
        // FindNewReplicaSet: the oldest RS whose template equals ours ignoring the hash label.
        let new_idx = (0..rs_list.len())
            .filter(|i| {
                rs_list[*i]
                    .spec
                    .as_ref()
                    .and_then(|s| s.template.as_ref())
                    .is_some_and(|t| equal_ignore_hash(&template, t))
            })
            .min_by(|a, b| cmp_by_creation(&rs_list[*a], &rs_list[*b]));
        let old: Vec<ReplicaSet> = rs_list
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != new_idx)
            .map(|(_, rs)| rs.clone())
            .collect();
        let new = self.get_new_rs(rs_list, new_idx, &old, create).await?;
        Ok((new, old))
    }

    /// `getNewReplicaSet`.
    async fn get_new_rs(
        &mut self,
        rs_list: &mut Vec<ReplicaSet>,
        new_idx: Option<usize>,
        old: &[ReplicaSet],
        create: bool,
    ) -> Result<Option<ReplicaSet>> {
        let new_revision = max_revision(old) + 1;
        let has_deadline = has_progress_deadline(&self.d);

        if let Some(idx) = new_idx {
            let mut rs = rs_list[idx].clone();
            let mut ann = rs.metadata.annotations.clone().unwrap_or_default();
            let ann_changed = set_new_rs_annotations(&self.d, &mut ann, new_revision, true);
            let mrs = min_ready_seconds(&self.d);
            let spec = rs.spec.get_or_insert_with(Default::default);
            let mrs_changed = spec.min_ready_seconds.unwrap_or(0) != mrs;
            if ann_changed || mrs_changed {
                spec.min_ready_seconds = Some(mrs);
                rs.metadata.annotations = Some(ann);
                let name = rs.metadata.name.clone().unwrap_or_default();
                let updated = self
                    .rs_api
                    .replace(&name, &PostParams::default(), &rs)
                    .await?;
                rs_list[idx] = updated.clone();
                return Ok(Some(updated));
            }
            let rev = annotation(&rs.metadata.annotations, REVISION)
                .unwrap_or("")
                .to_string();
            let mut needs_update = set_deployment_revision(&mut self.d, &rev);
            if has_deadline && get_condition(self.d.status.as_ref(), COND_PROGRESSING).is_none() {
                let msg = format!(
                    "Found new replica set {:?}",
                    rs.metadata.name.clone().unwrap_or_default()
                );
                let c = new_condition(
                    COND_PROGRESSING,
                    "True",
                    REASON_FOUND_NEW_RS,
                    msg,
                    now_seconds(),
                );
                set_condition(self.d.status.get_or_insert_with(Default::default), c);
                needs_update = true;
            }
            if needs_update {
                self.update_status().await?;
            }
            return Ok(Some(rs));
        }
        if !create {
            return Ok(None);
        }

        // Create the new RS, named deterministically from the template hash.
        let collision_count = self.d.status.as_ref().and_then(|s| s.collision_count);
        let mut template = self.template();
        let hash = compute_hash(&template, collision_count);
        template
            .metadata
            .get_or_insert_with(Default::default)
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let mut selector = self.selector();
        selector
            .match_labels
            .get_or_insert_with(BTreeMap::new)
            .insert(POD_TEMPLATE_HASH.into(), hash.clone());
        let rs_name = format!("{}-{}", self.name, hash);
        let labels = template.metadata.as_ref().and_then(|m| m.labels.clone());
        let old_refs: Vec<&ReplicaSet> = old.iter().collect();
        let replicas = new_rs_new_replicas(&self.d, total_spec(&old_refs), 0);
        let mut ann = BTreeMap::new();
        set_new_rs_annotations(&self.d, &mut ann, new_revision, false);
        let rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(rs_name.clone()),
                namespace: self.d.metadata.namespace.clone(),
                owner_references: Some(vec![self.controller_ref()]),
                labels,
                annotations: Some(ann),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(replicas),
                min_ready_seconds: Some(min_ready_seconds(&self.d)),
                selector,
                template: Some(template),
            }),
            status: None,
        };

        let mut already_exists = false;
        let created = match self.rs_api.create(&PostParams::default(), &rs).await {
            Ok(created) => created,
            Err(kube::Error::Api(s)) if s.is_already_exists() => {
                already_exists = true;
                let existing = self.rs_api.get_opt(&rs_name).await?;
                let ours = existing.filter(|e| {
                    controller_of(&e.metadata).is_some_and(|c| c.uid == self.uid())
                        && e.spec
                            .as_ref()
                            .and_then(|s| s.template.as_ref())
                            .is_some_and(|t| equal_ignore_hash(&self.template(), t))
                });
                match ours {
                    Some(e) => e,
                    None => {
                        // Hash collision: bump collisionCount so the next pass hashes differently.
                        let status = self.d.status.get_or_insert_with(Default::default);
                        status.collision_count = Some(status.collision_count.unwrap_or(0) + 1);
                        self.update_status().await?;
                        return Err(Error::Other(format!(
                            "hash collision creating replica set {rs_name:?}; collisionCount bumped"
                        )));
                    }
                }
            }
            Err(e) if is_namespace_terminating(&e) => return Err(e.into()),
            Err(e) => {
                let msg = format!("Failed to create new replica set {rs_name:?}: {e}");
                if has_deadline {
                    let c = new_condition(
                        COND_PROGRESSING,
                        "False",
                        REASON_RS_CREATE_ERROR,
                        msg.clone(),
                        now_seconds(),
                    );
                    set_condition(self.d.status.get_or_insert_with(Default::default), c);
                    // The create error is the one worth reporting.
                    let _ = self.update_status().await;
                }
                self.event(EventType::Warning, REASON_RS_CREATE_ERROR, &msg)
                    .await;
                return Err(e.into());
            }
        };
        if !already_exists && replicas > 0 {
            let msg = format!("Scaled up replica set {rs_name} from 0 to {replicas}");
            self.event(EventType::Normal, "ScalingReplicaSet", &msg)
                .await;
        }
        let mut needs_update = set_deployment_revision(&mut self.d, &new_revision.to_string());
        if !already_exists && has_deadline {
            let msg = format!("Created new replica set {rs_name:?}");
            let c = new_condition(
                COND_PROGRESSING,
                "True",
                REASON_NEW_RS_CREATED,
                msg,
                now_seconds(),
            );
            set_condition(self.d.status.get_or_insert_with(Default::default), c);
            needs_update = true;
        }
        rs_list.push(created.clone());
        if needs_update {
            self.update_status().await?;
        }
        Ok(Some(created))
    }

    /// `isScalingEvent`: an active RS was sized for a different `spec.replicas`.
    async fn is_scaling_event(&mut self, rs_list: &mut Vec<ReplicaSet>) -> Result<bool> {
        let (new, old) = self.all_rss(rs_list, false).await?;
        let r = replicas(&self.d);
        Ok(old.iter().chain(new.iter()).any(|rs| {
            rs_replicas(rs) > 0
                && annotation(&rs.metadata.annotations, DESIRED_REPLICAS)
                    .and_then(|v| v.parse::<i32>().ok())
                    .is_some_and(|desired| desired != r)
        }))
    }

    /// `scaleReplicaSet`: writes size and replicas annotations; event when the size changed.
    async fn scale_rs(&self, rs: &ReplicaSet, new_scale: i32) -> Result<(bool, ReplicaSet)> {
        let r = replicas(&self.d);
        let max = r + max_surge(&self.d);
        let old_scale = rs_replicas(rs);
        let size_changed = old_scale != new_scale;
        if !size_changed && !replicas_annotations_need_update(rs, r, max) {
            return Ok((false, rs.clone()));
        }
        let mut copy = rs.clone();
        copy.spec.get_or_insert_with(Default::default).replicas = Some(new_scale);
        set_replicas_annotations(
            copy.metadata.annotations.get_or_insert_with(BTreeMap::new),
            r,
            max,
        );
        let name = copy.metadata.name.clone().unwrap_or_default();
        let updated = self
            .rs_api
            .replace(&name, &PostParams::default(), &copy)
            .await?;
        if size_changed {
            let dir = if old_scale < new_scale { "up" } else { "down" };
            let msg = format!("Scaled {dir} replica set {name} from {old_scale} to {new_scale}");
            self.event(EventType::Normal, "ScalingReplicaSet", &msg)
                .await;
        }
        Ok((size_changed, updated))
    }

    /// `scaleReplicaSetAndRecordEvent`: only when the size differs.
    async fn scale_rs_and_record(
        &self,
        rs: &ReplicaSet,
        new_scale: i32,
    ) -> Result<(bool, ReplicaSet)> {
        if rs_replicas(rs) == new_scale {
            return Ok((false, rs.clone()));
        }
        self.scale_rs(rs, new_scale).await
    }

    /// `sync`: scaling (proportional mid-rollout) + cleanup when paused + status.
    async fn sync(&mut self, rs_list: &mut Vec<ReplicaSet>) -> Result<Action> {
        let (mut new, mut old) = self.all_rss(rs_list, false).await?;
        self.scale(&mut new, &mut old).await?;
        if is_paused(&self.d) {
            self.cleanup(&old).await?;
        }
        self.sync_deployment_status(new.as_ref(), &old).await
    }

    /// `scale`: size the RSs to the Deployment's replicas.
    async fn scale(&mut self, new: &mut Option<ReplicaSet>, old: &mut [ReplicaSet]) -> Result<()> {
        let r = replicas(&self.d);
        let n_old = old.len();
        let mut all: Vec<ReplicaSet> = old.to_vec();
        let new_idx = new.as_ref().map(|n| {
            all.push(n.clone());
            n_old
        });
        let refs: Vec<&ReplicaSet> = all.iter().collect();
        let mut writes: Vec<(usize, i32, bool)> = Vec::new(); // (index in all, size, record-only)
        if let Some(i) = find_active_or_latest(&refs, new_idx) {
            if rs_replicas(refs[i]) != r {
                writes.push((i, r, true));
            }
        } else if new.as_ref().is_some_and(|n| is_saturated(&self.d, n)) {
            for (i, rs) in refs.iter().enumerate().take(n_old) {
                if rs_replicas(rs) > 0 {
                    writes.push((i, 0, true));
                }
            }
        } else if is_rolling(&self.d) {
            let active_idx: Vec<usize> = (0..refs.len())
                .filter(|i| rs_replicas(refs[*i]) > 0)
                .collect();
            let active: Vec<&ReplicaSet> = active_idx.iter().map(|i| refs[*i]).collect();
            for (ai, size) in proportional_sizes(&self.d, &active) {
                writes.push((active_idx[ai], size, false));
            }
        }
        for (i, size, record_only) in writes {
            let (_, updated) = if record_only {
                self.scale_rs_and_record(&all[i], size).await?
            } else {
                self.scale_rs(&all[i], size).await?
            };
            all[i] = updated;
        }
        if new_idx.is_some() {
            *new = all.pop();
        }
        old.clone_from_slice(&all[..n_old]);
        Ok(())
    }

    /// `rolloutRolling`: one scale-up of the new RS, or one round of old-RS scale-downs.
    async fn rollout_rolling(&mut self, rs_list: &mut Vec<ReplicaSet>) -> Result<Action> {
        let (new, mut old) = self.all_rss(rs_list, true).await?;
        let Some(mut new) = new else {
            return Err(Error::Other(
                "new replica set missing after creation".into(),
            ));
        };
        {
            let all: Vec<&ReplicaSet> = old.iter().chain(std::iter::once(&new)).collect();
            if let Some(target) = reconcile_new_rs_target(&self.d, &all, &new) {
                let (scaled, updated) = self.scale_rs_and_record(&new, target).await?;
                new = updated;
                if scaled {
                    return self.sync_rollout_status(Some(&new), &old).await;
                }
            }
        }
        let active_idx: Vec<usize> = (0..old.len())
            .filter(|i| rs_replicas(&old[*i]) > 0)
            .collect();
        let steps = {
            let all: Vec<&ReplicaSet> = old.iter().chain(std::iter::once(&new)).collect();
            let active: Vec<&ReplicaSet> = active_idx.iter().map(|i| &old[*i]).collect();
            old_rs_scale_down_steps(&self.d, &all, &active, &new)
        };
        let mut scaled_down = false;
        for (ai, size) in steps {
            let oi = active_idx[ai];
            let (scaled, updated) = self.scale_rs_and_record(&old[oi], size).await?;
            old[oi] = updated;
            scaled_down |= scaled;
        }
        if scaled_down {
            return self.sync_rollout_status(Some(&new), &old).await;
        }
        if let Some(status) = self.d.status.as_ref() {
            if deployment_complete(&self.d, status) {
                self.cleanup(&old).await?;
            }
        }
        self.sync_rollout_status(Some(&new), &old).await
    }

    /// `rolloutRecreate`: old RSs to zero, wait for their pods to go, then the new RS at full size.
    async fn rollout_recreate(&mut self, rs_list: &mut Vec<ReplicaSet>) -> Result<Action> {
        let pods = self.list_pods().await?;
        let (mut new, mut old) = self.all_rss(rs_list, false).await?;
        let mut scaled_down = false;
        for rs in old.iter_mut() {
            if rs_replicas(rs) > 0 {
                let (scaled, updated) = self.scale_rs_and_record(rs, 0).await?;
                *rs = updated;
                scaled_down |= scaled;
            }
        }
        if scaled_down {
            return self.sync_rollout_status(new.as_ref(), &old).await;
        }
        let old_refs: Vec<&ReplicaSet> = old.iter().collect();
        let pod_refs: Vec<&Pod> = pods.iter().collect();
        let new_uid = new.as_ref().and_then(|n| n.metadata.uid.as_deref());
        if old_pods_running(&old_refs, new_uid, &pod_refs) {
            self.sync_rollout_status(new.as_ref(), &old).await?;
            return Ok(requeue_within(RECREATE_POLL));
        }
        if new.is_none() {
            let (n, o) = self.all_rss(rs_list, true).await?;
            new = n;
            old = o;
        }
        if let Some(n) = new.as_mut() {
            let (_, updated) = self.scale_rs_and_record(n, replicas(&self.d)).await?;
            *n = updated;
        }
        if let Some(status) = self.d.status.as_ref() {
            if deployment_complete(&self.d, status) {
                self.cleanup(&old).await?;
            }
        }
        self.sync_rollout_status(new.as_ref(), &old).await
    }

    /// `syncStatusOnly` (Deployment being deleted).
    async fn sync_status_only(&mut self, rs_list: &mut Vec<ReplicaSet>) -> Result<Action> {
        let (new, old) = self.all_rss(rs_list, false).await?;
        self.sync_deployment_status(new.as_ref(), &old).await
    }

    /// `syncDeploymentStatus`: calculateStatus, written only when different.
    async fn sync_deployment_status(
        &mut self,
        new: Option<&ReplicaSet>,
        old: &[ReplicaSet],
    ) -> Result<Action> {
        let all: Vec<&ReplicaSet> = old.iter().chain(new).collect();
        let status = calculate_status(&self.d, &all, new, now_seconds());
        if self.d.status.as_ref() != Some(&status) {
            self.d.status = Some(status);
            self.update_status().await?;
        }
        Ok(Action::requeue(RESYNC))
    }

    /// `syncRolloutStatus`: status with the Progressing condition; requeues at the deadline.
    async fn sync_rollout_status(
        &mut self,
        new: Option<&ReplicaSet>,
        old: &[ReplicaSet],
    ) -> Result<Action> {
        let all: Vec<&ReplicaSet> = old.iter().chain(new).collect();
        let now = now_seconds();
        let status = rollout_status(&self.d, &all, new, now);
        if self.d.status.as_ref() == Some(&status) {
            return Ok(match requeue_stuck_after(&self.d, &status, now) {
                Some(after) => requeue_within(after),
                None => Action::requeue(RESYNC),
            });
        }
        self.d.status = Some(status);
        self.update_status().await?;
        Ok(Action::requeue(RESYNC))
    }

    /// `cleanupDeployment`: delete the oldest zero-sized old RSs beyond revisionHistoryLimit.
    async fn cleanup(&self, old: &[ReplicaSet]) -> Result<()> {
        let refs: Vec<&ReplicaSet> = old.iter().collect();
        for name in cleanup_victims(&self.d, &refs) {
            match self.rs_api.delete(&name, &DeleteParams::background()).await {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

/// `SetDeploymentRevision` on the Deployment's annotations.
fn set_deployment_revision(d: &mut Deployment, revision: &str) -> bool {
    let a = d.metadata.annotations.get_or_insert_with(BTreeMap::new);
    if a.get(REVISION).map(String::as_str) == Some(revision) {
        return false;
    }
    a.insert(REVISION.into(), revision.into());
    true
}

/// Requeue after `after`, but never later than the fallback resync.
fn requeue_within(after: Duration) -> Action {
    Action::requeue(after.min(RESYNC))
}
