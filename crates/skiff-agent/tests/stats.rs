//! The Summary API (`/stats/summary`) against real containers (needs root and `cargo build -p
//! skiff` for the shim): a pod with a CPU burner and a memory hog, its figures compared with
//! the cgroup counters read directly.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;
use skiff_agent::api::stats::{proc_cgroups, read_cgroup, summary_of};
use skiff_agent::pods::runtime_name;
use skiff_runtime::{ContainerSpec, PodCgroup, Runtime, RuntimeConfig};

const APPLETS: &[&str] = &["sh", "sleep", "awk"];

fn skiff_exe() -> PathBuf {
    let exe = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/debug/skiff");
    assert!(
        exe.exists(),
        "{} is missing: run `cargo build -p skiff` first",
        exe.display()
    );
    exe.canonicalize().expect("canonical skiff path")
}

struct Env {
    dir: tempfile::TempDir,
    data_dir: PathBuf,
    rt: Runtime,
    ids: Vec<String>,
}

impl Drop for Env {
    fn drop(&mut self) {
        for id in &self.ids {
            let _ = self.rt.remove(id, true);
        }
        // Every process, container dir and cgroup of this data dir.
        if let Err(e) = self.rt.purge_all() {
            eprintln!("cleanup: {e}");
        }
    }
}

const UID: &str = "5ee1ab0c-0000-4000-8000-000000000001";

impl Env {
    fn new() -> Env {
        assert!(nix::unistd::geteuid().is_root(), "this test needs root");
        let dir = tempfile::Builder::new()
            .prefix("skiff-agent-stats-")
            .tempdir()
            .expect("tempdir");
        let data_dir = dir.path().canonicalize().expect("canonical").join("data");
        let lower = dir.path().join("layer");
        std::fs::create_dir_all(lower.join("bin")).expect("mkdir");
        std::fs::create_dir_all(lower.join("tmp")).expect("mkdir");
        std::fs::copy("/bin/busybox", lower.join("bin/busybox")).expect("copy busybox");
        for a in APPLETS {
            std::os::unix::fs::symlink("busybox", lower.join("bin").join(a)).expect("symlink");
        }
        let rt = Runtime::new(RuntimeConfig {
            data_dir: data_dir.clone(),
            shim_exe: skiff_exe(),
        })
        .expect("runtime");
        Env {
            dir,
            data_dir,
            rt,
            ids: Vec::new(),
        }
    }

    fn start(&mut self, container: &str, script: &str) -> skiff_runtime::ContainerInfo {
        let spec = ContainerSpec {
            name: Some(runtime_name(container, "hog", "default", UID, 0)),
            image: "bb:1".into(),
            image_id: "sha256:test".into(),
            lowers: vec![self.dir.path().join("layer")],
            args: vec!["sh".into(), "-c".into(), script.into()],
            env: vec!["PATH=/bin".into()],
            pod_cgroup: Some(PodCgroup {
                name: format!("pod{UID}"),
                ..Default::default()
            }),
            ..Default::default()
        };
        let info = self.rt.create_and_start(spec).expect("start container");
        self.ids.push(info.id.clone());
        info
    }
}

fn pod() -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "hog", "namespace": "default", "uid": UID},
        "spec": {"containers": [{"name": "burn", "image": "bb:1"}, {"name": "mem", "image": "bb:1"}]},
    }))
    .expect("pod")
}

fn summary(env: &Env) -> Value {
    let containers = env.rt.list().expect("list");
    let v = summary_of("stats-node", &env.data_dir, &[pod()], &containers);
    v["pods"][0].clone()
}

fn container<'a>(pod: &'a Value, name: &str) -> &'a Value {
    pod["containers"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no container {name} in {pod}"))
}

fn within(a: f64, b: f64, tolerance: f64) -> bool {
    (a - b).abs() <= tolerance * b.abs().max(1.0)
}

#[test]
fn summary_agrees_with_the_cgroup_counters() {
    let mut env = Env::new();
    let burn = env.start("burn", "while :; do :; done");
    // About 40 MB of anonymous memory held by the shell.
    let mem = env.start(
        "mem",
        "awk 'BEGIN { s = sprintf(\"%40000000s\", \"x\"); system(\"sleep 100000\") }'",
    );
    let burn_cg = proc_cgroups(burn.pid.expect("pid")).expect("burn cgroup");
    let mem_cg = proc_cgroups(mem.pid.expect("pid")).expect("mem cgroup");
    // Wait for the hog to hold its memory.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ws = read_cgroup(&mem_cg).working_set().unwrap_or(0);
        if ws > 40_000_000 {
            break;
        }
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(&mem.log_path).unwrap_or_default();
            let st = env.rt.get(&mem.id).map(|i| i.status);
            panic!("memory hog reached {ws} bytes only ({st:?}); log: {log}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(500));

    // Prime the CPU samples, then compare the rate over the same window.
    let _ = summary(&env);
    let c0 = read_cgroup(&burn_cg).cpu_ns.expect("cpu counter");
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    let p = summary(&env);
    let c1 = read_cgroup(&burn_cg).cpu_ns.expect("cpu counter");
    let measured = (c1 - c0) as f64 / t0.elapsed().as_secs_f64();

    assert_eq!(p["podRef"]["name"], "hog");
    assert_eq!(p["podRef"]["uid"], UID);
    let b = container(&p, "burn");
    let nano_cores = b["cpu"]["usageNanoCores"].as_f64().expect("usageNanoCores");
    assert!(
        within(nano_cores, measured, 0.10),
        "usageNanoCores {nano_cores} vs cgroup rate {measured}"
    );
    let total = b["cpu"]["usageCoreNanoSeconds"].as_f64().expect("total");
    assert!(
        total >= c0 as f64 && total <= c1 as f64,
        "{c0} <= {total} <= {c1}"
    );

    let m = container(&p, "mem");
    let cg = read_cgroup(&mem_cg);
    let ws = m["memory"]["workingSetBytes"]
        .as_f64()
        .expect("workingSetBytes");
    let expected = cg.working_set().expect("working set") as f64;
    assert!(
        within(ws, expected, 0.10),
        "workingSetBytes {ws} vs {expected}"
    );
    assert!(ws > 40_000_000.0, "{ws}");
    let usage = m["memory"]["usageBytes"].as_f64().expect("usageBytes");
    assert!(
        within(usage, cg.mem_usage.unwrap_or(0) as f64, 0.10),
        "{usage}"
    );
    assert!(m["memory"]["rssBytes"].as_f64().expect("rss") > 30_000_000.0);

    // The pod level is its cgroup: both containers together.
    let pod_ws = p["memory"]["workingSetBytes"].as_f64().expect("pod ws");
    let burn_ws = b["memory"]["workingSetBytes"].as_f64().expect("burn ws");
    assert!(
        within(pod_ws, ws + burn_ws, 0.10),
        "{pod_ws} vs {ws}+{burn_ws}"
    );
    let pod_cores = p["cpu"]["usageNanoCores"].as_f64().expect("pod cpu");
    assert!(
        within(pod_cores, nano_cores, 0.15),
        "{pod_cores} vs {nano_cores}"
    );
    assert!(p["process_stats"]["process_count"].as_u64().unwrap_or(0) >= 2);
    assert!(p["ephemeral-storage"]["usedBytes"].is_u64());
    assert!(b["rootfs"]["capacityBytes"].as_u64().unwrap_or(0) > 0);
    assert!(b["logs"]["usedBytes"].is_u64());
    // The node figures come from /proc.
    let containers = env.rt.list().expect("list");
    let all = summary_of("stats-node", &env.data_dir, &[pod()], &containers);
    let node = &all["node"];
    assert_eq!(node["nodeName"], "stats-node");
    assert!(node["memory"]["workingSetBytes"].as_u64().unwrap_or(0) > 0);
    assert!(node["cpu"]["usageCoreNanoSeconds"].as_u64().unwrap_or(0) > 0);
    assert!(node["fs"]["capacityBytes"].as_u64().unwrap_or(0) > 0);
}
