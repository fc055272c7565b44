//! core/v1 Namespace: metadata.name label, finalizer and phase defaults, label-style names.

use serde_json::{json, Map, Value};

use crate::kinds::prelude::*;

pub(crate) const KIND: Kind = Kind {
    info: ResourceInfo {
        group: "",
        version: "v1",
        kind: "Namespace",
        list_kind: "NamespaceList",
        plural: "namespaces",
        singular: "namespace",
        namespaced: false,
        short_names: &["ns"],
        categories: &[],
        verbs: NS_VERBS,
        subresources: &["status"],
    },
    defaults,
    name_rule: NameRule::Label,
    table: Table {
        columns: COLUMNS,
        cells,
        ..Table::BASE
    },
    patch_root: Ty::Namespace,
    fields: FIELDS,
    field_error: not_supported_field_error,
    ..Kind::BASE
};

fn defaults(obj: &mut Map<String, Value>) {
    // SetDefaults_Namespace: the immutable kubernetes.io/metadata.name label.
    if let Some(name) = obj
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .map(str::to_string)
    {
        let labels = child(child(obj, "metadata"), "labels");
        labels.insert(
            skiff_semantics::wellknown::labels::METADATA_NAME.into(),
            json!(name),
        );
    }
    let spec = child(obj, "spec");
    default(spec, "finalizers", json!(["kubernetes"]));
    default(child(obj, "status"), "phase", json!("Active"));
}

const COLUMNS: &[Col] = &[
    NAME,
    ("Status", "string", 0, "The status of the namespace"),
    AGE,
];

fn cells(obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let (name, age) = name_age(obj, now);
    vec![json!(name), json!(s(obj, "/status/phase")), json!(age)]
}

/// Upstream's Namespace field labels.
const FIELDS: &[Field] = &[
    Field {
        label: "status.phase",
        value: |o| text(o, "/status/phase"),
    },
    NAME_FIELD,
];
