//! A StatefulSet of 3 with a volume claim template on a real node, driven with kubectl: ordered
//! start, stable DNS names through a headless Service, per-pod claims provisioned by the default
//! `local-path` class, data that survives deleting every pod, a scale-down that keeps the claims,
//! a partitioned rollout, and reclaim (the volumes go with their claims).

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
  replicas: 3
  selector:
    matchLabels:
      app: db
  template:
    metadata:
      labels:
        app: db
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: web
        image: web:v1
        command: ["/bin/sh", "-c", "[ -f /data/first ] || hostname > /data/first; exec /bin/sh /app/start.sh"]
        ports:
        - containerPort: 80
          name: http
        readinessProbe:
          tcpSocket:
            port: 80
          periodSeconds: 1
        volumeMounts:
        - name: data
          mountPath: /data
  volumeClaimTemplates:
  - metadata:
      name: data
    spec:
      accessModes: [ReadWriteOnce]
      resources:
        requests:
          storage: 64Mi
"#;

fn jsonpath(c: &Cluster, args: &[&str], path: &str) -> String {
    let template = format!("jsonpath={path}");
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["-o", &template]);
    c.ok(&all).trim().to_string()
}

/// Polls `check` until it returns Some, or panics with `what` and the server log's tail.
fn until<T>(c: &Cluster, what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        if Instant::now() > deadline {
            let log = c.log();
            let tail: String = log
                .lines()
                .rev()
                .take(60)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n");
            panic!(
                "timed out: {what}\n{}\n{}\nlog tail:\n{tail}",
                c.kubectl(&["get", "sts,pods,pvc,pv", "-o", "wide"]).1,
                c.kubectl(&["get", "events"]).1
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn rollout(c: &Cluster) {
    c.ok(&["rollout", "status", "statefulset/db", "--timeout=180s"]);
}

fn exec(c: &Cluster, pod: &str, script: &str) -> String {
    c.ok(&["exec", pod, "--", "/bin/sh", "-c", script])
        .trim()
        .to_string()
}

/// `db-0 db-1 db-2` → each pod's image, by name.
fn images(c: &Cluster) -> Vec<(String, String)> {
    let out = jsonpath(
        c,
        &["get", "pods", "-l", "app=db"],
        "{range .items[*]}{.metadata.name}={.spec.containers[0].image}{\"\\n\"}{end}",
    );
    let mut v: Vec<(String, String)> = out
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    v.sort();
    v
}

#[test]
#[ignore = "needs root: a real node runs the pods and mounts their volumes"]
fn statefulset_of_three_keeps_identity_and_data() {
    let c = Cluster::start();
    build_web_images(&c);
    let file = c.dir.path().join("db.yaml");
    std::fs::write(&file, MANIFEST).expect("write manifest");
    c.ok(&["apply", "-f", &file.to_string_lossy()]);
    rollout(&c);

    // Ordered start: each pod was created only once the one before it was Ready.
    let ready_at = |pod: &str| {
        jsonpath(
            &c,
            &["get", "pod", pod],
            "{.status.conditions[?(@.type==\"Ready\")].lastTransitionTime}",
        )
    };
    let created_at =
        |pod: &str| jsonpath(&c, &["get", "pod", pod], "{.metadata.creationTimestamp}");
    for (prev, next) in [("db-0", "db-1"), ("db-1", "db-2")] {
        let (r, n) = (ready_at(prev), created_at(next));
        assert!(
            n >= r,
            "{next} created at {n}, before {prev} was ready at {r}"
        );
    }

    // One claim per pod, bound by the default class.
    let claims = jsonpath(
        &c,
        &["get", "pvc"],
        "{range .items[*]}{.metadata.name}:{.status.phase}:{.spec.storageClassName} {end}",
    );
    for i in 0..3 {
        assert!(
            claims.contains(&format!("data-db-{i}:Bound:local-path")),
            "{claims}"
        );
    }

    // Stable names through the headless Service, full and short (the pod's search domains).
    // The endpoints reach the node's DNS a moment after the pods are ready: retry briefly.
    for name in ["db-1.db.default.svc.cluster.local", "db-1.db"] {
        until(
            &c,
            &format!("http://{name}/ from db-0"),
            Duration::from_secs(30),
            || {
                let url = format!("http://{name}/");
                let (code, body, _) = c.kubectl(&["exec", "db-0", "--", "wget", "-qO-", &url]);
                (code == 0 && body.contains("web v1 on db-1")).then_some(())
            },
        );
    }
    for i in 0..3 {
        let pod = format!("db-{i}");
        assert_eq!(exec(&c, &pod, "hostname"), pod);
        exec(&c, &pod, &format!("echo token-{i} > /data/token"));
    }

    // Every pod deleted at once: the new ones come back with the same names and their own data.
    let uids_before = jsonpath(
        &c,
        &["get", "pods", "-l", "app=db"],
        "{.items[*].metadata.uid}",
    );
    c.ok(&["delete", "pod", "db-0", "db-1", "db-2", "--wait=true"]);
    until(&c, "pods recreated", Duration::from_secs(180), || {
        let uids = jsonpath(
            &c,
            &["get", "pods", "-l", "app=db"],
            "{.items[*].metadata.uid}",
        );
        let fresh = uids.split_whitespace().count() == 3
            && uids
                .split_whitespace()
                .all(|u| !uids_before.split_whitespace().any(|b| b == u));
        fresh.then_some(())
    });
    rollout(&c);
    for i in 0..3 {
        let pod = format!("db-{i}");
        assert_eq!(exec(&c, &pod, "cat /data/token"), format!("token-{i}"));
        assert_eq!(exec(&c, &pod, "cat /data/first"), pod);
    }

    // Scale down: the highest ordinals go, their claims stay; scaling up finds the data again.
    c.ok(&["scale", "statefulset/db", "--replicas=1"]);
    until(&c, "scaled down to 1", Duration::from_secs(120), || {
        let names = jsonpath(
            &c,
            &["get", "pods", "-l", "app=db"],
            "{.items[*].metadata.name}",
        );
        (names == "db-0").then_some(())
    });
    let n_claims = jsonpath(&c, &["get", "pvc"], "{.items[*].metadata.name}");
    assert_eq!(n_claims.split_whitespace().count(), 3, "{n_claims}");
    c.ok(&["scale", "statefulset/db", "--replicas=3"]);
    rollout(&c);
    assert_eq!(exec(&c, "db-2", "cat /data/token"), "token-2");

    // A rollout with a partition updates only the ordinals at or above it.
    c.ok(&[
        "patch",
        "statefulset/db",
        "-p",
        r#"{"spec":{"updateStrategy":{"type":"RollingUpdate","rollingUpdate":{"partition":2}}}}"#,
    ]);
    c.ok(&["set", "image", "statefulset/db", "web=web:v2"]);
    until(&c, "db-2 on web:v2", Duration::from_secs(180), || {
        let imgs = images(&c);
        let want = [("db-0", "web:v1"), ("db-1", "web:v1"), ("db-2", "web:v2")];
        let ready = jsonpath(&c, &["get", "statefulset/db"], "{.status.readyReplicas}");
        (imgs.len() == 3
            && imgs
                .iter()
                .zip(want)
                .all(|((n, i), (wn, wi))| n == wn && i == wi)
            && ready == "3")
            .then_some(())
    });
    let updated = jsonpath(&c, &["get", "statefulset/db"], "{.status.updatedReplicas}");
    assert_eq!(updated, "1");
    c.ok(&[
        "patch",
        "statefulset/db",
        "-p",
        r#"{"spec":{"updateStrategy":{"rollingUpdate":{"partition":0}}}}"#,
    ]);
    rollout(&c);
    assert!(
        images(&c).iter().all(|(_, i)| i == "web:v2"),
        "{:?}",
        images(&c)
    );
    assert_eq!(exec(&c, "db-0", "cat /data/token"), "token-0");
    let history = c.ok(&["rollout", "history", "statefulset/db"]);
    assert!(history.contains('1') && history.contains('2'), "{history}");

    // Deleting the set keeps the claims (retention Retain); deleting the claims releases the
    // provisioned volumes, which reclaim Delete removes.
    c.ok(&["delete", "statefulset/db", "--wait=true"]);
    until(&c, "pods gone", Duration::from_secs(120), || {
        jsonpath(
            &c,
            &["get", "pods", "-l", "app=db"],
            "{.items[*].metadata.name}",
        )
        .is_empty()
        .then_some(())
    });
    let pvs = jsonpath(&c, &["get", "pv"], "{.items[*].metadata.name}");
    assert_eq!(pvs.split_whitespace().count(), 3, "{pvs}");
    c.ok(&["delete", "pvc", "--all", "--wait=true"]);
    until(&c, "volumes reclaimed", Duration::from_secs(120), || {
        jsonpath(&c, &["get", "pv"], "{.items[*].metadata.name}")
            .is_empty()
            .then_some(())
    });
    c.ok(&["delete", "service/db"]);
}
