//! The PersistentVolume controller (upstream's `persistent-volume-binder` with skiff's embedded
//! local-path provisioner, and the `pvc-protection` / `pv-protection` controllers), in one
//! level-triggered loop: any change of claims, volumes, classes or pods that use claims runs a
//! pass over fresh lists (plus a periodic resync).
//!
//! * Claims without a volume bind to the smallest Available volume that matches (class, access
//!   modes, volume mode, capacity ≥ request, selector, `spec.volumeName` pre-binding, a volume
//!   pre-bound to the claim first). Claims of a `WaitForFirstConsumer` class wait until the
//!   scheduler annotates `volume.kubernetes.io/selected-node`, and then only volumes whose node
//!   affinity admits that node are considered.
//! * Classes provisioned by `skiff.dev/local-path` get a new volume `pvc-<claim uid>`: a hostPath
//!   directory `<storage root>/pvc-<uid>_<namespace>_<name>` on the chosen node (the node
//!   publishes its storage root in the `skiff.dev/storage-root` annotation), with node affinity
//!   to that node, pre-bound to the claim, and a `skiff.dev/local-path-cleanup` finalizer the
//!   node's agent removes once it deleted the directory.
//! * Volumes: Available (no claim), Bound, Released (claim gone), then reclaim: Retain keeps the
//!   volume Released; Delete deletes a provisioned volume (the agent removes its directory) and
//!   marks any other volume Failed, as upstream does without a deleter plugin.
//! * Expansion: a bound claim asking for more than its capacity grows its local-path volume
//!   (no capacity limit) and then its status.
//! * Protection: a deleting claim loses `kubernetes.io/pvc-protection` once no running pod uses
//!   it; a deleting volume loses `kubernetes.io/pv-protection` once it is not Bound.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{
    Node, ObjectReference, PersistentVolume, PersistentVolumeClaim, Pod,
};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use serde_json::{json, Value};
use skiff_client::events::EventType;
use skiff_semantics::quantity::Quantity;

use crate::scheduler::plugins::term_matches;
use crate::{api_message, Context, Error, Result};

/// The embedded provisioner's name (k3s calls its own `rancher.io/local-path`).
pub const PROVISIONER: &str = "skiff.dev/local-path";
/// The default class the API server creates.
pub const DEFAULT_CLASS: &str = "local-path";
/// Node annotation: the directory under which this node keeps provisioned volumes.
pub const STORAGE_ROOT_ANNOTATION: &str = "skiff.dev/storage-root";
/// Finalizer on provisioned volumes: removed by the node's agent after it deleted the directory.
pub const CLEANUP_FINALIZER: &str = "skiff.dev/local-path-cleanup";
pub const PVC_PROTECTION: &str = "kubernetes.io/pvc-protection";
pub const PV_PROTECTION: &str = "kubernetes.io/pv-protection";
pub const ANN_SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
pub const ANN_BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
pub const ANN_BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";
pub const ANN_PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
pub const ANN_STORAGE_PROVISIONER: &str = "volume.kubernetes.io/storage-provisioner";
pub const ANN_BETA_STORAGE_PROVISIONER: &str = "volume.beta.kubernetes.io/storage-provisioner";
const ANN_BETA_CLASS: &str = "volume.beta.kubernetes.io/storage-class";

const COMPONENT: &str = "persistentvolume-controller";
const PROVISIONER_COMPONENT: &str = "skiff.dev/local-path_skiff";
const RESYNC: Duration = Duration::from_secs(15);

/// Runs the controller until the process stops.
pub async fn run(ctx: Arc<Context>) -> Result<()> {
    let client = ctx.client.clone();
    let pvs = watcher(
        Api::<PersistentVolume>::all(client.clone()),
        watcher::Config::default(),
    )
    .map(|e| e.map(|_| ()))
    .boxed();
    let pvcs = watcher(
        Api::<PersistentVolumeClaim>::all(client.clone()),
        watcher::Config::default(),
    )
    .map(|e| e.map(|_| ()))
    .boxed();
    let classes = watcher(
        Api::<StorageClass>::all(client.clone()),
        watcher::Config::default(),
    )
    .map(|e| e.map(|_| ()))
    .boxed();
    // Only pods that use claims matter (protection, and nothing else here).
    let pods = watcher(Api::<Pod>::all(client.clone()), watcher::Config::default())
        .touched_objects()
        .filter_map(|r| async move {
            match r {
                Ok(p)
                    if claims_of(&p).next().is_none()
                        && p.metadata.deletion_timestamp.is_none() =>
                {
                    None
                }
                Ok(_) => Some(Ok(())),
                Err(e) => Some(Err(e)),
            }
        })
        .boxed();
    let mut events = futures::stream::select_all([pvs, pvcs, classes, pods]);
    let mut tick = tokio::time::interval(RESYNC);
    loop {
        tokio::select! {
            event = events.next() => match event {
                Some(Ok(())) => {
                    while let Some(Some(Ok(()))) = events.next().now_or_never() {}
                    pass(&ctx).await?;
                }
                Some(Err(e)) => {
                    tracing::debug!("persistentvolume watch: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                None => return Err(Error::WatchEnded("persistentvolume")),
            },
            _ = tick.tick() => pass(&ctx).await?,
        }
    }
}

/// The claim names a pod's volumes use.
pub fn claims_of(pod: &Pod) -> impl Iterator<Item = &str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|v| v.persistent_volume_claim.as_ref())
        .map(|c| c.claim_name.as_str())
}

fn ann<'a>(meta: &'a kube::api::ObjectMeta, key: &str) -> Option<&'a str> {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

fn has_finalizer(meta: &kube::api::ObjectMeta, f: &str) -> bool {
    meta.finalizers
        .as_ref()
        .is_some_and(|l| l.iter().any(|x| x == f))
}

/// The class a claim asks for (`""` = no class), as upstream's `GetPersistentVolumeClaimClass`.
pub fn claim_class(pvc: &PersistentVolumeClaim) -> &str {
    ann(&pvc.metadata, ANN_BETA_CLASS)
        .or_else(|| {
            pvc.spec
                .as_ref()
                .and_then(|s| s.storage_class_name.as_deref())
        })
        .unwrap_or("")
}

/// The class a volume belongs to.
pub fn volume_class(pv: &PersistentVolume) -> &str {
    ann(&pv.metadata, ANN_BETA_CLASS)
        .or_else(|| {
            pv.spec
                .as_ref()
                .and_then(|s| s.storage_class_name.as_deref())
        })
        .unwrap_or("")
}

fn q(v: Option<&k8s_openapi::apimachinery::pkg::api::resource::Quantity>) -> Option<Quantity> {
    v.and_then(|v| Quantity::parse(&v.0).ok())
}

pub fn claim_request(pvc: &PersistentVolumeClaim) -> Option<Quantity> {
    q(pvc
        .spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage")))
}

fn volume_capacity(pv: &PersistentVolume) -> Option<Quantity> {
    q(pv.spec
        .as_ref()
        .and_then(|s| s.capacity.as_ref())
        .and_then(|c| c.get("storage")))
}

fn phase_of_pv(pv: &PersistentVolume) -> &str {
    pv.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn phase_of_pvc(pvc: &PersistentVolumeClaim) -> &str {
    pvc.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn name(meta: &kube::api::ObjectMeta) -> &str {
    meta.name.as_deref().unwrap_or("")
}

fn namespace(meta: &kube::api::ObjectMeta) -> &str {
    meta.namespace.as_deref().unwrap_or("")
}

/// Whether a volume's node affinity admits the node (no affinity admits every node).
pub fn volume_fits_node(pv: &PersistentVolume, node: &Node) -> bool {
    let Some(required) = pv
        .spec
        .as_ref()
        .and_then(|s| s.node_affinity.as_ref())
        .and_then(|a| a.required.as_ref())
    else {
        return true;
    };
    required
        .node_selector_terms
        .iter()
        .any(|t| term_matches(t, node))
}

fn claim_ref_is(pv: &PersistentVolume, pvc: &PersistentVolumeClaim) -> Option<bool> {
    let r = pv.spec.as_ref()?.claim_ref.as_ref()?;
    let same_name = r.name.as_deref() == pvc.metadata.name.as_deref()
        && r.namespace.as_deref() == pvc.metadata.namespace.as_deref();
    let uid_ok = r.uid.as_deref().is_none_or(|u| u.is_empty())
        || r.uid.as_deref() == pvc.metadata.uid.as_deref();
    Some(same_name && uid_ok)
}

/// Upstream's `findMatchingVolume`: a volume pre-bound to the claim wins; otherwise the smallest
/// unbound volume of the claim's class whose modes, volume mode, capacity and labels fit (and,
/// with `node`, whose node affinity admits that node).
pub fn find_match<'a>(
    pvc: &PersistentVolumeClaim,
    pvs: impl IntoIterator<Item = &'a PersistentVolume>,
    taken: &HashSet<String>,
    node: Option<&Node>,
) -> Option<&'a PersistentVolume> {
    let spec = pvc.spec.as_ref()?;
    let request = claim_request(pvc)?;
    let class = claim_class(pvc);
    let modes: Vec<&str> = spec
        .access_modes
        .iter()
        .flatten()
        .map(String::as_str)
        .collect();
    let claim_mode = spec.volume_mode.as_deref().unwrap_or("Filesystem");
    let labels = BTreeMap::new();
    let mut best: Option<(&PersistentVolume, Quantity)> = None;
    for pv in pvs {
        let pv_name = name(&pv.metadata);
        let Some(pv_spec) = pv.spec.as_ref() else {
            continue;
        };
        if pv.metadata.deletion_timestamp.is_some() || taken.contains(pv_name) {
            continue;
        }
        if !matches!(phase_of_pv(pv), "Available" | "Pending" | "") {
            continue;
        }
        let prebound = claim_ref_is(pv, pvc);
        if prebound == Some(false) {
            continue;
        }
        if spec
            .volume_name
            .as_deref()
            .is_some_and(|v| !v.is_empty() && v != pv_name)
        {
            continue;
        }
        let Some(cap) = volume_capacity(pv) else {
            continue;
        };
        let pv_modes: Vec<&str> = pv_spec
            .access_modes
            .iter()
            .flatten()
            .map(String::as_str)
            .collect();
        let fits = volume_class(pv) == class
            && modes.iter().all(|m| pv_modes.contains(m))
            && pv_spec.volume_mode.as_deref().unwrap_or("Filesystem") == claim_mode
            && cap >= request
            && node.is_none_or(|n| volume_fits_node(pv, n))
            && spec.selector.as_ref().is_none_or(|sel| {
                let l = pv.metadata.labels.as_ref().unwrap_or(&labels);
                skiff_semantics::labels::label_selector_matches(sel, l)
            });
        if !fits {
            continue;
        }
        if prebound == Some(true) {
            return Some(pv);
        }
        if best.as_ref().is_none_or(|(_, c)| cap < *c) {
            best = Some((pv, cap));
        }
    }
    best.map(|(pv, _)| pv)
}

fn claim_ref(pvc: &PersistentVolumeClaim) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("PersistentVolumeClaim".into()),
        namespace: pvc.metadata.namespace.clone(),
        name: pvc.metadata.name.clone(),
        uid: pvc.metadata.uid.clone(),
        resource_version: pvc.metadata.resource_version.clone(),
        ..Default::default()
    }
}

fn pv_ref(pv: &PersistentVolume) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("PersistentVolume".into()),
        name: pv.metadata.name.clone(),
        uid: pv.metadata.uid.clone(),
        resource_version: pv.metadata.resource_version.clone(),
        ..Default::default()
    }
}

/// Everything one pass reads.
struct World {
    pvs: BTreeMap<String, PersistentVolume>,
    pvcs: Vec<PersistentVolumeClaim>,
    classes: BTreeMap<String, StorageClass>,
    pods: Vec<Pod>,
    nodes: BTreeMap<String, Node>,
}

async fn pass(ctx: &Context) -> Result<()> {
    let c = &ctx.client;
    let lp = ListParams::default();
    let world = World {
        pvs: Api::<PersistentVolume>::all(c.clone())
            .list(&lp)
            .await?
            .items
            .into_iter()
            .map(|p| (name(&p.metadata).to_string(), p))
            .collect(),
        pvcs: Api::<PersistentVolumeClaim>::all(c.clone())
            .list(&lp)
            .await?
            .items,
        classes: Api::<StorageClass>::all(c.clone())
            .list(&lp)
            .await?
            .items
            .into_iter()
            .map(|s| (name(&s.metadata).to_string(), s))
            .collect(),
        pods: Api::<Pod>::all(c.clone()).list(&lp).await?.items,
        nodes: Api::<Node>::all(c.clone())
            .list(&lp)
            .await?
            .items
            .into_iter()
            .map(|n| (name(&n.metadata).to_string(), n))
            .collect(),
    };
    let mut taken = HashSet::new();
    for pvc in &world.pvcs {
        if let Err(e) = sync_claim(ctx, &world, pvc, &mut taken).await {
            tracing::debug!(claim = name(&pvc.metadata), "claim sync: {e}");
        }
    }
    for pv in world.pvs.values() {
        if let Err(e) = sync_volume(ctx, &world, pv).await {
            tracing::debug!(volume = name(&pv.metadata), "volume sync: {e}");
        }
    }
    Ok(())
}

/// Whether a pod still counts as using its claims (upstream: not yet terminated).
fn pod_uses(pod: &Pod, ns: &str, claim: &str) -> bool {
    let done = matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    );
    !done && namespace(&pod.metadata) == ns && claims_of(pod).any(|c| c == claim)
}

/// Removes one finalizer (the list is replaced; the resourceVersion guards against a race).
fn without_finalizer(meta: &kube::api::ObjectMeta, f: &str) -> Value {
    let rest: Vec<&String> = meta
        .finalizers
        .iter()
        .flatten()
        .filter(|x| *x != f)
        .collect();
    json!({"metadata": {"finalizers": rest, "resourceVersion": meta.resource_version}})
}

async fn sync_claim(
    ctx: &Context,
    w: &World,
    pvc: &PersistentVolumeClaim,
    taken: &mut HashSet<String>,
) -> Result<()> {
    let ns = namespace(&pvc.metadata);
    let claim = name(&pvc.metadata);
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), ns);
    if pvc.metadata.deletion_timestamp.is_some() {
        if has_finalizer(&pvc.metadata, PVC_PROTECTION)
            && !w.pods.iter().any(|p| pod_uses(p, ns, claim))
        {
            let patch = without_finalizer(&pvc.metadata, PVC_PROTECTION);
            api.patch(claim, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
        }
        return Ok(());
    }
    let volume_name = pvc
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .unwrap_or("");
    if !volume_name.is_empty() {
        taken.insert(volume_name.to_string());
        let Some(pv) = w.pvs.get(volume_name) else {
            if phase_of_pvc(pvc) == "Bound" {
                set_claim_phase(ctx, pvc, "Lost").await?;
                event(
                    ctx,
                    &claim_ref(pvc),
                    EventType::Warning,
                    "ClaimLost",
                    "Bound claim has lost its PersistentVolume. Data on the volume is lost!",
                )
                .await;
            }
            return Ok(());
        };
        match claim_ref_is(pv, pvc) {
            None | Some(true) => {
                bind(ctx, pvc, pv).await?;
                expand(ctx, pvc, pv).await
            }
            Some(false) => {
                if phase_of_pvc(pvc) == "Bound" {
                    set_claim_phase(ctx, pvc, "Lost").await?;
                    event(
                        ctx,
                        &claim_ref(pvc),
                        EventType::Warning,
                        "ClaimMisbound",
                        "Two claims are bound to the same volume, this one is bound incorrectly",
                    )
                    .await;
                }
                Ok(())
            }
        }
    } else {
        bind_unbound(ctx, w, pvc, taken).await
    }
}

async fn bind_unbound(
    ctx: &Context,
    w: &World,
    pvc: &PersistentVolumeClaim,
    taken: &mut HashSet<String>,
) -> Result<()> {
    let class_name = claim_class(pvc);
    let class = w.classes.get(class_name);
    let delayed =
        class.and_then(|c| c.volume_binding_mode.as_deref()) == Some("WaitForFirstConsumer");
    let selected = ann(&pvc.metadata, ANN_SELECTED_NODE);
    let node = selected.and_then(|n| w.nodes.get(n));
    if delayed && selected.is_none() {
        event(
            ctx,
            &claim_ref(pvc),
            EventType::Normal,
            "WaitForFirstConsumer",
            "waiting for first consumer to be created before binding",
        )
        .await;
        return Ok(());
    }
    if let Some(pv) = find_match(pvc, w.pvs.values(), taken, node) {
        taken.insert(name(&pv.metadata).to_string());
        return bind(ctx, pvc, pv).await;
    }
    let provisioner = class.map(|c| c.provisioner.as_str()).unwrap_or("");
    match (class, provisioner) {
        (Some(class), PROVISIONER) => {
            let node = match node {
                Some(n) => Some(n),
                // Immediate binding: any node that publishes a storage root.
                None if !delayed => w.nodes.values().find(|n| storage_root(n).is_some()),
                None => None,
            };
            match node {
                Some(node) => provision(ctx, pvc, class, node).await,
                None => {
                    let msg = match selected {
                        Some(n) => format!("failed to provision volume with StorageClass \"{class_name}\": node \"{n}\" not found"),
                        None => format!("failed to provision volume with StorageClass \"{class_name}\": no node publishes a storage root"),
                    };
                    event(
                        ctx,
                        &claim_ref(pvc),
                        EventType::Warning,
                        "ProvisioningFailed",
                        &msg,
                    )
                    .await;
                    Ok(())
                }
            }
        }
        (Some(_), p) if !p.is_empty() && p != "kubernetes.io/no-provisioner" => {
            if ann(&pvc.metadata, ANN_STORAGE_PROVISIONER) != Some(p) {
                let patch = json!({"metadata": {"annotations": {
                    ANN_STORAGE_PROVISIONER: p, ANN_BETA_STORAGE_PROVISIONER: p}}});
                Api::<PersistentVolumeClaim>::namespaced(
                    ctx.client.clone(),
                    namespace(&pvc.metadata),
                )
                .patch(
                    name(&pvc.metadata),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await?;
            }
            event(ctx, &claim_ref(pvc), EventType::Normal, "ExternalProvisioning",
                &format!("Waiting for a volume to be created either by the external provisioner '{p}' or manually by the system administrator. If volume creation is delayed, please verify that the provisioner is running and correctly registered.")).await;
            Ok(())
        }
        _ => {
            let msg = if class_name.is_empty() {
                "no persistent volumes available for this claim and no storage class is set"
                    .to_string()
            } else if class.is_none() {
                format!("storageclass.storage.k8s.io \"{class_name}\" not found")
            } else {
                format!("no persistent volumes available for this claim and storage class \"{class_name}\" has no provisioner")
            };
            event(
                ctx,
                &claim_ref(pvc),
                EventType::Normal,
                "FailedBinding",
                &msg,
            )
            .await;
            Ok(())
        }
    }
}

pub fn storage_root(node: &Node) -> Option<&str> {
    ann(&node.metadata, STORAGE_ROOT_ANNOTATION).filter(|r| r.starts_with('/'))
}

/// The directory of a provisioned volume under a node's storage root.
pub fn volume_dir(root: &str, pvc: &PersistentVolumeClaim) -> String {
    format!(
        "{}/pvc-{}_{}_{}",
        root.trim_end_matches('/'),
        pvc.metadata.uid.as_deref().unwrap_or(""),
        namespace(&pvc.metadata),
        name(&pvc.metadata)
    )
}

async fn provision(
    ctx: &Context,
    pvc: &PersistentVolumeClaim,
    class: &StorageClass,
    node: &Node,
) -> Result<()> {
    let Some(root) = storage_root(node) else {
        let msg = format!(
            "failed to provision volume with StorageClass \"{}\": node \"{}\" has no storage root",
            name(&class.metadata),
            name(&node.metadata)
        );
        event(
            ctx,
            &claim_ref(pvc),
            EventType::Warning,
            "ProvisioningFailed",
            &msg,
        )
        .await;
        return Ok(());
    };
    let uid = pvc.metadata.uid.as_deref().unwrap_or("");
    if uid.is_empty() {
        return Ok(());
    }
    let Some(spec) = pvc.spec.as_ref() else {
        return Ok(());
    };
    let node_name = name(&node.metadata);
    let hostname = node
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("kubernetes.io/hostname"))
        .map_or(node_name, String::as_str);
    let pv_name = format!("pvc-{uid}");
    let request = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .map(|q| q.0.clone())
        .unwrap_or_default();
    let pv = json!({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {
            "name": pv_name,
            "annotations": {ANN_PROVISIONED_BY: PROVISIONER},
            "finalizers": [CLEANUP_FINALIZER],
        },
        "spec": {
            "capacity": {"storage": request},
            "accessModes": spec.access_modes,
            "persistentVolumeReclaimPolicy": class.reclaim_policy.as_deref().unwrap_or("Delete"),
            "storageClassName": name(&class.metadata),
            "volumeMode": spec.volume_mode.as_deref().unwrap_or("Filesystem"),
            "hostPath": {"path": volume_dir(root, pvc), "type": "DirectoryOrCreate"},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": [hostname]}]}]}},
            "claimRef": claim_ref(pvc),
        },
    });
    let pv: PersistentVolume =
        serde_json::from_value(pv).map_err(|e| Error::Other(e.to_string()))?;
    let api: Api<PersistentVolume> = Api::all(ctx.client.clone());
    match api.create(&PostParams::default(), &pv).await {
        Ok(_) => {
            event(
                ctx,
                &claim_ref(pvc),
                EventType::Normal,
                "ProvisioningSucceeded",
                &format!("Successfully provisioned volume {pv_name}"),
            )
            .await;
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => {
            event(
                ctx,
                &claim_ref(pvc),
                EventType::Warning,
                "ProvisioningFailed",
                &format!(
                    "failed to provision volume with StorageClass \"{}\": {}",
                    name(&class.metadata),
                    api_message(&e)
                ),
            )
            .await;
            Err(e.into())
        }
    }
}

/// The writes that bind a claim and a volume (each skipped when already done): the volume's
/// claimRef, the volume's phase, the claim's volumeName and annotations, the claim's status.
async fn bind(ctx: &Context, pvc: &PersistentVolumeClaim, pv: &PersistentVolume) -> Result<()> {
    let pv_api: Api<PersistentVolume> = Api::all(ctx.client.clone());
    let pv_name = name(&pv.metadata);
    let uid_bound = pv
        .spec
        .as_ref()
        .and_then(|s| s.claim_ref.as_ref())
        .is_some_and(|r| r.uid.is_some() && r.uid == pvc.metadata.uid);
    if !uid_bound {
        let mut patch = json!({
            "metadata": {"resourceVersion": pv.metadata.resource_version},
            "spec": {"claimRef": claim_ref(pvc)},
        });
        if pv
            .spec
            .as_ref()
            .and_then(|s| s.claim_ref.as_ref())
            .is_none()
        {
            patch["metadata"]["annotations"] = json!({ANN_BOUND_BY_CONTROLLER: "yes"});
        }
        pv_api
            .patch(pv_name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }
    if phase_of_pv(pv) != "Bound" {
        let patch = json!({"status": {"phase": "Bound"}});
        pv_api
            .patch_status(pv_name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }
    let api: Api<PersistentVolumeClaim> =
        Api::namespaced(ctx.client.clone(), namespace(&pvc.metadata));
    let claim = name(&pvc.metadata);
    let volume_name = pvc.spec.as_ref().and_then(|s| s.volume_name.as_deref());
    if volume_name.is_none_or(str::is_empty) {
        let patch = json!({
            "metadata": {"resourceVersion": pvc.metadata.resource_version, "annotations": {
                ANN_BIND_COMPLETED: "yes", ANN_BOUND_BY_CONTROLLER: "yes"}},
            "spec": {"volumeName": pv_name},
        });
        api.patch(claim, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    } else if ann(&pvc.metadata, ANN_BIND_COMPLETED).is_none() {
        let patch = json!({"metadata": {"annotations": {ANN_BIND_COMPLETED: "yes"}}});
        api.patch(claim, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }
    if phase_of_pvc(pvc) != "Bound" {
        let pv_spec = pv.spec.as_ref();
        let patch = json!({"status": {
            "phase": "Bound",
            "accessModes": pv_spec.and_then(|s| s.access_modes.as_ref()),
            "capacity": pv_spec.and_then(|s| s.capacity.as_ref()),
        }});
        api.patch_status(claim, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }
    Ok(())
}

/// A bound claim asking for more than its status capacity: a local-path volume has no size
/// limit, so the volume's capacity and then the claim's status grow to the request.
async fn expand(ctx: &Context, pvc: &PersistentVolumeClaim, pv: &PersistentVolume) -> Result<()> {
    if phase_of_pvc(pvc) != "Bound" {
        return Ok(());
    }
    let Some(request) = claim_request(pvc) else {
        return Ok(());
    };
    let status_cap = q(pvc
        .status
        .as_ref()
        .and_then(|s| s.capacity.as_ref())
        .and_then(|c| c.get("storage")));
    if status_cap.is_some_and(|c| c >= request) {
        return Ok(());
    }
    let raw = pvc
        .spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .map(|q| q.0.clone())
        .unwrap_or_default();
    let claim = name(&pvc.metadata);
    let api: Api<PersistentVolumeClaim> =
        Api::namespaced(ctx.client.clone(), namespace(&pvc.metadata));
    if ann(&pv.metadata, ANN_PROVISIONED_BY) != Some(PROVISIONER) {
        // Static volumes have no resizer here; upstream leaves the claim waiting likewise.
        return Ok(());
    }
    if volume_capacity(pv).is_none_or(|c| c < request) {
        let patch = json!({"spec": {"capacity": {"storage": raw}}});
        Api::<PersistentVolume>::all(ctx.client.clone())
            .patch(
                name(&pv.metadata),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
    }
    // Done in one step: no Resizing/FileSystemResizePending conditions remain, as upstream
    // after a completed expansion.
    let patch = json!({"status": {
        "capacity": {"storage": raw},
        "allocatedResources": {"storage": raw},
        "allocatedResourceStatuses": null,
        "conditions": null,
    }});
    api.patch_status(claim, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    event(
        ctx,
        &claim_ref(pvc),
        EventType::Normal,
        "VolumeResizeSuccessful",
        "MountVolume.NodeExpandVolume succeeded for volume",
    )
    .await;
    Ok(())
}

async fn set_claim_phase(ctx: &Context, pvc: &PersistentVolumeClaim, phase: &str) -> Result<()> {
    let patch = json!({"status": {"phase": phase}});
    Api::<PersistentVolumeClaim>::namespaced(ctx.client.clone(), namespace(&pvc.metadata))
        .patch_status(
            name(&pvc.metadata),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    Ok(())
}

async fn set_volume_phase(
    ctx: &Context,
    pv: &PersistentVolume,
    phase: &str,
    message: Option<&str>,
) -> Result<()> {
    let mut status = json!({"phase": phase});
    if let Some(m) = message {
        status["message"] = json!(m);
    }
    let patch = json!({ "status": status });
    Api::<PersistentVolume>::all(ctx.client.clone())
        .patch_status(
            name(&pv.metadata),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await?;
    Ok(())
}

async fn sync_volume(ctx: &Context, w: &World, pv: &PersistentVolume) -> Result<()> {
    let api: Api<PersistentVolume> = Api::all(ctx.client.clone());
    let pv_name = name(&pv.metadata);
    let claim_ref = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
    let claim = claim_ref.and_then(|r| {
        w.pvcs.iter().find(|c| {
            c.metadata.name == r.name
                && c.metadata.namespace == r.namespace
                && (r.uid.as_deref().is_none_or(str::is_empty) || c.metadata.uid == r.uid)
        })
    });
    if pv.metadata.deletion_timestamp.is_some() {
        let bound = phase_of_pv(pv) == "Bound" && claim.is_some();
        if has_finalizer(&pv.metadata, PV_PROTECTION) && !bound {
            let patch = without_finalizer(&pv.metadata, PV_PROTECTION);
            api.patch(pv_name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
        }
        return Ok(());
    }
    let Some(r) = claim_ref else {
        if phase_of_pv(pv) != "Available" {
            set_volume_phase(ctx, pv, "Available", None).await?;
        }
        return Ok(());
    };
    if r.uid.as_deref().is_none_or(str::is_empty) {
        // Pre-bound to a claim by name: Available until the claim binds.
        if phase_of_pv(pv) != "Available" {
            set_volume_phase(ctx, pv, "Available", None).await?;
        }
        return Ok(());
    }
    if let Some(c) = claim {
        let claim_volume = c.spec.as_ref().and_then(|s| s.volume_name.as_deref());
        match claim_volume {
            Some(v) if v == pv_name && phase_of_pv(pv) != "Bound" => {
                set_volume_phase(ctx, pv, "Bound", None).await?;
            }
            // The claim went to another volume: undo our half-binding.
            Some(v)
                if v != pv_name
                    && !v.is_empty()
                    && ann(&pv.metadata, ANN_BOUND_BY_CONTROLLER) == Some("yes") =>
            {
                let patch = json!({"metadata": {"resourceVersion": pv.metadata.resource_version},
                    "spec": {"claimRef": null}});
                api.patch(pv_name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
            }
            _ => {}
        }
        return Ok(());
    }
    // The claim is gone: Released, then reclaimed.
    let phase = phase_of_pv(pv);
    if phase == "Failed" {
        return Ok(());
    }
    if phase != "Released" {
        set_volume_phase(ctx, pv, "Released", None).await?;
    }
    let policy = pv
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
        .unwrap_or("Retain");
    match policy {
        "Delete" if ann(&pv.metadata, ANN_PROVISIONED_BY) == Some(PROVISIONER) => {
            // The node's agent removes the directory, then the cleanup finalizer.
            match api.delete(pv_name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
        "Delete" => {
            let msg = format!("error getting deleter volume plugin for volume \"{pv_name}\": no deletable volume plugin matched");
            set_volume_phase(ctx, pv, "Failed", Some(&msg)).await?;
            event(
                ctx,
                &pv_ref(pv),
                EventType::Warning,
                "VolumeFailedDelete",
                &msg,
            )
            .await;
        }
        "Recycle" => {
            let msg = format!("error getting recycler volume plugin for volume \"{pv_name}\": no recyclable volume plugin matched");
            set_volume_phase(ctx, pv, "Failed", Some(&msg)).await?;
            event(
                ctx,
                &pv_ref(pv),
                EventType::Warning,
                "VolumeFailedRecycle",
                &msg,
            )
            .await;
        }
        _ => {}
    }
    Ok(())
}

async fn event(ctx: &Context, obj: &ObjectReference, kind: EventType, reason: &str, msg: &str) {
    let component = match reason {
        "ProvisioningSucceeded" | "ProvisioningFailed" => PROVISIONER_COMPONENT,
        _ => COMPONENT,
    };
    ctx.events.publish(component, obj, kind, reason, msg).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pv(name: &str, cap: &str, class: &str, modes: &[&str]) -> PersistentVolume {
        serde_json::from_value(
            json!({"metadata": {"name": name, "labels": {"tier": "fast"}},
            "spec": {"capacity": {"storage": cap}, "accessModes": modes, "storageClassName": class,
                     "hostPath": {"path": "/tmp"}},
            "status": {"phase": "Available"}}),
        )
        .unwrap()
    }

    fn pvc(req: &str, class: &str) -> PersistentVolumeClaim {
        serde_json::from_value(
            json!({"metadata": {"name": "c", "namespace": "d", "uid": "u1"},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": class,
                     "resources": {"requests": {"storage": req}}}}),
        )
        .unwrap()
    }

    #[test]
    fn smallest_fit_wins_and_mismatches_are_skipped() {
        let pvs = [
            pv("big", "10Gi", "manual", &["ReadWriteOnce"]),
            pv("small", "2Gi", "manual", &["ReadWriteOnce", "ReadOnlyMany"]),
            pv("tiny", "500Mi", "manual", &["ReadWriteOnce"]),
            pv("rox", "1Gi", "manual", &["ReadOnlyMany"]),
            pv("other", "1Gi", "fast", &["ReadWriteOnce"]),
        ];
        let none = HashSet::new();
        let got = find_match(&pvc("1Gi", "manual"), &pvs, &none, None).unwrap();
        assert_eq!(got.metadata.name.as_deref(), Some("small"));
        let taken: HashSet<String> = ["small".to_string()].into();
        let got = find_match(&pvc("1Gi", "manual"), &pvs, &taken, None).unwrap();
        assert_eq!(got.metadata.name.as_deref(), Some("big"));
        assert!(find_match(&pvc("20Gi", "manual"), &pvs, &none, None).is_none());
        let mut sel = pvc("1Gi", "manual");
        sel.spec.as_mut().unwrap().selector =
            Some(serde_json::from_value(json!({"matchLabels": {"tier": "slow"}})).unwrap());
        assert!(find_match(&sel, &pvs, &none, None).is_none());
        let mut named = pvc("1Gi", "manual");
        named.spec.as_mut().unwrap().volume_name = Some("big".into());
        assert_eq!(
            find_match(&named, &pvs, &none, None)
                .unwrap()
                .metadata
                .name
                .as_deref(),
            Some("big")
        );
    }

    #[test]
    fn prebound_volume_wins_and_foreign_claim_ref_is_skipped() {
        let mut pre = pv("pre", "10Gi", "manual", &["ReadWriteOnce"]);
        pre.spec.as_mut().unwrap().claim_ref = Some(ObjectReference {
            name: Some("c".into()),
            namespace: Some("d".into()),
            ..Default::default()
        });
        let mut foreign = pv("foreign", "1Gi", "manual", &["ReadWriteOnce"]);
        foreign.spec.as_mut().unwrap().claim_ref = Some(ObjectReference {
            name: Some("x".into()),
            namespace: Some("d".into()),
            ..Default::default()
        });
        let plain = pv("plain", "1Gi", "manual", &["ReadWriteOnce"]);
        let pvs = [plain, foreign, pre];
        let got = find_match(&pvc("1Gi", "manual"), &pvs, &HashSet::new(), None).unwrap();
        assert_eq!(got.metadata.name.as_deref(), Some("pre"));
    }

    #[test]
    fn directory_names_follow_the_claim() {
        let c = pvc("1Gi", "local-path");
        assert_eq!(
            volume_dir("/var/lib/skiff/storage/", &c),
            "/var/lib/skiff/storage/pvc-u1_d_c"
        );
    }
}
