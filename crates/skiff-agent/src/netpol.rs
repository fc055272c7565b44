//! NetworkPolicy enforcement on this node: reflects NetworkPolicies, Pods and Namespaces (all
//! namespaces), resolves selectors, named ports and ipBlocks into addresses and ports, and writes
//! the `skiff_net::netpol` table (one atomic `nft -f` per change, unchanged scripts skipped).
//!
//! Only this node's pods are isolated here (ingress and egress are both judged on the node of the
//! selected pod). Pod workers call [`Netpol::pod_sandbox_ready`] right after a pod's IP is known,
//! before its containers start, so a pod selected by a policy never runs unprotected. The table is
//! removed when the agent stops, and by `skiff reset`.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use skiff_net::netpol::{
    cidr_except, Direction, IpRange, NetpolModel, NetpolTable, PortEntry, RuleModel,
};
use skiff_net::proxy::Protocol;
use skiff_semantics::labels::label_selector_matches;

use crate::{AgentConfig, Result};

/// Coalescing window for bursts of events.
const DEBOUNCE: Duration = Duration::from_millis(20);
/// A pod announced by its worker is forgotten after this long if the API never shows it.
const ANNOUNCED_TTL: Duration = Duration::from_secs(120);

/// Filled once the enforcer runs; pod workers read it.
pub type NetpolSlot = Arc<OnceLock<Arc<Netpol>>>;

/// Deletes this data dir's policy table (for `skiff reset`).
pub fn remove_table(data_dir: &Path) -> Result<()> {
    Ok(skiff_net::netpol::remove_table(data_dir)?)
}

/// A pod as policies see it.
#[derive(Debug, Clone)]
struct PodInfo {
    namespace: String,
    labels: BTreeMap<String, String>,
    ip: Ipv4Addr,
    /// containerPort names: (name, protocol, port).
    ports: Vec<(String, Protocol, u16)>,
    local: bool,
}

impl PodInfo {
    fn from_pod(pod: &Pod, ip: Ipv4Addr, local: bool) -> Self {
        let ports = pod
            .spec
            .iter()
            .flat_map(|s| s.containers.iter())
            .flat_map(|c| c.ports.iter().flatten())
            .filter_map(|p| {
                let name = p.name.clone().filter(|n| !n.is_empty())?;
                let proto = Protocol::parse(p.protocol.as_deref())?;
                Some((name, proto, u16::try_from(p.container_port).ok()?))
            })
            .collect();
        PodInfo {
            namespace: pod.namespace().unwrap_or_default(),
            labels: pod.labels().clone(),
            ip,
            ports,
            local,
        }
    }
}

/// The node's enforcer.
pub struct Netpol {
    node: String,
    pods: Store<Pod>,
    policies: Store<NetworkPolicy>,
    namespaces: Store<Namespace>,
    synced: AtomicBool,
    /// Pods whose sandbox exists but whose IP the API may not show yet, by uid.
    announced: Mutex<HashMap<String, (PodInfo, Instant)>>,
    table: Mutex<Option<NetpolTable>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Netpol {
    /// Called by a pod worker once the sandbox has its IP, before any container starts: the
    /// pod's isolation is written before this returns (once the policy lists are complete).
    pub async fn pod_sandbox_ready(self: &Arc<Self>, pod: &Pod, ip: Ipv4Addr) {
        if pod.spec.as_ref().and_then(|s| s.host_network) == Some(true) {
            return;
        }
        let Some(uid) = pod.metadata.uid.clone() else {
            return;
        };
        lock(&self.announced).insert(uid, (PodInfo::from_pod(pod, ip, true), Instant::now()));
        if self.synced.load(Ordering::Acquire) {
            self.sync().await;
        }
    }

    /// Rebuilds the model from the reflectors and writes it if it changed.
    async fn sync(self: &Arc<Self>) {
        let this = self.clone();
        let res = tokio::task::spawn_blocking(move || {
            // Build under the table lock so the last write always reflects the newest state.
            let mut table = lock(&this.table);
            let Some(table) = table.as_mut() else {
                return Ok(false);
            };
            let model = this.model();
            table.apply(&model)
        })
        .await;
        match res {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::error!("network policy table: {e}"),
            Err(e) => tracing::error!("network policy sync task: {e}"),
        }
    }

    fn model(&self) -> NetpolModel {
        let mut pods: HashMap<String, PodInfo> = HashMap::new();
        for p in self.pods.state() {
            let Some(uid) = p.metadata.uid.clone() else {
                continue;
            };
            let spec = p.spec.as_ref();
            if spec.and_then(|s| s.host_network) == Some(true) {
                continue;
            }
            let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
            if matches!(phase, Some("Succeeded" | "Failed")) {
                continue;
            }
            let Some(ip) = p
                .status
                .as_ref()
                .and_then(|s| s.pod_ip.as_deref())
                .and_then(|ip| ip.parse::<Ipv4Addr>().ok())
            else {
                continue;
            };
            let local = spec.and_then(|s| s.node_name.as_deref()) == Some(self.node.as_str());
            pods.insert(uid, PodInfo::from_pod(&p, ip, local));
        }
        {
            let mut announced = lock(&self.announced);
            announced
                .retain(|uid, (_, at)| !pods.contains_key(uid) && at.elapsed() < ANNOUNCED_TTL);
            for (uid, (info, _)) in announced.iter() {
                pods.insert(uid.clone(), info.clone());
            }
        }
        let mut pods: Vec<PodInfo> = pods.into_values().collect();
        pods.sort_by_key(|p| p.ip);
        let namespaces: HashMap<String, BTreeMap<String, String>> = self
            .namespaces
            .state()
            .iter()
            .map(|n| {
                let mut labels = n.labels().clone();
                labels
                    .entry("kubernetes.io/metadata.name".into())
                    .or_insert_with(|| n.name_any());
                (n.name_any(), labels)
            })
            .collect();
        let mut policies = self.policies.state();
        policies.sort_by_key(|p| (p.namespace(), p.name_any()));
        build_model(&pods, &namespaces, &policies)
    }
}

fn build_model(
    pods: &[PodInfo],
    namespaces: &HashMap<String, BTreeMap<String, String>>,
    policies: &[Arc<NetworkPolicy>],
) -> NetpolModel {
    let mut model = NetpolModel::default();
    for pol in policies {
        let ns = pol.namespace().unwrap_or_default();
        let Some(spec) = pol.spec.as_ref() else {
            continue;
        };
        let selector = spec.pod_selector.clone().unwrap_or_default();
        let selected: Vec<&PodInfo> = pods
            .iter()
            .filter(|p| {
                p.local && p.namespace == ns && label_selector_matches(&selector, &p.labels)
            })
            .collect();
        if selected.is_empty() {
            continue;
        }
        let types: Vec<String> = match &spec.policy_types {
            Some(t) if !t.is_empty() => t.clone(),
            _ => {
                let mut t = vec!["Ingress".to_string()];
                if spec.egress.as_ref().is_some_and(|e| !e.is_empty()) {
                    t.push("Egress".into());
                }
                t
            }
        };
        let ips: Vec<Ipv4Addr> = selected.iter().map(|p| p.ip).collect();
        let base = format!("{ns}/{}", pol.name_any());
        if types.iter().any(|t| t == "Ingress") {
            model.ingress_isolated.extend(&ips);
            for (i, rule) in spec.ingress.iter().flatten().enumerate() {
                model.rules.push(RuleModel {
                    direction: Direction::Ingress,
                    name: format!("{base}#in{i}"),
                    pods: ips.clone(),
                    peers: peers(rule.from.as_deref(), &ns, pods, namespaces),
                    ports: ports(rule.ports.as_deref(), &selected),
                });
            }
        }
        if types.iter().any(|t| t == "Egress") {
            model.egress_isolated.extend(&ips);
            let all: Vec<&PodInfo> = pods.iter().collect();
            for (i, rule) in spec.egress.iter().flatten().enumerate() {
                model.rules.push(RuleModel {
                    direction: Direction::Egress,
                    name: format!("{base}#eg{i}"),
                    pods: ips.clone(),
                    peers: peers(rule.to.as_deref(), &ns, pods, namespaces),
                    ports: ports(rule.ports.as_deref(), &all),
                });
            }
        }
    }
    model
}

/// The addresses a rule's `from`/`to` allows; no peers means every address.
fn peers(
    list: Option<&[NetworkPolicyPeer]>,
    policy_ns: &str,
    pods: &[PodInfo],
    namespaces: &HashMap<String, BTreeMap<String, String>>,
) -> Vec<IpRange> {
    let list = match list {
        Some(l) if !l.is_empty() => l,
        _ => return vec![IpRange::ANY],
    };
    let mut out = Vec::new();
    for peer in list {
        if let Some(block) = &peer.ip_block {
            out.extend(
                cidr_except(&block.cidr, block.except.as_deref().unwrap_or_default())
                    .unwrap_or_default(),
            );
            continue;
        }
        if peer.pod_selector.is_none() && peer.namespace_selector.is_none() {
            continue;
        }
        for p in pods {
            let ns_ok = match &peer.namespace_selector {
                Some(sel) => namespaces
                    .get(&p.namespace)
                    .is_some_and(|labels| label_selector_matches(sel, labels)),
                None => p.namespace == policy_ns,
            };
            let pod_ok = peer
                .pod_selector
                .as_ref()
                .is_none_or(|sel| label_selector_matches(sel, &p.labels));
            if ns_ok && pod_ok {
                out.push(IpRange::single(p.ip));
            }
        }
    }
    out
}

/// The destinations . protocol . ports a rule allows; None = every port. Named ports resolve
/// against `dsts` (the selected pods for ingress, every pod for egress).
fn ports(list: Option<&[NetworkPolicyPort]>, dsts: &[&PodInfo]) -> Option<Vec<PortEntry>> {
    let list = list.filter(|l| !l.is_empty())?;
    let mut out = Vec::new();
    for p in list {
        let Some(protocol) = Protocol::parse(p.protocol.as_deref()) else {
            continue;
        };
        match &p.port {
            None => out.push(PortEntry {
                dst: IpRange::ANY,
                protocol,
                first_port: 0,
                last_port: u16::MAX,
            }),
            Some(IntOrString::Int(n)) => {
                let Ok(first) = u16::try_from(*n) else {
                    continue;
                };
                let last = p
                    .end_port
                    .and_then(|e| u16::try_from(e).ok())
                    .filter(|e| *e >= first)
                    .unwrap_or(first);
                out.push(PortEntry {
                    dst: IpRange::ANY,
                    protocol,
                    first_port: first,
                    last_port: last,
                });
            }
            Some(IntOrString::String(name)) => {
                for d in dsts {
                    for (pname, pproto, port) in &d.ports {
                        if pname == name && *pproto == protocol {
                            out.push(PortEntry {
                                dst: IpRange::single(d.ip),
                                protocol,
                                first_port: *port,
                                last_port: *port,
                            });
                        }
                    }
                }
            }
        }
    }
    Some(out)
}

/// (which stream, whether this event completes its initial list)
fn init<K>(
    e: std::result::Result<watcher::Event<K>, watcher::Error>,
    which: usize,
) -> std::result::Result<(usize, bool), watcher::Error> {
    e.map(|ev| (which, matches!(ev, watcher::Event::InitDone)))
}

/// Runs the enforcer until `stop` turns true, then removes the table. Errors are logged.
pub async fn run(
    client: Client,
    config: AgentConfig,
    slot: NetpolSlot,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let (pod_store, pod_writer) = reflector::store::<Pod>();
    let (pol_store, pol_writer) = reflector::store::<NetworkPolicy>();
    let (ns_store, ns_writer) = reflector::store::<Namespace>();
    let netpol = Arc::new(Netpol {
        node: config.node_name.clone(),
        pods: pod_store,
        policies: pol_store,
        namespaces: ns_store,
        synced: AtomicBool::new(false),
        announced: Mutex::new(HashMap::new()),
        table: Mutex::new(Some(NetpolTable::new(&config.data_dir))),
    });
    let _ = slot.set(netpol.clone());
    let pods = reflector::reflector(
        pod_writer,
        watcher(Api::<Pod>::all(client.clone()), watcher::Config::default()),
    )
    .map(|e| init(e, 0));
    let pols = reflector::reflector(
        pol_writer,
        watcher(
            Api::<NetworkPolicy>::all(client.clone()),
            watcher::Config::default(),
        ),
    )
    .map(|e| init(e, 1));
    let nss = reflector::reflector(
        ns_writer,
        watcher(Api::<Namespace>::all(client), watcher::Config::default()),
    )
    .map(|e| init(e, 2));
    let mut events = futures::stream::select(futures::stream::select(pods, pols), nss).boxed();
    let mut synced = [false; 3];
    let mut dirty = false;
    loop {
        tokio::select! {
            ev = events.next() => match ev {
                Some(Ok((which, init_done))) => {
                    if init_done {
                        synced[which] = true;
                    }
                    if synced == [true; 3] {
                        netpol.synced.store(true, Ordering::Release);
                        dirty = true;
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!("network policy watch: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                None => break,
            },
            _ = tokio::time::sleep(DEBOUNCE), if dirty => {
                dirty = false;
                netpol.sync().await;
            }
            _ = stop.changed() => {
                if *stop.borrow() {
                    break;
                }
            }
        }
    }
    let table = lock(&netpol.table).take();
    if let Some(t) = table {
        if let Err(e) = t.remove() {
            tracing::warn!("removing the network policy table: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(ns: &str, ip: &str, labels: &[(&str, &str)], local: bool) -> PodInfo {
        PodInfo {
            namespace: ns.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ip: ip.parse().unwrap(),
            ports: vec![("http".into(), Protocol::Tcp, 8080)],
            local,
        }
    }

    #[test]
    fn selectors_named_ports_and_namespaces_resolve() {
        let pods = vec![
            pod("a", "10.0.0.1", &[("app", "web")], true),
            pod("a", "10.0.0.2", &[("app", "client")], false),
            pod("b", "10.0.0.3", &[("app", "client")], false),
        ];
        let mut namespaces = HashMap::new();
        namespaces.insert("a".to_string(), BTreeMap::new());
        namespaces.insert(
            "b".to_string(),
            [("team".to_string(), "x".to_string())].into(),
        );
        let pol: NetworkPolicy = serde_json::from_value(json!({
            "metadata": {"namespace": "a", "name": "p"},
            "spec": {
                "podSelector": {"matchLabels": {"app": "web"}},
                "ingress": [
                    {"from": [{"podSelector": {"matchLabels": {"app": "client"}}}], "ports": [{"port": "http"}]},
                    {"from": [{"namespaceSelector": {"matchLabels": {"team": "x"}}}]},
                    {"from": [{"ipBlock": {"cidr": "192.168.0.0/16", "except": ["192.168.1.0/24"]}}],
                     "ports": [{"protocol": "UDP", "port": 53, "endPort": 60}]}
                ]
            }
        }))
        .unwrap();
        let m = build_model(&pods, &namespaces, &[Arc::new(pol)]);
        assert_eq!(
            m.ingress_isolated,
            vec!["10.0.0.1".parse::<Ipv4Addr>().unwrap()]
        );
        assert!(m.egress_isolated.is_empty());
        assert_eq!(m.rules.len(), 3);
        assert_eq!(
            m.rules[0].peers,
            vec![IpRange::single("10.0.0.2".parse().unwrap())]
        );
        assert_eq!(
            m.rules[0].ports.as_ref().unwrap()[0],
            PortEntry {
                dst: IpRange::single("10.0.0.1".parse().unwrap()),
                protocol: Protocol::Tcp,
                first_port: 8080,
                last_port: 8080
            }
        );
        assert_eq!(
            m.rules[1].peers,
            vec![IpRange::single("10.0.0.3".parse().unwrap())]
        );
        assert_eq!(m.rules[1].ports, None);
        assert_eq!(m.rules[2].peers.len(), 2);
        let p = m.rules[2].ports.as_ref().unwrap()[0];
        assert_eq!(
            (p.protocol, p.first_port, p.last_port),
            (Protocol::Udp, 53, 60)
        );
    }
}
