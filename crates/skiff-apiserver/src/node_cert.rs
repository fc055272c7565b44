//! Node agents' certificates, issued by the cluster CA (as k3s issues kubelet certificates),
//! to the holder of the node join token, of node `<n>`'s own client certificate (renewal), or to
//! `system:masters` acting for a node:
//! - the serving certificate (`skiff_client::node_cert::PATH`, name and addresses): the API
//!   server dials the agent trusting only the cluster CA, so no per-node fingerprint is
//!   published (with the join token only for a name that has no Node yet);
//! - the client certificate `CN=system:node:<n>, O=system:nodes`
//!   (`skiff_client::node_identity::PATH`): the node's identity for every API call after the
//!   join. As in k3s, the join token alone can mint the identity of a node name nobody holds;
//!   for a name whose Node exists, the request must also carry the password the first machine
//!   presented for it (k3s's node password; its hash is kept in the datastore under
//!   `/skiff/node-passwords/<name>`, so every server checks the same record), so a leaked join token (which every agent machine
//!   holds) cannot take over an existing node. Deleting the Node frees its name. The join token
//!   can do nothing else (the authorizers give `system:bootstrappers` only discovery).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::Response;
use http::request::Parts;
use http_body_util::BodyExt;
use skiff_api::ApiError;
use skiff_client::node_cert::{NodeCert, NodeCertRequest};
use skiff_client::node_identity::NodeClientCertRequest;

use crate::auth::user::groups;
use crate::respond::{error_response, json_response, unavailable};
use crate::AppState;

/// Certificate requests are small.
const BODY_LIMIT: usize = 16 << 10;

/// The shortest client certificate lifetime (a CSR's `expirationSeconds` minimum).
const MIN_EXPIRATION_SECONDS: u64 = 600;

/// A DNS-1123 subdomain (what a Node name is), so it is a valid DNS SAN.
fn valid_node_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// Who asks for a node's certificates.
#[derive(Debug, PartialEq, Eq)]
enum Requester {
    /// The shared join token (bootstrap).
    JoinToken,
    /// `system:masters` acting for a node.
    Master,
    /// Node `<name>` itself (its client certificate).
    Node(String),
}

/// The requester, if it may ask at all: the join token, an admin, or a node. 401 without a
/// credential, 403 for any other user.
async fn requester(st: &AppState, parts: &Parts) -> Result<Requester, ApiError> {
    if st.tokens.is_node_token(&parts.headers) {
        return Ok(Requester::JoinToken);
    }
    let user = crate::auth::authenticate(st, parts).await?;
    if user.is_master() {
        return Ok(Requester::Master);
    }
    match user.node_name() {
        Some(n) => Ok(Requester::Node(n.to_string())),
        None => Err(ApiError::forbidden(format!(
            "User {:?} cannot request node certificates: only nodes, the node join token and system:masters can",
            user.name
        ))),
    }
}

/// A node asks only for itself.
fn authorize(who: &Requester, name: &str) -> Result<(), ApiError> {
    match who {
        Requester::Node(n) if n != name => Err(ApiError::forbidden(format!(
            "User \"system:node:{n}\" cannot request certificates for node {name:?}: only the node itself can"
        ))),
        _ => Ok(()),
    }
}

/// Reads the JSON body (bounded) after checking who asks.
async fn read<T: serde::de::DeserializeOwned>(
    st: &AppState,
    req: Request,
) -> Result<(Requester, T), ApiError> {
    let (parts, body) = req.into_parts();
    let who = requester(st, &parts).await?;
    let bytes = http_body_util::Limited::new(body, BODY_LIMIT)
        .collect()
        .await
        .map_err(|_| ApiError::too_large(BODY_LIMIT))?
        .to_bytes();
    let value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("invalid node certificate request: {e}")))?;
    Ok((who, value))
}

fn check_name(name: &str) -> Result<(), ApiError> {
    if valid_node_name(name) {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!("invalid node name {name:?}")))
    }
}

fn respond(res: Result<NodeCert, ApiError>) -> Response {
    match res {
        Ok(cert) => json_response(200, &serde_json::json!(cert)),
        Err(e) => error_response(&e),
    }
}

pub(crate) async fn handle(State(st): State<Arc<AppState>>, req: Request) -> Response {
    respond(issue(&st, req).await)
}

pub(crate) async fn handle_client(State(st): State<Arc<AppState>>, req: Request) -> Response {
    respond(issue_client(&st, req).await)
}

/// Longest node password accepted.
const MAX_PASSWORD: usize = 512;

/// Serializes this server's read-modify-writes of the password records.
static PASSWORDS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A join-token request for `name` must carry the password first presented for it while its
/// Node exists; otherwise the password is (re)recorded.
async fn check_node_password(
    st: &AppState,
    pki: &crate::Pki,
    name: &str,
    password: Option<&str>,
) -> Result<(), ApiError> {
    let password = password
        .filter(|p| !p.is_empty() && p.len() <= MAX_PASSWORD)
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "nodePassword: required with the join token (1 to {MAX_PASSWORD} characters)"
            ))
        })?;
    let hash = sha256_hex(password);
    let key = format!("{NODE_PASSWORDS_PREFIX}{name}");
    let _guard = PASSWORDS.lock().await;
    let internal =
        |e: skiff_store::StoreError| ApiError::internal(format!("node password of {name}: {e}"));
    let stored = st.store.get(&key).await.map_err(internal)?;
    let recorded = match &stored {
        Some(kv) => Some(String::from_utf8_lossy(&kv.value).into_owned()),
        None => legacy_password(&pki.node_passwords, name)?,
    };
    match recorded {
        Some(h) if h == hash && stored.is_some() => return Ok(()),
        Some(h) if h == hash => {}
        Some(_) => {
            let node = st
                .store
                .get(&format!("/registry/core/nodes/{name}"))
                .await
                .map_err(|e| ApiError::internal(format!("reading node {name}: {e}")))?;
            if node.is_some() {
                tracing::warn!(node = %name, "refused a node certificate: wrong node password");
                return Err(ApiError::forbidden(format!(
                    "Node password rejected, duplicate hostname or contents of the agent's agent/pki/node-password may not match the server's record for node {name:?}; delete the Node to let another machine use its name"
                )));
            }
        }
        None => {}
    }
    // In the datastore, so every server of the cluster checks the same record.
    let written = match &stored {
        Some(kv) => {
            st.store
                .update(&key, hash.clone().into_bytes(), kv.mod_revision)
                .await
        }
        None => st.store.create(&key, hash.clone().into_bytes()).await,
    };
    match written {
        Ok(_) => Ok(()),
        // Another server recorded a password for this name at the same moment.
        Err(
            skiff_store::StoreError::Conflict { .. } | skiff_store::StoreError::AlreadyExists(_),
        ) => match st.store.get(&key).await.map_err(internal)? {
            Some(kv) if kv.value == hash.as_bytes() => Ok(()),
            _ => Err(ApiError::conflict(
                "",
                "nodes",
                name,
                "the node is being registered by another machine; retry",
            )),
        },
        Err(e) => Err(internal(e)),
    }
}

/// Store keys of node password hashes (shared by every server).
pub(crate) const NODE_PASSWORDS_PREFIX: &str = "/skiff/node-passwords/";

/// The hash an older version kept in `server/cred/node-passwords.json` (read only; the record
/// moves to the datastore at the node's next join).
fn legacy_password(path: &std::path::Path, name: &str) -> Result<Option<String>, ApiError> {
    let records: std::collections::BTreeMap<String, String> = match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)
            .map_err(|e| ApiError::internal(format!("corrupt {}: {e}", path.display())))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(ApiError::internal(format!(
                "reading {}: {e}",
                path.display()
            )))
        }
    };
    Ok(records.get(name).cloned())
}

async fn issue_client(st: &AppState, req: Request) -> Result<NodeCert, ApiError> {
    let (who, req): (_, NodeClientCertRequest) = read(st, req).await?;
    check_name(&req.node_name)?;
    authorize(&who, &req.node_name)?;
    let Some(pki) = st.pki.as_ref() else {
        return Err(unavailable("this API server has no cluster CA"));
    };
    let max = crate::CLIENT_CERT_TTL.as_secs();
    let secs = match req.expiration_seconds {
        Some(s) if s < MIN_EXPIRATION_SECONDS => {
            return Err(ApiError::bad_request(format!(
                "expirationSeconds: may not specify a duration less than {MIN_EXPIRATION_SECONDS} seconds (10 minutes)"
            )))
        }
        Some(s) => s.min(max),
        None => max,
    };
    // The node's own certificate proves who it is; the shared join token does not.
    if who == Requester::JoinToken {
        check_node_password(st, pki, &req.node_name, req.node_password.as_deref()).await?;
    }
    let user = skiff_client::node_identity::node_user(&req.node_name);
    let cert = pki
        .client_cert(
            &user,
            &[groups::NODES.to_string()],
            std::time::Duration::from_secs(secs),
        )
        .map_err(|e| ApiError::internal(format!("issuing the node client certificate: {e}")))?;
    tracing::info!(node = %req.node_name, seconds = secs, "issued a node client certificate");
    Ok(NodeCert {
        cert: cert.cert_pem,
        key: cert.key_pem,
    })
}

async fn issue(st: &AppState, req: Request) -> Result<NodeCert, ApiError> {
    let (who, req): (_, NodeCertRequest) = read(st, req).await?;
    check_name(&req.node_name)?;
    authorize(&who, &req.node_name)?;
    let Some(pki) = st.pki.as_ref() else {
        return Err(unavailable("this API server has no cluster CA"));
    };
    if req.addresses.is_empty() {
        return Err(ApiError::bad_request("a node certificate needs an address"));
    }
    // Agents ask with their own certificate; the shared join token may not impersonate the
    // agent API of a node that exists.
    if who == Requester::JoinToken {
        let node = st
            .store
            .get(&format!("/registry/core/nodes/{}", req.node_name))
            .await
            .map_err(|e| ApiError::internal(format!("reading node {}: {e}", req.node_name)))?;
        if node.is_some() {
            return Err(ApiError::forbidden(format!(
                "node {:?} exists: only the node itself can request its serving certificate",
                req.node_name
            )));
        }
    }
    let (cert, key) = pki
        .node_serving_cert(&req.node_name, &req.addresses)
        .map_err(|e| ApiError::internal(format!("issuing the node certificate: {e}")))?;
    tracing::info!(node = %req.node_name, addresses = ?req.addresses, "issued a node serving certificate");
    Ok(NodeCert { cert, key })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_must_be_dns_subdomains() {
        assert!(valid_node_name("node-1.example"));
        assert!(!valid_node_name(""));
        assert!(!valid_node_name("Node"));
        assert!(!valid_node_name("-a"));
        assert!(!valid_node_name("a..b"));
        assert!(!valid_node_name("a b"));
    }
}
