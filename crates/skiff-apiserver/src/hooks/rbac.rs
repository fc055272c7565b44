//! Roles, ClusterRoles and their bindings: a write answers only once the RBAC authorizer's
//! index reflects it, so the writer's next request (and anyone's after it) sees the new policy,
//! revocations included (the index otherwise follows the store a moment later).

use async_trait::async_trait;
use serde_json::Value;

use crate::admission::{Admission, Reservation};
use crate::ctx::Ctx;
use crate::respond::ApiResult;
use crate::AppState;

pub(crate) struct RbacHooks;

struct AwaitIndex;

#[async_trait]
impl Reservation for AwaitIndex {
    async fn finish(self: Box<Self>, st: &AppState, committed: bool) {
        if committed {
            st.rbac.catch_up(st.store.as_ref()).await;
        }
    }
}

#[async_trait]
impl Admission for RbacHooks {
    async fn reserve_create(
        &self,
        _ctx: &Ctx,
        _obj: &mut Value,
    ) -> ApiResult<Option<Box<dyn Reservation>>> {
        Ok(Some(Box::new(AwaitIndex)))
    }

    async fn reserve_update(
        &self,
        _ctx: &Ctx,
        _old: &Value,
        _new: &mut Value,
    ) -> ApiResult<Option<Box<dyn Reservation>>> {
        Ok(Some(Box::new(AwaitIndex)))
    }

    async fn after_delete(&self, ctx: &Ctx, _last: &Value) {
        ctx.st.rbac.catch_up(ctx.st.store.as_ref()).await;
    }
}
