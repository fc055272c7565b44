//! Node registration, status heartbeats and the node Lease (upstream semantics §5), and the
//! agent's entry point [`run`], which ties the node loop and the pod workers together.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::json;

use crate::pods::{PodIndex, PodManager};
use crate::{AgentConfig, Error, Result};
use skiff_semantics::wellknown::labels as wellknown;

pub const KUBELET_VERSION: &str = "v1.33.0-skiff";

/// Runs the node agent until `shutdown` resolves: the agent API (logs, exec) on
/// `config.api_listen`, node registration and heartbeats, and the pod workers. Containers keep
/// running after it returns (they are re-adopted by the next agent on the same data dir).
pub async fn run(
    client: Client,
    config: AgentConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    run_publishing(client, config, |_| {}, shutdown).await
}

/// Like [`run`], handing the agent API's router to `publish` before serving it, so an API
/// server in the same process can reach this agent without TLS or TCP (see
/// `skiff_apiserver::AppState::register_local_agent`).
pub async fn run_publishing(
    client: Client,
    config: AgentConfig,
    publish: impl FnOnce(axum::Router),
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let index = Arc::new(PodIndex::new(&config)?);
    let listener = tokio::net::TcpListener::bind(config.api_listen)
        .await
        .map_err(|e| Error::Other(format!("agent API on {}: {e}", config.api_listen)))?;
    let port = listener
        .local_addr()
        .map_err(|e| Error::Other(format!("agent API address: {e}")))?
        .port();
    let cert = crate::api::request_serving_cert(&client, &config).await?;
    let (stop_api, api_stopped) = tokio::sync::oneshot::channel::<()>();
    let state = crate::api::ApiState::new(&config, index.clone());
    publish(crate::api::router(state.clone()));
    let api = tokio::spawn(async move {
        crate::api::serve(listener, state, &cert, async {
            let _ = api_stopped.await;
        })
        .await
    });
    let result = run_with(client, config, index, port, shutdown).await;
    let _ = stop_api.send(());
    if let Ok(Err(e)) = api.await {
        tracing::warn!("agent API stopped with an error: {e}");
    }
    result
}

/// Like [`run`], with the agent API's port (published in the Node status) and the container
/// index the API reads.
pub async fn run_with(
    client: Client,
    config: AgentConfig,
    index: Arc<PodIndex>,
    kubelet_port: u16,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    register(&client, &config, kubelet_port).await?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let hb = tokio::spawn(heartbeat_loop(
        client.clone(),
        config.clone(),
        kubelet_port,
        stop_rx.clone(),
    ));
    let pod_cidr = tokio::select! {
        c = wait_for_pod_cidr(&client, &config.node_name) => c?,
        _ = shutdown_wait(stop_rx.clone()) => String::new(),
    };
    // Terminating pods ask the proxy whether its table still sends them connections.
    let proxy_status = Arc::new(std::sync::OnceLock::new());
    let manager = PodManager::new(
        client.clone(),
        config.clone(),
        index,
        &pod_cidr,
        proxy_status.clone(),
    )?;
    // The service proxy needs the pod network's bridge and CIDR; its table outlives the agent.
    let proxy = tokio::spawn(crate::proxy::run(
        client.clone(),
        config.clone(),
        pod_cidr.clone(),
        proxy_status,
        stop_rx.clone(),
    ));
    // NetworkPolicy enforcement; its table goes away when the agent stops.
    let netpol = tokio::spawn(crate::netpol::run(
        client.clone(),
        config.clone(),
        manager.netpol_slot(),
        stop_rx.clone(),
    ));
    // Routes to the other nodes' pods; like the table, they outlive the agent.
    let routes = tokio::spawn(crate::routes::run(
        client.clone(),
        config.clone(),
        pod_cidr.clone(),
        stop_rx.clone(),
    ));
    let volumes = tokio::spawn(crate::storage::run(
        client.clone(),
        config.clone(),
        stop_rx.clone(),
    ));
    let pods = tokio::spawn(manager.run(stop_rx));
    shutdown.await;
    let _ = stop_tx.send(true);
    let _ = pods.await;
    let _ = volumes.await;
    let _ = proxy.await;
    let _ = netpol.await;
    let _ = routes.await;
    hb.abort();
    Ok(())
}

async fn shutdown_wait(mut rx: tokio::sync::watch::Receiver<bool>) {
    while !*rx.borrow() {
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// The node's pod CIDR: allocated by the server (node IPAM); polls until it is set.
async fn wait_for_pod_cidr(client: &Client, node: &str) -> Result<String> {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut logged = false;
    loop {
        match nodes.get(node).await {
            Ok(n) => {
                if let Some(c) = n.spec.and_then(|s| s.pod_cidr).filter(|c| !c.is_empty()) {
                    return Ok(c);
                }
                if !logged {
                    tracing::info!(node, "waiting for the server to allocate spec.podCIDR");
                    logged = true;
                }
            }
            Err(e) => tracing::warn!(node, "reading node: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        other => other,
    }
}

fn mem_total_bytes() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

fn os_image() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_string())
        })
        .unwrap_or_else(|| "Linux".into())
}

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// The Node status the agent reports; `transition` is when the conditions took their values.
fn node_status(config: &AgentConfig, port: u16, transition: &str) -> serde_json::Value {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mem = mem_total_bytes();
    // Allocatable = capacity minus the default hard eviction threshold (100Mi).
    let alloc_mem = mem.saturating_sub(100 * 1024 * 1024);
    let t = now();
    let cond = |typ: &str, status: &str, reason: &str, message: &str| {
        json!({"type": typ, "status": status, "reason": reason, "message": message,
               "lastHeartbeatTime": t, "lastTransitionTime": transition})
    };
    json!({
        "capacity": {"cpu": cpus.to_string(), "memory": format!("{}Ki", mem / 1024), "pods": "110"},
        "allocatable": {"cpu": cpus.to_string(), "memory": format!("{}Ki", alloc_mem / 1024), "pods": "110"},
        "conditions": [
            cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
            cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            cond("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
        ],
        "addresses": [
            {"type": "InternalIP", "address": config.node_ip.to_string()},
            {"type": "Hostname", "address": config.node_name},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
        "nodeInfo": {
            "kubeletVersion": KUBELET_VERSION,
            "kubeProxyVersion": KUBELET_VERSION,
            "containerRuntimeVersion": format!("skiff://{}", env!("CARGO_PKG_VERSION")),
            "operatingSystem": "linux",
            "architecture": arch(),
            "osImage": os_image(),
            "kernelVersion": read_trim("/proc/sys/kernel/osrelease"),
            "machineID": read_trim("/etc/machine-id"),
            "systemUUID": read_trim("/sys/class/dmi/id/product_uuid"),
            "bootID": read_trim("/proc/sys/kernel/random/boot_id"),
        },
    })
}

/// Creates the Node or reconciles its labels, then writes its status.
async fn register(client: &Client, config: &AgentConfig, port: u16) -> Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let name = &config.node_name;
    let labels = json!({
        wellknown::HOSTNAME: name,
        wellknown::OS: "linux",
        wellknown::ARCH: arch(),
        wellknown::BETA_OS: "linux",
        wellknown::BETA_ARCH: arch(),
    });
    let root = config.storage_root();
    let annotations = json!({crate::storage::STORAGE_ROOT_ANNOTATION: root.to_string_lossy()});
    match nodes.get_opt(name).await? {
        Some(_) => {
            let patch = json!({"metadata": {"labels": labels, "annotations": annotations}});
            nodes
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
        }
        None => {
            let node: Node = serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name, "labels": labels, "annotations": annotations},
            }))
            .map_err(|e| Error::Other(format!("node object: {e}")))?;
            match nodes.create(&PostParams::default(), &node).await {
                Ok(_) => {}
                // Raced with another registration of the same name: reconcile next heartbeat.
                Err(kube::Error::Api(ae)) if ae.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    let status = json!({"status": node_status(config, port, &now())});
    nodes
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await?;
    Ok(())
}

async fn heartbeat_loop(
    client: Client,
    config: AgentConfig,
    port: u16,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let nodes: Api<Node> = Api::all(client.clone());
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let transition = now();
    // After a failed renewal, retry soon (200 ms, doubling up to the heartbeat period), as
    // the kubelet's lease controller does: the API connection may just have moved to another
    // server (see lb.rs).
    let mut retry = Duration::from_millis(200);
    loop {
        let renewed = renew_lease(&nodes, &leases, &config).await;
        let status = json!({"status": node_status(&config, port, &transition)});
        if let Err(e) = nodes
            .patch_status(
                &config.node_name,
                &PatchParams::default(),
                &Patch::Merge(&status),
            )
            .await
        {
            tracing::warn!(node = %config.node_name, "node status update failed: {e}");
            // A deleted Node is re-registered (kubelet behaviour).
            if matches!(&e, kube::Error::Api(ae) if ae.code == 404) {
                let _ = register(&client, &config, port).await;
            }
        }
        let wait = if renewed {
            retry = Duration::from_millis(200);
            config.heartbeat()
        } else {
            let w = retry;
            retry = (retry * 2).min(config.heartbeat());
            w
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Renews (or creates) the node's Lease; false when that failed.
async fn renew_lease(nodes: &Api<Node>, leases: &Api<Lease>, config: &AgentConfig) -> bool {
    let node = config.node_name.as_str();
    let renew = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string();
    let spec = json!({"holderIdentity": node, "leaseDurationSeconds": config.lease_duration_seconds,
                      "renewTime": renew});
    match leases.get_opt(node).await {
        Ok(Some(_)) => {
            let patch = json!({"spec": spec});
            match leases
                .patch(node, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => true,
                Err(e) => {
                    tracing::warn!(node, "renewing lease: {e}");
                    false
                }
            }
        }
        Ok(None) => {
            let uid = nodes
                .get_opt(node)
                .await
                .ok()
                .flatten()
                .and_then(|n| n.metadata.uid);
            let mut meta = json!({"name": node, "namespace": "kube-node-lease"});
            if let Some(uid) = uid {
                meta["ownerReferences"] =
                    json!([{"apiVersion": "v1", "kind": "Node", "name": node, "uid": uid}]);
            }
            let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                               "metadata": meta, "spec": spec});
            match serde_json::from_value::<Lease>(lease) {
                Ok(l) => match leases.create(&PostParams::default(), &l).await {
                    Ok(_) => true,
                    Err(e) => {
                        tracing::warn!(node, "creating lease: {e}");
                        false
                    }
                },
                Err(e) => {
                    tracing::warn!(node, "lease object: {e}");
                    false
                }
            }
        }
        Err(e) => {
            tracing::warn!(node, "reading lease: {e}");
            false
        }
    }
}
