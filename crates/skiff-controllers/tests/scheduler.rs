//! Scheduler against a real API server, the controller manager and fake nodes: binding,
//! resources, node selection, taints, host ports, spreading, unhealthy and cordoned nodes.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{NodeSpec, TestCluster};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::api::{Api, ListParams, PostParams};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);

fn pod(name: &str, spec: Value) -> Pod {
    let mut spec = spec;
    if spec.get("containers").is_none() {
        spec["containers"] = json!([{"name": "c", "image": "web:v1"}]);
    }
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).expect("pod")
}

async fn create(c: &TestCluster, p: Pod) {
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    pods.create(&PostParams::default(), &p)
        .await
        .expect("create pod");
}

async fn node_of(c: &TestCluster, name: &str) -> Option<String> {
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    pods.get(name)
        .await
        .ok()
        .and_then(|p| p.spec)
        .and_then(|s| s.node_name)
        .filter(|n| !n.is_empty())
}

async fn wait_bound(c: &TestCluster, name: &str) -> String {
    c.wait_for(&format!("{name} bound"), WAIT, || async {
        node_of(c, name).await.is_some()
    })
    .await;
    node_of(c, name).await.unwrap_or_default()
}

fn scheduled_condition(p: &Pod) -> Option<(String, String, String)> {
    p.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "PodScheduled")
        .map(|c| {
            (
                c.status.clone(),
                c.reason.clone().unwrap_or_default(),
                c.message.clone().unwrap_or_default(),
            )
        })
}

/// Waits for PodScheduled=False/Unschedulable and returns its message.
async fn wait_unschedulable(c: &TestCluster, name: &str) -> String {
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    c.wait_for(&format!("{name} Unschedulable"), WAIT, || async {
        pods.get(name)
            .await
            .ok()
            .and_then(|p| scheduled_condition(&p))
            .is_some_and(|(s, r, _)| s == "False" && r == "Unschedulable")
    })
    .await;
    let p = pods.get(name).await.expect("pod");
    assert!(p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_none());
    scheduled_condition(&p).map(|c| c.2).unwrap_or_default()
}

async fn events_for(c: &TestCluster, pod: &str, reason: &str) -> Vec<Event> {
    let events: Api<Event> = Api::namespaced(c.client.clone(), "default");
    events
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|e| {
            e.involved_object.name.as_deref() == Some(pod) && e.reason.as_deref() == Some(reason)
        })
        .collect()
}

#[tokio::test]
async fn binds_to_a_ready_node_with_event() {
    let c = TestCluster::start().await;
    let _n1 = c.add_node("n1").await;
    create(&c, pod("web-abc", json!({}))).await;
    assert_eq!(wait_bound(&c, "web-abc").await, "n1");
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let p = pods.get("web-abc").await.expect("pod");
    assert_eq!(
        scheduled_condition(&p).map(|c| c.0).as_deref(),
        Some("True")
    );
    c.wait_for("Scheduled event", WAIT, || async {
        events_for(&c, "web-abc", "Scheduled")
            .await
            .iter()
            .any(|e| {
                e.message.as_deref() == Some("Successfully assigned default/web-abc to n1")
                    && e.type_.as_deref() == Some("Normal")
                    && e.source.as_ref().and_then(|s| s.component.as_deref())
                        == Some("default-scheduler")
            })
    })
    .await;
}

#[tokio::test]
async fn insufficient_resources_then_a_bigger_node() {
    let c = TestCluster::start().await;
    let _n1 = c.add_node("n1").await;
    let big = json!({"containers": [{"name": "c", "image": "web:v1",
        "resources": {"requests": {"cpu": "10", "memory": "1Gi"}}}]});
    create(&c, pod("big", big)).await;
    let msg = wait_unschedulable(&c, "big").await;
    assert_eq!(
        msg,
        "0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: \
         1 No preemption victims found for incoming pod."
    );
    c.wait_for("FailedScheduling event", WAIT, || async {
        events_for(&c, "big", "FailedScheduling")
            .await
            .iter()
            .any(|e| e.type_.as_deref() == Some("Warning") && e.message.as_deref() == Some(&msg))
    })
    .await;
    let _n2 = c.add_node_with(NodeSpec::new("n2").cpu("16")).await;
    assert_eq!(wait_bound(&c, "big").await, "n2");

    // Two pods of 3 cpu: only one fits on n1 (4 cpu); the assumed cache must see the first
    // before the watch does.
    let three = json!({"nodeSelector": {"kubernetes.io/hostname": "n1"},
        "containers": [{"name": "c", "image": "web:v1", "resources": {"requests": {"cpu": "3"}}}]});
    create(&c, pod("a", three.clone())).await;
    create(&c, pod("b", three)).await;
    let mut bound = 0;
    let mut msg = String::new();
    for name in ["a", "b"] {
        c.wait_for("decision", WAIT, || async {
            let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
            pods.get(name).await.ok().is_some_and(|p| {
                p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some()
                    || scheduled_condition(&p).is_some_and(|c| c.0 == "False")
            })
        })
        .await;
        match node_of(&c, name).await {
            Some(_) => bound += 1,
            None => msg = wait_unschedulable(&c, name).await,
        }
    }
    assert_eq!(bound, 1);
    assert!(
        msg.starts_with("0/2 nodes are available: 1 Insufficient cpu, 1 node(s) didn't match Pod's node affinity/selector."),
        "{msg}"
    );
}

#[tokio::test]
async fn node_selector_and_required_affinity() {
    let c = TestCluster::start().await;
    let _n1 = c
        .add_node_with(NodeSpec::new("n1").label("disk", "ssd").label("gen", "3"))
        .await;
    let _n2 = c
        .add_node_with(NodeSpec::new("n2").label("disk", "hdd").label("gen", "5"))
        .await;
    let _n3 = c.add_node("n3").await;
    create(&c, pod("sel", json!({"nodeSelector": {"disk": "ssd"}}))).await;
    let affinity = |exprs: Value| {
        json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
            {"nodeSelectorTerms": [{"matchExpressions": exprs}]}}}})
    };
    create(
        &c,
        pod(
            "in",
            affinity(json!([{"key": "disk", "operator": "In", "values": ["hdd"]}])),
        ),
    )
    .await;
    create(
        &c,
        pod(
            "dne",
            affinity(json!([{"key": "disk", "operator": "DoesNotExist"}])),
        ),
    )
    .await;
    create(
        &c,
        pod(
            "gt",
            affinity(json!([{"key": "gen", "operator": "Gt", "values": ["4"]}])),
        ),
    )
    .await;
    create(
        &c,
        pod(
            "field",
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
                {"nodeSelectorTerms": [{"matchFields": [
                    {"key": "metadata.name", "operator": "In", "values": ["n3"]}]}]}}}}),
        ),
    )
    .await;
    create(&c, pod("none", json!({"nodeSelector": {"disk": "nvme"}}))).await;
    assert_eq!(wait_bound(&c, "sel").await, "n1");
    assert_eq!(wait_bound(&c, "in").await, "n2");
    assert_eq!(wait_bound(&c, "dne").await, "n3");
    assert_eq!(wait_bound(&c, "gt").await, "n2");
    assert_eq!(wait_bound(&c, "field").await, "n3");
    let msg = wait_unschedulable(&c, "none").await;
    assert_eq!(
        msg,
        "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector. \
         preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling."
    );
}

#[tokio::test]
async fn taints_and_tolerations() {
    let c = TestCluster::start().await;
    let _n1 = c
        .add_node_with(NodeSpec::new("n1").taint("dedicated", "gpu", "NoSchedule"))
        .await;
    let _n2 = c
        .add_node_with(NodeSpec::new("n2").taint("maintenance", "", "NoExecute"))
        .await;
    create(&c, pod("plain", json!({}))).await;
    let msg = wait_unschedulable(&c, "plain").await;
    assert!(
        msg.starts_with(
            "0/2 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, \
             1 node(s) had untolerated taint {maintenance: }."
        ),
        "{msg}"
    );
    create(
        &c,
        pod("gpu", json!({"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]})),
    )
    .await;
    create(
        &c,
        pod(
            "maint",
            json!({"tolerations": [{"key": "maintenance", "operator": "Exists"}]}),
        ),
    )
    .await;
    assert_eq!(wait_bound(&c, "gpu").await, "n1");
    assert_eq!(wait_bound(&c, "maint").await, "n2");
    create(
        &c,
        pod("any", json!({"tolerations": [{"operator": "Exists"}]})),
    )
    .await;
    assert!(wait_bound(&c, "any").await.starts_with('n'));
}

#[tokio::test]
async fn host_port_conflicts() {
    let c = TestCluster::start().await;
    let _n1 = c.add_node("n1").await;
    let _n2 = c.add_node("n2").await;
    let hp = json!({"containers": [{"name": "c", "image": "web:v1",
        "ports": [{"containerPort": 80, "hostPort": 8080}]}]});
    create(&c, pod("hp1", hp.clone())).await;
    create(&c, pod("hp2", hp.clone())).await;
    let a = wait_bound(&c, "hp1").await;
    let b = wait_bound(&c, "hp2").await;
    assert_ne!(a, b);
    create(&c, pod("hp3", hp)).await;
    let msg = wait_unschedulable(&c, "hp3").await;
    assert!(
        msg.starts_with("0/2 nodes are available: 2 node(s) didn't have free ports for the requested pod ports."),
        "{msg}"
    );
    // Another protocol is no conflict.
    let udp = json!({"containers": [{"name": "c", "image": "web:v1",
        "ports": [{"containerPort": 80, "hostPort": 8080, "protocol": "UDP"}]}]});
    create(&c, pod("udp", udp)).await;
    wait_bound(&c, "udp").await;
}

#[tokio::test]
async fn spreads_a_replicaset_evenly() {
    let c = TestCluster::start().await;
    let _n = [
        c.add_node("n1").await,
        c.add_node("n2").await,
        c.add_node("n3").await,
    ];
    let rs: ReplicaSet = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": 6, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "web:v1"}]}}}
    }))
    .expect("rs");
    let rss: Api<ReplicaSet> = Api::namespaced(c.client.clone(), "default");
    rss.create(&PostParams::default(), &rs)
        .await
        .expect("create rs");
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let per_node = || async {
        let mut m: BTreeMap<String, usize> = BTreeMap::new();
        for p in pods
            .list(&ListParams::default().labels("app=web"))
            .await
            .map(|l| l.items)
            .unwrap_or_default()
        {
            if let Some(n) = p.spec.and_then(|s| s.node_name) {
                *m.entry(n).or_default() += 1;
            }
        }
        m
    };
    c.wait_for("6 pods bound", WAIT, || async {
        per_node().await.values().sum::<usize>() == 6
    })
    .await;
    let m = per_node().await;
    assert_eq!(
        m.values().copied().collect::<Vec<_>>(),
        vec![2, 2, 2],
        "{m:?}"
    );
}

#[tokio::test]
async fn never_binds_to_not_ready_or_cordoned_nodes() {
    let c = TestCluster::start().await;
    // A node that is registered but NotReady (no kubelet keeps it alive).
    let nodes: Api<Node> = Api::all(c.client.clone());
    let sick: Node = serde_json::from_value(json!({
        "metadata": {"name": "sick", "labels": {"kubernetes.io/hostname": "sick"}},
        "status": {"allocatable": {"cpu": "64", "memory": "256Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "False", "reason": "KubeletNotReady"}]},
    }))
    .expect("node");
    nodes
        .create(&PostParams::default(), &sick)
        .await
        .expect("create node");
    let mut cordoned = NodeSpec::new("cordoned").cpu("64");
    cordoned.unschedulable = true;
    let _cordoned = c.add_node_with(cordoned).await;
    let _ok = c.add_node("ok").await;
    for i in 0..5 {
        create(&c, pod(&format!("p{i}"), json!({}))).await;
    }
    for i in 0..5 {
        assert_eq!(wait_bound(&c, &format!("p{i}")).await, "ok");
    }
}
