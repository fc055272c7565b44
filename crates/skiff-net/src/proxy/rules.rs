//! Pure rendering of the service model into one `nft -f` script that replaces the proxy's table
//! atomically (layout after kube-proxy's nftables mode, shared reference §4.5).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::Ipv4Addr;

use sha2::Digest;

use super::{EndpointModel, Protocol, ServiceModel, ServicePortModel};
use crate::Ipv4Cidr;

/// The masquerade mark bit (kube-proxy's default masqueradeBit 14).
pub const MASQ_MARK: u32 = 0x4000;

/// What the script needs besides the services.
#[derive(Debug, Clone)]
pub struct RenderConfig {
    /// `ip` family table name (`skiff_<8hex>`).
    pub table: String,
    /// The pod bridge: 127/8-sourced traffic leaving through it is masqueraded.
    pub bridge: String,
    pub pod_cidr: Ipv4Cidr,
    /// Whether `route_localnet` is on for the bridge (adds the CVE-2020-8558 martian drop).
    pub route_localnet: bool,
}

/// Object names: nft identifiers allow `[a-zA-Z0-9/._-]`; anything else from the API is
/// replaced so no input can break out of the script. The hash keeps names unique anyway.
fn ident(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Names are capped well under NFT_CHAIN_MAXNAMELEN (256); the hash prefix keeps them unique.
fn cap(mut s: String) -> String {
    if s.len() > 200 {
        s.truncate(200);
    }
    s
}

fn port_id(svc: &ServiceModel, port: &ServicePortModel) -> String {
    let key = format!(
        "{}/{}/{}/{}",
        svc.namespace,
        svc.name,
        port.protocol.nft(),
        port.name
    );
    let hash = hex::encode(sha2::Sha256::digest(key.as_bytes()));
    let hash = hash[..8].to_uppercase();
    ident(&format!("{hash}-{key}"))
}

fn endpoint_id(port_id: &str, ep: &EndpointModel) -> String {
    cap(format!("{port_id}__{}/{}", ep.ip, ep.port))
}

/// Addresses the proxy never DNATs to, whatever the API stored (defence in depth behind the
/// API server's validation): unspecified, loopback (with route_localnet a pod could otherwise
/// reach services bound to the node's 127.0.0.1), link-local (metadata services), multicast
/// and broadcast.
pub fn forbidden_endpoint(ip: Ipv4Addr) -> bool {
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
}

/// The endpoints traffic goes to: ready ones; if none, serving+terminating ones (upstream's
/// fallback so rolling updates don't drop connections); sorted and de-duplicated. Forbidden
/// addresses ([`forbidden_endpoint`]) are dropped first.
pub fn usable_endpoints(endpoints: &[EndpointModel]) -> Vec<EndpointModel> {
    let allowed = || endpoints.iter().filter(|e| !forbidden_endpoint(e.ip));
    let mut ready: Vec<EndpointModel> = allowed().filter(|e| e.ready).cloned().collect();
    if ready.is_empty() {
        ready = allowed()
            .filter(|e| e.serving && e.terminating)
            .cloned()
            .collect();
    }
    ready.sort_by_key(|e| (e.ip, e.port));
    ready.dedup_by_key(|e| (e.ip, e.port));
    ready
}

/// Load-balancing rules for a chain over `eps` (affinity lookups first, then numgen).
fn lb_rules(out: &mut String, pid: &str, eps: &[EndpointModel], affinity: bool) {
    if affinity {
        for ep in eps {
            let e = endpoint_id(pid, ep);
            let _ = writeln!(
                out,
                "\t\tip saddr @{} goto endpoint-{e}",
                cap(format!("affinity-{e}"))
            );
        }
    }
    match eps.len() {
        0 => out.push_str("\t\tdrop\n"),
        1 => {
            let _ = writeln!(out, "\t\tgoto endpoint-{}", endpoint_id(pid, &eps[0]));
        }
        n => {
            let arms: Vec<String> = eps
                .iter()
                .enumerate()
                .map(|(i, ep)| format!("{i} : goto endpoint-{}", endpoint_id(pid, ep)))
                .collect();
            let _ = writeln!(
                out,
                "\t\tnumgen random mod {n} vmap {{ {} }}",
                arms.join(", ")
            );
        }
    }
}

fn elements(out: &mut String, name: &str, typ: &str, elems: &[String]) {
    let _ = writeln!(out, "\tmap {name} {{\n\t\ttype {typ}");
    if !elems.is_empty() {
        let _ = writeln!(
            out,
            "\t\telements = {{\n\t\t\t{}\n\t\t}}",
            elems.join(",\n\t\t\t")
        );
    }
    out.push_str("\t}\n");
}

/// Renders the whole table. Deterministic (services and endpoints sorted) so an unchanged
/// model yields an identical script and the write can be skipped.
pub fn render(cfg: &RenderConfig, services: &[ServiceModel]) -> String {
    let t = &cfg.table;
    let mut svcs: Vec<&ServiceModel> = services.iter().collect();
    svcs.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));

    let mut service_ips = Vec::new();
    let mut service_nodeports = Vec::new();
    let mut no_ep_services = Vec::new();
    let mut no_ep_nodeports = Vec::new();
    let mut sets = String::new();
    let mut chains = String::new();
    // A NodePort/proto pair claimed twice (API bug or a race) would make the map add fail.
    let mut seen_np: BTreeMap<(Protocol, u16), ()> = BTreeMap::new();
    let mut seen_ip: BTreeMap<(Ipv4Addr, Protocol, u16), ()> = BTreeMap::new();

    // An endpoint that is another Service's ClusterIP would DNAT to a virtual address.
    let cluster_ips: BTreeSet<Ipv4Addr> = svcs.iter().filter_map(|s| s.cluster_ip).collect();
    for svc in svcs {
        let affinity = svc.session_affinity_timeout;
        for port in &svc.ports {
            let proto = port.protocol.nft();
            let pid = port_id(svc, port);
            let mut eps = usable_endpoints(&port.endpoints);
            eps.retain(|e| !cluster_ips.contains(&e.ip));
            let np = port
                .node_port
                .filter(|np| *np != 0 && seen_np.insert((port.protocol, *np), ()).is_none());
            let cip = svc.cluster_ip.filter(|ip| {
                seen_ip
                    .insert((*ip, port.protocol, port.port), ())
                    .is_none()
            });
            if eps.is_empty() {
                if let Some(ip) = cip {
                    no_ep_services.push(format!(
                        "{ip} . {proto} . {} : goto reject-chain",
                        port.port
                    ));
                }
                if let Some(np) = np {
                    no_ep_nodeports.push(format!("{proto} . {np} : goto reject-chain"));
                }
                continue;
            }
            let svc_chain = cap(format!("service-{pid}"));
            if let Some(ip) = cip {
                service_ips.push(format!("{ip} . {proto} . {} : goto {svc_chain}", port.port));
            }
            // Masquerade everything sent to a service: pods share one L2 bridge, so an
            // un-SNATed reply from a pod endpoint would go straight to the client pod with the
            // wrong source (masqueradeAll semantics; also covers hairpin and host clients).
            let _ = writeln!(
                chains,
                "\tchain {svc_chain} {{\n\t\tjump mark-for-masquerade"
            );
            lb_rules(&mut chains, &pid, &eps, affinity.is_some());
            chains.push_str("\t}\n");
            if let Some(np) = np {
                if svc.external_traffic_policy_local {
                    // Local: pods and the node itself go cluster-wide (masqueraded); outside
                    // clients only to this node's endpoints with their source IP preserved.
                    let ext = cap(format!("external-{pid}"));
                    let local = cap(format!("local-{pid}"));
                    let _ = writeln!(
                        chains,
                        "\tchain {ext} {{\n\t\tip saddr {} goto {svc_chain}\n\t\tfib saddr type local goto {svc_chain}\n\t\tgoto {local}\n\t}}",
                        cfg.pod_cidr
                    );
                    let local_eps: Vec<EndpointModel> =
                        eps.iter().filter(|e| e.local).cloned().collect();
                    let _ = writeln!(chains, "\tchain {local} {{");
                    lb_rules(&mut chains, &pid, &local_eps, affinity.is_some());
                    chains.push_str("\t}\n");
                    service_nodeports.push(format!("{proto} . {np} : goto {ext}"));
                } else {
                    service_nodeports.push(format!("{proto} . {np} : goto {svc_chain}"));
                }
            }
            for ep in &eps {
                let e = endpoint_id(&pid, ep);
                let _ = writeln!(chains, "\tchain endpoint-{e} {{");
                if let Some(timeout) = affinity {
                    let set = cap(format!("affinity-{e}"));
                    let _ = writeln!(
                        sets,
                        "\tset {set} {{\n\t\ttype ipv4_addr\n\t\tflags dynamic,timeout\n\t\ttimeout {}s\n\t}}",
                        timeout.max(1)
                    );
                    let _ = writeln!(chains, "\t\tupdate @{set} {{ ip saddr }}");
                }
                let _ = writeln!(
                    chains,
                    "\t\tmeta l4proto {proto} dnat to {}:{}\n\t}}",
                    ep.ip, ep.port
                );
            }
        }
    }

    let mut out = String::with_capacity(4096 + chains.len() + sets.len());
    // add+delete+add in one transaction: atomic replace whether or not the table exists.
    let _ = writeln!(
        out,
        "add table ip {t}\ndelete table ip {t}\ntable ip {t} {{"
    );
    elements(
        &mut out,
        "service-ips",
        "ipv4_addr . inet_proto . inet_service : verdict",
        &service_ips,
    );
    elements(
        &mut out,
        "service-nodeports",
        "inet_proto . inet_service : verdict",
        &service_nodeports,
    );
    elements(
        &mut out,
        "no-endpoint-services",
        "ipv4_addr . inet_proto . inet_service : verdict",
        &no_ep_services,
    );
    elements(
        &mut out,
        "no-endpoint-nodeports",
        "inet_proto . inet_service : verdict",
        &no_ep_nodeports,
    );
    out.push_str(&sets);
    // Filter chains run before DNAT (dstnat - 10) and reject new connections to services
    // without endpoints: an immediate RST/ICMP instead of a connect timeout.
    let martian = if cfg.route_localnet {
        // CVE-2020-8558: route_localnet must not let other hosts/pods reach 127.0.0.1.
        "\t\tiifname != \"lo\" ip daddr 127.0.0.0/8 ct state != { established, related } drop\n"
    } else {
        ""
    };
    let _ = write!(
        out,
        "\tchain filter-prerouting {{\n\t\ttype filter hook prerouting priority -110; policy accept;\n{martian}\t}}
\tchain filter-input {{\n\t\ttype filter hook input priority -110; policy accept;
\t\tct state new jump nodeport-endpoints-check\n\t\tct state new jump service-endpoints-check\n\t}}
\tchain filter-forward {{\n\t\ttype filter hook forward priority -110; policy accept;
\t\tct state new jump service-endpoints-check\n\t}}
\tchain filter-output {{\n\t\ttype filter hook output priority -110; policy accept;
\t\tct state new jump service-endpoints-check\n\t\tct state new jump nodeport-endpoints-check\n\t}}
\tchain service-endpoints-check {{\n\t\tip daddr . meta l4proto . th dport vmap @no-endpoint-services\n\t}}
\tchain nodeport-endpoints-check {{\n\t\tfib daddr type local meta l4proto . th dport vmap @no-endpoint-nodeports\n\t}}
\tchain reject-chain {{\n\t\tmeta l4proto tcp reject with tcp reset\n\t\treject\n\t}}
\tchain nat-prerouting {{\n\t\ttype nat hook prerouting priority -100; policy accept;\n\t\tjump services\n\t}}
\tchain nat-output {{\n\t\ttype nat hook output priority -100; policy accept;\n\t\tjump services\n\t}}
\tchain nat-postrouting {{\n\t\ttype nat hook postrouting priority 100; policy accept;
\t\tjump masquerading\n\t\tip saddr 127.0.0.0/8 oifname \"{bridge}\" masquerade\n\t}}
\tchain services {{\n\t\tip daddr . meta l4proto . th dport vmap @service-ips
\t\tfib daddr type local meta l4proto . th dport vmap @service-nodeports\n\t}}
\tchain mark-for-masquerade {{\n\t\tmeta mark set meta mark | {MASQ_MARK:#x}\n\t}}
\tchain masquerading {{\n\t\tmeta mark & {MASQ_MARK:#x} == 0 return
\t\tmeta mark set meta mark ^ {MASQ_MARK:#x}\n\t\tmasquerade fully-random\n\t}}\n",
        bridge = ident(&cfg.bridge),
    );
    out.push_str(&chains);
    out.push_str("}\n");
    out
}
