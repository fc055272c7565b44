//! A `skiff server` on a private data dir and a free loopback port, driven with the real
//! kubectl. The server is stopped (SIGTERM, then SIGKILL) by PID when the harness drops.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where gcloud's SDK keeps the bundled kubectl versions the dispatcher chooses from.
pub const SDK_BIN: &str = "/usr/lib/google-cloud-sdk/bin";

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub port: u16,
    /// A /24 of its own, so parallel clusters on this host never share a bridge subnet.
    pub cluster_cidr: String,
    /// The address the API server listens on (127.0.0.1 unless a test gives another).
    pub host: String,
    /// Extra `skiff server` flags, kept for restarts.
    server_args: Vec<String>,
    child: Option<Child>,
}

pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

impl Cluster {
    pub fn start() -> Self {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let cidr = format!("100.64.{}.0/24", 10 + (std::process::id() + n) % 30);
        Self::start_with(cidr, &[])
    }

    /// A server on `cluster_cidr` with extra flags.
    pub fn start_with(cluster_cidr: String, server_args: &[&str]) -> Self {
        Self::start_on("127.0.0.1", cluster_cidr, server_args)
    }

    /// A server listening on `host` (an address of this machine).
    pub fn start_on(host: &str, cluster_cidr: String, server_args: &[&str]) -> Self {
        Self::start_at(host, free_port(), cluster_cidr, server_args)
    }

    /// A server listening on `host:port` (several HA servers share a port on their own
    /// loopback addresses, as on their own machines).
    pub fn start_at(host: &str, port: u16, cluster_cidr: String, server_args: &[&str]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("skiff-cluster-")
            .tempdir()
            .expect("tempdir");
        std::fs::create_dir_all(dir.path().join("home")).expect("home");
        let mut cluster = Cluster {
            dir,
            port,
            cluster_cidr,
            host: host.to_string(),
            server_args: server_args.iter().map(|a| a.to_string()).collect(),
            child: None,
        };
        cluster.spawn();
        cluster
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.data_dir().join("kubeconfig.yaml")
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .expect("server log");
        let child = Command::new(env!("CARGO_BIN_EXE_skiff"))
            .arg("--data-dir")
            .arg(self.data_dir())
            .args([
                "server",
                "--listen",
                &format!("{}:{}", self.host, self.port),
            ])
            .args(["--cluster-cidr", &self.cluster_cidr])
            // Hermetic: never reach out to public registries (a missing image fails at once).
            .arg("--offline")
            .args(&self.server_args)
            .env("SKIFF_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("spawn skiff server");
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.kubeconfig().exists() {
                let (code, out, _) = self.kubectl(&["get", "--raw", "/readyz"]);
                if code == 0 && out.contains("ok") {
                    return;
                }
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("skiff server exited early ({status}):\n{}", self.log());
                }
            }
            assert!(
                Instant::now() < deadline,
                "server not ready:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// kill -9, and leave it dead.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// kill -9 and start again on the same data dir and port.
    pub fn crash_and_restart(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.spawn();
    }

    /// A kubectl command with a private home (discovery cache) and our kubeconfig.
    pub fn kubectl_command(&self, bin: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin);
        let home = self.dir.path().join("home");
        cmd.args(args)
            .env("KUBECONFIG", self.kubeconfig())
            .env("HOME", &home)
            .env("CLOUDSDK_CONFIG", home.join("gcloud"))
            .stdin(Stdio::null());
        cmd
    }

    fn output(mut cmd: Command) -> (i32, String, String) {
        let out = cmd.output().expect("run kubectl");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `kubectl` as installed (gcloud's dispatcher picks the version from our /version).
    pub fn kubectl(&self, args: &[&str]) -> (i32, String, String) {
        Self::output(self.kubectl_command("kubectl", args))
    }

    /// A specific bundled kubectl, e.g. "1.31".
    pub fn kubectl_version(&self, version: &str, args: &[&str]) -> (i32, String, String) {
        let bin = format!("{SDK_BIN}/kubectl.{version}");
        Self::output(self.kubectl_command(&bin, args))
    }

    /// Runs kubectl and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.kubectl(args);
        assert_eq!(
            code, 0,
            "kubectl {args:?} failed\nstdout: {out}\nstderr: {err}"
        );
        out
    }

    /// Runs kubectl and asserts failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let (code, out, err) = self.kubectl(args);
        assert_ne!(
            code, 0,
            "kubectl {args:?} should have failed\nstdout: {out}"
        );
        err
    }

    pub fn manifest(name: &str) -> String {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/manifests")
            .join(name)
            .to_string_lossy()
            .into_owned()
    }

    /// Polls until `kubectl args` prints something containing `needle`.
    pub fn eventually(&self, args: &[&str], needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let (_, out, err) = self.kubectl(args);
            if out.contains(needle) {
                return out;
            }
            assert!(
                Instant::now() < deadline,
                "kubectl {args:?} never showed {needle:?}\nstdout: {out}\nstderr: {err}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
        // As root the embedded agent ran containers: wipe them, the sandboxes and the bridge.
        if nix::unistd::geteuid().is_root() {
            reset(&self.data_dir());
        }
    }
}

impl Cluster {
    /// A graceful restart: SIGTERM (SIGKILL after 5 s), then start again on the same data dir
    /// and port.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    fn stop(&mut self) {
        stop_child(&mut self.child, Duration::from_secs(5));
    }
}

/// SIGTERM to a process we started, SIGKILL if it is still there after `grace`.
pub fn stop_child(child: &mut Option<Child>, grace: Duration) {
    if let Some(mut child) = child.take() {
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Cluster {
    /// Root cluster tests: no container, overlay mount or pod sandbox of this data dir is left.
    pub fn assert_node_clean(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = Command::new(env!("CARGO_BIN_EXE_skiff"))
                .arg("--data-dir")
                .arg(self.data_dir())
                .args(["ps", "-aq"])
                .output()
                .expect("skiff ps");
            let containers = String::from_utf8_lossy(&out.stdout).trim().to_string();
            // The agent keeps `net/sandboxes` bind-mounted on itself (private propagation) while
            // it runs; every per-pod mount and sandbox must be gone.
            let sandboxes = self.data_dir().join("net/sandboxes");
            let mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains(self.dir.path().to_str().unwrap_or("\0")))
                .filter(|l| l.split_whitespace().nth(4) != Some(sandboxes.to_str().unwrap_or("\0")))
                .map(String::from)
                .collect();
            let left: Vec<String> = std::fs::read_dir(&sandboxes)
                .map(|d| {
                    d.flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            if containers.is_empty() && mounts.is_empty() && left.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "left behind: containers {containers:?}, sandboxes {left:?}, mounts {mounts:#?}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// A second node: `skiff agent` on its own data dir, joined to the cluster with the node token.
/// Stopped by PID and reset (containers, sandboxes, bridge, nft table) when dropped.
pub struct Agent {
    pub name: String,
    pub data_dir: PathBuf,
    /// The network namespace it runs in (`/run/netns/<name>`), if not the host's.
    netns: Option<String>,
    log: PathBuf,
    child: Option<Child>,
}

impl Cluster {
    pub fn join_agent(&self, name: &str, extra: &[&str]) -> Agent {
        self.join_agent_in(None, name, extra)
    }

    /// An agent in network namespace `netns` (only the network namespace differs from the
    /// host's, as if it ran on another machine on the same link).
    pub fn join_agent_in(&self, netns: Option<&str>, name: &str, extra: &[&str]) -> Agent {
        let server = format!("https://{}:{}", self.host, self.port);
        self.join_agent_to(netns, name, &server, extra)
    }

    /// An agent given `servers` (comma-separated URLs) as its `--server`.
    pub fn join_agent_to(
        &self,
        netns: Option<&str>,
        name: &str,
        servers: &str,
        extra: &[&str],
    ) -> Agent {
        let data_dir = self.dir.path().join(format!("node-{name}"));
        std::fs::create_dir_all(&data_dir).expect("agent data dir");
        let log = self.dir.path().join(format!("agent-{name}.log"));
        let out = std::fs::File::create(&log).expect("agent log");
        let child = in_netns(netns)
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["agent", "--server", servers])
            .arg("--token-file")
            .arg(self.data_dir().join("node-token"))
            .arg("--ca-file")
            .arg(self.data_dir().join("server/tls/ca.crt"))
            .args(["--node-name", name])
            .arg("--offline")
            .args(extra)
            .env("SKIFF_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log fd"))
            .stderr(out)
            .spawn()
            .expect("spawn skiff agent");
        Agent {
            name: name.to_string(),
            data_dir,
            netns: netns.map(str::to_string),
            log,
            child: Some(child),
        }
    }

    /// Copies images from the server's store into another node's (there is no registry yet):
    /// `skiff image save` here, `skiff image import` there.
    pub fn copy_images(&self, to: &Path, refs: &[&str]) {
        let tar = self.dir.path().join("images-copy.tar");
        let skiff = |data: &Path, args: &[&str]| {
            let out = Command::new(env!("CARGO_BIN_EXE_skiff"))
                .arg("--data-dir")
                .arg(data)
                .args(args)
                .output()
                .expect("run skiff");
            assert!(
                out.status.success(),
                "skiff {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let tar_s = tar.to_str().expect("utf8");
        let mut save = vec!["image", "save", "-o", tar_s];
        save.extend_from_slice(refs);
        skiff(&self.data_dir(), &save);
        skiff(to, &["image", "import", tar_s]);
        let _ = std::fs::remove_file(&tar);
    }
}

impl Agent {
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// kill -9: the node vanishes without a word (its containers keep running, as on a
    /// partitioned node).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
        reset_in(self.netns.as_deref(), &self.data_dir);
    }
}

/// `skiff`, run in network namespace `netns` when given.
fn in_netns(netns: Option<&str>) -> Command {
    match netns {
        Some(ns) => {
            let mut cmd = Command::new("nsenter");
            cmd.arg(format!("--net=/run/netns/{ns}"))
                .arg("--")
                .arg(env!("CARGO_BIN_EXE_skiff"));
            cmd
        }
        None => Command::new(env!("CARGO_BIN_EXE_skiff")),
    }
}

/// `skiff reset` on a node's data dir: its containers, sandboxes, bridge and nft table go.
fn reset(data_dir: &Path) {
    reset_in(None, data_dir)
}

fn reset_in(netns: Option<&str>, data_dir: &Path) {
    let out = in_netns(netns)
        .arg("--data-dir")
        .arg(data_dir)
        .arg("reset")
        .output();
    if let Some(out) = out.ok().filter(|o| !o.status.success()) {
        eprintln!("skiff reset: {}", String::from_utf8_lossy(&out.stderr));
    }
}

/// Copies `bin` to `root/<dest>` (debug info stripped) with the shared libraries `ldd` says it
/// loads, at their host paths, so it runs in an image built `FROM scratch`.
pub fn copy_with_libraries(bin: &Path, root: &Path, dest: &str) {
    let target = root.join(dest.trim_start_matches('/'));
    std::fs::create_dir_all(target.parent().expect("parent")).expect("bin dir");
    let stripped = Command::new("strip")
        .args(["--strip-debug", "-o"])
        .arg(&target)
        .arg(bin)
        .status()
        .is_ok_and(|s| s.success());
    if !stripped {
        std::fs::copy(bin, &target).expect("copy binary");
    }
    let ldd = Command::new("ldd").arg(bin).output().expect("ldd");
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)" or "/lib64/ld-linux….so.2 (0x…)"
        let path = line
            .split("=>")
            .last()
            .and_then(|p| p.split_whitespace().next())
            .filter(|p| p.starts_with('/'));
        if let Some(p) = path {
            let dest = root.join(p.trim_start_matches('/'));
            std::fs::create_dir_all(dest.parent().expect("parent")).expect("lib dir");
            std::fs::copy(p, &dest).unwrap_or_else(|e| panic!("copy {p}: {e}"));
        }
    }
}

/// `skiff image build -t tag ctx` into `data_dir`; panics with the build's stderr on failure.
pub fn build_image(data_dir: &Path, tag: &str, ctx: &Path) {
    let out = Command::new(env!("CARGO_BIN_EXE_skiff"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(["image", "build", "-t", tag])
        .arg(ctx)
        .output()
        .expect("skiff image build");
    assert!(
        out.status.success(),
        "build {tag}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Builds web:v1 and web:v2 from examples/web into the cluster's data dir.
pub fn build_web_images(c: &Cluster) {
    build_web_images_into(&c.data_dir(), &c.dir.path().join("web"), &["v1", "v2"]);
}

/// Builds `web:<version>` from examples/web into `data_dir`, with `ctx` as build context.
pub fn build_web_images_into(data_dir: &Path, ctx: &Path, versions: &[&str]) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/web");
    std::fs::create_dir_all(ctx.join("app")).expect("ctx");
    std::fs::copy(src.join("Containerfile"), ctx.join("Containerfile")).expect("Containerfile");
    std::fs::copy(src.join("app/start.sh"), ctx.join("app/start.sh")).expect("start.sh");
    std::fs::copy("/bin/busybox", ctx.join("busybox")).expect("busybox");
    for version in versions {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_skiff"))
            .arg("--data-dir")
            .arg(data_dir)
            .args(["image", "build", "-t", &format!("web:{version}")])
            .arg("--build-arg")
            .arg(format!("VERSION={version}"))
            .arg(ctx)
            .output()
            .expect("skiff image build");
        assert!(
            out.status.success(),
            "build: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// One request on a new connection; the whole response.
pub fn http_get(ip: &str, port: u16) -> Option<String> {
    try_http_get(ip, port).ok()
}

/// Like [`http_get`], saying which step failed and how (for the load's failure reports).
pub fn try_http_get(ip: &str, port: u16) -> Result<String, String> {
    let addr = format!("{ip}:{port}")
        .parse()
        .map_err(|e| format!("address: {e}"))?;
    let started = Instant::now();
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .map_err(|e| format!("connect after {} ms: {e}", started.elapsed().as_millis()))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| format!("socket: {e}"))?;
    stream
        .write_all(b"GET / HTTP/1.0\r\nHost: web\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    let mut body = String::new();
    stream
        .read_to_string(&mut body)
        .map_err(|e| format!("read after {} ms: {e}", started.elapsed().as_millis()))?;
    Ok(body)
}

/// The page of one successful request ("web v1 on <pod>"), if any.
pub fn page(port: u16) -> Option<String> {
    http_get("127.0.0.1", port)
        .filter(|b| b.contains("200 OK"))
        .and_then(|b| b.lines().last().map(str::to_string))
}

/// Continuous load through the NodePort from a few threads, a new connection per request.
pub struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    workers: Vec<std::thread::JoinHandle<LoadResult>>,
}

#[derive(Default, Debug)]
pub struct LoadResult {
    pub ok: u64,
    pub failed: Vec<String>,
    pub by_version: std::collections::BTreeMap<String, u64>,
}

impl Load {
    pub fn start(port: u16, threads: usize) -> Load {
        Self::start_paced(port, threads, Duration::ZERO)
    }

    /// Like [`Load::start`], each thread pausing `pause` between requests. Unpaced, a long load
    /// opens thousands of connections a second from 127.0.0.1 and soon reuses source ports whose
    /// previous connection may still be in TIME_WAIT in the pod (the SNAT keeps the port).
    pub fn start_paced(port: u16, threads: usize, pause: Duration) -> Load {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let t0 = Instant::now();
        let workers = (0..threads)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut r = LoadResult::default();
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        match try_http_get("127.0.0.1", port) {
                            Ok(b) if b.contains("200 OK") => {
                                r.ok += 1;
                                let version = b
                                    .lines()
                                    .last()
                                    .and_then(|l| l.split_whitespace().nth(1))
                                    .unwrap_or("?")
                                    .to_string();
                                *r.by_version.entry(version).or_default() += 1;
                            }
                            other => r
                                .failed
                                .push(format!("at {} ms: {other:?}", t0.elapsed().as_millis())),
                        }
                        if !pause.is_zero() {
                            std::thread::sleep(pause);
                        }
                    }
                    r
                })
            })
            .collect();
        Load { stop, workers }
    }

    pub fn finish(self) -> LoadResult {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut total = LoadResult::default();
        for w in self.workers {
            let r = w.join().expect("load thread");
            total.ok += r.ok;
            total.failed.extend(r.failed);
            for (v, n) in r.by_version {
                *total.by_version.entry(v).or_default() += n;
            }
        }
        total
    }
}

/// Another "machine" on a link with this one: a network namespace joined to the host by a veth
/// pair on a /30 of its own. Deleted (with the veth, and any bridge or nft table inside) on drop.
pub struct OtherHost {
    pub netns: String,
    /// This machine's address on the link.
    pub host_ip: String,
    /// The other machine's address on the link.
    pub peer_ip: String,
}

impl OtherHost {
    pub fn create() -> Self {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = std::process::id() * 4 + n;
        let netns = format!("skiff-t{id:x}");
        let veth = format!("vsk{:x}", id % 0x00ff_ffff);
        let (b, c) = ((id >> 6) % 256, (id % 64) * 4);
        let host_ip = format!("10.213.{b}.{}", c + 1);
        let peer_ip = format!("10.213.{b}.{}", c + 2);
        let ip = |args: &[&str]| {
            let out = Command::new("ip").args(args).output().expect("run ip");
            assert!(
                out.status.success(),
                "ip {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        ip(&["netns", "add", &netns]);
        let host = OtherHost {
            netns: netns.clone(),
            host_ip: host_ip.clone(),
            peer_ip: peer_ip.clone(),
        };
        let peer = format!("{veth}p");
        ip(&["link", "add", &veth, "type", "veth", "peer", "name", &peer]);
        ip(&["link", "set", &peer, "netns", &netns]);
        ip(&["addr", "add", &format!("{host_ip}/30"), "dev", &veth]);
        ip(&["link", "set", &veth, "up"]);
        let ns = |args: &[&str]| {
            let mut all = vec!["-n", netns.as_str()];
            all.extend_from_slice(args);
            ip(&all);
        };
        ns(&["addr", "add", &format!("{peer_ip}/30"), "dev", &peer]);
        ns(&["link", "set", &peer, "up"]);
        ns(&["link", "set", "lo", "up"]);
        host
    }
}

impl Drop for OtherHost {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .output();
    }
}

/// A read-only OCI registry on 127.0.0.1 serving one image from `skiff image save` output:
/// `GET /v2/`, the manifest by tag or digest, blobs by digest. A plain thread per connection,
/// one request per connection (`Connection: close`); it stops with the test process.
pub struct LoopbackRegistry {
    pub host: String,
}

impl LoopbackRegistry {
    /// Serves `image` (e.g. `web:v1`) of `data_dir` as `<host>/<repo>:<tag>`.
    pub fn serve(data_dir: &Path, image: &str, repo: &str, tag: &str) -> Self {
        Self::serve_with_login(data_dir, image, repo, tag, None)
    }

    /// Like [`LoopbackRegistry::serve`], but every request needs HTTP basic auth with `login`
    /// (user, password); others get 401 with a Basic challenge, as a private registry does.
    pub fn serve_with_login(
        data_dir: &Path,
        image: &str,
        repo: &str,
        tag: &str,
        login: Option<(&str, &str)>,
    ) -> Self {
        use base64::Engine;
        let expected = login.map(|(u, p)| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )
        });
        let work = tempfile::tempdir().expect("tempdir").keep();
        let tar = work.join("image.tar");
        let out = Command::new(env!("CARGO_BIN_EXE_skiff"))
            .arg("--data-dir")
            .arg(data_dir)
            .args(["image", "save", "-o"])
            .arg(&tar)
            .arg(image)
            .output()
            .expect("skiff image save");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let layout = work.join("layout");
        std::fs::create_dir_all(&layout).expect("layout dir");
        let ok = Command::new("tar")
            .arg("-C")
            .arg(&layout)
            .arg("-xf")
            .arg(&tar)
            .status()
            .expect("tar");
        assert!(ok.success());
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(layout.join("index.json")).expect("index"))
                .expect("index json");
        let manifest_digest = index["manifests"][0]["digest"]
            .as_str()
            .expect("manifest digest")
            .to_string();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let host = listener.local_addr().expect("addr").to_string();
        let (repo, tag) = (repo.to_string(), tag.to_string());
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (layout, repo, tag, md, expected) = (
                    layout.clone(),
                    repo.clone(),
                    tag.clone(),
                    manifest_digest.clone(),
                    expected.clone(),
                );
                std::thread::spawn(move || {
                    registry_reply(conn, &layout, &repo, &tag, &md, expected.as_deref())
                });
            }
        });
        LoopbackRegistry { host }
    }
}

fn registry_reply(
    mut conn: TcpStream,
    layout: &Path,
    repo: &str,
    tag: &str,
    manifest: &str,
    expected_auth: Option<&str>,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    if let Some(want) = expected_auth {
        // The header name and the scheme are case-insensitive; the credentials are not.
        let authorized = head.lines().any(|l| {
            l.split_once(':').is_some_and(|(name, value)| {
                name.trim().eq_ignore_ascii_case("authorization")
                    && value.trim().split_once(' ').is_some_and(|(scheme, token)| {
                        scheme.eq_ignore_ascii_case("basic")
                            && Some(token.trim()) == want.split_once(' ').map(|w| w.1)
                    })
            })
        });
        if !authorized {
            let body =
                r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#;
            let _ = conn.write_all(
                format!(
                    "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"skiff-test\"\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            );
            return;
        }
    }
    let mut parts = head.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let blob = |d: &str| {
        std::fs::read(
            layout
                .join("blobs/sha256")
                .join(d.trim_start_matches("sha256:")),
        )
        .ok()
    };
    let (status, ctype, body) = if path == "/v2/" {
        ("200 OK", "application/json", Some(b"{}".to_vec()))
    } else if let Some(r) = path.strip_prefix(&format!("/v2/{repo}/manifests/")) {
        let body = if r == tag || r == manifest {
            blob(manifest)
        } else {
            None
        };
        ("200 OK", "application/vnd.oci.image.manifest.v1+json", body)
    } else if let Some(d) = path.strip_prefix(&format!("/v2/{repo}/blobs/")) {
        ("200 OK", "application/octet-stream", blob(d))
    } else {
        ("404 Not Found", "application/json", None)
    };
    let (status, body) = match body {
        Some(b) => (status, b),
        None => (
            "404 Not Found",
            br#"{"errors":[{"code":"NAME_UNKNOWN","message":"not found"}]}"#.to_vec(),
        ),
    };
    let mut reply = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if status.starts_with("200") && path.contains("/manifests/") {
        reply.push_str(&format!("Docker-Content-Digest: {manifest}\r\n"));
    }
    reply.push_str("\r\n");
    let _ = conn.write_all(reply.as_bytes());
    if method != "HEAD" {
        let _ = conn.write_all(&body);
    }
}
