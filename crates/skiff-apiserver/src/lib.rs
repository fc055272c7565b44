//! skiff-apiserver owns the Kubernetes API server of skiff: HTTPS (rustls + a self-signed CA from
//! rcgen), bearer-token authentication, discovery (legacy and aggregated v2), OpenAPI v3, REST
//! handlers for every resource in `skiff_api::resources`, subresources (status, scale, binding,
//! eviction; log/exec behind a node-proxy seam), watch fan-out from the store, and the in-process
//! admission steps (defaults, validation, managedFields, finalizers, namespace lifecycle).
//!
//! Entry points: [`Server::bind`] + [`Server::run`] (or [`serve`]) for a real listener, and
//! [`router`] for an in-process axum router over an [`AppState`].

mod agent_client;
mod allocator;
mod auth;
mod discovery;
mod keys;
mod namespaces;
mod query;
mod respond;
mod rest;
mod subresources;
mod tls;
mod watch;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::TokioIo;
use skiff_store::Store;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

pub use auth::Tokens;

/// Upstream's default for [`ServerConfig::default_toleration_seconds`].
pub const DEFAULT_TOLERATION_SECONDS: i64 = 300;

/// Where and how the server runs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The skiff data dir: `server/` (TLS material, tokens), `kubeconfig.yaml`, `node-token`.
    pub data_dir: PathBuf,
    /// HTTPS listen address (port 0 picks a free port; see [`Server::local_addr`]).
    pub listen: SocketAddr,
    /// Extra DNS names / IPs for the serving certificate.
    pub extra_sans: Vec<String>,
    /// tolerationSeconds of the `node.kubernetes.io/not-ready` and `/unreachable` NoExecute
    /// tolerations added to new pods (upstream's DefaultTolerationSeconds admission plugin,
    /// `--default-not-ready-toleration-seconds`/`--default-unreachable-toleration-seconds`, 300).
    pub default_toleration_seconds: i64,
    /// The range Service ClusterIPs come from (`--service-cluster-ip-range`); the first usable
    /// address is the `kubernetes` Service's. Default [`DEFAULT_SERVICE_CIDR`].
    pub service_cidr: (std::net::Ipv4Addr, u8),
    /// Inclusive NodePort range (`--service-node-port-range`), default 30000-32767.
    pub node_port_range: (u16, u16),
}

/// Default [`ServerConfig::service_cidr`]: 100.65.0.0/16.
pub const DEFAULT_SERVICE_CIDR: (std::net::Ipv4Addr, u8) =
    (std::net::Ipv4Addr::new(100, 65, 0, 0), 16);
/// Default [`ServerConfig::node_port_range`].
pub const DEFAULT_NODE_PORT_RANGE: (u16, u16) = (30000, 32767);

impl ServerConfig {
    pub fn new(data_dir: impl Into<PathBuf>, listen: SocketAddr) -> Self {
        Self {
            data_dir: data_dir.into(),
            listen,
            extra_sans: Vec::new(),
            default_toleration_seconds: DEFAULT_TOLERATION_SECONDS,
            service_cidr: DEFAULT_SERVICE_CIDR,
            node_port_range: DEFAULT_NODE_PORT_RANGE,
        }
    }
}

/// Errors starting or running the server (request errors are `skiff_api::ApiError`s).
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("generating certificates: {0}")]
    Cert(#[from] rcgen::Error),
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("invalid TLS material in {0}")]
    BadPem(PathBuf),
    #[error("store: {0}")]
    Store(#[from] skiff_store::StoreError),
}

pub(crate) fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ServerError {
    let context = context.into();
    move |source| ServerError::Io { context, source }
}

/// Shared state of all handlers.
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub tokens: Tokens,
    /// Flips to true on shutdown so long-running watches end.
    pub(crate) shutdown: tokio::sync::watch::Receiver<bool>,
    /// Namespaces whose in-process finalizer task is running.
    pub(crate) finalizing: std::sync::Mutex<std::collections::HashSet<String>>,
    /// See [`ServerConfig::default_toleration_seconds`].
    pub(crate) default_toleration_seconds: i64,
    /// Service ClusterIP and NodePort ranges.
    pub(crate) ranges: allocator::Ranges,
}

impl AppState {
    /// State for an in-process router (tests); `shutdown` ends watches when it flips to true.
    pub fn new(
        store: Arc<dyn Store>,
        tokens: Tokens,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Arc<Self> {
        Self::with_toleration_seconds(
            store,
            tokens,
            shutdown,
            DEFAULT_TOLERATION_SECONDS,
            allocator::Ranges {
                cidr: DEFAULT_SERVICE_CIDR,
                node_ports: DEFAULT_NODE_PORT_RANGE,
            },
        )
    }

    fn with_toleration_seconds(
        store: Arc<dyn Store>,
        tokens: Tokens,
        shutdown: tokio::sync::watch::Receiver<bool>,
        default_toleration_seconds: i64,
        ranges: allocator::Ranges,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            tokens,
            shutdown,
            finalizing: Default::default(),
            default_toleration_seconds,
            ranges,
        })
    }
}

/// The API as an axum router (all paths are dispatched by [`rest::handle`]).
pub fn router(state: Arc<AppState>) -> Router {
    Router::new().fallback(rest::handle).with_state(state)
}

/// A bound, ready-to-run server.
pub struct Server {
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    state: Arc<AppState>,
    shutdown_tx: tokio::sync::watch::Sender<bool>,
    local_addr: SocketAddr,
    kubeconfig: PathBuf,
}

impl Server {
    /// Binds the listener, prepares TLS material and tokens (created once, reused on restart),
    /// writes `<data-dir>/kubeconfig.yaml` and bootstraps the built-in namespaces.
    pub async fn bind(config: ServerConfig, store: Arc<dyn Store>) -> Result<Self, ServerError> {
        let server_dir = config.data_dir.join("server");
        std::fs::create_dir_all(&server_dir)
            .map_err(io_err(format!("creating {}", server_dir.display())))?;
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(io_err(format!("binding {}", config.listen)))?;
        let local_addr = listener
            .local_addr()
            .map_err(io_err("reading the listen address"))?;
        let material = tls::ensure(&server_dir.join("tls"), local_addr, &config.extra_sans)?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(material.server_config()?));
        let tokens = Tokens::ensure(&config.data_dir)?;
        let kubeconfig = config.data_dir.join("kubeconfig.yaml");
        auth::write_kubeconfig(&kubeconfig, local_addr, &material.ca_pem, &tokens.admin)?;
        let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
        let state = AppState::with_toleration_seconds(
            store,
            tokens,
            shutdown_rx,
            config.default_toleration_seconds,
            allocator::Ranges {
                cidr: config.service_cidr,
                node_ports: config.node_port_range,
            },
        );
        namespaces::bootstrap(&state).await?;
        allocator::repair(&state).await?;
        allocator::ensure_kubernetes_service(&state, local_addr.port()).await?;
        Ok(Self {
            listener,
            acceptor,
            state,
            shutdown_tx,
            local_addr,
            kubeconfig,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    pub fn state(&self) -> Arc<AppState> {
        self.state.clone()
    }

    /// Serves HTTPS until `shutdown` completes, then ends watches and closes connections.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ServerError> {
        let app = router(self.state.clone());
        let mut conns = JoinSet::new();
        tokio::pin!(shutdown);
        tracing::info!(addr = %self.local_addr, "skiff API server listening (https)");
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
                accepted = self.listener.accept() => {
                    let (tcp, peer) = match accepted {
                        Ok(x) => x,
                        Err(err) => {
                            tracing::warn!(%err, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let _ = tcp.set_nodelay(true);
                    let acceptor = self.acceptor.clone();
                    let app = app.clone();
                    conns.spawn(async move {
                        let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                            Ok(Ok(tls)) => tls,
                            Ok(Err(err)) => {
                                tracing::debug!(%peer, %err, "TLS handshake failed");
                                return;
                            }
                            Err(_) => return,
                        };
                        let service = hyper_util::service::TowerToHyperService::new(app);
                        let conn = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(tls), service)
                            .with_upgrades();
                        if let Err(err) = conn.await {
                            tracing::debug!(%peer, %err, "connection ended with an error");
                        }
                    });
                }
            }
        }
        tracing::info!("shutting down the API server");
        let _ = self.shutdown_tx.send(true);
        // Give in-flight requests a moment, then drop idle keep-alive connections.
        let drain = async { while conns.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_secs(2), drain)
            .await
            .is_err()
        {
            conns.abort_all();
        }
        Ok(())
    }
}

/// Binds and serves until `shutdown` completes.
pub async fn serve(
    config: ServerConfig,
    store: Arc<dyn Store>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    Server::bind(config, store).await?.run(shutdown).await
}
