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

/// Parameters of a client certificate (no subject yet), valid from an hour ago (clock skew)
/// for `ttl`.
pub(crate) fn client_params(ttl: std::time::Duration) -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
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

/// X.520 attribute numbers (under 2.5.4) of the subject attributes skiff writes.
pub(crate) const COMMON_NAME: u8 = 3;
pub(crate) const ORGANIZATION: u8 = 10;

/// The subject of a user's client certificate: CN = user, one O per group.
pub(crate) fn user_subject(user: &str, groups: &[String]) -> Vec<(u8, String)> {
    let mut subject = vec![(COMMON_NAME, user.to_string())];
    subject.extend(groups.iter().map(|g| (ORGANIZATION, g.clone())));
    subject
}

// rcgen keeps one value per attribute type, but a user has one O per group. Repeats are
// written under placeholder types 2.5.4.100.. (the same DER length as the real ones) and put
// back to the real type in the to-be-signed bytes before signing and in the certificate after,
// so the signature covers exactly the bytes that are published.
const FIRST_PLACEHOLDER: u8 = 100;
const LAST_PLACEHOLDER: u8 = 127;

fn dn_type(attr: u8) -> DnType {
    match attr {
        COMMON_NAME => DnType::CommonName,
        ORGANIZATION => DnType::OrganizationName,
        11 => DnType::OrganizationalUnitName,
        6 => DnType::CountryName,
        7 => DnType::LocalityName,
        8 => DnType::StateOrProvinceName,
        other => DnType::CustomDnType(vec![2, 5, 4, u64::from(other)]),
    }
}

/// Rewrites the first DER OID `2.5.4.<from>` to `2.5.4.<to>` for each placeholder.
fn put_back(der: &mut [u8], patches: &[(u8, u8)]) {
    for &(from, to) in patches {
        let needle = [0x06, 0x03, 0x55, 0x04, from];
        if let Some(i) = der.windows(needle.len()).position(|w| w == needle) {
            der[i + 4] = to;
        }
    }
}

/// The CA key, signing the to-be-signed bytes with the placeholders put back.
struct PuttingBack<'a> {
    key: &'a KeyPair,
    patches: &'a [(u8, u8)],
}

impl rcgen::PublicKeyData for PuttingBack<'_> {
    fn der_bytes(&self) -> &[u8] {
        self.key.der_bytes()
    }
    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        self.key.algorithm()
    }
}

impl rcgen::SigningKey for PuttingBack<'_> {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        let mut tbs = msg.to_vec();
        put_back(&mut tbs, self.patches);
        self.key.sign(&tbs)
    }
}

/// Signs a certificate for `public_key` with `subject` (X.520 attributes in order, repeats
/// allowed) and the rest of `params`, issued by the CA (`ca_params`, `ca_key`); PEM.
pub(crate) fn sign(
    mut params: CertificateParams,
    subject: &[(u8, String)],
    public_key: &impl rcgen::PublicKeyData,
    ca_params: CertificateParams,
    ca_key: &KeyPair,
) -> Result<String, rcgen::Error> {
    let mut dn = DistinguishedName::new();
    let mut seen = Vec::new();
    let mut patches = Vec::new();
    let mut next = FIRST_PLACEHOLDER;
    for (attr, value) in subject {
        let ty = if seen.contains(attr) {
            if next > LAST_PLACEHOLDER {
                return Err(rcgen::Error::X509(
                    "too many repeated subject attributes".into(),
                ));
            }
            patches.push((next, *attr));
            next += 1;
            DnType::CustomDnType(vec![2, 5, 4, u64::from(next - 1)])
        } else {
            seen.push(*attr);
            dn_type(*attr)
        };
        dn.push(ty, value.as_str());
    }
    params.distinguished_name = dn;
    let issuer = rcgen::Issuer::new(
        ca_params,
        PuttingBack {
            key: ca_key,
            patches: &patches,
        },
    );
    let cert = params.signed_by(public_key, &issuer)?;
    let mut der = cert.der().to_vec();
    put_back(&mut der, &patches);
    Ok(pem_certificate(&der))
}

fn pem_certificate(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// A new key and a client certificate for it (CN = user, O = each group), signed by the CA.
pub(crate) fn issue(
    ca_params: CertificateParams,
    ca_key: &KeyPair,
    user: &str,
    groups: &[String],
    ttl: std::time::Duration,
) -> Result<ClientCert, rcgen::Error> {
    let key = KeyPair::generate()?;
    let cert_pem = sign(
        client_params(ttl)?,
        &user_subject(user, groups),
        &key,
        ca_params,
        ca_key,
    )?;
    Ok(ClientCert {
        cert_pem,
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
        let ca = crate::tls::ca_params().unwrap();
        let c = issue(
            ca.clone(),
            &ca_key,
            "alice",
            &["dev".into(), "ops".into(), "qa".into()],
            std::time::Duration::from_secs(3600),
        )
        .unwrap();
        let der = rustls_pemfile::certs(&mut c.cert_pem.as_bytes())
            .next()
            .unwrap()
            .unwrap();
        let u = user_of(&der).unwrap();
        assert_eq!(u.name, "alice");
        assert_eq!(u.groups, ["dev", "ops", "qa", "system:authenticated"]);
        // The signature covers the published bytes: the CA verifies it.
        let ca_der = ca.self_signed(&ca_key).unwrap().der().to_vec();
        let (_, ca_cert) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
        let (_, leaf) = x509_parser::parse_x509_certificate(&der).unwrap();
        leaf.verify_signature(Some(ca_cert.public_key())).unwrap();
        let left = seconds_left(&c.cert_pem).unwrap();
        assert!((3500..=3600).contains(&left), "{left}");
    }
}
