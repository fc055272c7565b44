//! One pod's worker: the level-triggered sync loop. Each pass ensures the sandbox, runs init
//! containers in order and then the app containers, restarts exited ones by the restart
//! policy with crash back-off, runs probes, re-syncs volumes, checks local storage, and
//! patches pods/status when it changed.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod};
use kube::api::{Api, Patch, PatchParams};
use kube::Resource;
use serde_json::{json, Value};
use skiff_client::events::EventType;
use skiff_image::ResolvedImage;
use skiff_net::{PortMapping, Sandbox, SandboxRequest};
use skiff_runtime::{ContainerInfo, JoinNamespaces, Status};
use tokio::time::Instant;

use super::index::{parse_runtime_name, runtime_name, uid8};
use super::manager::Ctx;
use super::probes::ProbeState;
use super::runtime::blocking;
use super::{
    build, etc, names, parse_ts, volumes, BACKOFF_INITIAL, BACKOFF_MAX, ORPHAN_GRACE, RESYNC,
};
use crate::Result;

/// flowcontrol.Backoff for one container.
#[derive(Debug, Clone)]
pub(super) struct Backoff {
    pub(super) delay: Duration,
    pub(super) last_update: jiff::Timestamp,
}

/// One pod's worker.
pub(super) struct Worker {
    pub(super) ctx: Arc<Ctx>,
    pub(super) uid: String,
    pub(super) rx: tokio::sync::watch::Receiver<Option<Pod>>,
    pub(super) sandbox: Option<Sandbox>,
    pub(super) images: HashMap<String, ResolvedImage>,
    pub(super) image_backoff: HashMap<String, (Instant, Duration)>,
    /// Waiting reason/message per container name (set when a start failed or is held back).
    pub(super) reasons: HashMap<String, (String, String)>,
    pub(super) backoff: HashMap<String, Backoff>,
    pub(super) probes: HashMap<String, ProbeState>,
    pub(super) start_time: Option<String>,
    pub(super) last_status: Option<Value>,
    pub(super) sandbox_error: Option<String>,
    /// When the pod's ConfigMap/Secret/projected/downwardAPI volumes were last written.
    pub(super) volumes_synced: Option<Instant>,
    /// When emptyDir and ephemeral-storage usage was last measured.
    pub(super) usage_checked: Option<Instant>,
    /// Why the kubelet failed the pod itself (reason, message): `Evicted` for its storage use,
    /// `DeadlineExceeded` past `activeDeadlineSeconds`. Its containers are stopped and stay so.
    pub(super) evicted: Option<(String, String)>,
}

pub(super) type Instances = HashMap<String, Vec<(u32, ContainerInfo)>>;

impl Worker {
    pub(super) fn new(
        ctx: Arc<Ctx>,
        uid: String,
        rx: tokio::sync::watch::Receiver<Option<Pod>>,
    ) -> Self {
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

    pub(super) async fn run(mut self) {
        // Metrics: the first sync is a create, one after a pod change an update, else a resync;
        // pod start latency counts from here, unless the pod already ran (agent restart).
        let seen = Instant::now();
        let mut operation = "create";
        let mut start_pending = true;
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
                    if start_pending && operation == "create" {
                        start_pending = !p.status.as_ref().is_some_and(|st| {
                            st.phase.as_deref() == Some("Running")
                                || st.phase.as_deref() == Some("Succeeded")
                                || st.phase.as_deref() == Some("Failed")
                        });
                    }
                    let began = Instant::now();
                    if let Err(e) = self.sync(&p).await {
                        tracing::warn!(pod = ?p.metadata.name, "sync failed: {e}");
                    }
                    crate::prometheus::observe_pod_worker(operation, began.elapsed().as_secs_f64());
                    if start_pending
                        && self
                            .last_status
                            .as_ref()
                            .and_then(|st| st.get("phase"))
                            .and_then(|p| p.as_str())
                            == Some("Running")
                    {
                        start_pending = false;
                        crate::prometheus::observe_pod_start(seen.elapsed().as_secs_f64());
                    }
                }
            }
            tokio::select! {
                r = self.rx.changed() => {
                    if r.is_err() { return }
                    operation = "update";
                }
                _ = tokio::time::sleep(RESYNC) => operation = "sync",
            }
        }
    }

    pub(super) fn pod_dir(&self) -> PathBuf {
        self.ctx.config.data_dir.join("agent/pods").join(&self.uid)
    }

    /// A kubelet Event about the pod (or one of its containers), as `kubectl describe` shows.
    /// Published in the background.
    pub(super) async fn event(
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
        let nameserver = self.ctx.runtime.dns_server().to_string();
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
    pub(super) async fn instances(&self, pod: &Pod) -> Result<Instances> {
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
        let sb = self.ctx.runtime.run_sandbox(req).await?;
        // Policies isolate the pod before any of its containers can answer.
        if !sb.host_network {
            if let Some(np) = self.ctx.netpol.get() {
                np.pod_sandbox_ready(pod, sb.ip).await;
            }
        }
        self.sandbox = Some(sb.clone());
        Ok(sb)
    }

    /// Starts instance `attempt` of `c`; on failure records a waiting reason.
    pub(super) async fn start(
        &mut self,
        pod: &Pod,
        c: &Container,
        attempt: u32,
        sb: &Sandbox,
    ) -> bool {
        self.start_in(pod, c, attempt, sb, None).await
    }

    /// A waiting reason shown in the container's status until it starts.
    pub(super) fn set_reason(&mut self, container: &str, reason: &str, message: String) {
        self.reasons
            .insert(container.to_string(), (reason.to_string(), message));
    }

    /// [`Worker::start`], joining PID namespace `pid_ns` (an ephemeral container's target).
    pub(super) async fn start_in(
        &mut self,
        pod: &Pod,
        c: &Container,
        attempt: u32,
        sb: &Sandbox,
        pid_ns: Option<PathBuf>,
    ) -> bool {
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
        let mut objects = build::Objects::new(self.ctx.client.clone(), &ns)
            .with_tokens(self.ctx.tokens.clone())
            .with_storage_root(self.ctx.config.storage_root());
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
                if let Some(why) = msg.strip_prefix(build::FAILED_MOUNT) {
                    // Not ready yet (an unbound claim): ContainerCreating, retried.
                    let msg = format!("Unable to attach or mount volumes: {why}");
                    self.event(pod, None, EventType::Warning, "FailedMount", &msg)
                        .await;
                    return false;
                }
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
        let pod_spec = pod.spec.as_ref();
        let join = JoinNamespaces {
            ipc: Some(sb.ipcns.clone()),
            uts: Some(sb.utsns.clone()),
            host_pid: pod_spec.and_then(|s| s.host_pid) == Some(true),
            host_ipc: pod_spec.and_then(|s| s.host_ipc) == Some(true),
            pid: pid_ns,
        };
        let started = self.ctx.runtime.start_container(spec, join).await;
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

    /// A container's config could not be built (missing ConfigMap key, bad subPath, …).
    pub(super) async fn config_error(&mut self, pod: &Pod, c: &Container, msg: String) {
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
                let _ = self.ctx.runtime.remove_container(&info.id).await;
            }
            self.ctx.containers.invalidate();
        }
    }

    pub(super) async fn sync(&mut self, pod: &Pod) -> Result<()> {
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
        self.check_active_deadline(pod, &spec).await;
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
            self.start_ephemeral(pod, &spec, &inst, sb).await;
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
        let mut objects =
            build::Objects::new(self.ctx.client.clone(), &ns).with_tokens(self.ctx.tokens.clone());
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
                    self.ctx.runtime.writable_layer(&info.id),
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
            for (name, limit, upper, log) in &containers {
                let layer = volumes::disk_usage(upper);
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
        self.stop_all(inst, Duration::ZERO).await;
        self.evicted = Some(("Evicted".into(), message));
    }

    /// Upstream's active deadline handler: a pod running longer than `activeDeadlineSeconds`
    /// since its start time fails with reason `DeadlineExceeded` (a Normal event of that
    /// reason), its containers stopped with the pod's grace period.
    async fn check_active_deadline(
        &mut self,
        pod: &Pod,
        spec: &k8s_openapi::api::core::v1::PodSpec,
    ) {
        let Some(limit) = spec.active_deadline_seconds else {
            return;
        };
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if self.evicted.is_some() || matches!(phase, Some("Succeeded" | "Failed")) {
            return;
        }
        let Some(start) = self.start_time.as_deref().and_then(parse_ts) else {
            return;
        };
        let Ok(deadline) = start.checked_add(jiff::SignedDuration::from_secs(limit.max(0))) else {
            return;
        };
        if jiff::Timestamp::now() < deadline {
            return;
        }
        const MESSAGE: &str = "Pod was active on the node longer than the specified deadline";
        tracing::info!(pod_uid = %self.uid, "{MESSAGE}");
        self.event(pod, None, EventType::Normal, "DeadlineExceeded", MESSAGE)
            .await;
        let grace = spec.termination_grace_period_seconds.unwrap_or(30).max(0) as u64;
        if let Ok(inst) = self.instances(pod).await {
            self.stop_all(&inst, Duration::from_secs(grace)).await;
        }
        self.evicted = Some(("DeadlineExceeded".into(), MESSAGE.into()));
    }

    /// Stops the newest instance of every container.
    async fn stop_all(&self, inst: &Instances, grace: Duration) {
        let stops = inst
            .values()
            .filter_map(|l| l.first())
            .filter(|(_, info)| matches!(info.status, Status::Running | Status::Created))
            .map(|(_, info)| self.ctx.runtime.stop_container(&info.id, grace));
        for r in futures::future::join_all(stops).await {
            if let Err(e) = r {
                tracing::warn!(pod_uid = %self.uid, "stopping a container of a failed pod: {e}");
            }
        }
        self.ctx.containers.invalidate();
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
                    let _ = self.ctx.runtime.remove_container(&info.id).await;
                    self.ctx.containers.invalidate();
                }
            }
        }
    }
}
