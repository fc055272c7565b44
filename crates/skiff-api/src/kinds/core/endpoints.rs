//! core/v1 Endpoints: port protocol default, address validation, the ENDPOINTS column.

use serde_json::{json, Map, Value};

use crate::kinds::prelude::*;
use crate::validate::endpoints;

pub(crate) const KIND: Kind = Kind {
    info: ResourceInfo {
        group: "",
        version: "v1",
        kind: "Endpoints",
        list_kind: "EndpointsList",
        plural: "endpoints",
        singular: "endpoints",
        namespaced: true,
        short_names: &["ep"],
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

fn defaults(obj: &mut Map<String, Value>) {
    for subset in array(obj, "subsets") {
        for port in array(subset, "ports") {
            default(port, "protocol", json!("TCP"));
        }
    }
}

fn validate(e: &mut Errs, obj: &Map<String, Value>, _old: Option<&Value>) {
    endpoints::endpoints(e, obj);
}

const COLUMNS: &[Col] = &[
    NAME,
    ("Endpoints", "string", 0, "Endpoints of the service"),
    AGE,
];

fn cells(obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let (name, age) = name_age(obj, now);
    vec![json!(name), json!(format_endpoints(obj)), json!(age)]
}

/// `formatEndpoints`: up to three `ip:port` entries then `+ N more...`.
fn format_endpoints(obj: &Value) -> String {
    let subsets = arr(obj, "/subsets");
    if subsets.is_empty() {
        return "<none>".into();
    }
    let max = 3;
    let mut list: Vec<String> = Vec::new();
    let mut more = false;
    let mut count = 0usize;
    for ss in subsets {
        let addrs = arr(ss, "/addresses");
        let ports = arr(ss, "/ports");
        if ports.is_empty() {
            count += addrs.len();
            for a in addrs {
                if list.len() == max {
                    more = true;
                    break;
                }
                list.push(s(a, "/ip").to_string());
            }
            continue;
        }
        for p in ports {
            count += addrs.len();
            for a in addrs {
                if list.len() == max {
                    more = true;
                    break;
                }
                let ip = s(a, "/ip");
                let port = n(p, "/port");
                // net.JoinHostPort brackets IPv6 addresses.
                list.push(if ip.contains(':') {
                    format!("[{ip}]:{port}")
                } else {
                    format!("{ip}:{port}")
                });
            }
        }
    }
    let ret = list.join(",");
    if more {
        format!("{ret} + {} more...", count - max)
    } else {
        ret
    }
}
