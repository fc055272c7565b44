//! Endpoints and EndpointSlice hooks: their addresses may not lie in the service CIDR (see
//! [`allocator::reject_service_cidr_addresses`]).

use async_trait::async_trait;
use serde_json::Value;

use crate::admission::{Admission, Reservation};
use crate::allocator;
use crate::ctx::Ctx;
use crate::respond::ApiResult;

/// Service-CIDR check for an addresses-holding kind: core/v1 Endpoints
/// (`subsets[].addresses[].ip`, `notReadyAddresses[].ip`) or discovery.k8s.io/v1 EndpointSlice
/// (`endpoints[].addresses[]`).
pub(crate) struct AddressHooks(pub(crate) fn(&Value) -> Vec<(String, &str)>);

pub(crate) const ENDPOINTS: AddressHooks = AddressHooks(endpoints_addresses);
pub(crate) const ENDPOINT_SLICES: AddressHooks = AddressHooks(slice_addresses);

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

#[async_trait]
impl Admission for AddressHooks {
    async fn reserve_create(
        &self,
        ctx: &Ctx,
        obj: &mut Value,
    ) -> ApiResult<Option<Box<dyn Reservation>>> {
        self.check(ctx, obj)?;
        Ok(None)
    }

    async fn reserve_update(
        &self,
        ctx: &Ctx,
        _old: &Value,
        new: &mut Value,
    ) -> ApiResult<Option<Box<dyn Reservation>>> {
        self.check(ctx, new)?;
        Ok(None)
    }
}

impl AddressHooks {
    fn check(&self, ctx: &Ctx, obj: &Value) -> ApiResult<()> {
        allocator::reject_service_cidr_addresses(&ctx.st, ctx.info, obj, (self.0)(obj))
    }
}
