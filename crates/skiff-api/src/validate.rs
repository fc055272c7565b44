//! Validation as the upstream API server does it: the entry points (ObjectMeta, then the kind's
//! own checks from its module in `kinds`), the shared building blocks (names: DNS-1123/1035,
//! labels and annotations, selectors, workload and pod-spec checks, ports, resources), and strict
//! unknown-field detection.
//!
//! Causes use upstream's reasons (`FieldValueRequired`, `FieldValueInvalid`, ...), field paths
//! (`spec.template.spec.containers[0].name`) and message wording (`Invalid value: "x": a
//! lowercase RFC 1123 subdomain must consist of ...`), because kubectl prints them verbatim.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::{Map, Value};

use skiff_semantics::{Quantity, QuantityError};

use crate::{ApiError, Cause, ResourceInfo};

pub(crate) mod endpoints;
mod types;

pub use types::check_types;

/// Validates an object about to be stored (`old` = the current object for updates). Returns a
/// 422 Invalid with field causes.
pub fn validate(info: &ResourceInfo, object: &Value, old: Option<&Value>) -> Result<(), ApiError> {
    let causes = validation_causes(info, object, old);
    if causes.is_empty() {
        return Ok(());
    }
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    Err(ApiError::invalid(info.group, info.kind, name, causes))
}

/// The field causes `validate` would report (empty = valid).
pub fn validation_causes(info: &ResourceInfo, object: &Value, old: Option<&Value>) -> Vec<Cause> {
    if crate::kinds::is_alt_version(info) {
        // Extra versions are checked in the stored version's shape (upstream validates its
        // internal type).
        let object = crate::kinds::to_stored(info, object.clone());
        let old = old.map(|o| crate::kinds::to_stored(info, o.clone()));
        let stored = crate::kinds::of(info);
        return validation_causes(&stored.info, &object, old.as_ref());
    }
    let mut e = Errs::default();
    let Some(obj) = object.as_object() else {
        e.invalid("", object, "object expected");
        return e.0;
    };
    let kind = crate::kinds::of(info);
    object_meta(&mut e, obj.get("metadata"), info.namespaced, kind.name_rule);
    if let Some(old) = old {
        meta_update(&mut e, obj.get("metadata"), old.get("metadata"));
    }
    (kind.validate)(&mut e, obj, old);
    e.0
}

/// The causes collected so far (kind modules push through the helpers below).
#[derive(Default)]
pub(crate) struct Errs(pub(crate) Vec<Cause>);

impl Errs {
    pub(crate) fn push(&mut self, reason: &str, field: &str, message: String) {
        self.0.push(Cause {
            reason: reason.into(),
            message,
            field: field.into(),
        });
    }
    pub(crate) fn required(&mut self, field: &str, detail: &str) {
        let msg = if detail.is_empty() {
            "Required value".to_string()
        } else {
            format!("Required value: {detail}")
        };
        self.push("FieldValueRequired", field, msg);
    }
    pub(crate) fn invalid(&mut self, field: &str, value: &Value, detail: &str) {
        let msg = format!("Invalid value: {}: {detail}", go_value(value));
        self.push("FieldValueInvalid", field, msg);
    }
    pub(crate) fn invalid_str(&mut self, field: &str, value: &str, detail: &str) {
        self.invalid(field, &Value::String(value.into()), detail);
    }
    pub(crate) fn not_supported(&mut self, field: &str, value: &str, supported: &[&str]) {
        let list: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
        let msg = format!(
            "Unsupported value: {value:?}: supported values: {}",
            list.join(", ")
        );
        self.push("FieldValueNotSupported", field, msg);
    }
    pub(crate) fn duplicate(&mut self, field: &str, value: &str) {
        self.push(
            "FieldValueDuplicate",
            field,
            format!("Duplicate value: {value:?}"),
        );
    }
    pub(crate) fn forbidden(&mut self, field: &str, detail: &str) {
        self.push("FieldValueForbidden", field, format!("Forbidden: {detail}"));
    }
    pub(crate) fn not_found(&mut self, field: &str, value: &str) {
        self.push("FieldValueNotFound", field, format!("Not found: {value:?}"));
    }
    /// `field.Invalid` with the value left out (`field.OmitValueType`).
    pub(crate) fn invalid_omit(&mut self, field: &str, detail: &str) {
        self.push(
            "FieldValueInvalid",
            field,
            format!("Invalid value: {detail}"),
        );
    }
    pub(crate) fn too_many(&mut self, field: &str, actual: usize, max: usize) {
        let items = if max == 1 { "item" } else { "items" };
        self.push(
            "FieldValueTooMany",
            field,
            format!("Too many: {actual}: must have at most {max} {items}"),
        );
    }
    pub(crate) fn too_long(&mut self, field: &str, max: usize) {
        self.push(
            "FieldValueTooLong",
            field,
            format!("Too long: may not be more than {max} bytes"),
        );
    }
}

/// How Go's field.Invalid prints a value: strings quoted, maps as `map[string]string{...}`.
pub(crate) fn go_value(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Null => "null".into(),
        Value::Object(m) if m.values().all(Value::is_string) => {
            let parts: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{k:?}:{:?}", v.as_str().unwrap_or("")))
                .collect();
            format!("map[string]string{{{}}}", parts.join(", "))
        }
        v => v.to_string(),
    }
}

/// `%#v` of a metav1.LabelSelector value (what upstream prints for a selector in a cause; its
/// `String` method has a pointer receiver, so Go falls back to the struct syntax).
pub(crate) fn go_label_selector(sel: &Value) -> String {
    let labels = match sel.get("matchLabels") {
        Some(Value::Object(m)) => {
            let mut pairs: Vec<(&String, &str)> = m
                .iter()
                .map(|(k, v)| (k, v.as_str().unwrap_or("")))
                .collect();
            pairs.sort();
            let parts: Vec<String> = pairs.iter().map(|(k, v)| format!("{k:?}:{v:?}")).collect();
            format!("map[string]string{{{}}}", parts.join(", "))
        }
        _ => "map[string]string(nil)".into(),
    };
    let exprs = match sel.get("matchExpressions") {
        Some(Value::Array(a)) => {
            let parts: Vec<String> = a
                .iter()
                .map(|x| {
                    let values = match x.get("values") {
                        Some(Value::Array(vs)) => {
                            let vs: Vec<String> = vs
                                .iter()
                                .map(|v| format!("{:?}", v.as_str().unwrap_or("")))
                                .collect();
                            format!("[]string{{{}}}", vs.join(", "))
                        }
                        _ => "[]string(nil)".into(),
                    };
                    format!(
                        "v1.LabelSelectorRequirement{{Key:{:?}, Operator:{:?}, Values:{values}}}",
                        str_at(Some(x), "key").unwrap_or(""),
                        str_at(Some(x), "operator").unwrap_or(""),
                    )
                })
                .collect();
            format!("[]v1.LabelSelectorRequirement{{{}}}", parts.join(", "))
        }
        _ => "[]v1.LabelSelectorRequirement(nil)".into(),
    };
    format!("v1.LabelSelector{{MatchLabels:{labels}, MatchExpressions:{exprs}}}")
}

// ---- name syntax (k8s.io/apimachinery/pkg/util/validation) ----

pub(crate) const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
pub(crate) const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
pub(crate) const DNS1035_LABEL_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";
pub(crate) const QUALIFIED_NAME_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
pub(crate) const QUALIFIED_NAME_FULL_MSG: &str = "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')";
pub(crate) const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
pub(crate) const CONFIG_KEY_MSG: &str = "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')";
pub(crate) const IANA_SVC_NAME_MSG: &str =
    "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)";
pub(crate) const ENV_NAME_MSG: &str = "a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit (e.g. 'my.env-name',  or 'MY_ENV.NAME',  or 'MyEnvName1', regex used for validation is '[-._a-zA-Z][-._a-zA-Z0-9]*')";

pub(crate) fn max_len_msg(n: usize) -> String {
    format!("must be no more than {n} characters")
}

pub(crate) fn is_alnum_lower(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

pub(crate) fn dns1123_label_ok(s: &str) -> bool {
    !s.is_empty()
        && s.chars().all(|c| is_alnum_lower(c) || c == '-')
        && s.starts_with(is_alnum_lower)
        && s.ends_with(is_alnum_lower)
}

/// Upstream `IsDNS1123Label`: the messages for an invalid label.
pub(crate) fn dns1123_label(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    if s.len() > 63 {
        out.push(max_len_msg(63));
    }
    if !dns1123_label_ok(s) {
        out.push(DNS1123_LABEL_MSG.into());
    }
    out
}

pub(crate) fn dns1123_subdomain(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    if s.len() > 253 {
        out.push(max_len_msg(253));
    }
    if !s.split('.').all(dns1123_label_ok) {
        out.push(DNS1123_SUBDOMAIN_MSG.into());
    }
    out
}

pub(crate) fn dns1035_label(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    if s.len() > 63 {
        out.push(max_len_msg(63));
    }
    if !(dns1123_label_ok(s) && s.starts_with(|c: char| c.is_ascii_lowercase())) {
        out.push(DNS1035_LABEL_MSG.into());
    }
    out
}

pub(crate) fn qualified_part_ok(s: &str) -> bool {
    let alnum = |c: char| c.is_ascii_alphanumeric();
    !s.is_empty()
        && s.chars()
            .all(|c| alnum(c) || c == '-' || c == '_' || c == '.')
        && s.starts_with(alnum)
        && s.ends_with(alnum)
}

/// Upstream `IsQualifiedName` (label and annotation keys).
pub(crate) fn qualified_name(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let parts: Vec<&str> = s.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                out.push("prefix part must be non-empty".into());
            } else {
                out.extend(
                    dns1123_subdomain(prefix)
                        .into_iter()
                        .map(|m| format!("prefix part {m}")),
                );
            }
            *name
        }
        _ => {
            out.push(QUALIFIED_NAME_FULL_MSG.into());
            return out;
        }
    };
    if name.is_empty() {
        out.push("name part must be non-empty".into());
    } else if name.len() > 63 {
        out.push(format!("name part {}", max_len_msg(63)));
    }
    if !name.is_empty() && !qualified_part_ok(name) {
        out.push(QUALIFIED_NAME_MSG.into());
    }
    out
}

pub(crate) fn label_value(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    if s.len() > 63 {
        out.push(max_len_msg(63));
    }
    if !s.is_empty() && !qualified_part_ok(s) {
        out.push(LABEL_VALUE_MSG.into());
    }
    out
}

pub(crate) fn config_key(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    if s.len() > 253 {
        out.push(max_len_msg(253));
    }
    if s.is_empty()
        || !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    {
        out.push(CONFIG_KEY_MSG.into());
    }
    if s == "." {
        out.push("must not be '.'".into());
    } else if s == ".." {
        out.push("must not be '..'".into());
    } else if s.starts_with("..") {
        out.push("must not start with '..'".into());
    }
    out
}

/// IANA_SVC_NAME (port names): ≤15 chars, lowercase alphanumerics and non-adjacent hyphens,
/// at least one letter.
pub(crate) fn port_name(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    if s.len() > 15 {
        out.push(max_len_msg(15));
    }
    if !s.chars().all(|c| is_alnum_lower(c) || c == '-') {
        out.push(IANA_SVC_NAME_MSG.into());
    }
    if !s.chars().any(|c| c.is_ascii_lowercase()) {
        out.push("must contain at least one letter (a-z)".into());
    }
    if s.contains("--") {
        out.push("must not contain consecutive hyphens".into());
    }
    if s.starts_with('-') || s.ends_with('-') {
        out.push("must not begin or end with a hyphen".into());
    }
    out
}

#[derive(Clone, Copy)]
pub(crate) enum NameRule {
    Subdomain,
    Label,
    Dns1035,
    /// Any name usable as one URL path segment (upstream's `path.IsValidPathSegmentName`,
    /// which RBAC objects use).
    PathSegment,
}

pub(crate) fn name_errors(rule: NameRule, s: &str) -> Vec<String> {
    match rule {
        NameRule::Subdomain => dns1123_subdomain(s),
        NameRule::Label => dns1123_label(s),
        NameRule::Dns1035 => dns1035_label(s),
        NameRule::PathSegment => path_segment(s),
    }
}

pub(crate) fn path_segment(s: &str) -> Vec<String> {
    if s == "." || s == ".." {
        return vec![format!("may not be '{s}'")];
    }
    ["/", "%"]
        .iter()
        .filter(|c| s.contains(**c))
        .map(|c| format!("may not contain '{c}'"))
        .collect()
}

// ---- metadata ----

pub(crate) fn str_at<'a>(v: Option<&'a Value>, key: &str) -> Option<&'a str> {
    v.and_then(|v| v.get(key)).and_then(Value::as_str)
}

pub(crate) fn object_meta(e: &mut Errs, meta: Option<&Value>, namespaced: bool, rule: NameRule) {
    let name = str_at(meta, "name").unwrap_or("");
    let generate = str_at(meta, "generateName").unwrap_or("");
    if !generate.is_empty() {
        // A prefix may end in '-' (upstream strips it before checking).
        let prefix = generate.strip_suffix('-').unwrap_or(generate);
        for m in name_errors(rule, prefix) {
            e.invalid_str("metadata.generateName", generate, &m);
        }
    }
    if name.is_empty() {
        if generate.is_empty() {
            e.required("metadata.name", "name or generateName is required");
        }
    } else {
        for m in name_errors(rule, name) {
            e.invalid_str("metadata.name", name, &m);
        }
    }
    let ns = str_at(meta, "namespace").unwrap_or("");
    if namespaced {
        if ns.is_empty() {
            e.required("metadata.namespace", "");
        } else {
            for m in dns1123_label(ns) {
                e.invalid_str("metadata.namespace", ns, &m);
            }
        }
    } else if !ns.is_empty() {
        e.forbidden("metadata.namespace", "not allowed on this type");
    }
    labels(e, meta.and_then(|m| m.get("labels")), "metadata.labels");
    if let Some(ann) = meta
        .and_then(|m| m.get("annotations"))
        .and_then(Value::as_object)
    {
        let mut total = 0;
        for (k, v) in ann {
            for m in qualified_name(&k.to_ascii_lowercase()) {
                e.invalid_str("metadata.annotations", k, &m);
            }
            total += k.len() + v.as_str().map_or(0, str::len);
        }
        if total > 256 * 1024 {
            e.too_long("metadata.annotations", 256 * 1024);
        }
    }
    if let Some(fins) = meta
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
    {
        for (i, f) in fins.iter().enumerate() {
            let f = f.as_str().unwrap_or("");
            for m in qualified_name(f) {
                e.invalid_str(&format!("metadata.finalizers[{i}]"), f, &m);
            }
        }
    }
}

pub(crate) fn labels(e: &mut Errs, labels: Option<&Value>, field: &str) {
    let Some(labels) = labels.and_then(Value::as_object) else {
        return;
    };
    for (k, v) in labels {
        for m in qualified_name(k) {
            e.invalid_str(field, k, &m);
        }
        let v = v.as_str().unwrap_or("");
        for m in label_value(v) {
            e.invalid_str(field, v, &m);
        }
    }
}

pub(crate) fn meta_update(e: &mut Errs, new: Option<&Value>, old: Option<&Value>) {
    for key in ["name", "namespace", "uid"] {
        let (n, o) = (str_at(new, key), str_at(old, key));
        if let (Some(n), Some(o)) = (n, o) {
            if n != o && !n.is_empty() {
                e.invalid_str(&format!("metadata.{key}"), n, "field is immutable");
            }
        }
    }
}

// ---- workloads ----

pub(crate) fn label_selector_matches(sel: &Value, labels: &Map<String, Value>) -> bool {
    skiff_semantics::labels::label_selector_matches_json(sel, labels)
}

pub(crate) fn label_selector(e: &mut Errs, sel: &Value, field: &str) {
    labels(e, sel.get("matchLabels"), &format!("{field}.matchLabels"));
    if let Some(exprs) = sel.get("matchExpressions").and_then(Value::as_array) {
        for (i, x) in exprs.iter().enumerate() {
            let f = format!("{field}.matchExpressions[{i}]");
            let key = x.get("key").and_then(Value::as_str).unwrap_or("");
            for m in qualified_name(key) {
                e.invalid_str(&format!("{f}.key"), key, &m);
            }
            let n_values = x
                .get("values")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            match x.get("operator").and_then(Value::as_str).unwrap_or("") {
                "In" | "NotIn" if n_values == 0 => e.required(
                    &format!("{f}.values"),
                    "must be specified when `operator` is 'In' or 'NotIn'",
                ),
                "Exists" | "DoesNotExist" if n_values > 0 => e.forbidden(
                    &format!("{f}.values"),
                    "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                ),
                "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
                op => e.invalid_str(
                    &format!("{f}.operator"),
                    op,
                    "not a valid selector operator",
                ),
            }
        }
    }
}

pub(crate) fn template_labels(e: &mut Errs, template: &Value, field: &str) {
    labels(
        e,
        template.pointer("/metadata/labels"),
        &format!("{field}.metadata.labels"),
    );
}

pub(crate) fn non_negative(e: &mut Errs, spec: &Value, key: &str, field: &str) {
    if let Some(n) = spec.get(key).and_then(Value::as_i64) {
        if n < 0 {
            e.invalid(field, &Value::from(n), "must be greater than or equal to 0");
        }
    }
}

/// Deployment / ReplicaSet spec (`what` names the kind in messages): replicas, selector,
/// template (whose pods always restart).
pub(crate) fn workload(e: &mut Errs, spec: Option<&Value>, old: Option<&Value>, what: &str) {
    let Some(spec) = spec else {
        e.required("spec.selector", "");
        e.required("spec.template", "");
        return;
    };
    non_negative(e, spec, "replicas", "spec.replicas");
    non_negative(e, spec, "minReadySeconds", "spec.minReadySeconds");
    non_negative(e, spec, "revisionHistoryLimit", "spec.revisionHistoryLimit");
    if let (Some(p), Some(m)) = (
        spec.get("progressDeadlineSeconds").and_then(Value::as_i64),
        spec.get("minReadySeconds").and_then(Value::as_i64),
    ) {
        if p <= m {
            e.invalid(
                "spec.progressDeadlineSeconds",
                &Value::from(p),
                "must be greater than minReadySeconds",
            );
        }
    }
    let selector = spec.get("selector").filter(|s| !s.is_null());
    match selector {
        None => e.required("spec.selector", ""),
        Some(sel) => {
            let n = sel
                .get("matchLabels")
                .and_then(Value::as_object)
                .map_or(0, Map::len)
                + sel
                    .get("matchExpressions")
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len);
            if n == 0 {
                e.invalid_omit(
                    "spec.selector",
                    &format!(
                        "{}: empty selector is invalid for {what}",
                        go_label_selector(sel)
                    ),
                );
            } else {
                label_selector(e, sel, "spec.selector");
            }
        }
    }
    match spec.get("template").filter(|t| !t.is_null()) {
        None => e.required("spec.template", ""),
        Some(t) => {
            template_labels(e, t, "spec.template");
            let empty = Map::new();
            let tl = t
                .pointer("/metadata/labels")
                .and_then(Value::as_object)
                .unwrap_or(&empty);
            if let Some(sel) = selector {
                if !label_selector_matches(sel, tl) {
                    e.invalid(
                        "spec.template.metadata.labels",
                        &Value::Object(tl.clone()),
                        "`selector` does not match template `labels`",
                    );
                }
            }
            pod_spec(e, t.get("spec"), "spec.template.spec");
            let rp = t
                .pointer("/spec/restartPolicy")
                .and_then(Value::as_str)
                .unwrap_or("Always");
            if rp != "Always" {
                e.not_supported("spec.template.spec.restartPolicy", rp, &["Always"]);
            }
            if t.pointer("/spec/activeDeadlineSeconds")
                .is_some_and(|v| !v.is_null())
            {
                e.forbidden(
                    "spec.template.spec.activeDeadlineSeconds",
                    "activeDeadlineSeconds in ReplicaSet is not Supported",
                );
            }
        }
    }
    // apps/v1 selectors are immutable.
    if let Some(old_sel) = old.and_then(|o| o.get("selector")) {
        if let Some(sel) = selector {
            if sel != old_sel {
                e.invalid_omit(
                    "spec.selector",
                    &format!("{}: field is immutable", go_label_selector(sel)),
                );
            }
        }
    }
}

// ---- pods ----

pub(crate) fn pod_spec(e: &mut Errs, spec: Option<&Value>, field: &str) {
    let Some(spec) = spec.filter(|s| s.is_object()) else {
        e.required(&format!("{field}.containers"), "");
        return;
    };
    let mut volume_names = HashSet::new();
    if let Some(vols) = spec.get("volumes").and_then(Value::as_array) {
        for (i, v) in vols.iter().enumerate() {
            let f = format!("{field}.volumes[{i}]");
            let name = v.get("name").and_then(Value::as_str).unwrap_or("");
            if name.is_empty() {
                e.required(&format!("{f}.name"), "");
            } else {
                for m in dns1123_label(name) {
                    e.invalid_str(&format!("{f}.name"), name, &m);
                }
                if !volume_names.insert(name.to_string()) {
                    e.duplicate(&format!("{f}.name"), name);
                }
            }
            let sources = v
                .as_object()
                .map(|m| {
                    m.iter()
                        .filter(|(k, v)| *k != "name" && !v.is_null())
                        .count()
                })
                .unwrap_or(0);
            if sources == 0 {
                e.required(&f, "must specify a volume type");
            } else if sources > 1 {
                e.forbidden(&f, "may not specify more than 1 volume type");
            }
        }
    }
    let containers = spec.get("containers").and_then(Value::as_array);
    if containers.is_none_or(Vec::is_empty) {
        e.required(&format!("{field}.containers"), "");
    }
    let mut names = HashSet::new();
    for key in ["initContainers", "containers"] {
        let Some(list) = spec.get(key).and_then(Value::as_array) else {
            continue;
        };
        for (i, c) in list.iter().enumerate() {
            container(
                e,
                c,
                &format!("{field}.{key}[{i}]"),
                &mut names,
                &volume_names,
            );
        }
    }
    let one_of = |e: &mut Errs, key: &str, allowed: &[&str]| {
        if let Some(v) = spec.get(key).and_then(Value::as_str) {
            if !allowed.contains(&v) {
                e.not_supported(&format!("{field}.{key}"), v, allowed);
            }
        }
    };
    one_of(e, "restartPolicy", &["Always", "OnFailure", "Never"]);
    one_of(
        e,
        "dnsPolicy",
        &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
    );
    one_of(e, "preemptionPolicy", &["Never", "PreemptLowerPriority"]);
    non_negative(
        e,
        spec,
        "terminationGracePeriodSeconds",
        &format!("{field}.terminationGracePeriodSeconds"),
    );
    if let Some(n) = spec.get("activeDeadlineSeconds").and_then(Value::as_i64) {
        if n <= 0 {
            e.invalid(
                &format!("{field}.activeDeadlineSeconds"),
                &Value::from(n),
                "must be between 1 and 2147483647, inclusive",
            );
        }
    }
    if let Some(sel) = spec.get("nodeSelector") {
        labels(e, Some(sel), &format!("{field}.nodeSelector"));
    }
    if let Some(tols) = spec.get("tolerations").and_then(Value::as_array) {
        for (i, t) in tols.iter().enumerate() {
            let f = format!("{field}.tolerations[{i}]");
            let op = t.get("operator").and_then(Value::as_str).unwrap_or("Equal");
            let key = t.get("key").and_then(Value::as_str).unwrap_or("");
            if !key.is_empty() {
                for m in qualified_name(key) {
                    e.invalid_str(&format!("{f}.key"), key, &m);
                }
            } else if op != "Exists" {
                e.invalid_str(
                    &format!("{f}.operator"),
                    op,
                    "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
                );
            }
            match op {
                "Equal" | "" => {}
                "Exists" => {
                    if t.get("value")
                        .and_then(Value::as_str)
                        .is_some_and(|v| !v.is_empty())
                    {
                        e.invalid(
                            &format!("{f}.operator"),
                            t.get("value").unwrap_or(&Value::Null),
                            "value must be empty when `operator` is 'Exists'",
                        );
                    }
                }
                other => e.not_supported(&format!("{f}.operator"), other, &["Equal", "Exists"]),
            }
            if let Some(eff) = t.get("effect").and_then(Value::as_str) {
                if !eff.is_empty()
                    && !["NoSchedule", "PreferNoSchedule", "NoExecute"].contains(&eff)
                {
                    e.not_supported(
                        &format!("{f}.effect"),
                        eff,
                        &["NoSchedule", "PreferNoSchedule", "NoExecute"],
                    );
                }
            }
        }
    }
}

pub(crate) fn port_range(e: &mut Errs, v: Option<&Value>, field: &str, allow_zero: bool) {
    if let Some(n) = v.and_then(Value::as_i64) {
        let lo = if allow_zero { 0 } else { 1 };
        if !(lo..=65535).contains(&n) {
            e.invalid(
                field,
                &Value::from(n),
                &format!("must be between {lo} and 65535, inclusive"),
            );
        }
    }
}

pub(crate) fn protocol(e: &mut Errs, p: &Value, field: &str) {
    if let Some(proto) = p.get("protocol").and_then(Value::as_str) {
        if !["TCP", "UDP", "SCTP"].contains(&proto) {
            e.not_supported(field, proto, &["SCTP", "TCP", "UDP"]);
        }
    }
}

pub(crate) fn container(
    e: &mut Errs,
    c: &Value,
    f: &str,
    names: &mut HashSet<String>,
    volumes: &HashSet<String>,
) {
    let name = c.get("name").and_then(Value::as_str).unwrap_or("");
    if name.is_empty() {
        e.required(&format!("{f}.name"), "");
    } else {
        for m in dns1123_label(name) {
            e.invalid_str(&format!("{f}.name"), name, &m);
        }
        if !names.insert(name.to_string()) {
            e.duplicate(&format!("{f}.name"), name);
        }
    }
    if c.get("image")
        .and_then(Value::as_str)
        .is_none_or(|s| s.trim().is_empty())
    {
        e.required(&format!("{f}.image"), "");
    }
    if let Some(p) = c.get("imagePullPolicy").and_then(Value::as_str) {
        if !["Always", "IfNotPresent", "Never"].contains(&p) {
            e.not_supported(
                &format!("{f}.imagePullPolicy"),
                p,
                &["Always", "IfNotPresent", "Never"],
            );
        }
    }
    if let Some(ports) = c.get("ports").and_then(Value::as_array) {
        let mut port_names = HashSet::new();
        for (i, p) in ports.iter().enumerate() {
            let pf = format!("{f}.ports[{i}]");
            match p.get("containerPort") {
                None | Some(Value::Null) => e.required(&format!("{pf}.containerPort"), ""),
                v => port_range(e, v, &format!("{pf}.containerPort"), false),
            }
            port_range(e, p.get("hostPort"), &format!("{pf}.hostPort"), true);
            if let Some(n) = p
                .get("name")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
            {
                for m in port_name(n) {
                    e.invalid_str(&format!("{pf}.name"), n, &m);
                }
                if !port_names.insert(n.to_string()) {
                    e.duplicate(&format!("{pf}.name"), n);
                }
            }
            protocol(e, p, &format!("{pf}.protocol"));
        }
    }
    if let Some(env) = c.get("env").and_then(Value::as_array) {
        for (i, v) in env.iter().enumerate() {
            let name = v.get("name").and_then(Value::as_str).unwrap_or("");
            let nf = format!("{f}.env[{i}].name");
            if name.is_empty() {
                e.required(&nf, "");
            } else if !name.starts_with(|c: char| !c.is_ascii_digit())
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
            {
                e.invalid_str(&nf, name, ENV_NAME_MSG);
            }
        }
    }
    if let Some(mounts) = c.get("volumeMounts").and_then(Value::as_array) {
        for (i, m) in mounts.iter().enumerate() {
            let mf = format!("{f}.volumeMounts[{i}]");
            let name = m.get("name").and_then(Value::as_str).unwrap_or("");
            if name.is_empty() {
                e.required(&format!("{mf}.name"), "");
            } else if !volumes.contains(name) {
                e.not_found(&format!("{mf}.name"), name);
            }
            if m.get("mountPath")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                e.required(&format!("{mf}.mountPath"), "");
            }
        }
    }
    resources(e, c.get("resources"), &format!("{f}.resources"));
    for key in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = c.get(key).filter(|p| p.is_object()) {
            let handlers = ["exec", "httpGet", "tcpSocket", "grpc"]
                .iter()
                .filter(|h| p.get(**h).is_some_and(|v| !v.is_null()))
                .count();
            if handlers == 0 {
                e.required(&format!("{f}.{key}"), "must specify a handler type");
            } else if handlers > 1 {
                e.forbidden(
                    &format!("{f}.{key}"),
                    "may not specify more than 1 handler type",
                );
            }
            for k in [
                "timeoutSeconds",
                "periodSeconds",
                "successThreshold",
                "failureThreshold",
                "initialDelaySeconds",
            ] {
                non_negative(e, p, k, &format!("{f}.{key}.{k}"));
            }
        }
    }
}

pub(crate) fn resources(e: &mut Errs, res: Option<&Value>, f: &str) {
    let Some(res) = res else {
        return;
    };
    let mut parsed: BTreeMap<(&str, String), Quantity> = BTreeMap::new();
    for which in ["limits", "requests"] {
        if let Some(m) = res.get(which).and_then(Value::as_object) {
            for (k, v) in m {
                let s = match v {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    _ => String::new(),
                };
                match Quantity::parse(&s) {
                    Ok(q) if !q.is_negative() => {
                        parsed.insert((which, k.clone()), q);
                    }
                    Ok(_) => e.invalid(
                        &format!("{f}.{which}[{k}]"),
                        v,
                        "must be greater than or equal to 0",
                    ),
                    Err(_) => e.invalid(
                        &format!("{f}.{which}[{k}]"),
                        v,
                        &QuantityError::Format.to_string(),
                    ),
                }
            }
        }
    }
    for ((which, k), req) in &parsed {
        if *which != "requests" {
            continue;
        }
        if let Some(lim) = parsed.get(&("limits", k.clone())) {
            if req > lim {
                let raw = res
                    .get("requests")
                    .and_then(|r| r.get(k.as_str()))
                    .cloned()
                    .unwrap_or(Value::Null);
                let lim_raw = res
                    .get("limits")
                    .and_then(|r| r.get(k.as_str()))
                    .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
                    .unwrap_or_default();
                e.invalid(
                    &format!("{f}.requests"),
                    &raw,
                    &format!("must be less than or equal to {k} limit of {lim_raw}"),
                );
            }
        }
    }
}

// ---- services ----

// ---- config maps and secrets ----

pub(crate) fn data_keys(e: &mut Errs, obj: &Map<String, Value>, keys: &[&str]) -> usize {
    let mut seen = HashSet::new();
    let mut total = 0;
    for key in keys {
        if let Some(m) = obj.get(*key).and_then(Value::as_object) {
            for (k, v) in m {
                for msg in config_key(k) {
                    e.invalid_str(&format!("{key}[{k}]"), k, &msg);
                }
                if !seen.insert(k.clone()) {
                    e.invalid_str(
                        &format!("{key}[{k}]"),
                        k,
                        &format!("duplicate of key {k:?}"),
                    );
                }
                total += v.as_str().map_or(0, str::len);
            }
        }
    }
    total
}

pub(crate) fn immutable_data(
    e: &mut Errs,
    obj: &Map<String, Value>,
    old: Option<&Value>,
    keys: &[&str],
) {
    let Some(old) = old else {
        return;
    };
    if old.get("immutable") != Some(&Value::Bool(true)) {
        return;
    }
    for key in keys {
        if obj.get(*key) != old.get(*key) {
            e.forbidden(key, "field is immutable when `immutable` is set");
        }
    }
    if obj.get("immutable") != Some(&Value::Bool(true)) {
        e.forbidden("immutable", "field is immutable when `immutable` is set");
    }
}

// ---- strict field validation ----

/// Schema of a kind plus its definitions, cached per kind.
type KindSchema = Arc<(Value, Map<String, Value>)>;

pub(crate) fn schema_for(info: &ResourceInfo) -> Option<KindSchema> {
    static CACHE: OnceLock<Mutex<HashMap<String, Option<KindSchema>>>> = OnceLock::new();
    let key = format!("{}/{}/{}", info.group, info.version, info.kind);
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    if let Ok(guard) = cache.lock() {
        if let Some(hit) = guard.get(&key) {
            return hit.clone();
        }
    }
    let schema = crate::openapi::kind_schema(info.group, info.version, info.kind).map(Arc::new);
    if let Ok(mut guard) = cache.lock() {
        guard.insert(key, schema.clone());
    }
    schema
}

/// Dotted paths of fields the kind's schema does not know (e.g. "spec.replicaz"), for
/// `fieldValidation=Strict` ("strict decoding error: unknown field \"spec.replicaz\"").
pub fn unknown_fields(info: &ResourceInfo, object: &Value) -> Vec<String> {
    let Some(schema) = schema_for(info) else {
        return Vec::new();
    };
    let (root, defs) = (&schema.0, &schema.1);
    let mut out = Vec::new();
    walk(root, defs, object, "", &mut out, 0);
    out
}

/// Follows `$ref` and single-element `allOf` wrappers.
pub(crate) fn resolve<'a>(mut s: &'a Value, defs: &'a Map<String, Value>) -> &'a Value {
    for _ in 0..16 {
        if let Some(r) = s.get("$ref").and_then(Value::as_str) {
            match r.rsplit('/').next().and_then(|n| defs.get(n)) {
                Some(d) => s = d,
                None => return s,
            }
        } else if let Some([one]) = s.get("allOf").and_then(Value::as_array).map(Vec::as_slice) {
            s = one;
        } else {
            return s;
        }
    }
    s
}

pub(crate) fn walk(
    schema: &Value,
    defs: &Map<String, Value>,
    v: &Value,
    path: &str,
    out: &mut Vec<String>,
    depth: usize,
) {
    if depth > 64 {
        return;
    }
    let s = resolve(schema, defs);
    if s.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
        return;
    }
    let join = |k: &str| field_path(path, k);
    match v {
        Value::Object(m) => {
            if let Some(props) = s.get("properties").and_then(Value::as_object) {
                for (k, val) in m {
                    match props.get(k) {
                        Some(ps) => walk(ps, defs, val, &join(k), out, depth + 1),
                        None => out.push(join(k)),
                    }
                }
            } else if let Some(ap) = s.get("additionalProperties").filter(|a| a.is_object()) {
                for (k, val) in m {
                    walk(ap, defs, val, &join(k), out, depth + 1);
                }
            }
        }
        Value::Array(a) => {
            if let Some(items) = s.get("items") {
                for (i, val) in a.iter().enumerate() {
                    walk(items, defs, val, &format!("{path}[{i}]"), out, depth + 1);
                }
            }
        }
        _ => {}
    }
}

/// `path.k`, or `k` at the top level (field paths in schema walks).
pub(crate) fn field_path(path: &str, k: &str) -> String {
    if path.is_empty() {
        k.to_string()
    } else {
        format!("{path}.{k}")
    }
}
