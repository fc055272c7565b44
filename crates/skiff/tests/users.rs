//! User identities on a real `skiff server`: the certificates.k8s.io CSR flow with
//! `kubectl certificate approve|deny` (openssl makes the keys and requests), the kubelet client
//! signer, and `skiff kubeconfig`; every issued credential is checked with `kubectl auth whoami`
//! and its notAfter with openssl.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine;
use common::cluster::Cluster;

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// A new EC key and a CSR for `subject`: (key path, CSR PEM).
fn openssl_csr(dir: &Path, name: &str, subject: &str) -> (PathBuf, String) {
    let key = dir.join(format!("{name}.key"));
    let csr = dir.join(format!("{name}.csr"));
    let status = Command::new("openssl")
        .args(["req", "-new", "-newkey", "ec", "-pkeyopt"])
        .arg("ec_paramgen_curve:P-256")
        .args(["-nodes", "-subj", subject, "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&csr)
        .stderr(Stdio::null())
        .status()
        .expect("openssl");
    assert!(status.success());
    (key, std::fs::read_to_string(&csr).expect("csr"))
}

fn create_csr(c: &Cluster, name: &str, pem: &str, signer: &str, usages: &[&str]) {
    let usages: Vec<String> = usages.iter().map(|u| format!("  - {u}\n")).collect();
    let yaml = format!(
        "apiVersion: certificates.k8s.io/v1\nkind: CertificateSigningRequest\nmetadata:\n  name: {name}\nspec:\n  request: {}\n  signerName: {signer}\n  expirationSeconds: 86400\n  usages:\n{}",
        b64(pem.as_bytes()),
        usages.concat()
    );
    let path = c.dir.path().join(format!("{name}-csr.yaml"));
    std::fs::write(&path, yaml).expect("write csr");
    c.ok(&["create", "-f", &path.to_string_lossy()]);
}

/// A kubeconfig for `key` + the issued certificate against the cluster.
fn kubeconfig_for(c: &Cluster, name: &str, key: &Path, cert_pem: &[u8]) -> PathBuf {
    let admin = std::fs::read_to_string(c.kubeconfig()).expect("admin kubeconfig");
    let field = |k: &str| {
        admin
            .lines()
            .find_map(|l| l.trim().strip_prefix(k))
            .expect("field")
            .trim()
            .to_string()
    };
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\n    certificate-authority-data: {}\nusers:\n- name: u\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\n",
        field("server: "),
        field("certificate-authority-data: "),
        b64(cert_pem),
        b64(&std::fs::read(key).expect("key")),
    );
    let path = c.dir.path().join(format!("{name}.kubeconfig"));
    std::fs::write(&path, text).expect("kubeconfig");
    path
}

/// `kubectl auth whoami` with `kubeconfig`: (user, groups).
fn whoami(c: &Cluster, kubeconfig: &Path) -> (String, Vec<String>) {
    let out = c.ok(&[
        "--kubeconfig",
        &kubeconfig.to_string_lossy(),
        "auth",
        "whoami",
        "-o",
        "json",
    ]);
    let review: serde_json::Value = serde_json::from_str(&out).expect("json");
    let info = &review["status"]["userInfo"];
    let groups = info["groups"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|g| g.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    (info["username"].as_str().unwrap_or("").to_string(), groups)
}

/// Seconds until the PEM certificate's notAfter.
fn seconds_left(cert_pem: &[u8]) -> i64 {
    let mut child = Command::new("openssl")
        .args(["x509", "-noout", "-enddate", "-dateopt", "iso_8601"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("openssl");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(cert_pem)
        .expect("write");
    let out = child.wait_with_output().expect("openssl");
    let text = String::from_utf8_lossy(&out.stdout);
    let date = text.trim().strip_prefix("notAfter=").expect("notAfter");
    let ts: jiff::Timestamp = date.replace(' ', "T").parse().expect("date");
    ts.as_second() - jiff::Timestamp::now().as_second()
}

/// Waits for the certificate of CSR `name`; its PEM.
fn issued(c: &Cluster, name: &str) -> Vec<u8> {
    let path = "jsonpath={.status.certificate}";
    let csr = format!("csr/{name}");
    let out = c.eventually(&["get", &csr, "-o", path], "LS0t", Duration::from_secs(20));
    base64::engine::general_purpose::STANDARD
        .decode(out.trim())
        .expect("base64")
}

#[test]
fn users_get_certificates_through_csrs_and_skiff_kubeconfig() {
    let c = Cluster::start();
    let dir = c.dir.path().to_path_buf();
    let client = "kubernetes.io/kube-apiserver-client";

    // Approve: alice's request is signed and the certificate is alice in dev.
    let (key, pem) = openssl_csr(&dir, "alice", "/CN=alice/O=dev");
    create_csr(&c, "alice", &pem, client, &["client auth"]);
    let pending = c.ok(&["get", "csr", "alice"]);
    assert!(
        pending.contains("system:admin") && pending.contains("Pending"),
        "{pending}"
    );
    let out = c.ok(&["certificate", "approve", "alice"]);
    assert!(out.contains("approved"), "{out}");
    let cert = issued(&c, "alice");
    let left = seconds_left(&cert);
    assert!((85_900..=86_100).contains(&left), "{left}");
    assert!(c.ok(&["get", "csr", "alice"]).contains("Approved,Issued"));
    let alice = kubeconfig_for(&c, "alice", &key, &cert);
    assert_eq!(
        whoami(&c, &alice),
        (
            "alice".to_string(),
            vec!["dev".to_string(), "system:authenticated".into()]
        )
    );

    // Deny: bob's request never gets a certificate.
    let (_, pem) = openssl_csr(&dir, "bob", "/CN=bob");
    create_csr(&c, "bob", &pem, client, &["client auth"]);
    c.ok(&["certificate", "deny", "bob"]);
    std::thread::sleep(Duration::from_secs(2));
    let status = c.ok(&["get", "csr", "bob", "-o", "jsonpath={.status}"]);
    assert!(
        status.contains("Denied") && !status.contains("\"certificate\""),
        "{status}"
    );

    // The kubelet client signer: a node identity in system:nodes.
    let (nkey, pem) = openssl_csr(&dir, "node", "/CN=system:node:n9/O=system:nodes");
    let usages = ["digital signature", "key encipherment", "client auth"];
    create_csr(
        &c,
        "node-n9",
        &pem,
        "kubernetes.io/kube-apiserver-client-kubelet",
        &usages,
    );
    c.ok(&["certificate", "approve", "node-n9"]);
    let cert = issued(&c, "node-n9");
    let node = kubeconfig_for(&c, "node", &nkey, &cert);
    assert_eq!(
        whoami(&c, &node),
        (
            "system:node:n9".to_string(),
            vec!["system:nodes".to_string(), "system:authenticated".into()]
        )
    );

    // `skiff kubeconfig`: carol in two groups for two hours.
    let out_path = dir.join("carol.kubeconfig");
    let skiff = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_skiff"))
            .arg("--data-dir")
            .arg(c.data_dir())
            .arg("kubeconfig")
            .args(args)
            .output()
            .expect("skiff kubeconfig")
    };
    let out = skiff(&[
        "--user",
        "carol",
        "--group",
        "dev",
        "--group",
        "qa",
        "--ttl",
        "2h",
        "--out",
        &out_path.to_string_lossy(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&out_path)
            .expect("kubeconfig")
            .permissions(),
    );
    assert_eq!(mode & 0o077, 0, "{mode:o}");
    assert_eq!(
        whoami(&c, &out_path),
        (
            "carol".to_string(),
            vec![
                "dev".to_string(),
                "qa".into(),
                "system:authenticated".into()
            ]
        )
    );
    let text = std::fs::read_to_string(&out_path).expect("kubeconfig");
    let cert_b64 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("client-certificate-data: "))
        .expect("certificate");
    let cert = base64::engine::general_purpose::STANDARD
        .decode(cert_b64)
        .expect("base64");
    let left = seconds_left(&cert);
    assert!((7_100..=7_200).contains(&left), "{left}");
    // Printed to stdout without --out; over a year is refused.
    let out = skiff(&["--user", "dave", "--ttl", "30m"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("client-certificate-data: "));
    let out = skiff(&["--user", "dave", "--ttl", "400d"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("invalid --ttl \"400d\": at most 365d"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
