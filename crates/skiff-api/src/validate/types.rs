//! Decode-time type checks of map-of-string fields (labels, annotations, ConfigMap/Secret data,
//! stringData, nodeSelector, Service selector, ...). Upstream decodes every body into Go structs,
//! so `data: {a: true}` fails there with a 400 before any validation; without this check such a
//! value would be stored as a JSON boolean and break every typed client reading it.

use serde_json::{Map, Value};

use super::{field_path, schema_for};
use crate::{ApiError, ResourceInfo};

/// Go's name for a JSON value in `UnmarshalTypeError`.
fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Follows `$ref`/single `allOf`, returning the schema and the Go struct name of a definition.
fn resolve<'a>(
    mut s: &'a Value,
    defs: &'a Map<String, Value>,
    mut name: String,
) -> (&'a Value, String) {
    for _ in 0..16 {
        if let Some(r) = s.get("$ref").and_then(Value::as_str) {
            let def = r.rsplit('/').next().unwrap_or("");
            match defs.get(def) {
                Some(d) => {
                    name = def.rsplit('.').next().unwrap_or(def).to_string();
                    s = d;
                }
                None => break,
            }
        } else if let Some([one]) = s.get("allOf").and_then(Value::as_array).map(Vec::as_slice) {
            s = one;
        } else {
            break;
        }
    }
    (s, name)
}

/// A `map[string]string` / `map[string][]byte` schema: its Go value type.
fn string_map_value(s: &Value) -> Option<&'static str> {
    let ap = s.get("additionalProperties")?;
    if ap.get("$ref").is_some() || ap.get("allOf").is_some() {
        return None;
    }
    if ap.get("type").and_then(Value::as_str) != Some("string") {
        return None;
    }
    Some(
        if ap.get("format").and_then(Value::as_str) == Some("byte") {
            "[]uint8"
        } else {
            "string"
        },
    )
}

struct Mismatch {
    got: &'static str,
    strukt: String,
    path: String,
    want: String,
}

fn walk(
    schema: &Value,
    defs: &Map<String, Value>,
    v: &Value,
    strukt: &str,
    path: &str,
    depth: usize,
) -> Option<Mismatch> {
    if depth > 64 || v.is_null() {
        return None;
    }
    let (s, strukt) = resolve(schema, defs, strukt.to_string());
    if s.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
        return None;
    }
    let mismatch = |got: &'static str, want: String| Mismatch {
        got,
        strukt: strukt.clone(),
        path: path.to_string(),
        want,
    };
    if let Some(val_ty) = string_map_value(s) {
        let Some(m) = v.as_object() else {
            return Some(mismatch(json_type(v), format!("map[string]{val_ty}")));
        };
        return m
            .values()
            .find(|x| !x.is_string() && !x.is_null())
            .map(|x| mismatch(json_type(x), val_ty.to_string()));
    }
    let join = |k: &str| field_path(path, k);
    match v {
        Value::Object(m) => {
            let props = s.get("properties").and_then(Value::as_object)?;
            for (k, val) in m {
                if let Some(ps) = props.get(k) {
                    if let Some(found) = walk(ps, defs, val, &strukt, &join(k), depth + 1) {
                        return Some(found);
                    }
                }
            }
            None
        }
        // Arrays add nothing to Go's field path.
        Value::Array(a) => {
            let items = s.get("items")?;
            a.iter()
                .find_map(|val| walk(items, defs, val, &strukt, path, depth + 1))
        }
        _ => None,
    }
}

/// The 400 upstream's decoder answers for a body whose map-of-string fields hold other types:
/// `ConfigMap in version "v1" cannot be handled as a ConfigMap: json: cannot unmarshal bool
/// into Go struct field ConfigMap.data of type string`.
pub fn check_types(info: &ResourceInfo, object: &Value) -> Result<(), ApiError> {
    let Some(schema) = schema_for(info) else {
        return Ok(());
    };
    let (root, defs) = (&schema.0, &schema.1);
    match walk(root, defs, object, info.kind, "", 0) {
        None => Ok(()),
        Some(m) => Err(ApiError::bad_request(format!(
            "{kind} in version {version:?} cannot be handled as a {kind}: json: cannot unmarshal \
             {got} into Go struct field {strukt}.{path} of type {want}",
            kind = info.kind,
            version = info.version,
            got = m.got,
            strukt = m.strukt,
            path = m.path,
            want = m.want,
        ))),
    }
}
