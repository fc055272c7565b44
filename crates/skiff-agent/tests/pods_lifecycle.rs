//! End-to-end pod tests: a real agent (containers, sandboxes) against an in-process API
//! server. Need root, busybox and the CNI plugins.

mod pods_support;

use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, PostParams};
use pods_support::{container_status, is_ready, Harness};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs root: real pods (namespaces, overlayfs, cgroups, CNI)"]
async fn pod_runs_becomes_ready_and_is_reachable() {
    let h = Harness::start().await;
    h.create_pod(
        "web",
        json!({"containers": [{
            "name": "web", "image": "bb:1",
            "command": ["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/www"],
            "ports": [{"containerPort": 8080}],
            "readinessProbe": {"httpGet": {"path": "/index.html", "port": 8080}, "periodSeconds": 1},
        }]}),
    )
    .await;
    let pod = h
        .wait_pod("web", "Ready", Duration::from_secs(60), is_ready)
        .await;
    let status = pod.status.clone().unwrap_or_default();
    assert_eq!(status.phase.as_deref(), Some("Running"));
    assert_eq!(status.qos_class.as_deref(), Some("BestEffort"));
    let cs = container_status(&pod, "web").expect("container status");
    assert!(cs.ready);
    assert_eq!(cs.restart_count, 0);
    assert!(cs
        .container_id
        .as_deref()
        .is_some_and(|c| c.starts_with("skiff://")));
    let ip = status.pod_ip.expect("pod IP");
    let addr: std::net::SocketAddr = format!("{ip}:8080").parse().expect("addr");
    tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to the pod from the host");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs root: real pods (namespaces, overlayfs, cgroups, CNI)"]
async fn env_configmap_and_volume() {
    let h = Harness::start().await;
    let cms: Api<ConfigMap> = Api::namespaced(h.client.clone(), "default");
    let cm: ConfigMap = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "cfg"}, "data": {"greeting": "hi", "file.txt": "from-volume"},
    }))
    .expect("cm");
    cms.create(&PostParams::default(), &cm)
        .await
        .expect("create cm");
    h.create_pod(
        "envpod",
        json!({"restartPolicy": "Never", "containers": [{
            "name": "c", "image": "bb:1",
            "command": ["/bin/sh", "-c",
                "test \"$G\" = hi && test \"$N\" = envpod && test \"$X\" = hi-envpod && test \"$(cat /cfg/file.txt)\" = from-volume && test \"$(hostname)\" = envpod"],
            "env": [
                {"name": "G", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "greeting"}}},
                {"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "X", "value": "$(G)-$(N)"},
            ],
            "volumeMounts": [{"name": "v", "mountPath": "/cfg"}],
        }], "volumes": [{"name": "v", "configMap": {"name": "cfg"}}]}),
    )
    .await;
    let pod = h
        .wait_pod("envpod", "terminal phase", Duration::from_secs(60), |p| {
            matches!(
                p.status.as_ref().and_then(|s| s.phase.as_deref()),
                Some("Succeeded") | Some("Failed")
            )
        })
        .await;
    let cs = container_status(&pod, "c").expect("status");
    let term = cs
        .state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .expect("terminated");
    assert_eq!(term.exit_code, 0, "{term:?}");
    assert_eq!(term.reason.as_deref(), Some("Completed"));
    assert_eq!(
        pod.status.and_then(|s| s.phase).as_deref(),
        Some("Succeeded")
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs root: real pods (namespaces, overlayfs, cgroups, CNI)"]
async fn crash_loop_back_off() {
    let h = Harness::start().await;
    h.create_pod(
        "crash",
        json!({"containers": [{"name": "c", "image": "bb:1", "command": ["/bin/sh", "-c", "exit 3"]}]}),
    )
    .await;
    let pod = h
        .wait_pod("crash", "CrashLoopBackOff", Duration::from_secs(60), |p| {
            container_status(p, "c").is_some_and(|c| {
                c.restart_count >= 1
                    && c.state
                        .as_ref()
                        .and_then(|s| s.waiting.as_ref())
                        .and_then(|w| w.reason.as_deref())
                        == Some("CrashLoopBackOff")
            })
        })
        .await;
    let cs = container_status(&pod, "c").expect("status");
    let last = cs
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .expect("last state");
    assert_eq!(last.exit_code, 3);
    assert_eq!(last.reason.as_deref(), Some("Error"));
    let msg = cs
        .state
        .as_ref()
        .and_then(|s| s.waiting.as_ref())
        .and_then(|w| w.message.clone())
        .unwrap_or_default();
    assert!(
        msg.starts_with("back-off 10s restarting failed container=c pod=crash_default("),
        "{msg}"
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs root: real pods (namespaces, overlayfs, cgroups, CNI)"]
async fn graceful_delete_and_agent_restart_keeps_containers() {
    let mut h = Harness::start().await;
    h.create_pod(
        "keep",
        json!({"terminationGracePeriodSeconds": 20, "containers": [{"name": "c", "image": "bb:1",
               "command": ["/bin/sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.2; done"]}]}),
    )
    .await;
    let pod = h
        .wait_pod("keep", "Ready", Duration::from_secs(60), is_ready)
        .await;
    let id = container_status(&pod, "c").and_then(|c| c.container_id.clone());
    h.stop_agent().await;
    h.start_agent().await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let pod = h
        .wait_pod("keep", "Ready", Duration::from_secs(30), is_ready)
        .await;
    let cs = container_status(&pod, "c").expect("status");
    assert_eq!(cs.container_id, id, "container re-adopted, not restarted");
    assert_eq!(cs.restart_count, 0);
    let started = std::time::Instant::now();
    h.pods()
        .delete("keep", &DeleteParams::default().grace_period(20))
        .await
        .expect("delete");
    h.wait_gone("keep", Duration::from_secs(30)).await;
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "SIGTERM was handled"
    );
    h.shutdown().await;
}

/// `activeDeadlineSeconds`: a pod still running past it fails with reason DeadlineExceeded and
/// its container is stopped (upstream's node conformance "pods should be terminated when
/// deadline exceeded").
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs root: real pods (namespaces, overlayfs, cgroups, CNI)"]
async fn active_deadline_fails_the_pod() {
    let h = Harness::start().await;
    h.create_pod(
        "deadline",
        json!({"activeDeadlineSeconds": 3, "terminationGracePeriodSeconds": 1, "containers": [{
            "name": "c", "image": "bb:1", "command": ["/bin/sleep", "3600"],
        }]}),
    )
    .await;
    let pod = h
        .wait_pod("deadline", "Failed", Duration::from_secs(60), |p| {
            p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed")
        })
        .await;
    let status = pod.status.clone().unwrap_or_default();
    assert_eq!(status.reason.as_deref(), Some("DeadlineExceeded"));
    assert_eq!(
        status.message.as_deref(),
        Some("Pod was active on the node longer than the specified deadline")
    );
    let h2 = &h;
    pods_support::wait_for(
        "container stopped",
        Duration::from_secs(30),
        || async move {
            pods_support::instance(h2, "deadline", "c")
                .is_some_and(|i| i.status != skiff_runtime::Status::Running)
        },
    )
    .await;
    h.shutdown().await;
}

/// `fsGroup`: volumes belong to the group (secret and configMap files included, with group
/// read), directories are setgid so new files inherit it, and the container runs with it as
/// a supplementary group.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs root: real pods (namespaces, overlayfs, cgroups, CNI)"]
async fn fs_group_owns_volumes() {
    let h = Harness::start().await;
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(h.client.clone(), "default");
    let s = serde_json::from_value(json!({"metadata": {"name": "s"}, "stringData": {"key": "v"}}))
        .expect("secret");
    secrets
        .create(&PostParams::default(), &s)
        .await
        .expect("create secret");
    let script = [
        "set -e",
        "test \"$(stat -c '%g %a' /sec/..data/key)\" = '1234 440'",
        "cat /sec/key",
        "test \"$(stat -c '%g' /ed)\" = 1234",
        "stat -c '%A' /ed | grep -q '^drwxrwsrwx$'",
        "touch /ed/new",
        "test \"$(stat -c '%g' /ed/new)\" = 1234",
        "id -G | tr ' ' '\\n' | grep -qx 1234",
    ]
    .join("\n");
    h.create_pod(
        "fsgroup",
        json!({"restartPolicy": "Never",
            "securityContext": {"runAsUser": 1000, "runAsGroup": 3000, "fsGroup": 1234},
            "containers": [{
                "name": "c", "image": "bb:1", "command": ["/bin/sh", "-c", script],
                "volumeMounts": [{"name": "sec", "mountPath": "/sec"}, {"name": "ed", "mountPath": "/ed"}],
            }],
            "volumes": [
                {"name": "sec", "secret": {"secretName": "s", "defaultMode": 0o440}},
                {"name": "ed", "emptyDir": {}},
            ]}),
    )
    .await;
    let pod = h
        .wait_pod("fsgroup", "terminal phase", Duration::from_secs(60), |p| {
            matches!(
                p.status.as_ref().and_then(|s| s.phase.as_deref()),
                Some("Succeeded") | Some("Failed")
            )
        })
        .await;
    let logs = pods_support::instance(&h, "fsgroup", "c")
        .map(|i| pods_support::log_text(&i))
        .unwrap_or_default();
    assert_eq!(
        pod.status.and_then(|s| s.phase).as_deref(),
        Some("Succeeded"),
        "{logs}"
    );
    h.shutdown().await;
}
