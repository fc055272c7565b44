//! `nodes/proxy` and `metrics.k8s.io` against a fake node agent (HTTPS on loopback with a
//! serving certificate from the cluster CA, like a real agent's): every method, the query,
//! headers and body pass through; hop-by-hop headers, the client's `Authorization` and the
//! impersonation headers do not; the trailing-slash redirect; RBAC on `nodes/proxy`; NodeMetrics
//! and PodMetrics computed from the agent's `/stats/summary` (quantities, selectors, NotFound,
//! the 5 s cache).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::{json, Value};

type Uids = Arc<Mutex<HashMap<String, String>>>;

struct Env {
    _dir: tempfile::TempDir,
    client: Client,
    node_token: String,
    summaries: Arc<AtomicUsize>,
    /// Pod name → uid, for the Summary's podRefs.
    uids: Uids,
    agent_port: u16,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// The fake agent: `/stats/summary` answers a fixed Summary, everything else echoes the request
/// as JSON with a few response headers (one of them hop-by-hop).
async fn fake_agent(cert: &str, key: &str, summaries: Arc<AtomicUsize>, uids: Uids) -> u16 {
    let certs = rustls_pemfile::certs(&mut cert.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("certs");
    let key = rustls_pemfile::private_key(&mut key.as_bytes())
        .expect("key")
        .expect("a key");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let Ok(tls) = acceptor.accept(tcp).await else {
                continue;
            };
            let summaries = summaries.clone();
            let uids = uids.clone();
            let svc =
                hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let summaries = summaries.clone();
                    let uids = uids.lock().map(|m| m.clone()).unwrap_or_default();
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let resp = if parts.uri.path() == "/stats/summary" {
                            summaries.fetch_add(1, Ordering::SeqCst);
                            http::Response::builder()
                                .header("content-type", "application/json")
                                .body(Full::new(Bytes::from(summary(&uids).to_string())))
                        } else {
                            let headers: serde_json::Map<String, Value> = parts
                                .headers
                                .iter()
                                .map(|(k, v)| (k.to_string(), json!(v.to_str().unwrap_or(""))))
                                .collect();
                            let echo = json!({"method": parts.method.as_str(),
                            "uri": parts.uri.to_string(), "headers": headers,
                            "body": String::from_utf8_lossy(&body)});
                            http::Response::builder()
                                .status(207)
                                .header("content-type", "application/json")
                                .header("x-from-agent", "yes")
                                .header("connection", "x-hop")
                                .header("x-hop", "dropped")
                                .body(Full::new(Bytes::from(echo.to_string())))
                        };
                        Ok::<_, std::convert::Infallible>(resp.expect("response"))
                    }
                });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), svc),
            );
        }
    });
    port
}

fn summary(uids: &HashMap<String, String>) -> Value {
    let uid = |n: &str| uids.get(n).cloned().unwrap_or_default();
    let cpu = |n: u64| json!({"time": "2026-12-07T07:00:00Z", "usageNanoCores": n, "usageCoreNanoSeconds": n * 10});
    let mem = |b: u64| json!({"time": "2026-12-07T07:00:00Z", "workingSetBytes": b, "usageBytes": b + 4096});
    json!({
        "node": {"nodeName": "n1", "cpu": cpu(1_500_000_000), "memory": mem(2 << 30)},
        "pods": [
            {"podRef": {"name": "web", "namespace": "default", "uid": uid("web")},
             "containers": [
                {"name": "a", "cpu": cpu(250_000), "memory": mem(10 << 20)},
                {"name": "b", "cpu": cpu(1_000), "memory": mem(1000)},
             ]},
            {"podRef": {"name": "partial", "namespace": "default", "uid": uid("partial")},
             "containers": [{"name": "a", "cpu": {"time": "2026-12-07T07:00:00Z"}, "memory": mem(1)}]},
        ]
    })
}

impl Env {
    async fn new() -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        let store =
            Arc::new(skiff_store::SqliteStore::open(&dir.path().join("state.db")).expect("store"));
        let mut config =
            skiff_apiserver::ServerConfig::new(dir.path(), "127.0.0.1:0".parse().expect("addr"));
        config.disable_admission_plugins = vec!["ServiceAccount".into()];
        let server = skiff_apiserver::Server::bind(config, store)
            .await
            .expect("bind");
        let kubeconfig = server.kubeconfig_path().to_path_buf();
        let addr = server.local_addr();
        let node_token = server.state().tokens.node.clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(server.run(async {
            let _ = rx.await;
        }));
        let ca = std::fs::read_to_string(dir.path().join("server/tls/ca.crt")).expect("CA");
        let node_client = skiff_client::config::with_token(
            &format!("https://{addr}"),
            ca.as_bytes(),
            &node_token,
        )
        .expect("node client");
        let cert = skiff_client::node_cert::request(
            &node_client,
            "n1",
            &[std::net::IpAddr::from([127, 0, 0, 1])],
        )
        .await
        .expect("serving certificate");
        let summaries = Arc::new(AtomicUsize::new(0));
        let uids = Uids::default();
        let port = fake_agent(&cert.cert, &cert.key, summaries.clone(), uids.clone()).await;
        let client = skiff_client::config::from_kubeconfig(&kubeconfig)
            .await
            .expect("client");
        let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
        let node =
            serde_json::from_value(json!({"metadata": {"name": "n1", "labels": {"role": "w"}}}))
                .expect("node");
        nodes
            .create(&PostParams::default(), &node)
            .await
            .expect("node");
        let status = json!({"status": {
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
        }});
        nodes
            .patch_status("n1", &PatchParams::default(), &Patch::Merge(&status))
            .await
            .expect("node status");
        Env {
            _dir: dir,
            client,
            node_token,
            summaries,
            uids,
            agent_port: port,
            _stop: tx,
        }
    }

    /// (status, headers, body) of a raw request through the admin client.
    async fn send(&self, req: http::Request<Vec<u8>>) -> (u16, http::HeaderMap, String) {
        let resp = self
            .client
            .send(req.map(Into::into))
            .await
            .expect("request");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        (status, headers, String::from_utf8_lossy(&body).into_owned())
    }

    async fn get_json(&self, path: &str) -> (u16, Value) {
        let (code, _, body) = self
            .send(http::Request::get(path).body(Vec::new()).expect("req"))
            .await;
        (code, serde_json::from_str(&body).unwrap_or(Value::Null))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn node_proxy_passes_methods_headers_and_bodies() {
    let env = Env::new().await;
    for method in ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] {
        let req = http::Request::builder()
            .method(method)
            .uri("/api/v1/nodes/n1/proxy/some/path?a=1&b=two")
            .header("x-custom", "kept")
            .header("connection", "x-hop-req")
            .header("x-hop-req", "dropped")
            .header("content-type", "text/plain")
            .body(b"payload".to_vec())
            .expect("req");
        let (code, headers, body) = env.send(req).await;
        assert_eq!(code, 207, "{method}: {body}");
        let echo: Value = serde_json::from_str(&body).expect("echo");
        assert_eq!(echo["method"], method);
        assert_eq!(echo["uri"], "/some/path?a=1&b=two");
        assert_eq!(echo["headers"]["x-custom"], "kept");
        assert!(echo["headers"].get("x-hop-req").is_none(), "{echo}");
        // The agent sees the node token, never the user's credentials.
        assert_eq!(
            echo["headers"]["authorization"],
            format!("Bearer {}", env.node_token)
        );
        assert_eq!(echo["body"], "payload");
        assert_eq!(
            headers.get("x-from-agent").map(|v| v.as_bytes()),
            Some(&b"yes"[..])
        );
        assert!(headers.get("x-hop").is_none(), "{headers:?}");
    }
    let req = http::Request::head("/api/v1/nodes/n1/proxy/x")
        .body(Vec::new())
        .expect("req");
    let (code, headers, _) = env.send(req).await;
    assert_eq!(code, 207);
    assert_eq!(
        headers.get("x-from-agent").map(|v| v.as_bytes()),
        Some(&b"yes"[..])
    );

    // Upstream's redirect of an empty proxied path, the query kept.
    let req = http::Request::get("/api/v1/nodes/n1/proxy?x=1")
        .body(Vec::new())
        .expect("req");
    let (code, headers, _) = env.send(req).await;
    assert_eq!(code, 301);
    assert_eq!(
        headers.get("location").and_then(|v| v.to_str().ok()),
        Some("/api/v1/nodes/n1/proxy/?x=1")
    );

    // The node's name may carry a port: the agent's, or another one dialed over plain HTTP
    // (here refused: loopback is no proxyable address).
    let (code, body) = env.get_json("/api/v1/nodes/n1:1/proxy/x").await;
    assert_eq!(code, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or("")
            .contains("address not allowed"),
        "{body}"
    );
    let req = http::Request::get(
        "/api/v1/nodes/n1:{port}/proxy/x".replace("{port}", &env.agent_port.to_string()),
    )
    .body(Vec::new())
    .expect("req");
    assert_eq!(env.send(req).await.0, 207);
    let (code, body) = env.get_json("/api/v1/nodes/nope/proxy/x").await;
    assert_eq!(code, 404, "{body}");

    // RBAC on nodes/proxy: an impersonated user without grants gets 403, and the proxy never
    // forwards the impersonation headers.
    let req = http::Request::get("/api/v1/nodes/n1/proxy/x")
        .header("impersonate-user", "nobody")
        .body(Vec::new())
        .expect("req");
    let (code, _, body) = env.send(req).await;
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("nodes/proxy"), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_api_from_the_agent_summary() {
    let env = Env::new().await;
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(env.client.clone(), "default");
    for (name, labels) in [
        ("web", json!({"app": "web"})),
        ("partial", json!({"app": "x"})),
        ("other", json!({"app": "web"})),
    ] {
        let pod = serde_json::from_value(json!({"metadata": {"name": name, "labels": labels},
            "spec": {"nodeName": "n1", "containers": [{"name": "a", "image": "i"}]}}))
        .expect("pod");
        pods.create(&PostParams::default(), &pod)
            .await
            .expect("pod");
        let status = json!({"status": {"phase": "Running"}});
        pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .expect("status");
    }
    // The summary names web and partial (with their uids), not other.
    for name in ["web", "partial"] {
        let uid = pods
            .get(name)
            .await
            .expect("pod")
            .metadata
            .uid
            .unwrap_or_default();
        env.uids.lock().expect("uids").insert(name.to_string(), uid);
    }

    let (code, list) = env.get_json("/apis/metrics.k8s.io/v1beta1/nodes").await;
    assert_eq!(code, 200, "{list}");
    assert_eq!(list["kind"], "NodeMetricsList");
    let n = &list["items"][0];
    assert_eq!(n["metadata"]["name"], "n1");
    assert_eq!(n["metadata"]["labels"]["role"], "w");
    assert_eq!(n["usage"]["cpu"], "1500000000n");
    assert_eq!(n["usage"]["memory"], format!("{}Ki", (2u64 << 30) / 1024));
    assert_eq!(n["timestamp"], "2026-12-07T07:00:00Z");
    let (code, one) = env.get_json("/apis/metrics.k8s.io/v1beta1/nodes/n1").await;
    assert_eq!((code, &one["kind"]), (200, &json!("NodeMetrics")));
    let (code, empty) = env
        .get_json("/apis/metrics.k8s.io/v1beta1/nodes?labelSelector=role%3Dnone")
        .await;
    assert_eq!((code, &empty["items"]), (200, &json!([])));

    // Pods: only those with figures for every container.
    let (code, list) = env
        .get_json("/apis/metrics.k8s.io/v1beta1/namespaces/default/pods")
        .await;
    assert_eq!(code, 200, "{list}");
    assert_eq!(list["kind"], "PodMetricsList");
    let items = list["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), 1, "{list}");
    let web = &items[0];
    assert_eq!(web["metadata"]["name"], "web");
    assert_eq!(web["metadata"]["namespace"], "default");
    assert_eq!(web["metadata"]["labels"]["app"], "web");
    assert_eq!(web["window"], "1s");
    assert_eq!(
        web["containers"],
        json!([{"name": "a", "usage": {"cpu": "250000n", "memory": "10240Ki"}},
               {"name": "b", "usage": {"cpu": "1000n", "memory": "1000"}}])
    );
    let (_, all) = env.get_json("/apis/metrics.k8s.io/v1beta1/pods").await;
    assert_eq!(all["items"].as_array().map(Vec::len), Some(1), "{all}");
    let (_, selected) = env
        .get_json("/apis/metrics.k8s.io/v1beta1/namespaces/default/pods?labelSelector=app%3Dx")
        .await;
    assert_eq!(
        selected["items"],
        json!([]),
        "partial has no CPU rate: {selected}"
    );
    let (code, one) = env
        .get_json("/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/web")
        .await;
    assert_eq!((code, &one["kind"]), (200, &json!("PodMetrics")));
    let (code, err) = env
        .get_json("/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/other")
        .await;
    assert_eq!(code, 404);
    assert_eq!(
        err["message"],
        "podmetrics.metrics.k8s.io \"default/other\" not found"
    );
    // Summaries are cached: these requests asked the agent once.
    assert_eq!(env.summaries.load(Ordering::SeqCst), 1);

    // Writes and watches are refused.
    let req = http::Request::post("/apis/metrics.k8s.io/v1beta1/nodes")
        .header("content-type", "application/json")
        .body(b"{}".to_vec())
        .expect("req");
    let (code, _, body) = env.send(req).await;
    assert_eq!(code, 405, "{body}");
    let (code, _) = env
        .get_json("/apis/metrics.k8s.io/v1beta1/nodes?watch=true")
        .await;
    assert_eq!(code, 405);

    // Discovery lists the group for `kubectl top`.
    let (code, rl) = env.get_json("/apis/metrics.k8s.io/v1beta1").await;
    assert_eq!(code, 200);
    let names: Vec<&str> = rl["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert_eq!(names, ["nodes", "pods"]);
}
