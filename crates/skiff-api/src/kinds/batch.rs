//! The batch group: v1 Job and CronJob.

pub(crate) mod cronjob;
pub(crate) mod job;
