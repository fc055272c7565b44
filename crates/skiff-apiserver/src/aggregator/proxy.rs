//! Proxying a request under a claimed `/apis/<group>/<version>` to its extension API server,
//! after this server authenticated and authorized it (as upstream's handler chain does before
//! the aggregator's proxy handler). The user travels in front-proxy headers — `X-Remote-User`,
//! one `X-Remote-Group` per group, `X-Remote-Extra-<key>` per extra value — authenticated by
//! the front-proxy client certificate; the client's own `Authorization`, impersonation and any
//! `X-Remote-*` headers it sent are dropped. Bodies stream both ways; upgrades are spliced.

use std::sync::Arc;

use axum::body::Body;
use axum::response::Response;
use http::{header, HeaderName, HeaderValue};
use serde_json::Value;
use skiff_api::ApiError;

use super::transport;
use crate::auth::UserInfo;
use crate::respond::{unavailable, ApiResult};
use crate::rest::proxy::{hop_by_hop, is_upgrade};
use crate::AppState;

/// `url.PathEscape` as upstream applies it to extra keys.
fn path_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        let keep = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b':'
                    | b'@'
            );
        if keep {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The request headers for the extension server: the client's, minus hop-by-hop, credentials
/// and spoofable identity headers, plus the user's front-proxy headers.
fn headers_for(parts: &http::request::Parts, user: &UserInfo, host: &str) -> http::HeaderMap {
    let mut headers = parts.headers.clone();
    for h in hop_by_hop(&parts.headers) {
        headers.remove(h);
    }
    headers.remove(header::AUTHORIZATION);
    let dropped: Vec<HeaderName> = headers
        .keys()
        .filter(|k| {
            let k = k.as_str();
            k.starts_with("impersonate-") || k.starts_with("x-remote-")
        })
        .cloned()
        .collect();
    for h in dropped {
        headers.remove(h);
    }
    if is_upgrade(&parts.headers) {
        for h in [header::CONNECTION, header::UPGRADE] {
            if let Some(v) = parts.headers.get(&h) {
                headers.insert(h, v.clone());
            }
        }
    }
    if let Ok(v) = HeaderValue::from_str(host) {
        headers.insert(header::HOST, v);
    }
    if let Ok(v) = HeaderValue::from_str(&user.name) {
        headers.insert("x-remote-user", v);
    }
    for g in &user.groups {
        if let Ok(v) = HeaderValue::from_str(g) {
            headers.append("x-remote-group", v);
        }
    }
    for (k, vs) in &user.extra {
        let Ok(name) =
            HeaderName::from_bytes(format!("x-remote-extra-{}", path_escape(k)).as_bytes())
        else {
            continue;
        };
        for v in vs {
            if let Ok(v) = HeaderValue::from_str(v) {
                headers.append(name.clone(), v);
            }
        }
    }
    headers
}

fn is_available(obj: &Value) -> bool {
    obj.pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Available" && c["status"] == "True")
}

pub(crate) async fn proxy(
    st: &Arc<AppState>,
    user: &UserInfo,
    apiservice: &Value,
    parts: &mut http::request::Parts,
    body: Body,
) -> ApiResult<Response> {
    let mut fresh = None;
    if !is_available(apiservice) {
        // The cache may not hold the condition just written yet: look once more after it
        // caught up with the store (only on this failure path).
        st.cache.catch_up(st).await;
        let g = apiservice["spec"]["group"].as_str().unwrap_or("");
        let v = apiservice["spec"]["version"].as_str().unwrap_or("");
        fresh = super::claimed(st, g, v).filter(|o| is_available(o));
        if fresh.is_none() {
            return Err(unavailable("service unavailable"));
        }
    }
    let apiservice: &Value = fresh.as_deref().unwrap_or(apiservice);
    let target = transport::resolve(st, apiservice)
        .await
        .map_err(|nr| unavailable(nr.message))?;
    let front = st
        .aggregator
        .front_proxy()
        .ok_or_else(|| unavailable("no front-proxy client certificate"))?;
    let config = transport::client_config(apiservice, &front).map_err(unavailable)?;
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let mut req = http::Request::builder()
        .method(parts.method.clone())
        .uri(path_and_query)
        .body(body)
        .map_err(|e| ApiError::bad_request(format!("invalid proxied request: {e}")))?;
    *req.headers_mut() = headers_for(parts, user, &target.host);
    let resp = match transport::send(&target, config, req).await {
        Ok(r) => r,
        Err(e) => {
            // The server may be gone: re-check availability now rather than at the next tick.
            st.aggregator.kick();
            return Err(unavailable(format!("error trying to reach service: {e}")));
        }
    };
    crate::rest::proxy::relay_response(resp, parts, "aggregated")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_headers_replace_the_clients() {
        let req = http::Request::get("/apis/example.skiff.dev/v1/widgets")
            .header("authorization", "Bearer secret")
            .header("x-remote-user", "spoofed")
            .header("impersonate-user", "other")
            .header("accept", "application/json")
            .body(())
            .expect("request");
        let (parts, _) = req.into_parts();
        let mut user = UserInfo::new("alice", &["devs"]);
        user.extra
            .insert("scopes/a b".into(), vec!["x".into(), "y".into()]);
        let h = headers_for(&parts, &user, "api.ns.svc");
        assert!(h.get("authorization").is_none());
        assert!(h.get("impersonate-user").is_none());
        assert_eq!(h["x-remote-user"], "alice");
        let groups: Vec<_> = h.get_all("x-remote-group").iter().collect();
        assert_eq!(groups, ["devs", "system:authenticated"]);
        let extra: Vec<_> = h.get_all("x-remote-extra-scopes%2Fa%20b").iter().collect();
        assert_eq!(extra, ["x", "y"]);
        assert_eq!(h["host"], "api.ns.svc");
        assert_eq!(h["accept"], "application/json");
    }
}
