//! The read verbs: get and list (label/field selectors, limit and continue, Table output).

use axum::response::Response;
use serde_json::{json, Value};
use skiff_api::ApiError;

use crate::ctx::Ctx;
use crate::keys::collection_prefix;
use crate::objects::{include_object, meta_str};
use crate::respond::*;
use crate::storage::list_objects;

/// The object, or its Table row when the client asked for a Table.
pub(super) fn object_response(ctx: &Ctx, code: u16, obj: &Value) -> Response {
    if wants_table(&ctx.headers) {
        let rv = meta_str(obj, "resourceVersion").unwrap_or("").to_string();
        let table = table(
            ctx,
            std::slice::from_ref(obj),
            json!({"resourceVersion": rv}),
        );
        return json_response(code, &table);
    }
    if wants_partial_metadata(&ctx.headers) {
        return json_response(code, &partial_metadata(obj));
    }
    json_response(code, obj)
}

/// A Table of `objects` with the kind's columns (a custom kind's printer columns).
fn table(ctx: &Ctx, objects: &[Value], list_meta: Value) -> Value {
    let include = include_object(&ctx.query);
    match &ctx.custom {
        Some(kind) => crate::crd::strategy::table(kind, objects, include, list_meta, now()),
        None => skiff_api::table::to_table(ctx.info, objects, include, list_meta, now()),
    }
}

pub(super) async fn get(ctx: &Ctx, name: &str) -> ApiResult<Response> {
    let (obj, _) = ctx.get_current(name).await?;
    Ok(object_response(ctx, 200, &obj))
}

pub(super) async fn list(ctx: &Ctx) -> ApiResult<Response> {
    let (label, field) = ctx.selectors()?;
    let limit = ctx
        .query
        .get("limit")
        .map(|l| {
            l.parse::<i64>()
                .map_err(|_| ApiError::bad_request(format!("invalid limit {l:?}")))
        })
        .transpose()?
        .unwrap_or(0);
    let prefix = collection_prefix(ctx.info, ctx.ns.as_deref());
    let (items, rev, token) = list_objects(ctx, &prefix, &label, &field, limit).await?;
    let mut list_meta = json!({"resourceVersion": rev.to_string()});
    if let Some(t) = &token {
        list_meta["continue"] = json!(t);
    }
    if wants_table(&ctx.headers) {
        return Ok(json_response(200, &table(ctx, &items, list_meta)));
    }
    if wants_partial_metadata(&ctx.headers) {
        let items: Vec<Value> = items.iter().map(partial_metadata).collect();
        return Ok(json_response(
            200,
            &json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": list_meta, "items": items}),
        ));
    }
    Ok(json_response(
        200,
        &json!({"kind": ctx.info.list_kind, "apiVersion": ctx.info.api_version(), "metadata": list_meta, "items": items}),
    ))
}
