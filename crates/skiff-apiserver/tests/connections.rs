//! Connection exhaustion (issue 10, item 4), for real: thousands of idle TCP connections,
//! half-sent TLS handshakes and TLS connections with half-sent headers against a real server
//! whose process has a small open-file limit. A real client must keep getting answers quickly,
//! and the idle connections must be closed by the timeouts.
//!
//! Its own test binary: it lowers RLIMIT_NOFILE for the whole process.

mod common;

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams};
use skiff_apiserver::{Server, ServerConfig};
use tokio::io::AsyncWriteExt;

const CAP: usize = 1000;
const RAW: usize = 1000;
const HALF_HELLO: usize = 1000;
const HALF_HEADERS: usize = 200;

fn tls_connector(dir: &std::path::Path) -> tokio_rustls::TlsConnector {
    let ca = std::fs::read(dir.join("server/tls/ca.crt")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile_certs(&ca) {
        roots.add(cert).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

fn rustls_pemfile_certs(pem: &[u8]) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    rustls_pemfile::certs(&mut &pem[..])
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

async fn timed_list(client: &kube::Client) -> Duration {
    let started = Instant::now();
    let api: Api<Namespace> = Api::all(client.clone());
    let list = tokio::time::timeout(Duration::from_secs(10), api.list(&ListParams::default()))
        .await
        .expect("the client got no answer within 10 s")
        .expect("list namespaces");
    assert!(list.items.len() >= 4);
    started.elapsed()
}

/// True when the server closed the socket (EOF or reset) within `wait`.
fn closed_by_server(mut s: &std::net::TcpStream, wait: Duration) -> bool {
    s.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 256];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue, // a TLS alert or an HTTP error: keep reading until EOF
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slowloris_cannot_lock_out_clients_and_idle_connections_are_closed() {
    // A small descriptor budget: without a cap the server runs out of descriptors (and the
    // client with it) long before the attackers do.
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, 4096.min(hard), hard).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(skiff_store::SqliteStore::open(&dir.path().join("state.db")).unwrap());
    let mut config = ServerConfig::new(dir.path(), "127.0.0.1:0".parse().unwrap());
    config.max_connections = CAP;
    config.tls_handshake_timeout = Duration::from_secs(2);
    config.header_read_timeout = Duration::from_secs(2);
    config.idle_timeout = Duration::from_secs(3);
    let server = Server::bind(config, store).await.unwrap();
    let addr = server.local_addr();
    let count = server.connections();
    let kubeconfig = server.kubeconfig_path().to_path_buf();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));
    let client = common::client_from(&kubeconfig).await;
    let before = timed_list(&client).await;

    // 1. Silent TCP connections (never start the handshake).
    let mut raw = Vec::new();
    for _ in 0..RAW {
        raw.push(std::net::TcpStream::connect(addr).expect("connect"));
    }
    // 2. Half a TLS ClientHello: a record header announcing more than is ever sent.
    let mut hello = Vec::new();
    for _ in 0..HALF_HELLO {
        let mut s = std::net::TcpStream::connect(addr).expect("connect");
        s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00])
            .expect("send");
        hello.push(s);
    }
    // 3. Finished TLS handshakes that then send half a request head.
    let connector = tls_connector(dir.path());
    let mut half = Vec::new();
    for _ in 0..HALF_HEADERS {
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        // One evicted by later attackers before its handshake finished is fine.
        if let Ok(mut tls) = connector.connect(name, tcp).await {
            tls.write_all(b"GET /api/v1/namespaces HTTP/1.1\r\nHost: x\r\n")
                .await
                .expect("send");
            half.push(tls);
        }
    }
    assert!(
        count.get() <= CAP,
        "the listener holds {} connections, over its cap of {CAP}",
        count.get()
    );

    // A real client still gets answers quickly, repeatedly.
    let mut during = Vec::new();
    for _ in 0..5 {
        during.push(timed_list(&client).await);
    }
    let worst = during.iter().max().copied().unwrap_or_default();
    eprintln!("list namespaces: {before:?} before, worst {worst:?} during the flood");
    assert!(
        worst < Duration::from_secs(1),
        "the client waited {worst:?} during the flood"
    );

    // The attackers get nothing: the timeouts close every one of them.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while count.get() > 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        count.get() <= 1,
        "{} connections still open after the timeouts",
        count.get()
    );
    let open_raw = raw
        .iter()
        .step_by(50)
        .filter(|s| !closed_by_server(s, Duration::from_millis(200)))
        .count();
    let open_hello = hello
        .iter()
        .step_by(50)
        .filter(|s| !closed_by_server(s, Duration::from_millis(200)))
        .count();
    assert_eq!(open_raw, 0, "silent TCP connections were left open");
    assert_eq!(open_hello, 0, "half handshakes were left open");
    for tls in half.iter_mut() {
        let mut buf = Vec::new();
        let read = tokio::time::timeout(
            Duration::from_secs(2),
            tokio::io::AsyncReadExt::read_to_end(tls, &mut buf),
        )
        .await;
        assert!(
            read.is_ok(),
            "a connection with half-sent headers was left open"
        );
    }
    // And the server still serves.
    timed_list(&client).await;
    let _ = stop.send(());
    let _ = serving.await;
}
