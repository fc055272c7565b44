//! skiff-agent owns the node agent (the kubelet): it registers its Node and renews its Lease,
//! turns pods bound to the node into sandboxes (skiff-net) and containers (skiff-runtime, images
//! from skiff-image), runs probes, restarts containers with back-off, terminates pods gracefully,
//! reports status through pods/status, serves logs and exec to the API server over an
//! authenticated HTTPS endpoint, and re-adopts running containers after a restart.
//! Upstream semantics: `shared/reference/k8s-semantics.md` §3, §5, §9.

pub mod api;
pub mod dns;
pub mod node;
pub mod pods;
pub mod probes;
pub mod proxy;
pub mod routes;

pub use node::{run, run_with};
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
}
