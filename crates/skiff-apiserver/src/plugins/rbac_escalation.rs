//! RBAC escalation prevention (upstream does this in the RBAC kinds' storage; here it is an
//! admission plugin because it needs the user and the old object): a user may write a Role or
//! ClusterRole only with rules they already hold, or with `escalate` on it, and a RoleBinding
//! or ClusterRoleBinding only to a role whose rules they hold, or with `bind` on it.
//! `system:masters` is exempt. Setting a ClusterRole's aggregationRule needs full authority.
//! The Forbidden messages are upstream's (`user "x" (groups=[...]) is attempting to grant RBAC
//! permissions not currently held:` and the missing rules in compact form).

use async_trait::async_trait;
use serde_json::Value;
use skiff_api::ApiError;

use super::{Operation, Plugin, Request};
use crate::authz::rbac::rule::{compact, compact_string, covers, go_quoted_list, Rule};
use crate::authz::rbac::{aggregate, RoleKind, RoleRef, GROUP};
use crate::authz::{self, Attributes, Decision};
use crate::respond::ApiResult;

pub(crate) struct RbacEscalation;

fn forbidden(plural: &str, name: &str, msg: &str) -> ApiError {
    let mut e = ApiError::forbidden(if name.is_empty() {
        format!("{plural}.{GROUP} is forbidden: {msg}")
    } else {
        format!("{plural}.{GROUP} {name:?} is forbidden: {msg}")
    });
    let mut d = serde_json::Map::new();
    if !name.is_empty() {
        d.insert("name".into(), name.into());
    }
    d.insert("group".into(), GROUP.into());
    d.insert("kind".into(), plural.into());
    e.details = Some(Value::Object(d));
    e
}

/// The object without the fields the garbage collector may change (upstream's
/// `IsOnlyMutatingGCFields`), nor server-set bookkeeping.
fn without_gc_fields(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        for f in [
            "ownerReferences",
            "finalizers",
            "resourceVersion",
            "managedFields",
            "generation",
        ] {
            m.remove(f);
        }
    }
    o
}

fn full_authority() -> Vec<Rule> {
    vec![
        Rule {
            verbs: vec!["*".into()],
            api_groups: vec!["*".into()],
            resources: vec!["*".into()],
            ..Default::default()
        },
        Rule {
            verbs: vec!["*".into()],
            non_resource_urls: vec!["*".into()],
            ..Default::default()
        },
    ]
}

impl RbacEscalation {
    async fn allowed(
        &self,
        req: &Request<'_>,
        verb: &str,
        resource: &str,
        ns: &str,
        name: &str,
    ) -> bool {
        let attrs = Attributes {
            user: req.ctx.user.clone(),
            verb: verb.into(),
            resource_request: true,
            api_group: GROUP.into(),
            api_version: "v1".into(),
            resource: resource.into(),
            namespace: ns.into(),
            name: name.into(),
            ..Default::default()
        };
        authz::authorize(&req.ctx.st, &attrs).await == Decision::Allow
    }

    /// Upstream's `ConfirmNoEscalation`: the error text when the user lacks some of `rules`.
    async fn confirm_no_escalation(
        &self,
        req: &Request<'_>,
        ns: &str,
        rules: &[Rule],
    ) -> Result<(), String> {
        let st = &req.ctx.st;
        let user = &req.ctx.user;
        let check = |policy: &crate::authz::rbac::Policy| {
            let (owner, errors) = policy.rules_for(user, ns);
            let (ok, missing) = covers(&owner, rules);
            (ok, missing, errors)
        };
        let (mut ok, mut missing, mut errors) = check(&*st.rbac.ready_policy(st).await);
        if !ok {
            // A grant made just before may still be on its way to the index.
            st.rbac.catch_up(st.store.as_ref()).await;
            (ok, missing, errors) = check(&st.rbac.policy());
        }
        if ok {
            return Ok(());
        }
        let mut lines: Vec<String> = compact(missing).iter().map(compact_string).collect();
        lines.sort();
        lines.dedup();
        let mut msg = format!(
            "user {:?} (groups={}) is attempting to grant RBAC permissions not currently held:\n{}",
            user.name,
            go_quoted_list(&user.groups),
            lines.join("\n")
        );
        if !errors.is_empty() {
            // Upstream resolves through the registry here, whose NotFound names the plural.
            let errors = errors
                .into_iter()
                .map(|e| {
                    for kind in ["role", "clusterrole"] {
                        if let Some(rest) = e.strip_prefix(&format!("{kind}.{GROUP} ")) {
                            return format!("{kind}s.{GROUP} {rest}");
                        }
                    }
                    e
                })
                .collect();
            msg.push_str(&format!("; resolution errors: [{}]", aggregate(errors)));
        }
        Err(msg)
    }
}

#[async_trait]
impl Plugin for RbacEscalation {
    fn name(&self) -> &'static str {
        "RBACEscalation"
    }

    fn handles(&self, req: &Request<'_>) -> bool {
        req.ctx.info.group == GROUP
            && req.subresource.is_empty()
            && matches!(req.op, Operation::Create | Operation::Update)
            && !req.user().is_master()
    }

    async fn validate(&self, req: &Request<'_>, obj: Option<&Value>) -> ApiResult<Vec<String>> {
        let Some(obj) = obj else {
            return Ok(Vec::new());
        };
        if let (Operation::Update, Some(old)) = (req.op, req.old) {
            if without_gc_fields(obj) == without_gc_fields(old) {
                return Ok(Vec::new());
            }
        }
        let info = req.ctx.info;
        let plural = info.plural;
        let ns = if info.namespaced {
            req.ctx.ns.clone().unwrap_or_default()
        } else {
            String::new()
        };
        let name = obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or(req.name)
            .to_string();
        match info.kind {
            "Role" | "ClusterRole" => {
                if self.allowed(req, "escalate", plural, &ns, &name).await {
                    return Ok(Vec::new());
                }
                self.confirm_no_escalation(req, &ns, &Rule::list_from(obj))
                    .await
                    .map_err(|m| forbidden(plural, &name, &m))?;
                let aggregation = obj.get("aggregationRule").filter(|a| !a.is_null());
                let changed = req.old.and_then(|o| o.get("aggregationRule")) != aggregation;
                if info.kind == "ClusterRole" && aggregation.is_some() && changed {
                    self.confirm_no_escalation(req, &ns, &full_authority())
                        .await
                        .map_err(|_| {
                            forbidden(
                                plural,
                                &name,
                                "must have cluster-admin privileges to use the aggregationRule",
                            )
                        })?;
                }
            }
            "RoleBinding" | "ClusterRoleBinding" => {
                let Some(role_ref) = obj.get("roleRef").and_then(RoleRef::from_json) else {
                    return Ok(Vec::new());
                };
                let role_plural = match role_ref.kind {
                    RoleKind::Role => "roles",
                    RoleKind::ClusterRole => "clusterroles",
                };
                if self
                    .allowed(req, "bind", role_plural, &ns, &role_ref.name)
                    .await
                {
                    return Ok(Vec::new());
                }
                let st = &req.ctx.st;
                let mut policy = st.rbac.ready_policy(st).await;
                if policy.role_ref_rules(&role_ref, &ns).is_err() {
                    st.rbac.catch_up(st.store.as_ref()).await;
                    policy = st.rbac.policy();
                }
                // The registry's NotFound (plural resource), as upstream's storage reports it.
                let rules = policy
                    .role_ref_rules(&role_ref, &ns)
                    .map_err(|_| {
                        forbidden(
                            plural,
                            &name,
                            &format!("{role_plural}.{GROUP} {:?} not found", role_ref.name),
                        )
                    })?
                    .clone();
                self.confirm_no_escalation(req, &ns, &rules)
                    .await
                    .map_err(|m| forbidden(plural, &name, &m))?;
            }
            _ => {}
        }
        Ok(Vec::new())
    }
}
