//! The etcd backend: [`EtcdStore`] maps the [`Store`] contract onto an etcd v3 cluster.
//!
//! * Keys are stored as given (the apiserver uses `/registry/<group>/<resource>/<ns>/<name>`);
//!   revisions are etcd's own (`mod_revision` = resourceVersion).
//! * Writes are single transactions with the precondition as the compare: create =
//!   `create_revision == 0`, update = `mod_revision == expected`, delete = the same (or "exists").
//!   The failure branch reads the key, so a Conflict carries the actual revision in one round trip.
//! * Every unary call has a deadline ([`EtcdTuning::request_timeout`]): with no quorum etcd
//!   would otherwise queue a write forever; the caller gets [`StoreError::Unavailable`] instead.
//! * etcd does not report its compact revision, so [`EtcdStore::compact`] records it in the key
//!   [`COMPACT_KEY`] (outside `/`, hidden from lists and snapshots), as kube-apiserver does, so
//!   every server sharing the cluster knows it.
//! * A watch is one etcd watch with `prev_kv`, so a Delete carries the last value. The server
//!   does not use it directly: [`connect`] wraps the store in the watch cache
//!   ([`crate::watchcache::CachedStore`]), which holds one etcd watch for all watchers.

use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::{
    AlarmAction, AlarmType, Certificate, Client, Compare, CompareOp, ConnectOptions, DeleteOptions,
    EventType, GetOptions, Identity, PutOptions, TlsOptions, Txn, TxnOp, TxnOpResponse,
    WatchOptions,
};
use tokio::sync::mpsc;

use crate::watchcache::{CacheOptions, CachedStore};
use crate::{
    Event, EventKind, Histogram, KeyValue, ListOptions, ListResult, MemberStatus, Result,
    SnapshotInfo, Store, StoreError, StoreStatus, Watch, DEFAULT_MAX_VALUE_BYTES,
};

/// How to reach an etcd cluster (k3s's `--datastore-*` flags).
#[derive(Debug, Clone, Default)]
pub struct EtcdOptions {
    /// Client URLs, e.g. `https://10.0.0.1:2379` (several for a cluster).
    pub endpoints: Vec<String>,
    /// PEM CA bundle verifying the members' serving certificates.
    pub ca_file: Option<std::path::PathBuf>,
    /// PEM client certificate and key for etcd's client-cert authentication.
    pub cert_file: Option<std::path::PathBuf>,
    pub key_file: Option<std::path::PathBuf>,
}

/// Knobs of [`EtcdStore`]; [`Default`] suits the API server.
#[derive(Debug, Clone)]
pub struct EtcdTuning {
    /// Deadline of every unary call (a write without quorum fails after this).
    pub request_timeout: Duration,
    /// Capacity of a watch's channel.
    pub watch_buffer: usize,
    /// A watcher that does not take an event within this long is dropped (its receiver ends).
    pub slow_watcher_timeout: Duration,
    /// Largest key + value accepted (etcd's default `--max-request-bytes`).
    pub max_value_bytes: usize,
}

impl Default for EtcdTuning {
    fn default() -> Self {
        EtcdTuning {
            request_timeout: Duration::from_secs(5),
            watch_buffer: 1024,
            slow_watcher_timeout: Duration::from_secs(10),
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
        }
    }
}

/// Where the compact revision is recorded (zero-padded decimal, so byte order = numeric order).
pub const COMPACT_KEY: &str = "skiff/compact_revision";

/// Where skiff's data lives: what snapshots hold and restores replace.
const DATA_PREFIX: &str = "/";
/// Keys per list round trip (halved when a page is too large for one message).
const LIST_PAGE: i64 = 500;
/// Largest gRPC message accepted from etcd (list pages, watch responses).
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;
/// etcd's limits for one transaction (`--max-txn-ops`, `--max-request-bytes`).
const TXN_MAX_OPS: usize = 128;
const TXN_MAX_BYTES: usize = 1024 * 1024;
// gRPC status codes (numbers fixed by the gRPC spec; saves a direct tonic dependency).
const GRPC_CANCELLED: i32 = 1;
const GRPC_DEADLINE_EXCEEDED: i32 = 4;
const GRPC_RESOURCE_EXHAUSTED: i32 = 8;
const GRPC_OUT_OF_RANGE: i32 = 11;
const GRPC_UNAVAILABLE: i32 = 14;
/// Above this size a file more than half empty earns a defragmentation hint.
const DEFRAG_HINT_BYTES: u64 = 256 * 1024 * 1024;
/// Upper bounds of the commit latency histogram (etcd's own disk histograms use these).
const LATENCY_BOUNDS: [f64; 14] = [
    0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096,
    8.192,
];

/// A [`crate::Store`] on an etcd v3 cluster.
pub struct EtcdStore {
    client: Client,
    options: EtcdOptions,
    connect: ConnectOptions,
    tuning: EtcdTuning,
    /// Highest compact revision known (ours or read from [`COMPACT_KEY`]).
    compacted: AtomicI64,
    compactions: AtomicU64,
    last_compaction_unix: AtomicI64,
    latency: Mutex<Histogram>,
    watches: Arc<AtomicUsize>,
    /// One client per member for `status()` (by its client URLs), reused between calls.
    member_clients: Mutex<std::collections::HashMap<Vec<String>, Client>>,
    /// Dropped with the store: ends every watch.
    _close: tokio::sync::watch::Sender<()>,
    close_rx: tokio::sync::watch::Receiver<()>,
}

/// Connects to the cluster and returns the store a server uses: the etcd backend behind the
/// server's watch cache (one etcd watch per server, fanned out in process).
pub async fn connect(options: EtcdOptions) -> Result<Arc<dyn Store>> {
    let store = EtcdStore::connect(options).await?;
    let cached = CachedStore::start(Arc::new(store), CacheOptions::default()).await?;
    Ok(Arc::new(cached))
}

/// Why a call failed before it could be mapped (the mapping depends on the call).
enum CallError {
    Timeout,
    Etcd(etcd_client::Error),
}

impl From<etcd_client::Error> for CallError {
    fn from(e: etcd_client::Error) -> Self {
        CallError::Etcd(e)
    }
}

fn grpc_message(e: &CallError) -> Option<&str> {
    match e {
        CallError::Etcd(etcd_client::Error::GRpcStatus(s)) => Some(s.message()),
        _ => None,
    }
}

/// `first` followed by the error's chain of causes (bounded: causes can nest deeply).
fn with_sources(first: &str, e: &dyn std::error::Error) -> String {
    let mut out = first.to_string();
    let mut cause = e.source();
    for _ in 0..8 {
        let Some(c) = cause else { break };
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

/// See [`EtcdStore::call`].
fn retryable(e: &etcd_client::Error, idempotent: bool) -> bool {
    match e {
        etcd_client::Error::GRpcStatus(s) => {
            let msg = s.message();
            let unavailable = s.code() as i32 == GRPC_UNAVAILABLE;
            (unavailable
                && (msg.contains("tcp connect error") || msg.contains("connection refused")))
                || msg.contains("no leader")
                || (idempotent
                    && (unavailable || msg.contains("leader changed") || msg.contains("timed out")))
        }
        etcd_client::Error::TransportError(_) => true,
        etcd_client::Error::IoError(_) => idempotent,
        _ => false,
    }
}

fn read_pem(path: &Path, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path)
        .map_err(|e| StoreError::Backend(format!("reading etcd {what} {}: {e}", path.display())))
}

impl EtcdStore {
    /// Connects with default tuning.
    pub async fn connect(options: EtcdOptions) -> Result<EtcdStore> {
        Self::connect_with(options, EtcdTuning::default()).await
    }

    /// Connects to every endpoint (client TLS from `options`) and checks the cluster answers.
    pub async fn connect_with(options: EtcdOptions, tuning: EtcdTuning) -> Result<EtcdStore> {
        if options.endpoints.is_empty() {
            return Err(StoreError::Backend("no etcd endpoint given".into()));
        }
        let mut connect = ConnectOptions::new()
            .with_require_leader(true)
            .with_connect_timeout(tuning.request_timeout)
            // etcd refuses pings more often than every 5 s (--grpc-keepalive-min-time).
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5))
            .with_keep_alive_while_idle(true);
        let tls = options.ca_file.is_some() || options.cert_file.is_some();
        if tls {
            let mut t = TlsOptions::new();
            if let Some(ca) = &options.ca_file {
                t = t.ca_certificate(Certificate::from_pem(read_pem(ca, "CA")?));
            }
            match (&options.cert_file, &options.key_file) {
                (Some(c), Some(k)) => {
                    t = t.identity(Identity::from_pem(
                        read_pem(c, "certificate")?,
                        read_pem(k, "key")?,
                    ));
                }
                (None, None) => {}
                _ => {
                    return Err(StoreError::Backend(
                        "etcd client certificate and key must be given together".into(),
                    ))
                }
            }
            connect = connect.with_tls(t);
            if let Some(plain) = options.endpoints.iter().find(|e| e.starts_with("http://")) {
                return Err(StoreError::Backend(format!(
                    "etcd endpoint {plain} is http:// but TLS files were given (use https://)"
                )));
            }
        }
        let client = Client::connect(&options.endpoints, Some(connect.clone()))
            .await
            .map_err(|e| {
                StoreError::Unavailable(format!(
                    "connecting to etcd {}: {e}",
                    options.endpoints.join(",")
                ))
            })?;
        let (close, close_rx) = tokio::sync::watch::channel(());
        let store = EtcdStore {
            client,
            options,
            connect,
            tuning,
            compacted: AtomicI64::new(0),
            compactions: AtomicU64::new(0),
            last_compaction_unix: AtomicI64::new(0),
            latency: Mutex::new(Histogram {
                bounds: LATENCY_BOUNDS.to_vec(),
                counts: vec![0; LATENCY_BOUNDS.len() + 1],
                ..Default::default()
            }),
            watches: Arc::new(AtomicUsize::new(0)),
            member_clients: Mutex::new(std::collections::HashMap::new()),
            _close: close,
            close_rx,
        };
        // Fail at start (bad TLS, wrong port) rather than on the first request.
        store.known_compacted().await?;
        Ok(store)
    }

    /// etcd watches this store holds open right now.
    pub fn active_watches(&self) -> usize {
        self.watches.load(Ordering::SeqCst)
    }

    fn endpoints(&self) -> String {
        self.options.endpoints.join(",")
    }

    async fn timed<T, F>(&self, f: F) -> std::result::Result<T, CallError>
    where
        F: std::future::Future<Output = std::result::Result<T, etcd_client::Error>>,
    {
        match tokio::time::timeout(self.tuning.request_timeout, f).await {
            Ok(r) => r.map_err(CallError::Etcd),
            Err(_) => Err(CallError::Timeout),
        }
    }

    /// Runs a call with the request deadline, retrying (on whichever endpoint the balanced
    /// channel picks next) while the failure says the request was never handled: the
    /// connection to a dead member was refused, or the member had no leader (etcd refuses
    /// those up front because we require a leader). Reads (`idempotent`) are also retried on
    /// any other unavailability. A write that may have been applied is never retried.
    async fn call<T, F, Fut>(
        &self,
        idempotent: bool,
        mut make: F,
    ) -> std::result::Result<T, CallError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, etcd_client::Error>>,
    {
        let deadline = tokio::time::Instant::now() + self.tuning.request_timeout;
        let mut pause = Duration::from_millis(10);
        loop {
            let attempt = tokio::time::timeout_at(deadline, make()).await;
            let e = match attempt {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) => e,
                Err(_) => return Err(CallError::Timeout),
            };
            if !retryable(&e, idempotent) || tokio::time::Instant::now() + pause >= deadline {
                return Err(CallError::Etcd(e));
            }
            tracing::debug!(error = %e, "etcd call failed before being handled; retrying");
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(250));
        }
    }

    /// Maps a failed call to the store's error (callers handle compaction/future first).
    fn err(&self, what: &str, e: CallError) -> StoreError {
        let e = match e {
            CallError::Timeout => {
                return StoreError::Unavailable(format!(
                    "{what}: etcd at {} did not answer within {:?} (no quorum, or the \
                     members are unreachable)",
                    self.endpoints(),
                    self.tuning.request_timeout
                ))
            }
            CallError::Etcd(e) => e,
        };
        match e {
            etcd_client::Error::GRpcStatus(s) => {
                // tonic puts the cause of a transport failure (TLS, connection) in the sources.
                let msg = with_sources(s.message(), &s);
                let msg = msg.as_str();
                if msg.contains("database space exceeded") {
                    StoreError::SpaceExceeded(format!(
                        "{what}: etcd: {msg} (compact and defragment, or raise --quota-backend-bytes, then disarm the NOSPACE alarm)"
                    ))
                } else if matches!(
                    s.code() as i32,
                    GRPC_CANCELLED
                        | GRPC_DEADLINE_EXCEEDED
                        | GRPC_RESOURCE_EXHAUSTED
                        | GRPC_UNAVAILABLE
                ) || msg.contains("no leader")
                    || msg.contains("leader changed")
                    || msg.contains("timed out")
                    || msg.starts_with("transport error")
                {
                    StoreError::Unavailable(format!("{what}: etcd at {}: {msg}", self.endpoints()))
                } else {
                    StoreError::Backend(format!("{what}: etcd: {msg}"))
                }
            }
            etcd_client::Error::TransportError(t) => StoreError::Unavailable(format!(
                "{what}: cannot reach etcd at {}: {}",
                self.endpoints(),
                with_sources(&t.to_string(), &t)
            )),
            etcd_client::Error::IoError(io) => StoreError::Unavailable(format!(
                "{what}: cannot reach etcd at {}: {io}",
                self.endpoints()
            )),
            other => StoreError::Backend(format!("{what}: etcd: {other}")),
        }
    }

    fn check_size(&self, key: &str, value: &[u8]) -> Result<()> {
        let size = key.len() + value.len();
        if self.tuning.max_value_bytes > 0 && size > self.tuning.max_value_bytes {
            return Err(StoreError::TooLarge {
                key: key.to_string(),
                size,
                limit: self.tuning.max_value_bytes,
            });
        }
        Ok(())
    }

    /// etcd's own size check covers the whole request (transaction overhead included), so a
    /// value just under our limit can still be refused there: the same TooLarge (413).
    fn too_large(&self, e: StoreError, key: &str, size: usize) -> StoreError {
        match e {
            StoreError::Backend(msg) if msg.contains("request is too large") => {
                StoreError::TooLarge {
                    key: key.to_string(),
                    size,
                    limit: self.tuning.max_value_bytes,
                }
            }
            e => e,
        }
    }

    fn observe(&self, started: Instant) {
        let secs = started.elapsed().as_secs_f64();
        let mut h = self.latency.lock().unwrap_or_else(|e| e.into_inner());
        let i = h
            .bounds
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(h.bounds.len());
        if let Some(c) = h.counts.get_mut(i) {
            *c += 1;
        }
        h.count += 1;
        h.sum_seconds += secs;
    }

    async fn txn(&self, what: &str, txn: Txn) -> Result<etcd_client::TxnResponse> {
        let started = Instant::now();
        let r = self
            .call(false, || {
                let mut kv = self.client.kv_client();
                let txn = txn.clone();
                async move { kv.txn(txn).await }
            })
            .await;
        self.observe(started);
        r.map_err(|e| self.err(what, e))
    }

    /// One range read; compaction and future revisions become their store errors.
    async fn range(
        &self,
        key: Vec<u8>,
        opts: GetOptions,
        revision: i64,
    ) -> std::result::Result<etcd_client::GetResponse, CallError> {
        let opts = opts.with_revision(revision);
        self.call(true, || {
            let mut kv = self
                .client
                .kv_client()
                .max_decoding_message_size(MAX_MESSAGE_BYTES);
            let (key, opts) = (key.clone(), opts.clone());
            async move { kv.get(key, Some(opts)).await }
        })
        .await
    }

    async fn range_err(&self, what: &str, revision: i64, e: CallError) -> StoreError {
        match grpc_message(&e) {
            Some(m) if m.contains("required revision has been compacted") => {
                let compacted = self.known_compacted().await.unwrap_or(0);
                StoreError::Compacted {
                    requested: revision,
                    compacted: compacted.max(revision + 1),
                }
            }
            Some(m) if m.contains("required revision is a future revision") => {
                match self.current_revision().await {
                    Ok(current) => StoreError::FutureRevision {
                        requested: revision,
                        current,
                    },
                    Err(e) => e,
                }
            }
            _ => self.err(what, e),
        }
    }

    /// The compact revision recorded in etcd (max with what this store compacted itself).
    pub async fn known_compacted(&self) -> Result<i64> {
        let resp = self
            .call(true, || {
                let mut kv = self.client.kv_client();
                async move { kv.get(COMPACT_KEY, None).await }
            })
            .await
            .map_err(|e| self.err("reading the compact revision", e))?;
        let recorded = resp
            .kvs()
            .first()
            .and_then(|kv| std::str::from_utf8(kv.value()).ok())
            .and_then(|s| s.trim().parse::<i64>().ok())
            .unwrap_or(0);
        Ok(self
            .compacted
            .fetch_max(recorded, Ordering::SeqCst)
            .max(recorded))
    }

    /// Every live key under `/` (all of skiff's data; keys outside it may belong to others
    /// sharing the cluster and are left alone) at one revision (0 = now), in pages.
    async fn read_all(&self, revision: i64) -> Result<ListResult> {
        self.list(
            DATA_PREFIX,
            &ListOptions {
                revision,
                ..Default::default()
            },
        )
        .await
    }

    /// Streams etcd's native snapshot (`etcdctl snapshot save` format) into `dest`; returns
    /// its size. Restorable with `etcdctl snapshot restore`.
    pub async fn native_snapshot(&self, dest: &Path) -> Result<u64> {
        use tokio::io::AsyncWriteExt;
        let what = format!("etcd snapshot to {}", dest.display());
        // etcd sends the snapshot in 32 KiB chunks: the default message limit is plenty.
        let mut stream = self
            .call(true, || {
                let mut m = self.client.maintenance_client();
                async move { m.snapshot().await }
            })
            .await
            .map_err(|e| self.err(&what, e))?;
        let tmp = tmp_path(dest);
        let io = |e: std::io::Error| StoreError::Backend(format!("{what}: {e}"));
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .await
            .map_err(io)?;
        let mut size = 0u64;
        let res: Result<()> = async {
            // Each chunk must arrive within the request timeout; the whole may take longer.
            while let Some(chunk) = self
                .timed(stream.message())
                .await
                .map_err(|e| self.err(&what, e))?
            {
                file.write_all(chunk.blob()).await.map_err(io)?;
                size += chunk.blob().len() as u64;
            }
            file.sync_all().await.map_err(io)?;
            Ok(())
        }
        .await;
        drop(file);
        if let Err(e) = res {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e);
        }
        tokio::fs::rename(&tmp, dest).await.map_err(io)?;
        Ok(size)
    }

    async fn status_of_member(&self, member: &etcd_client::Member) -> MemberStatus {
        let mut st = MemberStatus {
            name: member.name().to_string(),
            id: member.id(),
            client_urls: member.client_urls().to_vec(),
            ..Default::default()
        };
        if st.client_urls.is_empty() {
            st.error = Some("member has not started yet (no client URL)".into());
            return st;
        }
        let cached = self
            .member_clients
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&st.client_urls)
            .cloned();
        let conn = match cached {
            Some(c) => c,
            None => match self
                .timed(Client::connect(&st.client_urls, Some(self.connect.clone())))
                .await
            {
                Ok(c) => {
                    let mut clients = self
                        .member_clients
                        .lock()
                        .unwrap_or_else(|e| e.into_inner());
                    // Members come and go: a bounded map, rebuilt when it grows too big.
                    if clients.len() >= 64 {
                        clients.clear();
                    }
                    clients.insert(st.client_urls.clone(), c.clone());
                    c
                }
                Err(e) => {
                    st.error = Some(self.err("connect", e).to_string());
                    return st;
                }
            },
        };
        let mut m = conn.maintenance_client();
        match self.timed(m.status()).await {
            Ok(s) => {
                st.healthy = s.errors().is_empty();
                if !s.errors().is_empty() {
                    st.error = Some(s.errors().join("; "));
                }
                st.is_leader = s.leader() == member.id();
                st.db_size_bytes = u64::try_from(s.db_size()).unwrap_or(0);
                if s.leader() == 0 {
                    st.healthy = false;
                    st.error = Some("no leader".into());
                }
            }
            Err(e) => st.error = Some(self.err("status", e).to_string()),
        }
        st
    }

    async fn record_compaction(&self, revision: i64) -> Result<()> {
        let value = format!("{revision:020}");
        // Only ever raise it: several servers may compact concurrently.
        let txn = Txn::new()
            .when([Compare::create_revision(COMPACT_KEY, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(COMPACT_KEY, value.clone(), None)]);
        if self
            .txn("recording the compact revision", txn)
            .await?
            .succeeded()
        {
            return Ok(());
        }
        let txn = Txn::new()
            .when([Compare::value(COMPACT_KEY, CompareOp::Less, value.clone())])
            .and_then([TxnOp::put(COMPACT_KEY, value, None)]);
        self.txn("recording the compact revision", txn).await?;
        Ok(())
    }
}

fn tmp_path(dest: &Path) -> std::path::PathBuf {
    let mut p = dest.as_os_str().to_owned();
    p.push(".tmp");
    std::path::PathBuf::from(p)
}

fn sidecar(dest: &Path, suffix: &str) -> std::path::PathBuf {
    let mut p = dest.as_os_str().to_owned();
    p.push(suffix);
    std::path::PathBuf::from(p)
}

/// etcd's range end for a prefix: the prefix with its last byte below 0xff incremented;
/// `\0` (= to the end) when there is none or the prefix is empty.
pub(crate) fn range_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

fn utf8(bytes: &[u8]) -> Result<String> {
    String::from_utf8(bytes.to_vec())
        .map_err(|_| StoreError::Backend(format!("etcd key {bytes:?} is not UTF-8")))
}

fn to_kv(kv: &etcd_client::KeyValue) -> Result<KeyValue> {
    Ok(KeyValue {
        key: utf8(kv.key())?,
        value: kv.value().to_vec(),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
    })
}

fn to_event(ev: &etcd_client::Event) -> Result<Event> {
    let kv = ev
        .kv()
        .ok_or_else(|| StoreError::Backend("etcd watch event without a key".into()))?;
    let prev = ev.prev_kv().map(to_kv).transpose()?;
    match ev.event_type() {
        EventType::Put => {
            let kv = to_kv(kv)?;
            // A (re-)creation has no previous value even if etcd kept one from an older life.
            let prev = if kv.create_revision == kv.mod_revision {
                None
            } else {
                prev
            };
            Ok(Event {
                kind: EventKind::Put,
                kv,
                prev,
            })
        }
        EventType::Delete => {
            // etcd's delete event has an empty value; the contract wants the last one.
            let (value, create_revision) = prev
                .as_ref()
                .map_or((Vec::new(), 0), |p| (p.value.clone(), p.create_revision));
            Ok(Event {
                kind: EventKind::Delete,
                kv: KeyValue {
                    key: utf8(kv.key())?,
                    value,
                    create_revision,
                    mod_revision: kv.mod_revision(),
                },
                prev,
            })
        }
    }
}

/// A key skiff cannot have written (not UTF-8, from another user of the etcd) is skipped with
/// a warning rather than failing every list and watch that covers it.
fn foreign_skipped<T>(r: Result<T>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!(error = %e, "skipping a key skiff did not write");
            None
        }
    }
}

fn header_revision(h: Option<&etcd_client::ResponseHeader>) -> Result<i64> {
    h.map(|h| h.revision())
        .ok_or_else(|| StoreError::Backend("etcd response without a header".into()))
}

/// The single Get answer of a transaction's failure branch.
fn failed_get(resp: &etcd_client::TxnResponse) -> Result<Option<KeyValue>> {
    for op in resp.op_responses() {
        if let TxnOpResponse::Get(g) = op {
            return g.kvs().first().map(to_kv).transpose();
        }
    }
    Ok(None)
}

#[async_trait::async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let resp = self
            .range(key.as_bytes().to_vec(), GetOptions::new(), 0)
            .await
            .map_err(|e| self.err("get", e))?;
        resp.kvs().first().map(to_kv).transpose()
    }

    async fn list(&self, prefix: &str, opts: &ListOptions) -> Result<ListResult> {
        let end = range_end(prefix.as_bytes());
        let mut start: Vec<u8> = match &opts.start_after {
            Some(after) if after.as_str() >= prefix => {
                let mut k = after.as_bytes().to_vec();
                k.push(0);
                k
            }
            _ if prefix.is_empty() => vec![0],
            _ => prefix.as_bytes().to_vec(),
        };
        let want = usize::try_from(opts.limit.max(0)).unwrap_or(usize::MAX);
        let mut revision = opts.revision.max(0);
        let mut items = Vec::new();
        let mut page = LIST_PAGE;
        loop {
            let mut limit = page;
            if want > 0 {
                limit = limit.min(i64::try_from(want - items.len()).unwrap_or(i64::MAX));
            }
            let get = GetOptions::new().with_range(end.clone()).with_limit(limit);
            let resp = match self.range(start.clone(), get, revision).await {
                Ok(r) => r,
                // One page did not fit in a message: smaller pages.
                Err(CallError::Etcd(etcd_client::Error::GRpcStatus(s)))
                    if s.code() as i32 == GRPC_OUT_OF_RANGE
                        && s.message().contains("too large")
                        && page > 1 =>
                {
                    page = (page / 2).max(1);
                    continue;
                }
                Err(e) => return Err(self.range_err("list", revision, e).await),
            };
            if revision == 0 {
                revision = header_revision(resp.header())?;
            }
            let kvs = resp.kvs();
            if let Some(last) = kvs.last() {
                start = last.key().to_vec();
                start.push(0);
            }
            for kv in kvs {
                if kv.key() != COMPACT_KEY.as_bytes() {
                    items.extend(foreign_skipped(to_kv(kv)));
                }
            }
            if !resp.more() || kvs.is_empty() {
                return Ok(ListResult {
                    items,
                    revision,
                    more: false,
                });
            }
            if want > 0 && items.len() >= want {
                return Ok(ListResult {
                    items,
                    revision,
                    more: true,
                });
            }
        }
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue> {
        self.check_size(key, &value)?;
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, value.clone(), None)]);
        let size = key.len() + value.len();
        let resp = self
            .txn("create", txn)
            .await
            .map_err(|e| self.too_large(e, key, size))?;
        if !resp.succeeded() {
            return Err(StoreError::AlreadyExists(key.to_string()));
        }
        let rev = header_revision(resp.header())?;
        Ok(KeyValue {
            key: key.to_string(),
            value,
            create_revision: rev,
            mod_revision: rev,
        })
    }

    async fn update(&self, key: &str, value: Vec<u8>, expected_revision: i64) -> Result<KeyValue> {
        self.check_size(key, &value)?;
        // mod_revision 0 would match a missing key: never a valid precondition.
        let expected = expected_revision.max(-1);
        let txn = Txn::new()
            .when([Compare::mod_revision(key, CompareOp::Equal, expected)])
            .and_then([TxnOp::put(
                key,
                value.clone(),
                Some(PutOptions::new().with_prev_key()),
            )])
            .or_else([TxnOp::get(key, None)]);
        let size = key.len() + value.len();
        let resp = self
            .txn("update", txn)
            .await
            .map_err(|e| self.too_large(e, key, size))?;
        if !resp.succeeded() {
            return Err(match failed_get(&resp)? {
                None => StoreError::NotFound(key.to_string()),
                Some(kv) => StoreError::Conflict {
                    key: key.to_string(),
                    expected: expected_revision,
                    actual: kv.mod_revision,
                },
            });
        }
        let rev = header_revision(resp.header())?;
        let mut create_revision = rev;
        for op in resp.op_responses() {
            if let TxnOpResponse::Put(p) = op {
                if let Some(prev) = p.prev_key() {
                    create_revision = prev.create_revision();
                }
            }
        }
        Ok(KeyValue {
            key: key.to_string(),
            value,
            create_revision,
            mod_revision: rev,
        })
    }

    async fn delete(&self, key: &str, expected_revision: Option<i64>) -> Result<KeyValue> {
        let cmp = match expected_revision {
            Some(rev) => Compare::mod_revision(key, CompareOp::Equal, rev.max(-1)),
            None => Compare::create_revision(key, CompareOp::Greater, 0),
        };
        let txn = Txn::new()
            .when([cmp])
            .and_then([TxnOp::delete(
                key,
                Some(DeleteOptions::new().with_prev_key()),
            )])
            .or_else([TxnOp::get(key, None)]);
        let resp = self.txn("delete", txn).await?;
        if !resp.succeeded() {
            return Err(match (failed_get(&resp)?, expected_revision) {
                (Some(kv), Some(expected)) => StoreError::Conflict {
                    key: key.to_string(),
                    expected,
                    actual: kv.mod_revision,
                },
                _ => StoreError::NotFound(key.to_string()),
            });
        }
        let rev = header_revision(resp.header())?;
        for op in resp.op_responses() {
            if let TxnOpResponse::Delete(d) = op {
                if let Some(prev) = d.prev_kvs().first() {
                    let prev = to_kv(prev)?;
                    return Ok(KeyValue {
                        mod_revision: rev,
                        ..prev
                    });
                }
            }
        }
        Err(StoreError::NotFound(key.to_string()))
    }

    async fn watch(&self, prefix: &str, from_revision: i64) -> Result<Watch> {
        let from = from_revision.max(0);
        if from > 0 {
            let compacted = self.known_compacted().await?;
            if from < compacted {
                return Err(StoreError::Compacted {
                    requested: from,
                    compacted,
                });
            }
        }
        let key: Vec<u8> = if prefix.is_empty() {
            vec![0]
        } else {
            prefix.as_bytes().to_vec()
        };
        let opts = WatchOptions::new()
            .with_range(range_end(prefix.as_bytes()))
            .with_prev_key()
            .with_start_revision(if from > 0 { from + 1 } else { 0 });
        let stream = self
            .call(true, || {
                let mut wc = self
                    .client
                    .watch_client()
                    .max_decoding_message_size(MAX_MESSAGE_BYTES);
                let (key, opts) = (key.clone(), opts.clone());
                async move { wc.watch(key, Some(opts)).await }
            })
            .await
            .map_err(|e| self.err("watch", e))?;
        let (sender, mut stream) = stream.split();
        // Wait for etcd to confirm, so events committed after this returns are seen.
        let first = self
            .timed(stream.message())
            .await
            .map_err(|e| self.err("watch", e))?
            .ok_or_else(|| StoreError::Unavailable("etcd closed the watch at once".into()))?;
        if first.canceled() {
            if first.compact_revision() > 0 {
                return Err(StoreError::Compacted {
                    requested: from,
                    compacted: first.compact_revision(),
                });
            }
            return Err(StoreError::Unavailable(format!(
                "etcd refused the watch: {}",
                first.cancel_reason()
            )));
        }
        let (out, events) = mpsc::channel(self.tuning.watch_buffer.max(1));
        let mut pending = Vec::new();
        for ev in first.events() {
            pending.extend(foreign_skipped(to_event(ev)).map(Ok));
        }
        let task = WatchTask {
            _sender: sender,
            stream,
            out,
            close: self.close_rx.clone(),
            slow: self.tuning.slow_watcher_timeout,
            cursor: from,
            _count: WatchCount::new(self.watches.clone()),
        };
        tokio::spawn(task.run(pending));
        Ok(Watch { events })
    }

    async fn current_revision(&self) -> Result<i64> {
        let resp = self
            .range(
                COMPACT_KEY.as_bytes().to_vec(),
                GetOptions::new().with_count_only(),
                0,
            )
            .await
            .map_err(|e| self.err("reading the current revision", e))?;
        header_revision(resp.header())
    }

    async fn compact(&self, revision: i64) -> Result<()> {
        if revision <= self.known_compacted().await? {
            return Ok(());
        }
        let compacted = self
            .call(true, || {
                let mut kv = self.client.kv_client();
                async move { kv.compact(revision, None).await }
            })
            .await;
        match compacted {
            Ok(_) => {}
            Err(e) => {
                return match grpc_message(&e) {
                    Some(m) if m.contains("required revision has been compacted") => Ok(()),
                    Some(m) if m.contains("required revision is a future revision") => {
                        Err(StoreError::FutureRevision {
                            requested: revision,
                            current: self.current_revision().await?,
                        })
                    }
                    _ => Err(self.err("compact", e)),
                }
            }
        }
        self.compacted.fetch_max(revision, Ordering::SeqCst);
        self.compactions.fetch_add(1, Ordering::SeqCst);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
        self.last_compaction_unix.store(now, Ordering::SeqCst);
        self.record_compaction(revision).await
    }

    async fn status(&self) -> Result<StoreStatus> {
        let revision = self.current_revision().await?;
        let compact_revision = self.known_compacted().await?;
        let members = self
            .call(true, || {
                let mut cluster = self.client.cluster_client();
                async move { cluster.member_list().await }
            })
            .await
            .map_err(|e| self.err("listing etcd members", e))?;
        // All members at once: a partitioned one costs one timeout, not one each.
        let statuses: Vec<MemberStatus> =
            futures::future::join_all(members.members().iter().map(|m| self.status_of_member(m)))
                .await;
        let mut alarms = Vec::new();
        match self
            .call(true, || {
                let mut m = self.client.maintenance_client();
                async move { m.alarm(AlarmAction::Get, AlarmType::None, None).await }
            })
            .await
        {
            Ok(a) => {
                for am in a.alarms() {
                    let name = match am.alarm() {
                        AlarmType::Nospace => "NOSPACE",
                        AlarmType::Corrupt => "CORRUPT",
                        AlarmType::None => continue,
                    };
                    let member = statuses
                        .iter()
                        .find(|s| s.id == am.member_id())
                        .map_or_else(|| format!("{:x}", am.member_id()), |s| s.name.clone());
                    alarms.push(format!("{name} (member {member})"));
                }
            }
            Err(e) => tracing::debug!(error = %self.err("alarms", e), "reading etcd alarms"),
        }
        // Size and quota from the member answering through the balanced client.
        let (mut db_size, mut in_use, mut quota) = (0u64, 0u64, 0u64);
        let balanced = self
            .call(true, || {
                let mut m = self.client.maintenance_client();
                async move { m.status().await }
            })
            .await;
        if let Ok(s) = balanced {
            db_size = u64::try_from(s.db_size()).unwrap_or(0);
            in_use = u64::try_from(s.raft_used_db_size()).unwrap_or(0);
            quota = u64::try_from(s.db_size_quota()).unwrap_or(0);
        }
        db_size = db_size.max(statuses.iter().map(|s| s.db_size_bytes).max().unwrap_or(0));
        let keys = self
            .range(
                vec![0],
                GetOptions::new().with_range(vec![0]).with_count_only(),
                revision,
            )
            .await
            .ok()
            .and_then(|r| u64::try_from(r.count()).ok())
            .map(|n| n.saturating_sub(u64::from(compact_revision > 0)));
        let mut warnings = member_warnings(&statuses);
        for a in &alarms {
            warnings.push(format!(
                "etcd alarm {a}: writes are refused until it is disarmed"
            ));
        }
        // Compaction frees pages for reuse but never shrinks the file; defragmenting does.
        if in_use > 0 && db_size > DEFRAG_HINT_BYTES && db_size / 2 > in_use {
            warnings.push(format!(
                "etcd database file is {db_size} bytes but holds {in_use}: run `etcdctl defrag` on one member at a time"
            ));
        }
        if quota > 0 && db_size > quota / 10 * 8 {
            warnings.push(format!(
                "etcd database is {db_size} bytes, over 80% of its {quota}-byte quota"
            ));
        }
        let commit_latency = self
            .latency
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        Ok(StoreStatus {
            backend: "etcd".into(),
            endpoint: self.endpoints(),
            revision,
            compact_revision,
            db_size_bytes: db_size,
            db_size_in_use_bytes: in_use,
            wal_size_bytes: 0,
            quota_bytes: quota,
            alarms,
            keys,
            compactions: self.compactions.load(Ordering::SeqCst),
            last_compaction_unix: self.last_compaction_unix.load(Ordering::SeqCst),
            commit_latency,
            members: statuses,
            warnings,
        })
    }

    async fn snapshot(&self, dest: &Path) -> Result<SnapshotInfo> {
        // The native snapshot first: it does not depend on skiff's format.
        let native = sidecar(dest, ".etcd");
        self.native_snapshot(&native).await?;
        let all = self.read_all(0).await?;
        let size_bytes = crate::snapshot::write(dest, all.revision, &all.items)?;
        Ok(SnapshotInfo {
            path: dest.to_path_buf(),
            revision: all.revision,
            keys: all.items.len() as u64,
            size_bytes,
        })
    }

    async fn restore(&self, snapshot: &Path) -> Result<SnapshotInfo> {
        let path = snapshot.to_path_buf();
        let (revision, items) =
            tokio::task::spawn_blocking(move || crate::snapshot::read_latest(&path))
                .await
                .map_err(|e| StoreError::Backend(format!("reading the snapshot: {e}")))??;
        let keep: std::collections::HashSet<&str> =
            items.iter().map(|kv| kv.key.as_str()).collect();
        let current = self.read_all(0).await?;
        let mut ops: Vec<(TxnOp, usize)> = Vec::new();
        for kv in current
            .items
            .iter()
            .filter(|kv| !keep.contains(kv.key.as_str()))
        {
            ops.push((TxnOp::delete(kv.key.as_str(), None), kv.key.len()));
        }
        for kv in &items {
            self.check_size(&kv.key, &kv.value)?;
            ops.push((
                TxnOp::put(kv.key.as_str(), kv.value.clone(), None),
                kv.key.len() + kv.value.len(),
            ));
        }
        // etcd refuses transactions over 128 ops or its request size: chunk them.
        let mut batch = Vec::new();
        let mut bytes = 0usize;
        for (op, size) in ops {
            if !batch.is_empty() && (batch.len() >= TXN_MAX_OPS || bytes + size > TXN_MAX_BYTES) {
                self.txn("restore", Txn::new().and_then(std::mem::take(&mut batch)))
                    .await?;
                bytes = 0;
            }
            batch.push(op);
            bytes += size;
        }
        if !batch.is_empty() {
            self.txn("restore", Txn::new().and_then(batch)).await?;
        }
        let size_bytes = std::fs::metadata(snapshot).map_or(0, |m| m.len());
        Ok(SnapshotInfo {
            path: snapshot.to_path_buf(),
            revision,
            keys: items.len() as u64,
            size_bytes,
        })
    }
}

/// Operator warnings about the member set.
pub fn member_warnings(members: &[MemberStatus]) -> Vec<String> {
    let mut w = Vec::new();
    let n = members.len();
    if n == 1 {
        w.push(
            "etcd has one member: no fault tolerance (losing it stops the cluster; run 3 or 5)"
                .to_string(),
        );
    } else if n > 0 && n.is_multiple_of(2) {
        w.push(format!(
            "etcd has {n} members: an even member count tolerates no more failures than one \
             fewer ({} of {n} may fail; run {} or {})",
            (n - 1) / 2,
            n - 1,
            n + 1
        ));
    }
    for m in members.iter().filter(|m| !m.healthy) {
        w.push(format!(
            "etcd member {} ({}) is unhealthy: {}",
            m.name,
            m.client_urls.join(","),
            m.error.as_deref().unwrap_or("unknown error")
        ));
    }
    w
}

/// Counts a watch as open while alive.
struct WatchCount(Arc<AtomicUsize>);

impl WatchCount {
    fn new(c: Arc<AtomicUsize>) -> Self {
        c.fetch_add(1, Ordering::SeqCst);
        WatchCount(c)
    }
}

impl Drop for WatchCount {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

struct WatchTask {
    /// Dropping it closes the request stream, which cancels the etcd watch.
    _sender: etcd_client::WatchRequestSender,
    stream: etcd_client::WatchResponseStream,
    out: mpsc::Sender<Result<Event>>,
    close: tokio::sync::watch::Receiver<()>,
    slow: Duration,
    cursor: i64,
    _count: WatchCount,
}

impl WatchTask {
    /// False when the watch is over (receiver gone or too slow).
    async fn send(&mut self, ev: Result<Event>) -> bool {
        match tokio::time::timeout(self.slow, self.out.send(ev)).await {
            Ok(r) => r.is_ok(),
            Err(_) => {
                tracing::warn!("etcd watcher too slow, dropping it");
                false
            }
        }
    }

    async fn run(mut self, pending: Vec<Result<Event>>) {
        for ev in pending {
            if let Ok(e) = &ev {
                self.cursor = e.kv.mod_revision;
            }
            if !self.send(ev).await {
                return;
            }
        }
        loop {
            let msg = tokio::select! {
                m = self.stream.message() => m,
                _ = self.close.changed() => return,
                _ = self.out.closed() => return,
            };
            let resp = match msg {
                Ok(Some(r)) => r,
                Ok(None) => return,
                Err(e) => {
                    // The member went away or lost its leader: end; the caller re-watches.
                    tracing::debug!(error = %e, "etcd watch stream ended");
                    return;
                }
            };
            if resp.canceled() {
                if resp.compact_revision() > 0 {
                    let err = StoreError::Compacted {
                        requested: self.cursor,
                        compacted: resp.compact_revision(),
                    };
                    self.send(Err(err)).await;
                } else {
                    tracing::debug!(reason = resp.cancel_reason(), "etcd canceled a watch");
                }
                return;
            }
            for ev in resp.events() {
                let Some(ev) = foreign_skipped(to_event(ev)) else {
                    continue;
                };
                self.cursor = ev.kv.mod_revision;
                if !self.send(Ok(ev)).await {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{member_warnings, range_end};
    use crate::MemberStatus;

    fn member(name: &str, healthy: bool) -> MemberStatus {
        MemberStatus {
            name: name.into(),
            healthy,
            client_urls: vec![format!("https://{name}:2379")],
            error: (!healthy).then(|| "connection refused".to_string()),
            ..Default::default()
        }
    }

    #[test]
    fn warnings_for_member_counts_and_health() {
        let one = member_warnings(&[member("a", true)]);
        assert_eq!(one.len(), 1);
        assert!(one[0].contains("no fault tolerance"));
        let two = member_warnings(&[member("a", true), member("b", true)]);
        assert_eq!(two.len(), 1);
        assert!(two[0].contains("an even member count tolerates no more failures than one fewer"));
        assert!(two[0].contains("0 of 2 may fail"));
        let three = member_warnings(&[member("a", true), member("b", false), member("c", true)]);
        assert_eq!(three.len(), 1);
        assert!(
            three[0].contains("etcd member b (https://b:2379) is unhealthy: connection refused")
        );
        assert!(
            member_warnings(&[member("a", true), member("b", true), member("c", true)]).is_empty()
        );
        let four = member_warnings(&[
            member("a", true),
            member("b", true),
            member("c", true),
            member("d", true),
        ]);
        assert!(four[0].contains("1 of 4 may fail; run 3 or 5"), "{four:?}");
    }

    #[test]
    fn range_end_of_prefixes() {
        assert_eq!(range_end(b"/a/"), b"/a0".to_vec());
        assert_eq!(range_end(b"a\xff"), b"b".to_vec());
        assert_eq!(range_end(b""), vec![0]);
        assert_eq!(range_end(b"\xff\xff"), vec![0]);
    }
}
