//! Starts every controller on one kube client and keeps them running until shutdown.

use std::future::Future;

use crate::{Options, Result};

/// Runs all controllers (deployment, replicaset, scheduler, garbage collector, node lifecycle)
/// until `shutdown` resolves.
pub async fn run(
    client: kube::Client,
    options: Options,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let _ = (client, options, shutdown);
    todo!()
}
