//! Client certificates built to the byte: rcgen's `DistinguishedName` keeps one value per
//! attribute type, but Kubernetes carries each group as its own `O` (a user in three groups has
//! three), and a signer must keep a CSR's subject exactly as requested. So the TBSCertificate is
//! encoded here with yasna (rcgen's own DER writer) and signed with the CA's rcgen key.

use rcgen::{KeyPair, PublicKeyData, SigningKey};
use time::OffsetDateTime;
use yasna::models::{GeneralizedTime, ObjectIdentifier, UTCTime};

const OID_CN: &[u64] = &[2, 5, 4, 3];
const OID_O: &[u64] = &[2, 5, 4, 10];
const OID_ECDSA_SHA256: &[u64] = &[1, 2, 840, 10045, 4, 3, 2];
const OID_KEY_USAGE: &[u64] = &[2, 5, 29, 15];
const OID_EXT_KEY_USAGE: &[u64] = &[2, 5, 29, 37];
const OID_BASIC_CONSTRAINTS: &[u64] = &[2, 5, 29, 19];
const OID_CLIENT_AUTH: &[u64] = &[1, 3, 6, 1, 5, 5, 7, 3, 2];

#[derive(Debug, thiserror::Error)]
pub enum X509Error {
    #[error("the cluster CA certificate does not parse")]
    BadCa,
    #[error("the cluster CA key is not ECDSA P-256 (the only kind skiff creates)")]
    UnsupportedCaKey,
    #[error("signing: {0}")]
    Sign(#[from] rcgen::Error),
    #[error("validity period out of range")]
    Validity,
}

/// A Name: CN = `user`, then one `O` per group, each in its own RDN (as Go's pkix encodes it).
pub fn encode_name(user: &str, groups: &[String]) -> Vec<u8> {
    yasna::construct_der(|w| {
        w.write_sequence(|w| {
            let mut rdn = |oid: &[u64], value: &str| {
                w.next().write_set(|w| {
                    w.next().write_sequence(|w| {
                        w.next().write_oid(&ObjectIdentifier::from_slice(oid));
                        w.next().write_utf8_string(value);
                    })
                })
            };
            for g in groups {
                rdn(OID_O, g);
            }
            rdn(OID_CN, user);
        })
    })
}

/// The cluster CA as a signer: its key and its certificate's subject (the issuer of every
/// certificate it signs, byte for byte).
pub struct CaSigner {
    key: KeyPair,
    subject: Vec<u8>,
}

impl CaSigner {
    pub fn new(ca_pem: &str, ca_key_pem: &str) -> Result<Self, X509Error> {
        let key = KeyPair::from_pem(ca_key_pem)?;
        if key.algorithm() != &rcgen::PKCS_ECDSA_P256_SHA256 {
            return Err(X509Error::UnsupportedCaKey);
        }
        let der = rustls_pemfile::certs(&mut ca_pem.as_bytes())
            .next()
            .and_then(Result::ok)
            .ok_or(X509Error::BadCa)?;
        let (_, cert) = x509_parser::parse_x509_certificate(&der).map_err(|_| X509Error::BadCa)?;
        Ok(CaSigner {
            key,
            subject: cert.subject().as_raw().to_vec(),
        })
    }

    /// A client certificate (clientAuth, not a CA) for the public key `spki` (DER
    /// SubjectPublicKeyInfo) and the encoded `subject`, valid in [not_before, not_after]; PEM.
    pub fn sign_client(
        &self,
        subject: &[u8],
        spki: &[u8],
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<String, X509Error> {
        let mut serial = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut serial);
        serial[0] &= 0x7f;
        serial[0] |= 0x01;
        let alg = |w: yasna::DERWriter| {
            w.write_sequence(|w| {
                w.next()
                    .write_oid(&ObjectIdentifier::from_slice(OID_ECDSA_SHA256))
            })
        };
        let time = |w: yasna::DERWriter, t: OffsetDateTime| -> Result<(), X509Error> {
            // RFC 5280: whole seconds; UTCTime through 2049, GeneralizedTime after.
            let t = t.replace_nanosecond(0).map_err(|_| X509Error::Validity)?;
            if t.year() < 2050 {
                w.write_utctime(&UTCTime::from_datetime_opt(t).ok_or(X509Error::Validity)?);
            } else {
                w.write_generalized_time(
                    &GeneralizedTime::from_datetime_opt(t).ok_or(X509Error::Validity)?,
                );
            }
            Ok(())
        };
        let mut bad_time = Ok(());
        let tbs = yasna::construct_der(|w| {
            w.write_sequence(|w| {
                w.next()
                    .write_tagged(yasna::Tag::context(0), |w| w.write_u8(2));
                w.next().write_bigint_bytes(&serial, true);
                alg(w.next());
                w.next().write_der(&self.subject);
                w.next().write_sequence(|w| {
                    bad_time = time(w.next(), not_before).and(time(w.next(), not_after));
                });
                w.next().write_der(subject);
                w.next().write_der(spki);
                w.next().write_tagged(yasna::Tag::context(3), |w| {
                    w.write_sequence(|w| {
                        // keyUsage (critical): digitalSignature | keyEncipherment.
                        extension(w.next(), OID_KEY_USAGE, true, |w| {
                            w.write_bitvec_bytes(&[0b1010_0000], 3)
                        });
                        extension(w.next(), OID_EXT_KEY_USAGE, false, |w| {
                            w.write_sequence(|w| {
                                w.next()
                                    .write_oid(&ObjectIdentifier::from_slice(OID_CLIENT_AUTH))
                            })
                        });
                        // basicConstraints (critical): not a CA.
                        extension(w.next(), OID_BASIC_CONSTRAINTS, true, |w| {
                            w.write_sequence(|_| {})
                        });
                    })
                });
            })
        });
        bad_time?;
        let signature = self.key.sign(&tbs)?;
        let der = yasna::construct_der(|w| {
            w.write_sequence(|w| {
                w.next().write_der(&tbs);
                alg(w.next());
                w.next().write_bitvec_bytes(&signature, signature.len() * 8);
            })
        });
        Ok(pem("CERTIFICATE", &der))
    }

    /// A new key and a client certificate for `user` in `groups`; (cert PEM, key PEM).
    pub fn issue_client(
        &self,
        user: &str,
        groups: &[String],
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<(String, String), X509Error> {
        let key = KeyPair::generate()?;
        let cert = self.sign_client(
            &encode_name(user, groups),
            &key.subject_public_key_info(),
            not_before,
            not_after,
        )?;
        Ok((cert, key.serialize_pem()))
    }
}

fn extension(
    w: yasna::DERWriter,
    oid: &[u64],
    critical: bool,
    value: impl FnOnce(yasna::DERWriter),
) {
    let inner = yasna::construct_der(value);
    w.write_sequence(|w| {
        w.next().write_oid(&ObjectIdentifier::from_slice(oid));
        if critical {
            w.next().write_bool(true);
        }
        w.next().write_bytes(&inner);
    })
}

/// PEM armour with 64-column lines.
pub fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}
