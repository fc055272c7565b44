//! Garbage collector against a real API server: Background, Foreground and Orphan deletion of a
//! ReplicaSet, and owner matching by uid.

mod common;

use std::time::Duration;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

fn rs_json(name: &str, replicas: i32) -> ReplicaSet {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]}
            }
        }
    }))
    .expect("rs json")
}

async fn pods_of(pods: &Api<Pod>, app: &str) -> Vec<Pod> {
    pods.list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

fn refs_to(p: &Pod, uid: &str) -> bool {
    p.metadata
        .owner_references
        .iter()
        .flatten()
        .any(|r| r.uid == uid)
}

/// Creates an RS and waits for its pods; returns its uid.
async fn rs_with_pods(c: &common::TestCluster, name: &str, n: usize) -> String {
    let rss: Api<ReplicaSet> = Api::namespaced(c.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let rs = rss
        .create(&PostParams::default(), &rs_json(name, n as i32))
        .await
        .expect("create rs");
    let uid = rs.metadata.uid.expect("uid");
    c.wait_for("pods", WAIT, || async {
        pods_of(&pods, name)
            .await
            .iter()
            .filter(|p| refs_to(p, &uid))
            .count()
            == n
    })
    .await;
    uid
}

#[tokio::test]
async fn background_deletion_removes_pods() {
    let c = common::TestCluster::start().await;
    let _n1 = c.add_node("n1").await;
    rs_with_pods(&c, "bg", 3).await;
    let rss: Api<ReplicaSet> = Api::namespaced(c.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    rss.delete("bg", &DeleteParams::background())
        .await
        .expect("delete");
    c.wait_for("rs gone", WAIT, || async {
        rss.get_opt("bg").await.ok().flatten().is_none()
    })
    .await;
    c.wait_for("pods gone", WAIT, || async {
        pods_of(&pods, "bg").await.is_empty()
    })
    .await;
}

#[tokio::test]
async fn foreground_deletion_waits_for_pods() {
    let c = common::TestCluster::start().await;
    let node = c.add_node("n1").await;
    let uid = rs_with_pods(&c, "fg", 2).await;
    let rss: Api<ReplicaSet> = Api::namespaced(c.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    // Without a kubelet the pods stay terminating, so the owner must stay too.
    node.stop_heartbeats();
    tokio::time::sleep(Duration::from_millis(300)).await;
    rss.delete("fg", &DeleteParams::foreground())
        .await
        .expect("delete");
    c.wait_for("pods terminating", WAIT, || async {
        let ps = pods_of(&pods, "fg").await;
        !ps.is_empty() && ps.iter().all(|p| p.metadata.deletion_timestamp.is_some())
    })
    .await;
    let rs = rss
        .get("fg")
        .await
        .expect("owner still there while pods exist");
    assert!(rs.metadata.deletion_timestamp.is_some());
    assert!(rs
        .metadata
        .finalizers
        .unwrap_or_default()
        .iter()
        .any(|f| f == "foregroundDeletion"));
    assert!(rss.get("fg").await.is_ok());

    node.resume_heartbeats();
    c.wait_for("rs gone", WAIT, || async {
        rss.get_opt("fg").await.ok().flatten().is_none()
    })
    .await;
    let left: Vec<Pod> = pods_of(&pods, "fg")
        .await
        .into_iter()
        .filter(|p| refs_to(p, &uid))
        .collect();
    assert!(left.is_empty(), "owner went away before its pods");
}

#[tokio::test]
async fn orphan_finalizer_keeps_pods_without_owner() {
    let c = common::TestCluster::start().await;
    let _n1 = c.add_node("n1").await;
    let uid = rs_with_pods(&c, "orph", 2).await;
    let rss: Api<ReplicaSet> = Api::namespaced(c.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    // A finalizer set by hand works like the one the API server adds for Orphan.
    rss.patch(
        "orph",
        &PatchParams::default(),
        &Patch::Merge(&json!({"metadata": {"finalizers": ["orphan"]}})),
    )
    .await
    .expect("add finalizer");
    rss.delete("orph", &DeleteParams::background())
        .await
        .expect("delete");
    c.wait_for("rs gone", WAIT, || async {
        rss.get_opt("orph").await.ok().flatten().is_none()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let left = pods_of(&pods, "orph").await;
    assert_eq!(left.len(), 2, "orphaned pods stay");
    assert!(left
        .iter()
        .all(|p| !refs_to(p, &uid) && p.metadata.deletion_timestamp.is_none()));
}

#[tokio::test]
async fn orphan_propagation_policy_keeps_pods() {
    let c = common::TestCluster::start().await;
    let _n1 = c.add_node("n1").await;
    let uid = rs_with_pods(&c, "orph2", 2).await;
    let rss: Api<ReplicaSet> = Api::namespaced(c.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    rss.delete("orph2", &DeleteParams::orphan())
        .await
        .expect("delete");
    c.wait_for("rs gone", WAIT, || async {
        rss.get_opt("orph2").await.ok().flatten().is_none()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let left = pods_of(&pods, "orph2").await;
    assert_eq!(left.len(), 2, "orphaned pods stay");
    assert!(left.iter().all(|p| !refs_to(p, &uid)));
}

#[tokio::test]
async fn owners_are_matched_by_uid() {
    let c = common::TestCluster::start().await;
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), "default");
    let cm = |v: serde_json::Value| -> ConfigMap { serde_json::from_value(v).expect("cm") };
    let owner = cms
        .create(
            &PostParams::default(),
            &cm(json!({"metadata": {"name": "owner"}})),
        )
        .await
        .expect("owner");
    let owner_uid = owner.metadata.uid.expect("uid");
    let oref =
        |uid: &str| json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid}]);
    cms.create(
        &PostParams::default(),
        &cm(json!({"metadata": {"name": "kept", "ownerReferences": oref(&owner_uid)}})),
    )
    .await
    .expect("kept");
    // Same name, another uid: not the owner, so this dependent is garbage.
    cms.create(
        &PostParams::default(),
        &cm(json!({"metadata": {"name": "stale", "ownerReferences": oref("00000000-0000-0000-0000-000000000001")}})),
    )
    .await
    .expect("stale");
    c.wait_for("stale dependent collected", WAIT, || async {
        cms.get_opt("stale").await.ok().flatten().is_none()
    })
    .await;
    assert!(
        cms.get_opt("kept").await.ok().flatten().is_some(),
        "dependent of a live owner stays"
    );

    cms.delete("owner", &DeleteParams::background())
        .await
        .expect("delete owner");
    c.wait_for("dependent collected", WAIT, || async {
        cms.get_opt("kept").await.ok().flatten().is_none()
    })
    .await;
}

/// Operators own built-in objects from custom ones: deleting the custom owner collects them,
/// including for a kind defined after the collector started; a custom dependent loses the
/// reference to a gone owner through a merge patch (custom kinds have no strategic merge).
#[tokio::test]
async fn custom_resource_owners_and_dependents_are_collected() {
    use kube::api::{ApiResource, DynamicObject};
    let c = common::TestCluster::start().await;
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(c.client.clone());
    let crd = serde_json::from_value(json!({
        "metadata": {"name": "owners.gc.skiff.dev"},
        "spec": {"group": "gc.skiff.dev", "scope": "Namespaced",
            "names": {"plural": "owners", "singular": "owner", "kind": "Owner", "listKind": "OwnerList"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}
    }))
    .expect("crd");
    crds.create(&PostParams::default(), &crd)
        .await
        .expect("create crd");
    let ar = ApiResource {
        group: "gc.skiff.dev".into(),
        version: "v1".into(),
        api_version: "gc.skiff.dev/v1".into(),
        kind: "Owner".into(),
        plural: "owners".into(),
    };
    let owners: Api<DynamicObject> = Api::namespaced_with(c.client.clone(), "default", &ar);
    c.wait_for("the custom kind is served", WAIT, || async {
        owners.list(&ListParams::default()).await.is_ok()
    })
    .await;
    let boss: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "gc.skiff.dev/v1", "kind": "Owner", "metadata": {"name": "boss"}
    }))
    .expect("owner");
    let owner_uid = owners
        .create(&PostParams::default(), &boss)
        .await
        .expect("create owner")
        .metadata
        .uid
        .expect("uid");
    let owner_ref = json!([{"apiVersion": "gc.skiff.dev/v1", "kind": "Owner", "name": "boss", "uid": owner_uid}]);
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), "default");
    let cm = serde_json::from_value(
        json!({"metadata": {"name": "owned", "ownerReferences": owner_ref}}),
    )
    .expect("cm");
    cms.create(&PostParams::default(), &cm)
        .await
        .expect("create configmap");
    // A second owner keeps this one alive; only the reference to the gone owner is removed.
    let keeper = cms
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "keeper"}})).expect("cm"),
        )
        .await
        .expect("keeper");
    let both = json!([
        {"apiVersion": "gc.skiff.dev/v1", "kind": "Owner", "name": "boss", "uid": owner_uid},
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "keeper", "uid": keeper.metadata.uid},
    ]);
    let sub: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "gc.skiff.dev/v1", "kind": "Owner",
        "metadata": {"name": "sub", "ownerReferences": both}
    }))
    .expect("sub");
    owners
        .create(&PostParams::default(), &sub)
        .await
        .expect("create sub");

    owners
        .delete("boss", &DeleteParams::background())
        .await
        .expect("delete owner");
    c.wait_for(
        "the ConfigMap owned by the custom object is collected",
        WAIT,
        || async { cms.get_opt("owned").await.ok().flatten().is_none() },
    )
    .await;
    c.wait_for(
        "the custom dependent keeps only its living owner",
        WAIT,
        || async {
            owners.get_opt("sub").await.ok().flatten().is_some_and(|o| {
                let refs = o.metadata.owner_references.unwrap_or_default();
                refs.len() == 1 && refs[0].name == "keeper"
            })
        },
    )
    .await;
}
