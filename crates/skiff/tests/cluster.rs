//! The seed's cluster on one machine (root): `skiff server` with its embedded node agent runs a
//! Deployment of the web example as real containers with pod IPs, and kubectl's logs and exec
//! reach them through the API server.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::cluster::{build_web_images, http_get, Cluster, Load, LoadResult};

#[test]
#[ignore = "needs root: a cluster whose agent runs pods (namespaces, cgroups, CNI, nftables)"]
fn deployment_runs_real_containers_reachable_on_pod_ips() {
    assert!(nix::unistd::geteuid().is_root(), "cluster tests need root");
    let c = Cluster::start();
    build_web_images(&c);
    c.ok(&[
        "create",
        "deployment",
        "web",
        "--image=web:v1",
        "--replicas=3",
        "--port=80",
    ]);
    let out = c.ok(&["rollout", "status", "deployment/web", "--timeout=120s"]);
    assert!(out.contains("successfully rolled out"), "{out}");

    let pods = c.ok(&[
        "get",
        "pods",
        "-l",
        "app=web",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name} {.status.podIP}{\"\\n\"}{end}",
    ]);
    let pods: Vec<(String, String)> = pods
        .lines()
        .filter_map(|l| {
            l.split_once(' ')
                .map(|(n, ip)| (n.to_string(), ip.to_string()))
        })
        .collect();
    assert_eq!(pods.len(), 3, "{pods:?}");
    for (name, ip) in &pods {
        assert!(ip.starts_with("100.64."), "pod IP {ip}");
        let deadline = Instant::now() + Duration::from_secs(20);
        let body = loop {
            if let Some(b) = http_get(ip, 80).filter(|b| b.contains("200")) {
                break b;
            }
            assert!(
                Instant::now() < deadline,
                "pod {name} at {ip} never answered"
            );
            std::thread::sleep(Duration::from_millis(200));
        };
        assert!(body.contains(&format!("web v1 on {name}")), "{body}");
    }

    let (first, _) = &pods[0];
    let env = c.ok(&["exec", first, "--", "cat", "/etc/web/env"]);
    assert_eq!(env.trim(), "WEB_VERSION=v1");
    let (code, _, _) = c.kubectl(&["exec", first, "--", "sh", "-c", "exit 3"]);
    assert_eq!(code, 3, "kubectl exec returns the command's exit code");
    let hostname = c.ok(&["exec", first, "--", "hostname"]);
    assert_eq!(hostname.trim(), first.as_str());
    c.ok(&[
        "exec",
        first,
        "--",
        "sh",
        "-c",
        "echo to-the-log > /proc/1/fd/1",
    ]);
    let logs = c.eventually(&["logs", first], "to-the-log", Duration::from_secs(10));
    assert!(logs.contains("to-the-log"), "{logs}");

    c.ok(&["delete", "deployment", "web"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, names, _) = c.kubectl(&["get", "pods", "-l", "app=web", "-o", "name"]);
        if names.trim().is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "pods not gone: {names}");
        std::thread::sleep(Duration::from_millis(250));
    }
    c.assert_node_clean();
}

/// A NodePort of its own: clusters of parallel tests share the host's ports.
fn node_port(c: &Cluster) -> u16 {
    30000 + (c.port % 2700)
}

fn apply_web(c: &Cluster, replicas: u32, port: u16) {
    let manifest = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/web/web.yaml"),
    )
    .expect("web.yaml")
    .replace("replicas: 3", &format!("replicas: {replicas}"))
    .replace("nodePort: 30080", &format!("nodePort: {port}"));
    let path = c.dir.path().join("web.yaml");
    std::fs::write(&path, manifest).expect("write manifest");
    c.ok(&["apply", "-f", path.to_str().expect("utf8")]);
    c.ok(&["rollout", "status", "deployment/web", "--timeout=120s"]);
}

/// Answers of `n` requests to 127.0.0.1:port (a new connection each).
fn answers(port: u16, n: usize) -> Vec<String> {
    (0..n)
        .filter_map(|_| http_get("127.0.0.1", port))
        .filter_map(|b| b.lines().last().map(str::to_string))
        .collect()
}

#[test]
#[ignore = "needs root: a cluster whose agent runs pods (namespaces, cgroups, CNI, nftables)"]
fn nodeport_and_cluster_ip_reach_every_pod() {
    assert!(nix::unistd::geteuid().is_root(), "cluster tests need root");
    let c = Cluster::start();
    build_web_images(&c);
    let port = node_port(&c);
    apply_web(&c, 3, port);
    // Ready pods join the service; give the proxy a moment for the first ruleset.
    let deadline = Instant::now() + Duration::from_secs(20);
    while http_get("127.0.0.1", port).is_none() {
        assert!(Instant::now() < deadline, "NodePort {port} never answered");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The third endpoint may reach the proxy a moment after the first answer: retry briefly.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = answers(port, 60);
        let pods: std::collections::BTreeSet<&str> =
            got.iter().filter_map(|a| a.split(" on ").nth(1)).collect();
        assert!(got.iter().all(|a| a.starts_with("web v1 on ")), "{got:?}");
        if pods.len() == 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "traffic reaches all 3 pods: {got:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // The node address (the bridge gateway is one of this node's addresses) answers too.
    let gw = c.ok(&["get", "node", "-o", "jsonpath={.items[0].spec.podCIDR}"]);
    let gw = gw.trim().replace(".0/24", ".1");
    assert!(
        http_get(&gw, port).is_some_and(|b| b.contains("web v1")),
        "NodePort on {gw}"
    );

    // A ClusterIP from inside a pod, including the pod's own service.
    let ip = c.ok(&["get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}"]);
    let pod = c.ok(&[
        "get",
        "pods",
        "-l",
        "app=web",
        "-o",
        "jsonpath={.items[0].metadata.name}",
    ]);
    let body = c.ok(&[
        "exec",
        pod.trim(),
        "--",
        "wget",
        "-qO-",
        &format!("http://{ip}/"),
    ]);
    assert!(body.contains("web v1 on "), "{body}");

    // Cluster DNS: the node serves the Service's name; the pod's resolv.conf search path makes
    // the short name work too.
    for host in ["web", "web.default.svc.cluster.local"] {
        let (code, body, err) = c.kubectl(&[
            "exec",
            pod.trim(),
            "--",
            "wget",
            "-qO-",
            &format!("http://{host}/"),
        ]);
        assert!(
            code == 0 && body.contains("web v1 on "),
            "http://{host}/: {body} {err}"
        );
    }
    let resolv = c.ok(&["exec", pod.trim(), "--", "cat", "/etc/resolv.conf"]);
    assert!(
        resolv.contains("search default.svc.cluster.local svc.cluster.local cluster.local"),
        "{resolv}"
    );
    let hosts = c.ok(&["exec", pod.trim(), "--", "cat", "/etc/hosts"]);
    assert!(hosts.contains(&format!("\t{}\n", pod.trim())), "{hosts}");

    // A not-ready pod leaves the endpoints.
    c.ok(&["exec", pod.trim(), "--", "rm", "/www/index.html"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ready = c.ok(&[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=web",
            "-o",
            "jsonpath={range .items[*].endpoints[*]}{.targetRef.name}={.conditions.ready} {end}",
        ]);
        if ready.contains(&format!("{}=false", pod.trim())) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "pod never left the endpoints: {ready}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let got = answers(port, 30);
    assert!(got.iter().all(|a| !a.ends_with(pod.trim())), "{got:?}");
    // The kubelet's story of the pod, as `kubectl describe` tells it.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let described = c.ok(&["describe", "pod", pod.trim()]);
        let want = [
            "Scheduled",
            "Pulled",
            "Container image \"web:v1\" already present on machine",
            "Created container: web",
            "Started container web",
            "Readiness probe failed:",
        ];
        if want.iter().all(|w| described.contains(w)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "events missing from describe:\n{described}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }

    // Deleting the service removes its rules: the port stops answering.
    c.ok(&["delete", "svc", "web"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while http_get("127.0.0.1", port).is_some() {
        assert!(
            Instant::now() < deadline,
            "NodePort still answers after the service is gone"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    c.ok(&["delete", "deployment", "web"]);
}

#[test]
#[ignore = "needs root: a cluster whose agent runs pods (namespaces, cgroups, CNI, nftables)"]
fn rolling_update_through_nodeport_loses_no_request() {
    assert!(nix::unistd::geteuid().is_root(), "cluster tests need root");
    let c = Cluster::start();
    build_web_images(&c);
    let port = node_port(&c);
    apply_web(&c, 9, port);
    // The subject is the update: start the load once the proxy serves all nine pods (`rollout
    // status` can finish before the last endpoints reach the node's table on a loaded machine).
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < 9 {
        assert!(
            Instant::now() < deadline,
            "NodePort {port} served only {seen:?}"
        );
        seen.extend(answers(port, 9));
        std::thread::sleep(Duration::from_millis(100));
    }

    let load = Load::start(port, 3);
    std::thread::sleep(Duration::from_secs(1));
    c.ok(&["set", "image", "deployment/web", "web=web:v2"]);
    c.ok(&["rollout", "status", "deployment/web", "--timeout=180s"]);
    // Keep loading until every answer is v2 and the minimum volume is reached.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        std::thread::sleep(Duration::from_secs(1));
        let last = answers(port, 20);
        if last.len() == 20 && last.iter().all(|a| a.starts_with("web v2")) {
            break;
        }
        assert!(Instant::now() < deadline, "never all v2: {last:?}");
    }
    let LoadResult {
        ok,
        failed,
        by_version,
    } = load.finish();
    let v2 = by_version.get("v2").copied().unwrap_or(0);
    eprintln!(
        "rolling update under load: {ok} ok, {} failed, {v2} answered by v2",
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "{} failed requests, first: {:?}",
        failed.len(),
        failed.first()
    );
    assert!(ok >= 5000, "only {ok} requests during the rollout");
    assert!(v2 > 0);
    c.ok(&[
        "delete",
        "-f",
        c.dir.path().join("web.yaml").to_str().expect("utf8"),
    ]);
}

/// `(pod name, node name)` of the web pods that are Ready and not terminating.
fn ready_web_pods(c: &Cluster) -> Vec<(String, String)> {
    let out = c.ok(&[
        "get",
        "pods",
        "-l",
        "app=web",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name} {.spec.nodeName} {.metadata.deletionTimestamp} {.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}",
    ]);
    out.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            // name node deletionTimestamp(empty when live) ready
            (f.len() == 4 && f[2].is_empty() && f[3] == "True")
                .then(|| (f[0].to_string(), f[1].to_string()))
        })
        .collect()
}

/// Waits until exactly `n` web pods are Ready, and returns them.
fn wait_ready_web(c: &Cluster, n: usize, timeout: Duration) -> Vec<(String, String)> {
    let deadline = Instant::now() + timeout;
    loop {
        let pods = ready_web_pods(c);
        if pods.len() == n {
            return pods;
        }
        assert!(
            Instant::now() < deadline,
            "never {n} ready web pods: {pods:?}\n{}",
            c.ok(&["get", "pods", "-o", "wide"])
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Waits until requests through the NodePort have been answered by every pod in `pods`.
fn wait_answered_by(port: u16, pods: &[(String, String)], timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let mut seen = std::collections::BTreeSet::new();
    loop {
        for a in answers(port, 20) {
            if let Some(pod) = a.split(" on ").nth(1) {
                seen.insert(pod.to_string());
            }
        }
        if pods.iter().all(|(p, _)| seen.contains(p)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "NodePort {port} answered only from {seen:?}, expected {pods:?}"
        );
    }
}

/// Waits until node-a and the joined agent's node are Ready, each with its own pod CIDR.
fn wait_two_nodes_ready(c: &Cluster, b: &common::cluster::Agent) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = c.ok(&[
            "get",
            "nodes",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type==\"Ready\")].status} {.spec.podCIDR}{\"\\n\"}{end}",
        ]);
        if out.contains("node-a=True") && out.contains(&format!("{}=True", b.name)) {
            let cidrs: std::collections::BTreeSet<&str> =
                out.lines().filter_map(|l| l.split(' ').nth(1)).collect();
            assert_eq!(cidrs.len(), 2, "each node has its own pod CIDR: {out}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} never Ready: {out}\nagent log:\n{}",
            b.name,
            b.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// "Grow to many": a second node joins with `skiff agent` and the node token. One NodePort
/// serves pods on both nodes; draining a node under load loses no request; when a node dies,
/// its pods are replaced on the surviving node and the NodePort keeps answering.
#[test]
#[ignore = "needs root: a cluster whose agent runs pods (namespaces, cgroups, CNI, nftables)"]
fn second_node_joins_serves_drains_and_fails_over() {
    assert!(nix::unistd::geteuid().is_root(), "cluster tests need root");
    // Two node /24s in a /23 of our own (other cluster tests use 100.64.10-39.0/24).
    let cidr = format!("100.64.{}.0/23", 2 + 2 * (std::process::id() % 4));
    let lease = ["--node-lease-duration-seconds", "4"];
    let c = Cluster::start_with(
        cidr,
        &[
            "--node-name",
            "node-a",
            lease[0],
            lease[1],
            "--node-monitor-grace-period",
            "6",
            "--default-toleration-seconds",
            "2",
        ],
    );
    build_web_images(&c);
    let mut b = c.join_agent("node-b", &lease);
    c.copy_images(&b.data_dir, &["web:v1"]);
    wait_two_nodes_ready(&c, &b);

    // 1. Four replicas spread over both nodes; one NodePort reaches all of them.
    let port = node_port(&c);
    apply_web(&c, 4, port);
    let pods = wait_ready_web(&c, 4, Duration::from_secs(60));
    let on_b = pods.iter().filter(|(_, n)| n == "node-b").count();
    assert!(
        (1..=3).contains(&on_b),
        "pods spread over both nodes: {pods:?}"
    );
    wait_answered_by(port, &pods, Duration::from_secs(20));

    // 2. Drain node-b under load: its pods are evicted and replaced on node-a, and no request
    //    through the NodePort fails.
    let load = Load::start(port, 3);
    std::thread::sleep(Duration::from_millis(500));
    c.ok(&[
        "drain",
        "node-b",
        "--ignore-daemonsets",
        "--delete-emptydir-data",
        "--timeout=60s",
    ]);
    let pods = wait_ready_web(&c, 4, Duration::from_secs(60));
    assert!(pods.iter().all(|(_, n)| n == "node-a"), "{pods:?}");
    wait_answered_by(port, &pods, Duration::from_secs(20));
    let result = load.finish();
    eprintln!(
        "drain under load: {} ok, {} failed",
        result.ok,
        result.failed.len()
    );
    assert!(
        result.failed.is_empty(),
        "{} failed requests during the drain, first: {:?}",
        result.failed.len(),
        result.failed.first()
    );
    assert!(
        result.ok > 100,
        "only {} requests during the drain",
        result.ok
    );

    // 3. Back in service, scaled up: node-b gets pods again.
    c.ok(&["uncordon", "node-b"]);
    c.ok(&["scale", "deployment/web", "--replicas=6"]);
    let pods = wait_ready_web(&c, 6, Duration::from_secs(60));
    assert!(
        pods.iter().any(|(_, n)| n == "node-b"),
        "new pods land on the emptier node: {pods:?}"
    );

    // 4. node-b dies: its agent is killed and the machine wiped (containers, bridge, rules).
    //    node-a notices the silent node, evicts its pods after their toleration, and the
    //    ReplicaSet replaces them on node-a; the NodePort answers only from live pods.
    b.kill();
    drop(b);
    c.eventually(
        &["get", "node", "node-b", "--no-headers"],
        "NotReady",
        Duration::from_secs(30),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let pods = loop {
        let pods = ready_web_pods(&c);
        if pods.len() == 6 && pods.iter().all(|(_, n)| n == "node-a") {
            break pods;
        }
        assert!(
            Instant::now() < deadline,
            "pods never failed over to node-a: {pods:?}\n{}",
            c.ok(&["get", "pods", "-o", "wide"])
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    wait_answered_by(port, &pods, Duration::from_secs(20));
    let got = answers(port, 30);
    assert_eq!(got.len(), 30, "every request answered after failover");
    assert!(
        got.iter()
            .all(|a| pods.iter().any(|(p, _)| a.ends_with(p.as_str()))),
        "only live pods answer: {got:?}"
    );
    c.ok(&["delete", "deployment", "web"]);
}

/// `(pod name, pod IP, node name)` of the web pods.
fn web_pod_ips(c: &Cluster) -> Vec<(String, String, String)> {
    c.ok(&[
        "get",
        "pods",
        "-l",
        "app=web",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name} {.status.podIP} {.spec.nodeName}{\"\\n\"}{end}",
    ])
    .lines()
    .filter_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        (f.len() == 3).then(|| (f[0].to_string(), f[1].to_string(), f[2].to_string()))
    })
    .collect()
}

/// Two machines on one link: the server's node and an agent in a network namespace of its own,
/// each with its own bridge, pod CIDR and nft table. Pod routes between the nodes make one flat
/// pod network: a NodePort on either node reaches pods on both, a pod reaches a pod on the other
/// node by its IP, and logs and exec reach the other node's agent.
#[test]
#[ignore = "needs root: a cluster whose agent runs pods (namespaces, cgroups, CNI, nftables)"]
fn pods_on_two_hosts_share_one_network() {
    assert!(nix::unistd::geteuid().is_root(), "cluster tests need root");
    let other = common::cluster::OtherHost::create();
    let cidr = format!("100.64.{}.0/23", 240 + 2 * (std::process::id() % 8));
    let c = Cluster::start_on(
        &other.host_ip,
        cidr,
        &["--node-name", "node-a", "--node-ip", &other.host_ip],
    );
    build_web_images(&c);
    let b = c.join_agent_in(Some(&other.netns), "node-b", &["--node-ip", &other.peer_ip]);
    c.copy_images(&b.data_dir, &["web:v1"]);
    wait_two_nodes_ready(&c, &b);

    let port = node_port(&c);
    apply_web(&c, 4, port);
    let ready = wait_ready_web(&c, 4, Duration::from_secs(60));
    assert!(
        ready.iter().any(|(_, n)| n == "node-b") && ready.iter().any(|(_, n)| n == "node-a"),
        "pods on both nodes: {ready:?}"
    );
    let pods = web_pod_ips(&c);

    // The NodePort of each node answers from the pods of both.
    for node_ip in [&other.host_ip, &other.peer_ip] {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut seen = std::collections::BTreeSet::new();
        while !pods.iter().all(|(p, _, _)| seen.contains(p)) {
            for _ in 0..20 {
                if let Some(page) = http_get(node_ip, port).and_then(|b| {
                    b.lines()
                        .last()
                        .and_then(|l| l.split(" on ").nth(1))
                        .map(str::to_string)
                }) {
                    seen.insert(page);
                }
            }
            assert!(
                Instant::now() < deadline,
                "NodePort {node_ip}:{port} answered only from {seen:?} of {pods:?}"
            );
        }
    }

    // Pod to pod across nodes, by pod IP, both ways.
    let on = |node: &str| {
        pods.iter()
            .find(|(_, _, n)| n == node)
            .cloned()
            .expect("a pod on each node")
    };
    let (a_pod, a_ip, _) = on("node-a");
    let (b_pod, b_ip, _) = on("node-b");
    for (from, to, to_ip) in [(&a_pod, &b_pod, &b_ip), (&b_pod, &a_pod, &a_ip)] {
        let (code, body, err) = c.kubectl(&[
            "exec",
            from,
            "--",
            "wget",
            "-qO-",
            &format!("http://{to_ip}/"),
        ]);
        assert_eq!(code, 0, "{from} -> {to}: {err}");
        assert!(
            body.contains(&format!("web v1 on {to}")),
            "{from} -> {to}: {body}"
        );
        // The server logs at info (SKIFF_LOG); none of that leaks into a user's exec stream.
        assert!(err.is_empty(), "exec stderr: {err}");
    }
    // Each node serves cluster DNS to its own pods.
    let (code, body, err) = c.kubectl(&["exec", &b_pod, "--", "wget", "-qO-", "http://web/"]);
    assert!(
        code == 0 && body.contains("web v1 on "),
        "DNS on node-b: {body} {err}"
    );
    // (The exec in node-b's pod went through node-b's agent API, on node-b's address.)

    c.ok(&["delete", "deployment", "web", "--wait=true"]);
    let node_routes = || {
        let out = Command::new("ip")
            .args(["-4", "route", "show", "metric", "4096"])
            .output()
            .expect("ip route");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let to_b = format!("via {} ", other.peer_ip);
    assert!(
        node_routes().contains(&to_b),
        "route to node-b's pods: {}",
        node_routes()
    );
    // `skiff reset` removes the routes a node installed (and only those).
    drop(b);
    drop(c);
    assert!(
        !node_routes().contains(&to_b),
        "route left: {}",
        node_routes()
    );
}

/// Jobs run pods to completion: `kubectl create job`, `kubectl wait --for=condition=complete`
/// and `kubectl logs job/…`; a Job with completions and parallelism; a failing Job stops at its
/// backoffLimit; a finished Job with ttlSecondsAfterFinished goes away with its pods.
#[test]
#[ignore = "needs root: a cluster whose agent runs pods (namespaces, cgroups, CNI, nftables)"]
fn jobs_run_to_completion_fail_at_backoff_limit_and_expire() {
    assert!(nix::unistd::geteuid().is_root(), "cluster tests need root");
    let c = Cluster::start();
    build_web_images(&c);

    c.ok(&[
        "create",
        "job",
        "hello",
        "--image=web:v1",
        "--",
        "/bin/sh",
        "-c",
        "echo hi from a job",
    ]);
    c.ok(&[
        "wait",
        "--for=condition=complete",
        "job/hello",
        "--timeout=60s",
    ]);
    let logs = c.ok(&["logs", "job/hello"]);
    assert!(logs.contains("hi from a job"), "{logs}");
    let table = c.ok(&["get", "job", "hello", "--no-headers"]);
    assert!(
        table.contains("Complete") && table.contains("1/1"),
        "{table}"
    );

    let manifest = c.dir.path().join("jobs.yaml");
    std::fs::write(
        &manifest,
        r#"apiVersion: batch/v1
kind: Job
metadata:
  name: batch
spec:
  completions: 3
  parallelism: 2
  ttlSecondsAfterFinished: 2
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: work
        image: web:v1
        command: ["/bin/sh", "-c", "sleep 0.3; echo done"]
---
apiVersion: batch/v1
kind: Job
metadata:
  name: broken
spec:
  backoffLimit: 1
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: work
        image: web:v1
        command: ["/bin/sh", "-c", "exit 3"]
"#,
    )
    .expect("manifest");
    c.ok(&["apply", "-f", manifest.to_str().expect("utf8")]);
    c.ok(&[
        "wait",
        "--for=condition=complete",
        "job/batch",
        "--timeout=90s",
    ]);
    let succeeded = c.ok(&["get", "job", "batch", "-o", "jsonpath={.status.succeeded}"]);
    assert_eq!(succeeded.trim(), "3");
    c.ok(&[
        "wait",
        "--for=condition=failed",
        "job/broken",
        "--timeout=90s",
    ]);
    let reason = c.ok(&[
        "get",
        "job",
        "broken",
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"Failed\")].reason} {.status.failed}",
    ]);
    assert_eq!(reason.trim(), "BackoffLimitExceeded 2", "{reason}");
    let failed_pods = c.ok(&[
        "get",
        "pods",
        "-l",
        "job-name=broken",
        "-o",
        "jsonpath={range .items[*]}{.status.phase} {end}",
    ]);
    assert_eq!(failed_pods.trim(), "Failed Failed", "{failed_pods}");

    // ttlSecondsAfterFinished: 2 → the Job and (through the garbage collector) its pods go.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, jobs, _) = c.kubectl(&["get", "jobs", "-o", "name"]);
        let (_, pods, _) = c.kubectl(&["get", "pods", "-l", "job-name=batch", "-o", "name"]);
        if !jobs.contains("job.batch/batch") && pods.trim().is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "batch job never expired: {jobs} {pods}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(c
        .ok(&["get", "jobs", "-o", "name"])
        .contains("job.batch/hello"));
}
/// A DaemonSet runs one pod on every node, replaces a deleted one on the same node, and rolls
/// a new image out node by node.
#[test]
#[ignore = "needs root: a cluster whose agent runs pods (namespaces, cgroups, CNI, nftables)"]
fn daemonset_runs_one_pod_per_node_and_rolls_out() {
    assert!(nix::unistd::geteuid().is_root(), "cluster tests need root");
    let cidr = format!("100.64.{}.0/23", 40 + 2 * (std::process::id() % 8));
    let c = Cluster::start_with(cidr, &["--node-name", "node-a"]);
    build_web_images(&c);
    let b = c.join_agent("node-b", &[]);
    c.copy_images(&b.data_dir, &["web:v1", "web:v2"]);
    wait_two_nodes_ready(&c, &b);

    let manifest = c.dir.path().join("ds.yaml");
    std::fs::write(
        &manifest,
        r#"apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: daemon
spec:
  selector:
    matchLabels:
      app: daemon
  template:
    metadata:
      labels:
        app: daemon
    spec:
      containers:
      - name: web
        image: web:v1
"#,
    )
    .expect("manifest");
    c.ok(&["apply", "-f", manifest.to_str().expect("utf8")]);
    c.ok(&["rollout", "status", "ds/daemon", "--timeout=90s"]);
    let placed = |c: &Cluster| -> Vec<(String, String, String)> {
        c.ok(&[
            "get",
            "pods",
            "-l",
            "app=daemon",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name} {.spec.nodeName} {.spec.containers[0].image} {.metadata.deletionTimestamp}{\"\\n\"}{end}",
        ])
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            (f.len() == 4 && f[3].is_empty())
                .then(|| (f[0].to_string(), f[1].to_string(), f[2].to_string()))
        })
        .collect()
    };
    let nodes_of = |pods: &[(String, String, String)]| -> Vec<String> {
        let mut n: Vec<String> = pods.iter().map(|p| p.1.clone()).collect();
        n.sort();
        n
    };
    let pods = placed(&c);
    assert_eq!(nodes_of(&pods), ["node-a", "node-b"], "{pods:?}");

    // A deleted daemon pod comes back on the same node.
    let on_b = pods
        .iter()
        .find(|p| p.1 == "node-b")
        .expect("pod on b")
        .0
        .clone();
    c.ok(&["delete", "pod", &on_b, "--wait=true"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = placed(&c);
        if nodes_of(&now) == ["node-a", "node-b"] && !now.iter().any(|p| p.0 == on_b) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no replacement on node-b: {now:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }

    // A new image rolls out to every node.
    c.ok(&["set", "image", "ds/daemon", "web=web:v2"]);
    c.ok(&["rollout", "status", "ds/daemon", "--timeout=120s"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = placed(&c);
        if nodes_of(&now) == ["node-a", "node-b"] && now.iter().all(|p| p.2 == "web:v2") {
            break;
        }
        assert!(Instant::now() < deadline, "rollout left {now:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
    let table = c.ok(&["get", "ds", "daemon", "--no-headers"]);
    let cols: Vec<&str> = table.split_whitespace().collect();
    assert_eq!(&cols[1..6], ["2", "2", "2", "2", "2"], "{table}");
    c.ok(&["delete", "ds", "daemon", "--wait=true"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !placed(&c).is_empty() {
        assert!(
            Instant::now() < deadline,
            "daemon pods outlived their DaemonSet"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A pod whose image is not on the node is pulled from its registry (here one on loopback,
/// which an `--offline` node still uses), with kubelet's Pulling/Pulled events.
#[test]
#[ignore = "needs root: a cluster whose agent runs pods (namespaces, cgroups, CNI, nftables)"]
fn pods_pull_missing_images_from_a_registry() {
    assert!(nix::unistd::geteuid().is_root(), "cluster tests need root");
    let c = Cluster::start();
    // The image lives in a scratch store served by the registry, not in the node's store.
    let source = c.dir.path().join("source");
    common::cluster::build_web_images_into(&source, &c.dir.path().join("web"), &["v1"]);
    let registry = common::cluster::LoopbackRegistry::serve(&source, "web:v1", "shop/web", "v1");
    let image = format!("{}/shop/web:v1", registry.host);

    c.ok(&[
        "create",
        "deployment",
        "pulled",
        &format!("--image={image}"),
    ]);
    c.ok(&["rollout", "status", "deployment/pulled", "--timeout=90s"]);
    let pod = c.ok(&[
        "get",
        "pods",
        "-l",
        "app=pulled",
        "-o",
        "jsonpath={.items[0].metadata.name}",
    ]);
    let described = c.ok(&["describe", "pod", pod.trim()]);
    assert!(
        described.contains(&format!("Pulling image \"{image}\"")),
        "{described}"
    );
    assert!(
        described.contains(&format!("Successfully pulled image \"{image}\"")),
        "{described}"
    );
    let body = c.ok(&["exec", pod.trim(), "--", "cat", "/www/index.html"]);
    assert!(body.contains("web v1"), "{body}");
    let images = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .arg("--data-dir")
        .arg(c.data_dir())
        .args(["image", "ls"])
        .output()
        .expect("image ls");
    let listed = String::from_utf8_lossy(&images.stdout).into_owned();
    assert!(
        listed.contains(&format!("{}/shop/web", registry.host)),
        "{listed}"
    );

    // A private registry: refused without credentials, pulled with the pod's imagePullSecrets.
    let private = common::cluster::LoopbackRegistry::serve_with_login(
        &source,
        "web:v1",
        "private/web",
        "v1",
        Some(("puller", "s3cret")),
    );
    let private_image = format!("{}/private/web:v1", private.host);
    c.ok(&[
        "create",
        "deployment",
        "private",
        &format!("--image={private_image}"),
    ]);
    let first = c.eventually(
        &[
            "get",
            "pods",
            "-l",
            "app=private",
            "-o",
            "jsonpath={.items[0].metadata.name}",
        ],
        "private-",
        Duration::from_secs(30),
    );
    c.eventually(
        &["describe", "pod", first.trim()],
        "uthorized: url",
        Duration::from_secs(30),
    );
    c.ok(&[
        "create",
        "secret",
        "docker-registry",
        "regcred",
        &format!("--docker-server={}", private.host),
        "--docker-username=puller",
        "--docker-password=s3cret",
    ]);
    c.ok(&[
        "patch",
        "deployment",
        "private",
        "-p",
        r#"{"spec":{"template":{"spec":{"imagePullSecrets":[{"name":"regcred"}]}}}}"#,
    ]);
    c.ok(&["rollout", "status", "deployment/private", "--timeout=90s"]);

    // A missing image elsewhere: an offline node does not go looking for it.
    c.ok(&[
        "create",
        "deployment",
        "absent",
        "--image=docker.io/library/absent:1",
    ]);
    c.eventually(
        &["get", "pods", "-l", "app=absent", "--no-headers"],
        "ImagePull",
        Duration::from_secs(30),
    );
    let absent = c.ok(&[
        "get",
        "pods",
        "-l",
        "app=absent",
        "-o",
        "jsonpath={.items[0].metadata.name}",
    ]);
    c.eventually(
        &["describe", "pod", absent.trim()],
        "the node is offline (--offline)",
        Duration::from_secs(30),
    );
}

/// A CronJob runs its Job at the next scheduled minute (and `kubectl create job --from=cronjob/…`
/// at once); its Jobs' pods really run, `lastScheduleTime` and `lastSuccessfulTime` follow, and
/// deleting the CronJob takes its Jobs along.
#[test]
#[ignore = "needs root: a cluster whose agent runs pods (namespaces, cgroups, CNI, nftables)"]
fn cronjob_schedules_jobs_that_run() {
    assert!(nix::unistd::geteuid().is_root(), "cluster tests need root");
    let c = Cluster::start();
    build_web_images(&c);
    c.ok(&[
        "create",
        "cronjob",
        "tick",
        "--image=web:v1",
        "--schedule=* * * * *",
        "--",
        "/bin/sh",
        "-c",
        "echo tick",
    ]);
    // A manual run from the template, right now.
    c.ok(&["create", "job", "tick-manual", "--from=cronjob/tick"]);
    c.ok(&[
        "wait",
        "--for=condition=complete",
        "job/tick-manual",
        "--timeout=60s",
    ]);
    assert!(c.ok(&["logs", "job/tick-manual"]).contains("tick"));
    // The scheduled run: within the next minute (plus start-up).
    let deadline = Instant::now() + Duration::from_secs(90);
    let scheduled = loop {
        let names = c.ok(&[
            "get",
            "jobs",
            "-o",
            "jsonpath={range .items[?(@.metadata.ownerReferences[0].kind==\"CronJob\")]}{.metadata.name} {.status.succeeded}{\"\\n\"}{end}",
        ]);
        if let Some(done) = names
            .lines()
            // Scheduled Jobs are `tick-<unix minutes>` (the manual one is not).
            .find(|l| {
                l.strip_prefix("tick-")
                    .and_then(|r| r.strip_suffix(" 1"))
                    .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
            })
        {
            break done.split(' ').next().unwrap_or_default().to_string();
        }
        assert!(Instant::now() < deadline, "no scheduled job ran: {names}");
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(c
        .ok(&["logs", &format!("job/{scheduled}")])
        .contains("tick"));
    c.eventually(
        &[
            "get",
            "cronjob",
            "tick",
            "-o",
            "jsonpath={.status.lastSuccessfulTime}",
        ],
        "Z",
        Duration::from_secs(20),
    );
    let last = c.ok(&[
        "get",
        "cronjob",
        "tick",
        "-o",
        "jsonpath={.status.lastScheduleTime}",
    ]);
    assert!(last.ends_with(":00Z"), "scheduled on the minute: {last}");
    c.ok(&["delete", "cronjob", "tick"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let jobs = c.ok(&["get", "jobs", "-o", "name"]);
        if !jobs.contains(&format!("job.batch/{scheduled}")) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the CronJob's jobs outlived it: {jobs}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// An Indexed Job on a real node: each pod reads its index from `JOB_COMPLETION_INDEX` (the
/// agent resolves the controller's downward-API reference) and its hostname is
/// `<job>-<index>`; a podFailurePolicy FailJob rule on an exit code fails the Job at once.
#[test]
#[ignore = "needs root: a cluster whose agent runs pods (namespaces, cgroups, CNI, nftables)"]
fn indexed_jobs_see_their_index_and_fail_by_policy() {
    assert!(nix::unistd::geteuid().is_root(), "cluster tests need root");
    let c = Cluster::start();
    build_web_images(&c);
    let manifest = c.dir.path().join("indexed.yaml");
    std::fs::write(
        &manifest,
        r#"apiVersion: batch/v1
kind: Job
metadata:
  name: idx
spec:
  completions: 3
  parallelism: 3
  completionMode: Indexed
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: work
        image: web:v1
        command: ["/bin/sh", "-c", "echo index=$JOB_COMPLETION_INDEX host=$(hostname)"]
---
apiVersion: batch/v1
kind: Job
metadata:
  name: fatal
spec:
  backoffLimit: 5
  podFailurePolicy:
    rules:
    - action: FailJob
      onExitCodes:
        containerName: work
        operator: In
        values: [42]
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: work
        image: web:v1
        command: ["/bin/sh", "-c", "exit 42"]
"#,
    )
    .expect("manifest");
    c.ok(&["apply", "-f", manifest.to_str().expect("utf8")]);
    c.ok(&[
        "wait",
        "--for=condition=complete",
        "job/idx",
        "--timeout=90s",
    ]);
    let done = c.ok(&[
        "get",
        "job",
        "idx",
        "-o",
        "jsonpath={.status.completedIndexes}",
    ]);
    assert_eq!(done, "0-2");
    for i in 0..3 {
        let pod = c.ok(&[
            "get",
            "pods",
            "-l",
            &format!("batch.kubernetes.io/job-completion-index={i},job-name=idx"),
            "-o",
            "jsonpath={.items[0].metadata.name}",
        ]);
        let logs = c.ok(&["logs", &pod]);
        assert!(
            logs.contains(&format!("index={i} host=idx-{i}")),
            "{pod}: {logs}"
        );
    }
    c.ok(&[
        "wait",
        "--for=condition=failed",
        "job/fatal",
        "--timeout=90s",
    ]);
    let reason = c.ok(&[
        "get",
        "job",
        "fatal",
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"Failed\")].reason}",
    ]);
    assert_eq!(reason, "PodFailurePolicy");
    let failed = c.ok(&["get", "job", "fatal", "-o", "jsonpath={.status.failed}"]);
    assert_eq!(failed, "1", "no retry after a FailJob match");
}
