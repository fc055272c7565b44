//! Pod Security admission seen through the real kubectl (issue 12 item 7): a `restricted`
//! namespace rejects a privileged pod with upstream's message and admits a compliant one, the
//! warn level prints kubectl's `Warning:` lines, and labelling a namespace with a stricter
//! enforce level lists the existing pods it would reject. Server only; no root needed.

mod common;

use common::cluster::Cluster;

const COMPLIANT: &str = r#"{"spec": {"securityContext": {"runAsNonRoot": true, "runAsUser": 1000,
  "seccompProfile": {"type": "RuntimeDefault"}},
  "containers": [{"name": "ok", "image": "nginx", "securityContext": {
    "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]}}"#;

#[test]
fn restricted_namespace_with_kubectl() {
    let c = Cluster::start();
    c.ok(&["create", "namespace", "locked"]);
    c.ok(&[
        "label",
        "namespace",
        "locked",
        "pod-security.kubernetes.io/enforce=restricted",
    ]);

    let err = c.fails(&[
        "run",
        "priv",
        "-n",
        "locked",
        "--image=nginx",
        "--privileged",
    ]);
    assert_eq!(
        err.trim_end(),
        concat!(
            r#"Error from server (Forbidden): pods "priv" is forbidden: violates PodSecurity "restricted:latest": "#,
            r#"privileged (container "priv" must not set securityContext.privileged=true), "#,
            r#"allowPrivilegeEscalation != false (container "priv" must set securityContext.allowPrivilegeEscalation=false), "#,
            r#"unrestricted capabilities (container "priv" must set securityContext.capabilities.drop=["ALL"]), "#,
            r#"runAsNonRoot != true (pod or container "priv" must set securityContext.runAsNonRoot=true), "#,
            r#"seccompProfile (pod or container "priv" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")"#
        )
    );

    let (code, out, err) = c.kubectl(&[
        "run",
        "ok",
        "-n",
        "locked",
        "--image=nginx",
        &format!("--overrides={COMPLIANT}"),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("pod/ok created"), "{out}");
    assert!(!err.contains("Warning"), "{err}");

    // A Deployment is admitted with a warning; its ReplicaSet's pods are rejected and the
    // controller reports upstream's FailedCreate event.
    let web = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/web/web.yaml");
    let (code, out, err) = c.kubectl(&["apply", "-n", "locked", "-f", web]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("deployment.apps/web created"), "{out}");
    assert!(
        err.starts_with(r#"Warning: would violate PodSecurity "restricted:latest": "#),
        "{err}"
    );
    let events = c.eventually(
        &["get", "events", "-n", "locked", "--field-selector", "reason=FailedCreate"],
        r#"is forbidden: violates PodSecurity "restricted:latest": allowPrivilegeEscalation != false"#,
        std::time::Duration::from_secs(30),
    );
    assert!(events.contains(r#"Error creating: pods "web-"#), "{events}");
    let (_, pods, _) = c.kubectl(&["get", "pods", "-n", "locked", "-l", "app=web", "-o", "name"]);
    assert!(pods.trim().is_empty(), "{pods}");
}

#[test]
fn warn_level_and_label_changes_with_kubectl() {
    let c = Cluster::start();
    c.ok(&["create", "namespace", "soft"]);
    c.ok(&[
        "label",
        "namespace",
        "soft",
        "pod-security.kubernetes.io/warn=restricted",
    ]);
    let (code, out, err) = c.kubectl(&["run", "plain", "-n", "soft", "--image=nginx"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("pod/plain created"), "{out}");
    assert_eq!(
        err.trim_end(),
        concat!(
            r#"Warning: would violate PodSecurity "restricted:latest": "#,
            r#"allowPrivilegeEscalation != false (container "plain" must set securityContext.allowPrivilegeEscalation=false), "#,
            r#"unrestricted capabilities (container "plain" must set securityContext.capabilities.drop=["ALL"]), "#,
            r#"runAsNonRoot != true (pod or container "plain" must set securityContext.runAsNonRoot=true), "#,
            r#"seccompProfile (pod or container "plain" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")"#
        )
    );

    // A privileged pod exists; enforcing baseline warns about it and keeps it.
    c.ok(&["run", "priv", "-n", "soft", "--image=nginx", "--privileged"]);
    let (code, out, err) = c.kubectl(&[
        "label",
        "namespace",
        "soft",
        "pod-security.kubernetes.io/enforce=baseline",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("namespace/soft labeled"), "{out}");
    assert_eq!(
        err.trim_end(),
        [
            r#"Warning: existing pods in namespace "soft" violate the new PodSecurity enforce level "baseline:latest""#,
            "Warning: priv: privileged",
        ]
        .join("\n")
    );
    assert!(c.ok(&["get", "pod", "priv", "-n", "soft"]).contains("priv"));

    // An invalid level is refused.
    let err = c.fails(&[
        "label",
        "--overwrite",
        "namespace",
        "soft",
        "pod-security.kubernetes.io/enforce=strict",
    ]);
    assert!(
        err.contains(r#"metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: "strict": must be one of privileged, baseline, restricted"#),
        "{err}"
    );

    // The recommended default for user namespaces admits the quick start's Deployment and its
    // pods, and warns about what restricted would need.
    c.ok(&["create", "namespace", "quick"]);
    c.ok(&[
        "label",
        "namespace",
        "quick",
        "pod-security.kubernetes.io/enforce=baseline",
        "pod-security.kubernetes.io/warn=restricted",
        "pod-security.kubernetes.io/audit=restricted",
    ]);
    let web = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/web/web.yaml");
    let (code, out, err) = c.kubectl(&["apply", "-n", "quick", "-f", web]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("deployment.apps/web created"), "{out}");
    assert_eq!(
        err.trim_end(),
        concat!(
            r#"Warning: would violate PodSecurity "restricted:latest": "#,
            r#"allowPrivilegeEscalation != false (container "web" must set securityContext.allowPrivilegeEscalation=false), "#,
            r#"unrestricted capabilities (container "web" must set securityContext.capabilities.drop=["ALL"]), "#,
            r#"runAsNonRoot != true (pod or container "web" must set securityContext.runAsNonRoot=true), "#,
            r#"seccompProfile (pod or container "web" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")"#
        )
    );
    c.eventually(
        &["get", "pods", "-n", "quick", "-l", "app=web", "-o", "name"],
        "pod/web-",
        std::time::Duration::from_secs(30),
    );
}
