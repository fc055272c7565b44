//! Pod admission: upstream's DefaultTolerationSeconds plugin adds not-ready / unreachable
//! NoExecute tolerations to new pods, with the configured number of seconds.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use serde_json::json;
mod common;

use common::client_from;
use skiff_apiserver::{Server, ServerConfig};

fn tolerations(pod: &Pod) -> Vec<(String, String, String, Option<i64>)> {
    pod.spec
        .as_ref()
        .and_then(|s| s.tolerations.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|t| {
            (
                t.key.unwrap_or_default(),
                t.operator.unwrap_or_default(),
                t.effect.unwrap_or_default(),
                t.toleration_seconds,
            )
        })
        .collect()
}

#[tokio::test]
async fn default_toleration_seconds_are_added_on_create() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(skiff_store::SqliteStore::open(&dir.path().join("state.db")).unwrap());
    let mut config = ServerConfig::new(dir.path(), "127.0.0.1:0".parse().unwrap());
    assert_eq!(config.default_toleration_seconds, 300);
    config.default_toleration_seconds = 7;
    let server = Server::bind(config, store).await.unwrap();
    let client = client_from(server.kubeconfig_path()).await;
    let (_tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(async {
        let _ = rx.await;
    }));
    common::ensure_default_sa(&client, "default").await;
    let pods: Api<Pod> = Api::namespaced(client, "default");

    let plain: Pod = serde_json::from_value(json!({"metadata": {"name": "plain"},
        "spec": {"containers": [{"name": "c", "image": "nginx"}]}}))
    .unwrap();
    let got = pods.create(&PostParams::default(), &plain).await.unwrap();
    let ns = "NoExecute".to_string();
    let ex = "Exists".to_string();
    assert_eq!(
        tolerations(&got),
        vec![
            (
                "node.kubernetes.io/not-ready".into(),
                ex.clone(),
                ns.clone(),
                Some(7)
            ),
            (
                "node.kubernetes.io/unreachable".into(),
                ex.clone(),
                ns.clone(),
                Some(7)
            ),
        ]
    );

    // A pod that already tolerates unreachable keeps its own toleration and only gains not-ready.
    let own: Pod = serde_json::from_value(json!({"metadata": {"name": "own"},
        "spec": {"containers": [{"name": "c", "image": "nginx"}],
            "tolerations": [{"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                "effect": "NoExecute", "tolerationSeconds": 2}]}}))
    .unwrap();
    let got = pods.create(&PostParams::default(), &own).await.unwrap();
    assert_eq!(
        tolerations(&got),
        vec![
            (
                "node.kubernetes.io/unreachable".into(),
                ex.clone(),
                ns.clone(),
                Some(2)
            ),
            (
                "node.kubernetes.io/not-ready".into(),
                ex.clone(),
                ns.clone(),
                Some(7)
            ),
        ]
    );

    // Tolerate-everything (empty key, Exists) gets nothing added.
    let all: Pod = serde_json::from_value(json!({"metadata": {"name": "all"},
        "spec": {"containers": [{"name": "c", "image": "nginx"}],
            "tolerations": [{"operator": "Exists"}]}}))
    .unwrap();
    let got = pods.create(&PostParams::default(), &all).await.unwrap();
    assert_eq!(
        tolerations(&got),
        vec![(String::new(), ex, String::new(), None)]
    );
}
