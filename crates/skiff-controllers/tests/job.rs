//! Job controller against a real API server: orphaned pods that match the selector are
//! adopted again (upstream's "should adopt matching orphans and release non-matching pods").

mod common;

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

fn owned_by(p: &Pod, uid: &str) -> bool {
    p.metadata
        .owner_references
        .iter()
        .flatten()
        .any(|r| r.uid == uid && r.controller == Some(true))
}

async fn pods_with(pods: &Api<Pod>, uid: &str) -> Vec<Pod> {
    pods.list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none() && owned_by(p, uid))
        .collect()
}

#[tokio::test]
async fn adopts_matching_orphans_and_releases_relabelled_pods() {
    let c = common::TestCluster::start().await;
    let _n1 = c.add_node("n1").await;
    let jobs: Api<Job> = Api::namespaced(c.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let job: Job = serde_json::from_value(json!({
        "metadata": {"name": "adopter"},
        "spec": {
            "parallelism": 2,
            "completions": 4,
            "manualSelector": true,
            "selector": {"matchLabels": {"job": "adopter"}},
            "template": {
                "metadata": {"labels": {"job": "adopter"}},
                "spec": {"restartPolicy": "Never",
                    "containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"]}]}
            }
        }
    }))
    .expect("job json");
    let job = jobs
        .create(&PostParams::default(), &job)
        .await
        .expect("create job");
    let uid = job.metadata.uid.clone().expect("uid");
    c.wait_for("2 pods", WAIT, || async {
        pods_with(&pods, &uid).await.len() == 2
    })
    .await;
    let victim = pods_with(&pods, &uid).await[0]
        .metadata
        .name
        .clone()
        .expect("name");

    // Orphan one pod: the Job adopts it back instead of creating a third.
    pods.patch(
        &victim,
        &PatchParams::default(),
        &Patch::Merge(&json!({"metadata": {"ownerReferences": null}})),
    )
    .await
    .expect("orphan the pod");
    c.wait_for("orphan adopted", WAIT, || async {
        pods.get(&victim).await.is_ok_and(|p| owned_by(&p, &uid))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let owned = pods_with(&pods, &uid).await;
    assert_eq!(owned.len(), 2, "an adopted pod counts as active");

    // Relabel it: released (owner reference removed, pod kept) and replaced.
    pods.patch(
        &victim,
        &PatchParams::default(),
        &Patch::Merge(&json!({"metadata": {"labels": {"job": "gone"}}})),
    )
    .await
    .expect("relabel");
    c.wait_for("released", WAIT, || async {
        pods.get(&victim).await.is_ok_and(|p| {
            p.metadata
                .owner_references
                .as_ref()
                .is_none_or(|r| r.is_empty())
        })
    })
    .await;
    c.wait_for("replacement", WAIT, || async {
        let owned = pods_with(&pods, &uid).await;
        owned.len() == 2
            && owned
                .iter()
                .all(|p| p.metadata.name.as_ref() != Some(&victim))
    })
    .await;
}
