//! The per-request context every verb, subresource, watch and admission hook works on: [`Ctx`]
//! (state, resource, namespace, query, headers), the write [`Mode`] and the parsed
//! [`DeleteOpts`].

use std::sync::Arc;

use http::{header, HeaderMap};
use serde_json::Value;
use skiff_api::{ApiError, ResourceInfo};

use crate::keys::{decode, object_key};
use crate::query::Query;
use crate::respond::{store_err, ApiResult};
use crate::AppState;

/// Attempts for read-modify-write cycles that lose a race with another writer.
pub(crate) const RETRIES: usize = 8;

/// One request against a resource.
pub(crate) struct Ctx {
    pub st: Arc<AppState>,
    pub info: &'static ResourceInfo,
    /// The namespace from the URL (None: cluster-scoped or all namespaces).
    pub ns: Option<String>,
    pub query: Query,
    pub headers: HeaderMap,
    /// Who the request acts as (after impersonation).
    pub user: Arc<crate::auth::UserInfo>,
    /// The custom kind served (None: a built-in kind).
    pub custom: Option<Arc<crate::crd::ServedKind>>,
}

/// Whether a write targets the main resource, its `/status` subresource, or a CSR's
/// `/approval` (which, like status, writes only under `status`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Mode {
    Main,
    Status,
    Approval,
}

impl Mode {
    /// The subresource name admission sees ("" for the main resource).
    pub(crate) fn subresource(self) -> &'static str {
        match self {
            Mode::Main => "",
            Mode::Status => "status",
            Mode::Approval => "approval",
        }
    }
}

impl Ctx {
    /// How the kind's objects merge in server-side apply and managedFields.
    pub(crate) fn shape(&self) -> skiff_api::apply::Shape {
        self.custom
            .as_ref()
            .map_or_else(|| skiff_api::apply::Shape::of(self.info), |c| c.shape)
    }

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
            Ok(Some(kv)) => Ok((
                self.at_request_version(decode(&kv)?).await?,
                kv.mod_revision,
            )),
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
    /// Custom objects lose their unknown fields here (pruning).
    pub(crate) fn field_validation(&self, obj: &mut Value) -> ApiResult<Vec<String>> {
        if let Some(kind) = &self.custom {
            return crate::crd::strategy::prune(kind, &self.query, obj);
        }
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
            let mut message = format!("strict decoding error: {}", list.join(", "));
            // Upstream's create/update decoder names the kind; patches report the bare error.
            let patch = self
                .content_type()
                .is_some_and(|t| t.ends_with("patch+json") || t == "application/apply-patch+yaml");
            if !patch {
                message = format!(
                    "{kind} in version {version:?} cannot be handled as a {kind}: {message}",
                    kind = self.info.kind,
                    version = self.info.version,
                );
            }
            return Err(ApiError::bad_request(message));
        }
        Ok(unknown
            .iter()
            .map(|f| format!("unknown field \"{f}\""))
            .collect())
    }
}

impl Ctx {
    /// Label and field selectors from the query, field labels checked against the kind's.
    pub(crate) fn selectors(
        &self,
    ) -> ApiResult<(
        skiff_api::selector::LabelSelector,
        skiff_api::selector::FieldSelector,
    )> {
        match &self.custom {
            Some(kind) => crate::crd::strategy::selectors(kind, &self.query),
            None => crate::objects::selectors(&self.query, self.info),
        }
    }
}

/// The DeleteOptions that matter here.
#[derive(Default, Clone)]
pub(crate) struct DeleteOpts {
    pub grace: Option<i64>,
    pub propagation: Option<String>,
    pub uid: Option<String>,
    pub rv: Option<String>,
    pub dry_run: bool,
}

impl DeleteOpts {
    /// DeleteOptions from a DELETE request's body and query.
    pub(crate) fn from_request(ctx: &Ctx, body: &[u8]) -> ApiResult<Self> {
        let mut o = DeleteOpts {
            dry_run: ctx.dry_run(),
            ..Default::default()
        };
        if !body.is_empty() {
            let v = ctx.decode_body(body)?;
            o.merge_json(&v);
        }
        if let Some(g) = ctx.query.get("gracePeriodSeconds") {
            o.grace =
                Some(g.parse().map_err(|_| {
                    ApiError::bad_request(format!("invalid gracePeriodSeconds {g:?}"))
                })?);
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

    /// Takes the fields of a DeleteOptions object (a body, or an Eviction's `deleteOptions`).
    pub(crate) fn merge_json(&mut self, v: &Value) {
        if let Some(g) = v.get("gracePeriodSeconds").and_then(Value::as_i64) {
            self.grace = Some(g);
        }
        if let Some(p) = v.get("propagationPolicy").and_then(Value::as_str) {
            self.propagation = Some(p.to_string());
        } else if let Some(orphan) = v.get("orphanDependents").and_then(Value::as_bool) {
            // An explicit `false` overrides a resource's orphaning default.
            let policy = if orphan { "Orphan" } else { "Background" };
            self.propagation = Some(policy.into());
        }
        if let Some(u) = v.pointer("/preconditions/uid").and_then(Value::as_str) {
            self.uid = Some(u.to_string());
        }
        if let Some(r) = v
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
        {
            self.rv = Some(r.to_string());
        }
        if v.get("dryRun")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|x| x == "All"))
        {
            self.dry_run = true;
        }
    }
}
