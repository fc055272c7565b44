//! Deployment controller end to end (API server + all controllers + fake nodes): creation and
//! availability, scaling, rolling updates within maxSurge/maxUnavailable, undo, pause/resume,
//! restart, Recreate ordering, progress deadline and revision-history cleanup.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::json;

const REVISION: &str = "deployment.kubernetes.io/revision";
const T: Duration = Duration::from_secs(30);

fn deployment(name: &str, replicas: i32, strategy: serde_json::Value) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "strategy": strategy,
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "web", "image": "web:v1"}]}
            }
        }
    }))
    .expect("deployment json")
}

fn rolling(surge: serde_json::Value, unavail: serde_json::Value) -> serde_json::Value {
    json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavail}})
}

fn apis(c: &Client) -> (Api<Deployment>, Api<ReplicaSet>, Api<Pod>) {
    (
        Api::namespaced(c.clone(), "default"),
        Api::namespaced(c.clone(), "default"),
        Api::namespaced(c.clone(), "default"),
    )
}

fn cond<'a>(
    d: &'a Deployment,
    t: &str,
) -> Option<&'a k8s_openapi::api::apps::v1::DeploymentCondition> {
    d.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == t)
}

/// `kubectl rollout status` success: observed, all updated, no old pods, all available.
fn rolled_out(d: &Deployment) -> bool {
    let Some(s) = d.status.as_ref() else {
        return false;
    };
    let r = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    d.metadata.generation.unwrap_or(0) <= s.observed_generation.unwrap_or(0)
        && s.updated_replicas.unwrap_or(0) >= r
        && s.replicas.unwrap_or(0) <= s.updated_replicas.unwrap_or(0)
        && s.available_replicas.unwrap_or(0) >= s.updated_replicas.unwrap_or(0)
        && cond(d, "Available").is_some_and(|c| c.status == "True")
}

async fn owned_rss(rs: &Api<ReplicaSet>, app: &str) -> Vec<ReplicaSet> {
    let mut v = rs
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    v.sort_by_key(revision);
    v
}

fn revision(rs: &ReplicaSet) -> i64 {
    ann(rs, REVISION).and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn ann<'a>(rs: &'a ReplicaSet, k: &str) -> Option<&'a str> {
    rs.metadata.annotations.as_ref()?.get(k).map(String::as_str)
}

fn image(rs: &ReplicaSet) -> Option<String> {
    rs.spec
        .as_ref()?
        .template
        .as_ref()?
        .spec
        .as_ref()?
        .containers
        .first()?
        .image
        .clone()
}

fn ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

async fn app_pods(pods: &Api<Pod>, app: &str) -> Vec<Pod> {
    pods.list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

async fn wait_rolled_out(c: &common::TestCluster, d: &Api<Deployment>, name: &str) {
    c.wait_for(&format!("{name} rolled out"), T, || async {
        d.get(name).await.is_ok_and(|d| rolled_out(&d))
    })
    .await;
}

async fn set_image(d: &Api<Deployment>, name: &str, img: &str) {
    let patch =
        json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": img}]}}}});
    d.patch(name, &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .expect("set image");
}

async fn scale(d: &Api<Deployment>, name: &str, n: i32) {
    d.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"replicas": n}})),
    )
    .await
    .expect("scale");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_scale_and_available() {
    let c = common::TestCluster::start().await;
    let _n = c.add_node("n1").await;
    let (d, rs, pods) = apis(&c.client);
    d.create(
        &PostParams::default(),
        &deployment("web", 3, rolling(json!("25%"), json!("25%"))),
    )
    .await
    .expect("create");
    wait_rolled_out(&c, &d, "web").await;
    let got = d.get("web").await.expect("get");
    let s = got.status.clone().expect("status");
    assert_eq!(
        (s.replicas, s.ready_replicas, s.available_replicas),
        (Some(3), Some(3), Some(3))
    );
    let av = cond(&got, "Available").expect("Available");
    assert_eq!(av.reason.as_deref(), Some("MinimumReplicasAvailable"));
    assert_eq!(
        av.message.as_deref(),
        Some("Deployment has minimum availability.")
    );
    c.wait_for("Progressing NewReplicaSetAvailable", T, || async {
        d.get("web").await.is_ok_and(|d| {
            cond(&d, "Progressing")
                .is_some_and(|p| p.reason.as_deref() == Some("NewReplicaSetAvailable"))
        })
    })
    .await;
    assert_eq!(
        got.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(REVISION))
            .map(String::as_str),
        Some("1")
    );

    let rss = owned_rss(&rs, "web").await;
    assert_eq!(rss.len(), 1);
    let r = &rss[0];
    let hash = r
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("pod-template-hash"))
        .cloned()
        .expect("hash label");
    assert!(
        hash.len() <= 10
            && hash
                .chars()
                .all(|ch| "bcdfghjklmnpqrstvwxz2456789".contains(ch))
    );
    assert_eq!(
        r.metadata.name.as_deref(),
        Some(format!("web-{hash}").as_str())
    );
    let owner = r
        .metadata
        .owner_references
        .as_ref()
        .and_then(|o| o.first())
        .expect("owner");
    assert_eq!(
        (
            owner.kind.as_str(),
            owner.controller,
            owner.block_owner_deletion
        ),
        ("Deployment", Some(true), Some(true))
    );
    assert_eq!(
        ann(r, "deployment.kubernetes.io/desired-replicas"),
        Some("3")
    );
    assert_eq!(ann(r, "deployment.kubernetes.io/max-replicas"), Some("4"));
    assert_eq!(ann(r, REVISION), Some("1"));
    let sel = r
        .spec
        .as_ref()
        .and_then(|s| s.selector.match_labels.clone())
        .unwrap_or_default();
    assert_eq!(sel.get("pod-template-hash"), Some(&hash));
    assert_eq!(
        app_pods(&pods, "web")
            .await
            .iter()
            .filter(|p| ready(p))
            .count(),
        3
    );

    // 3 → 9 → 2
    for n in [9, 2] {
        scale(&d, "web", n).await;
        c.wait_for(&format!("scaled to {n}"), T, || async {
            let ok = d.get("web").await.is_ok_and(|d| rolled_out(&d));
            let live = app_pods(&pods, "web").await;
            let live = live
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none() && ready(p))
                .count();
            ok && live == n as usize
        })
        .await;
        let rss = owned_rss(&rs, "web").await;
        assert_eq!(rss.len(), 1, "scaling makes no new RS");
        assert_eq!(
            ann(&rss[0], "deployment.kubernetes.io/desired-replicas"),
            Some(n.to_string().as_str())
        );
    }
}

/// Watches pods and RSs during a rollout and checks the surge/unavailability bounds on every
/// observed state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_update_bounds_undo_and_history() {
    let c = common::TestCluster::start().await;
    let node = c.add_node("n1").await;
    let (d, rs, pods) = apis(&c.client);
    // R=4, surge 1, unavailable 1 → at most 5 pods, at least 3 available.
    let mut dep = deployment("web", 4, rolling(json!(1), json!(1)));
    dep.metadata.annotations = Some(BTreeMap::from([(
        "kubernetes.io/change-cause".into(),
        "v1".into(),
    )]));
    d.create(&PostParams::default(), &dep)
        .await
        .expect("create");
    wait_rolled_out(&c, &d, "web").await;

    // Old pods must be older than the ready delay, or the fake node would un-ready them.
    tokio::time::sleep(Duration::from_secs(1)).await;
    node.set_ready_delay(Duration::from_millis(400));
    c.wait_for("4 ready pods", T, || async {
        app_pods(&pods, "web")
            .await
            .iter()
            .filter(|p| ready(p))
            .count()
            == 4
    })
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let violations = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let observer = {
        let (stop, violations, pods) = (stop.clone(), violations.clone(), pods.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let ps = app_pods(&pods, "web").await;
                // Terminating pods are not counted (upstream: RS status excludes them).
                let active: Vec<&Pod> = ps
                    .iter()
                    .filter(|p| p.metadata.deletion_timestamp.is_none())
                    .collect();
                let avail = active.iter().filter(|p| ready(p)).count();
                if active.len() > 5 || avail < 3 {
                    violations
                        .lock()
                        .map(|mut v| v.push(format!("pods={} available={avail}", active.len())))
                        .ok();
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    // RS-level bound on desired replicas as the controller sets them.
    let rs_violations = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let rs_observer = {
        let (stop, violations, rs) = (stop.clone(), rs_violations.clone(), rs.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let total: i32 = owned_rss(&rs, "web")
                    .await
                    .iter()
                    .map(|r| r.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0))
                    .sum();
                if total > 5 {
                    violations
                        .lock()
                        .map(|mut v| v.push(format!("rs spec total={total}")))
                        .ok();
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    // Like `kubectl set image --record`: change-cause and template in one write (an earlier
    // separate annotate would be copied onto the then-current RS, as upstream does).
    let patch = json!({
        "metadata": {"annotations": {"kubernetes.io/change-cause": "v2"}},
        "spec": {"template": {"spec": {"containers": [{"name": "web", "image": "web:v2"}]}}}
    });
    d.patch("web", &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .expect("set image");
    tokio::time::sleep(Duration::from_millis(300)).await;
    wait_rolled_out(&c, &d, "web").await;
    stop.store(true, Ordering::SeqCst);
    let _ = observer.await;
    let _ = rs_observer.await;
    let v = violations.lock().map(|v| v.clone()).unwrap_or_default();
    assert!(v.is_empty(), "bounds violated: {v:?}");
    let v = rs_violations.lock().map(|v| v.clone()).unwrap_or_default();
    assert!(v.is_empty(), "rs bounds violated: {v:?}");

    let rss = owned_rss(&rs, "web").await;
    assert_eq!(rss.len(), 2);
    assert_eq!((revision(&rss[0]), revision(&rss[1])), (1, 2));
    assert_eq!(rss[0].spec.as_ref().and_then(|s| s.replicas), Some(0));
    assert_eq!(image(&rss[1]).as_deref(), Some("web:v2"));
    assert_eq!(ann(&rss[1], "kubernetes.io/change-cause"), Some("v2"));
    assert_eq!(ann(&rss[0], "kubernetes.io/change-cause"), Some("v1"));
    let got = d.get("web").await.expect("get");
    assert_eq!(
        got.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(REVISION))
            .map(String::as_str),
        Some("2")
    );

    // rollout undo, as kubectl does it: JSON patch of /spec/template with the old RS's template
    // minus pod-template-hash.
    let mut tmpl =
        serde_json::to_value(rss[0].spec.as_ref().and_then(|s| s.template.clone())).expect("tmpl");
    if let Some(l) = tmpl
        .pointer_mut("/metadata/labels")
        .and_then(|l| l.as_object_mut())
    {
        l.remove("pod-template-hash");
    }
    let old_name = rss[0].metadata.name.clone();
    json_patch(
        &c.client,
        "web",
        json!([{"op": "replace", "path": "/spec/template", "value": tmpl}]),
    )
    .await;
    c.wait_for("undo rolled out", T, || async {
        let ok = d.get("web").await.is_ok_and(|d| {
            rolled_out(&d)
                && d.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(REVISION))
                    .map(String::as_str)
                    == Some("3")
        });
        ok && app_pods(&pods, "web")
            .await
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .count()
            == 4
    })
    .await;
    let rss = owned_rss(&rs, "web").await;
    assert_eq!(rss.len(), 2, "undo reuses the old RS");
    let back = rss
        .iter()
        .find(|r| r.metadata.name == old_name)
        .expect("old rs");
    assert_eq!(revision(back), 3);
    assert_eq!(
        ann(back, "deployment.kubernetes.io/revision-history"),
        Some("1")
    );
    assert_eq!(back.spec.as_ref().and_then(|s| s.replicas), Some(4));
    for p in app_pods(&pods, "web")
        .await
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
    {
        assert_eq!(
            p.spec
                .as_ref()
                .and_then(|s| s.containers.first())
                .and_then(|c| c.image.as_deref()),
            Some("web:v1")
        );
    }
}

/// RFC 6902 patch of a Deployment (kube is built without its `jsonpatch` feature, so the
/// request is assembled by hand with kubectl's content type).
async fn json_patch(client: &Client, name: &str, ops: serde_json::Value) {
    let mut req = kube::core::Request::new("/apis/apps/v1/namespaces/default/deployments")
        .patch(name, &PatchParams::default(), &Patch::Merge(&ops))
        .expect("patch request");
    req.headers_mut().insert(
        "content-type",
        "application/json-patch+json".parse().expect("header"),
    );
    client.request::<Deployment>(req).await.expect("json patch");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_resume_and_restart() {
    let c = common::TestCluster::start().await;
    let _n = c.add_node("n1").await;
    let (d, rs, pods) = apis(&c.client);
    d.create(
        &PostParams::default(),
        &deployment("web", 2, rolling(json!("25%"), json!("25%"))),
    )
    .await
    .expect("create");
    wait_rolled_out(&c, &d, "web").await;

    d.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"paused": true}})),
    )
    .await
    .expect("pause");
    c.wait_for("DeploymentPaused", T, || async {
        d.get("web").await.is_ok_and(|d| {
            cond(&d, "Progressing").is_some_and(|p| {
                p.status == "Unknown" && p.reason.as_deref() == Some("DeploymentPaused")
            })
        })
    })
    .await;
    set_image(&d, "web", "web:v2").await;
    scale(&d, "web", 4).await;
    c.wait_for("paused scale to 4", T, || async {
        let live = app_pods(&pods, "web").await;
        live.iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none() && ready(p))
            .count()
            == 4
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss = owned_rss(&rs, "web").await;
    assert_eq!(rss.len(), 1, "no new RS while paused");
    assert_eq!(image(&rss[0]).as_deref(), Some("web:v1"));

    d.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"paused": null}})),
    )
    .await
    .expect("resume");
    c.wait_for("resumed rollout", T, || async {
        d.get("web").await.is_ok_and(|d| rolled_out(&d)) && owned_rss(&rs, "web").await.len() == 2
    })
    .await;
    let rss = owned_rss(&rs, "web").await;
    assert_eq!(image(&rss[1]).as_deref(), Some("web:v2"));
    assert_eq!(rss[1].spec.as_ref().and_then(|s| s.replicas), Some(4));

    // rollout restart: a template annotation → a new RS.
    let patch = json!({"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": "2026-01-01T00:00:00Z"}}}}});
    d.patch("web", &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .expect("restart");
    c.wait_for("restart rolled out", T, || async {
        d.get("web").await.is_ok_and(|d| rolled_out(&d)) && owned_rss(&rs, "web").await.len() == 3
    })
    .await;
    let rss = owned_rss(&rs, "web").await;
    assert_eq!(revision(&rss[2]), 3);
    assert_eq!(rss[2].spec.as_ref().and_then(|s| s.replicas), Some(4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recreate_never_overlaps() {
    let c = common::TestCluster::start().await;
    let _n = c.add_node("n1").await;
    let (d, rs, pods) = apis(&c.client);
    d.create(
        &PostParams::default(),
        &deployment("rc", 3, json!({"type": "Recreate"})),
    )
    .await
    .expect("create");
    wait_rolled_out(&c, &d, "rc").await;

    let stop = Arc::new(AtomicBool::new(false));
    let overlap = Arc::new(AtomicBool::new(false));
    let observer = {
        let (stop, overlap, pods) = (stop.clone(), overlap.clone(), pods.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                let ps = app_pods(&pods, "rc").await;
                let img = |p: &Pod| {
                    p.spec
                        .as_ref()
                        .and_then(|s| s.containers.first())
                        .and_then(|c| c.image.clone())
                };
                let old = ps.iter().any(|p| img(p).as_deref() == Some("web:v1"));
                let new = ps.iter().any(|p| img(p).as_deref() == Some("web:v2"));
                if old && new {
                    overlap.store(true, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    set_image(&d, "rc", "web:v2").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.wait_for("recreate rolled out", T, || async {
        d.get("rc").await.is_ok_and(|d| rolled_out(&d)) && owned_rss(&rs, "rc").await.len() == 2
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    let _ = observer.await;
    assert!(
        !overlap.load(Ordering::SeqCst),
        "old and new pods coexisted"
    );
    let rss = owned_rss(&rs, "rc").await;
    assert_eq!(rss[0].spec.as_ref().and_then(|s| s.replicas), Some(0));
    assert_eq!(rss[1].spec.as_ref().and_then(|s| s.replicas), Some(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_deadline_exceeded() {
    let c = common::TestCluster::start().await;
    let node = c.add_node("n1").await;
    node.set_ready_delay(Duration::from_secs(3600));
    let (d, _rs, _pods) = apis(&c.client);
    let mut dep = deployment("slow", 2, rolling(json!("25%"), json!("25%")));
    if let Some(s) = dep.spec.as_mut() {
        s.progress_deadline_seconds = Some(3);
    }
    d.create(&PostParams::default(), &dep)
        .await
        .expect("create");
    c.wait_for(
        "ProgressDeadlineExceeded",
        Duration::from_secs(20),
        || async {
            d.get("slow").await.is_ok_and(|d| {
                cond(&d, "Progressing").is_some_and(|p| {
                    p.status == "False"
                        && p.reason.as_deref() == Some("ProgressDeadlineExceeded")
                        && p.message
                            .as_deref()
                            .is_some_and(|m| m.ends_with("has timed out progressing."))
                })
            })
        },
    )
    .await;
    let got = d.get("slow").await.expect("get");
    let av = cond(&got, "Available").expect("Available");
    assert_eq!(
        (av.status.as_str(), av.reason.as_deref()),
        ("False", Some("MinimumReplicasUnavailable"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revision_history_limit_cleans_old_rss() {
    let c = common::TestCluster::start().await;
    let _n = c.add_node("n1").await;
    let (d, rs, _pods) = apis(&c.client);
    let mut dep = deployment("hist", 1, rolling(json!("25%"), json!("25%")));
    if let Some(s) = dep.spec.as_mut() {
        s.revision_history_limit = Some(1);
    }
    d.create(&PostParams::default(), &dep)
        .await
        .expect("create");
    wait_rolled_out(&c, &d, "hist").await;
    for img in ["web:v2", "web:v3", "web:v4"] {
        set_image(&d, "hist", img).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        wait_rolled_out(&c, &d, "hist").await;
    }
    c.wait_for("only 1 old RS kept", T, || async {
        owned_rss(&rs, "hist").await.len() == 2
    })
    .await;
    let rss = owned_rss(&rs, "hist").await;
    assert_eq!((revision(&rss[0]), revision(&rss[1])), (3, 4));
    assert_eq!(image(&rss[1]).as_deref(), Some("web:v4"));
}

/// Mid-rollout scaling is proportional (k8s-semantics §1.7 doc example): R=10, surge 3,
/// unavailable 2, new pods never ready → old 8 / new 5; scaling to 15 → old 11 / new 7.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proportional_scaling_mid_rollout_and_events() {
    let c = common::TestCluster::start().await;
    let _n1 = c.add_node("n1").await;
    let n2 = c.add_node("n2").await;
    n2.set_ready_delay(Duration::from_secs(3600));
    let (d, rs, _pods) = apis(&c.client);
    let mut dep = deployment("web", 10, rolling(json!(3), json!(2)));
    if let Some(s) = dep.spec.as_mut().and_then(|s| s.template.spec.as_mut()) {
        s.node_selector = Some(BTreeMap::from([(
            "kubernetes.io/hostname".into(),
            "n1".into(),
        )]));
    }
    d.create(&PostParams::default(), &dep)
        .await
        .expect("create");
    wait_rolled_out(&c, &d, "web").await;

    // The new template lands on n2, where pods never become ready.
    let patch = json!({"spec": {"template": {"spec": {
        "nodeSelector": {"kubernetes.io/hostname": "n2"},
        "containers": [{"name": "web", "image": "web:v2"}]}}}});
    d.patch("web", &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .expect("set image");
    let sizes = |v: &[ReplicaSet]| -> Vec<i32> {
        v.iter()
            .map(|r| r.spec.as_ref().and_then(|s| s.replicas).unwrap_or(-1))
            .collect()
    };
    c.wait_for("stuck at old 8 / new 5", T, || async {
        sizes(&owned_rss(&rs, "web").await) == vec![8, 5]
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        sizes(&owned_rss(&rs, "web").await),
        vec![8, 5],
        "stable while new pods are unready"
    );

    scale(&d, "web", 15).await;
    c.wait_for("old 11 / new 7", T, || async {
        sizes(&owned_rss(&rs, "web").await) == vec![11, 7]
    })
    .await;
    let rss = owned_rss(&rs, "web").await;
    for r in &rss {
        assert_eq!(
            ann(r, "deployment.kubernetes.io/desired-replicas"),
            Some("15")
        );
        assert_eq!(ann(r, "deployment.kubernetes.io/max-replicas"), Some("18"));
    }

    // ScalingReplicaSet events with upstream wording.
    let old_name = rss[0].metadata.name.clone().unwrap_or_default();
    let new_name = rss[1].metadata.name.clone().unwrap_or_default();
    let events: Api<k8s_openapi::api::core::v1::Event> =
        Api::namespaced(c.client.clone(), "default");
    let want = [
        format!("Scaled up replica set {old_name} from 0 to 10"),
        format!("Scaled up replica set {new_name} from 0 to 3"),
        format!("Scaled down replica set {old_name} from 10 to 8"),
        format!("Scaled up replica set {new_name} from 3 to 5"),
        format!("Scaled up replica set {old_name} from 8 to 11"),
        format!("Scaled up replica set {new_name} from 5 to 7"),
    ];
    c.wait_for("ScalingReplicaSet events", T, || async {
        let got: Vec<String> = events
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e.reason.as_deref() == Some("ScalingReplicaSet"))
            .filter_map(|e| e.message)
            .collect();
        want.iter().all(|w| got.contains(w))
    })
    .await;
}
