//! Volume binding (upstream's VolumeBinding plugin, reduced): the scheduler keeps reflector
//! caches of claims, volumes and classes, and for a pod that uses claims
//!
//! * PreFilter: a missing claim (`persistentvolumeclaim "x" not found`), a deleting claim, or an
//!   unbound claim of an `Immediate` class (`pod has unbound immediate PersistentVolumeClaims`)
//!   make the pod unschedulable on every node;
//! * Filter: a node must satisfy the node affinity of every bound volume (`node(s) had volume
//!   node affinity conflict`), and for an unbound `WaitForFirstConsumer` claim of a class
//!   without a provisioner, have an available matching volume (`node(s) didn't find available
//!   persistent volumes to bind`);
//! * PreBind: unbound `WaitForFirstConsumer` claims are annotated
//!   `volume.kubernetes.io/selected-node` before the pod is bound; the PV controller then binds
//!   or provisions on that node. Unlike upstream, the pod is bound without waiting for the claim
//!   to be Bound: the node's agent waits for it (the pod shows ContainerCreating meanwhile).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use serde_json::json;

use super::plugins::Rejection;
use super::Shared;
use crate::persistentvolume::{
    claim_class, claims_of, find_match, volume_fits_node, ANN_SELECTED_NODE,
};

/// The scheduler's caches of storage objects.
#[derive(Clone)]
pub(super) struct Stores {
    claims: Store<PersistentVolumeClaim>,
    volumes: Store<PersistentVolume>,
    classes: Store<StorageClass>,
}

/// Starts the three reflectors; any change re-queues unschedulable pods.
pub(super) fn start(
    client: &kube::Client,
    shared: Arc<Shared>,
) -> (Stores, Vec<tokio::task::JoinHandle<()>>) {
    fn spawn<K>(api: Api<K>, shared: Arc<Shared>) -> (Store<K>, tokio::task::JoinHandle<()>)
    where
        K: kube::Resource<DynamicType = ()>
            + Clone
            + std::fmt::Debug
            + serde::de::DeserializeOwned
            + Send
            + Sync
            + 'static,
    {
        let (reader, writer) = reflector::store();
        let stream = reflector::reflector(writer, watcher(api, watcher::Config::default()))
            .default_backoff();
        let task = tokio::spawn(async move {
            let mut stream = stream.boxed();
            while let Some(ev) = stream.next().await {
                if let Err(err) = ev {
                    tracing::debug!(%err, "scheduler: storage watch failed; retrying");
                    continue;
                }
                shared.lock().flush_unschedulable();
                shared.notify.notify_one();
            }
        });
        (reader, task)
    }
    let (claims, a) = spawn(Api::all(client.clone()), shared.clone());
    let (volumes, b) = spawn(Api::all(client.clone()), shared.clone());
    let (classes, c) = spawn(Api::all(client.clone()), shared);
    (
        Stores {
            claims,
            volumes,
            classes,
        },
        vec![a, b, c],
    )
}

impl Stores {
    /// Waits (bounded) for the first lists, so early pods are not judged on empty caches.
    pub(super) async fn wait_ready(&self) {
        let all = async {
            let _ = self.claims.wait_until_ready().await;
            let _ = self.volumes.wait_until_ready().await;
            let _ = self.classes.wait_until_ready().await;
        };
        let _ = tokio::time::timeout(Duration::from_secs(10), all).await;
    }
}

/// What the node filter and PreBind need about one pod's claims.
#[derive(Default)]
pub(super) struct PodVolumes {
    /// Volumes the pod's bound claims use.
    bound: Vec<Arc<PersistentVolume>>,
    /// Unbound claims of WaitForFirstConsumer classes, and whether their class provisions.
    delayed: Vec<(Arc<PersistentVolumeClaim>, bool)>,
}

impl PodVolumes {
    /// The claims PreBind annotates with the chosen node: (namespace, name).
    pub(super) fn to_select(&self) -> Vec<(String, String)> {
        self.delayed
            .iter()
            .filter(|(c, _)| {
                c.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(ANN_SELECTED_NODE))
                    .is_none()
            })
            .map(|(c, _)| {
                (
                    c.metadata.namespace.clone().unwrap_or_default(),
                    c.metadata.name.clone().unwrap_or_default(),
                )
            })
            .collect()
    }
}

/// PreFilter: Err is the message that makes the pod unschedulable everywhere.
pub(super) fn pre_filter(pod: &Pod, stores: &Stores) -> Result<PodVolumes, String> {
    let mut out = PodVolumes::default();
    let ns = pod.metadata.namespace.as_deref().unwrap_or("");
    for claim in claims_of(pod) {
        let Some(pvc) = stores.claims.get(&ObjectRef::new(claim).within(ns)) else {
            return Err(format!("persistentvolumeclaim \"{claim}\" not found"));
        };
        if pvc.metadata.deletion_timestamp.is_some() {
            return Err(format!(
                "persistentvolumeclaim \"{claim}\" is being deleted"
            ));
        }
        let volume = pvc
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.as_deref())
            .unwrap_or("");
        if !volume.is_empty() {
            match stores.volumes.get(&ObjectRef::new(volume)) {
                Some(pv) => out.bound.push(pv),
                None => return Err("pvc(s) bound to non-existent pv(s)".into()),
            }
            continue;
        }
        let class = stores.classes.get(&ObjectRef::new(claim_class(&pvc)));
        let delayed = class
            .as_ref()
            .and_then(|c| c.volume_binding_mode.as_deref())
            == Some("WaitForFirstConsumer");
        if !delayed {
            return Err("pod has unbound immediate PersistentVolumeClaims".into());
        }
        let provisions = class.as_ref().is_some_and(|c| {
            !c.provisioner.is_empty() && c.provisioner != "kubernetes.io/no-provisioner"
        });
        out.delayed.push((pvc, provisions));
    }
    Ok(out)
}

/// Filter: whether the pod's volumes allow this node.
pub(super) fn filter(vols: &PodVolumes, stores: &Stores, node: &Node) -> Result<(), Rejection> {
    if vols.bound.iter().any(|pv| !volume_fits_node(pv, node)) {
        return Err(Rejection {
            reasons: vec!["node(s) had volume node affinity conflict".into()],
            resolvable: false,
        });
    }
    let mut taken = HashSet::new();
    for (pvc, provisions) in &vols.delayed {
        let all = stores.volumes.state();
        match find_match(pvc, all.iter().map(|p| p.as_ref()), &taken, Some(node)) {
            Some(pv) => {
                taken.insert(pv.metadata.name.clone().unwrap_or_default());
            }
            None if *provisions => {}
            None => {
                return Err(Rejection {
                    reasons: vec!["node(s) didn't find available persistent volumes to bind".into()],
                    resolvable: false,
                })
            }
        }
    }
    Ok(())
}

/// The FitError of a PreFilter rejection.
pub(super) fn pre_filter_error(num_nodes: usize, msg: &str) -> String {
    if num_nodes == 0 {
        return "no nodes available to schedule pods".into();
    }
    format!(
        "0/{num_nodes} nodes are available: {msg}. preemption: 0/{num_nodes} nodes are available: {num_nodes} Preemption is not helpful for scheduling."
    )
}

/// PreBind: annotates the pod's delayed claims with the node.
pub(super) async fn select_node(
    client: &kube::Client,
    claims: &[(String, String)],
    node: &str,
) -> Result<(), kube::Error> {
    for (ns, name) in claims {
        let patch = json!({"metadata": {"annotations": {ANN_SELECTED_NODE: node}}});
        Api::<PersistentVolumeClaim>::namespaced(client.clone(), ns)
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }
    Ok(())
}
