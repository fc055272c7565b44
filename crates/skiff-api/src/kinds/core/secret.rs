//! core/v1 Secret: type default and stringData merge, per-type key validation.

use serde_json::{json, Map, Value};

use crate::kinds::prelude::*;

pub(crate) const KIND: Kind = Kind {
    info: ResourceInfo {
        group: "",
        version: "v1",
        kind: "Secret",
        list_kind: "SecretList",
        plural: "secrets",
        singular: "secret",
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
    fields: FIELDS,
    field_error: not_supported_field_error,
    ..Kind::BASE
};

fn defaults(obj: &mut Map<String, Value>) {
    default(obj, "type", json!("Opaque"));
    merge_string_data(obj);
}

/// `Secret.stringData` is write-only: its values are merged into `data` (base64), winning over
/// `data` for the same key, and the field itself is never stored or returned (upstream does
/// this when converting to the internal type, on every write).
fn merge_string_data(obj: &mut Map<String, Value>) {
    use base64::Engine as _;
    let Some(Value::Object(string_data)) = obj.remove("stringData") else {
        return;
    };
    if string_data.is_empty() {
        return;
    }
    let data = child(obj, "data");
    for (k, v) in string_data {
        let plain = v.as_str().unwrap_or("");
        let encoded = base64::engine::general_purpose::STANDARD.encode(plain.as_bytes());
        data.insert(k, Value::String(encoded));
    }
}

fn validate(e: &mut Errs, obj: &Map<String, Value>, old: Option<&Value>) {
    let total = data_keys(e, obj, &["data", "stringData"]);
    if total > 1024 * 1024 {
        e.too_long("data", 1024 * 1024);
    }
    let ty = obj.get("type").and_then(Value::as_str).unwrap_or("Opaque");
    let has = |k: &str| {
        ["data", "stringData"]
            .iter()
            .any(|d| obj.get(*d).and_then(|m| m.get(k)).is_some())
    };
    match ty {
        "kubernetes.io/tls" => {
            for k in ["tls.crt", "tls.key"] {
                if !has(k) {
                    e.required(&format!("data[{k}]"), "");
                }
            }
        }
        "kubernetes.io/dockerconfigjson" | "kubernetes.io/dockercfg" | "kubernetes.io/ssh-auth" => {
            // Upstream requires exactly this key per type.
            let key = match ty {
                "kubernetes.io/dockerconfigjson" => ".dockerconfigjson",
                "kubernetes.io/dockercfg" => ".dockercfg",
                _ => "ssh-privatekey",
            };
            if !has(key) {
                e.required(&format!("data[{key}]"), "");
            }
        }
        "kubernetes.io/basic-auth" if !has("username") && !has("password") => {
            e.required("data[username]", "");
            e.required("data[password]", "");
        }
        "kubernetes.io/service-account-token" => {
            let sa = obj
                .get("metadata")
                .and_then(|m| m.pointer("/annotations/kubernetes.io~1service-account.name"));
            if sa.is_none() {
                e.required(
                    "metadata.annotations[kubernetes.io/service-account.name]",
                    "",
                );
            }
        }
        _ => {}
    }
    if let Some(old) = old {
        let old_ty = old.get("type").and_then(Value::as_str).unwrap_or("Opaque");
        if old_ty != ty {
            e.invalid_str("type", ty, "field is immutable");
        }
    }
    immutable_data(e, obj, old, &["data"]);
}

#[rustfmt::skip]
const COLUMNS: &[Col] = &[
        NAME,
        ("Type", "string", 0, "Used to facilitate programmatic handling of secret data. More info: https://kubernetes.io/docs/concepts/configuration/secret/#secret-types"),
        ("Data", "string", 0, "Data contains the secret data. Each key must consist of alphanumeric characters, '-', '_' or '.'. The serialized form of the secret data is a base64 encoded string, representing the arbitrary (possibly non-string) data value here. Described in https://tools.ietf.org/html/rfc4648#section-4"),
        AGE,
];

fn cells(obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let (name, age) = name_age(obj, now);
    let count = obj
        .get("data")
        .and_then(Value::as_object)
        .map_or(0, Map::len);
    vec![
        json!(name),
        json!(s(obj, "/type")),
        json!(count),
        json!(age),
    ]
}

/// Upstream's Secret field labels.
const FIELDS: &[Field] = &[
    Field {
        label: "type",
        value: |o| text(o, "/type"),
    },
    NAMESPACE_FIELD,
    NAME_FIELD,
];
