//! Request-body decoding by Content-Type.

use serde_json::json;
use skiff_api::body::decode_body;

#[test]
fn json_with_and_without_content_type() {
    let body = br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"}}"#;
    let want = json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"}});
    assert_eq!(
        decode_body(Some("application/json"), body).expect("json"),
        want
    );
    assert_eq!(decode_body(None, body).expect("no content type"), want);
    assert_eq!(
        decode_body(Some("application/json;charset=utf-8"), body).expect("charset"),
        want
    );
    assert_eq!(
        decode_body(Some("application/merge-patch+json"), body).expect("patch"),
        want
    );
}

#[test]
fn yaml() {
    let body = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\ndata:\n  a: \"1\"\n";
    assert_eq!(
        decode_body(Some("application/yaml"), body).expect("yaml"),
        json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x"},"data":{"a":"1"}})
    );
    assert!(decode_body(Some("application/apply-patch+yaml"), body).is_ok());
}

#[test]
fn protobuf() {
    use base64::Engine as _;
    let body = base64::engine::general_purpose::STANDARD
        .decode("azhzAAoPCgJ2MRIJTmFtZXNwYWNlEh4KFgoGdGVhbS1hEgAaACIAKgAyADgAQgASABoCCgAaACIA")
        .expect("test data");
    let ns = decode_body(Some("application/vnd.kubernetes.protobuf"), &body).expect("pb");
    assert_eq!(ns["metadata"]["name"], "team-a");
}

#[test]
fn malformed_json_is_400_with_position() {
    let err = decode_body(Some("application/json"), b"{\n  \"a\": 1,\n  oops\n}").expect_err("bad");
    assert_eq!(err.code, 400);
    assert_eq!(err.reason, "BadRequest");
    assert!(err.message.contains("line 3 column 3"), "{}", err.message);
    let err = decode_body(None, b"{\"a\": ").expect_err("truncated");
    assert_eq!(err.code, 400);
    assert!(
        err.message.contains("unexpected end of JSON input"),
        "{}",
        err.message
    );
}

#[test]
fn malformed_yaml_is_400_with_position() {
    let err = decode_body(Some("application/yaml"), b"a: b\n  c: [d\n").expect_err("bad");
    assert_eq!(err.code, 400);
    assert!(
        err.message.starts_with("error decoding YAML: "),
        "{}",
        err.message
    );
    assert!(err.message.contains("line"), "{}", err.message);
}

#[test]
fn unknown_media_type_is_415() {
    let err = decode_body(Some("text/plain"), b"hello").expect_err("415");
    assert_eq!(err.code, 415);
    assert_eq!(err.reason, "UnsupportedMediaType");
}

#[test]
fn empty_body_is_null() {
    assert_eq!(
        decode_body(None, b"").expect("empty"),
        serde_json::Value::Null
    );
}
