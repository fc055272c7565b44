use super::*;
use serde_json::json;

/// Every controller has the scale given per owner uid.
struct Fixed(HashMap<String, i32>);

impl Scales for Fixed {
    async fn scale(
        &self,
        _namespace: &str,
        owner: &OwnerReference,
    ) -> std::result::Result<Option<(String, i32)>, String> {
        Ok(self.0.get(&owner.uid).map(|n| (owner.uid.clone(), *n)))
    }
}

fn pdb(spec: serde_json::Value, status: serde_json::Value) -> PodDisruptionBudget {
    serde_json::from_value(
        json!({"metadata": {"name": "b", "namespace": "d", "generation": 3},
        "spec": spec, "status": status}),
    )
    .expect("pdb")
}

fn pod(name: &str, ready: bool, owner: Option<&str>) -> Pod {
    let mut p = json!({"metadata": {"name": name, "namespace": "d", "labels": {"app": "x"}},
        "status": {"conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}});
    if let Some(uid) = owner {
        p["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "name": "rs", "uid": uid, "controller": true}]);
    }
    serde_json::from_value(p).expect("pod")
}

fn now() -> jiff::Timestamp {
    "2026-12-07T12:00:00Z".parse().expect("time")
}

#[tokio::test]
async fn min_available_integer_counts_pods() {
    let b = pdb(
        json!({"minAvailable": 2, "selector": {"matchLabels": {"app": "x"}}}),
        json!({}),
    );
    let pods = [
        pod("a", true, None),
        pod("b", true, None),
        pod("c", false, None),
    ];
    let refs: Vec<&Pod> = pods.iter().collect();
    let c = compute(&b, &refs, &Fixed(HashMap::new()), now())
        .await
        .expect("computed");
    assert_eq!(
        (c.expected, c.desired_healthy, c.current_healthy),
        (3, 2, 2)
    );
    let s = next_status(&b, Ok(&c), now());
    assert_eq!(s.disruptions_allowed, 0);
    assert_eq!(s.observed_generation, Some(3));
    let cond = &s.conditions.as_ref().expect("conditions")[0];
    assert_eq!(
        (
            cond.type_.as_str(),
            cond.status.as_str(),
            cond.reason.as_str()
        ),
        ("DisruptionAllowed", "False", "InsufficientPods")
    );
}

#[tokio::test]
async fn percentages_use_the_controller_scale_rounding_up() {
    let scales = Fixed(HashMap::from([("rs1".to_string(), 5)]));
    let pods: Vec<Pod> = (0..4)
        .map(|i| pod(&format!("p{i}"), true, Some("rs1")))
        .collect();
    let refs: Vec<&Pod> = pods.iter().collect();
    // maxUnavailable 30% of 5 = 1.5 → 2: desired 3, 4 healthy → 1 allowed.
    let b = pdb(
        json!({"maxUnavailable": "30%", "selector": {"matchLabels": {"app": "x"}}}),
        json!({}),
    );
    let c = compute(&b, &refs, &scales, now()).await.expect("computed");
    assert_eq!(
        (c.expected, c.desired_healthy, c.current_healthy),
        (5, 3, 4)
    );
    let s = next_status(&b, Ok(&c), now());
    assert_eq!(s.disruptions_allowed, 1);
    assert_eq!(
        s.conditions.as_ref().expect("c")[0].reason,
        "SufficientPods"
    );
    // minAvailable 50% of 5 = 2.5 → 3.
    let b = pdb(
        json!({"minAvailable": "50%", "selector": {"matchLabels": {"app": "x"}}}),
        json!({}),
    );
    let c = compute(&b, &refs, &scales, now()).await.expect("computed");
    assert_eq!((c.expected, c.desired_healthy), (5, 3));
    // A pod owned by an unknown controller: the fail-safe status allows nothing.
    let mut odd = pods.clone();
    odd.push(pod("z", true, Some("unknown")));
    let refs: Vec<&Pod> = odd.iter().collect();
    let err = compute(&b, &refs, &scales, now())
        .await
        .expect_err("no controller");
    assert_eq!(err, "found no controllers for pod \"z\"");
    let s = next_status(&b, Err(&err), now());
    assert_eq!(s.disruptions_allowed, 0);
    assert_eq!(s.conditions.as_ref().expect("c")[0].reason, "SyncFailed");
}

#[tokio::test]
async fn disrupted_pods_do_not_count_until_they_expire() {
    let recent = "2026-12-07T11:59:30Z";
    let old = "2026-12-07T11:50:00Z";
    let b = pdb(
        json!({"minAvailable": 1, "selector": {"matchLabels": {"app": "x"}}}),
        json!({"disruptedPods": {"a": recent, "b": old}}),
    );
    let pods = [
        pod("a", true, None),
        pod("b", true, None),
        pod("c", true, None),
    ];
    let refs: Vec<&Pod> = pods.iter().collect();
    let c = compute(&b, &refs, &Fixed(HashMap::new()), now())
        .await
        .expect("computed");
    assert_eq!(c.current_healthy, 2, "a is still being evicted");
    assert_eq!(c.not_deleted, ["b"]);
    assert_eq!(c.disrupted.keys().collect::<Vec<_>>(), ["a"]);
    let s = next_status(&b, Ok(&c), now());
    assert_eq!(s.disruptions_allowed, 1);
    assert!(s.disrupted_pods.expect("map").contains_key("a"));
}

#[test]
fn empty_selector_selects_nothing() {
    let b = pdb(json!({"minAvailable": 1, "selector": {}}), json!({}));
    assert!(!selects(&b, &pod("a", true, None)));
    let b = pdb(
        json!({"minAvailable": 1, "selector": {"matchLabels": {"app": "x"}}}),
        json!({}),
    );
    assert!(selects(&b, &pod("a", true, None)));
}

#[test]
fn scaled_rounds_up() {
    assert_eq!(scaled(&IntOrString::String("10%".into()), 5), Ok(1));
    assert_eq!(scaled(&IntOrString::String("100%".into()), 7), Ok(7));
    assert_eq!(scaled(&IntOrString::Int(2), 7), Ok(2));
    assert!(scaled(&IntOrString::String("x".into()), 7).is_err());
}
