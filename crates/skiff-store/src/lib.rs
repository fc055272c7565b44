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

mod sqlite;

pub use sqlite::{
    spawn_compactor, SqliteOptions, SqliteStore, DEFAULT_MAX_VALUE_BYTES, DEFAULT_RESERVE_BYTES,
};

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
}
