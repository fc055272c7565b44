//! The typed seam for kind-specific admission: [`Admission`] hooks (all no-ops by default) that
//! the generic storage steps in `storage.rs` call, and the [`Registry`] that maps (group, kind)
//! to them. The hooks themselves live in `hooks/`; kinds without hooks get [`NoHooks`].

use std::collections::HashMap;

use async_trait::async_trait;
use serde_json::Value;
use skiff_api::ResourceInfo;

use crate::ctx::{Ctx, DeleteOpts, Mode};
use crate::respond::ApiResult;
use crate::AppState;

/// What a hook reserved for a write (e.g. a Service's ClusterIP): kept when the write commits,
/// given back when it fails.
#[async_trait]
pub(crate) trait Reservation: Send + Sync {
    async fn finish(self: Box<Self>, st: &AppState, committed: bool);
}

/// How a delete proceeds for a kind.
#[derive(Debug, PartialEq)]
pub(crate) enum DeleteDecision {
    /// Finalizers (the object's and the garbage collector's) hold it; without any it goes.
    Generic,
    /// The deletion the hook wants is already under way: answer with the object as stored.
    AlreadyPending,
    /// Keep the object, stored as this (the hook set its deletionTimestamp).
    Pending(Value),
}

/// Kind-specific steps of create, update and delete. Every method defaults to "nothing special".
#[async_trait]
pub(crate) trait Admission: Send + Sync {
    /// Create strategy: a new object keeps the status it was sent with (else it is reset).
    fn keeps_status_on_create(&self) -> bool {
        false
    }

    /// A computed kind (reviews): the create verb answers with the returned object (201) and
    /// stores nothing. None: an ordinary stored kind.
    async fn review(&self, _ctx: &Ctx, _obj: &Value) -> Option<ApiResult<Value>> {
        None
    }

    /// Server-set fields of a new object, before defaulting (initial status, finalizers, labels).
    fn init_create(&self, _obj: &mut Value) {}

    /// Mutating admission of a new object, after defaulting.
    fn admit_create(&self, _obj: &mut Value) {}

    /// Mutating admission of an update, after defaulting (server-owned values carried over).
    fn admit_update(&self, _old: &Value, _new: &mut Value, _mode: Mode) {}

    /// Checks and claims before a new object is written.
    async fn reserve_create(
        &self,
        _ctx: &Ctx,
        _obj: &mut Value,
    ) -> ApiResult<Option<Box<dyn Reservation>>> {
        Ok(None)
    }

    /// Checks and claims before an update is written.
    async fn reserve_update(
        &self,
        _ctx: &Ctx,
        _old: &Value,
        _new: &mut Value,
    ) -> ApiResult<Option<Box<dyn Reservation>>> {
        Ok(None)
    }

    /// How a delete of `cur` proceeds.
    fn on_delete(&self, _cur: &Value, _opts: &DeleteOpts, _now: jiff::Timestamp) -> DeleteDecision {
        DeleteDecision::Generic
    }

    /// Whether a pending object leaves the store once its last finalizer is gone (false: the
    /// kind's own finalizer removes it).
    fn remove_when_finalized(&self) -> bool {
        true
    }

    /// After a committed write left the object pending deletion.
    fn after_pending(&self, _ctx: &Ctx, _name: &str) {}

    /// After the object left the store; `last` is its final state.
    async fn after_delete(&self, _ctx: &Ctx, _last: &Value) {}

    /// DELETE answers with the deleted object instead of a Status (upstream's
    /// ReturnDeletedObject).
    fn returns_deleted_object(&self) -> bool {
        false
    }
}

/// The hooks of a kind that has none.
pub(crate) struct NoHooks;

impl Admission for NoHooks {}

static NO_HOOKS: NoHooks = NoHooks;

/// (group, kind) → hooks.
#[derive(Default)]
pub(crate) struct Registry {
    by_kind: HashMap<(&'static str, &'static str), Box<dyn Admission>>,
}

impl Registry {
    /// Registers `hooks` for (group, kind); a later registration replaces an earlier one.
    pub(crate) fn with(
        mut self,
        group: &'static str,
        kind: &'static str,
        hooks: impl Admission + 'static,
    ) -> Self {
        self.by_kind.insert((group, kind), Box::new(hooks));
        self
    }

    pub(crate) fn for_kind(&self, info: &ResourceInfo) -> &dyn Admission {
        self.by_kind
            .get(&(info.group, info.kind))
            .map_or(&NO_HOOKS as &dyn Admission, |h| h.as_ref())
    }
}

/// Ends a hook's reservation once the write committed or failed (nothing without one).
pub(crate) async fn finish(st: &AppState, reserved: Option<Box<dyn Reservation>>, committed: bool) {
    if let Some(r) = reserved {
        r.finish(st, committed).await;
    }
}
