//! core/v1 Endpoints and discovery.k8s.io/v1 EndpointSlice validation (upstream
//! `validateEndpointAddress` / `validateEndpoints` with `ValidateNonSpecialIP`): an endpoint may
//! not be unspecified, loopback, link-local or link-local multicast, so a Service can never be
//! pointed at the node's own loopback or the link-local metadata range.

use std::net::{IpAddr, Ipv6Addr};

use serde_json::{Map, Value};

use super::{dns1123_label, Errs};

const MAX_SLICE_ENDPOINTS: usize = 1000;
const MAX_ADDRESSES: usize = 100;

/// Go's `net.ParseIP` view of an address: IPv4-mapped IPv6 counts as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn v6_link_local_unicast(ip: Ipv6Addr) -> bool {
    (ip.segments()[0] & 0xffc0) == 0xfe80
}

/// Go's `IsLinkLocalMulticast`: 224.0.0.0/24, ffX2::/16.
fn link_local_multicast(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.octets()[..3] == [224, 0, 0],
        IpAddr::V6(v6) => v6.octets()[0] == 0xff && (v6.octets()[1] & 0x0f) == 0x02,
    }
}

/// The reasons `ip` may not be an endpoint, in upstream's words (empty = fine).
fn special_ip_reasons(raw: &str, ip: IpAddr) -> Vec<String> {
    let ip = canonical(ip);
    let mut out = Vec::new();
    if ip.is_unspecified() {
        out.push(format!("may not be unspecified ({raw})"));
    }
    if ip.is_loopback() {
        out.push("may not be in the loopback range (127.0.0.0/8, ::1/128)".into());
    }
    let link_local = match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => v6_link_local_unicast(v6),
    };
    if link_local {
        out.push("may not be in the link-local range (169.254.0.0/16, fe80::/10)".into());
    }
    if link_local_multicast(ip) {
        out.push("may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)".into());
    }
    out
}

fn parse_ip(s: &str) -> Option<IpAddr> {
    s.parse::<IpAddr>().ok()
}

/// `ValidateNonSpecialIP` for one address at `field`.
fn non_special_ip(e: &mut Errs, field: &str, raw: &str) {
    match parse_ip(raw) {
        None => e.invalid_str(field, raw, "must be a valid IP address"),
        Some(ip) => {
            for msg in special_ip_reasons(raw, ip) {
                e.invalid_str(field, raw, &msg);
            }
        }
    }
}

fn port_number(e: &mut Errs, port: &Map<String, Value>, field: &str) {
    // A missing port decodes to 0 upstream.
    let p = port.get("port").and_then(Value::as_i64).unwrap_or(0);
    if !(1..=65535).contains(&p) {
        e.invalid(
            &format!("{field}.port"),
            &Value::from(p),
            "must be between 1 and 65535, inclusive",
        );
    }
}

fn endpoint_protocol(e: &mut Errs, port: &Map<String, Value>, field: &str) {
    match port.get("protocol").and_then(Value::as_str) {
        None | Some("") => e.required(&format!("{field}.protocol"), ""),
        Some("TCP" | "UDP" | "SCTP") => {}
        Some(other) => {
            e.not_supported(&format!("{field}.protocol"), other, &["SCTP", "TCP", "UDP"])
        }
    }
}

fn objects(v: Option<&Value>) -> impl Iterator<Item = (usize, &Map<String, Value>)> {
    v.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, x)| x.as_object().map(|m| (i, m)))
}

/// core/v1 Endpoints.
pub(crate) fn endpoints(e: &mut Errs, obj: &Map<String, Value>) {
    for (i, subset) in objects(obj.get("subsets")) {
        let f = format!("subsets[{i}]");
        let has_addresses = ["addresses", "notReadyAddresses"].iter().any(|k| {
            subset
                .get(*k)
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty())
        });
        if !has_addresses {
            e.required(&f, "must specify `addresses` or `notReadyAddresses`");
        }
        for key in ["addresses", "notReadyAddresses"] {
            for (j, addr) in objects(subset.get(key)) {
                let af = format!("{f}.{key}[{j}]");
                let ip = addr.get("ip").and_then(Value::as_str).unwrap_or("");
                non_special_ip(e, &format!("{af}.ip"), ip);
                if let Some(h) = addr
                    .get("hostname")
                    .and_then(Value::as_str)
                    .filter(|h| !h.is_empty())
                {
                    for msg in dns1123_label(h) {
                        e.invalid_str(&format!("{af}.hostname"), h, &msg);
                    }
                }
            }
        }
        let ports: Vec<_> = objects(subset.get("ports")).collect();
        for (k, port) in &ports {
            let pf = format!("{f}.ports[{k}]");
            match port.get("name").and_then(Value::as_str).unwrap_or("") {
                "" if ports.len() > 1 => e.required(&format!("{pf}.name"), ""),
                "" => {}
                name => {
                    for msg in dns1123_label(name) {
                        e.invalid_str(&format!("{pf}.name"), name, &msg);
                    }
                }
            }
            port_number(e, port, &pf);
            endpoint_protocol(e, port, &pf);
        }
    }
}

/// discovery.k8s.io/v1 EndpointSlice.
pub(crate) fn endpoint_slice(e: &mut Errs, obj: &Map<String, Value>) {
    let ty = obj.get("addressType").and_then(Value::as_str).unwrap_or("");
    match ty {
        "" => e.required("addressType", ""),
        "IPv4" | "IPv6" | "FQDN" => {}
        other => e.not_supported("addressType", other, &["FQDN", "IPv4", "IPv6"]),
    }
    let eps = obj.get("endpoints").and_then(Value::as_array);
    if let Some(list) = eps.filter(|l| l.len() > MAX_SLICE_ENDPOINTS) {
        e.too_many("endpoints", list.len(), MAX_SLICE_ENDPOINTS);
    }
    for (i, ep) in objects(obj.get("endpoints")) {
        let f = format!("endpoints[{i}].addresses");
        let addrs = ep.get("addresses").and_then(Value::as_array);
        match addrs.map_or(0, Vec::len) {
            0 => e.required(&f, "must contain at least 1 address"),
            n if n > MAX_ADDRESSES => e.too_many(&f, n, MAX_ADDRESSES),
            _ => {}
        }
        for (j, a) in addrs.into_iter().flatten().enumerate() {
            let af = format!("{f}[{j}]");
            let raw = a.as_str().unwrap_or("");
            match ty {
                "IPv4" => match parse_ip(raw) {
                    Some(IpAddr::V4(_)) => non_special_ip(e, &af, raw),
                    _ => e.invalid_str(&af, raw, "must be a valid IPv4 address"),
                },
                "IPv6" => match parse_ip(raw) {
                    Some(IpAddr::V6(v6)) if v6.to_ipv4_mapped().is_none() => {
                        non_special_ip(e, &af, raw)
                    }
                    _ => e.invalid_str(&af, raw, "must be a valid IPv6 address"),
                },
                _ => {}
            }
        }
    }
    for (k, port) in objects(obj.get("ports")) {
        let pf = format!("ports[{k}]");
        if let Some(name) = port
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
        {
            for msg in dns1123_label(name) {
                e.invalid_str(&format!("{pf}.name"), name, &msg);
            }
        }
        if port.get("port").is_some_and(|p| !p.is_null()) {
            port_number(e, port, &pf);
        }
        endpoint_protocol(e, port, &pf);
    }
}
