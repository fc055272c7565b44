//! Per-namespace identity objects, as kube-controller-manager keeps them:
//!
//! * the ServiceAccount controller: a `default` ServiceAccount in every active namespace
//!   (re-created if deleted);
//! * the root CA publisher: a `kube-root-ca.crt` ConfigMap with the cluster CA (`ca.crt`) in
//!   every active namespace (re-written if changed or deleted), which the projected
//!   `kube-api-access-*` volume of every pod reads. It needs `Options::root_ca_pem`; without
//!   it (controller tests) it does nothing.
//!
//! Both are level-triggered: any change to namespaces or to the objects they own re-checks
//! every namespace from fresh lists (cheap: one list of each), plus a periodic safety pass.
//! Terminating namespaces are skipped (their content is being deleted).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use kube::api::{Api, ListParams, ObjectMeta, PostParams};
use kube::runtime::watcher;

use crate::{Context, Error, Result};

pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";
pub const ROOT_CA_CONFIGMAP: &str = "kube-root-ca.crt";
pub const ROOT_CA_KEY: &str = "ca.crt";
/// The annotation upstream puts on `kube-root-ca.crt`.
pub const DESCRIPTION_ANNOTATION: &str = "kubernetes.io/description";
pub const ROOT_CA_DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";

const RESYNC: Duration = Duration::from_secs(30);

/// Names of namespaces that are not terminating.
async fn active_namespaces(client: &kube::Client) -> Result<Vec<String>> {
    let list = Api::<Namespace>::all(client.clone())
        .list(&ListParams::default())
        .await?;
    Ok(list
        .items
        .into_iter()
        .filter(|n| {
            n.metadata.deletion_timestamp.is_none()
                && n.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Terminating")
        })
        .filter_map(|n| n.metadata.name)
        .collect())
}

/// Creating in a namespace that just started terminating is refused; that is fine.
fn ignorable(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409 || s.code == 403 || s.code == 404)
}

async fn ensure_default_service_accounts(client: &kube::Client) -> Result<()> {
    let have: std::collections::HashSet<String> = Api::<ServiceAccount>::all(client.clone())
        .list(&ListParams::default().fields(&format!("metadata.name={DEFAULT_SERVICE_ACCOUNT}")))
        .await?
        .items
        .into_iter()
        .filter(|sa| sa.metadata.name.as_deref() == Some(DEFAULT_SERVICE_ACCOUNT))
        .filter_map(|sa| sa.metadata.namespace)
        .collect();
    for ns in active_namespaces(client).await? {
        if have.contains(&ns) {
            continue;
        }
        let sa = ServiceAccount {
            metadata: ObjectMeta {
                name: Some(DEFAULT_SERVICE_ACCOUNT.into()),
                ..Default::default()
            },
            ..Default::default()
        };
        match Api::<ServiceAccount>::namespaced(client.clone(), &ns)
            .create(&PostParams::default(), &sa)
            .await
        {
            Ok(_) => tracing::debug!(namespace = %ns, "created the default ServiceAccount"),
            Err(e) if ignorable(&e) => {}
            Err(e) => return Err(Error::Kube(e)),
        }
    }
    Ok(())
}

fn root_ca_configmap(ca: &str, base: Option<ConfigMap>) -> ConfigMap {
    let mut cm = base.unwrap_or_default();
    cm.metadata.name = Some(ROOT_CA_CONFIGMAP.into());
    cm.metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(DESCRIPTION_ANNOTATION.into(), ROOT_CA_DESCRIPTION.into());
    cm.data = Some(BTreeMap::from([(ROOT_CA_KEY.to_string(), ca.to_string())]));
    cm.binary_data = None;
    cm
}

fn up_to_date(cm: &ConfigMap, ca: &str) -> bool {
    let data_ok = cm
        .data
        .as_ref()
        .is_some_and(|d| d.len() == 1 && d.get(ROOT_CA_KEY).map(String::as_str) == Some(ca))
        && cm.binary_data.as_ref().is_none_or(BTreeMap::is_empty);
    let note_ok = cm
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DESCRIPTION_ANNOTATION))
        .map(String::as_str)
        == Some(ROOT_CA_DESCRIPTION);
    data_ok && note_ok
}

async fn publish_root_ca(client: &kube::Client, ca: &str) -> Result<()> {
    let existing: BTreeMap<String, ConfigMap> = Api::<ConfigMap>::all(client.clone())
        .list(&ListParams::default().fields(&format!("metadata.name={ROOT_CA_CONFIGMAP}")))
        .await?
        .items
        .into_iter()
        .filter(|c| c.metadata.name.as_deref() == Some(ROOT_CA_CONFIGMAP))
        .filter_map(|c| Some((c.metadata.namespace.clone()?, c)))
        .collect();
    for ns in active_namespaces(client).await? {
        let api = Api::<ConfigMap>::namespaced(client.clone(), &ns);
        let res = match existing.get(&ns) {
            Some(cm) if up_to_date(cm, ca) => continue,
            // resourceVersion kept: a concurrent change is a 409 and the next pass retries.
            Some(cm) => api
                .replace(
                    ROOT_CA_CONFIGMAP,
                    &PostParams::default(),
                    &root_ca_configmap(ca, Some(cm.clone())),
                )
                .await
                .map(|_| ()),
            None => api
                .create(&PostParams::default(), &root_ca_configmap(ca, None))
                .await
                .map(|_| ()),
        };
        match res {
            Ok(()) => tracing::debug!(namespace = %ns, "published {ROOT_CA_CONFIGMAP}"),
            Err(e) if ignorable(&e) => {}
            Err(e) => return Err(Error::Kube(e)),
        }
    }
    Ok(())
}

/// Runs `pass` on every change of namespaces or of `K`, and every [`RESYNC`].
async fn level_loop<K, F, Fut>(ctx: Arc<Context>, name: &'static str, pass: F) -> Result<()>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + 'static,
    K::DynamicType: Default,
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let namespaces = watcher(
        Api::<Namespace>::all(ctx.client.clone()),
        watcher::Config::default(),
    )
    .map(|e| e.map(|_| ()));
    let owned = watcher(
        Api::<K>::all(ctx.client.clone()),
        watcher::Config::default(),
    )
    .map(|e| e.map(|_| ()));
    let mut events = futures::stream::select(namespaces, owned).boxed();
    let mut tick = tokio::time::interval(RESYNC);
    loop {
        tokio::select! {
            event = events.next() => match event {
                Some(Ok(())) => {
                    // Coalesce a burst (initial lists, a namespace and its objects) into one pass.
                    while let Some(Some(Ok(()))) = events.next().now_or_never() {}
                    pass().await?
                }
                Some(Err(e)) => {
                    tracing::debug!("{name} watch: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                None => return Err(Error::WatchEnded(name)),
            },
            _ = tick.tick() => pass().await?,
        }
    }
}

/// The ServiceAccount controller (`default` in every namespace).
pub async fn run(ctx: Arc<Context>) -> Result<()> {
    let client = ctx.client.clone();
    level_loop::<ServiceAccount, _, _>(ctx, "serviceaccount", || {
        ensure_default_service_accounts(&client)
    })
    .await
}

/// The root CA publisher (`kube-root-ca.crt` in every namespace).
pub async fn run_root_ca_publisher(ctx: Arc<Context>) -> Result<()> {
    let Some(ca) = ctx.options.root_ca_pem.clone() else {
        // Nothing to publish; stay up so the manager does not restart us in a loop.
        std::future::pending::<()>().await;
        return Ok(());
    };
    let client = ctx.client.clone();
    level_loop::<ConfigMap, _, _>(ctx, "root-ca-cert-publisher", || {
        publish_root_ca(&client, &ca)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_ca_configmap_is_upstreams_and_drift_is_seen() {
        let cm = root_ca_configmap("PEM", None);
        assert!(up_to_date(&cm, "PEM"));
        assert!(!up_to_date(&cm, "OTHER"));
        let mut extra = cm.clone();
        extra.data.as_mut().unwrap().insert("x".into(), "y".into());
        assert!(!up_to_date(&extra, "PEM"));
        let mut bare = cm.clone();
        bare.metadata.annotations = None;
        assert!(!up_to_date(&bare, "PEM"));
        // Rewriting keeps the object's identity (name, resourceVersion) and other annotations.
        let mut stored = cm.clone();
        stored.metadata.resource_version = Some("7".into());
        stored
            .metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert("keep".into(), "me".into());
        let fixed = root_ca_configmap("NEW", Some(stored));
        assert_eq!(fixed.metadata.resource_version.as_deref(), Some("7"));
        assert!(up_to_date(&fixed, "NEW"));
        assert_eq!(fixed.metadata.annotations.unwrap()["keep"], "me");
    }
}
