//! Validation causes (reason, field, upstream wording) and strict unknown-field detection.

use serde_json::{json, Value};
use skiff_api::resources::by_kind;
use skiff_api::validate::{unknown_fields, validate, validation_causes};
use skiff_api::{Cause, ResourceInfo};

fn info(api_version: &str, kind: &str) -> &'static ResourceInfo {
    by_kind(api_version, kind).expect("served kind")
}

fn causes(
    api_version: &str,
    kind: &str,
    v: &Value,
    old: Option<&Value>,
) -> Vec<(String, String, String)> {
    validation_causes(info(api_version, kind), v, old)
        .into_iter()
        .map(
            |Cause {
                 reason,
                 message,
                 field,
             }| (reason, field, message),
        )
        .collect()
}

fn deployment() -> Value {
    json!({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","namespace":"default","labels":{"app":"web"}},
        "spec":{"replicas":1,"selector":{"matchLabels":{"app":"web"}},
          "template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"name":"web","image":"nginx"}]}}}})
}

#[test]
fn valid_objects_pass() {
    assert!(validate(info("apps/v1", "Deployment"), &deployment(), None).is_ok());
    let ns = json!({"metadata":{"name":"team-a"}});
    assert!(validate(info("v1", "Namespace"), &ns, None).is_ok());
}

#[test]
fn deployment_without_selector_is_422_like_transcript_73g() {
    let mut d = deployment();
    d["metadata"]["name"] = json!("noselector");
    d["spec"].as_object_mut().expect("spec").remove("selector");
    let err = validate(info("apps/v1", "Deployment"), &d, None).expect_err("invalid");
    assert_eq!(err.code, 422);
    assert_eq!(err.reason, "Invalid");
    let details = err.details.expect("details");
    assert_eq!(details["kind"], "Deployment");
    assert_eq!(details["name"], "noselector");
    assert_eq!(
        details["causes"][0],
        json!({"reason":"FieldValueRequired","message":"Required value","field":"spec.selector"})
    );
    assert!(
        err.message.contains("spec.selector: Required value"),
        "{}",
        err.message
    );
}

#[test]
fn selector_must_match_template() {
    let mut d = deployment();
    d["spec"]["selector"] = json!({"matchLabels":{"app":"other"}});
    assert_eq!(
        causes("apps/v1", "Deployment", &d, None),
        vec![(
            "FieldValueInvalid".into(),
            "spec.template.metadata.labels".into(),
            "Invalid value: map[string]string{\"app\":\"web\"}: `selector` does not match template `labels`".into()
        )]
    );
    d["spec"]["selector"] = json!({});
    let c = causes("apps/v1", "Deployment", &d, None);
    assert!(
        c.iter().any(|(_, f, m)| f == "spec.selector"
            && m.ends_with("empty selector is invalid for deployment")),
        "{c:?}"
    );
}

#[test]
fn names_follow_dns_rules() {
    let mut d = deployment();
    d["metadata"]["name"] = json!("Web_1");
    let c = causes("apps/v1", "Deployment", &d, None);
    assert_eq!(c[0].1, "metadata.name");
    assert_eq!(
        c[0].2,
        "Invalid value: \"Web_1\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
    );
    d["metadata"].as_object_mut().expect("meta").remove("name");
    let c = causes("apps/v1", "Deployment", &d, None);
    assert_eq!(
        c[0],
        (
            "FieldValueRequired".into(),
            "metadata.name".into(),
            "Required value: name or generateName is required".into()
        )
    );
    d["metadata"]["generateName"] = json!("web-");
    assert!(causes("apps/v1", "Deployment", &d, None).is_empty());

    let c = causes("v1", "Namespace", &json!({"metadata":{"name":"a.b"}}), None);
    assert!(
        c[0].2
            .contains("a lowercase RFC 1123 label must consist of"),
        "{c:?}"
    );
    let c = causes(
        "v1",
        "Service",
        &json!({"metadata":{"name":"1abc","namespace":"default"},"spec":{"ports":[{"port":80}]}}),
        None,
    );
    assert!(c[0].2.contains("a DNS-1035 label must consist of"), "{c:?}");
}

#[test]
fn labels_and_annotations() {
    let mut d = deployment();
    d["metadata"]["labels"] = json!({"bad key": "v", "ok": "bad value!"});
    d["metadata"]["annotations"] = json!({"a/b/c": "x"});
    let c = causes("apps/v1", "Deployment", &d, None);
    let fields: Vec<&str> = c.iter().map(|(_, f, _)| f.as_str()).collect();
    assert_eq!(
        fields,
        ["metadata.labels", "metadata.labels", "metadata.annotations"],
        "{c:?}"
    );
    assert!(c[0]
        .2
        .starts_with("Invalid value: \"bad key\": name part must consist of"));
    assert!(c[1]
        .2
        .starts_with("Invalid value: \"bad value!\": a valid label must be an empty string"));
}

#[test]
fn containers() {
    let mut d = deployment();
    d["spec"]["template"]["spec"]["containers"] = json!([
        {"name":"a","image":"x","ports":[{"containerPort":0}]},
        {"name":"a"},
    ]);
    let c = causes("apps/v1", "Deployment", &d, None);
    assert!(
        c.contains(&(
            "FieldValueInvalid".into(),
            "spec.template.spec.containers[0].ports[0].containerPort".into(),
            "Invalid value: 0: must be between 1 and 65535, inclusive".into()
        )),
        "{c:?}"
    );
    assert!(
        c.contains(&(
            "FieldValueDuplicate".into(),
            "spec.template.spec.containers[1].name".into(),
            "Duplicate value: \"a\"".into()
        )),
        "{c:?}"
    );
    assert!(
        c.contains(&(
            "FieldValueRequired".into(),
            "spec.template.spec.containers[1].image".into(),
            "Required value".into()
        )),
        "{c:?}"
    );
    d["spec"]["template"]["spec"]["containers"] = json!([]);
    let c = causes("apps/v1", "Deployment", &d, None);
    assert_eq!(
        c,
        vec![(
            "FieldValueRequired".into(),
            "spec.template.spec.containers".into(),
            "Required value".into()
        )]
    );
}

#[test]
fn deployment_selector_is_immutable() {
    let old = deployment();
    let mut new = deployment();
    new["spec"]["selector"] = json!({"matchLabels":{"app":"web","tier":"x"}});
    new["spec"]["template"]["metadata"]["labels"] = json!({"app":"web","tier":"x"});
    let c = causes("apps/v1", "Deployment", &new, Some(&old));
    assert_eq!(c.len(), 1, "{c:?}");
    assert_eq!(c[0].1, "spec.selector");
    assert!(c[0].2.ends_with("field is immutable"));
}

#[test]
fn services() {
    let svc = |spec: Value| json!({"metadata":{"name":"web","namespace":"default"},"spec":spec});
    let c = causes("v1", "Service", &svc(json!({"type":"ClusterIP"})), None);
    assert_eq!(
        c,
        vec![(
            "FieldValueRequired".into(),
            "spec.ports".into(),
            "Required value".into()
        )]
    );
    let c = causes(
        "v1",
        "Service",
        &svc(json!({"type":"NodePort","ports":[{"port":80,"nodePort":80}]})),
        None,
    );
    assert_eq!(c[0].1, "spec.ports[0].nodePort");
    assert_eq!(c[0].2, "Invalid value: 80: provided port is not in the valid range. The range of valid ports is 30000-32767");
    let c = causes(
        "v1",
        "Service",
        &svc(json!({"ports":[{"port":80},{"port":81}]})),
        None,
    );
    assert_eq!(
        c[0],
        (
            "FieldValueRequired".into(),
            "spec.ports[0].name".into(),
            "Required value".into()
        )
    );
    let c = causes(
        "v1",
        "Service",
        &svc(json!({"ports":[{"port":70000}]})),
        None,
    );
    assert_eq!(c[0].1, "spec.ports[0].port");
    let old = json!({"clusterIP":"10.96.0.10","ports":[{"port":80}]});
    let c = causes(
        "v1",
        "Service",
        &svc(json!({"clusterIP":"10.96.0.11","ports":[{"port":80}]})),
        Some(&svc(old.clone())),
    );
    assert_eq!(c[0].1, "spec.clusterIPs[0]");
    assert!(causes(
        "v1",
        "Service",
        &svc(json!({"clusterIP":"10.96.0.10","ports":[{"port":80}]})),
        Some(&svc(old))
    )
    .is_empty());
}

#[test]
fn pod_update_is_mostly_immutable() {
    let pod = |image: &str, restart: &str| {
        json!({"metadata":{"name":"p","namespace":"default"},
        "spec":{"restartPolicy":restart,"containers":[{"name":"c","image":image}]}})
    };
    let old = pod("nginx:1", "Always");
    assert!(causes("v1", "Pod", &pod("nginx:2", "Always"), Some(&old)).is_empty());
    let c = causes("v1", "Pod", &pod("nginx:1", "Never"), Some(&old));
    assert_eq!(c[0].0, "FieldValueForbidden");
    assert_eq!(c[0].1, "spec");
    assert!(c[0]
        .2
        .starts_with("Forbidden: pod updates may not change fields other than"));
}

#[test]
fn config_map_and_secret_keys() {
    let c = causes(
        "v1",
        "ConfigMap",
        &json!({"metadata":{"name":"c","namespace":"default"},"data":{"bad key":"v","..x":"y"}}),
        None,
    );
    assert_eq!(c[0].1, "data[..x]");
    assert_eq!(c[0].2, "Invalid value: \"..x\": must not start with '..'");
    assert_eq!(c[1].1, "data[bad key]");
    assert!(c[1].2.contains("a valid config key must consist of"));
    let c = causes(
        "v1",
        "Secret",
        &json!({"metadata":{"name":"s","namespace":"default"},"type":"kubernetes.io/tls","data":{"tls.crt":"eA=="}}),
        None,
    );
    assert_eq!(
        c,
        vec![(
            "FieldValueRequired".into(),
            "data[tls.key]".into(),
            "Required value".into()
        )]
    );
}

#[test]
fn unknown_fields_like_transcript_73d() {
    let mut d = deployment();
    d["spec"]["replicaz"] = json!(2);
    assert_eq!(
        unknown_fields(info("apps/v1", "Deployment"), &d),
        vec!["spec.replicaz"]
    );
    d["spec"]["template"]["spec"]["containers"][0]["imagee"] = json!("x");
    d["metadata"]["labelz"] = json!({});
    assert_eq!(
        unknown_fields(info("apps/v1", "Deployment"), &d),
        vec![
            "metadata.labelz",
            "spec.replicaz",
            "spec.template.spec.containers[0].imagee"
        ]
    );
    // Maps, int-or-string and quantities are not "unknown".
    let ok = json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","labels":{"anything":"x"}},
        "spec":{"containers":[{"name":"c","image":"i","resources":{"limits":{"cpu":"1"}},
        "readinessProbe":{"httpGet":{"port":"http"}}}]}});
    assert!(unknown_fields(info("v1", "Pod"), &ok).is_empty());
}
