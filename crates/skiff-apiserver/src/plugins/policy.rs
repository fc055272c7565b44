//! The `ValidatingAdmissionPolicy` admission plugin (upstream
//! `k8s.io/apiserver/pkg/admission/plugin/policy/validating`): every
//! ValidatingAdmissionPolicyBinding whose policy matches a request evaluates the policy's CEL
//! `validations` against it, and denies (Deny), warns (Warn) or logs (Audit) on failure.
//!
//! Policies and bindings come from the shared cache; their expressions are compiled once per
//! policy generation into an index rebuilt when the cache changes. A small controller (started
//! with the first admission call) writes each policy's `status.observedGeneration` and
//! `status.typeChecking`. Audit annotations are evaluated and logged: skiff has no audit log.

use std::collections::HashMap;
use std::sync::{Arc, Once, RwLock, Weak};

use async_trait::async_trait;
use serde_json::{json, Map, Value};
use skiff_api::{ApiError, Cause};
use skiff_cel::{Activation, Program};
use skiff_semantics::labels::label_selector_matches_json;
use skiff_store::ListOptions;

use super::cel_env::{self, eval_conditions, Matched, ADMISSION_VARIABLES};
use super::{Operation, Plugin, Request};
use crate::cache::{ADMISSION, CRDS};
use crate::keys::{decode, encode, object_key};
use crate::respond::ApiResult;
use crate::AppState;

const POLICIES: &str = "/registry/admissionregistration.k8s.io/validatingadmissionpolicies/";
const BINDINGS: &str = "/registry/admissionregistration.k8s.io/validatingadmissionpolicybindings/";

/// Longest messageExpression result used (upstream's MaxEvaluatedMessageExpressionSizeBytes).
const MAX_MESSAGE: usize = 5 * 1024;

/// Params a selector may bring in for one binding (bounds the evaluations per request).
const MAX_PARAMS: usize = 100;
/// Objects read per page, and pages at most, when a paramRef selects params.
const PARAM_PAGE: i64 = 500;
const MAX_PARAM_PAGES: usize = 20;

/// An expression that compiled, or why not.
type Compiled = Result<Arc<Program>, String>;

struct Validation {
    expr: Compiled,
    source: String,
    message: Option<String>,
    message_expr: Option<Compiled>,
    reason: Option<String>,
}

/// One policy, compiled.
struct CompiledPolicy {
    /// uid + generation: what a recompile is keyed on.
    version: (String, i64),
    name: String,
    spec: Value,
    fail: bool,
    match_conditions: Vec<(String, Compiled)>,
    variables: Vec<(String, Compiled)>,
    validations: Vec<Validation>,
    audit: Vec<(String, Compiled)>,
}

#[derive(Default)]
struct Index {
    /// The cache change counter this index was built at.
    stamp: Option<u64>,
    policies: HashMap<String, Arc<CompiledPolicy>>,
    bindings: Vec<Arc<Value>>,
}

pub(crate) struct ValidatingAdmissionPolicy {
    index: RwLock<Arc<Index>>,
    controller: Once,
}

impl ValidatingAdmissionPolicy {
    pub(crate) fn new() -> Self {
        ValidatingAdmissionPolicy {
            index: RwLock::new(Arc::new(Index::default())),
            controller: Once::new(),
        }
    }

    /// The index, rebuilt if the cache changed since it was built.
    fn index(&self, st: &AppState) -> Arc<Index> {
        let stamp = *st.cache.subscribe().borrow();
        let current = match self.index.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        };
        if current.stamp == Some(stamp) {
            return current;
        }
        let fresh = Arc::new(build_index(st, stamp, &current));
        match self.index.write() {
            Ok(mut g) => *g = fresh.clone(),
            Err(p) => *p.into_inner() = fresh.clone(),
        }
        fresh
    }
}

fn compile(expr: Option<&str>, declared: &[&str]) -> Compiled {
    let expr = expr.unwrap_or("");
    skiff_cel::compile(expr, declared)
        .map(Arc::new)
        .map_err(|e| format!("compilation failed: {e}"))
}

fn match_condition_vars() -> Vec<&'static str> {
    ADMISSION_VARIABLES
        .iter()
        .copied()
        .filter(|v| *v != "variables")
        .collect()
}

fn compile_policy(obj: &Value) -> CompiledPolicy {
    let spec = obj.get("spec").cloned().unwrap_or(Value::Null);
    let arr = |k: &str| {
        spec.get(k)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    let mc_vars = match_condition_vars();
    CompiledPolicy {
        version: (
            text(&obj["metadata"], "uid").unwrap_or_default(),
            obj.pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(0),
        ),
        name: text(&obj["metadata"], "name").unwrap_or_default(),
        fail: spec.get("failurePolicy").and_then(Value::as_str) != Some("Ignore"),
        match_conditions: arr("matchConditions")
            .iter()
            .map(|c| {
                let e = c.get("expression").and_then(Value::as_str);
                (text(c, "name").unwrap_or_default(), compile(e, &mc_vars))
            })
            .collect(),
        variables: arr("variables")
            .iter()
            .map(|c| {
                let e = c.get("expression").and_then(Value::as_str);
                (
                    text(c, "name").unwrap_or_default(),
                    compile(e, ADMISSION_VARIABLES),
                )
            })
            .collect(),
        validations: arr("validations")
            .iter()
            .map(|v| Validation {
                expr: compile(
                    v.get("expression").and_then(Value::as_str),
                    ADMISSION_VARIABLES,
                ),
                source: text(v, "expression").unwrap_or_default(),
                message: text(v, "message"),
                message_expr: v
                    .get("messageExpression")
                    .and_then(Value::as_str)
                    .map(|e| compile(Some(e), ADMISSION_VARIABLES)),
                reason: text(v, "reason"),
            })
            .collect(),
        audit: arr("auditAnnotations")
            .iter()
            .map(|a| {
                let e = a.get("valueExpression").and_then(Value::as_str);
                (
                    text(a, "key").unwrap_or_default(),
                    compile(e, ADMISSION_VARIABLES),
                )
            })
            .collect(),
        spec,
    }
}

fn build_index(st: &AppState, stamp: u64, previous: &Index) -> Index {
    let mut policies = HashMap::new();
    for obj in st.cache.objects_under(ADMISSION, POLICIES) {
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let version = (
            obj.pointer("/metadata/uid")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            obj.pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(0),
        );
        let compiled = match previous.policies.get(&name) {
            Some(p) if p.version == version => p.clone(),
            _ => Arc::new(compile_policy(&obj)),
        };
        policies.insert(name, compiled);
    }
    Index {
        stamp: Some(stamp),
        policies,
        bindings: st.cache.objects_under(ADMISSION, BINDINGS),
    }
}

/// Upstream exempts the admission configuration kinds themselves.
fn exempt(req: &Request<'_>) -> bool {
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

#[async_trait]
impl Plugin for ValidatingAdmissionPolicy {
    fn name(&self) -> &'static str {
        "ValidatingAdmissionPolicy"
    }

    /// Only requests some binding could apply to (the chain clones the object for plugins
    /// that handle a request), and every request until the cache has its first list.
    fn handles(&self, req: &Request<'_>) -> bool {
        if matches!(req.op, Operation::Connect) {
            return false;
        }
        let st = &req.ctx.st;
        st.cache.ensure_started(st);
        self.controller.call_once(|| start_status_controller(st));
        if exempt(req) {
            return false;
        }
        st.cache.revision() < 0
            || st
                .cache
                .snapshot(ADMISSION)
                .range(BINDINGS.to_string()..)
                .next()
                .is_some_and(|(k, _)| k.starts_with(BINDINGS))
    }

    async fn validate(&self, req: &Request<'_>, obj: Option<&Value>) -> ApiResult<Vec<String>> {
        let st = &req.ctx.st;
        st.cache.ready(st).await;
        let index = self.index(st);
        if index.bindings.is_empty() {
            return Ok(Vec::new());
        }
        let mut warnings = Vec::new();
        let mut ns_object: Option<Option<Value>> = None;
        let uid = uuid::Uuid::new_v4().to_string();
        let mut base: Option<Activation> = None;
        for binding in &index.bindings {
            let policy_name = binding
                .pointer("/spec/policyName")
                .and_then(Value::as_str)
                .unwrap_or("");
            // A binding naming a missing policy is ignored, like upstream.
            let Some(policy) = index.policies.get(policy_name) else {
                continue;
            };
            let namespaced = req.ctx.info.namespaced;
            if !rules_match(req, policy.spec.get("matchConstraints")) {
                continue;
            }
            if ns_object.is_none() && namespaced_or_namespace(req) {
                ns_object = Some(namespace_object(req).await);
            }
            let ns_obj = ns_object.clone().flatten();
            if !selectors_match(
                req,
                obj,
                policy.spec.get("matchConstraints"),
                ns_obj.as_ref(),
            ) {
                continue;
            }
            if let Some(mr) = binding.pointer("/spec/matchResources") {
                if !rules_match_optional(req, mr)
                    || !selectors_match(req, obj, Some(mr), ns_obj.as_ref())
                {
                    continue;
                }
            }
            let binding_name = binding
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or("");
            let actions: Vec<&str> = binding
                .pointer("/spec/validationActions")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            // The request's variables are converted once and shared by every binding.
            let mut act = base
                .get_or_insert_with(|| {
                    let mut act = Activation::new();
                    act.json("object", obj.unwrap_or(&Value::Null));
                    act.json("oldObject", req.old.unwrap_or(&Value::Null));
                    let request = cel_env::request_object(req, &uid);
                    act.request_resource(cel_env::request_resource(&request));
                    act.json("request", &request);
                    act.json(
                        "namespaceObject",
                        if namespaced {
                            ns_obj.as_ref().unwrap_or(&Value::Null)
                        } else {
                            &Value::Null
                        },
                    );
                    act.authorizer(cel_env::authorizer(st, &req.ctx.user));
                    act
                })
                .clone();
            let params = match resolve_params(req, &policy.spec, binding).await {
                Ok(p) => p,
                Err(ParamError::Skip) => continue,
                Err(ParamError::Failed(msg)) => {
                    let failures = if policy.fail {
                        vec![Failure {
                            message: msg,
                            reason: None,
                        }]
                    } else {
                        Vec::new()
                    };
                    enforce(req, policy, binding_name, &actions, failures, &mut warnings)?;
                    continue;
                }
            };
            for param in params {
                act.json("params", &param);
                let failures = evaluate(policy, &mut act);
                enforce(req, policy, binding_name, &actions, failures, &mut warnings)?;
            }
        }
        Ok(warnings)
    }
}

fn namespaced_or_namespace(req: &Request<'_>) -> bool {
    req.ctx.info.namespaced || (req.ctx.info.group.is_empty() && req.ctx.info.kind == "Namespace")
}

async fn namespace_object(req: &Request<'_>) -> Option<Value> {
    let ns = req.ctx.ns.as_deref()?;
    let info = skiff_api::resources::by_plural("", "v1", "namespaces")?;
    let kv = req
        .ctx
        .st
        .store
        .get(&object_key(info, None, ns))
        .await
        .ok()??;
    decode(&kv).ok()
}

/// One failed validation (or an error under failurePolicy Fail).
struct Failure {
    message: String,
    reason: Option<String>,
}

/// Runs one policy's match conditions, variables and validations.
fn evaluate(policy: &CompiledPolicy, act: &mut Activation) -> Vec<Failure> {
    let error = |msg: String| -> Vec<Failure> {
        if policy.fail {
            vec![Failure {
                message: msg,
                reason: None,
            }]
        } else {
            Vec::new()
        }
    };
    let mut conds = Vec::new();
    for (name, c) in &policy.match_conditions {
        match c {
            Ok(p) => conds.push((name.clone(), p.clone())),
            Err(e) => return error(e.clone()),
        }
    }
    match eval_conditions(&conds, act) {
        Ok(Matched::Yes) => {}
        Ok(Matched::No(_)) => return Vec::new(),
        Err(e) => return error(e),
    }
    // Variables in order, each seeing the earlier ones; one that fails is left out, so only
    // the expressions reading it fail (upstream evaluates them lazily).
    let mut vars = Map::new();
    for (name, c) in &policy.variables {
        act.json("variables", &Value::Object(vars.clone()));
        if let Ok(p) = c {
            if let Ok(v) = p.eval(act) {
                vars.insert(name.clone(), skiff_cel::to_json(&v));
            }
        }
    }
    act.json("variables", &Value::Object(vars));
    let mut failures = Vec::new();
    for v in &policy.validations {
        let p = match &v.expr {
            Ok(p) => p,
            Err(e) => {
                failures.extend(error(e.clone()));
                continue;
            }
        };
        match p.eval_bool(act) {
            Ok(true) => {}
            Ok(false) => failures.push(Failure {
                message: failure_message(v, act),
                reason: v.reason.clone(),
            }),
            Err(e) => failures.extend(error(format!(
                "expression '{}' resulted in error: {e}",
                v.source
            ))),
        }
    }
    for (key, c) in &policy.audit {
        if let Ok(p) = c {
            match p.eval(act) {
                Ok(v) => {
                    tracing::info!(policy = %policy.name, key = %key, value = %skiff_cel::to_json(&v), "audit annotation")
                }
                Err(e) => {
                    tracing::debug!(policy = %policy.name, key = %key, err = %e, "audit annotation failed")
                }
            }
        }
    }
    failures
}

/// The message of a failed validation: messageExpression if it yields a non-empty string,
/// else message, else `failed expression: <expression>`.
fn failure_message(v: &Validation, act: &Activation) -> String {
    if let Some(Ok(p)) = &v.message_expr {
        match p.eval_string(act) {
            Ok(m) => {
                let m = m.trim();
                if !m.is_empty() && m.len() <= MAX_MESSAGE && !m.contains('\n') {
                    return m.to_string();
                }
            }
            Err(e) => tracing::debug!(err = %e, "messageExpression failed"),
        }
    }
    match v.message.as_deref().map(str::trim) {
        Some(m) if !m.is_empty() => m.to_string(),
        _ => format!("failed expression: {}", v.source.trim()),
    }
}

/// Applies the binding's validationActions to the failures.
fn enforce(
    req: &Request<'_>,
    policy: &CompiledPolicy,
    binding: &str,
    actions: &[&str],
    failures: Vec<Failure>,
    warnings: &mut Vec<String>,
) -> ApiResult<()> {
    let Some(first) = failures.first() else {
        return Ok(());
    };
    for f in &failures {
        if actions.contains(&"Warn") {
            warnings.push(format!(
                "Validation failed for ValidatingAdmissionPolicy '{}' with binding '{binding}': {}",
                policy.name, f.message
            ));
        }
        if actions.contains(&"Audit") {
            tracing::info!(policy = %policy.name, binding, message = %f.message, "validation failure (audit)");
        }
    }
    if actions.contains(&"Deny") {
        return Err(denied(req, &policy.name, binding, first));
    }
    Ok(())
}

/// Upstream's denial: a Forbidden-worded Status whose code follows the validation's reason
/// (Invalid, 422, by default).
fn denied(req: &Request<'_>, policy: &str, binding: &str, f: &Failure) -> ApiError {
    let info = req.ctx.info;
    let message = format!(
        "ValidatingAdmissionPolicy '{policy}' with binding '{binding}' denied request: {}",
        f.message
    );
    let resource = if info.group.is_empty() {
        info.plural.to_string()
    } else {
        format!("{}.{}", info.plural, info.group)
    };
    let full = if req.name.is_empty() {
        format!("{resource} is forbidden: {message}")
    } else {
        format!("{resource} \"{}\" is forbidden: {message}", req.name)
    };
    let reason = f.reason.clone().unwrap_or_else(|| "Invalid".to_string());
    let code = match reason.as_str() {
        "Forbidden" => 403,
        "Unauthorized" => 401,
        "RequestEntityTooLarge" => 413,
        _ => 422,
    };
    let mut details = Map::new();
    if !req.name.is_empty() {
        details.insert("name".into(), json!(req.name));
    }
    if !info.group.is_empty() {
        details.insert("group".into(), json!(info.group));
    }
    details.insert("kind".into(), json!(info.plural));
    details.insert(
        "causes".into(),
        json!([Cause {
            reason: String::new(),
            message,
            field: String::new(),
        }
        .to_json()]),
    );
    ApiError {
        code,
        reason,
        message: full,
        details: Some(Value::Object(details)),
    }
}

// ---- matching ----

fn strs(v: Option<&Value>) -> Vec<&str> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// Whether one `NamedRuleWithOperations` matches the request.
fn rule_matches(req: &Request<'_>, rule: &Value, equivalent: bool) -> bool {
    let info = req.ctx.info;
    let op = cel_env::operation_name(req.op);
    let any = |list: &[&str], v: &str| list.iter().any(|x| *x == "*" || *x == v);
    if !any(&strs(rule.get("operations")), op) || !any(&strs(rule.get("apiGroups")), info.group) {
        return false;
    }
    // matchPolicy Equivalent: skiff serves one version per kind, so another version of the
    // same group and resource is the equivalent request.
    if !equivalent && !any(&strs(rule.get("apiVersions")), info.version) {
        return false;
    }
    if !resource_matches(&strs(rule.get("resources")), info.plural, req.subresource) {
        return false;
    }
    let names = strs(rule.get("resourceNames"));
    if !names.is_empty() && !names.contains(&req.name) {
        return false;
    }
    match rule.get("scope").and_then(Value::as_str).unwrap_or("*") {
        "Cluster" => !info.namespaced,
        "Namespaced" => info.namespaced,
        _ => true,
    }
}

/// Upstream's rule resources: `*` is every resource but no subresource, `pods/*` pods and all
/// their subresources, `*/status` every status subresource, `*/*` everything.
fn resource_matches(resources: &[&str], plural: &str, sub: &str) -> bool {
    resources.iter().any(|r| {
        let (res, rsub) = r.split_once('/').unwrap_or((r, ""));
        (res == "*" || res == plural) && (rsub == "*" || rsub == sub)
    })
}

/// resourceRules / excludeResourceRules of a match block (policy matchConstraints).
fn rules_match(req: &Request<'_>, m: Option<&Value>) -> bool {
    let Some(m) = m else { return false };
    let equivalent = m.get("matchPolicy").and_then(Value::as_str) != Some("Exact");
    let rules = m.get("resourceRules").and_then(Value::as_array);
    let included = rules.is_some_and(|r| r.iter().any(|r| rule_matches(req, r, equivalent)));
    let excluded = m
        .get("excludeResourceRules")
        .and_then(Value::as_array)
        .is_some_and(|r| r.iter().any(|r| rule_matches(req, r, equivalent)));
    included && !excluded
}

/// A binding's matchResources narrows the policy's: its rules apply only when it has some.
fn rules_match_optional(req: &Request<'_>, m: &Value) -> bool {
    let has_rules = m
        .get("resourceRules")
        .and_then(Value::as_array)
        .is_some_and(|r| !r.is_empty());
    if has_rules {
        rules_match(req, Some(m))
    } else {
        let equivalent = m.get("matchPolicy").and_then(Value::as_str) != Some("Exact");
        !m.get("excludeResourceRules")
            .and_then(Value::as_array)
            .is_some_and(|r| r.iter().any(|r| rule_matches(req, r, equivalent)))
    }
}

fn labels(v: Option<&Value>) -> Option<&Map<String, Value>> {
    v.and_then(|o| o.pointer("/metadata/labels"))
        .and_then(Value::as_object)
}

/// namespaceSelector and objectSelector.
fn selectors_match(
    req: &Request<'_>,
    obj: Option<&Value>,
    m: Option<&Value>,
    ns_obj: Option<&Value>,
) -> bool {
    let Some(m) = m else { return true };
    let empty = Map::new();
    if let Some(sel) = m.get("namespaceSelector").filter(|s| s.is_object()) {
        let info = req.ctx.info;
        let is_namespace = info.group.is_empty() && info.kind == "Namespace";
        let target = if is_namespace {
            obj.or(req.old)
        } else if info.namespaced {
            ns_obj
        } else {
            // Cluster-scoped objects are not selected out by a namespace selector.
            None
        };
        if is_namespace || info.namespaced {
            let l = labels(target).unwrap_or(&empty);
            if !label_selector_matches_json(sel, l) {
                return false;
            }
        }
    }
    if let Some(sel) = m.get("objectSelector").filter(|s| s.is_object()) {
        let new_ok = obj
            .is_some_and(|o| label_selector_matches_json(sel, labels(Some(o)).unwrap_or(&empty)));
        let old_ok = req
            .old
            .is_some_and(|o| label_selector_matches_json(sel, labels(Some(o)).unwrap_or(&empty)));
        if !new_ok && !old_ok {
            return false;
        }
    }
    true
}

// ---- params ----

enum ParamError {
    /// No params and parameterNotFoundAction Allow: the binding does not apply.
    Skip,
    /// A misconfiguration or missing params under Deny (subject to failurePolicy).
    Failed(String),
}

/// Where a param kind's objects are stored.
struct ParamKind {
    group: String,
    plural: String,
    namespaced: bool,
}

fn param_kind(st: &AppState, api_version: &str, kind: &str) -> Option<ParamKind> {
    if let Some(info) = skiff_api::resources::by_kind(api_version, kind) {
        return Some(ParamKind {
            group: info.group.to_string(),
            plural: info.plural.to_string(),
            namespaced: info.namespaced,
        });
    }
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    st.cache.snapshot(CRDS).values().find_map(|crd| {
        let spec = crd.get("spec")?;
        (spec.get("group")?.as_str()? == group && spec.pointer("/names/kind")?.as_str()? == kind)
            .then(|| ParamKind {
                group: group.to_string(),
                plural: spec
                    .pointer("/names/plural")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
                namespaced: spec.get("scope").and_then(Value::as_str) == Some("Namespaced"),
            })
    })
}

fn param_prefix(pk: &ParamKind, ns: Option<&str>) -> String {
    let dir = if pk.group.is_empty() {
        "core"
    } else {
        &pk.group
    };
    match ns {
        Some(ns) if pk.namespaced => format!("/registry/{dir}/{}/{ns}/", pk.plural),
        _ => format!("/registry/{dir}/{}/", pk.plural),
    }
}

/// The params each evaluation sees: `[null]` for a policy without paramKind.
async fn resolve_params(
    req: &Request<'_>,
    spec: &Value,
    binding: &Value,
) -> Result<Vec<Value>, ParamError> {
    let Some(pk) = spec.get("paramKind").filter(|p| p.is_object()) else {
        return Ok(vec![Value::Null]);
    };
    let Some(pref) = binding.pointer("/spec/paramRef").filter(|p| p.is_object()) else {
        return Err(ParamError::Failed(
            "failed to configure binding: paramKind is specified but paramRef is not set"
                .to_string(),
        ));
    };
    let st = &req.ctx.st;
    let api_version = pk.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind_name = pk.get("kind").and_then(Value::as_str).unwrap_or("");
    let Some(kind) = param_kind(st, api_version, kind_name) else {
        return Err(ParamError::Failed(format!(
            "failed to configure binding: paramKind kind `{kind_name}` not known"
        )));
    };
    let ns_ref = pref.get("namespace").and_then(Value::as_str).unwrap_or("");
    let ns = if !kind.namespaced {
        None
    } else if !ns_ref.is_empty() {
        Some(ns_ref.to_string())
    } else if let Some(ns) = req.ctx.ns.clone() {
        Some(ns)
    } else {
        return Err(ParamError::Failed(
            "cannot use a namespaced paramRef without a namespace for a cluster-scoped request"
                .to_string(),
        ));
    };
    let prefix = param_prefix(&kind, ns.as_deref());
    let mut found = Vec::new();
    if let Some(name) = pref
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
    {
        let key = format!("{prefix}{name}");
        match st.store.get(&key).await {
            Ok(Some(kv)) => found.extend(decode(&kv).ok()),
            Ok(None) => {}
            Err(e) => return Err(ParamError::Failed(format!("failed to read params: {e}"))),
        }
    } else if let Some(sel) = pref.get("selector").filter(|s| s.is_object()) {
        let empty = Map::new();
        let mut opts = ListOptions {
            limit: PARAM_PAGE,
            ..Default::default()
        };
        // Paged, and bounded both in matches and in objects looked at.
        for _ in 0..MAX_PARAM_PAGES {
            let page = st
                .store
                .list(&prefix, &opts)
                .await
                .map_err(|e| ParamError::Failed(format!("failed to list params: {e}")))?;
            for kv in &page.items {
                // Only direct children (a cluster-wide prefix also lists namespaced keys).
                if ns.is_some() && kv.key.get(prefix.len()..).unwrap_or("").contains('/') {
                    continue;
                }
                if let Ok(o) = decode(kv) {
                    if label_selector_matches_json(sel, labels(Some(&o)).unwrap_or(&empty)) {
                        found.push(o);
                    }
                }
            }
            if !page.more || found.len() >= MAX_PARAMS {
                break;
            }
            opts.start_after = page.items.last().map(|kv| kv.key.clone());
            opts.revision = page.revision;
        }
        found.truncate(MAX_PARAMS);
    }
    if found.is_empty() {
        return match pref.get("parameterNotFoundAction").and_then(Value::as_str) {
            Some("Deny") => Err(ParamError::Failed(
                "failed to configure binding: no params found for policy binding with `Deny` parameterNotFoundAction"
                    .to_string(),
            )),
            // Allow, or unset: no params, nothing to evaluate.
            _ => Err(ParamError::Skip),
        };
    }
    Ok(found)
}

// ---- status controller ----

fn start_status_controller(st: &Arc<AppState>) {
    let weak = Arc::downgrade(st);
    let mut changes = st.cache.subscribe();
    let mut shutdown = st.shutdown.clone();
    tokio::spawn(async move {
        loop {
            sync_status(&weak).await;
            tokio::select! {
                r = changes.changed() => if r.is_err() { return },
                _ = shutdown.changed() => return,
            }
        }
    });
}

/// Writes status for every policy whose observedGeneration lags its generation.
async fn sync_status(weak: &Weak<AppState>) {
    let Some(st) = weak.upgrade() else { return };
    for obj in st.cache.objects_under(ADMISSION, POLICIES) {
        let generation = obj
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        let observed = obj
            .pointer("/status/observedGeneration")
            .and_then(Value::as_i64);
        if observed == Some(generation) {
            continue;
        }
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        let Some(info) = skiff_api::resources::by_plural(
            "admissionregistration.k8s.io",
            "v1",
            "validatingadmissionpolicies",
        ) else {
            return;
        };
        let key = object_key(info, None, name);
        let Ok(Some(kv)) = st.store.get(&key).await else {
            continue;
        };
        let Ok(mut stored) = decode(&kv) else {
            continue;
        };
        if stored
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            != Some(generation)
        {
            continue; // changed again: the next cache change brings it back here
        }
        let warnings = type_check(&st, &stored);
        let mut status = json!({"observedGeneration": generation,
            "typeChecking": {"expressionWarnings": warnings}});
        if warnings.is_empty() {
            status["typeChecking"] = json!({});
        }
        if let Some(conds) = stored.pointer("/status/conditions") {
            status["conditions"] = conds.clone();
        }
        stored["status"] = status;
        if let Err(e) = st
            .store
            .update(&key, encode(&stored), kv.mod_revision)
            .await
        {
            tracing::debug!(policy = name, err = %e, "writing policy status");
        }
    }
}

/// Best-effort type checking: each validation expression's `object.a.b…` (and `oldObject`)
/// field paths are checked against the OpenAPI schema of every built-in kind (or CRD version)
/// the policy's resourceRules name explicitly (no `*`); an undefined field gives a warning like
/// upstream's
/// `apps/v1, Kind=Deployment: ERROR: <input>:1:15: undefined field 'replica'`.
fn type_check(st: &AppState, policy: &Value) -> Vec<Value> {
    let spec = policy.get("spec").cloned().unwrap_or(Value::Null);
    let kinds = checked_kinds(st, &spec);
    let mut out = Vec::new();
    if kinds.is_empty() {
        return out;
    }
    for (i, v) in spec
        .get("validations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let Some(expr) = v.get("expression").and_then(Value::as_str) else {
            continue;
        };
        let Ok(p) = skiff_cel::compile(expr, ADMISSION_VARIABLES) else {
            continue;
        };
        let mut msgs = Vec::new();
        for (gv, kind, schema, doc) in &kinds {
            for root in ["object", "oldObject"] {
                for path in p.field_paths(root) {
                    if let Some((bad, (line, col))) = undefined_field(schema, doc, &path) {
                        msgs.push(format!(
                            "{gv}, Kind={kind}: ERROR: <input>:{line}:{col}: undefined field '{bad}'"
                        ));
                    }
                }
            }
        }
        if !msgs.is_empty() {
            out.push(
                json!({"fieldRef": format!("spec.validations[{i}].expression"),
                "warning": msgs.join("\n")}),
            );
        }
    }
    out
}

/// (groupVersion, kind, schema, OpenAPI document) of each explicitly named built-in resource.
fn checked_kinds(st: &AppState, spec: &Value) -> Vec<(String, String, Value, Value)> {
    let mut out = Vec::new();
    let rules = spec
        .pointer("/matchConstraints/resourceRules")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for r in &rules {
        for g in strs(r.get("apiGroups")) {
            for v in strs(r.get("apiVersions")) {
                for res in strs(r.get("resources")) {
                    if g == "*" || v == "*" || res.contains('*') || res.contains('/') {
                        continue;
                    }
                    let gv = if g.is_empty() {
                        v.to_string()
                    } else {
                        format!("{g}/{v}")
                    };
                    let Some(info) = skiff_api::resources::by_plural(g, v, res) else {
                        if let Some((kind, schema)) = crd_schema(st, g, v, res) {
                            out.push((gv, kind, schema, Value::Null));
                        }
                        continue;
                    };
                    let path = if g.is_empty() {
                        format!("api/{v}")
                    } else {
                        format!("apis/{g}/{v}")
                    };
                    let Some(doc) = skiff_api::openapi::v3_document(&path) else {
                        continue;
                    };
                    let Some(schema) = find_kind_schema(&doc, g, v, info.kind) else {
                        continue;
                    };
                    out.push((gv, info.kind.to_string(), schema, doc));
                }
            }
        }
    }
    out
}

/// A custom resource's kind and the `openAPIV3Schema` of version `v`, from the CRD cache.
fn crd_schema(st: &AppState, g: &str, v: &str, plural: &str) -> Option<(String, Value)> {
    st.cache.snapshot(CRDS).values().find_map(|crd| {
        let spec = crd.get("spec")?;
        if spec.get("group")?.as_str()? != g || spec.pointer("/names/plural")?.as_str()? != plural {
            return None;
        }
        let kind = spec.pointer("/names/kind")?.as_str()?.to_string();
        let version = spec
            .get("versions")?
            .as_array()?
            .iter()
            .find(|x| x.get("name").and_then(Value::as_str) == Some(v))?;
        let schema = version.pointer("/schema/openAPIV3Schema")?.clone();
        Some((kind, schema))
    })
}

fn find_kind_schema(doc: &Value, group: &str, version: &str, kind: &str) -> Option<Value> {
    let schemas = doc.pointer("/components/schemas")?.as_object()?;
    schemas.values().find_map(|s| {
        let gvks = s.get("x-kubernetes-group-version-kind")?.as_array()?;
        gvks.iter()
            .any(|g| {
                g.get("group").and_then(Value::as_str) == Some(group)
                    && g.get("version").and_then(Value::as_str) == Some(version)
                    && g.get("kind").and_then(Value::as_str) == Some(kind)
            })
            .then(|| s.clone())
    })
}

/// Follows `$ref` / single-`allOf` indirections within the document.
fn resolve<'a>(doc: &'a Value, mut s: &'a Value) -> &'a Value {
    for _ in 0..16 {
        let r = s.get("$ref").and_then(Value::as_str).or_else(|| {
            s.get("allOf")
                .and_then(Value::as_array)
                .and_then(|a| a.first())
                .and_then(|x| x.get("$ref"))
                .and_then(Value::as_str)
        });
        let Some(r) = r else { return s };
        let Some(name) = r.strip_prefix("#/components/schemas/") else {
            return s;
        };
        match doc.pointer(&format!(
            "/components/schemas/{}",
            name.replace('~', "~0").replace('/', "~1")
        )) {
            Some(next) => s = next,
            None => return s,
        }
    }
    s
}

/// The first field of `path` the schema does not define (None when all exist or the schema
/// stops saying: maps, preserved unknown fields, untyped values).
fn undefined_field(
    schema: &Value,
    doc: &Value,
    path: &[(String, (u32, u32))],
) -> Option<(String, (u32, u32))> {
    // A custom kind's schema may leave out the fields every object has.
    if doc.is_null()
        && path
            .first()
            .is_some_and(|(f, _)| matches!(f.as_str(), "apiVersion" | "kind" | "metadata"))
    {
        return None;
    }
    let mut s = resolve(doc, schema);
    for (field, pos) in path {
        // Embedded objects: `apiVersion`, `kind` and `metadata` are implied.
        if s.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true))
            || s.get("x-kubernetes-embedded-resource") == Some(&Value::Bool(true))
        {
            return None;
        }
        let props = s.get("properties").and_then(Value::as_object)?;
        match props.get(field) {
            Some(next) => s = resolve(doc, next),
            None => return Some((field.clone(), *pos)),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_resources_and_subresources() {
        let m = |rs: &[&str], plural: &str, sub: &str| resource_matches(rs, plural, sub);
        assert!(m(&["*"], "pods", ""));
        assert!(!m(&["*"], "pods", "status"));
        assert!(m(&["pods"], "pods", ""));
        assert!(!m(&["pods"], "pods", "status"));
        assert!(m(&["pods/status"], "pods", "status"));
        assert!(!m(&["pods/status"], "pods", ""));
        assert!(m(&["pods/*"], "pods", "exec"));
        assert!(m(&["pods/*"], "pods", ""));
        assert!(m(&["*/status"], "deployments", "status"));
        assert!(!m(&["*/status"], "deployments", "scale"));
        assert!(m(&["*/*"], "deployments", "scale"));
        assert!(m(&["*/*"], "deployments", ""));
        assert!(!m(&["services"], "pods", ""));
    }

    #[test]
    fn undefined_fields_follow_refs_and_stop_at_open_schemas() {
        let doc = json!({"components": {"schemas": {
            "Spec": {"type": "object", "properties": {"replicas": {"type": "integer"},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}}}},
            "Kind": {"type": "object", "properties": {"spec": {"allOf": [{"$ref": "#/components/schemas/Spec"}]}}}}}});
        let kind = doc["components"]["schemas"]["Kind"].clone();
        let path = |p: &[&str]| -> Vec<(String, (u32, u32))> {
            p.iter()
                .enumerate()
                .map(|(i, f)| (f.to_string(), (1, i as u32 + 1)))
                .collect()
        };
        assert_eq!(
            undefined_field(&kind, &doc, &path(&["spec", "replicas"])),
            None
        );
        assert_eq!(
            undefined_field(&kind, &doc, &path(&["spec", "replica"])),
            Some(("replica".to_string(), (1, 2)))
        );
        assert_eq!(
            undefined_field(&kind, &doc, &path(&["spec", "labels", "x"])),
            None
        );
        let crd = json!({"type": "object", "properties": {"spec": {"type": "object",
            "x-kubernetes-preserve-unknown-fields": true}}});
        assert_eq!(
            undefined_field(&crd, &Value::Null, &path(&["spec", "anything"])),
            None
        );
        assert_eq!(
            undefined_field(&crd, &Value::Null, &path(&["metadata", "name"])),
            None
        );
        assert_eq!(
            undefined_field(&crd, &Value::Null, &path(&["status"])),
            Some(("status".to_string(), (1, 1)))
        );
    }
}
