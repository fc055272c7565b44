//! The agent API: what the API server proxies `kubectl logs`, `exec`, `attach` and
//! `port-forward` to. HTTPS with a
//! serving certificate signed by the cluster CA ([`ServingCert`], requested from the API server
//! at start; the API server verifies it against that CA and the node's IP), and every request
//! must carry `Authorization: Bearer <node token>`.
//!
//! Endpoints (kubelet-like paths):
//! - `GET /containerLogs/{ns}/{pod}/{container}?follow=&tailLines=&timestamps=&previous=&sinceSeconds=&limitBytes=`
//!   → `text/plain`, streamed (chunked) while following.
//! - `GET|POST /exec/{ns}/{pod}/{container}?command=…&stdin=&stdout=&stderr=&tty=` and
//!   `GET|POST /attach/{ns}/{pod}/{container}?stdin=&stdout=&stderr=&tty=` → a remote-command
//!   session over WebSocket (`v5`/`v4`/`v4.base64`/`channel.k8s.io`/`base64.channel.k8s.io`)
//!   or SPDY/3.1 (`remotecommand`).
//! - `GET|POST /portForward/{ns}/{pod}?ports=…` → port-forward over WebSocket (tunnelled SPDY
//!   or the channel protocol) or SPDY/3.1 (`portforward`).
//! - `GET /metrics`, `GET /metrics/cadvisor` → Prometheus text (`crate::prometheus`).
//! - `GET /healthz` → `ok`; `GET /pods` → the v1 PodList of the pods bound to this node;
//!   `GET /stats/summary` → the kubelet Summary API (see [`stats`]).
//!
//! Errors are metav1 Status JSON bodies, like upstream's.

mod attach;
mod exec;
mod logs;
mod portforward;
mod remotecommand;
pub mod spdy;
pub mod stats;
mod tls;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;

use crate::{ContainerIndex, Error, Result};

pub use tls::{request as request_serving_cert, ServingCert};

/// What the agent API serves from.
#[derive(Clone)]
pub struct ApiState {
    /// skiff's data dir (containers).
    pub data_dir: PathBuf,
    /// The `skiff` executable; exec runs `skiff --data-dir D exec …`.
    pub skiff_exe: PathBuf,
    /// The node token the API server presents as a bearer token.
    pub token: String,
    pub index: Arc<dyn ContainerIndex>,
}

impl ApiState {
    pub fn new(config: &crate::AgentConfig, index: Arc<dyn ContainerIndex>) -> Self {
        Self {
            data_dir: config.data_dir.clone(),
            skiff_exe: config.skiff_exe.clone(),
            token: config.api_token.clone(),
            index,
        }
    }
}

/// A metav1 Status error response.
pub(crate) fn status_response(code: u16, reason: &str, message: &str) -> Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code});
    let status = http::StatusCode::from_u16(code).unwrap_or(http::StatusCode::BAD_REQUEST);
    (
        status,
        [(http::header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

pub(crate) fn bad_request(message: &str) -> Response {
    status_response(400, "BadRequest", message)
}

/// Query parameters as ordered pairs (`command` repeats, so no map).
pub(crate) fn query_pairs(uri: &http::Uri) -> Vec<(String, String)> {
    form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

pub(crate) fn query_flag(pairs: &[(String, String)], name: &str) -> bool {
    pairs
        .iter()
        .any(|(k, v)| k == name && matches!(v.as_str(), "true" | "1" | "True" | "TRUE"))
}

pub(crate) fn query_get<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

// Constant-time comparison so token checks do not leak prefix matches through timing.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn authenticate(State(st): State<Arc<ApiState>>, req: Request, next: Next) -> Response {
    let ok = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .is_some_and(|t| !st.token.is_empty() && ct_eq(t.trim().as_bytes(), st.token.as_bytes()));
    if !ok {
        return status_response(401, "Unauthorized", "Unauthorized");
    }
    next.run(req).await
}

/// The agent API as a router (also usable in-process).
pub fn router(state: ApiState) -> Router {
    let st = Arc::new(state);
    Router::new()
        .route("/containerLogs/{ns}/{pod}/{container}", get(logs::handle))
        .route("/metrics", get(crate::prometheus::metrics))
        .route("/metrics/cadvisor", get(crate::prometheus::cadvisor))
        .route("/healthz", get(stats::healthz))
        .route("/pods", get(stats::pods))
        .route("/stats/summary", get(stats::summary))
        .route(
            "/exec/{ns}/{pod}/{container}",
            get(exec::handle).post(exec::handle),
        )
        .route(
            "/attach/{ns}/{pod}/{container}",
            get(attach::handle).post(attach::handle),
        )
        .route(
            "/portForward/{ns}/{pod}",
            get(portforward::handle).post(portforward::handle),
        )
        .fallback(|| async {
            status_response(
                404,
                "NotFound",
                "the server could not find the requested resource",
            )
        })
        .layer(axum::middleware::from_fn_with_state(
            st.clone(),
            authenticate,
        ))
        .with_state(st)
}

/// Serves the agent API over HTTPS with `cert` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    state: ApiState,
    cert: &ServingCert,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cert.server_config()?));
    let app = router(state);
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "agent API listening (https)");
    }
    skiff_client::https::serve_https(
        listener,
        acceptor,
        skiff_client::https::HttpsOptions {
            name: "agent API",
            handshake_timeout: Duration::from_secs(10),
            accept_backoff: Duration::from_millis(50),
            drain_timeout: Duration::from_secs(2),
        },
        shutdown,
        |_| Some(()),
        move |handshake, peer, ()| {
            let app = app.clone();
            async move {
                let Some(tls) = handshake.await else {
                    return;
                };
                let service = hyper_util::service::TowerToHyperService::new(app);
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .with_upgrades();
                if let Err(err) = conn.await {
                    tracing::debug!(%peer, %err, "agent API connection ended with an error");
                }
            }
        },
    )
    .await;
    Ok(())
}

pub(crate) fn other(msg: impl std::fmt::Display) -> Error {
    Error::Other(msg.to_string())
}
