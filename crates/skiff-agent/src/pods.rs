//! Pod workers: a watch on the pods bound to this node feeds one level-triggered worker task
//! per pod uid (plus a resync tick for probes and status). A worker sets up the sandbox, runs
//! init and app containers with restart back-off, runs probes, reports status through
//! pods/status when it changed, and terminates pods gracefully. Runtime containers are named
//! `k8s_<container>_<pod>_<ns>_<uid8>_<attempt>`, so a restarted agent finds (re-adopts) them
//! and derives restart counts from the attempt numbers. Upstream semantics: §3, §9.

mod build;
mod etc;
mod volumes;

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Container, Pod, Probe, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, Preconditions};
use kube::runtime::watcher;
use kube::{Client, Resource};
use serde_json::{json, Value};
use skiff_client::events::{EventType, Recorder};
use skiff_image::{ImageStore, ResolvedImage};
use skiff_net::{NetConfig, PodNetwork, PortMapping, Sandbox, SandboxRequest};
use skiff_runtime::{ContainerInfo, JoinNamespaces, Runtime, RuntimeConfig, Status};

use crate::{probes, AgentConfig, ContainerIndex, ContainerRef, Error, Result};

const RESYNC: Duration = Duration::from_secs(1);
const CLEANUP_EVERY: Duration = Duration::from_secs(30);
const BACKOFF_INITIAL: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// Grace for containers of pods that vanished from the API (force-deleted).
const ORPHAN_GRACE: Duration = Duration::from_secs(2);

/// A runtime container name parsed back into its pod coordinates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeName {
    pub container: String,
    pub pod: String,
    pub namespace: String,
    pub uid8: String,
    pub attempt: u32,
}

pub fn runtime_name(container: &str, pod: &str, ns: &str, uid: &str, attempt: u32) -> String {
    format!("k8s_{container}_{pod}_{ns}_{}_{attempt}", uid8(uid))
}

fn uid8(uid: &str) -> String {
    uid.chars().filter(|c| *c != '-').take(8).collect()
}

pub fn parse_runtime_name(name: &str) -> Option<RuntimeName> {
    let rest = name.strip_prefix("k8s_")?;
    let parts: Vec<&str> = rest.split('_').collect();
    if parts.len() != 5 {
        return None;
    }
    Some(RuntimeName {
        container: parts[0].to_string(),
        pod: parts[1].to_string(),
        namespace: parts[2].to_string(),
        uid8: parts[3].to_string(),
        attempt: parts[4].parse().ok()?,
    })
}

/// The agent's view of its containers, for the agent API (logs, exec). Implements
/// [`ContainerIndex`]; hand an `Arc<PodIndex>` to the API server and to [`crate::node::run_with`].
pub struct PodIndex {
    runtime: Arc<Runtime>,
    /// "ns/pod" → (uid8, default container name) of the pod the agent currently runs.
    pods: Mutex<HashMap<String, (String, String)>>,
}

impl PodIndex {
    pub fn new(config: &AgentConfig) -> Result<Self> {
        let runtime = Runtime::new(RuntimeConfig {
            data_dir: config.data_dir.clone(),
            shim_exe: config.skiff_exe.clone(),
        })?;
        Ok(PodIndex {
            runtime: Arc::new(runtime),
            pods: Mutex::new(HashMap::new()),
        })
    }

    pub fn runtime(&self) -> Arc<Runtime> {
        self.runtime.clone()
    }

    fn set_pod(&self, ns: &str, pod: &str, uid: &str, first: &str) {
        if let Ok(mut m) = self.pods.lock() {
            m.insert(format!("{ns}/{pod}"), (uid8(uid), first.to_string()));
        }
    }

    fn forget_pod(&self, ns: &str, pod: &str, uid: &str) {
        if let Ok(mut m) = self.pods.lock() {
            let key = format!("{ns}/{pod}");
            if m.get(&key).is_some_and(|(u, _)| *u == uid8(uid)) {
                m.remove(&key);
            }
        }
    }
}

impl ContainerIndex for PodIndex {
    fn lookup(
        &self,
        namespace: &str,
        pod: &str,
        container: Option<&str>,
        previous: bool,
    ) -> std::result::Result<ContainerRef, String> {
        let known = self
            .pods
            .lock()
            .ok()
            .and_then(|m| m.get(&format!("{namespace}/{pod}")).cloned());
        let all = self.runtime.list().map_err(|e| e.to_string())?;
        let mut mine: Vec<(RuntimeName, ContainerInfo)> = all
            .into_iter()
            .filter_map(|i| parse_runtime_name(&i.name).map(|n| (n, i)))
            .filter(|(n, _)| n.namespace == namespace && n.pod == pod)
            .filter(|(n, _)| known.as_ref().is_none_or(|(u, _)| *u == n.uid8))
            .collect();
        let wanted = match container {
            Some(c) => c.to_string(),
            None => match &known {
                Some((_, first)) => first.clone(),
                None => mine
                    .first()
                    .map(|(n, _)| n.container.clone())
                    .ok_or_else(|| {
                        format!("pod {namespace}/{pod} has no containers on this node")
                    })?,
            },
        };
        mine.retain(|(n, _)| n.container == wanted);
        mine.sort_by_key(|a| std::cmp::Reverse(a.0.attempt));
        let pick = if previous {
            mine.get(1)
                .filter(|(_, i)| i.status != Status::Running)
                .ok_or_else(|| {
                    format!("previous terminated container \"{wanted}\" in pod \"{pod}\" not found")
                })?
        } else {
            mine.first().ok_or_else(|| {
                format!("container \"{wanted}\" in pod \"{pod}\" is waiting to start")
            })?
        };
        Ok(ContainerRef {
            container_id: pick.1.id.clone(),
            log_path: pick.1.log_path.clone(),
            running: pick.1.status == Status::Running,
        })
    }
}

/// Shared by all workers.
struct Ctx {
    client: Client,
    config: AgentConfig,
    runtime: Arc<Runtime>,
    images: Arc<ImageStore>,
    net: Arc<PodNetwork>,
    index: Arc<PodIndex>,
    containers: ContainerCache,
    events: Recorder,
    /// The node's service proxy, once it runs.
    proxy: Arc<std::sync::OnceLock<skiff_net::proxy::ProxyStatus>>,
}

/// One runtime listing shared by every pod worker, like the kubelet's PLEG relist: listing
/// reads every container's state files, so doing it per pod per resync grew quadratically.
/// A listing is reused until it is `MAX_AGE` old or the agent itself started or removed a
/// container since (`changed`).
#[derive(Default)]
struct ContainerCache {
    changed: std::sync::atomic::AtomicU64,
    last: tokio::sync::Mutex<Option<Listing>>,
}

/// (generation, taken at, containers)
type Listing = (u64, std::time::Instant, Arc<Vec<ContainerInfo>>);

impl ContainerCache {
    const MAX_AGE: Duration = Duration::from_millis(500);

    fn invalidate(&self) {
        self.changed
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    async fn list(&self, runtime: &Arc<Runtime>) -> Result<Arc<Vec<ContainerInfo>>> {
        let mut last = self.last.lock().await;
        let generation = self.changed.load(std::sync::atomic::Ordering::SeqCst);
        if let Some((g, at, list)) = last.as_ref() {
            if *g == generation && at.elapsed() < Self::MAX_AGE {
                return Ok(list.clone());
            }
        }
        let rt = runtime.clone();
        let list = Arc::new(blocking(move || Ok(rt.list()?)).await?);
        *last = Some((generation, std::time::Instant::now(), list.clone()));
        Ok(list)
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::result::Result<T, Error> + Send + 'static,
) -> std::result::Result<T, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Other(format!("blocking task: {e}")))?
}

/// Owns the pod watch and the workers.
pub struct PodManager {
    ctx: Arc<Ctx>,
}

impl PodManager {
    pub fn new(
        client: Client,
        config: AgentConfig,
        index: Arc<PodIndex>,
        pod_cidr: &str,
        proxy: Arc<std::sync::OnceLock<skiff_net::proxy::ProxyStatus>>,
    ) -> Result<Self> {
        let images = ImageStore::open(config.data_dir.join("images"))?;
        let net = PodNetwork::new(NetConfig {
            data_dir: config.data_dir.clone(),
            pod_cidr: pod_cidr.to_string(),
            cni_bin_dir: None,
        })?;
        Ok(PodManager {
            ctx: Arc::new(Ctx {
                events: Recorder::new(client.clone()),
                proxy,
                client,
                runtime: index.runtime(),
                config,
                images: Arc::new(images),
                net: Arc::new(net),
                index,
                containers: ContainerCache::default(),
            }),
        })
    }

    /// Watches pods until `stop` turns true; containers keep running afterwards.
    pub async fn run(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let ctx = self.ctx;
        let pods: Api<Pod> = Api::all(ctx.client.clone());
        let cfg =
            watcher::Config::default().fields(&format!("spec.nodeName={}", ctx.config.node_name));
        let mut stream = watcher(pods, cfg).boxed();
        let mut workers: HashMap<
            String,
            (
                tokio::sync::watch::Sender<Option<Pod>>,
                tokio::task::JoinHandle<()>,
            ),
        > = HashMap::new();
        // uid → pod, as of the last complete list (for orphan cleanup).
        let mut known: HashMap<String, Pod> = HashMap::new();
        let mut init_batch: Option<HashMap<String, Pod>> = None;
        let mut listed = false;
        let mut last_cleanup = Instant::now();
        loop {
            if *stop.borrow() {
                break;
            }
            let event = tokio::select! {
                e = stream.next() => e,
                _ = stop.changed() => break,
                _ = tokio::time::sleep(CLEANUP_EVERY) => None,
            };
            let mut deliver: Vec<Pod> = Vec::new();
            let mut gone: Vec<String> = Vec::new();
            match event {
                Some(Ok(watcher::Event::Apply(p))) => {
                    if let Some(uid) = p.metadata.uid.clone() {
                        known.insert(uid, p.clone());
                    }
                    deliver.push(p);
                }
                Some(Ok(watcher::Event::Delete(p))) => {
                    if let Some(uid) = p.metadata.uid.clone() {
                        known.remove(&uid);
                        gone.push(uid);
                    }
                }
                Some(Ok(watcher::Event::Init)) => init_batch = Some(HashMap::new()),
                Some(Ok(watcher::Event::InitApply(p))) => {
                    if let (Some(b), Some(uid)) = (init_batch.as_mut(), p.metadata.uid.clone()) {
                        b.insert(uid, p);
                    }
                }
                Some(Ok(watcher::Event::InitDone)) => {
                    let batch = init_batch.take().unwrap_or_default();
                    for uid in known.keys() {
                        if !batch.contains_key(uid) {
                            gone.push(uid.clone());
                        }
                    }
                    known = batch;
                    deliver.extend(known.values().cloned());
                    if !listed {
                        listed = true;
                        cleanup_orphans(&ctx, &known).await;
                        last_cleanup = Instant::now();
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!("pod watch: {e}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                None => {}
            }
            for p in deliver {
                let Some(uid) = p.metadata.uid.clone() else {
                    continue;
                };
                match workers.entry(uid) {
                    std::collections::hash_map::Entry::Occupied(o) => {
                        // A finished worker has terminated its pod: nothing more to do.
                        if !o.get().1.is_finished() {
                            let _ = o.get().0.send(Some(p));
                        }
                    }
                    std::collections::hash_map::Entry::Vacant(v) => {
                        let (tx, rx) = tokio::sync::watch::channel(Some(p));
                        let w = Worker::new(ctx.clone(), v.key().clone(), rx);
                        v.insert((tx, tokio::spawn(w.run())));
                    }
                }
            }
            for uid in gone {
                if let Some((tx, _)) = workers.get(&uid) {
                    let _ = tx.send(None);
                }
            }
            workers.retain(|uid, (_, h)| !h.is_finished() || known.contains_key(uid));
            if listed && last_cleanup.elapsed() >= CLEANUP_EVERY {
                let live: HashMap<String, Pod> = known.clone();
                cleanup_orphans(&ctx, &live).await;
                last_cleanup = Instant::now();
            }
        }
        // Dropping the senders ends the workers without touching their containers.
        for (_, (tx, h)) in workers {
            drop(tx);
            h.abort();
        }
    }
}

/// Removes containers and sandboxes of pods that no longer exist (after agent restarts).
async fn cleanup_orphans(ctx: &Arc<Ctx>, known: &HashMap<String, Pod>) {
    let live_uid8: HashSet<String> = known.keys().map(|u| uid8(u)).collect();
    let rt = ctx.runtime.clone();
    let orphans: Vec<ContainerInfo> = match blocking(move || Ok(rt.list()?)).await {
        Ok(all) => all
            .into_iter()
            .filter(|i| parse_runtime_name(&i.name).is_some_and(|n| !live_uid8.contains(&n.uid8)))
            .collect(),
        Err(e) => {
            tracing::warn!("listing containers: {e}");
            Vec::new()
        }
    };
    for info in orphans {
        tracing::info!(container = %info.name, "removing container of a pod that no longer exists");
        let rt = ctx.runtime.clone();
        let _ = blocking(move || {
            rt.stop(&info.id, ORPHAN_GRACE)?;
            Ok(rt.remove(&info.id, true)?)
        })
        .await;
    }
    let known_uids: HashSet<String> = known.keys().cloned().collect();
    let rt = ctx.runtime.clone();
    let stale: Vec<String> = rt
        .pod_cgroups()
        .into_iter()
        .filter(|n| !known_uids.contains(n.trim_start_matches("pod")))
        .collect();
    for name in stale {
        let rt = ctx.runtime.clone();
        let n = name.clone();
        if let Err(e) = blocking(move || Ok(rt.remove_pod_cgroup(&n)?)).await {
            tracing::warn!(cgroup = %name, "removing the cgroup of a pod that no longer exists: {e}");
        }
    }
    let net = ctx.net.clone();
    let sandboxes = blocking(move || Ok(net.list_sandboxes()?))
        .await
        .unwrap_or_default();
    for uid in sandboxes {
        if !known_uids.contains(&uid) {
            let net = ctx.net.clone();
            let u = uid.clone();
            if let Err(e) = blocking(move || Ok(net.remove_sandbox(&u)?)).await {
                tracing::warn!(pod_uid = %uid, "removing sandbox: {e}");
            }
            let dir = ctx.config.data_dir.join("agent/pods").join(&uid);
            let _ = blocking(move || {
                volumes::remove_pod_dir(&dir);
                Ok(())
            })
            .await;
        }
    }
}

/// flowcontrol.Backoff for one container.
#[derive(Debug, Clone)]
struct Backoff {
    delay: Duration,
    last_update: jiff::Timestamp,
}

#[derive(Debug, Default, Clone)]
struct ProbeState {
    /// The container instance these results belong to.
    id: String,
    started: bool,
    ready: bool,
    live_failures: i32,
    startup_failures: i32,
    ready_successes: i32,
    ready_failures: i32,
    last: HashMap<&'static str, Instant>,
}

/// One pod's worker.
struct Worker {
    ctx: Arc<Ctx>,
    uid: String,
    rx: tokio::sync::watch::Receiver<Option<Pod>>,
    sandbox: Option<Sandbox>,
    images: HashMap<String, ResolvedImage>,
    image_backoff: HashMap<String, (Instant, Duration)>,
    /// Waiting reason/message per container name (set when a start failed or is held back).
    reasons: HashMap<String, (String, String)>,
    backoff: HashMap<String, Backoff>,
    probes: HashMap<String, ProbeState>,
    start_time: Option<String>,
    last_status: Option<Value>,
    sandbox_error: Option<String>,
    /// When the pod's ConfigMap/Secret/projected/downwardAPI volumes were last written.
    volumes_synced: Option<Instant>,
    /// When emptyDir and ephemeral-storage usage was last measured.
    usage_checked: Option<Instant>,
    /// The eviction message, once the pod was evicted for its storage use.
    evicted: Option<String>,
}

type Instances = HashMap<String, Vec<(u32, ContainerInfo)>>;

fn started_secs_ago(info: &ContainerInfo) -> f64 {
    info.started_at
        .as_deref()
        .and_then(|s| s.parse::<jiff::Timestamp>().ok())
        .map(|t| {
            (jiff::Timestamp::now() - t)
                .total(jiff::Unit::Second)
                .unwrap_or(0.0)
        })
        .unwrap_or(0.0)
}

fn parse_ts(s: &str) -> Option<jiff::Timestamp> {
    s.parse().ok()
}

impl Worker {
    fn new(ctx: Arc<Ctx>, uid: String, rx: tokio::sync::watch::Receiver<Option<Pod>>) -> Self {
        Worker {
            ctx,
            uid,
            rx,
            sandbox: None,
            images: HashMap::new(),
            image_backoff: HashMap::new(),
            reasons: HashMap::new(),
            backoff: HashMap::new(),
            probes: HashMap::new(),
            start_time: None,
            last_status: None,
            sandbox_error: None,
            volumes_synced: None,
            usage_checked: None,
            evicted: None,
        }
    }

    async fn run(mut self) {
        loop {
            let pod = self.rx.borrow_and_update().clone();
            match pod {
                None => {
                    self.teardown(None, ORPHAN_GRACE).await;
                    return;
                }
                Some(p) if p.metadata.deletion_timestamp.is_some() => {
                    self.terminate(&p).await;
                    return;
                }
                Some(p) => {
                    if let Err(e) = self.sync(&p).await {
                        tracing::warn!(pod = ?p.metadata.name, "sync failed: {e}");
                    }
                }
            }
            tokio::select! {
                r = self.rx.changed() => if r.is_err() { return },
                _ = tokio::time::sleep(RESYNC) => {}
            }
        }
    }

    fn pod_dir(&self) -> PathBuf {
        self.ctx.config.data_dir.join("agent/pods").join(&self.uid)
    }

    /// A kubelet Event about the pod (or one of its containers), as `kubectl describe` shows.
    /// Published in the background.
    async fn event(
        &self,
        pod: &Pod,
        container: Option<&str>,
        kind: EventType,
        reason: &str,
        message: &str,
    ) {
        let mut reference = pod.object_ref(&());
        reference.field_path = container.map(|c| format!("spec.containers{{{c}}}"));
        // Off the pod's critical path: a container start must not wait for event writes.
        let events = self.ctx.events.clone();
        let (reason, message) = (reason.to_string(), message.to_string());
        tokio::spawn(async move {
            events
                .publish("kubelet", &reference, kind, &reason, &message)
                .await;
        });
    }

    /// Writes the pod's `/etc/hosts` and `/etc/resolv.conf` (kubelet-managed files) and mounts
    /// them into the container, unless it mounts something of its own there.
    fn mount_etc_files(
        &self,
        pod: &Pod,
        sb: &Sandbox,
        spec: &mut skiff_runtime::ContainerSpec,
    ) -> std::result::Result<(), String> {
        let dir = self.pod_dir();
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        let nameserver = self.ctx.net.gateway().to_string();
        // A host-network pod gets the node's own hosts file, as upstream.
        let hosts = if sb.host_network {
            std::fs::read_to_string("/etc/hosts").unwrap_or_default()
        } else {
            etc::hosts_file(pod, &sb.ip.to_string())
        };
        for (file, dest, text) in [
            ("etc-hosts", "/etc/hosts", hosts),
            (
                "resolv.conf",
                "/etc/resolv.conf",
                etc::resolv_conf(pod, &nameserver, &host_resolv),
            ),
        ] {
            if spec.mounts.iter().any(|m| m.destination == dest) {
                continue;
            }
            let path = dir.join(file);
            let tmp = dir.join(format!(".{file}.tmp"));
            std::fs::write(&tmp, text)
                .and_then(|()| std::fs::rename(&tmp, &path))
                .map_err(|e| format!("writing {}: {e}", path.display()))?;
            spec.mounts.push(skiff_runtime::BindMount {
                source: path,
                destination: dest.to_string(),
                readonly: false,
            });
        }
        Ok(())
    }

    /// This pod's runtime containers by container name, newest attempt first.
    async fn instances(&self, pod: &Pod) -> Result<Instances> {
        let all = self.ctx.containers.list(&self.ctx.runtime).await?;
        let (name, ns) = names(pod);
        let u = uid8(&self.uid);
        let mut out: Instances = HashMap::new();
        for info in all.iter() {
            if let Some(n) = parse_runtime_name(&info.name) {
                if n.uid8 == u && n.pod == name && n.namespace == ns {
                    out.entry(n.container)
                        .or_default()
                        .push((n.attempt, info.clone()));
                }
            }
        }
        for v in out.values_mut() {
            v.sort_by_key(|a| std::cmp::Reverse(a.0));
        }
        Ok(out)
    }

    async fn ensure_sandbox(&mut self, pod: &Pod) -> Result<Sandbox> {
        if let Some(s) = &self.sandbox {
            return Ok(s.clone());
        }
        let (name, ns) = names(pod);
        let mut ports = Vec::new();
        for c in pod.spec.iter().flat_map(|s| s.containers.iter()) {
            for p in c.ports.iter().flatten() {
                if let Some(hp) = p.host_port.filter(|h| *h > 0) {
                    ports.push(PortMapping {
                        host_port: hp as u16,
                        container_port: p.container_port as u16,
                        protocol: p
                            .protocol
                            .clone()
                            .unwrap_or_else(|| "TCP".into())
                            .to_lowercase(),
                        host_ip: p.host_ip.clone().filter(|h| !h.is_empty()),
                    });
                }
            }
        }
        let host_network = pod.spec.as_ref().and_then(|s| s.host_network) == Some(true);
        let req = SandboxRequest {
            pod_uid: self.uid.clone(),
            namespace: ns,
            name: name.clone(),
            // A host-network pod sees the node's hostname, as upstream.
            hostname: if host_network {
                self.ctx.config.node_name.clone()
            } else {
                pod.spec
                    .as_ref()
                    .and_then(|s| s.hostname.clone())
                    .unwrap_or(name)
            },
            // Its ports are the host's already: no port mappings.
            port_mappings: if host_network { Vec::new() } else { ports },
            host_network: host_network.then_some(self.ctx.config.node_ip),
        };
        let net = self.ctx.net.clone();
        let sb = blocking(move || {
            if let Some(sb) = net.sandbox(&req.pod_uid)? {
                return Ok(sb);
            }
            Ok(net.create_sandbox(&req)?)
        })
        .await?;
        self.sandbox = Some(sb.clone());
        Ok(sb)
    }

    /// The container's image from the local store, pulled from its registry when missing (and
    /// the policy allows); the pull's duration when one happened.
    async fn resolve_image(
        &mut self,
        pod: &Pod,
        c: &Container,
    ) -> std::result::Result<(ResolvedImage, Option<Duration>), (String, String)> {
        let image = c.image.clone().unwrap_or_default();
        if let Some(r) = self.images.get(&image) {
            return Ok((r.clone(), None));
        }
        if let Some((until, _)) = self.image_backoff.get(&image) {
            if Instant::now() < *until {
                return Err((
                    "ImagePullBackOff".into(),
                    format!("Back-off pulling image \"{image}\""),
                ));
            }
        }
        let store = self.ctx.images.clone();
        let img = image.clone();
        let local = blocking(move || Ok(store.resolve(&img)?)).await;
        let mut pulled = None;
        let found = match local {
            Ok(r) => Ok(r),
            Err(e) => {
                let policy = c.image_pull_policy.clone().unwrap_or_default();
                if policy == "Never" {
                    return Err((
                        "ErrImageNeverPull".into(),
                        format!(
                            "Container image \"{image}\" is not present with pull policy of Never"
                        ),
                    ));
                }
                if self.ctx.config.offline && !skiff_image::registry_is_loopback(&image) {
                    let delay = self
                        .image_backoff
                        .get(&image)
                        .map_or(BACKOFF_INITIAL, |(_, d)| (*d * 2).min(BACKOFF_MAX));
                    self.image_backoff
                        .insert(image.clone(), (Instant::now() + delay, delay));
                    return Err((
                        "ErrImagePull".into(),
                        format!(
                            "image \"{image}\" is not in the node's store, and the node is offline (--offline): {e}"
                        ),
                    ));
                }
                let cname = c.name.clone();
                self.event(
                    pod,
                    Some(&cname),
                    EventType::Normal,
                    "Pulling",
                    &format!("Pulling image \"{image}\""),
                )
                .await;
                let started = Instant::now();
                let credentials = self.pull_credentials(pod, &image).await;
                match self
                    .ctx
                    .images
                    .pull(&image, credentials.as_ref(), &skiff_image::NoProgress)
                    .await
                {
                    Ok(_) => {
                        pulled = Some(started.elapsed());
                        let store = self.ctx.images.clone();
                        let img = image.clone();
                        blocking(move || Ok(store.resolve(&img)?)).await
                    }
                    Err(pull_err) => {
                        tracing::debug!(%image, "local lookup: {e}");
                        Err(crate::Error::Image(pull_err))
                    }
                }
            }
        };
        match found {
            Ok(r) => {
                self.images.insert(image, r.clone());
                Ok((r, pulled))
            }
            Err(e) => {
                // A failed pull is retried with back-off (ImagePullBackOff in between).
                let delay = self
                    .image_backoff
                    .get(&image)
                    .map(|(_, d)| (*d * 2).min(BACKOFF_MAX))
                    .unwrap_or(BACKOFF_INITIAL);
                self.image_backoff
                    .insert(image.clone(), (Instant::now() + delay, delay));
                Err((
                    "ErrImagePull".into(),
                    format!("failed to pull and unpack image \"{image}\": {e}"),
                ))
            }
        }
    }

    /// Starts instance `attempt` of `c`; on failure records a waiting reason.
    async fn start(&mut self, pod: &Pod, c: &Container, attempt: u32, sb: &Sandbox) -> bool {
        let (image, pulled) = match self.resolve_image(pod, c).await {
            Ok(i) => i,
            Err(reason) => {
                let image = c.image.as_deref().unwrap_or_default();
                let (kind, ev_reason, msg) = match reason.0.as_str() {
                    "ImagePullBackOff" => (
                        EventType::Normal,
                        "BackOff",
                        format!("Back-off pulling image \"{image}\""),
                    ),
                    "ErrImageNeverPull" => {
                        (EventType::Warning, "ErrImageNeverPull", reason.1.clone())
                    }
                    _ => (
                        EventType::Warning,
                        "Failed",
                        format!("Failed to pull image \"{image}\": {}", reason.1),
                    ),
                };
                self.event(pod, Some(&c.name), kind, ev_reason, &msg).await;
                self.reasons.insert(c.name.clone(), reason);
                return false;
            }
        };
        let image_ref = c.image.as_deref().unwrap_or_default();
        let msg = match pulled {
            Some(d) => format!(
                "Successfully pulled image \"{image_ref}\" in {:.3}s",
                d.as_secs_f64()
            ),
            None => format!("Container image \"{image_ref}\" already present on machine"),
        };
        self.event(pod, Some(&c.name), EventType::Normal, "Pulled", &msg)
            .await;
        let (name, ns) = names(pod);
        let mut objects = build::Objects::new(self.ctx.client.clone(), &ns);
        let pod_ip = sb.ip.to_string();
        let host_ip = self.ctx.config.node_ip.to_string();
        let volumes = match build::prepare_volumes(
            pod,
            &self.pod_dir(),
            &mut objects,
            &pod_ip,
            &host_ip,
            false,
        )
        .await
        {
            Ok(v) => v,
            Err(msg) => {
                self.config_error(pod, c, msg).await;
                return false;
            }
        };
        self.volumes_synced = Some(Instant::now());
        let input = build::BuildInput {
            pod,
            container: c,
            image: &image,
            name: runtime_name(&c.name, &name, &ns, &self.uid, attempt),
            netns: sb.netns.clone(),
            pod_ip,
            host_ip,
            volumes: &volumes,
            pod_dir: self.pod_dir(),
        };
        let mut spec = match build::build_spec(&input, &mut objects).await {
            Ok(s) => s,
            Err(msg) => {
                self.config_error(pod, c, msg).await;
                return false;
            }
        };
        let limits = &self.ctx.config.limits;
        spec.pod_cgroup = Some(limits.pod_cgroup(&self.uid));
        spec.log_max_size = Some(limits.container_log_max_size);
        spec.log_max_files = Some(limits.container_log_max_files);
        if sb.host_network {
            spec.network = skiff_runtime::NetworkMode::Host;
            spec.hostname = Some(self.ctx.config.node_name.clone());
        }
        if let Err(msg) = self.mount_etc_files(pod, sb, &mut spec) {
            self.config_error(pod, c, msg).await;
            return false;
        }
        let rt = self.ctx.runtime.clone();
        let pod_spec = pod.spec.as_ref();
        let join = JoinNamespaces {
            ipc: Some(sb.ipcns.clone()),
            uts: Some(sb.utsns.clone()),
            host_pid: pod_spec.and_then(|s| s.host_pid) == Some(true),
            host_ipc: pod_spec.and_then(|s| s.host_ipc) == Some(true),
        };
        let started = blocking(move || Ok(rt.create_and_start_joined(spec, &join)?)).await;
        self.ctx.containers.invalidate();
        match started {
            Ok(info) => {
                tracing::info!(container = %info.name, id = %info.id, "started container");
                self.reasons.remove(&c.name);
                let name = &c.name;
                self.event(
                    pod,
                    Some(name),
                    EventType::Normal,
                    "Created",
                    &format!("Created container: {name}"),
                )
                .await;
                self.event(
                    pod,
                    Some(name),
                    EventType::Normal,
                    "Started",
                    &format!("Started container {name}"),
                )
                .await;
                true
            }
            Err(e) => {
                let msg = e.to_string();
                self.event(
                    pod,
                    Some(&c.name),
                    EventType::Warning,
                    "Failed",
                    &format!("Error: {msg}"),
                )
                .await;
                self.reasons
                    .insert(c.name.clone(), ("RunContainerError".into(), msg));
                false
            }
        }
    }

    /// The login for `image`'s registry from the pod's `imagePullSecrets`
    /// (`kubernetes.io/dockerconfigjson` or legacy `kubernetes.io/dockercfg` Secrets).
    async fn pull_credentials(&self, pod: &Pod, image: &str) -> Option<skiff_image::Credentials> {
        let registry = skiff_image::registry_of(image)?;
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let secrets: Api<k8s_openapi::api::core::v1::Secret> =
            Api::namespaced(self.ctx.client.clone(), &ns);
        for r in pod
            .spec
            .as_ref()
            .and_then(|s| s.image_pull_secrets.clone())
            .unwrap_or_default()
        {
            let Ok(secret) = secrets.get(&r.name).await else {
                tracing::debug!(secret = %r.name, "imagePullSecret not found");
                continue;
            };
            let data = secret.data.unwrap_or_default();
            let found = [".dockerconfigjson", ".dockercfg"]
                .iter()
                .filter_map(|k| data.get(*k))
                .find_map(|b| skiff_image::credentials_from_docker_config(&b.0, &registry));
            if found.is_some() {
                return found;
            }
        }
        None
    }

    /// A container's config could not be built (missing ConfigMap key, bad subPath, …).
    async fn config_error(&mut self, pod: &Pod, c: &Container, msg: String) {
        self.event(
            pod,
            Some(&c.name),
            EventType::Warning,
            "Failed",
            &format!("Error: {msg}"),
        )
        .await;
        self.reasons
            .insert(c.name.clone(), ("CreateContainerConfigError".into(), msg));
    }

    /// Restart with crash back-off (client-go flowcontrol semantics); removes old instances.
    async fn restart(
        &mut self,
        pod: &Pod,
        c: &Container,
        last: &(u32, ContainerInfo),
        older: &[(u32, ContainerInfo)],
        sb: &Sandbox,
    ) {
        let finished = last
            .1
            .exit
            .as_ref()
            .and_then(|e| parse_ts(&e.finished_at))
            .unwrap_or_else(jiff::Timestamp::now);
        let now = jiff::Timestamp::now();
        let key = c.name.clone();
        if let Some(b) = self.backoff.get(&key) {
            let expired = (finished - b.last_update)
                .total(jiff::Unit::Second)
                .unwrap_or(0.0)
                > (2 * BACKOFF_MAX).as_secs_f64();
            if expired {
                self.backoff.remove(&key);
            } else {
                let since = (now - finished).total(jiff::Unit::Second).unwrap_or(0.0);
                if since < b.delay.as_secs_f64() {
                    let (name, ns) = names(pod);
                    self.event(
                        pod,
                        Some(&c.name),
                        EventType::Warning,
                        "BackOff",
                        &format!(
                            "Back-off restarting failed container {} in pod {name}_{ns}({})",
                            c.name, self.uid
                        ),
                    )
                    .await;
                    self.reasons.insert(
                        key,
                        (
                            "CrashLoopBackOff".into(),
                            format!(
                                "back-off {}s restarting failed container={} pod={}_{}({})",
                                b.delay.as_secs(),
                                c.name,
                                name,
                                ns,
                                self.uid
                            ),
                        ),
                    );
                    return;
                }
            }
        }
        let delay = match self.backoff.get(&key) {
            Some(b) => (b.delay * 2).min(BACKOFF_MAX),
            None => BACKOFF_INITIAL,
        };
        self.backoff.insert(
            key,
            Backoff {
                delay,
                last_update: now,
            },
        );
        if self.start(pod, c, last.0 + 1, sb).await {
            // Keep the last two instances (current + previous), like the kubelet.
            for (_, info) in std::iter::once(last).chain(older.iter()).skip(1) {
                let rt = self.ctx.runtime.clone();
                let id = info.id.clone();
                let _ = blocking(move || Ok(rt.remove(&id, true)?)).await;
            }
            self.ctx.containers.invalidate();
        }
    }

    async fn sync(&mut self, pod: &Pod) -> Result<()> {
        let Some(spec) = pod.spec.clone() else {
            return Ok(());
        };
        let (name, ns) = names(pod);
        if self.start_time.is_none() {
            self.start_time = pod
                .status
                .as_ref()
                .and_then(|s| s.start_time.as_ref())
                .map(|t| t.0.to_string())
                .or_else(|| {
                    Some(
                        jiff::Timestamp::now()
                            .strftime("%Y-%m-%dT%H:%M:%SZ")
                            .to_string(),
                    )
                });
        }
        if let Some(first) = spec.containers.first() {
            self.ctx.index.set_pod(&ns, &name, &self.uid, &first.name);
        }
        let api_phase = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default();
        let terminal = api_phase == "Succeeded" || api_phase == "Failed" || self.evicted.is_some();
        let policy = spec
            .restart_policy
            .clone()
            .unwrap_or_else(|| "Always".into());

        let sb = match self.ensure_sandbox(pod).await {
            Ok(sb) => {
                self.sandbox_error = None;
                Some(sb)
            }
            Err(e) => {
                self.sandbox_error = Some(e.to_string());
                None
            }
        };
        let mut inst = self.instances(pod).await?;
        if let (Some(sb), false) = (&sb, terminal) {
            // Init containers, in order; each must exit 0 before the next starts.
            let mut initialized = true;
            for ic in spec.init_containers.iter().flatten() {
                let list = inst.get(&ic.name).cloned().unwrap_or_default();
                match list.first() {
                    None => {
                        self.start(pod, ic, 0, sb).await;
                        initialized = false;
                        break;
                    }
                    Some((_, i)) if i.status == Status::Running || i.status == Status::Created => {
                        initialized = false;
                        break;
                    }
                    Some((_, i)) if i.exit.as_ref().is_some_and(|e| e.code == 0) => continue,
                    Some(last) => {
                        if policy != "Never" {
                            self.restart(pod, ic, last, &list[1..], sb).await;
                        }
                        initialized = false;
                        break;
                    }
                }
            }
            if initialized {
                for c in &spec.containers {
                    let list = inst.get(&c.name).cloned().unwrap_or_default();
                    match list.first() {
                        None => {
                            self.start(pod, c, 0, sb).await;
                        }
                        Some((_, i)) if i.status == Status::Running => {
                            self.run_probes(pod, c, i, sb).await;
                        }
                        // Its shim is still starting it (say, adopted mid-start after an agent
                        // restart): another attempt now would leave two running. Created with
                        // no shim alive is abandoned: restarted below like an exited one.
                        Some((_, i)) if i.status == Status::Created && i.shim_pid.is_some() => {}
                        Some(last) => {
                            let code = last.1.exit.as_ref().map(|e| e.code).unwrap_or(255);
                            let again = match policy.as_str() {
                                "Never" => false,
                                "OnFailure" => code != 0,
                                _ => true,
                            };
                            if again {
                                self.restart(pod, c, last, &list[1..], sb).await;
                            }
                        }
                    }
                }
            }
            self.remove_duplicates(&spec, &inst).await;
            self.resync_volumes(pod, sb).await;
            self.check_storage(pod, &inst).await;
            inst = self.instances(pod).await?;
        }
        let status = self.status(pod, &inst, sb.as_ref(), &api_phase);
        if self.last_status.as_ref() != Some(&status) {
            let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &ns);
            let patch = json!({"status": status});
            api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
            self.last_status = Some(status);
        }
        Ok(())
    }

    /// Re-writes the ConfigMap/Secret/projected/downwardAPI volumes of a running pod every
    /// `sync_frequency`, so changed, added and removed keys appear in it (subPath mounts keep
    /// the inode they were given, as upstream).
    async fn resync_volumes(&mut self, pod: &Pod, sb: &Sandbox) {
        // Never written by this worker (the agent restarted under running pods): due now.
        if self
            .volumes_synced
            .is_some_and(|t| t.elapsed() < self.ctx.config.sync_frequency)
        {
            return;
        }
        self.volumes_synced = Some(Instant::now());
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let mut objects = build::Objects::new(self.ctx.client.clone(), &ns);
        let host_ip = self.ctx.config.node_ip.to_string();
        let pod_dir = self.pod_dir();
        let ip = sb.ip.to_string();
        if let Err(e) =
            build::prepare_volumes(pod, &pod_dir, &mut objects, &ip, &host_ip, true).await
        {
            // Upstream keeps the old content when an object cannot be read.
            tracing::warn!(pod_uid = %self.uid, "re-syncing volumes: {e}");
        }
    }

    /// The eviction manager's local-storage checks, every `housekeeping_interval`, in
    /// upstream's order: an emptyDir over its sizeLimit; the pod's disk emptyDirs plus its
    /// containers' writable layers and logs over the sum of its containers'
    /// ephemeral-storage limits; one container over its own limit. Any of them evicts.
    async fn check_storage(&mut self, pod: &Pod, inst: &Instances) {
        if self.evicted.is_some()
            || self
                .usage_checked
                .is_some_and(|t| t.elapsed() < self.ctx.config.housekeeping_interval)
        {
            return;
        }
        self.usage_checked = Some(Instant::now());
        let empty_dirs = build::empty_dirs(pod);
        let pod_limit = build::pod_ephemeral_storage_limit(pod);
        let spec = pod.spec.clone().unwrap_or_default();
        let mut containers = Vec::new();
        for c in spec
            .init_containers
            .iter()
            .flatten()
            .chain(&spec.containers)
        {
            if let Some((_, info)) = inst.get(&c.name).and_then(|l| l.first()) {
                containers.push((
                    c.name.clone(),
                    build::ephemeral_storage_limit(c),
                    info.id.clone(),
                    info.log_path.clone(),
                ));
            }
        }
        let limited = pod_limit.is_some()
            || empty_dirs.iter().any(|e| e.limit.is_some())
            || containers.iter().any(|c| c.1.is_some());
        if !limited {
            return;
        }
        let vols = self.pod_dir().join("volumes/kubernetes.io~empty-dir");
        let data = self.ctx.config.data_dir.clone();
        let message = blocking(move || {
            let mut pod_used = 0u64;
            for e in &empty_dirs {
                let used = volumes::disk_usage(&vols.join(&e.name));
                if let Some((q, limit)) = &e.limit {
                    if used > *limit {
                        let name = &e.name;
                        return Ok(Some(format!(
                            "Usage of EmptyDir volume {name:?} exceeds the limit {q:?}. "
                        )));
                    }
                }
                if !e.memory {
                    pod_used += used;
                }
            }
            let mut over = None;
            for (name, limit, id, log) in &containers {
                let layer = volumes::disk_usage(&data.join("containers").join(id).join("upper"));
                let logs = std::fs::metadata(log).map(|m| m.len()).unwrap_or(0);
                pod_used += layer + logs;
                if let Some((q, l)) = limit {
                    if layer + logs > *l && over.is_none() {
                        over = Some(format!(
                            "Container {name} exceeded its local ephemeral storage limit {q:?}. "
                        ));
                    }
                }
            }
            if let Some((q, limit)) = &pod_limit {
                if pod_used > *limit {
                    return Ok(Some(format!(
                        "Pod ephemeral local storage usage exceeds the total limit of containers {q}. "
                    )));
                }
            }
            Ok(over)
        })
        .await
        .ok()
        .flatten();
        if let Some(message) = message {
            self.evict(pod, inst, message).await;
        }
    }

    /// Evicts the pod as the kubelet's eviction manager does for local storage: containers
    /// killed at once (grace 0), phase Failed, reason Evicted, an Evicted event.
    async fn evict(&mut self, pod: &Pod, inst: &Instances, message: String) {
        tracing::info!(pod_uid = %self.uid, "evicting pod: {message}");
        self.event(pod, None, EventType::Warning, "Evicted", &message)
            .await;
        let stops = inst.values().filter_map(|l| l.first()).map(|(_, info)| {
            let rt = self.ctx.runtime.clone();
            let id = info.id.clone();
            blocking(move || Ok(rt.stop(&id, Duration::ZERO)?))
        });
        for r in futures::future::join_all(stops).await {
            if let Err(e) = r {
                tracing::warn!(pod_uid = %self.uid, "killing an evicted container: {e}");
            }
        }
        self.ctx.containers.invalidate();
        self.evicted = Some(message);
    }

    /// Only the newest instance of a container may run: an older one still running (left by
    /// an agent killed mid-start) is removed, as the kubelet kills containers it does not own.
    async fn remove_duplicates(
        &self,
        spec: &k8s_openapi::api::core::v1::PodSpec,
        inst: &Instances,
    ) {
        let names = spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .map(|c| c.name.as_str());
        for name in names {
            let Some(list) = inst.get(name) else {
                continue;
            };
            for (attempt, info) in list.iter().skip(1) {
                if matches!(info.status, Status::Running | Status::Created) {
                    tracing::warn!(container = name, attempt, id = %info.id, "removing a duplicate instance");
                    let rt = self.ctx.runtime.clone();
                    let id = info.id.clone();
                    let _ = blocking(move || Ok(rt.remove(&id, true)?)).await;
                    self.ctx.containers.invalidate();
                }
            }
        }
    }

    async fn run_probes(&mut self, pod: &Pod, c: &Container, info: &ContainerInfo, sb: &Sandbox) {
        let mut st = self.probes.get(&c.name).cloned().unwrap_or_default();
        if st.id != info.id {
            st = ProbeState {
                id: info.id.clone(),
                ..Default::default()
            };
        }
        let age = started_secs_ago(info);
        let ip = IpAddr::V4(sb.ip);
        let mut kill_reason = None;
        if !st.started {
            match &c.startup_probe {
                None => st.started = true,
                Some(p) => {
                    if let Some(ok) = self
                        .probe_due(pod, &mut st, "startup", p, age, c, info, ip)
                        .await
                    {
                        if ok {
                            st.started = true;
                            st.startup_failures = 0;
                        } else {
                            st.startup_failures += 1;
                            if st.startup_failures >= p.failure_threshold.unwrap_or(3).max(1) {
                                kill_reason = Some("startup");
                            }
                        }
                    }
                }
            }
        }
        if st.started {
            match &c.readiness_probe {
                None => st.ready = true,
                Some(p) => {
                    if let Some(ok) = self
                        .probe_due(pod, &mut st, "readiness", p, age, c, info, ip)
                        .await
                    {
                        if ok {
                            st.ready_failures = 0;
                            st.ready_successes += 1;
                            if st.ready_successes >= p.success_threshold.unwrap_or(1).max(1) {
                                st.ready = true;
                            }
                        } else {
                            st.ready_successes = 0;
                            st.ready_failures += 1;
                            if st.ready_failures >= p.failure_threshold.unwrap_or(3).max(1) {
                                st.ready = false;
                            }
                        }
                    }
                }
            }
            if let Some(p) = &c.liveness_probe {
                if let Some(ok) = self
                    .probe_due(pod, &mut st, "liveness", p, age, c, info, ip)
                    .await
                {
                    if ok {
                        st.live_failures = 0;
                    } else {
                        st.live_failures += 1;
                        if st.live_failures >= p.failure_threshold.unwrap_or(3).max(1) {
                            kill_reason = Some("liveness");
                        }
                    }
                }
            }
        }
        if let Some(why) = kill_reason {
            tracing::info!(container = %c.name, pod = ?pod.metadata.name, "Container {} failed {why} probe, will be restarted", c.name);
            self.event(
                pod,
                Some(&c.name),
                EventType::Normal,
                "Killing",
                &format!("Container {} failed {why} probe, will be restarted", c.name),
            )
            .await;
            let grace = pod
                .spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
                .unwrap_or(30)
                .max(0) as u64;
            let rt = self.ctx.runtime.clone();
            let id = info.id.clone();
            let _ = blocking(move || Ok(rt.stop(&id, Duration::from_secs(grace))?)).await;
            st.ready = false;
        }
        self.probes.insert(c.name.clone(), st);
    }

    /// Runs `probe` if its period elapsed; None when not due.
    #[allow(clippy::too_many_arguments)]
    async fn probe_due(
        &self,
        pod: &Pod,
        st: &mut ProbeState,
        kind: &'static str,
        p: &Probe,
        age: f64,
        c: &Container,
        info: &ContainerInfo,
        ip: IpAddr,
    ) -> Option<bool> {
        if age < p.initial_delay_seconds.unwrap_or(0) as f64 {
            return None;
        }
        let period = Duration::from_secs(p.period_seconds.unwrap_or(10).max(1) as u64);
        if st.last.get(kind).is_some_and(|t| t.elapsed() < period) {
            return None;
        }
        st.last.insert(kind, Instant::now());
        let timeout = Duration::from_secs(p.timeout_seconds.unwrap_or(1).max(1) as u64);
        let res = if let Some(h) = &p.http_get {
            probes::http_get(h, c, ip, timeout).await
        } else if let Some(t) = &p.tcp_socket {
            probes::tcp_socket(t, c, ip, timeout).await
        } else if let Some(e) = &p.exec {
            probes::exec(
                &self.ctx.config.skiff_exe,
                &self.ctx.config.data_dir,
                &info.id,
                e,
                timeout,
            )
            .await
        } else {
            Err("unsupported probe handler".into())
        };
        if let Err(e) = &res {
            tracing::debug!(container = %c.name, "{kind} probe failed: {e}");
            let mut k = kind.to_string();
            if let Some(first) = k.get_mut(..1) {
                first.make_ascii_uppercase();
            }
            self.event(
                pod,
                Some(&c.name),
                EventType::Warning,
                "Unhealthy",
                &format!("{k} probe failed: {e}"),
            )
            .await;
        }
        Some(res.is_ok())
    }

    fn container_status(
        &self,
        c: &Container,
        list: &[(u32, ContainerInfo)],
        is_init: bool,
        default_waiting: &str,
    ) -> Value {
        let image = c.image.clone().unwrap_or_default();
        let image_id = self
            .images
            .get(&image)
            .map(|i| i.id.clone())
            .unwrap_or_default();
        let terminated = |info: &ContainerInfo| -> Value {
            let exit = info.exit.clone();
            let code = exit.as_ref().map(|e| e.code).unwrap_or(137);
            let reason = match &exit {
                Some(e) if e.oom_killed => "OOMKilled",
                Some(e) if e.code == 0 => "Completed",
                Some(_) => "Error",
                None => "ContainerStatusUnknown",
            };
            let mut t = json!({"exitCode": code, "reason": reason,
                               "containerID": format!("skiff://{}", info.id)});
            if let Some(s) = exit.as_ref().and_then(|e| e.signal) {
                t["signal"] = json!(s);
            }
            if let Some(s) = &info.started_at {
                t["startedAt"] = json!(trim_ts(s));
            }
            if let Some(e) = &exit {
                t["finishedAt"] = json!(trim_ts(&e.finished_at));
            }
            json!({"terminated": t})
        };
        let mut st = json!({"name": c.name, "image": image, "imageID": image_id,
                            "restartCount": list.first().map(|l| l.0).unwrap_or(0),
                            "ready": false, "started": false, "lastState": {}});
        let waiting = self.reasons.get(&c.name).cloned();
        match list.first() {
            None => {
                let (reason, msg) = waiting.unwrap_or((default_waiting.to_string(), String::new()));
                let mut w = json!({"reason": reason});
                if !msg.is_empty() {
                    w["message"] = json!(msg);
                }
                st["state"] = json!({"waiting": w});
            }
            Some((_, info)) => {
                st["containerID"] = json!(format!("skiff://{}", info.id));
                if info.status == Status::Running || info.status == Status::Created {
                    let pr = self.probes.get(&c.name).filter(|p| p.id == info.id);
                    let started = is_init || pr.is_some_and(|p| p.started);
                    st["started"] = json!(started);
                    st["ready"] = json!(!is_init && pr.is_some_and(|p| p.ready));
                    st["state"] = json!({"running": {"startedAt": info.started_at.as_deref().map(trim_ts).unwrap_or_default()}});
                    if let Some((_, prev)) = list.get(1) {
                        st["lastState"] = terminated(prev);
                    }
                } else if let Some((reason, msg)) = waiting {
                    // Held back (crash back-off) or a failed restart: waiting, last = this one.
                    st["state"] = json!({"waiting": {"reason": reason, "message": msg}});
                    st["lastState"] = terminated(info);
                } else {
                    st["state"] = terminated(info);
                    if is_init && info.exit.as_ref().is_some_and(|e| e.code == 0) {
                        st["ready"] = json!(true);
                    }
                    if let Some((_, prev)) = list.get(1) {
                        st["lastState"] = terminated(prev);
                    }
                }
            }
        }
        st
    }

    fn status(&self, pod: &Pod, inst: &Instances, sb: Option<&Sandbox>, api_phase: &str) -> Value {
        let empty = Vec::new();
        let spec = pod.spec.clone().unwrap_or_default();
        let policy = spec
            .restart_policy
            .clone()
            .unwrap_or_else(|| "Always".into());
        let inits: &[Container] = spec.init_containers.as_deref().unwrap_or_default();
        let init_statuses: Vec<Value> = inits
            .iter()
            .map(|c| {
                self.container_status(
                    c,
                    inst.get(&c.name).unwrap_or(&empty),
                    true,
                    "PodInitializing",
                )
            })
            .collect();
        let default_waiting = if inits.is_empty() {
            "ContainerCreating"
        } else {
            "PodInitializing"
        };
        let statuses: Vec<Value> = spec
            .containers
            .iter()
            .map(|c| {
                self.container_status(
                    c,
                    inst.get(&c.name).unwrap_or(&empty),
                    false,
                    default_waiting,
                )
            })
            .collect();

        // getPhase (§3.1).
        let term_code = |s: &Value, key: &str| s[key]["terminated"]["exitCode"].as_i64();
        let (mut pending_init, mut failed_init) = (0, 0);
        for s in &init_statuses {
            match term_code(s, "state") {
                Some(0) => {}
                Some(_) => failed_init += 1,
                None => {
                    if term_code(s, "lastState").is_some_and(|c| c != 0)
                        && s["state"]["waiting"].is_object()
                    {
                        failed_init += 1;
                    } else {
                        pending_init += 1;
                    }
                }
            }
        }
        let (mut running, mut stopped, mut succeeded, mut waiting) = (0, 0, 0, 0);
        for s in &statuses {
            if s["state"]["running"].is_object() {
                running += 1;
            } else if let Some(code) = term_code(s, "state") {
                stopped += 1;
                if code == 0 {
                    succeeded += 1;
                }
            } else if s["lastState"]["terminated"].is_object() {
                stopped += 1;
            } else {
                waiting += 1;
            }
        }
        let phase = if api_phase == "Succeeded" || api_phase == "Failed" {
            api_phase.to_string()
        } else if failed_init > 0 && policy == "Never" {
            "Failed".into()
        } else if pending_init > 0 || failed_init > 0 || waiting > 0 {
            "Pending".into()
        } else if running > 0 {
            "Running".into()
        } else if stopped > 0 {
            if policy == "Always" {
                "Running".into()
            } else if stopped == succeeded {
                "Succeeded".into()
            } else if policy == "Never" {
                "Failed".into()
            } else {
                "Running".into()
            }
        } else {
            "Pending".into()
        };

        let now = jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        let old = pod.status.clone().unwrap_or_default();
        let old_conds = old.conditions.clone().unwrap_or_default();
        // lastTransitionTime only moves when the status flips (so unchanged status = no write).
        let cond = |typ: &str, ok: bool, reason: Option<String>, msg: Option<String>| {
            let status = if ok { "True" } else { "False" };
            let t = old_conds
                .iter()
                .find(|c| c.type_ == typ && c.status == status)
                .and_then(|c| c.last_transition_time.as_ref())
                .map(|t| t.0.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
                .unwrap_or_else(|| now.clone());
            let mut v = json!({"type": typ, "status": status, "lastTransitionTime": t, "lastProbeTime": null});
            if let Some(r) = reason.filter(|_| !ok) {
                v["reason"] = json!(r);
            }
            if let Some(m) = msg.filter(|_| !ok) {
                v["message"] = json!(m);
            }
            v
        };
        let not_done: Vec<String> = inits
            .iter()
            .zip(&init_statuses)
            .filter(|(_, s)| term_code(s, "state") != Some(0))
            .map(|(c, _)| c.name.clone())
            .collect();
        let not_ready: Vec<String> = spec
            .containers
            .iter()
            .zip(&statuses)
            .filter(|(_, s)| s["ready"] != json!(true))
            .map(|(c, _)| c.name.clone())
            .collect();
        let initialized = not_done.is_empty();
        let containers_ready = not_ready.is_empty();
        let (cr_reason, cr_msg) = if phase == "Succeeded" {
            ("PodCompleted".to_string(), None)
        } else {
            (
                "ContainersNotReady".to_string(),
                Some(format!(
                    "containers with unready status: [{}]",
                    not_ready.join(" ")
                )),
            )
        };
        let mut conditions = vec![
            cond("PodReadyToStartContainers", sb.is_some(), None, None),
            cond(
                "Initialized",
                initialized,
                Some(if phase == "Succeeded" {
                    "PodCompleted".into()
                } else {
                    "ContainersNotInitialized".into()
                }),
                Some(format!(
                    "containers with incomplete status: [{}]",
                    not_done.join(" ")
                )),
            ),
            cond(
                "Ready",
                containers_ready,
                Some(cr_reason.clone()),
                cr_msg.clone(),
            ),
            cond("ContainersReady", containers_ready, Some(cr_reason), cr_msg),
        ];
        // Conditions of other writers (PodScheduled, DisruptionTarget, gates) are kept.
        const OURS: &[&str] = &[
            "PodReadyToStartContainers",
            "Initialized",
            "Ready",
            "ContainersReady",
        ];
        for c in &old_conds {
            if !OURS.contains(&c.type_.as_str()) {
                if let Ok(v) = serde_json::to_value(c) {
                    conditions.push(v);
                }
            }
        }
        let host_ip = self.ctx.config.node_ip.to_string();
        let mut status = json!({
            "phase": phase,
            "conditions": conditions,
            "hostIP": host_ip,
            "hostIPs": [{"ip": host_ip}],
            "startTime": self.start_time,
            "qosClass": build::qos_class(pod),
            "containerStatuses": statuses,
        });
        if !inits.is_empty() {
            status["initContainerStatuses"] = json!(init_statuses);
        }
        if let Some(sb) = sb {
            status["podIP"] = json!(sb.ip.to_string());
            status["podIPs"] = json!([{"ip": sb.ip.to_string()}]);
        }
        if let Some(e) = &self.sandbox_error {
            status["message"] = json!(format!("pod sandbox: {e}"));
        }
        if let Some(msg) = &self.evicted {
            status["phase"] = json!("Failed");
            status["reason"] = json!("Evicted");
            status["message"] = json!(msg);
            if let Some(conds) = status["conditions"].as_array_mut() {
                if !conds.iter().any(|c| c["type"] == "DisruptionTarget") {
                    conds.push(json!({"type": "DisruptionTarget", "status": "True",
                        "reason": "TerminationByKubelet", "message": msg,
                        "lastTransitionTime": now, "lastProbeTime": null}));
                }
            }
        }
        status
    }

    /// Zero-loss termination: before any signal, wait until no EndpointSlice lists this pod
    /// as ready (the endpoints controller drops terminating pods at once), then give the
    /// service proxies `PROXY_PROPAGATION` to reprogram. Upstream leaves this to a preStop
    /// sleep in every manifest; doing it here means new connections stop arriving before the
    /// pod is asked to exit. Pods no Service selects pay nothing.
    async fn leave_endpoints(&self, pod: &Pod, deadline: Instant) {
        const PROXY_PROPAGATION: Duration = Duration::from_millis(300);
        let Some(ns) = pod.metadata.namespace.as_deref() else {
            return;
        };
        let slices: Api<EndpointSlice> = Api::namespaced(self.ctx.client.clone(), ns);
        // Keep at least a second of the grace period for the pod itself.
        let limit = deadline
            .checked_sub(Duration::from_secs(1))
            .unwrap_or(deadline)
            .min(Instant::now() + Duration::from_secs(10));
        let mut was_listed = false;
        loop {
            let listed = match slices.list(&ListParams::default()).await {
                Ok(list) => list.items.iter().any(|s| {
                    s.endpoints.iter().any(|e| {
                        e.target_ref.as_ref().and_then(|r| r.uid.as_deref()) == Some(&self.uid)
                            && e.conditions.as_ref().and_then(|c| c.ready) != Some(false)
                    })
                }),
                Err(e) => {
                    tracing::debug!(pod_uid = %self.uid, "listing endpoint slices: {e}");
                    false
                }
            };
            if !listed {
                break;
            }
            was_listed = true;
            if Instant::now() >= limit {
                tracing::warn!(pod_uid = %self.uid, "still a ready endpoint; terminating anyway");
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // This node's proxy can be asked: wait until its applied table stops sending new
        // connections here (under load an `nft -f` can lag the slice by more than the
        // fixed propagation delay below).
        if let (Some(status), Some(sb)) = (self.ctx.proxy.get(), self.sandbox.as_ref()) {
            while status.targets(sb.ip) == Some(true) && Instant::now() < limit {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        // The slice may already have been updated before our first look, so also ask whether
        // any Service selects the pod: then other nodes' proxies may still be catching up.
        if was_listed || self.selected_by_a_service(pod).await {
            let left = limit.saturating_duration_since(Instant::now());
            tokio::time::sleep(PROXY_PROPAGATION.min(left)).await;
        }
    }

    async fn selected_by_a_service(&self, pod: &Pod) -> bool {
        let Some(ns) = pod.metadata.namespace.as_deref() else {
            return false;
        };
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        let services: Api<Service> = Api::namespaced(self.ctx.client.clone(), ns);
        match services.list(&ListParams::default()).await {
            Ok(list) => list.items.iter().any(|svc| {
                svc.spec
                    .as_ref()
                    .and_then(|s| s.selector.as_ref())
                    .is_some_and(|sel| {
                        !sel.is_empty() && sel.iter().all(|(k, v)| labels.get(k) == Some(v))
                    })
            }),
            Err(_) => true,
        }
    }

    /// Graceful termination (§3.6): preStop hooks, stop with the grace period, remove
    /// containers and the sandbox, then the final delete with grace 0.
    async fn terminate(&mut self, pod: &Pod) {
        let grace = pod
            .metadata
            .deletion_grace_period_seconds
            .unwrap_or(30)
            .max(0) as u64;
        let deadline = Instant::now() + Duration::from_secs(grace);
        if grace > 0 {
            self.leave_endpoints(pod, deadline).await;
        }
        let inst = self.instances(pod).await.unwrap_or_default();
        for c in pod.spec.iter().flat_map(|s| s.containers.iter()) {
            let running = inst
                .get(&c.name)
                .and_then(|l| l.first())
                .is_some_and(|(_, i)| i.status == Status::Running);
            if running {
                let msg = format!("Stopping container {}", c.name);
                self.event(pod, Some(&c.name), EventType::Normal, "Killing", &msg)
                    .await;
            }
        }
        if grace > 0 {
            let mut hooks = Vec::new();
            for c in pod.spec.iter().flat_map(|s| s.containers.iter()) {
                let Some(handler) = c.lifecycle.as_ref().and_then(|l| l.pre_stop.clone()) else {
                    continue;
                };
                let Some((_, info)) = inst.get(&c.name).and_then(|l| l.first()) else {
                    continue;
                };
                if info.status != Status::Running {
                    continue;
                }
                let remaining = deadline.saturating_duration_since(Instant::now());
                let ctx = self.ctx.clone();
                let id = info.id.clone();
                let c = c.clone();
                let ip = self.sandbox.as_ref().map(|s| IpAddr::V4(s.ip));
                hooks.push(async move {
                    let r = if let Some(e) = &handler.exec {
                        probes::exec(
                            &ctx.config.skiff_exe,
                            &ctx.config.data_dir,
                            &id,
                            e,
                            remaining,
                        )
                        .await
                    } else if let (Some(h), Some(ip)) = (&handler.http_get, ip) {
                        probes::http_get(h, &c, ip, remaining).await
                    } else if let Some(s) = &handler.sleep {
                        tokio::time::sleep(
                            Duration::from_secs(s.seconds.max(0) as u64).min(remaining),
                        )
                        .await;
                        Ok(())
                    } else {
                        Ok(())
                    };
                    if let Err(e) = r {
                        tracing::warn!(container = %c.name, "preStop hook failed: {e}");
                    }
                });
            }
            futures::future::join_all(hooks).await;
        }
        // preStop overrunning the grace period earns a one-off 2 s (upstream).
        let remaining = deadline
            .saturating_duration_since(Instant::now())
            .max(if grace > 0 {
                Duration::from_secs(2)
            } else {
                Duration::ZERO
            });
        self.teardown(Some(pod), remaining).await;
        let (name, ns) = names(pod);
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &ns);
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(self.uid.clone()),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(&name, &dp).await {
            Ok(_) => {}
            Err(kube::Error::Api(ae)) if ae.code == 404 || ae.code == 409 => {}
            Err(e) => tracing::warn!(pod = %name, "final delete failed: {e}"),
        }
    }

    /// Stops and removes every container of the pod, its sandbox and its files.
    async fn teardown(&mut self, pod: Option<&Pod>, grace: Duration) {
        let u = uid8(&self.uid);
        let rt = self.ctx.runtime.clone();
        let mine: Vec<ContainerInfo> = match blocking(move || Ok(rt.list()?)).await {
            Ok(all) => all
                .into_iter()
                .filter(|i| parse_runtime_name(&i.name).is_some_and(|n| n.uid8 == u))
                .collect(),
            Err(e) => {
                tracing::warn!("listing containers: {e}");
                Vec::new()
            }
        };
        // Stop in parallel: each gets the full remaining grace.
        let stops = mine.iter().map(|info| {
            let rt = self.ctx.runtime.clone();
            let id = info.id.clone();
            blocking(move || {
                rt.stop(&id, grace)?;
                Ok(rt.remove(&id, true)?)
            })
        });
        for r in futures::future::join_all(stops).await {
            if let Err(e) = r {
                tracing::warn!(pod_uid = %self.uid, "removing container: {e}");
            }
        }
        // Whatever the containers' state files say: nothing of the pod survives it.
        let rt = self.ctx.runtime.clone();
        let cg = format!("pod{}", self.uid);
        if let Err(e) = blocking(move || Ok(rt.remove_pod_cgroup(&cg)?)).await {
            tracing::warn!(pod_uid = %self.uid, "removing the pod cgroup: {e}");
        }
        self.ctx.containers.invalidate();
        let net = self.ctx.net.clone();
        let uid = self.uid.clone();
        if let Err(e) = blocking(move || Ok(net.remove_sandbox(&uid)?)).await {
            tracing::warn!(pod_uid = %self.uid, "removing sandbox: {e}");
        }
        self.sandbox = None;
        // Unmounts subPath staging mounts and the secret/memory tmpfs before deleting.
        let dir = self.pod_dir();
        let _ = blocking(move || {
            volumes::remove_pod_dir(&dir);
            Ok(())
        })
        .await;
        if let Some(p) = pod {
            let (name, ns) = names(p);
            self.ctx.index.forget_pod(&ns, &name, &self.uid);
        }
    }
}

/// Unmounts and removes every pod directory of a data dir (`skiff reset`): subPath staging
/// mounts, secret and memory tmpfs mounts, then the files.
pub fn remove_all_pod_dirs(data_dir: &std::path::Path) {
    let pods = data_dir.join("agent/pods");
    for e in std::fs::read_dir(&pods).into_iter().flatten().flatten() {
        volumes::remove_pod_dir(&e.path());
    }
}

fn names(pod: &Pod) -> (String, String) {
    (
        pod.metadata.name.clone().unwrap_or_default(),
        pod.metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into()),
    )
}

/// RFC 3339 with second precision (what the API shows).
fn trim_ts(s: &str) -> String {
    parse_ts(s)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_roundtrip() {
        let n = runtime_name("web", "nginx-1", "default", "0123abcd-ef00-1111", 3);
        assert_eq!(n, "k8s_web_nginx-1_default_0123abcd_3");
        let p = parse_runtime_name(&n).unwrap();
        assert_eq!(p.container, "web");
        assert_eq!(p.pod, "nginx-1");
        assert_eq!(p.attempt, 3);
        assert!(parse_runtime_name("skiff_brave_otter").is_none());
    }
}
