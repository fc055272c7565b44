//! The SQLite backend: one append-only `log` table whose row id is the global revision.
//!
//! * Writes go to one writer thread over a channel. The thread takes everything queued,
//!   applies each operation (checking its own precondition) inside ONE transaction and commits
//!   once, so N concurrent writers share one fsync (group commit). A failed precondition only
//!   fails that operation; an SQLite error fails the whole batch (it is rolled back).
//! * After the commit, the writer publishes the batch's events to the in-process watchers and
//!   only then answers the callers, so a caller that saw its write return sees it in
//!   `current_revision`, in lists and in watches started afterwards.
//! * Reads use a small pool of read-only connections on blocking threads; WAL lets them run
//!   while the writer commits. Each list is one read transaction (one snapshot).
//! * An exclusive `flock` on a sidecar `<db>.lock` file makes a second store on the same file
//!   (in this or another process) fail at open: watches fan out in process, so a second writer
//!   would silently miss events. Taking it writes nothing, so it works on a full disk.
//! * Values above [`SqliteOptions::max_value_bytes`] are refused ([`StoreError::TooLarge`], like
//!   etcd's request limit).
//! * A full disk: a `<db>.reserve` file of [`SqliteOptions::reserve_bytes`] is kept next to the
//!   database. When SQLite reports the disk full (or the database cannot be opened while the
//!   reserve exists) the reserve is released and the store enters low-space mode: deletes still
//!   commit (into the released space) so a user can free space, every other write fails with
//!   [`StoreError::Full`] until the filesystem has room again (checked before each batch); then
//!   the reserve is re-created and writes resume, without a restart.
//! * Files are private: the database, its WAL/SHM (SQLite gives them the database's mode), the
//!   lock and the reserve are 0600.
//! * Staying small (docs/datastore.md): compaction deletes old history; afterwards, when the
//!   freelist is large, `incremental_vacuum` (the database is `auto_vacuum=INCREMENTAL`, an
//!   older file is converted by one VACUUM at open) gives pages back and the WAL is truncated.
//!   Readers that overlap forever keep passive checkpoints from resetting the WAL, so past
//!   [`SqliteOptions::wal_ceiling_bytes`] the writer forces `wal_checkpoint(TRUNCATE)`.
//! * A size quota ([`SqliteOptions::quota_bytes`], etcd's NOSPACE): before each batch the bytes
//!   in use are read; creates/updates that would pass the quota fail with
//!   [`StoreError::SpaceExceeded`], deletes go through, and writes resume once compaction has
//!   made room.
//! * Snapshots copy the file with the online backup API; a restore replaces the whole log with
//!   a snapshot's latest state in one writer transaction, keeping its revisions (`snapshot.rs`).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};

use crate::{
    Event, EventKind, KeyValue, ListOptions, ListResult, Result, Store, StoreError, Watch,
};

/// Tuning knobs of [`SqliteStore`]; [`Default`] suits the API server.
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// Most writes committed in one transaction.
    pub max_batch: usize,
    /// Read connections kept open (more are opened on demand and closed after use).
    pub read_connections: usize,
    /// Capacity of a watch: both the receiver's channel (events) and the queue of committed
    /// batches waiting for the watch's forwarding task. A watcher that lets the latter fill up
    /// is dropped: its receiver ends and the caller must re-list.
    pub watch_buffer: usize,
    /// How long a connection waits on an SQLite lock before failing.
    pub busy_timeout: Duration,
    /// Largest value accepted by create/update (etcd's default request limit, 1.5 MiB).
    pub max_value_bytes: usize,
    /// Size of the `<db>.reserve` file released when the disk fills up (0 = none).
    pub reserve_bytes: u64,
    /// Size quota of the database's live pages (etcd's `--quota-backend-bytes`; 0 = none):
    /// writes that would grow it past this fail with [`StoreError::SpaceExceeded`] (NOSPACE
    /// alarm); deletes and compaction still work, and writes resume once it is under again.
    pub quota_bytes: u64,
    /// WAL size past which the writer forces a `wal_checkpoint(TRUNCATE)`; also the
    /// `journal_size_limit` the WAL is cut back to after a checkpoint (0 = SQLite's defaults).
    pub wal_ceiling_bytes: u64,
}

/// etcd's default `--max-request-bytes`.
pub const DEFAULT_MAX_VALUE_BYTES: usize = 1536 * 1024;
/// Default [`SqliteOptions::reserve_bytes`].
pub const DEFAULT_RESERVE_BYTES: u64 = 8 * 1024 * 1024;
/// Default [`SqliteOptions::quota_bytes`]: etcd's default quota, 2 GiB.
pub const DEFAULT_QUOTA_BYTES: u64 = 2 * 1024 * 1024 * 1024;
/// Default [`SqliteOptions::wal_ceiling_bytes`].
pub const DEFAULT_WAL_CEILING_BYTES: u64 = 16 * 1024 * 1024;

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            max_batch: 1024,
            read_connections: 4,
            watch_buffer: 1024,
            busy_timeout: Duration::from_secs(10),
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
            reserve_bytes: DEFAULT_RESERVE_BYTES,
            quota_bytes: DEFAULT_QUOTA_BYTES,
            wal_ceiling_bytes: DEFAULT_WAL_CEILING_BYTES,
        }
    }
}

/// Rows per watch-replay read and compaction step.
const PAGE: i64 = 1000;
const COMPACT_STEP: i64 = 10_000;

pub(crate) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    created INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    create_revision INTEGER NOT NULL,
    prev_revision INTEGER NOT NULL,
    value BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS log_name_id ON log (name, id);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', 1), ('compact_revision', 0);
";

trait Ctx<T> {
    fn ctx(self, what: &str) -> Result<T>;
}

impl<T> Ctx<T> for std::result::Result<T, rusqlite::Error> {
    fn ctx(self, what: &str) -> Result<T> {
        self.map_err(|e| {
            if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull) {
                StoreError::Full(format!("{what}: {e}"))
            } else {
                StoreError::Backend(format!("{what}: {e}"))
            }
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves the data consistent (plain lists).
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The SQLite-backed [`Store`].
pub struct SqliteStore {
    path: PathBuf,
    writer_tx: Option<std_mpsc::Sender<Msg>>,
    writer: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
    readers: Arc<ReadPool>,
    /// Compaction runs on its own connection (serialised by this mutex) so the writer keeps
    /// committing between compaction steps.
    compactor: Arc<Mutex<Option<Connection>>>,
    watch_buffer: usize,
    max_value_bytes: usize,
    _lock: std::fs::File,
}

/// State shared by the writer thread and the store handle.
struct Shared {
    current: AtomicI64,
    compacted: AtomicI64,
    subs: Mutex<Subscribers>,
    space: Space,
    health: Health,
}

/// etcd's backend commit buckets (`etcd_disk_backend_commit_duration_seconds`): 1 ms .. 8 s.
const COMMIT_BUCKETS: [f64; 14] = [
    0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096,
    8.192,
];

/// Size, quota, compaction and commit-latency bookkeeping (for `status()` and the quota).
struct Health {
    quota_bytes: u64,
    wal_ceiling: u64,
    /// The NOSPACE alarm: a write was refused for the quota and no write passed the quota
    /// check since (compaction clears it when it brings the store under the quota).
    nospace: AtomicBool,
    live_keys: AtomicI64,
    compactions: AtomicU64,
    last_compaction_unix: AtomicI64,
    commit: Mutex<crate::Histogram>,
}

impl Health {
    fn new(opts: &SqliteOptions, live_keys: i64) -> Health {
        Health {
            quota_bytes: opts.quota_bytes,
            wal_ceiling: opts.wal_ceiling_bytes,
            nospace: AtomicBool::new(false),
            live_keys: AtomicI64::new(live_keys),
            compactions: AtomicU64::new(0),
            last_compaction_unix: AtomicI64::new(0),
            commit: Mutex::new(crate::Histogram {
                bounds: COMMIT_BUCKETS.to_vec(),
                counts: vec![0; COMMIT_BUCKETS.len() + 1],
                sum_seconds: 0.0,
                count: 0,
            }),
        }
    }

    fn observe_commit(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        let i = COMMIT_BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(COMMIT_BUCKETS.len());
        let mut h = lock(&self.commit);
        if let Some(c) = h.counts.get_mut(i) {
            *c += 1;
        }
        h.sum_seconds += secs;
        h.count += 1;
    }
}

/// Page accounting of a database: (file pages, free pages, page size).
fn pages(conn: &Connection) -> rusqlite::Result<(u64, u64, u64)> {
    let get = |pragma: &str| -> rusqlite::Result<u64> {
        conn.query_row(pragma, [], |r| r.get::<_, i64>(0))
            .map(|v| v.max(0) as u64)
    };
    Ok((
        get("PRAGMA page_count")?,
        get("PRAGMA freelist_count")?,
        get("PRAGMA page_size")?,
    ))
}

/// Bytes of pages holding data (not on the freelist).
fn in_use_bytes(conn: &Connection) -> rusqlite::Result<u64> {
    let (count, free, size) = pages(conn)?;
    Ok(count.saturating_sub(free).saturating_mul(size))
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// `wal_checkpoint(TRUNCATE)` waiting at most `wait` for readers: true when the WAL was fully
/// copied back and truncated.
fn checkpoint_truncate(conn: &Connection, wait: Duration, restore_wait: Duration) -> bool {
    if conn.busy_timeout(wait).is_err() {
        return false;
    }
    let res = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
        r.get::<_, i64>(0)
    });
    let _ = conn.busy_timeout(restore_wait);
    match res {
        Ok(busy) => busy == 0,
        Err(e) => {
            tracing::debug!(error = %e, "WAL checkpoint failed");
            false
        }
    }
}

/// The full-disk state (see the module docs).
struct Space {
    reserve: PathBuf,
    reserve_bytes: u64,
    low: std::sync::atomic::AtomicBool,
}

impl Space {
    /// Creates the reserve file if it is missing (best effort: a failure only logs).
    fn ensure_reserve(&self) -> bool {
        if self.reserve_bytes == 0 {
            return true;
        }
        match std::fs::metadata(&self.reserve) {
            Ok(m) if m.len() >= self.reserve_bytes => return true,
            _ => {}
        }
        let res = (|| -> std::io::Result<()> {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(true)
                .mode(0o600)
                .open(&self.reserve)?;
            // Real blocks (not a sparse file), so releasing it frees space.
            let chunk = vec![0u8; 64 * 1024];
            let mut left = self.reserve_bytes;
            while left > 0 {
                let n = left.min(chunk.len() as u64) as usize;
                f.write_all(&chunk[..n])?;
                left -= n as u64;
            }
            f.sync_all()
        })();
        match res {
            Ok(()) => true,
            Err(e) => {
                let _ = std::fs::remove_file(&self.reserve);
                tracing::debug!(error = %e, "cannot create the disk-space reserve");
                false
            }
        }
    }

    fn release(&self) {
        if std::fs::remove_file(&self.reserve).is_ok() {
            tracing::warn!(reserve = %self.reserve.display(), "disk full: released the reserve; only deletes are accepted until space is freed");
        }
        self.low.store(true, Ordering::SeqCst);
    }

    /// In low-space mode: true once the filesystem has room for the reserve again (and it was
    /// re-created).
    fn recovered(&self, db: &Path) -> bool {
        let dir = db
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        // The field types differ between targets.
        #[allow(clippy::unnecessary_cast)]
        let free = nix::sys::statvfs::statvfs(dir)
            .map(|s| (s.blocks_available() as u64).saturating_mul(s.fragment_size() as u64))
            .unwrap_or(0);
        if free < self.reserve_bytes.saturating_mul(2).max(1024 * 1024) {
            return false;
        }
        if !self.ensure_reserve() {
            return false;
        }
        self.low.store(false, Ordering::SeqCst);
        tracing::info!("disk space is back: writes are accepted again");
        true
    }
}

struct Subscribers {
    /// Highest revision whose events have been handed to the subscribers.
    published: i64,
    list: Vec<Subscriber>,
}

struct Subscriber {
    prefix: String,
    tx: mpsc::Sender<Arc<[Event]>>,
    /// Dropped together with the subscriber: tells the forwarding task to stop at once.
    _cancel: oneshot::Sender<()>,
}

enum Op {
    Create {
        key: String,
        value: Vec<u8>,
    },
    Update {
        key: String,
        value: Vec<u8>,
        expected: i64,
    },
    Delete {
        key: String,
        expected: Option<i64>,
    },
}

struct WriteReq {
    op: Op,
    reply: oneshot::Sender<Result<KeyValue>>,
}

/// What the writer thread is asked to do.
enum Msg {
    Write(WriteReq),
    /// Replace the whole content (see [`SqliteStore::restore`]).
    Restore {
        revision: i64,
        items: Vec<KeyValue>,
        reply: oneshot::Sender<Result<()>>,
    },
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` with default options.
    pub fn open(path: &Path) -> Result<SqliteStore> {
        Self::open_with(path, SqliteOptions::default())
    }

    /// Opens (creating if needed) the database at `path`.
    pub fn open_with(path: &Path, opts: SqliteOptions) -> Result<SqliteStore> {
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir).map_err(|e| {
                    StoreError::Backend(format!("create directory {}: {e}", dir.display()))
                })?;
            }
        }
        let lock_file = take_lock(path)?;
        let space = Space {
            reserve: sidecar(path, ".reserve"),
            reserve_bytes: opts.reserve_bytes,
            low: Default::default(),
        };
        let mut conn = match open_writer(path, &opts) {
            Ok(c) => c,
            // A full disk cannot even create the WAL index: free the reserve and try again.
            Err(e) if std::fs::metadata(&space.reserve).is_ok() => {
                tracing::warn!(error = %e, "opening the database failed; retrying with the disk-space reserve released");
                space.release();
                open_writer(path, &opts)?
            }
            Err(e) => return Err(e),
        };
        if !space.low.load(Ordering::SeqCst) && !space.ensure_reserve() {
            tracing::warn!("no room for the disk-space reserve: only deletes are accepted until space is freed");
            space.low.store(true, Ordering::SeqCst);
        }
        let (current, compacted, live) = {
            let tx = conn.transaction().ctx("open: read revisions")?;
            let current = current_rev(&tx)?;
            let compacted = compact_rev(&tx)?;
            let live = crate::snapshot::count_live(&tx).ctx("open: count keys")?;
            (current, compacted, live)
        };
        let shared = Arc::new(Shared {
            current: AtomicI64::new(current),
            compacted: AtomicI64::new(compacted),
            subs: Mutex::new(Subscribers {
                published: current,
                list: Vec::new(),
            }),
            space,
            health: Health::new(&opts, live as i64),
        });
        let readers = Arc::new(ReadPool {
            path: path.to_path_buf(),
            idle: Mutex::new(Vec::new()),
            max_idle: opts.read_connections.max(1),
            busy_timeout: opts.busy_timeout,
        });
        // Open one reader now so a broken file fails here rather than on the first read.
        readers.with(|_| Ok(()))?;
        let (writer_tx, rx) = std_mpsc::channel();
        let writer_shared = shared.clone();
        let cfg = WriterCfg {
            max_batch: opts.max_batch.max(1),
            path: path.to_path_buf(),
            busy_timeout: opts.busy_timeout,
        };
        let writer = std::thread::Builder::new()
            .name("skiff-store-writer".into())
            .spawn(move || writer_loop(conn, rx, writer_shared, cfg))
            .map_err(|e| StoreError::Backend(format!("spawn writer thread: {e}")))?;
        Ok(SqliteStore {
            path: path.to_path_buf(),
            writer_tx: Some(writer_tx),
            writer: Some(writer),
            shared,
            readers,
            compactor: Arc::new(Mutex::new(None)),
            watch_buffer: opts.watch_buffer.max(1),
            max_value_bytes: opts.max_value_bytes,
            _lock: lock_file,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True while the disk is full (only deletes are accepted).
    pub fn low_on_space(&self) -> bool {
        self.shared.space.low.load(Ordering::SeqCst)
    }

    /// The revision at or below which history has been compacted (0 = none).
    pub fn compacted_revision(&self) -> i64 {
        self.shared.compacted.load(Ordering::SeqCst)
    }

    async fn write(&self, op: Op) -> Result<KeyValue> {
        let (reply, rx) = oneshot::channel();
        self.send(Msg::Write(WriteReq { op, reply }))?;
        rx.await.map_err(|_| writer_gone())?
    }

    fn send(&self, msg: Msg) -> Result<()> {
        self.writer_tx
            .as_ref()
            .ok_or_else(writer_gone)?
            .send(msg)
            .map_err(|_| writer_gone())
    }

    fn check_size(&self, key: &str, value: &[u8]) -> Result<()> {
        let size = key.len() + value.len();
        if self.max_value_bytes > 0 && size > self.max_value_bytes {
            return Err(StoreError::TooLarge {
                key: key.to_string(),
                size,
                limit: self.max_value_bytes,
            });
        }
        Ok(())
    }

    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        read_blocking(self.readers.clone(), f).await
    }
}

fn writer_gone() -> StoreError {
    StoreError::Backend("store writer is not running".into())
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // Closing the channel stops the writer after its current batch; wait for it so the
        // file is closed (and the lock released) when drop returns.
        self.writer_tx.take();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

fn configure(conn: &Connection, opts: &SqliteOptions) -> rusqlite::Result<()> {
    conn.busy_timeout(opts.busy_timeout)?;
    conn.execute_batch("PRAGMA synchronous=FULL; PRAGMA foreign_keys=OFF;")?;
    if opts.wal_ceiling_bytes > 0 {
        // After a checkpoint resets the WAL, cut the file back to this size.
        let limit = i64::try_from(opts.wal_ceiling_bytes).unwrap_or(i64::MAX);
        conn.query_row(
            &format!("PRAGMA journal_size_limit={limit}"),
            [],
            |_| Ok(()),
        )?;
    }
    Ok(())
}

fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(suffix);
    PathBuf::from(p)
}

/// Creates the database file 0600 (SQLite gives the WAL and SHM files its mode) and tightens
/// the mode of files an older version left readable.
fn private_files(path: &Path) -> Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| StoreError::Backend(format!("open {}: {e}", path.display())))?;
    for p in [
        path.to_path_buf(),
        sidecar(path, "-wal"),
        sidecar(path, "-shm"),
    ] {
        if let Ok(m) = std::fs::metadata(&p) {
            if m.permissions().mode() & 0o077 != 0 {
                let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600));
            }
        }
    }
    Ok(())
}

fn open_writer(path: &Path, opts: &SqliteOptions) -> Result<Connection> {
    private_files(path)?;
    let what = format!("open {}", path.display());
    let conn = Connection::open(path).ctx(&what)?;
    configure(&conn, opts).ctx(&what)?;
    // Before anything creates a table: a new database frees pages incrementally.
    let auto_vacuum: i64 = conn
        .query_row("PRAGMA auto_vacuum", [], |r| r.get(0))
        .ctx(&what)?;
    if auto_vacuum != AUTO_VACUUM_INCREMENTAL {
        conn.execute_batch("PRAGMA auto_vacuum=INCREMENTAL")
            .ctx(&what)?;
    }
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .ctx(&what)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Backend(format!(
            "{what}: cannot switch to WAL journal mode (got {mode})"
        )));
    }
    // Only a new database needs the schema: a full disk must not stop an existing one opening.
    let have: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE name IN ('log', 'meta', 'log_name_id')",
            [],
            |r| r.get(0),
        )
        .ctx(&what)?;
    if have < 3 {
        conn.execute_batch(SCHEMA)
            .ctx(&format!("{what}: create schema"))?;
    } else if auto_vacuum != AUTO_VACUUM_INCREMENTAL {
        // A database from before incremental vacuum: the mode only takes effect through one
        // full VACUUM (it needs free space about the database's size; a failure only logs and
        // the next open tries again).
        let started = Instant::now();
        match conn.execute_batch("VACUUM") {
            Ok(()) => tracing::info!(
                db = %path.display(),
                took_ms = started.elapsed().as_millis() as u64,
                "converted the database to incremental vacuum"
            ),
            Err(e) => {
                tracing::warn!(db = %path.display(), error = %e, "VACUUM to enable incremental vacuum failed; trying again at the next start")
            }
        }
    }
    Ok(conn)
}

/// `PRAGMA auto_vacuum` value of INCREMENTAL.
const AUTO_VACUUM_INCREMENTAL: i64 = 2;

/// Holds an exclusive `flock` on `<path>.lock` for the life of the store.
fn take_lock(path: &Path) -> Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let lock_path = sidecar(path, ".lock");
    let what = format!("lock {}", lock_path.display());
    let file = std::fs::OpenOptions::new()
        .create(true)
        .read(true)
        .write(true)
        .truncate(false)
        .mode(0o600)
        .open(&lock_path)
        .map_err(|e| StoreError::Backend(format!("{what}: {e}")))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Backend(format!(
            "{} is already in use by another store (lock {} is held)",
            path.display(),
            lock_path.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(StoreError::Backend(format!("{what}: {e}"))),
    }
}

fn current_rev(conn: &Connection) -> Result<i64> {
    // sqlite_sequence, not max(id): compaction may delete the newest row (a tombstone) and the
    // revision must never go back.
    let seq: Option<i64> = conn
        .query_row(
            "SELECT seq FROM sqlite_sequence WHERE name = 'log'",
            [],
            |r| r.get(0),
        )
        .optional()
        .ctx("read current revision")?;
    Ok(seq.unwrap_or(0))
}

fn compact_rev(conn: &Connection) -> Result<i64> {
    let v: Option<i64> = conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'compact_revision'",
            [],
            |r| r.get(0),
        )
        .optional()
        .ctx("read compact revision")?;
    Ok(v.unwrap_or(0))
}

// ---------------------------------------------------------------------------------------------
// Reads

struct ReadPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    max_idle: usize,
    busy_timeout: Duration,
}

impl ReadPool {
    fn open(&self) -> Result<Connection> {
        let what = format!("open {} for reading", self.path.display());
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .ctx(&what)?;
        conn.busy_timeout(self.busy_timeout).ctx(&what)?;
        conn.execute_batch("PRAGMA query_only=ON").ctx(&what)?;
        Ok(conn)
    }

    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        let pooled = lock(&self.idle).pop();
        let mut conn = match pooled {
            Some(c) => c,
            None => self.open()?,
        };
        let out = f(&mut conn);
        let mut idle = lock(&self.idle);
        if idle.len() < self.max_idle {
            idle.push(conn);
        }
        out
    }
}

async fn read_blocking<T, F>(pool: Arc<ReadPool>, f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
{
    tokio::task::spawn_blocking(move || pool.with(f))
        .await
        .map_err(|e| StoreError::Backend(format!("read task failed: {e}")))?
}

/// The smallest string greater than every string starting with `prefix` (None = unbounded).
/// UTF-8 byte order equals code point order, which is how SQLite compares TEXT (BINARY).
fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(c) = chars.pop() {
        let next = match c {
            '\u{D7FF}' => Some('\u{E000}'),
            char::MAX => None,
            c => char::from_u32(c as u32 + 1),
        };
        if let Some(n) = next {
            chars.push(n);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

struct Row {
    id: i64,
    deleted: bool,
    create_revision: i64,
    value: Vec<u8>,
}

fn latest_row(conn: &Connection, key: &str) -> Result<Option<Row>> {
    conn.prepare_cached(
        "SELECT id, deleted, create_revision, value FROM log WHERE name = ?1 \
         ORDER BY id DESC LIMIT 1",
    )
    .and_then(|mut st| {
        st.query_row(params![key], |r| {
            Ok(Row {
                id: r.get(0)?,
                deleted: r.get::<_, i64>(1)? != 0,
                create_revision: r.get(2)?,
                value: r.get(3)?,
            })
        })
        .optional()
    })
    .ctx("read latest row")
}

fn get_blocking(conn: &mut Connection, key: &str) -> Result<Option<KeyValue>> {
    Ok(latest_row(conn, key)?
        .filter(|r| !r.deleted)
        .map(|r| KeyValue {
            key: key.to_string(),
            value: r.value,
            create_revision: r.create_revision,
            mod_revision: r.id,
        }))
}

fn list_blocking(conn: &mut Connection, prefix: &str, opts: &ListOptions) -> Result<ListResult> {
    let tx = conn.transaction().ctx("begin list")?;
    let current = current_rev(&tx)?;
    let compacted = compact_rev(&tx)?;
    let rev = if opts.revision <= 0 {
        current
    } else {
        opts.revision
    };
    if rev > current {
        return Err(StoreError::FutureRevision {
            requested: rev,
            current,
        });
    }
    if rev < compacted {
        return Err(StoreError::Compacted {
            requested: rev,
            compacted,
        });
    }
    let end = prefix_end(prefix);
    let (lower_op, lower) = match &opts.start_after {
        Some(after) if after.as_str() >= prefix => (">", after.as_str()),
        _ => (">=", prefix),
    };
    let mut sql = format!(
        "SELECT name, value, create_revision, id FROM log AS l \
         WHERE name {lower_op} ?1 AND id <= ?2"
    );
    if end.is_some() {
        sql.push_str(" AND name < ?4");
    }
    // The latest row of each key at `rev`; the (name, id) index yields rows in key order, so
    // the scan stops after `limit + 1` live keys.
    sql.push_str(
        " AND id = (SELECT MAX(id) FROM log WHERE name = l.name AND id <= ?2) \
         AND deleted = 0 ORDER BY name LIMIT ?3",
    );
    let fetch = if opts.limit > 0 {
        opts.limit.saturating_add(1)
    } else {
        -1
    };
    let mut items = {
        let mut st = tx.prepare_cached(&sql).ctx("prepare list")?;
        let map = |r: &rusqlite::Row<'_>| {
            Ok(KeyValue {
                key: r.get(0)?,
                value: r.get(1)?,
                create_revision: r.get(2)?,
                mod_revision: r.get(3)?,
            })
        };
        let rows = match &end {
            Some(end) => st.query_map(params![lower, rev, fetch, end], map),
            None => st.query_map(params![lower, rev, fetch], map),
        }
        .ctx("list")?;
        rows.collect::<rusqlite::Result<Vec<_>>>().ctx("list")?
    };
    let more = opts.limit > 0 && items.len() as i64 > opts.limit;
    if more {
        items.truncate(opts.limit as usize);
    }
    Ok(ListResult {
        items,
        revision: rev,
        more,
    })
}

/// Logged events with `after < revision <= upto` under `prefix`, at most `PAGE` of them.
fn replay_page(
    conn: &mut Connection,
    prefix: &str,
    after: i64,
    upto: i64,
) -> Result<(Vec<Event>, bool)> {
    let tx = conn.transaction().ctx("begin watch replay")?;
    let compacted = compact_rev(&tx)?;
    if after < compacted {
        return Err(StoreError::Compacted {
            requested: after,
            compacted,
        });
    }
    let end = prefix_end(prefix);
    let mut sql = String::from(
        "SELECT l.id, l.name, l.created, l.deleted, l.create_revision, l.value, \
                p.id, p.create_revision, p.value \
         FROM log AS l LEFT JOIN log AS p ON p.id = l.prev_revision AND l.created = 0 \
         WHERE l.id > ?1 AND l.id <= ?2 AND l.name >= ?3",
    );
    if end.is_some() {
        sql.push_str(" AND l.name < ?5");
    }
    sql.push_str(" ORDER BY l.id LIMIT ?4");
    let mut st = tx.prepare_cached(&sql).ctx("prepare watch replay")?;
    let map = |r: &rusqlite::Row<'_>| {
        let id: i64 = r.get(0)?;
        let key: String = r.get(1)?;
        let created = r.get::<_, i64>(2)? != 0;
        let deleted = r.get::<_, i64>(3)? != 0;
        let prev = match r.get::<_, Option<i64>>(6)? {
            Some(pid) if !created => Some(KeyValue {
                key: key.clone(),
                value: r.get(8)?,
                create_revision: r.get(7)?,
                mod_revision: pid,
            }),
            _ => None,
        };
        Ok(Event {
            kind: if deleted {
                EventKind::Delete
            } else {
                EventKind::Put
            },
            kv: KeyValue {
                key,
                value: r.get(5)?,
                create_revision: r.get(4)?,
                mod_revision: id,
            },
            prev,
        })
    };
    let rows = match &end {
        Some(end) => st.query_map(params![after, upto, prefix, PAGE, end], map),
        None => st.query_map(params![after, upto, prefix, PAGE], map),
    }
    .ctx("watch replay")?;
    let events = rows
        .collect::<rusqlite::Result<Vec<_>>>()
        .ctx("watch replay")?;
    let full = events.len() as i64 == PAGE;
    Ok((events, full))
}

// ---------------------------------------------------------------------------------------------
// Writes

struct WriterCfg {
    max_batch: usize,
    path: PathBuf,
    busy_timeout: Duration,
}

/// How long a forced checkpoint may wait for readers (the writer is stalled meanwhile), and
/// how soon after one another is tried.
const CHECKPOINT_WAIT: Duration = Duration::from_millis(250);
const CHECKPOINT_RETRY: Duration = Duration::from_secs(1);

fn writer_loop(
    mut conn: Connection,
    rx: std_mpsc::Receiver<Msg>,
    shared: Arc<Shared>,
    cfg: WriterCfg,
) {
    let wal = sidecar(&cfg.path, "-wal");
    let mut last_checkpoint: Option<Instant> = None;
    let mut next: Option<Msg> = None;
    loop {
        let first = match next.take() {
            Some(m) => m,
            None => match rx.recv() {
                Ok(m) => m,
                Err(_) => break,
            },
        };
        let first = match first {
            Msg::Write(w) => w,
            Msg::Restore {
                revision,
                items,
                reply,
            } => {
                let res = restore_blocking(&mut conn, &shared, revision, &items);
                if res.is_ok() {
                    compact_space(
                        &conn,
                        &cfg.path,
                        shared.health.wal_ceiling,
                        cfg.busy_timeout,
                    );
                }
                let _ = reply.send(res);
                continue;
            }
        };
        // Everything that queued up while the previous batch was being fsynced commits
        // together: this is the group commit.
        let mut batch = vec![first];
        while batch.len() < cfg.max_batch {
            match rx.try_recv() {
                Ok(Msg::Write(req)) => batch.push(req),
                Ok(other) => {
                    next = Some(other);
                    break;
                }
                Err(_) => break,
            }
        }
        let space = &shared.space;
        let low = space.low.load(Ordering::SeqCst) && !space.recovered(&cfg.path);
        let mut results = run_batch(&mut conn, &shared, &batch, low);
        if !low
            && results
                .iter()
                .any(|r| matches!(r, Err(StoreError::Full(_))))
        {
            // The disk filled up under this batch: free the reserve and let its deletes through.
            space.release();
            results = run_batch(&mut conn, &shared, &batch, true);
        }
        for (req, res) in batch.into_iter().zip(results) {
            let _ = req.reply.send(res);
        }
        // The WAL ceiling: passive auto-checkpoints cannot finish while readers hold old
        // snapshots, so past the ceiling force one that waits (briefly) for them.
        let ceiling = shared.health.wal_ceiling;
        if ceiling > 0
            && file_len(&wal) > ceiling
            && last_checkpoint.is_none_or(|t| t.elapsed() >= CHECKPOINT_RETRY)
        {
            let done = checkpoint_truncate(&conn, CHECKPOINT_WAIT, cfg.busy_timeout);
            tracing::debug!(done, "WAL past its ceiling: checkpoint(TRUNCATE)");
            last_checkpoint = Some(Instant::now());
        }
    }
    // Store closed: end every watch.
    lock(&shared.subs).list.clear();
}

/// Rough bytes a create/update adds to the database: the row, its index entry, page slack.
fn write_cost(op: &Op) -> u64 {
    match op {
        Op::Create { key, value } | Op::Update { key, value, .. } => {
            (2 * key.len() + value.len() + 64) as u64
        }
        Op::Delete { .. } => 0,
    }
}

/// The quota budget before a batch: (bytes in use, quota), None when there is no quota.
fn quota_budget(conn: &Connection, health: &Health) -> Option<(u64, u64)> {
    if health.quota_bytes == 0 {
        return None;
    }
    match in_use_bytes(conn) {
        Ok(used) => Some((used, health.quota_bytes)),
        Err(e) => {
            tracing::debug!(error = %e, "reading the database size failed; quota not checked");
            None
        }
    }
}

fn quota_message(used: u64, quota: u64, cost: u64) -> String {
    format!(
        "the datastore holds {used} bytes of its {quota}-byte quota and this write needs about \
         {cost} more; delete objects (deletes still work) and let compaction free their history, \
         or raise --datastore-quota-bytes; writes resume without a restart once there is room"
    )
}

/// Applies a batch (in low-space mode only its deletes; over the quota, its deletes and the
/// writes that fit) and publishes its events.
fn run_batch(
    conn: &mut Connection,
    shared: &Shared,
    batch: &[WriteReq],
    low_space: bool,
) -> Vec<Result<KeyValue>> {
    let budget = quota_budget(conn, &shared.health);
    let mut grow = 0u64;
    let mut passed = false;
    let ops: Vec<Result<&Op>> = batch
        .iter()
        .map(|r| {
            if matches!(r.op, Op::Delete { .. }) {
                return Ok(&r.op);
            }
            if low_space {
                return Err(StoreError::Full(
                    "database or disk is full (only deletes are accepted)".into(),
                ));
            }
            if let Some((used, quota)) = budget {
                let cost = write_cost(&r.op);
                if used.saturating_add(grow).saturating_add(cost) > quota {
                    return Err(StoreError::SpaceExceeded(quota_message(used, quota, cost)));
                }
                grow += cost;
            }
            passed = true;
            Ok(&r.op)
        })
        .collect();
    let health = &shared.health;
    if ops
        .iter()
        .any(|o| matches!(o, Err(StoreError::SpaceExceeded(_))))
    {
        if !health.nospace.swap(true, Ordering::SeqCst) {
            tracing::warn!(quota = health.quota_bytes, "datastore over its quota: NOSPACE alarm, writes refused until compaction frees space");
        }
    } else if passed && health.nospace.swap(false, Ordering::SeqCst) {
        tracing::info!("datastore under its quota again: NOSPACE alarm cleared");
    }
    match apply_batch(conn, shared, ops) {
        Ok((results, events)) => {
            if let Some(last) = events.last() {
                let rev = last.kv.mod_revision;
                shared.current.store(rev, Ordering::SeqCst);
                publish(shared, events, rev);
            }
            results
        }
        Err(e) => {
            tracing::error!(error = %e, writes = batch.len(), "store write batch failed");
            let full = matches!(e, StoreError::Full(_));
            batch
                .iter()
                .map(|_| {
                    Err(if full {
                        StoreError::Full(e.to_string())
                    } else {
                        StoreError::Backend(e.to_string())
                    })
                })
                .collect()
        }
    }
}

type BatchOutcome = (Vec<Result<KeyValue>>, Vec<Event>);

/// `Err` entries are refused (no space, over the quota) without touching the database.
fn apply_batch(
    conn: &mut Connection,
    shared: &Shared,
    batch: Vec<Result<&Op>>,
) -> Result<BatchOutcome> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .ctx("begin write")?;
    let mut rev = current_rev(&tx)?;
    let mut results = Vec::with_capacity(batch.len());
    let mut events = Vec::with_capacity(batch.len());
    let mut live_delta = 0i64;
    for op in batch {
        let op = match op {
            Ok(op) => op,
            Err(e) => {
                results.push(Err(e));
                continue;
            }
        };
        match apply_one(&tx, op, rev + 1)? {
            Ok((kv, ev)) => {
                rev += 1;
                live_delta += match (&ev.kind, &ev.prev) {
                    (EventKind::Put, None) => 1,
                    (EventKind::Delete, _) => -1,
                    _ => 0,
                };
                results.push(Ok(kv));
                events.push(ev);
            }
            Err(e) => results.push(Err(e)),
        }
    }
    if !events.is_empty() {
        // The commit is where the fsync happens: its latency is the durability cost.
        let started = Instant::now();
        tx.commit().ctx("commit")?;
        shared.health.observe_commit(started.elapsed());
        shared
            .health
            .live_keys
            .fetch_add(live_delta, Ordering::SeqCst);
    }
    Ok((results, events))
}

/// Replaces the whole log with `items` at `revision` (one transaction) and ends every watch.
fn restore_blocking(
    conn: &mut Connection,
    shared: &Shared,
    revision: i64,
    items: &[KeyValue],
) -> Result<()> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .ctx("begin restore")?;
    tx.execute("DELETE FROM log", [])
        .ctx("restore: clear log")?;
    crate::snapshot::load(&tx, revision, items)?;
    tx.commit().ctx("commit restore")?;
    shared.current.store(revision, Ordering::SeqCst);
    shared.compacted.store(revision, Ordering::SeqCst);
    shared
        .health
        .live_keys
        .store(items.len() as i64, Ordering::SeqCst);
    let mut subs = lock(&shared.subs);
    subs.published = revision;
    // Watches saw another history: they end, and their callers re-list.
    subs.list.clear();
    Ok(())
}

/// After big deletions: return free pages to the filesystem when the freelist is large
/// (incremental vacuum, in steps so writers get the lock in between), then checkpoint and
/// truncate the WAL so the file really shrinks.
fn compact_space(conn: &Connection, path: &Path, wal_ceiling: u64, busy_timeout: Duration) {
    let Ok((count, free, size)) = pages(conn) else {
        return;
    };
    let free_bytes = free.saturating_mul(size);
    if free_bytes >= VACUUM_MIN_FREE_BYTES && free.saturating_mul(10) >= count {
        let step = (VACUUM_STEP_BYTES / size.max(512)).max(1);
        let mut left = free;
        while left > 0 {
            if let Err(e) = conn.execute_batch(&format!("PRAGMA incremental_vacuum({step})")) {
                tracing::warn!(error = %e, "incremental vacuum failed");
                break;
            }
            // Vacuum moves pages through the WAL: keep it under its ceiling on the way.
            if wal_ceiling > 0 && file_len(&sidecar(path, "-wal")) > wal_ceiling {
                checkpoint_truncate(conn, CHECKPOINT_WAIT, busy_timeout);
            }
            let now = match pages(conn) {
                Ok((_, f, _)) => f,
                Err(_) => break,
            };
            if now >= left {
                break;
            }
            left = now;
        }
        tracing::debug!(freed_bytes = free_bytes, "incremental vacuum");
    }
    let wal = file_len(&sidecar(path, "-wal"));
    if wal > 0 && (wal_ceiling == 0 || wal > WAL_TRUNCATE_AFTER_COMPACTION || wal > wal_ceiling) {
        checkpoint_truncate(conn, CHECKPOINT_WAIT, busy_timeout);
    }
}

/// Free space below which vacuum is not worth the writes (free pages are reused anyway).
const VACUUM_MIN_FREE_BYTES: u64 = 1024 * 1024;
/// Pages freed per incremental-vacuum transaction.
const VACUUM_STEP_BYTES: u64 = 8 * 1024 * 1024;
/// WAL size worth truncating after a compaction.
const WAL_TRUNCATE_AFTER_COMPACTION: u64 = 4 * 1024 * 1024;

/// Outer error: SQLite failed (aborts the batch). Inner error: this write's precondition.
fn apply_one(
    tx: &rusqlite::Transaction<'_>,
    op: &Op,
    rev: i64,
) -> Result<Result<(KeyValue, Event)>> {
    let key = match op {
        Op::Create { key, .. } | Op::Update { key, .. } | Op::Delete { key, .. } => key,
    };
    let latest = latest_row(tx, key)?;
    let live = latest.as_ref().filter(|r| !r.deleted);
    let prev_kv = live.map(|r| KeyValue {
        key: key.clone(),
        value: r.value.clone(),
        create_revision: r.create_revision,
        mod_revision: r.id,
    });
    let check = |expected: i64| -> Result<()> {
        match live {
            None => Err(StoreError::NotFound(key.clone())),
            Some(r) if r.id != expected => Err(StoreError::Conflict {
                key: key.clone(),
                expected,
                actual: r.id,
            }),
            Some(_) => Ok(()),
        }
    };
    let prev_id = latest.as_ref().map_or(0, |r| r.id);
    let (created, deleted, create_revision, value, kind, prev) = match op {
        Op::Create { value, .. } => {
            if live.is_some() {
                return Ok(Err(StoreError::AlreadyExists(key.clone())));
            }
            (true, false, rev, value.clone(), EventKind::Put, None)
        }
        Op::Update {
            value, expected, ..
        } => {
            if let Err(e) = check(*expected) {
                return Ok(Err(e));
            }
            let cr = live.map_or(rev, |r| r.create_revision);
            (false, false, cr, value.clone(), EventKind::Put, prev_kv)
        }
        Op::Delete { expected, .. } => {
            if let Err(e) = check(expected.unwrap_or(prev_id)) {
                return Ok(Err(e));
            }
            let (cr, value) =
                live.map_or((rev, Vec::new()), |r| (r.create_revision, r.value.clone()));
            (false, true, cr, value, EventKind::Delete, prev_kv)
        }
    };
    // The explicit id keeps revisions dense; AUTOINCREMENT still records it in sqlite_sequence
    // so an id is never reused after compaction.
    tx.prepare_cached(
        "INSERT INTO log (id, name, created, deleted, create_revision, prev_revision, value) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .and_then(|mut st| {
        st.execute(params![
            rev,
            key,
            created as i64,
            deleted as i64,
            create_revision,
            prev_id,
            value
        ])
    })
    .ctx("insert log row")?;
    let kv = KeyValue {
        key: key.clone(),
        value,
        create_revision,
        mod_revision: rev,
    };
    let ev = Event {
        kind,
        kv: kv.clone(),
        prev,
    };
    Ok(Ok((kv, ev)))
}

fn publish(shared: &Shared, events: Vec<Event>, rev: i64) {
    let batch: Arc<[Event]> = events.into();
    let mut subs = lock(&shared.subs);
    subs.published = rev;
    subs.list.retain(|s| {
        if !batch.iter().any(|e| e.kv.key.starts_with(&s.prefix)) {
            return !s.tx.is_closed();
        }
        match s.tx.try_send(batch.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!(prefix = %s.prefix, "watcher too slow, dropping it");
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    });
}

// ---------------------------------------------------------------------------------------------
// Watch

struct WatchTask {
    readers: Arc<ReadPool>,
    prefix: String,
    /// Last revision delivered (or skipped as before the watch's start).
    cursor: i64,
    /// Revisions up to here come from the log; later ones from `live`.
    replay_upto: i64,
    live: mpsc::Receiver<Arc<[Event]>>,
    cancel: oneshot::Receiver<()>,
    out: mpsc::Sender<Result<Event>>,
}

impl WatchTask {
    /// False when the watch is over (receiver gone or watcher dropped).
    async fn send(&mut self, ev: Result<Event>) -> bool {
        tokio::select! {
            r = self.out.send(ev) => r.is_ok(),
            _ = &mut self.cancel => false,
        }
    }

    async fn run(mut self) {
        while self.cursor < self.replay_upto {
            let (readers, prefix, after, upto) = (
                self.readers.clone(),
                self.prefix.clone(),
                self.cursor,
                self.replay_upto,
            );
            let page = read_blocking(readers, move |c| replay_page(c, &prefix, after, upto)).await;
            match page {
                Err(e) => {
                    self.send(Err(e)).await;
                    return;
                }
                Ok((events, full)) => {
                    for ev in events {
                        self.cursor = ev.kv.mod_revision;
                        if !self.send(Ok(ev)).await {
                            return;
                        }
                    }
                    if !full {
                        break;
                    }
                }
            }
        }
        self.cursor = self.cursor.max(self.replay_upto);
        loop {
            let batch = tokio::select! {
                b = self.live.recv() => match b {
                    Some(b) => b,
                    None => return,
                },
                _ = &mut self.cancel => return,
                _ = self.out.closed() => return,
            };
            for ev in batch.iter() {
                // Revisions up to the cursor were replayed already (or precede the watch).
                if ev.kv.mod_revision <= self.cursor || !ev.kv.key.starts_with(&self.prefix) {
                    continue;
                }
                self.cursor = ev.kv.mod_revision;
                if !self.send(Ok(ev.clone())).await {
                    return;
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Compaction

fn compact_blocking(
    slot: &Mutex<Option<Connection>>,
    path: &Path,
    shared: &Shared,
    revision: i64,
) -> Result<()> {
    let mut slot = lock(slot);
    if slot.is_none() {
        let what = format!("open {} for compaction", path.display());
        let conn = Connection::open(path).ctx(&what)?;
        conn.busy_timeout(COMPACTOR_BUSY_TIMEOUT).ctx(&what)?;
        // Compacted rows may be secrets: overwrite their content instead of leaving free pages.
        conn.execute_batch("PRAGMA synchronous=FULL; PRAGMA secure_delete=ON")
            .ctx(&what)?;
        if shared.health.wal_ceiling > 0 {
            let limit = i64::try_from(shared.health.wal_ceiling).unwrap_or(i64::MAX);
            conn.query_row(
                &format!("PRAGMA journal_size_limit={limit}"),
                [],
                |_| Ok(()),
            )
            .ctx(&what)?;
        }
        *slot = Some(conn);
    }
    let Some(conn) = slot.as_mut() else {
        return Err(StoreError::Backend("compaction connection missing".into()));
    };
    // Step 1: record the new compact revision first, so reads below it fail cleanly with
    // Compacted instead of seeing half-deleted history.
    let old = {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx("begin compaction")?;
        let current = current_rev(&tx)?;
        if revision > current {
            return Err(StoreError::FutureRevision {
                requested: revision,
                current,
            });
        }
        let old = compact_rev(&tx)?;
        if revision <= old {
            return Ok(());
        }
        tx.execute(
            "UPDATE meta SET value = ?1 WHERE key = 'compact_revision'",
            params![revision],
        )
        .ctx("record compact revision")?;
        tx.commit().ctx("commit compact revision")?;
        shared.compacted.store(revision, Ordering::SeqCst);
        old
    };
    // Step 2: delete in short transactions so writers are not held up. Rows at or below the
    // old compact revision are already only the latest ones per key; a row is superseded
    // exactly when a later row names it as prev_revision, so only rows in (old, revision] need
    // looking at. Tombstones at or below `revision` go too: the key is absent at every
    // revision still readable.
    let mut lo = old;
    while lo < revision {
        let hi = (lo + COMPACT_STEP).min(revision);
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx("begin compaction step")?;
        tx.execute(
            "DELETE FROM log WHERE id IN \
             (SELECT prev_revision FROM log WHERE id > ?1 AND id <= ?2 AND prev_revision > 0)",
            params![lo, hi],
        )
        .ctx("compact superseded rows")?;
        tx.execute(
            "DELETE FROM log WHERE id > ?1 AND id <= ?2 AND deleted = 1",
            params![lo, hi],
        )
        .ctx("compact tombstones")?;
        tx.commit().ctx("commit compaction step")?;
        lo = hi;
    }
    let health = &shared.health;
    health.compactions.fetch_add(1, Ordering::SeqCst);
    health
        .last_compaction_unix
        .store(unix_now(), Ordering::SeqCst);
    compact_space(conn, path, health.wal_ceiling, COMPACTOR_BUSY_TIMEOUT);
    if health.quota_bytes > 0
        && in_use_bytes(conn).is_ok_and(|used| used < health.quota_bytes)
        && health.nospace.swap(false, Ordering::SeqCst)
    {
        tracing::info!("compaction brought the datastore under its quota: NOSPACE alarm cleared");
    }
    Ok(())
}

const COMPACTOR_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts a background task that compacts `store` every `interval`, keeping at least the last
/// `keep_revisions` revisions AND everything written during the last interval (like kine: 1000
/// revisions / 5 minutes). The task holds only a weak reference: it ends when the store is
/// dropped (or abort the returned handle). Must be called inside a tokio runtime.
pub fn spawn_compactor(
    store: Arc<dyn Store>,
    interval: Duration,
    keep_revisions: i64,
) -> tokio::task::JoinHandle<()> {
    let weak: Weak<dyn Store> = Arc::downgrade(&store);
    drop(store);
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The revision seen one interval ago: newer history is younger than `interval`.
        let mut previous: Option<i64> = None;
        loop {
            ticker.tick().await;
            let Some(store) = weak.upgrade() else { return };
            let current = match store.current_revision().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "compactor: reading the revision failed");
                    continue;
                }
            };
            if let Some(prev) = previous {
                let target = prev.min(current - keep_revisions.max(0));
                if target > 0 {
                    match store.compact(target).await {
                        Ok(()) => tracing::debug!(revision = target, "compacted"),
                        Err(e) => tracing::warn!(error = %e, "compaction failed"),
                    }
                }
            }
            previous = Some(current);
        }
    })
}

// ---------------------------------------------------------------------------------------------

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let key = key.to_string();
        self.read(move |c| get_blocking(c, &key)).await
    }

    async fn list(&self, prefix: &str, opts: &ListOptions) -> Result<ListResult> {
        let (prefix, opts) = (prefix.to_string(), opts.clone());
        self.read(move |c| list_blocking(c, &prefix, &opts)).await
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue> {
        self.check_size(key, &value)?;
        self.write(Op::Create {
            key: key.to_string(),
            value,
        })
        .await
    }

    async fn update(&self, key: &str, value: Vec<u8>, expected_revision: i64) -> Result<KeyValue> {
        self.check_size(key, &value)?;
        self.write(Op::Update {
            key: key.to_string(),
            value,
            expected: expected_revision,
        })
        .await
    }

    async fn delete(&self, key: &str, expected_revision: Option<i64>) -> Result<KeyValue> {
        self.write(Op::Delete {
            key: key.to_string(),
            expected: expected_revision,
        })
        .await
    }

    async fn watch(&self, prefix: &str, from_revision: i64) -> Result<Watch> {
        let from = from_revision.max(0);
        let compacted = self.shared.compacted.load(Ordering::SeqCst);
        if from > 0 && from < compacted {
            return Err(StoreError::Compacted {
                requested: from,
                compacted,
            });
        }
        let (live_tx, live) = mpsc::channel(self.watch_buffer);
        let (cancel_tx, cancel) = oneshot::channel();
        // Subscribe before reading the log: every revision above `published` reaches us live,
        // every revision up to it is already committed and so visible to the replay.
        let published = {
            let mut subs = lock(&self.shared.subs);
            subs.list.push(Subscriber {
                prefix: prefix.to_string(),
                tx: live_tx,
                _cancel: cancel_tx,
            });
            subs.published
        };
        let (out, events) = mpsc::channel(self.watch_buffer);
        let task = WatchTask {
            readers: self.readers.clone(),
            prefix: prefix.to_string(),
            cursor: if from == 0 { published } else { from },
            replay_upto: published,
            live,
            cancel,
            out,
        };
        tokio::spawn(task.run());
        Ok(Watch { events })
    }

    async fn current_revision(&self) -> Result<i64> {
        Ok(self.shared.current.load(Ordering::SeqCst))
    }

    async fn compact(&self, revision: i64) -> Result<()> {
        let (slot, path, shared) = (
            self.compactor.clone(),
            self.path.clone(),
            self.shared.clone(),
        );
        tokio::task::spawn_blocking(move || compact_blocking(&slot, &path, &shared, revision))
            .await
            .map_err(|e| StoreError::Backend(format!("compaction task failed: {e}")))?
    }

    async fn status(&self) -> Result<crate::StoreStatus> {
        let (count, free, size) = self.read(|c| pages(c).ctx("read page counts")).await?;
        let health = &self.shared.health;
        let db_size = file_len(&self.path);
        let in_use = count.saturating_sub(free).saturating_mul(size);
        let quota = health.quota_bytes;
        let mut alarms = Vec::new();
        let mut warnings = Vec::new();
        if quota > 0 && (health.nospace.load(Ordering::SeqCst) || in_use >= quota) {
            alarms.push("NOSPACE".to_string());
        } else if quota > 0 && in_use >= quota / 10 * 9 {
            warnings.push(format!(
                "the datastore uses {in_use} of its {quota}-byte quota (over 90%)"
            ));
        }
        if self.low_on_space() {
            warnings.push("the disk is full: only deletes are accepted".into());
        }
        Ok(crate::StoreStatus {
            backend: "sqlite".into(),
            endpoint: self.path.display().to_string(),
            revision: self.current_revision().await?,
            compact_revision: self.compacted_revision(),
            db_size_bytes: db_size,
            db_size_in_use_bytes: in_use,
            wal_size_bytes: file_len(&sidecar(&self.path, "-wal")),
            quota_bytes: quota,
            alarms,
            keys: Some(health.live_keys.load(Ordering::SeqCst).max(0) as u64),
            compactions: health.compactions.load(Ordering::SeqCst),
            last_compaction_unix: health.last_compaction_unix.load(Ordering::SeqCst),
            commit_latency: lock(&health.commit).clone(),
            members: Vec::new(),
            warnings,
        })
    }

    /// The online backup API copies the database page by page inside one read transaction
    /// (consistent, and writers go on meanwhile: WAL) to a temporary file, renamed into place.
    async fn snapshot(&self, dest: &Path) -> Result<crate::SnapshotInfo> {
        let (src, dest) = (self.path.clone(), dest.to_path_buf());
        tokio::task::spawn_blocking(move || backup_to(&src, &dest))
            .await
            .map_err(|e| StoreError::Backend(format!("snapshot task failed: {e}")))?
    }

    /// Replaces the content with the snapshot's latest state in one transaction, keeping its
    /// revisions. Refused while watches are open (the store must not be serving).
    async fn restore(&self, snapshot: &Path) -> Result<crate::SnapshotInfo> {
        let watching = {
            let mut subs = lock(&self.shared.subs);
            subs.list.retain(|s| !s.tx.is_closed());
            subs.list.len()
        };
        if watching > 0 {
            return Err(StoreError::Unsupported(format!(
                "cannot restore into {} while it serves {watching} watches: stop the server first",
                self.path.display()
            )));
        }
        let path = snapshot.to_path_buf();
        let (revision, items) =
            tokio::task::spawn_blocking(move || crate::snapshot::read_latest(&path))
                .await
                .map_err(|e| StoreError::Backend(format!("restore task failed: {e}")))??;
        let keys = items.len() as u64;
        let (reply, rx) = oneshot::channel();
        self.send(Msg::Restore {
            revision,
            items,
            reply,
        })?;
        rx.await.map_err(|_| writer_gone())??;
        Ok(crate::SnapshotInfo {
            path: snapshot.to_path_buf(),
            revision,
            keys,
            size_bytes: file_len(snapshot),
        })
    }
}

/// Copies the database at `src` to the new file `dest` with the online backup API.
fn backup_to(src: &Path, dest: &Path) -> Result<crate::SnapshotInfo> {
    if dest.exists() {
        return Err(StoreError::Unsupported(format!(
            "snapshot {} already exists",
            dest.display()
        )));
    }
    let tmp = crate::snapshot::temp_path(dest);
    let res = (|| {
        let what = format!("snapshot {} to {}", src.display(), tmp.display());
        let from = Connection::open_with_flags(
            src,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .ctx(&what)?;
        from.busy_timeout(COMPACTOR_BUSY_TIMEOUT).ctx(&what)?;
        let mut to = crate::snapshot::create_private(&tmp)?;
        {
            let backup = rusqlite::backup::Backup::new(&from, &mut to).ctx(&what)?;
            // All pages in one step: one read transaction, so the copy is one consistent
            // revision however many commits land meanwhile.
            match backup.step(-1).ctx(&what)? {
                rusqlite::backup::StepResult::Done => {}
                other => {
                    return Err(StoreError::Backend(format!(
                        "{what}: backup did not finish ({other:?})"
                    )))
                }
            }
        }
        // A self-contained file: no -wal/-shm needed to read it.
        let _: String = to
            .query_row("PRAGMA journal_mode=DELETE", [], |r| r.get(0))
            .ctx(&what)?;
        let revision = crate::snapshot::sequence(&to).ctx(&what)?;
        let keys = crate::snapshot::count_live(&to).ctx(&what)?;
        drop(to);
        crate::snapshot::sync_file(&tmp)?;
        Ok((revision, keys))
    })();
    let (revision, keys) = match res {
        Ok(v) => v,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    let size_bytes = crate::snapshot::publish(&tmp, dest)?;
    Ok(crate::SnapshotInfo {
        path: dest.to_path_buf(),
        revision,
        keys,
        size_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn prefix_end_bounds() {
        assert_eq!(prefix_end(""), None);
        assert_eq!(prefix_end("/a/").as_deref(), Some("/a0"));
        assert_eq!(prefix_end("ab").as_deref(), Some("ac"));
        assert_eq!(prefix_end("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_end("\u{D7FF}").as_deref(), Some("\u{E000}"));
    }
}
