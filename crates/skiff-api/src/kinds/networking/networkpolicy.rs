//! networking.k8s.io/v1 NetworkPolicy: which traffic selected pods may receive and send, enforced by each node.

use serde_json::{json, Map, Value};

use crate::kinds::prelude::*;

pub(crate) const KIND: Kind = Kind {
    info: ResourceInfo {
        group: "networking.k8s.io",
        version: "v1",
        kind: "NetworkPolicy",
        list_kind: "NetworkPolicyList",
        plural: "networkpolicies",
        singular: "networkpolicy",
        namespaced: true,
        short_names: &["netpol"],
        categories: &[],
        verbs: FULL,
        subresources: &[],
    },
    defaults,
    validate,
    table: Table {
        columns: COLUMNS,
        cells,
        ..Table::BASE
    },
    ..Kind::BASE
};

/// SetDefaults_NetworkPolicy(Port): protocol TCP; no policyTypes means Ingress, plus Egress
/// when egress rules are present.
fn defaults(obj: &mut Map<String, Value>) {
    let spec = child(obj, "spec");
    default(spec, "podSelector", json!({}));
    for dir in ["ingress", "egress"] {
        for rule in array(spec, dir) {
            for port in array(rule, "ports") {
                default(port, "protocol", json!("TCP"));
            }
        }
    }
    let has_types = spec
        .get("policyTypes")
        .and_then(Value::as_array)
        .is_some_and(|t| !t.is_empty());
    if !has_types {
        let egress = spec
            .get("egress")
            .and_then(Value::as_array)
            .is_some_and(|e| !e.is_empty());
        let mut types = vec![json!("Ingress")];
        if egress {
            types.push(json!("Egress"));
        }
        spec.insert("policyTypes".into(), Value::Array(types));
    }
}

const PORT_NUM_MSG: &str = "must be between 1 and 65535, inclusive";
const CIDR_MSG: &str = "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)";

/// ValidateNetworkPolicySpec.
fn validate(e: &mut Errs, obj: &Map<String, Value>, _old: Option<&Value>) {
    let empty = json!({});
    let spec = obj.get("spec").unwrap_or(&empty);
    if let Some(sel) = spec.get("podSelector").filter(|s| s.is_object()) {
        label_selector(e, sel, "spec.podSelector");
    }
    for (i, rule) in arr(spec, "/ingress").iter().enumerate() {
        let f = format!("spec.ingress[{i}]");
        for (j, port) in arr(rule, "/ports").iter().enumerate() {
            policy_port(e, port, &format!("{f}.ports[{j}]"));
        }
        for (j, peer) in arr(rule, "/from").iter().enumerate() {
            policy_peer(e, peer, &format!("{f}.from[{j}]"));
        }
    }
    for (i, rule) in arr(spec, "/egress").iter().enumerate() {
        let f = format!("spec.egress[{i}]");
        for (j, peer) in arr(rule, "/to").iter().enumerate() {
            policy_peer(e, peer, &format!("{f}.to[{j}]"));
        }
        for (j, port) in arr(rule, "/ports").iter().enumerate() {
            policy_port(e, port, &format!("{f}.ports[{j}]"));
        }
    }
    let types = arr(spec, "/policyTypes");
    if types.len() > 2 {
        e.invalid(
            "spec.policyTypes",
            &Value::Array(types.to_vec()),
            "may not specify more than two policyTypes",
        );
        return;
    }
    for (i, t) in types.iter().enumerate() {
        let t = t.as_str().unwrap_or("");
        if t != "Ingress" && t != "Egress" {
            e.not_supported(&format!("spec.policyTypes[{i}]"), t, &["Ingress", "Egress"]);
        }
    }
}

/// ValidateNetworkPolicyPort.
fn policy_port(e: &mut Errs, port: &Value, f: &str) {
    if let Some(p) = port.get("protocol").and_then(Value::as_str) {
        if !["TCP", "UDP", "SCTP"].contains(&p) {
            e.not_supported(&format!("{f}.protocol"), p, &["TCP", "UDP", "SCTP"]);
        }
    }
    let end = port.get("endPort").and_then(Value::as_i64);
    match port.get("port") {
        Some(Value::Number(n)) => {
            let n = n.as_i64().unwrap_or(0);
            if !(1..=65535).contains(&n) {
                e.invalid(&format!("{f}.port"), &json!(n), PORT_NUM_MSG);
            }
            if let Some(end) = end {
                if end < n {
                    e.invalid(
                        &format!("{f}.endPort"),
                        &json!(n),
                        "must be greater than or equal to `port`",
                    );
                }
                if !(1..=65535).contains(&end) {
                    e.invalid(&format!("{f}.endPort"), &json!(end), PORT_NUM_MSG);
                }
            }
        }
        Some(Value::String(name)) => {
            if let Some(end) = end {
                e.invalid(
                    &format!("{f}.endPort"),
                    &json!(end),
                    "may not be specified when `port` is non-numeric",
                );
            }
            for m in port_name(name) {
                e.invalid_str(&format!("{f}.port"), name, &m);
            }
        }
        _ => {
            if let Some(end) = end {
                e.invalid(
                    &format!("{f}.endPort"),
                    &json!(end),
                    "may not be specified when `port` is not specified",
                );
            }
        }
    }
}

/// ValidateNetworkPolicyPeer.
fn policy_peer(e: &mut Errs, peer: &Value, f: &str) {
    let mut n = 0;
    for key in ["podSelector", "namespaceSelector"] {
        if let Some(sel) = peer.get(key).filter(|v| !v.is_null()) {
            n += 1;
            label_selector(e, sel, &format!("{f}.{key}"));
        }
    }
    let block = peer.get("ipBlock").filter(|v| !v.is_null());
    if let Some(b) = block {
        n += 1;
        ip_block(e, b, &format!("{f}.ipBlock"));
    }
    if n == 0 {
        e.required(f, "must specify a peer");
    } else if n > 1 && block.is_some() {
        e.forbidden(f, "may not specify both ipBlock and another peer");
    }
}

/// An IPv4 or IPv6 CIDR: (address bits, prefix length, address width).
fn parse_cidr(s: &str) -> Option<(u128, u32, u32)> {
    let (ip, len) = s.split_once('/')?;
    let len: u32 = len.parse().ok()?;
    let (bits, width) = match ip.parse::<std::net::IpAddr>().ok()? {
        std::net::IpAddr::V4(a) => (u128::from(u32::from(a)), 32),
        std::net::IpAddr::V6(a) => (u128::from(a), 128),
    };
    (len <= width).then_some((bits, len, width))
}

fn cidr_contains(outer: (u128, u32, u32), ip: (u128, u32, u32)) -> bool {
    if outer.2 != ip.2 {
        return false;
    }
    let shift = outer.2 - outer.1;
    shift >= 128 || (outer.0 >> shift) == (ip.0 >> shift)
}

/// ValidateIPBlock: the CIDR, and every `except` a strict subset of it.
fn ip_block(e: &mut Errs, b: &Value, f: &str) {
    let cidr = b.get("cidr").and_then(Value::as_str).unwrap_or("");
    if cidr.is_empty() {
        e.required(&format!("{f}.cidr"), "");
        return;
    }
    let Some(outer) = parse_cidr(cidr) else {
        e.invalid_str(&format!("{f}.cidr"), cidr, CIDR_MSG);
        return;
    };
    for (i, x) in arr(b, "/except").iter().enumerate() {
        let xs = x.as_str().unwrap_or("");
        let fx = format!("{f}.except[{i}]");
        let Some(inner) = parse_cidr(xs) else {
            e.invalid_str(&fx, xs, CIDR_MSG);
            continue;
        };
        if !cidr_contains(outer, inner) || outer.1 >= inner.1 {
            e.invalid_str(&fx, xs, "must be a strict subset of `cidr`");
        }
    }
}

#[rustfmt::skip]
const COLUMNS: &[Col] = &[
    NAME,
    ("Pod-Selector", "string", 0, "podSelector selects the pods to which this NetworkPolicy object applies. The array of rules is applied to any pods selected by this field. An empty selector matches all pods in this namespace. Multiple network policies can select the same set of pods. In this case, the ingress rules for each are combined additively. This field is NOT optional and follows standard label selector semantics. An empty podSelector matches all pods in this namespace."),
    AGE,
];

fn cells(obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let (name, age) = name_age(obj, now);
    let mut sel = selector_string(obj.pointer("/spec/podSelector"));
    if sel.is_empty() {
        sel = "<none>".into();
    }
    vec![json!(name), json!(sel), json!(age)]
}
