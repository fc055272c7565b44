//! The ServiceAccount admission plugin (upstream's `ServiceAccount`), on pod creation:
//! defaults `spec.serviceAccountName` to `default`, rejects a pod whose ServiceAccount does not
//! exist (waiting up to ~2 s for `default`, which its controller creates with the namespace),
//! copies the ServiceAccount's imagePullSecrets to a pod that has none, and — unless
//! `automountServiceAccountToken: false` on the pod (which wins) or the ServiceAccount — adds
//! the `kube-api-access-<5 random>` projected volume (a bound token, the cluster CA from the
//! `kube-root-ca.crt` ConfigMap, the namespace) mounted read-only at
//! `/var/run/secrets/kubernetes.io/serviceaccount` in every init and app container that does
//! not already mount something there. Mirror pods are left alone and may not reference
//! ServiceAccounts, Secrets or token projections.

use std::time::Duration;

use async_trait::async_trait;
use rand::Rng;
use serde_json::{json, Value};
use skiff_api::ApiError;

use super::{Operation, Plugin, Request};
use crate::respond::ApiResult;
use crate::serviceaccount::{get_core, WARN_ONLY_EXPIRATION};

pub(crate) const DEFAULT_SERVICE_ACCOUNT: &str = "default";
pub(crate) const TOKEN_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
const VOLUME_PREFIX: &str = "kube-api-access-";
const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";
/// Upstream's SimpleNameGenerator alphabet (no vowels, no confusable digits).
const NAME_CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

pub(crate) struct ServiceAccount;

fn forbidden(req: &Request<'_>, why: &str) -> ApiError {
    let mut e = if req.name.is_empty() {
        ApiError::forbidden(format!("pods is forbidden: {why}"))
    } else {
        ApiError::forbidden(format!("pods \"{}\" is forbidden: {why}", req.name))
    };
    let mut d = json!({"kind": "pods"});
    if !req.name.is_empty() {
        d["name"] = json!(req.name);
    }
    e.details = Some(d);
    e
}

fn is_mirror(pod: &Value) -> bool {
    pod.pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .is_some_and(|a| a.contains_key(MIRROR_ANNOTATION))
}

fn sa_name(pod: &Value) -> &str {
    pod.pointer("/spec/serviceAccountName")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// The ServiceAccount, retrying `default` for up to ~2 s (its controller may be a moment behind
/// a new namespace). Err is the Forbidden upstream returns.
async fn lookup(req: &Request<'_>, name: &str) -> ApiResult<Value> {
    let ns = req.ctx.ns.as_deref().unwrap_or("");
    let attempts = if name == DEFAULT_SERVICE_ACCOUNT {
        10
    } else {
        1
    };
    let pause = Duration::from_millis(rand::thread_rng().gen_range(100..200));
    for i in 0..attempts {
        if i > 0 {
            tokio::time::sleep(pause).await;
        }
        match get_core(&req.ctx.st, "serviceaccounts", Some(ns), name).await {
            Ok(Some(sa)) => return Ok(sa),
            Ok(None) => {}
            Err(e) => {
                return Err(forbidden(
                    req,
                    &format!(
                        "error looking up service account {ns}/{name}: {}",
                        e.message
                    ),
                ))
            }
        }
    }
    Err(forbidden(
        req,
        &format!(
            "error looking up service account {ns}/{name}: serviceaccount \"{name}\" not found"
        ),
    ))
}

/// The pod's preference wins, then the ServiceAccount's; default true.
fn should_automount(sa: &Value, pod: &Value) -> bool {
    if let Some(b) = pod
        .pointer("/spec/automountServiceAccountToken")
        .and_then(Value::as_bool)
    {
        return b;
    }
    sa.get("automountServiceAccountToken")
        .and_then(Value::as_bool)
        .unwrap_or(true)
}

fn generate_suffix() -> String {
    let mut rng = rand::thread_rng();
    (0..5)
        .map(|_| NAME_CHARS[rng.gen_range(0..NAME_CHARS.len())] as char)
        .collect()
}

/// Upstream's `TokenVolumeSource`.
pub(crate) fn token_volume_source() -> Value {
    json!({
        "defaultMode": 420,
        "sources": [
            {"serviceAccountToken": {"expirationSeconds": WARN_ONLY_EXPIRATION, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace",
                "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
        ],
    })
}

fn mount_token(pod: &mut Value) {
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let existing = spec
        .get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v.get("name").and_then(Value::as_str))
        .find(|n| n.starts_with(VOLUME_PREFIX))
        .map(str::to_string);
    let has_volume = existing.is_some();
    let volume = existing.unwrap_or_else(|| format!("{VOLUME_PREFIX}{}", generate_suffix()));
    let mount = json!({"name": volume, "readOnly": true, "mountPath": TOKEN_MOUNT_PATH});
    let mut needs_volume = false;
    for list in ["initContainers", "containers"] {
        let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) else {
            continue;
        };
        for c in containers.iter_mut().filter_map(Value::as_object_mut) {
            let mounts = c.entry("volumeMounts").or_insert_with(|| json!([]));
            if !mounts.is_array() {
                *mounts = json!([]);
            }
            let Some(mounts) = mounts.as_array_mut() else {
                continue;
            };
            // Something already mounted at the path keeps it (and no token there).
            if mounts
                .iter()
                .any(|m| m.get("mountPath").and_then(Value::as_str) == Some(TOKEN_MOUNT_PATH))
            {
                continue;
            }
            mounts.push(mount.clone());
            needs_volume = true;
        }
    }
    if needs_volume && !has_volume {
        let volumes = spec.entry("volumes").or_insert_with(|| json!([]));
        if !volumes.is_array() {
            *volumes = json!([]);
        }
        if let Some(v) = volumes.as_array_mut() {
            v.push(json!({"name": volume, "projected": token_volume_source()}));
        }
    }
}

/// Whether the pod names any Secret (volumes, env, envFrom, imagePullSecrets).
fn references_secrets(pod: &Value) -> bool {
    let spec = pod.get("spec").cloned().unwrap_or(Value::Null);
    let arr = |v: &Value, f: &str| {
        v.get(f)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    if !arr(&spec, "imagePullSecrets").is_empty() {
        return true;
    }
    for v in arr(&spec, "volumes") {
        if v.get("secret").is_some() {
            return true;
        }
        for s in v
            .pointer("/projected/sources")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if s.get("secret").is_some() {
                return true;
            }
        }
    }
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        for c in arr(&spec, list) {
            if arr(&c, "envFrom")
                .iter()
                .any(|e| e.get("secretRef").is_some())
                || arr(&c, "env")
                    .iter()
                    .any(|e| e.pointer("/valueFrom/secretKeyRef").is_some())
            {
                return true;
            }
        }
    }
    false
}

fn uses_token_projection(pod: &Value) -> bool {
    pod.pointer("/spec/volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v.pointer("/projected/sources").and_then(Value::as_array))
        .flatten()
        .any(|s| s.get("serviceAccountToken").is_some())
}

/// Mirror pods may not name a ServiceAccount, reference Secrets or project tokens.
fn check_mirror(req: &Request<'_>, pod: &Value) -> ApiResult<()> {
    if !sa_name(pod).is_empty() {
        return Err(forbidden(
            req,
            "a mirror pod may not reference service accounts",
        ));
    }
    if references_secrets(pod) {
        return Err(forbidden(req, "a mirror pod may not reference secrets"));
    }
    if uses_token_projection(pod) {
        return Err(forbidden(
            req,
            "a mirror pod may not use ServiceAccountToken volume projections",
        ));
    }
    Ok(())
}

#[async_trait]
impl Plugin for ServiceAccount {
    fn name(&self) -> &'static str {
        "ServiceAccount"
    }

    fn handles(&self, req: &Request<'_>) -> bool {
        req.op == Operation::Create
            && req.subresource.is_empty()
            && req.ctx.info.group.is_empty()
            && req.ctx.info.plural == "pods"
    }

    async fn mutate(&self, req: &Request<'_>, obj: Option<&mut Value>) -> ApiResult<()> {
        let Some(pod) = obj else {
            return Ok(());
        };
        if is_mirror(pod) {
            // Upstream's Admit validates mirror pods right away (so before NodeRestriction).
            return check_mirror(req, pod);
        }
        if sa_name(pod).is_empty() {
            if !pod.get("spec").is_some_and(Value::is_object) {
                return Ok(());
            }
            pod["spec"]["serviceAccountName"] = json!(DEFAULT_SERVICE_ACCOUNT);
        }
        let name = sa_name(pod).to_string();
        // The v1 object carries the deprecated alias too.
        pod["spec"]["serviceAccount"] = json!(name);
        let sa = lookup(req, &name).await?;
        if should_automount(&sa, pod) {
            mount_token(pod);
        }
        let no_pull_secrets = pod
            .pointer("/spec/imagePullSecrets")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty);
        if no_pull_secrets {
            if let Some(s) = sa
                .get("imagePullSecrets")
                .and_then(Value::as_array)
                .filter(|a| !a.is_empty())
            {
                pod["spec"]["imagePullSecrets"] = Value::Array(s.clone());
            }
        }
        Ok(())
    }

    async fn validate(&self, req: &Request<'_>, obj: Option<&Value>) -> ApiResult<Vec<String>> {
        let Some(pod) = obj else {
            return Ok(Vec::new());
        };
        if is_mirror(pod) {
            return check_mirror(req, pod).map(|()| Vec::new());
        }
        let name = sa_name(pod);
        if name.is_empty() {
            let ns = req.ctx.ns.as_deref().unwrap_or("");
            return Err(forbidden(
                req,
                &format!("no service account specified for pod {ns}/{}", req.name),
            ));
        }
        lookup(req, name).await?;
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_volume_is_added_once_and_existing_mounts_win() {
        let mut pod = json!({"spec": {
            "initContainers": [{"name": "i"}],
            "containers": [{"name": "a"}, {"name": "b", "volumeMounts": [
                {"name": "mine", "mountPath": TOKEN_MOUNT_PATH}]}],
            "volumes": [{"name": "mine", "emptyDir": {}}]}});
        mount_token(&mut pod);
        let vols = pod["spec"]["volumes"].as_array().unwrap();
        assert_eq!(vols.len(), 2);
        let vol = vols[1]["name"].as_str().unwrap();
        assert!(vol.starts_with(VOLUME_PREFIX) && vol.len() == VOLUME_PREFIX.len() + 5);
        assert!(vol[VOLUME_PREFIX.len()..]
            .bytes()
            .all(|c| NAME_CHARS.contains(&c)));
        assert_eq!(vols[1]["projected"], token_volume_source());
        let want = json!({"name": vol, "readOnly": true, "mountPath": TOKEN_MOUNT_PATH});
        assert_eq!(
            pod["spec"]["initContainers"][0]["volumeMounts"],
            json!([want])
        );
        assert_eq!(pod["spec"]["containers"][0]["volumeMounts"], json!([want]));
        assert_eq!(
            pod["spec"]["containers"][1]["volumeMounts"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        // Admitting again (e.g. a retried create) reuses the volume.
        let before = pod.clone();
        mount_token(&mut pod);
        assert_eq!(pod, before);
    }

    #[test]
    fn automount_preference_pod_then_sa() {
        let sa_off = json!({"automountServiceAccountToken": false});
        let pod_on = json!({"spec": {"automountServiceAccountToken": true}});
        let pod = json!({"spec": {}});
        assert!(should_automount(&json!({}), &pod));
        assert!(!should_automount(&sa_off, &pod));
        assert!(should_automount(&sa_off, &pod_on));
        assert!(!should_automount(
            &json!({}),
            &json!({"spec": {"automountServiceAccountToken": false}})
        ));
    }

    #[test]
    fn mirror_pod_secret_references_are_found() {
        assert!(!references_secrets(
            &json!({"spec": {"containers": [{"name": "a"}]}})
        ));
        assert!(references_secrets(
            &json!({"spec": {"containers": [{"name": "a",
            "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]}]}})
        ));
        assert!(references_secrets(
            &json!({"spec": {"volumes": [{"name": "v", "secret": {"secretName": "s"}}]}})
        ));
        assert!(uses_token_projection(&json!({"spec": {"volumes": [
            {"name": "v", "projected": token_volume_source()}]}})));
    }
}
