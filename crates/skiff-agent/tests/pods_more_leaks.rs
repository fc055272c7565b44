//! 100 create/delete cycles of a small pod leave nothing behind: no containers, sandboxes,
//! namespace or overlay mounts, IPAM reservations, bridge ports or cgroups. Real containers;
//! need root, busybox and the CNI plugins.

mod pods_support;

use std::time::{Duration, Instant};

use kube::api::DeleteParams;
use pods_support::{container_status, Harness};
use serde_json::json;

const CYCLES: usize = 100;
const BATCH: usize = 10;

/// Everything of the data dir that should be gone once no pod exists (empty = clean), as
/// (kind, description).
fn leftovers(h: &Harness) -> Vec<(&'static str, String)> {
    let data = &h.config.data_dir;
    let mut out = Vec::new();
    for c in h.runtime().list().unwrap_or_default() {
        out.push((
            "container",
            format!("{} ({:?}, pid {:?})", c.name, c.status, c.pid),
        ));
    }
    let net = skiff_net::PodNetwork::new(skiff_net::NetConfig {
        data_dir: data.clone(),
        pod_cidr: h.cidr.clone(),
        cni_bin_dir: None,
    })
    .expect("pod network");
    for uid in net.list_sandboxes().unwrap_or_default() {
        out.push(("sandbox", uid));
    }
    for dir in [data.join("net/sandboxes"), data.join("agent/pods")] {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            out.push(("dir", e.path().display().to_string()));
        }
    }
    let root = data.to_string_lossy().into_owned();
    for line in std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
    {
        // "<id> <parent> <maj:min> <root> <mountpoint> <opts> [optional...] - <fstype> ..."
        let fstype = line.split(" - ").nth(1).and_then(|s| s.split(' ').next());
        let point = line.split(' ').nth(4).unwrap_or_default();
        if point.starts_with(&root) {
            match fstype {
                Some("nsfs") => out.push(("nsfs", line.to_string())),
                Some("overlay") => out.push(("overlay", line.to_string())),
                _ => {}
            }
        }
    }
    let ipam = net.ipam_dir();
    for e in std::fs::read_dir(&ipam).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.parse::<std::net::IpAddr>().is_ok() {
            out.push(("ipam", name));
        }
    }
    let brif = format!("/sys/class/net/{}/brif", net.bridge_name());
    for e in std::fs::read_dir(&brif).into_iter().flatten().flatten() {
        out.push(("brif", e.file_name().to_string_lossy().into_owned()));
    }
    for cg in skiff_runtime::leftover_cgroups(data) {
        out.push(("cgroup", cg.display().to_string()));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs root: real pods (namespaces, overlayfs, cgroups, CNI)"]
async fn hundred_cycles_leave_nothing_behind() {
    let h = Harness::start().await;
    let started = Instant::now();
    let mut ips = std::collections::HashSet::new();
    for batch in 0..CYCLES / BATCH {
        let names: Vec<String> = (0..BATCH).map(|i| format!("cyc-{batch}-{i}")).collect();
        futures::future::join_all(names.iter().map(|n| {
            h.create_pod(
                n,
                json!({"terminationGracePeriodSeconds": 2, "containers": [{"name": "c", "image": "bb:1",
                       "command": ["/bin/sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done"]}]}),
            )
        }))
        .await;
        let pods = futures::future::join_all(names.iter().map(|n| {
            h.wait_pod(n, "running", Duration::from_secs(90), |p| {
                container_status(p, "c")
                    .and_then(|s| s.state.as_ref())
                    .is_some_and(|s| s.running.is_some())
            })
        }))
        .await;
        // While the batch runs, every probe below sees it (so an empty result later means
        // "cleaned up", not "looked in the wrong place").
        let live = leftovers(&h);
        let count = |k: &str| live.iter().filter(|(kind, _)| *kind == k).count();
        assert_eq!(count("container"), BATCH, "{live:#?}");
        assert_eq!(count("sandbox"), BATCH, "{live:#?}");
        assert_eq!(count("ipam"), BATCH, "{live:#?}");
        assert_eq!(count("brif"), BATCH, "{live:#?}");
        assert!(count("nsfs") >= 3 * BATCH, "{live:#?}");
        assert!(count("cgroup") >= 1, "{live:#?}");
        for (_, c) in live.iter().filter(|(k, _)| *k == "container") {
            assert!(c.contains("Running"), "{c}");
        }
        if batch == 0 {
            eprintln!("overlay mounts while running: {}", count("overlay"));
        }
        for p in &pods {
            let ip = p.status.as_ref().and_then(|s| s.pod_ip.clone());
            assert!(ip.is_some(), "running pod without IP");
            ips.insert(ip);
        }
        // Every other batch is force-deleted (grace 0): the agent only sees the pod vanish.
        let grace = if batch % 2 == 0 { 1 } else { 0 };
        futures::future::join_all(names.iter().map(|n| {
            let pods = h.pods();
            async move {
                pods.delete(n, &DeleteParams::default().grace_period(grace))
                    .await
                    .expect("delete")
            }
        }))
        .await;
        futures::future::join_all(
            names
                .iter()
                .map(|n| h.wait_gone(n, Duration::from_secs(60))),
        )
        .await;
        eprintln!("batch {batch} done at {:?}", started.elapsed());
    }
    // Force-deleted pods are torn down asynchronously: give the agent a moment.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut left = leftovers(&h);
    while !left.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(500)).await;
        left = leftovers(&h);
    }
    eprintln!(
        "{CYCLES} cycles in {:?}, {} distinct pod IPs",
        started.elapsed(),
        ips.len()
    );
    assert!(
        left.is_empty(),
        "leftovers after {CYCLES} cycles: {left:#?}"
    );
    h.shutdown().await;
}
