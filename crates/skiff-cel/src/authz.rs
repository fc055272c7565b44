//! The `authorizer` variable: `authorizer.group(g).resource(r).namespace(ns).name(n)
//! .check(verb).allowed()` and `authorizer.path(p).check(verb)`, answered by the caller's
//! [`Authorizer`].

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use cel::common::types::{DYN_TYPE, STRING_TYPE};
use cel::common::value::{CowVal, Val};
use cel::objects::{Key, Map, Opaque};
use cel::{DeclarationError, Env, ExecutionError, Value};

use crate::library::{err, str_arg, wrap};

/// What an `authorizer` check asks about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthzRequest {
    /// Set for `authorizer.path(p)` checks (non-resource requests).
    pub path: Option<String>,
    pub group: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
    pub verb: String,
}

/// The answer to a check.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub reason: String,
}

/// Answers `authorizer` checks for the requesting user (synchronously).
pub trait Authorizer: Send + Sync {
    fn authorize(&self, req: &AuthzRequest) -> Decision;
}

#[derive(Clone)]
struct Authz {
    authz: Arc<dyn Authorizer>,
    req: AuthzRequest,
}

impl fmt::Debug for Authz {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "authorizer({:?})", self.req)
    }
}

impl PartialEq for Authz {
    fn eq(&self, other: &Self) -> bool {
        self.req == other.req && Arc::ptr_eq(&self.authz, &other.authz)
    }
}
impl Eq for Authz {}

impl Opaque for Authz {
    fn runtime_type_name(&self) -> &str {
        "kubernetes.authorization.Authorizer"
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct DecisionVal(Decision);

impl Opaque for DecisionVal {
    fn runtime_type_name(&self) -> &str {
        "kubernetes.authorization.Decision"
    }
}

/// The key of the map `authorizer` is that holds the checker itself (not a valid CEL
/// identifier, so no expression can name it).
const SELF_KEY: &str = "@authorizer";

/// The `authorizer` variable: a map so that `authorizer.requestResource` selects (the checker
/// preset with the request's resource) while member calls find the checker under
/// [`SELF_KEY`].
pub(crate) fn root(authz: Arc<dyn Authorizer>, request: Option<&AuthzRequest>) -> Value {
    let mut m = HashMap::new();
    if let Some(r) = request {
        m.insert(
            Key::String(Arc::new("requestResource".to_string())),
            Value::Opaque(Arc::new(Authz {
                authz: authz.clone(),
                req: r.clone(),
            })),
        );
    }
    m.insert(
        Key::String(Arc::new(SELF_KEY.to_string())),
        Value::Opaque(Arc::new(Authz {
            authz,
            req: AuthzRequest::default(),
        })),
    );
    Value::Map(Map { map: Arc::new(m) })
}

pub(crate) fn register(env: &mut Env) -> Result<(), DeclarationError> {
    for (name, f) in [
        ("path", w_path as cel::common::functions::Function),
        ("group", w_group),
        ("resource", w_resource),
        ("subresource", w_subresource),
        ("namespace", w_namespace),
        ("name", w_name),
        ("check", w_check),
    ] {
        env.add_member_overload(
            name,
            &format!("authz_{name}"),
            DYN_TYPE,
            vec![STRING_TYPE],
            f,
        )?;
    }
    for (name, f) in [
        ("allowed", w_allowed as cel::common::functions::Function),
        ("reason", w_reason),
        ("errored", w_errored),
        ("error", w_error),
    ] {
        env.add_member_overload(name, &format!("authz_{name}"), DYN_TYPE, vec![], f)?;
    }
    Ok(())
}

fn this(f: &str, args: &[Value]) -> Result<Authz, ExecutionError> {
    let receiver = match args.first() {
        Some(Value::Map(m)) => m.map.get(&Key::String(Arc::new(SELF_KEY.to_string()))),
        other => other,
    };
    match receiver {
        Some(Value::Opaque(o)) => o
            .downcast_ref::<Authz>()
            .cloned()
            .ok_or_else(|| err(f, format!("no such overload: {f}"))),
        _ => Err(err(f, format!("no such overload: {f}"))),
    }
}

fn set(
    f: &str,
    args: &[Value],
    apply: fn(&mut AuthzRequest, String),
) -> Result<Value, ExecutionError> {
    let mut a = this(f, args)?;
    apply(&mut a.req, str_arg(f, args, 1)?.to_string());
    Ok(Value::Opaque(Arc::new(a)))
}

fn path(args: &[Value]) -> Result<Value, ExecutionError> {
    set("path", args, |r, v| r.path = Some(v))
}
fn group(args: &[Value]) -> Result<Value, ExecutionError> {
    set("group", args, |r, v| r.group = v)
}
fn resource(args: &[Value]) -> Result<Value, ExecutionError> {
    set("resource", args, |r, v| r.resource = v)
}
fn subresource(args: &[Value]) -> Result<Value, ExecutionError> {
    set("subresource", args, |r, v| r.subresource = v)
}
fn namespace(args: &[Value]) -> Result<Value, ExecutionError> {
    set("namespace", args, |r, v| r.namespace = v)
}
fn name(args: &[Value]) -> Result<Value, ExecutionError> {
    set("name", args, |r, v| r.name = v)
}

fn check(args: &[Value]) -> Result<Value, ExecutionError> {
    let mut a = this("check", args)?;
    a.req.verb = str_arg("check", args, 1)?.to_string();
    let d = a.authz.authorize(&a.req);
    Ok(Value::Opaque(Arc::new(DecisionVal(d))))
}

fn decision(f: &str, args: &[Value]) -> Result<Decision, ExecutionError> {
    match args.first() {
        Some(Value::Opaque(o)) => o
            .downcast_ref::<DecisionVal>()
            .map(|d| d.0.clone())
            .ok_or_else(|| err(f, format!("no such overload: {f}"))),
        _ => Err(err(f, format!("no such overload: {f}"))),
    }
}

fn allowed(args: &[Value]) -> Result<Value, ExecutionError> {
    Ok(Value::Bool(decision("allowed", args)?.allowed))
}
fn reason(args: &[Value]) -> Result<Value, ExecutionError> {
    Ok(Value::String(Arc::new(decision("reason", args)?.reason)))
}
fn errored(args: &[Value]) -> Result<Value, ExecutionError> {
    decision("errored", args)?;
    Ok(Value::Bool(false))
}
fn error(args: &[Value]) -> Result<Value, ExecutionError> {
    decision("error", args)?;
    Ok(Value::String(Arc::new(String::new())))
}

wrap!(w_path, path);
wrap!(w_group, group);
wrap!(w_resource, resource);
wrap!(w_subresource, subresource);
wrap!(w_namespace, namespace);
wrap!(w_name, name);
wrap!(w_check, check);
wrap!(w_allowed, allowed);
wrap!(w_reason, reason);
wrap!(w_errored, errored);
wrap!(w_error, error);
