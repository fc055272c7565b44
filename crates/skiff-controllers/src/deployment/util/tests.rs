//! Unit tests for the Deployment arithmetic (worked examples from k8s-semantics §1).

use super::*;
use k8s_openapi::api::apps::v1::{
    DeploymentStrategy, ReplicaSetSpec, ReplicaSetStatus, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

fn pct(s: &str) -> IntOrString {
    IntOrString::String(s.into())
}

fn deploy(r: i32, surge: IntOrString, unavail: IntOrString) -> Deployment {
    Deployment {
        metadata: ObjectMeta {
            name: Some("web".into()),
            generation: Some(1),
            ..Default::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(r),
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(surge),
                    max_unavailable: Some(unavail),
                }),
            }),
            ..Default::default()
        }),
        status: None,
    }
}

fn rs(name: &str, created: i64, spec: i32, available: i32) -> ReplicaSet {
    ReplicaSet {
        metadata: ObjectMeta {
            name: Some(name.into()),
            creation_timestamp: Some(Time(Timestamp::from_second(created).unwrap())),
            ..Default::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(spec),
            ..Default::default()
        }),
        status: Some(ReplicaSetStatus {
            replicas: spec,
            available_replicas: Some(available),
            ready_replicas: Some(available),
            ..Default::default()
        }),
    }
}

fn with_ann(mut r: ReplicaSet, k: &str, v: &str) -> ReplicaSet {
    r.metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(k.into(), v.into());
    r
}

#[test]
fn fenceposts_round_surge_up_and_unavailable_down() {
    let cases = [
        // (R, maxSurge, maxUnavailable, surge, unavailable)
        (10, pct("25%"), pct("25%"), 3, 2),
        (1, pct("25%"), pct("25%"), 1, 0),
        (3, pct("25%"), pct("25%"), 1, 0),
        (4, pct("25%"), pct("25%"), 1, 1),
        (2, pct("0%"), pct("1%"), 0, 1), // both resolve to 0 → unavailable 1
        (5, IntOrString::Int(2), IntOrString::Int(0), 2, 0),
        (0, pct("25%"), pct("25%"), 0, 1),
        (7, pct("50%"), pct("50%"), 4, 3),
    ];
    for (r, s, u, want_s, want_u) in cases {
        assert_eq!(
            resolve_fenceposts(Some(&s), Some(&u), r),
            Ok((want_s, want_u)),
            "R={r} surge={s:?} unavail={u:?}"
        );
    }
    assert!(scaled_value(&pct("abc"), 10, true).is_err());
    assert!(scaled_value(&IntOrString::String("5".into()), 10, true).is_err());
    // Defaults when absent are the API's 25%/25%.
    assert_eq!(resolve_fenceposts(None, None, 10), Ok((3, 2)));
}

#[test]
fn max_unavailable_rules() {
    let d = deploy(10, pct("25%"), pct("25%"));
    assert_eq!((max_surge(&d), max_unavailable(&d)), (3, 2));
    let d = deploy(0, pct("25%"), pct("25%"));
    assert_eq!(max_unavailable(&d), 0);
    // Clamped to R.
    let d = deploy(2, IntOrString::Int(0), IntOrString::Int(5));
    assert_eq!(max_unavailable(&d), 2);
    // Recreate: no surge, no unavailability budget.
    let mut d = deploy(10, pct("25%"), pct("25%"));
    d.spec.as_mut().unwrap().strategy = Some(DeploymentStrategy {
        type_: Some("Recreate".into()),
        rolling_update: None,
    });
    assert_eq!((max_surge(&d), max_unavailable(&d)), (0, 0));
    assert_eq!(new_rs_new_replicas(&d, 10, 0), 10);
}

#[test]
fn new_rs_scale_up_amounts() {
    let d = deploy(10, pct("25%"), pct("25%"));
    // (total spec of all RSs incl. new, new RS spec, expected)
    let cases = [
        (10, 0, 3),
        (13, 3, 3),
        (11, 3, 5),
        (8, 5, 10),
        (10, 10, 10),
        (12, 9, 10),
    ];
    for (total, cur, want) in cases {
        assert_eq!(
            new_rs_new_replicas(&d, total, cur),
            want,
            "total={total} cur={cur}"
        );
    }
    // Reconcile: new RS above R is scaled down to R; equal → nothing.
    let new = rs("new", 2, 12, 0);
    let old = rs("old", 1, 0, 0);
    assert_eq!(reconcile_new_rs_target(&d, &[&old, &new], &new), Some(10));
    let new = rs("new", 2, 10, 0);
    assert_eq!(reconcile_new_rs_target(&d, &[&old, &new], &new), None);
    let old = rs("old", 1, 10, 10);
    let new = rs("new", 2, 3, 0);
    assert_eq!(reconcile_new_rs_target(&d, &[&old, &new], &new), None);
}

#[test]
fn old_rs_scale_down_worked_example() {
    let d = deploy(10, pct("25%"), pct("25%"));
    // Pass 1: new RS created with 3 (13 total): maxScaledDown = 13 − 8 − 3 = 2 → old 10→8.
    let old = rs("old", 1, 10, 10);
    let new = rs("new", 2, 3, 0);
    let steps = old_rs_scale_down_steps(&d, &[&old, &new], &[&old], &new);
    assert_eq!(steps, vec![(0, 8)]);
    // New pods unavailable and 13 total → nothing more.
    let old = rs("old", 1, 8, 8);
    let new = rs("new", 2, 5, 0);
    assert!(old_rs_scale_down_steps(&d, &[&old, &new], &[&old], &new).is_empty());
    // Three new pods became available: available 11 − 8 → 3 more may go.
    let new = rs("new", 2, 5, 3);
    assert_eq!(
        old_rs_scale_down_steps(&d, &[&old, &new], &[&old], &new),
        vec![(0, 5)]
    );
    // Crash-looping new pods: 13 total, min 8, newUnavailable 5 → maxScaledDown 0.
    let old = rs("old", 1, 8, 6);
    let new = rs("new", 2, 5, 0);
    assert!(old_rs_scale_down_steps(&d, &[&old, &new], &[&old], &new).is_empty());
}

#[test]
fn old_rs_cleanup_unhealthy_first_oldest_first() {
    let d = deploy(10, pct("25%"), pct("25%"));
    // Two old RSs, the older one with 2 unavailable pods; new RS fully available.
    let older = rs("a", 1, 4, 2);
    let newer = rs("b", 2, 4, 4);
    let new = rs("new", 3, 5, 5);
    let all = [&older, &newer, &new];
    // maxScaledDown = 13 − 8 − 0 = 5 → cleanup a 4→2; then available 11 − 8 = 3 → a 2→0, b 4→3.
    let steps = old_rs_scale_down_steps(&d, &all, &[&newer, &older], &new);
    assert_eq!(steps, vec![(1, 2), (1, 0), (0, 3)]);
    // No old replicas at all → nothing.
    let z = rs("z", 1, 0, 0);
    assert!(old_rs_scale_down_steps(&d, &[&z, &new], &[&z], &new).is_empty());
}

#[test]
fn proportional_scaling_doc_example() {
    // R 10→15 mid-rollout, maxSurge 3, old=8 new=5 (both sized for max 13) → old 11, new 7.
    let d = deploy(15, IntOrString::Int(3), IntOrString::Int(2));
    let old = with_ann(rs("old", 1, 8, 8), MAX_REPLICAS, "13");
    let new = with_ann(rs("new", 2, 5, 0), MAX_REPLICAS, "13");
    let sizes = proportional_sizes(&d, &[&old, &new]);
    assert_eq!(sizes, vec![(0, 11), (1, 7)]);
}

#[test]
fn proportional_scaling_table() {
    struct Case {
        r: i32,
        surge: i32,
        rss: Vec<(i32, &'static str)>, // (spec, max-replicas annotation)
        want: Vec<(usize, i32)>,
    }
    let cases = vec![
        // Scale down 15→10 (surge 3): 11+7 = 18 → 13; older first on ties, largest first.
        Case {
            r: 10,
            surge: 3,
            rss: vec![(11, "18"), (7, "18")],
            want: vec![(0, 8), (1, 5)],
        },
        // Ties when growing: newer first gets the leftover.
        Case {
            r: 9,
            surge: 1,
            rss: vec![(3, "7"), (3, "7")],
            want: vec![(1, 6), (0, 4)],
        },
        // Ties when shrinking: older first takes the leftover.
        Case {
            r: 3,
            surge: 1,
            rss: vec![(3, "7"), (3, "7")],
            want: vec![(0, 2), (1, 2)],
        },
        // Scale to zero: everything goes.
        Case {
            r: 0,
            surge: 0,
            rss: vec![(4, "6"), (2, "6")],
            want: vec![(0, 0), (1, 0)],
        },
        // Nothing to add: sizes unchanged, still listed (annotations refresh).
        Case {
            r: 5,
            surge: 1,
            rss: vec![(4, "6"), (2, "6")],
            want: vec![(0, 4), (1, 2)],
        },
    ];
    for (n, c) in cases.into_iter().enumerate() {
        let d = deploy(c.r, IntOrString::Int(c.surge), IntOrString::Int(1));
        let rss: Vec<ReplicaSet> = c
            .rss
            .iter()
            .enumerate()
            .map(|(i, (spec, max))| {
                with_ann(
                    rs(&format!("rs{i}"), i as i64, *spec, *spec),
                    MAX_REPLICAS,
                    max,
                )
            })
            .collect();
        let refs: Vec<&ReplicaSet> = rss.iter().collect();
        assert_eq!(proportional_sizes(&d, &refs), c.want, "case {n}");
    }
}

#[test]
fn active_or_latest_and_saturation() {
    let a = rs("a", 1, 0, 0);
    let b = rs("b", 2, 0, 0);
    let c = rs("c", 3, 3, 3);
    assert_eq!(find_active_or_latest(&[&a, &b], None), Some(1));
    assert_eq!(find_active_or_latest(&[&b, &a], Some(0)), Some(0));
    assert_eq!(find_active_or_latest(&[&a, &c], Some(0)), Some(1));
    assert_eq!(find_active_or_latest(&[&c, &c], Some(1)), None);
    let d = deploy(3, pct("25%"), pct("25%"));
    assert!(!is_saturated(&d, &c));
    assert!(is_saturated(
        &d,
        &with_ann(c.clone(), DESIRED_REPLICAS, "3")
    ));
    assert!(!is_saturated(
        &d,
        &with_ann(rs("x", 1, 3, 2), DESIRED_REPLICAS, "3")
    ));
}

fn template(image: &str) -> PodTemplateSpec {
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(BTreeMap::from([("app".to_string(), "web".to_string())])),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "web".into(),
                image: Some(image.into()),
                ..Default::default()
            }],
            ..Default::default()
        }),
    }
}

#[test]
fn hash_format_and_stability() {
    let t = template("nginx:1");
    let h = compute_hash(&t, None);
    assert!(!h.is_empty() && h.len() <= 10, "{h}");
    assert!(
        h.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)),
        "{h}"
    );
    assert_eq!(h, compute_hash(&t, None));
    assert_ne!(h, compute_hash(&template("nginx:2"), None));
    assert_ne!(h, compute_hash(&t, Some(1)));
    assert_ne!(compute_hash(&t, Some(1)), compute_hash(&t, Some(2)));
    // SafeEncodeString maps decimal digits like upstream ("0" → '4', "9" → 'f').
    assert_eq!(safe_encode("0123456789"), "456789bcdf");
}

#[test]
fn template_equality_ignores_hash_label_and_empties() {
    let a = template("nginx:1");
    let mut b = a.clone();
    b.metadata
        .as_mut()
        .unwrap()
        .labels
        .as_mut()
        .unwrap()
        .insert(POD_TEMPLATE_HASH.into(), "abc".into());
    assert!(equal_ignore_hash(&a, &b));
    // nil vs empty annotations are equal.
    b.metadata.as_mut().unwrap().annotations = Some(BTreeMap::new());
    assert!(equal_ignore_hash(&a, &b));
    // A restartedAt annotation is a real change.
    b.metadata
        .as_mut()
        .unwrap()
        .annotations
        .as_mut()
        .unwrap()
        .insert("kubectl.kubernetes.io/restartedAt".into(), "now".into());
    assert!(!equal_ignore_hash(&a, &b));
    assert!(!equal_ignore_hash(&a, &template("nginx:2")));
}

#[test]
fn selectors() {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
    let sel = LabelSelector {
        match_labels: Some(BTreeMap::from([("app".into(), "web".into())])),
        match_expressions: Some(vec![
            LabelSelectorRequirement {
                key: "tier".into(),
                operator: "NotIn".into(),
                values: Some(vec!["db".into()]),
            },
            LabelSelectorRequirement {
                key: "env".into(),
                operator: "In".into(),
                values: Some(vec!["b".into(), "a".into()]),
            },
        ]),
    };
    let l = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    use skiff_semantics::labels::label_selector_matches;
    assert!(label_selector_matches(
        &sel,
        &Some(&l(&[("app", "web"), ("env", "a")]))
    ));
    assert!(!label_selector_matches(
        &sel,
        &Some(&l(&[("app", "web"), ("env", "a"), ("tier", "db")]))
    ));
    assert!(!label_selector_matches(&sel, &Some(&l(&[("app", "web")]))));
    assert!(!label_selector_matches(
        &sel,
        &None::<&BTreeMap<String, String>>
    ));
    assert_eq!(
        selector_string(&sel),
        "app=web,tier notin (db),env in (a,b)"
    );
    assert!(skiff_semantics::labels::label_selector_is_empty(
        &LabelSelector::default()
    ));
}

#[test]
fn revision_annotations() {
    let mut d = deploy(3, pct("25%"), pct("25%"));
    d.metadata.annotations = Some(BTreeMap::from([
        (
            "kubernetes.io/change-cause".to_string(),
            "set image".to_string(),
        ),
        (LAST_APPLIED_CONFIG.to_string(), "{}".to_string()),
        (REVISION.to_string(), "7".to_string()),
    ]));
    // A brand-new RS: copied annotations, revision, replicas annotations.
    let mut a = BTreeMap::new();
    assert!(set_new_rs_annotations(&d, &mut a, 2, false));
    assert_eq!(
        a.get("kubernetes.io/change-cause").map(String::as_str),
        Some("set image")
    );
    assert!(!a.contains_key(LAST_APPLIED_CONFIG));
    assert_eq!(a.get(REVISION).map(String::as_str), Some("2"));
    assert_eq!(a.get(DESIRED_REPLICAS).map(String::as_str), Some("3"));
    assert_eq!(a.get(MAX_REPLICAS).map(String::as_str), Some("4"));
    assert!(!a.contains_key(REVISION_HISTORY));
    // Unchanged on a second pass.
    assert!(!set_new_rs_annotations(&d, &mut a, 2, true));
    // Rolled back to: revision 2 → 3, "2" recorded in history.
    assert!(set_new_rs_annotations(&d, &mut a, 3, true));
    assert_eq!(a.get(REVISION).map(String::as_str), Some("3"));
    assert_eq!(a.get(REVISION_HISTORY).map(String::as_str), Some("2"));
    assert!(set_new_rs_annotations(&d, &mut a, 5, true));
    assert_eq!(a.get(REVISION_HISTORY).map(String::as_str), Some("2,3"));
    // Never lowered.
    assert!(!set_new_rs_annotations(&d, &mut a, 4, true));
    assert_eq!(a.get(REVISION).map(String::as_str), Some("5"));

    let r1 = with_ann(rs("a", 1, 0, 0), REVISION, "1");
    let r3 = with_ann(rs("b", 2, 0, 0), REVISION, "3");
    let bad = with_ann(rs("c", 3, 0, 0), REVISION, "x");
    assert_eq!(max_revision([&r1, &r3, &bad]), 3);
    assert_eq!(max_revision(std::iter::empty::<&ReplicaSet>()), 0);
}

#[test]
fn revision_history_cleanup() {
    let mut d = deploy(3, pct("25%"), pct("25%"));
    d.spec.as_mut().unwrap().revision_history_limit = Some(1);
    let r1 = with_ann(rs("r1", 1, 0, 0), REVISION, "1");
    let r2 = with_ann(rs("r2", 2, 0, 0), REVISION, "4");
    let r3 = with_ann(rs("r3", 3, 0, 0), REVISION, "2");
    let busy = with_ann(rs("busy", 0, 1, 1), REVISION, "0");
    assert_eq!(cleanup_victims(&d, &[&r2, &r1, &r3]), vec!["r1", "r3"]);
    // Non-empty RSs are skipped, but still count.
    assert_eq!(cleanup_victims(&d, &[&busy, &r1]), Vec::<String>::new());
    d.spec.as_mut().unwrap().revision_history_limit = Some(i32::MAX);
    assert!(cleanup_victims(&d, &[&r2, &r1, &r3]).is_empty());
}

#[test]
fn status_and_conditions() {
    let now = Timestamp::from_second(1_000).unwrap();
    let d = deploy(3, pct("25%"), pct("25%"));
    let new = rs("web-abc", 1, 3, 3);
    let s = calculate_status(&d, &[&new], Some(&new), now);
    assert_eq!(s.replicas, Some(3));
    assert_eq!(s.updated_replicas, Some(3));
    assert_eq!(s.available_replicas, Some(3));
    assert_eq!(s.unavailable_replicas, None);
    assert_eq!(s.observed_generation, Some(1));
    let av = get_condition(Some(&s), COND_AVAILABLE).unwrap();
    assert_eq!(
        (av.status.as_str(), av.reason.as_deref()),
        ("True", Some(REASON_MIN_AVAILABLE))
    );

    // Rollout status: complete → NewReplicaSetAvailable.
    let rs_status = rollout_status(&d, &[&new], Some(&new), now);
    let p = get_condition(Some(&rs_status), COND_PROGRESSING).unwrap();
    assert_eq!(p.reason.as_deref(), Some(REASON_NEW_RS_AVAILABLE));
    assert_eq!(
        p.message.as_deref(),
        Some("ReplicaSet \"web-abc\" has successfully progressed.")
    );

    // Not progressing past the deadline → ProgressDeadlineExceeded.
    let mut d = deploy(3, pct("25%"), pct("25%"));
    d.spec.as_mut().unwrap().progress_deadline_seconds = Some(3);
    let stuck = rs("web-abc", 1, 3, 0);
    let mut st = calculate_status(&d, &[&stuck], Some(&stuck), now);
    set_condition(
        &mut st,
        new_condition(
            COND_PROGRESSING,
            "True",
            REASON_NEW_RS_CREATED,
            "x".into(),
            now,
        ),
    );
    d.status = Some(st.clone());
    assert_eq!(
        requeue_stuck_after(&d, &st, now),
        Some(Duration::from_secs(4))
    );
    let later = Timestamp::from_second(1_002).unwrap();
    let s2 = rollout_status(&d, &[&stuck], Some(&stuck), later);
    assert_eq!(s2, st, "no change before the deadline");
    let much_later = Timestamp::from_second(1_004).unwrap();
    let s3 = rollout_status(&d, &[&stuck], Some(&stuck), much_later);
    let p = get_condition(Some(&s3), COND_PROGRESSING).unwrap();
    assert_eq!(
        (p.status.as_str(), p.reason.as_deref()),
        ("False", Some(REASON_TIMED_OUT))
    );
    assert_eq!(
        p.message.as_deref(),
        Some("ReplicaSet \"web-abc\" has timed out progressing.")
    );
    let av = get_condition(Some(&s3), COND_AVAILABLE).unwrap();
    assert_eq!(av.reason.as_deref(), Some(REASON_MIN_UNAVAILABLE));

    // Progress moves lastUpdateTime but keeps lastTransitionTime.
    let better = rs("web-abc", 1, 3, 1);
    let s4 = rollout_status(&d, &[&better], Some(&better), much_later);
    let p = get_condition(Some(&s4), COND_PROGRESSING).unwrap();
    assert_eq!(p.reason.as_deref(), Some(REASON_RS_UPDATED));
    assert_eq!(
        p.message.as_deref(),
        Some("ReplicaSet \"web-abc\" is progressing.")
    );
    assert_eq!(p.last_update_time, Some(Time(much_later)));
    assert_eq!(p.last_transition_time, Some(Time(now)));
}

#[test]
fn set_condition_semantics() {
    let t1 = Timestamp::from_second(10).unwrap();
    let t2 = Timestamp::from_second(20).unwrap();
    let mut s = DeploymentStatus::default();
    set_condition(
        &mut s,
        new_condition(COND_AVAILABLE, "True", "A", "m".into(), t1),
    );
    // Same status + reason → untouched.
    set_condition(
        &mut s,
        new_condition(COND_AVAILABLE, "True", "A", "other".into(), t2),
    );
    assert_eq!(
        get_condition(Some(&s), COND_AVAILABLE)
            .unwrap()
            .message
            .as_deref(),
        Some("m")
    );
    // Same status, new reason → keeps lastTransitionTime.
    set_condition(
        &mut s,
        new_condition(COND_AVAILABLE, "True", "B", "m".into(), t2),
    );
    let c = get_condition(Some(&s), COND_AVAILABLE).unwrap();
    assert_eq!(
        (c.last_transition_time.clone(), c.last_update_time.clone()),
        (Some(Time(t1)), Some(Time(t2)))
    );
    // Status flip → new transition time.
    set_condition(
        &mut s,
        new_condition(COND_AVAILABLE, "False", "C", "m".into(), t2),
    );
    assert_eq!(
        get_condition(Some(&s), COND_AVAILABLE)
            .unwrap()
            .last_transition_time,
        Some(Time(t2))
    );
}
