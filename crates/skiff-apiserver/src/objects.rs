//! Object helpers every layer shares: metadata accessors, the type-meta check, finalizers, and
//! the label/field selector and `includeObject` options read from a query.

use serde_json::{json, Map, Value};
use skiff_api::selector::{FieldSelector, LabelSelector};
use skiff_api::table::IncludeObject;
use skiff_api::{ApiError, ResourceInfo};

use crate::query::Query;
use crate::respond::ApiResult;

pub(crate) fn meta(obj: &Value) -> &Value {
    obj.get("metadata").unwrap_or(&Value::Null)
}

pub(crate) fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    meta(obj).get(field).and_then(Value::as_str)
}

pub(crate) fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.is_object() {
        *obj = json!({});
    }
    let root = obj.as_object_mut().expect("object ensured above");
    let m = root.entry("metadata").or_insert_with(|| json!({}));
    if !m.is_object() {
        *m = json!({});
    }
    m.as_object_mut().expect("object ensured above")
}

/// Sets apiVersion/kind when missing; 400 when they name another kind than the URL.
pub(crate) fn check_type_meta(info: &ResourceInfo, obj: &mut Value) -> ApiResult<()> {
    let Some(map) = obj.as_object_mut() else {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    };
    let want_av = info.api_version();
    let av = map.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = map.get("kind").and_then(Value::as_str).unwrap_or("");
    if (!av.is_empty() && av != want_av) || (!kind.is_empty() && kind != info.kind) {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({av}) does not match the expected API version ({want_av})"
        ))
        .with_kind_message(kind, info));
    }
    map.insert("apiVersion".into(), json!(want_av));
    map.insert("kind".into(), json!(info.kind));
    Ok(())
}

trait KindMessage {
    fn with_kind_message(self, kind: &str, info: &ResourceInfo) -> Self;
}
impl KindMessage for ApiError {
    fn with_kind_message(mut self, kind: &str, info: &ResourceInfo) -> Self {
        if !kind.is_empty() && kind != info.kind {
            self.message = format!(
                "the kind in the data ({kind}) does not match the expected kind ({})",
                info.kind
            );
        }
        self
    }
}

pub(crate) fn finalizers(obj: &Value) -> Vec<String> {
    meta(obj)
        .get("finalizers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The object without the fields every write changes (for "nothing changed" checks).
pub(crate) fn strip_for_compare(obj: &Value) -> Value {
    let mut o = obj.clone();
    let m = meta_mut(&mut o);
    m.remove("resourceVersion");
    m.remove("managedFields");
    o
}

pub(crate) fn include_object(q: &Query) -> IncludeObject {
    match q.get("includeObject") {
        Some("None") => IncludeObject::None,
        Some("Object") => IncludeObject::Object,
        _ => IncludeObject::Metadata,
    }
}

/// Selectors from the query; field labels are checked against the kind's selectable fields.
pub(crate) fn selectors(
    q: &Query,
    info: &ResourceInfo,
) -> ApiResult<(LabelSelector, FieldSelector)> {
    let label = LabelSelector::parse(q.get("labelSelector").unwrap_or(""))?;
    let field = FieldSelector::for_kind(q.get("fieldSelector").unwrap_or(""), info)?;
    Ok((label, field))
}

pub(crate) fn matches(obj: &Value, label: &LabelSelector, field: &FieldSelector) -> bool {
    (label.is_empty() || label.matches_object(obj)) && (field.is_empty() || field.matches(obj))
}
