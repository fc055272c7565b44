//! The generic storage semantics every verb, subresource and in-process finalizer shares, like
//! upstream's generic registry store: preparing a new or updated object (system metadata, status
//! reset, defaults, validation, managedFields), committing an update (removing a finalized
//! object), deleting with preconditions and finalizers, and paged lists with continue tokens.
//! Kind-specific steps are [`Admission`](crate::admission::Admission) hooks looked up by kind.

use serde_json::{json, Value};
use skiff_api::selector::{FieldSelector, LabelSelector};
use skiff_api::ApiError;
use skiff_store::{ListOptions, StoreError};

use crate::admission::{Admission, DeleteDecision};
use crate::ctx::{Ctx, DeleteOpts, Mode, RETRIES};
use crate::keys::{decode, encode};
use crate::objects::{
    check_type_meta, finalizers, matches, meta, meta_mut, meta_str, strip_for_compare,
};
use crate::respond::{now, now_rfc3339, rfc3339, store_err, ApiResult};

impl Ctx {
    /// The admission hooks of this request's kind.
    pub(crate) fn hooks(&self) -> &dyn Admission {
        self.st.admission.for_kind(self.info)
    }
}

/// System metadata and status reset for a new object; then defaults, validation, managedFields.
pub(crate) fn prepare_create(ctx: &Ctx, obj: &mut Value, record: bool) -> ApiResult<()> {
    let info = ctx.info;
    let hooks = ctx.hooks();
    let now = now_rfc3339();
    {
        let m = meta_mut(obj);
        m.remove("resourceVersion");
        m.remove("deletionTimestamp");
        m.remove("deletionGracePeriodSeconds");
        m.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
        m.insert("creationTimestamp".into(), json!(now));
        if !info.namespaced {
            m.remove("namespace");
        }
    }
    // Create strategies reset status for kinds with a status subresource.
    if info.subresources.contains(&"status") && !hooks.keeps_status_on_create() {
        match (&ctx.custom, obj.as_object_mut()) {
            // Upstream's CR strategy drops status entirely.
            (Some(_), Some(m)) => {
                m.remove("status");
            }
            _ => obj["status"] = json!({}),
        }
    }
    hooks.init_create(obj);
    // Needs the uid assigned above (Job selector generation); DaemonSet template generation.
    skiff_api::defaults::prepare_create(info, obj);
    skiff_api::defaults::apply_defaults(info, obj);
    if let Some(kind) = &ctx.custom {
        crate::crd::strategy::defaults(kind, obj);
    }
    hooks.admit_create(obj);
    if obj.get("spec").is_some() || ctx.custom.is_some() {
        meta_mut(obj).insert("generation".into(), json!(1));
    }
    skiff_api::validate::validate(info, obj, None)?;
    if let Some(kind) = &ctx.custom {
        crate::crd::strategy::validate(kind, obj, None)?;
    }
    if record {
        skiff_api::apply::record_update_shaped(info, ctx.shape(), None, obj, &ctx.manager(), &now);
    }
    Ok(())
}

/// Builds the object to store for an update of `old` to `new`. None = nothing changed.
pub(crate) fn prepare_update(
    ctx: &Ctx,
    old: &Value,
    mut new: Value,
    mode: Mode,
    record: bool,
) -> ApiResult<Option<Value>> {
    let info = ctx.info;
    check_type_meta(info, &mut new)?;
    let name = meta_str(old, "name").unwrap_or("");
    match meta_str(&new, "name") {
        Some(n) if !n.is_empty() && n != name => {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )));
        }
        _ => {}
    }
    if info.namespaced {
        if let (Some(want), Some(got)) = (meta_str(old, "namespace"), meta_str(&new, "namespace")) {
            if !got.is_empty() && got != want {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
        }
    }
    let has_status_sub = info.subresources.contains(&"status");
    let mut new = match mode {
        Mode::Main => {
            if has_status_sub {
                match old.get("status") {
                    Some(s) => new["status"] = s.clone(),
                    None => {
                        if let Some(m) = new.as_object_mut() {
                            m.remove("status");
                        }
                    }
                }
            }
            new
        }
        Mode::Status | Mode::Approval => {
            // Status writes change status (and annotations, which controllers rely on) only.
            let mut merged = old.clone();
            match new.get("status") {
                Some(s) => merged["status"] = s.clone(),
                None => {
                    if let Some(m) = merged.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
            match meta(&new).get("annotations") {
                Some(a) => {
                    meta_mut(&mut merged).insert("annotations".into(), a.clone());
                }
                None => {
                    meta_mut(&mut merged).remove("annotations");
                }
            }
            if let Some(mf) = meta(&new).get("managedFields") {
                meta_mut(&mut merged).insert("managedFields".into(), mf.clone());
            }
            merged
        }
    };
    // System fields come from the stored object.
    {
        let old_meta = meta(old).clone();
        let m = meta_mut(&mut new);
        for f in [
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
        ] {
            match old_meta.get(f) {
                Some(v) => m.insert(f.into(), v.clone()),
                None => m.remove(f),
            };
        }
        m.remove("resourceVersion");
        if m.get("managedFields").is_none() {
            if let Some(mf) = old_meta.get("managedFields") {
                m.insert("managedFields".into(), mf.clone());
            }
        }
    }
    skiff_api::defaults::apply_defaults(info, &mut new);
    if let Some(kind) = &ctx.custom {
        crate::crd::strategy::defaults(kind, &mut new);
    }
    // Server-owned values derived from the stored object (DaemonSet template generation).
    skiff_api::defaults::prepare_update(info, old, &mut new);
    ctx.hooks().admit_update(old, &mut new, mode);
    if let Some(kind) = &ctx.custom {
        if let Some(g) = crate::crd::strategy::next_generation(kind, old, &new) {
            meta_mut(&mut new).insert("generation".into(), json!(g));
        }
    } else if new.get("spec") != old.get("spec") && new.get("spec").is_some() {
        let g = meta(old)
            .get("generation")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        meta_mut(&mut new).insert("generation".into(), json!(g + 1));
    }
    skiff_api::validate::validate(info, &new, Some(old))?;
    if let Some(kind) = &ctx.custom {
        crate::crd::strategy::validate(kind, &new, Some(old))?;
    }
    if strip_for_compare(&new) == strip_for_compare(old) {
        return Ok(None);
    }
    if record {
        skiff_api::apply::record_update_shaped(
            info,
            ctx.shape(),
            Some(old),
            &mut new,
            &ctx.manager(),
            &now_rfc3339(),
        );
    }
    Ok(Some(new))
}

/// Writes an update; an object whose deletion was pending and whose finalizers are now all gone
/// is removed (the generic registry does this on update).
pub(crate) async fn commit_update(
    ctx: &Ctx,
    name: &str,
    new: Value,
    expected: i64,
) -> Result<Value, StoreError> {
    let hooks = ctx.hooks();
    let key = ctx.key(name);
    // Only custom kinds and built-ins served at an extra version need a conversion (and its
    // copy).
    let value = if ctx.custom.is_none() && !skiff_api::kinds::is_alt_version(ctx.info) {
        encode(&new)
    } else {
        encode(
            &ctx.at_storage_version(&new)
                .await
                .map_err(|e| StoreError::Backend(e.message))?,
        )
    };
    let kv = ctx.st.store.update(&key, value, expected).await?;
    let mut stored = new;
    crate::keys::set_rv(&mut stored, kv.mod_revision);
    let pending = meta(&stored).get("deletionTimestamp").is_some();
    let grace = meta(&stored)
        .get("deletionGracePeriodSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if pending && finalizers(&stored).is_empty() && grace == 0 && hooks.remove_when_finalized() {
        match ctx.st.store.delete(&key, Some(kv.mod_revision)).await {
            Ok(_) => hooks.after_delete(ctx, &stored).await,
            Err(StoreError::NotFound(_)) | Err(StoreError::Conflict { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    if pending {
        hooks.after_pending(ctx, name);
    }
    Ok(stored)
}

/// What a delete did.
pub(crate) enum Deleted {
    /// Gone from the store: the last state.
    Gone(Value),
    /// Still present (finalizers, or a hook such as graceful pod deletion): the updated object.
    Pending(Value),
}

/// Deletes one object following upstream's rules: preconditions, then the kind's hook decides
/// (graceful pods, namespaces), else finalizers hold it.
pub(crate) async fn delete_object(ctx: &Ctx, name: &str, opts: &DeleteOpts) -> ApiResult<Deleted> {
    let hooks = ctx.hooks();
    for _ in 0..RETRIES {
        let (cur, rev) = ctx.get_current(name).await?;
        if let Some(uid) = &opts.uid {
            let have = meta_str(&cur, "uid").unwrap_or("");
            if uid != have {
                return Err(ApiError::conflict(
                    ctx.info.group,
                    ctx.info.plural,
                    name,
                    &format!("Precondition failed: UID in precondition: {uid}, UID in object meta: {have}"),
                ));
            }
        }
        if let Some(want) = &opts.rv {
            if *want != rev.to_string() {
                return Err(ApiError::conflict(
                    ctx.info.group,
                    ctx.info.plural,
                    name,
                    &format!("Precondition failed: ResourceVersion in precondition: {want}, ResourceVersion in object meta: {rev}"),
                ));
            }
        }
        crate::plugins::admit(
            &crate::plugins::Request {
                ctx,
                op: crate::plugins::Operation::Delete,
                name,
                subresource: "",
                old: Some(&cur),
            },
            None,
        )
        .await?;
        let already = meta(&cur).get("deletionTimestamp").is_some();
        let result = match hooks.on_delete(&cur, opts, now()) {
            DeleteDecision::AlreadyPending => return Ok(Deleted::Pending(cur)),
            DeleteDecision::Pending(next) => Some(next),
            DeleteDecision::Generic => match finalizer_hold(ctx, &cur, opts, already) {
                FinalizerHold::Unchanged => return Ok(Deleted::Pending(cur)),
                FinalizerHold::Hold(next) => Some(next),
                FinalizerHold::None => None,
            },
        };
        match result {
            Some(mut updated) => {
                if !already {
                    let g = meta(&cur).get("generation").and_then(Value::as_i64);
                    if let Some(g) = g {
                        meta_mut(&mut updated).insert("generation".into(), json!(g + 1));
                    }
                }
                meta_mut(&mut updated).remove("resourceVersion");
                if opts.dry_run {
                    return Ok(Deleted::Pending(updated));
                }
                let key = ctx.key(name);
                let value = encode(&ctx.at_storage_version(&updated).await?);
                match ctx.st.store.update(&key, value, rev).await {
                    Ok(kv) => {
                        crate::keys::set_rv(&mut updated, kv.mod_revision);
                        hooks.after_pending(ctx, name);
                        return Ok(Deleted::Pending(updated));
                    }
                    Err(StoreError::Conflict { .. }) => continue,
                    Err(e) => return Err(store_err(ctx.info, name, e)),
                }
            }
            None => {
                if opts.dry_run {
                    return Ok(Deleted::Gone(cur));
                }
                match ctx.st.store.delete(&ctx.key(name), Some(rev)).await {
                    Ok(kv) => {
                        hooks.after_delete(ctx, &cur).await;
                        let mut last = cur;
                        crate::keys::set_rv(&mut last, kv.mod_revision);
                        return Ok(Deleted::Gone(last));
                    }
                    Err(StoreError::Conflict { .. }) => continue,
                    Err(e) => return Err(store_err(ctx.info, name, e)),
                }
            }
        }
    }
    Err(ctx.conflict(name))
}

enum FinalizerHold {
    /// Already pending with the same finalizers.
    Unchanged,
    /// Finalizers hold the object: store this.
    Hold(Value),
    /// Nothing holds it: remove it.
    None,
}

/// The generic path: the object's finalizers plus the garbage collector's for the policy.
fn finalizer_hold(ctx: &Ctx, cur: &Value, opts: &DeleteOpts, already: bool) -> FinalizerHold {
    let mut fins = finalizers(cur);
    // The garbage collector clears these: it deletes (Foreground) or releases (Orphan)
    // the dependents first, then removes the finalizer.
    let gc_finalizer = match opts.propagation.as_deref() {
        Some("Foreground") => Some("foregroundDeletion"),
        Some("Orphan") => Some("orphan"),
        // No policy: a GC finalizer already there decides, else the resource default.
        None if ctx.info.orphans_by_default()
            && !fins
                .iter()
                .any(|f| f == "orphan" || f == "foregroundDeletion") =>
        {
            Some("orphan")
        }
        _ => None,
    };
    if let Some(f) = gc_finalizer {
        if !fins.iter().any(|x| x == f) {
            fins.push(f.into());
        }
    }
    if fins.is_empty() {
        return FinalizerHold::None;
    }
    if already && fins == finalizers(cur) {
        return FinalizerHold::Unchanged;
    }
    let mut next = cur.clone();
    let m = meta_mut(&mut next);
    m.insert("finalizers".into(), json!(fins));
    if !already {
        m.insert("deletionTimestamp".into(), json!(rfc3339(now())));
        m.insert("deletionGracePeriodSeconds".into(), json!(0));
    }
    FinalizerHold::Hold(next)
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    rv: i64,
    start: String,
}

fn encode_continue(rv: i64, start: &str) -> String {
    use base64::Engine;
    let raw = serde_json::to_vec(&ContinueToken {
        rv,
        start: start.to_string(),
    })
    .unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn decode_continue(token: &str) -> ApiResult<ContinueToken> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|raw| serde_json::from_slice::<ContinueToken>(&raw).ok())
        .ok_or_else(|| ApiError::bad_request("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)"))
}

/// Lists matching objects: (items, list revision, continue token).
pub(crate) async fn list_objects(
    ctx: &Ctx,
    prefix: &str,
    label: &LabelSelector,
    field: &FieldSelector,
    limit: i64,
) -> ApiResult<(Vec<Value>, i64, Option<String>)> {
    let mut opts = ListOptions::default();
    if let Some(token) = ctx.query.get("continue").filter(|t| !t.is_empty()) {
        let t = decode_continue(token)?;
        if !t.start.starts_with(prefix) {
            return Err(ApiError::bad_request(
                "continue key is not valid: it does not belong to this collection",
            ));
        }
        opts.revision = t.rv;
        opts.start_after = Some(t.start);
    } else if ctx.query.get("resourceVersionMatch") == Some("Exact") {
        opts.revision = ctx
            .query
            .get("resourceVersion")
            .and_then(|r| r.parse().ok())
            .ok_or_else(|| {
                ApiError::bad_request("resourceVersionMatch=Exact requires a resourceVersion")
            })?;
    }
    let mut items = Vec::new();
    loop {
        // Fetch pages of `limit` (or everything) and filter until the page is full.
        opts.limit = if limit > 0 { limit.max(50) } else { 0 };
        let res = ctx.st.store.list(prefix, &opts).await.map_err(|e| match e {
            StoreError::Compacted { .. } if ctx.query.get("continue").is_some() => ApiError::expired(
                "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
            ),
            e => store_err(ctx.info, "", e),
        })?;
        let rev = res.revision;
        opts.revision = res.revision;
        let n = res.items.len();
        // Custom objects are converted to the requested version a page at a time; built-in
        // ones are decoded one by one (only matches are kept).
        let mut converted = match ctx.custom {
            Some(_) => {
                let decoded = res
                    .items
                    .iter()
                    .map(decode)
                    .collect::<ApiResult<Vec<_>>>()?;
                Some(ctx.at_request_version_all(decoded).await?.into_iter())
            }
            None => None,
        };
        let alt = skiff_api::kinds::is_alt_version(ctx.info);
        for (i, kv) in res.items.iter().enumerate() {
            let obj = match converted.as_mut().and_then(Iterator::next) {
                Some(o) => o,
                None if alt => skiff_api::kinds::from_stored(ctx.info, decode(kv)?),
                None => decode(kv)?,
            };
            if matches(&obj, label, field) {
                items.push(obj);
                if limit > 0 && items.len() as i64 >= limit {
                    let more = i + 1 < n || res.more;
                    let token = more.then(|| encode_continue(rev, &kv.key));
                    return Ok((items, rev, token));
                }
            }
        }
        if !res.more || n == 0 {
            return Ok((items, rev, None));
        }
        opts.start_after = res.items.last().map(|kv| kv.key.clone());
    }
}
