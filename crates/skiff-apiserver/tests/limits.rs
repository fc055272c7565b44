//! Request limits against a real HTTPS server (issue 10, items 4 and 11): upstream's in-flight
//! limits (429 + Retry-After, watches not counted) and the stored-object size cap (413), with
//! JSON patches that try to amplify a small body into a huge object.

mod common;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use skiff_apiserver::{Server, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Srv {
    dir: tempfile::TempDir,
    addr: std::net::SocketAddr,
    admin: String,
    /// A plain (non-master) user: the connector's client certificate, no token.
    user: String,
    connector: tokio_rustls::TlsConnector,
    /// Presents the plain user's certificate (a verified certificate wins over any token).
    user_connector: tokio_rustls::TlsConnector,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// A client certificate for a plain user, signed with the cluster CA's key (the CA's subject
/// is fixed, so its parameters can be rebuilt here).
fn plain_user_cert(
    dir: &std::path::Path,
) -> (
    Vec<rustls::pki_types::CertificateDer<'static>>,
    rustls::pki_types::PrivateKeyDer<'static>,
) {
    let ca_key = std::fs::read_to_string(dir.join("server/tls/ca.key")).unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, "skiff-ca");
    ca.distinguished_name = dn;
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let issuer = rcgen::Issuer::new(ca, rcgen::KeyPair::from_pem(&ca_key).unwrap());
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, "limits-user");
    p.distinguished_name = dn;
    p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let cert = p.signed_by(&key, &issuer).unwrap();
    (
        vec![cert.der().clone()],
        rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
    )
}

async fn start(tune: impl FnOnce(&mut ServerConfig)) -> Srv {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(skiff_store::SqliteStore::open(&dir.path().join("state.db")).unwrap());
    let mut config = ServerConfig::new(dir.path(), "127.0.0.1:0".parse().unwrap());
    tune(&mut config);
    let server = Server::bind(config, store).await.unwrap();
    let addr = server.local_addr();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(async {
        let _ = rx.await;
    }));
    let admin = std::fs::read_to_string(dir.path().join("server/admin-token"))
        .unwrap()
        .trim()
        .to_string();
    // The join token only bootstraps (403 here); requests go as the certificate's user.
    let user = "no-token".to_string();
    let (user_certs, user_key) = plain_user_cert(dir.path());
    let ca = std::fs::read(dir.path().join("server/tls/ca.crt")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut &ca[..]) {
        roots.add(c.unwrap()).unwrap();
    }
    let builder = || {
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots.clone())
    };
    let config = builder().with_no_client_auth();
    let user_config = builder()
        .with_client_auth_cert(user_certs, user_key)
        .unwrap();
    Srv {
        dir,
        addr,
        admin,
        user,
        connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
        user_connector: tokio_rustls::TlsConnector::from(Arc::new(user_config)),
        _stop: tx,
    }
}

type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

struct Resp {
    status: u16,
    headers: String,
    body: Vec<u8>,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    fn header(&self, name: &str) -> Option<String> {
        self.headers.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }
}

impl Srv {
    async fn conn(&self) -> Tls {
        self.conn_with(&self.connector).await
    }

    async fn conn_with(&self, connector: &tokio_rustls::TlsConnector) -> Tls {
        let tcp = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        connector.connect(name, tcp).await.unwrap()
    }

    /// Sends the head (and `body`, which may be shorter than `content_length`) and returns the
    /// open connection.
    async fn send(
        &self,
        method: &str,
        path: &str,
        token: &str,
        content_type: &str,
        body: &[u8],
        content_length: usize,
    ) -> Tls {
        let mut c = if token == self.user {
            self.conn_with(&self.user_connector).await
        } else {
            self.conn().await
        };
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nContent-Type: {content_type}\r\nAccept: application/json\r\nContent-Length: {content_length}\r\nConnection: close\r\n\r\n"
        );
        c.write_all(head.as_bytes()).await.unwrap();
        c.write_all(body).await.unwrap();
        c.flush().await.unwrap();
        c
    }

    async fn request(
        &self,
        method: &str,
        path: &str,
        token: &str,
        content_type: &str,
        body: &[u8],
    ) -> Resp {
        let c = self
            .send(method, path, token, content_type, body, body.len())
            .await;
        read_resp(c).await
    }

    async fn admin_json(&self, method: &str, path: &str, ct: &str, body: &Value) -> Resp {
        let bytes = serde_json::to_vec(body).unwrap();
        self.request(method, path, &self.admin.clone(), ct, &bytes)
            .await
    }
}

async fn read_resp(mut c: Tls) -> Resp {
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), c.read_to_end(&mut raw))
        .await
        .expect("response in time")
        .ok();
    let text_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&raw[..text_end]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut body = raw[text_end + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    Resp {
        status,
        headers: head,
        body,
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let n = usize::from_str_radix(std::str::from_utf8(&b[..eol]).unwrap_or("0").trim(), 16)
            .unwrap_or(0);
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + n]);
        b = &b[eol + 2 + n + 2..];
    }
}

const CM_PATH: &str = "/api/v1/namespaces/default/configmaps";

#[tokio::test]
async fn inflight_limit_answers_429_with_retry_after_and_watches_are_not_counted() {
    let s = start(|c| {
        c.max_requests_inflight = 1;
        c.max_mutating_requests_inflight = 1;
    })
    .await;
    let cm = |name: &str| serde_json::to_vec(&json!({"metadata": {"name": name}})).unwrap();

    // Watches are long-running: three open at once do not use up a read-only pool of one.
    let mut watches = Vec::new();
    for _ in 0..3 {
        watches.push(
            s.send(
                "GET",
                "/api/v1/namespaces?watch=true",
                &s.user,
                "application/json",
                b"",
                0,
            )
            .await,
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..2 {
        let r = s
            .request("GET", CM_PATH, &s.user, "application/json", b"")
            .await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    }

    // One mutating request in flight: its body never finishes arriving.
    let body = cm("held");
    let held = s
        .send(
            "POST",
            CM_PATH,
            &s.user,
            "application/json",
            &body[..5],
            body.len(),
        )
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = s
        .request("POST", CM_PATH, &s.user, "application/json", &cm("second"))
        .await;
    assert_eq!(r.status, 429, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("Retry-After").as_deref(), Some("1"));
    assert_eq!(
        String::from_utf8_lossy(&r.body),
        "Too many requests, please try again later.\n"
    );
    // Reads have their own pool.
    let r = s
        .request("GET", CM_PATH, &s.user, "application/json", b"")
        .await;
    assert_eq!(r.status, 200);
    // The cluster admin (upstream's system:masters) is never refused.
    let r = s
        .request("POST", CM_PATH, &s.admin, "application/json", &cm("admin"))
        .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    // Once the held request ends, the pool has room again.
    drop(held);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = s
        .request("POST", CM_PATH, &s.user, "application/json", &cm("third"))
        .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    drop(watches);
}

fn deployment(name: &str, args: Vec<String>) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "busybox", "args": args}]}}}})
}

const DEPLOY_PATH: &str = "/apis/apps/v1/namespaces/default/deployments";

#[tokio::test]
async fn json_patch_of_repeated_copies_is_refused_and_the_object_is_unchanged() {
    let s = start(|_| {}).await;
    let r = s
        .admin_json(
            "POST",
            DEPLOY_PATH,
            "application/json",
            &deployment("web", vec!["a".into()]),
        )
        .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let before = r.json();

    // The attack: a ~7 KB patch whose copies each double the containers list.
    let mut ops: Vec<Value> = (0..90)
        .map(|_| json!({"op": "test", "path": "/metadata/name", "value": "web"}))
        .collect();
    for _ in 0..16 {
        ops.push(
            json!({"op": "copy", "from": "/spec/template/spec/containers",
            "path": "/spec/template/spec/containers/0/args/-"}),
        );
    }
    let patch = serde_json::to_vec(&ops).unwrap();
    assert!((6_000..9_000).contains(&patch.len()), "{}", patch.len());
    let started = std::time::Instant::now();
    let r = s
        .request(
            "PATCH",
            &format!("{DEPLOY_PATH}/web"),
            &s.admin,
            "application/json-patch+json",
            &patch,
        )
        .await;
    assert_eq!(r.status, 413, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["message"], "etcdserver: request is too large");
    assert_eq!(r.json()["reason"], "RequestEntityTooLarge");
    eprintln!("refused in {:?}", started.elapsed());

    let r = s
        .request(
            "GET",
            &format!("{DEPLOY_PATH}/web"),
            &s.admin,
            "application/json",
            b"",
        )
        .await;
    let after = r.json();
    assert_eq!(
        after["metadata"]["resourceVersion"],
        before["metadata"]["resourceVersion"]
    );
    assert_eq!(after["spec"], before["spec"]);

    // Upstream's cap on the number of operations.
    let many: Vec<Value> = (0..10_001)
        .map(|_| json!({"op": "test", "path": "/metadata/name", "value": "web"}))
        .collect();
    let r = s
        .admin_json(
            "PATCH",
            &format!("{DEPLOY_PATH}/web"),
            "application/json-patch+json",
            &json!(many),
        )
        .await;
    assert_eq!(r.status, 413, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        r.json()["message"],
        "Request entity too large: The allowed maximum operations in a JSON patch is 10000, got 10001"
    );

    // Copies that never grow the object much still may not copy more than 3 MiB in total.
    let big = "x".repeat(200 * 1024);
    let r = s
        .admin_json(
            "PATCH",
            &format!("{DEPLOY_PATH}/web"),
            "application/merge-patch+json",
            &json!({"metadata": {"annotations": {"big": big}}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let rv = r.json()["metadata"]["resourceVersion"].clone();
    let mut churn = Vec::new();
    for _ in 0..16 {
        churn.push(json!({"op": "copy", "from": "/metadata/annotations/big", "path": "/metadata/annotations/big2"}));
        churn.push(json!({"op": "remove", "path": "/metadata/annotations/big2"}));
    }
    let r = s
        .admin_json(
            "PATCH",
            &format!("{DEPLOY_PATH}/web"),
            "application/json-patch+json",
            &json!(churn),
        )
        .await;
    assert_eq!(r.status, 422, "{}", String::from_utf8_lossy(&r.body));
    let text = String::from_utf8_lossy(&r.body);
    assert!(
        text.contains("Unable to complete the copy, the accumulated size increase of copy is"),
        "{text}"
    );
    let r = s
        .request(
            "GET",
            &format!("{DEPLOY_PATH}/web"),
            &s.admin,
            "application/json",
            b"",
        )
        .await;
    assert_eq!(r.json()["metadata"]["resourceVersion"], rv);
}

#[tokio::test]
async fn objects_over_the_store_limit_are_refused_on_every_write_path() {
    let s = start(|_| {}).await;
    let arg = "y".repeat(1000);
    let huge: Vec<String> = (0..1700).map(|_| arg.clone()).collect();
    // create
    let r = s
        .admin_json(
            "POST",
            DEPLOY_PATH,
            "application/json",
            &deployment("big", huge.clone()),
        )
        .await;
    assert_eq!(r.status, 413, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["message"], "etcdserver: request is too large");
    let r = s
        .request(
            "GET",
            &format!("{DEPLOY_PATH}/big"),
            &s.admin,
            "application/json",
            b"",
        )
        .await;
    assert_eq!(r.status, 404);

    let r = s
        .admin_json(
            "POST",
            DEPLOY_PATH,
            "application/json",
            &deployment("web", vec!["a".into()]),
        )
        .await;
    assert_eq!(r.status, 201);
    let rv = r.json()["metadata"]["resourceVersion"].clone();
    let path = format!("{DEPLOY_PATH}/web");
    let grow = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox", "args": huge}]}}}});
    // merge patch, strategic merge patch, apply, update and the status subresource
    for (method, p, ct, body) in [
        (
            "PATCH",
            path.clone(),
            "application/merge-patch+json",
            grow.clone(),
        ),
        (
            "PATCH",
            path.clone(),
            "application/strategic-merge-patch+json",
            grow.clone(),
        ),
        (
            "PATCH",
            format!("{path}?fieldManager=t&force=true"),
            "application/apply-patch+yaml",
            deployment("web", huge.clone()),
        ),
        (
            "PUT",
            path.clone(),
            "application/json",
            deployment("web", huge.clone()),
        ),
        (
            "PATCH",
            format!("{path}/status"),
            "application/merge-patch+json",
            json!({"status": {"conditions": [{"type": "Available", "status": "True",
                "message": "z".repeat(1_700_000)}]}}),
        ),
    ] {
        let r = s.admin_json(method, &p, ct, &body).await;
        assert_eq!(
            r.status,
            413,
            "{method} {p} ({ct}): {}",
            String::from_utf8_lossy(&r.body)
        );
    }
    let r = s
        .request("GET", &path, &s.admin, "application/json", b"")
        .await;
    assert_eq!(r.json()["metadata"]["resourceVersion"], rv);
    let _ = &s.dir;
}
