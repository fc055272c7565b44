//! The Job controller (upstream `pkg/controller/job`) and the TTL-after-finished controller:
//! runs a Job's pods to completion. Indexed completion, podFailurePolicy, backoffLimitPerIndex,
//! successPolicy and podReplacementPolicy are described in docs/jobs.md.
//!
//! A reconcile claims pods like the ReplicaSet controller (owned ones that still match, matching
//! orphans adopted, relabelled ones released) and counts them: active (not
//! finished, not terminating), succeeded and failed. While the Job is unfinished and its
//! expectations are met it creates pods up to `min(parallelism, completions - succeeded)` (for
//! a work-queue Job without `completions`: `parallelism` until one pod succeeded), or deletes
//! surplus ones. It finishes the Job with `SuccessCriteriaMet` + `Complete` when enough pods
//! succeeded, or `FailureTarget` + `Failed` when failures exceed `backoffLimit` (pod failures,
//! plus container restarts under `restartPolicy: OnFailure`) or `activeDeadlineSeconds` ran out,
//! deleting the pods still running. `suspend` deletes active pods and sets `Suspended`.
//! Failed pods are replaced after an exponential back-off (10 s doubling, at most 6 min).
//! `status.succeeded`/`failed` never go down, so pods deleted after finishing are still counted.
//! A finished Job with `ttlSecondsAfterFinished` is deleted (background propagation) that long
//! after it finished.

mod indexes;
mod policy;

use std::sync::Arc;
use std::time::Duration;

use futures::stream;
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobSpec, JobStatus};
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use kube::api::{Api, DeleteParams, PostParams, PropagationPolicy};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::{Resource, ResourceExt};

use self::indexes::IndexSet;
use self::policy::{match_failure, match_success, FailureAction};
use crate::owned::{owner_triggers, pod_key, pod_triggers};
use crate::replicaset::expectations::Expectations;
use crate::replicaset::pods::{is_active, is_ready, pod_from_template};
use crate::{api_message, Context, Error, Result};
use skiff_client::driver::{drive, requeue_after};
use skiff_client::events::EventType;
use skiff_semantics::labels::Selector;

const COMPONENT: &str = "job-controller";
const ERROR_REQUEUE: Duration = Duration::from_secs(2);
/// Re-check a Job whose expectations are pending (covers watch events lost in a relist).
const UNSATISFIED_RECHECK: Duration = Duration::from_secs(30);
/// Max pods created per sync (upstream `MaxPodCreateDeletePerSync`).
const MAX_CREATES_PER_SYNC: usize = 500;
/// Replacement of failed pods waits 10 s, doubling per failure, at most 6 min (upstream's
/// `DefaultJobPodFailureBackOff` / `MaxJobPodFailureBackOff`).
const FAILURE_BACKOFF: Duration = Duration::from_secs(10);
const MAX_FAILURE_BACKOFF: Duration = Duration::from_secs(360);

struct Jc {
    ctx: Arc<Context>,
    pod_store: Store<Pod>,
    expectations: Arc<Expectations>,
}

/// Runs this controller until the process stops (errors are retried inside).
pub async fn run(ctx: Arc<Context>) -> Result<()> {
    let client = ctx.client.clone();
    let (job_store, job_writer) = reflector::store::<Job>();
    let (pod_store, pod_writer) = reflector::store::<Pod>();
    let jc = Arc::new(Jc {
        ctx,
        pod_store,
        expectations: Arc::new(Expectations::default()),
    });
    let job_triggers = owner_triggers(
        job_writer,
        Api::<Job>::all(client.clone()),
        jc.expectations.clone(),
    );
    // An orphan pod wakes every Job in its namespace whose selector matches, to adopt it.
    let jobs = job_store.clone();
    let orphans: crate::owned::OrphanMatcher<Job> = Arc::new(move |pod: &Pod| {
        let ns = pod.namespace();
        jobs.state()
            .iter()
            .filter(|j| j.namespace() == ns)
            .filter(|j| {
                j.spec
                    .as_ref()
                    .and_then(|s| s.selector.as_ref())
                    .and_then(|s| Selector::from_label_selector(s).ok())
                    .is_some_and(|s| s.matches(&pod.metadata.labels.as_ref()))
            })
            .map(|j| ObjectRef::from_obj(j.as_ref()))
            .collect()
    });
    let pod_triggers = pod_triggers::<Job>(
        pod_writer,
        Api::<Pod>::all(client),
        jc.expectations.clone(),
        "Job",
        "batch",
        Some(orphans),
    );
    let queue = stream::select(job_triggers, pod_triggers);
    drive(
        "job",
        jc,
        job_store,
        queue,
        requeue_after("job", ERROR_REQUEUE),
        |obj, c| Box::pin(async move { c.reconcile(obj).await }),
    )
    .await;
    Err(Error::WatchEnded("job"))
}

fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// Container restarts of a pod (failures under `restartPolicy: OnFailure`).
fn restarts(p: &Pod) -> i32 {
    p.status
        .as_ref()
        .into_iter()
        .flat_map(|s| {
            s.container_statuses
                .iter()
                .flatten()
                .chain(s.init_container_statuses.iter().flatten())
        })
        .map(|c| c.restart_count)
        .sum()
}

/// How long to wait before replacing failed pods: 10 s × 2^(failures − 1), capped.
fn failure_backoff(failures: i32) -> Duration {
    if failures <= 0 {
        return Duration::ZERO;
    }
    let exp = (failures - 1).min(16) as u32;
    FAILURE_BACKOFF
        .saturating_mul(2u32.saturating_pow(exp))
        .min(MAX_FAILURE_BACKOFF)
}

fn has_condition(status: &JobStatus, type_: &str) -> bool {
    status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == type_ && c.status == "True")
}

/// Sets condition `type_` (adding it, or updating status/reason/message and the transition time
/// when the status flips).
fn set_condition(status: &mut JobStatus, type_: &str, value: &str, reason: &str, message: &str) {
    let now = Time(jiff::Timestamp::now());
    let conds = status.conditions.get_or_insert_with(Vec::new);
    match conds.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            if c.status != value {
                c.last_transition_time = Some(now.clone());
            }
            c.status = value.into();
            c.reason = Some(reason.into());
            c.message = Some(message.into());
            c.last_probe_time = Some(now);
        }
        None => conds.push(JobCondition {
            type_: type_.into(),
            status: value.into(),
            reason: Some(reason.into()),
            message: Some(message.into()),
            last_probe_time: Some(now.clone()),
            last_transition_time: Some(now),
        }),
    }
}

/// When the Job finished (its Complete or Failed condition), if it did.
fn finished_at(status: &JobStatus) -> Option<jiff::Timestamp> {
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .map(|c| {
            c.last_transition_time
                .as_ref()
                .map(|t| t.0)
                .unwrap_or_else(jiff::Timestamp::now)
        })
}

/// Re-check a finishing Job whose pods are still terminating.
const FINISH_RECHECK: Duration = Duration::from_secs(5);
/// The pod annotation and label holding its completion index.
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";
/// Failures of the pod's index before this pod (with `backoffLimitPerIndex`).
const INDEX_FAILURE_COUNT: &str = "batch.kubernetes.io/job-index-failure-count";
/// Failures of the pod's index that a podFailurePolicy `Ignore` rule excused.
const INDEX_IGNORED_FAILURE_COUNT: &str = "batch.kubernetes.io/job-index-ignored-failure-count";
/// Upstream's `names.MaxGeneratedNameLength` (63 minus the random suffix).
const MAX_GENERATE_NAME: usize = 58;

/// The Job's completion mode.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    NonIndexed,
    Indexed {
        completions: i32,
        per_index_limit: Option<i32>,
    },
}

impl Mode {
    fn of(spec: &JobSpec) -> Mode {
        match (spec.completion_mode.as_deref(), spec.completions) {
            (Some("Indexed"), Some(completions)) => Mode::Indexed {
                completions: completions.max(0),
                per_index_limit: spec.backoff_limit_per_index,
            },
            _ => Mode::NonIndexed,
        }
    }

    fn completions(&self) -> Option<i32> {
        match self {
            Mode::Indexed { completions, .. } => Some(*completions),
            Mode::NonIndexed => None,
        }
    }

    fn per_index(&self) -> Option<i32> {
        match self {
            Mode::Indexed {
                per_index_limit, ..
            } => *per_index_limit,
            Mode::NonIndexed => None,
        }
    }
}

fn is_terminal(p: &Pod) -> bool {
    matches!(phase(p), "Succeeded" | "Failed")
}

/// podReplacementPolicy `Failed`: a replacement only once the old pod is terminal.
fn only_replace_failed(spec: &JobSpec) -> bool {
    spec.pod_replacement_policy.as_deref() == Some("Failed")
}

/// The pod's completion index (annotation, else label) if it is below `completions`.
fn pod_index(p: &Pod, completions: i32) -> Option<i32> {
    let from = |m: &Option<std::collections::BTreeMap<String, String>>| {
        m.as_ref()?.get(COMPLETION_INDEX)?.parse::<i32>().ok()
    };
    from(&p.metadata.annotations)
        .or_else(|| from(&p.metadata.labels))
        .filter(|i| (0..completions).contains(i))
}

fn annotation_count(p: &Pod, key: &str) -> i32 {
    p.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .and_then(|v| v.parse::<i32>().ok())
        .unwrap_or(0)
        .max(0)
}

/// When a failed pod stopped (its containers' finish time, else its newest condition).
fn failed_at(p: &Pod) -> Option<jiff::Timestamp> {
    let s = p.status.as_ref()?;
    let finished = s
        .container_statuses
        .iter()
        .flatten()
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref())
        .map(|t| t.0)
        .max();
    finished.or_else(|| {
        s.conditions
            .iter()
            .flatten()
            .filter_map(|c| c.last_transition_time.as_ref().map(|t| t.0))
            .max()
    })
}

/// Failures of one completion index.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct IndexFailures {
    counted: i32,
    ignored: i32,
    last: Option<jiff::Timestamp>,
}

/// The failed pods read through the podFailurePolicy.
#[derive(Debug, Default)]
struct Tally {
    /// Failures that count towards the limits (not excused by an `Ignore` rule).
    counted: i32,
    /// When the newest counted failure happened.
    last_counted: Option<jiff::Timestamp>,
    /// The first `FailJob` match's message.
    fail_job: Option<String>,
    /// Indexes over `backoffLimitPerIndex`, or failed by a `FailIndex` rule.
    failed_indexes: IndexSet,
    /// Per index: failures so far (carried on the pods' annotations).
    per_index: std::collections::BTreeMap<i32, IndexFailures>,
}

impl Tally {
    /// Time left of the Job-wide back-off before failed pods are replaced (not used with
    /// `backoffLimitPerIndex`, whose delays are per index).
    fn global_backoff_left(&self, mode: &Mode, now: jiff::Timestamp) -> Option<Duration> {
        if mode.per_index().is_some() {
            return None;
        }
        let since = now.duration_since(self.last_counted?).unsigned_abs();
        Some(failure_backoff(self.counted).saturating_sub(since)).filter(|d| !d.is_zero())
    }
}

fn tally_failures(spec: &JobSpec, mode: &Mode, pods: &[Arc<Pod>]) -> Tally {
    let mut t = Tally::default();
    let completions = mode.completions().unwrap_or(0);
    let per_index = mode.per_index();
    let mut sorted: Vec<&Arc<Pod>> = pods.iter().collect();
    // Oldest failure first, so the FailJob message names the first matching pod.
    sorted.sort_by_key(|p| failed_at(p));
    for p in sorted {
        let index = pod_index(p, completions);
        let mut f = IndexFailures {
            counted: annotation_count(p, INDEX_FAILURE_COUNT),
            ignored: annotation_count(p, INDEX_IGNORED_FAILURE_COUNT),
            last: None,
        };
        if phase(p) == "Failed" {
            let at = failed_at(p);
            match match_failure(spec.pod_failure_policy.as_ref(), p) {
                FailureAction::Ignore => f.ignored += 1,
                action => {
                    t.counted += 1;
                    f.counted += 1;
                    f.last = at;
                    t.last_counted = t.last_counted.max(at);
                    match action {
                        FailureAction::FailJob(msg) => {
                            t.fail_job.get_or_insert(msg);
                        }
                        FailureAction::FailIndex if per_index.is_some() => {
                            if let Some(i) = index {
                                t.failed_indexes.insert(i);
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
        if let Some(i) = index {
            let e = t.per_index.entry(i).or_default();
            e.counted = e.counted.max(f.counted);
            e.ignored = e.ignored.max(f.ignored);
            e.last = e.last.max(f.last);
        }
    }
    if let Some(limit) = per_index {
        for (i, f) in &t.per_index {
            if f.counted > limit {
                t.failed_indexes.insert(*i);
            }
        }
    }
    t
}

/// How the Job finishes: its terminal condition, reason and message.
#[derive(Debug, Clone, PartialEq)]
struct Finish {
    condition: &'static str,
    reason: String,
    message: String,
}

impl Finish {
    fn new(condition: &'static str, reason: &str, message: &str) -> Self {
        Finish {
            condition,
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// Upstream's order: an interim condition already written wins, then the failure checks
/// (podFailurePolicy FailJob, maxFailedIndexes, backoffLimit, deadline), then success
/// (successPolicy, completions), then all indexes done with some failed.
fn decide_finish(
    spec: &JobSpec,
    mode: &Mode,
    status: &JobStatus,
    tally: &Tally,
    plan: &Plan,
    succeeded: &IndexSet,
    failed_indexes: &IndexSet,
) -> Option<Finish> {
    let interim = |ty: &str| {
        status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == ty && c.status == "True")
            .map(|c| {
                (
                    c.reason.clone().unwrap_or_default(),
                    c.message.clone().unwrap_or_default(),
                )
            })
    };
    if let Some((r, m)) = interim("FailureTarget") {
        return Some(Finish::new("Failed", &r, &m));
    }
    if let Some((r, m)) = interim("SuccessCriteriaMet") {
        return Some(Finish::new("Complete", &r, &m));
    }
    if let Some(msg) = &tally.fail_job {
        return Some(Finish::new("Failed", "PodFailurePolicy", msg));
    }
    if let (Some(_), Some(max)) = (mode.per_index(), spec.max_failed_indexes) {
        if failed_indexes.len() > usize::try_from(max).unwrap_or(0) {
            return Some(Finish::new(
                "Failed",
                "MaxFailedIndexesExceeded",
                "Job has exceeded the specified maximal number of failed indexes",
            ));
        }
    }
    let planned = plan.finish.as_ref().map(|(c, r, m)| Finish::new(c, r, m));
    if let Some(f) = planned.as_ref().filter(|f| f.condition == "Failed") {
        return Some(f.clone());
    }
    if let Some(n) = mode.completions() {
        if let Some(msg) = match_success(spec.success_policy.as_ref(), n, succeeded) {
            return Some(Finish::new("Complete", "SuccessPolicy", &msg));
        }
    }
    if planned.is_some() {
        return planned;
    }
    if let Some(n) = mode.completions() {
        let done = succeeded.len() + failed_indexes.len();
        if !failed_indexes.is_empty() && done >= usize::try_from(n).unwrap_or(0) {
            return Some(Finish::new(
                "Failed",
                "FailedIndexes",
                "Job has failed indexes",
            ));
        }
    }
    None
}

/// What an Indexed Job's sync does with its pods.
#[derive(Debug, Default)]
struct IndexedPlan {
    /// Active pods to delete: duplicates, finished or unknown indexes, above parallelism.
    delete: Vec<Arc<Pod>>,
    /// Indexes to create a pod for, with the index's failures so far.
    create: Vec<(i32, IndexFailures)>,
    /// The shortest per-index back-off still running.
    wait: Option<Duration>,
}

/// Upstream's indexed `manageJob`: one pod per pending index, lowest indexes first, at most
/// `parallelism` running.
#[allow(clippy::too_many_arguments)]
fn plan_indexed(
    spec: &JobSpec,
    mode: &Mode,
    active: &[Arc<Pod>],
    terminating: &[&Arc<Pod>],
    succeeded: &IndexSet,
    failed_indexes: &IndexSet,
    tally: &Tally,
    now: jiff::Timestamp,
) -> IndexedPlan {
    let mut out = IndexedPlan::default();
    let Some(n) = mode.completions() else {
        return out;
    };
    let parallelism = usize::try_from(spec.parallelism.unwrap_or(1).max(0)).unwrap_or(0);
    let mut by_index: std::collections::BTreeMap<i32, Vec<Arc<Pod>>> = Default::default();
    for p in active {
        match pod_index(p, n) {
            Some(i) if !succeeded.contains(i) && !failed_indexes.contains(i) => {
                by_index.entry(i).or_default().push(p.clone())
            }
            _ => out.delete.push(p.clone()),
        }
    }
    // One pod per index: keep the oldest.
    for pods in by_index.values_mut() {
        pods.sort_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0));
        out.delete.extend(pods.drain(1..));
    }
    // Above parallelism: the highest indexes go.
    while by_index.len() > parallelism {
        if let Some((_, pods)) = by_index.pop_last() {
            out.delete.extend(pods);
        }
    }
    let waiting: Vec<i32> = if only_replace_failed(spec) {
        terminating.iter().filter_map(|p| pod_index(p, n)).collect()
    } else {
        Vec::new()
    };
    let mut room = parallelism.saturating_sub(by_index.len() + waiting.len());
    for i in 0..n {
        if room == 0 {
            break;
        }
        if succeeded.contains(i)
            || failed_indexes.contains(i)
            || by_index.contains_key(&i)
            || waiting.contains(&i)
        {
            continue;
        }
        let f = tally.per_index.get(&i).copied().unwrap_or_default();
        if mode.per_index().is_some() {
            // Per-index back-off since this index last failed.
            if let Some(last) = f.last.filter(|_| f.counted > 0) {
                let since = now.duration_since(last).unsigned_abs();
                let left = failure_backoff(f.counted).saturating_sub(since);
                if !left.is_zero() {
                    out.wait = Some(out.wait.map_or(left, |w| w.min(left)));
                    room -= 1;
                    continue;
                }
            }
        }
        out.create.push((i, f));
        room -= 1;
    }
    out
}

/// The generate-name of an indexed pod, `<job>-<index>-`, shortening the Job name to fit.
fn indexed_generate_name(job: &str, index: i32) -> String {
    let suffix = format!("-{index}-");
    let keep = MAX_GENERATE_NAME.saturating_sub(suffix.len());
    let mut end = job.len().min(keep);
    while !job.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{suffix}", &job[..end])
}

/// A pod for completion index `index`: annotation and label with the index, hostname
/// `<job>-<index>`, `JOB_COMPLETION_INDEX` from the annotation in every container.
fn new_indexed_pod(job: &Job, index: i32, failures: IndexFailures, per_index: bool) -> Pod {
    let mut pod = new_pod(job);
    let name = job.name_any();
    let idx = index.to_string();
    pod.metadata.generate_name = Some(indexed_generate_name(&name, index));
    let annotations = pod
        .metadata
        .annotations
        .get_or_insert_with(Default::default);
    annotations.insert(COMPLETION_INDEX.into(), idx.clone());
    if per_index {
        annotations.insert(INDEX_FAILURE_COUNT.into(), failures.counted.to_string());
        if failures.ignored > 0 {
            annotations.insert(
                INDEX_IGNORED_FAILURE_COUNT.into(),
                failures.ignored.to_string(),
            );
        }
    }
    pod.metadata
        .labels
        .get_or_insert_with(Default::default)
        .insert(COMPLETION_INDEX.into(), idx);
    if let Some(spec) = pod.spec.as_mut() {
        spec.hostname = Some(format!("{name}-{index}"));
        let containers = spec
            .containers
            .iter_mut()
            .chain(spec.init_containers.iter_mut().flatten());
        for c in containers {
            let env = c.env.get_or_insert_with(Vec::new);
            if !env.iter().any(|e| e.name == "JOB_COMPLETION_INDEX") {
                env.push(EnvVar {
                    name: "JOB_COMPLETION_INDEX".into(),
                    value: None,
                    value_from: Some(EnvVarSource {
                        field_ref: Some(ObjectFieldSelector {
                            api_version: Some("v1".into()),
                            field_path: format!("metadata.annotations['{COMPLETION_INDEX}']"),
                        }),
                        ..Default::default()
                    }),
                });
            }
        }
    }
    pod
}

/// What the pods say, and what to do about it.
#[derive(Debug, PartialEq)]
struct Plan {
    /// Pods to create (>0) or how many active pods to delete (<0).
    delta: i64,
    /// Set when the Job must finish now: (condition, reason, message).
    finish: Option<(&'static str, &'static str, String)>,
}

/// Upstream's decision for one sync, from counts (pure, for tests).
fn plan(
    spec: &JobSpec,
    active: i64,
    succeeded: i64,
    failed: i64,
    elapsed_secs: Option<i64>,
) -> Plan {
    let parallelism = i64::from(spec.parallelism.unwrap_or(1).max(0));
    let backoff_limit = i64::from(spec.backoff_limit.unwrap_or(6).max(0));
    if failed > backoff_limit {
        return Plan {
            delta: -active,
            finish: Some((
                "Failed",
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit".into(),
            )),
        };
    }
    if let (Some(deadline), Some(elapsed)) = (spec.active_deadline_seconds, elapsed_secs) {
        if elapsed >= deadline {
            return Plan {
                delta: -active,
                finish: Some((
                    "Failed",
                    "DeadlineExceeded",
                    "Job was active longer than specified deadline".into(),
                )),
            };
        }
    }
    let done = match spec.completions {
        Some(c) => succeeded >= i64::from(c),
        // A work queue: done when one pod succeeded and the rest stopped.
        None => succeeded > 0 && active == 0,
    };
    if done {
        return Plan {
            delta: -active,
            finish: Some((
                "Complete",
                "CompletionsReached",
                "Reached expected number of succeeded pods".into(),
            )),
        };
    }
    if spec.suspend == Some(true) {
        return Plan {
            delta: -active,
            finish: None,
        };
    }
    let want = match spec.completions {
        Some(c) => parallelism.min(i64::from(c) - succeeded).max(0),
        None if succeeded > 0 => active.min(parallelism),
        None => parallelism,
    };
    Plan {
        delta: want - active,
        finish: None,
    }
}

impl Jc {
    async fn reconcile(&self, job: Arc<Job>) -> Result<Action> {
        self.pod_store
            .wait_until_ready()
            .await
            .map_err(|e| Error::Other(format!("pod cache: {e}")))?;
        let ns = job.namespace().unwrap_or_default();
        let uid = job.metadata.uid.clone().unwrap_or_default();
        let Some(spec) = job.spec.as_ref() else {
            return Ok(Action::await_change());
        };
        let mut status = job.status.clone().unwrap_or_default();
        if job.metadata.deletion_timestamp.is_some() {
            return Ok(Action::await_change());
        }
        if let Some(at) = finished_at(&status) {
            return self.ttl_after_finished(&job, at).await;
        }
        // Another controller owns this Job (upstream's `spec.managedBy`).
        if spec
            .managed_by
            .as_deref()
            .is_some_and(|m| m != "kubernetes.io/job-controller")
        {
            return Ok(Action::await_change());
        }
        let selector = match spec
            .selector
            .as_ref()
            .map(Selector::from_label_selector)
            .transpose()
        {
            Ok(Some(s)) => s,
            _ => {
                tracing::warn!(job = %job.name_any(), "job without a valid selector");
                return Ok(Action::await_change());
            }
        };
        // Owned pods that still match, plus matching orphans adopted (upstream `getPodsForJob`).
        let candidates: Vec<Arc<Pod>> = self
            .pod_store
            .state()
            .into_iter()
            .filter(|p| p.namespace().as_deref() == Some(ns.as_str()))
            .collect();
        let pods = crate::owned::claim_pods(
            &self.ctx.client,
            &ns,
            controller_ref(&job),
            false,
            &selector,
            candidates,
            self.recheck(&job),
        )
        .await?;
        let mode = Mode::of(spec);
        let mut active: Vec<Arc<Pod>> = pods.iter().filter(|p| is_active(p)).cloned().collect();
        // Deleted but not yet terminal: with podReplacementPolicy Failed they are not replaced
        // until they stop.
        let terminating_pods: Vec<&Arc<Pod>> = pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_some() && !is_terminal(p))
            .collect();
        let terminating = terminating_pods.len() as i32;

        let mut succeeded_indexes = IndexSet::default();
        let succeeded = if let Some(n) = mode.completions() {
            succeeded_indexes =
                IndexSet::parse(status.completed_indexes.as_deref().unwrap_or(""), n);
            for p in pods.iter().filter(|p| phase(p) == "Succeeded") {
                if let Some(i) = pod_index(p, n) {
                    succeeded_indexes.insert(i);
                }
            }
            succeeded_indexes.len() as i32
        } else {
            (pods.iter().filter(|p| phase(p) == "Succeeded").count() as i32)
                .max(status.succeeded.unwrap_or(0))
        };
        let tally = tally_failures(spec, &mode, &pods);
        let restart_failures: i32 = if spec
            .template
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.as_deref())
            == Some("OnFailure")
        {
            pods.iter().map(|p| restarts(p)).sum()
        } else {
            0
        };
        let failed = (tally.counted + restart_failures).max(status.failed.unwrap_or(0));
        let mut failed_indexes = IndexSet::default();
        if let Mode::Indexed {
            completions,
            per_index_limit: Some(_),
        } = mode
        {
            failed_indexes =
                IndexSet::parse(status.failed_indexes.as_deref().unwrap_or(""), completions);
            for i in tally.failed_indexes.iter() {
                if !succeeded_indexes.contains(i) {
                    failed_indexes.insert(i);
                }
            }
        }

        let suspended = spec.suspend == Some(true);
        let now = jiff::Timestamp::now();
        if suspended {
            if !has_condition(&status, "Suspended") {
                set_condition(
                    &mut status,
                    "Suspended",
                    "True",
                    "JobSuspended",
                    "Job suspended",
                );
                self.event(&job, EventType::Normal, "Suspended", "Job suspended")
                    .await;
            }
            status.start_time = None;
        } else {
            if has_condition(&status, "Suspended") {
                set_condition(
                    &mut status,
                    "Suspended",
                    "False",
                    "JobResumed",
                    "Job resumed",
                );
                self.event(&job, EventType::Normal, "Resumed", "Job resumed")
                    .await;
            }
            if status.start_time.is_none() {
                status.start_time = Some(Time(now));
            }
        }
        let elapsed = status
            .start_time
            .as_ref()
            .map(|t| now.duration_since(t.0).as_secs());
        let plan = plan(
            spec,
            active.len() as i64,
            i64::from(succeeded),
            i64::from(failed),
            elapsed,
        );
        let finish = decide_finish(
            spec,
            &mode,
            &status,
            &tally,
            &plan,
            &succeeded_indexes,
            &failed_indexes,
        );

        let mut requeue = None;
        let mut just_deleted = 0;
        if self.expectations.satisfied(&uid) || finish.is_some() {
            if finish.is_some() || suspended {
                // Finishing or suspended: every running pod goes.
                self.delete_pods(&job, &active).await?;
                just_deleted = active.len();
                active.clear();
            } else if let Mode::Indexed { .. } = mode {
                let todo = plan_indexed(
                    spec,
                    &mode,
                    &active,
                    &terminating_pods,
                    &succeeded_indexes,
                    &failed_indexes,
                    &tally,
                    now,
                );
                if !todo.delete.is_empty() {
                    self.delete_pods(&job, &todo.delete).await?;
                    active.retain(|p| !todo.delete.iter().any(|d| Arc::ptr_eq(d, p)));
                }
                if todo.create.is_empty() {
                    requeue = todo.wait;
                } else if let Some(wait) = tally.global_backoff_left(&mode, now) {
                    requeue = Some(wait);
                } else {
                    self.create_indexed_pods(&job, &mode, &todo.create).await?;
                    requeue = todo.wait;
                }
            } else {
                let mut delta = plan.delta;
                if delta > 0 && only_replace_failed(spec) {
                    delta = (delta - i64::from(terminating)).max(0);
                }
                if delta > 0 {
                    if let Some(wait) = tally.global_backoff_left(&mode, now) {
                        requeue = Some(wait);
                    } else {
                        self.create_pods(&job, delta as usize).await?;
                    }
                } else if delta < 0 {
                    // Newest first (upstream deletes the least progressed pods).
                    active.sort_by_key(|p| {
                        std::cmp::Reverse(p.metadata.creation_timestamp.as_ref().map(|t| t.0))
                    });
                    let n = ((-delta) as usize).min(active.len());
                    self.delete_pods(&job, &active[..n]).await?;
                    active.drain(..n);
                }
            }
        } else {
            requeue = Some(UNSATISFIED_RECHECK);
        }

        status.active = Some(active.len() as i32).filter(|n| *n > 0);
        status.ready = Some(active.iter().filter(|p| is_ready(p)).count() as i32);
        status.terminating = Some(terminating);
        status.succeeded = Some(succeeded).filter(|n| *n > 0);
        status.failed = Some(failed).filter(|n| *n > 0);
        if let Mode::Indexed {
            per_index_limit, ..
        } = mode
        {
            status.completed_indexes = Some(succeeded_indexes.to_text()).filter(|t| !t.is_empty());
            status.failed_indexes = per_index_limit.map(|_| failed_indexes.to_text());
        }
        if let Some(f) = &finish {
            let target = if f.condition == "Complete" {
                "SuccessCriteriaMet"
            } else {
                "FailureTarget"
            };
            if !has_condition(&status, target) {
                set_condition(&mut status, target, "True", &f.reason, &f.message);
            }
            // The terminal condition waits until no pod of the Job is still running
            // (upstream delays it while pods terminate).
            let still_running = !active.is_empty() || terminating > 0 || just_deleted > 0;
            if still_running {
                requeue = Some(requeue.map_or(FINISH_RECHECK, |r: Duration| r.min(FINISH_RECHECK)));
            } else {
                set_condition(&mut status, f.condition, "True", &f.reason, &f.message);
                if f.condition == "Complete" {
                    status.completion_time = Some(Time(now));
                    self.event(&job, EventType::Normal, "Completed", "Job completed")
                        .await;
                } else {
                    self.event(&job, EventType::Warning, &f.reason, &f.message)
                        .await;
                }
                status.active = None;
            }
        }
        self.update_status(&job, status).await?;

        if finish.is_none() && !suspended {
            // The deadline passes without any watch event.
            if let (Some(d), Some(e)) = (spec.active_deadline_seconds, elapsed) {
                let left = Duration::from_secs(d.saturating_sub(e).max(0) as u64);
                requeue = Some(requeue.map_or(left, |r: Duration| r.min(left)));
            }
        }
        Ok(requeue.map_or_else(Action::await_change, |d| {
            Action::requeue(d + Duration::from_millis(100))
        }))
    }

    /// Deletes a finished Job `ttlSecondsAfterFinished` after it finished.
    /// An uncached read before adopting: the Job still exists with the same uid and is not
    /// being deleted.
    async fn recheck(&self, job: &Job) -> std::result::Result<(), String> {
        let ns = job.namespace().unwrap_or_default();
        let api: Api<Job> = Api::namespaced(self.ctx.client.clone(), &ns);
        let fresh = api.get(&job.name_any()).await.map_err(|e| e.to_string())?;
        if fresh.metadata.uid != job.metadata.uid {
            return Err(format!("original Job {ns}/{} is gone", job.name_any()));
        }
        if fresh.metadata.deletion_timestamp.is_some() {
            return Err(format!("{ns}/{} has just been deleted", job.name_any()));
        }
        Ok(())
    }

    async fn ttl_after_finished(&self, job: &Job, finished: jiff::Timestamp) -> Result<Action> {
        let Some(ttl) = job.spec.as_ref().and_then(|s| s.ttl_seconds_after_finished) else {
            return Ok(Action::await_change());
        };
        let expires = finished
            .checked_add(jiff::SignedDuration::from_secs(i64::from(ttl)))
            .unwrap_or(finished);
        let now = jiff::Timestamp::now();
        if now < expires {
            let wait = expires.duration_since(now).unsigned_abs();
            return Ok(Action::requeue(wait + Duration::from_millis(100)));
        }
        let api: Api<Job> = Api::namespaced(
            self.ctx.client.clone(),
            &job.namespace().unwrap_or_default(),
        );
        let dp = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            preconditions: Some(kube::api::Preconditions {
                uid: job.metadata.uid.clone(),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(&job.name_any(), &dp).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
        Ok(Action::await_change())
    }

    async fn create_pods(&self, job: &Job, n: usize) -> Result<()> {
        let pod = new_pod(job);
        let pods = vec![pod; n.min(MAX_CREATES_PER_SYNC)];
        self.create(job, pods).await
    }

    async fn create_indexed_pods(
        &self,
        job: &Job,
        mode: &Mode,
        indexes: &[(i32, IndexFailures)],
    ) -> Result<()> {
        let per_index = mode.per_index().is_some();
        let pods = indexes
            .iter()
            .take(MAX_CREATES_PER_SYNC)
            .map(|(i, f)| new_indexed_pod(job, *i, *f, per_index))
            .collect();
        self.create(job, pods).await
    }

    async fn create(&self, job: &Job, pods: Vec<Pod>) -> Result<()> {
        let uid = job.metadata.uid.clone().unwrap_or_default();
        let ns = job.namespace().unwrap_or_default();
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &ns);
        self.expectations.expect_creations(&uid, pods.len());
        let pp = PostParams::default();
        let results = futures::future::join_all(pods.iter().map(|p| api.create(&pp, p))).await;
        let mut first_err = None;
        for r in results {
            match r {
                Ok(p) => {
                    self.event(
                        job,
                        EventType::Normal,
                        "SuccessfulCreate",
                        &format!("Created pod: {}", p.name_any()),
                    )
                    .await
                }
                Err(e) => {
                    self.expectations.lower_creations(&uid, 1);
                    let msg = format!("Error creating: {}", api_message(&e));
                    self.event(job, EventType::Warning, "FailedCreate", &msg)
                        .await;
                    first_err.get_or_insert(msg);
                }
            }
        }
        first_err.map_or(Ok(()), |e| Err(Error::Other(e)))
    }

    async fn delete_pods(&self, job: &Job, pods: &[Arc<Pod>]) -> Result<()> {
        let uid = job.metadata.uid.clone().unwrap_or_default();
        self.expectations
            .expect_deletions(&uid, pods.iter().map(|p| pod_key(p)));
        for p in pods {
            let api: Api<Pod> =
                Api::namespaced(self.ctx.client.clone(), &p.namespace().unwrap_or_default());
            match api.delete(&p.name_any(), &DeleteParams::default()).await {
                Ok(_) => {
                    self.event(
                        job,
                        EventType::Normal,
                        "SuccessfulDelete",
                        &format!("Deleted pod: {}", p.name_any()),
                    )
                    .await
                }
                Err(kube::Error::Api(s)) if s.code == 404 => {
                    self.expectations.deletion_observed(&uid, &pod_key(p));
                }
                Err(e) => {
                    self.expectations.deletion_observed(&uid, &pod_key(p));
                    return Err(e.into());
                }
            }
        }
        Ok(())
    }

    async fn update_status(&self, job: &Job, status: JobStatus) -> Result<()> {
        if job.status.as_ref() == Some(&status) {
            return Ok(());
        }
        let api: Api<Job> = Api::namespaced(
            self.ctx.client.clone(),
            &job.namespace().unwrap_or_default(),
        );
        let mut obj = job.clone();
        obj.status = Some(status);
        match api
            .replace_status(&job.name_any(), &PostParams::default(), &obj)
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            // A newer version is on its way through the watch; it will be synced.
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn event(&self, job: &Job, kind: EventType, reason: &str, message: &str) {
        self.ctx
            .events
            .publish(COMPONENT, &job.object_ref(&()), kind, reason, message)
            .await;
    }
}

/// The Job's controller reference on its pods.
fn controller_ref(job: &Job) -> OwnerReference {
    OwnerReference {
        api_version: "batch/v1".into(),
        kind: "Job".into(),
        name: job.name_any(),
        uid: job.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// A pod from the Job's template, controlled by the Job.
fn new_pod(job: &Job) -> Pod {
    pod_from_template(
        job.spec.as_ref().map(|s| s.template.clone()),
        job.metadata.namespace.clone(),
        controller_ref(job),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::JobSpec;

    fn spec(completions: Option<i32>, parallelism: i32, backoff: i32) -> JobSpec {
        JobSpec {
            completions,
            parallelism: Some(parallelism),
            backoff_limit: Some(backoff),
            ..Default::default()
        }
    }

    #[test]
    fn creates_up_to_parallelism_and_remaining_completions() {
        assert_eq!(plan(&spec(Some(5), 2, 6), 0, 0, 0, Some(0)).delta, 2);
        assert_eq!(plan(&spec(Some(5), 2, 6), 2, 0, 0, Some(0)).delta, 0);
        // Only one completion left: one active pod is enough, the other is surplus.
        assert_eq!(plan(&spec(Some(5), 2, 6), 2, 4, 0, Some(0)).delta, -1);
        let done = plan(&spec(Some(5), 2, 6), 0, 5, 1, Some(0));
        assert_eq!(done.finish.map(|f| f.0), Some("Complete"));
    }

    #[test]
    fn work_queue_jobs_finish_after_one_success_and_the_rest_stop() {
        assert_eq!(plan(&spec(None, 3, 6), 0, 0, 0, Some(0)).delta, 3);
        let p = plan(&spec(None, 3, 6), 2, 1, 0, Some(0));
        assert_eq!((p.delta, p.finish), (0, None));
        let p = plan(&spec(None, 3, 6), 0, 1, 0, Some(0));
        assert_eq!(p.finish.map(|f| f.0), Some("Complete"));
    }

    #[test]
    fn backoff_limit_and_deadline_fail_the_job() {
        let p = plan(&spec(Some(1), 1, 2), 1, 0, 3, Some(0));
        assert_eq!(p.delta, -1);
        assert_eq!(p.finish.map(|f| f.1), Some("BackoffLimitExceeded"));
        assert_eq!(plan(&spec(Some(1), 1, 2), 0, 0, 2, Some(0)).delta, 1);
        let mut s = spec(Some(1), 1, 6);
        s.active_deadline_seconds = Some(10);
        assert_eq!(plan(&s, 1, 0, 0, Some(9)).finish, None);
        let p = plan(&s, 1, 0, 0, Some(10));
        assert_eq!(p.finish.map(|f| f.1), Some("DeadlineExceeded"));
    }

    #[test]
    fn failure_backoff_doubles_and_caps() {
        assert_eq!(failure_backoff(0), Duration::ZERO);
        assert_eq!(failure_backoff(1), Duration::from_secs(10));
        assert_eq!(failure_backoff(3), Duration::from_secs(40));
        assert_eq!(failure_backoff(30), Duration::from_secs(360));
    }

    #[test]
    fn suspend_deletes_active_pods() {
        let mut s = spec(Some(3), 2, 6);
        s.suspend = Some(true);
        assert_eq!(
            plan(&s, 2, 0, 0, None),
            Plan {
                delta: -2,
                finish: None
            }
        );
    }
}
