//! Trigger streams of the controllers that own pods through expectations (Job, DaemonSet):
//! owner events become work items, pod events satisfy expectations and wake the owning
//! controller. `skiff_client::driver::drive` runs the reconciles.

use std::collections::HashSet;
use std::fmt::Debug;
use std::sync::Arc;

use futures::{stream, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::Api;
use kube::runtime::reflector::{reflector, store::Writer, ObjectRef};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::replicaset::expectations::Expectations;
use crate::replicaset::pods::controller_ref;
use skiff_client::driver::Triggers;

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

/// Pod events queue the pod's controller of `kind`/`group`: a pod seen for the first time
/// satisfies one expected creation, a terminating or deleted one an expected deletion.
pub(crate) fn pod_triggers<K>(
    writer: Writer<Pod>,
    api: Api<Pod>,
    expectations: Arc<Expectations>,
    kind: &'static str,
    group: &'static str,
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
                }
            }
            stream::iter(refs.into_iter().map(Ok::<_, watcher::Error>))
        })
        .try_flatten()
        .boxed()
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
