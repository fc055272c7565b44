//! Trigger streams of the controllers that own pods through expectations (Job, DaemonSet):
//! owner events become work items, pod events satisfy expectations and wake the owning
//! controller. `skiff_client::driver::drive` runs the reconciles. Also upstream's
//! `ControllerRefManager.ClaimPods` ([`claim_pods`]), shared by the ReplicaSet and Job controllers.

use std::collections::HashSet;
use std::fmt::Debug;
use std::sync::Arc;

use futures::{stream, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::{reflector, store::Writer, ObjectRef};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::replicaset::expectations::Expectations;
use crate::replicaset::pods::controller_ref;
use crate::{Error, Result};
use skiff_client::driver::Triggers;
use skiff_semantics::labels::Selector;

/// The (name, uid) of the `kind` in API group `group` (e.g. "batch") controlling `meta`.
pub(crate) fn owner(meta: &ObjectMeta, kind: &str, group: &str) -> Option<(String, String)> {
    controller_ref(meta)
        .filter(|r| r.kind == kind && r.api_version.split('/').next() == Some(group))
        .map(|r| (r.name.clone(), r.uid.clone()))
}

/// `ns/name` of a pod (the expectations' deletion key).
pub(crate) fn pod_key(p: &Pod) -> String {
    format!("{}/{}", p.namespace().unwrap_or_default(), p.name_any())
}

/// Every change of an owner object queues it; a deleted owner's expectations are dropped.
pub(crate) fn owner_triggers<K>(
    writer: Writer<K>,
    api: Api<K>,
    expectations: Arc<Expectations>,
) -> Triggers<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    reflector(writer, watcher(api, watcher::Config::default()))
        .default_backoff()
        .map_ok(move |ev| {
            let refs: Vec<ObjectRef<K>> = match ev {
                watcher::Event::Apply(o) | watcher::Event::InitApply(o) => {
                    vec![ObjectRef::from_obj(&o)]
                }
                watcher::Event::Delete(o) => {
                    if let Some(uid) = o.meta().uid.as_deref() {
                        expectations.forget(uid);
                    }
                    vec![]
                }
                _ => vec![],
            };
            stream::iter(refs.into_iter().map(Ok::<_, watcher::Error>))
        })
        .try_flatten()
        .boxed()
}

/// Which owners might adopt an orphan pod (queued when one appears or changes).
pub(crate) type OrphanMatcher<K> = Arc<dyn Fn(&Pod) -> Vec<ObjectRef<K>> + Send + Sync>;

/// Pod events queue the pod's controller of `kind`/`group`: a pod seen for the first time
/// satisfies one expected creation, a terminating or deleted one an expected deletion. A live
/// pod with no controller queues what `orphans` says might adopt it.
pub(crate) fn pod_triggers<K>(
    writer: Writer<Pod>,
    api: Api<Pod>,
    expectations: Arc<Expectations>,
    kind: &'static str,
    group: &'static str,
    orphans: Option<OrphanMatcher<K>>,
) -> Triggers<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let mut seen = HashSet::<String>::new();
    reflector(writer, watcher(api, watcher::Config::default()))
        .default_backoff()
        .map_ok(move |ev| {
            let (pod, deleted) = match ev {
                watcher::Event::Apply(p) | watcher::Event::InitApply(p) => (Some(p), false),
                watcher::Event::Delete(p) => (Some(p), true),
                _ => (None, false),
            };
            let mut refs: Vec<ObjectRef<K>> = Vec::new();
            if let Some(p) = pod {
                let uid = p.metadata.uid.clone().unwrap_or_default();
                let new = if deleted {
                    seen.remove(&uid);
                    false
                } else {
                    seen.insert(uid)
                };
                if let Some((name, owner_uid)) = owner(&p.metadata, kind, group) {
                    if new {
                        expectations.creation_observed(&owner_uid);
                    }
                    if deleted || p.metadata.deletion_timestamp.is_some() {
                        expectations.deletion_observed(&owner_uid, &pod_key(&p));
                    }
                    refs.push(ObjectRef::new(&name).within(&p.namespace().unwrap_or_default()));
                } else if let Some(m) = orphans.as_ref().filter(|_| {
                    !deleted
                        && p.metadata.deletion_timestamp.is_none()
                        && controller_ref(&p.metadata).is_none()
                }) {
                    refs.extend(m(&p));
                }
            }
            stream::iter(refs.into_iter().map(Ok::<_, watcher::Error>))
        })
        .try_flatten()
        .boxed()
}

/// Adopts matching orphans and releases owned pods that stopped matching (upstream
/// `ControllerRefManager.ClaimPods`); returns the pods `controller` owns afterwards.
/// `recheck` (an uncached read: the owner still exists with the same uid and is not being
/// deleted) is awaited once, before the first adoption only.
pub(crate) async fn claim_pods(
    client: &kube::Client,
    namespace: &str,
    controller: OwnerReference,
    owner_deleting: bool,
    selector: &Selector,
    pods: Vec<Arc<Pod>>,
    recheck: impl std::future::Future<Output = std::result::Result<(), String>>,
) -> Result<Vec<Arc<Pod>>> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let owner_uid = controller.uid.clone();
    let mut recheck = std::pin::pin!(recheck);
    let mut can_adopt: Option<std::result::Result<(), String>> = None;
    let mut claimed = Vec::new();
    let mut errors = Vec::new();
    let patch_pod = |pod: &Pod, refs: serde_json::Value| {
        let patch = serde_json::json!({"metadata": {
            "ownerReferences": refs,
            "uid": pod.metadata.uid,
        }});
        let api = api.clone();
        let name = pod.name_any();
        async move {
            api.patch(&name, &PatchParams::default(), &Patch::Strategic(&patch))
                .await
        }
    };
    for pod in pods {
        let matches = selector.matches(&pod.metadata.labels.as_ref());
        match controller_ref(&pod.metadata) {
            Some(r) if r.uid == owner_uid => {
                if matches {
                    claimed.push(pod);
                } else if !owner_deleting {
                    let refs = serde_json::json!([{"$patch": "delete", "uid": owner_uid}]);
                    if let Err(e) = patch_pod(&pod, refs).await {
                        if !is_not_found(&e) {
                            errors.push(e.to_string());
                        }
                    }
                }
            }
            Some(_) => {}
            None => {
                if owner_deleting || !matches || pod.metadata.deletion_timestamp.is_some() {
                    continue;
                }
                if can_adopt.is_none() {
                    can_adopt = Some(recheck.as_mut().await);
                }
                if let Some(Err(e)) = &can_adopt {
                    errors.push(e.clone());
                    break;
                }
                match patch_pod(&pod, serde_json::json!([controller.clone()])).await {
                    Ok(p) => claimed.push(Arc::new(p)),
                    Err(e) if is_not_found(&e) => {}
                    Err(e) => errors.push(e.to_string()),
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(claimed)
    } else {
        Err(Error::Other(format!(
            "claiming pods: {}",
            errors.join("; ")
        )))
    }
}

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn owner_matches_kind_and_group() {
        let meta: ObjectMeta = serde_json::from_value(json!({"ownerReferences": [
            {"apiVersion": "batch/v1", "kind": "Job", "name": "j", "uid": "u", "controller": true}
        ]}))
        .expect("meta");
        assert_eq!(owner(&meta, "Job", "batch"), Some(("j".into(), "u".into())));
        assert_eq!(owner(&meta, "Job", "apps"), None);
        assert_eq!(owner(&meta, "DaemonSet", "batch"), None);
    }
}
