//! Secrets at rest (issue 10, item 7): AES-GCM encryption read back from the raw database file,
//! restarts, key rotation, plaintext (identity) fallback, and the modes of every file the
//! server writes.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kube::api::{Api, PostParams};
use skiff_apiserver::encryption::{self, Config};
use skiff_apiserver::{Server, ServerConfig};

const MARKER: &str = "hunter2-plaintext-marker";

struct Running {
    client: kube::Client,
    stop: tokio::sync::oneshot::Sender<()>,
    done: tokio::task::JoinHandle<Result<(), skiff_apiserver::ServerError>>,
}

fn db(dir: &Path) -> std::path::PathBuf {
    dir.join("server/state.db")
}

async fn start(dir: &Path, encrypt: bool) -> Running {
    let raw: Arc<dyn skiff_store::Store> =
        Arc::new(skiff_store::SqliteStore::open(&db(dir)).unwrap());
    let store = encryption::wrap(dir, encrypt, raw).unwrap();
    let server = Server::bind(
        ServerConfig::new(dir, "127.0.0.1:0".parse().unwrap()),
        store,
    )
    .await
    .unwrap();
    let kubeconfig = server.kubeconfig_path().to_path_buf();
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let done = tokio::spawn(server.run(async {
        let _ = rx.await;
    }));
    Running {
        client: common::client_from(&kubeconfig).await,
        stop,
        done,
    }
}

impl Running {
    /// Stops the server and waits until the store (and its lock) is released.
    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.done.await;
        drop(self.client);
    }
}

async fn open_raw(dir: &Path) -> Arc<dyn skiff_store::Store> {
    for _ in 0..100 {
        match skiff_store::SqliteStore::open(&db(dir)) {
            Ok(s) => return Arc::new(s),
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
        }
    }
    panic!("the server's store was never released");
}

/// The newest stored value of every Secret, read from the database file itself.
fn raw_secret_rows(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let conn =
        rusqlite::Connection::open_with_flags(db(dir), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let mut st = conn
        .prepare(
            "SELECT name, value FROM log WHERE name LIKE '/registry/core/secrets/%' \
             AND deleted = 0 ORDER BY id",
        )
        .unwrap();
    let rows: BTreeMap<String, Vec<u8>> = st
        .query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    rows
}

fn all_rows_contain(dir: &Path, needle: &[u8]) -> bool {
    let conn =
        rusqlite::Connection::open_with_flags(db(dir), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let mut st = conn.prepare("SELECT value FROM log").unwrap();
    let rows: Vec<Vec<u8>> = st
        .query_map([], |r| r.get::<_, Vec<u8>>(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    rows.iter()
        .any(|v| v.windows(needle.len()).any(|w| w == needle))
}

fn secret(name: &str, value: &str) -> Secret {
    let mut s = Secret::default();
    s.metadata.name = Some(name.into());
    s.data = Some(BTreeMap::from([(
        "password".to_string(),
        ByteString(value.as_bytes().to_vec()),
    )]));
    s
}

async fn password(client: &kube::Client, name: &str) -> String {
    let api: Api<Secret> = Api::namespaced(client.clone(), "default");
    let s = api.get(name).await.unwrap();
    String::from_utf8(s.data.unwrap()["password"].0.clone()).unwrap()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_encrypted_at_rest_survive_restarts_and_rotate() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    std::fs::create_dir_all(&dir).unwrap();

    // A Secret written before encryption was enabled stays readable (identity fallback).
    let r = start(&dir, false).await;
    let api: Api<Secret> = Api::namespaced(r.client.clone(), "default");
    api.create(&PostParams::default(), &secret("old", "plain-before"))
        .await
        .unwrap();
    r.stop().await;
    let _ = open_raw(&dir).await; // waits for the lock, then drops it
    let old_b64 = base64_of("plain-before");
    assert!(all_rows_contain(&dir, old_b64.as_bytes()));

    let r = start(&dir, true).await;
    let cfg = Config::load(&dir).unwrap().expect("config written");
    assert!(cfg.encrypt);
    let first_key = cfg.keys[0].0.clone();
    let api: Api<Secret> = Api::namespaced(r.client.clone(), "default");
    let rv = api
        .list(&Default::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut events = api
        .watch(&kube::api::WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    api.create(&PostParams::default(), &secret("db", MARKER))
        .await
        .unwrap();
    assert_eq!(password(&r.client, "db").await, MARKER);
    // Watches see the plaintext too.
    let ev = tokio::time::timeout(std::time::Duration::from_secs(10), events.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    match ev {
        kube::api::WatchEvent::Added(s) => {
            assert_eq!(s.data.unwrap()["password"].0, MARKER.as_bytes())
        }
        other => panic!("unexpected event {other:?}"),
    }
    drop(events);
    assert_eq!(password(&r.client, "old").await, "plain-before");

    // The raw database holds no plaintext: neither the value nor its base64.
    let b64 = base64_of(MARKER);
    assert!(
        !all_rows_contain(&dir, MARKER.as_bytes()),
        "plaintext on disk"
    );
    assert!(
        !all_rows_contain(&dir, b64.as_bytes()),
        "base64 plaintext on disk"
    );
    let rows = raw_secret_rows(&dir);
    let db_row = &rows["/registry/core/secrets/default/db"];
    let prefix = format!("k8s:enc:aesgcm:v1:{first_key}:");
    assert!(
        db_row.starts_with(prefix.as_bytes()),
        "{:?}",
        String::from_utf8_lossy(&db_row[..40.min(db_row.len())])
    );
    r.stop().await;

    // Readable after a restart (without the flag: once enabled it stays on).
    let _ = open_raw(&dir).await;
    let r = start(&dir, false).await;
    assert_eq!(password(&r.client, "db").await, MARKER);
    let api: Api<Secret> = Api::namespaced(r.client.clone(), "default");
    api.create(
        &PostParams::default(),
        &secret("later", "written-after-restart"),
    )
    .await
    .unwrap();
    r.stop().await;
    assert!(!all_rows_contain(
        &dir,
        base64_of("written-after-restart").as_bytes()
    ));

    // rotate-keys: a new current key, every Secret rewritten under it, the old key gone.
    let raw = open_raw(&dir).await;
    let (new_key, n) = encryption::rotate_keys(&dir, raw.clone()).await.unwrap();
    assert_eq!(n, 3);
    assert_ne!(new_key, first_key);
    let status = encryption::status(&dir, raw.as_ref()).await.unwrap();
    assert_eq!(status.secrets_by_key, vec![(new_key.clone(), 3)]);
    drop(raw);
    let cfg = Config::load(&dir).unwrap().unwrap();
    assert_eq!(
        cfg.keys.iter().map(|k| k.0.clone()).collect::<Vec<_>>(),
        vec![new_key.clone()]
    );
    for (key, value) in raw_secret_rows(&dir) {
        assert!(
            value.starts_with(format!("k8s:enc:aesgcm:v1:{new_key}:").as_bytes()),
            "{key} is not under the new key"
        );
    }
    // Rotation also drops the history: no old plaintext or old-key ciphertext is left.
    assert!(!all_rows_contain(&dir, old_b64.as_bytes()));
    assert!(!all_rows_contain(
        &dir,
        format!("k8s:enc:aesgcm:v1:{first_key}:").as_bytes()
    ));

    let r = start(&dir, false).await;
    assert_eq!(password(&r.client, "db").await, MARKER);
    assert_eq!(password(&r.client, "old").await, "plain-before");
    assert_eq!(password(&r.client, "later").await, "written-after-restart");

    // File modes: private dirs, private files.
    assert_eq!(mode(&dir.join("server")), 0o700);
    assert_eq!(mode(&dir.join("server/tls")), 0o700);
    assert_eq!(mode(&dir.join("server/cred")), 0o700);
    for f in [
        "server/state.db",
        "server/state.db-wal",
        "server/state.db-shm",
        "server/state.db.lock",
        "server/state.db.reserve",
        "server/admin-token",
        "server/cred/encryption-config.json",
        "server/tls/ca.key",
        "server/tls/ca.crt",
        "server/tls/server.key",
        "server/tls/server.crt",
        "node-token",
        "kubeconfig.yaml",
    ] {
        assert_eq!(mode(&dir.join(f)), 0o600, "{f}");
    }
    r.stop().await;
}

fn base64_of(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_or_moved_ciphertext_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = Config::ensure(&dir, true).unwrap().unwrap();
    let t = encryption::Transformer::new(&cfg).unwrap();
    let key = "/registry/core/secrets/default/a";
    let sealed = t.seal(key, b"{\"v\":1}".to_vec()).unwrap();
    assert_eq!(t.open(key, sealed.clone()).unwrap(), b"{\"v\":1}");
    // Another Secret's key is other authenticated data: moving a value does not work.
    assert!(t
        .open("/registry/core/secrets/default/b", sealed.clone())
        .is_err());
    let mut flipped = sealed.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    assert!(t.open(key, flipped).is_err());
    // Other resources are never touched.
    assert_eq!(
        t.seal("/registry/core/configmaps/default/a", b"x".to_vec())
            .unwrap(),
        b"x"
    );
}
