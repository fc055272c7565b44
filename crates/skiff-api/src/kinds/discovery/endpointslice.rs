//! discovery.k8s.io/v1 EndpointSlice: port defaults, address validation, the printer.

use serde_json::{json, Map, Value};

use crate::kinds::prelude::*;
use crate::validate::endpoints;

pub(crate) const KIND: Kind = Kind {
    info: ResourceInfo {
        group: "discovery.k8s.io",
        version: "v1",
        kind: "EndpointSlice",
        list_kind: "EndpointSliceList",
        plural: "endpointslices",
        singular: "endpointslice",
        namespaced: true,
        short_names: &[],
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
    for port in array(obj, "ports") {
        default(port, "protocol", json!("TCP"));
        default(port, "name", json!(""));
    }
}

fn validate(e: &mut Errs, obj: &Map<String, Value>, _old: Option<&Value>) {
    endpoints::endpoint_slice(e, obj);
}

#[rustfmt::skip]
const COLUMNS: &[Col] = &[
        NAME,
        ("AddressType", "string", 0, "addressType specifies the type of address carried by this EndpointSlice. All addresses in this slice must be the same type."),
        ("Ports", "string", 0, "ports specifies the list of network ports exposed by each endpoint in this slice."),
        ("Endpoints", "string", 0, "endpoints is a list of unique endpoints in this slice."),
        AGE,
];

fn cells(obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let (name, age) = name_age(obj, now);
    vec![
        json!(name),
        json!(s(obj, "/addressType")),
        json!(endpointslice_ports(obj)),
        json!(endpointslice_endpoints(obj)),
        json!(age),
    ]
}

fn endpointslice_ports(obj: &Value) -> String {
    let max = 3;
    let mut list = Vec::new();
    let mut more = false;
    let mut count = 0;
    for p in arr(obj, "/ports") {
        if list.len() < max {
            let num = match p.get("port").and_then(Value::as_i64) {
                Some(n) => n.to_string(),
                None => p
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("*")
                    .to_string(),
            };
            list.push(num);
        } else if list.len() == max {
            more = true;
        }
        count += 1;
    }
    list_with_more(list, more, count, max)
}

fn endpointslice_endpoints(obj: &Value) -> String {
    let max = 3;
    let mut list = Vec::new();
    let mut more = false;
    let mut count = 0;
    for e in arr(obj, "/endpoints") {
        for a in arr(e, "/addresses") {
            if list.len() < max {
                list.push(a.as_str().unwrap_or("").to_string());
            } else if list.len() == max {
                more = true;
            }
            count += 1;
        }
    }
    list_with_more(list, more, count, max)
}
