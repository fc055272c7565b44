//! The `pods/ephemeralcontainers` subresource (what `kubectl debug` patches): GET, strategic
//! and merge PATCH and PUT change only spec.ephemeralContainers, which may only grow, with
//! upstream's validation; the main resource cannot change them. Real HTTPS server.

mod common;

use http_body_util::BodyExt;
use serde_json::{json, Value};

use common::{ensure_default_sa, start};

async fn send(
    client: &kube::Client,
    method: &str,
    path: &str,
    ct: &str,
    body: &Value,
) -> (u16, Value) {
    let bytes = if body.is_null() {
        Vec::new()
    } else {
        serde_json::to_vec(body).expect("json")
    };
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", ct)
        .body(kube::client::Body::from(bytes))
        .expect("request");
    let resp = client.send(req).await.expect("send");
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

const SMP: &str = "application/strategic-merge-patch+json";
const JSON: &str = "application/json";
const POD: &str = "/api/v1/namespaces/default/pods/dbg";
const SUB: &str = "/api/v1/namespaces/default/pods/dbg/ephemeralcontainers";

/// Sorted: where a strategic merge patch without `$setElementOrder` puts new entries is the
/// patch engine's business, not this subresource's.
fn names(pod: &Value) -> Vec<String> {
    let mut v: Vec<String> = pod
        .pointer("/spec/ephemeralContainers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str().map(str::to_string))
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn ephemeral_containers_subresource() {
    let s = start().await;
    let c = &s.client;
    ensure_default_sa(c, "default").await;
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "dbg"},
        "spec": {"containers": [{"name": "app", "image": "web:v1"}]}});
    let (code, body) = send(c, "POST", "/api/v1/namespaces/default/pods", JSON, &pod).await;
    assert_eq!(code, 201, "{body}");

    // Discovery lists it like upstream: kind Pod, get/patch/update.
    let (_, disc) = send(c, "GET", "/api/v1", JSON, &Value::Null).await;
    let entry = disc["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .find(|r| r["name"] == "pods/ephemeralcontainers")
        .cloned()
        .expect("pods/ephemeralcontainers in discovery");
    assert_eq!(entry["kind"], "Pod");
    assert_eq!(entry["verbs"], json!(["get", "patch", "update"]));

    let (code, got) = send(c, "GET", SUB, JSON, &Value::Null).await;
    assert_eq!((code, got["kind"].as_str()), (200, Some("Pod")));

    // kubectl debug's strategic merge patch: added by name, defaulted.
    let add = |name: &str, extra: Value| {
        let mut ec = json!({"name": name, "image": "busybox:1", "command": ["sh"],
                            "stdin": true, "tty": true, "targetContainerName": "app"});
        if let (Some(o), Some(e)) = (ec.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        json!({"spec": {"ephemeralContainers": [ec]}})
    };
    let (code, p) = send(c, "PATCH", SUB, SMP, &add("d1", json!({}))).await;
    assert_eq!(code, 200, "{p}");
    assert_eq!(names(&p), ["d1"]);
    let d1 = &p["spec"]["ephemeralContainers"][0];
    assert_eq!(d1["name"], "d1");
    assert_eq!(d1["terminationMessagePolicy"], "File", "{d1}");
    assert_eq!(d1["imagePullPolicy"], "IfNotPresent", "{d1}");
    let (code, p) = send(c, "PATCH", SUB, SMP, &add("d2", json!({}))).await;
    assert_eq!(code, 200, "{p}");
    assert_eq!(names(&p), ["d1", "d2"]);

    // Validation as upstream.
    let (code, e) = send(c, "PATCH", SUB, SMP, &add("app", json!({}))).await;
    assert_eq!(code, 422, "{e}");
    assert!(
        e["message"]
            .as_str()
            .unwrap_or("")
            .contains("Duplicate value"),
        "{e}"
    );
    let (code, e) = send(
        c,
        "PATCH",
        SUB,
        SMP,
        &add("d3", json!({"ports": [{"containerPort": 80}]})),
    )
    .await;
    assert_eq!(code, 422, "{e}");
    assert!(
        e["message"]
            .as_str()
            .unwrap_or("")
            .contains("].ports: Forbidden: cannot be set for an Ephemeral Container"),
        "{e}"
    );
    let (code, e) = send(
        c,
        "PATCH",
        SUB,
        SMP,
        &add("d4", json!({"targetContainerName": "nope"})),
    )
    .await;
    assert_eq!(code, 422, "{e}");
    // Existing ones can be neither removed nor changed.
    let mut cur = p.clone();
    cur["spec"]["ephemeralContainers"] = json!([p["spec"]["ephemeralContainers"][0].clone()]);
    let (code, e) = send(c, "PUT", SUB, JSON, &cur).await;
    assert_eq!(code, 422, "{e}");
    assert!(
        e["message"]
            .as_str()
            .unwrap_or("")
            .contains("may not be removed or changed"),
        "{e}"
    );

    // Only ephemeralContainers change through the subresource: other spec edits are dropped.
    let mut put = p.clone();
    put["spec"]["containers"][0]["image"] = json!("web:v2");
    put["spec"]["ephemeralContainers"]
        .as_array_mut()
        .expect("list")
        .push(json!({"name": "d5", "image": "busybox:1"}));
    let (code, after) = send(c, "PUT", SUB, JSON, &put).await;
    assert_eq!(code, 200, "{after}");
    assert_eq!(names(&after), ["d1", "d2", "d5"]);
    assert_eq!(after["spec"]["containers"][0]["image"], "web:v1");
    // A stale resourceVersion conflicts.
    let (code, _) = send(c, "PUT", SUB, JSON, &put).await;
    assert_eq!(code, 409);
    // dryRun validates and answers without storing.
    let (code, dry) = send(
        c,
        "PATCH",
        &format!("{SUB}?dryRun=All"),
        SMP,
        &add("d6", json!({})),
    )
    .await;
    assert_eq!(code, 200, "{dry}");
    assert_eq!(names(&dry).len(), 4);
    let (_, stored) = send(c, "GET", POD, JSON, &Value::Null).await;
    assert_eq!(names(&stored), ["d1", "d2", "d5"]);

    // The main resource cannot change them (upstream's pod update rule).
    let (code, e) = send(c, "PATCH", POD, SMP, &add("d7", json!({}))).await;
    assert_eq!(code, 422, "{e}");
}
