//! The seed's story end to end, driven only with the real kubectl against one `skiff server`
//! (root: real containers, CNI pod networking, the nftables service proxy):
//! create + expose a Deployment, scale and self-heal, a rolling update under load, rollout
//! history and undo, kill -9 of the server in the middle of a rollout, a graceful restart of the
//! embedded agent that must not touch containers, and a delete that leaves the node clean.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::cluster::{build_web_images, http_get, page, Cluster, Load, LoadResult};

const REPLICAS: usize = 9;

/// Polls until `n` consecutive requests through the NodePort all answer `web <version> on …`.
fn wait_all_answer(port: u16, version: &str, timeout: Duration) -> Duration {
    let start = Instant::now();
    let prefix = format!("web {version} on ");
    loop {
        let got: Vec<Option<String>> = (0..30).map(|_| page(port)).collect();
        if got
            .iter()
            .all(|p| p.as_deref().is_some_and(|p| p.starts_with(&prefix)))
        {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < timeout,
            "NodePort {port} never answered only {version}: {got:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[derive(Debug, Clone)]
struct Pod {
    name: String,
    owner: String,
    ready: bool,
    terminating: bool,
    image: String,
    container_id: String,
    restarts: String,
}

fn pods(c: &Cluster) -> Vec<Pod> {
    let out = c.ok(&[
        "get",
        "pods",
        "-l",
        "app=web",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name}|{.metadata.ownerReferences[0].name}|\
         {.status.conditions[?(@.type==\"Ready\")].status}|{.metadata.deletionTimestamp}|\
         {.spec.containers[0].image}|{.status.containerStatuses[0].containerID}|\
         {.status.containerStatuses[0].restartCount}{\"\\n\"}{end}",
    ]);
    out.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('|').collect();
            assert_eq!(f.len(), 7, "pod line {l:?}");
            Pod {
                name: f[0].to_string(),
                owner: f[1].to_string(),
                ready: f[2] == "True",
                terminating: !f[3].is_empty(),
                image: f[4].to_string(),
                container_id: f[5].to_string(),
                restarts: f[6].to_string(),
            }
        })
        .collect()
}

/// Waits until exactly `n` live pods exist and all are Ready (no terminating pod counted).
fn wait_ready_pods(c: &Cluster, n: usize, timeout: Duration) -> (Duration, Vec<Pod>) {
    let start = Instant::now();
    loop {
        let all = pods(c);
        let live: Vec<Pod> = all.iter().filter(|p| !p.terminating).cloned().collect();
        if live.len() == n && live.iter().all(|p| p.ready) {
            return (start.elapsed(), live);
        }
        assert!(
            start.elapsed() < timeout,
            "never {n} Ready pods: {all:#?}\n{}",
            tail(&c.log())
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Short IDs of every container (running or not) the node holds for this data dir.
fn node_containers(c: &Cluster) -> BTreeSet<String> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_skiff"))
        .arg("--data-dir")
        .arg(c.data_dir())
        .args(["ps", "-aq"])
        .output()
        .expect("skiff ps");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// Eventually the node runs exactly the live pods' containers: nothing orphaned or duplicated.
fn assert_node_matches_pods(c: &Cluster) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ids: BTreeSet<String> = pods(c)
            .into_iter()
            .map(|p| p.container_id.trim_start_matches("skiff://").to_string())
            .collect();
        let node = node_containers(c);
        let matched = node.len() == ids.len()
            && node
                .iter()
                .all(|short| ids.iter().any(|id| id.starts_with(short.as_str())));
        if matched && node.len() == REPLICAS {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "node containers {node:?} vs pod containers {ids:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

#[derive(Debug, Clone)]
struct Rs {
    name: String,
    revision: u64,
    replicas: u64,
    status_replicas: u64,
    image: String,
    hash: String,
    owner: String,
}

fn replica_sets(c: &Cluster) -> Vec<Rs> {
    let out = c.ok(&[
        "get",
        "rs",
        "-l",
        "app=web",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name}|\
         {.metadata.annotations.deployment\\.kubernetes\\.io/revision}|{.spec.replicas}|\
         {.status.replicas}|{.spec.template.spec.containers[0].image}|\
         {.metadata.labels.pod-template-hash}|{.metadata.ownerReferences[0].name}{\"\\n\"}{end}",
    ]);
    out.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('|').collect();
            assert_eq!(f.len(), 7, "rs line {l:?}");
            Rs {
                name: f[0].to_string(),
                revision: f[1].parse().unwrap_or_else(|_| panic!("revision in {l:?}")),
                replicas: f[2].parse().unwrap_or(0),
                status_replicas: f[3].parse().unwrap_or(0),
                image: f[4].to_string(),
                hash: f[5].to_string(),
                owner: f[6].to_string(),
            }
        })
        .collect()
}

/// Revision numbers listed by `kubectl rollout history`.
fn history(c: &Cluster) -> Vec<u64> {
    let out = c.ok(&["rollout", "history", "deployment/web"]);
    out.lines()
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect()
}

fn rollout_status(c: &Cluster) -> Duration {
    let start = Instant::now();
    let out = c.ok(&["rollout", "status", "deployment/web", "--timeout=180s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
    start.elapsed()
}

/// One RS per template with distinct revisions, all owned by the Deployment; the Deployment's
/// revision is the newest; the only scaled-up RS runs `image` and owns every live pod.
fn assert_consistent(c: &Cluster, image: &str) -> Vec<Rs> {
    let rss = replica_sets(c);
    let hashes: BTreeSet<&str> = rss.iter().map(|r| r.hash.as_str()).collect();
    let images: BTreeSet<&str> = rss.iter().map(|r| r.image.as_str()).collect();
    let revisions: BTreeSet<u64> = rss.iter().map(|r| r.revision).collect();
    assert_eq!(hashes.len(), rss.len(), "duplicate ReplicaSets: {rss:#?}");
    assert_eq!(images.len(), rss.len(), "duplicate ReplicaSets: {rss:#?}");
    assert_eq!(revisions.len(), rss.len(), "duplicate revisions: {rss:#?}");
    assert!(
        rss.iter().all(|r| r.owner == "web"),
        "orphan ReplicaSet: {rss:#?}"
    );
    let current: Vec<&Rs> = rss.iter().filter(|r| r.replicas > 0).collect();
    assert_eq!(current.len(), 1, "one scaled-up ReplicaSet: {rss:#?}");
    let current = current[0];
    assert_eq!(current.image, image, "{rss:#?}");
    assert_eq!(current.replicas as usize, REPLICAS, "{rss:#?}");
    let newest = rss.iter().map(|r| r.revision).max().expect("a ReplicaSet");
    assert_eq!(
        current.revision, newest,
        "the current RS is the newest: {rss:#?}"
    );
    let dep_rev = c.ok(&[
        "get",
        "deployment",
        "web",
        "-o",
        "jsonpath={.metadata.annotations.deployment\\.kubernetes\\.io/revision}",
    ]);
    assert_eq!(
        dep_rev.trim(),
        newest.to_string(),
        "deployment revision: {rss:#?}"
    );
    let mut hist = history(c);
    hist.sort();
    assert_eq!(
        hist,
        revisions.iter().copied().collect::<Vec<_>>(),
        "history vs {rss:#?}"
    );
    let live: Vec<Pod> = pods(c).into_iter().filter(|p| !p.terminating).collect();
    assert_eq!(live.len(), REPLICAS, "{live:#?}");
    assert!(
        live.iter()
            .all(|p| p.owner == current.name && p.image == image && p.ready),
        "every pod belongs to {}: {live:#?}",
        current.name
    );
    rss
}

fn rollout_under_load(c: &Cluster, port: u16, from: &str, to: &str) -> (Duration, LoadResult) {
    let load = Load::start(port, 3);
    std::thread::sleep(Duration::from_millis(500));
    let start = Instant::now();
    c.ok(&["set", "image", "deployment/web", &format!("web=web:{to}")]);
    rollout_status(c);
    let rolled = start.elapsed();
    // Old pods may still be draining: load until every answer is the new version.
    wait_all_answer(port, to, Duration::from_secs(60));
    let r = load.finish();
    eprintln!(
        "rollout {from} → {to} under load: {} ms to `rollout status` done; {} ok, {} failed, by version {:?}",
        rolled.as_millis(),
        r.ok,
        r.failed.len(),
        r.by_version
    );
    (rolled, r)
}

#[test]
#[ignore = "needs root: the skiff binary running pods (namespaces, cgroups, CNI, nftables)"]
fn the_seed_story_end_to_end_with_kubectl() {
    assert!(nix::unistd::geteuid().is_root(), "e2e tests need root");
    let mut c = Cluster::start();
    build_web_images(&c);

    // 1. create + expose; the NodePort answers v1.
    // `kubectl create deployment` sets no readiness probe: a pod is Ready (an endpoint) the
    // moment its container starts, possibly before httpd listens. In practice httpd listens long
    // before the endpoint reaches the proxy's ruleset, and the rollout below loses nothing
    // without a probe. SKIFF_E2E_PROBE=1 gates readiness on httpd like examples/web/web.yaml,
    // still as a single revision.
    if std::env::var_os("SKIFF_E2E_PROBE").is_some() {
        let mut dep: serde_json::Value = serde_json::from_str(&c.ok(&[
            "create",
            "deployment",
            "web",
            "--image=web:v1",
            "--replicas=3",
            "--dry-run=client",
            "-o",
            "json",
        ]))
        .expect("deployment json");
        dep["spec"]["template"]["spec"]["containers"][0]["readinessProbe"] = serde_json::json!(
            {"httpGet": {"path": "/", "port": 80}, "periodSeconds": 1}
        );
        let path = c.dir.path().join("web-deployment.json");
        std::fs::write(&path, dep.to_string()).expect("write deployment");
        c.ok(&["create", "-f", path.to_str().expect("utf8")]);
    } else {
        c.ok(&[
            "create",
            "deployment",
            "web",
            "--image=web:v1",
            "--replicas=3",
        ]);
    }
    c.ok(&[
        "expose",
        "deployment",
        "web",
        "--type=NodePort",
        "--port=80",
    ]);
    let port: u16 = c
        .ok(&[
            "get",
            "svc",
            "web",
            "-o",
            "jsonpath={.spec.ports[0].nodePort}",
        ])
        .trim()
        .parse()
        .expect("allocated nodePort");
    assert!((30000..=32767).contains(&port), "nodePort {port}");
    let t = rollout_status(&c);
    eprintln!(
        "create: 3 pods rolled out {} ms after `rollout status` started",
        t.as_millis()
    );
    let t = wait_all_answer(port, "v1", Duration::from_secs(30));
    eprintln!(
        "expose: NodePort {port} answers v1 (after {} ms)",
        t.as_millis()
    );

    // 2. scale to 9; delete 3 pods and time the self-heal.
    let start = Instant::now();
    c.ok(&[
        "scale",
        "deployment",
        "web",
        &format!("--replicas={REPLICAS}"),
    ]);
    let (_, live) = wait_ready_pods(&c, REPLICAS, Duration::from_secs(120));
    eprintln!(
        "scale: 3 → {REPLICAS} Ready in {} ms",
        start.elapsed().as_millis()
    );
    let victims: Vec<&str> = live.iter().take(3).map(|p| p.name.as_str()).collect();
    let start = Instant::now();
    let mut args = vec!["delete", "pod", "--wait=false"];
    args.extend(&victims);
    c.ok(&args);
    let (_, healed) = wait_ready_pods(&c, REPLICAS, Duration::from_secs(120));
    eprintln!(
        "self-heal: 3 of {REPLICAS} pods deleted → {REPLICAS} Ready in {} ms",
        start.elapsed().as_millis()
    );
    assert!(
        healed.iter().all(|p| !victims.contains(&p.name.as_str())),
        "{healed:#?}"
    );
    // The deleted pods are really gone, not just terminating forever.
    let deadline = Instant::now() + Duration::from_secs(60);
    while pods(&c).len() != REPLICAS {
        assert!(
            Instant::now() < deadline,
            "deleted pods linger: {:#?}",
            pods(&c)
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // 3. a rolling update to v2 under continuous load loses no request.
    let (_, r) = rollout_under_load(&c, port, "v1", "v2");
    assert!(
        r.failed.is_empty(),
        "{} failed requests during the rollout, first: {:?}",
        r.failed.len(),
        r.failed.iter().take(5).collect::<Vec<_>>()
    );
    assert!(r.ok >= 500, "only {} requests during the rollout", r.ok);
    assert!(
        r.by_version.get("v2").copied().unwrap_or(0) > 0,
        "{:?}",
        r.by_version
    );
    wait_ready_pods(&c, REPLICAS, Duration::from_secs(60));

    // 4. two revisions of distinct templates; undo goes back to v1.
    let rss = replica_sets(&c);
    let hist = history(&c);
    eprintln!("history after v2: {hist:?}; ReplicaSets {rss:?}");
    let v2_rev = rss
        .iter()
        .find(|r| r.image == "web:v2")
        .expect("v2 RS")
        .revision;
    let v1_rev = rss
        .iter()
        .find(|r| r.image == "web:v1")
        .expect("v1 RS")
        .revision;
    assert_eq!(rss.len(), 2, "{rss:#?}");
    assert_eq!(hist.len(), 2, "rollout history shows 2 revisions: {hist:?}");
    assert!(v2_rev > v1_rev, "{rss:#?}");
    assert_consistent(&c, "web:v2");
    let start = Instant::now();
    c.ok(&["rollout", "undo", "deployment/web"]);
    rollout_status(&c);
    let t = start.elapsed();
    let t2 = wait_all_answer(port, "v1", Duration::from_secs(60));
    eprintln!(
        "undo → v1: rolled out in {} ms, all answers v1 {} ms later",
        t.as_millis(),
        t2.as_millis()
    );
    let rss = assert_consistent(&c, "web:v1");
    let v1 = rss.iter().find(|r| r.image == "web:v1").expect("v1 RS");
    assert!(
        v1.revision > v2_rev,
        "undo makes v1 the newest revision: {rss:#?}"
    );

    // 5. kill -9 the server in the middle of a rollout to v2.
    let start = Instant::now();
    c.ok(&["set", "image", "deployment/web", "web=web:v2"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mid = loop {
        let rss = replica_sets(&c);
        let new = rss.iter().find(|r| r.image == "web:v2").cloned();
        if let Some(new) =
            new.filter(|n| n.status_replicas > 0 && (n.status_replicas as usize) < REPLICAS)
        {
            break (new, rss);
        }
        assert!(
            Instant::now() < deadline,
            "never caught mid-rollout: {rss:#?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    eprintln!(
        "crash: kill -9 {} ms into the rollout, new RS at {}/{REPLICAS}: {:?}",
        start.elapsed().as_millis(),
        mid.0.status_replicas,
        mid.1
    );
    let restart = Instant::now();
    c.crash_and_restart();
    let api = restart.elapsed();
    rollout_status(&c);
    let (_, _) = wait_ready_pods(&c, REPLICAS, Duration::from_secs(120));
    let done = restart.elapsed();
    let t = wait_all_answer(port, "v2", Duration::from_secs(60));
    eprintln!(
        "crash recovery: API ready {} ms after kill -9, rollout complete at {} ms, all answers v2 {} ms later",
        api.as_millis(),
        done.as_millis(),
        t.as_millis()
    );
    let rss = assert_consistent(&c, "web:v2");
    assert_eq!(rss.len(), 2, "no duplicate/orphan ReplicaSets: {rss:#?}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while pods(&c).len() != REPLICAS {
        assert!(Instant::now() < deadline, "orphan pods: {:#?}", pods(&c));
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_node_matches_pods(&c);
    let served: BTreeSet<String> = (0..60)
        .filter_map(|_| page(port))
        .filter_map(|p| p.split(" on ").nth(1).map(str::to_string))
        .collect();
    let names: BTreeSet<String> = pods(&c).into_iter().map(|p| p.name).collect();
    assert!(
        served.is_subset(&names),
        "answers from unknown pods: {served:?} vs {names:?}"
    );

    // 6. a graceful restart of the server (and its embedded agent) leaves containers alone.
    let before: BTreeMap<String, (String, String)> = pods(&c)
        .into_iter()
        .map(|p| (p.name, (p.container_id, p.restarts)))
        .collect();
    assert!(
        before.values().all(|(id, _)| !id.is_empty()),
        "container IDs: {before:#?}"
    );
    let load = Load::start(port, 2);
    std::thread::sleep(Duration::from_millis(300));
    let restart = Instant::now();
    c.restart();
    let api = restart.elapsed();
    let (_, live) = wait_ready_pods(&c, REPLICAS, Duration::from_secs(60));
    let ready = restart.elapsed();
    std::thread::sleep(Duration::from_secs(2));
    let r = load.finish();
    eprintln!(
        "agent restart (SIGTERM + start): API ready in {} ms, {REPLICAS} pods Ready at {} ms; \
         NodePort load meanwhile: {} ok, {} failed",
        api.as_millis(),
        ready.as_millis(),
        r.ok,
        r.failed.len()
    );
    let after: BTreeMap<String, (String, String)> = live
        .into_iter()
        .map(|p| (p.name, (p.container_id, p.restarts)))
        .collect();
    assert_eq!(
        before, after,
        "containers changed across a graceful restart"
    );
    // Ready throughout: sample again a bit later, nothing restarted late.
    std::thread::sleep(Duration::from_secs(2));
    let later: BTreeMap<String, (String, String)> = pods(&c)
        .into_iter()
        .map(|p| {
            assert!(p.ready && !p.terminating, "{p:?}");
            (p.name, (p.container_id, p.restarts))
        })
        .collect();
    assert_eq!(before, later, "containers changed after the restart");
    assert_node_matches_pods(&c);
    // The proxy's rules outlive the restart: the NodePort kept answering.
    assert!(
        r.failed.is_empty(),
        "{} requests failed across the graceful restart, first: {:?}",
        r.failed.len(),
        r.failed.iter().take(5).collect::<Vec<_>>()
    );
    wait_all_answer(port, "v2", Duration::from_secs(30));

    // 7. delete everything: ReplicaSets, pods, containers and the NodePort are gone.
    let start = Instant::now();
    c.ok(&["delete", "deployment", "web"]);
    c.ok(&["delete", "svc", "web"]);
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (_, rs, _) = c.kubectl(&["get", "rs", "-l", "app=web", "-o", "name"]);
        let (_, po, _) = c.kubectl(&["get", "pods", "-l", "app=web", "-o", "name"]);
        if rs.trim().is_empty() && po.trim().is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "left: {rs} {po}");
        std::thread::sleep(Duration::from_millis(200));
    }
    c.assert_node_clean();
    eprintln!(
        "delete: ReplicaSets, pods and containers gone in {} ms",
        start.elapsed().as_millis()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while http_get("127.0.0.1", port).is_some() {
        assert!(Instant::now() < deadline, "NodePort {port} still answers");
        std::thread::sleep(Duration::from_millis(100));
    }
}
