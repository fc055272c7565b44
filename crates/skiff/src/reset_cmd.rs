//! `skiff reset`: kills every process in the data dir's cgroups and removes every container, pod sandbox, the pod network, the routes to other
//! nodes and the service proxy's nftables table of a data dir, so a node can be wiped (like k3s's killall script). Images and
//! cluster state are kept. Every step is attempted even when an earlier one fails.

use std::path::Path;
use std::process::ExitCode;

pub fn run(data_dir: &Path) -> anyhow::Result<ExitCode> {
    let mut failed = 0;
    let mut report = |what: &str, e: &dyn std::fmt::Display| {
        eprintln!("skiff: {what}: {e}");
        failed += 1;
    };
    if let Err(e) = skiff_agent::proxy::remove_table(data_dir) {
        report("removing the service proxy's table", &e);
    }
    if let Err(e) = skiff_agent::netpol::remove_table(data_dir) {
        report("removing the network policy table", &e);
    }
    if let Err(e) = skiff_agent::routes::remove_all(data_dir) {
        report("removing the routes to other nodes", &e);
    }
    match crate::container_cmd::open_runtime(data_dir) {
        Ok(runtime) => {
            match runtime.list() {
                Ok(containers) => {
                    for container in containers {
                        if let Err(e) = runtime.remove(&container.id, true) {
                            report(&format!("removing container {}", container.name), &e);
                        }
                    }
                }
                Err(e) => report("listing containers", &e),
            }
            // Whatever the state files say (corrupt, missing, a shim that died): every
            // process in the data dir's cgroups is killed and every container dir removed.
            if let Err(e) = runtime.purge_all() {
                report("killing what is left in the data dir's cgroups", &e);
            }
        }
        Err(e) => report("opening the runtime", &e),
    }
    // subPath staging mounts and secret/memory tmpfs mounts, then the pods' files.
    skiff_agent::pods::remove_all_pod_dirs(data_dir);
    match skiff_net::PodNetwork::existing(data_dir) {
        Ok(Some(net)) => {
            if let Err(e) = net.teardown_all() {
                report("removing pod sandboxes and the bridge", &e);
            }
        }
        Ok(None) => {}
        Err(e) => report("reading the pod network", &e),
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
