//! The pod workers' runtime seam: [`PodRuntime`], shaped like CRI's RuntimeService and
//! ImageService but holding only what the workers use. [`NodeRuntime`] is the real one
//! (skiff-runtime containers, skiff-net sandboxes, skiff-image images); workers see only
//! `dyn PodRuntime`, so their back-off, status, probe and termination logic also runs against
//! the in-memory fake of the unit tests. Logs need no call of their own: a container's CRI log
//! file is `ContainerInfo::log_path`.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ExecAction;
use skiff_image::{Credentials, ImageStore, ResolvedImage};
use skiff_net::{PodNetwork, Sandbox, SandboxRequest};
use skiff_runtime::{ContainerInfo, ContainerSpec, JoinNamespaces, Runtime};

use crate::{probes, AgentConfig, Error, Result};

/// What a pod worker asks of the node's runtime. Every call may block on disk or the kernel
/// in the real implementation, which moves that off the async threads itself.
#[async_trait::async_trait]
pub trait PodRuntime: Send + Sync + 'static {
    /// RunPodSandbox: the pod's sandbox, created unless it exists already (it survives agent
    /// restarts).
    async fn run_sandbox(&self, req: SandboxRequest) -> Result<Sandbox>;
    /// StopPodSandbox + RemovePodSandbox: network torn down, namespaces released.
    async fn remove_sandbox(&self, pod_uid: &str) -> Result<()>;
    /// ListPodSandbox: the pod uids that have a sandbox.
    async fn list_sandboxes(&self) -> Result<Vec<String>>;
    /// The nameserver pods' resolv.conf points at.
    fn dns_server(&self) -> Ipv4Addr;

    /// ImageStatus: the image from the node's store (an error when it is not there).
    async fn image_status(&self, image: &str) -> Result<ResolvedImage>;
    /// PullImage into the node's store.
    async fn pull_image(&self, image: &str, credentials: Option<&Credentials>) -> Result<()>;

    /// ListContainers, with each container's status.
    async fn list_containers(&self) -> Result<Vec<ContainerInfo>>;
    /// CreateContainer + StartContainer (the shim does both in one step), joining the
    /// sandbox's namespaces.
    async fn start_container(
        &self,
        spec: ContainerSpec,
        join: JoinNamespaces,
    ) -> Result<ContainerInfo>;
    /// StopContainer: SIGTERM, SIGKILL once `grace` is over.
    async fn stop_container(&self, id: &str, grace: Duration) -> Result<()>;
    /// RemoveContainer (killing it first if it still runs).
    async fn remove_container(&self, id: &str) -> Result<()>;
    /// ExecSync: `action`'s command in the container; Ok when it exits 0 within `timeout`.
    async fn exec_sync(
        &self,
        id: &str,
        action: &ExecAction,
        timeout: Duration,
    ) -> std::result::Result<(), String>;
    /// The container's writable layer (local-storage eviction measures it).
    fn writable_layer(&self, id: &str) -> PathBuf;

    /// Names of the pod cgroups that exist (`pod<uid>`).
    fn pod_cgroups(&self) -> Vec<String>;
    async fn remove_pod_cgroup(&self, name: &str) -> Result<()>;
}

/// The real runtime: skiff-runtime, skiff-net and skiff-image on this node.
pub struct NodeRuntime {
    runtime: Arc<Runtime>,
    images: Arc<ImageStore>,
    net: Arc<PodNetwork>,
    config: AgentConfig,
}

impl NodeRuntime {
    pub fn new(
        runtime: Arc<Runtime>,
        images: ImageStore,
        net: PodNetwork,
        config: AgentConfig,
    ) -> Self {
        NodeRuntime {
            runtime,
            images: Arc::new(images),
            net: Arc::new(net),
            config,
        }
    }
}

pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::result::Result<T, Error> + Send + 'static,
) -> std::result::Result<T, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Other(format!("blocking task: {e}")))?
}

#[async_trait::async_trait]
impl PodRuntime for NodeRuntime {
    async fn run_sandbox(&self, req: SandboxRequest) -> Result<Sandbox> {
        let net = self.net.clone();
        blocking(move || {
            if let Some(sb) = net.sandbox(&req.pod_uid)? {
                return Ok(sb);
            }
            Ok(net.create_sandbox(&req)?)
        })
        .await
    }

    async fn remove_sandbox(&self, pod_uid: &str) -> Result<()> {
        let net = self.net.clone();
        let uid = pod_uid.to_string();
        blocking(move || Ok(net.remove_sandbox(&uid)?)).await
    }

    async fn list_sandboxes(&self) -> Result<Vec<String>> {
        let net = self.net.clone();
        blocking(move || Ok(net.list_sandboxes()?)).await
    }

    fn dns_server(&self) -> Ipv4Addr {
        self.net.gateway()
    }

    async fn image_status(&self, image: &str) -> Result<ResolvedImage> {
        let store = self.images.clone();
        let img = image.to_string();
        blocking(move || Ok(store.resolve(&img)?)).await
    }

    async fn pull_image(&self, image: &str, credentials: Option<&Credentials>) -> Result<()> {
        self.images
            .pull(image, credentials, &skiff_image::NoProgress)
            .await?;
        Ok(())
    }

    async fn list_containers(&self) -> Result<Vec<ContainerInfo>> {
        let rt = self.runtime.clone();
        blocking(move || Ok(rt.list()?)).await
    }

    async fn start_container(
        &self,
        spec: ContainerSpec,
        join: JoinNamespaces,
    ) -> Result<ContainerInfo> {
        let rt = self.runtime.clone();
        blocking(move || Ok(rt.create_and_start_joined(spec, &join)?)).await
    }

    async fn stop_container(&self, id: &str, grace: Duration) -> Result<()> {
        let rt = self.runtime.clone();
        let id = id.to_string();
        blocking(move || Ok(rt.stop(&id, grace)?)).await
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        let rt = self.runtime.clone();
        let id = id.to_string();
        blocking(move || Ok(rt.remove(&id, true)?)).await
    }

    async fn exec_sync(
        &self,
        id: &str,
        action: &ExecAction,
        timeout: Duration,
    ) -> std::result::Result<(), String> {
        probes::exec(
            &self.config.skiff_exe,
            &self.config.data_dir,
            id,
            action,
            timeout,
        )
        .await
    }

    fn writable_layer(&self, id: &str) -> PathBuf {
        self.config
            .data_dir
            .join("containers")
            .join(id)
            .join("upper")
    }

    fn pod_cgroups(&self) -> Vec<String> {
        self.runtime.pod_cgroups()
    }

    async fn remove_pod_cgroup(&self, name: &str) -> Result<()> {
        let rt = self.runtime.clone();
        let name = name.to_string();
        blocking(move || Ok(rt.remove_pod_cgroup(&name)?)).await
    }
}
