//! PriorityClass (system classes, validation, the Priority admission plugin), PodDisruptionBudget
//! validation and printer, and evictions that honour budgets (429 with upstream's message,
//! the budget decremented and the pod recorded in `disruptedPods`).

mod common;

use common::{ensure_default_sa, start, TestServer};
use http_body_util::BodyExt as _;
use serde_json::{json, Value};

async fn raw(t: &TestServer, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let ct = if method == "PATCH" {
        "application/merge-patch+json"
    } else {
        "application/json"
    };
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("Accept", "application/json")
        .header("Content-Type", ct)
        .body(kube::client::Body::from(
            body.map(|b| serde_json::to_vec(&b).unwrap())
                .unwrap_or_default(),
        ))
        .unwrap();
    let resp = t.client.send(req).await.expect("send");
    let code = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

const PCS: &str = "/apis/scheduling.k8s.io/v1/priorityclasses";

fn pc(name: &str, value: i64, extra: Value) -> Value {
    let mut v = json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
        "metadata": {"name": name}, "value": value});
    if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    v
}

fn pod(name: &str, labels: Value, spec_extra: Value) -> Value {
    let mut v = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
    if let (Some(o), Some(e)) = (v["spec"].as_object_mut(), spec_extra.as_object()) {
        o.extend(e.clone());
    }
    v
}

#[tokio::test]
async fn priority_classes_and_admission() {
    let t = start().await;
    // The system classes exist from the start.
    let (code, sys) = raw(&t, "GET", &format!("{PCS}/system-node-critical"), None).await;
    assert_eq!(code, 200, "{sys}");
    assert_eq!(sys["value"], 2000001000);
    let (_, sys) = raw(&t, "GET", &format!("{PCS}/system-cluster-critical"), None).await;
    assert_eq!(sys["value"], 2000000000);
    let (code, body) = raw(&t, "DELETE", &format!("{PCS}/system-node-critical"), None).await;
    assert_eq!(code, 403, "{body}");
    assert_eq!(
        body["message"],
        "priorityclasses.scheduling.k8s.io \"system-node-critical\" is forbidden: this is a system priority class and cannot be deleted"
    );

    // Validation.
    let (code, body) = raw(&t, "POST", PCS, Some(pc("huge", 1_000_000_001, json!({})))).await;
    assert_eq!(code, 422);
    assert_eq!(
        body["details"]["causes"][0]["message"],
        "Forbidden: maximum allowed value of a user defined priority is 1000000000"
    );
    let (code, body) = raw(&t, "POST", PCS, Some(pc("system-mine", 5, json!({})))).await;
    assert_eq!(code, 422);
    assert_eq!(
        body["details"]["causes"][0]["message"],
        "Forbidden: priority class names with 'system-' prefix are reserved for system use only. error: system-mine is not a known system priority class"
    );
    let (code, high) = raw(&t, "POST", PCS, Some(pc("high", 1000, json!({})))).await;
    assert_eq!(code, 201, "{high}");
    assert_eq!(high["preemptionPolicy"], "PreemptLowerPriority");
    let (code, body) = raw(
        &t,
        "PATCH",
        &format!("{PCS}/high"),
        Some(json!({"value": 7})),
    )
    .await;
    assert_eq!(code, 422);
    assert_eq!(
        body["details"]["causes"][0]["message"],
        "Forbidden: may not be changed in an update."
    );
    let never = pc("never", 500, json!({"preemptionPolicy": "Never"}));
    assert_eq!(raw(&t, "POST", PCS, Some(never)).await.0, 201);
    let dflt = pc("dflt", 10, json!({"globalDefault": true}));
    assert_eq!(raw(&t, "POST", PCS, Some(dflt)).await.0, 201);
    let (code, body) = raw(
        &t,
        "POST",
        PCS,
        Some(pc("dflt2", 11, json!({"globalDefault": true}))),
    )
    .await;
    assert_eq!(code, 403);
    assert_eq!(
        body["message"],
        "priorityclasses.scheduling.k8s.io \"dflt2\" is forbidden: PriorityClass dflt is marked as default. Only one default can exist"
    );

    // Table.
    let req = http::Request::builder()
        .uri(format!("{PCS}/high"))
        .header("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
        .body(kube::client::Body::from(Vec::new()))
        .unwrap();
    let resp = t.client.send(req).await.expect("table");
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    let table: Value = serde_json::from_slice(&bytes).expect("json");
    let cols: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .expect("columns")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(
        cols,
        [
            "Name",
            "Value",
            "Global-Default",
            "Preemption-Policy",
            "Age"
        ]
    );
    assert_eq!(table["rows"][0]["cells"][1], 1000);
    assert_eq!(table["rows"][0]["cells"][2], false);

    // Pods: the class resolves into priority and preemptionPolicy.
    ensure_default_sa(&t.client, "default").await;
    let pods = "/api/v1/namespaces/default/pods";
    let (code, p) = raw(
        &t,
        "POST",
        pods,
        Some(pod(
            "p-high",
            json!({}),
            json!({"priorityClassName": "high"}),
        )),
    )
    .await;
    assert_eq!(code, 201, "{p}");
    assert_eq!(p["spec"]["priority"], 1000);
    assert_eq!(p["spec"]["preemptionPolicy"], "PreemptLowerPriority");
    let (_, p) = raw(
        &t,
        "POST",
        pods,
        Some(pod(
            "p-never",
            json!({}),
            json!({"priorityClassName": "never"}),
        )),
    )
    .await;
    assert_eq!(p["spec"]["priority"], 500);
    assert_eq!(p["spec"]["preemptionPolicy"], "Never");
    let (_, p) = raw(
        &t,
        "POST",
        pods,
        Some(pod("p-default", json!({}), json!({}))),
    )
    .await;
    assert_eq!(p["spec"]["priorityClassName"], "dflt");
    assert_eq!(p["spec"]["priority"], 10);
    let (_, p) = raw(
        &t,
        "POST",
        pods,
        Some(pod(
            "p-sys",
            json!({}),
            json!({"priorityClassName": "system-cluster-critical"}),
        )),
    )
    .await;
    assert_eq!(p["spec"]["priority"], 2000000000);
    let (code, body) = raw(
        &t,
        "POST",
        pods,
        Some(pod("p-x", json!({}), json!({"priorityClassName": "x"}))),
    )
    .await;
    assert_eq!(code, 403);
    assert_eq!(
        body["message"],
        "pods \"p-x\" is forbidden: no PriorityClass with name x was found"
    );
    let (code, body) = raw(
        &t,
        "POST",
        pods,
        Some(pod(
            "p-own",
            json!({}),
            json!({"priorityClassName": "high", "priority": 5}),
        )),
    )
    .await;
    assert_eq!(code, 403);
    assert_eq!(
        body["message"],
        "pods \"p-own\" is forbidden: the integer value of priority (5) must not be provided in pod spec; priority admission controller computed 1000 from the given PriorityClass name"
    );
    // Updates keep the priority.
    let (code, p) = raw(
        &t,
        "PATCH",
        &format!("{pods}/p-high"),
        Some(json!({"metadata": {"labels": {"x": "y"}}})),
    )
    .await;
    assert_eq!(code, 200, "{p}");
    assert_eq!(p["spec"]["priority"], 1000);
}

const PDBS: &str = "/apis/policy/v1/namespaces/default/poddisruptionbudgets";

fn pdb(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"name": name}, "spec": spec})
}

/// A running, ready pod (the status a node would write).
async fn running_pod(t: &TestServer, name: &str, labels: Value) {
    let pods = "/api/v1/namespaces/default/pods";
    let (code, body) = raw(t, "POST", pods, Some(pod(name, labels, json!({})))).await;
    assert_eq!(code, 201, "{body}");
    let status = json!({"status": {"phase": "Running", "conditions": [
        {"type": "Ready", "status": "True"}]}});
    let (code, body) = raw(t, "PATCH", &format!("{pods}/{name}/status"), Some(status)).await;
    assert_eq!(code, 200, "{body}");
}

/// Writes the budget's status as the disruption controller would.
async fn set_pdb_status(t: &TestServer, name: &str, allowed: i64) {
    let (_, cur) = raw(t, "GET", &format!("{PDBS}/{name}"), None).await;
    let status = json!({"status": {"disruptionsAllowed": allowed, "currentHealthy": 2,
        "desiredHealthy": 2 - allowed, "expectedPods": 2,
        "observedGeneration": cur["metadata"]["generation"]}});
    let (code, body) = raw(t, "PATCH", &format!("{PDBS}/{name}/status"), Some(status)).await;
    assert_eq!(code, 200, "{body}");
}

fn eviction(name: &str) -> Value {
    json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name}})
}

#[tokio::test]
async fn pdb_validation_and_eviction() {
    let t = start().await;
    ensure_default_sa(&t.client, "default").await;
    // Validation.
    let (code, body) = raw(
        &t,
        "POST",
        PDBS,
        Some(pdb("both", json!({"minAvailable": 1, "maxUnavailable": 1}))),
    )
    .await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(
        body["details"]["causes"][0]["message"],
        "Invalid value: minAvailable and maxUnavailable cannot be both set"
    );
    let (code, body) = raw(
        &t,
        "POST",
        PDBS,
        Some(pdb("pct", json!({"maxUnavailable": "120%"}))),
    )
    .await;
    assert_eq!(code, 422);
    assert_eq!(
        body["details"]["causes"][0]["message"],
        "Invalid value: \"120%\": must not be greater than 100%"
    );
    let (code, body) = raw(
        &t,
        "POST",
        PDBS,
        Some(pdb("neg", json!({"minAvailable": -1}))),
    )
    .await;
    assert_eq!(code, 422);
    assert_eq!(
        body["details"]["causes"][0]["message"],
        "Invalid value: -1: must be greater than or equal to 0"
    );
    let (code, created) = raw(
        &t,
        "POST",
        PDBS,
        Some(pdb(
            "web",
            json!({"minAvailable": 1,
        "selector": {"matchLabels": {"app": "web"}}}),
        )),
    )
    .await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(created["status"]["disruptionsAllowed"], 0);

    let pods = "/api/v1/namespaces/default/pods";
    running_pod(&t, "web-1", json!({"app": "web"})).await;
    running_pod(&t, "web-2", json!({"app": "web"})).await;
    running_pod(&t, "free", json!({"app": "free"})).await;

    // The Eviction names the pod of the URL.
    let (code, body) = raw(
        &t,
        "POST",
        &format!("{pods}/web-1/eviction"),
        Some(eviction("web-2")),
    )
    .await;
    assert_eq!(code, 400);
    assert_eq!(
        body["message"],
        "name in URL does not match name in Eviction object"
    );
    // The controller has not observed the budget yet.
    let (code, body) = raw(
        &t,
        "POST",
        &format!("{pods}/web-1/eviction"),
        Some(eviction("web-1")),
    )
    .await;
    assert_eq!(code, 429, "{body}");
    assert_eq!(
        body["details"]["causes"][0]["message"],
        "The disruption budget web is still being processed by the server."
    );
    // No disruption allowed.
    set_pdb_status(&t, "web", 0).await;
    let (code, body) = raw(
        &t,
        "POST",
        &format!("{pods}/web-1/eviction"),
        Some(eviction("web-1")),
    )
    .await;
    assert_eq!(code, 429, "{body}");
    assert_eq!(body["reason"], "TooManyRequests");
    assert_eq!(
        body["message"],
        "Cannot evict pod as it would violate the pod's disruption budget."
    );
    assert_eq!(body["details"]["causes"][0]["reason"], "DisruptionBudget");
    assert_eq!(
        body["details"]["causes"][0]["message"],
        "The disruption budget web needs 2 healthy pods and has 2 currently"
    );
    assert_eq!(raw(&t, "GET", &format!("{pods}/web-1"), None).await.0, 200);

    // One allowed: the eviction takes it and records the pod.
    set_pdb_status(&t, "web", 1).await;
    let (code, body) = raw(
        &t,
        "POST",
        &format!("{pods}/web-1/eviction"),
        Some(eviction("web-1")),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(raw(&t, "GET", &format!("{pods}/web-1"), None).await.0, 404);
    let (_, cur) = raw(&t, "GET", &format!("{PDBS}/web"), None).await;
    assert_eq!(cur["status"]["disruptionsAllowed"], 0);
    assert!(cur["status"]["disruptedPods"]["web-1"].is_string(), "{cur}");
    let cond = &cur["status"]["conditions"][0];
    assert_eq!(
        (&cond["type"], &cond["status"], &cond["reason"]),
        (
            &json!("DisruptionAllowed"),
            &json!("False"),
            &json!("InsufficientPods")
        )
    );
    assert_eq!(cond["observedGeneration"], cur["metadata"]["generation"]);
    // The next one is refused again.
    let (code, _) = raw(
        &t,
        "POST",
        &format!("{pods}/web-2/eviction"),
        Some(eviction("web-2")),
    )
    .await;
    assert_eq!(code, 429);

    // A pod under no budget goes.
    let (code, _) = raw(
        &t,
        "POST",
        &format!("{pods}/free/eviction"),
        Some(eviction("free")),
    )
    .await;
    assert_eq!(code, 201);

    // A pod under two budgets: 500.
    let (code, _) = raw(
        &t,
        "POST",
        PDBS,
        Some(pdb(
            "web-too",
            json!({"maxUnavailable": "50%",
        "selector": {"matchLabels": {"app": "web"}}}),
        )),
    )
    .await;
    assert_eq!(code, 201);
    let (code, body) = raw(
        &t,
        "POST",
        &format!("{pods}/web-2/eviction"),
        Some(eviction("web-2")),
    )
    .await;
    assert_eq!(code, 500, "{body}");
    assert_eq!(
        body["message"],
        "Internal error occurred: This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."
    );

    // Table.
    let req = http::Request::builder()
        .uri(PDBS)
        .header("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
        .body(kube::client::Body::from(Vec::new()))
        .unwrap();
    let resp = t.client.send(req).await.expect("table");
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    let table: Value = serde_json::from_slice(&bytes).expect("json");
    let cols: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .expect("columns")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(
        cols,
        [
            "Name",
            "Min Available",
            "Max Unavailable",
            "Allowed Disruptions",
            "Age"
        ]
    );
    assert_eq!(table["rows"][0]["cells"][1], "1");
    assert_eq!(table["rows"][0]["cells"][2], "N/A");
}
