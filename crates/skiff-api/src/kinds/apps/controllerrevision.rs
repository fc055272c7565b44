//! apps/v1 ControllerRevision: an immutable snapshot of a StatefulSet's or DaemonSet's template (rollout history and undo).

use serde_json::{json, Map, Value};

use crate::kinds::prelude::*;

pub(crate) const KIND: Kind = Kind {
    info: ResourceInfo {
        group: "apps",
        version: "v1",
        kind: "ControllerRevision",
        list_kind: "ControllerRevisionList",
        plural: "controllerrevisions",
        singular: "controllerrevision",
        namespaced: true,
        short_names: &[],
        categories: &[],
        verbs: FULL,
        subresources: &[],
    },
    validate,
    table: Table {
        columns: COLUMNS,
        cells,
        ..Table::BASE
    },
    ..Kind::BASE
};

/// `ValidateControllerRevisionCreate` / `...Update`: the data is immutable; the revision number
/// may change (the history controller renumbers a revision it re-uses).
fn validate(e: &mut Errs, obj: &Map<String, Value>, old: Option<&Value>) {
    let null = Value::Null;
    let data = obj.get("data").unwrap_or(&null);
    if data.is_null() {
        e.required("data", "data is mandatory");
    }
    non_negative(e, &Value::Object(obj.clone()), "revision", "revision");
    if let Some(old) = old {
        if old.get("data").unwrap_or(&null) != data {
            e.invalid_omit("data", "field is immutable");
        }
    }
}

#[rustfmt::skip]
const COLUMNS: &[Col] = &[
        NAME,
        ("Controller", "string", 0, "Controller of the object"),
        ("Revision", "string", 0, "Revision indicates the revision of the state represented by Data."),
        AGE,
];

/// `printControllerRevision`: `<kind>.<group>/<name>` of the controller, or `<none>`.
fn cells(obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let (name, age) = name_age(obj, now);
    let controller = arr(obj, "/metadata/ownerReferences")
        .iter()
        .find(|r| r.get("controller") == Some(&json!(true)))
        .map_or_else(
            || "<none>".to_string(),
            |r| {
                let kind = s(r, "/kind").to_lowercase();
                let group = s(r, "/apiVersion").rsplit_once('/').map_or("", |(g, _)| g);
                let name = s(r, "/name");
                if group.is_empty() {
                    format!("{kind}/{name}")
                } else {
                    format!("{kind}.{group}/{name}")
                }
            },
        );
    vec![
        json!(name),
        json!(controller),
        json!(n(obj, "/revision")),
        json!(age),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_is_immutable_and_revision_is_not() {
        let old = json!({"metadata": {"name": "web-1"}, "data": {"a": 1}, "revision": 1});
        let mut new = old.clone();
        new["revision"] = json!(3);
        let mut e = Errs::default();
        validate(&mut e, new.as_object().unwrap(), Some(&old));
        assert!(e.0.is_empty());
        new["data"] = json!({"a": 2});
        let mut e = Errs::default();
        validate(&mut e, new.as_object().unwrap(), Some(&old));
        assert_eq!(e.0.len(), 1);
        assert_eq!(e.0[0].field, "data");
        assert_eq!(e.0[0].message, "Invalid value: field is immutable");
    }

    #[test]
    fn table_names_the_controller() {
        let obj = json!({"metadata": {"name": "web-1", "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "controller": true, "uid": "u"}
        ]}, "revision": 2});
        let c = cells(&obj, jiff::Timestamp::now());
        assert_eq!(c[1], "statefulset.apps/web");
        assert_eq!(c[2], 2);
    }
}
