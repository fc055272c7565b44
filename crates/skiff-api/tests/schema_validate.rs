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

const UID: &str = "7f1d2c3b-0000-4000-8000-000000000001";

/// A Job as the server stores it after create (generated selector and labels, defaults).
fn job() -> Value {
    let mut j = json!({"apiVersion":"batch/v1","kind":"Job",
        "metadata":{"name":"pi","namespace":"default","uid":UID},
        "spec":{"template":{"spec":{"restartPolicy":"Never",
            "containers":[{"name":"pi","image":"perl","command":["perl","-e","1"]}]}}}});
    let info = info("batch/v1", "Job");
    skiff_api::defaults::prepare_create(info, &mut j);
    skiff_api::defaults::apply_defaults(info, &mut j);
    j
}

fn job_causes(v: &Value, old: Option<&Value>) -> Vec<(String, String, String)> {
    causes("batch/v1", "Job", v, old)
}

fn cause(reason: &str, field: &str, message: &str) -> (String, String, String) {
    (reason.into(), field.into(), message.into())
}

#[test]
fn job_restart_policy_must_be_on_failure_or_never() {
    assert_eq!(job_causes(&job(), None), vec![]);
    let mut j = job();
    j["spec"]["template"]["spec"]["restartPolicy"] = json!("Always");
    let err = validate(info("batch/v1", "Job"), &j, None).expect_err("invalid");
    assert_eq!((err.code, err.reason.as_str()), (422, "Invalid"));
    assert_eq!(
        err.message,
        "Job.batch \"pi\" is invalid: spec.template.spec.restartPolicy: Required value: valid values: \"OnFailure\", \"Never\""
    );
    j["spec"]["template"]["spec"]["restartPolicy"] = json!("Sometimes");
    let c = job_causes(&j, None);
    assert!(
        c.contains(&cause(
            "FieldValueNotSupported",
            "spec.template.spec.restartPolicy",
            "Unsupported value: \"Sometimes\": supported values: \"OnFailure\", \"Never\""
        )),
        "{c:?}"
    );
    // podFailurePolicy needs Never.
    let mut j = job();
    j["spec"]["template"]["spec"]["restartPolicy"] = json!("OnFailure");
    j["spec"]["podFailurePolicy"] =
        json!({"rules":[{"action":"FailJob","onExitCodes":{"operator":"In","values":[42]}}]});
    j["spec"]["podReplacementPolicy"] = json!("Failed");
    assert_eq!(
        job_causes(&j, None),
        vec![cause(
            "FieldValueInvalid",
            "spec.template.spec.restartPolicy",
            "Invalid value: \"OnFailure\": only \"Never\" is supported when podFailurePolicy is specified"
        )]
    );
}

#[test]
fn job_spec_fields() {
    let mut j = job();
    j["spec"]["parallelism"] = json!(-1);
    j["spec"]["backoffLimit"] = json!(-2);
    j["spec"]["completionMode"] = json!("Sometimes");
    j["spec"]["podReplacementPolicy"] = json!("Never");
    let c = job_causes(&j, None);
    assert_eq!(
        c,
        vec![
            cause("FieldValueInvalid", "spec.parallelism", "Invalid value: -1: must be greater than or equal to 0"),
            cause("FieldValueInvalid", "spec.backoffLimit", "Invalid value: -2: must be greater than or equal to 0"),
            cause("FieldValueNotSupported", "spec.completionMode", "Unsupported value: \"Sometimes\": supported values: \"NonIndexed\", \"Indexed\""),
            cause("FieldValueNotSupported", "spec.podReplacementPolicy", "Unsupported value: \"Never\": supported values: \"Failed\", \"TerminatingOrFailed\""),
        ]
    );
    // Indexed needs completions; per-index limits need Indexed.
    let mut j = job();
    j["spec"]["completionMode"] = json!("Indexed");
    j["spec"]
        .as_object_mut()
        .expect("spec")
        .remove("completions");
    assert_eq!(
        job_causes(&j, None),
        vec![cause(
            "FieldValueRequired",
            "spec.completions",
            "Required value: when completion mode is Indexed"
        )]
    );
    let mut j = job();
    j["spec"]["backoffLimitPerIndex"] = json!(1);
    assert_eq!(
        job_causes(&j, None),
        vec![cause(
            "FieldValueInvalid",
            "spec.backoffLimitPerIndex",
            "Invalid value: 1: requires indexed completion mode"
        )]
    );
    // Pod failure policy rules.
    let mut j = job();
    j["spec"]["podReplacementPolicy"] = json!("Failed");
    j["spec"]["podFailurePolicy"] = json!({"rules":[
        {"action":"Explode","onExitCodes":{"operator":"In","values":[3,0,3]}},
        {"action":"Ignore"}]});
    let c = job_causes(&j, None);
    for want in [
        cause("FieldValueNotSupported", "spec.podFailurePolicy.rules[0].action", "Unsupported value: \"Explode\": supported values: \"Count\", \"FailIndex\", \"FailJob\", \"Ignore\""),
        cause("FieldValueInvalid", "spec.podFailurePolicy.rules[0].onExitCodes.values[1]", "Invalid value: 0: must not be 0 for the In operator"),
        cause("FieldValueDuplicate", "spec.podFailurePolicy.rules[0].onExitCodes.values[2]", "Duplicate value: 3"),
        cause("FieldValueInvalid", "spec.podFailurePolicy.rules[0].onExitCodes.values", "Invalid value: [3,0,3]: must be ordered"),
        cause("FieldValueInvalid", "spec.podFailurePolicy.rules[1]", "Invalid value: specifying one of OnExitCodes and OnPodConditions is required"),
    ] {
        assert!(c.contains(&want), "{want:?} not in {c:?}");
    }
    // Success policies need Indexed jobs and valid index lists.
    let mut j = job();
    j["spec"]["completionMode"] = json!("Indexed");
    j["spec"]["completions"] = json!(5);
    j["spec"]["successPolicy"] = json!({"rules":[{"succeededIndexes":"0,2-9"},{"succeededIndexes":"1-3","succeededCount":4}]});
    assert_eq!(
        job_causes(&j, None),
        vec![
            cause("FieldValueInvalid", "spec.successPolicy.rules[0].succeededIndexes", "Invalid value: \"0,2-9\": error parsing succeededIndexes: too large index: \"9\""),
            cause("FieldValueInvalid", "spec.successPolicy.rules[1].succeededCount", "Invalid value: 4: must be less than or equal to 3 (the number of indexes in the specified succeededIndexes field)"),
        ]
    );
}

#[test]
fn job_selector_and_generated_labels() {
    // Labels the server generated must stay as generated.
    let mut j = job();
    j["spec"]["template"]["metadata"]["labels"]["job-name"] = json!("other");
    let c = job_causes(&j, None);
    assert!(
        c.iter().any(|(r, f, m)| r == "FieldValueInvalid"
            && f == "spec.template.metadata.labels[job-name]"
            && m.ends_with(": must be 'pi'")),
        "{c:?}"
    );
    let mut j = job();
    j["spec"]["template"]["metadata"]["labels"]
        .as_object_mut()
        .expect("labels")
        .remove("batch.kubernetes.io/controller-uid");
    let c = job_causes(&j, None);
    assert!(
        c.contains(&cause(
            "FieldValueRequired",
            "spec.template.metadata.labels[batch.kubernetes.io/controller-uid]",
            &format!("Required value: {UID}")
        )),
        "{c:?}"
    );
    // The selector must select the template (manual selectors included).
    let mut j = job();
    j["spec"]["manualSelector"] = json!(true);
    j["spec"]["selector"] = json!({"matchLabels":{"app":"nope"}});
    let c = job_causes(&j, None);
    assert_eq!(c.len(), 1, "{c:?}");
    assert_eq!(c[0].1, "spec.template.metadata.labels");
    assert!(
        c[0].2
            .ends_with("`selector` does not match template `labels`"),
        "{c:?}"
    );
    // A generated-selector Job whose selector is not the generated one.
    let mut j = job();
    j["spec"]["template"]["metadata"]["labels"]["app"] = json!("x");
    j["spec"]["selector"] = json!({"matchLabels":{"app":"x"}});
    let c = job_causes(&j, None);
    assert_eq!(c.len(), 1, "{c:?}");
    assert_eq!(c[0].1, "spec.selector");
    assert!(c[0].2.ends_with("`selector` not auto-generated"), "{c:?}");
    // manualSelector without any selector.
    let mut j = job();
    j["spec"]["manualSelector"] = json!(true);
    j["spec"].as_object_mut().expect("spec").remove("selector");
    assert_eq!(
        job_causes(&j, None),
        vec![cause(
            "FieldValueRequired",
            "spec.selector",
            "Required value"
        )]
    );
}

#[test]
fn job_update_immutability() {
    let old = job();
    // Metadata and mutable spec fields may change.
    let mut j = old.clone();
    j["metadata"]["labels"]["extra"] = json!("1");
    j["spec"]["parallelism"] = json!(4);
    j["spec"]["suspend"] = json!(true);
    j["spec"]["backoffLimit"] = json!(1);
    assert_eq!(job_causes(&j, Some(&old)), vec![]);
    // Selector, template and completions may not.
    let mut j = old.clone();
    j["spec"]["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"] = json!("x");
    j["spec"]["template"]["spec"]["containers"][0]["image"] = json!("perl:5");
    j["spec"]["completions"] = json!(3);
    let c = job_causes(&j, Some(&old));
    let fields: Vec<&str> = c
        .iter()
        .filter(|(_, _, m)| m.ends_with("field is immutable"))
        .map(|(_, f, _)| f.as_str())
        .collect();
    assert_eq!(
        fields,
        ["spec.completions", "spec.selector", "spec.template"],
        "{c:?}"
    );
    assert!(c.contains(&cause(
        "FieldValueInvalid",
        "spec.completions",
        "Invalid value: 3: field is immutable"
    )));
    // A suspended Job that never started may change its scheduling directives only.
    let mut suspended = old.clone();
    suspended["spec"]["suspend"] = json!(true);
    let mut j = suspended.clone();
    j["spec"]["template"]["spec"]["nodeSelector"] = json!({"disk":"ssd"});
    j["spec"]["template"]["spec"]["tolerations"] = json!([{"key":"k","operator":"Exists"}]);
    assert_eq!(job_causes(&j, Some(&suspended)), vec![]);
    j["spec"]["template"]["spec"]["containers"][0]["image"] = json!("perl:5");
    assert_eq!(job_causes(&j, Some(&suspended)).len(), 1);
    // Once it has started, not even those.
    suspended["status"] = json!({"startTime":"2026-01-01T00:00:00Z"});
    let mut j = suspended.clone();
    j["spec"]["template"]["spec"]["nodeSelector"] = json!({"disk":"ssd"});
    let c = job_causes(&j, Some(&suspended));
    assert_eq!(c.len(), 1, "{c:?}");
    assert_eq!(c[0].1, "spec.template");
}

#[test]
fn job_status_transitions() {
    let mut old = job();
    old["status"] =
        json!({"startTime":"2026-01-01T00:00:00Z","active":1,"succeeded":0,"failed":1,"ready":0});
    let with_status = |s: Value| {
        let mut j = old.clone();
        j["status"] = s;
        j
    };
    // The controller's normal path: a pod succeeds, the Job completes.
    let done = with_status(
        json!({"startTime":"2026-01-01T00:00:00Z","completionTime":"2026-01-01T00:00:07Z",
        "active":0,"succeeded":1,"failed":1,"ready":0,"uncountedTerminatedPods":{},
        "conditions":[{"type":"SuccessCriteriaMet","status":"True"},{"type":"Complete","status":"True"}]}),
    );
    assert_eq!(job_causes(&done, Some(&old)), vec![]);
    // Complete needs a completion time and no active pods; counters only grow.
    let bad = with_status(
        json!({"startTime":"2026-01-01T00:00:00Z","active":1,"succeeded":1,"failed":0,
        "conditions":[{"type":"Complete","status":"True"}]}),
    );
    assert_eq!(
        job_causes(&bad, Some(&old)),
        vec![
            cause(
                "FieldValueInvalid",
                "status.failed",
                "Invalid value: 0: cannot decrease the failed counter"
            ),
            cause(
                "FieldValueRequired",
                "status.completionTime",
                "Required value: completionTime is required for Complete jobs"
            ),
            cause(
                "FieldValueInvalid",
                "status.active",
                "Invalid value: 1: active>0 is invalid for finished job"
            ),
        ]
    );
    // A finished Job stays finished.
    let reopened = {
        let mut j = done.clone();
        j["status"]["conditions"] = json!([{"type":"SuccessCriteriaMet","status":"True"}]);
        j["status"]
            .as_object_mut()
            .expect("status")
            .remove("completionTime");
        j
    };
    let c = job_causes(&reopened, Some(&done));
    assert!(
        c.contains(&cause(
            "FieldValueInvalid",
            "status.conditions",
            "Invalid value: cannot disable the terminal Complete=True condition"
        )),
        "{c:?}"
    );
    let neg = with_status(json!({"startTime":"2026-01-01T00:00:00Z","active":-1,"failed":1}));
    assert_eq!(
        job_causes(&neg, Some(&old)),
        vec![cause(
            "FieldValueInvalid",
            "status.active",
            "Invalid value: -1: must be greater than or equal to 0"
        )]
    );
}

#[test]
fn job_unknown_fields() {
    let mut j = job();
    assert!(unknown_fields(info("batch/v1", "Job"), &j).is_empty());
    j["spec"]["completion"] = json!(2);
    j["spec"]["template"]["spec"]["restartPolicyy"] = json!("Never");
    assert_eq!(
        unknown_fields(info("batch/v1", "Job"), &j),
        vec!["spec.completion", "spec.template.spec.restartPolicyy"]
    );
}

/// A DaemonSet as the server stores it after create (defaults applied).
fn daemon_set() -> Value {
    let mut d = json!({"apiVersion":"apps/v1","kind":"DaemonSet",
        "metadata":{"name":"agent","namespace":"default"},
        "spec":{"selector":{"matchLabels":{"app":"agent"}},
            "template":{"metadata":{"labels":{"app":"agent"}},
                "spec":{"containers":[{"name":"agent","image":"busybox:1.36"}]}}}});
    let info = info("apps/v1", "DaemonSet");
    skiff_api::defaults::prepare_create(info, &mut d);
    skiff_api::defaults::apply_defaults(info, &mut d);
    d
}

fn ds_causes(v: &Value, old: Option<&Value>) -> Vec<(String, String, String)> {
    causes("apps/v1", "DaemonSet", v, old)
}

#[test]
fn daemon_set_selector_and_template() {
    assert_eq!(ds_causes(&daemon_set(), None), vec![]);
    // No selector: it selects nothing, so upstream reports the template labels (422).
    let mut d = daemon_set();
    d["spec"].as_object_mut().expect("spec").remove("selector");
    let err = validate(info("apps/v1", "DaemonSet"), &d, None).expect_err("invalid");
    assert_eq!((err.code, err.reason.as_str()), (422, "Invalid"));
    assert_eq!(
        err.message,
        "DaemonSet.apps \"agent\" is invalid: spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"agent\"}: `selector` does not match template `labels`"
    );
    let details = err.details.expect("details");
    assert_eq!(details["kind"], "DaemonSet");
    assert_eq!(details["group"], "apps");
    // A selector that does not match, and an empty one.
    let mut d = daemon_set();
    d["spec"]["selector"] = json!({"matchLabels":{"app":"other"}});
    assert_eq!(
        ds_causes(&d, None),
        vec![cause(
            "FieldValueInvalid",
            "spec.template.metadata.labels",
            "Invalid value: map[string]string{\"app\":\"agent\"}: `selector` does not match template `labels`"
        )]
    );
    d["spec"]["selector"] = json!({});
    assert_eq!(
        ds_causes(&d, None),
        vec![cause(
            "FieldValueInvalid",
            "spec.selector",
            "Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for daemonset"
        )]
    );
    // Set-based selectors match; an invalid operator reports only the selector.
    let mut d = daemon_set();
    d["spec"]["selector"] =
        json!({"matchExpressions":[{"key":"app","operator":"In","values":["agent","x"]}]});
    assert_eq!(ds_causes(&d, None), vec![]);
    d["spec"]["selector"] = json!({"matchExpressions":[{"key":"app","operator":"Like"}]});
    assert_eq!(
        ds_causes(&d, None),
        vec![cause(
            "FieldValueInvalid",
            "spec.selector.matchExpressions[0].operator",
            "Invalid value: \"Like\": not a valid selector operator"
        )]
    );
    // Template: restartPolicy must be Always, no activeDeadlineSeconds, containers required.
    let mut d = daemon_set();
    d["spec"]["template"]["spec"]["restartPolicy"] = json!("OnFailure");
    d["spec"]["template"]["spec"]["activeDeadlineSeconds"] = json!(30);
    d["spec"]["minReadySeconds"] = json!(-1);
    d["spec"]["revisionHistoryLimit"] = json!(-2);
    assert_eq!(
        ds_causes(&d, None),
        vec![
            cause(
                "FieldValueNotSupported",
                "spec.template.spec.restartPolicy",
                "Unsupported value: \"OnFailure\": supported values: \"Always\""
            ),
            cause(
                "FieldValueForbidden",
                "spec.template.spec.activeDeadlineSeconds",
                "Forbidden: activeDeadlineSeconds in DaemonSet is not Supported"
            ),
            cause(
                "FieldValueInvalid",
                "spec.minReadySeconds",
                "Invalid value: -1: must be greater than or equal to 0"
            ),
            cause(
                "FieldValueInvalid",
                "spec.revisionHistoryLimit",
                "Invalid value: -2: must be greater than or equal to 0"
            ),
        ]
    );
    let mut d = daemon_set();
    d["spec"]["template"]["spec"]["containers"] = json!([]);
    assert_eq!(
        ds_causes(&d, None),
        vec![cause(
            "FieldValueRequired",
            "spec.template.spec.containers",
            "Required value"
        )]
    );
}

#[test]
fn daemon_set_update_strategy() {
    let with = |strategy: Value| {
        let mut d = daemon_set();
        d["spec"]["updateStrategy"] = strategy;
        ds_causes(&d, None)
    };
    assert_eq!(with(json!({"type":"OnDelete"})), vec![]);
    assert_eq!(
        with(json!({"type":"RollingUpdate","rollingUpdate":{"maxUnavailable":0,"maxSurge":"10%"}})),
        vec![]
    );
    assert_eq!(
        with(json!({"type":"Sometimes"})),
        vec![cause(
            "FieldValueNotSupported",
            "spec.updateStrategy",
            "Unsupported value: apps.DaemonSetUpdateStrategy{Type:\"Sometimes\", RollingUpdate:(*apps.RollingUpdateDaemonSet)(nil)}: supported values: \"RollingUpdate\", \"OnDelete\""
        )]
    );
    assert_eq!(
        with(json!({"type":"RollingUpdate","rollingUpdate":{"maxUnavailable":0,"maxSurge":0}})),
        vec![cause(
            "FieldValueRequired",
            "spec.updateStrategy.rollingUpdate.maxUnavailable",
            "Required value: cannot be 0 when maxSurge is 0"
        )]
    );
    // "0%" is zero too.
    assert_eq!(
        with(json!({"type":"RollingUpdate","rollingUpdate":{"maxUnavailable":"0%","maxSurge":0}}))
            .len(),
        1
    );
    assert_eq!(
        with(json!({"type":"RollingUpdate","rollingUpdate":{"maxUnavailable":1,"maxSurge":1}})),
        vec![cause(
            "FieldValueInvalid",
            "spec.updateStrategy.rollingUpdate.maxSurge",
            "Invalid value: intstr.IntOrString{Type:0, IntVal:1, StrVal:\"\"}: may not be set when maxUnavailable is non-zero"
        )]
    );
    assert_eq!(
        with(json!({"type":"RollingUpdate","rollingUpdate":{"maxUnavailable":"ten","maxSurge":-1}})),
        vec![
            cause(
                "FieldValueInvalid",
                "spec.updateStrategy.rollingUpdate.maxUnavailable",
                "Invalid value: intstr.IntOrString{Type:1, IntVal:0, StrVal:\"ten\"}: a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')"
            ),
            cause(
                "FieldValueInvalid",
                "spec.updateStrategy.rollingUpdate.maxSurge",
                "Invalid value: -1: must be greater than or equal to 0"
            ),
            // -1 counts as "set", "ten" as 0.
        ]
    );
    assert_eq!(
        with(json!({"type":"RollingUpdate","rollingUpdate":{"maxUnavailable":"150%","maxSurge":0}})),
        vec![cause(
            "FieldValueInvalid",
            "spec.updateStrategy.rollingUpdate.maxUnavailable",
            "Invalid value: intstr.IntOrString{Type:1, IntVal:0, StrVal:\"150%\"}: must not be greater than 100%"
        )]
    );
}

#[test]
fn daemon_set_updates_and_status() {
    let old = daemon_set();
    // The selector is immutable (even to something that still matches).
    let mut new = daemon_set();
    new["spec"]["selector"] = json!({"matchLabels":{"app":"agent","tier":"node"}});
    new["spec"]["template"]["metadata"]["labels"] = json!({"app":"agent","tier":"node"});
    assert_eq!(
        ds_causes(&new, Some(&old)),
        vec![cause(
            "FieldValueInvalid",
            "spec.selector",
            "Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"agent\", \"tier\":\"node\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"
        )]
    );
    // Semantically equal selectors (an empty list spelled out) are not a change.
    let mut same = daemon_set();
    same["spec"]["selector"]["matchExpressions"] = json!([]);
    assert_eq!(ds_causes(&same, Some(&old)), vec![]);
    // The template, strategy and the rest may change.
    let mut new = daemon_set();
    new["spec"]["template"]["spec"]["containers"][0]["image"] = json!("busybox:1.37");
    new["spec"]["updateStrategy"] = json!({"type":"OnDelete"});
    new["spec"]["minReadySeconds"] = json!(10);
    assert_eq!(ds_causes(&new, Some(&old)), vec![]);
    // Status writes: counters non-negative, collisionCount never decreases.
    let mut old = daemon_set();
    old["status"] = json!({"desiredNumberScheduled":1,"collisionCount":2});
    let mut new = old.clone();
    new["status"] = json!({"desiredNumberScheduled":-1,"numberReady":-2,"observedGeneration":-1,
        "collisionCount":1});
    assert_eq!(
        ds_causes(&new, Some(&old)),
        vec![
            cause(
                "FieldValueInvalid",
                "status.desiredNumberScheduled",
                "Invalid value: -1: must be greater than or equal to 0"
            ),
            cause(
                "FieldValueInvalid",
                "status.numberReady",
                "Invalid value: -2: must be greater than or equal to 0"
            ),
            cause(
                "FieldValueInvalid",
                "status.observedGeneration",
                "Invalid value: -1: must be greater than or equal to 0"
            ),
            cause(
                "FieldValueInvalid",
                "status.collisionCount",
                "Invalid value: 1: cannot be decremented"
            ),
        ]
    );
    // What the controller writes is fine.
    let mut new = old.clone();
    new["status"] = json!({"currentNumberScheduled":1,"desiredNumberScheduled":1,"numberReady":1,
        "numberMisscheduled":0,"updatedNumberScheduled":1,"numberAvailable":1,"observedGeneration":1,
        "collisionCount":2});
    assert_eq!(ds_causes(&new, Some(&old)), vec![]);
}

#[test]
fn daemon_set_unknown_fields() {
    // `kubectl apply` of a typo under strict validation.
    let mut d = daemon_set();
    d["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailabel"] = json!(1);
    d["spec"]["template"]["spec"]["nodeSelecter"] = json!({});
    assert_eq!(
        unknown_fields(info("apps/v1", "DaemonSet"), &d),
        vec![
            "spec.template.spec.nodeSelecter",
            "spec.updateStrategy.rollingUpdate.maxUnavailabel"
        ]
    );
    assert!(unknown_fields(info("apps/v1", "DaemonSet"), &daemon_set()).is_empty());
}

/// A CronJob as the server stores it after create (defaults applied).
fn cron_job() -> Value {
    let mut c = json!({"apiVersion":"batch/v1","kind":"CronJob",
        "metadata":{"name":"hello","namespace":"default","uid":UID},
        "spec":{"schedule":"*/1 * * * *","jobTemplate":{"metadata":{"name":"hello"},"spec":{"template":{"spec":{
            "restartPolicy":"OnFailure","containers":[{"name":"hello","image":"busybox","command":["date"]}]}}}}}});
    skiff_api::defaults::apply_defaults(info("batch/v1", "CronJob"), &mut c);
    c
}

fn cj_causes(v: &Value, old: Option<&Value>) -> Vec<(String, String, String)> {
    causes("batch/v1", "CronJob", v, old)
}

/// `v` with the field at `pointer` set (its parent must exist).
fn with(mut v: Value, pointer: &str, value: Value) -> Value {
    let (parent, key) = pointer.rsplit_once('/').expect("pointer");
    v.pointer_mut(parent).expect("parent")[key] = value;
    v
}

#[test]
fn cron_job_schedules() {
    assert_eq!(cj_causes(&cron_job(), None), vec![]);
    for ok in ["@midnight", "@every 2h", "0 9 * * mon-fri", "*/5 * ? * *"] {
        let c = with(cron_job(), "/spec/schedule", json!(ok));
        assert_eq!(cj_causes(&c, None), vec![], "{ok}");
    }
    // The 422 kubectl prints for a bad schedule, upstream's robfig/cron text included.
    let bad = with(cron_job(), "/spec/schedule", json!("bad"));
    let err = validate(info("batch/v1", "CronJob"), &bad, None).expect_err("invalid");
    assert_eq!((err.code, err.reason.as_str()), (422, "Invalid"));
    assert_eq!(
        err.message,
        "CronJob.batch \"hello\" is invalid: spec.schedule: Invalid value: \"bad\": expected exactly 5 fields, found 1: [bad]"
    );
    assert_eq!(
        cj_causes(
            &with(cron_job(), "/spec/schedule", json!("0 0 * * 7")),
            None
        ),
        vec![cause(
            "FieldValueInvalid",
            "spec.schedule",
            "Invalid value: \"0 0 * * 7\": end of range (7) above maximum (6): 7"
        )]
    );
    assert_eq!(
        cj_causes(&with(cron_job(), "/spec/schedule", json!("")), None),
        vec![cause(
            "FieldValueRequired",
            "spec.schedule",
            "Required value"
        )]
    );
    // TZ inside the schedule: parsed (a valid zone), then refused in favour of timeZone.
    let tz = with(cron_job(), "/spec/schedule", json!("TZ=UTC 0 * * * *"));
    assert_eq!(
        cj_causes(&tz, None),
        vec![cause(
            "FieldValueInvalid",
            "spec.schedule",
            "Invalid value: \"TZ=UTC 0 * * * *\": cannot use TZ or CRON_TZ in schedule, use timeZone field instead"
        )]
    );
    let bad_tz = with(
        cron_job(),
        "/spec/schedule",
        json!("CRON_TZ=Nowhere/Land 0 * * * *"),
    );
    let c = cj_causes(&bad_tz, None);
    assert_eq!(c.len(), 2, "{c:?}");
    assert_eq!(
        c[0].2,
        "Invalid value: \"CRON_TZ=Nowhere/Land 0 * * * *\": provided bad location Nowhere/Land: unknown time zone Nowhere/Land"
    );
    // A CronJob stored with TZ (from before the timeZone field) may keep it on updates, but
    // not together with timeZone.
    assert_eq!(cj_causes(&tz, Some(&tz)), vec![]);
    let both = with(tz.clone(), "/spec/timeZone", json!("UTC"));
    assert_eq!(
        cj_causes(&both, Some(&tz)),
        vec![cause(
            "FieldValueInvalid",
            "spec.schedule",
            "Invalid value: \"TZ=UTC 0 * * * *\": cannot use both timeZone field and TZ or CRON_TZ in schedule"
        )]
    );
}

#[test]
fn cron_job_time_zones() {
    for ok in [
        "Europe/Berlin",
        "America/Argentina/Buenos_Aires",
        "UTC",
        "Etc/GMT+5",
    ] {
        let c = with(cron_job(), "/spec/timeZone", json!(ok));
        assert_eq!(cj_causes(&c, None), vec![], "{ok}");
    }
    let tz_causes = |tz: &str| {
        let c = with(cron_job(), "/spec/timeZone", json!(tz));
        cj_causes(&c, None)
    };
    assert_eq!(
        tz_causes("Mars/Olympus_Mons"),
        vec![cause(
            "FieldValueInvalid",
            "spec.timeZone",
            "Invalid value: \"Mars/Olympus_Mons\": unknown time zone Mars/Olympus_Mons"
        )]
    );
    // Character and length rules come first (a part longer than 14 characters).
    assert_eq!(
        tz_causes("America/Argentina_Buenos_Aires")[0].2,
        "Invalid value: \"America/Argentina_Buenos_Aires\": unknown time zone America/Argentina_Buenos_Aires"
    );
    assert_eq!(
        tz_causes(""),
        vec![cause(
            "FieldValueInvalid",
            "spec.timeZone",
            "Invalid value: \"\": timeZone must be nil or non-empty string"
        )]
    );
    assert_eq!(
        tz_causes("Local"),
        vec![cause(
            "FieldValueInvalid",
            "spec.timeZone",
            "Invalid value: \"Local\": timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones"
        )]
    );
    // Names are case-sensitive like Go's zone files.
    assert_eq!(tz_causes("europe/berlin").len(), 1);
    // An unchanged zone is not checked again on updates.
    let stored = with(cron_job(), "/spec/timeZone", json!("Mars/Olympus_Mons"));
    let update = with(stored.clone(), "/spec/suspend", json!(true));
    assert_eq!(cj_causes(&update, Some(&stored)), vec![]);
}

#[test]
fn cron_job_spec_fields() {
    let mut c = cron_job();
    c["spec"]["concurrencyPolicy"] = json!("Sometimes");
    c["spec"]["startingDeadlineSeconds"] = json!(-1);
    c["spec"]["successfulJobsHistoryLimit"] = json!(-1);
    c["spec"]["failedJobsHistoryLimit"] = json!(-2);
    assert_eq!(
        cj_causes(&c, None),
        vec![
            cause("FieldValueInvalid", "spec.startingDeadlineSeconds", "Invalid value: -1: must be greater than or equal to 0"),
            cause("FieldValueNotSupported", "spec.concurrencyPolicy", "Unsupported value: \"Sometimes\": supported values: \"Allow\", \"Forbid\", \"Replace\""),
            cause("FieldValueInvalid", "spec.successfulJobsHistoryLimit", "Invalid value: -1: must be greater than or equal to 0"),
            cause("FieldValueInvalid", "spec.failedJobsHistoryLimit", "Invalid value: -2: must be greater than or equal to 0"),
        ]
    );
    // Zero limits are fine.
    let mut c = cron_job();
    c["spec"]["successfulJobsHistoryLimit"] = json!(0);
    c["spec"]["startingDeadlineSeconds"] = json!(0);
    assert_eq!(cj_causes(&c, None), vec![]);
}

#[test]
fn cron_job_template_is_a_job_spec_without_selector() {
    let rp = "/spec/jobTemplate/spec/template/spec/restartPolicy";
    let always = with(cron_job(), rp, json!("Always"));
    let err = validate(info("batch/v1", "CronJob"), &always, None).expect_err("invalid");
    assert_eq!(
        err.message,
        "CronJob.batch \"hello\" is invalid: spec.jobTemplate.spec.template.spec.restartPolicy: Required value: valid values: \"OnFailure\", \"Never\""
    );
    // The pod spec's own check and the Job's, as upstream reports both.
    assert_eq!(
        cj_causes(&with(cron_job(), rp, json!("Sometimes")), None),
        vec![
            cause(
                "FieldValueNotSupported",
                "spec.jobTemplate.spec.template.spec.restartPolicy",
                "Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\""
            ),
            cause(
                "FieldValueNotSupported",
                "spec.jobTemplate.spec.template.spec.restartPolicy",
                "Unsupported value: \"Sometimes\": supported values: \"OnFailure\", \"Never\""
            )
        ]
    );
    // The Job rules with the template's field paths.
    let mut c = cron_job();
    let spec = &mut c["spec"]["jobTemplate"]["spec"];
    spec["parallelism"] = json!(-1);
    spec["completionMode"] = json!("Indexed");
    spec["template"]["spec"]["containers"][0]["name"] = json!("Bad_Name");
    let got = cj_causes(&c, None);
    for want in [
        cause(
            "FieldValueInvalid",
            "spec.jobTemplate.spec.parallelism",
            "Invalid value: -1: must be greater than or equal to 0",
        ),
        cause(
            "FieldValueRequired",
            "spec.jobTemplate.spec.completions",
            "Required value: when completion mode is Indexed",
        ),
    ] {
        assert!(got.contains(&want), "{want:?} not in {got:?}");
    }
    assert!(
        got.iter()
            .any(|(_, f, _)| f == "spec.jobTemplate.spec.template.spec.containers[0].name"),
        "{got:?}"
    );
    // No selector of its own (each Job's is generated), no manual selection.
    let mut c = cron_job();
    c["spec"]["jobTemplate"]["spec"]["selector"] = json!({"matchLabels":{"app":"x"}});
    c["spec"]["jobTemplate"]["spec"]["manualSelector"] = json!(true);
    assert_eq!(
        cj_causes(&c, None),
        vec![
            cause("FieldValueInvalid", "spec.jobTemplate.spec.selector", "Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"x\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: `selector` will be auto-generated"),
            cause("FieldValueNotSupported", "spec.jobTemplate.spec.manualSelector", "Unsupported value: true: supported values: \"nil\", \"false\""),
        ]
    );
    // manualSelector false is accepted, and a template without labels needs no selector.
    let c = with(
        cron_job(),
        "/spec/jobTemplate/spec/manualSelector",
        json!(false),
    );
    assert_eq!(cj_causes(&c, None), vec![]);
}

#[test]
fn cron_job_name_length_on_create_only() {
    let long = "a".repeat(53);
    let c = with(cron_job(), "/metadata/name", json!(long));
    assert_eq!(
        cj_causes(&c, None),
        vec![cause(
            "FieldValueInvalid",
            "metadata.name",
            &format!("Invalid value: \"{long}\": must be no more than 52 characters")
        )]
    );
    assert_eq!(cj_causes(&c, Some(&c)), vec![]);
    let ok = with(cron_job(), "/metadata/name", json!("a".repeat(52)));
    assert_eq!(cj_causes(&ok, None), vec![]);
}

#[test]
fn cron_job_unknown_fields() {
    let mut c = cron_job();
    assert!(unknown_fields(info("batch/v1", "CronJob"), &c).is_empty());
    c["spec"]["schedul"] = json!("x");
    c["spec"]["jobTemplate"]["spec"]["backofLimit"] = json!(1);
    assert_eq!(
        unknown_fields(info("batch/v1", "CronJob"), &c),
        vec!["spec.jobTemplate.spec.backofLimit", "spec.schedul"]
    );
}
