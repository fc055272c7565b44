//! Server-side apply and Update field tracking.

use serde_json::{json, Value};
use skiff_api::apply::{record_update, server_side_apply};
use skiff_api::resources::by_plural;
use skiff_api::ResourceInfo;

const T0: &str = "2026-11-27T01:00:00Z";
const T1: &str = "2026-11-27T01:05:00Z";

fn deployments() -> &'static ResourceInfo {
    by_plural("apps", "v1", "deployments").expect("deployments")
}

/// The manifest of transcripts 16/17 (`kubectl apply --server-side`).
fn manifest(image: &str, replicas: Option<i64>) -> Value {
    let mut m = json!({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"labels":{"app":"nginx"},"name":"ssa-web","namespace":"default"},"spec":{"replicas":2,"selector":{"matchLabels":{"app":"nginx"}},"template":{"metadata":{"labels":{"app":"nginx"}},"spec":{"containers":[{"image":image,"name":"ssa-web","ports":[{"containerPort":80}]}]}}}});
    match replicas {
        Some(r) => m["spec"]["replicas"] = json!(r),
        None => {
            if let Some(spec) = m["spec"].as_object_mut() {
                spec.remove("replicas");
            }
        }
    }
    m
}

fn managed(obj: &Value) -> Vec<Value> {
    obj["metadata"]["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn apply_create_records_apply_entry() {
    let obj = server_side_apply(
        deployments(),
        None,
        &manifest("nginx:1.25", Some(2)),
        "kubectl",
        false,
        T0,
    )
    .expect("create");
    assert_eq!(obj["spec"]["replicas"], 2);
    let mf = managed(&obj);
    assert_eq!(mf.len(), 1);
    let e = &mf[0];
    assert_eq!(e["manager"], "kubectl");
    assert_eq!(e["operation"], "Apply");
    assert_eq!(e["apiVersion"], "apps/v1");
    assert_eq!(e["time"], T0);
    assert_eq!(e["fieldsType"], "FieldsV1");
    let f = &e["fieldsV1"];
    assert_eq!(f["f:spec"]["f:replicas"], json!({}));
    assert_eq!(
        f["f:spec"]["f:selector"],
        json!({}),
        "LabelSelector is atomic"
    );
    assert_eq!(f["f:metadata"]["f:labels"], json!({"f:app": {}}));
    assert!(f["f:metadata"].get("f:name").is_none());
    assert!(f.get("f:apiVersion").is_none());
    let item = &f["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"ssa-web\"}"];
    assert_eq!(item["."], json!({}));
    assert_eq!(item["f:image"], json!({}));
    assert_eq!(
        item["f:ports"]["k:{\"containerPort\":80,\"protocol\":\"TCP\"}"],
        json!({".": {}, "f:containerPort": {}})
    );
}

#[test]
fn reapply_is_a_noop_and_update_changes_image() {
    let info = deployments();
    let created = server_side_apply(
        info,
        None,
        &manifest("nginx:1.25", Some(2)),
        "kubectl",
        false,
        T0,
    )
    .expect("create");
    let again = server_side_apply(
        info,
        Some(&created),
        &manifest("nginx:1.25", Some(2)),
        "kubectl",
        false,
        T1,
    )
    .expect("reapply");
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v["metadata"].as_object_mut() {
            m.remove("managedFields");
        }
        v
    };
    assert_eq!(strip(&again), strip(&created));
    assert_eq!(managed(&again).len(), 1);
    let updated = server_side_apply(
        info,
        Some(&created),
        &manifest("nginx:1.27", Some(2)),
        "kubectl",
        false,
        T1,
    )
    .expect("update");
    assert_eq!(
        updated["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.27"
    );
    assert_eq!(managed(&updated)[0]["time"], T1);
}

#[test]
fn dropped_fields_are_removed() {
    let info = deployments();
    let mut m1 = manifest("nginx:1.25", Some(2));
    m1["metadata"]["labels"]["tier"] = json!("web");
    let created = server_side_apply(info, None, &m1, "kubectl", false, T0).expect("create");
    let out = server_side_apply(
        info,
        Some(&created),
        &manifest("nginx:1.25", None),
        "kubectl",
        false,
        T1,
    )
    .expect("apply");
    assert!(
        out["spec"].get("replicas").is_none(),
        "replicas dropped: {}",
        out["spec"]
    );
    assert_eq!(out["metadata"]["labels"], json!({"app": "nginx"}));
    assert!(managed(&out)[0]["fieldsV1"]["f:spec"]
        .get("f:replicas")
        .is_none());
}

#[test]
fn dropped_field_owned_by_another_manager_is_kept() {
    let info = deployments();
    let created = server_side_apply(
        info,
        None,
        &manifest("nginx:1.25", Some(2)),
        "kubectl",
        false,
        T0,
    )
    .expect("create");
    // Another applier claims the same replicas value: shared ownership, no conflict.
    let shared = server_side_apply(info, Some(&created), &json!({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"ssa-web"},"spec":{"replicas":2}}), "other", false, T1).expect("shared");
    let out = server_side_apply(
        info,
        Some(&shared),
        &manifest("nginx:1.25", None),
        "kubectl",
        false,
        T1,
    )
    .expect("apply");
    assert_eq!(out["spec"]["replicas"], 2);
}

#[test]
fn conflict_with_update_manager_and_force() {
    let info = deployments();
    let created = server_side_apply(
        info,
        None,
        &manifest("nginx:1.25", Some(2)),
        "kubectl",
        false,
        T0,
    )
    .expect("create");
    // `kubectl scale`-like write by another manager.
    let mut scaled = created.clone();
    scaled["spec"]["replicas"] = json!(5);
    record_update(
        info,
        Some(&created),
        &mut scaled,
        "kubectl-client-side-apply",
        T1,
    );
    let mf = managed(&scaled);
    let upd = mf
        .iter()
        .find(|e| e["manager"] == "kubectl-client-side-apply")
        .expect("update entry");
    assert_eq!(upd["operation"], "Update");
    assert_eq!(upd["fieldsV1"], json!({"f:spec": {"f:replicas": {}}}));
    // The applier lost ownership of replicas.
    let app = mf
        .iter()
        .find(|e| e["manager"] == "kubectl")
        .expect("apply entry");
    assert!(app["fieldsV1"]["f:spec"].get("f:replicas").is_none());

    let err = server_side_apply(
        info,
        Some(&scaled),
        &manifest("nginx:1.25", Some(3)),
        "kubectl",
        false,
        T1,
    )
    .expect_err("conflict");
    assert_eq!((err.code, err.reason.as_str()), (409, "Conflict"));
    assert_eq!(err.message, "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using apps/v1: .spec.replicas");
    assert_eq!(
        err.to_status()["details"],
        json!({"causes": [{"reason": "FieldManagerConflict", "message": "conflict with \"kubectl-client-side-apply\" using apps/v1", "field": ".spec.replicas"}]})
    );

    // Same value as live: no conflict, shared ownership.
    server_side_apply(
        info,
        Some(&scaled),
        &manifest("nginx:1.25", Some(5)),
        "kubectl",
        false,
        T1,
    )
    .expect("same value");

    let forced = server_side_apply(
        info,
        Some(&scaled),
        &manifest("nginx:1.25", Some(3)),
        "kubectl",
        true,
        T1,
    )
    .expect("force");
    assert_eq!(forced["spec"]["replicas"], 3);
    let mf = managed(&forced);
    assert!(
        mf.iter()
            .all(|e| e["manager"] != "kubectl-client-side-apply"),
        "emptied entry removed: {mf:?}"
    );
}

#[test]
fn conflict_between_appliers_lists_all_fields() {
    let info = deployments();
    let created = server_side_apply(
        info,
        None,
        &manifest("nginx:1.25", Some(2)),
        "alice",
        false,
        T0,
    )
    .expect("create");
    let err = server_side_apply(
        info,
        Some(&created),
        &manifest("nginx:1.27", Some(4)),
        "bob",
        false,
        T1,
    )
    .expect_err("conflict");
    assert_eq!(
        err.message,
        "Apply failed with 2 conflicts: conflicts with \"alice\":\n- .spec.replicas\n- .spec.template.spec.containers[name=\"ssa-web\"].image"
    );
}

#[test]
fn record_update_on_create_and_labels() {
    let info = deployments();
    let mut obj = manifest("nginx:1.25", Some(2));
    obj["metadata"]["uid"] = json!("u");
    obj["metadata"]["resourceVersion"] = json!("1");
    record_update(info, None, &mut obj, "kubectl-create", T0);
    let mf = managed(&obj);
    assert_eq!(mf.len(), 1);
    let f = &mf[0]["fieldsV1"];
    assert_eq!(mf[0]["operation"], "Update");
    assert_eq!(f["f:metadata"]["f:labels"], json!({".": {}, "f:app": {}}));
    assert!(f["f:metadata"].get("f:uid").is_none());
    assert_eq!(f["f:spec"]["f:replicas"], json!({}));

    // A label added by another manager.
    let mut labelled = obj.clone();
    labelled["metadata"]["labels"]["tier"] = json!("frontend");
    record_update(info, Some(&obj), &mut labelled, "kubectl-label", T1);
    let mf = managed(&labelled);
    assert_eq!(mf.len(), 2);
    assert_eq!(mf[1]["manager"], "kubectl-label");
    assert_eq!(
        mf[1]["fieldsV1"],
        json!({"f:metadata": {"f:labels": {"f:tier": {}}}})
    );

    // No change: entries untouched.
    let mut same = labelled.clone();
    record_update(info, Some(&labelled), &mut same, "someone", T1);
    assert_eq!(managed(&same), mf);
}
