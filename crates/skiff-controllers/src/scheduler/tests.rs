//! Unit tests of the filter and score plugins and of one scheduling decision.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{json, Value};

use super::plugins::*;
use super::*;

fn node(name: &str, extra: Value) -> Node {
    let mut n = json!({
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "zone": "a", "gen": "5"}},
        "spec": {},
        "status": {"allocatable": {"cpu": "2", "memory": "4Gi", "pods": "3"},
                   "conditions": [{"type": "Ready", "status": "True"}]},
    });
    merge(&mut n, extra);
    serde_json::from_value(n).expect("node")
}

fn pod(extra: Value) -> Pod {
    let mut p = json!({
        "metadata": {"name": "p", "namespace": "default"},
        "spec": {"containers": [{"name": "c", "image": "x"}]},
    });
    merge(&mut p, extra);
    serde_json::from_value(p).expect("pod")
}

fn merge(a: &mut Value, b: Value) {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (a, b) => *a = b,
    }
}

fn check(p: &Pod, n: &Node, info: &NodeInfo) -> std::result::Result<(), Rejection> {
    filter(p, &PodFacts::of(p), n, info)
}

fn reason(r: std::result::Result<(), Rejection>) -> String {
    r.err().map(|r| r.reasons.join("; ")).unwrap_or_default()
}

#[test]
fn quantities() {
    assert_eq!(parse_milli_value("100m"), Some(100));
    assert_eq!(parse_milli_value("1"), Some(1000));
    assert_eq!(parse_milli_value("1.5"), Some(1500));
    assert_eq!(parse_milli_value("0.1"), Some(100));
    assert_eq!(parse_milli_value("1Ki"), Some(1024 * 1000));
    assert_eq!(parse_milli_value("2Gi"), Some(2 * (1 << 30) * 1000));
    assert_eq!(parse_milli_value("1e3"), Some(1_000_000));
    assert_eq!(parse_milli_value("1M"), Some(1_000_000_000));
    assert_eq!(parse_milli_value("1u"), Some(1));
    assert_eq!(parse_milli_value("abc"), None);
    assert_eq!(parse_milli_value("1Qi"), None);
    assert_eq!(units(&Quantity("128974848".into())), 128974848);
    assert_eq!(units(&Quantity("129e6".into())), 129000000);
    assert_eq!(units(&Quantity("123Mi".into())), 123 * 1024 * 1024);
}

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use skiff_semantics::quantity::parse_milli_value;

#[test]
fn effective_requests_use_init_max_and_sidecars() {
    let p = pod(json!({"spec": {
        "containers": [
            {"name": "a", "image": "x", "resources": {"requests": {"cpu": "100m", "memory": "100Mi"}}},
            {"name": "b", "image": "x", "resources": {"limits": {"cpu": "200m"}}},
        ],
        "initContainers": [
            {"name": "i1", "image": "x", "resources": {"requests": {"cpu": "1", "memory": "10Mi"}}},
            {"name": "s", "image": "x", "restartPolicy": "Always",
             "resources": {"requests": {"cpu": "50m"}}},
            {"name": "i2", "image": "x", "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}}},
        ],
        "overhead": {"cpu": "10m"},
    }}));
    let r = pod_requests(p.spec.as_ref().unwrap(), false);
    // cpu: max(100+200+50, 1000, 50+500) + 10 ; memory: max(100Mi, 10Mi, 1Gi)
    assert_eq!(r.milli_cpu, 1010);
    assert_eq!(r.memory, 1 << 30);
    let nz = pod_requests(pod(json!({})).spec.as_ref().unwrap(), true);
    assert_eq!((nz.milli_cpu, nz.memory), (100, 200 * 1024 * 1024));
}

#[test]
fn resource_fit() {
    let n = node("n1", json!({}));
    let big = pod(json!({"spec": {"containers": [{"name": "c", "image": "x",
        "resources": {"requests": {"cpu": "3", "memory": "5Gi"}}}]}}));
    assert_eq!(
        reason(check(&big, &n, &NodeInfo::default())),
        "Insufficient cpu; Insufficient memory"
    );
    let small = pod(json!({"spec": {"containers": [{"name": "c", "image": "x",
        "resources": {"requests": {"cpu": "1"}}}]}}));
    let mut info = NodeInfo::default();
    assert!(check(&small, &n, &info).is_ok());
    info.add_pod(&small);
    info.add_pod(&small);
    assert_eq!(reason(check(&small, &n, &info)), "Insufficient cpu");
    // Best-effort pods only count against the pod limit.
    let be = pod(json!({}));
    assert!(check(&be, &n, &info).is_ok());
    info.add_pod(&be);
    assert_eq!(reason(check(&be, &n, &info)), "Too many pods");
}

#[test]
fn node_selector_and_affinity() {
    let n = node("n1", json!({}));
    let sel = pod(json!({"spec": {"nodeSelector": {"zone": "a"}}}));
    assert!(check(&sel, &n, &NodeInfo::default()).is_ok());
    let sel = pod(json!({"spec": {"nodeSelector": {"zone": "b"}}}));
    assert_eq!(
        reason(check(&sel, &n, &NodeInfo::default())),
        "node(s) didn't match Pod's node affinity/selector"
    );
    let aff = |terms: Value| {
        pod(json!({"spec": {"affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}}}))
    };
    let ok = |terms: Value| matches_node_affinity(&aff(terms), &n);
    assert!(ok(
        json!([{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]}])
    ));
    assert!(!ok(
        json!([{"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]}])
    ));
    assert!(ok(
        json!([{"matchExpressions": [{"key": "missing", "operator": "NotIn", "values": ["a"]}]}])
    ));
    assert!(ok(
        json!([{"matchExpressions": [{"key": "zone", "operator": "Exists"}]}])
    ));
    assert!(ok(
        json!([{"matchExpressions": [{"key": "missing", "operator": "DoesNotExist"}]}])
    ));
    assert!(ok(
        json!([{"matchExpressions": [{"key": "gen", "operator": "Gt", "values": ["4"]}]}])
    ));
    assert!(!ok(
        json!([{"matchExpressions": [{"key": "gen", "operator": "Lt", "values": ["5"]}]}])
    ));
    assert!(!ok(
        json!([{"matchExpressions": [{"key": "zone", "operator": "Gt", "values": ["1"]}]}])
    ));
    assert!(ok(
        json!([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}])
    ));
    assert!(!ok(
        json!([{"matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["n1"]}]}])
    ));
    // Terms are ORed; expressions within a term ANDed; an empty term matches nothing.
    assert!(ok(json!([
        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]},
        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]},
    ])));
    assert!(!ok(json!([{"matchExpressions": [
        {"key": "zone", "operator": "In", "values": ["a"]},
        {"key": "gen", "operator": "In", "values": ["4"]},
    ]}])));
    assert!(!ok(json!([{}])));
    assert!(!ok(json!([])));
}

#[test]
fn taints_and_tolerations() {
    let n = node(
        "n1",
        json!({"spec": {"taints": [
            {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"},
            {"key": "soft", "effect": "PreferNoSchedule"},
        ]}}),
    );
    let p = pod(json!({}));
    assert_eq!(
        reason(check(&p, &n, &NodeInfo::default())),
        "node(s) had untolerated taint {dedicated: gpu}"
    );
    let tol = |t: Value| pod(json!({"spec": {"tolerations": [t]}}));
    let ok = |p: &Pod| check(p, &n, &NodeInfo::default()).is_ok();
    assert!(ok(&tol(
        json!({"key": "dedicated", "operator": "Equal", "value": "gpu"})
    )));
    assert!(ok(&tol(
        json!({"key": "dedicated", "value": "gpu", "effect": "NoSchedule"})
    )));
    assert!(!ok(&tol(json!({"key": "dedicated", "value": "cpu"}))));
    assert!(!ok(&tol(
        json!({"key": "dedicated", "operator": "Exists", "effect": "NoExecute"})
    )));
    assert!(ok(&tol(json!({"key": "dedicated", "operator": "Exists"}))));
    assert!(ok(&tol(json!({"operator": "Exists"}))));
}

#[test]
fn not_ready_and_cordoned_nodes_are_filtered() {
    let p = pod(json!({}));
    let not_ready = node(
        "n1",
        json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}}),
    );
    assert_eq!(
        reason(check(&p, &not_ready, &NodeInfo::default())),
        "node(s) had untolerated taint {node.kubernetes.io/not-ready: }"
    );
    let unknown = node(
        "n1",
        json!({"status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}}),
    );
    assert!(check(&p, &unknown, &NodeInfo::default()).is_err());
    let cordoned = node("n1", json!({"spec": {"unschedulable": true}}));
    assert_eq!(
        reason(check(&p, &cordoned, &NodeInfo::default())),
        "node(s) were unschedulable"
    );
    let tolerant = pod(json!({"spec": {"tolerations": [
        {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]}}));
    assert!(check(&tolerant, &cordoned, &NodeInfo::default()).is_ok());
}

#[test]
fn host_port_conflicts() {
    let n = node("n1", json!({}));
    let hp = |port: i32, proto: &str, ip: &str| {
        pod(json!({"spec": {"containers": [{"name": "c", "image": "x",
            "ports": [{"containerPort": 80, "hostPort": port, "protocol": proto, "hostIP": ip}]}]}}))
    };
    let mut info = NodeInfo::default();
    info.add_pod(&hp(8080, "TCP", "10.0.0.1"));
    let ok = |p: &Pod| check(p, &n, &info).is_ok();
    assert!(!ok(&hp(8080, "TCP", "10.0.0.1")));
    assert!(!ok(&hp(8080, "TCP", "0.0.0.0")));
    assert!(ok(&hp(8080, "UDP", "10.0.0.1")));
    assert!(ok(&hp(8080, "TCP", "10.0.0.2")));
    assert!(ok(&hp(8081, "TCP", "10.0.0.1")));
    assert_eq!(
        reason(check(&hp(8080, "TCP", ""), &n, &info)),
        "node(s) didn't have free ports for the requested pod ports"
    );
}

#[test]
fn scores() {
    let n = node("n1", json!({}));
    let p = pod(json!({"spec": {"containers": [{"name": "c", "image": "x",
        "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}]}}));
    let facts = PodFacts::of(&p);
    // cpu (2000-1000)/2000 = 50, memory (4-1)/4 = 75
    assert_eq!(least_allocated(&facts, &n, &NodeInfo::default()), 62);
    let mut info = NodeInfo::default();
    info.add_pod(&p);
    assert_eq!(least_allocated(&facts, &n, &info), 25);
    assert_eq!(spread(0, 0), 100);
    assert_eq!(spread(0, 2), 100);
    assert_eq!(spread(1, 2), 50);
    assert_eq!(spread(2, 2), 0);
}

#[test]
fn fit_error_message_is_upstream_shaped() {
    let r = |reasons: &[&str], resolvable| Rejection {
        reasons: reasons.iter().map(|s| s.to_string()).collect(),
        resolvable,
    };
    let msg = fit_error(
        3,
        &[
            r(
                &["node(s) didn't match Pod's node affinity/selector"],
                false,
            ),
            r(&["Insufficient cpu"], true),
            r(
                &["node(s) didn't match Pod's node affinity/selector"],
                false,
            ),
        ],
    );
    assert_eq!(
        msg,
        "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) didn't match Pod's node \
         affinity/selector. preemption: 0/3 nodes are available: 1 No preemption victims found \
         for incoming pod, 2 Preemption is not helpful for scheduling."
    );
    assert_eq!(fit_error(0, &[]), "no nodes available to schedule pods");
}

fn owned(name: &str) -> Pod {
    pod(json!({"metadata": {"name": name, "ownerReferences": [
        {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "rs-uid", "controller": true}]}}))
}

#[test]
fn batch_spreads_and_accounts_for_assumed_pods() {
    let mut st = State {
        pods_synced: true,
        nodes_synced: true,
        ..Default::default()
    };
    for n in ["a", "b", "c"] {
        st.apply_node(node(n, json!({"status": {"allocatable": {"pods": "110"}}})));
    }
    for i in 0..6 {
        st.apply_pod(owned(&format!("p{i}")));
    }
    let work = st.cycle(Instant::now());
    assert_eq!(work.bindings.len(), 6);
    let mut per_node: HashMap<String, usize> = HashMap::new();
    for b in &work.bindings {
        *per_node.entry(b.node.clone()).or_default() += 1;
    }
    assert_eq!(
        per_node.values().copied().collect::<Vec<_>>(),
        vec![2, 2, 2]
    );
    // Nothing left to do; assumed pods are not scheduled twice.
    assert!(st.cycle(Instant::now()).bindings.is_empty());
}

#[test]
fn unschedulable_pod_is_parked_then_retried_on_node_change() {
    let mut st = State {
        pods_synced: true,
        nodes_synced: true,
        ..Default::default()
    };
    st.apply_node(node("a", json!({})));
    st.apply_pod(pod(
        json!({"spec": {"containers": [{"name": "c", "image": "x",
        "resources": {"requests": {"cpu": "8"}}}]}}),
    ));
    let t0 = Instant::now();
    let work = st.cycle(t0);
    assert!(work.bindings.is_empty());
    assert_eq!(work.failures.len(), 1);
    assert!(work.failures[0]
        .message
        .starts_with("0/1 nodes are available: 1 Insufficient cpu."));
    // Heartbeat-only node updates don't retry; a new node does (after the back-off).
    st.apply_node(node("a", json!({"status": {"conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": "2024-01-01T00:00:00Z"}]}})));
    assert!(st.cycle(t0 + Duration::from_secs(2)).failures.is_empty());
    st.apply_node(node(
        "big",
        json!({"status": {"allocatable": {"cpu": "16"}}}),
    ));
    assert!(st
        .cycle(t0 + Duration::from_millis(100))
        .bindings
        .is_empty());
    let work = st.cycle(t0 + Duration::from_secs(2));
    assert_eq!(work.bindings.len(), 1);
    assert_eq!(work.bindings[0].node, "big");
}
