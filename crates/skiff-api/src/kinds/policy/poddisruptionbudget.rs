//! policy/v1 PodDisruptionBudget: how many of a set of pods voluntary disruptions (evictions)
//! may take down. Upstream's validation (minAvailable xor maxUnavailable, each a non-negative
//! integer or a percent up to 100%, a valid selector, the unhealthy-pod eviction policy) and
//! printer; the status counters are always present (no omitempty upstream).

use serde_json::{json, Map, Value};

use crate::kinds::prelude::*;

pub(crate) const KIND: Kind = Kind {
    info: ResourceInfo {
        group: "policy",
        version: "v1",
        kind: "PodDisruptionBudget",
        list_kind: "PodDisruptionBudgetList",
        plural: "poddisruptionbudgets",
        singular: "poddisruptionbudget",
        namespaced: true,
        short_names: &["pdb"],
        categories: &[],
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
    ..Kind::BASE
};

/// The unhealthy-pod eviction policies upstream supports.
pub const UNHEALTHY_POD_EVICTION_POLICIES: &[&str] = &["AlwaysAllow", "IfHealthyBudget"];

/// The status counters are plain ints upstream: a new object reads them as 0.
fn defaults(obj: &mut Map<String, Value>) {
    let status = child(obj, "status");
    for key in [
        "disruptionsAllowed",
        "currentHealthy",
        "desiredHealthy",
        "expectedPods",
    ] {
        default(status, key, json!(0));
    }
}

/// `ValidatePositiveIntOrPercent` and `IsNotMoreThan100Percent`.
fn int_or_percent(e: &mut Errs, v: &Value, field: &str) {
    match v {
        Value::String(s) => {
            let Some(digits) = s.strip_suffix('%') else {
                e.invalid(field, v, "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%', or '93%', regex used for validation is '[0-9]+%')");
                return;
            };
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                e.invalid(field, v, "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%', or '93%', regex used for validation is '[0-9]+%')");
                return;
            }
            if digits.parse::<u64>().map_or(true, |p| p > 100) {
                e.invalid(field, v, "must not be greater than 100%");
            }
        }
        Value::Number(n) => {
            if n.as_i64().is_none_or(|i| i < 0) {
                e.invalid(field, v, "must be greater than or equal to 0");
            }
        }
        _ => e.invalid(field, v, "must be an integer or percentage (e.g '5%')"),
    }
}

/// `ValidatePodDisruptionBudget` (spec and status).
fn validate(e: &mut Errs, obj: &Map<String, Value>, _old: Option<&Value>) {
    let empty = Value::Object(Map::new());
    let spec = obj.get("spec").unwrap_or(&empty);
    let min = spec.get("minAvailable").filter(|v| !v.is_null());
    let max = spec.get("maxUnavailable").filter(|v| !v.is_null());
    if min.is_some() && max.is_some() {
        e.invalid_omit("spec", "minAvailable and maxUnavailable cannot be both set");
    }
    if let Some(v) = min {
        int_or_percent(e, v, "spec.minAvailable");
    }
    if let Some(v) = max {
        int_or_percent(e, v, "spec.maxUnavailable");
    }
    if let Some(sel) = spec.get("selector").filter(|v| !v.is_null()) {
        label_selector(e, sel, "spec.selector");
    }
    if let Some(p) = spec
        .get("unhealthyPodEvictionPolicy")
        .filter(|v| !v.is_null())
    {
        let p = p.as_str().unwrap_or("");
        if !UNHEALTHY_POD_EVICTION_POLICIES.contains(&p) {
            e.not_supported(
                "spec.unhealthyPodEvictionPolicy",
                p,
                UNHEALTHY_POD_EVICTION_POLICIES,
            );
        }
    }
    if let Some(status) = obj.get("status") {
        for (key, field) in [
            ("disruptionsAllowed", "status.disruptionsAllowed"),
            ("currentHealthy", "status.currentHealthy"),
            ("desiredHealthy", "status.desiredHealthy"),
            ("expectedPods", "status.expectedPods"),
        ] {
            non_negative(e, status, key, field);
        }
    }
}

#[rustfmt::skip]
const COLUMNS: &[Col] = &[
    NAME,
    ("Min Available", "string", 0, "An eviction is allowed if at least \"minAvailable\" pods selected by \"selector\" will still be available after the eviction, i.e. even in the absence of the evicted pod.  So for example you can prevent all voluntary evictions by specifying \"100%\"."),
    ("Max Unavailable", "string", 0, "An eviction is allowed if at most \"maxUnavailable\" pods selected by \"selector\" are unavailable after the eviction, i.e. even in absence of the evicted pod. For example, one can prevent all voluntary evictions by specifying 0. This is a mutually exclusive setting with \"minAvailable\"."),
    ("Allowed Disruptions", "integer", 0, "Number of pod disruptions that are currently allowed."),
    AGE,
];

/// An int-or-string cell, `N/A` when unset (upstream's printer).
fn int_or_string(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => "N/A".into(),
    }
}

fn cells(obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let (name, age) = name_age(obj, now);
    vec![
        json!(name),
        json!(int_or_string(obj.pointer("/spec/minAvailable"))),
        json!(int_or_string(obj.pointer("/spec/maxUnavailable"))),
        json!(n(obj, "/status/disruptionsAllowed")),
        json!(age),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn causes(spec: Value) -> Vec<(String, String)> {
        let mut e = Errs::default();
        let obj = json!({"metadata": {"name": "b", "namespace": "d"}, "spec": spec});
        validate(&mut e, obj.as_object().expect("object"), None);
        e.0.into_iter().map(|c| (c.field, c.message)).collect()
    }

    #[test]
    fn int_or_percent_rules() {
        assert!(causes(json!({"minAvailable": 0})).is_empty());
        assert!(causes(json!({"maxUnavailable": "100%"})).is_empty());
        assert_eq!(
            causes(json!({"minAvailable": "5"})),
            [("spec.minAvailable".to_string(), "Invalid value: \"5\": a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%', or '93%', regex used for validation is '[0-9]+%')".to_string())]
        );
        assert_eq!(
            causes(json!({"maxUnavailable": "101%"}))[0].1,
            "Invalid value: \"101%\": must not be greater than 100%"
        );
        assert_eq!(
            causes(json!({"unhealthyPodEvictionPolicy": "Sometimes"}))[0].1,
            "Unsupported value: \"Sometimes\": supported values: \"AlwaysAllow\", \"IfHealthyBudget\""
        );
    }

    #[test]
    fn table_cells() {
        let now: jiff::Timestamp = "2026-12-07T12:00:00Z".parse().expect("time");
        let obj = json!({"metadata": {"name": "b", "creationTimestamp": "2026-12-07T11:59:00Z"},
            "spec": {"maxUnavailable": "25%"}, "status": {"disruptionsAllowed": 2}});
        assert_eq!(
            cells(&obj, now),
            [
                json!("b"),
                json!("N/A"),
                json!("25%"),
                json!(2),
                json!("60s")
            ]
        );
    }
}
