//! Upstream's `behavior` handling (`horizontal.go`): the stabilization window keeps the
//! recommendation within the recent ones (highest recent one when scaling down, lowest when
//! scaling up), then the scaling policies cap how far the replica count may move within each
//! policy's period, counting the changes already made in it.

use std::time::Duration;

use k8s_openapi::api::autoscaling::v2::{HPAScalingPolicy, HPAScalingRules};

/// One recommendation or one scale change, with when it happened.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub at: jiff::Timestamp,
    pub value: i32,
}

/// The controller's memory of one HPA.
#[derive(Debug, Default, Clone)]
pub struct History {
    pub recommendations: Vec<Sample>,
    pub scale_ups: Vec<Sample>,
    pub scale_downs: Vec<Sample>,
}

/// Rules with upstream's defaults for whatever is unset.
#[derive(Debug, Clone)]
pub struct Rules {
    pub window: i64,
    pub select: String,
    pub policies: Vec<(String, i32, i32)>,
}

impl Rules {
    pub fn resolve(given: Option<&HPAScalingRules>, up: bool) -> Rules {
        let default_policies: Vec<(String, i32, i32)> = if up {
            vec![("Pods".into(), 4, 15), ("Percent".into(), 100, 15)]
        } else {
            vec![("Percent".into(), 100, 15)]
        };
        let policies = given
            .and_then(|g| g.policies.as_ref())
            .filter(|p| !p.is_empty())
            .map(|p| {
                p.iter()
                    .map(
                        |HPAScalingPolicy {
                             type_,
                             value,
                             period_seconds,
                         }| { (type_.clone(), *value, *period_seconds) },
                    )
                    .collect()
            })
            .unwrap_or(default_policies);
        Rules {
            window: given
                .and_then(|g| g.stabilization_window_seconds)
                .map_or(if up { 0 } else { 300 }, i64::from),
            select: given
                .and_then(|g| g.select_policy.clone())
                .unwrap_or_else(|| "Max".into()),
            policies,
        }
    }

    fn longest_period(&self) -> i64 {
        self.policies
            .iter()
            .map(|p| i64::from(p.2))
            .max()
            .unwrap_or(0)
    }
}

fn before(now: jiff::Timestamp, seconds: i64) -> jiff::Timestamp {
    now.checked_sub(jiff::SignedDuration::from_secs(seconds))
        .unwrap_or(now)
}

/// `stabilizeRecommendationWithBehaviors`: the stabilized recommendation and the condition
/// reason/message; records `desired`.
pub fn stabilize(
    h: &mut History,
    up: &Rules,
    down: &Rules,
    current: i32,
    desired: i32,
    now: jiff::Timestamp,
) -> (i32, &'static str, &'static str) {
    let up_cutoff = before(now, up.window);
    let down_cutoff = before(now, down.window);
    let mut up_rec = desired;
    let mut down_rec = desired;
    let mut old = None;
    for (i, r) in h.recommendations.iter().enumerate() {
        if r.at > up_cutoff {
            up_rec = up_rec.min(r.value);
        }
        if r.at > down_cutoff {
            down_rec = down_rec.max(r.value);
        }
        if r.at < up_cutoff && r.at < down_cutoff {
            old = Some(i);
        }
    }
    let recommendation = current.max(up_rec).min(down_rec);
    let sample = Sample {
        at: now,
        value: desired,
    };
    match old {
        Some(i) => h.recommendations[i] = sample,
        None => h.recommendations.push(sample),
    }
    if desired >= current {
        (
            recommendation,
            "ScaleUpStabilized",
            "recent recommendations were lower than current one, applying the lowest recent recommendation",
        )
    } else {
        (
            recommendation,
            "ScaleDownStabilized",
            "recent recommendations were higher than current one, applying the highest recent recommendation",
        )
    }
}

fn change_in_period(events: &[Sample], period: i32, now: jiff::Timestamp) -> i32 {
    let cutoff = before(now, i64::from(period));
    events
        .iter()
        .filter(|e| e.at > cutoff)
        .map(|e| e.value)
        .fold(0, i32::saturating_add)
}

/// `calculateScaleUpLimitWithScalingRules`.
pub fn scale_up_limit(current: i32, h: &History, rules: &Rules, now: jiff::Timestamp) -> i32 {
    if rules.select == "Disabled" {
        return current;
    }
    let min = rules.select == "Min";
    let mut result = if min { i32::MAX } else { i32::MIN };
    for (ty, value, period) in &rules.policies {
        let start = current - change_in_period(&h.scale_ups, *period, now)
            + change_in_period(&h.scale_downs, *period, now);
        let proposed = if ty == "Pods" {
            start.saturating_add(*value)
        } else {
            (f64::from(start) * (1.0 + f64::from(*value) / 100.0)).ceil() as i32
        };
        result = if min {
            result.min(proposed)
        } else {
            result.max(proposed)
        };
    }
    result
}

/// `calculateScaleDownLimitWithBehaviors`.
pub fn scale_down_limit(current: i32, h: &History, rules: &Rules, now: jiff::Timestamp) -> i32 {
    if rules.select == "Disabled" {
        return current;
    }
    // Scaling down, the largest change is the smallest count.
    let min_change = rules.select == "Min";
    let mut result = if min_change { i32::MIN } else { i32::MAX };
    for (ty, value, period) in &rules.policies {
        let start = current - change_in_period(&h.scale_ups, *period, now)
            + change_in_period(&h.scale_downs, *period, now);
        let proposed = if ty == "Pods" {
            start.saturating_sub(*value)
        } else {
            (f64::from(start) * (1.0 - f64::from(*value) / 100.0)) as i32
        };
        result = if min_change {
            result.max(proposed)
        } else {
            result.min(proposed)
        };
    }
    result
}

/// `convertDesiredReplicasWithBehaviorRate`: the count after the policies and the bounds, and
/// the ScalingLimited reason/message.
#[allow(clippy::too_many_arguments)]
pub fn limit_rate(
    h: &History,
    up: &Rules,
    down: &Rules,
    min: i32,
    max: i32,
    current: i32,
    desired: i32,
    now: jiff::Timestamp,
) -> (i32, &'static str, &'static str) {
    if desired > current {
        let limit = scale_up_limit(current, h, up, now).max(current);
        let (allowed, reason, message) = if max > limit {
            (
                limit,
                "ScaleUpLimit",
                "the desired replica count is increasing faster than the maximum scale rate",
            )
        } else {
            (
                max,
                "TooManyReplicas",
                "the desired replica count is more than the maximum replica count",
            )
        };
        if desired > allowed {
            return (allowed, reason, message);
        }
    } else if desired < current {
        let limit = scale_down_limit(current, h, down, now).min(current);
        let (allowed, reason, message) = if min < limit {
            (
                limit,
                "ScaleDownLimit",
                "the desired replica count is decreasing faster than the maximum scale rate",
            )
        } else {
            (
                min,
                "TooFewReplicas",
                "the desired replica count is less than the minimum replica count",
            )
        };
        if desired < allowed {
            return (allowed, reason, message);
        }
    }
    (
        desired,
        "DesiredWithinRange",
        "the desired count is within the acceptable range",
    )
}

/// `storeScaleEvent`: records a change, dropping events older than the longest period.
pub fn record_scale(
    h: &mut History,
    up: &Rules,
    down: &Rules,
    from: i32,
    to: i32,
    now: jiff::Timestamp,
) {
    let change = to - from;
    let (events, rules) = if change > 0 {
        (&mut h.scale_ups, up)
    } else {
        (&mut h.scale_downs, down)
    };
    let cutoff = before(now, rules.longest_period());
    events.retain(|e| e.at > cutoff);
    events.push(Sample {
        at: now,
        value: change.abs(),
    });
}

/// Drops recommendations no window can use any more.
pub fn prune(h: &mut History, up: &Rules, down: &Rules, now: jiff::Timestamp) {
    let cutoff = before(now, up.window.max(down.window));
    h.recommendations.retain(|r| r.at >= cutoff);
}

/// Upstream's sync period default (--horizontal-pod-autoscaler-sync-period).
pub const DEFAULT_SYNC_PERIOD: Duration = Duration::from_secs(15);
