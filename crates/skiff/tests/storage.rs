//! Persistent storage on a real cluster (root): a claim of the default `local-path` class is
//! provisioned on the node when its first pod is scheduled, a pod writes to it, a second pod on
//! the same claim reads the data back, and deleting the claim deletes the volume and its
//! directory under the node's storage root.

mod common;

use std::path::Path;
use std::time::Duration;

use common::cluster::{build_web_images, Cluster};

fn pod(name: &str, script: &str, read_only: bool) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: web:v1
    command: ["/bin/sh", "-c", "{script}"]
    volumeMounts:
    - name: data
      mountPath: /data
  volumes:
  - name: data
    persistentVolumeClaim:
      claimName: data
      readOnly: {read_only}
"#
    )
}

fn apply(c: &Cluster, name: &str, yaml: &str) {
    let path = c.dir.path().join(format!("{name}.yaml"));
    std::fs::write(&path, yaml).expect("manifest");
    c.ok(&["apply", "-f", path.to_str().expect("utf8")]);
}

#[test]
#[ignore = "needs root: a cluster whose agent runs pods (namespaces, cgroups, CNI, nftables)"]
fn data_on_a_claim_outlives_its_pods_and_goes_with_the_claim() {
    assert!(nix::unistd::geteuid().is_root(), "cluster tests need root");
    let c = Cluster::start();
    build_web_images(&c);
    let classes = c.eventually(
        &["get", "storageclass"],
        "local-path (default)",
        Duration::from_secs(30),
    );
    assert!(
        classes.contains("skiff.dev/local-path") && classes.contains("WaitForFirstConsumer"),
        "{classes}"
    );

    apply(
        &c,
        "claim",
        r#"apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: data
spec:
  accessModes: [ReadWriteOnce]
  resources:
    requests:
      storage: 64Mi
"#,
    );
    let pending = c.ok(&["get", "pvc", "data", "--no-headers"]);
    assert!(
        pending.contains("Pending") && pending.contains("local-path"),
        "{pending}"
    );

    apply(
        &c,
        "writer",
        &pod("writer", "echo kept-across-pods > /data/file", false),
    );
    let timeout = Duration::from_secs(120);
    c.eventually(
        &["get", "pod", "writer", "-o", "jsonpath={.status.phase}"],
        "Succeeded",
        timeout,
    );
    let bound = c.ok(&["get", "pvc", "data", "--no-headers"]);
    assert!(
        bound.contains("Bound") && bound.contains("64Mi") && bound.contains("RWO"),
        "{bound}"
    );
    let pv = c.ok(&["get", "pvc", "data", "-o", "jsonpath={.spec.volumeName}"]);
    let dir = c.ok(&[
        "get",
        "pv",
        pv.trim(),
        "-o",
        "jsonpath={.spec.hostPath.path}",
    ]);
    let dir = Path::new(dir.trim()).to_path_buf();
    assert!(
        dir.starts_with(c.data_dir().join("storage")),
        "{}",
        dir.display()
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("file")).expect("file on the node"),
        "kept-across-pods\n"
    );

    c.ok(&["delete", "pod", "writer", "--wait=true"]);
    // A read-only mount of the same claim: reads work, writes fail.
    apply(
        &c,
        "reader",
        &pod(
            "reader",
            "cat /data/file; echo x > /data/other || echo write-refused; sleep 3600",
            true,
        ),
    );
    let logs = c.eventually(&["logs", "reader"], "write-refused", timeout);
    assert!(
        logs.contains("kept-across-pods") && logs.contains("write-refused"),
        "{logs}"
    );

    // The claim stays while a pod uses it (pvc-protection), then goes with its volume.
    c.ok(&["delete", "pvc", "data", "--wait=false"]);
    let terminating = c.ok(&["get", "pvc", "data", "--no-headers"]);
    assert!(terminating.contains("Terminating"), "{terminating}");
    c.ok(&["delete", "pod", "reader", "--grace-period=1", "--wait=true"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (_, out, _) = c.kubectl(&["get", "pv", "-o", "name"]);
        if out.trim().is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "volume not deleted: {out}\n{}",
            c.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(!dir.exists(), "{} not removed", dir.display());
}

#[test]
#[ignore = "needs root: a cluster whose agent runs pods (namespaces, cgroups, CNI, nftables)"]
fn a_pod_waits_for_its_claim_to_bind_and_retain_keeps_static_data() {
    assert!(nix::unistd::geteuid().is_root(), "cluster tests need root");
    let c = Cluster::start();
    build_web_images(&c);
    let node = c.eventually(
        &["get", "nodes", "-o", "name"],
        "node/",
        Duration::from_secs(30),
    );
    let node = node.trim().trim_start_matches("node/").to_string();
    apply(
        &c,
        "static-claim",
        r#"apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: static
spec:
  storageClassName: ""
  accessModes: [ReadWriteOnce]
  resources:
    requests:
      storage: 16Mi
"#,
    );
    // Placed on the node directly (no scheduler): the agent waits for the claim to bind.
    apply(
        &c,
        "waiter",
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: waiter
spec:
  nodeName: {node}
  restartPolicy: Never
  containers:
  - name: c
    image: web:v1
    command: ["/bin/sh", "-c", "cat /data/hello"]
    volumeMounts:
    - name: data
      mountPath: /data
  volumes:
  - name: data
    persistentVolumeClaim:
      claimName: static
"#
        ),
    );
    let timeout = Duration::from_secs(120);
    c.eventually(
        &[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=waiter",
        ],
        "PVC is not bound",
        timeout,
    );
    let waiting = c.ok(&["get", "pod", "waiter", "--no-headers"]);
    assert!(waiting.contains("ContainerCreating"), "{waiting}");

    let dir = c.dir.path().join("static-volume");
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("hello"), "static data\n").expect("file");
    apply(
        &c,
        "static-pv",
        &format!(
            r#"apiVersion: v1
kind: PersistentVolume
metadata:
  name: static-pv
spec:
  storageClassName: ""
  capacity:
    storage: 1Gi
  accessModes: [ReadWriteOnce]
  hostPath:
    path: {}
"#,
            dir.display()
        ),
    );
    c.eventually(
        &["get", "pod", "waiter", "-o", "jsonpath={.status.phase}"],
        "Succeeded",
        timeout,
    );
    let logs = c.ok(&["logs", "waiter"]);
    assert!(logs.contains("static data"), "{logs}");
    let pv = c.ok(&["get", "pv", "static-pv", "--no-headers"]);
    assert!(
        pv.contains("Bound") && pv.contains("default/static") && pv.contains("Retain"),
        "{pv}"
    );

    c.ok(&["delete", "pod", "waiter", "--wait=true"]);
    c.ok(&["delete", "pvc", "static", "--wait=true"]);
    c.eventually(
        &["get", "pv", "static-pv", "--no-headers"],
        "Released",
        Duration::from_secs(60),
    );
    assert!(dir.join("hello").exists(), "Retain keeps the data");
}
