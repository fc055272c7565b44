//! The pod QoS class (upstream's `qos.GetPodQOS`), computed one way for the API server's
//! `status.qosClass` and the agent alike. Quantities compare by value, so `cpu: 1` and
//! `cpu: 1000m` are the same request.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod};
use serde_json::{Map, Value};

use crate::Quantity;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QosClass {
    Guaranteed,
    Burstable,
    BestEffort,
}

impl QosClass {
    pub fn as_str(self) -> &'static str {
        match self {
            QosClass::Guaranteed => "Guaranteed",
            QosClass::Burstable => "Burstable",
            QosClass::BestEffort => "BestEffort",
        }
    }
}

/// Only cpu and memory decide the class (upstream's `isSupportedQoSComputeResource`).
const QOS_RESOURCES: [&str; 2] = ["cpu", "memory"];

/// One container's cpu/memory requests and limits as quantity strings.
#[derive(Debug, Default)]
struct Resources<'a> {
    requests: Vec<(&'a str, String)>,
    limits: Vec<(&'a str, String)>,
}

/// Upstream's rule over app and init containers (ephemeral containers have no resources):
/// BestEffort when no container requests or limits a positive cpu or memory; Guaranteed when
/// every container limits both and the summed requests equal the summed limits; else Burstable.
/// A missing request counts as its limit (SetDefaults_Pod; a no-op on defaulted pods).
fn classify<'a>(containers: impl IntoIterator<Item = Resources<'a>>) -> QosClass {
    let mut requests: BTreeMap<&str, Quantity> = BTreeMap::new();
    let mut limits: BTreeMap<&str, Quantity> = BTreeMap::new();
    let mut guaranteed = true;
    let positive = |v: &str| Quantity::parse(v).ok().filter(Quantity::is_positive);
    for c in containers {
        let mut limited = 0;
        for name in QOS_RESOURCES {
            let limit = c.limits.iter().find(|(n, _)| *n == name).map(|(_, v)| v);
            let request = c
                .requests
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v)
                .or(limit);
            if let Some(q) = limit.and_then(|v| positive(v)) {
                limited += 1;
                let sum = limits.entry(name).or_default();
                *sum = sum.saturating_add(&q);
            }
            if let Some(q) = request.and_then(|v| positive(v)) {
                let sum = requests.entry(name).or_default();
                *sum = sum.saturating_add(&q);
            }
        }
        if limited < QOS_RESOURCES.len() {
            guaranteed = false;
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return QosClass::BestEffort;
    }
    if guaranteed
        && requests.len() == limits.len()
        && requests.iter().all(|(k, r)| limits.get(k) == Some(r))
    {
        QosClass::Guaranteed
    } else {
        QosClass::Burstable
    }
}

fn typed(c: &Container) -> Resources<'static> {
    let r = c.resources.as_ref();
    let pick =
        |m: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>| {
            QOS_RESOURCES
                .iter()
                .filter_map(|n| m.and_then(|m| m.get(*n)).map(|q| (*n, q.0.clone())))
                .collect()
        };
    Resources {
        requests: pick(r.and_then(|r| r.requests.as_ref())),
        limits: pick(r.and_then(|r| r.limits.as_ref())),
    }
}

/// The QoS class of a typed pod (the agent's view).
pub fn pod_qos(pod: &Pod) -> QosClass {
    let Some(spec) = pod.spec.as_ref() else {
        return QosClass::BestEffort;
    };
    classify(
        spec.containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .map(typed),
    )
}

fn json_resources(c: &Value) -> Resources<'static> {
    let pick = |which: &str| {
        QOS_RESOURCES
            .iter()
            .filter_map(|n| {
                let v = c.get("resources")?.get(which)?.get(*n)?;
                // A bare JSON number (`cpu: 1` in YAML) is a quantity too.
                let s = match v {
                    Value::String(s) => s.clone(),
                    Value::Number(x) => x.to_string(),
                    _ => return None,
                };
                Some((*n, s))
            })
            .collect()
    };
    Resources {
        requests: pick("requests"),
        limits: pick("limits"),
    }
}

/// The QoS class of a pod spec as JSON (the API server's view, before typed decoding).
pub fn pod_qos_json(spec: &Map<String, Value>) -> QosClass {
    classify(
        ["containers", "initContainers"]
            .iter()
            .filter_map(|k| spec.get(*k).and_then(Value::as_array))
            .flatten()
            .map(json_resources),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn both(spec: Value) -> (QosClass, QosClass) {
        let pod: Pod = serde_json::from_value(json!({"spec": spec.clone()})).unwrap();
        let map = spec.as_object().unwrap();
        (pod_qos(&pod), pod_qos_json(map))
    }

    fn one(resources: Value) -> Value {
        json!({"containers": [{"name": "c", "image": "x", "resources": resources}]})
    }

    #[test]
    fn cpu_one_equals_1000m_in_both_views() {
        let (typed, json) = both(one(json!({
            "requests": {"cpu": "1", "memory": "64Mi"},
            "limits": {"cpu": "1000m", "memory": "67108864"},
        })));
        assert_eq!(typed, QosClass::Guaranteed);
        assert_eq!(json, QosClass::Guaranteed);
    }

    #[test]
    fn classes_follow_upstream() {
        let cases = [
            (json!({}), QosClass::BestEffort),
            (
                json!({"requests": {"cpu": "0", "memory": "0"}}),
                QosClass::BestEffort,
            ),
            (json!({"requests": {"cpu": "100m"}}), QosClass::Burstable),
            (
                json!({"limits": {"cpu": "1", "memory": "1Gi"}}),
                QosClass::Guaranteed,
            ),
            (json!({"limits": {"cpu": "1"}}), QosClass::Burstable),
            (
                json!({"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}}),
                QosClass::Burstable,
            ),
            // Only cpu and memory count.
            (
                json!({"limits": {"cpu": "1", "memory": "1Gi", "ephemeral-storage": "1Gi"},
                    "requests": {"ephemeral-storage": "1Mi"}}),
                QosClass::Guaranteed,
            ),
            (
                json!({"requests": {"ephemeral-storage": "1Mi"}}),
                QosClass::BestEffort,
            ),
        ];
        for (res, want) in cases {
            assert_eq!(both(one(res.clone())), (want, want), "{res}");
        }
        // Every container, init containers included, must be limited.
        let spec = json!({
            "containers": [{"name": "a", "image": "x", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}],
            "initContainers": [{"name": "i", "image": "x"}],
        });
        assert_eq!(both(spec), (QosClass::Burstable, QosClass::Burstable));
    }

    #[test]
    fn json_numbers_are_quantities() {
        let spec = one(
            json!({"requests": {"cpu": 1, "memory": "1Gi"}, "limits": {"cpu": "1000m", "memory": "1Gi"}}),
        );
        assert_eq!(
            pod_qos_json(spec.as_object().unwrap()),
            QosClass::Guaranteed
        );
    }
}
