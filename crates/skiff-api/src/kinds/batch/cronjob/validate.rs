//! batch/v1 CronJob validation (upstream `ValidateCronJobCreate`/`ValidateCronJobUpdate` of
//! kube-apiserver 1.33): the schedule as robfig/cron parses it, the time zone, the concurrency
//! policy, history limits and the job template (the Job spec checks without the selector, which
//! the controller generates per Job).

use serde_json::{Map, Value};

use super::super::job::validate::job_spec;
use crate::validate::{go_label_selector, non_negative, Errs};
use skiff_semantics::cron;

/// The controller names Jobs `<cronjob>-<11 chars>` and Job names are DNS labels (63).
const MAX_NAME: usize = 52;

/// Validates a CronJob (`old` = the stored CronJob on updates).
pub(crate) fn cron_job(e: &mut Errs, obj: &Map<String, Value>, old: Option<&Value>) {
    let empty = Value::Object(Map::new());
    let spec = obj.get("spec").filter(|s| s.is_object()).unwrap_or(&empty);
    let old_spec = old.map(|o| o.get("spec").unwrap_or(&empty));
    let schedule = spec.get("schedule").and_then(Value::as_str).unwrap_or("");
    if schedule.is_empty() {
        e.required("spec.schedule", "");
    } else {
        // A CronJob stored with TZ in its schedule (before the timeZone field) may keep it.
        let allow_tz = old_spec
            .and_then(|s| s.get("schedule"))
            .and_then(Value::as_str)
            .is_some_and(|s| s.contains("TZ"));
        schedule_format(e, schedule, allow_tz, present(spec, "timeZone").is_some());
    }
    non_negative(
        e,
        spec,
        "startingDeadlineSeconds",
        "spec.startingDeadlineSeconds",
    );
    // An unchanged zone is not re-checked (the tz database may have dropped it since).
    let tz = present(spec, "timeZone");
    if old_spec.is_none_or(|o| present(o, "timeZone") != tz) {
        if let Some(tz) = tz {
            time_zone(e, tz);
        }
    }
    const POLICIES: [&str; 3] = ["Allow", "Forbid", "Replace"];
    match spec
        .get("concurrencyPolicy")
        .and_then(Value::as_str)
        .unwrap_or("")
    {
        "" => e.required("spec.concurrencyPolicy", ""),
        p if POLICIES.contains(&p) => {}
        p => e.not_supported("spec.concurrencyPolicy", p, &POLICIES),
    }
    job_template(e, spec.get("jobTemplate").unwrap_or(&empty));
    for key in ["successfulJobsHistoryLimit", "failedJobsHistoryLimit"] {
        non_negative(e, spec, key, &format!("spec.{key}"));
    }
    // Create only: CronJobs stored with longer names can still be updated and deleted.
    let name = obj
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("");
    if old.is_none() && name.len() > MAX_NAME {
        e.invalid_str(
            "metadata.name",
            name,
            &format!("must be no more than {MAX_NAME} characters"),
        );
    }
}

fn present<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.get(key).filter(|x| !x.is_null())
}

/// `validateScheduleFormat`: robfig's parse error, then the TZ rules.
fn schedule_format(e: &mut Errs, schedule: &str, allow_tz: bool, has_time_zone: bool) {
    let f = "spec.schedule";
    if let Err(msg) = cron::parse_standard(schedule) {
        e.invalid_str(f, schedule, &msg);
    }
    if schedule.contains("TZ") {
        if !allow_tz {
            e.invalid_str(
                f,
                schedule,
                "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
            );
        } else if has_time_zone {
            e.invalid_str(
                f,
                schedule,
                "cannot use both timeZone field and TZ or CRON_TZ in schedule",
            );
        }
    }
}

/// `validateTimeZone`: an IANA name the tz database knows (not `Local`).
fn time_zone(e: &mut Errs, tz: &Value) {
    let f = "spec.timeZone";
    let name = tz.as_str().unwrap_or("");
    if name.is_empty() {
        e.invalid(f, tz, "timeZone must be nil or non-empty string");
        return;
    }
    // Each path part: 1–14 of [A-Za-z.-_0-9+], not `.`/`..`, not starting with '-'.
    let part_ok = |p: &str| {
        !matches!(p, "." | "..")
            && !p.starts_with('-')
            && (1..=14).contains(&p.len())
            && p.bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_' | b'+'))
    };
    if !name.split('/').all(part_ok) {
        e.invalid_str(f, name, &format!("unknown time zone {name}"));
        return;
    }
    if name.eq_ignore_ascii_case("Local") {
        e.invalid_str(
            f,
            name,
            "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones",
        );
    }
    if let Err(msg) = cron::load_location(name) {
        e.invalid_str(f, name, &msg);
    }
}

/// `ValidateJobTemplateSpec`: the Job spec rules, and no selector of its own.
fn job_template(e: &mut Errs, template: &Value) {
    let empty = Value::Object(Map::new());
    let spec = template.get("spec").unwrap_or(&empty);
    let fp = "spec.jobTemplate.spec";
    job_spec(e, spec, fp);
    if let Some(sel) = present(spec, "selector") {
        e.push(
            "FieldValueInvalid",
            &format!("{fp}.selector"),
            format!(
                "Invalid value: {}: `selector` will be auto-generated",
                go_label_selector(sel)
            ),
        );
    }
    if spec.get("manualSelector") == Some(&Value::Bool(true)) {
        e.push(
            "FieldValueNotSupported",
            &format!("{fp}.manualSelector"),
            "Unsupported value: true: supported values: \"nil\", \"false\"".into(),
        );
    }
}
