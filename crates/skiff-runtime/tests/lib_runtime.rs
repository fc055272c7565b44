//! Library-level tests of the runtime against the real kernel (needs root). The test binary
//! doubles as the shim: invoked as `<self> shim --data-dir D ID` it runs
//! `skiff_runtime::shim::main`, so these tests do not depend on the `skiff` CLI.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use skiff_runtime::{
    BindMount, ContainerSpec, ExecOptions, NetworkMode, Runtime, RuntimeConfig, RuntimeError,
    Status, Stream,
};

const APPLETS: &[&str] = &[
    "sh", "echo", "cat", "sleep", "true", "false", "id", "pwd", "env", "ls", "head", "dd",
    "hostname", "tr", "mount", "grep", "kill", "test", "wc", "ps", "printf", "touch", "mkdir",
];

fn main() {
    let tests: &[(&str, fn())] = &[
        ("exit_codes_and_logs", exit_codes_and_logs),
        ("start_failure", start_failure),
        ("env_cwd_user_hostname", env_cwd_user_hostname),
        ("stop_and_exec", stop_and_exec),
        ("oom_and_pids", oom_and_pids),
        ("auto_remove_and_names", auto_remove_and_names),
        (
            "external_upper_and_bind_mounts",
            external_upper_and_bind_mounts,
        ),
        ("concurrent_starts", concurrent_starts),
        ("shim_crash_cleanup", shim_crash_cleanup),
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

    fn run(&self, spec: ContainerSpec) -> (String, i32, String, String) {
        let info = self.rt.create_and_start(spec).unwrap();
        let exit = self.rt.wait(&info.id).unwrap();
        let (out, err) = self.output(&info.id);
        (info.id, exit.code, out, err)
    }

    fn output(&self, id: &str) -> (String, String) {
        let (mut out, mut err) = (String::new(), String::new());
        self.rt
            .logs(id, false, |l| {
                let s = if l.stream == Stream::Stdout {
                    &mut out
                } else {
                    &mut err
                };
                s.push_str(&String::from_utf8_lossy(&l.text));
                if l.full {
                    s.push('\n');
                }
                Ok(())
            })
            .unwrap();
        (out, err)
    }

    fn data(&self) -> PathBuf {
        std::fs::canonicalize(self.dir.path().join("data")).unwrap()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Ok(list) = self.rt.list() {
            for c in list {
                let _ = self.rt.remove(&c.id, true);
            }
        }
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let root = self.dir.path().to_string_lossy().to_string();
        let left: Vec<&str> = mounts.lines().filter(|l| l.contains(&root)).collect();
        let cgroups = skiff_runtime::leftover_cgroups(&self.data());
        if !std::thread::panicking() {
            assert!(left.is_empty(), "leftover mounts: {left:?}");
            assert!(cgroups.is_empty(), "leftover cgroups: {cgroups:?}");
            let runtime_left: Vec<_> = std::fs::read_dir(self.data().join("runtime"))
                .unwrap()
                .collect();
            assert!(runtime_left.is_empty(), "leftover libcontainer state");
        }
    }
}

fn exit_codes_and_logs() {
    let e = Env::new();
    let (_, code, _, _) = e.run(e.spec(&["sh", "-c", "exit 3"]));
    assert_eq!(code, 3);
    let (_, code, _, _) = e.run(e.spec(&["false"]));
    assert_eq!(code, 1);
    let (id, code, out, err) =
        e.run(e.spec(&["sh", "-c", "echo out1; echo err1 >&2; printf partial"]));
    assert_eq!(code, 0);
    assert_eq!(out, "out1\npartial");
    assert_eq!(err, "err1\n");
    let raw = std::fs::read_to_string(e.rt.get(&id).unwrap().log_path).unwrap();
    assert!(raw.contains(" stdout F out1\n"), "{raw}");
    assert!(raw.contains(" stderr F err1\n"), "{raw}");
    assert!(raw.contains(" stdout P partial\n"), "{raw}");
    // A 40000-byte line is split at 16 KiB into P pieces plus a final F.
    let (id, _, out, _) =
        e.run(e.spec(&["sh", "-c", "head -c 40000 /dev/zero | tr '\\0' a; echo"]));
    assert_eq!(out.len(), 40001);
    let raw = std::fs::read_to_string(e.rt.get(&id).unwrap().log_path).unwrap();
    let kinds: Vec<&str> = raw.lines().map(|l| l.split(' ').nth(2).unwrap()).collect();
    assert_eq!(kinds, vec!["P", "P", "F"]);
    let info = e.rt.get(&id[..10]).unwrap();
    assert_eq!(info.status, Status::Exited);
    assert_eq!(info.exit.unwrap().code, 0);
}

fn start_failure() {
    let e = Env::new();
    let err =
        e.rt.create_and_start(e.spec(&["nonexistent-cmd"]))
            .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, RuntimeError::StartFailed { .. }), "{msg}");
    assert!(msg.contains("executable file not found"), "{msg}");
    assert!(
        e.rt.list().unwrap().is_empty(),
        "failed container must be cleaned up"
    );
}

fn env_cwd_user_hostname() {
    let e = Env::new();
    let mut s = e.spec(&["sh", "-c", "echo $FOO; pwd; id -u; id -g; hostname; id -G"]);
    s.env = vec!["FOO=bar".into()];
    s.cwd = "/work/dir".into();
    s.uid = 1000;
    s.gid = 1000;
    s.additional_gids = vec![2000];
    s.hostname = Some("boxy".into());
    let (_, code, out, err) = e.run(s);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "bar\n/work/dir\n1000\n1000\nboxy\n1000 2000\n");
    // Read-only rootfs and network none (only lo).
    let mut s = e.spec(&["sh", "-c", "touch /x; ls /sys/class/net"]);
    s.readonly_rootfs = true;
    let (_, code, out, err) = e.run(s);
    assert_eq!(code, 0);
    assert!(err.contains("Read-only file system"), "{err}");
    assert_eq!(out.trim(), "lo");
    // Host network sees the host's interfaces.
    let mut s = e.spec(&["ls", "/sys/class/net"]);
    s.network = NetworkMode::Host;
    let (_, code, out, err) = e.run(s);
    assert_eq!(code, 0, "{err}");
    assert!(out.lines().count() > 1 || out.trim() != "lo", "{out}");
    // The container's cgroup files are visible but read-only (no raising its own limits).
    let mut s = e.spec(&[
        "sh",
        "-c",
        "cat /sys/fs/cgroup/pids/pids.max; echo max > /sys/fs/cgroup/pids/pids.max",
    ]);
    s.pids_limit = Some(50);
    let (_, code, out, err) = e.run(s);
    assert_eq!(out, "50\n", "{err}");
    assert_ne!(code, 0);
    assert!(err.contains("Read-only"), "{err}");
    // Masked paths read empty.
    let (_, _, out, err) = e.run(e.spec(&[
        "sh",
        "-c",
        "wc -c < /proc/timer_list; ls /sys/firmware | wc -l",
    ]));
    assert_eq!(out, "0\n0\n", "{err}");
    // Seccomp denies mount even with CAP_SYS_ADMIN; privileged containers have no profile.
    let mut s = e.spec(&["sh", "-c", "mount -t tmpfs t /tmp && echo mounted"]);
    s.cap_add = vec!["SYS_ADMIN".into()];
    let (_, code, out, _) = e.run(s.clone());
    assert_ne!(code, 0);
    assert!(!out.contains("mounted"), "{out}");
    s.cap_add.clear();
    s.privileged = true;
    let (_, code, out, err) = e.run(s);
    assert_eq!((code, out.as_str()), (0, "mounted\n"), "{err}");
}

fn stop_and_exec() {
    let e = Env::new();
    // PID 1 without a TERM handler ignores SIGTERM: killed after the grace period.
    let mut s = e.spec(&["sleep", "1000"]);
    s.name = Some("sleeper".into());
    let info = e.rt.create_and_start(s).unwrap();
    assert_eq!(info.status, Status::Running);
    assert!(info.pid.is_some());
    let mut opts = ExecOptions {
        args: vec![
            "sh".into(),
            "-c".into(),
            "test -f /bin/busybox && exit 7".into(),
        ],
        env: vec![],
        cwd: None,
        stdin: false,
        uid: None,
        gid: None,
    };
    assert_eq!(e.rt.exec("sleeper", &opts).unwrap(), 7);
    opts.args = vec!["sh".into(), "-c".into(), "[ $(hostname) = $H ]".into()];
    opts.env = vec![format!("H={}", &info.id[..12])];
    assert_eq!(e.rt.exec("sleeper", &opts).unwrap(), 0);
    let t = Instant::now();
    e.rt.stop("sleeper", Duration::from_secs(1)).unwrap();
    assert!(t.elapsed() >= Duration::from_secs(1));
    let x = e.rt.wait("sleeper").unwrap();
    assert_eq!(x.code, 137);
    assert!(e.rt.exec("sleeper", &opts).is_err());
    // A TERM handler exits gracefully before the grace period ends.
    let info =
        e.rt.create_and_start(e.spec(&[
            "sh",
            "-c",
            "trap 'exit 42' TERM; while true; do sleep 0.1; done",
        ]))
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    e.rt.stop(&info.id, Duration::from_secs(10)).unwrap();
    assert!(t.elapsed() < Duration::from_secs(5));
    assert_eq!(e.rt.wait(&info.id).unwrap().code, 42);
    // remove refuses a running container unless forced.
    let info = e.rt.create_and_start(e.spec(&["sleep", "1000"])).unwrap();
    assert!(matches!(
        e.rt.remove(&info.id, false),
        Err(RuntimeError::Running(_))
    ));
    e.rt.remove(&info.id, true).unwrap();
    assert!(matches!(e.rt.get(&info.id), Err(RuntimeError::NotFound(_))));
}

fn oom_and_pids() {
    let e = Env::new();
    let mut s = e.spec(&[
        "sh",
        "-c",
        "a=xxxxxxxxxxxxxxxx; while true; do a=$a$a; done",
    ]);
    s.memory = Some(16 << 20);
    let (id, code, _, _) = e.run(s);
    assert_eq!(code, 137);
    assert!(e.rt.get(&id).unwrap().exit.unwrap().oom_killed);

    let mut s = e.spec(&[
        "sh",
        "-c",
        "for i in 1 2 3 4 5 6 7 8 9 10; do sleep 5 & done; echo started; wait",
    ]);
    s.pids_limit = Some(5);
    let (_, code, out, err) = e.run(s);
    assert!(
        err.contains("fork") || err.contains("resource") || err.contains("Resource"),
        "code={code} out={out} err={err}"
    );
}

fn auto_remove_and_names() {
    let e = Env::new();
    let mut s = e.spec(&["true"]);
    s.auto_remove = true;
    let info = e.rt.create_and_start(s).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(e.rt.wait(&info.id).unwrap().code, 0);
    let deadline = Instant::now() + Duration::from_secs(5);
    while e.rt.get(&info.id).is_ok() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        e.rt.get(&info.id).is_err(),
        "auto-removed container still listed"
    );

    let mut s = e.spec(&["sleep", "100"]);
    s.name = Some("dup".into());
    let a = e.rt.create_and_start(s.clone()).unwrap();
    match e.rt.create_and_start(s) {
        Err(RuntimeError::NameInUse(n, id)) => {
            assert_eq!(n, "dup");
            assert_eq!(id, a.id);
        }
        other => panic!("expected NameInUse, got {other:?}"),
    }
    let _ = Path::new("/");
    e.rt.remove("dup", true).unwrap();
}

fn external_upper_and_bind_mounts() {
    let e = Env::new();
    // An image-build style RUN: the caller's own upper dir receives the changes.
    let upper = e.dir.path().join("snap").join("upper");
    std::fs::create_dir_all(&upper).unwrap();
    let mut s = e.spec(&["sh", "-c", "echo built > /result; rm /bin/cat"]);
    s.upper = Some(upper.clone());
    let (_, code, _, err) = e.run(s);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        std::fs::read_to_string(upper.join("result")).unwrap(),
        "built\n"
    );
    assert!(!e.dir.path().join("snap").join("upper.work").exists());
    // Zero lowers: the upper dir alone is the rootfs.
    let mut s = e.spec(&["cat", "/result"]);
    s.lowers.clear();
    s.upper = Some(e.lower.clone());
    std::fs::write(e.lower.join("result"), "alone\n").unwrap();
    let (_, code, out, err) = e.run(s);
    assert_eq!((code, out.as_str()), (0, "alone\n"), "{err}");
    std::fs::remove_file(e.lower.join("result")).unwrap();

    let host = e.dir.path().join("hostdir");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("in"), "from host\n").unwrap();
    let mut s = e.spec(&[
        "sh",
        "-c",
        "cat /ro/in; echo x > /ro/new || echo ro-denied; echo w > /rw/out",
    ]);
    s.mounts = vec![
        BindMount {
            source: host.clone(),
            destination: "/ro".into(),
            readonly: true,
        },
        BindMount {
            source: host.clone(),
            destination: "/rw".into(),
            readonly: false,
        },
    ];
    let (_, code, out, err) = e.run(s);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "from host\nro-denied\n");
    assert_eq!(std::fs::read_to_string(host.join("out")).unwrap(), "w\n");
}

fn concurrent_starts() {
    // Several runtimes (as in separate processes) starting at once, with auto-remove.
    let e = Env::new();
    let data = e.dir.path().join("data");
    let lower = e.lower.clone();
    let threads: Vec<_> = (0..10)
        .map(|i| {
            let data = data.clone();
            let mut s = e.spec(&["sh", "-c", "echo $N"]);
            s.env = vec![format!("N={i}")];
            s.lowers = vec![lower.clone()];
            s.auto_remove = true;
            std::thread::spawn(move || {
                let rt = Runtime::new(RuntimeConfig {
                    data_dir: data,
                    shim_exe: std::env::current_exe().unwrap(),
                })
                .unwrap();
                let info = rt.create_and_start(s).unwrap();
                rt.wait(&info.id).unwrap().code
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), 0);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !e.rt.list().unwrap().is_empty() {
        assert!(
            Instant::now() < deadline,
            "auto-removed containers still listed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn shim_crash_cleanup() {
    // A shim killed hard takes its container with it (its guardian kills the cgroup and
    // records exit 137); remove then cleans everything (Env's drop checks mounts, cgroups
    // and runtime state).
    let e = Env::new();
    let info = e.rt.create_and_start(e.spec(&["sleep", "1000"])).unwrap();
    let shim = info.shim_pid.unwrap();
    let pid = info.pid.unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(shim), nix::sys::signal::SIGKILL).unwrap();
    let exit = e.rt.wait(&info.id).unwrap();
    assert_eq!(exit.code, 137);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists() || {
            let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            s.contains(") Z ")
        }
    );
    e.rt.remove(&info.id, false).unwrap();
    assert!(e.rt.list().unwrap().is_empty());
}
