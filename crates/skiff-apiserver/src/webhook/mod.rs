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

/// The first review version upstream knows in the order the configuration lists them
/// (`v1` when none is listed).
pub(crate) fn review_version<'a>(listed: impl IntoIterator<Item = &'a str>) -> &'static str {
    listed
        .into_iter()
        .find_map(|v| match v {
            "v1" => Some("v1"),
            "v1beta1" => Some("v1beta1"),
            _ => None,
        })
        .unwrap_or("v1")
}

/// Converts `objects` (all of one CRD, at their stored versions) to `desired_api_version`
/// through the CRD's conversion webhook (`spec.conversion.webhook`). One object is converted
/// as upstream converts a single object, several as a list (their error texts differ).
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
    let single = objects.len() == 1;
    // Upstream names the converted value's kind: the object's, or its list's.
    let what = if single {
        gvk_of(&objects[first])
    } else {
        format!("{}List", gvk_of(&objects[first]))
    };
    let failed =
        |why: String| ApiError::internal(format!("conversion webhook for {what} failed: {why}"));
    let webhook = crd
        .pointer("/spec/conversion/webhook")
        .filter(|w| w.is_object())
        .ok_or_else(|| failed("spec.conversion.webhook is not set".into()))?;
    let cc = webhook.get("clientConfig").cloned().unwrap_or(json!({}));
    let listed = webhook
        .get("conversionReviewVersions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str);
    let v1 = review_version(listed) == "v1";
    let api_version = if v1 {
        "apiextensions.k8s.io/v1"
    } else {
        "apiextensions.k8s.io/v1beta1"
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
    let resolve = client::resolve(st, &cc, CONVERSION_TIMEOUT.as_secs());
    let target = tokio::time::timeout(CONVERSION_TIMEOUT, resolve)
        .await
        .unwrap_or_else(|_| Err("context deadline exceeded".into()))
        .map_err(failed)?;
    let bytes = client
        .post(&target, body, CONVERSION_TIMEOUT)
        .await
        .map_err(failed)?;
    let resp: Value = serde_json::from_slice(&bytes).map_err(|e| failed(e.to_string()))?;
    let got_av = resp.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let got_kind = resp.get("kind").and_then(Value::as_str).unwrap_or("");
    // v1beta1 answers were never checked for their kind and uid (upstream keeps that).
    if v1 && (got_av != api_version || got_kind != "ConversionReview") {
        return Err(failed(format!(
            "expected webhook response of {api_version}, Kind=ConversionReview, got {got_av}, Kind={got_kind}"
        )));
    }
    let r = resp
        .get("response")
        .filter(|r| r.is_object())
        .ok_or_else(|| failed("no response provided".into()))?;
    let got_uid = r.get("uid").and_then(Value::as_str).unwrap_or("");
    if v1 && got_uid != uid {
        return Err(failed(format!(
            "expected response.uid={uid:?}, got {got_uid:?}"
        )));
    }
    let result = r.get("result").cloned().unwrap_or(json!({}));
    let status = result.get("status").and_then(Value::as_str).unwrap_or("");
    if status != "Success" {
        let msg = result.get("message").and_then(Value::as_str).unwrap_or("");
        return Err(failed(if msg.is_empty() {
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
        // Upstream's list path counts from 1 here (it reports after advancing its index).
        let at = |why: String| {
            ApiError::internal(if single {
                format!("conversion webhook for {what} returned invalid object at index 0: {why}")
            } else {
                format!(
                    "conversion webhook for {what} returned invalid converted object at index {}: {why}",
                    n + 1
                )
            })
        };
        let got = conv.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        if got != desired_api_version {
            return Err(at(format!(
                "invalid groupVersion (expected {desired_api_version}, received {got})"
            )));
        }
        let want_kind = out[i].get("kind").and_then(Value::as_str).unwrap_or("");
        let got_kind = conv.get("kind").and_then(Value::as_str).unwrap_or("");
        if want_kind != got_kind {
            return Err(at(format!(
                "invalid kind (expected {want_kind}, received {got_kind})"
            )));
        }
        if let Err(why) = same_identity(&out[i], &conv) {
            return Err(ApiError::internal(if single {
                format!("conversion webhook for {what} returned invalid object: {why}")
            } else {
                format!(
                    "conversion webhook for {what} returned invalid converted object at index {}: {why}",
                    n + 1
                )
            }));
        }
        out[i] = restore_meta(&out[i], conv).map_err(|why| {
            ApiError::internal(if single {
                format!("conversion webhook for {what} returned invalid metadata: {why}")
            } else {
                format!(
                    "conversion webhook for {what} returned invalid metadata in object at index {}: {why}",
                    n + 1
                )
            })
        })?;
    }
    Ok(out)
}

/// Upstream's `validateConvertedObject`: name, namespace and uid stay.
fn same_identity(original: &Value, converted: &Value) -> Result<(), String> {
    let m = |o: &Value, k: &str| {
        o.pointer(&format!("/metadata/{k}"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    for (k, what) in [("name", "name"), ("namespace", "namespace"), ("uid", "UID")] {
        let (e, a) = (m(original, k), m(converted, k));
        if e != a {
            return Err(format!("must have the same {what}: {e} != {a}"));
        }
    }
    Ok(())
}

/// Upstream's `restoreObjectMeta`: a conversion webhook may change only labels and
/// annotations (string maps); everything else in metadata is kept from the original.
fn restore_meta(original: &Value, mut converted: Value) -> Result<Value, String> {
    let conv_meta = match converted.get("metadata") {
        Some(Value::Object(m)) => m.clone(),
        Some(_) => return Err("invalid metadata in converted object".into()),
        None => return Err("missing metadata in converted object".into()),
    };
    let mut meta = original
        .get("metadata")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    for k in ["labels", "annotations"] {
        match conv_meta.get(k) {
            None | Some(Value::Null) => {
                meta.remove(k);
            }
            Some(Value::Object(m)) => {
                if let Some((key, _)) = m.iter().find(|(_, v)| !v.is_string()) {
                    return Err(format!(
                        "metadata.{k}[{key}] must be a string in converted object"
                    ));
                }
                meta.insert(k.into(), Value::Object(m.clone()));
            }
            Some(_) => return Err(format!("invalid metadata.{k} in converted object")),
        }
    }
    if let Some(o) = converted.as_object_mut() {
        o.insert("metadata".into(), Value::Object(meta));
    }
    Ok(converted)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::extract::Path;
    use axum::routing::post;
    use axum::{Json, Router};
    use base64::Engine;
    use hyper_util::rt::TokioIo;

    use super::*;

    /// A ConversionReview server on 127.0.0.1: `/ok` converts (and changes a label, kept, and
    /// the generation, undone), `/rename`, `/bad-uid`, `/short` and `/fail` answer wrongly.
    async fn converter() -> (u16, String) {
        let ca_key = rcgen::KeyPair::generate().expect("key");
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).expect("ca");
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let key = rcgen::KeyPair::generate().expect("key");
        let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
            .expect("params")
            .signed_by(&key, &issuer)
            .expect("leaf");
        let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).expect("key"),
        )
        .expect("tls");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        async fn review(Path(which): Path<String>, Json(body): Json<Value>) -> Json<Value> {
            let req = &body["request"];
            let want = req["desiredAPIVersion"].as_str().unwrap_or("").to_string();
            let mut objs: Vec<Value> = req["objects"].as_array().cloned().unwrap_or_default();
            for o in &mut objs {
                o["apiVersion"] = json!(want);
                o["spec"]["converted"] = json!(true);
                o["metadata"]["generation"] = json!(99);
                o["metadata"]["labels"] = json!({"seen": "yes"});
                if which == "rename" {
                    o["metadata"]["name"] = json!("renamed");
                }
            }
            let mut uid = req["uid"].clone();
            let mut result = json!({"status": "Success"});
            match which.as_str() {
                "bad-uid" => uid = json!("other"),
                "short" => {
                    objs.pop();
                }
                "fail" => result = json!({"status": "Failure", "message": "cannot convert"}),
                _ => {}
            }
            Json(json!({
                "apiVersion": body["apiVersion"], "kind": "ConversionReview",
                "response": {"uid": uid, "convertedObjects": objs, "result": result},
            }))
        }
        let app = Router::new().route("/{which}", post(review));
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let app = app.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = hyper_util::service::TowerToHyperService::new(app);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        let ca_b64 = base64::engine::general_purpose::STANDARD.encode(ca_cert.pem());
        (port, ca_b64)
    }

    /// State on its own store; keep the sender alive for as long as the state is used.
    fn state(dir: &std::path::Path) -> (Arc<AppState>, tokio::sync::watch::Sender<bool>) {
        let store = Arc::new(skiff_store::SqliteStore::open(&dir.join("state.db")).expect("store"));
        let (tx, rx) = tokio::sync::watch::channel(false);
        let tokens = crate::Tokens {
            admin: "admin".into(),
            node: "node".into(),
        };
        (AppState::new(store, tokens, rx), tx)
    }

    fn crd(port: u16, ca: &str, path: &str) -> Value {
        json!({"metadata": {"name": "widgets.example.com"}, "spec": {"conversion": {
            "strategy": "Webhook",
            "webhook": {"conversionReviewVersions": ["v1"],
                        "clientConfig": {"url": format!("https://127.0.0.1:{port}/{path}"), "caBundle": ca}},
        }}})
    }

    fn widget(name: &str, version: &str) -> Value {
        json!({"apiVersion": format!("example.com/{version}"), "kind": "Widget",
               "metadata": {"name": name, "uid": format!("u-{name}")}, "spec": {"size": 1}})
    }

    #[tokio::test]
    async fn conversion_webhook_converts_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (st, _stop) = state(dir.path());
        let (port, ca) = converter().await;
        let objs = vec![widget("a", "v1"), widget("b", "v2"), widget("c", "v1")];
        let out = convert(&st, &crd(port, &ca, "ok"), objs, "example.com/v2")
            .await
            .expect("converted");
        let names: Vec<&str> = out
            .iter()
            .map(|o| o["metadata"]["name"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert!(out.iter().all(|o| o["apiVersion"] == "example.com/v2"));
        // "b" was already at v2: not sent.
        assert_eq!(out[1]["spec"].get("converted"), None);
        assert_eq!(out[0]["spec"]["converted"], true);
        // Only labels and annotations may change.
        assert_eq!(out[2]["metadata"]["uid"], "u-c");
        assert_eq!(out[2]["metadata"].get("generation"), None);
        assert_eq!(out[2]["metadata"]["labels"]["seen"], "yes");
        // One object: the single-object path.
        let one = convert(
            &st,
            &crd(port, &ca, "ok"),
            vec![widget("d", "v1")],
            "example.com/v2",
        )
        .await
        .expect("converted");
        assert_eq!(one[0]["apiVersion"], "example.com/v2");
    }

    #[tokio::test]
    async fn conversion_webhook_errors_follow_upstream() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (st, _stop) = state(dir.path());
        let (port, ca) = converter().await;
        let objs = || vec![widget("a", "v1"), widget("c", "v1")];
        let err = |path: &'static str| {
            let st = st.clone();
            let ca = ca.clone();
            async move {
                convert(&st, &crd(port, &ca, path), objs(), "example.com/v2")
                    .await
                    .expect_err("should fail")
                    .message
            }
        };
        let m = err("bad-uid").await;
        assert!(
            m.starts_with("Internal error occurred: conversion webhook for example.com/v1, Kind=WidgetList failed: expected response.uid="),
            "{m}"
        );
        assert_eq!(
            err("short").await,
            "Internal error occurred: conversion webhook for example.com/v1, Kind=WidgetList returned 1 objects, expected 2"
        );
        assert_eq!(
            err("fail").await,
            "Internal error occurred: conversion webhook for example.com/v1, Kind=WidgetList failed: cannot convert"
        );
        assert_eq!(
            err("rename").await,
            "Internal error occurred: conversion webhook for example.com/v1, Kind=WidgetList returned invalid converted object at index 1: must have the same name: a != renamed"
        );
        // A CA that did not sign the server's certificate.
        let (_, other_ca) = converter().await;
        let m = convert(&st, &crd(port, &other_ca, "ok"), objs(), "example.com/v2")
            .await
            .expect_err("untrusted")
            .message;
        assert!(
            m.contains("conversion webhook for example.com/v1, Kind=WidgetList failed: Post \"https://127.0.0.1:"),
            "{m}"
        );
        assert!(
            m.ends_with(
                "tls: failed to verify certificate: x509: certificate signed by unknown authority"
            ),
            "{m}"
        );
    }
}
