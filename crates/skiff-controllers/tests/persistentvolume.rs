//! PersistentVolume controller and scheduler volume binding against a real API server, every
//! controller and fake nodes: static binding and Retain, dynamic provisioning through the
//! default `local-path` class with WaitForFirstConsumer, reclaim Delete, protection finalizers,
//! expansion, and a pod whose claim is missing.

mod common;

use std::time::Duration;

use common::TestCluster;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(30);

fn pvc_api(c: &TestCluster) -> Api<PersistentVolumeClaim> {
    Api::namespaced(c.client.clone(), "default")
}

fn pv_api(c: &TestCluster) -> Api<PersistentVolume> {
    Api::all(c.client.clone())
}

async fn create_pvc(c: &TestCluster, body: Value) {
    let pvc: PersistentVolumeClaim = serde_json::from_value(body).expect("pvc");
    pvc_api(c)
        .create(&PostParams::default(), &pvc)
        .await
        .expect("create pvc");
}

async fn create_pv(c: &TestCluster, body: Value) {
    let pv: PersistentVolume = serde_json::from_value(body).expect("pv");
    pv_api(c)
        .create(&PostParams::default(), &pv)
        .await
        .expect("create pv");
}

async fn create_pod(c: &TestCluster, name: &str, claim: &str) {
    let pod: Pod = serde_json::from_value(json!({"metadata": {"name": name}, "spec": {
        "containers": [{"name": "c", "image": "web:v1"}],
        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]}}))
    .expect("pod");
    Api::<Pod>::namespaced(c.client.clone(), "default")
        .create(&PostParams::default(), &pod)
        .await
        .expect("create pod");
}

async fn claim_phase(c: &TestCluster, name: &str) -> String {
    pvc_api(c)
        .get(name)
        .await
        .ok()
        .and_then(|p| p.status)
        .and_then(|s| s.phase)
        .unwrap_or_default()
}

async fn volume_phase(c: &TestCluster, name: &str) -> String {
    pv_api(c)
        .get(name)
        .await
        .ok()
        .and_then(|p| p.status)
        .and_then(|s| s.phase)
        .unwrap_or_default()
}

fn ann(meta: &kube::api::ObjectMeta, k: &str) -> Option<String> {
    meta.annotations.as_ref().and_then(|a| a.get(k)).cloned()
}

#[tokio::test]
async fn static_binding_picks_the_smallest_fit_and_retain_keeps_the_volume() {
    let c = TestCluster::start().await;
    for (name, size) in [
        ("pv-big", "10Gi"),
        ("pv-small", "2Gi"),
        ("pv-tiny", "100Mi"),
    ] {
        create_pv(
            &c,
            json!({"metadata": {"name": name}, "spec": {
            "capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"],
            "storageClassName": "manual", "hostPath": {"path": format!("/tmp/{name}")}}}),
        )
        .await;
    }
    let pv = pv_api(&c).get("pv-big").await.expect("pv");
    assert_eq!(
        pv.spec
            .as_ref()
            .and_then(|s| s.persistent_volume_reclaim_policy.as_deref()),
        Some("Retain")
    );
    assert!(pv
        .metadata
        .finalizers
        .unwrap_or_default()
        .contains(&"kubernetes.io/pv-protection".to_string()));
    c.wait_for("volumes Available", WAIT, || async {
        volume_phase(&c, "pv-small").await == "Available"
    })
    .await;
    create_pvc(
        &c,
        json!({"metadata": {"name": "data"}, "spec": {
        "accessModes": ["ReadWriteOnce"], "storageClassName": "manual",
        "resources": {"requests": {"storage": "1Gi"}}}}),
    )
    .await;
    c.wait_for("claim Bound", WAIT, || async {
        claim_phase(&c, "data").await == "Bound"
    })
    .await;
    let pvc = pvc_api(&c).get("data").await.expect("pvc");
    assert_eq!(
        pvc.spec.as_ref().and_then(|s| s.volume_name.as_deref()),
        Some("pv-small")
    );
    assert_eq!(
        ann(&pvc.metadata, "pv.kubernetes.io/bind-completed").as_deref(),
        Some("yes")
    );
    assert_eq!(
        ann(&pvc.metadata, "pv.kubernetes.io/bound-by-controller").as_deref(),
        Some("yes")
    );
    let status = pvc.status.expect("status");
    assert_eq!(status.capacity.expect("capacity")["storage"].0, "2Gi");
    c.wait_for("volume Bound", WAIT, || async {
        volume_phase(&c, "pv-small").await == "Bound"
    })
    .await;
    let pv = pv_api(&c).get("pv-small").await.expect("pv");
    let claim_ref = pv.spec.and_then(|s| s.claim_ref).expect("claimRef");
    assert_eq!(claim_ref.name.as_deref(), Some("data"));
    assert_eq!(claim_ref.uid, pvc.metadata.uid);

    // Static volumes of a class without allowVolumeExpansion cannot grow.
    let grow = json!({"spec": {"resources": {"requests": {"storage": "3Gi"}}}});
    let err = pvc_api(&c)
        .patch("data", &PatchParams::default(), &Patch::Merge(&grow))
        .await
        .expect_err("resize refused");
    assert!(
        err.to_string()
            .contains("only dynamically provisioned pvc can be resized"),
        "{err}"
    );

    // Deleting the claim releases the volume; Retain keeps it Released.
    pvc_api(&c)
        .delete("data", &DeleteParams::default())
        .await
        .expect("delete");
    c.wait_for("volume Released", WAIT, || async {
        volume_phase(&c, "pv-small").await == "Released"
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(volume_phase(&c, "pv-small").await, "Released");
    // A Released volume is not bound again.
    create_pvc(
        &c,
        json!({"metadata": {"name": "again"}, "spec": {
        "accessModes": ["ReadWriteOnce"], "storageClassName": "manual",
        "resources": {"requests": {"storage": "1Gi"}}}}),
    )
    .await;
    c.wait_for("second claim Bound", WAIT, || async {
        claim_phase(&c, "again").await == "Bound"
    })
    .await;
    let again = pvc_api(&c).get("again").await.expect("pvc");
    assert_eq!(
        again.spec.and_then(|s| s.volume_name).as_deref(),
        Some("pv-big")
    );
}

#[tokio::test]
async fn wait_for_first_consumer_provisions_on_the_scheduled_node_and_delete_reclaims() {
    let c = TestCluster::start().await;
    let _n1 = c.add_node("n1").await;
    let patch =
        json!({"metadata": {"annotations": {"skiff.dev/storage-root": "/srv/skiff-storage"}}});
    Api::<Node>::all(c.client.clone())
        .patch("n1", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("annotate node");
    // No class named: the default class (local-path, created by the server) is filled in.
    create_pvc(
        &c,
        json!({"metadata": {"name": "data"}, "spec": {
        "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}),
    )
    .await;
    let pvc = pvc_api(&c).get("data").await.expect("pvc");
    assert_eq!(
        pvc.spec
            .as_ref()
            .and_then(|s| s.storage_class_name.as_deref()),
        Some("local-path")
    );
    assert!(pvc
        .metadata
        .finalizers
        .clone()
        .unwrap_or_default()
        .contains(&"kubernetes.io/pvc-protection".to_string()));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        claim_phase(&c, "data").await,
        "Pending",
        "waits for a consumer"
    );

    create_pod(&c, "app", "data").await;
    c.wait_for("claim Bound", WAIT, || async {
        claim_phase(&c, "data").await == "Bound"
    })
    .await;
    let pvc = pvc_api(&c).get("data").await.expect("pvc");
    assert_eq!(
        ann(&pvc.metadata, "volume.kubernetes.io/selected-node").as_deref(),
        Some("n1")
    );
    let uid = pvc.metadata.uid.clone().expect("uid");
    let pv_name = format!("pvc-{uid}");
    assert_eq!(
        pvc.spec.as_ref().and_then(|s| s.volume_name.clone()),
        Some(pv_name.clone())
    );
    let pv = pv_api(&c).get(&pv_name).await.expect("provisioned pv");
    let spec = pv.spec.clone().expect("spec");
    assert_eq!(
        spec.host_path.as_ref().map(|h| h.path.clone()),
        Some(format!("/srv/skiff-storage/pvc-{uid}_default_data"))
    );
    assert_eq!(
        spec.persistent_volume_reclaim_policy.as_deref(),
        Some("Delete")
    );
    let affinity = serde_json::to_value(&spec.node_affinity).expect("json");
    assert_eq!(
        affinity["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"],
        json!(["n1"])
    );
    assert_eq!(
        ann(&pv.metadata, "pv.kubernetes.io/provisioned-by").as_deref(),
        Some("skiff.dev/local-path")
    );
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    c.wait_for("pod bound to n1", WAIT, || async {
        pods.get("app")
            .await
            .ok()
            .and_then(|p| p.spec)
            .and_then(|s| s.node_name)
            .as_deref()
            == Some("n1")
    })
    .await;

    // Expansion: local-path grows at once.
    let grow = json!({"spec": {"resources": {"requests": {"storage": "2Gi"}}}});
    pvc_api(&c)
        .patch("data", &PatchParams::default(), &Patch::Merge(&grow))
        .await
        .expect("resize");
    c.wait_for("claim grown", WAIT, || async {
        pvc_api(&c)
            .get("data")
            .await
            .ok()
            .and_then(|p| p.status)
            .and_then(|s| s.capacity)
            .is_some_and(|cap| cap["storage"].0 == "2Gi")
    })
    .await;
    let pv = pv_api(&c).get(&pv_name).await.expect("pv");
    assert_eq!(
        pv.spec.and_then(|s| s.capacity).expect("cap")["storage"].0,
        "2Gi"
    );
    let shrink = json!({"spec": {"resources": {"requests": {"storage": "1Gi"}}}});
    let err = pvc_api(&c)
        .patch("data", &PatchParams::default(), &Patch::Merge(&shrink))
        .await
        .expect_err("no shrinking");
    assert!(
        err.to_string()
            .contains("field can not be less than previous value"),
        "{err}"
    );

    // Protection: the claim stays while the pod uses it.
    pvc_api(&c)
        .delete("data", &DeleteParams::default())
        .await
        .expect("delete");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pvc = pvc_api(&c).get("data").await.expect("claim still there");
    assert!(pvc.metadata.deletion_timestamp.is_some());
    pods.delete("app", &DeleteParams::default())
        .await
        .expect("delete pod");
    c.wait_for("claim gone", WAIT, || async {
        matches!(pvc_api(&c).get("data").await, Err(kube::Error::Api(s)) if s.code == 404)
    })
    .await;
    // Reclaim Delete: the volume is deleted, loses pv-protection (it is not Bound) and waits
    // for the node's cleanup finalizer.
    c.wait_for(
        "volume deleting, only the cleanup finalizer left",
        WAIT,
        || async {
            pv_api(&c).get(&pv_name).await.ok().is_some_and(|p| {
                p.metadata.deletion_timestamp.is_some()
                    && p.metadata.finalizers
                        == Some(vec!["skiff.dev/local-path-cleanup".to_string()])
            })
        },
    )
    .await;
    // What the agent does after removing the directory.
    let done = json!({"metadata": {"finalizers": []}});
    pv_api(&c)
        .patch(&pv_name, &PatchParams::default(), &Patch::Merge(&done))
        .await
        .expect("drop finalizer");
    c.wait_for("volume gone", WAIT, || async {
        matches!(pv_api(&c).get(&pv_name).await, Err(kube::Error::Api(s)) if s.code == 404)
    })
    .await;
}

#[tokio::test]
async fn a_pod_with_a_missing_claim_is_unschedulable() {
    let c = TestCluster::start().await;
    let _n1 = c.add_node("n1").await;
    create_pod(&c, "lonely", "nope").await;
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let want = "0/1 nodes are available: persistentvolumeclaim \"nope\" not found. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.";
    c.wait_for("PodScheduled=False", WAIT, || async {
        pods.get("lonely")
            .await
            .ok()
            .and_then(|p| p.status)
            .and_then(|s| s.conditions)
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| c.type_ == "PodScheduled" && c.message.as_deref() == Some(want))
            })
    })
    .await;
    // The claim appearing (and binding) makes it schedulable.
    create_pv(
        &c,
        json!({"metadata": {"name": "pv1"}, "spec": {
        "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
        "storageClassName": "", "hostPath": {"path": "/tmp/pv1"}}}),
    )
    .await;
    create_pvc(
        &c,
        json!({"metadata": {"name": "nope"}, "spec": {
        "accessModes": ["ReadWriteOnce"], "storageClassName": "",
        "resources": {"requests": {"storage": "1Gi"}}}}),
    )
    .await;
    c.wait_for("pod bound", WAIT, || async {
        pods.get("lonely")
            .await
            .ok()
            .and_then(|p| p.spec)
            .and_then(|s| s.node_name)
            .is_some()
    })
    .await;
    assert_eq!(claim_phase(&c, "nope").await, "Bound");
}
