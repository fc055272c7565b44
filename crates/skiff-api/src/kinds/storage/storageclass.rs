//! storage.k8s.io/v1 StorageClass: how claims of a class are provisioned. Defaults, validation
//! (provisioner, parameters and reclaimPolicy immutable) and the printer follow upstream's
//! `pkg/apis/storage`; the default class (annotation `storageclass.kubernetes.io/is-default-class`)
//! prints with " (default)" after its name.

use serde_json::{json, Map, Value};

use crate::kinds::prelude::*;

pub(crate) const KIND: Kind = Kind {
    info: ResourceInfo {
        group: "storage.k8s.io",
        version: "v1",
        kind: "StorageClass",
        list_kind: "StorageClassList",
        plural: "storageclasses",
        singular: "storageclass",
        namespaced: false,
        short_names: &["sc"],
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

pub const DEFAULT_CLASS_ANNOTATION: &str = "storageclass.kubernetes.io/is-default-class";
const BETA_DEFAULT_CLASS_ANNOTATION: &str = "storageclass.beta.kubernetes.io/is-default-class";

/// Whether a StorageClass is marked default (upstream's `IsDefaultAnnotation`).
pub fn is_default(sc: &Value) -> bool {
    let ann = sc.pointer("/metadata/annotations");
    [DEFAULT_CLASS_ANNOTATION, BETA_DEFAULT_CLASS_ANNOTATION]
        .iter()
        .any(|k| ann.and_then(|a| a.get(*k)).and_then(Value::as_str) == Some("true"))
}

/// `SetDefaults_StorageClass`.
fn defaults(obj: &mut Map<String, Value>) {
    default(obj, "reclaimPolicy", json!("Delete"));
    default(obj, "volumeBindingMode", json!("Immediate"));
}

/// `ValidateStorageClass` and `ValidateStorageClassUpdate`.
fn validate(e: &mut Errs, obj: &Map<String, Value>, old: Option<&Value>) {
    let provisioner = obj.get("provisioner").and_then(Value::as_str).unwrap_or("");
    if provisioner.is_empty() {
        e.required("provisioner", "");
    } else {
        for m in qualified_name(&provisioner.to_lowercase()) {
            e.invalid_str("provisioner", provisioner, &m);
        }
    }
    match obj.get("reclaimPolicy").and_then(Value::as_str) {
        Some("Delete" | "Retain") | None => {}
        Some(p) => e.not_supported("reclaimPolicy", p, &["Delete", "Retain"]),
    }
    match obj.get("volumeBindingMode").and_then(Value::as_str) {
        None => e.required("volumeBindingMode", ""),
        Some("Immediate" | "WaitForFirstConsumer") => {}
        Some(m) => e.not_supported(
            "volumeBindingMode",
            m,
            &["Immediate", "WaitForFirstConsumer"],
        ),
    }
    if let Some(params) = obj.get("parameters").and_then(Value::as_object) {
        if params.len() > 512 {
            e.too_many("parameters", params.len(), 512);
        }
        for k in params.keys() {
            if k.is_empty() {
                e.invalid_str("parameters", k, "field can not be empty.");
            }
        }
    }
    let Some(old) = old else {
        return;
    };
    let empty_params = |v: Option<&Value>| {
        v.and_then(Value::as_object)
            .filter(|m| !m.is_empty())
            .cloned()
    };
    if empty_params(obj.get("parameters")) != empty_params(old.get("parameters")) {
        e.forbidden("parameters", "updates to parameters are forbidden.");
    }
    if obj.get("provisioner") != old.get("provisioner") {
        e.forbidden("provisioner", "updates to provisioner are forbidden.");
    }
    if obj.get("reclaimPolicy") != old.get("reclaimPolicy") {
        e.forbidden("reclaimPolicy", "updates to reclaimPolicy are forbidden.");
    }
    if obj.get("volumeBindingMode") != old.get("volumeBindingMode") {
        e.invalid(
            "volumeBindingMode",
            obj.get("volumeBindingMode").unwrap_or(&Value::Null),
            "field is immutable",
        );
    }
}

#[rustfmt::skip]
const COLUMNS: &[Col] = &[
        NAME,
        ("Provisioner", "string", 0, "provisioner indicates the type of the provisioner."),
        ("ReclaimPolicy", "string", 0, "reclaimPolicy controls the reclaimPolicy for dynamically provisioned PersistentVolumes of this storage class. Defaults to Delete."),
        ("VolumeBindingMode", "string", 0, "volumeBindingMode indicates how PersistentVolumeClaims should be provisioned and bound.  When unset, VolumeBindingImmediate is used. This field is only honored by servers that enable the VolumeScheduling feature."),
        ("AllowVolumeExpansion", "string", 0, "allowVolumeExpansion shows whether the storage class allow volume expand."),
        AGE,
];

fn cells(obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let (mut name, age) = name_age(obj, now);
    if is_default(obj) {
        name.push_str(" (default)");
    }
    let or = |v: &str, d: &str| {
        if v.is_empty() {
            d.to_string()
        } else {
            v.to_string()
        }
    };
    let expand = obj
        .get("allowVolumeExpansion")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    vec![
        json!(name),
        json!(s(obj, "/provisioner")),
        json!(or(s(obj, "/reclaimPolicy"), "Delete")),
        json!(or(s(obj, "/volumeBindingMode"), "Immediate")),
        json!(expand.to_string()),
        json!(age),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(obj: &Value, old: Option<&Value>) -> Vec<String> {
        let mut e = Errs(Vec::new());
        validate(&mut e, obj.as_object().unwrap(), old);
        e.0.into_iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect()
    }

    #[test]
    fn defaults_validation_and_row() {
        let mut sc = json!({"metadata": {"name": "fast", "annotations": {DEFAULT_CLASS_ANNOTATION: "true"}},
            "provisioner": "skiff.dev/local-path", "parameters": {"a": "b"}});
        defaults(sc.as_object_mut().unwrap());
        assert_eq!(sc["reclaimPolicy"], "Delete");
        assert_eq!(sc["volumeBindingMode"], "Immediate");
        assert!(check(&sc, None).is_empty());
        let row = cells(&sc, jiff::Timestamp::now());
        assert_eq!(
            row[..5],
            [
                json!("fast (default)"),
                json!("skiff.dev/local-path"),
                json!("Delete"),
                json!("Immediate"),
                json!("false")
            ]
        );
        let mut changed = sc.clone();
        changed["provisioner"] = json!("other.dev/x");
        changed["parameters"] = json!({"a": "c"});
        changed["reclaimPolicy"] = json!("Retain");
        assert_eq!(
            check(&changed, Some(&sc)),
            vec![
                "parameters: Forbidden: updates to parameters are forbidden.",
                "provisioner: Forbidden: updates to provisioner are forbidden.",
                "reclaimPolicy: Forbidden: updates to reclaimPolicy are forbidden.",
            ]
        );
        assert_eq!(
            check(
                &json!({"metadata": {"name": "x"}, "volumeBindingMode": "Immediate"}),
                None
            ),
            vec!["provisioner: Required value"]
        );
    }
}
