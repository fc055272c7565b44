use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use serde_json::json;

use super::behavior::{self, History, Rules, Sample};
use super::replicas::{resource_replicas, CalcError, PodMetric, PodMetrics, Proposal, Target};

fn t(s: &str) -> jiff::Timestamp {
    s.parse().expect("time")
}

const NOW: &str = "2026-12-07T12:00:00Z";

/// A Running pod started `age_s` ago, ready since start, requesting `cpu` millicores.
fn pod(name: &str, cpu: i64, phase: &str, ready: &str, age_s: i64) -> Pod {
    let start = t(NOW) - jiff::SignedDuration::from_secs(age_s);
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "i",
            "resources": {"requests": {"cpu": format!("{cpu}m"), "memory": "100Mi"}}}]},
        "status": {"phase": phase, "startTime": start.to_string(),
            "conditions": [{"type": "Ready", "status": ready,
                "lastTransitionTime": start.to_string()}]}
    }))
    .expect("pod")
}

fn sample(milli: i64) -> PodMetric {
    PodMetric {
        milli,
        timestamp: t(NOW),
        window: Duration::from_secs(15),
    }
}

fn metrics(list: &[(&str, i64)]) -> PodMetrics {
    list.iter()
        .map(|(n, m)| (n.to_string(), sample(*m)))
        .collect()
}

fn calc(current: i32, target: Target, pods: &[Pod], m: PodMetrics) -> Result<Proposal, CalcError> {
    resource_replicas(current, target, "cpu", None, pods, m, t(NOW))
}

#[test]
fn utilization_scales_by_the_ratio_of_ready_pods() {
    let pods = [
        pod("a", 100, "Running", "True", 600),
        pod("b", 100, "Running", "True", 600),
    ];
    // 90% average against 50%: ceil(1.8 * 2) = 4.
    let p = calc(
        2,
        Target::Utilization(50),
        &pods,
        metrics(&[("a", 90), ("b", 90)]),
    )
    .expect("ok");
    assert_eq!(
        p,
        Proposal {
            replicas: 4,
            utilization: Some(90),
            raw_milli: 90
        }
    );
    // 10% against 50%: ceil(0.2 * 2) = 1.
    let p = calc(
        2,
        Target::Utilization(50),
        &pods,
        metrics(&[("a", 10), ("b", 10)]),
    )
    .expect("ok");
    assert_eq!(p.replicas, 1);
}

#[test]
fn within_tolerance_nothing_changes() {
    let pods = [
        pod("a", 100, "Running", "True", 600),
        pod("b", 100, "Running", "True", 600),
    ];
    // 54% against 50%: ratio 1.08, inside 0.1.
    let p = calc(
        2,
        Target::Utilization(50),
        &pods,
        metrics(&[("a", 54), ("b", 54)]),
    )
    .expect("ok");
    assert_eq!(p.replicas, 2);
    assert_eq!(p.utilization, Some(54));
    // 56%: ratio 1.12, outside: ceil(2.24) = 3.
    let p = calc(
        2,
        Target::Utilization(50),
        &pods,
        metrics(&[("a", 56), ("b", 56)]),
    )
    .expect("ok");
    assert_eq!(p.replicas, 3);
}

#[test]
fn missing_and_unready_pods_count_conservatively() {
    // c has no sample: scaling up it counts as 0, so (150+150+0)/300 = 100% vs 50% → 6.
    let pods = [
        pod("a", 100, "Running", "True", 600),
        pod("b", 100, "Running", "True", 600),
        pod("c", 100, "Running", "True", 600),
    ];
    let p = calc(
        3,
        Target::Utilization(50),
        &pods,
        metrics(&[("a", 150), ("b", 150)]),
    )
    .expect("ok");
    assert_eq!(p.replicas, 6);
    // Scaling down, the missing pod counts as using 100% of its request: (10+10+100)/300 = 40%
    // vs 50%: ratio 0.8 → ceil(2.4) = 3, no change from 3.
    let p = calc(
        3,
        Target::Utilization(50),
        &pods,
        metrics(&[("a", 10), ("b", 10)]),
    )
    .expect("ok");
    assert_eq!(p.replicas, 3);
    // A Pending pod is unready: scaling up it counts as 0 (100+0)/200 = 50% → keep.
    let pods = [
        pod("a", 100, "Running", "True", 600),
        pod("p", 100, "Pending", "False", 1),
    ];
    let p = calc(2, Target::Utilization(50), &pods, metrics(&[("a", 100)])).expect("ok");
    assert_eq!(p.replicas, 2);
    // A young pod whose CPU sample predates readiness is unready too.
    let young = pod("y", 100, "Running", "False", 10);
    let pods = [pod("a", 100, "Running", "True", 600), young];
    let p = calc(
        2,
        Target::Utilization(50),
        &pods,
        metrics(&[("a", 200), ("y", 200)]),
    )
    .expect("ok");
    // Ready a at 200% → ratio 4; with y at 0: 100% → ratio 2 → ceil(2 * 2) = 4.
    assert_eq!(p.replicas, 4);
}

#[test]
fn deleted_and_failed_pods_are_ignored_and_errors_name_the_cause() {
    let mut gone = pod("g", 100, "Running", "True", 600);
    gone.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(t(NOW)));
    let pods = [
        pod("a", 100, "Running", "True", 600),
        gone,
        pod("f", 100, "Failed", "False", 600),
    ];
    let p = calc(
        3,
        Target::Utilization(50),
        &pods,
        metrics(&[("a", 100), ("g", 900), ("f", 900)]),
    )
    .expect("ok");
    assert_eq!(p.replicas, 2);

    let err = calc(1, Target::Utilization(50), &pods, PodMetrics::new()).expect_err("no metrics");
    assert_eq!(
        err.0,
        "unable to get metrics for resource cpu: no metrics returned from resource metrics API"
    );
    let no_request: Pod = serde_json::from_value(json!({"metadata": {"name": "a"},
        "spec": {"containers": [{"name": "c", "image": "i"}]},
        "status": {"phase": "Running", "startTime": "2026-12-07T10:00:00Z",
            "conditions": [{"type": "Ready", "status": "True",
                "lastTransitionTime": "2026-12-07T10:00:00Z"}]}}))
    .expect("pod");
    let err = calc(
        1,
        Target::Utilization(50),
        &[no_request],
        metrics(&[("a", 10)]),
    )
    .expect_err("req");
    assert_eq!(err.0, "missing request for cpu in container c of Pod a");
}

#[test]
fn average_value_targets_compare_the_mean_usage() {
    let pods = [
        pod("a", 100, "Running", "True", 600),
        pod("b", 100, "Running", "True", 600),
    ];
    // 300m average against 100m: 3 × 2 = 6.
    let p = calc(
        2,
        Target::AverageValue(100),
        &pods,
        metrics(&[("a", 300), ("b", 300)]),
    )
    .expect("ok");
    assert_eq!(
        p,
        Proposal {
            replicas: 6,
            utilization: None,
            raw_milli: 300
        }
    );
}

fn up() -> Rules {
    Rules::resolve(None, true)
}
fn down() -> Rules {
    Rules::resolve(None, false)
}

#[test]
fn default_rules_are_upstreams() {
    assert_eq!(up().window, 0);
    assert_eq!(
        up().policies,
        [
            ("Pods".to_string(), 4, 15),
            ("Percent".to_string(), 100, 15)
        ]
    );
    assert_eq!(down().window, 300);
    assert_eq!(down().select, "Max");
}

#[test]
fn stabilization_keeps_the_highest_recent_recommendation_when_scaling_down() {
    let now = t(NOW);
    let mut h = History::default();
    h.recommendations.push(Sample {
        at: now - jiff::SignedDuration::from_secs(60),
        value: 8,
    });
    h.recommendations.push(Sample {
        at: now - jiff::SignedDuration::from_secs(400),
        value: 10,
    });
    let (r, reason, _) = behavior::stabilize(&mut h, &up(), &down(), 6, 2, now);
    // 8 is within 300 s, 10 is not.
    assert_eq!((r, reason), (6, "ScaleDownStabilized"));
    let (r, _, _) = behavior::stabilize(&mut h, &up(), &down(), 9, 2, now);
    assert_eq!(r, 8);
    // The old sample was replaced, not appended.
    assert_eq!(h.recommendations.len(), 3);
    // Scaling up with window 0 is immediate.
    let (r, reason, _) = behavior::stabilize(&mut h, &up(), &down(), 2, 7, now);
    assert_eq!((r, reason), (7, "ScaleUpStabilized"));
}

#[test]
fn policies_limit_the_rate_and_bounds_cap_it() {
    let now = t(NOW);
    let h = History::default();
    // From 1: max(1 + 4, 1 × 2) = 5.
    let r = behavior::limit_rate(&h, &up(), &down(), 1, 100, 1, 20, now);
    assert_eq!(r.0, 5);
    assert_eq!(r.1, "ScaleUpLimit");
    // From 10: max(14, 20) = 20, capped at max 12.
    let r = behavior::limit_rate(&h, &up(), &down(), 1, 12, 10, 30, now);
    assert_eq!((r.0, r.1), (12, "TooManyReplicas"));
    // 3 were added 5 s ago: the period started at 7 → max(11, 14) = 14.
    let mut h = History::default();
    h.scale_ups.push(Sample {
        at: now - jiff::SignedDuration::from_secs(5),
        value: 3,
    });
    let r = behavior::limit_rate(&h, &up(), &down(), 1, 100, 10, 30, now);
    assert_eq!(r.0, 14);
    // Scale down at one pod per 60 s.
    let slow: Rules = Rules {
        window: 0,
        select: "Max".into(),
        policies: vec![("Pods".into(), 1, 60)],
    };
    let h = History::default();
    let r = behavior::limit_rate(&h, &up(), &slow, 1, 10, 5, 1, now);
    assert_eq!((r.0, r.1), (4, "ScaleDownLimit"));
    // Below min.
    let r = behavior::limit_rate(&h, &up(), &down(), 3, 10, 5, 1, now);
    assert_eq!((r.0, r.1), (3, "TooFewReplicas"));
    let r = behavior::limit_rate(&h, &up(), &down(), 1, 10, 5, 4, now);
    assert_eq!((r.0, r.1), (4, "DesiredWithinRange"));
    // Disabled never moves.
    let off = Rules {
        select: "Disabled".into(),
        ..up()
    };
    assert_eq!(
        behavior::limit_rate(&h, &off, &down(), 1, 10, 2, 9, now).0,
        2
    );
}

#[test]
fn pod_metrics_parse_from_the_metrics_api() {
    let pm = json!({"timestamp": "2026-12-07T12:00:00Z", "window": "10.5s", "containers": [
        {"name": "a", "usage": {"cpu": "250000000n", "memory": "10Mi"}},
        {"name": "b", "usage": {"cpu": "50m", "memory": "1Mi"}}]});
    let m = super::parse_pod_metric(&pm, "cpu", None).expect("metric");
    assert_eq!(m.milli, 300);
    assert_eq!(m.window, Duration::from_millis(10_500));
    let m = super::parse_pod_metric(&pm, "cpu", Some("b")).expect("metric");
    assert_eq!(m.milli, 50);
    assert!(super::parse_pod_metric(&pm, "cpu", Some("zzz")).is_none());
    assert_eq!(super::go_duration("1m0s"), Some(Duration::from_secs(60)));
}
