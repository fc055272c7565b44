//! The front-proxy identity: a requestheader CA kept apart from the cluster CA (so a cluster
//! client certificate can never pass as the proxy) in `server/tls/front-proxy-ca.{crt,key}`,
//! created once, and the `front-proxy-client` certificate it signs, issued at every start and
//! kept in memory. Extension API servers learn the CA and the header names from the
//! `extension-apiserver-authentication` ConfigMap in kube-system, written at every start.

use std::path::Path;
use std::sync::Arc;

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair,
    KeyUsagePurpose,
};
use serde_json::{json, Value};

use crate::keys::{decode, encode};
use crate::{AppState, ServerError};

/// The common name extension API servers accept (`requestheader-allowed-names`).
pub(crate) const CLIENT_NAME: &str = "front-proxy-client";
/// How long the in-memory client certificate is valid (re-issued at every start).
const CLIENT_TTL: time::Duration = time::Duration::days(365);

const CONFIG_MAP_KEY: &str =
    "/registry/core/configmaps/kube-system/extension-apiserver-authentication";

/// The front-proxy client certificate and the CA that signed it (PEM).
pub(crate) struct FrontProxy {
    pub(crate) ca_pem: String,
    pub(crate) cert_pem: String,
    pub(crate) key_pem: String,
}

// Deterministic so the stored key can sign without parsing the stored certificate.
fn ca_params() -> Result<CertificateParams, rcgen::Error> {
    crate::tls::deterministic_ca_params("skiff-front-proxy-ca")
}

/// Loads or creates the requestheader CA in `tls_dir`; (cert, key) PEM. The bootstrap step runs
/// it before the server starts so every server shares one.
pub(crate) fn ensure_ca(tls_dir: &Path) -> Result<(String, String), ServerError> {
    let (crt, key) = (
        tls_dir.join("front-proxy-ca.crt"),
        tls_dir.join("front-proxy-ca.key"),
    );
    Ok(match (crate::tls::read(&crt)?, crate::tls::read(&key)?) {
        (Some(c), Some(k)) => (c, k),
        _ => {
            let k = KeyPair::generate()?;
            let c = ca_params()?.self_signed(&k)?;
            let (c, k) = (c.pem(), k.serialize_pem());
            write(&key, &k)?;
            write(&crt, &c)?;
            (c, k)
        }
    })
}

/// Loads or creates the requestheader CA in `tls_dir` and issues a new client certificate.
pub(crate) fn ensure(tls_dir: &Path) -> Result<FrontProxy, ServerError> {
    let (ca_pem, ca_key_pem) = ensure_ca(tls_dir)?;
    let issuer = Issuer::new(ca_params()?, KeyPair::from_pem(&ca_key_pem)?);
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CLIENT_NAME);
    params.distinguished_name = dn;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + CLIENT_TTL;
    let client_key = KeyPair::generate()?;
    let cert = params.signed_by(&client_key, &issuer)?;
    Ok(FrontProxy {
        ca_pem,
        cert_pem: cert.pem(),
        key_pem: client_key.serialize_pem(),
    })
}

fn write(path: &Path, data: &str) -> Result<(), ServerError> {
    skiff_client::fs::write_private(path, data.as_bytes())
        .map_err(crate::io_err(format!("writing {}", path.display())))
}

/// Writes `kube-system/extension-apiserver-authentication` with upstream's keys (created, or
/// updated when its data differs).
pub(crate) async fn write_config_map(
    st: &Arc<AppState>,
    client_ca: &str,
    front_proxy: &FrontProxy,
) -> Result<(), ServerError> {
    let list = |v: &str| serde_json::to_string(&[v]).unwrap_or_default();
    let data = json!({
        "client-ca-file": client_ca,
        "requestheader-allowed-names": list(CLIENT_NAME),
        "requestheader-client-ca-file": front_proxy.ca_pem,
        "requestheader-extra-headers-prefix": list("X-Remote-Extra-"),
        "requestheader-group-headers": list("X-Remote-Group"),
        "requestheader-username-headers": list("X-Remote-User"),
    });
    match st.store.get(CONFIG_MAP_KEY).await? {
        Some(kv) => {
            let Ok(mut obj) = decode(&kv) else {
                return Ok(());
            };
            if obj.get("data") == Some(&data) {
                return Ok(());
            }
            obj["data"] = data;
            match st
                .store
                .update(CONFIG_MAP_KEY, encode(&obj), kv.mod_revision)
                .await
            {
                Ok(_) | Err(skiff_store::StoreError::Conflict { .. }) => Ok(()),
                Err(e) => Err(e.into()),
            }
        }
        None => {
            let obj: Value = json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "extension-apiserver-authentication",
                    "namespace": "kube-system", "uid": uuid::Uuid::new_v4().to_string(),
                    "creationTimestamp": crate::respond::now_rfc3339()},
                "data": data,
            });
            match st.store.create(CONFIG_MAP_KEY, encode(&obj)).await {
                Ok(_) | Err(skiff_store::StoreError::AlreadyExists(_)) => Ok(()),
                Err(e) => Err(e.into()),
            }
        }
    }
}
