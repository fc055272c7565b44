//! The cluster PKI: a self-signed CA and the API server's serving certificate signed by it,
//! generated once with rcgen into `<data-dir>/server/tls/` and reused on restart (the serving
//! certificate is re-issued by the same CA when the wanted SANs change, so existing kubeconfigs
//! stay valid). The same CA signs each node agent's serving certificate ([`TlsMaterial::
//! node_serving_cert`], issued through `node_cert`), and the API server trusts exactly this CA
//! when it dials an agent ([`TlsMaterial::agent_client_config`]).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

use crate::{io_err, ServerError};

pub(crate) struct TlsMaterial {
    pub ca_pem: String,
    ca_key_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

// Deterministic CA parameters: rebuilding them lets us sign with the stored CA key without
// parsing the CA certificate (rcgen's parser needs an extra feature).
fn ca_params() -> Result<CertificateParams, rcgen::Error> {
    deterministic_ca_params("skiff-ca")
}

/// The parameters of a long-lived CA named `common_name`, the same on every call.
pub(crate) fn deterministic_ca_params(
    common_name: &str,
) -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
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
    skiff_client::fs::write_private(path, data.as_bytes())
        .map_err(io_err(format!("writing {}", path.display())))
}

pub(crate) fn read(path: &Path) -> Result<Option<String>, ServerError> {
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

/// A new key and a serving certificate for it with `sans`, signed by the CA; (cert, key) PEM.
fn issue_serving_cert(
    ca_key_pem: &str,
    sans: Vec<String>,
    common_name: &str,
) -> Result<(String, String), rcgen::Error> {
    let issuer = Issuer::new(ca_params()?, KeyPair::from_pem(ca_key_pem)?);
    let mut params = CertificateParams::new(sans)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
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
    Ok((cert.pem(), key.serialize_pem()))
}

/// Loads or creates the cluster CA in `dir` (`ca.crt`, `ca.key`); (cert, key) PEM. Also run
/// before [`ensure`] by the bootstrap step, which shares the CA between servers.
pub(crate) fn ensure_ca(dir: &Path) -> Result<(String, String), ServerError> {
    crate::private_dir(dir)?;
    let p = |n: &str| -> PathBuf { dir.join(n) };
    Ok(match (read(&p("ca.crt"))?, read(&p("ca.key"))?) {
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
    })
}

/// Loads or creates the CA and serving certificate in `dir`.
pub(crate) fn ensure(
    dir: &Path,
    listen: SocketAddr,
    extra: &[String],
) -> Result<TlsMaterial, ServerError> {
    let (ca_pem, ca_key_pem) = ensure_ca(dir)?;
    let p = |n: &str| -> PathBuf { dir.join(n) };
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
                ca_key_pem,
                cert_pem,
                key_pem,
            });
        }
    }
    let (cert_pem, key_pem) = issue_serving_cert(&ca_key_pem, sans, "skiff-apiserver")?;
    write_private(&p("server.key"), &key_pem)?;
    write_private(&p("server.crt"), &cert_pem)?;
    write_private(&p("server.sans"), &sans_line)?;
    Ok(TlsMaterial {
        ca_pem,
        ca_key_pem,
        cert_pem,
        key_pem,
    })
}

impl TlsMaterial {
    /// A serving certificate and key for the agent of node `node_name`, signed by the cluster
    /// CA, naming the node and its `addresses` (what the API server dials and verifies).
    pub(crate) fn node_serving_cert(
        &self,
        node_name: &str,
        addresses: &[IpAddr],
    ) -> Result<(String, String), rcgen::Error> {
        let mut sans: Vec<String> = addresses.iter().map(IpAddr::to_string).collect();
        sans.push(node_name.to_string());
        issue_serving_cert(&self.ca_key_pem, sans, &format!("system:node:{node_name}"))
    }

    /// The CA as a client-certificate signer.
    pub(crate) fn signer(
        &self,
    ) -> Result<crate::auth::x509::CaSigner, crate::auth::x509::X509Error> {
        crate::auth::x509::CaSigner::new(&self.ca_pem, &self.ca_key_pem)
    }

    /// A new client certificate for `user` in `groups`, valid for `ttl`.
    pub(crate) fn client_cert(
        &self,
        user: &str,
        groups: &[String],
        ttl: std::time::Duration,
    ) -> Result<crate::auth::cert::ClientCert, crate::auth::x509::X509Error> {
        crate::auth::cert::issue(&self.signer()?, user, groups, ttl)
    }

    /// The client certificate kept in `dir/<file>.crt|.key`, re-issued when missing, unreadable
    /// or within `renew_before` of expiry (k3s renews its certificates the same way at start).
    pub(crate) fn kept_client_cert(
        &self,
        dir: &Path,
        file: &str,
        user: &str,
        groups: &[String],
        ttl: std::time::Duration,
        renew_before: std::time::Duration,
    ) -> Result<crate::auth::cert::ClientCert, ServerError> {
        let (crt, key) = (
            dir.join(format!("{file}.crt")),
            dir.join(format!("{file}.key")),
        );
        if let (Some(cert_pem), Some(key_pem)) = (read(&crt)?, read(&key)?) {
            let left = crate::auth::cert::seconds_left(&cert_pem).unwrap_or(0);
            if left > renew_before.as_secs() as i64 {
                return Ok(crate::auth::cert::ClientCert { cert_pem, key_pem });
            }
        }
        let c = self
            .client_cert(user, groups, ttl)
            .map_err(|e| ServerError::ClientCert(e.to_string()))?;
        write_private(&key, &c.key_pem)?;
        write_private(&crt, &c.cert_pem)?;
        Ok(c)
    }

    /// The TLS client configuration for dialing node agents: only certificates signed by the
    /// cluster CA, for the address dialed, are accepted.
    pub(crate) fn agent_client_config(&self) -> Result<rustls::ClientConfig, ServerError> {
        let bad = || ServerError::BadPem(PathBuf::from("ca.crt"));
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pemfile::certs(&mut self.ca_pem.as_bytes()) {
            roots.add(cert.map_err(|_| bad())?)?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }

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
        // Client certificates are optional (tokens work too) but, when sent, must chain to the
        // cluster CA with the clientAuth usage.
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pemfile::certs(&mut self.ca_pem.as_bytes()) {
            roots.add(cert.map_err(|_| ServerError::BadPem(PathBuf::from("ca.crt")))?)?;
        }
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .allow_unauthenticated()
        .build()
        .map_err(|e| ServerError::Tls(rustls::Error::General(e.to_string())))?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs, key)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}

/// Verifies a server against a `caBundle` (admission and conversion webhooks, aggregated API
/// servers) as Go's crypto/x509 does: a chain to one of the bundle's certificates, or — the
/// self-signed case webpki refuses with `CaUsedAsEndEntity` — the presented certificate being
/// one of the bundle's own, within its validity period and valid for the name dialed. Many
/// webhook set-ups put one self-signed certificate in both places.
#[derive(Debug)]
pub(crate) struct BundleVerifier {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    bundle: Vec<rustls::pki_types::CertificateDer<'static>>,
}

impl BundleVerifier {
    /// From a PEM bundle; Err names what is wrong with it.
    pub(crate) fn from_pem(pem: &[u8]) -> Result<Arc<Self>, String> {
        let mut roots = rustls::RootCertStore::empty();
        let mut bundle = Vec::new();
        for cert in rustls_pemfile::certs(&mut &pem[..]) {
            let cert = cert.map_err(|e| e.to_string())?;
            roots.add(cert.clone()).map_err(|e| e.to_string())?;
            bundle.push(cert);
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let inner =
            rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| e.to_string())?;
        Ok(Arc::new(Self { inner, bundle }))
    }

    fn pinned_and_current(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        now: rustls::pki_types::UnixTime,
    ) -> bool {
        if !self
            .bundle
            .iter()
            .any(|c| c.as_ref() == end_entity.as_ref())
        {
            return false;
        }
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(end_entity.as_ref()) else {
            return false;
        };
        let now = now.as_secs() as i64;
        cert.validity().not_before.timestamp() <= now
            && now <= cert.validity().not_after.timestamp()
    }
}

impl rustls::client::danger::ServerCertVerifier for BundleVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        intermediates: &[rustls::pki_types::CertificateDer<'_>],
        server_name: &rustls::pki_types::ServerName<'_>,
        ocsp_response: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(e) if self.pinned_and_current(end_entity, now) => {
                let parsed =
                    rustls::server::ParsedCertificate::try_from(end_entity).map_err(|_| e)?;
                rustls::client::verify_server_name(&parsed, server_name)?;
                Ok(rustls::client::danger::ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
