//! `kubectl debug` on a real cluster (issue 13): an ephemeral container added to a running pod
//! shares the target container's PID namespace; `kubectl debug node/…` runs a pod with the
//! host's PID/network/IPC namespaces and the host's root at /host.
//! Real clusters: run as root with `cargo test -p skiff --test debug -- --ignored`.

mod common;

use std::time::Duration;

use common::cluster::{build_web_images_into, Cluster};

#[test]
#[ignore = "needs root: a cluster whose agent runs pods (namespaces, cgroups, CNI, nftables)"]
fn kubectl_debug_ephemeral_container_and_node() {
    assert!(nix::unistd::geteuid().is_root(), "cluster tests need root");
    let c = Cluster::start();
    build_web_images_into(&c.data_dir(), &c.dir.path().join("web"), &["v1"]);
    let manifest = c.dir.path().join("target.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: target\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: app\n    image: web:v1\n    command: [\"sleep\", \"3601\"]\n",
    )
    .expect("manifest");
    c.ok(&["apply", "-f", manifest.to_str().expect("utf-8")]);
    c.ok(&[
        "wait",
        "--for=condition=Ready",
        "pod/target",
        "--timeout=90s",
    ]);

    // The debugger joins app's PID namespace: its ps lists app's sleep.
    c.ok(&[
        "debug",
        "pod/target",
        "--image=web:v1",
        "--target=app",
        "-c",
        "debugger",
        "--",
        "sh",
        "-c",
        "ps",
    ]);
    let logs = c.eventually(
        &["logs", "target", "-c", "debugger"],
        "sleep 3601",
        Duration::from_secs(60),
    );
    assert!(logs.contains("ps"), "{logs}");
    let status = c.eventually(
        &[
            "get",
            "pod",
            "target",
            "-o",
            "jsonpath={.status.ephemeralContainerStatuses[0].state.terminated.reason}",
        ],
        "Completed",
        Duration::from_secs(30),
    );
    assert_eq!(status, "Completed");
    // Ephemeral containers never change the pod's readiness or phase.
    let phase = c.ok(&["get", "pod", "target", "-o", "jsonpath={.status.phase}"]);
    assert_eq!(phase, "Running");
    // Upstream validation: names are unique, ports are refused.
    let err = c.fails(&[
        "debug",
        "pod/target",
        "--image=web:v1",
        "-c",
        "app",
        "--",
        "true",
    ]);
    assert!(err.contains("Duplicate value"), "{err}");

    // kubectl debug node/…: host namespaces and the host's root at /host.
    let node = c.ok(&["get", "nodes", "-o", "jsonpath={.items[0].metadata.name}"]);
    let out = c.ok(&[
        "debug",
        &format!("node/{node}"),
        "--image=web:v1",
        "--",
        "sh",
        "-c",
        "cat /host/etc/hostname; ps -o comm",
    ]);
    let pod = out
        .split_whitespace()
        .find(|w| w.starts_with("node-debugger-"))
        .unwrap_or_else(|| panic!("no debugging pod in {out:?}"))
        .to_string();
    let host = std::fs::read_to_string("/etc/hostname").expect("hostname");
    let logs = c.eventually(&["logs", &pod], host.trim(), Duration::from_secs(90));
    // hostPID: the host's processes, the skiff server among them.
    assert!(logs.lines().any(|l| l.trim() == "skiff"), "{logs}");
    c.ok(&["delete", "pod", &pod, "--wait=false"]);
    c.ok(&["delete", "pod", "target", "--wait=true", "--timeout=60s"]);
}
