//! The files the kubelet manages in every container: `/etc/hosts` (localhost, the pod's own
//! name and IP, `hostAliases`) and `/etc/resolv.conf` (from `dnsPolicy` and `dnsConfig`).
//! Both are written once per pod in its directory and bind-mounted into each container.

use std::fmt::Write as _;

use k8s_openapi::api::core::v1::Pod;

use crate::dns::CLUSTER_DOMAIN;

/// Upstream's limits (kubelet: validation.MaxDNSNameservers, MaxDNSSearchPaths).
const MAX_NAMESERVERS: usize = 3;
const MAX_SEARCHES: usize = 32;

/// The pod's `/etc/hosts`.
pub fn hosts_file(pod: &Pod, pod_ip: &str) -> String {
    let mut out = String::from(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
    );
    let spec = pod.spec.as_ref();
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let hostname = spec
        .and_then(|s| s.hostname.as_deref())
        .filter(|h| !h.is_empty())
        .unwrap_or(name);
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    match spec
        .and_then(|s| s.subdomain.as_deref())
        .filter(|d| !d.is_empty())
    {
        Some(sub) => {
            let _ = writeln!(
                out,
                "{pod_ip}\t{hostname}.{sub}.{ns}.svc.{CLUSTER_DOMAIN}\t{hostname}"
            );
        }
        None => {
            let _ = writeln!(out, "{pod_ip}\t{hostname}");
        }
    }
    let aliases = spec.and_then(|s| s.host_aliases.as_ref());
    if aliases.is_some_and(|a| !a.is_empty()) {
        out.push_str("\n# Entries added by HostAliases.\n");
        for a in aliases.into_iter().flatten() {
            let names = a.hostnames.clone().unwrap_or_default().join("\t");
            let _ = writeln!(out, "{}\t{names}", a.ip);
        }
    }
    out
}

/// The pod's `/etc/resolv.conf`. `nameserver` is the node's cluster DNS; `host` the node's
/// own resolv.conf (for `dnsPolicy: Default`).
pub fn resolv_conf(pod: &Pod, nameserver: &str, host: &str) -> String {
    let spec = pod.spec.as_ref();
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let mut policy = spec
        .and_then(|s| s.dns_policy.as_deref())
        .unwrap_or("ClusterFirst");
    // ClusterFirst falls back to the node's resolvers for host-network pods (upstream);
    // ClusterFirstWithHostNet is how they ask for cluster DNS.
    if policy == "ClusterFirst" && spec.and_then(|s| s.host_network) == Some(true) {
        policy = "Default";
    }
    let (mut servers, mut searches, mut options): (Vec<String>, Vec<String>, Vec<String>) =
        match policy {
            "None" => Default::default(),
            "Default" => {
                let mut s = (Vec::new(), Vec::new(), Vec::new());
                for line in host.lines() {
                    let mut f = line.split_whitespace();
                    match f.next() {
                        Some("nameserver") => s.0.extend(f.next().map(str::to_string)),
                        Some("search") | Some("domain") => s.1.extend(f.map(str::to_string)),
                        Some("options") => s.2.extend(f.map(str::to_string)),
                        _ => {}
                    }
                }
                s
            }
            // ClusterFirst and ClusterFirstWithHostNet.
            _ => (
                vec![nameserver.to_string()],
                vec![
                    format!("{ns}.svc.{CLUSTER_DOMAIN}"),
                    format!("svc.{CLUSTER_DOMAIN}"),
                    CLUSTER_DOMAIN.to_string(),
                ],
                vec!["ndots:5".to_string()],
            ),
        };
    if let Some(cfg) = spec.and_then(|s| s.dns_config.as_ref()) {
        servers.extend(cfg.nameservers.clone().unwrap_or_default());
        searches.extend(cfg.searches.clone().unwrap_or_default());
        for o in cfg.options.iter().flatten() {
            let Some(name) = o.name.as_deref() else {
                continue;
            };
            // A dnsConfig option replaces one of the same name.
            options.retain(|x| x.split(':').next() != Some(name));
            options.push(match &o.value {
                Some(v) => format!("{name}:{v}"),
                None => name.to_string(),
            });
        }
    }
    servers.dedup();
    servers.truncate(MAX_NAMESERVERS);
    let mut seen = std::collections::HashSet::new();
    searches.retain(|s| seen.insert(s.clone()));
    searches.truncate(MAX_SEARCHES);
    let mut out = String::new();
    if !searches.is_empty() {
        let _ = writeln!(out, "search {}", searches.join(" "));
    }
    for s in &servers {
        let _ = writeln!(out, "nameserver {s}");
    }
    if !options.is_empty() {
        let _ = writeln!(out, "options {}", options.join(" "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web-1", "namespace": "shop"},
            "spec": spec,
        }))
        .expect("pod")
    }

    #[test]
    fn cluster_first_resolv_conf() {
        let p = pod(json!({"containers": []}));
        assert_eq!(
            resolv_conf(&p, "100.64.0.1", "nameserver 9.9.9.9\n"),
            "search shop.svc.cluster.local svc.cluster.local cluster.local\nnameserver 100.64.0.1\noptions ndots:5\n"
        );
    }

    #[test]
    fn default_none_and_dns_config() {
        let host = "domain corp\nnameserver 127.0.0.53\noptions edns0\n";
        let p = pod(json!({"containers": [], "dnsPolicy": "Default"}));
        assert_eq!(
            resolv_conf(&p, "100.64.0.1", host),
            "search corp\nnameserver 127.0.0.53\noptions edns0\n"
        );
        let p = pod(json!({"containers": [], "dnsPolicy": "None", "dnsConfig": {
            "nameservers": ["192.0.2.53"], "searches": ["a.example"],
            "options": [{"name": "ndots", "value": "2"}, {"name": "rotate"}]}}));
        assert_eq!(
            resolv_conf(&p, "100.64.0.1", host),
            "search a.example\nnameserver 192.0.2.53\noptions ndots:2 rotate\n"
        );
        let p = pod(json!({"containers": [], "dnsConfig": {
            "options": [{"name": "ndots", "value": "1"}]}}));
        assert!(resolv_conf(&p, "100.64.0.1", host).ends_with("options ndots:1\n"));
    }

    #[test]
    fn host_network_pods_use_the_node_resolvers_unless_asked() {
        let host = "nameserver 127.0.0.53\n";
        let p = pod(json!({"containers": [], "hostNetwork": true}));
        assert_eq!(
            resolv_conf(&p, "100.64.0.1", host),
            "nameserver 127.0.0.53\n"
        );
        let p = pod(json!({"containers": [], "hostNetwork": true,
            "dnsPolicy": "ClusterFirstWithHostNet"}));
        assert!(resolv_conf(&p, "100.64.0.1", host).contains("nameserver 100.64.0.1\n"));
    }

    #[test]
    fn hosts_with_subdomain_and_aliases() {
        let p = pod(
            json!({"containers": [], "hostname": "db-0", "subdomain": "db",
            "hostAliases": [{"ip": "10.1.2.3", "hostnames": ["foo.local", "bar.local"]}]}),
        );
        let h = hosts_file(&p, "100.64.0.9");
        assert!(h.starts_with("# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n"));
        assert!(
            h.contains("100.64.0.9\tdb-0.db.shop.svc.cluster.local\tdb-0\n"),
            "{h}"
        );
        assert!(h.contains("10.1.2.3\tfoo.local\tbar.local\n"), "{h}");
        let plain = hosts_file(&pod(json!({"containers": []})), "100.64.0.9");
        assert!(plain.ends_with("100.64.0.9\tweb-1\n"), "{plain}");
    }
}
