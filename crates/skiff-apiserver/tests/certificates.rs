//! The CertificateSigningRequest API on a real listener with the real kubectl and openssl: a
//! request is recorded with its requestor, approved with `kubectl certificate approve`, signed
//! by the in-process signer, and the certificate authenticates its subject; denial, signer
//! failures, the system:masters restriction, upstream's validation messages, and minted user
//! kubeconfigs (`skiff kubeconfig`'s library side).

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use serde_json::Value;

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// Runs kubectl; (success, stdout, stderr).
fn kubectl(kubeconfig: &Path, args: &[&str], stdin: &str) -> (bool, String, String) {
    let mut child = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("kubectl output");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(kubeconfig: &Path, args: &[&str], stdin: &str) -> String {
    let (success, out, err) = kubectl(kubeconfig, args, stdin);
    assert!(success, "kubectl {args:?}: {err}");
    out
}

/// A new EC key and a PEM CSR for `subject` (openssl's `/CN=x/O=y` form): (key path, csr PEM).
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

fn csr_yaml(name: &str, pem: &str, signer: &str, usages: &[&str], seconds: Option<u64>) -> String {
    let usages: Vec<String> = usages.iter().map(|u| format!("  - {u}\n")).collect();
    let exp = seconds.map_or(String::new(), |s| format!("  expirationSeconds: {s}\n"));
    format!(
        "apiVersion: certificates.k8s.io/v1\nkind: CertificateSigningRequest\nmetadata:\n  name: {name}\nspec:\n  request: {}\n  signerName: {signer}\n{exp}  usages:\n{}",
        b64(pem.as_bytes()),
        usages.concat()
    )
}

fn get_json(kubeconfig: &Path, name: &str) -> Value {
    let out = ok(kubeconfig, &["get", "csr", name, "-o", "json"], "");
    serde_json::from_str(&out).expect("json")
}

/// Polls until `pred` holds for the CSR (10 s).
fn wait_for(kubeconfig: &Path, name: &str, pred: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..100 {
        let obj = get_json(kubeconfig, name);
        if pred(&obj) {
            return obj;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("csr {name} never got there: {}", get_json(kubeconfig, name));
}

/// A kubeconfig for `key` + `cert_pem` against the admin kubeconfig's cluster.
fn user_kubeconfig(dir: &Path, admin: &Path, name: &str, key: &Path, cert_pem: &[u8]) -> PathBuf {
    let admin_text = std::fs::read_to_string(admin).expect("admin kubeconfig");
    let field = |k: &str| {
        admin_text
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
    let path = dir.join(format!("{name}.kubeconfig"));
    std::fs::write(&path, text).expect("write kubeconfig");
    path
}

/// Seconds from now until the PEM certificate's notAfter (openssl's view).
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

/// The identity the server sees for `kubeconfig` (`kubectl auth whoami`).
fn whoami(kubeconfig: &Path) -> (String, Vec<String>) {
    let out = ok(kubeconfig, &["auth", "whoami", "-o", "json"], "");
    let review: Value = serde_json::from_str(&out).expect("json");
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

/// The requestor the server records on a new CSR made with `kubeconfig`.
fn requestor(kubeconfig: &Path, dir: &Path, probe: &str) -> (String, Vec<String>) {
    let (_, pem) = openssl_csr(dir, probe, &format!("/CN={probe}"));
    // The body claims to be the admin: the server records who really asked.
    let yaml = csr_yaml(probe, &pem, "example.com/probe", &["client auth"], None).replace(
        "spec:\n",
        "spec:\n  username: system:admin\n  uid: spoofed\n  groups: [system:masters]\n",
    );
    ok(kubeconfig, &["create", "-f", "-"], &yaml);
    let obj = get_json(kubeconfig, probe);
    assert!(obj["spec"].get("uid").is_none(), "{obj}");
    let groups = obj["spec"]["groups"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|g| g.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    (
        obj["spec"]["username"].as_str().unwrap_or("").to_string(),
        groups,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approved_request_is_signed_and_authenticates_its_subject() {
    let srv = common::start().await;
    let kc = srv.kubeconfig.clone();
    let dir = srv._dir.path().to_path_buf();
    tokio::task::spawn_blocking(move || {
        let (key, pem) = openssl_csr(&dir, "alice", "/CN=alice/O=dev/O=ops");
        let yaml = csr_yaml(
            "alice",
            &pem,
            "kubernetes.io/kube-apiserver-client",
            &["digital signature", "key encipherment", "client auth"],
            Some(3600),
        );
        ok(&kc, &["create", "-f", "-"], &yaml);
        // The requestor is the creating user, whatever the body said.
        let obj = get_json(&kc, "alice");
        assert_eq!(obj["spec"]["username"], "system:admin");
        assert_eq!(
            obj["spec"]["groups"],
            serde_json::json!(["system:masters", "system:authenticated"])
        );
        let table = ok(&kc, &["get", "csr"], "");
        let header: Vec<&str> = table
            .lines()
            .next()
            .expect("header")
            .split_whitespace()
            .collect();
        assert_eq!(
            header,
            [
                "NAME",
                "AGE",
                "SIGNERNAME",
                "REQUESTOR",
                "REQUESTEDDURATION",
                "CONDITION"
            ]
        );
        let row: Vec<&str> = table
            .lines()
            .nth(1)
            .expect("row")
            .split_whitespace()
            .collect();
        assert_eq!(row[0], "alice");
        assert_eq!(
            row[2..],
            [
                "kubernetes.io/kube-apiserver-client",
                "system:admin",
                "60m",
                "Pending"
            ]
        );
        // Nothing is signed before approval.
        std::thread::sleep(Duration::from_millis(500));
        assert!(get_json(&kc, "alice")["status"]
            .get("certificate")
            .is_none());

        let out = ok(&kc, &["certificate", "approve", "alice"], "");
        assert!(out.contains("approved"), "{out}");
        let obj = wait_for(&kc, "alice", |o| o["status"]["certificate"].is_string());
        let cond = &obj["status"]["conditions"][0];
        assert_eq!(cond["type"], "Approved");
        assert_eq!(cond["reason"], "KubectlApprove");
        assert!(cond["lastUpdateTime"].is_string() && cond["lastTransitionTime"].is_string());
        let cert = base64::engine::general_purpose::STANDARD
            .decode(obj["status"]["certificate"].as_str().expect("certificate"))
            .expect("base64");
        // Requested an hour; issued backdated five minutes.
        let left = seconds_left(&cert);
        assert!((3200..=3300).contains(&left), "{left}");
        let table = ok(&kc, &["get", "csr", "alice"], "");
        assert!(table.contains("Approved,Issued"), "{table}");
        let described = ok(&kc, &["describe", "csr", "alice"], "");
        for part in [
            "Requesting User:",
            "system:admin",
            "kubernetes.io/kube-apiserver-client",
            "Approved,Issued",
            "Common Name:",
            "alice",
            "Organization:",
            "dev",
        ] {
            assert!(described.contains(part), "{part:?} not in {described}");
        }

        // The certificate authenticates as alice in her groups.
        let alice = user_kubeconfig(&dir, &kc, "alice", &key, &cert);
        let (user, groups) = whoami(&alice);
        assert_eq!(user, "alice");
        assert_eq!(groups, ["dev", "ops", "system:authenticated"]);
        // Her requests are recorded as hers.
        assert_eq!(requestor(&alice, &dir, "probe-alice"), (user, groups));
    })
    .await
    .expect("test body");

    // An approval is never joined by a denial (kubectl refuses locally; the API refuses too).
    let api: kube::Api<CertificateSigningRequest> = kube::Api::all(srv.client.clone());
    let mut obj = api.get("alice").await.expect("get");
    let status = obj.status.get_or_insert_with(Default::default);
    let mut denied = status.conditions.as_ref().expect("conditions")[0].clone();
    denied.type_ = "Denied".into();
    denied.last_transition_time = None;
    denied.last_update_time = None;
    status.conditions.get_or_insert_with(Vec::new).push(denied);
    let err = api
        .replace_subresource("approval", "alice", &kube::api::PostParams::default(), &obj)
        .await
        .expect_err("approved and denied");
    assert_eq!(common::status_code(&err), Some(422), "{err}");
    assert!(
        err.to_string()
            .contains("status.conditions: Invalid value: \"Denied\": Approved and Denied conditions are mutually exclusive"),
        "{err}"
    );
    // Nor can it be removed.
    let mut obj = api.get("alice").await.expect("get");
    if let Some(s) = obj.status.as_mut() {
        s.conditions = Some(Vec::new());
    }
    let err = api
        .replace_subresource("approval", "alice", &kube::api::PostParams::default(), &obj)
        .await
        .expect_err("approval removed");
    assert!(
        err.to_string()
            .contains("updates may not remove a condition of type \"Approved\""),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_failed_and_forbidden_requests_get_no_certificate() {
    let srv = common::start().await;
    let kc = srv.kubeconfig.clone();
    let dir = srv._dir.path().to_path_buf();
    tokio::task::spawn_blocking(move || {
        // Denied: never signed.
        let (_, pem) = openssl_csr(&dir, "bob", "/CN=bob");
        let client = "kubernetes.io/kube-apiserver-client";
        ok(&kc, &["create", "-f", "-"], &csr_yaml("bob", &pem, client, &["client auth"], None));
        let out = ok(&kc, &["certificate", "deny", "bob"], "");
        assert!(out.contains("denied"), "{out}");
        std::thread::sleep(Duration::from_millis(800));
        let obj = get_json(&kc, "bob");
        assert_eq!(obj["status"]["conditions"][0]["type"], "Denied");
        assert!(obj["status"].get("certificate").is_none());
        assert!(ok(&kc, &["get", "csr", "bob"], "").contains("Denied"));

        // The signer refuses usages a client certificate cannot have.
        let (_, pem) = openssl_csr(&dir, "carol", "/CN=carol");
        let yaml = csr_yaml("carol", &pem, client, &["client auth", "server auth"], None);
        ok(&kc, &["create", "-f", "-"], &yaml);
        ok(&kc, &["certificate", "approve", "carol"], "");
        let obj = wait_for(&kc, "carol", |o| {
            o["status"]["conditions"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["type"] == "Failed"))
        });
        let failed = &obj["status"]["conditions"][1];
        assert_eq!(failed["reason"], "SignerValidationFailure");
        assert_eq!(failed["message"], "invalid usage for client certificate: server auth");
        assert!(obj["status"].get("certificate").is_none());
        assert!(ok(&kc, &["get", "csr", "carol"], "").contains("Approved,Failed"));

        // No system:masters certificates from the client signer (CertificateSubjectRestriction).
        let (_, pem) = openssl_csr(&dir, "root", "/CN=mallory/O=system:masters");
        let (success, _, err) = kubectl(
            &kc,
            &["create", "-f", "-"],
            &csr_yaml("root", &pem, client, &["client auth"], None),
        );
        assert!(!success);
        assert!(err.contains("certificatesigningrequests.certificates.k8s.io \"root\" is forbidden: use of kubernetes.io/kube-apiserver-client signer with system:masters group is not allowed"), "{err}");

        // Other signers' requests are left alone once approved.
        let (_, pem) = openssl_csr(&dir, "other", "/CN=other");
        ok(&kc, &["create", "-f", "-"], &csr_yaml("other", &pem, "example.com/custom", &["client auth"], None));
        ok(&kc, &["certificate", "approve", "other"], "");
        std::thread::sleep(Duration::from_millis(800));
        assert!(ok(&kc, &["get", "csr", "other"], "").contains(" Approved\n"));
        // Lists filter on spec.signerName.
        let names = ok(
            &kc,
            &["get", "csr", "-o", "name", "--field-selector", "spec.signerName=example.com/custom"],
            "",
        );
        assert_eq!(names.trim(), "certificatesigningrequest.certificates.k8s.io/other");
    })
    .await
    .expect("test body");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_requests_get_upstreams_messages() {
    let srv = common::start().await;
    let kc = srv.kubeconfig.clone();
    let dir = srv._dir.path().to_path_buf();
    tokio::task::spawn_blocking(move || {
        let garbage = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let yaml = csr_yaml("bad", garbage, "example", &[], Some(60));
        let (success, _, err) = kubectl(&kc, &["create", "-f", "-"], &yaml);
        assert!(!success);
        for part in [
            "The CertificateSigningRequest \"bad\" is invalid:",
            "spec.request: Invalid value: ",
            ": PEM block type must be CERTIFICATE REQUEST",
            "spec.usages: Required value",
            "spec.signerName: Invalid value: \"example\": must be a fully qualified domain and path of the form 'example.com/signer-name'",
            "spec.expirationSeconds: Invalid value: 60: may not specify a duration less than 600 seconds (10 minutes)",
        ] {
            assert!(err.contains(part), "missing {part:?} in {err}");
        }
        // A status write cannot approve (only /approval can).
        let (_, pem) = openssl_csr(&dir, "dave", "/CN=dave");
        let client = "kubernetes.io/kube-apiserver-client";
        ok(&kc, &["create", "-f", "-"], &csr_yaml("dave", &pem, client, &["client auth"], None));
        let (success, _, err) = kubectl(
            &kc,
            &["patch", "csr", "dave", "--subresource=status", "--type=merge", "-p",
              r#"{"status":{"conditions":[{"type":"Approved","status":"True"}]}}"#],
            "",
        );
        assert!(!success);
        assert!(err.contains("status.conditions: Forbidden: updates may not add a condition of type \"Approved\""), "{err}");
        // Nor can the main resource: its status is the stored one.
        ok(&kc, &["patch", "csr", "dave", "--type=merge", "-p",
            r#"{"status":{"conditions":[{"type":"Approved","status":"True"}]}}"#], "");
        assert!(get_json(&kc, "dave")["status"].get("conditions").is_none());
        // The main resource cannot change spec or status.
        ok(&kc, &["patch", "csr", "dave", "--type=merge", "-p",
            r#"{"spec":{"username":"root"},"metadata":{"labels":{"a":"b"}}}"#], "");
        let obj = get_json(&kc, "dave");
        assert_eq!(obj["spec"]["username"], "system:admin");
        assert_eq!(obj["metadata"]["labels"]["a"], "b");
    })
    .await
    .expect("test body");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minted_user_kubeconfigs_authenticate_with_their_groups_and_expiry() {
    let srv = common::start().await;
    let dir = srv._dir.path().to_path_buf();
    let text = skiff_apiserver::auth::mint::user_kubeconfig(
        &dir,
        None,
        "alice",
        &["dev".into(), "qa".into()],
        Duration::from_secs(2 * 3600),
    )
    .expect("mint");
    let path = dir.join("alice-minted.kubeconfig");
    std::fs::write(&path, &text).expect("write");
    tokio::task::spawn_blocking(move || {
        let (user, groups) = whoami(&path);
        assert_eq!(user, "alice");
        assert_eq!(groups, ["dev", "qa", "system:authenticated"]);
        assert_eq!(requestor(&path, &dir, "probe-minted"), (user, groups));
        let cert_b64 = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("client-certificate-data: "))
            .expect("cert");
        let cert = base64::engine::general_purpose::STANDARD
            .decode(cert_b64)
            .expect("base64");
        let left = seconds_left(&cert);
        assert!((7100..=7200).contains(&left), "{left}");
        // Out-of-range lifetimes and a missing CA are refused.
        let too_long = skiff_apiserver::auth::mint::user_kubeconfig(
            &dir,
            None,
            "alice",
            &[],
            Duration::from_secs(366 * 86400),
        );
        assert!(too_long.is_err());
        let no_ca = skiff_apiserver::auth::mint::user_kubeconfig(
            &dir.join("nowhere"),
            Some("https://127.0.0.1:1"),
            "alice",
            &[],
            Duration::from_secs(60),
        )
        .unwrap_err()
        .to_string();
        assert!(no_ca.starts_with("no cluster CA in "), "{no_ca}");
    })
    .await
    .expect("test body");
}
