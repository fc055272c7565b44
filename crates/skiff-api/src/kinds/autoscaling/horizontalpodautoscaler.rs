//! autoscaling/v2 HorizontalPodAutoscaler: scales a workload's scale subresource from metrics.
//! Stored at v2; autoscaling/v1 is served by conversion ([`v1`]), like upstream.

use serde_json::{json, Map, Value};
use skiff_semantics::quantity::Quantity;

use crate::kinds::prelude::*;
use crate::kinds::AltVersion;

mod v1;

pub(crate) const KIND: Kind = Kind {
    info: ResourceInfo {
        group: "autoscaling",
        version: "v2",
        kind: "HorizontalPodAutoscaler",
        list_kind: "HorizontalPodAutoscalerList",
        plural: "horizontalpodautoscalers",
        singular: "horizontalpodautoscaler",
        namespaced: true,
        short_names: &["hpa"],
        categories: ALL,
        verbs: FULL,
        subresources: &["status"],
    },
    defaults,
    validate,
    table: Table {
        columns: COLUMNS,
        cells,
        ..Table::BASE
    },
    alt_versions: &[AltVersion {
        version: "v1",
        from_stored: v1::from_v2,
        to_stored: v1::to_v2,
    }],
    ..Kind::BASE
};

/// Upstream's `DefaultCPUUtilization`.
pub(crate) const DEFAULT_CPU_UTILIZATION: i64 = 80;

/// `SetDefaults_HorizontalPodAutoscaler` (autoscaling/v2): one minimum replica, 80% CPU when
/// no metric is given, and the unset parts of a given `behavior` from upstream's defaults.
fn defaults(obj: &mut Map<String, Value>) {
    let spec = child(obj, "spec");
    default(spec, "minReplicas", json!(1));
    if spec
        .get("metrics")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty)
    {
        spec.insert("metrics".into(), json!([default_cpu_metric()]));
    }
    if spec.get("behavior").is_some_and(Value::is_object) {
        let behavior = child(spec, "behavior");
        for (key, rules) in [
            ("scaleUp", scale_up_rules()),
            ("scaleDown", scale_down_rules()),
        ] {
            let r = child(behavior, key);
            for (k, v) in rules.as_object().into_iter().flatten() {
                default(r, k, v.clone());
            }
        }
    }
}

/// The metric an HPA without metrics scales on.
pub(crate) fn default_cpu_metric() -> Value {
    json!({"type": "Resource", "resource": {"name": "cpu",
        "target": {"type": "Utilization", "averageUtilization": DEFAULT_CPU_UTILIZATION}}})
}

/// Upstream's default scale-up rules: no stabilization, the larger of +4 pods or +100% per 15 s.
pub fn scale_up_rules() -> Value {
    json!({"stabilizationWindowSeconds": 0, "selectPolicy": "Max", "policies": [
        {"type": "Pods", "value": 4, "periodSeconds": 15},
        {"type": "Percent", "value": 100, "periodSeconds": 15}]})
}

/// Upstream's default scale-down rules: 300 s stabilization, down to 0% per 15 s.
pub fn scale_down_rules() -> Value {
    json!({"stabilizationWindowSeconds": 300, "selectPolicy": "Max", "policies": [
        {"type": "Percent", "value": 100, "periodSeconds": 15}]})
}

const MAX_STABILIZATION_WINDOW: i64 = 3600;
const MAX_PERIOD: i64 = 1800;
const METRIC_TYPES: &[&str] = &[
    "Object",
    "Pods",
    "Resource",
    "External",
    "ContainerResource",
];

/// Upstream's `ValidateHorizontalPodAutoscaler` (spec; status counts when present).
fn validate(e: &mut Errs, obj: &Map<String, Value>, _old: Option<&Value>) {
    let null = Value::Null;
    let spec = obj.get("spec").unwrap_or(&null);
    let min = spec.get("minReplicas").and_then(Value::as_i64);
    if let Some(m) = min.filter(|m| *m < 1) {
        e.invalid(
            "spec.minReplicas",
            &json!(m),
            "must be greater than or equal to 1",
        );
    }
    let max = spec.get("maxReplicas").and_then(Value::as_i64).unwrap_or(0);
    if max < 1 {
        e.invalid("spec.maxReplicas", &json!(max), "must be greater than 0");
    }
    if min.is_some_and(|m| max < m) {
        e.invalid(
            "spec.maxReplicas",
            &json!(max),
            "must be greater than or equal to `minReplicas`",
        );
    }
    // Upstream checks metrics only with a valid reference, and behavior only with valid metrics.
    let before = e.0.len();
    cross_ref(e, spec.get("scaleTargetRef"), "spec.scaleTargetRef");
    if e.0.len() != before {
        return;
    }
    let metrics = spec.get("metrics").and_then(Value::as_array);
    for (i, m) in metrics.into_iter().flatten().enumerate() {
        metric_spec(e, m, &format!("spec.metrics[{i}]"));
    }
    if e.0.len() != before {
        return;
    }
    if let Some(b) = spec.get("behavior").filter(|b| b.is_object()) {
        for key in ["scaleUp", "scaleDown"] {
            if let Some(r) = b.get(key).filter(|r| r.is_object()) {
                scaling_rules(e, r, &format!("spec.behavior.{key}"));
            }
        }
    }
    for key in ["currentReplicas", "desiredReplicas"] {
        if let Some(n) = obj
            .get("status")
            .and_then(|s| s.get(key))
            .and_then(Value::as_i64)
        {
            if n < 0 {
                e.invalid(
                    &format!("status.{key}"),
                    &json!(n),
                    "must be greater than or equal to 0",
                );
            }
        }
    }
}

/// `ValidateCrossVersionObjectReference`.
fn cross_ref(e: &mut Errs, r: Option<&Value>, f: &str) {
    for key in ["kind", "name"] {
        let field = format!("{f}.{key}");
        match str_at(r, key).filter(|s| !s.is_empty()) {
            None => e.required(&field, ""),
            Some(s) => {
                for msg in path_segment(s) {
                    e.invalid_str(&field, s, &msg);
                }
            }
        }
    }
}

fn metric_spec(e: &mut Errs, m: &Value, f: &str) {
    let ty = str_at(Some(m), "type").unwrap_or("");
    if ty.is_empty() {
        e.required(&format!("{f}.type"), "must specify a metric source type");
    }
    let sources = [
        ("object", "Object"),
        ("pods", "Pods"),
        ("resource", "Resource"),
        ("containerResource", "ContainerResource"),
        ("external", "External"),
    ];
    let present: Vec<&str> = sources
        .iter()
        .filter(|(k, _)| m.get(*k).is_some_and(|v| !v.is_null()))
        .map(|(k, _)| *k)
        .collect();
    if let Some(first) = present.first() {
        let src = &m[*first];
        let sf = format!("{f}.{first}");
        match *first {
            "resource" | "containerResource" => resource_source(e, src, &sf, *first != "resource"),
            "pods" => {
                metric_identifier(e, src.get("metric"), &format!("{sf}.metric"));
                metric_target(e, src.get("target"), &format!("{sf}.target"));
                if src.pointer("/target/averageValue").is_none() {
                    e.required(
                        &format!("{sf}.target.averageValue"),
                        "must specify a positive target averageValue",
                    );
                }
            }
            "object" => {
                cross_ref(
                    e,
                    src.get("describedObject"),
                    &format!("{sf}.describedObject"),
                );
                metric_identifier(e, src.get("metric"), &format!("{sf}.metric"));
                metric_target(e, src.get("target"), &format!("{sf}.target"));
                let t = src.get("target");
                if str_at(t, "value").is_none() && str_at(t, "averageValue").is_none() {
                    e.required(
                        &format!("{sf}.target.value"),
                        "must set either a target value or averageValue",
                    );
                }
            }
            _ => {
                metric_identifier(e, src.get("metric"), &format!("{sf}.metric"));
                metric_target(e, src.get("target"), &format!("{sf}.target"));
                let t = src.get("target");
                match (str_at(t, "value"), str_at(t, "averageValue")) {
                    (None, None) => e.required(
                        &format!("{sf}.target.averageValue"),
                        "must set either a target value for metric or a per-pod target",
                    ),
                    (Some(_), Some(_)) => e.forbidden(
                        &format!("{sf}.target.value"),
                        "may not set both a target value for metric and a per-pod target",
                    ),
                    _ => {}
                }
            }
        }
    }
    let expected = sources.iter().find(|(_, t)| *t == ty).map(|(k, _)| *k);
    match expected {
        Some(k) if !present.contains(&k) => e.required(
            &format!("{f}.{k}"),
            "must populate information for the given metric source",
        ),
        Some(_) => {}
        None => e.not_supported(&format!("{f}.type"), ty, METRIC_TYPES),
    }
    if present.len() != 1 {
        for k in present.iter().filter(|k| Some(**k) != expected) {
            e.forbidden(
                &format!("{f}.{k}"),
                "must populate the given metric source only",
            );
        }
    }
}

fn resource_source(e: &mut Errs, src: &Value, f: &str, container: bool) {
    if str_at(Some(src), "name").is_none_or(str::is_empty) {
        e.required(&format!("{f}.name"), "must specify a resource name");
    }
    if container && str_at(Some(src), "container").is_none_or(str::is_empty) {
        e.required(&format!("{f}.container"), "must specify a container");
    }
    metric_target(e, src.get("target"), &format!("{f}.target"));
    let t = src.get("target");
    let util = t
        .and_then(|t| t.get("averageUtilization"))
        .is_some_and(|v| !v.is_null());
    let avg = str_at(t, "averageValue").is_some();
    if !util && !avg {
        e.required(
            &format!("{f}.target.averageUtilization"),
            "must set either a target raw value or a target utilization",
        );
    }
    if util && avg {
        e.forbidden(
            &format!("{f}.target.averageValue"),
            "may not set both a target raw value and a target utilization",
        );
    }
}

fn metric_identifier(e: &mut Errs, id: Option<&Value>, f: &str) {
    match str_at(id, "name").filter(|s| !s.is_empty()) {
        None => e.required(&format!("{f}.name"), "must specify a metric name"),
        Some(n) => {
            for msg in path_segment(n) {
                e.invalid_str(&format!("{f}.name"), n, &msg);
            }
        }
    }
    if let Some(sel) = id.and_then(|i| i.get("selector")).filter(|s| s.is_object()) {
        label_selector(e, sel, &format!("{f}.selector"));
    }
}

/// `validateMetricTarget`.
fn metric_target(e: &mut Errs, t: Option<&Value>, f: &str) {
    let ty = str_at(t, "type").unwrap_or("");
    if ty.is_empty() {
        e.required(&format!("{f}.type"), "must specify a metric target type");
    }
    if !matches!(ty, "Utilization" | "Value" | "AverageValue") {
        e.invalid_str(
            &format!("{f}.type"),
            ty,
            "must be either Utilization, Value, or AverageValue",
        );
    }
    for key in ["value", "averageValue"] {
        if let Some(q) = str_at(t, key) {
            if !Quantity::parse(q).is_ok_and(|q| q.is_positive()) {
                e.invalid_str(&format!("{f}.{key}"), q, "must be positive");
            }
        }
    }
    if let Some(u) = t
        .and_then(|t| t.get("averageUtilization"))
        .and_then(Value::as_i64)
    {
        if u < 1 {
            e.invalid(
                &format!("{f}.averageUtilization"),
                &json!(u),
                "must be greater than 0",
            );
        }
    }
}

/// `validateScalingRules`.
fn scaling_rules(e: &mut Errs, r: &Value, f: &str) {
    if let Some(w) = r.get("stabilizationWindowSeconds").and_then(Value::as_i64) {
        let field = format!("{f}.stabilizationWindowSeconds");
        if w < 0 {
            e.invalid(&field, &json!(w), "must be greater than or equal to zero");
        }
        if w > MAX_STABILIZATION_WINDOW {
            let msg = format!("must be less than or equal to {MAX_STABILIZATION_WINDOW}");
            e.invalid(&field, &json!(w), &msg);
        }
    }
    if let Some(p) = str_at(Some(r), "selectPolicy") {
        if !matches!(p, "Max" | "Min" | "Disabled") {
            e.not_supported(&format!("{f}.selectPolicy"), p, &["Disabled", "Max", "Min"]);
        }
    }
    let policies = r.get("policies").and_then(Value::as_array);
    if policies.is_none_or(Vec::is_empty) {
        e.required(&format!("{f}.policies"), "must specify at least one Policy");
    }
    for (i, p) in policies.into_iter().flatten().enumerate() {
        let pf = format!("{f}.policies[{i}]");
        let ty = str_at(Some(p), "type").unwrap_or("");
        if !matches!(ty, "Pods" | "Percent") {
            e.not_supported(&format!("{pf}.type"), ty, &["Percent", "Pods"]);
        }
        let value = p.get("value").and_then(Value::as_i64).unwrap_or(0);
        if value <= 0 {
            e.invalid(
                &format!("{pf}.value"),
                &json!(value),
                "must be greater than zero",
            );
        }
        let period = p.get("periodSeconds").and_then(Value::as_i64).unwrap_or(0);
        let field = format!("{pf}.periodSeconds");
        if period <= 0 {
            e.invalid(&field, &json!(period), "must be greater than zero");
        }
        if period > MAX_PERIOD {
            let msg = format!("must be less than or equal to {MAX_PERIOD}");
            e.invalid(&field, &json!(period), &msg);
        }
    }
}

#[rustfmt::skip]
const COLUMNS: &[Col] = &[
        NAME,
        ("Reference", "string", 0, "scaleTargetRef points to the target resource to scale, and is used to the pods for which metrics should be collected, as well as to actually change the replica count."),
        ("Targets", "string", 0, "metrics contains the specifications for which to use to calculate the desired replica count (the maximum replica count across all metrics will be used).  The desired replica count is calculated multiplying the ratio between the target value and the current value by the current number of pods.  Ergo, metrics used must decrease as the pod count is increased, and vice-versa.  See the individual metric source types for more information about how each type of metric must respond. If not set, the default metric will be set to 80% average CPU utilization."),
        ("MinPods", "string", 0, "minReplicas is the lower limit for the number of replicas to which the autoscaler can scale down.  It defaults to 1 pod.  minReplicas is allowed to be 0 if the alpha feature gate HPAScaleToZero is enabled and at least one Object or External metric is configured.  Scaling is active as long as at least one metric value is available."),
        ("MaxPods", "integer", 0, "maxReplicas is the upper limit for the number of replicas to which the autoscaler can scale up. It cannot be less that minReplicas."),
        ("Replicas", "integer", 0, "currentReplicas is current number of replicas of pods managed by this autoscaler, as last seen by the autoscaler."),
        AGE,
];

fn cells(obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let (name, age) = name_age(obj, now);
    let min = obj
        .pointer("/spec/minReplicas")
        .and_then(Value::as_i64)
        .map_or_else(|| "<unset>".to_string(), |m| m.to_string());
    vec![
        json!(name),
        json!(format!(
            "{}/{}",
            s(obj, "/spec/scaleTargetRef/kind"),
            s(obj, "/spec/scaleTargetRef/name")
        )),
        json!(targets(
            arr(obj, "/spec/metrics"),
            arr(obj, "/status/currentMetrics")
        )),
        json!(min),
        json!(n(obj, "/spec/maxReplicas")),
        json!(n(obj, "/status/currentReplicas")),
        json!(age),
    ]
}

/// Upstream's `formatHPAMetrics`: at most two metrics as `current/target`, then `+ N more...`.
pub(crate) fn targets(specs: &[Value], statuses: &[Value]) -> String {
    if specs.is_empty() {
        return "<none>".into();
    }
    const MAX: usize = 2;
    let unknown = || "<unknown>".to_string();
    let mut list = Vec::new();
    for (i, spec) in specs.iter().take(MAX).enumerate() {
        let status = statuses.get(i);
        let cur = |src: &str, key: &str| -> Option<String> {
            let v = status?.get(src)?.get("current")?.get(key)?;
            Some(v.as_str().map_or_else(|| v.to_string(), str::to_string))
        };
        let target = |src: &str, key: &str| -> Option<String> {
            let v = spec.get(src)?.get("target")?.get(key)?;
            Some(v.as_str().map_or_else(|| v.to_string(), str::to_string))
        };
        let ty = s(spec, "/type");
        let item = match ty {
            "Resource" | "ContainerResource" => {
                let src = if ty == "Resource" {
                    "resource"
                } else {
                    "containerResource"
                };
                let rname = spec
                    .pointer(&format!("/{src}/name"))
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let label = match spec
                    .pointer(&format!("/{src}/container"))
                    .and_then(Value::as_str)
                {
                    Some(c) => format!("{rname} on {c}"),
                    None => rname.to_string(),
                };
                if let Some(t) = target(src, "averageValue") {
                    let c = cur(src, "averageValue").unwrap_or_else(unknown);
                    format!("{label}: {c}/{t}")
                } else {
                    let c =
                        cur(src, "averageUtilization").map_or_else(unknown, |u| format!("{u}%"));
                    let t = target(src, "averageUtilization")
                        .map_or_else(|| "<auto>".to_string(), |u| format!("{u}%"));
                    format!("{label}: {c}/{t}")
                }
            }
            "Pods" => {
                let c = cur("pods", "averageValue").unwrap_or_else(unknown);
                let t = target("pods", "averageValue").unwrap_or_default();
                format!("{c}/{t}")
            }
            "Object" | "External" => {
                let src = if ty == "Object" { "object" } else { "external" };
                if let Some(t) = target(src, "averageValue") {
                    let c = cur(src, "averageValue").unwrap_or_else(unknown);
                    format!("{c}/{t} (avg)")
                } else {
                    let c = cur(src, "value").unwrap_or_else(unknown);
                    let t = target(src, "value").unwrap_or_default();
                    format!("{c}/{t}")
                }
            }
            _ => "<unknown type>".into(),
        };
        list.push(item);
    }
    let mut out = list.join(", ");
    if specs.len() > MAX {
        out.push_str(&format!(" + {} more...", specs.len() - MAX));
    }
    out
}

#[cfg(test)]
mod tests;
