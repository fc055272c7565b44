//! The etcd backend (owned by the etcd work; filled in there).

use crate::{Result, StoreError};

/// How to reach an etcd cluster (k3s's `--datastore-*` flags).
#[derive(Debug, Clone, Default)]
pub struct EtcdOptions {
    /// Client URLs, e.g. `https://10.0.0.1:2379` (several for a cluster).
    pub endpoints: Vec<String>,
    /// PEM CA bundle verifying the members' serving certificates.
    pub ca_file: Option<std::path::PathBuf>,
    /// PEM client certificate and key for etcd's client-cert authentication.
    pub cert_file: Option<std::path::PathBuf>,
    pub key_file: Option<std::path::PathBuf>,
}

/// A [`crate::Store`] on an etcd v3 cluster.
pub struct EtcdStore {
    _options: EtcdOptions,
}

/// Connects to the cluster and returns the store a server uses: the etcd backend behind the
/// server's watch cache (one etcd watch per server, fanned out in process).
pub async fn connect(options: EtcdOptions) -> Result<std::sync::Arc<dyn crate::Store>> {
    let _ = EtcdStore {
        _options: options.clone(),
    };
    Err(StoreError::Unsupported(format!(
        "etcd backend ({:?}): not implemented yet",
        options.endpoints
    )))
}
