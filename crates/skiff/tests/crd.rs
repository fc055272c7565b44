//! Custom resources with the real kubectl: apply a CRD and a custom object, printer columns,
//! short names and categories from discovery, client-side apply of a change (kubectl's
//! strategic merge patch is refused with 415 for custom objects and it falls back to a merge
//! patch), `kubectl scale` through the scale subresource, `kubectl delete crd`.

mod common;

use common::cluster::Cluster;

const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.kc.example.com
spec:
  group: kc.example.com
  scope: Namespaced
  names:
    plural: widgets
    singular: widget
    kind: Widget
    shortNames: [wdg]
    categories: [all]
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              replicas: {type: integer}
              color: {type: string, description: The widget's paint.}
          status:
            type: object
            properties:
              replicas: {type: integer}
    subresources:
      status: {}
      scale:
        specReplicasPath: .spec.replicas
        statusReplicasPath: .status.replicas
    additionalPrinterColumns:
    - name: Replicas
      type: integer
      jsonPath: .spec.replicas
    - name: Color
      type: string
      jsonPath: .spec.color
"#;

fn widget(replicas: u32, color: &str) -> String {
    format!(
        "apiVersion: kc.example.com/v1\nkind: Widget\nmetadata:\n  name: w1\nspec:\n  replicas: {replicas}\n  color: {color}\n"
    )
}

#[test]
fn kubectl_drives_custom_resources() {
    let c = Cluster::start_with("100.64.48.0/24".into(), &["--no-agent"]);
    let dir = c.dir.path();
    let crd = dir.join("crd.yaml");
    std::fs::write(&crd, CRD).expect("write");
    let crd = crd.to_string_lossy().into_owned();
    let out = c.ok(&["apply", "-f", &crd]);
    assert!(
        out.contains(
            "customresourcedefinition.apiextensions.k8s.io/widgets.kc.example.com created"
        ),
        "{out}"
    );
    c.ok(&[
        "wait",
        "--for=condition=Established",
        "crd/widgets.kc.example.com",
        "--timeout=10s",
    ]);

    let resources = c.ok(&["api-resources", "--api-group=kc.example.com"]);
    let line: Vec<&str> = resources
        .lines()
        .find(|l| l.starts_with("widgets "))
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        line,
        ["widgets", "wdg", "kc.example.com/v1", "true", "Widget"],
        "{resources}"
    );

    // kubectl explain reads the kind's schema from /openapi/v3, and from /openapi/v2 when asked.
    let explained = c.ok(&["explain", "widgets.spec"]);
    assert!(
        explained.contains("KIND:       Widget")
            && explained.contains("color\t<string>")
            && explained.contains("The widget's paint."),
        "{explained}"
    );
    let v2 = c.ok(&[
        "explain",
        "widgets.spec.color",
        "--output=plaintext-openapiv2",
    ]);
    assert!(v2.contains("The widget's paint."), "{v2}");

    let w = dir.join("widget.yaml");
    std::fs::write(&w, widget(2, "red")).expect("write");
    let w = w.to_string_lossy().into_owned();
    let out = c.ok(&["apply", "-f", &w]);
    assert!(out.contains("widget.kc.example.com/w1 created"), "{out}");

    let table = c.ok(&["get", "widgets"]);
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
    assert_eq!(header, ["NAME", "REPLICAS", "COLOR"], "{table}");
    let row: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
    assert_eq!(row, ["w1", "2", "red"], "{table}");
    assert!(c.ok(&["get", "wdg"]).contains("w1"));
    let all = c.ok(&["get", "all"]);
    assert!(all.contains("widget.kc.example.com/w1"), "{all}");

    // Client-side apply of a change.
    std::fs::write(&w, widget(3, "blue")).expect("write");
    let out = c.ok(&["apply", "-f", &w]);
    assert!(out.contains("widget.kc.example.com/w1 configured"), "{out}");
    assert_eq!(
        c.ok(&[
            "get",
            "widget",
            "w1",
            "-o",
            "jsonpath={.spec.replicas} {.spec.color}"
        ]),
        "3 blue"
    );

    let out = c.ok(&["scale", "widget/w1", "--replicas=5"]);
    assert!(out.contains("widget.kc.example.com/w1 scaled"), "{out}");
    assert_eq!(
        c.ok(&["get", "widget", "w1", "-o", "jsonpath={.spec.replicas}"]),
        "5"
    );

    let out = c.ok(&["delete", "crd", "widgets.kc.example.com", "--timeout=30s"]);
    assert!(out.contains("deleted"), "{out}");
    // With discovery still cached kubectl lists and gets the 404 (as against upstream); with a
    // fresh cache it no longer knows the type.
    let err = c.fails(&["get", "widgets"]);
    assert!(
        err.contains("the server could not find the requested resource")
            || err.contains("the server doesn't have a resource type \"widgets\""),
        "{err}"
    );
    // Listing directly: the kind is gone with its objects.
    let (code, _, _) = c.kubectl(&["get", "--raw", "/apis/kc.example.com/v1/widgets"]);
    assert_ne!(code, 0);
}
