//! The CronJob controller (upstream `pkg/controller/cronjob`, v2): creates a Job for every
//! scheduled time of a CronJob's `schedule` (5-field cron or `@hourly`-style macros, evaluated
//! in `timeZone`, else the server's local zone).
//!
//! Each sync: refresh `status.active` from the Jobs it owns (setting `lastSuccessfulTime`),
//! delete finished Jobs beyond `successfulJobsHistoryLimit` / `failedJobsHistoryLimit`, then,
//! unless `suspend`, find the most recent unmet schedule time since `lastScheduleTime` (or
//! creation). It is skipped when older than `startingDeadlineSeconds`; `concurrencyPolicy`
//! Forbid skips it while a Job is active and Replace deletes the active ones first. The Job is
//! named `<cronjob>-<scheduled unix minutes>`, so a retried create finds it instead of making a
//! second one. The next sync is queued for the next scheduled time.

use std::sync::Arc;
use std::time::Duration;

use futures::{stream, TryStreamExt};
use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::api::{Api, DeleteParams, PostParams, PropagationPolicy};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{self, reflector, ObjectRef, Store};
use kube::runtime::watcher;
use kube::runtime::WatchStreamExt;
use kube::{Resource, ResourceExt};

use crate::replicaset::pods::controller_ref;
use crate::{api_message, Context, Error, Result};
use skiff_client::driver::{drive, requeue_after};
use skiff_client::events::EventType;
use skiff_semantics::wellknown::annotations;

const COMPONENT: &str = "cronjob-controller";
const ERROR_REQUEUE: Duration = Duration::from_secs(5);
/// Upstream gives up listing missed times past this many and starts from the latest.
const MAX_MISSED: usize = 100;

struct Cjc {
    ctx: Arc<Context>,
    jobs: Store<Job>,
}

/// Runs this controller until the process stops (errors are retried inside).
pub async fn run(ctx: Arc<Context>) -> Result<()> {
    let client = ctx.client.clone();
    let (cj_store, cj_writer) = reflector::store::<CronJob>();
    let (job_store, job_writer) = reflector::store::<Job>();
    let cjc = Arc::new(Cjc {
        ctx,
        jobs: job_store,
    });
    let cj_triggers = reflector(
        cj_writer,
        watcher(
            Api::<CronJob>::all(client.clone()),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .map_ok(|ev| {
        let refs: Vec<ObjectRef<CronJob>> = match ev {
            watcher::Event::Apply(c) | watcher::Event::InitApply(c) => {
                vec![ObjectRef::from_obj(&c)]
            }
            _ => vec![],
        };
        stream::iter(refs.into_iter().map(Ok::<_, watcher::Error>))
    })
    .try_flatten();
    // A Job of a CronJob changed (finished, deleted): sync its owner.
    let job_triggers = reflector(
        job_writer,
        watcher(Api::<Job>::all(client), watcher::Config::default()),
    )
    .default_backoff()
    .map_ok(|ev| {
        let refs: Vec<ObjectRef<CronJob>> = match ev {
            watcher::Event::Apply(j) | watcher::Event::InitApply(j) | watcher::Event::Delete(j) => {
                cronjob_owner(&j.metadata)
                    .map(|(name, _)| {
                        ObjectRef::new(&name).within(&j.namespace().unwrap_or_default())
                    })
                    .into_iter()
                    .collect()
            }
            _ => vec![],
        };
        stream::iter(refs.into_iter().map(Ok::<_, watcher::Error>))
    })
    .try_flatten();
    drive(
        "cronjob",
        cjc,
        cj_store,
        stream::select(cj_triggers, job_triggers),
        requeue_after("cronjob", ERROR_REQUEUE),
        |obj, c| Box::pin(async move { c.reconcile(obj).await }),
    )
    .await;
    Err(Error::WatchEnded("cronjob"))
}

fn cronjob_owner(meta: &ObjectMeta) -> Option<(String, String)> {
    controller_ref(meta)
        .filter(|r| r.kind == "CronJob" && r.api_version.starts_with("batch/"))
        .map(|r| (r.name.clone(), r.uid.clone()))
}

/// A parsed schedule in a time zone.
pub struct Schedule {
    cron: skiff_semantics::cron::CronSchedule,
    tz: jiff::tz::TimeZone,
}

impl Schedule {
    /// `schedule` as validation parsed it (robfig's `ParseStandard`: 5 fields, an `@macro` or
    /// `@every 1h30m`) in `time_zone` (IANA), else the local zone. A `TZ=`/`CRON_TZ=` prefix
    /// (allowed in CronJobs stored before 1.27) names the zone too.
    pub fn parse(schedule: &str, time_zone: Option<&str>) -> std::result::Result<Self, String> {
        let cron = skiff_semantics::cron::parse_standard(schedule)
            .map_err(|e| format!("unparseable schedule {schedule:?}: {e}"))?;
        let fallback = match time_zone {
            Some(name) => jiff::tz::TimeZone::get(name)
                .map_err(|e| format!("unknown time zone {name:?}: {e}"))?,
            None => jiff::tz::TimeZone::system(),
        };
        let tz = cron
            .zone(fallback)
            .map_err(|e| format!("unparseable schedule {schedule:?}: {e}"))?;
        Ok(Schedule { cron, tz })
    }

    /// The first scheduled time strictly after `after`.
    pub fn next_after(&self, after: jiff::Timestamp) -> Option<jiff::Timestamp> {
        self.cron.next_after(after, &self.tz)
    }

    /// The most recent scheduled time in (`since`, `now`], and how many there were.
    pub fn most_recent(
        &self,
        since: jiff::Timestamp,
        now: jiff::Timestamp,
    ) -> (Option<jiff::Timestamp>, usize) {
        let (mut last, mut count) = (None, 0);
        let mut t = since;
        while let Some(next) = self.next_after(t) {
            if next > now {
                break;
            }
            last = Some(next);
            count += 1;
            t = next;
            if count > MAX_MISSED {
                // Jump to the end: only the most recent one matters.
                let mut probe = now
                    .checked_sub(jiff::SignedDuration::from_hours(24))
                    .unwrap_or(now)
                    .max(t);
                while let Some(n) = self.next_after(probe) {
                    if n > now {
                        break;
                    }
                    last = Some(n);
                    probe = n;
                }
                break;
            }
        }
        (last, count)
    }
}

fn finished(job: &Job) -> Option<&'static str> {
    let conds = job.status.as_ref()?.conditions.as_ref()?;
    if conds
        .iter()
        .any(|c| c.type_ == "Complete" && c.status == "True")
    {
        Some("Complete")
    } else if conds
        .iter()
        .any(|c| c.type_ == "Failed" && c.status == "True")
    {
        Some("Failed")
    } else {
        None
    }
}

fn job_ref(job: &Job) -> ObjectReference {
    let mut r = job.object_ref(&());
    r.field_path = None;
    r
}

fn ts(t: &Option<Time>) -> Option<jiff::Timestamp> {
    t.as_ref().map(|t| t.0)
}

impl Cjc {
    async fn reconcile(&self, cj: Arc<CronJob>) -> Result<Action> {
        let cache = |e: reflector::store::WriterDropped| Error::Other(format!("job cache: {e}"));
        self.jobs.wait_until_ready().await.map_err(cache)?;
        if cj.metadata.deletion_timestamp.is_some() {
            return Ok(Action::await_change());
        }
        let Some(spec) = cj.spec.as_ref() else {
            return Ok(Action::await_change());
        };
        let ns = cj.namespace().unwrap_or_default();
        let uid = cj.metadata.uid.clone().unwrap_or_default();
        let mut jobs: Vec<Arc<Job>> = self
            .jobs
            .state()
            .into_iter()
            .filter(|j| j.namespace().as_deref() == Some(ns.as_str()))
            .filter(|j| cronjob_owner(&j.metadata).is_some_and(|(_, u)| u == uid))
            .collect();
        jobs.sort_by_key(|j| j.metadata.creation_timestamp.as_ref().map(|t| t.0));
        let mut status = cj.status.clone().unwrap_or_default();

        // 1. Active list and last success, from the Jobs themselves.
        let mut active = Vec::new();
        for j in &jobs {
            match finished(j) {
                None if j.metadata.deletion_timestamp.is_none() => active.push(job_ref(j)),
                None => {}
                Some(kind) => {
                    let was_active = status
                        .active
                        .iter()
                        .flatten()
                        .any(|r| r.uid == j.metadata.uid);
                    if was_active {
                        let msg = format!("Saw completed job: {}, condition: {kind}", j.name_any());
                        self.event(&cj, EventType::Normal, "SawCompletedJob", &msg)
                            .await;
                    }
                    if kind == "Complete" {
                        let done = j.status.as_ref().and_then(|s| s.completion_time.clone());
                        if ts(&done) > ts(&status.last_successful_time) {
                            status.last_successful_time = done;
                        }
                    }
                }
            }
        }
        status.active = (!active.is_empty()).then_some(active);

        // 2. History limits: the oldest finished Jobs go first.
        for (kind, limit) in [
            ("Complete", spec.successful_jobs_history_limit.unwrap_or(3)),
            ("Failed", spec.failed_jobs_history_limit.unwrap_or(1)),
        ] {
            let done: Vec<&Arc<Job>> = jobs
                .iter()
                .filter(|j| finished(j) == Some(kind) && j.metadata.deletion_timestamp.is_none())
                .collect();
            let surplus = done
                .len()
                .saturating_sub(usize::try_from(limit.max(0)).unwrap_or(0));
            for j in done.into_iter().take(surplus) {
                self.delete_job(&cj, j, "SuccessfulDelete").await?;
            }
        }

        // 3. Schedule.
        let now = jiff::Timestamp::now();
        let schedule = match Schedule::parse(&spec.schedule, spec.time_zone.as_deref()) {
            Ok(s) => s,
            Err(msg) => {
                self.event(&cj, EventType::Warning, "UnparseableSchedule", &msg)
                    .await;
                self.update_status(&cj, status).await?;
                return Ok(Action::await_change());
            }
        };
        let mut requeue = schedule
            .next_after(now)
            .map(|n| n.duration_since(now).unsigned_abs() + Duration::from_millis(200));
        if spec.suspend == Some(true) {
            self.update_status(&cj, status).await?;
            return Ok(Action::await_change());
        }
        let since = ts(&status.last_schedule_time)
            .or_else(|| ts(&cj.metadata.creation_timestamp))
            .unwrap_or(now);
        let (due, missed) = schedule.most_recent(since, now);
        if missed > MAX_MISSED {
            let msg = format!("too many missed start times: {missed}. Set or decrease .spec.startingDeadlineSeconds or check clock skew");
            self.event(&cj, EventType::Warning, "TooManyMissedTimes", &msg)
                .await;
        }
        if let Some(scheduled) = due {
            let too_late = spec.starting_deadline_seconds.is_some_and(|d| {
                scheduled
                    .checked_add(jiff::SignedDuration::from_secs(d))
                    .is_ok_and(|limit| limit < now)
            });
            let policy = spec.concurrency_policy.as_deref().unwrap_or("Allow");
            let busy = status.active.as_ref().is_some_and(|a| !a.is_empty());
            if too_late {
                let msg = format!("Missed scheduled time to start a job: {scheduled}");
                self.event(&cj, EventType::Warning, "MissSchedule", &msg)
                    .await;
                status.last_schedule_time = Some(Time(scheduled));
            } else if policy == "Forbid" && busy {
                // Retried when the active Job finishes (a Job event) or at the next time.
                requeue = requeue.map(|r| r.min(Duration::from_secs(10)));
            } else {
                if policy == "Replace" && busy {
                    for j in jobs.iter().filter(|j| finished(j).is_none()) {
                        self.delete_job(&cj, j, "SuccessfulDelete").await?;
                    }
                    status.active = None;
                }
                let job = self.create_job(&cj, scheduled).await?;
                status
                    .active
                    .get_or_insert_with(Vec::new)
                    .push(job_ref(&job));
                status.last_schedule_time = Some(Time(scheduled));
            }
        }
        self.update_status(&cj, status).await?;
        Ok(requeue.map_or_else(Action::await_change, Action::requeue))
    }

    async fn create_job(&self, cj: &CronJob, scheduled: jiff::Timestamp) -> Result<Job> {
        let ns = cj.namespace().unwrap_or_default();
        let api: Api<Job> = Api::namespaced(self.ctx.client.clone(), &ns);
        let template = cj
            .spec
            .as_ref()
            .map(|s| s.job_template.clone())
            .unwrap_or_default();
        let tmeta = template.metadata.unwrap_or_default();
        let name = format!("{}-{}", cj.name_any(), scheduled.as_second() / 60);
        let mut annotations = tmeta.annotations.unwrap_or_default();
        annotations.insert(
            annotations::CRONJOB_SCHEDULED_TIMESTAMP.into(),
            scheduled.to_string(),
        );
        let job = Job {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(ns),
                labels: tmeta.labels,
                annotations: Some(annotations),
                owner_references: Some(vec![OwnerReference {
                    api_version: "batch/v1".into(),
                    kind: "CronJob".into(),
                    name: cj.name_any(),
                    uid: cj.metadata.uid.clone().unwrap_or_default(),
                    controller: Some(true),
                    block_owner_deletion: Some(true),
                }]),
                ..Default::default()
            },
            spec: template.spec,
            status: None,
        };
        match api.create(&PostParams::default(), &job).await {
            Ok(j) => {
                let msg = format!("Created job {name}");
                self.event(cj, EventType::Normal, "SuccessfulCreate", &msg)
                    .await;
                Ok(j)
            }
            // Created by an earlier attempt whose status write was lost.
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(api.get(&name).await?),
            Err(e) => {
                let msg = format!("Error creating job: {}", api_message(&e));
                self.event(cj, EventType::Warning, "FailedCreate", &msg)
                    .await;
                Err(e.into())
            }
        }
    }

    async fn delete_job(&self, cj: &CronJob, job: &Job, reason: &str) -> Result<()> {
        let api: Api<Job> = Api::namespaced(
            self.ctx.client.clone(),
            &job.namespace().unwrap_or_default(),
        );
        let dp = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..Default::default()
        };
        match api.delete(&job.name_any(), &dp).await {
            Ok(_) => {
                let msg = format!("Deleted job {}", job.name_any());
                self.event(cj, EventType::Normal, reason, &msg).await;
                Ok(())
            }
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn update_status(&self, cj: &CronJob, status: CronJobStatus) -> Result<()> {
        if cj.status.as_ref().unwrap_or(&CronJobStatus::default()) == &status {
            return Ok(());
        }
        let api: Api<CronJob> =
            Api::namespaced(self.ctx.client.clone(), &cj.namespace().unwrap_or_default());
        let mut obj = cj.clone();
        obj.status = Some(status);
        match api
            .replace_status(&cj.name_any(), &PostParams::default(), &obj)
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn event(&self, cj: &CronJob, kind: EventType, reason: &str, message: &str) {
        self.ctx
            .events
            .publish(COMPONENT, &cj.object_ref(&()), kind, reason, message)
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> jiff::Timestamp {
        s.parse().expect("timestamp")
    }

    #[test]
    fn next_times_in_utc_and_in_a_zone() {
        let every5 = Schedule::parse("*/5 * * * *", Some("UTC")).expect("parse");
        assert_eq!(
            every5.next_after(t("2026-11-27T10:02:30Z")),
            Some(t("2026-11-27T10:05:00Z"))
        );
        assert_eq!(
            every5.next_after(t("2026-11-27T10:05:00Z")),
            Some(t("2026-11-27T10:10:00Z")),
            "strictly after"
        );
        // 09:00 in New York in winter is 14:00 UTC.
        let ny = Schedule::parse("0 9 * * *", Some("America/New_York")).expect("parse");
        assert_eq!(
            ny.next_after(t("2026-11-27T10:00:00Z")),
            Some(t("2026-11-27T14:00:00Z"))
        );
        let hourly = Schedule::parse("@hourly", Some("UTC")).expect("parse");
        assert_eq!(
            hourly.next_after(t("2026-11-27T10:59:59Z")),
            Some(t("2026-11-27T11:00:00Z"))
        );
        assert!(Schedule::parse("61 * * * *", None).is_err());
        // What upstream also accepts: @midnight, @every, and a TZ= prefix.
        let midnight = Schedule::parse("@midnight", Some("UTC")).expect("parse");
        assert_eq!(
            midnight.next_after(t("2026-11-27T10:00:00Z")),
            Some(t("2026-11-28T00:00:00Z"))
        );
        let every = Schedule::parse("@every 1h30m", None).expect("parse");
        assert_eq!(
            every.next_after(t("2026-11-27T10:00:00.5Z")),
            Some(t("2026-11-27T11:30:00Z"))
        );
        let tokyo = Schedule::parse("TZ=Asia/Tokyo 0 9 * * *", None).expect("parse");
        assert_eq!(
            tokyo.next_after(t("2026-11-27T10:00:00Z")),
            Some(t("2026-11-28T00:00:00Z"))
        );
        assert!(Schedule::parse("* * * * *", Some("Mars/Olympus")).is_err());
    }

    #[test]
    fn most_recent_missed_time() {
        let every_min = Schedule::parse("* * * * *", Some("UTC")).expect("parse");
        let (last, n) = every_min.most_recent(t("2026-11-27T10:00:30Z"), t("2026-11-27T10:03:10Z"));
        assert_eq!((last, n), (Some(t("2026-11-27T10:03:00Z")), 3));
        let (last, n) = every_min.most_recent(t("2026-11-27T10:03:00Z"), t("2026-11-27T10:03:59Z"));
        assert_eq!((last, n), (None, 0));
        // Days of missed runs: still the latest one, without walking every minute.
        let (last, n) = every_min.most_recent(t("2026-11-20T00:00:00Z"), t("2026-11-27T10:03:10Z"));
        assert_eq!(last, Some(t("2026-11-27T10:03:00Z")));
        assert!(n > MAX_MISSED);
    }
}
