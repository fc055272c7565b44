//! `/openapi/v2` (Swagger 2.0) as kube-apiserver serves it: every definition under
//! `#/definitions/<upstream name>`, top-level kinds with `x-kubernetes-group-version-kind`, the
//! patch/list extensions, one path per served resource whose operations carry
//! `x-kubernetes-action` and the GVK, and the BearerToken security definition. kubectl reads it
//! for `kind: List` files (client-side validation), its query-parameter check when v3 fails,
//! and `kubectl explain --output=plaintext-openapiv2`.
//!
//! The built-in part is generated once from the same k8s-openapi schemars data as v3, with
//! Swagger 2.0 settings (no `nullable`, `$ref` siblings kept as upstream has them); custom kinds
//! are merged into a copy.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use schemars::generate::{SchemaGenerator, SchemaSettings};
use schemars::transform::{AddNullable, RemoveRefSiblings};
use serde_json::{json, Map, Value};

use super::{finish_schemas, known_kinds, CustomKind};
use crate::{resources, ResourceInfo};

/// Where v2 definitions live (`$ref` prefix).
pub(super) const DEFS: &str = "#/definitions/";

fn settings() -> SchemaSettings {
    let mut s = SchemaSettings::openapi3();
    s.definitions_path = "/definitions".into();
    s.meta_schema = None;
    // Swagger 2.0 has no `nullable`, and upstream's v2 keeps `$ref` siblings (descriptions).
    s.transforms
        .retain(|t| !t.is::<AddNullable>() && !t.is::<RemoveRefSiblings>());
    s
}

/// The built-in document (served kinds only), built once.
pub(super) fn builtin() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| build(resources::all()))
}

/// The document for an explicit resource list (uncached).
pub(super) fn build(served: &[ResourceInfo]) -> Value {
    let served_gvs: Vec<(&str, &str)> = served.iter().map(|r| (r.group, r.version)).collect();
    let mut gen = SchemaGenerator::new(settings());
    let mut gvk_defs: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for (g, v, k, add) in known_kinds() {
        if !served_gvs.contains(&(*g, *v)) {
            continue;
        }
        let root = add(&mut gen);
        if let Some(name) = root
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix(DEFS))
        {
            gvk_defs
                .entry(name.to_string())
                .or_default()
                .push(json!({"group": g, "version": v, "kind": k}));
        }
    }
    // Scale subresource paths and custom list kinds reference these.
    gen.subschema_for::<k8s_openapi::api::autoscaling::v1::Scale>();
    gen.subschema_for::<k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta>();
    let mut defs = gen.take_definitions(true);
    for (name, gvks) in &gvk_defs {
        if let Some(Value::Object(def)) = defs.get_mut(name) {
            def.insert(
                "x-kubernetes-group-version-kind".into(),
                Value::Array(gvks.clone()),
            );
        }
    }
    finish_schemas(&mut defs);
    for (name, def) in defs.iter_mut() {
        builtin_to_v2(name, def);
    }
    // Operations reference these even when no served kind embeds them.
    for name in [PATCH_DEF, DELETE_OPTIONS_DEF, STATUS_DEF] {
        if !defs.contains_key(name) {
            defs.insert(name.to_string(), json!({"type": "object"}));
        }
    }

    let mut paths = Map::new();
    for r in served {
        let def = gvk_defs
            .iter()
            .find(|(_, gvks)| {
                gvks.iter().any(|g| {
                    g["kind"] == r.kind && g["group"] == r.group && g["version"] == r.version
                })
            })
            .map(|(n, _)| n.clone());
        if let Some(def) = def {
            add_paths(&mut paths, r, &def);
            if r.verbs.contains(&"list") {
                add_list_definition(&mut defs, r, &def);
            }
        }
    }
    json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": paths,
        "definitions": defs,
        "securityDefinitions": {
            "BearerToken": {"description": "Bearer Token authentication", "type": "apiKey", "name": "authorization", "in": "header"}
        },
        "security": [{"BearerToken": []}],
    })
}

const PATCH_DEF: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";
const DELETE_OPTIONS_DEF: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions";
const STATUS_DEF: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
const SCALE_DEF: &str = "io.k8s.api.autoscaling.v1.Scale";

/// `io.k8s.api.core.v1.ConfigMapList` next to `…ConfigMap`, with its GVK: kubectl validates
/// a `kind: ConfigMapList` file's items against it.
fn add_list_definition(defs: &mut Map<String, Value>, r: &ResourceInfo, def: &str) {
    let list_kind = if r.list_kind.is_empty() {
        format!("{}List", r.kind)
    } else {
        r.list_kind.to_string()
    };
    let Some(pkg) = def.strip_suffix(r.kind) else {
        return;
    };
    let name = format!("{pkg}{list_kind}");
    let gvk = json!({"group": r.group, "version": r.version, "kind": list_kind});
    if let Some(Value::Array(gvks)) = defs
        .get_mut(&name)
        .and_then(|d| d.get_mut("x-kubernetes-group-version-kind"))
    {
        if !gvks.contains(&gvk) {
            gvks.push(gvk);
        }
        return;
    }
    defs.insert(
        name,
        json!({
            "description": format!("{list_kind} is a list of {}.", r.kind),
            "type": "object",
            "required": ["items"],
            "properties": {
                "apiVersion": {"type": "string", "description": super::custom::API_VERSION_DESC},
                "items": {
                    "description": format!("List of {}.", r.plural),
                    "type": "array",
                    "items": {"$ref": format!("{DEFS}{def}")},
                },
                "kind": {"type": "string", "description": super::custom::KIND_DESC},
                "metadata": {
                    "$ref": format!("{DEFS}{}", super::custom::LIST_META),
                    "description": "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds",
                },
            },
            "x-kubernetes-group-version-kind": [gvk],
        }),
    );
}

/// What upstream's v2 generator writes where schemars' data has OpenAPI 3 constructs:
/// int-or-string types are `string` (`format: int-or-string` for IntOrString), junctors are
/// dropped (kubectl's v2 parser would read them as unknown).
fn builtin_to_v2(name: &str, def: &mut Value) {
    if let Some(o) = def.as_object_mut() {
        if o.remove("x-kubernetes-int-or-string").is_some() {
            o.insert("type".into(), json!("string"));
            if name.ends_with("intstr.IntOrString") {
                o.insert("format".into(), json!("int-or-string"));
            }
        }
    }
    strip_v3_only(def);
}

/// Removes what Swagger 2.0 (and kubectl's v2 model parser) cannot express, recursively:
/// `oneOf`/`anyOf`/`allOf`/`not`, `nullable`, `null` in type lists.
fn strip_v3_only(v: &mut Value) {
    let Some(o) = v.as_object_mut() else {
        return;
    };
    for k in ["oneOf", "anyOf", "allOf", "not", "nullable"] {
        o.remove(k);
    }
    if let Some(Value::Array(types)) = o.get("type") {
        let first = types.iter().find(|t| t.as_str() != Some("null")).cloned();
        match first {
            Some(t) => o.insert("type".into(), t),
            None => o.remove("type"),
        };
    }
    if let Some(Value::Object(props)) = o.get_mut("properties") {
        for (_, p) in props.iter_mut() {
            strip_v3_only(p);
        }
    }
    for k in ["items", "additionalProperties"] {
        if let Some(sub) = o.get_mut(k) {
            strip_v3_only(sub);
        }
    }
}

/// Upstream's operation-id group part: `apps` → `Apps`, `rbac.authorization.k8s.io` →
/// `RbacAuthorization`, core → `Core`.
fn camel_group(group: &str) -> String {
    if group.is_empty() {
        return "Core".into();
    }
    let trimmed = group.strip_suffix(".k8s.io").unwrap_or(group);
    trimmed
        .split(['.', '-'])
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect::<String>())
                .unwrap_or_default()
        })
        .collect()
}

fn tag(group: &str, version: &str) -> String {
    let g = camel_group(group);
    let mut c = g.chars();
    let lower: String = c
        .next()
        .map(|f| f.to_lowercase().chain(c).collect())
        .unwrap_or_default();
    format!("{lower}_{version}")
}

fn query(name: &str, description: &str, ty: &str) -> Value {
    json!({"uniqueItems": true, "type": ty, "description": description, "name": name, "in": "query"})
}

fn path_param(name: &str, description: &str) -> Value {
    json!({"uniqueItems": true, "type": "string", "description": description, "name": name, "in": "path", "required": true})
}

fn body_param(def: &str) -> Value {
    json!({"name": "body", "in": "body", "required": true, "schema": {"$ref": format!("{DEFS}{def}")}})
}

/// Paths of one resource (and its status/scale subresources) in the v2 shape.
pub(super) fn add_paths(paths: &mut Map<String, Value>, r: &ResourceInfo, def: &str) {
    let prefix = if r.group.is_empty() {
        format!("/api/{}", r.version)
    } else {
        format!("/apis/{}/{}", r.group, r.version)
    };
    let ns = if r.namespaced {
        "/namespaces/{namespace}"
    } else {
        ""
    };
    let scope = if r.namespaced { "Namespaced" } else { "" };
    let gv_id = format!("{}{}", camel_group(r.group), upper_first(r.version));
    let tags = json!([tag(r.group, r.version)]);
    let gvk = json!({"group": r.group, "version": r.version, "kind": r.kind});
    let produces = json!([
        "application/json",
        "application/yaml",
        "application/vnd.kubernetes.protobuf"
    ]);
    let ok = |schema: &str| json!({"200": {"description": "OK", "schema": {"$ref": format!("{DEFS}{schema}")}}, "401": {"description": "Unauthorized"}});
    let dry_run = query(
        "dryRun",
        "When present, indicates that modifications should not be persisted. An invalid or unrecognized dryRun directive will result in an error response and no further processing of the request. Valid values are: - All: all dry run stages will be processed",
        "string",
    );
    let field_manager = query(
        "fieldManager",
        "fieldManager is a name associated with the actor or entity that is making these changes. The value must be less than or 128 characters long, and only contain printable characters, as defined by https://golang.org/pkg/unicode/#IsPrint.",
        "string",
    );
    let field_validation = query(
        "fieldValidation",
        "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - Ignore: This will ignore any unknown fields that are silently dropped from the object, and will ignore all but the last duplicate field that the decoder encounters. This is the default behavior prior to v1.23. - Warn: This will send a warning via the standard warning response header for each unknown field that is dropped from the object, and for each duplicate field that is encountered. The request will still succeed if there are no other errors, and will only persist the last of any duplicate fields. This is the default in v1.23+ - Strict: This will fail the request with a BadRequest error if any unknown fields would be dropped from the object, or if any duplicate fields are present. The error returned from the server will contain all unknown and duplicate fields encountered.",
        "string",
    );
    let op_gvk = |gvk: &Value,
                  action: &str,
                  id: String,
                  desc: String,
                  consumes: Value,
                  params: Vec<Value>,
                  responses: Value| {
        json!({
            "description": desc,
            "consumes": consumes,
            "produces": produces,
            "schemes": ["https"],
            "tags": tags,
            "operationId": id,
            "parameters": params,
            "responses": responses,
            "x-kubernetes-action": action,
            "x-kubernetes-group-version-kind": gvk,
        })
    };
    let op =
        |action: &str,
         id: String,
         desc: String,
         consumes: Value,
         params: Vec<Value>,
         responses: Value| { op_gvk(&gvk, action, id, desc, consumes, params, responses) };
    let has = |v: &str| r.verbs.contains(&v);
    let kind = r.kind;
    let mut coll = Map::new();
    if has("list") {
        coll.insert(
            "get".into(),
            op(
                "list",
                format!("list{gv_id}{scope}{kind}"),
                format!("list or watch objects of kind {kind}"),
                json!(["*/*"]),
                vec![],
                ok(def),
            ),
        );
    }
    if has("create") {
        coll.insert(
            "post".into(),
            op(
                "post",
                format!("create{gv_id}{scope}{kind}"),
                format!("create a {kind}"),
                json!(["*/*"]),
                vec![
                    body_param(def),
                    dry_run.clone(),
                    field_manager.clone(),
                    field_validation.clone(),
                ],
                ok(def),
            ),
        );
    }
    if has("deletecollection") {
        coll.insert(
            "delete".into(),
            op(
                "deletecollection",
                format!("deletecollection{gv_id}{scope}{kind}"),
                format!("delete collection of {kind}"),
                json!(["*/*"]),
                vec![],
                ok(STATUS_DEF),
            ),
        );
    }
    let mut common = vec![query(
        "pretty",
        "If 'true', then the output is pretty printed. Defaults to 'false' unless the user-agent indicates a browser or command-line HTTP tool (curl and wget).",
        "string",
    )];
    if r.namespaced {
        common.insert(
            0,
            path_param(
                "namespace",
                "object name and auth scope, such as for teams and projects",
            ),
        );
    }
    let collection = format!("{prefix}{ns}/{}", r.plural);
    if !coll.is_empty() {
        coll.insert("parameters".into(), Value::Array(common.clone()));
        paths.insert(collection.clone(), Value::Object(coll));
    }

    let scale_gvk = json!({"group": "autoscaling", "version": "v1", "kind": "Scale"});
    let mut item_ops = |suffix: &str, what: &str, get: bool, delete: bool| {
        let (def, gvk) = if suffix == "scale" {
            (SCALE_DEF, &scale_gvk)
        } else {
            (def, &gvk)
        };
        let op = |action: &str,
                  id: String,
                  desc: String,
                  consumes: Value,
                  params: Vec<Value>,
                  responses: Value| {
            op_gvk(gvk, action, id, desc, consumes, params, responses)
        };
        let mut m = Map::new();
        let what = if suffix.is_empty() {
            "the specified ".to_string()
        } else {
            format!("{what} of the specified ")
        };
        let sub_id = if suffix.is_empty() {
            String::new()
        } else {
            upper_first(suffix)
        };
        if get && has("get") {
            m.insert(
                "get".into(),
                op(
                    "get",
                    format!("read{gv_id}{scope}{kind}{sub_id}"),
                    format!("read {what}{kind}"),
                    json!(["*/*"]),
                    vec![],
                    ok(def),
                ),
            );
        }
        if has("update") {
            m.insert(
                "put".into(),
                op(
                    "put",
                    format!("replace{gv_id}{scope}{kind}{sub_id}"),
                    format!("replace {what}{kind}"),
                    json!(["*/*"]),
                    vec![
                        body_param(def),
                        dry_run.clone(),
                        field_manager.clone(),
                        field_validation.clone(),
                    ],
                    ok(def),
                ),
            );
        }
        if has("patch") {
            m.insert(
                "patch".into(),
                op(
                    "patch",
                    format!("patch{gv_id}{scope}{kind}{sub_id}"),
                    format!("partially update {what}{kind}"),
                    json!([
                        "application/json-patch+json",
                        "application/merge-patch+json",
                        "application/strategic-merge-patch+json",
                        "application/apply-patch+yaml"
                    ]),
                    vec![
                        body_param(PATCH_DEF),
                        dry_run.clone(),
                        field_manager.clone(),
                        field_validation.clone(),
                        query(
                            "force",
                            "Force is going to \"force\" Apply requests. It means user will re-acquire conflicting fields owned by other people. Force flag must be unset for non-apply patch requests.",
                            "boolean",
                        ),
                    ],
                    ok(def),
                ),
            );
        }
        if delete && has("delete") {
            m.insert(
                "delete".into(),
                op(
                    "delete",
                    format!("delete{gv_id}{scope}{kind}"),
                    format!("delete a {kind}"),
                    json!(["*/*"]),
                    vec![json!({"name": "body", "in": "body", "schema": {"$ref": format!("{DEFS}{DELETE_OPTIONS_DEF}")}}), dry_run.clone()],
                    ok(STATUS_DEF),
                ),
            );
        }
        if m.is_empty() {
            return;
        }
        let mut params = vec![path_param("name", &format!("name of the {kind}"))];
        params.extend(common.iter().cloned());
        m.insert("parameters".into(), Value::Array(params));
        let path = if suffix.is_empty() {
            format!("{collection}/{{name}}")
        } else {
            format!("{collection}/{{name}}/{suffix}")
        };
        paths.insert(path, Value::Object(m));
    };
    item_ops("", "the specified", true, true);
    for sub in ["status", "scale"] {
        if r.subresources.contains(&sub) {
            item_ops(sub, sub, true, false);
        }
    }
}

fn upper_first(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

/// The built-in document plus custom kinds (definitions, list kinds, paths).
pub(super) fn with_custom(custom: &[CustomKind]) -> Value {
    let mut doc = builtin().clone();
    for ck in custom {
        let (name, def, list_name, list_def) = super::custom::definitions(ck, true);
        if let Some(defs) = doc["definitions"].as_object_mut() {
            defs.insert(name.clone(), def);
            defs.insert(list_name, list_def);
        }
        if let Some(paths) = doc["paths"].as_object_mut() {
            add_paths(paths, &ck.info, &name);
            super::custom::without_strategic_merge(paths, &ck.info);
        }
    }
    doc
}
