//! `MutatingAdmissionWebhook` and `ValidatingAdmissionWebhook`: the admission webhooks of
//! the Mutating/ValidatingWebhookConfigurations, called after the built-in plugins of each
//! phase (see `crate::webhook::admission`).

use async_trait::async_trait;
use serde_json::Value;

use super::{Plugin, Request};
use crate::respond::ApiResult;
use crate::webhook::admission::{self, Index};

pub(crate) struct Mutating(Index);
pub(crate) struct Validating(Index);

impl Mutating {
    pub(crate) fn new() -> Self {
        Mutating(Index::mutating())
    }
}

impl Validating {
    pub(crate) fn new() -> Self {
        Validating(Index::validating())
    }
}

#[async_trait]
impl Plugin for Mutating {
    fn name(&self) -> &'static str {
        "MutatingAdmissionWebhook"
    }

    fn handles(&self, req: &Request<'_>) -> bool {
        !admission::exempt(req) && self.0.maybe_any(req)
    }

    async fn mutate_warn(
        &self,
        req: &Request<'_>,
        obj: Option<&mut Value>,
    ) -> ApiResult<Vec<String>> {
        admission::mutate(&self.0, req, obj).await
    }
}

#[async_trait]
impl Plugin for Validating {
    fn name(&self) -> &'static str {
        "ValidatingAdmissionWebhook"
    }

    fn handles(&self, req: &Request<'_>) -> bool {
        !admission::exempt(req) && self.0.maybe_any(req)
    }

    async fn validate(&self, req: &Request<'_>, obj: Option<&Value>) -> ApiResult<Vec<String>> {
        admission::validate(&self.0, req, obj).await
    }
}
