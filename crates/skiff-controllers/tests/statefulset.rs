//! StatefulSet controller end to end (API server + all controllers + fake nodes): ordered start
//! with stable names, hostnames and per-pod claims, ordered scale-down keeping claims, claim
//! retention Delete, partitioned and OnDelete updates, maxUnavailable, revisions and their
//! history limit.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(40);

fn set(name: &str, replicas: i32, extra: Value) -> StatefulSet {
    let mut v = json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "serviceName": name,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "img:v1"}]}
            }
        }
    });
    if let (Some(spec), Some(extra)) = (v["spec"].as_object_mut(), extra.as_object()) {
        for (k, x) in extra {
            spec.insert(k.clone(), x.clone());
        }
    }
    serde_json::from_value(v).expect("statefulset json")
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn claims_template() -> Value {
    json!([{"metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}])
}

struct Apis {
    sets: Api<StatefulSet>,
    pods: Api<Pod>,
    claims: Api<PersistentVolumeClaim>,
    revs: Api<ControllerRevision>,
}

fn apis(c: &Client) -> Apis {
    Apis {
        sets: Api::namespaced(c.clone(), "default"),
        pods: Api::namespaced(c.clone(), "default"),
        claims: Api::namespaced(c.clone(), "default"),
        revs: Api::namespaced(c.clone(), "default"),
    }
}

/// The set's pods by name.
async fn pods(a: &Apis, app: &str) -> BTreeMap<String, Pod> {
    a.pods
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .map(|l| {
            l.items
                .into_iter()
                .map(|p| (p.metadata.name.clone().unwrap_or_default(), p))
                .collect()
        })
        .unwrap_or_default()
}

fn ready(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none()
        && p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn image(p: &Pod) -> String {
    p.spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .and_then(|c| c.image.clone())
        .unwrap_or_default()
}

fn label<'a>(p: &'a Pod, key: &str) -> &'a str {
    p.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(key))
        .map_or("", String::as_str)
}

async fn status(a: &Apis, name: &str) -> Value {
    a.sets
        .get(name)
        .await
        .ok()
        .and_then(|s| serde_json::to_value(s.status).ok())
        .unwrap_or(Value::Null)
}

/// Waits until every pod of the set is Ready, has `img` and the status says it all.
async fn rolled_out(c: &common::TestCluster, a: &Apis, name: &str, n: usize, img: &str) {
    c.wait_for(&format!("{name}: {n} ready pods with {img}"), T, || async {
        let ps = pods(a, name).await;
        let st = status(a, name).await;
        ps.len() == n
            && ps.values().all(|p| ready(p) && image(p) == img)
            && st["readyReplicas"] == json!(n)
            && st["updatedReplicas"] == json!(n)
            && st["currentRevision"] == st["updateRevision"]
    })
    .await;
}

async fn set_image(a: &Apis, name: &str, img: &str) {
    let patch =
        json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": img}]}}}});
    a.sets
        .patch(name, &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .expect("patch image");
}

async fn scale(a: &Apis, name: &str, n: i32) {
    let patch = json!({"spec": {"replicas": n}});
    a.sets
        .patch_scale(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("scale");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_start_stable_identity_and_claims() {
    let c = common::TestCluster::start().await;
    let node = c.add_node("n1").await;
    node.set_ready_delay(Duration::from_millis(700));
    let a = apis(&c.client);
    a.sets
        .create(
            &PostParams::default(),
            &set("web", 3, json!({"volumeClaimTemplates": claims_template()})),
        )
        .await
        .expect("create");
    // OrderedReady: web-N exists only once web-(N-1) is Ready.
    let violations = Arc::new(Mutex::new(Vec::new()));
    c.wait_for("3 ready pods", T, || {
        let a = &a;
        let violations = violations.clone();
        async move {
            let ps = pods(a, "web").await;
            for i in 1..3 {
                if ps.contains_key(&format!("web-{i}")) {
                    let prev = ps.get(&format!("web-{}", i - 1));
                    if !prev.is_some_and(ready) {
                        lock(&violations)
                            .push(format!("web-{i} exists before web-{} is ready", i - 1));
                    }
                }
            }
            ps.len() == 3 && ps.values().all(ready)
        }
    })
    .await;
    assert!(lock(&violations).is_empty(), "{:?}", lock(&violations));

    let ps = pods(&a, "web").await;
    for i in 0..3 {
        let name = format!("web-{i}");
        let p = &ps[&name];
        let spec = p.spec.as_ref().expect("spec");
        assert_eq!(spec.hostname.as_deref(), Some(name.as_str()));
        assert_eq!(spec.subdomain.as_deref(), Some("web"));
        assert_eq!(label(p, "statefulset.kubernetes.io/pod-name"), name);
        assert_eq!(label(p, "apps.kubernetes.io/pod-index"), i.to_string());
        assert!(label(p, "controller-revision-hash").starts_with("web-"));
        let claim = spec
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == "data")
            .and_then(|v| v.persistent_volume_claim.as_ref())
            .map(|c| c.claim_name.clone());
        assert_eq!(claim.as_deref(), Some(format!("data-web-{i}").as_str()));
        let pvc = a.claims.get(&format!("data-web-{i}")).await.expect("claim");
        assert_eq!(
            pvc.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("app"))
                .map(String::as_str),
            Some("web")
        );
    }
    let st = status(&a, "web").await;
    assert_eq!(st["replicas"], 3);
    assert_eq!(st["availableReplicas"], 3);
    assert_eq!(st["currentRevision"], st["updateRevision"]);
    assert_eq!(st["observedGeneration"], 1);
    let revs = a
        .revs
        .list(&ListParams::default())
        .await
        .expect("revisions");
    assert_eq!(revs.items.len(), 1);
    assert_eq!(revs.items[0].revision, 1);
    assert_eq!(
        revs.items[0].metadata.name.as_ref(),
        st["updateRevision"].as_str().map(str::to_string).as_ref()
    );

    // Scale down through the scale subresource: highest ordinal first, claims kept (Retain).
    scale(&a, "web", 1).await;
    c.wait_for("1 pod left", T, || {
        let a = &a;
        let violations = violations.clone();
        async move {
            let ps = pods(a, "web").await;
            let gone_or_going = |n: &str| {
                ps.get(n)
                    .is_none_or(|p| p.metadata.deletion_timestamp.is_some())
            };
            if gone_or_going("web-1") && ps.contains_key("web-2") {
                lock(&violations).push("web-1 went before web-2".to_string());
            }
            ps.len() == 1 && ps.contains_key("web-0")
        }
    })
    .await;
    assert!(lock(&violations).is_empty(), "{:?}", lock(&violations));
    for i in 0..3 {
        a.claims
            .get(&format!("data-web-{i}"))
            .await
            .expect("claim kept after scale-down");
    }
    // Scaling up again reuses the same names and claims.
    scale(&a, "web", 2).await;
    rolled_out(&c, &a, "web", 2, "img:v1").await;
    let claims = a.claims.list(&ListParams::default()).await.expect("claims");
    assert_eq!(claims.items.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_policy_delete_removes_claims() {
    let c = common::TestCluster::start().await;
    let _node = c.add_node("n1").await;
    let a = apis(&c.client);
    let policy = json!({"whenDeleted": "Delete", "whenScaled": "Delete"});
    a.sets
        .create(
            &PostParams::default(),
            &set(
                "db",
                2,
                json!({"volumeClaimTemplates": claims_template(),
                    "podManagementPolicy": "Parallel",
                    "persistentVolumeClaimRetentionPolicy": policy}),
            ),
        )
        .await
        .expect("create");
    rolled_out(&c, &a, "db", 2, "img:v1").await;
    let owners = a
        .claims
        .get("data-db-0")
        .await
        .expect("claim")
        .metadata
        .owner_references;
    assert!(
        owners
            .iter()
            .flatten()
            .any(|o| o.kind == "StatefulSet" && o.name == "db"),
        "{owners:?}"
    );
    scale(&a, "db", 1).await;
    c.wait_for("claim of the scaled-away pod deleted", T, || async {
        a.claims.get("data-db-1").await.is_err()
    })
    .await;
    a.claims.get("data-db-0").await.expect("claim 0 kept");
    a.sets
        .delete("db", &DeleteParams::default())
        .await
        .expect("delete set");
    c.wait_for("claims deleted with the set", T, || async {
        a.claims
            .list(&ListParams::default())
            .await
            .is_ok_and(|l| l.items.is_empty())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_rolling_update_and_history() {
    let c = common::TestCluster::start().await;
    let _node = c.add_node("n1").await;
    let a = apis(&c.client);
    a.sets
        .create(
            &PostParams::default(),
            &set(
                "web",
                3,
                json!({"revisionHistoryLimit": 1,
                    "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}}}),
            ),
        )
        .await
        .expect("create");
    rolled_out(&c, &a, "web", 3, "img:v1").await;
    set_image(&a, "web", "img:v2").await;
    c.wait_for("only web-2 updated", T, || async {
        let ps = pods(&a, "web").await;
        let st = status(&a, "web").await;
        ps.len() == 3
            && ps.values().all(ready)
            && image(&ps["web-2"]) == "img:v2"
            && st["updatedReplicas"] == 1
    })
    .await;
    // Stays partitioned.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let ps = pods(&a, "web").await;
    assert_eq!(image(&ps["web-0"]), "img:v1");
    assert_eq!(image(&ps["web-1"]), "img:v1");
    let st = status(&a, "web").await;
    assert_ne!(st["currentRevision"], st["updateRevision"]);
    assert_eq!(st["currentReplicas"], 2);

    let patch = json!({"spec": {"updateStrategy": {"rollingUpdate": {"partition": 0}}}});
    a.sets
        .patch("web", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("partition 0");
    rolled_out(&c, &a, "web", 3, "img:v2").await;

    // More templates: revisions count up; history beyond the limit (1) is deleted.
    for v in ["img:v3", "img:v4"] {
        set_image(&a, "web", v).await;
        rolled_out(&c, &a, "web", 3, v).await;
    }
    c.wait_for("history truncated", T, || async {
        let revs = a
            .revs
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default();
        // The live revision plus one of history.
        revs.len() == 2
    })
    .await;
    let mut revs: Vec<i64> = a
        .revs
        .list(&ListParams::default())
        .await
        .expect("revisions")
        .items
        .iter()
        .map(|r| r.revision)
        .collect();
    revs.sort();
    assert_eq!(revs, vec![3, 4]);
    // A template seen before re-uses its revision with the next number... unless deleted:
    // v3 is still there and becomes revision 5.
    set_image(&a, "web", "img:v3").await;
    rolled_out(&c, &a, "web", 3, "img:v3").await;
    c.wait_for("v3 renumbered to 5", T, || async {
        let revs = a
            .revs
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default();
        let mut n: Vec<i64> = revs.iter().map(|r| r.revision).collect();
        n.sort();
        n == vec![4, 5]
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_delete_waits_for_the_user() {
    let c = common::TestCluster::start().await;
    let _node = c.add_node("n1").await;
    let a = apis(&c.client);
    a.sets
        .create(
            &PostParams::default(),
            &set("od", 2, json!({"updateStrategy": {"type": "OnDelete"}})),
        )
        .await
        .expect("create");
    c.wait_for("2 ready pods", T, || async {
        let ps = pods(&a, "od").await;
        ps.len() == 2 && ps.values().all(ready)
    })
    .await;
    set_image(&a, "od", "img:v2").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ps = pods(&a, "od").await;
    assert!(ps.values().all(|p| image(p) == "img:v1" && ready(p)));
    let uid = ps["od-1"].metadata.uid.clone();
    a.pods
        .delete("od-1", &DeleteParams::default())
        .await
        .expect("delete od-1");
    c.wait_for("od-1 recreated from the new template", T, || async {
        let ps = pods(&a, "od").await;
        ps.get("od-1")
            .is_some_and(|p| p.metadata.uid != uid && image(p) == "img:v2" && ready(p))
            && image(&ps["od-0"]) == "img:v1"
    })
    .await;
    c.wait_for("status counts one updated pod", T, || async {
        status(&a, "od").await["updatedReplicas"] == 1
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_unavailable_bounds_parallel_updates() {
    let c = common::TestCluster::start().await;
    let node = c.add_node("n1").await;
    // Set before any pod exists: the fake node flips pods younger than the delay to NotReady.
    node.set_ready_delay(Duration::from_millis(1500));
    let a = apis(&c.client);
    a.sets
        .create(
            &PostParams::default(),
            &set(
                "mu",
                4,
                json!({"podManagementPolicy": "Parallel",
                    "updateStrategy": {"type": "RollingUpdate",
                        "rollingUpdate": {"maxUnavailable": 2}}}),
            ),
        )
        .await
        .expect("create");
    rolled_out(&c, &a, "mu", 4, "img:v1").await;
    set_image(&a, "mu", "img:v2").await;
    let max_seen = Arc::new(AtomicUsize::new(0));
    c.wait_for("all updated", T, || {
        let a = &a;
        let max_seen = max_seen.clone();
        async move {
            let ps = pods(a, "mu").await;
            let healthy = ps.values().filter(|p| ready(p)).count();
            max_seen.fetch_max(4usize.saturating_sub(healthy), Ordering::SeqCst);
            ps.len() == 4 && ps.values().all(|p| ready(p) && image(p) == "img:v2")
        }
    })
    .await;
    let max_seen = max_seen.load(Ordering::SeqCst);
    assert!(max_seen <= 2, "{max_seen} pods unavailable at once");
    assert_eq!(max_seen, 2, "two pods should be replaced at once");
}

/// The real kubectl against the test cluster.
struct Kubectl {
    kubeconfig: std::path::PathBuf,
    home: tempfile::TempDir,
}

impl Kubectl {
    fn new(kubeconfig: &std::path::Path) -> Self {
        Kubectl {
            kubeconfig: kubeconfig.to_path_buf(),
            home: tempfile::tempdir().expect("home"),
        }
    }

    async fn run(&self, args: &[&str]) -> (i32, String, String) {
        let out = tokio::process::Command::new("kubectl")
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", self.home.path())
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .expect("run kubectl");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    async fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.run(args).await;
        assert_eq!(code, 0, "kubectl {args:?}\nstdout: {out}\nstderr: {err}");
        out
    }

    /// Applies `manifest` (YAML or JSON text).
    async fn apply(&self, manifest: &str) {
        let path = self.home.path().join("manifest.yaml");
        std::fs::write(&path, manifest).expect("write manifest");
        self.ok(&["apply", "-f", &path.to_string_lossy()]).await;
    }
}

/// Revision numbers `kubectl rollout history` lists.
fn history_revisions(out: &str) -> Vec<String> {
    out.lines()
        .skip_while(|l| !l.starts_with("REVISION"))
        .skip(1)
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_rollout_status_history_undo_statefulset() {
    let c = common::TestCluster::start().await;
    let _node = c.add_node("n1").await;
    let a = apis(&c.client);
    let k = Kubectl::new(&c.kubeconfig);
    k.apply(&serde_json::to_string(&set("web", 2, json!({}))).expect("json"))
        .await;
    let out = k
        .ok(&["rollout", "status", "statefulset/web", "--timeout=60s"])
        .await;
    // kubectl reports any RollingUpdate with a partition (defaulted to 0) this way.
    assert!(
        out.contains("partitioned roll out complete: 2 new pods have been updated"),
        "{out}"
    );
    let table = k.ok(&["get", "sts", "web"]).await;
    assert!(table.contains("2/2"), "{table}");

    k.ok(&["set", "image", "statefulset/web", "c=img:v2"]).await;
    let out = k
        .ok(&["rollout", "status", "statefulset/web", "--timeout=60s"])
        .await;
    assert!(out.contains("roll out complete: 2 new pods"), "{out}");
    rolled_out(&c, &a, "web", 2, "img:v2").await;

    let history = k.ok(&["rollout", "history", "statefulset/web"]).await;
    assert_eq!(history_revisions(&history), ["1", "2"], "{history}");
    let one = k
        .ok(&["rollout", "history", "statefulset/web", "--revision=1"])
        .await;
    assert!(one.contains("img:v1"), "{one}");
    let revs = k.ok(&["get", "controllerrevisions"]).await;
    assert!(revs.contains("statefulset.apps/web"), "{revs}");

    let out = k.ok(&["rollout", "undo", "statefulset/web"]).await;
    assert!(out.contains("rolled back"), "{out}");
    k.ok(&["rollout", "status", "statefulset/web", "--timeout=60s"])
        .await;
    rolled_out(&c, &a, "web", 2, "img:v1").await;
    let history = k.ok(&["rollout", "history", "statefulset/web"]).await;
    assert_eq!(history_revisions(&history), ["2", "3"], "{history}");

    // The scale subresource through kubectl.
    k.ok(&["scale", "statefulset/web", "--replicas=3"]).await;
    rolled_out(&c, &a, "web", 3, "img:v1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_rollout_history_undo_daemonset() {
    let c = common::TestCluster::start().await;
    let _node = c.add_node("n1").await;
    let k = Kubectl::new(&c.kubeconfig);
    let ds = json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "agent", "namespace": "default"},
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "template": {"metadata": {"labels": {"app": "agent"}},
                "spec": {"containers": [{"name": "c", "image": "img:v1"}]}}
        }
    });
    k.apply(&ds.to_string()).await;
    k.ok(&["rollout", "status", "daemonset/agent", "--timeout=60s"])
        .await;
    k.ok(&["set", "image", "daemonset/agent", "c=img:v2"]).await;
    k.ok(&["rollout", "status", "daemonset/agent", "--timeout=60s"])
        .await;
    let history = k.ok(&["rollout", "history", "daemonset/agent"]).await;
    assert_eq!(history_revisions(&history), ["1", "2"], "{history}");
    let one = k
        .ok(&["rollout", "history", "daemonset/agent", "--revision=1"])
        .await;
    assert!(one.contains("img:v1"), "{one}");
    let out = k.ok(&["rollout", "undo", "daemonset/agent"]).await;
    assert!(out.contains("rolled back"), "{out}");
    k.ok(&["rollout", "status", "daemonset/agent", "--timeout=60s"])
        .await;
    let a: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    c.wait_for("daemon pod back at img:v1", T, || async {
        a.list(&ListParams::default().labels("app=agent"))
            .await
            .is_ok_and(|l| {
                l.items.len() == 1 && l.items.iter().all(|p| image(p) == "img:v1" && ready(p))
            })
    })
    .await;
    let history = k.ok(&["rollout", "history", "daemonset/agent"]).await;
    assert_eq!(history_revisions(&history), ["2", "3"], "{history}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headless_service_endpoints_carry_pod_hostnames() {
    use k8s_openapi::api::core::v1::{Endpoints, Service};
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    let c = common::TestCluster::start().await;
    let _node = c.add_node("n1").await;
    let a = apis(&c.client);
    let svcs: Api<Service> = Api::namespaced(c.client.clone(), "default");
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"clusterIP": "None", "selector": {"app": "web"}, "ports": [{"name": "http", "port": 80}]}
    }))
    .expect("service");
    svcs.create(&PostParams::default(), &svc)
        .await
        .expect("service");
    a.sets
        .create(&PostParams::default(), &set("web", 2, json!({})))
        .await
        .expect("create");
    rolled_out(&c, &a, "web", 2, "img:v1").await;
    let slices: Api<EndpointSlice> = Api::namespaced(c.client.clone(), "default");
    let eps: Api<Endpoints> = Api::namespaced(c.client.clone(), "default");
    c.wait_for(
        "hostnames web-0 and web-1 on the slice and Endpoints",
        T,
        || async {
            let mut slice_hosts: Vec<String> = slices
                .list(&ListParams::default().labels("kubernetes.io/service-name=web"))
                .await
                .map(|l| l.items)
                .unwrap_or_default()
                .into_iter()
                .flat_map(|s| s.endpoints)
                .filter_map(|e| e.hostname)
                .collect();
            slice_hosts.sort();
            let mut ep_hosts: Vec<String> = eps
                .get("web")
                .await
                .ok()
                .and_then(|e| e.subsets)
                .into_iter()
                .flatten()
                .flat_map(|s| s.addresses.unwrap_or_default())
                .filter_map(|a| a.hostname)
                .collect();
            ep_hosts.sort();
            slice_hosts == ["web-0", "web-1"] && ep_hosts == ["web-0", "web-1"]
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphans_are_adopted_and_relabelled_pods_released() {
    let c = common::TestCluster::start().await;
    let _node = c.add_node("n1").await;
    let a = apis(&c.client);
    // An orphan named like ordinal 0, matching the selector, exists before the set.
    let orphan: Pod = serde_json::from_value(json!({
        "metadata": {"name": "adopt-0", "labels": {"app": "adopt"}},
        "spec": {"containers": [{"name": "c", "image": "img:v1"}]}
    }))
    .expect("pod");
    let created = a
        .pods
        .create(&PostParams::default(), &orphan)
        .await
        .expect("orphan");
    a.sets
        // OnDelete: the adopted pod (no revision label) is not replaced by an update.
        .create(
            &PostParams::default(),
            &set("adopt", 2, json!({"updateStrategy": {"type": "OnDelete"}})),
        )
        .await
        .expect("create");
    c.wait_for("orphan adopted and the set complete", T, || async {
        let ps = pods(&a, "adopt").await;
        let owned = ps.get("adopt-0").is_some_and(|p| {
            p.metadata.uid == created.metadata.uid
                && p.metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|o| o.kind == "StatefulSet" && o.controller == Some(true))
        });
        owned && ps.len() == 2 && ps.values().all(ready)
    })
    .await;
    // Relabelled out of the selector: released, it keeps running without an owner.
    let patch = json!({"metadata": {"labels": {"app": "gone"}}});
    a.pods
        .patch("adopt-1", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("relabel");
    c.wait_for("relabelled pod released", T, || async {
        a.pods.get("adopt-1").await.is_ok_and(|p| {
            p.metadata
                .owner_references
                .iter()
                .flatten()
                .all(|o| o.kind != "StatefulSet")
        })
    })
    .await;
}
