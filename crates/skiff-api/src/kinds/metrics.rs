//! metrics.k8s.io/v1beta1: NodeMetrics (`nodes`) and PodMetrics (`pods`), the resource metrics
//! `kubectl top` reads. Computed by the API server from the node agents' Summary API on every
//! get and list (never stored; see skiff-apiserver's `rest/metrics.rs`), like metrics-server.

use serde_json::{json, Value};

use crate::kinds::prelude::*;

/// Read-only: metrics are computed, never written.
const READ: &[&str] = &["get", "list"];

pub(crate) const NODE_METRICS: Kind = Kind {
    info: ResourceInfo {
        group: "metrics.k8s.io",
        version: "v1beta1",
        kind: "NodeMetrics",
        list_kind: "NodeMetricsList",
        plural: "nodes",
        singular: "nodemetrics",
        namespaced: false,
        short_names: &[],
        categories: &[],
        verbs: READ,
        subresources: &[],
    },
    table: Table {
        columns: COLUMNS,
        cells,
        ..Table::BASE
    },
    ..Kind::BASE
};

pub(crate) const POD_METRICS: Kind = Kind {
    info: ResourceInfo {
        group: "metrics.k8s.io",
        version: "v1beta1",
        kind: "PodMetrics",
        list_kind: "PodMetricsList",
        plural: "pods",
        singular: "podmetrics",
        namespaced: true,
        short_names: &[],
        categories: &[],
        verbs: READ,
        subresources: &[],
    },
    table: Table {
        columns: COLUMNS,
        cells,
        ..Table::BASE
    },
    ..Kind::BASE
};

// metrics-server's printer columns.
const COLUMNS: &[Col] = &[
    NAME,
    ("CPU", "string", 0, "CPU usage"),
    ("Memory", "string", 0, "Memory usage"),
    ("Window", "string", 0, "Time window of the measurement"),
];

fn cells(obj: &Value, _now: jiff::Timestamp) -> Vec<Value> {
    let name = s(obj, "/metadata/name").to_string();
    // A node's usage, or the sum over a pod's containers.
    let usages: Vec<&Value> = match obj.get("usage") {
        Some(u) => vec![u],
        None => arr(obj, "/containers")
            .iter()
            .filter_map(|c| c.get("usage"))
            .collect(),
    };
    let sum = |res: &str| -> u128 {
        usages
            .iter()
            .filter_map(|u| u.get(res).and_then(Value::as_str))
            .filter_map(|q| skiff_semantics::quantity::Quantity::parse(q).ok())
            .map(|q| {
                if res == "cpu" {
                    q.milli_value().max(0) as u128
                } else {
                    q.value().max(0) as u128
                }
            })
            .sum()
    };
    vec![
        json!(name),
        json!(format!("{}m", sum("cpu"))),
        json!(format!("{}Mi", sum("memory") / (1024 * 1024))),
        json!(s(obj, "/window")),
    ]
}
