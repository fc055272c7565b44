//! OpenAPI v3 documents: index entries, GVK extensions, patch extensions, kubectl's checks.

use serde_json::Value;
use skiff_api::openapi::{v3_document_for, v3_index_for};
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
    let r = |group, kind, plural, namespaced| ResourceInfo {
        group,
        version: "v1",
        kind,
        list_kind: "",
        plural,
        singular: "",
        namespaced,
        short_names: &[],
        categories: &[],
        verbs: VERBS,
        subresources: &[],
    };
    vec![
        r("", "Pod", "pods", true),
        r("", "Namespace", "namespaces", false),
        r("", "Service", "services", true),
        r("apps", "Deployment", "deployments", true),
        r("apps", "ReplicaSet", "replicasets", true),
    ]
}

#[test]
fn index_lists_served_group_versions() {
    let idx = v3_index_for(&served());
    let paths = idx["paths"].as_object().expect("paths");
    assert_eq!(paths.len(), 2);
    let url = paths["apis/apps/v1"]["serverRelativeURL"]
        .as_str()
        .expect("url");
    assert!(url.starts_with("/openapi/v3/apis/apps/v1?hash="), "{url}");
    assert!(paths["api/v1"]["serverRelativeURL"].as_str().is_some());
    // Stable across calls.
    assert_eq!(idx, v3_index_for(&served()));
}

#[test]
fn apps_v1_document_is_what_kubectl_needs() {
    let doc = v3_document_for("apis/apps/v1", &served()).expect("served");
    let schemas = &doc["components"]["schemas"];
    let dep = &schemas["io.k8s.api.apps.v1.Deployment"];
    assert_eq!(
        dep["x-kubernetes-group-version-kind"],
        serde_json::json!([{"group": "apps", "version": "v1", "kind": "Deployment"}])
    );
    assert!(
        dep.get("required").is_none(),
        "metadata must not be required"
    );
    // kubectl explain deployment.spec.replicas
    let spec_ref = dep["properties"]["spec"]["allOf"][0]["$ref"]
        .as_str()
        .expect("ref");
    assert_eq!(
        spec_ref,
        "#/components/schemas/io.k8s.api.apps.v1.DeploymentSpec"
    );
    let replicas = &schemas["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]["replicas"];
    assert_eq!(replicas["type"], "integer");
    assert!(replicas["description"]
        .as_str()
        .unwrap_or("")
        .starts_with("Number of desired pods"));
    // Referenced core and meta schemas are included, with patch extensions.
    let containers = &schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
    assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
    assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
    assert_eq!(containers["x-kubernetes-list-type"], "map");
    assert!(schemas["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"].is_object());
    // kubectl's fieldValidation probe: a PATCH operation with the GVK and the parameter.
    let patch = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
    assert_eq!(
        patch["x-kubernetes-group-version-kind"]["kind"],
        "Deployment"
    );
    let params = patch["parameters"].as_array().expect("params");
    assert!(params
        .iter()
        .any(|p| p["name"] == "fieldValidation" && p["in"] == "query"));
    assert!(patch["requestBody"]["content"]["application/strategic-merge-patch+json"].is_object());
    // Every $ref resolves inside the document.
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    for r in refs {
        let name = r.trim_start_matches("#/components/schemas/");
        assert!(schemas.get(name).is_some(), "dangling {r}");
    }
}

#[test]
fn core_v1_document_and_unknown_path() {
    let doc = v3_document_for("api/v1", &served()).expect("served");
    assert!(doc["paths"]["/api/v1/namespaces/{name}"]["patch"].is_object());
    assert_eq!(
        doc["components"]["schemas"]["io.k8s.api.core.v1.Pod"]["x-kubernetes-group-version-kind"]
            [0]["kind"],
        "Pod"
    );
    assert!(v3_document_for("apis/batch/v1", &served()).is_none());
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                if k == "$ref" {
                    if let Some(s) = v.as_str() {
                        out.push(s.to_string());
                    }
                } else {
                    collect_refs(v, out);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

#[test]
fn served_resources_all_have_documents_and_gvk_schemas() {
    use skiff_api::openapi::{v3_document, v3_index};
    let idx = v3_index();
    let paths = idx["paths"].as_object().expect("paths");
    assert!(paths.contains_key("api/v1") && paths.contains_key("apis/apps/v1"));
    for r in skiff_api::resources::all() {
        let gv = if r.group.is_empty() {
            format!("api/{}", r.version)
        } else {
            format!("apis/{}/{}", r.group, r.version)
        };
        let doc = v3_document(&gv).expect("document for a served group/version");
        let found = doc["components"]["schemas"]
            .as_object()
            .expect("schemas")
            .values()
            .any(|s| {
                s["x-kubernetes-group-version-kind"]
                    .as_array()
                    .is_some_and(|g| {
                        g.iter().any(|g| {
                            g["group"] == r.group
                                && g["version"] == r.version
                                && g["kind"] == r.kind
                        })
                    })
            });
        assert!(found, "no schema with GVK for {gv} {}", r.kind);
        // The hashed URL in the index matches the served document.
        let url = paths[&gv]["serverRelativeURL"].as_str().expect("url");
        assert!(
            url.ends_with(&skiff_api::openapi::document_hash(&doc)),
            "{url}"
        );
    }
    assert!(v3_document("apis/nope/v1").is_none());
}

#[test]
fn batch_v1_document_serves_jobs() {
    use skiff_api::openapi::{v3_document, v3_index};
    let idx = v3_index();
    let url = idx["paths"]["apis/batch/v1"]["serverRelativeURL"]
        .as_str()
        .expect("batch/v1 listed");
    assert!(url.starts_with("/openapi/v3/apis/batch/v1?hash="), "{url}");
    let doc = v3_document("apis/batch/v1").expect("document");
    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        schemas["io.k8s.api.batch.v1.Job"]["x-kubernetes-group-version-kind"],
        serde_json::json!([{"group": "batch", "version": "v1", "kind": "Job"}])
    );
    // kubectl apply's strict validation probe and `kubectl explain job.spec.backoffLimit`.
    let patch = &doc["paths"]["/apis/batch/v1/namespaces/{namespace}/jobs/{name}"]["patch"];
    assert_eq!(patch["x-kubernetes-group-version-kind"]["kind"], "Job");
    assert!(patch["parameters"]
        .as_array()
        .expect("params")
        .iter()
        .any(|p| p["name"] == "fieldValidation"));
    assert_eq!(
        schemas["io.k8s.api.batch.v1.JobSpec"]["properties"]["backoffLimit"]["type"],
        "integer"
    );
    assert_eq!(
        schemas["io.k8s.api.batch.v1.JobStatus"]["properties"]["conditions"]
            ["x-kubernetes-list-type"],
        "atomic"
    );
    assert!(doc["paths"]["/apis/batch/v1/namespaces/{namespace}/jobs"]["post"].is_object());
}

#[test]
fn apps_v1_document_serves_daemon_sets() {
    use skiff_api::openapi::{v3_document, v3_index};
    assert!(v3_index()["paths"]["apis/apps/v1"]["serverRelativeURL"]
        .as_str()
        .is_some_and(|u| u.starts_with("/openapi/v3/apis/apps/v1?hash=")));
    let doc = v3_document("apis/apps/v1").expect("document");
    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        schemas["io.k8s.api.apps.v1.DaemonSet"]["x-kubernetes-group-version-kind"],
        serde_json::json!([{"group": "apps", "version": "v1", "kind": "DaemonSet"}])
    );
    // kubectl apply's strict validation probe looks for the GVK and fieldValidation on PATCH.
    let item = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/daemonsets/{name}"];
    assert_eq!(
        item["patch"]["x-kubernetes-group-version-kind"]["kind"],
        "DaemonSet"
    );
    assert!(item["patch"]["parameters"]
        .as_array()
        .expect("params")
        .iter()
        .any(|p| p["name"] == "fieldValidation"));
    assert!(item["put"].is_object() && item["delete"].is_object());
    assert!(doc["paths"]["/apis/apps/v1/namespaces/{namespace}/daemonsets"]["post"].is_object());
    // `kubectl explain ds.spec.updateStrategy.rollingUpdate.maxSurge`.
    let spec = &schemas["io.k8s.api.apps.v1.DaemonSetSpec"]["properties"];
    assert!(spec["updateStrategy"].is_object() && spec["template"].is_object());
    let ru = &schemas["io.k8s.api.apps.v1.RollingUpdateDaemonSet"]["properties"];
    assert!(ru["maxSurge"].is_object() && ru["maxUnavailable"].is_object());
    assert_eq!(
        schemas["io.k8s.api.apps.v1.DaemonSetStatus"]["properties"]["conditions"]
            ["x-kubernetes-patch-merge-key"],
        "type"
    );
}

#[test]
fn batch_v1_document_serves_cron_jobs() {
    use skiff_api::openapi::v3_document;
    let doc = v3_document("apis/batch/v1").expect("document");
    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        schemas["io.k8s.api.batch.v1.CronJob"]["x-kubernetes-group-version-kind"],
        serde_json::json!([{"group": "batch", "version": "v1", "kind": "CronJob"}])
    );
    // kubectl apply's strict validation probe: GVK and fieldValidation on PATCH.
    let item = &doc["paths"]["/apis/batch/v1/namespaces/{namespace}/cronjobs/{name}"];
    assert_eq!(
        item["patch"]["x-kubernetes-group-version-kind"]["kind"],
        "CronJob"
    );
    assert!(item["patch"]["parameters"]
        .as_array()
        .expect("params")
        .iter()
        .any(|p| p["name"] == "fieldValidation"));
    assert!(item["put"].is_object() && item["delete"].is_object());
    assert!(doc["paths"]["/apis/batch/v1/namespaces/{namespace}/cronjobs"]["post"].is_object());
    // `kubectl explain cj.spec.jobTemplate.spec.template` resolves through the schemas.
    let spec = &schemas["io.k8s.api.batch.v1.CronJobSpec"]["properties"];
    assert_eq!(spec["schedule"]["type"], "string");
    assert!(spec["jobTemplate"].is_object() && spec["timeZone"].is_object());
    assert!(schemas["io.k8s.api.batch.v1.JobTemplateSpec"]["properties"]["spec"].is_object());
    assert_eq!(
        schemas["io.k8s.api.batch.v1.CronJobStatus"]["properties"]["active"]
            ["x-kubernetes-list-type"],
        "atomic"
    );
}

#[test]
fn metrics_kinds_have_upstream_schemas() {
    let doc =
        skiff_api::openapi::v3_document("apis/metrics.k8s.io/v1beta1").expect("metrics document");
    let pm = &doc["components"]["schemas"]["io.k8s.metrics.pkg.apis.metrics.v1beta1.PodMetrics"];
    for field in [
        "apiVersion",
        "kind",
        "metadata",
        "timestamp",
        "window",
        "containers",
    ] {
        assert!(pm["properties"].get(field).is_some(), "{field}: {pm}");
    }
    let nm = &doc["components"]["schemas"]["io.k8s.metrics.pkg.apis.metrics.v1beta1.NodeMetrics"];
    assert!(nm["properties"].get("usage").is_some(), "{nm}");
}
