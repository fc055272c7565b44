//! The custom-resource strategy the generic verbs call when `Ctx::custom` is set: pruning and
//! `fieldValidation`, schema defaults and validation, generation, Table rows from printer
//! columns, `/scale` over the version's replica paths, field selectors over `selectableFields`
//! and conversion between served versions and the storage version.

use serde_json::{json, Value};
use skiff_api::selector::{FieldSelector, LabelSelector};
use skiff_api::table::IncludeObject;
use skiff_api::ApiError;

use super::{Conversion, ServedKind};
use crate::ctx::Ctx;
use crate::query::Query;
use crate::respond::ApiResult;
use crate::AppState;

/// Prunes unknown fields; `fieldValidation` decides what the removed ones mean: Strict → 400,
/// Warn (default) → warnings, Ignore → nothing.
pub(crate) fn prune(kind: &ServedKind, query: &Query, obj: &mut Value) -> ApiResult<Vec<String>> {
    let mut removed = prune_metadata(obj);
    if let Some(s) = &kind.schema {
        removed.extend(s.prune(obj));
    }
    let mode = query.get("fieldValidation").unwrap_or("Warn");
    if removed.is_empty() || mode.eq_ignore_ascii_case("Ignore") {
        return Ok(Vec::new());
    }
    let list: Vec<String> = removed
        .iter()
        .map(|f| format!("unknown field \"{}\"", f.trim_start_matches('.')))
        .collect();
    if mode.eq_ignore_ascii_case("Strict") {
        return Err(ApiError::bad_request(format!(
            "strict decoding error: {}",
            list.join(", ")
        )));
    }
    Ok(list)
}

/// ObjectMeta's fields (upstream drops any other key of a custom object's `metadata`).
const OBJECT_META_FIELDS: &[&str] = skiff_api::schema::OBJECT_META;

/// Removes unknown `metadata` keys; returns their paths (`.metadata.x`).
fn prune_metadata(obj: &mut Value) -> Vec<String> {
    let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
        return Vec::new();
    };
    let unknown: Vec<String> = meta
        .keys()
        .filter(|k| !OBJECT_META_FIELDS.contains(&k.as_str()))
        .cloned()
        .collect();
    for k in &unknown {
        meta.remove(k);
    }
    unknown
        .into_iter()
        .map(|k| format!(".metadata.{k}"))
        .collect()
}

/// A terminating CRD takes no new objects (upstream's 405).
pub(crate) fn check_create(ctx: &Ctx) -> ApiResult<()> {
    match &ctx.custom {
        Some(kind) if kind.terminating => Err(ApiError::method_not_allowed(
            "create not allowed while custom resource definition is terminating",
        )),
        _ => Ok(()),
    }
}

/// Schema `default`s.
pub(crate) fn defaults(kind: &ServedKind, obj: &mut Value) {
    if let Some(s) = &kind.schema {
        s.apply_defaults(obj);
    }
}

/// Schema validation (after ObjectMeta validation); 422 with the schema's causes.
pub(crate) fn validate(kind: &ServedKind, obj: &Value, old: Option<&Value>) -> ApiResult<()> {
    let Some(s) = &kind.schema else {
        return Ok(());
    };
    // `x-kubernetes-validations` rules run on skiff-cel (compiled programs cached by text).
    static RULES: std::sync::LazyLock<crate::cel_rules::CelRules> =
        std::sync::LazyLock::new(crate::cel_rules::CelRules::new);
    let causes = s.validate(obj, old, Some(&*RULES));
    if causes.is_empty() {
        return Ok(());
    }
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    Err(ApiError::invalid(
        kind.info.group,
        kind.info.kind,
        name,
        causes,
    ))
}

/// Upstream's CR strategy: any change outside metadata (and outside status when status is a
/// subresource) bumps `metadata.generation`.
pub(crate) fn next_generation(kind: &ServedKind, old: &Value, new: &Value) -> Option<i64> {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.as_object_mut() {
            m.remove("metadata");
            if kind.has_status() {
                m.remove("status");
            }
        }
        v
    };
    if strip(old) == strip(new) {
        return None;
    }
    let g = old
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    Some(g + 1)
}

/// A Table of custom objects: the version's printer columns, or Name/Age without any.
pub(crate) fn table(
    kind: &ServedKind,
    objects: &[Value],
    include: IncludeObject,
    list_metadata: Value,
    now: jiff::Timestamp,
) -> Value {
    let mut table = skiff_api::table::to_table(kind.info, objects, include, list_metadata, now);
    if kind.columns.is_empty() {
        return table;
    }
    table["columnDefinitions"] = Value::Array(
        kind.columns
            .iter()
            .map(|c| {
                json!({"name": c.name, "type": c.type_, "format": c.format,
                    "description": c.description, "priority": c.priority})
            })
            .collect(),
    );
    if let Some(rows) = table.get_mut("rows").and_then(Value::as_array_mut) {
        for (row, obj) in rows.iter_mut().zip(objects) {
            row["cells"] = Value::Array(skiff_api::schema::columns::cells(&kind.columns, obj, now));
        }
    }
    table
}

/// Label and field selectors: field labels are metadata.name, metadata.namespace and the
/// version's `selectableFields` (upstream's CR field label conversion).
pub(crate) fn selectors(kind: &ServedKind, q: &Query) -> ApiResult<(LabelSelector, FieldSelector)> {
    let label = LabelSelector::parse(q.get("labelSelector").unwrap_or(""))?;
    let text = q.get("fieldSelector").unwrap_or("");
    let field = FieldSelector::parse(text)?;
    for term in text.split(',').filter(|t| !t.trim().is_empty()) {
        let label = term
            .split(['=', '!'])
            .next()
            .unwrap_or("")
            .trim()
            .to_string();
        let known = label == "metadata.name"
            || label == "metadata.namespace"
            || kind.selectable.contains(&label);
        if !known {
            return Err(ApiError::bad_request(format!(
                "field label not supported: {label}"
            )));
        }
    }
    Ok((label, field))
}

/// The value at a `.a.b.c` path.
fn at<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = obj;
    for part in path.trim_start_matches('.').split('.') {
        if part.is_empty() {
            continue;
        }
        cur = cur.get(part)?;
    }
    Some(cur)
}

/// Sets the value at a `.a.b.c` path, creating objects on the way.
fn set_at(obj: &mut Value, path: &str, value: Value) {
    let parts: Vec<&str> = path
        .trim_start_matches('.')
        .split('.')
        .filter(|p| !p.is_empty())
        .collect();
    let Some((last, init)) = parts.split_last() else {
        return;
    };
    let mut cur = obj;
    for part in init {
        if !cur.is_object() {
            *cur = json!({});
        }
        let Some(m) = cur.as_object_mut() else { return };
        cur = m.entry(part.to_string()).or_insert_with(|| json!({}));
    }
    if !cur.is_object() {
        *cur = json!({});
    }
    if let Some(m) = cur.as_object_mut() {
        m.insert(last.to_string(), value);
    }
}

/// The autoscaling/v1 Scale of a custom object.
pub(crate) fn to_scale(kind: &ServedKind, obj: &Value) -> Value {
    let Some(paths) = &kind.scale else {
        return json!({});
    };
    let m = obj.get("metadata").cloned().unwrap_or_else(|| json!({}));
    let mut md = json!({});
    for f in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if let Some(v) = m.get(f) {
            md[f] = v.clone();
        }
    }
    let replicas = at(obj, &paths.spec_replicas)
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let current = at(obj, &paths.status_replicas)
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let mut status = json!({"replicas": current});
    if let Some(sel) = paths
        .label_selector
        .as_deref()
        .and_then(|p| at(obj, p))
        .and_then(Value::as_str)
    {
        status["selector"] = json!(sel);
    }
    json!({"kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": md,
        "spec": {"replicas": replicas}, "status": status})
}

/// Writes `replicas` at the version's `specReplicasPath`.
pub(crate) fn set_replicas(kind: &ServedKind, obj: &mut Value, replicas: i64) {
    if let Some(paths) = &kind.scale {
        set_at(obj, &paths.spec_replicas, json!(replicas));
    }
}

/// Converts objects of one CRD to `to` (an apiVersion): the None strategy rewrites apiVersion,
/// Webhook asks the CRD's conversion webhook for the objects not already there.
pub(crate) async fn convert(
    st: &AppState,
    kind: &ServedKind,
    objects: Vec<Value>,
    to: &str,
) -> ApiResult<Vec<Value>> {
    let at_target = |o: &Value| o.get("apiVersion").and_then(Value::as_str) == Some(to);
    if objects.iter().all(at_target) {
        return Ok(objects);
    }
    match kind.conversion {
        Conversion::None => Ok(objects
            .into_iter()
            .map(|mut o| {
                if let Some(m) = o.as_object_mut() {
                    m.insert("apiVersion".into(), json!(to));
                }
                o
            })
            .collect()),
        Conversion::Webhook => {
            // One review for every object not already at `to` (a whole list page at once).
            let pending: Vec<usize> = (0..objects.len())
                .filter(|i| !at_target(&objects[*i]))
                .collect();
            let request: Vec<Value> = pending.iter().map(|i| objects[*i].clone()).collect();
            let converted = crate::webhook::convert(st, &kind.crd, request, to).await?;
            if converted.len() != pending.len() {
                return Err(ApiError::internal(format!(
                    "conversion webhook for {} returned {} objects, expected {}",
                    kind.crd_name,
                    converted.len(),
                    pending.len()
                )));
            }
            let mut out = objects;
            for (i, mut c) in pending.into_iter().zip(converted) {
                // The webhook may not change what the server owns.
                if let (Some(cm), Some(om)) = (c.as_object_mut(), out[i].get("metadata")) {
                    cm.insert("metadata".into(), om.clone());
                }
                out[i] = c;
            }
            Ok(out)
        }
    }
}

impl Ctx {
    /// A stored object as the request's version sees it (built-ins served at one version:
    /// unchanged; at an extra version: the kind's conversion function).
    pub(crate) async fn at_request_version(&self, obj: Value) -> ApiResult<Value> {
        let Some(kind) = &self.custom else {
            return Ok(skiff_api::kinds::from_stored(self.info, obj));
        };
        let mut out = convert(&self.st, kind, vec![obj], &kind.info.api_version()).await?;
        out.pop()
            .ok_or_else(|| ApiError::internal("conversion returned no object"))
    }

    /// Stored objects as the request's version sees them (one conversion for all).
    pub(crate) async fn at_request_version_all(&self, objs: Vec<Value>) -> ApiResult<Vec<Value>> {
        match &self.custom {
            None => Ok(objs
                .into_iter()
                .map(|o| skiff_api::kinds::from_stored(self.info, o))
                .collect()),
            Some(kind) => convert(&self.st, kind, objs, &kind.info.api_version()).await,
        }
    }

    /// An object at the request's version as it is stored (the storage version).
    pub(crate) async fn at_storage_version(&self, obj: &Value) -> ApiResult<Value> {
        let Some(kind) = &self.custom else {
            return Ok(skiff_api::kinds::to_stored(self.info, obj.clone()));
        };
        let mut out = convert(
            &self.st,
            kind,
            vec![obj.clone()],
            &kind.storage_api_version(),
        )
        .await?;
        out.pop()
            .ok_or_else(|| ApiError::internal("conversion returned no object"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_read_and_write_nested_fields() {
        let mut o = json!({"spec": {"size": 3}});
        assert_eq!(at(&o, ".spec.size"), Some(&json!(3)));
        set_at(&mut o, ".spec.scale.replicas", json!(5));
        assert_eq!(o["spec"]["scale"]["replicas"], 5);
        assert_eq!(o["spec"]["size"], 3);
    }
}
