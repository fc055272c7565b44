//! Resource metrics and the proxy subresources with the real kubectl (root): `kubectl top
//! nodes`, `kubectl top pods --containers` (figures checked against the pod's cgroup),
//! `nodes/proxy` to the agent's `/pods`, `/healthz`, `/stats/summary`, `pods/proxy` and
//! `services/proxy` (also through `kubectl proxy`, with upstream's trailing-slash redirect),
//! and 403s for a user without the RBAC grants; the same across two nodes.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::cluster::{build_web_images, free_port, Cluster};

const HOG: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: hog
  labels:
    app: hog
spec:
  containers:
  - name: burn
    image: web:v1
    command: ["sh", "-c", "while :; do :; done"]
  - name: mem
    image: web:v1
    command: ["awk", "BEGIN { s = sprintf(\"%60000000s\", \"x\"); system(\"sleep 100000\") }"]
"#;

const WEB: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: web
        image: web:v1
        ports:
        - containerPort: 80
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector:
    app: web
  ports:
  - name: http
    port: 80
    targetPort: 80
"#;

fn apply(c: &Cluster, yaml: &str, name: &str) {
    let path = c.dir.path().join(name);
    std::fs::write(&path, yaml).expect("manifest");
    c.ok(&["apply", "-f", &path.to_string_lossy()]);
}

/// One HTTP/1.0 request to 127.0.0.1:`port`; the whole response.
fn http(port: u16, method: &str, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    write!(s, "{method} {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").expect("write");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// The working set (usage - inactive_file) of the cgroup of the container `container_id`
/// (cgroup v1 memory hierarchy or v2), found below the pod's cgroup.
fn cgroup_working_set(pod_uid: &str, container_id: &str) -> u64 {
    let unified = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let root = if unified {
        "/sys/fs/cgroup".to_string()
    } else {
        "/sys/fs/cgroup/memory".to_string()
    };
    let parent = std::fs::read_dir(&root)
        .expect("cgroup root")
        .flatten()
        .map(|e| e.path().join(format!("pod{pod_uid}")).join(container_id))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("no cgroup for container {container_id}"));
    let read = |f: &str| std::fs::read_to_string(parent.join(f)).expect("cgroup file");
    let (usage, inactive_key) = if unified {
        (read("memory.current"), "inactive_file ")
    } else {
        (read("memory.usage_in_bytes"), "total_inactive_file ")
    };
    let usage: u64 = usage.trim().parse().expect("usage");
    let inactive: u64 = read("memory.stat")
        .lines()
        .find_map(|l| l.strip_prefix(inactive_key))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    usage.saturating_sub(inactive)
}

#[test]
fn top_and_proxy_subresources() {
    let c = Cluster::start();
    build_web_images(&c);
    apply(&c, HOG, "hog.yaml");
    apply(&c, WEB, "web.yaml");
    c.ok(&["wait", "--for=condition=Ready", "pod/hog", "--timeout=120s"]);
    c.ok(&[
        "wait",
        "--for=condition=Ready",
        "pod",
        "-l",
        "app=web",
        "--timeout=120s",
    ]);
    let node = c.ok(&["get", "nodes", "-o", "jsonpath={.items[0].metadata.name}"]);

    // nodes/proxy to the agent's kubelet endpoints.
    let healthz = c.ok(&[
        "get",
        "--raw",
        &format!("/api/v1/nodes/{node}/proxy/healthz"),
    ]);
    assert_eq!(healthz.trim(), "ok");
    let pods: serde_json::Value =
        serde_json::from_str(&c.ok(&["get", "--raw", &format!("/api/v1/nodes/{node}/proxy/pods")]))
            .expect("PodList");
    assert_eq!(pods["kind"], "PodList");
    let hog = pods["items"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p["metadata"]["name"] == "hog"))
        .expect("hog in the node's pods");
    assert_eq!(hog["spec"]["terminationGracePeriodSeconds"], 30);
    let summary: serde_json::Value = serde_json::from_str(&c.ok(&[
        "get",
        "--raw",
        &format!("/api/v1/nodes/{node}/proxy/stats/summary"),
    ]))
    .expect("Summary");
    assert_eq!(summary["node"]["nodeName"], node.as_str());
    assert!(
        summary["node"]["memory"]["workingSetBytes"]
            .as_u64()
            .unwrap_or(0)
            > 0
    );
    let hog_stats = summary["pods"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p["podRef"]["name"] == "hog"))
        .expect("hog in the summary");
    // The pod's own network namespace: its eth0, not the host's interfaces.
    assert_eq!(hog_stats["network"]["name"], "eth0", "{hog_stats}");
    assert_eq!(
        hog_stats["network"]["interfaces"].as_array().map(Vec::len),
        Some(1),
        "{hog_stats}"
    );
    assert!(hog_stats["ephemeral-storage"]["usedBytes"].is_u64());
    assert_eq!(hog_stats["containers"].as_array().map(Vec::len), Some(2));

    // kubectl top, with no add-on.
    let started = Instant::now();
    let top_nodes = c.eventually(&["top", "nodes"], &node, Duration::from_secs(60));
    eprintln!("kubectl top nodes ({:?}):\n{top_nodes}", started.elapsed());
    assert!(top_nodes.contains("CPU(cores)"), "{top_nodes}");
    let uid = c.ok(&["get", "pod", "hog", "-o", "jsonpath={.metadata.uid}"]);
    let cid = c.ok(&[
        "get",
        "pod",
        "hog",
        "-o",
        "jsonpath={.status.containerStatuses[?(@.name==\"mem\")].containerID}",
    ]);
    let cid = cid.rsplit("://").next().unwrap_or("").to_string();
    // The hog holds its 60 MB once it has started; wait for the figure to settle.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = c.eventually(
            &["top", "pods", "--containers"],
            "mem",
            Duration::from_secs(60),
        );
        let line = out
            .lines()
            .find(|l| l.starts_with("hog ") && l.split_whitespace().nth(1) == Some("mem"))
            .unwrap_or_else(|| panic!("no hog/mem row in\n{out}"));
        assert!(
            out.lines()
                .any(|l| l.starts_with("hog ") && l.contains(" burn ")),
            "{out}"
        );
        let mi: f64 = line
            .split_whitespace()
            .nth(3)
            .and_then(|m| m.strip_suffix("Mi"))
            .and_then(|m| m.parse().ok())
            .unwrap_or_else(|| panic!("memory column in {line:?}"));
        let ws = cgroup_working_set(&uid, &cid) as f64 / (1024.0 * 1024.0);
        if ws > 55.0 && (mi - ws).abs() <= 0.10 * ws {
            eprintln!("kubectl top: {mi}Mi; cgroup working set: {ws:.1}Mi\n{out}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "kubectl top says {mi}Mi, the cgroup's working set is {ws:.1}Mi\n{out}"
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    let all = c.ok(&["top", "pods", "-A"]);
    assert!(all.contains("hog"), "{all}");
    let raw = c.ok(&[
        "get",
        "--raw",
        "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods?labelSelector=app%3Dhog",
    ]);
    let list: serde_json::Value = serde_json::from_str(&raw).expect("PodMetricsList");
    assert_eq!(list["kind"], "PodMetricsList");
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1), "{raw}");
    let cpu = list["items"][0]["containers"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == "burn"))
        .and_then(|c| c["usage"]["cpu"].as_str())
        .expect("burn cpu")
        .to_string();
    assert!(cpu.ends_with('n'), "{cpu}");
    let window = list["items"][0]["window"].as_str().unwrap_or("");
    assert!(window.ends_with('s') && window.len() > 1, "{raw}");
    let err = c.fails(&[
        "get",
        "--raw",
        "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/nope",
    ]);
    assert!(
        err.contains("NotFound") || err.contains("not found"),
        "{err}"
    );

    // pods/proxy to the web pod's port 80.
    let web = c.ok(&[
        "get",
        "pod",
        "-l",
        "app=web",
        "-o",
        "jsonpath={.items[0].metadata.name}",
    ]);
    let page = c.ok(&[
        "get",
        "--raw",
        &format!("/api/v1/namespaces/default/pods/{web}:80/proxy/"),
    ]);
    assert_eq!(page.trim(), format!("web v1 on {web}"));
    let page = c.ok(&[
        "get",
        "--raw",
        "/api/v1/namespaces/default/services/web:http/proxy/index.html",
    ]);
    assert_eq!(page.trim(), format!("web v1 on {web}"));

    // kubectl proxy, then services/name:port/proxy/.
    let port = free_port();
    let mut proxy = c
        .kubectl_command("kubectl", &["proxy", &format!("--port={port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl proxy");
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "kubectl proxy did not listen");
        std::thread::sleep(Duration::from_millis(100));
    }
    let svc = "/api/v1/namespaces/default/services/web:80/proxy";
    let resp = http(port, "GET", &format!("{svc}/"));
    let moved = http(port, "GET", svc);
    let head = http(port, "HEAD", &format!("{svc}/"));
    let _ = proxy.kill();
    let _ = proxy.wait();
    assert!(
        resp.starts_with("HTTP/1.") && resp.contains(" 200 "),
        "{resp}"
    );
    assert!(
        resp.trim_end().ends_with(&format!("web v1 on {web}")),
        "{resp}"
    );
    assert!(moved.contains(" 301 "), "{moved}");
    assert!(
        moved
            .to_ascii_lowercase()
            .contains(&format!("location: {svc}/").to_ascii_lowercase()),
        "{moved}"
    );
    assert!(head.contains(" 200 "), "{head}");

    // Without RBAC grants: 403 for the proxy and metrics resources.
    let node_pods = format!("/api/v1/nodes/{node}/proxy/pods");
    for args in [
        vec!["get", "--raw", node_pods.as_str(), "--as=nobody"],
        vec![
            "get",
            "--raw",
            "/api/v1/namespaces/default/services/web:80/proxy/",
            "--as=nobody",
        ],
        vec!["top", "pods", "--as=nobody"],
    ] {
        let err = c.fails(&args);
        assert!(
            err.contains("forbidden") || err.contains("Forbidden"),
            "{args:?}: {err}"
        );
    }
    // A viewer may read metrics (upstream's metrics-server role aggregates into view).
    c.ok(&[
        "create",
        "rolebinding",
        "viewer",
        "--clusterrole=view",
        "--user=viewer",
    ]);
    let out = c.ok(&["top", "pods", "--as=viewer"]);
    assert!(out.contains("hog"), "{out}");

    // Upstream's pod-deletion e2e: the terminating pod shows its grace period in the node's
    // `/pods` (the burner ignores SIGTERM as PID 1, so it stays for the whole grace period).
    c.ok(&["delete", "pod", "hog", "--grace-period=20", "--wait=false"]);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let pods: serde_json::Value =
            serde_json::from_str(&c.ok(&["get", "--raw", &node_pods])).expect("PodList");
        let hog = pods["items"]
            .as_array()
            .and_then(|a| a.iter().find(|p| p["metadata"]["name"] == "hog"))
            .cloned()
            .unwrap_or_default();
        if hog["metadata"]["deletionGracePeriodSeconds"] == 20
            && hog["metadata"]["deletionTimestamp"].is_string()
        {
            break;
        }
        assert!(Instant::now() < deadline, "no terminating hog in {pods}");
        std::thread::sleep(Duration::from_millis(200));
    }
    c.ok(&["delete", "pod", "hog", "--grace-period=0", "--force"]);
    c.ok(&["delete", "deployment", "web"]);
}

/// Two nodes: `kubectl top nodes` lists both, a pod on the joined node has PodMetrics from that
/// node's agent, and `nodes/proxy` and `pods/proxy` reach the other node's agent and pod.
#[test]
fn metrics_and_proxy_across_two_nodes() {
    let cidr = format!("100.64.{}.0/23", 76 + 2 * (std::process::id() % 8));
    let c = Cluster::start_with(cidr, &["--node-name", "node-a"]);
    build_web_images(&c);
    let b = c.join_agent("node-b", &[]);
    c.copy_images(&b.data_dir, &["web:v1"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = c.ok(&[
            "get",
            "nodes",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}",
        ]);
        if out.contains("node-a=True") && out.contains("node-b=True") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "nodes never Ready: {out}\nnode-b log:\n{}",
            b.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    apply(
        &c,
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: far\nspec:\n  nodeName: node-b\n  containers:\n  - name: web\n    image: web:v1\n",
        "far.yaml",
    );
    c.ok(&["wait", "--for=condition=Ready", "pod/far", "--timeout=120s"]);

    let top = c.eventually(&["top", "nodes"], "node-b", Duration::from_secs(60));
    assert!(top.contains("node-a"), "{top}");
    let pods = c.eventually(
        &["top", "pods", "--containers"],
        "far",
        Duration::from_secs(60),
    );
    assert!(pods.contains("web"), "{pods}");
    let on_b = c.ok(&["get", "--raw", "/api/v1/nodes/node-b/proxy/pods"]);
    assert!(on_b.contains("\"far\""), "{on_b}");
    let on_a = c.ok(&["get", "--raw", "/api/v1/nodes/node-a/proxy/pods"]);
    assert!(!on_a.contains("\"far\""), "{on_a}");
    let page = c.ok(&["get", "--raw", "/api/v1/namespaces/default/pods/far/proxy/"]);
    assert_eq!(page.trim(), "web v1 on far");
    c.ok(&["delete", "pod", "far", "--grace-period=1"]);
    drop(b);
}
