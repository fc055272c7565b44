//! The `LimitRanger` admission plugin (upstream `plugin/pkg/admission/limitranger`): on pod
//! creation, each LimitRange of the namespace fills the `Container` item's `default` limits and
//! `defaultRequest` requests into containers that state none (noting what it set in the
//! `kubernetes.io/limit-ranger` annotation), then rejects pods whose containers or whole pod
//! break a `min`, `max` or `maxLimitRequestRatio`; PersistentVolumeClaims (create and update)
//! are held to the `PersistentVolumeClaim` item's storage `min`/`max`. Messages are upstream's.
//! Runs before ResourceQuota, so quota sees the defaulted pod.

use async_trait::async_trait;
use serde_json::{Map, Value};
use skiff_semantics::quota::{self as q, Amount, ResourceList};
use skiff_store::ListOptions;

use super::resourcequota::forbidden;
use super::{Operation, Plugin, Request};
use crate::keys::{collection_prefix, decode};
use crate::respond::ApiResult;

const ANNOTATION: &str = "kubernetes.io/limit-ranger";

pub(crate) struct LimitRanger;

fn is_pod(req: &Request<'_>) -> bool {
    req.ctx.info.group.is_empty() && req.ctx.info.plural == "pods"
}

fn is_pvc(req: &Request<'_>) -> bool {
    req.ctx.info.group.is_empty() && req.ctx.info.plural == "persistentvolumeclaims"
}

/// The namespace's LimitRanges' items (`spec.limits`), one list per LimitRange, by name.
async fn limit_ranges(req: &Request<'_>) -> ApiResult<Vec<Vec<Value>>> {
    let Some(info) = skiff_api::resources::by_plural("", "v1", "limitranges") else {
        return Ok(Vec::new());
    };
    let ns = req.ctx.ns.as_deref().unwrap_or("");
    let page = req
        .ctx
        .st
        .store
        .list(&collection_prefix(info, Some(ns)), &ListOptions::default())
        .await
        .map_err(|e| skiff_api::ApiError::internal(format!("listing limit ranges: {e}")))?;
    page.items
        .iter()
        .map(|kv| {
            let lr = decode(kv)?;
            Ok(lr
                .pointer("/spec/limits")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default())
        })
        .collect()
}

fn item_type(item: &Value) -> &str {
    item.get("type").and_then(Value::as_str).unwrap_or("")
}

/// Sets the defaults of one container; returns the resource names it set as (requests, limits).
fn default_container(
    c: &mut Map<String, Value>,
    requests: &Map<String, Value>,
    limits: &Map<String, Value>,
) -> (Vec<String>, Vec<String>) {
    let resources = c
        .entry("resources")
        .or_insert_with(|| Value::Object(Map::new()));
    let Some(resources) = resources.as_object_mut() else {
        return (Vec::new(), Vec::new());
    };
    let mut fill = |key: &str, defaults: &Map<String, Value>| {
        let mut set = Vec::new();
        if defaults.is_empty() {
            return set;
        }
        let entry = resources
            .entry(key)
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(list) = entry.as_object_mut() {
            for (name, v) in defaults {
                if !list.contains_key(name) {
                    list.insert(name.clone(), v.clone());
                    set.push(name.clone());
                }
            }
        }
        set.sort();
        set
    };
    let set_limits = fill("limits", limits);
    let set_requests = fill("requests", requests);
    (set_requests, set_limits)
}

/// Upstream's `mergePodResourceRequirements` for one LimitRange.
fn default_pod(pod: &mut Value, items: &[Value]) {
    let mut requests = Map::new();
    let mut limits = Map::new();
    for item in items.iter().filter(|i| item_type(i) == "Container") {
        let mut item = item.as_object().cloned().unwrap_or_default();
        q::default_limit_range_item(&mut item);
        for (k, v) in item
            .get("defaultRequest")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            requests.entry(k.clone()).or_insert(v.clone());
        }
        for (k, v) in item
            .get("default")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            limits.entry(k.clone()).or_insert(v.clone());
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return;
    }
    let mut notes = Vec::new();
    for (key, what) in [
        ("containers", "container"),
        ("initContainers", "init container"),
    ] {
        let Some(list) = pod
            .pointer_mut(&format!("/spec/{key}"))
            .and_then(Value::as_array_mut)
        else {
            continue;
        };
        for c in list.iter_mut().filter_map(Value::as_object_mut) {
            let name = c
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let (set_requests, set_limits) = default_container(c, &requests, &limits);
            if !set_requests.is_empty() {
                notes.push(format!(
                    "{} request for {what} {name}",
                    set_requests.join(", ")
                ));
            }
            if !set_limits.is_empty() {
                notes.push(format!("{} limit for {what} {name}", set_limits.join(", ")));
            }
        }
    }
    if notes.is_empty() {
        return;
    }
    if let Some(meta) = pod.get_mut("metadata").and_then(Value::as_object_mut) {
        let ann = meta
            .entry("annotations")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(ann) = ann.as_object_mut() {
            ann.insert(
                ANNOTATION.into(),
                Value::String(format!("LimitRanger plugin set: {}", notes.join("; "))),
            );
        }
    }
}

fn min_constraint(
    kind: &str,
    res: &str,
    enforced: &Amount,
    request: &ResourceList,
    limit: &ResourceList,
) -> Option<String> {
    let e = enforced.text();
    let Some(req) = request.get(res) else {
        return Some(format!(
            "minimum {res} usage per {kind} is {e}.  No request is specified"
        ));
    };
    if req.q < enforced.q {
        return Some(format!(
            "minimum {res} usage per {kind} is {e}, but request is {}",
            req.text()
        ));
    }
    match limit.get(res) {
        Some(lim) if lim.q < enforced.q => Some(format!(
            "minimum {res} usage per {kind} is {e}, but limit is {}",
            lim.text()
        )),
        _ => None,
    }
}

fn max_constraint(
    kind: &str,
    res: &str,
    enforced: &Amount,
    request: &ResourceList,
    limit: &ResourceList,
) -> Option<String> {
    let e = enforced.text();
    let Some(lim) = limit.get(res) else {
        return Some(format!(
            "maximum {res} usage per {kind} is {e}.  No limit is specified"
        ));
    };
    if lim.q > enforced.q {
        return Some(format!(
            "maximum {res} usage per {kind} is {e}, but limit is {}",
            lim.text()
        ));
    }
    match request.get(res) {
        Some(req) if req.q > enforced.q => Some(format!(
            "maximum {res} usage per {kind} is {e}, but request is {}",
            req.text()
        )),
        _ => None,
    }
}

fn ratio_constraint(
    kind: &str,
    res: &str,
    enforced: &Amount,
    request: &ResourceList,
    limit: &ResourceList,
) -> Option<String> {
    let e = enforced.text();
    let req = request.get(res).map_or(0, |a| a.q.milli_value());
    let lim = limit.get(res).map_or(0, |a| a.q.milli_value());
    if req == 0 {
        return Some(format!(
            "{res} max limit to request ratio per {kind} is {e}, but no request is specified or request is 0"
        ));
    }
    if lim == 0 {
        return Some(format!(
            "{res} max limit to request ratio per {kind} is {e}, but no limit is specified or limit is 0"
        ));
    }
    // f64 only for the ratio upstream prints; the comparison stays in milli-units.
    let ratio = lim as f64 / req as f64;
    let max = enforced.q.milli_value() as f64;
    (ratio * 1000.0 > max).then(|| {
        format!(
            "{res} max limit to request ratio per {kind} is {e}, but provided ratio is {ratio:.6}"
        )
    })
}

/// Every min/max/ratio violation of one item against (requests, limits).
fn check(
    errs: &mut Vec<String>,
    item: &Value,
    kind: &str,
    request: &ResourceList,
    limit: &ResourceList,
) {
    for (res, v) in q::parse_list(item.get("min")) {
        errs.extend(min_constraint(kind, &res, &v, request, limit));
    }
    for (res, v) in q::parse_list(item.get("max")) {
        errs.extend(max_constraint(kind, &res, &v, request, limit));
    }
    for (res, v) in q::parse_list(item.get("maxLimitRequestRatio")) {
        errs.extend(ratio_constraint(kind, &res, &v, request, limit));
    }
}

fn validate_pod(pod: &Value, items: &[Value]) -> Vec<String> {
    let mut errs = Vec::new();
    for item in items {
        match item_type(item) {
            "Container" => {
                for key in ["containers", "initContainers"] {
                    for c in pod
                        .pointer(&format!("/spec/{key}"))
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        let request = q::parse_list(c.pointer("/resources/requests"));
                        let limit = q::parse_list(c.pointer("/resources/limits"));
                        check(&mut errs, item, "Container", &request, &limit);
                    }
                }
            }
            "Pod" => {
                let request = q::pod_resources(pod, "requests");
                let limit = q::pod_resources(pod, "limits");
                check(&mut errs, item, "Pod", &request, &limit);
            }
            _ => {}
        }
    }
    errs
}

fn validate_pvc(pvc: &Value, items: &[Value]) -> Vec<String> {
    let mut errs = Vec::new();
    let kind = "PersistentVolumeClaim";
    let request = q::parse_list(pvc.pointer("/spec/resources/requests"));
    for item in items.iter().filter(|i| item_type(i) == kind) {
        for (res, v) in q::parse_list(item.get("min")) {
            // Claims' limits are not user input: min is checked on the request only.
            errs.extend(min_constraint(
                kind,
                &res,
                &v,
                &request,
                &ResourceList::new(),
            ));
        }
        for (res, v) in q::parse_list(item.get("max")) {
            let e = v.text();
            match request.get(&res) {
                None => errs.push(format!(
                    "maximum {res} usage per {kind} is {e}.  No request is specified"
                )),
                Some(r) if r.q > v.q => errs.push(format!(
                    "maximum {res} usage per {kind} is {e}, but request is {}",
                    r.text()
                )),
                _ => {}
            }
        }
    }
    errs
}

/// `utilerrors.NewAggregate(...).Error()`: one message alone, several as `[a, b]`, duplicates
/// dropped.
fn aggregate(mut errs: Vec<String>) -> String {
    let mut seen = std::collections::HashSet::new();
    errs.retain(|e| seen.insert(e.clone()));
    if errs.len() == 1 {
        errs.concat()
    } else {
        format!("[{}]", errs.join(", "))
    }
}

#[async_trait]
impl Plugin for LimitRanger {
    fn name(&self) -> &'static str {
        "LimitRanger"
    }

    fn handles(&self, req: &Request<'_>) -> bool {
        req.subresource.is_empty()
            && req.ctx.ns.as_deref().is_some_and(|n| !n.is_empty())
            && match req.op {
                // Containers cannot change on pod updates: only creates matter.
                Operation::Create => is_pod(req) || is_pvc(req),
                Operation::Update => is_pvc(req),
                _ => false,
            }
    }

    async fn mutate(&self, req: &Request<'_>, obj: Option<&mut Value>) -> ApiResult<()> {
        let Some(obj) = obj else {
            return Ok(());
        };
        if !is_pod(req) {
            return Ok(());
        }
        for items in limit_ranges(req).await? {
            default_pod(obj, &items);
        }
        Ok(())
    }

    async fn validate(&self, req: &Request<'_>, obj: Option<&Value>) -> ApiResult<Vec<String>> {
        let Some(obj) = obj else {
            return Ok(Vec::new());
        };
        for items in limit_ranges(req).await? {
            let errs = if is_pod(req) {
                validate_pod(obj, &items)
            } else {
                validate_pvc(obj, &items)
            };
            if !errs.is_empty() {
                return Err(forbidden(req, &aggregate(errs)));
            }
        }
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_and_limits() {
        let items = vec![json!({"type": "Container", "default": {"cpu": "500m"},
            "max": {"cpu": "1"}})];
        let mut pod = json!({"metadata": {}, "spec": {"containers": [{"name": "c"}]}});
        default_pod(&mut pod, &items);
        assert_eq!(
            pod.pointer("/spec/containers/0/resources/limits/cpu"),
            Some(&json!("500m"))
        );
        assert_eq!(
            pod.pointer("/spec/containers/0/resources/requests/cpu"),
            Some(&json!("500m"))
        );
        assert_eq!(
            pod.pointer("/metadata/annotations/kubernetes.io~1limit-ranger"),
            Some(&json!(
                "LimitRanger plugin set: cpu request for container c; cpu limit for container c"
            ))
        );
        assert!(validate_pod(&pod, &items).is_empty());
        let big = json!({"spec": {"containers": [{"name": "c",
            "resources": {"limits": {"cpu": "2"}, "requests": {"cpu": "2"}}}]}});
        assert_eq!(
            aggregate(validate_pod(&big, &items)),
            "maximum cpu usage per Container is 1, but limit is 2"
        );
        let ratio = vec![json!({"type": "Container", "maxLimitRequestRatio": {"cpu": "2"}})];
        let pod = json!({"spec": {"containers": [{"name": "c",
            "resources": {"limits": {"cpu": "3"}, "requests": {"cpu": "1"}}}]}});
        assert_eq!(
            validate_pod(&pod, &ratio),
            vec![
                "cpu max limit to request ratio per Container is 2, but provided ratio is 3.000000"
            ]
        );
    }
}
