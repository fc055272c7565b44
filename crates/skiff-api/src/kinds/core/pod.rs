//! core/v1 Pod: pod defaults (phase, QoS class, priority), spec validation and the update
//! rules, the pod printer.

use serde_json::{json, Map, Value};

use crate::defaults::pod_spec;
use crate::kinds::prelude::*;

pub(crate) const KIND: Kind = Kind {
    info: ResourceInfo {
        group: "",
        version: "v1",
        kind: "Pod",
        list_kind: "PodList",
        plural: "pods",
        singular: "pod",
        namespaced: true,
        short_names: &["po"],
        categories: ALL,
        verbs: FULL,
        subresources: &[
            "status",
            "binding",
            "eviction",
            "log",
            "exec",
            "ephemeralcontainers",
            "attach",
            "portforward",
            "proxy",
        ],
    },
    defaults,
    validate,
    table: Table {
        columns: COLUMNS,
        cells,
        conditions,
    },
    patch_root: Ty::Pod,
    fields: FIELDS,
    field_error: not_supported_field_error,
    ..Kind::BASE
};

fn defaults(obj: &mut Map<String, Value>) {
    let spec = child(obj, "spec");
    pod_spec(spec);
    default(spec, "enableServiceLinks", json!(true));
    // Priority admission: no priorityClassName → priority 0, PreemptLowerPriority.
    if spec.get("priorityClassName").is_none_or(is_empty) {
        default(spec, "priority", json!(0));
    }
    default(spec, "preemptionPolicy", json!("PreemptLowerPriority"));
    for key in ["containers", "initContainers"] {
        for c in array(spec, key) {
            // Requests default to limits (SetDefaults_Pod).
            if let Some(limits) = c
                .get("resources")
                .and_then(|r| r.get("limits"))
                .and_then(Value::as_object)
                .cloned()
            {
                let requests = child(child(c, "resources"), "requests");
                for (k, v) in limits {
                    requests.entry(k).or_insert(v);
                }
            }
        }
    }
    let qos = skiff_semantics::pod_qos_json(spec).as_str();
    let status = child(obj, "status");
    default(status, "phase", json!("Pending"));
    default(status, "qosClass", json!(qos));
}

fn validate(e: &mut Errs, obj: &Map<String, Value>, old: Option<&Value>) {
    let spec = obj.get("spec");
    crate::validate::pod_spec(e, spec, "spec");
    if let (Some(new), Some(old)) = (spec, old.and_then(|o| o.get("spec"))) {
        pod_update(e, new, old);
    }
}

const POD_UPDATE_MSG: &str = "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// Pod spec is immutable except images, activeDeadlineSeconds, added tolerations and removed
/// scheduling gates. `spec.nodeName` is set only through the binding subresource.
fn pod_update(e: &mut Errs, new: &Value, old: &Value) {
    let mut allowed = old.clone();
    let (Some(a), Some(n)) = (allowed.as_object_mut(), new.as_object()) else {
        return;
    };
    for key in ["containers", "initContainers"] {
        if let (Some(ac), Some(nc)) = (
            a.get_mut(key).and_then(Value::as_array_mut),
            n.get(key).and_then(Value::as_array),
        ) {
            if ac.len() == nc.len() {
                for (o, c) in ac.iter_mut().zip(nc) {
                    if let (Some(o), Some(img)) = (o.as_object_mut(), c.get("image")) {
                        o.insert("image".into(), img.clone());
                    }
                }
            }
        }
    }
    let copy = |a: &mut Map<String, Value>, key: &str| match n.get(key) {
        Some(v) => {
            a.insert(key.into(), v.clone());
        }
        None => {
            a.remove(key);
        }
    };
    copy(a, "activeDeadlineSeconds");
    let list = |v: &Value, key: &str| -> Vec<Value> {
        v.get(key)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    // Tolerations may only be added, scheduling gates only removed (upstream).
    let (old_tol, new_tol) = (list(old, "tolerations"), list(new, "tolerations"));
    if old_tol.iter().all(|t| new_tol.contains(t)) {
        copy(a, "tolerations");
    }
    let (old_gates, new_gates) = (list(old, "schedulingGates"), list(new, "schedulingGates"));
    if new_gates.iter().all(|g| old_gates.contains(g)) {
        copy(a, "schedulingGates");
    }
    if old
        .get("terminationGracePeriodSeconds")
        .and_then(Value::as_i64)
        .is_some_and(|v| v < 0)
    {
        copy(a, "terminationGracePeriodSeconds");
    }
    if &allowed != new {
        e.forbidden("spec", POD_UPDATE_MSG);
    }
}

#[rustfmt::skip]
const COLUMNS: &[Col] = &[
        NAME,
        ("Ready", "string", 0, "The aggregate readiness state of this pod for accepting traffic."),
        ("Status", "string", 0, "The aggregate status of the containers in this pod."),
        ("Restarts", "string", 0, "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted."),
        AGE,
        ("IP", "string", 1, "podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated."),
        ("Node", "string", 1, "NodeName indicates in which node this pod is scheduled. If empty, this pod is a candidate for scheduling by the scheduler defined in schedulerName."),
        ("Nominated Node", "string", 1, "nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot be scheduled right away as preemption victims receive their graceful termination periods."),
        ("Readiness Gates", "string", 1, "If specified, all readiness gates will be evaluated for pod readiness. A pod is ready when all its containers are ready AND all conditions specified in the readiness gates have status equal to \"True\" More info: https://git.k8s.io/enhancements/keps/sig-network/580-pod-readiness-gates"),
];

/// Is this init container a sidecar (`restartPolicy: Always`)?
fn restartable_init(obj: &Value, name: &str) -> bool {
    arr(obj, "/spec/initContainers")
        .iter()
        .any(|c| s(c, "/name") == name && s(c, "/restartPolicy") == "Always")
}

/// kubectl's pod printer: READY, STATUS and RESTARTS computed from container statuses.
fn cells(pod: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let init_specs = arr(pod, "/spec/initContainers");
    let mut total = arr(pod, "/spec/containers").len();
    total += init_specs
        .iter()
        .filter(|c| s(c, "/restartPolicy") == "Always")
        .count();
    let mut ready = 0usize;
    let mut restarts: i64 = 0;
    let mut sidecar_restarts: i64 = 0;
    let mut last_restart: Option<jiff::Timestamp> = None;
    let mut last_sidecar_restart: Option<jiff::Timestamp> = None;
    let later = |cur: Option<jiff::Timestamp>, t: Option<jiff::Timestamp>| match (cur, t) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };

    let phase = s(pod, "/status/phase");
    let mut reason = phase.to_string();
    if !s(pod, "/status/reason").is_empty() {
        reason = s(pod, "/status/reason").to_string();
    }
    let conditions = arr(pod, "/status/conditions");
    if conditions
        .iter()
        .any(|c| s(c, "/type") == "PodScheduled" && s(c, "/reason") == "SchedulingGated")
    {
        reason = "SchedulingGated".into();
    }

    let mut initializing = false;
    for (i, c) in arr(pod, "/status/initContainerStatuses").iter().enumerate() {
        let cname = s(c, "/name");
        let count = n(c, "/restartCount");
        restarts += count;
        let finished = parse_time(s(c, "/lastState/terminated/finishedAt"));
        last_restart = later(last_restart, finished);
        let sidecar = restartable_init(pod, cname);
        if sidecar {
            sidecar_restarts += count;
            last_sidecar_restart = later(last_sidecar_restart, finished);
        }
        let terminated = c.pointer("/state/terminated");
        let waiting_reason = s(c, "/state/waiting/reason");
        if terminated.is_some() && n(c, "/state/terminated/exitCode") == 0 {
            continue;
        }
        if sidecar && c.get("started").and_then(Value::as_bool) == Some(true) {
            if c.get("ready").and_then(Value::as_bool) == Some(true) {
                ready += 1;
            }
            continue;
        }
        if terminated.is_some() {
            let r = s(c, "/state/terminated/reason");
            reason = if !r.is_empty() {
                format!("Init:{r}")
            } else if n(c, "/state/terminated/signal") != 0 {
                format!("Init:Signal:{}", n(c, "/state/terminated/signal"))
            } else {
                format!("Init:ExitCode:{}", n(c, "/state/terminated/exitCode"))
            };
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            reason = format!("Init:{waiting_reason}");
        } else {
            reason = format!("Init:{i}/{}", init_specs.len());
        }
        initializing = true;
        break;
    }

    let initialized = conditions
        .iter()
        .any(|c| s(c, "/type") == "Initialized" && s(c, "/status") == "True");
    if !initializing || initialized {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        for c in arr(pod, "/status/containerStatuses").iter().rev() {
            restarts += n(c, "/restartCount");
            last_restart = later(
                last_restart,
                parse_time(s(c, "/lastState/terminated/finishedAt")),
            );
            let waiting = s(c, "/state/waiting/reason");
            let terminated = c.pointer("/state/terminated").is_some();
            let term_reason = s(c, "/state/terminated/reason");
            if !waiting.is_empty() {
                reason = waiting.to_string();
            } else if terminated && !term_reason.is_empty() {
                reason = term_reason.to_string();
            } else if terminated {
                let signal = n(c, "/state/terminated/signal");
                reason = if signal != 0 {
                    format!("Signal:{signal}")
                } else {
                    format!("ExitCode:{}", n(c, "/state/terminated/exitCode"))
                };
            } else if c.get("ready").and_then(Value::as_bool) == Some(true)
                && c.pointer("/state/running").is_some()
            {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            let pod_ready = conditions
                .iter()
                .any(|c| s(c, "/type") == "Ready" && s(c, "/status") == "True");
            reason = if pod_ready { "Running" } else { "NotReady" }.into();
        }
    }

    let deleting = pod
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null());
    if deleting && s(pod, "/status/reason") == "NodeLost" {
        reason = "Unknown".into();
    } else if deleting && phase != "Succeeded" && phase != "Failed" {
        reason = "Terminating".into();
    }

    let restarts_str = match last_restart {
        Some(t) if restarts != 0 => format!(
            "{restarts} ({} ago)",
            human_duration(now.as_second() - t.as_second())
        ),
        _ => restarts.to_string(),
    };

    let pod_ip = arr(pod, "/status/podIPs")
        .first()
        .map(|p| s(p, "/ip"))
        .filter(|ip| !ip.is_empty())
        .or(Some(s(pod, "/status/podIP")).filter(|ip| !ip.is_empty()))
        .unwrap_or("<none>");
    let none_if_empty = |v: &str| {
        if v.is_empty() {
            "<none>".to_string()
        } else {
            v.to_string()
        }
    };
    let gates = arr(pod, "/spec/readinessGates");
    let readiness_gates = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let true_count = gates
            .iter()
            .filter(|g| {
                let t = s(g, "/conditionType");
                conditions
                    .iter()
                    .find(|c| s(c, "/type") == t)
                    .is_some_and(|c| s(c, "/status") == "True")
            })
            .count();
        format!("{true_count}/{}", gates.len())
    };
    vec![
        json!(s(pod, "/metadata/name")),
        json!(format!("{ready}/{total}")),
        json!(reason),
        json!(restarts_str),
        json!(since(s(pod, "/metadata/creationTimestamp"), now)),
        json!(pod_ip),
        json!(none_if_empty(s(pod, "/spec/nodeName"))),
        json!(none_if_empty(s(pod, "/status/nominatedNodeName"))),
        json!(readiness_gates),
    ]
}

/// Upstream marks finished pods so clients can filter them.
fn conditions(obj: &Value) -> Option<Value> {
    match s(obj, "/status/phase") {
        "Succeeded" => Some(
            json!([{"type": "Completed", "status": "True", "reason": "Succeeded", "message": "The pod has completed successfully."}]),
        ),
        "Failed" => Some(
            json!([{"type": "Completed", "status": "True", "reason": "Failed", "message": "The pod has failed."}]),
        ),
        _ => None,
    }
}

/// The first of `status.podIPs`; a v1 object carrying only `status.podIP` converts to that
/// single entry upstream.
fn pod_ip(o: &Value) -> String {
    let first = text(o, "/status/podIPs/0/ip");
    if first.is_empty() {
        text(o, "/status/podIP")
    } else {
        first
    }
}

/// Upstream's Pod field labels (`ToSelectableFields`). `status.podIPs` is accepted but never
/// set upstream (it always reads ""); `spec.host` is the pre-1.0 name of `spec.nodeName`.
const FIELDS: &[Field] = &[
    NAME_FIELD,
    NAMESPACE_FIELD,
    Field {
        label: "spec.nodeName",
        value: |o| text(o, "/spec/nodeName"),
    },
    Field {
        label: "spec.host",
        value: |o| text(o, "/spec/nodeName"),
    },
    Field {
        label: "spec.restartPolicy",
        value: |o| text(o, "/spec/restartPolicy"),
    },
    Field {
        label: "spec.schedulerName",
        value: |o| text(o, "/spec/schedulerName"),
    },
    Field {
        label: "spec.serviceAccountName",
        value: |o| text(o, "/spec/serviceAccountName"),
    },
    Field {
        label: "spec.hostNetwork",
        value: |o| boolean(o, "/spec/hostNetwork"),
    },
    Field {
        label: "status.phase",
        value: |o| text(o, "/status/phase"),
    },
    Field {
        label: "status.podIP",
        value: pod_ip,
    },
    Field {
        label: "status.podIPs",
        value: |_| String::new(),
    },
    Field {
        label: "status.nominatedNodeName",
        value: |o| text(o, "/status/nominatedNodeName"),
    },
];
