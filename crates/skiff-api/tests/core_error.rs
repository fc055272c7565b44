//! Status JSON shapes and wording of `ApiError`.

use serde_json::json;
use skiff_api::{ApiError, Cause};

#[test]
fn not_found_matches_upstream_status() {
    let e = ApiError::not_found("apps", "deployments", "nope");
    assert_eq!(e.code, 404);
    assert_eq!(
        e.to_status(),
        json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
               "message":"deployments.apps \"nope\" not found","reason":"NotFound",
               "details":{"name":"nope","group":"apps","kind":"deployments"},"code":404})
    );
}

#[test]
fn core_group_is_omitted() {
    let e = ApiError::not_found("", "pods", "p");
    assert_eq!(e.message, "pods \"p\" not found");
    assert_eq!(e.to_status()["details"], json!({"name":"p","kind":"pods"}));
}

#[test]
fn already_exists_and_conflict() {
    let e = ApiError::already_exists("apps", "deployments", "web");
    assert_eq!((e.code, e.reason.as_str()), (409, "AlreadyExists"));
    assert_eq!(e.message, "deployments.apps \"web\" already exists");
    let c = ApiError::conflict(
        "apps",
        "deployments",
        "web",
        "the object has been modified; please apply your changes to the latest version and try again",
    );
    assert_eq!((c.code, c.reason.as_str()), (409, "Conflict"));
    assert_eq!(c.message, "Operation cannot be fulfilled on deployments.apps \"web\": the object has been modified; please apply your changes to the latest version and try again");
}

#[test]
fn invalid_single_and_multiple_causes() {
    let req = Cause {
        reason: "FieldValueRequired".into(),
        message: "Required value".into(),
        field: "spec.selector".into(),
    };
    let e = ApiError::invalid("apps", "Deployment", "noselector", vec![req.clone()]);
    assert_eq!(e.code, 422);
    assert_eq!(
        e.message,
        "Deployment.apps \"noselector\" is invalid: spec.selector: Required value"
    );
    assert_eq!(
        e.to_status()["details"],
        json!({"name":"noselector","group":"apps","kind":"Deployment",
               "causes":[{"reason":"FieldValueRequired","message":"Required value","field":"spec.selector"}]})
    );
    let other = Cause {
        reason: "FieldValueInvalid".into(),
        message: "Invalid value: -1: must be greater than or equal to 0".into(),
        field: "spec.replicas".into(),
    };
    let e = ApiError::invalid("", "Pod", "x", vec![req, other]);
    assert_eq!(e.message, "Pod \"x\" is invalid: [spec.selector: Required value, spec.replicas: Invalid value: -1: must be greater than or equal to 0]");
    assert!(e.to_status()["details"].get("group").is_none());
}

#[test]
fn simple_reasons_and_codes() {
    let cases = [
        (ApiError::bad_request("bad"), 400, "BadRequest", "bad"),
        (
            ApiError::unauthorized(),
            401,
            "Unauthorized",
            "Unauthorized",
        ),
        (ApiError::forbidden("no"), 403, "Forbidden", "no"),
        (
            ApiError::method_not_allowed("m"),
            405,
            "MethodNotAllowed",
            "m",
        ),
        (
            ApiError::expired("too old resource version: 5 (120)"),
            410,
            "Expired",
            "too old resource version: 5 (120)",
        ),
        (
            ApiError::too_large(3145728),
            413,
            "RequestEntityTooLarge",
            "Request entity too large: limit is 3145728",
        ),
        (
            ApiError::internal("boom"),
            500,
            "InternalError",
            "Internal error occurred: boom",
        ),
    ];
    for (e, code, reason, message) in cases {
        let st = e.to_status();
        assert_eq!(st["code"], json!(code));
        assert_eq!(st["reason"], json!(reason));
        assert_eq!(st["message"], json!(message));
        assert_eq!(st["status"], json!("Failure"));
    }
    let e = ApiError::unsupported_media_type("text/plain");
    assert_eq!((e.code, e.reason.as_str()), (415, "UnsupportedMediaType"));
    assert!(e
        .message
        .starts_with("the body of the request was in an unknown format"));
}

/// The bytes kube-apiserver writes for an AlreadyExists error (the Python client's
/// multi-conflict e2e test compares them verbatim).
#[test]
fn status_bytes_match_upstream_order_and_newline() {
    let e = ApiError::already_exists("apps", "deployments", "triple-nginx");
    assert_eq!(
        String::from_utf8(e.to_status_bytes()).unwrap(),
        "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\
         \"message\":\"deployments.apps \\\"triple-nginx\\\" already exists\",\
         \"reason\":\"AlreadyExists\",\"details\":{\"name\":\"triple-nginx\",\"group\":\"apps\",\
         \"kind\":\"deployments\"},\"code\":409}\n"
    );
    let e = ApiError::already_exists("", "services", "mock-2");
    assert_eq!(
        String::from_utf8(e.to_status_bytes()).unwrap(),
        "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\
         \"message\":\"services \\\"mock-2\\\" already exists\",\"reason\":\"AlreadyExists\",\
         \"details\":{\"name\":\"mock-2\",\"kind\":\"services\"},\"code\":409}\n"
    );
    // Causes keep reason, message, field order.
    let e = ApiError::invalid(
        "",
        "Pod",
        "p",
        vec![Cause {
            reason: "FieldValueRequired".into(),
            message: "Required value".into(),
            field: "spec.containers".into(),
        }],
    );
    let text = String::from_utf8(e.to_status_bytes()).unwrap();
    assert!(
        text.contains(
            "\"details\":{\"name\":\"p\",\"kind\":\"Pod\",\"causes\":[{\"reason\":\"FieldValueRequired\",\
             \"message\":\"Required value\",\"field\":\"spec.containers\"}]},\"code\":422}\n"
        ),
        "{text}"
    );
}
