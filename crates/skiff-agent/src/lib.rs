//! skiff-agent owns the node agent (the kubelet): it registers its Node and renews its Lease,
//! turns pods bound to the node into sandboxes (skiff-net) and containers (skiff-runtime, images
//! from skiff-image), runs probes, restarts containers with back-off, terminates pods gracefully,
//! reports status through pods/status, serves logs and exec to the API server over an
//! authenticated HTTPS endpoint, and re-adopts running containers after a restart.
//! Upstream semantics: `shared/reference/k8s-semantics.md` §3, §5, §9.

pub mod api;
pub mod node;
pub mod pods;
pub mod probes;
pub mod proxy;

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
