//! Job controller against a real API server: orphaned pods that match the selector are
//! adopted again (upstream's "should adopt matching orphans and release non-matching pods").

mod common;

use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

fn owned_by(p: &Pod, uid: &str) -> bool {
    p.metadata
        .owner_references
        .iter()
        .flatten()
        .any(|r| r.uid == uid && r.controller == Some(true))
}

async fn pods_with(pods: &Api<Pod>, uid: &str) -> Vec<Pod> {
    pods.list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none() && owned_by(p, uid))
        .collect()
}

#[tokio::test]
async fn adopts_matching_orphans_and_releases_relabelled_pods() {
    let c = common::TestCluster::start().await;
    let _n1 = c.add_node("n1").await;
    let jobs: Api<Job> = Api::namespaced(c.client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let job: Job = serde_json::from_value(json!({
        "metadata": {"name": "adopter"},
        "spec": {
            "parallelism": 2,
            "completions": 4,
            "manualSelector": true,
            "selector": {"matchLabels": {"job": "adopter"}},
            "template": {
                "metadata": {"labels": {"job": "adopter"}},
                "spec": {"restartPolicy": "Never",
                    "containers": [{"name": "c", "image": "busybox", "command": ["sleep", "3600"]}]}
            }
        }
    }))
    .expect("job json");
    let job = jobs
        .create(&PostParams::default(), &job)
        .await
        .expect("create job");
    let uid = job.metadata.uid.clone().expect("uid");
    c.wait_for("2 pods", WAIT, || async {
        pods_with(&pods, &uid).await.len() == 2
    })
    .await;
    let victim = pods_with(&pods, &uid).await[0]
        .metadata
        .name
        .clone()
        .expect("name");

    // Orphan one pod: the Job adopts it back instead of creating a third.
    pods.patch(
        &victim,
        &PatchParams::default(),
        &Patch::Merge(&json!({"metadata": {"ownerReferences": null}})),
    )
    .await
    .expect("orphan the pod");
    c.wait_for("orphan adopted", WAIT, || async {
        pods.get(&victim).await.is_ok_and(|p| owned_by(&p, &uid))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let owned = pods_with(&pods, &uid).await;
    assert_eq!(owned.len(), 2, "an adopted pod counts as active");

    // Relabel it: released (owner reference removed, pod kept) and replaced.
    pods.patch(
        &victim,
        &PatchParams::default(),
        &Patch::Merge(&json!({"metadata": {"labels": {"job": "gone"}}})),
    )
    .await
    .expect("relabel");
    c.wait_for("released", WAIT, || async {
        pods.get(&victim).await.is_ok_and(|p| {
            p.metadata
                .owner_references
                .as_ref()
                .is_none_or(|r| r.is_empty())
        })
    })
    .await;
    c.wait_for("replacement", WAIT, || async {
        let owned = pods_with(&pods, &uid).await;
        owned.len() == 2
            && owned
                .iter()
                .all(|p| p.metadata.name.as_ref() != Some(&victim))
    })
    .await;
}

// ---- Indexed completion, podFailurePolicy, backoffLimitPerIndex, successPolicy,
// podReplacementPolicy. No node runs these pods: each test finishes them by writing their
// status, as the kubelet would.

const INDEX: &str = "batch.kubernetes.io/job-completion-index";

async fn create_job(c: &common::TestCluster, spec: serde_json::Value) -> (Job, String) {
    let jobs: Api<Job> = Api::namespaced(c.client.clone(), "default");
    let job: Job = serde_json::from_value(spec).expect("job json");
    let job = jobs
        .create(&PostParams::default(), &job)
        .await
        .expect("create job");
    let uid = job.metadata.uid.clone().expect("uid");
    (job, uid)
}

fn job_spec(name: &str, spec: serde_json::Value) -> serde_json::Value {
    let mut spec = spec;
    spec["template"] = json!({
        "spec": {"restartPolicy": "Never",
            "containers": [{"name": "c", "image": "busybox", "command": ["true"]}]}
    });
    json!({"metadata": {"name": name}, "spec": spec})
}

fn index_of(p: &Pod) -> Option<String> {
    p.metadata.annotations.as_ref()?.get(INDEX).cloned()
}

/// The live pod of `index` (not finished, not being deleted).
async fn pod_at(pods: &Api<Pod>, uid: &str, index: &str) -> Option<Pod> {
    pods_with(pods, uid).await.into_iter().find(|p| {
        index_of(p).as_deref() == Some(index)
            && !matches!(
                p.status.as_ref().and_then(|s| s.phase.as_deref()),
                Some("Succeeded" | "Failed")
            )
    })
}

/// Ends a pod as the kubelet would: phase, the container's exit code, extra conditions.
async fn finish(pods: &Api<Pod>, name: &str, code: i32, conditions: serde_json::Value) {
    let t = jiff::Timestamp::now().to_string();
    let phase = if code == 0 { "Succeeded" } else { "Failed" };
    let status = json!({"status": {"phase": phase, "conditions": conditions,
        "containerStatuses": [{"name": "c", "image": "busybox", "imageID": "", "ready": false,
            "restartCount": 0, "state": {"terminated": {"exitCode": code,
                "startedAt": t, "finishedAt": t}}}]}});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("pod status");
}

async fn job_status(c: &common::TestCluster, name: &str) -> serde_json::Value {
    let jobs: Api<Job> = Api::namespaced(c.client.clone(), "default");
    jobs.get(name)
        .await
        .ok()
        .and_then(|j| serde_json::to_value(j.status).ok())
        .unwrap_or_default()
}

fn condition(status: &serde_json::Value, ty: &str) -> Option<serde_json::Value> {
    status["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == ty && c["status"] == "True")
        .cloned()
}

#[tokio::test]
async fn indexed_job_runs_each_index_once_and_reports_completed_indexes() {
    let c = common::TestCluster::start().await;
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let (_, uid) = create_job(
        &c,
        job_spec(
            "idx",
            json!({"completions": 3, "parallelism": 2, "completionMode": "Indexed"}),
        ),
    )
    .await;
    c.wait_for("indexes 0 and 1", WAIT, || async {
        let mut ix: Vec<_> = pods_with(&pods, &uid)
            .await
            .iter()
            .filter_map(index_of)
            .collect();
        ix.sort();
        ix == ["0", "1"]
    })
    .await;
    let p0 = pod_at(&pods, &uid, "0").await.expect("pod 0");
    let name0 = p0.metadata.name.clone().expect("name");
    assert!(name0.starts_with("idx-0-"), "{name0}");
    assert_eq!(
        p0.metadata.labels.as_ref().and_then(|l| l.get(INDEX)),
        Some(&"0".to_string())
    );
    let spec = p0.spec.clone().expect("spec");
    assert_eq!(spec.hostname.as_deref(), Some("idx-0"));
    let env = serde_json::to_value(&spec.containers[0].env).expect("env");
    assert_eq!(
        env,
        json!([{"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {"apiVersion": "v1",
            "fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}}])
    );

    // Index 1 succeeds: index 2 starts; index 1 is never run again.
    let p1 = pod_at(&pods, &uid, "1").await.expect("pod 1");
    finish(
        &pods,
        p1.metadata.name.as_deref().expect("name"),
        0,
        json!([]),
    )
    .await;
    c.wait_for("index 2 started", WAIT, || async {
        pod_at(&pods, &uid, "2").await.is_some()
    })
    .await;
    c.wait_for("completedIndexes 1", WAIT, || async {
        job_status(&c, "idx").await["completedIndexes"] == "1"
    })
    .await;
    assert!(pod_at(&pods, &uid, "1").await.is_none());
    for ix in ["0", "2"] {
        let p = pod_at(&pods, &uid, ix).await.expect("pod");
        finish(
            &pods,
            p.metadata.name.as_deref().expect("name"),
            0,
            json!([]),
        )
        .await;
    }
    c.wait_for("Complete", WAIT, || async {
        let s = job_status(&c, "idx").await;
        condition(&s, "Complete").is_some()
            && s["completedIndexes"] == "0-2"
            && s["succeeded"] == 3
            && condition(&s, "SuccessCriteriaMet").is_some()
    })
    .await;
}

#[tokio::test]
async fn pod_failure_policy_ignores_counts_and_fails_the_job() {
    let c = common::TestCluster::start().await;
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let rules = json!({"rules": [
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
        {"action": "Ignore", "onExitCodes": {"operator": "In", "values": [1]}},
        {"action": "FailJob", "onExitCodes": {"containerName": "c", "operator": "In", "values": [42]}},
    ]});
    let (_, uid) = create_job(
        &c,
        job_spec(
            "pfp",
            json!({"completions": 1, "backoffLimit": 0, "podFailurePolicy": rules}),
        ),
    )
    .await;
    let live = || async {
        pods_with(&pods, &uid)
            .await
            .into_iter()
            .find(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Failed"))
    };
    c.wait_for("a pod", WAIT, || async { live().await.is_some() })
        .await;
    // Exit code 1 and a disruption are ignored: replaced at once, no failure counted, even
    // with backoffLimit 0.
    let first = live().await.and_then(|p| p.metadata.name).expect("pod");
    finish(&pods, &first, 1, json!([])).await;
    c.wait_for("replacement 1", WAIT, || async {
        live()
            .await
            .is_some_and(|p| p.metadata.name.as_ref() != Some(&first))
    })
    .await;
    let second = live().await.and_then(|p| p.metadata.name).expect("pod");
    let disrupted = json!([{"type": "DisruptionTarget", "status": "True",
        "reason": "EvictionByEvictionAPI", "lastTransitionTime": jiff::Timestamp::now().to_string()}]);
    finish(&pods, &second, 137, disrupted).await;
    c.wait_for("replacement 2", WAIT, || async {
        live().await.is_some_and(|p| {
            let n = p.metadata.name.clone();
            n != Some(first.clone()) && n != Some(second.clone())
        })
    })
    .await;
    let s = job_status(&c, "pfp").await;
    assert!(
        s["failed"].is_null(),
        "ignored failures are not counted: {s}"
    );
    assert!(condition(&s, "Failed").is_none());

    // Exit code 42 matches the FailJob rule.
    let third = live().await.and_then(|p| p.metadata.name).expect("pod");
    finish(&pods, &third, 42, json!([])).await;
    c.wait_for("Failed by policy", WAIT, || async {
        let s = job_status(&c, "pfp").await;
        let (Some(f), Some(t)) = (condition(&s, "Failed"), condition(&s, "FailureTarget")) else {
            return false;
        };
        let msg = format!(
            "Container c for pod default/{third} failed with exit code 42 matching FailJob rule at index 2"
        );
        f["reason"] == "PodFailurePolicy" && f["message"] == msg.as_str() && t["reason"] == "PodFailurePolicy"
    })
    .await;

    // No rule matches exit code 3: counted, over backoffLimit 0.
    let (_, uid2) = create_job(
        &c,
        job_spec(
            "pfp-count",
            json!({"completions": 1, "backoffLimit": 0, "podFailurePolicy": {"rules": [
                {"action": "Count", "onExitCodes": {"operator": "In", "values": [3]}}]}}),
        ),
    )
    .await;
    c.wait_for("a pod", WAIT, || async {
        !pods_with(&pods, &uid2).await.is_empty()
    })
    .await;
    let p = pods_with(&pods, &uid2).await.remove(0);
    finish(
        &pods,
        p.metadata.name.as_deref().expect("name"),
        3,
        json!([]),
    )
    .await;
    c.wait_for("BackoffLimitExceeded", WAIT, || async {
        let s = job_status(&c, "pfp-count").await;
        condition(&s, "Failed").is_some_and(|f| f["reason"] == "BackoffLimitExceeded")
            && s["failed"] == 1
    })
    .await;
}

#[tokio::test]
async fn backoff_limit_per_index_fails_only_that_index() {
    let c = common::TestCluster::start().await;
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let (_, uid) = create_job(
        &c,
        job_spec(
            "perindex",
            json!({"completions": 2, "parallelism": 2, "completionMode": "Indexed",
                   "backoffLimitPerIndex": 1}),
        ),
    )
    .await;
    c.wait_for("index 0", WAIT, || async {
        pod_at(&pods, &uid, "0").await.is_some() && pod_at(&pods, &uid, "1").await.is_some()
    })
    .await;
    let first = pod_at(&pods, &uid, "0")
        .await
        .and_then(|p| p.metadata.name)
        .expect("pod");
    let failed_at = std::time::Instant::now();
    finish(&pods, &first, 1, json!([])).await;
    // The retry of index 0 waits out the per-index back-off (10 s) and carries the count.
    c.wait_for("retry of index 0", WAIT, || async {
        pod_at(&pods, &uid, "0").await.is_some()
    })
    .await;
    assert!(
        failed_at.elapsed() >= Duration::from_secs(9),
        "{:?}",
        failed_at.elapsed()
    );
    let retry = pod_at(&pods, &uid, "0").await.expect("retry");
    assert_eq!(
        retry
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("batch.kubernetes.io/job-index-failure-count")),
        Some(&"1".to_string())
    );
    let s = job_status(&c, "perindex").await;
    assert_eq!(s["failedIndexes"], "", "{s}");
    finish(
        &pods,
        retry.metadata.name.as_deref().expect("name"),
        1,
        json!([]),
    )
    .await;
    c.wait_for("failedIndexes 0", WAIT, || async {
        job_status(&c, "perindex").await["failedIndexes"] == "0"
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        pod_at(&pods, &uid, "0").await.is_none(),
        "a failed index is not retried"
    );
    let one = pod_at(&pods, &uid, "1")
        .await
        .and_then(|p| p.metadata.name)
        .expect("pod 1");
    finish(&pods, &one, 0, json!([])).await;
    c.wait_for("Failed with FailedIndexes", WAIT, || async {
        let s = job_status(&c, "perindex").await;
        condition(&s, "Failed").is_some_and(|f| {
            f["reason"] == "FailedIndexes" && f["message"] == "Job has failed indexes"
        }) && s["failed"] == 2
            && s["completedIndexes"] == "1"
    })
    .await;
}

#[tokio::test]
async fn success_policy_completes_early_and_stops_the_rest() {
    let c = common::TestCluster::start().await;
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let (_, uid) = create_job(
        &c,
        job_spec(
            "leader",
            json!({"completions": 3, "parallelism": 3, "completionMode": "Indexed",
                   "successPolicy": {"rules": [{"succeededIndexes": "0"}]}}),
        ),
    )
    .await;
    c.wait_for("3 pods", WAIT, || async {
        pods_with(&pods, &uid).await.len() == 3
    })
    .await;
    let leader = pod_at(&pods, &uid, "0")
        .await
        .and_then(|p| p.metadata.name)
        .expect("pod 0");
    finish(&pods, &leader, 0, json!([])).await;
    c.wait_for("Complete by successPolicy", WAIT, || async {
        let s = job_status(&c, "leader").await;
        let ok = |ty| {
            condition(&s, ty).is_some_and(|f| {
                f["reason"] == "SuccessPolicy" && f["message"] == "Matched rules at index 0"
            })
        };
        ok("SuccessCriteriaMet") && ok("Complete") && s["completedIndexes"] == "0"
    })
    .await;
    assert!(pod_at(&pods, &uid, "1").await.is_none());
    assert!(pod_at(&pods, &uid, "2").await.is_none());
}

#[tokio::test]
async fn pod_replacement_policy_failed_waits_for_terminal_pods() {
    let c = common::TestCluster::start().await;
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let hold = |name: &str, policy: &str| {
        json!({"metadata": {"name": name}, "spec": {"completions": 1,
            "podReplacementPolicy": policy,
            "template": {"metadata": {"finalizers": ["test.skiff.dev/hold"]},
                "spec": {"restartPolicy": "Never",
                    "containers": [{"name": "c", "image": "busybox"}]}}}})
    };
    let (_, uid_f) = create_job(&c, hold("only-failed", "Failed")).await;
    let (_, uid_t) = create_job(&c, hold("terminating-too", "TerminatingOrFailed")).await;
    let mut first = Vec::new();
    for uid in [&uid_f, &uid_t] {
        c.wait_for("a pod", WAIT, || async {
            pods_with(&pods, uid).await.len() == 1
        })
        .await;
        let name = pods_with(&pods, uid).await[0]
            .metadata
            .name
            .clone()
            .expect("name");
        pods.delete(&name, &Default::default())
            .await
            .expect("delete");
        first.push(name);
    }
    let all = |uid: String| {
        let pods = pods.clone();
        async move {
            pods.list(&ListParams::default())
                .await
                .map(|l| l.items)
                .unwrap_or_default()
                .into_iter()
                .filter(|p| owned_by(p, &uid))
                .collect::<Vec<_>>()
        }
    };
    // TerminatingOrFailed: replaced while the old pod still terminates.
    c.wait_for("replacement while terminating", WAIT, || async {
        all(uid_t.clone()).await.len() == 2
    })
    .await;
    // Failed: no replacement; the terminating pod is reported.
    c.wait_for("terminating 1", WAIT, || async {
        job_status(&c, "only-failed").await["terminating"] == 1
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        all(uid_f.clone()).await.len(),
        1,
        "not replaced while terminating"
    );
    finish(&pods, &first[0], 137, json!([])).await;
    c.wait_for("replacement once failed", WAIT, || async {
        all(uid_f.clone()).await.len() == 2
    })
    .await;
    // Let every held pod go.
    for uid in [uid_f, uid_t] {
        for p in all(uid).await {
            let _ = pods
                .patch(
                    p.metadata.name.as_deref().unwrap_or_default(),
                    &PatchParams::default(),
                    &Patch::Merge(&json!({"metadata": {"finalizers": null}})),
                )
                .await;
        }
    }
}

#[tokio::test]
async fn jobs_managed_by_another_controller_are_left_alone() {
    let c = common::TestCluster::start().await;
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let (_, uid) = create_job(
        &c,
        job_spec(
            "elsewhere",
            json!({"completions": 1, "managedBy": "example.com/batch-controller"}),
        ),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(pods_with(&pods, &uid).await.is_empty());
    assert!(job_status(&c, "elsewhere").await["startTime"].is_null());
}
