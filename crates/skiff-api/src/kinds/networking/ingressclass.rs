//! networking.k8s.io/v1 IngressClass: names the controller that implements a class of Ingresses.

use serde_json::{json, Map, Value};

use crate::kinds::prelude::*;

pub(crate) const KIND: Kind = Kind {
    info: ResourceInfo {
        group: "networking.k8s.io",
        version: "v1",
        kind: "IngressClass",
        list_kind: "IngressClassList",
        plural: "ingressclasses",
        singular: "ingressclass",
        namespaced: false,
        short_names: &[],
        categories: &[],
        verbs: FULL,
        subresources: &[],
    },
    defaults,
    validate,
    table: Table {
        columns: COLUMNS,
        cells,
        ..Table::BASE
    },
    ..Kind::BASE
};

/// SetDefaults_IngressClass: parameters without a scope are cluster-scoped.
fn defaults(obj: &mut Map<String, Value>) {
    let spec = child(obj, "spec");
    if let Some(p) = spec.get_mut("parameters").and_then(Value::as_object_mut) {
        default(p, "scope", json!("Cluster"));
    }
}

const MAX_CONTROLLER: usize = 250;

fn validate(e: &mut Errs, obj: &Map<String, Value>, old: Option<&Value>) {
    let empty = json!({});
    let spec = obj.get("spec").unwrap_or(&empty);
    let controller = s(spec, "/controller");
    if controller.len() > MAX_CONTROLLER {
        e.too_long("spec.controller", MAX_CONTROLLER);
    }
    domain_prefixed_path(e, controller, "spec.controller");
    if let Some(p) = spec.get("parameters").filter(|p| !p.is_null()) {
        parameters(e, p, "spec.parameters");
    }
    if let Some(old) = old {
        let before = old
            .pointer("/spec/controller")
            .and_then(Value::as_str)
            .unwrap_or("");
        if before != controller {
            e.invalid_str("spec.controller", controller, "field is immutable");
        }
    }
}

/// IsDomainPrefixedPath.
fn domain_prefixed_path(e: &mut Errs, v: &str, f: &str) {
    if v.is_empty() {
        e.required(f, "");
        return;
    }
    let Some((host, path)) = v
        .split_once('/')
        .filter(|(h, p)| !h.is_empty() && !p.is_empty())
    else {
        e.invalid_str(
            f,
            v,
            "must be a domain-prefixed path (such as \"acme.io/foo\")",
        );
        return;
    };
    for m in dns1123_subdomain(host) {
        e.invalid_str(f, host, &m);
    }
    let ok = path
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/-._~%!$&'()*+,;=:".contains(c));
    if !ok {
        e.invalid_str(
            f,
            path,
            "Invalid path (e.g. '/path', regex used for validation is '[A-Za-z0-9/\\-._~%!$&'()*+,;=:]+')",
        );
    }
}

/// validateIngressClassParametersReference.
fn parameters(e: &mut Errs, p: &Value, f: &str) {
    super::ingress::typed_ref(e, p, f);
    let Some(scope) = p.get("scope").and_then(Value::as_str) else {
        e.required(&format!("{f}.scope"), "");
        return;
    };
    let ns = p.get("namespace").and_then(Value::as_str);
    match scope {
        "Namespace" => match ns {
            None => e.required(
                &format!("{f}.namespace"),
                "`parameters.scope` is set to 'Namespace'",
            ),
            Some(ns) => {
                for m in dns1123_label(ns) {
                    e.invalid_str(&format!("{f}.namespace"), ns, &m);
                }
            }
        },
        "Cluster" => {
            if ns.is_some() {
                e.forbidden(
                    &format!("{f}.namespace"),
                    "`parameters.scope` is set to 'Cluster'",
                );
            }
        }
        other => e.not_supported(&format!("{f}.scope"), other, &["Cluster", "Namespace"]),
    }
}

#[rustfmt::skip]
const COLUMNS: &[Col] = &[
    NAME,
    ("Controller", "string", 0, "Controller that is responsible for handling this class"),
    ("Parameters", "string", 0, "A reference to a resource with additional parameters"),
    AGE,
];

fn cells(obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let (name, age) = name_age(obj, now);
    let params = match obj.pointer("/spec/parameters").filter(|p| !p.is_null()) {
        None => "<none>".to_string(),
        Some(p) => {
            let mut out = s(p, "/kind").to_string();
            if let Some(g) = p.get("apiGroup").and_then(Value::as_str) {
                out = format!("{out}.{g}");
            }
            format!("{out}/{}", s(p, "/name"))
        }
    };
    vec![
        json!(name),
        json!(s(obj, "/spec/controller")),
        json!(params),
        json!(age),
    ]
}
