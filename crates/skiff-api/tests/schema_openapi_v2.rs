//! OpenAPI v2 (Swagger 2.0, JSON and gnostic protobuf) and custom kinds in v2/v3.

use serde_json::{json, Value};
use skiff_api::openapi::{v2_with, CustomKind};

#[test]
#[ignore]
fn dump() {
    let doc = v2_with(&[]);
    std::fs::write("/tmp/oa/v2.json", serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    let _ = json!({});
    let _: Option<CustomKind> = None;
    let _: Value = Value::Null;
}
