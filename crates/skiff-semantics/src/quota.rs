//! Resource quota accounting that the API server's admission and the ResourceQuota controller
//! must agree on (upstream `pkg/quota/v1` and its core evaluators): what an object charges
//! (`pods`, `requests.cpu`, `count/deployments.apps`, …), which quotas it counts against
//! (scopes, scopeSelector), resource lists with upstream's canonical quantity text, and the
//! LimitRange defaulting of a LimitRange item.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::qos::{pod_qos_json, QosClass};
use crate::quantity::Quantity;

/// A quantity with the format it prints in (binary `Ki` or decimal SI), like upstream's
/// `resource.Quantity` keeps the format it was parsed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Amount {
    pub q: Quantity,
    pub binary: bool,
}

impl Amount {
    pub fn parse(text: &str) -> Option<Amount> {
        let q = Quantity::parse(text).ok()?;
        Some(Amount {
            q,
            binary: text.trim().ends_with('i'),
        })
    }

    pub fn count(n: i64) -> Amount {
        Amount {
            q: Quantity::new(i128::from(n), 0),
            binary: false,
        }
    }

    /// The sum; keeps `self`'s format unless `self` is zero (upstream's `Add`).
    pub fn plus(&self, other: &Amount) -> Amount {
        Amount {
            q: self.q.saturating_add(&other.q),
            binary: if self.q.is_zero() {
                other.binary
            } else {
                self.binary
            },
        }
    }

    pub fn minus(&self, other: &Amount) -> Amount {
        Amount {
            q: self.q.saturating_add(&other.q.negated()),
            binary: self.binary,
        }
    }

    /// Upstream's `Quantity.String()`.
    pub fn text(&self) -> String {
        self.q.canonical(self.binary)
    }
}

/// Resource name → amount, sorted by name (upstream sorts resource names in its messages).
pub type ResourceList = BTreeMap<String, Amount>;

/// A `ResourceList` JSON object; entries that do not parse are skipped (validation refused
/// them already).
pub fn parse_list(v: Option<&Value>) -> ResourceList {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), Amount::parse(v.as_str()?)?)))
                .collect()
        })
        .unwrap_or_default()
}

/// The JSON object of a list, in canonical quantity text.
pub fn list_json(list: &ResourceList) -> Value {
    Value::Object(
        list.iter()
            .map(|(k, v)| (k.clone(), Value::String(v.text())))
            .collect(),
    )
}

/// `a + b` key by key.
pub fn add(a: &ResourceList, b: &ResourceList) -> ResourceList {
    let mut out = a.clone();
    for (k, v) in b {
        out.entry(k.clone())
            .and_modify(|x| *x = x.plus(v))
            .or_insert(*v);
    }
    out
}

/// `a - b` key by key (keys only in `b` are negated).
pub fn subtract(a: &ResourceList, b: &ResourceList) -> ResourceList {
    let mut out = a.clone();
    for (k, v) in b {
        out.entry(k.clone())
            .and_modify(|x| *x = x.minus(v))
            .or_insert(Amount {
                q: v.q.negated(),
                binary: v.binary,
            });
    }
    out
}

/// Only the keys of `list` that `names` holds (upstream's `Mask`).
pub fn mask(list: &ResourceList, names: &[String]) -> ResourceList {
    list.iter()
        .filter(|(k, _)| names.iter().any(|n| n == *k))
        .map(|(k, v)| (k.clone(), *v))
        .collect()
}

/// `name=value,name=value` (upstream's `prettyPrint`, sorted by name).
pub fn pretty(list: &ResourceList) -> String {
    list.iter()
        .map(|(k, v)| format!("{k}={}", v.text()))
        .collect::<Vec<_>>()
        .join(",")
}

/// The resources a quota's scope may restrict (upstream's pod evaluator resources):
/// `pods`, `count/pods` and compute resources.
pub fn is_pod_compute_resource(name: &str) -> bool {
    matches!(
        name,
        "pods"
            | "count/pods"
            | "cpu"
            | "memory"
            | "ephemeral-storage"
            | "requests.cpu"
            | "requests.memory"
            | "requests.ephemeral-storage"
            | "limits.cpu"
            | "limits.memory"
            | "limits.ephemeral-storage"
    ) || name.starts_with("requests.hugepages-")
        || name.starts_with("hugepages-")
        || (name.starts_with("requests.") && name.contains('/'))
}

/// The quota names of a kind's object count: `count/<plural>` (core) or
/// `count/<plural>.<group>`, plus the legacy names core kinds also answer to.
pub fn count_names(group: &str, plural: &str) -> Vec<String> {
    let mut out = vec![if group.is_empty() {
        format!("count/{plural}")
    } else {
        format!("count/{plural}.{group}")
    }];
    if group.is_empty()
        && matches!(
            plural,
            "pods"
                | "services"
                | "configmaps"
                | "secrets"
                | "persistentvolumeclaims"
                | "replicationcontrollers"
                | "resourcequotas"
        )
    {
        out.push(plural.to_string());
    }
    out
}

/// Whether objects of `(group, plural)` are measured by quota resource `name` (upstream's
/// evaluator `MatchingResources`): a pod by compute resources even when it states none.
pub fn charges(group: &str, plural: &str, name: &str) -> bool {
    if count_names(group, plural).iter().any(|n| n == name) {
        return true;
    }
    match (group, plural) {
        ("", "pods") => is_pod_compute_resource(name),
        ("", "services") => matches!(name, "services.nodeports" | "services.loadbalancers"),
        ("", "persistentvolumeclaims") => {
            name == "requests.storage"
                || name.ends_with(".storageclass.storage.k8s.io/requests.storage")
                || name.ends_with(".storageclass.storage.k8s.io/persistentvolumeclaims")
        }
        _ => false,
    }
}

/// Whether a pod no longer charges quota: Succeeded/Failed, or past its deletion grace.
pub fn pod_is_terminal(pod: &Value, now: jiff::Timestamp) -> bool {
    let phase = pod
        .pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("");
    if phase == "Succeeded" || phase == "Failed" {
        return true;
    }
    let deleted = pod
        .pointer("/metadata/deletionTimestamp")
        .and_then(Value::as_str)
        .and_then(|t| t.parse::<jiff::Timestamp>().ok());
    let grace = pod
        .pointer("/metadata/deletionGracePeriodSeconds")
        .and_then(Value::as_i64);
    match (deleted, grace) {
        (Some(at), Some(g)) => at
            .checked_add(jiff::SignedDuration::from_secs(g))
            .is_ok_and(|end| now > end),
        _ => false,
    }
}

fn container_lists<'a>(spec: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    spec.get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// A pod's effective requests or limits (`which` = "requests" | "limits"): the larger of the
/// app containers plus sidecars and each init container plus the sidecars started before it
/// (upstream `PodRequests`/`PodLimits`), plus the pod overhead.
pub fn pod_resources(pod: &Value, which: &str) -> ResourceList {
    let spec = pod.get("spec").unwrap_or(&Value::Null);
    let of = |c: &Value| parse_list(c.pointer(&format!("/resources/{which}")));
    let mut sum = ResourceList::new();
    for c in container_lists(spec, "containers") {
        sum = add(&sum, &of(c));
    }
    let mut sidecars = ResourceList::new();
    let mut init_max = ResourceList::new();
    for c in container_lists(spec, "initContainers") {
        let r = of(c);
        let candidate = if c.get("restartPolicy").and_then(Value::as_str) == Some("Always") {
            sidecars = add(&sidecars, &r);
            sidecars.clone()
        } else {
            add(&sidecars, &r)
        };
        for (k, v) in candidate {
            match init_max.get(&k) {
                Some(x) if x.q >= v.q => {}
                _ => {
                    init_max.insert(k, v);
                }
            }
        }
    }
    let mut out = add(&sum, &sidecars);
    for (k, v) in init_max {
        match out.get(&k) {
            Some(x) if x.q >= v.q => {}
            _ => {
                out.insert(k, v);
            }
        }
    }
    add(&out, &parse_list(spec.get("overhead")))
}

/// What a (non-terminal) pod charges: `pods`, `count/pods`, compute requests (also under the
/// bare names `cpu`, `memory`, `ephemeral-storage`) and limits, hugepages and extended
/// resources as `requests.<name>`.
pub fn pod_usage(pod: &Value) -> ResourceList {
    let mut out = ResourceList::new();
    out.insert("pods".into(), Amount::count(1));
    out.insert("count/pods".into(), Amount::count(1));
    for (k, v) in pod_resources(pod, "requests") {
        if matches!(k.as_str(), "cpu" | "memory" | "ephemeral-storage")
            || k.starts_with("hugepages-")
        {
            out.insert(k.clone(), v);
        }
        out.insert(format!("requests.{k}"), v);
    }
    for (k, v) in pod_resources(pod, "limits") {
        if matches!(k.as_str(), "cpu" | "memory" | "ephemeral-storage") {
            out.insert(format!("limits.{k}"), v);
        }
    }
    out
}

/// What a Service charges: itself, its node ports and load balancers.
pub fn service_usage(svc: &Value) -> ResourceList {
    let mut out = ResourceList::new();
    out.insert("services".into(), Amount::count(1));
    out.insert("count/services".into(), Amount::count(1));
    let ty = svc
        .pointer("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP");
    let ports = svc
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let node_ports = match ty {
        "NodePort" => ports,
        // A LoadBalancer allocates node ports unless told not to.
        "LoadBalancer"
            if svc
                .pointer("/spec/allocateLoadBalancerNodePorts")
                .and_then(Value::as_bool)
                != Some(false) =>
        {
            ports
        }
        _ => 0,
    };
    out.insert(
        "services.nodeports".into(),
        Amount::count(i64::try_from(node_ports).unwrap_or(i64::MAX)),
    );
    out.insert(
        "services.loadbalancers".into(),
        Amount::count(i64::from(ty == "LoadBalancer")),
    );
    out
}

/// What a PersistentVolumeClaim charges: itself and its storage request, in total and per
/// StorageClass (`<class>.storageclass.storage.k8s.io/…`).
pub fn pvc_usage(pvc: &Value) -> ResourceList {
    let mut out = ResourceList::new();
    out.insert("persistentvolumeclaims".into(), Amount::count(1));
    out.insert("count/persistentvolumeclaims".into(), Amount::count(1));
    let storage = pvc
        .pointer("/spec/resources/requests/storage")
        .and_then(Value::as_str)
        .and_then(Amount::parse);
    if let Some(s) = storage {
        out.insert("requests.storage".into(), s);
    }
    let class = pvc
        .pointer("/spec/storageClassName")
        .and_then(Value::as_str)
        .filter(|c| !c.is_empty());
    if let Some(class) = class {
        out.insert(
            format!("{class}.storageclass.storage.k8s.io/persistentvolumeclaims"),
            Amount::count(1),
        );
        if let Some(s) = storage {
            out.insert(
                format!("{class}.storageclass.storage.k8s.io/requests.storage"),
                s,
            );
        }
    }
    out
}

/// Everything an object of `(group, plural)` charges while it exists (a terminal pod only
/// its `count/pods`: object counts track everything in storage).
pub fn usage(group: &str, plural: &str, obj: &Value, now: jiff::Timestamp) -> ResourceList {
    let mut out = match (group, plural) {
        ("", "pods") if pod_is_terminal(obj, now) => {
            let mut out = ResourceList::new();
            out.insert("count/pods".into(), Amount::count(1));
            return out;
        }
        ("", "pods") => pod_usage(obj),
        ("", "services") => service_usage(obj),
        ("", "persistentvolumeclaims") => pvc_usage(obj),
        _ => ResourceList::new(),
    };
    for n in count_names(group, plural) {
        out.insert(n, Amount::count(1));
    }
    out
}

/// Whether `pod` falls under one scope (`Terminating`, `BestEffort`, …); unknown scopes do not
/// match.
fn pod_matches_scope(scope: &str, op: &str, values: &[&str], pod: &Value) -> bool {
    let spec = pod.get("spec").and_then(Value::as_object);
    let empty = Map::new();
    let spec = spec.unwrap_or(&empty);
    let terminating = spec
        .get("activeDeadlineSeconds")
        .and_then(Value::as_i64)
        .is_some_and(|d| d >= 0);
    let best_effort = pod_qos_json(spec) == QosClass::BestEffort;
    match scope {
        "Terminating" => terminating,
        "NotTerminating" => !terminating,
        "BestEffort" => best_effort,
        "NotBestEffort" => !best_effort,
        "PriorityClass" => {
            let class = spec.get("priorityClassName").and_then(Value::as_str);
            let class = class.filter(|c| !c.is_empty());
            match op {
                "Exists" => class.is_some(),
                "DoesNotExist" => class.is_none(),
                "In" => class.is_some_and(|c| values.contains(&c)),
                "NotIn" => class.is_none_or(|c| !values.contains(&c)),
                _ => false,
            }
        }
        "CrossNamespacePodAffinity" => {
            let aff = spec.get("affinity");
            ["podAffinity", "podAntiAffinity"].iter().any(|kind| {
                let terms = |key: &str| {
                    aff.and_then(|a| a.pointer(&format!("/{kind}/{key}")))
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default()
                };
                let cross = |t: &Value| {
                    t.get("namespaceSelector").is_some()
                        || t.get("namespaces")
                            .and_then(Value::as_array)
                            .is_some_and(|n| !n.is_empty())
                };
                terms("requiredDuringSchedulingIgnoredDuringExecution")
                    .iter()
                    .any(cross)
                    || terms("preferredDuringSchedulingIgnoredDuringExecution")
                        .iter()
                        .any(|w| w.get("podAffinityTerm").is_some_and(cross))
            })
        }
        _ => false,
    }
}

/// A quota's scopes as (scope, operator, values): `spec.scopes` (operator `Exists`) and
/// `spec.scopeSelector.matchExpressions`.
pub fn quota_scopes(quota: &Value) -> Vec<(String, String, Vec<String>)> {
    let mut out: Vec<(String, String, Vec<String>)> = quota
        .pointer("/spec/scopes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|s| (s.to_string(), "Exists".to_string(), Vec::new()))
        .collect();
    for e in quota
        .pointer("/spec/scopeSelector/matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let s = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let values = e
            .get("values")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect();
        out.push((s("scopeName"), s("operator"), values));
    }
    out
}

/// Whether an object of `(group, plural)` counts against `quota` at all: a quota with scopes
/// only tracks pods, and then only the pods in every scope.
pub fn quota_matches(quota: &Value, group: &str, plural: &str, obj: &Value) -> bool {
    let scopes = quota_scopes(quota);
    if scopes.is_empty() {
        return true;
    }
    if !(group.is_empty() && plural == "pods") {
        return false;
    }
    scopes.iter().all(|(scope, op, values)| {
        let values: Vec<&str> = values.iter().map(String::as_str).collect();
        pod_matches_scope(scope, op, &values, obj)
    })
}

/// The resource names of `spec.hard` (or any list object).
pub fn names(list: Option<&Value>) -> Vec<String> {
    list.and_then(Value::as_object)
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

/// Upstream's pod constraint for a quota: every container (init ones too) must state the
/// requests/limits of cpu and memory that the quota tracks. Returns the missing
/// `"<resource> for: <containers>"` parts, sorted by resource, containers sorted.
pub fn pod_missing(pod: &Value, hard: &[String]) -> Vec<String> {
    const VALIDATED: [&str; 6] = [
        "cpu",
        "limits.cpu",
        "limits.memory",
        "memory",
        "requests.cpu",
        "requests.memory",
    ];
    let spec = pod.get("spec").unwrap_or(&Value::Null);
    let mut out = Vec::new();
    for name in VALIDATED.iter().filter(|n| hard.iter().any(|h| h == *n)) {
        let (which, res) = match name.split_once('.') {
            Some((w, r)) => (w, r),
            None => ("requests", *name),
        };
        let mut missing: Vec<&str> = container_lists(spec, "initContainers")
            .chain(container_lists(spec, "containers"))
            .filter(|c| c.pointer(&format!("/resources/{which}/{res}")).is_none())
            .filter_map(|c| c.get("name").and_then(Value::as_str))
            .collect();
        missing.sort_unstable();
        missing.dedup();
        if !missing.is_empty() {
            out.push(format!("{name} for: {}", missing.join(",")));
        }
    }
    out
}

/// Upstream's `SetDefaults_LimitRangeItem` for a Container item: `default` from `max`,
/// `defaultRequest` from `default`, then from `min`.
pub fn default_limit_range_item(item: &mut Map<String, Value>) {
    if item.get("type").and_then(Value::as_str) != Some("Container") {
        return;
    }
    let get = |item: &Map<String, Value>, k: &str| {
        item.get(k)
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    };
    let mut default = get(item, "default");
    for (k, v) in get(item, "max") {
        default.entry(k).or_insert(v);
    }
    let mut request = get(item, "defaultRequest");
    for (k, v) in default.iter() {
        request.entry(k.clone()).or_insert(v.clone());
    }
    for (k, v) in get(item, "min") {
        request.entry(k).or_insert(v);
    }
    if !default.is_empty() {
        item.insert("default".into(), Value::Object(default));
    }
    if !request.is_empty() {
        item.insert("defaultRequest".into(), Value::Object(request));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_text() {
        let t = |s: &str| Amount::parse(s).unwrap().text();
        assert_eq!(t("1.5"), "1500m");
        assert_eq!(t("2"), "2");
        assert_eq!(t("100m"), "100m");
        assert_eq!(t("1Gi"), "1Gi");
        assert_eq!(t("1536Mi"), "1536Mi");
        assert_eq!(t("1000"), "1k");
        assert_eq!(t("1200"), "1200");
        assert_eq!(t("0.5Gi"), "512Mi");
        let a = Amount::parse("500m").unwrap();
        assert_eq!(a.plus(&Amount::parse("1").unwrap()).text(), "1500m");
        let zero = Amount::parse("0").unwrap();
        assert_eq!(zero.plus(&Amount::parse("2Gi").unwrap()).text(), "2Gi");
    }

    #[test]
    fn pod_usage_counts_requests_limits_and_init_max() {
        let pod = json!({"spec": {
        "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "2"}}}],
        "containers": [
            {"name": "a", "resources": {"requests": {"cpu": "500m", "memory": "1Gi"},
                                        "limits": {"cpu": "1"}}},
            {"name": "b", "resources": {"requests": {"cpu": "500m"}}}
        ]}});
        let u = pod_usage(&pod);
        assert_eq!(u["pods"].text(), "1");
        assert_eq!(u["requests.cpu"].text(), "2");
        assert_eq!(u["cpu"].text(), "2");
        assert_eq!(u["requests.memory"].text(), "1Gi");
        assert_eq!(u["limits.cpu"].text(), "1");
        assert_eq!(
            pod_missing(&pod, &["limits.cpu".into(), "requests.cpu".into()]),
            vec!["limits.cpu for: b,i".to_string()]
        );
    }

    #[test]
    fn scopes_select_pods() {
        let q = json!({"spec": {"scopes": ["BestEffort"]}});
        let be = json!({"spec": {"containers": [{"name": "a"}]}});
        let burst = json!({"spec": {"containers": [{"name": "a",
            "resources": {"requests": {"cpu": "1"}}}]}});
        assert!(quota_matches(&q, "", "pods", &be));
        assert!(!quota_matches(&q, "", "pods", &burst));
        assert!(!quota_matches(&q, "", "configmaps", &json!({})));
        let pc = json!({"spec": {"scopeSelector": {"matchExpressions": [
            {"scopeName": "PriorityClass", "operator": "In", "values": ["high"]}]}}});
        let high = json!({"spec": {"priorityClassName": "high", "containers": []}});
        assert!(quota_matches(&pc, "", "pods", &high));
        assert!(!quota_matches(&pc, "", "pods", &be));
    }

    #[test]
    fn service_and_pvc_usage() {
        let s = service_usage(&json!({"spec": {"type": "NodePort", "ports": [{}, {}]}}));
        assert_eq!(s["services.nodeports"].text(), "2");
        assert_eq!(s["services.loadbalancers"].text(), "0");
        let p = pvc_usage(&json!({"spec": {"storageClassName": "fast",
            "resources": {"requests": {"storage": "1Gi"}}}}));
        assert_eq!(
            p["fast.storageclass.storage.k8s.io/requests.storage"].text(),
            "1Gi"
        );
        assert_eq!(
            count_names("apps", "deployments"),
            vec!["count/deployments.apps"]
        );
    }
}
