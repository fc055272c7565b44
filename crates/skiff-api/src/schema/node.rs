//! The typed tree of a structural schema and the checks that make a schema structural
//! (upstream's `apiextensions-apiserver/pkg/apiserver/schema` invariants and the CRD API's
//! `ValidateCustomResourceDefinitionOpenAPISchema` rules that concern one schema).
//!
//! Paths of the causes are relative to the schema root in upstream's `field.Path` syntax
//! (`properties[spec].type`, `items.properties[name]`, `allOf[0]`).

use std::collections::BTreeMap;

use regex::Regex;
use serde_json::Value;

use super::Rule;
use crate::validate::{go_value, Errs};

/// Nesting deeper than this is refused (a schema is input; recursion must be bounded).
pub(crate) const MAX_DEPTH: usize = 128;

/// `additionalProperties`: a boolean or a schema.
#[derive(Debug, Clone)]
pub(crate) enum Additional {
    Bool(bool),
    Schema(Box<Node>),
}

/// One schema node (structural part and value validations together).
#[derive(Debug, Clone, Default)]
pub(crate) struct Node {
    pub ty: String,
    pub format: String,
    pub nullable: bool,
    pub default: Option<Value>,
    pub title: String,
    pub description: String,
    pub properties: BTreeMap<String, Node>,
    pub items: Option<Box<Node>>,
    pub additional: Option<Additional>,
    pub required: Vec<String>,
    pub enum_: Option<Vec<Value>>,
    pub pattern: Option<String>,
    pub regex: Option<Regex>,
    pub maximum: Option<f64>,
    pub exclusive_maximum: bool,
    pub minimum: Option<f64>,
    pub exclusive_minimum: bool,
    pub multiple_of: Option<f64>,
    pub max_length: Option<u64>,
    pub min_length: Option<u64>,
    pub max_items: Option<u64>,
    pub min_items: Option<u64>,
    pub unique_items: bool,
    pub max_properties: Option<u64>,
    pub min_properties: Option<u64>,
    pub all_of: Vec<Node>,
    pub any_of: Vec<Node>,
    pub one_of: Vec<Node>,
    pub not: Option<Box<Node>>,
    pub int_or_string: bool,
    pub preserve_unknown: bool,
    pub embedded: bool,
    pub list_type: Option<String>,
    pub list_map_keys: Vec<String>,
    pub map_type: Option<String>,
    pub rules: Vec<Rule>,
    pub has_external_docs: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    Root,
    Item,
    Field,
}

fn join(path: &str, child: &str) -> String {
    if path.is_empty() {
        child.to_string()
    } else {
        format!("{path}.{child}")
    }
}

fn key(path: &str, k: &str) -> String {
    format!("{path}[{k}]")
}

fn num(v: &Value) -> Option<f64> {
    v.as_f64()
}

fn count(v: &Value) -> Option<u64> {
    v.as_u64()
        .or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
}

/// Parses one node; shape errors of the schema document itself go to `e`.
pub(crate) fn parse_node(v: &Value, path: &str, e: &mut Errs, depth: usize) -> Node {
    let mut n = Node::default();
    let Some(m) = v.as_object() else {
        if !v.is_null() {
            e.invalid(path, v, "must be an object");
        }
        return n;
    };
    if depth > MAX_DEPTH {
        e.forbidden(
            path,
            &format!("must not be nested deeper than {MAX_DEPTH} levels"),
        );
        return n;
    }
    let s = |k: &str| m.get(k).and_then(Value::as_str).map(str::to_string);
    let b = |k: &str| m.get(k).and_then(Value::as_bool).unwrap_or(false);
    n.ty = s("type").unwrap_or_default();
    // specStandardValidatorV3: what OpenAPI v3 has but CRD schemas do not support.
    if s("id").is_some_and(|x| !x.is_empty()) {
        e.forbidden(&join(path, "id"), "id is not supported");
    }
    for (k, what) in [
        ("additionalItems", "additionalItems is not supported"),
        ("patternProperties", "patternProperties is not supported"),
        ("definitions", "definitions is not supported"),
        ("dependencies", "dependencies is not supported"),
        ("$ref", "$ref is not supported"),
    ] {
        let present = match m.get(k) {
            None | Some(Value::Null) => false,
            Some(Value::Object(o)) => {
                !o.is_empty() || k == "additionalItems" || k == "dependencies"
            }
            Some(_) => true,
        };
        if present {
            e.forbidden(&join(path, k), what);
        }
    }
    if n.ty == "null" {
        e.forbidden(
            &join(path, "type"),
            "type cannot be set to null, use nullable as an alternative",
        );
    }
    if m.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(false)) {
        e.invalid(
            &join(path, "x-kubernetes-preserve-unknown-fields"),
            &Value::Bool(false),
            "must be true or undefined",
        );
    }
    n.format = s("format").unwrap_or_default();
    n.title = s("title").unwrap_or_default();
    n.description = s("description").unwrap_or_default();
    n.nullable = b("nullable");
    n.default = m.get("default").cloned();
    n.has_external_docs = m.get("externalDocs").is_some_and(|d| !d.is_null());
    if let Some(props) = m.get("properties").and_then(Value::as_object) {
        for (k, p) in props {
            let child = parse_node(p, &key(&join(path, "properties"), k), e, depth + 1);
            n.properties.insert(k.clone(), child);
        }
    }
    if let Some(items) = m.get("items") {
        if items.is_array() {
            e.forbidden(
                &join(path, "items"),
                "items must be a schema object and not an array",
            );
        } else if !items.is_null() {
            n.items = Some(Box::new(parse_node(
                items,
                &join(path, "items"),
                e,
                depth + 1,
            )));
        }
    }
    match m.get("additionalProperties") {
        Some(Value::Bool(x)) => n.additional = Some(Additional::Bool(*x)),
        Some(ap @ Value::Object(_)) => {
            n.additional = Some(Additional::Schema(Box::new(parse_node(
                ap,
                &join(path, "additionalProperties"),
                e,
                depth + 1,
            ))))
        }
        _ => {}
    }
    if let Some(req) = m.get("required").and_then(Value::as_array) {
        n.required = req
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect();
    }
    n.enum_ = m.get("enum").and_then(Value::as_array).cloned();
    if let Some(p) = s("pattern").filter(|p| !p.is_empty()) {
        match Regex::new(&p) {
            Ok(r) => n.regex = Some(r),
            Err(err) => e.invalid(
                &join(path, "pattern"),
                &Value::String(p.clone()),
                &format!("must be a valid regular expression, but isn't: {err}"),
            ),
        }
        n.pattern = Some(p);
    }
    n.maximum = m.get("maximum").and_then(num);
    n.minimum = m.get("minimum").and_then(num);
    n.exclusive_maximum = b("exclusiveMaximum");
    n.exclusive_minimum = b("exclusiveMinimum");
    n.multiple_of = m.get("multipleOf").and_then(num);
    n.max_length = m.get("maxLength").and_then(count);
    n.min_length = m.get("minLength").and_then(count);
    n.max_items = m.get("maxItems").and_then(count);
    n.min_items = m.get("minItems").and_then(count);
    n.unique_items = b("uniqueItems");
    n.max_properties = m.get("maxProperties").and_then(count);
    n.min_properties = m.get("minProperties").and_then(count);
    for (k, out) in [
        ("allOf", &mut n.all_of),
        ("anyOf", &mut n.any_of),
        ("oneOf", &mut n.one_of),
    ] {
        if let Some(list) = m.get(k).and_then(Value::as_array) {
            for (i, sub) in list.iter().enumerate() {
                out.push(parse_node(
                    sub,
                    &format!("{}[{i}]", join(path, k)),
                    e,
                    depth + 1,
                ));
            }
        }
    }
    if let Some(not) = m.get("not").filter(|x| x.is_object()) {
        n.not = Some(Box::new(parse_node(not, &join(path, "not"), e, depth + 1)));
    }
    n.int_or_string = b("x-kubernetes-int-or-string");
    n.preserve_unknown = b("x-kubernetes-preserve-unknown-fields");
    n.embedded = b("x-kubernetes-embedded-resource");
    n.list_type = s("x-kubernetes-list-type");
    n.map_type = s("x-kubernetes-map-type");
    if let Some(keys) = m
        .get("x-kubernetes-list-map-keys")
        .and_then(Value::as_array)
    {
        n.list_map_keys = keys
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect();
    }
    if let Some(rules) = m.get("x-kubernetes-validations").and_then(Value::as_array) {
        for (i, r) in rules.iter().enumerate() {
            let rs = |k: &str| r.get(k).and_then(Value::as_str).map(str::to_string);
            let rule = Rule {
                rule: rs("rule").unwrap_or_default(),
                message: rs("message").filter(|x| !x.is_empty()),
                message_expression: rs("messageExpression").filter(|x| !x.is_empty()),
                reason: rs("reason").filter(|x| !x.is_empty()),
                field_path: rs("fieldPath").filter(|x| !x.is_empty()),
                optional_old_self: r
                    .get("optionalOldSelf")
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
            };
            let f = format!("{}[{i}]", join(path, "x-kubernetes-validations"));
            let raw_msg = r.get("message").and_then(Value::as_str).unwrap_or("");
            let msg_field = join(&f, "message");
            let multiline = |x: &str| x.contains(['\n', '\r']);
            if rule.rule.trim().is_empty() {
                e.required(&join(&f, "rule"), "rule is not specified");
            } else if !raw_msg.is_empty() && raw_msg.trim().is_empty() {
                e.invalid_str(
                    &msg_field,
                    raw_msg,
                    "message must be non-empty if specified",
                );
            } else if multiline(raw_msg.trim()) {
                e.invalid_str(&msg_field, raw_msg, "message must not contain line breaks");
            } else if multiline(rule.rule.trim()) && raw_msg.trim().is_empty() {
                e.required(
                    &msg_field,
                    "message must be specified if rule contains line breaks",
                );
            }
            if let Some(reason) = &rule.reason {
                const REASONS: &[&str] = &[
                    "FieldValueDuplicate",
                    "FieldValueForbidden",
                    "FieldValueInvalid",
                    "FieldValueRequired",
                ];
                if !REASONS.contains(&reason.as_str()) {
                    e.not_supported(&join(&f, "reason"), reason, REASONS);
                }
            }
            n.rules.push(rule);
        }
    }
    n
}

/// The structural invariants (upstream `validateStructuralInvariants`) and the CRD API rules
/// on a single schema (`ValidateCustomResourceDefinitionOpenAPISchema`).
pub(crate) fn check(n: &Node, raw: &Value, prefix: &str, e: &mut Errs) {
    invariants(n, raw, Level::Root, "", e, 0);
    let shown = |p: &str| match (prefix.is_empty(), p.is_empty()) {
        (true, _) => p.to_string(),
        (false, true) => prefix.to_string(),
        (false, false) if p.starts_with('[') => format!("{prefix}{p}"),
        (false, false) => format!("{prefix}.{p}"),
    };
    vv_complete(n, Some(n), "", "", &shown, e, 0);
}

/// `validateStructuralCompleteness` (upstream checks the root's value validations): every
/// field or array named under allOf/anyOf/oneOf/not must also be specified structurally.
fn vv_complete(
    v: &Node,
    s: Option<&Node>,
    s_path: &str,
    v_path: &str,
    shown: &dyn Fn(&str) -> String,
    e: &mut Errs,
    d: usize,
) {
    if d > MAX_DEPTH {
        return;
    }
    let Some(s) = s else {
        e.required(
            s_path,
            &format!("because it is defined in {}", shown(v_path)),
        );
        return;
    };
    if let Some(not) = &v.not {
        nested_complete(not, Some(s), s_path, &join(v_path, "not"), shown, e, d + 1);
    }
    for (k, list) in [
        ("allOf", &v.all_of),
        ("anyOf", &v.any_of),
        ("oneOf", &v.one_of),
    ] {
        for (i, sub) in list.iter().enumerate() {
            let vp = format!("{}[{i}]", join(v_path, k));
            nested_complete(sub, Some(s), s_path, &vp, shown, e, d + 1);
        }
    }
}

fn nested_complete(
    v: &Node,
    s: Option<&Node>,
    s_path: &str,
    v_path: &str,
    shown: &dyn Fn(&str) -> String,
    e: &mut Errs,
    d: usize,
) {
    if d > MAX_DEPTH {
        return;
    }
    let Some(s) = s else {
        e.required(
            s_path,
            &format!("because it is defined in {}", shown(v_path)),
        );
        return;
    };
    vv_complete(v, Some(s), s_path, v_path, shown, e, d + 1);
    if let Some(items) = &v.items {
        nested_complete(
            items,
            s.items.as_deref(),
            &join(s_path, "items"),
            &join(v_path, "items"),
            shown,
            e,
            d + 1,
        );
    }
    for (k, vf) in &v.properties {
        let sp = key(&join(s_path, "properties"), k);
        let vp = key(&join(v_path, "properties"), k);
        match s.properties.get(k) {
            Some(sf) => nested_complete(vf, Some(sf), &sp, &vp, shown, e, d + 1),
            None => e.required(&sp, &format!("because it is defined in {}", shown(&vp))),
        }
    }
}

fn is_int_or_string_any_of(list: &[Node]) -> bool {
    list.len() == 2 && list[0].ty == "integer" && list[1].ty == "string"
}

fn invariants(n: &Node, raw: &Value, lvl: Level, path: &str, e: &mut Errs, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    if n.ty == "array" && n.items.is_none() {
        e.required(&join(path, "items"), "must be specified");
    }
    if let Some(items) = &n.items {
        let r = raw.get("items").unwrap_or(&Value::Null);
        invariants(items, r, Level::Item, &join(path, "items"), e, depth + 1);
    }
    for (k, p) in &n.properties {
        let r = raw.pointer(&format!(
            "/properties/{}",
            k.replace('~', "~0").replace('/', "~1")
        ));
        invariants(
            p,
            r.unwrap_or(&Value::Null),
            Level::Field,
            &key(&join(path, "properties"), k),
            e,
            depth + 1,
        );
    }
    if let Some(ap) = &n.additional {
        if lvl == Level::Root {
            e.forbidden(
                &join(path, "additionalProperties"),
                "must not be used at the root",
            );
        }
        if let Additional::Schema(s) = ap {
            let r = raw.get("additionalProperties").unwrap_or(&Value::Null);
            invariants(
                s,
                r,
                Level::Field,
                &join(path, "additionalProperties"),
                e,
                depth + 1,
            );
        }
        // Upstream's API validation: properties are for structs, additionalProperties for maps.
        let restricts = matches!(ap, Additional::Schema(_) | Additional::Bool(false));
        if !n.properties.is_empty() && restricts {
            e.forbidden(
                &join(path, "additionalProperties"),
                "additionalProperties and properties are mutual exclusive",
            );
        }
    }
    if n.int_or_string && n.preserve_unknown {
        e.invalid(
            &join(path, "x-kubernetes-preserve-unknown-fields"),
            &Value::Bool(true),
            "must be false if x-kubernetes-int-or-string is true",
        );
    }
    if n.int_or_string && n.embedded {
        e.invalid(
            &join(path, "x-kubernetes-embedded-resource"),
            &Value::Bool(true),
            "must be false if x-kubernetes-int-or-string is true",
        );
    }
    let skip_any_of = is_int_or_string_any_of(&n.any_of);
    let skip_first_all_of_any_of = n
        .all_of
        .first()
        .is_some_and(|a| is_int_or_string_any_of(&a.any_of));
    value_validation(n, skip_any_of, skip_first_all_of_any_of, path, e, depth);

    let check_metadata = lvl == Level::Root || n.embedded;
    if n.embedded && n.ty != "object" {
        if n.ty.is_empty() {
            e.required(
                &join(path, "type"),
                "must be object if x-kubernetes-embedded-resource is true",
            );
        } else {
            e.invalid_str(
                &join(path, "type"),
                &n.ty,
                "must be object if x-kubernetes-embedded-resource is true",
            );
        }
    } else if n.ty.is_empty() && !n.int_or_string && !n.preserve_unknown {
        let detail = match lvl {
            Level::Root => "must not be empty at the root",
            Level::Item => "must not be empty for specified array items",
            Level::Field => "must not be empty for specified object fields",
        };
        e.required(&join(path, "type"), detail);
    }
    if n.embedded && n.additional.is_some() {
        e.forbidden(
            &join(path, "additionalProperties"),
            "must not be used if x-kubernetes-embedded-resource is set",
        );
    }
    if lvl == Level::Root && !n.ty.is_empty() && n.ty != "object" {
        e.invalid_str(&join(path, "type"), &n.ty, "must be object at the root");
    }
    if check_metadata {
        for k in ["kind", "apiVersion"] {
            if let Some(p) = n.properties.get(k) {
                if p.ty != "string" {
                    e.invalid_str(
                        &join(&key(&join(path, "properties"), k), "type"),
                        &p.ty,
                        "must be string",
                    );
                }
            }
        }
    }
    if let Some(meta) = n.properties.get("metadata") {
        let mp = key(&join(path, "properties"), "metadata");
        if check_metadata && meta.ty != "object" {
            e.invalid_str(&join(&mp, "type"), &meta.ty, "must be object");
        }
        if lvl == Level::Root && !metadata_only_names(meta) {
            e.forbidden(
                &mp,
                "must not specify anything other than name and generateName, but metadata is implicitly specified",
            );
        }
    }
    if check_metadata {
        for k in ["apiVersion", "kind", "metadata"] {
            if let Some(p) = n.properties.get(k) {
                let kp = key(&join(path, "properties"), k);
                resource_meta(p, &kp, (lvl == Level::Root).then_some(k), e, depth + 1);
            }
        }
    }
    if n.embedded && !n.preserve_unknown && n.properties.is_empty() {
        e.required(
            &join(path, "properties"),
            "must not be empty if x-kubernetes-embedded-resource is true without x-kubernetes-preserve-unknown-fields",
        );
    }
    api_rules(n, path, e);
}

/// Inside TypeMeta/ObjectMeta schemas: no embedded resources, and no defaults at the top level.
fn resource_meta(n: &Node, path: &str, top: Option<&str>, e: &mut Errs, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    if let (Some(k), Some(_)) = (top, &n.default) {
        e.forbidden(
            &join(path, "default"),
            &format!("must not be set in top-level {k}"),
        );
    }
    if n.embedded {
        e.forbidden(
            &join(path, "x-kubernetes-embedded-resource"),
            "must not be used inside of resource meta",
        );
    }
    for (k, p) in &n.properties {
        resource_meta(p, &key(&join(path, "properties"), k), top, e, depth + 1);
    }
    if let Some(items) = &n.items {
        resource_meta(items, &join(path, "items"), top, e, depth + 1);
    }
    if let Some(Additional::Schema(s)) = &n.additional {
        resource_meta(s, &join(path, "additionalProperties"), top, e, depth + 1);
    }
}

/// Root `metadata` may only restrict `name` and `generateName` (and say `type: object`).
fn metadata_only_names(m: &Node) -> bool {
    let props_ok = m
        .properties
        .keys()
        .all(|k| k == "name" || k == "generateName");
    props_ok
        && m.items.is_none()
        && m.additional.is_none()
        && m.required.is_empty()
        && m.enum_.is_none()
        && m.pattern.is_none()
        && m.min_properties.is_none()
        && m.max_properties.is_none()
        && m.all_of.is_empty()
        && m.any_of.is_empty()
        && m.one_of.is_empty()
        && m.not.is_none()
        && !m.nullable
        && !m.int_or_string
        && !m.preserve_unknown
        && !m.embedded
        && m.rules.is_empty()
        && m.format.is_empty()
        && m.title.is_empty()
        && m.description.is_empty()
}

/// `validateValueValidation`: what may appear under allOf/anyOf/oneOf/not.
fn value_validation(
    n: &Node,
    skip_any_of: bool,
    skip_first: bool,
    path: &str,
    e: &mut Errs,
    d: usize,
) {
    if !skip_any_of {
        for (i, s) in n.any_of.iter().enumerate() {
            nested(s, false, &format!("{}[{i}]", join(path, "anyOf")), e, d + 1);
        }
    }
    for (i, s) in n.all_of.iter().enumerate() {
        let skip = skip_first && i == 0;
        nested(s, skip, &format!("{}[{i}]", join(path, "allOf")), e, d + 1);
    }
    for (i, s) in n.one_of.iter().enumerate() {
        nested(s, false, &format!("{}[{i}]", join(path, "oneOf")), e, d + 1);
    }
    if let Some(s) = &n.not {
        nested(s, false, &join(path, "not"), e, d + 1);
    }
}

fn nested(n: &Node, skip_any_of: bool, path: &str, e: &mut Errs, d: usize) {
    if d > MAX_DEPTH {
        return;
    }
    let skip_first = n
        .all_of
        .first()
        .is_some_and(|a| is_int_or_string_any_of(&a.any_of));
    value_validation(n, skip_any_of, skip_first, path, e, d);
    if let Some(items) = &n.items {
        nested(items, false, &join(path, "items"), e, d + 1);
    }
    for (k, p) in &n.properties {
        nested(p, false, &key(&join(path, "properties"), k), e, d + 1);
    }
    if !n.ty.is_empty() {
        e.forbidden(&join(path, "type"), "must be empty to be structural");
    }
    if n.additional.is_some() {
        e.forbidden(
            &join(path, "additionalProperties"),
            "must be undefined to be structural",
        );
    }
    let forbid = |e: &mut Errs, cond: bool, k: &str, msg: &str| {
        if cond {
            e.forbidden(&join(path, k), msg);
        }
    };
    forbid(
        e,
        n.default.is_some(),
        "default",
        "must be undefined to be structural",
    );
    forbid(
        e,
        !n.title.is_empty(),
        "title",
        "must be empty to be structural",
    );
    forbid(
        e,
        !n.description.is_empty(),
        "description",
        "must be empty to be structural",
    );
    forbid(e, n.nullable, "nullable", "must be false to be structural");
    forbid(
        e,
        n.has_external_docs,
        "externalDocs",
        "must be undefined to be structural",
    );
    forbid(
        e,
        n.preserve_unknown,
        "x-kubernetes-preserve-unknown-fields",
        "must be false to be structural",
    );
    forbid(
        e,
        n.embedded,
        "x-kubernetes-embedded-resource",
        "must be false to be structural",
    );
    forbid(
        e,
        n.int_or_string,
        "x-kubernetes-int-or-string",
        "must be false to be structural",
    );
    forbid(
        e,
        !n.list_map_keys.is_empty(),
        "x-kubernetes-list-map-keys",
        "must be empty to be structural",
    );
    forbid(
        e,
        n.list_type.is_some(),
        "x-kubernetes-list-type",
        "must be undefined to be structural",
    );
    forbid(
        e,
        n.map_type.is_some(),
        "x-kubernetes-map-type",
        "must be undefined to be structural",
    );
    forbid(
        e,
        !n.rules.is_empty(),
        "x-kubernetes-validations",
        "must be empty to be structural",
    );
    if n.properties.contains_key("metadata") {
        e.forbidden(
            &key(&join(path, "properties"), "metadata"),
            "must not be specified in a nested context",
        );
    }
}

/// The CRD API's own rules on one node (uniqueItems, list and map types, defaults' shape).
fn api_rules(n: &Node, path: &str, e: &mut Errs) {
    if n.unique_items {
        e.forbidden(
            &join(path, "uniqueItems"),
            "uniqueItems cannot be set to true since the runtime complexity becomes quadratic",
        );
    }
    if !n.ty.is_empty()
        && !["array", "boolean", "integer", "number", "object", "string"].contains(&n.ty.as_str())
    {
        e.not_supported(
            &join(path, "type"),
            &n.ty,
            &["array", "boolean", "integer", "number", "object", "string"],
        );
    }
    if let Some(mt) = &n.map_type {
        if mt != "granular" && mt != "atomic" {
            e.not_supported(
                &join(path, "x-kubernetes-map-type"),
                mt,
                &["granular", "atomic"],
            );
        } else if n.ty != "object" {
            e.invalid_str(
                &join(path, "type"),
                &n.ty,
                "must be object if x-kubernetes-map-type is specified",
            );
        }
    }
    if let Some(lt) = &n.list_type {
        const MSG: &str = "must be array if x-kubernetes-list-type is specified";
        if n.ty.is_empty() {
            e.required(&join(path, "type"), MSG);
        } else if n.ty != "array" {
            e.invalid_str(&join(path, "type"), &n.ty, MSG);
        }
        if !["atomic", "set", "map"].contains(&lt.as_str()) {
            e.not_supported(
                &join(path, "x-kubernetes-list-type"),
                lt,
                &["atomic", "set", "map"],
            );
        }
    }
    let lt = n.list_type.as_deref();
    if !n.list_map_keys.is_empty() {
        match lt {
            None => e.required(
                &join(path, "x-kubernetes-list-type"),
                "must be map if x-kubernetes-list-map-keys is non-empty",
            ),
            Some("map") => {}
            Some(other) => e.invalid_str(
                &join(path, "x-kubernetes-list-type"),
                other,
                "must be map if x-kubernetes-list-map-keys is non-empty",
            ),
        }
    }
    let keys_value = || {
        let list: Vec<String> = n.list_map_keys.iter().map(|k| format!("{k:?}")).collect();
        format!("[]string{{{}}}", list.join(", "))
    };
    if lt == Some("map") {
        if n.list_map_keys.is_empty() {
            e.required(
                &join(path, "x-kubernetes-list-map-keys"),
                "must not be empty if x-kubernetes-list-type is map",
            );
        }
        match &n.items {
            None => e.required(
                &join(path, "items"),
                "must have a schema if x-kubernetes-list-type is map",
            ),
            Some(items) if items.ty != "object" => e.invalid_str(
                &join(&join(path, "items"), "type"),
                &items.ty,
                "must be object if parent array's x-kubernetes-list-type is map",
            ),
            Some(items) => {
                let ip = join(path, "items");
                let mut seen = std::collections::HashSet::new();
                for k in &n.list_map_keys {
                    let kp = key(&join(&ip, "properties"), k);
                    match items.properties.get(k) {
                        Some(p) if p.ty == "array" || p.ty == "object" => e.invalid_str(
                            &join(&kp, "type"),
                            &items.ty,
                            "must be a scalar type if parent array's x-kubernetes-list-type is map",
                        ),
                        Some(_) => {}
                        None => e.push(
                            "FieldValueInvalid",
                            &join(path, "x-kubernetes-list-map-keys"),
                            format!(
                                "Invalid value: {}: entries must all be names of item properties",
                                keys_value()
                            ),
                        ),
                    }
                    if !seen.insert(k) {
                        e.push(
                            "FieldValueInvalid",
                            &join(path, "x-kubernetes-list-map-keys"),
                            format!(
                                "Invalid value: {}: must not contain duplicate entries",
                                keys_value()
                            ),
                        );
                    }
                    // validateMapListKeysMapSet: keys are required or defaulted, never null.
                    if let Some(p) = items.properties.get(k) {
                        if !items.required.contains(k) && p.default.is_none() {
                            e.required(
                                &join(&kp, "default"),
                                "this property is in x-kubernetes-list-map-keys, so it must have a default or be a required property",
                            );
                        }
                        if p.nullable {
                            e.forbidden(
                                &join(&kp, "nullable"),
                                "this property is in x-kubernetes-list-map-keys, so it cannot be nullable",
                            );
                        }
                    }
                }
            }
        }
    }
    if let (Some(l @ ("set" | "map")), Some(items)) = (lt, &n.items) {
        if items.nullable {
            e.forbidden(
                &join(&join(path, "items"), "nullable"),
                &format!("cannot be nullable when x-kubernetes-list-type is {l}"),
            );
        }
    }
    if lt == Some("set") {
        if let Some(items) = &n.items {
            let ip = join(path, "items");
            let opt = |v: &Option<String>| v.clone().map_or(Value::Null, Value::String);
            match items.ty.as_str() {
                "array" if items.list_type.as_deref().is_some_and(|t| t != "atomic") => e.invalid(
                    &join(&ip, "x-kubernetes-list-type"),
                    &opt(&items.list_type),
                    "must be atomic as item of a list with x-kubernetes-list-type=set",
                ),
                "object" if items.map_type.as_deref() != Some("atomic") => e.invalid(
                    &join(&ip, "x-kubernetes-map-type"),
                    &opt(&items.list_type),
                    "must be atomic as item of a list with x-kubernetes-list-type=set",
                ),
                _ => {}
            }
        }
    }
    if let Some(d) = &n.default {
        if d.is_null() && !n.nullable {
            e.invalid(
                &join(path, "default"),
                d,
                "must not be null for non-nullable fields",
            );
        }
    }
}

/// `Invalid value: …` text as field.Invalid prints a JSON value.
pub(crate) fn shown(v: &Value) -> String {
    go_value(v)
}
