//! Routes to other nodes' pod CIDRs (flannel's host-gw model): for every other node, the route
//! `<its podCIDR> via <its InternalIP>`. Pods keep their own IPs across nodes (no overlay, no
//! NAT between pods); the nodes must share an L2 segment, as on one switch or one bridge.
//!
//! Only routes this data dir installed are ever changed or removed: they are recorded in
//! `<data_dir>/net/routes.json`, so two nodes on one host (tests) never touch each other's.
//! Routes carry [`METRIC`], so replacing one (netlink `NLM_F_REPLACE`) can never overwrite a connected route of a
//! local bridge (those have metric 0 and win the lookup anyway).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, UdpSocket};
use std::path::{Path, PathBuf};

use crate::{io_err, netlink, write_atomic, Ipv4Cidr, NetError, Result};

/// Metric of the node routes skiff installs.
pub const METRIC: u32 = 4096;

/// A route to one node's pods.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct NodeRoute {
    /// The node's pod CIDR, e.g. `100.64.1.0/24`.
    pub cidr: String,
    /// The node's address on the shared network.
    pub via: Ipv4Addr,
}

/// Whether `ip` is an address of this host (of this network namespace): such a node is this
/// machine, whose pod bridges are connected routes already.
pub fn is_local_address(ip: Ipv4Addr) -> bool {
    UdpSocket::bind((ip, 0)).is_ok()
}

/// The routes a node wants: one per other node with a pod CIDR and a non-local address.
/// Invalid CIDRs (host bits set, too wide or narrow) and the node's own CIDR are skipped.
pub fn desired(
    own_cidr: &str,
    nodes: impl IntoIterator<Item = (String, Ipv4Addr)>,
) -> Vec<NodeRoute> {
    let mut out: Vec<NodeRoute> = nodes
        .into_iter()
        .filter(|(cidr, _)| cidr != own_cidr)
        .filter_map(|(cidr, via)| {
            let parsed = Ipv4Cidr::parse(&cidr).ok()?;
            Some(NodeRoute {
                cidr: parsed.to_string(),
                via,
            })
        })
        .filter(|r| !is_local_address(r.via))
        .collect();
    out.sort();
    out.dedup_by(|a, b| a.cidr == b.cidr);
    out
}

/// The node routes of one data dir.
pub struct NodeRoutes {
    state: PathBuf,
}

impl NodeRoutes {
    pub fn new(data_dir: &Path) -> Self {
        NodeRoutes {
            state: data_dir.join("net").join("routes.json"),
        }
    }

    fn recorded(&self) -> Result<BTreeMap<String, Ipv4Addr>> {
        match std::fs::read(&self.state) {
            Ok(b) => serde_json::from_slice(&b)
                .map_err(|e| NetError::Other(format!("{}: {e}", self.state.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(io_err(format!("read {}", self.state.display()))(e)),
        }
    }

    fn record(&self, routes: &BTreeMap<String, Ipv4Addr>) -> Result<()> {
        if let Some(dir) = self.state.parent() {
            std::fs::create_dir_all(dir).map_err(io_err(format!("create {}", dir.display())))?;
        }
        let text = serde_json::to_vec(routes)
            .map_err(|e| NetError::Other(format!("serialize routes: {e}")))?;
        write_atomic(&self.state, &text)
    }

    /// Makes the installed routes exactly `want`: adds or changes the wanted ones and deletes
    /// the ones this data dir installed earlier that are no longer wanted. Every route is
    /// attempted; the first failure is returned after the rest were tried.
    pub fn sync(&self, want: &[NodeRoute]) -> Result<()> {
        let before = self.recorded()?;
        let mut now = BTreeMap::new();
        let mut first_err = None;
        for r in want {
            // Recorded before the attempt: a half-applied route is still ours to delete.
            now.insert(r.cidr.clone(), r.via);
            if before.get(&r.cidr) == Some(&r.via) && route_present(r) {
                continue;
            }
            if let Err(e) = replace_route(&r.cidr, r.via) {
                first_err.get_or_insert(e);
            } else {
                tracing::info!(cidr = %r.cidr, via = %r.via, "route to node pods installed");
            }
        }
        for (cidr, via) in &before {
            if !now.contains_key(cidr) {
                if let Err(e) = delete_route(cidr, *via) {
                    first_err.get_or_insert(e);
                    now.insert(cidr.clone(), *via);
                }
            }
        }
        self.record(&now)?;
        first_err.map_or(Ok(()), Err)
    }

    /// Deletes every route this data dir installed (for `skiff reset`).
    pub fn remove_all(&self) -> Result<()> {
        self.sync(&[])?;
        match std::fs::remove_file(&self.state) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(format!("remove {}", self.state.display()))(e)),
        }
    }
}

/// The kernel route for `cidr via via`, with skiff's metric.
fn kernel_route(cidr: &str, via: Ipv4Addr) -> Result<netlink::Route> {
    let c = Ipv4Cidr::parse(cidr)?.net();
    Ok(netlink::Route {
        dst: c.network(),
        prefix: c.prefix_len(),
        gateway: via,
        metric: METRIC,
    })
}

fn route_present(r: &NodeRoute) -> bool {
    kernel_route(&r.cidr, r.via)
        .and_then(|route| netlink::route_present(None, route))
        .unwrap_or(false)
}

fn replace_route(cidr: &str, via: Ipv4Addr) -> Result<()> {
    netlink::replace_route(None, kernel_route(cidr, via)?)
}

fn delete_route(cidr: &str, via: Ipv4Addr) -> Result<()> {
    match netlink::delete_route(None, kernel_route(cidr, via)?) {
        // The kernel already dropped it (its gateway's link went away): fine.
        Err(e) if e.errno() == Some(nix::errno::Errno::ESRCH) => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn desired_skips_self_local_and_invalid() {
        let nodes = vec![
            ("100.64.0.0/24".to_string(), Ipv4Addr::new(198, 51, 100, 1)),
            ("100.64.1.0/24".to_string(), Ipv4Addr::new(198, 51, 100, 2)),
            ("100.64.2.0/24".to_string(), Ipv4Addr::LOCALHOST),
            ("not a cidr".to_string(), Ipv4Addr::new(198, 51, 100, 3)),
            ("100.64.3.7/24".to_string(), Ipv4Addr::new(198, 51, 100, 4)),
        ];
        let got = desired("100.64.0.0/24", nodes);
        assert_eq!(
            got,
            vec![NodeRoute {
                cidr: "100.64.1.0/24".into(),
                via: Ipv4Addr::new(198, 51, 100, 2)
            },]
        );
    }

    #[test]
    #[ignore = "needs root: creates a network namespace"]
    fn sync_installs_changes_and_removes_its_routes() {
        let dir = tempfile::tempdir().unwrap();
        crate::netlink::tests::in_new_netns(|| {
            crate::netlink::tests::add_bridge("skr0", Ipv4Addr::new(192, 0, 2, 1), 24);
            let table = NodeRoutes::new(dir.path());
            let r = |cidr: &str, last: u8| NodeRoute {
                cidr: cidr.into(),
                via: Ipv4Addr::new(192, 0, 2, last),
            };
            table
                .sync(&[r("100.64.1.0/24", 2), r("100.64.2.0/24", 3)])
                .unwrap();
            assert!(route_present(&r("100.64.1.0/24", 2)));
            assert!(route_present(&r("100.64.2.0/24", 3)));
            // A node moved: replaced in place. A node left: deleted.
            table.sync(&[r("100.64.1.0/24", 4)]).unwrap();
            assert!(route_present(&r("100.64.1.0/24", 4)));
            assert!(!route_present(&r("100.64.1.0/24", 2)));
            assert!(!route_present(&r("100.64.2.0/24", 3)));
            // A route the kernel dropped behind our back still syncs away cleanly (ESRCH).
            delete_route("100.64.1.0/24", Ipv4Addr::new(192, 0, 2, 4)).unwrap();
            delete_route("100.64.1.0/24", Ipv4Addr::new(192, 0, 2, 4)).unwrap();
            // An unreachable gateway is reported with its errno, and the rest still applies.
            let err = table
                .sync(&[
                    NodeRoute {
                        cidr: "100.64.3.0/24".into(),
                        via: Ipv4Addr::new(203, 0, 113, 9),
                    },
                    r("100.64.5.0/24", 5),
                ])
                .unwrap_err();
            assert_eq!(err.errno(), Some(nix::errno::Errno::ENETUNREACH), "{err}");
            assert!(route_present(&r("100.64.5.0/24", 5)));
            table.remove_all().unwrap();
            assert!(!route_present(&r("100.64.5.0/24", 5)));
            assert!(!dir.path().join("net/routes.json").exists());
        });
    }
}
