//! Pod security settings the kubelet enforces (issue 10 items 6 and 15): `runAsNonRoot`
//! verified against the effective user exactly like `verifyRunAsNonRoot` (refused containers
//! never run), and `hostPID` / `hostIPC` giving the container the host's PID and IPC
//! namespaces. Real pods, real containers; need root, busybox and the CNI plugins.

mod pods_support;

use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use pods_support::{container_status, instances, log_text, Harness};
use serde_json::json;
use skiff_runtime::ContainerInfo;

/// Waits until the newest instance's log contains `needle`; returns that instance.
async fn wait_log(h: &Harness, pod: &str, container: &str, needle: &str) -> ContainerInfo {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(i) = instances(h, pod, container).into_iter().next() {
            if log_text(&i).contains(needle) {
                return i;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{pod}/{container} never logged {needle:?}: {:?}",
            instances(h, pod, container).first().map(log_text)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits for the container to be refused with CreateContainerConfigError; returns the message.
async fn wait_config_error(h: &Harness, pod: &str, container: &str) -> String {
    let p = h
        .wait_pod(
            pod,
            "CreateContainerConfigError",
            Duration::from_secs(60),
            |p| {
                container_status(p, container)
                    .and_then(|s| s.state.as_ref())
                    .and_then(|s| s.waiting.as_ref())
                    .is_some_and(|w| w.reason.as_deref() == Some("CreateContainerConfigError"))
            },
        )
        .await;
    container_status(&p, container)
        .and_then(|s| s.state.as_ref())
        .and_then(|s| s.waiting.as_ref())
        .and_then(|w| w.message.clone())
        .unwrap_or_default()
}

fn pod_ref(p: &Pod) -> String {
    format!(
        "\"{}_default({})\"",
        p.metadata.name.as_deref().unwrap(),
        p.metadata.uid.as_deref().unwrap()
    )
}

struct NoRun;

impl skiff_image::BuildRunner for NoRun {
    fn run(
        &self,
        _step: &skiff_image::RunStep<'_>,
    ) -> Result<i32, Box<dyn std::error::Error + Send + Sync>> {
        panic!("no RUN steps here");
    }
}

/// `bb:1` with another USER, built into the agent's image store.
fn image_with_user(h: &Harness, tag: &str, user: &str) {
    build_image(h, tag, &format!("FROM bb:1\nUSER {user}\n"), |_| {});
}

/// Builds `containerfile` (context prepared by `setup`) into the agent's image store.
fn build_image(h: &Harness, tag: &str, containerfile: &str, setup: impl FnOnce(&Path)) {
    let ctx = h
        .config
        .data_dir
        .join(format!("ctx-{}", tag.replace(':', "-")));
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Containerfile"), containerfile).unwrap();
    setup(&ctx);
    let store = skiff_image::ImageStore::open(h.config.data_dir.join("images")).unwrap();
    store
        .build(
            &skiff_image::BuildOptions {
                tag: tag.into(),
                context: ctx,
                file: None,
                build_args: vec![],
                no_cache: false,
            },
            &NoRun,
            &skiff_image::NoProgress,
        )
        .unwrap();
}

fn uid_of(pid: i32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or_default()
        .to_string()
}

const SHOW_UID: &str = "echo UID=$(/bin/busybox id -u); exec sleep 3600";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs root: real pods (namespaces, overlayfs, cgroups, CNI)"]
async fn run_as_non_root_is_enforced_like_the_kubelet() {
    let h = Harness::start().await;
    image_with_user(&h, "bb-named:1", "nobody");
    image_with_user(&h, "bb-1234:1", "1234:1234");

    // A root image (no USER) with the pod-level runAsNonRoot: refused, never started.
    let root = h
        .create_pod(
            "nr-root",
            json!({"securityContext": {"runAsNonRoot": true},
                "containers": [{"name": "c", "image": "bb:1",
                    "command": ["/bin/sh", "-c", SHOW_UID]}]}),
        )
        .await;
    // runAsUser 0 with the container-level runAsNonRoot.
    let zero = h
        .create_pod(
            "nr-zero",
            json!({"containers": [{"name": "c", "image": "bb:1",
                "securityContext": {"runAsNonRoot": true, "runAsUser": 0},
                "command": ["/bin/sh", "-c", SHOW_UID]}]}),
        )
        .await;
    // An image whose USER is a name: cannot be verified.
    let named = h
        .create_pod(
            "nr-named",
            json!({"securityContext": {"runAsNonRoot": true},
                "containers": [{"name": "c", "image": "bb-named:1",
                    "command": ["/bin/sh", "-c", SHOW_UID]}]}),
        )
        .await;
    // runAsUser 1000 (pod level) satisfies runAsNonRoot (container level).
    h.create_pod(
        "nr-1000",
        json!({"securityContext": {"runAsUser": 1000},
            "containers": [{"name": "c", "image": "bb:1",
                "securityContext": {"runAsNonRoot": true},
                "command": ["/bin/sh", "-c", SHOW_UID]}]}),
    )
    .await;
    // A numeric non-root image USER satisfies it too; a named image with runAsUser as well.
    h.create_pod(
        "nr-image",
        json!({"securityContext": {"runAsNonRoot": true},
            "containers": [{"name": "c", "image": "bb-1234:1",
                "command": ["/bin/sh", "-c", SHOW_UID]}]}),
    )
    .await;
    h.create_pod(
        "nr-named-uid",
        json!({"securityContext": {"runAsNonRoot": true, "runAsUser": 4321},
            "containers": [{"name": "c", "image": "bb-named:1",
                "command": ["/bin/sh", "-c", SHOW_UID]}]}),
    )
    .await;
    // The container's runAsNonRoot: false overrides the pod's true (runs as root).
    h.create_pod(
        "nr-override",
        json!({"securityContext": {"runAsNonRoot": true},
            "containers": [{"name": "c", "image": "bb:1",
                "securityContext": {"runAsNonRoot": false},
                "command": ["/bin/sh", "-c", SHOW_UID]}]}),
    )
    .await;

    assert_eq!(
        wait_config_error(&h, "nr-root", "c").await,
        format!(
            "container has runAsNonRoot and image will run as root (pod: {}, container: c)",
            pod_ref(&root)
        )
    );
    assert_eq!(
        wait_config_error(&h, "nr-zero", "c").await,
        format!(
            "container's runAsUser breaks non-root policy (pod: {}, container: c)",
            pod_ref(&zero)
        )
    );
    assert_eq!(
        wait_config_error(&h, "nr-named", "c").await,
        format!(
            "container has runAsNonRoot and image has non-numeric user (nobody), cannot verify \
             user is non-root (pod: {}, container: c)",
            pod_ref(&named)
        )
    );

    for (pod, uid) in [
        ("nr-1000", "1000"),
        ("nr-image", "1234"),
        ("nr-named-uid", "4321"),
        ("nr-override", "0"),
    ] {
        let i = wait_log(&h, pod, "c", "UID=").await;
        assert!(
            log_text(&i).contains(&format!("UID={uid}\n")),
            "{pod}: {}",
            log_text(&i)
        );
        assert_eq!(
            uid_of(i.pid.expect("pid")),
            uid,
            "{pod}: uid seen from the host"
        );
    }
    // The refused ones never ran, even after several sync rounds.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for pod in ["nr-root", "nr-zero", "nr-named"] {
        assert!(instances(&h, pod, "c").is_empty(), "{pod} was started");
    }
    h.shutdown().await;
}

fn ns_link(path: impl AsRef<Path>) -> String {
    std::fs::read_link(path.as_ref())
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.as_ref().display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs root: real pods (namespaces, overlayfs, cgroups, CNI)"]
async fn host_pid_and_host_ipc_share_the_hosts_namespaces() {
    let h = Harness::start().await;
    let me = std::process::id();
    // Inside: is this test process (the agent runs in it) visible, and which namespaces?
    let probe = format!(
        "if [ -d /proc/{me} ]; then echo SEES-HOST-PID; else echo NO-HOST-PID; fi; \
         echo PIDNS=$(/bin/busybox readlink /proc/self/ns/pid); \
         echo IPCNS=$(/bin/busybox readlink /proc/self/ns/ipc); exec sleep 3600"
    );
    let container = |name: &str| {
        json!({"name": name, "image": "bb:1",
        "command": ["/bin/sh", "-c", probe]})
    };
    h.create_pod(
        "host-pid",
        json!({"hostPID": true, "containers": [container("c")]}),
    )
    .await;
    h.create_pod(
        "host-ipc",
        json!({"hostIPC": true, "containers": [container("c")]}),
    )
    .await;
    h.create_pod("plain", json!({"containers": [container("c")]}))
        .await;

    let host_pid_ns = ns_link("/proc/self/ns/pid");
    let host_ipc_ns = ns_link("/proc/self/ns/ipc");

    let i = wait_log(&h, "host-pid", "c", "IPCNS=").await;
    let log = log_text(&i);
    assert!(log.contains("SEES-HOST-PID"), "{log}");
    assert!(log.contains(&format!("PIDNS={host_pid_ns}")), "{log}");
    // hostPID alone keeps the pod's own IPC namespace.
    assert!(!log.contains(&format!("IPCNS={host_ipc_ns}")), "{log}");
    let pid = i.pid.expect("pid");
    assert_eq!(ns_link(format!("/proc/{pid}/ns/pid")), host_pid_ns);

    let i = wait_log(&h, "host-ipc", "c", "IPCNS=").await;
    let log = log_text(&i);
    assert!(log.contains(&format!("IPCNS={host_ipc_ns}")), "{log}");
    assert!(log.contains("NO-HOST-PID"), "{log}");
    let pid = i.pid.expect("pid");
    assert_eq!(ns_link(format!("/proc/{pid}/ns/ipc")), host_ipc_ns);
    assert_ne!(ns_link(format!("/proc/{pid}/ns/pid")), host_pid_ns);

    // Without them: neither is shared.
    let i = wait_log(&h, "plain", "c", "IPCNS=").await;
    let log = log_text(&i);
    assert!(log.contains("NO-HOST-PID"), "{log}");
    assert!(!log.contains(&format!("PIDNS={host_pid_ns}")), "{log}");
    assert!(!log.contains(&format!("IPCNS={host_ipc_ns}")), "{log}");
    h.shutdown().await;
}

/// A USER name is looked up in the image's own /etc/passwd and /etc/group (never the host's):
/// before, any name ran as root.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs root: real pods (namespaces, overlayfs, cgroups, CNI)"]
async fn image_user_names_resolve_inside_the_image_only() {
    let h = Harness::start().await;
    build_image(
        &h,
        "bb-app:1",
        "FROM bb:1\nCOPY passwd group /etc/\nUSER app:staff\n",
        |ctx| {
            std::fs::write(
                ctx.join("passwd"),
                "root:x:0:0:root:/root:/bin/sh\napp:x:1500:1600::/:/bin/sh\n",
            )
            .unwrap();
            std::fs::write(ctx.join("group"), "root:x:0:\nstaff:x:1700:\n").unwrap();
        },
    );
    // /etc/passwd as a link to the host's: `daemon` is only in the host's file.
    build_image(
        &h,
        "bb-hostlink:1",
        "FROM bb:1\nCOPY passwd /etc/\nUSER daemon\n",
        |ctx| std::os::unix::fs::symlink("/etc/passwd", ctx.join("passwd")).unwrap(),
    );
    image_with_user(&h, "bb-missing:1", "nobody");
    let show = "echo IDS=$(/bin/busybox id -u):$(/bin/busybox id -g); exec sleep 3600";
    for (pod, image) in [
        ("u-app", "bb-app:1"),
        ("u-hostlink", "bb-hostlink:1"),
        ("u-missing", "bb-missing:1"),
    ] {
        h.create_pod(
            pod,
            json!({"containers": [{"name": "c", "image": image,
                "command": ["/bin/sh", "-c", show]}]}),
        )
        .await;
    }
    let i = wait_log(&h, "u-app", "c", "IDS=").await;
    assert!(log_text(&i).contains("IDS=1500:1700\n"), "{}", log_text(&i));
    assert_eq!(uid_of(i.pid.expect("pid")), "1500");

    let msg = wait_config_error(&h, "u-missing", "c").await;
    assert_eq!(
        msg,
        "unable to find user nobody: no matching entries in passwd file"
    );
    let msg = wait_config_error(&h, "u-hostlink", "c").await;
    assert!(
        msg.starts_with("reading /etc/passwd of the image:"),
        "{msg}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    for pod in ["u-missing", "u-hostlink"] {
        assert!(instances(&h, pod, "c").is_empty(), "{pod} was started");
    }
    h.shutdown().await;
}
