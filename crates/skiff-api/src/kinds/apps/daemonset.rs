//! apps/v1 DaemonSet: update-strategy defaults, template generation, validation, the printer.

mod validate;

use serde_json::{json, Map, Value};

use crate::kinds::prelude::*;

pub(crate) const KIND: Kind = Kind {
    info: ResourceInfo {
        group: "apps",
        version: "v1",
        kind: "DaemonSet",
        list_kind: "DaemonSetList",
        plural: "daemonsets",
        singular: "daemonset",
        namespaced: true,
        short_names: &["ds"],
        categories: ALL,
        verbs: FULL,
        subresources: &["status"],
    },
    defaults,
    validate: validate::daemon_set,
    prepare_create,
    prepare_update,
    table: Table {
        columns: COLUMNS,
        cells,
        ..Table::BASE
    },
    patch_root: Ty::Workload,
    ..Kind::BASE
};

fn defaults(obj: &mut Map<String, Value>) {
    let spec = child(obj, "spec");
    let strategy = child(spec, "updateStrategy");
    default(strategy, "type", json!("RollingUpdate"));
    if strategy.get("type") == Some(&json!("RollingUpdate")) {
        let ru = child(strategy, "rollingUpdate");
        default(ru, "maxUnavailable", json!(1));
        default(ru, "maxSurge", json!(0));
    }
    default(spec, "revisionHistoryLimit", json!(10));
    pod_template(spec);
    // Go always writes these four counters (no omitempty), so clients see zeros.
    let status = child(obj, "status");
    for key in [
        "currentNumberScheduled",
        "numberMisscheduled",
        "desiredNumberScheduled",
        "numberReady",
    ] {
        default(status, key, json!(0));
    }
}

/// A DaemonSet starts at template generation 1 (or the annotation's value when higher, as
/// upstream's conversion reads it back), see [`DS_TEMPLATE_GENERATION`].
fn prepare_create(object: &mut Value) {
    let generation = template_generation(object).max(1);
    set_template_generation(object, generation);
}

/// A DaemonSet's template generation cannot be set by clients; it stays the stored one and
/// grows by one exactly when `spec.template` changes (upstream's `PrepareForUpdate`).
fn prepare_update(old: &Value, new: &mut Value) {
    let mut generation = template_generation(old);
    if new.pointer("/spec/template") != old.pointer("/spec/template") {
        generation += 1;
    }
    set_template_generation(new, generation);
}

/// apps/v1 DaemonSets carry the internal `spec.templateGeneration` in this annotation (upstream's
/// v1 conversion writes it on every read, `kubectl get ds -o yaml` shows it).
const DS_TEMPLATE_GENERATION: &str = "deprecated.daemonset.template.generation";

/// The template generation an object's annotation names (0 when missing or not a number).
fn template_generation(object: &Value) -> i64 {
    object
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(DS_TEMPLATE_GENERATION))
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn set_template_generation(object: &mut Value, generation: i64) {
    let Some(obj) = object.as_object_mut() else {
        return;
    };
    child(child(obj, "metadata"), "annotations")
        .insert(DS_TEMPLATE_GENERATION.into(), json!(generation.to_string()));
}

#[rustfmt::skip]
const COLUMNS: &[Col] = &[
        NAME,
        ("Desired", "integer", 0, "The total number of nodes that should be running the daemon pod (including nodes correctly running the daemon pod). More info: https://kubernetes.io/docs/concepts/workloads/controllers/daemonset/"),
        ("Current", "integer", 0, "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod. More info: https://kubernetes.io/docs/concepts/workloads/controllers/daemonset/"),
        ("Ready", "integer", 0, "numberReady is the number of nodes that should be running the daemon pod and have one or more of the daemon pod running with a Ready Condition."),
        ("Up-to-date", "integer", 0, "The total number of nodes that are running updated daemon pod"),
        ("Available", "integer", 0, "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available (ready for at least spec.minReadySeconds)"),
        ("Node Selector", "string", 0, "NodeSelector is a selector which must be true for the pod to fit on a node. Selector which must match a node's labels for the pod to be scheduled on that node. More info: https://kubernetes.io/docs/concepts/configuration/assign-pod-node/"),
        AGE,
        ("Containers", "string", 1, "Names of each container in the template."),
        ("Images", "string", 1, "Images referenced by each container in the template."),
        ("Selector", "string", 1, "A label query over pods that are managed by the daemon set. Must match in order to be controlled. It must match the pod template's labels. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors"),
];

/// `printDaemonSet`: status counters, the template's node selector.
fn cells(obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let (name, age) = name_age(obj, now);
    let (names, images) = container_cells(obj);
    vec![
        json!(name),
        json!(n(obj, "/status/desiredNumberScheduled")),
        json!(n(obj, "/status/currentNumberScheduled")),
        json!(n(obj, "/status/numberReady")),
        json!(n(obj, "/status/updatedNumberScheduled")),
        json!(n(obj, "/status/numberAvailable")),
        json!(format_labels(
            obj.pointer("/spec/template/spec/nodeSelector")
        )),
        json!(age),
        json!(names),
        json!(images),
        json!(selector_string(obj.pointer("/spec/selector"))),
    ]
}
