//! Defaulting compared with objects a server returned (transcripts 28, 29, 38).

use serde_json::{json, Value};
use skiff_api::defaults::apply_defaults;
use skiff_api::resources::by_kind;

fn defaulted(api_version: &str, kind: &str, mut v: Value) -> Value {
    let info = by_kind(api_version, kind).expect("served kind");
    apply_defaults(info, &mut v);
    v
}

#[test]
fn bare_deployment_like_transcript_28() {
    // The body `kubectl create deployment web --image=registry.example/web:1.0 --replicas=3` sends.
    let d = defaulted(
        "apps/v1",
        "Deployment",
        json!({"apiVersion":"apps/v1","kind":"Deployment",
        "metadata":{"name":"web","labels":{"app":"web"}},
        "spec":{"replicas":3,"selector":{"matchLabels":{"app":"web"}},
          "template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"name":"web","image":"registry.example/web:1.0"}]}}}}),
    );
    assert_eq!(
        d["spec"],
        json!({
            "progressDeadlineSeconds": 600,
            "replicas": 3,
            "revisionHistoryLimit": 10,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}, "type": "RollingUpdate"},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                "containers": [{"image": "registry.example/web:1.0", "imagePullPolicy": "IfNotPresent", "name": "web",
                    "resources": {}, "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File"}],
                "dnsPolicy": "ClusterFirst", "restartPolicy": "Always", "schedulerName": "default-scheduler",
                "securityContext": {}, "terminationGracePeriodSeconds": 30}}
        })
    );
    // Explicit values win; replicas 0 stays 0; Recreate gets no rollingUpdate.
    let d = defaulted(
        "apps/v1",
        "Deployment",
        json!({"spec":{"replicas":0,"strategy":{"type":"Recreate"},
        "template":{"spec":{"containers":[{"name":"c","image":"nginx"}]}}}}),
    );
    assert_eq!(d["spec"]["replicas"], 0);
    assert_eq!(d["spec"]["strategy"], json!({"type":"Recreate"}));
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
        "Always"
    );
}

#[test]
fn pod_like_transcript_29() {
    let p = defaulted(
        "v1",
        "Pod",
        json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"default"},
        "spec":{"nodeName":"node-1","containers":[{"name":"web","image":"registry.example/web:1.0"}]}}),
    );
    assert_eq!(
        p["spec"],
        json!({"containers":[{"image":"registry.example/web:1.0","imagePullPolicy":"IfNotPresent","name":"web","resources":{},
            "terminationMessagePath":"/dev/termination-log","terminationMessagePolicy":"File"}],
            "dnsPolicy":"ClusterFirst","enableServiceLinks":true,"nodeName":"node-1","preemptionPolicy":"PreemptLowerPriority",
            "priority":0,"restartPolicy":"Always","schedulerName":"default-scheduler","securityContext":{},
            "terminationGracePeriodSeconds":30})
    );
    assert_eq!(
        p["status"],
        json!({"phase":"Pending","qosClass":"BestEffort"})
    );
}

#[test]
fn pod_nested_defaults() {
    let p = defaulted(
        "v1",
        "Pod",
        json!({"spec":{"containers":[{"name":"c","image":"nginx:latest",
        "ports":[{"containerPort":80}],
        "env":[{"name":"N","valueFrom":{"fieldRef":{"fieldPath":"metadata.name"}}}],
        "resources":{"limits":{"cpu":"1","memory":"1Gi"}},
        "livenessProbe":{"httpGet":{"port":80}}}],
        "volumes":[{"name":"a","configMap":{"name":"cm"}},{"name":"b"},{"name":"c","secret":{"secretName":"s"}}]}}),
    );
    let c = &p["spec"]["containers"][0];
    assert_eq!(c["imagePullPolicy"], "Always");
    assert_eq!(c["ports"][0]["protocol"], "TCP");
    assert_eq!(c["env"][0]["valueFrom"]["fieldRef"]["apiVersion"], "v1");
    assert_eq!(
        c["resources"]["requests"],
        json!({"cpu":"1","memory":"1Gi"})
    );
    assert_eq!(
        c["livenessProbe"],
        json!({"httpGet":{"port":80,"path":"/","scheme":"HTTP"},"timeoutSeconds":1,"periodSeconds":10,"successThreshold":1,"failureThreshold":3})
    );
    let v = &p["spec"]["volumes"];
    assert_eq!(v[0]["configMap"]["defaultMode"], 420);
    assert_eq!(v[1]["emptyDir"], json!({}));
    assert_eq!(v[2]["secret"]["defaultMode"], 420);
    assert_eq!(p["status"]["qosClass"], "Guaranteed");
}

#[test]
fn service_like_transcript_38() {
    // The body `kubectl expose deployment web --type=NodePort --port=80` sends.
    let s = defaulted(
        "v1",
        "Service",
        json!({"apiVersion":"v1","kind":"Service","metadata":{"labels":{"app":"web"},"name":"web"},
        "spec":{"ports":[{"port":80,"protocol":"TCP","targetPort":80}],"selector":{"app":"web"},"type":"NodePort"}}),
    );
    assert_eq!(
        s["spec"],
        json!({"externalTrafficPolicy":"Cluster","internalTrafficPolicy":"Cluster","ipFamilies":["IPv4"],
            "ipFamilyPolicy":"SingleStack","ports":[{"port":80,"protocol":"TCP","targetPort":80}],
            "selector":{"app":"web"},"sessionAffinity":"None","type":"NodePort"})
    );
    let s = defaulted("v1", "Service", json!({"spec":{"ports":[{"port":8080}]}}));
    assert_eq!(s["spec"]["type"], "ClusterIP");
    assert_eq!(
        s["spec"]["ports"][0],
        json!({"port":8080,"protocol":"TCP","targetPort":8080})
    );
    assert!(s["spec"].get("externalTrafficPolicy").is_none());
}

#[test]
fn namespace_secret_replicaset() {
    let ns = defaulted("v1", "Namespace", json!({"metadata":{"name":"team-a"}}));
    assert_eq!(ns["spec"], json!({"finalizers":["kubernetes"]}));
    assert_eq!(ns["status"], json!({"phase":"Active"}));
    assert_eq!(
        ns["metadata"]["labels"]["kubernetes.io/metadata.name"],
        "team-a"
    );
    let s = defaulted("v1", "Secret", json!({"metadata":{"name":"s"}}));
    assert_eq!(s["type"], "Opaque");
    let rs = defaulted(
        "apps/v1",
        "ReplicaSet",
        json!({"spec":{"template":{"spec":{"containers":[{"name":"c","image":"x@sha256:abc"}]}}}}),
    );
    assert_eq!(rs["spec"]["replicas"], 1);
    assert_eq!(
        rs["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
        "IfNotPresent"
    );
}

/// What the API server does to a new Job: selector generation with the assigned uid, then
/// defaulting.
fn created_job(mut v: Value) -> Value {
    let info = by_kind("batch/v1", "Job").expect("served kind");
    skiff_api::defaults::prepare_create(info, &mut v);
    apply_defaults(info, &mut v);
    v
}

const UID: &str = "0c6d3ad9-5f3c-4b8e-9c1e-2f7f1d8a6b11";

#[test]
fn job_like_kubectl_create_job() {
    // The body `kubectl create job hello --image=busybox -- echo hi` sends.
    let j = created_job(json!({"apiVersion":"batch/v1","kind":"Job",
        "metadata":{"name":"hello","namespace":"default","uid":UID},
        "spec":{"template":{"metadata":{},"spec":{"containers":[{"name":"hello","image":"busybox","command":["echo","hi"]}],
            "restartPolicy":"Never"}}}}));
    let generated = json!({
        "batch.kubernetes.io/controller-uid": UID,
        "batch.kubernetes.io/job-name": "hello",
        "controller-uid": UID,
        "job-name": "hello",
    });
    assert_eq!(
        j["spec"],
        json!({
            "backoffLimit": 6,
            "completionMode": "NonIndexed",
            "completions": 1,
            "manualSelector": false,
            "parallelism": 1,
            "podReplacementPolicy": "TerminatingOrFailed",
            "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": UID}},
            "suspend": false,
            "template": {"metadata": {"labels": generated}, "spec": {
                "containers": [{"command": ["echo", "hi"], "image": "busybox", "imagePullPolicy": "Always",
                    "name": "hello", "resources": {}, "terminationMessagePath": "/dev/termination-log",
                    "terminationMessagePolicy": "File"}],
                "dnsPolicy": "ClusterFirst", "restartPolicy": "Never", "schedulerName": "default-scheduler",
                "securityContext": {}, "terminationGracePeriodSeconds": 30}}
        })
    );
    // The Job's own labels default to its (generated) template labels.
    assert_eq!(j["metadata"]["labels"], generated);
}

#[test]
fn job_defaults_keep_what_is_set() {
    // Parallelism alone leaves completions unset (a work queue).
    let j = created_job(
        json!({"metadata":{"name":"q","uid":UID,"labels":{"team":"a"}},
        "spec":{"parallelism":3,"template":{"metadata":{"labels":{"app":"q"}},
            "spec":{"restartPolicy":"OnFailure","containers":[{"name":"c","image":"busybox:1.36"}]}}}}),
    );
    assert_eq!(j["spec"]["parallelism"], 3);
    assert!(j["spec"].get("completions").is_none(), "{}", j["spec"]);
    // Own labels are kept; user template labels stay next to the generated ones.
    assert_eq!(j["metadata"]["labels"], json!({"team": "a"}));
    assert_eq!(j["spec"]["template"]["metadata"]["labels"]["app"], "q");
    assert_eq!(j["spec"]["template"]["metadata"]["labels"]["job-name"], "q");
    // A restartPolicy left out is defaulted to Always like any pod spec (validation rejects it).
    let j = created_job(json!({"metadata":{"name":"x","uid":UID},
        "spec":{"completions":0,"backoffLimit":0,"suspend":true,"completionMode":"Indexed",
            "podFailurePolicy":{"rules":[{"action":"Ignore","onPodConditions":[{"type":"DisruptionTarget"}]}]},
            "template":{"spec":{"containers":[{"name":"c","image":"i"}]}}}}));
    assert_eq!(j["spec"]["completions"], 0);
    assert_eq!(j["spec"]["parallelism"], 1);
    assert_eq!(j["spec"]["backoffLimit"], 0);
    assert_eq!(j["spec"]["suspend"], true);
    assert_eq!(j["spec"]["completionMode"], "Indexed");
    assert_eq!(j["spec"]["podReplacementPolicy"], "Failed");
    assert_eq!(
        j["spec"]["podFailurePolicy"]["rules"][0]["onPodConditions"][0]["status"],
        "True"
    );
    assert_eq!(j["spec"]["template"]["spec"]["restartPolicy"], "Always");
    // A per-index limit turns the global one off.
    let j = created_job(json!({"metadata":{"name":"x","uid":UID},
        "spec":{"completions":2,"completionMode":"Indexed","backoffLimitPerIndex":1,
            "template":{"spec":{"restartPolicy":"Never","containers":[{"name":"c","image":"i"}]}}}}));
    assert_eq!(j["spec"]["backoffLimit"], 2147483647);
}

#[test]
fn job_selector_generation() {
    // User labels that collide are kept (validation then reports them), the selector gains
    // the uid label next to what was given.
    let j = created_job(json!({"metadata":{"name":"a","uid":UID},
        "spec":{"selector":{"matchLabels":{"x":"y"}},
            "template":{"metadata":{"labels":{"job-name":"other","x":"y"}},
            "spec":{"restartPolicy":"Never","containers":[{"name":"c","image":"i"}]}}}}));
    assert_eq!(
        j["spec"]["selector"],
        json!({"matchLabels":{"x":"y","batch.kubernetes.io/controller-uid":UID}})
    );
    assert_eq!(
        j["spec"]["template"]["metadata"]["labels"]["job-name"],
        "other"
    );
    // manualSelector: the user's selector and labels are left alone.
    let j = created_job(json!({"metadata":{"name":"m","uid":UID},
        "spec":{"manualSelector":true,"selector":{"matchLabels":{"app":"m"}},
            "template":{"metadata":{"labels":{"app":"m"}},
            "spec":{"restartPolicy":"Never","containers":[{"name":"c","image":"i"}]}}}}));
    assert_eq!(j["spec"]["selector"], json!({"matchLabels":{"app":"m"}}));
    assert_eq!(
        j["spec"]["template"]["metadata"]["labels"],
        json!({"app":"m"})
    );
    // Defaulting alone (updates) never generates a selector.
    let info = by_kind("batch/v1", "Job").expect("job");
    let mut u =
        json!({"metadata":{"name":"u","uid":UID},"spec":{"template":{"spec":{"containers":[]}}}});
    apply_defaults(info, &mut u);
    assert!(u["spec"].get("selector").is_none());
}

/// The body `kubectl apply -f ds.yaml` sends for a minimal DaemonSet.
fn bare_daemon_set() -> Value {
    json!({"apiVersion":"apps/v1","kind":"DaemonSet",
        "metadata":{"name":"agent","namespace":"default"},
        "spec":{"selector":{"matchLabels":{"app":"agent"}},
            "template":{"metadata":{"labels":{"app":"agent"}},
                "spec":{"containers":[{"name":"agent","image":"busybox:1.36","command":["sleep","3600"]}]}}}})
}

fn created_daemon_set(mut v: Value) -> Value {
    let info = by_kind("apps/v1", "DaemonSet").expect("served kind");
    skiff_api::defaults::prepare_create(info, &mut v);
    apply_defaults(info, &mut v);
    v
}

#[test]
fn daemon_set_like_kube_apiserver() {
    let d = created_daemon_set(bare_daemon_set());
    // SetDefaults_DaemonSet + the pod template defaults every workload gets.
    assert_eq!(
        d["spec"],
        json!({
            "revisionHistoryLimit": 10,
            "selector": {"matchLabels": {"app": "agent"}},
            "updateStrategy": {"type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}},
            "template": {"metadata": {"labels": {"app": "agent"}}, "spec": {
                "containers": [{"command": ["sleep", "3600"], "image": "busybox:1.36",
                    "imagePullPolicy": "IfNotPresent", "name": "agent", "resources": {},
                    "terminationMessagePath": "/dev/termination-log",
                    "terminationMessagePolicy": "File"}],
                "dnsPolicy": "ClusterFirst", "restartPolicy": "Always",
                "schedulerName": "default-scheduler", "securityContext": {},
                "terminationGracePeriodSeconds": 30}}
        })
    );
    // apps/v1 shows the internal template generation as an annotation; no label defaulting.
    assert_eq!(
        d["metadata"]["annotations"],
        json!({"deprecated.daemonset.template.generation": "1"})
    );
    assert!(d["metadata"].get("labels").is_none());
    // The status counters Go never omits.
    assert_eq!(
        d["status"],
        json!({"currentNumberScheduled": 0, "numberMisscheduled": 0,
            "desiredNumberScheduled": 0, "numberReady": 0})
    );
}

#[test]
fn daemon_set_defaults_keep_what_is_set() {
    let mut v = bare_daemon_set();
    v["spec"]["updateStrategy"] = json!({"type":"OnDelete"});
    v["spec"]["revisionHistoryLimit"] = json!(0);
    v["metadata"]["annotations"] = json!({"team":"infra"});
    let d = created_daemon_set(v);
    // OnDelete gets no rollingUpdate block.
    assert_eq!(d["spec"]["updateStrategy"], json!({"type":"OnDelete"}));
    assert_eq!(d["spec"]["revisionHistoryLimit"], 0);
    assert_eq!(
        d["metadata"]["annotations"],
        json!({"team":"infra","deprecated.daemonset.template.generation":"1"})
    );
    // A partial rolling update is completed, what is set stays.
    let mut v = bare_daemon_set();
    v["spec"]["updateStrategy"] = json!({"rollingUpdate":{"maxSurge":"25%"}});
    let d = created_daemon_set(v);
    assert_eq!(
        d["spec"]["updateStrategy"],
        json!({"type":"RollingUpdate","rollingUpdate":{"maxSurge":"25%","maxUnavailable":1}})
    );
    // A client-sent template generation is kept when it is at least 1 (upstream reads it back).
    let mut v = bare_daemon_set();
    v["metadata"]["annotations"] = json!({"deprecated.daemonset.template.generation":"4"});
    let d = created_daemon_set(v);
    assert_eq!(
        d["metadata"]["annotations"]["deprecated.daemonset.template.generation"],
        "4"
    );
}

#[test]
fn daemon_set_template_generation_on_update() {
    let info = by_kind("apps/v1", "DaemonSet").expect("served kind");
    let old = created_daemon_set(bare_daemon_set());
    let update = |mut new: Value| {
        apply_defaults(info, &mut new);
        skiff_api::defaults::prepare_update(info, &old, &mut new);
        new["metadata"]["annotations"]["deprecated.daemonset.template.generation"].clone()
    };
    // Clients cannot set it; a write that keeps the template keeps it.
    let mut same = old.clone();
    same["metadata"]["annotations"]["deprecated.daemonset.template.generation"] = json!("9");
    same["spec"]["minReadySeconds"] = json!(5);
    assert_eq!(update(same), "1");
    // A template change (set image, rollout restart) bumps it by one.
    let mut image = old.clone();
    image["spec"]["template"]["spec"]["containers"][0]["image"] = json!("busybox:1.37");
    assert_eq!(update(image), "2");
    let mut restart = old.clone();
    restart["spec"]["template"]["metadata"]["annotations"] =
        json!({"kubectl.kubernetes.io/restartedAt":"2026-11-27T01:00:00Z"});
    assert_eq!(update(restart), "2");
    // Dropping the annotation (e.g. a PUT without it) brings it back.
    let mut dropped = old.clone();
    dropped["metadata"]
        .as_object_mut()
        .expect("meta")
        .remove("annotations");
    assert_eq!(update(dropped), "1");
    // Other kinds are left alone.
    let dep = by_kind("apps/v1", "Deployment").expect("deployment");
    let mut d = json!({"metadata":{"name":"x"}});
    skiff_api::defaults::prepare_update(dep, &old, &mut d);
    assert_eq!(d, json!({"metadata":{"name":"x"}}));
}

/// The CronJob body `kubectl create cronjob hello --image=busybox --schedule='*/1 * * * *' --
/// date` sends (protobuf decoded: `concurrencyPolicy` is a Go string, so it arrives as "").
fn cron_job_body() -> Value {
    json!({"apiVersion":"batch/v1","kind":"CronJob","metadata":{"name":"hello"},
        "spec":{"schedule":"*/1 * * * *","concurrencyPolicy":"",
            "jobTemplate":{"metadata":{"name":"hello"},"spec":{"template":{"spec":{
                "containers":[{"name":"hello","image":"busybox","command":["date"]}],
                "restartPolicy":"OnFailure"}}}}}})
}

#[test]
fn cron_job_like_kubectl_create_cronjob() {
    let c = defaulted("batch/v1", "CronJob", cron_job_body());
    // SetDefaults_CronJob, and only pod defaults inside the template: the Job defaults
    // (completions, backoffLimit, ...) and the generated selector come with each Job.
    assert_eq!(
        c["spec"],
        json!({
            "schedule": "*/1 * * * *",
            "concurrencyPolicy": "Allow",
            "suspend": false,
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 1,
            "jobTemplate": {"metadata": {"name": "hello"}, "spec": {"template": {"spec": {
                "containers": [{"command": ["date"], "image": "busybox", "imagePullPolicy": "Always",
                    "name": "hello", "resources": {}, "terminationMessagePath": "/dev/termination-log",
                    "terminationMessagePolicy": "File"}],
                "dnsPolicy": "ClusterFirst", "restartPolicy": "OnFailure", "schedulerName": "default-scheduler",
                "securityContext": {}, "terminationGracePeriodSeconds": 30}}}}
        })
    );
    // No labels are derived from the template and nothing is generated without a uid step.
    assert!(c["metadata"].get("labels").is_none());
    let info = by_kind("batch/v1", "CronJob").expect("cronjob");
    let mut again = cron_job_body();
    skiff_api::defaults::prepare_create(info, &mut again);
    assert_eq!(again, cron_job_body());
}

#[test]
fn cron_job_defaults_keep_what_is_set() {
    let c = defaulted(
        "batch/v1",
        "CronJob",
        json!({"metadata":{"name":"nightly"},"spec":{"schedule":"@daily","concurrencyPolicy":"Forbid",
            "suspend":true,"successfulJobsHistoryLimit":0,"failedJobsHistoryLimit":5,
            "timeZone":"Europe/Berlin","startingDeadlineSeconds":30,
            "jobTemplate":{"spec":{"backoffLimit":1,
                "podFailurePolicy":{"rules":[{"action":"Ignore","onPodConditions":[{"type":"DisruptionTarget"}]}]},
                "template":{"spec":{"restartPolicy":"Never","containers":[{"name":"c","image":"i:1"}]}}}}}}),
    );
    let spec = &c["spec"];
    assert_eq!(
        (
            &spec["concurrencyPolicy"],
            &spec["suspend"],
            &spec["successfulJobsHistoryLimit"],
            &spec["failedJobsHistoryLimit"],
            &spec["timeZone"],
        ),
        (
            &json!("Forbid"),
            &json!(true),
            &json!(0),
            &json!(5),
            &json!("Europe/Berlin")
        )
    );
    let job = &spec["jobTemplate"]["spec"];
    assert_eq!(job["backoffLimit"], 1);
    for unset in [
        "completions",
        "parallelism",
        "completionMode",
        "podReplacementPolicy",
    ] {
        assert!(job.get(unset).is_none(), "{unset}: {job}");
    }
    // Nested-type defaulters do reach into the template.
    assert_eq!(
        job["podFailurePolicy"]["rules"][0]["onPodConditions"][0]["status"],
        "True"
    );
    assert_eq!(
        job["template"]["spec"]["containers"][0]["imagePullPolicy"],
        "IfNotPresent"
    );
    // An unset restartPolicy becomes Always like any pod spec (validation then rejects it).
    let c = defaulted(
        "batch/v1",
        "CronJob",
        json!({"metadata":{"name":"x"},"spec":{"schedule":"@hourly","jobTemplate":{"spec":{
            "template":{"spec":{"containers":[{"name":"c","image":"i"}]}}}}}}),
    );
    assert_eq!(
        c["spec"]["jobTemplate"]["spec"]["template"]["spec"]["restartPolicy"],
        "Always"
    );
}
