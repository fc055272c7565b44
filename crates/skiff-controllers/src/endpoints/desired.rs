//! Pure computation of what a Service's EndpointSlices and Endpoints should contain, from the
//! Service and the pods in its namespace (upstream `endpointslice/utils.go` and the endpoints
//! controller's `syncService`). No API access here, so it is cheap to run on every pod event.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, ObjectReference, Pod, Service,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort as SlicePort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;

/// Endpoints per slice (upstream's default is 100, with a maximum of 1000; skiff keeps one slice
/// per port set, up to this many).
pub const MAX_ENDPOINTS_PER_SLICE: usize = 1000;
/// Addresses per legacy Endpoints object (upstream truncates there too).
pub const MAX_ENDPOINTS_ADDRESSES: usize = 1000;

/// The endpoints of one resolved port set (one EndpointSlice).
#[derive(Debug, Clone, PartialEq)]
pub struct SliceGroup {
    pub ports: Vec<SlicePort>,
    pub endpoints: Vec<Endpoint>,
}

/// Whether `pod` carries every label of the Service selector (equality-based; an empty
/// selector matches everything, like upstream).
pub fn selects(selector: &BTreeMap<String, String>, pod: &Pod) -> bool {
    skiff_semantics::labels::matches_set(selector, pod.labels())
}

pub fn is_pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn pod_ip(pod: &Pod) -> Option<&str> {
    pod.status
        .as_ref()
        .and_then(|s| s.pod_ip.as_deref())
        .filter(|ip| !ip.is_empty())
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded") | Some("Failed")
    )
}

/// The pod's IP when it can be an endpoint at all (`ShouldPodBeInEndpoints`, slice flavour:
/// terminating pods included).
fn eligible_ip(pod: &Pod) -> Option<&str> {
    if is_terminal(pod) {
        return None;
    }
    // Only IPv4 slices are produced. Addresses the API server refuses as endpoints (a
    // hostNetwork pod on a node whose IP is 127.0.0.1, skiff's default) are left out, so one
    // such pod cannot block the whole Service's update.
    pod_ip(pod).filter(|ip| {
        ip.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| {
            !(ip.is_unspecified()
                || ip.is_loopback()
                || ip.is_link_local()
                || ip.octets()[..3] == [224, 0, 0])
        })
    })
}

/// Resolves a Service targetPort for this pod: a number as-is, a name through the pod's
/// container ports (app containers and restartable init containers) with the same protocol.
fn resolve_port(pod: &Pod, target: Option<&IntOrString>, port: i32, protocol: &str) -> Option<i32> {
    match target {
        None => Some(port),
        Some(IntOrString::Int(n)) if *n == 0 => Some(port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => {
            if let Ok(n) = name.parse::<i32>() {
                return Some(n);
            }
            let spec = pod.spec.as_ref()?;
            let sidecars = spec
                .init_containers
                .iter()
                .flatten()
                .filter(|c| c.restart_policy.as_deref() == Some("Always"));
            spec.containers
                .iter()
                .chain(sidecars)
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| {
                    p.name.as_deref() == Some(name.as_str())
                        && p.protocol.as_deref().unwrap_or("TCP") == protocol
                })
                .map(|p| p.container_port)
        }
    }
}

/// The pod's resolved ports for the Service, in Service port order; ports the pod lacks are
/// left out (like upstream).
fn pod_ports(svc: &Service, pod: &Pod) -> Vec<SlicePort> {
    let ports = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .map(Vec::as_slice)
        .unwrap_or_default();
    ports
        .iter()
        .filter_map(|sp| {
            let protocol = sp.protocol.clone().unwrap_or_else(|| "TCP".into());
            let n = resolve_port(pod, sp.target_port.as_ref(), sp.port, &protocol)?;
            Some(SlicePort {
                name: Some(sp.name.clone().unwrap_or_default()),
                port: Some(n),
                protocol: Some(protocol),
                app_protocol: sp.app_protocol.clone(),
            })
        })
        .collect()
}

fn publish_not_ready(svc: &Service) -> bool {
    svc.spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false)
}

fn target_ref(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        name: pod.metadata.name.clone(),
        namespace: pod.metadata.namespace.clone(),
        uid: pod.metadata.uid.clone(),
        ..Default::default()
    }
}

/// The pod's hostname when it names itself under this Service (`spec.subdomain` = the Service,
/// as StatefulSet pods do): DNS then serves `<hostname>.<svc>.<ns>.svc` (upstream
/// `ShouldSetHostname`).
fn hostname(svc: &Service, pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let host = spec.hostname.clone().filter(|h| !h.is_empty())?;
    (spec.subdomain.is_some()
        && spec.subdomain == svc.metadata.name
        && pod.metadata.namespace == svc.metadata.namespace)
        .then_some(host)
}

fn node_name(pod: &Pod) -> Option<String> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .filter(|n| !n.is_empty())
}

/// Desired slice contents: endpoints grouped by resolved port set, each group sorted by IP so
/// comparisons with the stored slice are stable. No pods = one empty placeholder group.
pub fn slice_groups(svc: &Service, pods: &[&Pod]) -> Vec<SliceGroup> {
    let publish = publish_not_ready(svc);
    let mut groups: Vec<SliceGroup> = Vec::new();
    for pod in pods {
        let Some(ip) = eligible_ip(pod) else {
            continue;
        };
        let ports = pod_ports(svc, pod);
        let serving = is_pod_ready(pod);
        let terminating = pod.metadata.deletion_timestamp.is_some();
        let endpoint = Endpoint {
            addresses: vec![ip.to_string()],
            conditions: Some(EndpointConditions {
                // Terminating endpoints are never ready unless publishNotReadyAddresses.
                ready: Some(publish || (serving && !terminating)),
                serving: Some(serving),
                terminating: Some(terminating),
            }),
            hostname: hostname(svc, pod),
            node_name: node_name(pod),
            target_ref: Some(target_ref(pod)),
            ..Default::default()
        };
        match groups.iter_mut().find(|g| g.ports == ports) {
            Some(g) => g.endpoints.push(endpoint),
            None => groups.push(SliceGroup {
                ports,
                endpoints: vec![endpoint],
            }),
        }
    }
    for g in &mut groups {
        g.endpoints.sort_by(|a, b| a.addresses.cmp(&b.addresses));
        g.endpoints.truncate(MAX_ENDPOINTS_PER_SLICE);
    }
    groups.sort_by(|a, b| {
        b.endpoints
            .len()
            .cmp(&a.endpoints.len())
            .then_with(|| format!("{:?}", a.ports).cmp(&format!("{:?}", b.ports)))
    });
    if groups.is_empty() {
        groups.push(SliceGroup {
            ports: Vec::new(),
            endpoints: Vec::new(),
        });
    }
    groups
}

/// Desired legacy Endpoints subsets: ready pods in `addresses`, the rest in
/// `notReadyAddresses` (all ready with publishNotReadyAddresses); terminating pods are left out
/// unless publishNotReadyAddresses. Returns the subsets and whether they were truncated.
pub fn subsets(svc: &Service, pods: &[&Pod]) -> (Vec<EndpointSubset>, bool) {
    let publish = publish_not_ready(svc);
    let mut out: Vec<EndpointSubset> = Vec::new();
    let mut total = 0usize;
    let mut truncated = false;
    for pod in pods {
        let Some(ip) = eligible_ip(pod) else {
            continue;
        };
        if pod.metadata.deletion_timestamp.is_some() && !publish {
            continue;
        }
        if total >= MAX_ENDPOINTS_ADDRESSES {
            truncated = true;
            break;
        }
        total += 1;
        let ports: Vec<EndpointPort> = pod_ports(svc, pod)
            .into_iter()
            .map(|p| EndpointPort {
                name: p.name.filter(|n| !n.is_empty()),
                port: p.port.unwrap_or_default(),
                protocol: p.protocol,
                app_protocol: p.app_protocol,
            })
            .collect();
        if ports.is_empty() {
            continue;
        }
        let address = EndpointAddress {
            ip: ip.to_string(),
            hostname: hostname(svc, pod),
            node_name: node_name(pod),
            target_ref: Some(target_ref(pod)),
        };
        let ready = publish || is_pod_ready(pod);
        let subset = match out
            .iter_mut()
            .position(|s| s.ports.as_ref() == Some(&ports))
        {
            Some(i) => &mut out[i],
            None => {
                out.push(EndpointSubset {
                    ports: Some(ports),
                    ..Default::default()
                });
                let last = out.len() - 1;
                &mut out[last]
            }
        };
        let list = if ready {
            subset.addresses.get_or_insert_with(Vec::new)
        } else {
            subset.not_ready_addresses.get_or_insert_with(Vec::new)
        };
        list.push(address);
    }
    for s in &mut out {
        for list in [&mut s.addresses, &mut s.not_ready_addresses]
            .into_iter()
            .flatten()
        {
            list.sort_by(|a, b| a.ip.cmp(&b.ip));
        }
    }
    (out, truncated)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod_with_ip(ip: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "status": {"phase": "Running", "podIP": ip}
        }))
        .unwrap()
    }

    #[test]
    fn addresses_the_api_refuses_are_not_endpoints() {
        for ip in [
            "127.0.0.1",
            "169.254.1.1",
            "0.0.0.0",
            "224.0.0.5",
            "fe80::1",
        ] {
            assert_eq!(eligible_ip(&pod_with_ip(ip)), None, "{ip}");
        }
        assert_eq!(eligible_ip(&pod_with_ip("100.64.1.2")), Some("100.64.1.2"));
    }
}
