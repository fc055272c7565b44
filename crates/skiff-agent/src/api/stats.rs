//! The kubelet's read endpoints: `GET /healthz`, `GET /pods` (a v1 PodList of the pods bound to
//! this node, as the agent last saw them) and `GET /stats/summary` (the kubelet Summary API,
//! `stats/v1alpha1`, from cgroup and /proc counters; the API server's metrics.k8s.io reads it).
//!
//! Counters come from the cgroup of each pod (`<data-dir parent>/pod<uid>`) and container (read
//! from `/proc/<pid>/cgroup` of the container's init process), cgroup v2 or v1 (`cpuacct`,
//! `memory`). `usageNanoCores` is a rate: it needs two samples of the cumulative CPU time, so
//! each cgroup's last sample is kept (process-wide, keyed by cgroup path) and a request that
//! meets a cgroup never sampled before samples it, waits [`WINDOW`], and reads again.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Map, Value};
use skiff_runtime::{ContainerInfo, Status};

use super::{status_response, ApiState};
use crate::pods::parse_runtime_name;

const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// Enough for any cgroup or /proc file read here (memory.stat is ~1.5 KiB, net/dev grows
/// with interfaces); larger files are cut.
const READ_LIMIT: u64 = 256 * 1024;
/// The shortest interval a CPU rate is computed over.
pub(crate) const WINDOW: Duration = Duration::from_secs(1);
/// Samples not refreshed for this long are forgotten (their cgroup is gone).
const SAMPLE_TTL: Duration = Duration::from_secs(600);
/// USER_HZ: the unit of /proc/stat (100 on every Linux architecture skiff runs on).
const USER_HZ: u64 = 100;

pub(crate) async fn healthz() -> Response {
    (
        [(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "ok",
    )
        .into_response()
}

pub(crate) async fn pods(State(st): State<Arc<ApiState>>) -> Response {
    let items: Vec<Value> = st
        .index
        .pods()
        .into_iter()
        .filter_map(|p| {
            let mut v = serde_json::to_value(p).ok()?;
            if let Some(o) = v.as_object_mut() {
                o.insert("kind".into(), json!("Pod"));
                o.insert("apiVersion".into(), json!("v1"));
            }
            Some(v)
        })
        .collect();
    let list = json!({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items});
    json_ok(&list)
}

fn json_ok(v: &Value) -> Response {
    (
        [(http::header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

pub(crate) async fn summary(State(st): State<Arc<ApiState>>) -> Response {
    let index = st.index.clone();
    let data_dir = st.data_dir.clone();
    let collect = move || -> Result<Value, String> {
        let pods = index.pods();
        let containers = index.containers()?;
        Ok(summary_of(
            &index.node_name(),
            &data_dir,
            &pods,
            &containers,
        ))
    };
    // A first look at new cgroups only primes their CPU samples; the real read follows a
    // window later so every usageNanoCores is a rate.
    let first = collect.clone();
    let primed = tokio::task::spawn_blocking(move || {
        let before = sample_count();
        first().map(|_| sample_count() > before)
    })
    .await;
    match primed {
        Ok(Ok(true)) => tokio::time::sleep(WINDOW + Duration::from_millis(50)).await,
        Ok(Ok(false)) => {}
        Ok(Err(e)) => return status_response(500, "InternalError", &e),
        Err(e) => return status_response(500, "InternalError", &e.to_string()),
    }
    match tokio::task::spawn_blocking(collect).await {
        Ok(Ok(v)) => json_ok(&v),
        Ok(Err(e)) => status_response(500, "InternalError", &e),
        Err(e) => status_response(500, "InternalError", &e.to_string()),
    }
}

/// The Summary of the node and of `pods` (containers matched by their runtime names).
pub fn summary_of(
    node_name: &str,
    data_dir: &Path,
    pods: &[Pod],
    containers: &[ContainerInfo],
) -> Value {
    let now = jiff::Timestamp::now().to_string();
    let node_fs = fs_stats(data_dir, &now);
    let mut node = json!({
        "nodeName": node_name,
        "cpu": node_cpu(&now),
        "memory": node_memory(&now),
        "network": network(&read_bounded(Path::new("/proc/net/dev")).unwrap_or_default(), &now),
        "fs": node_fs.clone(),
        "runtime": {"imageFs": fs_stats(&data_dir.join("images"), &now), "containerFs": node_fs},
        "rlimit": rlimit(&now),
    });
    if let Some(t) = boot_time() {
        node["startTime"] = json!(t);
    }
    let pod_stats: Vec<Value> = pods
        .iter()
        .filter_map(|p| pod_summary(p, data_dir, containers, &now))
        .collect();
    json!({"node": node, "pods": pod_stats})
}

fn pod_summary(pod: &Pod, data_dir: &Path, all: &[ContainerInfo], now: &str) -> Option<Value> {
    let name = pod.metadata.name.as_deref()?;
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let uid = pod.metadata.uid.as_deref()?;
    let uid8: String = uid.chars().filter(|c| *c != '-').take(8).collect();
    // The running instance of each container (the highest attempt).
    let mut latest: HashMap<String, (u32, &ContainerInfo)> = HashMap::new();
    for c in all.iter().filter(|c| c.status == Status::Running) {
        let Some(n) = parse_runtime_name(&c.name) else {
            continue;
        };
        if n.namespace != ns || n.pod != name || n.uid8 != uid8 {
            continue;
        }
        match latest.get(&n.container) {
            Some((a, _)) if *a >= n.attempt => {}
            _ => {
                latest.insert(n.container.clone(), (n.attempt, c));
            }
        }
    }
    let mut names: Vec<&String> = latest.keys().collect();
    names.sort();
    let mut containers = Vec::new();
    let mut pod_cgroup: Option<CgroupPaths> = None;
    let mut sum = Totals::default();
    let mut net_pid = None;
    let fs_cap = statvfs(data_dir);
    for cname in names {
        let (_, info) = latest[cname];
        let Some(pid) = info.pid else { continue };
        let Some(paths) = proc_cgroups(pid) else {
            continue;
        };
        net_pid.get_or_insert(pid);
        let stats = read_cgroup(&paths);
        sum.add(&stats);
        if pod_cgroup.is_none() {
            pod_cgroup = paths.parent_named(&format!("pod{uid}"));
        }
        let mut c = json!({
            "name": cname,
            "cpu": cpu_json(&paths.key(), &stats, now),
            "memory": memory_json(&stats, now),
        });
        if let Some(t) = &info.started_at {
            c["startTime"] = json!(t);
        }
        let container_dir = data_dir.join("containers").join(&info.id);
        let rootfs = crate::pods::disk_usage(&container_dir.join("upper"));
        let logs = log_bytes(&info.log_path);
        sum.ephemeral += rootfs + logs;
        c["rootfs"] = fs_used(rootfs, fs_cap, now);
        c["logs"] = fs_used(logs, fs_cap, now);
        containers.push(c);
    }
    let mut out = json!({
        "podRef": {"name": name, "namespace": ns, "uid": uid},
        "containers": containers,
    });
    if let Some(t) = pod.status.as_ref().and_then(|s| s.start_time.as_ref()) {
        out["startTime"] = json!(t.0.to_string());
    }
    // The pod cgroup counts what its containers' cgroups do plus exited processes' history;
    // when there is none (no running container), nothing is reported, like the kubelet.
    if let Some(paths) = &pod_cgroup {
        let stats = read_cgroup(paths);
        out["cpu"] = cpu_json(&paths.key(), &stats, now);
        out["memory"] = memory_json(&stats, now);
        if let Some(n) = stats.pids {
            out["process_stats"] = json!({"process_count": n});
        }
    } else if !out["containers"].as_array().is_none_or(|a| a.is_empty()) {
        out["memory"] = memory_json(&sum.as_stats(), now);
    }
    if let Some(pid) = net_pid {
        let host_network = pod
            .spec
            .as_ref()
            .and_then(|s| s.host_network)
            .unwrap_or(false);
        if !host_network {
            if let Some(text) = read_bounded(&PathBuf::from(format!("/proc/{pid}/net/dev"))) {
                out["network"] = network(&text, now);
            }
        }
    }
    let volumes = crate::pods::disk_usage(&data_dir.join("agent/pods").join(uid).join("volumes"));
    out["ephemeral-storage"] = fs_used(sum.ephemeral + volumes, fs_cap, now);
    Some(out)
}

#[derive(Default)]
struct Totals {
    usage: u64,
    working_set: u64,
    rss: u64,
    ephemeral: u64,
}

impl Totals {
    fn add(&mut self, s: &CgroupStats) {
        self.usage += s.mem_usage.unwrap_or(0);
        self.working_set += s.working_set().unwrap_or(0);
        self.rss += s.rss.unwrap_or(0);
    }

    fn as_stats(&self) -> CgroupStats {
        CgroupStats {
            mem_usage: Some(self.usage),
            inactive_file: self.usage.saturating_sub(self.working_set),
            rss: Some(self.rss),
            ..Default::default()
        }
    }
}

fn log_bytes(live: &Path) -> u64 {
    let (Some(dir), Some(name)) = (live.parent(), live.file_name().and_then(|n| n.to_str())) else {
        return 0;
    };
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.starts_with(name)))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

// ---------------------------------------------------------------------------------------------
// cgroups

/// Where one cgroup lives: its path in the v2 hierarchy, or in the v1 `cpuacct`, `memory` and
/// `pids` hierarchies.
#[derive(Debug, Clone, Default)]
pub struct CgroupPaths {
    pub unified: Option<String>,
    pub cpuacct: Option<String>,
    pub memory: Option<String>,
    pub pids: Option<String>,
}

impl CgroupPaths {
    fn key(&self) -> String {
        self.unified
            .clone()
            .or_else(|| self.cpuacct.clone())
            .unwrap_or_default()
    }

    /// The ancestor cgroup named `name` in every hierarchy (the pod cgroup of a container).
    fn parent_named(&self, name: &str) -> Option<CgroupPaths> {
        let up = |p: &Option<String>| -> Option<String> {
            let p = p.as_deref()?;
            let (parent, _) = p.rsplit_once('/')?;
            (parent.rsplit('/').next() == Some(name)).then(|| parent.to_string())
        };
        let out = CgroupPaths {
            unified: up(&self.unified),
            cpuacct: up(&self.cpuacct),
            memory: up(&self.memory),
            pids: up(&self.pids),
        };
        (out.unified.is_some() || out.cpuacct.is_some()).then_some(out)
    }
}

/// The cgroups of process `pid` from `/proc/<pid>/cgroup` (v2 when the host is unified).
pub fn proc_cgroups(pid: i32) -> Option<CgroupPaths> {
    let text = read_bounded(&PathBuf::from(format!("/proc/{pid}/cgroup")))?;
    let unified = Path::new(CGROUP_ROOT).join("cgroup.controllers").exists();
    let mut out = CgroupPaths::default();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let path = Some(path.to_string());
        if ctrls.is_empty() {
            if unified {
                out.unified = path;
            }
            continue;
        }
        for c in ctrls.split(',') {
            match c {
                "cpuacct" => out.cpuacct = path.clone(),
                "memory" => out.memory = path.clone(),
                "pids" => out.pids = path.clone(),
                _ => {}
            }
        }
    }
    (out.unified.is_some() || out.cpuacct.is_some() || out.memory.is_some()).then_some(out)
}

/// One reading of a cgroup's counters.
#[derive(Debug, Clone, Default)]
pub struct CgroupStats {
    /// Cumulative CPU time, nanoseconds.
    pub cpu_ns: Option<u64>,
    pub mem_usage: Option<u64>,
    pub inactive_file: u64,
    pub rss: Option<u64>,
    pub pgfault: Option<u64>,
    pub pgmajfault: Option<u64>,
    pub pids: Option<u64>,
}

impl CgroupStats {
    /// The kubelet's working set: usage minus inactive file pages.
    pub fn working_set(&self) -> Option<u64> {
        self.mem_usage.map(|u| u.saturating_sub(self.inactive_file))
    }
}

fn hierarchy_file(hierarchy: &str, path: &str, file: &str) -> PathBuf {
    let mut p = PathBuf::from(CGROUP_ROOT);
    if !hierarchy.is_empty() {
        p.push(hierarchy);
    }
    p.push(path.trim_start_matches('/'));
    p.push(file);
    p
}

fn keyed(text: &str) -> HashMap<&str, u64> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k, v.trim().parse().ok()?))
        })
        .collect()
}

fn read_u64(path: &Path) -> Option<u64> {
    read_bounded(path)?.trim().parse().ok()
}

/// Reads a cgroup's CPU, memory and PID counters (v2 files, else v1).
pub fn read_cgroup(paths: &CgroupPaths) -> CgroupStats {
    let mut s = CgroupStats::default();
    if let Some(p) = &paths.unified {
        if let Some(t) = read_bounded(&hierarchy_file("", p, "cpu.stat")) {
            s.cpu_ns = keyed(&t).get("usage_usec").map(|u| u * 1000);
        }
        s.mem_usage = read_u64(&hierarchy_file("", p, "memory.current"));
        if let Some(t) = read_bounded(&hierarchy_file("", p, "memory.stat")) {
            let m = keyed(&t);
            s.inactive_file = m.get("inactive_file").copied().unwrap_or(0);
            s.rss = m.get("anon").copied();
            s.pgfault = m.get("pgfault").copied();
            s.pgmajfault = m.get("pgmajfault").copied();
        }
        s.pids = read_u64(&hierarchy_file("", p, "pids.current"));
        return s;
    }
    if let Some(p) = &paths.cpuacct {
        s.cpu_ns = read_u64(&hierarchy_file("cpuacct", p, "cpuacct.usage"));
    }
    if let Some(p) = &paths.memory {
        s.mem_usage = read_u64(&hierarchy_file("memory", p, "memory.usage_in_bytes"));
        if let Some(t) = read_bounded(&hierarchy_file("memory", p, "memory.stat")) {
            let m = keyed(&t);
            // `total_*` include the descendants (a pod cgroup's containers).
            s.inactive_file = m.get("total_inactive_file").copied().unwrap_or(0);
            s.rss = m.get("total_rss").copied();
            s.pgfault = m.get("total_pgfault").copied();
            s.pgmajfault = m.get("total_pgmajfault").copied();
        }
    }
    if let Some(p) = &paths.pids {
        s.pids = read_u64(&hierarchy_file("pids", p, "pids.current"));
    }
    s
}

// ---------------------------------------------------------------------------------------------
// CPU rates

struct Sample {
    at: Instant,
    cpu_ns: u64,
    rate: Option<u64>,
}

static SAMPLES: LazyLock<Mutex<HashMap<String, Sample>>> = LazyLock::new(Mutex::default);

fn sample_count() -> usize {
    SAMPLES.lock().map(|m| m.len()).unwrap_or(0)
}

/// Nanocores used since the last sample of `key` at least [`WINDOW`] old (the previous rate
/// while the last sample is younger); None for the first sample.
pub fn cpu_rate(key: &str, cpu_ns: u64) -> Option<u64> {
    let now = Instant::now();
    let mut m = SAMPLES.lock().ok()?;
    m.retain(|_, s| now.duration_since(s.at) < SAMPLE_TTL);
    match m.get_mut(key) {
        Some(s) if now.duration_since(s.at) >= WINDOW => {
            let elapsed = now.duration_since(s.at).as_nanos();
            // A counter that went backwards is a new cgroup under an old name.
            s.rate = cpu_ns.checked_sub(s.cpu_ns).map(|d| {
                u64::try_from(u128::from(d) * 1_000_000_000 / elapsed.max(1)).unwrap_or(u64::MAX)
            });
            s.at = now;
            s.cpu_ns = cpu_ns;
            s.rate
        }
        Some(s) => s.rate,
        None => {
            m.insert(
                key.to_string(),
                Sample {
                    at: now,
                    cpu_ns,
                    rate: None,
                },
            );
            None
        }
    }
}

fn cpu_json(key: &str, s: &CgroupStats, now: &str) -> Value {
    let mut o = Map::new();
    o.insert("time".into(), json!(now));
    if let Some(ns) = s.cpu_ns {
        if let Some(r) = cpu_rate(key, ns) {
            o.insert("usageNanoCores".into(), json!(r));
        }
        o.insert("usageCoreNanoSeconds".into(), json!(ns));
    }
    Value::Object(o)
}

fn memory_json(s: &CgroupStats, now: &str) -> Value {
    let mut o = Map::new();
    o.insert("time".into(), json!(now));
    let fields = [
        ("usageBytes", s.mem_usage),
        ("workingSetBytes", s.working_set()),
        ("rssBytes", s.rss),
        ("pageFaults", s.pgfault),
        ("majorPageFaults", s.pgmajfault),
    ];
    for (k, v) in fields {
        if let Some(v) = v {
            o.insert(k.into(), json!(v));
        }
    }
    Value::Object(o)
}

// ---------------------------------------------------------------------------------------------
// the node

fn node_cpu(now: &str) -> Value {
    let Some(text) = read_bounded(Path::new("/proc/stat")) else {
        return json!({"time": now});
    };
    // cpu  user nice system idle iowait irq softirq steal …: busy = all but idle and iowait.
    let ticks: Vec<u64> = text
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let busy: u64 = ticks
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4 && *i < 8)
        .map(|(_, t)| *t)
        .sum();
    let stats = CgroupStats {
        cpu_ns: Some(busy.saturating_mul(1_000_000_000 / USER_HZ)),
        ..Default::default()
    };
    cpu_json("node:/proc/stat", &stats, now)
}

fn node_memory(now: &str) -> Value {
    let text = read_bounded(Path::new("/proc/meminfo")).unwrap_or_default();
    let kb = |name: &str| -> Option<u64> {
        text.lines().find_map(|l| {
            let rest = l.strip_prefix(name)?.strip_prefix(':')?;
            rest.split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
                .map(|v| v * 1024)
        })
    };
    let (total, free) = (kb("MemTotal"), kb("MemFree"));
    let usage = match (total, free) {
        (Some(t), Some(f)) => Some(t.saturating_sub(f)),
        _ => None,
    };
    let vm = read_bounded(Path::new("/proc/vmstat")).unwrap_or_default();
    let vm = keyed(&vm);
    let stats = CgroupStats {
        mem_usage: usage,
        inactive_file: kb("Inactive(file)").unwrap_or(0),
        rss: kb("AnonPages"),
        pgfault: vm.get("pgfault").copied(),
        pgmajfault: vm.get("pgmajfault").copied(),
        ..Default::default()
    };
    let mut v = memory_json(&stats, now);
    if let Some(a) = kb("MemAvailable") {
        v["availableBytes"] = json!(a);
    }
    v
}

fn boot_time() -> Option<String> {
    let text = read_bounded(Path::new("/proc/stat"))?;
    let secs: i64 = text
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    Some(jiff::Timestamp::from_second(secs).ok()?.to_string())
}

fn rlimit(now: &str) -> Value {
    let max = read_u64(Path::new("/proc/sys/kernel/pid_max"));
    let cur = read_bounded(Path::new("/proc/loadavg")).and_then(|t| {
        // "0.00 0.01 0.05 1/234 5678": running/total scheduling entities.
        let f = t.split_whitespace().nth(3)?;
        f.split_once('/')?.1.parse::<u64>().ok()
    });
    json!({"time": now, "maxpid": max, "curproc": cur})
}

/// Interfaces of a `/proc/…/net/dev` table (loopback and host-side veths left out); the
/// first real interface (`eth0` preferred) is the primary one.
fn network(text: &str, now: &str) -> Value {
    let mut ifaces = Vec::new();
    for line in text.lines().skip(2) {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if name == "lo" || name.starts_with("veth") {
            continue;
        }
        let f: Vec<u64> = rest
            .split_whitespace()
            .filter_map(|x| x.parse().ok())
            .collect();
        if f.len() < 11 {
            continue;
        }
        ifaces.push(json!({"name": name, "rxBytes": f[0], "rxErrors": f[2],
            "txBytes": f[8], "txErrors": f[10]}));
    }
    let primary = ifaces
        .iter()
        .position(|i| i["name"] == "eth0")
        .or((!ifaces.is_empty()).then_some(0));
    let mut out = match primary {
        Some(i) => ifaces[i].clone(),
        None => json!({}),
    };
    out["time"] = json!(now);
    out["interfaces"] = Value::Array(ifaces);
    out
}

/// (capacity, available, inodes, inodes free) of the filesystem holding `path`.
fn statvfs(path: &Path) -> Option<(u64, u64, u64, u64)> {
    let s = nix::sys::statvfs::statvfs(path).ok()?;
    let frag = s.fragment_size() as u64;
    Some((
        s.blocks() as u64 * frag,
        s.blocks_available() as u64 * frag,
        s.files() as u64,
        s.files_free() as u64,
    ))
}

fn fs_stats(path: &Path, now: &str) -> Value {
    match statvfs(path) {
        Some((cap, avail, inodes, free)) => json!({"time": now, "capacityBytes": cap,
            "availableBytes": avail, "usedBytes": cap.saturating_sub(avail),
            "inodes": inodes, "inodesFree": free, "inodesUsed": inodes.saturating_sub(free)}),
        None => json!({"time": now}),
    }
}

fn fs_used(used: u64, cap: Option<(u64, u64, u64, u64)>, now: &str) -> Value {
    let mut v = json!({"time": now, "usedBytes": used});
    if let Some((cap, avail, inodes, free)) = cap {
        v["capacityBytes"] = json!(cap);
        v["availableBytes"] = json!(avail);
        v["inodes"] = json!(inodes);
        v["inodesFree"] = json!(free);
    }
    v
}

/// A /proc or cgroup file, at most [`READ_LIMIT`] bytes of it.
fn read_bounded(path: &Path) -> Option<String> {
    let f = std::fs::File::open(path).ok()?;
    let mut s = String::new();
    f.take(READ_LIMIT).read_to_string(&mut s).ok()?;
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_dev_table() {
        let text = "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo:     100       1    0    0    0     0          0         0      100       1    0    0    0     0       0          0\n  eth0:    5000      10    1    0    0     0          0         0     7000      20    2    0    0     0       0          0\n";
        let v = network(text, "t");
        assert_eq!(v["name"], "eth0");
        assert_eq!(v["rxBytes"], 5000);
        assert_eq!(v["txBytes"], 7000);
        assert_eq!(v["rxErrors"], 1);
        assert_eq!(v["txErrors"], 2);
        assert_eq!(v["interfaces"].as_array().map(Vec::len), Some(1));
    }

    #[test]
    fn pod_cgroup_is_the_parent_named_pod_uid() {
        let c = CgroupPaths {
            cpuacct: Some("/skiff-1/podabc/c1".into()),
            memory: Some("/skiff-1/podabc/c1".into()),
            ..Default::default()
        };
        let p = c.parent_named("podabc").expect("pod cgroup");
        assert_eq!(p.memory.as_deref(), Some("/skiff-1/podabc"));
        assert!(c.parent_named("podother").is_none());
    }

    #[test]
    fn cpu_rate_needs_a_window() {
        let key = "test:cpu_rate_needs_a_window";
        assert_eq!(cpu_rate(key, 1_000), None);
        if let Ok(mut m) = SAMPLES.lock() {
            if let Some(s) = m.get_mut(key) {
                s.at -= Duration::from_secs(2);
            }
        }
        let r = cpu_rate(key, 1_000_000_000 + 1_000).expect("rate");
        // One CPU-second over about two seconds: about half a core.
        assert!((490_000_000..=500_000_000).contains(&r), "{r}");
        // Within the window the previous rate is repeated.
        assert_eq!(cpu_rate(key, 5_000_000_000), Some(r));
    }
}
