//! Storage key layout (like the upstream etcd layout): `/registry/<group|core>/<plural>/<ns>/<name>`
//! for namespaced resources and `/registry/<group|core>/<plural>/<name>` for cluster-scoped ones.
//! Values are the object's JSON without `metadata.resourceVersion`, which is the store revision.

use serde_json::Value;
use skiff_api::{ApiError, ResourceInfo};
use skiff_store::KeyValue;

fn group_dir(info: &ResourceInfo) -> &str {
    if info.group.is_empty() {
        "core"
    } else {
        info.group
    }
}

pub(crate) fn object_key(info: &ResourceInfo, ns: Option<&str>, name: &str) -> String {
    match ns {
        Some(ns) if info.namespaced => {
            format!("/registry/{}/{}/{ns}/{name}", group_dir(info), info.plural)
        }
        _ => format!("/registry/{}/{}/{name}", group_dir(info), info.plural),
    }
}

/// Prefix of a collection (ends with `/`); `ns` None = all namespaces.
pub(crate) fn collection_prefix(info: &ResourceInfo, ns: Option<&str>) -> String {
    match ns {
        Some(ns) if info.namespaced => {
            format!("/registry/{}/{}/{ns}/", group_dir(info), info.plural)
        }
        _ => format!("/registry/{}/{}/", group_dir(info), info.plural),
    }
}

/// Decodes a stored value and stamps its resourceVersion.
pub(crate) fn decode(kv: &KeyValue) -> Result<Value, ApiError> {
    let mut obj: Value = serde_json::from_slice(&kv.value).map_err(|e| {
        skiff_api::ApiError::internal(format!("corrupt stored object {}: {e}", kv.key))
    })?;
    set_rv(&mut obj, kv.mod_revision);
    Ok(obj)
}

pub(crate) fn set_rv(obj: &mut Value, rev: i64) {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("resourceVersion".into(), Value::String(rev.to_string()));
    }
}

/// Encodes an object for storage (without resourceVersion).
pub(crate) fn encode(obj: &Value) -> Vec<u8> {
    let mut obj = obj.clone();
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
    }
    serde_json::to_vec(&obj).unwrap_or_default()
}
