//! An in-memory [`Store`] with full history (for tests and `skiff server --datastore memory`).
//! Same semantics as the SQLite backend: a global revision, watches from a revision, compaction.

use std::collections::BTreeMap;
use std::sync::Mutex;

use skiff_store::{
    Event, EventKind, KeyValue, ListOptions, ListResult, Result, Store, StoreError, Watch,
};
use tokio::sync::mpsc;

#[derive(Default)]
struct Inner {
    rev: i64,
    compacted: i64,
    /// Every version of every key: (revision, value or None for a delete).
    versions: BTreeMap<String, Vec<(i64, Option<KeyValue>)>>,
    log: Vec<Event>,
    watchers: Vec<(String, mpsc::Sender<Result<Event>>)>,
}

/// The in-memory store.
#[derive(Default)]
pub struct MemStore {
    inner: Mutex<Inner>,
}

impl MemStore {
    pub fn new() -> Self {
        Self::default()
    }
}

fn backend<T>(_: T) -> StoreError {
    StoreError::Backend("in-memory store lock poisoned".into())
}

impl Inner {
    fn latest(&self, key: &str) -> Option<&KeyValue> {
        self.versions.get(key)?.last()?.1.as_ref()
    }

    fn record(&mut self, event: Event) {
        let key = event.kv.key.clone();
        let value = match event.kind {
            EventKind::Put => Some(event.kv.clone()),
            EventKind::Delete => None,
        };
        self.versions
            .entry(key.clone())
            .or_default()
            .push((event.kv.mod_revision, value));
        self.watchers.retain(|(prefix, tx)| {
            !key.starts_with(prefix.as_str()) || tx.try_send(Ok(event.clone())).is_ok()
        });
        self.log.push(event);
    }
}

#[async_trait::async_trait]
impl Store for MemStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let inner = self.inner.lock().map_err(backend)?;
        Ok(inner.latest(key).cloned())
    }

    async fn list(&self, prefix: &str, opts: &ListOptions) -> Result<ListResult> {
        let inner = self.inner.lock().map_err(backend)?;
        let at = if opts.revision == 0 {
            inner.rev
        } else {
            opts.revision
        };
        if at < inner.compacted {
            return Err(StoreError::Compacted {
                requested: at,
                compacted: inner.compacted,
            });
        }
        if at > inner.rev {
            return Err(StoreError::FutureRevision {
                requested: at,
                current: inner.rev,
            });
        }
        let mut items = Vec::new();
        let mut more = false;
        let start = opts.start_after.clone().unwrap_or_default();
        for (key, versions) in inner.versions.range(prefix.to_string()..) {
            if !key.starts_with(prefix) {
                break;
            }
            if opts.start_after.is_some() && key.as_str() <= start.as_str() {
                continue;
            }
            let Some((_, Some(kv))) = versions.iter().rev().find(|(r, _)| *r <= at) else {
                continue;
            };
            if opts.limit > 0 && items.len() as i64 >= opts.limit {
                more = true;
                break;
            }
            items.push(kv.clone());
        }
        Ok(ListResult {
            items,
            revision: at,
            more,
        })
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> Result<KeyValue> {
        let mut inner = self.inner.lock().map_err(backend)?;
        if inner.latest(key).is_some() {
            return Err(StoreError::AlreadyExists(key.to_string()));
        }
        inner.rev += 1;
        let kv = KeyValue {
            key: key.to_string(),
            value,
            create_revision: inner.rev,
            mod_revision: inner.rev,
        };
        inner.record(Event {
            kind: EventKind::Put,
            kv: kv.clone(),
            prev: None,
        });
        Ok(kv)
    }

    async fn update(&self, key: &str, value: Vec<u8>, expected_revision: i64) -> Result<KeyValue> {
        let mut inner = self.inner.lock().map_err(backend)?;
        let prev = inner
            .latest(key)
            .cloned()
            .ok_or_else(|| StoreError::NotFound(key.to_string()))?;
        if prev.mod_revision != expected_revision {
            return Err(StoreError::Conflict {
                key: key.to_string(),
                expected: expected_revision,
                actual: prev.mod_revision,
            });
        }
        inner.rev += 1;
        let kv = KeyValue {
            key: key.to_string(),
            value,
            create_revision: prev.create_revision,
            mod_revision: inner.rev,
        };
        inner.record(Event {
            kind: EventKind::Put,
            kv: kv.clone(),
            prev: Some(prev),
        });
        Ok(kv)
    }

    async fn delete(&self, key: &str, expected_revision: Option<i64>) -> Result<KeyValue> {
        let mut inner = self.inner.lock().map_err(backend)?;
        let prev = inner
            .latest(key)
            .cloned()
            .ok_or_else(|| StoreError::NotFound(key.to_string()))?;
        if let Some(exp) = expected_revision {
            if prev.mod_revision != exp {
                return Err(StoreError::Conflict {
                    key: key.to_string(),
                    expected: exp,
                    actual: prev.mod_revision,
                });
            }
        }
        inner.rev += 1;
        let kv = KeyValue {
            mod_revision: inner.rev,
            ..prev.clone()
        };
        inner.record(Event {
            kind: EventKind::Delete,
            kv: kv.clone(),
            prev: Some(prev),
        });
        Ok(kv)
    }

    async fn watch(&self, prefix: &str, from_revision: i64) -> Result<Watch> {
        let mut inner = self.inner.lock().map_err(backend)?;
        if from_revision > 0 && from_revision < inner.compacted {
            return Err(StoreError::Compacted {
                requested: from_revision,
                compacted: inner.compacted,
            });
        }
        let replay: Vec<Event> = if from_revision > 0 {
            inner
                .log
                .iter()
                .filter(|e| e.kv.mod_revision > from_revision && e.kv.key.starts_with(prefix))
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        let (tx, rx) = mpsc::channel(replay.len() + 1024);
        for e in replay {
            let _ = tx.try_send(Ok(e));
        }
        inner.watchers.push((prefix.to_string(), tx));
        Ok(Watch { events: rx })
    }

    async fn current_revision(&self) -> Result<i64> {
        Ok(self.inner.lock().map_err(backend)?.rev)
    }

    async fn compact(&self, revision: i64) -> Result<()> {
        let mut inner = self.inner.lock().map_err(backend)?;
        inner.compacted = inner.compacted.max(revision);
        inner.log.retain(|e| e.kv.mod_revision > revision);
        for versions in inner.versions.values_mut() {
            // Keep the newest version at or below the compaction point, and everything after.
            let keep_from = versions
                .iter()
                .rposition(|(r, _)| *r <= revision)
                .unwrap_or(0);
            versions.drain(..keep_from);
        }
        inner
            .versions
            .retain(|_, v| !(v.len() == 1 && v[0].1.is_none()));
        Ok(())
    }
}
