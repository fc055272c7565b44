//! Volume hardening, end to end (issue 10 items 1, 2, 7, 14): the subPath symlink escape
//! (CVE-2017-1002101) run for real, subPaths that must keep working, read-only
//! ConfigMap/Secret/projected/downwardAPI volumes, secrets on tmpfs with their modes behind
//! private host directories, live ConfigMap/Secret updates, emptyDir sizeLimit and
//! ephemeral-storage eviction, size-capped memory emptyDirs, and `skiff reset` unmounting it
//! all. Real containers; need root, busybox and the CNI plugins.

mod pods_support;

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Event, Pod, Secret};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use pods_support::{container_status, wait_for, Harness};
use serde_json::json;
use skiff_runtime::{ContainerInfo, Status};

/// Runtime instances of `container` in pod `pod`, newest first.
fn instances(h: &Harness, pod: &str, container: &str) -> Vec<ContainerInfo> {
    let mut mine: Vec<(u32, ContainerInfo)> = h
        .runtime()
        .list()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|i| {
            let n = skiff_agent::pods::parse_runtime_name(&i.name)?;
            (n.pod == pod && n.container == container).then_some((n.attempt, i))
        })
        .collect();
    mine.sort_by_key(|(a, _)| std::cmp::Reverse(*a));
    mine.into_iter().map(|(_, i)| i).collect()
}

fn log_of(h: &Harness, pod: &str, container: &str) -> String {
    instances(h, pod, container)
        .first()
        .map(|i| std::fs::read_to_string(&i.log_path).unwrap_or_default())
        .unwrap_or_default()
}

fn phase(p: &Pod) -> Option<&str> {
    p.status.as_ref().and_then(|s| s.phase.as_deref())
}

fn terminal(p: &Pod) -> bool {
    matches!(phase(p), Some("Succeeded") | Some("Failed"))
}

fn pod_dir(h: &Harness, pod: &Pod) -> PathBuf {
    h.config
        .data_dir
        .join("agent/pods")
        .join(pod.metadata.uid.as_deref().expect("uid"))
}

/// Mount points below `dir` (from /proc/self/mountinfo).
fn mounts_below(dir: &Path) -> Vec<String> {
    let prefix = format!("{}/", dir.display());
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| p.starts_with(&prefix))
        .map(String::from)
        .collect()
}

async fn create_config_map(h: &Harness, name: &str, data: serde_json::Value) {
    let api: Api<ConfigMap> = Api::namespaced(h.client.clone(), "default");
    let cm: ConfigMap = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data,
    }))
    .expect("configmap");
    api.create(&PostParams::default(), &cm)
        .await
        .expect("create configmap");
}

async fn create_secret(h: &Harness, name: &str, string_data: serde_json::Value) {
    let api: Api<Secret> = Api::namespaced(h.client.clone(), "default");
    let data: serde_json::Map<String, serde_json::Value> = string_data
        .as_object()
        .expect("object")
        .iter()
        .map(|(k, v)| {
            use base64::Engine;
            let b =
                base64::engine::general_purpose::STANDARD.encode(v.as_str().expect("string value"));
            (k.clone(), json!(b))
        })
        .collect();
    let s: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "data": data,
    }))
    .expect("secret");
    api.create(&PostParams::default(), &s)
        .await
        .expect("create secret");
}

/// The exploit of issue 10 item 1: an init container plants `escape -> /` (and a relative
/// `up -> ../../..` chain) in an emptyDir; app containers mount it with `subPath: escape`
/// and `subPath: up/etc`. Neither may start: CreateContainerConfigError with the kubelet's
/// message, no runtime container, and no mount of anything outside the volume.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs root: real pods (namespaces, overlayfs, cgroups, CNI)"]
async fn subpath_symlink_escape_is_refused() {
    let h = Harness::start().await;
    // A host file the escape would expose.
    let marker = h.dir.path().join("host-marker");
    std::fs::write(&marker, "host secret").expect("marker");
    let rel = "../../../../../../../../../../../../../../../..";
    let created = h.dir.path().join("created-through-the-link");
    h.create_pod(
        "escape",
        json!({"restartPolicy": "Never",
            "initContainers": [{"name": "plant", "image": "bb:1", "command": ["/bin/sh", "-c",
                format!("/bin/busybox ln -s / /vol/escape && /bin/busybox ln -s {rel} /vol/up")],
                "volumeMounts": [{"name": "vol", "mountPath": "/vol"}]}],
            "containers": [
                {"name": "app", "image": "bb:1",
                 "command": ["/bin/sh", "-c", format!("cat /host{}; sleep 3600", marker.display())],
                 "volumeMounts": [{"name": "vol", "mountPath": "/host", "subPath": "escape"}]},
                {"name": "app2", "image": "bb:1",
                 "command": ["/bin/sh", "-c", "cat /hostetc/shadow; sleep 3600"],
                 "volumeMounts": [{"name": "vol", "mountPath": "/hostetc", "subPath": "up/etc"}]},
                // A missing directory behind the link: must not be created on the host.
                {"name": "app3", "image": "bb:1", "command": ["/bin/sleep", "3600"],
                 "volumeMounts": [{"name": "vol", "mountPath": "/x",
                                   "subPath": format!("escape{}", created.display())}]},
            ],
            "volumes": [{"name": "vol", "emptyDir": {}}]}),
    )
    .await;
    let pod = h
        .wait_pod(
            "escape",
            "CreateContainerConfigError on every app",
            Duration::from_secs(60),
            |p| {
                ["app", "app2", "app3"].iter().all(|c| {
                    container_status(p, c)
                        .and_then(|s| s.state.as_ref())
                        .and_then(|s| s.waiting.as_ref())
                        .is_some_and(|w| w.reason.as_deref() == Some("CreateContainerConfigError"))
                })
            },
        )
        .await;
    for c in ["app", "app2", "app3"] {
        let w = container_status(&pod, c)
            .and_then(|s| s.state.clone())
            .and_then(|s| s.waiting)
            .expect("waiting");
        assert_eq!(
            w.message.as_deref(),
            Some(
                format!("failed to prepare subPath for volumeMount \"vol\" of container \"{c}\"")
                    .as_str()
            ),
        );
    }
    // A few more sync rounds: still nothing started, nothing of the host mounted.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for c in ["app", "app2", "app3"] {
        assert!(instances(&h, "escape", c).is_empty(), "{c} was started");
    }
    let dir = pod_dir(&h, &pod);
    let host_root = std::fs::metadata("/").expect("stat /");
    let host_etc = std::fs::metadata("/etc").expect("stat /etc");
    for m in mounts_below(&dir) {
        let md = std::fs::metadata(&m).expect("stat mount");
        assert!(
            (md.dev(), md.ino()) != (host_root.dev(), host_root.ino())
                && (md.dev(), md.ino()) != (host_etc.dev(), host_etc.ino()),
            "the host's / or /etc is mounted at {m}"
        );
    }
    // The agent logged an event with the same message.
    let events: Api<Event> = Api::namespaced(h.client.clone(), "default");
    wait_for("the Failed event", Duration::from_secs(10), || {
        let events = events.clone();
        async move {
            events
                .list(&ListParams::default())
                .await
                .map(|l| {
                    l.items.iter().any(|e| {
                        e.message.as_deref().is_some_and(|m| {
                            m.contains("failed to prepare subPath for volumeMount \"vol\"")
                        })
                    })
                })
                .unwrap_or(false)
        }
    })
    .await;
    assert_eq!(
        std::fs::read_to_string(&marker).expect("marker"),
        "host secret"
    );
    assert!(
        !created.exists(),
        "the agent created a host directory through the link"
    );
    h.shutdown().await;
}

/// subPaths that stay inside the volume keep working: a directory, a single file, a missing
/// nested directory (created), an in-volume relative symlink, and a ConfigMap key. Writes
/// through a directory subPath land in the volume.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs root: real pods (namespaces, overlayfs, cgroups, CNI)"]
async fn subpath_dirs_and_files_work() {
    let h = Harness::start().await;
    create_config_map(&h, "subcm", json!({"app.conf": "port=80"})).await;
    h.create_pod(
        "subok",
        json!({"restartPolicy": "Never",
            "initContainers": [{"name": "prep", "image": "bb:1", "command": ["/bin/sh", "-c",
                concat!("/bin/busybox mkdir -p /vol/dir && echo x > /vol/dir/f && ",
                        "echo filedata > /vol/file && /bin/busybox ln -s dir /vol/link")],
                "volumeMounts": [{"name": "vol", "mountPath": "/vol"}]}],
            "containers": [{"name": "app", "image": "bb:1", "command": ["/bin/sh", "-c",
                concat!("test \"$(cat /d/f)\" = x && test \"$(cat /f)\" = filedata && ",
                        "test \"$(cat /l/f)\" = x && touch /n/z && echo y > /d/g && ",
                        "test \"$(cat /etc/app.conf)\" = port=80 && echo ALL-OK")],
                "volumeMounts": [
                    {"name": "vol", "mountPath": "/d", "subPath": "dir"},
                    {"name": "vol", "mountPath": "/f", "subPath": "file"},
                    {"name": "vol", "mountPath": "/l", "subPath": "link"},
                    {"name": "vol", "mountPath": "/n", "subPath": "new/deeper"},
                    {"name": "cm", "mountPath": "/etc/app.conf", "subPath": "app.conf"},
                ]}],
            "volumes": [{"name": "vol", "emptyDir": {}}, {"name": "cm", "configMap": {"name": "subcm"}}]}),
    )
    .await;
    let pod = h
        .wait_pod("subok", "terminal phase", Duration::from_secs(60), terminal)
        .await;
    let log = log_of(&h, "subok", "app");
    assert_eq!(phase(&pod), Some("Succeeded"), "{:#?}\n{log}", pod.status);
    assert!(log.contains("ALL-OK"), "{log}");
    let vol = pod_dir(&h, &pod).join("volumes/kubernetes.io~empty-dir/vol");
    assert_eq!(
        std::fs::read_to_string(vol.join("dir/g")).expect("g"),
        "y\n"
    );
    assert!(vol.join("new/deeper/z").exists());
    // The staging mounts are the kubelet's layout.
    let staging = pod_dir(&h, &pod).join("volume-subpaths/vol/app");
    assert!(
        mounts_below(&staging).len() >= 4,
        "{:?}",
        mounts_below(&staging)
    );
    h.shutdown().await;
}

/// ConfigMap, Secret, projected and downwardAPI volumes are read-only in the container even
/// when the volumeMount does not say so: no write, no delete, no planted link.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs root: real pods (namespaces, overlayfs, cgroups, CNI)"]
async fn config_volumes_are_read_only() {
    let h = Harness::start().await;
    create_config_map(&h, "rocm", json!({"k": "v"})).await;
    create_secret(&h, "rosec", json!({"k": "v"})).await;
    let mut script = String::new();
    for d in ["/cm", "/sec", "/proj", "/dapi"] {
        script.push_str(&format!(
            "if echo x > {d}/new 2>>/tmp/err; then echo WROTE {d}; fi; \
             if rm -f {d}/k 2>>/tmp/err && test ! -e {d}/k; then echo REMOVED {d}; fi; \
             if /bin/busybox ln -s / {d}/evil 2>>/tmp/err; then echo LINKED {d}; fi; "
        ));
    }
    script.push_str("cat /tmp/err; echo DONE");
    h.create_pod(
        "ro",
        json!({"restartPolicy": "Never", "containers": [{"name": "c", "image": "bb:1",
            "command": ["/bin/sh", "-c", script],
            "volumeMounts": [
                {"name": "cm", "mountPath": "/cm", "readOnly": false},
                {"name": "sec", "mountPath": "/sec"},
                {"name": "proj", "mountPath": "/proj"},
                {"name": "dapi", "mountPath": "/dapi"},
            ]}],
            "volumes": [
                {"name": "cm", "configMap": {"name": "rocm"}},
                {"name": "sec", "secret": {"secretName": "rosec"}},
                {"name": "proj", "projected": {"sources": [{"configMap": {"name": "rocm"}}, {"secret": {"name": "rosec", "items": [{"key": "k", "path": "s"}]}}]}},
                {"name": "dapi", "downwardAPI": {"items": [{"path": "k", "fieldRef": {"fieldPath": "metadata.name"}}]}},
            ]}),
    )
    .await;
    let pod = h
        .wait_pod("ro", "terminal phase", Duration::from_secs(60), terminal)
        .await;
    let log = log_of(&h, "ro", "c");
    assert_eq!(phase(&pod), Some("Succeeded"), "{log}");
    assert!(log.contains("DONE"), "{log}");
    for bad in ["WROTE", "REMOVED", "LINKED"] {
        assert!(!log.contains(bad), "{bad}:\n{log}");
    }
    assert!(log.contains("Read-only file system"), "{log}");
    h.shutdown().await;
}

/// A secret volume lives on tmpfs (statfs magic), with the asked-for modes, in a directory
/// another local user cannot read; the tmpfs goes with the pod.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs root: real pods (namespaces, overlayfs, cgroups, CNI)"]
async fn secret_volume_on_tmpfs_with_modes_and_private_dirs() {
    const TMPFS_MAGIC: i64 = 0x0102_1994;
    let h = Harness::start().await;
    create_secret(&h, "tmpsec", json!({"password": "pw", "token": "tk"})).await;
    h.create_pod(
        "tmpsec",
        json!({"containers": [{"name": "c", "image": "bb:1", "command": ["/bin/sleep", "3600"],
            "volumeMounts": [{"name": "s", "mountPath": "/s"}]}],
            "volumes": [{"name": "s", "secret": {"secretName": "tmpsec", "defaultMode": 0o440,
                "items": [{"key": "password", "path": "password"},
                          {"key": "token", "path": "token", "mode": 0o400}]}}]}),
    )
    .await;
    let pod = h
        .wait_pod("tmpsec", "Running", Duration::from_secs(60), |p| {
            phase(p) == Some("Running")
        })
        .await;
    let dir = pod_dir(&h, &pod);
    let vol = dir.join("volumes/kubernetes.io~secret/s");
    let fs = nix::sys::statfs::statfs(&vol).expect("statfs");
    assert_eq!(
        fs.filesystem_type().0 as i64,
        TMPFS_MAGIC,
        "secret volume not on tmpfs"
    );
    let pw = vol.join("password");
    assert_eq!(std::fs::read_to_string(&pw).expect("read"), "pw");
    assert_eq!(std::fs::metadata(&pw).expect("stat").mode() & 0o7777, 0o440);
    assert_eq!(
        std::fs::metadata(vol.join("token")).expect("stat").mode() & 0o7777,
        0o400
    );
    // Host directories: agent/pods 0700, the pod's 0750, neither world-readable.
    let pods_mode = std::fs::metadata(dir.parent().expect("parent"))
        .expect("stat")
        .mode();
    assert_eq!(pods_mode & 0o777, 0o700);
    assert_eq!(std::fs::metadata(&dir).expect("stat").mode() & 0o007, 0);
    // Another uid cannot read the secret or list the pod dir.
    for (cmd, arg) in [("/bin/cat", &pw), ("/bin/ls", &dir)] {
        let out = std::process::Command::new(cmd)
            .arg(arg)
            .uid(65534)
            .gid(65534)
            .output()
            .expect("run as nobody");
        assert!(
            !out.status.success()
                && String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
            "{cmd} {} as uid 65534: {:?}",
            arg.display(),
            out
        );
    }
    h.pods()
        .delete(
            "tmpsec",
            &kube::api::DeleteParams::default().grace_period(1),
        )
        .await
        .expect("delete");
    h.wait_gone("tmpsec", Duration::from_secs(60)).await;
    assert!(mounts_below(&dir).is_empty(), "{:?}", mounts_below(&dir));
    assert!(!dir.exists());
    h.shutdown().await;
}

/// A running pod sees ConfigMap and Secret changes (a key changed, one added, one removed)
/// within the sync period; a subPath mount of a key keeps its old content, as upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs root: real pods (namespaces, overlayfs, cgroups, CNI)"]
async fn config_map_and_secret_updates_reach_running_pods() {
    let h = Harness::start_with(|c| c.sync_frequency = Duration::from_secs(2)).await;
    create_config_map(&h, "live", json!({"a": "1", "b": "2"})).await;
    create_secret(&h, "livesec", json!({"x": "old"})).await;
    let script = concat!(
        "while true; do echo \"A=$(cat /cm/a) B=$(cat /cm/b 2>/dev/null || echo none) ",
        "C=$(cat /cm/c 2>/dev/null || echo none) SUB=$(cat /sub-a) X=$(cat /sec/x) ",
        "P=$(cat /proj/a)\"; sleep 0.3; done"
    );
    h.create_pod(
        "live",
        json!({"containers": [{"name": "c", "image": "bb:1", "command": ["/bin/sh", "-c", script],
            "volumeMounts": [
                {"name": "cm", "mountPath": "/cm"},
                {"name": "cm", "mountPath": "/sub-a", "subPath": "a"},
                {"name": "sec", "mountPath": "/sec"},
                {"name": "proj", "mountPath": "/proj"},
            ]}],
            "volumes": [
                {"name": "cm", "configMap": {"name": "live"}},
                {"name": "sec", "secret": {"secretName": "livesec"}},
                {"name": "proj", "projected": {"sources": [{"configMap": {"name": "live", "optional": true}}]}},
            ]}),
    )
    .await;
    let before = "A=1 B=2 C=none SUB=1 X=old P=1";
    wait_for("the first content", Duration::from_secs(60), || async {
        log_of(&h, "live", "c").contains(before)
    })
    .await;
    let cms: Api<ConfigMap> = Api::namespaced(h.client.clone(), "default");
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "live"},
                    "data": {"a": "10", "c": "3"}});
    cms.replace(
        "live",
        &PostParams::default(),
        &serde_json::from_value(cm).expect("cm"),
    )
    .await
    .expect("replace configmap");
    let secrets: Api<Secret> = Api::namespaced(h.client.clone(), "default");
    secrets
        .patch(
            "livesec",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"x": "bmV3"}})),
        )
        .await
        .expect("patch secret");
    let after = "A=10 B=none C=3 SUB=1 X=new P=10";
    let started = std::time::Instant::now();
    wait_for(
        "the update in the running pod",
        Duration::from_secs(20),
        || async { log_of(&h, "live", "c").contains(after) },
    )
    .await;
    eprintln!("update visible after {:?}", started.elapsed());
    // Same container instance: updated in place, not restarted.
    assert_eq!(instances(&h, "live", "c").len(), 1);
    h.shutdown().await;
}

/// Item 14: a pod writing 200 MB into a 10Mi emptyDir is evicted (Failed, Evicted, the
/// eviction manager's message, containers killed, an Evicted event); so is a container over
/// its ephemeral-storage limit; a memory emptyDir cannot grow past its cap (ENOSPC).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs root: real pods (namespaces, overlayfs, cgroups, CNI)"]
async fn storage_limits_evict_and_memory_empty_dir_is_capped() {
    let h = Harness::start_with(|c| c.housekeeping_interval = Duration::from_secs(2)).await;
    h.create_pod(
        "fill",
        json!({"containers": [{"name": "c", "image": "bb:1", "command": ["/bin/sh", "-c",
            "dd if=/dev/zero of=/data/big bs=1M count=200; echo WROTE; sleep 3600"],
            "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
            "volumes": [{"name": "data", "emptyDir": {"sizeLimit": "10Mi"}}]}),
    )
    .await;
    h.create_pod(
        "layer",
        json!({"containers": [{"name": "w", "image": "bb:1", "command": ["/bin/sh", "-c",
            "dd if=/dev/zero of=/big bs=1M count=50; sleep 3600"],
            "resources": {"limits": {"ephemeral-storage": "10Mi"}}}]}),
    )
    .await;
    // Two containers: the pod's total limit (10Mi + 1Gi) holds, the first one's does not.
    h.create_pod(
        "layer2",
        json!({"containers": [
            {"name": "w1", "image": "bb:1", "command": ["/bin/sh", "-c",
                "dd if=/dev/zero of=/big bs=1M count=50; sleep 3600"],
             "resources": {"limits": {"ephemeral-storage": "10Mi"}}},
            {"name": "w2", "image": "bb:1", "command": ["/bin/sleep", "3600"],
             "resources": {"limits": {"ephemeral-storage": "1Gi"}}}]}),
    )
    .await;
    h.create_pod(
        "mem",
        json!({"restartPolicy": "Never", "containers": [{"name": "c", "image": "bb:1",
            "command": ["/bin/sh", "-c",
                "if dd if=/dev/zero of=/m/big bs=1M count=20 2>/tmp/err; then echo FILLED; fi; cat /tmp/err; echo SIZE=$(stat -c %s /m/big)"],
            "volumeMounts": [{"name": "m", "mountPath": "/m"}]}],
            "volumes": [{"name": "m", "emptyDir": {"medium": "Memory", "sizeLimit": "10Mi"}}]}),
    )
    .await;
    for (name, message) in [
        (
            "fill",
            "Usage of EmptyDir volume \"data\" exceeds the limit \"10Mi\". ",
        ),
        // One container: upstream's pod-level check (same total) fires first.
        (
            "layer",
            "Pod ephemeral local storage usage exceeds the total limit of containers 10Mi. ",
        ),
        (
            "layer2",
            "Container w1 exceeded its local ephemeral storage limit \"10Mi\". ",
        ),
    ] {
        let pod = h
            .wait_pod(name, "eviction", Duration::from_secs(90), |p| {
                phase(p) == Some("Failed")
            })
            .await;
        let st = pod.status.clone().expect("status");
        assert_eq!(st.reason.as_deref(), Some("Evicted"), "{st:#?}");
        assert_eq!(st.message.as_deref(), Some(message));
        let names: Vec<String> = pod
            .spec
            .as_ref()
            .expect("spec")
            .containers
            .iter()
            .map(|c| c.name.clone())
            .collect();
        // Bounded generously: with the whole suite running, a kill can wait on a loaded machine.
        wait_for(
            "the containers to be killed",
            Duration::from_secs(60),
            || async {
                names.iter().all(|c| {
                    instances(&h, name, c)
                        .iter()
                        .all(|i| i.status != Status::Running)
                })
            },
        )
        .await;
        // Not restarted afterwards.
        tokio::time::sleep(Duration::from_secs(3)).await;
        for c in &names {
            assert_eq!(instances(&h, name, c).len(), 1, "{name}/{c} restarted");
        }
        let events: Api<Event> = Api::namespaced(h.client.clone(), "default");
        let evicted = events
            .list(&ListParams::default())
            .await
            .expect("events")
            .items
            .into_iter()
            .any(|e| {
                e.reason.as_deref() == Some("Evicted")
                    && e.involved_object.name.as_deref() == Some(name)
                    && e.message.as_deref() == Some(message)
            });
        assert!(evicted, "no Evicted event for {name}");
    }
    let pod = h
        .wait_pod("mem", "terminal phase", Duration::from_secs(60), terminal)
        .await;
    let log = log_of(&h, "mem", "c");
    assert!(!log.contains("FILLED"), "{log}");
    assert!(log.contains("No space left on device"), "{log}");
    let size: u64 = log
        .split("SIZE=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .expect("size in log");
    assert!(size <= 10 << 20, "{size} bytes in a 10Mi memory emptyDir");
    assert_eq!(phase(&pod), Some("Succeeded"));
    h.shutdown().await;
}

/// `skiff reset` unmounts subPath staging mounts and secret/memory tmpfs mounts and removes
/// the pods' directories, whatever the agent left.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs root: real pods (namespaces, overlayfs, cgroups, CNI)"]
async fn reset_unmounts_pod_volumes() {
    let mut h = Harness::start().await;
    create_secret(&h, "rsec", json!({"k": "v"})).await;
    h.create_pod(
        "rst",
        json!({"containers": [{"name": "c", "image": "bb:1", "command": ["/bin/sleep", "3600"],
        "volumeMounts": [
            {"name": "s", "mountPath": "/s"},
            {"name": "e", "mountPath": "/e", "subPath": "x"},
            {"name": "m", "mountPath": "/m"},
        ]}],
        "volumes": [
            {"name": "s", "secret": {"secretName": "rsec"}},
            {"name": "e", "emptyDir": {}},
            {"name": "m", "emptyDir": {"medium": "Memory"}},
        ]}),
    )
    .await;
    let pod = h
        .wait_pod("rst", "Running", Duration::from_secs(60), |p| {
            phase(p) == Some("Running")
        })
        .await;
    let dir = pod_dir(&h, &pod);
    assert!(mounts_below(&dir).len() >= 3, "{:?}", mounts_below(&dir));
    h.stop_agent().await;
    let ok = std::process::Command::new(&h.config.skiff_exe)
        .arg("--data-dir")
        .arg(&h.config.data_dir)
        .arg("reset")
        .status()
        .expect("skiff reset")
        .success();
    assert!(ok, "skiff reset failed");
    assert!(
        mounts_below(&h.config.data_dir).is_empty(),
        "{:?}",
        mounts_below(&h.config.data_dir)
    );
    assert!(!dir.exists());
    h.start_agent().await;
    h.shutdown().await;
}
