//! Pod routes between nodes: watches Nodes and keeps a route to every other node's pod CIDR via
//! its InternalIP ([`skiff_net::routes`]). Errors are logged and retried on the next change or
//! after a pause: a missing route must not take the agent down.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use kube::Client;
use skiff_net::routes::{self, NodeRoutes};

use crate::{AgentConfig, Result};

/// Retry pause after a failed sync (a node's address may not be reachable yet).
const RETRY: Duration = Duration::from_secs(5);

/// Deletes the routes this data dir installed (for `skiff reset`; a restarting agent keeps them).
pub fn remove_all(data_dir: &Path) -> Result<()> {
    Ok(NodeRoutes::new(data_dir).remove_all()?)
}

/// `(podCIDR, InternalIP)` of every node that has both.
fn node_targets(nodes: &Store<Node>) -> Vec<(String, Ipv4Addr)> {
    nodes
        .state()
        .iter()
        .filter_map(|n| {
            let cidr = n.spec.as_ref()?.pod_cidr.clone()?;
            let ip = n
                .status
                .as_ref()?
                .addresses
                .as_ref()?
                .iter()
                .find(|a| a.type_ == "InternalIP")?
                .address
                .parse()
                .ok()?;
            Some((cidr, ip))
        })
        .collect()
}

/// Runs until `stop` turns true.
pub async fn run(
    client: Client,
    config: AgentConfig,
    pod_cidr: String,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let (store, writer) = reflector::store::<Node>();
    let mut events = reflector::reflector(
        writer,
        watcher(Api::<Node>::all(client), watcher::Config::default()),
    )
    .boxed();
    let table = std::sync::Arc::new(NodeRoutes::new(&config.data_dir));
    let mut synced = false;
    let mut last: Option<Vec<routes::NodeRoute>> = None;
    let mut retry_at: Option<tokio::time::Instant> = None;
    loop {
        let retry = async {
            match retry_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            ev = events.next() => match ev {
                Some(Ok(watcher::Event::InitDone)) => synced = true,
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    tracing::warn!("node routes watch: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                None => return,
            },
            _ = retry => { last = None; }
            _ = stop.changed() => {
                if *stop.borrow() {
                    return;
                }
                continue;
            }
        }
        if !synced {
            continue;
        }
        let want = routes::desired(&pod_cidr, node_targets(&store));
        if last.as_ref() == Some(&want) {
            continue;
        }
        let t = table.clone();
        let w = want.clone();
        let res = tokio::task::spawn_blocking(move || t.sync(&w)).await;
        match res {
            Ok(Ok(())) => {
                last = Some(want);
                retry_at = None;
            }
            Ok(Err(e)) => {
                tracing::warn!("node routes: {e}");
                last = None;
                retry_at = Some(tokio::time::Instant::now() + RETRY);
            }
            Err(e) => tracing::warn!("node routes task: {e}"),
        }
    }
}
