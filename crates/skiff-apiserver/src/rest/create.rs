//! The create verb (POST), with generateName, and the namespace/identity checks it shares with
//! apply-create.

use axum::response::Response;
use serde_json::{json, Value};
use skiff_api::{ApiError, Cause};
use skiff_store::StoreError;

use super::read::object_response;
use crate::admission;
use crate::ctx::{Ctx, RETRIES};
use crate::keys::encode;
use crate::namespaces::check_namespace;
use crate::objects::{check_type_meta, meta_mut, meta_str};
use crate::plugins;
use crate::respond::*;
use crate::storage::prepare_create;

fn random_suffix() -> String {
    use rand::Rng;
    // Upstream's alphabet: no vowels or confusable characters.
    const ALPHA: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::thread_rng();
    (0..5)
        .map(|_| ALPHA[rng.gen_range(0..ALPHA.len())] as char)
        .collect()
}

/// Namespace and name checks shared by POST and apply-create.
pub(super) async fn resolve_new_identity(ctx: &Ctx, obj: &mut Value) -> ApiResult<()> {
    if ctx.info.namespaced {
        let url_ns = ctx.ns.clone().unwrap_or_default();
        let body_ns = meta_str(obj, "namespace").unwrap_or("").to_string();
        if !body_ns.is_empty() && body_ns != url_ns {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        meta_mut(obj).insert("namespace".into(), json!(url_ns));
        check_namespace(ctx, &url_ns).await?;
    }
    Ok(())
}

pub(super) async fn create(ctx: &Ctx, body: &[u8]) -> ApiResult<Response> {
    let mut obj = ctx.decode_body(body)?;
    check_type_meta(ctx.info, &mut obj)?;
    let warnings = ctx.field_validation(&obj)?;
    if let Some(reviewed) = ctx.hooks().review(ctx, &obj).await {
        return Ok(with_warnings(
            object_response(ctx, 201, &reviewed?),
            &warnings,
        ));
    }
    resolve_new_identity(ctx, &mut obj).await?;
    let name = meta_str(&obj, "name").unwrap_or("").to_string();
    let generate = meta_str(&obj, "generateName").unwrap_or("").to_string();
    if name.is_empty() && generate.is_empty() {
        return Err(ApiError::invalid(
            ctx.info.group,
            ctx.info.kind,
            "",
            vec![Cause {
                reason: "FieldValueRequired".into(),
                message: "Required value: name or generateName is required".into(),
                field: "metadata.name".into(),
            }],
        ));
    }
    let attempts = if name.is_empty() { RETRIES } else { 1 };
    for _ in 0..attempts {
        let mut candidate = obj.clone();
        let name = if name.is_empty() {
            let base: String = generate.chars().take(58).collect();
            let n = format!("{base}{}", random_suffix());
            meta_mut(&mut candidate).insert("name".into(), json!(n));
            n
        } else {
            name.clone()
        };
        prepare_create(ctx, &mut candidate, true)?;
        let mut warnings = warnings.clone();
        warnings.extend(
            plugins::admit(
                &plugins::Request {
                    ctx,
                    op: plugins::Operation::Create,
                    name: &name,
                    subresource: "",
                    old: None,
                },
                Some(&mut candidate),
            )
            .await?,
        );
        let reserved = ctx.hooks().reserve_create(ctx, &mut candidate).await?;
        if ctx.dry_run() {
            return Ok(with_warnings(
                object_response(ctx, 201, &candidate),
                &warnings,
            ));
        }
        let created = ctx
            .st
            .store
            .create(&ctx.key(&name), encode(&candidate))
            .await;
        admission::finish(&ctx.st, reserved, created.is_ok()).await;
        match created {
            Ok(kv) => {
                crate::keys::set_rv(&mut candidate, kv.mod_revision);
                return Ok(with_warnings(
                    object_response(ctx, 201, &candidate),
                    &warnings,
                ));
            }
            Err(StoreError::AlreadyExists(_))
                if !generate.is_empty() && name != meta_str(&obj, "name").unwrap_or("") =>
            {
                continue
            }
            Err(e) => return Err(store_err(ctx.info, &name, e)),
        }
    }
    Err(timeout(format!(
        "failed to generate a unique name for {} with prefix {generate:?}",
        ctx.info.group_resource()
    )))
}
