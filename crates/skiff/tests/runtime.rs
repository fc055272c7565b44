//! End-to-end container tests driving the real `skiff` binary (needs root: namespaces,
//! overlay mounts, cgroups). Every test has its own data dir and checks on the way out that
//! no mounts or cgroups of it are left behind.

use std::process::Stdio;
use std::time::{Duration, Instant};

mod common;

use common::Skiff;

#[test]
#[ignore = "needs root: real containers (namespaces, overlayfs, cgroups)"]
fn exit_codes_and_stdout() {
    let s = Skiff::with_busybox();
    let (code, out, _) = s.run(&["run", "--rm", "bb:1", "sh", "-c", "echo hello; exit 3"]);
    assert_eq!(code, 3);
    assert_eq!(out, "hello\n");
    let (code, _, _) = s.run(&["run", "--rm", "bb:1", "false"]);
    assert_eq!(code, 1);
    let (code, _, _) = s.run(&["run", "--rm", "bb:1", "true"]);
    assert_eq!(code, 0);
    let (code, _, err) = s.run(&["run", "--rm", "bb:1", "no-such-command"]);
    assert_ne!(code, 0);
    assert!(err.contains("executable file not found"), "{err}");
    // --rm leaves nothing behind.
    assert_eq!(s.ok(&["ps", "-a"]).lines().count(), 1);
}

#[test]
#[ignore = "needs root: real containers (namespaces, overlayfs, cgroups)"]
fn env_workdir_user() {
    let s = Skiff::with_busybox();
    let out = s.ok(&[
        "run",
        "--rm",
        "-e",
        "FOO=bar",
        "-w",
        "/made/here",
        "-u",
        "1000:1000",
        "bb:1",
        "sh",
        "-c",
        "echo $FOO; pwd; id -u; id -g",
    ]);
    assert_eq!(out, "bar\n/made/here\n1000\n1000\n");
    let out = s.ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "bb:1",
        "ls",
        "/sys/class/net",
    ]);
    assert_eq!(out.trim(), "lo");
    let out = s.ok(&[
        "run",
        "--rm",
        "--network",
        "host",
        "bb:1",
        "ls",
        "/sys/class/net",
    ]);
    assert_ne!(
        out.trim(),
        "lo",
        "host network should show the host's interfaces"
    );
}

#[test]
#[ignore = "needs root: real containers (namespaces, overlayfs, cgroups)"]
fn cri_log_file_streams_and_tags() {
    let s = Skiff::with_busybox();
    let id = s.ok(&[
        "run",
        "-d",
        "--name",
        "logger",
        "bb:1",
        "sh",
        "-c",
        "echo out1; echo err1 >&2; printf partial",
    ]);
    let id = id.trim();
    assert_eq!(id.len(), 64);
    // logs -f returns once the container has exited and the log is drained.
    let o = s.cmd(&["logs", "-f", "logger"]);
    assert!(o.status.success());
    assert_eq!(String::from_utf8_lossy(&o.stdout), "out1\npartial");
    assert_eq!(String::from_utf8_lossy(&o.stderr), "err1\n");
    let raw = std::fs::read_to_string(s.container_dir(id).join("container.log")).unwrap();
    let lines: Vec<Vec<&str>> = raw.lines().map(|l| l.splitn(4, ' ').collect()).collect();
    assert_eq!(lines.len(), 3, "{raw}");
    for l in &lines {
        assert!(l[0].parse::<jiff::Timestamp>().is_ok(), "bad time in {raw}");
    }
    let find = |text: &str| {
        lines
            .iter()
            .find(|l| l[3] == text)
            .unwrap_or_else(|| panic!("{text} in {raw}"))
    };
    assert_eq!(&find("out1")[1..3], ["stdout", "F"]);
    assert_eq!(&find("err1")[1..3], ["stderr", "F"]);
    assert_eq!(&find("partial")[1..3], ["stdout", "P"]);
    s.ok(&["rm", "logger"]);
    assert!(!s.container_dir(id).exists());
}

#[test]
#[ignore = "needs root: real containers (namespaces, overlayfs, cgroups)"]
fn logs_follow_while_running() {
    let s = Skiff::with_busybox();
    s.ok(&[
        "run",
        "-d",
        "--name",
        "ticker",
        "bb:1",
        "sh",
        "-c",
        "for i in 1 2 3; do echo tick$i; sleep 0.3; done",
    ]);
    let t = Instant::now();
    let o = s.cmd(&["logs", "-f", "ticker"]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "tick1\ntick2\ntick3\n");
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "follow returned before the container exited"
    );
    s.ok(&["rm", "ticker"]);
}

#[test]
#[ignore = "needs root: real containers (namespaces, overlayfs, cgroups)"]
fn memory_limit_oom_kill() {
    let s = Skiff::with_busybox();
    let (code, _, err) = s.run(&[
        "run",
        "--name",
        "hog",
        "--memory",
        "16m",
        "bb:1",
        "sh",
        "-c",
        "a=xxxxxxxxxxxxxxxx; while true; do a=$a$a; done",
    ]);
    assert_eq!(code, 137, "{err}");
    let line = s.wait_status("hog", |l| l.contains("Exited"), Duration::from_secs(5));
    assert!(
        line.contains("Exited (137)") && line.contains("OOMKilled"),
        "{line}"
    );
    s.ok(&["rm", "hog"]);
}

#[test]
#[ignore = "needs root: real containers (namespaces, overlayfs, cgroups)"]
fn pids_limit() {
    let s = Skiff::with_busybox();
    let (_, out, err) = s.run(&[
        "run",
        "--rm",
        "--pids-limit",
        "5",
        "bb:1",
        "sh",
        "-c",
        "for i in 1 2 3 4 5 6 7 8 9 10; do sleep 3 & done; echo spawned",
    ]);
    assert!(
        err.contains("fork") || err.contains("esource"),
        "expected fork failures, out={out} err={err}"
    );
    let out = s.ok(&["run", "--rm", "--cpus", "0.5", "bb:1", "echo", "cpu ok"]);
    assert_eq!(out, "cpu ok\n");
}

#[test]
#[ignore = "needs root: real containers (namespaces, overlayfs, cgroups)"]
fn stop_grace_period() {
    let s = Skiff::with_busybox();
    // Traps TERM: exits by itself, well before the grace period ends.
    s.ok(&[
        "run",
        "-d",
        "--name",
        "polite",
        "bb:1",
        "sh",
        "-c",
        "trap 'echo bye; exit 0' TERM; while true; do sleep 0.1; done",
    ]);
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    s.ok(&["stop", "-t", "10", "polite"]);
    assert!(t.elapsed() < Duration::from_secs(5));
    let line = s.wait_status("polite", |l| l.contains("Exited"), Duration::from_secs(5));
    assert!(line.contains("Exited (0)"), "{line}");
    assert_eq!(s.ok(&["logs", "polite"]), "bye\n");

    // PID 1 without a handler ignores TERM: SIGKILL after the grace period.
    s.ok(&["run", "-d", "--name", "stubborn", "bb:1", "sleep", "1000"]);
    let t = Instant::now();
    s.ok(&["stop", "-t", "1", "stubborn"]);
    let el = t.elapsed();
    assert!(
        el >= Duration::from_secs(1) && el < Duration::from_secs(8),
        "{el:?}"
    );
    let line = s.wait_status("stubborn", |l| l.contains("Exited"), Duration::from_secs(5));
    assert!(line.contains("Exited (137)"), "{line}");
    // Stopping an exited container is fine.
    s.ok(&["stop", "stubborn"]);
    s.ok(&["rm", "polite", "stubborn"]);
}

#[test]
#[ignore = "needs root: real containers (namespaces, overlayfs, cgroups)"]
fn detached_container_outlives_cli_and_exec() {
    let s = Skiff::with_busybox();
    let id = s.ok(&["run", "-d", "--name", "bg", "bb:1", "sleep", "1000"]);
    let id = id.trim().to_string();
    // The CLI has exited; the container keeps running under its shim.
    std::thread::sleep(Duration::from_millis(300));
    let line = s.wait_status("bg", |l| l.contains("Up"), Duration::from_secs(5));
    assert!(line.starts_with(&id[..12]), "{line}");
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(s.container_dir(&id).join("state.json")).unwrap())
            .unwrap();
    let shim = state["shim_pid"].as_i64().unwrap();
    let ppid = std::fs::read_to_string(format!("/proc/{shim}/stat")).unwrap();
    let ppid: i64 = ppid[ppid.rfind(')').unwrap() + 2..]
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert_ne!(
        ppid as u32,
        std::process::id(),
        "shim must not be our child"
    );

    // exec: exit code, the container's filesystem and hostname.
    let (code, _, _) = s.run(&["exec", "bg", "sh", "-c", "exit 5"]);
    assert_eq!(code, 5);
    let out = s.ok(&[
        "exec",
        "bg",
        "sh",
        "-c",
        "hostname; test -x /bin/busybox && echo fs-ok",
    ]);
    assert_eq!(out, format!("{}\nfs-ok\n", &id[..12]));
    let o = s
        .command(&["exec", "-i", "bg", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(b"piped in\n")?;
            c.wait_with_output()
        })
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "piped in\n");

    let (code, _, err) = s.run(&["rm", "bg"]);
    assert_ne!(code, 0, "rm of a running container must fail");
    assert!(err.contains("running"), "{err}");
    s.ok(&["stop", "-t", "0", "bg"]);
    s.ok(&["rm", "bg"]);
    assert!(!s.container_dir(&id).exists());
    assert!(std::fs::read_dir(s.data_dir().join("runtime"))
        .unwrap()
        .next()
        .is_none());
}

#[test]
#[ignore = "needs root: real containers (namespaces, overlayfs, cgroups)"]
fn rm_force_running() {
    let s = Skiff::with_busybox();
    let id = s.ok(&["run", "-d", "bb:1", "sleep", "1000"]);
    s.ok(&["rm", "-f", id.trim()]);
    assert_eq!(s.ok(&["ps", "-a"]).lines().count(), 1);
    // --rm -d: the shim removes the container itself.
    s.ok(&["run", "-d", "--rm", "--name", "gone", "bb:1", "true"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.ok(&["ps", "-a"]).contains("gone") {
        assert!(Instant::now() < deadline, "auto-remove did not happen");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
#[ignore = "needs root: real containers (namespaces, overlayfs, cgroups)"]
fn names_are_unique() {
    let s = Skiff::with_busybox();
    s.ok(&["run", "-d", "--name", "same", "bb:1", "sleep", "100"]);
    let (code, _, err) = s.run(&["run", "-d", "--name", "same", "bb:1", "true"]);
    assert_ne!(code, 0);
    assert!(err.contains("already in use"), "{err}");
    s.ok(&["rm", "-f", "same"]);
}

#[test]
#[ignore = "needs root: real containers (namespaces, overlayfs, cgroups)"]
fn twenty_concurrent_runs() {
    let s = Skiff::with_busybox();
    let children: Vec<_> = (0..20)
        .map(|_| {
            s.command(&["run", "--rm", "bb:1", "true"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert!(
            o.status.success(),
            "concurrent run failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    assert!(
        Instant::now() < deadline,
        "20 concurrent runs took too long"
    );
    assert_eq!(s.ok(&["ps", "-a"]).lines().count(), 1);
}

/// Runs `skiff args` with `input` on its stdin; (exit code, stdout).
fn with_input(s: &Skiff, args: &[&str], input: &[u8]) -> (i32, String) {
    let o = s
        .command(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(input)?;
            c.wait_with_output()
        })
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
    )
}

#[test]
#[ignore = "needs root: real containers (namespaces, overlayfs, cgroups)"]
fn run_interactive_tty_and_attach() {
    let s = Skiff::with_busybox();
    // -i in the foreground: our stdin reaches the container; output comes from the log.
    let (code, out) = with_input(
        &s,
        &[
            "run",
            "--rm",
            "-i",
            "bb:1",
            "sh",
            "-c",
            "read x; echo got-$x; exit 3",
        ],
        b"one\n",
    );
    assert_eq!((code, out.as_str()), (3, "got-one\n"));
    // -t: a terminal (its output is "\r\n"-terminated).
    let (code, out) = with_input(
        &s,
        &[
            "run",
            "--rm",
            "-i",
            "-t",
            "bb:1",
            "sh",
            "-c",
            "read x; test -t 0 && echo tty-$x",
        ],
        b"two\n",
    );
    assert_eq!(code, 0);
    assert!(out.contains("tty-two\r\n"), "{out:?}");
    // Detached with stdin open; `skiff attach` sends input and reports the exit code.
    s.ok(&[
        "run",
        "-d",
        "-i",
        "--name",
        "waiter",
        "bb:1",
        "sh",
        "-c",
        "read x; echo late-$x; exit 4",
    ]);
    let (code, out) = with_input(&s, &["attach", "waiter"], b"three\n");
    assert_eq!((code, out.as_str()), (4, "late-three\n"));
    assert_eq!(s.ok(&["logs", "waiter"]), "late-three\n");
    s.ok(&["rm", "waiter"]);
}
