//! apps/v1 Deployment: spec and strategy defaults, workload and strategy validation, the printer.

use serde_json::{json, Map, Value};

use crate::kinds::prelude::*;

pub(crate) const KIND: Kind = Kind {
    info: ResourceInfo {
        group: "apps",
        version: "v1",
        kind: "Deployment",
        list_kind: "DeploymentList",
        plural: "deployments",
        singular: "deployment",
        namespaced: true,
        short_names: &["deploy"],
        categories: ALL,
        verbs: FULL,
        subresources: &["status", "scale"],
    },
    defaults,
    validate,
    table: Table {
        columns: COLUMNS,
        cells,
        ..Table::BASE
    },
    patch_root: Ty::Workload,
    ..Kind::BASE
};

fn defaults(obj: &mut Map<String, Value>) {
    let spec = child(obj, "spec");
    default(spec, "replicas", json!(1));
    let strategy = child(spec, "strategy");
    default(strategy, "type", json!("RollingUpdate"));
    if strategy.get("type") == Some(&json!("RollingUpdate")) {
        let ru = child(strategy, "rollingUpdate");
        default(ru, "maxUnavailable", json!("25%"));
        default(ru, "maxSurge", json!("25%"));
    }
    default(spec, "revisionHistoryLimit", json!(10));
    default(spec, "progressDeadlineSeconds", json!(600));
    pod_template(spec);
}

fn validate(e: &mut Errs, obj: &Map<String, Value>, old: Option<&Value>) {
    let spec = obj.get("spec");
    workload(e, spec, old.and_then(|o| o.get("spec")), "deployment");
    strategy(e, spec);
}

fn strategy(e: &mut Errs, spec: Option<&Value>) {
    let Some(strategy) = spec.and_then(|s| s.get("strategy")) else {
        return;
    };
    let ty = strategy.get("type").and_then(Value::as_str).unwrap_or("");
    let ru = strategy.get("rollingUpdate").filter(|v| !v.is_null());
    match ty {
        "Recreate" => {
            if ru.is_some() {
                e.forbidden(
                    "spec.strategy.rollingUpdate",
                    "may not be specified when strategy `type` is 'Recreate'",
                );
            }
        }
        "RollingUpdate" => {
            let Some(ru) = ru else {
                return;
            };
            let mut zero = [false, false];
            for (i, key) in ["maxUnavailable", "maxSurge"].iter().enumerate() {
                let f = format!("spec.strategy.rollingUpdate.{key}");
                let Some(v) = ru.get(*key).filter(|v| !v.is_null()) else {
                    continue;
                };
                match int_or_percent(v) {
                    None => e.invalid(&f, v, "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')"),
                    Some((n, pct)) => {
                        if n < 0 {
                            e.invalid(&f, v, "must be greater than or equal to 0");
                        }
                        if pct && n > 100 && *key == "maxUnavailable" {
                            e.invalid(&f, v, "must not be greater than 100%");
                        }
                        zero[i] = n == 0;
                    }
                }
            }
            if zero[0] && zero[1] {
                let v = ru.get("maxUnavailable").cloned().unwrap_or(Value::Null);
                e.invalid(
                    "spec.strategy.rollingUpdate.maxUnavailable",
                    &v,
                    "may not be 0 when `maxSurge` is 0",
                );
            }
        }
        "" => {}
        other => e.not_supported("spec.strategy.type", other, &["Recreate", "RollingUpdate"]),
    }
}

/// Percent or int value of an IntOrString against 100 (None = not a valid value).
fn int_or_percent(v: &Value) -> Option<(i64, bool)> {
    match v {
        Value::Number(n) => n.as_i64().map(|n| (n, false)),
        Value::String(s) => s.strip_suffix('%')?.parse().ok().map(|n| (n, true)),
        _ => None,
    }
}

#[rustfmt::skip]
const COLUMNS: &[Col] = &[
        NAME,
        ("Ready", "string", 0, "Number of the pod with ready state"),
        ("Up-to-date", "string", 0, "Total number of non-terminating pods targeted by this deployment that have the desired template spec."),
        ("Available", "string", 0, "Total number of available non-terminating pods (ready for at least minReadySeconds) targeted by this deployment."),
        AGE,
        ("Containers", "string", 1, "Names of each container in the template."),
        ("Images", "string", 1, "Images referenced by each container in the template."),
        ("Selector", "string", 1, "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment."),
];

fn cells(obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let (name, age) = name_age(obj, now);
    let (names, images) = container_cells(obj);
    vec![
        json!(name),
        json!(format!(
            "{}/{}",
            n(obj, "/status/readyReplicas"),
            n(obj, "/spec/replicas")
        )),
        json!(n(obj, "/status/updatedReplicas")),
        json!(n(obj, "/status/availableReplicas")),
        json!(age),
        json!(names),
        json!(images),
        json!(selector_string(obj.pointer("/spec/selector"))),
    ]
}
