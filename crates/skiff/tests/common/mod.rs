//! Shared harness for the CLI tests: each `Skiff` owns a private data dir, runs the real binary
//! against it, and on drop force-removes every container it made, then fails the test if any
//! mount or cgroup of that data dir is left on the host.
#![allow(dead_code)]

pub mod cluster;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const BUSYBOX_APPLETS: &[&str] = &[
    "sh", "echo", "cat", "sleep", "true", "false", "id", "pwd", "env", "ls", "head", "dd", "tr",
    "hostname", "printf", "ps", "mkdir", "rm", "touch", "kill", "wc", "grep", "test", "seq",
];

pub struct Skiff {
    pub dir: tempfile::TempDir,
}

impl Skiff {
    /// An empty data dir.
    pub fn new() -> Self {
        assert!(
            nix::unistd::geteuid().is_root(),
            "these tests need root (namespaces, overlayfs, cgroups); CI runs them as root"
        );
        let dir = tempfile::Builder::new()
            .prefix("skiff-test-")
            .tempdir()
            .expect("tempdir");
        Skiff { dir }
    }

    /// A data dir with a busybox rootfs imported as `bb:1`.
    pub fn with_busybox() -> Self {
        let s = Skiff::new();
        s.import_busybox("bb:1");
        s
    }

    pub fn data_dir(&self) -> PathBuf {
        std::fs::canonicalize(self.dir.path())
            .expect("canonical tempdir")
            .join("data")
    }

    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.data_dir().join("containers").join(id)
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_skiff"));
        cmd.arg("--data-dir").arg(self.data_dir()).args(args);
        cmd.env_remove("SKIFF_DATA_DIR");
        cmd
    }

    pub fn cmd(&self, args: &[&str]) -> Output {
        self.command(args)
            .stdin(Stdio::null())
            .output()
            .expect("spawn skiff")
    }

    /// Runs and returns (exit code, stdout, stderr).
    pub fn run(&self, args: &[&str]) -> (i32, String, String) {
        let o = self.cmd(args);
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }

    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.run(args);
        assert_eq!(
            code, 0,
            "skiff {args:?} failed\nstdout: {out}\nstderr: {err}"
        );
        out
    }

    /// Runs and asserts failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let (code, out, err) = self.run(args);
        assert_ne!(code, 0, "skiff {args:?} should have failed\nstdout: {out}");
        err
    }

    /// Polls `ps -a` until the named container's status line matches `pred`.
    pub fn wait_status(
        &self,
        name: &str,
        pred: impl Fn(&str) -> bool,
        timeout: Duration,
    ) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let ps = self.ok(&["ps", "-a"]);
            if let Some(line) = ps.lines().find(|l| l.trim_end().ends_with(name)) {
                if pred(line) {
                    return line.to_string();
                }
            }
            assert!(
                Instant::now() < deadline,
                "timeout waiting for {name}: {ps}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A directory with bin/busybox, applet symlinks and passwd/group files.
    pub fn busybox_rootfs(&self, name: &str) -> PathBuf {
        let root = self.dir.path().join(name);
        std::fs::create_dir_all(root.join("bin")).expect("mkdir bin");
        std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("copy /bin/busybox");
        for applet in BUSYBOX_APPLETS {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).expect("symlink");
        }
        for d in ["proc", "sys", "dev", "tmp", "etc"] {
            std::fs::create_dir_all(root.join(d)).expect("mkdir");
        }
        std::fs::write(
            root.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nweb:x:1000:1000::/home/web:/bin/sh\n",
        )
        .expect("passwd");
        std::fs::write(root.join("etc/group"), "root:x:0:\nweb:x:1000:\n").expect("group");
        root
    }

    /// Imports a busybox rootfs tarball as `tag`.
    pub fn import_busybox(&self, tag: &str) {
        let root = self.busybox_rootfs(&format!("rootfs-{}", tag.replace([':', '/'], "_")));
        let tarball = root.with_extension("tar");
        tar_dir(&root, &tarball);
        self.ok(&[
            "image",
            "import",
            tarball.to_str().expect("utf8 path"),
            "-t",
            tag,
        ]);
    }
}

impl Drop for Skiff {
    fn drop(&mut self) {
        let (_, ids, _) = self.run(&["ps", "-aq"]);
        for id in ids.split_whitespace() {
            let _ = self.cmd(&["rm", "-f", id]);
        }
        let root = self.data_dir();
        let root = root
            .parent()
            .unwrap_or(&root)
            .to_string_lossy()
            .into_owned();
        let mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(&root))
            .map(String::from)
            .collect();
        let cgroups = skiff_runtime::leftover_cgroups(&self.data_dir());
        if !std::thread::panicking() {
            assert!(mounts.is_empty(), "mounts left behind: {mounts:#?}");
            assert!(cgroups.is_empty(), "cgroups left behind: {cgroups:#?}");
        }
    }
}

pub fn tar_dir(dir: &Path, out: &Path) {
    let file = std::fs::File::create(out).expect("create tar");
    let mut builder = tar::Builder::new(file);
    builder.follow_symlinks(false);
    builder.append_dir_all(".", dir).expect("tar dir");
    builder.finish().expect("finish tar");
}
