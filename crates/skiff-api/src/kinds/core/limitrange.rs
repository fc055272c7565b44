//! core/v1 LimitRange: per-object defaults and min/max of resources in a namespace.
//! Defaulting is upstream's `SetDefaults_LimitRangeItem` (a Container item's `default` from
//! `max`, `defaultRequest` from `default` then `min`); validation is `ValidateLimitRange`
//! (min ≤ defaultRequest ≤ default ≤ max, ratio ≥ 1 and ≤ max/min, no defaults for Pod items,
//! a PersistentVolumeClaim item needs a storage min or max); the Table is Name and Created At.
//! The API server's LimitRanger admission applies them to pods and claims.

use serde_json::{json, Map, Value};

use crate::kinds::prelude::*;
use skiff_semantics::quantity::Quantity;
use skiff_semantics::quota::Amount;

pub(crate) const KIND: Kind = Kind {
    info: ResourceInfo {
        group: "",
        version: "v1",
        kind: "LimitRange",
        list_kind: "LimitRangeList",
        plural: "limitranges",
        singular: "limitrange",
        namespaced: true,
        short_names: &["limits"],
        categories: &[],
        verbs: FULL,
        subresources: &[],
    },
    defaults,
    validate,
    table: Table {
        columns: &[NAME, ("Created At", "date", 0, AGE_DOC)],
        cells,
        ..Table::BASE
    },
    ..Kind::BASE
};

fn defaults(obj: &mut Map<String, Value>) {
    let items = obj
        .get_mut("spec")
        .and_then(|s| s.get_mut("limits"))
        .and_then(Value::as_array_mut);
    for item in items.into_iter().flatten().filter_map(Value::as_object_mut) {
        skiff_semantics::quota::default_limit_range_item(item);
    }
}

/// `validateLimitRangeResourceName`: Pod and Container items name standard container
/// resources (or qualified extended ones); others any qualified name.
fn resource_name(e: &mut Errs, ty: &str, name: &str, field: &str) {
    let errs = qualified_name(name);
    for m in &errs {
        e.invalid_str(field, name, m);
    }
    if errs.is_empty()
        && matches!(ty, "Pod" | "Container")
        && !name.contains('/')
        && !matches!(name, "cpu" | "memory" | "ephemeral-storage")
        && !name.starts_with("hugepages-")
    {
        e.invalid_str(
            field,
            name,
            "must be a standard limit type or fully qualified",
        );
    }
}

/// A list's quantities (already checked non-negative), by resource.
fn list(
    e: &mut Errs,
    item: &Map<String, Value>,
    key: &str,
    ty: &str,
    f: &str,
) -> Vec<(String, Amount)> {
    let mut out = Vec::new();
    for (k, v) in item
        .get(key)
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        let field = format!("{f}.{key}[{k}]");
        resource_name(e, ty, k, &field);
        match v.as_str().and_then(Amount::parse) {
            Some(a) if a.q.is_negative() => {
                e.invalid(&field, v, "must be greater than or equal to 0")
            }
            Some(a) => out.push((k.clone(), a)),
            None => e.invalid(
                &field,
                v,
                "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
            ),
        }
    }
    out
}

fn validate_item(e: &mut Errs, item: &Map<String, Value>, f: &str) {
    let ty = item.get("type").and_then(Value::as_str).unwrap_or("");
    let max = list(e, item, "max", ty, f);
    let min = list(e, item, "min", ty, f);
    let (default, request) = if ty == "Pod" {
        for key in ["default", "defaultRequest"] {
            if item
                .get(key)
                .and_then(Value::as_object)
                .is_some_and(|m| !m.is_empty())
            {
                e.forbidden(
                    &format!("{f}.{key}"),
                    "may not be specified when `type` is 'Pod'",
                );
            }
        }
        (Vec::new(), Vec::new())
    } else {
        (
            list(e, item, "default", ty, f),
            list(e, item, "defaultRequest", ty, f),
        )
    };
    let ratio = list(e, item, "maxLimitRequestRatio", ty, f);
    if ty == "PersistentVolumeClaim"
        && !min.iter().any(|(k, _)| k == "storage")
        && !max.iter().any(|(k, _)| k == "storage")
    {
        e.required(
            &format!("{f}.limits"),
            "either minimum or maximum storage value is required, but neither was provided",
        );
    }
    let get = |l: &[(String, Amount)], k: &str| l.iter().find(|(n, _)| n == k).map(|(_, a)| *a);
    let mut keys: Vec<&String> = max
        .iter()
        .chain(&min)
        .chain(&default)
        .chain(&request)
        .chain(&ratio)
        .map(|(k, _)| k)
        .collect();
    keys.sort();
    keys.dedup();
    for k in keys {
        let (mn, mx, d, dr, r) = (
            get(&min, k),
            get(&max, k),
            get(&default, k),
            get(&request, k),
            get(&ratio, k),
        );
        let bad = |e: &mut Errs, key: &str, shown: &Amount, msg: String| {
            e.invalid_str(&format!("{f}.{key}[{k}]"), &shown.text(), &msg);
        };
        if let (Some(mn), Some(mx)) = (mn, mx) {
            if mn.q > mx.q {
                bad(
                    e,
                    "min",
                    &mn,
                    format!(
                        "min value {} is greater than max value {}",
                        mn.text(),
                        mx.text()
                    ),
                );
            }
        }
        if let (Some(dr), Some(mn)) = (dr, mn) {
            if mn.q > dr.q {
                bad(
                    e,
                    "defaultRequest",
                    &dr,
                    format!(
                        "min value {} is greater than default request value {}",
                        mn.text(),
                        dr.text()
                    ),
                );
            }
        }
        if let (Some(dr), Some(mx)) = (dr, mx) {
            if dr.q > mx.q {
                bad(
                    e,
                    "defaultRequest",
                    &dr,
                    format!(
                        "default request value {} is greater than max value {}",
                        dr.text(),
                        mx.text()
                    ),
                );
            }
        }
        if let (Some(dr), Some(d)) = (dr, d) {
            if dr.q > d.q {
                bad(
                    e,
                    "defaultRequest",
                    &dr,
                    format!(
                        "default request value {} is greater than default limit value {}",
                        dr.text(),
                        d.text()
                    ),
                );
            }
        }
        if let (Some(d), Some(mn)) = (d, mn) {
            if mn.q > d.q {
                bad(
                    e,
                    "default",
                    &mn,
                    format!(
                        "min value {} is greater than default value {}",
                        mn.text(),
                        d.text()
                    ),
                );
            }
        }
        if let (Some(d), Some(mx)) = (d, mx) {
            if d.q > mx.q {
                bad(
                    e,
                    "default",
                    &mx,
                    format!(
                        "default value {} is greater than max value {}",
                        d.text(),
                        mx.text()
                    ),
                );
            }
        }
        if let Some(r) = r {
            if r.q < Quantity::new(1, 0) {
                bad(
                    e,
                    "maxLimitRequestRatio",
                    &r,
                    format!("ratio {} is less than 1", r.text()),
                );
            }
            if let (Some(mn), Some(mx)) = (mn, mx) {
                let (lo, hi) = (mn.q.milli_value(), mx.q.milli_value());
                // f64 only for the bound upstream prints and compares.
                let limit = hi as f64 / lo as f64;
                if r.q.milli_value() as f64 / 1000.0 > limit {
                    bad(
                        e,
                        "maxLimitRequestRatio",
                        &r,
                        format!("ratio {} is greater than max/min = {limit:.6}", r.text()),
                    );
                }
            }
        }
    }
}

/// Upstream's `ValidateLimitRange`: each item, and no type twice.
fn validate(e: &mut Errs, obj: &Map<String, Value>, _old: Option<&Value>) {
    let mut seen = Vec::new();
    for (i, item) in obj
        .get("spec")
        .and_then(|s| s.get("limits"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        let f = format!("spec.limits[{i}]");
        let Some(item) = item.as_object() else {
            continue;
        };
        let ty = item.get("type").and_then(Value::as_str).unwrap_or("");
        if seen.contains(&ty) {
            e.duplicate(&format!("{f}.type"), ty);
        }
        seen.push(ty);
        validate_item(e, item, &f);
    }
}

fn cells(obj: &Value, _now: jiff::Timestamp) -> Vec<Value> {
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    let created = obj
        .pointer("/metadata/creationTimestamp")
        .and_then(Value::as_str)
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .map_or_else(
            || "0001-01-01T00:00:00Z".to_string(),
            |t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        );
    vec![json!(name), json!(created)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn causes(mut obj: Value) -> Vec<String> {
        defaults(obj.as_object_mut().unwrap());
        let mut e = Errs::default();
        validate(&mut e, obj.as_object().unwrap(), None);
        e.0.into_iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect()
    }

    #[test]
    fn defaults_fill_from_max_and_min() {
        let mut lr = json!({"spec": {"limits": [{"type": "Container", "max": {"cpu": "1"},
            "min": {"memory": "64Mi"}}]}});
        defaults(lr.as_object_mut().unwrap());
        assert_eq!(
            lr.pointer("/spec/limits/0/default"),
            Some(&json!({"cpu": "1"}))
        );
        assert_eq!(
            lr.pointer("/spec/limits/0/defaultRequest"),
            Some(&json!({"cpu": "1", "memory": "64Mi"}))
        );
    }

    #[test]
    fn validation_follows_upstream() {
        assert!(causes(
            json!({"spec": {"limits": [{"type": "Container", "min": {"cpu": "100m"},
            "defaultRequest": {"cpu": "200m"}, "default": {"cpu": "500m"}, "max": {"cpu": "1"}}]}})
        )
        .is_empty());
        assert_eq!(
            causes(json!({"spec": {"limits": [{"type": "Container",
            "default": {"cpu": "2"}, "max": {"cpu": "1"}}]}})),
            vec![
                r#"spec.limits[0].defaultRequest[cpu]: Invalid value: "2": default request value 2 is greater than max value 1"#,
                r#"spec.limits[0].default[cpu]: Invalid value: "1": default value 2 is greater than max value 1"#,
            ]
        );
        assert_eq!(
            causes(json!({"spec": {"limits": [{"type": "Pod", "default": {"cpu": "1"}}]}})),
            vec!["spec.limits[0].default: Forbidden: may not be specified when `type` is 'Pod'"]
        );
        assert_eq!(causes(json!({"spec": {"limits": [{"type": "PersistentVolumeClaim", "max": {"cpu": "1"}}]}})),
            vec!["spec.limits[0].limits: Required value: either minimum or maximum storage value is required, but neither was provided"]);
        assert_eq!(
            causes(
                json!({"spec": {"limits": [{"type": "Container", "maxLimitRequestRatio": {"cpu": "500m"}}]}})
            ),
            vec![
                r#"spec.limits[0].maxLimitRequestRatio[cpu]: Invalid value: "500m": ratio 500m is less than 1"#
            ]
        );
    }
}
