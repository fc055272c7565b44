//! The watch cache: [`CachedStore`] wraps any [`Store`] so that all of a server's watchers share
//! ONE watch on the inner store (for etcd: one etcd watch per server instead of one per kubectl
//! or controller watch).
//!
//! * A pump task holds the inner watch on [`CacheOptions::prefix`] (`/`) and appends every
//!   event to a ring (bounded by [`CacheOptions::max_events`] and [`CacheOptions::max_bytes`]).
//!   When the inner watch ends (member restart, leader loss) the pump re-watches from its last
//!   revision, dropping duplicates, so watchers see no gap.
//! * `watch(prefix, from)` with `from` inside the ring (or in the future) is served from it:
//!   exact replay of the events after `from`, then live ones, each watcher reading the ring at
//!   its own pace. A watcher that falls so far behind that its position left the ring is dropped
//!   (its receiver ends; the caller re-lists) — writers and other watchers never wait for it.
//!   An older `from` (or one below a compaction) goes to the inner store, which replays from its
//!   history or answers [`StoreError::Compacted`].
//! * If the pump cannot resume (its revision was compacted while disconnected) the ring starts
//!   over at the current revision and every cached watcher ends, so callers re-list.
//! * Reads and writes go straight to the inner store.

use std::collections::{HashSet, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::{
    Event, KeyValue, ListOptions, ListResult, Result, SnapshotInfo, Store, StoreError, StoreStatus,
    Watch,
};

/// Sizes of the cache; [`Default`] suits the API server.
#[derive(Debug, Clone)]
pub struct CacheOptions {
    /// Most events kept for replay.
    pub max_events: usize,
    /// Most bytes (keys and values, with previous values) kept for replay.
    pub max_bytes: usize,
    /// Capacity of each watcher's channel.
    pub watch_buffer: usize,
    /// What the inner watch covers; watches outside it go to the inner store.
    pub prefix: String,
}

impl Default for CacheOptions {
    fn default() -> Self {
        CacheOptions {
            max_events: 10_000,
            max_bytes: 64 * 1024 * 1024,
            watch_buffer: 1024,
            prefix: "/".into(),
        }
    }
}

/// What the cache holds and has done (for tests and metrics).
#[derive(Debug, Clone, Default)]
pub struct CacheStats {
    /// Inner watches opened by the pump (1 + reconnects).
    pub inner_watches_started: u64,
    /// Watchers currently served from the ring.
    pub watchers: usize,
    pub events: usize,
    pub bytes: usize,
    /// The ring holds every event with a revision above this one.
    pub oldest_revision: i64,
    /// The last revision the pump received.
    pub latest_revision: i64,
    /// Times the ring started over (its revision compacted while disconnected).
    pub resets: u64,
}

struct Ring {
    events: VecDeque<Event>,
    /// Sequence number of `events[0]` (increases forever; positions of watchers).
    first_seq: u64,
    bytes: usize,
    oldest: i64,
    latest: i64,
    /// Keys already seen at `latest` (one etcd revision may hold several events).
    latest_keys: HashSet<String>,
    /// Highest revision compacted through this store.
    compacted: i64,
    /// Bumped when the ring starts over: watchers of an older epoch end.
    epoch: u64,
}

struct Shared {
    ring: Mutex<Ring>,
    /// The pump holds a working inner watch (writes wait for it only then).
    connected: std::sync::atomic::AtomicBool,
    inner_watches: AtomicU64,
    watchers: AtomicUsize,
    resets: AtomicU64,
}

impl Shared {
    fn ring(&self) -> MutexGuard<'_, Ring> {
        // The ring stays consistent between statements: a poisoned lock is still usable.
        self.ring.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn event_bytes(e: &Event) -> usize {
    64 + e.kv.key.len()
        + e.kv.value.len()
        + e.prev.as_ref().map_or(0, |p| p.key.len() + p.value.len())
}

/// A [`Store`] whose watches are served from one shared inner watch (see the module docs).
pub struct CachedStore<S: Store> {
    inner: Arc<S>,
    shared: Arc<Shared>,
    notify: watch::Receiver<i64>,
    pump: tokio::task::JoinHandle<()>,
    opts: CacheOptions,
}

impl<S: Store> CachedStore<S> {
    /// Opens the inner watch at the current revision and starts the pump (inside a runtime).
    pub async fn start(inner: Arc<S>, opts: CacheOptions) -> Result<CachedStore<S>> {
        let start = inner.current_revision().await?;
        let w = inner.watch(&opts.prefix, start).await?;
        let shared = Arc::new(Shared {
            ring: Mutex::new(Ring {
                events: VecDeque::new(),
                first_seq: 0,
                bytes: 0,
                oldest: start,
                latest: start,
                latest_keys: HashSet::new(),
                compacted: 0,
                epoch: 0,
            }),
            connected: std::sync::atomic::AtomicBool::new(true),
            inner_watches: AtomicU64::new(1),
            watchers: AtomicUsize::new(0),
            resets: AtomicU64::new(0),
        });
        let (tx, notify) = watch::channel(start);
        let pump = tokio::spawn(pump(
            inner.clone(),
            shared.clone(),
            tx,
            w,
            start,
            opts.clone(),
        ));
        Ok(CachedStore {
            inner,
            shared,
            notify,
            pump,
            opts,
        })
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Waits (briefly) until the pump holds revision `rev`, so a write returns only once every
    /// watcher of this server can see it, as on SQLite, where the writer publishes before it
    /// answers: in-process caches fed by watches (RBAC, admission configuration) then reflect
    /// a write by the time its caller makes the next request. Bounded, so a disconnected pump
    /// delays writes by at most [`WRITE_VISIBILITY_WAIT`].
    async fn seen(&self, key: &str, rev: i64) {
        if !key.starts_with(&self.opts.prefix) || !self.shared.connected.load(Ordering::SeqCst) {
            return;
        }
        let mut rx = self.notify.clone();
        if tokio::time::timeout(WRITE_VISIBILITY_WAIT, rx.wait_for(|&l| l >= rev))
            .await
            .is_err()
        {
            tracing::debug!(
                revision = rev,
                "watch cache: write not seen by the pump in time"
            );
        }
    }

    pub fn stats(&self) -> CacheStats {
        let ring = self.shared.ring();
        CacheStats {
            inner_watches_started: self.shared.inner_watches.load(Ordering::SeqCst),
            watchers: self.shared.watchers.load(Ordering::SeqCst),
            events: ring.events.len(),
            bytes: ring.bytes,
            oldest_revision: ring.oldest,
            latest_revision: ring.latest,
            resets: self.shared.resets.load(Ordering::SeqCst),
        }
    }
}

impl<S: Store> Drop for CachedStore<S> {
    fn drop(&mut self) {
        // Ends the inner watch; the notify sender goes with it, which ends every watcher.
        self.pump.abort();
    }
}

/// Appends events (skipping ones already held) and trims the ring; returns the new latest.
fn push(shared: &Shared, events: Vec<Event>, opts: &CacheOptions) -> i64 {
    let mut ring = shared.ring();
    for ev in events {
        let rev = ev.kv.mod_revision;
        if rev < ring.latest || (rev == ring.latest && ring.latest_keys.contains(&ev.kv.key)) {
            continue;
        }
        if rev > ring.latest {
            ring.latest = rev;
            ring.latest_keys.clear();
        }
        ring.latest_keys.insert(ev.kv.key.clone());
        ring.bytes += event_bytes(&ev);
        ring.events.push_back(ev);
    }
    while ring.events.len() > opts.max_events.max(1) || ring.bytes > opts.max_bytes {
        let Some(old) = ring.events.pop_front() else {
            break;
        };
        ring.first_seq += 1;
        ring.bytes = ring.bytes.saturating_sub(event_bytes(&old));
        // Every event above the popped one's revision is still held, except other events of
        // that same revision possibly popped next: the ring covers revisions above it.
        ring.oldest = ring.oldest.max(old.kv.mod_revision);
    }
    ring.latest
}

async fn pump<S: Store>(
    inner: Arc<S>,
    shared: Arc<Shared>,
    tx: watch::Sender<i64>,
    mut w: Watch,
    mut last: i64,
    opts: CacheOptions,
) {
    let mut backoff = Duration::from_millis(50);
    loop {
        while let Some(first) = w.events.recv().await {
            let mut batch = vec![first];
            while batch.len() < 512 {
                match w.events.try_recv() {
                    Ok(item) => batch.push(item),
                    Err(_) => break,
                }
            }
            let mut events = Vec::with_capacity(batch.len());
            let mut failed = None;
            for item in batch {
                match item {
                    Ok(ev) => events.push(ev),
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            if !events.is_empty() {
                last = push(&shared, events, &opts);
                tx.send_replace(last);
                backoff = Duration::from_millis(50);
            }
            if let Some(e) = failed {
                tracing::warn!(error = %e, "watch cache: the inner watch failed");
                break;
            }
        }
        shared.connected.store(false, Ordering::SeqCst);
        // Re-watch, one revision back: a revision's events may have been cut in the middle;
        // `push` drops what the ring already holds.
        loop {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
            match inner.watch(&opts.prefix, (last - 1).max(0)).await {
                Ok(nw) => {
                    w = nw;
                    shared.connected.store(true, Ordering::SeqCst);
                    shared.inner_watches.fetch_add(1, Ordering::SeqCst);
                    tracing::debug!(revision = last, "watch cache: inner watch resumed");
                    break;
                }
                Err(StoreError::Compacted { .. }) => {
                    let Ok(current) = inner.current_revision().await else {
                        continue;
                    };
                    tracing::warn!(
                        from = last,
                        now = current,
                        "watch cache: history compacted while disconnected; watchers must re-list"
                    );
                    let mut ring = shared.ring();
                    ring.first_seq += ring.events.len() as u64;
                    ring.events.clear();
                    ring.bytes = 0;
                    ring.oldest = current;
                    ring.latest = current;
                    ring.latest_keys.clear();
                    ring.epoch += 1;
                    drop(ring);
                    shared.resets.fetch_add(1, Ordering::SeqCst);
                    last = current + 1;
                    tx.send_replace(current);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "watch cache: re-watching failed; retrying");
                }
            }
        }
    }
}

/// Decrements the watcher count when a watcher ends.
struct WatcherGuard(Arc<Shared>);

impl Drop for WatcherGuard {
    fn drop(&mut self) {
        self.0.watchers.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Longest a write waits for the pump to see it (see [`CachedStore::seen`]).
const WRITE_VISIBILITY_WAIT: Duration = Duration::from_secs(1);

/// Events per lock hold: at most this many copied, or twice as many looked at.
const CHUNK: usize = 256;

struct Watcher {
    shared: Arc<Shared>,
    notify: watch::Receiver<i64>,
    prefix: String,
    from: i64,
    seq: u64,
    epoch: u64,
    out: mpsc::Sender<Result<Event>>,
    _guard: WatcherGuard,
}

impl Watcher {
    async fn run(mut self) {
        loop {
            self.notify.borrow_and_update();
            let (chunk, scanned) = {
                let ring = self.shared.ring();
                if ring.epoch != self.epoch || self.seq < ring.first_seq {
                    tracing::debug!(prefix = %self.prefix, "watch cache: watcher fell behind, dropping it");
                    return;
                }
                let start = usize::try_from(self.seq - ring.first_seq).unwrap_or(usize::MAX);
                let mut chunk = Vec::new();
                let mut scanned = 0usize;
                for ev in ring.events.iter().skip(start) {
                    scanned += 1;
                    if ev.kv.mod_revision > self.from && ev.kv.key.starts_with(&self.prefix) {
                        chunk.push(ev.clone());
                        if chunk.len() >= CHUNK {
                            break;
                        }
                    }
                    if scanned >= CHUNK * 8 {
                        break;
                    }
                }
                (chunk, scanned)
            };
            self.seq += scanned as u64;
            if scanned == 0 {
                tokio::select! {
                    r = self.notify.changed() => if r.is_err() { return },
                    _ = self.out.closed() => return,
                }
                continue;
            }
            for ev in chunk {
                if self.out.send(Ok(ev)).await.is_err() {
                    return;
                }
            }
        }
    }
}

#[async_trait::async_trait]
impl<S: Store> Store for CachedStore<S> {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        self.inner.get(key).await
    }

    async fn list(&self, prefix: &str, opts: &ListOptions) -> Result<ListResult> {
        self.inner.list(prefix, opts).await
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue> {
        let kv = self.inner.create(key, value).await?;
        self.seen(key, kv.mod_revision).await;
        Ok(kv)
    }

    async fn update(&self, key: &str, value: Vec<u8>, expected_revision: i64) -> Result<KeyValue> {
        let kv = self.inner.update(key, value, expected_revision).await?;
        self.seen(key, kv.mod_revision).await;
        Ok(kv)
    }

    async fn delete(&self, key: &str, expected_revision: Option<i64>) -> Result<KeyValue> {
        let kv = self.inner.delete(key, expected_revision).await?;
        self.seen(key, kv.mod_revision).await;
        Ok(kv)
    }

    async fn watch(&self, prefix: &str, from_revision: i64) -> Result<Watch> {
        if !prefix.starts_with(&self.opts.prefix) {
            return self.inner.watch(prefix, from_revision).await;
        }
        // "From now" = after the store's current revision, which the pump may not have seen yet.
        let from = if from_revision <= 0 {
            self.inner.current_revision().await?
        } else {
            from_revision
        };
        let position = {
            let ring = self.shared.ring();
            if from < ring.oldest || from < ring.compacted {
                None
            } else {
                let idx = ring.events.partition_point(|e| e.kv.mod_revision <= from);
                Some((ring.first_seq + idx as u64, ring.epoch))
            }
        };
        let Some((seq, epoch)) = position else {
            return self.inner.watch(prefix, from).await;
        };
        self.shared.watchers.fetch_add(1, Ordering::SeqCst);
        let (out, events) = mpsc::channel(self.opts.watch_buffer.max(1));
        let watcher = Watcher {
            shared: self.shared.clone(),
            notify: self.notify.clone(),
            prefix: prefix.to_string(),
            from,
            seq,
            epoch,
            out,
            _guard: WatcherGuard(self.shared.clone()),
        };
        tokio::spawn(watcher.run());
        Ok(Watch { events })
    }

    async fn current_revision(&self) -> Result<i64> {
        self.inner.current_revision().await
    }

    async fn compact(&self, revision: i64) -> Result<()> {
        self.inner.compact(revision).await?;
        let mut ring = self.shared.ring();
        ring.compacted = ring.compacted.max(revision);
        Ok(())
    }

    async fn status(&self) -> Result<StoreStatus> {
        self.inner.status().await
    }

    async fn snapshot(&self, dest: &Path) -> Result<SnapshotInfo> {
        self.inner.snapshot(dest).await
    }

    async fn restore(&self, snapshot: &Path) -> Result<SnapshotInfo> {
        self.inner.restore(snapshot).await
    }
}
