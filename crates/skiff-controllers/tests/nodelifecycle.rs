//! Node lifecycle controller against a real API server, the controller manager and fake nodes:
//! lease expiry → Unknown + unreachable taints → taint-based eviction → replacement pods on a
//! healthy node; no eviction when every node is down; taints removed when heartbeats resume.

mod common;

use std::time::Duration;

use common::{fast_options, TestCluster};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

fn ready(node: &Node) -> Option<(String, String)> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| (c.status.clone(), c.reason.clone().unwrap_or_default()))
}

fn taints(node: &Node) -> Vec<(String, String, bool)> {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|t| (t.key, t.effect, t.time_added.is_some()))
        .collect()
}

/// A ReplicaSet whose pods tolerate unreachable/not-ready for `secs` seconds.
async fn replicaset(c: &TestCluster, replicas: i32, secs: i64) {
    let tol = |key: &str| json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": secs});
    let rs: ReplicaSet = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "web:v1"}],
                    "tolerations": [tol("node.kubernetes.io/unreachable"), tol("node.kubernetes.io/not-ready")]}}}
    }))
    .expect("rs");
    let rss: Api<ReplicaSet> = Api::namespaced(c.client.clone(), "default");
    rss.create(&PostParams::default(), &rs)
        .await
        .expect("create rs");
}

async fn web_pods(c: &TestCluster) -> Vec<Pod> {
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    pods.list(&ListParams::default().labels("app=web"))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

fn on(p: &Pod, node: &str) -> bool {
    p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node)
}

fn running(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none()
        && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
}

#[tokio::test]
async fn dead_node_is_tainted_and_its_pods_move() {
    let c = TestCluster::start_with(fast_options()).await;
    let n1 = c.add_node("n1").await;
    replicaset(&c, 2, 2).await;
    c.wait_for("2 pods running on n1", WAIT, || async {
        web_pods(&c)
            .await
            .iter()
            .filter(|p| on(p, "n1") && running(p))
            .count()
            == 2
    })
    .await;
    let _n2 = c.add_node("n2").await;
    n1.stop_heartbeats();

    let nodes: Api<Node> = Api::all(c.client.clone());
    c.wait_for("n1 Unknown and tainted unreachable", WAIT, || async {
        let Ok(n) = nodes.get("n1").await else {
            return false;
        };
        let t = taints(&n);
        ready(&n) == Some(("Unknown".into(), "NodeStatusUnknown".into()))
            && t.contains(&(
                "node.kubernetes.io/unreachable".into(),
                "NoSchedule".into(),
                true,
            ))
            && t.contains(&(
                "node.kubernetes.io/unreachable".into(),
                "NoExecute".into(),
                true,
            ))
    })
    .await;
    let n = nodes.get("n1").await.expect("n1");
    let conds = n.status.and_then(|s| s.conditions).unwrap_or_default();
    for t in ["MemoryPressure", "DiskPressure", "PIDPressure"] {
        let cond = conds.iter().find(|c| c.type_ == t).expect("condition");
        assert_eq!(cond.status, "Unknown");
        assert_eq!(
            cond.message.as_deref(),
            Some("Kubelet stopped posting node status.")
        );
    }

    // After tolerationSeconds the pods are evicted and replaced on n2.
    c.wait_for("2 replacement pods running on n2", WAIT, || async {
        web_pods(&c)
            .await
            .iter()
            .filter(|p| on(p, "n2") && running(p))
            .count()
            == 2
    })
    .await;
    let pods = web_pods(&c).await;
    let evicted: Vec<&Pod> = pods.iter().filter(|p| on(p, "n1")).collect();
    assert!(evicted
        .iter()
        .all(|p| p.metadata.deletion_timestamp.is_some()));
    let events: Api<Event> = Api::namespaced(c.client.clone(), "default");
    let evs = events
        .list(&ListParams::default())
        .await
        .expect("events")
        .items;
    for p in evicted {
        let name = p.metadata.name.clone().unwrap_or_default();
        assert!(
            evs.iter()
                .any(|e| e.reason.as_deref() == Some("TaintManagerEviction")
                    && e.message.as_deref()
                        == Some(&format!("Marking for deletion Pod default/{name}"))),
            "no TaintManagerEviction event for {name}"
        );
    }

    // Heartbeats resume: Ready again, taints gone.
    n1.resume_heartbeats();
    c.wait_for("n1 untainted", WAIT, || async {
        nodes
            .get("n1")
            .await
            .is_ok_and(|n| ready(&n).is_some_and(|r| r.0 == "True") && taints(&n).is_empty())
    })
    .await;
}

#[tokio::test]
async fn no_eviction_when_every_node_is_down() {
    let c = TestCluster::start_with(fast_options()).await;
    let n1 = c.add_node("n1").await;
    replicaset(&c, 1, 1).await;
    c.wait_for("pod running", WAIT, || async {
        web_pods(&c).await.iter().filter(|p| running(p)).count() == 1
    })
    .await;
    n1.stop_heartbeats();
    let nodes: Api<Node> = Api::all(c.client.clone());
    c.wait_for("n1 Unknown", WAIT, || async {
        nodes.get("n1").await.is_ok_and(|n| {
            ready(&n).is_some_and(|r| r.0 == "Unknown")
                && taints(&n).contains(&(
                    "node.kubernetes.io/unreachable".into(),
                    "NoSchedule".into(),
                    true,
                ))
        })
    })
    .await;
    // Well past tolerationSeconds: still there, no NoExecute taint.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let pods = web_pods(&c).await;
    assert_eq!(pods.len(), 1);
    assert!(pods[0].metadata.deletion_timestamp.is_none());
    let n = nodes.get("n1").await.expect("n1");
    assert!(
        !taints(&n).iter().any(|t| t.1 == "NoExecute"),
        "{:?}",
        taints(&n)
    );

    n1.resume_heartbeats();
    c.wait_for("n1 healthy and untainted", WAIT, || async {
        nodes
            .get("n1")
            .await
            .is_ok_and(|n| ready(&n).is_some_and(|r| r.0 == "True") && taints(&n).is_empty())
    })
    .await;
    let pods = web_pods(&c).await;
    assert!(pods.len() == 1 && pods[0].metadata.deletion_timestamp.is_none());
}

/// Cordon and uncordon change the unschedulable taint at once, not at the next periodic pass
/// (here a minute away): the scheduler must not keep avoiding an uncordoned node.
#[tokio::test]
async fn cordon_taint_follows_at_once() {
    let mut options = fast_options();
    options.node_monitor_period = Duration::from_secs(60);
    let c = TestCluster::start_with(options).await;
    let _n1 = c.add_node("n1").await;
    let nodes: Api<Node> = Api::all(c.client.clone());
    let has_taint = |n: &Node| {
        taints(n)
            .iter()
            .any(|(k, e, _)| k == "node.kubernetes.io/unschedulable" && e == "NoSchedule")
    };
    for cordon in [true, false] {
        let patch = json!({"spec": {"unschedulable": cordon}});
        nodes
            .patch(
                "n1",
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&patch),
            )
            .await
            .expect("cordon");
        c.wait_for(
            &format!("unschedulable taint {cordon}"),
            Duration::from_secs(3),
            || async {
                nodes
                    .get("n1")
                    .await
                    .map(|n| has_taint(&n) == cordon)
                    .unwrap_or(false)
            },
        )
        .await;
    }
}
