//! apps/v1 ReplicaSet: replicas default, workload validation, the printer.

use serde_json::{json, Map, Value};

use crate::kinds::prelude::*;

pub(crate) const KIND: Kind = Kind {
    info: ResourceInfo {
        group: "apps",
        version: "v1",
        kind: "ReplicaSet",
        list_kind: "ReplicaSetList",
        plural: "replicasets",
        singular: "replicaset",
        namespaced: true,
        short_names: &["rs"],
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

fn defaults(obj: &mut Map<String, Value>) {
    let spec = child(obj, "spec");
    default(spec, "replicas", json!(1));
    pod_template(spec);
    // `status.replicas` has no omitempty upstream: a new object reads `{"replicas": 0}`, and
    // typed clients (the Python client's V1ReplicaSetStatus) require the field.
    default(child(obj, "status"), "replicas", json!(0));
}

fn validate(e: &mut Errs, obj: &Map<String, Value>, old: Option<&Value>) {
    let spec = obj.get("spec");
    workload(e, spec, old.and_then(|o| o.get("spec")), "replicaset");
}

#[rustfmt::skip]
const COLUMNS: &[Col] = &[
        NAME,
        ("Desired", "integer", 0, "Replicas is the number of desired pods. This is a pointer to distinguish between explicit zero and unspecified. Defaults to 1. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicaset/#how-a-replicaset-works"),
        ("Current", "integer", 0, "Replicas is the most recently observed number of non-terminating pods. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicaset/#how-a-replicaset-works"),
        ("Ready", "integer", 0, "The number of non-terminating pods targeted by this ReplicaSet with a Ready Condition."),
        AGE,
        ("Containers", "string", 1, "Names of each container in the template."),
        ("Images", "string", 1, "Images referenced by each container in the template."),
        ("Selector", "string", 1, "Selector is a label query over pods that should match the replica count. Label keys and values that must match in order to be controlled by this replica set. It must match the pod template's labels. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors"),
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
        json!(selector_string(obj.pointer("/spec/selector"))),
    ]
}

/// Upstream's ReplicaSet selectable fields (`ReplicaSetToSelectableFields`).
const FIELDS: &[Field] = &[
    NAME_FIELD,
    NAMESPACE_FIELD,
    Field {
        label: "status.replicas",
        value: |o| integer(o, "/status/replicas"),
    },
];
