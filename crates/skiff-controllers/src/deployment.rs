//! TODO

use std::sync::Arc;

use crate::{Context, Result};

/// Runs this controller until the process stops (errors are retried inside).
pub async fn run(ctx: Arc<Context>) -> Result<()> {
    let _ = ctx;
    todo!()
}
