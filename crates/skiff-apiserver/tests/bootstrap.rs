//! Servers sharing their CA, keys, tokens and encryption configuration through one datastore
//! (issue 16, joining servers): two data dirs on one SQLite store, in process.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::api::{Api, PostParams};
use serde_json::{json, Value};
use skiff_apiserver::bootstrap::{self, BootstrapError, Outcome, SHARED_FILES};
use skiff_apiserver::{encryption, Server, ServerConfig};
use skiff_store::Store;

fn shared_store(dir: &Path) -> Arc<dyn Store> {
    Arc::new(skiff_store::SqliteStore::open(&dir.join("state.db")).expect("store"))
}

fn token_of(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("node-token"))
        .expect("node-token")
        .trim()
        .to_string()
}

fn assert_same_shared_files(a: &Path, b: &Path) {
    for rel in SHARED_FILES {
        let (x, y) = (std::fs::read(a.join(rel)), std::fs::read(b.join(rel)));
        match (x, y) {
            (Ok(x), Ok(y)) => {
                assert_eq!(x, y, "{rel} differs");
                let mode = std::fs::metadata(b.join(rel)).unwrap().permissions().mode();
                assert_eq!(mode & 0o077, 0, "{rel} is not private: {mode:o}");
            }
            (Err(_), Err(_)) => {}
            (x, y) => panic!("{rel}: present in only one data dir ({x:?} / {y:?})"),
        }
    }
}

struct Running {
    client: kube::Client,
    addr: std::net::SocketAddr,
    kubeconfig: std::path::PathBuf,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start(dir: &Path, raw: Arc<dyn Store>) -> Running {
    let store = encryption::wrap(dir, false, raw).unwrap();
    let server = Server::bind(
        ServerConfig::new(dir, "127.0.0.1:0".parse().unwrap()),
        store,
    )
    .await
    .unwrap();
    let kubeconfig = server.kubeconfig_path().to_path_buf();
    let addr = server.local_addr();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(async {
        let _ = rx.await;
    }));
    Running {
        client: common::client_from(&kubeconfig).await,
        addr,
        kubeconfig,
        _stop: tx,
    }
}

#[tokio::test]
async fn a_second_server_shares_the_first_servers_ca_keys_tokens_and_encryption() {
    let shared = tempfile::tempdir().unwrap();
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let store = shared_store(shared.path());

    let first = bootstrap::run(d1.path(), None, true, store.as_ref())
        .await
        .unwrap();
    assert_eq!(first.outcome, Outcome::Created);
    let token = token_of(d1.path());
    assert_eq!(first.key, bootstrap::key_for(&token));
    // The stored value holds no key material in the clear.
    let raw = store.get(&first.key).await.unwrap().unwrap();
    let ca_key = std::fs::read_to_string(d1.path().join("server/tls/ca.key")).unwrap();
    let text = String::from_utf8_lossy(&raw.value);
    assert!(!text.contains("PRIVATE KEY") && !text.contains(&token));
    assert!(!text.contains(ca_key.lines().nth(1).unwrap()));

    let second = bootstrap::run(d2.path(), Some(&token), false, store.as_ref())
        .await
        .unwrap();
    assert_eq!(second.outcome, Outcome::Joined);
    assert!(second.written.contains(&"server/tls/ca.key".to_string()));
    assert!(second
        .written
        .contains(&"server/cred/encryption-config.json".to_string()));
    assert_same_shared_files(d1.path(), d2.path());
    // A restart of a joined server changes nothing.
    let again = bootstrap::run(d2.path(), None, false, store.as_ref())
        .await
        .unwrap();
    assert_eq!((again.outcome, again.written.len()), (Outcome::Joined, 0));

    // Both servers on the one store: each serves with its own certificate signed by the shared
    // CA, reads the other's encrypted Secrets and accepts the other's ServiceAccount tokens
    // and admin certificate.
    let s1 = start(d1.path(), store.clone()).await;
    let s2 = start(d2.path(), store.clone()).await;
    assert_ne!(
        std::fs::read(d1.path().join("server/tls/server.crt")).unwrap(),
        std::fs::read(d2.path().join("server/tls/server.crt")).unwrap()
    );
    let secret: Secret =
        serde_json::from_value(json!({"metadata": {"name": "shared"}, "stringData": {"k": "v"}}))
            .unwrap();
    Api::<Secret>::namespaced(s1.client.clone(), "default")
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let read = Api::<Secret>::namespaced(s2.client.clone(), "default")
        .get("shared")
        .await
        .unwrap();
    assert_eq!(read.data.unwrap()["k"].0, b"v");
    let stored = store
        .get("/registry/core/secrets/default/shared")
        .await
        .unwrap()
        .unwrap();
    assert!(stored.value.starts_with(b"k8s:enc:aesgcm:v1:"));

    let sa: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "build"}})).unwrap();
    Api::<ServiceAccount>::namespaced(s1.client.clone(), "default")
        .create(&PostParams::default(), &sa)
        .await
        .unwrap();
    let req = http::Request::post("/api/v1/namespaces/default/serviceaccounts/build/token")
        .header("Content-Type", "application/json")
        .body(
            serde_json::to_vec(
                &json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest"}),
            )
            .unwrap(),
        )
        .unwrap();
    let tr: Value = s1.client.request(req).await.unwrap();
    let sa_token = tr["status"]["token"].as_str().unwrap();
    let ca = std::fs::read(d2.path().join("server/tls/ca.crt")).unwrap();
    let sa_client =
        skiff_client::config::with_token(&format!("https://{}", s2.addr), &ca, sa_token).unwrap();
    match Api::<Secret>::namespaced(sa_client, "default")
        .list(&Default::default())
        .await
    {
        Ok(_) => {}
        Err(e) => assert_eq!(common::status_code(&e), Some(403), "{e}"),
    }
    // The first server's admin kubeconfig works against the second server.
    let kc = std::fs::read_to_string(&s1.kubeconfig)
        .unwrap()
        .replace(&s1.addr.to_string(), &s2.addr.to_string());
    let kc_path = d1.path().join("kubeconfig-s2.yaml");
    std::fs::write(&kc_path, kc).unwrap();
    let via_s2 = common::client_from(&kc_path).await;
    Api::<Secret>::namespaced(via_s2, "default")
        .get("shared")
        .await
        .unwrap();

    // The join token works on both servers, and a node password recorded through one server
    // is enforced by the other (the record lives in the datastore).
    let join = |addr: std::net::SocketAddr| {
        skiff_client::config::with_token(&format!("https://{addr}"), &ca, &token).unwrap()
    };
    skiff_client::node_identity::request(&join(s1.addr), "n1", None, Some("machine-1"))
        .await
        .unwrap();
    assert!(store
        .get("/skiff/node-passwords/n1")
        .await
        .unwrap()
        .is_some());
    let node = serde_json::from_value(json!({"metadata": {"name": "n1"}})).unwrap();
    Api::<k8s_openapi::api::core::v1::Node>::all(s1.client.clone())
        .create(&PostParams::default(), &node)
        .await
        .unwrap();
    let err = skiff_client::node_identity::request(&join(s2.addr), "n1", None, Some("machine-2"))
        .await
        .err()
        .expect("another machine took over n1 through the second server");
    assert!(err.to_string().contains("Node password rejected"), "{err}");
    skiff_client::node_identity::request(&join(s2.addr), "n1", None, Some("machine-1"))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_wrong_or_missing_token_fails_clearly_and_creates_no_second_ca() {
    let shared = tempfile::tempdir().unwrap();
    let store = shared_store(shared.path());
    let d1 = tempfile::tempdir().unwrap();
    bootstrap::run(d1.path(), Some("first-token"), false, store.as_ref())
        .await
        .unwrap();

    let d2 = tempfile::tempdir().unwrap();
    let err = bootstrap::run(d2.path(), Some("not-the-token"), false, store.as_ref())
        .await
        .unwrap_err();
    assert!(matches!(err, BootstrapError::WrongToken), "{err}");
    assert!(err.to_string().contains("token is wrong"), "{err}");
    assert!(!d2.path().join("server/tls/ca.crt").exists());
    let err = bootstrap::run(d2.path(), None, false, store.as_ref())
        .await
        .unwrap_err();
    assert!(matches!(err, BootstrapError::NoToken), "{err}");
    assert!(!d2.path().join("node-token").exists());
    let keys = store
        .list(bootstrap::PREFIX, &Default::default())
        .await
        .unwrap();
    assert_eq!(keys.items.len(), 1);

    // A data dir that already belongs to another cluster keeps its CA and says why.
    let other_store_dir = tempfile::tempdir().unwrap();
    let other_store = shared_store(other_store_dir.path());
    let d3 = tempfile::tempdir().unwrap();
    bootstrap::run(d3.path(), Some("first-token"), false, other_store.as_ref())
        .await
        .unwrap();
    let before = std::fs::read(d3.path().join("server/tls/ca.key")).unwrap();
    let err = bootstrap::run(d3.path(), Some("first-token"), false, store.as_ref())
        .await
        .unwrap_err();
    assert!(matches!(err, BootstrapError::Conflict(_)), "{err}");
    assert_eq!(
        std::fs::read(d3.path().join("server/tls/ca.key")).unwrap(),
        before
    );
    // A token that differs from the data dir's own.
    let err = bootstrap::run(d1.path(), Some("changed"), false, store.as_ref())
        .await
        .unwrap_err();
    assert!(matches!(err, BootstrapError::TokenMismatch(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_servers_agree_on_one_ca() {
    for _ in 0..3 {
        let shared = tempfile::tempdir().unwrap();
        let store = shared_store(shared.path());
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (ra, rb) = tokio::join!(
            bootstrap::run(a.path(), Some("same-token"), false, store.as_ref()),
            bootstrap::run(b.path(), Some("same-token"), false, store.as_ref()),
        );
        let (ra, rb) = (ra.unwrap(), rb.unwrap());
        let mut outcomes = [ra.outcome, rb.outcome];
        outcomes.sort_by_key(|o| *o == Outcome::Joined);
        assert_eq!(outcomes, [Outcome::Created, Outcome::Joined]);
        assert_same_shared_files(a.path(), b.path());

        // Two first servers with different tokens: one cluster, the other is refused.
        let shared = tempfile::tempdir().unwrap();
        let store = shared_store(shared.path());
        let (c, d) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (rc, rd) = tokio::join!(
            bootstrap::run(c.path(), Some("token-c"), false, store.as_ref()),
            bootstrap::run(d.path(), Some("token-d"), false, store.as_ref()),
        );
        assert_eq!(
            usize::from(rc.is_ok()) + usize::from(rd.is_ok()),
            1,
            "{rc:?} {rd:?}"
        );
        let keys = store
            .list(bootstrap::PREFIX, &Default::default())
            .await
            .unwrap();
        assert_eq!(keys.items.len(), 1);
    }
}

#[tokio::test]
async fn key_rotation_and_late_encryption_reach_the_shared_copy() {
    let shared = tempfile::tempdir().unwrap();
    let store = shared_store(shared.path());
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    bootstrap::run(d1.path(), Some("tok"), false, store.as_ref())
        .await
        .unwrap();
    bootstrap::run(d2.path(), Some("tok"), false, store.as_ref())
        .await
        .unwrap();
    assert!(!d2
        .path()
        .join("server/cred/encryption-config.json")
        .exists());
    // Encryption turned on at a later start of one server becomes the cluster's.
    bootstrap::run(d1.path(), None, true, store.as_ref())
        .await
        .unwrap();
    let cfg1 = encryption::Config::load(d1.path()).unwrap().unwrap();
    assert!(cfg1.encrypt);
    bootstrap::run(d2.path(), None, false, store.as_ref())
        .await
        .unwrap();
    assert_same_shared_files(d1.path(), d2.path());

    // rotate-keys on one server, then publish: the other follows at its next start.
    let (name, _) = encryption::rotate_keys(d1.path(), store.clone())
        .await
        .unwrap();
    assert!(bootstrap::publish_local(d1.path(), store.as_ref())
        .await
        .unwrap());
    let report = bootstrap::run(d2.path(), None, false, store.as_ref())
        .await
        .unwrap();
    assert_eq!(
        report.written,
        vec!["server/cred/encryption-config.json".to_string()]
    );
    let cfg2 = encryption::Config::load(d2.path()).unwrap().unwrap();
    assert_eq!(cfg2.keys[0].0, name);
    assert_same_shared_files(d1.path(), d2.path());
}
