//! DefaultIngressClass: an Ingress created without `spec.ingressClassName` (and without the
//! legacy `kubernetes.io/ingress.class` annotation) gets the IngressClass annotated
//! `ingressclass.kubernetes.io/is-default-class: "true"`; with several defaults, the newest.

use async_trait::async_trait;
use serde_json::{json, Value};
use skiff_api::ApiError;
use skiff_store::ListOptions;

use super::{Operation, Plugin, Request};
use crate::respond::ApiResult;

const IS_DEFAULT: &str = "ingressclass.kubernetes.io/is-default-class";
const LEGACY_ANNOTATION: &str = "kubernetes.io/ingress.class";
const PREFIX: &str = "/registry/networking.k8s.io/ingressclasses/";

pub(crate) struct DefaultIngressClass;

#[async_trait]
impl Plugin for DefaultIngressClass {
    fn name(&self) -> &'static str {
        "DefaultIngressClass"
    }

    fn handles(&self, req: &Request<'_>) -> bool {
        req.op == Operation::Create
            && req.subresource.is_empty()
            && req.ctx.info.group == "networking.k8s.io"
            && req.ctx.info.plural == "ingresses"
    }

    async fn mutate(&self, req: &Request<'_>, obj: Option<&mut Value>) -> ApiResult<()> {
        let Some(ing) = obj else {
            return Ok(());
        };
        let named = ing
            .pointer("/spec/ingressClassName")
            .is_some_and(|v| !v.is_null());
        let legacy = ing
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(LEGACY_ANNOTATION))
            .is_some();
        if named || legacy || !ing.get("spec").is_some_and(Value::is_object) {
            return Ok(());
        }
        let classes = req
            .ctx
            .st
            .store
            .list(PREFIX, &ListOptions::default())
            .await
            .map_err(|e| ApiError::internal(format!("listing IngressClasses: {e}")))?;
        let classes: Vec<Value> = classes
            .items
            .iter()
            .filter_map(|kv| serde_json::from_slice::<Value>(&kv.value).ok())
            .collect();
        let is_default = |c: &Value| {
            c.pointer("/metadata/annotations")
                .and_then(|a| a.get(IS_DEFAULT))
                .and_then(Value::as_str)
                == Some("true")
        };
        if let Some(name) = super::newest_default(&classes, is_default) {
            ing["spec"]["ingressClassName"] = json!(name);
        }
        Ok(())
    }
}
