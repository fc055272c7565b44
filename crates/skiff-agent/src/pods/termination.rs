//! Pod termination: graceful stop (leave endpoints, preStop hooks, stop with the grace
//! period, the final delete), teardown of a pod's containers, cgroup, sandbox and files, and
//! cleanup of what pods that no longer exist left behind.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, Preconditions};
use skiff_client::events::EventType;
use skiff_runtime::{ContainerInfo, Status};
use tokio::time::Instant;

use super::index::{parse_runtime_name, uid8};
use super::manager::Ctx;
use super::runtime::blocking;
use super::worker::Worker;
use super::{names, volumes, ORPHAN_GRACE};
use crate::probes;

/// Removes containers and sandboxes of pods that no longer exist (after agent restarts).
pub(super) async fn cleanup_orphans(ctx: &Arc<Ctx>, known: &HashMap<String, Pod>) {
    let live_uid8: HashSet<String> = known.keys().map(|u| uid8(u)).collect();
    let orphans: Vec<ContainerInfo> = match ctx.runtime.list_containers().await {
        Ok(all) => all
            .into_iter()
            .filter(|i| parse_runtime_name(&i.name).is_some_and(|n| !live_uid8.contains(&n.uid8)))
            .collect(),
        Err(e) => {
            tracing::warn!("listing containers: {e}");
            Vec::new()
        }
    };
    for info in orphans {
        tracing::info!(container = %info.name, "removing container of a pod that no longer exists");
        let rt = &ctx.runtime;
        let _ = async {
            rt.stop_container(&info.id, ORPHAN_GRACE).await?;
            rt.remove_container(&info.id).await
        }
        .await;
    }
    let known_uids: HashSet<String> = known.keys().cloned().collect();
    let stale: Vec<String> = ctx
        .runtime
        .pod_cgroups()
        .into_iter()
        .filter(|n| !known_uids.contains(n.trim_start_matches("pod")))
        .collect();
    for name in stale {
        if let Err(e) = ctx.runtime.remove_pod_cgroup(&name).await {
            tracing::warn!(cgroup = %name, "removing the cgroup of a pod that no longer exists: {e}");
        }
    }
    let sandboxes = ctx.runtime.list_sandboxes().await.unwrap_or_default();
    for uid in sandboxes {
        if !known_uids.contains(&uid) {
            if let Err(e) = ctx.runtime.remove_sandbox(&uid).await {
                tracing::warn!(pod_uid = %uid, "removing sandbox: {e}");
            }
            let dir = ctx.config.data_dir.join("agent/pods").join(&uid);
            let _ = blocking(move || {
                volumes::remove_pod_dir(&dir);
                Ok(())
            })
            .await;
        }
    }
}

impl Worker {
    /// Zero-loss termination: before any signal, wait until no EndpointSlice lists this pod
    /// as ready (the endpoints controller drops terminating pods at once), then give the
    /// service proxies `PROXY_PROPAGATION` to reprogram. Upstream leaves this to a preStop
    /// sleep in every manifest; doing it here means new connections stop arriving before the
    /// pod is asked to exit. Pods no Service selects pay nothing.
    pub(super) async fn leave_endpoints(&self, pod: &Pod, deadline: Instant) {
        const PROXY_PROPAGATION: Duration = Duration::from_millis(300);
        let Some(ns) = pod.metadata.namespace.as_deref() else {
            return;
        };
        let slices: Api<EndpointSlice> = Api::namespaced(self.ctx.client.clone(), ns);
        // Keep at least a second of the grace period for the pod itself.
        let limit = deadline
            .checked_sub(Duration::from_secs(1))
            .unwrap_or(deadline)
            .min(Instant::now() + Duration::from_secs(10));
        let mut was_listed = false;
        loop {
            let listed = match slices.list(&ListParams::default()).await {
                Ok(list) => list.items.iter().any(|s| {
                    s.endpoints.iter().any(|e| {
                        e.target_ref.as_ref().and_then(|r| r.uid.as_deref()) == Some(&self.uid)
                            && e.conditions.as_ref().and_then(|c| c.ready) != Some(false)
                    })
                }),
                // Unknown is not "gone": keep asking until the limit (a failed list used to
                // let the pod be signalled while still an endpoint).
                Err(e) => {
                    tracing::debug!(pod_uid = %self.uid, "listing endpoint slices: {e}");
                    if Instant::now() >= limit {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            };
            if !listed {
                break;
            }
            was_listed = true;
            if Instant::now() >= limit {
                tracing::warn!(pod_uid = %self.uid, "still a ready endpoint; terminating anyway");
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // This node's proxy can be asked: wait until its applied table stops sending new
        // connections here (under load an `nft -f` can lag the slice by more than the
        // fixed propagation delay below).
        if let (Some(status), Some(sb)) = (self.ctx.proxy.get(), self.sandbox.as_ref()) {
            while status.targets(sb.ip) == Some(true) && Instant::now() < limit {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        // The slice may already have been updated before our first look, so also ask whether
        // any Service selects the pod: then other nodes' proxies may still be catching up.
        if was_listed || self.selected_by_a_service(pod).await {
            let left = limit.saturating_duration_since(Instant::now());
            tokio::time::sleep(PROXY_PROPAGATION.min(left)).await;
        }
    }

    async fn selected_by_a_service(&self, pod: &Pod) -> bool {
        let Some(ns) = pod.metadata.namespace.as_deref() else {
            return false;
        };
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        let services: Api<Service> = Api::namespaced(self.ctx.client.clone(), ns);
        match services.list(&ListParams::default()).await {
            Ok(list) => list.items.iter().any(|svc| {
                svc.spec
                    .as_ref()
                    .and_then(|s| s.selector.as_ref())
                    .is_some_and(|sel| {
                        !sel.is_empty() && skiff_semantics::labels::matches_set(sel, &labels)
                    })
            }),
            Err(_) => true,
        }
    }

    /// Graceful termination (§3.6): preStop hooks, stop with the grace period, remove
    /// containers and the sandbox, then the final delete with grace 0.
    pub(super) async fn terminate(&mut self, pod: &Pod) {
        let grace = pod
            .metadata
            .deletion_grace_period_seconds
            .unwrap_or(30)
            .max(0) as u64;
        let deadline = Instant::now() + Duration::from_secs(grace);
        if grace > 0 {
            self.leave_endpoints(pod, deadline).await;
        }
        let inst = self.instances(pod).await.unwrap_or_default();
        for c in pod.spec.iter().flat_map(|s| s.containers.iter()) {
            let running = inst
                .get(&c.name)
                .and_then(|l| l.first())
                .is_some_and(|(_, i)| i.status == Status::Running);
            if running {
                let msg = format!("Stopping container {}", c.name);
                self.event(pod, Some(&c.name), EventType::Normal, "Killing", &msg)
                    .await;
            }
        }
        if grace > 0 {
            let mut hooks = Vec::new();
            for c in pod.spec.iter().flat_map(|s| s.containers.iter()) {
                let Some(handler) = c.lifecycle.as_ref().and_then(|l| l.pre_stop.clone()) else {
                    continue;
                };
                let Some((_, info)) = inst.get(&c.name).and_then(|l| l.first()) else {
                    continue;
                };
                if info.status != Status::Running {
                    continue;
                }
                let remaining = deadline.saturating_duration_since(Instant::now());
                let ctx = self.ctx.clone();
                let id = info.id.clone();
                let c = c.clone();
                let ip = self.sandbox.as_ref().map(|s| IpAddr::V4(s.ip));
                hooks.push(async move {
                    let r = if let Some(e) = &handler.exec {
                        ctx.runtime.exec_sync(&id, e, remaining).await
                    } else if let (Some(h), Some(ip)) = (&handler.http_get, ip) {
                        probes::http_get(h, &c, ip, remaining).await
                    } else if let Some(s) = &handler.sleep {
                        tokio::time::sleep(
                            Duration::from_secs(s.seconds.max(0) as u64).min(remaining),
                        )
                        .await;
                        Ok(())
                    } else {
                        Ok(())
                    };
                    if let Err(e) = r {
                        tracing::warn!(container = %c.name, "preStop hook failed: {e}");
                    }
                });
            }
            futures::future::join_all(hooks).await;
        }
        // preStop overrunning the grace period earns a one-off 2 s (upstream).
        let remaining = deadline
            .saturating_duration_since(Instant::now())
            .max(if grace > 0 {
                Duration::from_secs(2)
            } else {
                Duration::ZERO
            });
        self.teardown(Some(pod), remaining).await;
        let (name, ns) = names(pod);
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &ns);
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(self.uid.clone()),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(&name, &dp).await {
            Ok(_) => {}
            Err(kube::Error::Api(ae)) if ae.code == 404 || ae.code == 409 => {}
            Err(e) => tracing::warn!(pod = %name, "final delete failed: {e}"),
        }
    }

    /// Stops and removes every container of the pod, its sandbox and its files.
    pub(super) async fn teardown(&mut self, pod: Option<&Pod>, grace: Duration) {
        let u = uid8(&self.uid);
        let mine: Vec<ContainerInfo> = match self.ctx.runtime.list_containers().await {
            Ok(all) => all
                .into_iter()
                .filter(|i| parse_runtime_name(&i.name).is_some_and(|n| n.uid8 == u))
                .collect(),
            Err(e) => {
                tracing::warn!("listing containers: {e}");
                Vec::new()
            }
        };
        // Stop in parallel: each gets the full remaining grace.
        let stops = mine.iter().map(|info| {
            let rt = &self.ctx.runtime;
            async move {
                rt.stop_container(&info.id, grace).await?;
                rt.remove_container(&info.id).await
            }
        });
        for r in futures::future::join_all(stops).await {
            if let Err(e) = r {
                tracing::warn!(pod_uid = %self.uid, "removing container: {e}");
            }
        }
        // Whatever the containers' state files say: nothing of the pod survives it.
        let cg = format!("pod{}", self.uid);
        if let Err(e) = self.ctx.runtime.remove_pod_cgroup(&cg).await {
            tracing::warn!(pod_uid = %self.uid, "removing the pod cgroup: {e}");
        }
        self.ctx.containers.invalidate();
        if let Err(e) = self.ctx.runtime.remove_sandbox(&self.uid).await {
            tracing::warn!(pod_uid = %self.uid, "removing sandbox: {e}");
        }
        self.sandbox = None;
        // Unmounts subPath staging mounts and the secret/memory tmpfs before deleting.
        let dir = self.pod_dir();
        let _ = blocking(move || {
            volumes::remove_pod_dir(&dir);
            Ok(())
        })
        .await;
        self.ctx.tokens.forget_pod(&self.uid);
        if let Some(p) = pod {
            let (name, ns) = names(p);
            self.ctx.index.forget_pod(&ns, &name, &self.uid);
        }
    }
}

/// Unmounts and removes every pod directory of a data dir (`skiff reset`): subPath staging
/// mounts, secret and memory tmpfs mounts, then the files.
pub fn remove_all_pod_dirs(data_dir: &std::path::Path) {
    let pods = data_dir.join("agent/pods");
    for e in std::fs::read_dir(&pods).into_iter().flatten().flatten() {
        volumes::remove_pod_dir(&e.path());
    }
}
