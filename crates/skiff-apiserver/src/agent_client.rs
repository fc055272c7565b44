//! The API server's client for node agents (logs, exec): HTTPS to the agent API with the node
//! token as bearer token, and the agent's self-signed certificate pinned by the SHA-256
//! fingerprint the node publishes in its [`CERT_ANNOTATION`] annotation.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};

/// The Node annotation with the lowercase hex SHA-256 of the agent API certificate (DER); the
/// agent's node registration sets it (`skiff_agent::api::CERT_ANNOTATION`).
pub(crate) const CERT_ANNOTATION: &str = "skiff.dev/agent-cert-sha256";

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts exactly the certificate whose fingerprint the node published (no CA, no names: the
/// agent's certificate is self-signed), but still checks the handshake signatures.
#[derive(Debug)]
struct Pinned {
    fingerprint: String,
    provider: Arc<CryptoProvider>,
}

fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if fingerprint(end_entity.as_ref()) == self.fingerprint {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "the node agent's certificate does not match its published fingerprint".into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Where a node's agent is.
pub(crate) struct Agent {
    pub ip: IpAddr,
    pub port: u16,
    pub fingerprint: String,
}

/// Sends `req` to the agent over a fresh pinned TLS connection. The connection task keeps
/// running (with upgrades) until the response body or the upgraded stream is done.
pub(crate) async fn send(
    agent: &Agent,
    req: http::Request<Empty<Bytes>>,
) -> Result<http::Response<Incoming>, String> {
    let addr = SocketAddr::new(agent.ip, agent.port);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(Pinned {
        fingerprint: agent.fingerprint.to_ascii_lowercase(),
        provider: provider.clone(),
    });
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
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
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| format!("HTTP handshake with {addr}: {e}"))?;
    tokio::spawn(async move {
        if let Err(err) = conn.with_upgrades().await {
            tracing::debug!(%err, "node agent connection ended with an error");
        }
    });
    sender
        .send_request(req)
        .await
        .map_err(|e| format!("request to the node agent at {addr}: {e}"))
}
