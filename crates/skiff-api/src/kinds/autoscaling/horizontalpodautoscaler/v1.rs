//! autoscaling/v1 HorizontalPodAutoscaler ⇄ the stored autoscaling/v2 object, with upstream's
//! round-trip annotations: v1 has only the CPU utilization target, so the other metrics, the
//! current metrics, the behavior and the conditions travel in `autoscaling.alpha.kubernetes.io/*`
//! annotations (metrics in v1's own metric shapes, as upstream writes them).

use serde_json::{json, Map, Value};

const METRICS: &str = "autoscaling.alpha.kubernetes.io/metrics";
const CURRENT_METRICS: &str = "autoscaling.alpha.kubernetes.io/current-metrics";
const CONDITIONS: &str = "autoscaling.alpha.kubernetes.io/conditions";
const BEHAVIOR: &str = "autoscaling.alpha.kubernetes.io/behavior";
const ROUND_TRIP: [&str; 4] = [METRICS, CURRENT_METRICS, CONDITIONS, BEHAVIOR];

/// One metric source type: (v2 key, v1 key, [(path in the v2 source, key in the v1 source)]).
type SourceMap = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

#[rustfmt::skip]
const SPEC_MAP: &[(&str, SourceMap)] = &[
    ("Resource", ("resource", "resource", &[
        ("/name", "name"),
        ("/target/averageUtilization", "targetAverageUtilization"),
        ("/target/averageValue", "targetAverageValue"),
    ])),
    ("ContainerResource", ("containerResource", "containerResource", &[
        ("/name", "name"),
        ("/container", "container"),
        ("/target/averageUtilization", "targetAverageUtilization"),
        ("/target/averageValue", "targetAverageValue"),
    ])),
    ("Pods", ("pods", "pods", &[
        ("/metric/name", "metricName"),
        ("/metric/selector", "selector"),
        ("/target/averageValue", "targetAverageValue"),
    ])),
    ("Object", ("object", "object", &[
        ("/describedObject", "target"),
        ("/metric/name", "metricName"),
        ("/metric/selector", "selector"),
        ("/target/value", "targetValue"),
        ("/target/averageValue", "averageValue"),
    ])),
    ("External", ("external", "external", &[
        ("/metric/name", "metricName"),
        ("/metric/selector", "metricSelector"),
        ("/target/value", "targetValue"),
        ("/target/averageValue", "targetAverageValue"),
    ])),
];

#[rustfmt::skip]
const STATUS_MAP: &[(&str, SourceMap)] = &[
    ("Resource", ("resource", "resource", &[
        ("/name", "name"),
        ("/current/averageUtilization", "currentAverageUtilization"),
        ("/current/averageValue", "currentAverageValue"),
    ])),
    ("ContainerResource", ("containerResource", "containerResource", &[
        ("/name", "name"),
        ("/container", "container"),
        ("/current/averageUtilization", "currentAverageUtilization"),
        ("/current/averageValue", "currentAverageValue"),
    ])),
    ("Pods", ("pods", "pods", &[
        ("/metric/name", "metricName"),
        ("/metric/selector", "selector"),
        ("/current/averageValue", "currentAverageValue"),
    ])),
    ("Object", ("object", "object", &[
        ("/describedObject", "target"),
        ("/metric/name", "metricName"),
        ("/metric/selector", "selector"),
        ("/current/value", "currentValue"),
        ("/current/averageValue", "averageValue"),
    ])),
    ("External", ("external", "external", &[
        ("/metric/name", "metricName"),
        ("/metric/selector", "metricSelector"),
        ("/current/value", "currentValue"),
        ("/current/averageValue", "currentAverageValue"),
    ])),
];

/// Sets `v` at a JSON pointer below `root`, creating objects on the way.
fn set_ptr(root: &mut Map<String, Value>, ptr: &str, v: Value) {
    let mut parts = ptr.trim_start_matches('/').split('/').peekable();
    let mut cur = root;
    while let Some(p) = parts.next() {
        if parts.peek().is_none() {
            cur.insert(p.to_string(), v);
            return;
        }
        let slot = cur.entry(p.to_string()).or_insert_with(|| json!({}));
        if !slot.is_object() {
            *slot = json!({});
        }
        let Some(next) = slot.as_object_mut() else {
            return;
        };
        cur = next;
    }
}

/// A v2 metric (spec or status) in v1's shape.
fn metric_to_v1(m: &Value, table: &[(&str, SourceMap)]) -> Value {
    let ty = m.get("type").and_then(Value::as_str).unwrap_or("");
    let mut out = Map::new();
    out.insert("type".into(), json!(ty));
    if let Some((_, (k2, k1, fields))) = table.iter().find(|(t, _)| *t == ty) {
        let mut src = Map::new();
        for (ptr, key) in *fields {
            if let Some(v) = m.get(*k2).and_then(|s| s.pointer(ptr)) {
                src.insert((*key).to_string(), v.clone());
            }
        }
        out.insert((*k1).to_string(), Value::Object(src));
    }
    Value::Object(out)
}

/// A v1-shaped metric (from an annotation) in v2's shape; spec targets get their type back.
fn metric_to_v2(m: &Value, table: &[(&str, SourceMap)], spec: bool) -> Value {
    let ty = m.get("type").and_then(Value::as_str).unwrap_or("");
    let mut out = Map::new();
    out.insert("type".into(), json!(ty));
    if let Some((_, (k2, k1, fields))) = table.iter().find(|(t, _)| *t == ty) {
        let mut src = Map::new();
        for (ptr, key) in *fields {
            if let Some(v) = m.get(*k1).and_then(|s| s.get(*key)) {
                set_ptr(&mut src, ptr, v.clone());
            }
        }
        if spec {
            let t = src.get("target");
            let target_type = if t.and_then(|t| t.get("averageUtilization")).is_some() {
                "Utilization"
            } else if t.and_then(|t| t.get("value")).is_some() {
                "Value"
            } else {
                "AverageValue"
            };
            set_ptr(&mut src, "/target/type", json!(target_type));
        }
        out.insert((*k2).to_string(), Value::Object(src));
    }
    Value::Object(out)
}

fn is_cpu(m: &Value) -> bool {
    m.get("type").and_then(Value::as_str) == Some("Resource")
        && m.pointer("/resource/name").and_then(Value::as_str) == Some("cpu")
}

/// Removes the round-trip annotations (and an emptied annotation map), returning them.
fn drop_round_trip(obj: &mut Map<String, Value>) -> Map<String, Value> {
    let mut taken = Map::new();
    let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
        return taken;
    };
    if let Some(a) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
        for k in ROUND_TRIP {
            if let Some(v) = a.remove(k) {
                taken.insert(k.to_string(), v);
            }
        }
        if a.is_empty() {
            meta.remove("annotations");
        }
    }
    taken
}

fn add_annotations(obj: &mut Map<String, Value>, extra: Map<String, Value>) {
    if extra.is_empty() {
        return;
    }
    let meta = obj.entry("metadata").or_insert_with(|| json!({}));
    let Some(meta) = meta.as_object_mut() else {
        return;
    };
    let slot = meta.entry("annotations").or_insert_with(|| json!({}));
    if !slot.is_object() {
        *slot = json!({});
    }
    if let Some(a) = slot.as_object_mut() {
        a.extend(extra);
    }
}

fn copy(from: &Value, to: &mut Map<String, Value>, keys: &[&str]) {
    for key in keys {
        if let Some(v) = from.get(*key).filter(|v| !v.is_null()) {
            to.insert((*key).to_string(), v.clone());
        }
    }
}

const STATUS_KEYS: &[&str] = &[
    "observedGeneration",
    "lastScaleTime",
    "currentReplicas",
    "desiredReplicas",
];
const SPEC_KEYS: &[&str] = &["scaleTargetRef", "minReplicas", "maxReplicas"];

/// The stored v2 object as autoscaling/v1 shows it.
pub(super) fn from_v2(mut value: Value) -> Value {
    let Some(obj) = value.as_object_mut() else {
        return value;
    };
    drop_round_trip(obj);
    obj.insert("apiVersion".into(), json!("autoscaling/v1"));
    let spec = obj.remove("spec").unwrap_or(json!({}));
    let status = obj.remove("status").unwrap_or(json!({}));
    let metrics = spec
        .get("metrics")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    let mut v1_spec = Map::new();
    copy(&spec, &mut v1_spec, SPEC_KEYS);
    let mut others = Vec::new();
    for m in metrics {
        match m.pointer("/resource/target/averageUtilization") {
            Some(u) if is_cpu(m) => {
                v1_spec.insert("targetCPUUtilizationPercentage".into(), u.clone());
            }
            _ => others.push(metric_to_v1(m, SPEC_MAP)),
        }
    }
    let mut v1_status = Map::new();
    copy(&status, &mut v1_status, STATUS_KEYS);
    // Both counts have no omitempty in v1.
    for key in ["currentReplicas", "desiredReplicas"] {
        v1_status.entry(key).or_insert(json!(0));
    }
    let current = status
        .get("currentMetrics")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    for m in current.iter().filter(|m| is_cpu(m)) {
        if let Some(u) = m.pointer("/resource/current/averageUtilization") {
            v1_status.insert("currentCPUUtilizationPercentage".into(), u.clone());
        }
    }
    let mut extra = Map::new();
    if !others.is_empty() {
        extra.insert(METRICS.into(), json!(Value::Array(others).to_string()));
    }
    if !current.is_empty() {
        let v1: Vec<Value> = current
            .iter()
            .map(|m| metric_to_v1(m, STATUS_MAP))
            .collect();
        extra.insert(CURRENT_METRICS.into(), json!(Value::Array(v1).to_string()));
    }
    if let Some(b) = spec.get("behavior").filter(|b| b.is_object()) {
        extra.insert(BEHAVIOR.into(), json!(b.to_string()));
    }
    if let Some(c) = status
        .get("conditions")
        .filter(|c| c.as_array().is_some_and(|c| !c.is_empty()))
    {
        extra.insert(CONDITIONS.into(), json!(c.to_string()));
    }
    add_annotations(obj, extra);
    obj.insert("spec".into(), Value::Object(v1_spec));
    obj.insert("status".into(), Value::Object(v1_status));
    value
}

fn decode(taken: &Map<String, Value>, key: &str) -> Option<Value> {
    serde_json::from_str(taken.get(key)?.as_str()?).ok()
}

fn decode_list(taken: &Map<String, Value>, key: &str) -> Option<Vec<Value>> {
    match decode(taken, key)? {
        Value::Array(a) => Some(a),
        _ => None,
    }
}

/// An autoscaling/v1 object as the v2 object it is stored as.
pub(super) fn to_v2(mut value: Value) -> Value {
    let Some(obj) = value.as_object_mut() else {
        return value;
    };
    let taken = drop_round_trip(obj);
    obj.insert("apiVersion".into(), json!("autoscaling/v2"));
    let spec = obj.remove("spec").unwrap_or(json!({}));
    let status = obj.remove("status");
    let mut v2_spec = Map::new();
    copy(&spec, &mut v2_spec, SPEC_KEYS);
    // Upstream puts the annotated metrics first and the CPU target last.
    let mut metrics: Vec<Value> = decode_list(&taken, METRICS)
        .unwrap_or_default()
        .iter()
        .map(|m| metric_to_v2(m, SPEC_MAP, true))
        .collect();
    if let Some(cpu) = spec
        .get("targetCPUUtilizationPercentage")
        .filter(|v| !v.is_null())
    {
        metrics.push(json!({"type": "Resource", "resource": {"name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": cpu}}}));
    }
    if !metrics.is_empty() {
        v2_spec.insert("metrics".into(), Value::Array(metrics));
    }
    if let Some(b) = decode(&taken, BEHAVIOR).filter(Value::is_object) {
        v2_spec.insert("behavior".into(), b);
    }
    obj.insert("spec".into(), Value::Object(v2_spec));
    if let Some(status) = status.filter(Value::is_object) {
        let mut v2_status = Map::new();
        copy(&status, &mut v2_status, STATUS_KEYS);
        let current: Vec<Value> = match decode_list(&taken, CURRENT_METRICS) {
            Some(list) => list
                .iter()
                .map(|m| metric_to_v2(m, STATUS_MAP, false))
                .collect(),
            None => status
                .get("currentCPUUtilizationPercentage")
                .filter(|v| !v.is_null())
                .map(|u| {
                    vec![json!({"type": "Resource", "resource": {"name": "cpu",
                    "current": {"averageUtilization": u}}})]
                })
                .unwrap_or_default(),
        };
        if !current.is_empty() {
            v2_status.insert("currentMetrics".into(), Value::Array(current));
        }
        if let Some(c) = decode(&taken, CONDITIONS).filter(Value::is_array) {
            v2_status.insert("conditions".into(), c);
        }
        obj.insert("status".into(), Value::Object(v2_status));
    }
    value
}
