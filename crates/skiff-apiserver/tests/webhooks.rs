//! Admission webhooks end to end: a real HTTPS webhook server in the test (rustls, a CA made
//! with rcgen) called by an in-process API server through `clientConfig.url` and through a
//! Service routed to its Endpoints.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DeleteParams, PostParams};
use kube::Client;
use serde_json::{json, Value};

/// Calls per webhook path, and the AdmissionReviews seen.
#[derive(Default)]
struct Seen {
    calls: Mutex<HashMap<String, usize>>,
    reviews: Mutex<Vec<Value>>,
}

struct Hooks {
    port: u16,
    ca_b64: String,
    seen: Arc<Seen>,
    total: Arc<AtomicUsize>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Hooks {
    fn calls(&self, path: &str) -> usize {
        *self.seen.calls.lock().unwrap().get(path).unwrap_or(&0)
    }
}

fn b64(v: &Value) -> String {
    base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(v).unwrap())
}

fn allowed(uid: &Value, extra: Value) -> Value {
    let mut resp = json!({"uid": uid, "allowed": true});
    if let (Some(r), Some(e)) = (resp.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            r.insert(k.clone(), v.clone());
        }
    }
    resp
}

/// The webhook behaviours, by path.
async fn review(
    State((seen, total)): State<(Arc<Seen>, Arc<AtomicUsize>)>,
    Path(which): Path<String>,
    Json(body): Json<Value>,
) -> Json<Value> {
    total.fetch_add(1, Ordering::SeqCst);
    *seen.calls.lock().unwrap().entry(which.clone()).or_default() += 1;
    seen.reviews.lock().unwrap().push(body.clone());
    let req = &body["request"];
    let uid = &req["uid"];
    let obj = &req["object"];
    let name = obj["metadata"]["name"].as_str().unwrap_or("");
    let has_labels = obj["metadata"]["labels"].is_object();
    let response = match which.as_str() {
        "deny" if name.starts_with("bad") => json!({
            "uid": uid, "allowed": false,
            "status": {"code": 403, "message": format!("{name} is not welcome")},
        }),
        "deny" => allowed(uid, json!({"warnings": ["checked by the deny webhook"]})),
        "label" => {
            let patch = if has_labels {
                json!([{"op": "add", "path": "/metadata/labels/mutated", "value": "yes"}])
            } else {
                json!([{"op": "add", "path": "/metadata/labels", "value": {"mutated": "yes"}}])
            };
            allowed(
                uid,
                json!({"patchType": "JSONPatch", "patch": b64(&patch), "warnings": ["labelled by the webhook"]}),
            )
        }
        "count" => {
            // Counts its own calls in an annotation (reinvocation test).
            let n = obj["metadata"]["annotations"]["count-calls"]
                .as_str()
                .and_then(|s| s.parse::<u32>().ok())
                .unwrap_or(0);
            let patch = if obj["metadata"]["annotations"].is_object() {
                json!([{"op": "add", "path": "/metadata/annotations/count-calls", "value": (n + 1).to_string()}])
            } else {
                json!([{"op": "add", "path": "/metadata/annotations", "value": {"count-calls": "1"}}])
            };
            allowed(uid, json!({"patchType": "JSONPatch", "patch": b64(&patch)}))
        }
        "slow" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            allowed(uid, json!({}))
        }
        "wrong-uid" => json!({"uid": "nope", "allowed": true}),
        _ => allowed(uid, json!({})),
    };
    let api_version = body["apiVersion"].clone();
    Json(json!({"apiVersion": api_version, "kind": "AdmissionReview", "response": response}))
}

/// An HTTPS webhook server on 127.0.0.1 with a certificate for the IP and `dns`, signed by a
/// CA of its own.
async fn serve_hooks(dns: &[&str]) -> Hooks {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let mut sans: Vec<String> = vec!["127.0.0.1".into()];
    sans.extend(dns.iter().map(|s| s.to_string()));
    let leaf = rcgen::CertificateParams::new(sans)
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    serve_with(leaf, key, ca_cert.pem()).await
}

/// The same server with one self-signed CA certificate as its serving certificate (what
/// `openssl req -x509` makes), the bundle being that certificate.
async fn serve_self_signed_hooks() -> Hooks {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).unwrap();
    let pem = cert.pem();
    serve_with(cert, key, pem).await
}

async fn serve_with(leaf: rcgen::Certificate, key: rcgen::KeyPair, ca_pem: String) -> Hooks {
    let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![leaf.der().clone()],
        rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Seen::default());
    let total = Arc::new(AtomicUsize::new(0));
    let app = Router::new()
        .route("/{which}", post(review))
        .with_state((seen.clone(), total.clone()));
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = tokio::select! {
                r = listener.accept() => match r { Ok(c) => c, Err(_) => continue },
                _ = &mut stopped => return,
            };
            let acceptor = acceptor.clone();
            let app = app.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper_util::service::TowerToHyperService::new(app);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    Hooks {
        port,
        ca_b64: base64::engine::general_purpose::STANDARD.encode(ca_pem),
        seen,
        total,
        _stop: stop,
    }
}

/// One webhook entry calling `path` on the test server for configmaps.
fn webhook(h: &Hooks, name: &str, path: &str, extra: Value) -> Value {
    let mut w = json!({
        "name": name,
        "clientConfig": {"url": format!("https://127.0.0.1:{}/{path}", h.port), "caBundle": h.ca_b64},
        "rules": [{"operations": ["CREATE", "UPDATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"]}],
        "sideEffects": "None",
        "admissionReviewVersions": ["v1"],
    });
    for (k, v) in extra.as_object().unwrap() {
        w[k] = v.clone();
    }
    w
}

async fn validating(client: &Client, name: &str, hooks: Vec<Value>) {
    let api: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    let cfg =
        serde_json::from_value(json!({"metadata": {"name": name}, "webhooks": hooks})).unwrap();
    api.create(&PostParams::default(), &cfg).await.unwrap();
}

async fn mutating(client: &Client, name: &str, hooks: Vec<Value>) {
    let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let cfg =
        serde_json::from_value(json!({"metadata": {"name": name}, "webhooks": hooks})).unwrap();
    api.create(&PostParams::default(), &cfg).await.unwrap();
}

fn cm(name: &str, labels: Value) -> ConfigMap {
    serde_json::from_value(
        json!({"metadata": {"name": name, "labels": labels}, "data": {"k": "v"}}),
    )
    .unwrap()
}

async fn ensure_ns(client: &Client, ns: &str, labels: Value) {
    let api: Api<Namespace> = Api::all(client.clone());
    let obj = serde_json::from_value(json!({"metadata": {"name": ns, "labels": labels}})).unwrap();
    let _ = api.create(&PostParams::default(), &obj).await;
}

/// Waits until creating configmaps in `ns` reaches the webhook server (the configuration
/// cache follows the store asynchronously).
async fn wait_active(client: &Client, ns: &str, h: &Hooks) {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    for i in 0..100 {
        let before = h.total.load(Ordering::SeqCst);
        let name = format!("probe-{i}");
        let _ = api
            .create(&PostParams::default(), &cm(&name, json!({"probe": "yes"})))
            .await;
        let _ = api.delete(&name, &DeleteParams::default()).await;
        if h.total.load(Ordering::SeqCst) > before {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the webhook was never called");
}

fn api_err(e: kube::Error) -> kube::core::Status {
    match e {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API error, got {other}"),
    }
}

/// A self-signed certificate that is also the caBundle is trusted, as Go's TLS stack trusts it
/// (webpki alone refuses a CA certificate as a server's); a different self-signed bundle is not.
#[tokio::test]
async fn self_signed_webhook_certificates_are_trusted_when_they_are_the_bundle() {
    let srv = common::start().await;
    let h = serve_self_signed_hooks().await;
    validating(
        &srv.client,
        "deny-self-signed",
        vec![webhook(&h, "deny.example.com", "deny", json!({}))],
    )
    .await;
    wait_active(&srv.client, "default", &h).await;
    let api: Api<ConfigMap> = Api::namespaced(srv.client.clone(), "default");
    let err = api_err(
        api.create(&PostParams::default(), &cm("bad-one", json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 403, "{}", err.message);
    assert!(
        err.message.ends_with("bad-one is not welcome"),
        "{}",
        err.message
    );

    // Another self-signed certificate in the bundle: the call fails (failurePolicy Fail).
    let other = serve_self_signed_hooks().await;
    let mut hook = webhook(&h, "strict.example.com", "deny", json!({}));
    hook["clientConfig"]["caBundle"] = json!(other.ca_b64);
    validating(&srv.client, "wrong-bundle", vec![hook]).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let err = api_err(
            api.create(&PostParams::default(), &cm("good-one", json!({})))
                .await
                .unwrap_err(),
        );
        if err
            .message
            .contains("failed calling webhook \"strict.example.com\"")
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{}", err.message);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn validating_webhook_denies_with_its_message_and_warns() {
    let srv = common::start().await;
    let h = serve_hooks(&[]).await;
    validating(
        &srv.client,
        "deny",
        vec![webhook(&h, "deny.example.com", "deny", json!({}))],
    )
    .await;
    wait_active(&srv.client, "default", &h).await;
    let api: Api<ConfigMap> = Api::namespaced(srv.client.clone(), "default");
    let err = api_err(
        api.create(&PostParams::default(), &cm("bad-one", json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 403);
    assert_eq!(
        err.message,
        "admission webhook \"deny.example.com\" denied the request: bad-one is not welcome"
    );
    // An allowed create: the webhook's warning reaches the client as a Warning header.
    let body = serde_json::to_vec(
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "good"}}),
    )
    .unwrap();
    let req = http::Request::post("/api/v1/namespaces/default/configmaps")
        .header("content-type", "application/json")
        .body(body)
        .unwrap();
    let resp = srv.client.send(req.map(Into::into)).await.unwrap();
    assert_eq!(resp.status(), 201);
    let warnings: Vec<&str> = resp
        .headers()
        .get_all("warning")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("checked by the deny webhook")),
        "{warnings:?}"
    );
    // The AdmissionReview carries upstream's request fields.
    let reviews = h.seen.reviews.lock().unwrap().clone();
    let r = reviews
        .iter()
        .find(|r| r["request"]["name"] == "good")
        .expect("a review of the good configmap");
    assert_eq!(r["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(r["request"]["operation"], "CREATE");
    assert_eq!(r["request"]["namespace"], "default");
    assert_eq!(
        r["request"]["resource"],
        json!({"group": "", "version": "v1", "resource": "configmaps"})
    );
    assert_eq!(r["request"]["kind"]["kind"], "ConfigMap");
    assert_eq!(r["request"]["dryRun"], false);
    assert!(r["request"]["userInfo"]["username"].is_string());
}

#[tokio::test]
async fn mutating_webhook_adds_a_label_and_reinvokes_when_needed() {
    let srv = common::start().await;
    let h = serve_hooks(&[]).await;
    // "a-count" runs first and asks to be reinvoked; "b-label" runs after it and changes
    // the object, so "a-count" runs a second time.
    mutating(
        &srv.client,
        "mutate",
        vec![
            webhook(&h, "a-count.example.com", "count", json!({"reinvocationPolicy": "IfNeeded", "objectSelector": {"matchLabels": {"probe": "no-match"}}})),
        ],
    )
    .await;
    mutating(
        &srv.client,
        "mutate2",
        vec![
            webhook(
                &h,
                "a-count.example.com",
                "count",
                json!({"reinvocationPolicy": "IfNeeded"}),
            ),
            webhook(&h, "b-label.example.com", "label", json!({})),
        ],
    )
    .await;
    wait_active(&srv.client, "default", &h).await;
    let api: Api<ConfigMap> = Api::namespaced(srv.client.clone(), "default");
    let before = h.calls("count");
    let created = api
        .create(&PostParams::default(), &cm("plain", json!({})))
        .await
        .unwrap();
    let labels = created.metadata.labels.unwrap_or_default();
    assert_eq!(labels.get("mutated").map(String::as_str), Some("yes"));
    let ann = created.metadata.annotations.unwrap_or_default();
    assert_eq!(ann.get("count-calls").map(String::as_str), Some("2"));
    assert_eq!(h.calls("count") - before, 2);
    // Stored as mutated.
    let got = api.get("plain").await.unwrap();
    assert_eq!(got.metadata.labels.unwrap()["mutated"], "yes");
    // A mutating webhook's warnings reach the client too.
    let body = serde_json::to_vec(
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "warned"}}),
    )
    .unwrap();
    let req = http::Request::post("/api/v1/namespaces/default/configmaps")
        .header("content-type", "application/json")
        .body(body)
        .unwrap();
    let resp = srv.client.send(req.map(Into::into)).await.unwrap();
    assert_eq!(resp.status(), 201);
    let warnings: Vec<&str> = resp
        .headers()
        .get_all("warning")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("labelled by the webhook")),
        "{warnings:?}"
    );
}

#[tokio::test]
async fn namespace_selector_on_namespaces_and_cluster_scoped_objects() {
    let srv = common::start().await;
    let h = serve_hooks(&[]).await;
    let rule = |res: &str, group: &str| json!([{"operations": ["CREATE"], "apiGroups": [group], "apiVersions": ["v1"], "resources": [res]}]);
    validating(
        &srv.client,
        "nssel",
        vec![
            webhook(
                &h,
                "namespaces.example.com",
                "nsobj",
                json!({
                    "rules": rule("namespaces", ""),
                    "namespaceSelector": {"matchLabels": {"hooks": "on"}},
                }),
            ),
            webhook(
                &h,
                "clusterroles.example.com",
                "cr",
                json!({
                    "rules": rule("clusterroles", "rbac.authorization.k8s.io"),
                    "namespaceSelector": {"matchLabels": {"hooks": "on"}},
                    "admissionReviewVersions": ["v1beta1"],
                }),
            ),
            webhook(
                &h,
                "probe.example.com",
                "probe",
                json!({"objectSelector": {"matchLabels": {"probe": "yes"}}}),
            ),
        ],
    )
    .await;
    wait_active(&srv.client, "default", &h).await;
    // A Namespace matches on its own labels.
    ensure_ns(&srv.client, "plain-ns", json!({})).await;
    assert_eq!(h.calls("nsobj"), 0);
    ensure_ns(&srv.client, "hooked-ns", json!({"hooks": "on"})).await;
    assert_eq!(h.calls("nsobj"), 1);
    // The namespace selector does not apply to other cluster-scoped objects; a webhook listing
    // only v1beta1 gets a v1beta1 AdmissionReview.
    let crs: Api<k8s_openapi::api::rbac::v1::ClusterRole> = Api::all(srv.client.clone());
    let cr =
        serde_json::from_value(json!({"metadata": {"name": "hooked-role"}, "rules": []})).unwrap();
    crs.create(&PostParams::default(), &cr).await.unwrap();
    assert_eq!(h.calls("cr"), 1);
    let reviews = h.seen.reviews.lock().unwrap().clone();
    let r = reviews
        .iter()
        .find(|r| r["request"]["name"] == "hooked-role")
        .expect("the ClusterRole review");
    assert_eq!(r["apiVersion"], "admission.k8s.io/v1beta1");
    assert!(r["request"].get("namespace").is_none());
}

#[tokio::test]
async fn namespace_and_object_selectors_choose_what_is_sent() {
    let srv = common::start().await;
    let h = serve_hooks(&[]).await;
    ensure_ns(&srv.client, "watched", json!({"hooks": "on"})).await;
    ensure_ns(&srv.client, "ignored", json!({})).await;
    validating(
        &srv.client,
        "sel",
        vec![
            webhook(&h, "ns.example.com", "ns", json!({"namespaceSelector": {"matchLabels": {"hooks": "on"}}})),
            webhook(&h, "obj.example.com", "obj", json!({"objectSelector": {"matchExpressions": [{"key": "team", "operator": "In", "values": ["a"]}]}})),
        ],
    )
    .await;
    wait_active(&srv.client, "watched", &h).await;
    let watched: Api<ConfigMap> = Api::namespaced(srv.client.clone(), "watched");
    let ignored: Api<ConfigMap> = Api::namespaced(srv.client.clone(), "ignored");
    let (ns0, obj0) = (h.calls("ns"), h.calls("obj"));
    ignored
        .create(&PostParams::default(), &cm("x", json!({})))
        .await
        .unwrap();
    assert_eq!((h.calls("ns"), h.calls("obj")), (ns0, obj0));
    watched
        .create(&PostParams::default(), &cm("y", json!({})))
        .await
        .unwrap();
    assert_eq!((h.calls("ns"), h.calls("obj")), (ns0 + 1, obj0));
    ignored
        .create(&PostParams::default(), &cm("z", json!({"team": "a"})))
        .await
        .unwrap();
    assert_eq!((h.calls("ns"), h.calls("obj")), (ns0 + 1, obj0 + 1));
    // An update that removes the label still matches on the old object.
    let mut z = ignored.get("z").await.unwrap();
    z.metadata.labels = None;
    ignored
        .replace("z", &PostParams::default(), &z)
        .await
        .unwrap();
    assert_eq!(h.calls("obj"), obj0 + 2);
    // Deletes carry the stored object as oldObject and no object.
    validating(
        &srv.client,
        "del",
        vec![webhook(&h, "del.example.com", "del", json!({
            "rules": [{"operations": ["DELETE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"]}],
        }))],
    )
    .await;
    for _ in 0..100 {
        if h.calls("del") > 0 {
            break;
        }
        let _ = watched
            .create(&PostParams::default(), &cm("tmp", json!({})))
            .await;
        let _ = watched.delete("tmp", &DeleteParams::default()).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = h.calls("del");
    assert!(before > 0, "the DELETE webhook was never called");
    watched.delete("y", &DeleteParams::default()).await.unwrap();
    assert_eq!(h.calls("del"), before + 1);
    let reviews = h.seen.reviews.lock().unwrap().clone();
    let r = reviews.last().unwrap();
    assert_eq!(r["request"]["operation"], "DELETE");
    assert_eq!(r["request"]["name"], "y");
    assert_eq!(r["request"]["oldObject"]["metadata"]["name"], "y");
    assert_eq!(r["request"]["object"], Value::Null);
    assert_eq!(r["request"]["options"]["kind"], "DeleteOptions");
}

#[tokio::test]
async fn failure_policy_ignore_and_fail_when_the_server_is_down() {
    let srv = common::start().await;
    let h = serve_hooks(&[]).await;
    // A port nobody listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_port = dead.local_addr().unwrap().port();
    drop(dead);
    let down = |name: &str, policy: &str, label: &str| {
        let mut w = webhook(
            &h,
            name,
            "x",
            json!({
                "failurePolicy": policy,
                "objectSelector": {"matchLabels": {"policy": label}},
            }),
        );
        w["clientConfig"]["url"] = json!(format!("https://127.0.0.1:{dead_port}/down"));
        w
    };
    validating(
        &srv.client,
        "down",
        vec![
            down("ignore.example.com", "Ignore", "ignore"),
            down("fail.example.com", "Fail", "fail"),
            webhook(
                &h,
                "probe.example.com",
                "probe",
                json!({"objectSelector": {"matchLabels": {"probe": "yes"}}}),
            ),
        ],
    )
    .await;
    wait_active(&srv.client, "default", &h).await;
    let api: Api<ConfigMap> = Api::namespaced(srv.client.clone(), "default");
    api.create(
        &PostParams::default(),
        &cm("open", json!({"policy": "ignore"})),
    )
    .await
    .unwrap();
    let err = api_err(
        api.create(
            &PostParams::default(),
            &cm("closed", json!({"policy": "fail"})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(err.code, 500);
    assert!(
        err.message.starts_with(&format!(
            "Internal error occurred: failed calling webhook \"fail.example.com\": failed to call webhook: Post \"https://127.0.0.1:{dead_port}/down?timeout=10s\": dial tcp 127.0.0.1:{dead_port}: connect: connection refused"
        )),
        "{}",
        err.message
    );
}

#[tokio::test]
async fn timeout_and_invalid_responses_fail_the_call() {
    let srv = common::start().await;
    let h = serve_hooks(&[]).await;
    validating(
        &srv.client,
        "slow",
        vec![
            webhook(
                &h,
                "slow.example.com",
                "slow",
                json!({"timeoutSeconds": 1, "objectSelector": {"matchLabels": {"slow": "yes"}}}),
            ),
            webhook(
                &h,
                "uid.example.com",
                "wrong-uid",
                json!({"objectSelector": {"matchLabels": {"uid": "yes"}}}),
            ),
            webhook(
                &h,
                "probe.example.com",
                "probe",
                json!({"objectSelector": {"matchLabels": {"probe": "yes"}}}),
            ),
        ],
    )
    .await;
    wait_active(&srv.client, "default", &h).await;
    let api: Api<ConfigMap> = Api::namespaced(srv.client.clone(), "default");
    let t0 = Instant::now();
    let err = api_err(
        api.create(&PostParams::default(), &cm("s", json!({"slow": "yes"})))
            .await
            .unwrap_err(),
    );
    let took = t0.elapsed();
    assert!(took < Duration::from_millis(2500), "{took:?}");
    assert!(took >= Duration::from_millis(900), "{took:?}");
    assert!(
        err.message
            .ends_with("/slow?timeout=1s\": context deadline exceeded"),
        "{}",
        err.message
    );
    let err = api_err(
        api.create(&PostParams::default(), &cm("u", json!({"uid": "yes"})))
            .await
            .unwrap_err(),
    );
    assert!(
        err.message.contains("failed calling webhook \"uid.example.com\": received invalid webhook response: expected response.uid="),
        "{}",
        err.message
    );
}

/// A server whose store already holds `seed` (objects the v1 API would not accept).
async fn start_seeded(seed: Vec<(String, Value)>) -> common::TestServer {
    use skiff_store::Store;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(skiff_store::SqliteStore::open(&dir.path().join("state.db")).unwrap());
    for (k, v) in seed {
        store
            .create(&k, serde_json::to_vec(&v).unwrap())
            .await
            .unwrap();
    }
    let server = skiff_apiserver::Server::bind(
        skiff_apiserver::ServerConfig::new(dir.path(), "127.0.0.1:0".parse().unwrap()),
        store,
    )
    .await
    .unwrap();
    let kubeconfig = server.kubeconfig_path().to_path_buf();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(async {
        let _ = rx.await;
    }));
    let client = common::client_from(&kubeconfig).await;
    common::TestServer {
        _dir: dir,
        client,
        kubeconfig,
        _stop: tx,
    }
}

#[tokio::test]
async fn dry_run_requires_side_effect_free_webhooks() {
    let h = serve_hooks(&[]).await;
    // sideEffects Unknown is not accepted by v1 any more (stored by an older version).
    let unknown = webhook(
        &h,
        "unknown.example.com",
        "unknown",
        json!({"sideEffects": "Unknown", "objectSelector": {"matchLabels": {"kind": "unknown"}}}),
    );
    let srv = start_seeded(vec![(
        "/registry/admissionregistration.k8s.io/validatingwebhookconfigurations/old".into(),
        json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
               "metadata": {"name": "old", "uid": "u-old"}, "webhooks": [unknown]}),
    )])
    .await;
    validating(
        &srv.client,
        "dry",
        vec![
            webhook(&h, "some.example.com", "some", json!({"sideEffects": "NoneOnDryRun", "objectSelector": {"matchLabels": {"kind": "some"}}})),
            webhook(&h, "none.example.com", "none", json!({"objectSelector": {"matchLabels": {"kind": "none"}}})),
            webhook(&h, "probe.example.com", "probe", json!({"objectSelector": {"matchLabels": {"probe": "yes"}}})),
        ],
    )
    .await;
    wait_active(&srv.client, "default", &h).await;
    let api: Api<ConfigMap> = Api::namespaced(srv.client.clone(), "default");
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    api.create(&dry, &cm("d1", json!({"kind": "some"})))
        .await
        .unwrap();
    api.create(&dry, &cm("d2", json!({"kind": "none"})))
        .await
        .unwrap();
    assert_eq!((h.calls("some"), h.calls("none")), (1, 1));
    let reviews = h.seen.reviews.lock().unwrap().clone();
    assert!(reviews
        .iter()
        .filter(|r| r["request"]["name"] == "d1" || r["request"]["name"] == "d2")
        .all(|r| r["request"]["dryRun"] == true));
    assert!(api.get_opt("d1").await.unwrap().is_none());
    let err = api_err(
        api.create(&dry, &cm("d3", json!({"kind": "unknown"})))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 400);
    assert_eq!(
        err.message,
        "admission webhook \"unknown.example.com\" does not support dry run"
    );
    assert_eq!(h.calls("unknown"), 0);
    // Without dryRun it is called.
    api.create(
        &PostParams::default(),
        &cm("d4", json!({"kind": "unknown"})),
    )
    .await
    .unwrap();
    assert_eq!(h.calls("unknown"), 1);
}

#[tokio::test]
async fn service_reference_routes_to_a_ready_endpoint() {
    let h = serve_hooks(&["hooksvc.default.svc", "slicesvc.default.svc"]).await;
    // Endpoints validation (like upstream's) refuses loopback addresses, so the Service and
    // its Endpoints are written to the store before the server starts.
    let srv = start_seeded(vec![
        (
            "/registry/core/services/default/hooksvc".into(),
            json!({"apiVersion": "v1", "kind": "Service",
                   "metadata": {"name": "hooksvc", "namespace": "default", "uid": "u-svc"},
                   "spec": {"type": "ClusterIP", "ports": [{"name": "https", "port": 443, "targetPort": h.port}]}}),
        ),
        (
            "/registry/core/endpoints/default/hooksvc".into(),
            json!({"apiVersion": "v1", "kind": "Endpoints",
                   "metadata": {"name": "hooksvc", "namespace": "default", "uid": "u-ep"},
                   "subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "https", "port": h.port}]}]}),
        ),
        // A Service with only an EndpointSlice (one endpoint not ready, one ready).
        (
            "/registry/core/services/default/slicesvc".into(),
            json!({"apiVersion": "v1", "kind": "Service",
                   "metadata": {"name": "slicesvc", "namespace": "default", "uid": "u-svc2"},
                   "spec": {"type": "ClusterIP", "ports": [{"port": 8443, "targetPort": h.port}]}}),
        ),
        (
            "/registry/discovery.k8s.io/endpointslices/default/slicesvc-x1".into(),
            json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                   "metadata": {"name": "slicesvc-x1", "namespace": "default", "uid": "u-es",
                                "labels": {"kubernetes.io/service-name": "slicesvc"}},
                   "addressType": "IPv4",
                   "endpoints": [{"addresses": ["127.0.0.2"], "conditions": {"ready": false}},
                                 {"addresses": ["127.0.0.1"], "conditions": {"ready": true}}],
                   "ports": [{"name": "", "port": h.port}]}),
        ),
    ])
    .await;
    let mut w = webhook(&h, "svc.example.com", "deny", json!({}));
    w["clientConfig"] = json!({
        "service": {"namespace": "default", "name": "hooksvc", "path": "/deny"},
        "caBundle": h.ca_b64,
    });
    validating(&srv.client, "svc", vec![w]).await;
    wait_active(&srv.client, "default", &h).await;
    let api: Api<ConfigMap> = Api::namespaced(srv.client.clone(), "default");
    let err = api_err(
        api.create(&PostParams::default(), &cm("bad-svc", json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        err.message,
        "admission webhook \"svc.example.com\" denied the request: bad-svc is not welcome"
    );
    let mut w = webhook(&h, "slices.example.com", "deny", json!({}));
    w["clientConfig"] = json!({
        "service": {"namespace": "default", "name": "slicesvc", "path": "/deny", "port": 8443},
        "caBundle": h.ca_b64,
    });
    validating(&srv.client, "slices", vec![w]).await;
    let mut last = String::new();
    for _ in 0..100 {
        last = api_err(
            api.create(&PostParams::default(), &cm("bad-slice", json!({})))
                .await
                .unwrap_err(),
        )
        .message;
        if last.contains("slices.example.com") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        last,
        "admission webhook \"slices.example.com\" denied the request: bad-slice is not welcome"
    );
}

#[tokio::test]
async fn configurations_are_defaulted_validated_and_printed() {
    let srv = common::start().await;
    let h = serve_hooks(&[]).await;
    let api: Api<MutatingWebhookConfiguration> = Api::all(srv.client.clone());
    let mut w = webhook(&h, "m.example.com", "allow", json!({}));
    w.as_object_mut().unwrap().remove("sideEffects");
    let bad =
        serde_json::from_value(json!({"metadata": {"name": "bad"}, "webhooks": [w]})).unwrap();
    let err = api_err(api.create(&PostParams::default(), &bad).await.unwrap_err());
    assert_eq!(err.code, 422);
    // k8s-openapi sends the required field as "" (Go's pointer to "" reads the same).
    assert_eq!(
        err.message,
        "MutatingWebhookConfiguration.admissionregistration.k8s.io \"bad\" is invalid: webhooks[0].sideEffects: Unsupported value: \"\": supported values: \"None\", \"NoneOnDryRun\""
    );
    mutating(
        &srv.client,
        "good",
        vec![webhook(&h, "m.example.com", "allow", json!({}))],
    )
    .await;
    let got = serde_json::to_value(api.get("good").await.unwrap()).unwrap();
    let hook = &got["webhooks"][0];
    assert_eq!(hook["failurePolicy"], "Fail");
    assert_eq!(hook["matchPolicy"], "Equivalent");
    assert_eq!(hook["timeoutSeconds"], 10);
    assert_eq!(hook["reinvocationPolicy"], "Never");
    assert_eq!(hook["rules"][0]["scope"], "*");
    // Strategic merge patches merge webhooks by name (as kubectl apply computes them).
    let patched = api
        .patch(
            "good",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Strategic(
                json!({"webhooks": [{"name": "m.example.com", "timeoutSeconds": 5}]}),
            ),
        )
        .await
        .unwrap();
    let patched = serde_json::to_value(patched).unwrap();
    assert_eq!(patched["webhooks"][0]["timeoutSeconds"], 5);
    assert_eq!(patched["webhooks"][0]["sideEffects"], "None");
    assert!(patched["webhooks"][0]["clientConfig"]["url"].is_string());
    // kubectl get: NAME, WEBHOOKS, AGE.
    let req =
        http::Request::get("/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations")
            .header("accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
            .body(Vec::new())
            .unwrap();
    let table: Value = srv.client.request(req).await.unwrap();
    let cols: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(cols, ["Name", "Webhooks", "Age"]);
    assert_eq!(table["rows"][0]["cells"][1], 1);
}

#[tokio::test]
async fn subresources_are_sent_with_their_own_kind() {
    use k8s_openapi::api::core::v1::Pod;
    let srv = common::start().await;
    common::ensure_default_sa(&srv.client, "default").await;
    let h = serve_hooks(&[]).await;
    validating(
        &srv.client,
        "subs",
        vec![
            webhook(&h, "subs.example.com", "subs", json!({
                "rules": [{"operations": ["*"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods/eviction", "pods/status"]}],
            })),
            webhook(&h, "probe.example.com", "probe", json!({"objectSelector": {"matchLabels": {"probe": "yes"}}})),
        ],
    )
    .await;
    wait_active(&srv.client, "default", &h).await;
    let pods: Api<Pod> = Api::namespaced(srv.client.clone(), "default");
    let pod = serde_json::from_value(json!({
        "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    // The main resource does not match `pods/…` rules.
    assert_eq!(h.calls("subs"), 0);
    pods.patch_status(
        "p",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(json!({"status": {"message": "hi"}})),
    )
    .await
    .unwrap();
    assert_eq!(h.calls("subs"), 1);
    pods.evict("p", &Default::default()).await.unwrap();
    assert_eq!(h.calls("subs"), 2);
    let reviews = h.seen.reviews.lock().unwrap().clone();
    let status = reviews
        .iter()
        .find(|r| r["request"]["subResource"] == "status")
        .expect("status review");
    assert_eq!(status["request"]["operation"], "UPDATE");
    assert_eq!(status["request"]["kind"]["kind"], "Pod");
    assert_eq!(status["request"]["oldObject"]["metadata"]["name"], "p");
    let ev = reviews
        .iter()
        .find(|r| r["request"]["subResource"] == "eviction")
        .expect("eviction review");
    assert_eq!(ev["request"]["operation"], "CREATE");
    assert_eq!(
        ev["request"]["kind"],
        json!({"group": "policy", "version": "v1", "kind": "Eviction"})
    );
    assert_eq!(ev["request"]["resource"]["resource"], "pods");
    assert_eq!(ev["request"]["oldObject"], Value::Null);
    assert_eq!(ev["request"]["object"]["kind"], "Eviction");
}
