//! The agent's Prometheus endpoints, with the kubelet's names: `GET /metrics` (pod start and
//! pod worker latency recorded by the pod workers, running pods and containers counted from
//! the runtime at each scrape, process metrics) and `GET /metrics/cadvisor` (per-container
//! CPU, memory and network counters read from cgroup v2 files and the pod's network namespace,
//! labelled `namespace`, `pod`, `container` as cAdvisor's). Both sit behind the agent API's
//! authentication; through the API server they are `nodes/<name>/proxy/metrics[/cadvisor]`.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use http::{header, HeaderMap};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use skiff_runtime::{ContainerInfo, Runtime, RuntimeConfig, Status};

use crate::api::ApiState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabel {
    operation: &'static str,
}

/// The kubelet's pod start buckets (`podStartDurationBuckets`), seconds.
const POD_START_BUCKETS: [f64; 19] = [
    0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 20.0, 30.0, 45.0, 60.0, 120.0, 180.0, 240.0,
    300.0, 360.0, 480.0,
];

/// component-base's default buckets (the kubelet's pod worker histogram uses them).
const DEFAULT_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

fn worker_histogram() -> Histogram {
    Histogram::new(DEFAULT_BUCKETS)
}

struct Kubelet {
    pod_start: Histogram,
    pod_worker: Family<OperationLabel, Histogram>,
}

static KUBELET: LazyLock<Kubelet> = LazyLock::new(|| Kubelet {
    pod_start: Histogram::new(POD_START_BUCKETS),
    pod_worker: Family::new_with_constructor(worker_histogram as fn() -> Histogram),
});

static REGISTRY: LazyLock<Registry> = LazyLock::new(|| {
    let k = &*KUBELET;
    let mut reg = Registry::default();
    reg.register(
        "kubelet_pod_start_duration_seconds",
        "Duration in seconds from kubelet seeing a pod for the first time to the pod starting to run",
        k.pod_start.clone(),
    );
    reg.register(
        "kubelet_pod_worker_duration_seconds",
        "Duration in seconds to sync a single pod. Broken down by operation type: create, update, or sync",
        k.pod_worker.clone(),
    );
    reg.register_collector(Box::new(skiff_client::metrics::ProcessCollector));
    reg
});

/// A pod worker's sync took `secs` (`operation`: create, update or sync, as the kubelet's).
pub(crate) fn observe_pod_worker(operation: &'static str, secs: f64) {
    KUBELET
        .pod_worker
        .get_or_create(&OperationLabel { operation })
        .observe(secs);
}

/// A pod first seen `secs` ago is now running.
pub(crate) fn observe_pod_start(secs: f64) {
    KUBELET.pod_start.observe(secs);
}

/// The pod containers of this node as the runtime lists them (blocking: reads state files).
fn pod_containers(st: &ApiState) -> Vec<(crate::pods::RuntimeName, ContainerInfo)> {
    let rt = match Runtime::new(RuntimeConfig {
        data_dir: st.data_dir.clone(),
        shim_exe: st.skiff_exe.clone(),
    }) {
        Ok(rt) => rt,
        Err(e) => {
            tracing::debug!("metrics: opening the runtime: {e}");
            return Vec::new();
        }
    };
    rt.list()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|c| crate::pods::parse_runtime_name(&c.name).map(|n| (n, c)))
        .collect()
}

/// `kubelet_running_pods` and `kubelet_running_containers{container_state}` from one listing.
#[derive(Debug)]
struct Running {
    pods: usize,
    containers: BTreeMap<&'static str, usize>,
}

impl Running {
    fn of(list: &[(crate::pods::RuntimeName, ContainerInfo)]) -> Self {
        let mut pods = HashSet::new();
        let mut containers: BTreeMap<&'static str, usize> =
            ["created", "exited", "running", "unknown"]
                .into_iter()
                .map(|s| (s, 0))
                .collect();
        for (n, c) in list {
            let state = match c.status {
                Status::Created => "created",
                Status::Running => "running",
                Status::Exited => "exited",
                Status::Unknown => "unknown",
            };
            *containers.entry(state).or_default() += 1;
            if c.status == Status::Running {
                pods.insert((n.namespace.as_str(), n.pod.as_str(), n.uid8.as_str()));
            }
        }
        Running {
            pods: pods.len(),
            containers,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    container_state: &'static str,
}

impl Collector for Running {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let e = encoder.encode_descriptor(
            "kubelet_running_pods",
            "Number of pods that have a running pod sandbox",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(self.pods as i64).encode(e)?;
        let mut e = encoder.encode_descriptor(
            "kubelet_running_containers",
            "Number of containers currently running",
            None,
            MetricType::Gauge,
        )?;
        for (state, n) in &self.containers {
            let label = StateLabel {
                container_state: state,
            };
            ConstGauge::new(*n as i64).encode(e.encode_family(&label)?)?;
        }
        Ok(())
    }
}

/// cAdvisor's container labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ContainerLabels {
    namespace: String,
    pod: String,
    container: String,
    /// The cgroup path, as cAdvisor's `id`.
    id: String,
    image: String,
    /// The runtime container name.
    name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InterfaceLabels {
    #[prometheus(flatten)]
    container: ContainerLabels,
    interface: String,
}

/// One running container's counters.
#[derive(Debug)]
struct Usage {
    labels: ContainerLabels,
    cpu_seconds: Option<f64>,
    memory_usage: Option<u64>,
    working_set: Option<u64>,
}

/// One pod's network counters (the pod's containers share its network namespace).
#[derive(Debug)]
struct NetUsage {
    labels: ContainerLabels,
    /// interface → (received, transmitted) bytes.
    interfaces: Vec<(String, u64, u64)>,
}

#[derive(Debug, Default)]
struct Cadvisor {
    containers: Vec<Usage>,
    pods: Vec<NetUsage>,
}

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Where a process's CPU and memory counters are: its cgroup v2 directory, or (cgroup v1) its
/// `cpuacct` and `memory` directories; plus the cgroup path for the `id` label.
#[derive(Debug, PartialEq)]
enum CgroupFiles {
    V2 {
        id: String,
        dir: PathBuf,
    },
    V1 {
        id: String,
        cpuacct: Option<PathBuf>,
        memory: Option<PathBuf>,
    },
}

/// Parses /proc/<pid>/cgroup text (paths with `..` are refused).
fn cgroup_files(text: &str, unified: bool) -> Option<CgroupFiles> {
    let safe = |rel: &str| !rel.split('/').any(|s| s == "..");
    let root = Path::new(CGROUP_ROOT);
    if unified {
        let rel = text.lines().find_map(|l| l.strip_prefix("0::"))?.trim();
        return safe(rel).then(|| CgroupFiles::V2 {
            id: rel.to_string(),
            dir: root.join(rel.trim_start_matches('/')),
        });
    }
    let mut cpuacct = None;
    let mut memory = None;
    let mut id = String::new();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(ctrls), Some(rel)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if !safe(rel) {
            continue;
        }
        let rel_dir = rel.trim_start_matches('/');
        for c in ctrls.split(',') {
            match c {
                "cpuacct" => cpuacct = Some(root.join("cpuacct").join(rel_dir)),
                "memory" => {
                    memory = Some(root.join("memory").join(rel_dir));
                    id = rel.to_string();
                }
                _ => {}
            }
        }
    }
    (cpuacct.is_some() || memory.is_some()).then_some(CgroupFiles::V1 {
        id,
        cpuacct,
        memory,
    })
}

impl CgroupFiles {
    fn id(&self) -> &str {
        match self {
            CgroupFiles::V2 { id, .. } | CgroupFiles::V1 { id, .. } => id,
        }
    }

    /// Cumulative CPU seconds.
    fn cpu_seconds(&self) -> Option<f64> {
        match self {
            CgroupFiles::V2 { dir, .. } => std::fs::read_to_string(dir.join("cpu.stat"))
                .ok()
                .and_then(|t| keyed(&t, "usage_usec"))
                .map(|us| us as f64 / 1e6),
            CgroupFiles::V1 { cpuacct, .. } => cpuacct
                .as_ref()
                .and_then(|d| read_u64(&d.join("cpuacct.usage")))
                .map(|ns| ns as f64 / 1e9),
        }
    }

    /// (usage, working set) bytes; the working set is usage less inactive file pages, as
    /// cAdvisor computes it.
    fn memory(&self) -> (Option<u64>, Option<u64>) {
        let (usage, stat, key) = match self {
            CgroupFiles::V2 { dir, .. } => (
                read_u64(&dir.join("memory.current")),
                std::fs::read_to_string(dir.join("memory.stat")).ok(),
                "inactive_file",
            ),
            CgroupFiles::V1 {
                memory: Some(d), ..
            } => (
                read_u64(&d.join("memory.usage_in_bytes")),
                std::fs::read_to_string(d.join("memory.stat")).ok(),
                "total_inactive_file",
            ),
            CgroupFiles::V1 { memory: None, .. } => return (None, None),
        };
        let inactive = stat.and_then(|t| keyed(&t, key)).unwrap_or(0);
        (usage, usage.map(|u| u.saturating_sub(inactive)))
    }
}

/// A `key value` line's value in a flat-keyed cgroup file (cpu.stat, memory.stat).
fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Per-interface (received, transmitted) bytes from a /proc/<pid>/net/dev text, loopback
/// excluded as cAdvisor does.
fn net_dev(text: &str) -> Vec<(String, u64, u64)> {
    text.lines()
        .skip(2)
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let name = name.trim();
            if name == "lo" {
                return None;
            }
            let f: Vec<u64> = rest
                .split_whitespace()
                .map(|x| x.parse().unwrap_or(0))
                .collect();
            Some((name.to_string(), *f.first()?, *f.get(8)?))
        })
        .collect()
}

impl Cadvisor {
    fn read(list: &[(crate::pods::RuntimeName, ContainerInfo)]) -> Self {
        let mut out = Cadvisor::default();
        let mut pods_seen = HashSet::new();
        let unified = Path::new(CGROUP_ROOT).join("cgroup.controllers").exists();
        for (n, c) in list {
            let Some(pid) = c.pid.filter(|_| c.status == Status::Running) else {
                continue;
            };
            let Some(cg) = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
                .ok()
                .and_then(|t| cgroup_files(&t, unified))
            else {
                continue;
            };
            let labels = ContainerLabels {
                namespace: n.namespace.clone(),
                pod: n.pod.clone(),
                container: n.container.clone(),
                id: cg.id().to_string(),
                image: c.image.clone(),
                name: c.name.clone(),
            };
            let cpu = cg.cpu_seconds();
            let (usage, working_set) = cg.memory();
            if pods_seen.insert((n.namespace.clone(), n.pod.clone(), n.uid8.clone())) {
                if let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/dev")) {
                    out.pods.push(NetUsage {
                        labels: ContainerLabels {
                            container: String::new(),
                            id: String::new(),
                            image: String::new(),
                            name: String::new(),
                            ..labels.clone()
                        },
                        interfaces: net_dev(&text),
                    });
                }
            }
            out.containers.push(Usage {
                labels,
                cpu_seconds: cpu,
                memory_usage: usage,
                working_set,
            });
        }
        out
    }
}

impl Collector for Cadvisor {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut e = encoder.encode_descriptor(
            "container_cpu_usage_seconds",
            "Cumulative cpu time consumed in seconds.",
            None,
            MetricType::Counter,
        )?;
        for u in &self.containers {
            if let Some(v) = u.cpu_seconds {
                ConstCounter::new(v).encode(e.encode_family(&u.labels)?)?;
            }
        }
        let mut e = encoder.encode_descriptor(
            "container_memory_usage_bytes",
            "Current memory usage in bytes, including all memory regardless of when it was accessed",
            None,
            MetricType::Gauge,
        )?;
        for u in &self.containers {
            if let Some(v) = u.memory_usage {
                ConstGauge::new(v as f64).encode(e.encode_family(&u.labels)?)?;
            }
        }
        let mut e = encoder.encode_descriptor(
            "container_memory_working_set_bytes",
            "Current working set in bytes.",
            None,
            MetricType::Gauge,
        )?;
        for u in &self.containers {
            if let Some(v) = u.working_set {
                ConstGauge::new(v as f64).encode(e.encode_family(&u.labels)?)?;
            }
        }
        for (name, help, tx) in [
            (
                "container_network_receive_bytes",
                "Cumulative count of bytes received",
                false,
            ),
            (
                "container_network_transmit_bytes",
                "Cumulative count of bytes transmitted",
                true,
            ),
        ] {
            let mut e = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for p in &self.pods {
                for (iface, rx, txb) in &p.interfaces {
                    let labels = InterfaceLabels {
                        container: p.labels.clone(),
                        interface: iface.clone(),
                    };
                    let v = if tx { *txb } else { *rx };
                    ConstCounter::new(v).encode(e.encode_family(&labels)?)?;
                }
            }
        }
        Ok(())
    }
}

fn respond(headers: &HeaderMap, registries: &[&Registry]) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let (ct, body) = skiff_client::metrics::render(registries, accept);
    let mut resp = Response::new(Body::from(body));
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, http::HeaderValue::from_static(ct));
    resp
}

/// `GET /metrics`: the kubelet's own metrics.
pub(crate) async fn metrics(State(st): State<Arc<ApiState>>, headers: HeaderMap) -> Response {
    let running = tokio::task::spawn_blocking(move || Running::of(&pod_containers(&st)))
        .await
        .unwrap_or(Running {
            pods: 0,
            containers: BTreeMap::new(),
        });
    let mut now = Registry::default();
    now.register_collector(Box::new(running));
    respond(&headers, &[&REGISTRY, &now])
}

/// `GET /metrics/cadvisor`: per-container resource counters.
pub(crate) async fn cadvisor(State(st): State<Arc<ApiState>>, headers: HeaderMap) -> Response {
    let usage = tokio::task::spawn_blocking(move || Cadvisor::read(&pod_containers(&st)))
        .await
        .unwrap_or_default();
    let mut reg = Registry::default();
    reg.register_collector(Box::new(usage));
    respond(&headers, &[&reg])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_dev_skips_loopback() {
        let text = "Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    lo:     100       1    0    0    0     0          0         0      100       1    0    0    0     0       0          0\n  eth0:    1234      10    0    0    0     0          0         0     5678      20    0    0    0     0       0          0\n";
        assert_eq!(net_dev(text), vec![("eth0".to_string(), 1234, 5678)]);
    }

    #[test]
    fn cgroup_paths_v1_and_v2() {
        assert_eq!(
            cgroup_files("0::/skiff-x/podu/abc\n", true),
            Some(CgroupFiles::V2 {
                id: "/skiff-x/podu/abc".into(),
                dir: "/sys/fs/cgroup/skiff-x/podu/abc".into()
            })
        );
        let v1 = "9:name=systemd:/\n4:memory:/skiff-x/abc\n2:cpu,cpuacct:/skiff-x/abc\n0::/\n";
        assert_eq!(
            cgroup_files(v1, false),
            Some(CgroupFiles::V1 {
                id: "/skiff-x/abc".into(),
                cpuacct: Some("/sys/fs/cgroup/cpuacct/skiff-x/abc".into()),
                memory: Some("/sys/fs/cgroup/memory/skiff-x/abc".into()),
            })
        );
        assert_eq!(cgroup_files("0::/../etc\n", true), None);
    }

    #[test]
    fn keyed_values() {
        assert_eq!(
            keyed("usage_usec 2500000\nuser_usec 1\n", "usage_usec"),
            Some(2_500_000)
        );
        assert_eq!(
            keyed("anon 1\ninactive_file 42\n", "inactive_file"),
            Some(42)
        );
        assert_eq!(keyed("anon 1\n", "inactive_file"), None);
    }

    #[test]
    fn kubelet_metrics_encode() {
        observe_pod_worker("create", 0.01);
        observe_pod_start(1.5);
        let running = Running {
            pods: 2,
            containers: [("running", 3), ("exited", 1)].into_iter().collect(),
        };
        let mut now = Registry::default();
        now.register_collector(Box::new(running));
        let (_, body) = skiff_client::metrics::render(&[&REGISTRY, &now], None);
        assert!(body.contains("kubelet_running_pods 2\n"), "{body}");
        assert!(body.contains("kubelet_running_containers{container_state=\"running\"} 3\n"));
        assert!(
            body.contains("kubelet_pod_start_duration_seconds_bucket{le=\"2.0\"} 1\n"),
            "{body}"
        );
        assert!(
            body.contains("kubelet_pod_worker_duration_seconds_count{operation=\"create\"} 1\n")
        );
    }
}
