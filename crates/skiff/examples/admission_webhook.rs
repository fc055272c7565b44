//! A small admission webhook server, the kind an operator ships in a pod: HTTPS with its own
//! certificate, AdmissionReview v1 in and out.
//!
//! - `POST /mutate` adds the label `greeted-by: skiff-webhook` (a JSONPatch response).
//! - `POST /validate` denies objects labelled `deny: "true"` with a message and warns about
//!   objects without an `owner` label.
//!
//! Usage: `admission_webhook CERT_PEM KEY_PEM PORT`. The webhook tests build it into an image
//! and run it behind a Service.

use std::sync::Arc;

use base64::Engine;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use serde_json::{json, Value};

/// AdmissionReviews are bounded by the API server's request size (3 MiB) plus the old object.
const MAX_BODY: usize = 8 * 1024 * 1024;

fn review_response(review: &Value, path: &str) -> Value {
    let request = &review["request"];
    let uid = request["uid"].clone();
    let labels = &request["object"]["metadata"]["labels"];
    let mut response = json!({"uid": uid, "allowed": true});
    match path {
        "/mutate" => {
            // JSONPatch: create the labels map if the object has none.
            let patch = if labels.is_object() {
                json!([{"op": "add", "path": "/metadata/labels/greeted-by", "value": "skiff-webhook"}])
            } else {
                json!([{"op": "add", "path": "/metadata/labels", "value": {"greeted-by": "skiff-webhook"}}])
            };
            let bytes = serde_json::to_vec(&patch).unwrap_or_default();
            response["patchType"] = json!("JSONPatch");
            response["patch"] = json!(base64::engine::general_purpose::STANDARD.encode(bytes));
        }
        _ => {
            if labels["deny"] == "true" {
                response["allowed"] = json!(false);
                response["status"] = json!({
                    "code": 403,
                    "message": "objects labelled deny=true are not welcome here",
                });
            } else if labels.get("owner").is_none() {
                response["warnings"] = json!(["this object has no owner label"]);
            }
        }
    }
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response})
}

async fn handle(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let path = req.uri().path().to_string();
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Ok(plain(StatusCode::PAYLOAD_TOO_LARGE, "body too large")),
    };
    let Ok(review) = serde_json::from_slice::<Value>(&body) else {
        return Ok(plain(StatusCode::BAD_REQUEST, "not an AdmissionReview"));
    };
    let out = serde_json::to_vec(&review_response(&review, &path)).unwrap_or_default();
    Ok(Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(out)))
        .unwrap_or_else(|_| plain(StatusCode::INTERNAL_SERVER_ERROR, "response")))
}

fn plain(code: StatusCode, msg: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(msg.as_bytes())));
    *r.status_mut() = code;
    r
}

fn tls_config(cert: &str, key: &str) -> Result<rustls::ServerConfig, Box<dyn std::error::Error>> {
    let certs = rustls_pemfile::certs(&mut std::io::BufReader::new(std::fs::File::open(cert)?))
        .collect::<Result<Vec<_>, _>>()?;
    let key = rustls_pemfile::private_key(&mut std::io::BufReader::new(std::fs::File::open(key)?))?
        .ok_or("no private key in the key file")?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, cert, key, port] = args.as_slice() else {
        return Err("usage: admission_webhook CERT_PEM KEY_PEM PORT".into());
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls_config(cert, key)?));
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", port.parse::<u16>()?)).await?;
    eprintln!("admission webhook listening on :{port}");
    loop {
        let (tcp, _) = listener.accept().await?;
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let io = hyper_util::rt::TokioIo::new(tls);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, hyper::service::service_fn(handle))
                .await;
        });
    }
}
