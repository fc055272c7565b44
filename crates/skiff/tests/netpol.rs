//! NetworkPolicy enforcement on a real node (issue 15): default deny, named ports, namespace
//! selectors, ipBlock with except, Service traffic judged after DNAT, egress, and the table's
//! removal when the node stops. Pods talk to each other with busybox `wget` through
//! `kubectl exec` (traffic from the node itself is always allowed, so the test host cannot be
//! the client). Real clusters: run as root with `cargo test -p skiff --test netpol -- --ignored`.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::cluster::Cluster;

fn apply(c: &Cluster, name: &str, yaml: &str) {
    let path = c.dir.path().join(format!("{name}.yaml"));
    std::fs::write(&path, yaml).expect("manifest");
    c.ok(&["apply", "-f", path.to_str().expect("utf8")]);
}

/// A web:v1 pod serving the same page on port 80 (`http`) and 8080 (`alt`).
fn server_pod(ns: &str, name: &str, app: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: {ns}
  labels: {{app: {app}}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: web:v1
    command: ["/bin/sh", "-c", "mkdir -p /www && hostname > /www/index.html && httpd -p 80 -h /www && httpd -p 8080 -h /www && exec sleep 3600"]
    ports:
    - {{name: http, containerPort: 80}}
    - {{name: alt, containerPort: 8080}}
"#
    )
}

/// Whether pod `from` gets the page of `ip:port` (a new connection, 1 s timeout).
fn reaches(c: &Cluster, ns: &str, from: &str, ip: &str, port: u16) -> bool {
    let url = format!("http://{ip}:{port}/");
    // busybox's `wget -T` crashes; `timeout` bounds a dropped connect instead.
    let (code, out, _) = c.kubectl(&[
        "exec", "-n", ns, from, "--", "timeout", "1", "wget", "-qO-", &url,
    ]);
    code == 0 && !out.trim().is_empty()
}

/// Polls until `reaches` gives `want`; returns how long that took.
fn until(c: &Cluster, ns: &str, from: &str, ip: &str, port: u16, want: bool) -> Duration {
    let start = Instant::now();
    loop {
        if reaches(c, ns, from, ip, port) == want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{ns}/{from} -> {ip}:{port} never became {}\n{}",
            if want { "reachable" } else { "blocked" },
            nft_dump()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn nft_dump() -> String {
    Command::new("nft")
        .args(["list", "ruleset"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

fn pod_ip(c: &Cluster, ns: &str, name: &str) -> String {
    c.ok(&[
        "get",
        "pod",
        "-n",
        ns,
        name,
        "-o",
        "jsonpath={.status.podIP}",
    ])
    .trim()
    .to_string()
}

#[test]
#[ignore = "real cluster: needs root, nft and the CNI plugins"]
fn network_policies_are_enforced() {
    let c = Cluster::start();
    common::cluster::build_web_images_into(&c.data_dir(), &c.dir.path().join("web"), &["v1"]);
    let table = skiff_net::netpol::table_name(&c.data_dir());
    apply(
        &c,
        "namespaces",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: np-a\n---\n\
         apiVersion: v1\nkind: Namespace\nmetadata:\n  name: np-b\n  labels: {team: b}\n",
    );
    let pods = [
        server_pod("np-a", "srv", "srv"),
        server_pod("np-a", "cli", "cli"),
        server_pod("np-b", "out", "cli"),
    ]
    .join("---\n");
    apply(&c, "pods", &pods);
    for (ns, p) in [("np-a", "srv"), ("np-a", "cli"), ("np-b", "out")] {
        c.ok(&[
            "wait",
            "-n",
            ns,
            "--for=condition=Ready",
            &format!("pod/{p}"),
            "--timeout=90s",
        ]);
    }
    let srv = pod_ip(&c, "np-a", "srv");
    let cli = pod_ip(&c, "np-a", "cli");
    assert!(
        reaches(&c, "np-a", "cli", &srv, 80),
        "no policy: open\n{}",
        nft_dump()
    );
    assert!(reaches(&c, "np-b", "out", &srv, 8080), "no policy: open");

    // Default deny (ingress) for np-a: applied within a second of the API accepting it.
    apply(
        &c,
        "deny",
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny, namespace: np-a}\n\
         spec: {podSelector: {}, policyTypes: [Ingress]}\n",
    );
    let started = Instant::now();
    loop {
        let set = Command::new("nft")
            .args(["list", "set", "ip", &table, "ingress-isolated"])
            .output()
            .expect("nft");
        if String::from_utf8_lossy(&set.stdout).contains(&srv) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "not applied\n{}",
            nft_dump()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let applied = started.elapsed();
    let blocked_after = until(&c, "np-a", "cli", &srv, 80, false);
    eprintln!(
        "default deny: in the node's table {} ms after kubectl apply returned; a probe was refused {} ms after that (probes time out after 1 s)",
        applied.as_millis(),
        blocked_after.as_millis()
    );
    // Correctness bounds, not a benchmark.
    assert!(blocked_after < Duration::from_secs(5), "{blocked_after:?}");
    assert!(!reaches(&c, "np-b", "out", &srv, 80));
    let listed = c.ok(&["get", "networkpolicy", "-n", "np-a"]);
    assert!(
        listed.contains("POD-SELECTOR") && listed.contains("<none>"),
        "{listed}"
    );

    // A named port re-opens exactly that port for app=cli in the same namespace.
    apply(
        &c,
        "allow-http",
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: allow-http, namespace: np-a}\n\
         spec:\n  podSelector: {matchLabels: {app: srv}}\n  ingress:\n  - from: [{podSelector: {matchLabels: {app: cli}}}]\n    ports: [{port: http}]\n",
    );
    until(&c, "np-a", "cli", &srv, 80, true);
    assert!(
        !reaches(&c, "np-a", "cli", &srv, 8080),
        "another port stays blocked"
    );
    assert!(
        !reaches(&c, "np-b", "out", &srv, 80),
        "a podSelector alone means the policy's namespace"
    );

    // namespaceSelector: np-b (team=b) may use 8080 (a port range through endPort).
    apply(
        &c,
        "allow-team-b",
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: allow-team-b, namespace: np-a}\n\
         spec:\n  podSelector: {matchLabels: {app: srv}}\n  ingress:\n  - from: [{namespaceSelector: {matchLabels: {team: b}}}]\n    ports: [{protocol: TCP, port: 8000, endPort: 8100}]\n",
    );
    until(&c, "np-b", "out", &srv, 8080, true);
    assert!(!reaches(&c, "np-b", "out", &srv, 80));

    // ipBlock with except: the whole pod range but the cli pod.
    c.ok(&[
        "delete",
        "networkpolicy",
        "-n",
        "np-a",
        "allow-http",
        "allow-team-b",
    ]);
    apply(
        &c,
        "allow-block",
        &format!(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: allow-block, namespace: np-a}}\n\
             spec:\n  podSelector: {{matchLabels: {{app: srv}}}}\n  ingress:\n  - from: [{{ipBlock: {{cidr: {}, except: [{cli}/32]}}}}]\n",
            c.cluster_cidr
        ),
    );
    until(&c, "np-b", "out", &srv, 80, true);
    assert!(
        !reaches(&c, "np-a", "cli", &srv, 80),
        "the except block stays denied"
    );

    // Service traffic is judged after DNAT: the pod's IP and target port.
    apply(
        &c,
        "svc",
        "apiVersion: v1\nkind: Service\nmetadata: {name: srv, namespace: np-a}\n\
         spec:\n  selector: {app: srv}\n  ports: [{port: 9999, targetPort: http}]\n",
    );
    let svc_ip = c
        .ok(&[
            "get",
            "svc",
            "-n",
            "np-a",
            "srv",
            "-o",
            "jsonpath={.spec.clusterIP}",
        ])
        .trim()
        .to_string();
    until(&c, "np-b", "out", &svc_ip, 9999, true);
    assert!(
        !reaches(&c, "np-a", "cli", &svc_ip, 9999),
        "cli is denied through the Service too"
    );

    // Egress: deny everything from np-b, then allow only srv:80 in np-a.
    c.ok(&["delete", "networkpolicy", "-n", "np-a", "--all"]);
    until(&c, "np-a", "cli", &srv, 80, true);
    apply(
        &c,
        "egress-deny",
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny-out, namespace: np-b}\n\
         spec: {podSelector: {}, policyTypes: [Egress]}\n",
    );
    until(&c, "np-b", "out", &srv, 80, false);
    assert!(
        reaches(&c, "np-a", "cli", &srv, 80),
        "only np-b is isolated"
    );
    apply(
        &c,
        "egress-allow",
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: to-srv, namespace: np-b}\n\
         spec:\n  podSelector: {}\n  policyTypes: [Egress]\n  egress:\n  - to: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: np-a}}, podSelector: {matchLabels: {app: srv}}}]\n    ports: [{port: 80}]\n",
    );
    until(&c, "np-b", "out", &srv, 80, true);
    assert!(!reaches(&c, "np-b", "out", &srv, 8080));
    assert!(!reaches(&c, "np-b", "out", &cli, 80));

    // A pod created under the egress policies is isolated like the others.
    apply(&c, "late", &server_pod("np-b", "late", "late"));
    c.ok(&[
        "wait",
        "-n",
        "np-b",
        "--for=condition=Ready",
        "pod/late",
        "--timeout=90s",
    ]);
    let late = pod_ip(&c, "np-b", "late");
    assert!(!reaches(&c, "np-b", "late", &srv, 8080));
    assert!(reaches(&c, "np-b", "late", &srv, 80));
    assert!(
        reaches(&c, "np-a", "cli", &late, 80),
        "egress isolation only"
    );

    // A new pod is isolated before its containers start: its very first connection, made
    // before the API shows the pod's IP, is already judged.
    apply(
        &c,
        "first",
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata: {{name: first, namespace: np-b}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: web:v1
    command: ["/bin/sh", "-c", "if timeout 1 wget -qO- http://{srv}:8080/ >/dev/null 2>&1; then echo LEAKED; else echo BLOCKED; fi; exec sleep 3600"]
"#
        ),
    );
    let logs = c.eventually(
        &["logs", "-n", "np-b", "first"],
        "ED",
        Duration::from_secs(60),
    );
    assert!(logs.contains("BLOCKED"), "{logs}");

    let listed = Command::new("nft")
        .args(["list", "table", "ip", &table])
        .output()
        .expect("nft");
    assert!(
        listed.status.success(),
        "the policy table exists while the node runs"
    );
    drop(c);
    let listed = Command::new("nft")
        .args(["list", "table", "ip", &table])
        .output()
        .expect("nft");
    assert!(
        !listed.status.success(),
        "the policy table is gone with the node"
    );
}
