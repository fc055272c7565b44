//! How a node agent gets its serving certificate from the cluster CA (as k3s agents get their
//! kubelet serving certificate): POST the node name and addresses to [`PATH`] on the API server
//! with the node token; the answer is a certificate and key, signed by the cluster CA, that the
//! API server verifies when it dials the agent. The API server implements the other side.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// Where agents ask for their certificate.
pub const PATH: &str = "/v1-skiff/node-serving-cert";

/// The request body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeCertRequest {
    pub node_name: String,
    /// The addresses the API server reaches the agent on (the node's InternalIP).
    pub addresses: Vec<IpAddr>,
}

/// The response body: PEM certificate and private key.
#[derive(Clone, Serialize, Deserialize)]
pub struct NodeCert {
    pub cert: String,
    pub key: String,
}

/// Asks the API server behind `client` (authenticated as a node) for a serving certificate.
pub async fn request(
    client: &kube::Client,
    node_name: &str,
    addresses: &[IpAddr],
) -> Result<NodeCert, kube::Error> {
    let body = NodeCertRequest {
        node_name: node_name.to_string(),
        addresses: addresses.to_vec(),
    };
    let body = serde_json::to_vec(&body).map_err(kube::Error::SerdeError)?;
    let req = http::Request::post(PATH)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(body)
        .map_err(kube::Error::HttpError)?;
    client.request::<NodeCert>(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_wire_shape() {
        let req = NodeCertRequest {
            node_name: "n1".into(),
            addresses: vec!["10.0.0.1".parse().unwrap()],
        };
        assert_eq!(
            serde_json::to_value(&req).unwrap(),
            serde_json::json!({"nodeName": "n1", "addresses": ["10.0.0.1"]})
        );
    }
}
