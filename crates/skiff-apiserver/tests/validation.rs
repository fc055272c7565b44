//! Hardening of what the API accepts (issue 10 items 5, 16, 17): endpoint addresses that would
//! let a Service reach the node's loopback or link-local range, Secret.stringData write-only
//! semantics, and map-of-string fields that hold other JSON types. Real HTTPS server, real
//! token, raw bodies and the real kubectl.

mod common;

use std::io::Write as _;
use std::process::{Command, Stdio};

use base64::Engine as _;
use http_body_util::BodyExt;
use serde_json::{json, Value};

use common::start;

/// Sends one request; returns (HTTP status, parsed body).
async fn send(
    client: &kube::Client,
    method: &str,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, Value) {
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", content_type)
        .body(kube::client::Body::from(body))
        .expect("request");
    let resp = client.send(req).await.expect("send");
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn send_json(client: &kube::Client, method: &str, path: &str, body: &Value) -> (u16, Value) {
    let ct = match method {
        "PATCH" => "application/merge-patch+json",
        _ => "application/json",
    };
    send(client, method, path, ct, body.to_string().into_bytes()).await
}

async fn get(client: &kube::Client, path: &str) -> (u16, Value) {
    let req = http::Request::builder()
        .method("GET")
        .uri(path)
        .body(kube::client::Body::empty())
        .expect("request");
    let resp = client.send(req).await.expect("send");
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// The (field, message) pairs of a 422's causes.
fn causes(body: &Value) -> Vec<(String, String)> {
    body["details"]["causes"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|c| {
            (
                c["field"].as_str().unwrap_or("").to_string(),
                c["message"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn assert_cause(body: &Value, field: &str, message: &str) {
    let all = causes(body);
    assert!(
        all.iter().any(|(f, m)| f == field && m == message),
        "no cause {field}: {message} in {all:?}"
    );
}

fn endpoints(name: &str, ips: &[&str]) -> Value {
    let addresses: Vec<Value> = ips.iter().map(|ip| json!({"ip": ip})).collect();
    json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": name},
        "subsets": [{"addresses": addresses, "ports": [{"port": 80}]}]})
}

fn slice(name: &str, family: &str, ips: &[&str]) -> Value {
    let eps: Vec<Value> = ips.iter().map(|ip| json!({"addresses": [ip]})).collect();
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": name}, "addressType": family,
        "ports": [{"port": 80}], "endpoints": eps})
}

const EPS: &str = "/api/v1/namespaces/default/endpoints";
const SLICES: &str = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices";

const LOOPBACK: &str = "may not be in the loopback range (127.0.0.0/8, ::1/128)";
const LINK_LOCAL: &str = "may not be in the link-local range (169.254.0.0/16, fe80::/10)";
const LL_MULTICAST: &str = "may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)";

#[tokio::test]
async fn endpoints_may_not_point_at_loopback_link_local_or_service_ips() {
    let s = start().await;
    let c = &s.client;

    // Every special address is refused with upstream's causes (field path and wording).
    let bad = endpoints(
        "bad",
        &[
            "127.0.0.1",
            "169.254.169.254",
            "0.0.0.0",
            "224.0.0.251",
            "100.65.0.1",
        ],
    );
    let (code, body) = send_json(c, "POST", EPS, &bad).await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(body["reason"], "Invalid", "{body}");
    let f = |j: usize| format!("subsets[0].addresses[{j}].ip");
    assert_cause(
        &body,
        &f(0),
        &format!("Invalid value: \"127.0.0.1\": {LOOPBACK}"),
    );
    assert_cause(
        &body,
        &f(1),
        &format!("Invalid value: \"169.254.169.254\": {LINK_LOCAL}"),
    );
    assert_cause(
        &body,
        &f(2),
        "Invalid value: \"0.0.0.0\": may not be unspecified (0.0.0.0)",
    );
    assert_cause(
        &body,
        &f(3),
        &format!("Invalid value: \"224.0.0.251\": {LL_MULTICAST}"),
    );
    let (code, body) = send_json(c, "POST", EPS, &endpoints("svc-ip", &["100.65.0.1"])).await;
    assert_eq!(code, 422, "{body}");
    assert_cause(
        &body,
        "subsets[0].addresses[0].ip",
        "Invalid value: \"100.65.0.1\": may not be in the service CIDR (100.65.0.0/16)",
    );
    // notReadyAddresses are checked too, and IPv6 loopback / link-local.
    let v6 = json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "v6"},
        "subsets": [{"notReadyAddresses": [{"ip": "::1"}, {"ip": "fe80::1"}, {"ip": "::ffff:127.0.0.2"}]}]});
    let (code, body) = send_json(c, "POST", EPS, &v6).await;
    assert_eq!(code, 422, "{body}");
    assert_cause(
        &body,
        "subsets[0].notReadyAddresses[0].ip",
        &format!("Invalid value: \"::1\": {LOOPBACK}"),
    );
    assert_cause(
        &body,
        "subsets[0].notReadyAddresses[1].ip",
        &format!("Invalid value: \"fe80::1\": {LINK_LOCAL}"),
    );
    assert_cause(
        &body,
        "subsets[0].notReadyAddresses[2].ip",
        &format!("Invalid value: \"::ffff:127.0.0.2\": {LOOPBACK}"),
    );
    assert_eq!(get(c, &format!("{EPS}/bad")).await.0, 404);

    // A pod address is fine; turning it into loopback by update or patch is not.
    let (code, body) = send_json(c, "POST", EPS, &endpoints("good", &["10.1.2.3"])).await;
    assert_eq!(code, 201, "{body}");
    let mut put = body.clone();
    put["subsets"][0]["addresses"][0]["ip"] = json!("127.0.0.1");
    let (code, body) = send_json(c, "PUT", &format!("{EPS}/good"), &put).await;
    assert_eq!(code, 422, "{body}");
    let patch =
        json!({"subsets": [{"addresses": [{"ip": "127.0.0.53"}], "ports": [{"port": 80}]}]});
    let (code, body) = send_json(c, "PATCH", &format!("{EPS}/good"), &patch).await;
    assert_eq!(code, 422, "{body}");
    assert_cause(
        &body,
        "subsets[0].addresses[0].ip",
        &format!("Invalid value: \"127.0.0.53\": {LOOPBACK}"),
    );
    let (_, stored) = get(c, &format!("{EPS}/good")).await;
    assert_eq!(stored["subsets"][0]["addresses"][0]["ip"], "10.1.2.3");

    // EndpointSlices: same rules, upstream's field paths.
    let bad = slice(
        "bad",
        "IPv4",
        &["127.0.0.1", "169.254.1.1", "10.0.0.1", "100.65.3.4"],
    );
    let (code, body) = send_json(c, "POST", SLICES, &bad).await;
    assert_eq!(code, 422, "{body}");
    assert_cause(
        &body,
        "endpoints[0].addresses[0]",
        &format!("Invalid value: \"127.0.0.1\": {LOOPBACK}"),
    );
    assert_cause(
        &body,
        "endpoints[1].addresses[0]",
        &format!("Invalid value: \"169.254.1.1\": {LINK_LOCAL}"),
    );
    assert!(
        !causes(&body)
            .iter()
            .any(|(f, _)| f.starts_with("endpoints[2]")),
        "{body}"
    );
    let (code, body) = send_json(c, "POST", SLICES, &slice("cidr", "IPv4", &["100.65.3.4"])).await;
    assert_eq!(code, 422, "{body}");
    assert_cause(
        &body,
        "endpoints[0].addresses[0]",
        "Invalid value: \"100.65.3.4\": may not be in the service CIDR (100.65.0.0/16)",
    );
    let (code, body) = send_json(
        c,
        "POST",
        SLICES,
        &slice("v6", "IPv6", &["::1", "ff02::fb"]),
    )
    .await;
    assert_eq!(code, 422, "{body}");
    assert_cause(
        &body,
        "endpoints[0].addresses[0]",
        &format!("Invalid value: \"::1\": {LOOPBACK}"),
    );
    assert_cause(
        &body,
        "endpoints[1].addresses[0]",
        &format!("Invalid value: \"ff02::fb\": {LL_MULTICAST}"),
    );
    let (code, body) = send_json(c, "POST", SLICES, &slice("good", "IPv4", &["10.0.0.1"])).await;
    assert_eq!(code, 201, "{body}");
    let patch = json!({"endpoints": [{"addresses": ["127.0.0.1"]}]});
    let (code, body) = send_json(c, "PATCH", &format!("{SLICES}/good"), &patch).await;
    assert_eq!(code, 422, "{body}");
    // FQDN slices carry names, not IPs.
    let fqdn = slice("fqdn", "FQDN", &["db.example.com"]);
    assert_eq!(send_json(c, "POST", SLICES, &fqdn).await.0, 201);
}

const SECRETS: &str = "/api/v1/namespaces/default/secrets";

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[tokio::test]
async fn secret_string_data_is_merged_into_data_and_never_returned() {
    let s = start().await;
    let c = &s.client;
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
        "data": {"user": b64("old"), "keep": b64("k")},
        "stringData": {"user": "admin", "pass": "p@ss"}});
    let (code, created) = send_json(c, "POST", SECRETS, &secret).await;
    assert_eq!(code, 201, "{created}");
    let check = |v: &Value, user: &str, pass: &str| {
        assert!(v.get("stringData").is_none(), "stringData returned: {v}");
        assert_eq!(v["data"]["user"], b64(user), "{v}");
        assert_eq!(v["data"]["pass"], b64(pass), "{v}");
        assert_eq!(v["data"]["keep"], b64("k"), "{v}");
    };
    // stringData wins over data for the same key.
    check(&created, "admin", "p@ss");
    check(&get(c, &format!("{SECRETS}/s")).await.1, "admin", "p@ss");

    // update (PUT)
    let mut put = created.clone();
    put["stringData"] = json!({"pass": "second"});
    let (code, body) = send_json(c, "PUT", &format!("{SECRETS}/s"), &put).await;
    assert_eq!(code, 200, "{body}");
    check(&body, "admin", "second");
    // merge patch
    let patch = json!({"stringData": {"user": "root"}});
    let (code, body) = send_json(c, "PATCH", &format!("{SECRETS}/s"), &patch).await;
    assert_eq!(code, 200, "{body}");
    check(&body, "root", "second");
    // strategic merge patch
    let (code, body) = send(
        c,
        "PATCH",
        &format!("{SECRETS}/s"),
        "application/strategic-merge-patch+json",
        json!({"stringData": {"pass": "third"}})
            .to_string()
            .into_bytes(),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    check(&body, "root", "third");
    // server-side apply, on an existing object and creating one
    let apply = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\nstringData:\n  pass: fourth\n";
    let (code, body) = send(
        c,
        "PATCH",
        &format!("{SECRETS}/s?fieldManager=t&force=true"),
        "application/apply-patch+yaml",
        apply.as_bytes().to_vec(),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    check(&body, "root", "fourth");
    let apply = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s2\nstringData:\n  user: u\n";
    let (code, body) = send(
        c,
        "PATCH",
        &format!("{SECRETS}/s2?fieldManager=t"),
        "application/apply-patch+yaml",
        apply.as_bytes().to_vec(),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    assert!(body.get("stringData").is_none(), "{body}");
    assert_eq!(body["data"]["user"], b64("u"), "{body}");
    check(&get(c, &format!("{SECRETS}/s")).await.1, "root", "fourth");
    // Lists and watches read what is stored: no stringData anywhere.
    let (_, list) = get(c, SECRETS).await;
    for item in list["items"].as_array().unwrap() {
        assert!(item.get("stringData").is_none(), "{item}");
    }
}

const CONFIGMAPS: &str = "/api/v1/namespaces/default/configmaps";

#[tokio::test]
async fn non_string_map_values_are_a_400_like_upstream_decoding() {
    let s = start().await;
    let c = &s.client;
    let expect = |got: (u16, Value), message: &str| {
        let (code, body) = got;
        assert_eq!(code, 400, "{body}");
        assert_eq!(body["reason"], "BadRequest", "{body}");
        assert_eq!(body["message"], message, "{body}");
    };
    let cm_bool = "ConfigMap in version \"v1\" cannot be handled as a ConfigMap: json: cannot \
                   unmarshal bool into Go struct field ConfigMap.data of type string";
    // JSON create
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"},
        "data": {"a": true}});
    expect(send_json(c, "POST", CONFIGMAPS, &cm).await, cm_bool);
    // YAML create
    let yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  a: true\n";
    expect(
        send(c, "POST", CONFIGMAPS, "application/yaml", yaml.into()).await,
        cm_bool,
    );
    // server-side apply creating the object
    expect(
        send(
            c,
            "PATCH",
            &format!("{CONFIGMAPS}/a?fieldManager=t"),
            "application/apply-patch+yaml",
            yaml.into(),
        )
        .await,
        cm_bool,
    );
    assert_eq!(get(c, &format!("{CONFIGMAPS}/a")).await.0, 404);

    // Labels (ObjectMeta), numbers, on an existing object: update, merge patch and apply.
    let ok = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b"},
        "data": {"a": "x"}});
    let (code, created) = send_json(c, "POST", CONFIGMAPS, &ok).await;
    assert_eq!(code, 201, "{created}");
    let mut put = created.clone();
    put["metadata"]["labels"] = json!({"n": 1});
    expect(
        send_json(c, "PUT", &format!("{CONFIGMAPS}/b"), &put).await,
        "ConfigMap in version \"v1\" cannot be handled as a ConfigMap: json: cannot unmarshal \
         number into Go struct field ObjectMeta.metadata.labels of type string",
    );
    expect(
        send_json(
            c,
            "PATCH",
            &format!("{CONFIGMAPS}/b"),
            &json!({"data": {"b": 2}}),
        )
        .await,
        "ConfigMap in version \"v1\" cannot be handled as a ConfigMap: json: cannot unmarshal \
         number into Go struct field ConfigMap.data of type string",
    );
    let apply =
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\n  annotations:\n    x: {y: z}\n";
    expect(
        send(
            c,
            "PATCH",
            &format!("{CONFIGMAPS}/b?fieldManager=t&force=true"),
            "application/apply-patch+yaml",
            apply.into(),
        )
        .await,
        "ConfigMap in version \"v1\" cannot be handled as a ConfigMap: json: cannot unmarshal \
         object into Go struct field ObjectMeta.metadata.annotations of type string",
    );
    // A whole map of the wrong type.
    expect(
        send_json(
            c,
            "PATCH",
            &format!("{CONFIGMAPS}/b"),
            &json!({"data": "text"}),
        )
        .await,
        "ConfigMap in version \"v1\" cannot be handled as a ConfigMap: json: cannot unmarshal \
         string into Go struct field ConfigMap.data of type map[string]string",
    );
    let (_, stored) = get(c, &format!("{CONFIGMAPS}/b")).await;
    assert_eq!(stored["data"], json!({"a": "x"}));
    assert!(stored["metadata"].get("labels").is_none(), "{stored}");

    // Secrets: data ([]byte values) and stringData.
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
        "data": {"a": false}});
    expect(
        send_json(c, "POST", SECRETS, &secret).await,
        "Secret in version \"v1\" cannot be handled as a Secret: json: cannot unmarshal bool \
         into Go struct field Secret.data of type []uint8",
    );
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
        "stringData": {"a": 12}});
    expect(
        send_json(c, "POST", SECRETS, &secret).await,
        "Secret in version \"v1\" cannot be handled as a Secret: json: cannot unmarshal number \
         into Go struct field Secret.stringData of type string",
    );
    // Nested map fields: a pod template's nodeSelector.
    let deploy = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
        "spec": {"selector": {"matchLabels": {"app": "d"}}, "template": {
            "metadata": {"labels": {"app": "d"}},
            "spec": {"nodeSelector": {"disk": true}, "containers": [{"name": "c", "image": "x"}]}}}});
    expect(
        send_json(
            c,
            "POST",
            "/apis/apps/v1/namespaces/default/deployments",
            &deploy,
        )
        .await,
        "Deployment in version \"v1\" cannot be handled as a Deployment: json: cannot unmarshal \
         bool into Go struct field PodSpec.spec.template.spec.nodeSelector of type string",
    );
    // Nulls decode (to the zero value) as upstream; strings stay fine.
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
        "data": {"a": "true"}});
    assert_eq!(send_json(c, "POST", CONFIGMAPS, &cm).await.0, 201);
}

/// Runs kubectl against the test server; (success, stdout, stderr).
fn kubectl(kubeconfig: &std::path::Path, args: &[&str], stdin: &str) -> (bool, String, String) {
    let mut child = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
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
async fn kubectl_sees_upstream_errors_and_write_only_string_data() {
    let s = start().await;
    let kc = s.kubeconfig.clone();
    tokio::task::spawn_blocking(move || {
        let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: flags\ndata:\n  debug: true\n";
        for args in [
            &["apply", "-f", "-"][..],
            &["create", "-f", "-"][..],
            &["apply", "--server-side", "-f", "-"][..],
        ] {
            let (ok, _, err) = kubectl(&kc, args, cm);
            assert!(!ok, "kubectl {args:?} accepted a bool ConfigMap value");
            assert!(
                err.contains("Error from server (BadRequest)")
                    && err.contains(
                        "ConfigMap in version \"v1\" cannot be handled as a ConfigMap: json: \
                         cannot unmarshal bool into Go struct field ConfigMap.data of type string"
                    ),
                "kubectl {args:?}: {err}"
            );
        }
        let ep = "apiVersion: v1\nkind: Endpoints\nmetadata:\n  name: local\nsubsets:\n- addresses:\n  - ip: 127.0.0.1\n  ports:\n  - port: 10250\n";
        let (ok, _, err) = kubectl(&kc, &["apply", "-f", "-"], ep);
        assert!(!ok);
        assert!(
            err.contains("subsets[0].addresses[0].ip: Invalid value: \"127.0.0.1\": may not be in the loopback range (127.0.0.0/8, ::1/128)"),
            "{err}"
        );
        let secret = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: creds\nstringData:\n  token: hunter2\n";
        let (ok, out, err) = kubectl(&kc, &["apply", "-f", "-"], secret);
        assert!(ok, "{out}{err}");
        let (ok, out, err) = kubectl(&kc, &["get", "secret", "creds", "-o", "json"], "");
        assert!(ok, "{err}");
        let v: Value = serde_json::from_str(&out).unwrap();
        assert!(v.get("stringData").is_none(), "{v}");
        assert_eq!(v["data"]["token"], b64("hunter2"));
        // Re-applying a changed stringData updates data (client-side apply patches).
        let secret = secret.replace("hunter2", "hunter3");
        let (ok, out, err) = kubectl(&kc, &["apply", "-f", "-"], &secret);
        assert!(ok, "{out}{err}");
        let (_, out, _) = kubectl(&kc, &["get", "secret", "creds", "-o", "json"], "");
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["data"]["token"], b64("hunter3"), "{v}");
        assert!(v.get("stringData").is_none(), "{v}");
    })
    .await
    .unwrap();
}
