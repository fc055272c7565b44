//! Service hooks: ClusterIP and NodePort allocation (see `allocator`) on create and update,
//! released when the Service is deleted; DELETE answers with the deleted Service.

use async_trait::async_trait;
use serde_json::Value;

use crate::admission::{Admission, Reservation};
use crate::allocator;
use crate::ctx::{Ctx, Mode};
use crate::objects::meta_str;
use crate::respond::ApiResult;
use crate::AppState;

pub(crate) struct ServiceHooks;

/// What a Service write claimed, and what it stops using once the write commits.
struct Allocation {
    claimed: allocator::Claimed,
    release_after: Vec<String>,
    uid: String,
}

#[async_trait]
impl Reservation for Allocation {
    async fn finish(self: Box<Self>, st: &AppState, committed: bool) {
        if committed {
            allocator::release_keys(st, &self.release_after, &self.uid).await;
        } else {
            self.claimed.release(st).await;
        }
    }
}

#[async_trait]
impl Admission for ServiceHooks {
    fn admit_update(&self, old: &Value, new: &mut Value, mode: Mode) {
        if mode == Mode::Main {
            allocator::carry_over(old, new);
        }
    }

    async fn reserve_create(
        &self,
        ctx: &Ctx,
        obj: &mut Value,
    ) -> ApiResult<Option<Box<dyn Reservation>>> {
        let claimed = allocator::on_create(&ctx.st, obj, ctx.dry_run()).await?;
        Ok(Some(Box::new(Allocation {
            claimed,
            release_after: Vec::new(),
            uid: String::new(),
        })))
    }

    async fn reserve_update(
        &self,
        ctx: &Ctx,
        old: &Value,
        new: &mut Value,
    ) -> ApiResult<Option<Box<dyn Reservation>>> {
        let (claimed, release_after) =
            allocator::on_update(&ctx.st, old, new, ctx.dry_run()).await?;
        Ok(Some(Box::new(Allocation {
            claimed,
            release_after,
            uid: meta_str(old, "uid").unwrap_or("").to_string(),
        })))
    }

    async fn after_delete(&self, ctx: &Ctx, last: &Value) {
        allocator::on_delete(&ctx.st, last).await;
    }

    fn returns_deleted_object(&self) -> bool {
        true
    }
}
