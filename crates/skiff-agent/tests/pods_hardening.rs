//! Issue 10 items 8 and 12 through the agent, with real pods (root): a fork bomb in a pod
//! stays under --pod-max-pids and the pod is cleaned up; a shim killed with SIGKILL takes its
//! container along (no duplicate next to the restarted one); a container whose spec.json is
//! corrupt is still killed and removed when its pod is deleted.

mod pods_support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kube::api::DeleteParams;
use pods_support::{container_status, Harness};
use serde_json::json;

/// `/sys/fs/cgroup/pids/<parent>/pod<uid>/<file>` (v1) or the v2 equivalent.
fn pod_cgroup_file(data_dir: &Path, uid: &str, file: &str) -> PathBuf {
    let data = std::fs::canonicalize(data_dir).unwrap();
    let rel = format!(
        "{}/pod{uid}",
        skiff_runtime::spec::cgroup_parent(&data).trim_start_matches('/')
    );
    let v1 = Path::new("/sys/fs/cgroup/pids");
    if v1.exists() {
        v1.join(rel).join(file)
    } else {
        Path::new("/sys/fs/cgroup").join(rel).join(file)
    }
}

/// Every PID in the pod cgroup and below it.
fn pod_pids(data_dir: &Path, uid: &str) -> Vec<i32> {
    let top = pod_cgroup_file(data_dir, uid, "");
    let mut out = Vec::new();
    let mut stack = vec![top];
    while let Some(d) = stack.pop() {
        if let Ok(s) = std::fs::read_to_string(d.join("cgroup.procs")) {
            out.extend(s.lines().filter_map(|l| l.parse::<i32>().ok()));
        }
        if let Ok(rd) = std::fs::read_dir(&d) {
            stack.extend(rd.flatten().filter(|e| e.path().is_dir()).map(|e| e.path()));
        }
    }
    out
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s[s.rfind(')').unwrap_or(0)..].starts_with(") Z"))
        .unwrap_or(false)
}

fn uid_of(pod: &k8s_openapi::api::core::v1::Pod) -> String {
    pod.metadata.uid.clone().unwrap()
}

async fn delete_and_wait(h: &Harness, name: &str) {
    h.pods()
        .delete(name, &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    h.wait_gone(name, Duration::from_secs(60)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs root: real pods (namespaces, overlayfs, cgroups, CNI)"]
async fn fork_bomb_in_a_pod_is_contained() {
    const LIMIT: i64 = 50;
    let h = Harness::start_with(|c| c.limits.pod_max_pids = LIMIT).await;
    h.create_pod(
        "bomb",
        json!({"terminationGracePeriodSeconds": 0, "containers": [
            {"name": "idle", "image": "bb:1", "command": ["sleep", "1000"]},
            {"name": "bomb", "image": "bb:1", "command": ["sh", "-c", "sleep 1; f() { f | f & }; f; sleep 1000"]}
        ]}),
    )
    .await;
    let pod = h
        .wait_pod(
            "bomb",
            "both containers running",
            Duration::from_secs(60),
            |p| {
                ["idle", "bomb"].iter().all(|c| {
                    container_status(p, c)
                        .and_then(|s| s.state.as_ref())
                        .is_some_and(|s| s.running.is_some())
                })
            },
        )
        .await;
    let uid = uid_of(&pod);
    let data = h.config.data_dir.clone();
    let max = std::fs::read_to_string(pod_cgroup_file(&data, &uid, "pids.max")).unwrap();
    assert_eq!(
        max.trim(),
        LIMIT.to_string(),
        "the pod's limit is not in place"
    );
    let current = pod_cgroup_file(&data, &uid, "pids.current");
    let mut peak = 0i64;
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(4) {
        let n: i64 = std::fs::read_to_string(&current)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(n <= LIMIT, "pids.current {n} > {LIMIT}");
        peak = peak.max(n);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        peak >= LIMIT - 2,
        "the fork bomb never reached the limit ({peak})"
    );
    // The node stays responsive: it forks, and the API still answers.
    let t = Instant::now();
    assert!(std::process::Command::new("true")
        .status()
        .unwrap()
        .success());
    assert!(t.elapsed() < Duration::from_secs(1));
    let pids = pod_pids(&data, &uid);
    // Zombies count in pids.current but are not listed in cgroup.procs.
    assert!(pids.len() >= 2, "{pids:?}");
    delete_and_wait(&h, "bomb").await;
    pods_support::wait_for(
        "every process of the pod to die",
        Duration::from_secs(20),
        || {
            let pids = pids.clone();
            async move { pids.iter().all(|p| !alive(*p)) }
        },
    )
    .await;
    let rt = h.runtime();
    let sandbox = data.join("net/sandboxes").join(&uid);
    pods_support::wait_for(
        "the pod cgroup, containers and sandbox to go",
        Duration::from_secs(20),
        || {
            let gone = !current.exists() && rt.list().unwrap().is_empty() && !sandbox.exists();
            async move { gone }
        },
    )
    .await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs root: real pods (namespaces, overlayfs, cgroups, CNI)"]
async fn killed_shim_leaves_no_duplicate_container() {
    let h = Harness::start().await;
    h.create_pod(
        "victim",
        json!({"terminationGracePeriodSeconds": 0, "containers": [
            {"name": "c", "image": "bb:1", "command": ["sleep", "1000"]}
        ]}),
    )
    .await;
    h.wait_pod("victim", "running", Duration::from_secs(60), |p| {
        container_status(p, "c")
            .and_then(|s| s.state.as_ref())
            .is_some_and(|s| s.running.is_some())
    })
    .await;
    let rt = h.runtime();
    let first = rt.list().unwrap().into_iter().next().unwrap();
    let (shim, pid) = (first.shim_pid.unwrap(), first.pid.unwrap());
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(shim), nix::sys::signal::SIGKILL).unwrap();
    let pod = h
        .wait_pod("victim", "a restart", Duration::from_secs(60), |p| {
            container_status(p, "c").is_some_and(|s| {
                s.restart_count >= 1 && s.state.as_ref().is_some_and(|st| st.running.is_some())
            })
        })
        .await;
    assert!(!alive(pid), "the old container outlived its shim");
    let last = container_status(&pod, "c")
        .and_then(|s| s.last_state.as_ref())
        .and_then(|s| s.terminated.as_ref())
        .map(|t| t.exit_code);
    assert_eq!(last, Some(137));
    let running: Vec<_> = rt
        .list()
        .unwrap()
        .into_iter()
        .filter(|c| c.status == skiff_runtime::Status::Running)
        .collect();
    assert_eq!(running.len(), 1, "{running:#?}");
    let uid = uid_of(&pod);
    let pids = pod_pids(&h.config.data_dir, &uid);
    assert_eq!(pids.len(), 1, "processes in the pod: {pids:?}");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs root: real pods (namespaces, overlayfs, cgroups, CNI)"]
async fn corrupt_spec_does_not_survive_pod_deletion() {
    let h = Harness::start().await;
    h.create_pod(
        "corrupt",
        json!({"terminationGracePeriodSeconds": 0, "containers": [
            {"name": "c", "image": "bb:1", "command": ["sleep", "1000"],
             "securityContext": {"privileged": true}}
        ]}),
    )
    .await;
    let pod = h
        .wait_pod("corrupt", "running", Duration::from_secs(60), |p| {
            container_status(p, "c")
                .and_then(|s| s.state.as_ref())
                .is_some_and(|s| s.running.is_some())
        })
        .await;
    let uid = uid_of(&pod);
    let data = h.config.data_dir.clone();
    // The default limit: --pod-max-pids 4096 (or less on a host with few PIDs).
    let max: i64 = std::fs::read_to_string(pod_cgroup_file(&data, &uid, "pids.max"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(max > 0 && max <= skiff_agent::DEFAULT_POD_MAX_PIDS, "{max}");
    let rt = h.runtime();
    let c = rt.list().unwrap().into_iter().next().unwrap();
    let (pid, shim) = (c.pid.unwrap(), c.shim_pid.unwrap());
    let cdir = c.log_path.parent().unwrap().to_path_buf();
    std::fs::write(cdir.join("spec.json"), b"{ not json").unwrap();
    delete_and_wait(&h, "corrupt").await;
    pods_support::wait_for(
        "the container and its shim to die",
        Duration::from_secs(20),
        || async move { !alive(pid) && !alive(shim) },
    )
    .await;
    let cg = pod_cgroup_file(&data, &uid, "");
    let sandbox = data.join("net/sandboxes").join(&uid);
    pods_support::wait_for(
        "the container dir, pod cgroup and sandbox to go",
        Duration::from_secs(20),
        || {
            let gone = !cdir.exists() && !cg.exists() && !sandbox.exists();
            async move { gone }
        },
    )
    .await;
    h.shutdown().await;
}

/// Issue 10 item 3 end to end (API server → agent): a container writing far more than
/// max-size × max-files keeps its files bounded; `--tail`, `--limit-bytes` and `-f` (across
/// rotations) read the newest lines from the rotated files.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs root: real pods (namespaces, overlayfs, cgroups, CNI)"]
async fn logs_rotate_and_stream_across_rotation() {
    use futures::{AsyncBufReadExt, StreamExt};
    use kube::api::LogParams;
    const MAX: u64 = 64 << 10;
    let h = Harness::start_with(|c| {
        c.limits.container_log_max_size = MAX;
        c.limits.container_log_max_files = 3;
        // The API server presents its node token to the agent API (logs go through it).
        let server = c.data_dir.parent().unwrap().join("server");
        c.api_token = std::fs::read_to_string(server.join("node-token"))
            .unwrap()
            .trim()
            .to_string();
    })
    .await;
    // ~1.4 MB of CRI records in one burst, then a slow ticker (a 64 KiB file per ~3 s, so a
    // follower on a loaded machine has ~6 s before a file it has not read is rotated away).
    let burst = "i=0; while [ $i -lt 30000 ]; do echo line-$i; i=$((i+1)); done; sleep 1000";
    let ticker = "i=0; while true; do j=0; while [ $j -lt 100 ]; do echo tick-$i; \
                  i=$((i+1)); j=$((j+1)); done; sleep 0.2; done";
    h.create_pod(
        "logs",
        json!({"terminationGracePeriodSeconds": 0, "containers": [
            {"name": "burst", "image": "bb:1", "command": ["sh", "-c", burst]},
            {"name": "ticker", "image": "bb:1", "command": ["sh", "-c", ticker]}
        ]}),
    )
    .await;
    h.wait_pod("logs", "running", Duration::from_secs(60), |p| {
        ["burst", "ticker"].iter().all(|c| {
            container_status(p, c)
                .and_then(|s| s.state.as_ref())
                .is_some_and(|s| s.running.is_some())
        })
    })
    .await;
    let pods = h.pods();
    let lp = |c: &str| LogParams {
        container: Some(c.to_string()),
        ..Default::default()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let lp = LogParams {
            tail_lines: Some(1),
            ..lp("burst")
        };
        let got = pods.logs("logs", &lp).await;
        if got.as_ref().is_ok_and(|l| l == "line-29999\n") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the burst never finished: {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let rt = h.runtime();
    let burst_c = rt
        .list()
        .unwrap()
        .into_iter()
        .find(|c| c.name.starts_with("k8s_burst_"))
        .unwrap();
    let files = skiff_runtime::logfile::log_files(&burst_c.log_path);
    assert_eq!(files.len(), 3, "{files:?}");
    let total: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .sum();
    assert!(total <= 3 * MAX, "{total} bytes of logs kept");
    // The newest lines, across the boundary between container.log and container.log.1.
    let live_lines = std::fs::read_to_string(&burst_c.log_path)
        .unwrap()
        .lines()
        .count() as i64;
    let n = live_lines + 5;
    let tail = pods
        .logs(
            "logs",
            &LogParams {
                tail_lines: Some(n),
                ..lp("burst")
            },
        )
        .await
        .unwrap();
    let want: String = (30000 - n..30000).map(|i| format!("line-{i}\n")).collect();
    assert_eq!(tail, want);
    let limited = pods
        .logs(
            "logs",
            &LogParams {
                limit_bytes: Some(5),
                ..lp("burst")
            },
        )
        .await
        .unwrap();
    assert_eq!(limited, "line-");
    // Follow the ticker across several rotations: no line lost, none repeated.
    let stream = pods
        .log_stream(
            "logs",
            &LogParams {
                follow: true,
                tail_lines: Some(1),
                ..lp("ticker")
            },
        )
        .await
        .unwrap();
    let mut lines = stream.lines();
    let mut prev: Option<u64> = None;
    let mut seen = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen < 4000 {
        assert!(Instant::now() < deadline, "followed only {seen} lines");
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next())
            .await
            .expect("follow stalled")
            .expect("follow ended")
            .unwrap();
        let i: u64 = line.strip_prefix("tick-").unwrap().parse().unwrap();
        if let Some(p) = prev {
            assert_eq!(
                i,
                p + 1,
                "after tick-{p}: a line was lost or repeated while following"
            );
        }
        prev = Some(i);
        seen += 1;
    }
    let ticker_c = rt
        .list()
        .unwrap()
        .into_iter()
        .find(|c| c.name.starts_with("k8s_ticker_"))
        .unwrap();
    assert_eq!(
        skiff_runtime::logfile::log_files(&ticker_c.log_path).len(),
        3,
        "the ticker's log never rotated while followed"
    );
    drop(lines);
    h.shutdown().await;
}
