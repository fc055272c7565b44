//! The agent side of the service proxy: reflects Services and EndpointSlices (all namespaces),
//! builds the `skiff_net::proxy` model and hands it to the [`Proxy`], whose debounce coalesces
//! bursts into single `nft -f` writes. The same reflectors feed the node's cluster DNS
//! ([`crate::dns`]). The table outlives the agent (a restarted agent keeps
//! serving until it has re-listed everything); [`remove_table`] is for `skiff reset`.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use skiff_net::proxy::{
    EndpointModel, Protocol, Proxy, ProxyConfig, ServiceModel, ServicePortModel,
};
use skiff_net::{NetConfig, PodNetwork};

use crate::{AgentConfig, Result};
use skiff_semantics::wellknown::labels;

/// Coalescing window for bursts of Service/EndpointSlice events.
const DEBOUNCE: Duration = Duration::from_millis(20);

/// Deletes this data dir's service table (for `skiff reset`; the agent never removes it).
pub fn remove_table(data_dir: &Path) -> Result<()> {
    Ok(skiff_net::proxy::remove_table(data_dir)?)
}

/// Runs the proxy until `stop` turns true. Errors are logged: a broken proxy must not take the
/// node agent down.
pub async fn run(
    client: Client,
    config: AgentConfig,
    pod_cidr: String,
    status: Arc<std::sync::OnceLock<skiff_net::proxy::ProxyStatus>>,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    if let Err(e) = run_inner(client, config, pod_cidr, status, stop).await {
        tracing::error!("service proxy stopped: {e}");
    }
}

async fn run_inner(
    client: Client,
    config: AgentConfig,
    pod_cidr: String,
    status: Arc<std::sync::OnceLock<skiff_net::proxy::ProxyStatus>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<()> {
    let net = PodNetwork::new(NetConfig {
        data_dir: config.data_dir.clone(),
        pod_cidr,
        cni_bin_dir: None,
    })?;
    let proxy = Proxy::new(ProxyConfig {
        data_dir: config.data_dir.clone(),
        bridge: net.bridge_name().to_string(),
        pod_cidr: net.pod_cidr(),
        debounce: DEBOUNCE,
    })?;
    tracing::info!(table = proxy.table(), "service proxy started");
    let _ = status.set(proxy.status());

    let (svc_store, svc_writer) = reflector::store::<Service>();
    let (eps_store, eps_writer) = reflector::store::<EndpointSlice>();
    // Cluster DNS answers from the same reflectors, on the pods' gateway address.
    let lookup = Arc::new(StoreLookup {
        services: svc_store.clone(),
        slices: eps_store.clone(),
        ready: AtomicBool::new(false),
    });
    let gateway = net.gateway();
    // Pods reach the API server through this node's relay on their gateway (see relay.rs).
    let api_relay = match &config.api_server {
        Some(upstream) => match crate::relay::bind(std::net::SocketAddr::from((gateway, 0))) {
            Ok(listener) => {
                let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
                tracing::info!(%gateway, port, %upstream, "API relay listening");
                tokio::spawn(crate::relay::serve(
                    listener,
                    upstream.clone(),
                    stop.clone(),
                ));
                Some((gateway, port)).filter(|(_, p)| *p != 0)
            }
            Err(e) => {
                tracing::error!(%gateway, "API relay: {e}");
                None
            }
        },
        None => None,
    };
    let upstreams = crate::dns::upstreams(
        &std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
        gateway,
    );
    let dns_lookup: Arc<dyn crate::dns::Lookup> = lookup.clone();
    let dns_stop = stop.clone();
    tokio::spawn(async move {
        if let Err(e) = crate::dns::serve(gateway, 53, dns_lookup, upstreams, dns_stop).await {
            tracing::error!("cluster DNS on {gateway}:53 stopped: {e}");
        }
    });
    let svc_stream = reflector::reflector(
        svc_writer,
        watcher(
            Api::<Service>::all(client.clone()),
            watcher::Config::default(),
        ),
    );
    let eps_stream = reflector::reflector(
        eps_writer,
        // Filtered by the service-name label client-side (build_model): no reliance on
        // existence selectors in the API server.
        watcher(
            Api::<EndpointSlice>::all(client),
            watcher::Config::default(),
        ),
    );
    let mut events = futures::stream::select(
        svc_stream.map(|e| {
            e.map(|ev| matches!(ev, watcher::Event::InitDone))
                .map(|d| (0, d))
        }),
        eps_stream.map(|e| {
            e.map(|ev| matches!(ev, watcher::Event::InitDone))
                .map(|d| (1, d))
        }),
    )
    .boxed();
    // Until both lists are complete the old table (from before a restart) stays: programming a
    // half-listed model would reject traffic to services whose slices were not seen yet.
    let mut synced = [false, false];
    loop {
        tokio::select! {
            ev = events.next() => match ev {
                Some(Ok((which, init_done))) => {
                    if init_done {
                        synced[which] = true;
                    }
                    if synced == [true, true] {
                        lookup.ready.store(true, Ordering::Relaxed);
                        proxy.update(build_model(&svc_store, &eps_store, &config.node_name, api_relay));
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!("service proxy watch: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                None => return Ok(()),
            },
            _ = stop.changed() => {
                if *stop.borrow() {
                    return Ok(());
                }
            }
        }
    }
}

/// DNS records from the proxy's reflectors.
struct StoreLookup {
    services: Store<Service>,
    slices: Store<EndpointSlice>,
    ready: AtomicBool,
}

impl crate::dns::Lookup for StoreLookup {
    fn ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    fn service(&self, namespace: &str, name: &str) -> Option<crate::dns::ServiceRecord> {
        let svc = self.services.get(&ObjectRef::new(name).within(namespace))?;
        let spec = svc.spec.as_ref()?;
        if spec.type_.as_deref() == Some("ExternalName") {
            return None;
        }
        let cluster_ip = match spec.cluster_ip.as_deref() {
            Some("None") => None,
            Some(ip) => Some(ip.parse().ok()?),
            None => return None,
        };
        let ports = spec
            .ports
            .iter()
            .flatten()
            .map(|p| {
                (
                    p.name.clone().unwrap_or_default(),
                    p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                    u16::try_from(p.port).unwrap_or(0),
                )
            })
            .collect();
        Some(crate::dns::ServiceRecord { cluster_ip, ports })
    }

    fn hostname(&self, namespace: &str, service: &str, hostname: &str) -> Vec<Ipv4Addr> {
        let mut ips: Vec<Ipv4Addr> = self
            .slices
            .state()
            .iter()
            .filter(|s| {
                s.namespace().as_deref() == Some(namespace)
                    && s.labels().get(labels::SERVICE_NAME).map(String::as_str) == Some(service)
            })
            .flat_map(|s| s.endpoints.clone())
            .filter(|e| {
                e.hostname
                    .as_deref()
                    .is_some_and(|h| h.eq_ignore_ascii_case(hostname))
            })
            .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) != Some(false))
            .flat_map(|e| e.addresses)
            .filter_map(|a| a.parse().ok())
            .collect();
        ips.sort();
        ips.dedup();
        ips
    }

    fn endpoints(&self, namespace: &str, name: &str) -> Vec<Ipv4Addr> {
        let mut ips: Vec<Ipv4Addr> = self
            .slices
            .state()
            .iter()
            .filter(|s| {
                s.namespace().as_deref() == Some(namespace)
                    && s.labels().get(labels::SERVICE_NAME).map(String::as_str) == Some(name)
            })
            .flat_map(|s| s.endpoints.clone())
            .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) != Some(false))
            .flat_map(|e| e.addresses)
            .filter_map(|a| a.parse().ok())
            .collect();
        ips.sort();
        ips.dedup();
        ips
    }
}

/// Services (ClusterIP/NodePort/LoadBalancer with a ClusterIP or NodePorts) joined with their
/// EndpointSlices by the `kubernetes.io/service-name` label and port name/protocol.
/// `api_relay` (this node's relay address) replaces the endpoints of `default/kubernetes`.
pub fn build_model(
    services: &Store<Service>,
    slices: &Store<EndpointSlice>,
    node_name: &str,
    api_relay: Option<(Ipv4Addr, u16)>,
) -> Vec<ServiceModel> {
    let mut by_service: HashMap<(String, String), Vec<std::sync::Arc<EndpointSlice>>> =
        HashMap::new();
    for s in slices.state() {
        if let Some(svc) = s.labels().get(labels::SERVICE_NAME) {
            by_service
                .entry((s.namespace().unwrap_or_default(), svc.clone()))
                .or_default()
                .push(s);
        }
    }
    let mut out = Vec::new();
    for svc in services.state() {
        let ns = svc.namespace().unwrap_or_default();
        let name = svc.name_any();
        let Some(spec) = svc.spec.as_ref() else {
            continue;
        };
        if spec.type_.as_deref() == Some("ExternalName") {
            continue;
        }
        let cluster_ip = spec
            .cluster_ip
            .as_deref()
            .and_then(|ip| ip.parse::<Ipv4Addr>().ok());
        let empty = Vec::new();
        let svc_slices = by_service
            .get(&(ns.clone(), name.clone()))
            .unwrap_or(&empty);
        let mut ports = Vec::new();
        for p in spec.ports.iter().flatten() {
            let (Some(protocol), Ok(port)) = (
                Protocol::parse(p.protocol.as_deref()),
                u16::try_from(p.port),
            ) else {
                continue;
            };
            let port_name = p.name.clone().unwrap_or_default();
            let node_port = p
                .node_port
                .and_then(|n| u16::try_from(n).ok())
                .filter(|n| *n != 0);
            let endpoints = match api_relay {
                // The API server may listen where pods cannot go (loopback): every node sends
                // the kubernetes Service to its own relay, which reaches it as the agent does.
                Some((ip, port)) if is_master_service(&ns, &name) && protocol == Protocol::Tcp => {
                    vec![EndpointModel {
                        ip,
                        port,
                        ready: true,
                        serving: true,
                        terminating: false,
                        local: true,
                    }]
                }
                _ => slice_endpoints(svc_slices, &port_name, protocol, node_name),
            };
            ports.push(ServicePortModel {
                name: port_name,
                protocol,
                port,
                node_port,
                endpoints,
            });
        }
        if ports.is_empty() || (cluster_ip.is_none() && ports.iter().all(|p| p.node_port.is_none()))
        {
            continue;
        }
        let session_affinity_timeout =
            (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
                spec.session_affinity_config
                    .as_ref()
                    .and_then(|c| c.client_ip.as_ref())
                    .and_then(|c| c.timeout_seconds)
                    .and_then(|t| u32::try_from(t).ok())
                    .unwrap_or(10800)
            });
        out.push(ServiceModel {
            namespace: ns,
            name,
            cluster_ip,
            ports,
            session_affinity_timeout,
            external_traffic_policy_local: spec.external_traffic_policy.as_deref() == Some("Local"),
        });
    }
    out
}

/// `default/kubernetes`, the API server's own Service.
fn is_master_service(namespace: &str, name: &str) -> bool {
    namespace == "default" && name == "kubernetes"
}

fn slice_endpoints(
    slices: &[std::sync::Arc<EndpointSlice>],
    port_name: &str,
    protocol: Protocol,
    node_name: &str,
) -> Vec<EndpointModel> {
    let mut out = Vec::new();
    for s in slices {
        if s.address_type != "IPv4" {
            continue;
        }
        let target = s.ports.iter().flatten().find(|p| {
            p.name.as_deref().unwrap_or("") == port_name
                && Protocol::parse(p.protocol.as_deref()) == Some(protocol)
        });
        let Some(port) = target
            .and_then(|p| p.port)
            .and_then(|p| u16::try_from(p).ok())
        else {
            continue;
        };
        for ep in &s.endpoints {
            // Upstream uses the first address only (the others are the same pod).
            let Some(ip) = ep
                .addresses
                .first()
                .and_then(|a| a.parse::<Ipv4Addr>().ok())
            else {
                continue;
            };
            let c = ep.conditions.as_ref();
            // Unset conditions: ready=true, serving=ready, terminating=false (discovery/v1).
            let ready = c.and_then(|c| c.ready).unwrap_or(true);
            let serving = c.and_then(|c| c.serving).unwrap_or(ready);
            let terminating = c.and_then(|c| c.terminating).unwrap_or(false);
            out.push(EndpointModel {
                ip,
                port,
                ready,
                serving,
                terminating,
                local: ep.node_name.as_deref() == Some(node_name),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::reflector::store::Writer;

    fn store<K>(objs: Vec<serde_json::Value>) -> Store<K>
    where
        K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + 'static,
    {
        let mut w: Writer<K> = Writer::default();
        let reader = w.as_reader();
        for o in objs {
            let obj: K = serde_json::from_value(o).unwrap();
            w.apply_watcher_event(&watcher::Event::Apply(obj));
        }
        reader
    }

    #[test]
    fn model_joins_slices_by_label_and_port_name() {
        let svcs = store::<Service>(vec![serde_json::json!({
            "metadata": {"namespace": "default", "name": "web"},
            "spec": {"type": "NodePort", "clusterIP": "10.43.0.10",
                     "sessionAffinity": "ClientIP",
                     "ports": [{"name": "http", "port": 80, "nodePort": 30080, "protocol": "TCP"}]}
        })]);
        let slices = store::<EndpointSlice>(vec![serde_json::json!({
            "metadata": {"namespace": "default", "name": "web-abc",
                         "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [
                {"addresses": ["100.64.3.2"], "conditions": {"ready": true}, "nodeName": "n1"},
                {"addresses": ["100.64.3.3"], "conditions": {"ready": false, "serving": true, "terminating": true}}
            ]
        })]);
        let m = build_model(&svcs, &slices, "n1", None);
        assert_eq!(m.len(), 1);
        let s = &m[0];
        assert_eq!(s.cluster_ip, Some(Ipv4Addr::new(10, 43, 0, 10)));
        assert_eq!(s.session_affinity_timeout, Some(10800));
        let p = &s.ports[0];
        assert_eq!((p.port, p.node_port), (80, Some(30080)));
        assert_eq!(p.endpoints.len(), 2);
        assert!(p.endpoints[0].ready && p.endpoints[0].local && p.endpoints[0].port == 8080);
        assert!(!p.endpoints[1].ready && p.endpoints[1].terminating && !p.endpoints[1].local);
    }

    #[test]
    fn kubernetes_service_goes_to_the_node_relay() {
        let svcs = store::<Service>(vec![
            serde_json::json!({
                "metadata": {"namespace": "default", "name": "kubernetes"},
                "spec": {"type": "ClusterIP", "clusterIP": "100.65.0.1",
                         "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}]}
            }),
            // Same name elsewhere: an ordinary Service.
            serde_json::json!({
                "metadata": {"namespace": "other", "name": "kubernetes"},
                "spec": {"type": "ClusterIP", "clusterIP": "100.65.0.9",
                         "ports": [{"name": "https", "port": 443, "protocol": "TCP"}]}
            }),
        ]);
        let slices = store::<EndpointSlice>(vec![serde_json::json!({
            "metadata": {"namespace": "default", "name": "kubernetes",
                         "labels": {"kubernetes.io/service-name": "kubernetes"}},
            "addressType": "IPv4",
            "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}],
            "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": true}}]
        })]);
        let relay = (Ipv4Addr::new(100, 64, 7, 1), 41000);
        let m = build_model(&svcs, &slices, "n1", Some(relay));
        let master = m.iter().find(|s| s.namespace == "default").unwrap();
        let eps = &master.ports[0].endpoints;
        assert_eq!(eps.len(), 1);
        assert_eq!((eps[0].ip, eps[0].port), relay);
        assert!(eps[0].ready);
        let other = m.iter().find(|s| s.namespace == "other").unwrap();
        assert!(other.ports[0].endpoints.is_empty());
        // Without a relay the slice's (loopback) address is all there is, and the proxy
        // never DNATs to loopback.
        let m = build_model(&svcs, &slices, "n1", None);
        let master = m.iter().find(|s| s.namespace == "default").unwrap();
        assert!(skiff_net::proxy::usable_endpoints(&master.ports[0].endpoints).is_empty());
    }
}
