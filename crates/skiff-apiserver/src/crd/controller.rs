//! The CRD controllers the API server runs itself (upstream's apiextensions naming,
//! establishing and finalizing controllers), driven by the configuration cache:
//!
//! - status: `acceptedNames` and NamesAccepted (conflicts with built-in kinds and other CRDs of
//!   the group, upstream's reasons and messages), Established once the names are accepted, and
//!   the storage version in `storedVersions`. Written straight to the store with the cached
//!   resourceVersion as precondition (a lost race is retried on the cache change it caused).
//! - cleanup: a deleted CRD (the [`CrdHooks`] delete hook marks it Terminating and adds the
//!   cleanup finalizer) has every custom object deleted, honouring their finalizers; then the
//!   finalizer goes and with it the CRD.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{json, Value};
use skiff_store::StoreError;

use super::{condition_true, served_kinds, CLEANUP_FINALIZER};
use crate::admission::{Admission, DeleteDecision};
use crate::cache::CRDS;
use crate::ctx::{Ctx, DeleteOpts};
use crate::keys::encode;
use crate::query::Query;
use crate::respond::{now_rfc3339, rfc3339};
use crate::storage::delete_object;
use crate::AppState;

/// How often the controllers look again without a cache change (retries after errors).
const RESYNC: Duration = Duration::from_secs(5);

/// Runs until shutdown: reconciles every CRD after each cache change.
pub(crate) async fn run(st: Arc<AppState>) {
    st.cache.ready(&st).await;
    let mut changes = st.cache.subscribe();
    let mut shutdown = st.shutdown.clone();
    loop {
        changes.borrow_and_update();
        let crds = st.cache.snapshot(CRDS);
        for (key, crd) in crds.iter() {
            reconcile(&st, key, crd, &crds).await;
        }
        tokio::select! {
            r = changes.changed() => if r.is_err() { return },
            r = shutdown.changed() => if r.is_err() || *shutdown.borrow() { return },
            _ = tokio::time::sleep(RESYNC) => {}
        }
    }
}

async fn reconcile(st: &Arc<AppState>, key: &str, crd: &Arc<Value>, all: &crate::cache::Objects) {
    if crd.pointer("/metadata/deletionTimestamp").is_some() {
        if has_cleanup_finalizer(crd) {
            start_cleanup(st.clone(), crd_name(crd).to_string());
        }
        return;
    }
    let Some(status) = desired_status(crd, all) else {
        return;
    };
    if crd.get("status") == Some(&status) {
        return;
    }
    let Some(rev) = crd
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .and_then(|r| r.parse::<i64>().ok())
    else {
        return;
    };
    let mut next = (**crd).clone();
    next["status"] = status;
    match st.store.update(key, encode(&next), rev).await {
        Ok(_) | Err(StoreError::Conflict { .. }) | Err(StoreError::NotFound(_)) => {}
        Err(e) => tracing::warn!(crd = %crd_name(crd), error = %e, "updating CRD status"),
    }
}

fn crd_name(crd: &Value) -> &str {
    crd.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn has_cleanup_finalizer(crd: &Value) -> bool {
    crd.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| f.iter().any(|x| x == CLEANUP_FINALIZER))
}

/// The names in use in `group` by built-in kinds and by the other CRDs' accepted names.
struct Used {
    resources: BTreeSet<String>,
    kinds: BTreeSet<String>,
}

fn used_names(group: &str, me: &str, all: &crate::cache::Objects) -> Used {
    let mut used = Used {
        resources: BTreeSet::new(),
        kinds: BTreeSet::new(),
    };
    for r in skiff_api::resources::all()
        .iter()
        .filter(|r| r.group == group)
    {
        used.resources.insert(r.plural.to_string());
        used.resources.insert(r.singular.to_string());
        used.resources
            .extend(r.short_names.iter().map(|s| s.to_string()));
        used.kinds.insert(r.kind.to_string());
        used.kinds.insert(r.list_kind.to_string());
    }
    for other in all.values() {
        if crd_name(other) == me
            || other.pointer("/spec/group").and_then(Value::as_str) != Some(group)
        {
            continue;
        }
        let Some(n) = other.pointer("/status/acceptedNames") else {
            continue;
        };
        for f in ["plural", "singular"] {
            if let Some(s) = n.get(f).and_then(Value::as_str).filter(|s| !s.is_empty()) {
                used.resources.insert(s.to_string());
            }
        }
        for s in n
            .get("shortNames")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            used.resources.insert(s.to_string());
        }
        for f in ["kind", "listKind"] {
            if let Some(s) = n.get(f).and_then(Value::as_str).filter(|s| !s.is_empty()) {
                used.kinds.insert(s.to_string());
            }
        }
    }
    used
}

/// Upstream's `equalToAcceptedOrFresh`.
fn accepted_or_fresh(
    requested: &str,
    accepted: &str,
    used: &BTreeSet<String>,
) -> Result<(), String> {
    if requested == accepted || !used.contains(requested) {
        Ok(())
    } else {
        Err(format!("{requested:?} is already in use"))
    }
}

/// The status the naming/establishing controllers want (None: the CRD is malformed).
fn desired_status(crd: &Value, all: &crate::cache::Objects) -> Option<Value> {
    let group = crd.pointer("/spec/group").and_then(Value::as_str)?;
    let spec_names = crd.pointer("/spec/names")?;
    let accepted = crd
        .pointer("/status/acceptedNames")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let used = used_names(group, crd_name(crd), all);
    let s = |v: &Value, f: &str| v.get(f).and_then(Value::as_str).unwrap_or("").to_string();
    let kind = s(spec_names, "kind");
    let requested = |f: &str| match (f, s(spec_names, f)) {
        ("singular", v) if v.is_empty() => kind.to_lowercase(),
        ("listKind", v) if v.is_empty() => format!("{kind}List"),
        (_, v) => v,
    };
    let mut names = serde_json::Map::new();
    let mut failure: Option<(&str, String)> = None;
    for (field, reason, set) in [
        ("plural", "PluralConflict", &used.resources),
        ("singular", "SingularConflict", &used.resources),
    ] {
        let want = requested(field);
        match accepted_or_fresh(&want, &s(&accepted, field), set) {
            Ok(()) => {
                names.insert(field.into(), json!(want));
            }
            Err(msg) => {
                failure.get_or_insert((reason, msg));
                if let Some(prev) = accepted.get(field) {
                    names.insert(field.into(), prev.clone());
                }
            }
        }
    }
    let mine: BTreeSet<&str> = accepted
        .get("shortNames")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let short: Vec<&str> = spec_names
        .get("shortNames")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    match short
        .iter()
        .find(|n| !mine.contains(**n) && used.resources.contains(**n))
    {
        Some(taken) => {
            failure.get_or_insert(("ShortNamesConflict", format!("{taken:?} is already in use")));
            if let Some(prev) = accepted.get("shortNames") {
                names.insert("shortNames".into(), prev.clone());
            }
        }
        None if !short.is_empty() => {
            names.insert("shortNames".into(), json!(short));
        }
        None => {}
    }
    for (field, reason) in [("kind", "KindConflict"), ("listKind", "ListKindConflict")] {
        let want = requested(field);
        match accepted_or_fresh(&want, &s(&accepted, field), &used.kinds) {
            Ok(()) => {
                names.insert(field.into(), json!(want));
            }
            Err(msg) => {
                failure.get_or_insert((reason, msg));
                if let Some(prev) = accepted.get(field) {
                    names.insert(field.into(), prev.clone());
                }
            }
        }
    }
    if let Some(c) = spec_names.get("categories").filter(|c| c.is_array()) {
        names.insert("categories".into(), c.clone());
    }
    let now = now_rfc3339();
    let old_conditions: Vec<Value> = crd
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut conditions = old_conditions.clone();
    let names_ok = failure.is_none();
    let (status, reason, message) = match &failure {
        None => ("True", "NoConflicts", "no conflicts found".to_string()),
        Some((reason, msg)) => ("False", *reason, msg.clone()),
    };
    set_condition(
        &mut conditions,
        "NamesAccepted",
        status,
        reason,
        &message,
        &now,
    );
    // Established stays True once set (upstream); it needs accepted names the first time.
    if !condition_true(crd, "Established") {
        if names_ok {
            set_condition(
                &mut conditions,
                "Established",
                "True",
                "InitialNamesAccepted",
                "the initial names have been accepted",
                &now,
            );
        } else {
            set_condition(
                &mut conditions,
                "Established",
                "False",
                "NotAccepted",
                "not all names are accepted",
                &now,
            );
        }
    }
    let mut stored: Vec<Value> = crd
        .pointer("/status/storedVersions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let storage = crd
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|v| v["storage"] == true)
        .and_then(|v| v.get("name").cloned());
    if let Some(v) = storage {
        if !stored.contains(&v) {
            stored.push(v);
        }
    }
    let mut status = crd.get("status").cloned().unwrap_or_else(|| json!({}));
    if !status.is_object() {
        status = json!({});
    }
    status["conditions"] = Value::Array(conditions);
    status["acceptedNames"] = Value::Object(names);
    status["storedVersions"] = Value::Array(stored);
    Some(status)
}

/// Sets condition `ty` (lastTransitionTime changes only with the status).
pub(crate) fn set_condition(
    conditions: &mut Vec<Value>,
    ty: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: &str,
) {
    let fresh = json!({"type": ty, "status": status, "lastTransitionTime": now,
        "reason": reason, "message": message});
    match conditions.iter_mut().find(|c| c["type"] == ty) {
        Some(c) => {
            if c["status"] == status {
                c["reason"] = json!(reason);
                c["message"] = json!(message);
            } else {
                *c = fresh;
            }
        }
        None => conditions.push(fresh),
    }
}

/// Starts the cleanup of a deleted CRD unless it is running.
pub(crate) fn start_cleanup(st: Arc<AppState>, name: String) {
    {
        let Ok(mut running) = st.crds.cleaning.lock() else {
            return;
        };
        if !running.insert(name.clone()) {
            return;
        }
    }
    tokio::spawn(async move {
        let mut shutdown = st.shutdown.clone();
        loop {
            match cleanup_once(&st, &name).await {
                Ok(true) => break,
                Ok(false) => {}
                Err(e) => tracing::warn!(crd = %name, error = %e, "CRD cleanup"),
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                r = shutdown.changed() => if r.is_err() || *shutdown.borrow() { break },
            }
        }
        if let Ok(mut running) = st.crds.cleaning.lock() {
            running.remove(&name);
        }
    });
}

/// One pass: delete the remaining objects; once none are left remove the finalizer (and the
/// CRD with it when nothing else holds it). Ok(true) = done.
async fn cleanup_once(st: &Arc<AppState>, name: &str) -> Result<bool, String> {
    let key = format!("{CRDS}{name}");
    let Some(kv) = st.store.get(&key).await.map_err(|e| e.to_string())? else {
        return Ok(true);
    };
    let crd = Arc::new(crate::keys::decode(&kv).map_err(|e| e.message)?);
    if !has_cleanup_finalizer(&crd) {
        return Ok(true);
    }
    // Objects are stored under one collection whatever their version.
    let kinds = served_kinds(&crd, false);
    let storage = kinds
        .into_iter()
        .find(|k| k.info.version == k.storage_version);
    let mut remaining = 0usize;
    if let Some(kind) = storage {
        let kind = Arc::new(kind);
        let prefix = crate::keys::collection_prefix(kind.info, None);
        let list = st
            .store
            .list(&prefix, &Default::default())
            .await
            .map_err(|e| e.to_string())?;
        remaining = list.items.len();
        let opts = DeleteOpts {
            propagation: Some("Background".into()),
            ..Default::default()
        };
        for item in list.items {
            let rest = item.key.strip_prefix(&prefix).unwrap_or("");
            let (ns, obj_name) = match rest.split_once('/') {
                Some((ns, n)) if kind.info.namespaced => (Some(ns.to_string()), n),
                _ => (None, rest),
            };
            let ctx = Ctx {
                st: st.clone(),
                info: kind.info,
                ns,
                query: Query::default(),
                headers: Default::default(),
                user: Arc::new(crate::auth::UserInfo::apiserver()),
                custom: Some(kind.clone()),
            };
            if let Err(e) = delete_object(&ctx, obj_name, &opts).await {
                if e.code != 404 {
                    tracing::debug!(crd = %name, object = %item.key, err = %e.message, "CRD cleanup");
                }
            }
        }
    }
    if remaining > 0 {
        return Ok(false);
    }
    let mut next = (*crd).clone();
    let finalizers: Vec<Value> = next
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|f| {
            f.iter()
                .filter(|x| *x != CLEANUP_FINALIZER)
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let result = if finalizers.is_empty() {
        st.store
            .delete(&key, Some(kv.mod_revision))
            .await
            .map(|_| ())
    } else {
        next["metadata"]["finalizers"] = Value::Array(finalizers);
        st.store
            .update(&key, encode(&next), kv.mod_revision)
            .await
            .map(|_| ())
    };
    match result {
        Ok(()) | Err(StoreError::NotFound(_)) => Ok(true),
        Err(StoreError::Conflict { .. }) => Ok(false),
        Err(e) => Err(e.to_string()),
    }
}

/// The CustomResourceDefinition delete hook (upstream's CRD REST `Delete`): the first delete
/// marks it Terminating and adds the cleanup finalizer; the cleanup controller does the rest.
pub(crate) struct CrdHooks;

#[async_trait]
impl Admission for CrdHooks {
    fn on_delete(&self, cur: &Value, _opts: &DeleteOpts, now: jiff::Timestamp) -> DeleteDecision {
        if cur.pointer("/metadata/deletionTimestamp").is_some() {
            return DeleteDecision::AlreadyPending;
        }
        let mut next = cur.clone();
        let m = crate::objects::meta_mut(&mut next);
        m.insert("deletionTimestamp".into(), json!(rfc3339(now)));
        m.insert("deletionGracePeriodSeconds".into(), json!(0));
        let mut fins: Vec<Value> = m
            .get("finalizers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if !fins.iter().any(|f| f == CLEANUP_FINALIZER) {
            fins.push(json!(CLEANUP_FINALIZER));
        }
        m.insert("finalizers".into(), Value::Array(fins));
        if !next.get("status").is_some_and(Value::is_object) {
            next["status"] = json!({});
        }
        let mut conditions: Vec<Value> = next
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        set_condition(
            &mut conditions,
            "Terminating",
            "True",
            "InstanceDeletionPending",
            "CustomResourceDefinition marked for deletion; CustomResource deletion will begin soon",
            &rfc3339(now),
        );
        next["status"]["conditions"] = Value::Array(conditions);
        DeleteDecision::Pending(next)
    }

    fn after_pending(&self, ctx: &Ctx, name: &str) {
        start_cleanup(ctx.st.clone(), name.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd(name: &str, plural: &str, kind: &str, short: &[&str]) -> Value {
        json!({"metadata": {"name": name}, "spec": {"group": "example.com",
            "names": {"plural": plural, "kind": kind, "shortNames": short},
            "versions": [{"name": "v1", "served": true, "storage": true}]}})
    }

    #[test]
    fn names_conflict_with_other_crds_of_the_group() {
        let mut first = crd("widgets.example.com", "widgets", "Widget", &["wd"]);
        let mut all = crate::cache::Objects::new();
        first["status"] = desired_status(&first, &all).expect("status");
        assert_eq!(first["status"]["conditions"][0]["reason"], "NoConflicts");
        assert_eq!(first["status"]["conditions"][1]["status"], "True");
        assert_eq!(first["status"]["storedVersions"], json!(["v1"]));
        all.insert("a".into(), Arc::new(first));
        // The singular defaults to the lowercased kind, which would conflict first.
        let mut second = crd("gadgets.example.com", "gadgets", "Widget", &[]);
        second["spec"]["names"]["singular"] = json!("gadget");
        let st = desired_status(&second, &all).expect("status");
        let names = &st["conditions"][0];
        assert_eq!(names["status"], "False");
        assert_eq!(names["reason"], "KindConflict");
        assert_eq!(names["message"], "\"Widget\" is already in use");
        assert_eq!(st["conditions"][1]["status"], "False");
        assert_eq!(st["conditions"][1]["reason"], "NotAccepted");
        let third = crd("things.example.com", "things", "Thing", &["wd"]);
        let st = desired_status(&third, &all).expect("status");
        assert_eq!(st["conditions"][0]["reason"], "ShortNamesConflict");
    }
}
