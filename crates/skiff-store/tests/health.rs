//! Datastore health of the SQLite backend: snapshots (online backup API) and restores that keep
//! revisions, skiff's snapshot format, the size quota (NOSPACE), the WAL ceiling, incremental
//! vacuum under churn, and the status it reports. Each test uses its own temporary directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use skiff_store::{snapshot, KeyValue, ListOptions, SqliteOptions, SqliteStore, Store, StoreError};

fn db(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("state.db")
}

fn opts() -> SqliteOptions {
    SqliteOptions {
        // No 8 MiB reserve file in every test directory.
        reserve_bytes: 0,
        ..Default::default()
    }
}

async fn all(s: &dyn Store, revision: i64) -> Vec<KeyValue> {
    s.list(
        "/",
        &ListOptions {
            revision,
            ..Default::default()
        },
    )
    .await
    .expect("list")
    .items
}

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

fn wal(p: &Path) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push("-wal");
    PathBuf::from(s)
}

/// A value of `n` bytes that does not compress to nothing.
fn value(i: usize, round: usize, n: usize) -> Vec<u8> {
    let head = format!("{{\"i\":{i},\"round\":{round},\"pad\":\"");
    let mut v = head.into_bytes();
    while v.len() < n {
        v.push(b'a' + ((v.len() * 7 + i + round) % 26) as u8);
    }
    v.extend_from_slice(b"\"}");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn snapshot_while_writing_then_restore_keeps_keys_values_and_revisions() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open_with(&db(&dir), opts()).unwrap());
    for i in 0..200 {
        store
            .create(&format!("/registry/cm/ns/c{i}"), value(i, 0, 300))
            .await
            .unwrap();
    }
    // Writers keep creating, updating and deleting while the snapshot is taken.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..3 {
        let (s, stop) = (store.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut n = 0usize;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let key = format!("/registry/cm/ns/w{w}-{n}");
                let kv = s.create(&key, value(n, 1, 200)).await.unwrap();
                let kv = s
                    .update(&key, value(n, 2, 200), kv.mod_revision)
                    .await
                    .unwrap();
                if n.is_multiple_of(3) {
                    s.delete(&key, Some(kv.mod_revision)).await.unwrap();
                }
                n += 1;
            }
            n
        }));
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    let snap = dir.path().join("backups/snap-1.db");
    let info = store.snapshot(&snap).await.expect("snapshot");
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut written = 0;
    for w in writers {
        written += w.await.unwrap();
    }
    assert!(written > 0);
    let after = store.current_revision().await.unwrap();
    assert!(
        info.revision > 200 && info.revision < after,
        "snapshot at {} taken between 200 and {after}",
        info.revision
    );
    assert_eq!(info.path, snap);
    assert_eq!(info.size_bytes, file_len(&snap));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&snap).unwrap().permissions().mode() & 0o077,
        0
    );

    // The snapshot is exactly the store's state at its revision.
    let expected = all(store.as_ref(), info.revision).await;
    assert_eq!(info.keys, expected.len() as u64);
    let (rev, latest) = snapshot::read_latest(&snap).expect("read_latest of a backup");
    assert_eq!(rev, info.revision);
    assert_eq!(latest, expected);

    // Restore into a fresh store: same keys, values, create and mod revisions.
    let dir2 = tempfile::tempdir().unwrap();
    let restored = SqliteStore::open_with(&db(&dir2), opts()).unwrap();
    restored
        .create("/registry/other", b"gone".to_vec())
        .await
        .unwrap();
    let r = restored.restore(&snap).await.expect("restore");
    assert_eq!((r.revision, r.keys), (info.revision, info.keys));
    assert_eq!(restored.current_revision().await.unwrap(), info.revision);
    assert_eq!(all(&restored, 0).await, expected);
    assert!(restored.get("/registry/other").await.unwrap().is_none());
    // Revisions continue after the snapshot's; an object updates with its restored version.
    let first = expected[0].clone();
    let up = restored
        .update(&first.key, b"new".to_vec(), first.mod_revision)
        .await
        .unwrap();
    assert_eq!(up.mod_revision, info.revision + 1);
    assert_eq!(up.create_revision, first.create_revision);
    // History before the snapshot is gone, as after a compaction.
    let old = restored
        .list(
            "/",
            &ListOptions {
                revision: info.revision - 1,
                ..Default::default()
            },
        )
        .await;
    assert!(matches!(old, Err(StoreError::Compacted { .. })), "{old:?}");
    // The restored store survives a reopen with the same state.
    drop(restored);
    let reopened = SqliteStore::open_with(&db(&dir2), opts()).unwrap();
    assert_eq!(
        reopened.current_revision().await.unwrap(),
        info.revision + 1
    );
    assert_eq!(
        reopened.status().await.unwrap().keys,
        Some(expected.len() as u64)
    );

    // A snapshot of a snapshot-format file (no history) restores the same way.
    let compact = dir.path().join("backups/latest-only.db");
    snapshot::write(&compact, info.revision, &expected).unwrap();
    let dir3 = tempfile::tempdir().unwrap();
    let third = SqliteStore::open_with(&db(&dir3), opts()).unwrap();
    third.restore(&compact).await.unwrap();
    assert_eq!(all(&third, 0).await, expected);
    // And `write`'s file opens directly as a store.
    drop(third);
    let direct = SqliteStore::open_with(&compact, opts()).unwrap();
    assert_eq!(direct.current_revision().await.unwrap(), info.revision);
    assert_eq!(all(&direct, 0).await, expected);
    let kv = direct
        .create("/registry/next", b"x".to_vec())
        .await
        .unwrap();
    assert_eq!(kv.mod_revision, info.revision + 1);

    // An existing destination is never overwritten.
    assert!(store.snapshot(&snap).await.is_err());
}

#[tokio::test]
async fn restore_is_refused_while_watched() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_with(&db(&dir), opts()).unwrap();
    store.create("/a", b"1".to_vec()).await.unwrap();
    let snap = dir.path().join("s.db");
    store.snapshot(&snap).await.unwrap();
    let w = store.watch("/", 0).await.unwrap();
    let res = store.restore(&snap).await;
    assert!(matches!(res, Err(StoreError::Unsupported(_))), "{res:?}");
    drop(w);
    tokio::time::sleep(Duration::from_millis(50)).await;
    store
        .restore(&snap)
        .await
        .expect("restore once nothing watches");
}

#[tokio::test]
async fn foreign_and_corrupt_files_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_with(&db(&dir), opts()).unwrap();
    for i in 0..300 {
        store
            .create(&format!("/k/{i}"), value(i, 0, 500))
            .await
            .unwrap();
    }
    let good = dir.path().join("good.db");
    store.snapshot(&good).await.unwrap();

    let text = dir.path().join("text.db");
    std::fs::write(&text, "this is not a database\n".repeat(100)).unwrap();
    let foreign = dir.path().join("foreign.db");
    {
        let c = rusqlite::Connection::open(&foreign).unwrap();
        c.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
            .unwrap();
    }
    // Garbage over the middle pages of a valid snapshot.
    let corrupt = dir.path().join("corrupt.db");
    let mut bytes = std::fs::read(&good).unwrap();
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 8192] {
        *b = 0xA5;
    }
    std::fs::write(&corrupt, &bytes).unwrap();
    // Cut short.
    let truncated = dir.path().join("truncated.db");
    std::fs::write(&truncated, &std::fs::read(&good).unwrap()[..mid]).unwrap();
    let missing = dir.path().join("missing.db");

    for (p, why) in [
        (&text, "not a valid SQLite database"),
        (&foreign, "not a skiff datastore"),
        (&corrupt, ""),
        (&truncated, ""),
        (&missing, ""),
    ] {
        let err = snapshot::read_latest(p).expect_err("rejected");
        let msg = err.to_string();
        assert!(msg.contains(&p.display().to_string()), "{msg}");
        assert!(msg.contains(why), "{msg}");
        let res = store.restore(p).await;
        assert!(res.is_err(), "{}: {res:?}", p.display());
    }
    // The store is untouched by the failed restores.
    assert_eq!(all(&store, 0).await.len(), 300);
    assert_eq!(snapshot::read_latest(&good).unwrap().1.len(), 300);
}

#[tokio::test]
async fn quota_refuses_writes_until_compaction_frees_space() {
    let dir = tempfile::tempdir().unwrap();
    let quota = 2 * 1024 * 1024;
    let store = SqliteStore::open_with(
        &db(&dir),
        SqliteOptions {
            quota_bytes: quota,
            ..opts()
        },
    )
    .unwrap();
    let mut live = Vec::new();
    let err = loop {
        let i = live.len();
        match store.create(&format!("/q/{i}"), value(i, 0, 4000)).await {
            Ok(kv) => live.push(kv),
            Err(e) => break e,
        }
        assert!(live.len() < 10_000, "the quota never triggered");
    };
    let StoreError::SpaceExceeded(msg) = &err else {
        panic!("want SpaceExceeded, got {err:?}");
    };
    assert!(msg.contains("--datastore-quota-bytes"), "{msg}");
    assert!(
        err.to_string().starts_with("database space exceeded"),
        "{err}"
    );
    // Roughly the quota's worth of data went in.
    assert!(live.len() > 300, "only {} writes fit", live.len());
    let st = store.status().await.unwrap();
    assert_eq!(st.alarms, vec!["NOSPACE".to_string()]);
    assert_eq!(st.quota_bytes, quota);
    // Refused at the quota, give or take a page or two of the estimate of a write's size.
    let used = st.db_size_in_use_bytes;
    assert!(
        used.abs_diff(quota) <= 16 * 1024,
        "in use {used}, quota {quota}"
    );
    // Updates are refused too; reads work.
    let first = live[0].clone();
    assert!(matches!(
        store
            .update(&first.key, value(0, 1, 4000), first.mod_revision)
            .await,
        Err(StoreError::SpaceExceeded(_))
    ));
    assert_eq!(store.get(&first.key).await.unwrap(), Some(first));
    // Deletes work over the quota.
    for kv in live.drain(..live.len() / 2) {
        store.delete(&kv.key, Some(kv.mod_revision)).await.unwrap();
    }
    // Still over until compaction drops the deleted values' history.
    assert!(matches!(
        store.create("/q/new", value(0, 2, 4000)).await,
        Err(StoreError::SpaceExceeded(_))
    ));
    let rev = store.current_revision().await.unwrap();
    store.compact(rev).await.unwrap();
    let st = store.status().await.unwrap();
    assert!(st.alarms.is_empty(), "{:?}", st.alarms);
    assert!(st.db_size_in_use_bytes < quota / 3 * 2, "{st:?}");
    // Writes resume without a restart.
    for i in 0..50 {
        store
            .create(&format!("/q/again{i}"), value(i, 3, 4000))
            .await
            .expect("write after compaction");
    }
}

#[tokio::test]
async fn status_reports_true_fields() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let store = SqliteStore::open_with(&path, opts()).unwrap();
    let st = store.status().await.unwrap();
    assert_eq!(st.backend, "sqlite");
    assert_eq!(st.endpoint, path.display().to_string());
    assert_eq!((st.revision, st.keys, st.compactions), (0, Some(0), 0));
    assert_eq!(st.quota_bytes, skiff_store::DEFAULT_QUOTA_BYTES);
    let mut kvs = Vec::new();
    for i in 0..100 {
        kvs.push(
            store
                .create(&format!("/s/{i}"), value(i, 0, 1000))
                .await
                .unwrap(),
        );
    }
    for kv in &kvs[..30] {
        store.delete(&kv.key, Some(kv.mod_revision)).await.unwrap();
    }
    for kv in &kvs[30..40] {
        store
            .update(&kv.key, value(0, 1, 1000), kv.mod_revision)
            .await
            .unwrap();
    }
    let st = store.status().await.unwrap();
    assert_eq!(st.revision, 140);
    assert_eq!(st.keys, Some(70));
    assert_eq!(st.db_size_bytes, file_len(&path));
    assert_eq!(st.wal_size_bytes, file_len(&wal(&path)));
    assert!(st.wal_size_bytes > 0);
    assert!(st.db_size_in_use_bytes > 100 * 1000);
    assert!(st.alarms.is_empty());
    // One commit per write here (sequential): 140 observations, bucket counts add up.
    let h = &st.commit_latency;
    assert_eq!(h.count, 140);
    assert_eq!(h.counts.len(), h.bounds.len() + 1);
    assert_eq!(h.counts.iter().sum::<u64>(), 140);
    assert!(h.sum_seconds > 0.0);
    assert_eq!(st.last_compaction_unix, 0);

    store.compact(140).await.unwrap();
    let st = store.status().await.unwrap();
    assert_eq!((st.compactions, st.compact_revision), (1, 140));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((now - st.last_compaction_unix).abs() < 60);
    // Reopen: the key count is recounted from the file.
    drop(store);
    let store = SqliteStore::open_with(&path, opts()).unwrap();
    assert_eq!(store.status().await.unwrap().keys, Some(70));
}

/// The churn bound asserted below (file + WAL), for 10,000 objects of ~1 KiB each.
const CHURN_BOUND_BYTES: u64 = 16 * 1024 * 1024;

/// 10,000 objects created, updated twice and deleted (at most 1,000 alive at once), with the
/// compactor's policy applied as it goes: the file and its WAL stay under CHURN_BOUND_BYTES,
/// where without compaction and vacuum the log alone holds ~40 MB.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn churn_of_10000_objects_stays_under_bound() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let store = Arc::new(SqliteStore::open_with(&path, opts()).unwrap());
    let mut max_seen = 0u64;
    let window = 1000usize;
    let total = 10_000usize;
    let mut live: std::collections::VecDeque<KeyValue> = Default::default();
    let mut last_compact = 0i64;
    for chunk in 0..total / 100 {
        // 100 objects per step, written concurrently (group commit), like an API server.
        let mut tasks = Vec::new();
        for j in 0..100 {
            let i = chunk * 100 + j;
            let s = store.clone();
            tasks.push(tokio::spawn(async move {
                let key = format!("/registry/configmaps/churn/o{i}");
                let kv = s.create(&key, value(i, 0, 1000)).await.unwrap();
                let kv = s
                    .update(&key, value(i, 1, 1000), kv.mod_revision)
                    .await
                    .unwrap();
                s.update(&key, value(i, 2, 1000), kv.mod_revision)
                    .await
                    .unwrap()
            }));
        }
        for t in tasks {
            live.push_back(t.await.unwrap());
        }
        let mut deletes = Vec::new();
        while live.len() > window {
            let Some(kv) = live.pop_front() else { break };
            let s = store.clone();
            deletes.push(tokio::spawn(async move {
                s.delete(&kv.key, Some(kv.mod_revision)).await.unwrap();
            }));
        }
        for d in deletes {
            d.await.unwrap();
        }
        // spawn_compactor's policy: keep the last 1000 revisions.
        let rev = store.current_revision().await.unwrap();
        if rev - last_compact > 2000 {
            store.compact(rev - 1000).await.unwrap();
            last_compact = rev - 1000;
        }
        max_seen = max_seen.max(file_len(&path) + file_len(&wal(&path)));
    }
    let deletes: Vec<_> = live
        .drain(..)
        .map(|kv| {
            let s = store.clone();
            tokio::spawn(async move { s.delete(&kv.key, Some(kv.mod_revision)).await.unwrap() })
        })
        .collect();
    for d in deletes {
        d.await.unwrap();
    }
    let rev = store.current_revision().await.unwrap();
    store.compact(rev).await.unwrap();
    let end = file_len(&path) + file_len(&wal(&path));
    let st = store.status().await.unwrap();
    eprintln!(
        "churn: {total} objects, {rev} revisions; peak file+WAL {max_seen} bytes, at the end {end} \
         (file {}, WAL {}, in use {}), bound {CHURN_BOUND_BYTES}",
        st.db_size_bytes, st.wal_size_bytes, st.db_size_in_use_bytes
    );
    assert_eq!(st.keys, Some(0));
    assert!(max_seen < CHURN_BOUND_BYTES, "peak {max_seen}");
    // Everything deleted and compacted: vacuum gave the pages back.
    assert!(st.db_size_bytes < 2 * 1024 * 1024, "{st:?}");
}

/// A reader holding an old snapshot stops every checkpoint, so the WAL grows; once it lets go,
/// the writer's ceiling check truncates the WAL below the ceiling.
#[tokio::test]
async fn wal_ceiling_truncates_after_a_long_reader() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let ceiling = 2 * 1024 * 1024;
    let store = SqliteStore::open_with(
        &path,
        SqliteOptions {
            wal_ceiling_bytes: ceiling,
            ..opts()
        },
    )
    .unwrap();
    store.create("/w/0", b"0".to_vec()).await.unwrap();
    let reader = rusqlite::Connection::open(&path).unwrap();
    reader.execute_batch("BEGIN").unwrap();
    let _: i64 = reader
        .query_row("SELECT count(*) FROM log", [], |r| r.get(0))
        .unwrap();
    for i in 1..1500 {
        store
            .create(&format!("/w/{i}"), value(i, 0, 4000))
            .await
            .unwrap();
    }
    let grown = file_len(&wal(&path));
    assert!(
        grown > 2 * ceiling,
        "WAL only {grown} with a reader pinning it"
    );
    reader.execute_batch("COMMIT").unwrap();
    drop(reader);
    // The next writes notice the WAL past its ceiling (checked at most once a second).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for i in 0..3 {
        store
            .create(&format!("/w/after{i}"), b"x".to_vec())
            .await
            .unwrap();
    }
    let after = file_len(&wal(&path));
    assert!(
        after <= ceiling,
        "WAL {after} after the reader left (was {grown})"
    );
    assert_eq!(all(&store, 0).await.len(), 1503);
}

/// A database made before incremental vacuum is converted once at open, keeping its data.
#[tokio::test]
async fn old_database_is_converted_to_incremental_vacuum() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    {
        let store = SqliteStore::open_with(&path, opts()).unwrap();
        store.create("/old/a", b"1".to_vec()).await.unwrap();
    }
    {
        // Turn it back into a pre-vacuum database.
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch("PRAGMA auto_vacuum=NONE; VACUUM;").unwrap();
        let av: i64 = c.query_row("PRAGMA auto_vacuum", [], |r| r.get(0)).unwrap();
        assert_eq!(av, 0);
    }
    let store = SqliteStore::open_with(&path, opts()).unwrap();
    let c = rusqlite::Connection::open(&path).unwrap();
    let av: i64 = c.query_row("PRAGMA auto_vacuum", [], |r| r.get(0)).unwrap();
    assert_eq!(av, 2, "incremental");
    assert_eq!(store.get("/old/a").await.unwrap().unwrap().value, b"1");
    assert_eq!(
        store
            .create("/old/b", b"2".to_vec())
            .await
            .unwrap()
            .mod_revision,
        2
    );
}

/// `read_latest` reads a store's own database file too (what a migration reads): while the
/// store is open (WAL in use) and after it closed.
#[tokio::test]
async fn read_latest_of_a_store_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let store = SqliteStore::open_with(&path, opts()).unwrap();
    let a = store.create("/r/a", b"1".to_vec()).await.unwrap();
    let b = store.create("/r/b", b"2".to_vec()).await.unwrap();
    store.delete("/r/a", Some(a.mod_revision)).await.unwrap();
    let b = store
        .update("/r/b", b"3".to_vec(), b.mod_revision)
        .await
        .unwrap();
    let (rev, items) = snapshot::read_latest(&path).expect("read an open store's file");
    assert_eq!((rev, items.clone()), (4, vec![b.clone()]));
    drop(store);
    assert_eq!(snapshot::read_latest(&path).unwrap(), (4, vec![b]));
}

/// Reads that never stop (lists from several tasks, as controllers and clients do) starve
/// SQLite's passive checkpoints; the ceiling still holds the WAL near its size.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wal_stays_near_its_ceiling_under_continuous_reads() {
    let dir = tempfile::tempdir().unwrap();
    let path = db(&dir);
    let ceiling = 4 * 1024 * 1024;
    let store = Arc::new(
        SqliteStore::open_with(
            &path,
            SqliteOptions {
                wal_ceiling_bytes: ceiling,
                ..opts()
            },
        )
        .unwrap(),
    );
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut readers = Vec::new();
    for _ in 0..4 {
        let (s, stop) = (store.clone(), stop.clone());
        readers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let page = ListOptions {
                    limit: 50,
                    ..Default::default()
                };
                s.list("/c/", &page).await.unwrap();
                n += 1;
            }
            n
        }));
    }
    let mut peak = 0;
    for round in 0..40 {
        let mut tasks = Vec::new();
        for j in 0..50 {
            let s = store.clone();
            tasks.push(tokio::spawn(async move {
                s.create(&format!("/c/{round}-{j}"), value(j, round, 4000))
                    .await
                    .unwrap()
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        peak = peak.max(file_len(&wal(&path)));
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut reads = 0;
    for r in readers {
        reads += r.await.unwrap();
    }
    eprintln!("continuous reads: {reads} lists, WAL peak {peak}, ceiling {ceiling}");
    assert!(reads > 100);
    // 2,000 values of 4 KB = 8+ MB written: above the ceiling without checkpoints.
    assert!(peak <= ceiling + 2 * 1024 * 1024, "WAL peak {peak}");
}
