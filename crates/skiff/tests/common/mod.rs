//! Shared harness for the CLI tests: each `Skiff` owns a private data dir, runs the real binary
//! against it, and on drop force-removes every container it made so no mount or cgroup is left.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const BUSYBOX_APPLETS: &[&str] = &[
    "sh", "echo", "cat", "sleep", "true", "false", "id", "pwd", "env", "ls", "head", "dd", "tr",
    "hostname", "ps", "mkdir", "rm", "touch", "yes", "kill", "wc", "grep", "test", "[", "seq",
];

pub struct Skiff {
    pub dir: tempfile::TempDir,
    pub data: PathBuf,
}

impl Skiff {
    pub fn new() -> Self {
        assert!(
            nix::unistd::geteuid().is_root(),
            "these tests need root (namespaces, overlayfs, cgroups); CI runs them as root"
        );
        let dir = tempfile::Builder::new()
            .prefix("skiff-test-")
            .tempdir()
            .expect("tempdir");
        let data = dir.path().join("data");
        Skiff { dir, data }
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_skiff"));
        cmd.arg("--data-dir").arg(&self.data).args(args);
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("spawn skiff")
    }

    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "skiff {args:?} failed with {:?}\nstdout: {}\nstderr: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs and asserts failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "skiff {args:?} should have failed\nstdout: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// A directory with bin/busybox and applet symlinks: a minimal rootfs or build context.
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
        let out = self.run(&["ps", "-aq"]);
        for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = self.run(&["rm", "-f", id]);
        }
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let leaked: Vec<&str> = mounts
            .lines()
            .filter(|l| l.contains(self.dir.path().to_str().unwrap_or("\0")))
            .collect();
        if !std::thread::panicking() {
            assert!(leaked.is_empty(), "mounts left behind: {leaked:#?}");
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
