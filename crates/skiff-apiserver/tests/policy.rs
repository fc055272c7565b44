//! ValidatingAdmissionPolicy through a real HTTPS server: Deny with upstream's message, Warn
//! headers, params from a ConfigMap, namespace selectors, matchConditions, failurePolicy,
//! the policy's type-checking status, compile errors rejected at create, and the gateway-api
//! bundle's safe-upgrades policy.

mod common;

use std::time::{Duration, Instant};

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
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(kube::client::Body::from(body.to_string().into_bytes()))
        .expect("request");
    let resp = client.send(req).await.expect("send");
    let status = resp.status().as_u16();
    let warnings = resp
        .headers()
        .get_all("warning")
        .iter()
        .map(|v| v.to_str().expect("ascii warning").to_string())
        .collect();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (
        status,
        warnings,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn create(client: &kube::Client, path: &str, body: Value) -> Value {
    let (code, _, out) = send(client, "POST", path, &body).await;
    assert_eq!(code, 201, "POST {path}: {out}");
    out
}

async fn namespace(client: &kube::Client, name: &str, labels: Value) {
    create(
        client,
        "/api/v1/namespaces",
        json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": labels}}),
    )
    .await;
}

const POLICIES: &str = "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies";
const BINDINGS: &str = "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicybindings";

fn configmap_rules() -> Value {
    json!({"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"],
        "resources": ["configmaps"], "operations": ["CREATE", "UPDATE"]}]})
}

fn cm(name: &str, data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data})
}

/// Repeats `attempt` (policies reach the admission path through a cache) until it returns
/// Some, for up to 10 s.
async fn eventually<F, Fut, T>(what: &str, mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = attempt().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Creates configmaps named `probe-N` in `ns` until one is rejected; returns that response.
async fn first_denial(client: &kube::Client, ns: &str, data: Value) -> (u16, Value) {
    let mut n = 0;
    eventually("the policy to deny", || {
        n += 1;
        let body = cm(&format!("probe-{n}"), data.clone());
        let path = format!("/api/v1/namespaces/{ns}/configmaps");
        async move {
            let (code, _, out) = send(client, "POST", &path, &body).await;
            (code != 201).then_some((code, out))
        }
    })
    .await
}

#[tokio::test]
async fn deny_uses_upstream_message_and_reason_code() {
    let srv = start().await;
    let c = &srv.client;
    namespace(c, "vap-deny", json!({})).await;
    create(
        c,
        POLICIES,
        json!({"metadata": {"name": "small-configmaps"}, "spec": {
        "matchConstraints": configmap_rules(),
        "validations": [
            {"expression": "!has(object.data) || object.data.size() <= 1",
             "message": "at most one key", "reason": "Forbidden"},
            {"expression": "!has(object.data) || !('bad' in object.data)",
             "messageExpression": "'key bad is not allowed in ' + object.metadata.name"}]}}),
    )
    .await;
    create(
        c,
        BINDINGS,
        json!({"metadata": {"name": "small-configmaps-binding"}, "spec": {
        "policyName": "small-configmaps", "validationActions": ["Deny"]}}),
    )
    .await;
    let (code, body) = first_denial(c, "vap-deny", json!({"a": "1", "b": "2"})).await;
    assert_eq!(code, 403, "{body}");
    let msg = body["message"].as_str().unwrap_or("");
    assert!(
        msg.starts_with("configmaps \"probe-")
            && msg.ends_with("\" is forbidden: ValidatingAdmissionPolicy 'small-configmaps' with binding 'small-configmaps-binding' denied request: at most one key"),
        "{msg}"
    );
    assert_eq!(body["reason"], "Forbidden");
    let (code, _, body) = send(
        c,
        "POST",
        "/api/v1/namespaces/vap-deny/configmaps",
        &cm("x", json!({"bad": "1"})),
    )
    .await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(body["reason"], "Invalid");
    assert_eq!(
        body["message"],
        "configmaps \"x\" is forbidden: ValidatingAdmissionPolicy 'small-configmaps' with binding 'small-configmaps-binding' denied request: key bad is not allowed in x"
    );
    // Objects that pass are admitted; so are other kinds.
    let (code, _, body) = send(
        c,
        "POST",
        "/api/v1/namespaces/vap-deny/configmaps",
        &cm("ok", json!({"a": "1"})),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    let (code, _, body) = send(
        c,
        "POST",
        "/api/v1/namespaces/vap-deny/secrets",
        &json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
            "stringData": {"a": "1", "b": "2"}}),
    )
    .await;
    assert_eq!(code, 201, "{body}");
}

#[tokio::test]
async fn warn_adds_a_warning_header_and_admits() {
    let srv = start().await;
    let c = &srv.client;
    namespace(c, "vap-warn", json!({})).await;
    create(
        c,
        POLICIES,
        json!({"metadata": {"name": "no-foo"}, "spec": {
        "matchConstraints": configmap_rules(),
        "validations": [{"expression": "!has(object.data) || !('foo' in object.data)"}]}}),
    )
    .await;
    create(
        c,
        BINDINGS,
        json!({"metadata": {"name": "no-foo-warn"}, "spec": {
        "policyName": "no-foo", "validationActions": ["Warn", "Audit"]}}),
    )
    .await;
    let mut n = 0;
    let warnings = eventually("a warning", || {
        n += 1;
        let body = cm(&format!("w{n}"), json!({"foo": "1"}));
        async move {
            let (code, warnings, out) =
                send(c, "POST", "/api/v1/namespaces/vap-warn/configmaps", &body).await;
            assert_eq!(code, 201, "{out}");
            (!warnings.is_empty()).then_some(warnings)
        }
    })
    .await;
    assert_eq!(
        warnings,
        vec!["299 - \"Validation failed for ValidatingAdmissionPolicy 'no-foo' with binding 'no-foo-warn': failed expression: !has(object.data) || !('foo' in object.data)\""]
    );
}

#[tokio::test]
async fn params_come_from_a_configmap() {
    let srv = start().await;
    let c = &srv.client;
    namespace(c, "vap-params", json!({})).await;
    create(
        c,
        POLICIES,
        json!({"metadata": {"name": "banned-key"}, "spec": {
        "paramKind": {"apiVersion": "v1", "kind": "ConfigMap"},
        "matchConstraints": {"resourceRules": configmap_rules()["resourceRules"],
            // The params themselves are left out (they are missing until created).
            "excludeResourceRules": [{"apiGroups": [""], "apiVersions": ["v1"],
                "resources": ["configmaps"], "operations": ["*"], "resourceNames": ["rules"]}]},
        "variables": [{"name": "banned", "expression": "params.data.banned"}],
        "validations": [{"expression": "!has(object.data) || !(variables.banned in object.data)",
            "messageExpression": "'key ' + variables.banned + ' is banned'"}]}}),
    )
    .await;
    create(
        c,
        BINDINGS,
        json!({"metadata": {"name": "banned-key"}, "spec": {
        "policyName": "banned-key", "validationActions": ["Deny"],
        "paramRef": {"name": "rules", "namespace": "vap-params",
            "parameterNotFoundAction": "Deny"}}}),
    )
    .await;
    // No params yet: Deny.
    let (code, body) = first_denial(c, "vap-params", json!({"x": "1"})).await;
    assert_eq!(code, 422, "{body}");
    assert!(
        body["message"].as_str().unwrap_or("").ends_with(
            "denied request: failed to configure binding: no params found for policy binding with `Deny` parameterNotFoundAction"
        ),
        "{body}"
    );
    create(
        c,
        "/api/v1/namespaces/vap-params/configmaps",
        cm("rules", json!({"banned": "secret"})),
    )
    .await;
    let (code, _, body) = send(
        c,
        "POST",
        "/api/v1/namespaces/vap-params/configmaps",
        &cm("fine", json!({"x": "1"})),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    let (code, _, body) = send(
        c,
        "POST",
        "/api/v1/namespaces/vap-params/configmaps",
        &cm("leaky", json!({"secret": "1"})),
    )
    .await;
    assert_eq!(code, 422, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or("")
            .ends_with("denied request: key secret is banned"),
        "{body}"
    );
}

#[tokio::test]
async fn namespace_selector_and_match_conditions_narrow_the_policy() {
    let srv = start().await;
    let c = &srv.client;
    namespace(c, "vap-prod", json!({"env": "prod"})).await;
    namespace(c, "vap-dev", json!({"env": "dev"})).await;
    create(c, POLICIES, json!({"metadata": {"name": "needs-owner"}, "spec": {
        "matchConstraints": configmap_rules(),
        "matchConditions": [{"name": "checked-only",
            "expression": "object.metadata.name.startsWith('probe-') || object.metadata.name.startsWith('checked-')"}],
        "validations": [{"expression": "has(object.metadata.labels) && 'owner' in object.metadata.labels",
            "message": "owner label required"}]}}))
    .await;
    create(
        c,
        BINDINGS,
        json!({"metadata": {"name": "needs-owner-prod"}, "spec": {
        "policyName": "needs-owner", "validationActions": ["Deny"],
        "matchResources": {"namespaceSelector": {"matchLabels": {"env": "prod"}}}}}),
    )
    .await;
    let (code, body) = first_denial(c, "vap-prod", json!({})).await;
    assert_eq!(code, 422, "{body}");
    // Another namespace, or a name the match condition leaves out: admitted.
    for (ns, name) in [("vap-dev", "checked-1"), ("vap-prod", "other")] {
        let (code, _, body) = send(
            c,
            "POST",
            &format!("/api/v1/namespaces/{ns}/configmaps"),
            &cm(name, json!({})),
        )
        .await;
        assert_eq!(code, 201, "{ns}/{name}: {body}");
    }
    let mut labelled = cm("checked-2", json!({}));
    labelled["metadata"]["labels"] = json!({"owner": "me"});
    let (code, _, body) = send(
        c,
        "POST",
        "/api/v1/namespaces/vap-prod/configmaps",
        &labelled,
    )
    .await;
    assert_eq!(code, 201, "{body}");
}

#[tokio::test]
async fn failure_policy_decides_on_errors() {
    let srv = start().await;
    let c = &srv.client;
    namespace(c, "vap-fail", json!({})).await;
    for (name, fp) in [("strict", "Fail"), ("lenient", "Ignore")] {
        let rules = json!({"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"],
            "resources": ["configmaps"], "operations": ["CREATE"],
            "resourceNames": [format!("{name}-target")]}]});
        create(
            c,
            POLICIES,
            json!({"metadata": {"name": name}, "spec": {
            "failurePolicy": fp, "matchConstraints": rules,
            "validations": [{"expression": "object.data.missing == 'x'"}]}}),
        )
        .await;
        create(
            c,
            BINDINGS,
            json!({"metadata": {"name": name}, "spec": {
            "policyName": name, "validationActions": ["Deny"]}}),
        )
        .await;
    }
    let body = eventually("the Fail policy to deny", || async {
        let (code, _, body) = send(
            c,
            "POST",
            "/api/v1/namespaces/vap-fail/configmaps",
            &cm("strict-target", json!({"a": "1"})),
        )
        .await;
        (code != 201).then_some(body)
    })
    .await;
    assert_eq!(
        body["message"],
        "configmaps \"strict-target\" is forbidden: ValidatingAdmissionPolicy 'strict' with binding 'strict' denied request: expression 'object.data.missing == 'x'' resulted in error: no such key: missing"
    );
    let (code, _, body) = send(
        c,
        "POST",
        "/api/v1/namespaces/vap-fail/configmaps",
        &cm("lenient-target", json!({"a": "1"})),
    )
    .await;
    assert_eq!(code, 201, "{body}");
}

#[tokio::test]
async fn compile_errors_are_rejected_and_status_reports_type_checking() {
    let srv = start().await;
    let c = &srv.client;
    let (code, _, body) = send(
        c,
        "POST",
        POLICIES,
        &json!({"metadata": {"name": "broken"},
        "spec": {"matchConstraints": configmap_rules(),
            "validations": [{"expression": "object.data.size( > 1"}]}}),
    )
    .await;
    assert_eq!(code, 422, "{body}");
    let msg = body["message"].as_str().unwrap_or("");
    assert!(
        msg.starts_with("ValidatingAdmissionPolicy.admissionregistration.k8s.io \"broken\" is invalid: spec.validations[0].expression: Invalid value: \"object.data.size( > 1\": compilation failed: ERROR: <input>:1:"),
        "{msg}"
    );
    let (code, _, body) = send(
        c,
        "POST",
        BINDINGS,
        &json!({"metadata": {"name": "b"},
        "spec": {"validationActions": ["Deny"]}}),
    )
    .await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(
        body["message"],
        "ValidatingAdmissionPolicyBinding.admissionregistration.k8s.io \"b\" is invalid: spec.policyName: Required value"
    );

    create(
        c,
        POLICIES,
        json!({"metadata": {"name": "typo"}, "spec": {
        "matchConstraints": {"resourceRules": [{"apiGroups": ["apps"], "apiVersions": ["v1"],
            "resources": ["deployments"], "operations": ["CREATE"]}]},
        "validations": [
            {"expression": "object.spec.replicas <= 5"},
            {"expression": "object.spec.replica <= 5"}]}}),
    )
    .await;
    let status = eventually("the policy status", || async {
        let (_, _, p) = send(c, "GET", &format!("{POLICIES}/typo"), &Value::Null).await;
        p.get("status")
            .filter(|s| s.get("observedGeneration").is_some())
            .cloned()
    })
    .await;
    assert_eq!(status["observedGeneration"], 1, "{status}");
    let warnings = status["typeChecking"]["expressionWarnings"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(warnings.len(), 1, "{status}");
    assert_eq!(warnings[0]["fieldRef"], "spec.validations[1].expression");
    let w = warnings[0]["warning"].as_str().unwrap_or("");
    assert!(
        w.starts_with("apps/v1, Kind=Deployment: ERROR: <input>:1:")
            && w.ends_with("undefined field 'replica'"),
        "{w}"
    );
    // Fixing the expression bumps the generation; the controller catches up.
    let req = http::Request::builder()
        .method("PATCH")
        .uri(format!("{POLICIES}/typo"))
        .header("content-type", "application/json-patch+json")
        .body(kube::client::Body::from(
            json!([{"op": "replace", "path": "/spec/validations/1/expression",
                "value": "object.spec.paused != true"}])
            .to_string()
            .into_bytes(),
        ))
        .expect("request");
    let resp = c.send(req).await.expect("patch");
    assert_eq!(resp.status().as_u16(), 200);
    let status = eventually("the status of generation 2", || async {
        let (_, _, p) = send(c, "GET", &format!("{POLICIES}/typo"), &Value::Null).await;
        p.get("status")
            .filter(|s| s["observedGeneration"] == 2)
            .cloned()
    })
    .await;
    assert_eq!(status["typeChecking"], json!({}), "{status}");
}

#[tokio::test]
async fn gateway_api_safe_upgrades_policy_applies_and_behaves() {
    let srv = start().await;
    let c = &srv.client;
    // shared/ lies beside the checkout (a few directories up from this crate).
    let rel = "shared/bundles/gateway-api/setup/gateway.networking.k8s.io_vap_safeupgrades.yaml";
    let found = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|a| a.join(rel))
        .find(|p| p.exists());
    let Some(text) = found.and_then(|p| std::fs::read_to_string(p).ok()) else {
        eprintln!("skipping: {rel} not found above the crate");
        return;
    };
    for doc in text.split("\n---") {
        let v: Value = match serde_norway::from_str::<Value>(doc) {
            Ok(v) if v.is_object() => v,
            _ => continue,
        };
        let url = if v["kind"] == "ValidatingAdmissionPolicy" {
            POLICIES
        } else {
            BINDINGS
        };
        create(c, url, v).await;
    }
    let crd = |name: &str, mut annotations: Value| {
        // The gateway-api group is protected: its CRDs carry the approval annotation.
        annotations["api-approved.kubernetes.io"] =
            json!("https://github.com/kubernetes-sigs/gateway-api/pull/3328");
        json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": format!("{name}s.gateway.networking.k8s.io"), "annotations": annotations},
            "spec": {"group": "gateway.networking.k8s.io", "scope": "Namespaced",
                "names": {"plural": format!("{name}s"), "kind": name.to_uppercase(), "singular": name},
                "versions": [{"name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}})
    };
    let crds = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";
    let mut n = 0;
    let body = eventually("the bundle policy to deny an old CRD", || {
        n += 1;
        let body = crd(
            &format!("old{n}"),
            json!({"gateway.networking.k8s.io/bundle-version": "v1.2.0",
                "gateway.networking.k8s.io/channel": "standard"}),
        );
        async move {
            let (code, _, out) = send(c, "POST", crds, &body).await;
            (code != 201).then_some(out)
        }
    })
    .await;
    assert_eq!(body["code"], 422, "{body}");
    assert!(
        body["message"].as_str().unwrap_or("").ends_with("denied request: Installing CRDs with version before v1.5.0 is prohibited by default. Uninstall ValidatingAdmissionPolicy safe-upgrades.gateway.networking.k8s.io to install older versions."),
        "{body}"
    );
    let (code, _, body) = send(
        c,
        "POST",
        crds,
        &crd(
            "current",
            json!({"gateway.networking.k8s.io/bundle-version": "v1.5.0",
                "gateway.networking.k8s.io/channel": "standard"}),
        ),
    )
    .await;
    assert_eq!(code, 201, "{body}");
}

#[tokio::test]
async fn delete_sees_the_old_object() {
    let srv = start().await;
    let c = &srv.client;
    namespace(c, "vap-del", json!({})).await;
    create(c, POLICIES, json!({"metadata": {"name": "keep-protected"}, "spec": {
        "matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"],
            "resources": ["configmaps"], "operations": ["DELETE"]}]},
        "validations": [{"expression": "object == null && request.operation == 'DELETE' && !(has(oldObject.metadata.labels) && 'protected' in oldObject.metadata.labels)",
            "message": "protected"}]}}))
    .await;
    create(
        c,
        BINDINGS,
        json!({"metadata": {"name": "keep-protected"}, "spec": {
        "policyName": "keep-protected", "validationActions": ["Deny"]}}),
    )
    .await;
    let mut keep = cm("keep", json!({}));
    keep["metadata"]["labels"] = json!({"protected": "yes"});
    create(c, "/api/v1/namespaces/vap-del/configmaps", keep).await;
    create(
        c,
        "/api/v1/namespaces/vap-del/configmaps",
        cm("scratch", json!({})),
    )
    .await;
    let body = eventually("the delete to be denied", || async {
        let (code, _, body) = send(
            c,
            "DELETE",
            "/api/v1/namespaces/vap-del/configmaps/keep",
            &Value::Null,
        )
        .await;
        (code != 200).then_some(body)
    })
    .await;
    assert_eq!(
        body["message"],
        "configmaps \"keep\" is forbidden: ValidatingAdmissionPolicy 'keep-protected' with binding 'keep-protected' denied request: protected"
    );
    let (code, _, body) = send(
        c,
        "DELETE",
        "/api/v1/namespaces/vap-del/configmaps/scratch",
        &Value::Null,
    )
    .await;
    assert_eq!(code, 200, "{body}");
}

#[tokio::test]
async fn params_by_selector_each_evaluated_and_allow_when_none() {
    let srv = start().await;
    let c = &srv.client;
    namespace(c, "vap-sel", json!({})).await;
    let rules = json!({"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"],
        "resources": ["secrets"], "operations": ["CREATE"]}]});
    create(
        c,
        POLICIES,
        json!({"metadata": {"name": "secret-keys"}, "spec": {
        "paramKind": {"apiVersion": "v1", "kind": "ConfigMap"},
        "matchConstraints": rules,
        "validations": [{"expression": "!(params.data.banned in object.data)",
            "messageExpression": "'banned by ' + params.metadata.name"}]}}),
    )
    .await;
    create(
        c,
        BINDINGS,
        json!({"metadata": {"name": "secret-keys"}, "spec": {
        "policyName": "secret-keys", "validationActions": ["Deny"],
        "paramRef": {"selector": {"matchLabels": {"role": "banlist"}},
            "parameterNotFoundAction": "Allow"}}}),
    )
    .await;
    let secret = |name: &str, key: &str| {
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
            "stringData": {key: "1"}})
    };
    // No params match yet: Allow admits.
    let (code, _, body) = send(
        c,
        "POST",
        "/api/v1/namespaces/vap-sel/secrets",
        &secret("s0", "a"),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    for (name, banned) in [("ban-a", "a"), ("ban-b", "b")] {
        let mut p = cm(name, json!({"banned": banned}));
        p["metadata"]["labels"] = json!({"role": "banlist"});
        create(c, "/api/v1/namespaces/vap-sel/configmaps", p).await;
    }
    let mut n = 0;
    let body = eventually("a selected param to deny", || {
        n += 1;
        let s = secret(&format!("s{n}"), "b");
        async move {
            let (code, _, body) = send(c, "POST", "/api/v1/namespaces/vap-sel/secrets", &s).await;
            (code != 201).then_some(body)
        }
    })
    .await;
    assert!(
        body["message"]
            .as_str()
            .unwrap_or("")
            .ends_with("denied request: banned by ban-b"),
        "{body}"
    );
    let (code, _, body) = send(
        c,
        "POST",
        "/api/v1/namespaces/vap-sel/secrets",
        &secret("sa", "a"),
    )
    .await;
    assert_eq!(code, 422, "{body}");
    let (code, _, body) = send(
        c,
        "POST",
        "/api/v1/namespaces/vap-sel/secrets",
        &secret("sc", "c"),
    )
    .await;
    assert_eq!(code, 201, "{body}");
}

#[tokio::test]
async fn type_checking_covers_custom_kinds() {
    let srv = start().await;
    let c = &srv.client;
    create(
        c,
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {"size": {"type": "integer"}}}}}}}]}}),
    )
    .await;
    // The CRD reaches the cache before the policy does (same watch, in order).
    create(c, POLICIES, json!({"metadata": {"name": "widgets"}, "spec": {
        "matchConstraints": {"resourceRules": [{"apiGroups": ["example.com"], "apiVersions": ["v1"],
            "resources": ["widgets"], "operations": ["CREATE"]}]},
        "validations": [{"expression": "object.metadata.name != '' && object.spec.sise > 0 && object.spec.size > 0"}]}}))
    .await;
    let status = eventually("the policy status", || async {
        let (_, _, p) = send(c, "GET", &format!("{POLICIES}/widgets"), &Value::Null).await;
        p.get("status")
            .filter(|s| s.get("observedGeneration").is_some())
            .cloned()
    })
    .await;
    let w = status["typeChecking"]["expressionWarnings"][0]["warning"]
        .as_str()
        .unwrap_or("");
    assert!(
        w.starts_with("example.com/v1, Kind=Widget: ERROR: <input>:1:")
            && w.ends_with("undefined field 'sise'")
            && !w.contains('\n'),
        "{status}"
    );
}

/// Sends one request as `user` (impersonated by the admin).
async fn send_as(client: &kube::Client, user: &str, path: &str, body: &Value) -> (u16, Value) {
    let req = http::Request::builder()
        .method("POST")
        .uri(path)
        .header("content-type", "application/json")
        .header("Impersonate-User", user)
        .body(kube::client::Body::from(body.to_string().into_bytes()))
        .expect("request");
    let resp = client.send(req).await.expect("send");
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn authorizer_checks_the_requesting_user() {
    let srv = start().await;
    let c = &srv.client;
    namespace(c, "vap-authz", json!({})).await;
    let rbac = "/apis/rbac.authorization.k8s.io/v1/namespaces/vap-authz";
    create(
        c,
        &format!("{rbac}/roles"),
        json!({"metadata": {"name": "cm-create"},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create"]}]}),
    )
    .await;
    create(
        c,
        &format!("{rbac}/rolebindings"),
        json!({"metadata": {"name": "alice"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "cm-create"},
        "subjects": [{"kind": "User", "name": "alice", "apiGroup": "rbac.authorization.k8s.io"}]}),
    )
    .await;
    create(c, POLICIES, json!({"metadata": {"name": "deleters-only"}, "spec": {
        "matchConstraints": configmap_rules(),
        "validations": [{
            "expression": "authorizer.requestResource.check('delete').allowed() && authorizer.group('').resource('secrets').namespace(request.namespace).check('get').allowed() == authorizer.requestResource.check('delete').allowed()",
            "messageExpression": "request.userInfo.username + ' may not delete configmaps'"}]}}))
    .await;
    create(
        c,
        BINDINGS,
        json!({"metadata": {"name": "deleters-only"}, "spec": {
        "policyName": "deleters-only", "validationActions": ["Deny"]}}),
    )
    .await;
    let mut n = 0;
    let body = eventually("alice to be denied by the policy", || {
        n += 1;
        let body = cm(&format!("a{n}"), json!({}));
        async move {
            let (code, out) =
                send_as(c, "alice", "/api/v1/namespaces/vap-authz/configmaps", &body).await;
            assert_ne!(code, 403, "RBAC should let alice create: {out}");
            (code != 201).then_some(out)
        }
    })
    .await;
    assert!(
        body["message"]
            .as_str()
            .unwrap_or("")
            .ends_with("denied request: alice may not delete configmaps"),
        "{body}"
    );
    // The admin (system:masters) may do anything.
    let (code, _, body) = send(
        c,
        "POST",
        "/api/v1/namespaces/vap-authz/configmaps",
        &cm("by-admin", json!({})),
    )
    .await;
    assert_eq!(code, 201, "{body}");
}
