//! `skiff reset`: removes every container, pod sandbox, the pod network and the service proxy's
//! nftables table of a data dir, so a node can be wiped (like k3s's killall script). Images and
//! cluster state are kept.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

pub fn run(data_dir: &Path) -> anyhow::Result<ExitCode> {
    let runtime = crate::container_cmd::open_runtime(data_dir)?;
    let mut failed = 0;
    for container in runtime.list()? {
        if let Err(e) = runtime.remove(&container.id, true) {
            eprintln!("skiff: removing container {}: {e}", container.name);
            failed += 1;
        }
    }
    skiff_agent::proxy::remove_table(data_dir).context("removing the service proxy's table")?;
    if let Some(net) =
        skiff_net::PodNetwork::existing(data_dir).context("reading the pod network")?
    {
        net.teardown_all()
            .context("removing pod sandboxes and the bridge")?;
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
