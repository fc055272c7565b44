//! Request dispatch and the REST verbs: get, list, create, update, patch (JSON, merge, strategic,
//! apply), delete and deletecollection, with the admission steps every write goes through
//! (type checks, field validation, system metadata, defaults, validation, managedFields).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use bytes::Bytes;
use futures::FutureExt;
use http::{header, HeaderMap, Method};
use http_body_util::BodyExt;
use serde_json::{json, Map, Value};
use skiff_api::selector::{FieldSelector, LabelSelector};
use skiff_api::table::IncludeObject;
use skiff_api::{ApiError, Cause, ResourceInfo};
use skiff_store::{ListOptions, StoreError};

use crate::keys::{collection_prefix, decode, encode, object_key};
use crate::query::Query;
use crate::respond::*;
use crate::{allocator, discovery, namespaces, subresources, watch, AppState};

/// Request bodies above this are rejected with 413 (upstream's limit is 3 MiB too).
pub(crate) const BODY_LIMIT: usize = 3 * 1024 * 1024;
/// Attempts for read-modify-write cycles that lose a race with another writer.
const RETRIES: usize = 8;

/// One request against a resource.
pub(crate) struct Ctx {
    pub st: Arc<AppState>,
    pub info: &'static ResourceInfo,
    /// The namespace from the URL (None: cluster-scoped or all namespaces).
    pub ns: Option<String>,
    pub query: Query,
    pub headers: HeaderMap,
}

/// Whether a write targets the main resource or its `/status` subresource.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Main,
    Status,
}

/// The axum fallback handler: every request comes through here. Panics (bugs) become 500s.
pub(crate) async fn handle(State(st): State<Arc<AppState>>, req: Request) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let started = std::time::Instant::now();
    let resp = match std::panic::AssertUnwindSafe(dispatch(st, req))
        .catch_unwind()
        .await
    {
        Ok(resp) => resp,
        Err(_) => error_response(&ApiError::internal(
            "internal error while handling the request",
        )),
    };
    tracing::debug!(%method, %path, status = resp.status().as_u16(), elapsed_ms = started.elapsed().as_millis() as u64, "request");
    resp
}

async fn dispatch(st: Arc<AppState>, req: Request) -> Response {
    match dispatch_inner(st, req).await {
        Ok(resp) => resp,
        Err(err) => error_response(&err),
    }
}

async fn read_body(body: Body, headers: &HeaderMap) -> ApiResult<Bytes> {
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
    {
        if len > BODY_LIMIT {
            return Err(ApiError::too_large(BODY_LIMIT));
        }
    }
    match http_body_util::Limited::new(body, BODY_LIMIT)
        .collect()
        .await
    {
        Ok(c) => Ok(c.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(ApiError::too_large(BODY_LIMIT))
        }
        Err(e) => Err(ApiError::bad_request(format!(
            "reading the request body: {e}"
        ))),
    }
}

async fn dispatch_inner(st: Arc<AppState>, req: Request) -> ApiResult<Response> {
    let (mut parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let query = Query::parse(parts.uri.query());
    match path.as_str() {
        "/healthz" | "/livez" | "/readyz" | "/healthz/" | "/livez/" | "/readyz/" => {
            return Ok(json_bytes(200, b"ok".to_vec(), "text/plain; charset=utf-8"));
        }
        "/version" | "/version/" => return Ok(discovery::version()),
        _ => {}
    }
    let Some(who) = st.tokens.authenticate(&parts.headers) else {
        return Err(ApiError::unauthorized());
    };
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    // Held until the response is built (streams are long-running and not counted).
    let long_running = crate::inflight::long_running(&segs, query.flag("watch"));
    let _permit = match st.inflight.admit(who, &parts.method, long_running) {
        Ok(p) => p,
        Err(crate::inflight::PoolFull) => return Ok(crate::inflight::too_many_requests()),
    };
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1")
        .to_string();
    let (group, version, rest): (&str, &str, &[&str]) = match segs.as_slice() {
        ["api"] => return Ok(discovery::api(&parts.headers, &host)),
        ["apis"] => return Ok(discovery::apis(&parts.headers)),
        ["apis", g] => return Ok(discovery::group(g)),
        ["openapi", "v3", rest @ ..] => return Ok(discovery::openapi(rest, &query)),
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Err(not_found_path()),
    };
    if rest.is_empty() {
        return discovery::resource_list(group, version).ok_or_else(not_found_path);
    }
    // Legacy `/watch/` path prefix.
    let (rest, legacy_watch) = match rest {
        ["watch", tail @ ..] => (tail, true),
        _ => (rest, false),
    };
    let (ns, plural, tail): (Option<&str>, &str, &[&str]) = match rest {
        ["namespaces", ns, plural, tail @ ..] if *plural != "status" && *plural != "finalize" => {
            (Some(*ns), *plural, tail)
        }
        [plural, tail @ ..] => (None, *plural, tail),
        [] => return Err(not_found_path()),
    };
    let info =
        skiff_api::resources::by_plural(group, version, plural).ok_or_else(not_found_path)?;
    if ns.is_some() && !info.namespaced {
        return Err(not_found_path());
    }
    let mut query = query;
    if legacy_watch {
        query = Query::parse(Some(&format!(
            "{}&watch=true",
            parts.uri.query().unwrap_or("")
        )));
    }
    let method = parts.method.clone();
    let needs_body = matches!(
        method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    );
    // Streaming subresources keep their body for the node proxy (later); others are read here.
    let streaming = tail
        .get(1)
        .is_some_and(|s| matches!(*s, "exec" | "attach" | "portforward" | "proxy"));
    let body = if needs_body && !streaming {
        read_body(body, &parts.headers).await?
    } else {
        Bytes::new()
    };
    let ctx = Ctx {
        st,
        info,
        ns: ns.map(str::to_string),
        query,
        headers: parts.headers.clone(),
    };
    match tail {
        [] => match method {
            Method::GET if ctx.query.flag("watch") => watch::watch(ctx).await,
            Method::GET => list(&ctx).await,
            Method::POST => {
                if info.namespaced && ctx.ns.is_none() {
                    return Err(ApiError::method_not_allowed(
                        "create requires a namespace in the URL for namespaced resources",
                    ));
                }
                create(&ctx, &body).await
            }
            Method::DELETE => delete_collection(&ctx, &body).await,
            _ => Err(ApiError::method_not_allowed(format!(
                "method {method} is not supported on a collection"
            ))),
        },
        [name] => {
            if info.namespaced && ctx.ns.is_none() {
                return Err(not_found_path());
            }
            match method {
                Method::GET => get(&ctx, name).await,
                Method::PUT => update(&ctx, name, &body, Mode::Main).await,
                Method::PATCH => patch(&ctx, name, &body, Mode::Main).await,
                Method::DELETE => delete(&ctx, name, &body).await,
                _ => Err(ApiError::method_not_allowed(format!(
                    "method {method} is not supported on an object"
                ))),
            }
        }
        [name, sub] => {
            if info.namespaced && ctx.ns.is_none() {
                return Err(not_found_path());
            }
            if !info.subresources.contains(sub) {
                return Err(not_found_path());
            }
            if matches!(*sub, "log" | "exec" | "attach" | "portforward" | "proxy") {
                // Streaming subresources go to the node agent with the client's upgrade.
                let upstream = subresources::Upstream {
                    uri: parts.uri.clone(),
                    upgrade: parts.extensions.remove::<hyper::upgrade::OnUpgrade>(),
                };
                return subresources::node_proxy(&ctx, &method, name, sub, upstream).await;
            }
            subresources::handle(&ctx, &method, name, sub, &body).await
        }
        _ => Err(not_found_path()),
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers shared by the verbs.

impl Ctx {
    pub(crate) fn key(&self, name: &str) -> String {
        object_key(self.info, self.ns.as_deref(), name)
    }

    pub(crate) fn dry_run(&self) -> bool {
        self.query.get_all("dryRun").any(|v| v == "All")
    }

    /// The field manager: `?fieldManager=` or the User-Agent's command name (like upstream).
    pub(crate) fn manager(&self) -> String {
        if let Some(m) = self.query.get("fieldManager").filter(|m| !m.is_empty()) {
            return m.to_string();
        }
        let ua = self
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("unknown");
        let name = ua.split('/').next().unwrap_or(ua);
        name.chars().take(128).collect()
    }

    pub(crate) fn content_type(&self) -> Option<String> {
        self.headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|s| {
                s.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            })
            .filter(|s| !s.is_empty())
    }

    /// Decodes a request body (JSON when no Content-Type is given).
    pub(crate) fn decode_body(&self, body: &[u8]) -> ApiResult<Value> {
        if body.is_empty() {
            return Err(ApiError::bad_request("the request body is empty"));
        }
        let ct = self
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        skiff_api::body::decode_body(ct, body)
    }

    pub(crate) async fn get_current(&self, name: &str) -> ApiResult<(Value, i64)> {
        match self.st.store.get(&self.key(name)).await {
            Ok(Some(kv)) => Ok((decode(&kv)?, kv.mod_revision)),
            Ok(None) => Err(ApiError::not_found(self.info.group, self.info.plural, name)),
            Err(e) => Err(store_err(self.info, name, e)),
        }
    }

    pub(crate) fn conflict(&self, name: &str) -> ApiError {
        ApiError::conflict(
            self.info.group,
            self.info.plural,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// `fieldValidation`: Strict rejects unknown fields (400), Warn (default) returns warnings.
    pub(crate) fn field_validation(&self, obj: &Value) -> ApiResult<Vec<String>> {
        // Upstream's decode: map-of-string fields holding other types are a 400.
        skiff_api::validate::check_types(self.info, obj)?;
        let mode = self.query.get("fieldValidation").unwrap_or("Warn");
        if mode.eq_ignore_ascii_case("Ignore") {
            return Ok(Vec::new());
        }
        let unknown = skiff_api::validate::unknown_fields(self.info, obj);
        if unknown.is_empty() {
            return Ok(Vec::new());
        }
        if mode.eq_ignore_ascii_case("Strict") {
            let list: Vec<String> = unknown
                .iter()
                .map(|f| format!("unknown field \"{f}\""))
                .collect();
            return Err(ApiError::bad_request(format!(
                "strict decoding error: {}",
                list.join(", ")
            )));
        }
        Ok(unknown
            .iter()
            .map(|f| format!("unknown field \"{f}\""))
            .collect())
    }
}

pub(crate) fn meta(obj: &Value) -> &Value {
    obj.get("metadata").unwrap_or(&Value::Null)
}

pub(crate) fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    meta(obj).get(field).and_then(Value::as_str)
}

pub(crate) fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.is_object() {
        *obj = json!({});
    }
    let root = obj.as_object_mut().expect("object ensured above");
    let m = root.entry("metadata").or_insert_with(|| json!({}));
    if !m.is_object() {
        *m = json!({});
    }
    m.as_object_mut().expect("object ensured above")
}

/// Sets apiVersion/kind when missing; 400 when they name another kind than the URL.
pub(crate) fn check_type_meta(info: &ResourceInfo, obj: &mut Value) -> ApiResult<()> {
    let Some(map) = obj.as_object_mut() else {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    };
    let want_av = info.api_version();
    let av = map.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = map.get("kind").and_then(Value::as_str).unwrap_or("");
    if (!av.is_empty() && av != want_av) || (!kind.is_empty() && kind != info.kind) {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({av}) does not match the expected API version ({want_av})"
        ))
        .with_kind_message(kind, info));
    }
    map.insert("apiVersion".into(), json!(want_av));
    map.insert("kind".into(), json!(info.kind));
    Ok(())
}

trait KindMessage {
    fn with_kind_message(self, kind: &str, info: &ResourceInfo) -> Self;
}
impl KindMessage for ApiError {
    fn with_kind_message(mut self, kind: &str, info: &ResourceInfo) -> Self {
        if !kind.is_empty() && kind != info.kind {
            self.message = format!(
                "the kind in the data ({kind}) does not match the expected kind ({})",
                info.kind
            );
        }
        self
    }
}

fn finalizers(obj: &Value) -> Vec<String> {
    meta(obj)
        .get("finalizers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn strip_for_compare(obj: &Value) -> Value {
    let mut o = obj.clone();
    let m = meta_mut(&mut o);
    m.remove("resourceVersion");
    m.remove("managedFields");
    o
}

// ---------------------------------------------------------------------------------------------
// Admission for create and update.

/// System metadata and status reset for a new object; then defaults, validation, managedFields.
pub(crate) fn prepare_create(ctx: &Ctx, obj: &mut Value, record: bool) -> ApiResult<()> {
    let info = ctx.info;
    let now = now_rfc3339();
    {
        let m = meta_mut(obj);
        m.remove("resourceVersion");
        m.remove("deletionTimestamp");
        m.remove("deletionGracePeriodSeconds");
        m.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
        m.insert("creationTimestamp".into(), json!(now));
        if !info.namespaced {
            m.remove("namespace");
        }
    }
    // Create strategies reset status for kinds with a status subresource (nodes keep theirs).
    if info.subresources.contains(&"status") && info.kind != "Node" {
        let status = match info.kind {
            "Pod" => json!({"phase": "Pending"}),
            "Namespace" => json!({"phase": "Active"}),
            _ => json!({}),
        };
        obj["status"] = status;
    }
    if info.kind == "Namespace" && obj.pointer("/spec/finalizers").is_none() {
        obj["spec"] = json!({"finalizers": ["kubernetes"]});
    }
    if info.kind == "Namespace" {
        let name = meta_str(obj, "name").unwrap_or("").to_string();
        let m = meta_mut(obj);
        let labels = m.entry("labels").or_insert_with(|| json!({}));
        if let Some(l) = labels.as_object_mut() {
            l.insert(
                skiff_semantics::wellknown::labels::METADATA_NAME.into(),
                json!(name),
            );
        }
    }
    // Needs the uid assigned above (Job selector generation); DaemonSet template generation.
    skiff_api::defaults::prepare_create(info, obj);
    skiff_api::defaults::apply_defaults(info, obj);
    if info.kind == "Pod" && info.group.is_empty() {
        add_default_tolerations(obj, ctx.st.default_toleration_seconds);
    }
    if obj.get("spec").is_some() {
        meta_mut(obj).insert("generation".into(), json!(1));
    }
    skiff_api::validate::validate(info, obj, None)?;
    if record {
        skiff_api::apply::record_update(info, None, obj, &ctx.manager(), &now);
    }
    Ok(())
}

/// Upstream's DefaultTolerationSeconds admission plugin: every new pod that does not already
/// tolerate the not-ready / unreachable NoExecute taints gets a toleration for `seconds`, so
/// taint-based eviction waits that long before evicting it from a failed node.
pub(crate) fn add_default_tolerations(pod: &mut Value, seconds: i64) {
    const KEYS: [&str; 2] = [
        skiff_semantics::wellknown::taints::NOT_READY,
        skiff_semantics::wellknown::taints::UNREACHABLE,
    ];
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let list = spec.entry("tolerations").or_insert_with(|| json!([]));
    if list.is_null() {
        *list = json!([]);
    }
    let Some(list) = list.as_array_mut() else {
        return;
    };
    let mut missing = Vec::new();
    for key in KEYS {
        // Same test as upstream: a toleration with this key (or any key with Exists) whose
        // effect is NoExecute or empty already covers it.
        let tolerated = list.iter().any(|t| {
            let k = t.get("key").and_then(Value::as_str).unwrap_or("");
            let op = t.get("operator").and_then(Value::as_str).unwrap_or("Equal");
            let effect = t.get("effect").and_then(Value::as_str).unwrap_or("");
            (k == key || (k.is_empty() && op == "Exists"))
                && (effect.is_empty() || effect == "NoExecute")
        });
        if !tolerated {
            missing.push(
                json!({"key": key, "operator": "Exists", "effect": "NoExecute",
                "tolerationSeconds": seconds}),
            );
        }
    }
    list.extend(missing);
}

/// Builds the object to store for an update of `old` to `new`. None = nothing changed.
pub(crate) fn prepare_update(
    ctx: &Ctx,
    old: &Value,
    mut new: Value,
    mode: Mode,
    record: bool,
) -> ApiResult<Option<Value>> {
    let info = ctx.info;
    check_type_meta(info, &mut new)?;
    let name = meta_str(old, "name").unwrap_or("");
    match meta_str(&new, "name") {
        Some(n) if !n.is_empty() && n != name => {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )));
        }
        _ => {}
    }
    if info.namespaced {
        if let (Some(want), Some(got)) = (meta_str(old, "namespace"), meta_str(&new, "namespace")) {
            if !got.is_empty() && got != want {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
        }
    }
    let has_status_sub = info.subresources.contains(&"status");
    let mut new = match mode {
        Mode::Main => {
            if has_status_sub {
                match old.get("status") {
                    Some(s) => new["status"] = s.clone(),
                    None => {
                        if let Some(m) = new.as_object_mut() {
                            m.remove("status");
                        }
                    }
                }
            }
            new
        }
        Mode::Status => {
            // Status writes change status (and annotations, which controllers rely on) only.
            let mut merged = old.clone();
            match new.get("status") {
                Some(s) => merged["status"] = s.clone(),
                None => {
                    if let Some(m) = merged.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
            match meta(&new).get("annotations") {
                Some(a) => {
                    meta_mut(&mut merged).insert("annotations".into(), a.clone());
                }
                None => {
                    meta_mut(&mut merged).remove("annotations");
                }
            }
            if let Some(mf) = meta(&new).get("managedFields") {
                meta_mut(&mut merged).insert("managedFields".into(), mf.clone());
            }
            merged
        }
    };
    // System fields come from the stored object.
    {
        let old_meta = meta(old).clone();
        let m = meta_mut(&mut new);
        for f in [
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
        ] {
            match old_meta.get(f) {
                Some(v) => m.insert(f.into(), v.clone()),
                None => m.remove(f),
            };
        }
        m.remove("resourceVersion");
        if m.get("managedFields").is_none() {
            if let Some(mf) = old_meta.get("managedFields") {
                m.insert("managedFields".into(), mf.clone());
            }
        }
    }
    skiff_api::defaults::apply_defaults(info, &mut new);
    // Server-owned values derived from the stored object (DaemonSet template generation).
    skiff_api::defaults::prepare_update(info, old, &mut new);
    if is_service(info) && mode == Mode::Main {
        allocator::carry_over(old, &mut new);
    }
    if new.get("spec") != old.get("spec") && new.get("spec").is_some() {
        let g = meta(old)
            .get("generation")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        meta_mut(&mut new).insert("generation".into(), json!(g + 1));
    }
    skiff_api::validate::validate(info, &new, Some(old))?;
    if strip_for_compare(&new) == strip_for_compare(old) {
        return Ok(None);
    }
    if record {
        skiff_api::apply::record_update(info, Some(old), &mut new, &ctx.manager(), &now_rfc3339());
    }
    Ok(Some(new))
}

/// Writes an update; an object whose deletion was pending and whose finalizers are now all gone
/// is removed (the generic registry does this on update).
pub(crate) async fn commit_update(
    ctx: &Ctx,
    name: &str,
    new: Value,
    expected: i64,
) -> Result<Value, StoreError> {
    let key = ctx.key(name);
    let kv = ctx.st.store.update(&key, encode(&new), expected).await?;
    let mut stored = new;
    crate::keys::set_rv(&mut stored, kv.mod_revision);
    let pending = meta(&stored).get("deletionTimestamp").is_some();
    let grace = meta(&stored)
        .get("deletionGracePeriodSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if pending && finalizers(&stored).is_empty() && grace == 0 && ctx.info.kind != "Namespace" {
        match ctx.st.store.delete(&key, Some(kv.mod_revision)).await {
            Ok(_) if is_service(ctx.info) => allocator::on_delete(&ctx.st, &stored).await,
            Ok(_) | Err(StoreError::NotFound(_)) | Err(StoreError::Conflict { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    if ctx.info.kind == "Namespace" && pending {
        namespaces::maybe_finish(ctx.st.clone(), name);
    }
    Ok(stored)
}

// ---------------------------------------------------------------------------------------------
// Service address allocation hooks (see `allocator`).

fn is_service(info: &ResourceInfo) -> bool {
    info.group.is_empty() && info.kind == "Service"
}

/// Claims a new Service's ClusterIP and nodePorts (nothing for other kinds).
async fn allocate_on_create(ctx: &Ctx, obj: &mut Value) -> ApiResult<allocator::Claimed> {
    allocator::check_endpoint_addresses(&ctx.st, ctx.info, obj)?;
    if !is_service(ctx.info) {
        return Ok(allocator::Claimed::default());
    }
    allocator::on_create(&ctx.st, obj, ctx.dry_run()).await
}

type UpdateAllocs = Option<(allocator::Claimed, Vec<String>)>;

/// Claims what an updated Service newly uses; see [`finish_allocations`].
async fn allocate_on_update(ctx: &Ctx, old: &Value, new: &mut Value) -> ApiResult<UpdateAllocs> {
    allocator::check_endpoint_addresses(&ctx.st, ctx.info, new)?;
    if !is_service(ctx.info) {
        return Ok(None);
    }
    allocator::on_update(&ctx.st, old, new, ctx.dry_run())
        .await
        .map(Some)
}

/// After the write: release what the Service stopped using, or undo the claims on failure.
async fn finish_allocations(ctx: &Ctx, old: &Value, allocs: UpdateAllocs, committed: bool) {
    let Some((claimed, release)) = allocs else {
        return;
    };
    if committed {
        let uid = meta_str(old, "uid").unwrap_or("");
        allocator::release_keys(&ctx.st, &release, uid).await;
    } else {
        claimed.release(&ctx.st).await;
    }
}

// ---------------------------------------------------------------------------------------------
// The verbs.

fn object_response(ctx: &Ctx, code: u16, obj: &Value) -> Response {
    if wants_table(&ctx.headers) {
        let rv = meta_str(obj, "resourceVersion").unwrap_or("").to_string();
        let table = skiff_api::table::to_table(
            ctx.info,
            std::slice::from_ref(obj),
            include_object(&ctx.query),
            json!({"resourceVersion": rv}),
            now(),
        );
        return json_response(code, &table);
    }
    json_response(code, obj)
}

pub(crate) fn include_object(q: &Query) -> IncludeObject {
    match q.get("includeObject") {
        Some("None") => IncludeObject::None,
        Some("Object") => IncludeObject::Object,
        _ => IncludeObject::Metadata,
    }
}

async fn get(ctx: &Ctx, name: &str) -> ApiResult<Response> {
    let (obj, _) = ctx.get_current(name).await?;
    Ok(object_response(ctx, 200, &obj))
}

/// Selectors from the query.
pub(crate) fn selectors(q: &Query) -> ApiResult<(LabelSelector, FieldSelector)> {
    let label = LabelSelector::parse(q.get("labelSelector").unwrap_or(""))?;
    let field = FieldSelector::parse(q.get("fieldSelector").unwrap_or(""))?;
    Ok((label, field))
}

pub(crate) fn matches(obj: &Value, label: &LabelSelector, field: &FieldSelector) -> bool {
    (label.is_empty() || label.matches_object(obj)) && (field.is_empty() || field.matches(obj))
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    rv: i64,
    start: String,
}

fn encode_continue(rv: i64, start: &str) -> String {
    use base64::Engine;
    let raw = serde_json::to_vec(&ContinueToken {
        rv,
        start: start.to_string(),
    })
    .unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn decode_continue(token: &str) -> ApiResult<ContinueToken> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|raw| serde_json::from_slice::<ContinueToken>(&raw).ok())
        .ok_or_else(|| ApiError::bad_request("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)"))
}

/// Lists matching objects: (items, list revision, continue token).
pub(crate) async fn list_objects(
    ctx: &Ctx,
    prefix: &str,
    label: &LabelSelector,
    field: &FieldSelector,
    limit: i64,
) -> ApiResult<(Vec<Value>, i64, Option<String>)> {
    let mut opts = ListOptions::default();
    if let Some(token) = ctx.query.get("continue").filter(|t| !t.is_empty()) {
        let t = decode_continue(token)?;
        if !t.start.starts_with(prefix) {
            return Err(ApiError::bad_request(
                "continue key is not valid: it does not belong to this collection",
            ));
        }
        opts.revision = t.rv;
        opts.start_after = Some(t.start);
    } else if ctx.query.get("resourceVersionMatch") == Some("Exact") {
        opts.revision = ctx
            .query
            .get("resourceVersion")
            .and_then(|r| r.parse().ok())
            .ok_or_else(|| {
                ApiError::bad_request("resourceVersionMatch=Exact requires a resourceVersion")
            })?;
    }
    let mut items = Vec::new();
    loop {
        // Fetch pages of `limit` (or everything) and filter until the page is full.
        opts.limit = if limit > 0 { limit.max(50) } else { 0 };
        let res = ctx.st.store.list(prefix, &opts).await.map_err(|e| match e {
            StoreError::Compacted { .. } if ctx.query.get("continue").is_some() => ApiError::expired(
                "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
            ),
            e => store_err(ctx.info, "", e),
        })?;
        let rev = res.revision;
        opts.revision = res.revision;
        let n = res.items.len();
        for (i, kv) in res.items.iter().enumerate() {
            let obj = decode(kv)?;
            if matches(&obj, label, field) {
                items.push(obj);
                if limit > 0 && items.len() as i64 >= limit {
                    let more = i + 1 < n || res.more;
                    let token = more.then(|| encode_continue(rev, &kv.key));
                    return Ok((items, rev, token));
                }
            }
        }
        if !res.more || n == 0 {
            return Ok((items, rev, None));
        }
        opts.start_after = res.items.last().map(|kv| kv.key.clone());
    }
}

async fn list(ctx: &Ctx) -> ApiResult<Response> {
    let (label, field) = selectors(&ctx.query)?;
    let limit = ctx
        .query
        .get("limit")
        .map(|l| {
            l.parse::<i64>()
                .map_err(|_| ApiError::bad_request(format!("invalid limit {l:?}")))
        })
        .transpose()?
        .unwrap_or(0);
    let prefix = collection_prefix(ctx.info, ctx.ns.as_deref());
    let (items, rev, token) = list_objects(ctx, &prefix, &label, &field, limit).await?;
    let mut list_meta = json!({"resourceVersion": rev.to_string()});
    if let Some(t) = &token {
        list_meta["continue"] = json!(t);
    }
    if wants_table(&ctx.headers) {
        let table = skiff_api::table::to_table(
            ctx.info,
            &items,
            include_object(&ctx.query),
            list_meta,
            now(),
        );
        return Ok(json_response(200, &table));
    }
    Ok(json_response(
        200,
        &json!({"kind": ctx.info.list_kind, "apiVersion": ctx.info.api_version(), "metadata": list_meta, "items": items}),
    ))
}

fn random_suffix() -> String {
    use rand::Rng;
    // Upstream's alphabet: no vowels or confusable characters.
    const ALPHA: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::thread_rng();
    (0..5)
        .map(|_| ALPHA[rng.gen_range(0..ALPHA.len())] as char)
        .collect()
}

/// Checks the namespace of a new object exists and is not terminating.
pub(crate) async fn check_namespace(ctx: &Ctx, ns: &str) -> ApiResult<()> {
    let Some(ns_info) = skiff_api::resources::by_plural("", "v1", "namespaces") else {
        return Ok(());
    };
    let key = object_key(ns_info, None, ns);
    match ctx.st.store.get(&key).await {
        Ok(Some(kv)) => {
            let obj = decode(&kv)?;
            if meta(&obj).get("deletionTimestamp").is_some() {
                let mut e = ApiError::forbidden(format!(
                    "unable to create new content in namespace {ns} because it is being terminated"
                ));
                e.details = Some(json!({"name": ns, "kind": "namespaces", "causes": [{
                    "reason": "NamespaceTerminating",
                    "message": format!("namespace {ns} is being terminated"),
                    "field": "metadata.namespace"}]}));
                return Err(e);
            }
            Ok(())
        }
        Ok(None) => Err(ApiError::not_found("", "namespaces", ns)),
        Err(e) => Err(store_err(ns_info, ns, e)),
    }
}

/// Namespace and name checks shared by POST and apply-create.
pub(crate) async fn resolve_new_identity(ctx: &Ctx, obj: &mut Value) -> ApiResult<()> {
    if ctx.info.namespaced {
        let url_ns = ctx.ns.clone().unwrap_or_default();
        let body_ns = meta_str(obj, "namespace").unwrap_or("").to_string();
        if !body_ns.is_empty() && body_ns != url_ns {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        meta_mut(obj).insert("namespace".into(), json!(url_ns));
        check_namespace(ctx, &url_ns).await?;
    }
    Ok(())
}

async fn create(ctx: &Ctx, body: &[u8]) -> ApiResult<Response> {
    let mut obj = ctx.decode_body(body)?;
    check_type_meta(ctx.info, &mut obj)?;
    let warnings = ctx.field_validation(&obj)?;
    resolve_new_identity(ctx, &mut obj).await?;
    let name = meta_str(&obj, "name").unwrap_or("").to_string();
    let generate = meta_str(&obj, "generateName").unwrap_or("").to_string();
    if name.is_empty() && generate.is_empty() {
        return Err(ApiError::invalid(
            ctx.info.group,
            ctx.info.kind,
            "",
            vec![Cause {
                reason: "FieldValueRequired".into(),
                message: "Required value: name or generateName is required".into(),
                field: "metadata.name".into(),
            }],
        ));
    }
    let attempts = if name.is_empty() { RETRIES } else { 1 };
    for _ in 0..attempts {
        let mut candidate = obj.clone();
        let name = if name.is_empty() {
            let base: String = generate.chars().take(58).collect();
            let n = format!("{base}{}", random_suffix());
            meta_mut(&mut candidate).insert("name".into(), json!(n));
            n
        } else {
            name.clone()
        };
        prepare_create(ctx, &mut candidate, true)?;
        let claimed = allocate_on_create(ctx, &mut candidate).await?;
        if ctx.dry_run() {
            return Ok(with_warnings(
                object_response(ctx, 201, &candidate),
                &warnings,
            ));
        }
        let created = ctx
            .st
            .store
            .create(&ctx.key(&name), encode(&candidate))
            .await;
        if created.is_err() {
            claimed.release(&ctx.st).await;
        }
        match created {
            Ok(kv) => {
                crate::keys::set_rv(&mut candidate, kv.mod_revision);
                return Ok(with_warnings(
                    object_response(ctx, 201, &candidate),
                    &warnings,
                ));
            }
            Err(StoreError::AlreadyExists(_))
                if !generate.is_empty() && name != meta_str(&obj, "name").unwrap_or("") =>
            {
                continue
            }
            Err(e) => return Err(store_err(ctx.info, &name, e)),
        }
    }
    Err(timeout(format!(
        "failed to generate a unique name for {} with prefix {generate:?}",
        ctx.info.group_resource()
    )))
}

async fn update(ctx: &Ctx, name: &str, body: &[u8], mode: Mode) -> ApiResult<Response> {
    let mut new = ctx.decode_body(body)?;
    check_type_meta(ctx.info, &mut new)?;
    let warnings = ctx.field_validation(&new)?;
    let wanted_rv = meta_str(&new, "resourceVersion")
        .filter(|r| !r.is_empty())
        .map(str::to_string);
    for _ in 0..RETRIES {
        let (old, rev) = ctx.get_current(name).await?;
        if let Some(w) = &wanted_rv {
            if *w != rev.to_string() {
                return Err(ctx.conflict(name));
            }
        }
        let Some(mut prepared) = prepare_update(ctx, &old, new.clone(), mode, true)? else {
            return Ok(with_warnings(object_response(ctx, 200, &old), &warnings));
        };
        let allocs = allocate_on_update(ctx, &old, &mut prepared).await?;
        if ctx.dry_run() {
            let mut p = prepared;
            crate::keys::set_rv(&mut p, rev);
            return Ok(with_warnings(object_response(ctx, 200, &p), &warnings));
        }
        let committed = commit_update(ctx, name, prepared, rev).await;
        finish_allocations(ctx, &old, allocs, committed.is_ok()).await;
        match committed {
            Ok(stored) => return Ok(with_warnings(object_response(ctx, 200, &stored), &warnings)),
            Err(StoreError::Conflict { .. }) if wanted_rv.is_none() => continue,
            Err(e) => return Err(store_err(ctx.info, name, e)),
        }
    }
    Err(ctx.conflict(name))
}

/// The patch body and type from the request.
pub(crate) enum PatchKind {
    Json,
    Merge,
    Strategic,
    Apply,
}

pub(crate) fn patch_kind(ctx: &Ctx) -> ApiResult<PatchKind> {
    match ctx.content_type().as_deref() {
        Some("application/json-patch+json") => Ok(PatchKind::Json),
        Some("application/merge-patch+json") => Ok(PatchKind::Merge),
        Some("application/strategic-merge-patch+json") => Ok(PatchKind::Strategic),
        Some("application/apply-patch+yaml") | Some("application/apply-patch+json") => {
            Ok(PatchKind::Apply)
        }
        other => Err(ApiError::unsupported_media_type(other.unwrap_or(""))),
    }
}

pub(crate) fn parse_patch(kind: &PatchKind, body: &[u8]) -> ApiResult<Value> {
    if body.is_empty() {
        return Err(ApiError::bad_request("the patch body is empty"));
    }
    match kind {
        PatchKind::Apply => serde_json::from_slice(body).or_else(|_| {
            serde_norway::from_slice::<Value>(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))
        }),
        _ => serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}"))),
    }
}

/// Applies a parsed patch to `cur`.
pub(crate) fn apply_patch(
    ctx: &Ctx,
    kind: &PatchKind,
    cur: Option<&Value>,
    patch: &Value,
) -> ApiResult<Value> {
    let empty = json!({});
    let doc = cur.unwrap_or(&empty);
    match kind {
        PatchKind::Json => skiff_api::patch::json_patch(doc, patch),
        PatchKind::Merge => skiff_api::patch::merge_patch(doc, patch),
        PatchKind::Strategic => skiff_api::patch::strategic_merge_patch(ctx.info, doc, patch),
        PatchKind::Apply => {
            let manager = ctx
                .query
                .get("fieldManager")
                .filter(|m| !m.is_empty())
                .ok_or_else(|| {
                    ApiError::bad_request("PATCH /apply requires fieldManager to be set")
                })?;
            skiff_api::apply::server_side_apply(
                ctx.info,
                cur,
                patch,
                manager,
                ctx.query.flag("force"),
                &now_rfc3339(),
            )
        }
    }
}

async fn patch(ctx: &Ctx, name: &str, body: &[u8], mode: Mode) -> ApiResult<Response> {
    let kind = patch_kind(ctx)?;
    let patch = parse_patch(&kind, body)?;
    if matches!(kind, PatchKind::Apply) {
        let mut p = patch.clone();
        check_type_meta(ctx.info, &mut p)?;
        if let Some(n) = meta_str(&p, "name") {
            if n != name {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({n}) does not match the name on the URL ({name})"
                )));
            }
        }
    }
    let precondition = patch
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .map(str::to_string);
    for _ in 0..RETRIES {
        let current = match ctx.st.store.get(&ctx.key(name)).await {
            Ok(Some(kv)) => Some((decode(&kv)?, kv.mod_revision)),
            Ok(None) => None,
            Err(e) => return Err(store_err(ctx.info, name, e)),
        };
        let Some((cur, rev)) = current else {
            if matches!(kind, PatchKind::Apply) && mode == Mode::Main {
                return apply_create(ctx, name, &patch).await;
            }
            return Err(ApiError::not_found(ctx.info.group, ctx.info.plural, name));
        };
        if let Some(p) = &precondition {
            if *p != rev.to_string() {
                return Err(ctx.conflict(name));
            }
        }
        let mut new = apply_patch(ctx, &kind, Some(&cur), &patch)?;
        meta_mut(&mut new).remove("resourceVersion");
        let warnings = ctx.field_validation(&new)?;
        let record = !matches!(kind, PatchKind::Apply);
        let Some(mut prepared) = prepare_update(ctx, &cur, new, mode, record)? else {
            return Ok(with_warnings(object_response(ctx, 200, &cur), &warnings));
        };
        let allocs = allocate_on_update(ctx, &cur, &mut prepared).await?;
        if ctx.dry_run() {
            let mut p = prepared;
            crate::keys::set_rv(&mut p, rev);
            return Ok(with_warnings(object_response(ctx, 200, &p), &warnings));
        }
        let committed = commit_update(ctx, name, prepared, rev).await;
        finish_allocations(ctx, &cur, allocs, committed.is_ok()).await;
        match committed {
            Ok(stored) => return Ok(with_warnings(object_response(ctx, 200, &stored), &warnings)),
            Err(StoreError::Conflict { .. }) if precondition.is_none() => continue,
            Err(e) => return Err(store_err(ctx.info, name, e)),
        }
    }
    Err(ctx.conflict(name))
}

/// Server-side apply of a missing object creates it (201).
async fn apply_create(ctx: &Ctx, name: &str, patch: &Value) -> ApiResult<Response> {
    let mut applied = patch.clone();
    check_type_meta(ctx.info, &mut applied)?;
    let warnings = ctx.field_validation(&applied)?;
    meta_mut(&mut applied).insert("name".into(), json!(name));
    resolve_new_identity(ctx, &mut applied).await?;
    let mut obj = apply_patch(ctx, &PatchKind::Apply, None, &applied)?;
    check_type_meta(ctx.info, &mut obj)?;
    meta_mut(&mut obj).insert("name".into(), json!(name));
    if let Some(ns) = &ctx.ns {
        meta_mut(&mut obj).insert("namespace".into(), json!(ns));
    }
    prepare_create(ctx, &mut obj, false)?;
    let claimed = allocate_on_create(ctx, &mut obj).await?;
    if ctx.dry_run() {
        return Ok(with_warnings(object_response(ctx, 201, &obj), &warnings));
    }
    let created = ctx.st.store.create(&ctx.key(name), encode(&obj)).await;
    if created.is_err() {
        claimed.release(&ctx.st).await;
    }
    let kv = created.map_err(|e| store_err(ctx.info, name, e))?;
    crate::keys::set_rv(&mut obj, kv.mod_revision);
    Ok(with_warnings(object_response(ctx, 201, &obj), &warnings))
}

pub(crate) async fn update_or_patch(
    ctx: &Ctx,
    method: &Method,
    name: &str,
    body: &[u8],
    mode: Mode,
) -> ApiResult<Response> {
    match *method {
        Method::PUT => update(ctx, name, body, mode).await,
        Method::PATCH => patch(ctx, name, body, mode).await,
        _ => get(ctx, name).await,
    }
}

// ---------------------------------------------------------------------------------------------
// Delete.

/// The DeleteOptions that matter here.
#[derive(Default, Clone)]
pub(crate) struct DeleteOpts {
    pub grace: Option<i64>,
    pub propagation: Option<String>,
    pub uid: Option<String>,
    pub rv: Option<String>,
    pub dry_run: bool,
}

pub(crate) fn delete_opts(ctx: &Ctx, body: &[u8]) -> ApiResult<DeleteOpts> {
    let mut o = DeleteOpts {
        dry_run: ctx.dry_run(),
        ..Default::default()
    };
    if !body.is_empty() {
        let v = ctx.decode_body(body)?;
        from_delete_options_json(&mut o, &v);
    }
    if let Some(g) = ctx.query.get("gracePeriodSeconds") {
        o.grace = Some(
            g.parse()
                .map_err(|_| ApiError::bad_request(format!("invalid gracePeriodSeconds {g:?}")))?,
        );
    }
    if let Some(p) = ctx.query.get("propagationPolicy") {
        o.propagation = Some(p.to_string());
    } else if o.propagation.is_none() {
        match ctx.query.get("orphanDependents") {
            Some("true") => o.propagation = Some("Orphan".into()),
            Some("false") => o.propagation = Some("Background".into()),
            _ => {}
        }
    }
    if let Some(p) = &o.propagation {
        if !matches!(p.as_str(), "Foreground" | "Background" | "Orphan") {
            return Err(ApiError::bad_request(format!(
                "propagationPolicy {p:?} is not supported"
            )));
        }
    }
    Ok(o)
}

pub(crate) fn from_delete_options_json(o: &mut DeleteOpts, v: &Value) {
    if let Some(g) = v.get("gracePeriodSeconds").and_then(Value::as_i64) {
        o.grace = Some(g);
    }
    if let Some(p) = v.get("propagationPolicy").and_then(Value::as_str) {
        o.propagation = Some(p.to_string());
    } else if let Some(orphan) = v.get("orphanDependents").and_then(Value::as_bool) {
        // An explicit `false` overrides a resource's orphaning default.
        let policy = if orphan { "Orphan" } else { "Background" };
        o.propagation = Some(policy.into());
    }
    if let Some(u) = v.pointer("/preconditions/uid").and_then(Value::as_str) {
        o.uid = Some(u.to_string());
    }
    if let Some(r) = v
        .pointer("/preconditions/resourceVersion")
        .and_then(Value::as_str)
    {
        o.rv = Some(r.to_string());
    }
    if v.get("dryRun")
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().any(|x| x == "All"))
    {
        o.dry_run = true;
    }
}

/// What a delete did.
pub(crate) enum Deleted {
    /// Gone from the store: the last state.
    Gone(Value),
    /// Still present (finalizers or graceful pod deletion): the updated object.
    Pending(Value),
}

/// Deletes one object following upstream's rules (preconditions, finalizers, graceful pods,
/// namespaces).
pub(crate) async fn delete_object(ctx: &Ctx, name: &str, opts: &DeleteOpts) -> ApiResult<Deleted> {
    for _ in 0..RETRIES {
        let (cur, rev) = ctx.get_current(name).await?;
        if let Some(uid) = &opts.uid {
            let have = meta_str(&cur, "uid").unwrap_or("");
            if uid != have {
                return Err(ApiError::conflict(
                    ctx.info.group,
                    ctx.info.plural,
                    name,
                    &format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {have}"),
                ));
            }
        }
        if let Some(want) = &opts.rv {
            if *want != rev.to_string() {
                return Err(ApiError::conflict(
                    ctx.info.group,
                    ctx.info.plural,
                    name,
                    &format!("Precondition failed: ResourceVersion in precondition: {want}, ResourceVersion in object meta: {rev}"),
                ));
            }
        }
        let already = meta(&cur).get("deletionTimestamp").is_some();
        let mut next = cur.clone();
        let now_ts = now();
        let result = if ctx.info.kind == "Namespace" {
            if already {
                return Ok(Deleted::Pending(cur));
            }
            let m = meta_mut(&mut next);
            m.insert("deletionTimestamp".into(), json!(rfc3339(now_ts)));
            m.insert("deletionGracePeriodSeconds".into(), json!(0));
            next["status"] = json!({"phase": "Terminating"});
            Some(next)
        } else if ctx.info.kind == "Pod" && graceful_pod(&cur, opts) {
            let grace = pod_grace(&cur, opts);
            let cur_grace = meta(&cur)
                .get("deletionGracePeriodSeconds")
                .and_then(Value::as_i64);
            if already && cur_grace.is_some_and(|g| g <= grace) {
                return Ok(Deleted::Pending(cur));
            }
            let at = now_ts
                .checked_add(jiff::SignedDuration::from_secs(grace))
                .unwrap_or(now_ts);
            let m = meta_mut(&mut next);
            m.insert("deletionTimestamp".into(), json!(rfc3339(at)));
            m.insert("deletionGracePeriodSeconds".into(), json!(grace));
            Some(next)
        } else {
            let mut fins = finalizers(&cur);
            // The garbage collector clears these: it deletes (Foreground) or releases (Orphan)
            // the dependents first, then removes the finalizer.
            let gc_finalizer = match opts.propagation.as_deref() {
                Some("Foreground") => Some("foregroundDeletion"),
                Some("Orphan") => Some("orphan"),
                // No policy: a GC finalizer already there decides, else the resource default.
                None if ctx.info.orphans_by_default()
                    && !fins
                        .iter()
                        .any(|f| f == "orphan" || f == "foregroundDeletion") =>
                {
                    Some("orphan")
                }
                _ => None,
            };
            if let Some(f) = gc_finalizer {
                if !fins.iter().any(|x| x == f) {
                    fins.push(f.into());
                }
            }
            if fins.is_empty() {
                None
            } else {
                if already && fins == finalizers(&cur) {
                    return Ok(Deleted::Pending(cur));
                }
                let m = meta_mut(&mut next);
                m.insert("finalizers".into(), json!(fins));
                if !already {
                    m.insert("deletionTimestamp".into(), json!(rfc3339(now_ts)));
                    m.insert("deletionGracePeriodSeconds".into(), json!(0));
                }
                Some(next)
            }
        };
        match result {
            Some(mut updated) => {
                if !already {
                    let g = meta(&cur).get("generation").and_then(Value::as_i64);
                    if let Some(g) = g {
                        meta_mut(&mut updated).insert("generation".into(), json!(g + 1));
                    }
                }
                meta_mut(&mut updated).remove("resourceVersion");
                if opts.dry_run {
                    return Ok(Deleted::Pending(updated));
                }
                let key = ctx.key(name);
                match ctx.st.store.update(&key, encode(&updated), rev).await {
                    Ok(kv) => {
                        crate::keys::set_rv(&mut updated, kv.mod_revision);
                        if ctx.info.kind == "Namespace" {
                            namespaces::start_finalizer(ctx.st.clone(), name.to_string());
                        }
                        return Ok(Deleted::Pending(updated));
                    }
                    Err(StoreError::Conflict { .. }) => continue,
                    Err(e) => return Err(store_err(ctx.info, name, e)),
                }
            }
            None => {
                if opts.dry_run {
                    return Ok(Deleted::Gone(cur));
                }
                match ctx.st.store.delete(&ctx.key(name), Some(rev)).await {
                    Ok(kv) => {
                        if is_service(ctx.info) {
                            allocator::on_delete(&ctx.st, &cur).await;
                        }
                        let mut last = cur;
                        crate::keys::set_rv(&mut last, kv.mod_revision);
                        return Ok(Deleted::Gone(last));
                    }
                    Err(StoreError::Conflict { .. }) => continue,
                    Err(e) => return Err(store_err(ctx.info, name, e)),
                }
            }
        }
    }
    Err(ctx.conflict(name))
}

/// Pods bound to a node are deleted gracefully unless the grace period is 0.
fn graceful_pod(pod: &Value, opts: &DeleteOpts) -> bool {
    let bound = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty());
    bound && pod_grace(pod, opts) > 0 && !pod_finished(pod)
}

fn pod_finished(pod: &Value) -> bool {
    matches!(
        pod.pointer("/status/phase").and_then(Value::as_str),
        Some("Succeeded") | Some("Failed")
    )
}

fn pod_grace(pod: &Value, opts: &DeleteOpts) -> i64 {
    opts.grace
        .or_else(|| {
            pod.pointer("/spec/terminationGracePeriodSeconds")
                .and_then(Value::as_i64)
        })
        .unwrap_or(30)
        .max(0)
}

fn deleted_status(ctx: &Ctx, obj: &Value) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
        "details": {"name": meta_str(obj, "name").unwrap_or(""), "group": ctx.info.group,
            "kind": ctx.info.plural, "uid": meta_str(obj, "uid").unwrap_or("")}})
}

async fn delete(ctx: &Ctx, name: &str, body: &[u8]) -> ApiResult<Response> {
    let opts = delete_opts(ctx, body)?;
    match delete_object(ctx, name, &opts).await? {
        Deleted::Pending(obj) => Ok(json_response(200, &obj)),
        Deleted::Gone(obj) => {
            // Pods (and a few others upstream) return the deleted object; most return a Status.
            if matches!(ctx.info.kind, "Pod" | "Service") {
                Ok(json_response(200, &obj))
            } else {
                Ok(json_response(200, &deleted_status(ctx, &obj)))
            }
        }
    }
}

async fn delete_collection(ctx: &Ctx, body: &[u8]) -> ApiResult<Response> {
    let opts = delete_opts(ctx, body)?;
    let (label, field) = selectors(&ctx.query)?;
    let prefix = collection_prefix(ctx.info, ctx.ns.as_deref());
    let (items, rev, _) = list_objects(ctx, &prefix, &label, &field, 0).await?;
    let mut out = Vec::new();
    for item in items {
        let name = meta_str(&item, "name").unwrap_or("").to_string();
        let item_ctx = Ctx {
            st: ctx.st.clone(),
            info: ctx.info,
            ns: meta_str(&item, "namespace")
                .map(str::to_string)
                .or_else(|| ctx.ns.clone()),
            query: ctx.query.clone(),
            headers: ctx.headers.clone(),
        };
        match delete_object(&item_ctx, &name, &opts).await {
            Ok(Deleted::Gone(o)) | Ok(Deleted::Pending(o)) => out.push(o),
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(json_response(
        200,
        &json!({"kind": ctx.info.list_kind, "apiVersion": ctx.info.api_version(),
            "metadata": {"resourceVersion": rev.to_string()}, "items": out}),
    ))
}

/// Re-exports for subresources.
pub(crate) async fn get_object_response(ctx: &Ctx, name: &str) -> ApiResult<Response> {
    get(ctx, name).await
}
