//! PodDisruptionBudgets and priorities against the real API server, the controller manager and
//! fake nodes: the disruption controller's status for a Deployment's pods and evictions
//! against it, scheduler preemption of a lower-priority pod (DisruptionTarget, nominated
//! node, then bound), and `kubectl drain` waiting on a budget.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{NodeSpec, TestCluster};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, ListParams, WatchEvent, WatchParams};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(30);

async fn post(c: &TestCluster, path: &str, body: Value) -> (u16, Value) {
    let req = http::Request::builder()
        .method("POST")
        .uri(path)
        .header("Content-Type", "application/json")
        .body(serde_json::to_vec(&body).expect("json"))
        .expect("request");
    match c.client.request_text(req).await {
        Ok(text) => (201, serde_json::from_str(&text).unwrap_or(Value::Null)),
        Err(kube::Error::Api(e)) => (e.code, json!({"message": e.message, "reason": e.reason})),
        Err(e) => panic!("POST {path}: {e}"),
    }
}

async fn wait_default_sa(c: &TestCluster) {
    let sas: Api<ServiceAccount> = Api::namespaced(c.client.clone(), "default");
    c.wait_for("default ServiceAccount", WAIT, || async {
        sas.get_opt("default").await.ok().flatten().is_some()
    })
    .await;
}

async fn deployment(c: &TestCluster, name: &str, replicas: i32) {
    let body = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "web:v1"}]}}}});
    let (code, body) = post(c, "/apis/apps/v1/namespaces/default/deployments", body).await;
    assert_eq!(code, 201, "{body}");
}

async fn pdb(c: &TestCluster, name: &str, spec: Value) {
    let body = json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"name": name}, "spec": spec});
    let (code, body) = post(
        c,
        "/apis/policy/v1/namespaces/default/poddisruptionbudgets",
        body,
    )
    .await;
    assert_eq!(code, 201, "{body}");
}

fn status_of(p: &PodDisruptionBudget) -> (i32, i32, i32, i32) {
    let s = p.status.clone().unwrap_or_default();
    (
        s.expected_pods,
        s.desired_healthy,
        s.current_healthy,
        s.disruptions_allowed,
    )
}

async fn wait_pdb(c: &TestCluster, name: &str, want: (i32, i32, i32, i32)) -> PodDisruptionBudget {
    let api: Api<PodDisruptionBudget> = Api::namespaced(c.client.clone(), "default");
    c.wait_for(&format!("{name} status {want:?}"), WAIT, || async {
        api.get(name).await.is_ok_and(|p| {
            status_of(&p) == want
                && p.status.as_ref().and_then(|s| s.observed_generation) == p.metadata.generation
        })
    })
    .await;
    api.get(name).await.expect("pdb")
}

async fn pods_of(c: &TestCluster, app: &str) -> Vec<Pod> {
    let api: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    api.list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .expect("pods")
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect()
}

fn evict_path(name: &str) -> String {
    format!("/api/v1/namespaces/default/pods/{name}/eviction")
}

fn eviction(name: &str) -> Value {
    json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name}})
}

#[tokio::test]
async fn pdb_status_and_evictions_follow_a_deployment() {
    let c = TestCluster::start().await;
    let _node = c.add_node("pdb-node").await;
    wait_default_sa(&c).await;
    deployment(&c, "web", 3).await;
    pdb(
        &c,
        "web-min",
        json!({"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}}),
    )
    .await;
    let p = wait_pdb(&c, "web-min", (3, 2, 3, 1)).await;
    let cond = &p
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default()[0];
    assert_eq!(
        (
            cond.type_.as_str(),
            cond.status.as_str(),
            cond.reason.as_str()
        ),
        ("DisruptionAllowed", "True", "SufficientPods")
    );
    // A percentage counts against the Deployment's scale: 3 - ceil(50% of 3) = 1 desired.
    pdb(
        &c,
        "web-pct",
        json!({"maxUnavailable": "50%", "selector": {"matchLabels": {"app": "web"}}}),
    )
    .await;
    wait_pdb(&c, "web-pct", (3, 1, 3, 2)).await;
    // Two budgets over the same pods: the eviction API refuses (upstream's 500).
    let victim = pods_of(&c, "web").await[0]
        .metadata
        .name
        .clone()
        .expect("name");
    let (code, _) = post(&c, &evict_path(&victim), eviction(&victim)).await;
    assert_eq!(code, 500);
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(c.client.clone(), "default");
    pdbs.delete("web-pct", &Default::default())
        .await
        .expect("delete");

    // One eviction is allowed, the next refused until the replacement is ready.
    let (code, body) = post(&c, &evict_path(&victim), eviction(&victim)).await;
    assert_eq!(code, 201, "{body}");
    let names: Vec<String> = pods_of(&c, "web")
        .await
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .filter(|n| *n != victim)
        .collect();
    let second = names[0].clone();
    let (code, body) = post(&c, &evict_path(&second), eviction(&second)).await;
    assert_eq!(code, 429, "{body}");
    assert_eq!(
        body["message"],
        "Cannot evict pod as it would violate the pod's disruption budget."
    );
    // The ReplicaSet replaces the evicted pod; the budget allows one again.
    wait_pdb(&c, "web-min", (3, 2, 3, 1)).await;
    let (code, body) = post(&c, &evict_path(&second), eviction(&second)).await;
    assert_eq!(code, 201, "{body}");
}

async fn priority_class(c: &TestCluster, name: &str, value: i64) {
    let body = json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
        "metadata": {"name": name}, "value": value});
    let (code, body) = post(c, "/apis/scheduling.k8s.io/v1/priorityclasses", body).await;
    assert_eq!(code, 201, "{body}");
}

async fn cpu_pod(c: &TestCluster, name: &str, class: &str, extra: Value) {
    let mut spec = json!({"priorityClassName": class, "containers": [{"name": "c", "image": "web:v1",
        "resources": {"requests": {"cpu": "700m"}}}]});
    if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
        s.extend(e.clone());
    }
    let body = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}}, "spec": spec});
    let (code, body) = post(c, "/api/v1/namespaces/default/pods", body).await;
    assert_eq!(code, 201, "{body}");
}

#[tokio::test]
async fn preemption_evicts_a_lower_priority_pod() {
    let c = TestCluster::start().await;
    let _node = c.add_node_with(NodeSpec::new("small").cpu("1")).await;
    wait_default_sa(&c).await;
    priority_class(&c, "low", 10).await;
    priority_class(&c, "high", 1000).await;
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    cpu_pod(&c, "low-1", "low", json!({})).await;
    c.wait_for("low-1 running", WAIT, || async {
        pods.get("low-1")
            .await
            .is_ok_and(|p| p.status.and_then(|s| s.phase).as_deref() == Some("Running"))
    })
    .await;
    // preemptionPolicy Never: waits, nothing is preempted.
    let body = json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
        "metadata": {"name": "polite"}, "value": 2000, "preemptionPolicy": "Never"});
    assert_eq!(
        post(&c, "/apis/scheduling.k8s.io/v1/priorityclasses", body)
            .await
            .0,
        201
    );
    cpu_pod(&c, "polite-1", "polite", json!({})).await;
    c.wait_for("polite-1 unschedulable", WAIT, || async {
        pods.get("polite-1").await.is_ok_and(|p| {
            p.status.and_then(|s| s.conditions).is_some_and(|cs| {
                cs.iter()
                    .any(|c| c.type_ == "PodScheduled" && c.status == "False")
            })
        })
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let low = pods.get("low-1").await.expect("low-1 still there");
    assert!(low.metadata.deletion_timestamp.is_none());
    pods.delete("polite-1", &Default::default())
        .await
        .expect("delete polite");

    // A higher-priority pod preempts it. Watch from before its creation so no transient
    // state (the victim's condition, the nomination) can slip between two polls.
    let rv = pods
        .list(&ListParams::default())
        .await
        .expect("list pods")
        .metadata
        .resource_version
        .unwrap_or_default();
    let mut watch = pods
        .watch(&WatchParams::default(), &rv)
        .await
        .expect("watch pods")
        .boxed();
    cpu_pod(&c, "high-1", "high", json!({})).await;
    let (mut saw_target, mut saw_nominated, mut bound) = (false, false, false);
    let deadline = tokio::time::Instant::now() + WAIT;
    while !bound {
        let ev = tokio::time::timeout_at(deadline, watch.next())
            .await
            .expect("high-1 bound in time")
            .expect("watch open")
            .expect("watch event");
        let pod = match ev {
            WatchEvent::Added(p) | WatchEvent::Modified(p) | WatchEvent::Deleted(p) => p,
            _ => continue,
        };
        let name = pod.metadata.name.as_deref().unwrap_or_default();
        let status = pod.status.clone().unwrap_or_default();
        if name == "low-1"
            && status.conditions.unwrap_or_default().iter().any(|c| {
                c.type_ == "DisruptionTarget"
                    && c.reason.as_deref() == Some("PreemptionByScheduler")
            })
        {
            saw_target = true;
        }
        if name == "high-1" {
            saw_nominated |= status.nominated_node_name.as_deref() == Some("small");
            bound = pod.spec.and_then(|s| s.node_name).as_deref() == Some("small");
        }
    }
    assert!(
        saw_target,
        "the victim showed DisruptionTarget/PreemptionByScheduler"
    );
    assert!(saw_nominated, "the preemptor was nominated to the node");
    assert!(
        pods.get_opt("low-1").await.expect("get").is_none()
            || pods
                .get("low-1")
                .await
                .is_ok_and(|p| p.metadata.deletion_timestamp.is_some())
    );
}

struct Kubectl {
    kubeconfig: PathBuf,
    home: tempfile::TempDir,
}

impl Kubectl {
    fn new(kubeconfig: &Path) -> Self {
        Kubectl {
            kubeconfig: kubeconfig.to_path_buf(),
            home: tempfile::tempdir().expect("home"),
        }
    }

    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new("kubectl");
        cmd.args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", self.home.path())
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        cmd
    }
}

#[tokio::test]
async fn kubectl_drain_waits_for_the_budget() {
    let c = TestCluster::start().await;
    let _a = c.add_node("drain-a").await;
    wait_default_sa(&c).await;
    deployment(&c, "app", 2).await;
    pdb(
        &c,
        "app",
        json!({"minAvailable": 1, "selector": {"matchLabels": {"app": "app"}}}),
    )
    .await;
    wait_pdb(&c, "app", (2, 1, 2, 1)).await;
    let k = Kubectl::new(&c.kubeconfig);
    // Both pods are on drain-a, the only node: drain evicts one, then must wait (429) until
    // its replacement runs elsewhere.
    let drain = k
        .command(&[
            "drain",
            "drain-a",
            "--ignore-daemonsets",
            "--delete-emptydir-data",
            "--timeout=90s",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl drain");
    // The first eviction goes through; the replacement has nowhere to go (drain-a is cordoned).
    c.wait_for("one app pod left", WAIT, || async {
        pods_of(&c, "app")
            .await
            .iter()
            .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some("drain-a"))
            .count()
            == 1
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        pods_of(&c, "app")
            .await
            .iter()
            .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some("drain-a"))
            .count(),
        1,
        "the budget holds the second pod"
    );
    // A second node: the replacement becomes ready there and drain finishes.
    let _b = c.add_node("drain-b").await;
    let out = tokio::time::timeout(Duration::from_secs(120), drain.wait_with_output())
        .await
        .expect("drain finishes")
        .expect("drain output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "drain failed\nstdout: {stdout}\nstderr: {stderr}"
    );
    assert!(stdout.contains("node/drain-a drained"), "{stdout}");
    assert!(
        stderr.contains("Cannot evict pod as it would violate the pod's disruption budget."),
        "{stderr}"
    );
    let on_a = pods_of(&c, "app")
        .await
        .iter()
        .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some("drain-a"))
        .count();
    assert_eq!(on_a, 0);
}
