//! The legacy ServiceAccount token controller: fills a `kubernetes.io/service-account-token`
//! Secret that a user created explicitly (skiff never creates them on its own, like upstream
//! since 1.24) with `token`, `ca.crt` and `namespace`, records the ServiceAccount's uid in the
//! `kubernetes.io/service-account.uid` annotation, and deletes such Secrets whose
//! ServiceAccount is gone (or was re-created with another uid), as upstream's tokens controller.
//!
//! Unlike upstream, this controller never holds the signing key: it asks the API server for the
//! token through the TokenRequest subresource, bound to the Secret (name and uid) with the
//! longest expiry allowed (2^32 s). The API server accepts such a token exactly while the
//! Secret and the ServiceAccount exist with those uids — a legacy token's lifetime — and the key
//! stays in the API server alone.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use k8s_openapi::ByteString;
use kube::api::{Api, DeleteParams, ListParams, PostParams, Preconditions};
use kube::runtime::watcher;
use serde_json::{json, Value};

use crate::{Context, Error, Result};

pub const TOKEN_TYPE: &str = "kubernetes.io/service-account-token";
pub const SA_NAME_ANNOTATION: &str = "kubernetes.io/service-account.name";
pub const SA_UID_ANNOTATION: &str = "kubernetes.io/service-account.uid";
/// The longest expiry TokenRequest grants.
const LEGACY_EXPIRATION_SECONDS: i64 = 1 << 32;
const RESYNC: Duration = Duration::from_secs(60);

fn annotation<'a>(s: &'a Secret, key: &str) -> Option<&'a str> {
    s.metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
}

fn has(s: &Secret, key: &str) -> bool {
    s.data
        .as_ref()
        .and_then(|d| d.get(key))
        .is_some_and(|v| !v.0.is_empty())
}

/// Whether a Secret still needs filling (upstream checks the same three keys and the uid).
fn needs_fill(s: &Secret, ca: Option<&str>) -> bool {
    !has(s, "token")
        || !has(s, "namespace")
        || (ca.is_some() && !has(s, "ca.crt"))
        || annotation(s, SA_UID_ANNOTATION).is_none()
}

async fn token_for(client: &kube::Client, ns: &str, sa: &str, secret: &Secret) -> Result<String> {
    let body = json!({
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
        "spec": {"expirationSeconds": LEGACY_EXPIRATION_SECONDS,
            "boundObjectRef": {"apiVersion": "v1", "kind": "Secret",
                "name": secret.metadata.name, "uid": secret.metadata.uid}},
    });
    let resp: Value = Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .create_subresource("token", sa, &PostParams::default(), &body)
        .await?;
    resp.pointer("/status/token")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| Error::Other("TokenRequest answered without a token".into()))
}

async fn sync_secret(client: &kube::Client, ca: Option<&str>, secret: &Secret) -> Result<()> {
    let (Some(ns), Some(name), Some(uid)) = (
        secret.metadata.namespace.as_deref(),
        secret.metadata.name.as_deref(),
        secret.metadata.uid.as_deref(),
    ) else {
        return Ok(());
    };
    if secret.metadata.deletion_timestamp.is_some() {
        return Ok(());
    }
    let Some(sa_name) = annotation(secret, SA_NAME_ANNOTATION) else {
        return Ok(());
    };
    let secrets = Api::<Secret>::namespaced(client.clone(), ns);
    // A live read: the ServiceAccount may have been created a moment before the Secret.
    let sa = Api::<ServiceAccount>::namespaced(client.clone(), ns)
        .get_opt(sa_name)
        .await?;
    let sa_uid = sa.as_ref().and_then(|s| s.metadata.uid.as_deref());
    let wanted_uid = annotation(secret, SA_UID_ANNOTATION);
    if sa_uid.is_none() || (wanted_uid.is_some() && wanted_uid != sa_uid) {
        tracing::info!(namespace = %ns, secret = %name, serviceaccount = %sa_name,
            "deleting a token Secret whose ServiceAccount does not exist");
        let dp = DeleteParams {
            preconditions: Some(Preconditions {
                uid: Some(uid.to_string()),
                resource_version: None,
            }),
            ..Default::default()
        };
        return match secrets.delete(name, &dp).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
            Err(e) => Err(Error::Kube(e)),
        };
    }
    if !needs_fill(secret, ca) {
        return Ok(());
    }
    let mut updated = secret.clone();
    let data = updated.data.get_or_insert_with(BTreeMap::new);
    if !has(secret, "token") {
        let token = match token_for(client, ns, sa_name, secret).await {
            Ok(t) => t,
            // The Secret or ServiceAccount went meanwhile: the next pass sees it.
            Err(Error::Kube(kube::Error::Api(e))) if e.code == 404 || e.code == 409 => {
                return Ok(())
            }
            Err(e) => return Err(e),
        };
        data.insert("token".into(), ByteString(token.into_bytes()));
    }
    data.insert("namespace".into(), ByteString(ns.as_bytes().to_vec()));
    if let Some(ca) = ca {
        data.insert("ca.crt".into(), ByteString(ca.as_bytes().to_vec()));
    }
    if let Some(sa_uid) = sa_uid {
        updated
            .metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(SA_UID_ANNOTATION.into(), sa_uid.to_string());
    }
    // resourceVersion kept: a concurrent writer wins and the next pass looks again.
    match secrets
        .replace(name, &PostParams::default(), &updated)
        .await
    {
        Ok(_) => {
            tracing::debug!(namespace = %ns, secret = %name, "filled a ServiceAccount token Secret");
            Ok(())
        }
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
        Err(e) => Err(Error::Kube(e)),
    }
}

async fn pass(client: &kube::Client, ca: Option<&str>) -> Result<()> {
    let list = Api::<Secret>::all(client.clone())
        .list(&ListParams::default().fields(&format!("type={TOKEN_TYPE}")))
        .await?;
    for s in list
        .items
        .iter()
        .filter(|s| s.type_.as_deref() == Some(TOKEN_TYPE))
    {
        sync_secret(client, ca, s).await?;
    }
    Ok(())
}

/// Runs a pass on every change of token Secrets or ServiceAccounts, and every minute.
pub async fn run(ctx: Arc<Context>) -> Result<()> {
    let client = ctx.client.clone();
    let ca = ctx.options.root_ca_pem.clone();
    let secrets = watcher(
        Api::<Secret>::all(client.clone()),
        watcher::Config::default().fields(&format!("type={TOKEN_TYPE}")),
    )
    .map(|e| e.map(|_| ()));
    let sas = watcher(
        Api::<ServiceAccount>::all(client.clone()),
        watcher::Config::default(),
    )
    .map(|e| e.map(|_| ()));
    let mut events = futures::stream::select(secrets, sas).boxed();
    let mut tick = tokio::time::interval(RESYNC);
    loop {
        tokio::select! {
            event = events.next() => match event {
                Some(Ok(())) => {
                    while let Some(Some(Ok(()))) = events.next().now_or_never() {}
                    pass(&client, ca.as_deref()).await?
                }
                Some(Err(e)) => {
                    tracing::debug!("token controller watch: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                None => return Err(Error::WatchEnded("serviceaccount-token")),
            },
            _ = tick.tick() => pass(&client, ca.as_deref()).await?,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_filled_until_it_has_all_keys_and_the_uid() {
        let mut s = Secret {
            type_: Some(TOKEN_TYPE.into()),
            ..Default::default()
        };
        assert!(needs_fill(&s, None));
        let d = s.data.get_or_insert_with(BTreeMap::new);
        d.insert("token".into(), ByteString(b"t".to_vec()));
        d.insert("namespace".into(), ByteString(b"ns".to_vec()));
        assert!(needs_fill(&s, None), "no uid annotation yet");
        s.metadata.annotations = Some(BTreeMap::from([(
            SA_UID_ANNOTATION.to_string(),
            "u".to_string(),
        )]));
        assert!(!needs_fill(&s, None));
        assert!(needs_fill(&s, Some("PEM")), "ca.crt missing");
    }
}
