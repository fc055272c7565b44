//! ResourceQuota and LimitRanger admission through a real HTTPS server (no controllers run:
//! each test writes the quota's status the way the ResourceQuota controller would): a pod
//! that would exceed a quota is rejected with upstream's message and an admitted one is
//! charged at once, dry runs charge nothing, a quota on limits rejects pods that state none,
//! `count/*` limits ConfigMaps, a Service update adding node ports is charged, two concurrent creates against a quota of one pod let exactly
//! one through, and a LimitRange defaults container resources and rejects one above max.

mod common;

use http_body_util::BodyExt;
use serde_json::{json, Value};

use common::{ensure_default_sa, start};

/// Sends one request; returns (HTTP status, parsed body).
async fn send(client: &kube::Client, method: &str, path: &str, body: &Value) -> (u16, Value) {
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
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

async fn namespace(client: &kube::Client, ns: &str) {
    let (code, body) = send(
        client,
        "POST",
        "/api/v1/namespaces",
        &json!({"metadata": {"name": ns}}),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    ensure_default_sa(client, ns).await;
}

/// Creates a quota and writes its status as the controller would (`used` all zero).
async fn quota(client: &kube::Client, ns: &str, name: &str, hard: Value) {
    let path = format!("/api/v1/namespaces/{ns}/resourcequotas");
    let (code, mut body) = send(
        client,
        "POST",
        &path,
        &json!({"metadata": {"name": name}, "spec": {"hard": hard}}),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    let used: serde_json::Map<String, Value> = hard
        .as_object()
        .unwrap()
        .keys()
        .map(|k| (k.clone(), json!("0")))
        .collect();
    body["status"] = json!({"hard": hard, "used": used});
    let (code, body) = send(client, "PUT", &format!("{path}/{name}/status"), &body).await;
    assert_eq!(code, 200, "{body}");
}

async fn used(client: &kube::Client, ns: &str, name: &str) -> Value {
    let (code, body) = send(
        client,
        "GET",
        &format!("/api/v1/namespaces/{ns}/resourcequotas/{name}"),
        &Value::Null,
    )
    .await;
    assert_eq!(code, 200, "{body}");
    body["status"]["used"].clone()
}

fn pod(name: &str, resources: Value) -> Value {
    json!({"metadata": {"name": name}, "spec": {"containers": [
        {"name": "c", "image": "busybox", "resources": resources}]}})
}

#[tokio::test]
async fn pod_exceeding_a_quota_is_rejected_and_admitted_ones_are_charged() {
    let s = start().await;
    let c = &s.client;
    let ns = "quota-compute";
    namespace(c, ns).await;
    quota(c, ns, "compute", json!({"requests.cpu": "2", "pods": "10"})).await;
    let pods = format!("/api/v1/namespaces/{ns}/pods");

    let (code, body) = send(
        c,
        "POST",
        &pods,
        &pod("p1", json!({"requests": {"cpu": "1500m"}})),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(
        used(c, ns, "compute").await,
        json!({"pods": "1", "requests.cpu": "1500m"})
    );

    let (code, body) = send(
        c,
        "POST",
        &pods,
        &pod("p2", json!({"requests": {"cpu": "1"}})),
    )
    .await;
    assert_eq!(code, 403, "{body}");
    assert_eq!(body["reason"], "Forbidden");
    assert_eq!(
        body["message"],
        "pods \"p2\" is forbidden: exceeded quota: compute, requested: requests.cpu=1, used: requests.cpu=1500m, limited: requests.cpu=2"
    );

    // A dry run is checked but charges nothing.
    let (code, body) = send(
        c,
        "POST",
        &format!("{pods}?dryRun=All"),
        &pod("p3", json!({"requests": {"cpu": "500m"}})),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(
        used(c, ns, "compute").await,
        json!({"pods": "1", "requests.cpu": "1500m"})
    );

    // The last half CPU fits.
    let (code, body) = send(
        c,
        "POST",
        &pods,
        &pod("p3", json!({"requests": {"cpu": "500m"}})),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(
        used(c, ns, "compute").await,
        json!({"pods": "2", "requests.cpu": "2"})
    );

    // A quota on limits.cpu and requests.cpu needs every container to state both.
    let ns = "quota-constraints";
    namespace(c, ns).await;
    quota(
        c,
        ns,
        "q",
        json!({"limits.cpu": "10", "requests.cpu": "10"}),
    )
    .await;
    let pods = format!("/api/v1/namespaces/{ns}/pods");
    let (code, body) = send(c, "POST", &pods, &pod("bare", json!({}))).await;
    assert_eq!(code, 403, "{body}");
    assert_eq!(
        body["message"],
        "pods \"bare\" is forbidden: failed quota: q: must specify limits.cpu for: c; requests.cpu for: c"
    );
}

#[tokio::test]
async fn count_quota_limits_configmaps() {
    let s = start().await;
    let c = &s.client;
    let ns = "quota-count";
    namespace(c, ns).await;
    quota(c, ns, "objects", json!({"count/configmaps": "1"})).await;
    let cms = format!("/api/v1/namespaces/{ns}/configmaps");
    let (code, body) = send(c, "POST", &cms, &json!({"metadata": {"name": "one"}})).await;
    assert_eq!(code, 201, "{body}");
    let (code, body) = send(c, "POST", &cms, &json!({"metadata": {"name": "two"}})).await;
    assert_eq!(code, 403, "{body}");
    assert_eq!(
        body["message"],
        "configmaps \"two\" is forbidden: exceeded quota: objects, requested: count/configmaps=1, used: count/configmaps=1, limited: count/configmaps=1"
    );
    // Other kinds are not counted by it.
    let (code, body) = send(
        c,
        "POST",
        &format!("/api/v1/namespaces/{ns}/secrets"),
        &json!({"metadata": {"name": "s"}}),
    )
    .await;
    assert_eq!(code, 201, "{body}");

    // Services: an update that adds node ports is charged by its growth.
    quota(c, ns, "ports", json!({"services.nodeports": "1"})).await;
    let svcs = format!("/api/v1/namespaces/{ns}/services");
    let (code, mut svc) = send(
        c,
        "POST",
        &svcs,
        &json!({"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"},
            "ports": [{"name": "a", "port": 80}, {"name": "b", "port": 81}]}}),
    )
    .await;
    assert_eq!(code, 201, "{svc}");
    svc["spec"]["type"] = json!("NodePort");
    let (code, body) = send(c, "PUT", &format!("{svcs}/web"), &svc).await;
    assert_eq!(code, 403, "{body}");
    assert_eq!(
        body["message"],
        "services \"web\" is forbidden: exceeded quota: ports, requested: services.nodeports=2, used: services.nodeports=0, limited: services.nodeports=1"
    );
}

#[tokio::test]
async fn concurrent_creates_against_a_quota_of_one_admit_exactly_one() {
    let s = start().await;
    let c = &s.client;
    let ns = "quota-race";
    namespace(c, ns).await;
    quota(c, ns, "one", json!({"pods": "1"})).await;
    let pods = format!("/api/v1/namespaces/{ns}/pods");
    let mut tasks = Vec::new();
    for i in 0..4 {
        let c = c.clone();
        let pods = pods.clone();
        tasks.push(tokio::spawn(async move {
            send(&c, "POST", &pods, &pod(&format!("racer-{i}"), json!({}))).await
        }));
    }
    let mut created = 0;
    for t in tasks {
        let (code, body) = t.await.unwrap();
        match code {
            201 => created += 1,
            403 => assert!(
                body["message"].as_str().unwrap().contains(
                    "exceeded quota: one, requested: pods=1, used: pods=1, limited: pods=1"
                ),
                "{body}"
            ),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(created, 1);
    assert_eq!(used(c, ns, "one").await, json!({"pods": "1"}));
}

#[tokio::test]
async fn limit_range_defaults_requests_and_rejects_above_max() {
    let s = start().await;
    let c = &s.client;
    let ns = "quota-limits";
    namespace(c, ns).await;
    let (code, body) = send(
        c,
        "POST",
        &format!("/api/v1/namespaces/{ns}/limitranges"),
        &json!({"metadata": {"name": "limits"}, "spec": {"limits": [{"type": "Container",
            "default": {"cpu": "500m", "memory": "128Mi"}, "max": {"cpu": "1"}}]}}),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    // Defaulting filled defaultRequest from default.
    assert_eq!(
        body["spec"]["limits"][0]["defaultRequest"],
        json!({"cpu": "500m", "memory": "128Mi"})
    );
    let pods = format!("/api/v1/namespaces/{ns}/pods");
    let (code, body) = send(c, "POST", &pods, &pod("plain", json!({}))).await;
    assert_eq!(code, 201, "{body}");
    let res = &body["spec"]["containers"][0]["resources"];
    assert_eq!(res["requests"], json!({"cpu": "500m", "memory": "128Mi"}));
    assert_eq!(res["limits"], json!({"cpu": "500m", "memory": "128Mi"}));
    assert_eq!(
        body["metadata"]["annotations"]["kubernetes.io/limit-ranger"],
        "LimitRanger plugin set: cpu, memory request for container c; cpu, memory limit for container c"
    );
    let (code, body) = send(
        c,
        "POST",
        &pods,
        &pod(
            "big",
            json!({"limits": {"cpu": "2"}, "requests": {"cpu": "250m"}}),
        ),
    )
    .await;
    assert_eq!(code, 403, "{body}");
    assert_eq!(
        body["message"],
        "pods \"big\" is forbidden: maximum cpu usage per Container is 1, but limit is 2"
    );
    // Table: Name and Created At.
    let req = http::Request::builder()
        .uri(format!("/api/v1/namespaces/{ns}/limitranges"))
        .header("accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
        .body(Vec::new())
        .unwrap();
    let table: Value = c.request(req).await.unwrap();
    let cols: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(cols, ["Name", "Created At"]);
}

#[tokio::test]
async fn scoped_quota_counts_only_its_pods_and_claims_are_held_to_limits() {
    let s = start().await;
    let c = &s.client;
    let ns = "quota-scopes";
    namespace(c, ns).await;
    let path = format!("/api/v1/namespaces/{ns}/resourcequotas");
    let (code, mut body) = send(
        c,
        "POST",
        &path,
        &json!({"metadata": {"name": "besteffort"},
            "spec": {"hard": {"pods": "1"}, "scopes": ["BestEffort"]}}),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    body["status"] = json!({"hard": {"pods": "1"}, "used": {"pods": "0"}});
    let (code, body) = send(c, "PUT", &format!("{path}/besteffort/status"), &body).await;
    assert_eq!(code, 200, "{body}");
    let pods = format!("/api/v1/namespaces/{ns}/pods");
    for name in ["burst-1", "burst-2"] {
        let (code, body) = send(
            c,
            "POST",
            &pods,
            &pod(name, json!({"requests": {"cpu": "10m"}})),
        )
        .await;
        assert_eq!(code, 201, "{body}");
    }
    let (code, body) = send(c, "POST", &pods, &pod("be-1", json!({}))).await;
    assert_eq!(code, 201, "{body}");
    let (code, body) = send(c, "POST", &pods, &pod("be-2", json!({}))).await;
    assert_eq!(code, 403, "{body}");
    assert_eq!(
        body["message"],
        "pods \"be-2\" is forbidden: exceeded quota: besteffort, requested: pods=1, used: pods=1, limited: pods=1"
    );

    // A scope on a resource it cannot restrict is refused by validation.
    let (code, body) = send(
        c,
        "POST",
        &path,
        &json!({"metadata": {"name": "bad"},
            "spec": {"hard": {"configmaps": "1"}, "scopes": ["BestEffort"]}}),
    )
    .await;
    assert_eq!(code, 422, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("unsupported scope applied to resource"),
        "{body}"
    );

    // PersistentVolumeClaims: a LimitRange's storage minimum and a storage quota.
    let (code, body) = send(
        c,
        "POST",
        &format!("/api/v1/namespaces/{ns}/limitranges"),
        &json!({"metadata": {"name": "storage"}, "spec": {"limits": [
            {"type": "PersistentVolumeClaim", "min": {"storage": "1Gi"}}]}}),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    quota(c, ns, "storage", json!({"requests.storage": "3Gi"})).await;
    let claim = |name: &str, size: &str| {
        json!({"metadata": {"name": name}, "spec": {"accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": size}}}})
    };
    let pvcs = format!("/api/v1/namespaces/{ns}/persistentvolumeclaims");
    let (code, body) = send(c, "POST", &pvcs, &claim("small", "500Mi")).await;
    assert_eq!(code, 403, "{body}");
    assert_eq!(
        body["message"],
        "persistentvolumeclaims \"small\" is forbidden: minimum storage usage per PersistentVolumeClaim is 1Gi, but request is 500Mi"
    );
    let (code, body) = send(c, "POST", &pvcs, &claim("two", "2Gi")).await;
    assert_eq!(code, 201, "{body}");
    let (code, body) = send(c, "POST", &pvcs, &claim("more", "2Gi")).await;
    assert_eq!(code, 403, "{body}");
    assert_eq!(
        body["message"],
        "persistentvolumeclaims \"more\" is forbidden: exceeded quota: storage, requested: requests.storage=2Gi, used: requests.storage=2Gi, limited: requests.storage=3Gi"
    );
}
