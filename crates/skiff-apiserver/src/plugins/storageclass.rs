//! Storage admission and bootstrap:
//!
//! * `DefaultStorageClass` (upstream's plugin): a claim created without `storageClassName` gets
//!   the class annotated `storageclass.kubernetes.io/is-default-class: "true"` (the newest one
//!   if several are, as upstream since 1.26); an explicit `""` means "no class" and is kept.
//! * `PersistentVolumeClaimResize` (upstream's plugin): a claim's storage request may grow only
//!   if its class has `allowVolumeExpansion: true`.
//! * [`ensure_default_class`]: at startup the server creates the `local-path` class
//!   (skiff's embedded provisioner, WaitForFirstConsumer, Delete, expandable, default) if absent.

use async_trait::async_trait;
use serde_json::{json, Value};
use skiff_api::ApiError;
use skiff_store::StoreError;

use super::{Operation, Plugin, Request};
use crate::keys::{decode, encode, object_key};
use crate::respond::{now_rfc3339, ApiResult};
use crate::AppState;

pub(crate) const DEFAULT_CLASS: &str = "local-path";
pub(crate) const PROVISIONER: &str = "skiff.dev/local-path";
const DEFAULT_ANN: &str = "storageclass.kubernetes.io/is-default-class";
const BETA_DEFAULT_ANN: &str = "storageclass.beta.kubernetes.io/is-default-class";

fn classes_info() -> Option<&'static skiff_api::ResourceInfo> {
    skiff_api::resources::by_plural("storage.k8s.io", "v1", "storageclasses")
}

/// Creates the default `local-path` StorageClass when it does not exist.
pub(crate) async fn ensure_default_class(st: &AppState) -> Result<(), StoreError> {
    let Some(info) = classes_info() else {
        return Ok(());
    };
    let key = object_key(info, None, DEFAULT_CLASS);
    if st.store.get(&key).await?.is_some() {
        return Ok(());
    }
    let mut sc = json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": DEFAULT_CLASS, "uid": uuid::Uuid::new_v4().to_string(),
            "creationTimestamp": now_rfc3339(),
            "annotations": {DEFAULT_ANN: "true"}},
        "provisioner": PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "WaitForFirstConsumer",
        "allowVolumeExpansion": true,
    });
    skiff_api::defaults::apply_defaults(info, &mut sc);
    match st.store.create(&key, encode(&sc)).await {
        Ok(_) | Err(StoreError::AlreadyExists(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

async fn classes(st: &AppState) -> ApiResult<Vec<Value>> {
    let Some(info) = classes_info() else {
        return Ok(Vec::new());
    };
    let prefix = crate::keys::collection_prefix(info, None);
    let list = st
        .store
        .list(&prefix, &Default::default())
        .await
        .map_err(|e| ApiError::internal(format!("listing storage classes: {e}")))?;
    Ok(list.items.iter().filter_map(|kv| decode(kv).ok()).collect())
}

fn is_default(sc: &Value) -> bool {
    let a = sc.pointer("/metadata/annotations");
    [DEFAULT_ANN, BETA_DEFAULT_ANN]
        .iter()
        .any(|k| a.and_then(|a| a.get(*k)).and_then(Value::as_str) == Some("true"))
}

fn is_claim(req: &Request<'_>) -> bool {
    let info = req.ctx.info;
    info.group.is_empty() && info.plural == "persistentvolumeclaims" && req.subresource.is_empty()
}

pub(crate) struct DefaultStorageClass;

#[async_trait]
impl Plugin for DefaultStorageClass {
    fn name(&self) -> &'static str {
        "DefaultStorageClass"
    }

    fn handles(&self, req: &Request<'_>) -> bool {
        req.op == Operation::Create && is_claim(req)
    }

    async fn mutate(&self, req: &Request<'_>, obj: Option<&mut Value>) -> ApiResult<()> {
        let Some(obj) = obj else {
            return Ok(());
        };
        let has_class = obj
            .pointer("/spec/storageClassName")
            .is_some_and(|v| !v.is_null())
            || obj
                .pointer("/metadata/annotations/volume.beta.kubernetes.io~1storage-class")
                .is_some();
        if has_class {
            return Ok(());
        }
        let classes = classes(&req.ctx.st).await?;
        if let Some(name) = super::newest_default(&classes, is_default) {
            if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
                spec.insert("storageClassName".into(), Value::String(name));
            }
        }
        Ok(())
    }
}

pub(crate) struct ClaimResize;

#[async_trait]
impl Plugin for ClaimResize {
    fn name(&self) -> &'static str {
        "PersistentVolumeClaimResize"
    }

    fn handles(&self, req: &Request<'_>) -> bool {
        req.op == Operation::Update && is_claim(req)
    }

    async fn validate(&self, req: &Request<'_>, obj: Option<&Value>) -> ApiResult<Vec<String>> {
        let (Some(new), Some(old)) = (obj, req.old) else {
            return Ok(Vec::new());
        };
        let size = |v: &Value| {
            v.pointer("/spec/resources/requests/storage")
                .and_then(Value::as_str)
                .and_then(|s| skiff_semantics::quantity::Quantity::parse(s).ok())
        };
        let (Some(n), Some(o)) = (size(new), size(old)) else {
            return Ok(Vec::new());
        };
        if n <= o {
            return Ok(Vec::new());
        }
        let class = new
            .pointer("/spec/storageClassName")
            .and_then(Value::as_str)
            .unwrap_or("");
        let allowed = !class.is_empty()
            && classes(&req.ctx.st).await?.iter().any(|c| {
                c.pointer("/metadata/name").and_then(Value::as_str) == Some(class)
                    && c.get("allowVolumeExpansion").and_then(Value::as_bool) == Some(true)
            });
        if allowed {
            return Ok(Vec::new());
        }
        let mut e = ApiError::forbidden(format!(
            "persistentvolumeclaims \"{}\" is forbidden: only dynamically provisioned pvc can be resized and the storageclass that provisions the pvc must support resize",
            req.name
        ));
        e.details = Some(json!({"name": req.name, "kind": "persistentvolumeclaims"}));
        Err(e)
    }
}
