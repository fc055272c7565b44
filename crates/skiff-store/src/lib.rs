//! skiff-store owns durable cluster state with revisions, behind a small etcd-shaped contract
//! (like k3s's kine): get, list (prefix, limit, continue, at revision), create-if-absent,
//! update-if-revision, delete-if-revision, watch (prefix, from revision), current revision and
//! compaction. The default backend is SQLite: one append-only log table whose row id is the
//! global revision (= the Kubernetes resourceVersion). Watches fan out in process.
//!
//! CONTRACT (skiff-apiserver is written against these signatures; keep them):
//! ```text
//! let store: Arc<dyn Store> = Arc::new(SqliteStore::open(path)?);
//! store.get(key).await?                       -> Option<KeyValue>
//! store.list(prefix, &ListOptions{..}).await? -> ListResult
//! store.create(key, value).await?             -> KeyValue          (AlreadyExists)
//! store.update(key, value, rev).await?        -> KeyValue          (Conflict / NotFound)
//! store.delete(key, Some(rev)).await?         -> KeyValue (the deleted value; mod_revision = the delete's revision)
//! store.watch(prefix, from_rev).await?        -> Watch             (Compacted when from_rev is too old)
//! store.current_revision().await?             -> i64
//! store.compact(rev).await?                   -> ()
//! ```
//!
//! Semantics worth knowing (see `sqlite.rs` for how they are implemented):
//! * Revisions are the `log` row ids: strictly increasing, never reused, survive restarts.
//!   A delete writes a tombstone row; its revision is the deleted value's `mod_revision`.
//! * Writes are durable when they return (WAL, `synchronous=FULL`). Concurrent writes are
//!   committed together by one writer thread (group commit); each keeps its own precondition.
//! * `compact(rev)` keeps the state at every revision `>= rev`: lists at `rev` or later and
//!   watches from `rev` or later still work; older ones get [`StoreError::Compacted`] (410).
//!   [`spawn_compactor`] runs it periodically (keep N revisions and one interval of history).
//! * A watch first replays the log after `from_revision`, then streams live commits, in
//!   revision order without gaps or duplicates. `from_revision` 0 = only future events; a
//!   revision in the future just waits for it. A watcher that does not keep up (its buffer,
//!   [`SqliteOptions::watch_buffer`], fills) is dropped: its receiver ends and the caller must
//!   re-list and watch again from the list's revision. Writers never wait for watchers.
//! * One store per database file: a second open (any process) fails while the first is alive.

pub mod etcd;
pub mod etcd_testing;
pub mod snapshot;
mod sqlite;
pub mod watchcache;

pub use etcd::{EtcdOptions, EtcdStore, EtcdTuning};
pub use sqlite::{
    spawn_compactor, SqliteOptions, SqliteStore, DEFAULT_MAX_VALUE_BYTES, DEFAULT_QUOTA_BYTES,
    DEFAULT_RESERVE_BYTES, DEFAULT_WAL_CEILING_BYTES,
};
pub use watchcache::{CacheOptions, CacheStats, CachedStore};

use std::path::{Path, PathBuf};

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("key {0} already exists")]
    AlreadyExists(String),
    #[error("key {0} not found")]
    NotFound(String),
    /// The key's current mod_revision differs from the expected one.
    #[error("conflict on key {key}: expected revision {expected}, found {actual}")]
    Conflict {
        key: String,
        expected: i64,
        actual: i64,
    },
    /// The requested revision has been compacted away (HTTP 410 Gone / Expired).
    #[error("revision {requested} has been compacted (oldest available: {compacted})")]
    Compacted { requested: i64, compacted: i64 },
    /// A revision in the future.
    #[error("revision {requested} is newer than the current revision {current}")]
    FutureRevision { requested: i64, current: i64 },
    /// The value is larger than the store accepts (etcd: "request is too large").
    #[error("value of {key} is {size} bytes, more than the limit of {limit}")]
    TooLarge {
        key: String,
        size: usize,
        limit: usize,
    },
    /// The disk holding the database is full; deletes still work (see `sqlite.rs`).
    #[error("database or disk is full: {0}")]
    Full(String),
    /// The datastore is over its size quota (etcd's NOSPACE alarm; SQLite's `quota_bytes`):
    /// writes fail until it is compacted or the quota raised; reads and deletes still work.
    #[error("database space exceeded: {0}")]
    SpaceExceeded(String),
    /// The backend cannot be reached or has no quorum (etcd); retrying later may succeed.
    #[error("datastore unavailable: {0}")]
    Unavailable(String),
    /// The operation is not possible in this state (e.g. restoring into a running store).
    #[error("{0}")]
    Unsupported(String),
    #[error("storage backend: {0}")]
    Backend(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// One stored value with its revisions (etcd's KeyValue).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    /// Revision at which the key was created.
    pub create_revision: i64,
    /// Revision of the last change (the object's resourceVersion).
    pub mod_revision: i64,
}

#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    /// At most this many items (0 = no limit).
    pub limit: i64,
    /// Continue after this key (exclusive), from a previous page.
    pub start_after: Option<String>,
    /// Read at this revision (0 = latest). Pages of one list use the first page's revision.
    pub revision: i64,
}

#[derive(Debug, Clone)]
pub struct ListResult {
    /// Sorted by key.
    pub items: Vec<KeyValue>,
    /// The revision the list was read at.
    pub revision: i64,
    /// More items exist after the last one returned.
    pub more: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// Created (prev is None) or updated.
    Put,
    Delete,
}

/// One change, in revision order.
#[derive(Debug, Clone)]
pub struct Event {
    pub kind: EventKind,
    /// For Put: the new value. For Delete: the last value, with mod_revision = the delete's revision.
    pub kv: KeyValue,
    /// The value before this change, if any.
    pub prev: Option<KeyValue>,
}

/// A watch: events with revision > from_rev under the prefix, in order. The stream ends (None)
/// if the watcher falls too far behind or the store closes; the caller re-lists then.
pub struct Watch {
    pub events: tokio::sync::mpsc::Receiver<Result<Event>>,
}

/// A latency histogram (Prometheus-style cumulative buckets are derived by the exporter).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    /// Upper bounds in seconds, ascending.
    pub bounds: Vec<f64>,
    /// Observations per bucket (`counts[i]` = observations <= `bounds[i]` and > the previous
    /// bound); one extra last entry counts those above every bound.
    pub counts: Vec<u64>,
    pub sum_seconds: f64,
    pub count: u64,
}

/// One etcd member as the cluster reports it.
#[derive(Debug, Clone, Default)]
pub struct MemberStatus {
    pub name: String,
    pub id: u64,
    pub client_urls: Vec<String>,
    /// Whether it answered the status call.
    pub healthy: bool,
    pub is_leader: bool,
    pub db_size_bytes: u64,
    /// Its error, when unhealthy.
    pub error: Option<String>,
}

/// Health and size of a datastore (`skiff datastore status`, the server's metrics).
#[derive(Debug, Clone, Default)]
pub struct StoreStatus {
    /// `sqlite` or `etcd`.
    pub backend: String,
    /// The database file or the etcd endpoints.
    pub endpoint: String,
    pub revision: i64,
    pub compact_revision: i64,
    /// File size (SQLite, without the WAL) or etcd's `dbSize`.
    pub db_size_bytes: u64,
    /// Bytes holding live data (SQLite: pages not on the freelist; etcd: `dbSizeInUse`).
    pub db_size_in_use_bytes: u64,
    /// SQLite's `-wal` file (0 for etcd).
    pub wal_size_bytes: u64,
    /// Size at which writes are refused (0 = none).
    pub quota_bytes: u64,
    /// Active alarms (`NOSPACE`, …).
    pub alarms: Vec<String>,
    /// Number of live keys, when cheap to know.
    pub keys: Option<u64>,
    pub compactions: u64,
    /// Unix seconds of the last compaction (0 = never).
    pub last_compaction_unix: i64,
    /// Durable-commit latency (SQLite: the commit's fsync; etcd: write round trips).
    pub commit_latency: Histogram,
    /// etcd members (empty for SQLite).
    pub members: Vec<MemberStatus>,
    /// Problems worth telling an operator (even member count, one member, near quota, …).
    pub warnings: Vec<String>,
}

/// What a snapshot holds.
#[derive(Debug, Clone)]
pub struct SnapshotInfo {
    pub path: PathBuf,
    /// The store revision the snapshot is consistent at.
    pub revision: i64,
    /// Live keys in it.
    pub keys: u64,
    pub size_bytes: u64,
}

#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>>;
    async fn list(&self, prefix: &str, opts: &ListOptions) -> Result<ListResult>;
    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue>;
    async fn update(&self, key: &str, value: Vec<u8>, expected_revision: i64) -> Result<KeyValue>;
    async fn delete(&self, key: &str, expected_revision: Option<i64>) -> Result<KeyValue>;
    /// Events with revision > `from_revision` (0 = from now on).
    async fn watch(&self, prefix: &str, from_revision: i64) -> Result<Watch>;
    async fn current_revision(&self) -> Result<i64>;
    /// Drops history at or below `revision` (keeps the latest value of every live key).
    async fn compact(&self, revision: i64) -> Result<()>;
    /// Size, health, alarms and members of the backend.
    async fn status(&self) -> Result<StoreStatus>;
    /// Writes a consistent snapshot of every key to `dest` (a new file) in skiff's snapshot
    /// format (see [`snapshot`]); backends may write extra native files next to it.
    async fn snapshot(&self, dest: &Path) -> Result<SnapshotInfo>;
    /// Replaces the whole content with a snapshot's (the latest value of every live key).
    /// Only for a store nothing else is using: the server must be stopped.
    async fn restore(&self, snapshot: &Path) -> Result<SnapshotInfo>;
}
