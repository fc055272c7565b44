//! core/v1 ReplicationController: served as upstream serves it (defaults, validation, printer,
//! field selectors, `scale` and `status`); skiff-controllers' ReplicaSet loop runs over it
//! too.

use serde_json::{json, Map, Value};

use crate::kinds::prelude::*;

pub(crate) const KIND: Kind = Kind {
    info: ResourceInfo {
        group: "",
        version: "v1",
        kind: "ReplicationController",
        list_kind: "ReplicationControllerList",
        plural: "replicationcontrollers",
        singular: "replicationcontroller",
        namespaced: true,
        short_names: &["rc"],
        categories: ALL,
        verbs: FULL,
        subresources: &["status", "scale"],
    },
    defaults,
    validate,
    table: Table {
        columns: COLUMNS,
        cells,
        ..Table::BASE
    },
    patch_root: Ty::Workload,
    fields: FIELDS,
    field_error: not_supported_field_error,
    ..Kind::BASE
};

/// `SetDefaults_ReplicationController`: selector and object labels from the template's labels
/// when empty, one replica, then the pod template's defaults.
fn defaults(obj: &mut Map<String, Value>) {
    let labels = obj
        .get("spec")
        .and_then(|s| s.pointer("/template/metadata/labels"))
        .and_then(Value::as_object)
        .filter(|l| !l.is_empty())
        .cloned();
    if let Some(labels) = labels {
        let spec = child(obj, "spec");
        if spec
            .get("selector")
            .and_then(Value::as_object)
            .is_none_or(Map::is_empty)
        {
            spec.insert("selector".into(), Value::Object(labels.clone()));
        }
        let meta = child(obj, "metadata");
        if meta
            .get("labels")
            .and_then(Value::as_object)
            .is_none_or(Map::is_empty)
        {
            meta.insert("labels".into(), Value::Object(labels));
        }
    }
    let spec = child(obj, "spec");
    default(spec, "replicas", json!(1));
    pod_template(spec);
    // `status.replicas` has no omitempty upstream: a new object reads `{"replicas": 0}`, and
    // typed clients (the Python client's model) require the field.
    default(child(obj, "status"), "replicas", json!(0));
}

/// Upstream's `ValidateReplicationControllerSpec`, through the shared workload checks with the
/// map selector read as `matchLabels`.
fn validate(e: &mut Errs, obj: &Map<String, Value>, old: Option<&Value>) {
    let as_workload = |spec: Option<&Value>| {
        spec.map(|s| {
            let mut s = s.clone();
            if let Some(m) = s.as_object_mut() {
                match m.remove("selector") {
                    Some(Value::Object(sel)) if !sel.is_empty() => {
                        m.insert("selector".into(), json!({ "matchLabels": sel }));
                    }
                    _ => {}
                }
            }
            s
        })
    };
    let spec = as_workload(obj.get("spec"));
    let old_spec = as_workload(old.and_then(|o| o.get("spec")));
    workload(e, spec.as_ref(), old_spec.as_ref(), "replicationcontroller");
}

#[rustfmt::skip]
const COLUMNS: &[Col] = &[
        NAME,
        ("Desired", "integer", 0, "Replicas is the number of desired replicas. This is a pointer to distinguish between explicit zero and unspecified. Defaults to 1. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicationcontroller#what-is-a-replicationcontroller"),
        ("Current", "integer", 0, "Replicas is the most recently observed number of replicas. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicationcontroller#what-is-a-replicationcontroller"),
        ("Ready", "integer", 0, "The number of ready replicas for this replication controller."),
        AGE,
        ("Containers", "string", 1, "Names of each container in the template."),
        ("Images", "string", 1, "Images referenced by each container in the template."),
        ("Selector", "string", 1, "Selector is a label query over pods that should match the Replicas count. If Selector is empty, it is defaulted to the labels present on the Pod template. Label keys and values that must match in order to be controlled by this replication controller, if empty defaulted to labels on Pod template. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors"),
];

fn cells(obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let (name, age) = name_age(obj, now);
    let (names, images) = container_cells(obj);
    vec![
        json!(name),
        json!(n(obj, "/spec/replicas")),
        json!(n(obj, "/status/replicas")),
        json!(n(obj, "/status/readyReplicas")),
        json!(age),
        json!(names),
        json!(images),
        json!(format_labels(obj.pointer("/spec/selector"))),
    ]
}

/// Upstream's ReplicationController field labels.
const FIELDS: &[Field] = &[
    NAME_FIELD,
    NAMESPACE_FIELD,
    Field {
        label: "status.replicas",
        value: |o| integer(o, "/status/replicas"),
    },
];
