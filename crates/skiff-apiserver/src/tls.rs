//! TLS material: a self-signed CA and a serving certificate signed by it, generated once with
//! rcgen into `<data-dir>/server/tls/` and reused on restart (the serving certificate is re-issued
//! by the same CA when the wanted SANs change, so existing kubeconfigs stay valid).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

use crate::{io_err, ServerError};

pub(crate) struct TlsMaterial {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

// Deterministic CA parameters: rebuilding them lets us sign with the stored CA key without
// parsing the CA certificate (rcgen's parser needs an extra feature).
fn ca_params() -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "skiff-ca");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2124, 1, 1);
    Ok(params)
}

fn wanted_sans(listen: SocketAddr, extra: &[String]) -> Vec<String> {
    let mut sans = vec![
        "127.0.0.1".to_string(),
        "localhost".to_string(),
        "::1".to_string(),
    ];
    let ip = listen.ip();
    if !ip.is_unspecified() {
        sans.push(ip.to_string());
    }
    if let Ok(host) = nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()) {
        let host = host.trim();
        if !host.is_empty() {
            sans.push(host.to_string());
        }
    }
    sans.extend(extra.iter().cloned());
    sans.sort();
    sans.dedup();
    sans
}

fn write_private(path: &Path, data: &str) -> Result<(), ServerError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_err(format!("writing {}", tmp.display())))?;
    f.write_all(data.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(io_err(format!("writing {}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(io_err(format!("writing {}", path.display())))
}

fn read(path: &Path) -> Result<Option<String>, ServerError> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::read_to_string(path) {
        Ok(s) => {
            // Files an older version wrote 0644 become private.
            if std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o077 != 0) {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                    .map_err(io_err(format!("restricting {}", path.display())))?;
            }
            Ok(Some(s))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(format!("reading {}", path.display()))(e)),
    }
}

/// Loads or creates the CA and serving certificate in `dir`.
pub(crate) fn ensure(
    dir: &Path,
    listen: SocketAddr,
    extra: &[String],
) -> Result<TlsMaterial, ServerError> {
    crate::private_dir(dir)?;
    let p = |n: &str| -> PathBuf { dir.join(n) };
    let (ca_pem, ca_key_pem) = match (read(&p("ca.crt"))?, read(&p("ca.key"))?) {
        (Some(c), Some(k)) => (c, k),
        _ => {
            let key = KeyPair::generate()?;
            let cert = ca_params()?.self_signed(&key)?;
            let (c, k) = (cert.pem(), key.serialize_pem());
            write_private(&p("ca.key"), &k)?;
            write_private(&p("ca.crt"), &c)?;
            // A new CA invalidates any old serving certificate.
            let _ = std::fs::remove_file(p("server.crt"));
            (c, k)
        }
    };
    let sans = wanted_sans(listen, extra);
    let sans_line = sans.join(",");
    let existing = (
        read(&p("server.crt"))?,
        read(&p("server.key"))?,
        read(&p("server.sans"))?,
    );
    if let (Some(cert_pem), Some(key_pem), Some(old_sans)) = existing {
        if old_sans.trim() == sans_line {
            return Ok(TlsMaterial {
                ca_pem,
                cert_pem,
                key_pem,
            });
        }
    }
    let ca_key = KeyPair::from_pem(&ca_key_pem)?;
    let issuer = Issuer::new(ca_params()?, ca_key);
    let mut params = CertificateParams::new(sans.clone())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "skiff-apiserver");
    params.distinguished_name = dn;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2124, 1, 1);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    let (cert_pem, key_pem) = (cert.pem(), key.serialize_pem());
    write_private(&p("server.key"), &key_pem)?;
    write_private(&p("server.crt"), &cert_pem)?;
    write_private(&p("server.sans"), &sans_line)?;
    Ok(TlsMaterial {
        ca_pem,
        cert_pem,
        key_pem,
    })
}

impl TlsMaterial {
    /// The rustls server configuration (ring provider, HTTP/1.1 only so upgrades work).
    pub(crate) fn server_config(&self) -> Result<rustls::ServerConfig, ServerError> {
        let bad = || ServerError::BadPem(PathBuf::from("server.crt/server.key"));
        let certs = rustls_pemfile::certs(&mut self.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| bad())?;
        let key = rustls_pemfile::private_key(&mut self.key_pem.as_bytes())
            .map_err(|_| bad())?
            .ok_or_else(bad)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(certs, key)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}
