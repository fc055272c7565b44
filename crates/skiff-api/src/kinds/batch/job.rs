//! batch/v1 Job: spec defaults, the generated selector, validation, the printer and the
//! `status.successful` field selector.

pub(crate) mod validate;

use serde_json::{json, Map, Value};

use crate::kinds::prelude::*;
use skiff_semantics::wellknown::labels as wellknown;

pub(crate) const KIND: Kind = Kind {
    info: ResourceInfo {
        group: "batch",
        version: "v1",
        kind: "Job",
        list_kind: "JobList",
        plural: "jobs",
        singular: "job",
        namespaced: true,
        short_names: &[],
        categories: ALL,
        verbs: FULL,
        subresources: &["status"],
    },
    defaults,
    validate: validate::job,
    prepare_create,
    table: Table {
        columns: COLUMNS,
        cells,
        ..Table::BASE
    },
    patch_root: Ty::Workload,
    fields: FIELDS,
    field_error: |label| format!("field label {label:?} not supported for batchv1.Job"),
    // Upstream's `DefaultGarbageCollectionPolicy` is OrphanDependents for batch/v1 Jobs (kept for
    // backward compatibility): a delete that names no propagation policy orphans the pods. kubectl
    // always sends `propagationPolicy=Background`, so `kubectl delete job` still cascades.
    // (CronJobs orphan only in batch/v1beta1; batch/v1 CronJobs delete their Jobs.)
    orphans_by_default: true,
    ..Kind::BASE
};

/// `SetDefaults_Job`: the spec defaults, `manualSelector: false`, and the Job's own labels
/// default to its template's labels (on create they already include the generated ones, see
/// [`prepare_create`], as upstream's shared label map makes them).
fn defaults(obj: &mut Map<String, Value>) {
    let spec = child(obj, "spec");
    job_spec(spec);
    default(spec, "manualSelector", json!(false));
    let labels = spec
        .get("template")
        .and_then(|t| t.pointer("/metadata/labels"))
        .filter(|l| l.is_object())
        .cloned();
    if let Some(labels) = labels {
        let meta = child(obj, "metadata");
        if meta.get("labels").is_none_or(is_empty) {
            meta.insert("labels".into(), labels);
        }
    }
}

fn job_spec(spec: &mut Map<String, Value>) {
    // Both unset means a non-parallel job; a set parallelism leaves completions unset.
    if spec.get("completions").is_none_or(Value::is_null)
        && spec.get("parallelism").is_none_or(Value::is_null)
    {
        spec.insert("completions".into(), json!(1));
        spec.insert("parallelism".into(), json!(1));
    }
    default(spec, "parallelism", json!(1));
    // With a per-index limit the global one is effectively off (math.MaxInt32).
    if spec
        .get("backoffLimitPerIndex")
        .is_some_and(|v| !v.is_null())
    {
        default(spec, "backoffLimit", json!(i32::MAX));
    } else {
        default(spec, "backoffLimit", json!(6));
    }
    default(spec, "completionMode", json!("NonIndexed"));
    default(spec, "suspend", json!(false));
    pod_condition_patterns(spec);
    if spec.get("podFailurePolicy").is_none_or(Value::is_null) {
        default(spec, "podReplacementPolicy", json!("TerminatingOrFailed"));
    } else {
        default(spec, "podReplacementPolicy", json!("Failed"));
    }
    pod_template(spec);
}

/// Labels the Job strategy puts on the pod template (legacy unprefixed ones too).
pub(crate) const JOB_NAME_LABELS: [&str; 2] = [wellknown::LEGACY_JOB_NAME, wellknown::JOB_NAME];
pub(crate) const JOB_UID_LABELS: [&str; 2] =
    [wellknown::LEGACY_CONTROLLER_UID, wellknown::CONTROLLER_UID];

/// The label a generated Job selector selects.
const JOB_SELECTOR_LABEL: &str = wellknown::CONTROLLER_UID;

/// Create-only strategy step that needs the server-assigned `metadata.uid`: without
/// `manualSelector: true`, upstream's `generateSelector` adds `job-name`/`controller-uid` labels
/// (both prefixed and legacy) to the template unless present, and selects
/// `batch.kubernetes.io/controller-uid=<uid>`. Labels the user set are kept, so conflicting ones
/// fail validation instead of being overwritten.
fn prepare_create(object: &mut Value) {
    let Some(obj) = object.as_object_mut() else {
        return;
    };
    let meta = obj.get("metadata");
    let name = meta
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let uid = meta
        .and_then(|m| m.get("uid"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let spec = child(obj, "spec");
    if spec.get("manualSelector") == Some(&json!(true)) {
        return;
    }
    let labels = child(child(child(spec, "template"), "metadata"), "labels");
    for key in JOB_NAME_LABELS {
        labels.entry(key).or_insert_with(|| json!(name));
    }
    for key in JOB_UID_LABELS {
        labels.entry(key).or_insert_with(|| json!(uid));
    }
    let selector = child(spec, "selector");
    child(selector, "matchLabels")
        .entry(JOB_SELECTOR_LABEL)
        .or_insert_with(|| json!(uid));
}

/// Jobs select on `status.successful` (upstream's name for status.succeeded, 0 when unset).
const FIELDS: &[Field] = &[
    NAME_FIELD,
    NAMESPACE_FIELD,
    Field {
        label: "status.successful",
        value: |o| integer(o, "/status/succeeded"),
    },
];

#[rustfmt::skip]
const COLUMNS: &[Col] = &[
        NAME,
        ("Status", "string", 0, "Status of the job."),
        ("Completions", "string", 0, "The number of pods which reached phase Succeeded. The value increases monotonically for a given spec. However, it may decrease in reaction to scale down of elastic indexed jobs."),
        ("Duration", "string", 0, "Time required to complete the job."),
        AGE,
        ("Containers", "string", 1, "Names of each container in the template."),
        ("Images", "string", 1, "Images referenced by each container in the template."),
        ("Selector", "string", 1, "A label query over pods that should match the pod count. Normally, the system sets this field for you. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors"),
];

fn cells(obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let (name, age) = name_age(obj, now);
    job_cells(obj, name, age, now)
}

/// `printJob`: status from the conditions, `<succeeded>/<completions>` (`/1 of <parallelism>`
/// for work-queue jobs), and the run time so far or until completion.
fn job_cells(obj: &Value, name: String, age: String, now: jiff::Timestamp) -> Vec<Value> {
    let has = |ty: &str| {
        arr(obj, "/status/conditions")
            .iter()
            .any(|c| s(c, "/type") == ty && s(c, "/status") == "True")
    };
    let status = if has("Complete") {
        "Complete"
    } else if has("Failed") {
        "Failed"
    } else if obj.pointer("/metadata/deletionTimestamp").is_some() {
        "Terminating"
    } else if has("Suspended") {
        "Suspended"
    } else if has("FailureTarget") {
        "FailureTarget"
    } else if has("SuccessCriteriaMet") {
        "SuccessCriteriaMet"
    } else {
        "Running"
    };
    let succeeded = n(obj, "/status/succeeded");
    let completions = match obj.pointer("/spec/completions").and_then(Value::as_i64) {
        Some(c) => format!("{succeeded}/{c}"),
        None => match n(obj, "/spec/parallelism") {
            p if p > 1 => format!("{succeeded}/1 of {p}"),
            _ => format!("{succeeded}/1"),
        },
    };
    let start = parse_time(s(obj, "/status/startTime"));
    let end = parse_time(s(obj, "/status/completionTime"));
    let duration = match (start, end) {
        (None, _) => String::new(),
        (Some(st), None) => human_duration(now.as_second() - st.as_second()),
        (Some(st), Some(e)) => human_duration(e.as_second() - st.as_second()),
    };
    let (names, images) = container_cells(obj);
    vec![
        json!(name),
        json!(status),
        json!(completions),
        json!(duration),
        json!(age),
        json!(names),
        json!(images),
        json!(selector_string(obj.pointer("/spec/selector"))),
    ]
}
