//! Starts every controller on one kube client and keeps them running until shutdown.
//!
//! Each controller runs in its own task under a supervisor: if it returns (error or not) or
//! panics, the failure is logged and the controller is restarted after an exponential back-off
//! (1 s doubling to 30 s, reset after a minute of healthy running) while the others keep going.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::task::AbortOnDropHandle;

use crate::{
    clusterrole_aggregation, cronjob, daemonset, deployment, disruption, endpoints, gc, job,
    leaderelection, nodeipam, nodelifecycle, persistentvolume, podautoscaler, replicaset,
    resourcequota, scheduler, serviceaccounts, statefulset, tokens, Context, Options, Result,
};

type ControllerFuture = Pin<Box<dyn Future<Output = Result<()>> + Send>>;
type Start = fn(Arc<Context>) -> ControllerFuture;

const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A controller that ran this long before failing is considered healthy: back-off resets.
const HEALTHY_RUN: Duration = Duration::from_secs(60);

/// The controllers, by the name used in logs.
fn controllers() -> Vec<(&'static str, Start)> {
    vec![
        ("cronjob", |ctx| Box::pin(cronjob::run(ctx))),
        ("daemonset", |ctx| Box::pin(daemonset::run(ctx))),
        ("deployment", |ctx| Box::pin(deployment::run(ctx))),
        ("disruption", |ctx| Box::pin(disruption::run(ctx))),
        ("job", |ctx| Box::pin(job::run(ctx))),
        ("replicaset", |ctx| Box::pin(replicaset::run(ctx))),
        ("replicationcontroller", |ctx| {
            Box::pin(replicaset::run_replication_controllers(ctx))
        }),
        ("scheduler", |ctx| Box::pin(scheduler::run(ctx))),
        ("persistentvolume", |ctx| {
            Box::pin(persistentvolume::run(ctx))
        }),
        ("garbage-collector", |ctx| Box::pin(gc::run(ctx))),
        ("node-lifecycle", |ctx| Box::pin(nodelifecycle::run(ctx))),
        ("node-ipam", |ctx| Box::pin(nodeipam::run(ctx))),
        ("endpoints", |ctx| Box::pin(endpoints::run(ctx))),
        ("serviceaccount", |ctx| Box::pin(serviceaccounts::run(ctx))),
        ("root-ca-cert-publisher", |ctx| {
            Box::pin(serviceaccounts::run_root_ca_publisher(ctx))
        }),
        ("serviceaccount-token", |ctx| Box::pin(tokens::run(ctx))),
        ("clusterrole-aggregation", |ctx| {
            Box::pin(clusterrole_aggregation::run(ctx))
        }),
        ("statefulset", |ctx| Box::pin(statefulset::run(ctx))),
        ("resourcequota", |ctx| Box::pin(resourcequota::run(ctx))),
        ("horizontal-pod-autoscaler", |ctx| {
            Box::pin(podautoscaler::run(ctx))
        }),
    ]
}

/// Runs all controllers (deployment, replicaset, scheduler, garbage collector, node lifecycle)
/// on one client until `shutdown` resolves.
pub async fn run(
    client: kube::Client,
    options: Options,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    run_as(client.clone(), client, options, shutdown).await
}

/// The two separately elected components of a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    /// Every controller but the scheduler (`system:kube-controller-manager`).
    ControllerManager,
    /// The scheduler (`system:kube-scheduler`).
    Scheduler,
}

impl Component {
    fn lease(self) -> &'static str {
        match self {
            Component::ControllerManager => leaderelection::CONTROLLER_MANAGER_LEASE,
            Component::Scheduler => leaderelection::SCHEDULER_LEASE,
        }
    }

    /// The event source of its LeaderElection events (upstream's component names).
    fn event_source(self) -> &'static str {
        match self {
            Component::ControllerManager => "kube-controller-manager",
            Component::Scheduler => "default-scheduler",
        }
    }
}

/// Like [`run`], with the scheduler on its own client (its own identity,
/// `system:kube-scheduler`) and every other controller on `controllers`
/// (`system:kube-controller-manager`).
pub async fn run_as(
    controllers_client: kube::Client,
    scheduler_client: kube::Client,
    options: Options,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let controllers = run_component(Component::ControllerManager, controllers_client, &options);
    let scheduler = run_component(Component::Scheduler, scheduler_client, &options);
    tokio::select! {
        _ = shutdown => {}
        _ = controllers => {}
        _ = scheduler => {}
    }
    tracing::info!("controller manager shutting down");
    Ok(())
}

/// Runs one component's controllers until the returned future is dropped (which aborts them
/// all); it never completes on its own.
pub fn run_component(
    component: Component,
    client: kube::Client,
    options: &Options,
) -> impl Future<Output = ()> + Send + 'static {
    let ctx = Arc::new(Context {
        events: skiff_client::events::Recorder::new(client.clone()),
        client,
        options: options.clone(),
    });
    async move {
        // A JoinSet aborts every supervisor when dropped, so nothing outlives this future.
        let mut supervisors = tokio::task::JoinSet::new();
        for (name, start) in controllers() {
            if (name == "scheduler") == (component == Component::Scheduler) {
                supervisors.spawn(supervise(name, ctx.clone(), start));
            }
        }
        while supervisors.join_next().await.is_some() {}
        std::future::pending::<()>().await
    }
}

/// Leader election settings for [`run_elected`].
#[derive(Debug, Clone)]
pub struct LeaderElect {
    /// holderIdentity (`<hostname>_<uuid>`, see [`leaderelection::default_identity`]).
    pub identity: String,
    pub timings: leaderelection::Timings,
}

/// Whether this process leads each component.
#[derive(Clone)]
pub struct Leadership {
    pub controller_manager: leaderelection::Leading,
    pub scheduler: leaderelection::Leading,
}

/// The controllers and the scheduler, each behind its own leader election (Leases
/// `kube-system/kube-controller-manager` and `kube-system/kube-scheduler`): a component runs
/// only while this process holds its Lease, stops when the Lease is lost and campaigns again.
/// The returned future runs until `shutdown`, then stops the components and releases the
/// Leases; dropping it instead stops everything without releasing (as a crash would).
pub fn run_elected(
    controllers_client: kube::Client,
    scheduler_client: kube::Client,
    options: Options,
    elect: LeaderElect,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> (
    Leadership,
    impl Future<Output = Result<()>> + Send + 'static,
) {
    let stop = tokio_util::sync::CancellationToken::new();
    let elect_one = |component: Component, client: kube::Client| {
        let (candidate, leading) = leaderelection::candidate(
            client.clone(),
            leaderelection::Election {
                namespace: leaderelection::NAMESPACE.to_string(),
                name: component.lease().to_string(),
                identity: elect.identity.clone(),
                component: component.event_source().to_string(),
                timings: elect.timings,
            },
        );
        let options = options.clone();
        let stop = stop.clone();
        let run = async move {
            candidate
                .run(
                    move || run_component(component, client.clone(), &options),
                    stop.cancelled_owned(),
                )
                .await
        };
        (leading, run)
    };
    let (controller_manager, cm_run) = elect_one(Component::ControllerManager, controllers_client);
    let (scheduler, sched_run) = elect_one(Component::Scheduler, scheduler_client);
    let run = async move {
        // Dropping this future (without shutdown) aborts both elections and their components
        // without releasing anything, like a crash.
        let runs = [
            AbortOnDropHandle::new(tokio::spawn(cm_run)),
            AbortOnDropHandle::new(tokio::spawn(sched_run)),
        ];
        shutdown.await;
        tracing::info!("controller manager shutting down; releasing leases");
        stop.cancel();
        for run in runs {
            let _ = run.await;
        }
        Ok(())
    };
    (
        Leadership {
            controller_manager,
            scheduler,
        },
        run,
    )
}

/// Runs one controller forever, restarting it with back-off when it stops or panics.
async fn supervise(name: &'static str, ctx: Arc<Context>, start: Start) {
    let mut backoff = INITIAL_BACKOFF;
    loop {
        let started = Instant::now();
        tracing::debug!(controller = name, "starting controller");
        // A separate task, so a panic is caught by the JoinHandle instead of killing us.
        // Aborted when dropped, so aborting a supervisor also stops its controller.
        let task = AbortOnDropHandle::new(tokio::spawn(start(ctx.clone())));
        match task.await {
            Ok(Ok(())) => tracing::warn!(controller = name, "controller exited; restarting"),
            Ok(Err(e)) => {
                tracing::error!(controller = name, error = %e, "controller failed; restarting")
            }
            Err(e) if e.is_panic() => {
                tracing::error!(controller = name, "controller panicked; restarting")
            }
            Err(e) => {
                tracing::error!(controller = name, error = %e, "controller task ended; restarting")
            }
        }
        if started.elapsed() >= HEALTHY_RUN {
            backoff = INITIAL_BACKOFF;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}
