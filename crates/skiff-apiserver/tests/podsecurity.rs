//! Pod Security admission (issue 12 item 7) through a real HTTPS server: enforce rejects with
//! upstream's exact Forbidden message, warn sends upstream's warning, workloads only warn,
//! namespace labels are validated, and raising the enforce level warns about existing pods.

mod common;

use http_body_util::BodyExt;
use serde_json::{json, Value};

use common::start;

/// Sends one request; returns (HTTP status, warnings, parsed body).
async fn send(
    client: &kube::Client,
    method: &str,
    path: &str,
    body: &Value,
) -> (u16, Vec<String>, Value) {
    let ct = match method {
        "PATCH" if body.is_array() => "application/json-patch+json",
        "PATCH" => "application/merge-patch+json",
        _ => "application/json",
    };
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", ct)
        .body(kube::client::Body::from(body.to_string().into_bytes()))
        .expect("request");
    let resp = client.send(req).await.expect("send");
    let status = resp.status().as_u16();
    let warnings = resp
        .headers()
        .get_all("warning")
        .iter()
        .map(|v| unquote_warning(v.to_str().expect("ascii warning")))
        .collect();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (
        status,
        warnings,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// `299 - "text with \"quotes\""` → the text.
fn unquote_warning(h: &str) -> String {
    let quoted = h.strip_prefix("299 - ").expect("warning code and agent");
    let inner = &quoted[1..quoted.len() - 1];
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

async fn namespace(client: &kube::Client, name: &str, labels: Value) {
    let (code, _, body) = send(
        client,
        "POST",
        "/api/v1/namespaces",
        &json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": labels}}),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    // No controllers run here: the ServiceAccount admission needs `default` to exist.
    common::ensure_default_sa(client, name).await;
}

fn pod(name: &str, container_sc: Value, pod_sc: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"securityContext": pod_sc,
            "containers": [{"name": "c", "image": "nginx", "securityContext": container_sc}]}})
}

fn privileged_pod(name: &str) -> Value {
    pod(name, json!({"privileged": true}), json!({}))
}

/// Passes `restricted` at every version.
fn compliant_pod(name: &str) -> Value {
    pod(
        name,
        json!({"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}),
        json!({"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}}),
    )
}

const PRIVILEGED_VS_RESTRICTED: &str = concat!(
    r#"privileged (container "c" must not set securityContext.privileged=true), "#,
    r#"allowPrivilegeEscalation != false (container "c" must set securityContext.allowPrivilegeEscalation=false), "#,
    r#"unrestricted capabilities (container "c" must set securityContext.capabilities.drop=["ALL"]), "#,
    r#"runAsNonRoot != true (pod or container "c" must set securityContext.runAsNonRoot=true), "#,
    r#"seccompProfile (pod or container "c" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")"#
);

#[tokio::test]
async fn restricted_rejects_a_privileged_pod_and_admits_a_compliant_one() {
    let s = start().await;
    let c = &s.client;
    namespace(
        c,
        "locked",
        json!({"pod-security.kubernetes.io/enforce": "restricted"}),
    )
    .await;
    let pods = "/api/v1/namespaces/locked/pods";

    let (code, warnings, body) = send(c, "POST", pods, &privileged_pod("x")).await;
    assert_eq!(code, 403, "{body}");
    assert_eq!(
        body["message"],
        format!(
            r#"pods "x" is forbidden: violates PodSecurity "restricted:latest": {PRIVILEGED_VS_RESTRICTED}"#
        )
    );
    assert_eq!(body["reason"], "Forbidden");
    assert_eq!(body["details"], json!({"name": "x", "kind": "pods"}));
    // A rejected request carries no PodSecurity warning.
    assert!(warnings.is_empty(), "{warnings:?}");

    // Dry run is judged the same way.
    let (code, _, _) = send(
        c,
        "POST",
        &format!("{pods}?dryRun=All"),
        &privileged_pod("x"),
    )
    .await;
    assert_eq!(code, 403);

    let (code, warnings, body) = send(c, "POST", pods, &compliant_pod("ok")).await;
    assert_eq!(code, 201, "{body}");
    assert!(warnings.is_empty(), "{warnings:?}");

    // A generated name is in the message too.
    let mut gen = privileged_pod("");
    gen["metadata"] = json!({"generateName": "web-"});
    let (code, _, body) = send(c, "POST", pods, &gen).await;
    assert_eq!(code, 403);
    let msg = body["message"].as_str().unwrap_or("");
    assert!(msg.starts_with(r#"pods "web-"#), "{msg}");
    assert!(msg.contains(r#"" is forbidden: violates PodSecurity "restricted:latest": "#));

    // Unlabeled namespaces stay privileged.
    common::ensure_default_sa(c, "default").await;
    let (code, warnings, _) = send(
        c,
        "POST",
        "/api/v1/namespaces/default/pods",
        &privileged_pod("p"),
    )
    .await;
    assert_eq!(code, 201);
    assert!(warnings.is_empty());
}

#[tokio::test]
async fn warn_mode_warns_and_workloads_only_warn() {
    let s = start().await;
    let c = &s.client;
    namespace(
        c,
        "soft",
        json!({"pod-security.kubernetes.io/enforce": "baseline",
            "pod-security.kubernetes.io/warn": "restricted",
            "pod-security.kubernetes.io/warn-version": "v1.33"}),
    )
    .await;
    // Baseline admits a plain pod; restricted would not.
    let (code, warnings, body) = send(
        c,
        "POST",
        "/api/v1/namespaces/soft/pods",
        &pod("plain", json!({}), json!({})),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(
        warnings,
        vec![concat!(
            r#"would violate PodSecurity "restricted:v1.33": "#,
            r#"allowPrivilegeEscalation != false (container "c" must set securityContext.allowPrivilegeEscalation=false), "#,
            r#"unrestricted capabilities (container "c" must set securityContext.capabilities.drop=["ALL"]), "#,
            r#"runAsNonRoot != true (pod or container "c" must set securityContext.runAsNonRoot=true), "#,
            r#"seccompProfile (pod or container "c" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")"#
        )]
    );

    // Enforce rejects a baseline violation and says nothing about the warn level.
    let (code, warnings, body) = send(
        c,
        "POST",
        "/api/v1/namespaces/soft/pods",
        &privileged_pod("priv"),
    )
    .await;
    assert_eq!(code, 403);
    assert_eq!(
        body["message"],
        r#"pods "priv" is forbidden: violates PodSecurity "baseline:latest": privileged (container "c" must not set securityContext.privileged=true)"#
    );
    assert!(warnings.is_empty());

    // A Deployment whose template violates enforce is admitted, with a warning for the warn
    // level (upstream enforces on pods only).
    let deploy = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {"selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"hostNetwork": true,
                    "containers": [{"name": "c", "image": "nginx",
                        "securityContext": {"allowPrivilegeEscalation": false,
                            "capabilities": {"drop": ["ALL"]}, "runAsNonRoot": true,
                            "seccompProfile": {"type": "RuntimeDefault"}}}]}}}});
    let (code, warnings, body) = send(
        c,
        "POST",
        "/apis/apps/v1/namespaces/soft/deployments",
        &deploy,
    )
    .await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(
        warnings,
        vec![r#"would violate PodSecurity "restricted:v1.33": host namespaces (hostNetwork=true)"#]
    );
    // Its updates warn again; its scale subresource does not.
    let (code, warnings, _) = send(
        c,
        "PATCH",
        "/apis/apps/v1/namespaces/soft/deployments/web",
        &json!({"spec": {"replicas": 2}}),
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
}

#[tokio::test]
async fn namespace_labels_are_validated() {
    let s = start().await;
    let c = &s.client;
    let (code, _, body) = send(
        c,
        "POST",
        "/api/v1/namespaces",
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bad",
            "labels": {"pod-security.kubernetes.io/enforce": "strict"}}}),
    )
    .await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(
        body["message"],
        r#"Namespace "bad" is invalid: metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: "strict": must be one of privileged, baseline, restricted"#
    );
    assert_eq!(
        body["details"]["causes"],
        json!([{"reason": "FieldValueInvalid",
            "message": r#"Invalid value: "strict": must be one of privileged, baseline, restricted"#,
            "field": "metadata.labels[pod-security.kubernetes.io/enforce]"}])
    );

    namespace(c, "good", json!({})).await;
    let (code, _, body) = send(
        c,
        "PATCH",
        "/api/v1/namespaces/good",
        &json!({"metadata": {"labels": {"pod-security.kubernetes.io/warn-version": "1.30",
            "pod-security.kubernetes.io/audit": "everything"}}}),
    )
    .await;
    assert_eq!(code, 422);
    assert_eq!(
        body["message"],
        r#"Namespace "good" is invalid: [metadata.labels[pod-security.kubernetes.io/audit]: Invalid value: "everything": must be one of privileged, baseline, restricted, metadata.labels[pod-security.kubernetes.io/warn-version]: Invalid value: "1.30": must be "latest" or "v1.x"]"#
    );
    let (code, _, body) = send(
        c,
        "PATCH",
        "/api/v1/namespaces/good",
        &json!({"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "baseline",
            "pod-security.kubernetes.io/enforce-version": "v1.29"}}}),
    )
    .await;
    assert_eq!(code, 200, "{body}");
}

#[tokio::test]
async fn raising_the_enforce_level_warns_about_existing_pods() {
    let s = start().await;
    let c = &s.client;
    namespace(c, "apps", json!({})).await;
    let pods = "/api/v1/namespaces/apps/pods";
    for p in [
        privileged_pod("p2"),
        privileged_pod("p1"),
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "h"},
            "spec": {"hostNetwork": true, "containers": [{"name": "c", "image": "nginx"}]}}),
        compliant_pod("fine"),
    ] {
        let (code, _, body) = send(c, "POST", pods, &p).await;
        assert_eq!(code, 201, "{body}");
    }
    let label = |level: &str| json!({"metadata": {"labels": {"pod-security.kubernetes.io/enforce": level}}});

    let (code, warnings, body) =
        send(c, "PATCH", "/api/v1/namespaces/apps", &label("baseline")).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        warnings,
        vec![
            r#"existing pods in namespace "apps" violate the new PodSecurity enforce level "baseline:latest""#,
            "h: host namespaces",
            "p1 (and 1 other pod): privileged",
        ]
    );
    // The label is applied: the same pod is now rejected.
    let (code, _, _) = send(c, "POST", pods, &privileged_pod("p3")).await;
    assert_eq!(code, 403);

    // Relaxing (or an unchanged enforce level) checks nothing.
    let (code, warnings, _) =
        send(c, "PATCH", "/api/v1/namespaces/apps", &label("privileged")).await;
    assert_eq!(code, 200);
    assert!(warnings.is_empty(), "{warnings:?}");

    let (_, warnings, _) = send(c, "PATCH", "/api/v1/namespaces/apps", &label("restricted")).await;
    assert_eq!(
        warnings,
        vec![
            r#"existing pods in namespace "apps" violate the new PodSecurity enforce level "restricted:latest""#,
            "h: host namespaces, allowPrivilegeEscalation != false, unrestricted capabilities, runAsNonRoot != true, seccompProfile",
            "p1 (and 1 other pod): privileged, allowPrivilegeEscalation != false, unrestricted capabilities, runAsNonRoot != true, seccompProfile",
        ]
    );
}

#[tokio::test]
async fn pod_updates_are_checked_only_when_an_image_changes() {
    let s = start().await;
    let c = &s.client;
    namespace(c, "later", json!({})).await;
    let pods = "/api/v1/namespaces/later/pods";
    let (code, _, _) = send(c, "POST", pods, &privileged_pod("old")).await;
    assert_eq!(code, 201);
    let (code, _, _) = send(
        c,
        "PATCH",
        "/api/v1/namespaces/later",
        &json!({"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "baseline"}}}),
    )
    .await;
    assert_eq!(code, 200);

    // Metadata changes of an existing violating pod are admitted.
    let (code, _, body) = send(
        c,
        "PATCH",
        &format!("{pods}/old"),
        &json!({"metadata": {"labels": {"tier": "x"}}}),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    // A new image is judged against the policy.
    let (code, _, body) = send(
        c,
        "PATCH",
        &format!("{pods}/old"),
        &json!([{"op": "replace", "path": "/spec/containers/0/image", "value": "nginx:2"}]),
    )
    .await;
    assert_eq!(code, 403, "{body}");
    assert_eq!(
        body["message"],
        r#"pods "old" is forbidden: violates PodSecurity "baseline:latest": privileged (container "c" must not set securityContext.privileged=true)"#
    );
}

#[tokio::test]
async fn a_version_pin_selects_the_checks_of_that_version() {
    let s = start().await;
    let c = &s.client;
    // Before v1.22 restricted did not require dropping ALL capabilities.
    namespace(
        c,
        "pinned",
        json!({"pod-security.kubernetes.io/enforce": "restricted",
            "pod-security.kubernetes.io/enforce-version": "v1.21"}),
    )
    .await;
    let keeps_caps = pod(
        "caps",
        json!({"allowPrivilegeEscalation": false}),
        json!({"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}}),
    );
    let (code, warnings, body) =
        send(c, "POST", "/api/v1/namespaces/pinned/pods", &keeps_caps).await;
    assert_eq!(code, 201, "{body}");
    assert!(warnings.is_empty(), "{warnings:?}");

    namespace(
        c,
        "current",
        json!({"pod-security.kubernetes.io/enforce": "restricted"}),
    )
    .await;
    let (code, _, body) = send(c, "POST", "/api/v1/namespaces/current/pods", &keeps_caps).await;
    assert_eq!(code, 403);
    assert_eq!(
        body["message"],
        r#"pods "caps" is forbidden: violates PodSecurity "restricted:latest": unrestricted capabilities (container "c" must set securityContext.capabilities.drop=["ALL"])"#
    );
}
