//! Upstream's replica calculator (`replica_calculator.go`) for per-pod resource metrics: the
//! pods are grouped into ready, unready (Pending, or CPU samples from before readiness),
//! missing (no sample) and ignored (deleting, Failed); the usage ratio of the ready samples
//! decides, unless the missing and unready pods, counted conservatively (missing at 100% of
//! request / the target when scaling down, at 0 when scaling up; unready at 0 when scaling up),
//! would flip or cancel the direction.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use skiff_semantics::quantity::parse_milli_value;

/// Relative difference from the target within which nothing changes (upstream's
/// --horizontal-pod-autoscaler-tolerance).
pub const TOLERANCE: f64 = 0.1;
/// CPU samples of a pod this young may predate its readiness (--…-cpu-initialization-period).
pub const CPU_INITIALIZATION_PERIOD: Duration = Duration::from_secs(300);
/// A pod turning ready this soon after start counts as ready from the start
/// (--…-initial-readiness-delay).
pub const INITIAL_READINESS_DELAY: Duration = Duration::from_secs(30);

/// One pod's usage sample (milli-units: millicores, milli-bytes).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PodMetric {
    pub milli: i64,
    pub timestamp: jiff::Timestamp,
    pub window: Duration,
}

/// Samples by pod name.
pub type PodMetrics = HashMap<String, PodMetric>;

/// Why no replica count could be computed (the message upstream reports).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct CalcError(pub String);

/// The proposal for a `Utilization` target: replicas, utilization (percent) and the average
/// raw usage (milli) of the ready samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Proposal {
    pub replicas: i32,
    pub utilization: Option<i64>,
    pub raw_milli: i64,
}

struct Groups {
    ready: usize,
    unready: HashSet<String>,
    missing: HashSet<String>,
    ignored: HashSet<String>,
}

fn ready_condition(pod: &Pod) -> Option<(&str, Option<jiff::Timestamp>)> {
    let c = pod
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")?;
    Some((
        c.status.as_str(),
        c.last_transition_time.as_ref().map(|t| t.0),
    ))
}

/// `groupPods`.
fn group(pods: &[Pod], metrics: &PodMetrics, cpu: bool, now: jiff::Timestamp) -> Groups {
    let mut g = Groups {
        ready: 0,
        unready: HashSet::new(),
        missing: HashSet::new(),
        ignored: HashSet::new(),
    };
    for pod in pods {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let phase = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .unwrap_or("");
        if pod.metadata.deletion_timestamp.is_some() || phase == "Failed" {
            g.ignored.insert(name);
            continue;
        }
        if phase == "Pending" {
            g.unready.insert(name);
            continue;
        }
        let Some(metric) = metrics.get(&name) else {
            g.missing.insert(name);
            continue;
        };
        if cpu {
            let start = pod
                .status
                .as_ref()
                .and_then(|s| s.start_time.as_ref())
                .map(|t| t.0);
            let unready = match (ready_condition(pod), start) {
                (Some((status, transition)), Some(start)) => {
                    let transition = transition.unwrap_or(start);
                    if add(start, CPU_INITIALIZATION_PERIOD) > now {
                        // Young pod: a sample from before it turned ready is not trusted.
                        status == "False" || metric.timestamp < add(transition, metric.window)
                    } else {
                        status == "False" && add(start, INITIAL_READINESS_DELAY) > transition
                    }
                }
                _ => true,
            };
            if unready {
                g.unready.insert(name);
                continue;
            }
        }
        g.ready += 1;
    }
    g
}

fn add(t: jiff::Timestamp, d: Duration) -> jiff::Timestamp {
    jiff::SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_add(d).ok())
        .unwrap_or(t)
}

/// `calculatePodRequests`: each pod's request for `resource` (milli), summed over its
/// containers (or the one named `container`).
pub fn pod_requests(
    pods: &[Pod],
    resource: &str,
    container: Option<&str>,
) -> Result<HashMap<String, i64>, CalcError> {
    let mut out = HashMap::new();
    for pod in pods {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let mut total = 0i64;
        let containers = pod
            .spec
            .as_ref()
            .map_or(&[][..], |s| s.containers.as_slice());
        for c in containers {
            if container.is_some_and(|want| want != c.name) {
                continue;
            }
            let request = c
                .resources
                .as_ref()
                .and_then(|r| r.requests.as_ref())
                .and_then(|r| r.get(resource))
                .and_then(|q| parse_milli_value(&q.0));
            match request {
                Some(r) => total = total.saturating_add(r),
                None => {
                    return Err(CalcError(format!(
                        "missing request for {resource} in container {} of Pod {name}",
                        c.name
                    )))
                }
            }
        }
        out.insert(name, total);
    }
    Ok(out)
}

/// `GetResourceUtilizationRatio`: (ratio to the target, utilization %, average raw usage).
fn utilization_ratio(
    metrics: &PodMetrics,
    requests: &HashMap<String, i64>,
    target: i64,
) -> Result<(f64, i64, i64), CalcError> {
    let (mut used, mut requested, mut n) = (0i64, 0i64, 0i64);
    for (pod, m) in metrics {
        let Some(r) = requests.get(pod) else {
            continue;
        };
        used = used.saturating_add(m.milli);
        requested = requested.saturating_add(*r);
        n += 1;
    }
    if requested == 0 {
        return Err(CalcError(
            "no metrics returned matched known pods".to_string(),
        ));
    }
    let utilization = used.saturating_mul(100) / requested;
    Ok((
        utilization as f64 / target.max(1) as f64,
        utilization,
        used / n.max(1),
    ))
}

/// `GetMetricUsageRatio`: (ratio to the per-pod target, average usage).
fn usage_ratio(metrics: &PodMetrics, target_milli: i64) -> (f64, i64) {
    let total: i64 = metrics
        .values()
        .map(|m| m.milli)
        .fold(0, i64::saturating_add);
    let avg = total / (metrics.len().max(1) as i64);
    (avg as f64 / target_milli.max(1) as f64, avg)
}

/// What a metric is compared against.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    /// Percent of the pods' requests.
    Utilization(i64),
    /// Average per-pod usage (milli).
    AverageValue(i64),
}

/// `GetResourceReplicas` / `GetRawResourceReplicas` for samples already fetched.
#[allow(clippy::too_many_arguments)]
pub fn resource_replicas(
    current: i32,
    target: Target,
    resource: &str,
    container: Option<&str>,
    pods: &[Pod],
    mut metrics: PodMetrics,
    now: jiff::Timestamp,
) -> Result<Proposal, CalcError> {
    if metrics.is_empty() {
        return Err(CalcError(format!(
            "unable to get metrics for resource {resource}: no metrics returned from resource metrics API"
        )));
    }
    if pods.is_empty() {
        return Err(CalcError(
            "no pods returned by selector while calculating replica count".to_string(),
        ));
    }
    let g = group(pods, &metrics, resource == "cpu", now);
    for name in g.unready.iter().chain(&g.ignored) {
        metrics.remove(name);
    }
    // Samples of pods the selector no longer matches do not count either.
    let known: HashSet<&str> = pods
        .iter()
        .filter_map(|p| p.metadata.name.as_deref())
        .collect();
    metrics.retain(|k, _| known.contains(k.as_str()));
    if metrics.is_empty() {
        return Err(CalcError(
            "did not receive metrics for targeted pods (pods might be unready)".to_string(),
        ));
    }
    let requests = match target {
        Target::Utilization(_) => pod_requests(pods, resource, container)?,
        Target::AverageValue(_) => HashMap::new(),
    };
    let ratio_of = |m: &PodMetrics| -> Result<(f64, Option<i64>, i64), CalcError> {
        match target {
            Target::Utilization(t) => {
                let (r, u, raw) = utilization_ratio(m, &requests, t)?;
                Ok((r, Some(u), raw))
            }
            Target::AverageValue(t) => {
                let (r, avg) = usage_ratio(m, t);
                Ok((r, None, avg))
            }
        }
    };
    let (ratio, utilization, raw_milli) = ratio_of(&metrics)?;
    let keep = Proposal {
        replicas: current,
        utilization,
        raw_milli,
    };
    let scale_up_with_unready = !g.unready.is_empty() && ratio > 1.0;
    if !scale_up_with_unready && g.missing.is_empty() {
        if (1.0 - ratio).abs() <= TOLERANCE {
            return Ok(keep);
        }
        return Ok(Proposal {
            replicas: ceil(ratio * g.ready as f64),
            ..keep
        });
    }
    // Count the pods without a usable sample conservatively, then check the direction holds.
    for name in &g.missing {
        let milli = if ratio < 1.0 {
            match target {
                Target::Utilization(t) => {
                    requests.get(name).copied().unwrap_or(0) * t.max(100) / 100
                }
                Target::AverageValue(t) => t,
            }
        } else {
            0
        };
        metrics.insert(
            name.clone(),
            PodMetric {
                milli,
                timestamp: now,
                window: Duration::ZERO,
            },
        );
    }
    if scale_up_with_unready {
        for name in &g.unready {
            metrics.insert(
                name.clone(),
                PodMetric {
                    milli: 0,
                    timestamp: now,
                    window: Duration::ZERO,
                },
            );
        }
    }
    let (new_ratio, _, _) = ratio_of(&metrics)?;
    if (1.0 - new_ratio).abs() <= TOLERANCE
        || (ratio < 1.0 && new_ratio > 1.0)
        || (ratio > 1.0 && new_ratio < 1.0)
    {
        return Ok(keep);
    }
    let replicas = ceil(new_ratio * metrics.len() as f64);
    if (new_ratio < 1.0 && replicas > current) || (new_ratio > 1.0 && replicas < current) {
        return Ok(keep);
    }
    Ok(Proposal { replicas, ..keep })
}

fn ceil(x: f64) -> i32 {
    let c = x.ceil();
    if c >= i32::MAX as f64 {
        i32::MAX
    } else if c <= 0.0 {
        0
    } else {
        c as i32
    }
}
