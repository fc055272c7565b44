//! Prometheus metrics every skiff process shares: the text exposition (OpenMetrics when the
//! scraper asks for it, else the 0.0.4 text format, one body either way), the `process_*`
//! collector, and the controllers' workqueue metrics with upstream's names (client-go's
//! `workqueue_*`), recorded by [`crate::driver::drive`]. The families live in process-wide
//! statics, as upstream's legacy registry: the API server registers them on its `/metrics`
//! (controllers run in the server process, so one scrape sees both, like k3s).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Instant;

pub use prometheus_client;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

/// The OpenMetrics content type Prometheus asks for first.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The classic text format (what curl and older scrapers get).
pub const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Encodes `registries` into one exposition body; returns (content type, body). The body is
/// OpenMetrics text; scrapers that did not ask for it get it labelled as the 0.0.4 text format,
/// whose parsers read it too (`# EOF` is a comment there).
pub fn render(registries: &[&Registry], accept: Option<&str>) -> (&'static str, String) {
    let mut body = String::with_capacity(16 * 1024);
    for r in registries {
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode_registry(&mut body, r);
    }
    let _ = prometheus_client::encoding::text::encode_eof(&mut body);
    let ct = if accept.is_some_and(|a| a.contains("application/openmetrics-text")) {
        OPENMETRICS
    } else {
        TEXT
    };
    (ct, body)
}

/// upstream's process collector: `process_cpu_seconds_total`, `process_resident_memory_bytes`,
/// `process_virtual_memory_bytes`, `process_start_time_seconds`, `process_open_fds`,
/// `process_max_fds`, read from /proc/self at each scrape.
#[derive(Debug, Default)]
pub struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Ok(me) = procfs::process::Process::myself() else {
            return Ok(());
        };
        if let Ok(stat) = me.stat() {
            let tps = procfs::ticks_per_second() as f64;
            let cpu = (stat.utime + stat.stime) as f64 / tps.max(1.0);
            let e = encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds.",
                None,
                MetricType::Counter,
            )?;
            ConstCounter::new(cpu).encode(e)?;
            let page = procfs::page_size();
            let e = encoder.encode_descriptor(
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                None,
                MetricType::Gauge,
            )?;
            ConstGauge::new(stat.rss.saturating_mul(page) as f64).encode(e)?;
            let e = encoder.encode_descriptor(
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                None,
                MetricType::Gauge,
            )?;
            ConstGauge::new(stat.vsize as f64).encode(e)?;
            if let Ok(boot) = procfs::boot_time_secs() {
                let e = encoder.encode_descriptor(
                    "process_start_time_seconds",
                    "Start time of the process since unix epoch in seconds.",
                    None,
                    MetricType::Gauge,
                )?;
                ConstGauge::new(boot as f64 + stat.starttime as f64 / tps.max(1.0)).encode(e)?;
            }
        }
        if let Ok(n) = me.fd_count() {
            let e = encoder.encode_descriptor(
                "process_open_fds",
                "Number of open file descriptors.",
                None,
                MetricType::Gauge,
            )?;
            ConstGauge::new(n as f64).encode(e)?;
        }
        if let Ok(limits) = me.limits() {
            if let procfs::process::LimitValue::Value(v) = limits.max_open_files.soft_limit {
                let e = encoder.encode_descriptor(
                    "process_max_fds",
                    "Maximum number of open file descriptors.",
                    None,
                    MetricType::Gauge,
                )?;
                ConstGauge::new(v as f64).encode(e)?;
            }
        }
        Ok(())
    }
}

/// The `name` label of every workqueue metric (the controller's name).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueName {
    pub name: &'static str,
}

/// client-go's workqueue metrics (`k8s.io/component-base/metrics/prometheus/workqueue`).
pub struct Workqueue {
    pub depth: Family<QueueName, Gauge>,
    pub adds: Family<QueueName, Counter>,
    pub retries: Family<QueueName, Counter>,
    pub queue_duration: Family<QueueName, Histogram>,
    pub work_duration: Family<QueueName, Histogram>,
}

/// client-go's buckets: 10ns to 10s, ×10 each.
fn queue_buckets() -> Histogram {
    Histogram::new(exponential_buckets(1e-8, 10.0, 10))
}

pub static WORKQUEUE: LazyLock<Workqueue> = LazyLock::new(|| Workqueue {
    depth: Family::default(),
    adds: Family::default(),
    retries: Family::default(),
    queue_duration: Family::new_with_constructor(queue_buckets as fn() -> Histogram),
    work_duration: Family::new_with_constructor(queue_buckets as fn() -> Histogram),
});

/// Registers the workqueue families (shared handles) on `reg`.
pub fn register_workqueue(reg: &mut Registry) {
    let w = &*WORKQUEUE;
    reg.register(
        "workqueue_depth",
        "Current depth of workqueue",
        w.depth.clone(),
    );
    reg.register(
        "workqueue_adds",
        "Total number of adds handled by workqueue",
        w.adds.clone(),
    );
    reg.register(
        "workqueue_retries",
        "Total number of retries handled by workqueue",
        w.retries.clone(),
    );
    reg.register(
        "workqueue_queue_duration_seconds",
        "How long in seconds an item stays in workqueue before being requested.",
        w.queue_duration.clone(),
    );
    reg.register(
        "workqueue_work_duration_seconds",
        "How long in seconds processing an item from workqueue takes.",
        w.work_duration.clone(),
    );
}

/// The `name` label of the leader-election gauge (the Lease's name).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LeaseName {
    pub name: String,
}

/// client-go's `leader_election_master_status{name}`: 1 while this process holds the Lease, 0
/// while it stands by. Set by `skiff_controllers::leaderelection`.
pub static LEADER_ELECTION: LazyLock<Family<LeaseName, Gauge>> = LazyLock::new(Family::default);

/// Registers the leader-election gauge (a shared handle) on `reg`.
pub fn register_leader_election(reg: &mut Registry) {
    reg.register(
        "leader_election_master_status",
        "Gauge of if the reporting system is master of the relevant lease, 0 indicates backup, 1 indicates master. 'name' is the string used to identify the lease.",
        LEADER_ELECTION.clone(),
    );
}

/// One controller's queue as the metrics see it: items added and not yet picked up (the depth;
/// a key added twice before it is processed counts once, as client-go's dirty set) with the
/// time each was first added.
pub struct QueueTracker<T> {
    label: QueueName,
    pending: Mutex<HashMap<T, Instant>>,
}

impl<T: Hash + Eq> QueueTracker<T> {
    pub fn new(name: &'static str) -> Arc<Self> {
        let label = QueueName { name };
        // Create the series at once so a controller with an empty queue still shows depth 0.
        WORKQUEUE.depth.get_or_create(&label).set(0);
        WORKQUEUE.adds.get_or_create(&label).inc_by(0);
        WORKQUEUE.retries.get_or_create(&label).inc_by(0);
        Arc::new(QueueTracker {
            label,
            pending: Mutex::new(HashMap::new()),
        })
    }

    /// An item was queued.
    pub fn add(&self, item: T) {
        WORKQUEUE.adds.get_or_create(&self.label).inc();
        if let Ok(mut p) = self.pending.lock() {
            p.entry(item).or_insert_with(Instant::now);
            WORKQUEUE
                .depth
                .get_or_create(&self.label)
                .set(i64::try_from(p.len()).unwrap_or(i64::MAX));
        }
    }

    /// A worker picked `item` up: observes how long it waited.
    pub fn started(&self, item: &T) {
        if let Ok(mut p) = self.pending.lock() {
            if let Some(t) = p.remove(item) {
                WORKQUEUE
                    .queue_duration
                    .get_or_create(&self.label)
                    .observe(t.elapsed().as_secs_f64());
            }
            WORKQUEUE
                .depth
                .get_or_create(&self.label)
                .set(i64::try_from(p.len()).unwrap_or(i64::MAX));
        }
    }

    /// A worker finished an item that it started at `since`.
    pub fn done(&self, since: Instant) {
        WORKQUEUE
            .work_duration
            .get_or_create(&self.label)
            .observe(since.elapsed().as_secs_f64());
    }

    /// A failed item goes back with a delay (client-go's `AddRateLimited`).
    pub fn retry(&self) {
        WORKQUEUE.retries.get_or_create(&self.label).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_and_workqueue_metrics_encode() {
        let mut reg = Registry::default();
        reg.register_collector(Box::new(ProcessCollector));
        register_workqueue(&mut reg);
        let q = QueueTracker::<String>::new("unit-test-queue");
        q.add("a".into());
        q.add("a".into());
        q.add("b".into());
        q.started(&"a".to_string());
        q.done(Instant::now());
        q.retry();
        let (ct, body) = render(&[&reg], Some("application/openmetrics-text"));
        assert_eq!(ct, OPENMETRICS);
        assert!(body.contains("process_cpu_seconds_total "), "{body}");
        assert!(body.contains("process_resident_memory_bytes "), "{body}");
        assert!(body.contains("process_start_time_seconds "), "{body}");
        assert!(body.contains("workqueue_depth{name=\"unit-test-queue\"} 1\n"));
        assert!(body.contains("workqueue_adds_total{name=\"unit-test-queue\"} 3\n"));
        assert!(body.contains("workqueue_retries_total{name=\"unit-test-queue\"} 1\n"));
        assert!(
            body.contains("workqueue_queue_duration_seconds_count{name=\"unit-test-queue\"} 1\n")
        );
        assert!(body.ends_with("# EOF\n"));
        let (ct, _) = render(&[&reg], None);
        assert_eq!(ct, TEXT);
    }
}
