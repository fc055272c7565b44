//! The write verbs on an existing object: update (PUT), patch (JSON, merge, strategic) and
//! server-side apply (which creates a missing object), for the main resource and `/status`.

use axum::response::Response;
use http::Method;
use serde_json::{json, Value};
use skiff_api::ApiError;
use skiff_store::StoreError;

use super::create::resolve_new_identity;
use super::read::{get, object_response};
use crate::admission;
use crate::ctx::{Ctx, Mode, RETRIES};
use crate::keys::{decode, encode};
use crate::objects::{check_type_meta, meta_mut, meta_str};
use crate::plugins;
use crate::respond::*;
use crate::storage::{commit_update, prepare_create, prepare_update};

pub(super) async fn update(ctx: &Ctx, name: &str, body: &[u8], mode: Mode) -> ApiResult<Response> {
    let mut new = ctx.decode_body(body)?;
    check_type_meta(ctx.info, &mut new)?;
    let warnings = ctx.field_validation(&mut new)?;
    let wanted_rv = meta_str(&new, "resourceVersion")
        .filter(|r| !r.is_empty())
        .map(str::to_string);
    for _ in 0..RETRIES {
        let (old, rev) = ctx.get_current(name).await?;
        if let Some(w) = &wanted_rv {
            if *w != rev.to_string() {
                return Err(ctx.conflict(name));
            }
        }
        let write = Write {
            old: &old,
            rev,
            mode,
            record: true,
            retry: wanted_rv.is_none(),
        };
        if let Some(resp) = write.run(ctx, name, new.clone(), &warnings).await? {
            return Ok(resp);
        }
    }
    Err(ctx.conflict(name))
}

/// The tail update, patch and apply share: strategy preparation, admission, then the
/// compare-and-swap at `rev`.
struct Write<'a> {
    old: &'a Value,
    rev: i64,
    mode: Mode,
    /// Record managedFields for this write (apply records its own).
    record: bool,
    /// A lost race is retried (`Ok(None)`) only when the client sent no resourceVersion.
    retry: bool,
}

impl Write<'_> {
    async fn run(
        self,
        ctx: &Ctx,
        name: &str,
        new: Value,
        warnings: &[String],
    ) -> ApiResult<Option<Response>> {
        let Some(mut prepared) = prepare_update(ctx, self.old, new, self.mode, self.record)? else {
            // Nothing to write, but admission still sees the update (upstream admits before
            // the storage layer finds it a no-op): a validating policy or webhook can refuse
            // it, e.g. re-applying an unchanged CRD a policy forbids.
            let mut same = self.old.clone();
            let mut warnings = warnings.to_vec();
            warnings.extend(
                plugins::admit(
                    &plugins::Request {
                        ctx,
                        op: plugins::Operation::Update,
                        name,
                        subresource: self.mode.subresource(),
                        old: Some(self.old),
                    },
                    Some(&mut same),
                )
                .await?,
            );
            return Ok(Some(with_warnings(
                object_response(ctx, 200, self.old),
                &warnings,
            )));
        };
        let mut warnings = warnings.to_vec();
        warnings.extend(
            plugins::admit(
                &plugins::Request {
                    ctx,
                    op: plugins::Operation::Update,
                    name,
                    subresource: self.mode.subresource(),
                    old: Some(self.old),
                },
                Some(&mut prepared),
            )
            .await?,
        );
        let warnings = &warnings[..];
        let reserved = ctx
            .hooks()
            .reserve_update(ctx, self.old, &mut prepared)
            .await?;
        if ctx.dry_run() {
            crate::keys::set_rv(&mut prepared, self.rev);
            return Ok(Some(with_warnings(
                object_response(ctx, 200, &prepared),
                warnings,
            )));
        }
        let committed = commit_update(ctx, name, prepared, self.rev).await;
        admission::finish(&ctx.st, reserved, committed.is_ok()).await;
        match committed {
            Ok(stored) => Ok(Some(with_warnings(
                object_response(ctx, 200, &stored),
                warnings,
            ))),
            Err(StoreError::Conflict { .. }) if self.retry => Ok(None),
            Err(e) => Err(store_err(ctx.info, name, e)),
        }
    }
}

/// The patch body and type from the request.
pub(crate) enum PatchKind {
    Json,
    Merge,
    Strategic,
    Apply,
}

pub(crate) fn patch_kind(ctx: &Ctx) -> ApiResult<PatchKind> {
    // Custom objects have no strategic merge schema: upstream answers 415 and kubectl falls
    // back to a merge patch.
    if ctx.custom.is_some()
        && ctx.content_type().as_deref() == Some("application/strategic-merge-patch+json")
    {
        return Err(ApiError::new(
            415,
            "UnsupportedMediaType",
            "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
        ));
    }
    match ctx.content_type().as_deref() {
        Some("application/json-patch+json") => Ok(PatchKind::Json),
        Some("application/merge-patch+json") => Ok(PatchKind::Merge),
        Some("application/strategic-merge-patch+json") => Ok(PatchKind::Strategic),
        Some("application/apply-patch+yaml") | Some("application/apply-patch+json") => {
            Ok(PatchKind::Apply)
        }
        other => Err(ApiError::unsupported_media_type(other.unwrap_or(""))),
    }
}

pub(crate) fn parse_patch(kind: &PatchKind, body: &[u8]) -> ApiResult<Value> {
    if body.is_empty() {
        return Err(ApiError::bad_request("the patch body is empty"));
    }
    match kind {
        PatchKind::Apply => serde_json::from_slice(body).or_else(|_| {
            serde_norway::from_slice::<Value>(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))
        }),
        _ => serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}"))),
    }
}

/// Applies a parsed patch to `cur`.
pub(crate) fn apply_patch(
    ctx: &Ctx,
    kind: &PatchKind,
    cur: Option<&Value>,
    patch: &Value,
) -> ApiResult<Value> {
    let empty = json!({});
    let doc = cur.unwrap_or(&empty);
    match kind {
        PatchKind::Json => skiff_api::patch::json_patch(doc, patch),
        PatchKind::Merge => skiff_api::patch::merge_patch(doc, patch),
        PatchKind::Strategic => skiff_api::patch::strategic_merge_patch(ctx.info, doc, patch),
        PatchKind::Apply => {
            let manager = ctx
                .query
                .get("fieldManager")
                .filter(|m| !m.is_empty())
                .ok_or_else(|| {
                    ApiError::bad_request("PATCH /apply requires fieldManager to be set")
                })?;
            skiff_api::apply::server_side_apply_shaped(
                ctx.info,
                ctx.shape(),
                cur,
                patch,
                manager,
                ctx.query.flag("force"),
                &now_rfc3339(),
            )
        }
    }
}

pub(super) async fn patch(ctx: &Ctx, name: &str, body: &[u8], mode: Mode) -> ApiResult<Response> {
    let kind = patch_kind(ctx)?;
    let patch = parse_patch(&kind, body)?;
    if matches!(kind, PatchKind::Apply) {
        let mut p = patch.clone();
        check_type_meta(ctx.info, &mut p)?;
        if let Some(n) = meta_str(&p, "name") {
            if n != name {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({n}) does not match the name on the URL ({name})"
                )));
            }
        }
    }
    let precondition = patch
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .map(str::to_string);
    for _ in 0..RETRIES {
        let current = match ctx.st.store.get(&ctx.key(name)).await {
            Ok(Some(kv)) => Some((ctx.at_request_version(decode(&kv)?).await?, kv.mod_revision)),
            Ok(None) => None,
            Err(e) => return Err(store_err(ctx.info, name, e)),
        };
        let Some((cur, rev)) = current else {
            if matches!(kind, PatchKind::Apply) && mode == Mode::Main {
                return apply_create(ctx, name, &patch).await;
            }
            return Err(ApiError::not_found(ctx.info.group, ctx.info.plural, name));
        };
        if let Some(p) = &precondition {
            if *p != rev.to_string() {
                return Err(ctx.conflict(name));
            }
        }
        let mut new = apply_patch(ctx, &kind, Some(&cur), &patch)?;
        meta_mut(&mut new).remove("resourceVersion");
        let warnings = ctx.field_validation(&mut new)?;
        let write = Write {
            old: &cur,
            rev,
            mode,
            record: !matches!(kind, PatchKind::Apply),
            retry: precondition.is_none(),
        };
        if let Some(resp) = write.run(ctx, name, new, &warnings).await? {
            return Ok(resp);
        }
    }
    Err(ctx.conflict(name))
}

/// Server-side apply of a missing object creates it (201).
async fn apply_create(ctx: &Ctx, name: &str, patch: &Value) -> ApiResult<Response> {
    crate::crd::strategy::check_create(ctx)?;
    let mut applied = patch.clone();
    check_type_meta(ctx.info, &mut applied)?;
    let warnings = ctx.field_validation(&mut applied)?;
    meta_mut(&mut applied).insert("name".into(), json!(name));
    resolve_new_identity(ctx, &mut applied).await?;
    let mut obj = apply_patch(ctx, &PatchKind::Apply, None, &applied)?;
    check_type_meta(ctx.info, &mut obj)?;
    meta_mut(&mut obj).insert("name".into(), json!(name));
    if let Some(ns) = &ctx.ns {
        meta_mut(&mut obj).insert("namespace".into(), json!(ns));
    }
    prepare_create(ctx, &mut obj, false)?;
    let mut warnings = warnings;
    warnings.extend(
        plugins::admit(
            &plugins::Request {
                ctx,
                op: plugins::Operation::Create,
                name,
                subresource: "",
                old: None,
            },
            Some(&mut obj),
        )
        .await?,
    );
    let reserved = ctx.hooks().reserve_create(ctx, &mut obj).await?;
    if ctx.dry_run() {
        return Ok(with_warnings(object_response(ctx, 201, &obj), &warnings));
    }
    let stored = ctx.at_storage_version(&obj).await?;
    let created = ctx.st.store.create(&ctx.key(name), encode(&stored)).await;
    admission::finish(&ctx.st, reserved, created.is_ok()).await;
    let kv = created.map_err(|e| store_err(ctx.info, name, e))?;
    crate::keys::set_rv(&mut obj, kv.mod_revision);
    Ok(with_warnings(object_response(ctx, 201, &obj), &warnings))
}

pub(crate) async fn update_or_patch(
    ctx: &Ctx,
    method: &Method,
    name: &str,
    body: &[u8],
    mode: Mode,
) -> ApiResult<Response> {
    match *method {
        Method::PUT => update(ctx, name, body, mode).await,
        Method::PATCH => patch(ctx, name, body, mode).await,
        _ => get(ctx, name).await,
    }
}
