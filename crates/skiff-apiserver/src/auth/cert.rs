//! X.509 client certificates: issuing them from the cluster CA (CN = user, O = groups, the
//! `clientAuth` usage, as upstream's kube-apiserver-client signer) and reading the identity of a
//! peer whose certificate rustls has already verified against that CA.

use super::user::{groups, UserInfo};
use super::x509::{CaSigner, X509Error};

/// A client certificate and its private key, PEM.
#[derive(Debug, Clone)]
pub struct ClientCert {
    pub cert_pem: String,
    pub key_pem: String,
}

fn time_now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

/// A new key and a client certificate for `user` in `groups`, signed by the CA, valid from an
/// hour ago (clock skew) for `ttl`.
pub(crate) fn issue(
    ca: &CaSigner,
    user: &str,
    groups: &[String],
    ttl: std::time::Duration,
) -> Result<ClientCert, X509Error> {
    let now = time_now();
    let ttl =
        time::Duration::seconds(i64::try_from(ttl.as_secs()).map_err(|_| X509Error::Validity)?);
    let not_after = now.checked_add(ttl).ok_or(X509Error::Validity)?;
    let (cert_pem, key_pem) =
        ca.issue_client(user, groups, now - time::Duration::hours(1), not_after)?;
    Ok(ClientCert { cert_pem, key_pem })
}

/// The identity in a verified client certificate (DER): CN is the user, each O a group.
/// None when the certificate has no CN.
pub(crate) fn user_of(der: &[u8]) -> Option<UserInfo> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let name = subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())?
        .to_string();
    if name.is_empty() {
        return None;
    }
    let mut groups: Vec<String> = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok())
        .map(str::to_string)
        .collect();
    groups.push(groups::AUTHENTICATED.to_string());
    Some(UserInfo {
        name,
        groups,
        ..Default::default()
    })
}

/// Seconds from now until a PEM certificate expires (negative when expired); None when it
/// does not parse.
pub fn seconds_left(cert_pem: &str) -> Option<i64> {
    let der = rustls_pemfile::certs(&mut cert_pem.as_bytes())
        .next()?
        .ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    let not_after = cert.validity().not_after.timestamp();
    Some(not_after - time_now().unix_timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_certificates_carry_the_user_and_every_group_and_verify() {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::CommonName, "test-ca");
        params.distinguished_name = dn;
        let ca_cert = params.self_signed(&ca_key).unwrap();
        let ca = CaSigner::new(&ca_cert.pem(), &ca_key.serialize_pem()).unwrap();
        let groups = ["dev".to_string(), "ops".into(), "system:masters".into()];
        let c = issue(&ca, "alice", &groups, std::time::Duration::from_secs(3600)).unwrap();
        let der = rustls_pemfile::certs(&mut c.cert_pem.as_bytes())
            .next()
            .unwrap()
            .unwrap();
        let u = user_of(&der).unwrap();
        assert_eq!(u.name, "alice");
        assert_eq!(
            u.groups,
            ["dev", "ops", "system:masters", "system:authenticated"]
        );
        let left = seconds_left(&c.cert_pem).unwrap();
        assert!((3500..=3600).contains(&left), "{left}");
        // rustls (webpki) accepts it as a client certificate of this CA, and not of another.
        let verify = |ca_der: rustls::pki_types::CertificateDer<'static>| {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(ca_der).unwrap();
            let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
            let v = rustls::server::WebPkiClientVerifier::builder_with_provider(
                std::sync::Arc::new(roots),
                provider,
            )
            .build()
            .unwrap();
            v.verify_client_cert(&der, &[], rustls::pki_types::UnixTime::now())
                .is_ok()
        };
        assert!(verify(ca_cert.der().clone()));
        let other_key = rcgen::KeyPair::generate().unwrap();
        let other = params_ca().self_signed(&other_key).unwrap();
        assert!(!verify(other.der().clone()));
        // The key matches the certificate (what kubectl and rustls need to use it).
        assert!(c.key_pem.contains("PRIVATE KEY"));
    }

    fn params_ca() -> rcgen::CertificateParams {
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::CommonName, "test-ca");
        p.distinguished_name = dn;
        p
    }
}
