//! OpenAPI v2 (Swagger 2.0, JSON and gnostic protobuf) and custom kinds in v2/v3.

use prost::Message as _;
use serde_json::{json, Value};
use skiff_api::openapi::{
    gnostic, v2_for, v2_protobuf, v2_with, v3_document_with, v3_index_with, Cache, CustomKind,
};
use skiff_api::ResourceInfo;

const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

fn served() -> Vec<ResourceInfo> {
    let r = |group, version, kind, plural, namespaced, subresources| ResourceInfo {
        group,
        version,
        kind,
        list_kind: "",
        plural,
        singular: "",
        namespaced,
        short_names: &[],
        categories: &[],
        verbs: VERBS,
        subresources,
    };
    vec![
        r("", "v1", "Pod", "pods", true, &["status"]),
        r("", "v1", "Namespace", "namespaces", false, &[]),
        r(
            "apps",
            "v1",
            "Deployment",
            "deployments",
            true,
            &["status", "scale"],
        ),
        r(
            "autoscaling",
            "v2",
            "HorizontalPodAutoscaler",
            "horizontalpodautoscalers",
            true,
            &[],
        ),
    ]
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("$ref") {
                out.push(r.clone());
            }
            m.values().for_each(|x| collect_refs(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| collect_refs(x, out)),
        _ => {}
    }
}

/// What kube-openapi's v2 model parser (kubectl's `proto.NewOpenAPIData`) rejects: more than
/// one type, arrays without items, references outside `#/definitions/` or to nothing.
fn assert_kubectl_parses(doc: &Value) {
    let defs = doc["definitions"].as_object().expect("definitions");
    fn walk(s: &Value, defs: &serde_json::Map<String, Value>, at: &str) {
        let Some(o) = s.as_object() else { return };
        for k in ["oneOf", "anyOf", "allOf", "not", "nullable"] {
            assert!(!o.contains_key(k), "{at}: {k}");
        }
        assert!(
            !o.get("type").is_some_and(Value::is_array),
            "{at}: type list"
        );
        if o.get("type") == Some(&json!("array")) {
            assert!(
                o.get("items").is_some_and(Value::is_object),
                "{at}: array without items"
            );
        }
        if let Some(r) = o.get("$ref").and_then(Value::as_str) {
            let name = r.strip_prefix("#/definitions/").expect(r);
            assert!(defs.contains_key(name), "{at}: dangling {r}");
        }
        if let Some(Value::Object(p)) = o.get("properties") {
            for (k, v) in p {
                walk(v, defs, &format!("{at}.{k}"));
            }
        }
        for k in ["items", "additionalProperties"] {
            if let Some(v) = o.get(k) {
                walk(v, defs, &format!("{at}[{k}]"));
            }
        }
    }
    for (name, def) in defs {
        walk(def, defs, name);
    }
    let mut refs = Vec::new();
    collect_refs(doc, &mut refs);
    for r in refs {
        let name = r.strip_prefix("#/definitions/").expect(&r);
        assert!(defs.contains_key(name), "dangling {r}");
    }
}

#[test]
fn v2_document_has_upstream_shape() {
    let doc = v2_for(&served());
    assert_eq!(doc["swagger"], "2.0");
    assert_eq!(
        doc["securityDefinitions"]["BearerToken"],
        json!({"description": "Bearer Token authentication", "type": "apiKey", "name": "authorization", "in": "header"})
    );
    let defs = &doc["definitions"];
    let dep = &defs["io.k8s.api.apps.v1.Deployment"];
    assert_eq!(
        dep["x-kubernetes-group-version-kind"],
        json!([{"group": "apps", "version": "v1", "kind": "Deployment"}])
    );
    assert_eq!(
        dep["properties"]["metadata"]["$ref"],
        "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    );
    // A `$ref` keeps its description next to it, as upstream's v2 has it.
    assert!(dep["properties"]["metadata"]["description"].is_string());
    assert!(dep.get("required").is_none(), "metadata is not required");
    let containers = &defs["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
    assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
    assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
    assert_eq!(containers["x-kubernetes-list-type"], "map");
    assert_eq!(
        defs["io.k8s.apimachinery.pkg.util.intstr.IntOrString"],
        json!({
            "description": defs["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]["description"],
            "type": "string",
            "format": "int-or-string",
        })
    );
    assert_eq!(
        defs["io.k8s.apimachinery.pkg.api.resource.Quantity"]["type"],
        "string"
    );
    // Both autoscaling versions are not served here; only v2 has a GVK.
    assert!(defs["io.k8s.api.autoscaling.v2.HorizontalPodAutoscaler"]
        ["x-kubernetes-group-version-kind"]
        .is_array());
    let list = &defs["io.k8s.api.apps.v1.DeploymentList"];
    assert_eq!(
        list["x-kubernetes-group-version-kind"],
        json!([{"group": "apps", "version": "v1", "kind": "DeploymentList"}])
    );
    assert_eq!(
        list["properties"]["items"]["items"]["$ref"],
        "#/definitions/io.k8s.api.apps.v1.Deployment"
    );
    assert_kubectl_parses(&doc);

    let paths = &doc["paths"];
    let item = &paths["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"];
    let patch = &item["patch"];
    assert_eq!(patch["x-kubernetes-action"], "patch");
    assert_eq!(patch["operationId"], "patchAppsV1NamespacedDeployment");
    assert_eq!(
        patch["x-kubernetes-group-version-kind"],
        json!({"group": "apps", "version": "v1", "kind": "Deployment"})
    );
    let params = patch["parameters"].as_array().expect("params");
    assert!(params
        .iter()
        .any(|p| p["name"] == "fieldValidation" && p["in"] == "query" && p["type"] == "string"));
    assert!(params.iter().any(|p| p["in"] == "body"));
    assert!(patch["consumes"]
        .as_array()
        .unwrap()
        .contains(&json!("application/strategic-merge-patch+json")));
    assert_eq!(item["get"]["x-kubernetes-action"], "get");
    assert_eq!(item["delete"]["x-kubernetes-action"], "delete");
    assert_eq!(item["parameters"][0]["name"], "name");
    assert_eq!(item["parameters"][1]["name"], "namespace");
    let coll = &paths["/apis/apps/v1/namespaces/{namespace}/deployments"];
    assert_eq!(coll["get"]["x-kubernetes-action"], "list");
    assert_eq!(coll["post"]["x-kubernetes-action"], "post");
    assert_eq!(coll["delete"]["x-kubernetes-action"], "deletecollection");
    let scale = &paths["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"];
    assert_eq!(
        scale["patch"]["x-kubernetes-group-version-kind"],
        json!({"group": "autoscaling", "version": "v1", "kind": "Scale"})
    );
    assert_eq!(
        paths["/api/v1/namespaces/{name}"]["get"]["operationId"],
        "readCoreV1Namespace"
    );
    assert!(paths["/api/v1/namespaces/{namespace}/pods/{name}/status"]["put"].is_object());
}

#[test]
fn served_v2_document_is_parseable_and_cached() {
    let doc = v2_with(&[]);
    assert_kubectl_parses(&doc);
    assert!(doc["definitions"].as_object().unwrap().len() > 300);
    let start = std::time::Instant::now();
    let again = v2_with(&[]);
    assert_eq!(doc, again);
    // The built-in part is built once; a copy is cheap.
    assert!(start.elapsed() < std::time::Duration::from_secs(2));
}

fn yaml(a: &Option<gnostic::Any>) -> Value {
    serde_norway::from_str(&a.as_ref().expect("any").yaml).expect("yaml")
}

#[test]
fn v2_protobuf_round_trips_through_gnostic_messages() {
    let doc = v2_for(&served());
    let bytes = v2_protobuf(&doc);
    let pb = gnostic::Document::decode(bytes.as_slice()).expect("decode");
    assert_eq!(pb.swagger, "2.0");
    assert_eq!(pb.info.as_ref().unwrap().title, "Kubernetes");
    let defs = pb.definitions.as_ref().unwrap();
    assert_eq!(
        defs.additional_properties.len(),
        doc["definitions"].as_object().unwrap().len()
    );
    let dep = defs
        .additional_properties
        .iter()
        .find(|d| d.name == "io.k8s.api.apps.v1.Deployment")
        .and_then(|d| d.value.as_ref())
        .expect("Deployment");
    assert_eq!(dep.r#type.as_ref().unwrap().value, vec!["object"]);
    let gvk = dep
        .vendor_extension
        .iter()
        .find(|e| e.name == "x-kubernetes-group-version-kind")
        .expect("gvk");
    assert_eq!(
        yaml(&gvk.value),
        json!([{"group": "apps", "version": "v1", "kind": "Deployment"}])
    );
    let meta = dep
        .properties
        .as_ref()
        .unwrap()
        .additional_properties
        .iter()
        .find(|p| p.name == "metadata")
        .and_then(|p| p.value.as_ref())
        .unwrap();
    assert_eq!(
        meta.r#ref,
        "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    );

    // kubectl's query-parameter check: a patch operation with the GVK and a fieldValidation
    // query parameter.
    let paths = pb.paths.as_ref().unwrap();
    let item = paths
        .path
        .iter()
        .find(|p| p.name == "/apis/apps/v1/namespaces/{namespace}/deployments/{name}")
        .and_then(|p| p.value.as_ref())
        .unwrap();
    let patch = item.patch.as_ref().unwrap();
    let op_gvk = patch
        .vendor_extension
        .iter()
        .find(|e| e.name == "x-kubernetes-group-version-kind")
        .unwrap();
    assert_eq!(
        yaml(&op_gvk.value),
        json!({"group": "apps", "version": "v1", "kind": "Deployment"})
    );
    use gnostic::{non_body_parameter, parameter, parameters_item};
    let query_names: Vec<&str> = patch
        .parameters
        .iter()
        .filter_map(|p| match &p.oneof {
            Some(parameters_item::Oneof::Parameter(gnostic::Parameter {
                oneof:
                    Some(parameter::Oneof::NonBodyParameter(gnostic::NonBodyParameter {
                        oneof: Some(non_body_parameter::Oneof::QueryParameterSubSchema(q)),
                    })),
            })) => Some(q.name.as_str()),
            _ => None,
        })
        .collect();
    assert!(query_names.contains(&"fieldValidation"), "{query_names:?}");
    let path_param = item.parameters.iter().find_map(|p| match &p.oneof {
        Some(parameters_item::Oneof::Parameter(gnostic::Parameter {
            oneof:
                Some(parameter::Oneof::NonBodyParameter(gnostic::NonBodyParameter {
                    oneof: Some(non_body_parameter::Oneof::PathParameterSubSchema(q)),
                })),
        })) => Some(q),
        _ => None,
    });
    let path_param = path_param.expect("path parameter");
    assert_eq!(
        (
            path_param.name.as_str(),
            path_param.path_type.as_str(),
            path_param.required
        ),
        ("name", "string", true)
    );
    let sec = pb.security_definitions.as_ref().unwrap();
    assert_eq!(sec.additional_properties[0].name, "BearerToken");
}

#[test]
fn gnostic_schema_carries_every_field() {
    let s = json!({
        "$ref": "", "format": "int32", "title": "t", "description": "d", "default": {"a": [1, "x"]},
        "multipleOf": 2.0, "maximum": 10.5, "exclusiveMaximum": true, "minimum": -1.0,
        "exclusiveMinimum": true, "maxLength": 5, "minLength": 1, "pattern": "^a$",
        "maxItems": 3, "minItems": 1, "uniqueItems": true, "maxProperties": 4, "minProperties": 2,
        "required": ["a"], "enum": ["a", 1, null], "type": "object",
        "additionalProperties": {"type": "string"},
        "properties": {"a": {"type": "array", "items": {"type": "integer"}}},
        "readOnly": true, "example": "e", "x-kubernetes-map-type": "atomic",
    });
    let msg = gnostic::schema(&s);
    let back = gnostic::Schema::decode(msg.encode_to_vec().as_slice()).expect("decode");
    assert_eq!(back, msg);
    assert_eq!(back.format, "int32");
    assert_eq!((back.maximum, back.exclusive_maximum), (10.5, true));
    assert_eq!(
        (back.max_length, back.min_items, back.max_properties),
        (5, 1, 4)
    );
    assert_eq!(yaml(&back.default), json!({"a": [1, "x"]}));
    assert_eq!(
        back.r#enum
            .iter()
            .map(|a| serde_norway::from_str::<Value>(&a.yaml).unwrap())
            .collect::<Vec<_>>(),
        vec![json!("a"), json!(1), Value::Null]
    );
    let Some(gnostic::additional_properties_item::Oneof::Schema(ap)) =
        back.additional_properties.as_ref().unwrap().oneof.as_ref()
    else {
        panic!("additionalProperties schema");
    };
    assert_eq!(ap.r#type.as_ref().unwrap().value, vec!["string"]);
    let a = &back.properties.as_ref().unwrap().additional_properties[0];
    assert_eq!(
        a.value.as_ref().unwrap().items.as_ref().unwrap().schema[0]
            .r#type
            .as_ref()
            .unwrap()
            .value,
        vec!["integer"]
    );
    assert_eq!(back.vendor_extension[0].name, "x-kubernetes-map-type");
    assert_eq!(yaml(&back.vendor_extension[0].value), json!("atomic"));
    let no_more = gnostic::schema(&json!({"additionalProperties": false}));
    assert_eq!(
        no_more.additional_properties.unwrap().oneof,
        Some(gnostic::additional_properties_item::Oneof::Boolean(false))
    );
}

fn widget(schema: Value) -> CustomKind {
    CustomKind {
        info: ResourceInfo {
            group: "example.com",
            version: "v1",
            kind: "Widget",
            list_kind: "WidgetList",
            plural: "widgets",
            singular: "widget",
            namespaced: true,
            short_names: &["wg"],
            categories: &[],
            verbs: VERBS,
            subresources: &["status", "scale"],
        },
        schema,
    }
}

fn widget_schema() -> Value {
    json!({
        "type": "object",
        "description": "A widget.",
        "properties": {
            "spec": {
                "type": "object",
                "required": ["size", "note"],
                "properties": {
                    "size": {"type": "integer", "description": "How big."},
                    "port": {"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]},
                    "note": {"type": "string", "nullable": true},
                    "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true, "properties": {"a": {"type": "string"}}},
                    "tags": {"type": "array", "x-kubernetes-preserve-unknown-fields": true, "items": {"type": "string"}},
                    "template": {"type": "object", "x-kubernetes-embedded-resource": true, "properties": {"spec": {"type": "object"}}},
                },
            },
            "status": {"type": "object", "properties": {"replicas": {"type": "integer"}}},
        },
    })
}

#[test]
fn custom_kind_in_v3_document_and_index() {
    let custom = vec![widget(widget_schema())];
    let doc = v3_document_with("apis/example.com/v1", &custom).expect("served");
    let schemas = &doc["components"]["schemas"];
    let w = &schemas["com.example.v1.Widget"];
    assert_eq!(
        w["x-kubernetes-group-version-kind"],
        json!([{"group": "example.com", "version": "v1", "kind": "Widget"}])
    );
    assert_eq!(w["description"], "A widget.");
    assert_eq!(w["properties"]["apiVersion"]["type"], "string");
    assert!(w["properties"]["kind"]["description"]
        .as_str()
        .unwrap()
        .starts_with("Kind is a string value"));
    assert_eq!(
        w["properties"]["metadata"]["allOf"][0]["$ref"],
        "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    );
    // v3 keeps what v2 drops.
    assert_eq!(
        w["properties"]["spec"]["properties"]["note"]["nullable"],
        true
    );
    assert!(w["properties"]["spec"]["properties"]["port"]["anyOf"].is_array());
    let tmpl = &w["properties"]["spec"]["properties"]["template"];
    assert!(tmpl["properties"]["metadata"].is_object());
    assert_eq!(tmpl["required"], json!(["kind", "apiVersion"]));
    let list = &schemas["com.example.v1.WidgetList"];
    assert_eq!(
        list["x-kubernetes-group-version-kind"],
        json!([{"group": "example.com", "version": "v1", "kind": "WidgetList"}])
    );
    assert_eq!(
        list["properties"]["items"]["items"]["$ref"],
        "#/components/schemas/com.example.v1.Widget"
    );
    for dep in [
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
        "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta",
        "io.k8s.apimachinery.pkg.apis.meta.v1.ManagedFieldsEntry",
        "io.k8s.api.autoscaling.v1.Scale",
    ] {
        assert!(schemas[dep].is_object(), "{dep}");
    }
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    for r in refs {
        let name = r.strip_prefix("#/components/schemas/").expect(&r);
        assert!(schemas[name].is_object(), "dangling {r}");
    }
    let paths = &doc["paths"];
    let item = &paths["/apis/example.com/v1/namespaces/{namespace}/widgets/{name}"];
    assert_eq!(
        item["patch"]["x-kubernetes-group-version-kind"],
        json!({"group": "example.com", "version": "v1", "kind": "Widget"})
    );
    assert!(item["patch"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "fieldValidation"));
    assert!(paths["/apis/example.com/v1/namespaces/{namespace}/widgets"]["post"].is_object());
    assert!(
        paths["/apis/example.com/v1/namespaces/{namespace}/widgets/{name}/status"]["put"]
            .is_object()
    );
    assert_eq!(
        paths["/apis/example.com/v1/namespaces/{namespace}/widgets/{name}/scale"]["patch"]
            ["x-kubernetes-group-version-kind"]["kind"],
        "Scale"
    );
    // Other group/versions are untouched; an unknown one is still None.
    assert_eq!(
        v3_document_with("apis/apps/v1", &custom),
        skiff_api::openapi::v3_document("apis/apps/v1")
    );
    assert!(v3_document_with("apis/example.com/v2", &custom).is_none());

    let idx = v3_index_with(&custom);
    let url = idx["paths"]["apis/example.com/v1"]["serverRelativeURL"]
        .as_str()
        .expect("custom group/version in the index");
    assert!(url.starts_with("/openapi/v3/apis/example.com/v1?hash="));
    assert!(idx["paths"]["apis/apps/v1"].is_object());
    // A schema change changes the hash, so kubectl's cache notices.
    let mut changed = widget_schema();
    changed["properties"]["spec"]["properties"]["colour"] = json!({"type": "string"});
    let idx2 = v3_index_with(&[widget(changed)]);
    assert_ne!(
        idx2["paths"]["apis/example.com/v1"]["serverRelativeURL"],
        url
    );
    assert_eq!(idx2["paths"]["apis/apps/v1"], idx["paths"]["apis/apps/v1"]);
}

#[test]
fn custom_kind_in_v2_is_reduced_like_upstream() {
    let doc = v2_with(&[widget(widget_schema())]);
    assert_kubectl_parses(&doc);
    let w = &doc["definitions"]["com.example.v1.Widget"];
    assert_eq!(
        w["x-kubernetes-group-version-kind"],
        json!([{"group": "example.com", "version": "v1", "kind": "Widget"}])
    );
    assert_eq!(
        w["properties"]["metadata"]["$ref"],
        "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    );
    let spec = &w["properties"]["spec"];
    // nullable: no type, and no longer required; junctors dropped.
    assert_eq!(spec["properties"]["note"], json!({}));
    assert_eq!(spec["required"], json!(["size"]));
    assert_eq!(
        spec["properties"]["port"],
        json!({"x-kubernetes-int-or-string": true})
    );
    // preserve-unknown-fields: no properties/items (and an array without items loses its type).
    assert_eq!(
        spec["properties"]["extra"],
        json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true})
    );
    assert_eq!(
        spec["properties"]["tags"],
        json!({"x-kubernetes-preserve-unknown-fields": true})
    );
    assert!(spec["properties"]["template"]["properties"]["apiVersion"].is_object());
    assert!(doc["definitions"]["com.example.v1.WidgetList"].is_object());
    let item = &doc["paths"]["/apis/example.com/v1/namespaces/{namespace}/widgets/{name}"];
    assert_eq!(
        item["patch"]["operationId"],
        "patchExampleComV1NamespacedWidget"
    );
    assert_eq!(
        item["patch"]["x-kubernetes-group-version-kind"]["kind"],
        "Widget"
    );
    assert_eq!(
        doc["paths"]["/apis/example.com/v1/namespaces/{namespace}/widgets/{name}/scale"]["get"]
            ["x-kubernetes-group-version-kind"]["kind"],
        "Scale"
    );
    // Built-ins are still there.
    assert!(doc["definitions"]["io.k8s.api.apps.v1.Deployment"].is_object());

    // Whole-object preserve-unknown-fields, or no schema: an open object kubectl accepts
    // anything in.
    for schema in [
        json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true, "properties": {"spec": {"type": "object"}}}),
        json!({}),
    ] {
        let doc = v2_with(&[widget(schema)]);
        assert_eq!(
            doc["definitions"]["com.example.v1.Widget"],
            json!({"type": "object", "x-kubernetes-group-version-kind": [{"group": "example.com", "version": "v1", "kind": "Widget"}]})
        );
    }
    // The protobuf form of a document with custom kinds decodes.
    let pb = gnostic::Document::decode(v2_protobuf(&doc).as_slice()).expect("decode");
    assert!(pb
        .definitions
        .unwrap()
        .additional_properties
        .iter()
        .any(|d| d.name == "com.example.v1.Widget"));
}

#[test]
fn cache_rebuilds_only_when_the_generation_changes() {
    let cache = Cache::default();
    let a = cache.get(1, || vec![widget(widget_schema())]);
    let b = cache.get(1, || panic!("same generation: custom kinds not rebuilt"));
    assert!(std::sync::Arc::ptr_eq(&a, &b));
    let json1 = a.v2_json();
    assert!(std::ptr::eq(json1, b.v2_json()), "built once");
    let doc: Value = serde_json::from_slice(&json1.bytes).unwrap();
    assert!(doc["definitions"]["com.example.v1.Widget"].is_object());
    assert_ne!(a.v2_json().etag, a.v2_protobuf().etag);
    assert!(a.v3_index()["paths"]["apis/example.com/v1"].is_object());
    assert!(a.v3_document("/apis/example.com/v1").is_some());
    assert!(a.v3_document("apis/nope/v1").is_none());

    let c = cache.get(2, Vec::new);
    assert!(!std::sync::Arc::ptr_eq(&a, &c));
    let doc: Value = serde_json::from_slice(&c.v2_json().bytes).unwrap();
    assert!(doc["definitions"].get("com.example.v1.Widget").is_none());
    assert_ne!(c.v2_json().etag, json1.etag);
}

/// Sizes and build times (printed; run with `--ignored --nocapture`).
#[test]
#[ignore]
fn measure() {
    let t = std::time::Instant::now();
    let doc = v2_with(&[]);
    let first = t.elapsed();
    let t = std::time::Instant::now();
    let with = v2_with(&[widget(widget_schema())]);
    let custom = t.elapsed();
    let t = std::time::Instant::now();
    let json = serde_json::to_vec(&with).unwrap();
    let ser = t.elapsed();
    let t = std::time::Instant::now();
    let pb = v2_protobuf(&with);
    let enc = t.elapsed();
    println!(
        "built-in v2 build {first:?}; with one custom kind {custom:?}; json {} bytes in {ser:?}; protobuf {} bytes in {enc:?}; definitions {}",
        json.len(),
        pb.len(),
        doc["definitions"].as_object().unwrap().len()
    );
}
