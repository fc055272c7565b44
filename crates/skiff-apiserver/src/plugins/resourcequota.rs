//! The `ResourceQuota` admission plugin (upstream `plugin/pkg/admission/resourcequota`): a
//! write that adds usage (any namespaced create; Service and PersistentVolumeClaim updates) is
//! checked against every quota of its namespace that tracks what it charges, using the quota's
//! `status.hard` and `status.used` as the ResourceQuota controller last wrote them, and the
//! usage is charged into `status.used` at once (compare-and-swap on the quota's revision,
//! retried on conflict) so two quick creates cannot both take the last unit. Creates are
//! serialised per namespace by a lock, which keeps the check-and-charge atomic for concurrent
//! requests; the revision check covers the controller writing concurrently. Dry runs charge
//! nothing. Accounting rules are `skiff_semantics::quota`'s, shared with the controller.

use std::collections::BTreeSet;

use async_trait::async_trait;
use serde_json::{json, Value};
use skiff_api::ApiError;
use skiff_semantics::quota as q;
use skiff_store::{ListOptions, StoreError};

use super::{Operation, Plugin, Request};
use crate::cache::RESOURCE_QUOTAS;
use crate::ctx::RETRIES;
use crate::keys::{collection_prefix, decode, encode, object_key};
use crate::respond::ApiResult;

type NamespaceLock = std::sync::Arc<tokio::sync::Mutex<()>>;

pub(crate) struct ResourceQuota {
    /// One check-and-charge at a time per namespace (upstream runs one evaluation queue per
    /// namespace); one entry per namespace that has had a quota apply.
    locks: std::sync::Mutex<std::collections::HashMap<String, NamespaceLock>>,
}

impl ResourceQuota {
    pub(crate) fn new() -> Self {
        ResourceQuota {
            locks: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    fn lock_for(&self, ns: &str) -> NamespaceLock {
        match self.locks.lock() {
            Ok(mut locks) => locks.entry(ns.to_string()).or_default().clone(),
            // A poisoned map still yields a working (unshared) lock; the store's revision
            // check keeps charges correct.
            Err(_) => NamespaceLock::default(),
        }
    }
}

/// `<resource> "<name>" is forbidden: <why>` (upstream's `admission.NewForbidden`).
pub(crate) fn forbidden(req: &Request<'_>, why: &str) -> ApiError {
    let info = req.ctx.info;
    let resource = info.group_resource();
    let mut e = if req.name.is_empty() {
        ApiError::forbidden(format!("{resource} is forbidden: {why}"))
    } else {
        ApiError::forbidden(format!("{resource} \"{}\" is forbidden: {why}", req.name))
    };
    let mut d = json!({"kind": info.plural});
    if !info.group.is_empty() {
        d["group"] = json!(info.group);
    }
    if !req.name.is_empty() {
        d["name"] = json!(req.name);
    }
    e.details = Some(d);
    e
}

/// Whether an update of this kind can change its usage (upstream's evaluators handle only
/// creates, except for Services and PVCs).
fn update_counts(group: &str, plural: &str) -> bool {
    group.is_empty() && matches!(plural, "services" | "persistentvolumeclaims")
}

/// Whether any quota of `ns` tracks something `obj` charges. Read from the server's cache (as
/// upstream reads its informer): a quota created a moment ago may not be seen yet; once one
/// is, the charge itself reads the store.
async fn any_applies(req: &Request<'_>, ns: &str, obj: &Value) -> bool {
    let info = req.ctx.info;
    let st = &req.ctx.st;
    st.cache.ready(st).await;
    let under = format!("{RESOURCE_QUOTAS}{ns}/");
    st.cache
        .objects_under(RESOURCE_QUOTAS, &under)
        .iter()
        .any(|quota| {
            q::quota_matches(quota, info.group, info.plural, obj)
                && q::names(quota.pointer("/status/hard"))
                    .iter()
                    .any(|r| q::charges(info.group, info.plural, r))
        })
}

#[async_trait]
impl Plugin for ResourceQuota {
    fn name(&self) -> &'static str {
        "ResourceQuota"
    }

    fn handles(&self, req: &Request<'_>) -> bool {
        let info = req.ctx.info;
        info.namespaced
            && req.subresource.is_empty()
            && req.ctx.ns.as_deref().is_some_and(|n| !n.is_empty())
            && match req.op {
                Operation::Create => true,
                Operation::Update => update_counts(info.group, info.plural),
                _ => false,
            }
    }

    async fn validate(&self, req: &Request<'_>, obj: Option<&Value>) -> ApiResult<Vec<String>> {
        let Some(obj) = obj else {
            return Ok(Vec::new());
        };
        let info = req.ctx.info;
        let now = jiff::Timestamp::now();
        let mut full = q::usage(info.group, info.plural, obj, now);
        full.retain(|_, v| v.q.is_positive());
        let mut delta = full.clone();
        if let Some(old) = req.old.filter(|_| req.op == Operation::Update) {
            let before = q::usage(info.group, info.plural, old, now);
            delta = q::subtract(&delta, &before);
        }
        // Only growth is checked and charged.
        delta.retain(|_, v| v.q.is_positive());
        if full.is_empty() {
            return Ok(Vec::new());
        }
        let ns = req.ctx.ns.as_deref().unwrap_or("");
        let Some(quotas_info) = skiff_api::resources::by_plural("", "v1", "resourcequotas") else {
            return Ok(Vec::new());
        };
        // Most namespaces have no quota that tracks this object: no need to queue for the lock.
        if !any_applies(req, ns, obj).await {
            return Ok(Vec::new());
        }
        let lock = self.lock_for(ns);
        let _serial = lock.lock().await;
        // Quotas already charged by an earlier attempt (a later one lost a race).
        let mut charged: BTreeSet<String> = BTreeSet::new();
        for _ in 0..RETRIES {
            let page = req
                .ctx
                .st
                .store
                .list(
                    &collection_prefix(quotas_info, Some(ns)),
                    &ListOptions::default(),
                )
                .await
                .map_err(|e| ApiError::internal(format!("listing resource quotas: {e}")))?;
            // First every pertinent quota's constraints and status, then the limits (upstream's
            // order: a missing request is reported before any quota is found exceeded).
            let mut pertinent = Vec::new();
            for kv in &page.items {
                let quota = decode(kv)?;
                let name = quota
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                if !q::quota_matches(&quota, info.group, info.plural, obj) {
                    continue;
                }
                let hard = q::parse_list(quota.pointer("/status/hard"));
                let restricted: Vec<String> = hard
                    .keys()
                    .filter(|r| q::charges(info.group, info.plural, r))
                    .cloned()
                    .collect();
                if restricted.is_empty() {
                    continue;
                }
                if info.group.is_empty() && info.plural == "pods" {
                    let missing = q::pod_missing(obj, &restricted);
                    if !missing.is_empty() {
                        return Err(forbidden(
                            req,
                            &format!("failed quota: {name}: must specify {}", missing.join("; ")),
                        ));
                    }
                }
                let used = q::parse_list(quota.pointer("/status/used"));
                if restricted.iter().any(|r| !used.contains_key(r)) {
                    return Err(forbidden(
                        req,
                        &format!(
                            "status unknown for quota: {name}, resources: {}",
                            restricted.join(",")
                        ),
                    ));
                }
                // An update of an object the quota did not track before charges all of it.
                let requested = match req.old.filter(|_| req.op == Operation::Update) {
                    Some(old) if !q::quota_matches(&quota, info.group, info.plural, old) => {
                        q::mask(&full, &restricted)
                    }
                    _ => q::mask(&delta, &restricted),
                };
                pertinent.push((name, quota, kv.mod_revision, hard, used, requested));
            }
            let mut updates: Vec<(String, Value, i64)> = Vec::new();
            for (name, quota, rev, hard, used, requested) in pertinent {
                if requested.is_empty() || charged.contains(&name) {
                    continue;
                }
                let new_used = q::add(&used, &requested);
                let exceeded: Vec<String> = requested
                    .keys()
                    .filter(|r| match (new_used.get(*r), hard.get(*r)) {
                        (Some(u), Some(h)) => u.q > h.q,
                        _ => false,
                    })
                    .cloned()
                    .collect();
                if !exceeded.is_empty() {
                    return Err(forbidden(
                        req,
                        &format!(
                            "exceeded quota: {name}, requested: {}, used: {}, limited: {}",
                            q::pretty(&q::mask(&requested, &exceeded)),
                            q::pretty(&q::mask(&used, &exceeded)),
                            q::pretty(&q::mask(&hard, &exceeded)),
                        ),
                    ));
                }
                let mut updated = quota;
                if let Some(status) = updated.get_mut("status").and_then(Value::as_object_mut) {
                    status.insert("used".into(), q::list_json(&new_used));
                }
                updates.push((name, updated, rev));
            }
            if req.ctx.dry_run() {
                return Ok(Vec::new());
            }
            let mut lost_race = false;
            for (name, updated, rev) in updates {
                let key = object_key(quotas_info, Some(ns), &name);
                match req.ctx.st.store.update(&key, encode(&updated), rev).await {
                    Ok(_) => {
                        charged.insert(name);
                    }
                    Err(StoreError::Conflict { .. }) | Err(StoreError::NotFound(_)) => {
                        lost_race = true;
                    }
                    Err(e) => {
                        return Err(ApiError::internal(format!(
                            "charging resource quota {name}: {e}"
                        )))
                    }
                }
            }
            if !lost_race {
                return Ok(Vec::new());
            }
        }
        Err(ApiError::conflict(
            "",
            "resourcequotas",
            ns,
            "too many concurrent quota updates; please try again",
        ))
    }
}
