//! Harness for the pod tests: an in-process API server (own tempdir, SQLite store), a real
//! agent on its own data dir with a busybox image imported as `bb:1`, and a pod CIDR assigned
//! to its Node by the test (no node IPAM controller here). Drop tears everything down and
//! fails the test on leftover mounts.
#![allow(dead_code)]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::Client;
use serde_json::json;

static COUNTER: AtomicU32 = AtomicU32::new(0);

pub struct Harness {
    pub client: Client,
    pub dir: tempfile::TempDir,
    pub node: String,
    pub cidr: String,
    pub config: skiff_agent::AgentConfig,
    stop_agent: Option<tokio::sync::oneshot::Sender<()>>,
    agent: Option<tokio::task::JoinHandle<()>>,
    _stop_server: tokio::sync::oneshot::Sender<()>,
    /// Set once `shutdown` ran; otherwise Drop wipes the data dir with `skiff reset`.
    done: bool,
}

/// The `skiff` binary next to the test executable (built on demand).
pub fn skiff_exe() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target dir")
        .to_path_buf();
    let skiff = dir.join("skiff");
    if !skiff.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let ok = std::process::Command::new(cargo)
            .args(["build", "-p", "skiff", "--bin", "skiff"])
            .status()
            .expect("cargo build skiff")
            .success();
        assert!(ok, "building skiff failed");
    }
    skiff
}

pub fn busybox_image(data: &Path, work: &Path) {
    let root = work.join("rootfs");
    std::fs::create_dir_all(root.join("bin")).expect("mkdir");
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("copy busybox");
    for a in [
        "sh", "echo", "cat", "sleep", "true", "false", "env", "ls", "hostname", "httpd", "nc",
        "wget", "kill", "test", "dd", "head", "trap", "rm", "touch", "stat",
    ] {
        let _ = std::os::unix::fs::symlink("busybox", root.join("bin").join(a));
    }
    for d in ["proc", "sys", "dev", "tmp", "etc", "www"] {
        std::fs::create_dir_all(root.join(d)).expect("mkdir");
    }
    std::fs::write(root.join("www/index.html"), "hello\n").expect("index");
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").expect("passwd");
    std::fs::write(root.join("etc/group"), "root:x:0:\n").expect("group");
    let tar = work.join("rootfs.tar");
    let ok = std::process::Command::new("tar")
        .arg("-C")
        .arg(&root)
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .expect("tar")
        .success();
    assert!(ok, "tar failed");
    let store = skiff_image::ImageStore::open(data.join("images")).expect("image store");
    store
        .import(&tar, Some("bb:1"), &skiff_image::NoProgress)
        .expect("import busybox");
}

impl Harness {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Like `start`, with the agent's configuration adjusted first (say, shorter periods).
    pub async fn start_with(adjust: impl FnOnce(&mut skiff_agent::AgentConfig)) -> Self {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = tempfile::Builder::new()
            .prefix("skiff-agent-test-")
            .tempdir()
            .expect("tempdir");
        let root = std::fs::canonicalize(dir.path()).expect("canonical");
        let store =
            Arc::new(skiff_store::SqliteStore::open(&root.join("state.db")).expect("store"));
        let mut config = skiff_apiserver::ServerConfig::new(
            root.join("server"),
            "127.0.0.1:0".parse().expect("addr"),
        );
        // No controllers here, so no `default` ServiceAccount: run without that admission.
        config.disable_admission_plugins = vec!["ServiceAccount".into()];
        let server = skiff_apiserver::Server::bind(config, store)
            .await
            .expect("bind");
        let kubeconfig = server.kubeconfig_path().to_path_buf();
        let (stop_server, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(server.run(async {
            let _ = rx.await;
        }));
        let kc = Kubeconfig::read_from(&kubeconfig).expect("kubeconfig");
        let kcfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .expect("client config");
        let client = Client::try_from(kcfg).expect("client");
        let data = root.join("data");
        std::fs::create_dir_all(&data).expect("data dir");
        busybox_image(&data, &root);
        // A per-process, per-harness /24 so parallel tests never share a bridge subnet.
        let third = (std::process::id() % 50) * 4 + n % 4 + 40;
        let cidr = format!("100.64.{third}.0/24");
        let node = format!("agent-test-{}-{n}", std::process::id());
        let mut config = skiff_agent::AgentConfig {
            data_dir: data,
            node_name: node.clone(),
            node_ip: "127.0.0.1".parse().expect("ip"),
            api_listen: "127.0.0.1:0".parse().expect("addr"),
            api_token: "token".into(),
            skiff_exe: skiff_exe(),
            lease_duration_seconds: 40,
            offline: true,
            sync_frequency: Duration::from_secs(60),
            housekeeping_interval: Duration::from_secs(10),
            limits: Default::default(),
            api_server: None,
            storage_root: None,
        };
        adjust(&mut config);
        let mut h = Harness {
            client,
            dir,
            node,
            cidr,
            config,
            stop_agent: None,
            agent: None,
            _stop_server: stop_server,
            done: false,
        };
        h.start_agent().await;
        h.assign_cidr().await;
        h
    }

    pub async fn start_agent(&mut self) {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let client = self.client.clone();
        let config = self.config.clone();
        self.stop_agent = Some(tx);
        self.agent = Some(tokio::spawn(async move {
            if let Err(e) = skiff_agent::run(client, config, async {
                let _ = rx.await;
            })
            .await
            {
                panic!("agent failed: {e}");
            }
        }));
    }

    pub async fn stop_agent(&mut self) {
        if let Some(tx) = self.stop_agent.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.agent.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), h).await;
        }
    }

    async fn assign_cidr(&self) {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let node = self.node.clone();
        wait_for("node registration", Duration::from_secs(20), || {
            let nodes = nodes.clone();
            let node = node.clone();
            async move { nodes.get_opt(&node).await.ok().flatten().is_some() }
        })
        .await;
        let patch = json!({"spec": {"podCIDR": self.cidr, "podCIDRs": [self.cidr]}});
        nodes
            .patch(&self.node, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("assign pod CIDR");
    }

    pub fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), "default")
    }

    /// Creates a pod on this node from a JSON spec (nodeName filled in).
    pub async fn create_pod(&self, name: &str, mut spec: serde_json::Value) -> Pod {
        spec["nodeName"] = json!(self.node);
        let pod: Pod = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "labels": {"app": name}},
            "spec": spec,
        }))
        .expect("pod json");
        self.pods()
            .create(&PostParams::default(), &pod)
            .await
            .expect("create pod")
    }

    /// Polls the pod until `check` holds; returns it.
    pub async fn wait_pod(
        &self,
        name: &str,
        what: &str,
        timeout: Duration,
        check: impl Fn(&Pod) -> bool,
    ) -> Pod {
        let deadline = Instant::now() + timeout;
        loop {
            let pod = self.pods().get_opt(name).await.ok().flatten();
            if let Some(p) = &pod {
                if check(p) {
                    return p.clone();
                }
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; pod: {:#?}",
                pod.and_then(|p| p.status)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub async fn wait_gone(&self, name: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.pods().get_opt(name).await.ok().flatten().is_some() {
            assert!(Instant::now() < deadline, "pod {name} was never deleted");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    pub fn runtime(&self) -> skiff_runtime::Runtime {
        skiff_runtime::Runtime::new(skiff_runtime::RuntimeConfig {
            data_dir: self.config.data_dir.clone(),
            shim_exe: self.config.skiff_exe.clone(),
        })
        .expect("runtime")
    }

    /// Deletes every pod, waits for the agent to finalize them, stops the agent, tears the
    /// network down and checks that no mounts are left under the tempdir.
    pub async fn shutdown(mut self) {
        let pods = self.pods();
        if let Ok(list) = pods.list(&Default::default()).await {
            for p in list.items {
                if let Some(n) = p.metadata.name {
                    let _ = pods
                        .delete(&n, &DeleteParams::default().grace_period(1))
                        .await;
                    self.wait_gone(&n, Duration::from_secs(60)).await;
                }
            }
        }
        // Pods deleted at once (terminal ones) are torn down after they vanish from the API:
        // give those workers time to unmount and remove the pod directories.
        let pods_dir = self.config.data_dir.join("agent/pods");
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::fs::read_dir(&pods_dir).is_ok_and(|mut d| d.next().is_some())
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.stop_agent().await;
        let rt = self.runtime();
        for c in rt.list().unwrap_or_default() {
            let _ = rt.remove(&c.id, true);
        }
        if let Ok(net) = skiff_net::PodNetwork::new(skiff_net::NetConfig {
            data_dir: self.config.data_dir.clone(),
            pod_cidr: self.cidr.clone(),
            cni_bin_dir: None,
        }) {
            let _ = net.teardown_all();
        }
        skiff_agent::proxy::remove_table(&self.config.data_dir).expect("remove the proxy table");
        let table = skiff_net::proxy::table_name(&self.config.data_dir);
        let tables = std::process::Command::new("nft")
            .args(["list", "tables"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        assert!(!tables.contains(&table), "nft table {table} left behind");
        let root = std::fs::canonicalize(self.dir.path())
            .expect("canonical")
            .to_string_lossy()
            .into_owned();
        let mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(&root))
            .map(String::from)
            .collect();
        self.done = true;
        assert!(mounts.is_empty(), "mounts left behind: {mounts:#?}");
    }
}

impl Drop for Harness {
    /// Last-resort cleanup when a test failed before `shutdown`: stop the agent and wipe every
    /// container, sandbox and the bridge of the data dir.
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if let Some(tx) = self.stop_agent.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.agent.take() {
            h.abort();
        }
        std::thread::sleep(Duration::from_millis(500));
        let _ = std::process::Command::new(&self.config.skiff_exe)
            .arg("--data-dir")
            .arg(&self.config.data_dir)
            .arg("reset")
            .status();
    }
}

pub async fn wait_for<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn container_status<'a>(
    pod: &'a Pod,
    name: &str,
) -> Option<&'a k8s_openapi::api::core::v1::ContainerStatus> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == name)
}

pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Runtime instances of `container` in pod `pod`, newest attempt first.
pub fn instances(h: &Harness, pod: &str, container: &str) -> Vec<skiff_runtime::ContainerInfo> {
    let mut mine: Vec<skiff_runtime::ContainerInfo> = h
        .runtime()
        .list()
        .unwrap_or_default()
        .into_iter()
        .filter(|i| {
            skiff_agent::pods::parse_runtime_name(&i.name)
                .is_some_and(|n| n.pod == pod && n.container == container)
        })
        .collect();
    mine.sort_by_key(|i| {
        std::cmp::Reverse(
            skiff_agent::pods::parse_runtime_name(&i.name)
                .map(|n| n.attempt)
                .unwrap_or(0),
        )
    });
    mine
}

/// The newest runtime instance of `container` in pod `pod`.
pub fn instance(h: &Harness, pod: &str, container: &str) -> Option<skiff_runtime::ContainerInfo> {
    instances(h, pod, container).into_iter().next()
}

/// The whole CRI log of one instance ("" if unreadable).
pub fn log_text(info: &skiff_runtime::ContainerInfo) -> String {
    std::fs::read_to_string(&info.log_path).unwrap_or_default()
}
