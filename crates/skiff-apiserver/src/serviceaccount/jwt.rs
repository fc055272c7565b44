//! The ServiceAccount signing key and a minimal compact JWS (ES256 only).
//!
//! Why by hand and not the `jsonwebtoken` crate: ring (already in the build for rustls and
//! Secrets encryption) signs and verifies P-256 with the fixed r||s encoding JWS wants, so a
//! token is two base64url JSON parts and a signature — about sixty lines — while a JWT crate
//! would add a dependency tree and accept algorithms we never want to see. Verification here
//! accepts exactly `alg: ES256` (never `none`, never HMAC), so algorithm confusion is impossible.
//!
//! The key is `server/service-account.key` (PKCS#8 PEM, 0600), created once and shared by every
//! server of the cluster; its key id is upstream's: base64url(SHA-256(PKIX public key DER)).

use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, KeyPair as _, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED,
    ECDSA_P256_SHA256_FIXED_SIGNING,
};
use serde_json::{json, Value};
use sha2::Digest;

use crate::{io_err, ServerError};

/// Tokens longer than this are not ours (bounds the work an unauthenticated caller can cause).
pub(crate) const MAX_TOKEN_LEN: usize = 16 * 1024;

/// Why a token failed verification.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum JwtError {
    #[error("not a compact JWS")]
    Malformed,
    #[error("unsupported signing algorithm")]
    Algorithm,
    #[error("invalid signature")]
    Signature,
}

/// The signing key (private) and what verifiers and the JWKS document need (public).
pub(crate) struct SigningKey {
    pair: EcdsaKeyPair,
    rng: SystemRandom,
    /// Uncompressed P-256 point: 0x04 || X || Y.
    public: Vec<u8>,
    pub kid: String,
}

impl SigningKey {
    /// A fresh in-memory key (in-process routers in tests).
    pub(crate) fn generate() -> Result<Self, ServerError> {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        Self::from_rcgen(&kp)
    }

    /// Loads `path`, creating it (0600) on first start.
    pub(crate) fn load_or_create(path: &Path) -> Result<Self, ServerError> {
        match std::fs::read_to_string(path) {
            Ok(pem) => {
                let kp = rcgen::KeyPair::from_pem(&pem)
                    .map_err(|_| ServerError::BadPem(path.to_path_buf()))?;
                Self::from_rcgen(&kp).map_err(|_| ServerError::BadPem(path.to_path_buf()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
                skiff_client::fs::write_private(path, kp.serialize_pem().as_bytes())
                    .map_err(io_err(format!("writing {}", path.display())))?;
                Self::from_rcgen(&kp)
            }
            Err(e) => Err(io_err(format!("reading {}", path.display()))(e)),
        }
    }

    fn from_rcgen(kp: &rcgen::KeyPair) -> Result<Self, ServerError> {
        let rng = SystemRandom::new();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &kp.serialize_der(), &rng)
                .map_err(|_| ServerError::Cert(rcgen::Error::CouldNotParseKeyPair))?;
        let public = pair.public_key().as_ref().to_vec();
        let kid = B64.encode(sha2::Sha256::digest(
            rcgen::PublicKeyData::subject_public_key_info(kp),
        ));
        Ok(Self {
            pair,
            rng,
            public,
            kid,
        })
    }

    /// A compact JWS of `claims`.
    pub(crate) fn sign(&self, claims: &Value) -> Result<String, ServerError> {
        let header = json!({"alg": "ES256", "kid": self.kid});
        let input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let sig = self
            .pair
            .sign(&self.rng, input.as_bytes())
            .map_err(|_| ServerError::Cert(rcgen::Error::RingUnspecified))?;
        Ok(format!("{input}.{}", B64.encode(sig.as_ref())))
    }

    /// The claims of `token` if it is an ES256 JWS this key signed.
    pub(crate) fn verify(&self, token: &str) -> Result<Value, JwtError> {
        let (header, claims, input, sig) = split(token)?;
        if header.get("alg").and_then(Value::as_str) != Some("ES256") {
            return Err(JwtError::Algorithm);
        }
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &self.public)
            .verify(input.as_bytes(), &sig)
            .map_err(|_| JwtError::Signature)?;
        Ok(claims)
    }

    /// The public key as a JWK (upstream's JWKS entry for an ECDSA key).
    pub(crate) fn jwk(&self) -> Value {
        // 0x04 || X(32) || Y(32)
        let (x, y) = self.public[1..].split_at(32);
        json!({"use": "sig", "kty": "EC", "kid": self.kid, "crv": "P-256", "alg": "ES256",
            "x": B64.encode(x), "y": B64.encode(y)})
    }
}

/// The claims of a token without checking its signature (to see whose it is).
pub(crate) fn peek_claims(token: &str) -> Result<Value, JwtError> {
    split(token).map(|(_, claims, _, _)| claims)
}

/// (header, claims, signing input, signature) of a compact JWS.
fn split(token: &str) -> Result<(Value, Value, &str, Vec<u8>), JwtError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(JwtError::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed);
    };
    let json = |part: &str| -> Result<Value, JwtError> {
        let bytes = B64.decode(part).map_err(|_| JwtError::Malformed)?;
        let v: Value = serde_json::from_slice(&bytes).map_err(|_| JwtError::Malformed)?;
        v.is_object().then_some(v).ok_or(JwtError::Malformed)
    };
    let header = json(h)?;
    let claims = json(c)?;
    let sig = B64.decode(s).map_err(|_| JwtError::Malformed)?;
    Ok((header, claims, &token[..h.len() + 1 + c.len()], sig))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_and_verifies_and_rejects_tampering() {
        let key = SigningKey::generate().unwrap();
        let claims = json!({"iss": "https://kubernetes.default.svc.cluster.local", "sub": "x"});
        let token = key.sign(&claims).unwrap();
        assert_eq!(key.verify(&token).unwrap(), claims);
        assert_eq!(peek_claims(&token).unwrap(), claims);

        // A changed claim with the old signature.
        let parts: Vec<&str> = token.split('.').collect();
        let forged = B64.encode(json!({"iss": claims["iss"], "sub": "admin"}).to_string());
        let tampered = format!("{}.{forged}.{}", parts[0], parts[2]);
        assert_eq!(key.verify(&tampered), Err(JwtError::Signature));

        // Another key's token.
        let other = SigningKey::generate().unwrap();
        assert_eq!(
            key.verify(&other.sign(&claims).unwrap()),
            Err(JwtError::Signature)
        );

        // alg none and HMAC are refused before any signature check.
        for alg in ["none", "HS256"] {
            let h = B64.encode(json!({"alg": alg}).to_string());
            let t = format!("{h}.{}.{}", parts[1], parts[2]);
            assert_eq!(key.verify(&t), Err(JwtError::Algorithm));
        }
        for junk in [
            "",
            "a.b",
            "a.b.c.d",
            "!!.!!.!!",
            &"a".repeat(MAX_TOKEN_LEN + 1),
        ] {
            assert_eq!(key.verify(junk), Err(JwtError::Malformed));
        }
    }

    #[test]
    fn key_file_is_created_once_private_and_reused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("service-account.key");
        let a = SigningKey::load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let b = SigningKey::load_or_create(&path).unwrap();
        assert_eq!(a.kid, b.kid);
        let t = a.sign(&json!({"a": 1})).unwrap();
        assert!(b.verify(&t).is_ok());
        let jwk = b.jwk();
        assert_eq!(jwk["kid"], json!(a.kid));
        assert_eq!(B64.decode(jwk["x"].as_str().unwrap()).unwrap().len(), 32);
        std::fs::write(&path, "garbage").unwrap();
        assert!(matches!(
            SigningKey::load_or_create(&path),
            Err(ServerError::BadPem(_))
        ));
    }
}
