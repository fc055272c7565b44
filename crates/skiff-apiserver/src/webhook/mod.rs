//! Calling webhooks: admission webhooks (AdmissionReview) and CRD conversion webhooks
//! (ConversionReview) over HTTPS with the configuration's `caBundle`, to a Service or a URL.
//!
//! Interface skeleton: the bodies are filled in on the `i14-webhook` branch.

use serde_json::Value;
use skiff_api::ApiError;

use crate::AppState;

/// Converts `objects` (all of one CRD, at their stored versions) to `desired_api_version`
/// through the CRD's conversion webhook (`spec.conversion.webhook`).
pub(crate) async fn convert(
    _st: &AppState,
    crd: &Value,
    _objects: Vec<Value>,
    desired_api_version: &str,
) -> Result<Vec<Value>, ApiError> {
    let name = crd
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("");
    Err(ApiError::internal(format!(
        "conversion webhook for {name} to {desired_api_version} failed: conversion webhooks are not wired yet"
    )))
}
