//! The fake node of the harness behaves like a kubelet as far as the controllers can tell.

mod common;

use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, PostParams};

#[tokio::test]
async fn fake_node_registers_and_runs_bound_pods() {
    let c = common::TestCluster::start().await;
    let node = c.add_node("n1").await;
    let nodes: Api<Node> = Api::all(c.client.clone());
    let n = nodes.get("n1").await.expect("node");
    let alloc = n.status.and_then(|s| s.allocatable).unwrap_or_default();
    assert_eq!(alloc.get("cpu").map(|q| q.0.as_str()), Some("4"));

    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "p"},
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "web:v1"}]}
    }))
    .expect("pod");
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("create");
    let ready = |p: &Pod| {
        p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    };
    c.wait_for("pod Ready", Duration::from_secs(10), || async {
        pods.get("p").await.is_ok_and(|p| ready(&p))
    })
    .await;

    // Graceful delete: the fake kubelet finalizes it.
    pods.delete("p", &DeleteParams::default())
        .await
        .expect("delete");
    c.wait_for("pod gone", Duration::from_secs(10), || async {
        pods.get("p").await.is_err()
    })
    .await;
    drop(node);
}

#[tokio::test]
async fn nodes_get_distinct_pod_cidrs() {
    let c = common::TestCluster::start().await;
    let _a = c.add_node("a").await;
    let _b = c.add_node("b").await;
    let nodes: Api<Node> = Api::all(c.client.clone());
    let cidr = |n: Node| n.spec.and_then(|s| s.pod_cidr);
    c.wait_for("pod CIDRs", Duration::from_secs(10), || async {
        let a = nodes.get("a").await.ok().and_then(cidr);
        let b = nodes.get("b").await.ok().and_then(cidr);
        matches!((a, b), (Some(a), Some(b)) if a != b && a.starts_with("100.64.") && b.ends_with(".0/24"))
    })
    .await;
}
