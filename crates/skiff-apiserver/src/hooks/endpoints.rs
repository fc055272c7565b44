//! Endpoints and EndpointSlice hooks: addresses may not lie in the service CIDR (see
//! [`allocator::check_endpoint_addresses`]).

use async_trait::async_trait;
use serde_json::Value;

use crate::admission::{Admission, Reservation};
use crate::allocator;
use crate::ctx::Ctx;
use crate::respond::ApiResult;

pub(crate) struct EndpointAddresses;

#[async_trait]
impl Admission for EndpointAddresses {
    async fn reserve_create(
        &self,
        ctx: &Ctx,
        obj: &mut Value,
    ) -> ApiResult<Option<Box<dyn Reservation>>> {
        allocator::check_endpoint_addresses(&ctx.st, ctx.info, obj)?;
        Ok(None)
    }

    async fn reserve_update(
        &self,
        ctx: &Ctx,
        _old: &Value,
        new: &mut Value,
    ) -> ApiResult<Option<Box<dyn Reservation>>> {
        allocator::check_endpoint_addresses(&ctx.st, ctx.info, new)?;
        Ok(None)
    }
}
