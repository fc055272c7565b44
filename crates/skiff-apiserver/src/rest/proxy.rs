//! The `proxy` subresources: `nodes/<name>/proxy/<path>` to the node's agent (HTTPS, cluster
//! CA, node token; the agent serves the kubelet's `/pods`, `/healthz`, `/stats/summary`,
//! `/containerLogs`…), `pods/[scheme:]<name>[:port]/proxy/<path>` to the pod IP and
//! `services/[scheme:]<name>[:port]/proxy/<path>` to a ready endpoint of the service port.
//!
//! Every method passes through with its headers (hop-by-hop ones, `Authorization` and the
//! impersonation headers removed, as upstream's filters do) and a streamed body; the response
//! comes back with its status, headers (hop-by-hop removed) and streamed body; upgrades
//! (WebSocket) are spliced. Like upstream, `…/proxy` with no trailing path is answered with a
//! 301 to `…/proxy/`. Pod and service targets are dialed from the API server host: it reaches
//! pod IPs through its own node's bridge and the host-gw routes to the other nodes' pod CIDRs.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use http::{header, HeaderMap, HeaderName, Method};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use skiff_api::ApiError;

use super::subresources::node_agent;
use crate::ctx::Ctx;
use crate::respond::*;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a proxied request goes.
struct Target {
    ip: IpAddr,
    port: u16,
    /// The node agent (HTTPS verified against the cluster CA, or in memory when it runs in
    /// this process); None = plain HTTP to `ip:port`.
    agent: Option<crate::agent_client::Agent>,
    /// The node token for the agent.
    bearer: Option<String>,
}

pub(crate) async fn handle(
    ctx: &Ctx,
    method: &Method,
    name: &str,
    parts: &mut http::request::Parts,
    body: Body,
) -> ApiResult<Response> {
    if ctx.info.namespaced && ctx.ns.is_none() {
        return Err(not_found_path());
    }
    let path = parts.uri.path();
    let marker = format!("/{}/{name}/proxy", ctx.info.plural);
    let rest = path
        .find(&marker)
        .map(|i| &path[i + marker.len()..])
        .ok_or_else(not_found_path)?;
    if rest.is_empty() {
        // Upstream redirects an empty proxied path to the same path with a trailing slash.
        let location = match parts.uri.query() {
            Some(q) => format!("{path}/?{q}"),
            None => format!("{path}/"),
        };
        return Response::builder()
            .status(301)
            .header(header::LOCATION, location)
            .body(Body::empty())
            .map_err(|e| ApiError::internal(format!("building the redirect: {e}")));
    }
    let target = match ctx.info.plural {
        "nodes" if ctx.info.group.is_empty() => node_target(ctx, name).await?,
        "pods" if ctx.info.group.is_empty() => pod_target(ctx, name).await?,
        "services" if ctx.info.group.is_empty() => service_target(ctx, name).await?,
        _ => return Err(not_found_path()),
    };
    let path_and_query = match parts.uri.query() {
        Some(q) => format!("{rest}?{q}"),
        None => rest.to_string(),
    };
    forward(method, &path_and_query, parts, body, target).await
}

/// `[scheme:]name[:port]` as upstream's `SplitSchemeNamePort`.
fn split_name(id: &str) -> ApiResult<(&str, &str, &str)> {
    let parts: Vec<&str> = id.split(':').collect();
    let (scheme, name, port) = match parts.as_slice() {
        [n] => ("", *n, ""),
        [n, p] => ("", *n, *p),
        [s, n, p] => (*s, *n, *p),
        _ => return Err(ApiError::bad_request(format!("invalid request {id:?}"))),
    };
    if name.is_empty() || !matches!(scheme, "" | "http" | "https") {
        return Err(ApiError::bad_request(format!("invalid request {id:?}")));
    }
    if scheme == "https" {
        return Err(unavailable(format!(
            "proxying to {id:?}: the https scheme is not supported by skiff"
        )));
    }
    Ok((scheme, name, port))
}

async fn get_object(ctx: &Ctx, name: &str) -> ApiResult<Value> {
    Ok(ctx.get_current(name).await?.0)
}

async fn node_target(ctx: &Ctx, id: &str) -> ApiResult<Target> {
    let (_, name, port) = split_name(id)?;
    // The node must exist (404 otherwise, like any get).
    get_object(ctx, name).await?;
    let agent = node_agent(ctx, name).await?;
    if !port.is_empty() && port != agent.port.to_string() {
        // Another port of the node: plain HTTP to it, as upstream (its address checked).
        let port: u16 = port
            .parse()
            .map_err(|_| ApiError::bad_request(format!("invalid port {port:?}")))?;
        proxyable(agent.ip)?;
        return Ok(Target {
            ip: agent.ip,
            port,
            agent: None,
            bearer: None,
        });
    }
    Ok(Target {
        ip: agent.ip,
        port: agent.port,
        bearer: Some(ctx.st.tokens.node.clone()),
        agent: Some(agent),
    })
}

async fn pod_target(ctx: &Ctx, id: &str) -> ApiResult<Target> {
    let (_, name, port) = split_name(id)?;
    let pod = get_object(ctx, name).await?;
    // No port: the first declared container port, else 80 (upstream leaves the port out).
    let port = if port.is_empty() {
        pod.pointer("/spec/containers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find_map(|c| c.pointer("/ports/0/containerPort").and_then(Value::as_u64))
            .unwrap_or(80)
            .to_string()
    } else {
        port.to_string()
    };
    let port: u16 = port
        .parse()
        .map_err(|_| ApiError::bad_request(format!("invalid port {port:?}")))?;
    let ip = pod
        .pointer("/status/podIP")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            ApiError::bad_request(format!("address not allowed: pod {name} has no IP yet"))
        })?;
    let ip: IpAddr = ip
        .parse()
        .map_err(|_| ApiError::bad_request(format!("invalid pod IP {ip:?}")))?;
    proxyable(ip)?;
    Ok(Target {
        ip,
        port,
        agent: None,
        bearer: None,
    })
}

/// Upstream's `IsProxyableIP`: never loopback, link-local or unspecified addresses.
fn proxyable(ip: IpAddr) -> ApiResult<()> {
    let bad = ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || matches!(ip, IpAddr::V4(v4) if v4.is_link_local());
    if bad {
        return Err(ApiError::bad_request(format!("address not allowed: {ip}")));
    }
    Ok(())
}

async fn service_target(ctx: &Ctx, id: &str) -> ApiResult<Target> {
    let (_, name, port_id) = split_name(id)?;
    let svc = get_object(ctx, name).await?;
    let ports: Vec<&Value> = svc
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    // A port number names the service port with that number; otherwise it is the port name
    // ("" = the only, unnamed port).
    let port_name = match port_id.parse::<u64>() {
        Ok(n) => ports
            .iter()
            .find(|p| p.get("port").and_then(Value::as_u64) == Some(n))
            .map(|p| {
                p.get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string()
            })
            .ok_or_else(|| {
                unavailable(format!("no service port {n} found for service {name:?}"))
            })?,
        Err(_) => port_id.to_string(),
    };
    let no_endpoints = || unavailable(format!("no endpoints available for service {name:?}"));
    let info = skiff_api::resources::by_plural("", "v1", "endpoints").ok_or_else(no_endpoints)?;
    let key = crate::keys::object_key(info, ctx.ns.as_deref(), name);
    let ep = match ctx.st.store.get(&key).await {
        Ok(Some(kv)) => crate::keys::decode(&kv)?,
        Ok(None) => return Err(no_endpoints()),
        Err(e) => return Err(store_err(info, name, e)),
    };
    // Ready addresses of the subsets that carry the port.
    let mut candidates: Vec<(IpAddr, u16)> = Vec::new();
    for subset in ep
        .get("subsets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(port) = subset
            .get("ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|p| p.get("name").and_then(Value::as_str).unwrap_or("") == port_name)
            .and_then(|p| p.get("port").and_then(Value::as_u64))
            .and_then(|p| u16::try_from(p).ok())
        else {
            continue;
        };
        for a in subset
            .get("addresses")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(ip) = a
                .get("ip")
                .and_then(Value::as_str)
                .and_then(|s| s.parse().ok())
            {
                candidates.push((ip, port));
            }
        }
    }
    if candidates.is_empty() {
        return Err(no_endpoints());
    }
    // Upstream picks a random ready endpoint.
    let (ip, port) = candidates[rand::Rng::gen_range(&mut rand::thread_rng(), 0..candidates.len())];
    proxyable(ip)?;
    Ok(Target {
        ip,
        port,
        agent: None,
        bearer: None,
    })
}

/// Hop-by-hop headers (RFC 9110 §7.6.1) plus those the `Connection` header names.
pub(crate) fn hop_by_hop(headers: &HeaderMap) -> Vec<HeaderName> {
    let mut out: Vec<HeaderName> = [
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    ]
    .iter()
    .map(|h| HeaderName::from_static(h))
    .collect();
    for v in headers.get_all(header::CONNECTION) {
        for name in v.to_str().unwrap_or("").split(',') {
            if let Ok(h) = HeaderName::from_bytes(name.trim().as_bytes()) {
                out.push(h);
            }
        }
    }
    out
}

pub(crate) fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.get_all(header::CONNECTION).iter().any(|v| {
        v.to_str()
            .unwrap_or("")
            .split(',')
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
    }) && headers.contains_key(header::UPGRADE)
}

async fn forward(
    method: &Method,
    path_and_query: &str,
    parts: &mut http::request::Parts,
    body: Body,
    target: Target,
) -> ApiResult<Response> {
    let addr = SocketAddr::new(target.ip, target.port);
    let upgrade = is_upgrade(&parts.headers);
    let mut headers = parts.headers.clone();
    for h in hop_by_hop(&parts.headers) {
        headers.remove(h);
    }
    headers.remove(header::AUTHORIZATION);
    let impersonation: Vec<HeaderName> = headers
        .keys()
        .filter(|k| k.as_str().starts_with("impersonate-"))
        .cloned()
        .collect();
    for h in impersonation {
        headers.remove(h);
    }
    if upgrade {
        for h in [header::CONNECTION, header::UPGRADE] {
            if let Some(v) = parts.headers.get(&h) {
                headers.insert(h, v.clone());
            }
        }
    }
    let host = match target.ip {
        IpAddr::V6(v6) => format!("[{v6}]:{}", target.port),
        IpAddr::V4(v4) => format!("{v4}:{}", target.port),
    };
    if let Ok(v) = http::HeaderValue::from_str(&host) {
        headers.insert(header::HOST, v);
    }
    if let Some(b) = &target.bearer {
        if let Ok(v) = http::HeaderValue::from_str(&format!("Bearer {b}")) {
            headers.insert(header::AUTHORIZATION, v);
        }
    }
    let mut req = http::Request::builder()
        .method(method.clone())
        .uri(path_and_query)
        .body(body)
        .map_err(|e| ApiError::bad_request(format!("invalid proxied request: {e}")))?;
    *req.headers_mut() = headers;
    let dial_err = |e: String| unavailable(format!("error trying to reach service: {e}"));
    let resp = match &target.agent {
        Some(agent) => crate::agent_client::send(agent, req).await,
        None => send(addr, req).await,
    }
    .map_err(dial_err)?;

    relay_response(resp, parts, "proxied")
}

/// The target's response as ours: a 101 splices the client's upgraded connection to the
/// target's; otherwise status, body (streamed) and end-to-end headers pass through. `what` names
/// the stream in logs.
pub(crate) fn relay_response(
    resp: http::Response<hyper::body::Incoming>,
    parts: &mut http::request::Parts,
    what: &'static str,
) -> ApiResult<Response> {
    if resp.status() == http::StatusCode::SWITCHING_PROTOCOLS {
        let Some(client) = parts.extensions.remove::<hyper::upgrade::OnUpgrade>() else {
            return Err(ApiError::bad_request("this connection cannot be upgraded"));
        };
        let mut out = Response::builder().status(101);
        for (k, v) in resp.headers() {
            out = out.header(k, v);
        }
        let upstream = hyper::upgrade::on(resp);
        tokio::spawn(async move {
            let (Ok(up), Ok(down)) = (upstream.await, client.await) else {
                return;
            };
            let mut a = TokioIo::new(up);
            let mut c = TokioIo::new(down);
            if let Err(err) = tokio::io::copy_bidirectional(&mut c, &mut a).await {
                tracing::debug!(%err, stream = what, "upgraded stream ended with an error");
            }
        });
        return out
            .body(Body::empty())
            .map_err(|e| ApiError::internal(format!("building the upgrade response: {e}")));
    }
    let (rparts, rbody) = resp.into_parts();
    let mut out = Response::new(Body::new(rbody));
    *out.status_mut() = rparts.status;
    let mut rheaders = rparts.headers;
    for h in hop_by_hop(&rheaders.clone()) {
        rheaders.remove(h);
    }
    *out.headers_mut() = rheaders;
    Ok(out)
}

/// One plain HTTP request over a fresh connection (pods, services, other node ports).
async fn send(
    addr: SocketAddr,
    req: http::Request<Body>,
) -> Result<http::Response<hyper::body::Incoming>, String> {
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| format!("dial tcp {addr}: i/o timeout"))?
        .map_err(|e| format!("dial tcp {addr}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    crate::agent_client::request_over(TokioIo::new(tcp), req, &addr.to_string()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheme_name_port() {
        assert_eq!(split_name("web").ok(), Some(("", "web", "")));
        assert_eq!(split_name("web:80").ok(), Some(("", "web", "80")));
        assert_eq!(
            split_name("http:web:http").ok(),
            Some(("http", "web", "http"))
        );
        assert!(split_name("a:b:c:d").is_err());
        assert!(split_name(":80").is_err());
    }

    #[test]
    fn hop_by_hop_includes_connection_tokens() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            "keep-alive, X-Custom".parse().expect("value"),
        );
        let names = hop_by_hop(&h);
        assert!(names.iter().any(|n| n == "x-custom"));
        assert!(names.iter().any(|n| n == "transfer-encoding"));
    }

    #[test]
    fn loopback_is_not_proxyable() {
        assert!(proxyable("127.0.0.1".parse().expect("ip")).is_err());
        assert!(proxyable("169.254.169.254".parse().expect("ip")).is_err());
        assert!(proxyable("10.42.0.5".parse().expect("ip")).is_ok());
    }
}
