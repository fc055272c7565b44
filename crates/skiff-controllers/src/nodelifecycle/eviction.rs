//! Taint-based eviction (upstream's taint eviction controller): when a pod on a NoExecute-tainted
//! node must go, and how it is removed (DisruptionTarget condition, graceful delete, event).

use k8s_openapi::api::core::v1::{ObjectReference, Pod, Taint, Toleration};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::json;

use crate::scheduler::plugins::tolerates;
use crate::Context;
use skiff_client::events::EventType;

const COMPONENT: &str = "taint-eviction-controller";

/// When a pod has to leave a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    Now,
    At(jiff::Timestamp),
    Never,
}

/// Upstream's rule: a NoExecute taint no toleration matches evicts at once; otherwise the pod
/// may stay `min(tolerationSeconds)` of the matching tolerations (none set = forever), counted
/// from the taint's timeAdded. `taints` are the node's NoExecute taints with timeAdded filled in.
pub fn eviction_time(taints: &[Taint], tolerations: &[Toleration]) -> When {
    let mut when = When::Never;
    for taint in taints.iter().filter(|t| t.effect == "NoExecute") {
        let matching: Vec<&Toleration> =
            tolerations.iter().filter(|t| tolerates(t, taint)).collect();
        if matching.is_empty() {
            return When::Now;
        }
        let Some(secs) = matching.iter().filter_map(|t| t.toleration_seconds).min() else {
            continue;
        };
        let added = taint
            .time_added
            .as_ref()
            .map(|t| t.0)
            .unwrap_or_else(jiff::Timestamp::now);
        let at = added
            .checked_add(jiff::SignedDuration::from_secs(secs.max(0)))
            .unwrap_or(added);
        when = match when {
            When::At(prev) if prev <= at => When::At(prev),
            _ => When::At(at),
        };
    }
    when
}

pub fn pod_ref(pod: &Pod) -> ObjectReference {
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

/// Marks the pod as a disruption target and deletes it gracefully; true when the delete was
/// accepted (or the pod is already gone).
pub async fn evict(ctx: &Context, pod: &Pod) -> bool {
    let (Some(ns), Some(name)) = (&pod.metadata.namespace, &pod.metadata.name) else {
        return false;
    };
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    tracing::info!(pod = %format!("{ns}/{name}"), "taint-based eviction");
    ctx.events
        .publish(
            COMPONENT,
            &pod_ref(pod),
            EventType::Normal,
            "TaintManagerEviction",
            &format!("Marking for deletion Pod {ns}/{name}"),
        )
        .await;
    let patch = json!({"status": {"conditions": [{
        "type": "DisruptionTarget", "status": "True", "reason": "DeletionByTaintManager",
        "message": "Taint manager: deleting due to NoExecute taint",
        "lastTransitionTime": jiff::Timestamp::now().to_string(),
    }]}});
    if let Err(err) = api
        .patch_status(name, &PatchParams::default(), &Patch::Strategic(&patch))
        .await
    {
        tracing::debug!(pod = %name, %err, "setting DisruptionTarget failed");
    }
    // Preconditioned on the uid: a pod recreated under the same name is not ours to delete.
    let dp = DeleteParams {
        preconditions: pod
            .metadata
            .uid
            .clone()
            .map(|uid| kube::api::Preconditions {
                uid: Some(uid),
                resource_version: None,
            }),
        ..Default::default()
    };
    match api.delete(name, &dp).await {
        Ok(_) => true,
        Err(kube::Error::Api(s)) if s.code == 404 => true,
        Err(err) => {
            tracing::warn!(pod = %name, %err, "taint-based eviction failed");
            false
        }
    }
}
