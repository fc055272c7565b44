//! `skiff kubeconfig`: a kubeconfig for a user and groups with a client certificate signed
//! directly by the cluster CA, minted on the server machine from `<data-dir>/server/tls/ca.key`
//! (as k3s's helpers read its CA). Nothing is stored: the certificate is valid until it expires.

use std::path::Path;
use std::time::Duration;

use super::{cert, kubeconfig_text, KubeconfigUser};
use crate::ServerError;

/// The longest lifetime a minted certificate may have (the CSR signers' maximum too).
pub const MAX_TTL: Duration = crate::CLIENT_CERT_TTL;

/// Why a kubeconfig could not be minted.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    #[error("{0}")]
    Server(#[from] ServerError),
    #[error("{0}")]
    X509(#[from] super::x509::X509Error),
    #[error("no cluster CA in {0} (run this on a server, with its --data-dir)")]
    NoCa(String),
    #[error("a user name is required")]
    NoUser,
    #[error("the lifetime must be between 1s and {}h", MAX_TTL.as_secs() / 3600)]
    BadTtl,
    #[error("no API server address: pass --server or start the server once so {0} exists")]
    NoServer(String),
}

/// The `server:` URL of the admin kubeconfig the server wrote.
pub fn admin_server_url(data_dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(data_dir.join("kubeconfig.yaml")).ok()?;
    text.lines()
        .find_map(|l| l.trim().strip_prefix("server: "))
        .map(|s| s.trim().to_string())
}

/// A kubeconfig (context, cluster and user all named `user`) whose client certificate names
/// `user` (CN) in `groups` (O), valid for `ttl` from now.
pub fn user_kubeconfig(
    data_dir: &Path,
    server: Option<&str>,
    user: &str,
    groups: &[String],
    ttl: Duration,
) -> Result<String, MintError> {
    if user.is_empty() {
        return Err(MintError::NoUser);
    }
    if ttl.is_zero() || ttl > MAX_TTL {
        return Err(MintError::BadTtl);
    }
    let tls = data_dir.join("server").join("tls");
    let (Some(ca_pem), Some(ca_key)) = (
        crate::tls::read(&tls.join("ca.crt"))?,
        crate::tls::read(&tls.join("ca.key"))?,
    ) else {
        return Err(MintError::NoCa(tls.display().to_string()));
    };
    let server = match server {
        Some(s) => s.to_string(),
        None => admin_server_url(data_dir).ok_or_else(|| {
            MintError::NoServer(data_dir.join("kubeconfig.yaml").display().to_string())
        })?,
    };
    let ca = super::x509::CaSigner::new(&ca_pem, &ca_key)?;
    let c = cert::issue(&ca, user, groups, ttl)?;
    Ok(kubeconfig_text(
        &server,
        &ca_pem,
        user,
        KubeconfigUser::Cert(&c),
    ))
}
