//! batch/v1 Job validation (upstream `pkg/apis/batch/validation` with the Job strategy's options
//! of kube-apiserver 1.33): the spec, the generated selector and its template labels, update
//! immutability and the status transitions the strengthened status validation rejects.

use serde_json::{Map, Value};

use super::{JOB_NAME_LABELS, JOB_UID_LABELS};
use crate::validate::{
    dns1123_label, dns1123_subdomain, label_selector, label_selector_matches, non_negative,
    pod_spec, qualified_name, template_labels, Errs,
};

const MAX_INDEXED_PARALLELISM: i64 = 100_000;
const MAX_FAILED_INDEXES: i64 = 100_000;
const COMPLETIONS_SOFT_LIMIT: i64 = 100_000;
const PARALLELISM_FOR_HIGH_COMPLETIONS: i64 = 10_000;
const MAX_FAILED_INDEXES_FOR_HIGH_COMPLETIONS: i64 = 10_000;
const MAX_POD_FAILURE_RULES: usize = 20;
const MAX_EXIT_CODE_VALUES: usize = 255;
const MAX_POD_CONDITION_PATTERNS: usize = 20;
const MAX_MANAGED_BY: usize = 63;
const MAX_SUCCEEDED_INDEXES: usize = 64 * 1024;
const MAX_SUCCESS_RULES: usize = 20;

/// Validates a Job (`old` = the stored Job on updates).
pub(crate) fn job(e: &mut Errs, obj: &Map<String, Value>, old: Option<&Value>) {
    let spec = obj.get("spec").filter(|s| s.is_object());
    let empty = Value::Object(Map::new());
    let spec = spec.unwrap_or(&empty);
    let meta = obj.get("metadata");
    let name = meta
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("");
    generated_selector(e, obj, spec, old);
    job_spec(e, spec, "spec");
    job_selector(e, spec, "spec");
    if int(spec, "completions").is_some_and(|c| c > 0) && is_indexed(spec) {
        // Indexed pods get the hostname `<job>-<index>`.
        let c = int(spec, "completions").unwrap_or(1);
        let host = format!("{name}-{}", c - 1);
        if !dns1123_label(&host).is_empty() {
            e.invalid_str(
                "metadata.name",
                name,
                &format!("will not able to create pod with invalid DNS label: {host}"),
            );
        }
    }
    if let Some(old) = old {
        let old_spec = old.get("spec").unwrap_or(&empty);
        spec_update(e, spec, old_spec, old);
        status_update(e, obj.get("status"), old.get("status"), spec);
    }
}

fn int(v: &Value, key: &str) -> Option<i64> {
    v.get(key).and_then(Value::as_i64)
}

fn present<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.get(key).filter(|x| !x.is_null())
}

fn is_indexed(spec: &Value) -> bool {
    spec.get("completionMode").and_then(Value::as_str) == Some("Indexed")
}

fn template_label_map(spec: &Value) -> Map<String, Value> {
    spec.pointer("/template/metadata/labels")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

/// `validateGeneratedSelector`: unless `manualSelector`, the template must carry the labels the
/// server generated for this Job and the selector must select them.
fn generated_selector(e: &mut Errs, obj: &Map<String, Value>, spec: &Value, old: Option<&Value>) {
    if spec.get("manualSelector") == Some(&Value::Bool(true)) {
        return;
    }
    let Some(selector) = present(spec, "selector") else {
        return;
    };
    let meta = obj.get("metadata");
    let field = |k: &str| {
        meta.and_then(|m| m.get(k))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let (name, uid) = (field("name"), field("uid"));
    if uid.is_empty() {
        e.required("metadata.uid", "");
    }
    // Jobs stored before the prefixed labels existed are not required to have them.
    let prefixed = old.is_none_or(|o| {
        let l = o.get("spec").map(template_label_map).unwrap_or_default();
        l.contains_key(JOB_NAME_LABELS[1]) && l.contains_key(JOB_UID_LABELS[1])
    });
    let labels = template_label_map(spec);
    let mut expected = Map::new();
    let wanted = [
        (JOB_UID_LABELS[0], &uid),
        (JOB_NAME_LABELS[0], &name),
        (JOB_UID_LABELS[1], &uid),
        (JOB_NAME_LABELS[1], &name),
    ];
    for (i, (key, value)) in wanted.into_iter().enumerate() {
        if i >= 2 && !prefixed {
            continue;
        }
        expected.insert(key.to_string(), Value::String(value.clone()));
        let f = format!("spec.template.metadata.labels[{key}]");
        match labels.get(key).and_then(Value::as_str) {
            None => e.required(&f, value),
            Some(v) if v != value => e.invalid(
                &f,
                &Value::Object(labels.clone()),
                &format!("must be '{value}'"),
            ),
            Some(_) => {}
        }
    }
    if !label_selector_matches(selector, &expected) {
        e.invalid("spec.selector", selector, "`selector` not auto-generated");
    }
}

/// `validateJobSpec` (shared with CronJob templates): `fp` is the spec's field path,
/// `spec` for a Job, `spec.jobTemplate.spec` for a CronJob.
pub(crate) fn job_spec(e: &mut Errs, spec: &Value, fp: &str) {
    for key in [
        "parallelism",
        "completions",
        "activeDeadlineSeconds",
        "backoffLimit",
        "ttlSecondsAfterFinished",
        "backoffLimitPerIndex",
        "maxFailedIndexes",
    ] {
        non_negative(e, spec, key, &format!("{fp}.{key}"));
    }
    let per_index = int(spec, "backoffLimitPerIndex");
    let max_failed = int(spec, "maxFailedIndexes");
    if max_failed.is_some() && per_index.is_none() {
        e.required(
            &format!("{fp}.backoffLimitPerIndex"),
            "when maxFailedIndexes is specified",
        );
    }
    if let Some(m) = spec.get("managedBy").and_then(Value::as_str) {
        managed_by(e, m, fp);
    }
    let completions = int(spec, "completions");
    let parallelism = int(spec, "parallelism");
    match spec.get("completionMode").and_then(Value::as_str) {
        None | Some("NonIndexed") => {
            if let Some(v) = per_index {
                e.invalid(
                    &format!("{fp}.backoffLimitPerIndex"),
                    &Value::from(v),
                    "requires indexed completion mode",
                );
            }
            if let Some(v) = max_failed {
                e.invalid(
                    &format!("{fp}.maxFailedIndexes"),
                    &Value::from(v),
                    "requires indexed completion mode",
                );
            }
        }
        Some("Indexed") => {
            if completions.is_none() {
                e.required(
                    &format!("{fp}.completions"),
                    "when completion mode is Indexed",
                );
            }
            if let Some(p) = parallelism.filter(|p| *p > MAX_INDEXED_PARALLELISM) {
                e.invalid(
                    &format!("{fp}.parallelism"),
                    &Value::from(p),
                    &format!("must be less than or equal to {MAX_INDEXED_PARALLELISM} when completion mode is Indexed"),
                );
            }
            if let (Some(c), Some(m)) = (completions, max_failed) {
                if m > c {
                    e.invalid(
                        &format!("{fp}.maxFailedIndexes"),
                        &Value::from(m),
                        "must be less than or equal to completions",
                    );
                }
            }
            if let Some(m) = max_failed.filter(|m| *m > MAX_FAILED_INDEXES) {
                e.invalid(
                    &format!("{fp}.maxFailedIndexes"),
                    &Value::from(m),
                    &format!("must be less than or equal to {MAX_FAILED_INDEXES}"),
                );
            }
            if completions.is_some_and(|c| c > COMPLETIONS_SOFT_LIMIT) && per_index.is_some() {
                let suffix = format!("when completions are above {COMPLETIONS_SOFT_LIMIT} and used with backoff limit per index");
                match max_failed {
                    None => e.required(
                        &format!("{fp}.maxFailedIndexes"),
                        &format!("must be specified when completions is above {COMPLETIONS_SOFT_LIMIT}"),
                    ),
                    Some(m) if m > MAX_FAILED_INDEXES_FOR_HIGH_COMPLETIONS => e.invalid(
                        &format!("{fp}.maxFailedIndexes"),
                        &Value::from(m),
                        &format!("must be less than or equal to {MAX_FAILED_INDEXES_FOR_HIGH_COMPLETIONS} {suffix}"),
                    ),
                    Some(_) => {}
                }
                if let Some(p) = parallelism.filter(|p| *p > PARALLELISM_FOR_HIGH_COMPLETIONS) {
                    e.invalid(
                        &format!("{fp}.parallelism"),
                        &Value::from(p),
                        &format!("must be less than or equal to {PARALLELISM_FOR_HIGH_COMPLETIONS} {suffix}"),
                    );
                }
            }
        }
        Some(other) => e.not_supported(
            &format!("{fp}.completionMode"),
            other,
            &["NonIndexed", "Indexed"],
        ),
    }
    let pfp = present(spec, "podFailurePolicy");
    if let Some(p) = pfp {
        pod_failure_policy(e, spec, p, fp);
    }
    if let Some(sp) = present(spec, "successPolicy") {
        if is_indexed(spec) {
            success_policy(e, sp, completions.unwrap_or(0), fp);
        } else {
            e.invalid(
                &format!("{fp}.successPolicy"),
                sp,
                "requires indexed completion mode",
            );
        }
    }
    if let Some(rp) = spec.get("podReplacementPolicy").and_then(Value::as_str) {
        if pfp.is_some() {
            if rp != "Failed" {
                e.not_supported(&format!("{fp}.podReplacementPolicy"), rp, &["Failed"]);
            }
        } else if !matches!(rp, "Failed" | "TerminatingOrFailed") {
            e.not_supported(
                &format!("{fp}.podReplacementPolicy"),
                rp,
                &["Failed", "TerminatingOrFailed"],
            );
        }
    }
    let template = present(spec, "template");
    if let Some(t) = template {
        template_labels(e, t, &format!("{fp}.template"));
    }
    pod_spec(
        e,
        template.and_then(|t| t.get("spec")),
        &format!("{fp}.template.spec"),
    );
    // Upstream defaults an unset restartPolicy to Always, so both read "required" here.
    let rp = spec
        .pointer("/template/spec/restartPolicy")
        .and_then(Value::as_str)
        .unwrap_or("");
    match rp {
        "" | "Always" => e.required(
            &format!("{fp}.template.spec.restartPolicy"),
            "valid values: \"OnFailure\", \"Never\"",
        ),
        "OnFailure" if pfp.is_some() => e.invalid_str(
            &format!("{fp}.template.spec.restartPolicy"),
            rp,
            "only \"Never\" is supported when podFailurePolicy is specified",
        ),
        "OnFailure" | "Never" => {}
        other => e.not_supported(
            &format!("{fp}.template.spec.restartPolicy"),
            other,
            &["OnFailure", "Never"],
        ),
    }
}

/// `ValidateJobSpec`'s selector checks (a CronJob's template has none: it is generated).
fn job_selector(e: &mut Errs, spec: &Value, fp: &str) {
    match present(spec, "selector") {
        None => e.required(&format!("{fp}.selector"), ""),
        Some(sel) => {
            label_selector(e, sel, &format!("{fp}.selector"));
            let labels = template_label_map(spec);
            if !label_selector_matches(sel, &labels) {
                e.invalid(
                    &format!("{fp}.template.metadata.labels"),
                    &Value::Object(labels),
                    "`selector` does not match template `labels`",
                );
            }
        }
    }
}

/// `IsDomainPrefixedPath` plus the length limit.
fn managed_by(e: &mut Errs, value: &str, fp: &str) {
    let f = &format!("{fp}.managedBy");
    match value.split_once('/') {
        Some((host, path)) if !host.is_empty() && !path.is_empty() => {
            for m in dns1123_subdomain(host) {
                e.invalid_str(f, host, &m);
            }
        }
        _ => e.invalid_str(
            f,
            value,
            "must be a domain-prefixed path (such as \"acme.io/foo\")",
        ),
    }
    if value.len() > MAX_MANAGED_BY {
        e.too_long(f, MAX_MANAGED_BY);
    }
}

fn pod_failure_policy(e: &mut Errs, spec: &Value, pfp: &Value, fp: &str) {
    let rules = pfp
        .get("rules")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    if rules.len() > MAX_POD_FAILURE_RULES {
        e.too_many(
            &format!("{fp}.podFailurePolicy.rules"),
            rules.len(),
            MAX_POD_FAILURE_RULES,
        );
    }
    let mut containers: Vec<&str> = Vec::new();
    for key in ["containers", "initContainers"] {
        if let Some(list) = spec
            .pointer(&format!("/template/spec/{key}"))
            .and_then(Value::as_array)
        {
            containers.extend(
                list.iter()
                    .filter_map(|c| c.get("name").and_then(Value::as_str)),
            );
        }
    }
    for (i, rule) in rules.iter().enumerate() {
        let path = format!("{fp}.podFailurePolicy.rules[{i}]");
        let action_path = format!("{path}.action");
        const ACTIONS: [&str; 4] = ["Count", "FailIndex", "FailJob", "Ignore"];
        match rule.get("action").and_then(Value::as_str).unwrap_or("") {
            "" => e.required(
                &action_path,
                "valid values: [\"Count\" \"FailIndex\" \"FailJob\" \"Ignore\"]",
            ),
            "FailIndex" => {
                if present(spec, "backoffLimitPerIndex").is_none() {
                    e.invalid_str(
                        &action_path,
                        "FailIndex",
                        "requires the backoffLimitPerIndex to be set",
                    );
                }
            }
            a if ACTIONS.contains(&a) => {}
            a => e.not_supported(&action_path, a, &ACTIONS),
        }
        let on_exit = present(rule, "onExitCodes");
        if let Some(oe) = on_exit {
            on_exit_codes(e, oe, &format!("{path}.onExitCodes"), &containers);
        }
        let conditions = rule
            .get("onPodConditions")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let cpath = format!("{path}.onPodConditions");
        if conditions.len() > MAX_POD_CONDITION_PATTERNS {
            e.too_many(&cpath, conditions.len(), MAX_POD_CONDITION_PATTERNS);
        }
        for (j, pattern) in conditions.iter().enumerate() {
            let ty = pattern.get("type").and_then(Value::as_str).unwrap_or("");
            for m in qualified_name(ty) {
                e.invalid_str(&format!("{cpath}[{j}].type"), ty, &m);
            }
            let spath = format!("{cpath}[{j}].status");
            match pattern.get("status").and_then(Value::as_str).unwrap_or("") {
                "" => e.required(&spath, "valid values: [\"False\" \"True\" \"Unknown\"]"),
                "False" | "True" | "Unknown" => {}
                s => e.not_supported(&spath, s, &["False", "True", "Unknown"]),
            }
        }
        match (on_exit.is_some(), !conditions.is_empty()) {
            (true, true) => e.invalid_omit(
                &path,
                "specifying both OnExitCodes and OnPodConditions is not supported",
            ),
            (false, false) => e.invalid_omit(
                &path,
                "specifying one of OnExitCodes and OnPodConditions is required",
            ),
            _ => {}
        }
    }
}

fn on_exit_codes(e: &mut Errs, oe: &Value, path: &str, containers: &[&str]) {
    let op = oe.get("operator").and_then(Value::as_str).unwrap_or("");
    match op {
        "" => e.required(
            &format!("{path}.operator"),
            "valid values: [\"In\" \"NotIn\"]",
        ),
        "In" | "NotIn" => {}
        other => e.not_supported(&format!("{path}.operator"), other, &["In", "NotIn"]),
    }
    if let Some(c) = oe.get("containerName").and_then(Value::as_str) {
        if !containers.contains(&c) {
            e.invalid_str(
                &format!("{path}.containerName"),
                c,
                "must be one of the container or initContainer names in the pod template",
            );
        }
    }
    let vpath = format!("{path}.values");
    let values: Vec<i64> = oe
        .get("values")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_i64).collect())
        .unwrap_or_default();
    if values.is_empty() {
        e.invalid(
            &vpath,
            &Value::Array(vec![]),
            "at least one value is required",
        );
    } else if values.len() > MAX_EXIT_CODE_VALUES {
        e.too_many(&vpath, values.len(), MAX_EXIT_CODE_VALUES);
    }
    let mut seen = Vec::new();
    for (j, v) in values.iter().enumerate() {
        if op == "In" && *v == 0 {
            e.invalid(
                &format!("{vpath}[{j}]"),
                &Value::from(*v),
                "must not be 0 for the In operator",
            );
        }
        if seen.contains(v) {
            e.push(
                "FieldValueDuplicate",
                &format!("{vpath}[{j}]"),
                format!("Duplicate value: {v}"),
            );
        } else {
            seen.push(*v);
        }
    }
    if values.windows(2).any(|w| w[0] > w[1]) {
        let list = Value::Array(values.iter().map(|v| Value::from(*v)).collect());
        e.invalid(&vpath, &list, "must be ordered");
    }
}

fn success_policy(e: &mut Errs, sp: &Value, completions: i64, fp: &str) {
    let rules = sp
        .get("rules")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let rpath = &format!("{fp}.successPolicy.rules");
    if rules.is_empty() {
        e.required(
            rpath,
            "at least one rules must be specified when the successPolicy is specified",
        );
    }
    if rules.len() > MAX_SUCCESS_RULES {
        e.too_many(rpath, rules.len(), MAX_SUCCESS_RULES);
    }
    for (i, rule) in rules.iter().enumerate() {
        let path = format!("{rpath}[{i}]");
        let indexes = rule.get("succeededIndexes").and_then(Value::as_str);
        let count = int(rule, "succeededCount");
        if indexes.is_none() && count.is_none() {
            e.required(
                &path,
                "at least one of succeededCount or succeededIndexes must be specified",
            );
        }
        let mut total = 0;
        if let Some(ix) = indexes {
            let f = format!("{path}.succeededIndexes");
            if ix.len() > MAX_SUCCEEDED_INDEXES {
                e.too_long(&f, MAX_SUCCEEDED_INDEXES);
            }
            match index_total(ix, completions) {
                Ok(t) => total = t,
                Err(err) => {
                    e.invalid_str(&f, ix, &format!("error parsing succeededIndexes: {err}"))
                }
            }
        }
        if let Some(c) = count {
            let f = format!("{path}.succeededCount");
            non_negative(e, rule, "succeededCount", &f);
            if c > completions {
                e.invalid(
                    &f,
                    &Value::from(c),
                    &format!(
                        "must be less than or equal to {completions} (the number of specified completions)"
                    ),
                );
            }
            if indexes.is_some() && c > total {
                e.invalid(
                    &f,
                    &Value::from(c),
                    &format!("must be less than or equal to {total} (the number of indexes in the specified succeededIndexes field)"),
                );
            }
        }
    }
}

/// The number of indexes in `"1,3-5,7"` (each below `completions`, strictly increasing).
fn index_total(text: &str, completions: i64) -> Result<i64, String> {
    if text.is_empty() {
        return Ok(0);
    }
    let mut last: Option<i64> = None;
    let mut total = 0;
    for interval in text.split(',') {
        let parts: Vec<&str> = interval.split('-').collect();
        if parts.len() > 2 {
            return Err(format!("the fragment {interval:?} violates the requirement that an index interval can have at most two parts separated by '-'"));
        }
        let parse = |s: &str| -> Result<i64, String> {
            let n: i64 = s
                .parse()
                .map_err(|_| format!("cannot convert string to integer for index: {s:?}"))?;
            if n >= completions {
                return Err(format!("too large index: {s:?}"));
            }
            Ok(n)
        };
        let x = parse(parts[0])?;
        let y = match parts.get(1) {
            Some(p) => {
                let y = parse(p)?;
                if x >= y {
                    return Err(format!("non-increasing order, previous: {x}, current: {y}"));
                }
                y
            }
            None => x,
        };
        if let Some(l) = last {
            if l >= x {
                return Err(format!("non-increasing order, previous: {l}, current: {x}"));
            }
        }
        total += y - x + 1;
        last = Some(y);
    }
    Ok(total)
}

/// `ValidateJobSpecUpdate`: what may not change once the Job exists.
fn spec_update(e: &mut Errs, new: &Value, old: &Value, old_job: &Value) {
    let get = |v: &Value, k: &str| v.get(k).cloned().unwrap_or(Value::Null);
    let immutable = |e: &mut Errs, key: &str| {
        let n = get(new, key);
        if n != get(old, key) {
            e.invalid(&format!("spec.{key}"), &n, "field is immutable");
        }
    };
    let (nc, oc) = (get(new, "completions"), get(old, "completions"));
    if nc != oc {
        if !is_indexed(new) {
            e.invalid("spec.completions", &nc, "field is immutable");
        } else if !nc.is_null() && nc != get(new, "parallelism") {
            // Elastic Indexed Jobs scale completions and parallelism together.
            e.invalid(
                "spec.completions",
                &nc,
                "can only be modified in tandem with spec.parallelism",
            );
        }
    }
    immutable(e, "selector");
    // A suspended Job that never started may still change where its pods will run.
    let suspended = old.get("suspend") == Some(&Value::Bool(true));
    let started = old_job
        .pointer("/status/startTime")
        .is_some_and(|v| !v.is_null());
    let new_t = get(new, "template");
    let mut old_t = get(old, "template");
    if suspended && !started {
        mutable_scheduling(&mut old_t, &new_t);
    }
    if new_t != old_t {
        e.invalid("spec.template", &new_t, "field is immutable");
    }
    for key in [
        "completionMode",
        "podFailurePolicy",
        "backoffLimitPerIndex",
        "managedBy",
        "successPolicy",
    ] {
        immutable(e, key);
    }
}

/// Copies the scheduling directives of `new` into `old` (node selector, tolerations, scheduling
/// gates, node affinity, template labels and annotations) so they do not count as changes.
fn mutable_scheduling(old: &mut Value, new: &Value) {
    let Some(o) = old.as_object_mut() else {
        return;
    };
    let set = |m: &mut Map<String, Value>, key: &str, v: Option<&Value>| match v {
        Some(v) => {
            m.insert(key.into(), v.clone());
        }
        None => {
            m.remove(key);
        }
    };
    let meta = o
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Some(m) = meta.as_object_mut() {
        for key in ["labels", "annotations"] {
            set(m, key, new.pointer(&format!("/metadata/{key}")));
        }
    }
    let Some(spec) = o.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    for key in ["nodeSelector", "tolerations", "schedulingGates"] {
        set(spec, key, new.pointer(&format!("/spec/{key}")));
    }
    let new_affinity = new.pointer("/spec/affinity").filter(|a| !a.is_null());
    match new_affinity {
        None => {
            // Clearing is allowed when node affinity was the only directive.
            if let Some(Value::Object(a)) = spec.get_mut("affinity") {
                a.remove("nodeAffinity");
                if a.is_empty() {
                    spec.remove("affinity");
                }
            }
        }
        Some(na) => {
            let node = na.get("nodeAffinity");
            let a = spec
                .entry("affinity")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Some(a) = a.as_object_mut() {
                set(a, "nodeAffinity", node);
            }
        }
    }
}

fn condition_true(status: Option<&Value>, ty: &str) -> bool {
    status
        .and_then(|s| s.get("conditions"))
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.get("type").and_then(Value::as_str) == Some(ty)
                    && c.get("status").and_then(Value::as_str) == Some("True")
            })
        })
}

/// The status checks of the Job status strategy (kube-apiserver 1.33 with JobManagedBy on).
/// Main-resource writes keep the stored status, so for them nothing here can fire.
fn status_update(e: &mut Errs, new: Option<&Value>, old: Option<&Value>, spec: &Value) {
    let null = Value::Null;
    let get = |s: Option<&Value>, k: &str| -> Value {
        s.and_then(|s| s.get(k)).cloned().unwrap_or(Value::Null)
    };
    let count = |s: Option<&Value>, k: &str| s.and_then(|s| s.get(k)).and_then(Value::as_i64);
    let new_status = new.unwrap_or(&null);
    for key in ["active", "succeeded", "failed", "ready", "terminating"] {
        non_negative(e, new_status, key, &format!("status.{key}"));
    }
    if let Some(u) = new.and_then(|s| s.get("uncountedTerminatedPods")) {
        let mut seen: Vec<&str> = Vec::new();
        for list in ["succeeded", "failed"] {
            for (i, uid) in u
                .get(list)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                let uid = uid.as_str().unwrap_or("");
                let f = format!("status.uncountedTerminatedPods.{list}[{i}]");
                if uid.is_empty() {
                    e.invalid_str(&f, uid, "must not be empty");
                } else if seen.contains(&uid) {
                    e.duplicate(&f, uid);
                } else {
                    seen.push(uid);
                }
            }
        }
    }
    let is = |s: Option<&Value>, ty: &str| condition_true(s, ty);
    let changed = |ty: &str| is(new, ty) != is(old, ty);
    let finished = |s: Option<&Value>| is(s, "Complete") || is(s, "Failed");
    let (complete, failed) = (is(new, "Complete"), is(new, "Failed"));
    let (start, completion) = (get(new, "startTime"), get(new, "completionTime"));
    let start_changed = start != get(old, "startTime");
    let completion_changed = completion != get(old, "completionTime");
    let active = count(new, "active").unwrap_or(0);

    for ty in ["Failed", "Complete", "FailureTarget"] {
        if is(old, ty) && !is(new, ty) {
            e.invalid_omit(
                "status.conditions",
                &format!("cannot disable the terminal {ty}=True condition"),
            );
        }
    }
    if count(new, "failed").unwrap_or(0) < count(old, "failed").unwrap_or(0) {
        e.invalid(
            "status.failed",
            &get(new, "failed"),
            "cannot decrease the failed counter",
        );
    }
    let elastic = is_indexed(spec) && spec.get("completions") == spec.get("parallelism");
    if !elastic && count(new, "succeeded").unwrap_or(0) < count(old, "succeeded").unwrap_or(0) {
        e.invalid(
            "status.succeeded",
            &get(new, "succeeded"),
            "cannot decrease the succeeded counter",
        );
    }
    if (changed("Complete") || changed("Failed")) && complete && failed {
        e.invalid_omit(
            "status.conditions",
            "cannot set Complete=True and Failed=true conditions",
        );
    }
    if (changed("Complete") || changed("FailureTarget")) && complete && is(new, "FailureTarget") {
        e.invalid_omit(
            "status.conditions",
            "cannot set Complete=True and FailureTarget=true conditions",
        );
    }
    if changed("Complete") || completion_changed {
        if !completion.is_null() && !complete {
            e.invalid(
                "status.completionTime",
                &completion,
                "cannot set completionTime when there is no Complete=True condition",
            );
        }
        if completion.is_null() && complete {
            e.required(
                "status.completionTime",
                "completionTime is required for Complete jobs",
            );
        }
    }
    if (start_changed || completion_changed) && !start.is_null() && !completion.is_null() {
        let t = |v: &Value| v.as_str().and_then(|s| s.parse::<jiff::Timestamp>().ok());
        if let (Some(s), Some(c)) = (t(&start), t(&completion)) {
            if c < s {
                e.invalid(
                    "status.completionTime",
                    &completion,
                    "completionTime cannot be set before startTime",
                );
            }
        }
    }
    let old_completion = get(old, "completionTime");
    if !completion.is_null() && !old_completion.is_null() && completion != old_completion {
        e.invalid(
            "status.completionTime",
            &completion,
            "completionTime cannot be mutated",
        );
    }
    let finished_changed = finished(new) != finished(old);
    if (finished_changed || count(new, "active") != count(old, "active"))
        && active > 0
        && finished(new)
    {
        e.invalid(
            "status.active",
            &Value::from(active),
            "active>0 is invalid for finished job",
        );
    }
    if (finished_changed || start_changed) && start.is_null() && finished(new) {
        e.required("status.startTime", "startTime is required for finished job");
    }
    let uncounted = |s: Option<&Value>| {
        s.and_then(|s| s.get("uncountedTerminatedPods"))
            .cloned()
            .unwrap_or(Value::Null)
    };
    if finished_changed || uncounted(new) != uncounted(old) {
        let u = uncounted(new);
        let n = ["succeeded", "failed"]
            .iter()
            .map(|k| u.get(*k).and_then(Value::as_array).map_or(0, Vec::len))
            .sum::<usize>();
        if finished(new) && n > 0 {
            e.invalid(
                "status.uncountedTerminatedPods",
                &u,
                "uncountedTerminatedPods needs to be empty for finished job",
            );
        }
    }
    let suspended = spec.get("suspend") == Some(&Value::Bool(true));
    if start_changed && !get(old, "startTime").is_null() && !suspended {
        e.required(
            "status.startTime",
            "startTime cannot be removed for unsuspended job",
        );
    }
    let met = is(new, "SuccessCriteriaMet");
    if met && failed {
        e.invalid_omit(
            "status.conditions",
            "cannot set SuccessCriteriaMet=True and Failed=true conditions",
        );
    }
    if met && is(new, "FailureTarget") {
        e.invalid_omit(
            "status.conditions",
            "cannot set SuccessCriteriaMet=True and FailureTarget=true conditions",
        );
    }
    if present(spec, "successPolicy").is_some() && !met && complete {
        e.invalid_omit(
            "status.conditions",
            "cannot set Complete=True for Job with SuccessPolicy unless SuccessCriteriaMet=True",
        );
    }
    if is(old, "SuccessCriteriaMet") && !met {
        e.invalid_omit(
            "status.conditions",
            "cannot disable the SuccessCriteriaMet=True condition",
        );
    }
    if is(old, "Complete") && !is(old, "SuccessCriteriaMet") && met {
        e.invalid_omit(
            "status.conditions",
            "cannot set SuccessCriteriaMet=True for Job already has Complete=true conditions",
        );
    }
}
