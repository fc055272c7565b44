//! Request dispatch: health and version, authentication, the max-in-flight gate, discovery and
//! OpenAPI, then a resource path to its verb — `read` (get, list), `create`, `update` (update,
//! patch, apply), `delete` (delete, deletecollection), `crate::watch` and
//! `subresources`. The verbs are generic: what differs by kind is an admission hook
//! (`crate::hooks`) that the shared storage steps (`crate::storage`) call.

pub(crate) mod componentstatus;
mod create;
mod delete;
mod ephemeral;
mod eviction;
mod metrics;
pub(crate) mod proxy;
mod read;
mod subresources;
mod update;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use bytes::Bytes;
use futures::FutureExt;
use http::{header, HeaderMap, Method};
use http_body_util::BodyExt;
use skiff_api::ApiError;

use crate::ctx::{Ctx, Mode};
use crate::query::Query;
use crate::respond::*;
use crate::{discovery, watch, AppState};

/// Request bodies above this are rejected with 413 (upstream's limit is 3 MiB too).
pub(crate) const BODY_LIMIT: usize = 3 * 1024 * 1024;

/// The axum fallback handler: every request comes through here. Panics (bugs) become 500s.
pub(crate) async fn handle(State(st): State<Arc<AppState>>, req: Request) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let started = std::time::Instant::now();
    let measured = crate::metrics::begin(&method, &path, req.uri().query(), req.headers());
    let resp = match std::panic::AssertUnwindSafe(dispatch(st, req))
        .catch_unwind()
        .await
    {
        Ok(resp) => resp,
        Err(_) => error_response(&ApiError::internal(
            "internal error while handling the request",
        )),
    };
    tracing::debug!(%method, %path, status = resp.status().as_u16(), elapsed_ms = started.elapsed().as_millis() as u64, "request");
    crate::metrics::finish(measured, resp)
}

async fn dispatch(st: Arc<AppState>, req: Request) -> Response {
    match dispatch_inner(st, req).await {
        Ok(resp) => resp,
        Err(err) => error_response(&err),
    }
}

async fn read_body(body: Body, headers: &HeaderMap) -> ApiResult<Bytes> {
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
    {
        if len > BODY_LIMIT {
            return Err(ApiError::too_large(BODY_LIMIT));
        }
    }
    match http_body_util::Limited::new(body, BODY_LIMIT)
        .collect()
        .await
    {
        Ok(c) => Ok(c.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(ApiError::too_large(BODY_LIMIT))
        }
        Err(e) => Err(ApiError::bad_request(format!(
            "reading the request body: {e}"
        ))),
    }
}

async fn dispatch_inner(st: Arc<AppState>, req: Request) -> ApiResult<Response> {
    let (mut parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let query = Query::parse(parts.uri.query());
    match path.as_str() {
        "/healthz" | "/livez" | "/readyz" | "/healthz/" | "/livez/" | "/readyz/" => {
            return Ok(json_bytes(200, b"ok".to_vec(), "text/plain; charset=utf-8"));
        }
        "/version" | "/version/" => return Ok(discovery::version()),
        _ => {}
    }
    // The CRD controllers run wherever requests are served (also the in-process router).
    st.crds.ensure_started(&st);
    let real = Arc::new(crate::auth::authenticate(&st, &parts).await?);
    let user = crate::auth::impersonate::resolve(&st, real, &parts.headers).await?;
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    // Held until the response is built (streams are long-running and not counted).
    let long_running = crate::inflight::long_running(&segs, query.flag("watch"));
    let _permit = match st.inflight.admit(&user, &parts.method, long_running) {
        Ok(p) => p,
        Err(crate::inflight::PoolFull) => return Ok(crate::inflight::too_many_requests()),
    };
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1")
        .to_string();
    let resource_request = matches!(segs.as_slice(), ["api", _, _, ..] | ["apis", _, _, _, ..]);
    if !resource_request {
        let attrs = crate::authz::path_attributes(user.clone(), &parts.method, &path);
        crate::authz::check(&st, &attrs).await?;
    }
    let (group, version, rest): (&str, &str, &[&str]) = match segs.as_slice() {
        [".well-known", "openid-configuration"] => {
            return Ok(crate::serviceaccount::oidc::discovery(&st.service_accounts))
        }
        ["openapi", "v2"] => {
            let custom = st.crds.ready(&st).await;
            return Ok(discovery::openapi_v2(
                &st,
                &parts.headers,
                custom.openapi_generation(),
                || custom.openapi_kinds().to_vec(),
            ));
        }
        ["openid", "v1", "jwks"] => {
            return Ok(crate::serviceaccount::oidc::jwks(&st.service_accounts))
        }
        ["api"] => return Ok(discovery::api(&parts.headers, &host)),
        ["apis"] => {
            let custom = st.crds.ready(&st).await;
            let base = discovery::apis(&parts.headers, &custom.infos());
            return Ok(crate::aggregator::merge_apis(&st, base).await);
        }
        ["apis", g] => {
            let custom = st.crds.ready(&st).await;
            return Ok(crate::aggregator::group(&st, g)
                .unwrap_or_else(|| discovery::group(g, &custom.infos())));
        }
        ["metrics"] if parts.method == Method::GET => {
            return Ok(crate::metrics::serve(&st.store, &parts.headers).await)
        }
        ["openapi", "v3", rest @ ..] => {
            let custom = st.crds.ready(&st).await;
            return Ok(discovery::openapi(&st, rest, &query, &custom));
        }
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Err(not_found_path()),
    };
    if rest.is_empty() {
        // A group/version an extension API server claims is answered by it (also over a
        // version skiff serves itself, as upstream).
        if let Some(svc) = crate::aggregator::claimed(&st, group, version) {
            return crate::aggregator::proxy(&st, &user, &svc, &mut parts, body).await;
        }
        let custom = st.crds.ready(&st).await;
        return discovery::resource_list(group, version, &custom.infos())
            .ok_or_else(not_found_path);
    }
    // Legacy `/watch/` path prefix.
    let (rest, legacy_watch) = match rest {
        ["watch", tail @ ..] => (tail, true),
        _ => (rest, false),
    };
    let (ns, plural, tail): (Option<&str>, &str, &[&str]) = match rest {
        ["namespaces", ns, plural, tail @ ..] if *plural != "status" && *plural != "finalize" => {
            (Some(*ns), *plural, tail)
        }
        [plural, tail @ ..] => (None, *plural, tail),
        [] => return Err(not_found_path()),
    };
    let attrs = crate::authz::resource_attributes(
        user.clone(),
        &parts.method,
        &crate::authz::ResourcePath {
            group,
            version,
            resource: plural,
            namespace: ns,
            name: tail.first().copied(),
            subresource: tail.get(1).copied(),
            watch: legacy_watch || query.flag("watch"),
            field_selector: query.get("fieldSelector"),
        },
    );
    crate::authz::check(&st, &attrs).await?;
    if let Some(svc) = crate::aggregator::claimed(&st, group, version) {
        return crate::aggregator::proxy(&st, &user, &svc, &mut parts, body).await;
    }
    // Built-in kinds first, then the served custom kinds.
    let (info, custom) = match skiff_api::resources::by_plural(group, version, plural) {
        Some(info) => (info, None),
        None => match st.crds.lookup(&st, group, version, plural).await {
            Some(kind) => (kind.info, Some(kind)),
            None => return Err(not_found_path()),
        },
    };
    if ns.is_some() && !info.namespaced {
        return Err(not_found_path());
    }
    let mut query = query;
    if legacy_watch {
        query = Query::parse(Some(&format!(
            "{}&watch=true",
            parts.uri.query().unwrap_or("")
        )));
    }
    let method = parts.method.clone();
    let needs_body = matches!(
        method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    );
    // Streaming and proxy subresources pass their body through unread; others are read here.
    let streaming = tail
        .get(1)
        .is_some_and(|s| matches!(*s, "exec" | "attach" | "portforward" | "proxy"));
    let (body, raw_body) = if needs_body && !streaming {
        (read_body(body, &parts.headers).await?, Body::empty())
    } else {
        (Bytes::new(), body)
    };
    let ctx = Ctx {
        st,
        info,
        ns: ns.map(str::to_string),
        query,
        headers: parts.headers.clone(),
        user,
        custom,
    };
    if info.group.is_empty() && info.kind == "ComponentStatus" {
        return componentstatus::handle(&ctx, &method, tail).await;
    }
    if info.group == "metrics.k8s.io" {
        // Computed from the node agents, never stored.
        return metrics::handle(&ctx, &method, tail).await;
    }
    match tail {
        [] => match method {
            Method::GET if ctx.query.flag("watch") => watch::watch(ctx).await,
            Method::GET => read::list(&ctx).await,
            Method::POST => {
                if info.namespaced && ctx.ns.is_none() {
                    return Err(ApiError::method_not_allowed(
                        "create requires a namespace in the URL for namespaced resources",
                    ));
                }
                create::create(&ctx, &body).await
            }
            Method::DELETE => {
                // Upstream routes deletecollection only where discovery lists it, and for
                // namespaced kinds only under a namespace: `DELETE /api/v1/namespaces` or
                // `/api/v1/pods` is a 405, never a cluster-wide wipe.
                if !info.verbs.contains(&"deletecollection")
                    || (info.namespaced && ctx.ns.is_none())
                {
                    let mut e = ApiError::method_not_allowed(
                        "the server does not allow this method on the requested resource",
                    );
                    e.details = Some(serde_json::json!({}));
                    return Err(e);
                }
                delete::delete_collection(&ctx, &body).await
            }
            _ => Err(ApiError::method_not_allowed(format!(
                "method {method} is not supported on a collection"
            ))),
        },
        [name] => {
            if info.namespaced && ctx.ns.is_none() {
                return Err(not_found_path());
            }
            match method {
                Method::GET => read::get(&ctx, name).await,
                Method::PUT => update::update(&ctx, name, &body, Mode::Main).await,
                Method::PATCH => update::patch(&ctx, name, &body, Mode::Main).await,
                Method::DELETE => delete::delete(&ctx, name, &body).await,
                _ => Err(ApiError::method_not_allowed(format!(
                    "method {method} is not supported on an object"
                ))),
            }
        }
        // `proxy` and `proxy/<path>`: the rest of the path goes to the target.
        [name, "proxy", ..] if info.subresources.contains(&"proxy") => {
            proxy::handle(&ctx, &method, name, &mut parts, raw_body).await
        }
        [name, sub] => {
            if info.namespaced && ctx.ns.is_none() {
                return Err(not_found_path());
            }
            if !info.subresources.contains(sub) {
                return Err(not_found_path());
            }
            if matches!(*sub, "log" | "exec" | "attach" | "portforward") {
                // Streaming subresources go to the node agent with the client's upgrade.
                let upstream = subresources::Upstream {
                    uri: parts.uri.clone(),
                    upgrade: parts.extensions.remove::<hyper::upgrade::OnUpgrade>(),
                };
                return subresources::node_proxy(&ctx, &method, name, sub, upstream).await;
            }
            subresources::handle(&ctx, &method, name, sub, &body).await
        }
        _ => Err(not_found_path()),
    }
}
