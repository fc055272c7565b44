//! Pod tests for OOM kills and liveness-probe restarts (real containers; need root).

mod pods_support;

use std::time::Duration;

use pods_support::{container_status, Harness};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs root: real pods (namespaces, overlayfs, cgroups, CNI)"]
async fn oom_killed() {
    let h = Harness::start().await;
    h.create_pod(
        "oom",
        json!({"restartPolicy": "Never", "containers": [{"name": "c", "image": "bb:1",
               "command": ["/bin/busybox", "dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=2"],
               "resources": {"limits": {"memory": "16Mi"}}}]}),
    )
    .await;
    let pod = h
        .wait_pod("oom", "terminated", Duration::from_secs(60), |p| {
            container_status(p, "c")
                .and_then(|c| c.state.as_ref())
                .is_some_and(|s| s.terminated.is_some())
        })
        .await;
    let term = container_status(&pod, "c")
        .and_then(|c| c.state.clone())
        .and_then(|s| s.terminated)
        .expect("terminated");
    assert_eq!(term.reason.as_deref(), Some("OOMKilled"), "{term:?}");
    assert_eq!(term.exit_code, 137);
    assert_eq!(pod.status.and_then(|s| s.phase).as_deref(), Some("Failed"));
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs root: real pods (namespaces, overlayfs, cgroups, CNI)"]
async fn liveness_failure_restarts() {
    let h = Harness::start().await;
    h.create_pod(
        "live",
        json!({"terminationGracePeriodSeconds": 1, "containers": [{"name": "c", "image": "bb:1",
               "command": ["/bin/sh", "-c", "touch /tmp/ok; sleep 3; rm /tmp/ok; sleep 600"],
               "livenessProbe": {"exec": {"command": ["cat", "/tmp/ok"]},
                                 "periodSeconds": 1, "failureThreshold": 1}}]}),
    )
    .await;
    h.wait_pod("live", "restart", Duration::from_secs(60), |p| {
        container_status(p, "c").is_some_and(|c| c.restart_count >= 1)
    })
    .await;
    h.shutdown().await;
}
