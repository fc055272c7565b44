//! The node serving-certificate endpoint: node-token holders get a certificate signed by the
//! cluster CA; anyone else is refused.

mod common;

use std::net::IpAddr;

use skiff_client::node_cert::{request, NodeCert};

fn node_client(srv: &common::TestServer, token: &str) -> kube::Client {
    let ca = std::fs::read(srv._dir.path().join("server/tls/ca.crt")).expect("CA");
    let url = {
        let text = std::fs::read_to_string(&srv.kubeconfig).expect("kubeconfig");
        let line = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("server: "))
            .expect("server line")
            .to_string();
        line
    };
    skiff_client::config::with_token(&url, &ca, token).expect("client")
}

#[tokio::test]
async fn node_token_gets_a_ca_signed_serving_certificate() {
    let srv = common::start().await;
    let token = std::fs::read_to_string(srv._dir.path().join("node-token")).expect("token");
    let client = node_client(&srv, token.trim());
    let loopback = [IpAddr::from([127, 0, 0, 1])];
    let NodeCert { cert, key } = request(&client, "n1", &loopback).await.expect("cert");
    assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"), "{cert}");
    assert!(key.contains("PRIVATE KEY"));

    // A client that trusts only the cluster CA accepts it for 127.0.0.1.
    let ca = std::fs::read(srv._dir.path().join("server/tls/ca.crt")).expect("CA");
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut &ca[..]) {
        roots.add(c.expect("pem")).expect("root");
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        std::sync::Arc::new(roots),
        provider,
    )
    .build()
    .expect("verifier");
    let der = rustls_pemfile::certs(&mut cert.as_bytes())
        .next()
        .expect("one cert")
        .expect("pem");
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
    rustls::client::danger::ServerCertVerifier::verify_server_cert(
        verifier.as_ref(),
        &der,
        &[],
        &name,
        &[],
        rustls::pki_types::UnixTime::now(),
    )
    .expect("signed by the cluster CA for 127.0.0.1");

    // Bad input is refused.
    let err = request(&client, "Not_A_Node", &loopback)
        .await
        .err()
        .expect("invalid name accepted");
    assert_eq!(common::status_code(&err), Some(400), "{err}");
    let err = request(&client, "n1", &[]).await.err().expect("no address");
    assert_eq!(common::status_code(&err), Some(400), "{err}");
}

#[tokio::test]
async fn a_wrong_token_gets_no_certificate() {
    let srv = common::start().await;
    let client = node_client(&srv, "not-the-node-token");
    let err = request(&client, "n1", &[IpAddr::from([127, 0, 0, 1])])
        .await
        .err()
        .expect("certificate without a token");
    assert_eq!(common::status_code(&err), Some(401), "{err}");
}
