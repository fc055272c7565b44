//! Images of a pod's containers: the local store first, a pull (with the pod's
//! imagePullSecrets) when missing and the policy allows, and pull back-off
//! (ErrImagePull, then ImagePullBackOff until the delay is over).

use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod};
use kube::api::Api;
use skiff_client::events::EventType;
use skiff_image::ResolvedImage;
use tokio::time::Instant;

use super::worker::Worker;
use super::{BACKOFF_INITIAL, BACKOFF_MAX};

impl Worker {
    /// The container's image from the local store, pulled from its registry when missing (and
    /// the policy allows); the pull's duration when one happened.
    pub(super) async fn resolve_image(
        &mut self,
        pod: &Pod,
        c: &Container,
    ) -> std::result::Result<(ResolvedImage, Option<Duration>), (String, String)> {
        let image = c.image.clone().unwrap_or_default();
        if let Some(r) = self.images.get(&image) {
            return Ok((r.clone(), None));
        }
        if let Some((until, _)) = self.image_backoff.get(&image) {
            if Instant::now() < *until {
                return Err((
                    "ImagePullBackOff".into(),
                    format!("Back-off pulling image \"{image}\""),
                ));
            }
        }
        let local = self.ctx.runtime.image_status(&image).await;
        let mut pulled = None;
        let found = match local {
            Ok(r) => Ok(r),
            Err(e) => {
                let policy = c.image_pull_policy.clone().unwrap_or_default();
                if policy == "Never" {
                    return Err((
                        "ErrImageNeverPull".into(),
                        format!(
                            "Container image \"{image}\" is not present with pull policy of Never"
                        ),
                    ));
                }
                if self.ctx.config.offline && !skiff_image::registry_is_loopback(&image) {
                    let delay = self
                        .image_backoff
                        .get(&image)
                        .map_or(BACKOFF_INITIAL, |(_, d)| (*d * 2).min(BACKOFF_MAX));
                    self.image_backoff
                        .insert(image.clone(), (Instant::now() + delay, delay));
                    return Err((
                        "ErrImagePull".into(),
                        format!(
                            "image \"{image}\" is not in the node's store, and the node is offline (--offline): {e}"
                        ),
                    ));
                }
                let cname = c.name.clone();
                self.event(
                    pod,
                    Some(&cname),
                    EventType::Normal,
                    "Pulling",
                    &format!("Pulling image \"{image}\""),
                )
                .await;
                let started = Instant::now();
                let credentials = self.pull_credentials(pod, &image).await;
                match self
                    .ctx
                    .runtime
                    .pull_image(&image, credentials.as_ref())
                    .await
                {
                    Ok(()) => {
                        pulled = Some(started.elapsed());
                        self.ctx.runtime.image_status(&image).await
                    }
                    Err(pull_err) => {
                        tracing::debug!(%image, "local lookup: {e}");
                        Err(pull_err)
                    }
                }
            }
        };
        match found {
            Ok(r) => {
                self.images.insert(image, r.clone());
                Ok((r, pulled))
            }
            Err(e) => {
                // A failed pull is retried with back-off (ImagePullBackOff in between).
                let delay = self
                    .image_backoff
                    .get(&image)
                    .map(|(_, d)| (*d * 2).min(BACKOFF_MAX))
                    .unwrap_or(BACKOFF_INITIAL);
                self.image_backoff
                    .insert(image.clone(), (Instant::now() + delay, delay));
                Err((
                    "ErrImagePull".into(),
                    format!("failed to pull and unpack image \"{image}\": {e}"),
                ))
            }
        }
    }

    /// The login for `image`'s registry from the pod's `imagePullSecrets`
    /// (`kubernetes.io/dockerconfigjson` or legacy `kubernetes.io/dockercfg` Secrets).
    async fn pull_credentials(&self, pod: &Pod, image: &str) -> Option<skiff_image::Credentials> {
        let registry = skiff_image::registry_of(image)?;
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let secrets: Api<k8s_openapi::api::core::v1::Secret> =
            Api::namespaced(self.ctx.client.clone(), &ns);
        for r in pod
            .spec
            .as_ref()
            .and_then(|s| s.image_pull_secrets.clone())
            .unwrap_or_default()
        {
            let Ok(secret) = secrets.get(&r.name).await else {
                tracing::debug!(secret = %r.name, "imagePullSecret not found");
                continue;
            };
            let data = secret.data.unwrap_or_default();
            let found = [".dockerconfigjson", ".dockercfg"]
                .iter()
                .filter_map(|k| data.get(*k))
                .find_map(|b| skiff_image::credentials_from_docker_config(&b.0, &registry));
            if found.is_some() {
                return found;
            }
        }
        None
    }
}
