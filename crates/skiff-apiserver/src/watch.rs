//! Watches: a chunked stream of JSON lines `{"type": …, "object": …}` fed by `Store::watch`.
//! Selectors apply to events (an object that stops matching is DELETED for this watcher),
//! `resourceVersion` unset/"0" starts with synthetic ADDED events, bookmarks when allowed,
//! `timeoutSeconds` (default random 30–60 min), compacted revisions end with a 410 ERROR event,
//! and Table-format events when the Accept header asks for Tables.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{header, HeaderValue};
use rand::Rng;
use serde_json::{json, Value};
use skiff_api::selector::{FieldSelector, LabelSelector};
use skiff_api::table::IncludeObject;
use skiff_api::{ApiError, ResourceInfo};
use skiff_store::{EventKind, StoreError};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;

use crate::ctx::Ctx;
use crate::keys::{collection_prefix, decode};
use crate::objects::{include_object, matches};
use crate::respond::*;
use crate::storage::list_objects;

struct Encoder {
    info: &'static ResourceInfo,
    table: bool,
    /// Objects reduced to PartialObjectMetadata.
    metadata_only: bool,
    include: IncludeObject,
    /// The custom kind watched (its printer columns).
    custom: Option<std::sync::Arc<crate::crd::ServedKind>>,
}

impl Encoder {
    fn line(&self, kind: &str, obj: Value) -> Bytes {
        let object = if self.table && matches!(kind, "ADDED" | "MODIFIED" | "DELETED") {
            let rv = obj
                .pointer("/metadata/resourceVersion")
                .cloned()
                .unwrap_or(Value::Null);
            match &self.custom {
                Some(kind) => crate::crd::strategy::table(
                    kind,
                    &[obj],
                    self.include,
                    json!({"resourceVersion": rv}),
                    now(),
                ),
                None => skiff_api::table::to_table(
                    self.info,
                    &[obj],
                    self.include,
                    json!({"resourceVersion": rv}),
                    now(),
                ),
            }
        } else if self.metadata_only && kind != "ERROR" {
            partial_metadata(&obj)
        } else {
            obj
        };
        let mut v =
            serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
        v.push(b'\n');
        Bytes::from(v)
    }

    fn bookmark(&self, rev: i64, initial_end: bool) -> Bytes {
        let mut md = json!({"resourceVersion": rev.to_string()});
        if initial_end {
            md["annotations"] =
                json!({skiff_semantics::wellknown::annotations::INITIAL_EVENTS_END: "true"});
        }
        let obj =
            json!({"kind": self.info.kind, "apiVersion": self.info.api_version(), "metadata": md});
        self.line("BOOKMARK", obj)
    }

    fn error(&self, err: &skiff_api::ApiError) -> Bytes {
        let status = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| err.to_status()))
            .unwrap_or_else(|_| {
                json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": err.message, "reason": err.reason, "code": err.code})
            });
        self.line("ERROR", status)
    }
}

pub(crate) async fn watch(ctx: Ctx) -> ApiResult<Response> {
    let (label, field) = ctx.selectors()?;
    let prefix = collection_prefix(ctx.info, ctx.ns.as_deref());
    let rv = ctx.query.get("resourceVersion").unwrap_or("");
    let send_initial = ctx.query.flag("sendInitialEvents");
    let bookmarks = ctx.query.flag("allowWatchBookmarks");
    let timeout = match ctx.query.get("timeoutSeconds") {
        Some(t) => Duration::from_secs(
            t.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid timeoutSeconds {t:?}")))?,
        ),
        None => Duration::from_secs(rand::thread_rng().gen_range(1800..3600)),
    };
    let enc = Encoder {
        info: ctx.info,
        table: wants_table(&ctx.headers),
        metadata_only: wants_partial_metadata(&ctx.headers),
        include: include_object(&ctx.query),
        custom: ctx.custom.clone(),
    };
    let (tx, rx) = mpsc::channel::<Bytes>(64);

    // Initial state: synthetic ADDED events for "most recent"/"any", or replay after a revision.
    let mut initial = Vec::new();
    let start_rev: i64;
    let mut early_error = None;
    if rv.is_empty() || rv == "0" || send_initial {
        let (items, rev, _) = list_objects(&ctx, &prefix, &label, &field, 0).await?;
        initial = items;
        start_rev = rev;
    } else {
        start_rev = rv
            .parse::<i64>()
            .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv:?}")))?;
    }
    let store_watch = match ctx.st.store.watch(&prefix, start_rev).await {
        Ok(w) => Some(w),
        Err(e @ StoreError::Compacted { .. }) => {
            early_error = Some(store_err(ctx.info, "", e));
            None
        }
        Err(StoreError::FutureRevision { .. }) => {
            // Too new: wait for it by watching from now on (upstream blocks briefly, then 504s).
            Some(
                ctx.st
                    .store
                    .watch(&prefix, 0)
                    .await
                    .map_err(|e| store_err(ctx.info, "", e))?,
            )
        }
        Err(e) => return Err(store_err(ctx.info, "", e)),
    };
    let mut shutdown = ctx.st.shutdown.clone();
    // A custom kind's watch ends when its CRD stops serving it (deleted, version unserved),
    // like upstream tearing down the CRD's storage.
    let mut crd_changes = ctx.custom.as_ref().map(|_| ctx.st.cache.subscribe());

    tokio::spawn(async move {
        if let Some(err) = early_error {
            let _ = tx.send(enc.error(&err)).await;
            return;
        }
        let Some(mut w) = store_watch else { return };
        for obj in initial {
            if tx.send(enc.line("ADDED", obj)).await.is_err() {
                return;
            }
        }
        let mut last_rev = start_rev;
        if send_initial && bookmarks {
            let _ = tx.send(enc.bookmark(last_rev, true)).await;
        }
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        tick.tick().await;
        loop {
            tokio::select! {
                _ = &mut deadline => break,
                _ = tx.closed() => break,
                _ = shutdown.changed() => break,
                _ = tick.tick(), if bookmarks => {
                    if tx.send(enc.bookmark(last_rev, false)).await.is_err() { break; }
                }
                r = async { crd_changes.as_mut()?.changed().await.ok() }, if crd_changes.is_some() => {
                    if r.is_none() || !still_served(&ctx) { break; }
                }
                ev = w.events.recv() => {
                    let ev = match ev {
                        None => break,
                        Some(Err(e)) => {
                            let _ = tx.send(enc.error(&store_err(enc.info, "", e))).await;
                            break;
                        }
                        Some(Ok(ev)) => ev,
                    };
                    last_rev = ev.kv.mod_revision;
                    if let Some((kind, obj)) = translate(&ev, &label, &field) {
                        // Custom objects are converted to the watched version.
                        let obj = match ctx.at_request_version(obj).await {
                            Ok(o) => o,
                            Err(e) => {
                                let _ = tx.send(enc.error(&e)).await;
                                break;
                            }
                        };
                        if tx.send(enc.line(kind, obj)).await.is_err() { break; }
                    }
                }
            }
        }
    });

    let stream = ReceiverStream::new(rx).map(Ok::<_, Infallible>);
    let mut resp = Response::new(Body::from_stream(stream));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, private"),
    );
    Ok(resp)
}

/// Whether the custom kind this watch serves is still served by the same CRD.
fn still_served(ctx: &Ctx) -> bool {
    let Some(kind) = &ctx.custom else {
        return true;
    };
    let uid = |crd: &Value| crd.pointer("/metadata/uid").cloned();
    ctx.st
        .crds
        .current(&ctx.st)
        .by_plural(kind.info.group, kind.info.version, kind.info.plural)
        .is_some_and(|now| uid(&now.crd) == uid(&kind.crd))
}

/// The event a watcher with these selectors sees, if any.
fn translate(
    ev: &skiff_store::Event,
    label: &LabelSelector,
    field: &FieldSelector,
) -> Option<(&'static str, Value)> {
    let obj = decode(&ev.kv).ok()?;
    match ev.kind {
        EventKind::Delete => matches(&obj, label, field).then_some(("DELETED", obj)),
        EventKind::Put => {
            let now_matches = matches(&obj, label, field);
            let before = ev
                .prev
                .as_ref()
                .and_then(|p| decode(p).ok())
                .map(|p| matches(&p, label, field));
            match (before, now_matches) {
                (None, true) | (Some(false), true) => Some(("ADDED", obj)),
                (Some(true), true) => Some(("MODIFIED", obj)),
                (Some(true), false) => Some(("DELETED", obj)),
                _ => None,
            }
        }
    }
}
