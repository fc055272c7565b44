//! A full disk (issue 10, item 13), for real: the data dir lives on a small tmpfs this test
//! mounts, fills and frees. `skiff server` must start on the full disk, serve reads and deletes,
//! refuse other writes with a clear Status, and accept them again once space is freed, without
//! a restart. Needs root (mount); skipped otherwise.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Harness {
    tmp: tempfile::TempDir,
    data: PathBuf,
    port: u16,
    server: Option<Child>,
    mounted: bool,
}

impl Harness {
    fn log(&self) -> String {
        std::fs::read_to_string(self.tmp.path().join("server.log")).unwrap_or_default()
    }

    fn kubectl(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new("kubectl")
            .args(args)
            .env("KUBECONFIG", self.data.join("kubeconfig.yaml"))
            .env("HOME", self.tmp.path().join("home"))
            .env("CLOUDSDK_CONFIG", self.tmp.path().join("home/gcloud"))
            .stdin(Stdio::null())
            .output()
            .expect("run kubectl");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.kubectl(args);
        assert!(ok, "kubectl {args:?} failed: {out}{err}\n{}", self.log());
        out
    }

    fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.tmp.path().join("server.log"))
            .expect("log");
        let child = Command::new(env!("CARGO_BIN_EXE_skiff"))
            .arg("--data-dir")
            .arg(&self.data)
            .args(["server", "--listen", &format!("127.0.0.1:{}", self.port)])
            .args(["--no-agent", "--offline"])
            .env("SKIFF_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn skiff server");
        self.server = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.data.join("kubeconfig.yaml").exists() {
                let (ok, out, _) = self.kubectl(&["get", "--raw", "/readyz"]);
                if ok && out.contains("ok") {
                    return;
                }
            }
            if let Some(Ok(Some(status))) = self.server.as_mut().map(Child::try_wait) {
                panic!("skiff server exited ({status}):\n{}", self.log());
            }
            assert!(Instant::now() < deadline, "not ready:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.server.take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
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

impl Drop for Harness {
    fn drop(&mut self) {
        self.stop();
        if self.mounted {
            let _ = nix::mount::umount2(&self.data, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Writes until the filesystem is full; returns the filler's path.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).expect("filler");
    let big = vec![0xa5u8; 256 * 1024];
    while f.write_all(&big).is_ok() {}
    let small = [0xa5u8; 512];
    while f.write_all(&small).is_ok() {}
    let _ = f.sync_all();
    path
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).expect("stat").permissions().mode() & 0o777
}

#[test]
#[ignore = "needs root: mounts a tmpfs"]
fn full_disk_serves_reads_and_deletes_and_recovers_without_restart() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "mounting a tmpfs needs root"
    );
    let tmp = tempfile::Builder::new()
        .prefix("skiff-disk-full-")
        .tempdir()
        .expect("tempdir");
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).expect("data");
    std::fs::create_dir_all(tmp.path().join("home")).expect("home");
    let mut h = Harness {
        data: data.clone(),
        port: free_port(),
        server: None,
        mounted: false,
        tmp,
    };
    nix::mount::mount(
        Some("tmpfs"),
        &data,
        Some("tmpfs"),
        nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
        Some("size=32m,mode=0755"),
    )
    .expect("mount tmpfs");
    h.mounted = true;

    h.start();
    // The data dir and the database are private.
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("server")), 0o700);
    assert_eq!(mode(&data.join("server/state.db")), 0o600);
    for name in ["keep", "doomed", "other"] {
        h.ok(&["create", "configmap", name, "--from-literal=k=v"]);
    }
    h.stop();

    // Fill the disk to the last byte, then start again.
    let filler = fill(&data);
    h.start();
    assert_eq!(
        h.ok(&["get", "configmap", "keep", "-o", "jsonpath={.data.k}"]),
        "v"
    );
    let listed = h.ok(&["get", "configmaps", "-o", "name"]);
    assert!(listed.contains("configmap/doomed"), "{listed}");

    // Writes other than deletes fail with a clear, actionable Status.
    let (ok, out, err) = h.kubectl(&["create", "configmap", "new", "--from-literal=k=v"]);
    assert!(!ok, "a create succeeded on a full disk: {out}");
    assert!(err.contains("database or disk is full"), "{err}");
    assert!(err.contains("only deletes are accepted"), "{err}");
    let (ok, _, err) = h.kubectl(&["label", "configmap", "keep", "a=b"]);
    assert!(!ok && err.contains("disk is full"), "{err}");

    // Deletes go through, so a user can free space.
    h.ok(&["delete", "configmap", "doomed"]);
    let (ok, _, err) = h.kubectl(&["get", "configmap", "doomed"]);
    assert!(!ok && err.contains("not found"), "{err}");

    // Space comes back: writes work again without a restart.
    std::fs::remove_file(&filler).expect("free space");
    h.ok(&["create", "configmap", "new", "--from-literal=k=v"]);
    h.ok(&["label", "configmap", "keep", "a=b"]);
    assert_eq!(
        h.ok(&["get", "configmap", "new", "-o", "jsonpath={.data.k}"]),
        "v"
    );
    h.stop();
}
