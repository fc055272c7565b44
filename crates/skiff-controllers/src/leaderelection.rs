//! Leader election on `coordination.k8s.io/v1` Leases, with client-go's semantics and timings,
//! so that when several `skiff server`s share one store the controllers (Lease
//! `kube-system/kube-controller-manager`) and the scheduler (`kube-system/kube-scheduler`) run in
//! one process at a time.
//!
//! - A candidate takes the Lease when it does not exist, when its holder is empty (released),
//!   or when the Lease record it last observed has not changed for the record's
//!   `leaseDurationSeconds` measured by the candidate's OWN monotonic clock: no `renewTime` of
//!   another machine is ever compared with the local time.
//! - Taking over from another holder sets `acquireTime` and increments `leaseTransitions`.
//! - The leader renews every retry period; when renewing has not succeeded within the renew
//!   deadline it stops leading (its work future is dropped, which stops the loops) and goes back
//!   to campaigning. The process never exits.
//! - On shutdown the leader releases the Lease (empty holder, 1 s duration) so a peer takes over
//!   at once.
//!
//! Every write is an update with the observed resourceVersion, so two candidates can never both
//! win the same round.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use rand::Rng;
use tokio::sync::watch;
use tokio::time::Instant;

/// The namespace of the components' Leases.
pub const NAMESPACE: &str = "kube-system";
/// The controller manager's Lease.
pub const CONTROLLER_MANAGER_LEASE: &str = "kube-controller-manager";
/// The scheduler's Lease.
pub const SCHEDULER_LEASE: &str = "kube-scheduler";

/// client-go's JitterUntil factor for the acquire loop.
const JITTER_FACTOR: f64 = 1.2;

/// Lease timings (kube-controller-manager's `--leader-elect-*` flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timings {
    /// How long a non-leader waits after the last observed change before taking over (15 s).
    pub lease_duration: Duration,
    /// How long the leader keeps retrying a renewal before it stops leading (10 s).
    pub renew_deadline: Duration,
    /// Time between attempts to acquire or renew (2 s).
    pub retry_period: Duration,
}

impl Default for Timings {
    fn default() -> Self {
        Timings {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// Timings that would let two leaders overlap.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidTimings {
    #[error("the lease duration ({lease:?}) must be greater than the renew deadline ({renew:?})")]
    RenewNotBelowLease { lease: Duration, renew: Duration },
    #[error("the renew deadline ({renew:?}) must be greater than the retry period ({retry:?})")]
    RetryNotBelowRenew { renew: Duration, retry: Duration },
    #[error("the lease duration must be at least one second")]
    LeaseTooShort,
    #[error("the retry period must not be zero")]
    ZeroRetry,
}

impl Timings {
    /// client-go's checks: lease > renew deadline > retry period (scaled by the jitter), so a
    /// leader that cannot renew stops before anyone may take over.
    pub fn validate(&self) -> Result<(), InvalidTimings> {
        if self.lease_duration < Duration::from_secs(1) {
            return Err(InvalidTimings::LeaseTooShort);
        }
        if self.retry_period.is_zero() {
            return Err(InvalidTimings::ZeroRetry);
        }
        if self.lease_duration <= self.renew_deadline {
            return Err(InvalidTimings::RenewNotBelowLease {
                lease: self.lease_duration,
                renew: self.renew_deadline,
            });
        }
        if self.renew_deadline <= self.retry_period.mul_f64(JITTER_FACTOR) {
            return Err(InvalidTimings::RetryNotBelowRenew {
                renew: self.renew_deadline,
                retry: self.retry_period,
            });
        }
        Ok(())
    }

    /// The Lease's `leaseDurationSeconds`: whole seconds rounded UP (standbys go by the
    /// record, so rounding down could let one take over before this leader stops), at least 1.
    fn lease_seconds(&self) -> i32 {
        let mut secs = self.lease_duration.as_secs();
        if self.lease_duration.subsec_nanos() > 0 {
            secs = secs.saturating_add(1);
        }
        i32::try_from(secs.max(1)).unwrap_or(i32::MAX)
    }
}

/// `<hostname>_<uuid>`, upstream's holder identity (unique even for two processes on one host).
pub fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_string());
    format!("{host}_{}", uuid::Uuid::new_v4())
}

/// One election.
#[derive(Debug, Clone)]
pub struct Election {
    pub namespace: String,
    /// The Lease's name (`kube-controller-manager`, `kube-scheduler`).
    pub name: String,
    /// This candidate's holderIdentity.
    pub identity: String,
    /// The event source (`kube-controller-manager`, `default-scheduler`).
    pub component: String,
    pub timings: Timings,
}

/// Whether this candidate leads now (for tests and health).
#[derive(Clone)]
pub struct Leading(watch::Receiver<bool>);

impl Leading {
    pub fn get(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once leadership equals `want`.
    pub async fn wait(&mut self, want: bool) {
        let _ = self.0.wait_for(|v| *v == want).await;
    }
}

/// The record last observed and when (by this process's monotonic clock).
struct Observed {
    spec: LeaseSpec,
    at: Instant,
}

struct Elector {
    api: Api<Lease>,
    /// `leader_election_master_status{name=<lease>}`.
    gauge: skiff_client::metrics::prometheus_client::metrics::gauge::Gauge,
    election: Election,
    events: skiff_client::events::Recorder,
    observed: Option<Observed>,
    leading: watch::Sender<bool>,
}

/// A candidate in one election; see [`candidate`].
pub struct Candidate {
    elector: Elector,
}

/// A candidate for `election`, and the view of whether it leads.
pub fn candidate(client: kube::Client, election: Election) -> (Candidate, Leading) {
    let (leading, rx) = watch::channel(false);
    let gauge = skiff_client::metrics::LEADER_ELECTION
        .get_or_create(&skiff_client::metrics::LeaseName {
            name: election.name.clone(),
        })
        .clone();
    let elector = Elector {
        gauge,
        api: Api::namespaced(client.clone(), &election.namespace),
        events: skiff_client::events::Recorder::new(client),
        election,
        observed: None,
        leading,
    };
    (Candidate { elector }, Leading(rx))
}

impl Candidate {
    /// Runs the election until `shutdown`: campaigns, runs `lead()` while leading (the future
    /// is dropped the moment leadership is lost, which must stop everything it started),
    /// campaigns again after a loss, and releases the Lease at shutdown.
    pub async fn run<F, Fut>(self, mut lead: F, shutdown: impl Future<Output = ()>)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = ()>,
    {
        let mut elector = self.elector;
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => {
                    // An attempt cut short may still have won on the server: give it back.
                    elector.release().await;
                    return;
                }
                _ = elector.acquire() => {}
            }
            let _ = elector.leading.send(true);
            elector.gauge.set(1);
            tracing::info!(
                lease = %elector.election.name,
                identity = %elector.election.identity,
                "successfully acquired lease; starting"
            );
            // Best effort, in the background: the components start at once.
            tokio::spawn(elector.became_leader_event());
            let mut work = Box::pin(lead());
            enum Outcome {
                Shutdown,
                Lost,
                Ended,
            }
            let outcome = tokio::select! {
                _ = &mut shutdown => Outcome::Shutdown,
                _ = elector.renew_until_lost() => Outcome::Lost,
                _ = &mut work => Outcome::Ended,
            };
            // Stop the component's loops before anything else.
            drop(work);
            let _ = elector.leading.send(false);
            elector.gauge.set(0);
            match outcome {
                Outcome::Shutdown => {
                    elector.release().await;
                    return;
                }
                Outcome::Lost => tracing::warn!(
                    lease = %elector.election.name,
                    "leader election lost: stopped leading; campaigning again"
                ),
                Outcome::Ended => {
                    tracing::warn!(lease = %elector.election.name, "leading work ended; releasing");
                    elector.release().await;
                }
            }
        }
    }
}

impl Elector {
    fn me(&self) -> &str {
        &self.election.identity
    }

    /// Tries every retry period (with client-go's jitter) until the Lease is ours.
    async fn acquire(&mut self) {
        let timings = self.election.timings;
        loop {
            let attempt = tokio::time::timeout(timings.renew_deadline, self.try_acquire_or_renew());
            if matches!(attempt.await, Ok(true)) {
                return;
            }
            let jitter = rand::thread_rng().gen_range(0.0..=JITTER_FACTOR);
            let wait = timings.retry_period + timings.retry_period.mul_f64(jitter);
            tokio::time::sleep(wait).await;
        }
    }

    /// Renews every retry period; returns when a renewal has not succeeded within the renew
    /// deadline (client-go's renew loop).
    async fn renew_until_lost(&mut self) {
        let timings = self.election.timings;
        loop {
            let deadline = Instant::now() + timings.renew_deadline;
            let renewed = loop {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break false;
                }
                if matches!(
                    tokio::time::timeout(left, self.try_acquire_or_renew()).await,
                    Ok(true)
                ) {
                    break true;
                }
                let left = deadline.saturating_duration_since(Instant::now());
                tokio::time::sleep(timings.retry_period.min(left)).await;
            };
            if !renewed {
                return;
            }
            tokio::time::sleep(timings.retry_period).await;
        }
    }

    /// One round of client-go's tryAcquireOrRenew. Errors count as "not acquired".
    async fn try_acquire_or_renew(&mut self) -> bool {
        let now = MicroTime(jiff::Timestamp::now());
        let lease_seconds = self.election.timings.lease_seconds();
        let name = self.election.name.clone();
        let existing = match self.api.get_opt(&name).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(lease = %name, error = %e, "error retrieving the lease");
                return false;
            }
        };
        let Some(mut lease) = existing else {
            let spec = LeaseSpec {
                holder_identity: Some(self.me().to_string()),
                lease_duration_seconds: Some(lease_seconds),
                acquire_time: Some(now.clone()),
                renew_time: Some(now),
                lease_transitions: Some(0),
                ..Default::default()
            };
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(self.election.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(spec.clone()),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => {
                    self.observe(spec);
                    true
                }
                Err(e) => {
                    tracing::debug!(lease = %name, error = %e, "error creating the lease");
                    false
                }
            };
        };
        let old = lease.spec.clone().unwrap_or_default();
        // Only a change of the record restarts the clock: our own clock, never theirs.
        if self.observed.as_ref().map(|o| &o.spec) != Some(&old) {
            self.observe(old.clone());
        }
        let holder = old.holder_identity.as_deref().unwrap_or("");
        let i_hold = holder == self.me();
        if !holder.is_empty() && !i_hold && self.observed_valid() {
            tracing::trace!(lease = %name, holder, "lease is held by another candidate");
            return false;
        }
        let mut spec = LeaseSpec {
            holder_identity: Some(self.me().to_string()),
            lease_duration_seconds: Some(lease_seconds),
            renew_time: Some(now.clone()),
            ..old.clone()
        };
        if !i_hold {
            spec.acquire_time = Some(now);
            spec.lease_transitions = Some(old.lease_transitions.unwrap_or(0).saturating_add(1));
        }
        lease.spec = Some(spec.clone());
        match self
            .api
            .replace(&name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => {
                self.observe(spec);
                true
            }
            Err(e) => {
                tracing::debug!(lease = %name, error = %e, "failed to update the lease");
                false
            }
        }
    }

    fn observe(&mut self, spec: LeaseSpec) {
        self.observed = Some(Observed {
            spec,
            at: Instant::now(),
        });
    }

    /// The observed record is younger than its own leaseDurationSeconds, by our clock.
    fn observed_valid(&self) -> bool {
        let Some(o) = &self.observed else {
            return false;
        };
        let secs = o
            .spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .unwrap_or(self.election.timings.lease_duration.as_secs());
        o.at.elapsed() < Duration::from_secs(secs)
    }

    /// Gives the Lease up if we still hold it: empty holder and a 1 s duration, as client-go's
    /// ReleaseOnCancel, so a peer takes over at its next attempt.
    async fn release(&mut self) {
        let name = self.election.name.clone();
        let Ok(Some(mut lease)) = self.api.get_opt(&name).await else {
            return;
        };
        let old = lease.spec.clone().unwrap_or_default();
        if old.holder_identity.as_deref() != Some(self.me()) {
            return;
        }
        let now = MicroTime(jiff::Timestamp::now());
        lease.spec = Some(LeaseSpec {
            holder_identity: Some(String::new()),
            lease_duration_seconds: Some(1),
            acquire_time: Some(now.clone()),
            renew_time: Some(now),
            ..old
        });
        match self
            .api
            .replace(&name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => tracing::info!(lease = %name, "released the lease"),
            Err(e) => tracing::warn!(lease = %name, error = %e, "failed to release the lease"),
        }
    }

    /// Upstream's `LeaderElection` event on the Lease: "<identity> became leader".
    fn became_leader_event(&self) -> impl Future<Output = ()> + Send + 'static {
        let api = self.api.clone();
        let events = self.events.clone();
        let election = self.election.clone();
        async move {
            let uid = match api.get_opt(&election.name).await {
                Ok(Some(l)) => l.metadata.uid,
                _ => None,
            };
            let object = ObjectReference {
                api_version: Some("coordination.k8s.io/v1".into()),
                kind: Some("Lease".into()),
                namespace: Some(election.namespace.clone()),
                name: Some(election.name.clone()),
                uid,
                ..Default::default()
            };
            events
                .publish(
                    &election.component,
                    &object,
                    skiff_client::events::EventType::Normal,
                    "LeaderElection",
                    &format!("{} became leader", election.identity),
                )
                .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timings_must_nest() {
        assert_eq!(Timings::default().validate(), Ok(()));
        let t = |l, r, p| Timings {
            lease_duration: Duration::from_secs(l),
            renew_deadline: Duration::from_secs(r),
            retry_period: Duration::from_secs(p),
        };
        assert!(matches!(
            t(10, 10, 2).validate(),
            Err(InvalidTimings::RenewNotBelowLease { .. })
        ));
        assert!(matches!(
            t(15, 2, 2).validate(),
            Err(InvalidTimings::RetryNotBelowRenew { .. })
        ));
        assert_eq!(t(0, 0, 0).validate(), Err(InvalidTimings::LeaseTooShort));
        assert_eq!(t(3, 2, 0).validate(), Err(InvalidTimings::ZeroRetry));
    }

    #[test]
    fn lease_seconds_round_up() {
        let t = |ms| Timings {
            lease_duration: Duration::from_millis(ms),
            ..Timings::default()
        };
        assert_eq!(t(15_000).lease_seconds(), 15);
        assert_eq!(t(1_500).lease_seconds(), 2);
        assert_eq!(t(200).lease_seconds(), 1);
    }

    #[test]
    fn identity_is_host_and_uuid() {
        let id = default_identity();
        let (host, uuid) = id.rsplit_once('_').expect("underscore");
        assert!(!host.is_empty());
        assert_eq!(uuid.len(), 36);
        assert_ne!(id, default_identity());
    }
}
