//! skiff-apiserver owns the Kubernetes API server of skiff: HTTPS (rustls + the cluster CA from
//! rcgen, which also issues node agents' serving certificates and is the only CA trusted when
//! dialing them) with handshake/header/idle timeouts and a connection cap, bearer-token authentication,
//! max-in-flight limits, discovery (legacy and aggregated v2), OpenAPI v3, REST handlers for every
//! resource in `skiff_api::resources`, subresources (status, scale, binding, eviction; log/exec
//! proxied to the node agent), watch fan-out from the store, the in-process admission steps
//! (defaults, validation, managedFields, finalizers, and per-kind hooks in `hooks/`: allocation,
//! namespace lifecycle, graceful pod deletion, default tolerations) and Secrets encryption at
//! rest.
//!
//! Entry points: [`Server::bind`] + [`Server::run`] (or [`serve`]) for a real listener, and
//! [`router`] for an in-process axum router over an [`AppState`].

mod admission;
mod agent_client;
mod aggregator;
mod allocator;
pub mod auth;
pub mod authz;
pub mod bootstrap;
mod cache;
pub(crate) mod cel_rules;
mod conn;
mod crd;
mod ctx;
mod discovery;
pub mod encryption;
mod hooks;
mod inflight;
mod keys;
mod metrics;
mod namespaces;
mod node_cert;
mod objects;
mod peers;
mod plugins;
mod query;
mod respond;
mod rest;
pub use rest::componentstatus::Probe as ComponentProbe;
pub mod serviceaccount;
mod signer;
mod storage;
mod tls;
mod watch;
mod webhook;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::TokioIo;
use skiff_store::Store;
use tokio::net::TcpListener;

pub use auth::{Tokens, UserInfo};
pub use inflight::{DEFAULT_MAX_MUTATING_REQUESTS_INFLIGHT, DEFAULT_MAX_REQUESTS_INFLIGHT};

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
    /// The address written to the `kubernetes` Service's endpoints (upstream's
    /// `--advertise-address`); None = the listen address when it is a specific one, else
    /// 127.0.0.1. Pods reach the API through their node agent's relay whatever it is.
    pub advertise_address: Option<std::net::Ipv4Addr>,
    /// How often this server renews its identity Lease and the `kubernetes` Service's
    /// endpoints are checked and repaired (upstream's endpoint reconciler interval, 10 s).
    pub endpoint_reconcile_interval: Duration,
    /// leaseDurationSeconds of this server's identity Lease: a server that has not renewed for
    /// this long leaves the `kubernetes` Service's endpoints (upstream's master lease TTL, 15 s).
    pub identity_lease_duration: Duration,
    /// tolerationSeconds of the `node.kubernetes.io/not-ready` and `/unreachable` NoExecute
    /// tolerations added to new pods (upstream's DefaultTolerationSeconds admission plugin,
    /// `--default-not-ready-toleration-seconds`/`--default-unreachable-toleration-seconds`, 300).
    pub default_toleration_seconds: i64,
    /// The range Service ClusterIPs come from (`--service-cluster-ip-range`); the first usable
    /// address is the `kubernetes` Service's. Default [`DEFAULT_SERVICE_CIDR`].
    pub service_cidr: skiff_semantics::cidr::Ipv4Net,
    /// Inclusive NodePort range (`--service-node-port-range`), default 30000-32767.
    pub node_port_range: (u16, u16),
    /// A TLS handshake must finish within this (default 10 s).
    pub tls_handshake_timeout: Duration,
    /// A request's headers must arrive within this, counted from the handshake or from their
    /// first byte (upstream's ReadHeaderTimeout, 32 s).
    pub header_read_timeout: Duration,
    /// A keep-alive connection with no request is closed after this (upstream's 90 s).
    pub idle_timeout: Duration,
    /// Most connections the listener holds; see `conn.rs` for what happens at the cap.
    pub max_connections: usize,
    /// `--max-requests-inflight` (0 = unlimited).
    pub max_requests_inflight: usize,
    /// `--max-mutating-requests-inflight` (0 = unlimited).
    pub max_mutating_requests_inflight: usize,
    /// `--service-account-issuer`: `iss` of ServiceAccount tokens and the API audience
    /// (default [`serviceaccount::DEFAULT_ISSUER`]).
    pub service_account_issuer: String,
    /// `--disable-admission-plugins`: built-in admission plugins to turn off by name (e.g.
    /// `ServiceAccount` for a server run without controllers, where no `default`
    /// ServiceAccount would ever appear).
    pub disable_admission_plugins: Vec<String>,
    /// Create the default `local-path` StorageClass at startup if absent (see docs/storage.md).
    pub default_storage_class: bool,
    /// How often service-backed APIServices are checked for availability (upstream: 30 s);
    /// they are also checked after any APIService change.
    pub apiservice_check_interval: Duration,
}

/// Client certificates skiff issues for its own users (admin, controllers) last a year and are
/// renewed at start within 90 days of expiry, as k3s does.
pub const CLIENT_CERT_TTL: Duration = Duration::from_secs(365 * 24 * 3600);
pub const CLIENT_CERT_RENEW_BEFORE: Duration = Duration::from_secs(90 * 24 * 3600);

/// Default [`ServerConfig::max_connections`] (the binary derives it from RLIMIT_NOFILE).
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;

/// Default [`ServerConfig::service_cidr`]: 100.65.0.0/16.
pub const DEFAULT_SERVICE_CIDR: skiff_semantics::cidr::Ipv4Net =
    skiff_semantics::cidr::Ipv4Net::new_assert(std::net::Ipv4Addr::new(100, 65, 0, 0), 16);
/// Default [`ServerConfig::node_port_range`].
pub const DEFAULT_NODE_PORT_RANGE: (u16, u16) = (30000, 32767);

impl ServerConfig {
    /// The `kubernetes` Service's ClusterIP (the first usable address of the service CIDR).
    pub fn service_cidr_first_ip(&self) -> std::net::Ipv4Addr {
        std::net::Ipv4Addr::from(u32::from(self.service_cidr.network()).saturating_add(1))
    }

    pub fn new(data_dir: impl Into<PathBuf>, listen: SocketAddr) -> Self {
        Self {
            data_dir: data_dir.into(),
            listen,
            extra_sans: Vec::new(),
            advertise_address: None,
            endpoint_reconcile_interval: Duration::from_secs(10),
            identity_lease_duration: Duration::from_secs(15),
            default_toleration_seconds: DEFAULT_TOLERATION_SECONDS,
            service_cidr: DEFAULT_SERVICE_CIDR,
            node_port_range: DEFAULT_NODE_PORT_RANGE,
            tls_handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(32),
            idle_timeout: Duration::from_secs(90),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_requests_inflight: DEFAULT_MAX_REQUESTS_INFLIGHT,
            max_mutating_requests_inflight: DEFAULT_MAX_MUTATING_REQUESTS_INFLIGHT,
            service_account_issuer: serviceaccount::DEFAULT_ISSUER.to_string(),
            disable_admission_plugins: Vec::new(),
            default_storage_class: true,
            apiservice_check_interval: Duration::from_secs(30),
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
    #[error("issuing a client certificate: {0}")]
    ClientCert(String),
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
    /// Admission hooks by kind (`hooks::registry`).
    pub(crate) admission: admission::Registry,
    /// Service ClusterIP and NodePort ranges.
    pub(crate) ranges: allocator::Ranges,
    /// The max-in-flight pools.
    pub(crate) inflight: inflight::Limits,
    /// The OpenAPI documents of the current generation of custom kinds (`discovery::openapi_v2`).
    pub(crate) openapi: skiff_api::openapi::Cache,
    /// The cluster CA (issues and verifies node agents' certificates); None in an in-process
    /// router, which then neither issues node certificates nor proxies to agents.
    pub(crate) pki: Option<Pki>,
    /// Bearer-token authenticators beyond the static tokens (ServiceAccount JWTs).
    pub(crate) token_authenticators: Vec<Arc<dyn auth::TokenAuthenticator>>,
    /// The RBAC policy index (read by the RBAC authorizer, escalation checks and reviews).
    pub(crate) rbac: Arc<authz::rbac::Rbac>,
    /// The authorizer chain after `system:masters` (see `authz`).
    pub(crate) authorizers: Vec<Arc<dyn authz::Authorizer>>,
    /// The admission plugins (see `plugins`).
    pub(crate) plugins: Vec<Box<dyn plugins::Plugin>>,
    /// ServiceAccount token signing key, issuer and audiences.
    pub(crate) service_accounts: Arc<serviceaccount::ServiceAccounts>,
    /// Node agents running in this process, by node name: reached through an in-memory
    /// connection instead of TLS over TCP (see `agent_client`).
    pub(crate) local_agents: std::sync::RwLock<std::collections::HashMap<String, Router>>,
    /// CRDs, admission configuration and APIServices kept in memory (see `cache`).
    pub(crate) cache: Arc<cache::Cache>,
    /// The served custom kinds and the CRD controllers (see `crd`).
    pub(crate) crds: crd::Registry,
    /// API aggregation: front-proxy identity, extension servers' discovery (see `aggregator`).
    pub(crate) aggregator: aggregator::Aggregator,
    /// Health probes of the components in this process, for ComponentStatus (see
    /// `rest::componentstatus`).
    pub(crate) components: rest::componentstatus::Probes,
}

/// The cluster CA as the handlers use it.
pub(crate) struct Pki {
    material: tls::TlsMaterial,
    /// The TLS client configuration for dialing node agents.
    pub agent_tls: Arc<rustls::ClientConfig>,
    /// `server/cred/node-passwords.json`: each node name's password hash (see `node_cert`).
    pub node_passwords: PathBuf,
}

impl std::ops::Deref for Pki {
    type Target = tls::TlsMaterial;
    fn deref(&self) -> &tls::TlsMaterial {
        &self.material
    }
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
            inflight::Limits::new(
                DEFAULT_MAX_REQUESTS_INFLIGHT,
                DEFAULT_MAX_MUTATING_REQUESTS_INFLIGHT,
            ),
            None,
            // An in-process router signs with a throwaway key; only a failing system RNG
            // could make this fail.
            serviceaccount::ServiceAccounts::new(
                serviceaccount::jwt::SigningKey::generate()
                    .expect("generating an in-memory ServiceAccount signing key"),
                serviceaccount::DEFAULT_ISSUER,
                "https://127.0.0.1",
            ),
            &[],
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn with_toleration_seconds(
        store: Arc<dyn Store>,
        tokens: Tokens,
        shutdown: tokio::sync::watch::Receiver<bool>,
        default_toleration_seconds: i64,
        ranges: allocator::Ranges,
        inflight: inflight::Limits,
        pki: Option<Pki>,
        service_accounts: Arc<serviceaccount::ServiceAccounts>,
        disabled_plugins: &[String],
    ) -> Arc<Self> {
        let rbac = authz::rbac::Rbac::new();
        let mut plugins = plugins::registry();
        plugins.retain(|p| !disabled_plugins.iter().any(|d| d == p.name()));
        let cache = cache::Cache::new();
        let crds = crd::Registry::new(&cache);
        Arc::new(Self {
            store: Arc::new(metrics::InstrumentedStore(store)),
            tokens,
            shutdown,
            finalizing: Default::default(),
            admission: hooks::registry(default_toleration_seconds),
            ranges,
            inflight,
            openapi: skiff_api::openapi::Cache::default(),
            pki,
            token_authenticators: vec![Arc::new(
                serviceaccount::authn::ServiceAccountAuthenticator,
            )],
            authorizers: authz::registry(&rbac),
            rbac,
            plugins,
            service_accounts,
            local_agents: Default::default(),
            cache,
            crds,
            aggregator: Default::default(),
            components: Default::default(),
        })
    }

    /// Registers the API router of the node agent for `node` that runs in this process (the
    /// agent embedded in `skiff server`): log, exec, attach, port-forward and proxy requests
    /// for that node then skip the TLS and TCP legs. The agent still authenticates them.
    pub fn register_local_agent(&self, node: &str, router: Router) {
        if let Ok(mut agents) = self.local_agents.write() {
            agents.insert(node.to_string(), router);
        }
    }

    /// Registers the health probe of a control-plane component running in this process
    /// (`scheduler`, `controller-manager`), read by `GET /api/v1/componentstatuses`.
    pub fn register_component(&self, name: &str, probe: ComponentProbe) {
        self.components.register(name, probe);
    }

    pub(crate) fn local_agent(&self, node: &str) -> Option<Router> {
        self.local_agents.read().ok()?.get(node).cloned()
    }
}

/// Runs `tick` every `interval` (first after one interval) until the server shuts down.
pub(crate) async fn every<F, Fut>(st: Arc<AppState>, interval: Duration, mut tick: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut stop = st.shutdown.clone();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            changed = stop.changed() => {
                // The server is gone (sender dropped) or stopping.
                if changed.is_err() {
                    return;
                }
            }
        }
        if *stop.borrow() {
            return;
        }
        tick().await;
    }
}

/// The API as an axum router (all paths are dispatched by [`rest::handle`]).
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route(
            skiff_client::node_cert::PATH,
            axum::routing::post(node_cert::handle),
        )
        .route(
            skiff_client::node_identity::PATH,
            axum::routing::post(node_cert::handle_client),
        )
        .fallback(rest::handle)
        .with_state(state)
}

/// A bound, ready-to-run server.
pub struct Server {
    listener: TcpListener,
    timeouts: conn::Timeouts,
    tracker: Arc<conn::Tracker>,
    acceptor: tokio_rustls::TlsAcceptor,
    state: Arc<AppState>,
    shutdown_tx: tokio::sync::watch::Sender<bool>,
    local_addr: SocketAddr,
    kubeconfig: PathBuf,
    /// This server's identity Lease (see `peers`).
    identity: peers::Identity,
    /// Renews it and reconciles the `kubernetes` endpoints.
    peers_task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Binds the listener, prepares TLS material and tokens (created once, reused on restart),
    /// writes `<data-dir>/kubeconfig.yaml` and bootstraps the built-in namespaces.
    pub async fn bind(config: ServerConfig, store: Arc<dyn Store>) -> Result<Self, ServerError> {
        let server_dir = config.data_dir.join("server");
        private_dir(&server_dir)?;
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(io_err(format!("binding {}", config.listen)))?;
        let local_addr = listener
            .local_addr()
            .map_err(io_err("reading the listen address"))?;
        // Pods reach the API at the `kubernetes` Service's ClusterIP and names, as upstream's
        // serving certificate allows.
        let mut sans = vec![
            config.service_cidr_first_ip().to_string(),
            "kubernetes".to_string(),
            "kubernetes.default".to_string(),
            "kubernetes.default.svc".to_string(),
            "kubernetes.default.svc.cluster.local".to_string(),
        ];
        sans.extend(config.extra_sans.iter().cloned());
        let material = tls::ensure(&server_dir.join("tls"), local_addr, &sans)?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(material.server_config()?));
        let tokens = Tokens::ensure(&config.data_dir)?;
        let kubeconfig = config.data_dir.join("kubeconfig.yaml");
        let admin = material.kept_client_cert(
            &server_dir.join("tls"),
            "admin",
            auth::user::users::ADMIN,
            &[auth::user::groups::MASTERS.to_string()],
            CLIENT_CERT_TTL,
            CLIENT_CERT_RENEW_BEFORE,
        )?;
        auth::write_kubeconfig(&kubeconfig, local_addr, &material.ca_pem, &admin)?;
        let service_accounts = serviceaccount::ServiceAccounts::new(
            serviceaccount::jwt::SigningKey::load_or_create(
                &server_dir.join("service-account.key"),
            )?,
            &config.service_account_issuer,
            &auth::server_url(local_addr),
        );
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
            inflight::Limits::new(
                config.max_requests_inflight,
                config.max_mutating_requests_inflight,
            ),
            Some(Pki {
                agent_tls: Arc::new(material.agent_client_config()?),
                material,
                node_passwords: server_dir.join("cred").join("node-passwords.json"),
            }),
            service_accounts,
            &config.disable_admission_plugins,
        );
        // On a full disk these writes fail: start anyway so reads and deletes can free space.
        tolerate_full(namespaces::bootstrap(&state).await)?;
        if config.default_storage_class {
            tolerate_full(
                plugins::storageclass::ensure_default_class(&state)
                    .await
                    .map_err(ServerError::from),
            )?;
        }
        tolerate_full(allocator::repair(&state).await.map_err(ServerError::from))?;
        tokio::spawn(allocator::run_repair(
            state.clone(),
            allocator::REPAIR_INTERVAL,
        ));
        tolerate_full(
            allocator::ensure_kubernetes_service(&state, local_addr.port())
                .await
                .map_err(ServerError::from),
        )?;
        let advertise = config.advertise_address.unwrap_or(match local_addr.ip() {
            std::net::IpAddr::V4(ip) if !ip.is_unspecified() => ip,
            _ => std::net::Ipv4Addr::LOCALHOST,
        });
        // Every server sharing the store keeps an identity Lease; the `kubernetes` Service's
        // endpoints list the live ones (see `peers`), and are put back if someone changes them.
        // A lease shorter than 1.5 reconcile intervals would expire between renewals.
        let identity = peers::Identity::new(
            std::net::SocketAddrV4::new(advertise, local_addr.port()),
            config
                .identity_lease_duration
                .max(config.endpoint_reconcile_interval.mul_f64(1.5)),
        );
        tolerate_full(
            peers::reconcile(&state, &identity)
                .await
                .map_err(ServerError::from),
        )?;
        // Ends by itself once the server (its shutdown sender) is gone.
        let peers_task = tokio::spawn(peers::run(
            state.clone(),
            identity.clone(),
            config.endpoint_reconcile_interval,
        ));
        tolerate_full(bootstrap_rbac(&state).await)?;
        tolerate_full(plugins::priority::bootstrap(&state).await)?;
        // API aggregation: the front-proxy identity extension servers trust, how they learn
        // it, the built-in APIServices, then the availability controller.
        let front_proxy = aggregator::certs::ensure(&server_dir.join("tls"))?;
        if let Some(pki) = &state.pki {
            tolerate_full(
                aggregator::certs::write_config_map(&state, &pki.ca_pem, &front_proxy).await,
            )?;
        }
        state.aggregator.set_front_proxy(front_proxy);
        tolerate_full(
            aggregator::register_builtin(&state)
                .await
                .map_err(ServerError::from),
        )?;
        aggregator::start(state.clone(), config.apiservice_check_interval);
        Ok(Self {
            listener,
            timeouts: conn::Timeouts {
                handshake: config.tls_handshake_timeout,
                header: config.header_read_timeout,
                idle: config.idle_timeout,
            },
            tracker: conn::Tracker::new(config.max_connections),
            acceptor,
            state,
            shutdown_tx,
            local_addr,
            kubeconfig,
            identity,
            peers_task,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// A new client certificate for one of skiff's own components (controllers, scheduler),
    /// valid for [`CLIENT_CERT_TTL`]; kept in memory by the caller, re-issued at every start.
    pub fn component_cert(
        &self,
        user: &str,
        groups: &[String],
    ) -> Result<auth::cert::ClientCert, ServerError> {
        let pki = self
            .state
            .pki
            .as_ref()
            .ok_or_else(|| ServerError::ClientCert("no cluster CA".into()))?;
        pki.client_cert(user, groups, CLIENT_CERT_TTL)
            .map_err(|e| ServerError::ClientCert(e.to_string()))
    }

    /// The cluster CA certificate (PEM).
    pub fn ca_pem(&self) -> Option<&str> {
        self.state.pki.as_ref().map(|p| p.ca_pem.as_str())
    }

    pub fn state(&self) -> Arc<AppState> {
        self.state.clone()
    }

    /// A handle that reports the listener's open connections (tests, diagnostics).
    pub fn connections(&self) -> ConnectionCount {
        ConnectionCount(self.tracker.clone())
    }

    /// Serves HTTPS until `shutdown` completes, then ends watches and closes connections.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), ServerError> {
        let app = router(self.state.clone());
        // The CSR signer holds the CA key, so it runs with the server.
        signer::start(self.state.clone());
        // CRD status and cleanup (also started by the first request, for in-process routers).
        self.state.crds.ensure_started(&self.state);
        tracing::info!(addr = %self.local_addr, "skiff API server listening (https)");
        let shutdown_tx = self.shutdown_tx;
        let (state, identity, peers_task) = (self.state.clone(), self.identity, self.peers_task);
        let stopping = async move {
            shutdown.await;
            tracing::info!("shutting down the API server");
            // Out of the `kubernetes` endpoints first, so clients move to the other servers.
            peers_task.abort();
            let _ = peers_task.await;
            peers::leave(&state, &identity).await;
            // Ends watches before the drain.
            let _ = shutdown_tx.send(true);
        };
        let tracker = self.tracker;
        let timeouts = self.timeouts;
        skiff_client::https::serve_https(
            self.listener,
            self.acceptor,
            skiff_client::https::HttpsOptions {
                name: "apiserver",
                handshake_timeout: timeouts.handshake,
                accept_backoff: Duration::from_millis(10),
                drain_timeout: Duration::from_secs(2),
            },
            stopping,
            move |peer| {
                let admitted = tracker.admit();
                if admitted.is_none() {
                    tracing::debug!(%peer, "connection cap reached and every connection is busy; closing");
                }
                admitted
            },
            move |handshake, peer, admitted| {
                serve_connection(handshake, peer, app.clone(), admitted, timeouts)
            },
        )
        .await;
        Ok(())
    }
}

/// Open connections of a running listener.
#[derive(Clone)]
pub struct ConnectionCount(Arc<conn::Tracker>);

impl ConnectionCount {
    pub fn get(&self) -> usize {
        self.0.len()
    }
}

/// One connection: TLS handshake (bounded), then HTTP/1.1 under the watchdog, until it ends, is
/// evicted (the tracker drops its slot) or times out.
async fn serve_connection(
    handshake: skiff_client::https::Handshake,
    peer: SocketAddr,
    app: Router,
    admitted: conn::Admitted,
    timeouts: conn::Timeouts,
) {
    let conn::Admitted {
        state,
        mut killed,
        slot: _slot,
    } = admitted;
    let work = async {
        let Some(tls) = handshake.await else {
            return;
        };
        // The verified client certificate's identity holds for every request on the connection.
        let peer_user = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .and_then(|der| auth::cert::user_of(der))
            .map(|u| auth::PeerUser(Arc::new(u)));
        state.established();
        let io = conn::Tracked {
            inner: tls,
            state: state.clone(),
        };
        let svc_state = state.clone();
        let service =
            hyper::service::service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
                if let Some(u) = &peer_user {
                    req.extensions_mut().insert(u.clone());
                }
                // In flight from the headers until the response body is done (or dropped).
                let guard = svc_state.enter();
                let app = app.clone();
                async move {
                    let resp = match tower::ServiceExt::oneshot(app, req).await {
                        Ok(r) => r,
                        Err(never) => match never {},
                    };
                    let (parts, body) = resp.into_parts();
                    let body = http_body_util::BodyExt::map_frame(body, move |f| {
                        let _ = &guard;
                        f
                    });
                    Ok::<_, std::convert::Infallible>(http::Response::from_parts(
                        parts,
                        axum::body::Body::new(body),
                    ))
                }
            });
        let conn = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(io), service)
            .with_upgrades();
        tokio::select! {
            res = conn => {
                if let Err(err) = res {
                    tracing::debug!(%peer, %err, "connection ended with an error");
                }
            }
            why = conn::watchdog(state.clone(), timeouts) => {
                tracing::debug!(%peer, why, "closing the connection");
            }
        }
    };
    tokio::select! {
        _ = work => {}
        _ = &mut killed => tracing::debug!(%peer, "connection evicted at the connection cap"),
    }
}

/// Creates `dir` (and parents) and makes it 0700.
pub(crate) fn private_dir(dir: &Path) -> Result<(), ServerError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).map_err(io_err(format!("creating {}", dir.display())))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(io_err(format!("restricting {}", dir.display())))
}

fn tolerate_full(res: Result<(), ServerError>) -> Result<(), ServerError> {
    match res {
        Err(ServerError::Store(skiff_store::StoreError::Full(e))) => {
            tracing::warn!("the disk is full ({e}); starting anyway: reads and deletes work, other writes fail until space is freed");
            Ok(())
        }
        other => other,
    }
}

/// Reconciles the RBAC bootstrap policy (default roles and bindings) and waits until the
/// authorizer's index reflects it. [`Server::bind`] does this at every start; in-process
/// routers (tests) call it themselves.
pub async fn bootstrap_rbac(st: &AppState) -> Result<(), ServerError> {
    authz::rbac::bootstrap::reconcile(st).await?;
    st.rbac.ready_policy(st).await;
    st.rbac.catch_up(st.store.as_ref()).await;
    Ok(())
}

/// Binds and serves until `shutdown` completes.
pub async fn serve(
    config: ServerConfig,
    store: Arc<dyn Store>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    Server::bind(config, store).await?.run(shutdown).await
}
