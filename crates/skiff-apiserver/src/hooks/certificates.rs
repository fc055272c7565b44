//! CertificateSigningRequest strategies: what each write path may change. The main resource
//! changes only metadata; `/status` (the signer) changes status but keeps the Approved and
//! Denied conditions as stored; `/approval` (approvers) changes only the conditions. Both fill
//! in condition timestamps. The requesting user is recorded by the `plugins::certificates`
//! admission step, which sees the user.

use serde_json::{json, Value};

use crate::admission::Admission;
use crate::ctx::Mode;
use crate::respond::now_rfc3339;

pub(crate) struct CsrHooks;

impl Admission for CsrHooks {
    fn admit_update(&self, old: &Value, new: &mut Value, mode: Mode) {
        new["spec"] = old.get("spec").cloned().unwrap_or_else(|| json!({}));
        let old_status = old.get("status").cloned().unwrap_or_else(|| json!({}));
        match mode {
            Mode::Main => new["status"] = old_status,
            Mode::Status => {
                for t in ["Approved", "Denied"] {
                    preserve(old, new, t);
                }
                timestamps(old, new);
            }
            Mode::Approval => {
                timestamps(old, new);
                let conditions = new.pointer("/status/conditions").cloned();
                let mut status = old_status;
                match conditions {
                    Some(c) if status.is_object() => status["conditions"] = c,
                    _ => {
                        if let Some(m) = status.as_object_mut() {
                            m.remove("conditions");
                        }
                    }
                }
                new["status"] = status;
            }
        }
    }
}

fn indices(obj: &Value, t: &str) -> Vec<usize> {
    obj.pointer("/status/conditions")
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .enumerate()
                .filter(|(_, c)| c.get("type").and_then(Value::as_str) == Some(t))
                .map(|(i, _)| i)
                .collect()
        })
        .unwrap_or_default()
}

/// Keeps the stored instances of condition `t` when the write has as many (a different count
/// is an add or remove, which validation reports).
fn preserve(old: &Value, new: &mut Value, t: &str) {
    let (from, to) = (indices(old, t), indices(new, t));
    if from.len() != to.len() {
        return;
    }
    for (o, n) in from.into_iter().zip(to) {
        if let (Some(c), Some(slot)) = (
            old.pointer(&format!("/status/conditions/{o}")).cloned(),
            new.pointer_mut(&format!("/status/conditions/{n}")),
        ) {
            *slot = c;
        }
    }
}

/// Missing lastUpdateTime is now; missing lastTransitionTime is the stored one of a condition
/// with the same type and status, else now.
fn timestamps(old: &Value, new: &mut Value) {
    let now = now_rfc3339();
    let old_conditions = old
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let Some(conditions) = new
        .pointer_mut("/status/conditions")
        .and_then(Value::as_array_mut)
    else {
        return;
    };
    let empty = |c: &Value, k: &str| c.get(k).and_then(Value::as_str).is_none_or(str::is_empty);
    for c in conditions.iter_mut().filter(|c| c.is_object()) {
        if empty(c, "lastUpdateTime") {
            c["lastUpdateTime"] = json!(now);
        }
        if empty(c, "lastTransitionTime") {
            let same = old_conditions.iter().find(|o| {
                o.get("type") == c.get("type")
                    && o.get("status") == c.get("status")
                    && !empty(o, "lastTransitionTime")
            });
            c["lastTransitionTime"] = same
                .and_then(|o| o.get("lastTransitionTime").cloned())
                .unwrap_or_else(|| json!(now));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csr(conditions: Value, cert: &str) -> Value {
        json!({"spec": {"signerName": "example.com/s", "username": "alice"},
               "status": {"conditions": conditions, "certificate": cert}})
    }

    #[test]
    fn approval_changes_only_conditions_and_status_keeps_approval() {
        let old = csr(
            json!([{"type": "Approved", "status": "True", "reason": "R",
                    "lastTransitionTime": "2026-01-01T00:00:00Z", "lastUpdateTime": "2026-01-01T00:00:00Z"}]),
            "",
        );
        // Approval: spec and certificate from the stored object, conditions from the write.
        let mut new = csr(json!([{"type": "Denied", "status": "True"}]), "Y2VydA==");
        new["spec"]["username"] = json!("mallory");
        CsrHooks.admit_update(&old, &mut new, Mode::Approval);
        assert_eq!(new["spec"]["username"], "alice");
        assert_eq!(new["status"]["certificate"], "");
        assert_eq!(new["status"]["conditions"][0]["type"], "Denied");
        assert!(new["status"]["conditions"][0]["lastTransitionTime"].is_string());

        // Status: the certificate from the write, the Approved condition as stored.
        let mut new = csr(
            json!([{"type": "Approved", "status": "True", "reason": "Changed"},
                   {"type": "Failed", "status": "True"}]),
            "Y2VydA==",
        );
        CsrHooks.admit_update(&old, &mut new, Mode::Status);
        assert_eq!(new["status"]["certificate"], "Y2VydA==");
        assert_eq!(new["status"]["conditions"][0]["reason"], "R");
        assert!(new["status"]["conditions"][1]["lastUpdateTime"].is_string());

        // Main: nothing under spec or status changes.
        let mut new = csr(json!([]), "Y2VydA==");
        CsrHooks.admit_update(&old, &mut new, Mode::Main);
        assert_eq!(new["status"], old["status"]);
    }
}
