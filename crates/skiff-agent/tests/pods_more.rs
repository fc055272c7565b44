//! More end-to-end pod tests: containers of a pod sharing localhost, hostname and IPC;
//! readiness flipping both ways; secrets as env and files; graceful termination and the
//! SIGKILL after the grace period. Real containers; need root, busybox and the CNI plugins.

mod pods_support;

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, DeleteParams, PostParams};
use pods_support::{container_status, instance, instances, is_ready, log_text, Harness};
use serde_json::json;
use skiff_runtime::ContainerInfo;

fn condition(pod: &Pod, typ: &str) -> Option<String> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == typ)
        .map(|c| c.status.clone())
}

/// `skiff exec <id> <cmd...>` against the harness data dir; true on exit 0.
fn skiff_exec(h: &Harness, id: &str, cmd: &[&str]) -> bool {
    std::process::Command::new(&h.config.skiff_exe)
        .arg("--data-dir")
        .arg(&h.config.data_dir)
        .arg("exec")
        .arg(id)
        .args(cmd)
        .stdin(std::process::Stdio::null())
        .status()
        .expect("run skiff exec")
        .success()
}

fn ns_link(pid: i32, ns: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/{ns}"))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|e| panic!("reading /proc/{pid}/ns/{ns}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs root: real pods (namespaces, overlayfs, cgroups, CNI)"]
async fn containers_share_localhost_hostname_and_ipc() {
    let h = Harness::start().await;
    h.create_pod(
        "duo",
        json!({"containers": [
            {"name": "srv", "image": "bb:1",
             "command": ["/bin/busybox", "httpd", "-f", "-p", "127.0.0.1:8080", "-h", "/www"]},
            {"name": "cli", "image": "bb:1",
             "command": ["/bin/sh", "-c",
                "i=0; until out=$(/bin/busybox wget -q -O - http://127.0.0.1:8080/index.html); do i=$((i+1)); test $i -lt 100 || exit 7; sleep 0.1; done; echo \"GOT:$out\"; echo \"HOST:$(hostname)\"; exec sleep 3600"]},
        ]}),
    )
    .await;
    let pod = h
        .wait_pod("duo", "both running", Duration::from_secs(60), |p| {
            ["srv", "cli"].iter().all(|c| {
                container_status(p, c)
                    .and_then(|s| s.state.as_ref())
                    .is_some_and(|s| s.running.is_some())
            })
        })
        .await;
    // The client only logs after fetching the page over the pod's loopback.
    let deadline = Instant::now() + Duration::from_secs(30);
    let cli = loop {
        let cli = instance(&h, "duo", "cli").expect("cli container");
        if log_text(&cli).contains("HOST:") {
            break cli;
        }
        assert!(
            Instant::now() < deadline,
            "client never fetched the page: {:?}",
            log_text(&cli)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let log = log_text(&cli);
    assert!(log.contains("GOT:hello"), "{log}");
    assert!(log.contains("HOST:duo"), "hostname is the pod name: {log}");
    for c in ["srv", "cli"] {
        assert_eq!(
            container_status(&pod, c).map(|s| s.restart_count),
            Some(0),
            "{c}"
        );
    }
    // The server listens on 127.0.0.1 only, so it is not reachable from the host via the pod IP.
    let ip = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .expect("pod IP");
    let addr: std::net::SocketAddr = format!("{ip}:8080").parse().expect("addr");
    assert!(
        tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr))
            .await
            .map(|r| r.is_err())
            .unwrap_or(true),
        "loopback listener reachable via the pod IP"
    );
    // Same net, UTS and IPC namespaces, none of them the host's; separate mount namespaces.
    let srv = instance(&h, "duo", "srv").expect("srv container");
    let (p1, p2) = (srv.pid.expect("srv pid"), cli.pid.expect("cli pid"));
    let me = std::process::id() as i32;
    for ns in ["net", "uts", "ipc"] {
        assert_eq!(ns_link(p1, ns), ns_link(p2, ns), "{ns} namespace shared");
        assert_ne!(
            ns_link(p1, ns),
            ns_link(me, ns),
            "{ns} namespace not the host's"
        );
    }
    assert_ne!(
        ns_link(p1, "mnt"),
        ns_link(p2, "mnt"),
        "own mount namespaces"
    );
    // hostname seen from the server container too (exec joins its namespaces).
    assert!(skiff_exec(
        &h,
        &srv.id,
        &["/bin/sh", "-c", "test \"$(hostname)\" = duo"]
    ));
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs root: real pods (namespaces, overlayfs, cgroups, CNI)"]
async fn readiness_flips_both_ways() {
    let h = Harness::start().await;
    h.create_pod(
        "rdy",
        json!({"terminationGracePeriodSeconds": 1, "containers": [{"name": "c", "image": "bb:1",
               "command": ["/bin/sh", "-c", "/bin/busybox touch /tmp/ready; exec sleep 3600"],
               "readinessProbe": {"exec": {"command": ["/bin/busybox", "test", "-f", "/tmp/ready"]},
                                  "periodSeconds": 1, "failureThreshold": 1}}]}),
    )
    .await;
    let pod = h
        .wait_pod("rdy", "Ready", Duration::from_secs(60), is_ready)
        .await;
    let cs = container_status(&pod, "c").expect("status");
    let id = cs.container_id.clone().expect("container id");
    let raw = id.trim_start_matches("skiff://").to_string();
    assert_eq!(condition(&pod, "ContainersReady").as_deref(), Some("True"));

    assert!(skiff_exec(&h, &raw, &["/bin/busybox", "rm", "/tmp/ready"]));
    let pod = h
        .wait_pod("rdy", "Ready=False", Duration::from_secs(20), |p| {
            condition(p, "Ready").as_deref() == Some("False")
        })
        .await;
    assert_eq!(condition(&pod, "ContainersReady").as_deref(), Some("False"));
    let cs = container_status(&pod, "c").expect("status");
    assert!(!cs.ready);
    assert_eq!(cs.started, Some(true), "still started");
    assert!(cs.state.as_ref().is_some_and(|s| s.running.is_some()));
    assert_eq!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Running")
    );

    assert!(skiff_exec(
        &h,
        &raw,
        &["/bin/busybox", "touch", "/tmp/ready"]
    ));
    let pod = h
        .wait_pod("rdy", "Ready again", Duration::from_secs(20), is_ready)
        .await;
    assert_eq!(condition(&pod, "ContainersReady").as_deref(), Some("True"));
    let cs = container_status(&pod, "c").expect("status");
    assert!(cs.ready);
    assert_eq!(cs.restart_count, 0, "readiness never restarts");
    assert_eq!(
        cs.container_id.as_deref(),
        Some(id.as_str()),
        "same instance"
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs root: real pods (namespaces, overlayfs, cgroups, CNI)"]
async fn secret_env_and_volume() {
    let h = Harness::start().await;
    let secrets: Api<Secret> = Api::namespaced(h.client.clone(), "default");
    let sec: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"},
        // "s3cr3t-pw" and "line1\nline2" base64-encoded.
        "data": {"password": "czNjcjN0LXB3", "multi": "bGluZTEKbGluZTI="},
    }))
    .expect("secret");
    secrets
        .create(&PostParams::default(), &sec)
        .await
        .expect("create secret");
    h.create_pod(
        "secpod",
        json!({"restartPolicy": "Never", "containers": [{
            "name": "c", "image": "bb:1",
            "command": ["/bin/sh", "-c", concat!(
                "echo \"PW=[$PW]\"; echo \"FILE=[$(cat /sec/password)]\"; ",
                "echo \"MODE=$(stat -L -c %a /sec/password)\"; ",
                "echo \"ITEM=[$(cat /items/sub/token)] $(stat -L -c %a /items/sub/token)\"; ",
                "test \"$PW\" = s3cr3t-pw && test \"$(cat /sec/password)\" = s3cr3t-pw && ",
                "test \"$(cat /sec/multi)\" = \"$(printf 'line1\\nline2')\" && ",
                "test \"$(stat -L -c %a /sec/password)\" = 400 && ",
                "test \"$(stat -L -c %a /sec/multi)\" = 400 && ",
                "test \"$(cat /items/sub/token)\" = s3cr3t-pw && ",
                "test \"$(stat -L -c %a /items/sub/token)\" = 640 && ",
                "test ! -e /items/password && test ! -e /items/multi")],
            "env": [{"name": "PW", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}}],
            "volumeMounts": [{"name": "s", "mountPath": "/sec"}, {"name": "i", "mountPath": "/items"}],
        }], "volumes": [
            {"name": "s", "secret": {"secretName": "creds", "defaultMode": 0o400}},
            {"name": "i", "secret": {"secretName": "creds", "defaultMode": 0o400,
                "items": [{"key": "password", "path": "sub/token", "mode": 0o640}]}},
        ]}),
    )
    .await;
    let pod = h
        .wait_pod("secpod", "terminal phase", Duration::from_secs(60), |p| {
            matches!(
                p.status.as_ref().and_then(|s| s.phase.as_deref()),
                Some("Succeeded") | Some("Failed")
            )
        })
        .await;
    let log = instance(&h, "secpod", "c")
        .map(|i| log_text(&i))
        .unwrap_or_default();
    let term = container_status(&pod, "c")
        .and_then(|c| c.state.clone())
        .and_then(|s| s.terminated)
        .expect("terminated");
    assert_eq!(term.exit_code, 0, "{term:?}\nlog:\n{log}");
    assert!(log.contains("PW=[s3cr3t-pw]"), "{log}");
    assert!(log.contains("MODE=400"), "{log}");
    assert_eq!(
        pod.status.and_then(|s| s.phase).as_deref(),
        Some("Succeeded")
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs root: real pods (namespaces, overlayfs, cgroups, CNI)"]
async fn termination_grace_term_then_kill() {
    let h = Harness::start().await;
    let shared = h.dir.path().join("shared");
    std::fs::create_dir_all(&shared).expect("mkdir shared");
    let shared_s = std::fs::canonicalize(&shared)
        .expect("canonical")
        .to_string_lossy()
        .into_owned();
    let trapper = |name: &str| {
        json!({"name": name, "image": "bb:1",
               "command": ["/bin/sh", "-c", format!(
                   "trap 'echo {name} >> /shared/term; exit 0' TERM; echo {name} >> /shared/up; while true; do sleep 0.1; done")],
               "volumeMounts": [{"name": "sh", "mountPath": "/shared"}]})
    };
    h.create_pod(
        "polite",
        json!({"terminationGracePeriodSeconds": 30,
               "containers": [trapper("a"), trapper("b")],
               "volumes": [{"name": "sh", "hostPath": {"path": shared_s, "type": "Directory"}}]}),
    )
    .await;
    // Ignores TERM and keeps touching a heartbeat file until it is killed.
    h.create_pod(
        "stubborn",
        json!({"terminationGracePeriodSeconds": 30, "containers": [{"name": "s", "image": "bb:1",
               "command": ["/bin/sh", "-c", "trap '' TERM; while true; do echo x >> /shared/beat; sleep 0.1; done"],
               "volumeMounts": [{"name": "sh", "mountPath": "/shared"}]}],
               "volumes": [{"name": "sh", "hostPath": {"path": shared_s, "type": "Directory"}}]}),
    )
    .await;
    for p in ["polite", "stubborn"] {
        h.wait_pod(p, "Ready", Duration::from_secs(60), is_ready)
            .await;
    }
    // Both trappers installed their trap before writing "up".
    pods_support::wait_for("trappers up", Duration::from_secs(20), || {
        let up = std::fs::read_to_string(shared.join("up")).unwrap_or_default();
        async move { up.lines().count() >= 2 }
    })
    .await;
    let start = Instant::now();
    let dp = DeleteParams::default().grace_period(5);
    h.pods().delete("polite", &dp).await.expect("delete polite");
    h.pods()
        .delete("stubborn", &dp)
        .await
        .expect("delete stubborn");

    h.wait_gone("polite", Duration::from_secs(15)).await;
    let polite_gone = start.elapsed();
    let term = std::fs::read_to_string(shared.join("term")).unwrap_or_default();
    let mut got: Vec<&str> = term.lines().collect();
    got.sort();
    assert_eq!(got, ["a", "b"], "both containers got SIGTERM once");
    assert!(
        polite_gone < Duration::from_secs(4),
        "pod whose containers exit on TERM is gone before the grace period: {polite_gone:?}"
    );

    h.wait_gone("stubborn", Duration::from_secs(20)).await;
    let stubborn_gone = start.elapsed();
    assert!(
        stubborn_gone >= Duration::from_millis(4500),
        "a TERM-ignoring container is kept for the grace period: {stubborn_gone:?}"
    );
    assert!(
        stubborn_gone < Duration::from_secs(10),
        "killed after the grace period: {stubborn_gone:?}"
    );
    // It was alive past TERM (heartbeats ~grace after the delete) and is dead now.
    let beat = shared.join("beat");
    let last = std::fs::metadata(&beat)
        .and_then(|m| m.modified())
        .expect("heartbeat");
    let age = last.elapsed().unwrap_or_default();
    let alive_for = stubborn_gone.saturating_sub(age);
    assert!(
        alive_for >= Duration::from_secs(4),
        "heartbeat stopped {alive_for:?} after the delete, before the grace period ended"
    );
    let len = std::fs::metadata(&beat).map(|m| m.len()).unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        std::fs::metadata(&beat).map(|m| m.len()).unwrap_or(0),
        len,
        "SIGKILLed: no heartbeat after the pod is gone"
    );
    assert!(h.runtime().list().unwrap_or_default().is_empty());
    h.shutdown().await;
}

/// The kubelet-managed files: /etc/hosts names the pod, /etc/resolv.conf points at the node's
/// cluster DNS with the namespace's search path, and both arrive even in a read-only root
/// filesystem (which stays read-only).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs root: real pods (namespaces, overlayfs, cgroups, CNI)"]
async fn hosts_and_resolv_conf_even_on_a_read_only_root() {
    let h = Harness::start().await;
    h.create_pod(
        "etc",
        json!({"hostAliases": [{"ip": "10.9.8.7", "hostnames": ["db.example"]}],
               "containers": [{"name": "c", "image": "bb:1",
            "securityContext": {"readOnlyRootFilesystem": true},
            "command": ["/bin/sh", "-c",
                "cat /etc/hosts /etc/resolv.conf; touch /rootfs-write && echo WRITABLE || echo READONLY; exec sleep 3600"]}]}),
    )
    .await;
    let pod = h
        .wait_pod("etc", "running", Duration::from_secs(60), |p| {
            container_status(p, "c")
                .and_then(|s| s.state.as_ref())
                .is_some_and(|s| s.running.is_some())
        })
        .await;
    let ip = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .expect("pod IP");
    let deadline = Instant::now() + Duration::from_secs(30);
    let log = loop {
        let log = instance(&h, "etc", "c")
            .map(|i| log_text(&i))
            .unwrap_or_default();
        if log.contains("READONLY") || log.contains("WRITABLE") {
            break log;
        }
        assert!(Instant::now() < deadline, "no output: {log:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(
        log.contains(&format!("{ip}\tetc")),
        "pod IP and name in /etc/hosts: {log}"
    );
    assert!(log.contains("10.9.8.7\tdb.example"), "hostAliases: {log}");
    assert!(
        log.contains("search default.svc.cluster.local svc.cluster.local cluster.local"),
        "{log}"
    );
    // The nameserver is the pod's gateway: the first address of the node's pod CIDR.
    let gw = ip
        .rsplit_once('.')
        .map(|(net, _)| format!("{net}.1"))
        .expect("ip");
    assert!(log.contains(&format!("nameserver {gw}")), "{log}");
    assert!(log.contains("options ndots:5"), "{log}");
    assert!(
        log.contains("READONLY"),
        "root filesystem stays read-only: {log}"
    );
    h.shutdown().await;
}

/// `hostNetwork: true`: the pod serves on the host's network with the node's IP and hostname,
/// and resolves names through the node's own resolv.conf.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs root: real pods (namespaces, overlayfs, cgroups, CNI)"]
async fn host_network_pod_serves_on_the_node() {
    let h = Harness::start().await;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("probe port");
        l.local_addr().expect("addr").port()
    };
    h.create_pod(
        "hostnet",
        json!({"hostNetwork": true, "containers": [{"name": "c", "image": "bb:1",
            "command": ["/bin/sh", "-c", format!(
                "echo HOST:$(hostname); cat /etc/resolv.conf; exec /bin/busybox httpd -f -p 127.0.0.1:{port} -h /www")]}]}),
    )
    .await;
    let pod = h
        .wait_pod("hostnet", "running", Duration::from_secs(60), |p| {
            container_status(p, "c")
                .and_then(|s| s.state.as_ref())
                .is_some_and(|s| s.running.is_some())
        })
        .await;
    let status = pod.status.clone().unwrap_or_default();
    assert_eq!(status.pod_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(
        status.pod_ip, status.host_ip,
        "a host-network pod has the node's IP"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let body = loop {
        let got = async {
            let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()?;
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            s.write_all(b"GET /index.html HTTP/1.0\r\n\r\n")
                .await
                .ok()?;
            let mut out = String::new();
            s.read_to_string(&mut out).await.ok()?;
            Some(out)
        }
        .await;
        if let Some(b) = got {
            break b;
        }
        assert!(
            Instant::now() < deadline,
            "httpd on the host network never answered"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(body.contains("hello"), "{body}");
    let log = instance(&h, "hostnet", "c")
        .map(|i| log_text(&i))
        .unwrap_or_default();
    assert!(
        log.contains(&format!("HOST:{}", h.node)),
        "node hostname: {log}"
    );
    let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    for line in host_resolv.lines().filter(|l| l.starts_with("nameserver")) {
        assert!(
            log.contains(line),
            "node resolvers ({line}) in the pod: {log}"
        );
    }
    h.shutdown().await;
}

/// Two running instances of one container (what an agent killed mid-start can leave): the
/// newest is the pod's container, the older one is removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs root: real pods (namespaces, overlayfs, cgroups, CNI)"]
async fn duplicate_instances_are_removed() {
    let h = Harness::start().await;
    h.create_pod(
        "dup",
        json!({"containers": [{"name": "c", "image": "bb:1",
            "command": ["/bin/sh", "-c", "exec sleep 3600"]}]}),
    )
    .await;
    h.wait_pod("dup", "running", Duration::from_secs(60), |p| {
        container_status(p, "c")
            .and_then(|s| s.state.as_ref())
            .is_some_and(|s| s.running.is_some())
    })
    .await;
    let first = instance(&h, "dup", "c").expect("first instance");
    let newer = first
        .name
        .rsplit_once('_')
        .map(|(prefix, _)| format!("{prefix}_7"))
        .expect("runtime name");
    let out = std::process::Command::new(&h.config.skiff_exe)
        .arg("--data-dir")
        .arg(&h.config.data_dir)
        .args([
            "run",
            "-d",
            "--network",
            "none",
            "--name",
            &newer,
            "bb:1",
            "sleep",
            "3600",
        ])
        .output()
        .expect("skiff run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let running: Vec<ContainerInfo> = instances(&h, "dup", "c")
            .into_iter()
            .filter(|i| i.status == skiff_runtime::Status::Running)
            .collect();
        if running.len() == 1 && running[0].name == newer {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still {} running instances: {:?}",
            running.len(),
            running.iter().map(|i| &i.name).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    h.shutdown().await;
}
