//! The disruption controller (upstream's `pkg/controller/disruption`): keeps each
//! PodDisruptionBudget's status — `expectedPods`, `desiredHealthy`, `currentHealthy`,
//! `disruptionsAllowed`, `observedGeneration`, the `DisruptionAllowed` condition — from the
//! pods its selector matches. Percentages and `maxUnavailable` count against the scale of the
//! pods' controllers (Deployment through its ReplicaSet, ReplicaSet, StatefulSet,
//! ReplicationController). Entries the eviction API put in `disruptedPods` stop the pod
//! counting as healthy until it is deleted, or for two minutes if it never is.
//!
//! Level-triggered: any PodDisruptionBudget or pod change recomputes every budget from fresh
//! lists, plus a periodic pass (which also expires old `disruptedPods` entries); a status is
//! written only when it changed.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{ObjectReference, Pod, ReplicationController};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, OwnerReference, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::watcher;
use skiff_client::events::EventType;

use crate::{Context, Error, Result};

const COMPONENT: &str = "controllermanager";
/// How long a pod the eviction API recorded may stay undeleted before it counts again
/// (upstream's `DeletionTimeout`).
pub const DELETION_TIMEOUT: Duration = Duration::from_secs(120);
const RESYNC: Duration = Duration::from_secs(30);
/// Changes arriving together are handled in one pass.
const DEBOUNCE: Duration = Duration::from_millis(100);

/// Whether the budget's selector matches the pod (policy/v1: an empty selector matches none).
pub fn selects(pdb: &PodDisruptionBudget, pod: &Pod) -> bool {
    if pdb.metadata.namespace != pod.metadata.namespace {
        return false;
    }
    let Some(sel) = pdb.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
        return false;
    };
    let empty = BTreeMap::new();
    !skiff_semantics::labels::label_selector_is_empty(sel)
        && skiff_semantics::labels::label_selector_matches(
            sel,
            pod.metadata.labels.as_ref().unwrap_or(&empty),
        )
}

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// `intstr.GetScaledValueFromIntOrPercent(v, total, roundUp=true)`; Err for a malformed
/// percent.
pub fn scaled(v: &IntOrString, total: i32) -> std::result::Result<i32, String> {
    match v {
        IntOrString::Int(i) => Ok(*i),
        IntOrString::String(s) => {
            let p: i64 = s
                .strip_suffix('%')
                .and_then(|d| d.parse().ok())
                .ok_or_else(|| format!("invalid value for IntOrString: invalid value {s:?}"))?;
            let v = (p * i64::from(total) + 99).div_euclid(100);
            Ok(i32::try_from(v).unwrap_or(i32::MAX))
        }
    }
}

/// The controller of a pod, as upstream's finders see it.
fn controller_of(pod: &Pod) -> Option<&OwnerReference> {
    pod.metadata
        .owner_references
        .as_ref()?
        .iter()
        .find(|r| r.controller == Some(true))
}

/// What the controller needs from the cluster besides pods: the scale of a pod's controller
/// (keyed and counted once by the uid it returns).
pub trait Scales {
    /// `(uid, replicas)` of the workload owning pods through `owner`, or None if it is no
    /// kind the controller knows.
    fn scale(
        &self,
        namespace: &str,
        owner: &OwnerReference,
    ) -> impl std::future::Future<Output = std::result::Result<Option<(String, i32)>, String>> + Send;
}

/// The result of one budget's computation.
#[derive(Debug, Clone, PartialEq)]
pub struct Computed {
    pub expected: i32,
    pub desired_healthy: i32,
    pub current_healthy: i32,
    pub disrupted: BTreeMap<String, Time>,
    /// Pods with a disruption record older than the timeout (a `NotDeleted` event each).
    pub not_deleted: Vec<String>,
    /// Pods without a controller when the budget needs the scale.
    pub unmanaged: usize,
}

/// Upstream's `getExpectedScale`: the sum of the scales of the pods' controllers.
async fn expected_scale(
    scales: &impl Scales,
    pods: &[&Pod],
) -> std::result::Result<(i32, usize), String> {
    let mut seen: HashMap<String, i32> = HashMap::new();
    let mut unmanaged = 0;
    for pod in pods {
        let Some(owner) = controller_of(pod) else {
            unmanaged += 1;
            continue;
        };
        let ns = pod.metadata.namespace.as_deref().unwrap_or("");
        match scales.scale(ns, owner).await? {
            Some((uid, n)) => {
                seen.insert(uid, n);
            }
            None => {
                return Err(format!(
                    "found no controllers for pod {:?}",
                    pod.metadata.name.as_deref().unwrap_or("")
                ))
            }
        }
    }
    let total = seen.values().fold(0i32, |a, b| a.saturating_add(*b));
    Ok((total, unmanaged))
}

/// Everything but the write: upstream's `getExpectedPodCount`, `buildDisruptedPodMap` and
/// `countHealthyPods`.
pub async fn compute(
    pdb: &PodDisruptionBudget,
    pods: &[&Pod],
    scales: &impl Scales,
    now: jiff::Timestamp,
) -> std::result::Result<Computed, String> {
    let spec = pdb.spec.as_ref();
    let (expected, desired, unmanaged) =
        if let Some(max) = spec.and_then(|s| s.max_unavailable.as_ref()) {
            let (expected, unmanaged) = expected_scale(scales, pods).await?;
            let max = scaled(max, expected)?;
            (expected, (expected - max).max(0), unmanaged)
        } else if let Some(min) = spec.and_then(|s| s.min_available.as_ref()) {
            match min {
                IntOrString::Int(i) => (i32::try_from(pods.len()).unwrap_or(i32::MAX), *i, 0),
                IntOrString::String(_) => {
                    let (expected, unmanaged) = expected_scale(scales, pods).await?;
                    (expected, scaled(min, expected)?, unmanaged)
                }
            }
        } else {
            (i32::try_from(pods.len()).unwrap_or(i32::MAX), 0, 0)
        };
    let recorded = pdb.status.as_ref().and_then(|s| s.disrupted_pods.as_ref());
    let mut disrupted = BTreeMap::new();
    let mut not_deleted = Vec::new();
    for pod in pods {
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let name = pod.metadata.name.clone().unwrap_or_default();
        let Some(at) = recorded.and_then(|r| r.get(&name)) else {
            continue;
        };
        let deadline = at.0 + jiff::SignedDuration::try_from(DELETION_TIMEOUT).unwrap_or_default();
        if deadline < now {
            not_deleted.push(name);
        } else {
            disrupted.insert(name, at.clone());
        }
    }
    let current = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| !disrupted.contains_key(p.metadata.name.as_deref().unwrap_or("")))
        .filter(|p| pod_ready(p))
        .count();
    Ok(Computed {
        expected,
        desired_healthy: desired,
        current_healthy: i32::try_from(current).unwrap_or(i32::MAX),
        disrupted,
        not_deleted,
        unmanaged,
    })
}

/// Sets the `DisruptionAllowed` condition (the transition time moves only on a change).
fn set_condition(
    conds: &mut Vec<Condition>,
    status: &str,
    reason: &str,
    message: &str,
    generation: i64,
    now: &Time,
) {
    match conds.iter_mut().find(|c| c.type_ == "DisruptionAllowed") {
        Some(c) => {
            if c.status != status {
                c.last_transition_time = now.clone();
            }
            c.status = status.into();
            c.reason = reason.into();
            c.message = message.into();
            c.observed_generation = Some(generation);
        }
        None => conds.push(Condition {
            type_: "DisruptionAllowed".into(),
            status: status.into(),
            reason: reason.into(),
            message: message.into(),
            observed_generation: Some(generation),
            last_transition_time: now.clone(),
        }),
    }
}

/// Upstream's `updatePdbStatus` as a new status (None = unchanged) from a computation.
pub fn next_status(
    pdb: &PodDisruptionBudget,
    computed: std::result::Result<&Computed, &str>,
    now: jiff::Timestamp,
) -> PodDisruptionBudgetStatus {
    let old = pdb.status.clone().unwrap_or_default();
    let generation = pdb.metadata.generation.unwrap_or(0);
    let now = Time(now);
    let mut conds = old.conditions.clone().unwrap_or_default();
    let mut status = match computed {
        Ok(c) => {
            let mut allowed = c.current_healthy - c.desired_healthy;
            if c.expected <= 0 || allowed <= 0 {
                allowed = 0;
            }
            if allowed > 0 {
                set_condition(&mut conds, "True", "SufficientPods", "", generation, &now);
            } else {
                set_condition(
                    &mut conds,
                    "False",
                    "InsufficientPods",
                    "",
                    generation,
                    &now,
                );
            }
            PodDisruptionBudgetStatus {
                current_healthy: c.current_healthy,
                desired_healthy: c.desired_healthy,
                expected_pods: c.expected,
                disruptions_allowed: allowed,
                disrupted_pods: (!c.disrupted.is_empty()).then(|| c.disrupted.clone()),
                observed_generation: Some(generation),
                conditions: None,
            }
        }
        // Upstream's failSafe: nothing may be disrupted while the budget cannot be computed.
        Err(msg) => {
            set_condition(&mut conds, "False", "SyncFailed", msg, generation, &now);
            PodDisruptionBudgetStatus {
                disruptions_allowed: 0,
                observed_generation: Some(generation),
                ..old.clone()
            }
        }
    };
    status.conditions = Some(conds);
    status
}

/// Reads controllers' scales through the API.
struct ApiScales {
    client: kube::Client,
}

impl Scales for ApiScales {
    async fn scale(
        &self,
        namespace: &str,
        owner: &OwnerReference,
    ) -> std::result::Result<Option<(String, i32)>, String> {
        let c = &self.client;
        let err = |e: kube::Error| crate::api_message(&e);
        let group = owner.api_version.split('/').next().unwrap_or("");
        let same = |uid: Option<&String>| uid == Some(&owner.uid);
        match (group, owner.kind.as_str()) {
            ("apps", "ReplicaSet") => {
                let rs = Api::<ReplicaSet>::namespaced(c.clone(), namespace)
                    .get_opt(&owner.name)
                    .await
                    .map_err(err)?;
                let Some(rs) = rs.filter(|r| same(r.metadata.uid.as_ref())) else {
                    return Ok(None);
                };
                // A ReplicaSet of a Deployment counts with the Deployment's scale.
                let dep_ref = rs.metadata.owner_references.as_ref().and_then(|o| {
                    o.iter()
                        .find(|r| r.controller == Some(true) && r.kind == "Deployment")
                });
                if let Some(d) = dep_ref {
                    let dep = Api::<Deployment>::namespaced(c.clone(), namespace)
                        .get_opt(&d.name)
                        .await
                        .map_err(err)?;
                    if let Some(dep) = dep.filter(|x| x.metadata.uid.as_ref() == Some(&d.uid)) {
                        let n = dep.spec.and_then(|s| s.replicas).unwrap_or(1);
                        return Ok(Some((d.uid.clone(), n)));
                    }
                    return Ok(None);
                }
                let n = rs.spec.and_then(|s| s.replicas).unwrap_or(1);
                Ok(Some((owner.uid.clone(), n)))
            }
            ("apps", "StatefulSet") => {
                let s = Api::<StatefulSet>::namespaced(c.clone(), namespace)
                    .get_opt(&owner.name)
                    .await
                    .map_err(err)?;
                Ok(s.filter(|x| same(x.metadata.uid.as_ref())).map(|x| {
                    (
                        owner.uid.clone(),
                        x.spec.and_then(|s| s.replicas).unwrap_or(1),
                    )
                }))
            }
            ("v1", "ReplicationController") => {
                let s = Api::<ReplicationController>::namespaced(c.clone(), namespace)
                    .get_opt(&owner.name)
                    .await
                    .map_err(err)?;
                Ok(s.filter(|x| same(x.metadata.uid.as_ref())).map(|x| {
                    (
                        owner.uid.clone(),
                        x.spec.and_then(|s| s.replicas).unwrap_or(1),
                    )
                }))
            }
            _ => Ok(None),
        }
    }
}

fn pdb_ref(pdb: &PodDisruptionBudget) -> ObjectReference {
    ObjectReference {
        api_version: Some("policy/v1".into()),
        kind: Some("PodDisruptionBudget".into()),
        namespace: pdb.metadata.namespace.clone(),
        name: pdb.metadata.name.clone(),
        uid: pdb.metadata.uid.clone(),
        resource_version: pdb.metadata.resource_version.clone(),
        ..Default::default()
    }
}

/// Whether two statuses differ in anything but condition timestamps.
fn same_status(a: &PodDisruptionBudgetStatus, b: &PodDisruptionBudgetStatus) -> bool {
    let strip = |s: &PodDisruptionBudgetStatus| {
        let mut s = s.clone();
        for c in s.conditions.iter_mut().flatten() {
            c.last_transition_time = Time(jiff::Timestamp::UNIX_EPOCH);
        }
        s
    };
    strip(a) == strip(b)
}

/// One pass over every budget; how many there are.
async fn sync_all(ctx: &Context) -> Result<usize> {
    let pdbs = Api::<PodDisruptionBudget>::all(ctx.client.clone())
        .list(&ListParams::default())
        .await?;
    if pdbs.items.is_empty() {
        return Ok(0);
    }
    let pods = Api::<Pod>::all(ctx.client.clone())
        .list(&ListParams::default())
        .await?;
    let scales = ApiScales {
        client: ctx.client.clone(),
    };
    for pdb in &pdbs.items {
        let ns = pdb.metadata.namespace.as_deref().unwrap_or("");
        let name = pdb.metadata.name.as_deref().unwrap_or("");
        let mine: Vec<&Pod> = pods.items.iter().filter(|p| selects(pdb, p)).collect();
        let now = jiff::Timestamp::now();
        let computed = compute(pdb, &mine, &scales, now).await;
        let status = next_status(pdb, computed.as_ref().map_err(String::as_str), now);
        if pdb.status.as_ref().is_some_and(|s| same_status(s, &status)) {
            continue;
        }
        let r = pdb_ref(pdb);
        match &computed {
            Ok(c) => {
                if mine.is_empty() {
                    ctx.events
                        .publish(
                            COMPONENT,
                            &r,
                            EventType::Normal,
                            "NoPods",
                            "No matching pods found",
                        )
                        .await;
                }
                for p in &c.not_deleted {
                    let msg =
                        format!("Pod was expected by PDB {ns}/{name} to be deleted but it wasn't");
                    let pod_ref = ObjectReference {
                        api_version: Some("v1".into()),
                        kind: Some("Pod".into()),
                        namespace: Some(ns.to_string()),
                        name: Some(p.clone()),
                        ..Default::default()
                    };
                    ctx.events
                        .publish(COMPONENT, &pod_ref, EventType::Warning, "NotDeleted", &msg)
                        .await;
                }
                if c.unmanaged > 0 {
                    ctx.events
                        .publish(COMPONENT, &r, EventType::Warning, "UnmanagedPods",
                            "Pods selected by this PodDisruptionBudget were found to be unmanaged. As a result, the status of the PDB cannot be calculated correctly, which may result in undefined behavior. To account for these pods please set \".spec.minAvailable\" field of the PDB to an integer value.")
                        .await;
                }
            }
            Err(e) => {
                ctx.events
                    .publish(
                        COMPONENT,
                        &r,
                        EventType::Warning,
                        "CalculateExpectedPodCountFailed",
                        &format!("Failed to calculate the number of expected pods: {e}"),
                    )
                    .await;
            }
        }
        let mut updated = pdb.clone();
        updated.status = Some(status);
        let api = Api::<PodDisruptionBudget>::namespaced(ctx.client.clone(), ns);
        match api
            .replace_status(name, &PostParams::default(), &updated)
            .await
        {
            Ok(_) => {}
            // Changed meanwhile (an eviction): the watch brings the next pass.
            Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => {}
            Err(e) => return Err(Error::Kube(e)),
        }
    }
    Ok(pdbs.items.len())
}

/// Runs the controller until the process stops.
pub async fn run(ctx: Arc<Context>) -> Result<()> {
    // Pod events matter only while some budget exists (most clusters have none).
    let pdb_events = watcher(
        Api::<PodDisruptionBudget>::all(ctx.client.clone()),
        watcher::Config::default(),
    )
    .map(|e| e.map(|_| true));
    let pod_events = watcher(
        Api::<Pod>::all(ctx.client.clone()),
        watcher::Config::default(),
    )
    .map(|e| e.map(|_| false));
    let mut events = futures::stream::select(pdb_events, pod_events).boxed();
    let mut tick = tokio::time::interval(RESYNC);
    let mut have_pdbs = true;
    loop {
        tokio::select! {
            ev = events.next() => match ev {
                Some(Ok(is_pdb)) => {
                    if !is_pdb && !have_pdbs {
                        continue;
                    }
                    // Take whatever else arrived with it.
                    tokio::time::sleep(DEBOUNCE).await;
                    while let Some(Some(_)) = events.next().now_or_never() {}
                }
                Some(Err(e)) => {
                    tracing::debug!("disruption: watch: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                None => return Err(Error::WatchEnded("disruption")),
            },
            _ = tick.tick() => {}
        }
        match sync_all(&ctx).await {
            Ok(n) => have_pdbs = n > 0,
            Err(e) => tracing::warn!(%e, "disruption: sync"),
        }
    }
}

#[cfg(test)]
mod tests;
