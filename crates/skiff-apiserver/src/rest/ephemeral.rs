//! The `pods/ephemeralcontainers` subresource (what `kubectl debug` patches): GET returns
//! the Pod; PUT and PATCH (any patch type; the body is a Pod) change only
//! `spec.ephemeralContainers`, which may only grow: existing entries can be neither changed
//! nor removed, names are unique among all of the pod's containers, and ports, probes,
//! lifecycle, resources and restartPolicy are refused, as upstream validates them.

use axum::response::Response;
use http::Method;
use serde_json::{json, Value};
use skiff_api::{ApiError, Cause};
use skiff_store::StoreError;

use super::read::{get, object_response};
use super::update::{apply_patch, parse_patch, patch_kind};
use crate::ctx::{Ctx, RETRIES};
use crate::objects::{meta_mut, meta_str};
use crate::plugins;
use crate::respond::*;
use crate::storage::commit_update;

const SUBRESOURCE: &str = "ephemeralcontainers";

/// Fields an ephemeral container may not set (upstream's validateEphemeralContainers).
const FORBIDDEN: &[&str] = &[
    "ports",
    "livenessProbe",
    "readinessProbe",
    "startupProbe",
    "lifecycle",
    "resources",
    "resizePolicy",
    "restartPolicy",
];

pub(crate) async fn handle(
    ctx: &Ctx,
    method: &Method,
    name: &str,
    body: &[u8],
) -> ApiResult<Response> {
    // Parsed once; a patch is applied again to the current pod on each retry.
    let input = match *method {
        Method::GET => return get(ctx, name).await,
        Method::PUT => Input::Put(ctx.decode_body(body)?),
        Method::PATCH => {
            let kind = patch_kind(ctx)?;
            let patch = parse_patch(&kind, body)?;
            Input::Patch(kind, patch)
        }
        _ => {
            return Err(ApiError::method_not_allowed(format!(
                "method {method} is not supported on pods/{SUBRESOURCE}"
            )))
        }
    };
    let precondition = match &input {
        Input::Put(v) => meta_str(v, "resourceVersion"),
        Input::Patch(_, p) => p
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str),
    }
    .filter(|r| !r.is_empty())
    .map(str::to_string);
    for _ in 0..RETRIES {
        let (cur, rev) = ctx.get_current(name).await?;
        if let Some(p) = &precondition {
            if *p != rev.to_string() {
                return Err(ctx.conflict(name));
            }
        }
        let new = match &input {
            Input::Put(v) => v.clone(),
            Input::Patch(kind, p) => apply_patch(ctx, kind, Some(&cur), p)?,
        };
        let mut merged = cur.clone();
        match new.pointer("/spec/ephemeralContainers") {
            Some(v) if !v.is_null() => merged["spec"]["ephemeralContainers"] = v.clone(),
            _ => {
                if let Some(s) = merged.get_mut("spec").and_then(Value::as_object_mut) {
                    s.remove("ephemeralContainers");
                }
            }
        }
        skiff_api::defaults::apply_defaults(ctx.info, &mut merged);
        let causes = validate(&cur, &merged);
        if !causes.is_empty() {
            return Err(ApiError::invalid("", "Pod", name, causes));
        }
        if merged == cur {
            return Ok(object_response(ctx, 200, &cur));
        }
        meta_mut(&mut merged).remove("resourceVersion");
        skiff_api::apply::record_update(
            ctx.info,
            Some(&cur),
            &mut merged,
            &ctx.manager(),
            &now_rfc3339(),
        );
        let warnings = plugins::admit(
            &plugins::Request {
                ctx,
                op: plugins::Operation::Update,
                name,
                subresource: SUBRESOURCE,
                old: Some(&cur),
            },
            Some(&mut merged),
        )
        .await?;
        if ctx.dry_run() {
            crate::keys::set_rv(&mut merged, rev);
            return Ok(with_warnings(object_response(ctx, 200, &merged), &warnings));
        }
        match commit_update(ctx, name, merged, rev).await {
            Ok(stored) => return Ok(with_warnings(object_response(ctx, 200, &stored), &warnings)),
            Err(StoreError::Conflict { .. }) if precondition.is_none() => continue,
            Err(e) => return Err(store_err(ctx.info, name, e)),
        }
    }
    Err(ctx.conflict(name))
}

enum Input {
    Put(Value),
    Patch(super::update::PatchKind, Value),
}

fn list<'a>(pod: &'a Value, key: &str) -> &'a [Value] {
    pod.pointer(&format!("/spec/{key}"))
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

fn cause(reason: &str, field: String, message: String) -> Cause {
    Cause {
        reason: reason.into(),
        message,
        field,
    }
}

fn dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// Upstream's ephemeral container rules for an update from `old` to `new`.
pub(crate) fn validate(old: &Value, new: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let old_eph = list(old, "ephemeralContainers");
    let new_eph = list(new, "ephemeralContainers");
    for o in old_eph {
        let oname = o.get("name");
        match new_eph.iter().find(|n| n.get("name") == oname) {
            Some(n) if n == o => {}
            Some(_) | None => causes.push(cause(
                "FieldValueForbidden",
                "spec.ephemeralContainers".into(),
                format!(
                    "Forbidden: existing ephemeral containers {} may not be removed or changed",
                    json!(oname.and_then(Value::as_str).unwrap_or_default())
                ),
            )),
        }
    }
    let mut names: Vec<&str> = ["containers", "initContainers"]
        .iter()
        .flat_map(|k| list(new, k))
        .filter_map(|c| c.get("name").and_then(Value::as_str))
        .collect();
    let targets = names.clone();
    for (i, c) in new_eph.iter().enumerate() {
        let path = format!("spec.ephemeralContainers[{i}]");
        let name = c.get("name").and_then(Value::as_str).unwrap_or_default();
        if name.is_empty() {
            causes.push(cause(
                "FieldValueRequired",
                format!("{path}.name"),
                "Required value".into(),
            ));
        } else if !dns_label(name) {
            causes.push(cause(
                "FieldValueInvalid",
                format!("{path}.name"),
                format!("Invalid value: {}: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')", json!(name)),
            ));
        } else if names.contains(&name) {
            causes.push(cause(
                "FieldValueDuplicate",
                format!("{path}.name"),
                format!("Duplicate value: {}", json!(name)),
            ));
        } else {
            names.push(name);
        }
        if c.get("image")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .trim()
            .is_empty()
        {
            causes.push(cause(
                "FieldValueRequired",
                format!("{path}.image"),
                "Required value".into(),
            ));
        }
        for f in FORBIDDEN {
            if c.get(*f)
                .is_some_and(|v| !v.is_null() && v != &json!({}) && v != &json!([]))
            {
                causes.push(cause(
                    "FieldValueForbidden",
                    format!("{path}.{f}"),
                    "Forbidden: cannot be set for an Ephemeral Container".into(),
                ));
            }
        }
        let volumes: Vec<&str> = list(new, "volumes")
            .iter()
            .filter_map(|v| v.get("name").and_then(Value::as_str))
            .collect();
        for (j, m) in c
            .get("volumeMounts")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let vname = m.get("name").and_then(Value::as_str).unwrap_or_default();
            if !volumes.contains(&vname) {
                causes.push(cause(
                    "FieldValueNotFound",
                    format!("{path}.volumeMounts[{j}].name"),
                    format!("Not found: {}", json!(vname)),
                ));
            }
        }
        if let Some(t) = c.get("targetContainerName").and_then(Value::as_str) {
            if !t.is_empty() && !targets.contains(&t) {
                causes.push(cause(
                    "FieldValueNotFound",
                    format!("{path}.targetContainerName"),
                    format!("Not found: {}", json!(t)),
                ));
            }
        }
    }
    causes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(eph: Value) -> Value {
        json!({"spec": {"containers": [{"name": "app", "image": "x"}],
                        "ephemeralContainers": eph}})
    }

    #[test]
    fn additions_only_and_upstream_rules() {
        let old = pod(json!([{"name": "d1", "image": "busybox"}]));
        let ok = pod(json!([{"name": "d1", "image": "busybox"},
                            {"name": "d2", "image": "busybox", "targetContainerName": "app"}]));
        assert!(validate(&old, &ok).is_empty());
        let removed = pod(json!([]));
        assert_eq!(validate(&old, &removed)[0].reason, "FieldValueForbidden");
        let changed = pod(json!([{"name": "d1", "image": "alpine"}]));
        assert_eq!(
            validate(&old, &changed)[0].field,
            "spec.ephemeralContainers"
        );
        let dup = pod(json!([{"name": "d1", "image": "busybox"}, {"name": "app", "image": "b"}]));
        assert_eq!(validate(&old, &dup)[0].reason, "FieldValueDuplicate");
        let ports = pod(json!([{"name": "d1", "image": "busybox"},
                               {"name": "d3", "image": "b", "ports": [{"containerPort": 80}]}]));
        let c = validate(&old, &ports);
        assert_eq!(c[0].field, "spec.ephemeralContainers[1].ports");
        let target = pod(json!([{"name": "d1", "image": "busybox"},
                                {"name": "d4", "image": "b", "targetContainerName": "nope"}]));
        assert_eq!(validate(&old, &target)[0].reason, "FieldValueNotFound");
        let mount = pod(json!([{"name": "d1", "image": "busybox"},
                               {"name": "d5", "image": "b", "volumeMounts": [{"name": "v", "mountPath": "/v"}]}]));
        assert_eq!(
            validate(&old, &mount)[0].field,
            "spec.ephemeralContainers[1].volumeMounts[0].name"
        );
    }
}
