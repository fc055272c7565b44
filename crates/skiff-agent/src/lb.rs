//! The agent's client-side load balancer over the API servers (like k3s's agent load balancer
//! on 127.0.0.1:6444). Every API client of the agent — node identity, registration, Lease
//! heartbeats, pod workers, watches, and the pods' API relay — dials this local TCP listener,
//! which forwards each connection to one healthy server. TLS stays end to end between the
//! client and the server: the LB only splices bytes, so the clients verify `127.0.0.1`, a SAN
//! every skiff serving certificate carries.
//!
//! Connections stick to the current server while it is healthy; a connect failure or timeout
//! moves to the next one. A background check dials every server each interval — with the
//! cluster CA, a TLS `GET /readyz` that must answer 200 from a certificate of this cluster, so
//! a wedged process or another cluster's server on a listed address does not count as up —;
//! a server that fails it (or a dial) is marked down and every connection to it is closed at
//! once, so long watches reconnect to a healthy server instead of waiting for TCP keep-alives. The server
//! list is the `--server` URLs (kept as fall-backs forever) plus the addresses of the
//! `kubernetes` Service's EndpointSlices and Endpoints ([`follow_endpoints`]), persisted in the agent's data
//! dir so a restarted agent knows every server even when the first one is down.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Endpoints;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::watcher;
use kube::Api;
use tokio::net::{TcpListener, TcpStream};

/// The name the health check verifies: every skiff serving certificate carries it, whatever
/// address the server listens on.
const CHECK_SERVER_NAME: &str = "kubernetes.default.svc";
/// The default local port (k3s's agent uses the same).
pub const DEFAULT_PORT: u16 = 6444;
/// Connections forwarded at once; more wait in the listen backlog. Room for every connection
/// the pods' API relay may hold plus the agent's own, so pods cannot crowd out the node's
/// heartbeats.
const MAX_CONNECTIONS: usize = crate::relay::MAX_CONNECTIONS + 256;
/// Servers kept at most (a bound on what an EndpointSlice or the state file can make us dial).
const MAX_SERVERS: usize = 64;
/// The persisted list is tiny; a bigger file is not ours.
const MAX_STATE_FILE: u64 = 64 << 10;

/// Errors starting the load balancer.
#[derive(Debug, thiserror::Error)]
pub enum LbError {
    #[error("listening on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("no API server address given")]
    NoServers,
    #[error("the cluster CA for the health check: {0}")]
    BadCa(String),
}

/// Timings of the load balancer.
#[derive(Debug, Clone)]
pub struct LbConfig {
    /// Where clients connect (127.0.0.1:6444 by default; port 0 picks a free one).
    pub listen: SocketAddr,
    /// How long one dial to a server may take before the next server is tried.
    pub connect_timeout: Duration,
    /// How often every server is dialled by the health check.
    pub health_interval: Duration,
    /// How long one health check may take (dial, TLS handshake, `/readyz`).
    pub check_timeout: Duration,
    /// Failed health checks in a row that mark a server down (a dial failure for a client
    /// connection marks it down at once).
    pub failures_to_down: u32,
    /// The cluster CA (PEM): the health check is then a TLS `GET /readyz` verified against
    /// it; None: a TCP connect.
    pub ca_pem: Option<Vec<u8>>,
    /// Where the discovered server list is kept (None: not persisted).
    pub state_file: Option<PathBuf>,
}

impl LbConfig {
    pub fn new(listen: SocketAddr, state_file: Option<PathBuf>) -> Self {
        LbConfig {
            listen,
            connect_timeout: Duration::from_secs(2),
            health_interval: Duration::from_secs(1),
            check_timeout: Duration::from_secs(2),
            failures_to_down: 2,
            ca_pem: None,
            state_file,
        }
    }
}

/// What the load balancer knows about one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInfo {
    /// `host:port`.
    pub addr: String,
    pub healthy: bool,
    /// One of the `--server` addresses (never removed).
    pub fallback: bool,
}

struct Backend {
    addr: String,
    healthy: bool,
    failures: u32,
    /// Bumped when the server goes down or leaves the list: its connections close.
    down: tokio::sync::watch::Sender<u64>,
}

impl Backend {
    fn new(addr: String) -> Self {
        Backend {
            addr,
            healthy: true,
            failures: 0,
            down: tokio::sync::watch::channel(0).0,
        }
    }

    fn close_connections(&self) {
        self.down.send_modify(|g| *g = g.wrapping_add(1));
    }
}

struct State {
    fallbacks: Vec<String>,
    /// Fall-backs first, then the discovered servers.
    backends: Vec<Backend>,
    current: Option<String>,
}

struct Inner {
    config: LbConfig,
    tls: Option<tokio_rustls::TlsConnector>,
    state: Mutex<State>,
}

/// A running load balancer; cheap to clone. It stops when the `stop` given to
/// [`LoadBalancer::start`] turns true.
#[derive(Clone)]
pub struct LoadBalancer {
    inner: Arc<Inner>,
    local: SocketAddr,
}

#[derive(serde::Serialize, serde::Deserialize, Default)]
struct Persisted {
    servers: Vec<String>,
}

/// `host:port` for a server given as an `https://host:port` URL or as `host:port`.
pub fn server_addr(server: &str) -> Option<String> {
    if server.contains("://") {
        crate::relay::authority(server)
    } else if server.is_empty() || server.contains('/') {
        None
    } else {
        Some(server.to_string())
    }
}

fn read_persisted(path: &Path) -> Vec<String> {
    use std::io::Read;
    let Ok(file) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let mut text = String::new();
    if file.take(MAX_STATE_FILE).read_to_string(&mut text).is_err() {
        return Vec::new();
    }
    match serde_json::from_str::<Persisted>(&text) {
        Ok(p) => p.servers,
        Err(e) => {
            tracing::warn!(path = %path.display(), "ignoring the kept API server list: {e}");
            Vec::new()
        }
    }
}

impl LoadBalancer {
    /// Binds the listener and starts forwarding and health checks. `servers` are the
    /// `--server` URLs (or `host:port`s); the list kept in `config.state_file` joins them.
    pub async fn start(
        config: LbConfig,
        servers: &[String],
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> Result<Self, LbError> {
        let mut fallbacks: Vec<String> = Vec::new();
        for s in servers.iter().filter_map(|s| server_addr(s.trim())) {
            if !fallbacks.contains(&s) {
                fallbacks.push(s);
            }
        }
        if fallbacks.is_empty() {
            return Err(LbError::NoServers);
        }
        let tls = config.ca_pem.as_deref().map(tls_connector).transpose()?;
        let kept = config
            .state_file
            .as_deref()
            .map(read_persisted)
            .unwrap_or_default();
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| LbError::Listen {
                    addr: config.listen,
                    source,
                })?;
        let local = listener.local_addr().map_err(|source| LbError::Listen {
            addr: config.listen,
            source,
        })?;
        let backends = fallbacks.iter().cloned().map(Backend::new).collect();
        let lb = LoadBalancer {
            inner: Arc::new(Inner {
                config,
                tls,
                state: Mutex::new(State {
                    fallbacks,
                    backends,
                    current: None,
                }),
            }),
            local,
        };
        lb.apply_discovered(kept, false);
        tracing::info!(listen = %local, servers = ?lb.servers().iter().map(|s| &s.addr).collect::<Vec<_>>(), "API server load balancer started");
        tokio::spawn(lb.clone().accept_loop(listener, stop.clone()));
        tokio::spawn(lb.clone().health_loop(stop));
        Ok(lb)
    }

    /// The listener's address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The URL the agent's clients use: `https://127.0.0.1:<port>` (or the listen address).
    pub fn url(&self) -> String {
        let ip = if self.local.ip().is_unspecified() {
            std::net::IpAddr::from(std::net::Ipv4Addr::LOCALHOST)
        } else {
            self.local.ip()
        };
        format!("https://{}", SocketAddr::new(ip, self.local.port()))
    }

    /// Every server with its health, fall-backs first.
    pub fn servers(&self) -> Vec<ServerInfo> {
        let st = self.lock();
        st.backends
            .iter()
            .map(|b| ServerInfo {
                addr: b.addr.clone(),
                healthy: b.healthy,
                fallback: st.fallbacks.contains(&b.addr),
            })
            .collect()
    }

    /// The server new connections go to while it stays healthy.
    pub fn current(&self) -> Option<String> {
        self.lock().current.clone()
    }

    /// Replaces the discovered servers (`host:port`s, e.g. from the `kubernetes` Service's
    /// EndpointSlices) and persists them. The fall-backs stay; an empty list is ignored (an
    /// EndpointSlice between two writes must not make the agent forget its servers).
    /// Connections to servers that left the list are closed.
    pub fn set_servers(&self, servers: Vec<String>) {
        if servers.is_empty() {
            return;
        }
        self.apply_discovered(servers, true);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn apply_discovered(&self, servers: Vec<String>, persist: bool) {
        let mut discovered: Vec<String> = Vec::new();
        for s in servers.into_iter().filter_map(|s| server_addr(s.trim())) {
            if !discovered.contains(&s) && discovered.len() < MAX_SERVERS {
                discovered.push(s);
            }
        }
        let changed = {
            let mut st = self.lock();
            let mut want: Vec<String> = st.fallbacks.clone();
            for d in &discovered {
                if !want.contains(d) {
                    want.push(d.clone());
                }
            }
            let before: Vec<&str> = st.backends.iter().map(|b| b.addr.as_str()).collect();
            if before == want.iter().map(String::as_str).collect::<Vec<_>>() {
                false
            } else {
                let mut old: Vec<Backend> = std::mem::take(&mut st.backends);
                let mut next = Vec::with_capacity(want.len());
                for addr in want {
                    match old.iter().position(|b| b.addr == addr) {
                        Some(i) => next.push(old.swap_remove(i)),
                        None => next.push(Backend::new(addr)),
                    }
                }
                for gone in &old {
                    tracing::info!(server = %gone.addr, "API server left the list");
                    gone.close_connections();
                    if st.current.as_deref() == Some(gone.addr.as_str()) {
                        st.current = None;
                    }
                }
                st.backends = next;
                true
            }
        };
        if changed && persist {
            tracing::info!(servers = ?discovered, "API server list updated");
            if let Some(path) = &self.inner.config.state_file {
                let body = Persisted {
                    servers: discovered,
                };
                match serde_json::to_vec_pretty(&body) {
                    Ok(bytes) => {
                        if let Some(dir) = path.parent() {
                            let _ = std::fs::create_dir_all(dir);
                        }
                        if let Err(e) = skiff_client::fs::write_private(path, &bytes) {
                            tracing::warn!(path = %path.display(), "keeping the API server list: {e}");
                        }
                    }
                    Err(e) => tracing::warn!("encoding the API server list: {e}"),
                }
            }
        }
    }

    /// Records a health result; a server going down loses its connections.
    fn mark(&self, addr: &str, ok: bool, immediately: bool) {
        let mut st = self.lock();
        let threshold = self.inner.config.failures_to_down.max(1);
        let State {
            backends, current, ..
        } = &mut *st;
        let Some(b) = backends.iter_mut().find(|b| b.addr == addr) else {
            return;
        };
        if ok {
            b.failures = 0;
            if !b.healthy {
                tracing::info!(server = %addr, "API server is up");
                b.healthy = true;
            }
            return;
        }
        b.failures = b.failures.saturating_add(1);
        if b.healthy && (immediately || b.failures >= threshold) {
            tracing::warn!(server = %addr, "API server is down; closing its connections");
            b.healthy = false;
            b.close_connections();
            if current.as_deref() == Some(addr) {
                *current = None;
            }
        }
    }

    /// The order to try servers in: the current one, the other healthy ones, then the rest
    /// (a stale check must not leave the agent with nothing to try).
    fn candidates(&self) -> Vec<(String, tokio::sync::watch::Receiver<u64>)> {
        let st = self.lock();
        let mut out: Vec<(String, tokio::sync::watch::Receiver<u64>)> = Vec::new();
        let healthy_current = st
            .current
            .as_deref()
            .and_then(|c| st.backends.iter().find(|b| b.addr == c && b.healthy));
        if let Some(b) = healthy_current {
            out.push((b.addr.clone(), b.down.subscribe()));
        }
        for pass_healthy in [true, false] {
            for b in st.backends.iter().filter(|b| b.healthy == pass_healthy) {
                if !out.iter().any(|(a, _)| *a == b.addr) {
                    out.push((b.addr.clone(), b.down.subscribe()));
                }
            }
        }
        out
    }

    async fn dial(&self) -> Option<(TcpStream, String, tokio::sync::watch::Receiver<u64>)> {
        let timeout = self.inner.config.connect_timeout;
        for (addr, down) in self.candidates() {
            match tokio::time::timeout(timeout, TcpStream::connect(addr.as_str())).await {
                Ok(Ok(stream)) => {
                    let mut st = self.lock();
                    if st.current.as_deref() != Some(addr.as_str()) {
                        tracing::info!(server = %addr, "API connections now go to this server");
                        st.current = Some(addr.clone());
                    }
                    // Only the health check marks a server up: a wedged process still
                    // completes TCP handshakes from its listen backlog.
                    return Some((stream, addr, down));
                }
                Ok(Err(e)) => tracing::debug!(server = %addr, "dialling the API server: {e}"),
                Err(_) => tracing::debug!(server = %addr, "dialling the API server timed out"),
            }
            self.mark(&addr, false, true);
        }
        None
    }

    async fn accept_loop(
        self,
        listener: TcpListener,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
        let mut tasks = tokio::task::JoinSet::new();
        loop {
            if *stop.borrow() {
                return;
            }
            let permit = tokio::select! {
                p = slots.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => return,
                },
                r = stop.changed() => {
                    if r.is_err() { return; }
                    continue;
                }
            };
            let accepted = tokio::select! {
                a = listener.accept() => a,
                r = stop.changed() => {
                    if r.is_err() { return; }
                    continue;
                }
            };
            while tasks.try_join_next().is_some() {}
            match accepted {
                Ok((client, _)) => {
                    let lb = self.clone();
                    tasks.spawn(async move {
                        let _permit = permit;
                        lb.forward(client).await;
                    });
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!("API load balancer accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    async fn forward(&self, mut client: TcpStream) {
        let Some((mut server, addr, mut down)) = self.dial().await else {
            tracing::warn!("no API server reachable; closing the connection");
            return;
        };
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        tokio::select! {
            r = tokio::io::copy_bidirectional(&mut client, &mut server) => {
                if let Err(e) = r {
                    tracing::debug!(server = %addr, "API connection: {e}");
                }
            }
            // The server went down or left the list: drop both sides so the client reconnects.
            _ = down.changed() => {}
        }
    }

    async fn health_loop(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let interval = self.inner.config.health_interval;
        let timeout = self.inner.config.check_timeout;
        loop {
            let addrs: Vec<String> = self
                .lock()
                .backends
                .iter()
                .map(|b| b.addr.clone())
                .collect();
            let tls = self.inner.tls.as_ref();
            let checks = addrs.into_iter().map(|addr| async move {
                let ok = probe(&addr, timeout, tls).await;
                (addr, ok)
            });
            let results = tokio::select! {
                r = futures::future::join_all(checks) => r,
                r = stop.changed() => {
                    if r.is_err() || *stop.borrow() { return; }
                    continue;
                }
            };
            for (addr, ok) in results {
                self.mark(&addr, ok, false);
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                r = stop.changed() => {
                    if r.is_err() || *stop.borrow() { return; }
                }
            }
        }
    }
}

fn tls_connector(ca_pem: &[u8]) -> Result<tokio_rustls::TlsConnector, LbError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut &ca_pem[..]) {
        let cert = cert.map_err(|e| LbError::BadCa(e.to_string()))?;
        roots.add(cert).map_err(|e| LbError::BadCa(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(LbError::BadCa("no certificate in the CA file".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| LbError::BadCa(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// One health check of `addr`: a TCP connect, or with `tls` a verified TLS `GET /readyz`
/// answered 200 (anonymous: every server lets anyone read it).
async fn probe(addr: &str, timeout: Duration, tls: Option<&tokio_rustls::TlsConnector>) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let check = async {
        let tcp = TcpStream::connect(addr).await.ok()?;
        let Some(tls) = tls else {
            return Some(true);
        };
        let name = rustls::pki_types::ServerName::try_from(CHECK_SERVER_NAME).ok()?;
        let mut stream = tls.connect(name, tcp).await.ok()?;
        let request = format!(
            "GET /readyz HTTP/1.1\r\nHost: {CHECK_SERVER_NAME}\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.ok()?;
        // The status line is all we need; read at most a small buffer.
        let mut buf = [0u8; 32];
        let mut got = 0;
        while got < 12 {
            let n = stream.read(&mut buf[got..]).await.ok()?;
            if n == 0 {
                break;
            }
            got += n;
        }
        let status = &buf[..got];
        Some(status.starts_with(b"HTTP/1.1 200") || status.starts_with(b"HTTP/1.0 200"))
    };
    matches!(tokio::time::timeout(timeout, check).await, Ok(Some(true)))
}

/// `host:port` of every ready endpoint of the `kubernetes` Service's EndpointSlices, on the
/// port named `https` (or the only port), sorted.
pub fn servers_from_slices<'a>(slices: impl IntoIterator<Item = &'a EndpointSlice>) -> Vec<String> {
    let mut out = Vec::new();
    for slice in slices {
        let ports = slice.ports.as_deref().unwrap_or_default();
        let port = api_port(ports, |p| p.name.as_deref(), |p| p.port);
        let Some(port) = port else {
            continue;
        };
        for ep in &slice.endpoints {
            let ready = ep.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
            if !ready {
                continue;
            }
            for a in &ep.addresses {
                let Ok(ip) = a.parse::<std::net::IpAddr>() else {
                    continue;
                };
                out.push(SocketAddr::new(ip, port).to_string());
            }
        }
    }
    out.sort();
    out.dedup();
    out.truncate(MAX_SERVERS);
    out
}

/// `host:port` of every ready address of the `kubernetes` Endpoints, on each subset's port
/// named `https` (or its only port), sorted.
pub fn servers_from_endpoints<'a>(
    endpoints: impl IntoIterator<Item = &'a Endpoints>,
) -> Vec<String> {
    let mut out = Vec::new();
    for subset in endpoints
        .into_iter()
        .flat_map(|e| e.subsets.as_deref().unwrap_or_default())
    {
        let ports = subset.ports.as_deref().unwrap_or_default();
        let port = api_port(ports, |p| p.name.as_deref(), |p| Some(p.port));
        let Some(port) = port else {
            continue;
        };
        for a in subset.addresses.as_deref().unwrap_or_default() {
            if let Ok(ip) = a.ip.parse::<std::net::IpAddr>() {
                out.push(SocketAddr::new(ip, port).to_string());
            }
        }
    }
    out.sort();
    out.dedup();
    out.truncate(MAX_SERVERS);
    out
}

/// The API server's port among a slice's or subset's ports: the one named `https`, or the only one.
fn api_port<P>(
    ports: &[P],
    name: impl Fn(&P) -> Option<&str>,
    number: impl Fn(&P) -> Option<i32>,
) -> Option<u16> {
    let chosen = match ports.iter().find(|p| name(p) == Some("https")) {
        Some(p) => p,
        None if ports.len() == 1 => ports.first()?,
        None => return None,
    };
    number(chosen).and_then(|n| u16::try_from(n).ok())
}

/// The objects one watch currently sees, by name; a re-list replaces them only when complete.
struct Seen<K> {
    now: std::collections::BTreeMap<String, K>,
    listing: std::collections::BTreeMap<String, K>,
}

impl<K: kube::Resource> Seen<K> {
    fn new() -> Self {
        Seen {
            now: Default::default(),
            listing: Default::default(),
        }
    }

    /// Applies one watch event; true when what is seen may have changed.
    fn apply(&mut self, ev: watcher::Event<K>) -> bool {
        let key = |o: &K| o.meta().name.clone().unwrap_or_default();
        match ev {
            watcher::Event::Init => {
                self.listing.clear();
                false
            }
            watcher::Event::InitApply(o) => {
                self.listing.insert(key(&o), o);
                false
            }
            watcher::Event::InitDone => {
                self.now = std::mem::take(&mut self.listing);
                true
            }
            watcher::Event::Apply(o) => {
                self.now.insert(key(&o), o);
                true
            }
            watcher::Event::Delete(o) => {
                self.now.remove(&key(&o));
                true
            }
        }
    }
}

/// Keeps `lb`'s server list current from the `kubernetes` Service's EndpointSlices and
/// Endpoints in `default` (the union of both: every live server publishes itself there)
/// until `stop` turns true.
pub async fn follow_endpoints(
    client: kube::Client,
    lb: LoadBalancer,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let slices_api: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let eps_api: Api<Endpoints> = Api::namespaced(client, "default");
    let mut slice_events = watcher(
        slices_api,
        watcher::Config::default().labels("kubernetes.io/service-name=kubernetes"),
    )
    .boxed();
    let mut eps_events = watcher(
        eps_api,
        watcher::Config::default().fields("metadata.name=kubernetes"),
    )
    .boxed();
    let mut slices = Seen::<EndpointSlice>::new();
    let mut eps = Seen::<Endpoints>::new();
    loop {
        let changed = tokio::select! {
            ev = slice_events.next() => match ev {
                Some(Ok(ev)) => slices.apply(ev),
                Some(Err(e)) => {
                    tracing::debug!("watching the kubernetes EndpointSlices: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    false
                }
                None => return,
            },
            ev = eps_events.next() => match ev {
                Some(Ok(ev)) => eps.apply(ev),
                Some(Err(e)) => {
                    tracing::debug!("watching the kubernetes Endpoints: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    false
                }
                None => return,
            },
            r = stop.changed() => {
                if r.is_err() || *stop.borrow() { return; }
                false
            }
        };
        if changed {
            let mut servers = servers_from_slices(slices.now.values());
            servers.extend(servers_from_endpoints(eps.now.values()));
            servers.sort();
            servers.dedup();
            servers.truncate(MAX_SERVERS);
            lb.set_servers(servers);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_addresses() {
        assert_eq!(
            server_addr("https://10.0.0.1:6443").as_deref(),
            Some("10.0.0.1:6443")
        );
        assert_eq!(
            server_addr("10.0.0.2:6443").as_deref(),
            Some("10.0.0.2:6443")
        );
        assert_eq!(
            server_addr("https://h.example").as_deref(),
            Some("h.example:443")
        );
        assert_eq!(server_addr(""), None);
        assert_eq!(server_addr("a/b"), None);
    }

    #[test]
    fn endpoints_give_ready_https_addresses_per_subset() {
        let eps: Endpoints = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "kubernetes", "namespace": "default"},
            "subsets": [
                {"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}],
                 "notReadyAddresses": [{"ip": "10.0.0.9"}],
                 "ports": [{"name": "https", "port": 6443}]},
                {"addresses": [{"ip": "127.0.0.1"}], "ports": [{"port": 7443}]},
                {"addresses": [{"ip": "10.0.0.5"}],
                 "ports": [{"name": "a", "port": 1}, {"name": "b", "port": 2}]},
            ],
        }))
        .unwrap();
        assert_eq!(
            servers_from_endpoints([&eps]),
            vec!["10.0.0.1:6443", "10.0.0.2:6443", "127.0.0.1:7443"]
        );
    }

    #[test]
    fn slices_give_ready_https_endpoints() {
        let slice: EndpointSlice = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "kubernetes", "namespace": "default"},
            "addressType": "IPv4",
            "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}],
            "endpoints": [
                {"addresses": ["10.0.0.2"], "conditions": {"ready": true}},
                {"addresses": ["10.0.0.1"]},
                {"addresses": ["10.0.0.3"], "conditions": {"ready": false}},
                {"addresses": ["not-an-ip"]},
            ],
        }))
        .unwrap();
        assert_eq!(
            servers_from_slices([&slice]),
            vec!["10.0.0.1:6443".to_string(), "10.0.0.2:6443".to_string()]
        );
        let no_port: EndpointSlice = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "x"}, "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.0.0.9"]}],
        }))
        .unwrap();
        assert!(servers_from_slices([&no_port]).is_empty());
    }

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A TCP backend that greets each connection with its `tag` and then echoes. `stop`
    /// closes the listener (new dials are refused) but, unless `hang` is false, keeps the
    /// open connections silent and open, as a machine that died without a FIN looks.
    struct Backend {
        addr: SocketAddr,
        accept: tokio::task::JoinHandle<()>,
        conns: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
        frozen: Arc<std::sync::atomic::AtomicBool>,
    }

    impl Backend {
        async fn start(addr: &str, tag: u8) -> Backend {
            let listener = TcpListener::bind(addr).await.unwrap();
            let addr = listener.local_addr().unwrap();
            let conns: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
            let frozen = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let (c, f) = (conns.clone(), frozen.clone());
            let accept = tokio::spawn(async move {
                while let Ok((mut s, _)) = listener.accept().await {
                    let f = f.clone();
                    c.lock().unwrap().push(tokio::spawn(async move {
                        if s.write_all(&[tag]).await.is_err() {
                            return;
                        }
                        let mut buf = [0u8; 64];
                        while let Ok(n) = s.read(&mut buf).await {
                            if n == 0 {
                                break;
                            }
                            if f.load(std::sync::atomic::Ordering::SeqCst) {
                                continue;
                            }
                            if s.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }));
                }
            });
            Backend {
                addr,
                accept,
                conns,
                frozen,
            }
        }

        /// Refuses new connections; open ones stay open but answer nothing.
        fn hang(&self) {
            self.frozen.store(true, std::sync::atomic::Ordering::SeqCst);
            self.accept.abort();
        }

        /// Closes everything.
        fn kill(&self) {
            self.accept.abort();
            for c in self.conns.lock().unwrap().drain(..) {
                c.abort();
            }
        }
    }

    fn fast(state_file: Option<PathBuf>) -> LbConfig {
        let mut c = LbConfig::new("127.0.0.1:0".parse().unwrap(), state_file);
        c.connect_timeout = Duration::from_millis(500);
        c.health_interval = Duration::from_millis(200);
        c
    }

    /// Connects through the LB; the backend's greeting says who answered.
    async fn who(lb: &LoadBalancer) -> Option<(u8, TcpStream)> {
        let mut c = TcpStream::connect(lb.local_addr()).await.ok()?;
        let mut tag = [0u8; 1];
        match tokio::time::timeout(Duration::from_secs(5), c.read_exact(&mut tag)).await {
            Ok(Ok(_)) => Some((tag[0], c)),
            _ => None,
        }
    }

    async fn wait_closed(c: &mut TcpStream, within: Duration) {
        let mut buf = [0u8; 16];
        let t = tokio::time::timeout(within, async {
            loop {
                match c.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        });
        t.await
            .expect("the LB closes the connection to a dead server");
    }

    #[tokio::test]
    async fn a_server_dying_mid_connection_moves_clients_to_another() {
        let a = Backend::start("127.0.0.1:0", b'a').await;
        let b = Backend::start("127.0.0.1:0", b'b').await;
        let (_stop, stop_rx) = tokio::sync::watch::channel(false);
        let lb = LoadBalancer::start(
            fast(None),
            &[format!("https://{}", a.addr), b.addr.to_string()],
            stop_rx,
        )
        .await
        .unwrap();
        assert!(lb.url().starts_with("https://127.0.0.1:"));
        let (tag, mut conn) = who(&lb).await.expect("a connection");
        assert_eq!(tag, b'a', "the first server is preferred");
        conn.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        conn.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        // Sticky: the next connections go to the same server.
        for _ in 0..3 {
            assert_eq!(who(&lb).await.unwrap().0, b'a');
        }
        // The server stops answering without closing anything: the health check notices
        // and the LB closes the connection so the client reconnects.
        let t0 = std::time::Instant::now();
        a.hang();
        wait_closed(&mut conn, Duration::from_secs(5)).await;
        assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
        assert_eq!(who(&lb).await.unwrap().0, b'b');
        assert_eq!(lb.current().as_deref(), Some(b.addr.to_string().as_str()));
        let infos = lb.servers();
        assert!(!infos[0].healthy && infos[0].fallback, "{infos:?}");
        assert!(infos[1].healthy, "{infos:?}");
        // A server closing its connections itself: the client sees it at once, and the
        // next connection goes to the other server, which is up again by then... or not:
        // with both gone, the LB closes new connections instead of holding them.
        b.kill();
        assert!(who(&lb).await.is_none());
        a.kill();
    }

    #[tokio::test]
    async fn all_down_then_one_back() {
        let a = Backend::start("127.0.0.1:0", b'a').await;
        let b = Backend::start("127.0.0.1:0", b'b').await;
        let (a_addr, b_addr) = (a.addr, b.addr);
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let lb = LoadBalancer::start(
            fast(None),
            &[a_addr.to_string(), b_addr.to_string()],
            stop_rx,
        )
        .await
        .unwrap();
        assert_eq!(who(&lb).await.unwrap().0, b'a');
        a.kill();
        b.kill();
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(who(&lb).await.is_none(), "nothing to forward to");
        assert!(lb.servers().iter().all(|s| !s.healthy));
        // The second server comes back on its address: the health check and the next dial
        // find it.
        let b2 = Backend::start(&b_addr.to_string(), b'B').await;
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            if lb
                .servers()
                .iter()
                .any(|s| s.addr == b_addr.to_string() && s.healthy)
            {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{:?}", lb.servers());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(who(&lb).await.unwrap().0, b'B');
        stop.send(true).unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            TcpStream::connect(lb.local_addr()).await.is_err() || who(&lb).await.is_none(),
            "the LB stops"
        );
        b2.kill();
    }

    #[tokio::test]
    async fn discovered_servers_are_used_kept_and_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("servers.json");
        let a = Backend::start("127.0.0.1:0", b'a').await;
        let b = Backend::start("127.0.0.1:0", b'b').await;
        let c = Backend::start("127.0.0.1:0", b'c').await;
        let (_stop, stop_rx) = tokio::sync::watch::channel(false);
        let lb = LoadBalancer::start(fast(Some(state.clone())), &[a.addr.to_string()], stop_rx)
            .await
            .unwrap();
        let slice: EndpointSlice = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "kubernetes", "namespace": "default"},
            "addressType": "IPv4",
            "ports": [{"name": "https", "port": b.addr.port(), "protocol": "TCP"}],
            "endpoints": [{"addresses": ["127.0.0.1"]}],
        }))
        .unwrap();
        lb.set_servers(servers_from_slices([&slice]));
        lb.set_servers(Vec::new());
        let addrs: Vec<String> = lb.servers().into_iter().map(|s| s.addr).collect();
        assert_eq!(addrs, vec![a.addr.to_string(), b.addr.to_string()]);
        let kept: Persisted = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
        assert_eq!(kept.servers, vec![b.addr.to_string()]);
        // The fall-back dies: a discovered server takes over.
        a.kill();
        let mut tag = None;
        for _ in 0..20 {
            tag = who(&lb).await.map(|(t, _)| t);
            if tag.is_some() {
                break;
            }
        }
        assert_eq!(tag, Some(b'b'));
        // A restarted agent knows the discovered server from its state file.
        let (_stop2, stop_rx2) = tokio::sync::watch::channel(false);
        let lb2 = LoadBalancer::start(fast(Some(state.clone())), &[a.addr.to_string()], stop_rx2)
            .await
            .unwrap();
        assert_eq!(who(&lb2).await.unwrap().0, b'b');
        // A server leaving the list loses its connections; the fall-back stays listed.
        let (_, mut conn) = who(&lb).await.unwrap();
        lb.set_servers(vec![c.addr.to_string()]);
        wait_closed(&mut conn, Duration::from_secs(2)).await;
        let addrs: Vec<String> = lb.servers().into_iter().map(|s| s.addr).collect();
        assert_eq!(addrs, vec![a.addr.to_string(), c.addr.to_string()]);
        assert_eq!(who(&lb).await.unwrap().0, b'c');
        b.kill();
        c.kill();
    }

    /// A CA (its PEM) and a signer for serving certificates.
    fn test_ca(name: &str) -> (String, rcgen::Issuer<'static, rcgen::KeyPair>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::CommonName, name);
        params.distinguished_name = dn;
        let pem = params.clone().self_signed(&key).unwrap().pem();
        (pem, rcgen::Issuer::new(params, key))
    }

    /// An HTTPS server with a `kubernetes.default.svc` certificate from `ca` that answers
    /// every request with `status`.
    async fn https_backend(
        ca: &rcgen::Issuer<'static, rcgen::KeyPair>,
        status: &'static str,
    ) -> (SocketAddr, tokio::task::JoinHandle<()>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![CHECK_SERVER_NAME.to_string()])
            .unwrap()
            .signed_by(&key, ca)
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut s) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut buf = [0u8; 512];
                    let _ = s.read(&mut buf).await;
                    let reply = format!(
                        "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    );
                    let _ = s.write_all(reply.as_bytes()).await;
                    let _ = s.shutdown().await;
                });
            }
        });
        (addr, task)
    }

    #[tokio::test]
    async fn with_the_ca_only_ready_servers_of_this_cluster_are_up() {
        let (ca_pem, ca) = test_ca("cluster");
        let (_, other_ca) = test_ca("another cluster");
        let plain = Backend::start("127.0.0.1:0", b'p').await;
        let (stranger, t1) = https_backend(&other_ca, "200 OK").await;
        let (unready, t2) = https_backend(&ca, "503 Service Unavailable").await;
        let (good, t3) = https_backend(&ca, "200 OK").await;
        let mut config = fast(None);
        config.ca_pem = Some(ca_pem.into_bytes());
        config.check_timeout = Duration::from_secs(2);
        let (_stop, stop_rx) = tokio::sync::watch::channel(false);
        let servers = [plain.addr, stranger, unready, good].map(|a| a.to_string());
        let lb = LoadBalancer::start(config, &servers, stop_rx)
            .await
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let health: Vec<bool> = lb.servers().iter().map(|s| s.healthy).collect();
            if health == [false, false, false, true] {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{:?}", lb.servers());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // New connections go to the one healthy server.
        let _c = TcpStream::connect(lb.local_addr()).await.unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while lb.current() != Some(good.to_string()) {
            assert!(std::time::Instant::now() < deadline, "{:?}", lb.current());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        plain.kill();
        for t in [t1, t2, t3] {
            t.abort();
        }
        let bad = LbConfig {
            ca_pem: Some(b"not a certificate".to_vec()),
            ..fast(None)
        };
        let (_s, rx) = tokio::sync::watch::channel(false);
        assert!(matches!(
            LoadBalancer::start(bad, &servers, rx).await,
            Err(LbError::BadCa(_))
        ));
    }

    #[tokio::test]
    async fn a_wedged_server_is_left_while_clients_keep_dialling() {
        let (ca_pem, ca) = test_ca("cluster");
        // Listening but never accepting: TCP handshakes complete from the backlog.
        let wedged = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let wedged_addr = wedged.local_addr().unwrap().to_string();
        let (good, task) = https_backend(&ca, "200 OK").await;
        let mut config = fast(None);
        config.ca_pem = Some(ca_pem.into_bytes());
        config.check_timeout = Duration::from_millis(500);
        let (_stop, stop_rx) = tokio::sync::watch::channel(false);
        let lb = LoadBalancer::start(config, &[wedged_addr.clone(), good.to_string()], stop_rx)
            .await
            .unwrap();
        let mut held = Vec::new();
        // Two failed checks take about 1.5 s; well before the backlog (128) fills and dials
        // start timing out.
        let deadline = std::time::Instant::now() + Duration::from_secs(4);
        while lb.current() != Some(good.to_string()) {
            assert!(
                std::time::Instant::now() < deadline,
                "still on {:?}: {:?}",
                lb.current(),
                lb.servers()
            );
            // New connections all the time must not keep the wedged server "up".
            held.push(TcpStream::connect(lb.local_addr()).await.unwrap());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(!lb.servers()[0].healthy, "{:?}", lb.servers());
        task.abort();
        drop(wedged);
    }
}
