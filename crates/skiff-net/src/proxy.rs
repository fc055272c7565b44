//! The service proxy (kube-proxy's nftables mode): turns a model of Services and their endpoints
//! into one nftables table of the `ip` family, owned by this data dir (`skiff_<8hex>`, the same
//! hash as the bridge `sk<8hex>`), and rewrites that table atomically with `nft -f -`.
//!
//! Layout (see [`rules::render`]): verdict maps `service-ips` (clusterIP . proto . port) and
//! `service-nodeports` (proto . port, matched with `fib daddr type local`, so every node address
//! and 127.0.0.1) dispatch from `services` (jumped to from nat prerouting and output) to one
//! chain per service port doing `numgen random mod N vmap` to per-endpoint chains that DNAT;
//! everything DNATed is marked and masqueraded in postrouting; `no-endpoint-*` maps reject from
//! filter chains. NodePort on 127.0.0.1 additionally needs `route_localnet` on the bridge (set
//! here) plus masquerade of 127/8 leaving via the bridge and a martian drop (CVE-2020-8558).
//!
//! [`Proxy`] holds the desired model, coalesces updates (debounce) on a worker thread, skips
//! unchanged scripts and flushes stale UDP conntrack entries. The table survives the process
//! (a restarted agent keeps serving); [`remove_table`] deletes it for good.

pub mod rules;

use std::collections::BTreeSet;
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use sha2::Digest;

pub use rules::{forbidden_endpoint, render, usable_endpoints, RenderConfig};

use crate::{io_err, Ipv4Cidr, NetError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// From a Kubernetes protocol name (`TCP`, `UDP`, `SCTP`; default TCP).
    pub fn parse(s: Option<&str>) -> Option<Self> {
        match s.unwrap_or("TCP") {
            "TCP" | "tcp" => Some(Self::Tcp),
            "UDP" | "udp" => Some(Self::Udp),
            "SCTP" | "sctp" => Some(Self::Sctp),
            _ => None,
        }
    }

    pub fn nft(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
            Self::Sctp => "sctp",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointModel {
    pub ip: Ipv4Addr,
    pub port: u16,
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
    /// On this node (for externalTrafficPolicy Local).
    pub local: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePortModel {
    pub name: String,
    pub protocol: Protocol,
    pub port: u16,
    pub node_port: Option<u16>,
    pub endpoints: Vec<EndpointModel>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceModel {
    pub namespace: String,
    pub name: String,
    /// None for headless services / not yet allocated (NodePorts still work).
    pub cluster_ip: Option<Ipv4Addr>,
    pub ports: Vec<ServicePortModel>,
    /// sessionAffinity ClientIP with this timeout in seconds; None = no affinity.
    pub session_affinity_timeout: Option<u32>,
    pub external_traffic_policy_local: bool,
}

/// `skiff_<8hex>` from the canonical data dir (same hash as the bridge `sk<8hex>`).
pub fn table_name(data_dir: &Path) -> String {
    let dir = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    let hash = hex::encode(sha2::Sha256::digest(dir.as_os_str().as_encoded_bytes()));
    format!("skiff_{}", &hash[..8])
}

/// Deletes the proxy's table for `data_dir` (for `skiff reset`); Ok if it does not exist.
pub fn remove_table(data_dir: &Path) -> Result<()> {
    delete_table(&table_name(data_dir))
}

fn delete_table(table: &str) -> Result<()> {
    let out = Command::new("nft")
        .args(["delete", "table", "ip", table])
        .output()
        .map_err(io_err("run nft delete table"))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() || stderr.contains("No such file") {
        Ok(())
    } else {
        Err(NetError::Other(format!(
            "nft delete table ip {table}: {}",
            stderr.trim()
        )))
    }
}

/// Runs `nft -f -` with the script on stdin (one atomic transaction).
pub fn nft_apply(script: &str) -> Result<()> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(io_err("run nft -f -"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(io_err("write to nft"))?;
    }
    let out = child.wait_with_output().map_err(io_err("wait for nft"))?;
    if out.status.success() {
        Ok(())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        // The first lines say what failed; a 1,000-service script echo is not useful.
        let short: String = err.lines().take(6).collect::<Vec<_>>().join("\n");
        Err(NetError::Other(format!("nft -f failed: {short}")))
    }
}

#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub data_dir: std::path::PathBuf,
    /// The pod bridge (PodNetwork::bridge_name()); it may not exist yet.
    pub bridge: String,
    pub pod_cidr: Ipv4Cidr,
    /// How long to wait for more updates before writing (coalesces bursts).
    pub debounce: Duration,
}

#[derive(Default)]
struct State {
    desired: Vec<ServiceModel>,
    /// Bumped by every update; the worker applies when it is ahead of `applied`.
    generation: u64,
    applied: u64,
    last_script: Option<String>,
    last_error: Option<String>,
    /// UDP (service IP or NodePort, endpoint IP) pairs in the applied table.
    udp_targets: BTreeSet<(UdpFront, Ipv4Addr)>,
    stop: bool,
    writes: u64,
    /// route_localnet as of the last written script.
    route_localnet: bool,
    /// Endpoint IPs that new connections can reach in the applied table; None until the
    /// first successful apply (a table left from before a restart may differ).
    targets: Option<BTreeSet<Ipv4Addr>>,
}

const RESYNC: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum UdpFront {
    ClusterIp(Ipv4Addr, u16),
    NodePort(u16),
}

struct Shared {
    state: Mutex<State>,
    cond: Condvar,
}

/// What the node's applied table does (cheap to clone, usable after the [`Proxy`] is gone).
#[derive(Clone)]
pub struct ProxyStatus {
    shared: Arc<Shared>,
}

impl ProxyStatus {
    /// Whether new connections to a Service can still reach `ip` through this node's table;
    /// None before the first apply.
    pub fn targets(&self, ip: Ipv4Addr) -> Option<bool> {
        lock(&self.shared.state)
            .targets
            .as_ref()
            .map(|t| t.contains(&ip))
    }
}

/// The running proxy for one node. Dropping it stops the worker but keeps the table.
pub struct Proxy {
    config: ProxyConfig,
    table: String,
    shared: Arc<Shared>,
    worker: Option<std::thread::JoinHandle<()>>,
}

impl Proxy {
    pub fn new(config: ProxyConfig) -> Result<Self> {
        if config.bridge.is_empty()
            || !config
                .bridge
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(NetError::Other(format!(
                "invalid bridge name {:?}",
                config.bridge
            )));
        }
        let table = table_name(&config.data_dir);
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            cond: Condvar::new(),
        });
        let worker = {
            let shared = shared.clone();
            let config = config.clone();
            let table = table.clone();
            std::thread::Builder::new()
                .name("skiff-proxy".into())
                .spawn(move || worker(shared, config, table))
                .map_err(io_err("spawn proxy worker"))?
        };
        Ok(Self {
            config,
            table,
            shared,
            worker: Some(worker),
        })
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Replaces the desired model; written after the debounce interval.
    pub fn update(&self, services: Vec<ServiceModel>) {
        let mut st = lock(&self.shared.state);
        st.desired = services;
        st.generation += 1;
        self.shared.cond.notify_all();
    }

    /// Waits until everything handed to `update` so far is written (or failed); returns the
    /// result of the last write.
    pub fn wait_synced(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut st = lock(&self.shared.state);
        let target = st.generation;
        while st.applied < target {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(NetError::Other("proxy sync timed out".into()));
            }
            st = self
                .shared
                .cond
                .wait_timeout(st, left)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        match &st.last_error {
            Some(e) => Err(NetError::Other(e.clone())),
            None => Ok(()),
        }
    }

    /// A handle that answers what the applied table does, for the node agent.
    pub fn status(&self) -> ProxyStatus {
        ProxyStatus {
            shared: self.shared.clone(),
        }
    }

    /// How many times the table was actually written (tests: debounce and skip-unchanged).
    pub fn writes(&self) -> u64 {
        lock(&self.shared.state).writes
    }

    /// Stops the worker, deletes the table and turns `route_localnet` back off on the bridge.
    pub fn remove(mut self) -> Result<()> {
        self.stop_worker();
        let _ = set_route_localnet(&self.config.bridge, false);
        delete_table(&self.table)
    }

    fn stop_worker(&mut self) {
        lock(&self.shared.state).stop = true;
        self.shared.cond.notify_all();
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop_worker();
    }
}

fn lock(m: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn route_localnet_path(bridge: &str) -> String {
    format!("/proc/sys/net/ipv4/conf/{bridge}/route_localnet")
}

/// Ok(true) if the bridge exists and now has the value.
fn set_route_localnet(bridge: &str, on: bool) -> std::io::Result<bool> {
    let path = route_localnet_path(bridge);
    let want = if on { "1" } else { "0" };
    match std::fs::read_to_string(&path) {
        Ok(v) if v.trim() == want => Ok(true),
        Ok(_) => std::fs::write(&path, want).map(|_| true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// The endpoints new connections go to, as the rules pick them: the ready ones of each
/// service port, or when none is ready, the serving terminating ones.
fn new_connection_targets(services: &[ServiceModel]) -> BTreeSet<Ipv4Addr> {
    let mut out = BTreeSet::new();
    for svc in services {
        for port in &svc.ports {
            out.extend(usable_endpoints(&port.endpoints).iter().map(|e| e.ip));
        }
    }
    out
}

fn udp_targets(services: &[ServiceModel]) -> BTreeSet<(UdpFront, Ipv4Addr)> {
    let mut out = BTreeSet::new();
    for svc in services {
        for p in svc.ports.iter().filter(|p| p.protocol == Protocol::Udp) {
            for ep in usable_endpoints(&p.endpoints) {
                if let Some(ip) = svc.cluster_ip {
                    out.insert((UdpFront::ClusterIp(ip, p.port), ep.ip));
                }
                if let Some(np) = p.node_port.filter(|n| *n != 0) {
                    out.insert((UdpFront::NodePort(np), ep.ip));
                }
            }
        }
    }
    out
}

/// UDP has no connection end: entries DNATed to a removed endpoint would blackhole the flow
/// until they time out, so delete them (best effort; conntrack exits 1 when nothing matched).
fn flush_udp_conntrack(stale: &BTreeSet<(UdpFront, Ipv4Addr)>) {
    for (front, ep) in stale {
        let ep = ep.to_string();
        let mut args = vec!["-D".to_string(), "-p".into(), "udp".into()];
        match front {
            UdpFront::ClusterIp(ip, port) => {
                args.extend(["--orig-dst".into(), ip.to_string()]);
                args.extend(["--orig-port-dst".into(), port.to_string()]);
            }
            UdpFront::NodePort(np) => args.extend(["--orig-port-dst".into(), np.to_string()]),
        }
        args.extend(["--dst-nat".into(), ep]);
        match Command::new("conntrack")
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
        {
            Ok(_) => {}
            Err(e) => {
                tracing::debug!("conntrack not run ({e}); stale UDP entries age out");
                return;
            }
        }
    }
}

fn worker(shared: Arc<Shared>, config: ProxyConfig, table: String) {
    loop {
        {
            let mut st = lock(&shared.state);
            // Wake up now and then even without updates: the bridge appears with the first pod,
            // and route_localnet (and the martian drop) can only be set once it exists.
            let mut resync = false;
            while st.generation == st.applied && !st.stop && !resync {
                let (g, t) = shared
                    .cond
                    .wait_timeout(st, RESYNC)
                    .unwrap_or_else(|p| p.into_inner());
                st = g;
                resync = t.timed_out() && st.last_script.is_some();
            }
            if st.stop {
                return;
            }
            if resync && st.generation == st.applied {
                let now = set_route_localnet(&config.bridge, true).unwrap_or(false);
                if now == st.route_localnet {
                    continue;
                }
            }
        }
        // Coalesce: keep waiting while updates keep arriving within the debounce window, but
        // never longer than MAX_COALESCE in total, or steady churn would starve the table.
        const MAX_COALESCE: Duration = Duration::from_millis(200);
        let started = Instant::now();
        let mut seen = lock(&shared.state).generation;
        loop {
            std::thread::sleep(config.debounce);
            let st = lock(&shared.state);
            if st.stop {
                return;
            }
            if st.generation == seen || started.elapsed() >= MAX_COALESCE {
                break;
            }
            seen = st.generation;
        }
        let (services, generation) = {
            let st = lock(&shared.state);
            (st.desired.clone(), st.generation)
        };
        // The bridge appears with the first pod; until then 127.0.0.1 NodePorts can't work.
        let route_localnet = match set_route_localnet(&config.bridge, true) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(bridge = %config.bridge, "setting route_localnet: {e}");
                false
            }
        };
        let script = render(
            &RenderConfig {
                table: table.clone(),
                bridge: config.bridge.clone(),
                pod_cidr: config.pod_cidr,
                route_localnet,
            },
            &services,
        );
        let unchanged = lock(&shared.state).last_script.as_deref() == Some(script.as_str());
        let result = if unchanged {
            Ok(())
        } else {
            nft_apply(&script)
        };
        let mut st = lock(&shared.state);
        match result {
            Ok(()) => {
                st.targets = Some(new_connection_targets(&services));
                if !unchanged {
                    let now = udp_targets(&services);
                    let stale: BTreeSet<_> = st.udp_targets.difference(&now).copied().collect();
                    st.udp_targets = now;
                    st.last_script = Some(script);
                    st.route_localnet = route_localnet;
                    st.writes += 1;
                    drop(st);
                    flush_udp_conntrack(&stale);
                    st = lock(&shared.state);
                }
                st.last_error = None;
            }
            Err(e) => {
                tracing::warn!(table, "programming services failed: {e}");
                st.last_error = Some(e.to_string());
                // Forget the script so the next update retries even if it renders the same.
                st.last_script = None;
            }
        }
        st.applied = st.applied.max(generation);
        shared.cond.notify_all();
    }
}
