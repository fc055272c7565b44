//! Calling webhooks: admission webhooks (AdmissionReview) and CRD conversion webhooks
//! (ConversionReview) over HTTPS with the configuration's `caBundle`, to a Service or a URL.
//! `client` holds the reusable TLS clients and routing, `admission` the admission webhook
//! dispatch the `MutatingAdmissionWebhook`/`ValidatingAdmissionWebhook` plugins run.

pub(crate) mod admission;
pub(crate) mod client;

use std::time::Duration;

use serde_json::{json, Value};
use skiff_api::ApiError;

use crate::AppState;

/// Upstream's conversion webhook timeout.
const CONVERSION_TIMEOUT: Duration = Duration::from_secs(30);

/// `group/version, Kind=Kind` as Go prints a GroupVersionKind.
fn gvk_of(obj: &Value) -> String {
    let av = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    let av = if av.contains('/') {
        av.to_string()
    } else {
        format!("/{av}")
    };
    format!("{av}, Kind={kind}")
}

/// Converts `objects` (all of one CRD, at their stored versions) to `desired_api_version`
/// through the CRD's conversion webhook (`spec.conversion.webhook`).
pub(crate) async fn convert(
    st: &AppState,
    crd: &Value,
    objects: Vec<Value>,
    desired_api_version: &str,
) -> Result<Vec<Value>, ApiError> {
    // Objects already at the desired version are not sent (upstream skips them too).
    let todo: Vec<usize> = (0..objects.len())
        .filter(|&i| {
            objects[i].get("apiVersion").and_then(Value::as_str) != Some(desired_api_version)
        })
        .collect();
    let Some(&first) = todo.first() else {
        return Ok(objects);
    };
    let what = gvk_of(&objects[first]);
    let failed =
        |why: String| ApiError::internal(format!("conversion webhook for {what} failed: {why}"));
    let invalid = |why: String| {
        ApiError::internal(format!(
            "conversion webhook for {what} returned invalid response: {why}"
        ))
    };
    let webhook = crd
        .pointer("/spec/conversion/webhook")
        .filter(|w| w.is_object())
        .ok_or_else(|| failed("spec.conversion.webhook is not set".into()))?;
    let cc = webhook.get("clientConfig").cloned().unwrap_or(json!({}));
    let versions: Vec<&str> = webhook
        .get("conversionReviewVersions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let api_version = if !versions.contains(&"v1") && versions.contains(&"v1beta1") {
        "apiextensions.k8s.io/v1beta1"
    } else {
        "apiextensions.k8s.io/v1"
    };
    let uid = uuid::Uuid::new_v4().to_string();
    let sent: Vec<&Value> = todo.iter().map(|&i| &objects[i]).collect();
    let review = json!({
        "kind": "ConversionReview",
        "apiVersion": api_version,
        "request": {"uid": uid, "desiredAPIVersion": desired_api_version, "objects": sent},
    });
    let body = serde_json::to_vec(&review).map_err(|e| failed(e.to_string()))?;
    let ca = cc.get("caBundle").and_then(Value::as_str).unwrap_or("");
    let client = client::client_for(ca).map_err(failed)?;
    let target = client::resolve(st, &cc, CONVERSION_TIMEOUT.as_secs())
        .await
        .map_err(failed)?;
    let bytes = client
        .post(&target, body, CONVERSION_TIMEOUT)
        .await
        .map_err(failed)?;
    let resp: Value = serde_json::from_slice(&bytes).map_err(|e| failed(e.to_string()))?;
    let got_av = resp.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let got_kind = resp.get("kind").and_then(Value::as_str).unwrap_or("");
    if got_av != api_version || got_kind != "ConversionReview" {
        return Err(invalid(format!(
            "expected webhook response of {api_version}, Kind=ConversionReview, got {got_av}, Kind={got_kind}"
        )));
    }
    let r = resp
        .get("response")
        .filter(|r| r.is_object())
        .ok_or_else(|| invalid("no response provided".into()))?;
    let got_uid = r.get("uid").and_then(Value::as_str).unwrap_or("");
    if got_uid != uid {
        return Err(invalid(format!(
            "expected response.uid={uid:?}, got {got_uid:?}"
        )));
    }
    let result = r.get("result").cloned().unwrap_or(json!({}));
    let status = result.get("status").and_then(Value::as_str).unwrap_or("");
    if status != "Success" {
        let msg = result.get("message").and_then(Value::as_str).unwrap_or("");
        return Err(invalid(if msg.is_empty() {
            format!("response.result.status was '{status}', not 'Success'")
        } else {
            msg.to_string()
        }));
    }
    let converted = r
        .get("convertedObjects")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if converted.len() != todo.len() {
        return Err(ApiError::internal(format!(
            "conversion webhook for {what} returned {} objects, expected {}",
            converted.len(),
            todo.len()
        )));
    }
    let mut out = objects;
    for (n, (conv, &i)) in converted.into_iter().zip(&todo).enumerate() {
        let bad = |why: String| {
            ApiError::internal(format!(
                "conversion webhook for {what} returned invalid object at index {n}: {why}"
            ))
        };
        let got = conv.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        if got != desired_api_version {
            return Err(bad(format!(
                "invalid groupVersion (expected {desired_api_version}, received {got})"
            )));
        }
        let want_kind = out[i].get("kind").and_then(Value::as_str).unwrap_or("");
        let got_kind = conv.get("kind").and_then(Value::as_str).unwrap_or("");
        if want_kind != got_kind {
            return Err(bad(format!(
                "invalid kind (expected {want_kind}, received {got_kind})"
            )));
        }
        out[i] = restore_meta(&out[i], conv);
    }
    Ok(out)
}

/// Upstream's `restoreObjectMeta`: a conversion webhook may change only labels and
/// annotations; everything else in metadata is kept from the original.
fn restore_meta(original: &Value, mut converted: Value) -> Value {
    let mut meta = original
        .get("metadata")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let conv_meta = converted.get("metadata").and_then(Value::as_object);
    for k in ["labels", "annotations"] {
        match conv_meta.and_then(|m| m.get(k)) {
            Some(v) if !v.is_null() => {
                meta.insert(k.into(), v.clone());
            }
            _ => {
                meta.remove(k);
            }
        }
    }
    if let Some(o) = converted.as_object_mut() {
        o.insert("metadata".into(), Value::Object(meta));
    }
    converted
}
