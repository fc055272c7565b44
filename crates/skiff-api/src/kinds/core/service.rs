//! core/v1 Service: type/port/IP-family defaults, spec validation, DNS-1035 names, the printer.

use serde_json::{json, Map, Value};

use std::collections::HashSet;

use crate::kinds::prelude::*;

pub(crate) const KIND: Kind = Kind {
    info: ResourceInfo {
        group: "",
        version: "v1",
        kind: "Service",
        list_kind: "ServiceList",
        plural: "services",
        singular: "service",
        namespaced: true,
        short_names: &["svc"],
        categories: ALL,
        verbs: FULL,
        subresources: &["status", "proxy"],
    },
    defaults,
    validate,
    name_rule: NameRule::Dns1035,
    table: Table {
        columns: COLUMNS,
        cells,
        ..Table::BASE
    },
    patch_root: Ty::Service,
    fields: FIELDS,
    field_error: not_supported_field_error,
    ..Kind::BASE
};

fn defaults(obj: &mut Map<String, Value>) {
    let spec = child(obj, "spec");
    default(spec, "type", json!("ClusterIP"));
    default(spec, "sessionAffinity", json!("None"));
    if spec.get("sessionAffinity") == Some(&json!("ClientIP")) {
        let cip = child(child(spec, "sessionAffinityConfig"), "clientIP");
        default(cip, "timeoutSeconds", json!(10800));
    }
    for p in array(spec, "ports") {
        default(p, "protocol", json!("TCP"));
        if p.get("targetPort")
            .is_none_or(|t| t.is_null() || t == &json!(0) || t == &json!(""))
        {
            if let Some(port) = p.get("port").cloned() {
                p.insert("targetPort".into(), port);
            }
        }
    }
    let ty = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
        .to_string();
    if ty == "NodePort" || ty == "LoadBalancer" {
        default(spec, "externalTrafficPolicy", json!("Cluster"));
    }
    if ty == "LoadBalancer" {
        default(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
    if ty != "ExternalName" {
        default(spec, "internalTrafficPolicy", json!("Cluster"));
        // The registry picks the families; skiff is single-stack IPv4.
        default(spec, "ipFamilyPolicy", json!("SingleStack"));
        default(spec, "ipFamilies", json!(["IPv4"]));
    }
}

fn validate(e: &mut Errs, obj: &Map<String, Value>, old: Option<&Value>) {
    spec(e, obj.get("spec"), old.and_then(|o| o.get("spec")));
}

fn spec(e: &mut Errs, spec: Option<&Value>, old: Option<&Value>) {
    let Some(spec) = spec else {
        e.required("spec.ports", "");
        return;
    };
    let ty = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP");
    if !["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"].contains(&ty) {
        e.not_supported(
            "spec.type",
            ty,
            &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
        );
    }
    let cluster_ip = spec.get("clusterIP").and_then(Value::as_str).unwrap_or("");
    let headless = cluster_ip == "None";
    let ports = spec.get("ports").and_then(Value::as_array);
    if ty == "ExternalName" {
        let en = spec
            .get("externalName")
            .and_then(Value::as_str)
            .unwrap_or("");
        if en.is_empty() {
            e.required("spec.externalName", "");
        } else {
            for m in dns1123_subdomain(en.trim_end_matches('.')) {
                e.invalid_str("spec.externalName", en, &m);
            }
        }
    } else if ports.is_none_or(Vec::is_empty) && !headless {
        e.required("spec.ports", "");
    }
    if let Some(sa) = spec.get("sessionAffinity").and_then(Value::as_str) {
        if !["ClientIP", "None"].contains(&sa) {
            e.not_supported("spec.sessionAffinity", sa, &["ClientIP", "None"]);
        }
    }
    if let Some(sel) = spec.get("selector") {
        labels(e, Some(sel), "spec.selector");
    }
    let ports = ports.cloned().unwrap_or_default();
    let mut names = HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        let f = format!("spec.ports[{i}]");
        let name = p.get("name").and_then(Value::as_str).unwrap_or("");
        if name.is_empty() {
            if ports.len() > 1 {
                e.required(&format!("{f}.name"), "");
            }
        } else {
            for m in dns1123_label(name) {
                e.invalid_str(&format!("{f}.name"), name, &m);
            }
            if !names.insert(name.to_string()) {
                e.duplicate(&format!("{f}.name"), name);
            }
        }
        match p.get("port") {
            None | Some(Value::Null) => e.required(&format!("{f}.port"), ""),
            v => port_range(e, v, &format!("{f}.port"), false),
        }
        protocol(e, p, &format!("{f}.protocol"));
        match p.get("targetPort") {
            Some(Value::Number(_)) => {
                port_range(e, p.get("targetPort"), &format!("{f}.targetPort"), false)
            }
            Some(Value::String(s)) if !s.is_empty() => {
                for m in port_name(s) {
                    e.invalid_str(&format!("{f}.targetPort"), s, &m);
                }
            }
            _ => {}
        }
        if let Some(np) = p
            .get("nodePort")
            .and_then(Value::as_i64)
            .filter(|n| *n != 0)
        {
            if ty == "ClusterIP" || ty == "ExternalName" {
                e.forbidden(
                    &format!("{f}.nodePort"),
                    &format!("may not be used when `type` is '{ty}'"),
                );
            } else if !(30000..=32767).contains(&np) {
                e.invalid(
                    &format!("{f}.nodePort"),
                    &Value::from(np),
                    "provided port is not in the valid range. The range of valid ports is 30000-32767",
                );
            }
        }
    }
    if let Some(old) = old {
        let old_ip = old.get("clusterIP").and_then(Value::as_str).unwrap_or("");
        let old_ty = old
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("ClusterIP");
        // Empty means "keep" (the server copies the allocated IP); changes to/from ExternalName
        // are allowed upstream.
        if !old_ip.is_empty()
            && !cluster_ip.is_empty()
            && cluster_ip != old_ip
            && ty != "ExternalName"
            && old_ty != "ExternalName"
        {
            e.invalid_str("spec.clusterIPs[0]", cluster_ip, "may not change once set");
        }
    }
}

#[rustfmt::skip]
const COLUMNS: &[Col] = &[
        NAME,
        ("Type", "string", 0, "type determines how the Service is exposed. Defaults to ClusterIP. Valid options are ExternalName, ClusterIP, NodePort, and LoadBalancer."),
        ("Cluster-IP", "string", 0, "clusterIP is the IP address of the service and is usually assigned randomly."),
        ("External-IP", "string", 0, "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service."),
        ("Port(s)", "string", 0, "The list of ports that are exposed by this service."),
        AGE,
        ("Selector", "string", 1, "Route service traffic to pods with label keys and values matching this selector. If empty or not present, the service is assumed to have an external process managing its endpoints, which Kubernetes will not modify. Only applies to types ClusterIP, NodePort, and LoadBalancer. Ignored if type is ExternalName. More info: https://kubernetes.io/docs/concepts/services-networking/service/"),
];

fn cells(obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let (name, age) = name_age(obj, now);
    let cluster_ip = arr(obj, "/spec/clusterIPs")
        .first()
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| "<none>".into());
    let ports = service_ports(obj);
    vec![
        json!(name),
        json!(s(obj, "/spec/type")),
        json!(cluster_ip),
        json!(service_external_ip(obj)),
        json!(if ports.is_empty() {
            "<none>".to_string()
        } else {
            ports
        }),
        json!(age),
        json!(format_labels(obj.pointer("/spec/selector"))),
    ]
}

fn service_ports(obj: &Value) -> String {
    arr(obj, "/spec/ports")
        .iter()
        .map(|p| {
            let port = n(p, "/port");
            let proto = match s(p, "/protocol") {
                "" => "TCP",
                other => other,
            };
            let node_port = n(p, "/nodePort");
            if node_port > 0 {
                format!("{port}:{node_port}/{proto}")
            } else {
                format!("{port}/{proto}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn service_external_ip(obj: &Value) -> String {
    let external: Vec<String> = arr(obj, "/spec/externalIPs")
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    match s(obj, "/spec/type") {
        "ClusterIP" | "NodePort" | "" => {
            if external.is_empty() {
                "<none>".into()
            } else {
                external.join(",")
            }
        }
        "LoadBalancer" => {
            let mut ips: Vec<String> = arr(obj, "/status/loadBalancer/ingress")
                .iter()
                .filter_map(|i| {
                    let ip = s(i, "/ip");
                    let host = s(i, "/hostname");
                    if !ip.is_empty() {
                        Some(ip.to_string())
                    } else if !host.is_empty() {
                        Some(host.to_string())
                    } else {
                        None
                    }
                })
                .collect();
            ips.extend(external);
            if ips.is_empty() {
                "<pending>".into()
            } else {
                ips.join(",")
            }
        }
        "ExternalName" => s(obj, "/spec/externalName").to_string(),
        _ => "<unknown>".into(),
    }
}

/// Upstream's Service field labels.
const FIELDS: &[Field] = &[
    NAMESPACE_FIELD,
    NAME_FIELD,
    Field {
        label: "spec.clusterIP",
        value: |o| text(o, "/spec/clusterIP"),
    },
    Field {
        label: "spec.type",
        value: |o| text(o, "/spec/type"),
    },
];
