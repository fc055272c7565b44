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
    child: Option<Child>,
}

pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

impl Cluster {
    pub fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("skiff-cluster-")
            .tempdir()
            .expect("tempdir");
        std::fs::create_dir_all(dir.path().join("home")).expect("home");
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut cluster = Cluster {
            dir,
            port: free_port(),
            cluster_cidr: format!("100.64.{}.0/24", 10 + (std::process::id() + n) % 30),
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
            .args(["server", "--listen", &format!("127.0.0.1:{}", self.port)])
            .args(["--cluster-cidr", &self.cluster_cidr])
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
            let out = Command::new(env!("CARGO_BIN_EXE_skiff"))
                .arg("--data-dir")
                .arg(self.data_dir())
                .arg("reset")
                .output();
            if let Some(out) = out.ok().filter(|o| !o.status.success()) {
                eprintln!("skiff reset: {}", String::from_utf8_lossy(&out.stderr));
            }
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
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(5);
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

/// Builds web:v1 and web:v2 from examples/web into the cluster's data dir.
pub fn build_web_images(c: &Cluster) {
    let ctx = c.dir.path().join("web");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/web");
    std::fs::create_dir_all(ctx.join("app")).expect("ctx");
    std::fs::copy(src.join("Containerfile"), ctx.join("Containerfile")).expect("Containerfile");
    std::fs::copy(src.join("app/start.sh"), ctx.join("app/start.sh")).expect("start.sh");
    std::fs::copy("/bin/busybox", ctx.join("busybox")).expect("busybox");
    for version in ["v1", "v2"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_skiff"))
            .arg("--data-dir")
            .arg(c.data_dir())
            .args(["image", "build", "-t", &format!("web:{version}")])
            .arg("--build-arg")
            .arg(format!("VERSION={version}"))
            .arg(&ctx)
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
    let mut stream = TcpStream::connect_timeout(
        &format!("{ip}:{port}").parse().ok()?,
        Duration::from_secs(2),
    )
    .ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream
        .write_all(b"GET / HTTP/1.0\r\nHost: web\r\n\r\n")
        .ok()?;
    let mut body = String::new();
    stream.read_to_string(&mut body).ok()?;
    Some(body)
}
