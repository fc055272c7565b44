//! admissionregistration.k8s.io/v1 ValidatingWebhookConfiguration and
//! MutatingWebhookConfiguration: upstream's defaults (`SetDefaults_ValidatingWebhook`,
//! `SetDefaults_MutatingWebhook`, `SetDefaults_Rule`, `SetDefaults_ServiceReference`),
//! validation (`ValidateValidatingWebhookConfiguration` / `…Mutating…` and their update
//! variants, `ValidateWebhookURL`, `ValidateWebhookService`) and Table columns.

use serde_json::{json, Map, Value};

use crate::kinds::prelude::*;

pub(crate) const VALIDATING: Kind = Kind {
    info: ResourceInfo {
        group: "admissionregistration.k8s.io",
        version: "v1",
        kind: "ValidatingWebhookConfiguration",
        list_kind: "ValidatingWebhookConfigurationList",
        plural: "validatingwebhookconfigurations",
        singular: "validatingwebhookconfiguration",
        namespaced: false,
        short_names: &[],
        categories: &["api-extensions"],
        verbs: FULL,
        subresources: &[],
    },
    defaults: |o| defaults(o, false),
    validate: |e, o, old| validate(e, o, old, false),
    table: TABLE,
    patch_root: Ty::WebhookConfiguration,
    ..Kind::BASE
};

pub(crate) const MUTATING: Kind = Kind {
    info: ResourceInfo {
        group: "admissionregistration.k8s.io",
        version: "v1",
        kind: "MutatingWebhookConfiguration",
        list_kind: "MutatingWebhookConfigurationList",
        plural: "mutatingwebhookconfigurations",
        singular: "mutatingwebhookconfiguration",
        namespaced: false,
        short_names: &[],
        categories: &["api-extensions"],
        verbs: FULL,
        subresources: &[],
    },
    defaults: |o| defaults(o, true),
    validate: |e, o, old| validate(e, o, old, true),
    table: TABLE,
    patch_root: Ty::WebhookConfiguration,
    ..Kind::BASE
};

const WEBHOOKS_COL: Col = (
    "Webhooks",
    "integer",
    0,
    "Webhooks indicates the number of webhooks registered in this configuration",
);

const TABLE: Table = Table {
    columns: &[NAME, WEBHOOKS_COL, AGE],
    cells,
    conditions: |_| None,
};

fn cells(obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let (name, age) = name_age(obj, now);
    let n = obj
        .get("webhooks")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    vec![json!(name), json!(n), json!(age)]
}

fn defaults(obj: &mut Map<String, Value>, mutating: bool) {
    for hook in array(obj, "webhooks") {
        default(hook, "failurePolicy", json!("Fail"));
        default(hook, "matchPolicy", json!("Equivalent"));
        default(hook, "namespaceSelector", json!({}));
        default(hook, "objectSelector", json!({}));
        default(hook, "timeoutSeconds", json!(10));
        if mutating {
            default(hook, "reinvocationPolicy", json!("Never"));
        }
        for rule in array(hook, "rules") {
            default(rule, "scope", json!("*"));
        }
        if let Some(svc) = hook
            .get_mut("clientConfig")
            .and_then(|c| c.get_mut("service"))
            .and_then(Value::as_object_mut)
        {
            default(svc, "port", json!(443));
        }
    }
}

const FAILURE_POLICIES: &[&str] = &["Fail", "Ignore"];
const MATCH_POLICIES: &[&str] = &["Equivalent", "Exact"];
const ALL_SIDE_EFFECTS: &[&str] = &["None", "NoneOnDryRun", "Some", "Unknown"];
const NO_SIDE_EFFECTS: &[&str] = &["None", "NoneOnDryRun"];
const OPERATIONS: &[&str] = &["*", "CONNECT", "CREATE", "DELETE", "UPDATE"];
const REINVOCATION: &[&str] = &["IfNeeded", "Never"];
const SCOPES: &[&str] = &["*", "Cluster", "Namespaced"];
const REVIEW_VERSIONS: &[&str] = &["v1", "v1beta1"];
const URL_FORM: &str = "; desired format: https://host[/path]";

/// What an update relaxes: checks the stored object already failed are not applied again.
struct Opts {
    require_no_side_effects: bool,
    require_recognized_versions: bool,
    require_unique_names: bool,
}

fn hooks_of(v: Option<&Value>) -> Vec<&Value> {
    v.and_then(|o| o.get("webhooks"))
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default()
}

fn strs(v: Option<&Value>) -> Vec<&str> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().map(|x| x.as_str().unwrap_or("")).collect())
        .unwrap_or_default()
}

/// Go's `%#v` of a string slice (`[]string{"a", "b"}`), as field.Invalid prints it.
fn go_slice(ty: &str, items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("{s:?}")).collect();
    format!("[]{ty}{{{}}}", quoted.join(", "))
}

fn invalid_slice(e: &mut Errs, field: &str, ty: &str, items: &[&str], detail: &str) {
    e.push(
        "FieldValueInvalid",
        field,
        format!("Invalid value: {}: {detail}", go_slice(ty, items)),
    );
}

fn validate(e: &mut Errs, obj: &Map<String, Value>, old: Option<&Value>, mutating: bool) {
    let opts = match old {
        None => Opts {
            require_no_side_effects: true,
            require_recognized_versions: true,
            require_unique_names: true,
        },
        Some(o) => {
            let hooks = hooks_of(Some(o));
            let mut names = std::collections::HashSet::new();
            Opts {
                require_no_side_effects: hooks.iter().all(|h| {
                    NO_SIDE_EFFECTS
                        .contains(&h.get("sideEffects").and_then(Value::as_str).unwrap_or(""))
                }),
                require_recognized_versions: hooks.iter().all(|h| {
                    let v = strs(h.get("admissionReviewVersions"));
                    v.is_empty() || v.iter().any(|x| REVIEW_VERSIONS.contains(x))
                }),
                require_unique_names: hooks
                    .iter()
                    .all(|h| names.insert(h.get("name").and_then(Value::as_str).unwrap_or(""))),
            }
        }
    };
    let mut seen = std::collections::HashSet::new();
    let hooks = obj.get("webhooks").and_then(Value::as_array);
    for (i, hook) in hooks.into_iter().flatten().enumerate() {
        let f = format!("webhooks[{i}]");
        webhook(e, hook, &f, &opts, mutating);
        review_versions(
            e,
            hook.get("admissionReviewVersions"),
            &format!("{f}.admissionReviewVersions"),
            opts.require_recognized_versions,
        );
        let name = hook.get("name").and_then(Value::as_str).unwrap_or("");
        if opts.require_unique_names && !name.is_empty() && !seen.insert(name) {
            e.duplicate(&format!("{f}.name"), name);
        }
    }
}

/// `utilvalidation.IsFullyQualifiedName`.
fn fully_qualified(e: &mut Errs, field: &str, name: &str) {
    if name.is_empty() {
        e.required(field, "");
        return;
    }
    let errs = dns1123_subdomain(name);
    if !errs.is_empty() {
        e.invalid_str(field, name, &errs.join(","));
        return;
    }
    if name.split('.').count() < 3 {
        e.invalid_str(
            field,
            name,
            "should be a domain with at least three segments separated by dots",
        );
    }
}

fn webhook(e: &mut Errs, hook: &Value, f: &str, opts: &Opts, mutating: bool) {
    let s = |k: &str| hook.get(k).and_then(Value::as_str);
    fully_qualified(e, &format!("{f}.name"), s("name").unwrap_or(""));
    let rules = hook.get("rules").and_then(Value::as_array);
    for (i, rule) in rules.into_iter().flatten().enumerate() {
        rule_with_operations(e, rule, &format!("{f}.rules[{i}]"));
    }
    if let Some(p) = s("failurePolicy").filter(|p| !FAILURE_POLICIES.contains(p)) {
        e.not_supported(&format!("{f}.failurePolicy"), p, FAILURE_POLICIES);
    }
    if let Some(p) = s("matchPolicy").filter(|p| !MATCH_POLICIES.contains(p)) {
        e.not_supported(&format!("{f}.matchPolicy"), p, MATCH_POLICIES);
    }
    let allowed = if opts.require_no_side_effects {
        NO_SIDE_EFFECTS
    } else {
        ALL_SIDE_EFFECTS
    };
    match s("sideEffects") {
        None => e.required(
            &format!("{f}.sideEffects"),
            &format!("must specify one of {}", allowed.join(", ")),
        ),
        Some(v) if !allowed.contains(&v) => {
            e.not_supported(&format!("{f}.sideEffects"), v, allowed)
        }
        Some(_) => {}
    }
    if let Some(t) = hook.get("timeoutSeconds").and_then(Value::as_i64) {
        if !(1..=30).contains(&t) {
            e.invalid(
                &format!("{f}.timeoutSeconds"),
                &json!(t),
                "the timeout value must be between 1 and 30 seconds",
            );
        }
    }
    for k in ["namespaceSelector", "objectSelector"] {
        if let Some(sel) = hook.get(k).filter(|v| v.is_object()) {
            label_selector(e, sel, &format!("{f}.{k}"));
        }
    }
    if mutating {
        if let Some(p) = s("reinvocationPolicy").filter(|p| !REINVOCATION.contains(p)) {
            e.not_supported(&format!("{f}.reinvocationPolicy"), p, REINVOCATION);
        }
    }
    client_config(e, hook.get("clientConfig"), &format!("{f}.clientConfig"));
    match_conditions(
        e,
        hook.get("matchConditions"),
        &format!("{f}.matchConditions"),
    );
}

fn rule_with_operations(e: &mut Errs, rule: &Value, f: &str) {
    let ops = strs(rule.get("operations"));
    if ops.is_empty() {
        e.required(&format!("{f}.operations"), "");
    }
    if ops.len() > 1 && ops.contains(&"*") {
        invalid_slice(
            e,
            &format!("{f}.operations"),
            "admissionregistration.OperationType",
            &ops,
            "if '*' is present, must not specify other operations",
        );
    }
    for (i, op) in ops.iter().enumerate() {
        if !OPERATIONS.contains(op) {
            e.not_supported(&format!("{f}.operations[{i}]"), op, OPERATIONS);
        }
    }
    let groups = strs(rule.get("apiGroups"));
    if groups.is_empty() {
        e.required(&format!("{f}.apiGroups"), "");
    }
    if groups.len() > 1 && groups.contains(&"*") {
        invalid_slice(
            e,
            &format!("{f}.apiGroups"),
            "string",
            &groups,
            "if '*' is present, must not specify other API groups",
        );
    }
    let versions = strs(rule.get("apiVersions"));
    if versions.is_empty() {
        e.required(&format!("{f}.apiVersions"), "");
    }
    if versions.len() > 1 && versions.contains(&"*") {
        invalid_slice(
            e,
            &format!("{f}.apiVersions"),
            "string",
            &versions,
            "if '*' is present, must not specify other API versions",
        );
    }
    for (i, v) in versions.iter().enumerate() {
        if v.is_empty() {
            e.required(&format!("{f}.apiVersions[{i}]"), "");
        }
    }
    resources(e, &strs(rule.get("resources")), &format!("{f}.resources"));
    if let Some(scope) = rule.get("scope").and_then(Value::as_str) {
        if !SCOPES.contains(&scope) {
            e.not_supported(&format!("{f}.scope"), scope, SCOPES);
        }
    }
}

/// `validateResources` (subresources allowed).
fn resources(e: &mut Errs, list: &[&str], f: &str) {
    use std::collections::HashSet;
    if list.is_empty() {
        e.required(f, "");
    }
    let mut with_wild_sub: HashSet<&str> = HashSet::new();
    let mut sub_with_wild_res: HashSet<&str> = HashSet::new();
    let (mut double, mut single, mut plain) = (false, false, false);
    for (i, rs) in list.iter().enumerate() {
        if rs.is_empty() {
            e.required(&format!("{f}[{i}]"), "");
            continue;
        }
        if *rs == "*/*" {
            double = true;
        }
        if *rs == "*" {
            single = true;
        }
        let Some((res, sub)) = rs.split_once('/') else {
            plain = *rs != "*";
            continue;
        };
        if with_wild_sub.contains(res) {
            e.invalid_str(
                &format!("{f}[{i}]"),
                rs,
                &format!("if '{res}/*' is present, must not specify {rs}"),
            );
        }
        if sub_with_wild_res.contains(sub) {
            e.invalid_str(
                &format!("{f}[{i}]"),
                rs,
                &format!("if '*/{sub}' is present, must not specify {rs}"),
            );
        }
        if sub == "*" {
            with_wild_sub.insert(res);
        }
        if res == "*" {
            sub_with_wild_res.insert(sub);
        }
    }
    if list.len() > 1 && double {
        invalid_slice(
            e,
            f,
            "string",
            list,
            "if '*/*' is present, must not specify other resources",
        );
    }
    if single && plain {
        invalid_slice(
            e,
            f,
            "string",
            list,
            "if '*' is present, must not specify other resources without subresources",
        );
    }
}

fn review_versions(e: &mut Errs, v: Option<&Value>, f: &str, require_recognized: bool) {
    let versions = strs(v);
    if versions.is_empty() {
        e.required(
            f,
            &format!("must specify one of {}", REVIEW_VERSIONS.join(", ")),
        );
        return;
    }
    let mut seen = std::collections::HashSet::new();
    let mut recognized = false;
    for (i, ver) in versions.iter().enumerate() {
        if !seen.insert(*ver) {
            e.invalid_str(&format!("{f}[{i}]"), ver, "duplicate version");
            continue;
        }
        for m in dns1035_label(ver) {
            e.invalid_str(&format!("{f}[{i}]"), ver, &m);
        }
        recognized |= REVIEW_VERSIONS.contains(ver);
    }
    if require_recognized && !recognized {
        invalid_slice(
            e,
            f,
            "string",
            &versions,
            &format!(
                "must include at least one of {}",
                REVIEW_VERSIONS.join(", ")
            ),
        );
    }
}

fn client_config(e: &mut Errs, cc: Option<&Value>, f: &str) {
    let url = cc.and_then(|c| c.get("url")).and_then(Value::as_str);
    let svc = cc.and_then(|c| c.get("service")).filter(|s| !s.is_null());
    match (url, svc) {
        (Some(u), None) => webhook_url(e, &format!("{f}.url"), u),
        (None, Some(s)) => webhook_service(e, &format!("{f}.service"), s),
        _ => e.required(f, "exactly one of url or service is required"),
    }
}

/// `ValidateWebhookURL` with https forced (`url.Parse` approximated by `http::Uri` for the
/// parts it checks).
fn webhook_url(e: &mut Errs, f: &str, url: &str) {
    let (rest, fragment) = url.split_once('#').unwrap_or((url, ""));
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (scheme, after) = match rest.split_once("://") {
        Some((s, a)) => (s, a),
        None => ("", rest),
    };
    if scheme != "https" {
        e.invalid_str(
            f,
            scheme,
            &format!("'https' is the only allowed URL scheme{URL_FORM}"),
        );
    }
    let authority = if scheme.is_empty() {
        ""
    } else {
        after.split('/').next().unwrap_or("")
    };
    let (user, host) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    if host.is_empty() {
        e.invalid_str(f, host, &format!("host must be provided{URL_FORM}"));
    }
    if let Some(u) = user {
        e.invalid_str(f, u, "user information is not permitted in the URL");
    }
    if !fragment.is_empty() {
        e.invalid_str(f, fragment, "fragments are not permitted in the URL");
    }
    if !query.is_empty() {
        e.invalid_str(f, query, "query parameters are not permitted in the URL");
    }
}

fn webhook_service(e: &mut Errs, f: &str, svc: &Value) {
    let s = |k: &str| svc.get(k).and_then(Value::as_str).unwrap_or("");
    if s("name").is_empty() {
        e.required(&format!("{f}.name"), "service name is required");
    }
    if s("namespace").is_empty() {
        e.required(&format!("{f}.namespace"), "service namespace is required");
    }
    let port = svc.get("port").and_then(Value::as_i64).unwrap_or(443);
    if !(1..=65535).contains(&port) {
        e.invalid(
            &format!("{f}.port"),
            &json!(port),
            "port is not valid: must be between 1 and 65535, inclusive",
        );
    }
    let Some(path) = svc.get("path").and_then(Value::as_str) else {
        return;
    };
    let pf = format!("{f}.path");
    if path == "/" || path.is_empty() {
        return;
    }
    if path == "//" {
        e.invalid_str(&pf, path, "segment[0] may not be empty");
        return;
    }
    if !path.starts_with('/') {
        e.invalid_str(&pf, path, "must start with a '/'");
    }
    let check = path.get(1..).unwrap_or("");
    let check = check.strip_suffix('/').unwrap_or(check);
    for (i, step) in check.split('/').enumerate() {
        if step.is_empty() {
            e.invalid_str(&pf, path, &format!("segment[{i}] may not be empty"));
            continue;
        }
        for m in dns1123_subdomain(step) {
            e.invalid_str(&pf, path, &format!("segment[{i}]: {m}"));
        }
    }
}

/// `validateMatchConditions` without compiling the expressions (the CEL environment does).
fn match_conditions(e: &mut Errs, v: Option<&Value>, f: &str) {
    let list = v
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    if list.len() > 64 {
        e.too_many(f, list.len(), 64);
    }
    let mut seen = std::collections::HashSet::new();
    for (i, c) in list.iter().enumerate() {
        let cf = format!("{f}[{i}]");
        let expr = c.get("expression").and_then(Value::as_str).unwrap_or("");
        if expr.trim().is_empty() {
            e.required(&format!("{cf}.expression"), "");
        }
        let name = c.get("name").and_then(Value::as_str).unwrap_or("");
        if name.is_empty() {
            e.required(&format!("{cf}.name"), "");
        } else {
            for m in qualified_name(name) {
                e.invalid_str(&format!("{cf}.name"), name, &m);
            }
            if !seen.insert(name) {
                e.duplicate(&format!("{cf}.name"), name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errs(obj: Value, old: Option<&Value>, mutating: bool) -> Vec<String> {
        let mut e = Errs(Vec::new());
        let mut o = obj.as_object().cloned().unwrap();
        defaults(&mut o, mutating);
        validate(&mut e, &o, old, mutating);
        e.0.iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect()
    }

    fn hook(extra: Value) -> Value {
        let mut h = json!({
            "name": "a.example.com",
            "clientConfig": {"url": "https://h.example.com/x"},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}],
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
        });
        for (k, v) in extra.as_object().unwrap() {
            h[k] = v.clone();
        }
        h
    }

    #[test]
    fn defaults_follow_upstream() {
        let mut o = json!({"webhooks": [{"name": "a.b.c", "rules": [{}], "clientConfig": {"service": {"name": "s", "namespace": "n"}}}]})
            .as_object()
            .cloned()
            .unwrap();
        defaults(&mut o, true);
        let h = &o["webhooks"][0];
        assert_eq!(h["failurePolicy"], "Fail");
        assert_eq!(h["matchPolicy"], "Equivalent");
        assert_eq!(h["namespaceSelector"], json!({}));
        assert_eq!(h["objectSelector"], json!({}));
        assert_eq!(h["timeoutSeconds"], 10);
        assert_eq!(h["reinvocationPolicy"], "Never");
        assert_eq!(h["rules"][0]["scope"], "*");
        assert_eq!(h["clientConfig"]["service"]["port"], 443);
    }

    #[test]
    fn a_valid_configuration_passes() {
        assert!(errs(json!({"webhooks": [hook(json!({}))]}), None, false).is_empty());
    }

    #[test]
    fn upstream_messages() {
        let bad = json!({"webhooks": [
            hook(json!({"name": "short.name", "sideEffects": "Some", "timeoutSeconds": 31,
                        "admissionReviewVersions": ["v2"],
                        "clientConfig": {"url": "http://h/x?y=1#f"}})),
            hook(json!({"clientConfig": {}, "rules": [{"operations": ["*", "CREATE"], "apiGroups": ["*"], "apiVersions": ["v1"], "resources": ["*/*", "pods"]}]})),
            hook(json!({"name": "a.example.com"})),
        ]});
        let got = errs(bad, None, false);
        let want = [
            "webhooks[0].name: Invalid value: \"short.name\": should be a domain with at least three segments separated by dots",
            "webhooks[0].sideEffects: Unsupported value: \"Some\": supported values: \"None\", \"NoneOnDryRun\"",
            "webhooks[0].timeoutSeconds: Invalid value: 31: the timeout value must be between 1 and 30 seconds",
            "webhooks[0].clientConfig.url: Invalid value: \"http\": 'https' is the only allowed URL scheme; desired format: https://host[/path]",
            "webhooks[0].clientConfig.url: Invalid value: \"f\": fragments are not permitted in the URL",
            "webhooks[0].clientConfig.url: Invalid value: \"y=1\": query parameters are not permitted in the URL",
            "webhooks[0].admissionReviewVersions: Invalid value: []string{\"v2\"}: must include at least one of v1, v1beta1",
            "webhooks[1].rules[0].operations: Invalid value: []admissionregistration.OperationType{\"*\", \"CREATE\"}: if '*' is present, must not specify other operations",
            "webhooks[1].rules[0].resources: Invalid value: []string{\"*/*\", \"pods\"}: if '*/*' is present, must not specify other resources",
            "webhooks[1].clientConfig: Required value: exactly one of url or service is required",
            "webhooks[2].name: Duplicate value: \"a.example.com\"",
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn side_effects_are_required() {
        let mut h = hook(json!({}));
        h.as_object_mut().unwrap().remove("sideEffects");
        assert_eq!(
            errs(json!({"webhooks": [h]}), None, true),
            ["webhooks[0].sideEffects: Required value: must specify one of None, NoneOnDryRun"]
        );
    }

    #[test]
    fn updates_keep_accepting_what_was_stored() {
        let old = json!({"webhooks": [hook(json!({"sideEffects": "Unknown"}))]});
        assert!(errs(old.clone(), Some(&old), false).is_empty());
        let new = json!({"webhooks": [hook(json!({"sideEffects": "Unknown"}))]});
        assert_eq!(errs(new, None, false).len(), 1);
    }

    #[test]
    fn table_counts_webhooks() {
        let obj = json!({"metadata": {"name": "x"}, "webhooks": [{}, {}]});
        let row = cells(&obj, jiff::Timestamp::now());
        assert_eq!(row[0], "x");
        assert_eq!(row[1], 2);
    }
}
