//! `POST /api/v1/namespaces/<ns>/serviceaccounts/<name>/token`: the TokenRequest subresource
//! (`authentication.k8s.io/v1`), with upstream's REST semantics: name/namespace in the body must
//! match the URL, audiences default to the API audiences, expirationSeconds defaults to 3600
//! and must be in [600 s, 2^32 s], `boundObjectRef` may name a Pod (which must run as this
//! ServiceAccount; its node is recorded too), a Secret or a Node, and a given uid must match.

use axum::response::Response;
use serde_json::{json, Value};
use skiff_api::{ApiError, Cause};

use super::{claims, get_core, Bound, Ref, EXTENDED_EXPIRATION, WARN_ONLY_EXPIRATION};
use crate::ctx::Ctx;
use crate::plugins::{self, Operation};
use crate::respond::*;

const GROUP: &str = "authentication.k8s.io";
const KIND: &str = "TokenRequest";

fn invalid(name: &str, field: &str, value: Value, detail: &str) -> ApiError {
    let shown = match &value {
        Value::String(s) => format!("{s:?}"),
        v => v.to_string(),
    };
    ApiError::invalid(
        GROUP,
        KIND,
        name,
        vec![Cause {
            reason: "FieldValueInvalid".into(),
            message: format!("Invalid value: {shown}: {detail}"),
            field: field.into(),
        }],
    )
}

pub(crate) async fn token_request(ctx: &Ctx, name: &str, body: &[u8]) -> ApiResult<Response> {
    let st = &ctx.st;
    let sa_cfg = &st.service_accounts;
    let ns = ctx.ns.clone().unwrap_or_default();
    let mut req = ctx.decode_body(body)?;
    if !req.is_object() {
        return Err(ApiError::bad_request(
            "the request body must be a TokenRequest",
        ));
    }
    if let Some(kind) = req.get("kind").and_then(Value::as_str) {
        if !kind.is_empty() && kind != KIND {
            return Err(ApiError::bad_request(format!(
                "the body of the request was of kind {kind}, expected {KIND}"
            )));
        }
    }
    let md_name = crate::objects::meta_str(&req, "name")
        .unwrap_or("")
        .to_string();
    if !md_name.is_empty() && md_name != name {
        return Err(invalid(
            name,
            "metadata.name",
            json!(md_name),
            "must match the service account name if specified",
        ));
    }
    let md_ns = crate::objects::meta_str(&req, "namespace")
        .unwrap_or("")
        .to_string();
    if !md_ns.is_empty() && md_ns != ns {
        return Err(invalid(
            name,
            "metadata.namespace",
            json!(md_ns),
            "must match the service account namespace if specified",
        ));
    }
    let sa = get_core(st, "serviceaccounts", Some(&ns), name)
        .await?
        .ok_or_else(|| ApiError::not_found("", "serviceaccounts", name))?;
    let spec = req.get("spec").cloned().unwrap_or_else(|| json!({}));
    let mut audiences: Vec<String> = match spec.get("audiences") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| ApiError::bad_request("spec.audiences must be strings"))
            })
            .collect::<ApiResult<_>>()?,
        Some(_) => return Err(ApiError::bad_request("spec.audiences must be a list")),
    };
    if audiences.is_empty() {
        audiences = sa_cfg.audiences.clone();
    }
    let expiration = match spec.get("expirationSeconds") {
        None | Some(Value::Null) => 3600,
        Some(v) => v
            .as_i64()
            .ok_or_else(|| ApiError::bad_request("spec.expirationSeconds must be an integer"))?,
    };
    if expiration < 600 {
        return Err(invalid(
            "",
            "spec.expirationSeconds",
            json!(expiration),
            "may not specify a duration less than 10 minutes",
        ));
    }
    if expiration > 1 << 32 {
        return Err(invalid(
            "",
            "spec.expirationSeconds",
            json!(expiration),
            "may not specify a duration larger than 2^32 seconds",
        ));
    }
    let now = now();
    let now_s = now.as_second();

    let mut bound = Bound::default();
    let bound_ref = spec.get("boundObjectRef").filter(|v| !v.is_null()).cloned();
    if let Some(r) = &bound_ref {
        let s = |f: &str| r.get(f).and_then(Value::as_str).unwrap_or("").to_string();
        let (api_version, kind, ref_name, ref_uid) =
            (s("apiVersion"), s("kind"), s("name"), s("uid"));
        let group = api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
        let (plural, obj) = match (group, kind.as_str()) {
            ("", "Pod") => {
                let pod = get_core(st, "pods", Some(&ns), &ref_name)
                    .await?
                    .ok_or_else(|| ApiError::not_found("", "pods", &ref_name))?;
                let pod_sa = pod
                    .pointer("/spec/serviceAccountName")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                if pod_sa != name {
                    return Err(ApiError::bad_request(format!(
                        "cannot bind token for serviceaccount {name:?} to pod running with different serviceaccount name."
                    )));
                }
                if let Some(node) = pod
                    .pointer("/spec/nodeName")
                    .and_then(Value::as_str)
                    .filter(|n| !n.is_empty())
                {
                    // A missing node only loses the node claim (upstream logs and goes on).
                    if let Ok(Some(n)) = get_core(st, "nodes", None, node).await {
                        bound.node = Some(Ref::of(&n));
                    }
                }
                bound.pod = Some(Ref::of(&pod));
                ("Pod", pod)
            }
            ("", "Secret") => {
                let secret = get_core(st, "secrets", Some(&ns), &ref_name)
                    .await?
                    .ok_or_else(|| ApiError::not_found("", "secrets", &ref_name))?;
                bound.secret = Some(Ref::of(&secret));
                ("Secret", secret)
            }
            ("", "Node") => {
                let node = get_core(st, "nodes", None, &ref_name)
                    .await?
                    .ok_or_else(|| ApiError::not_found("", "nodes", &ref_name))?;
                bound.node = Some(Ref::of(&node));
                ("Node", node)
            }
            _ => {
                let gvk = if group.is_empty() {
                    format!("/{}, Kind={kind}", api_version)
                } else {
                    let v = api_version.rsplit_once('/').map(|(_, v)| v).unwrap_or("");
                    format!("{group}/{v}, Kind={kind}")
                };
                return Err(ApiError::bad_request(format!(
                    "cannot bind token to object of type {gvk}"
                )));
            }
        };
        let uid = Ref::of(&obj).uid;
        if !ref_uid.is_empty() && ref_uid != uid {
            return Err(ApiError::conflict(
                "",
                plural,
                &ref_name,
                &format!("the UID in the bound object reference ({ref_uid}) does not match the UID in record. The object might have been deleted and then recreated"),
            ));
        }
    }

    // The request as the response echoes it.
    let obj = req
        .as_object_mut()
        .ok_or_else(|| ApiError::bad_request("the request body must be a TokenRequest"))?;
    obj.insert("kind".into(), json!(KIND));
    obj.insert("apiVersion".into(), json!("authentication.k8s.io/v1"));
    let md = obj.entry("metadata").or_insert_with(|| json!({}));
    if !md.is_object() {
        *md = json!({});
    }
    md["name"] = json!(name);
    md["namespace"] = json!(ns);
    md["creationTimestamp"] = json!(rfc3339(now));
    let mut spec_out = json!({"audiences": audiences, "expirationSeconds": expiration});
    if let Some(r) = bound_ref {
        spec_out["boundObjectRef"] = r;
    }
    obj.insert("spec".into(), spec_out);
    obj.insert("status".into(), json!({}));

    // Validating admission sees the TokenRequest (NodeRestriction limits nodes here upstream).
    let warnings = plugins::admit(
        &plugins::Request {
            ctx,
            op: Operation::Create,
            name,
            subresource: "token",
            old: None,
        },
        Some(&mut req),
    )
    .await?;

    let api_audiences = audiences.iter().all(|a| sa_cfg.audiences.contains(a));
    let (exp, warn_after) = if sa_cfg.extend_expiration
        && bound.pod.is_some()
        && expiration == WARN_ONLY_EXPIRATION
        && api_audiences
    {
        (EXTENDED_EXPIRATION, Some(now_s + expiration))
    } else {
        (expiration, None)
    };
    let jti = uuid::Uuid::new_v4().to_string();
    let sa_ref = Ref::of(&sa);
    let c = claims(
        &sa_cfg.issuer,
        &ns,
        &sa_ref,
        &audiences,
        now_s,
        exp,
        warn_after,
        &bound,
        &jti,
    );
    let token = sa_cfg
        .key
        .sign(&c)
        .map_err(|e| ApiError::internal(format!("signing the token: {e}")))?;
    let expires = jiff::Timestamp::from_second(now_s + expiration)
        .map_err(|e| ApiError::internal(format!("expiration time: {e}")))?;
    req["status"] = json!({"token": token, "expirationTimestamp": rfc3339(expires)});
    tracing::debug!(namespace = %ns, serviceaccount = %name, jti = %jti, "issued a ServiceAccount token");
    Ok(with_warnings(json_response(201, &req), &warnings))
}
