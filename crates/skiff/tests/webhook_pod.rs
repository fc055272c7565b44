//! Admission webhooks served from a pod, as operators ship them: the example webhook server
//! (examples/admission_webhook.rs) built into an image with its own TLS certificate, run by a
//! Deployment behind a Service, and registered with mutating and validating webhook
//! configurations that name the Service and the CA bundle. The API server reaches it through the
//! Service, mutates with its JSONPatch, refuses with its message, passes its warnings on, and
//! applies the failure policy when it is gone.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use common::cluster::Cluster;

const IMAGE: &str = "greeter-webhook:v1";
const SERVICE_DNS: &str = "greeter.webhook-system.svc";

/// The example webhook server, built by `scripts/test` (`cargo build --example admission_webhook`).
fn example_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let target = exe.parent().and_then(Path::parent).expect("target dir");
    let bin = target.join("examples/admission_webhook");
    assert!(
        bin.exists(),
        "{} missing: run the tests with scripts/test, or `cargo build -p skiff --example admission_webhook` first",
        bin.display()
    );
    bin
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a serving certificate for the Service's DNS name; returns the CA PEM.
fn certificates(dir: &Path) -> String {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=greeter-ca",
    ]);
    openssl(dir, &ca);
    let mut csr = vec!["req"];
    csr.extend(ec);
    csr.extend([
        "-keyout",
        "tls.key",
        "-out",
        "tls.csr",
        "-subj",
        "/CN=greeter",
    ]);
    openssl(dir, &csr);
    std::fs::write(
        dir.join("san.ext"),
        format!("subjectAltName=DNS:{SERVICE_DNS}\n"),
    )
    .expect("ext");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "tls.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "tls.crt",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ],
    );
    std::fs::read_to_string(dir.join("ca.crt")).expect("ca")
}

fn build_webhook_image(c: &Cluster) -> String {
    let ctx = c.dir.path().join("webhook-image");
    let root = ctx.join("rootfs");
    std::fs::create_dir_all(root.join("tls")).expect("rootfs");
    let ca = certificates(&root.join("tls"));
    for scratch in ["ca.key", "tls.csr", "san.ext", "ca.srl"] {
        let _ = std::fs::remove_file(root.join("tls").join(scratch));
    }
    common::cluster::copy_with_libraries(&example_binary(), &root, "webhook");
    std::fs::write(
        ctx.join("Containerfile"),
        "FROM scratch\nCOPY rootfs/ /\nENTRYPOINT [\"/webhook\"]\n\
         CMD [\"/tls/tls.crt\", \"/tls/tls.key\", \"8443\"]\n",
    )
    .expect("Containerfile");
    common::cluster::build_image(&c.data_dir(), IMAGE, &ctx);
    ca
}

fn apply(c: &Cluster, name: &str, yaml: &str) {
    let path = c.dir.path().join(format!("{name}.yaml"));
    std::fs::write(&path, yaml).expect("manifest");
    c.ok(&["apply", "-f", path.to_str().expect("utf8")]);
}

const SERVER: &str = r#"apiVersion: v1
kind: Namespace
metadata:
  name: webhook-system
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: greeter
  namespace: webhook-system
spec:
  replicas: 1
  selector:
    matchLabels: {app: greeter}
  template:
    metadata:
      labels: {app: greeter}
    spec:
      automountServiceAccountToken: false
      terminationGracePeriodSeconds: 1
      containers:
      - name: webhook
        image: greeter-webhook:v1
        imagePullPolicy: Never
        ports:
        - containerPort: 8443
        readinessProbe:
          tcpSocket: {port: 8443}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: greeter
  namespace: webhook-system
spec:
  selector: {app: greeter}
  ports:
  - port: 443
    targetPort: 8443
---
apiVersion: v1
kind: Namespace
metadata:
  name: greeted
  labels: {greetings: "on"}
"#;

fn configurations(ca_bundle: &str) -> String {
    let webhook = |name: &str, path: &str| {
        format!(
            r#"- name: {name}
  clientConfig:
    caBundle: {ca_bundle}
    service: {{name: greeter, namespace: webhook-system, path: {path}}}
  rules:
  - operations: [CREATE, UPDATE]
    apiGroups: [""]
    apiVersions: [v1]
    resources: [configmaps]
  namespaceSelector:
    matchLabels: {{greetings: "on"}}
  failurePolicy: Fail
  sideEffects: None
  admissionReviewVersions: [v1]
"#
        )
    };
    format!(
        "apiVersion: admissionregistration.k8s.io/v1\nkind: MutatingWebhookConfiguration\n\
         metadata:\n  name: greeter\nwebhooks:\n{}---\n\
         apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingWebhookConfiguration\n\
         metadata:\n  name: greeter\nwebhooks:\n{}",
        webhook("mutate.greeter.skiff.dev", "/mutate"),
        webhook("validate.greeter.skiff.dev", "/validate"),
    )
}

#[test]
#[ignore = "needs root: a cluster whose agent runs pods (namespaces, cgroups, CNI, nftables)"]
fn webhooks_served_from_a_pod_mutate_deny_and_warn() {
    assert!(nix::unistd::geteuid().is_root(), "cluster tests need root");
    let c = Cluster::start();
    let ca = build_webhook_image(&c);
    apply(&c, "server", SERVER);
    c.ok(&[
        "wait",
        "-n",
        "webhook-system",
        "--for=condition=Available",
        "deployment/greeter",
        "--timeout=120s",
    ]);
    let ca_bundle = base64::engine::general_purpose::STANDARD.encode(ca);
    apply(&c, "webhooks", &configurations(&ca_bundle));

    // Mutated through the Service, with the validating webhook's warning passed on.
    let (code, _, err) = c.kubectl(&[
        "create",
        "configmap",
        "plain",
        "-n",
        "greeted",
        "--from-literal=a=b",
    ]);
    assert_eq!(code, 0, "{err}\n{}", c.log());
    assert!(
        err.contains("Warning: this object has no owner label"),
        "{err}"
    );
    let label = c.ok(&[
        "get",
        "configmap",
        "plain",
        "-n",
        "greeted",
        "-o",
        "jsonpath={.metadata.labels.greeted-by}",
    ]);
    assert_eq!(label, "skiff-webhook");

    // Refused with the webhook's message.
    let deny = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: refused\n  namespace: greeted\n  labels: {deny: \"true\", owner: me}\n";
    let path = c.dir.path().join("deny.yaml");
    std::fs::write(&path, deny).expect("manifest");
    let err = c.fails(&["create", "-f", path.to_str().expect("utf8")]);
    assert!(
        err.contains("admission webhook \"validate.greeter.skiff.dev\" denied the request: objects labelled deny=true are not welcome here"),
        "{err}"
    );

    // Namespaces outside the selector are not sent to the webhooks.
    c.ok(&[
        "create",
        "configmap",
        "elsewhere",
        "-n",
        "default",
        "--from-literal=a=b",
    ]);
    let labels = c.ok(&[
        "get",
        "configmap",
        "elsewhere",
        "-n",
        "default",
        "-o",
        "jsonpath={.metadata.labels}",
    ]);
    assert!(!labels.contains("greeted-by"), "{labels}");

    // With the webhook gone, failurePolicy Fail refuses the write.
    c.ok(&[
        "scale",
        "-n",
        "webhook-system",
        "deployment/greeter",
        "--replicas=0",
    ]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (code, _, err) = c.kubectl(&[
            "create",
            "configmap",
            "late",
            "-n",
            "greeted",
            "--from-literal=a=b",
        ]);
        if code != 0 {
            assert!(
                err.contains("failed calling webhook \"mutate.greeter.skiff.dev\""),
                "{err}"
            );
            break;
        }
        // The pod was still terminating: undo and retry.
        c.ok(&["delete", "configmap", "late", "-n", "greeted"]);
        assert!(
            std::time::Instant::now() < deadline,
            "writes still pass without the webhook"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}
