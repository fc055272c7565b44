//! Admission plugins: the request-level admission chain every write passes after the kind's
//! own strategy (defaults, validation) and before the store, like kube-apiserver's admission
//! plugins — mutating plugins first (the object is validated again if one changed it), then
//! validating plugins, which may reject or return warnings. Unlike the kind hooks in
//! `admission.rs` (one kind, no user), a plugin sees the user, the operation, the subresource
//! and the old object, for any kind. The built-in plugins are listed in [`registry`].

pub(crate) mod cel_env;
pub(crate) mod certificates;
mod ingressclass;
mod limitranger;
mod podsecurity;
mod policy;
pub(crate) mod priority;
mod rbac_escalation;
mod resourcequota;
pub(crate) mod serviceaccount;
pub(crate) mod storageclass;
mod webhooks;

use async_trait::async_trait;
use serde_json::Value;

use crate::auth::UserInfo;
use crate::ctx::Ctx;
use crate::respond::ApiResult;

mod noderestriction;

/// The admission operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operation {
    Create,
    Update,
    Delete,
    // Exec/attach/port-forward admission is not wired into the chain yet.
    #[allow(dead_code)]
    Connect,
}

/// What a plugin is asked about.
pub(crate) struct Request<'a> {
    pub ctx: &'a Ctx,
    pub op: Operation,
    /// The object's name (may be empty for a generateName create before naming).
    pub name: &'a str,
    /// "" for the main resource, else e.g. "status", "binding", "eviction", "exec".
    pub subresource: &'a str,
    /// The stored object on updates and deletes (and the pod of an eviction).
    pub old: Option<&'a Value>,
}

impl Request<'_> {
    pub fn user(&self) -> &UserInfo {
        &self.ctx.user
    }
}

/// One admission plugin. Both steps default to doing nothing.
#[async_trait]
pub(crate) trait Plugin: Send + Sync {
    fn name(&self) -> &'static str;

    /// Whether the plugin looks at this request at all (checked before anything is read).
    fn handles(&self, _req: &Request<'_>) -> bool {
        true
    }

    /// Mutating admission: may change `obj` (None on deletes and connects).
    async fn mutate(&self, _req: &Request<'_>, _obj: Option<&mut Value>) -> ApiResult<()> {
        Ok(())
    }

    /// [`Plugin::mutate`] for plugins whose mutation also returns warnings (webhooks); the
    /// default runs `mutate` and warns nothing.
    async fn mutate_warn(
        &self,
        req: &Request<'_>,
        obj: Option<&mut Value>,
    ) -> ApiResult<Vec<String>> {
        self.mutate(req, obj).await.map(|()| Vec::new())
    }

    /// Validating admission: Err rejects the request; Ok carries warnings for the client.
    async fn validate(&self, _req: &Request<'_>, _obj: Option<&Value>) -> ApiResult<Vec<String>> {
        Ok(Vec::new())
    }
}

/// The name of the newest class among `classes` that `is_default` accepts, the alphabetically
/// first on equal timestamps (upstream's default StorageClass and IngressClass choice).
pub(crate) fn newest_default<'a>(
    classes: impl IntoIterator<Item = &'a Value>,
    is_default: impl Fn(&Value) -> bool,
) -> Option<String> {
    let field = |v: &'a Value, p: &str| v.pointer(p).and_then(Value::as_str).unwrap_or("");
    classes
        .into_iter()
        .filter(|c| is_default(c))
        .max_by(|a, b| {
            let t = |v| field(v, "/metadata/creationTimestamp");
            let n = |v| field(v, "/metadata/name");
            t(a).cmp(t(b)).then_with(|| n(b).cmp(n(a)))
        })
        .map(|c| field(c, "/metadata/name").to_string())
        .filter(|n| !n.is_empty())
}

/// The built-in plugins, in upstream's order (mutating ones before validating ones matters
/// only within each phase).
pub(crate) fn registry() -> Vec<Box<dyn Plugin>> {
    vec![
        Box::new(serviceaccount::ServiceAccount),
        Box::new(noderestriction::NodeRestriction),
        Box::new(priority::Priority),
        Box::new(certificates::Requestor),
        Box::new(certificates::Approval),
        Box::new(certificates::Signing),
        Box::new(certificates::SubjectRestriction),
        Box::new(limitranger::LimitRanger),
        Box::new(podsecurity::PodSecurity),
        Box::new(rbac_escalation::RbacEscalation),
        Box::new(ingressclass::DefaultIngressClass),
        Box::new(storageclass::DefaultStorageClass),
        Box::new(storageclass::ClaimResize),
        Box::new(webhooks::Mutating::new()),
        Box::new(policy::ValidatingAdmissionPolicy::new()),
        Box::new(webhooks::Validating::new()),
        Box::new(resourcequota::ResourceQuota::new()),
    ]
}

/// Runs the chain for a write of `obj` (already defaulted and validated by the kind); returns
/// the warnings to send.
pub(crate) async fn admit(
    req: &Request<'_>,
    mut obj: Option<&mut Value>,
) -> ApiResult<Vec<String>> {
    let plugins = &req.ctx.st.plugins;
    let active: Vec<&dyn Plugin> = plugins
        .iter()
        .map(|p| p.as_ref())
        .filter(|p| p.handles(req))
        .collect();
    if active.is_empty() {
        return Ok(Vec::new());
    }
    let before = obj.as_deref().cloned();
    let mut warnings = Vec::new();
    for p in &active {
        warnings.extend(p.mutate_warn(req, obj.as_deref_mut()).await?);
    }
    if let Some(o) = obj.as_deref() {
        if before.as_ref() != Some(o) {
            // A mutating plugin changed the object: the kind validates it again.
            skiff_api::validate::validate(req.ctx.info, o, req.old)?;
        }
    }
    for p in &active {
        let checked = p.validate(req, obj.as_deref()).await.inspect_err(|e| {
            tracing::debug!(plugin = p.name(), name = req.name, err = %e.message, "admission denied");
        });
        warnings.extend(checked?);
    }
    Ok(warnings)
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    #[test]
    fn newest_default_class_wins_and_ties_go_to_the_first_name() {
        let class = |name: &str, at: &str, default: bool| {
            json!({"metadata": {"name": name, "creationTimestamp": at,
                                "annotations": {"d": if default { "true" } else { "false" }}}})
        };
        let is_default = |c: &Value| c.pointer("/metadata/annotations/d") == Some(&json!("true"));
        let classes = [
            class("old", "2026-01-01T00:00:00Z", true),
            class("b", "2026-02-01T00:00:00Z", true),
            class("a", "2026-02-01T00:00:00Z", true),
            class("newest-not-default", "2026-03-01T00:00:00Z", false),
        ];
        assert_eq!(
            super::newest_default(&classes, is_default).as_deref(),
            Some("a")
        );
        assert_eq!(super::newest_default(&classes[3..], is_default), None);
    }
}
