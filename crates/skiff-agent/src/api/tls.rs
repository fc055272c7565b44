//! The agent API's serving certificate: signed by the cluster CA, obtained from the API server
//! at start (`skiff_client::node_cert`) for the node's name and IP, and kept in memory only —
//! a restarted agent asks again, so a rotated CA or a changed node IP need no cleanup.

use std::sync::Arc;

use super::other;
use crate::Result;

/// A PEM certificate (chain) and private key the agent API serves with.
#[derive(Clone)]
pub struct ServingCert {
    pub cert_pem: String,
    pub key_pem: String,
}

impl From<skiff_client::node_cert::NodeCert> for ServingCert {
    fn from(c: skiff_client::node_cert::NodeCert) -> Self {
        ServingCert {
            cert_pem: c.cert,
            key_pem: c.key,
        }
    }
}

/// Asks the API server (as this node) for a serving certificate naming `config`'s node.
pub async fn request(client: &kube::Client, config: &crate::AgentConfig) -> Result<ServingCert> {
    let cert = skiff_client::node_cert::request(
        client,
        &config.node_name,
        &[std::net::IpAddr::V4(config.node_ip)],
    )
    .await
    .map_err(|e| other(format!("requesting the agent API certificate: {e}")))?;
    Ok(cert.into())
}

impl ServingCert {
    /// The rustls server configuration (ring provider, HTTP/1.1 only so upgrades work).
    pub(crate) fn server_config(&self) -> Result<rustls::ServerConfig> {
        let certs = rustls_pemfile::certs(&mut self.cert_pem.as_bytes())
            .collect::<std::result::Result<Vec<_>, _>>()
            .ok()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| other("invalid agent API certificate"))?;
        let key = rustls_pemfile::private_key(&mut self.key_pem.as_bytes())
            .ok()
            .flatten()
            .ok_or_else(|| other("invalid agent API key"))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = |e: rustls::Error| other(format!("agent API TLS configuration: {e}"));
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(tls)?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(tls)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}
