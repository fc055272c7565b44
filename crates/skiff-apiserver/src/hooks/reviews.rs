//! The review kinds computed from the request's identity: SelfSubjectReview (`kubectl auth
//! whoami`) answers with the acting user (after impersonation), as upstream.

use async_trait::async_trait;
use serde_json::{json, Value};

use crate::admission::Admission;
use crate::ctx::Ctx;
use crate::respond::ApiResult;

pub(crate) struct SelfSubjectReview;

#[async_trait]
impl Admission for SelfSubjectReview {
    async fn review(&self, ctx: &Ctx, _obj: &Value) -> Option<ApiResult<Value>> {
        Some(Ok(json!({
            "kind": "SelfSubjectReview",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"creationTimestamp": null},
            "status": {"userInfo": &*ctx.user},
        })))
    }
}
