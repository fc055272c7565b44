//! X.509 client certificates: issuing them from the cluster CA (CN = user, O = groups, the
//! `clientAuth` usage, as upstream's kube-apiserver-client signer) and reading the identity of a
//! peer whose certificate rustls has already verified against that CA.

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose,
};

use super::user::{groups, UserInfo};

/// A client certificate and its private key, PEM.
#[derive(Debug, Clone)]
pub struct ClientCert {
    pub cert_pem: String,
    pub key_pem: String,
}

/// Parameters of a client certificate for `user` in `groups`, valid from an hour ago (clock
/// skew) for `ttl`.
pub(crate) fn client_params(
    user: &str,
    groups: &[String],
    ttl: std::time::Duration,
) -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, user);
    for g in groups {
        dn.push(DnType::OrganizationName, g.as_str());
    }
    params.distinguished_name = dn;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let now = time_now();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::seconds(ttl.as_secs().min(i64::MAX as u64) as i64);
    Ok(params)
}

fn time_now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

/// A new key and a client certificate for it, signed by `issuer`.
pub(crate) fn issue(
    issuer: &rcgen::Issuer<'_, KeyPair>,
    user: &str,
    groups: &[String],
    ttl: std::time::Duration,
) -> Result<ClientCert, rcgen::Error> {
    let key = KeyPair::generate()?;
    let cert = client_params(user, groups, ttl)?.signed_by(&key, issuer)?;
    Ok(ClientCert {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
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
    fn issued_certificates_carry_the_user_and_groups() {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let c = issue(
            &issuer,
            "alice",
            &["dev".into(), "ops".into()],
            std::time::Duration::from_secs(3600),
        )
        .unwrap();
        let der = rustls_pemfile::certs(&mut c.cert_pem.as_bytes())
            .next()
            .unwrap()
            .unwrap();
        let u = user_of(&der).unwrap();
        assert_eq!(u.name, "alice");
        assert_eq!(u.groups, ["dev", "ops", "system:authenticated"]);
        let left = seconds_left(&c.cert_pem).unwrap();
        assert!((3500..=3600).contains(&left), "{left}");
    }
}
