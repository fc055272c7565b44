//! Bad input gets a 4xx `Status` a person can act on, and never an invalid object in the store.
//! Raw requests through the kube-rs client's transport (real HTTPS, real token).

mod common;

use http_body_util::BodyExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams};
use serde_json::Value;

use common::start;

const CONFIGMAPS: &str = "/api/v1/namespaces/default/configmaps";

/// Sends one request; returns (HTTP status, parsed Status body).
async fn send(
    client: &kube::Client,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> (u16, Value) {
    let mut req = http::Request::builder().method(method).uri(path);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let req = req.body(kube::client::Body::from(body)).expect("request");
    let resp = client.send(req).await.expect("send");
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, value)
}

fn assert_status(got: &(u16, Value), code: u16, reason: &str, message_part: &str) {
    let (status, body) = got;
    assert_eq!(*status, code, "{body}");
    assert_eq!(body["kind"], "Status", "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["reason"], reason, "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(message_part),
        "message {message:?} lacks {message_part:?}"
    );
}

async fn configmap_count(client: &kube::Client) -> usize {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    api.list(&ListParams::default())
        .await
        .expect("list")
        .items
        .len()
}

fn configmap_json(name: &str) -> Vec<u8> {
    format!(r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{name}"}},"data":{{"a":"b"}}}}"#)
        .into_bytes()
}

#[tokio::test]
async fn malformed_bodies_are_400_and_store_nothing() {
    let s = start().await;
    let c = &s.client;
    let json = send(
        c,
        "POST",
        CONFIGMAPS,
        Some("application/json"),
        b"{\"apiVersion\": \"v1\",\n \"kind\": ".to_vec(),
    )
    .await;
    assert_status(&json, 400, "BadRequest", "line");
    let yaml = send(
        c,
        "POST",
        CONFIGMAPS,
        Some("application/yaml"),
        b"kind: ConfigMap\n  bad: [indent\n".to_vec(),
    )
    .await;
    assert_status(&yaml, 400, "BadRequest", "");
    let mut proto = b"k8s\0".to_vec();
    proto.extend_from_slice(&[0x0a, 0xff, 0xff, 0x01, 0x02]);
    let proto = send(
        c,
        "POST",
        CONFIGMAPS,
        Some("application/vnd.kubernetes.protobuf"),
        proto,
    )
    .await;
    assert_status(&proto, 400, "BadRequest", "");
    let media = send(c, "POST", CONFIGMAPS, Some("text/csv"), b"a,b".to_vec()).await;
    assert_eq!(media.0, 415, "{}", media.1);
    assert_eq!(media.1["reason"], "UnsupportedMediaType");
    assert_eq!(configmap_count(c).await, 0);
}

#[tokio::test]
async fn kind_mismatch_and_unknown_fields_are_400() {
    let s = start().await;
    let c = &s.client;
    let mismatch = send(
        c,
        "POST",
        "/apis/apps/v1/namespaces/default/deployments",
        Some("application/json"),
        configmap_json("cm"),
    )
    .await;
    assert_status(&mismatch, 400, "BadRequest", "ConfigMap");
    let strict = send(
        c,
        "POST",
        &format!("{CONFIGMAPS}?fieldValidation=Strict"),
        Some("application/json"),
        br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"},"dataa":{"a":"b"}}"#
            .to_vec(),
    )
    .await;
    assert_status(&strict, 400, "BadRequest", "unknown field \"dataa\"");
    assert_eq!(configmap_count(c).await, 0);
}

#[tokio::test]
async fn oversized_body_is_413() {
    let s = start().await;
    let big = format!(
        r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"big"}},"data":{{"a":"{}"}}}}"#,
        "x".repeat(3 * 1024 * 1024 + 10)
    );
    let got = send(
        &s.client,
        "POST",
        CONFIGMAPS,
        Some("application/json"),
        big.into_bytes(),
    )
    .await;
    assert_status(&got, 413, "RequestEntityTooLarge", "limit is 3145728");
    assert_eq!(configmap_count(&s.client).await, 0);
}

#[tokio::test]
async fn invalid_names_and_labels_are_422_with_causes() {
    let s = start().await;
    let c = &s.client;
    let name = send(
        c,
        "POST",
        CONFIGMAPS,
        Some("application/json"),
        configmap_json("Bad_Name"),
    )
    .await;
    assert_status(&name, 422, "Invalid", "metadata.name");
    assert_eq!(
        name.1["details"]["causes"][0]["field"], "metadata.name",
        "{}",
        name.1
    );
    let label = send(
        c,
        "POST",
        CONFIGMAPS,
        Some("application/json"),
        br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"ok","labels":{"app":"has spaces"}}}"#.to_vec(),
    )
    .await;
    assert_status(&label, 422, "Invalid", "metadata.labels");
    assert_eq!(configmap_count(c).await, 0);
}

#[tokio::test]
async fn stale_resource_version_is_409_and_keeps_the_newer_object() {
    let s = start().await;
    let c = &s.client;
    let created = send(
        c,
        "POST",
        CONFIGMAPS,
        Some("application/json"),
        configmap_json("cm"),
    )
    .await;
    assert_eq!(created.0, 201, "{}", created.1);
    let rv = created.1["metadata"]["resourceVersion"]
        .as_str()
        .expect("rv")
        .to_string();
    let mut first = created.1.clone();
    first["data"]["a"] = "first".into();
    let ok = send(
        c,
        "PUT",
        &format!("{CONFIGMAPS}/cm"),
        Some("application/json"),
        first.to_string().into_bytes(),
    )
    .await;
    assert_eq!(ok.0, 200, "{}", ok.1);
    let mut stale = created.1.clone();
    stale["metadata"]["resourceVersion"] = rv.into();
    stale["data"]["a"] = "stale".into();
    let conflict = send(
        c,
        "PUT",
        &format!("{CONFIGMAPS}/cm"),
        Some("application/json"),
        stale.to_string().into_bytes(),
    )
    .await;
    assert_status(&conflict, 409, "Conflict", "the object has been modified");
    let api: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    let now = api.get("cm").await.expect("get");
    assert_eq!(
        now.data.and_then(|d| d.get("a").cloned()).as_deref(),
        Some("first")
    );
}
