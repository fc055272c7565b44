//! The API server's Prometheus metrics, with upstream's names and labels: requests
//! (`apiserver_request_total`, `apiserver_request_duration_seconds`), in-flight and long-running
//! gauges, store latency (`etcd_request_duration_seconds`: the store is SQLite, the name is the
//! one dashboards know), object counts (`apiserver_storage_objects`), the datastore's health
//! from `Store::status` (`apiserver_storage_size_bytes`, `skiff_datastore_*`: WAL, in-use and
//! quota bytes, compactions, commit latency, alarms; see docs/datastore.md), plus the process
//! and the controllers' workqueue metrics of the same process. Served at `GET /metrics` to identities
//! that RBAC allows the non-resource URL (the bootstrap `system:monitoring` role).
//!
//! Hot path: every label is a `&'static str` (resources come from the served-kinds registry,
//! unknown paths get empty labels, so a client cannot grow the series), so recording a request
//! costs a few hash lookups and atomic adds, no allocation.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, LazyLock, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::response::Response;
use futures::StreamExt;
use http::{header, HeaderMap, Method};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use skiff_store::{KeyValue, ListOptions, ListResult, Store, Watch};

/// The labels upstream puts on request metrics (`k8s.io/apiserver/pkg/endpoints/metrics`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RequestLabels {
    verb: &'static str,
    dry_run: &'static str,
    group: &'static str,
    version: &'static str,
    resource: &'static str,
    subresource: &'static str,
    scope: &'static str,
    component: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabel {
    code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    request_kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreLabels {
    operation: &'static str,
    r#type: StoreType,
}

/// A store key's resource, `pods` or `deployments.apps` when encoded (two static strings, so a
/// store call's label costs no allocation); empty for keys of no served kind.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, Default)]
struct StoreType {
    plural: &'static str,
    group: &'static str,
}

impl std::fmt::Display for StoreType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.plural)?;
        if !self.group.is_empty() {
            write!(f, ".{}", self.group)?;
        }
        Ok(())
    }
}

impl prometheus_client::encoding::EncodeLabelValue for StoreType {
    fn encode(
        &self,
        encoder: &mut prometheus_client::encoding::LabelValueEncoder,
    ) -> Result<(), std::fmt::Error> {
        use std::fmt::Write;
        write!(encoder, "{self}")
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResourceLabel {
    resource: String,
}

/// Upstream's request latency buckets (seconds).
const REQUEST_BUCKETS: [f64; 23] = [
    0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0,
    10.0, 15.0, 20.0, 30.0, 45.0, 60.0,
];

fn request_histogram() -> Histogram {
    Histogram::new(REQUEST_BUCKETS)
}

struct Metrics {
    requests: Family<(RequestLabels, CodeLabel), Counter>,
    durations: Family<RequestLabels, Histogram>,
    inflight: Family<KindLabel, Gauge>,
    longrunning: Family<RequestLabels, Gauge>,
    store: Family<StoreLabels, Histogram>,
    objects: Family<ResourceLabel, Gauge>,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| Metrics {
    requests: Family::default(),
    durations: Family::new_with_constructor(request_histogram as fn() -> Histogram),
    inflight: Family::default(),
    longrunning: Family::default(),
    store: Family::new_with_constructor(request_histogram as fn() -> Histogram),
    objects: Family::default(),
});

/// The process-wide registry `/metrics` encodes.
static REGISTRY: LazyLock<Registry> = LazyLock::new(|| {
    let m = &*METRICS;
    let mut reg = Registry::default();
    reg.register(
        "apiserver_request",
        "Counter of apiserver requests broken out for each verb, dry run value, group, version, resource, scope, component, and HTTP response code.",
        m.requests.clone(),
    );
    reg.register(
        "apiserver_request_duration_seconds",
        "Response latency distribution in seconds for each verb, dry run value, group, version, resource, subresource, scope and component.",
        m.durations.clone(),
    );
    reg.register(
        "apiserver_current_inflight_requests",
        "Maximal number of currently used inflight request limit of this apiserver per request kind in last second.",
        m.inflight.clone(),
    );
    reg.register(
        "apiserver_longrunning_requests",
        "Gauge of all active long-running apiserver requests broken out by verb, group, version, resource, scope and component. Not all requests are tracked this way.",
        m.longrunning.clone(),
    );
    reg.register(
        "etcd_request_duration_seconds",
        "Store request latency in seconds for each operation and object type.",
        m.store.clone(),
    );
    reg.register(
        "apiserver_storage_objects",
        "Number of stored objects at the time of last check split by kind.",
        m.objects.clone(),
    );
    reg.register_collector(Box::new(DatastoreCollector));
    reg.register_collector(Box::new(skiff_client::metrics::ProcessCollector));
    skiff_client::metrics::register_workqueue(&mut reg);
    skiff_client::metrics::register_leader_election(&mut reg);
    reg
});

const READ_ONLY: KindLabel = KindLabel {
    request_kind: "readOnly",
};
const MUTATING: KindLabel = KindLabel {
    request_kind: "mutating",
};

/// The two in-flight gauges, looked up once (the request path then only adds atomically).
static INFLIGHT: LazyLock<(Gauge, Gauge)> = LazyLock::new(|| {
    (
        METRICS.inflight.get_or_create_owned(&READ_ONLY),
        METRICS.inflight.get_or_create_owned(&MUTATING),
    )
});

/// One request being measured (made before dispatch, finished with its response).
pub(crate) struct Measured {
    labels: RequestLabels,
    started: Instant,
    long_running: bool,
    inflight: &'static Gauge,
}

/// Upstream's subresources whose verb is reported as CONNECT.
fn connect_subresource(sub: &str) -> bool {
    matches!(sub, "exec" | "attach" | "portforward" | "proxy")
}

/// Request labels from the method, path and query, as upstream's `RequestInfo` + `CleanVerb`.
pub(crate) fn labels(
    method: &Method,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
) -> (RequestLabels, bool) {
    let mut l = RequestLabels {
        verb: "",
        dry_run: "",
        group: "",
        version: "",
        resource: "",
        subresource: "",
        scope: "",
        component: "apiserver",
    };
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let q = query.unwrap_or("");
    let mut watch = q
        .split('&')
        .any(|p| matches!(p, "watch=true" | "watch=1" | "watch=True"));
    if q.contains("dryRun=All") {
        l.dry_run = "All";
    }
    let long_running = crate::inflight::long_running(&segs, watch);
    let (group, version, rest): (&str, &str, &[&str]) = match segs.as_slice() {
        ["api", v, rest @ ..] if !rest.is_empty() => ("", *v, rest),
        ["apis", g, v, rest @ ..] if !rest.is_empty() => (*g, *v, rest),
        _ => {
            // A non-resource request: upstream reports the method and no resource labels.
            l.verb = method_verb(method);
            return (l, long_running);
        }
    };
    let rest = match rest {
        ["watch", tail @ ..] => {
            watch = true;
            tail
        }
        _ => rest,
    };
    let (ns, plural, tail): (bool, &str, &[&str]) = match rest {
        ["namespaces", _ns, plural, tail @ ..] if *plural != "status" && *plural != "finalize" => {
            (true, *plural, tail)
        }
        [plural, tail @ ..] => (false, *plural, tail),
        [] => (false, "", &[]),
    };
    let info = skiff_api::resources::by_plural(group, version, plural);
    if let Some(info) = info {
        l.group = info.group;
        l.version = info.version;
        l.resource = info.plural;
        if let Some(sub) = tail.get(1) {
            if let Some(s) = info.subresources.iter().find(|s| **s == *sub) {
                l.subresource = s;
            }
        }
    }
    l.scope = if !tail.is_empty() {
        "resource"
    } else if ns {
        "namespace"
    } else {
        "cluster"
    };
    l.verb = match *method {
        Method::GET | Method::HEAD if watch => "WATCH",
        Method::GET | Method::HEAD if tail.is_empty() => "LIST",
        Method::DELETE if tail.is_empty() => "DELETECOLLECTION",
        Method::PATCH
            if headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/apply-patch")) =>
        {
            "APPLY"
        }
        _ => method_verb(method),
    };
    if connect_subresource(l.subresource) {
        l.verb = "CONNECT";
    }
    (l, long_running)
}

fn method_verb(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Starts measuring a request (counts it in flight unless it is long-running).
pub(crate) fn begin(
    method: &Method,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Measured {
    let (labels, long_running) = labels(method, path, query, headers);
    let inflight = if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        &INFLIGHT.0
    } else {
        &INFLIGHT.1
    };
    if !long_running {
        inflight.inc();
    }
    Measured {
        labels,
        started: Instant::now(),
        long_running,
        inflight,
    }
}

/// FNV-1a: the request-path cache below is keyed by server-chosen static labels (no client can
/// pick them, so no flooding concern), and SipHash over nine strings was most of a request's
/// measuring cost.
#[derive(Default)]
struct Fnv(u64);

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

type Handles = (Counter, Histogram);

/// Metric handles by label key, behind a read-mostly lock.
type Cache<K, V> =
    std::sync::RwLock<std::collections::HashMap<K, V, std::hash::BuildHasherDefault<Fnv>>>;

/// (labels, code) → the counter and histogram of that series: one lookup per request instead of
/// one per family.
static SERIES: LazyLock<Cache<(RequestLabels, u16), Handles>> = LazyLock::new(Default::default);

/// Records a finished request.
fn record(labels: &RequestLabels, code: u16, elapsed: Duration) {
    let secs = elapsed.as_secs_f64();
    let key = (labels.clone(), code);
    if let Ok(series) = SERIES.read() {
        if let Some((c, h)) = series.get(&key) {
            c.inc();
            h.observe(secs);
            return;
        }
    }
    let c = METRICS
        .requests
        .get_or_create_owned(&(labels.clone(), CodeLabel { code }));
    let h = METRICS.durations.get_or_create_owned(labels);
    c.inc();
    h.observe(secs);
    if let Ok(mut series) = SERIES.write() {
        series.insert(key, (c, h));
    }
}

/// Counts a long-running request until its body ends, then records it like upstream (a watch
/// is counted when it ends, with its whole duration).
struct LongRunning {
    labels: RequestLabels,
    code: u16,
    started: Instant,
}

impl Drop for LongRunning {
    fn drop(&mut self) {
        METRICS.longrunning.get_or_create(&self.labels).dec();
        record(&self.labels, self.code, self.started.elapsed());
    }
}

/// Finishes measuring: ordinary requests are recorded now; a successful long-running one
/// (watch, log follow, exec…) when its body is dropped.
pub(crate) fn finish(m: Measured, resp: Response) -> Response {
    let code = resp.status().as_u16();
    if !m.long_running {
        m.inflight.dec();
        record(&m.labels, code, m.started.elapsed());
        return resp;
    }
    if !resp.status().is_success() {
        record(&m.labels, code, m.started.elapsed());
        return resp;
    }
    METRICS.longrunning.get_or_create(&m.labels).inc();
    let guard = LongRunning {
        labels: m.labels,
        code,
        started: m.started,
    };
    let (parts, body) = resp.into_parts();
    let body = body.into_data_stream().map(move |chunk| {
        // The guard lives as long as the stream.
        let _ = &guard;
        chunk
    });
    Response::from_parts(parts, Body::from_stream(body))
}

/// `type` label of a store key: `/registry/<group|core>/<plural>/…` → `pods`, `deployments.apps`.
fn store_type(key: &str) -> StoreType {
    let mut it = key.trim_start_matches("/registry/").split('/');
    let (Some(group), Some(plural)) = (it.next(), it.next()) else {
        return StoreType::default();
    };
    let group = if group == "core" { "" } else { group };
    skiff_api::resources::all()
        .iter()
        .find(|r| r.plural == plural && r.group == group)
        .map(|r| StoreType {
            plural: r.plural,
            group: r.group,
        })
        .unwrap_or_default()
}

/// (operation, type) → its histogram (see [`SERIES`]).
static STORE_SERIES: LazyLock<Cache<(&'static str, StoreType), Histogram>> =
    LazyLock::new(Default::default);

fn observe_store(operation: &'static str, r#type: StoreType, since: Instant) {
    let secs = since.elapsed().as_secs_f64();
    let k = (operation, r#type);
    if let Ok(series) = STORE_SERIES.read() {
        if let Some(h) = series.get(&k) {
            h.observe(secs);
            return;
        }
    }
    let h = METRICS
        .store
        .get_or_create_owned(&StoreLabels { operation, r#type });
    h.observe(secs);
    if let Ok(mut series) = STORE_SERIES.write() {
        series.insert(k, h);
    }
}

/// The store with each call timed into `etcd_request_duration_seconds`. The trait methods are
/// written out (what `async_trait` would generate) so a call costs the inner store's future
/// plus one small wrapper, not a second async state machine; watch and revision calls pass
/// straight through.
pub(crate) struct InstrumentedStore(pub Arc<dyn Store>);

type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = skiff_store::Result<T>> + Send + 'a>>;

/// An inner store future that records its duration when it completes.
struct Timed<'a, T> {
    inner: StoreFuture<'a, T>,
    operation: &'static str,
    r#type: StoreType,
    started: Instant,
}

impl<'a, T> Timed<'a, T> {
    fn boxed(inner: StoreFuture<'a, T>, operation: &'static str, key: &str) -> StoreFuture<'a, T>
    where
        T: 'a,
    {
        Box::pin(Timed {
            inner,
            operation,
            r#type: store_type(key),
            started: Instant::now(),
        })
    }
}

impl<T> Future for Timed<'_, T> {
    type Output = skiff_store::Result<T>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let r = self.inner.as_mut().poll(cx);
        if r.is_ready() {
            observe_store(self.operation, self.r#type, self.started);
        }
        r
    }
}

impl Store for InstrumentedStore {
    fn get<'a, 'b, 'c>(&'a self, key: &'b str) -> StoreFuture<'c, Option<KeyValue>>
    where
        'a: 'c,
        'b: 'c,
        Self: 'c,
    {
        Timed::boxed(self.0.get(key), "get", key)
    }
    fn list<'a, 'b, 'd, 'c>(
        &'a self,
        prefix: &'b str,
        opts: &'d ListOptions,
    ) -> StoreFuture<'c, ListResult>
    where
        'a: 'c,
        'b: 'c,
        'd: 'c,
        Self: 'c,
    {
        Timed::boxed(self.0.list(prefix, opts), "list", prefix)
    }
    fn create<'a, 'b, 'c>(&'a self, key: &'b str, value: Vec<u8>) -> StoreFuture<'c, KeyValue>
    where
        'a: 'c,
        'b: 'c,
        Self: 'c,
    {
        Timed::boxed(self.0.create(key, value), "create", key)
    }
    fn update<'a, 'b, 'c>(
        &'a self,
        key: &'b str,
        value: Vec<u8>,
        expected_revision: i64,
    ) -> StoreFuture<'c, KeyValue>
    where
        'a: 'c,
        'b: 'c,
        Self: 'c,
    {
        Timed::boxed(self.0.update(key, value, expected_revision), "update", key)
    }
    fn delete<'a, 'b, 'c>(
        &'a self,
        key: &'b str,
        expected_revision: Option<i64>,
    ) -> StoreFuture<'c, KeyValue>
    where
        'a: 'c,
        'b: 'c,
        Self: 'c,
    {
        Timed::boxed(self.0.delete(key, expected_revision), "delete", key)
    }
    fn watch<'a, 'b, 'c>(&'a self, prefix: &'b str, from_revision: i64) -> StoreFuture<'c, Watch>
    where
        'a: 'c,
        'b: 'c,
        Self: 'c,
    {
        self.0.watch(prefix, from_revision)
    }
    fn current_revision<'a, 'c>(&'a self) -> StoreFuture<'c, i64>
    where
        'a: 'c,
        Self: 'c,
    {
        self.0.current_revision()
    }
    fn compact<'a, 'c>(&'a self, revision: i64) -> StoreFuture<'c, ()>
    where
        'a: 'c,
        Self: 'c,
    {
        Timed::boxed(self.0.compact(revision), "compact", "")
    }
    fn status<'a, 'c>(&'a self) -> StoreFuture<'c, skiff_store::StoreStatus>
    where
        'a: 'c,
        Self: 'c,
    {
        self.0.status()
    }
    fn snapshot<'a, 'b, 'c>(
        &'a self,
        dest: &'b std::path::Path,
    ) -> StoreFuture<'c, skiff_store::SnapshotInfo>
    where
        'a: 'c,
        'b: 'c,
        Self: 'c,
    {
        self.0.snapshot(dest)
    }
    fn restore<'a, 'b, 'c>(
        &'a self,
        snapshot: &'b std::path::Path,
    ) -> StoreFuture<'c, skiff_store::SnapshotInfo>
    where
        'a: 'c,
        'b: 'c,
        Self: 'c,
    {
        self.0.restore(snapshot)
    }
}

/// How often `apiserver_storage_objects` is recounted at most (upstream: every minute).
const OBJECT_COUNT_INTERVAL: Duration = Duration::from_secs(30);
/// Items read per page while counting.
const COUNT_PAGE: i64 = 500;

/// When the objects were last counted, and in which store (tests run several servers in one
/// process; the gauges are process-wide, as upstream's registry).
static LAST_COUNT: Mutex<Option<(usize, Instant)>> = Mutex::new(None);

/// Recounts the stored objects by resource (paged, so memory stays bounded).
async fn count_objects(store: &Arc<dyn Store>) {
    let id = Arc::as_ptr(store) as *const () as usize;
    {
        let Ok(mut last) = LAST_COUNT.lock() else {
            return;
        };
        if last.is_some_and(|(s, t)| s == id && t.elapsed() < OBJECT_COUNT_INTERVAL) {
            return;
        }
        *last = Some((id, Instant::now()));
    }
    let mut counts: std::collections::HashMap<StoreType, i64> = Default::default();
    let mut opts = ListOptions {
        limit: COUNT_PAGE,
        ..Default::default()
    };
    loop {
        let Ok(page) = store.list("/registry/", &opts).await else {
            return;
        };
        for kv in &page.items {
            *counts.entry(store_type(&kv.key)).or_default() += 1;
        }
        if !page.more {
            break;
        }
        opts.revision = page.revision;
        opts.start_after = page.items.last().map(|kv| kv.key.clone());
        if opts.start_after.is_none() {
            break;
        }
    }
    // Resources with no objects left report 0, as upstream.
    for info in skiff_api::resources::all()
        .iter()
        .filter(|r| !skiff_api::kinds::is_alt_version(r))
    {
        let t = StoreType {
            plural: info.plural,
            group: info.group,
        };
        let n = counts.get(&t).copied().unwrap_or(0);
        METRICS
            .objects
            .get_or_create(&ResourceLabel {
                resource: t.to_string(),
            })
            .set(n);
    }
}

/// How often the datastore status is read at most (scrapes in between reuse it).
const STATUS_INTERVAL: Duration = Duration::from_secs(5);
/// A status read slower than this (an etcd without quorum) keeps the previous figures.
const STATUS_TIMEOUT: Duration = Duration::from_secs(3);

/// The last datastore status read, and from which store and when (process-wide, as the
/// registry).
static DATASTORE: Mutex<Option<(usize, Instant, skiff_store::StoreStatus)>> = Mutex::new(None);

/// Re-reads the store's status when the last one is older than [`STATUS_INTERVAL`].
async fn refresh_datastore(store: &Arc<dyn Store>) {
    let id = Arc::as_ptr(store) as *const () as usize;
    let fresh = DATASTORE.lock().is_ok_and(|d| {
        d.as_ref()
            .is_some_and(|(s, t, _)| *s == id && t.elapsed() < STATUS_INTERVAL)
    });
    if fresh {
        return;
    }
    match tokio::time::timeout(STATUS_TIMEOUT, store.status()).await {
        Ok(Ok(status)) => {
            if let Ok(mut d) = DATASTORE.lock() {
                *d = Some((id, Instant::now(), status));
            }
        }
        Ok(Err(e)) => tracing::debug!(error = %e, "datastore status for metrics"),
        Err(_) => tracing::debug!("datastore status for metrics timed out"),
    }
}

/// Alarms always exported (0 when off), so alerts can match on them before they fire.
const KNOWN_ALARMS: [&str; 2] = ["NOSPACE", "CORRUPT"];

/// Encodes the last datastore status (values come from the store, not from counters here).
#[derive(Debug)]
struct DatastoreCollector;

impl prometheus_client::collector::Collector for DatastoreCollector {
    fn encode(
        &self,
        mut enc: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::metrics::MetricType;
        let Some(st) = DATASTORE
            .lock()
            .ok()
            .and_then(|d| d.as_ref().map(|(_, _, st)| st.clone()))
        else {
            return Ok(());
        };
        // Upstream names its storage clusters by index; there is one.
        let cluster = format!("{}-0", st.backend);
        enc.encode_descriptor(
            "apiserver_storage_size_bytes",
            "Size of the storage database file physically allocated in bytes.",
            None,
            MetricType::Gauge,
        )?
        .encode_family(&[("storage_cluster_id", cluster.as_str())])?
        .encode_gauge(&st.db_size_bytes)?;
        let gauges: [(&str, &str, u64); 4] = [
            (
                "skiff_datastore_wal_bytes",
                "Size of the SQLite write-ahead log in bytes (0 for etcd).",
                st.wal_size_bytes,
            ),
            (
                "skiff_datastore_in_use_bytes",
                "Bytes of the datastore holding live data (not free pages).",
                st.db_size_in_use_bytes,
            ),
            (
                "skiff_datastore_quota_bytes",
                "Size at which the datastore refuses writes (NOSPACE alarm); 0 = none.",
                st.quota_bytes,
            ),
            (
                "skiff_datastore_compact_revision",
                "Revision up to which history has been compacted.",
                st.compact_revision.max(0) as u64,
            ),
        ];
        for (name, help, v) in gauges {
            enc.encode_descriptor(name, help, None, MetricType::Gauge)?
                .encode_gauge(&v)?;
        }
        enc.encode_descriptor(
            "skiff_datastore_compactions",
            "Compactions of the datastore's history since the process started.",
            None,
            MetricType::Counter,
        )?
        .encode_counter::<prometheus_client::encoding::NoLabelSet, _, u64>(&st.compactions, None)?;
        let h = &st.commit_latency;
        let mut buckets: Vec<(f64, u64)> = h
            .bounds
            .iter()
            .zip(h.counts.iter())
            .map(|(b, c)| (*b, *c))
            .collect();
        // The text encoder writes f64::MAX as +Inf.
        buckets.push((f64::MAX, h.counts.get(h.bounds.len()).copied().unwrap_or(0)));
        enc.encode_descriptor(
            "skiff_datastore_commit_duration_seconds",
            "Latency of durable datastore commits (SQLite: the commit's fsync; etcd: write round trips).",
            None,
            MetricType::Histogram,
        )?
        .encode_histogram::<prometheus_client::encoding::NoLabelSet>(
            h.sum_seconds,
            h.count,
            &buckets,
            None,
        )?;
        let mut alarm = enc.encode_descriptor(
            "skiff_datastore_alarm",
            "Datastore alarms: 1 while raised (NOSPACE: over the quota, writes refused).",
            None,
            MetricType::Gauge,
        )?;
        let extra = st.alarms.iter().map(String::as_str);
        let mut names: Vec<&str> = KNOWN_ALARMS.iter().copied().chain(extra).collect();
        names.sort_unstable();
        names.dedup();
        for name in names {
            let on = st.alarms.iter().any(|a| a == name) as i64;
            alarm.encode_family(&[("alarm", name)])?.encode_gauge(&on)?;
        }
        Ok(())
    }
}

/// `GET /metrics` (after authentication and the non-resource authorization check).
pub(crate) async fn serve(store: &Arc<dyn Store>, headers: &HeaderMap) -> Response {
    count_objects(store).await;
    refresh_datastore(store).await;
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let (ct, body) = skiff_client::metrics::render(&[&REGISTRY], accept);
    let mut resp = Response::new(Body::from(body));
    if let Ok(v) = http::HeaderValue::from_str(ct) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(method: Method, path: &str, query: Option<&str>) -> RequestLabels {
        labels(&method, path, query, &HeaderMap::new()).0
    }

    #[test]
    fn verbs_and_scopes_are_upstreams() {
        let x = l(Method::GET, "/api/v1/namespaces/default/pods", None);
        assert_eq!((x.verb, x.resource, x.scope), ("LIST", "pods", "namespace"));
        let x = l(Method::GET, "/api/v1/pods", Some("watch=true"));
        assert_eq!((x.verb, x.scope), ("WATCH", "cluster"));
        let x = l(Method::GET, "/api/v1/watch/namespaces/a/pods", None);
        assert_eq!((x.verb, x.resource), ("WATCH", "pods"));
        let x = l(
            Method::GET,
            "/apis/apps/v1/namespaces/a/deployments/web/scale",
            None,
        );
        assert_eq!(
            (x.verb, x.group, x.resource, x.subresource, x.scope),
            ("GET", "apps", "deployments", "scale", "resource")
        );
        let x = l(Method::POST, "/api/v1/namespaces/a/pods/p/exec", None);
        assert_eq!((x.verb, x.subresource), ("CONNECT", "exec"));
        let x = l(Method::DELETE, "/api/v1/namespaces/a/pods", None);
        assert_eq!(x.verb, "DELETECOLLECTION");
        let x = l(Method::GET, "/api/v1/namespaces/kube-system", None);
        assert_eq!(
            (x.verb, x.resource, x.scope),
            ("GET", "namespaces", "resource")
        );
        let x = l(
            Method::POST,
            "/api/v1/namespaces/a/pods",
            Some("dryRun=All"),
        );
        assert_eq!((x.verb, x.dry_run), ("POST", "All"));
        // Unknown resources and non-resource paths get no resource labels (bounded series).
        let x = l(Method::GET, "/apis/nope.example/v9/things", None);
        assert_eq!((x.group, x.version, x.resource), ("", "", ""));
        let x = l(Method::GET, "/metrics", None);
        assert_eq!((x.verb, x.scope, x.resource), ("GET", "", ""));
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/apply-patch+yaml"),
        );
        let (x, _) = labels(
            &Method::PATCH,
            "/api/v1/namespaces/a/configmaps/c",
            None,
            &h,
        );
        assert_eq!(x.verb, "APPLY");
    }

    #[test]
    fn store_types() {
        let t = |k: &str| store_type(k).to_string();
        assert_eq!(t("/registry/core/pods/a/b"), "pods");
        assert_eq!(t("/registry/apps/deployments/a/b"), "deployments.apps");
        assert_eq!(t("/registry/core/namespaces/"), "namespaces");
        assert_eq!(t("/registry/nope/things/x"), "");
    }
}
