//! The node's local storage: provisioned volumes (skiff's embedded `skiff.dev/local-path`
//! provisioner) are directories directly beneath the storage root (`--storage-root`, default
//! `<data-dir>/storage`), which the agent publishes on its Node as the `skiff.dev/storage-root`
//! annotation for the provisioner to read. Pods mount them through `persistentVolumeClaim`
//! volumes (see `pods/build.rs`). This loop deletes them: a provisioned volume pinned to this
//! node that is being deleted keeps the `skiff.dev/local-path-cleanup` finalizer until the agent
//! removed its directory (only with reclaim policy Delete, only directly beneath the storage
//! root, never following a symlink), then the agent drops the finalizer.

use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::PersistentVolume;
use kube::api::{Api, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Client;

use crate::pods::remove_provisioned_dir;
use crate::AgentConfig;

pub const STORAGE_ROOT_ANNOTATION: &str = "skiff.dev/storage-root";
pub const CLEANUP_FINALIZER: &str = "skiff.dev/local-path-cleanup";
const PROVISIONER: &str = "skiff.dev/local-path";

/// Whether the volume's node affinity pins it to `node` (by `kubernetes.io/hostname`).
fn pinned_to(pv: &PersistentVolume, node: &str) -> bool {
    pv.spec
        .as_ref()
        .and_then(|s| s.node_affinity.as_ref())
        .and_then(|a| a.required.as_ref())
        .is_some_and(|r| {
            r.node_selector_terms.iter().any(|t| {
                t.match_expressions.iter().flatten().any(|x| {
                    x.key == "kubernetes.io/hostname"
                        && x.operator == "In"
                        && x.values.iter().flatten().any(|v| v == node)
                })
            })
        })
}

/// Whether this agent must clean the volume up now.
pub fn due(pv: &PersistentVolume, node: &str) -> bool {
    pv.metadata.deletion_timestamp.is_some()
        && pv
            .metadata
            .finalizers
            .iter()
            .flatten()
            .any(|f| f == CLEANUP_FINALIZER)
        && pinned_to(pv, node)
}

/// Removes the volume's directory when its policy is Delete and it lies directly beneath
/// `root`; anything else is left on disk (logged).
pub fn clean(pv: &PersistentVolume, root: &Path) -> Result<(), String> {
    let spec = pv.spec.as_ref();
    let name = pv.metadata.name.as_deref().unwrap_or("");
    let provisioned = pv
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("pv.kubernetes.io/provisioned-by"))
        .map(String::as_str)
        == Some(PROVISIONER);
    let delete = spec.and_then(|s| s.persistent_volume_reclaim_policy.as_deref()) == Some("Delete");
    if !provisioned || !delete {
        return Ok(());
    }
    let Some(path) = spec
        .and_then(|s| s.host_path.as_ref().map(|h| h.path.clone()))
        .or_else(|| spec.and_then(|s| s.local.as_ref()).map(|l| l.path.clone()))
    else {
        return Ok(());
    };
    let path = Path::new(&path);
    match path.file_name().and_then(|n| n.to_str()) {
        Some(entry) if path.parent() == Some(root) => remove_provisioned_dir(root, entry),
        _ => {
            tracing::warn!(volume = name, path = %path.display(), "not beneath the storage root; left on disk");
            Ok(())
        }
    }
}

async fn finish(api: &Api<PersistentVolume>, pv: &PersistentVolume) -> Result<(), kube::Error> {
    let mut pv = pv.clone();
    if let Some(f) = pv.metadata.finalizers.as_mut() {
        f.retain(|x| x != CLEANUP_FINALIZER);
    }
    let name = pv.metadata.name.clone().unwrap_or_default();
    // resourceVersion kept: a concurrent change is a 409 and the next event retries.
    api.replace(&name, &PostParams::default(), &pv).await?;
    Ok(())
}

/// Watches volumes until `stop` and cleans up those due on this node.
pub async fn run(
    client: Client,
    config: AgentConfig,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let root = config.storage_root();
    let node = config.node_name.clone();
    let api: Api<PersistentVolume> = Api::all(client);
    let mut stream = watcher(api.clone(), watcher::Config::default())
        .default_backoff()
        .touched_objects()
        .boxed();
    loop {
        let next = tokio::select! {
            n = stream.next() => n,
            _ = stop.changed() => return,
        };
        let pv = match next {
            Some(Ok(pv)) => pv,
            Some(Err(e)) => {
                tracing::debug!("volume watch: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            None => return,
        };
        if !due(&pv, &node) {
            continue;
        }
        let name = pv.metadata.name.clone().unwrap_or_default();
        match clean(&pv, &root) {
            Ok(()) => {
                if let Err(e) = finish(&api, &pv).await {
                    tracing::warn!(volume = %name, "dropping the cleanup finalizer: {e}");
                }
            }
            Err(e) => tracing::warn!(volume = %name, "removing the volume directory: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pv(path: &str, policy: &str) -> PersistentVolume {
        serde_json::from_value(json!({
            "metadata": {"name": "pvc-1", "deletionTimestamp": "2026-01-01T00:00:00Z",
                "finalizers": [CLEANUP_FINALIZER],
                "annotations": {"pv.kubernetes.io/provisioned-by": PROVISIONER}},
            "spec": {"persistentVolumeReclaimPolicy": policy, "hostPath": {"path": path},
                "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "kubernetes.io/hostname", "operator": "In", "values": ["n1"]}]}]}}}}))
        .unwrap()
    }

    #[test]
    fn a_planted_symlink_does_not_redirect_the_deletion() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("storage");
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("precious"), b"keep").unwrap();
        let dir = root.join("pvc-1_default_data");
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("sub/file"), b"x").unwrap();
        // What a container could plant inside its volume.
        std::os::unix::fs::symlink(&outside, dir.join("escape")).unwrap();
        std::os::unix::fs::symlink(&outside, dir.join("sub/escape2")).unwrap();
        let vol = pv(dir.to_str().unwrap(), "Delete");
        assert!(due(&vol, "n1"));
        assert!(!due(&vol, "n2"));
        clean(&vol, &root).unwrap();
        assert!(!dir.exists());
        assert_eq!(std::fs::read(outside.join("precious")).unwrap(), b"keep");
        // The volume directory itself replaced by a symlink: only the link goes.
        std::os::unix::fs::symlink(&outside, &dir).unwrap();
        clean(&vol, &root).unwrap();
        assert!(std::fs::symlink_metadata(&dir).is_err());
        assert!(outside.join("precious").exists());
    }

    #[test]
    fn retain_and_paths_outside_the_root_are_left_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("storage");
        let dir = root.join("pvc-1_default_data");
        std::fs::create_dir_all(&dir).unwrap();
        clean(&pv(dir.to_str().unwrap(), "Retain"), &root).unwrap();
        assert!(dir.exists());
        let elsewhere = tmp.path().join("elsewhere");
        std::fs::create_dir_all(&elsewhere).unwrap();
        clean(&pv(elsewhere.to_str().unwrap(), "Delete"), &root).unwrap();
        assert!(elsewhere.exists());
        // `..` tricks do not pass the "directly beneath" check.
        let sneaky = format!("{}/../elsewhere", root.display());
        clean(&pv(&sneaky, "Delete"), &root).unwrap();
        assert!(elsewhere.exists());
    }
}
