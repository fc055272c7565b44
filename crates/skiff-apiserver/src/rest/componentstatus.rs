//! core/v1 ComponentStatus (deprecated upstream since 1.19, still read by `kubectl get cs`):
//! computed on each request like upstream's `registry/core/componentstatus`, never stored.
//! `scheduler` and `controller-manager` ask the probes the process registered
//! ([`crate::AppState::register_component`]; none registered reads as unhealthy), `etcd-0` reads
//! the datastore's current revision. Get and list (label and field selectors); every answer
//! carries upstream's deprecation warning.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::response::Response;
use http::Method;
use serde_json::{json, Value};
use skiff_api::ApiError;

use super::read::object_response;
use crate::ctx::Ctx;
use crate::objects::matches;
use crate::respond::*;

/// A component's health check: `Err` carries what went wrong.
pub type Probe = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// The registered probes by component name.
#[derive(Default)]
pub struct Probes(RwLock<BTreeMap<String, Probe>>);

impl Probes {
    pub(crate) fn register(&self, name: &str, probe: Probe) {
        if let Ok(mut m) = self.0.write() {
            m.insert(name.to_string(), probe);
        }
    }

    fn check(&self, name: &str) -> Result<(), String> {
        let probe = self.0.read().ok().and_then(|m| m.get(name).cloned());
        match probe {
            Some(p) => p(),
            None => Err(format!("no {name} runs with this API server")),
        }
    }
}

const WARNING: &str = "v1 ComponentStatus is deprecated in v1.19+";
/// Upstream's fixed list of servers (the datastore is etcd's first member there).
const COMPONENTS: &[&str] = &["scheduler", "controller-manager", "etcd-0"];
const STORE_TIMEOUT: Duration = Duration::from_secs(2);

pub(super) async fn handle(ctx: &Ctx, method: &Method, tail: &[&str]) -> ApiResult<Response> {
    if method != Method::GET && method != Method::HEAD {
        return Err(ApiError::method_not_allowed(format!(
            "method {method} is not supported on {}",
            ctx.info.group_resource()
        )));
    }
    if ctx.query.flag("watch") {
        return Err(ApiError::method_not_allowed(format!(
            "watch is not supported on {}",
            ctx.info.group_resource()
        )));
    }
    let warn = |r: Response| with_warnings(r, &[WARNING.to_string()]);
    match tail {
        [] => {
            let (label, field) = ctx.selectors()?;
            let mut items = Vec::new();
            for name in COMPONENTS {
                let obj = status(ctx, name).await;
                if matches(&obj, &label, &field) {
                    items.push(obj);
                }
            }
            if wants_table(&ctx.headers) {
                let table = skiff_api::table::to_table(
                    ctx.info,
                    &items,
                    crate::objects::include_object(&ctx.query),
                    json!({}),
                    now(),
                );
                return Ok(warn(json_response(200, &table)));
            }
            Ok(warn(json_response(
                200,
                &json!({"kind": ctx.info.list_kind, "apiVersion": ctx.info.api_version(),
                    "metadata": {}, "items": items}),
            )))
        }
        [name] if COMPONENTS.contains(name) => {
            Ok(warn(object_response(ctx, 200, &status(ctx, name).await)))
        }
        [name] => Err(ApiError::not_found("", ctx.info.plural, name)),
        _ => Err(not_found_path()),
    }
}

/// One component's object: a `Healthy` condition, True with message "ok" or False with the
/// error (upstream's `getComponentStatus`).
async fn status(ctx: &Ctx, name: &str) -> Value {
    let result = if name == "etcd-0" {
        match tokio::time::timeout(STORE_TIMEOUT, ctx.st.store.current_revision()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("the datastore did not answer in time".into()),
        }
    } else {
        ctx.st.components.check(name)
    };
    let condition = match result {
        Ok(()) => json!({"type": "Healthy", "status": "True", "message": "ok"}),
        Err(e) => json!({"type": "Healthy", "status": "False", "error": e}),
    };
    json!({"kind": "ComponentStatus", "apiVersion": "v1",
        "metadata": {"name": name}, "conditions": [condition]})
}
