//! core/v1 ResourceQuota: aggregate limits on what a namespace may consume. Validation is
//! upstream's `ValidateResourceQuota` (resource names, non-negative and integer quantities,
//! scopes and scopeSelector with the scope/resource compatibility rules); the Table is
//! `printResourceQuota` (`requests.cpu: 500m/1, pods: 2/10`). Usage is computed by the
//! ResourceQuota controller and charged by the API server's ResourceQuota admission.

use serde_json::{json, Map, Value};

use crate::kinds::prelude::*;
use skiff_semantics::quantity::Quantity;
use skiff_semantics::quota::Amount;

pub(crate) const KIND: Kind = Kind {
    info: ResourceInfo {
        group: "",
        version: "v1",
        kind: "ResourceQuota",
        list_kind: "ResourceQuotaList",
        plural: "resourcequotas",
        singular: "resourcequota",
        namespaced: true,
        short_names: &["quota"],
        categories: &[],
        verbs: FULL,
        subresources: &["status"],
    },
    validate,
    table: Table {
        columns: COLUMNS,
        cells,
        ..Table::BASE
    },
    ..Kind::BASE
};

/// Upstream's `standardQuotaResources`.
const STANDARD: &[&str] = &[
    "cpu",
    "memory",
    "ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.storage",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "pods",
    "services",
    "replicationcontrollers",
    "resourcequotas",
    "secrets",
    "persistentvolumeclaims",
    "configmaps",
    "services.nodeports",
    "services.loadbalancers",
];

/// Upstream's `standardResourceQuotaScopes`.
const SCOPES: &[&str] = &[
    "Terminating",
    "NotTerminating",
    "BestEffort",
    "NotBestEffort",
    "PriorityClass",
    "CrossNamespacePodAffinity",
];

/// Quota resources counted in whole units (`IsIntegerResourceName`).
fn is_integer_resource(name: &str) -> bool {
    matches!(
        name,
        "pods"
            | "services"
            | "replicationcontrollers"
            | "resourcequotas"
            | "secrets"
            | "configmaps"
            | "persistentvolumeclaims"
            | "services.nodeports"
            | "services.loadbalancers"
    ) || name.starts_with("count/")
}

/// `IsResourceQuotaScopeValidForResource`.
fn scope_valid_for(scope: &str, resource: &str) -> bool {
    const COMPUTE: &[&str] = &[
        "cpu",
        "memory",
        "limits.cpu",
        "limits.memory",
        "requests.cpu",
        "requests.memory",
    ];
    match scope {
        "Terminating"
        | "NotTerminating"
        | "NotBestEffort"
        | "PriorityClass"
        | "CrossNamespacePodAffinity" => resource == "pods" || COMPUTE.contains(&resource),
        "BestEffort" => resource == "pods",
        _ => true,
    }
}

/// `ValidateResourceQuotaResourceName`: a qualified name; one without a `/` must be a
/// standard quota resource (or hugepages).
fn resource_name(e: &mut Errs, name: &str, field: &str) {
    let errs = qualified_name(name);
    for m in &errs {
        e.invalid_str(field, name, m);
    }
    if errs.is_empty()
        && !name.contains('/')
        && !STANDARD.contains(&name)
        && !name.starts_with("hugepages-")
        && !name.starts_with("requests.hugepages-")
    {
        e.invalid_str(field, name, "must be a standard resource for quota");
    }
}

/// `validateResourceQuantityValue`: non-negative, whole for counted resources.
fn quantity(e: &mut Errs, name: &str, v: &Value, field: &str) {
    let Some(q) = v.as_str().and_then(|s| Quantity::parse(s).ok()) else {
        e.invalid(
            field,
            v,
            "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
        );
        return;
    };
    if q.is_negative() {
        e.invalid(field, v, "must be greater than or equal to 0");
    }
    if is_integer_resource(name) && q.milli_value() % 1000 != 0 {
        e.invalid(field, v, "must be an integer");
    }
}

fn resource_list(e: &mut Errs, list: Option<&Value>, field: &str) {
    for (k, v) in list.and_then(Value::as_object).into_iter().flatten() {
        let f = format!("{field}[{k}]");
        resource_name(e, k, &f);
        quantity(e, k, v, &f);
    }
}

/// Go's `%v` of a `[]ResourceQuotaScope` (what a cause about `spec.scopes` quotes).
fn go_scopes(scopes: &[&str]) -> String {
    format!(
        "[]core.ResourceQuotaScope{{{}}}",
        scopes
            .iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

fn conflicting(set: &[&str]) -> bool {
    let has = |s: &str| set.contains(&s);
    (has("BestEffort") && has("NotBestEffort")) || (has("Terminating") && has("NotTerminating"))
}

fn validate_scopes(e: &mut Errs, spec: &Map<String, Value>, hard: &[&String]) {
    let scopes: Vec<&str> = spec
        .get("scopes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let f = "spec.scopes";
    let shown = Value::String(go_scopes(&scopes));
    for scope in &scopes {
        if !SCOPES.contains(scope) {
            e.push(
                "FieldValueInvalid",
                f,
                format!(
                    "Invalid value: {}: unsupported scope",
                    shown.as_str().unwrap_or("")
                ),
            );
        }
        for k in hard {
            if !scope_valid_for(scope, k) {
                e.push(
                    "FieldValueInvalid",
                    f,
                    format!(
                        "Invalid value: {}: unsupported scope applied to resource",
                        shown.as_str().unwrap_or("")
                    ),
                );
            }
        }
    }
    if conflicting(&scopes) {
        e.push(
            "FieldValueInvalid",
            f,
            format!(
                "Invalid value: {}: conflicting scopes",
                shown.as_str().unwrap_or("")
            ),
        );
    }
    let Some(selector) = spec.get("scopeSelector").filter(|v| !v.is_null()) else {
        return;
    };
    let f = "spec.scopeSelector.matchExpressions";
    let mut names = Vec::new();
    for req in selector
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let scope = req.get("scopeName").and_then(Value::as_str).unwrap_or("");
        let op = req.get("operator").and_then(Value::as_str).unwrap_or("");
        let values = req
            .get("values")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        if !SCOPES.contains(&scope) {
            e.invalid_str(&format!("{f}.scopeName"), scope, "unsupported scope");
        }
        for k in hard {
            if !scope_valid_for(scope, k) {
                e.invalid_omit(f, "unsupported scope applied to resource");
            }
        }
        if matches!(
            scope,
            "BestEffort"
                | "NotBestEffort"
                | "Terminating"
                | "NotTerminating"
                | "CrossNamespacePodAffinity"
        ) && op != "Exists"
        {
            e.invalid_str(
                &format!("{f}.operator"),
                op,
                "must be 'Exist' when scope is any of ResourceQuotaScopeTerminating, ResourceQuotaScopeNotTerminating, ResourceQuotaScopeBestEffort, ResourceQuotaScopeNotBestEffort or ResourceQuotaScopeCrossNamespacePodAffinity",
            );
        }
        match op {
            "In" | "NotIn" if values == 0 => e.required(
                &format!("{f}.values"),
                "must be at least one value when `operator` is 'In' or 'NotIn' for scope selector",
            ),
            "Exists" | "DoesNotExist" if values != 0 => e.invalid(
                &format!("{f}.values"),
                req.get("values").unwrap_or(&Value::Null),
                "must be no value when `operator` is 'Exist' or 'DoesNotExist' for scope selector",
            ),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            _ => e.invalid_str(
                &format!("{f}.operator"),
                op,
                "not a valid selector operator",
            ),
        }
        names.push(scope);
    }
    if conflicting(&names) {
        e.invalid_omit(f, "conflicting scopes");
    }
}

/// Upstream's `ValidateResourceQuota` (spec and status).
fn validate(e: &mut Errs, obj: &Map<String, Value>, _old: Option<&Value>) {
    let empty = Map::new();
    let spec = obj.get("spec").and_then(Value::as_object).unwrap_or(&empty);
    resource_list(e, spec.get("hard"), "spec.hard");
    let hard: Vec<&String> = spec
        .get("hard")
        .and_then(Value::as_object)
        .map(|m| m.keys().collect())
        .unwrap_or_default();
    validate_scopes(e, spec, &hard);
    if let Some(status) = obj.get("status") {
        resource_list(e, status.get("hard"), "status.hard");
        resource_list(e, status.get("used"), "status.used");
    }
}

#[rustfmt::skip]
const COLUMNS: &[Col] = &[
    NAME,
    AGE,
    ("Request", "string", 0, "Request represents a minimum amount of cpu/memory that a container may consume."),
    ("Limit", "string", 0, "Limits control the maximum amount of cpu/memory that a container can use independent of contention on the node."),
];

/// `printResourceQuota`: `<resource>: <used>/<hard>` for every `spec.hard` resource, sorted,
/// `limits.*` in the Limit column and everything else in Request.
fn cells(obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let (name, age) = name_age(obj, now);
    let quantity = |path: &str, k: &str| {
        obj.pointer(path)
            .and_then(|m| m.get(k))
            .and_then(Value::as_str)
            .and_then(Amount::parse)
            .map_or_else(|| "0".to_string(), |a| a.text())
    };
    let mut request = Vec::new();
    let mut limit = Vec::new();
    for k in obj
        .pointer("/spec/hard")
        .and_then(Value::as_object)
        .into_iter()
        .flat_map(|m| m.keys())
    {
        let cell = format!(
            "{k}: {}/{}",
            quantity("/status/used", k),
            quantity("/status/hard", k)
        );
        if k.split('.').next() == Some("limits") && k.contains('.') {
            limit.push(cell);
        } else {
            request.push(cell);
        }
    }
    vec![
        json!(name),
        json!(age),
        json!(request.join(", ")),
        json!(limit.join(", ")),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn causes(obj: Value) -> Vec<String> {
        let mut e = Errs::default();
        validate(&mut e, obj.as_object().unwrap(), None);
        e.0.into_iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect()
    }

    #[test]
    fn validation_follows_upstream() {
        assert!(causes(json!({"spec": {"hard": {"pods": "10", "requests.cpu": "1500m",
            "count/deployments.apps": "2", "gold.storageclass.storage.k8s.io/requests.storage": "1Gi"}}})).is_empty());
        assert_eq!(
            causes(json!({"spec": {"hard": {"pods": "-1"}}})),
            vec![r#"spec.hard[pods]: Invalid value: "-1": must be greater than or equal to 0"#]
        );
        assert_eq!(
            causes(json!({"spec": {"hard": {"pods": "1500m"}}})),
            vec![r#"spec.hard[pods]: Invalid value: "1500m": must be an integer"#]
        );
        assert_eq!(
            causes(json!({"spec": {"hard": {"widgets": "1"}}})),
            vec![
                r#"spec.hard[widgets]: Invalid value: "widgets": must be a standard resource for quota"#
            ]
        );
        assert_eq!(
            causes(json!({"spec": {"hard": {"configmaps": "1"}, "scopes": ["BestEffort"]}})),
            vec![
                r#"spec.scopes: Invalid value: []core.ResourceQuotaScope{"BestEffort"}: unsupported scope applied to resource"#
            ]
        );
        assert_eq!(
            causes(
                json!({"spec": {"hard": {"pods": "1"}, "scopes": ["BestEffort", "NotBestEffort"]}})
            ),
            vec![
                r#"spec.scopes: Invalid value: []core.ResourceQuotaScope{"BestEffort", "NotBestEffort"}: conflicting scopes"#
            ]
        );
        assert_eq!(causes(json!({"spec": {"hard": {"pods": "1"}, "scopeSelector": {"matchExpressions": [
            {"scopeName": "PriorityClass", "operator": "In"}]}}})),
            vec!["spec.scopeSelector.matchExpressions.values: Required value: must be at least one value when `operator` is 'In' or 'NotIn' for scope selector"]);
    }

    #[test]
    fn table_row() {
        let q = json!({"metadata": {"name": "compute", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"hard": {"requests.cpu": "1", "pods": "10", "limits.cpu": "2"}},
            "status": {"hard": {"requests.cpu": "1", "pods": "10", "limits.cpu": "2"},
                       "used": {"requests.cpu": "500m", "pods": "2"}}});
        let row = cells(&q, jiff::Timestamp::now());
        assert_eq!(row[2], json!("pods: 2/10, requests.cpu: 500m/1"));
        assert_eq!(row[3], json!("limits.cpu: 0/2"));
    }
}
