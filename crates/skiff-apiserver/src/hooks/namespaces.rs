//! Namespace hooks (upstream's namespace lifecycle): a new namespace is Active with the
//! `kubernetes` finalizer and its `kubernetes.io/metadata.name` label; DELETE marks it
//! Terminating and the in-process finalizer (`crate::namespaces`) empties and then removes it.

use serde_json::{json, Value};

use crate::admission::{Admission, DeleteDecision};
use crate::ctx::{Ctx, DeleteOpts};
use crate::objects::{meta, meta_mut, meta_str};
use crate::respond::rfc3339;

pub(crate) struct NamespaceHooks;

impl Admission for NamespaceHooks {
    fn init_create(&self, obj: &mut Value) {
        obj["status"] = json!({"phase": "Active"});
        if obj.pointer("/spec/finalizers").is_none() {
            obj["spec"] = json!({"finalizers": ["kubernetes"]});
        }
        let name = meta_str(obj, "name").unwrap_or("").to_string();
        let m = meta_mut(obj);
        let labels = m.entry("labels").or_insert_with(|| json!({}));
        if let Some(l) = labels.as_object_mut() {
            l.insert(
                skiff_semantics::wellknown::labels::METADATA_NAME.into(),
                json!(name),
            );
        }
    }

    fn on_delete(&self, cur: &Value, _opts: &DeleteOpts, now: jiff::Timestamp) -> DeleteDecision {
        if meta(cur).get("deletionTimestamp").is_some() {
            return DeleteDecision::AlreadyPending;
        }
        let mut next = cur.clone();
        let m = meta_mut(&mut next);
        m.insert("deletionTimestamp".into(), json!(rfc3339(now)));
        m.insert("deletionGracePeriodSeconds".into(), json!(0));
        next["status"] = json!({"phase": "Terminating"});
        DeleteDecision::Pending(next)
    }

    /// The namespace finalizer removes it once it is empty.
    fn remove_when_finalized(&self) -> bool {
        false
    }

    fn after_pending(&self, ctx: &Ctx, name: &str) {
        crate::namespaces::start_finalizer(ctx.st.clone(), name.to_string());
    }
}
