//! The availability controller (upstream's `APIServiceAvailableController`): every APIService
//! gets an `Available` condition — Local ones `True/Local`; service-backed ones after checking
//! the Service, its port, its endpoints and a `GET /apis/<group>/<version>` on an endpoint
//! (`ServiceNotFound`, `ServicePortError`, `EndpointsNotFound`, `MissingEndpoints`,
//! `FailedDiscoveryCheck`, `Passed`). The same GET fills the discovery cache the merged
//! discovery documents read. Runs every interval, after any APIService/CRD change and when a
//! proxied request could not reach its server.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;
use serde_json::{json, Value};

use super::transport::{self, NotReady};
use crate::keys::{decode, encode};
use crate::AppState;

/// Upstream's discovery check timeout.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// First re-check delay of an unavailable APIService.
const RETRY_MIN: Duration = Duration::from_secs(1);
/// Largest discovery document read from an extension server.
const DISCOVERY_LIMIT: usize = 4 * 1024 * 1024;
/// What the aggregator asks an extension server's `/apis` for (falls back to legacy JSON).
const AGGREGATED_ACCEPT: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json";

/// The condition of a Local APIService (`since` = the old transition time to keep).
pub(crate) fn local_condition(since: Option<&Value>) -> Value {
    condition(
        "True",
        "Local",
        "Local APIServices are always available",
        since,
    )
}

fn condition(status: &str, reason: &str, message: &str, since: Option<&Value>) -> Value {
    json!({
        "type": "Available", "status": status,
        "lastTransitionTime": since.cloned().unwrap_or_else(|| json!(crate::respond::now_rfc3339())),
        "reason": reason, "message": message,
    })
}

fn current_condition(obj: &Value) -> Option<&Value> {
    obj.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Available")
}

/// One GET to the extension server as the aggregator: (status, content type, JSON or Null).
async fn get_json(
    target: &transport::Target,
    config: rustls::ClientConfig,
    path: &str,
    accept: &str,
) -> Result<(u16, String, Value), String> {
    let req = http::Request::get(path)
        .header(http::header::HOST, &target.host)
        .header(http::header::ACCEPT, accept)
        .header("X-Remote-User", "system:kube-aggregator")
        .header("X-Remote-Group", "system:masters")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|e| e.to_string())?;
    let resp = transport::send(target, config, req).await?;
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = http_body_util::Limited::new(resp.into_body(), DISCOVERY_LIMIT)
        .collect()
        .await
        .map_err(|e| format!("reading the response: {e}"))?
        .to_bytes();
    Ok((
        status,
        content_type,
        serde_json::from_slice(&body).unwrap_or(Value::Null),
    ))
}

/// Checks one service-backed APIService; Ok = its discovery entry (aggregated discovery's
/// version entry), Null when the server did not let the aggregator read it.
async fn check(st: &AppState, obj: &Value) -> Result<Value, NotReady> {
    let target = transport::resolve(st, obj).await?;
    let group = obj
        .pointer("/spec/group")
        .and_then(Value::as_str)
        .unwrap_or("");
    let version = obj
        .pointer("/spec/version")
        .and_then(Value::as_str)
        .unwrap_or("");
    let url = format!(
        "https://{}:{}/apis/{group}/{version}",
        target.host, target.service_port
    );
    let failed = |e: String| NotReady {
        reason: "FailedDiscoveryCheck",
        message: format!("failing or missing response from {url}: {e}"),
    };
    let Some(front) = st.aggregator.front_proxy() else {
        return Err(failed("no front-proxy client certificate".into()));
    };
    let config = transport::client_config(obj, &front).map_err(failed)?;
    let path = format!("/apis/{group}/{version}");
    let legacy = async {
        let (status, _, list) = get_json(&target, config.clone(), &path, "application/json")
            .await
            .map_err(|e| format!("Get {url:?}: {e}"))?;
        // Upstream counts 401/403 as reachable: the server is up but does not let the
        // aggregator read discovery.
        if status == 401 || status == 403 {
            return Ok(Value::Null);
        }
        if !(200..300).contains(&status) {
            return Err(format!("bad status from {url}: {status}"));
        }
        Ok(list)
    };
    let list = match tokio::time::timeout(CHECK_TIMEOUT, legacy).await {
        Ok(Ok(list)) => list,
        Ok(Err(e)) => return Err(failed(e)),
        Err(_) => return Err(failed(format!("Get {url:?}: context deadline exceeded"))),
    };
    if list.is_null() {
        return Ok(Value::Null);
    }
    // Prefer the server's own aggregated discovery (it carries what a resource list cannot,
    // e.g. subresource response kinds); best effort, the resource list is the fallback.
    let aggregated = tokio::time::timeout(
        CHECK_TIMEOUT,
        get_json(&target, config, "/apis", AGGREGATED_ACCEPT),
    )
    .await;
    if let Ok(Ok((200, ct, doc))) = aggregated {
        if ct.contains("as=APIGroupDiscoveryList") {
            let entry = doc["items"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|i| i["metadata"]["name"] == group)
                .flat_map(|i| i["versions"].as_array().cloned().unwrap_or_default())
                .find(|v| v["version"] == version);
            if let Some(entry) = entry {
                return Ok(entry);
            }
        }
    }
    Ok(super::version_discovery(group, version, Some(&list), false))
}

/// Writes the Available condition when its status, reason or message changed.
async fn set_condition(st: &AppState, key: &str, status: &str, reason: &str, message: &str) {
    let Ok(Some(kv)) = st.store.get(key).await else {
        return;
    };
    let Ok(mut obj) = decode(&kv) else { return };
    let old = current_condition(&obj).cloned();
    if let Some(o) = &old {
        if o["status"] == status && o["reason"] == reason && o["message"] == message {
            return;
        }
    }
    // The transition time moves only when the status does.
    let since = old
        .as_ref()
        .filter(|o| o["status"] == status)
        .map(|o| o["lastTransitionTime"].clone());
    let cond = condition(status, reason, message, since.as_ref());
    let mut conditions: Vec<Value> = obj
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter(|c| c["type"] != "Available")
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    conditions.push(cond);
    obj["status"] = json!({"conditions": conditions});
    if let Err(e) = st.store.update(key, encode(&obj), kv.mod_revision).await {
        // A conflict means someone wrote it meanwhile: the next pass checks again.
        tracing::debug!(%key, error = %e, "updating an APIService's Available condition");
    }
}

/// One pass over every APIService; true when a service-backed one is unavailable.
async fn check_all(st: &Arc<AppState>) -> bool {
    let all = st.cache.snapshot(crate::cache::API_SERVICES);
    let checks = all.iter().map(|(key, obj)| {
        let st = st.clone();
        async move {
            let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
            if obj.pointer("/spec/service").is_none_or(Value::is_null) {
                st.aggregator.forget(&name);
                let c = local_condition(None);
                set_condition(&st, key, "True", "Local", c["message"].as_str().unwrap_or(""))
                    .await;
                return false;
            }
            match check(&st, obj).await {
                Ok(entry) => {
                    st.aggregator.remember(&name, entry);
                    set_condition(&st, key, "True", "Passed", "all checks passed").await;
                    false
                }
                Err(nr) => {
                    tracing::debug!(apiservice = %name, reason = nr.reason, message = %nr.message, "APIService unavailable");
                    set_condition(&st, key, "False", nr.reason, &nr.message).await;
                    true
                }
            }
        }
    });
    let failing = futures::future::join_all(checks).await.contains(&true);
    // Forget discovery of APIServices that are gone.
    st.aggregator
        .retain(|name| all.contains_key(&format!("{}{name}", crate::cache::API_SERVICES)));
    failing
}

/// The controller loop; see the module doc.
pub(crate) async fn run(st: Arc<AppState>, interval: Duration) {
    st.cache.ready(&st).await;
    let mut changes = st.cache.subscribe();
    let mut shutdown = st.shutdown.clone();
    // While some APIService is unavailable, re-check sooner (1 s, doubling up to `interval`),
    // as upstream re-queues failures: a Service or its endpoints becoming ready (not watched
    // here) is then noticed within seconds.
    let mut retry = RETRY_MIN;
    // Whether the last wake-up was the re-check timer (only those back off further).
    let mut timed_out = false;
    loop {
        if *shutdown.borrow() {
            return;
        }
        if let Err(e) = super::autoregister::sync_crds(&st).await {
            tracing::warn!(error = %e, "registering the APIServices of CustomResourceDefinitions");
        }
        // Our own writes must be in the cache before the pass reads it.
        st.cache.catch_up(&st).await;
        changes.borrow_and_update();
        let wait = if check_all(&st).await {
            if timed_out {
                retry = (retry * 2).min(interval);
            }
            retry.min(interval)
        } else {
            retry = RETRY_MIN;
            interval
        };
        timed_out = false;
        tokio::select! {
            _ = tokio::time::sleep(wait) => timed_out = true,
            r = changes.changed() => {
                if r.is_err() {
                    return;
                }
                // Let a burst of changes settle into one pass.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            _ = st.aggregator.kicked() => {}
            _ = shutdown.changed() => return,
        }
    }
}
