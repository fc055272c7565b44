//! Links and routes over rtnetlink: the kernel's refusal arrives as an errno
//! ([`NetError::Netlink`]) that callers match on, not as `ip`'s stderr text. The CNI plugins
//! still configure pod interfaces (external binaries by design); this is skiff's own use.

use std::future::Future;
use std::net::Ipv4Addr;
use std::path::Path;

use futures::TryStreamExt;
use nix::errno::Errno;
use nix::sched::CloneFlags;
use rtnetlink::packet_route::link::LinkMessage;
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteMessage, RouteProtocol};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::{Handle, RouteMessageBuilder};

use crate::{io_err, nix_err, NetError, Result};

fn netlink_err(op: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NetError {
    let op = op.into();
    move |e| match e {
        rtnetlink::Error::NetlinkError(m) if m.raw_code() != 0 => NetError::Netlink {
            op,
            errno: Errno::from_raw(m.raw_code().saturating_abs()),
        },
        e => NetError::Other(format!("{op}: {e}")),
    }
}

/// Runs `f` with an rtnetlink handle on a thread and runtime of its own, so callers stay
/// synchronous whether or not they are inside a tokio runtime. With `netns` the thread first
/// joins that network namespace (setns affects only this thread, which ends with the call);
/// without, it is in the caller's (a new thread inherits its creator's namespaces).
pub(crate) fn run<T, F, Fut>(netns: Option<&Path>, f: F) -> Result<T>
where
    T: Send,
    F: FnOnce(Handle) -> Fut + Send,
    Fut: Future<Output = Result<T>>,
{
    std::thread::scope(|s| {
        let worker = std::thread::Builder::new()
            .name("skiff-netlink".into())
            .spawn_scoped(s, move || -> Result<T> {
                if let Some(ns) = netns {
                    let file = std::fs::File::open(ns)
                        .map_err(io_err(format!("open {}", ns.display())))?;
                    nix::sched::setns(&file, CloneFlags::CLONE_NEWNET)
                        .map_err(nix_err(format!("setns {}", ns.display())))?;
                }
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_io()
                    .build()
                    .map_err(io_err("start the netlink runtime"))?;
                rt.block_on(async move {
                    let (conn, handle, _) =
                        rtnetlink::new_connection().map_err(io_err("open a netlink socket"))?;
                    // The socket closes when the runtime (and this task) is dropped.
                    tokio::spawn(conn);
                    f(handle).await
                })
            })
            .map_err(io_err("spawn the netlink thread"))?;
        worker
            .join()
            .map_err(|_| NetError::Other("netlink thread panicked".into()))?
    })
}

/// The link named `name`, if there is one.
async fn find_link(handle: &Handle, name: &str) -> Result<Option<LinkMessage>> {
    let found = handle
        .link()
        .get()
        .match_name(name.to_string())
        .execute()
        .try_next()
        .await;
    match found.map_err(netlink_err(format!("find link {name}"))) {
        Err(e) if e.errno() == Some(Errno::ENODEV) => Ok(None),
        other => other,
    }
}

/// Deletes the link `name`; false if there was none.
pub(crate) fn delete_link(netns: Option<&Path>, name: &str) -> Result<bool> {
    run(netns, |handle| async move {
        let Some(link) = find_link(&handle, name).await? else {
            return Ok(false);
        };
        match handle.link().del(link.header.index).execute().await {
            Ok(()) => Ok(true),
            // Gone in between.
            Err(e) => match netlink_err(format!("delete link {name}"))(e) {
                e if e.errno() == Some(Errno::ENODEV) => Ok(false),
                e => Err(e),
            },
        }
    })
}

/// Sets IFF_UP on the link `name`.
pub(crate) fn link_up(netns: Option<&Path>, name: &str) -> Result<()> {
    run(netns, |handle| async move {
        let op = format!("set link {name} up");
        let link = find_link(&handle, name)
            .await?
            .ok_or_else(|| NetError::Netlink {
                op: op.clone(),
                errno: Errno::ENODEV,
            })?;
        let msg = rtnetlink::LinkUnspec::new_with_index(link.header.index)
            .up()
            .build();
        handle
            .link()
            .set(msg)
            .execute()
            .await
            .map_err(netlink_err(op))
    })
}

/// A unicast route in the main table: `dst/prefix via gateway metric metric`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Route {
    pub dst: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    pub metric: u32,
}

impl std::fmt::Display for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{} via {} metric {}",
            self.dst, self.prefix, self.gateway, self.metric
        )
    }
}

impl Route {
    fn message(&self, protocol: RouteProtocol) -> RouteMessage {
        let mut msg = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(self.dst, self.prefix)
            .gateway(self.gateway)
            .priority(self.metric)
            .build();
        msg.header.protocol = protocol;
        msg
    }

    /// Whether the main table holds exactly this route (`ip route show exact`).
    fn matches(&self, m: &RouteMessage) -> bool {
        let has = |want: &RouteAttribute| m.attributes.iter().any(|a| a == want);
        let table = m
            .attributes
            .iter()
            .find_map(|a| match a {
                RouteAttribute::Table(t) => Some(*t),
                _ => None,
            })
            .unwrap_or(u32::from(m.header.table));
        m.header.address_family == AddressFamily::Inet
            && table == u32::from(rtnetlink::packet_route::route::RouteHeader::RT_TABLE_MAIN)
            && m.header.destination_prefix_length == self.prefix
            && has(&RouteAttribute::Destination(RouteAddress::Inet(self.dst)))
            && has(&RouteAttribute::Gateway(RouteAddress::Inet(self.gateway)))
            && has(&RouteAttribute::Priority(self.metric))
    }
}

/// Whether `route` is installed.
pub(crate) fn route_present(netns: Option<&Path>, route: Route) -> Result<bool> {
    run(netns, |handle| async move {
        // No destination attribute: a dump of every IPv4 route, filtered here.
        let dump = RouteMessageBuilder::<Ipv4Addr>::new().build();
        let mut routes = handle.route().get(dump).execute();
        while let Some(m) = routes
            .try_next()
            .await
            .map_err(netlink_err(format!("list routes for {route}")))?
        {
            if route.matches(&m) {
                return Ok(true);
            }
        }
        Ok(false)
    })
}

/// Adds `route` or replaces the one with the same destination, table and metric (`ip route
/// replace`, whose default protocol `boot` it keeps).
pub(crate) fn replace_route(netns: Option<&Path>, route: Route) -> Result<()> {
    run(netns, |handle| async move {
        handle
            .route()
            .add(route.message(RouteProtocol::Boot))
            .replace()
            .execute()
            .await
            .map_err(netlink_err(format!("replace route {route}")))
    })
}

/// Deletes `route` (any protocol); [`NetError::Netlink`] with `ESRCH` if there is none.
pub(crate) fn delete_route(netns: Option<&Path>, route: Route) -> Result<()> {
    run(netns, |handle| async move {
        handle
            .route()
            .del(route.message(RouteProtocol::Unspec))
            .execute()
            .await
            .map_err(netlink_err(format!("delete route {route}")))
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Runs `f` on a thread in a fresh network namespace of its own (the netlink threads it
    /// starts inherit it); the namespace goes away with the thread.
    pub(crate) fn in_new_netns<T: Send>(f: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|s| {
            s.spawn(|| {
                nix::sched::unshare(CloneFlags::CLONE_NEWNET).expect("unshare(net)");
                f()
            })
            .join()
            .expect("test thread")
        })
    }

    fn link_flags_up(name: &str) -> bool {
        run(None, |h| async move {
            let link = find_link(&h, name).await?.expect("link");
            Ok(link
                .header
                .flags
                .contains(rtnetlink::packet_route::link::LinkFlags::Up))
        })
        .expect("get link")
    }

    #[test]
    #[ignore = "needs root: creates a network namespace"]
    fn links_by_errno() {
        in_new_netns(|| {
            assert!(!link_flags_up("lo"), "a new namespace starts with lo down");
            link_up(None, "lo").unwrap();
            assert!(link_flags_up("lo"));
            // A missing link is an errno, not a message to parse.
            let err = link_up(None, "nosuch0").unwrap_err();
            assert!(
                matches!(
                    &err,
                    NetError::Netlink {
                        errno: Errno::ENODEV,
                        ..
                    }
                ),
                "{err:?}"
            );
            assert_eq!(err.errno(), Some(Errno::ENODEV));
            assert!(!delete_link(None, "nosuch0").unwrap());
            // An existing link: creating it again is EEXIST; deleting it works once.
            let add = || {
                run(None, |h| async move {
                    h.link()
                        .add(rtnetlink::LinkBridge::new("skt0").build())
                        .execute()
                        .await
                        .map_err(netlink_err("add skt0"))
                })
            };
            add().unwrap();
            assert_eq!(add().unwrap_err().errno(), Some(Errno::EEXIST));
            assert!(delete_link(None, "skt0").unwrap());
            assert!(!delete_link(None, "skt0").unwrap());
        });
    }

    /// Adds an up bridge `name` with `addr/prefix` in the caller's network namespace.
    pub(crate) fn add_bridge(name: &str, addr: Ipv4Addr, prefix: u8) {
        run(None, |h| async move {
            h.link()
                .add(rtnetlink::LinkBridge::new(name).up().build())
                .execute()
                .await
                .map_err(netlink_err("add bridge"))?;
            let link = find_link(&h, name).await?.expect("bridge");
            h.address()
                .add(link.header.index, addr.into(), prefix)
                .execute()
                .await
                .map_err(netlink_err("address"))
        })
        .unwrap();
    }

    #[test]
    #[ignore = "needs root: creates a network namespace"]
    fn routes_replace_show_delete() {
        in_new_netns(|| {
            // A bridge with 192.0.2.1/24 makes 192.0.2.2 an on-link gateway.
            add_bridge("skt1", Ipv4Addr::new(192, 0, 2, 1), 24);
            let route = Route {
                dst: Ipv4Addr::new(198, 51, 100, 0),
                prefix: 24,
                gateway: Ipv4Addr::new(192, 0, 2, 2),
                metric: 4096,
            };
            assert!(!route_present(None, route).unwrap());
            replace_route(None, route).unwrap();
            replace_route(None, route).unwrap();
            assert!(route_present(None, route).unwrap());
            // Another metric or gateway is another route.
            let other_metric = Route { metric: 1, ..route };
            assert!(!route_present(None, other_metric).unwrap());
            let other_gw = Route {
                gateway: Ipv4Addr::new(192, 0, 2, 3),
                ..route
            };
            assert!(!route_present(None, other_gw).unwrap());
            // A gateway no link reaches is refused with ENETUNREACH.
            let unreachable = Route {
                gateway: Ipv4Addr::new(203, 0, 113, 1),
                ..route
            };
            let err = replace_route(None, unreachable).unwrap_err();
            assert_eq!(err.errno(), Some(Errno::ENETUNREACH), "{err:?}");
            delete_route(None, route).unwrap();
            assert!(!route_present(None, route).unwrap());
            assert_eq!(
                delete_route(None, route).unwrap_err().errno(),
                Some(Errno::ESRCH)
            );
        });
    }

    #[test]
    #[ignore = "needs root: creates a network namespace"]
    fn run_joins_a_namespace_by_path() {
        // A namespace bind-mounted on a file, as sandboxes keep theirs.
        let dir = tempfile::tempdir().unwrap();
        let (ipc, uts, net) = (
            dir.path().join("ipc"),
            dir.path().join("uts"),
            dir.path().join("net"),
        );
        crate::ns::create_namespaces(Some(&net), &ipc, &uts, "nl-test").unwrap();
        // create_namespaces brought lo up in there; the host's namespace is untouched.
        let up = run(Some(&net), |h| async move {
            let lo = find_link(&h, "lo").await?.expect("lo");
            let links: Vec<_> = h
                .link()
                .get()
                .execute()
                .try_collect()
                .await
                .map_err(netlink_err("list"))?;
            Ok((
                lo.header
                    .flags
                    .contains(rtnetlink::packet_route::link::LinkFlags::Up),
                links.len(),
            ))
        });
        crate::ns::unmount_all(dir.path()).unwrap();
        assert_eq!(up.unwrap(), (true, 1), "only lo, and up");
    }
}
