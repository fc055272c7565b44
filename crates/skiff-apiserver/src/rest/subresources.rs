//! Subresources: `status` (all kinds that list it), `scale` (autoscaling/v1 Scale over
//! `spec.replicas`), pod `binding` and `eviction`, and the streaming ones (`log`, `exec`, `attach`,
//! `portforward`) that go through the node-proxy seam in [`node_proxy`]. `proxy` is
//! `rest/proxy.rs`, `ephemeralcontainers` `rest/ephemeral.rs`.

use axum::response::Response;
use http::Method;
use serde_json::{json, Value};
use skiff_api::ApiError;
use skiff_store::StoreError;

use super::read::get;
use super::update::{parse_patch, patch_kind, update_or_patch, PatchKind};
use crate::ctx::{Ctx, DeleteOpts, Mode};
use crate::keys::{encode, set_rv};
use crate::objects::{meta, meta_mut, meta_str};
use crate::respond::*;
use crate::storage::{commit_update, prepare_update};

pub(crate) async fn handle(
    ctx: &Ctx,
    method: &Method,
    name: &str,
    sub: &str,
    body: &[u8],
) -> ApiResult<Response> {
    match (sub, method) {
        ("status", &Method::GET) => get(ctx, name).await,
        ("status", &Method::PUT) | ("status", &Method::PATCH) => {
            update_or_patch(ctx, method, name, body, Mode::Status).await
        }
        // A CertificateSigningRequest's Approved/Denied conditions.
        ("approval", &Method::GET) => get(ctx, name).await,
        ("approval", &Method::PUT) | ("approval", &Method::PATCH) => {
            update_or_patch(ctx, method, name, body, Mode::Approval).await
        }
        ("scale", &Method::GET) => {
            let (obj, _) = ctx.get_current(name).await?;
            Ok(json_response(200, &to_scale(ctx, &obj)))
        }
        ("scale", &Method::PUT) | ("scale", &Method::PATCH) => {
            write_scale(ctx, method, name, body).await
        }
        ("ephemeralcontainers", _) => super::ephemeral::handle(ctx, method, name, body).await,
        ("binding", &Method::POST) => binding(ctx, name, body).await,
        ("eviction", &Method::POST) => eviction(ctx, name, body).await,
        ("token", &Method::POST) => {
            crate::serviceaccount::token::token_request(ctx, name, body).await
        }
        ("finalize", &Method::PUT) => update_or_patch(ctx, method, name, body, Mode::Main).await,
        ("log" | "exec" | "attach" | "portforward", _) => {
            node_proxy(ctx, method, name, sub, Upstream::default()).await
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

fn to_scale(ctx: &Ctx, obj: &Value) -> Value {
    if let Some(kind) = &ctx.custom {
        return crate::crd::strategy::to_scale(kind, obj);
    }
    let info = ctx.info;
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
    let selector = match obj.pointer("/spec/selector") {
        // A ReplicationController's selector is a plain label map.
        Some(map) if info.group.is_empty() && info.kind == "ReplicationController" => {
            selector_string(&json!({ "matchLabels": map }))
        }
        Some(sel) => selector_string(sel),
        None => String::new(),
    };
    json!({"kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": md,
        "spec": {"replicas": replicas}, "status": {"replicas": current, "selector": selector}})
}

async fn write_scale(ctx: &Ctx, method: &Method, name: &str, body: &[u8]) -> ApiResult<Response> {
    for _ in 0..8 {
        let (cur, rev) = ctx.get_current(name).await?;
        let scale = to_scale(ctx, &cur);
        // Only a resourceVersion the client sent is a precondition; a patch applied to the
        // current Scale always carries the current one, and must be retried on races instead.
        let (new_scale, precondition) = if method == Method::PUT {
            let body = ctx.decode_body(body)?;
            let p = meta_str(&body, "resourceVersion")
                .filter(|r| !r.is_empty())
                .map(str::to_string);
            (body, p)
        } else {
            let kind = patch_kind(ctx)?;
            let patch = parse_patch(&kind, body)?;
            let p = patch
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .filter(|r| !r.is_empty())
                .map(str::to_string);
            let patched = match kind {
                PatchKind::Json => skiff_api::patch::json_patch(&scale, &patch)?,
                _ => skiff_api::patch::merge_patch(&scale, &patch)?,
            };
            (patched, p)
        };
        if let Some(p) = &precondition {
            if *p != rev.to_string() {
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
        match &ctx.custom {
            Some(kind) => crate::crd::strategy::set_replicas(kind, &mut new, replicas),
            None => new["spec"]["replicas"] = json!(replicas),
        }
        let Some(prepared) = prepare_update(ctx, &cur, new, Mode::Main, true)? else {
            return Ok(json_response(200, &scale));
        };
        if ctx.dry_run() {
            return Ok(json_response(200, &to_scale(ctx, &prepared)));
        }
        match commit_update(ctx, name, prepared, rev).await {
            Ok(stored) => return Ok(json_response(200, &to_scale(ctx, &stored))),
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
    let mut opts = DeleteOpts {
        dry_run: ctx.dry_run(),
        ..Default::default()
    };
    let mut ev = if body.is_empty() {
        json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name}})
    } else {
        ctx.decode_body(body)?
    };
    if ev.pointer("/metadata/name").and_then(Value::as_str) != Some(name) {
        return Err(ApiError::bad_request(
            "name in URL does not match name in Eviction object",
        ));
    }
    if let Some(d) = ev.get("deleteOptions") {
        opts.merge_json(d);
    }
    // Admission sees the eviction (create of pods/eviction) with the pod it targets as `old`.
    let (pod, _) = ctx.get_current(name).await?;
    crate::plugins::admit(
        &crate::plugins::Request {
            ctx,
            op: crate::plugins::Operation::Create,
            name,
            subresource: "eviction",
            old: Some(&pod),
        },
        Some(&mut ev),
    )
    .await?;
    super::eviction::evict(ctx, name, &pod, opts).await
}

/// What the node proxy needs from the client's request besides [`Ctx`].
#[derive(Default)]
pub(crate) struct Upstream {
    pub uri: http::Uri,
    /// The client's connection upgrade (exec's WebSocket), when the transport offers one.
    pub upgrade: Option<hyper::upgrade::OnUpgrade>,
}

/// Pod streaming subresources: `log`, `exec`, `attach` and `portforward` are proxied to the node
/// agent of the pod's node (see `agent_client`); upgrades (WebSocket or SPDY) pass through byte
/// for byte, the agent speaks every protocol. Other methods answer 405.
pub(crate) async fn node_proxy(
    ctx: &Ctx,
    method: &Method,
    name: &str,
    sub: &str,
    upstream: Upstream,
) -> ApiResult<Response> {
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
    match (sub, method) {
        ("log", &Method::GET)
        | ("exec" | "attach" | "portforward", &Method::GET)
        | ("exec" | "attach" | "portforward", &Method::POST) => {}
        _ => {
            return Err(ApiError::method_not_allowed(format!(
                "method {method} is not supported on pods/{sub}"
            )))
        }
    }
    // Port-forward targets the pod's network namespace, not a container.
    let container = if sub == "portforward" {
        String::new()
    } else {
        pick_container(&obj, name, ctx.query.get("container"))?
    };
    if matches!(sub, "exec" | "attach" | "portforward") {
        let phase = obj
            .pointer("/status/phase")
            .and_then(Value::as_str)
            .unwrap_or("");
        let verb = match sub {
            "exec" => "exec into",
            "attach" => "attach to",
            _ => "port-forward to",
        };
        if phase == "Succeeded" || phase == "Failed" {
            return Err(ApiError::bad_request(format!(
                "cannot {verb} a container in a completed pod; current phase is {phase}"
            )));
        }
    }
    if !(sub == "portforward" || sub == "log" && ctx.query.flag("previous")) {
        if let Some(reason) = waiting_reason(&obj, &container) {
            return Err(ApiError::bad_request(format!(
                "container \"{container}\" in pod \"{name}\" is waiting to start: {reason}"
            )));
        }
    }
    let agent = node_agent(ctx, node).await?;
    let ns = ctx.ns.as_deref().unwrap_or("default");
    // The agent's paths are kubelet-like; the query passes through unchanged (the agent ignores
    // what it does not know, `container` included).
    let path = match sub {
        "log" => format!("/containerLogs/{ns}/{name}/{container}"),
        "attach" => format!("/attach/{ns}/{name}/{container}"),
        "portforward" => format!("/portForward/{ns}/{name}"),
        _ => format!("/exec/{ns}/{name}/{container}"),
    };
    let path = match upstream.uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    let mut req = http::Request::builder()
        .method(method.clone())
        .uri(path)
        .header(http::header::HOST, format!("{}:{}", agent.ip, agent.port))
        .header(
            http::header::AUTHORIZATION,
            format!("Bearer {}", ctx.st.tokens.node),
        );
    {
        // Everything the agent needs to answer an upgrade itself (its Sec-WebSocket-Accept is
        // computed from the client's key, so its 101 is valid for the client as is).
        for (k, v) in ctx.headers.iter() {
            let k = k.as_str();
            if matches!(k, "connection" | "upgrade" | "x-stream-protocol-version")
                || (k.starts_with("sec-websocket-") && k != "sec-websocket-extensions")
            {
                req = req.header(k, v);
            }
        }
    }
    let req = req
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .map_err(|e| ApiError::internal(format!("building the node agent request: {e}")))?;
    let resp = crate::agent_client::send(&agent, req)
        .await
        .map_err(|e| unavailable(format!("error dialing the node agent of node {node}: {e}")))?;
    if resp.status() == http::StatusCode::SWITCHING_PROTOCOLS {
        let Some(client) = upstream.upgrade else {
            return Err(ApiError::bad_request("this connection cannot be upgraded"));
        };
        let mut out = Response::builder().status(101);
        for (k, v) in resp.headers() {
            out = out.header(k, v);
        }
        let agent_io = hyper::upgrade::on(resp);
        let what = sub.to_string();
        tokio::spawn(async move {
            let (Ok(agent_io), Ok(client_io)) = (agent_io.await, client.await) else {
                return;
            };
            let mut a = hyper_util::rt::TokioIo::new(agent_io);
            let mut c = hyper_util::rt::TokioIo::new(client_io);
            // Large buffers: port-forward moves bulk data through here.
            let copied =
                tokio::io::copy_bidirectional_with_sizes(&mut c, &mut a, 64 << 10, 64 << 10);
            if let Err(err) = copied.await {
                tracing::debug!(%err, "{what} stream ended with an error");
            }
        });
        return out
            .body(axum::body::Body::empty())
            .map_err(|e| ApiError::internal(format!("building the upgrade response: {e}")));
    }
    // Logs (and agent errors, which are Status JSON already): stream the body through.
    let mut out = Response::builder().status(resp.status());
    if let Some(ct) = resp.headers().get(http::header::CONTENT_TYPE) {
        out = out.header(http::header::CONTENT_TYPE, ct);
    }
    out.body(axum::body::Body::new(resp.into_body()))
        .map_err(|e| ApiError::internal(format!("building the log response: {e}")))
}

fn container_names(obj: &Value, field: &str) -> Vec<String> {
    obj.pointer(&format!("/spec/{field}"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("name").and_then(Value::as_str))
        .map(str::to_string)
        .collect()
}

/// The container a log/exec request targets, with upstream's errors.
fn pick_container(obj: &Value, pod: &str, requested: Option<&str>) -> ApiResult<String> {
    let containers = container_names(obj, "containers");
    let init = container_names(obj, "initContainers");
    let ephemeral = container_names(obj, "ephemeralContainers");
    match requested.filter(|c| !c.is_empty()) {
        Some(c) => {
            if containers
                .iter()
                .chain(&init)
                .chain(&ephemeral)
                .any(|n| n == c)
            {
                Ok(c.to_string())
            } else {
                Err(ApiError::bad_request(format!(
                    "container {c} is not valid for pod {pod}"
                )))
            }
        }
        None if containers.len() == 1 => Ok(containers[0].clone()),
        None => {
            let mut msg = format!(
                "a container name must be specified for pod {pod}, choose one of: [{}]",
                containers.join(" ")
            );
            if !init.is_empty() {
                msg.push_str(&format!(
                    " or one of the init containers: [{}]",
                    init.join(" ")
                ));
            }
            Err(ApiError::bad_request(msg))
        }
    }
}

/// `state.waiting.reason` of the container's status, if it is waiting (never started).
fn waiting_reason(obj: &Value, container: &str) -> Option<String> {
    [
        "containerStatuses",
        "initContainerStatuses",
        "ephemeralContainerStatuses",
    ]
    .iter()
    .filter_map(|f| {
        obj.pointer(&format!("/status/{f}"))
            .and_then(Value::as_array)
    })
    .flatten()
    .find(|s| s.get("name").and_then(Value::as_str) == Some(container))
    .and_then(|s| s.pointer("/state/waiting"))
    .map(|w| {
        w.get("reason")
            .and_then(Value::as_str)
            .filter(|r| !r.is_empty())
            .unwrap_or("ContainerCreating")
            .to_string()
    })
}

/// The agent endpoint of `node`: InternalIP and kubelet endpoint port, dialed trusting the
/// cluster CA only.
pub(super) async fn node_agent(ctx: &Ctx, node: &str) -> ApiResult<crate::agent_client::Agent> {
    let no_agent = || unavailable(format!("no node agent for node {node}"));
    let info = skiff_api::resources::by_plural("", "v1", "nodes").ok_or_else(no_agent)?;
    let key = crate::keys::object_key(info, None, node);
    let obj = match ctx.st.store.get(&key).await {
        Ok(Some(kv)) => crate::keys::decode(&kv)?,
        Ok(None) => return Err(unavailable(format!("node {node} not found"))),
        Err(e) => return Err(store_err(info, node, e)),
    };
    let ip = obj
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|a| a.get("type").and_then(Value::as_str) == Some("InternalIP"))
        .find_map(|a| a.get("address").and_then(Value::as_str)?.parse().ok())
        .ok_or_else(no_agent)?;
    let port = obj
        .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p != 0)
        .ok_or_else(no_agent)?;
    let pki =
        ctx.st.pki.as_ref().ok_or_else(|| {
            unavailable("this API server has no cluster CA to verify node agents")
        })?;
    Ok(crate::agent_client::Agent {
        ip,
        port,
        tls: pki.agent_tls.clone(),
        local: ctx.st.local_agent(node),
    })
}
