//! The EndpointSlice and Endpoints controllers (upstream `pkg/controller/endpointslice` and
//! `pkg/controller/endpoint`), run as one loop: for every Service with a selector, the pods it
//! selects become EndpointSlices (one per resolved port set, owned by the Service, labelled
//! `kubernetes.io/service-name` and `endpointslice.kubernetes.io/managed-by`) and the legacy
//! Endpoints object of the same name.
//!
//! Reflectors on Services, Pods, EndpointSlices and Endpoints feed the shared driver
//! (`skiff_client::driver`, no debounce). A pod event maps to the Services whose selector matches its new or previous
//! labels, so a pod turning not-ready or terminating reaches kube-proxy within one watch hop
//! plus one write: rolling updates rely on that. Writes are compared against the cache first
//! and only happen on change; what we wrote is remembered until the watch catches up so quick
//! successive reconciles neither create duplicates nor hit stale-resourceVersion conflicts.

mod desired;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{stream, TryStreamExt};
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{self, reflector, ObjectRef, Store};
use kube::runtime::watcher;
use kube::runtime::WatchStreamExt;
use kube::ResourceExt;

use self::desired::{selects, SliceGroup};
pub use self::desired::{MAX_ENDPOINTS_ADDRESSES, MAX_ENDPOINTS_PER_SLICE};
use crate::{Context, Error, Result};
use skiff_client::driver::drive;
use skiff_semantics::wellknown::{annotations, labels};

pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";
/// Retry delay after a failed sync (conflicts mostly: short, the next try uses fresh data).
const ERROR_REQUEUE: Duration = Duration::from_millis(200);

/// What this controller wrote per Service, until the watch delivers it.
#[derive(Default)]
struct Written {
    slices: BTreeMap<String, EndpointSlice>,
    endpoints: Option<Endpoints>,
}

struct Epc {
    ctx: Arc<Context>,
    services: Store<Service>,
    pods: Store<Pod>,
    slices: Store<EndpointSlice>,
    endpoints: Store<Endpoints>,
    written: Mutex<HashMap<String, Written>>,
}

/// Runs the controller until the process stops (errors are retried inside).
pub async fn run(ctx: Arc<Context>) -> Result<()> {
    let client = ctx.client.clone();
    let (services, svc_writer) = reflector::store::<Service>();
    let (pods, pod_writer) = reflector::store::<Pod>();
    let (slices, slice_writer) = reflector::store::<EndpointSlice>();
    let (endpoints, ep_writer) = reflector::store::<Endpoints>();
    let epc = Arc::new(Epc {
        ctx,
        services: services.clone(),
        pods,
        slices,
        endpoints,
        written: Mutex::new(HashMap::new()),
    });

    let svc_triggers = reflector(
        svc_writer,
        watcher(
            Api::<Service>::all(client.clone()),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .map_ok({
        let epc = epc.clone();
        move |ev| {
            stream::iter(
                epc.service_event(ev)
                    .into_iter()
                    .map(Ok::<_, watcher::Error>),
            )
        }
    })
    .try_flatten();

    let mut seen_labels: HashMap<String, BTreeMap<String, String>> = HashMap::new();
    let pod_triggers = reflector(
        pod_writer,
        watcher(Api::<Pod>::all(client.clone()), watcher::Config::default()),
    )
    .default_backoff()
    .map_ok({
        let epc = epc.clone();
        move |ev| {
            stream::iter(
                epc.pod_event(ev, &mut seen_labels)
                    .into_iter()
                    .map(Ok::<_, watcher::Error>),
            )
        }
    })
    .try_flatten();

    let managed = watcher::Config::default().labels(&format!(
        "{}={MANAGED_BY}",
        labels::ENDPOINTSLICE_MANAGED_BY
    ));
    let slice_triggers = reflector(
        slice_writer,
        watcher(Api::<EndpointSlice>::all(client.clone()), managed),
    )
    .default_backoff()
    .map_ok({
        let epc = epc.clone();
        move |ev| stream::iter(epc.slice_event(ev).into_iter().map(Ok::<_, watcher::Error>))
    })
    .try_flatten();

    let ep_triggers = reflector(
        ep_writer,
        watcher(Api::<Endpoints>::all(client), watcher::Config::default()),
    )
    .default_backoff()
    .map_ok(|ev| {
        let refs: Vec<ObjectRef<Service>> = match ev {
            watcher::Event::Apply(ep) | watcher::Event::Delete(ep) => vec![svc_ref_of(&ep)],
            _ => vec![],
        };
        stream::iter(refs.into_iter().map(Ok::<_, watcher::Error>))
    })
    .try_flatten();

    let queue = stream::select(
        stream::select(svc_triggers, pod_triggers),
        stream::select(slice_triggers, ep_triggers),
    );
    drive(
        "endpoints",
        epc,
        services,
        queue,
        |svc, err: &Error, epc| {
            tracing::debug!(service = %ObjectRef::from_obj(svc.as_ref()), error = %err, "endpoints sync failed");
            // Retry from the watch caches, not from what we believed we wrote.
            if let Ok(mut w) = epc.written.lock() {
                w.remove(&key_of(svc.as_ref()));
            }
            Action::requeue(ERROR_REQUEUE)
        },
        |svc, epc| Box::pin(async move { epc.reconcile(svc).await }),
    )
    .await;
    Err(Error::WatchEnded("endpoints"))
}

fn key_of<K: ResourceExt>(obj: &K) -> String {
    format!("{}/{}", obj.namespace().unwrap_or_default(), obj.name_any())
}

fn svc_ref(ns: &str, name: &str) -> ObjectRef<Service> {
    ObjectRef::new(name).within(ns)
}

fn svc_ref_of<K: ResourceExt>(obj: &K) -> ObjectRef<Service> {
    svc_ref(&obj.namespace().unwrap_or_default(), &obj.name_any())
}

fn selector(svc: &Service) -> Option<&BTreeMap<String, String>> {
    let spec = svc.spec.as_ref()?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return None;
    }
    spec.selector.as_ref()
}

fn parse_rv<K: ResourceExt>(obj: &K) -> i64 {
    obj.resource_version()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// The newer of the cached and the remembered written object.
fn newest<K: ResourceExt + Clone>(cached: Option<K>, written: Option<&K>) -> Option<K> {
    match (cached, written) {
        (Some(c), Some(w)) if parse_rv(w) > parse_rv(&c) => Some(w.clone()),
        (None, Some(w)) => Some(w.clone()),
        (c, _) => c,
    }
}

impl Epc {
    fn service_event(&self, ev: watcher::Event<Service>) -> Vec<ObjectRef<Service>> {
        match ev {
            watcher::Event::Apply(svc) | watcher::Event::InitApply(svc) => {
                vec![ObjectRef::from_obj(&svc)]
            }
            watcher::Event::Delete(svc) => {
                // Slices go with the Service through the garbage collector (ownerReference);
                // the Endpoints object has no owner, so it is deleted here, like upstream.
                if let Ok(mut w) = self.written.lock() {
                    w.remove(&key_of(&svc));
                }
                let api: Api<Endpoints> = Api::namespaced(
                    self.ctx.client.clone(),
                    &svc.namespace().unwrap_or_default(),
                );
                let name = svc.name_any();
                tokio::spawn(async move {
                    let _ = api.delete(&name, &DeleteParams::default()).await;
                });
                vec![]
            }
            watcher::Event::Init | watcher::Event::InitDone => vec![],
        }
    }

    /// Services whose selector matches the pod's current or previous labels.
    fn pod_event(
        &self,
        ev: watcher::Event<Pod>,
        seen: &mut HashMap<String, BTreeMap<String, String>>,
    ) -> Vec<ObjectRef<Service>> {
        let (pod, deleted) = match ev {
            watcher::Event::Apply(p) | watcher::Event::InitApply(p) => (p, false),
            watcher::Event::Delete(p) => (p, true),
            watcher::Event::Init | watcher::Event::InitDone => return vec![],
        };
        let key = key_of(&pod);
        let previous = if deleted {
            seen.remove(&key)
        } else {
            seen.insert(key, pod.labels().clone())
        };
        let ns = pod.namespace().unwrap_or_default();
        let mut old = pod.clone();
        if let Some(labels) = previous {
            old.metadata.labels = Some(labels);
        }
        self.services
            .state()
            .iter()
            .filter(|s| s.namespace().as_deref() == Some(ns.as_str()))
            .filter(|s| selector(s).is_some_and(|sel| selects(sel, &pod) || selects(sel, &old)))
            .map(|s| ObjectRef::from_obj(s.as_ref()))
            .collect()
    }

    fn slice_event(&self, ev: watcher::Event<EndpointSlice>) -> Vec<ObjectRef<Service>> {
        let (slice, deleted) = match ev {
            watcher::Event::Apply(s) => (s, false),
            watcher::Event::Delete(s) => (s, true),
            _ => return vec![],
        };
        let ns = slice.namespace().unwrap_or_default();
        let Some(svc) = slice.labels().get(labels::SERVICE_NAME).cloned() else {
            return vec![];
        };
        if let Ok(mut w) = self.written.lock() {
            if let Some(entry) = w.get_mut(&format!("{ns}/{svc}")) {
                let name = slice.name_any();
                let caught_up = entry
                    .slices
                    .get(&name)
                    .is_some_and(|mine| parse_rv(&slice) >= parse_rv(mine));
                if deleted || caught_up {
                    entry.slices.remove(&name);
                }
            }
        }
        vec![svc_ref(&ns, &svc)]
    }

    async fn reconcile(&self, svc: Arc<Service>) -> Result<Action> {
        let Some(sel) = selector(&svc) else {
            // No selector: the user (or a mirroring controller) owns the endpoints.
            return Ok(Action::await_change());
        };
        // A half-synced cache would write empty endpoints for a moment.
        let _ = self.pods.wait_until_ready().await;
        let _ = self.slices.wait_until_ready().await;
        let _ = self.endpoints.wait_until_ready().await;
        let ns = svc.namespace().unwrap_or_default();
        let pods_state = self.pods.state();
        let pods: Vec<&Pod> = pods_state
            .iter()
            .map(|p| p.as_ref())
            .filter(|p| p.namespace().as_deref() == Some(ns.as_str()) && selects(sel, p))
            .collect();
        self.sync_slices(&svc, &ns, &pods).await?;
        self.sync_endpoints(&svc, &ns, &pods).await?;
        Ok(Action::await_change())
    }

    async fn sync_slices(&self, svc: &Service, ns: &str, pods: &[&Pod]) -> Result<()> {
        let name = svc.name_any();
        let uid = svc.uid().unwrap_or_default();
        let key = format!("{ns}/{name}");
        let mut current: BTreeMap<String, EndpointSlice> = self
            .slices
            .state()
            .iter()
            .filter(|s| {
                s.namespace().as_deref() == Some(ns)
                    && s.labels().get(labels::SERVICE_NAME) == Some(&name)
            })
            .map(|s| (s.name_any(), s.as_ref().clone()))
            .collect();
        if let Ok(w) = self.written.lock() {
            if let Some(entry) = w.get(&key) {
                for (n, mine) in &entry.slices {
                    let merged = newest(current.remove(n), Some(mine));
                    if let Some(m) = merged {
                        current.insert(n.clone(), m);
                    }
                }
            }
        }
        let api: Api<EndpointSlice> = Api::namespaced(self.ctx.client.clone(), ns);
        // Slices of an earlier Service with this name are not ours to reuse.
        let (mut mine, stale): (Vec<EndpointSlice>, Vec<EndpointSlice>) =
            current.into_values().partition(|s| {
                s.owner_references()
                    .iter()
                    .any(|o| o.kind == "Service" && o.uid == uid)
            });
        for s in stale {
            delete_slice(&api, &s).await?;
        }
        let groups = desired::slice_groups(svc, pods);
        let labels = slice_labels(svc);
        let owner = owner_ref(svc);
        // Pair each group with an existing slice: same ports first, then any left over.
        let mut plan: Vec<(SliceGroup, Option<EndpointSlice>)> = Vec::new();
        let mut unmatched = Vec::new();
        for g in groups {
            match mine.iter().position(|s| ports_of(s) == g.ports) {
                Some(i) => plan.push((g, Some(mine.remove(i)))),
                None => unmatched.push(g),
            }
        }
        for g in unmatched {
            let existing = (!mine.is_empty()).then(|| mine.remove(0));
            plan.push((g, existing));
        }
        for s in mine {
            delete_slice(&api, &s).await?;
            self.forget_slice(&key, &s.name_any());
        }
        for (g, existing) in plan {
            let wanted = EndpointSlice {
                metadata: ObjectMeta {
                    name: existing.as_ref().map(|e| e.name_any()),
                    generate_name: Some(format!("{name}-")),
                    namespace: Some(ns.to_string()),
                    labels: Some(labels.clone()),
                    owner_references: Some(vec![owner.clone()]),
                    resource_version: existing.as_ref().and_then(|e| e.resource_version()),
                    ..Default::default()
                },
                address_type: "IPv4".into(),
                endpoints: g.endpoints,
                ports: Some(g.ports),
            };
            let written = match existing {
                Some(e) if slice_matches(&e, &wanted) => continue,
                Some(e) => {
                    let mut next = wanted;
                    // Keep metadata others added (annotations, finalizers).
                    next.metadata.annotations = e.metadata.annotations.clone();
                    next.metadata.finalizers = e.metadata.finalizers.clone();
                    api.replace(&e.name_any(), &PostParams::default(), &next)
                        .await?
                }
                None => api.create(&PostParams::default(), &wanted).await?,
            };
            if let Ok(mut w) = self.written.lock() {
                w.entry(key.clone())
                    .or_default()
                    .slices
                    .insert(written.name_any(), written);
            }
        }
        Ok(())
    }

    fn forget_slice(&self, key: &str, name: &str) {
        if let Ok(mut w) = self.written.lock() {
            if let Some(entry) = w.get_mut(key) {
                entry.slices.remove(name);
            }
        }
    }

    async fn sync_endpoints(&self, svc: &Service, ns: &str, pods: &[&Pod]) -> Result<()> {
        let name = svc.name_any();
        let key = format!("{ns}/{name}");
        let cached = self
            .endpoints
            .get(&ObjectRef::new(&name).within(ns))
            .map(|e| e.as_ref().clone());
        let existing = {
            let w = self.written.lock().ok();
            let mine = w
                .as_ref()
                .and_then(|w| w.get(&key))
                .and_then(|e| e.endpoints.as_ref());
            newest(cached, mine)
        };
        let (subsets, truncated) = desired::subsets(svc, pods);
        let mut labels = svc.labels().clone();
        labels.insert(labels::ENDPOINTSLICE_SKIP_MIRROR.into(), "true".into());
        if is_headless(svc) {
            labels.insert(labels::SERVICE_HEADLESS.into(), String::new());
        }
        let mut annotations = existing
            .as_ref()
            .and_then(|e| e.metadata.annotations.clone())
            .unwrap_or_default();
        if truncated {
            annotations.insert(
                annotations::ENDPOINTS_OVER_CAPACITY.into(),
                "truncated".into(),
            );
        } else {
            annotations.remove(annotations::ENDPOINTS_OVER_CAPACITY);
        }
        let subsets = (!subsets.is_empty()).then_some(subsets);
        if let Some(e) = &existing {
            let same_subsets = e.subsets.clone().filter(|s| !s.is_empty()) == subsets;
            if same_subsets
                && e.metadata.labels.as_ref() == Some(&labels)
                && e.metadata.annotations.clone().unwrap_or_default() == annotations
            {
                return Ok(());
            }
        }
        let wanted = Endpoints {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(ns.to_string()),
                labels: Some(labels),
                annotations: (!annotations.is_empty()).then_some(annotations),
                resource_version: existing.as_ref().and_then(|e| e.resource_version()),
                finalizers: existing
                    .as_ref()
                    .and_then(|e| e.metadata.finalizers.clone()),
                ..Default::default()
            },
            subsets,
        };
        let api: Api<Endpoints> = Api::namespaced(self.ctx.client.clone(), ns);
        let written = match existing {
            Some(_) => api.replace(&name, &PostParams::default(), &wanted).await?,
            None => api.create(&PostParams::default(), &wanted).await?,
        };
        if let Ok(mut w) = self.written.lock() {
            w.entry(key).or_default().endpoints = Some(written);
        }
        Ok(())
    }
}

async fn delete_slice(api: &Api<EndpointSlice>, s: &EndpointSlice) -> Result<()> {
    match api.delete(&s.name_any(), &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn is_headless(svc: &Service) -> bool {
    svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

/// The Service's labels plus the controller's own (which win).
fn slice_labels(svc: &Service) -> BTreeMap<String, String> {
    let mut labels = svc.labels().clone();
    labels.insert(labels::SERVICE_NAME.into(), svc.name_any());
    labels.insert(labels::ENDPOINTSLICE_MANAGED_BY.into(), MANAGED_BY.into());
    if is_headless(svc) {
        labels.insert(labels::SERVICE_HEADLESS.into(), String::new());
    } else {
        labels.remove(labels::SERVICE_HEADLESS);
    }
    labels
}

fn owner_ref(svc: &Service) -> OwnerReference {
    OwnerReference {
        api_version: "v1".into(),
        kind: "Service".into(),
        name: svc.name_any(),
        uid: svc.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

fn ports_of(s: &EndpointSlice) -> Vec<k8s_openapi::api::discovery::v1::EndpointPort> {
    s.ports.clone().unwrap_or_default()
}

fn slice_matches(have: &EndpointSlice, want: &EndpointSlice) -> bool {
    have.address_type == want.address_type
        && have.endpoints == want.endpoints
        && ports_of(have) == ports_of(want)
        && have.metadata.labels == want.metadata.labels
        && have.metadata.owner_references == want.metadata.owner_references
}
