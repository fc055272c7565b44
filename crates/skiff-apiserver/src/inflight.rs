//! Upstream's max-in-flight filter (`--max-requests-inflight` 400,
//! `--max-mutating-requests-inflight` 200): a request that finds its pool full is answered at
//! once with 429, `Retry-After: 1` and upstream's plain-text body. As upstream, long-running
//! requests (watches; exec, attach, portforward, proxy and log) are not counted, and the
//! cluster-admin identity (upstream's `system:masters`) is never refused.

use std::sync::Arc;

use axum::body::Body;
use axum::response::Response;
use http::{header, HeaderValue, Method, StatusCode};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::auth::UserInfo;

/// Upstream's defaults.
pub const DEFAULT_MAX_REQUESTS_INFLIGHT: usize = 400;
pub const DEFAULT_MAX_MUTATING_REQUESTS_INFLIGHT: usize = 200;

pub(crate) struct Limits {
    readonly: Option<Arc<Semaphore>>,
    mutating: Option<Arc<Semaphore>>,
}

impl Limits {
    /// 0 = unlimited (as upstream).
    pub(crate) fn new(readonly: usize, mutating: usize) -> Self {
        let pool = |n: usize| (n > 0).then(|| Arc::new(Semaphore::new(n)));
        Limits {
            readonly: pool(readonly),
            mutating: pool(mutating),
        }
    }

    /// A permit for the request's pool; Err = the pool is full (answer [`too_many_requests`]).
    pub(crate) fn admit(
        &self,
        who: &UserInfo,
        method: &Method,
        long_running: bool,
    ) -> Result<Option<OwnedSemaphorePermit>, PoolFull> {
        // system:masters is exempt, as upstream's exempt priority level.
        if long_running || who.is_master() {
            return Ok(None);
        }
        let pool = if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
            &self.readonly
        } else {
            &self.mutating
        };
        let Some(pool) = pool else {
            return Ok(None);
        };
        pool.clone()
            .try_acquire_owned()
            .map(Some)
            .map_err(|_| PoolFull)
    }
}

/// The request's in-flight pool is full.
#[derive(Debug)]
pub(crate) struct PoolFull;

/// Upstream's `tooManyRequests`: `http.Error` text and `Retry-After: 1`.
pub(crate) fn too_many_requests() -> Response {
    let mut resp = Response::new(Body::from("Too many requests, please try again later.\n"));
    *resp.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(
        "X-Content-Type-Options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    resp
}

/// Upstream's long-running check: the watch and proxy verbs, and the attach, exec, proxy, log
/// and portforward subresources.
pub(crate) fn long_running(segs: &[&str], watch: bool) -> bool {
    if watch {
        return true;
    }
    // /api/v1/[watch/][namespaces/<ns>/]<plural>/<name>/<sub>[/...]: look at the resource part.
    let rest = match segs {
        ["api", _v, rest @ ..] => rest,
        ["apis", _g, _v, rest @ ..] => rest,
        _ => return false,
    };
    let rest = match rest {
        ["watch", ..] => return true,
        ["namespaces", _ns, plural, tail @ ..] if *plural != "status" && *plural != "finalize" => {
            tail
        }
        [_plural, tail @ ..] => tail,
        [] => return false,
    };
    matches!(
        rest.get(1),
        Some(&("exec" | "attach" | "portforward" | "proxy" | "log"))
    )
}
