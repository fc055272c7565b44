//! skiff-net owns pod networking on a node: each pod sandbox gets its own network, IPC and UTS
//! namespaces (bind-mounted so they outlive any process), and its network is set up by the
//! standard CNI plugins (bridge + host-local IPAM, portmap for hostPort) from Debian's
//! containernetworking-plugins, with a default config skiff writes per data dir. `lo` inside the
//! sandbox is brought up by skiff itself (no loopback plugin exec). It also owns the service
//! proxy (one nftables table per data dir, rewritten atomically) and the routes to other nodes'
//! pod CIDRs.
//!
//! CONTRACT (skiff-agent is written against these signatures; keep them):
//! ```text
//! let net = PodNetwork::new(NetConfig { data_dir, pod_cidr: "100.64.3.0/24".into(), cni_bin_dir: None })?;
//! let sb  = net.create_sandbox(&SandboxRequest { pod_uid, namespace, name, hostname, port_mappings, host_network: None })?;
//! net.remove_sandbox(pod_uid)?;            // idempotent
//! net.list_sandboxes()?                    // pod uids with state on disk (for cleanup after restarts)
//! net.sandbox(pod_uid)?                    // Option<Sandbox> of an existing one (re-adoption)
//! net.teardown_all()?                      // every sandbox, the bridge and IPAM state (shutdown for good)
//! ```
//! All calls block (they fork CNI plugins); async callers use spawn_blocking.
//!
//! On-disk layout under `<data_dir>/net/`: `cni.conflist` (the network config), `ipam/` (host-local
//! reservations), `sandboxes/` (a private bind mount of itself) holding `<pod_uid>/{net,ipc,uts}`
//! (nsfs bind mounts) and `<pod_uid>/sandbox.json` (the sandbox, its request and the CNI result).
//! The bridge is `sk<8 hex>` and the CNI network `skiff-<8 hex>`, both from a hash of the data dir.

mod cni;
mod netlink;
mod ns;
pub use ns::mount_points;
pub mod netpol;
pub mod proxy;
pub mod routes;

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sha2::Digest;
use skiff_semantics::cidr::Ipv4Net;

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("CNI plugin {plugin} failed ({command}): {message}")]
    Plugin {
        plugin: String,
        command: String,
        message: String,
    },
    #[error("CNI plugins not found in {0}: install containernetworking-plugins")]
    PluginsMissing(PathBuf),
    #[error("invalid pod CIDR {0:?}")]
    InvalidCidr(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A netlink request the kernel refused (`ENODEV`, `ESRCH`, `EEXIST`, `EPERM` …).
    #[error("{op}: {errno}")]
    Netlink {
        op: String,
        errno: nix::errno::Errno,
    },
    #[error("{0}")]
    Other(String),
}

impl NetError {
    /// The errno of a refused netlink request or failed system call.
    pub fn errno(&self) -> Option<nix::errno::Errno> {
        match self {
            NetError::Netlink { errno, .. } => Some(*errno),
            NetError::Io { source, .. } => source.raw_os_error().map(nix::errno::Errno::from_raw),
            _ => None,
        }
    }
}

pub type Result<T> = std::result::Result<T, NetError>;

pub(crate) fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> NetError {
    let context = context.into();
    move |source| NetError::Io { context, source }
}

pub(crate) fn nix_err(context: impl Into<String>) -> impl FnOnce(nix::Error) -> NetError {
    let context = context.into();
    move |e| NetError::Io {
        context,
        source: std::io::Error::from(e),
    }
}

#[derive(Debug, Clone)]
pub struct NetConfig {
    /// skiff's data dir: state under `<data_dir>/net/`, bridge and IPAM names derived from it so
    /// two data dirs never collide.
    pub data_dir: PathBuf,
    /// This node's pod CIDR (a /24 of 100.64.0.0/16, allocated by the server).
    pub pod_cidr: String,
    /// Where the CNI plugins live (default /usr/lib/cni, then /opt/cni/bin).
    pub cni_bin_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PortMapping {
    pub host_port: u16,
    pub container_port: u16,
    /// "tcp" or "udp".
    pub protocol: String,
    pub host_ip: Option<String>,
}

#[derive(Debug, Clone)]
pub struct SandboxRequest {
    pub pod_uid: String,
    pub namespace: String,
    pub name: String,
    /// The pod's hostname (set inside the UTS namespace).
    pub hostname: String,
    pub port_mappings: Vec<PortMapping>,
    /// `hostNetwork: true`: the pod keeps the host's network and has this (the node's) IP;
    /// only IPC and UTS namespaces are created, and no CNI plugin runs.
    pub host_network: Option<Ipv4Addr>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Sandbox {
    pub pod_uid: String,
    /// Bind-mounted namespace files to join (runtime NetworkMode::Path etc.).
    pub netns: PathBuf,
    pub ipcns: PathBuf,
    pub utsns: PathBuf,
    pub ip: Ipv4Addr,
    pub gateway: Ipv4Addr,
    /// The pod uses the host's network (`netns` is not a namespace of its own).
    #[serde(default)]
    pub host_network: bool,
}

/// An IPv4 network in CIDR form, host bits zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Cidr(Ipv4Net);

impl Ipv4Cidr {
    /// Parses `a.b.c.d/N`; rejects host bits and prefixes that leave no room for a gateway and
    /// a pod (N > 30) or are absurdly wide (N < 8).
    pub fn parse(s: &str) -> Result<Self> {
        skiff_semantics::cidr::parse_ipv4_network(s.trim(), 8..=30)
            .map(Self)
            .map_err(|_| NetError::InvalidCidr(s.to_string()))
    }

    pub fn net(&self) -> Ipv4Net {
        self.0
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        self.0.contains(&ip)
    }

    /// The first host address, which the bridge plugin gives the bridge (the pods' gateway).
    pub fn first_host(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.0.network()) + 1)
    }
}

impl std::fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// What sandbox.json holds: enough to answer `sandbox()` and to run CNI DEL with the same
/// runtimeConfig and prevResult as the ADD.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct SandboxState {
    sandbox: Sandbox,
    namespace: String,
    name: String,
    hostname: String,
    port_mappings: Vec<PortMapping>,
    #[serde(default)]
    cni_result: Option<serde_json::Value>,
}

pub struct PodNetwork {
    config: NetConfig,
    cidr: Ipv4Cidr,
    bin_dir: PathBuf,
    net_dir: PathBuf,
    bridge: String,
    network_name: String,
    conflist: serde_json::Value,
    /// Whether `sandboxes/` is known to be a private mount of itself.
    sandboxes_private: Mutex<bool>,
    /// Per-pod locks so concurrent create/remove of one uid serialize; different pods run in
    /// parallel (host-local locks its own store, the bridge plugin tolerates a racing create).
    pod_locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

const REQUIRED_PLUGINS: [&str; 3] = ["bridge", "host-local", "portmap"];
const DEFAULT_BIN_DIRS: [&str; 2] = ["/usr/lib/cni", "/opt/cni/bin"];

fn find_bin_dir(explicit: Option<&Path>) -> Result<PathBuf> {
    let has_all = |d: &Path| REQUIRED_PLUGINS.iter().all(|p| d.join(p).is_file());
    match explicit {
        Some(d) if has_all(d) => Ok(d.to_path_buf()),
        Some(d) => Err(NetError::PluginsMissing(d.to_path_buf())),
        None => DEFAULT_BIN_DIRS
            .iter()
            .map(Path::new)
            .find(|d| has_all(d))
            .map(Path::to_path_buf)
            .ok_or_else(|| NetError::PluginsMissing(PathBuf::from(DEFAULT_BIN_DIRS.join(" or ")))),
    }
}

/// Pod uids become path components and CNI_CONTAINERID, which the spec limits to this alphabet.
fn validate_uid(uid: &str) -> Result<()> {
    let ok = !uid.is_empty()
        && uid.len() <= 128
        && uid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && uid.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(NetError::Other(format!("invalid pod uid {uid:?}")))
    }
}

fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(io_err(format!("create {}", tmp.display())))?;
    f.write_all(data)
        .and_then(|_| f.sync_all())
        .map_err(io_err(format!("write {}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(io_err(format!("rename to {}", path.display())))
}

impl PodNetwork {
    pub fn new(config: NetConfig) -> Result<Self> {
        let cidr = Ipv4Cidr::parse(&config.pod_cidr)?;
        let bin_dir = find_bin_dir(config.cni_bin_dir.as_deref())?;
        std::fs::create_dir_all(&config.data_dir)
            .map_err(io_err(format!("create {}", config.data_dir.display())))?;
        // Canonical so the hash (and thus bridge/IPAM names) is stable however the path is
        // spelled, and so mountinfo lookups compare real paths.
        let data_dir = std::fs::canonicalize(&config.data_dir).map_err(io_err(format!(
            "canonicalize {}",
            config.data_dir.display()
        )))?;
        let hash = hex::encode(sha2::Sha256::digest(
            data_dir.as_os_str().as_encoded_bytes(),
        ));
        let short = &hash[..8];
        let bridge = format!("sk{short}");
        let network_name = format!("skiff-{short}");
        let net_dir = data_dir.join("net");
        let ipam_dir = net_dir.join("ipam");
        for d in [&net_dir, &ipam_dir, &net_dir.join("sandboxes")] {
            std::fs::create_dir_all(d).map_err(io_err(format!("create {}", d.display())))?;
        }
        let conflist = cni::default_conflist(&network_name, &bridge, &cidr, &ipam_dir);
        let text = serde_json::to_vec_pretty(&conflist)
            .map_err(|e| NetError::Other(format!("serialize conflist: {e}")))?;
        write_atomic(&net_dir.join("cni.conflist"), &text)?;
        Ok(Self {
            config: NetConfig { data_dir, ..config },
            cidr,
            bin_dir,
            net_dir,
            bridge,
            network_name,
            conflist,
            sandboxes_private: Mutex::new(false),
            pod_locks: Mutex::new(HashMap::new()),
        })
    }

    /// The pod network a data dir already has (its conflist names the pod CIDR), for cleanup
    /// without a running agent; None if the data dir never had one.
    pub fn existing(data_dir: &Path) -> Result<Option<Self>> {
        let conflist = data_dir.join("net").join("cni.conflist");
        let text = match std::fs::read(&conflist) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(format!("read {}", conflist.display()))(e)),
        };
        let json: serde_json::Value = serde_json::from_slice(&text)
            .map_err(|e| NetError::Other(format!("{}: {e}", conflist.display())))?;
        let subnet = json
            .pointer("/plugins/0/ipam/ranges/0/0/subnet")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| NetError::Other(format!("{}: no subnet", conflist.display())))?;
        Self::new(NetConfig {
            data_dir: data_dir.to_path_buf(),
            pod_cidr: subnet.to_string(),
            cni_bin_dir: None,
        })
        .map(Some)
    }

    /// The Linux bridge the CNI bridge plugin creates on the first ADD.
    pub fn bridge_name(&self) -> &str {
        &self.bridge
    }

    /// The CNI network name (also the host-local store's subdirectory).
    pub fn network_name(&self) -> &str {
        &self.network_name
    }

    pub fn pod_cidr(&self) -> Ipv4Cidr {
        self.cidr
    }

    /// The bridge's address, i.e. the pods' default gateway.
    pub fn gateway(&self) -> Ipv4Addr {
        self.cidr.first_host()
    }

    pub fn data_dir(&self) -> &Path {
        &self.config.data_dir
    }

    pub fn conflist_path(&self) -> PathBuf {
        self.net_dir.join("cni.conflist")
    }

    /// host-local's reservations for this network: one file per allocated IP.
    pub fn ipam_dir(&self) -> PathBuf {
        self.net_dir.join("ipam").join(&self.network_name)
    }

    fn sandboxes_dir(&self) -> PathBuf {
        self.net_dir.join("sandboxes")
    }

    fn sandbox_dir(&self, uid: &str) -> PathBuf {
        self.sandboxes_dir().join(uid)
    }

    fn pod_lock(&self, uid: &str) -> Arc<Mutex<()>> {
        let mut locks = self.pod_locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(uid.to_string()).or_default().clone()
    }

    fn ensure_private_sandboxes(&self) -> Result<()> {
        let mut done = self
            .sandboxes_private
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if !*done {
            let dir = self.sandboxes_dir();
            std::fs::create_dir_all(&dir).map_err(io_err(format!("create {}", dir.display())))?;
            ns::make_private_mount(&dir)?;
            *done = true;
        }
        Ok(())
    }

    fn load_state(&self, uid: &str) -> Result<Option<SandboxState>> {
        let path = self.sandbox_dir(uid).join("sandbox.json");
        let data = match std::fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(format!("read {}", path.display()))(e)),
        };
        serde_json::from_slice(&data)
            .map(Some)
            .map_err(|e| NetError::Other(format!("parse {}: {e}", path.display())))
    }

    fn runtime_config(mappings: &[PortMapping]) -> serde_json::Value {
        cni::runtime_config(mappings)
    }

    fn cni(&self) -> cni::Runner<'_> {
        cni::Runner {
            bin_dir: &self.bin_dir,
            conflist: &self.conflist,
        }
    }

    /// Creates the pod's namespaces and runs CNI ADD; returns the existing sandbox if it is
    /// already fully set up. On failure everything done so far is undone.
    pub fn create_sandbox(&self, req: &SandboxRequest) -> Result<Sandbox> {
        validate_uid(&req.pod_uid)?;
        ns::validate_hostname(&req.hostname)?;
        let lock = self.pod_lock(&req.pod_uid);
        let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        self.ensure_private_sandboxes()?;

        if let Some(existing) = self.sandbox_locked(&req.pod_uid)? {
            return Ok(existing);
        }
        let dir = self.sandbox_dir(&req.pod_uid);
        if dir.exists() {
            // Leftover of a crash or reboot: clean it fully before starting over.
            self.remove_locked(&req.pod_uid)?;
        }
        std::fs::create_dir(&dir).map_err(io_err(format!("create {}", dir.display())))?;

        let mut state = None;
        let result = self.create_inner(req, &dir, &mut state);
        if let Err(e) = result {
            if let Err(undo) = self.undo_create(&req.pod_uid, &dir, state.as_ref(), req) {
                tracing::warn!(pod_uid = %req.pod_uid, error = %undo, "cleanup after failed sandbox create");
            }
            return Err(e);
        }
        result
    }

    fn create_inner(
        &self,
        req: &SandboxRequest,
        dir: &Path,
        cni_result: &mut Option<serde_json::Value>,
    ) -> Result<Sandbox> {
        let (netns, ipcns, utsns) = (dir.join("net"), dir.join("ipc"), dir.join("uts"));
        let (ip, gateway, result) = match req.host_network {
            Some(host_ip) => {
                ns::create_namespaces(None, &ipcns, &utsns, &req.hostname)?;
                (host_ip, Ipv4Addr::UNSPECIFIED, None)
            }
            None => {
                ns::create_namespaces(Some(&netns), &ipcns, &utsns, &req.hostname)?;
                let rc = Self::runtime_config(&req.port_mappings);
                let result = self.cni().add(&req.pod_uid, &netns, &rc, cni_result)?;
                let (ip, gateway) = cni::parse_ip(&result, &self.cidr)?;
                (ip, gateway, Some(result))
            }
        };
        let sandbox = Sandbox {
            pod_uid: req.pod_uid.clone(),
            netns,
            ipcns,
            utsns,
            ip,
            gateway,
            host_network: req.host_network.is_some(),
        };
        let state = SandboxState {
            sandbox: sandbox.clone(),
            namespace: req.namespace.clone(),
            name: req.name.clone(),
            hostname: req.hostname.clone(),
            port_mappings: req.port_mappings.clone(),
            cni_result: result,
        };
        let data = serde_json::to_vec_pretty(&state)
            .map_err(|e| NetError::Other(format!("serialize sandbox state: {e}")))?;
        write_atomic(&dir.join("sandbox.json"), &data)?;
        Ok(sandbox)
    }

    fn undo_create(
        &self,
        uid: &str,
        dir: &Path,
        prev: Option<&serde_json::Value>,
        req: &SandboxRequest,
    ) -> Result<()> {
        let netns = dir.join("net");
        let netns_arg = ns::is_ns_mounted(&netns).then_some(netns.as_path());
        let rc = Self::runtime_config(&req.port_mappings);
        let del = if req.host_network.is_some() {
            Ok(())
        } else {
            self.cni().del(uid, netns_arg, &rc, prev)
        };
        ns::unmount_all(dir)?;
        std::fs::remove_dir_all(dir).map_err(io_err(format!("remove {}", dir.display())))?;
        del
    }

    /// CNI DEL, unmount the namespace files, remove the state dir. Unknown uids are a no-op.
    /// If the DEL fails (other than "not found") the state is kept so the call can be retried.
    pub fn remove_sandbox(&self, pod_uid: &str) -> Result<()> {
        validate_uid(pod_uid)?;
        let lock = self.pod_lock(pod_uid);
        let _guard = lock.lock().unwrap_or_else(|p| p.into_inner());
        self.remove_locked(pod_uid)?;
        drop(_guard);
        let mut locks = self.pod_locks.lock().unwrap_or_else(|p| p.into_inner());
        // Only drop the entry if no one else holds/waits on it.
        if locks
            .get(pod_uid)
            .is_some_and(|l| Arc::strong_count(l) <= 2)
        {
            locks.remove(pod_uid);
        }
        Ok(())
    }

    fn remove_locked(&self, uid: &str) -> Result<()> {
        let dir = self.sandbox_dir(uid);
        if !dir.exists() {
            return Ok(());
        }
        // A corrupt state file must not block cleanup: DEL without prevResult/portmaps then.
        let state = self.load_state(uid).unwrap_or_else(|e| {
            tracing::warn!(pod_uid = %uid, error = %e, "ignoring unreadable sandbox state");
            None
        });
        let netns = dir.join("net");
        // Plugins treat an empty CNI_NETNS as "namespace already gone" and only release IPAM.
        let netns_arg = ns::is_ns_mounted(&netns).then_some(netns.as_path());
        let mappings = state
            .as_ref()
            .map(|s| s.port_mappings.as_slice())
            .unwrap_or(&[]);
        let rc = Self::runtime_config(mappings);
        let prev = state.as_ref().and_then(|s| s.cni_result.as_ref());
        // A host-network pod never had a CNI network.
        if !state.as_ref().is_some_and(|s| s.sandbox.host_network) {
            self.cni().del(uid, netns_arg, &rc, prev)?;
        }
        ns::unmount_all(&dir)?;
        std::fs::remove_dir_all(&dir).map_err(io_err(format!("remove {}", dir.display())))
    }

    /// The sandbox of `pod_uid` if its state is on disk and its namespaces are still mounted
    /// (after a reboot they are not: remove it and create it again).
    pub fn sandbox(&self, pod_uid: &str) -> Result<Option<Sandbox>> {
        validate_uid(pod_uid)?;
        self.sandbox_locked(pod_uid)
    }

    fn sandbox_locked(&self, pod_uid: &str) -> Result<Option<Sandbox>> {
        let Some(state) = self.load_state(pod_uid)? else {
            return Ok(None);
        };
        let sb = state.sandbox;
        let mounted = [&sb.netns, &sb.ipcns, &sb.utsns]
            .iter()
            .filter(|p| !(sb.host_network && **p == &sb.netns))
            .all(|p| ns::is_ns_mounted(p));
        Ok(mounted.then_some(sb))
    }

    /// Pod uids that have a sandbox directory (complete or not).
    pub fn list_sandboxes(&self) -> Result<Vec<String>> {
        let dir = self.sandboxes_dir();
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(format!("read {}", dir.display()))(e)),
        };
        let mut uids = Vec::new();
        for entry in rd {
            let entry = entry.map_err(io_err(format!("read {}", dir.display())))?;
            let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
            if let (true, Some(name)) = (is_dir, entry.file_name().to_str()) {
                if validate_uid(name).is_ok() {
                    uids.push(name.to_string());
                }
            }
        }
        uids.sort();
        Ok(uids)
    }

    /// Removes every sandbox, then the bridge, the IPAM store and the sandboxes mount: the node
    /// is left as before the first `create_sandbox` (bar `cni.conflist`). For shutdown-for-good
    /// and tests. Stops at the first sandbox that cannot be removed.
    pub fn teardown_all(&self) -> Result<()> {
        for uid in self.list_sandboxes()? {
            self.remove_sandbox(&uid)?;
        }
        // A bridge that is already gone is fine.
        netlink::delete_link(None, &self.bridge)?;
        let ipam = self.net_dir.join("ipam");
        match std::fs::remove_dir_all(&ipam) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(format!("remove {}", ipam.display()))(e)),
        }
        let mut private = self
            .sandboxes_private
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let dir = self.sandboxes_dir();
        ns::unmount_self_mount(&dir)?;
        *private = false;
        match std::fs::remove_dir(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(format!("remove {}", dir.display()))(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_parse() {
        let c = Ipv4Cidr::parse("100.64.3.0/24").unwrap();
        assert_eq!(c.net().prefix_len(), 24);
        assert_eq!(c.first_host(), Ipv4Addr::new(100, 64, 3, 1));
        assert!(c.contains(Ipv4Addr::new(100, 64, 3, 200)));
        assert!(!c.contains(Ipv4Addr::new(100, 64, 4, 1)));
        for bad in [
            "",
            "100.64.3.0",
            "100.64.3.1/24",
            "100.64.3.0/33",
            "100.64.3.0/31",
            "100.64.3.0/+24",
            "100.64.300.0/24",
            "fd00::/64",
            "x/24",
        ] {
            assert!(
                matches!(Ipv4Cidr::parse(bad), Err(NetError::InvalidCidr(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn uid_validation() {
        assert!(validate_uid("0b7f3c1e-1234-4a5b-9c8d-abcdef012345").is_ok());
        for bad in ["", ".", "..", "a/b", ".x", "a b"] {
            assert!(validate_uid(bad).is_err(), "{bad}");
        }
    }
}
