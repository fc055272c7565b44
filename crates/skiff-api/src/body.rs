//! Request bodies by Content-Type: JSON (also when the header is missing), YAML, protobuf.

use serde_json::Value;

use crate::ApiError;

/// Decodes a request body. Malformed input is a 400 with a message naming the problem
/// (line/column for JSON and YAML); an unknown media type is a 415.
///
/// Media types: `application/json` (and a missing header, which `kubectl scale
/// --current-replicas` sends), any `…+json` suffix (patch types), `application/yaml` and
/// `…+yaml` (`apply-patch+yaml`), `application/vnd.kubernetes.protobuf`. Parameters such as
/// `;charset=utf-8` are ignored. An empty (or all-whitespace) JSON/YAML body decodes to `Null`
/// so the caller decides whether a body was required (DELETE bodies are optional).
pub fn decode_body(content_type: Option<&str>, bytes: &[u8]) -> Result<Value, ApiError> {
    let media = content_type
        .map(|ct| {
            ct.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    match media.as_str() {
        "" | "application/json" | "*/*" => json(bytes),
        m if m.ends_with("+json") => json(bytes),
        "application/yaml" | "application/x-yaml" | "text/yaml" => yaml(bytes),
        m if m.ends_with("+yaml") => yaml(bytes),
        "application/vnd.kubernetes.protobuf" => crate::protobuf::decode(bytes),
        _ => Err(ApiError::unsupported_media_type(content_type.unwrap_or(""))),
    }
}

fn is_blank(bytes: &[u8]) -> bool {
    bytes.iter().all(u8::is_ascii_whitespace)
}

fn json(bytes: &[u8]) -> Result<Value, ApiError> {
    if is_blank(bytes) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(bytes).map_err(|e| {
        // serde_json's message already ends with "at line L column C".
        let what = match e.classify() {
            serde_json::error::Category::Eof => "unexpected end of JSON input",
            _ => "invalid JSON",
        };
        ApiError::bad_request(format!(
            "couldn't get version/kind; json parse error: {what}: {e}"
        ))
    })
}

fn yaml(bytes: &[u8]) -> Result<Value, ApiError> {
    if is_blank(bytes) {
        return Ok(Value::Null);
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|e| ApiError::bad_request(format!("error decoding YAML: invalid UTF-8: {e}")))?;
    // serde_norway's messages carry "at line L column C".
    serde_norway::from_str::<Value>(text)
        .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))
}
