//! Issue 10 regression tests of the runtime, each running the real attack or fault (needs
//! root): exec with the container's sandbox, the container dying with a killed shim, corrupt
//! state files, a fork bomb in a PID-limited pod cgroup, log rotation. Like lib_runtime, the
//! test binary doubles as the shim.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use skiff_runtime::{ContainerSpec, ExecOptions, PodCgroup, Runtime, RuntimeConfig, Status};

const APPLETS: &[&str] = &[
    "sh", "echo", "cat", "sleep", "true", "id", "mkdir", "mount", "unshare", "test", "seq",
];

fn main() {
    let tests: &[(&str, fn())] = &[
        (
            "exec_gets_the_containers_sandbox",
            exec_gets_the_containers_sandbox,
        ),
        (
            "shim_kill_kills_the_container",
            shim_kill_kills_the_container,
        ),
        (
            "corrupt_spec_then_pod_removal",
            corrupt_spec_then_pod_removal,
        ),
        ("corrupt_state_then_purge_all", corrupt_state_then_purge_all),
        ("fork_bomb_is_contained", fork_bomb_is_contained),
        ("logs_rotate_and_stay_bounded", logs_rotate_and_stay_bounded),
    ];
    support::main(tests);
}

struct Env {
    dir: tempfile::TempDir,
    rt: Runtime,
    lower: PathBuf,
}

impl Env {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let lower = dir.path().join("layer");
        support::busybox_layer(&lower, APPLETS);
        std::fs::create_dir_all(lower.join("m")).unwrap();
        let rt = Runtime::new(RuntimeConfig {
            data_dir: dir.path().join("data"),
            shim_exe: std::env::current_exe().unwrap(),
        })
        .unwrap();
        Env { dir, rt, lower }
    }

    fn spec(&self, args: &[&str]) -> ContainerSpec {
        ContainerSpec {
            image: "bb:1".into(),
            image_id: "sha256:test".into(),
            lowers: vec![self.lower.clone()],
            args: args.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn data(&self) -> PathBuf {
        std::fs::canonicalize(self.dir.path().join("data")).unwrap()
    }

    fn cdir(&self, id: &str) -> PathBuf {
        self.data().join("containers").join(id)
    }

    /// A file the container wrote below /tmp (read from its overlay upper dir).
    fn file(&self, id: &str, name: &str) -> String {
        std::fs::read_to_string(self.cdir(id).join("upper/tmp").join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    fn exec(&self, id: &str, script: &str) -> i32 {
        self.rt
            .exec(
                id,
                &ExecOptions {
                    args: vec!["sh".into(), "-c".into(), script.into()],
                    env: vec![],
                    cwd: None,
                    stdin: false,
                    uid: None,
                    gid: None,
                },
            )
            .unwrap()
    }

    fn cgroup_parent_rel(&self) -> String {
        skiff_runtime::spec::cgroup_parent(&self.data())
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Ok(list) = self.rt.list() {
            for c in list {
                let _ = self.rt.remove(&c.id, true);
            }
        }
        for pod in self.rt.pod_cgroups() {
            let _ = self.rt.remove_pod_cgroup(&pod);
        }
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let root = self.dir.path().to_string_lossy().to_string();
        let left: Vec<&str> = mounts.lines().filter(|l| l.contains(&root)).collect();
        let cgroups = skiff_runtime::leftover_cgroups(&self.data());
        if !std::thread::panicking() {
            assert!(left.is_empty(), "leftover mounts: {left:?}");
            assert!(cgroups.is_empty(), "leftover cgroups: {cgroups:?}");
        } else {
            let _ = self.rt.purge_all();
        }
    }
}

fn status_field(status: &str, key: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .unwrap_or_else(|| panic!("{key} missing in {status}"))
        .trim()
        .to_string()
}

fn alive(pid: i32) -> bool {
    // A zombie (waiting for a reaper that is not us) is dead for our purpose.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s[s.rfind(')').unwrap_or(0)..].starts_with(") Z"))
        .unwrap_or(false)
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Issue 10 item 9: `exec` used to run without the seccomp filter and could create user
/// namespaces and mount. The exec'd process must match PID 1 exactly.
fn exec_gets_the_containers_sandbox() {
    let e = Env::new();
    // PID 1 records what it may do first: it cannot unshare a user namespace or mount.
    let info = e
        .rt
        .create_and_start(e.spec(&[
            "sh",
            "-c",
            "unshare -U true; echo $? > /tmp/init-unshare; mount -t tmpfs x /m; echo $? > /tmp/init-mount; sleep 1000",
        ]))
        .unwrap();
    wait_until("PID 1's checks", Duration::from_secs(5), || {
        e.cdir(&info.id).join("upper/tmp/init-mount").exists()
    });
    assert_ne!(e.file(&info.id, "init-unshare").trim(), "0");
    assert_ne!(e.file(&info.id, "init-mount").trim(), "0");
    let code = e.exec(
        &info.id,
        "cat /proc/self/status > /tmp/exec.status; cat /proc/1/status > /tmp/init.status; \
         cat /proc/self/cgroup > /tmp/exec.cgroup; cat /proc/1/cgroup > /tmp/init.cgroup; \
         unshare -U true; echo $? > /tmp/exec-unshare; \
         mount -t tmpfs x /m; echo $? > /tmp/exec-mount",
    );
    assert_eq!(code, 0);
    let exec = e.file(&info.id, "exec.status");
    let init = e.file(&info.id, "init.status");
    assert_eq!(status_field(&exec, "Seccomp"), "2", "{exec}");
    assert_eq!(status_field(&exec, "NoNewPrivs"), "1", "{exec}");
    for key in [
        "CapInh",
        "CapPrm",
        "CapEff",
        "CapBnd",
        "CapAmb",
        "Seccomp",
        "NoNewPrivs",
        "Uid",
        "Gid",
        "Groups",
    ] {
        assert_eq!(status_field(&exec, key), status_field(&init, key), "{key}");
    }
    assert_ne!(
        e.file(&info.id, "exec-unshare").trim(),
        "0",
        "exec'd process created a user namespace"
    );
    assert_ne!(
        e.file(&info.id, "exec-mount").trim(),
        "0",
        "exec'd process mounted"
    );
    assert_eq!(
        e.file(&info.id, "exec.cgroup"),
        e.file(&info.id, "init.cgroup")
    );
    // It really is the container's cgroup (not the caller's).
    assert!(e.file(&info.id, "exec.cgroup").contains(&info.id));

    // A non-root container: exec runs as its user and groups unless told otherwise.
    let mut s = e.spec(&["sleep", "1000"]);
    s.uid = 1000;
    s.gid = 1001;
    s.additional_gids = vec![1002];
    let user = e.rt.create_and_start(s).unwrap();
    assert_eq!(
        e.exec(
            &user.id,
            "test \"$(id -u):$(id -g):$(id -G)\" = '1000:1001:1001 1002'"
        ),
        0
    );
    e.rt.remove(&info.id, true).unwrap();
    e.rt.remove(&user.id, true).unwrap();
}

/// Issue 10 item 12: `kill -9` of a shim left its container running next to the next one.
fn shim_kill_kills_the_container() {
    let e = Env::new();
    let mut s = e.spec(&["sh", "-c", "sleep 1000 & sleep 1000 & sleep 1000"]);
    s.pod_cgroup = Some(PodCgroup {
        name: "podshim".into(),
        ..Default::default()
    });
    let info = e.rt.create_and_start(s).unwrap();
    let cg = format!("{}/podshim/{}", e.cgroup_parent_rel(), info.id);
    let procs_file = Path::new("/sys/fs/cgroup/pids")
        .join(cg.trim_start_matches('/'))
        .join("cgroup.procs");
    let procs_file = if procs_file.exists() {
        procs_file
    } else {
        Path::new("/sys/fs/cgroup")
            .join(cg.trim_start_matches('/'))
            .join("cgroup.procs")
    };
    wait_until(
        "3 processes in the container",
        Duration::from_secs(5),
        || std::fs::read_to_string(&procs_file).is_ok_and(|s| s.lines().count() >= 3),
    );
    let pids: Vec<i32> = std::fs::read_to_string(&procs_file)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(info.shim_pid.unwrap()),
        nix::sys::signal::SIGKILL,
    )
    .unwrap();
    wait_until(
        "every process of the container to die",
        Duration::from_secs(10),
        || pids.iter().all(|p| !alive(*p)),
    );
    let exit = e.rt.wait(&info.id).unwrap();
    assert_eq!(exit.code, 137);
    assert_eq!(e.rt.get(&info.id).unwrap().status, Status::Exited);
    assert!(!procs_file.exists(), "the container's cgroup is left");
    e.rt.remove(&info.id, false).unwrap();
    e.rt.remove_pod_cgroup("podshim").unwrap();
}

fn corrupt(path: &Path) {
    std::fs::write(path, b"{\"id\": garbage").unwrap();
}

/// Issue 10 item 12: a corrupted spec.json hid a (privileged) container from removal, so it
/// survived the pod's deletion. The pod cgroup removal kills it whatever the files say.
fn corrupt_spec_then_pod_removal() {
    let e = Env::new();
    let mut s = e.spec(&["sleep", "1000"]);
    s.privileged = true;
    s.pod_cgroup = Some(PodCgroup {
        name: "podcorrupt".into(),
        ..Default::default()
    });
    let info = e.rt.create_and_start(s).unwrap();
    let (pid, shim) = (info.pid.unwrap(), info.shim_pid.unwrap());
    corrupt(&e.cdir(&info.id).join("spec.json"));
    assert!(
        e.rt.list().unwrap().is_empty(),
        "a corrupt container is listed"
    );
    e.rt.remove_pod_cgroup("podcorrupt").unwrap();
    wait_until(
        "the container and its shim to die",
        Duration::from_secs(10),
        || !alive(pid) && !alive(shim),
    );
    assert!(!e.cdir(&info.id).exists(), "container dir left");
    assert!(e.rt.pod_cgroups().is_empty());
}

/// Issue 10 item 12: `skiff reset` (purge_all) kills every process in the data dir's cgroups
/// whatever spec.json and state.json say.
fn corrupt_state_then_purge_all() {
    let e = Env::new();
    let mut s = e.spec(&["sh", "-c", "sleep 1000 & sleep 1000"]);
    s.privileged = true;
    let a = e.rt.create_and_start(s).unwrap();
    let b = e.rt.create_and_start(e.spec(&["sleep", "1000"])).unwrap();
    corrupt(&e.cdir(&a.id).join("spec.json"));
    corrupt(&e.cdir(&a.id).join("state.json"));
    corrupt(&e.cdir(&b.id).join("state.json"));
    let pids = [
        a.pid.unwrap(),
        a.shim_pid.unwrap(),
        b.pid.unwrap(),
        b.shim_pid.unwrap(),
    ];
    e.rt.purge_all().unwrap();
    wait_until("every process to die", Duration::from_secs(10), || {
        pids.iter().all(|p| !alive(*p))
    });
    assert!(std::fs::read_dir(e.data().join("containers"))
        .unwrap()
        .flatten()
        .all(|d| d.file_name().to_string_lossy().starts_with('.')));
}

fn pids_file(rel: &str, file: &str) -> PathBuf {
    let rel = rel.trim_start_matches('/');
    let v1 = Path::new("/sys/fs/cgroup/pids").join(rel);
    if Path::new("/sys/fs/cgroup/pids").exists() {
        v1.join(file)
    } else {
        Path::new("/sys/fs/cgroup").join(rel).join(file)
    }
}

/// Issue 10 item 8: a fork bomb took the host (pids.max=max). In a pod with a PID limit it
/// stays below the limit, the host keeps forking, and the pod is removed completely.
fn fork_bomb_is_contained() {
    const LIMIT: i64 = 64;
    let e = Env::new();
    let pod = PodCgroup {
        name: "podbomb".into(),
        pids_max: Some(LIMIT),
        node_pids_max: Some(2000),
    };
    let mut s = e.spec(&["sleep", "1000"]);
    s.pod_cgroup = Some(pod.clone());
    let first = e.rt.create_and_start(s).unwrap();
    let rel = format!("{}/podbomb", e.cgroup_parent_rel());
    // Never start the bomb unless the limit is really in place.
    assert_eq!(
        std::fs::read_to_string(pids_file(&rel, "pids.max"))
            .unwrap()
            .trim(),
        "64"
    );
    assert_eq!(
        std::fs::read_to_string(pids_file(&e.cgroup_parent_rel(), "pids.max"))
            .unwrap()
            .trim(),
        "2000"
    );
    let mut s = e.spec(&["sh", "-c", "f() { f | f & }; f; sleep 1000"]);
    s.pod_cgroup = Some(pod);
    let bomb = e.rt.create_and_start(s).unwrap();
    let current = pids_file(&rel, "pids.current");
    let mut max_seen = 0i64;
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(3) {
        let n: i64 = std::fs::read_to_string(&current)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        max_seen = max_seen.max(n);
        assert!(n <= LIMIT, "pids.current {n} > {LIMIT}");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        max_seen >= LIMIT - 2,
        "the bomb never reached the limit ({max_seen})"
    );
    // The host still forks promptly.
    let t = Instant::now();
    assert!(std::process::Command::new("true")
        .status()
        .unwrap()
        .success());
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "host fork took {:?}",
        t.elapsed()
    );
    let t = Instant::now();
    e.rt.remove_pod_cgroup("podbomb").unwrap();
    eprintln!("  fork bomb pod removed in {:?}", t.elapsed());
    assert!(!current.exists());
    for id in [&first.id, &bomb.id] {
        assert!(!e.cdir(id).exists());
    }
}

/// Issue 10 items 3 and 7: a container writing far more than max-size × max-files keeps its
/// files bounded, the newest lines readable, files 0640 in a directory only root can enter.
fn logs_rotate_and_stay_bounded() {
    use std::os::unix::fs::PermissionsExt;
    let e = Env::new();
    let mut s = e.spec(&["sh", "-c", "for i in $(seq 1 30000); do echo line-$i; done"]);
    s.log_max_size = Some(64 << 10);
    s.log_max_files = Some(3);
    let info = e.rt.create_and_start(s).unwrap();
    assert_eq!(e.rt.wait(&info.id).unwrap().code, 0);
    let files = skiff_runtime::logfile::log_files(&info.log_path);
    assert_eq!(files.len(), 3, "{files:?}");
    let total: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .sum();
    // 30000 lines are ~1.3 MB of CRI records; three files of 64 KiB stay.
    assert!(total <= 3 * (64 << 10), "{total}");
    for f in &files {
        let mode = std::fs::metadata(f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640, "{}", f.display());
    }
    let dir_mode = std::fs::metadata(e.cdir(&info.id))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(
        dir_mode & 0o007,
        0,
        "container dir is world-accessible: {dir_mode:o}"
    );
    let mut lines = Vec::new();
    e.rt.logs(&info.id, false, |l| {
        lines.push(String::from_utf8_lossy(&l.text).into_owned());
        Ok(())
    })
    .unwrap();
    assert_eq!(lines.last().map(String::as_str), Some("line-30000"));
    // Contiguous: the oldest kept line up to the newest, none missing.
    let first: usize = lines[0].strip_prefix("line-").unwrap().parse().unwrap();
    assert!(first > 1);
    let want: Vec<String> = (first..=30000).map(|i| format!("line-{i}")).collect();
    assert_eq!(lines, want);
}
