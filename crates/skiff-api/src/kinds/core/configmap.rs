//! core/v1 ConfigMap: data-key validation and the Data count column.

use serde_json::{json, Map, Value};

use crate::kinds::prelude::*;

pub(crate) const KIND: Kind = Kind {
    info: ResourceInfo {
        group: "",
        version: "v1",
        kind: "ConfigMap",
        list_kind: "ConfigMapList",
        plural: "configmaps",
        singular: "configmap",
        namespaced: true,
        short_names: &["cm"],
        categories: &[],
        verbs: FULL,
        subresources: &[],
    },
    validate,
    table: Table {
        columns: COLUMNS,
        cells,
        ..Table::BASE
    },
    ..Kind::BASE
};

fn validate(e: &mut Errs, obj: &Map<String, Value>, old: Option<&Value>) {
    let total = data_keys(e, obj, &["data", "binaryData"]);
    if total > 1024 * 1024 {
        e.too_long("", 1024 * 1024);
    }
    immutable_data(e, obj, old, &["data", "binaryData"]);
}

const COLUMNS: &[Col] = &[NAME, ("Data", "string", 0, "Data contains the configuration data. Each key must consist of alphanumeric characters, '-', '_' or '.'. Values with non-UTF-8 byte sequences must use the BinaryData field. The keys stored in Data must not overlap with the keys in the BinaryData field, this is enforced during validation process."), AGE];

fn cells(obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let (name, age) = name_age(obj, now);
    let count = obj
        .get("data")
        .and_then(Value::as_object)
        .map_or(0, Map::len)
        + obj
            .get("binaryData")
            .and_then(Value::as_object)
            .map_or(0, Map::len);
    vec![json!(name), json!(count), json!(age)]
}
