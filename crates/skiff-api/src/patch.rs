//! The three patch types: JSON patch (RFC 6902), JSON merge patch (RFC 7386) and strategic
//! merge patch (lists merged by the merge keys of the built-in types, with `$patch`,
//! `$setElementOrder/…`, `$deleteFromPrimitiveList/…` and `$retainKeys` directives).
//!
//! The strategic merge follows `k8s.io/apimachinery/pkg/util/strategicpatch` as the API server
//! runs it (`MergeParallelList` and `IgnoreUnmatchedNulls` on): nulls delete keys, keyed lists
//! merge item by item, and the resulting order follows `$setElementOrder` (or the patch) with
//! items only the server knows kept at their original relative positions.

pub(crate) mod custom;
pub(crate) mod schema;

use serde_json::{json, Map, Value};

use schema::{Field, ListKind, Ty};

use crate::{ApiError, ResourceInfo};

/// Upstream's cap on the operations of one JSON patch (`maxJSONPatchOperations`).
pub const MAX_JSON_PATCH_OPERATIONS: usize = 10_000;
/// Upstream's `JSONPatchMaxCopyBytes`: the total size `copy` operations may add.
pub const JSON_PATCH_MAX_COPY_BYTES: usize = 3 * 1024 * 1024;
/// The largest document a patch may build: etcd's request limit (the store refuses more).
pub const JSON_PATCH_MAX_DOC_BYTES: usize = 1536 * 1024;

/// `application/json-patch+json`, with upstream's limits.
pub fn json_patch(doc: &Value, patch: &Value) -> Result<Value, ApiError> {
    json_patch_limited(
        doc,
        patch,
        MAX_JSON_PATCH_OPERATIONS,
        JSON_PATCH_MAX_COPY_BYTES,
        JSON_PATCH_MAX_DOC_BYTES,
    )
}

/// Serialized size of a value, counted without building the text.
fn encoded_len(v: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    let _ = serde_json::to_writer(&mut c, v);
    c.0
}

fn apply_failed(message: String) -> ApiError {
    // Upstream answers apply failures (missing path, failed test) with a generic 422.
    let mut err = ApiError::new(
        422,
        "Invalid",
        "the server rejected our request due to an error in our request",
    );
    err.details = Some(json!({"causes": [{
        "reason": "UnexpectedServerResponse",
        "message": message,
    }]}));
    err
}

/// A JSON patch with at most `max_ops` operations whose `copy` operations add at most
/// `max_copy` bytes in total, and that stops (413) as soon as the document would outgrow
/// `max_doc` bytes, so a small patch of repeated copies never builds a huge object.
pub fn json_patch_limited(
    doc: &Value,
    patch: &Value,
    max_ops: usize,
    max_copy: usize,
    max_doc: usize,
) -> Result<Value, ApiError> {
    if let Some(ops) = patch.as_array() {
        if ops.len() > max_ops {
            return Err(ApiError::new(
                413,
                "RequestEntityTooLarge",
                format!(
                    "Request entity too large: The allowed maximum operations in a JSON patch is {max_ops}, got {}",
                    ops.len()
                ),
            ));
        }
    }
    let ops: json_patch::Patch = serde_json::from_value(patch.clone())
        .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
    let mut out = doc.clone();
    let mut size = encoded_len(&out);
    let mut copied = 0usize;
    for (i, op) in ops.iter().enumerate() {
        if let json_patch::PatchOperation::Copy(c) = op {
            // Measure before copying: the growth is refused before it is allocated.
            let grows = out.pointer(c.from.as_str()).map_or(0, encoded_len);
            copied = copied.saturating_add(grows);
            if copied > max_copy {
                return Err(apply_failed(format!(
                    "Unable to complete the copy, the accumulated size increase of copy is {copied}, exceeding the limit {max_copy}"
                )));
            }
            size = size.saturating_add(grows);
            if size > max_doc {
                return Err(ApiError::new(
                    413,
                    "RequestEntityTooLarge",
                    "etcdserver: request is too large",
                ));
            }
        }
        json_patch::patch(&mut out, std::slice::from_ref(op)).map_err(|mut e| {
            e.operation = i;
            apply_failed(e.to_string())
        })?;
        match op {
            json_patch::PatchOperation::Copy(_) => {}
            json_patch::PatchOperation::Add(a) => size = size.saturating_add(encoded_len(&a.value)),
            json_patch::PatchOperation::Replace(r) => {
                size = size.saturating_add(encoded_len(&r.value))
            }
            _ => {}
        }
        // The running size over-estimates; measure exactly once it may matter.
        if size > max_doc / 2 && !matches!(op, json_patch::PatchOperation::Copy(_)) {
            size = encoded_len(&out);
        }
    }
    Ok(out)
}

/// `application/merge-patch+json`.
pub fn merge_patch(doc: &Value, patch: &Value) -> Result<Value, ApiError> {
    if !patch.is_object() {
        return Err(ApiError::bad_request(
            "json: cannot unmarshal patch into Go value of type map[string]interface {}",
        ));
    }
    let mut out = doc.clone();
    json_patch::merge(&mut out, patch);
    Ok(out)
}

/// `application/strategic-merge-patch+json`, for built-in kinds.
pub fn strategic_merge_patch(
    info: &ResourceInfo,
    doc: &Value,
    patch: &Value,
) -> Result<Value, ApiError> {
    let Value::Object(patch) = patch else {
        return Err(ApiError::bad_request(
            "json: cannot unmarshal patch into Go value of type map[string]interface {}",
        ));
    };
    let mut out = match doc {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    merge_map(&mut out, patch, crate::kinds::of(info).patch_root)?;
    Ok(Value::Object(out))
}

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ORDER: &str = "$setElementOrder/";
const DELETE_PRIMITIVE: &str = "$deleteFromPrimitiveList/";

/// Merges `patch` into `orig` (a map of type `ty`).
fn merge_map(
    orig: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    ty: Ty,
) -> Result<(), ApiError> {
    match patch.get(DIRECTIVE) {
        None => {}
        Some(Value::String(d)) if d == "replace" => {
            // Replace this map with the patch (cleaned of directives and nulls).
            let mut rest = patch.clone();
            rest.remove(DIRECTIVE);
            orig.clear();
            return merge_map(orig, &rest, ty);
        }
        Some(Value::String(d)) if d == "delete" => {
            orig.clear();
            return Ok(());
        }
        Some(Value::String(d)) if d == "merge" => {}
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "Unknown patch type: {other} in map: {}",
                Value::Object(patch.clone())
            )))
        }
    }

    if let Some(retain) = patch.get(RETAIN_KEYS) {
        let Value::Array(keys) = retain else {
            return Err(ApiError::bad_request(
                "invalid patch: the value of $retainKeys must be a list",
            ));
        };
        let keys: Vec<&str> = keys.iter().filter_map(Value::as_str).collect();
        for k in patch.keys() {
            if !k.starts_with('$') && !keys.contains(&k.as_str()) {
                return Err(ApiError::new(
                    409,
                    "Conflict",
                    "$retainKeys directive doesn't match the patch: the keys in $retainKeys must be a superset of the keys in the patch",
                ));
            }
        }
        orig.retain(|k, _| keys.contains(&k.as_str()));
    }

    // Deletions from primitive lists first, so a later merge of the same list sees them.
    for (k, v) in patch {
        if let Some(field_name) = k.strip_prefix(DELETE_PRIMITIVE) {
            let Value::Array(remove) = v else {
                return Err(ApiError::bad_request(format!(
                    "invalid patch: {k} must be a list of primitives"
                )));
            };
            if let Some(Value::Array(list)) = orig.get_mut(field_name) {
                list.retain(|item| !remove.contains(item));
            }
        }
    }

    for (k, pv) in patch {
        if k == DIRECTIVE || k == RETAIN_KEYS || k.starts_with(DELETE_PRIMITIVE) {
            continue;
        }
        if let Some(field_name) = k.strip_prefix(SET_ORDER) {
            // Only an order without the list itself is handled here; otherwise the list merge
            // below applies it.
            if patch.contains_key(field_name) {
                continue;
            }
            let Value::Array(order) = pv else {
                return Err(ApiError::bad_request(format!(
                    "invalid patch: {k} must be a list"
                )));
            };
            let f = schema::field(ty, field_name);
            if let Some(Value::Array(list)) = orig.get_mut(field_name) {
                let merged = merge_list(std::mem::take(list), &[], f, Some(order))?;
                *list = merged;
            }
            continue;
        }
        if k.starts_with('$') {
            return Err(ApiError::bad_request(format!(
                "invalid patch: unknown directive {k}"
            )));
        }
        let f = schema::field(ty, k);
        if pv.is_null() {
            orig.remove(k);
            continue;
        }
        let order = match patch.get(&format!("{SET_ORDER}{k}")) {
            Some(Value::Array(o)) => Some(o),
            Some(_) => {
                return Err(ApiError::bad_request(format!(
                    "invalid patch: {SET_ORDER}{k} must be a list"
                )))
            }
            None => None,
        };
        match (orig.get_mut(k), pv) {
            (Some(Value::Object(o)), Value::Object(p)) => merge_map(o, p, f.ty)?,
            (Some(Value::Array(o)), Value::Array(p)) => {
                let merged = merge_list(std::mem::take(o), p, f, order)?;
                *o = merged;
            }
            _ => {
                let fresh = fresh_value(pv, f, order)?;
                orig.insert(k.clone(), fresh);
            }
        }
    }
    Ok(())
}

/// A patch value for a field the original lacks: merged into an empty value so directives and
/// nulls do not leak into the object.
fn fresh_value(pv: &Value, f: Field, order: Option<&Vec<Value>>) -> Result<Value, ApiError> {
    Ok(match pv {
        Value::Object(p) => {
            let mut m = Map::new();
            merge_map(&mut m, p, f.ty)?;
            Value::Object(m)
        }
        Value::Array(p) => Value::Array(merge_list(Vec::new(), p, f, order)?),
        other => other.clone(),
    })
}

/// Is this list element a bare directive like `{"$patch": "replace"}`?
fn directive_of(item: &Value) -> Option<&str> {
    item.get(DIRECTIVE).and_then(Value::as_str)
}

/// Merges patch list `patch` into `orig` according to the field's strategy.
fn merge_list(
    orig: Vec<Value>,
    patch: &[Value],
    f: Field,
    order: Option<&Vec<Value>>,
) -> Result<Vec<Value>, ApiError> {
    match f.list {
        ListKind::Atomic => {
            let mut items = Vec::with_capacity(patch.len());
            for v in patch.iter().filter(|v| directive_of(v).is_none()) {
                items.push(match v {
                    Value::Object(p) => {
                        let mut m = Map::new();
                        merge_map(&mut m, p, f.ty)?;
                        Value::Object(m)
                    }
                    other => other.clone(),
                });
            }
            Ok(items)
        }
        ListKind::Set => {
            let replace = patch.iter().any(|v| directive_of(v) == Some("replace"));
            let mut merged = if replace { Vec::new() } else { orig.clone() };
            for v in patch {
                if v.is_object() {
                    continue;
                }
                if !merged.contains(v) {
                    merged.push(v.clone());
                }
            }
            let patch_prims: Vec<Value> =
                patch.iter().filter(|v| !v.is_object()).cloned().collect();
            let order_list = order.cloned().unwrap_or(patch_prims);
            Ok(normalize_order(merged, &order_list, &orig, |v| {
                Some(v.clone())
            }))
        }
        ListKind::Map { smp_key, .. } => {
            let key_of = |v: &Value| v.get(smp_key).cloned();
            if patch.iter().any(|v| !v.is_object()) {
                // Not a list of maps after all: replace like upstream does on type mismatch.
                return Ok(patch.to_vec());
            }
            let replace = patch
                .iter()
                .any(|v| directive_of(v) == Some("replace") && key_of(v).is_none());
            let mut merged = if replace { Vec::new() } else { orig.clone() };
            let mut order_default = Vec::new();
            for pv in patch {
                let Value::Object(p) = pv else { continue };
                let key = key_of(pv);
                match (directive_of(pv), key) {
                    (Some("delete"), Some(key)) => {
                        merged.retain(|item| key_of(item).as_ref() != Some(&key));
                    }
                    (Some("replace" | "merge"), None) => {}
                    (Some(d), _) if !matches!(d, "replace" | "merge" | "delete") => {
                        return Err(ApiError::bad_request(format!(
                            "Unknown patch type: {d} in map: {pv}"
                        )));
                    }
                    (_, None) => {
                        return Err(ApiError::bad_request(format!(
                            "map: {pv} does not contain declared merge key: {smp_key}"
                        )));
                    }
                    (_, Some(key)) => {
                        order_default.push(pv.clone());
                        if let Some(Value::Object(item)) = merged
                            .iter_mut()
                            .find(|item| key_of(item).as_ref() == Some(&key))
                        {
                            merge_map(item, p, f.ty)?;
                        } else {
                            let mut m = Map::new();
                            merge_map(&mut m, p, f.ty)?;
                            merged.push(Value::Object(m));
                        }
                    }
                }
            }
            let order_list = order.cloned().unwrap_or(order_default);
            Ok(normalize_order(merged, &order_list, &orig, key_of))
        }
    }
}

/// Upstream's `normalizeElementOrder`: items named in `order` come in that order; the others
/// ("server-only") keep their original relative order and are interleaved by their index in
/// the original list.
fn normalize_order(
    merged: Vec<Value>,
    order: &[Value],
    orig: &[Value],
    key_of: impl Fn(&Value) -> Option<Value>,
) -> Vec<Value> {
    let order_keys: Vec<Value> = order.iter().filter_map(&key_of).collect();
    let orig_keys: Vec<Option<Value>> = orig.iter().map(&key_of).collect();
    let pos = |keys: &[Option<Value>], k: &Option<Value>| {
        k.as_ref()
            .and_then(|k| keys.iter().position(|x| x.as_ref() == Some(k)))
    };
    let (mut in_order, server_only): (Vec<Value>, Vec<Value>) = merged
        .into_iter()
        .partition(|v| key_of(v).is_some_and(|k| order_keys.contains(&k)));
    in_order.sort_by_key(|v| {
        key_of(v)
            .and_then(|k| order_keys.iter().position(|x| *x == k))
            .unwrap_or(usize::MAX)
    });
    // Both lists are sorted; merge them, preferring the server-only item only when both are
    // known to the original list and it came first there.
    let mut out = Vec::with_capacity(in_order.len() + server_only.len());
    let mut left = server_only.into_iter().peekable();
    let mut right = in_order.into_iter().peekable();
    loop {
        match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => out.extend(left.next()),
            (None, Some(_)) => out.extend(right.next()),
            (Some(l), Some(r)) => {
                let li = pos(&orig_keys, &key_of(l));
                let ri = pos(&orig_keys, &key_of(r));
                match (li, ri) {
                    (Some(li), Some(ri)) if li < ri => out.extend(left.next()),
                    _ => out.extend(right.next()),
                }
            }
        }
    }
    out
}
