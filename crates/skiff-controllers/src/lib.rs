//! skiff-controllers owns the control loops that run inside `skiff server` as ordinary API
//! clients (kube-runtime reflectors, de-duplicating work queues, level-triggered idempotent
//! reconcilers; never the store): Deployment, ReplicaSet, DaemonSet, StatefulSet, Job (with TTL after finished), CronJob, the scheduler, the garbage collector,
//! node lifecycle (lease-based health, taints, eviction), node IPAM (pod CIDRs), Endpoints and
//! EndpointSlices, the `default` ServiceAccount and the `kube-root-ca.crt` ConfigMap in every
//! namespace, ClusterRole aggregation, HorizontalPodAutoscalers. They run through `skiff_client`'s driver and event recorder,
//! and with several servers behind leader election on Leases (`leaderelection`, `run_elected`).
//! Upstream semantics: `shared/reference/k8s-semantics.md` §1, §2, §4.4, §5, §6, §7.

pub mod clusterrole_aggregation;
pub mod cronjob;
pub mod daemonset;
mod daemonset_history;
pub mod deployment;
pub mod disruption;
pub mod endpoints;
pub mod gc;
pub mod job;
pub mod leaderelection;
pub mod manager;
pub mod nodeipam;
pub mod nodelifecycle;
mod owned;
pub mod persistentvolume;
pub mod podautoscaler;
pub mod replicaset;
pub mod resourcequota;
pub mod scheduler;
pub mod serviceaccounts;
pub mod statefulset;
pub mod tokens;

use std::time::Duration;

pub use manager::{run, run_as, run_component, run_elected, Component, LeaderElect, Leadership};

/// Errors of a controller loop (a reconcile error is retried with back-off, never fatal).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// A controller's watch streams ended (it is restarted by the manager).
    #[error("{0} watch streams ended")]
    WatchEnded(&'static str),
    #[error("{0}")]
    Other(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// The message upstream's `err.Error()` would show for an API error (for events).
pub(crate) fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    }
}

/// Tunables, with upstream defaults.
#[derive(Debug, Clone)]
pub struct Options {
    /// A node whose Lease is older than this is Unknown (kube-controller-manager's
    /// --node-monitor-grace-period, 50 s).
    pub node_monitor_grace_period: Duration,
    /// How often node health is checked (--node-monitor-period, 5 s).
    pub node_monitor_period: Duration,
    /// Default tolerationSeconds for not-ready/unreachable NoExecute taints (300 s); applied to
    /// pods at admission by the API server.
    pub default_toleration_seconds: i64,
    /// The pod network nodes get their /24s from (100.64.0.0/16).
    pub cluster_cidr: skiff_semantics::cidr::Ipv4Net,
    /// The cluster CA (PEM) the root CA publisher puts in every namespace's
    /// `kube-root-ca.crt`; None publishes nothing.
    pub root_ca_pem: Option<String>,
    /// How often the ResourceQuota controller recounts every quota (None: only on changes).
    pub resource_quota_sync_period: Option<Duration>,
    /// How often each HorizontalPodAutoscaler is synced
    /// (--horizontal-pod-autoscaler-sync-period, 15 s).
    pub hpa_sync_period: Duration,
    /// Where the HPA controller reads pod usage (None: the resource metrics API).
    pub hpa_metrics: Option<podautoscaler::Source>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            node_monitor_grace_period: Duration::from_secs(50),
            node_monitor_period: Duration::from_secs(5),
            default_toleration_seconds: 300,
            cluster_cidr: skiff_semantics::cidr::Ipv4Net::new_assert(
                std::net::Ipv4Addr::new(100, 64, 0, 0),
                16,
            ),
            root_ca_pem: None,
            resource_quota_sync_period: Some(Duration::from_secs(300)),
            hpa_sync_period: podautoscaler::behavior::DEFAULT_SYNC_PERIOD,
            hpa_metrics: None,
        }
    }
}

/// What every controller gets.
pub struct Context {
    pub client: kube::Client,
    pub options: Options,
    pub events: skiff_client::events::Recorder,
}
