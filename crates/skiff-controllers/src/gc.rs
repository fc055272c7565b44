//! The garbage collector (upstream `pkg/controller/garbagecollector`): deletes dependents whose
//! owners are all gone, and runs the `foregroundDeletion` and `orphan` finalizers the API server
//! puts on owners for the Foreground and Orphan propagation policies.
//!
//! Metadata-only reflectors (`as=PartialObjectMetadata`, all the collector reads) keep a cache of
//! the core kinds from the start and of every other deletable kind discovery lists — custom
//! resources, aggregated APIs, the rest of the built-ins — rediscovered every 30 s and whenever an
//! owner reference names a kind not yet watched, as upstream's monitors are. Events are not
//! watched (upstream ignores them too). Any watch event (or a 30 s resync) triggers a full pass
//! over the cache, which is small for a single-binary cluster. Owners are matched by uid: an
//! object with the owner's name but another uid is not the owner. An owner missing from the
//! cache is confirmed absent with a live GET before anything is deleted, and owners of kinds we
//! do not know are assumed to exist (never delete what cannot be verified).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, PartialObjectMeta, Patch, PatchParams,
    Preconditions, PropagationPolicy,
};
use kube::discovery::{verbs, Scope};
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
/// Rediscovery delay after an owner reference named a kind not watched yet.
const DISCOVER_AGAIN: Duration = Duration::from_secs(2);

/// What the collector caches of an object.
type Meta = PartialObjectMeta<DynamicObject>;

/// A kind the collector watches.
#[derive(Clone)]
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
    kind: usize,
    obj: Arc<Meta>,
}

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
    kinds: Vec<Kind>,
    stores: Vec<Store<Meta>>,
}

/// One watched kind: its cache and the task that fills it (stopped on drop).
struct Monitor {
    kind: Kind,
    store: Store<Meta>,
    _watch: tokio_util::task::AbortOnDropHandle<()>,
}

fn monitor(ctx: &Context, kind: Kind, notify: &Arc<Notify>) -> Monitor {
    let writer: Writer<Meta> = Writer::new(kind.ar.clone());
    let store = writer.as_reader();
    // Metadata-only requests: all the collector reads.
    let api: Api<Meta> = Api::all_with(ctx.client.clone(), &kind.ar);
    let notify = notify.clone();
    let name = kind.ar.kind.clone();
    let watch = tokio::spawn(
        reflector(writer, watcher(api, watcher::Config::default()))
            .default_backoff()
            .for_each(move |ev| {
                match ev {
                    Ok(_) => notify.notify_one(),
                    Err(e) => tracing::debug!(kind = %name, error = %e, "gc watch"),
                }
                futures::future::ready(())
            }),
    );
    Monitor {
        kind,
        store,
        _watch: tokio_util::task::AbortOnDropHandle::new(watch),
    }
}

/// Every deletable kind discovery lists beyond the core ones (`known`), except events. A group
/// whose discovery fails (an unavailable aggregated API) is skipped, not fatal.
async fn discover(ctx: &Context, known: &[Kind]) -> Result<Vec<Kind>> {
    let mut names = vec![String::new()];
    let groups = ctx.client.list_api_groups().await?;
    names.extend(groups.groups.into_iter().map(|g| g.name));
    let mut out = Vec::new();
    for name in names {
        let group = match kube::discovery::group(&ctx.client, &name).await {
            Ok(g) => g,
            Err(e) => {
                tracing::debug!(group = %name, error = %e, "gc discovery");
                continue;
            }
        };
        for (ar, caps) in group.recommended_resources() {
            let deletable = [verbs::LIST, verbs::WATCH, verbs::DELETE]
                .iter()
                .all(|v| caps.supports_operation(v));
            let watched = known
                .iter()
                .any(|k| k.ar.group == ar.group && k.ar.kind == ar.kind);
            if deletable && !watched && ar.plural != "events" {
                out.push(Kind {
                    namespaced: caps.scope == Scope::Namespaced,
                    ar,
                });
            }
        }
    }
    Ok(out)
}

/// Runs this controller until the process stops (errors are retried inside).
pub async fn run(ctx: Arc<Context>) -> Result<()> {
    let notify = Arc::new(Notify::new());
    let core = kinds();
    let mut monitors: Vec<Monitor> = core
        .iter()
        .cloned()
        .map(|k| monitor(&ctx, k, &notify))
        .collect();
    for m in &monitors {
        m.store
            .wait_until_ready()
            .await
            .map_err(|e| Error::Other(format!("gc cache: {e}")))?;
    }
    let mut next_discovery = tokio::time::Instant::now();
    loop {
        if tokio::time::Instant::now() >= next_discovery {
            match discover(&ctx, &core).await {
                Ok(found) => {
                    // Kinds no longer served (a deleted CRD) stop being watched.
                    monitors.retain(|m| core.iter().chain(&found).any(|k| k.ar == m.kind.ar));
                    for k in found {
                        if !monitors.iter().any(|m| m.kind.ar == k.ar) {
                            tracing::debug!(kind = %k.ar.kind, group = %k.ar.group, "gc: watching");
                            monitors.push(monitor(&ctx, k, &notify));
                        }
                    }
                }
                Err(e) => tracing::debug!(error = %e, "gc discovery"),
            }
            next_discovery = tokio::time::Instant::now() + RESYNC;
        }
        // Caches still filling are used as they are: an owner missing from one is confirmed
        // with a live GET before anything is deleted.
        let gc = Gc {
            ctx: ctx.clone(),
            kinds: monitors.iter().map(|m| m.kind.clone()).collect(),
            stores: monitors.iter().map(|m| m.store.clone()).collect(),
        };
        let pass = gc.pass().await;
        if pass.unknown_owner_kind {
            // An owner of a kind not watched yet (a CRD created moments ago): look again soon.
            next_discovery = next_discovery.min(tokio::time::Instant::now() + DISCOVER_AGAIN);
        }
        let wait = if pass.ok && !pass.unknown_owner_kind {
            RESYNC
        } else {
            RETRY
        };
        let _ = tokio::time::timeout(wait, notify.notified()).await;
        tokio::time::sleep(DEBOUNCE).await;
    }
}

/// How a pass went.
struct Pass {
    /// Nothing failed.
    ok: bool,
    /// Some owner reference names a kind no monitor watches.
    unknown_owner_kind: bool,
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
    fn kind_of(&self, r: &OwnerReference) -> Option<usize> {
        let group = r.api_version.split_once('/').map(|(g, _)| g).unwrap_or("");
        self.kinds
            .iter()
            .position(|k| k.ar.kind == r.kind && k.ar.group == group)
    }

    /// One pass over the cache.
    async fn pass(&self) -> Pass {
        let items: Vec<Item> = self
            .stores
            .iter()
            .enumerate()
            .flat_map(|(kind, s)| s.state().into_iter().map(move |obj| Item { kind, obj }))
            .collect();
        let by_uid: HashMap<&str, &Item> = items.iter().map(|i| (i.uid(), i)).collect();
        let mut dependents: HashMap<&str, Vec<&Item>> = HashMap::new();
        for i in &items {
            for r in i.owners() {
                dependents.entry(r.uid.as_str()).or_default().push(i);
            }
        }
        let mut ok = true;
        let unknown_owner_kind = items
            .iter()
            .flat_map(|i| i.owners())
            .any(|r| self.kind_of(r).is_none());
        let mut live_cache: HashMap<String, OwnerState> = HashMap::new();

        // Dependents: delete those whose owners are all gone or waiting.
        for i in items.iter().filter(|i| !i.owners().is_empty()) {
            if let Err(e) = self
                .process_dependent(i, &by_uid, &dependents, &mut live_cache)
                .await
            {
                tracing::warn!(kind = %self.kinds[i.kind].ar.kind, name = i.name(), error = %e, "gc: dependent");
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
                tracing::warn!(kind = %self.kinds[i.kind].ar.kind, name = i.name(), error = %e, "gc: owner");
                ok = false;
            }
        }
        Pass {
            ok,
            unknown_owner_kind,
        }
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
        let Some(kind) = self.kind_of(r) else {
            // Unknown kind: cannot verify, so never treat it as gone.
            return Ok(OwnerState::Solid);
        };
        let k = &self.kinds[kind];
        let ns = if k.namespaced {
            dependent.namespace()
        } else {
            None
        };
        if k.namespaced && ns.is_none() {
            // A cluster-scoped dependent cannot have a namespaced owner: invalid, treat as absent.
            return Ok(OwnerState::Dangling);
        }
        let key = format!("{}/{}", r.uid, ns.unwrap_or(""));
        if let Some(s) = live_cache.get(&key) {
            return Ok(*s);
        }
        // The cache may lag behind a just-created owner: ask the API server.
        let api: Api<DynamicObject> = match ns {
            Some(ns) => Api::namespaced_with(self.ctx.client.clone(), ns, &k.ar),
            None => Api::all_with(self.ctx.client.clone(), &k.ar),
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
        tracing::info!(kind = %self.kinds[i.kind].ar.kind, name = i.name(), ?policy, "gc: deleting dependent");
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
        tracing::info!(kind = %self.kinds[owner.kind].ar.kind, name = owner.name(), "gc: dependents gone; removing foregroundDeletion");
        self.remove_finalizer(owner, FOREGROUND).await
    }

    /// Orphan: strip references to the owner from every dependent, then drop the finalizer.
    async fn orphan(&self, owner: &Item, deps: &[&Item]) -> Result<()> {
        let uid = owner.uid().to_string();
        for d in deps {
            self.remove_owner_refs(d, std::slice::from_ref(&uid))
                .await?;
        }
        tracing::info!(kind = %self.kinds[owner.kind].ar.kind, name = owner.name(), "gc: dependents orphaned; removing orphan finalizer");
        self.remove_finalizer(owner, ORPHAN).await
    }

    fn api_for(&self, i: &Item) -> Api<DynamicObject> {
        let ar = &self.kinds[i.kind].ar;
        match i.namespace() {
            Some(ns) if self.kinds[i.kind].namespaced => {
                Api::namespaced_with(self.ctx.client.clone(), ns, ar)
            }
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
        let api = self.api_for(i);
        let result = match api
            .patch(i.name(), &PatchParams::default(), &Patch::Strategic(&patch))
            .await
        {
            // Custom resources have no strategic merge patch (upstream's collector then sends a
            // merge patch with the remaining references, guarded by the resourceVersion).
            Err(kube::Error::Api(s)) if s.code == 415 => {
                let remaining: Vec<&OwnerReference> = i
                    .owners()
                    .iter()
                    .filter(|r| !uids.contains(&r.uid))
                    .collect();
                let patch = serde_json::json!({"metadata": {
                    "ownerReferences": remaining,
                    "resourceVersion": i.obj.metadata.resource_version,
                    "uid": i.uid(),
                }});
                api.patch(i.name(), &PatchParams::default(), &Patch::Merge(&patch))
                    .await
            }
            other => other,
        };
        match result {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
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
