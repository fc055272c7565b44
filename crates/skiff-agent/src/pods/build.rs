//! Turns a pod's container into a runtime `ContainerSpec`: argv (Kubernetes command/args vs
//! image Entrypoint/Cmd rules), environment (`$(VAR)` expansion, valueFrom, envFrom), volumes
//! (emptyDir, configMap, secret, projected, downwardAPI, hostPath, persistentVolumeClaim) as
//! bind mounts, resources
//! (§9 formulas) and securityContext.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{
    ConfigMap, Container, KeyToPath, PersistentVolume, PersistentVolumeClaim, Pod, Secret, Service,
};
use kube::api::Api;
use kube::Client;
use skiff_image::ResolvedImage;
use skiff_runtime::{BindMount, ContainerSpec, NetworkMode};

use super::volumes;

/// Why a container could not be configured: `CreateContainerConfigError` with this message.
pub type ConfigError = String;

/// Prefix of a [`ConfigError`] that means "a volume is not ready yet" (an unbound claim): the
/// pod stays ContainerCreating with a `FailedMount` event instead of a config error.
pub const FAILED_MOUNT: &str = "FailedMount: ";

/// The provisioner whose volumes live under the node's storage root.
const LOCAL_PATH_PROVISIONER: &str = "skiff.dev/local-path";

/// ConfigMaps and Secrets of one namespace, fetched at most once per container start.
pub struct Objects {
    client: Client,
    namespace: String,
    config_maps: HashMap<String, Option<ConfigMap>>,
    secrets: HashMap<String, Option<Secret>>,
    /// The namespace's Services plus `default/kubernetes`, listed once (service links).
    services: Option<Vec<Service>>,
    /// Bound ServiceAccount tokens for projected volumes (shared by the node's workers).
    tokens: Option<std::sync::Arc<super::tokens::TokenManager>>,
    /// The node's storage root (provisioned volumes live directly beneath it).
    storage_root: Option<PathBuf>,
}

impl Objects {
    pub fn new(client: Client, namespace: &str) -> Self {
        Objects {
            client,
            namespace: namespace.to_string(),
            config_maps: HashMap::new(),
            secrets: HashMap::new(),
            services: None,
            tokens: None,
            storage_root: None,
        }
    }

    /// Provisioned `persistentVolumeClaim` volumes are resolved beneath `root`.
    pub fn with_storage_root(mut self, root: PathBuf) -> Self {
        self.storage_root = Some(root);
        self
    }

    /// The host directory behind claim `name`: the claim must be Bound to a volume claimed by
    /// it; a local-path volume is a plain directory directly beneath the storage root (created
    /// if missing, never through a symlink), a static hostPath/local volume is used as a
    /// hostPath is.
    async fn claim_dir(&self, name: &str) -> Result<PathBuf, ConfigError> {
        let ns = &self.namespace;
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), ns);
        let pvc = claims
            .get_opt(name)
            .await
            .map_err(|e| format!("reading persistentvolumeclaim {name:?}: {e}"))?
            .ok_or_else(|| format!("{FAILED_MOUNT}persistentvolumeclaim \"{name}\" not found"))?;
        let volume = pvc
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.clone())
            .unwrap_or_default();
        let bound = pvc.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
        if volume.is_empty() || !bound {
            return Err(format!(
                "{FAILED_MOUNT}error processing PVC {ns}/{name}: PVC is not bound"
            ));
        }
        let pv = Api::<PersistentVolume>::all(self.client.clone())
            .get_opt(&volume)
            .await
            .map_err(|e| format!("reading persistentvolume {volume:?}: {e}"))?
            .ok_or_else(|| format!("{FAILED_MOUNT}persistentvolume \"{volume}\" not found"))?;
        let spec = pv.spec.as_ref();
        let claimed = spec
            .and_then(|s| s.claim_ref.as_ref())
            .is_some_and(|r| r.uid.is_some() && r.uid == pvc.metadata.uid);
        if !claimed {
            return Err(format!(
                "{FAILED_MOUNT}error processing PVC {ns}/{name}: volume {volume} is not bound to it"
            ));
        }
        let provisioned = pv
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("pv.kubernetes.io/provisioned-by"))
            .map(String::as_str)
            == Some(LOCAL_PATH_PROVISIONER);
        let host_path = spec.and_then(|s| s.host_path.as_ref());
        let path = host_path
            .map(|h| h.path.clone())
            .or_else(|| spec.and_then(|s| s.local.as_ref()).map(|l| l.path.clone()))
            .ok_or_else(|| {
                format!("volume {volume}: only hostPath and local volumes are supported")
            })?;
        let path = PathBuf::from(path);
        if provisioned {
            let root = self
                .storage_root
                .as_deref()
                .ok_or_else(|| format!("volume {volume}: this node has no storage root"))?;
            let entry = path
                .file_name()
                .and_then(|n| n.to_str())
                .filter(|_| path.parent() == Some(root))
                .ok_or_else(|| {
                    format!(
                        "volume {volume}: {} is not directly beneath this node's storage root {}",
                        path.display(),
                        root.display()
                    )
                })?;
            return volumes::provisioned_dir(root, entry);
        }
        if host_path.and_then(|h| h.type_.as_deref()) == Some("DirectoryOrCreate") {
            mkdir(&path)?;
        }
        if !path.is_dir() {
            return Err(format!(
                "{FAILED_MOUNT}volume {volume}: path {} does not exist",
                path.display()
            ));
        }
        Ok(path)
    }

    /// Projected `serviceAccountToken` sources get their tokens from `tokens`.
    pub fn with_tokens(mut self, tokens: std::sync::Arc<super::tokens::TokenManager>) -> Self {
        self.tokens = Some(tokens);
        self
    }

    /// A bound token for a projected `serviceAccountToken` source of `pod`.
    async fn service_account_token(
        &mut self,
        pod: &Pod,
        source: &k8s_openapi::api::core::v1::ServiceAccountTokenProjection,
    ) -> Result<String, ConfigError> {
        let Some(tokens) = self.tokens.clone() else {
            return Err("failed to fetch token: no token manager on this node".into());
        };
        let key = super::tokens::TokenKey {
            namespace: self.namespace.clone(),
            service_account: pod
                .spec
                .as_ref()
                .and_then(|s| s.service_account_name.clone())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "default".into()),
            audience: source.audience.clone().unwrap_or_default(),
            expiration_seconds: source.expiration_seconds,
            pod_uid: pod.metadata.uid.clone().unwrap_or_default(),
        };
        let name = pod.metadata.name.clone().unwrap_or_default();
        tokens.get(&self.client, &key, &name).await
    }

    /// The Services whose variables a container of this namespace may get: the namespace's
    /// own (only needed with service links) and `default/kubernetes` (always).
    async fn services(&mut self, links: bool) -> Result<&[Service], ConfigError> {
        if self.services.is_none() {
            let mut out = Vec::new();
            if links {
                let api: Api<Service> = Api::namespaced(self.client.clone(), &self.namespace);
                let list = api
                    .list(&Default::default())
                    .await
                    .map_err(|e| format!("listing services: {e}"))?;
                out.extend(list.items);
            }
            if self.namespace != "default" || !links {
                let api: Api<Service> = Api::namespaced(self.client.clone(), "default");
                let master = api
                    .get_opt(MASTER_SERVICE)
                    .await
                    .map_err(|e| format!("reading service \"{MASTER_SERVICE}\": {e}"))?;
                out.extend(master);
            }
            self.services = Some(out);
        }
        Ok(self.services.as_deref().unwrap_or_default())
    }

    async fn config_map(&mut self, name: &str) -> Result<Option<&ConfigMap>, ConfigError> {
        if !self.config_maps.contains_key(name) {
            let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &self.namespace);
            let cm = api
                .get_opt(name)
                .await
                .map_err(|e| format!("reading configmap {name:?}: {e}"))?;
            self.config_maps.insert(name.to_string(), cm);
        }
        Ok(self.config_maps.get(name).and_then(|c| c.as_ref()))
    }

    async fn secret(&mut self, name: &str) -> Result<Option<&Secret>, ConfigError> {
        if !self.secrets.contains_key(name) {
            let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
            let s = api
                .get_opt(name)
                .await
                .map_err(|e| format!("reading secret {name:?}: {e}"))?;
            self.secrets.insert(name.to_string(), s);
        }
        Ok(self.secrets.get(name).and_then(|c| c.as_ref()))
    }

    /// All keys of a ConfigMap as bytes (data and binaryData).
    async fn config_map_data(
        &mut self,
        name: &str,
    ) -> Result<Option<BTreeMap<String, Vec<u8>>>, ConfigError> {
        Ok(self.config_map(name).await?.map(|cm| {
            let mut out: BTreeMap<String, Vec<u8>> = cm
                .data
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
                .collect();
            for (k, v) in cm.binary_data.iter().flatten() {
                out.insert(k.clone(), v.0.clone());
            }
            out
        }))
    }

    async fn secret_data(
        &mut self,
        name: &str,
    ) -> Result<Option<BTreeMap<String, Vec<u8>>>, ConfigError> {
        Ok(self.secret(name).await?.map(|s| {
            let mut out: BTreeMap<String, Vec<u8>> = s
                .data
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.0.clone()))
                .collect();
            for (k, v) in s.string_data.iter().flatten() {
                out.insert(k.clone(), v.clone().into_bytes());
            }
            out
        }))
    }
}

/// The API server's own Service, whose variables every container gets.
const MASTER_SERVICE: &str = "kubernetes";

/// The service-link variables of a container in `namespace`, as the kubelet writes them
/// (`pkg/kubelet/envvars`): for each Service with a ClusterIP, `<NAME>_SERVICE_HOST`,
/// `_SERVICE_PORT` (first port), `_SERVICE_PORT_<PORTNAME>` (named ports) and the Docker-link
/// style `_PORT`, `_PORT_<port>_<PROTO>[_PROTO|_PORT|_ADDR]`. `default/kubernetes` always
/// counts; the namespace's other Services only with `links` (`enableServiceLinks`); a Service
/// of the pod's own namespace wins over `default`'s of the same name.
pub fn service_env(services: &[Service], namespace: &str, links: bool) -> Vec<(String, String)> {
    let mut chosen: BTreeMap<&str, &Service> = BTreeMap::new();
    for svc in services {
        let (Some(name), Some(ns)) = (
            svc.metadata.name.as_deref(),
            svc.metadata.namespace.as_deref(),
        ) else {
            continue;
        };
        let ip = svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref());
        if matches!(ip, None | Some("") | Some("None")) {
            continue;
        }
        if ns == "default" && name == MASTER_SERVICE {
            chosen.entry(name).or_insert(svc);
        } else if ns == namespace && links {
            chosen.insert(name, svc);
        }
    }
    let mut out = Vec::new();
    for (name, svc) in chosen {
        let Some(spec) = svc.spec.as_ref() else {
            continue;
        };
        let ip = spec.cluster_ip.as_deref().unwrap_or_default();
        let ports = spec.ports.as_deref().unwrap_or_default();
        let prefix = env_name(name);
        out.push((format!("{prefix}_SERVICE_HOST"), ip.to_string()));
        if let Some(first) = ports.first() {
            out.push((format!("{prefix}_SERVICE_PORT"), first.port.to_string()));
        }
        for p in ports {
            if let Some(pn) = p.name.as_deref().filter(|n| !n.is_empty()) {
                out.push((
                    format!("{prefix}_SERVICE_PORT_{}", env_name(pn)),
                    p.port.to_string(),
                ));
            }
        }
        // IPv6 addresses are bracketed in the URLs (Go's net.JoinHostPort).
        let host = if ip.contains(':') {
            format!("[{ip}]")
        } else {
            ip.to_string()
        };
        for (i, p) in ports.iter().enumerate() {
            let proto = p.protocol.as_deref().unwrap_or("TCP");
            let url = format!("{}://{host}:{}", proto.to_lowercase(), p.port);
            if i == 0 {
                out.push((format!("{prefix}_PORT"), url.clone()));
            }
            let pp = format!("{prefix}_PORT_{}_{}", p.port, proto.to_uppercase());
            out.push((pp.clone(), url));
            out.push((format!("{pp}_PROTO"), proto.to_lowercase()));
            out.push((format!("{pp}_PORT"), p.port.to_string()));
            out.push((format!("{pp}_ADDR"), ip.to_string()));
        }
    }
    out
}

/// Upstream's makeEnvVariableName: upper case, `-` → `_`.
fn env_name(s: &str) -> String {
    s.replace('-', "_").to_uppercase()
}

/// Kubernetes `$(VAR)` expansion: defined names are replaced, `$$` escapes, others stay.
pub fn expand(s: &str, vars: &HashMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(inner) = after.strip_prefix('(') {
            match inner.find(')') {
                Some(end) => {
                    let name = &inner[..end];
                    match vars.get(name) {
                        Some(v) => out.push_str(v),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &inner[end + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = inner;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// A downward-API field (`fieldRef.fieldPath`).
pub fn field_value(pod: &Pod, path: &str, pod_ip: &str, host_ip: &str) -> Option<String> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let map_line = |m: &BTreeMap<String, String>| {
        m.iter()
            .map(|(k, v)| format!("{k}=\"{v}\""))
            .collect::<Vec<_>>()
            .join("\n")
    };
    if let Some(key) = path
        .strip_prefix("metadata.labels['")
        .and_then(|r| r.strip_suffix("']"))
    {
        return Some(
            meta.labels
                .as_ref()
                .and_then(|l| l.get(key).cloned())
                .unwrap_or_default(),
        );
    }
    if let Some(key) = path
        .strip_prefix("metadata.annotations['")
        .and_then(|r| r.strip_suffix("']"))
    {
        return Some(
            meta.annotations
                .as_ref()
                .and_then(|l| l.get(key).cloned())
                .unwrap_or_default(),
        );
    }
    Some(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => meta.labels.as_ref().map(map_line).unwrap_or_default(),
        "metadata.annotations" => meta.annotations.as_ref().map(map_line).unwrap_or_default(),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_else(|| "default".into()),
        "status.podIP" | "status.podIPs" => pod_ip.to_string(),
        "status.hostIP" | "status.hostIPs" => host_ip.to_string(),
        _ => return None,
    })
}

/// Quantities: cpu in millicores (`MilliValue()`, the shared exact parser).
pub fn parse_cpu_milli(q: &str) -> Option<i64> {
    skiff_semantics::quantity::parse_milli_value(q)
}

/// Quantities: bytes (`Value()`, rounded up; the shared exact parser).
pub fn parse_bytes(q: &str) -> Option<i64> {
    skiff_semantics::quantity::parse_value(q)
}

fn resource(c: &Container, limits: bool, name: &str) -> Option<String> {
    let r = c.resources.as_ref()?;
    let m = if limits { &r.limits } else { &r.requests };
    m.as_ref()?.get(name).map(|q| q.0.clone())
}

/// QoS class (§9): the one shared with the API server's `status.qosClass`.
pub fn qos_class(pod: &Pod) -> &'static str {
    skiff_semantics::pod_qos(pod).as_str()
}

/// A pod volume on the host.
#[derive(Debug, Clone)]
pub struct Volume {
    pub path: PathBuf,
    /// ConfigMap, Secret, projected and downwardAPI volumes: always mounted read-only.
    pub read_only: bool,
}

/// The pod's memory limit for a `medium: Memory` emptyDir without a smaller sizeLimit
/// (upstream: the sum of the app containers' limits, at least the largest init container's).
fn pod_memory_limit(pod: &Pod) -> Option<u64> {
    let spec = pod.spec.as_ref()?;
    let lim = |c: &Container| resource(c, true, "memory").and_then(|q| parse_bytes(&q));
    let sum: i64 = spec.containers.iter().filter_map(lim).sum();
    let init = spec
        .init_containers
        .iter()
        .flatten()
        .filter_map(lim)
        .max()
        .unwrap_or(0);
    u64::try_from(sum.max(init)).ok().filter(|v| *v > 0)
}

/// A byte quantity as `resource.Quantity.String()` prints it (the eviction messages quote
/// it): the largest binary (for `Ki`…`Ei` input) or decimal suffix that divides it evenly.
pub fn canonical_bytes(bytes: u64, like: &str) -> String {
    const BIN: &[(&str, u64)] = &[
        ("Ei", 1 << 60),
        ("Pi", 1 << 50),
        ("Ti", 1 << 40),
        ("Gi", 1 << 30),
        ("Mi", 1 << 20),
        ("Ki", 1 << 10),
    ];
    const DEC: &[(&str, u64)] = &[
        ("E", 1_000_000_000_000_000_000),
        ("P", 1_000_000_000_000_000),
        ("T", 1_000_000_000_000),
        ("G", 1_000_000_000),
        ("M", 1_000_000),
        ("k", 1_000),
    ];
    let table = if like.trim().ends_with('i') { BIN } else { DEC };
    if bytes > 0 {
        for (suffix, unit) in table {
            if bytes.is_multiple_of(*unit) {
                return format!("{}{suffix}", bytes / unit);
            }
        }
    }
    bytes.to_string()
}

/// An emptyDir for the eviction checks: name, sizeLimit (printed, bytes), memory-backed.
pub struct EmptyDirUse {
    pub name: String,
    pub limit: Option<(String, u64)>,
    pub memory: bool,
}

pub fn empty_dirs(pod: &Pod) -> Vec<EmptyDirUse> {
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| {
            let e = v.empty_dir.as_ref()?;
            let limit = e.size_limit.as_ref().and_then(|q| {
                let b = u64::try_from(parse_bytes(&q.0)?).ok().filter(|b| *b > 0)?;
                Some((canonical_bytes(b, &q.0), b))
            });
            Some(EmptyDirUse {
                name: v.name.clone(),
                limit,
                memory: e.medium.as_deref() == Some("Memory"),
            })
        })
        .collect()
}

/// A container's ephemeral-storage limit (printed, and in bytes).
pub fn ephemeral_storage_limit(c: &Container) -> Option<(String, u64)> {
    let q = resource(c, true, "ephemeral-storage")?;
    let b = u64::try_from(parse_bytes(&q)?).ok().filter(|b| *b > 0)?;
    Some((canonical_bytes(b, &q), b))
}

/// The pod's ephemeral-storage limit as upstream's PodLimits sums it: the app containers'
/// limits added up (in the first one's format), at least the largest init container's.
pub fn pod_ephemeral_storage_limit(pod: &Pod) -> Option<(String, u64)> {
    let spec = pod.spec.as_ref()?;
    let mut like: Option<String> = None;
    let mut sum = 0u64;
    for c in &spec.containers {
        if let Some(q) = resource(c, true, "ephemeral-storage") {
            if let Some(b) = parse_bytes(&q).and_then(|b| u64::try_from(b).ok()) {
                sum = sum.saturating_add(b);
                like.get_or_insert(q);
            }
        }
    }
    for c in spec.init_containers.iter().flatten() {
        if let Some(q) = resource(c, true, "ephemeral-storage") {
            if let Some(b) = parse_bytes(&q).and_then(|b| u64::try_from(b).ok()) {
                if b > sum {
                    sum = b;
                    like = Some(q);
                }
            }
        }
    }
    let like = like?;
    (sum > 0).then(|| (canonical_bytes(sum, &like), sum))
}

fn mode_of(m: Option<i32>, default: i32) -> u32 {
    (m.unwrap_or(default) as u32) & 0o7777
}

/// Host paths of the pod's volumes, prepared (files written) for a container start. With
/// `resync` only ConfigMap/Secret/projected/downwardAPI volumes are rewritten (the periodic
/// update of running pods), and only those are returned.
pub async fn prepare_volumes(
    pod: &Pod,
    pod_dir: &Path,
    objects: &mut Objects,
    pod_ip: &str,
    host_ip: &str,
    resync: bool,
) -> Result<HashMap<String, Volume>, ConfigError> {
    let mut out = HashMap::new();
    let Some(spec) = pod.spec.as_ref() else {
        return Ok(out);
    };
    // Not readable by other local users: the pod's files include its secrets.
    if let Some(pods) = pod_dir.parent() {
        mkdir_mode(pods, 0o700)?;
        set_mode(pods, 0o700)?;
    }
    mkdir_mode(pod_dir, 0o750)?;
    let vols = pod_dir.join("volumes");
    let write = |dir: &Path, files: Vec<File>, default_mode: Option<i32>, tmpfs: bool| {
        if tmpfs {
            volumes::ensure_tmpfs(dir, 0o755, None)?;
        } else {
            mkdir_mode(dir, 0o755)?;
        }
        let payload: Vec<volumes::Payload> = files
            .into_iter()
            .map(|(path, data, mode)| volumes::Payload {
                path,
                data,
                // Upstream's default for both defaultMode and item modes: 0644.
                mode: mode_of(mode.or(default_mode), 0o644),
            })
            .collect();
        volumes::write_atomic(dir, &payload).map(drop)
    };
    for v in spec.volumes.iter().flatten() {
        // Names become host path components (the API validates them as DNS labels already).
        plain_name(&v.name)?;
        let synced = v.config_map.is_some()
            || v.secret.is_some()
            || v.projected.is_some()
            || v.downward_api.is_some();
        if resync && !synced {
            continue;
        }
        let mut read_only = synced;
        let path = if let Some(claim) = &v.persistent_volume_claim {
            read_only = claim.read_only.unwrap_or(false);
            objects.claim_dir(&claim.claim_name).await?
        } else if let Some(hp) = &v.host_path {
            let p = PathBuf::from(&hp.path);
            match hp.type_.as_deref() {
                Some("DirectoryOrCreate") => mkdir(&p)?,
                Some("FileOrCreate") if !p.exists() => {
                    if let Some(parent) = p.parent() {
                        mkdir(parent)?;
                    }
                    std::fs::write(&p, b"").map_err(|e| format!("creating {}: {e}", p.display()))?
                }
                Some("Directory") if !p.is_dir() => {
                    return Err(format!(
                        "hostPath type check failed: {} is not a directory",
                        hp.path
                    ))
                }
                Some("File") if !p.is_file() => {
                    return Err(format!(
                        "hostPath type check failed: {} is not a file",
                        hp.path
                    ))
                }
                _ => {}
            }
            p
        } else if let Some(cm) = &v.config_map {
            let dir = vols.join("kubernetes.io~configmap").join(&v.name);
            let data = objects.config_map_data(&cm.name).await?;
            let optional = cm.optional.unwrap_or(false);
            let files = select_items(data, cm.items.as_deref(), optional, "configmap", &cm.name)?;
            write(&dir, files, cm.default_mode, false)?;
            dir
        } else if let Some(sec) = &v.secret {
            let name = sec.secret_name.clone().unwrap_or_default();
            let dir = vols.join("kubernetes.io~secret").join(&v.name);
            let data = objects.secret_data(&name).await?;
            let optional = sec.optional.unwrap_or(false);
            let files = select_items(data, sec.items.as_deref(), optional, "secret", &name)?;
            // Secrets never touch the disk: a tmpfs per volume, as upstream.
            write(&dir, files, sec.default_mode, true)?;
            dir
        } else if let Some(proj) = &v.projected {
            let dir = vols.join("kubernetes.io~projected").join(&v.name);
            let mut files = Vec::new();
            for src in proj.sources.iter().flatten() {
                if let Some(cm) = &src.config_map {
                    let data = objects.config_map_data(&cm.name).await?;
                    files.extend(select_items(
                        data,
                        cm.items.as_deref(),
                        cm.optional.unwrap_or(false),
                        "configmap",
                        &cm.name,
                    )?);
                }
                if let Some(s) = &src.secret {
                    let data = objects.secret_data(&s.name).await?;
                    files.extend(select_items(
                        data,
                        s.items.as_deref(),
                        s.optional.unwrap_or(false),
                        "secret",
                        &s.name,
                    )?);
                }
                if let Some(d) = &src.downward_api {
                    for item in d.items.iter().flatten() {
                        if let Some(f) = &item.field_ref {
                            let val = field_value(pod, &f.field_path, pod_ip, host_ip)
                                .unwrap_or_default();
                            files.push((item.path.clone(), val.into_bytes(), item.mode));
                        }
                    }
                }
                if let Some(t) = &src.service_account_token {
                    let token = objects.service_account_token(pod, t).await?;
                    files.push((t.path.clone(), token.into_bytes(), None));
                }
                // clusterTrustBundle sources are not supported yet.
            }
            write(&dir, files, proj.default_mode, true)?;
            dir
        } else if let Some(d) = &v.downward_api {
            let dir = vols.join("kubernetes.io~downward-api").join(&v.name);
            let mut files = Vec::new();
            for item in d.items.iter().flatten() {
                if let Some(f) = &item.field_ref {
                    let val = field_value(pod, &f.field_path, pod_ip, host_ip).unwrap_or_default();
                    files.push((item.path.clone(), val.into_bytes(), item.mode));
                }
            }
            write(&dir, files, d.default_mode, true)?;
            dir
        } else {
            // emptyDir, and volume types the agent does not support (an empty dir is the
            // least surprising stand-in). World-writable like upstream's: any container
            // user may write; the pod dir above keeps other host users out.
            let dir = vols.join("kubernetes.io~empty-dir").join(&v.name);
            let ed = v.empty_dir.as_ref();
            if ed.and_then(|e| e.medium.as_deref()) == Some("Memory") {
                // Capped at sizeLimit or the pod's memory limit, whichever is smaller.
                let limit = ed
                    .and_then(|e| e.size_limit.as_ref())
                    .and_then(|q| parse_bytes(&q.0))
                    .and_then(|b| u64::try_from(b).ok())
                    .filter(|b| *b > 0);
                let size = match (limit, pod_memory_limit(pod)) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                volumes::ensure_tmpfs(&dir, 0o777, size)?;
            } else {
                mkdir_mode(&dir, 0o777)?;
                set_mode(&dir, 0o777)?;
            }
            dir
        };
        // fsGroup: every volume type the kubelet manages ownership of (not hostPath).
        let fs_group = spec.security_context.as_ref().and_then(|s| s.fs_group);
        let host_dir = v.host_path.is_some() || v.persistent_volume_claim.is_some();
        if let (Some(gid), false) = (fs_group, host_dir) {
            let gid = u32::try_from(gid).map_err(|_| format!("invalid fsGroup {gid}"))?;
            volumes::set_ownership(&path, gid, synced, synced)
                .map_err(|e| format!("setting fsGroup {gid} on volume {:?}: {e}", v.name))?;
        }
        out.insert(v.name.clone(), Volume { path, read_only });
    }
    Ok(out)
}

type File = (String, Vec<u8>, Option<i32>);

fn select_items(
    data: Option<BTreeMap<String, Vec<u8>>>,
    items: Option<&[KeyToPath]>,
    optional: bool,
    kind: &str,
    name: &str,
) -> Result<Vec<File>, ConfigError> {
    let Some(data) = data else {
        if optional {
            return Ok(Vec::new());
        }
        return Err(format!("{kind} \"{name}\" not found"));
    };
    match items {
        None => Ok(data.into_iter().map(|(k, v)| (k, v, None)).collect()),
        Some(items) => {
            let mut out = Vec::new();
            for it in items {
                match data.get(&it.key) {
                    Some(v) => out.push((it.path.clone(), v.clone(), it.mode)),
                    None if optional => {}
                    None => return Err(format!("couldn't find key {} in {kind} {name}", it.key)),
                }
            }
            Ok(out)
        }
    }
}

/// A name used as one host path component: no separator, not `.`/`..`.
fn plain_name(name: &str) -> Result<(), ConfigError> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(format!("invalid name {name:?}"));
    }
    Ok(())
}

fn mkdir(p: &Path) -> Result<(), ConfigError> {
    std::fs::create_dir_all(p).map_err(|e| format!("creating {}: {e}", p.display()))
}

fn mkdir_mode(p: &Path, mode: u32) -> Result<(), ConfigError> {
    volumes::mkdir_mode(p, mode).map_err(|e| format!("creating {}: {e}", p.display()))
}

fn set_mode(p: &Path, mode: u32) -> Result<(), ConfigError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("chmod {}: {e}", p.display()))
}

/// What the runtime needs besides the spec itself.
pub struct BuildInput<'a> {
    pub pod: &'a Pod,
    pub container: &'a Container,
    pub image: &'a ResolvedImage,
    pub name: String,
    pub netns: PathBuf,
    pub pod_ip: String,
    pub host_ip: String,
    pub volumes: &'a HashMap<String, Volume>,
    /// The pod's directory (subPath staging mounts live below it).
    pub pod_dir: PathBuf,
}

/// The container's environment in order (image env first, then envFrom, then env).
pub async fn build_env(
    input: &BuildInput<'_>,
    objects: &mut Objects,
) -> Result<Vec<(String, String)>, ConfigError> {
    let c = input.container;
    let mut env: Vec<(String, String)> = Vec::new();
    let set = |env: &mut Vec<(String, String)>, k: String, v: String| {
        if let Some(e) = env.iter_mut().find(|(ek, _)| *ek == k) {
            e.1 = v;
        } else {
            env.push((k, v));
        }
    };
    for kv in input.image.config.env().iter().flatten() {
        if let Some((k, v)) = kv.split_once('=') {
            set(&mut env, k.to_string(), v.to_string());
        }
    }
    // Service links come before the container's own variables, which win over them (and may
    // refer to them with `$(VAR)`), as the kubelet does.
    let links = input
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.enable_service_links)
        .unwrap_or(true);
    let ns = input.pod.metadata.namespace.as_deref().unwrap_or("default");
    for (k, v) in service_env(objects.services(links).await?, ns, links) {
        set(&mut env, k, v);
    }
    for from in c.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let data = if let Some(r) = &from.config_map_ref {
            match objects.config_map_data(&r.name).await? {
                Some(d) => d,
                None if r.optional.unwrap_or(false) => continue,
                None => return Err(format!("configmap \"{}\" not found", r.name)),
            }
        } else if let Some(r) = &from.secret_ref {
            match objects.secret_data(&r.name).await? {
                Some(d) => d,
                None if r.optional.unwrap_or(false) => continue,
                None => return Err(format!("secret \"{}\" not found", r.name)),
            }
        } else {
            continue;
        };
        for (k, v) in data {
            set(
                &mut env,
                format!("{prefix}{k}"),
                String::from_utf8_lossy(&v).into_owned(),
            );
        }
    }
    for e in c.env.iter().flatten() {
        let value = if let Some(vf) = &e.value_from {
            if let Some(r) = &vf.config_map_key_ref {
                match objects.config_map_data(&r.name).await? {
                    Some(d) => match d.get(&r.key) {
                        Some(v) => String::from_utf8_lossy(v).into_owned(),
                        None if r.optional.unwrap_or(false) => continue,
                        None => {
                            return Err(format!(
                                "couldn't find key {} in ConfigMap {}/{}",
                                r.key,
                                input.pod.metadata.namespace.as_deref().unwrap_or_default(),
                                r.name
                            ))
                        }
                    },
                    None if r.optional.unwrap_or(false) => continue,
                    None => return Err(format!("configmap \"{}\" not found", r.name)),
                }
            } else if let Some(r) = &vf.secret_key_ref {
                match objects.secret_data(&r.name).await? {
                    Some(d) => match d.get(&r.key) {
                        Some(v) => String::from_utf8_lossy(v).into_owned(),
                        None if r.optional.unwrap_or(false) => continue,
                        None => {
                            return Err(format!(
                                "couldn't find key {} in Secret {}/{}",
                                r.key,
                                input.pod.metadata.namespace.as_deref().unwrap_or_default(),
                                r.name
                            ))
                        }
                    },
                    None if r.optional.unwrap_or(false) => continue,
                    None => return Err(format!("secret \"{}\" not found", r.name)),
                }
            } else if let Some(f) = &vf.field_ref {
                field_value(input.pod, &f.field_path, &input.pod_ip, &input.host_ip)
                    .ok_or_else(|| format!("unsupported fieldRef {:?}", f.field_path))?
            } else if let Some(r) = &vf.resource_field_ref {
                resource_field(c, &r.resource)
            } else {
                String::new()
            }
        } else {
            // `$(VAR)` refers to variables defined before this one.
            let vars: HashMap<String, String> = env.iter().cloned().collect();
            expand(e.value.as_deref().unwrap_or_default(), &vars)
        };
        set(&mut env, e.name.clone(), value);
    }
    Ok(env)
}

fn resource_field(c: &Container, res: &str) -> String {
    let (limits, name) = match res.split_once('.') {
        Some(("limits", n)) => (true, n),
        Some(("requests", n)) => (false, n),
        _ => return String::new(),
    };
    match resource(c, limits, name) {
        Some(q) if name == "cpu" => parse_cpu_milli(&q)
            .map(|m| ((m + 999) / 1000).to_string())
            .unwrap_or_default(),
        Some(q) => parse_bytes(&q).map(|b| b.to_string()).unwrap_or_default(),
        None if name == "cpu" => std::thread::available_parallelism()
            .map(|n| n.get().to_string())
            .unwrap_or_default(),
        None => String::new(),
    }
}

/// argv per Kubernetes: command replaces Entrypoint (and drops Cmd); args replace Cmd.
pub fn argv(c: &Container, image: &ResolvedImage, vars: &HashMap<String, String>) -> Vec<String> {
    let cfg = &image.config;
    let ex = |v: &Vec<String>| v.iter().map(|s| expand(s, vars)).collect::<Vec<_>>();
    match (&c.command, &c.args) {
        (Some(cmd), Some(args)) if !cmd.is_empty() => [ex(cmd), ex(args)].concat(),
        (Some(cmd), _) if !cmd.is_empty() => ex(cmd),
        (_, Some(args)) if !args.is_empty() => {
            [cfg.entrypoint().clone().unwrap_or_default(), ex(args)].concat()
        }
        _ => [
            cfg.entrypoint().clone().unwrap_or_default(),
            cfg.cmd().clone().unwrap_or_default(),
        ]
        .concat(),
    }
}

/// The image's user as the CRI reports it: a numeric uid, or a name (only one is set; an
/// image without USER runs as uid 0).
fn image_uid_or_name(image: &ResolvedImage) -> (Option<i64>, String) {
    let user = image.config.user().clone().unwrap_or_default();
    let user = user.split(':').next().unwrap_or("");
    if user.is_empty() {
        return (Some(0), String::new());
    }
    match user.parse::<i64>() {
        Ok(uid) => (Some(uid), String::new()),
        Err(_) => (None, user.to_string()),
    }
}

/// The kubelet's `verifyRunAsNonRoot`: with `runAsNonRoot: true` (container's or pod's) the
/// effective user must be provably non-zero: `runAsUser` (container's, then pod's), else the
/// image's numeric USER. A username-only USER cannot be verified and is refused.
fn verify_run_as_non_root(pod: &Pod, c: &Container, image: &ResolvedImage) -> Result<(), String> {
    let pod_sc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let sc = c.security_context.as_ref();
    let non_root = sc
        .and_then(|s| s.run_as_non_root)
        .or_else(|| pod_sc.and_then(|s| s.run_as_non_root));
    if non_root != Some(true) {
        return Ok(());
    }
    // format.Pod: name_namespace(uid), printed with %q.
    let who = format!(
        "(pod: {:?}, container: {})",
        format!(
            "{}_{}({})",
            pod.metadata.name.as_deref().unwrap_or_default(),
            pod.metadata.namespace.as_deref().unwrap_or_default(),
            pod.metadata.uid.as_deref().unwrap_or_default()
        ),
        c.name
    );
    let run_as_user = sc
        .and_then(|s| s.run_as_user)
        .or_else(|| pod_sc.and_then(|s| s.run_as_user));
    if let Some(u) = run_as_user {
        if u == 0 {
            return Err(format!(
                "container's runAsUser breaks non-root policy {who}"
            ));
        }
        return Ok(());
    }
    match image_uid_or_name(image) {
        (None, name) => Err(format!(
            "container has runAsNonRoot and image has non-numeric user ({name}), cannot verify \
             user is non-root {who}"
        )),
        (Some(0), _) => Err(format!(
            "container has runAsNonRoot and image will run as root {who}"
        )),
        (Some(uid), _) if !(0..=i64::from(i32::MAX)).contains(&uid) => Err(format!(
            "container has runAsNonRoot and image has an invalid user id ({uid}). (Must be \
             1-({})): must be between 0 and {}, inclusive {who}",
            i32::MAX,
            i32::MAX
        )),
        _ => Ok(()),
    }
}

/// Bound on the image's /etc/passwd and /etc/group reads.
const MAX_ID_FILE: u64 = 1 << 20;

/// The entry of the image's `file` (passwd/group format) whose field `key_at` is `key`.
fn image_id_entry(
    image: &ResolvedImage,
    file: &str,
    key_at: usize,
    key: &str,
) -> Result<Option<Vec<String>>, ConfigError> {
    let text = skiff_image::read_image_file(&image.layers, file, MAX_ID_FILE)
        .map_err(|e| format!("reading /{file} of the image: {e}"))?
        .unwrap_or_default();
    Ok(String::from_utf8_lossy(&text).lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.get(key_at) == Some(&key)).then(|| fields.iter().map(|f| f.to_string()).collect())
    }))
}

/// The image's USER as uid/gid. Numeric values are used as they are (gid = uid when no group
/// is given); names are looked up in the image's /etc/passwd and /etc/group (as containerd
/// does), never on the host, and an unknown name fails the container.
fn image_user(image: &ResolvedImage) -> Result<(u32, u32), ConfigError> {
    let user = image.config.user().clone().unwrap_or_default();
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user.as_str(), None),
    };
    let (uid, primary_gid) = match u.parse::<u32>() {
        Ok(uid) => (uid, uid),
        Err(_) if u.is_empty() => (0, 0),
        Err(_) => {
            let entry = image_id_entry(image, "etc/passwd", 0, u)?.ok_or_else(|| {
                format!("unable to find user {u}: no matching entries in passwd file")
            })?;
            let id = |i: usize| entry.get(i).and_then(|v| v.parse::<u32>().ok());
            match (id(2), id(3)) {
                (Some(uid), Some(gid)) => (uid, gid),
                _ => return Err(format!("malformed passwd entry for user {u}")),
            }
        }
    };
    let gid = match g.filter(|g| !g.is_empty()) {
        None => primary_gid,
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => image_id_entry(image, "etc/group", 0, g)?
                .and_then(|e| e.get(2).and_then(|v| v.parse().ok()))
                .ok_or_else(|| {
                    format!("unable to find group {g}: no matching entries in group file")
                })?,
        },
    };
    Ok((uid, gid))
}

/// The full runtime spec of one container instance.
pub async fn build_spec(
    input: &BuildInput<'_>,
    objects: &mut Objects,
) -> Result<ContainerSpec, ConfigError> {
    let c = input.container;
    let env = build_env(input, objects).await?;
    let vars: HashMap<String, String> = env.iter().cloned().collect();
    let args = argv(c, input.image, &vars);
    if args.is_empty() {
        return Err("no command specified".into());
    }
    let mut mounts = Vec::new();
    for (index, vm) in c.volume_mounts.iter().flatten().enumerate() {
        let Some(vol) = input.volumes.get(&vm.name) else {
            return Err(format!("volume {:?} not found", vm.name));
        };
        let mut source = vol.path.clone();
        if let Some(sub) = vm.sub_path.as_deref().filter(|s| !s.is_empty()) {
            if sub.starts_with('/') || sub.split('/').any(|c| c == "..") {
                return Err(format!("invalid subPath {sub:?}"));
            }
            plain_name(&vm.name)?;
            plain_name(&c.name)?;
            // Resolved beneath the volume and mounted from the fd onto a staging path the
            // pod cannot write (kubelet: volume-subpaths/<volume>/<container>/<index>).
            let staging = input
                .pod_dir
                .join("volume-subpaths")
                .join(&vm.name)
                .join(&c.name)
                .join(index.to_string());
            match volumes::prepare_subpath(&vol.path, sub, &staging) {
                Ok(()) => {}
                Err(volumes::SubPathError::Create(e)) => {
                    tracing::warn!(volume = %vm.name, container = %c.name, "creating subPath: {e}");
                    // Details stay in the log: they could describe the host's filesystem.
                    return Err(format!(
                        "failed to create subPath directory for volumeMount {:?} of container {:?}",
                        vm.name, c.name
                    ));
                }
                Err(volumes::SubPathError::Prepare(e)) => {
                    tracing::warn!(volume = %vm.name, container = %c.name, "preparing subPath: {e}");
                    return Err(format!(
                        "failed to prepare subPath for volumeMount {:?} of container {:?}",
                        vm.name, c.name
                    ));
                }
            }
            source = staging;
        }
        mounts.push(BindMount {
            source,
            destination: vm.mount_path.clone(),
            readonly: vol.read_only || vm.read_only.unwrap_or(false),
        });
    }
    // After env and mounts, as the kubelet's generateContainerConfig.
    verify_run_as_non_root(input.pod, c, input.image)?;
    let spec = input.pod.spec.as_ref();
    let pod_sc = spec.and_then(|s| s.security_context.as_ref());
    let sc = c.security_context.as_ref();
    let run_as_user = sc
        .and_then(|s| s.run_as_user)
        .or_else(|| pod_sc.and_then(|s| s.run_as_user))
        .map(|u| u as u32);
    let run_as_group = sc
        .and_then(|s| s.run_as_group)
        .or_else(|| pod_sc.and_then(|s| s.run_as_group))
        .map(|g| g as u32);
    // The image's USER only matters (and only has to resolve) when runAsUser does not override it.
    let (uid, gid) = match (run_as_user, run_as_group) {
        (Some(u), Some(g)) => (u, g),
        (Some(u), None) => match image_user(input.image) {
            Ok((img_uid, img_gid)) if img_uid == u => (u, img_gid),
            _ => (u, u),
        },
        (None, g) => {
            let (img_uid, img_gid) = image_user(input.image)?;
            (img_uid, g.unwrap_or(img_gid))
        }
    };
    let mut additional_gids: Vec<u32> = pod_sc
        .and_then(|s| s.supplemental_groups.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|g| g as u32)
        .collect();
    if let Some(fs) = pod_sc.and_then(|s| s.fs_group) {
        additional_gids.push(fs as u32);
    }
    let caps = sc.and_then(|s| s.capabilities.as_ref());
    let cap_names = |v: Option<&Vec<String>>| {
        v.into_iter()
            .flatten()
            .map(|c| c.trim_start_matches("CAP_").to_uppercase())
            .collect::<Vec<_>>()
    };
    let cpu_limit = resource(c, true, "cpu").and_then(|q| parse_cpu_milli(&q));
    let cpu_request = resource(c, false, "cpu")
        .and_then(|q| parse_cpu_milli(&q))
        .or(cpu_limit);
    let memory = resource(c, true, "memory").and_then(|q| parse_bytes(&q));
    // Upstream MilliCPUToShares: request*1024/1000, clamped to [2, 262144].
    let shares = (cpu_request.unwrap_or(0) * 1024 / 1000).clamp(2, 262144) as u64;
    let cwd = c
        .working_dir
        .clone()
        .filter(|w| !w.is_empty())
        .or_else(|| input.image.config.working_dir().clone())
        .unwrap_or_default();
    Ok(ContainerSpec {
        name: Some(input.name.clone()),
        image: c.image.clone().unwrap_or_default(),
        image_id: input.image.id.clone(),
        lowers: input.image.layers.clone(),
        upper: None,
        args,
        env: env.into_iter().map(|(k, v)| format!("{k}={v}")).collect(),
        cwd,
        uid,
        gid,
        additional_gids,
        hostname: input.pod.metadata.name.clone(),
        memory,
        cpus: cpu_limit.map(|m| m as f64 / 1000.0),
        cpu_shares: Some(shares),
        pids_limit: None,
        network: NetworkMode::Path(input.netns.clone()),
        mounts,
        readonly_rootfs: sc
            .and_then(|s| s.read_only_root_filesystem)
            .unwrap_or(false),
        privileged: sc.and_then(|s| s.privileged).unwrap_or(false),
        cap_add: cap_names(caps.and_then(|c| c.add.as_ref())),
        cap_drop: cap_names(caps.and_then(|c| c.drop.as_ref())),
        auto_remove: false,
        stdin: c.stdin.unwrap_or(false),
        stdin_once: c.stdin_once.unwrap_or(false),
        tty: c.tty.unwrap_or(false),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(ns: &str, name: &str, ip: &str, ports: serde_json::Value) -> Service {
        serde_json::from_value(serde_json::json!({
            "metadata": {"namespace": ns, "name": name},
            "spec": {"clusterIP": ip, "ports": ports}
        }))
        .unwrap()
    }

    #[test]
    fn service_links_as_the_kubelet_writes_them() {
        let services = vec![
            svc(
                "default",
                "kubernetes",
                "100.65.0.1",
                serde_json::json!([{"name": "https", "port": 443, "protocol": "TCP"}]),
            ),
            svc(
                "shop",
                "my-db",
                "100.65.0.7",
                serde_json::json!([
                {"port": 5432},
                {"name": "metrics-http", "port": 9187, "protocol": "TCP"},
                {"name": "dns", "port": 53, "protocol": "UDP"}]),
            ),
            svc(
                "shop",
                "headless",
                "None",
                serde_json::json!([{"port": 80}]),
            ),
            svc(
                "other",
                "elsewhere",
                "100.65.0.9",
                serde_json::json!([{"port": 80}]),
            ),
        ];
        let env: BTreeMap<String, String> =
            service_env(&services, "shop", true).into_iter().collect();
        let want = [
            ("KUBERNETES_SERVICE_HOST", "100.65.0.1"),
            ("KUBERNETES_SERVICE_PORT", "443"),
            ("KUBERNETES_SERVICE_PORT_HTTPS", "443"),
            ("KUBERNETES_PORT", "tcp://100.65.0.1:443"),
            ("KUBERNETES_PORT_443_TCP", "tcp://100.65.0.1:443"),
            ("KUBERNETES_PORT_443_TCP_PROTO", "tcp"),
            ("KUBERNETES_PORT_443_TCP_PORT", "443"),
            ("KUBERNETES_PORT_443_TCP_ADDR", "100.65.0.1"),
            ("MY_DB_SERVICE_HOST", "100.65.0.7"),
            ("MY_DB_SERVICE_PORT", "5432"),
            ("MY_DB_SERVICE_PORT_METRICS_HTTP", "9187"),
            ("MY_DB_SERVICE_PORT_DNS", "53"),
            ("MY_DB_PORT", "tcp://100.65.0.7:5432"),
            ("MY_DB_PORT_5432_TCP", "tcp://100.65.0.7:5432"),
            ("MY_DB_PORT_5432_TCP_PROTO", "tcp"),
            ("MY_DB_PORT_5432_TCP_PORT", "5432"),
            ("MY_DB_PORT_5432_TCP_ADDR", "100.65.0.7"),
            ("MY_DB_PORT_9187_TCP", "tcp://100.65.0.7:9187"),
            ("MY_DB_PORT_9187_TCP_PROTO", "tcp"),
            ("MY_DB_PORT_9187_TCP_PORT", "9187"),
            ("MY_DB_PORT_9187_TCP_ADDR", "100.65.0.7"),
            ("MY_DB_PORT_53_UDP", "udp://100.65.0.7:53"),
            ("MY_DB_PORT_53_UDP_PROTO", "udp"),
            ("MY_DB_PORT_53_UDP_PORT", "53"),
            ("MY_DB_PORT_53_UDP_ADDR", "100.65.0.7"),
        ];
        let want: BTreeMap<String, String> = want
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(env, want);

        // enableServiceLinks: false keeps only the API server's.
        let env = service_env(&services, "shop", false);
        assert!(
            env.iter().all(|(k, _)| k.starts_with("KUBERNETES_")),
            "{env:?}"
        );
        assert_eq!(env.len(), 8);

        // A namespace's own "kubernetes" Service wins over default's.
        let mut with_own = services.clone();
        with_own.push(svc(
            "shop",
            "kubernetes",
            "100.65.0.50",
            serde_json::json!([{"port": 8443}]),
        ));
        let env: BTreeMap<String, String> =
            service_env(&with_own, "shop", true).into_iter().collect();
        assert_eq!(env["KUBERNETES_SERVICE_HOST"], "100.65.0.50");
        assert!(!env.contains_key("KUBERNETES_SERVICE_PORT_HTTPS"));
        // ... but not when service links are off.
        let env: BTreeMap<String, String> =
            service_env(&with_own, "shop", false).into_iter().collect();
        assert_eq!(env["KUBERNETES_SERVICE_HOST"], "100.65.0.1");
    }

    #[test]
    fn expansion() {
        let vars: HashMap<String, String> = [("A".to_string(), "x".to_string())].into();
        assert_eq!(expand("$(A)-$(B)-$$(A)-$", &vars), "x-$(B)-$(A)-$");
    }

    /// The API server's `status.qosClass` and the agent's class come from one function: a pod
    /// whose request is `cpu: 1` and limit `cpu: 1000m` is Guaranteed in both (they disagreed
    /// when the API server compared the strings and the agent compared floats).
    #[test]
    fn qos_class_agrees_with_api_server_status() {
        let cases = [
            (("1", "1000m"), ("64Mi", "67108864"), "Guaranteed"),
            (("0.5", "500m"), ("1Gi", "1024Mi"), "Guaranteed"),
            (("999m", "1"), ("1Gi", "1Gi"), "Burstable"),
        ];
        for ((cpu_req, cpu_lim), (mem_req, mem_lim), want) in cases {
            let mut body = serde_json::json!({
                "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"},
                "spec": {"containers": [{"name": "c", "image": "x", "resources": {
                    "requests": {"cpu": cpu_req, "memory": mem_req},
                    "limits": {"cpu": cpu_lim, "memory": mem_lim}}}]}
            });
            let info = skiff_api::resources::by_kind("v1", "Pod").unwrap();
            skiff_api::defaults::apply_defaults(info, &mut body);
            assert_eq!(
                body["status"]["qosClass"], want,
                "API server, cpu {cpu_req}/{cpu_lim}"
            );
            let pod: Pod = serde_json::from_value(body).unwrap();
            assert_eq!(qos_class(&pod), want, "agent, cpu {cpu_req}/{cpu_lim}");
        }
    }

    #[test]
    fn quantities() {
        assert_eq!(parse_cpu_milli("500m"), Some(500));
        assert_eq!(parse_cpu_milli("2"), Some(2000));
        assert_eq!(parse_cpu_milli("0.1"), Some(100));
        assert_eq!(parse_bytes("64Mi"), Some(64 << 20));
        assert_eq!(parse_bytes("1G"), Some(1_000_000_000));
        assert_eq!(parse_bytes("129e6"), Some(129_000_000));
        // Exact past f64's 53 bits; malformed quantities are refused, not guessed.
        assert_eq!(parse_bytes("9007199254740993"), Some(9_007_199_254_740_993));
        assert_eq!(parse_cpu_milli("1.0001"), Some(1001));
        assert_eq!(parse_bytes("1.5.5Mi"), None);
        assert_eq!(canonical_bytes(10 << 20, "10Mi"), "10Mi");
        assert_eq!(canonical_bytes(1 << 30, "1024Mi"), "1Gi");
        assert_eq!(canonical_bytes(20_000_000, "10M"), "20M");
        assert_eq!(canonical_bytes(1500, "1500"), "1500");
    }
}
