//! OIDC discovery for the ServiceAccount issuer: `/.well-known/openid-configuration` and the
//! key set at `/openid/v1/jwks`, as kube-apiserver serves them (so external systems can verify
//! our tokens). Both are non-resource paths, authorized like any other (upstream binds them to
//! `system:service-account-issuer-discovery`).

use axum::response::Response;
use http::header;
use serde_json::json;

use super::ServiceAccounts;

pub(crate) const JWKS_PATH: &str = "/openid/v1/jwks";

fn respond(body: &serde_json::Value, content_type: &'static str) -> Response {
    let mut resp = crate::respond::json_bytes(200, body.to_string().into_bytes(), content_type);
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        http::HeaderValue::from_static("public, max-age=3600"),
    );
    resp
}

pub(crate) fn discovery(sa: &ServiceAccounts) -> Response {
    respond(
        &json!({
            "issuer": sa.issuer,
            "jwks_uri": sa.jwks_uri,
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
        }),
        "application/json",
    )
}

pub(crate) fn jwks(sa: &ServiceAccounts) -> Response {
    respond(&json!({"keys": [sa.key.jwk()]}), "application/jwk-set+json")
}
