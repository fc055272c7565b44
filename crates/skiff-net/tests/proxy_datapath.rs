//! The service proxy on real nftables with real pod sandboxes (needs root). Each test has its own
//! data dir (so its own table `skiff_<hash>` and bridge), its own /24 of 100.64.150-170.x and
//! NodePorts outside the API's 30000-32767 range; traffic goes only to loopback, the test's
//! bridge and the test's pods (ClusterIPs get a route via the test's bridge).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sched::CloneFlags;
use skiff_net::proxy::{
    render, EndpointModel, Protocol, Proxy, ProxyConfig, RenderConfig, ServiceModel,
    ServicePortModel,
};
use skiff_net::{NetConfig, PodNetwork, Sandbox, SandboxRequest};

static FORWARD: Mutex<(usize, Option<String>)> = Mutex::new((0, None));
const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

/// A pod: a sandbox with a TCP responder answering `pod-N\n` on :8080.
struct Pod {
    sb: Sandbox,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Pod {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Env {
    net: PodNetwork,
    proxy: Option<Proxy>,
    routes: Vec<String>,
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
        Env {
            net,
            proxy: None,
            routes: Vec::new(),
            _dir: dir,
        }
    }

    fn pod(&self, i: usize) -> Pod {
        let sb = self
            .net
            .create_sandbox(&SandboxRequest {
                pod_uid: format!("pod-{i}"),
                namespace: "default".into(),
                name: format!("pod-{i}"),
                hostname: format!("pod-{i}"),
                port_mappings: vec![],
                host_network: None,
            })
            .unwrap();
        let listener = in_ns(&sb.netns, || TcpListener::bind("0.0.0.0:8080").unwrap());
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((mut c, _)) => {
                        let _ = c.set_nonblocking(false);
                        let _ = c.write_all(format!("pod-{i}\n").as_bytes());
                        // Let the client close first: TIME_WAIT stays on the client side.
                        let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
                        let mut b = [0u8; 16];
                        let _ = c.read(&mut b);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Pod {
            sb,
            stop,
            thread: Some(thread),
        }
    }

    fn proxy(&mut self) -> &Proxy {
        let p = Proxy::new(ProxyConfig {
            data_dir: self.net.data_dir().to_path_buf(),
            bridge: self.net.bridge_name().to_string(),
            pod_cidr: self.net.pod_cidr(),
            debounce: Duration::from_millis(20),
        })
        .unwrap();
        self.proxy.insert(p)
    }

    fn apply(&self, services: Vec<ServiceModel>) {
        let p = self.proxy.as_ref().unwrap();
        p.update(services);
        p.wait_synced(Duration::from_secs(10)).unwrap();
    }

    /// The host reaches ClusterIP `ip` through the test's bridge (no default route needed).
    fn route(&mut self, ip: Ipv4Addr) {
        let dst = format!("{ip}/32");
        let (ok, out) = sh(&[
            "ip",
            "route",
            "replace",
            &dst,
            "dev",
            self.net.bridge_name(),
        ]);
        assert!(ok, "{out}");
        self.routes.push(dst);
    }

    fn table(&self) -> String {
        skiff_net::proxy::table_name(self.net.data_dir())
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        for r in &self.routes {
            let _ = sh(&["ip", "route", "del", r]);
        }
        if let Some(p) = self.proxy.take() {
            if let Err(e) = p.remove() {
                eprintln!("proxy remove failed: {e}");
            }
        }
        let _ = skiff_net::proxy::remove_table(self.net.data_dir());
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

fn in_ns<T: Send + 'static>(ns: &Path, f: impl FnOnce() -> T + Send + 'static) -> T {
    let ns = ns.to_path_buf();
    std::thread::spawn(move || {
        let file = std::fs::File::open(&ns).unwrap();
        nix::sched::setns(file.as_fd(), CloneFlags::CLONE_NEWNET).unwrap();
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

/// One request: the responding pod's name, or the connect error.
fn get(addr: SocketAddr) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    let mut buf = Vec::new();
    let mut b = [0u8; 32];
    while !buf.ends_with(b"\n") {
        let n = s.read(&mut b)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&b[..n]);
    }
    Ok(String::from_utf8_lossy(&buf).trim().to_string())
}

fn get_from(ns: &Path, addr: SocketAddr) -> std::io::Result<String> {
    in_ns(ns, move || get(addr))
}

fn ep(pod: &Pod) -> EndpointModel {
    EndpointModel {
        ip: pod.sb.ip,
        port: 8080,
        ready: true,
        serving: true,
        terminating: false,
        local: true,
    }
}

fn service(
    name: &str,
    ip: Ipv4Addr,
    node_port: Option<u16>,
    eps: Vec<EndpointModel>,
) -> ServiceModel {
    ServiceModel {
        namespace: "default".into(),
        name: name.into(),
        cluster_ip: Some(ip),
        ports: vec![ServicePortModel {
            name: "http".into(),
            protocol: Protocol::Tcp,
            port: 80,
            node_port,
            endpoints: eps,
        }],
        session_affinity_timeout: None,
        external_traffic_policy_local: false,
    }
}

fn counts(results: &[String], n: usize) -> Vec<usize> {
    (0..n)
        .map(|i| results.iter().filter(|r| **r == format!("pod-{i}")).count())
        .collect()
}

#[test]
#[ignore = "needs root: network namespaces, veths and nftables"]
fn clusterip_spreads_over_all_pods() {
    let mut env = Env::new(150);
    let pods: Vec<Pod> = (0..3).map(|i| env.pod(i)).collect();
    let vip = Ipv4Addr::new(10, 150, 0, 10);
    env.route(vip);
    env.proxy();
    env.apply(vec![service(
        "web",
        vip,
        None,
        pods.iter().map(ep).collect(),
    )]);
    let results: Vec<String> = (0..150)
        .map(|_| get(SocketAddr::from((vip, 80))).unwrap())
        .collect();
    let c = counts(&results, 3);
    eprintln!("spread over 150 connects: {c:?}");
    assert_eq!(c.iter().sum::<usize>(), 150, "{results:?}");
    assert!(c.iter().all(|&n| n >= 20), "uneven spread {c:?}");
}

#[test]
#[ignore = "needs root: network namespaces, veths and nftables"]
fn nodeport_on_loopback_and_gateway() {
    let mut env = Env::new(151);
    let pods: Vec<Pod> = (0..2).map(|i| env.pod(i)).collect();
    let np = 29151;
    env.proxy();
    env.apply(vec![service(
        "np",
        Ipv4Addr::new(10, 151, 0, 10),
        Some(np),
        pods.iter().map(ep).collect(),
    )]);
    let rl = format!(
        "/proc/sys/net/ipv4/conf/{}/route_localnet",
        env.net.bridge_name()
    );
    assert_eq!(std::fs::read_to_string(&rl).unwrap().trim(), "1");
    for host in [Ipv4Addr::LOCALHOST, env.net.gateway()] {
        let results: Vec<String> = (0..20)
            .map(|_| get(SocketAddr::from((host, np))).unwrap())
            .collect();
        let c = counts(&results, 2);
        assert_eq!(c.iter().sum::<usize>(), 20, "{host}: {results:?}");
        assert!(c.iter().all(|&n| n > 0), "{host}: {c:?}");
    }
    // From a pod too (to the node's bridge address).
    let from = pods[0].sb.netns.clone();
    let r = get_from(&from, SocketAddr::from((env.net.gateway(), np))).unwrap();
    assert!(r.starts_with("pod-"), "{r}");
    env.proxy.take().unwrap().remove().unwrap();
    assert_eq!(std::fs::read_to_string(&rl).unwrap().trim(), "0");
}

#[test]
#[ignore = "needs root: network namespaces, veths and nftables"]
fn pod_reaches_clusterip_including_hairpin() {
    let mut env = Env::new(152);
    let pods: Vec<Pod> = (0..2).map(|i| env.pod(i)).collect();
    let vip = Ipv4Addr::new(10, 152, 0, 10);
    let own = Ipv4Addr::new(10, 152, 0, 11);
    env.proxy();
    env.apply(vec![
        service("both", vip, None, pods.iter().map(ep).collect()),
        service("self", own, None, vec![ep(&pods[0])]),
    ]);
    let ns = pods[0].sb.netns.clone();
    let results: Vec<String> = in_ns(&ns, move || {
        (0..40)
            .map(|_| get(SocketAddr::from((vip, 80))).unwrap())
            .collect()
    });
    let c = counts(&results, 2);
    assert!(c[0] > 0 && c[1] > 0 && c[0] + c[1] == 40, "{c:?}");
    for _ in 0..5 {
        assert_eq!(get_from(&ns, SocketAddr::from((own, 80))).unwrap(), "pod-0");
    }
}

#[test]
#[ignore = "needs root: network namespaces, veths and nftables"]
fn no_ready_endpoints_rejects_at_once_and_terminating_fallback_serves() {
    let mut env = Env::new(153);
    let pods: Vec<Pod> = (0..2).map(|i| env.pod(i)).collect();
    let down = Ipv4Addr::new(10, 153, 0, 10);
    let term = Ipv4Addr::new(10, 153, 0, 11);
    env.route(down);
    env.route(term);
    env.proxy();
    let mut not_ready = ep(&pods[0]);
    not_ready.ready = false;
    not_ready.serving = false;
    let mut terminating = ep(&pods[1]);
    terminating.ready = false;
    terminating.terminating = true;
    env.apply(vec![
        service("down", down, Some(29153), vec![not_ready]),
        service("term", term, None, vec![terminating]),
    ]);
    for addr in [
        SocketAddr::from((down, 80)),
        SocketAddr::from((Ipv4Addr::LOCALHOST, 29153)),
    ] {
        let t = Instant::now();
        let err = get(addr).unwrap_err();
        assert_eq!(
            err.kind(),
            std::io::ErrorKind::ConnectionRefused,
            "{addr}: {err}"
        );
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "{addr}: {:?}",
            t.elapsed()
        );
    }
    // From a pod (forward hook) as well.
    let ns = pods[1].sb.netns.clone();
    let err = get_from(&ns, SocketAddr::from((down, 80))).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
    for _ in 0..5 {
        assert_eq!(get(SocketAddr::from((term, 80))).unwrap(), "pod-1");
    }
    // The status handle agrees with the data path: the not-ready pod gets no new
    // connections, the terminating fallback does.
    let status = env.proxy.as_ref().unwrap().status();
    assert_eq!(status.targets(pods[0].sb.ip), Some(false));
    assert_eq!(status.targets(pods[1].sb.ip), Some(true));
}

#[test]
#[ignore = "needs root: network namespaces, veths and nftables"]
fn updates_swap_targets_and_removal_cleans_up() {
    let mut env = Env::new(154);
    let pods: Vec<Pod> = (0..2).map(|i| env.pod(i)).collect();
    let vip = Ipv4Addr::new(10, 154, 0, 10);
    env.route(vip);
    env.proxy();
    let table = env.table();
    env.apply(vec![service("swap", vip, Some(29154), vec![ep(&pods[0])])]);
    for _ in 0..10 {
        assert_eq!(get(SocketAddr::from((vip, 80))).unwrap(), "pod-0");
    }
    env.apply(vec![service("swap", vip, Some(29154), vec![ep(&pods[1])])]);
    for _ in 0..10 {
        assert_eq!(get(SocketAddr::from((vip, 80))).unwrap(), "pod-1");
        assert_eq!(
            get(SocketAddr::from((Ipv4Addr::LOCALHOST, 29154))).unwrap(),
            "pod-1"
        );
    }
    // Unchanged model: no write. A burst: one write.
    let p = env.proxy.as_ref().unwrap();
    let before = p.writes();
    env.apply(vec![service("swap", vip, Some(29154), vec![ep(&pods[1])])]);
    assert_eq!(p.writes(), before);
    for i in 0..10 {
        p.update(vec![service(
            "swap",
            vip,
            Some(29154),
            vec![ep(&pods[i % 2])],
        )]);
    }
    p.update(vec![service("swap", vip, Some(29154), vec![ep(&pods[0])])]);
    p.wait_synced(Duration::from_secs(10)).unwrap();
    assert_eq!(p.writes(), before + 1, "burst not coalesced");
    assert_eq!(get(SocketAddr::from((vip, 80))).unwrap(), "pod-0");

    let (ok, listing) = sh(&["nft", "list", "table", "ip", &table]);
    assert!(ok && listing.contains("default/swap/tcp/http"), "{listing}");
    env.apply(vec![]);
    let (ok, listing) = sh(&["nft", "list", "table", "ip", &table]);
    assert!(ok, "{listing}");
    assert!(
        !listing.contains("swap") && !listing.contains("10.154.0.10"),
        "{listing}"
    );
    assert!(!listing.contains("29154"), "{listing}");

    env.proxy.take().unwrap().remove().unwrap();
    let (ok, out) = sh(&["nft", "list", "table", "ip", &table]);
    assert!(!ok, "table still there: {out}");
}

#[test]
#[ignore = "needs root: network namespaces, veths and nftables"]
fn thousand_services_program_fast() {
    let mut env = Env::new(155);
    env.proxy();
    let cidr = env.net.pod_cidr();
    let model: Vec<ServiceModel> = (0..1000u32)
        .map(|i| {
            let eps = (0..3u32)
                .map(|k| EndpointModel {
                    ip: Ipv4Addr::from(u32::from(cidr.net().network()) + 2 + (i * 3 + k) % 250),
                    port: 8080,
                    ready: true,
                    serving: true,
                    terminating: false,
                    local: true,
                })
                .collect();
            service(
                &format!("svc-{i}"),
                Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 155, 0, 0)) + i),
                Some(20000 + i as u16),
                eps,
            )
        })
        .collect();
    let t = Instant::now();
    let script = render(
        &RenderConfig {
            table: env.table(),
            bridge: env.net.bridge_name().into(),
            pod_cidr: cidr,
            route_localnet: false,
        },
        &model,
    );
    let render_time = t.elapsed();
    let t = Instant::now();
    env.apply(model.clone());
    let first = t.elapsed();
    let mut changed = model;
    changed[500].ports[0].endpoints.pop();
    let t = Instant::now();
    env.apply(changed);
    let second = t.elapsed();
    eprintln!(
        "1,000 services x 3 endpoints: script {} KiB rendered in {:?}; first apply {:?}, \
         re-apply after one change {:?} (each incl. 20 ms debounce)",
        script.len() / 1024,
        render_time,
        first,
        second
    );
    let (ok, out) = sh(&["nft", "list", "map", "ip", &env.table(), "service-ips"]);
    assert!(
        ok && out.contains("10.155.3.231 . tcp . 80"),
        "{}",
        &out[..out.len().min(500)]
    );
    assert!(first < Duration::from_secs(10) && second < Duration::from_secs(10));
}
