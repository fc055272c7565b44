//! Pod workers: a watch on the pods bound to this node feeds one level-triggered worker task
//! per pod uid (plus a resync tick for probes and status). A worker sets up the sandbox, runs
//! init and app containers with restart back-off, runs probes, reports status through
//! pods/status when it changed, and terminates pods gracefully. Runtime containers are named
//! `k8s_<container>_<pod>_<ns>_<uid8>_<attempt>`, so a restarted agent finds (re-adopts) them
//! and derives restart counts from the attempt numbers. Upstream semantics: §3, §9.
//!
//! Workers reach containers, sandboxes and images only through [`PodRuntime`] (`runtime`):
//! `manager` owns the pod watch and the worker tasks, `index` the runtime names and the
//! agent API's container lookup, `worker` the sync loop, `image` pulls and their back-off,
//! `probes` the probe schedule, `status` the PodStatus, `termination` graceful stop and
//! cleanup; `build`, `etc` and `volumes` turn a pod spec into container specs and files.

mod build;
mod ephemeral;
mod etc;
mod image;
mod index;
mod manager;
mod probes;
mod runtime;
mod status;
mod termination;
#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;
mod tokens;
mod volumes;
mod worker;

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;

pub use index::{parse_runtime_name, runtime_name, PodIndex, RuntimeName};
pub use manager::PodManager;
pub use runtime::{NodeRuntime, PodRuntime};
pub use termination::remove_all_pod_dirs;
pub use volumes::{disk_usage, remove_provisioned_dir};

const RESYNC: Duration = Duration::from_secs(1);
const CLEANUP_EVERY: Duration = Duration::from_secs(30);
const BACKOFF_INITIAL: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// Grace for containers of pods that vanished from the API (force-deleted).
const ORPHAN_GRACE: Duration = Duration::from_secs(2);

fn parse_ts(s: &str) -> Option<jiff::Timestamp> {
    s.parse().ok()
}

fn names(pod: &Pod) -> (String, String) {
    (
        pod.metadata.name.clone().unwrap_or_default(),
        pod.metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into()),
    )
}
