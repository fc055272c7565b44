//! `metrics.k8s.io/v1beta1` served by skiff itself (what metrics-server serves upstream):
//! NodeMetrics and PodMetrics, get and list (label selectors, one namespace or all), computed on
//! each request from the node agents' Summary API (`GET /stats/summary` over the agent client,
//! each node's answer cached for [`CACHE_FOR`]). CPU is, like metrics-server's, the rate of
//! `usageCoreNanoSeconds` between this summary and the node's previous one (when that is at most
//! [`MAX_WINDOW`] older; the `window` is their distance), else the agent's own `usageNanoCores`
//! (a rate over at least [`WINDOW`]); memory is the working set. Never stored; writes and
//! watches are refused.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use axum::response::Response;
use http::Method;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use skiff_api::ApiError;
use skiff_store::ListOptions;

use super::read::object_response;
use super::subresources::node_agent;
use crate::ctx::Ctx;
use crate::keys::{collection_prefix, decode};
use crate::objects::{matches, selectors};
use crate::respond::*;

/// How long one node's summary answers metrics requests.
const CACHE_FOR: Duration = Duration::from_secs(5);
/// The shortest interval the agent computes CPU rates over (its `stats::WINDOW`).
const WINDOW: &str = "1s";
/// The longest interval between two summaries a CPU rate is computed over.
const MAX_WINDOW: Duration = Duration::from_secs(60);
/// Summaries larger than this are refused (a node with thousands of pods stays far below).
const SUMMARY_LIMIT: usize = 32 << 20;
const FETCH_TIMEOUT: Duration = Duration::from_secs(15);

/// One node's summary and the one fetched before it (within the retention).
#[derive(Clone)]
struct Scrape {
    now: Arc<Value>,
    prev: Option<Arc<Value>>,
}

type Cache = Mutex<HashMap<String, (Instant, Scrape)>>;

/// Node agent address + node name → its last summary.
static SUMMARIES: LazyLock<Cache> = LazyLock::new(Mutex::default);

pub(super) async fn handle(ctx: &Ctx, method: &Method, tail: &[&str]) -> ApiResult<Response> {
    if method != Method::GET && method != Method::HEAD {
        return Err(ApiError::method_not_allowed(format!(
            "method {method} is not supported on {}",
            ctx.info.group_resource()
        )));
    }
    if ctx.query.flag("watch") {
        return Err(ApiError::method_not_allowed(format!(
            "watch is not supported on {}",
            ctx.info.group_resource()
        )));
    }
    let nodes = ctx.info.kind == "NodeMetrics";
    match tail {
        [] => {
            let items = if nodes {
                node_metrics(ctx, None).await?
            } else {
                pod_metrics(ctx, None).await?
            };
            if wants_table(&ctx.headers) {
                let table = skiff_api::table::to_table(
                    ctx.info,
                    &items,
                    crate::objects::include_object(&ctx.query),
                    json!({}),
                    now(),
                );
                return Ok(json_response(200, &table));
            }
            Ok(json_response(
                200,
                &json!({"kind": ctx.info.list_kind, "apiVersion": ctx.info.api_version(),
                    "metadata": {}, "items": items}),
            ))
        }
        [name] => {
            if ctx.info.namespaced && ctx.ns.is_none() {
                return Err(not_found_path());
            }
            let items = if nodes {
                node_metrics(ctx, Some(name)).await?
            } else {
                pod_metrics(ctx, Some(name)).await?
            };
            match items.into_iter().next() {
                Some(obj) => Ok(object_response(ctx, 200, &obj)),
                None => {
                    let shown = match &ctx.ns {
                        Some(ns) if !nodes => format!("{ns}/{name}"),
                        _ => name.to_string(),
                    };
                    let resource = if nodes { "nodemetrics" } else { "podmetrics" };
                    Err(ApiError::not_found("metrics.k8s.io", resource, &shown))
                }
            }
        }
        _ => Err(not_found_path()),
    }
}

/// The stored objects of a core kind (one namespace or all), filtered by the request's label
/// (and field) selectors, or the one named.
async fn sources(ctx: &Ctx, plural: &str, name: Option<&str>) -> ApiResult<Vec<Value>> {
    let info = skiff_api::resources::by_plural("", "v1", plural).ok_or_else(not_found_path)?;
    let (label, field) = selectors(&ctx.query, ctx.info)?;
    if let Some(name) = name {
        let key = crate::keys::object_key(info, ctx.ns.as_deref(), name);
        return match ctx.st.store.get(&key).await {
            Ok(Some(kv)) => Ok(vec![decode(&kv)?]),
            Ok(None) => Ok(Vec::new()),
            Err(e) => Err(store_err(info, name, e)),
        };
    }
    let prefix = collection_prefix(info, ctx.ns.as_deref());
    let res = ctx
        .st
        .store
        .list(&prefix, &ListOptions::default())
        .await
        .map_err(|e| store_err(info, "", e))?;
    let mut out = Vec::new();
    for kv in &res.items {
        let obj = decode(kv)?;
        if matches(&obj, &label, &field) {
            out.push(obj);
        }
    }
    Ok(out)
}

fn str_at<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

fn metadata(obj: &Value, timestamp: &str) -> Value {
    let mut md = json!({"name": str_at(obj, "/metadata/name"), "creationTimestamp": timestamp});
    if let Some(ns) = obj.pointer("/metadata/namespace") {
        md["namespace"] = ns.clone();
    }
    if let Some(l) = obj.pointer("/metadata/labels") {
        md["labels"] = l.clone();
    }
    md
}

/// `usage` and `window` from a Summary cpu/memory pair (and the same entry of the previous
/// summary); None when a figure is missing.
fn usage(stats: &Value, prev: Option<&Value>) -> Option<(Value, String)> {
    let ws = stats.pointer("/memory/workingSetBytes")?.as_u64()?;
    let (cores, window) = match prev.and_then(|p| cpu_rate(stats, p)) {
        Some(r) => r,
        None => (
            stats.pointer("/cpu/usageNanoCores")?.as_u64()?,
            WINDOW.to_string(),
        ),
    };
    Some((
        json!({"cpu": format!("{cores}n"), "memory": memory_quantity(ws)}),
        window,
    ))
}

/// Nanocores between two samples of `usageCoreNanoSeconds` and the window as a Go duration
/// (`"5.012s"`); None unless the previous sample is older, at most [`MAX_WINDOW`], and lower.
fn cpu_rate(cur: &Value, prev: &Value) -> Option<(u64, String)> {
    let time = |v: &Value| -> Option<jiff::Timestamp> { str_at(v, "/cpu/time").parse().ok() };
    let total = |v: &Value| {
        v.pointer("/cpu/usageCoreNanoSeconds")
            .and_then(Value::as_u64)
    };
    let elapsed = time(cur)?.duration_since(time(prev)?);
    let nanos = u128::try_from(elapsed.as_nanos()).ok().filter(|n| *n > 0)?;
    if nanos > MAX_WINDOW.as_nanos() {
        return None;
    }
    let used = total(cur)?.checked_sub(total(prev)?)?;
    let rate = u64::try_from(u128::from(used) * 1_000_000_000 / nanos).ok()?;
    let millis = nanos / 1_000_000;
    let window = match millis % 1000 {
        0 => format!("{}s", millis / 1000),
        ms => format!(
            "{}.{}s",
            millis / 1000,
            format!("{ms:03}").trim_end_matches('0')
        ),
    };
    Some((rate, window))
}

/// The entry of pod `(ns, name, uid)` in a summary.
fn pod_stats<'a>(summary: &'a Value, ns: &str, name: &str, uid: &str) -> Option<&'a Value> {
    summary
        .get("pods")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|p| {
            str_at(p, "/podRef/namespace") == ns
                && str_at(p, "/podRef/name") == name
                && str_at(p, "/podRef/uid") == uid
        })
}

fn container_stats<'a>(pod: &'a Value, name: &str) -> Option<&'a Value> {
    pod.get("containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|c| str_at(c, "/name") == name)
}

/// Bytes as metrics-server prints them: `Ki` when whole kibibytes, else plain bytes.
fn memory_quantity(bytes: u64) -> String {
    if bytes.is_multiple_of(1024) {
        format!("{}Ki", bytes / 1024)
    } else {
        bytes.to_string()
    }
}

async fn node_metrics(ctx: &Ctx, name: Option<&str>) -> ApiResult<Vec<Value>> {
    let nodes = sources(ctx, "nodes", name).await?;
    prefetch(ctx, nodes.iter().map(|n| str_at(n, "/metadata/name"))).await;
    let mut out = Vec::new();
    for node in nodes {
        let node_name = str_at(&node, "/metadata/name").to_string();
        let Some(summary) = summary(ctx, &node_name).await else {
            continue;
        };
        let stats = &summary.now["node"];
        let prev = summary.prev.as_ref().map(|p| &p["node"]);
        let Some((usage, window)) = usage(stats, prev) else {
            continue;
        };
        let ts = str_at(stats, "/cpu/time").to_string();
        out.push(
            json!({"kind": "NodeMetrics", "apiVersion": "metrics.k8s.io/v1beta1",
            "metadata": metadata(&node, &ts), "timestamp": ts, "window": window,
            "usage": usage}),
        );
    }
    Ok(out)
}

async fn pod_metrics(ctx: &Ctx, name: Option<&str>) -> ApiResult<Vec<Value>> {
    let pods = sources(ctx, "pods", name).await?;
    prefetch(ctx, pods.iter().map(|p| str_at(p, "/spec/nodeName"))).await;
    let mut out = Vec::new();
    for pod in pods {
        let node = str_at(&pod, "/spec/nodeName");
        if node.is_empty() || str_at(&pod, "/status/phase") != "Running" {
            continue;
        }
        let Some(summary) = summary(ctx, node).await else {
            continue;
        };
        let (ns, pname, uid) = (
            str_at(&pod, "/metadata/namespace"),
            str_at(&pod, "/metadata/name"),
            str_at(&pod, "/metadata/uid"),
        );
        let Some(stats) = pod_stats(&summary.now, ns, pname, uid) else {
            continue;
        };
        let prev = summary
            .prev
            .as_ref()
            .and_then(|p| pod_stats(p, ns, pname, uid));
        let containers: Vec<&Value> = stats
            .get("containers")
            .and_then(Value::as_array)
            .map(|a| a.iter().collect())
            .unwrap_or_default();
        // Like metrics-server: a pod is reported only with figures for every container.
        let mut usages = Vec::new();
        let mut window = None;
        for c in &containers {
            let name = str_at(c, "/name");
            let Some((u, w)) = usage(c, prev.and_then(|p| container_stats(p, name))) else {
                break;
            };
            window.get_or_insert(w);
            usages.push(json!({"name": name, "usage": u}));
        }
        if usages.is_empty() || usages.len() != containers.len() {
            continue;
        }
        let ts = containers
            .first()
            .map(|c| str_at(c, "/cpu/time").to_string())
            .unwrap_or_default();
        out.push(
            json!({"kind": "PodMetrics", "apiVersion": "metrics.k8s.io/v1beta1",
            "metadata": metadata(&pod, &ts), "timestamp": ts,
            "window": window.unwrap_or_else(|| WINDOW.to_string()), "containers": usages}),
        );
    }
    Ok(out)
}

/// Asks every node's agent at once (the answers land in the cache the loops read).
async fn prefetch<'a>(ctx: &Ctx, nodes: impl Iterator<Item = &'a str>) {
    let mut names: Vec<&str> = nodes.filter(|n| !n.is_empty()).collect();
    names.sort_unstable();
    names.dedup();
    if names.len() > 1 {
        futures::future::join_all(names.into_iter().map(|n| summary(ctx, n))).await;
    }
}

/// The node's Summary, from the cache or its agent; None when the agent cannot be asked (the
/// node is then left out, like metrics-server leaves out nodes it failed to scrape).
async fn summary(ctx: &Ctx, node: &str) -> Option<Scrape> {
    let agent = match node_agent(ctx, node).await {
        Ok(a) => a,
        Err(e) => {
            tracing::debug!(node, err = %e.message, "metrics: no agent");
            return None;
        }
    };
    let key = format!("{}:{}/{node}", agent.ip, agent.port);
    let mut last = None;
    if let Ok(mut cache) = SUMMARIES.lock() {
        cache.retain(|_, (at, _)| at.elapsed() < MAX_WINDOW);
        if let Some((at, scrape)) = cache.get(&key) {
            if at.elapsed() < CACHE_FOR {
                return Some(scrape.clone());
            }
            last = Some(scrape.now.clone());
        }
    }
    let fetched = tokio::time::timeout(FETCH_TIMEOUT, fetch(ctx, &agent)).await;
    match fetched {
        Ok(Ok(v)) => {
            let scrape = Scrape {
                now: Arc::new(v),
                prev: last,
            };
            if let Ok(mut cache) = SUMMARIES.lock() {
                cache.insert(key, (Instant::now(), scrape.clone()));
            }
            Some(scrape)
        }
        Ok(Err(e)) => {
            tracing::warn!(node, err = %e, "metrics: reading the node's summary");
            None
        }
        Err(_) => {
            tracing::warn!(node, "metrics: reading the node's summary timed out");
            None
        }
    }
}

async fn fetch(ctx: &Ctx, agent: &crate::agent_client::Agent) -> Result<Value, String> {
    let req = http::Request::get("/stats/summary")
        .header(http::header::HOST, format!("{}:{}", agent.ip, agent.port))
        .header(
            http::header::AUTHORIZATION,
            format!("Bearer {}", ctx.st.tokens.node),
        )
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|e| e.to_string())?;
    let resp = crate::agent_client::send(agent, req).await?;
    let status = resp.status();
    let body = http_body_util::Limited::new(resp.into_body(), SUMMARY_LIMIT)
        .collect()
        .await
        .map_err(|e| format!("reading the summary: {e}"))?
        .to_bytes();
    if !status.is_success() {
        return Err(format!(
            "the agent answered {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(512)])
        ));
    }
    serde_json::from_slice(&body).map_err(|e| format!("decoding the summary: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_quantities() {
        let stats = json!({"cpu": {"usageNanoCores": 123456}, "memory": {"workingSetBytes": 2048}});
        assert_eq!(
            usage(&stats, None),
            Some((json!({"cpu": "123456n", "memory": "2Ki"}), "1s".to_string()))
        );
        assert_eq!(memory_quantity(1000), "1000");
        assert_eq!(usage(&json!({"cpu": {}}), None), None);
    }

    #[test]
    fn cpu_rate_between_two_summaries() {
        let at = |t: &str, ns: u64| {
            json!({"cpu": {"time": t, "usageCoreNanoSeconds": ns, "usageNanoCores": 7},
                "memory": {"workingSetBytes": 1024}})
        };
        let prev = at("2026-12-07T07:00:00Z", 1_000_000_000);
        let cur = at("2026-12-07T07:00:05.5Z", 3_750_000_000);
        // 2.75 CPU-seconds in 5.5 s: half a core.
        assert_eq!(
            usage(&cur, Some(&prev)),
            Some((
                json!({"cpu": "500000000n", "memory": "1Ki"}),
                "5.5s".to_string()
            ))
        );
        assert_eq!(
            cpu_rate(&at("2026-12-07T07:00:10Z", 4_000_000_000), &prev).map(|r| r.1),
            Some("10s".to_string())
        );
        // Same time, older than the window, or a counter that went back: the agent's rate.
        assert_eq!(cpu_rate(&prev, &prev), None);
        assert_eq!(
            cpu_rate(&at("2026-12-07T07:05:00Z", 4_000_000_000), &prev),
            None
        );
        assert_eq!(cpu_rate(&at("2026-12-07T07:00:05Z", 1), &prev), None);
        assert_eq!(
            usage(&prev, Some(&prev)).map(|u| u.1),
            Some("1s".to_string())
        );
    }
}
