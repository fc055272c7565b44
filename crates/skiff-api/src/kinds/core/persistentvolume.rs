//! core/v1 PersistentVolume: a piece of storage on the cluster (hostPath, local), bound to one
//! claim. Defaults, validation and the printer follow upstream's `pkg/apis/core` rules; the
//! `kubernetes.io/pv-protection` finalizer is added on create (skiff-controllers' PV
//! protection loop removes it once no claim is bound).

use serde_json::{json, Map, Value};
use skiff_semantics::quantity::Quantity;

use crate::kinds::prelude::*;

pub(crate) const KIND: Kind = Kind {
    info: ResourceInfo {
        group: "",
        version: "v1",
        kind: "PersistentVolume",
        list_kind: "PersistentVolumeList",
        plural: "persistentvolumes",
        singular: "persistentvolume",
        namespaced: false,
        short_names: &["pv"],
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

pub(crate) const PV_PROTECTION: &str = "kubernetes.io/pv-protection";

/// The access modes upstream accepts, in the order its printer abbreviates them.
pub(crate) const ACCESS_MODES: &[(&str, &str)] = &[
    ("ReadWriteOnce", "RWO"),
    ("ReadOnlyMany", "ROX"),
    ("ReadWriteMany", "RWX"),
    ("ReadWriteOncePod", "RWOP"),
];
const MODE_NAMES: &[&str] = &[
    "ReadOnlyMany",
    "ReadWriteMany",
    "ReadWriteOnce",
    "ReadWriteOncePod",
];
pub(crate) const VOLUME_MODES: &[&str] = &["Block", "Filesystem"];

/// The volume sources skiff's agent can mount; any other upstream source counts towards
/// "exactly one" but is refused by the agent at mount time.
const SOURCES: &[&str] = &[
    "hostPath",
    "local",
    "nfs",
    "iscsi",
    "csi",
    "fc",
    "rbd",
    "cephfs",
    "flexVolume",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "azureDisk",
    "azureFile",
    "glusterfs",
    "cinder",
    "flocker",
    "vsphereVolume",
    "quobyte",
    "photonPersistentDisk",
    "portworxVolume",
    "scaleIO",
    "storageos",
];

/// `SetDefaults_PersistentVolume`.
fn defaults(obj: &mut Map<String, Value>) {
    let spec = child(obj, "spec");
    default(spec, "persistentVolumeReclaimPolicy", json!("Retain"));
    default(spec, "volumeMode", json!("Filesystem"));
    default(child(obj, "status"), "phase", json!("Pending"));
}

/// Adds a finalizer once (upstream's admission plugin `StorageObjectInUseProtection`).
pub(crate) fn add_finalizer(obj: &mut Value, name: &str) {
    let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    let list = meta
        .entry("finalizers")
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Some(list) = list.as_array_mut() {
        if !list.iter().any(|f| f.as_str() == Some(name)) {
            list.push(json!(name));
        }
    }
}

fn prepare_create(obj: &mut Value) {
    add_finalizer(obj, PV_PROTECTION);
}

/// Upstream's access-mode checks (shared with claims): at least one, each known, and
/// ReadWriteOncePod alone.
pub(crate) fn access_modes(e: &mut Errs, modes: Option<&Value>, field: &str, required: &str) {
    let modes = modes
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    if modes.is_empty() {
        e.required(field, required);
        return;
    }
    let mut rwop = false;
    for m in modes {
        let m = m.as_str().unwrap_or("");
        if !MODE_NAMES.contains(&m) {
            e.not_supported(field, m, MODE_NAMES);
        }
        rwop |= m == "ReadWriteOncePod";
    }
    if rwop && modes.len() > 1 {
        e.forbidden(
            field,
            "may not use ReadWriteOncePod with other access modes",
        );
    }
}

/// A quantity's value as written (string or number).
pub(crate) fn quantity(v: Option<&Value>) -> Option<Quantity> {
    match v? {
        Value::String(s) => Quantity::parse(s).ok(),
        Value::Number(n) => Quantity::parse(&n.to_string()).ok(),
        _ => None,
    }
}

fn storage_class(e: &mut Errs, spec: &Value, field: &str) {
    if let Some(sc) = spec.get("storageClassName").and_then(Value::as_str) {
        if !sc.is_empty() {
            for m in dns1123_subdomain(sc) {
                e.invalid_str(field, sc, &m);
            }
        }
    }
}

/// `ValidatePersistentVolume` and, on updates, `ValidatePersistentVolumeUpdate`.
fn validate(e: &mut Errs, obj: &Map<String, Value>, old: Option<&Value>) {
    let empty = json!({});
    let spec = obj.get("spec").unwrap_or(&empty);
    access_modes(
        e,
        spec.get("accessModes"),
        "spec.accessModes",
        "must specify at least 1 access mode",
    );
    let capacity = spec.get("capacity").and_then(Value::as_object);
    if capacity.is_none_or(Map::is_empty) {
        e.required("spec.capacity", "");
    }
    if let Some(cap) = capacity {
        if !cap.contains_key("storage") || cap.len() > 1 {
            let keys: Vec<&str> = cap.keys().map(String::as_str).collect();
            e.push(
                "FieldValueNotSupported",
                "spec.capacity",
                format!(
                    "Unsupported value: {}: supported values: \"storage\"",
                    go_value(&json!(keys.join(",")))
                ),
            );
        }
        if let Some(v) = cap.get("storage") {
            match quantity(Some(v)) {
                Some(q) if q.is_negative() => e.invalid(
                    "spec.capacity[storage]",
                    v,
                    "must be greater than or equal to 0",
                ),
                Some(_) => {}
                None => e.invalid(
                    "spec.capacity[storage]",
                    v,
                    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
                ),
            }
        }
    }
    if let Some(p) = spec
        .get("persistentVolumeReclaimPolicy")
        .and_then(Value::as_str)
    {
        if !["Delete", "Recycle", "Retain"].contains(&p) {
            e.not_supported(
                "spec.persistentVolumeReclaimPolicy",
                p,
                &["Delete", "Recycle", "Retain"],
            );
        }
    }
    if let Some(m) = spec.get("volumeMode").and_then(Value::as_str) {
        if !VOLUME_MODES.contains(&m) {
            e.not_supported("spec.volumeMode", m, VOLUME_MODES);
        }
    }
    storage_class(e, spec, "spec.storageClassName");
    let mut sources = 0;
    for src in SOURCES {
        if spec.get(*src).is_none_or(Value::is_null) {
            continue;
        }
        sources += 1;
        if sources > 1 {
            e.forbidden(
                &format!("spec.{src}"),
                "may not specify more than 1 volume type",
            );
            continue;
        }
        if matches!(*src, "hostPath" | "local") {
            let path = spec
                .pointer(&format!("/{src}/path"))
                .and_then(Value::as_str);
            if path.is_none_or(str::is_empty) {
                e.required(&format!("spec.{src}.path"), "");
            }
        }
        if *src == "local" && spec.get("nodeAffinity").is_none_or(Value::is_null) {
            e.required("spec.nodeAffinity", "Local volumes require node affinity");
        }
    }
    if sources == 0 {
        e.required("spec", "must specify a volume type");
    }
    let Some(old) = old else {
        return;
    };
    let old_spec = old.get("spec").unwrap_or(&empty);
    if SOURCES.iter().any(|s| spec.get(*s) != old_spec.get(*s)) {
        e.forbidden(
            "spec.persistentvolumesource",
            "spec.persistentvolumesource is immutable after creation",
        );
    }
    if spec.get("volumeMode") != old_spec.get("volumeMode") {
        e.invalid(
            "spec.volumeMode",
            spec.get("volumeMode").unwrap_or(&Value::Null),
            "field is immutable",
        );
    }
    if old_spec.get("nodeAffinity").is_some_and(|a| !a.is_null())
        && spec.get("nodeAffinity") != old_spec.get("nodeAffinity")
    {
        e.invalid_omit("spec.nodeAffinity", "field is immutable");
    }
}

/// Upstream's `GetAccessModesAsString`.
pub(crate) fn modes_string(modes: &[Value]) -> String {
    let has = |m: &str| modes.iter().any(|v| v.as_str() == Some(m));
    ACCESS_MODES
        .iter()
        .filter(|(m, _)| has(m))
        .map(|(_, short)| *short)
        .collect::<Vec<_>>()
        .join(",")
}

/// A storage quantity printed as upstream's `Quantity.String()` (canonical form).
pub(crate) fn storage_cell(obj: &Value, ptr: &str) -> String {
    match obj.pointer(ptr) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

/// The class name, `spec.storageClassName` or the beta annotation upstream still reads.
pub(crate) fn class_of(obj: &Value) -> &str {
    let ann = obj
        .pointer("/metadata/annotations/volume.beta.kubernetes.io~1storage-class")
        .and_then(Value::as_str);
    ann.unwrap_or_else(|| s(obj, "/spec/storageClassName"))
}

#[rustfmt::skip]
const COLUMNS: &[Col] = &[
        NAME,
        ("Capacity", "string", 0, "capacity is the description of the persistent volume's resources and capacity. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#capacity"),
        ("Access Modes", "string", 0, "accessModes contains all ways the volume can be mounted. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#access-modes"),
        ("Reclaim Policy", "string", 0, "persistentVolumeReclaimPolicy defines what happens to a persistent volume when released from its claim. Valid options are Retain (default for manually created PersistentVolumes), Delete (default for dynamically provisioned PersistentVolumes), and Recycle (deprecated). Recycle must be supported by the volume plugin underlying this PersistentVolume. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#reclaiming"),
        ("Status", "string", 0, "phase indicates if a volume is available, bound to a claim, or released by a claim. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#phase"),
        ("Claim", "string", 0, "claimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim. Expected to be non-nil when bound. claim.VolumeName is the authoritative bind between PV and PVC. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#binding"),
        ("StorageClass", "string", 0, "StorageClass of the pv"),
        ("VolumeAttributesClass", "string", 0, "VolumeAttributesClass of the pv"),
        ("Reason", "string", 0, "reason is a brief CamelCase string that describes any failure and is meant for machine parsing and tidy display in the CLI."),
        AGE,
        ("VolumeMode", "string", 1, "volumeMode defines if a volume is intended to be used with a formatted filesystem or to remain in raw block state. Value of Filesystem is implied when not included in spec."),
];

fn cells(obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let (name, age) = name_age(obj, now);
    let claim = match obj.pointer("/spec/claimRef") {
        Some(r) if r.is_object() => format!("{}/{}", s(r, "/namespace"), s(r, "/name")),
        _ => String::new(),
    };
    let phase = if obj
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|t| !t.is_null())
    {
        "Terminating"
    } else {
        s(obj, "/status/phase")
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
        json!(storage_cell(obj, "/spec/capacity/storage")),
        json!(modes_string(arr(obj, "/spec/accessModes"))),
        json!(s(obj, "/spec/persistentVolumeReclaimPolicy")),
        json!(phase),
        json!(claim),
        json!(class_of(obj)),
        json!(vac),
        json!(s(obj, "/status/reason")),
        json!(age),
        json!(mode),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(obj: Value, old: Option<Value>) -> Vec<String> {
        let mut e = Errs(Vec::new());
        validate(&mut e, obj.as_object().unwrap(), old.as_ref());
        e.0.into_iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect()
    }

    fn pv() -> Value {
        json!({"metadata": {"name": "pv1"}, "spec": {
            "accessModes": ["ReadWriteOnce"], "capacity": {"storage": "1Gi"},
            "hostPath": {"path": "/tmp/x"}}})
    }

    #[test]
    fn defaults_and_finalizer() {
        let mut o = pv();
        defaults(o.as_object_mut().unwrap());
        prepare_create(&mut o);
        assert_eq!(o["spec"]["persistentVolumeReclaimPolicy"], "Retain");
        assert_eq!(o["spec"]["volumeMode"], "Filesystem");
        assert_eq!(o["status"]["phase"], "Pending");
        assert_eq!(o["metadata"]["finalizers"], json!([PV_PROTECTION]));
        assert!(check(o, None).is_empty());
    }

    #[test]
    fn upstream_messages() {
        let errs = check(json!({"metadata": {"name": "p"}, "spec": {}}), None);
        assert!(
            errs.contains(
                &"spec.accessModes: Required value: must specify at least 1 access mode"
                    .to_string()
            ),
            "{errs:?}"
        );
        assert!(
            errs.contains(&"spec.capacity: Required value".to_string()),
            "{errs:?}"
        );
        assert!(
            errs.contains(&"spec: Required value: must specify a volume type".to_string()),
            "{errs:?}"
        );
        let mut two = pv();
        two["spec"]["local"] = json!({"path": "/x"});
        two["spec"]["accessModes"] = json!(["ReadWriteOncePod", "Bogus"]);
        let errs = check(two, None);
        assert!(
            errs.contains(
                &"spec.local: Forbidden: may not specify more than 1 volume type".to_string()
            ),
            "{errs:?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.starts_with("spec.accessModes: Unsupported value: \"Bogus\"")),
            "{errs:?}"
        );
        let mut local = pv();
        local["spec"].as_object_mut().unwrap().remove("hostPath");
        local["spec"]["local"] = json!({"path": "/x"});
        let errs = check(local, None);
        assert_eq!(
            errs,
            vec!["spec.nodeAffinity: Required value: Local volumes require node affinity"]
        );
        let mut moved = pv();
        moved["spec"]["hostPath"]["path"] = json!("/elsewhere");
        let errs = check(moved, Some(pv()));
        assert_eq!(errs, vec!["spec.persistentvolumesource: Forbidden: spec.persistentvolumesource is immutable after creation"]);
    }

    #[test]
    fn printer_row() {
        let mut o = pv();
        o["spec"]["accessModes"] = json!(["ReadWriteMany", "ReadWriteOnce"]);
        o["spec"]["claimRef"] = json!({"namespace": "ns", "name": "c"});
        o["spec"]["storageClassName"] = json!("local-path");
        o["status"] = json!({"phase": "Bound"});
        let row = cells(&o, jiff::Timestamp::now());
        assert_eq!(row[1], "1Gi");
        assert_eq!(row[2], "RWO,RWX");
        assert_eq!(row[4], "Bound");
        assert_eq!(row[5], "ns/c");
        assert_eq!(row[6], "local-path");
        assert_eq!(row[7], "<unset>");
    }
}
