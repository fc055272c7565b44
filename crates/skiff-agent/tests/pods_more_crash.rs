//! CrashLoopBackOff with growing delays (10 s, then 20 s) between restarts. ~40 s; real
//! containers, need root.

mod pods_support;

use std::time::{Duration, Instant};

use pods_support::{container_status, Harness};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs root: real pods (namespaces, overlayfs, cgroups, CNI)"]
async fn crash_loop_back_off_delays_grow() {
    let h = Harness::start().await;
    h.create_pod(
        "crashy",
        json!({"containers": [{"name": "c", "image": "bb:1", "command": ["/bin/sh", "-c", "exit 1"]}]}),
    )
    .await;
    let start = Instant::now();
    // restartCount → first time it was seen; waiting messages seen per restartCount.
    let mut seen: Vec<(i32, Instant)> = Vec::new();
    let mut waiting: Vec<(i32, String, String)> = Vec::new();
    let deadline = start + Duration::from_secs(75);
    loop {
        let pod = h.pods().get_opt("crashy").await.ok().flatten();
        if let Some(cs) = pod.as_ref().and_then(|p| container_status(p, "c")) {
            let rc = cs.restart_count;
            if seen.last().is_none_or(|(r, _)| *r != rc) {
                assert!(
                    seen.last().is_none_or(|(r, _)| rc == r + 1),
                    "restartCount went {seen:?} → {rc}"
                );
                seen.push((rc, Instant::now()));
            }
            if let Some(w) = cs.state.as_ref().and_then(|s| s.waiting.as_ref()) {
                waiting.push((
                    rc,
                    w.reason.clone().unwrap_or_default(),
                    w.message.clone().unwrap_or_default(),
                ));
            }
            if rc >= 3 {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "only saw restarts {seen:?}; status {:#?}",
            pod.and_then(|p| p.status)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let at = |rc: i32| {
        seen.iter()
            .find(|(r, _)| *r == rc)
            .map(|(_, t)| *t)
            .unwrap_or_else(|| panic!("restartCount {rc} never seen: {seen:?}"))
    };
    let gap1 = at(2) - at(1);
    let gap2 = at(3) - at(2);
    eprintln!("restart gaps: {gap1:?}, {gap2:?}");
    assert!(
        gap1 >= Duration::from_secs(9) && gap1 <= Duration::from_secs(14),
        "second restart ≈10 s after the first: {gap1:?}"
    );
    assert!(
        gap2 >= Duration::from_secs(19) && gap2 <= Duration::from_secs(25),
        "third restart ≈20 s after the second: {gap2:?}"
    );
    assert!(gap2 > gap1 + Duration::from_secs(5), "delays grow");
    // Between restarts the container waits in CrashLoopBackOff with the current delay.
    for (rc, delay) in [(1, "10s"), (2, "20s")] {
        let msgs: Vec<&(i32, String, String)> =
            waiting.iter().filter(|(r, _, _)| *r == rc).collect();
        assert!(
            !msgs.is_empty(),
            "no waiting state seen at restartCount {rc}"
        );
        assert!(
            msgs.iter()
                .all(|(_, reason, _)| reason == "CrashLoopBackOff"),
            "{msgs:?}"
        );
        assert!(
            msgs.iter().any(|(_, _, m)| m.starts_with(&format!(
                "back-off {delay} restarting failed container=c pod=crashy_default("
            ))),
            "{msgs:?}"
        );
    }
    let pod = h.pods().get("crashy").await.expect("pod");
    let cs = container_status(&pod, "c").expect("status");
    let last = cs
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .expect("last state");
    assert_eq!(last.exit_code, 1);
    assert_eq!(pod.status.and_then(|s| s.phase).as_deref(), Some("Running"));
    // Only the current and the previous instance are kept.
    assert!(h.runtime().list().unwrap_or_default().len() <= 2);
    h.shutdown().await;
}
