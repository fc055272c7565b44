//! The HTTPS client every webhook call goes through: one rustls configuration per `caBundle`
//! (built once, kept in a bounded process-wide map) with a small pool of idle HTTP/1.1
//! connections per (address, server name), so a webhook called on every write pays the TLS
//! handshake once, not per call.
//!
//! Where a call goes ([`Target`]): `clientConfig.url` as written (its host name verified), or
//! `clientConfig.service` routed to one ready endpoint address of the Service (verified as
//! `<service>.<namespace>.svc`). Endpoint routing, not the ClusterIP: the API server may run
//! where no service proxy rewrites ClusterIPs (the in-process harness, a server with no agent),
//! while pod IPs are reachable from the server's host; upstream does the same with
//! `--enable-aggregator-routing`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rand::Rng;
use rustls::pki_types::ServerName;
use serde_json::Value;

use crate::AppState;

/// The largest webhook response read (upstream's limit for admission responses is of this order).
pub(crate) const MAX_RESPONSE: usize = 10 << 20;
/// Distinct `caBundle`s kept; the map is emptied past this (configurations churned a lot).
const MAX_CLIENTS: usize = 256;
/// Idle connections kept per (address, server name).
const MAX_IDLE: usize = 16;
/// Distinct (address, server name) pairs with idle connections per client.
const MAX_IDLE_KEYS: usize = 256;

/// Where one webhook call goes.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub addr: SocketAddr,
    pub server_name: ServerName<'static>,
    /// Host header value.
    pub host: String,
    /// Path and query to POST to.
    pub path: String,
    /// The URL as upstream prints it in errors (`https://host:port/path?timeout=10s`).
    pub url: String,
}

type Pool = HashMap<(SocketAddr, String), Vec<SendRequest<Full<Bytes>>>>;

/// One verified TLS configuration and its idle connections.
pub(crate) struct Client {
    tls: Arc<rustls::ClientConfig>,
    idle: Mutex<Pool>,
}

static CLIENTS: LazyLock<Mutex<HashMap<String, Arc<Client>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// The client trusting `ca_bundle` (base64 of PEM certificates, as the API carries it).
pub(crate) fn client_for(ca_bundle: &str) -> Result<Arc<Client>, String> {
    let mut map = match CLIENTS.lock() {
        Ok(m) => m,
        Err(p) => p.into_inner(),
    };
    if let Some(c) = map.get(ca_bundle) {
        return Ok(c.clone());
    }
    let tls = tls_config(ca_bundle)?;
    if map.len() >= MAX_CLIENTS {
        map.clear();
    }
    let client = Arc::new(Client {
        tls,
        idle: Mutex::new(HashMap::new()),
    });
    map.insert(ca_bundle.to_string(), client.clone());
    Ok(client)
}

fn tls_config(ca_bundle: &str) -> Result<Arc<rustls::ClientConfig>, String> {
    let pem = base64::engine::general_purpose::STANDARD
        .decode(ca_bundle.trim())
        .map_err(|e| format!("invalid caBundle: {e}"))?;
    let verifier =
        crate::tls::BundleVerifier::from_pem(&pem).map_err(|e| format!("invalid caBundle: {e}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS configuration: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

impl Client {
    /// POSTs `body` (JSON) to `target`; the response body (status 200 only, up to
    /// [`MAX_RESPONSE`]). The whole call, dial included, is bounded by `timeout`. Errors read
    /// like Go's `*url.Error` (`Post "<url>": <why>`).
    pub(crate) async fn post(
        &self,
        target: &Target,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, String> {
        let post = |why: String| format!("Post {:?}: {why}", target.url);
        match tokio::time::timeout(timeout, self.round_trip(target, body)).await {
            Ok(r) => r.map_err(post),
            Err(_) => Err(post("context deadline exceeded".into())),
        }
    }

    async fn round_trip(&self, target: &Target, body: Vec<u8>) -> Result<Vec<u8>, String> {
        let key = (target.addr, server_name_str(&target.server_name));
        let body = Bytes::from(body);
        // A pooled connection may have been closed by the server since; one fresh retry.
        let mut sender = match self.take_idle(&key) {
            Some(s) => s,
            None => self.dial(target).await?,
        };
        let resp = match sender
            .send_request(self.request(target, body.clone())?)
            .await
        {
            Ok(r) => r,
            Err(e) if e.is_canceled() || e.is_closed() || e.is_incomplete_message() => {
                sender = self.dial(target).await?;
                sender
                    .send_request(self.request(target, body)?)
                    .await
                    .map_err(|e| e.to_string())?
            }
            Err(e) => return Err(e.to_string()),
        };
        let status = resp.status();
        let bytes = Limited::new(resp.into_body(), MAX_RESPONSE)
            .collect()
            .await
            .map_err(|e| format!("reading the response: {e}"))?
            .to_bytes();
        self.put_idle(key, sender);
        if status != http::StatusCode::OK {
            let text = String::from_utf8_lossy(&bytes[..bytes.len().min(1024)]).into_owned();
            return Err(format!("the server responded with {status}: {text}"));
        }
        Ok(bytes.to_vec())
    }

    fn request(&self, target: &Target, body: Bytes) -> Result<http::Request<Full<Bytes>>, String> {
        http::Request::post(target.path.as_str())
            .header(http::header::HOST, target.host.as_str())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::ACCEPT, "application/json")
            .body(Full::new(body))
            .map_err(|e| e.to_string())
    }

    async fn dial(&self, target: &Target) -> Result<SendRequest<Full<Bytes>>, String> {
        let tcp = tokio::net::TcpStream::connect(target.addr)
            .await
            .map_err(|e| format!("dial tcp {}: connect: {}", target.addr, io_text(&e)))?;
        let _ = tcp.set_nodelay(true);
        let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(target.server_name.clone(), tcp)
            .await
            .map_err(|e| tls_text(&e))?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            if let Err(err) = conn.await {
                tracing::debug!(%err, "webhook connection ended with an error");
            }
        });
        Ok(sender)
    }

    fn take_idle(&self, key: &(SocketAddr, String)) -> Option<SendRequest<Full<Bytes>>> {
        let mut idle = match self.idle.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        let list = idle.get_mut(key)?;
        while let Some(s) = list.pop() {
            if s.is_ready() {
                return Some(s);
            }
        }
        None
    }

    fn put_idle(&self, key: (SocketAddr, String), sender: SendRequest<Full<Bytes>>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = match self.idle.lock() {
            Ok(m) => m,
            Err(p) => p.into_inner(),
        };
        if idle.len() >= MAX_IDLE_KEYS && !idle.contains_key(&key) {
            // Endpoints churned: drop connections to addresses no longer used.
            idle.retain(|_, l| {
                l.retain(|s| !s.is_closed());
                !l.is_empty()
            });
            if idle.len() >= MAX_IDLE_KEYS {
                idle.clear();
            }
        }
        let list = idle.entry(key).or_default();
        if list.len() < MAX_IDLE {
            list.push(sender);
        }
    }
}

/// An I/O error as Go's net package words the common ones.
fn io_text(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
        std::io::ErrorKind::ConnectionReset => "connection reset by peer".into(),
        std::io::ErrorKind::TimedOut => "i/o timeout".into(),
        _ => e.to_string(),
    }
}

/// A failed TLS handshake, worded like Go's crypto/tls for certificate problems.
fn tls_text(e: &std::io::Error) -> String {
    use rustls::CertificateError as C;
    let inner = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
    match inner {
        // A CA of the same name whose key did not sign the certificate reads the same in Go.
        Some(rustls::Error::InvalidCertificate(C::UnknownIssuer | C::BadSignature)) => {
            "tls: failed to verify certificate: x509: certificate signed by unknown authority"
                .into()
        }
        Some(rustls::Error::InvalidCertificate(C::NotValidForName))
        | Some(rustls::Error::InvalidCertificate(C::NotValidForNameContext { .. })) => {
            "tls: failed to verify certificate: x509: certificate is not valid for the requested name".into()
        }
        Some(rustls::Error::InvalidCertificate(C::Expired))
        | Some(rustls::Error::InvalidCertificate(C::ExpiredContext { .. })) => {
            "tls: failed to verify certificate: x509: certificate has expired or is not yet valid"
                .into()
        }
        Some(other) => format!("tls: {other}"),
        None => format!("tls: {}", io_text(e)),
    }
}

fn server_name_str(n: &ServerName<'_>) -> String {
    match n {
        ServerName::DnsName(d) => d.as_ref().to_string(),
        ServerName::IpAddress(ip) => std::net::IpAddr::from(*ip).to_string(),
        _ => String::new(),
    }
}

/// Resolves `clientConfig` (`url` or `service`) to a [`Target`]; `timeout_s` is added as
/// `?timeout=<n>s` like upstream's REST client does.
pub(crate) async fn resolve(
    st: &AppState,
    client_config: &Value,
    timeout_s: u64,
) -> Result<Target, String> {
    let query = format!("timeout={timeout_s}s");
    if let Some(url) = client_config.get("url").and_then(Value::as_str) {
        return resolve_url(url, &query).await;
    }
    let Some(svc) = client_config.get("service") else {
        return Err("the clientConfig has neither url nor service".into());
    };
    let name = svc.get("name").and_then(Value::as_str).unwrap_or("");
    let ns = svc.get("namespace").and_then(Value::as_str).unwrap_or("");
    let port = svc.get("port").and_then(Value::as_i64).unwrap_or(443);
    let path = svc.get("path").and_then(Value::as_str).unwrap_or("/");
    let path = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    let addr = service_endpoint(st, ns, name, port).await?;
    let host = format!("{name}.{ns}.svc");
    let server_name =
        ServerName::try_from(host.clone()).map_err(|e| format!("invalid service name: {e}"))?;
    let path = join_query(&path, &query);
    Ok(Target {
        addr,
        server_name,
        url: format!("https://{host}:{port}{path}"),
        host: format!("{host}:{port}"),
        path,
    })
}

fn join_query(path: &str, query: &str) -> String {
    if path.contains('?') {
        format!("{path}&{query}")
    } else {
        format!("{path}?{query}")
    }
}

async fn resolve_url(url: &str, query: &str) -> Result<Target, String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("invalid url {url:?}: {e}"))?;
    if uri.scheme_str() != Some("https") {
        return Err(format!("invalid url {url:?}: the scheme must be https"));
    }
    let host = uri.host().unwrap_or("");
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(443);
    let path = join_query(uri.path_and_query().map_or("/", |p| p.as_str()), query);
    let shown = format!(
        "https://{}{}",
        uri.authority().map_or("", |a| a.as_str()),
        path
    );
    let (addr, server_name) = match bare.parse::<std::net::IpAddr>() {
        Ok(ip) => (SocketAddr::new(ip, port), ServerName::IpAddress(ip.into())),
        Err(_) => {
            let addr = tokio::net::lookup_host((bare, port))
                .await
                .map_err(|e| format!("Post {shown:?}: dial tcp: lookup {bare}: {e}"))?
                .next()
                .ok_or_else(|| format!("Post {shown:?}: dial tcp: lookup {bare}: no such host"))?;
            let name = ServerName::try_from(bare.to_string())
                .map_err(|e| format!("invalid url {url:?}: {e}"))?;
            (addr, name)
        }
    };
    Ok(Target {
        addr,
        server_name,
        host: uri.authority().map_or(bare, |a| a.as_str()).to_string(),
        path,
        url: shown,
    })
}

/// Upstream's `ResolveEndpoint`: the Service's port `port`, then a ready address of a random
/// Endpoints subset carrying the port of the same name.
async fn service_endpoint(
    st: &AppState,
    ns: &str,
    name: &str,
    port: i64,
) -> Result<SocketAddr, String> {
    let get = |key: String| async move {
        match st.store.get(&key).await {
            Ok(Some(kv)) => crate::keys::decode(&kv).map(Some).map_err(|e| e.message),
            Ok(None) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    };
    let svc = get(format!("/registry/core/services/{ns}/{name}"))
        .await?
        .ok_or_else(|| format!("service \"{name}\" not found"))?;
    let ty = svc
        .pointer("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP");
    if !matches!(ty, "ClusterIP" | "LoadBalancer" | "NodePort") {
        return Err(format!("unsupported service type {ty:?}"));
    }
    let ports = svc.pointer("/spec/ports").and_then(Value::as_array);
    let svc_port = ports
        .into_iter()
        .flatten()
        .find(|p| p.get("port").and_then(Value::as_i64) == Some(port))
        .ok_or_else(|| format!("no service port {port} found for service {name:?}"))?;
    let port_name = svc_port.get("name").and_then(Value::as_str).unwrap_or("");
    let none = || format!("no endpoints available for service {name:?}");
    let eps = get(format!("/registry/core/endpoints/{ns}/{name}")).await?;
    let picked = match eps.as_ref().and_then(|e| from_endpoints(e, port_name)) {
        Some(p) => Some(p),
        // No usable Endpoints (a cluster that mirrors only EndpointSlices): the slices.
        None => from_slices(st, ns, name, port_name).await?,
    };
    let (ip, ep_port) = picked.ok_or_else(none)?;
    let ip: std::net::IpAddr = ip
        .parse()
        .map_err(|e| format!("invalid endpoint address {ip:?}: {e}"))?;
    let ep_port = u16::try_from(ep_port).map_err(|_| none())?;
    Ok(SocketAddr::new(ip, ep_port))
}

/// A random ready address of a random Endpoints subset carrying the port named `port_name`.
fn from_endpoints(eps: &Value, port_name: &str) -> Option<(String, u64)> {
    let subsets: Vec<&Value> = eps
        .get("subsets")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    if subsets.is_empty() {
        return None;
    }
    let seed = rand::thread_rng().gen_range(0..subsets.len());
    for i in 0..subsets.len() {
        let ss = subsets[(seed + i) % subsets.len()];
        let addrs: Vec<&str> = ss
            .get("addresses")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|a| a.get("ip").and_then(Value::as_str))
            .collect();
        if addrs.is_empty() {
            continue;
        }
        let ports = ss.get("ports").and_then(Value::as_array);
        for p in ports.into_iter().flatten() {
            if p.get("name").and_then(Value::as_str).unwrap_or("") != port_name {
                continue;
            }
            let ip = addrs[rand::thread_rng().gen_range(0..addrs.len())];
            let port = p.get("port").and_then(Value::as_u64).unwrap_or(0);
            return Some((ip.to_string(), port));
        }
    }
    None
}

/// A random ready endpoint of the Service's EndpointSlices (label
/// `kubernetes.io/service-name`) with the port named `port_name`.
async fn from_slices(
    st: &AppState,
    ns: &str,
    name: &str,
    port_name: &str,
) -> Result<Option<(String, u64)>, String> {
    let prefix = format!("/registry/discovery.k8s.io/endpointslices/{ns}/");
    let list = st
        .store
        .list(&prefix, &skiff_store::ListOptions::default())
        .await
        .map_err(|e| e.to_string())?;
    let mut found: Vec<(String, u64)> = Vec::new();
    for kv in &list.items {
        let Ok(slice) = crate::keys::decode(kv) else {
            continue;
        };
        let owner = slice.pointer("/metadata/labels/kubernetes.io~1service-name");
        if owner.and_then(Value::as_str) != Some(name) {
            continue;
        }
        let ports = slice.get("ports").and_then(Value::as_array);
        let Some(port) = ports
            .into_iter()
            .flatten()
            .find(|p| p.get("name").and_then(Value::as_str).unwrap_or("") == port_name)
            .and_then(|p| p.get("port").and_then(Value::as_u64))
        else {
            continue;
        };
        let endpoints = slice.get("endpoints").and_then(Value::as_array);
        for ep in endpoints.into_iter().flatten() {
            // A missing `ready` condition means ready.
            if ep.pointer("/conditions/ready").and_then(Value::as_bool) == Some(false) {
                continue;
            }
            if let Some(ip) = ep.pointer("/addresses/0").and_then(Value::as_str) {
                found.push((ip.to_string(), port));
            }
        }
    }
    if found.is_empty() {
        return Ok(None);
    }
    let i = rand::thread_rng().gen_range(0..found.len());
    Ok(Some(found.swap_remove(i)))
}
