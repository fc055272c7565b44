//! ComponentStatus (computed on read from the probes the process registered and the datastore)
//! and PodTemplate (stored, defaulted, validated, printed) through a real HTTPS server.

use std::sync::Arc;

use http::{Method, Request};
use k8s_openapi::api::core::v1::PodTemplate;
use kube::api::{Api, PostParams};
use serde_json::{json, Value};
use skiff_apiserver::{Server, ServerConfig};

mod common;

/// `method path` as the admin: status, the Warning headers, the JSON body.
async fn send(
    client: &kube::Client,
    method: Method,
    path: &str,
    accept: Option<&str>,
) -> (u16, Vec<String>, Value) {
    let mut b = Request::builder().method(method).uri(path);
    if let Some(a) = accept {
        b = b.header("Accept", a);
    }
    let resp = client
        .send(b.body(kube::client::Body::empty()).expect("request"))
        .await
        .expect("send");
    let status = resp.status().as_u16();
    let warnings = resp
        .headers()
        .get_all("warning")
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_string))
        .collect();
    let bytes = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .expect("body")
        .to_bytes();
    (
        status,
        warnings,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn component_statuses_are_computed_on_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store =
        Arc::new(skiff_store::SqliteStore::open(&dir.path().join("state.db")).expect("store"));
    let server = Server::bind(
        ServerConfig::new(dir.path(), "127.0.0.1:0".parse().expect("addr")),
        store,
    )
    .await
    .expect("bind");
    server
        .state()
        .register_component("scheduler", Arc::new(|| Ok(())));
    server.state().register_component(
        "controller-manager",
        Arc::new(|| Err("the controllers task has stopped".into())),
    );
    let kubeconfig = server.kubeconfig_path().to_path_buf();
    let (_stop, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(async {
        let _ = rx.await;
    }));
    let client = common::client_from(&kubeconfig).await;

    let (code, warnings, list) =
        send(&client, Method::GET, "/api/v1/componentstatuses", None).await;
    assert_eq!(code, 200, "{list}");
    assert_eq!(
        warnings,
        ["299 - \"v1 ComponentStatus is deprecated in v1.19+\""]
    );
    assert_eq!(list["kind"], "ComponentStatusList");
    let items = list["items"].as_array().expect("items");
    let names: Vec<&str> = items
        .iter()
        .filter_map(|i| i["metadata"]["name"].as_str())
        .collect();
    assert_eq!(names, ["scheduler", "controller-manager", "etcd-0"]);
    assert_eq!(
        items[0]["conditions"],
        json!([{"type": "Healthy", "status": "True", "message": "ok"}])
    );
    assert_eq!(
        items[1]["conditions"],
        json!([{"type": "Healthy", "status": "False", "error": "the controllers task has stopped"}])
    );

    let (code, _, etcd) = send(
        &client,
        Method::GET,
        "/api/v1/componentstatuses/etcd-0",
        None,
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(etcd["conditions"][0]["status"], "True");
    assert_eq!(etcd["kind"], "ComponentStatus");

    let (code, _, missing) =
        send(&client, Method::GET, "/api/v1/componentstatuses/nope", None).await;
    assert_eq!(code, 404);
    assert_eq!(missing["message"], "componentstatuses \"nope\" not found");

    let (code, _, _) = send(
        &client,
        Method::DELETE,
        "/api/v1/componentstatuses/etcd-0",
        None,
    )
    .await;
    assert_eq!(code, 405);

    let (code, _, table) = send(
        &client,
        Method::GET,
        "/api/v1/componentstatuses",
        Some("application/json;as=Table;v=v1;g=meta.k8s.io"),
    )
    .await;
    assert_eq!(code, 200);
    let cols: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .expect("columns")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(cols, ["Name", "Status", "Message", "Error"]);
    assert_eq!(
        table["rows"][1]["cells"],
        json!([
            "controller-manager",
            "Unhealthy",
            "",
            "the controllers task has stopped"
        ])
    );
    assert_eq!(
        table["rows"][2]["cells"],
        json!(["etcd-0", "Healthy", "ok", ""])
    );
}

#[tokio::test]
async fn pod_templates_are_defaulted_validated_and_printed() {
    let s = common::start().await;
    let api: Api<PodTemplate> = Api::namespaced(s.client.clone(), "default");
    let tpl: PodTemplate = serde_json::from_value(json!({
        "metadata": {"name": "tpl"},
        "template": {"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "nginx"}]}}
    }))
    .expect("json");
    let created = api
        .create(&PostParams::default(), &tpl)
        .await
        .expect("create");
    let spec = created.template.and_then(|t| t.spec).expect("spec");
    assert_eq!(spec.restart_policy.as_deref(), Some("Always"));
    assert_eq!(spec.dns_policy.as_deref(), Some("ClusterFirst"));

    let bad: PodTemplate =
        serde_json::from_value(json!({"metadata": {"name": "bad"}, "template": {}})).expect("json");
    let err = api
        .create(&PostParams::default(), &bad)
        .await
        .expect_err("no containers");
    assert_eq!(common::status_code(&err), Some(422));
    assert!(
        err.to_string().contains("template.spec.containers"),
        "{err}"
    );

    let (code, _, table) = send(
        &s.client,
        Method::GET,
        "/api/v1/namespaces/default/podtemplates",
        Some("application/json;as=Table;v=v1;g=meta.k8s.io"),
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(
        table["rows"][0]["cells"],
        json!(["tpl", "web", "nginx", "app=web"])
    );
}
