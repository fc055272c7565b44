//! `GET /metrics` through a real HTTPS server: upstream's metric names and labels after real
//! requests (create, list, a watch that ends), store latency and object counts, process
//! metrics, and authorization by RBAC's nonResourceURLs (`system:monitoring` may, others 403).

use futures::StreamExt;
use http::{Method, Request};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams, WatchParams};
mod common;

use common::start;

/// GET `path` as `user` (None = the admin): status, content type and body text.
async fn get(
    client: &kube::Client,
    path: &str,
    user: Option<(&str, &[&str])>,
) -> (u16, String, String) {
    let mut b = Request::builder().method(Method::GET).uri(path);
    if let Some((name, groups)) = user {
        b = b.header("Impersonate-User", name);
        for g in groups {
            b = b.header("Impersonate-Group", *g);
        }
    }
    let resp = client
        .send(b.body(kube::client::Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let bytes = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    (status, ct, String::from_utf8_lossy(&bytes).into_owned())
}

/// The value of the first sample of `name` whose labels include every one of `labels`.
fn sample(body: &str, name: &str, labels: &[&str]) -> Option<f64> {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .find(|l| labels.iter().all(|want| l.contains(want)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn metrics_have_upstream_names_after_real_requests() {
    let t = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(t.client.clone(), "default");
    let cm =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "metrics-cm"}})).unwrap();
    cms.create(&PostParams::default(), &cm).await.unwrap();
    cms.list(&Default::default()).await.unwrap();

    // A watch is long-running: counted in the gauge while open, recorded when it ends.
    let mut w = cms
        .watch(&WatchParams::default().timeout(2), "0")
        .await
        .unwrap()
        .boxed();
    let (_, _, open) = get(&t.client, "/metrics", None).await;
    assert!(
        sample(
            &open,
            "apiserver_longrunning_requests",
            &[
                "verb=\"WATCH\"",
                "resource=\"configmaps\"",
                "scope=\"namespace\""
            ]
        )
        .is_some_and(|v| v >= 1.0),
        "{open}"
    );
    while w.next().await.is_some() {}
    drop(w);

    let mut body = String::new();
    for _ in 0..50 {
        let (code, ct, b) = get(&t.client, "/metrics", None).await;
        assert_eq!(code, 200, "{b}");
        assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
        body = b;
        if sample(&body, "apiserver_request_total", &["verb=\"WATCH\""]).is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let created = [
        "verb=\"POST\"",
        "resource=\"configmaps\"",
        "scope=\"namespace\"",
        "code=\"201\"",
        "component=\"apiserver\"",
        "version=\"v1\"",
        "group=\"\"",
        "subresource=\"\"",
        "dry_run=\"\"",
    ];
    assert!(sample(&body, "apiserver_request_total", &created).is_some_and(|v| v >= 1.0));
    assert!(sample(
        &body,
        "apiserver_request_total",
        &["verb=\"LIST\"", "resource=\"configmaps\"", "code=\"200\""]
    )
    .is_some());
    assert!(sample(
        &body,
        "apiserver_request_total",
        &["verb=\"WATCH\"", "resource=\"configmaps\"", "code=\"200\""]
    )
    .is_some());
    // Upstream's buckets, ending at 60 s and +Inf.
    assert!(sample(
        &body,
        "apiserver_request_duration_seconds_bucket",
        &["verb=\"POST\"", "resource=\"configmaps\"", "le=\"0.005\""]
    )
    .is_some());
    assert!(sample(
        &body,
        "apiserver_request_duration_seconds_bucket",
        &["verb=\"POST\"", "resource=\"configmaps\"", "le=\"60.0\""]
    )
    .is_some());
    assert!(sample(
        &body,
        "etcd_request_duration_seconds_count",
        &["operation=\"create\"", "type=\"configmaps\""]
    )
    .is_some_and(|v| v >= 1.0));
    assert!(sample(
        &body,
        "apiserver_storage_objects",
        &["resource=\"configmaps\""]
    )
    .is_some_and(|v| v >= 1.0));
    assert!(sample(
        &body,
        "apiserver_storage_objects",
        &["resource=\"deployments.apps\""]
    )
    .is_some());
    // The scrape itself is in flight while it is encoded.
    assert!(sample(
        &body,
        "apiserver_current_inflight_requests",
        &["request_kind=\"readOnly\""]
    )
    .is_some_and(|v| v >= 1.0));
    for name in [
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_start_time_seconds",
    ] {
        assert!(sample(&body, name, &[]).is_some_and(|v| v > 0.0), "{name}");
    }
    assert!(body.ends_with("# EOF\n"));

    // Prometheus asks for OpenMetrics first and gets it.
    let resp = t
        .client
        .send(
            Request::get("/metrics")
                .header(
                    "accept",
                    "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
                )
                .body(kube::client::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        resp.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
}

#[tokio::test]
async fn metrics_are_authorized_by_non_resource_urls() {
    let t = start().await;
    // No rule for /metrics: 403 with upstream's non-resource message.
    let (code, _, body) = get(&t.client, "/metrics", Some(("mallory", &[]))).await;
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("cannot get path \\\"/metrics\\\""), "{body}");
    // The bootstrap system:monitoring ClusterRole, bound to the group of the same name.
    let (code, _, body) = get(
        &t.client,
        "/metrics",
        Some(("prometheus", &["system:monitoring"])),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("# TYPE apiserver_request counter"), "{body}");
    // …which grants no resources.
    let (code, _, _) = get(
        &t.client,
        "/api/v1/namespaces/default/configmaps",
        Some(("prometheus", &["system:monitoring"])),
    )
    .await;
    assert_eq!(code, 403);
}

/// The datastore's health from `Store::status`: size, WAL, in-use, quota, compactions, commit
/// latency histogram and alarms (SQLite here; etcd fills the same status).
#[tokio::test]
async fn metrics_show_datastore_status() {
    let t = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(t.client.clone(), "default");
    let cm =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "datastore-cm"}})).unwrap();
    cms.create(&PostParams::default(), &cm).await.unwrap();
    let (code, _, body) = get(&t.client, "/metrics", None).await;
    assert_eq!(code, 200, "{body}");
    let size = sample(
        &body,
        "apiserver_storage_size_bytes",
        &["storage_cluster_id=\"sqlite-0\""],
    );
    assert!(size.is_some_and(|v| v > 0.0), "{body}");
    assert_eq!(
        sample(&body, "skiff_datastore_quota_bytes", &[]),
        Some(2147483648.0)
    );
    let in_use = sample(&body, "skiff_datastore_in_use_bytes", &[]).unwrap();
    // Pages still in the WAL count as in use before the file grows to hold them.
    assert!(in_use > 0.0);
    assert!(sample(&body, "skiff_datastore_wal_bytes", &[]).is_some());
    assert!(sample(&body, "skiff_datastore_compactions_total", &[]).is_some());
    assert!(sample(&body, "skiff_datastore_compact_revision", &[]).is_some());
    assert!(
        sample(&body, "skiff_datastore_commit_duration_seconds_count", &[])
            .is_some_and(|v| v >= 1.0),
        "{body}"
    );
    assert!(sample(
        &body,
        "skiff_datastore_commit_duration_seconds_bucket",
        &["le=\"+Inf\""]
    )
    .is_some_and(|v| v >= 1.0));
    assert_eq!(
        sample(&body, "skiff_datastore_alarm", &["alarm=\"NOSPACE\""]),
        Some(0.0)
    );
    assert!(body.contains("# TYPE skiff_datastore_commit_duration_seconds histogram"));
}
