//! The kind registry changed no behaviour: everything discovery reads, and what every per-kind
//! hook does, is byte-identical to the hand-written tables and `match` arms it replaced
//! (snapshots taken before the move, in `fixtures/`). Kinds added later are not in the
//! snapshots and do not disturb them. Deliberate changes since: `serviceaccounts/token`
//! (issue 12), `pods/ephemeralcontainers`, `pods/attach`, `pods/portforward`, `nodes/proxy`,
//! `pods/proxy`, `services/proxy`, ReplicaSet `status.replicas` defaulted to 0 (issue 13).

use serde_json::{json, Value};
use skiff_api::resources::all;
use skiff_api::selector::FieldSelector;
use skiff_api::table::{to_table, IncludeObject};
use skiff_api::{defaults, patch, validate};

/// `{:#?}` of every served resource, in discovery order, as it was before the registry.
const DISCOVERY_SNAPSHOT: &str = include_str!("fixtures/discovery.txt");

/// `group/kind` of one `{:#?}` entry.
fn entry_key(entry: &str) -> String {
    let field = |name: &str| {
        entry
            .lines()
            .find_map(|l| l.trim().strip_prefix(name))
            .map(|v| v.trim_end_matches(',').trim_matches('"').to_string())
            .unwrap_or_default()
    };
    format!("{}/{}", field("group: "), field("kind: "))
}

/// The `{:#?}` entries of a list, each with its key.
fn entries(list: &str) -> Vec<(String, String)> {
    list.split("\n    ResourceInfo {")
        .skip(1)
        .map(|e| (entry_key(e), e.trim_end_matches("\n]\n").to_string()))
        .collect()
}

/// Kinds added after the snapshot are allowed; the snapshot's kinds keep their data and order.
#[test]
fn discovery_data_is_unchanged() {
    let before = entries(DISCOVERY_SNAPSHOT);
    assert_eq!(before.len(), 17, "the snapshot is read");
    let now = entries(&format!("{:#?}\n", all()));
    let kept: Vec<_> = now
        .into_iter()
        .filter(|(k, _)| before.iter().any(|(b, _)| b == k))
        .collect();
    assert_eq!(kept, before);
}

/// What every per-kind hook does to one object that touches them all (defaulting, create and
/// update preparation, validation, strategic-merge keys, table columns and cells, field
/// selectors), per served kind, as it was before the registry.
const BEHAVIOUR_SNAPSHOT: &str = include_str!("fixtures/kinds_behaviour.json");

fn sample() -> Value {
    let pod_template = json!({
        "metadata": {"labels": {"app": "x"}},
        "spec": {"containers": [{"name": "c", "image": "i"}]},
    });
    json!({
        "metadata": {"name": "a", "namespace": "d", "uid": "u1", "labels": {"app": "x"}},
        "type": "Opaque",
        "data": {"k": "dg=="},
        "spec": {
            "containers": [{"name": "c", "image": "i"}],
            "ports": [{"port": 80}],
            "template": pod_template,
            "jobTemplate": {"spec": {"template": pod_template}},
            "schedule": "* * * * *",
            "selector": {"matchLabels": {"app": "x"}},
        },
        "status": {"conditions": [{"type": "A", "status": "True"}], "succeeded": 2},
    })
}

fn behaviour() -> Value {
    let now: jiff::Timestamp = "2026-11-27T01:10:00Z".parse().expect("time");
    let smp = json!({
        "metadata": {"finalizers": ["f"]},
        "spec": {
            "containers": [{"name": "d", "image": "j"}],
            "ports": [{"port": 81}],
            "template": {"spec": {"containers": [{"name": "d", "image": "j"}]}},
        },
        "status": {"conditions": [{"type": "B", "status": "False"}]},
    });
    let job_done = FieldSelector::parse("status.successful=2").expect("selector");
    let mut out = serde_json::Map::new();
    for info in all() {
        let mut obj = sample();
        obj["kind"] = json!(info.kind);
        obj["apiVersion"] = json!(info.api_version());
        defaults::prepare_create(info, &mut obj);
        defaults::apply_defaults(info, &mut obj);
        let mut updated = obj.clone();
        updated["spec"]["template"]["metadata"]["labels"]["v"] = json!("2");
        defaults::prepare_update(info, &obj, &mut updated);
        let causes = |c: Vec<skiff_api::Cause>| {
            c.iter()
                .map(|c| json!([c.reason, c.field, c.message]))
                .collect::<Vec<_>>()
        };
        let entry = json!({
            "created": obj,
            "updated": updated,
            "create_causes": causes(validate::validation_causes(info, &obj, None)),
            "update_causes": causes(validate::validation_causes(info, &updated, Some(&obj))),
            "unknown_fields": validate::unknown_fields(info, &obj),
            "smp": patch::strategic_merge_patch(info, &obj, &smp).map_err(|e| e.to_string()).err(),
            "smp_result": patch::strategic_merge_patch(info, &obj, &smp).ok(),
            "table": to_table(info, &[obj.clone()], IncludeObject::None, json!({}), now),
            "field_selector": job_done.matches(&obj),
        });
        out.insert(format!("{}/{}", info.group, info.kind), entry);
    }
    Value::Object(out)
}

#[test]
fn per_kind_behaviour_is_unchanged() {
    let before: serde_json::Map<String, Value> =
        serde_json::from_str(BEHAVIOUR_SNAPSHOT).expect("snapshot");
    assert_eq!(before.len(), 17, "the snapshot is read");
    let now = behaviour();
    for (kind, expected) in &before {
        assert_eq!(&now[kind], expected, "{kind}");
    }
}
