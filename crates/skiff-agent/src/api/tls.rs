//! The agent API's TLS material: a self-signed certificate generated with rcgen on first start
//! into `<data-dir>/agent/tls/` and reused afterwards, so the fingerprint the node publishes
//! stays stable across restarts.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
use sha2::{Digest, Sha256};

use super::other;
use crate::Result;

pub(crate) struct Material {
    cert_pem: String,
    key_pem: String,
}

fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("agent").join("tls")
}

fn write_private(path: &Path, data: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| other(format!("writing {}: {e}", tmp.display())))?;
    f.write_all(data.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| other(format!("writing {}: {e}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(|e| other(format!("writing {}: {e}", path.display())))
}

// Serializes first-start generation between `cert_fingerprint` and `serve` in one process.
static GENERATE: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Loads or creates the certificate and key.
pub(crate) fn ensure(data_dir: &Path) -> Result<Material> {
    let _guard = GENERATE.lock().unwrap_or_else(|e| e.into_inner());
    let d = dir(data_dir);
    let (cert_path, key_path) = (d.join("agent.crt"), d.join("agent.key"));
    if let (Ok(cert_pem), Ok(key_pem)) = (
        std::fs::read_to_string(&cert_path),
        std::fs::read_to_string(&key_path),
    ) {
        return Ok(Material { cert_pem, key_pem });
    }
    std::fs::create_dir_all(&d).map_err(|e| other(format!("creating {}: {e}", d.display())))?;
    let mut sans = vec!["127.0.0.1".to_string(), "localhost".to_string()];
    if let Ok(host) = nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()) {
        let host = host.trim();
        if !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        {
            sans.push(host.to_string());
        }
    }
    let gen = |e: rcgen::Error| other(format!("generating the agent certificate: {e}"));
    let mut params = CertificateParams::new(sans).map_err(gen)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "skiff-agent");
    params.distinguished_name = dn;
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2124, 1, 1);
    let key = KeyPair::generate().map_err(gen)?;
    let cert = params.self_signed(&key).map_err(gen)?;
    let material = Material {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    };
    write_private(&key_path, &material.key_pem)?;
    write_private(&cert_path, &material.cert_pem)?;
    Ok(material)
}

impl Material {
    fn cert_der(&self) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>> {
        rustls_pemfile::certs(&mut self.cert_pem.as_bytes())
            .collect::<std::result::Result<Vec<_>, _>>()
            .ok()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| other("invalid agent certificate in agent/tls/agent.crt"))
    }

    /// The rustls server configuration (ring provider, HTTP/1.1 only so upgrades work).
    pub(crate) fn server_config(&self) -> Result<rustls::ServerConfig> {
        let certs = self.cert_der()?;
        let key = rustls_pemfile::private_key(&mut self.key_pem.as_bytes())
            .ok()
            .flatten()
            .ok_or_else(|| other("invalid agent key in agent/tls/agent.key"))?;
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

/// The lowercase hex SHA-256 of the agent API certificate (DER), creating the certificate on
/// first use. Publish it in the Node annotation [`super::CERT_ANNOTATION`].
pub fn cert_fingerprint(data_dir: &Path) -> Result<String> {
    let material = ensure(data_dir)?;
    let certs = material.cert_der()?;
    let digest = Sha256::digest(certs[0].as_ref());
    Ok(digest.iter().map(|b| format!("{b:02x}")).collect())
}
