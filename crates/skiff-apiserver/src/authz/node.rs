//! The Node authorizer (upstream's `--authorization-mode=Node`): a node identity
//! (`system:node:<n>` in `system:nodes`) may read exactly the Secrets, ConfigMaps,
//! PersistentVolumeClaims (and their PersistentVolumes) and request tokens for the
//! ServiceAccounts that pods bound to it reference, its own Node and Lease, and otherwise what
//! upstream's static node rules allow. Who references what is a graph kept current from one
//! store watch (no store read per request); the NodeRestriction admission plugin
//! (`plugins/noderestriction.rs`) checks what the authorizer cannot see (the object written).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use skiff_store::{EventKind, ListOptions, Store, StoreError};

use super::{Attributes, Authorizer, Decision};
use crate::auth::user::{groups, NODE_PREFIX};
use crate::AppState;

const PODS: &str = "/registry/core/pods/";
const PVCS: &str = "/registry/core/persistentvolumeclaims/";
/// The namespace of node Leases.
pub(crate) const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

/// Kinds of graph vertices a node may reach through its pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    Pod,
    Secret,
    ConfigMap,
    Pvc,
    ServiceAccount,
    Pv,
}

type Vertex = (Kind, String, String);

/// The pod → object references of one bound pod.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct PodRefs {
    pub node: String,
    pub refs: HashSet<Vertex>,
}

/// The references of a pod object that count for its node; None for an unbound pod.
pub(crate) fn pod_refs(pod: &Value) -> Option<PodRefs> {
    let node = pod.pointer("/spec/nodeName")?.as_str()?;
    if node.is_empty() {
        return None;
    }
    let meta = pod.get("metadata")?;
    let ns = meta.get("namespace")?.as_str()?.to_string();
    let name = meta.get("name")?.as_str()?.to_string();
    let spec = pod.get("spec")?;
    let mut refs = HashSet::new();
    let mut add = |kind: Kind, v: Option<&Value>| {
        if let Some(n) = v.and_then(Value::as_str).filter(|n| !n.is_empty()) {
            refs.insert((kind, ns.clone(), n.to_string()));
        }
    };
    add(Kind::Pod, Some(&Value::String(name.clone())));
    add(
        Kind::ServiceAccount,
        spec.get("serviceAccountName")
            .or_else(|| spec.get("serviceAccount")),
    );
    for s in arr(spec.get("imagePullSecrets")) {
        add(Kind::Secret, s.get("name"));
    }
    for field in ["containers", "initContainers", "ephemeralContainers"] {
        for c in arr(spec.get(field)) {
            for e in arr(c.get("env")) {
                add(Kind::Secret, e.pointer("/valueFrom/secretKeyRef/name"));
                add(
                    Kind::ConfigMap,
                    e.pointer("/valueFrom/configMapKeyRef/name"),
                );
            }
            for e in arr(c.get("envFrom")) {
                add(Kind::Secret, e.pointer("/secretRef/name"));
                add(Kind::ConfigMap, e.pointer("/configMapRef/name"));
            }
        }
    }
    for v in arr(spec.get("volumes")) {
        add(Kind::Secret, v.pointer("/secret/secretName"));
        add(Kind::ConfigMap, v.pointer("/configMap/name"));
        for src in arr(v.pointer("/projected/sources")) {
            add(Kind::Secret, src.pointer("/secret/name"));
            add(Kind::ConfigMap, src.pointer("/configMap/name"));
        }
        add(Kind::Pvc, v.pointer("/persistentVolumeClaim/claimName"));
        if v.get("ephemeral").is_some() {
            // A generic ephemeral volume's claim is named `<pod>-<volume>`.
            if let Some(vol) = v.get("name").and_then(Value::as_str) {
                add(Kind::Pvc, Some(&Value::String(format!("{name}-{vol}"))));
            }
        }
        // Volume plugins' credentials (in the pod's namespace).
        for p in [
            "/azureFile/secretName",
            "/cephfs/secretRef/name",
            "/cinder/secretRef/name",
            "/flexVolume/secretRef/name",
            "/iscsi/secretRef/name",
            "/rbd/secretRef/name",
            "/scaleIO/secretRef/name",
            "/storageos/secretRef/name",
            "/csi/nodePublishSecretRef/name",
        ] {
            add(Kind::Secret, v.pointer(p));
        }
    }
    Some(PodRefs {
        node: node.to_string(),
        refs,
    })
}

fn arr(v: Option<&Value>) -> impl Iterator<Item = &Value> {
    v.and_then(Value::as_array).into_iter().flatten()
}

/// `(namespace, name)` of a namespaced key under `prefix`.
fn ns_name<'a>(prefix: &str, key: &'a str) -> Option<(&'a str, &'a str)> {
    key.strip_prefix(prefix)?.split_once('/')
}

#[derive(Default)]
struct State {
    pods: HashMap<(String, String), PodRefs>,
    /// Reference counts: vertex → node → number of that node's pods referencing it.
    edges: HashMap<Vertex, HashMap<String, u32>>,
    /// PVC → the PV it is bound to (spec.volumeName).
    pvc_volume: HashMap<(String, String), String>,
    /// PV → the PVCs bound to it.
    pv_claims: HashMap<String, HashSet<(String, String)>>,
}

impl State {
    fn set_pod(&mut self, key: (String, String), refs: Option<PodRefs>) {
        if let Some(old) = self.pods.remove(&key) {
            for v in &old.refs {
                if let Some(nodes) = self.edges.get_mut(v) {
                    if let Some(c) = nodes.get_mut(&old.node) {
                        *c = c.saturating_sub(1);
                        if *c == 0 {
                            nodes.remove(&old.node);
                        }
                    }
                    if nodes.is_empty() {
                        self.edges.remove(v);
                    }
                }
            }
        }
        if let Some(new) = refs {
            for v in &new.refs {
                *self
                    .edges
                    .entry(v.clone())
                    .or_default()
                    .entry(new.node.clone())
                    .or_default() += 1;
            }
            self.pods.insert(key, new);
        }
    }

    fn set_pvc(&mut self, key: (String, String), volume: Option<String>) {
        if let Some(old) = self.pvc_volume.remove(&key) {
            if let Some(claims) = self.pv_claims.get_mut(&old) {
                claims.remove(&key);
                if claims.is_empty() {
                    self.pv_claims.remove(&old);
                }
            }
        }
        if let Some(pv) = volume.filter(|v| !v.is_empty()) {
            self.pv_claims
                .entry(pv.clone())
                .or_default()
                .insert(key.clone());
            self.pvc_volume.insert(key, pv);
        }
    }

    fn related(&self, node: &str, kind: Kind, ns: &str, name: &str) -> bool {
        if kind == Kind::Pv {
            return self.pv_claims.get(name).is_some_and(|claims| {
                claims
                    .iter()
                    .any(|(ns, pvc)| self.related(node, Kind::Pvc, ns, pvc))
            });
        }
        self.edges
            .get(&(kind, ns.to_string(), name.to_string()))
            .is_some_and(|nodes| nodes.contains_key(node))
    }

    fn apply(&mut self, key: &str, value: Option<&[u8]>) {
        if let Some((ns, name)) = ns_name(PODS, key) {
            let refs = value
                .and_then(|v| serde_json::from_slice::<Value>(v).ok())
                .and_then(|p| pod_refs(&p));
            self.set_pod((ns.to_string(), name.to_string()), refs);
        } else if let Some((ns, name)) = ns_name(PVCS, key) {
            let volume = value
                .and_then(|v| serde_json::from_slice::<Value>(v).ok())
                .and_then(|p| {
                    p.pointer("/spec/volumeName")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                });
            self.set_pvc((ns.to_string(), name.to_string()), volume);
        }
    }
}

/// The node → object graph, fed by a store watch.
pub(crate) struct Graph {
    state: RwLock<State>,
    /// The store revision the graph reflects.
    revision: tokio::sync::watch::Sender<i64>,
}

impl Graph {
    fn new() -> Self {
        Graph {
            state: RwLock::new(State::default()),
            revision: tokio::sync::watch::channel(0).0,
        }
    }

    /// Whether `name` of `kind` in `ns` is referenced by a pod bound to `node`.
    pub(crate) fn related(&self, node: &str, kind: Kind, ns: &str, name: &str) -> bool {
        match self.state.read() {
            Ok(s) => s.related(node, kind, ns, name),
            Err(poisoned) => poisoned.into_inner().related(node, kind, ns, name),
        }
    }

    fn with_state(&self, f: impl FnOnce(&mut State)) {
        match self.state.write() {
            Ok(mut s) => f(&mut s),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// Rebuilds the graph from a consistent list of pods and claims; returns its revision.
    async fn relist(&self, store: &dyn Store) -> Result<i64, StoreError> {
        let (pods, rev) = list_all(store, PODS, 0).await?;
        let (pvcs, _) = list_all(store, PVCS, rev).await?;
        let mut fresh = State::default();
        for kv in pods.iter().chain(&pvcs) {
            fresh.apply(&kv.key, Some(&kv.value));
        }
        self.with_state(|s| *s = fresh);
        self.revision.send_replace(rev);
        Ok(rev)
    }

    /// Waits (briefly) until the graph reflects every write committed before now: a denial
    /// should not come from a pod binding the watch has not delivered yet.
    async fn catch_up(&self, store: &dyn Store) {
        let Ok(current) = store.current_revision().await else {
            return;
        };
        let mut rx = self.revision.subscribe();
        let _ = tokio::time::timeout(Duration::from_secs(2), rx.wait_for(|r| *r >= current)).await;
    }
}

async fn list_all(
    store: &dyn Store,
    prefix: &str,
    revision: i64,
) -> Result<(Vec<skiff_store::KeyValue>, i64), StoreError> {
    let mut items = Vec::new();
    let mut opts = ListOptions {
        limit: 500,
        start_after: None,
        revision,
    };
    loop {
        let page = store.list(prefix, &opts).await?;
        opts.revision = page.revision;
        opts.start_after = page.items.last().map(|kv| kv.key.clone());
        items.extend(page.items);
        if !page.more || opts.start_after.is_none() {
            return Ok((items, opts.revision));
        }
    }
}

/// Keeps `graph` current: one watch over the whole store (so the graph's revision tracks the
/// store's), re-listing whenever the watch ends (compaction, a slow consumer).
async fn follow(
    graph: Arc<Graph>,
    store: Arc<dyn Store>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    mut rev: i64,
) {
    loop {
        if *shutdown.borrow() {
            return;
        }
        // Every key, so the graph's revision is the store's once it has caught up.
        match store.watch("/", rev).await {
            Ok(mut w) => loop {
                let ev = tokio::select! {
                    ev = w.events.recv() => ev,
                    _ = shutdown.changed() => return,
                };
                let Some(Ok(ev)) = ev else { break };
                let value = (ev.kind == EventKind::Put).then_some(ev.kv.value.as_slice());
                let key = ev.kv.key.as_str();
                if key.starts_with(PODS) || key.starts_with(PVCS) {
                    graph.with_state(|s| s.apply(key, value));
                }
                rev = ev.kv.mod_revision;
                graph.revision.send_replace(rev);
            },
            Err(e) => {
                tracing::debug!("node authorizer: watching the store: {e}");
                // Not a busy loop when the store refuses watches.
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                    _ = shutdown.changed() => return,
                }
            }
        }
        // The watch ended or could not start: rebuild from a fresh list.
        loop {
            match graph.relist(&*store).await {
                Ok(r) => {
                    rev = r;
                    break;
                }
                Err(e) => {
                    tracing::warn!("node authorizer: listing pods: {e}");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = shutdown.changed() => return,
                    }
                }
            }
        }
    }
}

/// Upstream's `NodeAuthorizer`.
#[derive(Default)]
pub(crate) struct NodeAuthorizer {
    graph: tokio::sync::OnceCell<Arc<Graph>>,
}

impl NodeAuthorizer {
    /// The graph, built and followed from the first node request on.
    async fn graph(&self, st: &AppState) -> Result<&Arc<Graph>, StoreError> {
        self.graph
            .get_or_try_init(|| async {
                let graph = Arc::new(Graph::new());
                let rev = graph.relist(&*st.store).await?;
                tokio::spawn(follow(
                    graph.clone(),
                    st.store.clone(),
                    st.shutdown.clone(),
                    rev,
                ));
                Ok(graph)
            })
            .await
    }

    /// Allows when the object is related to the node (the graph check shared by all kinds).
    async fn related(&self, st: &AppState, node: &str, kind: Kind, attrs: &Attributes) -> Decision {
        if attrs.name.is_empty() {
            return no("No Object name found");
        }
        let graph = match self.graph(st).await {
            Ok(g) => g,
            Err(e) => return no(&format!("node authorizer graph unavailable: {e}")),
        };
        let check = || graph.related(node, kind, &attrs.namespace, &attrs.name);
        if check() {
            return Decision::Allow;
        }
        graph.catch_up(&*st.store).await;
        if check() {
            return Decision::Allow;
        }
        no(&format!(
            "no relationship found between node '{node}' and this object"
        ))
    }
}

fn no(reason: &str) -> Decision {
    Decision::NoOpinion(reason.to_string())
}

#[async_trait]
impl Authorizer for NodeAuthorizer {
    async fn authorize(&self, st: &AppState, attrs: &Attributes) -> Decision {
        // Upstream's NodeIdentity: the name prefix and the group together make a node.
        let Some(node) = attrs.user.name.strip_prefix(NODE_PREFIX) else {
            return no("");
        };
        if !attrs.user.in_group(groups::NODES) {
            return no("");
        }
        if node.is_empty() {
            return no(&format!("unknown node for user {:?}", attrs.user.name));
        }
        if !attrs.resource_request {
            return no("");
        }
        let verb = attrs.verb.as_str();
        let sub = attrs.subresource.as_str();
        let decision = match (attrs.api_group.as_str(), attrs.resource.as_str()) {
            ("", "secrets") => Some(self.read_namespaced(st, node, Kind::Secret, attrs).await),
            ("", "configmaps") => {
                Some(self.read_namespaced(st, node, Kind::ConfigMap, attrs).await)
            }
            ("", "persistentvolumeclaims") if sub == "status" => Some(match verb {
                "update" | "patch" => self.related(st, node, Kind::Pvc, attrs).await,
                _ => no("can only get/update/patch this type"),
            }),
            ("", "persistentvolumeclaims") => Some(self.get(st, node, Kind::Pvc, attrs).await),
            // skiff: a node also lists/watches volumes and removes the local-path cleanup
            // finalizer of its own (NodeRestriction checks which), to delete their directories.
            ("", "persistentvolumes") if attrs.subresource.is_empty() => Some(match verb {
                "list" | "watch" | "update" | "patch" => Decision::Allow,
                _ => self.get(st, node, Kind::Pv, attrs).await,
            }),
            ("", "persistentvolumes") => Some(self.get(st, node, Kind::Pv, attrs).await),
            ("", "serviceaccounts") => Some(if verb != "create" || attrs.name.is_empty() {
                no("can only create tokens for individual service accounts")
            } else if sub != "token" {
                no("can only create token subresource of serviceaccount")
            } else {
                self.related(st, node, Kind::ServiceAccount, attrs).await
            }),
            ("coordination.k8s.io", "leases") => Some(lease(node, attrs)),
            ("storage.k8s.io", "csinodes") => Some(csinode(node, attrs)),
            ("", "nodes") => node_object(node, attrs),
            ("", "pods") => Some(self.pod(st, node, attrs).await),
            _ => None,
        };
        match decision {
            // skiff's agent is also the node's service proxy (see `PROXIER_RULES`).
            Some(Decision::NoOpinion(_)) if static_rules_allow_extra(attrs) => Decision::Allow,
            Some(d) => d,
            None if static_rules_allow(attrs) => Decision::Allow,
            None => no(""),
        }
    }
}

impl NodeAuthorizer {
    /// get/list/watch of single namespaced objects related to the node.
    async fn read_namespaced(
        &self,
        st: &AppState,
        node: &str,
        kind: Kind,
        attrs: &Attributes,
    ) -> Decision {
        if !matches!(attrs.verb.as_str(), "get" | "list" | "watch") {
            return no("can only read resources of this type");
        }
        if !attrs.subresource.is_empty() {
            return no("cannot read subresource");
        }
        if attrs.namespace.is_empty() {
            return no("can only read namespaced object of this type");
        }
        self.related(st, node, kind, attrs).await
    }

    async fn get(&self, st: &AppState, node: &str, kind: Kind, attrs: &Attributes) -> Decision {
        if attrs.verb != "get" {
            return no("can only get individual resources of this type");
        }
        if !attrs.subresource.is_empty() {
            return no("cannot get subresource");
        }
        self.related(st, node, kind, attrs).await
    }

    /// Pods, with upstream's AuthorizeNodeWithSelectors (on by default): lists and watches
    /// only of the node's own pods.
    async fn pod(&self, st: &AppState, node: &str, attrs: &Attributes) -> Decision {
        match (attrs.subresource.as_str(), attrs.verb.as_str()) {
            ("", "get") => self.get(st, node, Kind::Pod, attrs).await,
            ("", "list" | "watch") => {
                if attrs
                    .field_selector
                    .iter()
                    .any(|(k, v)| k == "spec.nodeName" && v == node)
                {
                    Decision::Allow
                } else if !attrs.name.is_empty() {
                    self.related(st, node, Kind::Pod, attrs).await
                } else {
                    no("can only list/watch pods with spec.nodeName field selector")
                }
            }
            // Mirror pods and the node's own pods; NodeRestriction checks which.
            ("", "create" | "delete") => Decision::Allow,
            ("status", "update" | "patch") => Decision::Allow,
            ("eviction", "create") => Decision::Allow,
            _ => no(""),
        }
    }
}

fn lease(node: &str, attrs: &Attributes) -> Decision {
    let verb = attrs.verb.as_str();
    if !matches!(verb, "get" | "create" | "update" | "patch" | "delete") {
        return no("can only get, create, update, patch, or delete a node lease");
    }
    if attrs.namespace != NODE_LEASE_NAMESPACE {
        return no(&format!(
            "can only access leases in the {NODE_LEASE_NAMESPACE:?} system namespace"
        ));
    }
    // The name of a create is checked by NodeRestriction (the authorizer cannot see it).
    if verb != "create" && attrs.name != node {
        return no("can only access node lease with the same name as the requesting node");
    }
    Decision::Allow
}

fn csinode(node: &str, attrs: &Attributes) -> Decision {
    let verb = attrs.verb.as_str();
    if !matches!(verb, "get" | "create" | "update" | "patch" | "delete") {
        return no("can only get, create, update, patch, or delete a CSINode");
    }
    if !attrs.subresource.is_empty() {
        return no("cannot authorize CSINode subresources");
    }
    if verb != "create" && attrs.name != node {
        return no("can only access CSINode with the same name as the requesting node");
    }
    Decision::Allow
}

/// The node's own Node object (AuthorizeNodeWithSelectors); None falls through to the static
/// rules like upstream's unmatched cases.
fn node_object(node: &str, attrs: &Attributes) -> Option<Decision> {
    match (attrs.subresource.as_str(), attrs.verb.as_str()) {
        // NodeRestriction limits writes to the node's own object.
        ("", "create" | "update" | "patch") => Some(Decision::Allow),
        ("", "get" | "list" | "watch") => Some(match attrs.name.as_str() {
            n if n == node => Decision::Allow,
            "" => no(&format!(
                "node '{node}' cannot read all nodes, only its own Node object"
            )),
            other => no(&format!(
                "node '{node}' cannot read '{other}', only its own Node object"
            )),
        }),
        ("status", "update" | "patch") => Some(Decision::Allow),
        _ => Some(no("")),
    }
}

/// A static policy rule: verbs × API groups × resources (`resource` or `resource/sub`).
struct Rule {
    verbs: &'static [&'static str],
    groups: &'static [&'static str],
    resources: &'static [&'static str],
}

const READ: &[&str] = &["get", "list", "watch"];

/// Upstream's bootstrap-policy `NodeRules()` for the resources the graph does not subdivide.
const NODE_RULES: &[Rule] = &[
    Rule {
        verbs: &["create"],
        groups: &["authentication.k8s.io"],
        resources: &["tokenreviews"],
    },
    Rule {
        verbs: &["create"],
        groups: &["authorization.k8s.io"],
        resources: &["subjectaccessreviews", "localsubjectaccessreviews"],
    },
    Rule {
        verbs: READ,
        groups: &[""],
        resources: &["services"],
    },
    Rule {
        verbs: &["create", "get", "list", "watch"],
        groups: &[""],
        resources: &["nodes"],
    },
    Rule {
        verbs: &["update", "patch"],
        groups: &[""],
        resources: &["nodes/status", "nodes"],
    },
    Rule {
        verbs: &["create", "update", "patch"],
        groups: &[""],
        resources: &["events"],
    },
    Rule {
        verbs: &["create", "delete"],
        groups: &[""],
        resources: &["pods"],
    },
    Rule {
        verbs: &["update", "patch"],
        groups: &[""],
        resources: &["pods/status"],
    },
    Rule {
        verbs: &["create"],
        groups: &[""],
        resources: &["pods/eviction"],
    },
    Rule {
        verbs: &["get"],
        groups: &[""],
        resources: &["endpoints"],
    },
    Rule {
        verbs: &["create", "get", "list", "watch"],
        groups: &["certificates.k8s.io"],
        resources: &["certificatesigningrequests"],
    },
    Rule {
        verbs: &["get", "create", "update", "patch", "delete"],
        groups: &["coordination.k8s.io"],
        resources: &["leases"],
    },
    Rule {
        verbs: &["get"],
        groups: &["storage.k8s.io"],
        resources: &["volumeattachments"],
    },
    Rule {
        verbs: READ,
        groups: &["storage.k8s.io"],
        resources: &["csidrivers"],
    },
    Rule {
        verbs: &["get", "create", "update", "patch", "delete"],
        groups: &["storage.k8s.io"],
        resources: &["csinodes"],
    },
    Rule {
        verbs: READ,
        groups: &["node.k8s.io"],
        resources: &["runtimeclasses"],
    },
];

/// skiff's agent is also the node's service proxy, route controller and DNS (upstream's
/// kube-proxy, flannel, CoreDNS data), so the node identity also holds upstream's
/// `system:node-proxier` rules: it reads Services, EndpointSlices and every Node (pod CIDR
/// routes). None of these carries Secret data.
const PROXIER_RULES: &[Rule] = &[
    Rule {
        verbs: &["list", "watch"],
        groups: &[""],
        resources: &["endpoints", "services"],
    },
    Rule {
        verbs: READ,
        groups: &[""],
        resources: &["nodes"],
    },
    Rule {
        verbs: &["create", "patch", "update"],
        groups: &["", "events.k8s.io"],
        resources: &["events"],
    },
    Rule {
        verbs: &["list", "watch"],
        groups: &["discovery.k8s.io"],
        resources: &["endpointslices"],
    },
    // NetworkPolicy enforcement (kube-router's and Calico's node agents hold the same): every
    // pod's labels and IP, namespace labels and the policies.
    Rule {
        verbs: &["list", "watch"],
        groups: &[""],
        resources: &["pods", "namespaces"],
    },
    Rule {
        verbs: &["list", "watch"],
        groups: &["networking.k8s.io"],
        resources: &["networkpolicies"],
    },
];

fn rule_allows(rule: &Rule, attrs: &Attributes) -> bool {
    let resource = attrs.resource_and_sub();
    rule.verbs.iter().any(|v| *v == attrs.verb)
        && rule.groups.iter().any(|g| *g == attrs.api_group)
        && rule.resources.iter().any(|r| *r == resource)
}

/// The static node rules (the one place to swap for the RBAC matcher).
fn static_rules_allow(attrs: &Attributes) -> bool {
    attrs.resource_request
        && (NODE_RULES.iter().any(|r| rule_allows(r, attrs)) || static_rules_allow_extra(attrs))
}

/// The proxier rules, which also apply where the node checks above said no (listing Nodes).
fn static_rules_allow_extra(attrs: &Attributes) -> bool {
    attrs.resource_request && PROXIER_RULES.iter().any(|r| rule_allows(r, attrs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(ns: &str, name: &str, node: &str) -> Value {
        json!({
            "metadata": {"namespace": ns, "name": name},
            "spec": {
                "nodeName": node,
                "serviceAccountName": "runner",
                "imagePullSecrets": [{"name": "pull"}],
                "containers": [{
                    "name": "c",
                    "env": [
                        {"name": "A", "valueFrom": {"secretKeyRef": {"name": "env-secret", "key": "k"}}},
                        {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "env-cm", "key": "k"}}},
                    ],
                    "envFrom": [{"secretRef": {"name": "from-secret"}}, {"configMapRef": {"name": "from-cm"}}],
                }],
                "initContainers": [{"name": "i", "envFrom": [{"secretRef": {"name": "init-secret"}}]}],
                "volumes": [
                    {"name": "s", "secret": {"secretName": "vol-secret"}},
                    {"name": "m", "configMap": {"name": "vol-cm"}},
                    {"name": "p", "projected": {"sources": [
                        {"secret": {"name": "proj-secret"}},
                        {"configMap": {"name": "proj-cm"}},
                        {"serviceAccountToken": {"path": "token"}},
                    ]}},
                    {"name": "d", "persistentVolumeClaim": {"claimName": "data"}},
                    {"name": "e", "ephemeral": {"volumeClaimTemplate": {}}},
                    {"name": "c", "csi": {"driver": "x", "nodePublishSecretRef": {"name": "csi-secret"}}},
                ],
            },
        })
    }

    #[test]
    fn pods_reference_what_the_kubelet_reads() {
        let refs = pod_refs(&pod("ns", "web", "n1")).unwrap();
        assert_eq!(refs.node, "n1");
        let has = |k, n: &str| refs.refs.contains(&(k, "ns".to_string(), n.to_string()));
        for s in [
            "pull",
            "env-secret",
            "from-secret",
            "init-secret",
            "vol-secret",
            "proj-secret",
            "csi-secret",
        ] {
            assert!(has(Kind::Secret, s), "{s}");
        }
        for c in ["env-cm", "from-cm", "vol-cm", "proj-cm"] {
            assert!(has(Kind::ConfigMap, c), "{c}");
        }
        assert!(has(Kind::Pvc, "data"));
        assert!(has(Kind::Pvc, "web-e"));
        assert!(has(Kind::ServiceAccount, "runner"));
        assert!(has(Kind::Pod, "web"));
        assert_eq!(refs.refs.len(), 15);
        let mut unbound = pod("ns", "web", "");
        assert_eq!(pod_refs(&unbound), None);
        unbound["spec"].as_object_mut().unwrap().remove("nodeName");
        assert_eq!(pod_refs(&unbound), None);
    }

    #[test]
    fn graph_follows_pods_and_claims() {
        let mut s = State::default();
        let key = |ns: &str, n: &str| format!("{PODS}{ns}/{n}");
        let bytes = |v: &Value| serde_json::to_vec(v).unwrap();
        s.apply(&key("ns", "a"), Some(&bytes(&pod("ns", "a", "n1"))));
        s.apply(&key("ns", "b"), Some(&bytes(&pod("ns", "b", "n1"))));
        assert!(s.related("n1", Kind::Secret, "ns", "vol-secret"));
        assert!(!s.related("n2", Kind::Secret, "ns", "vol-secret"));
        assert!(!s.related("n1", Kind::Secret, "other", "vol-secret"));
        // One of two pods goes: the secret stays related; both go: it does not.
        s.apply(&key("ns", "a"), None);
        assert!(s.related("n1", Kind::Secret, "ns", "vol-secret"));
        // Rebinding moves the edges to the new node.
        s.apply(&key("ns", "b"), Some(&bytes(&pod("ns", "b", "n2"))));
        assert!(!s.related("n1", Kind::Secret, "ns", "vol-secret"));
        assert!(s.related("n2", Kind::Secret, "ns", "vol-secret"));
        // PV through its bound claim.
        s.apply(
            &format!("{PVCS}ns/data"),
            Some(&bytes(&json!({"spec": {"volumeName": "pv-1"}}))),
        );
        assert!(s.related("n2", Kind::Pv, "", "pv-1"));
        assert!(!s.related("n1", Kind::Pv, "", "pv-1"));
        s.apply(&format!("{PVCS}ns/data"), None);
        assert!(!s.related("n2", Kind::Pv, "", "pv-1"));
        s.apply(&key("ns", "b"), None);
        assert!(s.edges.is_empty() && s.pods.is_empty());
    }

    fn attrs(verb: &str, group: &str, resource: &str, ns: &str, name: &str) -> Attributes {
        Attributes {
            user: Arc::new(crate::auth::UserInfo::for_node("n1")),
            verb: verb.into(),
            resource_request: true,
            api_group: group.into(),
            resource: resource.into(),
            namespace: ns.into(),
            name: name.into(),
            ..Default::default()
        }
    }

    #[test]
    fn static_checks_follow_upstream() {
        let l = |verb, ns, name| {
            lease(
                "n1",
                &attrs(verb, "coordination.k8s.io", "leases", ns, name),
            )
        };
        assert_eq!(l("get", "kube-node-lease", "n1"), Decision::Allow);
        assert_eq!(l("create", "kube-node-lease", ""), Decision::Allow);
        assert_eq!(
            l("update", "kube-node-lease", "n2"),
            no("can only access node lease with the same name as the requesting node")
        );
        assert_eq!(
            l("get", "default", "n1"),
            no("can only access leases in the \"kube-node-lease\" system namespace")
        );
        assert_eq!(
            l("list", "kube-node-lease", ""),
            no("can only get, create, update, patch, or delete a node lease")
        );
        let n = |verb, name| node_object("n1", &attrs(verb, "", "nodes", "", name));
        assert_eq!(n("get", "n1"), Some(Decision::Allow));
        assert_eq!(
            n("get", "n2"),
            Some(no("node 'n1' cannot read 'n2', only its own Node object"))
        );
        assert!(static_rules_allow(&attrs("list", "", "nodes", "", "")));
        assert!(static_rules_allow(&attrs(
            "watch",
            "discovery.k8s.io",
            "endpointslices",
            "",
            ""
        )));
        assert!(static_rules_allow(&attrs("list", "", "namespaces", "", "")));
        assert!(static_rules_allow(&attrs(
            "watch",
            "networking.k8s.io",
            "networkpolicies",
            "",
            ""
        )));
        assert!(!static_rules_allow(&attrs(
            "get",
            "",
            "namespaces",
            "",
            "x"
        )));
        assert!(!static_rules_allow(&attrs("get", "", "secrets", "ns", "x")));
        assert!(!static_rules_allow(&attrs(
            "create",
            "",
            "pods/binding",
            "ns",
            "x"
        )));
    }
}
