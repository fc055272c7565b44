//! `pods/eviction`: a delete that honours PodDisruptionBudgets as upstream's eviction REST
//! does. A pod that is terminal, pending or already terminating goes without any check; a pod
//! under more than one budget is refused (500); under one budget the eviction takes one of its
//! `disruptionsAllowed` (429 TooManyRequests when none is left) and records the pod in
//! `status.disruptedPods` so the disruption controller does not count it while it goes away.
//! The pod gets the `DisruptionTarget` condition before it is deleted.

use std::sync::Arc;

use axum::response::Response;
use serde_json::{json, Map, Value};
use skiff_api::ApiError;
use skiff_store::{ListOptions, StoreError};

use crate::ctx::{Ctx, DeleteOpts, Mode, RETRIES};
use crate::keys::{collection_prefix, decode};
use crate::objects::{meta, meta_str};
use crate::respond::*;
use crate::storage::{commit_update, delete_object, prepare_update};

/// Upstream's bound on `status.disruptedPods` (evictions the controller has not confirmed yet).
const MAX_DISRUPTED_POD_SIZE: usize = 2000;
/// Bound on the budgets read in one namespace.
const MAX_PDBS: i64 = 10_000;

const VIOLATION: &str = "Cannot evict pod as it would violate the pod's disruption budget.";

fn too_many_requests(cause: String) -> ApiError {
    let mut e = ApiError::new(429, "TooManyRequests", VIOLATION);
    e.details = Some(json!({"causes": [{"reason": "DisruptionBudget", "message": cause}]}));
    e
}

fn pdb_info() -> ApiResult<&'static skiff_api::ResourceInfo> {
    skiff_api::resources::by_plural("policy", "v1", "poddisruptionbudgets")
        .ok_or_else(|| ApiError::internal("poddisruptionbudgets are not served"))
}

/// A context for the pod's namespace's budgets, acting as the evicting user.
fn pdb_ctx(ctx: &Ctx) -> ApiResult<Ctx> {
    Ok(Ctx {
        st: Arc::clone(&ctx.st),
        info: pdb_info()?,
        ns: ctx.ns.clone(),
        query: Default::default(),
        headers: Default::default(),
        user: Arc::clone(&ctx.user),
        custom: None,
    })
}

fn pod_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.get("type").and_then(Value::as_str) == Some("Ready")
                    && c.get("status").and_then(Value::as_str) == Some("True")
            })
        })
}

/// Upstream's `canIgnorePDB`.
fn can_ignore_pdb(pod: &Value) -> bool {
    let phase = pod
        .pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("");
    matches!(phase, "Succeeded" | "Failed" | "Pending")
        || meta(pod).get("deletionTimestamp").is_some()
}

/// The budgets in the pod's namespace whose selector matches it (an empty selector matches
/// nothing in policy/v1).
async fn matching_pdbs(pctx: &Ctx, pod: &Value) -> ApiResult<Vec<Value>> {
    let opts = ListOptions {
        limit: MAX_PDBS,
        ..Default::default()
    };
    let page = pctx
        .st
        .store
        .list(&collection_prefix(pctx.info, pctx.ns.as_deref()), &opts)
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let empty = Map::new();
    let labels = meta(pod)
        .get("labels")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let mut out = Vec::new();
    for kv in &page.items {
        let pdb = decode(kv)?;
        let Some(sel) = pdb.pointer("/spec/selector").filter(|s| {
            s.as_object().is_some_and(|m| {
                m.values().any(|v| {
                    v.as_object().is_some_and(|o| !o.is_empty())
                        || v.as_array().is_some_and(|a| !a.is_empty())
                })
            })
        }) else {
            continue;
        };
        if skiff_semantics::labels::label_selector_matches_json(sel, labels) {
            out.push(pdb);
        }
    }
    Ok(out)
}

/// Upstream's `checkAndDecrement`, retried on conflicts with a fresh read of the budget.
async fn check_and_decrement(
    pctx: &Ctx,
    pdb_name: &str,
    pod_name: &str,
    dry_run: bool,
) -> ApiResult<()> {
    for _ in 0..RETRIES {
        let (pdb, rev) = pctx.get_current(pdb_name).await?;
        let int = |p: &str| pdb.pointer(p).and_then(Value::as_i64).unwrap_or(0);
        if int("/status/observedGeneration") < int("/metadata/generation") {
            return Err(too_many_requests(format!(
                "The disruption budget {pdb_name} is still being processed by the server."
            )));
        }
        let allowed = int("/status/disruptionsAllowed");
        if allowed < 0 {
            return Err(pdb_forbidden(
                pdb_name,
                "pdb disruptions allowed is negative",
            ));
        }
        let disrupted = pdb
            .pointer("/status/disruptedPods")
            .and_then(Value::as_object)
            .map_or(0, Map::len);
        if disrupted > MAX_DISRUPTED_POD_SIZE {
            return Err(pdb_forbidden(
                pdb_name,
                "DisruptedPods map too big - too many evictions not confirmed by PDB controller",
            ));
        }
        if allowed == 0 {
            return Err(too_many_requests(format!(
                "The disruption budget {pdb_name} needs {} healthy pods and has {} currently",
                int("/status/desiredHealthy"),
                int("/status/currentHealthy")
            )));
        }
        if dry_run {
            return Ok(());
        }
        let mut new = pdb.clone();
        let Some(status) = new.get_mut("status").and_then(Value::as_object_mut) else {
            return Err(ApiError::internal("PodDisruptionBudget has no status"));
        };
        status.insert("disruptionsAllowed".into(), json!(allowed - 1));
        if allowed - 1 == 0 {
            set_condition(status, "False", "InsufficientPods", "");
        }
        let map = status.entry("disruptedPods").or_insert_with(|| json!({}));
        if !map.is_object() {
            *map = json!({});
        }
        if let Some(m) = map.as_object_mut() {
            m.insert(pod_name.into(), json!(now_rfc3339()));
        }
        let Some(prepared) = prepare_update(pctx, &pdb, new, Mode::Status, true)? else {
            return Ok(());
        };
        match commit_update(pctx, pdb_name, prepared, rev).await {
            Ok(_) => return Ok(()),
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(store_err(pctx.info, pdb_name, e)),
        }
    }
    Err(pctx.conflict(pdb_name))
}

fn pdb_forbidden(name: &str, why: &str) -> ApiError {
    let mut e = ApiError::forbidden(format!(
        "poddisruptionbudget.policy {name:?} is forbidden: {why}"
    ));
    e.details = Some(json!({"name": name, "group": "policy", "kind": "poddisruptionbudget"}));
    e
}

/// Sets the budget's `DisruptionAllowed` condition (a transition time only on change).
fn set_condition(status: &mut Map<String, Value>, value: &str, reason: &str, message: &str) {
    let conds = status.entry("conditions").or_insert_with(|| json!([]));
    if !conds.is_array() {
        *conds = json!([]);
    }
    let now = now_rfc3339();
    let generation = status
        .get("observedGeneration")
        .cloned()
        .unwrap_or(json!(0));
    let Some(list) = status.get_mut("conditions").and_then(Value::as_array_mut) else {
        return;
    };
    match list
        .iter_mut()
        .find(|c| c.get("type").and_then(Value::as_str) == Some("DisruptionAllowed"))
    {
        Some(c) => {
            if c.get("status").and_then(Value::as_str) != Some(value) {
                c["lastTransitionTime"] = json!(now);
            }
            c["status"] = json!(value);
            c["reason"] = json!(reason);
            c["message"] = json!(message);
            c["observedGeneration"] = generation;
        }
        None => list.push(
            json!({"type": "DisruptionAllowed", "status": value, "reason": reason,
            "message": message, "lastTransitionTime": now, "observedGeneration": generation}),
        ),
    }
}

/// Adds the `DisruptionTarget` condition (reason `EvictionByEvictionAPI`) to the pod's status.
async fn mark_disruption_target(ctx: &Ctx, name: &str) -> ApiResult<()> {
    for _ in 0..RETRIES {
        let (pod, rev) = ctx.get_current(name).await?;
        if meta(&pod).get("deletionTimestamp").is_some() {
            return Ok(());
        }
        let mut new = pod.clone();
        if !new.get("status").is_some_and(Value::is_object) {
            new["status"] = json!({});
        }
        let Some(status) = new["status"].as_object_mut() else {
            return Ok(());
        };
        let conds = status.entry("conditions").or_insert_with(|| json!([]));
        if let Some(list) = conds.as_array_mut() {
            list.retain(|c| c.get("type").and_then(Value::as_str) != Some("DisruptionTarget"));
            list.push(json!({"type": "DisruptionTarget", "status": "True",
                "reason": "EvictionByEvictionAPI", "message": "Eviction API: evicting",
                "lastProbeTime": null, "lastTransitionTime": now_rfc3339()}));
        }
        let Some(prepared) = prepare_update(ctx, &pod, new, Mode::Status, true)? else {
            return Ok(());
        };
        match commit_update(ctx, name, prepared, rev).await {
            Ok(_) => return Ok(()),
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(store_err(ctx.info, name, e)),
        }
    }
    Err(ctx.conflict(name))
}

/// Evicts pod `name` (already admitted) with the Eviction's delete options.
pub(crate) async fn evict(
    ctx: &Ctx,
    name: &str,
    pod: &Value,
    mut opts: DeleteOpts,
) -> ApiResult<Response> {
    if !can_ignore_pdb(pod) {
        let pctx = pdb_ctx(ctx)?;
        let pdbs = matching_pdbs(&pctx, pod).await?;
        if pdbs.len() > 1 {
            return Err(ApiError::internal(
                "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
            ));
        }
        if let Some(pdb) = pdbs.first() {
            let pdb_name = meta_str(pdb, "name").unwrap_or("").to_string();
            let int = |p: &str| pdb.pointer(p).and_then(Value::as_i64).unwrap_or(0);
            let always = pdb
                .pointer("/spec/unhealthyPodEvictionPolicy")
                .and_then(Value::as_str)
                == Some("AlwaysAllow");
            let ready = pod_ready(pod);
            let healthy_budget = int("/status/currentHealthy") >= int("/status/desiredHealthy")
                && int("/status/desiredHealthy") > 0;
            if !ready && (always || healthy_budget) {
                // An unready pod does not count as healthy: no budget is taken, but the delete
                // must hit the pod as read here (it may have become ready since).
                if opts.rv.is_none() {
                    opts.rv = meta_str(pod, "resourceVersion").map(str::to_string);
                }
            } else {
                check_and_decrement(&pctx, &pdb_name, name, opts.dry_run).await?;
            }
        }
    }
    if !opts.dry_run {
        match mark_disruption_target(ctx, name).await {
            Ok(()) => {}
            Err(e) if e.code == 404 => return Err(e),
            Err(e) => {
                tracing::warn!(pod = name, err = %e.message, "eviction: DisruptionTarget condition")
            }
        }
        // The condition write changed the resourceVersion the precondition names.
        if opts.rv.is_some() {
            if let Ok((cur, _)) = ctx.get_current(name).await {
                if pod_ready(&cur) != pod_ready(pod) {
                    return Err(ctx.conflict(name));
                }
                opts.rv = meta_str(&cur, "resourceVersion").map(str::to_string);
            }
        }
    }
    delete_object(ctx, name, &opts).await?;
    Ok(json_response(
        201,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201,
            "details": {"name": name, "kind": "pods"}}),
    ))
}
