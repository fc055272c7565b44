//! Node IPAM: gives every Node a pod CIDR (`spec.podCIDR`/`podCIDRs`), one /24 of the cluster
//! CIDR (`Options::cluster_cidr`, 100.64.0.0/16 by default) per node, like
//! kube-controller-manager's range allocator.
//! The lowest free /24 wins; a CIDR is never given to two nodes because every choice is made
//! against the full node list and written with the node's resourceVersion as a precondition.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::watcher;
use serde_json::json;
use skiff_semantics::cidr::{parse_ipv4_network, Ipv4Net};

use crate::{Context, Error, Result};

/// The per-node prefix length.
pub const NODE_MASK: u8 = 24;

type Cidr = Ipv4Net;

/// Index of a node /24 inside the cluster CIDR, if `cidr` is one.
fn block_index(cluster: Cidr, cidr: &str) -> Option<u32> {
    let block = parse_ipv4_network(cidr, NODE_MASK..=NODE_MASK).ok()?;
    let offset = u32::from(block.network()).checked_sub(u32::from(cluster.network()))?;
    let index = offset >> (32 - NODE_MASK);
    (index < blocks(cluster)).then_some(index)
}

/// How many node /24s the cluster CIDR holds (a cluster CIDR of /24 or longer holds one).
fn blocks(cluster: Cidr) -> u32 {
    1u32 << NODE_MASK.saturating_sub(cluster.prefix_len()).min(16)
}

fn block_cidr(cluster: Cidr, index: u32) -> String {
    let addr = Ipv4Addr::from(u32::from(cluster.network()) + (index << (32 - NODE_MASK)));
    format!("{addr}/{NODE_MASK}")
}

/// The lowest block not in `used`.
fn first_free(cluster: Cidr, used: &BTreeSet<u32>) -> Option<u32> {
    (0..blocks(cluster)).find(|i| !used.contains(i))
}

async fn allocate_missing(nodes: &Api<Node>, cluster: Cidr) -> Result<()> {
    let list = nodes.list(&ListParams::default()).await?;
    let mut used: BTreeSet<u32> = list
        .items
        .iter()
        .filter_map(|n| n.spec.as_ref()?.pod_cidr.as_deref())
        .filter_map(|c| block_index(cluster, c))
        .collect();
    for node in &list.items {
        if node
            .spec
            .as_ref()
            .and_then(|s| s.pod_cidr.as_ref())
            .is_some()
        {
            continue;
        }
        let (Some(name), Some(rv)) = (&node.metadata.name, &node.metadata.resource_version) else {
            continue;
        };
        let Some(index) = first_free(cluster, &used) else {
            tracing::warn!(node = %name, "no free pod CIDR left in the cluster CIDR");
            continue;
        };
        let cidr = block_cidr(cluster, index);
        let patch = json!({
            "metadata": {"resourceVersion": rv},
            "spec": {"podCIDR": cidr, "podCIDRs": [cidr]},
        });
        match nodes
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                used.insert(index);
                tracing::info!(node = %name, %cidr, "allocated pod CIDR");
            }
            // Someone changed the node meanwhile: the next pass sees the new state.
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(Error::Kube(e)),
        }
    }
    Ok(())
}

/// Allocates on every node change, and every 30 s as a safety net.
pub async fn run(ctx: Arc<Context>) -> Result<()> {
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let cluster = ctx.options.cluster_cidr;
    let mut events = watcher(nodes.clone(), watcher::Config::default()).boxed();
    let mut tick = tokio::time::interval(Duration::from_secs(30));
    loop {
        tokio::select! {
            event = events.next() => match event {
                Some(Ok(_)) => allocate_missing(&nodes, cluster).await?,
                Some(Err(e)) => {
                    tracing::debug!("node watch: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                None => return Ok(()),
            },
            _ = tick.tick() => allocate_missing(&nodes, cluster).await?,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT: Cidr = Ipv4Net::new_assert(Ipv4Addr::new(100, 64, 0, 0), 16);

    #[test]
    fn blocks_round_trip() {
        assert_eq!(block_cidr(DEFAULT, 0), "100.64.0.0/24");
        assert_eq!(block_cidr(DEFAULT, 7), "100.64.7.0/24");
        assert_eq!(block_index(DEFAULT, "100.64.7.0/24"), Some(7));
        assert_eq!(block_index(DEFAULT, "100.64.255.0/24"), Some(255));
        assert_eq!(block_index(DEFAULT, "100.65.0.0/24"), None);
        assert_eq!(block_index(DEFAULT, "100.64.7.0/25"), None);
        assert_eq!(block_index(DEFAULT, "100.64.7.1/24"), None);
        assert_eq!(block_index(DEFAULT, "10.0.0.0/24"), None);
    }

    #[test]
    fn lowest_free_block() {
        let used: BTreeSet<u32> = [0, 1, 3].into_iter().collect();
        assert_eq!(first_free(DEFAULT, &used), Some(2));
        let full: BTreeSet<u32> = (0..256).collect();
        assert_eq!(first_free(DEFAULT, &full), None);
    }

    #[test]
    fn a_single_block_cluster_cidr() {
        let one: Cidr = Ipv4Net::new_assert(Ipv4Addr::new(100, 64, 42, 0), 24);
        assert_eq!(blocks(one), 1);
        assert_eq!(block_cidr(one, 0), "100.64.42.0/24");
        assert_eq!(block_index(one, "100.64.42.0/24"), Some(0));
        assert_eq!(block_index(one, "100.64.43.0/24"), None);
        let used: BTreeSet<u32> = [0].into_iter().collect();
        assert_eq!(first_free(one, &used), None);
    }
}
