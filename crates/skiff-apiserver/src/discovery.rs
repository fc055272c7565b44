//! `/version`, legacy discovery (`/api`, `/api/v1`, `/apis`, `/apis/<g>`, `/apis/<g>/<v>`),
//! aggregated discovery v2 (`as=APIGroupDiscoveryList`) and OpenAPI v3, all generated from
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

/// A rendered OpenAPI document, cached in the custom-kind index (rebuilt per CRD change).
pub(crate) fn cached_document(
    index: &crate::crd::Index,
    key: &str,
    render: impl FnOnce(&[skiff_api::openapi::CustomKind]) -> Option<Value>,
) -> Option<std::sync::Arc<Value>> {
    if let Ok(docs) = index.documents.lock() {
        if let Some(d) = docs.get(key) {
            return Some(d.clone());
        }
    }
    let doc = std::sync::Arc::new(render(index.openapi_kinds())?);
    if let Ok(mut docs) = index.documents.lock() {
        docs.insert(key.to_string(), doc.clone());
    }
    Some(doc)
}

/// `GET /openapi/v3[/<path>]` with the served custom kinds.
pub(crate) fn openapi(rest: &[&str], query: &Query, custom: &crate::crd::Index) -> Response {
    if rest.is_empty() {
        return match cached_document(custom, "", |c| Some(skiff_api::openapi::v3_index_with(c))) {
            Some(index) => json_response(200, &index),
            None => crate::respond::error_response(&not_found_path()),
        };
    }
    let path = rest.join("/");
    let key = format!("v3/{path}");
    match cached_document(custom, &key, |c| {
        skiff_api::openapi::v3_document_with(&path, c)
    }) {
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
