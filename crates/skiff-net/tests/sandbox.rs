//! Real sandboxes with the Debian CNI plugins (needs root). Each test has its own data dir (so its
//! own bridge and IPAM store) and its own /24 of 100.64.200.0/21; they run in parallel.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sched::CloneFlags;
use skiff_net::{NetConfig, NetError, PodNetwork, PortMapping, SandboxRequest};

/// The bridge plugin (isGateway) turns on net.ipv4.ip_forward; put it back when the last test
/// of this process that may have caused it finishes.
static FORWARD: Mutex<(usize, Option<String>)> = Mutex::new((0, None));
const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

struct Env {
    net: PodNetwork,
    _dir: tempfile::TempDir,
}

impl Env {
    fn new(n: u8) -> Self {
        {
            let mut f = FORWARD.lock().unwrap_or_else(|p| p.into_inner());
            if f.0 == 0 {
                f.1 = std::fs::read_to_string(IP_FORWARD).ok();
            }
            f.0 += 1;
        }
        let dir = tempfile::tempdir().unwrap();
        let net = PodNetwork::new(NetConfig {
            data_dir: dir.path().to_path_buf(),
            pod_cidr: format!("100.64.{n}.0/24"),
            cni_bin_dir: None,
        })
        .unwrap();
        Env { net, _dir: dir }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Err(e) = self.net.teardown_all() {
            eprintln!("teardown_all failed: {e}");
        }
        let mut f = FORWARD.lock().unwrap_or_else(|p| p.into_inner());
        f.0 -= 1;
        if f.0 == 0 {
            if let Some(v) = f.1.take() {
                let _ = std::fs::write(IP_FORWARD, v);
            }
        }
    }
}

fn req(uid: &str, hostname: &str, port_mappings: Vec<PortMapping>) -> SandboxRequest {
    SandboxRequest {
        pod_uid: uid.into(),
        namespace: "default".into(),
        name: format!("pod-{uid}"),
        hostname: hostname.into(),
        port_mappings,
        host_network: None,
    }
}

/// Runs `f` on a thread that joined the namespace at `ns`; sockets created there stay in it.
fn in_ns<T: Send + 'static>(
    ns: &Path,
    kind: CloneFlags,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let ns = ns.to_path_buf();
    std::thread::spawn(move || {
        let file = std::fs::File::open(&ns).unwrap();
        nix::sched::setns(file.as_fd(), kind).unwrap();
        f()
    })
    .join()
    .unwrap()
}

fn sh(args: &[&str]) -> (bool, String) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
    s.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), s)
}

fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(PathBuf::from)
        .filter(|p| p.starts_with(dir))
        .collect()
}

/// Interfaces enslaved to the bridge (the veths of live sandboxes).
fn bridge_ports(bridge: &str) -> Vec<String> {
    let (_, out) = sh(&["ip", "-o", "link", "show", "master", bridge]);
    out.lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|s| s.split('@').next().unwrap_or(s).to_string())
        .collect()
}

fn ipam_reserved(net: &PodNetwork) -> Vec<String> {
    match std::fs::read_dir(net.ipam_dir()) {
        Ok(rd) => rd
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.parse::<Ipv4Addr>().is_ok())
            .collect(),
        Err(_) => Vec::new(),
    }
}

fn exchange(listener: &TcpListener, to: SocketAddr, from_ns: Option<&Path>) -> SocketAddr {
    let connect = move || -> TcpStream {
        let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(5)).unwrap();
        s.write_all(b"ping").unwrap();
        s
    };
    let _client = match from_ns {
        Some(ns) => in_ns(ns, CloneFlags::CLONE_NEWNET, connect),
        None => connect(),
    };
    let (mut conn, peer) = listener.accept().unwrap();
    let mut buf = [0u8; 4];
    conn.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ping");
    peer
}

#[test]
#[ignore = "needs root: CNI sandboxes (network namespaces, bridges, veths)"]
fn two_pods_talk_and_have_their_own_namespaces() {
    let env = Env::new(201);
    let net = &env.net;
    let a = net.create_sandbox(&req("pod-a", "alpha", vec![])).unwrap();
    let b = net.create_sandbox(&req("pod-b", "beta", vec![])).unwrap();
    let cidr = net.pod_cidr();
    assert_ne!(a.ip, b.ip);
    assert!(cidr.contains(a.ip) && cidr.contains(b.ip), "{a:?} {b:?}");
    assert_eq!(a.gateway, Ipv4Addr::new(100, 64, 201, 1));
    assert_eq!(b.gateway, a.gateway);

    for sb in [&a, &b] {
        let net_arg = format!("--net={}", sb.netns.display());
        let (ok, out) = sh(&[
            "nsenter", &net_arg, "ip", "-o", "-4", "addr", "show", "eth0",
        ]);
        assert!(ok && out.contains(&format!("inet {}/24", sb.ip)), "{out}");
        let (ok, out) = sh(&["nsenter", &net_arg, "ip", "-o", "link", "show", "lo"]);
        assert!(ok && out.contains(",UP"), "lo not up: {out}");
        let (ok, out) = sh(&["nsenter", &net_arg, "ip", "-4", "route", "show", "default"]);
        assert!(ok && out.contains(&format!("via {}", sb.gateway)), "{out}");
        // Distinct IPC namespace.
        let host_ipc = std::fs::metadata("/proc/self/ns/ipc").unwrap();
        let pod_ipc = std::fs::metadata(&sb.ipcns).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_ne!(host_ipc.ino(), pod_ipc.ino());
    }
    let hostname = |p: &Path| {
        let (ok, out) = sh(&[
            "nsenter",
            &format!("--uts={}", p.display()),
            "cat",
            "/proc/sys/kernel/hostname",
        ]);
        assert!(ok, "{out}");
        out.trim().to_string()
    };
    assert_eq!(hostname(&a.utsns), "alpha");
    assert_eq!(hostname(&b.utsns), "beta");

    // Listeners created inside each pod's netns; connections from the host and across pods.
    let lb = in_ns(&b.netns, CloneFlags::CLONE_NEWNET, || {
        TcpListener::bind("0.0.0.0:8080").unwrap()
    });
    let la = in_ns(&a.netns, CloneFlags::CLONE_NEWNET, || {
        TcpListener::bind("0.0.0.0:8080").unwrap()
    });
    let peer = exchange(&lb, SocketAddr::from((b.ip, 8080)), None);
    assert_eq!(
        peer.ip(),
        std::net::IpAddr::V4(b.gateway),
        "host reaches B from the bridge IP"
    );
    exchange(&la, SocketAddr::from((a.ip, 8080)), None);
    let peer = exchange(&lb, SocketAddr::from((b.ip, 8080)), Some(&a.netns));
    assert_eq!(
        peer.ip(),
        std::net::IpAddr::V4(a.ip),
        "A reaches B directly"
    );
    // Loopback inside the pod works (lo is up).
    let ll = in_ns(&a.netns, CloneFlags::CLONE_NEWNET, || {
        TcpListener::bind("127.0.0.1:9090").unwrap()
    });
    exchange(
        &ll,
        SocketAddr::from(([127, 0, 0, 1], 9090)),
        Some(&a.netns),
    );
    drop((la, lb, ll));

    let mut uids = net.list_sandboxes().unwrap();
    uids.sort();
    assert_eq!(uids, ["pod-a", "pod-b"]);
    assert_eq!(bridge_ports(net.bridge_name()).len(), 2);
}

#[test]
#[ignore = "needs root: CNI sandboxes (network namespaces, bridges, veths)"]
fn lifecycle_remove_readopt_teardown() {
    let env = Env::new(202);
    let net = &env.net;
    let data = net.data_dir().to_path_buf();
    let sb = net.create_sandbox(&req("life-1", "life", vec![])).unwrap();
    // Idempotent create and re-adoption by a fresh PodNetwork on the same data dir.
    assert_eq!(
        net.create_sandbox(&req("life-1", "life", vec![])).unwrap(),
        sb
    );
    assert_eq!(net.sandbox("life-1").unwrap(), Some(sb.clone()));
    let again = PodNetwork::new(NetConfig {
        data_dir: data.clone(),
        pod_cidr: "100.64.202.0/24".into(),
        cni_bin_dir: None,
    })
    .unwrap();
    assert_eq!(again.bridge_name(), net.bridge_name());
    assert_eq!(again.sandbox("life-1").unwrap(), Some(sb.clone()));
    assert_eq!(net.list_sandboxes().unwrap(), ["life-1"]);
    assert_eq!(ipam_reserved(net), [sb.ip.to_string()]);
    let veths = bridge_ports(net.bridge_name());
    assert_eq!(veths.len(), 1);

    net.remove_sandbox("life-1").unwrap();
    let sandbox_dir = data.join("net/sandboxes/life-1");
    assert!(!sandbox_dir.exists());
    assert!(mounts_under(&sandbox_dir).is_empty());
    // Only the private self-mount of sandboxes/ remains until teardown.
    assert_eq!(mounts_under(&data), [data.join("net/sandboxes")]);
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let sandboxes = data.join("net/sandboxes");
    let line = info
        .lines()
        .find(|l| l.split(' ').nth(4).map(Path::new) == Some(sandboxes.as_path()))
        .unwrap();
    let optional = line.split(" - ").next().unwrap();
    assert!(
        !optional.contains("shared:") && !optional.contains("master:"),
        "{line}"
    );
    assert!(ipam_reserved(net).is_empty());
    assert!(bridge_ports(net.bridge_name()).is_empty());
    let (exists, _) = sh(&["ip", "link", "show", &veths[0]]);
    assert!(!exists, "veth {} still there", veths[0]);
    assert_eq!(net.sandbox("life-1").unwrap(), None);
    net.remove_sandbox("life-1").unwrap();
    net.remove_sandbox("never-existed").unwrap();
    assert!(net.list_sandboxes().unwrap().is_empty());

    // A stale dir (e.g. after a reboot: state on disk, nothing mounted) is not adopted, and
    // create cleans it up and starts over.
    net.create_sandbox(&req("life-2", "life", vec![])).unwrap();
    let dir2 = data.join("net/sandboxes/life-2");
    for f in ["net", "ipc", "uts"] {
        nix::mount::umount2(&dir2.join(f), nix::mount::MntFlags::MNT_DETACH).unwrap();
    }
    assert_eq!(net.sandbox("life-2").unwrap(), None);
    let sb2 = net.create_sandbox(&req("life-2", "life", vec![])).unwrap();
    assert_eq!(net.sandbox("life-2").unwrap(), Some(sb2.clone()));
    assert_eq!(ipam_reserved(net), [sb2.ip.to_string()]);

    net.teardown_all().unwrap();
    assert!(net.list_sandboxes().unwrap().is_empty());
    assert!(mounts_under(&data).is_empty(), "{:?}", mounts_under(&data));
    let (exists, _) = sh(&["ip", "link", "show", net.bridge_name()]);
    assert!(!exists, "bridge survived teardown");
    assert!(!data.join("net/ipam").exists());
    // Teardown is idempotent too.
    net.teardown_all().unwrap();
}

#[test]
#[ignore = "needs root: CNI sandboxes (network namespaces, bridges, veths)"]
fn create_remove_30_times_leaves_nothing() {
    let env = Env::new(203);
    let net = &env.net;
    let data = net.data_dir().to_path_buf();
    let mut create = Vec::new();
    let mut remove = Vec::new();
    for i in 0..30 {
        let uid = format!("churn-{i}");
        let t = Instant::now();
        let sb = net.create_sandbox(&req(&uid, "churn", vec![])).unwrap();
        create.push(t.elapsed());
        assert!(net.pod_cidr().contains(sb.ip));
        let t = Instant::now();
        net.remove_sandbox(&uid).unwrap();
        remove.push(t.elapsed());
    }
    create.sort();
    remove.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    eprintln!(
        "sandbox create: median {:.1} ms (min {:.1}, max {:.1}); remove: median {:.1} ms (min {:.1}, max {:.1})",
        ms(create[15]),
        ms(create[0]),
        ms(create[29]),
        ms(remove[15]),
        ms(remove[0]),
        ms(remove[29])
    );
    assert!(net.list_sandboxes().unwrap().is_empty());
    assert!(ipam_reserved(net).is_empty());
    assert!(bridge_ports(net.bridge_name()).is_empty());
    assert_eq!(mounts_under(&data), [data.join("net/sandboxes")]);
}

#[test]
#[ignore = "needs root: CNI sandboxes (network namespaces, bridges, veths)"]
fn host_port_reaches_pod() {
    let before = sh(&["iptables", "-t", "nat", "-S"]).1;
    let tables_before = sh(&["nft", "list", "tables"]).1;
    let env = Env::new(204);
    let net = &env.net;
    let pm = PortMapping {
        host_port: 18204,
        container_port: 8080,
        protocol: "tcp".into(),
        host_ip: None,
    };
    let sb = net
        .create_sandbox(&req("ports-1", "ports", vec![pm]))
        .unwrap();
    let l = in_ns(&sb.netns, CloneFlags::CLONE_NEWNET, || {
        TcpListener::bind("0.0.0.0:8080").unwrap()
    });
    // Through the DNAT on the node's bridge address.
    exchange(&l, SocketAddr::from((sb.gateway, 18204)), None);
    // 127.0.0.1 relies on portmap's route_localnet + SNAT; report rather than require it.
    match TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], 18204)),
        Duration::from_secs(2),
    ) {
        Ok(mut s) => {
            s.write_all(b"ping").unwrap();
            let (mut c, _) = l.accept().unwrap();
            let mut buf = [0u8; 4];
            c.read_exact(&mut buf).unwrap();
            eprintln!("hostPort via 127.0.0.1: works");
        }
        Err(e) => eprintln!("hostPort via 127.0.0.1: not reachable ({e})"),
    }
    drop(l);
    net.remove_sandbox("ports-1").unwrap();
    let after = sh(&["iptables", "-t", "nat", "-S"]).1;
    assert!(
        !after.contains("ports-1") && !after.contains("18204"),
        "per-pod portmap rules left: {after}"
    );
    drop(env);
    cleanup_portmap_chains(&before, &tables_before);
}

/// portmap never deletes its shared top-level chains; remove them if this test created them
/// and they are empty (nobody else uses them).
fn cleanup_portmap_chains(before: &str, tables_before: &str) {
    let chains = [
        "CNI-HOSTPORT-DNAT",
        "CNI-HOSTPORT-SETMARK",
        "CNI-HOSTPORT-MASQ",
    ];
    let now = sh(&["iptables", "-t", "nat", "-S"]).1;
    for chain in chains {
        if before.contains(&format!("-N {chain}")) || !now.contains(&format!("-N {chain}")) {
            continue;
        }
        let own_rules = now
            .lines()
            .filter(|l| l.starts_with(&format!("-A {chain} ")))
            .count();
        if own_rules > 0 && chain == "CNI-HOSTPORT-DNAT" {
            continue;
        }
        for rule in now.lines().filter(|l| l.ends_with(&format!("-j {chain}"))) {
            // `-S` output is shell-quoted (comments with spaces): let sh re-split it.
            if let Some(spec) = rule.strip_prefix("-A ") {
                sh(&["sh", "-c", &format!("iptables -t nat -D {spec}")]);
            }
        }
        sh(&["iptables", "-t", "nat", "-F", chain]);
        sh(&["iptables", "-t", "nat", "-X", chain]);
    }
    // iptables-nft created `table ip nat` / `ip6 nat` if they were not there; drop them if empty.
    for (family, tool) in [("ip", "iptables"), ("ip6", "ip6tables")] {
        if !tables_before.contains(&format!("table {family} nat\n")) {
            let rest = sh(&[tool, "-t", "nat", "-S"]).1;
            if rest.lines().all(|l| l.starts_with("-P ")) {
                sh(&["nft", "delete", "table", family, "nat"]);
            }
        }
    }
}

#[test]
#[ignore = "needs root: CNI sandboxes (network namespaces, bridges, veths)"]
fn failed_plugin_rolls_back() {
    // A plugin dir whose portmap fails ADD: bridge + IPAM must be undone.
    let bins = tempfile::tempdir().unwrap();
    for p in ["bridge", "host-local"] {
        std::os::unix::fs::symlink(Path::new("/usr/lib/cni").join(p), bins.path().join(p)).unwrap();
    }
    let fake = bins.path().join("portmap");
    std::fs::write(
        &fake,
        "#!/bin/sh\ncat >/dev/null\nif [ \"$CNI_COMMAND\" = ADD ]; then\n  echo '{\"cniVersion\":\"1.0.0\",\"code\":999,\"msg\":\"injected failure\"}'\n  echo oops >&2\n  exit 1\nfi\nexit 0\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();

    let mut env = Env::new(205);
    let dir = tempfile::tempdir().unwrap();
    env.net = PodNetwork::new(NetConfig {
        data_dir: dir.path().to_path_buf(),
        pod_cidr: "100.64.205.0/24".into(),
        cni_bin_dir: Some(bins.path().to_path_buf()),
    })
    .unwrap();
    let net = &env.net;
    let err = net
        .create_sandbox(&req("fail-1", "fail", vec![]))
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(&err, NetError::Plugin { plugin, command, .. } if plugin == "portmap" && command == "ADD"),
        "{err:?}"
    );
    assert!(
        msg.contains("injected failure") && msg.contains("oops"),
        "{msg}"
    );
    assert!(net.list_sandboxes().unwrap().is_empty());
    assert!(ipam_reserved(net).is_empty());
    assert!(bridge_ports(net.bridge_name()).is_empty());
    let data = net.data_dir().to_path_buf();
    assert!(mounts_under(&data.join("net/sandboxes/fail-1")).is_empty());
    net.teardown_all().unwrap();
    assert!(mounts_under(&data).is_empty());
    let _ = std::fs::remove_dir_all(dir.path());
}

#[test]
fn bad_config_errors_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    for bad in ["100.64.3.0", "100.64.3.5/24", "10.0.0.0/33", "banana"] {
        let err = PodNetwork::new(NetConfig {
            data_dir: dir.path().to_path_buf(),
            pod_cidr: bad.into(),
            cni_bin_dir: None,
        })
        .err()
        .unwrap();
        assert!(matches!(err, NetError::InvalidCidr(_)), "{bad}: {err:?}");
        assert!(err.to_string().contains(bad), "{err}");
    }
    let empty = tempfile::tempdir().unwrap();
    let err = PodNetwork::new(NetConfig {
        data_dir: dir.path().to_path_buf(),
        pod_cidr: "100.64.206.0/24".into(),
        cni_bin_dir: Some(empty.path().to_path_buf()),
    })
    .err()
    .unwrap();
    assert!(matches!(err, NetError::PluginsMissing(_)), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("containernetworking-plugins")
            && msg.contains(&*empty.path().to_string_lossy()),
        "{msg}"
    );

    // The conflist written for a good config.
    let net = PodNetwork::new(NetConfig {
        data_dir: dir.path().to_path_buf(),
        pod_cidr: "100.64.206.0/24".into(),
        cni_bin_dir: None,
    })
    .unwrap();
    assert!(net.bridge_name().len() <= 15 && net.bridge_name().starts_with("sk"));
    let conf: serde_json::Value =
        serde_json::from_slice(&std::fs::read(net.conflist_path()).unwrap()).unwrap();
    assert_eq!(conf["cniVersion"], "1.0.0");
    assert_eq!(conf["name"], net.network_name());
    assert_eq!(conf["plugins"][0]["bridge"], net.bridge_name());
    assert_eq!(conf["plugins"][0]["ipMasq"], false);
    assert_eq!(
        conf["plugins"][0]["ipam"]["ranges"][0][0]["subnet"],
        "100.64.206.0/24"
    );
    assert_eq!(conf["plugins"][1]["type"], "portmap");
    // Invalid uids/hostnames are refused before anything is created.
    assert!(net.create_sandbox(&req("../x", "h", vec![])).is_err());
    assert!(net.create_sandbox(&req("ok", "bad host", vec![])).is_err());
    assert!(net.list_sandboxes().unwrap().is_empty());
    net.teardown_all().unwrap();
}

/// `hostNetwork: true`: IPC and UTS of its own, the host's network, the node's IP; no CNI
/// network, no IP lease, no veth; re-adopted and removed like any sandbox.
#[test]
#[ignore = "needs root: CNI sandboxes (network namespaces, bridges, veths)"]
fn host_network_sandbox() {
    let env = Env::new(207);
    let net = &env.net;
    let mut r = req("hostnet-1", "node-x", vec![]);
    r.host_network = Some(Ipv4Addr::LOCALHOST);
    let sb = net.create_sandbox(&r).unwrap();
    assert!(sb.host_network);
    assert_eq!(sb.ip, Ipv4Addr::LOCALHOST);
    assert!(!sb.netns.exists(), "no network namespace of its own");
    assert_eq!(net.sandbox("hostnet-1").unwrap(), Some(sb.clone()));
    assert!(ipam_reserved(net).is_empty());
    let (bridge, _) = sh(&["ip", "link", "show", net.bridge_name()]);
    assert!(!bridge, "no CNI network, so no bridge");
    // Its UTS namespace carries the hostname; the network is the host's.
    let (host, net_link) = in_ns(&sb.utsns, CloneFlags::CLONE_NEWUTS, || {
        (
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .unwrap()
                .trim()
                .to_string(),
            std::fs::read_link("/proc/thread-self/ns/net").unwrap(),
        )
    });
    assert_eq!(host, "node-x");
    assert_eq!(net_link, std::fs::read_link("/proc/self/ns/net").unwrap());
    net.remove_sandbox("hostnet-1").unwrap();
    assert!(net.list_sandboxes().unwrap().is_empty());
    assert!(mounts_under(&net.data_dir().join("net/sandboxes/hostnet-1")).is_empty());
}
