//! core/v1 PersistentVolumeClaim: a pod's request for storage, bound to a PersistentVolume.
//! Defaults, validation (spec immutable except the storage request of a bound claim, which may
//! only grow, and volumeAttributesClassName) and the printer follow upstream; the
//! `kubernetes.io/pvc-protection` finalizer is added on create and removed by skiff-controllers
//! once no pod uses the claim.

use serde_json::{json, Map, Value};

use super::persistentvolume::{access_modes, add_finalizer, class_of, modes_string, quantity};
use crate::kinds::prelude::*;

pub(crate) const KIND: Kind = Kind {
    info: ResourceInfo {
        group: "",
        version: "v1",
        kind: "PersistentVolumeClaim",
        list_kind: "PersistentVolumeClaimList",
        plural: "persistentvolumeclaims",
        singular: "persistentvolumeclaim",
        namespaced: true,
        short_names: &["pvc"],
        categories: &[],
        verbs: FULL,
        subresources: &["status"],
    },
    defaults,
    prepare_create,
    validate,
    table: Table {
        columns: COLUMNS,
        cells,
        ..Table::BASE
    },
    ..Kind::BASE
};

pub(crate) const PVC_PROTECTION: &str = "kubernetes.io/pvc-protection";

/// `SetDefaults_PersistentVolumeClaim` (and the status phase upstream's strategy sets).
fn defaults(obj: &mut Map<String, Value>) {
    default(child(obj, "spec"), "volumeMode", json!("Filesystem"));
    default(child(obj, "status"), "phase", json!("Pending"));
}

fn prepare_create(obj: &mut Value) {
    add_finalizer(obj, PVC_PROTECTION);
}

/// `ValidatePersistentVolumeClaim` and, on updates, `ValidatePersistentVolumeClaimUpdate`.
fn validate(e: &mut Errs, obj: &Map<String, Value>, old: Option<&Value>) {
    let empty = json!({});
    let spec = obj.get("spec").unwrap_or(&empty);
    access_modes(
        e,
        spec.get("accessModes"),
        "spec.accessModes",
        "at least 1 access mode is required",
    );
    if let Some(sel) = spec.get("selector").filter(|s| !s.is_null()) {
        label_selector(e, sel, "spec.selector");
    }
    match spec.pointer("/resources/requests/storage") {
        None => e.required("spec.resources[storage]", ""),
        Some(v) => match quantity(Some(v)) {
            Some(q) if q.is_negative() => e.invalid(
                "spec.resources.requests[storage]",
                v,
                "must be greater than or equal to 0",
            ),
            Some(q) if q.is_zero() => e.invalid(
                "spec.resources.requests[storage]",
                v,
                "must be greater than zero",
            ),
            Some(_) => {}
            None => e.invalid(
                "spec.resources.requests[storage]",
                v,
                "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
            ),
        },
    }
    if let Some(sc) = spec.get("storageClassName").and_then(Value::as_str) {
        if !sc.is_empty() {
            for m in dns1123_subdomain(sc) {
                e.invalid_str("spec.storageClassName", sc, &m);
            }
        }
    }
    if let Some(m) = spec.get("volumeMode").and_then(Value::as_str) {
        if !super::persistentvolume::VOLUME_MODES.contains(&m) {
            e.not_supported("spec.volumeMode", m, super::persistentvolume::VOLUME_MODES);
        }
    }
    if let Some(old) = old {
        validate_update(e, spec, old);
    }
}

fn validate_update(e: &mut Errs, spec: &Value, old: &Value) {
    let empty = json!({});
    let old_spec = old.get("spec").unwrap_or(&empty);
    let mut was = old_spec.clone();
    let mut now = spec.clone();
    let (Some(w), Some(n)) = (was.as_object_mut(), now.as_object_mut()) else {
        return;
    };
    // The binder sets volumeName once; the default class may be set once on a claim that
    // has none (unset, not "": an explicit "" means "no class").
    if w.get("volumeName")
        .is_none_or(|v| v.is_null() || v.as_str() == Some(""))
    {
        w.remove("volumeName");
        n.remove("volumeName");
    }
    if w.get("storageClassName").is_none_or(Value::is_null) {
        w.remove("storageClassName");
        n.remove("storageClassName");
    }
    w.remove("volumeAttributesClassName");
    n.remove("volumeAttributesClassName");
    let bound = old.pointer("/status/phase").and_then(Value::as_str) == Some("Bound");
    let old_req = old_spec.pointer("/resources/requests/storage");
    let new_req = spec.pointer("/resources/requests/storage");
    if bound {
        // Expansion: only the storage request may change, and it may not shrink.
        if let (Some(o), Some(nv)) = (quantity(old_req), quantity(new_req)) {
            if nv < o {
                e.forbidden(
                    "spec.resources.requests.storage",
                    "field can not be less than previous value",
                );
            }
        }
        for m in [&mut *w, &mut *n] {
            if let Some(r) = m
                .get_mut("resources")
                .and_then(|r| r.get_mut("requests"))
                .and_then(Value::as_object_mut)
            {
                r.remove("storage");
            }
        }
    }
    if w != n {
        e.forbidden(
            "spec",
            "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims",
        );
    }
}

#[rustfmt::skip]
const COLUMNS: &[Col] = &[
        NAME,
        ("Status", "string", 0, "phase represents the current phase of PersistentVolumeClaim."),
        ("Volume", "string", 0, "volumeName is the binding reference to the PersistentVolume backing this claim."),
        ("Capacity", "string", 0, "capacity represents the actual resources of the underlying volume."),
        ("Access Modes", "string", 0, "accessModes contains the actual access modes the volume backing the PVC has. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#access-modes-1"),
        ("StorageClass", "string", 0, "StorageClass of the pvc"),
        ("VolumeAttributesClass", "string", 0, "VolumeAttributesClass of the pvc"),
        AGE,
        ("VolumeMode", "string", 1, "volumeMode defines what type of volume is required by the claim. Value of Filesystem is implied when not included in claim spec."),
];

fn cells(obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let (name, age) = name_age(obj, now);
    let phase = if obj
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|t| !t.is_null())
    {
        "Terminating"
    } else {
        s(obj, "/status/phase")
    };
    let volume = s(obj, "/spec/volumeName");
    let (capacity, modes) = if volume.is_empty() {
        (String::new(), String::new())
    } else {
        (
            super::persistentvolume::storage_cell(obj, "/status/capacity/storage"),
            modes_string(arr(obj, "/status/accessModes")),
        )
    };
    let vac = match s(obj, "/spec/volumeAttributesClassName") {
        "" => "<unset>",
        v => v,
    };
    let mode = match s(obj, "/spec/volumeMode") {
        "" => "<unset>",
        m => m,
    };
    vec![
        json!(name),
        json!(phase),
        json!(volume),
        json!(capacity),
        json!(modes),
        json!(class_of(obj)),
        json!(vac),
        json!(age),
        json!(mode),
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

    fn pvc() -> Value {
        json!({"metadata": {"name": "c", "namespace": "d"}, "spec": {
            "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
    }

    #[test]
    fn defaults_finalizer_and_required() {
        let mut o = pvc();
        defaults(o.as_object_mut().unwrap());
        prepare_create(&mut o);
        assert_eq!(o["spec"]["volumeMode"], "Filesystem");
        assert_eq!(o["status"]["phase"], "Pending");
        assert_eq!(o["metadata"]["finalizers"], json!([PVC_PROTECTION]));
        assert!(check(&o, None).is_empty());
        let errs = check(&json!({"metadata": {"name": "c"}, "spec": {}}), None);
        assert_eq!(
            errs,
            vec![
                "spec.accessModes: Required value: at least 1 access mode is required",
                "spec.resources[storage]: Required value",
            ]
        );
    }

    #[test]
    fn spec_is_immutable_except_growth_when_bound() {
        let old = pvc();
        let mut grown = pvc();
        grown["spec"]["resources"]["requests"]["storage"] = json!("2Gi");
        let errs = check(&grown, Some(&old));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].starts_with("spec: Forbidden: spec is immutable after creation"));
        let mut bound = pvc();
        bound["status"] = json!({"phase": "Bound"});
        bound["spec"]["volumeName"] = json!("pv1");
        grown["spec"]["volumeName"] = json!("pv1");
        assert!(check(&grown, Some(&bound)).is_empty());
        let mut shrunk = grown.clone();
        shrunk["spec"]["resources"]["requests"]["storage"] = json!("500Mi");
        assert_eq!(
            check(&shrunk, Some(&bound)),
            vec!["spec.resources.requests.storage: Forbidden: field can not be less than previous value"]
        );
        // volumeName may be set once (binding), never changed after.
        let mut named = pvc();
        named["spec"]["volumeName"] = json!("pv1");
        assert!(check(&named, Some(&old)).is_empty());
        let mut renamed = pvc();
        renamed["spec"]["volumeName"] = json!("pv2");
        assert_eq!(check(&renamed, Some(&named)).len(), 1);
    }

    #[test]
    fn printer_row() {
        let mut o = pvc();
        o["spec"]["volumeName"] = json!("pv1");
        o["spec"]["storageClassName"] = json!("local-path");
        o["status"] = json!({"phase": "Bound", "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"]});
        let row = cells(&o, jiff::Timestamp::now());
        assert_eq!(
            row[1..7],
            [
                json!("Bound"),
                json!("pv1"),
                json!("1Gi"),
                json!("RWO"),
                json!("local-path"),
                json!("<unset>")
            ]
        );
    }
}
