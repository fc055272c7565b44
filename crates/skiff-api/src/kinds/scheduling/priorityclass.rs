//! scheduling.k8s.io/v1 PriorityClass: a named pod priority (resolved into `spec.priority` on
//! create by the API server's Priority admission plugin). Upstream's validation: user classes
//! at most one billion, the `system-` prefix reserved for the two system classes, value and
//! preemptionPolicy immutable.

use serde_json::{json, Map, Value};

use crate::kinds::prelude::*;

pub(crate) const KIND: Kind = Kind {
    info: ResourceInfo {
        group: "scheduling.k8s.io",
        version: "v1",
        kind: "PriorityClass",
        list_kind: "PriorityClassList",
        plural: "priorityclasses",
        singular: "priorityclass",
        namespaced: false,
        short_names: &["pc"],
        categories: &[],
        verbs: FULL,
        subresources: &[],
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

/// The highest value a user-defined class may have (`HighestUserDefinablePriority`).
pub const HIGHEST_USER_DEFINABLE_PRIORITY: i64 = 1_000_000_000;
/// The prefix reserved for the system classes.
pub const SYSTEM_PRIORITY_CLASS_PREFIX: &str = "system-";
/// The system classes the API server keeps: (name, value, description).
pub const SYSTEM_PRIORITY_CLASSES: &[(&str, i64, &str)] = &[
    (
        "system-node-critical",
        2_000_001_000,
        "Used for system critical pods that must not be moved from their current node.",
    ),
    (
        "system-cluster-critical",
        2_000_000_000,
        "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary.",
    ),
];

/// A system class as the API server creates it at startup.
pub fn system_priority_class(name: &str, value: i64, description: &str) -> Value {
    json!({
        "apiVersion": "scheduling.k8s.io/v1",
        "kind": "PriorityClass",
        "metadata": {"name": name},
        "value": value,
        "globalDefault": false,
        "description": description,
        "preemptionPolicy": "PreemptLowerPriority",
    })
}

/// `SetDefaults_PriorityClass`.
fn defaults(obj: &mut Map<String, Value>) {
    default(obj, "preemptionPolicy", json!("PreemptLowerPriority"));
}

/// `IsKnownSystemPriorityClass`: Err carries upstream's reason.
fn known_system_class(name: &str, value: i64, global_default: bool) -> Result<(), String> {
    let Some((_, want, _)) = SYSTEM_PRIORITY_CLASSES.iter().find(|(n, _, _)| *n == name) else {
        return Err(format!("{name} is not a known system priority class"));
    };
    if *want != value {
        return Err(format!("value of {name} PriorityClass must be {want}"));
    }
    if global_default {
        return Err(format!(
            "globalDefault of {name} PriorityClass must be false"
        ));
    }
    Ok(())
}

/// `ValidatePriorityClass` and `ValidatePriorityClassUpdate`.
fn validate(e: &mut Errs, obj: &Map<String, Value>, old: Option<&Value>) {
    let name = obj
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let value = obj.get("value").and_then(Value::as_i64).unwrap_or(0);
    let global_default = obj
        .get("globalDefault")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if name.starts_with(SYSTEM_PRIORITY_CLASS_PREFIX) {
        if let Err(why) = known_system_class(name, value, global_default) {
            e.forbidden(
                "metadata.name",
                &format!("priority class names with '{SYSTEM_PRIORITY_CLASS_PREFIX}' prefix are reserved for system use only. error: {why}"),
            );
        }
    } else if value > HIGHEST_USER_DEFINABLE_PRIORITY {
        e.forbidden(
            "value",
            &format!("maximum allowed value of a user defined priority is {HIGHEST_USER_DEFINABLE_PRIORITY}"),
        );
    }
    if let Some(p) = obj.get("preemptionPolicy") {
        let p = p.as_str().unwrap_or("");
        if !["Never", "PreemptLowerPriority"].contains(&p) {
            e.not_supported("preemptionPolicy", p, &["Never", "PreemptLowerPriority"]);
        }
    }
    let Some(old) = old else { return };
    if old.get("value").and_then(Value::as_i64).unwrap_or(0) != value {
        e.forbidden("value", "may not be changed in an update.");
    }
    let policy = obj.get("preemptionPolicy").unwrap_or(&Value::Null);
    if old.get("preemptionPolicy").unwrap_or(&Value::Null) != policy {
        e.invalid("preemptionPolicy", policy, "field is immutable");
    }
}

#[rustfmt::skip]
const COLUMNS: &[Col] = &[
    NAME,
    ("Value", "integer", 0, "value represents the integer value of this priority class. This is the actual priority that pods receive when they have the name of this class in their pod spec."),
    ("Global-Default", "boolean", 0, "globalDefault specifies whether this PriorityClass should be considered as the default priority for pods that do not have any priority class. Only one PriorityClass can be marked as `globalDefault`. However, if more than one PriorityClasses exists with their `globalDefault` field set to true, the smallest value of such global default PriorityClasses will be used as the default priority."),
    ("Preemption-Policy", "string", 0, "preemptionPolicy is the Policy for preempting pods with lower priority. One of Never, PreemptLowerPriority. Defaults to PreemptLowerPriority if unset."),
    AGE,
];

fn cells(obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let (name, age) = name_age(obj, now);
    vec![
        json!(name),
        json!(n(obj, "/value")),
        json!(obj
            .get("globalDefault")
            .and_then(Value::as_bool)
            .unwrap_or(false)),
        json!(s(obj, "/preemptionPolicy")),
        json!(age),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn causes(obj: Value, old: Option<Value>) -> Vec<String> {
        let mut e = Errs::default();
        validate(&mut e, obj.as_object().expect("object"), old.as_ref());
        e.0.into_iter().map(|c| c.message).collect()
    }

    #[test]
    fn system_classes_validate_and_others_are_reserved() {
        for (name, value, description) in SYSTEM_PRIORITY_CLASSES {
            assert!(causes(system_priority_class(name, *value, description), None).is_empty());
        }
        let wrong = json!({"metadata": {"name": "system-node-critical"}, "value": 5});
        assert_eq!(
            causes(wrong, None),
            ["Forbidden: priority class names with 'system-' prefix are reserved for system use only. error: value of system-node-critical PriorityClass must be 2000001000"]
        );
        let user = json!({"metadata": {"name": "u"}, "value": 1_000_000_000});
        assert!(causes(user.clone(), None).is_empty());
        let changed = json!({"metadata": {"name": "u"}, "value": 1, "preemptionPolicy": "Never"});
        assert_eq!(
            causes(changed, Some(user)),
            [
                "Forbidden: may not be changed in an update.",
                "Invalid value: \"Never\": field is immutable"
            ]
        );
    }
}
