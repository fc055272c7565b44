//! Pod containers with stdin and a terminal, attached through the shim's attach socket, and
//! ephemeral containers (`pods/ephemeralcontainers`) started in the pod, joining the target
//! container's PID namespace. Real containers; need root, busybox and the CNI plugins.

mod pods_support;

use std::time::Duration;

use kube::api::{Patch, PatchParams};
use pods_support::{container_status, instance, log_text, Harness};
use serde_json::json;
use skiff_runtime::attach::{self, AttachOptions};

const ALL: AttachOptions = AttachOptions {
    stdin: true,
    stdout: true,
    stderr: true,
};

/// Reads frames until stdout contains `needle` or the exit frame came; returns (stdout, exit).
fn read_until(sock: &mut std::os::unix::net::UnixStream, needle: &str) -> (String, Option<i32>) {
    let mut out = Vec::new();
    loop {
        match attach::read_frame(sock, 1 << 20).expect("read frame") {
            Some((attach::FRAME_STDOUT, p)) => out.extend(p),
            Some((attach::FRAME_EXIT, p)) => {
                let code = String::from_utf8_lossy(&p).parse().ok();
                return (String::from_utf8_lossy(&out).into_owned(), code);
            }
            Some(_) => {}
            None => return (String::from_utf8_lossy(&out).into_owned(), None),
        }
        if String::from_utf8_lossy(&out).contains(needle) {
            return (String::from_utf8_lossy(&out).into_owned(), None);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs root: real pods (namespaces, overlayfs, cgroups, CNI)"]
async fn stdin_tty_pod_is_attachable() {
    let h = Harness::start().await;
    h.create_pod(
        "term",
        json!({"restartPolicy": "Never", "containers": [
            {"name": "sh", "image": "bb:1", "stdin": true, "stdinOnce": true, "tty": true,
             "command": ["/bin/sh", "-c", "read line; /bin/busybox stty size; echo got-$line; exit 4"]},
        ]}),
    )
    .await;
    h.wait_pod("term", "running", Duration::from_secs(60), |p| {
        container_status(p, "sh")
            .and_then(|s| s.state.as_ref())
            .is_some_and(|s| s.running.is_some())
    })
    .await;
    let info = instance(&h, "term", "sh").expect("container");
    let rt = h.runtime();
    let id = info.id.clone();
    let (out, code) = tokio::task::spawn_blocking(move || {
        let mut sock = rt.attach(&id, &ALL).expect("attach");
        sock.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        attach::write_frame(
            &mut sock,
            attach::FRAME_RESIZE,
            br#"{"Width":77,"Height":22}"#,
        )
        .expect("resize");
        attach::write_frame(&mut sock, attach::FRAME_STDIN, b"hi\n").expect("stdin");
        let (first, _) = read_until(&mut sock, "got-hi");
        let (rest, code) = read_until(&mut sock, "\u{0}never");
        (first + &rest, code)
    })
    .await
    .expect("attach task");
    assert!(out.contains("22 77"), "{out:?}");
    assert!(out.contains("got-hi\r\n"), "{out:?}");
    assert_eq!(code, Some(4));
    let pod = h
        .wait_pod("term", "failed", Duration::from_secs(30), |p| {
            p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed")
        })
        .await;
    let st = container_status(&pod, "sh").expect("status");
    let term = st.state.as_ref().and_then(|s| s.terminated.as_ref());
    assert_eq!(term.map(|t| t.exit_code), Some(4));
    // The terminal's output is logged as stdout.
    let info = instance(&h, "term", "sh").expect("container");
    assert!(log_text(&info).contains("got-hi"), "{}", log_text(&info));
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs root: real pods (namespaces, overlayfs, cgroups, CNI)"]
async fn ephemeral_container_joins_target_pid_namespace() {
    let h = Harness::start().await;
    h.create_pod(
        "target",
        json!({"containers": [
            {"name": "app", "image": "bb:1", "command": ["/bin/sleep", "3602"]},
        ]}),
    )
    .await;
    h.wait_pod("target", "running", Duration::from_secs(60), |p| {
        container_status(p, "app")
            .and_then(|s| s.state.as_ref())
            .is_some_and(|s| s.running.is_some())
    })
    .await;
    let patch = json!({"spec": {"ephemeralContainers": [
        {"name": "dbg", "image": "bb:1", "command": ["/bin/busybox", "ps"],
         "targetContainerName": "app"},
    ]}});
    h.pods()
        .patch_ephemeral_containers("target", &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .expect("add ephemeral container");
    let pod = h
        .wait_pod("target", "debugger done", Duration::from_secs(60), |p| {
            p.status
                .as_ref()
                .and_then(|s| s.ephemeral_container_statuses.as_ref())
                .and_then(|l| l.first())
                .and_then(|s| s.state.as_ref())
                .is_some_and(|s| s.terminated.is_some())
        })
        .await;
    let status = pod.status.as_ref().expect("status");
    let eph = &status.ephemeral_container_statuses.as_ref().expect("eph")[0];
    assert_eq!(eph.name, "dbg");
    let term = eph.state.as_ref().and_then(|s| s.terminated.as_ref());
    assert_eq!(term.map(|t| t.exit_code), Some(0));
    assert_eq!(status.phase.as_deref(), Some("Running"));
    let dbg = instance(&h, "target", "dbg").expect("debugger");
    let app = instance(&h, "target", "app").expect("app");
    let log = log_text(&dbg);
    assert!(log.contains("sleep 3602"), "{log}");
    // PID 1 of the debugger's view is app's init (CRI lines: time, stream, tag, then ps's).
    assert!(
        log.lines()
            .any(|l| l.split_whitespace().nth(3) == Some("1") && l.contains("sleep 3602")),
        "{log}"
    );
    assert!(app.pid.is_some());
    // Never restarted; existing ephemeral containers cannot be removed.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(pods_support::instances(&h, "target", "dbg").len(), 1);
    let removal = json!({"spec": {"ephemeralContainers": []}});
    let err = h
        .pods()
        .patch_ephemeral_containers("target", &PatchParams::default(), &Patch::Merge(&removal))
        .await
        .expect_err("removal refused");
    match err {
        kube::Error::Api(ae) => assert_eq!(ae.code, 422, "{ae:?}"),
        e => panic!("{e}"),
    }
    h.shutdown().await;
}
