//! OpenAPI v3 documents for kubectl's client-side validation (`apply -f`, `create -f`, `edit`)
//! and `kubectl explain`: `/openapi/v3` (index) and `/openapi/v3/<api/v1|apis/group/version>`.
//!
//! Component schemas are generated from k8s-openapi's schemars impls (which carry the upstream
//! definition names, e.g. `io.k8s.api.apps.v1.Deployment`, and descriptions) with schemars'
//! OpenAPI 3 settings, then completed the way the real server does: top-level kinds get
//! `x-kubernetes-group-version-kind`, fields get the patch/list extensions from `ext.rs`
//! (generated once from the upstream types.go markers), and `paths` get one entry per served
//! resource whose operations carry the GVK and the `fieldValidation` parameter kubectl looks
//! for. Documents are built once and cached.

mod custom;
#[rustfmt::skip]
mod ext;
pub mod gnostic;
mod metrics;
mod v2;

pub use custom::definition_name;

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

use k8s_openapi::Resource as _;
use schemars::generate::{SchemaGenerator, SchemaSettings};
use serde_json::{json, Map, Value};

use crate::{resources, ResourceInfo};

/// A kind k8s-openapi knows: (group, version, kind, adds its schema to a generator and returns
/// the `$ref` to it).
type KindEntry = (
    &'static str,
    &'static str,
    &'static str,
    fn(&mut SchemaGenerator) -> schemars::Schema,
);

macro_rules! kinds {
    ($($t:ty),* $(,)?) => {
        &[$((
            <$t>::GROUP,
            <$t>::VERSION,
            <$t>::KIND,
            (|g: &mut SchemaGenerator| g.subschema_for::<$t>()) as fn(&mut SchemaGenerator) -> schemars::Schema,
        )),*]
    };
}

/// Every kind with a schema: k8s-openapi's and metrics.k8s.io's (defined here).
fn known_kinds() -> &'static [KindEntry] {
    static ALL: OnceLock<Vec<KindEntry>> = OnceLock::new();
    ALL.get_or_init(|| {
        let mut all = openapi_kinds().to_vec();
        all.push((
            "metrics.k8s.io",
            "v1beta1",
            "NodeMetrics",
            |g: &mut SchemaGenerator| g.subschema_for::<metrics::NodeMetrics>(),
        ));
        all.push((
            "metrics.k8s.io",
            "v1beta1",
            "PodMetrics",
            |g: &mut SchemaGenerator| g.subschema_for::<metrics::PodMetrics>(),
        ));
        all
    })
}

/// Every stable kind k8s-openapi (v1_33) offers; a group/version document contains the schemas
/// of its kinds and everything they reference.
fn openapi_kinds() -> &'static [KindEntry] {
    use k8s_openapi::api::*;
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;
    use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1 as apiregistration;
    kinds![
        admissionregistration::v1::MutatingWebhookConfiguration,
        admissionregistration::v1::ValidatingAdmissionPolicy,
        admissionregistration::v1::ValidatingAdmissionPolicyBinding,
        admissionregistration::v1::ValidatingWebhookConfiguration,
        apps::v1::ControllerRevision,
        apps::v1::DaemonSet,
        apps::v1::Deployment,
        apps::v1::ReplicaSet,
        apps::v1::StatefulSet,
        authentication::v1::SelfSubjectReview,
        authentication::v1::TokenRequest,
        authentication::v1::TokenReview,
        authorization::v1::LocalSubjectAccessReview,
        authorization::v1::SelfSubjectAccessReview,
        authorization::v1::SelfSubjectRulesReview,
        authorization::v1::SubjectAccessReview,
        autoscaling::v1::HorizontalPodAutoscaler,
        autoscaling::v1::Scale,
        autoscaling::v2::HorizontalPodAutoscaler,
        batch::v1::CronJob,
        batch::v1::Job,
        certificates::v1::CertificateSigningRequest,
        coordination::v1::Lease,
        core::v1::Binding,
        core::v1::ComponentStatus,
        core::v1::ConfigMap,
        core::v1::Endpoints,
        core::v1::Event,
        core::v1::LimitRange,
        core::v1::Namespace,
        core::v1::Node,
        core::v1::PersistentVolume,
        core::v1::PersistentVolumeClaim,
        core::v1::Pod,
        core::v1::PodTemplate,
        core::v1::ReplicationController,
        core::v1::ResourceQuota,
        core::v1::Secret,
        core::v1::Service,
        core::v1::ServiceAccount,
        discovery::v1::EndpointSlice,
        events::v1::Event,
        flowcontrol::v1::FlowSchema,
        flowcontrol::v1::PriorityLevelConfiguration,
        networking::v1::Ingress,
        networking::v1::IngressClass,
        networking::v1::IPAddress,
        networking::v1::NetworkPolicy,
        networking::v1::ServiceCIDR,
        node::v1::RuntimeClass,
        policy::v1::Eviction,
        policy::v1::PodDisruptionBudget,
        rbac::v1::ClusterRole,
        rbac::v1::ClusterRoleBinding,
        rbac::v1::Role,
        rbac::v1::RoleBinding,
        scheduling::v1::PriorityClass,
        storage::v1::CSIDriver,
        storage::v1::CSINode,
        storage::v1::CSIStorageCapacity,
        storage::v1::StorageClass,
        storage::v1::VolumeAttachment,
        apiextensions::CustomResourceDefinition,
        apiregistration::APIService,
    ]
}

/// The schema of one kind as `(root, definitions)` with OpenAPI 3 settings (for strict
/// unknown-field detection in `validate`); None when k8s-openapi does not know the kind.
pub(crate) fn kind_schema(
    group: &str,
    version: &str,
    kind: &str,
) -> Option<(Value, Map<String, Value>)> {
    let (_, _, _, add) = known_kinds()
        .iter()
        .find(|(g, v, k, _)| *g == group && *v == version && *k == kind)?;
    let mut gen = SchemaGenerator::new(SchemaSettings::openapi3());
    let root = add(&mut gen).to_value();
    Some((root, gen.take_definitions(true)))
}

/// "api/v1" or "apis/apps/v1".
fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// The `/openapi/v3` index for the served resources.
pub fn v3_index() -> Value {
    static INDEX: OnceLock<Value> = OnceLock::new();
    INDEX.get_or_init(|| v3_index_for(resources::all())).clone()
}

/// The document for one group/version path ("api/v1", "apis/apps/v1"); None if not served.
pub fn v3_document(path: &str) -> Option<Value> {
    static DOCS: OnceLock<HashMap<String, Value>> = OnceLock::new();
    let docs = DOCS.get_or_init(|| {
        group_versions(resources::all())
            .into_iter()
            .filter_map(|p| v3_document_for(&p, resources::all()).map(|d| (p, d)))
            .collect()
    });
    docs.get(path.trim_matches('/')).cloned()
}

fn group_versions(served: &[ResourceInfo]) -> Vec<String> {
    let mut out: Vec<String> = served.iter().map(|r| gv_path(r.group, r.version)).collect();
    out.sort();
    out.dedup();
    out
}

/// The index for an explicit resource list (uncached; `v3_index` caches the served one).
pub fn v3_index_for(served: &[ResourceInfo]) -> Value {
    let mut paths = Map::new();
    for p in group_versions(served) {
        if let Some(doc) = v3_document_for(&p, served) {
            let url = format!("/openapi/v3/{p}?hash={}", document_hash(&doc));
            paths.insert(p, json!({ "serverRelativeURL": url }));
        }
    }
    json!({ "paths": paths })
}

/// Stable content hash (FNV-1a, 128 bits as two 64-bit lanes) of a document, upper-case hex.
pub fn document_hash(doc: &Value) -> String {
    bytes_hash(doc.to_string().as_bytes())
}

/// The document for a group/version path and an explicit resource list (uncached).
pub fn v3_document_for(path: &str, served: &[ResourceInfo]) -> Option<Value> {
    let path = path.trim_matches('/');
    let resources: Vec<&ResourceInfo> = served
        .iter()
        .filter(|r| gv_path(r.group, r.version) == path)
        .collect();
    let first = resources.first()?;
    let (group, version) = (first.group, first.version);

    let mut gen = SchemaGenerator::new(SchemaSettings::openapi3());
    let mut gvk_defs: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for (g, v, k, add) in known_kinds() {
        if *g == group && *v == version {
            // The root schema is `{"$ref": "#/components/schemas/<definition>"}`.
            let root = add(&mut gen);
            let name = root
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.rsplit('/').next())
                .map(str::to_string);
            if let Some(name) = name {
                gvk_defs
                    .entry(name)
                    .or_default()
                    .push(json!({"group": g, "version": v, "kind": k}));
            }
        }
    }
    let mut schemas = gen.take_definitions(true);
    for (name, gvks) in &gvk_defs {
        if let Some(Value::Object(def)) = schemas.get_mut(name) {
            def.insert(
                "x-kubernetes-group-version-kind".into(),
                Value::Array(gvks.clone()),
            );
        }
    }
    finish_schemas(&mut schemas);

    let mut paths = Map::new();
    for r in &resources {
        let Some(def) = gvk_defs
            .iter()
            .find(|(_, gvks)| gvks.iter().any(|g| g["kind"] == r.kind))
            .map(|(n, _)| n.clone())
        else {
            continue;
        };
        add_paths(&mut paths, r, &def);
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.32.0"},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"BearerToken": {"type": "apiKey", "description": "Bearer Token authentication", "name": "authorization", "in": "header"}},
        },
    }))
}

/// Upstream touches: metadata is not `required` (k8s-openapi marks it so because the Rust field
/// is not optional), and the patch/list extensions.
fn finish_schemas(schemas: &mut Map<String, Value>) {
    for (_, def) in schemas.iter_mut() {
        if let Some(Value::Array(req)) = def.get_mut("required") {
            req.retain(|r| r != "metadata");
        }
        if def
            .get("required")
            .and_then(Value::as_array)
            .is_some_and(Vec::is_empty)
        {
            if let Some(o) = def.as_object_mut() {
                o.remove("required");
            }
        }
    }
    for (def, field, strategy, merge_key, list_type, map_keys, map_type) in ext::EXTENSIONS {
        let Some(prop) = schemas
            .get_mut(*def)
            .and_then(|d| d.get_mut("properties"))
            .and_then(|p| p.get_mut(*field))
            .and_then(Value::as_object_mut)
        else {
            continue;
        };
        let mut set = |k: &str, v: Value| {
            prop.entry(k.to_string()).or_insert(v);
        };
        if !strategy.is_empty() {
            set("x-kubernetes-patch-strategy", json!(strategy));
        }
        if !merge_key.is_empty() {
            set("x-kubernetes-patch-merge-key", json!(merge_key));
        }
        if !list_type.is_empty() {
            set("x-kubernetes-list-type", json!(list_type));
        }
        if !map_keys.is_empty() {
            set("x-kubernetes-list-map-keys", json!(map_keys));
        }
        if !map_type.is_empty() {
            set("x-kubernetes-map-type", json!(map_type));
        }
    }
}

fn schema_ref(def: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{def}")})
}

fn query_param(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "description": description, "schema": {"type": "string", "uniqueItems": true}})
}

fn add_paths(paths: &mut Map<String, Value>, r: &ResourceInfo, def: &str) {
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
    let collection = format!("{prefix}{ns}/{}", r.plural);
    let item = format!("{collection}/{{name}}");
    let gvk = json!({"group": r.group, "version": r.version, "kind": r.kind});
    let body_types = [
        "application/json",
        "application/yaml",
        "application/vnd.kubernetes.protobuf",
    ];
    let body = |types: &[&str]| {
        let content: Map<String, Value> = types
            .iter()
            .map(|t| (t.to_string(), json!({"schema": schema_ref(def)})))
            .collect();
        json!({"content": content, "required": true})
    };
    let ok = json!({"200": {"description": "OK", "content": {"application/json": {"schema": schema_ref(def)}}}});
    let write_params = vec![
        query_param("dryRun", "When present, indicates that modifications should not be persisted."),
        query_param("fieldManager", "fieldManager is a name associated with the actor or entity that is making these changes."),
        query_param("fieldValidation", "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: Ignore, Warn, Strict."),
    ];
    let op = |action: &str, id: &str, params: Vec<Value>, body: Option<Value>| {
        let mut o = json!({
            "operationId": id,
            "x-kubernetes-action": action,
            "x-kubernetes-group-version-kind": gvk,
            "parameters": params,
            "responses": ok,
        });
        if let (Some(b), Some(m)) = (body, o.as_object_mut()) {
            m.insert("requestBody".into(), b);
        }
        o
    };
    let id = |verb: &str| format!("{verb}{}", r.kind);
    let mut coll = Map::new();
    let mut one = Map::new();
    let has = |v: &str| r.verbs.contains(&v);
    if has("list") {
        coll.insert("get".into(), op("list", &id("list"), vec![], None));
    }
    if has("create") {
        coll.insert(
            "post".into(),
            op(
                "post",
                &id("create"),
                write_params.clone(),
                Some(body(&body_types)),
            ),
        );
    }
    if has("get") {
        one.insert("get".into(), op("get", &id("read"), vec![], None));
    }
    if has("update") {
        one.insert(
            "put".into(),
            op(
                "put",
                &id("replace"),
                write_params.clone(),
                Some(body(&body_types)),
            ),
        );
    }
    if has("patch") || has("update") {
        let mut params = write_params.clone();
        params.push(query_param(
            "force",
            "Force is going to \"force\" Apply requests.",
        ));
        one.insert(
            "patch".into(),
            op(
                "patch",
                &id("patch"),
                params,
                Some(body(&[
                    "application/json-patch+json",
                    "application/merge-patch+json",
                    "application/strategic-merge-patch+json",
                    "application/apply-patch+yaml",
                ])),
            ),
        );
    }
    if has("delete") {
        one.insert("delete".into(), op("delete", &id("delete"), vec![], None));
    }
    if !coll.is_empty() {
        paths.insert(collection, Value::Object(coll));
    }
    if !one.is_empty() {
        paths.insert(item, Value::Object(one));
    }
}

/// A custom resource at one version, as CRDs define it: what the OpenAPI documents need.
#[derive(Debug, Clone)]
pub struct CustomKind {
    pub info: ResourceInfo,
    /// The version's `openAPIV3Schema` (`{}` when it has none).
    pub schema: Value,
}

/// The `/openapi/v3` index with custom kinds: the built-in group/versions plus one entry per
/// custom group/version, each URL carrying the hash of its document (kubectl re-fetches a
/// document only when its hash changes).
pub fn v3_index_with(custom: &[CustomKind]) -> Value {
    let mut idx = v3_index();
    if custom.is_empty() {
        return idx;
    }
    let mut gvs: Vec<String> = custom
        .iter()
        .map(|c| gv_path(c.info.group, c.info.version))
        .collect();
    gvs.sort();
    gvs.dedup();
    if let Some(paths) = idx["paths"].as_object_mut() {
        for p in gvs {
            if let Some(doc) = v3_document_with(&p, custom) {
                let url = format!("/openapi/v3/{p}?hash={}", document_hash(&doc));
                paths.insert(p, json!({ "serverRelativeURL": url }));
            }
        }
    }
    idx
}

/// One `/openapi/v3` group/version document with custom kinds: the built-in document (if the
/// group/version has one) plus the definitions and paths of the custom kinds served there,
/// with ObjectMeta, ListMeta (and Scale for a scale subresource) and what they reference.
pub fn v3_document_with(path: &str, custom: &[CustomKind]) -> Option<Value> {
    let path = path.trim_matches('/');
    let here: Vec<&CustomKind> = custom
        .iter()
        .filter(|c| gv_path(c.info.group, c.info.version) == path)
        .collect();
    let builtin = v3_document(path);
    if here.is_empty() {
        return builtin;
    }
    let mut doc = builtin.unwrap_or_else(|| {
        json!({
            "openapi": "3.0.0",
            "info": {"title": "Kubernetes CRD Swagger", "version": "v0.1.0"},
            "paths": {},
            "components": {
                "schemas": {},
                "securitySchemes": {"BearerToken": {"type": "apiKey", "description": "Bearer Token authentication", "name": "authorization", "in": "header"}},
            },
        })
    });
    let mut gen = SchemaGenerator::new(SchemaSettings::openapi3());
    gen.subschema_for::<k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>();
    gen.subschema_for::<k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta>();
    if here.iter().any(|c| c.info.subresources.contains(&"scale")) {
        gen.subschema_for::<k8s_openapi::api::autoscaling::v1::Scale>();
    }
    let mut base = gen.take_definitions(true);
    finish_schemas(&mut base);
    if let Some(schemas) = doc["components"]["schemas"].as_object_mut() {
        for (k, v) in base {
            schemas.entry(k).or_insert(v);
        }
        for c in &here {
            let (name, def, list_name, list) = custom::definitions(c, false);
            schemas.insert(name, def);
            schemas.insert(list_name, list);
        }
    }
    if let Some(paths) = doc["paths"].as_object_mut() {
        for c in &here {
            let name = custom::definition_name(c.info.group, c.info.version, c.info.kind);
            add_paths(paths, &c.info, &name);
            add_subresource_paths(paths, &c.info, &name);
            custom::without_strategic_merge(paths, &c.info);
        }
    }
    Some(doc)
}

/// `…/{name}/status` and `…/{name}/scale` (get, put, patch) for a custom kind's subresources.
fn add_subresource_paths(paths: &mut Map<String, Value>, r: &ResourceInfo, def: &str) {
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
    for sub in ["status", "scale"] {
        if !r.subresources.contains(&sub) {
            continue;
        }
        let (def, gvk) = if sub == "scale" {
            (
                "io.k8s.api.autoscaling.v1.Scale",
                json!({"group": "autoscaling", "version": "v1", "kind": "Scale"}),
            )
        } else {
            (
                def,
                json!({"group": r.group, "version": r.version, "kind": r.kind}),
            )
        };
        let sub_id = format!("{}{}", sub[..1].to_uppercase(), &sub[1..]);
        let write_params = vec![
            query_param("dryRun", "When present, indicates that modifications should not be persisted."),
            query_param("fieldManager", "fieldManager is a name associated with the actor or entity that is making these changes."),
            query_param("fieldValidation", "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: Ignore, Warn, Strict."),
        ];
        let ok = json!({"200": {"description": "OK", "content": {"application/json": {"schema": schema_ref(def)}}}});
        let body = |types: &[&str]| {
            let content: Map<String, Value> = types
                .iter()
                .map(|t| (t.to_string(), json!({"schema": schema_ref(def)})))
                .collect();
            json!({"content": content, "required": true})
        };
        let op = |action: &str, verb: &str, params: Vec<Value>, body: Option<Value>| {
            let mut o = json!({
                "operationId": format!("{verb}{}{sub_id}", r.kind),
                "x-kubernetes-action": action,
                "x-kubernetes-group-version-kind": gvk,
                "parameters": params,
                "responses": ok,
            });
            if let (Some(b), Some(m)) = (body, o.as_object_mut()) {
                m.insert("requestBody".into(), b);
            }
            o
        };
        paths.insert(
            format!("{prefix}{ns}/{}/{{name}}/{sub}", r.plural),
            json!({
                "get": op("get", "read", vec![], None),
                "put": op("put", "replace", write_params.clone(), Some(body(&["application/json", "application/yaml"]))),
                "patch": op("patch", "patch", write_params, Some(body(&[
                    "application/json-patch+json",
                    "application/merge-patch+json",
                    "application/apply-patch+yaml",
                ]))),
            }),
        );
    }
}

/// The `/openapi/v2` (Swagger 2.0) document with custom kinds. The built-in part is built
/// once; each call copies it and adds the custom kinds (callers cache the result per
/// generation of their custom kinds, see [`Documents`]).
pub fn v2_with(custom: &[CustomKind]) -> Value {
    v2::with_custom(custom)
}

/// The v2 document for an explicit resource list, without custom kinds (uncached).
pub fn v2_for(served: &[ResourceInfo]) -> Value {
    v2::build(served)
}

/// The v2 document in the gnostic protobuf encoding kubectl asks for
/// (`application/com.github.proto-openapi.spec.v2@v1.0+protobuf`).
pub fn v2_protobuf(doc: &Value) -> Vec<u8> {
    use prost::Message as _;
    gnostic::document(doc).encode_to_vec()
}

/// One served form of the v2 document: its bytes and the ETag upstream would send for them
/// (the upper-case hex SHA-512 of the bytes is upstream's; ours is the document hash).
#[derive(Debug)]
pub struct Served {
    pub bytes: Vec<u8>,
    pub etag: String,
}

/// Everything the OpenAPI endpoints serve for one set of custom kinds, built lazily and kept
/// until the set changes (the API server holds one per generation of its custom kinds).
#[derive(Debug, Default)]
pub struct Documents {
    custom: Vec<CustomKind>,
    v2_json: OnceLock<Served>,
    v2_protobuf: OnceLock<Served>,
    v3_index: OnceLock<Value>,
    v3_docs: std::sync::Mutex<HashMap<String, Option<std::sync::Arc<Value>>>>,
}

impl Documents {
    pub fn new(custom: Vec<CustomKind>) -> Self {
        Self {
            custom,
            ..Default::default()
        }
    }

    pub fn custom(&self) -> &[CustomKind] {
        &self.custom
    }

    fn v2_doc(&self) -> Value {
        v2_with(&self.custom)
    }

    /// `/openapi/v2` as JSON.
    pub fn v2_json(&self) -> &Served {
        self.v2_json.get_or_init(|| {
            let bytes = serde_json::to_vec(&self.v2_doc()).unwrap_or_default();
            let etag = bytes_hash(&bytes);
            Served { bytes, etag }
        })
    }

    /// `/openapi/v2` as gnostic protobuf.
    pub fn v2_protobuf(&self) -> &Served {
        self.v2_protobuf.get_or_init(|| {
            let bytes = v2_protobuf(&self.v2_doc());
            let etag = bytes_hash(&bytes);
            Served { bytes, etag }
        })
    }

    /// `/openapi/v3`.
    pub fn v3_index(&self) -> &Value {
        self.v3_index.get_or_init(|| v3_index_with(&self.custom))
    }

    /// `/openapi/v3/<path>`.
    pub fn v3_document(&self, path: &str) -> Option<std::sync::Arc<Value>> {
        let path = path.trim_matches('/').to_string();
        let mut docs = match self.v3_docs.lock() {
            Ok(d) => d,
            Err(poisoned) => poisoned.into_inner(),
        };
        // Bounded by the served group/versions: unknown paths are not remembered.
        if let Some(d) = docs.get(&path) {
            return d.clone();
        }
        let doc = v3_document_with(&path, &self.custom).map(std::sync::Arc::new);
        if doc.is_some() {
            docs.insert(path, doc.clone());
        }
        doc
    }
}

/// Keeps the [`Documents`] of the latest generation of custom kinds.
#[derive(Debug, Default)]
pub struct Cache {
    current: std::sync::Mutex<Option<(u64, std::sync::Arc<Documents>)>>,
}

impl Cache {
    /// The documents for `generation`; `custom` is called only when the generation changed.
    pub fn get(
        &self,
        generation: u64,
        custom: impl FnOnce() -> Vec<CustomKind>,
    ) -> std::sync::Arc<Documents> {
        let mut cur = match self.current.lock() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some((g, docs)) = cur.as_ref() {
            if *g == generation {
                return docs.clone();
            }
        }
        let docs = std::sync::Arc::new(Documents::new(custom()));
        *cur = Some((generation, docs.clone()));
        docs
    }
}

fn bytes_hash(bytes: &[u8]) -> String {
    let mut a: u64 = 0xcbf2_9ce4_8422_2325;
    let mut b: u64 = 0x8422_2325_cbf2_9ce4;
    for byte in bytes {
        a = (a ^ u64::from(*byte)).wrapping_mul(0x0000_0100_0000_01b3);
        b = (b ^ u64::from(byte.rotate_left(3))).wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{a:016X}{b:016X}")
}
