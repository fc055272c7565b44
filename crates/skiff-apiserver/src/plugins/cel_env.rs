//! The CEL environment of admission: `matchConditions` of webhooks and policies, and the
//! variables (`object`, `oldObject`, `request`, `params`, `namespaceObject`, `authorizer`)
//! their expressions see.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::{json, Map, Value};

use super::{Operation, Request};
use crate::auth::UserInfo;
use crate::authz::{Attributes, Decision};
use crate::AppState;

/// The variables admission expressions may read.
pub(crate) const ADMISSION_VARIABLES: &[&str] = &[
    "object",
    "oldObject",
    "request",
    "params",
    "namespaceObject",
    "authorizer",
    "variables",
];

/// The outcome of a list of `matchConditions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Matched {
    /// Every condition is true.
    Yes,
    /// This condition (by name) is false.
    No(String),
}

/// Evaluates `conds` (`[{name, expression}]`) with `vars` (`object`, `oldObject`, `request`, …)
/// and `authorizer` checks for `user`. Err = an expression failed to compile or evaluate (the
/// caller applies its failure policy).
pub(crate) fn match_conditions(
    st: &AppState,
    user: &Arc<UserInfo>,
    conds: &[Value],
    vars: &Map<String, Value>,
) -> Result<Matched, String> {
    if conds.is_empty() {
        return Ok(Matched::Yes);
    }
    let mut act = skiff_cel::Activation::new();
    for (k, v) in vars {
        act.json(k, v);
    }
    act.authorizer(authorizer(st, user));
    if let Some(r) = vars.get("request") {
        act.request_resource(request_resource(r));
    }
    // Webhook conditions see object, oldObject, request and authorizer; a caller may add more.
    const WEBHOOK: [&str; 4] = ["object", "oldObject", "request", "authorizer"];
    let mut declared: Vec<&str> = WEBHOOK.to_vec();
    declared.extend(
        vars.keys()
            .map(String::as_str)
            .filter(|k| !WEBHOOK.contains(k)),
    );
    let programs = conds
        .iter()
        .map(|c| {
            let name = c.get("name").and_then(Value::as_str).unwrap_or("");
            let expr = c.get("expression").and_then(Value::as_str).unwrap_or("");
            compiled(expr, &declared).map(|p| (name.to_string(), p))
        })
        .collect::<Result<Vec<_>, _>>()?;
    eval_conditions(&programs, &act)
}

/// Upstream's matchConditions semantics: a false condition wins over an error (the request
/// simply does not match); otherwise the first error is returned.
pub(crate) fn eval_conditions(
    conds: &[(String, Arc<skiff_cel::Program>)],
    act: &skiff_cel::Activation,
) -> Result<Matched, String> {
    let mut first_err = None;
    for (name, p) in conds {
        match p.eval_bool(act) {
            Ok(true) => {}
            Ok(false) => return Ok(Matched::No(name.clone())),
            Err(e) => {
                first_err.get_or_insert_with(|| {
                    format!("expression '{}' resulted in error: {e}", p.source())
                });
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok(Matched::Yes),
    }
}

/// Most distinct expressions kept compiled by [`compiled`].
const CACHE_MAX: usize = 1024;

static COMPILED: Mutex<Option<HashMap<String, Arc<skiff_cel::Program>>>> = Mutex::new(None);

/// `expr` compiled (cached by text: webhooks evaluate the same conditions on every request).
pub(crate) fn compiled(expr: &str, declared: &[&str]) -> Result<Arc<skiff_cel::Program>, String> {
    let key = format!("{}\u{0}{expr}", declared.join(","));
    let mut guard = match COMPILED.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    };
    let cache = guard.get_or_insert_with(HashMap::new);
    if let Some(p) = cache.get(&key) {
        return Ok(p.clone());
    }
    let p = Arc::new(
        skiff_cel::compile(expr, declared).map_err(|e| format!("compilation failed: {e}"))?,
    );
    if cache.len() >= CACHE_MAX {
        cache.clear();
    }
    cache.insert(key, p.clone());
    Ok(p)
}

/// Answers `authorizer` checks with the RBAC policy (synchronously; `system:masters` is
/// always allowed, like the authorizer chain).
struct RbacChecks {
    policy: Arc<crate::authz::rbac::Policy>,
    user: Arc<UserInfo>,
}

impl skiff_cel::Authorizer for RbacChecks {
    fn authorize(&self, r: &skiff_cel::AuthzRequest) -> skiff_cel::Decision {
        if self.user.is_master() {
            return skiff_cel::Decision {
                allowed: true,
                reason: String::new(),
            };
        }
        let attrs = Attributes {
            user: self.user.clone(),
            verb: r.verb.clone(),
            resource_request: r.path.is_none(),
            api_group: r.group.clone(),
            resource: r.resource.clone(),
            subresource: r.subresource.clone(),
            namespace: r.namespace.clone(),
            name: r.name.clone(),
            path: r.path.clone().unwrap_or_default(),
            ..Default::default()
        };
        match self.policy.decide(&attrs) {
            Decision::Allow => skiff_cel::Decision {
                allowed: true,
                reason: String::new(),
            },
            Decision::Deny(reason) | Decision::NoOpinion(reason) => skiff_cel::Decision {
                allowed: false,
                reason,
            },
        }
    }
}

/// The `authorizer` for `user`.
pub(crate) fn authorizer(st: &AppState, user: &Arc<UserInfo>) -> Arc<dyn skiff_cel::Authorizer> {
    Arc::new(RbacChecks {
        policy: st.rbac.policy(),
        user: user.clone(),
    })
}

/// `authorizer.requestResource` of a `request` variable.
pub(crate) fn request_resource(request: &Value) -> skiff_cel::AuthzRequest {
    let s = |p: &str| {
        request
            .pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    skiff_cel::AuthzRequest {
        group: s("/resource/group"),
        resource: s("/resource/resource"),
        subresource: s("/subResource"),
        namespace: s("/namespace"),
        name: s("/name"),
        ..Default::default()
    }
}

pub(crate) fn operation_name(op: Operation) -> &'static str {
    match op {
        Operation::Create => "CREATE",
        Operation::Update => "UPDATE",
        Operation::Delete => "DELETE",
        Operation::Connect => "CONNECT",
    }
}

/// The `request` variable: upstream's `admission.k8s.io/v1` AdmissionRequest (without the
/// objects, which are variables of their own).
pub(crate) fn request_object(req: &Request<'_>, uid: &str) -> Value {
    let info = req.ctx.info;
    let user = req.user();
    let gvk = json!({"group": info.group, "version": info.version, "kind": info.kind});
    let gvr = json!({"group": info.group, "version": info.version, "resource": info.plural});
    let options_kind = match req.op {
        Operation::Create => "CreateOptions",
        Operation::Update => "UpdateOptions",
        Operation::Delete => "DeleteOptions",
        Operation::Connect => "",
    };
    let mut r = json!({
        "uid": uid,
        "kind": gvk,
        "resource": gvr,
        "requestKind": gvk,
        "requestResource": gvr,
        "name": req.name,
        "namespace": req.ctx.ns.as_deref().unwrap_or(""),
        "operation": operation_name(req.op),
        "userInfo": {
            "username": user.name,
            "uid": user.uid,
            "groups": user.groups,
            "extra": user.extra,
        },
        "dryRun": req.ctx.dry_run(),
        "options": if options_kind.is_empty() { json!({}) } else {
            json!({"kind": options_kind, "apiVersion": "meta.k8s.io/v1"})
        },
    });
    if !req.subresource.is_empty() {
        r["subResource"] = json!(req.subresource);
        r["requestSubResource"] = json!(req.subresource);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn false_beats_error_and_errors_name_the_expression() {
        let act = {
            let mut a = skiff_cel::Activation::new();
            a.json("object", &json!({"a": 1}));
            a
        };
        let p = |n: &str, e: &str| (n.to_string(), compiled(e, ADMISSION_VARIABLES).unwrap());
        assert_eq!(
            eval_conditions(&[p("ok", "object.a == 1")], &act),
            Ok(Matched::Yes)
        );
        assert_eq!(
            eval_conditions(&[p("err", "object.b == 1"), p("no", "false")], &act),
            Ok(Matched::No("no".into()))
        );
        assert_eq!(
            eval_conditions(&[p("err", "object.b == 1")], &act),
            Err("expression 'object.b == 1' resulted in error: no such key: b".into())
        );
        assert!(compiled("nope(", ADMISSION_VARIABLES).is_err());
    }

    #[test]
    fn webhook_conditions_declare_only_their_variables() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store =
            Arc::new(skiff_store::SqliteStore::open(&dir.path().join("state.db")).expect("store"));
        let tokens = crate::Tokens {
            admin: "admin".into(),
            node: "node".into(),
        };
        let st = AppState::new(store, tokens, tokio::sync::watch::channel(false).1);
        let user = Arc::new(UserInfo::new("u", &[]));
        let mut vars = Map::new();
        vars.insert("object".into(), json!({"metadata": {"name": "x"}}));
        vars.insert(
            "request".into(),
            json!({"operation": "CREATE", "resource": {"resource": "pods"}}),
        );
        let cond = |e: &str| vec![json!({"name": "c", "expression": e})];
        assert_eq!(
            match_conditions(&st, &user, &cond("object.metadata.name == 'x'"), &vars),
            Ok(Matched::Yes)
        );
        assert_eq!(
            match_conditions(&st, &user, &cond("request.operation == 'DELETE'"), &vars),
            Ok(Matched::No("c".into()))
        );
        let err = match_conditions(&st, &user, &cond("params.x == 1"), &vars).unwrap_err();
        assert!(err.contains("undeclared reference to 'params'"), "{err}");
        // authorizer checks go to RBAC: an ordinary user with no bindings may not.
        assert_eq!(
            match_conditions(
                &st,
                &user,
                &cond("!authorizer.requestResource.check('create').allowed()"),
                &vars
            ),
            Ok(Matched::Yes)
        );
    }
}
