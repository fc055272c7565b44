//! Authorization: what a user may do. A request becomes upstream's authorizer
//! [`Attributes`] (verb, API group, resource, subresource, namespace, name — or a non-resource
//! path), and the chain answers: `system:masters` is always allowed, then each [`Authorizer`]
//! in turn (the Node authorizer, then RBAC) may allow, deny or have no opinion; no opinion
//! from all of them is a 403 with upstream's exact message ([`forbidden`]).

use std::sync::Arc;

use async_trait::async_trait;
use http::Method;
use skiff_api::ApiError;

use crate::auth::UserInfo;
use crate::AppState;

pub(crate) mod node;

/// Upstream's `authorizer.Attributes`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attributes {
    pub user: Arc<UserInfo>,
    /// get, list, watch, create, update, patch, delete, deletecollection, impersonate, … (for
    /// non-resource requests the lower-case HTTP method).
    pub verb: String,
    pub resource_request: bool,
    pub api_group: String,
    pub api_version: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
    /// The request path (non-resource requests).
    pub path: String,
    /// The `field=value` (or `==`) requirements of the request's fieldSelector, in order
    /// (upstream's `GetFieldSelector`; the Node authorizer scopes pod lists with it).
    pub field_selector: Vec<(String, String)>,
}

impl Attributes {
    /// `resource` or `resource/subresource`.
    pub fn resource_and_sub(&self) -> String {
        if self.subresource.is_empty() {
            self.resource.clone()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        }
    }
}

/// One authorizer's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Deny and stop the chain (with a reason appended to the message, may be empty).
    Deny(String),
    /// Let the next authorizer decide; the reason is reported if nothing allows.
    NoOpinion(String),
}

/// An authorizer in the chain.
#[async_trait]
pub trait Authorizer: Send + Sync {
    async fn authorize(&self, st: &AppState, attrs: &Attributes) -> Decision;
}

/// Allows every authenticated request except from nodes and bootstrap tokens, which get only
/// what RBAC's bootstrap policy grants every authenticated user (discovery, health, version,
/// self reviews): transitional until the RBAC authorizer replaces it (issue 12).
struct AllowAuthenticated;

#[async_trait]
impl Authorizer for AllowAuthenticated {
    async fn authorize(&self, _st: &AppState, attrs: &Attributes) -> Decision {
        use crate::auth::user::groups;
        let restricted =
            attrs.user.in_group(groups::NODES) || attrs.user.in_group(groups::BOOTSTRAPPERS);
        if !restricted {
            return Decision::Allow;
        }
        let basic = if attrs.resource_request {
            attrs.verb == "create"
                && attrs.api_group == "authorization.k8s.io"
                && matches!(
                    attrs.resource.as_str(),
                    "selfsubjectaccessreviews" | "selfsubjectrulesreviews"
                )
                || attrs.verb == "create"
                    && attrs.api_group == "authentication.k8s.io"
                    && attrs.resource == "selfsubjectreviews"
        } else {
            attrs.verb == "get"
        };
        if basic {
            Decision::Allow
        } else {
            Decision::NoOpinion(String::new())
        }
    }
}

/// The authorizers after `system:masters`, in order: the Node authorizer first (as upstream's
/// `--authorization-mode=Node,RBAC`).
pub(crate) fn registry() -> Vec<Arc<dyn Authorizer>> {
    vec![
        Arc::new(node::NodeAuthorizer::default()),
        Arc::new(AllowAuthenticated),
    ]
}

/// Runs the chain: `system:masters`, then the registered authorizers in order.
pub async fn authorize(st: &AppState, attrs: &Attributes) -> Decision {
    if attrs.user.is_master() {
        return Decision::Allow;
    }
    let mut reasons = Vec::new();
    for a in &st.authorizers {
        match a.authorize(st, attrs).await {
            Decision::Allow => return Decision::Allow,
            Decision::Deny(r) => return Decision::Deny(r),
            Decision::NoOpinion(r) => {
                if !r.is_empty() {
                    reasons.push(r)
                }
            }
        }
    }
    Decision::NoOpinion(reasons.join(", "))
}

/// Authorizes or returns upstream's Forbidden error.
pub async fn check(st: &AppState, attrs: &Attributes) -> Result<(), ApiError> {
    match authorize(st, attrs).await {
        Decision::Allow => Ok(()),
        Decision::Deny(reason) | Decision::NoOpinion(reason) => Err(forbidden(attrs, &reason)),
    }
}

/// Upstream's `responsewriters.Forbidden`: `pods "x" is forbidden: User "u" cannot get resource
/// "pods" in API group "" in the namespace "ns"[: reason]`.
pub fn forbidden(attrs: &Attributes, reason: &str) -> ApiError {
    let user = &attrs.user.name;
    let what = if !attrs.resource_request {
        format!("User {user:?} cannot {} path {:?}", attrs.verb, attrs.path)
    } else if !attrs.namespace.is_empty() {
        format!(
            "User {user:?} cannot {} resource {:?} in API group {:?} in the namespace {:?}",
            attrs.verb,
            attrs.resource_and_sub(),
            attrs.api_group,
            attrs.namespace
        )
    } else {
        format!(
            "User {user:?} cannot {} resource {:?} in API group {:?} at the cluster scope",
            attrs.verb,
            attrs.resource_and_sub(),
            attrs.api_group
        )
    };
    let err = if reason.is_empty() {
        what
    } else {
        format!("{what}: {reason}")
    };
    // apierrors.NewForbidden(GroupResource{group, resource}, name, err).
    let (group, resource) = if attrs.resource_request {
        (attrs.api_group.as_str(), attrs.resource.as_str())
    } else {
        ("", "")
    };
    let qualified = if group.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}.{group}")
    };
    let message = if qualified.is_empty() {
        format!("forbidden: {err}")
    } else if attrs.name.is_empty() {
        format!("{qualified} is forbidden: {err}")
    } else {
        format!("{qualified} {:?} is forbidden: {err}", attrs.name)
    };
    let mut details = serde_json::Map::new();
    if !attrs.name.is_empty() {
        details.insert("name".into(), attrs.name.clone().into());
    }
    if !group.is_empty() {
        details.insert("group".into(), group.into());
    }
    if !resource.is_empty() {
        details.insert("kind".into(), resource.into());
    }
    let mut e = ApiError::forbidden(message);
    e.details = Some(serde_json::Value::Object(details));
    e
}

/// The parts of a resource request the attributes are built from.
pub(crate) struct ResourcePath<'a> {
    pub group: &'a str,
    pub version: &'a str,
    pub resource: &'a str,
    pub namespace: Option<&'a str>,
    pub name: Option<&'a str>,
    pub subresource: Option<&'a str>,
    pub watch: bool,
    /// The raw `fieldSelector` query parameter.
    pub field_selector: Option<&'a str>,
}

/// The equality requirements of a field selector (`a=b,c==d`; `!=` requirements are not
/// equalities and are left out).
pub(crate) fn field_equalities(selector: &str) -> Vec<(String, String)> {
    selector
        .split(',')
        .filter_map(|req| {
            if req.contains("!=") {
                return None;
            }
            let (k, v) = req.split_once("==").or_else(|| req.split_once('='))?;
            Some((k.trim().to_string(), v.trim().to_string()))
        })
        .collect()
}

/// Upstream's RequestInfo verb for a resource request.
pub(crate) fn resource_verb(method: &Method, p: &ResourcePath<'_>) -> &'static str {
    let connect = matches!(p.subresource, Some("exec" | "attach" | "portforward"));
    match *method {
        // WebSocket upgrades of exec/attach/portforward need `create` like their POST
        // (upstream's AuthorizePodWebsocketUpgradeCreatePermission, on by default).
        Method::GET | Method::HEAD if connect => "create",
        Method::GET | Method::HEAD if p.watch => "watch",
        Method::GET | Method::HEAD if p.name.is_some() => "get",
        Method::GET | Method::HEAD => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if p.name.is_some() => "delete",
        Method::DELETE => "deletecollection",
        _ => "",
    }
}

/// Attributes of a resource request.
pub(crate) fn resource_attributes(
    user: Arc<UserInfo>,
    method: &Method,
    p: &ResourcePath<'_>,
) -> Attributes {
    let verb = resource_verb(method, p);
    let field_selector = p.field_selector.map(field_equalities).unwrap_or_default();
    // Upstream's RequestInfo takes the name of a list/watch from a `metadata.name` field
    // selector, so a node may watch exactly one Secret it is allowed to get.
    let selected_name = match (p.name, verb) {
        (None, "list" | "watch") => field_selector
            .iter()
            .find(|(k, _)| k == "metadata.name")
            .map(|(_, v)| v.as_str())
            .filter(|n| !n.is_empty() && *n != "." && *n != ".." && !n.contains(['/', '%'])),
        _ => None,
    };
    Attributes {
        user,
        verb: verb.to_string(),
        resource_request: true,
        api_group: p.group.to_string(),
        api_version: p.version.to_string(),
        resource: p.resource.to_string(),
        subresource: p.subresource.unwrap_or("").to_string(),
        namespace: p.namespace.unwrap_or("").to_string(),
        name: p.name.or(selected_name).unwrap_or("").to_string(),
        path: String::new(),
        field_selector,
    }
}

/// Attributes of a non-resource request (discovery, OpenAPI, health, …).
pub(crate) fn path_attributes(user: Arc<UserInfo>, method: &Method, path: &str) -> Attributes {
    Attributes {
        user,
        verb: method.as_str().to_ascii_lowercase(),
        resource_request: false,
        path: path.to_string(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(verb: &str, resource: &str, ns: &str, name: &str) -> Attributes {
        Attributes {
            user: Arc::new(UserInfo::new("alice", &[])),
            verb: verb.into(),
            resource_request: true,
            resource: resource.into(),
            namespace: ns.into(),
            name: name.into(),
            ..Default::default()
        }
    }

    #[test]
    fn forbidden_messages_are_upstreams() {
        let e = forbidden(&attrs("list", "pods", "dev", ""), "");
        assert_eq!(
            e.message,
            r#"pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the namespace "dev""#
        );
        assert_eq!(e.code, 403);
        let mut a = attrs("get", "deployments", "", "web");
        a.api_group = "apps".into();
        a.subresource = "scale".into();
        assert_eq!(
            forbidden(&a, "no RBAC policy matched").message,
            r#"deployments.apps "web" is forbidden: User "alice" cannot get resource "deployments/scale" in API group "apps" at the cluster scope: no RBAC policy matched"#
        );
        assert_eq!(
            forbidden(&a, "").details,
            Some(serde_json::json!({"name": "web", "group": "apps", "kind": "deployments"}))
        );
        let p = path_attributes(Arc::new(UserInfo::new("bob", &[])), &Method::GET, "/logs");
        assert_eq!(
            forbidden(&p, "").message,
            r#"forbidden: User "bob" cannot get path "/logs""#
        );
    }

    #[test]
    fn verbs_follow_request_info() {
        let p = |name: Option<&'static str>, sub: Option<&'static str>, watch| ResourcePath {
            group: "",
            version: "v1",
            resource: "pods",
            namespace: Some("ns"),
            name,
            subresource: sub,
            watch,
            field_selector: None,
        };
        assert_eq!(resource_verb(&Method::GET, &p(None, None, false)), "list");
        assert_eq!(resource_verb(&Method::GET, &p(None, None, true)), "watch");
        assert_eq!(
            resource_verb(&Method::GET, &p(Some("x"), None, false)),
            "get"
        );
        assert_eq!(
            resource_verb(&Method::GET, &p(Some("x"), Some("exec"), false)),
            "create"
        );
        assert_eq!(
            resource_verb(&Method::GET, &p(Some("x"), Some("log"), false)),
            "get"
        );
        assert_eq!(
            resource_verb(&Method::DELETE, &p(None, None, false)),
            "deletecollection"
        );
        assert_eq!(
            resource_verb(&Method::PATCH, &p(Some("x"), Some("status"), false)),
            "patch"
        );
    }
}
