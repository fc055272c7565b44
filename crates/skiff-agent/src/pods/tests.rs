//! Unit tests of one pod worker over the fake runtime (`testing`): crash and image-pull
//! back-off, restart policies, init-container order, probes, status and termination.

use std::time::Duration;

use serde_json::{json, Value};
use skiff_runtime::Status;

use super::testing::{pod, Harness};

fn app(status: &Value) -> &Value {
    &status["containerStatuses"][0]
}

fn condition<'a>(status: &'a Value, typ: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == typ))
        .unwrap_or(&Value::Null)
}

fn one_container(policy: &str) -> Value {
    json!({"restartPolicy": policy, "containers": [{"name": "app", "image": "bb:1"}]})
}

#[tokio::test(start_paused = true)]
async fn crash_loop_backoff_doubles_and_caps() {
    let mut h = Harness::new();
    h.rt.add_image("bb:1");
    let p = pod(one_container("Always"));
    h.sync(&p).await;
    // The first crash restarts at once.
    h.rt.exit("app", 1, Duration::ZERO);
    let st = h.sync(&p).await;
    assert_eq!(h.rt.instances("app")[0].0, 1);
    assert_eq!(app(&st)["restartCount"], 1);
    let mut restarts = 1;
    for delay in [10u64, 20, 40, 80, 160, 300, 300] {
        h.rt.exit("app", 1, Duration::ZERO);
        let st = h.sync(&p).await;
        let waiting = &app(&st)["state"]["waiting"];
        assert_eq!(waiting["reason"], "CrashLoopBackOff", "{st}");
        let msg = waiting["message"].as_str().unwrap_or_default();
        assert!(msg.starts_with(&format!("back-off {delay}s ")), "{msg}");
        assert_eq!(app(&st)["lastState"]["terminated"]["exitCode"], 1);
        assert_eq!(h.rt.instances("app")[0].0, restarts, "held back");
        // Still inside the delay: held back again.
        h.rt.exit("app", 1, Duration::from_secs(delay - 2));
        h.sync(&p).await;
        assert_eq!(
            h.rt.instances("app")[0].0,
            restarts,
            "held back at {delay}s"
        );
        // Past it: restarted.
        h.rt.exit("app", 1, Duration::from_secs(delay + 1));
        let st = h.sync(&p).await;
        restarts += 1;
        assert_eq!(
            h.rt.instances("app")[0].0,
            restarts,
            "restarted after {delay}s"
        );
        assert!(app(&st)["state"]["running"].is_object(), "{st}");
        assert_eq!(app(&st)["restartCount"], restarts);
    }
    // Only the current and the previous instance are kept.
    assert_eq!(h.rt.instances("app").len(), 2);
}

#[tokio::test(start_paused = true)]
async fn image_pull_backoff_then_success() {
    let mut h = Harness::new();
    h.rt.fail_pulls("registry.example/app:1", 2);
    let p = pod(json!({"containers": [{"name": "app", "image": "registry.example/app:1"}]}));
    let st = h.sync(&p).await;
    assert_eq!(app(&st)["state"]["waiting"]["reason"], "ErrImagePull");
    assert_eq!(h.rt.pulls(), 1);
    // Inside the back-off: no pull.
    let st = h.sync(&p).await;
    assert_eq!(app(&st)["state"]["waiting"]["reason"], "ImagePullBackOff");
    assert_eq!(h.rt.pulls(), 1);
    tokio::time::advance(Duration::from_secs(10)).await;
    let st = h.sync(&p).await;
    assert_eq!(app(&st)["state"]["waiting"]["reason"], "ErrImagePull");
    assert_eq!(h.rt.pulls(), 2);
    // The delay doubled to 20 s.
    tokio::time::advance(Duration::from_secs(10)).await;
    let st = h.sync(&p).await;
    assert_eq!(app(&st)["state"]["waiting"]["reason"], "ImagePullBackOff");
    assert_eq!(h.rt.pulls(), 2);
    tokio::time::advance(Duration::from_secs(10)).await;
    let st = h.sync(&p).await;
    assert_eq!(h.rt.pulls(), 3);
    assert!(app(&st)["state"]["running"].is_object(), "{st}");
    assert!(app(&st)["imageID"]
        .as_str()
        .is_some_and(|i| i.starts_with("sha256:")));
    assert_eq!(st["phase"], "Running");
}

#[tokio::test(start_paused = true)]
async fn image_never_pulled_with_policy_never() {
    let mut h = Harness::new();
    let p = pod(json!({"containers": [{"name": "app", "image": "bb:2",
        "imagePullPolicy": "Never"}]}));
    let st = h.sync(&p).await;
    assert_eq!(app(&st)["state"]["waiting"]["reason"], "ErrImageNeverPull");
    assert_eq!(h.rt.pulls(), 0);
    assert_eq!(st["phase"], "Pending");
}

#[tokio::test(start_paused = true)]
async fn readiness_failure_sets_ready_false() {
    let mut h = Harness::new();
    h.rt.add_image("bb:1");
    let p = pod(json!({"containers": [{"name": "app", "image": "bb:1",
        "readinessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 10,
                           "failureThreshold": 2}}]}));
    let st = h.sync(&p).await;
    assert_eq!(condition(&st, "Ready")["status"], "False");
    // Running: the probe succeeds, the pod is ready.
    let st = h.sync(&p).await;
    assert_eq!(app(&st)["ready"], true);
    assert_eq!(condition(&st, "Ready")["status"], "True");
    assert_eq!(condition(&st, "ContainersReady")["status"], "True");
    let probes = |h: &Harness| h.rt.log().iter().filter(|l| *l == "exec app").count();
    assert_eq!(probes(&h), 1);
    h.rt.set_exec("app", false, Duration::ZERO);
    // Not due before its period.
    h.sync(&p).await;
    assert_eq!(probes(&h), 1);
    tokio::time::advance(Duration::from_secs(10)).await;
    let st = h.sync(&p).await;
    assert_eq!(probes(&h), 2);
    assert_eq!(
        app(&st)["ready"],
        true,
        "one failure is under the threshold"
    );
    tokio::time::advance(Duration::from_secs(10)).await;
    let st = h.sync(&p).await;
    assert_eq!(app(&st)["ready"], false);
    let ready = condition(&st, "Ready");
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], "ContainersNotReady");
    assert_eq!(
        ready["message"], "containers with unready status: [app]",
        "{st}"
    );
    assert_eq!(st["phase"], "Running");
    // A readiness failure never restarts the container.
    assert_eq!(h.rt.instances("app").len(), 1);
    // Events go out in the background.
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    let unhealthy = h
        .requests("POST", "/events")
        .iter()
        .filter(|(_, b)| b["reason"] == "Unhealthy")
        .count();
    assert!(unhealthy >= 1, "an Unhealthy event");
}

#[tokio::test(start_paused = true)]
async fn liveness_failure_kills_and_restarts() {
    let mut h = Harness::new();
    h.rt.add_image("bb:1");
    let p = pod(
        json!({"terminationGracePeriodSeconds": 7, "containers": [{"name": "app",
        "image": "bb:1", "livenessProbe": {"exec": {"command": ["true"]},
        "periodSeconds": 5, "failureThreshold": 1}}]}),
    );
    h.sync(&p).await;
    h.rt.set_exec("app", false, Duration::ZERO);
    h.sync(&p).await;
    assert!(
        h.rt.log().contains(&"stop app 7s".to_string()),
        "{:?}",
        h.rt.log()
    );
    let st = h.sync(&p).await;
    assert_eq!(h.rt.instances("app")[0].0, 1, "restarted");
    assert_eq!(app(&st)["restartCount"], 1);
    assert_eq!(app(&st)["lastState"]["terminated"]["exitCode"], 137);
}

#[tokio::test(start_paused = true)]
async fn restart_policy_outcomes() {
    // (policy, exit code, restarted, phase)
    let cases = [
        ("Always", 0, true, "Running"),
        ("Always", 1, true, "Running"),
        ("OnFailure", 0, false, "Succeeded"),
        ("OnFailure", 1, true, "Running"),
        ("Never", 0, false, "Succeeded"),
        ("Never", 1, false, "Failed"),
    ];
    for (policy, code, restarted, phase) in cases {
        let mut h = Harness::new();
        h.rt.add_image("bb:1");
        let p = pod(one_container(policy));
        h.sync(&p).await;
        h.rt.exit("app", code, Duration::ZERO);
        let st = h.sync(&p).await;
        let newest = h.rt.instances("app")[0];
        assert_eq!(newest.0 == 1, restarted, "{policy}/{code}");
        assert_eq!(st["phase"], phase, "{policy}/{code}: {st}");
        if !restarted {
            let reason = if code == 0 { "Completed" } else { "Error" };
            assert_eq!(app(&st)["state"]["terminated"]["reason"], reason);
            assert_eq!(newest.1, Status::Exited);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn init_containers_run_in_order() {
    let mut h = Harness::new();
    h.rt.add_image("bb:1");
    let p = pod(json!({"initContainers": [{"name": "one", "image": "bb:1"},
                                          {"name": "two", "image": "bb:1"}],
                       "containers": [{"name": "app", "image": "bb:1"}]}));
    let st = h.sync(&p).await;
    assert_eq!(h.rt.log(), ["start one"]);
    assert_eq!(st["phase"], "Pending");
    assert_eq!(app(&st)["state"]["waiting"]["reason"], "PodInitializing");
    assert_eq!(condition(&st, "Initialized")["status"], "False");
    // Running: nothing else starts.
    h.sync(&p).await;
    assert_eq!(h.rt.log(), ["start one"]);
    h.rt.exit("one", 0, Duration::ZERO);
    h.sync(&p).await;
    assert_eq!(h.rt.log(), ["start one", "start two"]);
    // A failed init container is restarted (policy Always), the app still waits.
    h.rt.exit("two", 1, Duration::ZERO);
    let st = h.sync(&p).await;
    assert_eq!(h.rt.log(), ["start one", "start two", "start two"]);
    assert_eq!(st["initContainerStatuses"][1]["restartCount"], 1);
    assert_eq!(st["phase"], "Pending");
    h.rt.exit("two", 0, Duration::ZERO);
    let st = h.sync(&p).await;
    assert_eq!(
        h.rt.log(),
        ["start one", "start two", "start two", "start app"]
    );
    assert_eq!(condition(&st, "Initialized")["status"], "True");
    assert_eq!(st["phase"], "Running");
    assert_eq!(st["initContainerStatuses"][0]["ready"], true);
    assert_eq!(
        st["initContainerStatuses"][0]["state"]["terminated"]["reason"],
        "Completed"
    );
}

#[tokio::test(start_paused = true)]
async fn failed_init_container_fails_a_never_pod() {
    let mut h = Harness::new();
    h.rt.add_image("bb:1");
    let p = pod(json!({"restartPolicy": "Never",
                       "initContainers": [{"name": "one", "image": "bb:1"}],
                       "containers": [{"name": "app", "image": "bb:1"}]}));
    h.sync(&p).await;
    h.rt.exit("one", 2, Duration::ZERO);
    let st = h.sync(&p).await;
    assert_eq!(st["phase"], "Failed");
    assert_eq!(
        h.rt.log(),
        ["start one"],
        "neither restarted nor the app started"
    );
}

/// A pod marked for deletion with `grace` seconds and a preStop exec hook taking `hook`.
fn deleted_pod(grace: i64, hook: bool) -> k8s_openapi::api::core::v1::Pod {
    let mut c = json!({"name": "app", "image": "bb:1"});
    if hook {
        c["lifecycle"] = json!({"preStop": {"exec": {"command": ["drain"]}}});
    }
    let mut p = pod(json!({"containers": [c, {"name": "side", "image": "bb:1"}]}));
    p.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        jiff::Timestamp::now(),
    ));
    p.metadata.deletion_grace_period_seconds = Some(grace);
    p
}

async fn terminate(grace: i64, hook: Option<Duration>) -> Harness {
    let mut h = Harness::new();
    h.rt.add_image("bb:1");
    let running = deleted_pod(grace, hook.is_some());
    let mut alive = running.clone();
    alive.metadata.deletion_timestamp = None;
    h.sync(&alive).await;
    if let Some(takes) = hook {
        h.rt.set_exec("app", true, takes);
    }
    h.worker.ctx.containers.invalidate();
    h.worker.terminate(&running).await;
    h
}

#[tokio::test(start_paused = true)]
async fn termination_runs_pre_stop_then_stops_with_the_rest_of_the_grace() {
    let h = terminate(30, Some(Duration::from_secs(5))).await;
    let log = h.rt.log();
    let after_start = &log[2..];
    assert_eq!(after_start[0], "exec app", "preStop first: {log:?}");
    // Both containers get what is left of the 30 s (25 s), in parallel.
    let stops: Vec<&String> = after_start
        .iter()
        .filter(|l| l.starts_with("stop"))
        .collect();
    assert_eq!(stops.len(), 2, "{log:?}");
    assert!(stops.iter().all(|s| s.ends_with(" 25s")), "{log:?}");
    assert!(after_start.contains(&"remove app".to_string()));
    assert!(after_start.contains(&"remove side".to_string()));
    assert_eq!(log.last().map(String::as_str), Some("remove sandbox"));
    assert!(h.rt.instances("app").is_empty());
    // Then the final delete: grace 0, for this pod uid only.
    let deletes = h.requests("DELETE", "/namespaces/default/pods/web");
    assert_eq!(deletes.len(), 1);
    assert_eq!(deletes[0].1["gracePeriodSeconds"], 0);
    assert_eq!(
        deletes[0].1["preconditions"]["uid"],
        super::testing::UID,
        "{:?}",
        deletes[0].1
    );
}

#[tokio::test(start_paused = true)]
async fn termination_kills_after_a_pre_stop_that_overruns_the_grace() {
    let h = terminate(10, Some(Duration::from_secs(60))).await;
    let log = h.rt.log();
    // The hook is cut off at the grace period; the containers then get upstream's one-off
    // 2 s before they are killed.
    let stops: Vec<&String> = log.iter().filter(|l| l.starts_with("stop")).collect();
    assert_eq!(stops.len(), 2, "{log:?}");
    assert!(stops.iter().all(|s| s.ends_with(" 2s")), "{log:?}");
    assert!(h.rt.instances("app").is_empty());
}

#[tokio::test(start_paused = true)]
async fn termination_with_grace_zero_skips_pre_stop() {
    let h = terminate(0, Some(Duration::from_secs(1))).await;
    let log = h.rt.log();
    assert!(!log.contains(&"exec app".to_string()), "{log:?}");
    let stops: Vec<&String> = log.iter().filter(|l| l.starts_with("stop")).collect();
    assert_eq!(stops.len(), 2, "{log:?}");
    assert!(stops.iter().all(|s| s.ends_with(" 0s")), "{log:?}");
}

#[tokio::test(start_paused = true)]
async fn status_reports_pod_ip_qos_and_host() {
    let mut h = Harness::new();
    h.rt.add_image("bb:1");
    let p = pod(json!({"containers": [{"name": "app", "image": "bb:1",
        "resources": {"limits": {"cpu": "1", "memory": "64Mi"},
                      "requests": {"cpu": "1", "memory": "64Mi"}}}]}));
    h.sync(&p).await;
    let st = h.sync(&p).await;
    assert_eq!(st["podIP"], "10.42.0.10");
    assert_eq!(st["hostIP"], "192.0.2.10");
    assert_eq!(st["qosClass"], "Guaranteed");
    assert_eq!(
        condition(&st, "PodReadyToStartContainers")["status"],
        "True"
    );
    assert_eq!(app(&st)["started"], true);
    assert!(app(&st)["containerID"]
        .as_str()
        .is_some_and(|c| c.starts_with("skiff://")));
    // An unchanged status is not written again.
    let patches = h.requests("PATCH", "/pods/web/status").len();
    h.sync(&p).await;
    assert_eq!(h.requests("PATCH", "/pods/web/status").len(), patches);
}

#[tokio::test(start_paused = true)]
async fn orphan_cleanup_keeps_known_pods_only() {
    use super::runtime::PodRuntime;
    let mut h = Harness::new();
    h.rt.add_image("bb:1");
    let p = pod(one_container("Always"));
    h.sync(&p).await;
    // What a pod deleted while the agent was down left behind.
    let gone = "fedcba98-0000-4000-8000-000000000002";
    let name = super::runtime_name("old", "gone", "default", gone, 0);
    let spec = skiff_runtime::ContainerSpec {
        name: Some(name),
        ..Default::default()
    };
    h.rt.start_container(spec, Default::default())
        .await
        .unwrap();
    let req = skiff_net::SandboxRequest {
        pod_uid: gone.into(),
        namespace: "default".into(),
        name: "gone".into(),
        hostname: "gone".into(),
        port_mappings: Vec::new(),
        host_network: None,
    };
    h.rt.run_sandbox(req).await.unwrap();
    let known = std::collections::HashMap::from([(super::testing::UID.to_string(), p)]);
    super::termination::cleanup_orphans(&h.worker.ctx, &known).await;
    let log = h.rt.log();
    // Stopped with the orphan grace, then removed; the live pod is untouched.
    assert!(log.contains(&"stop old 2s".to_string()), "{log:?}");
    assert!(log.contains(&"remove old".to_string()), "{log:?}");
    assert!(
        !log.iter().any(|l| l.ends_with(" app") && l != "start app"),
        "{log:?}"
    );
    assert_eq!(h.rt.instances("app").len(), 1);
    assert_eq!(
        h.rt.list_sandboxes().await.unwrap(),
        [super::testing::UID.to_string()]
    );
}
