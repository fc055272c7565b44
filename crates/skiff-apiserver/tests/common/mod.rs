//! Shared harness: a real HTTPS server on a random loopback port with its own data dir, and a
//! kube-rs client built from the kubeconfig it wrote.
#![allow(dead_code)]

use std::sync::Arc;

use kube::Client;
use skiff_apiserver::{Server, ServerConfig};

pub struct TestServer {
    pub _dir: tempfile::TempDir,
    pub client: Client,
    pub kubeconfig: std::path::PathBuf,
    pub _stop: tokio::sync::oneshot::Sender<()>,
}

/// The store for a test server: SQLite in `dir`, or with `SKIFF_TEST_STORE=etcd` the etcd
/// backend (watch cache included) on a new one-member etcd cluster, returned with it: keep it
/// alive as long as the server (dropping it kills the member and removes its files).
pub async fn test_store(
    dir: &std::path::Path,
) -> (
    Arc<dyn skiff_store::Store>,
    Option<skiff_store::etcd_testing::EtcdCluster>,
) {
    if std::env::var("SKIFF_TEST_STORE").as_deref() == Ok("etcd") {
        let name = format!(
            "api-{}",
            skiff_store::etcd_testing::free_port().expect("port")
        );
        let cluster = tokio::task::spawn_blocking(move || {
            skiff_store::etcd_testing::EtcdCluster::start(&name, 1)
        })
        .await
        .expect("join")
        .expect("etcd");
        let store = skiff_store::etcd::connect(skiff_store::EtcdOptions {
            endpoints: cluster.endpoints(),
            ..Default::default()
        })
        .await
        .expect("etcd store");
        return (store, Some(cluster));
    }
    let store = skiff_store::SqliteStore::open(&dir.join("state.db")).expect("store");
    (Arc::new(store), None)
}

pub async fn client_from(path: &std::path::Path) -> Client {
    skiff_client::config::from_kubeconfig(path)
        .await
        .expect("client")
}

pub async fn start() -> TestServer {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, etcd) = test_store(dir.path()).await;
    let server = Server::bind(
        ServerConfig::new(dir.path(), "127.0.0.1:0".parse().unwrap()),
        store,
    )
    .await
    .expect("bind");
    let kubeconfig = server.kubeconfig_path().to_path_buf();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(async {
        let _ = rx.await;
        // The etcd member (if any) lives until the server stops or the runtime ends.
        drop(etcd);
    }));
    let client = client_from(&kubeconfig).await;
    TestServer {
        _dir: dir,
        client,
        kubeconfig,
        _stop: tx,
    }
}

pub fn status_code(err: &kube::Error) -> Option<u16> {
    match err {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

/// Creates the `default` ServiceAccount in `ns` (no controllers run here to create it, and the
/// ServiceAccount admission plugin rejects pods without it).
pub async fn ensure_default_sa(client: &Client, ns: &str) {
    let sas: kube::Api<k8s_openapi::api::core::v1::ServiceAccount> =
        kube::Api::namespaced(client.clone(), ns);
    let sa =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "default"}})).expect("sa");
    match sas.create(&Default::default(), &sa).await {
        Ok(_) => {}
        Err(e) if status_code(&e) == Some(409) => {}
        Err(e) => panic!("creating the default ServiceAccount: {e}"),
    }
}
