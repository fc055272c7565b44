//! Reaching an extension API server: the APIService's Service resolved to one ready endpoint
//! (pod IP:targetPort — the API server runs on the host and cannot count on ClusterIP routing
//! there, the same choice as upstream's `--enable-aggregator-routing`), and TLS that verifies
//! the server as `<service>.<namespace>.svc` against `caBundle` (or not at all with
//! `insecureSkipTLSVerify`) while presenting the front-proxy client certificate.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use serde_json::Value;

use super::certs::FrontProxy;
use crate::keys::decode;
use crate::AppState;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why an APIService's service cannot be reached: the Available condition's reason and message.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct NotReady {
    pub(crate) reason: &'static str,
    pub(crate) message: String,
}

/// Where an APIService's requests go.
pub(crate) struct Target {
    pub(crate) addr: SocketAddr,
    /// `<service>.<namespace>.svc`: the TLS server name and the Host header.
    pub(crate) host: String,
    pub(crate) service_port: i64,
}

async fn get(st: &AppState, key: &str) -> Option<Value> {
    let kv = st.store.get(key).await.ok()??;
    decode(&kv).ok()
}

/// Resolves `spec.service` of an APIService to a ready endpoint, as upstream's availability
/// controller checks it (service, port, endpoints with that port name).
pub(crate) async fn resolve(st: &AppState, apiservice: &Value) -> Result<Target, NotReady> {
    let svc_ref = apiservice.pointer("/spec/service").unwrap_or(&Value::Null);
    let ns = svc_ref["namespace"].as_str().unwrap_or("");
    let name = svc_ref["name"].as_str().unwrap_or("");
    let port = svc_ref["port"].as_i64().unwrap_or(443);
    let Some(svc) = get(st, &format!("/registry/core/services/{ns}/{name}")).await else {
        return Err(NotReady {
            reason: "ServiceNotFound",
            message: format!("service/{name} in {ns:?} is not present"),
        });
    };
    let ports = svc
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let Some(sp) = ports.iter().find(|p| p["port"].as_i64() == Some(port)) else {
        return Err(NotReady {
            reason: "ServicePortError",
            message: format!("service/{name} in {ns:?} is not listening on port {port}"),
        });
    };
    let port_name = sp["name"].as_str().unwrap_or("").to_string();
    let Some(eps) = get(st, &format!("/registry/core/endpoints/{ns}/{name}")).await else {
        return Err(NotReady {
            reason: "EndpointsNotFound",
            message: format!("cannot find endpoints for service/{name} in {ns:?}"),
        });
    };
    let mut candidates = Vec::new();
    for subset in eps["subsets"].as_array().into_iter().flatten() {
        let Some(ep_port) = subset["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"].as_str().unwrap_or("") == port_name)
            .and_then(|p| p["port"].as_u64())
            .and_then(|p| u16::try_from(p).ok())
        else {
            continue;
        };
        for a in subset["addresses"].as_array().into_iter().flatten() {
            if let Some(ip) = a["ip"].as_str().and_then(|s| s.parse::<IpAddr>().ok()) {
                candidates.push(SocketAddr::new(ip, ep_port));
            }
        }
    }
    if candidates.is_empty() {
        return Err(NotReady {
            reason: "MissingEndpoints",
            message: format!(
                "endpoints for service/{name} in {ns:?} have no addresses with port name {port_name:?}"
            ),
        });
    }
    // Spread requests over ready endpoints as the Service would.
    let addr = candidates[rand::Rng::gen_range(&mut rand::thread_rng(), 0..candidates.len())];
    Ok(Target {
        addr,
        host: format!("{name}.{ns}.svc"),
        service_port: port,
    })
}

/// Accepts any server certificate (`insecureSkipTLSVerify: true`); signatures are still
/// checked so the handshake itself is sound.
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The TLS client configuration for one APIService.
pub(crate) fn client_config(
    apiservice: &Value,
    front: &FrontProxy,
) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let insecure = apiservice
        .pointer("/spec/insecureSkipTLSVerify")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let builder = if insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
    } else {
        let bundle = apiservice
            .pointer("/spec/caBundle")
            .and_then(Value::as_str)
            .unwrap_or("");
        let pem = base64::engine::general_purpose::STANDARD
            .decode(bundle)
            .map_err(|e| format!("spec.caBundle is not base64: {e}"))?;
        let verifier = crate::tls::BundleVerifier::from_pem(&pem)
            .map_err(|e| format!("spec.caBundle: {e}"))?;
        builder
            .dangerous()
            .with_custom_certificate_verifier(verifier)
    };
    let certs = rustls_pemfile::certs(&mut front.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("front-proxy certificate: {e}"))?;
    let key = rustls_pemfile::private_key(&mut front.key_pem.as_bytes())
        .map_err(|e| format!("front-proxy key: {e}"))?
        .ok_or_else(|| "front-proxy key: none".to_string())?;
    let mut config = builder
        .with_client_auth_cert(certs, key)
        .map_err(|e| format!("front-proxy certificate: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// One HTTP/1.1 request over a fresh verified TLS connection to `target` (upgrades kept).
pub(crate) async fn send<B>(
    target: &Target,
    config: rustls::ClientConfig,
    req: http::Request<B>,
) -> Result<http::Response<Incoming>, String>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let addr = target.addr;
    let server_name = ServerName::try_from(target.host.clone())
        .map_err(|e| format!("invalid server name {:?}: {e}", target.host))?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let connect = async {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("dial tcp {addr}: connect: {e}"))?;
        let _ = tcp.set_nodelay(true);
        connector
            .connect(server_name, tcp)
            .await
            .map_err(|e| format!("tls: {e}"))
    };
    let tls = tokio::time::timeout(CONNECT_TIMEOUT, connect)
        .await
        .map_err(|_| format!("dial tcp {addr}: i/o timeout"))??;
    crate::agent_client::request_over(TokioIo::new(tls), req, &addr.to_string()).await
}
