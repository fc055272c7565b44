//! In-memory copies of the configuration kinds the request path reads on every request
//! (CustomResourceDefinitions, admission webhook configurations and policies, APIServices,
//! ResourceQuotas):
//! one store list plus one store watch keep every cached prefix current, so admission and
//! routing never read the store per request.
//!
//! Readers take an `Arc` snapshot of a prefix (cheap); [`Cache::subscribe`] wakes consumers
//! that derive their own indexes (compiled CEL programs, served custom kinds) when a cached
//! prefix changed. Like the RBAC index, the watch follows every key so the cache's revision
//! follows the store's, and a request can wait for a write made just before it
//! ([`Cache::catch_up`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Once, RwLock};
use std::time::Duration;

use serde_json::Value;
use skiff_store::{EventKind, ListOptions, Store};

use crate::AppState;

/// CustomResourceDefinitions.
pub(crate) const CRDS: &str = "/registry/apiextensions.k8s.io/customresourcedefinitions/";
/// Validating and mutating webhook configurations, admission policies and their bindings.
pub(crate) const ADMISSION: &str = "/registry/admissionregistration.k8s.io/";
/// APIServices.
pub(crate) const API_SERVICES: &str = "/registry/apiregistration.k8s.io/apiservices/";

/// ResourceQuotas: quota admission asks on every namespaced create whether any quota tracks
/// the object, which must not cost a store read.
pub(crate) const RESOURCE_QUOTAS: &str = "/registry/core/resourcequotas/";

/// The prefixes every server caches.
const PREFIXES: &[&str] = &[CRDS, ADMISSION, API_SERVICES, RESOURCE_QUOTAS];

/// Cached prefixes whose changes wake no subscriber: nothing derives an index from them, and
/// quota status changes with every charged create.
const QUIET: &[&str] = &[RESOURCE_QUOTAS];

/// How long [`Cache::catch_up`] waits for a write to reach the cache.
const CATCH_UP: Duration = Duration::from_secs(2);

/// Objects under one prefix by store key, each with its resourceVersion set.
pub(crate) type Objects = BTreeMap<String, Arc<Value>>;

/// The cached prefixes; see the module doc.
pub(crate) struct Cache {
    maps: RwLock<HashMap<&'static str, Arc<Objects>>>,
    /// Store revision the cache reflects (-1 before the first list).
    rev: tokio::sync::watch::Sender<i64>,
    /// Bumped after every change to a cached prefix.
    changes: tokio::sync::watch::Sender<u64>,
    start: Once,
}

impl Cache {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            maps: RwLock::new(PREFIXES.iter().map(|p| (*p, Arc::default())).collect()),
            rev: tokio::sync::watch::channel(-1).0,
            changes: tokio::sync::watch::channel(0).0,
            start: Once::new(),
        })
    }

    /// The objects under `prefix` (one of the cached prefixes; empty for any other).
    pub(crate) fn snapshot(&self, prefix: &str) -> Arc<Objects> {
        let maps = match self.maps.read() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        maps.get(prefix).cloned().unwrap_or_default()
    }

    /// Objects under the cached `prefix` whose key starts with `under` (e.g. one kind of the
    /// admission group).
    pub(crate) fn objects_under(&self, prefix: &str, under: &str) -> Vec<Arc<Value>> {
        self.snapshot(prefix)
            .range(under.to_string()..)
            .take_while(|(k, _)| k.starts_with(under))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// A receiver that changes after every change to a cached prefix.
    pub(crate) fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// The store revision the cache reflects (-1 before the first list).
    pub(crate) fn revision(&self) -> i64 {
        *self.rev.borrow()
    }

    /// Starts the list-and-watch task once (needs a Tokio runtime).
    pub(crate) fn ensure_started(self: &Arc<Self>, st: &AppState) {
        self.start.call_once(|| {
            let me = self.clone();
            let store = st.store.clone();
            let shutdown = st.shutdown.clone();
            tokio::spawn(async move { me.run(store, shutdown).await });
        });
    }

    /// Starts the cache if needed and waits (up to 30 s) for its first list.
    pub(crate) async fn ready(self: &Arc<Self>, st: &AppState) {
        self.ensure_started(st);
        if self.revision() < 0 {
            self.wait_for(0, Duration::from_secs(30)).await;
        }
    }

    /// Waits until the cache reflects at least store revision `rev` (bounded by `limit`).
    pub(crate) async fn wait_for(&self, rev: i64, limit: Duration) -> bool {
        let mut rx = self.rev.subscribe();
        tokio::time::timeout(limit, rx.wait_for(|r| *r >= rev))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Waits until the cache has caught up with the store's current revision.
    pub(crate) async fn catch_up(self: &Arc<Self>, st: &AppState) {
        self.ready(st).await;
        let Ok(current) = st.store.current_revision().await else {
            return;
        };
        if self.revision() < current && !self.wait_for(current, CATCH_UP).await {
            tracing::warn!(
                revision = current,
                "the configuration cache did not catch up with the store in time"
            );
        }
    }

    fn replace_all(&self, fresh: HashMap<&'static str, Objects>) {
        let mut maps = match self.maps.write() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        for (p, objs) in fresh {
            maps.insert(p, Arc::new(objs));
        }
    }

    fn apply(&self, prefix: &'static str, key: &str, obj: Option<Value>) {
        let mut maps = match self.maps.write() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        let map = Arc::make_mut(maps.entry(prefix).or_default());
        match obj {
            Some(o) => map.insert(key.to_string(), Arc::new(o)),
            None => map.remove(key),
        };
    }

    async fn run(
        self: Arc<Self>,
        store: Arc<dyn Store>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            if *shutdown.borrow() {
                return;
            }
            match self.sync(store.as_ref(), &mut shutdown).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "configuration cache watch ended; listing again")
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    async fn sync(
        &self,
        store: &dyn Store,
        shutdown: &mut tokio::sync::watch::Receiver<bool>,
    ) -> Result<(), skiff_store::StoreError> {
        let mut fresh = HashMap::new();
        let mut revision = store.current_revision().await?;
        for prefix in PREFIXES {
            let list = store.list(prefix, &ListOptions::default()).await?;
            revision = revision.min(list.revision);
            let mut objs = Objects::new();
            for kv in &list.items {
                match crate::keys::decode(kv) {
                    Ok(o) => {
                        objs.insert(kv.key.clone(), Arc::new(o));
                    }
                    Err(e) => {
                        tracing::warn!(key = %kv.key, error = %e.message, "skipping a corrupt object")
                    }
                }
            }
            fresh.insert(*prefix, objs);
        }
        // Every key from the oldest list on, so the revision follows the store's (events the
        // later lists already hold are applied again, which changes nothing).
        let mut w = store.watch("/", revision).await?;
        self.replace_all(fresh);
        self.changes.send_modify(|g| *g += 1);
        self.rev.send_replace(revision);
        loop {
            tokio::select! {
                ev = w.events.recv() => {
                    let Some(ev) = ev else {
                        return Err(skiff_store::StoreError::Backend("watch closed".into()));
                    };
                    let ev = ev?;
                    let rev = ev.kv.mod_revision;
                    if let Some(prefix) = PREFIXES.iter().find(|p| ev.kv.key.starts_with(**p)) {
                        let obj = match ev.kind {
                            EventKind::Put => match crate::keys::decode(&ev.kv) {
                                Ok(o) => Some(o),
                                Err(e) => {
                                    tracing::warn!(key = %ev.kv.key, error = %e.message, "skipping a corrupt object");
                                    None
                                }
                            },
                            EventKind::Delete => None,
                        };
                        self.apply(prefix, &ev.kv.key, obj);
                        if !QUIET.contains(prefix) {
                            self.changes.send_modify(|g| *g += 1);
                        }
                    }
                    self.rev.send_replace(rev);
                }
                _ = shutdown.changed() => return Ok(()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[tokio::test]
    async fn follows_writes_under_cached_prefixes_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn Store> =
            Arc::new(skiff_store::SqliteStore::open(&dir.path().join("state.db")).expect("store"));
        let key = format!("{CRDS}widgets.example.com");
        store
            .create(
                &key,
                serde_json::to_vec(&json!({"metadata": {"name": "widgets.example.com"}}))
                    .expect("json"),
            )
            .await
            .expect("create");
        let (_tx, rx) = tokio::sync::watch::channel(false);
        let tokens = crate::Tokens {
            admin: "admin".into(),
            node: "node".into(),
        };
        let st = AppState::new(store.clone(), tokens, rx);
        st.cache.ready(&st).await;
        let crds = st.cache.snapshot(CRDS);
        assert_eq!(crds.len(), 1);
        assert_eq!(crds[&key]["metadata"]["resourceVersion"], "1");

        let mut changes = st.cache.subscribe();
        changes.borrow_and_update();
        let hook = format!("{ADMISSION}validatingwebhookconfigurations/deny");
        store
            .create(&hook, b"{\"metadata\":{\"name\":\"deny\"}}".to_vec())
            .await
            .expect("create");
        store
            .create("/registry/core/configmaps/default/x", b"{}".to_vec())
            .await
            .expect("create");
        st.cache.catch_up(&st).await;
        assert!(changes.has_changed().expect("open"));
        let hooks = st.cache.objects_under(
            ADMISSION,
            &format!("{ADMISSION}validatingwebhookconfigurations/"),
        );
        assert_eq!(hooks.len(), 1);
        assert!(st.cache.snapshot("/registry/core/configmaps/").is_empty());
        assert_eq!(st.cache.revision(), 3);

        store.delete(&key, None).await.expect("delete");
        st.cache.catch_up(&st).await;
        assert!(st.cache.snapshot(CRDS).is_empty());
    }
}
