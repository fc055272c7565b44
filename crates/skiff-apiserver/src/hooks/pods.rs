//! Pod hooks: a new pod starts Pending and gets the default not-ready/unreachable tolerations;
//! a pod bound to a node is deleted gracefully (deletionTimestamp + grace period, the node agent
//! removes it); DELETE answers with the deleted pod.

use serde_json::{json, Value};

use crate::admission::{Admission, DeleteDecision};
use crate::ctx::DeleteOpts;
use crate::objects::{meta, meta_mut};
use crate::respond::rfc3339;

pub(crate) struct PodHooks {
    /// See `ServerConfig::default_toleration_seconds`.
    pub default_toleration_seconds: i64,
}

impl Admission for PodHooks {
    fn init_create(&self, obj: &mut Value) {
        obj["status"] = json!({"phase": "Pending"});
    }

    fn admit_create(&self, obj: &mut Value) {
        add_default_tolerations(obj, self.default_toleration_seconds);
    }

    fn on_delete(&self, cur: &Value, opts: &DeleteOpts, now: jiff::Timestamp) -> DeleteDecision {
        if !graceful(cur, opts) {
            return DeleteDecision::Generic;
        }
        let grace = grace_period(cur, opts);
        let cur_grace = meta(cur)
            .get("deletionGracePeriodSeconds")
            .and_then(Value::as_i64);
        let already = meta(cur).get("deletionTimestamp").is_some();
        if already && cur_grace.is_some_and(|g| g <= grace) {
            return DeleteDecision::AlreadyPending;
        }
        let at = now
            .checked_add(jiff::SignedDuration::from_secs(grace))
            .unwrap_or(now);
        let mut next = cur.clone();
        let m = meta_mut(&mut next);
        m.insert("deletionTimestamp".into(), json!(rfc3339(at)));
        m.insert("deletionGracePeriodSeconds".into(), json!(grace));
        DeleteDecision::Pending(next)
    }

    fn returns_deleted_object(&self) -> bool {
        true
    }
}

/// Upstream's DefaultTolerationSeconds admission plugin: every new pod that does not already
/// tolerate the not-ready / unreachable NoExecute taints gets a toleration for `seconds`, so
/// taint-based eviction waits that long before evicting it from a failed node.
fn add_default_tolerations(pod: &mut Value, seconds: i64) {
    const KEYS: [&str; 2] = [
        skiff_semantics::wellknown::taints::NOT_READY,
        skiff_semantics::wellknown::taints::UNREACHABLE,
    ];
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let list = spec.entry("tolerations").or_insert_with(|| json!([]));
    if list.is_null() {
        *list = json!([]);
    }
    let Some(list) = list.as_array_mut() else {
        return;
    };
    let mut missing = Vec::new();
    for key in KEYS {
        // Same test as upstream: a toleration with this key (or any key with Exists) whose
        // effect is NoExecute or empty already covers it.
        let tolerated = list.iter().any(|t| {
            let k = t.get("key").and_then(Value::as_str).unwrap_or("");
            let op = t.get("operator").and_then(Value::as_str).unwrap_or("Equal");
            let effect = t.get("effect").and_then(Value::as_str).unwrap_or("");
            (k == key || (k.is_empty() && op == "Exists"))
                && (effect.is_empty() || effect == "NoExecute")
        });
        if !tolerated {
            missing.push(
                json!({"key": key, "operator": "Exists", "effect": "NoExecute",
                "tolerationSeconds": seconds}),
            );
        }
    }
    list.extend(missing);
}

/// Pods bound to a node are deleted gracefully unless the grace period is 0.
fn graceful(pod: &Value, opts: &DeleteOpts) -> bool {
    let bound = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty());
    bound && grace_period(pod, opts) > 0 && !finished(pod)
}

fn finished(pod: &Value) -> bool {
    matches!(
        pod.pointer("/status/phase").and_then(Value::as_str),
        Some("Succeeded") | Some("Failed")
    )
}

fn grace_period(pod: &Value, opts: &DeleteOpts) -> i64 {
    opts.grace
        .or_else(|| {
            pod.pointer("/spec/terminationGracePeriodSeconds")
                .and_then(Value::as_i64)
        })
        .unwrap_or(30)
        .max(0)
}
