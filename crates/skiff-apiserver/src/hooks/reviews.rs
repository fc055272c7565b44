//! The review kinds computed from the request's identity: SelfSubjectReview (`kubectl auth
//! whoami`) answers with the acting user (after impersonation), as upstream; the access
//! reviews (`kubectl auth can-i`) run the authorizer chain on the attributes they carry, and
//! SelfSubjectRulesReview (`kubectl auth can-i --list`) lists the caller's RBAC rules.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{json, Value};
use skiff_api::{ApiError, Cause};

use crate::admission::Admission;
use crate::auth::UserInfo;
use crate::authz::{self, Attributes, Decision};
use crate::ctx::Ctx;
use crate::respond::ApiResult;

pub(crate) struct SelfSubjectReview;

#[async_trait]
impl Admission for SelfSubjectReview {
    async fn review(&self, ctx: &Ctx, _obj: &Value) -> Option<ApiResult<Value>> {
        Some(Ok(json!({
            "kind": "SelfSubjectReview",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"creationTimestamp": null},
            "status": {"userInfo": &*ctx.user},
        })))
    }
}

/// Which access review.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum AccessReview {
    /// SubjectAccessReview: any user, from `spec.user/groups/uid/extra`.
    Subject,
    /// SelfSubjectAccessReview: the caller.
    SelfSubject,
    /// LocalSubjectAccessReview: any user, in the URL's namespace only.
    Local,
}

fn invalid(kind: &str, field: &str, reason: &str, message: String) -> ApiError {
    ApiError::invalid(
        "authorization.k8s.io",
        kind,
        "",
        vec![Cause {
            reason: reason.into(),
            message,
            field: field.into(),
        }],
    )
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn s(v: &Value, f: &str) -> String {
    v.get(f).and_then(Value::as_str).unwrap_or("").to_string()
}

/// The authorizer attributes a review asks about (upstream's `ResourceAttributesFrom` /
/// `NonResourceAttributesFrom`).
fn review_attributes(user: Arc<UserInfo>, spec: &Value) -> Attributes {
    if let Some(ra) = spec.get("resourceAttributes").filter(|v| v.is_object()) {
        return Attributes {
            user,
            verb: s(ra, "verb"),
            resource_request: true,
            api_group: s(ra, "group"),
            api_version: s(ra, "version"),
            resource: s(ra, "resource"),
            subresource: s(ra, "subresource"),
            namespace: s(ra, "namespace"),
            name: s(ra, "name"),
            ..Default::default()
        };
    }
    let nra = spec
        .get("nonResourceAttributes")
        .cloned()
        .unwrap_or_default();
    Attributes {
        user,
        verb: s(&nra, "verb"),
        resource_request: false,
        path: s(&nra, "path"),
        ..Default::default()
    }
}

/// Runs the authorizer chain for a review and builds `status` as upstream does.
pub(crate) async fn access_status(st: &crate::AppState, attrs: &Attributes) -> Value {
    let decision = authz::authorize(st, attrs).await;
    let (allowed, denied, reason) = match decision {
        Decision::Allow => {
            // The chain's Allow carries no reason; RBAC's is reported when RBAC granted it.
            let reason = if attrs.user.is_master() {
                String::new()
            } else {
                let (ok, r) = st.rbac.policy().decide_with_reason(attrs);
                if ok {
                    r
                } else {
                    String::new()
                }
            };
            (true, false, reason)
        }
        Decision::Deny(r) => (false, true, r),
        Decision::NoOpinion(r) => (false, false, r),
    };
    let mut status = json!({"allowed": allowed});
    if denied {
        status["denied"] = json!(true);
    }
    if !reason.is_empty() {
        status["reason"] = json!(reason);
    }
    status
}

#[async_trait]
impl Admission for AccessReview {
    async fn review(&self, ctx: &Ctx, obj: &Value) -> Option<ApiResult<Value>> {
        Some(self.answer(ctx, obj).await)
    }
}

impl AccessReview {
    async fn answer(&self, ctx: &Ctx, obj: &Value) -> ApiResult<Value> {
        let kind = ctx.info.kind;
        let spec = obj.get("spec").cloned().unwrap_or_else(|| json!({}));
        let ra = spec.get("resourceAttributes").filter(|v| v.is_object());
        let nra = spec.get("nonResourceAttributes").filter(|v| v.is_object());
        match (ra, nra) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    kind,
                    "spec.nonResourceAttributes",
                    "FieldValueInvalid",
                    "Invalid value: \"\": cannot be specified in combination with resourceAttributes"
                        .into(),
                ))
            }
            (None, None) => {
                return Err(invalid(
                    kind,
                    "spec.resourceAttributes",
                    "FieldValueRequired",
                    "Required value: exactly one of nonResourceAttributes or resourceAttributes must be specified".into(),
                ))
            }
            _ => {}
        }
        let user: Arc<UserInfo> = match self {
            AccessReview::SelfSubject => ctx.user.clone(),
            AccessReview::Subject | AccessReview::Local => {
                let name = s(&spec, "user");
                let groups = strings(spec.get("groups"));
                if name.is_empty() && groups.is_empty() {
                    return Err(invalid(
                        kind,
                        "spec.user",
                        "FieldValueInvalid",
                        "Invalid value: \"\": at least one of user or group must be specified"
                            .into(),
                    ));
                }
                let extra = spec
                    .get("extra")
                    .and_then(Value::as_object)
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| (k.clone(), strings(Some(v))))
                            .collect()
                    })
                    .unwrap_or_default();
                Arc::new(UserInfo {
                    name,
                    uid: s(&spec, "uid"),
                    groups,
                    extra,
                })
            }
        };
        if *self == AccessReview::Local {
            let ns = ctx.ns.clone().unwrap_or_default();
            if ns.is_empty() {
                return Err(ApiError::bad_request(format!(
                    "namespace is required on this type: {ns}"
                )));
            }
            let meta_ns = obj
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or(&ns);
            if meta_ns != ns {
                return Err(ApiError::bad_request(format!(
                    "spec.resourceAttributes.namespace must match namespace: {ns}"
                )));
            }
            if nra.is_some() {
                return Err(invalid(
                    kind,
                    "spec.nonResourceAttributes",
                    "FieldValueInvalid",
                    "Invalid value: \"\": disallowed on this kind of request".into(),
                ));
            }
            let ra_ns = ra
                .and_then(|r| r.get("namespace"))
                .and_then(Value::as_str)
                .unwrap_or("");
            if ra_ns != ns {
                return Err(invalid(
                    kind,
                    "spec.resourceAttributes.namespace",
                    "FieldValueInvalid",
                    format!("Invalid value: {ra_ns:?}: must match metadata.namespace"),
                ));
            }
        }
        let attrs = review_attributes(user, &spec);
        let mut out = obj.clone();
        if !out.get("metadata").is_some_and(Value::is_object) {
            out["metadata"] = json!({});
        }
        if out.pointer("/metadata/creationTimestamp").is_none() {
            out["metadata"]["creationTimestamp"] = Value::Null;
        }
        out["status"] = access_status(&ctx.st, &attrs).await;
        Ok(out)
    }
}

/// SelfSubjectRulesReview (`kubectl auth can-i --list`): the caller's rules in `spec.namespace`.
pub(crate) struct SelfSubjectRulesReview;

#[async_trait]
impl Admission for SelfSubjectRulesReview {
    async fn review(&self, ctx: &Ctx, obj: &Value) -> Option<ApiResult<Value>> {
        let ns = obj
            .pointer("/spec/namespace")
            .and_then(Value::as_str)
            .unwrap_or("");
        if ns.is_empty() {
            return Some(Err(ApiError::bad_request("no namespace on request")));
        }
        let mut errors = Vec::new();
        let mut incomplete = false;
        // The Node authorizer (first in the chain) resolves no rules for nodes.
        if ctx.user.node_name().is_some() {
            incomplete = true;
            errors.push("node authorizer does not support user rule resolution".to_string());
        }
        let policy = ctx.st.rbac.ready_policy(&ctx.st).await;
        let (rules, rbac_errors) = policy.rules_for(&ctx.user, ns);
        if !rbac_errors.is_empty() {
            errors.push(crate::authz::rbac::aggregate(rbac_errors));
        }
        let mut resource_rules = Vec::new();
        let mut non_resource_rules = Vec::new();
        for r in rules {
            if !r.resources.is_empty() {
                let mut m = json!({"verbs": r.verbs});
                if !r.api_groups.is_empty() {
                    m["apiGroups"] = json!(r.api_groups);
                }
                m["resources"] = json!(r.resources);
                if !r.resource_names.is_empty() {
                    m["resourceNames"] = json!(r.resource_names);
                }
                resource_rules.push(m);
            }
            if !r.non_resource_urls.is_empty() {
                non_resource_rules
                    .push(json!({"verbs": r.verbs, "nonResourceURLs": r.non_resource_urls}));
            }
        }
        let mut status = json!({
            "resourceRules": resource_rules,
            "nonResourceRules": non_resource_rules,
            "incomplete": incomplete,
        });
        if !errors.is_empty() {
            status["evaluationError"] = json!(crate::authz::rbac::aggregate(errors));
        }
        Some(Ok(json!({
            "kind": "SelfSubjectRulesReview",
            "apiVersion": "authorization.k8s.io/v1",
            "metadata": {"creationTimestamp": null},
            "spec": {},
            "status": status,
        })))
    }
}
