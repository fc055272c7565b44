//! Namespace lifecycle: the built-in namespaces at first start, the check that refuses new
//! content in a missing or terminating namespace, and the in-process namespace finalizer that
//! empties a terminating namespace and then removes it (started by the Namespace hooks in
//! `hooks/namespaces.rs`).

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use skiff_api::ApiError;

use crate::ctx::{Ctx, DeleteOpts};
use crate::keys::{collection_prefix, decode, encode, object_key};
use crate::objects::meta;
use crate::query::Query;
use crate::respond::{store_err, ApiResult};
use crate::storage::delete_object;
use crate::{AppState, ServerError};

const BUILTIN: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

fn ns_key(name: &str) -> String {
    format!("/registry/core/namespaces/{name}")
}

/// Creates the built-in namespaces if missing and resumes finalizers of terminating ones.
pub(crate) async fn bootstrap(st: &Arc<AppState>) -> Result<(), ServerError> {
    for name in BUILTIN {
        if st.store.get(&ns_key(name)).await?.is_some() {
            continue;
        }
        let obj = json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "uid": uuid::Uuid::new_v4().to_string(),
                "creationTimestamp": crate::respond::now_rfc3339(),
                "labels": {skiff_semantics::wellknown::labels::METADATA_NAME: name}},
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"},
        });
        match st.store.create(&ns_key(name), encode(&obj)).await {
            Ok(_) | Err(skiff_store::StoreError::AlreadyExists(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let list = st
        .store
        .list("/registry/core/namespaces/", &Default::default())
        .await?;
    for kv in list.items {
        if let Ok(obj) = decode(&kv) {
            if meta(&obj).get("deletionTimestamp").is_some() {
                if let Some(name) = meta(&obj).get("name").and_then(Value::as_str) {
                    start_finalizer(st.clone(), name.to_string());
                }
            }
        }
    }
    Ok(())
}

/// Starts the finalizer for `name` unless one is already running.
pub(crate) fn start_finalizer(st: Arc<AppState>, name: String) {
    {
        let Ok(mut running) = st.finalizing.lock() else {
            return;
        };
        if !running.insert(name.clone()) {
            return;
        }
    }
    tokio::spawn(async move {
        let mut shutdown = st.shutdown.clone();
        loop {
            match finalize_once(&st, &name).await {
                Ok(true) => break,
                Ok(false) => {}
                Err(err) => tracing::warn!(namespace = %name, %err, "namespace finalizer"),
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = shutdown.changed() => break,
            }
        }
        if let Ok(mut running) = st.finalizing.lock() {
            running.remove(&name);
        }
    });
}

/// Checks the namespace of a new object exists and is not terminating.
pub(crate) async fn check_namespace(ctx: &Ctx, ns: &str) -> ApiResult<()> {
    let Some(ns_info) = skiff_api::resources::by_plural("", "v1", "namespaces") else {
        return Ok(());
    };
    let key = object_key(ns_info, None, ns);
    match ctx.st.store.get(&key).await {
        Ok(Some(kv)) => {
            let obj = decode(&kv)?;
            if meta(&obj).get("deletionTimestamp").is_some() {
                let mut e = ApiError::forbidden(format!(
                    "unable to create new content in namespace {ns} because it is being terminated"
                ));
                e.details = Some(json!({"name": ns, "kind": "namespaces", "causes": [{
                    "reason": "NamespaceTerminating",
                    "message": format!("namespace {ns} is being terminated"),
                    "field": "metadata.namespace"}]}));
                return Err(e);
            }
            Ok(())
        }
        Ok(None) => Err(ApiError::not_found("", "namespaces", ns)),
        Err(e) => Err(store_err(ns_info, ns, e)),
    }
}

/// One pass: delete what is left; remove the namespace once empty. Ok(true) = done.
async fn finalize_once(st: &Arc<AppState>, name: &str) -> Result<bool, String> {
    let Some(kv) = st
        .store
        .get(&ns_key(name))
        .await
        .map_err(|e| e.to_string())?
    else {
        return Ok(true);
    };
    let mut remaining = 0usize;
    // Built-in kinds, then the namespaced custom kinds (each CRD's storage version).
    let custom = st.crds.ready(st).await.storage_kinds();
    let builtin = skiff_api::resources::all()
        .iter()
        .filter(|r| r.namespaced && !skiff_api::kinds::is_alt_version(r))
        .map(|info| (info, None));
    let custom = custom
        .into_iter()
        .filter(|k| k.info.namespaced)
        .map(|k| (k.info, Some(k)));
    for (info, custom) in builtin.chain(custom) {
        let prefix = collection_prefix(info, Some(name));
        let list = st
            .store
            .list(&prefix, &Default::default())
            .await
            .map_err(|e| e.to_string())?;
        if list.items.is_empty() {
            continue;
        }
        remaining += list.items.len();
        let ctx = Ctx {
            st: st.clone(),
            info,
            ns: Some(name.to_string()),
            query: Query::default(),
            headers: Default::default(),
            user: Arc::new(crate::auth::UserInfo::apiserver()),
            custom,
        };
        let opts = DeleteOpts {
            propagation: Some("Background".into()),
            ..Default::default()
        };
        for item in list.items {
            let Some(item_name) = item.key.rsplit('/').next() else {
                continue;
            };
            if let Err(e) = delete_object(&ctx, item_name, &opts).await {
                if e.code != 404 {
                    tracing::debug!(namespace = %name, object = %item.key, err = %e.message, "namespace cleanup");
                }
            }
        }
    }
    if remaining > 0 {
        return Ok(false);
    }
    let obj = decode(&kv).map_err(|e| e.message)?;
    let user_finalizers = meta(&obj)
        .get("finalizers")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    if user_finalizers {
        // Someone else's finalizer: clear ours and wait for theirs.
        let mut o = obj.clone();
        if o.pointer("/spec/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty())
        {
            o["spec"]["finalizers"] = json!([]);
            let _ = st.store.update(&kv.key, encode(&o), kv.mod_revision).await;
        }
        return Ok(false);
    }
    match st.store.delete(&kv.key, Some(kv.mod_revision)).await {
        Ok(_) | Err(skiff_store::StoreError::NotFound(_)) => Ok(true),
        Err(skiff_store::StoreError::Conflict { .. }) => Ok(false),
        Err(e) => Err(e.to_string()),
    }
}
