//! API aggregation (upstream's kube-aggregator, in the API server process): APIServices
//! registered for the built-in and CRD group/versions (`autoregister`), the Available condition
//! (`available`), requests under a group/version claimed by a service-backed APIService
//! proxied to its extension API server (`proxy`, `transport`), the front-proxy identity and
//! the `extension-apiserver-authentication` ConfigMap (`certs`), and the aggregated groups
//! merged into `/apis`, `/apis/<group>` and aggregated discovery (here).
//!
//! APIServices are read from the shared configuration cache (`cache::API_SERVICES`).

mod autoregister;
mod available;
pub(crate) mod certs;
mod proxy;
mod transport;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use axum::response::Response;
use serde_json::{json, Value};

pub(crate) use autoregister::register_builtin;
pub(crate) use proxy::proxy;

use crate::AppState;

/// Aggregation state shared by the request path and the availability controller.
#[derive(Default)]
pub(crate) struct Aggregator {
    front_proxy: OnceLock<Arc<certs::FrontProxy>>,
    /// The last discovery entry (an aggregated discovery version) of each service-backed
    /// APIService's server, by APIService name.
    discovery: RwLock<HashMap<String, Value>>,
    /// Wakes the availability controller early.
    kick: tokio::sync::Notify,
}

impl Aggregator {
    pub(crate) fn set_front_proxy(&self, fp: certs::FrontProxy) {
        let _ = self.front_proxy.set(Arc::new(fp));
    }

    pub(crate) fn front_proxy(&self) -> Option<Arc<certs::FrontProxy>> {
        self.front_proxy.get().cloned()
    }

    fn remember(&self, name: &str, list: Value) {
        if list.is_null() {
            return;
        }
        if let Ok(mut d) = self.discovery.write() {
            d.insert(name.to_string(), list);
        }
    }

    fn forget(&self, name: &str) {
        if let Ok(mut d) = self.discovery.write() {
            d.remove(name);
        }
    }

    fn retain(&self, keep: impl Fn(&str) -> bool) {
        if let Ok(mut d) = self.discovery.write() {
            d.retain(|k, _| keep(k));
        }
    }

    fn cached(&self, name: &str) -> Option<Value> {
        self.discovery.read().ok()?.get(name).cloned()
    }

    fn kick(&self) {
        self.kick.notify_one();
    }

    async fn kicked(&self) {
        self.kick.notified().await;
    }
}

/// Starts the availability controller (checks every `interval`).
pub(crate) fn start(st: Arc<AppState>, interval: Duration) {
    tokio::spawn(available::run(st, interval));
}

/// The service-backed APIService claiming `group`/`version`, if any.
pub(crate) fn claimed(st: &AppState, group: &str, version: &str) -> Option<Arc<Value>> {
    if group.is_empty() {
        return None;
    }
    let key = format!(
        "{}{}",
        crate::cache::API_SERVICES,
        autoregister::name_of(group, version)
    );
    st.cache
        .snapshot(crate::cache::API_SERVICES)
        .get(&key)
        .filter(|o| o.pointer("/spec/service").is_some_and(|s| !s.is_null()))
        .cloned()
}

/// Service-backed APIServices grouped by group, groups by descending groupPriorityMinimum and
/// versions by descending versionPriority (upstream's discovery order).
fn remote_groups(st: &AppState) -> Vec<(String, Vec<Arc<Value>>)> {
    let mut by_group: Vec<(String, i64, Vec<Arc<Value>>)> = Vec::new();
    for obj in st.cache.snapshot(crate::cache::API_SERVICES).values() {
        if obj.pointer("/spec/service").is_none_or(Value::is_null) {
            continue;
        }
        let g = obj["spec"]["group"].as_str().unwrap_or("").to_string();
        let prio = obj["spec"]["groupPriorityMinimum"].as_i64().unwrap_or(0);
        match by_group.iter_mut().find(|(n, _, _)| *n == g) {
            Some((_, p, vs)) => {
                *p = (*p).max(prio);
                vs.push(obj.clone());
            }
            None => by_group.push((g, prio, vec![obj.clone()])),
        }
    }
    by_group.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    by_group
        .into_iter()
        .map(|(g, _, mut vs)| {
            vs.sort_by_key(|o| -o["spec"]["versionPriority"].as_i64().unwrap_or(0));
            (g, vs)
        })
        .collect()
}

fn version_of(obj: &Value) -> &str {
    obj["spec"]["version"].as_str().unwrap_or("")
}

fn api_group(group: &str, versions: &[Arc<Value>]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|o| json!({"groupVersion": format!("{group}/{}", version_of(o)), "version": version_of(o)}))
        .collect();
    let preferred = vs.first().cloned().unwrap_or(Value::Null);
    json!({"name": group, "versions": vs, "preferredVersion": preferred})
}

/// `GET /apis/<group>` for a group only extension servers serve.
pub(crate) fn group(st: &AppState, group: &str) -> Option<Response> {
    if skiff_api::resources::all().iter().any(|r| r.group == group) {
        return None;
    }
    let (g, vs) = remote_groups(st).into_iter().find(|(g, _)| g == group)?;
    let mut body = api_group(&g, &vs);
    body["kind"] = json!("APIGroup");
    body["apiVersion"] = json!("v1");
    Some(crate::respond::json_response(200, &body))
}

/// An APIResourceList as an aggregated discovery version entry.
fn version_discovery(group: &str, version: &str, list: Option<&Value>, stale: bool) -> Value {
    let mut resources: Vec<Value> = Vec::new();
    let entries = list
        .and_then(|l| l["resources"].as_array())
        .cloned()
        .unwrap_or_default();
    for r in entries
        .iter()
        .filter(|r| !r["name"].as_str().unwrap_or("").contains('/'))
    {
        let name = r["name"].as_str().unwrap_or("");
        let mut e = json!({
            "resource": name,
            "responseKind": {"group": r.get("group").and_then(Value::as_str).unwrap_or(group),
                "version": r.get("version").and_then(Value::as_str).unwrap_or(version),
                "kind": r["kind"]},
            "scope": if r["namespaced"].as_bool().unwrap_or(false) { "Namespaced" } else { "Cluster" },
            "singularResource": r["singularName"],
            "verbs": r["verbs"],
        });
        for k in ["shortNames", "categories"] {
            if let Some(v) = r.get(k).filter(|v| !v.is_null()) {
                e[k] = v.clone();
            }
        }
        let prefix = format!("{name}/");
        let subs: Vec<Value> = entries
            .iter()
            .filter_map(|s| {
                let sub = s["name"].as_str()?.strip_prefix(&prefix)?;
                Some(json!({
                    "subresource": sub,
                    "responseKind": {"group": s.get("group").and_then(Value::as_str).unwrap_or(group),
                        "version": s.get("version").and_then(Value::as_str).unwrap_or(version),
                        "kind": s["kind"]},
                    "verbs": s["verbs"],
                }))
            })
            .collect();
        if !subs.is_empty() {
            e["subresources"] = Value::Array(subs);
        }
        resources.push(e);
    }
    json!({"version": version, "resources": resources,
        "freshness": if stale { "Stale" } else { "Current" }})
}

fn available(obj: &Value) -> bool {
    obj.pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Available" && c["status"] == "True")
}

/// Adds the aggregated groups to `/apis` (`base` is the local answer): legacy APIGroupList
/// entries for every service-backed APIService's group (available or not, as upstream — a
/// client then fails on that group/version alone), and aggregated discovery entries built
/// from the servers' resource lists, `freshness: Stale` for an unavailable APIService.
pub(crate) async fn merge_apis(st: &AppState, base: Response) -> Response {
    let remote = remote_groups(st);
    if remote.is_empty() {
        return base;
    }
    let (parts, body) = base.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 64 * 1024 * 1024).await else {
        return crate::respond::error_response(&skiff_api::ApiError::internal(
            "building the discovery document",
        ));
    };
    let Ok(mut doc) = serde_json::from_slice::<Value>(&bytes) else {
        return Response::from_parts(parts, axum::body::Body::from(bytes));
    };
    if doc["kind"] == "APIGroupList" {
        let groups = doc["groups"].as_array_mut();
        if let Some(groups) = groups {
            for (g, vs) in &remote {
                if !groups.iter().any(|x| x["name"] == g.as_str()) {
                    groups.push(api_group(g, vs));
                }
            }
        }
    } else if let Some(items) = doc["items"].as_array_mut() {
        for (g, vs) in &remote {
            let versions: Vec<Value> = vs
                .iter()
                .map(|o| {
                    let name = o["metadata"]["name"].as_str().unwrap_or("");
                    let mut entry = st
                        .aggregator
                        .cached(name)
                        .unwrap_or_else(|| version_discovery(g, version_of(o), None, true));
                    entry["freshness"] = json!(if available(o) { "Current" } else { "Stale" });
                    entry
                })
                .collect();
            match items
                .iter_mut()
                .find(|i| i["metadata"]["name"] == g.as_str())
            {
                // A local group an extension server claims versions of (metrics.k8s.io).
                Some(item) => {
                    if let Some(local) = item["versions"].as_array_mut() {
                        for v in versions {
                            match local.iter_mut().find(|l| l["version"] == v["version"]) {
                                Some(l) => *l = v,
                                None => local.push(v),
                            }
                        }
                    }
                }
                None => items.push(json!({"metadata": {"name": g, "creationTimestamp": null},
                    "versions": versions})),
            }
        }
    }
    let mut parts = parts;
    parts.headers.remove(http::header::CONTENT_LENGTH);
    Response::from_parts(
        parts,
        axum::body::Body::from(serde_json::to_vec(&doc).unwrap_or_default()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_list_becomes_a_discovery_version() {
        let list = json!({"kind": "APIResourceList", "groupVersion": "example.skiff.dev/v1",
        "resources": [
            {"name": "widgets", "singularName": "widget", "namespaced": true,
                "kind": "Widget", "verbs": ["get", "list"], "shortNames": ["wd"]},
            {"name": "widgets/status", "singularName": "", "namespaced": true,
                "kind": "Widget", "verbs": ["get"]},
        ]});
        let v = version_discovery("example.skiff.dev", "v1", Some(&list), false);
        assert_eq!(v["freshness"], "Current");
        assert_eq!(v["resources"].as_array().map(Vec::len), Some(1));
        let r = &v["resources"][0];
        assert_eq!(r["resource"], "widgets");
        assert_eq!(r["scope"], "Namespaced");
        assert_eq!(r["responseKind"]["group"], "example.skiff.dev");
        assert_eq!(r["shortNames"][0], "wd");
        assert_eq!(r["subresources"][0]["subresource"], "status");
        let stale = version_discovery("example.skiff.dev", "v1", None, true);
        assert_eq!(stale["freshness"], "Stale");
    }
}
