//! Protobuf request bodies: the real bodies kubectl 1.32 sent (captured in
//! kubectl-transcripts/requests.jsonl) and richer bodies encoded with k8s-pb's prost types.

use base64::Engine as _;
use prost::Message as _;
use serde_json::{json, Value};
use skiff_api::protobuf::decode;

fn b64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .expect("test data")
}

/// What the JSON-speaking kubectl (1.30/1.31) sends carries `creationTimestamp: null`,
/// `resources: {}`, `strategy: {}`, `status: {}`; those are "unset" too.
fn strip_zero(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| (k, strip_zero(v)))
                .filter(|(_, v)| !(v.is_null() || v.as_object().is_some_and(|m| m.is_empty())))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(strip_zero).collect()),
        v => v,
    }
}

#[test]
fn kubectl_132_create_deployment() {
    let body = b64("azhzAAoVCgdhcHBzL3YxEgpEZXBsb3ltZW50Er0BCh8KA3dlYhIAGgAiACoAMgA4AEIAWgoKA2FwcBIDd2ViEosBCAMSDAoKCgNhcHASA3dlYhpxChwKABIAGgAiACoAMgA4AEIAWgoKA2FwcBIDd2ViElESMwoDd2ViEhhyZWdpc3RyeS5leGFtcGxlL3dlYjoxLjAqAEIAagByAIABAIgBAJABAKIBABoAMgBCAEoAUgBYAGAAaACCAQCKAQCaAQDCAQAiAgoAKAA4ABoMCAAQABgAIAAoADgAGgAiAA==");
    let got = decode(&body).expect("decodes");
    // What kubectl 1.31 sends as JSON for the same command (transcript 19c), zero values unset.
    let json_client = json!({"kind":"Deployment","apiVersion":"apps/v1","metadata":{"name":"web","creationTimestamp":null,"labels":{"app":"web"}},"spec":{"replicas":3,"selector":{"matchLabels":{"app":"web"}},"template":{"metadata":{"creationTimestamp":null,"labels":{"app":"web"}},"spec":{"containers":[{"name":"web","image":"registry.example/web:1.0","resources":{}}]}},"strategy":{}},"status":{}});
    assert_eq!(got, strip_zero(json_client));
    // Zero values Go wrote explicitly must not survive (imagePullPolicy "" would break defaulting).
    let c = &got["spec"]["template"]["spec"]["containers"][0];
    assert!(c.get("imagePullPolicy").is_none());
    assert!(got["metadata"].get("creationTimestamp").is_none());
    assert!(got["spec"].get("paused").is_none());
}

#[test]
fn kubectl_132_create_deployment_other_captures() {
    for (b, name, replicas, image) in [
        ("azhzAAoVCgdhcHBzL3YxEgpEZXBsb3ltZW50EqUBCh8KA3dlYhIAGgAiACoAMgA4AEIAWgoKA2FwcBIDd2ViEnQIARIMCgoKA2FwcBIDd2ViGloKHAoAEgAaACIAKgAyADgAQgBaCgoDYXBwEgN3ZWISOhIcCgF4EgN4OjEqAEIAagByAIABAIgBAJABAKIBABoAMgBCAEoAUgBYAGAAaACCAQCKAQCaAQDCAQAiAgoAKAA4ABoMCAAQABgAIAAoADgAGgAiAA==", "web", 1, "x:1"),
        ("azhzAAoVCgdhcHBzL3YxEgpEZXBsb3ltZW50EqEBCh0KAnd4EgAaACIAKgAyADgAQgBaCQoDYXBwEgJ3eBJyCAISCwoJCgNhcHASAnd4GlkKGwoAEgAaACIAKgAyADgAQgBaCQoDYXBwEgJ3eBI6EhwKAXgSA3g6MSoAQgBqAHIAgAEAiAEAkAEAogEAGgAyAEIASgBSAFgAYABoAIIBAIoBAJoBAMIBACICCgAoADgAGgwIABAAGAAgACgAOAAaACIA", "wx", 2, "x:1"),
    ] {
        let got = decode(&b64(b)).expect("decodes");
        let containers_name = "x";
        assert_eq!(
            got,
            json!({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":name,"labels":{"app":name}},
                "spec":{"replicas":replicas,"selector":{"matchLabels":{"app":name}},
                "template":{"metadata":{"labels":{"app":name}},"spec":{"containers":[{"name":containers_name,"image":image}]}}}})
        );
    }
}

#[test]
fn kubectl_132_create_namespace_and_configmap() {
    let ns = decode(&b64(
        "azhzAAoPCgJ2MRIJTmFtZXNwYWNlEh4KFgoGdGVhbS1hEgAaACIAKgAyADgAQgASABoCCgAaACIA",
    ))
    .expect("ns");
    assert_eq!(
        ns,
        json!({"apiVersion":"v1","kind":"Namespace","metadata":{"name":"team-a"}})
    );
    let cm = decode(&b64(
        "azhzAAoPCgJ2MRIJQ29uZmlnTWFwEiMKGQoDY2ZnEgAaBnRlYW0tYSIAKgAyADgAQgASBgoBYRIBYhoAIgA=",
    ))
    .expect("cm");
    assert_eq!(
        cm,
        json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cfg","namespace":"team-a"},"data":{"a":"b"}})
    );
}

fn envelope(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
    use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
    let u = Unknown {
        type_meta: Some(TypeMeta {
            api_version: Some(api_version.into()),
            kind: Some(kind.into()),
        }),
        raw: Some(raw),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    let mut out = b"k8s\0".to_vec();
    out.extend(u.encode_to_vec());
    out
}

#[test]
fn pod_with_nested_types() {
    use k8s_pb::api::core::v1 as core;
    use k8s_pb::apimachinery::pkg::api::resource::Quantity;
    use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
    use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
    let q = |s: &str| Quantity {
        string: Some(s.into()),
    };
    let pod = core::Pod {
        metadata: Some(meta::ObjectMeta {
            name: Some("p".into()),
            labels: [("app".to_string(), "web".to_string())].into(),
            creation_timestamp: Some(meta::Time {
                seconds: Some(1_700_000_000),
                nanos: Some(0),
            }),
            ..Default::default()
        }),
        spec: Some(core::PodSpec {
            containers: vec![core::Container {
                name: Some("c".into()),
                image: Some("nginx".into()),
                ports: vec![core::ContainerPort {
                    container_port: Some(80),
                    protocol: Some("TCP".into()),
                    ..Default::default()
                }],
                env: vec![core::EnvVar {
                    name: Some("POD".into()),
                    value_from: Some(core::EnvVarSource {
                        field_ref: Some(core::ObjectFieldSelector {
                            field_path: Some("metadata.name".into()),
                            api_version: None,
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }],
                resources: Some(core::ResourceRequirements {
                    limits: [
                        ("cpu".to_string(), q("500m")),
                        ("memory".to_string(), q("128Mi")),
                    ]
                    .into(),
                    ..Default::default()
                }),
                readiness_probe: Some(core::Probe {
                    handler: Some(core::ProbeHandler {
                        http_get: Some(core::HttpGetAction {
                            path: Some("/".into()),
                            port: Some(IntOrString {
                                r#type: Some(1),
                                int_val: None,
                                str_val: Some("http".into()),
                            }),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    period_seconds: Some(5),
                    ..Default::default()
                }),
                security_context: Some(core::SecurityContext {
                    run_as_user: Some(0),
                    privileged: Some(false),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            volumes: vec![core::Volume {
                name: Some("scratch".into()),
                volume_source: Some(core::VolumeSource {
                    empty_dir: Some(core::EmptyDirVolumeSource::default()),
                    ..Default::default()
                }),
            }],
            tolerations: vec![core::Toleration {
                key: Some("k".into()),
                operator: Some("Exists".into()),
                ..Default::default()
            }],
            termination_grace_period_seconds: Some(0),
            ..Default::default()
        }),
        status: None,
    };
    let got = decode(&envelope("v1", "Pod", pod.encode_to_vec())).expect("decodes");
    assert_eq!(
        got,
        json!({"apiVersion":"v1","kind":"Pod",
            "metadata":{"name":"p","labels":{"app":"web"},"creationTimestamp":"2023-11-14T22:13:20Z"},
            "spec":{"containers":[{"name":"c","image":"nginx",
                "ports":[{"containerPort":80,"protocol":"TCP"}],
                "env":[{"name":"POD","valueFrom":{"fieldRef":{"fieldPath":"metadata.name"}}}],
                "resources":{"limits":{"cpu":"500m","memory":"128Mi"}},
                "readinessProbe":{"httpGet":{"path":"/","port":"http"},"periodSeconds":5},
                "securityContext":{"runAsUser":0,"privileged":false}}],
              "volumes":[{"name":"scratch","emptyDir":{}}],
              "tolerations":[{"key":"k","operator":"Exists"}],
              "terminationGracePeriodSeconds":0}})
    );
}

#[test]
fn deployment_strategy_int_or_string_and_zero_replicas() {
    use k8s_pb::api::apps::v1 as apps;
    use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
    let d = apps::Deployment {
        spec: Some(apps::DeploymentSpec {
            replicas: Some(0),
            strategy: Some(apps::DeploymentStrategy {
                r#type: Some("RollingUpdate".into()),
                rolling_update: Some(apps::RollingUpdateDeployment {
                    max_unavailable: Some(IntOrString {
                        r#type: Some(0),
                        int_val: Some(0),
                        str_val: Some(String::new()),
                    }),
                    max_surge: Some(IntOrString {
                        r#type: Some(1),
                        int_val: Some(0),
                        str_val: Some("50%".into()),
                    }),
                }),
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let got = decode(&envelope("apps/v1", "Deployment", d.encode_to_vec())).expect("decodes");
    assert_eq!(got["spec"]["replicas"], json!(0));
    assert_eq!(
        got["spec"]["strategy"]["rollingUpdate"]["maxSurge"],
        json!("50%")
    );
    // A pointer IntOrString explicitly set to 0 stays 0.
    assert_eq!(
        got["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"],
        json!(0)
    );
}

#[test]
fn service_and_secret() {
    use k8s_pb::api::core::v1 as core;
    use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
    use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
    let svc = core::Service {
        metadata: Some(meta::ObjectMeta {
            name: Some("s".into()),
            ..Default::default()
        }),
        spec: Some(core::ServiceSpec {
            ports: vec![core::ServicePort {
                name: Some(String::new()),
                port: Some(80),
                target_port: Some(IntOrString {
                    r#type: Some(0),
                    int_val: Some(0),
                    str_val: Some(String::new()),
                }),
                node_port: Some(0),
                ..Default::default()
            }],
            selector: [("app".to_string(), "web".to_string())].into(),
            r#type: Some("NodePort".into()),
            ..Default::default()
        }),
        status: Some(core::ServiceStatus::default()),
    };
    let got = decode(&envelope("v1", "Service", svc.encode_to_vec())).expect("decodes");
    assert_eq!(
        got,
        json!({"apiVersion":"v1","kind":"Service","metadata":{"name":"s"},
            "spec":{"ports":[{"port":80}],"selector":{"app":"web"},"type":"NodePort"}})
    );
    let secret = core::Secret {
        metadata: Some(meta::ObjectMeta {
            name: Some("sec".into()),
            ..Default::default()
        }),
        data: [("k".to_string(), b"hello".to_vec())].into(),
        r#type: Some("Opaque".into()),
        ..Default::default()
    };
    let got = decode(&envelope("v1", "Secret", secret.encode_to_vec())).expect("decodes");
    assert_eq!(got["data"]["k"], json!("aGVsbG8="));
    assert_eq!(got["type"], json!("Opaque"));
}

#[test]
fn rejects_garbage() {
    for bad in [&b"{\"kind\":1}"[..], b"k8s\0\x0a\xff", b"k8s\0"] {
        let err = decode(bad).expect_err("must fail");
        assert_eq!(err.code, 400);
        assert_eq!(err.reason, "BadRequest");
    }
    // An unknown kind is a 400 naming it.
    let err = decode(&envelope("v1", "Widget", Vec::new())).expect_err("unknown kind");
    assert!(err.message.contains("Widget"), "{}", err.message);
}

#[test]
fn job_like_kubectl_create_job() {
    // `kubectl create job hello --image=busybox -- echo hi` (1.32+): Go writes every non-pointer
    // field, so zeros of those (and empty structs) arrive explicitly and must read as unset.
    use k8s_pb::api::batch::v1 as batch;
    use k8s_pb::api::core::v1 as core;
    use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
    let empty_meta = || meta::ObjectMeta {
        name: Some(String::new()),
        generate_name: Some(String::new()),
        namespace: Some(String::new()),
        uid: Some(String::new()),
        resource_version: Some(String::new()),
        generation: Some(0),
        creation_timestamp: Some(meta::Time::default()),
        ..Default::default()
    };
    let job = batch::Job {
        metadata: Some(meta::ObjectMeta {
            name: Some("hello".into()),
            ..empty_meta()
        }),
        spec: Some(batch::JobSpec {
            template: Some(core::PodTemplateSpec {
                metadata: Some(empty_meta()),
                spec: Some(core::PodSpec {
                    containers: vec![core::Container {
                        name: Some("hello".into()),
                        image: Some("busybox".into()),
                        command: vec!["echo".into(), "hi".into()],
                        working_dir: Some(String::new()),
                        termination_message_path: Some(String::new()),
                        image_pull_policy: Some(String::new()),
                        stdin: Some(false),
                        tty: Some(false),
                        resources: Some(core::ResourceRequirements::default()),
                        ..Default::default()
                    }],
                    restart_policy: Some("Never".into()),
                    dns_policy: Some(String::new()),
                    service_account_name: Some(String::new()),
                    node_name: Some(String::new()),
                    host_network: Some(false),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }),
        status: Some(batch::JobStatus {
            active: Some(0),
            succeeded: Some(0),
            failed: Some(0),
            completed_indexes: Some(String::new()),
            ..Default::default()
        }),
    };
    let got = decode(&envelope("batch/v1", "Job", job.encode_to_vec())).expect("decodes");
    assert_eq!(
        got,
        json!({"apiVersion":"batch/v1","kind":"Job","metadata":{"name":"hello"},
            "spec":{"template":{"spec":{
                "containers":[{"name":"hello","image":"busybox","command":["echo","hi"]}],
                "restartPolicy":"Never"}}}})
    );
}

#[test]
fn job_pointer_fields_and_policies() {
    use k8s_pb::api::batch::v1 as batch;
    use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
    let job = batch::Job {
        spec: Some(batch::JobSpec {
            parallelism: Some(0),
            completions: Some(5),
            active_deadline_seconds: Some(600),
            backoff_limit: Some(0),
            backoff_limit_per_index: Some(1),
            max_failed_indexes: Some(2),
            selector: Some(meta::LabelSelector {
                match_labels: [("app".to_string(), "q".to_string())].into(),
                match_expressions: vec![],
            }),
            manual_selector: Some(true),
            ttl_seconds_after_finished: Some(0),
            completion_mode: Some("Indexed".into()),
            suspend: Some(false),
            pod_replacement_policy: Some("Failed".into()),
            managed_by: Some("example.com/queue".into()),
            pod_failure_policy: Some(batch::PodFailurePolicy {
                rules: vec![
                    batch::PodFailurePolicyRule {
                        action: Some("FailJob".into()),
                        on_exit_codes: Some(batch::PodFailurePolicyOnExitCodesRequirement {
                            container_name: Some("main".into()),
                            operator: Some("In".into()),
                            values: vec![1, 42],
                        }),
                        on_pod_conditions: vec![],
                    },
                    batch::PodFailurePolicyRule {
                        action: Some("Ignore".into()),
                        on_exit_codes: None,
                        on_pod_conditions: vec![batch::PodFailurePolicyOnPodConditionsPattern {
                            r#type: Some("DisruptionTarget".into()),
                            status: Some("True".into()),
                        }],
                    },
                ],
            }),
            success_policy: Some(batch::SuccessPolicy {
                rules: vec![batch::SuccessPolicyRule {
                    succeeded_indexes: Some("0-2".into()),
                    succeeded_count: Some(2),
                }],
            }),
            ..Default::default()
        }),
        status: Some(batch::JobStatus {
            conditions: vec![batch::JobCondition {
                r#type: Some("Complete".into()),
                status: Some("True".into()),
                reason: Some("Done".into()),
                message: Some(String::new()),
                last_probe_time: Some(meta::Time::default()),
                last_transition_time: Some(meta::Time {
                    seconds: Some(1_700_000_000),
                    nanos: Some(0),
                }),
            }],
            start_time: Some(meta::Time {
                seconds: Some(1_699_999_990),
                nanos: Some(0),
            }),
            active: Some(0),
            succeeded: Some(3),
            ready: Some(0),
            terminating: Some(0),
            failed_indexes: Some(String::new()),
            uncounted_terminated_pods: Some(batch::UncountedTerminatedPods {
                succeeded: vec!["u1".into()],
                failed: vec![],
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let got = decode(&envelope("batch/v1", "Job", job.encode_to_vec())).expect("decodes");
    assert_eq!(
        got["spec"],
        json!({"parallelism":0,"completions":5,"activeDeadlineSeconds":600,"backoffLimit":0,
            "backoffLimitPerIndex":1,"maxFailedIndexes":2,"selector":{"matchLabels":{"app":"q"}},
            "manualSelector":true,"ttlSecondsAfterFinished":0,"completionMode":"Indexed","suspend":false,
            "podReplacementPolicy":"Failed","managedBy":"example.com/queue",
            "podFailurePolicy":{"rules":[
                {"action":"FailJob","onExitCodes":{"containerName":"main","operator":"In","values":[1,42]}},
                {"action":"Ignore","onPodConditions":[{"type":"DisruptionTarget","status":"True"}]}]},
            "successPolicy":{"rules":[{"succeededIndexes":"0-2","succeededCount":2}]}})
    );
    assert_eq!(
        got["status"],
        json!({"conditions":[{"type":"Complete","status":"True","reason":"Done",
                "lastTransitionTime":"2023-11-14T22:13:20Z"}],
            "startTime":"2023-11-14T22:13:10Z","succeeded":3,"ready":0,"terminating":0,"failedIndexes":"",
            "uncountedTerminatedPods":{"succeeded":["u1"]}})
    );
}

/// A DaemonSet as a Go typed client writes it: every non-pointer scalar present even when zero
/// (`minReadySeconds: 0`, `updateStrategy.type: ""`, an all-zero status), pointers only when set.
#[test]
fn daemon_set_from_a_typed_client() {
    use k8s_pb::api::apps::v1 as apps;
    use k8s_pb::api::core::v1 as core;
    use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
    use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
    let zero_meta = |name: &str| meta::ObjectMeta {
        name: Some(name.into()),
        generate_name: Some(String::new()),
        namespace: Some(String::new()),
        uid: Some(String::new()),
        resource_version: Some(String::new()),
        generation: Some(0),
        creation_timestamp: Some(meta::Time::default()),
        labels: [("app".to_string(), "agent".to_string())].into(),
        ..Default::default()
    };
    let container = core::Container {
        name: Some("agent".into()),
        image: Some("busybox:1.36".into()),
        working_dir: Some(String::new()),
        termination_message_path: Some(String::new()),
        image_pull_policy: Some(String::new()),
        stdin: Some(false),
        tty: Some(false),
        resources: Some(core::ResourceRequirements::default()),
        ..Default::default()
    };
    let ds = apps::DaemonSet {
        metadata: Some(zero_meta("agent")),
        spec: Some(apps::DaemonSetSpec {
            selector: Some(meta::LabelSelector {
                match_labels: [("app".to_string(), "agent".to_string())].into(),
                match_expressions: vec![],
            }),
            template: Some(core::PodTemplateSpec {
                metadata: Some(zero_meta("")),
                spec: Some(core::PodSpec {
                    containers: vec![container],
                    node_selector: [("kubernetes.io/os".to_string(), "linux".to_string())].into(),
                    host_network: Some(true),
                    restart_policy: Some(String::new()),
                    dns_policy: Some(String::new()),
                    ..Default::default()
                }),
            }),
            update_strategy: Some(apps::DaemonSetUpdateStrategy {
                r#type: Some(String::new()),
                rolling_update: None,
            }),
            min_ready_seconds: Some(0),
            revision_history_limit: None,
        }),
        status: Some(apps::DaemonSetStatus {
            current_number_scheduled: Some(0),
            number_misscheduled: Some(0),
            desired_number_scheduled: Some(0),
            number_ready: Some(0),
            observed_generation: Some(0),
            updated_number_scheduled: Some(0),
            number_available: Some(0),
            number_unavailable: Some(0),
            collision_count: None,
            conditions: vec![],
        }),
    };
    let got = decode(&envelope("apps/v1", "DaemonSet", ds.encode_to_vec())).expect("decodes");
    assert_eq!(
        got,
        json!({"apiVersion":"apps/v1","kind":"DaemonSet",
            "metadata":{"name":"agent","labels":{"app":"agent"}},
            "spec":{"selector":{"matchLabels":{"app":"agent"}},
                "template":{"metadata":{"labels":{"app":"agent"}},"spec":{
                    "containers":[{"name":"agent","image":"busybox:1.36"}],
                    "nodeSelector":{"kubernetes.io/os":"linux"},"hostNetwork":true}}}})
    );

    // Every DaemonSet message with its upstream field numbers: strategy with int-or-string
    // values, revisionHistoryLimit 0 (a pointer), status counters and conditions.
    let ds = apps::DaemonSet {
        spec: Some(apps::DaemonSetSpec {
            update_strategy: Some(apps::DaemonSetUpdateStrategy {
                r#type: Some("RollingUpdate".into()),
                rolling_update: Some(apps::RollingUpdateDaemonSet {
                    max_unavailable: Some(IntOrString {
                        r#type: Some(1),
                        int_val: Some(0),
                        str_val: Some("10%".into()),
                    }),
                    max_surge: Some(IntOrString {
                        r#type: Some(0),
                        int_val: Some(0),
                        str_val: Some(String::new()),
                    }),
                }),
            }),
            min_ready_seconds: Some(7),
            revision_history_limit: Some(0),
            ..Default::default()
        }),
        status: Some(apps::DaemonSetStatus {
            current_number_scheduled: Some(2),
            number_misscheduled: Some(1),
            desired_number_scheduled: Some(3),
            number_ready: Some(2),
            observed_generation: Some(4),
            updated_number_scheduled: Some(2),
            number_available: Some(2),
            number_unavailable: Some(1),
            collision_count: Some(0),
            conditions: vec![apps::DaemonSetCondition {
                r#type: Some("Progressing".into()),
                status: Some("True".into()),
                last_transition_time: Some(meta::Time {
                    seconds: Some(1_700_000_000),
                    nanos: Some(0),
                }),
                reason: Some("Updated".into()),
                message: Some(String::new()),
            }],
        }),
        ..Default::default()
    };
    let got = decode(&envelope("apps/v1", "DaemonSet", ds.encode_to_vec())).expect("decodes");
    assert_eq!(
        got["spec"],
        json!({"updateStrategy":{"type":"RollingUpdate","rollingUpdate":{"maxUnavailable":"10%","maxSurge":0}},
            "minReadySeconds":7,"revisionHistoryLimit":0})
    );
    assert_eq!(
        got["status"],
        json!({"currentNumberScheduled":2,"numberMisscheduled":1,"desiredNumberScheduled":3,
            "numberReady":2,"observedGeneration":4,"updatedNumberScheduled":2,"numberAvailable":2,
            "numberUnavailable":1,"collisionCount":0,
            "conditions":[{"type":"Progressing","status":"True","reason":"Updated",
                "lastTransitionTime":"2023-11-14T22:13:20Z"}]})
    );

    // A DaemonSetList (what a typed client would PUT in a list-shaped body).
    let list = apps::DaemonSetList {
        metadata: Some(meta::ListMeta::default()),
        items: vec![apps::DaemonSet {
            metadata: Some(meta::ObjectMeta {
                name: Some("a".into()),
                ..Default::default()
            }),
            ..Default::default()
        }],
    };
    let got = decode(&envelope("apps/v1", "DaemonSetList", list.encode_to_vec())).expect("list");
    assert_eq!(got["items"], json!([{"metadata":{"name":"a"}}]));
}

#[test]
fn cron_job_like_kubectl_create_cronjob() {
    // `kubectl create cronjob hello --image=busybox --schedule='*/1 * * * *' -- date` (1.32+):
    // the Go zero values of non-pointer fields (concurrencyPolicy "", empty status, zero
    // metadata) arrive explicitly and must read as unset; pointers arrive only when set.
    use k8s_pb::api::batch::v1 as batch;
    use k8s_pb::api::core::v1 as core;
    use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
    let zero_meta = |name: &str| meta::ObjectMeta {
        name: Some(name.into()),
        generate_name: Some(String::new()),
        namespace: Some(String::new()),
        uid: Some(String::new()),
        resource_version: Some(String::new()),
        generation: Some(0),
        creation_timestamp: Some(meta::Time::default()),
        ..Default::default()
    };
    let cj = batch::CronJob {
        metadata: Some(zero_meta("hello")),
        spec: Some(batch::CronJobSpec {
            schedule: Some("*/1 * * * *".into()),
            concurrency_policy: Some(String::new()),
            job_template: Some(batch::JobTemplateSpec {
                metadata: Some(zero_meta("hello")),
                spec: Some(batch::JobSpec {
                    template: Some(core::PodTemplateSpec {
                        metadata: Some(zero_meta("")),
                        spec: Some(core::PodSpec {
                            containers: vec![core::Container {
                                name: Some("hello".into()),
                                image: Some("busybox".into()),
                                command: vec!["date".into()],
                                working_dir: Some(String::new()),
                                image_pull_policy: Some(String::new()),
                                stdin: Some(false),
                                resources: Some(core::ResourceRequirements::default()),
                                ..Default::default()
                            }],
                            restart_policy: Some("OnFailure".into()),
                            dns_policy: Some(String::new()),
                            host_network: Some(false),
                            ..Default::default()
                        }),
                    }),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }),
        status: Some(batch::CronJobStatus::default()),
    };
    let got = decode(&envelope("batch/v1", "CronJob", cj.encode_to_vec())).expect("decodes");
    assert_eq!(
        got,
        json!({"apiVersion":"batch/v1","kind":"CronJob","metadata":{"name":"hello"},
            "spec":{"schedule":"*/1 * * * *","jobTemplate":{"metadata":{"name":"hello"},
                "spec":{"template":{"spec":{
                    "containers":[{"name":"hello","image":"busybox","command":["date"]}],
                    "restartPolicy":"OnFailure"}}}}}})
    );
    // Every CronJobSpec field and the status, with upstream's field numbers.
    let cj = batch::CronJob {
        metadata: Some(zero_meta("nightly")),
        spec: Some(batch::CronJobSpec {
            schedule: Some("@daily".into()),
            time_zone: Some("Europe/Berlin".into()),
            starting_deadline_seconds: Some(0),
            concurrency_policy: Some("Forbid".into()),
            suspend: Some(true),
            job_template: Some(batch::JobTemplateSpec {
                metadata: Some(meta::ObjectMeta {
                    labels: [("app".to_string(), "nightly".to_string())].into(),
                    ..Default::default()
                }),
                spec: Some(batch::JobSpec {
                    backoff_limit: Some(2),
                    ..Default::default()
                }),
            }),
            successful_jobs_history_limit: Some(0),
            failed_jobs_history_limit: Some(4),
        }),
        status: Some(batch::CronJobStatus {
            active: vec![core::ObjectReference {
                kind: Some("Job".into()),
                name: Some("nightly-29000000".into()),
                namespace: Some("default".into()),
                ..Default::default()
            }],
            last_schedule_time: Some(meta::Time {
                seconds: Some(1_700_000_000),
                nanos: Some(0),
            }),
            last_successful_time: None,
        }),
    };
    let got = decode(&envelope("batch/v1", "CronJob", cj.encode_to_vec())).expect("decodes");
    assert_eq!(
        got["spec"],
        json!({"schedule":"@daily","timeZone":"Europe/Berlin","startingDeadlineSeconds":0,
            "concurrencyPolicy":"Forbid","suspend":true,
            "jobTemplate":{"metadata":{"labels":{"app":"nightly"}},"spec":{"backoffLimit":2}},
            "successfulJobsHistoryLimit":0,"failedJobsHistoryLimit":4})
    );
    assert_eq!(
        got["status"],
        json!({"active":[{"kind":"Job","name":"nightly-29000000","namespace":"default"}],
            "lastScheduleTime":"2023-11-14T22:13:20Z"})
    );
    // The list kind decodes too (typed clients may send it in tests and tools).
    let list = batch::CronJobList {
        metadata: Some(meta::ListMeta::default()),
        items: vec![cj],
    };
    let got = decode(&envelope("batch/v1", "CronJobList", list.encode_to_vec())).expect("list");
    assert_eq!(got["items"][0]["spec"]["schedule"], "@daily");
}
