//! JSON patch, merge patch and strategic merge patch, using kubectl's real patch bodies.

use serde_json::{json, Value};
use skiff_api::patch::{json_patch, merge_patch, strategic_merge_patch};
use skiff_api::resources::by_plural;
use skiff_api::ResourceInfo;

fn deployments() -> &'static ResourceInfo {
    by_plural("apps", "v1", "deployments").expect("deployments")
}
fn pods() -> &'static ResourceInfo {
    by_plural("", "v1", "pods").expect("pods")
}
fn services() -> &'static ResourceInfo {
    by_plural("", "v1", "services").expect("services")
}

fn deploy() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"},
                     "annotations": {"deployment.kubernetes.io/revision": "1"},
                     "finalizers": ["a", "b"]},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {"name": "web", "image": "registry.example/web:1.0",
                         "ports": [{"containerPort": 80, "protocol": "TCP"}],
                         "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                         "resources": {}},
                        {"name": "sidecar", "image": "busybox"}
                    ],
                    "volumes": [{"name": "data", "emptyDir": {}}]
                }
            }
        },
        "status": {"replicas": 3}
    })
}

#[test]
fn set_image_patch_from_transcript_46() {
    let patch: Value = serde_json::from_str(r#"{"spec":{"template":{"spec":{"$setElementOrder/containers":[{"name":"web"}],"containers":[{"image":"registry.example/web:2.0","name":"web"}]}}}}"#).expect("json");
    let out = strategic_merge_patch(deployments(), &deploy(), &patch).expect("patch");
    let cs = &out["spec"]["template"]["spec"]["containers"];
    assert_eq!(cs.as_array().map(Vec::len), Some(2), "sidecar kept: {cs}");
    assert_eq!(cs[0]["image"], "registry.example/web:2.0");
    assert_eq!(
        cs[0]["ports"],
        json!([{"containerPort": 80, "protocol": "TCP"}])
    );
    assert_eq!(cs[0]["env"][1]["value"], "2");
    assert_eq!(cs[1]["name"], "sidecar");
}

#[test]
fn client_side_apply_patch_from_transcript_11() {
    let patch: Value = serde_json::from_str(r#"{"metadata":{"annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{}\n"}},"spec":{"template":{"spec":{"$setElementOrder/containers":[{"name":"web"}],"containers":[{"image":"nginx:1.27","name":"web"}]}}}}"#).expect("json");
    let out = strategic_merge_patch(deployments(), &deploy(), &patch).expect("patch");
    assert_eq!(
        out["metadata"]["annotations"],
        json!({"deployment.kubernetes.io/revision": "1", "kubectl.kubernetes.io/last-applied-configuration": "{}\n"})
    );
    assert_eq!(
        out["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.27"
    );
    assert!(!out.to_string().contains("$setElementOrder"));
}

#[test]
fn rollout_restart_pause_resume_and_edit_bodies() {
    let restart = json!({"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":"2026-11-27T01:30:36Z"}}}}});
    let out = strategic_merge_patch(deployments(), &deploy(), &restart).expect("restart");
    assert_eq!(
        out["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"],
        "2026-11-27T01:30:36Z"
    );
    assert_eq!(
        out["spec"]["template"]["metadata"]["labels"],
        json!({"app": "web"})
    );

    let paused = strategic_merge_patch(deployments(), &deploy(), &json!({"spec":{"paused":true}}))
        .expect("pause");
    assert_eq!(paused["spec"]["paused"], true);
    let resumed = strategic_merge_patch(deployments(), &paused, &json!({"spec":{"paused":null}}))
        .expect("resume");
    assert!(resumed["spec"].get("paused").is_none());

    let edited = strategic_merge_patch(
        deployments(),
        &deploy(),
        &json!({"spec":{"replicas":5},"status":{"replicas":5}}),
    )
    .expect("edit");
    assert_eq!(edited["spec"]["replicas"], 5);
}

#[test]
fn label_removal_via_null() {
    let out = strategic_merge_patch(
        deployments(),
        &deploy(),
        &json!({"metadata":{"labels":{"app":null,"tier":"frontend"}}}),
    )
    .expect("patch");
    assert_eq!(out["metadata"]["labels"], json!({"tier": "frontend"}));
}

#[test]
fn env_merges_by_name_and_new_items_append() {
    let patch = json!({"spec":{"template":{"spec":{"containers":[{"name":"web","env":[{"name":"B","value":"20"},{"name":"C","value":"3"}]}]}}}});
    let out = strategic_merge_patch(deployments(), &deploy(), &patch).expect("patch");
    let env = &out["spec"]["template"]["spec"]["containers"][0]["env"];
    let names: Vec<&str> = env
        .as_array()
        .expect("env")
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert!(
        names.contains(&"A") && names.contains(&"B") && names.contains(&"C"),
        "{env}"
    );
    let b = env
        .as_array()
        .expect("env")
        .iter()
        .find(|e| e["name"] == "B")
        .expect("B");
    assert_eq!(b["value"], "20");
}

#[test]
fn patch_delete_directive_in_list() {
    let patch =
        json!({"spec":{"template":{"spec":{"containers":[{"name":"sidecar","$patch":"delete"}]}}}});
    let out = strategic_merge_patch(deployments(), &deploy(), &patch).expect("patch");
    let cs = out["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers")
        .clone();
    assert_eq!(cs.len(), 1);
    assert_eq!(cs[0]["name"], "web");
}

#[test]
fn patch_replace_directives() {
    // A list replaced wholesale.
    let patch = json!({"spec":{"template":{"spec":{"containers":[{"$patch":"replace"},{"name":"only","image":"x"}]}}}});
    let out = strategic_merge_patch(deployments(), &deploy(), &patch).expect("patch");
    assert_eq!(
        out["spec"]["template"]["spec"]["containers"],
        json!([{"name":"only","image":"x"}])
    );
    // A map replaced wholesale.
    let patch = json!({"metadata":{"labels":{"$patch":"replace","new":"1"}}});
    let out = strategic_merge_patch(deployments(), &deploy(), &patch).expect("patch");
    assert_eq!(out["metadata"]["labels"], json!({"new":"1"}));
    // A map deleted (emptied).
    let patch = json!({"metadata":{"annotations":{"$patch":"delete"}}});
    let out = strategic_merge_patch(deployments(), &deploy(), &patch).expect("patch");
    assert_eq!(out["metadata"]["annotations"], json!({}));
}

#[test]
fn set_element_order_reorders() {
    let patch = json!({"spec":{"template":{"spec":{"$setElementOrder/containers":[{"name":"sidecar"},{"name":"web"}]}}}});
    let out = strategic_merge_patch(deployments(), &deploy(), &patch).expect("patch");
    let names: Vec<&str> = out["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("c")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names, ["sidecar", "web"]);

    // New item placed according to the order, server-only items keep their place.
    let patch = json!({"spec":{"template":{"spec":{
        "$setElementOrder/containers":[{"name":"new"},{"name":"web"}],
        "containers":[{"name":"new","image":"n"}]}}}});
    let out = strategic_merge_patch(deployments(), &deploy(), &patch).expect("patch");
    let names: Vec<&str> = out["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("c")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names, ["new", "web", "sidecar"]);
}

#[test]
fn primitive_lists_merge_and_delete() {
    let out = strategic_merge_patch(
        deployments(),
        &deploy(),
        &json!({"metadata":{"finalizers":["c","a"]}}),
    )
    .expect("merge");
    // Union; patch items follow the patch order, server-only items keep their original slots.
    assert_eq!(out["metadata"]["finalizers"], json!(["c", "a", "b"]));
    let out = strategic_merge_patch(
        deployments(),
        &deploy(),
        &json!({"metadata":{"$deleteFromPrimitiveList/finalizers":["a"]}}),
    )
    .expect("delete");
    assert_eq!(out["metadata"]["finalizers"], json!(["b"]));
}

#[test]
fn container_ports_keyed_by_container_port() {
    let patch = json!({"spec":{"template":{"spec":{"containers":[{"name":"web","ports":[{"containerPort":80,"name":"http"},{"containerPort":443}]}]}}}});
    let out = strategic_merge_patch(deployments(), &deploy(), &patch).expect("patch");
    assert_eq!(
        out["spec"]["template"]["spec"]["containers"][0]["ports"],
        json!([{"containerPort":80,"protocol":"TCP","name":"http"},{"containerPort":443}])
    );
}

#[test]
fn service_ports_keyed_by_port_and_atomic_lists_replace() {
    let svc = json!({"spec":{"type":"NodePort","ports":[{"port":80,"nodePort":30080,"protocol":"TCP","targetPort":80}],
                     "ipFamilies":["IPv4"],"selector":{"app":"web"}}});
    let patch = json!({"spec":{"ports":[{"port":80,"targetPort":8080},{"port":443,"targetPort":8443}],"ipFamilies":["IPv6"]}});
    let out = strategic_merge_patch(services(), &svc, &patch).expect("patch");
    assert_eq!(
        out["spec"]["ports"][0],
        json!({"port":80,"nodePort":30080,"protocol":"TCP","targetPort":8080})
    );
    assert_eq!(out["spec"]["ports"][1]["port"], 443);
    assert_eq!(out["spec"]["ipFamilies"], json!(["IPv6"]));
}

#[test]
fn pod_tolerations_replace_and_conditions_merge_by_type() {
    let pod = json!({"spec":{"tolerations":[{"key":"a","operator":"Exists"}]},
                     "status":{"conditions":[{"type":"Ready","status":"False"},{"type":"PodScheduled","status":"True"}]}});
    let patch = json!({"spec":{"tolerations":[{"key":"b","operator":"Exists"}]},
                       "status":{"conditions":[{"type":"Ready","status":"True"}]}});
    let out = strategic_merge_patch(pods(), &pod, &patch).expect("patch");
    assert_eq!(
        out["spec"]["tolerations"],
        json!([{"key":"b","operator":"Exists"}])
    );
    assert_eq!(
        out["status"]["conditions"],
        json!([{"type":"Ready","status":"True"},{"type":"PodScheduled","status":"True"}])
    );
}

#[test]
fn retain_keys_clears_other_union_members() {
    let d = json!({"spec":{"strategy":{"type":"RollingUpdate","rollingUpdate":{"maxSurge":1}}}});
    let patch = json!({"spec":{"strategy":{"$retainKeys":["type"],"type":"Recreate"}}});
    let out = strategic_merge_patch(deployments(), &d, &patch).expect("patch");
    assert_eq!(out["spec"]["strategy"], json!({"type":"Recreate"}));
}

#[test]
fn nulls_inside_new_subtrees_are_dropped() {
    let out = strategic_merge_patch(
        deployments(),
        &json!({"spec":{}}),
        &json!({"spec":{"strategy":{"type":"Recreate","rollingUpdate":null}}}),
    )
    .expect("patch");
    assert_eq!(out["spec"]["strategy"], json!({"type":"Recreate"}));
}

#[test]
fn smp_rejects_non_object_and_bad_directive() {
    assert_eq!(
        strategic_merge_patch(deployments(), &deploy(), &json!([1]))
            .expect_err("array")
            .code,
        400
    );
    assert_eq!(
        strategic_merge_patch(
            deployments(),
            &deploy(),
            &json!({"spec":{"template":{"spec":{"containers":[{"image":"x"}]}}}})
        )
        .expect_err("no merge key")
        .code,
        400
    );
}

#[test]
fn merge_patch_rfc7386() {
    let out = merge_patch(
        &deploy(),
        &json!({"metadata":{"labels":{"tier":"frontend","app":null}},"spec":{"replicas":9}}),
    )
    .expect("patch");
    assert_eq!(out["metadata"]["labels"], json!({"tier":"frontend"}));
    assert_eq!(out["spec"]["replicas"], 9);
    // Lists are replaced, not merged.
    let out = merge_patch(
        &deploy(),
        &json!({"spec":{"template":{"spec":{"containers":[{"name":"x"}]}}}}),
    )
    .expect("patch");
    assert_eq!(
        out["spec"]["template"]["spec"]["containers"],
        json!([{"name":"x"}])
    );
}

#[test]
fn json_patch_rollout_undo_and_errors() {
    let patch = json!([
        {"op":"replace","path":"/spec/template","value":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"name":"web","image":"registry.example/web:1.0"}]}}},
        {"op":"replace","path":"/metadata/annotations","value":{"deployment.kubernetes.io/revision":"2"}}
    ]);
    let out = json_patch(&deploy(), &patch).expect("patch");
    assert_eq!(
        out["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.example/web:1.0"
    );
    assert_eq!(
        out["metadata"]["annotations"],
        json!({"deployment.kubernetes.io/revision":"2"})
    );

    let failed = json_patch(
        &deploy(),
        &json!([{"op":"test","path":"/spec/replicas","value":7}]),
    )
    .expect_err("test op");
    assert_eq!((failed.code, failed.reason.as_str()), (422, "Invalid"));
    let missing =
        json_patch(&deploy(), &json!([{"op":"remove","path":"/nope"}])).expect_err("missing");
    assert_eq!(missing.code, 422);
    let garbage = json_patch(&deploy(), &json!({"op":"x"})).expect_err("bad body");
    assert_eq!(garbage.code, 400);
}

#[test]
fn daemon_set_set_image_restart_and_status_patches() {
    let info = by_plural("apps", "v1", "daemonsets").expect("daemonsets");
    let ds = json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "agent", "namespace": "default"},
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}},
            "template": {
                "metadata": {"labels": {"app": "agent"}},
                "spec": {
                    "containers": [
                        {"name": "agent", "image": "busybox:1.36", "env": [{"name": "A", "value": "1"}]},
                        {"name": "log", "image": "fluent-bit:3"}
                    ],
                    "tolerations": [{"operator": "Exists"}]
                }
            }
        },
        "status": {"conditions": [{"type": "A", "status": "True"}]}
    });
    // `kubectl set image ds/agent agent=busybox:1.37`: containers merge by name.
    let patch: Value = serde_json::from_str(r#"{"spec":{"template":{"spec":{"$setElementOrder/containers":[{"name":"agent"},{"name":"log"}],"containers":[{"image":"busybox:1.37","name":"agent"}]}}}}"#).expect("json");
    let out = strategic_merge_patch(info, &ds, &patch).expect("patch");
    let cs = &out["spec"]["template"]["spec"]["containers"];
    assert_eq!(cs[0]["image"], "busybox:1.37");
    assert_eq!(cs[0]["env"], json!([{"name": "A", "value": "1"}]));
    assert_eq!(cs[1], json!({"name": "log", "image": "fluent-bit:3"}));
    // `kubectl rollout restart ds/agent`: a template annotation, everything else kept.
    let patch: Value = serde_json::from_str(r#"{"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":"2026-11-27T01:00:00Z"}}}}}"#).expect("json");
    let out = strategic_merge_patch(info, &ds, &patch).expect("patch");
    assert_eq!(
        out["spec"]["template"]["metadata"],
        json!({"labels": {"app": "agent"},
            "annotations": {"kubectl.kubernetes.io/restartedAt": "2026-11-27T01:00:00Z"}})
    );
    assert_eq!(
        out["spec"]["template"]["spec"],
        ds["spec"]["template"]["spec"]
    );
    // SMP merges maps (structType=atomic only matters to apply); conditions merge by type.
    let patch = json!({"spec": {"selector": {"matchLabels": {"tier": "x"}}},
        "status": {"conditions": [{"type": "B", "status": "False"}]}});
    let out = strategic_merge_patch(info, &ds, &patch).expect("patch");
    assert_eq!(
        out["spec"]["selector"],
        json!({"matchLabels": {"app": "agent", "tier": "x"}})
    );
    let conds = out["status"]["conditions"].as_array().expect("conditions");
    assert_eq!(conds.len(), 2, "{conds:?}");
    assert!(conds.contains(&json!({"type": "A", "status": "True"})));
    assert!(conds.contains(&json!({"type": "B", "status": "False"})));
}

#[test]
fn cron_job_suspend_and_set_image_patches() {
    let info = by_plural("batch", "v1", "cronjobs").expect("cronjobs");
    let cj = json!({
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": "hello", "namespace": "default"},
        "spec": {
            "schedule": "*/1 * * * *", "suspend": false,
            "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "OnFailure", "containers": [
                {"name": "hello", "image": "busybox:1.36", "env": [{"name": "A", "value": "1"}]},
                {"name": "side", "image": "alpine:3"}
            ]}}}}
        },
        "status": {"active": [{"kind": "Job", "name": "hello-1"}]}
    });
    // `kubectl patch cronjob hello -p '{"spec":{"suspend":true}}'`.
    let out = strategic_merge_patch(info, &cj, &json!({"spec": {"suspend": true}})).expect("patch");
    assert_eq!(out["spec"]["suspend"], true);
    assert_eq!(out["spec"]["jobTemplate"], cj["spec"]["jobTemplate"]);
    // `kubectl set image cronjob/hello hello=busybox:1.37`: containers in the job template
    // merge by name.
    let patch: Value = serde_json::from_str(r#"{"spec":{"jobTemplate":{"spec":{"template":{"spec":{"$setElementOrder/containers":[{"name":"hello"},{"name":"side"}],"containers":[{"image":"busybox:1.37","name":"hello"}]}}}}}}"#).expect("json");
    let out = strategic_merge_patch(info, &cj, &patch).expect("patch");
    let cs = &out["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"];
    assert_eq!(cs[0]["image"], "busybox:1.37");
    assert_eq!(cs[0]["env"], json!([{"name": "A", "value": "1"}]));
    assert_eq!(cs[1], json!({"name": "side", "image": "alpine:3"}));
    // status.active is atomic: replaced, not merged.
    let patch = json!({"status": {"active": [{"kind": "Job", "name": "hello-2"}]}});
    let out = strategic_merge_patch(info, &cj, &patch).expect("patch");
    assert_eq!(
        out["status"]["active"],
        json!([{"kind": "Job", "name": "hello-2"}])
    );
}
