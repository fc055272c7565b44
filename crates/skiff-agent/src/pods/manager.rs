//! The pod set of this node: [`PodManager`] watches the pods bound to it and runs one worker
//! task per pod uid; [`Ctx`] is what the workers share (API client, runtime, container listing).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::watcher;
use kube::Client;
use skiff_client::events::Recorder;
use skiff_image::ImageStore;
use skiff_net::{NetConfig, PodNetwork};
use skiff_runtime::ContainerInfo;
use tokio::time::Instant;

use super::runtime::{NodeRuntime, PodRuntime};
use super::termination::cleanup_orphans;
use super::worker::Worker;
use super::{PodIndex, CLEANUP_EVERY};
use crate::{AgentConfig, Result};

/// Shared by all workers.
pub(super) struct Ctx {
    pub(super) client: Client,
    pub(super) config: AgentConfig,
    pub(super) runtime: Arc<dyn PodRuntime>,
    pub(super) index: Arc<PodIndex>,
    pub(super) containers: ContainerCache,
    pub(super) events: Recorder,
    /// The node's service proxy, once it runs.
    pub(super) proxy: Arc<std::sync::OnceLock<skiff_net::proxy::ProxyStatus>>,
    /// Bound ServiceAccount tokens of the node's pods (projected volumes).
    pub(super) tokens: Arc<super::tokens::TokenManager>,
    /// The node's NetworkPolicy enforcer, once it runs.
    pub(super) netpol: crate::netpol::NetpolSlot,
}

impl Ctx {
    pub(super) fn new(
        client: Client,
        config: AgentConfig,
        runtime: Arc<dyn PodRuntime>,
        index: Arc<PodIndex>,
        proxy: Arc<std::sync::OnceLock<skiff_net::proxy::ProxyStatus>>,
    ) -> Self {
        Ctx {
            events: Recorder::new(client.clone()),
            client,
            config,
            runtime,
            index,
            containers: ContainerCache::default(),
            proxy,
            tokens: Arc::default(),
            netpol: Arc::default(),
        }
    }
}

/// One runtime listing shared by every pod worker, like the kubelet's PLEG relist: listing
/// reads every container's state files, so doing it per pod per resync grew quadratically.
/// A listing is reused until it is `MAX_AGE` old or the agent itself started or removed a
/// container since (`changed`).
#[derive(Default)]
pub(super) struct ContainerCache {
    changed: std::sync::atomic::AtomicU64,
    last: tokio::sync::Mutex<Option<Listing>>,
}

/// (generation, taken at, containers)
type Listing = (u64, Instant, Arc<Vec<ContainerInfo>>);

impl ContainerCache {
    const MAX_AGE: Duration = Duration::from_millis(500);

    pub(super) fn invalidate(&self) {
        self.changed
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    pub(super) async fn list(
        &self,
        runtime: &Arc<dyn PodRuntime>,
    ) -> Result<Arc<Vec<ContainerInfo>>> {
        let mut last = self.last.lock().await;
        let generation = self.changed.load(std::sync::atomic::Ordering::SeqCst);
        if let Some((g, at, list)) = last.as_ref() {
            if *g == generation && at.elapsed() < Self::MAX_AGE {
                return Ok(list.clone());
            }
        }
        let list = Arc::new(runtime.list_containers().await?);
        *last = Some((generation, Instant::now(), list.clone()));
        Ok(list)
    }
}

/// Owns the pod watch and the workers.
pub struct PodManager {
    ctx: Arc<Ctx>,
}

impl PodManager {
    pub fn new(
        client: Client,
        config: AgentConfig,
        index: Arc<PodIndex>,
        pod_cidr: &str,
        proxy: Arc<std::sync::OnceLock<skiff_net::proxy::ProxyStatus>>,
    ) -> Result<Self> {
        let images = ImageStore::open(config.data_dir.join("images"))?;
        let net = PodNetwork::new(NetConfig {
            data_dir: config.data_dir.clone(),
            pod_cidr: pod_cidr.to_string(),
            cni_bin_dir: None,
        })?;
        let runtime = NodeRuntime::new(index.runtime(), images, net, config.clone());
        Ok(PodManager {
            ctx: Arc::new(Ctx::new(client, config, Arc::new(runtime), index, proxy)),
        })
    }

    /// Where the NetworkPolicy enforcer registers itself for the workers.
    pub fn netpol_slot(&self) -> crate::netpol::NetpolSlot {
        self.ctx.netpol.clone()
    }

    /// Watches pods until `stop` turns true; containers keep running afterwards.
    pub async fn run(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        let ctx = self.ctx;
        let pods: Api<Pod> = Api::all(ctx.client.clone());
        let cfg =
            watcher::Config::default().fields(&format!("spec.nodeName={}", ctx.config.node_name));
        let mut stream = watcher(pods, cfg).boxed();
        let mut workers: HashMap<
            String,
            (
                tokio::sync::watch::Sender<Option<Pod>>,
                tokio::task::JoinHandle<()>,
            ),
        > = HashMap::new();
        // uid → pod, as of the last complete list (for orphan cleanup).
        let mut known: HashMap<String, Pod> = HashMap::new();
        let mut init_batch: Option<HashMap<String, Pod>> = None;
        let mut listed = false;
        let mut last_cleanup = Instant::now();
        loop {
            if *stop.borrow() {
                break;
            }
            let event = tokio::select! {
                e = stream.next() => e,
                _ = stop.changed() => break,
                _ = tokio::time::sleep(CLEANUP_EVERY) => None,
            };
            let mut deliver: Vec<Pod> = Vec::new();
            let mut gone: Vec<String> = Vec::new();
            match event {
                Some(Ok(watcher::Event::Apply(p))) => {
                    if let Some(uid) = p.metadata.uid.clone() {
                        known.insert(uid, p.clone());
                    }
                    deliver.push(p);
                }
                Some(Ok(watcher::Event::Delete(p))) => {
                    if let Some(uid) = p.metadata.uid.clone() {
                        known.remove(&uid);
                        gone.push(uid);
                    }
                }
                Some(Ok(watcher::Event::Init)) => init_batch = Some(HashMap::new()),
                Some(Ok(watcher::Event::InitApply(p))) => {
                    if let (Some(b), Some(uid)) = (init_batch.as_mut(), p.metadata.uid.clone()) {
                        b.insert(uid, p);
                    }
                }
                Some(Ok(watcher::Event::InitDone)) => {
                    let batch = init_batch.take().unwrap_or_default();
                    for uid in known.keys() {
                        if !batch.contains_key(uid) {
                            gone.push(uid.clone());
                        }
                    }
                    known = batch;
                    deliver.extend(known.values().cloned());
                    if !listed {
                        listed = true;
                        cleanup_orphans(&ctx, &known).await;
                        last_cleanup = Instant::now();
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!("pod watch: {e}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                None => {}
            }
            for p in deliver {
                let Some(uid) = p.metadata.uid.clone() else {
                    continue;
                };
                match workers.entry(uid) {
                    std::collections::hash_map::Entry::Occupied(o) => {
                        // A finished worker has terminated its pod: nothing more to do.
                        if !o.get().1.is_finished() {
                            let _ = o.get().0.send(Some(p));
                        }
                    }
                    std::collections::hash_map::Entry::Vacant(v) => {
                        let (tx, rx) = tokio::sync::watch::channel(Some(p));
                        let w = Worker::new(ctx.clone(), v.key().clone(), rx);
                        v.insert((tx, tokio::spawn(w.run())));
                    }
                }
            }
            for uid in gone {
                if let Some((tx, _)) = workers.get(&uid) {
                    let _ = tx.send(None);
                }
            }
            ctx.index.set_objects(&known);
            workers.retain(|uid, (_, h)| !h.is_finished() || known.contains_key(uid));
            if listed && last_cleanup.elapsed() >= CLEANUP_EVERY {
                let live: HashMap<String, Pod> = known.clone();
                cleanup_orphans(&ctx, &live).await;
                last_cleanup = Instant::now();
            }
        }
        // Dropping the senders ends the workers without touching their containers.
        for (_, (tx, h)) in workers {
            drop(tx);
            h.abort();
        }
    }
}
