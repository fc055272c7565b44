//! The `PodSecurity` admission plugin (upstream `k8s.io/pod-security-admission` as built into
//! kube-apiserver): each namespace's `pod-security.kubernetes.io/{enforce,audit,warn}[-version]`
//! labels select a Pod Security Standards level per mode. Pods are rejected when they violate
//! the enforce level (on create and on updates that change an image or add an ephemeral
//! container); pods and workload pod templates get `would violate PodSecurity` warnings for
//! the warn level; audit-level violations (upstream's audit annotations) are logged as a
//! tracing event, skiff having no audit log. Namespace writes have their labels validated, and
//! raising the enforce level warns about the existing pods that would not be admitted.
//! Upstream's exemptions (users, namespaces, runtime classes) come from a configuration file;
//! skiff has none, so nothing is exempt.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{json, Value};
use skiff_api::{ApiError, Cause};
use skiff_semantics::podsecurity::{
    self as pss, Evaluation, LabelError, Level, LevelVersion, Policy,
};
use skiff_store::ListOptions;
use tracing::Instrument;

use super::{Operation, Plugin, Request};
use crate::keys::{collection_prefix, decode, object_key};
use crate::respond::ApiResult;

/// The newest policy version: the Kubernetes minor skiff reports on `/version` (upstream caps
/// `latest` and newer pins at its emulated version).
const KUBE_MINOR: u32 = 33;

/// Upstream's bounds on the existing-pods check of a namespace label change.
const MAX_PODS_TO_CHECK: usize = 3000;
const POD_CHECK_TIMEOUT: Duration = Duration::from_secs(1);
const LIST_PAGE: i64 = 500;

/// Pod subresources that cannot change what the policy looks at.
const IGNORED_POD_SUBRESOURCES: &[&str] = &[
    "exec",
    "attach",
    "binding",
    "eviction",
    "log",
    "portforward",
    "proxy",
    "status",
];

pub(crate) struct PodSecurity;

#[async_trait]
impl Plugin for PodSecurity {
    fn name(&self) -> &'static str {
        "PodSecurity"
    }

    fn handles(&self, req: &Request<'_>) -> bool {
        let info = req.ctx.info;
        matches!(req.op, Operation::Create | Operation::Update)
            && ((info.group.is_empty() && info.kind == "Namespace")
                || pss::has_pod_spec(info.group, info.kind))
    }

    async fn validate(&self, req: &Request<'_>, obj: Option<&Value>) -> ApiResult<Vec<String>> {
        let Some(obj) = obj else {
            return Ok(Vec::new());
        };
        let info = req.ctx.info;
        // The plugin's name on every event it logs (the audit record included).
        let span = tracing::debug_span!("admission", plugin = self.name());
        async {
            match (info.group, info.kind) {
                ("", "Namespace") => validate_namespace(req, obj).await,
                ("", "Pod") => validate_pod(req, obj).await,
                _ => validate_workload(req, obj).await,
            }
        }
        .instrument(span)
        .await
    }
}

fn labels_of(obj: &Value) -> Option<&serde_json::Map<String, Value>> {
    obj.pointer("/metadata/labels").and_then(Value::as_object)
}

/// The 422 for invalid policy labels: `Namespace "x" is invalid: metadata.labels[...]: ...`.
fn invalid_labels(name: &str, errs: &[LabelError]) -> ApiError {
    let causes = errs
        .iter()
        .map(|e| Cause {
            reason: "FieldValueInvalid".into(),
            message: format!("Invalid value: {:?}: {}", e.value, e.message),
            field: e.field(),
        })
        .collect();
    ApiError::invalid("", "Namespace", name, causes)
}

/// `field.ErrorList.ToAggregate()` text, for the audit record.
fn aggregate_text(errs: &[LabelError]) -> String {
    let parts: Vec<String> = errs
        .iter()
        .map(|e| format!("{}: Invalid value: {:?}: {}", e.field(), e.value, e.message))
        .collect();
    if parts.len() == 1 {
        parts.concat()
    } else {
        format!("[{}]", parts.join(", "))
    }
}

async fn validate_namespace(req: &Request<'_>, ns: &Value) -> ApiResult<Vec<String>> {
    if !req.subresource.is_empty() {
        return Ok(Vec::new());
    }
    let (new, new_errs) = Policy::from_labels(labels_of(ns));
    let Some(old) = req.old.filter(|_| req.op == Operation::Update) else {
        // Create: the labels must be valid; a new namespace has no pods to check.
        if !new_errs.is_empty() {
            return Err(invalid_labels(req.name, &new_errs));
        }
        return Ok(Vec::new());
    };
    let (old, old_errs) = Policy::from_labels(labels_of(old));
    // Labels that were already invalid the same way do not block unrelated updates.
    if !new_errs.is_empty() && (old_errs.is_empty() || new_errs != old_errs) {
        return Err(invalid_labels(req.name, &new_errs));
    }
    if new.enforce == old.enforce
        || new.enforce.level == Level::Privileged
        || (new.enforce.version == old.enforce.version && new.enforce.level <= old.enforce.level)
    {
        return Ok(Vec::new());
    }
    Ok(check_existing_pods(req, req.name, new.enforce).await)
}

/// Upstream's warnings for a stricter enforce level: the pods it would not admit, grouped by
/// identical reasons (`name (and N other pods): reasons`), checking at most 3000 pods (one
/// per controller first) for at most a second.
async fn check_existing_pods(req: &Request<'_>, ns: &str, enforce: LevelVersion) -> Vec<String> {
    let deadline = Instant::now() + POD_CHECK_TIMEOUT;
    let Some(pods_info) = skiff_api::resources::by_plural("", "v1", "pods") else {
        return Vec::new();
    };
    let prefix = collection_prefix(pods_info, Some(ns));
    let mut total = 0usize;
    let mut checked = 0usize;
    let mut out_of_time = false;
    let mut seen_controllers = std::collections::HashSet::new();
    // Later pods of an already-seen controller are checked after all the others.
    let mut duplicates: Vec<Value> = Vec::new();
    let mut by_reason: HashMap<String, (String, usize)> = HashMap::new();
    let mut order: Vec<String> = Vec::new();
    let mut evaluate = |pod: &Value, checked: &mut usize, out_of_time: &mut bool| {
        *checked += 1;
        let name = pod
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        let e = pss::evaluate(
            enforce,
            KUBE_MINOR,
            pod.get("metadata").unwrap_or(&Value::Null),
            pod.get("spec").unwrap_or(&Value::Null),
        );
        if !e.allowed() {
            let reason = e.forbidden_reason();
            match by_reason.get_mut(&reason) {
                Some((first, count)) => {
                    if name < first.as_str() {
                        *first = name.to_string();
                    }
                    *count += 1;
                }
                None => {
                    order.push(reason.clone());
                    by_reason.insert(reason, (name.to_string(), 1));
                }
            }
        }
        if Instant::now() >= deadline {
            *out_of_time = true;
        }
    };
    let mut opts = ListOptions {
        limit: LIST_PAGE,
        ..Default::default()
    };
    loop {
        let page = match req.ctx.st.store.list(&prefix, &opts).await {
            Ok(p) => p,
            Err(err) => {
                tracing::warn!(namespace = %ns, %err, "PodSecurity: listing pods");
                return vec![
                    "failed to list pods while checking new PodSecurity enforce level".into(),
                ];
            }
        };
        for kv in &page.items {
            total += 1;
            let Ok(pod) = decode(kv) else { continue };
            if let Some(uid) = controller_uid(&pod) {
                if !seen_controllers.insert(uid) {
                    if duplicates.len() < MAX_PODS_TO_CHECK {
                        duplicates.push(pod);
                    }
                    continue;
                }
            }
            if checked < MAX_PODS_TO_CHECK && !out_of_time {
                evaluate(&pod, &mut checked, &mut out_of_time);
            }
        }
        match (page.more, page.items.last()) {
            (true, Some(last)) => {
                opts.start_after = Some(last.key.clone());
                if opts.revision == 0 {
                    opts.revision = page.revision;
                }
            }
            _ => break,
        }
    }
    for pod in &duplicates {
        if checked >= MAX_PODS_TO_CHECK || out_of_time {
            break;
        }
        evaluate(pod, &mut checked, &mut out_of_time);
    }
    let mut warnings = Vec::new();
    if checked < total {
        warnings.push(format!(
            "new PodSecurity enforce level only checked against the first {checked} of {total} existing pods"
        ));
    }
    if !order.is_empty() {
        warnings.push(format!(
            "existing pods in namespace \"{ns}\" violate the new PodSecurity enforce level \"{enforce}\""
        ));
    }
    let mut pods: Vec<String> = order
        .into_iter()
        .map(|reason| {
            let (first, count) = by_reason.get(&reason).cloned().unwrap_or_default();
            match count {
                1 => format!("{first}: {reason}"),
                2 => format!("{first} (and 1 other pod): {reason}"),
                n => format!("{first} (and {} other pods): {reason}", n - 1),
            }
        })
        .collect();
    pods.sort();
    warnings.extend(pods);
    warnings
}

/// The uid of the pod's controller owner reference, if any.
fn controller_uid(pod: &Value) -> Option<String> {
    pod.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)?
        .iter()
        .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
        .and_then(|r| r.get("uid").and_then(Value::as_str))
        .map(str::to_string)
}

/// The namespace's policy, read from the store (the labels are the only input).
async fn namespace_policy(req: &Request<'_>) -> Result<(Policy, Vec<LabelError>), String> {
    let ns = req.ctx.ns.as_deref().unwrap_or("");
    let ns_info = skiff_api::resources::by_plural("", "v1", "namespaces")
        .ok_or_else(|| "namespaces are not served".to_string())?;
    match req.ctx.st.store.get(&object_key(ns_info, None, ns)).await {
        Ok(Some(kv)) => {
            let obj = decode(&kv).map_err(|e| e.message)?;
            Ok(Policy::from_labels(labels_of(&obj)))
        }
        Ok(None) => Err(format!("namespaces \"{ns}\" not found")),
        Err(e) => Err(e.to_string()),
    }
}

async fn validate_pod(req: &Request<'_>, pod: &Value) -> ApiResult<Vec<String>> {
    if IGNORED_POD_SUBRESOURCES.contains(&req.subresource) {
        return Ok(Vec::new());
    }
    let ns = req.ctx.ns.as_deref().unwrap_or("");
    let (policy, errs) = namespace_policy(req).await.map_err(|err| {
        tracing::warn!(namespace = %ns, %err, "PodSecurity: reading the namespace");
        ApiError::internal(format!("failed to lookup namespace \"{ns}\""))
    })?;
    if errs.is_empty() && policy.fully_privileged() {
        return Ok(Vec::new());
    }
    if let (Operation::Update, Some(old)) = (req.op, req.old) {
        if !pss::significant_pod_update(pod, old) {
            return Ok(Vec::new());
        }
    }
    let meta = pod.get("metadata").unwrap_or(&Value::Null);
    let spec = pod.get("spec").unwrap_or(&Value::Null);
    evaluate(req, &policy, &errs, meta, spec, true)
}

async fn validate_workload(req: &Request<'_>, obj: &Value) -> ApiResult<Vec<String>> {
    if !req.subresource.is_empty() {
        return Ok(Vec::new());
    }
    // Workloads are never rejected: a failed lookup is only recorded.
    let (policy, errs) = match namespace_policy(req).await {
        Ok(p) => p,
        Err(err) => {
            audit(
                req,
                &[(
                    "error",
                    format!(
                        "failed to lookup namespace \"{}\": {err}",
                        req.ctx.ns.as_deref().unwrap_or("")
                    ),
                )],
            );
            return Ok(Vec::new());
        }
    };
    if errs.is_empty()
        && policy.warn.level == Level::Privileged
        && policy.audit.level == Level::Privileged
    {
        return Ok(Vec::new());
    }
    let info = req.ctx.info;
    let Some((meta, spec)) = pss::pod_template(info.group, info.kind, obj) else {
        return Ok(Vec::new());
    };
    evaluate(req, &policy, &errs, meta, spec, false)
}

/// Upstream's EvaluatePod: enforce (pods only) rejects, audit records, warn warns (unless the
/// request is rejected anyway); each level:version is evaluated once.
fn evaluate(
    req: &Request<'_>,
    policy: &Policy,
    errs: &[LabelError],
    meta: &Value,
    spec: &Value,
    enforce: bool,
) -> ApiResult<Vec<String>> {
    let mut results: HashMap<LevelVersion, Evaluation> = HashMap::new();
    let mut run = |lv: LevelVersion| {
        results
            .entry(lv)
            .or_insert_with(|| pss::evaluate(lv, KUBE_MINOR, meta, spec))
            .clone()
    };
    let mut annotations: Vec<(&str, String)> = Vec::new();
    if !errs.is_empty() {
        annotations.push((
            "error",
            format!("Failed to parse policy: {}", aggregate_text(errs)),
        ));
    }
    let mut rejection = None;
    if enforce {
        annotations.push(("enforce-policy", policy.enforce.to_string()));
        let r = run(policy.enforce);
        if !r.allowed() {
            rejection = Some(forbidden(req.name, policy.enforce, &r));
        }
    }
    let audit_result = run(policy.audit);
    if !audit_result.allowed() {
        annotations.push((
            "audit-violations",
            format!(
                "would violate PodSecurity \"{}\": {}",
                policy.audit,
                audit_result.forbidden_detail()
            ),
        ));
    }
    audit(req, &annotations);
    if let Some(e) = rejection {
        return Err(e);
    }
    let warn_result = run(policy.warn);
    if warn_result.allowed() {
        return Ok(Vec::new());
    }
    Ok(vec![format!(
        "would violate PodSecurity \"{}\": {}",
        policy.warn,
        warn_result.forbidden_detail()
    )])
}

/// `pods "x" is forbidden: violates PodSecurity "restricted:latest": ...`.
fn forbidden(name: &str, lv: LevelVersion, r: &Evaluation) -> ApiError {
    let why = format!("violates PodSecurity \"{lv}\": {}", r.forbidden_detail());
    let mut e = if name.is_empty() {
        ApiError::forbidden(format!("pods is forbidden: {why}"))
    } else {
        ApiError::forbidden(format!("pods \"{name}\" is forbidden: {why}"))
    };
    let mut details = serde_json::Map::new();
    if !name.is_empty() {
        details.insert("name".into(), json!(name));
    }
    details.insert("kind".into(), json!("pods"));
    e.details = Some(Value::Object(details));
    e
}

/// Upstream adds these as `pod-security.kubernetes.io/<key>` audit annotations; skiff has no
/// audit log, so they become one tracing event (target `skiff::audit`). A decision with only
/// the enforce-policy annotation is routine and logged at debug level.
fn audit(req: &Request<'_>, annotations: &[(&str, String)]) {
    if annotations.is_empty() {
        return;
    }
    let text: Vec<String> = annotations
        .iter()
        .map(|(k, v)| format!("{}{k}={v:?}", pss::labels::PREFIX))
        .collect();
    let text = text.join(" ");
    let info = req.ctx.info;
    let ns = req.ctx.ns.as_deref().unwrap_or("");
    let user = &req.user().name;
    if annotations.iter().all(|(k, _)| *k == "enforce-policy") {
        tracing::debug!(target: "skiff::audit", resource = info.plural, namespace = ns,
            name = req.name, user = %user, "{text}");
    } else {
        tracing::info!(target: "skiff::audit", resource = info.plural, namespace = ns,
            name = req.name, user = %user, "{text}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_semantics::podsecurity::{Failure, Version};

    #[test]
    fn forbidden_names_the_pod_like_upstreams_new_forbidden() {
        let lv = LevelVersion {
            level: Level::Baseline,
            version: Version::V1(30),
        };
        let r = Evaluation {
            failures: vec![Failure {
                reason: "host namespaces".into(),
                detail: "hostPID=true".into(),
            }],
        };
        let e = forbidden("p", lv, &r);
        assert_eq!(
            e.message,
            r#"pods "p" is forbidden: violates PodSecurity "baseline:v1.30": host namespaces (hostPID=true)"#
        );
        assert_eq!((e.code, e.reason.as_str()), (403, "Forbidden"));
        assert_eq!(e.details, Some(json!({"name": "p", "kind": "pods"})));
        let e = forbidden("", lv, &r);
        assert_eq!(
            e.message,
            r#"pods is forbidden: violates PodSecurity "baseline:v1.30": host namespaces (hostPID=true)"#
        );
        assert_eq!(e.details, Some(json!({"kind": "pods"})));
    }

    #[test]
    fn label_errors_aggregate_like_field_error_lists() {
        let l = serde_json::Map::from_iter([
            (pss::labels::ENFORCE.to_string(), json!("x")),
            (pss::labels::WARN_VERSION.to_string(), json!("v2")),
        ]);
        let (_, errs) = Policy::from_labels(Some(&l));
        assert_eq!(
            aggregate_text(&errs[..1]),
            r#"metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: "x": must be one of privileged, baseline, restricted"#
        );
        assert_eq!(
            aggregate_text(&errs),
            r#"[metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: "x": must be one of privileged, baseline, restricted, metadata.labels[pod-security.kubernetes.io/warn-version]: Invalid value: "v2": must be "latest" or "v1.x"]"#
        );
        let e = invalid_labels("ns", &errs);
        assert_eq!(e.code, 422);
        assert!(
            e.message.starts_with(r#"Namespace "ns" is invalid: ["#),
            "{}",
            e.message
        );
    }
}
