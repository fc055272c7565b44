//! Subresources: `status` (all kinds that list it), `scale` (autoscaling/v1 Scale over
//! `spec.replicas`), pod `binding` and `eviction`, and the streaming ones (`log`, `exec`, `attach`,
//! `portforward`, `proxy`) that go through the node-proxy seam in [`node_proxy`].

use axum::response::Response;
use http::Method;
use serde_json::{json, Value};
use skiff_api::ApiError;
use skiff_store::StoreError;

use crate::keys::{encode, set_rv};
use crate::respond::*;
use crate::rest::{self, meta, meta_mut, meta_str, Ctx, Mode};

pub(crate) async fn handle(
    ctx: &Ctx,
    method: &Method,
    name: &str,
    sub: &str,
    body: &[u8],
) -> ApiResult<Response> {
    match (sub, method) {
        ("status", &Method::GET) => rest::get_object_response(ctx, name).await,
        ("status", &Method::PUT) | ("status", &Method::PATCH) => {
            rest::update_or_patch(ctx, method, name, body, Mode::Status).await
        }
        ("scale", &Method::GET) => {
            let (obj, _) = ctx.get_current(name).await?;
            Ok(json_response(200, &to_scale(&obj)))
        }
        ("scale", &Method::PUT) | ("scale", &Method::PATCH) => {
            write_scale(ctx, method, name, body).await
        }
        ("binding", &Method::POST) => binding(ctx, name, body).await,
        ("eviction", &Method::POST) => eviction(ctx, name, body).await,
        ("finalize", &Method::PUT) => {
            rest::update_or_patch(ctx, method, name, body, Mode::Main).await
        }
        ("log" | "exec" | "attach" | "portforward" | "proxy", _) => {
            node_proxy(ctx, name, sub).await
        }
        _ => Err(ApiError::method_not_allowed(format!(
            "method {method} is not supported on {}/{sub}",
            ctx.info.plural
        ))),
    }
}

/// Renders a label selector object in the string form (`a=b,c in (d,e)`).
fn selector_string(sel: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(ml) = sel.get("matchLabels").and_then(Value::as_object) {
        let mut kv: Vec<_> = ml
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
            .collect();
        kv.sort();
        parts.extend(kv);
    }
    for e in sel
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let key = e.get("key").and_then(Value::as_str).unwrap_or("");
        let values: Vec<&str> = e
            .get("values")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        match e.get("operator").and_then(Value::as_str).unwrap_or("") {
            "In" => parts.push(format!("{key} in ({})", values.join(","))),
            "NotIn" => parts.push(format!("{key} notin ({})", values.join(","))),
            "Exists" => parts.push(key.to_string()),
            "DoesNotExist" => parts.push(format!("!{key}")),
            _ => {}
        }
    }
    parts.join(",")
}

fn to_scale(obj: &Value) -> Value {
    let m = meta(obj);
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
    let replicas = obj
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let current = obj
        .pointer("/status/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let selector = obj
        .pointer("/spec/selector")
        .map(selector_string)
        .unwrap_or_default();
    json!({"kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": md,
        "spec": {"replicas": replicas}, "status": {"replicas": current, "selector": selector}})
}

async fn write_scale(ctx: &Ctx, method: &Method, name: &str, body: &[u8]) -> ApiResult<Response> {
    for _ in 0..8 {
        let (cur, rev) = ctx.get_current(name).await?;
        let scale = to_scale(&cur);
        let new_scale = if method == Method::PUT {
            ctx.decode_body(body)?
        } else {
            let kind = rest::patch_kind(ctx)?;
            let patch = rest::parse_patch(&kind, body)?;
            match kind {
                rest::PatchKind::Json => skiff_api::patch::json_patch(&scale, &patch)?,
                _ => skiff_api::patch::merge_patch(&scale, &patch)?,
            }
        };
        let precondition = meta_str(&new_scale, "resourceVersion").filter(|r| !r.is_empty());
        if let Some(p) = precondition {
            if p != rev.to_string() {
                return Err(ctx.conflict(name));
            }
        }
        let replicas = match new_scale.pointer("/spec/replicas") {
            None | Some(Value::Null) => 0,
            Some(v) => v
                .as_i64()
                .ok_or_else(|| ApiError::bad_request("spec.replicas must be an integer"))?,
        };
        if replicas < 0 {
            return Err(ApiError::invalid(
                "autoscaling",
                "Scale",
                name,
                vec![skiff_api::Cause {
                    reason: "FieldValueInvalid".into(),
                    message: format!(
                        "Invalid value: {replicas}: must be greater than or equal to 0"
                    ),
                    field: "spec.replicas".into(),
                }],
            ));
        }
        let mut new = cur.clone();
        new["spec"]["replicas"] = json!(replicas);
        let Some(prepared) = rest::prepare_update(ctx, &cur, new, Mode::Main, true)? else {
            return Ok(json_response(200, &scale));
        };
        if ctx.dry_run() {
            return Ok(json_response(200, &to_scale(&prepared)));
        }
        match rest::commit_update(ctx, name, prepared, rev).await {
            Ok(stored) => return Ok(json_response(200, &to_scale(&stored))),
            Err(StoreError::Conflict { .. }) if precondition.is_none() => continue,
            Err(e) => return Err(store_err(ctx.info, name, e)),
        }
    }
    Err(ctx.conflict(name))
}

fn success(details: Value) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201, "details": details})
}

async fn binding(ctx: &Ctx, name: &str, body: &[u8]) -> ApiResult<Response> {
    let b = ctx.decode_body(body)?;
    let node = b
        .pointer("/target/name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::bad_request("Binding target.name is required"))?
        .to_string();
    for _ in 0..8 {
        let (pod, rev) = ctx.get_current(name).await?;
        if meta(&pod).get("deletionTimestamp").is_some() {
            return Err(ApiError::conflict(
                "",
                "pods",
                name,
                &format!("pod {name} is being deleted, cannot be assigned to a host"),
            ));
        }
        if let Some(cur) = pod
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
        {
            return Err(ApiError::conflict(
                "",
                "pods",
                name,
                &format!("pod {name} is already assigned to node \"{cur}\""),
            ));
        }
        let mut new = pod.clone();
        new["spec"]["nodeName"] = json!(node);
        let cond = json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null,
            "lastTransitionTime": now_rfc3339()});
        if !new.get("status").is_some_and(Value::is_object) {
            new["status"] = json!({});
        }
        let conds = new["status"]
            .as_object_mut()
            .map(|s| s.entry("conditions").or_insert_with(|| json!([])));
        if let Some(Value::Array(list)) = conds {
            list.retain(|c| c.get("type").and_then(Value::as_str) != Some("PodScheduled"));
            list.push(cond);
        }
        meta_mut(&mut new).remove("resourceVersion");
        if ctx.dry_run() {
            return Ok(json_response(
                201,
                &success(json!({"name": name, "kind": "pods"})),
            ));
        }
        match ctx.st.store.update(&ctx.key(name), encode(&new), rev).await {
            Ok(kv) => {
                set_rv(&mut new, kv.mod_revision);
                return Ok(json_response(
                    201,
                    &success(json!({"name": name, "kind": "pods"})),
                ));
            }
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(store_err(ctx.info, name, e)),
        }
    }
    Err(ctx.conflict(name))
}

async fn eviction(ctx: &Ctx, name: &str, body: &[u8]) -> ApiResult<Response> {
    let mut opts = rest::DeleteOpts {
        dry_run: ctx.dry_run(),
        ..Default::default()
    };
    if !body.is_empty() {
        let ev = ctx.decode_body(body)?;
        if let Some(d) = ev.get("deleteOptions") {
            rest::from_delete_options_json(&mut opts, d);
        }
    }
    rest::delete_object(ctx, name, &opts).await?;
    Ok(json_response(
        201,
        &success(json!({"name": name, "kind": "pods"})),
    ))
}

/// The seam for pod streaming subresources: the node agent will serve these and the API server
/// will proxy to it. Until then: a clear 503 naming the node.
async fn node_proxy(ctx: &Ctx, name: &str, sub: &str) -> ApiResult<Response> {
    let (obj, _) = ctx.get_current(name).await?;
    if ctx.info.kind != "Pod" {
        return Err(unavailable(format!(
            "{sub} for {} is not available yet",
            ctx.info.group_resource()
        )));
    }
    let node = obj
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .unwrap_or("");
    if node.is_empty() {
        return Err(ApiError::bad_request(format!(
            "pod {name} does not have a host assigned"
        )));
    }
    Err(unavailable(format!(
        "no node agent for node {node} (pods/{sub} is not available yet)"
    )))
}
