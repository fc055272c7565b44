//! `/version`, legacy discovery (`/api`, `/api/v1`, `/apis`, `/apis/<g>`, `/apis/<g>/<v>`),
//! aggregated discovery v2 (`as=APIGroupDiscoveryList`) and OpenAPI (v3, and v2 as JSON or
//! gnostic protobuf), all generated from
//! `skiff_api::resources::all()` and `skiff_api::openapi`.

use axum::response::Response;
use http::{header, HeaderMap, HeaderValue};
use serde_json::{json, Value};
use skiff_api::ResourceInfo;

use crate::query::Query;
use crate::respond::{accepts, json_bytes, json_response, not_found_path};

pub(crate) fn version() -> Response {
    json_response(
        200,
        &json!({
            "major": "1",
            "minor": "33",
            "gitVersion": "v1.33.0-skiff",
            "gitCommit": "0000000000000000000000000000000000000000",
            "gitTreeState": "clean",
            "buildDate": "2025-01-01T00:00:00Z",
            "goVersion": "rust",
            "compiler": "rustc",
            "platform": format!("linux/{}", if cfg!(target_arch = "aarch64") { "arm64" } else { "amd64" }),
        }),
    )
}

/// The built-in resources, then the custom ones (already in discovery order: group, version
/// priority, plural).
fn all<'a>(
    custom: &'a [&'static ResourceInfo],
) -> impl Iterator<Item = &'static ResourceInfo> + 'a {
    skiff_api::resources::all()
        .iter()
        .chain(custom.iter().copied())
}

/// Groups in preference order, each with its versions in preference order: built-in groups
/// first, then custom groups (upstream gives CRD groups a lower priority than built-ins).
fn groups(core: bool, custom: &[&'static ResourceInfo]) -> Vec<(&'static str, Vec<&'static str>)> {
    let mut out: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
    for r in all(custom) {
        if r.group.is_empty() != core {
            continue;
        }
        match out.iter_mut().find(|(g, _)| *g == r.group) {
            Some((_, vs)) if !vs.contains(&r.version) => vs.push(r.version),
            Some(_) => {}
            None => out.push((r.group, vec![r.version])),
        }
    }
    out
}

fn resources_of<'a>(
    group: &'a str,
    version: &'a str,
    custom: &'a [&'static ResourceInfo],
) -> impl Iterator<Item = &'static ResourceInfo> + 'a {
    all(custom).filter(move |r| r.group == group && r.version == version)
}

/// (group, version, kind, verbs) of a subresource.
fn subresource_kind(
    info: &ResourceInfo,
    sub: &str,
) -> (&'static str, &'static str, String, Vec<&'static str>) {
    let own = (info.group, info.version, info.kind.to_string());
    let (g, v, k) = match sub {
        "scale" => ("autoscaling", "v1", "Scale".to_string()),
        "binding" => ("", "v1", "Binding".to_string()),
        "eviction" => ("policy", "v1", "Eviction".to_string()),
        "exec" => ("", "v1", "PodExecOptions".to_string()),
        "attach" => ("", "v1", "PodAttachOptions".to_string()),
        "portforward" => ("", "v1", "PodPortForwardOptions".to_string()),
        "proxy" => ("", "v1", format!("{}ProxyOptions", info.kind)),
        "token" => ("authentication.k8s.io", "v1", "TokenRequest".to_string()),
        _ => own,
    };
    let verbs = match sub {
        "binding" | "eviction" | "token" => vec!["create"],
        "log" => vec!["get"],
        "exec" | "attach" | "portforward" => vec!["create", "get"],
        "proxy" => vec!["create", "delete", "get", "patch", "update"],
        "finalize" => vec!["update"],
        _ => vec!["get", "patch", "update"],
    };
    (g, v, k, verbs)
}

fn aggregated_group(group: &str, versions: &[&str], custom: &[&'static ResourceInfo]) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|v| {
            let resources: Vec<Value> = resources_of(group, v, custom)
                .map(|r| {
                    let subs: Vec<Value> = r
                        .subresources
                        .iter()
                        .map(|s| {
                            let (g, v, k, verbs) = subresource_kind(r, s);
                            json!({"subresource": s, "responseKind": {"group": g, "version": v, "kind": k}, "verbs": verbs})
                        })
                        .collect();
                    let mut e = json!({
                        "resource": r.plural,
                        "singularResource": r.singular,
                        "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
                        "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
                        "verbs": r.verbs,
                    });
                    if !r.short_names.is_empty() {
                        e["shortNames"] = json!(r.short_names);
                    }
                    if !r.categories.is_empty() {
                        e["categories"] = json!(r.categories);
                    }
                    if !subs.is_empty() {
                        e["subresources"] = Value::Array(subs);
                    }
                    e
                })
                .collect();
            json!({"version": v, "resources": resources, "freshness": "Current"})
        })
        .collect();
    json!({"metadata": {"name": group, "creationTimestamp": null}, "versions": versions})
}

/// Which aggregated discovery version the client accepts, if any.
fn aggregated_version(headers: &HeaderMap) -> Option<&'static str> {
    let wants = |ver: &'static str| {
        accepts(headers, move |mt, params| {
            mt == "application/json"
                && params.contains(&("g", "apidiscovery.k8s.io"))
                && params.contains(&("v", ver))
                && params.contains(&("as", "APIGroupDiscoveryList"))
        })
    };
    if wants("v2") {
        Some("v2")
    } else if wants("v2beta1") {
        Some("v2beta1")
    } else {
        None
    }
}

fn aggregated(core: bool, ver: &'static str, custom: &[&'static ResourceInfo]) -> Response {
    let items: Vec<Value> = groups(core, custom)
        .iter()
        .map(|(g, vs)| aggregated_group(g, vs, custom))
        .collect();
    let body = json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format!("apidiscovery.k8s.io/{ver}"),
        "metadata": {},
        "items": items,
    });
    let ct = if ver == "v2" {
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    } else {
        "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
    };
    let mut resp = json_bytes(200, serde_json::to_vec(&body).unwrap_or_default(), ct);
    resp.headers_mut()
        .insert(header::VARY, HeaderValue::from_static("Accept"));
    resp
}

/// `GET /api`.
pub(crate) fn api(headers: &HeaderMap, host: &str) -> Response {
    if let Some(v) = aggregated_version(headers) {
        return aggregated(true, v, &[]);
    }
    json_response(
        200,
        &json!({"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": host}]}),
    )
}

fn api_group(group: &str, versions: &[&str]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    let preferred = vs.first().cloned().unwrap_or(Value::Null);
    json!({"name": group, "versions": vs, "preferredVersion": preferred})
}

/// `GET /apis` (`custom`: the served custom kinds).
pub(crate) fn apis(headers: &HeaderMap, custom: &[&'static ResourceInfo]) -> Response {
    if let Some(v) = aggregated_version(headers) {
        return aggregated(false, v, custom);
    }
    let gs: Vec<Value> = groups(false, custom)
        .iter()
        .map(|(g, vs)| api_group(g, vs))
        .collect();
    json_response(
        200,
        &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": gs}),
    )
}

/// `GET /apis/<group>`.
pub(crate) fn group(group: &str, custom: &[&'static ResourceInfo]) -> Response {
    match groups(false, custom).into_iter().find(|(g, _)| *g == group) {
        Some((g, vs)) => {
            let mut body = api_group(g, &vs);
            body["kind"] = json!("APIGroup");
            body["apiVersion"] = json!("v1");
            json_response(200, &body)
        }
        None => crate::respond::error_response(&not_found_path()),
    }
}

/// `GET /api/v1` or `/apis/<group>/<version>`: an APIResourceList; None if not served.
pub(crate) fn resource_list(
    group: &str,
    version: &str,
    custom: &[&'static ResourceInfo],
) -> Option<Response> {
    let mut resources = Vec::new();
    for r in resources_of(group, version, custom) {
        let mut e = json!({
            "name": r.plural, "singularName": r.singular, "namespaced": r.namespaced,
            "kind": r.kind, "verbs": r.verbs,
        });
        if !r.short_names.is_empty() {
            e["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            e["categories"] = json!(r.categories);
        }
        resources.push(e);
        for s in r.subresources {
            let (g, v, k, verbs) = subresource_kind(r, s);
            let mut e = json!({"name": format!("{}/{s}", r.plural), "singularName": "",
                "namespaced": r.namespaced, "kind": k, "verbs": verbs});
            if g != r.group || v != r.version {
                e["group"] = json!(g);
                e["version"] = json!(v);
            }
            resources.push(e);
        }
    }
    if resources.is_empty() {
        return None;
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(json_response(
        200,
        &json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    ))
}

/// `GET /openapi/v3[/<path>]` with the served custom kinds (documents rebuilt once per change
/// of the custom kinds, see `skiff_api::openapi::Cache`).
pub(crate) fn openapi(
    st: &crate::AppState,
    rest: &[&str],
    query: &Query,
    custom: &crate::crd::Index,
) -> Response {
    let docs = st.openapi.get(custom.openapi_generation(), || {
        custom.openapi_kinds().to_vec()
    });
    if rest.is_empty() {
        return json_response(200, docs.v3_index());
    }
    let path = rest.join("/");
    match docs.v3_document(&path) {
        Some(doc) => {
            let mut resp = json_response(200, &doc);
            if let Some(hash) = query.get("hash") {
                let h = resp.headers_mut();
                h.insert(
                    header::CACHE_CONTROL,
                    HeaderValue::from_static("public, immutable"),
                );
                if let Ok(v) = HeaderValue::from_str(&format!("\"{hash}\"")) {
                    h.insert(header::ETAG, v);
                }
            }
            resp
        }
        None => crate::respond::error_response(&not_found_path()),
    }
}

/// Upstream's content type for the gnostic protobuf form of `/openapi/v2`.
const V2_PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// `GET /openapi/v2`: JSON or gnostic protobuf as the Accept header asks (kubectl asks only
/// for `application/com.github.proto-openapi.spec.v2@v1.0+protobuf`), 406 for anything else,
/// with an ETag per representation and 304 for a matching `If-None-Match`. `generation`
/// changes whenever the served custom kinds do; `custom` is called only then (the documents
/// are rebuilt once per generation, see `skiff_api::openapi::Cache`).
pub(crate) fn openapi_v2(
    st: &crate::AppState,
    headers: &HeaderMap,
    generation: u64,
    custom: impl FnOnce() -> Vec<skiff_api::openapi::CustomKind>,
) -> Response {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .filter(|a| !a.trim().is_empty())
        .unwrap_or("*/*");
    let Some(protobuf) = v2_representation(accept) else {
        return crate::respond::error_response(&skiff_api::ApiError::new(
            406,
            "NotAcceptable",
            "only the following media types are accepted: application/json, application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
        ));
    };
    let docs = st.openapi.get(generation, custom);
    let (served, content_type) = if protobuf {
        (docs.v2_protobuf(), V2_PROTOBUF)
    } else {
        (docs.v2_json(), "application/json")
    };
    let etag = format!("\"{}\"", served.etag);
    let not_modified = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut resp = if not_modified {
        json_bytes(304, Vec::new(), content_type)
    } else {
        json_bytes(200, served.bytes.clone(), content_type)
    };
    let h = resp.headers_mut();
    h.insert(header::VARY, HeaderValue::from_static("Accept"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    resp
}

/// Which representation the Accept header picks, in its order of preference (q values
/// honoured): Some(true) protobuf, Some(false) JSON, None neither.
fn v2_representation(accept: &str) -> Option<bool> {
    let mut clauses: Vec<(f32, usize, &str)> = accept
        .split(',')
        .enumerate()
        .filter_map(|(i, item)| {
            let mut parts = item.split(';').map(str::trim);
            let mt = parts.next().filter(|m| !m.is_empty())?;
            let q = parts
                .filter_map(|p| p.split_once('='))
                .find(|(k, _)| k.trim() == "q")
                .and_then(|(_, v)| v.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            (q > 0.0).then_some((q, i, mt))
        })
        .collect();
    clauses.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    clauses.into_iter().find_map(|(_, _, mt)| {
        let (ty, sub) = mt.split_once('/')?;
        let ty_ok = |want: &str| ty == want || ty == "*";
        match sub {
            "json" if ty_ok("application") => Some(false),
            "com.github.proto-openapi.spec.v2@v1.0+protobuf"
            | "com.github.proto-openapi.spec.v2.v1.0+protobuf"
                if ty_ok("application") =>
            {
                Some(true)
            }
            "*" if ty_ok("application") => Some(false),
            _ => None,
        }
    })
}
