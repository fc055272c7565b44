//! core/v1 PodTemplate: a stored pod template (upstream's `registry/core/podtemplate`):
//! the pod defaults on `template.spec`, `ValidatePodTemplate`, the `printPodTemplate` Table.

use serde_json::{json, Map, Value};

use crate::kinds::prelude::*;

pub(crate) const KIND: Kind = Kind {
    info: ResourceInfo {
        group: "",
        version: "v1",
        kind: "PodTemplate",
        list_kind: "PodTemplateList",
        plural: "podtemplates",
        singular: "podtemplate",
        namespaced: true,
        short_names: &[],
        categories: &[],
        verbs: FULL,
        subresources: &[],
    },
    defaults,
    validate,
    table: Table {
        columns: COLUMNS,
        cells,
        ..Table::BASE
    },
    patch_root: Ty::Workload,
    ..Kind::BASE
};

/// `SetDefaults_PodSpec` on the template (the object itself has no defaults).
fn defaults(obj: &mut Map<String, Value>) {
    pod_template(obj);
}

/// Upstream's `ValidatePodTemplate`: the template's labels, annotations and pod spec (any
/// restart policy; the template is required, so its containers are).
fn validate(e: &mut Errs, obj: &Map<String, Value>, _old: Option<&Value>) {
    let template = obj.get("template").cloned().unwrap_or_else(|| json!({}));
    template_labels(e, &template, "template");
    pod_spec(e, template.get("spec"), "template.spec");
}

/// Upstream's `podTemplateColumnDefinitions` (no Age column).
#[rustfmt::skip]
const COLUMNS: &[Col] = &[
    NAME,
    ("Containers", "string", 0, "Names of each container in the template."),
    ("Images", "string", 0, "Images referenced by each container in the template."),
    ("Pod Labels", "string", 0, "The labels for the pod template."),
];

fn cells(obj: &Value, _now: jiff::Timestamp) -> Vec<Value> {
    let cs = arr(obj, "/template/spec/containers");
    let names: Vec<&str> = cs.iter().map(|c| s(c, "/name")).collect();
    let images: Vec<&str> = cs.iter().map(|c| s(c, "/image")).collect();
    vec![
        json!(s(obj, "/metadata/name")),
        json!(names.join(",")),
        json!(images.join(",")),
        json!(format_labels(obj.pointer("/template/metadata/labels"))),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template() -> Value {
        json!({"metadata": {"name": "tpl", "namespace": "default"},
            "template": {"metadata": {"labels": {"b": "2", "a": "1"}},
                "spec": {"containers": [
                    {"name": "web", "image": "nginx"}, {"name": "side", "image": "busybox"}]}}})
    }

    #[test]
    fn defaults_the_pod_spec() {
        let mut obj = template();
        if let Some(m) = obj.as_object_mut() {
            defaults(m);
        }
        assert_eq!(
            obj.pointer("/template/spec/restartPolicy"),
            Some(&json!("Always"))
        );
        assert_eq!(
            obj.pointer("/template/spec/containers/0/terminationMessagePolicy"),
            Some(&json!("File"))
        );
    }

    #[test]
    fn validates_the_template() {
        let mut e = Errs::default();
        let obj = template();
        validate(&mut e, obj.as_object().expect("object"), None);
        assert!(e.0.is_empty(), "{:?}", e.0);
        let mut e = Errs::default();
        let obj = json!({"metadata": {"name": "tpl"}, "template": {"metadata": {"labels": {"bad key!": "x"}}}});
        validate(&mut e, obj.as_object().expect("object"), None);
        let text = format!("{:?}", e.0);
        assert!(text.contains("template.spec.containers"), "{text}");
        assert!(text.contains("template.metadata.labels"), "{text}");
    }

    #[test]
    fn prints_like_kubectl() {
        assert_eq!(
            cells(&template(), jiff::Timestamp::now()),
            vec![
                json!("tpl"),
                json!("web,side"),
                json!("nginx,busybox"),
                json!("a=1,b=2")
            ]
        );
    }
}
