//! A StatefulSet as real containers (root): pods `<set>-<ordinal>` with their own hostnames,
//! reachable from each other by stable DNS names through a headless Service.

mod common;

use std::time::{Duration, Instant};

use common::cluster::{build_web_images, Cluster};

const MANIFEST: &str = r#"
apiVersion: v1
kind: Service
metadata:
  name: db
spec:
  clusterIP: None
  selector:
    app: db
  ports:
  - name: http
    port: 80
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: db
spec:
  serviceName: db
  replicas: 2
  selector:
    matchLabels:
      app: db
  template:
    metadata:
      labels:
        app: db
    spec:
      containers:
      - name: web
        image: web:v1
        imagePullPolicy: IfNotPresent
        ports:
        - name: http
          containerPort: 80
        readinessProbe:
          httpGet:
            path: /
            port: http
          periodSeconds: 1
"#;

#[test]
#[ignore = "needs root: a cluster whose agent runs pods (namespaces, cgroups, CNI, nftables)"]
fn statefulset_pods_resolve_by_stable_name() {
    assert!(nix::unistd::geteuid().is_root(), "cluster tests need root");
    let c = Cluster::start();
    build_web_images(&c);
    let path = c.dir.path().join("db.yaml");
    std::fs::write(&path, MANIFEST).expect("write manifest");
    c.ok(&["apply", "-f", path.to_str().expect("utf8")]);
    c.ok(&["rollout", "status", "statefulset/db", "--timeout=180s"]);
    let host = c.ok(&["exec", "db-0", "--", "hostname"]);
    assert_eq!(host.trim(), "db-0");
    // The endpoints reach the node's DNS a moment after the pods are ready: retry briefly.
    for name in ["db-1.db.default.svc.cluster.local", "db-1.db"] {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (code, body, err) = c.kubectl(&[
                "exec",
                "db-0",
                "--",
                "wget",
                "-qO-",
                &format!("http://{name}/"),
            ]);
            if code == 0 && body.contains("web v1 on db-1") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "http://{name}/ from db-0: {body} {err}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}
