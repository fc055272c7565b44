//! The scheduler's filter and score plugins as pure functions over a pod, a node and the
//! [`NodeInfo`] summarising the pods already on (or assumed onto) that node. Names, order and
//! failure reasons follow upstream's default plugin set (NodeUnschedulable, TaintToleration,
//! NodeAffinity, NodePorts, NodeResourcesFit; scores LeastAllocated + default topology spread).

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{
    Container, Node, NodeSelectorRequirement, NodeSelectorTerm, Pod, PodSpec, Taint, Toleration,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use skiff_semantics::labels::{matches_set, Operator};
use skiff_semantics::wellknown::taints;

/// Requests counted by the scheduler (cpu in millicores, memory in bytes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
}

impl Resources {
    fn add(&mut self, o: Resources) {
        self.milli_cpu = self.milli_cpu.saturating_add(o.milli_cpu);
        self.memory = self.memory.saturating_add(o.memory);
    }

    fn max(&mut self, o: Resources) {
        self.milli_cpu = self.milli_cpu.max(o.milli_cpu);
        self.memory = self.memory.max(o.memory);
    }
}

/// Millicores of a cpu quantity (0 if malformed or negative).
pub fn milli_cpu(q: &Quantity) -> i64 {
    skiff_semantics::Quantity::try_from(q)
        .map(|q| q.milli_value().max(0))
        .unwrap_or(0)
}

/// Whole units (bytes, pods) of a quantity, rounded up (0 if malformed or negative).
pub fn units(q: &Quantity) -> i64 {
    skiff_semantics::Quantity::try_from(q)
        .map(|q| q.value().max(0))
        .unwrap_or(0)
}

/// Upstream's defaults for containers without requests, used for scoring only.
const DEFAULT_MILLI_CPU: i64 = 100;
const DEFAULT_MEMORY: i64 = 200 * 1024 * 1024;

fn container_requests(c: &Container, non_zero: bool) -> Resources {
    let req = c.resources.as_ref().and_then(|r| r.requests.as_ref());
    let lim = c.resources.as_ref().and_then(|r| r.limits.as_ref());
    // A limit without a request means request = limit (normally defaulted by the API server).
    let get = |k: &str| {
        req.and_then(|r| r.get(k))
            .or_else(|| lim.and_then(|l| l.get(k)))
    };
    let cpu = get("cpu").map(milli_cpu);
    let memory = get("memory").map(units);
    Resources {
        milli_cpu: cpu.unwrap_or(if non_zero { DEFAULT_MILLI_CPU } else { 0 }),
        memory: memory.unwrap_or(if non_zero { DEFAULT_MEMORY } else { 0 }),
    }
}

/// The pod's effective request: max(Σ app containers + sidecars, max over init containers
/// of (that container + the sidecars started before it)) + overhead, like upstream's
/// `resource.PodRequests`. `non_zero` applies the scoring defaults to unset requests.
pub fn pod_requests(spec: &PodSpec, non_zero: bool) -> Resources {
    let mut sum = Resources::default();
    for c in &spec.containers {
        sum.add(container_requests(c, non_zero));
    }
    let mut sidecars = Resources::default();
    let mut init_max = Resources::default();
    for c in spec.init_containers.iter().flatten() {
        let r = container_requests(c, non_zero);
        if c.restart_policy.as_deref() == Some("Always") {
            sidecars.add(r);
            sum.add(r);
            init_max.max(sidecars);
        } else {
            let mut during = sidecars;
            during.add(r);
            init_max.max(during);
        }
    }
    sum.max(init_max);
    if let Some(o) = &spec.overhead {
        sum.add(Resources {
            milli_cpu: o.get("cpu").map(milli_cpu).unwrap_or(0),
            memory: o.get("memory").map(units).unwrap_or(0),
        });
    }
    sum
}

/// A host port a pod occupies: (protocol, hostIP, port).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    pub protocol: String,
    pub ip: String,
    pub port: i32,
}

pub fn host_ports(spec: &PodSpec) -> Vec<HostPort> {
    let sidecars = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| c.restart_policy.as_deref() == Some("Always"));
    spec.containers
        .iter()
        .chain(sidecars)
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let port = p.host_port.filter(|hp| *hp > 0)?;
            Some(HostPort {
                protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                ip: p
                    .host_ip
                    .clone()
                    .filter(|ip| !ip.is_empty())
                    .unwrap_or_else(|| "0.0.0.0".into()),
                port,
            })
        })
        .collect()
}

fn ports_conflict(a: &HostPort, b: &HostPort) -> bool {
    a.port == b.port
        && a.protocol == b.protocol
        && (a.ip == b.ip || a.ip == "0.0.0.0" || b.ip == "0.0.0.0")
}

/// The uid of the pod's controller (ownerReference with controller: true), for spreading.
pub fn controller_uid(pod: &Pod) -> Option<&str> {
    pod.metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
        .map(|o| o.uid.as_str())
}

/// What is already on a node, from the scheduler's point of view.
#[derive(Debug, Clone, Default)]
pub struct NodeInfo {
    pub requested: Resources,
    /// Requests with the scoring defaults for unset values.
    pub non_zero_requested: Resources,
    pub pods: i64,
    pub host_ports: Vec<HostPort>,
    /// Pods per controller uid.
    pub owners: HashMap<String, i64>,
}

impl NodeInfo {
    pub fn add_pod(&mut self, pod: &Pod) {
        self.add(&PodFacts::of(pod));
    }

    /// Accounts a pod on this node.
    pub fn add(&mut self, facts: &PodFacts) {
        self.requested.add(facts.requests);
        self.non_zero_requested.add(facts.non_zero);
        self.pods += 1;
        self.host_ports.extend(facts.host_ports.iter().cloned());
        if let Some(uid) = &facts.owner {
            *self.owners.entry(uid.clone()).or_default() += 1;
        }
    }
}

/// The node's allocatable cpu (millicores), memory (bytes) and pod count.
#[derive(Debug, Clone, Copy, Default)]
pub struct Allocatable {
    pub milli_cpu: i64,
    pub memory: i64,
    pub pods: i64,
}

pub fn allocatable(node: &Node) -> Allocatable {
    let a = node.status.as_ref().and_then(|s| s.allocatable.as_ref());
    let get = |k: &str| a.and_then(|a| a.get(k));
    Allocatable {
        milli_cpu: get("cpu").map(milli_cpu).unwrap_or(0),
        memory: get("memory").map(units).unwrap_or(0),
        pods: get("pods").map(units).unwrap_or(0),
    }
}

/// Why a node was filtered out: upstream's reason strings, and whether preemption could help
/// (it can't for UnschedulableAndUnresolvable reasons like taints or affinity).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub reasons: Vec<String>,
    pub resolvable: bool,
}

impl Rejection {
    fn unresolvable(reason: impl Into<String>) -> Self {
        Rejection {
            reasons: vec![reason.into()],
            resolvable: false,
        }
    }
}

/// Upstream's `Toleration.ToleratesTaint`.
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = t.effect.as_deref().filter(|e| !e.is_empty()) {
        if effect != taint.effect {
            return false;
        }
    }
    let key = t.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match t.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => {
            // An empty key is only valid with Exists.
            !key.is_empty()
                && t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
        _ => false,
    }
}

pub fn tolerated_by(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| tolerates(t, taint))
}

fn pod_tolerations(pod: &Pod) -> &[Toleration] {
    pod.spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or_default()
}

/// The node's Ready condition status ("True", "False", "Unknown"; None if never posted).
pub fn ready_status(node: &Node) -> Option<&str> {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.status.as_str())
}

fn taint(key: &str, effect: &str) -> Taint {
    Taint {
        key: key.into(),
        effect: effect.into(),
        ..Default::default()
    }
}

/// NodeUnschedulable: a cordoned node only takes pods tolerating its unschedulable taint.
fn filter_unschedulable(pod: &Pod, node: &Node) -> Result<(), Rejection> {
    let cordoned = node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true);
    if cordoned
        && !tolerated_by(
            pod_tolerations(pod),
            &taint(taints::UNSCHEDULABLE, "NoSchedule"),
        )
    {
        return Err(Rejection::unresolvable("node(s) were unschedulable"));
    }
    Ok(())
}

/// TaintToleration: every NoSchedule/NoExecute taint must be tolerated. A node whose Ready
/// condition is not True is treated as carrying the not-ready/unreachable NoSchedule taint even
/// before the node lifecycle controller has added it, so nothing lands on a sick node meanwhile.
fn filter_taints(pod: &Pod, node: &Node) -> Result<(), Rejection> {
    let tolerations = pod_tolerations(pod);
    let mut taints: Vec<Taint> = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let implicit = match ready_status(node) {
        Some("True") => None,
        Some("False") => Some(taints::NOT_READY),
        _ => Some(taints::UNREACHABLE),
    };
    if let Some(key) = implicit {
        if !taints.iter().any(|t| t.key == key) {
            taints.push(taint(key, "NoSchedule"));
        }
    }
    for t in &taints {
        if (t.effect == "NoSchedule" || t.effect == "NoExecute") && !tolerated_by(tolerations, t) {
            return Err(Rejection::unresolvable(format!(
                "node(s) had untolerated taint {{{}: {}}}",
                t.key,
                t.value.as_deref().unwrap_or("")
            )));
        }
    }
    Ok(())
}

fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    Operator::node_selector(&r.operator).is_some_and(|op| op.matches(value, values))
}

/// One nodeSelectorTerm: expressions and fields ANDed; an empty term matches nothing.
pub fn term_matches(term: &NodeSelectorTerm, node: &Node) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    let labels = node.metadata.labels.as_ref();
    let name = node.metadata.name.as_deref().unwrap_or("");
    exprs
        .iter()
        .all(|r| requirement_matches(r, labels.and_then(|l| l.get(&r.key)).map(String::as_str)))
        && fields.iter().all(|r| {
            r.key == "metadata.name"
                && matches!(r.operator.as_str(), "In" | "NotIn")
                && requirement_matches(r, Some(name))
        })
}

/// NodeAffinity: spec.nodeSelector AND required node affinity (terms ORed).
pub fn matches_node_affinity(pod: &Pod, node: &Node) -> bool {
    let Some(spec) = &pod.spec else { return true };
    let empty = BTreeMap::new();
    let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
    if let Some(sel) = &spec.node_selector {
        if !matches_set(sel, labels) {
            return false;
        }
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| {
            na.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    match required {
        Some(sel) => sel
            .node_selector_terms
            .iter()
            .any(|t| term_matches(t, node)),
        None => true,
    }
}

fn filter_ports(ports: &[HostPort], info: &NodeInfo) -> Result<(), Rejection> {
    if ports
        .iter()
        .any(|p| info.host_ports.iter().any(|q| ports_conflict(p, q)))
    {
        return Err(Rejection {
            reasons: vec!["node(s) didn't have free ports for the requested pod ports".into()],
            resolvable: true,
        });
    }
    Ok(())
}

fn filter_fit(req: Resources, alloc: Allocatable, info: &NodeInfo) -> Result<(), Rejection> {
    let mut reasons = Vec::new();
    if info.pods + 1 > alloc.pods {
        reasons.push("Too many pods".to_string());
    }
    if req.milli_cpu > 0 && info.requested.milli_cpu + req.milli_cpu > alloc.milli_cpu {
        reasons.push("Insufficient cpu".to_string());
    }
    if req.memory > 0 && info.requested.memory + req.memory > alloc.memory {
        reasons.push("Insufficient memory".to_string());
    }
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(Rejection {
            reasons,
            resolvable: true,
        })
    }
}

/// What the filters need about the pod, computed once per scheduling attempt.
pub struct PodFacts {
    pub requests: Resources,
    pub non_zero: Resources,
    pub host_ports: Vec<HostPort>,
    pub owner: Option<String>,
}

impl PodFacts {
    pub fn of(pod: &Pod) -> Self {
        match &pod.spec {
            Some(spec) => PodFacts {
                requests: pod_requests(spec, false),
                non_zero: pod_requests(spec, true),
                host_ports: host_ports(spec),
                owner: controller_uid(pod).map(str::to_string),
            },
            None => PodFacts {
                requests: Resources::default(),
                non_zero: Resources::default(),
                host_ports: Vec::new(),
                owner: controller_uid(pod).map(str::to_string),
            },
        }
    }
}

/// Runs the filters in upstream's order; the first failing plugin's reasons are reported.
pub fn filter(pod: &Pod, facts: &PodFacts, node: &Node, info: &NodeInfo) -> Result<(), Rejection> {
    filter_unschedulable(pod, node)?;
    filter_taints(pod, node)?;
    if !matches_node_affinity(pod, node) {
        return Err(Rejection::unresolvable(
            "node(s) didn't match Pod's node affinity/selector",
        ));
    }
    filter_ports(&facts.host_ports, info)?;
    filter_fit(facts.requests, allocatable(node), info)
}

/// NodeResourcesFit with the LeastAllocated strategy: mean over cpu and memory of
/// `(allocatable − requested)·100/allocatable`, requested including this pod (0–100).
pub fn least_allocated(facts: &PodFacts, node: &Node, info: &NodeInfo) -> i64 {
    let alloc = allocatable(node);
    let one = |alloc: i64, used: i64| {
        if alloc <= 0 || used > alloc {
            0
        } else {
            (alloc - used) * 100 / alloc
        }
    };
    let cpu = one(
        alloc.milli_cpu,
        info.non_zero_requested.milli_cpu + facts.non_zero.milli_cpu,
    );
    let mem = one(
        alloc.memory,
        info.non_zero_requested.memory + facts.non_zero.memory,
    );
    (cpu + mem) / 2
}

/// Default spreading: pods of the same controller on this node vs the most loaded feasible node
/// (`max_count`); fewer is better (0–100).
pub fn spread(owner_count: i64, max_count: i64) -> i64 {
    if max_count <= 0 {
        100
    } else {
        (max_count - owner_count) * 100 / max_count
    }
}

/// Weights of the scores (upstream: NodeResourcesFit 1, PodTopologySpread 2).
pub const WEIGHT_LEAST_ALLOCATED: i64 = 1;
pub const WEIGHT_SPREAD: i64 = 2;

/// Builds upstream's FitError message from the rejections of all nodes:
/// `0/3 nodes are available: 1 Insufficient cpu, 2 node(s) didn't match Pod's node
/// affinity/selector. preemption: 0/3 nodes are available: 1 No preemption victims found for
/// incoming pod, 2 Preemption is not helpful for scheduling.`
pub fn fit_error(num_nodes: usize, rejections: &[Rejection]) -> String {
    if num_nodes == 0 {
        return "no nodes available to schedule pods".into();
    }
    let mut histogram: BTreeMap<&str, usize> = BTreeMap::new();
    let (mut resolvable, mut unresolvable) = (0, 0);
    for r in rejections {
        for reason in &r.reasons {
            *histogram.entry(reason.as_str()).or_default() += 1;
        }
        if r.resolvable {
            resolvable += 1;
        } else {
            unresolvable += 1;
        }
    }
    let mut parts: Vec<String> = histogram.iter().map(|(r, n)| format!("{n} {r}")).collect();
    parts.sort();
    let mut msg = format!("0/{num_nodes} nodes are available: {}.", parts.join(", "));
    let mut pre = Vec::new();
    if resolvable > 0 {
        pre.push(format!(
            "{resolvable} No preemption victims found for incoming pod"
        ));
    }
    if unresolvable > 0 {
        pre.push(format!(
            "{unresolvable} Preemption is not helpful for scheduling"
        ));
    }
    pre.sort();
    msg.push_str(&format!(
        " preemption: 0/{num_nodes} nodes are available: {}.",
        pre.join(", ")
    ));
    msg
}
