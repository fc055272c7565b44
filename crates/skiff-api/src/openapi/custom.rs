//! Custom kinds (CRD versions) in the OpenAPI documents, as apiextensions-apiserver's builder
//! publishes them: the version's schema as the definition `<reversed group>.<version>.<Kind>`
//! with `apiVersion`/`kind` from TypeMeta and `metadata` a `$ref` to ObjectMeta, the list kind,
//! `x-kubernetes-group-version-kind` on both. For v2 the schema is first reduced to what
//! Swagger 2.0 and kubectl's v2 model parser accept (`to_v2`).

use serde_json::{json, Map, Value};

use super::CustomKind;

pub(super) const API_VERSION_DESC: &str = "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources";
pub(super) const KIND_DESC: &str = "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds";
const EMBEDDED_API_VERSION_DESC: &str = "apiVersion defines the versioned schema of this representation of an object. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources";
const EMBEDDED_KIND_DESC: &str = "kind is a string value representing the type of this object. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds";
const METADATA_DESC: &str = "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";
const LIST_METADATA_DESC: &str = "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds";
pub(super) const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
pub(super) const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";

/// Custom resources take no strategic merge patch (the API server answers 415): their PATCH
/// operations list only JSON patch, merge patch and apply, as upstream's CRD builder publishes
/// them. kubectl reads this (v3 `requestBody.content`, v2 `consumes`) to choose a merge patch
/// for `kubectl apply`.
pub(super) fn without_strategic_merge(paths: &mut Map<String, Value>, info: &crate::ResourceInfo) {
    const SMP: &str = "application/strategic-merge-patch+json";
    let prefix = format!("/apis/{}/{}/", info.group, info.version);
    let plural = format!("/{}", info.plural);
    for (path, ops) in paths.iter_mut() {
        if !path.starts_with(&prefix) || !path.contains(&plural) {
            continue;
        }
        let Some(patch) = ops.get_mut("patch") else {
            continue;
        };
        if let Some(types) = patch.get_mut("consumes").and_then(Value::as_array_mut) {
            types.retain(|t| t != SMP);
        }
        if let Some(content) = patch
            .pointer_mut("/requestBody/content")
            .and_then(Value::as_object_mut)
        {
            content.remove(SMP);
        }
    }
}

/// `example.com`, `v1`, `Widget` → `com.example.v1.Widget`.
pub fn definition_name(group: &str, version: &str, kind: &str) -> String {
    let reversed: Vec<&str> = group.split('.').rev().collect();
    format!("{}.{version}.{kind}", reversed.join("."))
}

fn prefix(v2: bool) -> &'static str {
    if v2 {
        super::v2::DEFS
    } else {
        "#/components/schemas/"
    }
}

fn reference(def: &str, v2: bool, description: &str) -> Value {
    let r = format!("{}{def}", prefix(v2));
    if v2 {
        json!({"$ref": r, "description": description})
    } else {
        // OpenAPI 3.0 ignores `$ref` siblings; upstream wraps the reference.
        json!({"allOf": [{"$ref": r}], "description": description})
    }
}

fn is_true(o: &Map<String, Value>, k: &str) -> bool {
    o.get(k).and_then(Value::as_bool) == Some(true)
}

/// `(name, definition, list name, list definition)` for one custom kind.
pub(super) fn definitions(ck: &CustomKind, v2: bool) -> (String, Value, String, Value) {
    let info = &ck.info;
    let name = definition_name(info.group, info.version, info.kind);
    let gvk = |kind: &str| json!([{"group": info.group, "version": info.version, "kind": kind}]);
    let schema = ck.schema.as_object().filter(|o| !o.is_empty());
    let opaque = match schema {
        None => true,
        Some(o) => v2 && is_true(o, "x-kubernetes-preserve-unknown-fields"),
    };
    let mut def = if opaque {
        // Without properties kubectl accepts any field; with them it would reject unknown ones.
        json!({"type": "object"})
    } else {
        let mut s = ck.schema.clone();
        if v2 {
            to_v2(&mut s);
        }
        if let Some(o) = s.as_object_mut() {
            let props = o
                .entry("properties")
                .or_insert_with(|| json!({}))
                .as_object_mut();
            if let Some(props) = props {
                props.insert(
                    "apiVersion".into(),
                    json!({"type": "string", "description": API_VERSION_DESC}),
                );
                props.insert(
                    "kind".into(),
                    json!({"type": "string", "description": KIND_DESC}),
                );
                props.insert("metadata".into(), reference(OBJECT_META, v2, METADATA_DESC));
                for (_, p) in props.iter_mut() {
                    embedded(p, v2);
                }
            }
        }
        s
    };
    if let Some(o) = def.as_object_mut() {
        o.insert("x-kubernetes-group-version-kind".into(), gvk(info.kind));
    }
    let list_kind = if info.list_kind.is_empty() {
        format!("{}List", info.kind)
    } else {
        info.list_kind.to_string()
    };
    let list_name = definition_name(info.group, info.version, &list_kind);
    let list = json!({
        "description": format!("{list_kind} is a list of {}", info.kind),
        "type": "object",
        "required": ["items"],
        "properties": {
            "apiVersion": {"type": "string", "description": API_VERSION_DESC},
            "items": {
                "description": format!("List of {}. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md", info.plural),
                "type": "array",
                "items": {"$ref": format!("{}{name}", prefix(v2))},
            },
            "kind": {"type": "string", "description": KIND_DESC},
            "metadata": reference(LIST_META, v2, LIST_METADATA_DESC),
        },
        "x-kubernetes-group-version-kind": gvk(&list_kind),
    });
    (name, def, list_name, list)
}

/// `x-kubernetes-embedded-resource` objects get apiVersion, kind and metadata like the root
/// (not in v2 where they also preserve unknown fields: kubectl would then reject the rest).
fn embedded(s: &mut Value, v2: bool) {
    let Some(o) = s.as_object_mut() else {
        return;
    };
    if let Some(Value::Object(props)) = o.get_mut("properties") {
        for (_, p) in props.iter_mut() {
            embedded(p, v2);
        }
    }
    for k in ["items", "additionalProperties"] {
        if let Some(sub) = o.get_mut(k) {
            embedded(sub, v2);
        }
    }
    if v2 && is_true(o, "x-kubernetes-preserve-unknown-fields") {
        return;
    }
    if !is_true(o, "x-kubernetes-embedded-resource") {
        return;
    }
    let props = o
        .entry("properties")
        .or_insert_with(|| json!({}))
        .as_object_mut();
    if let Some(props) = props {
        props.insert(
            "apiVersion".into(),
            json!({"type": "string", "description": EMBEDDED_API_VERSION_DESC}),
        );
        props.insert(
            "kind".into(),
            json!({"type": "string", "description": EMBEDDED_KIND_DESC}),
        );
        props.insert("metadata".into(), reference(OBJECT_META, v2, METADATA_DESC));
    }
    let req = o.entry("required").or_insert_with(|| json!([]));
    if let Some(req) = req.as_array_mut() {
        for k in ["kind", "apiVersion"] {
            if !req.iter().any(|r| r == k) {
                req.push(json!(k));
            }
        }
    }
}

/// Upstream's v2 reduction of a structural schema: junctors dropped; nullable nodes lose
/// their type, items and properties (and are not required by their parent);
/// preserve-unknown-fields nodes lose items and properties; arrays without items lose their
/// type (kubectl's v2 parser rejects both).
pub(super) fn to_v2(s: &mut Value) {
    let Some(o) = s.as_object_mut() else {
        return;
    };
    for k in ["allOf", "oneOf", "anyOf", "not"] {
        o.remove(k);
    }
    if o.remove("nullable").and_then(|v| v.as_bool()) == Some(true) {
        o.remove("type");
        o.remove("items");
        o.remove("properties");
    }
    if is_true(o, "x-kubernetes-preserve-unknown-fields") {
        o.remove("items");
        o.remove("properties");
    }
    if o.get("type").and_then(Value::as_str) == Some("array") && !o.contains_key("items") {
        o.remove("type");
    }
    let mut nullable_props = Vec::new();
    if let Some(Value::Object(props)) = o.get_mut("properties") {
        for (k, p) in props.iter_mut() {
            if p.get("nullable").and_then(Value::as_bool) == Some(true) {
                nullable_props.push(k.clone());
            }
            to_v2(p);
        }
    }
    let nullable_values = o
        .get("additionalProperties")
        .and_then(|a| a.get("nullable"))
        .and_then(Value::as_bool)
        == Some(true);
    if let Some(Value::Array(req)) = o.get_mut("required") {
        if nullable_values {
            req.clear();
        }
        req.retain(|r| !nullable_props.iter().any(|n| r == n));
    }
    if o.get("required")
        .and_then(Value::as_array)
        .is_some_and(Vec::is_empty)
    {
        o.remove("required");
    }
    for k in ["items", "additionalProperties"] {
        if let Some(sub) = o.get_mut(k) {
            to_v2(sub);
        }
    }
}
