//! Endpoints and EndpointSlice hooks: their addresses may not lie in the service CIDR (see
//! [`allocator::reject_service_cidr_addresses`]).

use async_trait::async_trait;
use serde_json::Value;

use crate::admission::{Admission, Reservation};
use crate::allocator;
use crate::ctx::Ctx;
use crate::respond::ApiResult;

/// core/v1 Endpoints: `subsets[].addresses[].ip` and `notReadyAddresses[].ip`.
pub(crate) struct EndpointsHooks;

/// discovery.k8s.io/v1 EndpointSlice: `endpoints[].addresses[]`.
pub(crate) struct EndpointSliceHooks;

fn endpoints_addresses(obj: &Value) -> Vec<(String, &str)> {
    let mut out = Vec::new();
    let subsets = obj.get("subsets").and_then(Value::as_array);
    for (i, s) in subsets.into_iter().flatten().enumerate() {
        for key in ["addresses", "notReadyAddresses"] {
            let list = s.get(key).and_then(Value::as_array);
            for (j, a) in list.into_iter().flatten().enumerate() {
                if let Some(ip) = a.get("ip").and_then(Value::as_str) {
                    out.push((format!("subsets[{i}].{key}[{j}].ip"), ip));
                }
            }
        }
    }
    out
}

fn slice_addresses(obj: &Value) -> Vec<(String, &str)> {
    let mut out = Vec::new();
    let eps = obj.get("endpoints").and_then(Value::as_array);
    for (i, ep) in eps.into_iter().flatten().enumerate() {
        let list = ep.get("addresses").and_then(Value::as_array);
        for (j, a) in list.into_iter().flatten().enumerate() {
            if let Some(ip) = a.as_str() {
                out.push((format!("endpoints[{i}].addresses[{j}]"), ip));
            }
        }
    }
    out
}

fn check(ctx: &Ctx, obj: &Value, addresses: fn(&Value) -> Vec<(String, &str)>) -> ApiResult<()> {
    allocator::reject_service_cidr_addresses(&ctx.st, ctx.info, obj, addresses(obj))
}

#[async_trait]
impl Admission for EndpointsHooks {
    async fn reserve_create(
        &self,
        ctx: &Ctx,
        obj: &mut Value,
    ) -> ApiResult<Option<Box<dyn Reservation>>> {
        check(ctx, obj, endpoints_addresses)?;
        Ok(None)
    }

    async fn reserve_update(
        &self,
        ctx: &Ctx,
        _old: &Value,
        new: &mut Value,
    ) -> ApiResult<Option<Box<dyn Reservation>>> {
        check(ctx, new, endpoints_addresses)?;
        Ok(None)
    }
}

#[async_trait]
impl Admission for EndpointSliceHooks {
    async fn reserve_create(
        &self,
        ctx: &Ctx,
        obj: &mut Value,
    ) -> ApiResult<Option<Box<dyn Reservation>>> {
        check(ctx, obj, slice_addresses)?;
        Ok(None)
    }

    async fn reserve_update(
        &self,
        ctx: &Ctx,
        _old: &Value,
        new: &mut Value,
    ) -> ApiResult<Option<Box<dyn Reservation>>> {
        check(ctx, new, slice_addresses)?;
        Ok(None)
    }
}
