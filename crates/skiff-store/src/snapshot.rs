//! skiff's snapshot format, shared by both backends: an SQLite database file in the SQLite
//! backend's own schema (so a SQLite snapshot made with the online backup API is one), from
//! which a restore takes the latest value of every live key with its revisions.
//! (Owned by the datastore-health work; filled in there.)

use std::path::Path;

use crate::{KeyValue, Result, StoreError};

/// The state a snapshot holds: its revision and the latest value of every live key, by key.
pub fn read_latest(path: &Path) -> Result<(i64, Vec<KeyValue>)> {
    Err(StoreError::Unsupported(format!(
        "reading snapshot {}: not implemented yet",
        path.display()
    )))
}

/// Writes a new snapshot file holding `items` (live keys with their revisions) at `revision`.
pub fn write(path: &Path, revision: i64, items: &[KeyValue]) -> Result<u64> {
    let _ = (revision, items);
    Err(StoreError::Unsupported(format!(
        "writing snapshot {}: not implemented yet",
        path.display()
    )))
}
