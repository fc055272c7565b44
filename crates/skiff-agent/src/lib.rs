//! skiff-agent owns the node agent (the kubelet): it registers its Node and renews its Lease,
//! turns pods bound to the node into sandboxes (skiff-net) and containers (skiff-runtime, images
//! from skiff-image), runs probes, restarts containers with back-off, terminates pods gracefully,
//! reports status through pods/status, serves logs and exec to the API server over an
//! authenticated HTTPS endpoint, and re-adopts running containers after a restart. Pod volumes
//! (subPath beneath its volume, atomic-writer config volumes, tmpfs secrets) and the eviction of
//! pods over their storage limits are its own (`pods::volumes`).
//! Upstream semantics: `shared/reference/k8s-semantics.md` §3, §5, §9.

pub mod api;
pub mod dns;
pub mod lb;
pub mod netpol;
pub mod node;
pub mod pods;
pub mod probes;
mod prometheus;
pub mod proxy;
pub mod relay;
pub mod routes;
pub mod storage;

pub use node::{run, run_publishing, run_with};
pub use pods::PodIndex;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("runtime: {0}")]
    Runtime(#[from] skiff_runtime::RuntimeError),
    #[error("image: {0}")]
    Image(#[from] skiff_image::ImageError),
    #[error("network: {0}")]
    Net(#[from] skiff_net::NetError),
    #[error("{0}")]
    Other(String),
}

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// skiff's data dir (images, containers, net state, agent state under `agent/`).
    pub data_dir: PathBuf,
    pub node_name: String,
    /// The node's address (InternalIP; hostIP of its pods).
    pub node_ip: Ipv4Addr,
    /// Where the agent API (logs, exec) listens; port 0 picks a free port. The port is published
    /// in the Node's `status.daemonEndpoints.kubeletEndpoint.Port`.
    pub api_listen: SocketAddr,
    /// The node token: the API server presents it as a bearer token to the agent API.
    pub api_token: String,
    /// The `skiff` executable (started as `skiff shim` for every container, `skiff exec` for exec).
    pub skiff_exe: PathBuf,
    /// The node Lease's duration (kubelet's `--node-lease-duration-seconds`, 40 by default). The
    /// lease and node status are renewed every quarter of it, as the kubelet does.
    pub lease_duration_seconds: i32,
    /// Never contact remote image registries (air-gapped nodes, hermetic tests): images come
    /// from the local store, or from a registry on this machine (loopback).
    pub offline: bool,
    /// How often running pods' ConfigMap, Secret, projected and downwardAPI volumes are
    /// re-synced (kubelet's `--sync-frequency`, 1 minute by default).
    pub sync_frequency: std::time::Duration,
    /// How often emptyDir sizeLimits and ephemeral-storage limits are checked (kubelet's
    /// `--housekeeping-interval`, 10 s by default).
    pub housekeeping_interval: std::time::Duration,
    /// Log rotation and PID limits of this node's containers.
    pub limits: NodeLimits,
    /// `host:port` of the API server as this agent reaches it; pods reach the API through the
    /// agent's relay to it ([`relay`]). None: no relay (the `kubernetes` Service then goes to
    /// the address in its EndpointSlice).
    pub api_server: Option<String>,
    /// Where provisioned volumes live (`--storage-root`); None = `<data-dir>/storage`.
    pub storage_root: Option<PathBuf>,
}

/// The kubelet's `--container-log-max-size`, `--container-log-max-files`, `--pod-max-pids` and
/// the PIDs reserved for the node (`--system-reserved=pid=N` upstream).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeLimits {
    /// Bytes; a container's live log rotates once it would grow past this (default 10Mi).
    pub container_log_max_size: u64,
    /// Log files kept per container, the live one included (default 5, at least 2).
    pub container_log_max_files: u32,
    /// PIDs of one pod, all its containers together; -1 = no per-pod limit.
    pub pod_max_pids: i64,
    /// PIDs kept for the node: all pods together get at most `pid_max - this` (0 = none).
    pub system_reserved_pids: i64,
}

/// skiff's default `--pod-max-pids` (upstream's default is unlimited, which lets one fork
/// bomb take the node): generous for any real pod, small next to the usual pid_max.
pub const DEFAULT_POD_MAX_PIDS: i64 = 4096;
/// Default PIDs reserved for the node (sshd, the agent, shims, kernel threads).
pub const DEFAULT_SYSTEM_RESERVED_PIDS: i64 = 1000;

impl Default for NodeLimits {
    fn default() -> Self {
        NodeLimits {
            container_log_max_size: skiff_runtime::DEFAULT_LOG_MAX_SIZE,
            container_log_max_files: skiff_runtime::DEFAULT_LOG_MAX_FILES,
            pod_max_pids: DEFAULT_POD_MAX_PIDS,
            system_reserved_pids: DEFAULT_SYSTEM_RESERVED_PIDS,
        }
    }
}

impl NodeLimits {
    /// The pod cgroup of pod `uid` with these limits applied (see skiff_runtime::PodCgroup).
    pub fn pod_cgroup(&self, uid: &str) -> skiff_runtime::PodCgroup {
        let pid_max = std::fs::read_to_string("/proc/sys/kernel/pid_max")
            .ok()
            .and_then(|s| s.trim().parse::<i64>().ok());
        let node = match pid_max {
            Some(m) if self.system_reserved_pids > 0 => {
                Some((m - self.system_reserved_pids).max(1))
            }
            _ => None,
        };
        let pod = (self.pod_max_pids > 0).then_some(self.pod_max_pids);
        skiff_runtime::PodCgroup {
            name: format!("pod{uid}"),
            // A pod never gets more than the node's allocatable PIDs.
            pids_max: match (pod, node) {
                (Some(p), Some(n)) => Some(p.min(n)),
                (p, n) => p.or(n),
            },
            node_pids_max: node,
        }
    }
}

/// `skiff exec [-i] -- ID CMD…` as a child of the agent. Its stderr belongs to the user (kubectl
/// exec, probe messages), so skiff's own logging there is limited to errors, whatever SKIFF_LOG
/// the agent runs with.
pub(crate) fn skiff_exec(
    skiff_exe: &std::path::Path,
    data_dir: &std::path::Path,
    id: &str,
    interactive: bool,
    command: &[String],
) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(skiff_exe);
    cmd.env("SKIFF_LOG", "error,libcontainer=off,libcgroups=off")
        .arg("--data-dir")
        .arg(data_dir)
        .arg("exec");
    if interactive {
        cmd.arg("-i");
    }
    cmd.arg("--").arg(id).args(command).kill_on_drop(true);
    cmd
}

impl AgentConfig {
    /// The node's storage root (see [`storage`]).
    pub fn storage_root(&self) -> PathBuf {
        self.storage_root
            .clone()
            .unwrap_or_else(|| self.data_dir.join("storage"))
    }

    /// How often the lease and node status are renewed.
    pub fn heartbeat(&self) -> std::time::Duration {
        let secs = u64::try_from(self.lease_duration_seconds.max(4)).unwrap_or(40);
        std::time::Duration::from_millis(secs * 250)
    }
}

/// Where a container's logs are and whether it is still running (for the agent API).
#[derive(Debug, Clone)]
pub struct ContainerRef {
    pub container_id: String,
    pub log_path: PathBuf,
    pub running: bool,
}

/// What the agent API needs from the pod workers.
pub trait ContainerIndex: Send + Sync + 'static {
    /// The runtime container of `container` (None = the pod's only/first container) in pod
    /// `namespace/pod`; `previous` = the last terminated instance (for `logs --previous`).
    fn lookup(
        &self,
        namespace: &str,
        pod: &str,
        container: Option<&str>,
        previous: bool,
    ) -> std::result::Result<ContainerRef, String>;

    /// The network namespace of pod `namespace/pod` (a path to open for setns), for
    /// port-forward.
    fn pod_netns(&self, namespace: &str, pod: &str) -> std::result::Result<PathBuf, String> {
        Err(format!(
            "pod {namespace}/{pod}: port-forward is not supported on this node"
        ))
    }

    /// The node's name (the Summary API's `node.nodeName`).
    fn node_name(&self) -> String {
        String::new()
    }

    /// The pods bound to this node as the agent last saw them (`GET /pods`, `/stats/summary`).
    fn pods(&self) -> Vec<k8s_openapi::api::core::v1::Pod> {
        Vec::new()
    }

    /// Every runtime container on the node (`/stats/summary` maps them to pods by name).
    fn containers(&self) -> std::result::Result<Vec<skiff_runtime::ContainerInfo>, String> {
        Ok(Vec::new())
    }
}
