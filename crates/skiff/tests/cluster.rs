//! The seed's cluster on one machine (root): `skiff server` with its embedded node agent runs a
//! Deployment of the web example as real containers with pod IPs, and kubectl's logs and exec
//! reach them through the API server.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::cluster::{build_web_images, http_get, Cluster};

#[test]
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
fn rolling_update_through_nodeport_loses_no_request() {
    assert!(nix::unistd::geteuid().is_root(), "cluster tests need root");
    let c = Cluster::start();
    build_web_images(&c);
    let port = node_port(&c);
    apply_web(&c, 9, port);
    let deadline = Instant::now() + Duration::from_secs(20);
    while http_get("127.0.0.1", port).is_none() {
        assert!(Instant::now() < deadline, "NodePort {port} never answered");
        std::thread::sleep(Duration::from_millis(100));
    }

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..3 {
        let stop = stop.clone();
        workers.push(std::thread::spawn(move || {
            let (mut ok, mut failed, mut v2) = (0u64, Vec::new(), 0u64);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match http_get("127.0.0.1", port) {
                    Some(b) if b.contains("200 OK") => {
                        ok += 1;
                        if b.contains("web v2") {
                            v2 += 1;
                        }
                    }
                    other => failed.push(format!("{other:?}")),
                }
            }
            (ok, failed, v2)
        }));
    }
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
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut ok, mut failed, mut v2) = (0, Vec::new(), 0);
    for w in workers {
        let (o, f, v) = w.join().expect("load thread");
        ok += o;
        failed.extend(f);
        v2 += v;
    }
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
