//! Node agents' serving certificates, issued by the cluster CA (as k3s issues kubelet serving
//! certificates): an agent holding the node token POSTs its node name and addresses to
//! `skiff_client::node_cert::PATH` and gets a certificate and key back over this TLS connection. The API server later
//! dials the agent trusting only the cluster CA, so no per-node fingerprint is published.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use http::HeaderMap;
use skiff_api::ApiError;
use skiff_client::node_cert::{NodeCert, NodeCertRequest};

use crate::respond::{error_response, json_response, unavailable};
use crate::AppState;

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

pub(crate) async fn handle(
    State(st): State<Arc<AppState>>,
    req: axum::extract::Request,
) -> Response {
    let (parts, body) = req.into_parts();
    // The join token, or an admin (system:masters) acting for a node.
    let allowed = st.tokens.is_node_token(&parts.headers)
        || crate::auth::authenticate(&st, &parts)
            .await
            .is_ok_and(|u| u.is_master());
    if !allowed {
        return error_response(&ApiError::unauthorized());
    }
    let body = match axum::body::to_bytes(body, 64 * 1024).await {
        Ok(b) => b,
        Err(_) => {
            return error_response(&ApiError::bad_request("invalid node certificate request"))
        }
    };
    match issue(&st, &parts.headers, &body) {
        Ok(cert) => json_response(200, &serde_json::json!(cert)),
        Err(e) => error_response(&e),
    }
}

fn issue(st: &AppState, _headers: &HeaderMap, body: &[u8]) -> Result<NodeCert, ApiError> {
    let Some(pki) = st.pki.as_ref() else {
        return Err(unavailable("this API server has no cluster CA"));
    };
    let req: NodeCertRequest = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid node certificate request: {e}")))?;
    if !valid_node_name(&req.node_name) {
        return Err(ApiError::bad_request(format!(
            "invalid node name {:?}",
            req.node_name
        )));
    }
    if req.addresses.is_empty() {
        return Err(ApiError::bad_request("a node certificate needs an address"));
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
