//! Admission webhooks (`k8s.io/apiserver/pkg/admission/plugin/webhook`): which webhooks of the
//! Validating/MutatingWebhookConfigurations a request matches (rules, namespace and object
//! selectors, matchConditions), the AdmissionReview sent to each and what its answer does
//! (deny, JSONPatch, warnings), with each webhook's failurePolicy applied to call errors.

use std::borrow::Cow;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Map, Value};
use skiff_api::ApiError;
use skiff_semantics::labels::label_selector_matches_json;

use crate::cache::{self, Objects};
use crate::plugins::{Operation, Request};
use crate::respond::ApiResult;

const VALIDATING: &str = "/registry/admissionregistration.k8s.io/validatingwebhookconfigurations/";
const MUTATING: &str = "/registry/admissionregistration.k8s.io/mutatingwebhookconfigurations/";

/// Warnings kept per webhook answer, and the bytes kept of each (headers stay bounded).
const MAX_WARNINGS: usize = 64;
const MAX_WARNING_LEN: usize = 4096;

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// One webhook of a configuration, defaults applied.
#[derive(Debug, Clone)]
pub(crate) struct Hook {
    pub name: String,
    client_config: Value,
    rules: Vec<Value>,
    fail_open: bool,
    ns_selector: Value,
    obj_selector: Value,
    side_effects: String,
    timeout: Duration,
    timeout_s: u64,
    reinvoke: bool,
    /// matchPolicy Equivalent (the default): other served versions of a custom resource match.
    equivalent: bool,
    /// Send `admission.k8s.io/v1beta1` (listed before v1, as upstream picks the first it knows).
    v1beta1: bool,
    match_conditions: Vec<Value>,
}

fn parse_hooks(objs: &[Arc<Value>]) -> Vec<Hook> {
    let mut out = Vec::new();
    for cfg in objs {
        for w in cfg
            .get("webhooks")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let s = |k: &str| w.get(k).and_then(Value::as_str).unwrap_or("");
            let listed = w
                .get("admissionReviewVersions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str);
            let timeout_s = w
                .get("timeoutSeconds")
                .and_then(Value::as_u64)
                .unwrap_or(10)
                .clamp(1, 30);
            out.push(Hook {
                name: s("name").to_string(),
                client_config: w.get("clientConfig").cloned().unwrap_or(Value::Null),
                rules: w
                    .get("rules")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
                fail_open: s("failurePolicy") == "Ignore",
                ns_selector: w.get("namespaceSelector").cloned().unwrap_or(json!({})),
                obj_selector: w.get("objectSelector").cloned().unwrap_or(json!({})),
                side_effects: s("sideEffects").to_string(),
                timeout: Duration::from_secs(timeout_s),
                timeout_s,
                reinvoke: s("reinvocationPolicy") == "IfNeeded",
                equivalent: s("matchPolicy") != "Exact",
                v1beta1: super::review_version(listed) == "v1beta1",
                match_conditions: w
                    .get("matchConditions")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
            });
        }
    }
    out
}

/// A cache snapshot and the webhooks parsed from it.
type Parsed = (Arc<Objects>, Arc<Vec<Hook>>);

/// The parsed webhooks of one configuration kind, rebuilt when the cached prefix changed
/// (the cache replaces a prefix's map on every change, so pointer identity tells).
pub(crate) struct Index {
    prefix: &'static str,
    cur: Mutex<Option<Parsed>>,
}

impl Index {
    pub(crate) const fn validating() -> Self {
        Index {
            prefix: VALIDATING,
            cur: Mutex::new(None),
        }
    }

    pub(crate) const fn mutating() -> Self {
        Index {
            prefix: MUTATING,
            cur: Mutex::new(None),
        }
    }

    /// Whether any configuration of this kind may exist (true until the cache's first list),
    /// so requests skip the plugin, and its copy of the object, when there are none.
    pub(crate) fn maybe_any(&self, req: &Request<'_>) -> bool {
        let cache = &req.ctx.st.cache;
        cache.revision() < 0
            || cache
                .snapshot(cache::ADMISSION)
                .range(self.prefix.to_string()..)
                .next()
                .is_some_and(|(k, _)| k.starts_with(self.prefix))
    }

    async fn hooks(&self, req: &Request<'_>) -> Arc<Vec<Hook>> {
        let st = &req.ctx.st;
        st.cache.ready(st).await;
        let snap = st.cache.snapshot(cache::ADMISSION);
        let mut cur = match self.cur.lock() {
            Ok(c) => c,
            Err(p) => p.into_inner(),
        };
        if let Some((s, hooks)) = cur.as_ref() {
            if Arc::ptr_eq(s, &snap) {
                return hooks.clone();
            }
        }
        let objs: Vec<Arc<Value>> = snap
            .range(self.prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(self.prefix))
            .map(|(_, v)| v.clone())
            .collect();
        let hooks = Arc::new(parse_hooks(&objs));
        *cur = Some((snap, hooks.clone()));
        hooks
    }
}

/// Upstream never sends its own configuration kinds to webhooks.
pub(crate) fn exempt(req: &Request<'_>) -> bool {
    let info = req.ctx.info;
    info.group == "admissionregistration.k8s.io"
        && matches!(
            info.plural,
            "validatingwebhookconfigurations"
                | "mutatingwebhookconfigurations"
                | "validatingadmissionpolicies"
                | "validatingadmissionpolicybindings"
                | "mutatingadmissionpolicies"
                | "mutatingadmissionpolicybindings"
        )
}

fn op_name(op: Operation) -> &'static str {
    match op {
        Operation::Create => "CREATE",
        Operation::Update => "UPDATE",
        Operation::Delete => "DELETE",
        Operation::Connect => "CONNECT",
    }
}

fn is_namespace(req: &Request<'_>) -> bool {
    req.ctx.info.group.is_empty() && req.ctx.info.plural == "namespaces"
}

/// The request's namespace as admission sees it (a Namespace's own name for Namespaces).
fn attr_namespace(req: &Request<'_>) -> String {
    if is_namespace(req) && req.subresource.is_empty() {
        return req.name.to_string();
    }
    if req.ctx.info.namespaced {
        req.ctx.ns.clone().unwrap_or_default()
    } else {
        String::new()
    }
}

/// The old object as webhooks see it: none on creates (an eviction's pod is the plugins' view
/// only; upstream sends no oldObject for a create).
fn old_of<'a>(req: &Request<'a>) -> Option<&'a Value> {
    if req.op == Operation::Create {
        None
    } else {
        req.old
    }
}

/// The kind of the object sent: a subresource's own kind where it has one.
fn kind_of(req: &Request<'_>, version: &str) -> Value {
    let info = req.ctx.info;
    let (g, v, k) = match req.subresource {
        "scale" => ("autoscaling", "v1", "Scale"),
        "eviction" => ("policy", "v1", "Eviction"),
        "binding" => ("", "v1", "Binding"),
        "token" => ("authentication.k8s.io", "v1", "TokenRequest"),
        _ => (info.group, version, info.kind),
    };
    json!({"group": g, "version": v, "kind": k})
}

fn strs(v: Option<&Value>) -> impl Iterator<Item = &str> {
    v.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
}

/// `rules.Matcher`: operations, group, version, resource/subresource and scope.
fn rule_matches(rule: &Value, req: &Request<'_>, version: &str) -> bool {
    let info = req.ctx.info;
    let has = |k: &str, want: &str| strs(rule.get(k)).any(|x| x == "*" || x == want);
    if !has("operations", op_name(req.op))
        || !has("apiGroups", info.group)
        || !has("apiVersions", version)
    {
        return false;
    }
    let resource_ok = strs(rule.get("resources")).any(|r| {
        let (res, sub) = r.split_once('/').unwrap_or((r, ""));
        (res == "*" || res == info.plural) && (sub == "*" || sub == req.subresource)
    });
    if !resource_ok {
        return false;
    }
    match rule.get("scope").and_then(Value::as_str).unwrap_or("*") {
        "Namespaced" => !is_namespace(req) && !attr_namespace(req).is_empty(),
        "Cluster" => is_namespace(req) || attr_namespace(req).is_empty(),
        _ => true,
    }
}

fn labels_of(obj: Option<&Value>) -> Option<&Map<String, Value>> {
    obj.and_then(|o| o.pointer("/metadata/labels"))
        .and_then(Value::as_object)
}

fn selector_is_empty(sel: &Value) -> bool {
    let empty = |k: &str| match sel.get(k) {
        None | Some(Value::Null) => true,
        Some(Value::Object(m)) => m.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        Some(_) => false,
    };
    empty("matchLabels") && empty("matchExpressions")
}

fn selector_matches(sel: &Value, labels: Option<&Map<String, Value>>) -> bool {
    match labels {
        Some(l) => label_selector_matches_json(sel, l),
        None => label_selector_matches_json(sel, &Map::new()),
    }
}

/// Whether `hook` applies to the request (rules and selectors; matchConditions are checked by
/// the caller, which applies the failure policy to their errors).
async fn hook_matches(hook: &Hook, req: &Request<'_>, obj: Option<&Value>) -> ApiResult<bool> {
    if !selector_is_empty(&hook.obj_selector) {
        let new_ok = obj.is_some() && selector_matches(&hook.obj_selector, labels_of(obj));
        let old = old_of(req);
        let old_ok = old.is_some() && selector_matches(&hook.obj_selector, labels_of(old));
        if !new_ok && !old_ok {
            return Ok(false);
        }
    }
    if !selector_is_empty(&hook.ns_selector) {
        if is_namespace(req) && req.subresource.is_empty() {
            // A Namespace matches on its own labels.
            let own = obj.or(old_of(req));
            return Ok(selector_matches(&hook.ns_selector, labels_of(own)));
        }
        let ns = attr_namespace(req);
        if ns.is_empty() {
            // Cluster-scoped objects: the namespace selector does not apply.
            return Ok(true);
        }
        let key = format!("/registry/core/namespaces/{ns}");
        let nsobj = match req.ctx.st.store.get(&key).await {
            Ok(Some(kv)) => Some(crate::keys::decode(&kv)?),
            Ok(None) => None,
            Err(e) => return Err(ApiError::internal(e.to_string())),
        };
        return Ok(selector_matches(
            &hook.ns_selector,
            labels_of(nsobj.as_ref()),
        ));
    }
    Ok(true)
}

/// The custom resource definition serving the request's resource, if it is a custom one.
fn crd_of(req: &Request<'_>) -> Option<Arc<Value>> {
    let info = req.ctx.info;
    if info.group.is_empty() {
        return None;
    }
    let key = format!("{}{}.{}", cache::CRDS, info.plural, info.group);
    req.ctx.st.cache.snapshot(cache::CRDS).get(&key).cloned()
}

/// The version a webhook is called at: the request's when a rule matches it, else (matchPolicy
/// Equivalent) the first other served version of the same custom resource a rule matches.
fn matched_version(hook: &Hook, req: &Request<'_>) -> Option<String> {
    let own = req.ctx.info.version;
    if hook.rules.iter().any(|r| rule_matches(r, req, own)) {
        return Some(own.to_string());
    }
    if !hook.equivalent {
        return None;
    }
    let crd = crd_of(req)?;
    let versions = crd.pointer("/spec/versions").and_then(Value::as_array)?;
    versions
        .iter()
        .filter(|v| v.get("served").and_then(Value::as_bool).unwrap_or(false))
        .filter_map(|v| v.get("name").and_then(Value::as_str))
        .filter(|v| *v != own)
        .find(|v| hook.rules.iter().any(|r| rule_matches(r, req, v)))
        .map(str::to_string)
}

/// `obj` at `version` of its custom resource: the conversion webhook when the CRD has one,
/// else only apiVersion changes (strategy None).
async fn to_version(
    req: &Request<'_>,
    crd: &Value,
    obj: &Value,
    version: &str,
) -> ApiResult<Value> {
    let av = format!("{}/{version}", req.ctx.info.group);
    if obj.get("apiVersion").and_then(Value::as_str) == Some(av.as_str()) {
        return Ok(obj.clone());
    }
    let strategy = crd
        .pointer("/spec/conversion/strategy")
        .and_then(Value::as_str)
        .unwrap_or("None");
    if strategy == "Webhook" {
        let mut out = super::convert(&req.ctx.st, crd, vec![obj.clone()], &av).await?;
        return out
            .pop()
            .ok_or_else(|| ApiError::internal("the conversion webhook returned no object"));
    }
    let mut o = obj.clone();
    if let Some(m) = o.as_object_mut() {
        m.insert("apiVersion".into(), json!(av));
    }
    Ok(o)
}

/// The request as one webhook sees it: at the request's version, or converted to the
/// equivalent version its rules name.
struct Sent<'a> {
    version: String,
    /// Set when converted (the CRD, for converting a patched object back).
    crd: Option<Arc<Value>>,
    obj: Option<Cow<'a, Value>>,
    old: Option<Cow<'a, Value>>,
}

impl Sent<'_> {
    fn obj(&self) -> Option<&Value> {
        self.obj.as_deref()
    }
    fn old(&self) -> Option<&Value> {
        self.old.as_deref()
    }
}

async fn sent_at<'a>(
    req: &Request<'a>,
    obj: Option<&'a Value>,
    version: String,
) -> ApiResult<Sent<'a>> {
    let old = old_of(req);
    if version == req.ctx.info.version {
        return Ok(Sent {
            version,
            crd: None,
            obj: obj.map(Cow::Borrowed),
            old: old.map(Cow::Borrowed),
        });
    }
    let crd = crd_of(req).ok_or_else(|| ApiError::internal("the custom resource went away"))?;
    let obj = match obj {
        Some(o) => Some(Cow::Owned(to_version(req, &crd, o, &version).await?)),
        None => None,
    };
    let old = match old {
        Some(o) => Some(Cow::Owned(to_version(req, &crd, o, &version).await?)),
        None => None,
    };
    Ok(Sent {
        version,
        crd: Some(crd),
        obj,
        old,
    })
}

/// The `request` of the AdmissionReview (also the `request` variable of matchConditions).
fn admission_request(req: &Request<'_>, sent: &Sent<'_>, with_objects: bool, uid: &str) -> Value {
    let info = req.ctx.info;
    let kind = kind_of(req, &sent.version);
    let resource = json!({"group": info.group, "version": sent.version, "resource": info.plural});
    let mut r = Map::new();
    r.insert("uid".into(), json!(uid));
    r.insert("kind".into(), kind);
    r.insert("resource".into(), resource);
    if !req.subresource.is_empty() {
        r.insert("subResource".into(), json!(req.subresource));
        r.insert("requestSubResource".into(), json!(req.subresource));
    }
    r.insert("requestKind".into(), kind_of(req, info.version));
    r.insert(
        "requestResource".into(),
        json!({"group": info.group, "version": info.version, "resource": info.plural}),
    );
    if !req.name.is_empty() {
        r.insert("name".into(), json!(req.name));
    }
    let ns = attr_namespace(req);
    if !ns.is_empty() {
        r.insert("namespace".into(), json!(ns));
    }
    r.insert("operation".into(), json!(op_name(req.op)));
    r.insert(
        "userInfo".into(),
        serde_json::to_value(req.user()).unwrap_or(Value::Null),
    );
    let obj = if with_objects { sent.obj() } else { None };
    let mut object = obj.cloned().unwrap_or(Value::Null);
    if let Some(o) = object.as_object_mut() {
        // Upstream encodes the object with its kind; request bodies may have left it out.
        if !o.contains_key("kind") {
            let g = r["kind"]["group"].as_str().unwrap_or("");
            let v = r["kind"]["version"].as_str().unwrap_or("");
            let av = if g.is_empty() {
                v.to_string()
            } else {
                format!("{g}/{v}")
            };
            o.insert("apiVersion".into(), json!(av));
            o.insert("kind".into(), r["kind"]["kind"].clone());
        }
    }
    r.insert("object".into(), object);
    let old = if with_objects { sent.old() } else { None };
    r.insert("oldObject".into(), old.cloned().unwrap_or(Value::Null));
    r.insert("dryRun".into(), json!(req.ctx.dry_run()));
    let opts = match req.op {
        Operation::Create => Some("CreateOptions"),
        Operation::Update => Some("UpdateOptions"),
        Operation::Delete => Some("DeleteOptions"),
        Operation::Connect => None,
    };
    if let Some(kind) = opts {
        r.insert(
            "options".into(),
            json!({"kind": kind, "apiVersion": "meta.k8s.io/v1"}),
        );
    }
    Value::Object(r)
}

/// What a webhook answered.
struct Answer {
    allowed: bool,
    status: Option<Value>,
    patch: Option<Value>,
    warnings: Vec<String>,
}

/// A call that failed (the failure policy decides) vs a decision.
enum CallError {
    /// `failed calling webhook`: subject to failurePolicy.
    Call(String),
    /// Not subject to failurePolicy (dry-run unsupported).
    Fatal(ApiError),
}

fn calling(name: &str, why: impl std::fmt::Display) -> CallError {
    CallError::Call(format!("failed calling webhook {name:?}: {why}"))
}

async fn call(
    hook: &Hook,
    req: &Request<'_>,
    sent: &Sent<'_>,
    mutating: bool,
) -> Result<Answer, CallError> {
    if req.ctx.dry_run() && !matches!(hook.side_effects.as_str(), "None" | "NoneOnDryRun") {
        return Err(CallError::Fatal(ApiError::bad_request(format!(
            "admission webhook {:?} does not support dry run",
            hook.name
        ))));
    }
    let st = &req.ctx.st;
    let uid = uuid::Uuid::new_v4().to_string();
    let api_version = if hook.v1beta1 {
        "admission.k8s.io/v1beta1"
    } else {
        "admission.k8s.io/v1"
    };
    let review = json!({
        "kind": "AdmissionReview",
        "apiVersion": api_version,
        "request": admission_request(req, sent, true, &uid),
    });
    let body = serde_json::to_vec(&review).map_err(|e| calling(&hook.name, e))?;
    let ca = hook
        .client_config
        .get("caBundle")
        .and_then(Value::as_str)
        .unwrap_or("");
    let client = super::client::client_for(ca)
        .map_err(|e| calling(&hook.name, format_args!("failed to call webhook: {e}")))?;
    // Name lookups and the Service/Endpoints reads count against the webhook's timeout too.
    let resolve = super::client::resolve(st, &hook.client_config, hook.timeout_s);
    let target = tokio::time::timeout(hook.timeout, resolve)
        .await
        .unwrap_or_else(|_| Err("context deadline exceeded".into()))
        .map_err(|e| calling(&hook.name, format_args!("failed to call webhook: {e}")))?;
    let bytes = client
        .post(&target, body, hook.timeout)
        .await
        .map_err(|e| calling(&hook.name, format_args!("failed to call webhook: {e}")))?;
    let invalid = |why: String| {
        calling(
            &hook.name,
            format_args!("received invalid webhook response: {why}"),
        )
    };
    let resp: Value = serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
    let got_av = resp.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let got_kind = resp.get("kind").and_then(Value::as_str).unwrap_or("");
    // v1beta1 answers were never checked for their kind and uid (upstream keeps that).
    if !hook.v1beta1 && (got_av != api_version || got_kind != "AdmissionReview") {
        return Err(invalid(format!(
            "expected webhook response of {api_version}, Kind=AdmissionReview, got {got_av}, Kind={got_kind}"
        )));
    }
    let Some(r) = resp.get("response").filter(|r| r.is_object()) else {
        return Err(invalid("webhook response was absent".into()));
    };
    let got_uid = r.get("uid").and_then(Value::as_str).unwrap_or("");
    if !hook.v1beta1 && got_uid != uid {
        return Err(invalid(format!(
            "expected response.uid={uid:?}, got {got_uid:?}"
        )));
    }
    let patch_b64 = r.get("patch").and_then(Value::as_str).unwrap_or("");
    let patch_type = r.get("patchType").and_then(Value::as_str);
    let patch = if patch_b64.is_empty() {
        None
    } else {
        if !mutating {
            return Err(invalid("validating webhooks may not return patches".into()));
        }
        match patch_type {
            None if !hook.v1beta1 => {
                return Err(invalid(
                    "webhook returned response.patch but not response.patchType".into(),
                ))
            }
            Some(t) if t != "JSONPatch" => {
                return Err(invalid(format!(
                    "webhook returned invalid response.patchType of {t:?}"
                )))
            }
            _ => {}
        }
        let raw = base64::engine::general_purpose::STANDARD
            .decode(patch_b64)
            .map_err(|e| invalid(e.to_string()))?;
        Some(serde_json::from_slice(&raw).map_err(|e| invalid(e.to_string()))?)
    };
    Ok(Answer {
        allowed: r.get("allowed").and_then(Value::as_bool).unwrap_or(false),
        status: r.get("status").cloned(),
        patch,
        warnings: strs(r.get("warnings"))
            .take(MAX_WARNINGS)
            .map(|w| truncate(w, MAX_WARNING_LEN))
            .collect(),
    })
}

/// `webhookerrors.ToStatusErr`: the webhook's Status with upstream's message prefix and a code
/// of at least 400.
fn denied(name: &str, status: Option<&Value>) -> ApiError {
    let s = status.cloned().unwrap_or(json!({}));
    let code = s.get("code").and_then(Value::as_u64).unwrap_or(0);
    let code = if code < 400 {
        400
    } else {
        code.min(599) as u16
    };
    let message = s.get("message").and_then(Value::as_str).unwrap_or("");
    let reason = s.get("reason").and_then(Value::as_str).unwrap_or("");
    let by = format!("admission webhook {name:?} denied the request");
    let message = if !message.is_empty() {
        format!("{by}: {message}")
    } else if !reason.is_empty() {
        format!("{by}: {reason}")
    } else {
        format!("{by} without explanation")
    };
    ApiError {
        code,
        reason: reason.to_string(),
        message,
        details: s.get("details").cloned().filter(|d| d.is_object()),
    }
}

/// Checks matchConditions; Ok(false) = skip the webhook.
fn conditions_match(hook: &Hook, req: &Request<'_>, sent: &Sent<'_>) -> Result<bool, CallError> {
    if hook.match_conditions.is_empty() {
        return Ok(true);
    }
    let mut vars = Map::new();
    vars.insert("object".into(), sent.obj().cloned().unwrap_or(Value::Null));
    vars.insert(
        "oldObject".into(),
        sent.old().cloned().unwrap_or(Value::Null),
    );
    vars.insert("request".into(), admission_request(req, sent, false, ""));
    match crate::plugins::cel_env::match_conditions(
        &req.ctx.st,
        &req.ctx.user,
        &hook.match_conditions,
        &vars,
    ) {
        Ok(crate::plugins::cel_env::Matched::Yes) => Ok(true),
        Ok(crate::plugins::cel_env::Matched::No(_)) => Ok(false),
        Err(e) => Err(calling(
            &hook.name,
            format_args!("failed to evaluate match conditions: {e}"),
        )),
    }
}

/// The outcome of one hook: None = skipped (no match, or a call error failed open); else the
/// answer and what was sent.
async fn run_hook<'a>(
    hook: &Hook,
    req: &Request<'a>,
    obj: Option<&'a Value>,
    mutating: bool,
) -> ApiResult<Option<(Answer, Sent<'a>)>> {
    let Some(version) = matched_version(hook, req) else {
        return Ok(None);
    };
    if !hook_matches(hook, req, obj).await? {
        return Ok(None);
    }
    let sent = sent_at(req, obj, version).await?;
    let outcome = match conditions_match(hook, req, &sent) {
        Ok(false) => return Ok(None),
        Ok(true) => call(hook, req, &sent, mutating).await,
        Err(e) => Err(e),
    };
    match outcome {
        Ok(a) if a.allowed => Ok(Some((a, sent))),
        Ok(a) => Err(denied(&hook.name, a.status.as_ref())),
        Err(CallError::Fatal(e)) => Err(e),
        Err(CallError::Call(msg)) if hook.fail_open => {
            tracing::warn!(webhook = %hook.name, error = %msg, "failed calling webhook, failing open");
            Ok(None)
        }
        Err(CallError::Call(msg)) => {
            tracing::warn!(webhook = %hook.name, error = %msg, "failed calling webhook, failing closed");
            Err(ApiError::internal(msg))
        }
    }
}

/// The validating webhooks, called in parallel; the first denial in configuration order wins.
pub(crate) async fn validate(
    index: &Index,
    req: &Request<'_>,
    obj: Option<&Value>,
) -> ApiResult<Vec<String>> {
    let hooks = index.hooks(req).await;
    if hooks.is_empty() {
        return Ok(Vec::new());
    }
    let results =
        futures::future::join_all(hooks.iter().map(|h| run_hook(h, req, obj, false))).await;
    let mut warnings = Vec::new();
    for r in results {
        if let Some((a, _)) = r? {
            warnings.extend(a.warnings);
        }
    }
    Ok(warnings)
}

/// The mutating webhooks in order, each seeing the previous ones' patches; webhooks with
/// `reinvocationPolicy: IfNeeded` run once more when a later webhook changed the object.
/// Returns the webhooks' warnings.
pub(crate) async fn mutate(
    index: &Index,
    req: &Request<'_>,
    mut obj: Option<&mut Value>,
) -> ApiResult<Vec<String>> {
    let hooks = index.hooks(req).await;
    if hooks.is_empty() {
        return Ok(Vec::new());
    }
    let mut warnings = Vec::new();
    let mut invoked_reinvocable: Vec<usize> = Vec::new();
    let mut reinvoke = vec![false; hooks.len()];
    for (i, hook) in hooks.iter().enumerate() {
        let changed = mutate_one(hook, req, obj.as_deref_mut(), &mut warnings).await?;
        let Some(changed) = changed else { continue };
        if changed {
            for &j in &invoked_reinvocable {
                reinvoke[j] = true;
            }
        }
        if hook.reinvoke {
            invoked_reinvocable.push(i);
        }
    }
    for (i, hook) in hooks.iter().enumerate() {
        if reinvoke[i] {
            mutate_one(hook, req, obj.as_deref_mut(), &mut warnings).await?;
        }
    }
    Ok(warnings)
}

/// One mutating webhook: None = not called, Some(changed).
async fn mutate_one(
    hook: &Hook,
    req: &Request<'_>,
    obj: Option<&mut Value>,
    warnings: &mut Vec<String>,
) -> ApiResult<Option<bool>> {
    if matched_version(hook, req).is_none() {
        return Ok(None);
    }
    // The webhook sees a copy; `obj` changes only once the patch applied.
    let current = obj.as_deref().cloned();
    let Some((answer, sent)) = run_hook(hook, req, current.as_ref(), true).await? else {
        return Ok(None);
    };
    warnings.extend(answer.warnings);
    let Some(patch) = answer
        .patch
        .filter(|p| p.as_array().is_none_or(|a| !a.is_empty()))
    else {
        return Ok(Some(false));
    };
    let (Some(o), Some(seen)) = (obj, sent.obj()) else {
        return Err(ApiError::internal(format!(
            "admission webhook {:?} attempted to modify the object, which is not supported for this operation",
            hook.name
        )));
    };
    let mut patched = skiff_api::patch::json_patch(seen, &patch).map_err(|e| {
        ApiError::internal(format!(
            "admission webhook {:?} returned an invalid patch: {}",
            hook.name, e.message
        ))
    })?;
    if let Some(crd) = &sent.crd {
        // Patched at the webhook's version: back to the request's.
        patched = to_version(req, crd, &patched, req.ctx.info.version).await?;
    }
    if patched == *o {
        return Ok(Some(false));
    }
    *o = patched;
    Ok(Some(true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn denial_messages_follow_upstream() {
        let e = denied(
            "deny.example.com",
            Some(&json!({"message": "no", "code": 403})),
        );
        assert_eq!(e.code, 403);
        assert_eq!(
            e.message,
            "admission webhook \"deny.example.com\" denied the request: no"
        );
        let e = denied("d", None);
        assert_eq!(e.code, 400);
        assert_eq!(
            e.message,
            "admission webhook \"d\" denied the request without explanation"
        );
    }

    static WIDGETS: skiff_api::ResourceInfo = skiff_api::ResourceInfo {
        group: "example.com",
        version: "v2",
        kind: "Widget",
        list_kind: "WidgetList",
        plural: "widgets",
        singular: "widget",
        namespaced: true,
        short_names: &[],
        categories: &[],
        verbs: &[],
        subresources: &[],
    };

    /// matchPolicy Equivalent: a webhook whose rules name only v1 of a custom resource is
    /// called at v1 for a v2 request, with the object converted (strategy None); Exact skips it.
    #[tokio::test]
    async fn equivalent_versions_of_a_custom_resource() {
        use skiff_store::Store;
        let dir = tempfile::tempdir().expect("tempdir");
        let store =
            Arc::new(skiff_store::SqliteStore::open(&dir.path().join("state.db")).expect("store"));
        let crd = json!({"metadata": {"name": "widgets.example.com"}, "spec": {
            "group": "example.com", "names": {"plural": "widgets", "kind": "Widget"},
            "versions": [{"name": "v1", "served": true}, {"name": "v2", "served": true},
                         {"name": "v3", "served": false}],
        }});
        store
            .create(
                &format!("{}widgets.example.com", cache::CRDS),
                serde_json::to_vec(&crd).expect("json"),
            )
            .await
            .expect("create");
        let (_tx, rx) = tokio::sync::watch::channel(false);
        let tokens = crate::Tokens {
            admin: "admin".into(),
            node: "node".into(),
        };
        let st = crate::AppState::new(store, tokens, rx);
        st.cache.ready(&st).await;
        let ctx = crate::ctx::Ctx {
            st: st.clone(),
            info: &WIDGETS,
            ns: Some("default".into()),
            query: Default::default(),
            headers: Default::default(),
            user: Arc::new(crate::auth::UserInfo::new("me", &[])),
            custom: None,
        };
        let req = Request {
            ctx: &ctx,
            op: Operation::Create,
            name: "w",
            subresource: "",
            old: None,
        };
        let hook_at = |versions: Value, policy: &str| {
            let cfg = Arc::new(json!({"webhooks": [{
                "name": "w.example.com", "matchPolicy": policy,
                "rules": [{"operations": ["CREATE"], "apiGroups": ["example.com"],
                           "apiVersions": versions, "resources": ["widgets"]}],
            }]}));
            parse_hooks(&[cfg]).remove(0)
        };
        assert_eq!(
            matched_version(&hook_at(json!(["v2"]), "Equivalent"), &req).as_deref(),
            Some("v2")
        );
        assert_eq!(
            matched_version(&hook_at(json!(["v1"]), "Equivalent"), &req).as_deref(),
            Some("v1")
        );
        assert_eq!(
            matched_version(&hook_at(json!(["v1"]), "Exact"), &req),
            None
        );
        // Not served: never equivalent.
        assert_eq!(
            matched_version(&hook_at(json!(["v3"]), "Equivalent"), &req),
            None
        );
        let obj =
            json!({"apiVersion": "example.com/v2", "kind": "Widget", "metadata": {"name": "w"}});
        let sent = sent_at(&req, Some(&obj), "v1".into()).await.expect("sent");
        assert_eq!(sent.obj().expect("object")["apiVersion"], "example.com/v1");
        let r = admission_request(&req, &sent, true, "u");
        assert_eq!(r["kind"]["version"], "v1");
        assert_eq!(r["resource"]["version"], "v1");
        assert_eq!(r["requestKind"]["version"], "v2");
        assert_eq!(r["requestResource"]["version"], "v2");
    }

    #[test]
    fn hooks_parse_with_defaults() {
        let cfg = Arc::new(json!({"webhooks": [
            {"name": "a", "admissionReviewVersions": ["v1beta1"], "clientConfig": {"url": "https://x"}},
            {"name": "b", "failurePolicy": "Ignore", "timeoutSeconds": 3, "reinvocationPolicy": "IfNeeded",
             "admissionReviewVersions": ["v1", "v1beta1"]}
        ]}));
        let hooks = parse_hooks(&[cfg]);
        assert_eq!(hooks.len(), 2);
        // The first version upstream knows, in the listed order.
        let first = Arc::new(
            json!({"webhooks": [{"name": "c", "admissionReviewVersions": ["v2", "v1beta1", "v1"]}]}),
        );
        assert!(parse_hooks(&[first])[0].v1beta1);
        assert!(hooks[0].v1beta1 && !hooks[0].fail_open && hooks[0].timeout_s == 10);
        assert!(!hooks[1].v1beta1 && hooks[1].fail_open && hooks[1].reinvoke);
        assert_eq!(hooks[1].timeout, Duration::from_secs(3));
    }
}
