//! Custom resources end to end over HTTPS: CRD status (names, Established), CRUD/list/watch of
//! namespaced and cluster-scoped custom kinds, status and scale subresources, Tables with
//! printer columns, pruning and fieldValidation, versions, discovery, deletion cleanup.

mod common;

use std::time::{Duration, Instant};

use common::TestServer;
use futures::{StreamExt, TryStreamExt};
use kube::api::{Api, ApiResource, DynamicObject, WatchEvent, WatchParams};
use serde_json::{json, Value};

async fn raw(
    t: &TestServer,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    accept: Option<&str>,
    body: Value,
) -> (u16, Value) {
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("Accept", accept.unwrap_or("application/json"));
    if let Some(ct) = content_type {
        req = req.header("Content-Type", ct);
    }
    let bytes = if body.is_null() {
        Vec::new()
    } else {
        serde_json::to_vec(&body).unwrap()
    };
    let req = req.body(kube::client::Body::from(bytes)).unwrap();
    let resp = t.client.send(req).await.expect("send");
    let code = resp.status().as_u16();
    let bytes = resp.into_body().collect_bytes().await.expect("body");
    let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (code, v)
}

async fn get(t: &TestServer, path: &str) -> (u16, Value) {
    raw(t, "GET", path, None, None, Value::Null).await
}

async fn post(t: &TestServer, path: &str, body: Value) -> (u16, Value) {
    raw(t, "POST", path, Some("application/json"), None, body).await
}

async fn put(t: &TestServer, path: &str, body: Value) -> (u16, Value) {
    raw(t, "PUT", path, Some("application/json"), None, body).await
}

async fn patch(t: &TestServer, path: &str, ct: &str, body: Value) -> (u16, Value) {
    raw(t, "PATCH", path, Some(ct), None, body).await
}

async fn delete(t: &TestServer, path: &str) -> (u16, Value) {
    raw(t, "DELETE", path, None, None, Value::Null).await
}

const CRDS: &str = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";

/// Widgets: namespaced, v1 (storage) and v1beta1, status + scale, printer columns, a
/// selectable field, short name and a category.
fn widget_crd(group: &str) -> Value {
    let schema = json!({"type": "object", "properties": {
        "spec": {"type": "object", "properties": {
            "replicas": {"type": "integer"},
            "color": {"type": "string", "default": "blue"}}},
        "status": {"type": "object", "properties": {
            "replicas": {"type": "integer"},
            "selector": {"type": "string"}}}}});
    let version = |name: &str, storage: bool| {
        json!({"name": name, "served": true, "storage": storage,
            "schema": {"openAPIV3Schema": schema},
            "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas",
                "statusReplicasPath": ".status.replicas", "labelSelectorPath": ".status.selector"}},
            "selectableFields": [{"jsonPath": ".spec.color"}],
            "additionalPrinterColumns": [
                {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
                {"name": "Color", "type": "string", "jsonPath": ".spec.color"}]})
    };
    json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("widgets.{group}")},
        "spec": {"group": group, "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget",
                "shortNames": ["wdg"], "categories": ["all"]},
            "versions": [version("v1", true), version("v1beta1", false)]}})
}

fn gizmo_crd(group: &str) -> Value {
    json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("gizmos.{group}")},
        "spec": {"group": group, "scope": "Cluster",
            "names": {"plural": "gizmos", "kind": "Gizmo"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object",
                    "x-kubernetes-preserve-unknown-fields": true}}}]}})
}

/// Creates a CRD and waits until `probe` answers 200; returns the time that took.
async fn create_crd(t: &TestServer, crd: Value, probe: &str) -> Duration {
    let started = Instant::now();
    let (code, body) = post(t, CRDS, crd).await;
    assert_eq!(code, 201, "{body}");
    loop {
        let (code, _) = get(t, probe).await;
        if code == 200 {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{probe} never served"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn wait_gone(t: &TestServer, path: &str) {
    let started = Instant::now();
    loop {
        let (code, body) = get(t, path).await;
        if code == 404 {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{path} still there: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn crd_is_established_and_served_within_a_second() {
    let t = common::start().await;
    let elapsed = create_crd(
        &t,
        widget_crd("est.example.com"),
        "/apis/est.example.com/v1/namespaces/default/widgets",
    )
    .await;
    println!("CRD created → custom kind served in {elapsed:?}");
    assert!(elapsed < Duration::from_secs(1), "{elapsed:?}");
    let (code, crd) = get(&t, &format!("{CRDS}/widgets.est.example.com")).await;
    assert_eq!(code, 200);
    let conditions = crd["status"]["conditions"].as_array().unwrap();
    let cond = |ty: &str| {
        conditions
            .iter()
            .find(|c| c["type"] == ty)
            .unwrap_or_else(|| panic!("{ty} in {crd}"))
    };
    assert_eq!(cond("NamesAccepted")["status"], "True");
    assert_eq!(cond("NamesAccepted")["reason"], "NoConflicts");
    assert_eq!(cond("Established")["status"], "True");
    assert_eq!(crd["status"]["acceptedNames"]["kind"], "Widget");
    assert_eq!(crd["status"]["acceptedNames"]["shortNames"], json!(["wdg"]));
    assert_eq!(crd["status"]["storedVersions"], json!(["v1"]));
}

#[tokio::test]
async fn namespaced_crud_watch_and_field_selectors() {
    let t = common::start().await;
    let g = "crud.example.com";
    create_crd(&t, widget_crd(g), &format!("/apis/{g}/v1/widgets")).await;
    let ar = ApiResource {
        group: g.into(),
        version: "v1".into(),
        api_version: format!("{g}/v1"),
        kind: "Widget".into(),
        plural: "widgets".into(),
    };
    let api: Api<DynamicObject> = Api::namespaced_with(t.client.clone(), "default", &ar);
    let mut events = api
        .watch(&WatchParams::default().timeout(20), "0")
        .await
        .unwrap()
        .boxed();

    let base = format!("/apis/{g}/v1/namespaces/default/widgets");
    let (code, created) = post(
        &t,
        &base,
        json!({"apiVersion": format!("{g}/v1"), "kind": "Widget",
            "metadata": {"name": "w1"}, "spec": {"replicas": 2, "color": "red"},
            "status": {"replicas": 9}}),
    )
    .await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(created["metadata"]["generation"], 1);
    // Status is a subresource: a create drops it.
    assert!(created.get("status").is_none(), "{created}");
    post(
        &t,
        &base,
        json!({"metadata": {"name": "w2"}, "spec": {"replicas": 1, "color": "green"}}),
    )
    .await;

    let (code, got) = get(&t, &format!("{base}/w1")).await;
    assert_eq!(code, 200);
    assert_eq!(got["spec"]["color"], "red");
    let (_, list) = get(&t, &base).await;
    assert_eq!(list["kind"], "WidgetList");
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    let (_, all_ns) = get(&t, &format!("/apis/{g}/v1/widgets")).await;
    assert_eq!(all_ns["items"].as_array().unwrap().len(), 2);

    // Field selectors: metadata.name and the CRD's selectableFields; others are a 400.
    let (_, sel) = get(&t, &format!("{base}?fieldSelector=spec.color%3Dgreen")).await;
    let names: Vec<&str> = sel["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["w2"]);
    let (_, sel) = get(&t, &format!("{base}?fieldSelector=metadata.name%3Dw1")).await;
    assert_eq!(sel["items"].as_array().unwrap().len(), 1);
    let (code, err) = get(&t, &format!("{base}?fieldSelector=spec.replicas%3D1")).await;
    assert_eq!(code, 400);
    assert_eq!(err["message"], "field label not supported: spec.replicas");

    // Update (spec change bumps generation), strategic merge patch is a 415, merge patch works.
    let mut upd = got.clone();
    upd["spec"]["replicas"] = json!(3);
    let (code, updated) = put(&t, &format!("{base}/w1"), upd).await;
    assert_eq!(code, 200, "{updated}");
    assert_eq!(updated["metadata"]["generation"], 2);
    let (code, err) = patch(
        &t,
        &format!("{base}/w1"),
        "application/strategic-merge-patch+json",
        json!({"spec": {"replicas": 4}}),
    )
    .await;
    assert_eq!(code, 415, "{err}");
    let (code, patched) = patch(
        &t,
        &format!("{base}/w1"),
        "application/merge-patch+json",
        json!({"spec": {"replicas": 4}}),
    )
    .await;
    assert_eq!(code, 200, "{patched}");
    assert_eq!(patched["spec"]["replicas"], 4);

    // Server-side apply creates and updates.
    let (code, applied) = raw(
        &t,
        "PATCH",
        &format!("{base}/w3?fieldManager=test"),
        Some("application/apply-patch+yaml"),
        None,
        json!({"apiVersion": format!("{g}/v1"), "kind": "Widget", "metadata": {"name": "w3"},
            "spec": {"replicas": 5}}),
    )
    .await;
    assert_eq!(code, 201, "{applied}");
    let (code, applied) = raw(
        &t,
        "PATCH",
        &format!("{base}/w3?fieldManager=test"),
        Some("application/apply-patch+yaml"),
        None,
        json!({"apiVersion": format!("{g}/v1"), "kind": "Widget", "metadata": {"name": "w3"},
            "spec": {"replicas": 6}}),
    )
    .await;
    assert_eq!(code, 200, "{applied}");
    assert_eq!(applied["spec"]["replicas"], 6);

    let (code, _) = delete(&t, &format!("{base}/w1")).await;
    assert_eq!(code, 200);
    let (code, _) = get(&t, &format!("{base}/w1")).await;
    assert_eq!(code, 404);

    // The watch saw it all, in order, for w1.
    let mut seen = Vec::new();
    while seen.len() < 4 {
        let ev = tokio::time::timeout(Duration::from_secs(10), events.try_next())
            .await
            .expect("watch event in time")
            .unwrap()
            .expect("stream open");
        match ev {
            WatchEvent::Added(o) | WatchEvent::Modified(o) | WatchEvent::Deleted(o)
                if o.metadata.name.as_deref() != Some("w1") => {}
            WatchEvent::Added(_) => seen.push("ADDED"),
            WatchEvent::Modified(_) => seen.push("MODIFIED"),
            WatchEvent::Deleted(_) => seen.push("DELETED"),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(seen, ["ADDED", "MODIFIED", "MODIFIED", "DELETED"]);
}

#[tokio::test]
async fn cluster_scoped_kind() {
    let t = common::start().await;
    let g = "cluster.example.com";
    create_crd(&t, gizmo_crd(g), &format!("/apis/{g}/v1/gizmos")).await;
    let (code, created) = post(
        &t,
        &format!("/apis/{g}/v1/gizmos"),
        json!({"metadata": {"name": "gz", "namespace": "ignored"}, "spec": {"anything": [1, 2]}}),
    )
    .await;
    assert_eq!(code, 201, "{created}");
    assert!(created["metadata"].get("namespace").is_none());
    assert_eq!(created["spec"]["anything"], json!([1, 2]));
    let (code, _) = get(&t, &format!("/apis/{g}/v1/gizmos/gz")).await;
    assert_eq!(code, 200);
    let (code, _) = get(&t, &format!("/apis/{g}/v1/namespaces/default/gizmos/gz")).await;
    assert_eq!(code, 404);
    let (code, _) = delete(&t, &format!("/apis/{g}/v1/gizmos/gz")).await;
    assert_eq!(code, 200);
}

#[tokio::test]
async fn status_and_scale_subresources() {
    let t = common::start().await;
    let g = "sub.example.com";
    create_crd(&t, widget_crd(g), &format!("/apis/{g}/v1/widgets")).await;
    let base = format!("/apis/{g}/v1/namespaces/default/widgets");
    let (_, w) = post(
        &t,
        &base,
        json!({"metadata": {"name": "w"}, "spec": {"replicas": 1}}),
    )
    .await;

    // A status write changes only status, and does not bump generation.
    let mut s = w.clone();
    s["status"] = json!({"replicas": 1, "selector": "app=w"});
    s["spec"]["replicas"] = json!(7);
    let (code, after) = put(&t, &format!("{base}/w/status"), s).await;
    assert_eq!(code, 200, "{after}");
    assert_eq!(after["status"]["replicas"], 1);
    assert_eq!(after["spec"]["replicas"], 1);
    assert_eq!(after["metadata"]["generation"], 1);

    // A main write ignores status.
    let mut m = after.clone();
    m["status"]["replicas"] = json!(42);
    m["metadata"]["labels"] = json!({"x": "y"});
    let (_, after) = put(&t, &format!("{base}/w"), m).await;
    assert_eq!(after["status"]["replicas"], 1);
    assert_eq!(after["metadata"]["generation"], 1, "metadata-only change");

    // Scale reads and writes the CRD's paths.
    let (code, scale) = get(&t, &format!("{base}/w/scale")).await;
    assert_eq!(code, 200, "{scale}");
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["apiVersion"], "autoscaling/v1");
    assert_eq!(scale["spec"]["replicas"], 1);
    assert_eq!(scale["status"]["replicas"], 1);
    assert_eq!(scale["status"]["selector"], "app=w");
    let (code, scale) = patch(
        &t,
        &format!("{base}/w/scale"),
        "application/merge-patch+json",
        json!({"spec": {"replicas": 3}}),
    )
    .await;
    assert_eq!(code, 200, "{scale}");
    assert_eq!(scale["spec"]["replicas"], 3);
    let (_, w) = get(&t, &format!("{base}/w")).await;
    assert_eq!(w["spec"]["replicas"], 3);
    assert_eq!(w["metadata"]["generation"], 2);
}

#[tokio::test]
async fn table_has_printer_columns() {
    let t = common::start().await;
    let g = "table.example.com";
    create_crd(&t, widget_crd(g), &format!("/apis/{g}/v1/widgets")).await;
    let base = format!("/apis/{g}/v1/namespaces/default/widgets");
    post(
        &t,
        &base,
        json!({"metadata": {"name": "w"}, "spec": {"replicas": 2, "color": "red"}}),
    )
    .await;
    let accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";
    let (code, table) = raw(&t, "GET", &base, None, Some(accept), Value::Null).await;
    assert_eq!(code, 200, "{table}");
    assert_eq!(table["kind"], "Table");
    let columns: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(columns, ["Name", "Replicas", "Color"]);
    assert_eq!(table["rows"][0]["cells"], json!(["w", 2, "red"]));
    let (_, one) = raw(
        &t,
        "GET",
        &format!("{base}/w"),
        None,
        Some(accept),
        Value::Null,
    )
    .await;
    assert_eq!(one["rows"][0]["cells"][0], "w");
}

#[tokio::test]
async fn unknown_fields_are_pruned_or_rejected_and_defaults_apply() {
    let t = common::start().await;
    let g = "prune.example.com";
    create_crd(&t, widget_crd(g), &format!("/apis/{g}/v1/widgets")).await;
    let base = format!("/apis/{g}/v1/namespaces/default/widgets");
    let (code, created) = post(
        &t,
        &base,
        json!({"metadata": {"name": "w"}, "spec": {"replicas": 1, "bogus": true}}),
    )
    .await;
    assert_eq!(code, 201, "{created}");
    assert!(created["spec"].get("bogus").is_none(), "{created}");
    assert_eq!(created["spec"]["color"], "blue", "schema default");
    let (code, err) = post(
        &t,
        &format!("{base}?fieldValidation=Strict"),
        json!({"metadata": {"name": "w2"}, "spec": {"bogus": true}}),
    )
    .await;
    assert_eq!(code, 400, "{err}");
    assert_eq!(
        err["message"],
        "strict decoding error: unknown field \"spec.bogus\""
    );
    let (code, err) = post(
        &t,
        &base,
        json!({"metadata": {"name": "w3"}, "spec": {"replicas": "many"}}),
    )
    .await;
    assert_eq!(code, 422, "{err}");
    // Unknown ObjectMeta fields too.
    let (code, err) = post(
        &t,
        &format!("{base}?fieldValidation=Strict"),
        json!({"metadata": {"name": "w4", "bogus": 1}}),
    )
    .await;
    assert_eq!(code, 400, "{err}");
    assert_eq!(
        err["message"],
        "strict decoding error: unknown field \"metadata.bogus\""
    );
    let (code, created) = post(&t, &base, json!({"metadata": {"name": "w4", "bogus": 1}})).await;
    assert_eq!(code, 201, "{created}");
    assert!(created["metadata"].get("bogus").is_none(), "{created}");
}

#[tokio::test]
async fn versions_convert_with_the_none_strategy() {
    let t = common::start().await;
    let g = "ver.example.com";
    create_crd(&t, widget_crd(g), &format!("/apis/{g}/v1beta1/widgets")).await;
    let (code, created) = post(
        &t,
        &format!("/apis/{g}/v1beta1/namespaces/default/widgets"),
        json!({"apiVersion": format!("{g}/v1beta1"), "kind": "Widget",
            "metadata": {"name": "w"}, "spec": {"replicas": 1}}),
    )
    .await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(created["apiVersion"], format!("{g}/v1beta1"));
    let (_, v1) = get(&t, &format!("/apis/{g}/v1/namespaces/default/widgets/w")).await;
    assert_eq!(v1["apiVersion"], format!("{g}/v1"));
    assert_eq!(v1["metadata"]["uid"], created["metadata"]["uid"]);
    let (_, list) = get(&t, &format!("/apis/{g}/v1beta1/widgets")).await;
    assert_eq!(list["apiVersion"], format!("{g}/v1beta1"));
    assert_eq!(list["items"][0]["apiVersion"], format!("{g}/v1beta1"));
    // A body naming another version than the URL is a 400.
    let (code, _) = post(
        &t,
        &format!("/apis/{g}/v1/namespaces/default/widgets"),
        json!({"apiVersion": format!("{g}/v1beta1"), "kind": "Widget", "metadata": {"name": "x"}}),
    )
    .await;
    assert_eq!(code, 400);
}

fn aggregated_has(list: &Value, group: &str, plural: &str) -> bool {
    list["items"].as_array().unwrap().iter().any(|g| {
        g["metadata"]["name"] == group
            && g["versions"].as_array().unwrap().iter().any(|v| {
                v["resources"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|r| r["resource"] == plural)
            })
    })
}

#[tokio::test]
async fn discovery_lists_and_drops_custom_kinds_and_delete_cleans_up() {
    let t = common::start().await;
    let g = "disc.example.com";
    create_crd(&t, widget_crd(g), &format!("/apis/{g}/v1/widgets")).await;
    let base = format!("/apis/{g}/v1/namespaces/default/widgets");
    for n in ["a", "b"] {
        let (code, body) = post(&t, &base, json!({"metadata": {"name": n}})).await;
        assert_eq!(code, 201, "{body}");
    }

    let (_, apis) = get(&t, "/apis").await;
    let group = apis["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == g)
        .expect("group listed")
        .clone();
    // Version priority: v1 before v1beta1, v1 preferred.
    assert_eq!(group["preferredVersion"]["version"], "v1");
    assert_eq!(group["versions"][1]["version"], "v1beta1");
    // Built-in groups come first.
    assert_eq!(apis["groups"][0]["name"], "apps");
    let (code, _) = get(&t, &format!("/apis/{g}")).await;
    assert_eq!(code, 200);
    let (code, rl) = get(&t, &format!("/apis/{g}/v1")).await;
    assert_eq!(code, 200);
    let names: Vec<&str> = rl["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["widgets", "widgets/status", "widgets/scale"]);
    assert_eq!(rl["resources"][0]["shortNames"], json!(["wdg"]));
    assert_eq!(rl["resources"][0]["categories"], json!(["all"]));

    // OpenAPI v3 and v2 describe the custom kind.
    let (code, v3) = get(&t, "/openapi/v3").await;
    assert_eq!(code, 200);
    assert!(v3["paths"].get(format!("apis/{g}/v1")).is_some(), "{v3}");
    let (code, doc) = get(&t, &format!("/openapi/v3/apis/{g}/v1")).await;
    assert_eq!(code, 200, "{doc}");
    // No strategic merge patch for custom kinds (kubectl apply then sends a merge patch).
    let item = format!("/apis/{g}/v1/namespaces/{{namespace}}/widgets/{{name}}");
    let content = doc["paths"][&item]["patch"]["requestBody"]["content"]
        .as_object()
        .unwrap_or_else(|| panic!("{item} in {doc}"));
    assert!(content.contains_key("application/merge-patch+json"));
    assert!(!content.contains_key("application/strategic-merge-patch+json"));
    let (code, v2) = get(&t, "/openapi/v2").await;
    assert_eq!(code, 200);
    let defs = v2["definitions"].as_object().expect("definitions");
    assert!(
        defs.keys().any(|k| k.ends_with(".v1.Widget")),
        "{:?}",
        defs.keys().collect::<Vec<_>>()
    );
    let consumes = &v2["paths"][&item]["patch"]["consumes"];
    assert!(
        consumes.as_array().is_some_and(|c| !c.is_empty()),
        "{consumes}"
    );
    assert!(!consumes
        .as_array()
        .unwrap()
        .contains(&json!("application/strategic-merge-patch+json")));

    for v in ["v2", "v2beta1"] {
        let accept =
            format!("application/json;g=apidiscovery.k8s.io;v={v};as=APIGroupDiscoveryList");
        let (code, agg) = raw(&t, "GET", "/apis", None, Some(&accept), Value::Null).await;
        assert_eq!(code, 200);
        assert!(aggregated_has(&agg, g, "widgets"), "{v}");
    }

    // Deleting the CRD: Terminating, no new objects, objects deleted, then the CRD goes, and
    // with it open watches.
    let ar = ApiResource {
        group: g.into(),
        version: "v1".into(),
        api_version: format!("{g}/v1"),
        kind: "Widget".into(),
        plural: "widgets".into(),
    };
    let api: Api<DynamicObject> = Api::namespaced_with(t.client.clone(), "default", &ar);
    let (_, list) = get(&t, &base).await;
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let mut events = api
        .watch(&WatchParams::default().timeout(60), &rv)
        .await
        .unwrap()
        .boxed();
    let (code, deleting) = delete(&t, &format!("{CRDS}/widgets.{g}")).await;
    assert_eq!(code, 200, "{deleting}");
    wait_gone(&t, &format!("{CRDS}/widgets.{g}")).await;
    let mut deleted = 0;
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(5), events.try_next())
            .await
            .expect("the watch ends with the CRD")
            .unwrap();
        match ev {
            None => break,
            Some(WatchEvent::Deleted(_)) => deleted += 1,
            Some(_) => {}
        }
    }
    assert_eq!(deleted, 2);
    let (code, _) = get(&t, &format!("{base}/a")).await;
    assert_eq!(code, 404);
    let (code, _) = get(&t, &format!("/apis/{g}/v1")).await;
    assert_eq!(code, 404);
    let (_, apis) = get(&t, "/apis").await;
    assert!(!apis["groups"]
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x["name"] == g));
    let (_, v2) = get(&t, "/openapi/v2").await;
    let defs = v2["definitions"].as_object().expect("definitions");
    assert!(!defs.keys().any(|k| k.ends_with(".v1.Widget")));
    // Re-created, the old objects do not come back.
    create_crd(&t, widget_crd(g), &format!("/apis/{g}/v1/widgets")).await;
    let (_, list) = get(&t, &base).await;
    assert_eq!(list["items"], json!([]));
}

#[tokio::test]
async fn crd_deletion_waits_for_object_finalizers() {
    let t = common::start().await;
    let g = "fin.example.com";
    create_crd(&t, widget_crd(g), &format!("/apis/{g}/v1/widgets")).await;
    let base = format!("/apis/{g}/v1/namespaces/default/widgets");
    post(
        &t,
        &base,
        json!({"metadata": {"name": "held", "finalizers": ["example.com/hold"]}}),
    )
    .await;
    delete(&t, &format!("{CRDS}/widgets.{g}")).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (code, crd) = get(&t, &format!("{CRDS}/widgets.{g}")).await;
    assert_eq!(code, 200);
    assert!(crd["metadata"]["finalizers"]
        .as_array()
        .unwrap()
        .contains(&json!("customresourcecleanup.apiextensions.k8s.io")));
    let terminating = crd["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["type"] == "Terminating" && c["status"] == "True");
    assert!(terminating, "{crd}");
    let (code, err) = post(&t, &base, json!({"metadata": {"name": "new"}})).await;
    assert_eq!(code, 405, "{err}");
    let (_, held) = get(&t, &format!("{base}/held")).await;
    assert!(held["metadata"]["deletionTimestamp"].is_string(), "{held}");
    // Releasing the finalizer lets the object and then the CRD go.
    let (code, body) = patch(
        &t,
        &format!("{base}/held"),
        "application/merge-patch+json",
        json!({"metadata": {"finalizers": null}}),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    wait_gone(&t, &format!("{CRDS}/widgets.{g}")).await;
}

#[tokio::test]
async fn namespace_deletion_deletes_custom_objects() {
    let t = common::start().await;
    let g = "nsdel.example.com";
    create_crd(&t, widget_crd(g), &format!("/apis/{g}/v1/widgets")).await;
    let (code, _) = post(
        &t,
        "/api/v1/namespaces",
        json!({"metadata": {"name": "doomed"}}),
    )
    .await;
    assert_eq!(code, 201);
    let base = format!("/apis/{g}/v1/namespaces/doomed/widgets");
    let (code, body) = post(&t, &base, json!({"metadata": {"name": "w"}})).await;
    assert_eq!(code, 201, "{body}");
    delete(&t, "/api/v1/namespaces/doomed").await;
    wait_gone(&t, "/api/v1/namespaces/doomed").await;
    let (_, list) = get(&t, &format!("/apis/{g}/v1/widgets")).await;
    assert_eq!(list["items"], json!([]));
}

#[tokio::test]
async fn conflicting_names_are_not_accepted_and_not_served() {
    let t = common::start().await;
    let g = "conflict.example.com";
    create_crd(&t, widget_crd(g), &format!("/apis/{g}/v1/widgets")).await;
    let mut other = widget_crd(g);
    other["metadata"]["name"] = json!(format!("gadgets.{g}"));
    other["spec"]["names"] = json!({"plural": "gadgets", "kind": "Gadget", "shortNames": ["wdg"]});
    let (code, _) = post(&t, CRDS, other).await;
    assert_eq!(code, 201);
    let started = Instant::now();
    let crd = loop {
        let (_, crd) = get(&t, &format!("{CRDS}/gadgets.{g}")).await;
        if crd["status"]["conditions"].is_array() {
            break crd;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "{crd}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let conditions = crd["status"]["conditions"].as_array().unwrap();
    let names = conditions
        .iter()
        .find(|c| c["type"] == "NamesAccepted")
        .unwrap();
    assert_eq!(names["status"], "False");
    assert_eq!(names["reason"], "ShortNamesConflict");
    assert_eq!(names["message"], "\"wdg\" is already in use");
    let established = conditions
        .iter()
        .find(|c| c["type"] == "Established")
        .unwrap();
    assert_eq!(established["status"], "False");
    let (code, _) = get(&t, &format!("/apis/{g}/v1/gadgets")).await;
    assert_eq!(code, 404);
    // A built-in kind's plural in its own group conflicts too.
    let mut builtin = gizmo_crd("discovery.k8s.io");
    builtin["metadata"]["name"] = json!("endpointslices.discovery.k8s.io");
    builtin["metadata"]["annotations"] =
        json!({"api-approved.kubernetes.io": "unapproved, test only"});
    builtin["spec"]["names"] = json!({"plural": "endpointslices", "kind": "Thing"});
    let (code, body) = post(&t, CRDS, builtin).await;
    assert_eq!(code, 201, "{body}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, crd) = get(&t, &format!("{CRDS}/endpointslices.discovery.k8s.io")).await;
    let names = crd["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "NamesAccepted")
        .unwrap()
        .clone();
    assert_eq!(names["reason"], "PluralConflict", "{crd}");
}

#[tokio::test]
async fn rbac_applies_to_custom_resources() {
    let t = common::start().await;
    let g = "rbac.example.com";
    create_crd(&t, widget_crd(g), &format!("/apis/{g}/v1/widgets")).await;
    let base = format!("/apis/{g}/v1/namespaces/default/widgets");
    post(&t, &base, json!({"metadata": {"name": "w"}})).await;
    let as_alice = |method: &'static str, path: String| {
        let t = &t;
        async move {
            let req = http::Request::builder()
                .method(method)
                .uri(path)
                .header("Impersonate-User", "alice")
                .body(kube::client::Body::from(Vec::new()))
                .unwrap();
            let resp = t.client.send(req).await.expect("send");
            resp.status().as_u16()
        }
    };
    assert_eq!(as_alice("GET", format!("{base}/w")).await, 403);
    let (code, body) = post(
        &t,
        "/apis/rbac.authorization.k8s.io/v1/namespaces/default/roles",
        json!({"metadata": {"name": "widget-reader"}, "rules": [{"apiGroups": [g],
            "resources": ["widgets"], "verbs": ["get", "list"]}]}),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    let (code, body) = post(
        &t,
        "/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings",
        json!({"metadata": {"name": "alice-widgets"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "widget-reader"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"}]}),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    assert_eq!(as_alice("GET", format!("{base}/w")).await, 200);
    assert_eq!(as_alice("GET", base.clone()).await, 200);
    assert_eq!(as_alice("DELETE", format!("{base}/w")).await, 403);
    assert_eq!(as_alice("GET", format!("{base}/w/status")).await, 403);
}

/// A conversion webhook over HTTPS: v1 keeps `spec.size`, v2 calls it `spec.replicas`.
async fn serve_converter() -> (u16, String, tokio::sync::oneshot::Sender<()>) {
    use std::sync::Arc;
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
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
    async fn convert(axum::Json(review): axum::Json<Value>) -> axum::Json<Value> {
        let req = &review["request"];
        let to = req["desiredAPIVersion"].as_str().unwrap_or("").to_string();
        let converted: Vec<Value> = req["objects"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|mut o| {
                let spec = o["spec"].as_object_mut().cloned().unwrap_or_default();
                let mut spec = spec;
                if to.ends_with("/v2") {
                    if let Some(v) = spec.remove("size") {
                        spec.insert("replicas".into(), v);
                    }
                } else if let Some(v) = spec.remove("replicas") {
                    spec.insert("size".into(), v);
                }
                o["spec"] = Value::Object(spec);
                o["apiVersion"] = json!(to);
                o
            })
            .collect();
        axum::Json(
            json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview",
            "response": {"uid": req["uid"], "convertedObjects": converted,
                "result": {"status": "Success"}}}),
        )
    }
    let app = axum::Router::new().route("/convert", axum::routing::post(convert));
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
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    use base64::Engine;
    let ca_b64 = base64::engine::general_purpose::STANDARD.encode(ca_cert.pem());
    (port, ca_b64, stop)
}

#[tokio::test]
async fn webhook_conversion_between_served_versions() {
    let t = common::start().await;
    let (port, ca, _stop) = serve_converter().await;
    let g = "conv.example.com";
    let version = |name: &str, field: &str, storage: bool| {
        json!({"name": name, "served": true, "storage": storage,
            "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                "spec": {"type": "object", "properties": {field: {"type": "integer"}}}}}}})
    };
    let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("widgets.{g}")},
        "spec": {"group": g, "scope": "Namespaced",
            "names": {"plural": "widgets", "kind": "Widget"},
            "conversion": {"strategy": "Webhook", "webhook": {
                "conversionReviewVersions": ["v1"],
                "clientConfig": {"url": format!("https://127.0.0.1:{port}/convert"),
                    "caBundle": ca}}},
            "versions": [version("v1", "size", true), version("v2", "replicas", false)]}});
    create_crd(&t, crd, &format!("/apis/{g}/v2/widgets")).await;
    let (code, created) = post(
        &t,
        &format!("/apis/{g}/v2/namespaces/default/widgets"),
        json!({"apiVersion": format!("{g}/v2"), "kind": "Widget",
            "metadata": {"name": "w"}, "spec": {"replicas": 3}}),
    )
    .await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(created["apiVersion"], format!("{g}/v2"));
    assert_eq!(created["spec"]["replicas"], 3);
    // Stored at v1 through the webhook, read back at each version.
    let (_, v1) = get(&t, &format!("/apis/{g}/v1/namespaces/default/widgets/w")).await;
    assert_eq!(v1["apiVersion"], format!("{g}/v1"));
    assert_eq!(v1["spec"], json!({"size": 3}));
    let (_, v2) = get(&t, &format!("/apis/{g}/v2/namespaces/default/widgets/w")).await;
    assert_eq!(v2["spec"], json!({"replicas": 3}));
    assert_eq!(v2["metadata"]["uid"], v1["metadata"]["uid"]);
    let (_, list) = get(&t, &format!("/apis/{g}/v2/widgets")).await;
    assert_eq!(list["items"][0]["spec"], json!({"replicas": 3}));
    // An update at v2 keeps the stored v1 form consistent.
    let (code, patched) = patch(
        &t,
        &format!("/apis/{g}/v2/namespaces/default/widgets/w"),
        "application/merge-patch+json",
        json!({"spec": {"replicas": 5}}),
    )
    .await;
    assert_eq!(code, 200, "{patched}");
    let (_, v1) = get(&t, &format!("/apis/{g}/v1/namespaces/default/widgets/w")).await;
    assert_eq!(v1["spec"], json!({"size": 5}));
}

#[tokio::test]
async fn cel_validation_rules_apply_to_custom_objects() {
    let t = common::start().await;
    let g = "cel.example.com";
    let mut crd = widget_crd(g);
    for v in crd["spec"]["versions"].as_array_mut().unwrap() {
        v["schema"]["openAPIV3Schema"]["properties"]["spec"]["x-kubernetes-validations"] = json!([
            {"rule": "self.replicas <= 10", "message": "at most 10 replicas"},
            {"rule": "self.color == oldSelf.color", "message": "color is immutable"}
        ]);
    }
    create_crd(&t, crd, &format!("/apis/{g}/v1/widgets")).await;
    let base = format!("/apis/{g}/v1/namespaces/default/widgets");
    let (code, err) = post(
        &t,
        &base,
        json!({"metadata": {"name": "big"}, "spec": {"replicas": 11}}),
    )
    .await;
    assert_eq!(code, 422, "{err}");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("at most 10 replicas"),
        "{err}"
    );
    // The transition rule is skipped on create and checked on update.
    let (code, body) = post(
        &t,
        &base,
        json!({"metadata": {"name": "w"}, "spec": {"replicas": 1, "color": "red"}}),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    let (code, err) = patch(
        &t,
        &format!("{base}/w"),
        "application/merge-patch+json",
        json!({"spec": {"color": "blue"}}),
    )
    .await;
    assert_eq!(code, 422, "{err}");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("color is immutable"),
        "{err}"
    );
    let (code, body) = patch(
        &t,
        &format!("{base}/w"),
        "application/merge-patch+json",
        json!({"spec": {"replicas": 2}}),
    )
    .await;
    assert_eq!(code, 200, "{body}");
}

/// Server-side apply follows the schema's list types: `map` lists merge by their keys and are
/// owned per item, `set` lists per value, other lists are atomic (a conflict between managers).
#[tokio::test]
async fn server_side_apply_follows_the_schema_list_types() {
    let t = common::start().await;
    let group = "ssa.skiff.dev";
    let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("routes.{group}")},
        "spec": {"group": group, "scope": "Namespaced",
            "names": {"plural": "routes", "kind": "Route"},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "properties": {
                        "backends": {"type": "array", "x-kubernetes-list-type": "map",
                            "x-kubernetes-list-map-keys": ["name"],
                            "items": {"type": "object", "required": ["name"], "properties": {
                                "name": {"type": "string"}, "weight": {"type": "integer"}}}},
                        "hosts": {"type": "array", "x-kubernetes-list-type": "set",
                            "items": {"type": "string"}},
                        "order": {"type": "array", "items": {"type": "string"}}}}}}}}]}});
    let base = format!("/apis/{group}/v1/namespaces/default/routes");
    create_crd(&t, crd, &base).await;
    let apply = |manager: &str, spec: Value| {
        let body = json!({"apiVersion": format!("{group}/v1"), "kind": "Route",
            "metadata": {"name": "r"}, "spec": spec});
        let path = format!("{base}/r?fieldManager={manager}");
        let t = &t;
        async move { patch(t, &path, "application/apply-patch+yaml", body).await }
    };
    let (code, body) = apply(
        "alice",
        json!({"backends": [{"name": "a", "weight": 1}],
        "hosts": ["a.example"], "order": ["a"]}),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    let (code, body) = apply(
        "bob",
        json!({"backends": [{"name": "b", "weight": 2}],
        "hosts": ["b.example"]}),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        body["spec"]["backends"],
        json!([{"name": "a", "weight": 1}, {"name": "b", "weight": 2}])
    );
    assert_eq!(body["spec"]["hosts"], json!(["a.example", "b.example"]));
    let bob = body["metadata"]["managedFields"]
        .as_array()
        .and_then(|m| m.iter().find(|e| e["manager"] == "bob"))
        .cloned()
        .expect("bob's entry");
    let owned = &bob["fieldsV1"]["f:spec"];
    assert!(
        owned["f:backends"].get("k:{\"name\":\"b\"}").is_some(),
        "{bob}"
    );
    assert!(
        owned["f:backends"].get("k:{\"name\":\"a\"}").is_none(),
        "{bob}"
    );
    assert!(owned["f:hosts"].get("v:\"b.example\"").is_some(), "{bob}");

    // Another manager changing an item alice owns conflicts; so does replacing her atomic list.
    let (code, body) = apply(
        "bob",
        json!({"backends": [{"name": "b", "weight": 2},
        {"name": "a", "weight": 5}], "hosts": ["b.example"]}),
    )
    .await;
    assert_eq!(code, 409, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or("")
            .contains(".spec.backends[name=\"a\"].weight"),
        "{body}"
    );
    let (code, body) = apply(
        "bob",
        json!({"backends": [{"name": "b", "weight": 2}],
        "hosts": ["b.example"], "order": ["b"]}),
    )
    .await;
    assert_eq!(code, 409, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or("")
            .contains(".spec.order"),
        "{body}"
    );

    // Alice drops her backend: only her item goes.
    let (code, body) = apply("alice", json!({"hosts": ["a.example"], "order": ["a"]})).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        body["spec"]["backends"],
        json!([{"name": "b", "weight": 2}])
    );
}
