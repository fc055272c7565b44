//! core/v1 Node: allocatable defaults to capacity, the node printer.

use serde_json::{json, Map, Value};

use crate::kinds::prelude::*;

pub(crate) const KIND: Kind = Kind {
    info: ResourceInfo {
        group: "",
        version: "v1",
        kind: "Node",
        list_kind: "NodeList",
        plural: "nodes",
        singular: "node",
        namespaced: false,
        short_names: &["no"],
        categories: &[],
        verbs: FULL,
        subresources: &["status", "proxy"],
    },
    defaults,
    table: Table {
        columns: COLUMNS,
        cells,
        ..Table::BASE
    },
    patch_root: Ty::Node,
    fields: FIELDS,
    field_error: not_supported_field_error,
    ..Kind::BASE
};

fn defaults(obj: &mut Map<String, Value>) {
    let status = child(obj, "status");
    if status.get("allocatable").is_none_or(Value::is_null) {
        if let Some(cap) = status.get("capacity").cloned() {
            status.insert("allocatable".into(), cap);
        }
    }
}

#[rustfmt::skip]
const COLUMNS: &[Col] = &[
        NAME,
        ("Status", "string", 0, "The status of the node"),
        ("Roles", "string", 0, "The roles of the node"),
        AGE,
        ("Version", "string", 0, "Kubelet Version reported by the node."),
        ("Internal-IP", "string", 1, "List of addresses reachable to the node. Queried from cloud provider, if available."),
        ("External-IP", "string", 1, "List of addresses reachable to the node. Queried from cloud provider, if available."),
        ("OS-Image", "string", 1, "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy))."),
        ("Kernel-Version", "string", 1, "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64)."),
        ("Container-Runtime", "string", 1, "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2)."),
];

fn cells(obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let (name, age) = name_age(obj, now);
    node_cells(obj, name, age)
}

fn node_cells(obj: &Value, name: String, age: String) -> Vec<Value> {
    let conds = arr(obj, "/status/conditions");
    let mut status: Vec<String> = Vec::new();
    if let Some(c) = conds.iter().find(|c| s(c, "/type") == "Ready") {
        status.push(if s(c, "/status") == "True" {
            "Ready".into()
        } else {
            "NotReady".into()
        });
    }
    if status.is_empty() {
        status.push("Unknown".into());
    }
    if obj.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        status.push("SchedulingDisabled".into());
    }
    let mut roles: Vec<String> = Vec::new();
    if let Some(labels) = obj.pointer("/metadata/labels").and_then(Value::as_object) {
        for (k, v) in labels {
            if let Some(role) = k.strip_prefix(skiff_semantics::wellknown::labels::NODE_ROLE_PREFIX)
            {
                if !role.is_empty() {
                    roles.push(role.to_string());
                }
            } else if k == skiff_semantics::wellknown::labels::ROLE {
                if let Some(v) = v.as_str().filter(|v| !v.is_empty()) {
                    roles.push(v.to_string());
                }
            }
        }
    }
    roles.sort();
    roles.dedup();
    let roles = if roles.is_empty() {
        "<none>".to_string()
    } else {
        roles.join(",")
    };
    let address = |ty: &str| {
        arr(obj, "/status/addresses")
            .iter()
            .find(|a| s(a, "/type") == ty)
            .map(|a| s(a, "/address").to_string())
            .unwrap_or_else(|| "<none>".into())
    };
    let or_unknown = |v: &str| {
        if v.is_empty() {
            "<unknown>".to_string()
        } else {
            v.to_string()
        }
    };
    vec![
        json!(name),
        json!(status.join(",")),
        json!(roles),
        json!(age),
        json!(s(obj, "/status/nodeInfo/kubeletVersion")),
        json!(address("InternalIP")),
        json!(address("ExternalIP")),
        json!(or_unknown(s(obj, "/status/nodeInfo/osImage"))),
        json!(or_unknown(s(obj, "/status/nodeInfo/kernelVersion"))),
        json!(or_unknown(s(
            obj,
            "/status/nodeInfo/containerRuntimeVersion"
        ))),
    ]
}

/// Upstream's Node field labels (no `metadata.namespace`: Node has its own conversion func).
const FIELDS: &[Field] = &[
    NAME_FIELD,
    Field {
        label: "spec.unschedulable",
        value: |o| boolean(o, "/spec/unschedulable"),
    },
];
