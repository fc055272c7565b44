//! Which pods a ReplicaSet deletes first on scale-down: upstream `getPodsToDelete` +
//! `ActivePodsWithRanks.Less` with PodDeletionCost and LogarithmicScaleDown (both on by default).

use std::cmp::Ordering;
use std::collections::HashMap;

use k8s_openapi::api::core::v1::Pod;

use skiff_semantics::wellknown::annotations::POD_DELETION_COST;

use super::pods::{is_active, is_ready, ready_since};

fn node(p: &Pod) -> &str {
    p.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("")
}

fn phase_ordinal(p: &Pod) -> u8 {
    match p.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Unknown") => 1,
        Some("Running") => 2,
        // Pending and anything else (upstream map default).
        _ => 0,
    }
}

fn deletion_cost(p: &Pod) -> i32 {
    p.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(POD_DELETION_COST))
        .and_then(|v| v.trim().parse::<i32>().ok())
        .unwrap_or(0)
}

fn max_restarts(p: &Pod) -> i32 {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|cs| cs.iter().map(|c| c.restart_count).max().unwrap_or(0))
        .unwrap_or(0)
}

fn created(p: &Pod) -> Option<jiff::Timestamp> {
    p.metadata.creation_timestamp.as_ref().map(|t| t.0)
}

fn uid(p: &Pod) -> &str {
    p.metadata.uid.as_deref().unwrap_or("")
}

/// floor(log2(now - t in ns)), -1 when t is not in the past (upstream `logarithmicRankDiff`).
fn log_bucket(t: jiff::Timestamp, now: jiff::Timestamp) -> i64 {
    let d = now.as_nanosecond() - t.as_nanosecond();
    if d > 0 {
        (d as f64).log2() as i64
    } else {
        -1
    }
}

/// "Less" for timestamps where the more recent (or missing) one goes first: upstream
/// `afterOrZero`, refined by log2 buckets and then by uid.
fn newer_first(
    a: Option<jiff::Timestamp>,
    b: Option<jiff::Timestamp>,
    (ua, ub): (&str, &str),
    now: jiff::Timestamp,
) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(x), Some(y)) => {
            if x == y {
                return Ordering::Equal;
            }
            let diff = log_bucket(x, now) - log_bucket(y, now);
            if diff == 0 {
                ua.cmp(ub)
            } else {
                diff.cmp(&0)
            }
        }
    }
}

/// Orders two pods, most deletable first. `rank` = active related pods on the pod's node.
pub fn compare(a: (&Pod, usize), b: (&Pod, usize), now: jiff::Timestamp) -> Ordering {
    let ((pa, ra), (pb, rb)) = (a, b);
    // 1. Unassigned before assigned.
    let (na, nb) = (node(pa), node(pb));
    if na != nb && (na.is_empty() || nb.is_empty()) {
        return if na.is_empty() {
            Ordering::Less
        } else {
            Ordering::Greater
        };
    }
    // 2. Pending < Unknown < Running.
    let o = phase_ordinal(pa).cmp(&phase_ordinal(pb));
    if o != Ordering::Equal {
        return o;
    }
    // 3. Not ready before ready.
    let (ready_a, ready_b) = (is_ready(pa), is_ready(pb));
    if ready_a != ready_b {
        return if ready_a {
            Ordering::Greater
        } else {
            Ordering::Less
        };
    }
    // 4. Lower deletion cost first.
    let o = deletion_cost(pa).cmp(&deletion_cost(pb));
    if o != Ordering::Equal {
        return o;
    }
    // 5. More co-located related pods first.
    if ra != rb {
        return rb.cmp(&ra);
    }
    // 6. Both ready: ready more recently first.
    if ready_a && ready_b {
        let o = newer_first(ready_since(pa), ready_since(pb), (uid(pa), uid(pb)), now);
        if o != Ordering::Equal {
            return o;
        }
    }
    // 7. More container restarts first.
    let o = max_restarts(pb).cmp(&max_restarts(pa));
    if o != Ordering::Equal {
        return o;
    }
    // 8. Newer first.
    newer_first(created(pa), created(pb), (uid(pa), uid(pb)), now)
}

/// Picks `diff` victims among `candidates` (the RS's active pods); `related` are the active pods
/// of this RS and its sibling RSes (same controller), used for the co-location rank.
pub fn pods_to_delete<'a>(
    candidates: &[&'a Pod],
    related: &[&Pod],
    diff: usize,
    now: jiff::Timestamp,
) -> Vec<&'a Pod> {
    if diff >= candidates.len() {
        return candidates.to_vec();
    }
    let mut on_node: HashMap<&str, usize> = HashMap::new();
    for p in related.iter().filter(|p| is_active(p)) {
        *on_node.entry(node(p)).or_default() += 1;
    }
    let mut ranked: Vec<(&Pod, usize)> = candidates
        .iter()
        .map(|p| (*p, on_node.get(node(p)).copied().unwrap_or(0)))
        .collect();
    ranked.sort_by(|a, b| compare(*a, *b, now));
    ranked.into_iter().take(diff).map(|(p, _)| p).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ContainerStatus, PodCondition, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn ts(secs: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(secs).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
    }

    struct P {
        name: &'static str,
        node: &'static str,
        phase: &'static str,
        ready_at: Option<i64>,
        created: i64,
        restarts: i32,
        cost: Option<&'static str>,
    }

    impl Default for P {
        fn default() -> Self {
            P {
                name: "p",
                node: "n1",
                phase: "Running",
                ready_at: Some(100),
                created: 50,
                restarts: 0,
                cost: None,
            }
        }
    }

    fn pod(p: P) -> Pod {
        let mut pod = Pod::default();
        pod.metadata.name = Some(p.name.into());
        pod.metadata.uid = Some(format!("uid-{}", p.name));
        pod.metadata.creation_timestamp = Some(Time(ts(p.created)));
        if let Some(c) = p.cost {
            pod.metadata.annotations =
                Some([(POD_DELETION_COST.to_string(), c.to_string())].into());
        }
        pod.spec = Some(PodSpec {
            node_name: Some(p.node.into()),
            ..Default::default()
        });
        let cond = PodCondition {
            type_: "Ready".into(),
            status: if p.ready_at.is_some() {
                "True"
            } else {
                "False"
            }
            .into(),
            last_transition_time: p.ready_at.map(|t| Time(ts(t))),
            ..Default::default()
        };
        pod.status = Some(PodStatus {
            phase: Some(p.phase.into()),
            conditions: Some(vec![cond]),
            container_statuses: Some(vec![ContainerStatus {
                restart_count: p.restarts,
                ..Default::default()
            }]),
            ..Default::default()
        });
        pod
    }

    fn names(v: &[&Pod]) -> Vec<String> {
        v.iter()
            .map(|p| p.metadata.name.clone().unwrap_or_default())
            .collect()
    }

    fn order(pods: &[Pod]) -> Vec<String> {
        let refs: Vec<&Pod> = pods.iter().collect();
        names(&pods_to_delete(&refs, &refs, pods.len() - 1, ts(1_000_000)))
    }

    #[test]
    fn ranking_rules_in_order() {
        let pods = vec![
            pod(P {
                name: "ready-old",
                ready_at: Some(10),
                created: 1,
                ..Default::default()
            }),
            pod(P {
                name: "unassigned",
                node: "",
                phase: "Pending",
                ready_at: None,
                ..Default::default()
            }),
            pod(P {
                name: "pending",
                phase: "Pending",
                ready_at: None,
                ..Default::default()
            }),
            pod(P {
                name: "unknown",
                phase: "Unknown",
                ready_at: None,
                ..Default::default()
            }),
            pod(P {
                name: "running-notready",
                ready_at: None,
                ..Default::default()
            }),
            pod(P {
                name: "ready-new",
                ready_at: Some(999_990),
                ..Default::default()
            }),
        ];
        assert_eq!(
            order(&pods),
            [
                "unassigned",
                "pending",
                "unknown",
                "running-notready",
                "ready-new"
            ]
        );
    }

    #[test]
    fn deletion_cost_and_colocation() {
        let pods = [
            pod(P {
                name: "cheap",
                node: "n3",
                cost: Some("-5"),
                ..Default::default()
            }),
            pod(P {
                name: "expensive",
                node: "n1",
                cost: Some("100"),
                ..Default::default()
            }),
            pod(P {
                name: "crowded-a",
                node: "n1",
                ..Default::default()
            }),
            pod(P {
                name: "alone",
                node: "n2",
                ..Default::default()
            }),
        ];
        let refs: Vec<&Pod> = pods.iter().collect();
        let v = pods_to_delete(&refs, &refs, 2, ts(1_000_000));
        assert_eq!(names(&v), ["cheap", "crowded-a"]);
    }

    #[test]
    fn restarts_then_newer_first() {
        let pods = vec![
            pod(P {
                name: "old",
                created: 10,
                ..Default::default()
            }),
            pod(P {
                name: "restarty",
                created: 10,
                restarts: 3,
                ..Default::default()
            }),
            pod(P {
                name: "new",
                created: 999_000,
                ..Default::default()
            }),
        ];
        assert_eq!(order(&pods), ["restarty", "new"]);
    }

    #[test]
    fn all_deleted_without_sorting() {
        let pods = [
            pod(P {
                name: "a",
                ..Default::default()
            }),
            pod(P {
                name: "b",
                ..Default::default()
            }),
        ];
        let refs: Vec<&Pod> = pods.iter().collect();
        assert_eq!(pods_to_delete(&refs, &refs, 5, ts(0)).len(), 2);
    }

    #[test]
    fn log_buckets() {
        let now = ts(10_000);
        assert_eq!(log_bucket(now, now), -1);
        // 1.1 s and 1.5 s are in the same power-of-two bucket of nanoseconds.
        assert_eq!(
            log_bucket(
                jiff::Timestamp::from_millisecond(9_998_900).unwrap_or(now),
                now
            ),
            log_bucket(
                jiff::Timestamp::from_millisecond(9_998_500).unwrap_or(now),
                now
            )
        );
    }
}
