//! Test harness: a real API server over HTTPS on a random loopback port (own data dir, SQLite
//! store), every controller via `skiff_controllers::run`, and fake nodes. A `FakeNode` stands in
//! for the node agent, which does not exist yet: it registers a Node and its Lease, renews the
//! lease, marks pods bound to it Running and Ready through pods/status, and finalizes pods that
//! are being deleted. It lives in test code only.
#![allow(dead_code)]

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::json;
use skiff_controllers::Options;

pub struct TestCluster {
    pub client: Client,
    pub kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
    _stop_server: tokio::sync::oneshot::Sender<()>,
    _stop_controllers: tokio::sync::oneshot::Sender<()>,
}

/// Options with short timings so node-failure tests finish in seconds.
pub fn fast_options() -> Options {
    Options {
        node_monitor_grace_period: Duration::from_secs(3),
        node_monitor_period: Duration::from_millis(500),
        default_toleration_seconds: 2,
        ..Options::default()
    }
}

pub async fn client_from(path: &std::path::Path) -> Client {
    skiff_client::config::from_kubeconfig(path)
        .await
        .expect("client")
}

impl TestCluster {
    pub async fn start() -> Self {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(options: Options) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let store =
            Arc::new(skiff_store::SqliteStore::open(&dir.path().join("state.db")).expect("store"));
        let mut config =
            skiff_apiserver::ServerConfig::new(dir.path(), "127.0.0.1:0".parse().expect("addr"));
        config.default_toleration_seconds = options.default_toleration_seconds;
        let server = skiff_apiserver::Server::bind(config, store)
            .await
            .expect("bind");
        let kubeconfig = server.kubeconfig_path().to_path_buf();
        let (stop_server, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(server.run(async {
            let _ = rx.await;
        }));
        let client = client_from(&kubeconfig).await;
        let (stop_controllers, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(skiff_controllers::run(client.clone(), options, async {
            let _ = rx.await;
        }));
        TestCluster {
            client,
            kubeconfig,
            _dir: dir,
            _stop_server: stop_server,
            _stop_controllers: stop_controllers,
        }
    }

    /// A node with 4 CPUs, 8 GiB and room for 110 pods.
    pub async fn add_node(&self, name: &str) -> FakeNode {
        self.add_node_with(NodeSpec::new(name)).await
    }

    pub async fn add_node_with(&self, spec: NodeSpec) -> FakeNode {
        FakeNode::start(self.client.clone(), spec).await
    }

    /// Polls `check` until it returns true; panics with `what` after `timeout`.
    pub async fn wait_for<F, Fut>(&self, what: &str, timeout: Duration, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = bool>,
    {
        let deadline = Instant::now() + timeout;
        loop {
            // Each check is bounded too: a request stuck in the client fails the test at the
            // deadline instead of hanging it.
            let left = deadline.saturating_duration_since(Instant::now());
            if tokio::time::timeout(left, check()).await == Ok(true) {
                return;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// What a fake node registers.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    pub name: String,
    pub labels: serde_json::Map<String, serde_json::Value>,
    pub cpu: String,
    pub memory: String,
    pub pods: String,
    pub taints: Vec<serde_json::Value>,
    pub unschedulable: bool,
}

impl NodeSpec {
    pub fn new(name: &str) -> Self {
        let mut labels = serde_json::Map::new();
        labels.insert("kubernetes.io/hostname".into(), name.into());
        labels.insert("kubernetes.io/os".into(), "linux".into());
        NodeSpec {
            name: name.into(),
            labels,
            cpu: "4".into(),
            memory: "8Gi".into(),
            pods: "110".into(),
            taints: Vec::new(),
            unschedulable: false,
        }
    }

    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    pub fn cpu(mut self, cpu: &str) -> Self {
        self.cpu = cpu.into();
        self
    }

    pub fn pods(mut self, pods: &str) -> Self {
        self.pods = pods.into();
        self
    }

    pub fn taint(mut self, key: &str, value: &str, effect: &str) -> Self {
        self.taints
            .push(json!({"key": key, "value": value, "effect": effect}));
        self
    }
}

static NODE_COUNTER: AtomicU64 = AtomicU64::new(1);

/// A stand-in kubelet. Dropping it stops it (its Node object stays, like a dead machine).
pub struct FakeNode {
    pub name: String,
    heartbeats: Arc<AtomicBool>,
    ready_delay_ms: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

fn now() -> String {
    jiff::Timestamp::now().to_string()
}

impl FakeNode {
    pub async fn start(client: Client, spec: NodeSpec) -> Self {
        let index = NODE_COUNTER.fetch_add(1, Ordering::Relaxed) % 250;
        let nodes: Api<Node> = Api::all(client.clone());
        let node: Node = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": spec.name, "labels": spec.labels},
            "spec": {"taints": spec.taints, "unschedulable": spec.unschedulable},
        }))
        .expect("node json");
        nodes
            .create(&PostParams::default(), &node)
            .await
            .expect("create node");
        let heartbeats = Arc::new(AtomicBool::new(true));
        let ready_delay_ms = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(kubelet_loop(
            client,
            spec.clone(),
            index,
            heartbeats.clone(),
            ready_delay_ms.clone(),
        ));
        let fake = FakeNode {
            name: spec.name.clone(),
            heartbeats,
            ready_delay_ms,
            task,
        };
        // Ready before returning, so tests can schedule onto it at once.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let ready = nodes
                .get(&spec.name)
                .await
                .ok()
                .and_then(|n| n.status)
                .and_then(|s| s.conditions)
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            if ready {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "fake node {} never became Ready",
                spec.name
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        fake
    }

    /// Simulates a dead machine: no lease renewals, no status updates, pods left as they are.
    pub fn stop_heartbeats(&self) {
        self.heartbeats.store(false, Ordering::SeqCst);
    }

    pub fn resume_heartbeats(&self) {
        self.heartbeats.store(true, Ordering::SeqCst);
    }

    /// Pods become Ready only this long after the node first sees them running.
    pub fn set_ready_delay(&self, delay: Duration) {
        self.ready_delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }
}

impl Drop for FakeNode {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn kubelet_loop(
    client: Client,
    spec: NodeSpec,
    index: u64,
    heartbeats: Arc<AtomicBool>,
    ready_delay_ms: Arc<AtomicU64>,
) {
    let nodes: Api<Node> = Api::all(client.clone());
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let pods: Api<Pod> = Api::all(client.clone());
    let mut first_seen: std::collections::HashMap<String, Instant> = Default::default();
    let mut next_ip: u32 = 2;
    let mut last_heartbeat = Instant::now() - Duration::from_secs(60);
    loop {
        if heartbeats.load(Ordering::SeqCst) {
            if last_heartbeat.elapsed() >= Duration::from_millis(500) {
                last_heartbeat = Instant::now();
                heartbeat(&nodes, &leases, &spec).await;
            }
            sync_pods(
                &pods,
                &spec,
                index,
                &mut first_seen,
                &mut next_ip,
                &ready_delay_ms,
            )
            .await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn heartbeat(nodes: &Api<Node>, leases: &Api<Lease>, spec: &NodeSpec) {
    let t = now();
    let status = json!({"status": {
        "capacity": {"cpu": spec.cpu, "memory": spec.memory, "pods": spec.pods},
        "allocatable": {"cpu": spec.cpu, "memory": spec.memory, "pods": spec.pods},
        "conditions": [
            {"type": "Ready", "status": "True", "reason": "KubeletReady",
             "message": "kubelet is posting ready status", "lastHeartbeatTime": t, "lastTransitionTime": t},
            {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory",
             "lastHeartbeatTime": t, "lastTransitionTime": t},
            {"type": "DiskPressure", "status": "False", "reason": "KubeletHasNoDiskPressure",
             "lastHeartbeatTime": t, "lastTransitionTime": t},
            {"type": "PIDPressure", "status": "False", "reason": "KubeletHasSufficientPID",
             "lastHeartbeatTime": t, "lastTransitionTime": t},
        ],
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"},
                      {"type": "Hostname", "address": spec.name}],
        "nodeInfo": {"kubeletVersion": "v1.33.0-fake", "kubeProxyVersion": "v1.33.0-fake",
                     "containerRuntimeVersion": "fake://1", "operatingSystem": "linux",
                     "architecture": "amd64", "osImage": "fake", "kernelVersion": "0",
                     "machineID": "", "systemUUID": "", "bootID": ""},
    }});
    // Only the Ready heartbeat matters for scheduling; keep the other conditions stable.
    let _ = nodes
        .patch_status(&spec.name, &PatchParams::default(), &Patch::Merge(&status))
        .await;
    let micro = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string();
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": spec.name, "namespace": "kube-node-lease"},
        "spec": {"holderIdentity": spec.name, "leaseDurationSeconds": 40, "renewTime": micro},
    });
    let applied = leases
        .patch(
            &spec.name,
            &PatchParams::apply("fake-kubelet").force(),
            &Patch::Apply(&lease),
        )
        .await;
    if applied.is_err() {
        let lease: Lease = match serde_json::from_value(lease) {
            Ok(l) => l,
            Err(_) => return,
        };
        let _ = leases.create(&PostParams::default(), &lease).await;
    }
}

async fn sync_pods(
    pods: &Api<Pod>,
    spec: &NodeSpec,
    index: u64,
    first_seen: &mut std::collections::HashMap<String, Instant>,
    next_ip: &mut u32,
    ready_delay_ms: &AtomicU64,
) {
    let list = match pods
        .list(&ListParams::default().fields(&format!("spec.nodeName={}", spec.name)))
        .await
    {
        Ok(l) => l,
        Err(_) => return,
    };
    let delay = Duration::from_millis(ready_delay_ms.load(Ordering::SeqCst));
    for pod in list.items {
        let (Some(name), Some(ns)) = (pod.metadata.name.clone(), pod.metadata.namespace.clone())
        else {
            continue;
        };
        let api: Api<Pod> = Api::namespaced(pods.clone().into_client(), &ns);
        if pod.metadata.deletion_timestamp.is_some() {
            // The containers "stop" at once; finalize like the kubelet does.
            let _ = api
                .delete(&name, &DeleteParams::default().grace_period(0))
                .await;
            first_seen.remove(&format!("{ns}/{name}"));
            continue;
        }
        let key = format!("{ns}/{name}");
        let seen = *first_seen.entry(key).or_insert_with(Instant::now);
        let ready = seen.elapsed() >= delay;
        let status = pod.status.clone().unwrap_or_default();
        let is_ready = status
            .conditions
            .as_ref()
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        let running = status.phase.as_deref() == Some("Running");
        if running && is_ready == ready {
            continue;
        }
        let ip = status.pod_ip.clone().unwrap_or_else(|| {
            *next_ip += 1;
            format!("100.64.{index}.{}", *next_ip % 250 + 2)
        });
        let t = now();
        let started = status
            .start_time
            .map(|s| s.0.to_string())
            .unwrap_or_else(|| t.clone());
        let flag = if ready { "True" } else { "False" };
        let containers: Vec<serde_json::Value> = pod
            .spec
            .as_ref()
            .map(|s| s.containers.as_slice())
            .unwrap_or_default()
            .iter()
            .map(|c| {
                json!({"name": c.name, "image": c.image.clone().unwrap_or_default(),
                       "imageID": "", "containerID": format!("fake://{name}-{}", c.name),
                       "ready": ready, "started": true, "restartCount": 0,
                       "state": {"running": {"startedAt": started}}})
            })
            .collect();
        let patch = json!({"status": {
            "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "hostIP": "127.0.0.1",
            "hostIPs": [{"ip": "127.0.0.1"}], "startTime": started,
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": t},
                {"type": "Initialized", "status": "True", "lastTransitionTime": t},
                {"type": "ContainersReady", "status": flag, "lastTransitionTime": t},
                {"type": "Ready", "status": flag, "lastTransitionTime": t},
            ],
            "containerStatuses": containers,
        }});
        let _ = api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await;
    }
}
