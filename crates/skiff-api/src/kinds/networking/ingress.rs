//! networking.k8s.io/v1 Ingress: HTTP routing rules for an Ingress controller (skiff ships none
//! yet): upstream's validation (hosts, paths and pathType, backends, TLS) and printer.

use serde_json::{json, Map, Value};

use crate::kinds::prelude::*;

pub(crate) const KIND: Kind = Kind {
    info: ResourceInfo {
        group: "networking.k8s.io",
        version: "v1",
        kind: "Ingress",
        list_kind: "IngressList",
        plural: "ingresses",
        singular: "ingress",
        namespaced: true,
        short_names: &["ing"],
        categories: &[],
        verbs: FULL,
        subresources: &["status"],
    },
    validate,
    table: Table {
        columns: COLUMNS,
        cells,
        ..Table::BASE
    },
    ..Kind::BASE
};

const WILDCARD_MSG: &str = "a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain, which must consist of lower case alphanumeric characters, '-' or '.' and end with an alphanumeric character (e.g. '*.example.com', regex used for validation is '\\*\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";

/// IsWildcardDNS1123Subdomain.
fn wildcard_subdomain(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    if s.len() > 253 {
        out.push(max_len_msg(253));
    }
    match s.strip_prefix("*.") {
        Some(rest) if rest.split('.').all(dns1123_label_ok) => {}
        _ => out.push(WILDCARD_MSG.into()),
    }
    out
}

/// A rule or TLS host: wildcard or plain DNS subdomain.
fn host(e: &mut Errs, h: &str, f: &str) {
    let msgs = if h.contains('*') {
        wildcard_subdomain(h)
    } else {
        dns1123_subdomain(h)
    };
    for m in msgs {
        e.invalid_str(f, h, &m);
    }
}

/// ValidateIngressSpec (create and update alike).
fn validate(e: &mut Errs, obj: &Map<String, Value>, _old: Option<&Value>) {
    let empty = json!({});
    let spec = obj.get("spec").unwrap_or(&empty);
    let rules = arr(spec, "/rules");
    let default_backend = spec.get("defaultBackend").filter(|b| !b.is_null());
    if rules.is_empty() && default_backend.is_none() {
        e.invalid(
            "spec",
            spec.get("rules").unwrap_or(&Value::Null),
            "either `defaultBackend` or `rules` must be specified",
        );
    }
    if let Some(b) = default_backend {
        backend(e, b, "spec.defaultBackend");
    }
    for (i, rule) in rules.iter().enumerate() {
        let f = format!("spec.rules[{i}]");
        let h = s(rule, "/host");
        if !h.is_empty() {
            if h.parse::<std::net::IpAddr>().is_ok() {
                e.invalid_str(
                    &format!("{f}.host"),
                    h,
                    "must be a DNS name, not an IP address",
                );
            }
            host(e, h, &format!("{f}.host"));
        }
        if let Some(http) = rule.get("http").filter(|v| !v.is_null()) {
            let paths = arr(http, "/paths");
            if paths.is_empty() {
                e.required(&format!("{f}.http.paths"), "");
            }
            for (j, p) in paths.iter().enumerate() {
                http_path(e, p, &format!("{f}.http.paths[{j}]"));
            }
        }
    }
    for (i, tls) in arr(spec, "/tls").iter().enumerate() {
        let f = format!("spec.tls[{i}]");
        for (j, h) in arr(tls, "/hosts").iter().enumerate() {
            host(e, h.as_str().unwrap_or(""), &format!("{f}.hosts[{j}]"));
        }
        let secret = s(tls, "/secretName");
        if !secret.is_empty() {
            for m in dns1123_subdomain(secret) {
                e.invalid_str(&format!("{f}.secretName"), secret, &m);
            }
        }
    }
    if let Some(class) = spec.get("ingressClassName").and_then(Value::as_str) {
        for m in dns1123_subdomain(class) {
            e.invalid_str("spec.ingressClassName", class, &m);
        }
    }
}

/// validateHTTPIngressPath.
fn http_path(e: &mut Errs, p: &Value, f: &str) {
    let Some(path_type) = p.get("pathType").and_then(Value::as_str) else {
        e.required(&format!("{f}.pathType"), "pathType must be specified");
        return;
    };
    let path = s(p, "/path");
    let pf = format!("{f}.path");
    match path_type {
        "Exact" | "Prefix" => {
            if !path.starts_with('/') {
                e.invalid_str(&pf, path, "must be an absolute path");
            }
            if !path.is_empty() {
                for seq in ["//", "/./", "/../", "%2f", "%2F"] {
                    if path.contains(seq) {
                        e.invalid_str(&pf, path, &format!("must not contain '{seq}'"));
                    }
                }
                for suffix in ["/..", "/."] {
                    if path.ends_with(suffix) {
                        e.invalid_str(&pf, path, &format!("cannot end with '{suffix}'"));
                    }
                }
            }
        }
        "ImplementationSpecific" => {
            if !path.is_empty() && !path.starts_with('/') {
                e.invalid_str(&pf, path, "must be an absolute path");
            }
        }
        other => e.not_supported(
            &format!("{f}.pathType"),
            other,
            &["Exact", "ImplementationSpecific", "Prefix"],
        ),
    }
    backend(
        e,
        p.get("backend").unwrap_or(&Value::Null),
        &format!("{f}.backend"),
    );
}

/// validateIngressBackend: a Service (name and port name xor number) or a resource.
fn backend(e: &mut Errs, b: &Value, f: &str) {
    let resource = b.get("resource").filter(|v| !v.is_null());
    let service = b.get("service").filter(|v| !v.is_null());
    match (resource, service) {
        (Some(_), Some(_)) => {
            e.invalid_str(f, "", "cannot set both resource and service backends");
        }
        (Some(r), None) => typed_ref(e, r, &format!("{f}.resource")),
        (None, Some(svc)) => {
            let name = s(svc, "/name");
            if name.is_empty() {
                e.required(&format!("{f}.service.name"), "");
            } else {
                for m in dns1035_label(name) {
                    e.invalid_str(&format!("{f}.service.name"), name, &m);
                }
            }
            let pname = s(svc, "/port/name");
            let number = n(svc, "/port/number");
            if !pname.is_empty() && number != 0 {
                e.invalid_str(f, "", "cannot set both port name & port number");
            } else if !pname.is_empty() {
                for m in port_name(pname) {
                    e.invalid_str(&format!("{f}.service.port.name"), pname, &m);
                }
            } else if number != 0 {
                if !(1..=65535).contains(&number) {
                    e.invalid(
                        &format!("{f}.service.port.number"),
                        &json!(number),
                        "must be between 1 and 65535, inclusive",
                    );
                }
            } else {
                e.required(f, "port name or number is required");
            }
        }
        (None, None) => e.invalid_str(f, "", "resource or service backend is required"),
    }
}

/// validateIngressTypedLocalObjectReference (also IngressClass parameters).
pub(super) fn typed_ref(e: &mut Errs, r: &Value, f: &str) {
    if let Some(group) = r.get("apiGroup").and_then(Value::as_str) {
        for m in dns1123_subdomain(group) {
            e.invalid_str(&format!("{f}.apiGroup"), group, &m);
        }
    }
    for (key, what) in [("kind", "kind is required"), ("name", "name is required")] {
        let v = s(r, &format!("/{key}"));
        if v.is_empty() {
            e.required(&format!("{f}.{key}"), what);
        } else {
            for m in path_segment(v) {
                e.invalid_str(&format!("{f}.{key}"), v, &m);
            }
        }
    }
}

#[rustfmt::skip]
const COLUMNS: &[Col] = &[
    NAME,
    ("Class", "string", 0, "The name of the IngressClass resource to use"),
    ("Hosts", "string", 0, "Hosts that incoming requests are matched against before the ingress rule"),
    ("Address", "string", 0, "Address is a list containing ingress points for the load-balancer"),
    ("Ports", "string", 0, "Ports of TLS configurations that open"),
    AGE,
];

fn cells(obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let (name, age) = name_age(obj, now);
    let class = obj
        .pointer("/spec/ingressClassName")
        .and_then(Value::as_str)
        .unwrap_or("<none>");
    // formatHosts: up to three hosts, "*" when no rule names one.
    let rules = arr(obj, "/spec/rules");
    let max = 3;
    let hosts: Vec<String> = rules
        .iter()
        .take(max)
        .map(|r| s(r, "/host"))
        .filter(|h| !h.is_empty())
        .map(str::to_string)
        .collect();
    let hosts = if hosts.is_empty() {
        "*".to_string()
    } else if rules.len() > max {
        format!("{} + {} more...", hosts.join(","), rules.len() - max)
    } else {
        hosts.join(",")
    };
    // ingressLoadBalancerStatusStringer (not wide): IPs/hostnames, cut at 16 characters.
    let mut addrs: Vec<&str> = Vec::new();
    for i in arr(obj, "/status/loadBalancer/ingress") {
        let ip = s(i, "/ip");
        let hn = s(i, "/hostname");
        if !ip.is_empty() {
            addrs.push(ip);
        } else if !hn.is_empty() {
            addrs.push(hn);
        }
    }
    let mut address = addrs.join(",");
    if address.chars().count() > 16 {
        address = format!("{}...", address.chars().take(13).collect::<String>());
    }
    let ports = if arr(obj, "/spec/tls").is_empty() {
        "80"
    } else {
        "80, 443"
    };
    vec![
        json!(name),
        json!(class),
        json!(hosts),
        json!(address),
        json!(ports),
        json!(age),
    ]
}
