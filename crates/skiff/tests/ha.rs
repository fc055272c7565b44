//! High availability end to end, with real processes only: a 3-member etcd cluster (Debian's
//! `etcd-server`), two `skiff server`s sharing it (the second joins with the first's token),
//! two agents that know both servers, the real kubectl and a load generator through a NodePort.
//!
//! kill -9 of the leader server in the middle of a rolling update under load: the controllers
//! fail over to the other server within 15 s, the rollout completes, no request through the
//! NodePort fails, no acknowledged write is lost, and the agents keep their containers. Then
//! etcd: one member down and writes go on; two down and writes fail with a clear Status; one
//! back and writes resume.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::cluster::{build_web_images_into, free_port, page, Cluster, Load};
use skiff_store::etcd_testing::EtcdCluster;

fn lease_holder(c: &Cluster, name: &str) -> String {
    let (code, out, _) = c.kubectl(&[
        "get",
        "lease",
        "-n",
        "kube-system",
        name,
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ]);
    if code == 0 {
        out.trim().to_string()
    } else {
        String::new()
    }
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
    start.elapsed()
}

/// `name=Ready-status` of every node.
fn node_readiness(c: &Cluster) -> String {
    c.kubectl(&[
        "get",
        "nodes",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type==\"Ready\")].status} {end}",
    ])
    .1
}

/// `name container-id restarts` of the pods labelled `app=<app>`, sorted.
fn containers(c: &Cluster, app: &str) -> Vec<String> {
    let out = c.ok(&[
        "get",
        "pods",
        "-l",
        &format!("app={app}"),
        "-o",
        "jsonpath={range .items[*]}{.metadata.name} {.status.containerStatuses[0].containerID} {.status.containerStatuses[0].restartCount}{\"\\n\"}{end}",
    ]);
    let mut lines: Vec<String> = out.lines().map(str::to_string).collect();
    lines.sort();
    lines
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn apply(c: &Cluster, name: &str, yaml: &str) {
    let path = c.dir.path().join(name);
    std::fs::write(&path, yaml).expect("write manifest");
    c.ok(&["apply", "-f", path.to_str().expect("utf8")]);
}

#[test]
#[ignore = "needs root: etcd, two servers, two agents running pods"]
fn servers_fail_over_on_a_real_etcd_cluster() {
    assert!(nix::unistd::geteuid().is_root(), "HA tests need root");
    let mut etcd = EtcdCluster::start("ha", 3).expect("a 3-member etcd cluster");
    let endpoints = etcd.endpoints().join(",");
    // Two node /24s in a /23 of our own (see the other cluster tests' ranges).
    let cidr = format!("100.64.{}.0/23", 200 + 2 * (std::process::id() % 8));
    // Both servers on one port, each on its own loopback address, as on two machines.
    let port = free_port();
    let pid = std::process::id();
    let host_a = format!("127.0.{}.11", 1 + pid % 200);
    let host_b = format!("127.0.{}.12", 1 + pid % 200);
    // Upstream's default lease (15 s) replaces a crashed leader 15-17 s after its last renewal;
    // the 15 s target is met with an 8 s lease (see docs/ha.md).
    let timings = [
        "--leader-elect-lease-duration",
        "8s",
        "--leader-elect-renew-deadline",
        "6s",
        "--leader-elect-retry-period",
        "1s",
    ];
    let mut args_a = vec!["--no-agent", "--datastore-endpoint", &endpoints];
    args_a.extend_from_slice(&timings);
    let mut a = Cluster::start_at(&host_a, port, cidr.clone(), &args_a);
    // A leads before B exists, so the test knows which server to kill.
    let mut holder = String::new();
    wait_until("server A to lead", Duration::from_secs(30), || {
        holder = lease_holder(&a, "kube-controller-manager");
        !holder.is_empty() && !lease_holder(&a, "kube-scheduler").is_empty()
    });
    let token = a.data_dir().join("node-token");
    let token = token.to_str().expect("utf8").to_string();
    let mut args_b = vec![
        "--no-agent",
        "--datastore-endpoint",
        &endpoints,
        "--token-file",
        &token,
    ];
    args_b.extend_from_slice(&timings);
    let b = Cluster::start_at(&host_b, port, cidr.clone(), &args_b);
    // B shares A's CA: A's kubeconfig trusts B's serving certificate.
    for (x, y) in [(&a, &b), (&b, &a)] {
        let ca_x = std::fs::read(x.data_dir().join("server/tls/ca.crt")).expect("ca");
        let ca_y = std::fs::read(y.data_dir().join("server/tls/ca.crt")).expect("ca");
        assert_eq!(ca_x, ca_y, "the servers share one cluster CA");
    }
    assert_eq!(lease_holder(&b, "kube-controller-manager"), holder);

    // The `kubernetes` Service lists both servers; agents learn both from it and the flag.
    wait_until(
        "both servers in the kubernetes endpoints",
        Duration::from_secs(30),
        || {
            let out = b
                .kubectl(&[
                    "get",
                    "endpoints",
                    "kubernetes",
                    "-o",
                    "jsonpath={.subsets[*].addresses[*].ip}",
                ])
                .1;
            out.contains(&host_a) && out.contains(&host_b)
        },
    );
    let servers = format!("https://{host_a}:{port},https://{host_b}:{port}");
    let lease = ["--node-lease-duration-seconds", "8"];
    let node_a = a.join_agent_to(None, "ha-node-a", &servers, &lease);
    let node_b = a.join_agent_to(None, "ha-node-b", &servers, &lease);
    build_web_images_into(&a.data_dir(), &a.dir.path().join("web"), &["v1", "v2"]);
    a.copy_images(&node_a.data_dir, &["web:v1", "web:v2"]);
    a.copy_images(&node_b.data_dir, &["web:v1", "web:v2"]);
    wait_until("both nodes Ready", Duration::from_secs(60), || {
        let r = node_readiness(&a);
        r.contains("ha-node-a=True") && r.contains("ha-node-b=True")
    });

    // A Deployment behind a NodePort, and a steady one whose containers must survive it all.
    let node_port = 30000 + (port % 2700);
    let web = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/web/web.yaml"),
    )
    .expect("web.yaml")
    .replace("replicas: 3", "replicas: 4")
    .replace("nodePort: 30080", &format!("nodePort: {node_port}"));
    apply(&a, "web.yaml", &web);
    apply(
        &a,
        "steady.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: steady}\nspec:\n  replicas: 2\n  \
         selector: {matchLabels: {app: steady}}\n  template:\n    metadata: {labels: {app: steady}}\n    \
         spec:\n      containers: [{name: web, image: 'web:v1'}]\n",
    );
    a.ok(&["rollout", "status", "deployment/web", "--timeout=120s"]);
    a.ok(&["rollout", "status", "deployment/steady", "--timeout=120s"]);
    wait_until("the NodePort to answer", Duration::from_secs(30), || {
        page(node_port).is_some_and(|p| p.starts_with("web v1 on "))
    });
    let steady_before = containers(&a, "steady");

    // Writes through both servers, each acknowledged one recorded.
    let stop_writes = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let writer = {
        let (stop, acked) = (stop_writes.clone(), acknowledged.clone());
        let kubeconfigs = [a.kubeconfig(), b.kubeconfig()];
        let home = b.dir.path().join("home");
        std::thread::spawn(move || {
            let mut i = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let name = format!("w-{i}");
                let out = std::process::Command::new("kubectl")
                    .env("HOME", &home)
                    .arg("--kubeconfig")
                    .arg(&kubeconfigs[(i % 2) as usize])
                    .args(["create", "configmap", &name, "--request-timeout=5s"])
                    .output();
                if out.is_ok_and(|o| o.status.success()) {
                    if let Ok(mut acked) = acked.lock() {
                        acked.push(name);
                    }
                }
                i += 1;
            }
        })
    };

    // The rolling update under load, and kill -9 of the leader (A, also the agents' first
    // server) right after it starts.
    // About 600 requests a second at most: load enough, without wrapping the source ports.
    let load = Load::start_paced(node_port, 3, Duration::from_millis(5));
    let load_started = Instant::now();
    std::thread::sleep(Duration::from_secs(1));
    b.ok(&["set", "image", "deployment/web", "web=web:v2"]);
    std::thread::sleep(Duration::from_millis(300));
    let killed_at = Instant::now();
    let kill_offset = load_started.elapsed();
    a.kill();
    let mut new_holder = String::new();
    wait_until(
        "B to take over the controllers",
        Duration::from_secs(30),
        || {
            new_holder = lease_holder(&b, "kube-controller-manager");
            !new_holder.is_empty() && new_holder != holder
        },
    );
    let failover = killed_at.elapsed();
    wait_until(
        "B to take over the scheduler",
        Duration::from_secs(30),
        || {
            let s = lease_holder(&b, "kube-scheduler");
            !s.is_empty() && s != holder
        },
    );
    b.ok(&["rollout", "status", "deployment/web", "--timeout=180s"]);
    let rollout_done = killed_at.elapsed();
    wait_until("only v2 to answer", Duration::from_secs(30), || {
        (0..20).all(|_| page(node_port).is_some_and(|p| p.starts_with("web v2 on ")))
    });
    let result = load.finish();
    stop_writes.store(true, Ordering::Relaxed);
    writer.join().expect("writer thread");
    println!(
        "HA: kill -9 of the leader {} ms into the load; controllers failed over {} ms after it; \
         rollout done after {} ms; load {} ok / {} failed {:?}",
        kill_offset.as_millis(),
        failover.as_millis(),
        rollout_done.as_millis(),
        result.ok,
        result.failed.len(),
        result.by_version
    );
    assert!(
        failover <= Duration::from_secs(15),
        "failover took {failover:?}"
    );
    assert!(
        result.failed.is_empty(),
        "{} failed requests through the NodePort, first: {:?}\n--- pods\n{}\n--- node a\n{}\n--- node b\n{}\n--- server b\n{}",
        result.failed.len(),
        result.failed.iter().take(5).collect::<Vec<_>>(),
        b.kubectl(&["get", "pods", "-o", "wide"]).1,
        tail(&node_a.log(), 60),
        tail(&node_b.log(), 60),
        tail(&b.log(), 60),
    );
    assert!(result.ok >= 100, "only {} requests answered", result.ok);

    // No acknowledged write lost.
    let stored = b.ok(&["get", "configmaps", "-o", "name"]);
    let acked = acknowledged.lock().expect("acknowledged").clone();
    assert!(acked.len() >= 5, "too few writes acknowledged: {acked:?}");
    for name in &acked {
        assert!(
            stored.contains(&format!("configmap/{name}\n")),
            "acknowledged write {name} lost"
        );
    }

    // The agents moved to B without touching a container, and their nodes stayed Ready.
    assert_eq!(
        containers(&b, "steady"),
        steady_before,
        "the steady pods' containers were restarted"
    );
    let readiness = node_readiness(&b);
    assert!(
        readiness.contains("ha-node-a=True") && readiness.contains("ha-node-b=True"),
        "{readiness}"
    );
    let renewed = |node: &str| {
        b.ok(&[
            "get",
            "lease",
            "-n",
            "kube-node-lease",
            node,
            "-o",
            "jsonpath={.spec.renewTime}",
        ])
    };
    let before = (renewed("ha-node-a"), renewed("ha-node-b"));
    wait_until(
        "the node leases to be renewed through B",
        Duration::from_secs(20),
        || renewed("ha-node-a") != before.0 && renewed("ha-node-b") != before.1,
    );

    // etcd: one member down, writes go on (after at most a re-election).
    etcd.stop(0, true);
    wait_until(
        "a write with one etcd member down",
        Duration::from_secs(10),
        || b.kubectl(&["create", "configmap", "one-down"]).0 == 0,
    );
    // Two down: no quorum, a clear Status instead of a hang.
    etcd.stop(1, true);
    let started = Instant::now();
    let (code, _, err) = b.kubectl(&["create", "configmap", "two-down", "--request-timeout=30s"]);
    assert_ne!(code, 0, "a write without quorum succeeded");
    assert!(
        err.contains("datastore is unavailable"),
        "unclear error without quorum: {err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "the write hung"
    );
    // One back: quorum again, writes resume.
    etcd.restart(1).expect("restart member 1");
    wait_until(
        "writes to resume with quorum back",
        Duration::from_secs(30),
        || b.kubectl(&["create", "configmap", "quorum-back"]).0 == 0,
    );
    drop(node_a);
    drop(node_b);
}
