//! Pure Deployment-controller arithmetic and bookkeeping, restated from upstream
//! `pkg/controller/deployment/util/deployment_util.go` and the sync/rolling/progress files
//! (k8s-semantics §1): fencepost resolution, pod-template-hash, template equality, revision
//! annotations, rolling-update scale amounts, proportional scaling, status and conditions.
//! Nothing here talks to the API server, so all of it is unit-tested directly.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentCondition, DeploymentSpec, DeploymentStatus, ReplicaSet,
};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;

pub use skiff_semantics::wellknown::annotations::{
    DEPRECATED_ROLLBACK_TO, DESIRED_REPLICAS, LAST_APPLIED_CONFIG, MAX_REPLICAS, REVISION,
    REVISION_HISTORY,
};
pub use skiff_semantics::wellknown::labels::POD_TEMPLATE_HASH;
/// Upstream caps the revision-history annotation at this many characters.
pub const MAX_REV_HISTORY_CHARS: usize = 2000;

pub const COND_AVAILABLE: &str = "Available";
pub const COND_PROGRESSING: &str = "Progressing";
pub const COND_REPLICA_FAILURE: &str = "ReplicaFailure";

pub const REASON_MIN_AVAILABLE: &str = "MinimumReplicasAvailable";
pub const REASON_MIN_UNAVAILABLE: &str = "MinimumReplicasUnavailable";
pub const REASON_NEW_RS_CREATED: &str = "NewReplicaSetCreated";
pub const REASON_FOUND_NEW_RS: &str = "FoundNewReplicaSet";
pub const REASON_RS_UPDATED: &str = "ReplicaSetUpdated";
pub const REASON_NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
pub const REASON_TIMED_OUT: &str = "ProgressDeadlineExceeded";
pub const REASON_PAUSED: &str = "DeploymentPaused";
pub const REASON_RESUMED: &str = "DeploymentResumed";
pub const REASON_RS_CREATE_ERROR: &str = "ReplicaSetCreateError";

/// Annotations never copied from the Deployment to its ReplicaSets.
const ANNOTATIONS_TO_SKIP: [&str; 6] = [
    LAST_APPLIED_CONFIG,
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    DEPRECATED_ROLLBACK_TO,
];

pub fn skip_copy_annotation(key: &str) -> bool {
    ANNOTATIONS_TO_SKIP.contains(&key)
}

// ---------------------------------------------------------------------------------------------
// Accessors with API defaults applied (the API server defaults these, but never trust it).

fn spec(d: &Deployment) -> Option<&DeploymentSpec> {
    d.spec.as_ref()
}

/// `spec.replicas` (default 1).
pub fn replicas(d: &Deployment) -> i32 {
    spec(d).and_then(|s| s.replicas).unwrap_or(1)
}

pub fn is_rolling(d: &Deployment) -> bool {
    spec(d)
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        .is_none_or(|t| t != "Recreate")
}

pub fn is_paused(d: &Deployment) -> bool {
    spec(d).and_then(|s| s.paused).unwrap_or(false)
}

pub fn min_ready_seconds(d: &Deployment) -> i32 {
    spec(d).and_then(|s| s.min_ready_seconds).unwrap_or(0)
}

/// progressDeadlineSeconds, None when there is no deadline (nil or MaxInt32).
pub fn progress_deadline(d: &Deployment) -> Option<i32> {
    match spec(d).map(|s| s.progress_deadline_seconds) {
        // Defaulted to 600 by the API server; nil only when defaulting never ran.
        None | Some(None) => Some(600),
        Some(Some(i32::MAX)) => None,
        Some(Some(v)) => Some(v),
    }
}

pub fn has_progress_deadline(d: &Deployment) -> bool {
    progress_deadline(d).is_some()
}

/// revisionHistoryLimit, None = keep everything (MaxInt32).
pub fn revision_history_limit(d: &Deployment) -> Option<i32> {
    match spec(d).map(|s| s.revision_history_limit) {
        None | Some(None) => Some(10),
        Some(Some(i32::MAX)) => None,
        Some(Some(v)) => Some(v),
    }
}

pub fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

pub fn rs_status_replicas(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().map(|s| s.replicas).unwrap_or(0)
}

pub fn rs_available(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0)
}

pub fn rs_ready(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0)
}

pub fn annotation<'a>(
    meta_annotations: &'a Option<BTreeMap<String, String>>,
    key: &str,
) -> Option<&'a str> {
    meta_annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

fn rs_annotation_i32(rs: &ReplicaSet, key: &str) -> Option<i32> {
    annotation(&rs.metadata.annotations, key).and_then(|v| v.parse::<i32>().ok())
}

// ---------------------------------------------------------------------------------------------
// maxSurge / maxUnavailable

/// `intstr.GetScaledValueFromIntOrPercent`: ints are taken as-is, "N%" is scaled against `total`
/// rounding up (surge) or down (unavailable).
pub fn scaled_value(v: &IntOrString, total: i32, round_up: bool) -> Result<i32, String> {
    match v {
        IntOrString::Int(i) => Ok(*i),
        IntOrString::String(s) => {
            let p = s.strip_suffix('%').ok_or_else(|| {
                format!(
                    "invalid value for IntOrString: invalid type: string is not a percentage: {s}"
                )
            })?;
            let p: i64 = p
                .parse()
                .map_err(|_| format!("invalid value for IntOrString: invalid value {s:?}"))?;
            let prod = p * i64::from(total);
            let v = if round_up {
                prod.div_euclid(100) + i64::from(prod.rem_euclid(100) != 0)
            } else {
                prod.div_euclid(100)
            };
            i32::try_from(v).map_err(|_| format!("value {s:?} out of range"))
        }
    }
}

/// `ResolveFenceposts`: (surge, unavailable); both zero → unavailable 1. A missing value means the
/// API default 25%.
pub fn resolve_fenceposts(
    max_surge: Option<&IntOrString>,
    max_unavailable: Option<&IntOrString>,
    desired: i32,
) -> Result<(i32, i32), String> {
    let dflt = IntOrString::String("25%".into());
    let surge = scaled_value(max_surge.unwrap_or(&dflt), desired, true)?;
    let mut unavailable = scaled_value(max_unavailable.unwrap_or(&dflt), desired, false)?;
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    Ok((surge, unavailable))
}

fn fenceposts(d: &Deployment) -> Result<(i32, i32), String> {
    let ru = spec(d)
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    resolve_fenceposts(
        ru.and_then(|r| r.max_surge.as_ref()),
        ru.and_then(|r| r.max_unavailable.as_ref()),
        replicas(d),
    )
}

/// `MaxSurge(d)`: 0 unless RollingUpdate (invalid values are caught by validation → 0).
pub fn max_surge(d: &Deployment) -> i32 {
    if !is_rolling(d) {
        return 0;
    }
    fenceposts(d).map(|(s, _)| s).unwrap_or(0)
}

/// `MaxUnavailable(d)`: 0 unless RollingUpdate with R > 0; clamped to R.
pub fn max_unavailable(d: &Deployment) -> i32 {
    let r = replicas(d);
    if !is_rolling(d) || r == 0 {
        return 0;
    }
    fenceposts(d).map(|(_, u)| u.min(r)).unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// pod-template-hash and template equality

const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// `rand.SafeEncodeString`: maps each byte onto a vowel-free alphabet.
pub fn safe_encode(s: &str) -> String {
    s.bytes()
        .map(|b| char::from(SAFE_ALPHABET[usize::from(b) % SAFE_ALPHABET.len()]))
        .collect()
}

fn fnv32a(h: u32, data: &[u8]) -> u32 {
    data.iter()
        .fold(h, |h, b| (h ^ u32::from(*b)).wrapping_mul(16_777_619))
}

/// `controller.ComputeHash`: FNV-32a of a deterministic dump of the template (ours: its JSON), then
/// collisionCount as little-endian bytes in an 8-byte buffer; decimal Sum32, safe-encoded.
pub fn compute_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let dump = serde_json::to_vec(template).unwrap_or_default();
    let mut h = fnv32a(2_166_136_261, &dump);
    if let Some(c) = collision_count {
        let mut buf = [0u8; 8];
        buf[..4].copy_from_slice(&(c as u32).to_le_bytes());
        h = fnv32a(h, &buf);
    }
    safe_encode(&h.to_string())
}

/// Drops nulls, empty lists and empty maps so that nil and empty compare equal, as
/// apimachinery's semantic DeepEqual does.
fn normalize(v: &mut serde_json::Value) -> bool {
    use serde_json::Value;
    match v {
        Value::Null => false,
        Value::Array(a) => {
            a.iter_mut().for_each(|x| {
                normalize(x);
            });
            !a.is_empty()
        }
        Value::Object(m) => {
            let keys: Vec<String> = m.keys().cloned().collect();
            for k in keys {
                let keep = m.get_mut(&k).is_some_and(normalize);
                if !keep {
                    m.remove(&k);
                }
            }
            !m.is_empty()
        }
        _ => true,
    }
}

fn template_value_without_hash(t: &PodTemplateSpec) -> serde_json::Value {
    let mut t = t.clone();
    if let Some(l) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        l.remove(POD_TEMPLATE_HASH);
    }
    let mut v = serde_json::to_value(&t).unwrap_or_default();
    normalize(&mut v);
    v
}

/// `EqualIgnoreHash`: templates equal after removing the pod-template-hash label from both.
pub fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    template_value_without_hash(a) == template_value_without_hash(b)
}

// ---------------------------------------------------------------------------------------------
// Label selectors

/// Renders a selector in the `labelSelector` query syntax.
pub fn selector_string(s: &LabelSelector) -> String {
    let mut parts: Vec<String> = s
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for r in s.match_expressions.iter().flatten() {
        let mut values = r.values.clone().unwrap_or_default();
        values.sort();
        parts.push(match r.operator.as_str() {
            "In" => format!("{} in ({})", r.key, values.join(",")),
            "NotIn" => format!("{} notin ({})", r.key, values.join(",")),
            "Exists" => r.key.clone(),
            _ => format!("!{}", r.key),
        });
    }
    parts.join(",")
}

// ---------------------------------------------------------------------------------------------
// Ordering

/// `ReplicaSetsByCreationTimestamp`: oldest first, ties by name.
pub fn cmp_by_creation(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    a.metadata
        .creation_timestamp
        .cmp(&b.metadata.creation_timestamp)
        .then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

/// Revision annotation; absent or unparseable → 0 (as the sort comparators treat it).
pub fn revision(rs: &ReplicaSet) -> i64 {
    annotation(&rs.metadata.annotations, REVISION)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// `ReplicaSetsByRevision`: lowest revision first, ties by creation.
pub fn cmp_by_revision(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    revision(a)
        .cmp(&revision(b))
        .then_with(|| cmp_by_creation(a, b))
}

/// `MaxRevision`: highest parseable revision (0 if none).
pub fn max_revision<'a>(rss: impl IntoIterator<Item = &'a ReplicaSet>) -> i64 {
    rss.into_iter().map(revision).max().unwrap_or(0).max(0)
}

// ---------------------------------------------------------------------------------------------
// ReplicaSet annotations

/// `SetReplicasAnnotations`: desired-replicas and max-replicas; true when anything changed.
pub fn set_replicas_annotations(a: &mut BTreeMap<String, String>, desired: i32, max: i32) -> bool {
    let mut changed = false;
    for (k, v) in [(DESIRED_REPLICAS, desired), (MAX_REPLICAS, max)] {
        let v = v.to_string();
        if a.get(k) != Some(&v) {
            a.insert(k.to_string(), v);
            changed = true;
        }
    }
    changed
}

pub fn replicas_annotations_need_update(rs: &ReplicaSet, desired: i32, max: i32) -> bool {
    let mut a = rs.metadata.annotations.clone().unwrap_or_default();
    set_replicas_annotations(&mut a, desired, max)
}

/// `SetNewReplicaSetAnnotations`: copies Deployment annotations (minus the skip list), raises the
/// revision to `new_revision` if lower (recording the previous one in revision-history), and for a
/// not-yet-created RS sets the replicas annotations. True when anything changed.
pub fn set_new_rs_annotations(
    d: &Deployment,
    rs_annotations: &mut BTreeMap<String, String>,
    new_revision: i64,
    exists: bool,
) -> bool {
    let mut changed = false;
    for (k, v) in d.metadata.annotations.iter().flatten() {
        if skip_copy_annotation(k) || rs_annotations.get(k) == Some(v) {
            continue;
        }
        rs_annotations.insert(k.clone(), v.clone());
        changed = true;
    }
    let old = rs_annotations.get(REVISION).cloned();
    let old_int = match old.as_deref() {
        None | Some("") => 0,
        Some(s) => match s.parse::<i64>() {
            Ok(v) => v,
            // Upstream leaves an RS with a garbage revision alone.
            Err(_) => return changed,
        },
    };
    if old_int < new_revision {
        rs_annotations.insert(REVISION.to_string(), new_revision.to_string());
        changed = true;
        if let Some(old) = old.filter(|o| !o.is_empty()) {
            let history = rs_annotations
                .get(REVISION_HISTORY)
                .cloned()
                .unwrap_or_default();
            if history.is_empty() {
                rs_annotations.insert(REVISION_HISTORY.to_string(), old);
            } else {
                let mut entries: Vec<&str> = history.split(',').collect();
                let mut total = history.len() + old.len() + 1;
                let mut start = 0;
                while total > MAX_REV_HISTORY_CHARS && start < entries.len() {
                    total -= entries[start].len() + 1;
                    start += 1;
                }
                if total <= MAX_REV_HISTORY_CHARS {
                    entries = entries.split_off(start);
                    entries.push(&old);
                    let joined = entries.join(",");
                    rs_annotations.insert(REVISION_HISTORY.to_string(), joined);
                }
            }
        }
    }
    if !exists {
        let r = replicas(d);
        changed |= set_replicas_annotations(rs_annotations, r, r + max_surge(d));
    }
    changed
}

// ---------------------------------------------------------------------------------------------
// Rolling update arithmetic

pub fn total_spec(rss: &[&ReplicaSet]) -> i32 {
    rss.iter().map(|r| rs_replicas(r)).sum()
}

pub fn total_available(rss: &[&ReplicaSet]) -> i32 {
    rss.iter().map(|r| rs_available(r)).sum()
}

/// `NewRSNewReplicas`: the size the new RS may grow to now (all_spec_total includes the new RS).
pub fn new_rs_new_replicas(d: &Deployment, all_spec_total: i32, new_rs_spec: i32) -> i32 {
    let r = replicas(d);
    if !is_rolling(d) {
        return r;
    }
    let max_total = r + max_surge(d);
    if all_spec_total >= max_total {
        return new_rs_spec;
    }
    new_rs_spec + (max_total - all_spec_total).min(r - new_rs_spec)
}

/// `reconcileNewReplicaSet`: the new RS's target size, None if it stays as is.
pub fn reconcile_new_rs_target(
    d: &Deployment,
    all: &[&ReplicaSet],
    new: &ReplicaSet,
) -> Option<i32> {
    let r = replicas(d);
    let cur = rs_replicas(new);
    let target = match cur.cmp(&r) {
        Ordering::Equal => return None,
        Ordering::Greater => r,
        Ordering::Less => new_rs_new_replicas(d, total_spec(all), cur),
    };
    (target != cur).then_some(target)
}

/// `reconcileOldReplicaSets` (cleanupUnhealthyReplicas, then
/// scaleDownOldReplicaSetsForRollingUpdate) as an ordered list of (index into `old`, new size)
/// writes. `old` are the *active* old RSs; `all` includes the new RS.
pub fn old_rs_scale_down_steps(
    d: &Deployment,
    all: &[&ReplicaSet],
    old: &[&ReplicaSet],
    new: &ReplicaSet,
) -> Vec<(usize, i32)> {
    let mut steps = Vec::new();
    if total_spec(old) == 0 {
        return steps;
    }
    let min_available = replicas(d) - max_unavailable(d);
    let new_unavailable = rs_replicas(new) - rs_available(new);
    let max_scaled_down = total_spec(all) - min_available - new_unavailable;
    if max_scaled_down <= 0 {
        return steps;
    }
    let mut order: Vec<usize> = (0..old.len()).collect();
    order.sort_by(|a, b| cmp_by_creation(old[*a], old[*b]));
    let mut sizes: Vec<i32> = old.iter().map(|r| rs_replicas(r)).collect();

    // Unavailable old replicas go first: removing them cannot hurt availability.
    let mut cleaned = 0;
    for &i in &order {
        if cleaned >= max_scaled_down {
            break;
        }
        let (spec, avail) = (sizes[i], rs_available(old[i]));
        if spec == 0 || spec == avail {
            continue;
        }
        let down = (max_scaled_down - cleaned).min(spec - avail);
        if down <= 0 {
            continue;
        }
        sizes[i] = spec - down;
        cleaned += down;
        steps.push((i, sizes[i]));
    }

    // Then healthy ones, as far as availability allows.
    let available = total_available(all);
    if available <= min_available {
        return steps;
    }
    let budget = available - min_available;
    let mut done = 0;
    for &i in &order {
        if done >= budget {
            break;
        }
        if sizes[i] == 0 {
            continue;
        }
        let down = sizes[i].min(budget - done);
        sizes[i] -= down;
        done += down;
        steps.push((i, sizes[i]));
    }
    steps
}

// ---------------------------------------------------------------------------------------------
// Proportional scaling

/// `FindActiveOrLatest` over (new, old): Some(index into `all`) when at most one RS is active.
/// `all` is old RSs followed by the new one (if any) at `new_idx`.
pub fn find_active_or_latest(all: &[&ReplicaSet], new_idx: Option<usize>) -> Option<usize> {
    if all.is_empty() {
        return None;
    }
    let active: Vec<usize> = (0..all.len())
        .filter(|i| rs_replicas(all[*i]) > 0)
        .collect();
    match active.len() {
        0 => new_idx.or_else(|| (0..all.len()).max_by(|a, b| cmp_by_creation(all[*a], all[*b]))),
        1 => Some(active[0]),
        _ => None,
    }
}

/// `IsSaturated`: the new RS runs exactly R available pods and knows it.
pub fn is_saturated(d: &Deployment, rs: &ReplicaSet) -> bool {
    let r = replicas(d);
    rs_annotation_i32(rs, DESIRED_REPLICAS) == Some(r)
        && rs_replicas(rs) == r
        && rs_available(rs) == r
}

fn round_half_away(x: f64) -> i32 {
    x.round() as i32
}

/// `getReplicaSetFraction`.
fn rs_fraction(rs: &ReplicaSet, d: &Deployment) -> i32 {
    let r = replicas(d);
    let spec = rs_replicas(rs);
    if r == 0 {
        return -spec;
    }
    let max = r + max_surge(d);
    let before = match rs_annotation_i32(rs, MAX_REPLICAS) {
        Some(v) if v != 0 => v,
        _ => {
            let s = d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0);
            if s == 0 {
                return 0;
            }
            s
        }
    };
    round_half_away(f64::from(spec) * f64::from(max) / f64::from(before)) - spec
}

/// `GetProportion`.
fn proportion(rs: &ReplicaSet, d: &Deployment, to_add: i32, added: i32) -> i32 {
    if rs_replicas(rs) == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let fraction = rs_fraction(rs, d);
    let allowed = to_add - added;
    if to_add > 0 {
        fraction.min(allowed)
    } else {
        fraction.max(allowed)
    }
}

/// The rolling-update branch of `scale`: new sizes for the *active* RSs, in write order
/// (largest first; ties newer-first when growing, older-first when shrinking). Every active RS
/// is listed, even when its size is unchanged (its annotations are refreshed).
pub fn proportional_sizes(d: &Deployment, active: &[&ReplicaSet]) -> Vec<(usize, i32)> {
    let r = replicas(d);
    let allowed = if r > 0 { r + max_surge(d) } else { 0 };
    let to_add = allowed - total_spec(active);
    let mut order: Vec<usize> = (0..active.len()).collect();
    match to_add.cmp(&0) {
        Ordering::Greater => order.sort_by(|a, b| {
            rs_replicas(active[*b])
                .cmp(&rs_replicas(active[*a]))
                .then_with(|| cmp_by_creation(active[*b], active[*a]))
        }),
        Ordering::Less => order.sort_by(|a, b| {
            rs_replicas(active[*b])
                .cmp(&rs_replicas(active[*a]))
                .then_with(|| cmp_by_creation(active[*a], active[*b]))
        }),
        Ordering::Equal => {}
    }
    let mut added = 0;
    let mut sizes: Vec<(usize, i32)> = order
        .iter()
        .map(|&i| {
            let rs = active[i];
            if to_add == 0 {
                return (i, rs_replicas(rs));
            }
            let p = proportion(rs, d, to_add, added);
            added += p;
            (i, rs_replicas(rs) + p)
        })
        .collect();
    if to_add != 0 {
        if let Some(first) = sizes.first_mut() {
            first.1 = (first.1 + to_add - added).max(0);
        }
    }
    sizes
}

// ---------------------------------------------------------------------------------------------
// Status and conditions

pub fn now_seconds() -> Timestamp {
    // Wire times have second precision; truncating keeps read-back status deep-equal.
    Timestamp::from_second(Timestamp::now().as_second()).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn nz(v: i32) -> Option<i32> {
    (v != 0).then_some(v)
}

pub fn get_condition<'a>(
    s: Option<&'a DeploymentStatus>,
    type_: &str,
) -> Option<&'a DeploymentCondition> {
    s.and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == type_))
}

pub fn new_condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    now: Timestamp,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// `SetDeploymentCondition`: no-op when status and reason are unchanged; keeps
/// lastTransitionTime when only the reason changes; moves the condition to the end.
pub fn set_condition(s: &mut DeploymentStatus, mut c: DeploymentCondition) {
    let conds = s.conditions.get_or_insert_with(Vec::new);
    if let Some(cur) = conds.iter().find(|x| x.type_ == c.type_) {
        if cur.status == c.status && cur.reason == c.reason {
            return;
        }
        if cur.status == c.status {
            c.last_transition_time = cur.last_transition_time.clone();
        }
    }
    conds.retain(|x| x.type_ != c.type_);
    conds.push(c);
}

pub fn remove_condition(s: &mut DeploymentStatus, type_: &str) {
    if let Some(c) = s.conditions.as_mut() {
        c.retain(|x| x.type_ != type_);
        if c.is_empty() {
            s.conditions = None;
        }
    }
}

/// `calculateStatus`.
pub fn calculate_status(
    d: &Deployment,
    all: &[&ReplicaSet],
    new: Option<&ReplicaSet>,
    now: Timestamp,
) -> DeploymentStatus {
    let available = total_available(all);
    let unavailable = (total_spec(all) - available).max(0);
    let old = d.status.as_ref();
    let mut s = DeploymentStatus {
        observed_generation: d.metadata.generation.filter(|g| *g != 0),
        replicas: nz(all.iter().map(|r| rs_status_replicas(r)).sum()),
        updated_replicas: nz(new.map(rs_status_replicas).unwrap_or(0)),
        ready_replicas: nz(all.iter().map(|r| rs_ready(r)).sum()),
        available_replicas: nz(available),
        unavailable_replicas: nz(unavailable),
        collision_count: old.and_then(|s| s.collision_count),
        conditions: old
            .and_then(|s| s.conditions.clone())
            .filter(|c| !c.is_empty()),
        terminating_replicas: None,
    };
    if available >= replicas(d) - max_unavailable(d) {
        set_condition(
            &mut s,
            new_condition(
                COND_AVAILABLE,
                "True",
                REASON_MIN_AVAILABLE,
                "Deployment has minimum availability.".into(),
                now,
            ),
        );
    } else {
        set_condition(
            &mut s,
            new_condition(
                COND_AVAILABLE,
                "False",
                REASON_MIN_UNAVAILABLE,
                "Deployment does not have minimum availability.".into(),
                now,
            ),
        );
    }
    s
}

fn count(v: Option<i32>) -> i32 {
    v.unwrap_or(0)
}

/// `DeploymentComplete`.
pub fn deployment_complete(d: &Deployment, s: &DeploymentStatus) -> bool {
    let r = replicas(d);
    count(s.updated_replicas) == r
        && count(s.replicas) == r
        && count(s.available_replicas) == r
        && s.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0)
}

/// `DeploymentProgressing`: progress against the status currently stored on `d`.
pub fn deployment_progressing(d: &Deployment, s: &DeploymentStatus) -> bool {
    let old = d.status.clone().unwrap_or_default();
    let old_old = count(old.replicas) - count(old.updated_replicas);
    let new_old = count(s.replicas) - count(s.updated_replicas);
    count(s.updated_replicas) > count(old.updated_replicas)
        || new_old < old_old
        || count(s.ready_replicas) > count(old.ready_replicas)
        || count(s.available_replicas) > count(old.available_replicas)
}

/// `DeploymentTimedOut`.
pub fn deployment_timed_out(d: &Deployment, s: &DeploymentStatus, now: Timestamp) -> bool {
    let Some(deadline) = progress_deadline(d) else {
        return false;
    };
    let Some(c) = get_condition(Some(s), COND_PROGRESSING) else {
        return false;
    };
    match c.reason.as_deref() {
        Some(REASON_NEW_RS_AVAILABLE) => false,
        Some(REASON_TIMED_OUT) => true,
        _ => c
            .last_update_time
            .as_ref()
            .is_some_and(|t| t.0.as_second() + i64::from(deadline) < now.as_second()),
    }
}

/// `syncRolloutStatus` minus the write: the status the Deployment should have.
pub fn rollout_status(
    d: &Deployment,
    all: &[&ReplicaSet],
    new: Option<&ReplicaSet>,
    now: Timestamp,
) -> DeploymentStatus {
    let mut s = calculate_status(d, all, new, now);
    let has_deadline = has_progress_deadline(d);
    if !has_deadline {
        remove_condition(&mut s, COND_PROGRESSING);
    }
    let cur = get_condition(d.status.as_ref(), COND_PROGRESSING);
    let complete_already = count(s.replicas) == count(s.updated_replicas)
        && cur.is_some_and(|c| c.reason.as_deref() == Some(REASON_NEW_RS_AVAILABLE));
    let dname = d.metadata.name.clone().unwrap_or_default();
    let subject = match new {
        Some(rs) => format!(
            "ReplicaSet {:?}",
            rs.metadata.name.clone().unwrap_or_default()
        ),
        None => format!("Deployment {dname:?}"),
    };
    if has_deadline && !complete_already {
        if deployment_complete(d, &s) {
            set_condition(
                &mut s,
                new_condition(
                    COND_PROGRESSING,
                    "True",
                    REASON_NEW_RS_AVAILABLE,
                    format!("{subject} has successfully progressed."),
                    now,
                ),
            );
        } else if deployment_progressing(d, &s) {
            let mut c = new_condition(
                COND_PROGRESSING,
                "True",
                REASON_RS_UPDATED,
                format!("{subject} is progressing."),
                now,
            );
            // Progress always moves lastUpdateTime, even with an unchanged reason.
            if let Some(cur) = cur {
                if cur.status == "True" {
                    c.last_transition_time = cur.last_transition_time.clone();
                }
                remove_condition(&mut s, COND_PROGRESSING);
            }
            set_condition(&mut s, c);
        } else if deployment_timed_out(d, &s, now) {
            set_condition(
                &mut s,
                new_condition(
                    COND_PROGRESSING,
                    "False",
                    REASON_TIMED_OUT,
                    format!("{subject} has timed out progressing."),
                    now,
                ),
            );
        }
    }
    // ReplicaFailure of the new RS (else any RS) is mirrored onto the Deployment.
    let failure = new.into_iter().chain(all.iter().copied()).find_map(|rs| {
        rs.status
            .as_ref()
            .and_then(|st| st.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == COND_REPLICA_FAILURE))
    });
    match failure {
        Some(f) => set_condition(
            &mut s,
            DeploymentCondition {
                type_: COND_REPLICA_FAILURE.into(),
                status: f.status.clone(),
                reason: f.reason.clone(),
                message: f.message.clone(),
                last_update_time: f.last_transition_time.clone().or(Some(Time(now))),
                last_transition_time: f.last_transition_time.clone().or(Some(Time(now))),
            },
        ),
        None => remove_condition(&mut s, COND_REPLICA_FAILURE),
    }
    s
}

/// `requeueStuckDeployment`: when to look again for a progress-deadline timeout.
pub fn requeue_stuck_after(
    d: &Deployment,
    s: &DeploymentStatus,
    now: Timestamp,
) -> Option<Duration> {
    let deadline = progress_deadline(d)?;
    let cur = get_condition(d.status.as_ref(), COND_PROGRESSING)?;
    if deployment_complete(d, s) || cur.reason.as_deref() == Some(REASON_TIMED_OUT) {
        return None;
    }
    let from = cur.last_update_time.as_ref()?.0.as_second();
    let after = from + i64::from(deadline) - now.as_second();
    if after < 1 {
        return Some(Duration::from_secs(1));
    }
    Some(Duration::from_secs(after as u64 + 1))
}

/// `cleanupDeployment`: names of old RSs to delete, oldest revisions first.
pub fn cleanup_victims(d: &Deployment, old: &[&ReplicaSet]) -> Vec<String> {
    let Some(limit) = revision_history_limit(d) else {
        return Vec::new();
    };
    let mut alive: Vec<&ReplicaSet> = old
        .iter()
        .copied()
        .filter(|rs| rs.metadata.deletion_timestamp.is_none())
        .collect();
    let diff = alive.len() as i64 - i64::from(limit);
    if diff <= 0 {
        return Vec::new();
    }
    alive.sort_by(|a, b| cmp_by_revision(a, b));
    alive
        .iter()
        .take(diff as usize)
        .filter(|rs| {
            let observed = rs
                .status
                .as_ref()
                .and_then(|s| s.observed_generation)
                .unwrap_or(0);
            rs_status_replicas(rs) == 0
                && rs_replicas(rs) == 0
                && rs.metadata.generation.unwrap_or(0) <= observed
        })
        .filter_map(|rs| rs.metadata.name.clone())
        .collect()
}

/// `oldPodsRunning` (Recreate): any old RS still reporting pods, or any non-terminal pod
/// controlled by an RS other than the new one.
pub fn old_pods_running(old: &[&ReplicaSet], new_uid: Option<&str>, pods: &[&Pod]) -> bool {
    if old.iter().map(|r| rs_status_replicas(r)).sum::<i32>() > 0 {
        return true;
    }
    let old_uids: Vec<&str> = old
        .iter()
        .filter_map(|r| r.metadata.uid.as_deref())
        .collect();
    pods.iter().any(|p| {
        let owner = p
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true))
            .map(|o| o.uid.as_str());
        let Some(owner) = owner else { return false };
        if Some(owner) == new_uid || !old_uids.contains(&owner) {
            return false;
        }
        !matches!(
            p.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded") | Some("Failed")
        )
    })
}

#[cfg(test)]
mod tests;
