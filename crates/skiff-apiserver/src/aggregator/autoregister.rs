//! Like upstream's autoregister controller: an APIService per group/version this server serves
//! itself (`automanaged: onstart`, written at start) and per served version of an Established
//! CustomResourceDefinition (`automanaged: true`, kept in step with the CRD cache).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Value};

use crate::keys::{decode, encode};
use crate::AppState;

pub(crate) const LABEL: &str = "kube-aggregator.kubernetes.io/automanaged";
pub(crate) const PREFIX: &str = crate::cache::API_SERVICES;

/// kube-apiserver's `apiVersionPriorities` for the group/versions skiff serves, plus the
/// metrics API (metrics-server's manifest uses 100/100).
fn priority(group: &str, version: &str) -> (i64, i64) {
    match (group, version) {
        ("", "v1") => (18000, 1),
        ("apiregistration.k8s.io", "v1") => (18000, 15),
        ("apps", "v1") => (17800, 15),
        ("events.k8s.io", "v1") => (17750, 15),
        ("authentication.k8s.io", "v1") => (17700, 15),
        ("authorization.k8s.io", "v1") => (17600, 15),
        ("autoscaling", "v1") => (17500, 15),
        ("autoscaling", "v2") => (17500, 30),
        ("batch", "v1") => (17400, 15),
        ("certificates.k8s.io", "v1") => (17300, 15),
        ("networking.k8s.io", "v1") => (17200, 15),
        ("policy", "v1") => (17100, 15),
        ("rbac.authorization.k8s.io", "v1") => (17000, 15),
        ("storage.k8s.io", "v1") => (16800, 15),
        ("apiextensions.k8s.io", "v1") => (16700, 15),
        ("admissionregistration.k8s.io", "v1") => (16700, 15),
        ("scheduling.k8s.io", "v1") => (16600, 15),
        ("coordination.k8s.io", "v1") => (16500, 15),
        ("node.k8s.io", "v1") => (16300, 15),
        ("discovery.k8s.io", "v1") => (16200, 15),
        ("flowcontrol.apiserver.k8s.io", "v1") => (16100, 21),
        ("metrics.k8s.io", _) => (100, 100),
        _ => (16000, 9),
    }
}

/// `<version>.<group>` (the core group's is `v1.`).
pub(crate) fn name_of(group: &str, version: &str) -> String {
    format!("{version}.{group}")
}

fn local_object(group: &str, version: &str, managed: &str, prio: (i64, i64)) -> Value {
    let mut spec = json!({"version": version, "groupPriorityMinimum": prio.0,
        "versionPriority": prio.1, "service": null});
    if !group.is_empty() {
        spec["group"] = json!(group);
    }
    json!({
        "apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
        "metadata": {"name": name_of(group, version), "labels": {LABEL: managed}},
        "spec": spec,
    })
}

/// Every group/version served by this server's own registry.
fn builtin() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for r in skiff_api::resources::all() {
        if !out.contains(&(r.group, r.version)) {
            out.push((r.group, r.version));
        }
    }
    out
}

/// Served group/versions of Established CRDs in the cache.
fn from_crds(st: &AppState) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for crd in st.cache.snapshot(crate::cache::CRDS).values() {
        let established = crd
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Established" && c["status"] == "True");
        let Some(group) = crd.pointer("/spec/group").and_then(Value::as_str) else {
            continue;
        };
        if !established {
            continue;
        }
        for v in crd
            .pointer("/spec/versions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let (Some(name), true) = (
                v.get("name").and_then(Value::as_str),
                v.get("served").and_then(Value::as_bool).unwrap_or(false),
            ) else {
                continue;
            };
            let gv = (group.to_string(), name.to_string());
            if !out.contains(&gv) {
                out.push(gv);
            }
        }
    }
    out
}

fn key(name: &str) -> String {
    format!("{PREFIX}{name}")
}

/// Creates `obj` if missing; an existing APIService is only brought back to `obj`'s spec when
/// it is managed with `managed` and still local (one pointed at a Service — metrics-server's
/// `v1beta1.metrics.k8s.io` — belongs to whoever did that).
async fn ensure(st: &AppState, obj: Value, managed: &str) -> Result<(), skiff_store::StoreError> {
    let name = obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let k = key(&name);
    match st.store.get(&k).await? {
        None => {
            let mut obj = obj;
            obj["metadata"]["uid"] = json!(uuid::Uuid::new_v4().to_string());
            obj["metadata"]["creationTimestamp"] = json!(crate::respond::now_rfc3339());
            obj["status"] = json!({"conditions": [super::available::local_condition(None)]});
            match st.store.create(&k, encode(&obj)).await {
                Ok(_) | Err(skiff_store::StoreError::AlreadyExists(_)) => Ok(()),
                Err(e) => Err(e),
            }
        }
        Some(kv) => {
            let Ok(mut cur) = decode(&kv) else {
                return Ok(());
            };
            let ours = cur.pointer(&format!("/metadata/labels/{}", LABEL.replace('/', "~1")))
                == Some(&json!(managed));
            let local = cur.pointer("/spec/service").is_none_or(Value::is_null);
            if !ours || !local || cur["spec"] == obj["spec"] {
                return Ok(());
            }
            cur["spec"] = obj["spec"].clone();
            match st.store.update(&k, encode(&cur), kv.mod_revision).await {
                Ok(_) | Err(skiff_store::StoreError::Conflict { .. }) => Ok(()),
                Err(e) => Err(e),
            }
        }
    }
}

/// Deletes APIServices managed with `managed` that are no longer wanted (and still local).
async fn prune(
    st: &AppState,
    managed: &str,
    wanted: &[String],
) -> Result<(), skiff_store::StoreError> {
    let list = st.store.list(PREFIX, &Default::default()).await?;
    for kv in list.items {
        let Ok(obj) = decode(&kv) else { continue };
        let name = obj["metadata"]["name"].as_str().unwrap_or_default();
        let label = obj
            .pointer("/metadata/labels")
            .and_then(|l| l.get(LABEL))
            .and_then(Value::as_str);
        let local = obj.pointer("/spec/service").is_none_or(Value::is_null);
        if label == Some(managed) && local && !wanted.iter().any(|w| w == name) {
            match st.store.delete(&kv.key, Some(kv.mod_revision)).await {
                Ok(_)
                | Err(skiff_store::StoreError::NotFound(_))
                | Err(skiff_store::StoreError::Conflict { .. }) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

/// At start: the built-in group/versions' APIServices (`onstart`).
pub(crate) async fn register_builtin(st: &Arc<AppState>) -> Result<(), skiff_store::StoreError> {
    let mut wanted = Vec::new();
    for (g, v) in builtin() {
        ensure(st, local_object(g, v, "onstart", priority(g, v)), "onstart").await?;
        wanted.push(name_of(g, v));
    }
    prune(st, "onstart", &wanted).await
}

/// The CRD-backed APIServices (`true`): CRD group/versions that skiff does not serve itself.
pub(crate) async fn sync_crds(st: &AppState) -> Result<(), skiff_store::StoreError> {
    let builtin = builtin();
    let mut wanted = Vec::new();
    let mut seen = BTreeMap::new();
    for (g, v) in from_crds(st) {
        if builtin.iter().any(|(bg, bv)| *bg == g && *bv == v) {
            continue;
        }
        // Upstream's CRD registration priorities: below every built-in group.
        seen.insert(name_of(&g, &v), local_object(&g, &v, "true", (1000, 100)));
    }
    for (name, obj) in seen {
        ensure(st, obj, "true").await?;
        wanted.push(name);
    }
    prune(st, "true", &wanted).await
}
