//! apiextensions.k8s.io/v1 CustomResourceDefinition: the kind that defines kinds — upstream's
//! defaults (`SetDefaults_CustomResourceDefinition*`), strategy (stored versions), validation
//! (`ValidateCustomResourceDefinition` and `…Update`, structural schemas through
//! [`crate::schema::Schema::parse`]) and `kubectl get crd` table (NAME, CREATED AT).

use serde_json::{json, Map, Value};

use crate::kinds::prelude::*;
use crate::schema::Schema;

pub(crate) const CRD: Kind = Kind {
    info: ResourceInfo {
        group: "apiextensions.k8s.io",
        version: "v1",
        kind: "CustomResourceDefinition",
        list_kind: "CustomResourceDefinitionList",
        plural: "customresourcedefinitions",
        singular: "customresourcedefinition",
        namespaced: false,
        short_names: &["crd", "crds"],
        categories: &["api-extensions"],
        verbs: FULL,
        subresources: &["status"],
    },
    defaults,
    prepare_create,
    prepare_update,
    validate,
    table: Table {
        columns: &[NAME, CREATED_AT],
        cells: |o, _| {
            vec![
                json!(s(o, "/metadata/name")),
                json!(created_at(s(o, "/metadata/creationTimestamp"))),
            ]
        },
        conditions: |_| None,
    },
    ..Kind::BASE
};

/// The default table convertor's second column (what `kubectl get crd` prints).
const CREATED_AT: Col = ("Created At", "date", 0, AGE_DOC);

/// `creationTimestamp` in RFC 3339 UTC (Go's `time.RFC3339`).
fn created_at(t: &str) -> String {
    match parse_time(t) {
        Some(ts) => ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        None => "0001-01-01T00:00:00Z".into(),
    }
}

const API_APPROVAL: &str = "api-approved.kubernetes.io";

/// `SetDefaults_CustomResourceDefinition` and `…Spec`, `SetDefaults_ServiceReference`.
fn defaults(obj: &mut Map<String, Value>) {
    let spec = child(obj, "spec");
    let names = child(spec, "names");
    if let Some(kind) = names
        .get("kind")
        .and_then(Value::as_str)
        .map(str::to_string)
    {
        if names
            .get("singular")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            names.insert("singular".into(), json!(kind.to_lowercase()));
        }
        if !kind.is_empty()
            && names
                .get("listKind")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
        {
            names.insert("listKind".into(), json!(format!("{kind}List")));
        }
    }
    // Only a missing conversion is defaulted (an empty one fails validation upstream too).
    if spec.get("conversion").is_none_or(Value::is_null) {
        spec.insert("conversion".into(), json!({"strategy": "None"}));
    }
    let conversion = child(spec, "conversion");
    if let Some(svc) = conversion
        .get_mut("webhook")
        .and_then(|w| w.get_mut("clientConfig"))
        .and_then(|c| c.get_mut("service"))
        .and_then(Value::as_object_mut)
    {
        default(svc, "port", json!(443));
    }
    let storage = storage_version(&Value::Object(obj.clone()));
    let status = child(obj, "status");
    let stored = status
        .get("storedVersions")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    if !stored {
        if let Some(v) = storage {
            status.insert("storedVersions".into(), json!([v]));
        }
    }
}

fn storage_version(obj: &Value) -> Option<String> {
    arr(obj, "/spec/versions")
        .iter()
        .find(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        .and_then(|v| v.get("name").and_then(Value::as_str))
        .map(str::to_string)
}

/// Adds the storage version to `status.storedVersions` if it is not there yet.
fn record_storage_version(obj: &mut Value) {
    let Some(v) = storage_version(obj) else {
        return;
    };
    let Some(m) = obj.as_object_mut() else {
        return;
    };
    let status = child(m, "status");
    let list = status.entry("storedVersions").or_insert_with(|| json!([]));
    if !list.is_array() {
        *list = json!([]);
    }
    if let Some(a) = list.as_array_mut() {
        if !a.iter().any(|x| x.as_str() == Some(v.as_str())) {
            a.push(json!(v));
        }
    }
}

/// Upstream's create strategy: a fresh status that records the storage version.
fn prepare_create(obj: &mut Value) {
    if let Some(m) = obj.as_object_mut() {
        m.insert("status".into(), json!({}));
    }
    record_storage_version(obj);
}

/// Upstream's update strategy: a new storage version joins `status.storedVersions`.
fn prepare_update(_old: &Value, new: &mut Value) {
    record_storage_version(new);
}

fn established(old: &Value) -> bool {
    arr(old, "/status/conditions")
        .iter()
        .any(|c| s(c, "/type") == "Established" && s(c, "/status") == "True")
}

fn join_errs(errs: Vec<String>) -> String {
    errs.join(",")
}

/// `ValidateCustomResourceDefinition` (+ `…Update` when `old` is given).
fn validate(e: &mut Errs, obj: &Map<String, Value>, old: Option<&Value>) {
    let o = Value::Object(obj.clone());
    let spec = o.get("spec").cloned().unwrap_or(Value::Null);
    let group = s(&spec, "/group");
    let plural = s(&spec, "/names/plural");
    let name = s(&o, "/metadata/name");
    if !name.is_empty() && name != format!("{plural}.{group}") {
        e.invalid_str(
            "metadata.name",
            name,
            "must be spec.names.plural+\".\"+spec.group",
        );
    }
    api_approval(e, &o, old);
    if group.is_empty() {
        e.required("spec.group", "");
    } else if !dns1123_subdomain(group).is_empty() {
        e.invalid_str("spec.group", group, &join_errs(dns1123_subdomain(group)));
    } else if !group.contains('.') {
        e.invalid_str(
            "spec.group",
            group,
            "should be a domain with at least one dot",
        );
    }
    match s(&spec, "/scope") {
        "" => e.required("spec.scope", ""),
        "Cluster" | "Namespaced" => {}
        other => e.not_supported("spec.scope", other, &["Cluster", "Namespaced"]),
    }
    versions(e, &spec);
    for k in ["plural", "singular", "kind", "listKind"] {
        if s(&spec, &format!("/names/{k}")).is_empty() {
            e.required(&format!("spec.names.{k}"), "");
        }
    }
    names(e, spec.get("names"), "spec.names");
    names(
        e,
        o.pointer("/status/acceptedNames"),
        "status.acceptedNames",
    );
    if spec.get("preserveUnknownFields") == Some(&Value::Bool(true)) {
        e.invalid(
            "spec.preserveUnknownFields",
            &Value::Bool(true),
            "cannot set to true, set x-preserve-unknown-fields to true in spec.versions[*].schema instead",
        );
    }
    let strategy = s(&spec, "/conversion/strategy");
    if !strategy.is_empty()
        && strategy != "None"
        && spec.get("preserveUnknownFields") == Some(&Value::Bool(true))
    {
        e.invalid_str(
            "spec.conversion.strategy",
            strategy,
            "must be None if spec.preserveUnknownFields is true",
        );
    }
    conversion(e, spec.get("conversion"));
    stored_versions(e, &o, &spec);
    if let Some(old) = old {
        let old_spec = old.get("spec").cloned().unwrap_or(Value::Null);
        let immutable = |e: &mut Errs, ptr: &str, field: &str| {
            let (n, p) = (s(&spec, ptr), s(&old_spec, ptr));
            if n != p {
                e.invalid_str(field, n, "field is immutable");
            }
        };
        if established(old) {
            immutable(e, "/scope", "spec.scope");
            immutable(e, "/names/kind", "spec.names.kind");
        }
        immutable(e, "/group", "spec.group");
        immutable(e, "/names/plural", "spec.names.plural");
    }
}

/// `ValidateAPIApproval`: groups under k8s.io / kubernetes.io need the approval annotation.
fn api_approval(e: &mut Errs, o: &Value, old: Option<&Value>) {
    let group = s(o, "/spec/group");
    let protected = group == "k8s.io"
        || group.ends_with(".k8s.io")
        || group == "kubernetes.io"
        || group.ends_with(".kubernetes.io");
    if !protected {
        return;
    }
    let state = |obj: &Value| -> (u8, Option<String>) {
        match obj
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(API_APPROVAL))
            .and_then(Value::as_str)
        {
            None => (0, None),
            Some(v) if v.starts_with("unapproved") => (2, Some(v.into())),
            Some(v) if approval_url(v) => (1, Some(v.into())),
            Some(v) => (3, Some(v.into())),
        }
    };
    let (new_state, value) = state(o);
    if old.is_some_and(|old| state(old).0 == new_state) {
        return;
    }
    let field = format!("metadata.annotations[{API_APPROVAL}]");
    match new_state {
        0 => e.required(
            &field,
            "protected groups must have approval annotation \"api-approved.kubernetes.io\", see https://github.com/kubernetes/enhancements/pull/1111",
        ),
        3 => e.invalid_str(
            &field,
            value.as_deref().unwrap_or(""),
            "protected groups must have approval annotation \"api-approved.kubernetes.io\" with either a URL or a reason starting with \"unapproved\", see https://github.com/kubernetes/enhancements/pull/1111",
        ),
        _ => {}
    }
}

fn approval_url(v: &str) -> bool {
    let rest = v
        .strip_prefix("https://")
        .or_else(|| v.strip_prefix("http://"));
    rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/'))
}

fn versions(e: &mut Errs, spec: &Value) {
    let list = arr(spec, "/versions");
    let mut seen = std::collections::HashSet::new();
    let mut unique = true;
    let mut storage = 0;
    for (i, v) in list.iter().enumerate() {
        let f = format!("spec.versions[{i}]");
        let name = s(v, "/name");
        if v.get("storage").and_then(Value::as_bool) == Some(true) {
            storage += 1;
        }
        if !seen.insert(name.to_string()) {
            unique = false;
        }
        let errs = dns1035_label(name);
        if !errs.is_empty() {
            e.invalid_str(&format!("{f}.name"), name, &join_errs(errs));
        }
        version(e, v, &f);
    }
    if !unique {
        e.invalid_omit("spec.versions", "must contain unique version names");
    }
    if storage != 1 {
        e.invalid_omit(
            "spec.versions",
            "must have exactly one version marked as storage version",
        );
    }
}

const COLUMN_TYPES: &str = "must be one of boolean,date,integer,number,string";
const COLUMN_FORMATS: &[&str] = &[
    "byte",
    "date",
    "date-time",
    "double",
    "float",
    "int32",
    "int64",
    "password",
];

/// Fields a root schema may set when the status subresource is enabled (status is validated
/// as `properties.status` alone, so nothing at the root may constrain it).
const ROOT_WITH_STATUS: &[&str] = &[
    "description",
    "type",
    "format",
    "title",
    "maximum",
    "exclusiveMaximum",
    "minimum",
    "exclusiveMinimum",
    "maxLength",
    "minLength",
    "pattern",
    "maxItems",
    "minItems",
    "uniqueItems",
    "multipleOf",
    "required",
    "items",
    "properties",
    "externalDocs",
    "example",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-validations",
];
const ROOT_WITH_STATUS_MSG: &str = "only [Description Type Format Title Maximum ExclusiveMaximum Minimum ExclusiveMinimum MaxLength MinLength Pattern MaxItems MinItems UniqueItems MultipleOf Required Items Properties ExternalDocs Example XPreserveUnknownFields XValidations] fields are allowed at the root of the schema if the status subresource is enabled";

/// A JSON value is "zero" the way Go's reflect.DeepEqual against the zero value sees it.
fn is_zero(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
        // Numbers are pointers in the Go type: any value is set.
        Value::Number(_) => false,
    }
}

/// One version: its schema (required and structural in v1), subresources, columns,
/// selectable fields.
fn version(e: &mut Errs, v: &Value, f: &str) {
    let schema_field = format!("{f}.schema.openAPIV3Schema");
    let parsed = match v.pointer("/schema/openAPIV3Schema") {
        None | Some(Value::Null) => {
            e.required(&schema_field, "schemas are required");
            None
        }
        Some(raw) if status_root_errors(e, v, raw, &schema_field) => None,
        Some(raw) => match Schema::parse_at(raw, &schema_field) {
            Ok(s) => {
                compile_rules(e, &s, &schema_field);
                Some(s)
            }
            Err(causes) => {
                e.0.extend(causes);
                None
            }
        },
    };
    if let Some(w) = v.get("deprecationWarning").and_then(Value::as_str) {
        let wf = format!("{f}.deprecationWarning");
        if v.get("deprecated").and_then(Value::as_bool) != Some(true) {
            e.invalid_str(&wf, w, "can only be set for deprecated versions");
        }
        if w.len() > 256 {
            e.invalid_str(&wf, w, "must be <= 256 characters long");
        }
        if w.is_empty() {
            e.invalid_str(&wf, w, "must not be an empty string");
        }
        if let Some((i, _)) = w.char_indices().find(|(_, c)| c.is_control()) {
            e.invalid_str(
                &wf,
                w,
                &format!("must only contain printable UTF-8 characters; control character found at index {i}"),
            );
        }
    }
    if let Some(sub) = v.get("subresources").filter(|x| !x.is_null()) {
        subresources(e, sub, &format!("{f}.subresources"));
    }
    for (i, c) in arr(v, "/additionalPrinterColumns").iter().enumerate() {
        let cf = format!("{f}.additionalPrinterColumns[{i}]");
        if s(c, "/name").is_empty() {
            e.required(&format!("{cf}.name"), "");
        }
        match s(c, "/type") {
            "" => e.required(&format!("{cf}.type"), COLUMN_TYPES),
            "boolean" | "date" | "integer" | "number" | "string" => {}
            t => e.invalid_str(&format!("{cf}.type"), t, COLUMN_TYPES),
        }
        let format = s(c, "/format");
        if !format.is_empty() && !COLUMN_FORMATS.contains(&format) {
            e.invalid_str(
                &format!("{cf}.format"),
                format,
                &format!("must be one of {}", COLUMN_FORMATS.join(",")),
            );
        }
        // Upstream validates the internal type, whose field is named `JSONPath`.
        let path = s(c, "/jsonPath");
        if path.is_empty() {
            e.required(&format!("{cf}.JSONPath"), "");
        } else {
            simple_json_path(e, path, &format!("{cf}.JSONPath"));
        }
    }
    let fields = arr(v, "/selectableFields");
    if fields.len() > 8 {
        e.too_many(&format!("{f}.selectableFields"), fields.len(), 8);
    }
    let mut seen = std::collections::HashSet::new();
    for (i, sf) in fields.iter().enumerate() {
        let pf = format!("{f}.selectableFields[{i}].jsonPath");
        let path = s(sf, "/jsonPath");
        if path.is_empty() {
            e.required(&pf, "");
            continue;
        }
        if !simple_json_path(e, path, &pf) {
            continue;
        }
        if !seen.insert(path.to_string()) {
            e.duplicate(&pf, path);
        }
        if let Some(schema) = &parsed {
            if !selectable_type_ok(schema, path) {
                e.invalid_str(
                    &pf,
                    path,
                    "selectable field must refer to a field of type string, boolean or integer, or an enum of these types",
                );
            }
        }
    }
}

/// Every `x-kubernetes-validations` rule must compile (when the server registered a
/// compiler): `…x-kubernetes-validations[0].rule: Invalid value: apiextensions.ValidationRule{…}: <detail>`.
fn compile_rules(e: &mut Errs, schema: &Schema, f: &str) {
    let Some(compile) = crate::schema::rule_compiler() else {
        return;
    };
    for (path, rule) in schema.rules() {
        let mut check = |text: &str, field: &str| {
            let probe = crate::schema::Rule {
                rule: text.to_string(),
                ..rule.clone()
            };
            if let Err(detail) = compile(&probe) {
                e.push(
                    "FieldValueInvalid",
                    &format!("{f}.{path}.{field}"),
                    format!("Invalid value: {}: {detail}", crate::schema::go_rule(&rule)),
                );
            }
        };
        if !rule.rule.trim().is_empty() {
            check(&rule.rule, "rule");
        }
        if let Some(me) = &rule.message_expression {
            check(me, "messageExpression");
        }
    }
}

/// The root of a schema with the status subresource: object type, a few fields only.
fn status_root_errors(e: &mut Errs, v: &Value, raw: &Value, f: &str) -> bool {
    if v.pointer("/subresources/status").is_none_or(Value::is_null) {
        return false;
    }
    let Some(m) = raw.as_object() else {
        return false;
    };
    let before = e.0.len();
    for (k, val) in m {
        if is_zero(val) {
            continue;
        }
        if k == "type" {
            if val.as_str() != Some("object") {
                e.invalid(
                    &format!("{f}.type"),
                    val,
                    "only \"object\" is allowed as the type at the root of the schema if the status subresource is enabled",
                );
                break;
            }
            continue;
        }
        if !ROOT_WITH_STATUS.contains(&k.as_str()) {
            e.invalid_omit(f, ROOT_WITH_STATUS_MSG);
            break;
        }
    }
    e.0.len() > before
}

/// Whether a selectable field's path leads to a string, integer or boolean in the schema.
fn selectable_type_ok(schema: &Schema, path: &str) -> bool {
    let mut node = schema.raw();
    for part in path.trim_start_matches('.').split('.') {
        match node.pointer(&format!("/properties/{part}")) {
            Some(n) => node = n,
            None => return false,
        }
    }
    matches!(
        node.get("type").and_then(Value::as_str),
        Some("string" | "integer" | "boolean")
    )
}

/// `validateSimpleJSONPath`: upstream only checks the leading dot (a path the printer cannot
/// follow gives empty cells).
fn simple_json_path(e: &mut Errs, path: &str, field: &str) -> bool {
    if path.is_empty() {
        e.invalid_str(field, path, "must not be empty");
        return false;
    }
    if !path.starts_with('.') {
        e.invalid_str(field, path, "must be a simple json path starting with .");
        return false;
    }
    true
}

fn subresources(e: &mut Errs, sub: &Value, f: &str) {
    let Some(scale) = sub.get("scale").filter(|x| !x.is_null()) else {
        return;
    };
    let sf = format!("{f}.scale");
    let spec_path = s(scale, "/specReplicasPath");
    if spec_path.is_empty() {
        e.required(&format!("{sf}.specReplicasPath"), "");
    } else if simple_json_path(e, spec_path, &format!("{sf}.specReplicasPath"))
        && !spec_path.starts_with(".spec.")
    {
        e.invalid_str(
            &format!("{sf}.specReplicasPath"),
            spec_path,
            "should be a json path under .spec",
        );
    }
    let status_path = s(scale, "/statusReplicasPath");
    if status_path.is_empty() {
        e.required(&format!("{sf}.statusReplicasPath"), "");
    } else if simple_json_path(e, status_path, &format!("{sf}.statusReplicasPath"))
        && !status_path.starts_with(".status.")
    {
        e.invalid_str(
            &format!("{sf}.statusReplicasPath"),
            status_path,
            "should be a json path under .status",
        );
    }
    let selector = s(scale, "/labelSelectorPath");
    if !selector.is_empty()
        && simple_json_path(e, selector, &format!("{sf}.labelSelectorPath"))
        && !selector.starts_with(".spec.")
        && !selector.starts_with(".status.")
    {
        e.invalid_str(
            &format!("{sf}.labelSelectorPath"),
            selector,
            "should be a json path under either .spec or .status",
        );
    }
}

/// `ValidateCustomResourceDefinitionNames`.
fn names(e: &mut Errs, names: Option<&Value>, f: &str) {
    let Some(n) = names.filter(|n| n.is_object()) else {
        return;
    };
    for k in ["plural", "singular"] {
        let v = s(n, &format!("/{k}"));
        let errs = dns1035_label(v);
        if !v.is_empty() && !errs.is_empty() {
            e.invalid_str(&format!("{f}.{k}"), v, &join_errs(errs));
        }
    }
    for k in ["kind", "listKind"] {
        let v = s(n, &format!("/{k}"));
        let errs = dns1035_label(&v.to_lowercase());
        if !v.is_empty() && !errs.is_empty() {
            e.invalid_str(
                &format!("{f}.{k}"),
                v,
                &format!(
                    "may have mixed case, but should otherwise match: {}",
                    join_errs(errs)
                ),
            );
        }
    }
    let kind = s(n, "/kind");
    if !kind.is_empty() && kind == s(n, "/listKind") {
        e.invalid_str(
            &format!("{f}.listKind"),
            kind,
            "kind and listKind may not be the same",
        );
    }
    for key in ["shortNames", "categories"] {
        for (i, v) in arr(n, &format!("/{key}")).iter().enumerate() {
            let v = v.as_str().unwrap_or("");
            let errs = dns1035_label(v);
            if !errs.is_empty() {
                e.invalid_str(&format!("{f}.{key}[{i}]"), v, &join_errs(errs));
            }
        }
    }
}

/// `spec.conversion` as upstream validates its internal form (`webhook.clientConfig` is
/// `webhookClientConfig` there, `webhook.conversionReviewVersions` is
/// `conversionReviewVersions`; the causes use those paths).
fn conversion(e: &mut Errs, c: Option<&Value>) {
    let Some(c) = c.filter(|c| c.is_object()) else {
        return;
    };
    let cc = c.pointer("/webhook/clientConfig").filter(|x| !x.is_null());
    let versions = arr(c, "/webhook/conversionReviewVersions");
    match s(c, "/strategy") {
        "" => e.required("spec.conversion.strategy", ""),
        "Webhook" => {
            match cc {
                None => e.required(
                    "spec.conversion.webhookClientConfig",
                    "required when strategy is set to Webhook",
                ),
                Some(cc) => client_config(e, cc, "spec.conversion.webhookClientConfig"),
            }
            let f = "spec.conversion.conversionReviewVersions";
            if versions.is_empty() {
                e.required(f, "");
            } else {
                let mut seen = std::collections::HashSet::new();
                let mut accepted = false;
                for (i, v) in versions.iter().enumerate() {
                    let v = v.as_str().unwrap_or("");
                    if !seen.insert(v) {
                        e.invalid_str(&format!("{f}[{i}]"), v, "duplicate version");
                        continue;
                    }
                    for m in dns1035_label(v) {
                        e.invalid_str(&format!("{f}[{i}]"), v, &m);
                    }
                    accepted |= v == "v1" || v == "v1beta1";
                }
                if !accepted {
                    let shown: Vec<String> = versions
                        .iter()
                        .map(|v| format!("{:?}", v.as_str().unwrap_or("")))
                        .collect();
                    e.push(
                        "FieldValueInvalid",
                        f,
                        format!(
                            "Invalid value: []string{{{}}}: must include at least one of v1, v1beta1",
                            shown.join(", ")
                        ),
                    );
                }
            }
        }
        "None" => {
            if cc.is_some() {
                e.forbidden(
                    "spec.conversion.webhookClientConfig",
                    "should not be set when strategy is not set to Webhook",
                );
            }
            if !versions.is_empty() {
                e.forbidden(
                    "spec.conversion.conversionReviewVersions",
                    "should not be set when strategy is not set to Webhook",
                );
            }
        }
        other => e.not_supported("spec.conversion.strategy", other, &["None", "Webhook"]),
    }
}

/// A webhook client config: exactly one of `url` (https, no user info/query/fragment) or
/// `service` (namespace, name, port 1–65535, path).
pub(crate) fn client_config(e: &mut Errs, cc: &Value, f: &str) {
    let url = cc.get("url").and_then(Value::as_str);
    let svc = cc.get("service").filter(|s| !s.is_null());
    match (url, svc) {
        (Some(_), Some(_)) | (None, None) => {
            e.required(f, "exactly one of url or service is required")
        }
        (Some(u), None) => {
            let uf = format!("{f}.url");
            let (scheme, rest) = u.split_once("://").unwrap_or(("", u));
            if scheme != "https" {
                e.invalid_str(&uf, scheme, "'https' is the only allowed URL scheme");
            }
            let (rest, fragment) = rest.split_once('#').unwrap_or((rest, ""));
            let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
            let authority = rest.split('/').next().unwrap_or("");
            let (user, host) = match authority.rsplit_once('@') {
                Some((u, h)) => (Some(u), h),
                None => (None, authority),
            };
            if host.is_empty() {
                e.invalid_str(&uf, host, "host must be specified");
            }
            if let Some(user) = user {
                e.invalid_str(&uf, user, "user information is not permitted in the URL");
            }
            if !fragment.is_empty() {
                e.invalid_str(&uf, fragment, "fragments are not permitted in the URL");
            }
            if !query.is_empty() {
                e.invalid_str(&uf, query, "query parameters are not permitted in the URL");
            }
        }
        (None, Some(svc)) => {
            let sf = format!("{f}.service");
            if s(svc, "/name").is_empty() {
                e.required(&format!("{sf}.name"), "service name is required");
            }
            if s(svc, "/namespace").is_empty() {
                e.required(&format!("{sf}.namespace"), "service namespace is required");
            }
            if let Some(p) = svc.get("port").and_then(Value::as_i64) {
                if !(1..=65535).contains(&p) {
                    e.invalid(
                        &format!("{sf}.port"),
                        &Value::from(p),
                        "port is not valid: must be between 1 and 65535, inclusive",
                    );
                }
            }
            let path = s(svc, "/path");
            if !path.is_empty() && !path.starts_with('/') {
                e.invalid_str(&format!("{sf}.path"), path, "must start with a '/'");
            }
        }
    }
}

/// `ValidateCustomResourceDefinitionStoredVersions` (updates).
fn stored_versions(e: &mut Errs, o: &Value, spec: &Value) {
    let stored = arr(o, "/status/storedVersions");
    let f = "status.storedVersions";
    if stored.is_empty() {
        e.invalid_omit(f, "must have at least one stored version");
        return;
    }
    let names: Vec<&str> = arr(spec, "/versions")
        .iter()
        .map(|v| s(v, "/name"))
        .collect();
    for (i, v) in stored.iter().enumerate() {
        let v = v.as_str().unwrap_or("");
        if !names.contains(&v) {
            e.invalid_str(&format!("{f}[{i}]"), v, "must appear in spec.versions");
        }
    }
    if let Some(storage) = storage_version(o) {
        if !stored.iter().any(|v| v.as_str() == Some(storage.as_str())) {
            e.invalid_str(
                f,
                &storage,
                &format!("must have the storage version {storage}"),
            );
        }
    }
}
