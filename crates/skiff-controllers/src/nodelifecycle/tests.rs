//! Unit tests of the condition→taint mapping and the eviction timing.

use k8s_openapi::api::core::v1::{Node, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::json;

use super::eviction::{eviction_time, When};
use super::*;

fn node(ready: &str, extra_conditions: serde_json::Value, unschedulable: bool) -> Node {
    let mut conds = vec![json!({"type": "Ready", "status": ready})];
    if let Some(a) = extra_conditions.as_array() {
        conds.extend(a.iter().cloned());
    }
    serde_json::from_value(json!({
        "metadata": {"name": "n1"},
        "spec": {"unschedulable": unschedulable},
        "status": {"conditions": conds},
    }))
    .expect("node")
}

fn taint(key: &str, effect: &str, added: Option<&str>) -> Taint {
    Taint {
        key: key.into(),
        effect: effect.into(),
        value: None,
        time_added: added.map(|a| Time(a.parse().expect("ts"))),
    }
}

fn toleration(v: serde_json::Value) -> Toleration {
    serde_json::from_value(v).expect("toleration")
}

#[test]
fn conditions_map_to_taints() {
    assert!(desired_taints(&node("True", json!([]), false), true).is_empty());
    assert_eq!(
        desired_taints(&node("Unknown", json!([]), false), true),
        vec![
            (taints::UNREACHABLE, "NoSchedule"),
            (taints::UNREACHABLE, "NoExecute")
        ]
    );
    assert_eq!(
        desired_taints(&node("False", json!([]), false), true),
        vec![
            (taints::NOT_READY, "NoSchedule"),
            (taints::NOT_READY, "NoExecute")
        ]
    );
    // Full disruption: no NoExecute.
    assert_eq!(
        desired_taints(&node("False", json!([]), false), false),
        vec![(taints::NOT_READY, "NoSchedule")]
    );
    assert_eq!(
        desired_taints(
            &node(
                "True",
                json!([{"type": "DiskPressure", "status": "True"}]),
                true
            ),
            true
        ),
        vec![
            ("node.kubernetes.io/disk-pressure", "NoSchedule"),
            ("node.kubernetes.io/unschedulable", "NoSchedule")
        ]
    );
}

#[test]
fn taints_are_reconciled_keeping_foreign_ones_and_time_added() {
    let t0 = "2024-01-01T00:00:00Z";
    let now = Time("2024-01-01T00:01:00Z".parse().expect("ts"));
    let current = vec![
        taint("dedicated", "NoSchedule", None),
        taint(taints::NOT_READY, "NoSchedule", Some(t0)),
        taint(taints::NOT_READY, "NoExecute", Some(t0)),
    ];
    // Same desired set: nothing to do.
    let desired = [
        (taints::NOT_READY, "NoSchedule"),
        (taints::NOT_READY, "NoExecute"),
    ];
    assert!(reconcile_taints(&current, &desired, &now).is_none());
    // not-ready → unreachable.
    let desired = [
        (taints::UNREACHABLE, "NoSchedule"),
        (taints::UNREACHABLE, "NoExecute"),
    ];
    let out = reconcile_taints(&current, &desired, &now).expect("changed");
    assert_eq!(out.len(), 3);
    assert_eq!(out[0].key, "dedicated");
    assert!(out[1..]
        .iter()
        .all(|t| t.key == taints::UNREACHABLE && t.time_added == Some(now.clone())));
    // Healthy: only the foreign taint stays.
    let out = reconcile_taints(&current, &[], &now).expect("changed");
    assert_eq!(out, vec![taint("dedicated", "NoSchedule", None)]);
}

#[test]
fn eviction_timing() {
    let t0: jiff::Timestamp = "2024-01-01T00:00:00Z".parse().expect("ts");
    let taints = [taint(
        taints::UNREACHABLE,
        "NoExecute",
        Some("2024-01-01T00:00:00Z"),
    )];
    // Not tolerated → now.
    assert_eq!(eviction_time(&taints, &[]), When::Now);
    let t = |secs: Option<i64>| {
        toleration(
            json!({"key": taints::UNREACHABLE, "operator": "Exists", "effect": "NoExecute",
            "tolerationSeconds": secs}),
        )
    };
    assert_eq!(
        eviction_time(&taints, &[t(Some(300))]),
        When::At(t0 + jiff::SignedDuration::from_secs(300))
    );
    // The smallest tolerationSeconds wins; none = forever.
    assert_eq!(
        eviction_time(&taints, &[t(Some(300)), t(Some(5))]),
        When::At(t0 + jiff::SignedDuration::from_secs(5))
    );
    assert_eq!(eviction_time(&taints, &[t(None)]), When::Never);
    assert_eq!(
        eviction_time(&taints, &[toleration(json!({"operator": "Exists"}))]),
        When::Never
    );
    // A second, untolerated NoExecute taint evicts at once.
    let two = [
        taints[0].clone(),
        taint("maintenance", "NoExecute", Some("2024-01-01T00:00:00Z")),
    ];
    assert_eq!(eviction_time(&two, &[t(Some(300))]), When::Now);
}
