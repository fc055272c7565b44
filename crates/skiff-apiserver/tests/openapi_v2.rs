//! `/openapi/v2`: content negotiation, caching headers, the gnostic protobuf encoding, and the
//! real kubectl using it (`kind: List` files, `explain --output=plaintext-openapiv2`).

mod common;

use std::io::Write as _;
use std::process::{Command, Stdio};

use http_body_util::BodyExt;
use prost::Message as _;
use skiff_api::openapi::gnostic;

use common::start;

/// GET `path` with `accept` (and `If-None-Match`); (status, headers, body).
async fn get(
    client: &kube::Client,
    path: &str,
    accept: &str,
    if_none_match: Option<&str>,
) -> (u16, http::HeaderMap, Vec<u8>) {
    let mut req = http::Request::builder().method("GET").uri(path);
    if !accept.is_empty() {
        req = req.header("accept", accept);
    }
    if let Some(tag) = if_none_match {
        req = req.header("if-none-match", tag);
    }
    let req = req.body(kube::client::Body::empty()).expect("request");
    let resp = client.send(req).await.expect("send");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
        .to_vec();
    (status, headers, body)
}

/// Runs kubectl against the test server with its own cache dir; (success, stdout, stderr).
fn kubectl(
    kubeconfig: &std::path::Path,
    cache: &std::path::Path,
    args: &[&str],
    stdin: &str,
) -> (bool, String, String) {
    let mut child = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--cache-dir")
        .arg(cache)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn v2_negotiates_json_and_protobuf_with_etags() {
    let s = start().await;
    let c = &s.client;
    let (code, h, json_body) = get(c, "/openapi/v2", "application/json", None).await;
    assert_eq!(code, 200);
    assert_eq!(h["content-type"], "application/json");
    assert_eq!(h["vary"], "Accept");
    let doc: serde_json::Value = serde_json::from_slice(&json_body).expect("json");
    assert_eq!(doc["swagger"], "2.0");
    assert!(doc["definitions"]["io.k8s.api.apps.v1.Deployment"].is_object());
    let etag = h["etag"].to_str().expect("etag").to_string();
    let (code, _, body) = get(c, "/openapi/v2", "application/json", Some(&etag)).await;
    assert_eq!((code, body.len()), (304, 0));

    // What kubectl sends.
    let (code, h, pb) = get(
        c,
        "/openapi/v2?timeout=32s",
        "application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
        None,
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(
        h["content-type"],
        "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
    );
    assert_ne!(
        h["etag"].to_str().unwrap(),
        etag,
        "one ETag per representation"
    );
    let decoded = gnostic::Document::decode(pb.as_slice()).expect("gnostic Document");
    assert_eq!(decoded.swagger, "2.0");
    let defs = decoded
        .definitions
        .expect("definitions")
        .additional_properties;
    assert_eq!(
        defs.len(),
        doc["definitions"].as_object().unwrap().len(),
        "every definition encoded"
    );
    // q values and wildcards; anything else is 406.
    let (_, h, _) = get(
        c,
        "/openapi/v2",
        "application/json;q=0.5, application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
        None,
    )
    .await;
    assert_eq!(
        h["content-type"],
        "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
    );
    let (code, h, _) = get(c, "/openapi/v2", "", None).await;
    assert_eq!(
        (code, h["content-type"].to_str().unwrap()),
        (200, "application/json")
    );
    let (code, _, _) = get(c, "/openapi/v2", "text/html", None).await;
    assert_eq!(code, 406);
}

#[tokio::test]
async fn kubectl_uses_v2_for_lists_and_explain() {
    let s = start().await;
    let kc = s.kubeconfig.clone();
    let cache = tempfile::tempdir().expect("cache dir");
    let cache_path = cache.path().to_path_buf();
    tokio::task::spawn_blocking(move || {
        // `kind: List` files are validated client-side against /openapi/v2 (protobuf).
        let list = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata:\n    name: l1\n  data:\n    a: b\n- apiVersion: v1\n  kind: Secret\n  metadata:\n    name: l2\n  stringData:\n    k: v\n";
        let (ok, out, err) = kubectl(&kc, &cache_path, &["apply", "-f", "-", "-v=6"], list);
        assert!(ok, "{err}");
        assert!(out.contains("configmap/l1 created"), "{out}");
        assert!(out.contains("secret/l2 created"), "{out}");
        assert!(err.contains("/openapi/v2?timeout=32s\" status=\"200 OK\""), "{err}");

        let cml = "apiVersion: v1\nkind: ConfigMapList\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata:\n    name: l5\n  bogus: 2\n";
        // `kind: <Kind>List` files: their items are validated against v2 too.
        let (ok, _, err) = kubectl(&kc, &cache_path, &["apply", "-f", "-"], cml);
        assert!(!ok);
        assert!(
            err.contains("error validating data: ValidationError(ConfigMapList.items[0]): unknown field \"bogus\" in io.k8s.api.core.v1.ConfigMap"),
            "{err}"
        );
        let roles = "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleList\nitems:\n- apiVersion: rbac.authorization.k8s.io/v1\n  kind: Role\n  metadata:\n    name: r1\n  rules:\n  - apiGroups: [\"\"]\n    resources: [pods]\n    verbs: [get]\n";
        let (ok, out, err) = kubectl(&kc, &cache_path, &["apply", "-f", "-"], roles);
        assert!(ok, "{err}");
        assert!(out.contains("role.rbac.authorization.k8s.io/r1 created"), "{out}");

        // Unknown fields in a List item: upstream's client-side (v2 schema) error.
        let bad = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata:\n    name: l3\n  bogus: 1\n";
        let (ok, _, err) = kubectl(&kc, &cache_path, &["apply", "-f", "-"], bad);
        assert!(!ok);
        assert!(
            err.contains("error validating data: ValidationError(ConfigMap): unknown field \"bogus\" in io.k8s.api.core.v1.ConfigMap"),
            "{err}"
        );

        // A single object goes to the server with fieldValidation=Strict.
        let one = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: l4\nbogus: 1\n";
        let (ok, _, err) = kubectl(
            &kc,
            &cache_path,
            &["create", "--validate=strict", "-f", "-"],
            one,
        );
        assert!(!ok);
        assert_eq!(
            err.trim(),
            "Error from server (BadRequest): error when creating \"STDIN\": ConfigMap in version \"v1\" cannot be handled as a ConfigMap: strict decoding error: unknown field \"bogus\""
        );

        let (ok, out, err) = kubectl(
            &kc,
            &cache_path,
            &["explain", "deployment.spec", "--output=plaintext-openapiv2"],
            "",
        );
        assert!(ok, "{err}");
        assert!(out.contains("KIND:     Deployment"), "{out}");
        assert!(out.contains("VERSION:  apps/v1"), "{out}");
        assert!(out.contains("RESOURCE: spec <Object>"), "{out}");
        assert!(out.contains("template\t<Object> -required-"), "{out}");

        let (ok, out, err) = kubectl(
            &kc,
            &cache_path,
            &["explain", "pods.spec.containers.ports", "--output=plaintext-openapiv2"],
            "",
        );
        assert!(ok, "{err}");
        assert!(out.contains("RESOURCE: ports <[]Object>"), "{out}");
        assert!(out.contains("containerPort\t<integer> -required-"), "{out}");
    })
    .await
    .unwrap();
}

/// A Widget kind (`example.com/v1`, namespaced, status and scale).
fn widget() -> skiff_api::openapi::CustomKind {
    skiff_api::openapi::CustomKind {
        info: skiff_api::ResourceInfo {
            group: "example.com",
            version: "v1",
            kind: "Widget",
            list_kind: "WidgetList",
            plural: "widgets",
            singular: "widget",
            namespaced: true,
            short_names: &[],
            categories: &[],
            verbs: &[
                "create",
                "delete",
                "deletecollection",
                "get",
                "list",
                "patch",
                "update",
                "watch",
            ],
            subresources: &["status", "scale"],
        },
        schema: serde_json::json!({
            "type": "object",
            "description": "Widget is a test kind.",
            "properties": {
                "spec": {
                    "type": "object",
                    "description": "What the widget should be.",
                    "required": ["size"],
                    "properties": {
                        "size": {"type": "integer", "description": "How big the widget is."},
                        "colour": {"type": "string", "nullable": true, "description": "Its colour."},
                        "port": {"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}]},
                        "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                    },
                },
                "status": {"type": "object", "properties": {"replicas": {"type": "integer"}}},
            },
        }),
    }
}

/// A plain-HTTP stand-in for the API server that serves only discovery and the OpenAPI
/// documents for the built-ins plus `custom` — what kubectl reads for `explain` and
/// client-side validation — so kubectl's parsers are checked on custom kinds directly.
async fn openapi_only_server(
    custom: Vec<skiff_api::openapi::CustomKind>,
) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    use axum::response::IntoResponse;
    let custom = std::sync::Arc::new(custom);
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let custom = custom.clone();
        async move {
            let path = req.uri().path().to_string();
            let json = |v: serde_json::Value| {
                ([("content-type", "application/json")], v.to_string()).into_response()
            };
            match path.as_str() {
                "/api" => json(serde_json::json!({"kind": "APIVersions", "versions": ["v1"],
                    "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]})),
                "/apis" => json(serde_json::json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [{
                    "name": "example.com",
                    "versions": [{"groupVersion": "example.com/v1", "version": "v1"}],
                    "preferredVersion": {"groupVersion": "example.com/v1", "version": "v1"}}]})),
                "/api/v1" => json(serde_json::json!({"kind": "APIResourceList", "groupVersion": "v1", "resources": []})),
                "/apis/example.com/v1" => json(serde_json::json!({"kind": "APIResourceList", "apiVersion": "v1",
                    "groupVersion": "example.com/v1", "resources": [
                    {"name": "widgets", "singularName": "widget", "namespaced": true, "kind": "Widget",
                     "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]},
                    {"name": "widgets/status", "singularName": "", "namespaced": true, "kind": "Widget", "verbs": ["get", "patch", "update"]}]})),
                "/openapi/v3" => json(skiff_api::openapi::v3_index_with(&custom)),
                "/openapi/v2" => (
                    [("content-type", "application/com.github.proto-openapi.spec.v2.v1.0+protobuf")],
                    skiff_api::openapi::v2_protobuf(&skiff_api::openapi::v2_with(&custom)),
                )
                    .into_response(),
                p => match p
                    .strip_prefix("/openapi/v3/")
                    .and_then(|gv| skiff_api::openapi::v3_document_with(gv, &custom))
                {
                    Some(doc) => json(doc),
                    None => (http::StatusCode::NOT_FOUND, "not found").into_response(),
                },
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, task)
}

#[tokio::test]
async fn kubectl_explains_and_validates_custom_kinds_from_our_documents() {
    let (addr, task) = openapi_only_server(vec![widget()]).await;
    let dir = tempfile::tempdir().expect("dir");
    let kc = dir.path().join("kubeconfig");
    std::fs::write(
        &kc,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://{addr}\n\
             contexts:\n- name: c\n  context:\n    cluster: c\n    user: u\n    namespace: default\n\
             current-context: c\nusers:\n- name: u\n  user: {{}}\n"
        ),
    )
    .expect("kubeconfig");
    let cache = dir.path().join("cache");
    tokio::task::spawn_blocking(move || {
        // OpenAPI v3 (kubectl's default explain).
        let (ok, out, err) = kubectl(&kc, &cache, &["explain", "widgets"], "");
        assert!(ok, "{err}");
        assert!(out.contains("GROUP:      example.com"), "{out}");
        assert!(out.contains("KIND:       Widget"), "{out}");
        assert!(out.contains("Widget is a test kind."), "{out}");
        assert!(out.contains("metadata\t<ObjectMeta>"), "{out}");
        assert!(out.contains("spec\t<Object>"), "{out}");
        let (ok, out, err) = kubectl(&kc, &cache, &["explain", "widgets.spec"], "");
        assert!(ok, "{err}");
        assert!(out.contains("size\t<integer> -required-"), "{out}");
        assert!(out.contains("How big the widget is."), "{out}");

        // OpenAPI v2.
        let (ok, out, err) = kubectl(
            &kc,
            &cache,
            &["explain", "widgets.spec", "--output=plaintext-openapiv2"],
            "",
        );
        assert!(ok, "{err}");
        assert!(out.contains("KIND:     Widget"), "{out}");
        assert!(out.contains("size\t<integer> -required-"), "{out}");
        let (ok, out, err) = kubectl(
            &kc,
            &cache,
            &["explain", "widgets.metadata.name", "--output=plaintext-openapiv2"],
            "",
        );
        assert!(ok, "{err}");
        assert!(out.contains("FIELD:    name <string>"), "{out}");

        // Client-side validation of a List against the v2 schema of the custom kind.
        let list = |spec: &str| {
            format!(
                "apiVersion: v1\nkind: List\nitems:\n- apiVersion: example.com/v1\n  kind: Widget\n  \
                 metadata:\n    name: w1\n  spec:\n{spec}"
            )
        };
        let good = list("    size: 3\n    colour: null\n    port: http\n    extra:\n      anything: 1\n");
        let (ok, out, err) = kubectl(&kc, &cache, &["create", "--dry-run=client", "-f", "-"], &good);
        assert!(ok, "{err}");
        assert!(out.contains("widget.example.com/w1 created (dry run)"), "{out}");
        let bad = list("    size: 3\n    sise: 4\n");
        let (ok, _, err) = kubectl(&kc, &cache, &["create", "--dry-run=client", "-f", "-"], &bad);
        assert!(!ok);
        assert!(
            err.contains("ValidationError(Widget.spec): unknown field \"sise\" in com.example.v1.Widget.spec"),
            "{err}"
        );
        let missing = list("    colour: red\n");
        let (ok, _, err) = kubectl(&kc, &cache, &["create", "--dry-run=client", "-f", "-"], &missing);
        assert!(!ok);
        assert!(
            err.contains("ValidationError(Widget.spec): missing required field \"size\" in com.example.v1.Widget.spec"),
            "{err}"
        );
    })
    .await
    .unwrap();
    task.abort();
}
