//! Ingress through the API server: the DefaultIngressClass admission plugin and validation.

mod common;

use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::api::{Api, PostParams};
use serde_json::json;

fn ingress(name: &str, class: Option<&str>) -> Ingress {
    let mut spec = json!({"defaultBackend": {"service": {"name": "web", "port": {"number": 80}}}});
    if let Some(c) = class {
        spec["ingressClassName"] = json!(c);
    }
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap()
}

fn class(name: &str, default: bool) -> IngressClass {
    let mut meta = json!({"name": name});
    if default {
        meta["annotations"] = json!({"ingressclass.kubernetes.io/is-default-class": "true"});
    }
    serde_json::from_value(json!({"metadata": meta, "spec": {"controller": "example.com/ingress"}}))
        .unwrap()
}

fn class_of(i: &Ingress) -> Option<String> {
    i.spec.as_ref().and_then(|s| s.ingress_class_name.clone())
}

#[tokio::test]
async fn default_ingress_class_is_assigned_on_create() {
    let s = common::start().await;
    let classes: Api<IngressClass> = Api::all(s.client.clone());
    let ings: Api<Ingress> = Api::namespaced(s.client.clone(), "default");
    let pp = PostParams::default();

    // No default class: the Ingress stays without one.
    let a = ings.create(&pp, &ingress("a", None)).await.unwrap();
    assert_eq!(class_of(&a), None);

    classes.create(&pp, &class("plain", false)).await.unwrap();
    classes.create(&pp, &class("main", true)).await.unwrap();
    let b = ings.create(&pp, &ingress("b", None)).await.unwrap();
    assert_eq!(class_of(&b).as_deref(), Some("main"));
    // An explicit class is kept.
    let c = ings
        .create(&pp, &ingress("c", Some("plain")))
        .await
        .unwrap();
    assert_eq!(class_of(&c).as_deref(), Some("plain"));
    // Updates never assign one.
    let mut a2 = ings.get("a").await.unwrap();
    a2.metadata.labels = Some([("x".to_string(), "y".to_string())].into());
    let a2 = ings.replace("a", &pp, &a2).await.unwrap();
    assert_eq!(class_of(&a2), None);

    // Validation: k8s-openapi always sends `pathType` (empty here), which upstream refuses as
    // unsupported (an absent one is "Required", see skiff-api's kinds_networking test).
    let bad: Ingress = serde_json::from_value(json!({"metadata": {"name": "bad"}, "spec": {"rules": [
        {"http": {"paths": [{"path": "/", "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}
    ]}}))
    .unwrap();
    let err = ings.create(&pp, &bad).await.unwrap_err();
    assert_eq!(common::status_code(&err), Some(422));
    assert!(
        err.to_string()
            .contains("spec.rules[0].http.paths[0].pathType: Unsupported value: \"\": supported values: \"Exact\", \"ImplementationSpecific\", \"Prefix\""),
        "{err}"
    );
}
