//! The API server's client for node agents (logs, exec): HTTPS to the agent API with the node
//! token as bearer token. The agent's serving certificate must be signed by the cluster CA and
//! name the address dialed (the node's InternalIP), like the kubelet's serving certificate.
//! An agent in the same process (`skiff server`'s own node) is served over an in-memory pipe
//! instead: no TCP, no TLS, the same router and authentication. Port-forward and cp move every
//! byte through here, and the two TLS legs cost more than the rest of the path.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a node's agent is.
pub(crate) struct Agent {
    pub ip: std::net::IpAddr,
    pub port: u16,
    /// Trusts the cluster CA only (`TlsMaterial::agent_client_config`).
    pub tls: Arc<rustls::ClientConfig>,
    /// The agent's router when it runs in this process.
    pub local: Option<axum::Router>,
}

/// Bytes the in-memory pipe to a local agent buffers each way.
const LOCAL_PIPE_BUFFER: usize = 256 * 1024;

/// Sends `req` to the agent over a fresh verified TLS connection. The connection task keeps
/// running (with upgrades) until the response body or the upgraded stream is done.
pub(crate) async fn send<B>(
    agent: &Agent,
    req: http::Request<B>,
) -> Result<http::Response<Incoming>, String>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if let Some(router) = &agent.local {
        return send_local(router.clone(), req).await;
    }
    let addr = SocketAddr::new(agent.ip, agent.port);
    let connector = tokio_rustls::TlsConnector::from(agent.tls.clone());
    let connect = async {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("dial tcp {addr}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        connector
            .connect(ServerName::IpAddress(agent.ip.into()), tcp)
            .await
            .map_err(|e| format!("TLS handshake with {addr}: {e}"))
    };
    let tls = tokio::time::timeout(CONNECT_TIMEOUT, connect)
        .await
        .map_err(|_| format!("dial tcp {addr}: timed out"))??;
    request_over(TokioIo::new(tls), req, &format!("the node agent at {addr}")).await
}

/// One HTTP/1.1 request over `io`; the connection task keeps running (with upgrades) until
/// the response body or the upgraded stream is done. `peer` names the other side in errors.
pub(crate) async fn request_over<IO, B>(
    io: IO,
    req: http::Request<B>,
    peer: &str,
) -> Result<http::Response<Incoming>, String>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("HTTP handshake with {peer}: {e}"))?;
    let owned = peer.to_string();
    tokio::spawn(async move {
        if let Err(err) = conn.with_upgrades().await {
            tracing::debug!(%err, peer = %owned, "connection ended with an error");
        }
    });
    sender
        .send_request(req)
        .await
        .map_err(|e| format!("request to {peer}: {e}"))
}

/// `req` to an in-process agent over a [`tokio::io::duplex`] pipe, served by hyper like a
/// network connection (upgrades included).
async fn send_local<B>(
    router: axum::Router,
    req: http::Request<B>,
) -> Result<http::Response<Incoming>, String>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (client_io, server_io) = tokio::io::duplex(LOCAL_PIPE_BUFFER);
    tokio::spawn(async move {
        let svc = hyper_util::service::TowerToHyperService::new(router);
        let conn = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(server_io), svc)
            .with_upgrades();
        if let Err(err) = conn.await {
            tracing::debug!(%err, "local node agent connection ended with an error");
        }
    });
    request_over(TokioIo::new(client_io), req, "the local node agent").await
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use bytes::Bytes;
    use http_body_util::{Empty, Full};

    use super::*;
    use crate::tls::{ensure, TlsMaterial};

    fn material(dir: &std::path::Path) -> TlsMaterial {
        ensure(dir, "127.0.0.1:0".parse().expect("addr"), &[]).expect("cluster CA")
    }

    /// An HTTPS server on loopback answering 200 with `cert`/`key`.
    async fn agent_with(cert_pem: &str, key_pem: &str) -> u16 {
        let certs = rustls_pemfile::certs(&mut cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .expect("certs");
        let key = rustls_pemfile::private_key(&mut key_pem.as_bytes())
            .expect("key")
            .expect("a key");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    continue;
                };
                let svc = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                        Bytes::from_static(b"ok"),
                    )))
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), svc),
                );
            }
        });
        port
    }

    async fn get(ca: &TlsMaterial, port: u16) -> Result<u16, String> {
        let agent = Agent {
            ip: IpAddr::from([127, 0, 0, 1]),
            port,
            tls: Arc::new(ca.agent_client_config().expect("client config")),
            local: None,
        };
        let req = http::Request::get("/containerLogs/default/p/c")
            .body(Empty::<Bytes>::new())
            .expect("request");
        send(&agent, req).await.map(|r| r.status().as_u16())
    }

    #[tokio::test]
    async fn agents_must_present_a_cluster_ca_certificate_for_their_ip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cluster = material(&dir.path().join("cluster"));
        let loopback = [IpAddr::from([127, 0, 0, 1])];

        // Signed by the cluster CA for the dialed IP: accepted.
        let (cert, key) = cluster.node_serving_cert("n1", &loopback).expect("cert");
        assert_eq!(get(&cluster, agent_with(&cert, &key).await).await, Ok(200));

        // Self-signed (the old scheme): refused.
        let rogue_key = rcgen::KeyPair::generate().expect("key");
        let rogue = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
            .expect("params")
            .self_signed(&rogue_key)
            .expect("self-signed");
        let port = agent_with(&rogue.pem(), &rogue_key.serialize_pem()).await;
        let err = get(&cluster, port).await.expect_err("self-signed accepted");
        assert!(err.contains("TLS handshake"), "{err}");

        // Signed by another cluster's CA: refused.
        let other = material(&dir.path().join("other"));
        let (cert, key) = other.node_serving_cert("n1", &loopback).expect("cert");
        let err = get(&cluster, agent_with(&cert, &key).await)
            .await
            .expect_err("foreign CA accepted");
        assert!(err.contains("TLS handshake"), "{err}");

        // Signed by the cluster CA but for another node's IP: refused.
        let (cert, key) = cluster
            .node_serving_cert("n2", &[IpAddr::from([10, 9, 9, 9])])
            .expect("cert");
        let err = get(&cluster, agent_with(&cert, &key).await)
            .await
            .expect_err("wrong IP accepted");
        assert!(err.contains("TLS handshake"), "{err}");
    }
}
