use serde_json::{json, Value};

use crate::resources::by_plural;

fn hpa(spec: Value) -> Value {
    json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web", "namespace": "default"}, "spec": spec})
}

fn v2() -> &'static crate::ResourceInfo {
    by_plural("autoscaling", "v2", "horizontalpodautoscalers").expect("v2")
}

fn v1() -> &'static crate::ResourceInfo {
    by_plural("autoscaling", "v1", "horizontalpodautoscalers").expect("v1 is served")
}

fn messages(obj: &Value) -> Vec<String> {
    crate::validate::validation_causes(v2(), obj, None)
        .into_iter()
        .map(|c| format!("{}: {}", c.field, c.message))
        .collect()
}

fn target() -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"})
}

#[test]
fn defaults_fill_min_replicas_the_cpu_metric_and_given_behavior() {
    let mut obj = hpa(json!({"scaleTargetRef": target(), "maxReplicas": 5}));
    crate::defaults::apply_defaults(v2(), &mut obj);
    assert_eq!(obj["spec"]["minReplicas"], 1);
    assert_eq!(
        obj["spec"]["metrics"],
        json!([{"type": "Resource", "resource": {"name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": 80}}}])
    );
    // No behavior given: none is stored (the controller applies the defaults).
    assert!(obj["spec"].get("behavior").is_none());

    let mut obj = hpa(json!({"scaleTargetRef": target(), "maxReplicas": 5,
        "behavior": {"scaleDown": {"stabilizationWindowSeconds": 5}}}));
    crate::defaults::apply_defaults(v2(), &mut obj);
    let b = &obj["spec"]["behavior"];
    assert_eq!(b["scaleDown"]["stabilizationWindowSeconds"], 5);
    assert_eq!(b["scaleDown"]["selectPolicy"], "Max");
    assert_eq!(
        b["scaleDown"]["policies"],
        json!([{"type": "Percent", "value": 100, "periodSeconds": 15}])
    );
    assert_eq!(b["scaleUp"]["stabilizationWindowSeconds"], 0);
    assert_eq!(
        b["scaleUp"]["policies"],
        json!([{"type": "Pods", "value": 4, "periodSeconds": 15},
               {"type": "Percent", "value": 100, "periodSeconds": 15}])
    );
}

#[test]
fn validation_uses_upstream_messages() {
    let ok = hpa(
        json!({"scaleTargetRef": target(), "minReplicas": 1, "maxReplicas": 5,
        "metrics": [{"type": "Resource", "resource": {"name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": 50}}}]}),
    );
    assert_eq!(messages(&ok), Vec::<String>::new());

    let bad = hpa(json!({"scaleTargetRef": target(), "minReplicas": 0, "maxReplicas": 0}));
    assert_eq!(
        messages(&bad),
        [
            "spec.minReplicas: Invalid value: 0: must be greater than or equal to 1",
            "spec.maxReplicas: Invalid value: 0: must be greater than 0",
        ]
    );
    let bad = hpa(json!({"scaleTargetRef": target(), "minReplicas": 3, "maxReplicas": 2}));
    assert_eq!(
        messages(&bad),
        ["spec.maxReplicas: Invalid value: 2: must be greater than or equal to `minReplicas`"]
    );
    let bad = hpa(json!({"scaleTargetRef": {"name": "web"}, "maxReplicas": 2}));
    assert_eq!(messages(&bad), ["spec.scaleTargetRef.kind: Required value"]);

    let bad = hpa(
        json!({"scaleTargetRef": target(), "maxReplicas": 2, "metrics": [
        {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization"}}},
        {"type": "Pods", "resource": {"name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": 0}}},
        {"type": "Bogus"}]}),
    );
    assert_eq!(
        messages(&bad),
        [
            "spec.metrics[0].resource.target.averageUtilization: Required value: must set either a target raw value or a target utilization",
            "spec.metrics[1].resource.target.averageUtilization: Invalid value: 0: must be greater than 0",
            "spec.metrics[1].pods: Required value: must populate information for the given metric source",
            "spec.metrics[2].type: Unsupported value: \"Bogus\": supported values: \"Object\", \"Pods\", \"Resource\", \"External\", \"ContainerResource\"",
        ]
    );

    let bad = hpa(
        json!({"scaleTargetRef": target(), "maxReplicas": 2, "behavior": {
        "scaleUp": {"stabilizationWindowSeconds": 4000, "selectPolicy": "Avg",
            "policies": [{"type": "Pods", "value": 0, "periodSeconds": 2000}]},
        "scaleDown": {"policies": []}}}),
    );
    assert_eq!(
        messages(&bad),
        [
            "spec.behavior.scaleUp.stabilizationWindowSeconds: Invalid value: 4000: must be less than or equal to 3600",
            "spec.behavior.scaleUp.selectPolicy: Unsupported value: \"Avg\": supported values: \"Disabled\", \"Max\", \"Min\"",
            "spec.behavior.scaleUp.policies[0].value: Invalid value: 0: must be greater than zero",
            "spec.behavior.scaleUp.policies[0].periodSeconds: Invalid value: 2000: must be less than or equal to 1800",
            "spec.behavior.scaleDown.policies: Required value: must specify at least one Policy",
        ]
    );
}

#[test]
fn table_prints_reference_targets_and_bounds() {
    let now: jiff::Timestamp = "2026-11-27T01:10:00Z".parse().expect("time");
    let mut obj = hpa(
        json!({"scaleTargetRef": target(), "minReplicas": 1, "maxReplicas": 5,
        "metrics": [
            {"type": "Resource", "resource": {"name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 50}}},
            {"type": "Resource", "resource": {"name": "memory",
                "target": {"type": "AverageValue", "averageValue": "100Mi"}}},
            {"type": "Pods", "pods": {"metric": {"name": "qps"},
                "target": {"type": "AverageValue", "averageValue": "10"}}}]}),
    );
    obj["metadata"]["creationTimestamp"] = json!("2026-11-27T01:00:00Z");
    let cells = (super::KIND.table.cells)(&obj, now);
    assert_eq!(
        cells,
        [
            json!("web"),
            json!("Deployment/web"),
            json!("cpu: <unknown>/50%, memory: <unknown>/100Mi + 1 more..."),
            json!("1"),
            json!(5),
            json!(0),
            json!("10m"),
        ]
    );
    obj["status"] = json!({"currentReplicas": 2, "currentMetrics": [
        {"type": "Resource", "resource": {"name": "cpu",
            "current": {"averageUtilization": 12, "averageValue": "60m"}}}]});
    let cells = (super::KIND.table.cells)(&obj, now);
    assert_eq!(
        cells[2],
        "cpu: 12%/50%, memory: <unknown>/100Mi + 1 more..."
    );
    assert_eq!(cells[5], 2);
}

#[test]
fn v1_round_trips_through_the_stored_v2_object() {
    // kubectl autoscale's object.
    let v1_obj = json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"scaleTargetRef": target(), "minReplicas": 1, "maxReplicas": 5,
            "targetCPUUtilizationPercentage": 50}});
    let stored = crate::kinds::to_stored(v1(), v1_obj.clone());
    assert_eq!(stored["apiVersion"], "autoscaling/v2");
    assert_eq!(
        stored["spec"]["metrics"],
        json!([{"type": "Resource", "resource": {"name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": 50}}}])
    );
    assert!(stored["metadata"].get("annotations").is_none());
    let back = crate::kinds::from_stored(v1(), stored);
    assert_eq!(back["spec"], v1_obj["spec"]);
    assert_eq!(
        back["status"],
        json!({"currentReplicas": 0, "desiredReplicas": 0})
    );

    // A v2 object with more than v1 can say keeps it in annotations.
    let mut full = hpa(
        json!({"scaleTargetRef": target(), "minReplicas": 2, "maxReplicas": 9,
        "metrics": [
            {"type": "Resource", "resource": {"name": "memory",
                "target": {"type": "AverageValue", "averageValue": "100Mi"}}},
            {"type": "Resource", "resource": {"name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 70}}}],
        "behavior": {"scaleDown": {"stabilizationWindowSeconds": 5, "selectPolicy": "Max",
            "policies": [{"type": "Pods", "value": 1, "periodSeconds": 15}]}}}),
    );
    full["status"] = json!({"currentReplicas": 3, "desiredReplicas": 4,
        "currentMetrics": [
            {"type": "Resource", "resource": {"name": "memory",
                "current": {"averageValue": "50Mi"}}},
            {"type": "Resource", "resource": {"name": "cpu",
                "current": {"averageUtilization": 90, "averageValue": "450m"}}}],
        "conditions": [{"type": "AbleToScale", "status": "True", "reason": "SucceededRescale"}]});
    let shown = crate::kinds::from_stored(v1(), full.clone());
    assert_eq!(shown["spec"]["targetCPUUtilizationPercentage"], 70);
    assert_eq!(shown["status"]["currentCPUUtilizationPercentage"], 90);
    let a = &shown["metadata"]["annotations"];
    let metrics: Value = serde_json::from_str(
        a["autoscaling.alpha.kubernetes.io/metrics"]
            .as_str()
            .expect("metrics"),
    )
    .expect("json");
    assert_eq!(
        metrics,
        json!([{"type": "Resource", "resource": {"name": "memory", "targetAverageValue": "100Mi"}}])
    );
    assert!(a["autoscaling.alpha.kubernetes.io/conditions"].is_string());
    assert!(a["autoscaling.alpha.kubernetes.io/behavior"].is_string());
    assert!(a["autoscaling.alpha.kubernetes.io/current-metrics"].is_string());
    let again = crate::kinds::to_stored(v1(), shown);
    assert_eq!(again, full);
}

#[test]
fn v1_is_served_after_v2_and_validated_in_v2_shape() {
    let all: Vec<_> = crate::resources::all()
        .iter()
        .filter(|r| r.plural == "horizontalpodautoscalers")
        .map(|r| r.version)
        .collect();
    assert_eq!(all, ["v2", "v1"]);
    let bad = json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"scaleTargetRef": target(), "maxReplicas": 5,
            "targetCPUUtilizationPercentage": 0}});
    let causes = crate::validate::validation_causes(v1(), &bad, None);
    assert_eq!(causes.len(), 1, "{causes:?}");
    let mut obj = bad.clone();
    obj["spec"]["targetCPUUtilizationPercentage"] = json!(null);
    crate::defaults::apply_defaults(v1(), &mut obj);
    assert_eq!(obj["apiVersion"], "autoscaling/v1");
    assert_eq!(obj["spec"]["minReplicas"], 1);
    assert_eq!(obj["spec"]["targetCPUUtilizationPercentage"], 80);
}

#[test]
fn openapi_documents_both_versions() {
    let v1_doc = crate::openapi::v3_document("apis/autoscaling/v1").expect("autoscaling/v1");
    let schemas = &v1_doc["components"]["schemas"];
    assert!(schemas["io.k8s.api.autoscaling.v1.HorizontalPodAutoscaler"].is_object());
    assert!(crate::openapi::v3_document("apis/autoscaling/v2").is_some());
    let v2 = crate::openapi::v2_with(&[]);
    for v in ["v1", "v2"] {
        assert_eq!(
            v2["definitions"][format!("io.k8s.api.autoscaling.{v}.HorizontalPodAutoscaler")]
                ["x-kubernetes-group-version-kind"],
            json!([{"group": "autoscaling", "version": v, "kind": "HorizontalPodAutoscaler"}])
        );
    }
}
