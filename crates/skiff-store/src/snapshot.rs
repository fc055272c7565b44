//! skiff's snapshot format, shared by both backends: an SQLite database file in the SQLite
//! backend's own schema (`log` + `meta`, see `sqlite.rs`), so a copy of a live SQLite store made
//! with the online backup API is one, and so is a file [`write`] builds from any backend's
//! latest state (the etcd backend's snapshots). A restore takes the latest value of every live
//! key with its create/mod revisions, and the snapshot's revision (the log's AUTOINCREMENT
//! sequence): objects come back with the same resourceVersions and new writes continue above it.
//!
//! A file written by [`write`] holds exactly one row per live key (no history, no tombstones)
//! and records its revision as the compact revision: reads at older revisions answer
//! `Compacted`, as after a compaction.

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

use crate::{KeyValue, Result, StoreError};

/// The `meta.schema_version` this code reads and writes.
pub(crate) const SCHEMA_VERSION: i64 = 1;

/// The state a snapshot holds: its revision and the latest value of every live key, by key.
/// Validates the file first: not an SQLite database, not skiff's schema, or failing SQLite's
/// `quick_check` (corruption) are errors.
pub fn read_latest(path: &Path) -> Result<(i64, Vec<KeyValue>)> {
    let conn = open_validated(path)?;
    let what = |e: rusqlite::Error| bad(path, format!("reading it: {e}"));
    let revision = sequence(&conn).map_err(what)?;
    let mut st = conn
        .prepare(
            "SELECT name, value, create_revision, id FROM log AS l \
             WHERE deleted = 0 AND id = (SELECT MAX(id) FROM log WHERE name = l.name) \
             ORDER BY name",
        )
        .map_err(what)?;
    let rows = st
        .query_map([], |r| {
            Ok(KeyValue {
                key: r.get(0)?,
                value: r.get(1)?,
                create_revision: r.get(2)?,
                mod_revision: r.get(3)?,
            })
        })
        .map_err(what)?;
    let items = rows.collect::<rusqlite::Result<Vec<_>>>().map_err(what)?;
    if let Some(kv) = items.iter().find(|kv| kv.mod_revision > revision) {
        return Err(bad(
            path,
            format!(
                "key {} has revision {} above the snapshot's revision {revision}",
                kv.key, kv.mod_revision
            ),
        ));
    }
    Ok((revision, items))
}

/// Writes a new snapshot file holding `items` (live keys with their revisions) at `revision`;
/// returns its size in bytes. The file is built under a temporary name and renamed into place
/// (0600: values may be Secrets); an existing `path` is an error. Every key must have its own
/// mod revision, at most `revision` (one key per revision, as Kubernetes writes).
pub fn write(path: &Path, revision: i64, items: &[KeyValue]) -> Result<u64> {
    if path.exists() {
        return Err(StoreError::Unsupported(format!(
            "snapshot {} already exists",
            path.display()
        )));
    }
    let tmp = temp_path(path);
    let res = (|| {
        let mut conn = create_private(&tmp)?;
        let e = |e: rusqlite::Error| StoreError::Backend(format!("write {}: {e}", tmp.display()));
        // Incremental vacuum from the start, so a store opened on the file needs no conversion.
        conn.execute_batch("PRAGMA auto_vacuum=INCREMENTAL")
            .map_err(e)?;
        conn.execute_batch(crate::sqlite::SCHEMA).map_err(e)?;
        let tx = conn.transaction().map_err(e)?;
        load(&tx, revision, items)?;
        tx.commit().map_err(e)?;
        drop(conn);
        sync_file(&tmp)
    })();
    if let Err(err) = res {
        let _ = std::fs::remove_file(&tmp);
        return Err(err);
    }
    publish(&tmp, path)
}

/// Fills an empty `log` with `items` and sets the revision and compact revision to `revision`
/// (inside the caller's transaction). Used by [`write`] and by the SQLite store's restore.
pub(crate) fn load(
    tx: &rusqlite::Transaction<'_>,
    revision: i64,
    items: &[KeyValue],
) -> Result<()> {
    let e = |e: rusqlite::Error| StoreError::Backend(format!("load snapshot rows: {e}"));
    {
        let mut st = tx
            .prepare(
                "INSERT INTO log (id, name, created, deleted, create_revision, prev_revision, value) \
                 VALUES (?1, ?2, ?3, 0, ?4, 0, ?5)",
            )
            .map_err(e)?;
        let mut seen = std::collections::HashSet::with_capacity(items.len());
        for kv in items {
            if kv.mod_revision <= 0
                || kv.mod_revision > revision
                || kv.create_revision <= 0
                || kv.create_revision > kv.mod_revision
            {
                return Err(StoreError::Unsupported(format!(
                    "key {}: revisions create {} / mod {} do not fit revision {revision}",
                    kv.key, kv.create_revision, kv.mod_revision
                )));
            }
            if !seen.insert(kv.mod_revision) {
                return Err(StoreError::Unsupported(format!(
                    "key {}: revision {} is shared with another key (skiff's format needs one key per revision)",
                    kv.key, kv.mod_revision
                )));
            }
            st.execute(params![
                kv.mod_revision,
                kv.key,
                (kv.create_revision == kv.mod_revision) as i64,
                kv.create_revision,
                kv.value
            ])
            .map_err(|err| {
                if err.sqlite_error_code() == Some(rusqlite::ErrorCode::ConstraintViolation) {
                    StoreError::Unsupported(format!("key {}: duplicate row: {err}", kv.key))
                } else {
                    e(err)
                }
            })?;
        }
    }
    // AUTOINCREMENT's sequence is the store's revision (see sqlite.rs `current_rev`).
    let n = tx
        .execute(
            "UPDATE sqlite_sequence SET seq = ?1 WHERE name = 'log'",
            params![revision],
        )
        .map_err(e)?;
    if n == 0 {
        tx.execute(
            "INSERT INTO sqlite_sequence (name, seq) VALUES ('log', ?1)",
            params![revision],
        )
        .map_err(e)?;
    }
    tx.execute(
        "UPDATE meta SET value = ?1 WHERE key = 'compact_revision'",
        params![revision],
    )
    .map_err(e)?;
    Ok(())
}

/// Opens `path` read-only and checks it is an intact skiff database.
pub(crate) fn open_validated(path: &Path) -> Result<Connection> {
    let meta = std::fs::metadata(path).map_err(|e| bad(path, e.to_string()))?;
    if !meta.is_file() {
        return Err(bad(path, "not a regular file".into()));
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| bad(path, format!("open: {e}")))?;
    let check: String = conn
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .map_err(|e| bad(path, format!("not a valid SQLite database ({e})")))?;
    if check != "ok" {
        return Err(bad(path, format!("corrupt: {check}")));
    }
    let tables: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ('log', 'meta')",
            [],
            |r| r.get(0),
        )
        .map_err(|e| bad(path, e.to_string()))?;
    if tables != 2 {
        return Err(bad(
            path,
            "not a skiff datastore (no log and meta tables)".into(),
        ));
    }
    let version: Option<i64> = conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .optional()
        .map_err(|e| bad(path, e.to_string()))?;
    match version {
        Some(SCHEMA_VERSION) => Ok(conn),
        other => Err(bad(
            path,
            format!("unsupported schema version {other:?} (this skiff reads {SCHEMA_VERSION})"),
        )),
    }
}

/// The log's AUTOINCREMENT sequence (the revision), 0 for an empty log.
pub(crate) fn sequence(conn: &Connection) -> rusqlite::Result<i64> {
    let has_seq: i64 = conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE name = 'sqlite_sequence'",
        [],
        |r| r.get(0),
    )?;
    if has_seq == 0 {
        return Ok(0);
    }
    Ok(conn
        .query_row(
            "SELECT seq FROM sqlite_sequence WHERE name = 'log'",
            [],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or(0))
}

/// Live keys in a database (one index scan).
pub(crate) fn count_live(conn: &Connection) -> rusqlite::Result<u64> {
    let n: i64 = conn.query_row(
        "SELECT count(*) FROM log AS l WHERE deleted = 0 \
         AND NOT EXISTS (SELECT 1 FROM log AS n WHERE n.name = l.name AND n.id > l.id)",
        [],
        |r| r.get(0),
    )?;
    Ok(n.max(0) as u64)
}

fn bad(path: &Path, why: String) -> StoreError {
    StoreError::Backend(format!("snapshot {}: {why}", path.display()))
}

/// `<dir>/.<name>.tmp-<pid>`: same directory, so the final rename is atomic.
pub(crate) fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "snapshot".into());
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// Creates `path` empty with mode 0600 (failing if it exists) and opens it.
pub(crate) fn create_private(path: &Path) -> Result<Connection> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Backend(format!("create {}: {e}", dir.display())))?;
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| StoreError::Backend(format!("create {}: {e}", path.display())))?;
    Connection::open(path).map_err(|e| StoreError::Backend(format!("open {}: {e}", path.display())))
}

pub(crate) fn sync_file(path: &Path) -> Result<()> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| StoreError::Backend(format!("sync {}: {e}", path.display())))
}

/// Renames the finished temporary file to `path` (durably); returns its size.
pub(crate) fn publish(tmp: &Path, path: &Path) -> Result<u64> {
    let size = std::fs::metadata(tmp).map(|m| m.len()).unwrap_or(0);
    if let Err(e) = std::fs::rename(tmp, path) {
        let _ = std::fs::remove_file(tmp);
        return Err(StoreError::Backend(format!(
            "rename {} to {}: {e}",
            tmp.display(),
            path.display()
        )));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // The rename is durable once the directory is synced (best effort: some filesystems
        // refuse fsync on directories).
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: &str, c: i64, m: i64) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: value.as_bytes().to_vec(),
            create_revision: c,
            mod_revision: m,
        }
    }

    #[test]
    fn write_then_read_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.db");
        let items = vec![kv("/a", "1", 2, 5), kv("/b", "2", 7, 7)];
        let size = write(&p, 9, &items).unwrap();
        assert!(size > 0);
        let (rev, got) = read_latest(&p).unwrap();
        assert_eq!(rev, 9);
        assert_eq!(got, items);
        // A second write to the same path refuses to overwrite.
        assert!(write(&p, 9, &items).is_err());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{mode:o}");
    }

    #[test]
    fn write_rejects_bad_revisions() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.db");
        assert!(write(&p, 3, &[kv("/a", "1", 1, 4)]).is_err());
        assert!(write(&p, 5, &[kv("/a", "1", 1, 4), kv("/b", "1", 1, 4)]).is_err());
        assert!(write(&p, 5, &[kv("/a", "1", 0, 4)]).is_err());
        assert!(!p.exists());
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn empty_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.db");
        write(&p, 0, &[]).unwrap();
        assert_eq!(read_latest(&p).unwrap(), (0, vec![]));
    }
}
