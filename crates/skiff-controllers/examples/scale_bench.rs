//! Control-plane reaction benchmark (issue 4): an in-process API server + controllers with 10
//! fake nodes (the test harness's stand-in kubelets). Prints the time from scaling a Deployment
//! 0 → 1000 replicas to all pods bound (and Ready), and from deleting 3 of 9 pods to 9 Ready again.
//!
//! Run: `cargo run --release -p skiff-controllers --example scale_bench`

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

fn ready(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none()
        && p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

async fn counts(pods: &Api<Pod>) -> (usize, usize, usize) {
    let list = match pods.list(&ListParams::default().labels("app=bench")).await {
        Ok(l) => l.items,
        Err(_) => return (0, 0, 0),
    };
    let live: Vec<&Pod> = list
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    let bound = live
        .iter()
        .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some())
        .count();
    let ready = live.iter().filter(|p| ready(p)).count();
    (live.len(), bound, ready)
}

async fn scale(deploys: &Api<Deployment>, replicas: i32) {
    deploys
        .patch_scale(
            "bench",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": replicas}})),
        )
        .await
        .expect("scale");
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let c = common::TestCluster::start().await;
    let mut nodes = Vec::new();
    for i in 0..10 {
        nodes.push(
            c.add_node_with(common::NodeSpec::new(&format!("node-{i}")))
                .await,
        );
    }
    let deploys: Api<Deployment> = Api::namespaced(c.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "bench"},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "bench"}},
                 "template": {"metadata": {"labels": {"app": "bench"}},
                              "spec": {"containers": [{"name": "c", "image": "web:v1"}]}}}
    }))
    .expect("deployment");
    deploys
        .create(&PostParams::default(), &d)
        .await
        .expect("create");

    let start = Instant::now();
    scale(&deploys, 1000).await;
    let (mut bound_at, mut ready_at) = (None, None);
    while ready_at.is_none() && start.elapsed() < Duration::from_secs(600) {
        let (_, bound, ready) = counts(&pods).await;
        if bound >= 1000 && bound_at.is_none() {
            bound_at = Some(start.elapsed());
        }
        if ready >= 1000 {
            ready_at = Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("scale 0 -> 1000 replicas (10 fake nodes)");
    println!(
        "  all pods bound : {:>8.2} s",
        bound_at.map_or(f64::NAN, |d| d.as_secs_f64())
    );
    println!(
        "  all pods Ready : {:>8.2} s",
        ready_at.map_or(f64::NAN, |d| d.as_secs_f64())
    );

    scale(&deploys, 9).await;
    while counts(&pods).await != (9, 9, 9) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut samples = Vec::new();
    for _ in 0..5 {
        let list = pods
            .list(&ListParams::default().labels("app=bench"))
            .await
            .expect("list");
        let start = Instant::now();
        for p in list.items.iter().take(3) {
            if let Some(name) = &p.metadata.name {
                let _ = pods.delete(name, &DeleteParams::default()).await;
            }
        }
        loop {
            let (live, _, ready) = counts(&pods).await;
            if live == 9 && ready == 9 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        samples.push(start.elapsed().as_secs_f64() * 1000.0);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    samples.sort_by(f64::total_cmp);
    println!("delete 3 of 9 pods -> 9 Ready again (5 runs)");
    println!(
        "  median         : {:>8.0} ms (min {:.0}, max {:.0})",
        samples[2], samples[0], samples[4]
    );
    drop(nodes);
    let bound = bound_at.map_or(f64::NAN, |d| d.as_secs_f64());
    summary(
        "controllers",
        "scale 0 -> 1000, all bound (fake nodes)",
        bound,
        "s",
    );
    summary(
        "controllers",
        "delete 3 of 9 -> 9 Ready, median",
        samples[2],
        "ms",
    );
}

/// Appends a row to bench/run's summary table (see bench/summary.py).
fn summary(bench: &str, figure: &str, ours: f64, unit: &str) {
    let Ok(path) = std::env::var("SKIFF_BENCH_SUMMARY") else {
        return;
    };
    let row = json!({"bench": bench, "figure": figure, "ours": (ours * 100.0).round() / 100.0,
        "unit": unit, "peer": null, "peer_value": null, "ratio": null, "target": null});
    if let Ok(mut f) = std::fs::OpenOptions::new().append(true).open(path) {
        use std::io::Write;
        let _ = writeln!(f, "{row}");
    }
}
