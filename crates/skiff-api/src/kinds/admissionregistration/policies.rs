//! admissionregistration.k8s.io/v1 ValidatingAdmissionPolicy and
//! ValidatingAdmissionPolicyBinding: upstream's defaults, validation (CEL expressions must
//! compile, with skiff-cel) and printer columns. The API server's `ValidatingAdmissionPolicy`
//! admission plugin enforces them.

use serde_json::{json, Map, Value};

use crate::kinds::prelude::*;

pub(crate) const POLICY: Kind = Kind {
    info: ResourceInfo {
        group: "admissionregistration.k8s.io",
        version: "v1",
        kind: "ValidatingAdmissionPolicy",
        list_kind: "ValidatingAdmissionPolicyList",
        plural: "validatingadmissionpolicies",
        singular: "validatingadmissionpolicy",
        namespaced: false,
        short_names: &[],
        categories: &["api-extensions"],
        verbs: FULL,
        subresources: &["status"],
    },
    defaults: policy_defaults,
    validate: validate_policy,
    table: Table {
        columns: POLICY_COLUMNS,
        cells: policy_cells,
        ..Table::BASE
    },
    ..Kind::BASE
};

pub(crate) const BINDING: Kind = Kind {
    info: ResourceInfo {
        group: "admissionregistration.k8s.io",
        version: "v1",
        kind: "ValidatingAdmissionPolicyBinding",
        list_kind: "ValidatingAdmissionPolicyBindingList",
        plural: "validatingadmissionpolicybindings",
        singular: "validatingadmissionpolicybinding",
        namespaced: false,
        short_names: &[],
        categories: &["api-extensions"],
        verbs: FULL,
        subresources: &[],
    },
    defaults: binding_defaults,
    validate: validate_binding,
    table: Table {
        columns: BINDING_COLUMNS,
        cells: binding_cells,
        ..Table::BASE
    },
    ..Kind::BASE
};

/// The variables policy expressions may read (upstream's composited environment).
pub(crate) const POLICY_VARIABLES: &[&str] = &[
    "object",
    "oldObject",
    "request",
    "params",
    "namespaceObject",
    "authorizer",
    "variables",
];

#[rustfmt::skip]
const POLICY_COLUMNS: &[Col] = &[
    NAME,
    ("Validations", "integer", 0, "Validations indicates the number of validation rules defined in this configuration"),
    ("ParamKind", "string", 0, "ParamKind specifies the kind of resources used to parameterize this policy"),
    AGE,
];

#[rustfmt::skip]
const BINDING_COLUMNS: &[Col] = &[
    NAME,
    ("PolicyName", "string", 0, "PolicyName indicates the policy definition which the policy binding binded to"),
    ("ParamRef", "string", 0, "ParamRef indicates the param resource which sets the configration param"),
    AGE,
];

fn policy_cells(obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let (name, age) = name_age(obj, now);
    let count = arr(obj, "/spec/validations").len();
    let param_kind = match obj.pointer("/spec/paramKind") {
        Some(pk) if pk.is_object() => format!("{}/{}", s(pk, "/apiVersion"), s(pk, "/kind")),
        _ => "<unset>".to_string(),
    };
    vec![json!(name), json!(count), json!(param_kind), json!(age)]
}

fn binding_cells(obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let (name, age) = name_age(obj, now);
    let param_ref = match obj.pointer("/spec/paramRef") {
        Some(p) if p.is_object() => {
            let (ns, n) = (s(p, "/namespace"), s(p, "/name"));
            match p.get("selector").filter(|v| v.is_object()) {
                _ if !n.is_empty() && !ns.is_empty() => format!("{ns}/{n}"),
                // Upstream cannot tell whether the param kind is cluster-scoped.
                _ if !n.is_empty() => format!("*/{n}"),
                Some(sel) => go_selector_string(sel),
                None => "<unset>".to_string(),
            }
        }
        _ => "<unset>".to_string(),
    };
    vec![
        json!(name),
        json!(s(obj, "/spec/policyName")),
        json!(param_ref),
        json!(age),
    ]
}

/// Go's generated `(*metav1.LabelSelector).String()`, which upstream's printer shows.
fn go_selector_string(sel: &Value) -> String {
    let mut labels: Vec<(&String, &Value)> = sel
        .get("matchLabels")
        .and_then(Value::as_object)
        .map(|m| m.iter().collect())
        .unwrap_or_default();
    labels.sort_by(|a, b| a.0.cmp(b.0));
    let labels: String = labels
        .iter()
        .map(|(k, v)| format!("{k}: {},", v.as_str().unwrap_or("")))
        .collect();
    let exprs: String = arr(sel, "/matchExpressions")
        .iter()
        .map(|e| {
            let values: Vec<&str> = arr(e, "/values").iter().filter_map(Value::as_str).collect();
            format!(
                "LabelSelectorRequirement{{Key:{},Operator:{},Values:[{}],}},",
                s(e, "/key"),
                s(e, "/operator"),
                values.join(" ")
            )
        })
        .collect();
    format!(
        "&LabelSelector{{MatchLabels:map[string]string{{{labels}}},MatchExpressions:[]LabelSelectorRequirement{{{exprs}}},}}"
    )
}

/// `SetDefaults_MatchResources` (and its rules' scope).
fn match_defaults(m: &mut Map<String, Value>) {
    default(m, "matchPolicy", json!("Equivalent"));
    default(m, "namespaceSelector", json!({}));
    default(m, "objectSelector", json!({}));
    for key in ["resourceRules", "excludeResourceRules"] {
        if let Some(rules) = m.get_mut(key).and_then(Value::as_array_mut) {
            for r in rules.iter_mut().filter_map(Value::as_object_mut) {
                default(r, "scope", json!("*"));
            }
        }
    }
}

fn policy_defaults(obj: &mut Map<String, Value>) {
    let spec = child(obj, "spec");
    default(spec, "failurePolicy", json!("Fail"));
    if let Some(m) = spec
        .get_mut("matchConstraints")
        .and_then(Value::as_object_mut)
    {
        match_defaults(m);
    }
}

fn binding_defaults(obj: &mut Map<String, Value>) {
    let spec = child(obj, "spec");
    if let Some(m) = spec
        .get_mut("matchResources")
        .and_then(Value::as_object_mut)
    {
        match_defaults(m);
    }
}

fn compile(e: &mut Errs, field: &str, expr: &Value, vars: &[&str]) {
    match expr.as_str() {
        None | Some("") => e.required(field, ""),
        Some(src) => {
            if let Err(err) = skiff_cel::compile(src, vars) {
                e.invalid(field, expr, &format!("compilation failed: {err}"));
            }
        }
    }
}

/// Kubernetes-style qualified names are what CEL variable names must be: C identifiers here.
fn is_cel_ident(s: &str) -> bool {
    let mut c = s.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
}

const OPERATIONS: &[&str] = &["*", "CREATE", "UPDATE", "DELETE", "CONNECT"];
const SCOPES: &[&str] = &["*", "Cluster", "Namespaced"];

fn validate_rules(e: &mut Errs, field: &str, rules: &Value) {
    for (i, r) in rules.as_array().into_iter().flatten().enumerate() {
        let f = format!("{field}[{i}]");
        for key in ["apiGroups", "apiVersions", "resources"] {
            let list = arr(r, &format!("/{key}"));
            if list.is_empty() {
                e.required(&format!("{f}.{key}"), "");
            }
            if list.len() > 1 && list.iter().any(|v| v == "*") {
                e.invalid(
                    &format!("{f}.{key}"),
                    &Value::Array(list.to_vec()),
                    "if '*' is present, must not specify other values",
                );
            }
        }
        let ops = arr(r, "/operations");
        if ops.is_empty() {
            e.required(&format!("{f}.operations"), "");
        }
        for (j, op) in ops.iter().enumerate() {
            let op = op.as_str().unwrap_or("");
            if !OPERATIONS.contains(&op) {
                e.not_supported(&format!("{f}.operations[{j}]"), op, OPERATIONS);
            }
        }
        if let Some(scope) = r.get("scope").and_then(Value::as_str) {
            if !SCOPES.contains(&scope) {
                e.not_supported(&format!("{f}.scope"), scope, SCOPES);
            }
        }
    }
}

fn validate_match(e: &mut Errs, field: &str, m: &Value, require_rules: bool) {
    if require_rules && arr(m, "/resourceRules").is_empty() {
        e.required(&format!("{field}.resourceRules"), "");
    }
    if let Some(r) = m.get("resourceRules") {
        validate_rules(e, &format!("{field}.resourceRules"), r);
    }
    if let Some(r) = m.get("excludeResourceRules") {
        validate_rules(e, &format!("{field}.excludeResourceRules"), r);
    }
    if let Some(p) = m.get("matchPolicy").and_then(Value::as_str) {
        if !["Exact", "Equivalent"].contains(&p) {
            e.not_supported(&format!("{field}.matchPolicy"), p, &["Equivalent", "Exact"]);
        }
    }
}

const REASONS: &[&str] = &[
    "Unauthorized",
    "Forbidden",
    "Invalid",
    "RequestEntityTooLarge",
];

fn validate_match_conditions(e: &mut Errs, field: &str, conds: &[Value], vars: &[&str]) {
    let mut names: Vec<&str> = Vec::new();
    for (i, c) in conds.iter().enumerate() {
        let f = format!("{field}[{i}]");
        let name = s(c, "/name");
        if name.is_empty() {
            e.required(&format!("{f}.name"), "");
        } else if names.contains(&name) {
            e.duplicate(&format!("{f}.name"), name);
        }
        names.push(name);
        compile(
            e,
            &format!("{f}.expression"),
            c.get("expression").unwrap_or(&Value::Null),
            vars,
        );
    }
    if conds.len() > 64 {
        e.too_many(field, conds.len(), 64);
    }
}

fn validate_policy(e: &mut Errs, obj: &Map<String, Value>, _old: Option<&Value>) {
    let empty = Value::Object(Map::new());
    let spec = obj.get("spec").unwrap_or(&empty);
    let vars = POLICY_VARIABLES;
    let validations = arr(spec, "/validations");
    let audits = arr(spec, "/auditAnnotations");
    if validations.is_empty() && audits.is_empty() {
        e.required(
            "spec.validations",
            "validations or auditAnnotations must contain at least one item",
        );
    }
    match spec.get("failurePolicy").and_then(Value::as_str) {
        None | Some("Fail") | Some("Ignore") => {}
        Some(other) => e.not_supported("spec.failurePolicy", other, &["Fail", "Ignore"]),
    }
    match spec.get("matchConstraints") {
        Some(m) if m.is_object() => validate_match(e, "spec.matchConstraints", m, true),
        _ => e.required("spec.matchConstraints", ""),
    }
    if let Some(pk) = spec.get("paramKind").filter(|v| v.is_object()) {
        for key in ["apiVersion", "kind"] {
            if s(pk, &format!("/{key}")).is_empty() {
                e.required(&format!("spec.paramKind.{key}"), "");
            }
        }
    }
    for (i, v) in arr(spec, "/variables").iter().enumerate() {
        let name = s(v, "/name");
        if name.is_empty() {
            e.required(&format!("spec.variables[{i}].name"), "");
        } else if !is_cel_ident(name) {
            e.invalid_str(
                &format!("spec.variables[{i}].name"),
                name,
                "name is not a valid CEL identifier",
            );
        }
        compile(
            e,
            &format!("spec.variables[{i}].expression"),
            v.get("expression").unwrap_or(&Value::Null),
            vars,
        );
    }
    for (i, v) in validations.iter().enumerate() {
        let f = format!("spec.validations[{i}]");
        compile(
            e,
            &format!("{f}.expression"),
            v.get("expression").unwrap_or(&Value::Null),
            vars,
        );
        if let Some(me) = v.get("messageExpression") {
            compile(e, &format!("{f}.messageExpression"), me, vars);
        }
        if let Some(msg) = v.get("message").and_then(Value::as_str) {
            if msg.trim().is_empty() {
                e.invalid_str(
                    &format!("{f}.message"),
                    msg,
                    "message must be non-empty if specified",
                );
            } else if msg.contains('\n') {
                e.invalid_str(
                    &format!("{f}.message"),
                    msg,
                    "message must not contain line breaks",
                );
            }
        }
        if let Some(r) = v.get("reason").and_then(Value::as_str) {
            if !REASONS.contains(&r) {
                e.not_supported(&format!("{f}.reason"), r, REASONS);
            }
        }
    }
    for (i, a) in audits.iter().enumerate() {
        let f = format!("spec.auditAnnotations[{i}]");
        if s(a, "/key").is_empty() {
            e.required(&format!("{f}.key"), "");
        }
        compile(
            e,
            &format!("{f}.valueExpression"),
            a.get("valueExpression").unwrap_or(&Value::Null),
            vars,
        );
    }
    // matchConditions see no `variables`.
    let mc_vars: Vec<&str> = vars.iter().copied().filter(|v| *v != "variables").collect();
    validate_match_conditions(
        e,
        "spec.matchConditions",
        arr(spec, "/matchConditions"),
        &mc_vars,
    );
}

const ACTIONS: &[&str] = &["Audit", "Deny", "Warn"];

fn validate_binding(e: &mut Errs, obj: &Map<String, Value>, _old: Option<&Value>) {
    let empty = Value::Object(Map::new());
    let spec = obj.get("spec").unwrap_or(&empty);
    if s(spec, "/policyName").is_empty() {
        e.required("spec.policyName", "");
    }
    let actions = arr(spec, "/validationActions");
    if actions.is_empty() {
        e.required(
            "spec.validationActions",
            "at least one validation action is required",
        );
    }
    let mut seen: Vec<&str> = Vec::new();
    for (i, a) in actions.iter().enumerate() {
        let a = a.as_str().unwrap_or("");
        let f = format!("spec.validationActions[{i}]");
        if seen.contains(&a) {
            e.duplicate(&f, a);
        } else if !ACTIONS.contains(&a) {
            e.not_supported(&f, a, ACTIONS);
        }
        seen.push(a);
    }
    if seen.contains(&"Deny") && seen.contains(&"Warn") {
        e.invalid(
            "spec.validationActions",
            &Value::Array(actions.to_vec()),
            "must not contain both Deny and Warn (repeating the same validation failure information in the API response and headers serves no purpose)",
        );
    }
    if let Some(p) = spec.get("paramRef").filter(|v| v.is_object()) {
        let has_name = !s(p, "/name").is_empty();
        let has_sel = p.get("selector").is_some_and(Value::is_object);
        if has_name && has_sel {
            e.forbidden(
                "spec.paramRef.name",
                "name and selector are mutually exclusive",
            );
        }
        if !has_name && !has_sel {
            e.required("spec.paramRef", "one of name or selector must be set");
        }
        match p.get("parameterNotFoundAction").and_then(Value::as_str) {
            None => e.required("spec.paramRef.parameterNotFoundAction", ""),
            Some("Allow") | Some("Deny") => {}
            Some(o) => e.not_supported(
                "spec.paramRef.parameterNotFoundAction",
                o,
                &["Allow", "Deny"],
            ),
        }
    }
    if let Some(m) = spec.get("matchResources").filter(|v| v.is_object()) {
        validate_match(e, "spec.matchResources", m, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errs_of(f: fn(&mut Errs, &Map<String, Value>, Option<&Value>), obj: Value) -> Vec<String> {
        let mut e = Errs(Vec::new());
        let Value::Object(m) = obj else { panic!() };
        f(&mut e, &m, None);
        e.0.iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect()
    }

    #[test]
    fn policy_expressions_must_compile() {
        let errs = errs_of(
            validate_policy,
            json!({"spec": {"matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"], "operations": ["CREATE"]}]},
                "validations": [{"expression": "object.spec.replicas <"}, {"expression": "foo == 1"}, {"expression": "object.metadata.name != ''", "reason": "Nope"}]}}),
        );
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(errs[0].starts_with("spec.validations[0].expression: Invalid value: \"object.spec.replicas <\": compilation failed: ERROR: <input>:1:"), "{errs:?}");
        assert!(
            errs[1].contains("undeclared reference to 'foo'"),
            "{errs:?}"
        );
        assert!(
            errs[2].starts_with("spec.validations[2].reason: Unsupported value: \"Nope\""),
            "{errs:?}"
        );
        let errs = errs_of(validate_policy, json!({"spec": {}}));
        assert_eq!(
            errs,
            vec![
                "spec.validations: Required value: validations or auditAnnotations must contain at least one item",
                "spec.matchConstraints: Required value",
            ]
        );
    }

    #[test]
    fn binding_validation() {
        let errs = errs_of(
            validate_binding,
            json!({"spec": {"validationActions": ["Deny", "Deny", "Warn", "Bogus"]}}),
        );
        assert_eq!(errs[0], "spec.policyName: Required value");
        assert!(
            errs.iter()
                .any(|e| e == "spec.validationActions[1]: Duplicate value: \"Deny\""),
            "{errs:?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.starts_with("spec.validationActions[3]: Unsupported value: \"Bogus\"")),
            "{errs:?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.contains("must not contain both Deny and Warn")),
            "{errs:?}"
        );
        let errs = errs_of(validate_binding, json!({"spec": {"policyName": "p"}}));
        assert_eq!(errs, vec!["spec.validationActions: Required value: at least one validation action is required"]);
    }

    #[test]
    fn defaults_and_table() {
        let mut obj = json!({"metadata": {"name": "p"}, "spec": {"matchConstraints": {"resourceRules": [{"resources": ["pods"]}]}, "validations": [{"expression": "true"}], "paramKind": {"apiVersion": "v1", "kind": "ConfigMap"}}});
        policy_defaults(obj.as_object_mut().unwrap());
        assert_eq!(obj["spec"]["failurePolicy"], "Fail");
        assert_eq!(obj["spec"]["matchConstraints"]["matchPolicy"], "Equivalent");
        assert_eq!(
            obj["spec"]["matchConstraints"]["resourceRules"][0]["scope"],
            "*"
        );
        let cells = policy_cells(&obj, jiff::Timestamp::now());
        assert_eq!(cells[1], json!(1));
        assert_eq!(cells[2], json!("v1/ConfigMap"));
        let param = |p: Value| {
            let b = json!({"metadata": {"name": "b"}, "spec": {"policyName": "p", "paramRef": p}});
            binding_cells(&b, jiff::Timestamp::now())[2].clone()
        };
        assert_eq!(param(json!({"name": "x", "namespace": "n"})), json!("n/x"));
        assert_eq!(param(json!({"name": "x"})), json!("*/x"));
        assert_eq!(
            param(json!({"selector": {"matchLabels": {"b": "2", "a": "1"},
                "matchExpressions": [{"key": "k", "operator": "In", "values": ["u", "v"]}]}})),
            json!("&LabelSelector{MatchLabels:map[string]string{a: 1,b: 2,},MatchExpressions:[]LabelSelectorRequirement{LabelSelectorRequirement{Key:k,Operator:In,Values:[u v],},},}")
        );
    }
}
