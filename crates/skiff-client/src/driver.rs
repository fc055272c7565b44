//! The controller driver: every controller turns watch events into a stream of objects to
//! reconcile (its triggers) and hands it to [`drive`], which runs kube-runtime's applier over
//! it (a de-duplicating queue, one reconcile per object at a time, requeues after the returned
//! [`Action`]). The trigger helpers here are the generic ones (an object's own changes, its
//! children's owner references, a mapping from another kind); controller-specific triggers
//! (expectations) stay with their controllers.

use std::fmt::{Debug, Display};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{stream, Stream, StreamExt, TryStreamExt};
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{self, applier, Action};
use kube::runtime::reflector::{reflector, store::Writer, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Resource;
use serde::de::DeserializeOwned;

/// A stream of objects to reconcile.
pub type Triggers<K> = Pin<Box<dyn Stream<Item = Result<ObjectRef<K>, watcher::Error>> + Send>>;

/// One reconcile's future.
pub type Reconciled<E> = Pin<Box<dyn Future<Output = Result<Action, E>> + Send>>;

/// Runs `reconcile` for every object `queue` names until the queue's watch streams end;
/// a failed reconcile is requeued after what `error_policy` says.
pub async fn drive<K, C, E>(
    name: &'static str,
    ctx: Arc<C>,
    store: Store<K>,
    queue: impl Stream<Item = Result<ObjectRef<K>, watcher::Error>> + Send + 'static,
    error_policy: impl Fn(Arc<K>, &E, Arc<C>) -> Action + Send + Sync + 'static,
    reconcile: impl FnMut(Arc<K>, Arc<C>) -> Reconciled<E> + Send + 'static,
) where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    C: Send + Sync + 'static,
    E: std::error::Error + Send + Sync + 'static,
{
    // Workqueue metrics (client-go's names): adds and depth from the trigger stream, wait and
    // work time around each reconcile, retries from the error policy.
    let tracker = crate::metrics::QueueTracker::<ObjectRef<K>>::new(name);
    let t = tracker.clone();
    let queue = queue.inspect_ok(move |r| t.add(r.clone()));
    let t = tracker.clone();
    let mut reconcile = reconcile;
    let reconcile = move |obj: Arc<K>, ctx: Arc<C>| -> Reconciled<E> {
        t.started(&ObjectRef::from_obj(obj.as_ref()));
        let since = std::time::Instant::now();
        let fut = reconcile(obj, ctx);
        let t = t.clone();
        Box::pin(async move {
            let r = fut.await;
            t.done(since);
            r
        })
    };
    let error_policy = move |obj: Arc<K>, err: &E, ctx: Arc<C>| {
        tracker.retry();
        error_policy(obj, err, ctx)
    };
    let mut results = applier(
        reconcile,
        error_policy,
        ctx,
        store,
        queue,
        controller::Config::default(),
    )
    .boxed();
    while let Some(r) = results.next().await {
        if let Err(e) = r {
            tracing::debug!(controller = name, error = %e, "reconcile loop");
        }
    }
}

/// The usual error policy: log the failure and requeue the object after `retry`.
pub fn requeue_after<K, C, E>(
    name: &'static str,
    retry: Duration,
) -> impl Fn(Arc<K>, &E, Arc<C>) -> Action + Send + Sync + 'static
where
    K: Resource<DynamicType = ()>,
    E: Display,
{
    move |obj, err, _| {
        tracing::warn!(controller = name, object = %ObjectRef::from_obj(obj.as_ref()), error = %err, "sync failed");
        Action::requeue(retry)
    }
}

/// Every create or update of a `K` (kept in `writer`'s store) queues it.
pub fn self_triggers<K>(writer: Writer<K>, api: Api<K>) -> Triggers<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    reflector(writer, watcher(api, watcher::Config::default()))
        .default_backoff()
        .applied_objects()
        .map_ok(|o| ObjectRef::from_obj(&o))
        .boxed()
}

/// Every change (deletion included) of a `Child` queues each `Owner` in its owner references
/// (a metadata-only watch over all namespaces, like kube-runtime's `Controller::owns`).
pub fn owner_ref_triggers<Owner, Child>(client: kube::Client) -> Triggers<Owner>
where
    Owner: Resource<DynamicType = ()> + 'static,
    Child: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let api = Api::<PartialObjectMeta<Child>>::all(client);
    watcher(api, watcher::Config::default())
        .default_backoff()
        .touched_objects()
        .map_ok(|child: PartialObjectMeta<Child>| {
            let ns = child.metadata.namespace;
            let owners: Vec<ObjectRef<Owner>> = child
                .metadata
                .owner_references
                .into_iter()
                .flatten()
                .filter_map(|o| ObjectRef::from_owner_ref(ns.as_deref(), &o, ()))
                .collect();
            stream::iter(owners.into_iter().map(Ok::<_, watcher::Error>))
        })
        .try_flatten()
        .boxed()
}

/// Every change (deletion included) of an `Other` queues what `mapper` names for it.
pub fn mapped_triggers<K, Other, I>(
    api: Api<Other>,
    mapper: impl Fn(Other) -> I + Send + 'static,
) -> Triggers<K>
where
    K: Resource<DynamicType = ()> + 'static,
    Other: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + 'static,
    I: IntoIterator<Item = ObjectRef<K>>,
{
    watcher(api, watcher::Config::default())
        .default_backoff()
        .touched_objects()
        .map_ok(move |o| {
            let refs: Vec<ObjectRef<K>> = mapper(o).into_iter().collect();
            stream::iter(refs.into_iter().map(Ok::<_, watcher::Error>))
        })
        .try_flatten()
        .boxed()
}
