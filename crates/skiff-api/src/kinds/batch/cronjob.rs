//! batch/v1 CronJob: schedule/history defaults, schedule and template validation, the printer.

mod validate;

use serde_json::{json, Map, Value};

use crate::kinds::prelude::*;

pub(crate) const KIND: Kind = Kind {
    info: ResourceInfo {
        group: "batch",
        version: "v1",
        kind: "CronJob",
        list_kind: "CronJobList",
        plural: "cronjobs",
        singular: "cronjob",
        namespaced: true,
        short_names: &["cj"],
        categories: ALL,
        verbs: FULL,
        subresources: &["status"],
    },
    defaults,
    validate: validate::cron_job,
    table: Table {
        columns: COLUMNS,
        cells,
        ..Table::BASE
    },
    patch_root: Ty::CronJob,
    ..Kind::BASE
};

/// `SetDefaults_CronJob` plus the nested-type defaulters. The job template gets only the pod
/// and pod-condition-pattern defaults: `SetDefaults_Job` is for Job objects, so the Job's own
/// defaults (completions, backoffLimit, ...) appear when the controller creates each Job.
fn defaults(obj: &mut Map<String, Value>) {
    let spec = child(obj, "spec");
    // A non-pointer string in Go: "" (as protobuf bodies carry it) is unset too.
    if spec.get("concurrencyPolicy").is_none_or(is_empty) {
        spec.insert("concurrencyPolicy".into(), json!("Allow"));
    }
    default(spec, "suspend", json!(false));
    default(spec, "successfulJobsHistoryLimit", json!(3));
    default(spec, "failedJobsHistoryLimit", json!(1));
    if let Some(job_spec) = spec
        .get_mut("jobTemplate")
        .and_then(|t| t.get_mut("spec"))
        .and_then(Value::as_object_mut)
    {
        pod_condition_patterns(job_spec);
        pod_template(job_spec);
    }
}

#[rustfmt::skip]
const COLUMNS: &[Col] = &[
        NAME,
        ("Schedule", "string", 0, "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron."),
        ("Timezone", "string", 0, "The time zone name for the given schedule, see https://en.wikipedia.org/wiki/List_of_tz_database_time_zones. If not specified, this will default to the time zone of the kube-controller-manager process. The set of valid time zone names and the time zone offset is loaded from the system-wide time zone database by the API server during CronJob validation and the controller manager during execution. If no system-wide time zone database can be found a bundled version of the database is used instead. If the time zone name becomes invalid during the lifetime of a CronJob or due to a change in host configuration, the controller will stop creating new new Jobs and will create a system event with the reason UnknownTimeZone. More information can be found in https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/#time-zones"),
        ("Suspend", "boolean", 0, "This flag tells the controller to suspend subsequent executions, it does not apply to already started executions.  Defaults to false."),
        ("Active", "integer", 0, "A list of pointers to currently running jobs."),
        ("Last Schedule", "string", 0, "Information when was the last time the job was successfully scheduled."),
        AGE,
        ("Containers", "string", 1, "Names of each container in the template."),
        ("Images", "string", 1, "Images referenced by each container in the template."),
        ("Selector", "string", 1, "A label query over pods that should match the pod count. Normally, the system sets this field for you. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors"),
];

fn cells(obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let (name, age) = name_age(obj, now);
    cronjob_cells(obj, name, age, now)
}

/// `printCronJob`: the time zone and last schedule read `<none>` when unset, SUSPEND is
/// `printBoolPtr` (`True`/`False`, `<unset>`), ACTIVE counts the running Jobs; the wide
/// columns describe the job template (whose selector is normally unset).
fn cronjob_cells(obj: &Value, name: String, age: String, now: jiff::Timestamp) -> Vec<Value> {
    let time_zone = obj
        .pointer("/spec/timeZone")
        .and_then(Value::as_str)
        .unwrap_or("<none>");
    let suspend = match obj.pointer("/spec/suspend").and_then(Value::as_bool) {
        Some(true) => "True",
        Some(false) => "False",
        None => "<unset>",
    };
    let last = match obj
        .pointer("/status/lastScheduleTime")
        .and_then(Value::as_str)
    {
        Some(t) => since(t, now),
        None => "<none>".into(),
    };
    let template = obj.pointer("/spec/jobTemplate").unwrap_or(&Value::Null);
    let (names, images) = container_cells(template);
    vec![
        json!(name),
        json!(s(obj, "/spec/schedule")),
        json!(time_zone),
        json!(suspend),
        json!(arr(obj, "/status/active").len()),
        json!(last),
        json!(age),
        json!(names),
        json!(images),
        json!(selector_string(template.pointer("/spec/selector"))),
    ]
}
