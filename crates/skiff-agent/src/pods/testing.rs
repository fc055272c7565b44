//! An in-memory [`PodRuntime`] and a canned API server, so one pod worker's back-off, status,
//! probe and termination logic runs as plain unit tests: no root, no containers, no network.
//! Timers are tokio's, so the tests run on paused time and step it with `advance`.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use k8s_openapi::api::core::v1::{ExecAction, Pod};
use serde_json::{json, Value};
use skiff_image::{Credentials, ResolvedImage};
use skiff_net::{Sandbox, SandboxRequest};
use skiff_runtime::{ContainerInfo, ContainerSpec, ExitInfo, JoinNamespaces, Status};

use super::index::parse_runtime_name;
use super::manager::Ctx;
use super::runtime::PodRuntime;
use super::worker::Worker;
use super::PodIndex;
use crate::{AgentConfig, Error, NodeLimits, Result};

/// How an exec (probe or preStop hook) in a container behaves.
#[derive(Debug, Clone, Copy)]
pub(super) struct ExecBehaviour {
    pub ok: bool,
    pub takes: Duration,
}

#[derive(Default)]
struct State {
    next_id: u64,
    containers: Vec<ContainerInfo>,
    /// Images in the node's store.
    images: HashMap<String, ResolvedImage>,
    /// Pulls of an image that fail before one succeeds.
    pull_failures: HashMap<String, u32>,
    pulls: Vec<String>,
    sandboxes: HashMap<String, Sandbox>,
    /// By container name (the pod's, not the runtime's).
    exec: HashMap<String, ExecBehaviour>,
    /// Runtime calls in order: "start app", "exec app", "stop app 25s", "remove app", …
    log: Vec<String>,
}

/// The fake runtime. Containers run until a test ends them with [`FakeRuntime::exit`] (or
/// the worker stops them: they then die of SIGKILL).
#[derive(Default)]
pub(super) struct FakeRuntime {
    state: Mutex<State>,
}

fn container_of(runtime_name: &str) -> String {
    parse_runtime_name(runtime_name)
        .map(|n| n.container)
        .unwrap_or_default()
}

fn rfc3339(t: jiff::Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

impl FakeRuntime {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    pub fn add_image(&self, image: &str) {
        let mut resolved = ResolvedImage {
            name: image.to_string(),
            tag: "latest".into(),
            id: format!("sha256:{:064x}", image.len()),
            layers: Vec::new(),
            config: Default::default(),
        };
        resolved.config.set_cmd(Some(vec!["sh".into()]));
        self.state().images.insert(image.to_string(), resolved);
    }

    /// The next `n` pulls of `image` fail; the one after succeeds.
    pub fn fail_pulls(&self, image: &str, n: u32) {
        self.state().pull_failures.insert(image.to_string(), n);
    }

    pub fn pulls(&self) -> usize {
        self.state().pulls.len()
    }

    pub fn set_exec(&self, container: &str, ok: bool, takes: Duration) {
        self.state()
            .exec
            .insert(container.to_string(), ExecBehaviour { ok, takes });
    }

    pub fn log(&self) -> Vec<String> {
        self.state().log.clone()
    }

    /// Instances of `container`, newest attempt first: (attempt, status, exit code).
    pub fn instances(&self, container: &str) -> Vec<(u32, Status, Option<i32>)> {
        let mut v: Vec<_> = self
            .state()
            .containers
            .iter()
            .filter_map(|i| {
                let n = parse_runtime_name(&i.name)?;
                (n.container == container)
                    .then(|| (n.attempt, i.status, i.exit.as_ref().map(|e| e.code)))
            })
            .collect();
        v.sort_by_key(|x| std::cmp::Reverse(x.0));
        v
    }

    /// The newest instance of `container` exits with `code`, `ago` before now.
    pub fn exit(&self, container: &str, code: i32, ago: Duration) {
        let finished = jiff::Timestamp::now() - jiff::SignedDuration::try_from(ago).unwrap();
        let mut st = self.state();
        let newest = st
            .containers
            .iter_mut()
            .filter(|i| container_of(&i.name) == container)
            .max_by_key(|i| parse_runtime_name(&i.name).map(|n| n.attempt))
            .expect("no such container");
        newest.status = Status::Exited;
        newest.pid = None;
        newest.exit = Some(ExitInfo {
            code,
            signal: None,
            oom_killed: false,
            finished_at: rfc3339(finished),
        });
    }
}

#[async_trait::async_trait]
impl PodRuntime for FakeRuntime {
    async fn run_sandbox(&self, req: SandboxRequest) -> Result<Sandbox> {
        let mut st = self.state();
        let n = st.sandboxes.len() as u8;
        let sb = st
            .sandboxes
            .entry(req.pod_uid.clone())
            .or_insert_with(|| Sandbox {
                pod_uid: req.pod_uid.clone(),
                netns: PathBuf::from("/nonexistent/netns"),
                ipcns: PathBuf::from("/nonexistent/ipcns"),
                utsns: PathBuf::from("/nonexistent/utsns"),
                ip: Ipv4Addr::new(10, 42, 0, 10 + n),
                gateway: Ipv4Addr::new(10, 42, 0, 1),
                host_network: false,
            })
            .clone();
        Ok(sb)
    }

    async fn remove_sandbox(&self, pod_uid: &str) -> Result<()> {
        let mut st = self.state();
        st.sandboxes.remove(pod_uid);
        st.log.push("remove sandbox".into());
        Ok(())
    }

    async fn list_sandboxes(&self) -> Result<Vec<String>> {
        Ok(self.state().sandboxes.keys().cloned().collect())
    }

    fn dns_server(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 42, 0, 1)
    }

    async fn image_status(&self, image: &str) -> Result<ResolvedImage> {
        self.state()
            .images
            .get(image)
            .cloned()
            .ok_or_else(|| Error::Other(format!("image {image} not found")))
    }

    async fn pull_image(&self, image: &str, _credentials: Option<&Credentials>) -> Result<()> {
        let failing = {
            let mut st = self.state();
            st.pulls.push(image.to_string());
            match st.pull_failures.get_mut(image) {
                Some(n) if *n > 0 => {
                    *n -= 1;
                    true
                }
                _ => false,
            }
        };
        if failing {
            return Err(Error::Other("connection refused".into()));
        }
        self.add_image(image);
        Ok(())
    }

    async fn list_containers(&self) -> Result<Vec<ContainerInfo>> {
        Ok(self.state().containers.clone())
    }

    async fn start_container(
        &self,
        spec: ContainerSpec,
        _join: JoinNamespaces,
    ) -> Result<ContainerInfo> {
        let mut st = self.state();
        st.next_id += 1;
        let name = spec.name.clone().unwrap_or_default();
        let info = ContainerInfo {
            id: format!("{:064x}", st.next_id),
            name: name.clone(),
            image: spec.image.clone(),
            image_id: spec.image_id.clone(),
            args: spec.args.clone(),
            status: Status::Running,
            created: rfc3339(jiff::Timestamp::now()),
            started_at: Some(rfc3339(jiff::Timestamp::now())),
            pid: Some(1000 + st.next_id as i32),
            shim_pid: Some(2000 + st.next_id as i32),
            exit: None,
            log_path: PathBuf::from("/nonexistent/log"),
        };
        st.log.push(format!("start {}", container_of(&name)));
        st.containers.push(info.clone());
        Ok(info)
    }

    async fn stop_container(&self, id: &str, grace: Duration) -> Result<()> {
        let mut st = self.state();
        let Some(i) = st.containers.iter_mut().find(|i| i.id == id) else {
            return Ok(());
        };
        let name = container_of(&i.name);
        if i.status == Status::Running {
            // It ignores SIGTERM: killed once the grace period is over.
            i.status = Status::Exited;
            i.pid = None;
            i.exit = Some(ExitInfo {
                code: 137,
                signal: Some(9),
                oom_killed: false,
                finished_at: rfc3339(jiff::Timestamp::now()),
            });
        }
        // Whole seconds, rounded (paused time can land a millisecond off).
        st.log
            .push(format!("stop {name} {}s", (grace.as_millis() + 500) / 1000));
        Ok(())
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        let mut st = self.state();
        if let Some(pos) = st.containers.iter().position(|i| i.id == id) {
            let info = st.containers.remove(pos);
            st.log.push(format!("remove {}", container_of(&info.name)));
        }
        Ok(())
    }

    async fn exec_sync(
        &self,
        id: &str,
        _action: &ExecAction,
        timeout: Duration,
    ) -> std::result::Result<(), String> {
        let behaviour = {
            let mut st = self.state();
            let name = st
                .containers
                .iter()
                .find(|i| i.id == id)
                .map(|i| container_of(&i.name))
                .unwrap_or_default();
            st.log.push(format!("exec {name}"));
            st.exec.get(&name).copied().unwrap_or(ExecBehaviour {
                ok: true,
                takes: Duration::ZERO,
            })
        };
        if behaviour.takes > timeout {
            tokio::time::sleep(timeout).await;
            return Err("command timed out".into());
        }
        tokio::time::sleep(behaviour.takes).await;
        if behaviour.ok {
            Ok(())
        } else {
            Err("command exited with 1".into())
        }
    }

    fn writable_layer(&self, _id: &str) -> PathBuf {
        PathBuf::from("/nonexistent/upper")
    }

    fn pod_cgroups(&self) -> Vec<String> {
        Vec::new()
    }

    async fn remove_pod_cgroup(&self, _name: &str) -> Result<()> {
        Ok(())
    }
}

/// Requests the canned API server received: (method, path and query, body).
type Requests = Arc<Mutex<Vec<(String, String, Value)>>>;

/// A kube client answering like an API server that accepts every write: status patches,
/// events and the final delete succeed, lists are empty, everything else is 404.
fn fake_client() -> (kube::Client, Requests) {
    let seen: Requests = Arc::default();
    let log = seen.clone();
    let service = tower::service_fn(move |req: http::Request<kube::client::Body>| {
        let log = log.clone();
        async move {
            let method = req.method().to_string();
            let path = req
                .uri()
                .path_and_query()
                .map(|p| p.to_string())
                .unwrap_or_default();
            let body = req.into_body().collect_bytes().await?;
            let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            log.lock()
                .unwrap()
                .push((method.clone(), path.clone(), body.clone()));
            let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"}});
            let (code, answer) = match method.as_str() {
                "PATCH" if path.contains("/pods/") => (200, pod),
                "DELETE" if path.contains("/pods/") => (200, pod),
                "POST" => (201, body),
                // Single objects (ConfigMaps, Secrets, the kubernetes Service) do not exist.
                "GET" if path.contains("/services/") => (
                    404,
                    json!({"apiVersion": "v1", "kind": "Status", "status": "Failure",
                           "reason": "NotFound", "code": 404, "message": "not found"}),
                ),
                "GET" if !path.contains("/pods/") => (
                    200,
                    json!({"apiVersion": "v1", "kind": "List", "metadata": {}, "items": []}),
                ),
                _ => (
                    404,
                    json!({"apiVersion": "v1", "kind": "Status", "status": "Failure",
                           "reason": "NotFound", "code": 404, "message": "not found"}),
                ),
            };
            let resp = http::Response::builder()
                .status(code)
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(answer.to_string())))
                .map_err(|e| kube::Error::Service(Box::new(e)))?;
            Ok::<_, kube::Error>(resp)
        }
    });
    (kube::Client::new(service, "default"), seen)
}

pub(super) const UID: &str = "0123abcd-0000-4000-8000-000000000001";

/// One worker over the fake runtime and the canned API server.
pub(super) struct Harness {
    pub rt: Arc<FakeRuntime>,
    pub requests: Requests,
    pub worker: Worker,
    _dir: tempfile::TempDir,
    _tx: tokio::sync::watch::Sender<Option<Pod>>,
}

impl Harness {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = AgentConfig {
            data_dir: dir.path().to_path_buf(),
            node_name: "node-a".into(),
            node_ip: Ipv4Addr::new(192, 0, 2, 10),
            api_listen: "127.0.0.1:0".parse().unwrap(),
            api_token: "token".into(),
            skiff_exe: PathBuf::from("/nonexistent/skiff"),
            lease_duration_seconds: 40,
            offline: false,
            sync_frequency: Duration::from_secs(60),
            housekeeping_interval: Duration::from_secs(10),
            limits: NodeLimits::default(),
            api_server: None,
            storage_root: None,
        };
        let rt = Arc::new(FakeRuntime::default());
        let (client, requests) = fake_client();
        let index = Arc::new(PodIndex::new(&config).unwrap());
        let ctx = Ctx::new(
            client,
            config,
            rt.clone(),
            index,
            Arc::new(std::sync::OnceLock::new()),
        );
        let (tx, rx) = tokio::sync::watch::channel(None);
        Harness {
            rt,
            requests,
            worker: Worker::new(Arc::new(ctx), UID.to_string(), rx),
            _dir: dir,
            _tx: tx,
        }
    }

    /// One sync pass (after a relist, as the next resync tick would see the runtime), and
    /// the status the worker last wrote.
    pub async fn sync(&mut self, pod: &Pod) -> Value {
        self.worker.ctx.containers.invalidate();
        self.worker.sync(pod).await.unwrap();
        self.worker.last_status.clone().unwrap_or(Value::Null)
    }

    /// Requests with this method whose path contains `part`.
    pub fn requests(&self, method: &str, part: &str) -> Vec<(String, Value)> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|(m, p, _)| m == method && p.contains(part))
            .map(|(_, p, b)| (p.clone(), b.clone()))
            .collect()
    }
}

/// A pod `web` in `default` with the given spec (containers default to image `bb:1`).
pub(super) fn pod(spec: Value) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web", "namespace": "default", "uid": UID},
        "spec": spec,
    }))
    .unwrap()
}
