//! TokenReview (`authentication.k8s.io/v1`): runs `spec.token` through the bearer-token
//! authenticators as if it came in an `Authorization` header, for `spec.audiences` (default:
//! the API audiences), and answers with `status.authenticated`, the user, the audiences the
//! token is good for, or the error — upstream's webhook token authentication endpoint.

use async_trait::async_trait;
use serde_json::{json, Value};
use skiff_api::ApiError;

use crate::admission::Admission;
use crate::ctx::Ctx;
use crate::respond::ApiResult;
use crate::serviceaccount::{authn, jwt::MAX_TOKEN_LEN};

pub(crate) struct TokenReview;

/// The bearer-token wrapper's error for a token nobody recognised.
const INVALID_TOKEN: &str = "invalid bearer token";

#[async_trait]
impl Admission for TokenReview {
    async fn review(&self, ctx: &Ctx, obj: &Value) -> Option<ApiResult<Value>> {
        Some(review(ctx, obj).await)
    }
}

async fn review(ctx: &Ctx, obj: &Value) -> ApiResult<Value> {
    let token = obj
        .pointer("/spec/token")
        .and_then(Value::as_str)
        .unwrap_or("");
    if token.is_empty() {
        return Err(ApiError::bad_request("spec.token is required"));
    }
    let st = &ctx.st;
    let mut wanted: Vec<String> = obj
        .pointer("/spec/audiences")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let explicit = !wanted.is_empty();
    if !explicit {
        wanted = st.service_accounts.audiences.clone();
    }
    let mut out = obj.clone();
    out["kind"] = json!("TokenReview");
    out["apiVersion"] = json!("authentication.k8s.io/v1");
    if !out.get("metadata").is_some_and(Value::is_object) {
        out["metadata"] = json!({});
    }
    out["metadata"]["creationTimestamp"] = Value::Null;
    let status = if token.len() > MAX_TOKEN_LEN {
        json!({"authenticated": false, "user": {}, "error": INVALID_TOKEN})
    } else if let Some(res) = authn::review(st, token, &wanted).await {
        match res {
            Ok((user, auds)) => {
                json!({"authenticated": true, "user": user, "audiences": auds})
            }
            Err(authn::Rejected::Lookup(e)) if e.code >= 500 => return Err(e),
            Err(why) => json!({"authenticated": false, "user": {},
                "error": format!("[{INVALID_TOKEN}, {why}]")}),
        }
    } else if let Some(user) = st.tokens.user_of(token) {
        // Static tokens know no audience: they are good for the API audiences only.
        let auds: Vec<&String> = wanted
            .iter()
            .filter(|a| st.service_accounts.audiences.contains(a))
            .collect();
        if auds.is_empty() {
            json!({"authenticated": false, "user": {}, "error": INVALID_TOKEN})
        } else {
            json!({"authenticated": true, "user": user, "audiences": auds})
        }
    } else {
        json!({"authenticated": false, "user": {}, "error": INVALID_TOKEN})
    };
    out["status"] = status;
    Ok(out)
}
