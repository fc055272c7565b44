//! Label and field selectors.

use std::collections::BTreeMap;

use serde_json::json;
use skiff_api::selector::{FieldSelector, LabelSelector};

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn label_selector_matching_table() {
    let web = labels(&[("app", "web"), ("tier", "frontend")]);
    let db = labels(&[("app", "db")]);
    let none = labels(&[]);
    // (selector, matches web, matches db, matches none)
    let cases = [
        ("", true, true, true),
        ("app=web", true, false, false),
        ("app==web", true, false, false),
        ("app!=web", false, true, true),
        ("app in (web,db)", true, true, false),
        ("app notin (web)", false, true, true),
        ("tier", true, false, false),
        ("!tier", false, true, true),
        ("app=web,tier=frontend", true, false, false),
        ("app in (web), !tier", false, false, false),
        ("app=", false, false, false),
        ("  app = web ", true, false, false),
        ("example.com/role", false, false, false),
    ];
    for (sel, a, b, c) in cases {
        let s = LabelSelector::parse(sel).unwrap_or_else(|e| panic!("{sel}: {e}"));
        assert_eq!(
            (s.matches(&web), s.matches(&db), s.matches(&none)),
            (a, b, c),
            "{sel}"
        );
    }
}

#[test]
fn label_selector_gt_lt() {
    let s = LabelSelector::parse("gen>2,gen<5").expect("parse");
    assert!(s.matches(&labels(&[("gen", "3")])));
    assert!(!s.matches(&labels(&[("gen", "5")])));
    assert!(!s.matches(&labels(&[("gen", "x")])));
}

#[test]
fn label_selector_errors_are_400() {
    for bad in [
        "app in ()",
        "app in (a",
        "=x",
        "app=web)",
        "a b",
        "-app=x",
        "app=-x",
        "app in web",
        "!",
        "x>abc",
    ] {
        let e = LabelSelector::parse(bad).expect_err(bad);
        assert_eq!(e.code, 400, "{bad}");
        assert_eq!(e.reason, "BadRequest");
    }
}

#[test]
fn label_selector_from_json() {
    let s = LabelSelector::from_json(&json!({
        "matchLabels": {"app": "web"},
        "matchExpressions": [
            {"key": "tier", "operator": "In", "values": ["frontend", "edge"]},
            {"key": "legacy", "operator": "DoesNotExist"}
        ]
    }))
    .expect("selector");
    assert!(s.matches(&labels(&[("app", "web"), ("tier", "edge")])));
    assert!(!s.matches(&labels(&[
        ("app", "web"),
        ("tier", "edge"),
        ("legacy", "1")
    ])));
    assert!(!s.matches(&labels(&[("app", "web")])));
    assert_eq!(s.to_string(), "app=web,!legacy,tier in (edge,frontend)");
    assert!(LabelSelector::from_json(&json!({}))
        .expect("empty")
        .is_empty());
    assert!(LabelSelector::from_json(&json!(null))
        .expect("null")
        .is_empty());
    assert!(LabelSelector::from_json(
        &json!({"matchExpressions":[{"key":"a","operator":"In","values":[]}]})
    )
    .is_err());
    assert!(LabelSelector::from_json(
        &json!({"matchExpressions":[{"key":"a","operator":"Bogus"}]})
    )
    .is_err());
}

#[test]
fn label_selector_matches_object() {
    let s = LabelSelector::parse("app=web").expect("parse");
    assert!(s.matches_object(&json!({"metadata":{"labels":{"app":"web"}}})));
    assert!(!s.matches_object(&json!({"metadata":{}})));
}

#[test]
fn field_selector() {
    let pod = json!({
        "metadata": {"name": "p1", "namespace": "default"},
        "spec": {"nodeName": "node-1", "hostNetwork": false},
        "status": {"phase": "Running"}
    });
    let cases = [
        ("metadata.name=p1", true),
        ("metadata.name==p1", true),
        ("metadata.name!=p1", false),
        (
            "spec.nodeName=node-1,status.phase!=Succeeded,status.phase!=Failed",
            true,
        ),
        ("spec.nodeName=", false),
        ("spec.schedulerName=", true),
        ("spec.hostNetwork=false", true),
        ("", true),
    ];
    for (sel, want) in cases {
        let f = FieldSelector::parse(sel).unwrap_or_else(|e| panic!("{sel}: {e}"));
        assert_eq!(f.matches(&pod), want, "{sel}");
    }
    let e = FieldSelector::parse("metadata.name").expect_err("no operator");
    assert_eq!(e.code, 400);
    assert!(e.message.contains("can't understand"));
    let escaped = FieldSelector::parse(r"metadata.name=a\,b").expect("escaped");
    assert!(escaped.matches(&json!({"metadata":{"name":"a,b"}})));
}

#[test]
fn job_status_successful_field() {
    // Upstream's selectable field for Jobs (status.succeeded, 0 when unset).
    let done = json!({"kind":"Job","metadata":{"name":"a"},"status":{"succeeded":1}});
    let fresh = json!({"kind":"Job","metadata":{"name":"b"},"status":{}});
    let one = FieldSelector::parse("status.successful=1").expect("parse");
    let zero = FieldSelector::parse("status.successful=0").expect("parse");
    assert!(one.matches(&done) && !one.matches(&fresh));
    assert!(zero.matches(&fresh) && !zero.matches(&done));
    // Other kinds keep the plain dotted-path meaning.
    let pod = json!({"kind":"Pod","status":{"successful":"x"}});
    assert!(FieldSelector::parse("status.successful=x")
        .expect("parse")
        .matches(&pod));
}

#[test]
fn field_selector_for_kind_checks_labels_and_reads_typed_values() {
    let pod = &skiff_api::kinds::by_group_kind("", "Pod")
        .expect("pod")
        .info;
    let node = &skiff_api::kinds::by_group_kind("", "Node")
        .expect("node")
        .info;
    let cm = &skiff_api::kinds::by_group_kind("", "ConfigMap")
        .expect("cm")
        .info;
    // Only status.podIP set (an older writer): it is the first pod IP.
    let p = json!({"kind":"Pod","metadata":{"name":"p"},"spec":{},"status":{"podIP":"10.0.0.1"}});
    let sel = FieldSelector::for_kind("status.podIP=10.0.0.1,spec.hostNetwork=false", pod)
        .expect("pod selector");
    assert!(sel.matches(&p));
    let n = json!({"kind":"Node","metadata":{"name":"n"}});
    assert!(FieldSelector::for_kind("spec.unschedulable=false", node)
        .expect("node selector")
        .matches(&n));
    let e = FieldSelector::for_kind("spec.podCIDR=x", node).expect_err("unsupported");
    assert_eq!(
        (e.code, e.message.as_str()),
        (400, "field label not supported: spec.podCIDR")
    );
    let e = FieldSelector::for_kind("data.k=v", cm).expect_err("unsupported");
    assert_eq!(
        e.message,
        "\"data.k\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
    );
}
