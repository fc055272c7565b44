//! Node identities on a real two-node cluster (root): each agent exchanged the join token for
//! its own client certificate and runs on it; a node's credential reads the Secrets of pods on
//! that node only, and cannot create pods, delete other nodes or read arbitrary Secrets.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::cluster::{build_web_images, Cluster};

fn node_kubeconfig(data_dir: &Path) -> PathBuf {
    data_dir.join("agent/pki/node.kubeconfig")
}

/// kubectl with another kubeconfig (the cluster's private home for the discovery cache).
fn kubectl_as(c: &Cluster, kubeconfig: &Path, args: &[&str]) -> (i32, String, String) {
    let out = c
        .kubectl_command("kubectl", args)
        .env("KUBECONFIG", kubeconfig)
        .output()
        .expect("run kubectl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn denied(c: &Cluster, kubeconfig: &Path, args: &[&str], message: &str) {
    let (code, out, err) = kubectl_as(c, kubeconfig, args);
    assert_ne!(code, 0, "kubectl {args:?} should be denied: {out}");
    assert!(
        err.contains("Forbidden") && err.contains(message),
        "kubectl {args:?}: {err}"
    );
}

#[test]
#[ignore = "needs root: a cluster whose agents run pods (namespaces, cgroups, CNI, nftables)"]
fn a_node_reads_only_the_secrets_of_its_own_pods() {
    assert!(nix::unistd::geteuid().is_root(), "cluster tests need root");
    let cidr = format!("100.64.{}.0/23", 60 + 2 * (std::process::id() % 8));
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

    // The files each agent wrote: its own certificate, key and kubeconfig, private.
    let (kc_a, kc_b) = (node_kubeconfig(&c.data_dir()), node_kubeconfig(&b.data_dir));
    for kc in [&kc_a, &kc_b] {
        let dir = kc.parent().expect("pki dir");
        for f in ["client-node.crt", "client-node.key", "node.kubeconfig"] {
            let mode = std::fs::metadata(dir.join(f))
                .unwrap_or_else(|e| panic!("{}: {e}", dir.join(f).display()))
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "{} is private", dir.join(f).display());
        }
    }

    // A Secret used only by a pod on node-b. The pod runs: node-b's agent read the Secret
    // with its own certificate.
    c.ok(&[
        "create",
        "secret",
        "generic",
        "only-b",
        "--from-literal=password=hunter2",
    ]);
    c.ok(&[
        "create",
        "secret",
        "generic",
        "random",
        "--from-literal=k=v",
    ]);
    let manifest = c.dir.path().join("pod-b.yaml");
    std::fs::write(
        &manifest,
        r#"apiVersion: v1
kind: Pod
metadata:
  name: on-b
spec:
  nodeName: node-b
  containers:
  - name: web
    image: web:v1
    volumeMounts:
    - name: s
      mountPath: /secret
  volumes:
  - name: s
    secret:
      secretName: only-b
"#,
    )
    .expect("manifest");
    c.ok(&["apply", "-f", manifest.to_str().expect("utf8")]);
    c.ok(&["wait", "--for=condition=Ready", "pod/on-b", "--timeout=90s"]);
    let out = c.ok(&["exec", "on-b", "--", "cat", "/secret/password"]);
    assert_eq!(out.trim(), "hunter2");
    // Both agents did all their work within their node's permissions (and the logs are
    // real: the server logged issuing both certificates).
    assert_eq!(
        c.log().matches("issued a node client certificate").count(),
        2,
        "{}",
        c.log()
    );
    for (who, log) in [("node-a (server)", c.log()), ("node-b", b.log())] {
        let refused: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("forbidden") || l.contains("Forbidden") || l.contains(" 403"))
            .collect();
        assert!(refused.is_empty(), "{who} was refused: {refused:#?}");
    }

    // node-a's credential: 403 on node-b's Secret; node-b's reads it.
    denied(
        &c,
        &kc_a,
        &["get", "secret", "only-b"],
        r#"secrets "only-b" is forbidden: User "system:node:node-a" cannot get resource "secrets" in API group "" in the namespace "default": no relationship found between node 'node-a' and this object"#,
    );
    let (code, out, err) = kubectl_as(
        &c,
        &kc_b,
        &["get", "secret", "only-b", "-o", "jsonpath={.data.password}"],
    );
    assert_eq!(code, 0, "node-b reads its pod's secret: {err}");
    assert_eq!(out.trim(), "aHVudGVyMg==");
    // No random Secret, no normal pod, no other node's deletion.
    denied(
        &c,
        &kc_a,
        &["get", "secret", "random"],
        "no relationship found between node 'node-a' and this object",
    );
    denied(
        &c,
        &kc_b,
        &["get", "secrets"],
        r#"User "system:node:node-b" cannot list resource "secrets""#,
    );
    denied(
        &c,
        &kc_a,
        &[
            "run",
            "evil",
            "--image=web:v1",
            "--overrides={\"spec\":{\"nodeName\":\"node-a\"}}",
        ],
        r#"pod does not have "kubernetes.io/config.mirror" annotation, node "node-a" can only create mirror pods"#,
    );
    denied(
        &c,
        &kc_a,
        &["delete", "node", "node-b"],
        r#"nodes "node-b" is forbidden: User "system:node:node-a" cannot delete resource "nodes" in API group "" at the cluster scope"#,
    );
    c.ok(&["get", "node", "node-b"]);

    // The join token only bootstraps.
    let token = std::fs::read_to_string(c.data_dir().join("node-token")).expect("token");
    let ca = c.data_dir().join("server/tls/ca.crt");
    let (code, _, err) = c
        .kubectl_command(
            "kubectl",
            &[
                "--server",
                &format!("https://{}:{}", c.host, c.port),
                "--certificate-authority",
                ca.to_str().expect("utf8"),
                "--token",
                token.trim(),
                "get",
                "secrets",
                "-A",
            ],
        )
        .env("KUBECONFIG", "/dev/null")
        .output()
        .map(|o| {
            (
                o.status.code().unwrap_or(-1),
                String::new(),
                String::from_utf8_lossy(&o.stderr).into_owned(),
            )
        })
        .expect("kubectl");
    assert_ne!(code, 0);
    assert!(
        err.contains(r#"User "system:bootstrap:skiff-node" cannot list resource "secrets" in API group "" at the cluster scope"#),
        "{err}"
    );
}
