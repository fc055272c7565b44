//! The delete verbs: delete (one object) and deletecollection. Preconditions, finalizers and
//! kind hooks (graceful pods, namespaces) are `storage::delete_object`'s.

use axum::response::Response;
use serde_json::{json, Value};

use crate::ctx::{Ctx, DeleteOpts};
use crate::keys::collection_prefix;
use crate::objects::meta_str;
use crate::respond::*;
use crate::storage::{delete_object, list_objects, Deleted};

fn deleted_status(ctx: &Ctx, obj: &Value) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
        "details": {"name": meta_str(obj, "name").unwrap_or(""), "group": ctx.info.group,
            "kind": ctx.info.plural, "uid": meta_str(obj, "uid").unwrap_or("")}})
}

pub(super) async fn delete(ctx: &Ctx, name: &str, body: &[u8]) -> ApiResult<Response> {
    let opts = DeleteOpts::from_request(ctx, body)?;
    match delete_object(ctx, name, &opts).await? {
        Deleted::Pending(obj) => Ok(json_response(200, &obj)),
        Deleted::Gone(obj) => {
            // A few kinds return the deleted object; most return a Status.
            if ctx.hooks().returns_deleted_object() {
                Ok(json_response(200, &obj))
            } else {
                Ok(json_response(200, &deleted_status(ctx, &obj)))
            }
        }
    }
}

pub(super) async fn delete_collection(ctx: &Ctx, body: &[u8]) -> ApiResult<Response> {
    let opts = DeleteOpts::from_request(ctx, body)?;
    let (label, field) = ctx.selectors()?;
    let prefix = collection_prefix(ctx.info, ctx.ns.as_deref());
    let (items, rev, _) = list_objects(ctx, &prefix, &label, &field, 0).await?;
    let mut out = Vec::new();
    for item in items {
        let name = meta_str(&item, "name").unwrap_or("").to_string();
        let item_ctx = Ctx {
            st: ctx.st.clone(),
            info: ctx.info,
            ns: meta_str(&item, "namespace")
                .map(str::to_string)
                .or_else(|| ctx.ns.clone()),
            query: ctx.query.clone(),
            headers: ctx.headers.clone(),
            user: ctx.user.clone(),
            custom: ctx.custom.clone(),
        };
        match delete_object(&item_ctx, &name, &opts).await {
            Ok(Deleted::Gone(o)) | Ok(Deleted::Pending(o)) => out.push(o),
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(json_response(
        200,
        &json!({"kind": ctx.info.list_kind, "apiVersion": ctx.info.api_version(),
            "metadata": {"resourceVersion": rev.to_string()}, "items": out}),
    ))
}
