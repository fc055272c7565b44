//! ControllerRevisions of a DaemonSet (upstream `constructHistory` / `cleanupHistory` of
//! `pkg/controller/daemon`): one revision per template, named `<ds>-<hash>` after the pods'
//! `controller-revision-hash`, numbered in the order templates were used, so `kubectl rollout
//! history|undo daemonset/<name>` work. A template used again (an undo) gets the next number.

use std::collections::HashSet;

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::ResourceExt;
use serde_json::{json, Value};

use crate::replicaset::pods::controller_ref;
use crate::Result;
use skiff_semantics::wellknown::labels;

/// What a revision stores: the template, marked to replace the whole template when kubectl
/// applies it as a strategic merge patch (upstream `getPatch`).
pub(crate) fn data(ds: &DaemonSet) -> Value {
    let mut template =
        serde_json::to_value(ds.spec.as_ref().map(|s| &s.template)).unwrap_or(Value::Null);
    if let Some(t) = template.as_object_mut() {
        t.insert("$patch".into(), json!("replace"));
    }
    json!({"spec": {"template": template}})
}

fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

/// Makes sure the revision of the current template (`hash`) exists and is the newest, then
/// deletes the oldest revisions beyond `revisionHistoryLimit` that no pod (`live_hashes`) uses.
pub(crate) async fn sync(
    client: &kube::Client,
    ds: &DaemonSet,
    hash: &str,
    live_hashes: &HashSet<String>,
) -> Result<()> {
    let ns = ds.namespace().unwrap_or_default();
    let api: Api<ControllerRevision> = Api::namespaced(client.clone(), &ns);
    let uid = ds.metadata.uid.clone().unwrap_or_default();
    let mut revs: Vec<ControllerRevision> = api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|r| controller_ref(&r.metadata).is_some_and(|o| o.uid == uid))
        .collect();
    revs.sort_by_key(|r| r.revision);
    let name = format!("{}-{hash}", ds.name_any());
    let max = revs.last().map_or(0, |r| r.revision);
    match revs.iter().find(|r| r.name_any() == name) {
        Some(r) if r.revision == max => {}
        Some(_) => {
            let patch = json!({"revision": max + 1});
            api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
        }
        None => {
            let mut l = ds
                .spec
                .as_ref()
                .and_then(|s| s.template.metadata.as_ref())
                .and_then(|m| m.labels.clone())
                .unwrap_or_default();
            l.insert(labels::CONTROLLER_REVISION_HASH.into(), hash.into());
            let rev = ControllerRevision {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(ns.clone()),
                    labels: Some(l),
                    annotations: ds.metadata.annotations.clone(),
                    owner_references: Some(vec![OwnerReference {
                        api_version: "apps/v1".into(),
                        kind: "DaemonSet".into(),
                        name: ds.name_any(),
                        uid: uid.clone(),
                        controller: Some(true),
                        block_owner_deletion: Some(true),
                    }]),
                    ..Default::default()
                },
                data: Some(RawExtension(data(ds))),
                revision: max + 1,
            };
            match api.create(&PostParams::default(), &rev).await {
                Ok(_) => {}
                // Created by an earlier sync the list did not see yet.
                Err(e) if is_status(&e, 409) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    let limit = ds
        .spec
        .as_ref()
        .and_then(|s| s.revision_history_limit)
        .unwrap_or(10)
        .max(0);
    let live = |r: &ControllerRevision| {
        let n = r.name_any();
        n == name
            || r.labels()
                .get(labels::CONTROLLER_REVISION_HASH)
                .is_some_and(|h| live_hashes.contains(h))
    };
    let old: Vec<&ControllerRevision> = revs.iter().filter(|r| !live(r)).collect();
    let excess = old
        .len()
        .saturating_sub(usize::try_from(limit).unwrap_or(0));
    for r in old.into_iter().take(excess) {
        match api.delete(&r.name_any(), &DeleteParams::default()).await {
            Ok(_) => {}
            Err(e) if is_status(&e, 404) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
