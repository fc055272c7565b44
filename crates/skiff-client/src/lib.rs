//! skiff-client owns what every API client of skiff shares, whatever process it runs in:
//! building a `kube::Client` from a kubeconfig or from a node token ([`config`]), the core/v1
//! event recorder ([`events`]), the controller driver ([`driver`]: reflector-fed trigger
//! streams into kube-runtime's applier), the node agent's serving-certificate request to the
//! cluster CA ([`node_cert`]), the node's own client certificate, minted with the join token
//! and renewed behind a client that never needs rebuilding ([`node_identity`]), and the HTTPS accept/handshake/drain loop both servers use
//! ([`https`]: it lives here, the lowest crate the API server and the agent both depend on),
//! the atomic private-file write ([`fs`]), and the Prometheus pieces every process shares
//! ([`metrics`]). Lean on purpose: kube, k8s-openapi, tokio, futures — never
//! the API server or the store.

pub mod config;
pub mod driver;
pub mod events;
pub mod fs;
pub mod https;
pub mod metrics;
pub mod node_cert;
pub mod node_identity;

/// Errors building a client.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading kubeconfig {path}: {source}")]
    Kubeconfig {
        path: std::path::PathBuf,
        source: kube::config::KubeconfigError,
    },
    #[error("invalid server URL {url:?}: {source}")]
    BadUrl {
        url: String,
        source: http::uri::InvalidUri,
    },
    #[error("reading the CA certificate: {0}")]
    BadCa(String),
    #[error("creating the API client: {0}")]
    Kube(#[from] kube::Error),
}
