//! The garbage collector (upstream `pkg/controller/garbagecollector`): deletes dependents whose
//! owners are all gone, and runs the `foregroundDeletion` and `orphan` finalizers the API server
//! puts on owners for the Foreground and Orphan propagation policies.
//!
//! Reflectors on every built-in kind we serve, and on each CRD-defined kind (followed from the
//! CRDs, one reflector per storage version), keep a cache; any watch event (or a 30 s resync)
//! triggers a full pass over the cache, which is small for a single-binary cluster. Owners are
//! matched by uid: an object with the owner's name but another uid is not the owner. An owner
//! missing from the cache is confirmed absent with a live GET before anything is deleted; an
//! owner of a kind not cached is resolved through discovery first, and kinds discovery does
//! not know are assumed to exist (never delete what cannot be verified).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions,
    PropagationPolicy,
};
use kube::runtime::reflector::{reflector, store::Writer, Store};
use kube::runtime::{watcher, WatchStreamExt};
use tokio::sync::Notify;

use crate::{Context, Error, Result};

const FOREGROUND: &str = "foregroundDeletion";
const ORPHAN: &str = "orphan";
/// Full pass even without watch events.
const RESYNC: Duration = Duration::from_secs(30);
/// Coalesces bursts of watch events into one pass.
const DEBOUNCE: Duration = Duration::from_millis(50);
/// Retry delay after a pass that hit errors.
const RETRY: Duration = Duration::from_secs(1);

/// A kind the collector watches.
struct Kind {
    ar: ApiResource,
    namespaced: bool,
}

fn kinds() -> Vec<Kind> {
    let k = |group: &str, version: &str, kind: &str, plural: &str, namespaced: bool| {
        let api_version = if group.is_empty() {
            version.to_string()
        } else {
            format!("{group}/{version}")
        };
        Kind {
            ar: ApiResource {
                group: group.into(),
                version: version.into(),
                api_version,
                kind: kind.into(),
                plural: plural.into(),
            },
            namespaced,
        }
    };
    vec![
        k("", "v1", "Pod", "pods", true),
        k("apps", "v1", "ReplicaSet", "replicasets", true),
        k("apps", "v1", "Deployment", "deployments", true),
        k("apps", "v1", "DaemonSet", "daemonsets", true),
        k("batch", "v1", "Job", "jobs", true),
        k("batch", "v1", "CronJob", "cronjobs", true),
        k("", "v1", "Endpoints", "endpoints", true),
        k(
            "discovery.k8s.io",
            "v1",
            "EndpointSlice",
            "endpointslices",
            true,
        ),
        k("", "v1", "ConfigMap", "configmaps", true),
        k("", "v1", "Secret", "secrets", true),
        k("", "v1", "Service", "services", true),
        k("", "v1", "ServiceAccount", "serviceaccounts", true),
        k("", "v1", "Event", "events", true),
        k("coordination.k8s.io", "v1", "Lease", "leases", true),
        k("", "v1", "Node", "nodes", false),
        k("", "v1", "Namespace", "namespaces", false),
    ]
}

/// One cached object, flattened for the pass.
struct Item {
    kind: Arc<Kind>,
    obj: Arc<DynamicObject>,
}

/// The cached custom kinds by CRD name (kept by [`custom_kinds`]).
type CustomStores = Arc<std::sync::Mutex<HashMap<String, (Arc<Kind>, Store<DynamicObject>)>>>;

impl Item {
    fn uid(&self) -> &str {
        self.obj.metadata.uid.as_deref().unwrap_or("")
    }
    fn name(&self) -> &str {
        self.obj.metadata.name.as_deref().unwrap_or("")
    }
    fn namespace(&self) -> Option<&str> {
        self.obj.metadata.namespace.as_deref()
    }
    fn deleting(&self) -> bool {
        self.obj.metadata.deletion_timestamp.is_some()
    }
    fn has_finalizer(&self, f: &str) -> bool {
        self.obj
            .metadata
            .finalizers
            .iter()
            .flatten()
            .any(|x| x == f)
    }
    fn owners(&self) -> &[OwnerReference] {
        self.obj.metadata.owner_references.as_deref().unwrap_or(&[])
    }
}

struct Gc {
    ctx: Arc<Context>,
    kinds: Vec<Arc<Kind>>,
    stores: Vec<Store<DynamicObject>>,
    custom: CustomStores,
}

/// Runs this controller until the process stops (errors are retried inside).
pub async fn run(ctx: Arc<Context>) -> Result<()> {
    let kinds: Vec<Arc<Kind>> = kinds().into_iter().map(Arc::new).collect();
    let custom = CustomStores::default();
    let notify = Arc::new(Notify::new());
    let mut stores = Vec::new();
    let mut streams = Vec::new();
    for k in &kinds {
        let writer: Writer<DynamicObject> = Writer::new(k.ar.clone());
        stores.push(writer.as_reader());
        let api: Api<DynamicObject> = Api::all_with(ctx.client.clone(), &k.ar);
        let notify = notify.clone();
        let kind = k.ar.kind.clone();
        streams.push(
            reflector(writer, watcher(api, watcher::Config::default()))
                .default_backoff()
                .for_each(move |ev| {
                    match ev {
                        Ok(_) => notify.notify_one(),
                        Err(e) => tracing::debug!(kind = %kind, error = %e, "gc watch"),
                    }
                    futures::future::ready(())
                })
                .boxed(),
        );
    }
    // Custom kinds come and go with their CRDs.
    streams.push(custom_kinds(ctx.client.clone(), notify.clone(), custom.clone()).boxed());
    let watches = tokio::spawn(futures::future::join_all(streams).map(|_| ()));
    // Dropping `run` (restart, shutdown) must stop the watches too.
    let _guard = tokio_util::task::AbortOnDropHandle::new(watches);

    let gc = Gc {
        ctx,
        kinds,
        stores,
        custom,
    };
    for s in &gc.stores {
        s.wait_until_ready()
            .await
            .map_err(|e| Error::Other(format!("gc cache: {e}")))?;
    }
    loop {
        let ok = gc.pass().await;
        let wait = if ok { RESYNC } else { RETRY };
        let _ = tokio::time::timeout(wait, notify.notified()).await;
        tokio::time::sleep(DEBOUNCE).await;
    }
}

/// Follows the CustomResourceDefinitions and keeps one cache per custom kind (its storage
/// version), whose every event wakes the collector like the built-in kinds' do.
async fn custom_kinds(client: kube::Client, notify: Arc<Notify>, stores: CustomStores) {
    let crd_ar = ApiResource {
        group: "apiextensions.k8s.io".into(),
        version: "v1".into(),
        api_version: "apiextensions.k8s.io/v1".into(),
        kind: "CustomResourceDefinition".into(),
        plural: "customresourcedefinitions".into(),
    };
    let crds: Api<DynamicObject> = Api::all_with(client.clone(), &crd_ar);
    let mut running: HashMap<String, tokio_util::task::AbortOnDropHandle<()>> = HashMap::new();
    let mut events = watcher(crds, watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(ev) = events.next().await {
        let objs = match ev {
            Ok(watcher::Event::Apply(o)) | Ok(watcher::Event::InitApply(o)) => vec![(o, true)],
            Ok(watcher::Event::Delete(o)) => vec![(o, false)],
            Ok(_) => continue,
            Err(e) => {
                tracing::debug!(error = %e, "gc: CRD watch");
                continue;
            }
        };
        for (crd, present) in objs {
            let name = crd.metadata.name.clone().unwrap_or_default();
            let ar = present.then(|| storage_resource(&crd)).flatten();
            let Some((ar, namespaced)) = ar else {
                running.remove(&name);
                if let Ok(mut s) = stores.lock() {
                    s.remove(&name);
                }
                continue;
            };
            let same = stores
                .lock()
                .ok()
                .and_then(|s| s.get(&name).map(|(k, _)| k.ar == ar))
                .unwrap_or(false);
            if same && running.contains_key(&name) {
                continue;
            }
            let writer: Writer<DynamicObject> = Writer::new(ar.clone());
            let reader = writer.as_reader();
            let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
            let notify = notify.clone();
            let kind = ar.kind.clone();
            let task = tokio::spawn(async move {
                reflector(writer, watcher(api, watcher::Config::default()))
                    .default_backoff()
                    .for_each(|ev| {
                        match ev {
                            Ok(_) => notify.notify_one(),
                            Err(e) => tracing::debug!(kind = %kind, error = %e, "gc watch"),
                        }
                        futures::future::ready(())
                    })
                    .await
            });
            running.insert(name.clone(), tokio_util::task::AbortOnDropHandle::new(task));
            if let Ok(mut s) = stores.lock() {
                s.insert(name, (Arc::new(Kind { ar, namespaced }), reader));
            }
        }
    }
}

/// The storage-version resource of an Established CRD and whether it is namespaced.
fn storage_resource(crd: &DynamicObject) -> Option<(ApiResource, bool)> {
    let established = crd.data["status"]["conditions"]
        .as_array()
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Established" && c["status"] == "True")
        });
    if !established {
        return None;
    }
    let spec = &crd.data["spec"];
    let group = spec["group"].as_str()?;
    let version = spec["versions"]
        .as_array()?
        .iter()
        .find(|v| v["storage"] == true)?["name"]
        .as_str()?;
    let names = &crd.data["status"]["acceptedNames"];
    let ar = ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: format!("{group}/{version}"),
        kind: names["kind"].as_str()?.into(),
        plural: names["plural"].as_str()?.into(),
    };
    Some((ar, spec["scope"] != "Cluster"))
}

/// What a dependent's owner reference points at, as far as we can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OwnerState {
    /// Exists and is not waiting for its dependents.
    Solid,
    /// Being deleted in the foreground: waits for its dependents.
    Waiting,
    /// Gone (or replaced by another object with the same name).
    Dangling,
}

impl Gc {
    fn kind_of(&self, r: &OwnerReference) -> Option<Arc<Kind>> {
        let group = r.api_version.split_once('/').map(|(g, _)| g).unwrap_or("");
        let matches = |k: &Kind| k.ar.kind == r.kind && k.ar.group == group;
        if let Some(k) = self.kinds.iter().find(|k| matches(k)) {
            return Some(k.clone());
        }
        let custom = self.custom.lock().ok()?;
        custom
            .values()
            .find(|(k, _)| matches(k))
            .map(|(k, _)| k.clone())
    }

    /// The resource and scope of an owner reference's kind from the server's discovery (None
    /// when the group/version or kind is not served).
    async fn discover(&self, r: &OwnerReference) -> Option<(ApiResource, bool)> {
        let (group, version) = r
            .api_version
            .split_once('/')
            .unwrap_or(("", &r.api_version));
        let gvk = kube::api::GroupVersionKind::gvk(group, version, &r.kind);
        match kube::discovery::pinned_kind(&self.ctx.client, &gvk).await {
            Ok((ar, caps)) => Some((ar, caps.scope == kube::discovery::Scope::Namespaced)),
            Err(e) => {
                tracing::debug!(api_version = %r.api_version, kind = %r.kind, error = %e, "gc: owner kind not discovered");
                None
            }
        }
    }

    /// One pass over the cache; returns false when something failed (retry soon).
    async fn pass(&self) -> bool {
        let mut caches: Vec<(Arc<Kind>, Store<DynamicObject>)> = self
            .kinds
            .iter()
            .cloned()
            .zip(self.stores.iter().cloned())
            .collect();
        if let Ok(custom) = self.custom.lock() {
            caches.extend(custom.values().cloned());
        }
        let items: Vec<Item> = caches
            .iter()
            .flat_map(|(kind, s)| {
                s.state().into_iter().map(move |obj| Item {
                    kind: kind.clone(),
                    obj,
                })
            })
            .collect();
        let by_uid: HashMap<&str, &Item> = items.iter().map(|i| (i.uid(), i)).collect();
        let mut dependents: HashMap<&str, Vec<&Item>> = HashMap::new();
        for i in &items {
            for r in i.owners() {
                dependents.entry(r.uid.as_str()).or_default().push(i);
            }
        }
        let mut ok = true;
        let mut live_cache: HashMap<String, OwnerState> = HashMap::new();

        // Dependents: delete those whose owners are all gone or waiting.
        for i in items.iter().filter(|i| !i.owners().is_empty()) {
            if let Err(e) = self
                .process_dependent(i, &by_uid, &dependents, &mut live_cache)
                .await
            {
                tracing::warn!(kind = %i.kind.ar.kind, name = i.name(), error = %e, "gc: dependent");
                ok = false;
            }
        }
        // Owners being deleted with the orphan or foreground finalizer.
        for i in items.iter().filter(|i| i.deleting()) {
            let deps = dependents.get(i.uid()).map(Vec::as_slice).unwrap_or(&[]);
            let r = if i.has_finalizer(ORPHAN) {
                self.orphan(i, deps).await
            } else if i.has_finalizer(FOREGROUND) {
                self.foreground(i, deps).await
            } else {
                Ok(())
            };
            if let Err(e) = r {
                tracing::warn!(kind = %i.kind.ar.kind, name = i.name(), error = %e, "gc: owner");
                ok = false;
            }
        }
        ok
    }

    async fn owner_state(
        &self,
        dependent: &Item,
        r: &OwnerReference,
        by_uid: &HashMap<&str, &Item>,
        live_cache: &mut HashMap<String, OwnerState>,
    ) -> Result<OwnerState> {
        if let Some(owner) = by_uid.get(r.uid.as_str()) {
            return Ok(if owner.deleting() && owner.has_finalizer(FOREGROUND) {
                OwnerState::Waiting
            } else {
                OwnerState::Solid
            });
        }
        let (ar, namespaced) = match self.kind_of(r) {
            Some(kind) => (kind.ar.clone(), kind.namespaced),
            // A kind not watched here (a custom resource): resolved through discovery.
            None => match self.discover(r).await {
                Some(found) => found,
                // Unknown kind: cannot verify, so never treat it as gone.
                None => return Ok(OwnerState::Solid),
            },
        };
        let ns = if namespaced {
            dependent.namespace()
        } else {
            None
        };
        if namespaced && ns.is_none() {
            // A cluster-scoped dependent cannot have a namespaced owner: invalid, treat as absent.
            return Ok(OwnerState::Dangling);
        }
        let key = format!("{}/{}", r.uid, ns.unwrap_or(""));
        if let Some(s) = live_cache.get(&key) {
            return Ok(*s);
        }
        // The cache may lag behind a just-created owner: ask the API server.
        let api: Api<DynamicObject> = match ns {
            Some(ns) => Api::namespaced_with(self.ctx.client.clone(), ns, &ar),
            None => Api::all_with(self.ctx.client.clone(), &ar),
        };
        let state = match api.get_opt(&r.name).await? {
            Some(o) if o.metadata.uid.as_deref() == Some(r.uid.as_str()) => {
                let fg = o
                    .metadata
                    .finalizers
                    .iter()
                    .flatten()
                    .any(|f| f == FOREGROUND);
                if o.metadata.deletion_timestamp.is_some() && fg {
                    OwnerState::Waiting
                } else {
                    OwnerState::Solid
                }
            }
            _ => OwnerState::Dangling,
        };
        live_cache.insert(key, state);
        Ok(state)
    }

    /// Upstream `attemptToDeleteItem`.
    async fn process_dependent(
        &self,
        i: &Item,
        by_uid: &HashMap<&str, &Item>,
        dependents: &HashMap<&str, Vec<&Item>>,
        live_cache: &mut HashMap<String, OwnerState>,
    ) -> Result<()> {
        let mut solid = 0;
        let mut remove = Vec::new();
        let mut waiting = 0;
        for r in i.owners() {
            match self.owner_state(i, r, by_uid, live_cache).await? {
                OwnerState::Solid => solid += 1,
                OwnerState::Waiting => {
                    waiting += 1;
                    remove.push(r.uid.clone());
                }
                OwnerState::Dangling => remove.push(r.uid.clone()),
            }
        }
        if solid > 0 {
            if remove.is_empty() {
                return Ok(());
            }
            // Still owned: just drop the references to gone/foreground-deleting owners, or the
            // latter would wait for this object forever.
            return self.remove_owner_refs(i, &remove).await;
        }
        if i.deleting() {
            return Ok(());
        }
        let has_dependents = dependents.get(i.uid()).is_some_and(|d| !d.is_empty());
        let policy = if waiting > 0 && has_dependents {
            PropagationPolicy::Foreground
        } else if i.has_finalizer(ORPHAN) {
            PropagationPolicy::Orphan
        } else if i.has_finalizer(FOREGROUND) {
            PropagationPolicy::Foreground
        } else {
            PropagationPolicy::Background
        };
        tracing::info!(kind = %i.kind.ar.kind, name = i.name(), ?policy, "gc: deleting dependent");
        self.delete(i, policy).await
    }

    /// Foreground: once no dependent with blockOwnerDeletion remains, drop the finalizer.
    async fn foreground(&self, owner: &Item, deps: &[&Item]) -> Result<()> {
        let blocking = deps.iter().any(|d| {
            d.owners()
                .iter()
                .any(|r| r.uid == owner.uid() && r.block_owner_deletion == Some(true))
        });
        if blocking {
            // The dependents themselves are deleted by `process_dependent` (owner Waiting).
            return Ok(());
        }
        tracing::info!(kind = %owner.kind.ar.kind, name = owner.name(), "gc: dependents gone; removing foregroundDeletion");
        self.remove_finalizer(owner, FOREGROUND).await
    }

    /// Orphan: strip references to the owner from every dependent, then drop the finalizer.
    async fn orphan(&self, owner: &Item, deps: &[&Item]) -> Result<()> {
        let uid = owner.uid().to_string();
        for d in deps {
            self.remove_owner_refs(d, std::slice::from_ref(&uid))
                .await?;
        }
        tracing::info!(kind = %owner.kind.ar.kind, name = owner.name(), "gc: dependents orphaned; removing orphan finalizer");
        self.remove_finalizer(owner, ORPHAN).await
    }

    fn api_for(&self, i: &Item) -> Api<DynamicObject> {
        let ar = &i.kind.ar;
        match i.namespace() {
            Some(ns) if i.kind.namespaced => Api::namespaced_with(self.ctx.client.clone(), ns, ar),
            _ => Api::all_with(self.ctx.client.clone(), ar),
        }
    }

    async fn delete(&self, i: &Item, policy: PropagationPolicy) -> Result<()> {
        let dp = DeleteParams {
            propagation_policy: Some(policy),
            preconditions: Some(Preconditions {
                uid: Some(i.uid().to_string()),
                resource_version: None,
            }),
            ..Default::default()
        };
        match self.api_for(i).delete(i.name(), &dp).await {
            Ok(_) => Ok(()),
            // Already gone, or replaced by another object with the same name.
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Strategic merge patch deleting owner references by uid (upstream
    /// `deleteOwnerRefStrategicMergePatch`), with the dependent's uid as a guard.
    async fn remove_owner_refs(&self, i: &Item, uids: &[String]) -> Result<()> {
        let present: HashSet<&str> = i.owners().iter().map(|r| r.uid.as_str()).collect();
        let refs: Vec<serde_json::Value> = uids
            .iter()
            .filter(|u| present.contains(u.as_str()))
            .map(|u| serde_json::json!({"$patch": "delete", "uid": u}))
            .collect();
        if refs.is_empty() {
            return Ok(());
        }
        let patch = serde_json::json!({"metadata": {"ownerReferences": refs, "uid": i.uid()}});
        match self
            .api_for(i)
            .patch(i.name(), &PatchParams::default(), &Patch::Strategic(&patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            // Custom objects take no strategic merge patch: upstream's JSON merge patch with
            // the remaining references, guarded by uid and resourceVersion.
            Err(kube::Error::Api(s)) if s.code == 415 => {
                let remaining: Vec<&OwnerReference> = i
                    .owners()
                    .iter()
                    .filter(|r| !uids.contains(&r.uid))
                    .collect();
                let patch = serde_json::json!({"metadata": {
                    "ownerReferences": if remaining.is_empty() { serde_json::Value::Null } else { serde_json::json!(remaining) },
                    "uid": i.uid(),
                    "resourceVersion": i.obj.metadata.resource_version,
                }});
                match self
                    .api_for(i)
                    .patch(i.name(), &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    Ok(_) => Ok(()),
                    Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
                    Err(e) => Err(e.into()),
                }
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Removes one finalizer with a merge patch carrying the cached resourceVersion, so a
    /// concurrent edit of the list makes it fail (and retry) instead of being lost.
    async fn remove_finalizer(&self, i: &Item, finalizer: &str) -> Result<()> {
        let current: Vec<&String> = i.obj.metadata.finalizers.iter().flatten().collect();
        if !current.iter().any(|f| *f == finalizer) {
            return Ok(());
        }
        let rest: Vec<&String> = current.into_iter().filter(|f| *f != finalizer).collect();
        let patch = serde_json::json!({"metadata": {
            "finalizers": if rest.is_empty() { serde_json::Value::Null } else { serde_json::json!(rest) },
            "resourceVersion": i.obj.metadata.resource_version,
            "uid": i.uid(),
        }});
        match self
            .api_for(i)
            .patch(i.name(), &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}
