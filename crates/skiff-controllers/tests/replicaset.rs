//! ReplicaSet controller against a real API server: pod creation from the template, scaling
//! with the upstream victim ranking, replacement, adoption/release, no overshoot, and status.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

fn rs_json(name: &str, app: &str, replicas: i32, min_ready: i32) -> ReplicaSet {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "minReadySeconds": min_ready,
            "selector": {"matchLabels": {"app": app}},
            "template": {
                "metadata": {"labels": {"app": app, "tier": "web"}, "annotations": {"note": "from-template"}},
                "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]}
            }
        }
    }))
    .expect("rs json")
}

fn is_active(p: &Pod) -> bool {
    let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
    p.metadata.deletion_timestamp.is_none() && !matches!(phase, Some("Succeeded") | Some("Failed"))
}

fn owned_by(p: &Pod, uid: &str) -> bool {
    p.metadata
        .owner_references
        .iter()
        .flatten()
        .any(|r| r.uid == uid && r.controller == Some(true))
}

async fn active_owned(pods: &Api<Pod>, uid: &str) -> Vec<Pod> {
    pods.list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|p| is_active(p) && owned_by(p, uid))
        .collect()
}

fn names(pods: &[Pod]) -> BTreeSet<String> {
    pods.iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect()
}

async fn scale(rss: &Api<ReplicaSet>, name: &str, replicas: i32) {
    rss.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"replicas": replicas}})),
    )
    .await
    .expect("scale");
}

async fn status(rss: &Api<ReplicaSet>, name: &str) -> (i32, i32, i32, i32, i64) {
    let rs = rss.get(name).await.expect("get rs");
    let s = rs.status.unwrap_or_default();
    (
        s.replicas,
        s.ready_replicas.unwrap_or(0),
        s.available_replicas.unwrap_or(0),
        s.fully_labeled_replicas.unwrap_or(0),
        s.observed_generation.unwrap_or(0),
    )
}

#[tokio::test]
async fn creates_pods_from_template_with_controller_ref() {
    let c = common::TestCluster::start().await;
    let _n1 = c.add_node("n1").await;
    let rss: Api<ReplicaSet> = Api::namespaced(c.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let rs = rss
        .create(&PostParams::default(), &rs_json("web", "web", 3, 0))
        .await
        .expect("create rs");
    let uid = rs.metadata.uid.clone().expect("uid");

    c.wait_for("3 owned pods", WAIT, || async {
        active_owned(&pods, &uid).await.len() == 3
    })
    .await;
    for p in active_owned(&pods, &uid).await {
        let name = p.metadata.name.clone().unwrap_or_default();
        assert!(
            name.starts_with("web-") && name.len() == "web-".len() + 5,
            "name {name}"
        );
        assert_eq!(p.metadata.generate_name.as_deref(), Some("web-"));
        let labels = p.metadata.labels.clone().unwrap_or_default();
        assert_eq!(labels.get("app").map(String::as_str), Some("web"));
        assert_eq!(labels.get("tier").map(String::as_str), Some("web"));
        let ann = p.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(ann.get("note").map(String::as_str), Some("from-template"));
        let refs = p.metadata.owner_references.clone().unwrap_or_default();
        assert_eq!(refs.len(), 1);
        let r = &refs[0];
        assert_eq!(
            (r.api_version.as_str(), r.kind.as_str(), r.name.as_str()),
            ("apps/v1", "ReplicaSet", "web")
        );
        assert_eq!(
            (r.controller, r.block_owner_deletion),
            (Some(true), Some(true))
        );
    }
    c.wait_for("status 3/3 ready", WAIT, || async {
        let (replicas, ready, available, fully, observed) = status(&rss, "web").await;
        (replicas, ready, available, fully, observed) == (3, 3, 3, 3, 1)
    })
    .await;
}

#[tokio::test]
async fn scale_up_never_overshoots_and_scale_down_picks_unassigned_first() {
    let c = common::TestCluster::start().await;
    let _n1 = c.add_node("n1").await;
    let rss: Api<ReplicaSet> = Api::namespaced(c.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let rs = rss
        .create(&PostParams::default(), &rs_json("web", "web", 3, 0))
        .await
        .expect("create rs");
    let uid = rs.metadata.uid.clone().expect("uid");
    c.wait_for("3 ready", WAIT, || async {
        status(&rss, "web").await.1 == 3
    })
    .await;
    let first_three = names(&active_owned(&pods, &uid).await);

    // Count live owned pods from the watch: never more than the target.
    let max_seen = Arc::new(AtomicUsize::new(0));
    let watch = {
        let pods = pods.clone();
        let uid = uid.clone();
        let max_seen = max_seen.clone();
        tokio::spawn(async move {
            let mut live = BTreeSet::new();
            let mut stream = watcher(pods, watcher::Config::default()).boxed();
            while let Some(Ok(ev)) = stream.next().await {
                match ev {
                    watcher::Event::Apply(p) | watcher::Event::InitApply(p) => {
                        let name = p.metadata.name.clone().unwrap_or_default();
                        if is_active(&p) && owned_by(&p, &uid) {
                            live.insert(name);
                        } else {
                            live.remove(&name);
                        }
                    }
                    watcher::Event::Delete(p) => {
                        live.remove(&p.metadata.name.clone().unwrap_or_default());
                    }
                    _ => {}
                }
                max_seen.fetch_max(live.len(), Ordering::SeqCst);
            }
        })
    };

    // Cordon the node: the new pods stay unassigned, so they are the first victims.
    let nodes: Api<Node> = Api::all(c.client.clone());
    nodes
        .patch(
            "n1",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"unschedulable": true}})),
        )
        .await
        .expect("cordon");
    scale(&rss, "web", 9).await;
    c.wait_for("9 pods", WAIT, || async {
        active_owned(&pods, &uid).await.len() == 9
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        max_seen.load(Ordering::SeqCst) <= 9,
        "overshot: {}",
        max_seen.load(Ordering::SeqCst)
    );
    watch.abort();
    assert_eq!(status(&rss, "web").await.0, 9);

    scale(&rss, "web", 2).await;
    c.wait_for("2 pods", WAIT, || async {
        active_owned(&pods, &uid).await.len() == 2
    })
    .await;
    let left = names(&active_owned(&pods, &uid).await);
    assert!(
        left.is_subset(&first_three),
        "kept {left:?}, expected two of {first_three:?}"
    );
    c.wait_for("status replicas 2", WAIT, || async {
        let s = status(&rss, "web").await;
        s.0 == 2 && s.1 == 2
    })
    .await;
}

#[tokio::test]
async fn replaces_deleted_pods() {
    let c = common::TestCluster::start().await;
    let _n1 = c.add_node("n1").await;
    let rss: Api<ReplicaSet> = Api::namespaced(c.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let rs = rss
        .create(&PostParams::default(), &rs_json("web", "web", 9, 0))
        .await
        .expect("create rs");
    let uid = rs.metadata.uid.clone().expect("uid");
    c.wait_for("9 ready", WAIT, || async {
        status(&rss, "web").await.1 == 9
    })
    .await;
    let before = names(&active_owned(&pods, &uid).await);
    let doomed: Vec<String> = before.iter().take(3).cloned().collect();
    for n in &doomed {
        pods.delete(n, &DeleteParams::default())
            .await
            .expect("delete pod");
    }
    c.wait_for("9 ready again", WAIT, || async {
        let now = names(&active_owned(&pods, &uid).await);
        now.len() == 9
            && doomed.iter().all(|d| !now.contains(d))
            && status(&rss, "web").await.1 == 9
    })
    .await;
}

#[tokio::test]
async fn adopts_matching_orphans_and_releases_relabelled_pods() {
    let c = common::TestCluster::start().await;
    let _n1 = c.add_node("n1").await;
    let rss: Api<ReplicaSet> = Api::namespaced(c.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let orphan: Pod = serde_json::from_value(json!({
        "metadata": {"name": "orphan", "labels": {"app": "adopt"}},
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "nginx:1.27"}]}
    }))
    .expect("pod json");
    pods.create(&PostParams::default(), &orphan)
        .await
        .expect("create orphan");

    let rs = rss
        .create(&PostParams::default(), &rs_json("adopter", "adopt", 2, 0))
        .await
        .expect("create rs");
    let uid = rs.metadata.uid.clone().expect("uid");
    c.wait_for("orphan adopted", WAIT, || async {
        pods.get("orphan").await.is_ok_and(|p| owned_by(&p, &uid))
    })
    .await;
    c.wait_for("2 owned", WAIT, || async {
        active_owned(&pods, &uid).await.len() == 2
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        active_owned(&pods, &uid).await.len(),
        2,
        "adoption must count toward replicas"
    );

    // Relabel the adopted pod: it is released and replaced.
    pods.patch(
        "orphan",
        &PatchParams::default(),
        &Patch::Merge(&json!({"metadata": {"labels": {"app": "gone"}}})),
    )
    .await
    .expect("relabel");
    c.wait_for("released", WAIT, || async {
        pods.get("orphan").await.is_ok_and(|p| {
            p.metadata
                .owner_references
                .as_ref()
                .is_none_or(|r| r.is_empty())
        })
    })
    .await;
    c.wait_for("replacement", WAIT, || async {
        let owned = names(&active_owned(&pods, &uid).await);
        owned.len() == 2 && !owned.contains("orphan")
    })
    .await;
    assert!(
        pods.get("orphan").await.is_ok(),
        "a released pod is not deleted"
    );
}

#[tokio::test]
async fn available_replicas_respect_min_ready_seconds() {
    let c = common::TestCluster::start().await;
    let _n1 = c.add_node("n1").await;
    let rss: Api<ReplicaSet> = Api::namespaced(c.client.clone(), "default");
    rss.create(&PostParams::default(), &rs_json("slow", "slow", 2, 3))
        .await
        .expect("create rs");
    c.wait_for("2 ready", WAIT, || async {
        status(&rss, "slow").await.1 == 2
    })
    .await;
    let (_, _, available, _, _) = status(&rss, "slow").await;
    assert!(available < 2, "available before minReadySeconds elapsed");
    // No pod event happens after readiness: the controller must requeue itself.
    c.wait_for("2 available", WAIT, || async {
        status(&rss, "slow").await.2 == 2
    })
    .await;
    let (replicas, ready, available, fully, observed) = status(&rss, "slow").await;
    assert_eq!(
        (replicas, ready, available, fully, observed),
        (2, 2, 2, 2, 1)
    );
}

/// core/v1 ReplicationControllers run through the same controller: pods from the template
/// owned by the RC (`v1`/`ReplicationController`), scaling both ways, status written back to
/// the RC (its map selector read as matchLabels).
#[tokio::test]
async fn replication_controller_creates_scales_and_reports_status() {
    use k8s_openapi::api::core::v1::ReplicationController;
    let c = common::TestCluster::start().await;
    let _n1 = c.add_node("n1").await;
    let rcs: Api<ReplicationController> = Api::namespaced(c.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let rc: ReplicationController = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ReplicationController",
        "metadata": {"name": "legacy", "namespace": "default"},
        "spec": {"replicas": 2, "selector": {"app": "legacy"},
            "template": {"metadata": {"labels": {"app": "legacy"}},
                "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]}}}
    }))
    .expect("rc json");
    let rc = rcs
        .create(&PostParams::default(), &rc)
        .await
        .expect("create rc");
    let uid = rc.metadata.uid.clone().expect("uid");
    c.wait_for("2 owned pods", WAIT, || async {
        active_owned(&pods, &uid).await.len() == 2
    })
    .await;
    for p in active_owned(&pods, &uid).await {
        let refs = p.metadata.owner_references.clone().unwrap_or_default();
        assert_eq!(
            (
                refs[0].api_version.as_str(),
                refs[0].kind.as_str(),
                refs[0].name.as_str()
            ),
            ("v1", "ReplicationController", "legacy")
        );
    }
    c.wait_for("RC status 2 ready", WAIT, || async {
        rcs.get("legacy")
            .await
            .ok()
            .and_then(|r| r.status)
            .is_some_and(|s| {
                s.replicas == 2 && s.ready_replicas == Some(2) && s.observed_generation == Some(1)
            })
    })
    .await;
    rcs.patch(
        "legacy",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"replicas": 1}})),
    )
    .await
    .expect("scale rc");
    c.wait_for("1 owned pod", WAIT, || async {
        active_owned(&pods, &uid).await.len() == 1
    })
    .await;
    rcs.delete("legacy", &DeleteParams::background())
        .await
        .expect("delete rc");
}
