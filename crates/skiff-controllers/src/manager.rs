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
    nodeipam, nodelifecycle, persistentvolume, podautoscaler, replicaset, resourcequota, scheduler,
    serviceaccounts, statefulset, tokens, Context, Options, Result,
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

/// Like [`run`], with the scheduler on its own client (its own identity,
/// `system:kube-scheduler`) and every other controller on `controllers`
/// (`system:kube-controller-manager`).
pub async fn run_as(
    controllers_client: kube::Client,
    scheduler_client: kube::Client,
    options: Options,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let context = |client: kube::Client| {
        Arc::new(Context {
            events: skiff_client::events::Recorder::new(client.clone()),
            client,
            options: options.clone(),
        })
    };
    let ctx = context(controllers_client);
    let scheduler_ctx = context(scheduler_client);
    // A JoinSet aborts every supervisor when dropped, so nothing outlives `run`.
    let mut supervisors = tokio::task::JoinSet::new();
    for (name, start) in controllers() {
        let ctx = if name == "scheduler" {
            scheduler_ctx.clone()
        } else {
            ctx.clone()
        };
        supervisors.spawn(supervise(name, ctx, start));
    }
    shutdown.await;
    tracing::info!("controller manager shutting down");
    supervisors.shutdown().await;
    Ok(())
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
