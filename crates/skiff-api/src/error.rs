//! Kubernetes `Status` errors with the reasons, codes and wording kubectl prints well.
//!
//! The messages copy kube-apiserver's `k8s.io/apimachinery/pkg/api/errors` constructors because
//! kubectl prints them verbatim (and builds the 422 line from `details`).

use serde_json::{json, Map, Value};

/// One field-level cause of an Invalid error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    /// e.g. "FieldValueRequired", "FieldValueInvalid", "FieldValueNotSupported", "FieldValueDuplicate".
    pub reason: String,
    pub message: String,
    /// e.g. "spec.selector".
    pub field: String,
}

impl Cause {
    /// A cause as it appears in `details.causes` (`reason`, `message`, `field`; empty parts omitted).
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        if !self.reason.is_empty() {
            m.insert("reason".into(), Value::String(self.reason.clone()));
        }
        if !self.message.is_empty() {
            m.insert("message".into(), Value::String(self.message.clone()));
        }
        if !self.field.is_empty() {
            m.insert("field".into(), Value::String(self.field.clone()));
        }
        Value::Object(m)
    }
}

/// An API error; `to_status()` renders the Status object, `code` is the HTTP status.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub code: u16,
    /// NotFound, AlreadyExists, Conflict, Invalid, BadRequest, Unauthorized, Forbidden,
    /// RequestEntityTooLarge, MethodNotAllowed, Expired, Gone, UnsupportedMediaType, NotAcceptable,
    /// InternalError, Timeout...
    pub reason: String,
    pub message: String,
    /// The Status `details` object (name, group, kind, causes, retryAfterSeconds).
    pub details: Option<serde_json::Value>,
}

/// `deployments.apps` or `pods`.
fn group_resource(group: &str, plural: &str) -> String {
    if group.is_empty() {
        plural.to_string()
    } else {
        format!("{plural}.{group}")
    }
}

/// `details` with name/group/kind; the core group is omitted like upstream's `omitempty`.
fn details(group: &str, kind: &str, name: &str) -> Map<String, Value> {
    let mut d = Map::new();
    if !name.is_empty() {
        d.insert("name".into(), Value::String(name.to_string()));
    }
    if !group.is_empty() {
        d.insert("group".into(), Value::String(group.to_string()));
    }
    if !kind.is_empty() {
        d.insert("kind".into(), Value::String(kind.to_string()));
    }
    d
}

impl ApiError {
    /// Any status code/reason/message without details.
    pub fn new(code: u16, reason: &str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason: reason.to_string(),
            message: message.into(),
            details: None,
        }
    }

    /// 404: `deployments.apps "web" not found` (group_resource like "deployments.apps" or "pods").
    pub fn not_found(group: &str, plural: &str, name: &str) -> Self {
        ApiError {
            code: 404,
            reason: "NotFound".into(),
            message: format!("{} \"{name}\" not found", group_resource(group, plural)),
            details: Some(Value::Object(details(group, plural, name))),
        }
    }
    /// 409 AlreadyExists: `deployments.apps "web" already exists`.
    pub fn already_exists(group: &str, plural: &str, name: &str) -> Self {
        ApiError {
            code: 409,
            reason: "AlreadyExists".into(),
            message: format!(
                "{} \"{name}\" already exists",
                group_resource(group, plural)
            ),
            details: Some(Value::Object(details(group, plural, name))),
        }
    }
    /// 409 Conflict: `Operation cannot be fulfilled on deployments.apps "web": <why>`.
    pub fn conflict(group: &str, plural: &str, name: &str, why: &str) -> Self {
        ApiError {
            code: 409,
            reason: "Conflict".into(),
            message: format!(
                "Operation cannot be fulfilled on {} \"{name}\": {why}",
                group_resource(group, plural)
            ),
            details: Some(Value::Object(details(group, plural, name))),
        }
    }
    /// 422 Invalid: `Deployment.apps "x" is invalid: spec.selector: Required value` with causes.
    pub fn invalid(group: &str, kind: &str, name: &str, causes: Vec<Cause>) -> Self {
        let qualified = if group.is_empty() {
            kind.to_string()
        } else {
            format!("{kind}.{group}")
        };
        // field.ErrorList.ToAggregate(): one error printed bare, several as "[a, b]", deduplicated.
        let mut parts: Vec<String> = Vec::new();
        for c in &causes {
            let text = if c.field.is_empty() {
                c.message.clone()
            } else {
                format!("{}: {}", c.field, c.message)
            };
            if !parts.contains(&text) {
                parts.push(text);
            }
        }
        let agg = match parts.len() {
            0 => String::new(),
            1 => parts.remove(0),
            _ => format!("[{}]", parts.join(", ")),
        };
        let mut d = details(group, kind, name);
        if !causes.is_empty() {
            d.insert(
                "causes".into(),
                Value::Array(causes.iter().map(Cause::to_json).collect()),
            );
        }
        ApiError {
            code: 422,
            reason: "Invalid".into(),
            message: format!("{qualified} \"{name}\" is invalid: {agg}"),
            details: Some(Value::Object(d)),
        }
    }
    /// 400 BadRequest.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }
    /// 401 Unauthorized.
    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }
    /// 403 Forbidden.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, "Forbidden", message)
    }
    /// 405 MethodNotAllowed.
    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(405, "MethodNotAllowed", message)
    }
    /// 410 Expired: `too old resource version: 5 (120)`.
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }
    /// 413 RequestEntityTooLarge.
    pub fn too_large(limit_bytes: usize) -> Self {
        Self::new(
            413,
            "RequestEntityTooLarge",
            format!("Request entity too large: limit is {limit_bytes}"),
        )
    }
    /// 415 UnsupportedMediaType.
    pub fn unsupported_media_type(content_type: &str) -> Self {
        // Upstream lists the accepted types rather than echoing the offending one.
        let accepted = if content_type.contains("patch") {
            "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json"
        } else {
            "application/json, application/yaml, application/vnd.kubernetes.protobuf"
        };
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: {accepted}"
            ),
        )
    }
    /// 500 InternalError.
    pub fn internal(message: impl Into<String>) -> Self {
        let message = message.into();
        ApiError {
            code: 500,
            reason: "InternalError".into(),
            message: format!("Internal error occurred: {message}"),
            details: Some(json!({"causes": [{"message": message}]})),
        }
    }
    /// The `Status` object (kind Status, apiVersion v1, status Failure, message, reason, details, code).
    pub fn to_status(&self) -> serde_json::Value {
        let mut m = Map::new();
        m.insert("kind".into(), json!("Status"));
        m.insert("apiVersion".into(), json!("v1"));
        m.insert("metadata".into(), json!({}));
        m.insert("status".into(), json!("Failure"));
        m.insert("message".into(), Value::String(self.message.clone()));
        if !self.reason.is_empty() {
            m.insert("reason".into(), Value::String(self.reason.clone()));
        }
        if let Some(d) = &self.details {
            m.insert("details".into(), d.clone());
        }
        m.insert("code".into(), json!(self.code));
        Value::Object(m)
    }

    /// The `Status` body exactly as kube-apiserver writes it: fields in `metav1.Status`
    /// declaration order (kind, apiVersion, metadata, status, message, reason, details, code;
    /// details as name, group, kind, uid, causes, retryAfterSeconds; causes as reason, message,
    /// field) and the trailing newline of Go's `json.Encoder`. Clients compare these bytes (the
    /// Python client's `FailToCreateError` text embeds them).
    pub fn to_status_bytes(&self) -> Vec<u8> {
        let details = self.details.as_ref().map(StatusDetails::from_value);
        let status = StatusOut {
            kind: "Status",
            api_version: "v1",
            metadata: EmptyMeta {},
            status: "Failure",
            message: &self.message,
            reason: &self.reason,
            details,
            code: self.code,
        };
        // Serializing plain structs of strings and numbers cannot fail; fall back to the
        // unordered form rather than panic.
        let mut out = serde_json::to_vec(&status)
            .unwrap_or_else(|_| serde_json::to_vec(&self.to_status()).unwrap_or_default());
        out.push(b'\n');
        out
    }
}

#[derive(serde::Serialize)]
struct EmptyMeta {}

#[derive(serde::Serialize)]
struct StatusOut<'a> {
    kind: &'static str,
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    metadata: EmptyMeta,
    status: &'static str,
    #[serde(skip_serializing_if = "str::is_empty")]
    message: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    reason: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<StatusDetails>,
    code: u16,
}

/// `metav1.StatusDetails` in declaration order; unknown keys are dropped (upstream has none).
#[derive(serde::Serialize)]
struct StatusDetails {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    group: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    uid: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    causes: Option<Vec<StatusCause>>,
    #[serde(rename = "retryAfterSeconds", skip_serializing_if = "Option::is_none")]
    retry_after_seconds: Option<Value>,
}

#[derive(serde::Serialize)]
struct StatusCause {
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<Value>,
}

impl StatusDetails {
    fn from_value(v: &Value) -> Self {
        let get = |k: &str| v.get(k).cloned();
        let causes = v.get("causes").and_then(Value::as_array).map(|cs| {
            cs.iter()
                .map(|c| StatusCause {
                    reason: c.get("reason").cloned(),
                    message: c.get("message").cloned(),
                    field: c.get("field").cloned(),
                })
                .collect()
        });
        StatusDetails {
            name: get("name"),
            group: get("group"),
            kind: get("kind"),
            uid: get("uid"),
            causes,
            retry_after_seconds: get("retryAfterSeconds"),
        }
    }
}
