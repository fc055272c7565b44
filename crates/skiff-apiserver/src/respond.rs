//! Response helpers: JSON bodies, Status errors, Accept negotiation, store-error mapping, time.

use axum::body::Body;
use axum::response::Response;
use http::{header, HeaderValue, StatusCode};
use serde_json::{json, Value};
use skiff_api::{ApiError, ResourceInfo};
use skiff_store::StoreError;

pub(crate) type ApiResult<T> = Result<T, ApiError>;

pub(crate) fn json_response(code: u16, body: &Value) -> Response {
    json_bytes(
        code,
        serde_json::to_vec(body).unwrap_or_default(),
        "application/json",
    )
}

pub(crate) fn json_bytes(code: u16, body: Vec<u8>, content_type: &'static str) -> Response {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// A Status response for an error.
pub(crate) fn error_response(err: &ApiError) -> Response {
    json_bytes(err.code, err.to_status_bytes(), "application/json")
}

// Errors skiff-api has no constructor for (they only arise in the server).
pub(crate) fn unavailable(message: impl Into<String>) -> ApiError {
    ApiError::new(503, "ServiceUnavailable", message)
}
pub(crate) fn timeout(message: impl Into<String>) -> ApiError {
    ApiError::new(504, "Timeout", message)
}
pub(crate) fn not_found_path() -> ApiError {
    let mut e = ApiError::new(
        404,
        "NotFound",
        "the server could not find the requested resource",
    );
    e.details = Some(json!({}));
    e
}

/// Maps a store error for one object to the Status upstream returns.
pub(crate) fn store_err(info: &ResourceInfo, name: &str, err: StoreError) -> ApiError {
    match err {
        StoreError::NotFound(_) => ApiError::not_found(info.group, info.plural, name),
        StoreError::AlreadyExists(_) => ApiError::already_exists(info.group, info.plural, name),
        StoreError::Conflict { .. } => ApiError::conflict(
            info.group,
            info.plural,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        ),
        StoreError::Compacted { requested, compacted } => {
            ApiError::expired(format!("too old resource version: {requested} ({compacted})"))
        }
        StoreError::FutureRevision { requested, current } => timeout(format!(
            "Too large resource version: {requested}, current resource version: {current}"
        )),
        StoreError::TooLarge { .. } => request_too_large(),
        StoreError::Full(_) => disk_full(),
        // etcd's NOSPACE alarm text, as upstream passes it on; 507 says what to do.
        StoreError::SpaceExceeded(msg) => ApiError::new(
            507,
            "InsufficientStorage",
            format!(
                "etcdserver: mvcc: database space exceeded ({msg}); only deletes are accepted \
                 until the datastore is compacted or its quota raised (see `skiff datastore status`)"
            ),
        ),
        StoreError::Unavailable(msg) => ApiError::new(
            503,
            "ServiceUnavailable",
            format!("the datastore is unavailable ({msg}); retry when it is back"),
        ),
        StoreError::Unsupported(msg) => ApiError::internal(format!("storage error: {msg}")),
        StoreError::Backend(msg) => ApiError::internal(format!("storage error: {msg}")),
    }
}

/// An object over the store's size limit. Upstream passes etcd's error through (as a 500,
/// kubernetes#112152); we keep its message but answer 413: the request cannot succeed as sent.
pub(crate) fn request_too_large() -> ApiError {
    ApiError::new(
        413,
        "RequestEntityTooLarge",
        "etcdserver: request is too large",
    )
}

/// The disk under the database is full: deletes still work, other writes fail until there is
/// room again.
pub(crate) fn disk_full() -> ApiError {
    ApiError::new(
        507,
        "InsufficientStorage",
        "database or disk is full: the disk holding the server's data dir has no space left; \
         only deletes are accepted until space is freed (delete objects or free disk space), \
         then writes resume without a restart",
    )
}

/// Media types from an Accept header, each with its parameters.
pub(crate) fn accepts(
    headers: &http::HeaderMap,
    pred: impl Fn(&str, &[(&str, &str)]) -> bool,
) -> bool {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    accept.split(',').any(|item| {
        let mut parts = item.split(';').map(str::trim);
        let mt = parts.next().unwrap_or("");
        let params: Vec<(&str, &str)> = parts.filter_map(|p| p.split_once('=')).collect();
        pred(mt, &params)
    })
}

pub(crate) fn wants_table(headers: &http::HeaderMap) -> bool {
    accepts(headers, |mt, params| {
        mt == "application/json"
            && params.iter().any(|(k, v)| *k == "as" && *v == "Table")
            && params.iter().all(|(k, v)| *k != "g" || *v == "meta.k8s.io")
    })
}

/// `as=PartialObjectMetadata` or `as=PartialObjectMetadataList` (meta.k8s.io/v1): clients that
/// only need metadata (garbage collectors, controller-runtime's metadata-only watches).
pub(crate) fn wants_partial_metadata(headers: &http::HeaderMap) -> bool {
    accepts(headers, |mt, params| {
        mt == "application/json"
            && params.iter().any(|(k, v)| {
                *k == "as" && (*v == "PartialObjectMetadata" || *v == "PartialObjectMetadataList")
            })
            && params.iter().all(|(k, v)| *k != "g" || *v == "meta.k8s.io")
            && params.iter().all(|(k, v)| *k != "v" || *v == "v1")
    })
}

/// An object reduced to its metadata.
pub(crate) fn partial_metadata(obj: &Value) -> Value {
    let meta = obj.get("metadata").cloned().unwrap_or_else(|| json!({}));
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": meta})
}

pub(crate) fn now() -> jiff::Timestamp {
    jiff::Timestamp::now()
}

/// RFC 3339 with seconds precision, as upstream serializes metav1.Time.
pub(crate) fn now_rfc3339() -> String {
    rfc3339(now())
}

pub(crate) fn rfc3339(ts: jiff::Timestamp) -> String {
    jiff::Timestamp::from_second(ts.as_second())
        .map(|t| t.to_string())
        .unwrap_or_default()
}

pub(crate) fn with_warnings(mut resp: Response, warnings: &[String]) -> Response {
    for w in warnings {
        let text = format!("299 - \"{}\"", w.replace('"', "\\\""));
        if let Ok(v) = HeaderValue::from_str(&text) {
            resp.headers_mut().append("Warning", v);
        }
    }
    resp
}
