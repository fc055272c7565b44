//! Behaviour tests of the store contract. The generic ones (`async fn name(s: Arc<dyn Store>)`)
//! run on every backend through `conformance!`: `sqlite::name` (SqliteStore), `etcd::name` (the
//! server's etcd store, CachedStore<EtcdStore>, on its own one-member etcd cluster) and
//! `cached_sqlite::name` (the watch cache over SQLite). Revisions are relative to the store's
//! revision at the start (a new etcd cluster starts at 1, SQLite at 0). SQLite-only tests (file
//! locking, reopening, watcher buffers) follow.

use std::sync::Arc;
use std::time::Duration;

use skiff_store::{
    CacheOptions, CachedStore, Event, EventKind, ListOptions, SqliteOptions, SqliteStore, Store,
    StoreError, Watch,
};

fn open(dir: &tempfile::TempDir) -> SqliteStore {
    SqliteStore::open(&dir.path().join("state/db.sqlite")).expect("open store")
}

/// A store under test and what must outlive it (temporary directory, etcd cluster).
struct Backend {
    store: Arc<dyn Store>,
    _keep: Box<dyn std::any::Any + Send>,
}

async fn sqlite_backend() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    Backend {
        store: Arc::new(open(&dir)),
        _keep: Box::new(dir),
    }
}

async fn cached_sqlite_backend() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let inner = Arc::new(open(&dir));
    let cached = CachedStore::start(inner, CacheOptions::default())
        .await
        .unwrap();
    Backend {
        store: Arc::new(cached),
        _keep: Box::new(dir),
    }
}

async fn etcd_backend(name: &'static str) -> Backend {
    let cluster = tokio::task::spawn_blocking(move || {
        skiff_store::etcd_testing::EtcdCluster::start(&format!("st-{name}"), 1)
    })
    .await
    .unwrap()
    .expect("start etcd");
    let store = skiff_store::etcd::connect(skiff_store::EtcdOptions {
        endpoints: cluster.endpoints(),
        ..Default::default()
    })
    .await
    .expect("connect to etcd");
    Backend {
        store,
        _keep: Box::new(cluster),
    }
}

/// Generates one test per backend for each generic test function.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let b = super::sqlite_backend().await;
                    super::$name(b.store).await;
                }
            )*
        }
        mod cached_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let b = super::cached_sqlite_backend().await;
                    super::$name(b.store).await;
                }
            )*
        }
        mod etcd {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let b = super::etcd_backend(stringify!($name)).await;
                    super::$name(b.store).await;
                }
            )*
        }
    };
}

conformance!(
    crud_with_preconditions,
    failed_writes_do_not_consume_revisions,
    list_prefix_pagination_and_old_revisions,
    watch_replays_then_streams_live,
    watch_from_zero_sees_only_new_events,
    watch_from_future_revision_waits_for_it,
    compaction_keeps_latest_and_expires_old_revisions,
    concurrent_writers_and_watchers_see_every_event_once_in_order,
    watch_started_during_writes_has_no_gap_or_duplicate,
    watch_ends_when_store_is_dropped,
    background_compactor_keeps_recent_history,
    too_large_values_are_refused,
);

async fn compacted(s: &Arc<dyn Store>) -> i64 {
    s.status().await.unwrap().compact_revision
}

async fn next(w: &mut Watch) -> Event {
    tokio::time::timeout(Duration::from_secs(10), w.events.recv())
        .await
        .expect("watch event in time")
        .expect("watch still open")
        .expect("watch event ok")
}

/// Nothing more arrives within a short while.
async fn quiet(w: &mut Watch) {
    if let Ok(ev) = tokio::time::timeout(Duration::from_millis(200), w.events.recv()).await {
        panic!("unexpected watch item: {ev:?}");
    }
}

fn v(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

async fn crud_with_preconditions(s: Arc<dyn Store>) {
    let base = s.current_revision().await.unwrap();
    assert!(s.get("/a").await.unwrap().is_none());

    let a = s.create("/a", v("1")).await.unwrap();
    assert_eq!(a.mod_revision, base + 1);
    assert_eq!(a.key, "/a");
    assert_eq!(a.value, v("1"));
    assert_eq!(a.create_revision, a.mod_revision);
    assert_eq!(s.current_revision().await.unwrap(), a.mod_revision);
    assert_eq!(s.get("/a").await.unwrap(), Some(a.clone()));

    match s.create("/a", v("x")).await {
        Err(StoreError::AlreadyExists(k)) => assert_eq!(k, "/a"),
        r => panic!("want AlreadyExists, got {r:?}"),
    }

    let a2 = s.update("/a", v("2"), a.mod_revision).await.unwrap();
    assert!(a2.mod_revision > a.mod_revision);
    assert_eq!(a2.create_revision, a.create_revision);
    assert_eq!(s.get("/a").await.unwrap().unwrap().value, v("2"));

    match s.update("/a", v("3"), a.mod_revision).await {
        Err(StoreError::Conflict {
            key,
            expected,
            actual,
        }) => {
            assert_eq!(key, "/a");
            assert_eq!(expected, a.mod_revision);
            assert_eq!(actual, a2.mod_revision);
        }
        r => panic!("want Conflict, got {r:?}"),
    }
    assert!(matches!(
        s.update("/missing", v("3"), 1).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        s.delete("/a", Some(a.mod_revision)).await,
        Err(StoreError::Conflict { .. })
    ));
    assert!(matches!(
        s.delete("/missing", None).await,
        Err(StoreError::NotFound(_))
    ));

    let d = s.delete("/a", Some(a2.mod_revision)).await.unwrap();
    assert_eq!(d.value, v("2"));
    assert_eq!(d.create_revision, a.create_revision);
    assert!(d.mod_revision > a2.mod_revision);
    assert_eq!(s.current_revision().await.unwrap(), d.mod_revision);
    assert!(s.get("/a").await.unwrap().is_none());
    assert!(matches!(
        s.update("/a", v("4"), d.mod_revision).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        s.delete("/a", None).await,
        Err(StoreError::NotFound(_))
    ));

    // Re-create after delete starts a new life of the key.
    let a3 = s.create("/a", v("new")).await.unwrap();
    assert_eq!(a3.create_revision, a3.mod_revision);
    assert!(a3.mod_revision > d.mod_revision);
    // Unconditional delete.
    let d2 = s.delete("/a", None).await.unwrap();
    assert_eq!(d2.value, v("new"));
}

async fn failed_writes_do_not_consume_revisions(s: Arc<dyn Store>) {
    let a = s.create("/a", v("1")).await.unwrap();
    let _ = s.create("/a", v("1")).await.unwrap_err();
    let _ = s.update("/a", v("1"), 999).await.unwrap_err();
    let b = s.create("/b", v("1")).await.unwrap();
    assert_eq!(b.mod_revision, a.mod_revision + 1);
}

#[tokio::test]
async fn survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (last, deleted_rev) = {
        let s = open(&dir);
        let a = s.create("/a", v("1")).await.unwrap();
        s.update("/a", v("2"), a.mod_revision).await.unwrap();
        s.create("/b", v("b")).await.unwrap();
        let d = s.delete("/b", None).await.unwrap();
        (s.current_revision().await.unwrap(), d.mod_revision)
    };
    assert_eq!(last, deleted_rev);
    let s = open(&dir);
    assert_eq!(s.current_revision().await.unwrap(), last);
    assert_eq!(s.get("/a").await.unwrap().unwrap().value, v("2"));
    assert!(s.get("/b").await.unwrap().is_none());
    let c = s.create("/c", v("c")).await.unwrap();
    assert_eq!(c.mod_revision, last + 1);

    // The revision stays monotonic even when compaction removed the newest row (a tombstone).
    let d = s.delete("/c", None).await.unwrap();
    s.compact(d.mod_revision).await.unwrap();
    drop(s);
    let s = open(&dir);
    assert_eq!(s.current_revision().await.unwrap(), d.mod_revision);
    assert_eq!(s.compacted_revision(), d.mod_revision);
    let e = s.create("/e", v("e")).await.unwrap();
    assert_eq!(e.mod_revision, d.mod_revision + 1);
}

#[tokio::test]
async fn second_open_of_same_file_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(&dir);
    match SqliteStore::open(&dir.path().join("state/db.sqlite")) {
        Err(StoreError::Backend(msg)) => assert!(msg.contains("already in use"), "{msg}"),
        Ok(_) => panic!("second open succeeded"),
        Err(e) => panic!("unexpected error {e}"),
    }
    drop(s);
    open(&dir);
}

#[tokio::test]
async fn corrupt_file_gives_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite");
    std::fs::write(&path, vec![0x42u8; 8192]).unwrap();
    match SqliteStore::open(&path) {
        Err(StoreError::Backend(msg)) => {
            assert!(msg.contains("not a database"), "{msg}");
            assert!(msg.contains("db.sqlite"), "{msg}");
        }
        Ok(_) => panic!("opened a corrupt file"),
        Err(e) => panic!("unexpected error {e}"),
    }
}

async fn list_prefix_pagination_and_old_revisions(s: Arc<dyn Store>) {
    let base = s.current_revision().await.unwrap();
    for name in ["c", "a", "e", "b", "d"] {
        s.create(&format!("/pods/{name}"), v(name)).await.unwrap();
    }
    s.create("/pods", v("not under /pods/")).await.unwrap();
    s.create("/podsx/a", v("other prefix")).await.unwrap();
    s.create("/services/a", v("svc")).await.unwrap();

    let all = s.list("/pods/", &ListOptions::default()).await.unwrap();
    let keys: Vec<_> = all.items.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(
        keys,
        ["/pods/a", "/pods/b", "/pods/c", "/pods/d", "/pods/e"]
    );
    assert!(!all.more);
    assert_eq!(all.revision, s.current_revision().await.unwrap());
    assert_eq!(
        s.list("", &ListOptions::default())
            .await
            .unwrap()
            .items
            .len(),
        8
    );

    // Pages of 2, all at the first page's revision, while writes continue.
    let mut opts = ListOptions {
        limit: 2,
        ..Default::default()
    };
    let p1 = s.list("/pods/", &opts).await.unwrap();
    assert_eq!(p1.items.len(), 2);
    assert!(p1.more);
    s.create("/pods/bb", v("late")).await.unwrap();
    s.delete("/pods/d", None).await.unwrap();
    opts.revision = p1.revision;
    let mut seen: Vec<String> = p1.items.iter().map(|kv| kv.key.clone()).collect();
    let mut last = p1;
    while last.more {
        opts.start_after = last.items.last().map(|kv| kv.key.clone());
        last = s.list("/pods/", &opts).await.unwrap();
        assert_eq!(last.revision, opts.revision);
        seen.extend(last.items.iter().map(|kv| kv.key.clone()));
    }
    assert_eq!(
        seen,
        ["/pods/a", "/pods/b", "/pods/c", "/pods/d", "/pods/e"]
    );
    // Exactly `limit` items left on the last page: `more` must be false.
    let tail = s
        .list(
            "/pods/",
            &ListOptions {
                limit: 2,
                start_after: Some("/pods/c".into()),
                revision: opts.revision,
            },
        )
        .await
        .unwrap();
    assert_eq!(tail.items.len(), 2);
    assert!(!tail.more);

    // Now: bb added, d deleted.
    let now = s.list("/pods/", &ListOptions::default()).await.unwrap();
    let keys: Vec<_> = now.items.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(
        keys,
        ["/pods/a", "/pods/b", "/pods/bb", "/pods/c", "/pods/e"]
    );

    // An older revision sees the old value of an updated key.
    let a = s.get("/pods/a").await.unwrap().unwrap();
    let before = s.current_revision().await.unwrap();
    s.update("/pods/a", v("a2"), a.mod_revision).await.unwrap();
    let old = s
        .list(
            "/pods/a",
            &ListOptions {
                revision: before,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(old.items[0].value, v("a"));
    assert_eq!(old.revision, before);
    let at_one = s
        .list(
            "/",
            &ListOptions {
                revision: base + 1,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(at_one.items.len(), 1);
    assert_eq!(at_one.items[0].key, "/pods/c");

    let cur = s.current_revision().await.unwrap();
    match s
        .list(
            "/",
            &ListOptions {
                revision: cur + 1,
                ..Default::default()
            },
        )
        .await
    {
        Err(StoreError::FutureRevision { requested, current }) => {
            assert_eq!((requested, current), (cur + 1, cur))
        }
        r => panic!("want FutureRevision, got {r:?}"),
    }
}

async fn watch_replays_then_streams_live(s: Arc<dyn Store>) {
    s.create("/zz", v("first")).await.unwrap();
    let a = s.create("/a/1", v("1")).await.unwrap();
    s.create("/b/1", v("other")).await.unwrap();
    let a2 = s.update("/a/1", v("2"), a.mod_revision).await.unwrap();
    let a3 = s.delete("/a/1", None).await.unwrap();

    let mut w = s.watch("/a/", a.mod_revision - 1).await.unwrap();
    let e = next(&mut w).await;
    assert_eq!(e.kind, EventKind::Put);
    assert_eq!(e.kv, a);
    assert!(e.prev.is_none());
    let e = next(&mut w).await;
    assert_eq!(e.kind, EventKind::Put);
    assert_eq!(e.kv, a2);
    assert_eq!(e.prev.as_ref(), Some(&a));
    let e = next(&mut w).await;
    assert_eq!(e.kind, EventKind::Delete);
    assert_eq!(e.kv, a3);
    assert_eq!(e.kv.value, v("2"));
    assert_eq!(e.prev.as_ref(), Some(&a2));
    quiet(&mut w).await;

    // Live.
    let b = s.create("/a/2", v("x")).await.unwrap();
    s.create("/b/2", v("not mine")).await.unwrap();
    let b2 = s.update("/a/2", v("y"), b.mod_revision).await.unwrap();
    let e = next(&mut w).await;
    assert_eq!((e.kind, e.kv, e.prev), (EventKind::Put, b.clone(), None));
    let e = next(&mut w).await;
    assert_eq!((e.kind, e.kv, e.prev), (EventKind::Put, b2, Some(b)));
    quiet(&mut w).await;

    // From the middle of history.
    let mut w = s.watch("/a/", a2.mod_revision).await.unwrap();
    assert_eq!(next(&mut w).await.kv.mod_revision, a3.mod_revision);
}

async fn watch_from_zero_sees_only_new_events(s: Arc<dyn Store>) {
    s.create("/a", v("old")).await.unwrap();
    let mut w = s.watch("/", 0).await.unwrap();
    quiet(&mut w).await;
    let n = s.create("/b", v("new")).await.unwrap();
    let e = next(&mut w).await;
    assert_eq!(e.kv, n);
    quiet(&mut w).await;
}

async fn watch_from_future_revision_waits_for_it(s: Arc<dyn Store>) {
    let base = s.current_revision().await.unwrap();
    s.create("/a", v("1")).await.unwrap();
    let mut w = s.watch("/", base + 2).await.unwrap();
    s.create("/b", v("2")).await.unwrap();
    let c = s.create("/c", v("3")).await.unwrap();
    assert_eq!(next(&mut w).await.kv, c);
}

async fn compaction_keeps_latest_and_expires_old_revisions(s: Arc<dyn Store>) {
    let r = s.current_revision().await.unwrap();
    let a = s.create("/a", v("a1")).await.unwrap(); // 1
    let a2 = s.update("/a", v("a2"), a.mod_revision).await.unwrap(); // 2
    let b = s.create("/b", v("b1")).await.unwrap(); // 3
    s.delete("/b", None).await.unwrap(); // 4
    let c = s.create("/c", v("c1")).await.unwrap(); // 5
    let c2 = s.update("/c", v("c2"), c.mod_revision).await.unwrap(); // 6
    assert_eq!(b.mod_revision, r + 3);
    let before = s
        .list(
            "/",
            &ListOptions {
                revision: r + 5,
                ..Default::default()
            },
        )
        .await
        .unwrap();

    s.compact(r + 5).await.unwrap();
    assert_eq!(compacted(&s).await, r + 5);
    // Compacting to an older revision again is a no-op; the future is refused.
    s.compact(r + 3).await.unwrap();
    assert_eq!(compacted(&s).await, r + 5);
    assert!(matches!(
        s.compact(r + 100).await,
        Err(StoreError::FutureRevision { .. })
    ));

    // Latest values intact.
    assert_eq!(s.get("/a").await.unwrap(), Some(a2.clone()));
    assert!(s.get("/b").await.unwrap().is_none());
    assert_eq!(s.get("/c").await.unwrap(), Some(c2.clone()));
    // The compact revision itself is still readable and unchanged.
    let at5 = s
        .list(
            "/",
            &ListOptions {
                revision: r + 5,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(at5.items, before.items);
    // Older revisions are gone.
    match s
        .list(
            "/",
            &ListOptions {
                revision: r + 4,
                ..Default::default()
            },
        )
        .await
    {
        Err(StoreError::Compacted {
            requested,
            compacted,
        }) => {
            assert_eq!((requested, compacted), (r + 4, r + 5))
        }
        r => panic!("want Compacted, got {r:?}"),
    }
    match s.watch("/", r + 4).await {
        Err(StoreError::Compacted {
            requested,
            compacted,
        }) => {
            assert_eq!((requested, compacted), (r + 4, r + 5))
        }
        Ok(_) => panic!("watch from a compacted revision succeeded"),
        Err(e) => panic!("want Compacted, got {e:?}"),
    }
    // Watching from the compact revision still replays everything after it, with prev.
    let mut w = s.watch("/", r + 5).await.unwrap();
    let e = next(&mut w).await;
    assert_eq!(e.kv, c2);
    assert_eq!(e.prev, Some(c));
    // Writes keep working, and a delete of a key last written before compaction has prev.
    let d = s.delete("/a", Some(a2.mod_revision)).await.unwrap();
    let e = next(&mut w).await;
    assert_eq!(e.kind, EventKind::Delete);
    assert_eq!(e.kv, d);
    assert_eq!(e.prev, Some(a2));
}

async fn concurrent_writers_and_watchers_see_every_event_once_in_order(s: Arc<dyn Store>) {
    const TASKS: usize = 8;
    const EACH: usize = 200;
    let base = s.current_revision().await.unwrap();
    s.create("/before", v("x")).await.unwrap();
    let mut w_all = s.watch("/", 0).await.unwrap();
    let mut w_replay = s.watch("/", base + 1).await.unwrap();
    let mut w_task3 = s.watch("/t/3/", 0).await.unwrap();

    let mut handles = Vec::new();
    for t in 0..TASKS {
        let s = s.clone();
        handles.push(tokio::spawn(async move {
            let mut revs = Vec::new();
            for i in 0..EACH {
                let kv = s
                    .create(&format!("/t/{t}/{i:04}"), vec![b'x'; 100])
                    .await
                    .unwrap();
                revs.push(kv.mod_revision);
            }
            revs
        }));
    }
    let mut revs = Vec::new();
    for h in handles {
        let r = h.await.unwrap();
        // Each writer sees its own writes in increasing order.
        assert!(r.windows(2).all(|w| w[0] < w[1]));
        revs.extend(r);
    }
    revs.sort();
    revs.dedup();
    assert_eq!(revs.len(), TASKS * EACH);
    assert_eq!(
        revs,
        (base + 2..=base + (TASKS * EACH) as i64 + 1).collect::<Vec<_>>()
    );

    for w in [&mut w_all, &mut w_replay] {
        let mut got = Vec::new();
        for _ in 0..TASKS * EACH {
            got.push(next(w).await.kv.mod_revision);
        }
        assert_eq!(got, revs, "every event exactly once, in order");
        quiet(w).await;
    }
    let mut got = Vec::new();
    for _ in 0..EACH {
        let e = next(&mut w_task3).await;
        assert!(e.kv.key.starts_with("/t/3/"));
        got.push(e.kv.mod_revision);
    }
    assert!(got.windows(2).all(|w| w[0] < w[1]));
    quiet(&mut w_task3).await;
    let list = s.list("/t/", &ListOptions::default()).await.unwrap();
    assert_eq!(list.items.len(), TASKS * EACH);
}

/// A watch started while writes are in flight gets a gap-free, duplicate-free sequence
/// across the replay/live boundary.
async fn watch_started_during_writes_has_no_gap_or_duplicate(s: Arc<dyn Store>) {
    let base = s.current_revision().await.unwrap();
    let writer = {
        let s = s.clone();
        tokio::spawn(async move {
            let mut fut = Vec::new();
            for t in 0..4 {
                let s = s.clone();
                fut.push(tokio::spawn(async move {
                    for i in 0..150 {
                        s.create(&format!("/k/{t}/{i}"), v("x")).await.unwrap();
                    }
                }));
            }
            for f in fut {
                f.await.unwrap();
            }
        })
    };
    let mut watches = Vec::new();
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let cur = s.current_revision().await.unwrap();
        let from = base + (cur - base) / 2;
        watches.push((from, s.watch("/k/", from).await.unwrap()));
    }
    writer.await.unwrap();
    let total = s.current_revision().await.unwrap();
    assert_eq!(total, base + 600);
    for (from, mut w) in watches {
        for want in from + 1..=total {
            assert_eq!(next(&mut w).await.kv.mod_revision, want);
        }
        quiet(&mut w).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_watcher_is_dropped_without_blocking_writers() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open_with(
        &dir.path().join("db"),
        SqliteOptions {
            watch_buffer: 16,
            ..Default::default()
        },
    )
    .unwrap();
    let mut slow = s.watch("/", 0).await.unwrap();
    let mut fast = s.watch("/", 0).await.unwrap();
    let reader = tokio::spawn(async move {
        let mut n = 0;
        while let Some(ev) = fast.events.recv().await {
            ev.unwrap();
            n += 1;
            if n == 300 {
                break;
            }
        }
        n
    });
    let writes = async {
        for i in 0..300 {
            s.create(&format!("/k{i}"), v("x")).await.unwrap();
        }
    };
    tokio::time::timeout(Duration::from_secs(30), writes)
        .await
        .expect("writers were not blocked by the slow watcher");
    assert_eq!(reader.await.unwrap(), 300);
    // The slow watcher got at most its buffers' worth, in order, then its stream ended.
    let mut got = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), slow.events.recv()).await {
            Ok(Some(ev)) => got.push(ev.unwrap().kv.mod_revision),
            Ok(None) => break,
            Err(_) => panic!("slow watcher was not closed"),
        }
    }
    assert!(got.len() < 300, "slow watcher got {} events", got.len());
    assert!(got.windows(2).all(|w| w[1] == w[0] + 1));
}

async fn watch_ends_when_store_is_dropped(s: Arc<dyn Store>) {
    let mut w = s.watch("/", 0).await.unwrap();
    drop(s);
    let end = tokio::time::timeout(Duration::from_secs(5), w.events.recv())
        .await
        .expect("watch closed in time");
    assert!(end.is_none());
}

async fn background_compactor_keeps_recent_history(s: Arc<dyn Store>) {
    let base = s.current_revision().await.unwrap();
    let mut kv = s.create("/a", v("0")).await.unwrap();
    for i in 1..60 {
        kv = s
            .update("/a", v(&i.to_string()), kv.mod_revision)
            .await
            .unwrap();
    }
    assert_eq!(kv.mod_revision, base + 60);
    let handle = skiff_store::spawn_compactor(s.clone(), Duration::from_millis(100), 10);
    // The first tick only records the revision (60); the next compacts to min(60, 60 - 10).
    // (etcd records its compact revision in a key, one more revision: a later tick may then
    // compact one further.)
    let mut c = 0;
    for _ in 0..100 {
        c = compacted(&s).await;
        if c != 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    handle.abort();
    let c = compacted(&s).await.max(c);
    assert!(c == base + 50 || c == base + 51, "compacted to {c}");
    assert_eq!(s.get("/a").await.unwrap().unwrap().value, v("59"));
    let at = ListOptions {
        revision: c,
        ..Default::default()
    };
    let want = (c - base - 1).to_string();
    assert_eq!(s.list("/", &at).await.unwrap().items[0].value, v(&want));
    let before = ListOptions {
        revision: c - 1,
        ..Default::default()
    };
    assert!(matches!(
        s.list("/", &before).await,
        Err(StoreError::Compacted { .. })
    ));
}

async fn too_large_values_are_refused(s: Arc<dyn Store>) {
    let big = vec![b'x'; skiff_store::DEFAULT_MAX_VALUE_BYTES + 1];
    match s.create("/big", big.clone()).await {
        Err(StoreError::TooLarge { key, size, limit }) => {
            assert_eq!(key, "/big");
            assert_eq!(size, big.len() + 4);
            assert_eq!(limit, skiff_store::DEFAULT_MAX_VALUE_BYTES);
        }
        r => panic!("want TooLarge, got {r:?}"),
    }
    let small = s.create("/big", v("x")).await.unwrap();
    assert!(matches!(
        s.update("/big", big, small.mod_revision).await,
        Err(StoreError::TooLarge { .. })
    ));
    // Just under the limit passes (etcd's default request limit is the same).
    let fits = vec![b'y'; skiff_store::DEFAULT_MAX_VALUE_BYTES - 4 - 64 * 1024];
    let kv = s
        .update("/big", fits.clone(), small.mod_revision)
        .await
        .unwrap();
    assert_eq!(
        s.get("/big").await.unwrap().unwrap().value.len(),
        fits.len()
    );
    assert_eq!(kv.value.len(), fits.len());
}

// ---------------------------------------------------------------------------------------------
// The watch cache over an inner store whose watches can be cut (as etcd's are when a member
// restarts) and whose history can be declared compacted.

struct Flaky {
    inner: SqliteStore,
    /// Bumped to end every forwarded watch.
    cut: tokio::sync::watch::Sender<u64>,
    /// Watches from below this fail with Compacted.
    compacted: std::sync::atomic::AtomicI64,
    watches: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl Store for Flaky {
    async fn get(&self, key: &str) -> skiff_store::Result<Option<skiff_store::KeyValue>> {
        self.inner.get(key).await
    }
    async fn list(&self, p: &str, o: &ListOptions) -> skiff_store::Result<skiff_store::ListResult> {
        self.inner.list(p, o).await
    }
    async fn create(&self, k: &str, v: Vec<u8>) -> skiff_store::Result<skiff_store::KeyValue> {
        self.inner.create(k, v).await
    }
    async fn update(
        &self,
        k: &str,
        v: Vec<u8>,
        r: i64,
    ) -> skiff_store::Result<skiff_store::KeyValue> {
        self.inner.update(k, v, r).await
    }
    async fn delete(&self, k: &str, r: Option<i64>) -> skiff_store::Result<skiff_store::KeyValue> {
        self.inner.delete(k, r).await
    }
    async fn watch(&self, prefix: &str, from: i64) -> skiff_store::Result<Watch> {
        let compacted = self.compacted.load(std::sync::atomic::Ordering::SeqCst);
        if from < compacted {
            return Err(StoreError::Compacted {
                requested: from,
                compacted,
            });
        }
        self.watches
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mut w = self.inner.watch(prefix, from).await?;
        let mut cut = self.cut.subscribe();
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    ev = w.events.recv() => match ev {
                        Some(ev) => if tx.send(ev).await.is_err() { return },
                        None => return,
                    },
                    _ = cut.changed() => return,
                }
            }
        });
        Ok(Watch { events: rx })
    }
    async fn current_revision(&self) -> skiff_store::Result<i64> {
        self.inner.current_revision().await
    }
    async fn compact(&self, r: i64) -> skiff_store::Result<()> {
        self.inner.compact(r).await
    }
    async fn status(&self) -> skiff_store::Result<skiff_store::StoreStatus> {
        self.inner.status().await
    }
    async fn snapshot(
        &self,
        d: &std::path::Path,
    ) -> skiff_store::Result<skiff_store::SnapshotInfo> {
        self.inner.snapshot(d).await
    }
    async fn restore(&self, s: &std::path::Path) -> skiff_store::Result<skiff_store::SnapshotInfo> {
        self.inner.restore(s).await
    }
}

async fn flaky_cache(dir: &tempfile::TempDir) -> (Arc<Flaky>, CachedStore<Flaky>) {
    let flaky = Arc::new(Flaky {
        inner: open(dir),
        cut: tokio::sync::watch::channel(0).0,
        compacted: Default::default(),
        watches: Default::default(),
    });
    let cache = CachedStore::start(flaky.clone(), CacheOptions::default())
        .await
        .unwrap();
    (flaky, cache)
}

/// The inner watch ends (member restart): the pump re-watches and watchers see every event
/// once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watch_cache_rewatches_without_gap_or_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let (flaky, s) = flaky_cache(&dir).await;
    let mut w = s.watch("/", 0).await.unwrap();
    let mut revs = Vec::new();
    for round in 0..5 {
        for i in 0..20 {
            revs.push(
                s.create(&format!("/k/{round}/{i}"), v("x"))
                    .await
                    .unwrap()
                    .mod_revision,
            );
        }
        flaky.cut.send_modify(|n| *n += 1);
    }
    for want in &revs {
        assert_eq!(next(&mut w).await.kv.mod_revision, *want);
    }
    quiet(&mut w).await;
    let started = s.stats().inner_watches_started;
    // A cut while the pump is between watches cuts nothing: at least one re-watch.
    assert!(started >= 2, "{:?}", s.stats());
    assert_eq!(
        flaky.watches.load(std::sync::atomic::Ordering::SeqCst) as u64,
        started
    );
}

/// The pump cannot resume (its revision was compacted meanwhile): the ring starts over, its
/// watchers end (they must re-list), and new watches work.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watch_cache_starts_over_when_its_revision_was_compacted() {
    let dir = tempfile::tempdir().unwrap();
    let (flaky, s) = flaky_cache(&dir).await;
    let mut old = s.watch("/", 0).await.unwrap();
    let a = s.create("/a", v("1")).await.unwrap();
    assert_eq!(next(&mut old).await.kv, a);
    flaky
        .compacted
        .store(i64::MAX, std::sync::atomic::Ordering::SeqCst);
    flaky.cut.send_modify(|n| *n += 1);
    // The old watcher ends instead of silently missing what happened while cut off.
    let end = tokio::time::timeout(Duration::from_secs(10), old.events.recv())
        .await
        .expect("old watcher ended in time");
    assert!(end.is_none(), "{end:?}");
    assert_eq!(s.stats().resets, 1);
    flaky
        .compacted
        .store(0, std::sync::atomic::Ordering::SeqCst);
    // Once the pump is back, new watches are served from the new ring.
    let mut fresh = s.watch("/", 0).await.unwrap();
    let t = std::time::Instant::now();
    while s.stats().inner_watches_started < 2 && t.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let b = s.create("/b", v("2")).await.unwrap();
    assert_eq!(next(&mut fresh).await.kv, b);
}
