//! Table printing and age formatting.

use serde_json::{json, Value};
use skiff_api::resources::by_plural;
use skiff_api::table::{human_duration, to_table, IncludeObject};

fn now() -> jiff::Timestamp {
    "2026-11-27T01:10:00Z".parse().expect("time")
}

fn table(group: &str, plural: &str, objs: &[Value]) -> Value {
    let info = by_plural(group, "v1", plural).expect("resource");
    to_table(
        info,
        objs,
        IncludeObject::Metadata,
        json!({"resourceVersion":"7"}),
        now(),
    )
}

fn headers(t: &Value) -> Vec<(String, i64)> {
    t["columnDefinitions"]
        .as_array()
        .expect("columns")
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap_or("").to_string(),
                c["priority"].as_i64().unwrap_or(-1),
            )
        })
        .collect()
}

fn pod(status: Value) -> Value {
    json!({"metadata":{"name":"p","namespace":"default","creationTimestamp":"2026-11-27T01:09:53Z","labels":{"app":"web"}},
           "spec":{"nodeName":"node-1","containers":[{"name":"c","image":"i"}]},
           "status": status})
}

#[test]
fn human_duration_table() {
    let cases = [
        (-5, "<invalid>"),
        (-1, "0s"),
        (0, "0s"),
        (5, "5s"),
        (119, "119s"),
        (120, "2m"),
        (182, "3m2s"),
        (600, "10m"),
        (179 * 60, "179m"),
        (3 * 3600, "3h"),
        (5 * 3600 + 30 * 60, "5h30m"),
        (8 * 3600, "8h"),
        (47 * 3600, "47h"),
        (2 * 86400 + 3 * 3600, "2d3h"),
        (3 * 86400, "3d"),
        (30 * 86400, "30d"),
        (2 * 365 * 86400 + 20 * 86400, "2y20d"),
        (9 * 365 * 86400, "9y"),
    ];
    for (secs, want) in cases {
        assert_eq!(human_duration(secs), want, "{secs}");
    }
}

#[test]
fn table_shape_and_partial_metadata() {
    let t = table(
        "",
        "pods",
        &[pod(
            json!({"phase":"Running","podIP":"10.0.0.5","containerStatuses":[{"name":"c","ready":true,"restartCount":0,"state":{"running":{}}}]}),
        )],
    );
    assert_eq!(t["kind"], "Table");
    assert_eq!(t["apiVersion"], "meta.k8s.io/v1");
    assert_eq!(t["metadata"], json!({"resourceVersion":"7"}));
    assert_eq!(
        headers(&t),
        [
            ("Name", 0),
            ("Ready", 0),
            ("Status", 0),
            ("Restarts", 0),
            ("Age", 0),
            ("IP", 1),
            ("Node", 1),
            ("Nominated Node", 1),
            ("Readiness Gates", 1)
        ]
        .map(|(n, p)| (n.to_string(), p))
    );
    assert_eq!(t["columnDefinitions"][0]["format"], "name");
    let row = &t["rows"][0];
    assert_eq!(
        row["cells"],
        json!(["p", "1/1", "Running", "0", "7s", "10.0.0.5", "node-1", "<none>", "<none>"])
    );
    assert_eq!(row["object"]["kind"], "PartialObjectMetadata");
    assert_eq!(row["object"]["apiVersion"], "meta.k8s.io/v1");
    assert_eq!(row["object"]["metadata"]["namespace"], "default");

    let info = by_plural("", "v1", "pods").expect("pods");
    let none = to_table(
        info,
        &[pod(json!({}))],
        IncludeObject::None,
        json!({}),
        now(),
    );
    assert!(none["rows"][0].get("object").is_none());
    let full = to_table(
        info,
        &[pod(json!({}))],
        IncludeObject::Object,
        json!({}),
        now(),
    );
    assert_eq!(full["rows"][0]["object"]["kind"], "Pod");
    assert_eq!(full["rows"][0]["object"]["spec"]["nodeName"], "node-1");
}

#[test]
fn pod_status_situations() {
    let cases: Vec<(Value, Option<&str>, &str, &str, &str)> = vec![
        // (status, deletionTimestamp, ready, STATUS, RESTARTS)
        (json!({"phase":"Pending"}), None, "0/1", "Pending", "0"),
        (
            json!({"phase":"Pending","containerStatuses":[{"name":"c","ready":false,"restartCount":0,"state":{"waiting":{"reason":"ContainerCreating"}}}]}),
            None,
            "0/1",
            "ContainerCreating",
            "0",
        ),
        (
            json!({"phase":"Running","containerStatuses":[{"name":"c","ready":false,"restartCount":5,
            "state":{"waiting":{"reason":"CrashLoopBackOff"}},
            "lastState":{"terminated":{"exitCode":1,"reason":"Error","finishedAt":"2026-11-27T01:05:00Z"}}}]}),
            None,
            "0/1",
            "CrashLoopBackOff",
            "5 (5m ago)",
        ),
        (
            json!({"phase":"Succeeded","containerStatuses":[{"name":"c","ready":false,"restartCount":0,"state":{"terminated":{"exitCode":0,"reason":"Completed"}}}]}),
            None,
            "0/1",
            "Completed",
            "0",
        ),
        (
            json!({"phase":"Failed","containerStatuses":[{"name":"c","ready":false,"restartCount":0,"state":{"terminated":{"exitCode":137}}}]}),
            None,
            "0/1",
            "ExitCode:137",
            "0",
        ),
        (
            json!({"phase":"Running","containerStatuses":[{"name":"c","ready":true,"restartCount":0,"state":{"running":{}}}]}),
            Some("2026-11-27T01:09:59Z"),
            "1/1",
            "Terminating",
            "0",
        ),
        (
            json!({"phase":"Failed","reason":"Evicted"}),
            None,
            "0/1",
            "Evicted",
            "0",
        ),
        (
            json!({"phase":"Pending","conditions":[{"type":"PodScheduled","status":"False","reason":"SchedulingGated"}]}),
            None,
            "0/1",
            "SchedulingGated",
            "0",
        ),
    ];
    for (status, deletion, ready, want, restarts) in cases {
        let mut p = pod(status.clone());
        if let Some(d) = deletion {
            p["metadata"]["deletionTimestamp"] = json!(d);
        }
        let t = table("", "pods", &[p]);
        let cells = &t["rows"][0]["cells"];
        assert_eq!(
            (cells[1].as_str(), cells[2].as_str(), cells[3].as_str()),
            (Some(ready), Some(want), Some(restarts)),
            "{status}"
        );
    }
}

#[test]
fn pod_init_container_statuses() {
    let mut p = pod(json!({"phase":"Pending","initContainerStatuses":[
        {"name":"init1","ready":false,"restartCount":0,"state":{"terminated":{"exitCode":0,"reason":"Completed"}}},
        {"name":"init2","ready":false,"restartCount":0,"state":{"running":{}}}],
        "containerStatuses":[{"name":"c","ready":false,"restartCount":0,"state":{"waiting":{"reason":"PodInitializing"}}}]}));
    p["spec"]["initContainers"] = json!([{"name":"init1"},{"name":"init2"}]);
    assert_eq!(
        table("", "pods", &[p.clone()])["rows"][0]["cells"][2],
        "Init:1/2"
    );
    p["status"]["initContainerStatuses"][1]["state"] =
        json!({"waiting":{"reason":"ImagePullBackOff"}});
    assert_eq!(
        table("", "pods", &[p.clone()])["rows"][0]["cells"][2],
        "Init:ImagePullBackOff"
    );
    p["status"]["initContainerStatuses"][1]["state"] = json!({"terminated":{"exitCode":2}});
    assert_eq!(
        table("", "pods", &[p])["rows"][0]["cells"][2],
        "Init:ExitCode:2"
    );
}

#[test]
fn deployment_row_matches_sample_table() {
    let d = json!({"metadata":{"name":"nginx","namespace":"default","creationTimestamp":"2026-11-27T01:08:59Z"},
        "spec":{"replicas":3,"selector":{"matchLabels":{"app":"nginx"}},"template":{"spec":{"containers":[{"name":"nginx","image":"nginx:1.28"}]}}},
        "status":{"replicas":3,"readyReplicas":3,"updatedReplicas":3,"availableReplicas":3}});
    let t = table("apps", "deployments", &[d]);
    assert_eq!(
        headers(&t),
        [
            ("Name", 0),
            ("Ready", 0),
            ("Up-to-date", 0),
            ("Available", 0),
            ("Age", 0),
            ("Containers", 1),
            ("Images", 1),
            ("Selector", 1)
        ]
        .map(|(n, p)| (n.to_string(), p))
    );
    assert_eq!(
        t["rows"][0]["cells"],
        json!([
            "nginx",
            "3/3",
            3,
            3,
            "61s",
            "nginx",
            "nginx:1.28",
            "app=nginx"
        ])
    );
}

#[test]
fn replicaset_row() {
    let rs = json!({"metadata":{"name":"web-abc","creationTimestamp":"2026-11-27T01:00:00Z"},
        "spec":{"replicas":2,"selector":{"matchLabels":{"app":"web","pod-template-hash":"abc"}},"template":{"spec":{"containers":[{"name":"a","image":"x"},{"name":"b","image":"y"}]}}},
        "status":{"replicas":2,"readyReplicas":1}});
    let t = table("apps", "replicasets", &[rs]);
    assert_eq!(
        t["rows"][0]["cells"],
        json!([
            "web-abc",
            2,
            2,
            1,
            "10m",
            "a,b",
            "x,y",
            "app=web,pod-template-hash=abc"
        ])
    );
}

#[test]
fn service_rows() {
    let np = json!({"metadata":{"name":"web","creationTimestamp":"2026-11-27T01:08:00Z"},
        "spec":{"type":"NodePort","clusterIP":"10.43.0.10","clusterIPs":["10.43.0.10"],"ports":[{"port":80,"nodePort":30080,"protocol":"TCP"}],"selector":{"app":"web"}}});
    let cip = json!({"metadata":{"name":"kubernetes","creationTimestamp":"2026-11-27T01:00:00Z"},
        "spec":{"type":"ClusterIP","clusterIPs":["10.43.0.1"],"ports":[{"port":443,"protocol":"TCP"},{"port":53,"protocol":"UDP"}]}});
    let lb = json!({"metadata":{"name":"lb","creationTimestamp":"2026-11-27T01:00:00Z"},
        "spec":{"type":"LoadBalancer","clusterIPs":["10.43.0.2"],"ports":[]}});
    let t = table("", "services", &[np, cip, lb]);
    assert_eq!(
        t["rows"][0]["cells"],
        json!([
            "web",
            "NodePort",
            "10.43.0.10",
            "<none>",
            "80:30080/TCP",
            "2m",
            "app=web"
        ])
    );
    assert_eq!(
        t["rows"][1]["cells"],
        json!([
            "kubernetes",
            "ClusterIP",
            "10.43.0.1",
            "<none>",
            "443/TCP,53/UDP",
            "10m",
            "<none>"
        ])
    );
    assert_eq!(
        t["rows"][2]["cells"],
        json!([
            "lb",
            "LoadBalancer",
            "10.43.0.2",
            "<pending>",
            "<none>",
            "10m",
            "<none>"
        ])
    );
}

#[test]
fn node_rows() {
    let n = json!({"metadata":{"name":"node-1","creationTimestamp":"2026-11-27T01:09:38Z","labels":{"node-role.kubernetes.io/control-plane":""}},
        "status":{"conditions":[{"type":"Ready","status":"True"}],
            "addresses":[{"type":"InternalIP","address":"10.0.0.10"},{"type":"Hostname","address":"node-1"}],
            "nodeInfo":{"kubeletVersion":"v1.32.0","osImage":"Debian GNU/Linux 12 (bookworm)","kernelVersion":"6.1.0","containerRuntimeVersion":"containerd://1.7.0"}}});
    let cordoned = json!({"metadata":{"name":"node-2","creationTimestamp":"2026-11-27T01:00:00Z"},
        "spec":{"unschedulable":true},
        "status":{"conditions":[{"type":"Ready","status":"Unknown"}],"nodeInfo":{}}});
    let t = table("", "nodes", &[n, cordoned]);
    assert_eq!(
        t["rows"][0]["cells"],
        json!([
            "node-1",
            "Ready",
            "control-plane",
            "22s",
            "v1.32.0",
            "10.0.0.10",
            "<none>",
            "Debian GNU/Linux 12 (bookworm)",
            "6.1.0",
            "containerd://1.7.0"
        ])
    );
    assert_eq!(
        t["rows"][1]["cells"],
        json!([
            "node-2",
            "NotReady,SchedulingDisabled",
            "<none>",
            "10m",
            "",
            "<none>",
            "<none>",
            "<unknown>",
            "<unknown>",
            "<unknown>"
        ])
    );
}

#[test]
fn small_kinds() {
    let ts = "2026-11-27T01:00:00Z";
    let ns = table(
        "",
        "namespaces",
        &[
            json!({"metadata":{"name":"default","creationTimestamp":ts},"status":{"phase":"Active"}}),
        ],
    );
    assert_eq!(ns["rows"][0]["cells"], json!(["default", "Active", "10m"]));
    let cm = table(
        "",
        "configmaps",
        &[json!({"metadata":{"name":"cfg","creationTimestamp":ts},"data":{"a":"b","c":"d"}})],
    );
    assert_eq!(cm["rows"][0]["cells"], json!(["cfg", 2, "10m"]));
    let sec = table(
        "",
        "secrets",
        &[
            json!({"metadata":{"name":"s","creationTimestamp":ts},"type":"Opaque","data":{"k":"dg=="}}),
        ],
    );
    assert_eq!(sec["rows"][0]["cells"], json!(["s", "Opaque", 1, "10m"]));
    let ep = table(
        "",
        "endpoints",
        &[
            json!({"metadata":{"name":"web","creationTimestamp":ts},"subsets":[{"addresses":[{"ip":"10.0.0.1"},{"ip":"10.0.0.2"},{"ip":"10.0.0.3"},{"ip":"10.0.0.4"}],"ports":[{"port":80}]}]}),
        ],
    );
    assert_eq!(
        ep["rows"][0]["cells"],
        json!([
            "web",
            "10.0.0.1:80,10.0.0.2:80,10.0.0.3:80 + 1 more...",
            "10m"
        ])
    );
    let slice_info = by_plural("discovery.k8s.io", "v1", "endpointslices").expect("slices");
    let es = to_table(
        slice_info,
        &[
            json!({"metadata":{"name":"web-x","creationTimestamp":ts},"addressType":"IPv4","ports":[{"port":80}],"endpoints":[{"addresses":["10.0.0.1"]}]}),
        ],
        IncludeObject::Metadata,
        json!({}),
        now(),
    );
    assert_eq!(
        es["rows"][0]["cells"],
        json!(["web-x", "IPv4", "80", "10.0.0.1", "10m"])
    );
    let lease_info = by_plural("coordination.k8s.io", "v1", "leases").expect("leases");
    let l = to_table(
        lease_info,
        &[
            json!({"metadata":{"name":"node-1","creationTimestamp":ts},"spec":{"holderIdentity":"node-1"}}),
        ],
        IncludeObject::Metadata,
        json!({}),
        now(),
    );
    assert_eq!(l["rows"][0]["cells"], json!(["node-1", "node-1", "10m"]));
    let sa = table(
        "",
        "serviceaccounts",
        &[json!({"metadata":{"name":"default","creationTimestamp":ts}})],
    );
    assert_eq!(sa["rows"][0]["cells"], json!(["default", 0, "10m"]));
}

#[test]
fn event_rows() {
    let ev = json!({"metadata":{"name":"web.1","creationTimestamp":"2026-11-27T01:00:00Z"},
        "involvedObject":{"kind":"Deployment","name":"web","namespace":"default"},
        "reason":"ScalingReplicaSet","message":"Scaled up replica set web-abc to 3 ","type":"Normal",
        "source":{"component":"deployment-controller"},
        "firstTimestamp":"2026-11-27T01:00:00Z","lastTimestamp":"2026-11-27T01:09:00Z","count":2});
    let t = table("", "events", &[ev]);
    assert_eq!(headers(&t)[0].0, "Last Seen");
    assert_eq!(
        t["rows"][0]["cells"],
        json!([
            "60s",
            "Normal",
            "ScalingReplicaSet",
            "deployment/web",
            "",
            "deployment-controller",
            "Scaled up replica set web-abc to 3",
            "10m",
            2,
            "web.1"
        ])
    );
    let info = by_plural("events.k8s.io", "v1", "events").expect("events");
    let new_ev = json!({"metadata":{"name":"e2"},"regarding":{"kind":"Pod","name":"p"},"note":"pulled","reason":"Pulled","type":"Normal",
        "eventTime":"2026-11-27T01:09:50.000000Z","reportingController":"kubelet","reportingInstance":"node-1"});
    let t = to_table(info, &[new_ev], IncludeObject::Metadata, json!({}), now());
    assert_eq!(
        t["rows"][0]["cells"],
        json!([
            "10s",
            "Normal",
            "Pulled",
            "pod/p",
            "",
            "kubelet, node-1",
            "pulled",
            "10s",
            1,
            "e2"
        ])
    );
}

fn job(spec: Value, status: Value) -> Value {
    json!({"metadata":{"name":"pi","namespace":"default","creationTimestamp":"2026-11-27T01:00:00Z"},
        "spec": spec, "status": status})
}

#[test]
fn job_rows() {
    let spec = json!({"completions":1,"parallelism":1,
        "selector":{"matchLabels":{"batch.kubernetes.io/controller-uid":"u1"}},
        "template":{"spec":{"containers":[{"name":"pi","image":"perl:5.34"},{"name":"side","image":"busybox"}]}}});
    let t = table("batch", "jobs", &[job(spec.clone(), json!({}))]);
    assert_eq!(
        headers(&t),
        [
            ("Name", 0),
            ("Status", 0),
            ("Completions", 0),
            ("Duration", 0),
            ("Age", 0),
            ("Containers", 1),
            ("Images", 1),
            ("Selector", 1)
        ]
        .map(|(n, p)| (n.to_string(), p))
    );
    // Not started yet: no duration.
    assert_eq!(
        t["rows"][0]["cells"],
        json!([
            "pi",
            "Running",
            "0/1",
            "",
            "10m",
            "pi,side",
            "perl:5.34,busybox",
            "batch.kubernetes.io/controller-uid=u1"
        ])
    );
    let cells = |spec: &Value, status: Value| -> Vec<Value> {
        let t = table("batch", "jobs", &[job(spec.clone(), status)]);
        t["rows"][0]["cells"].as_array().expect("cells")[..4].to_vec()
    };
    // Running for 3m5s so far.
    assert_eq!(
        cells(
            &spec,
            json!({"startTime":"2026-11-27T01:06:55Z","active":1})
        ),
        json!(["pi", "Running", "0/1", "3m5s"])
            .as_array()
            .expect("a")
            .clone()
    );
    // Complete: duration is completion - start.
    let complete = json!({"startTime":"2026-11-27T01:00:01Z","completionTime":"2026-11-27T01:00:09Z","succeeded":1,
        "conditions":[{"type":"SuccessCriteriaMet","status":"True"},{"type":"Complete","status":"True"}]});
    assert_eq!(
        cells(&spec, complete),
        json!(["pi", "Complete", "1/1", "8s"])
            .as_array()
            .expect("a")
            .clone()
    );
    // Status precedence and the completions forms.
    let cond = |ty: &str, st: &str| json!({"conditions":[{"type":ty,"status":st}]});
    assert_eq!(cells(&spec, cond("Failed", "True"))[1], "Failed");
    assert_eq!(cells(&spec, cond("Suspended", "True"))[1], "Suspended");
    assert_eq!(cells(&spec, cond("Suspended", "False"))[1], "Running");
    assert_eq!(
        cells(&spec, cond("FailureTarget", "True"))[1],
        "FailureTarget"
    );
    assert_eq!(
        cells(&spec, cond("SuccessCriteriaMet", "True"))[1],
        "SuccessCriteriaMet"
    );
    let queue = json!({"parallelism":3});
    assert_eq!(cells(&queue, json!({"succeeded":2}))[2], "2/1 of 3");
    assert_eq!(cells(&json!({"parallelism":1}), json!({}))[2], "0/1");
    assert_eq!(
        cells(&json!({"completions":5}), json!({"succeeded":2}))[2],
        "2/5"
    );
    let mut deleting = job(spec.clone(), cond("Suspended", "True"));
    deleting["metadata"]["deletionTimestamp"] = json!("2026-11-27T01:09:00Z");
    let t = table("batch", "jobs", &[deleting]);
    assert_eq!(t["rows"][0]["cells"][1], "Terminating");
}

fn daemon_set(node_selector: Value, status: Value) -> Value {
    json!({"metadata":{"name":"agent","namespace":"kube-system","creationTimestamp":"2026-11-27T00:10:00Z"},
        "spec":{"selector":{"matchLabels":{"app":"agent"}},
            "template":{"metadata":{"labels":{"app":"agent"}},
                "spec":{"nodeSelector": node_selector,
                    "containers":[{"name":"agent","image":"busybox:1.36"},{"name":"log","image":"fluent-bit"}]}}},
        "status": status})
}

#[test]
fn daemon_set_rows() {
    let status = json!({"desiredNumberScheduled":3,"currentNumberScheduled":3,"numberReady":2,
        "updatedNumberScheduled":1,"numberAvailable":2,"numberMisscheduled":0,"observedGeneration":2});
    let t = table(
        "apps",
        "daemonsets",
        &[daemon_set(
            json!({"kubernetes.io/os":"linux","disk":"ssd"}),
            status,
        )],
    );
    assert_eq!(
        headers(&t),
        [
            ("Name", 0),
            ("Desired", 0),
            ("Current", 0),
            ("Ready", 0),
            ("Up-to-date", 0),
            ("Available", 0),
            ("Node Selector", 0),
            ("Age", 0),
            ("Containers", 1),
            ("Images", 1),
            ("Selector", 1)
        ]
        .map(|(n, p)| (n.to_string(), p))
    );
    // Counters are integers (upstream column type), the node selector sorted `k=v` pairs.
    assert_eq!(t["columnDefinitions"][1]["type"], "integer");
    assert_eq!(t["columnDefinitions"][6]["type"], "string");
    assert_eq!(
        t["rows"][0]["cells"],
        json!([
            "agent",
            3,
            3,
            2,
            1,
            2,
            "disk=ssd,kubernetes.io/os=linux",
            "60m",
            "agent,log",
            "busybox:1.36,fluent-bit",
            "app=agent"
        ])
    );
    assert_eq!(t["rows"][0]["object"]["metadata"]["name"], "agent");
    // A fresh DaemonSet: empty status is all zeros, no node selector is <none>.
    let t = table("apps", "daemonsets", &[daemon_set(Value::Null, json!({}))]);
    assert_eq!(
        t["rows"][0]["cells"].as_array().expect("cells")[1..7],
        json!([0, 0, 0, 0, 0, "<none>"]).as_array().expect("a")[..]
    );
}

fn cron_job(spec: Value, status: Value) -> Value {
    json!({"metadata":{"name":"hello","namespace":"default","creationTimestamp":"2026-11-27T01:00:00Z"},
        "spec": spec, "status": status})
}

#[test]
fn cron_job_rows() {
    let spec = json!({"schedule":"*/1 * * * *","suspend":false,"concurrencyPolicy":"Allow",
        "jobTemplate":{"spec":{"template":{"spec":{"containers":[{"name":"hello","image":"busybox"},{"name":"side","image":"alpine:3"}]}}}}});
    let t = table("batch", "cronjobs", &[cron_job(spec.clone(), json!({}))]);
    assert_eq!(
        headers(&t),
        [
            ("Name", 0),
            ("Schedule", 0),
            ("Timezone", 0),
            ("Suspend", 0),
            ("Active", 0),
            ("Last Schedule", 0),
            ("Age", 0),
            ("Containers", 1),
            ("Images", 1),
            ("Selector", 1)
        ]
        .map(|(n, p)| (n.to_string(), p))
    );
    assert_eq!(t["columnDefinitions"][3]["type"], "boolean");
    assert_eq!(t["columnDefinitions"][4]["type"], "integer");
    // Never scheduled, no zone: `<none>`s; the template has no selector of its own.
    assert_eq!(
        t["rows"][0]["cells"],
        json!([
            "hello",
            "*/1 * * * *",
            "<none>",
            "False",
            0,
            "<none>",
            "10m",
            "hello,side",
            "busybox,alpine:3",
            "<none>"
        ])
    );
    assert_eq!(t["rows"][0]["object"]["metadata"]["name"], "hello");
    // Scheduled 90 s ago with two Jobs running, suspended since, in a named zone.
    let mut spec = spec;
    spec["suspend"] = json!(true);
    spec["timeZone"] = json!("Europe/Berlin");
    let status = json!({"lastScheduleTime":"2026-11-27T01:08:30Z",
        "active":[{"kind":"Job","name":"hello-1"},{"kind":"Job","name":"hello-2"}]});
    let t = table("batch", "cronjobs", &[cron_job(spec.clone(), status)]);
    let cells = t["rows"][0]["cells"].as_array().expect("cells");
    assert_eq!(
        cells[..7],
        json!([
            "hello",
            "*/1 * * * *",
            "Europe/Berlin",
            "True",
            2,
            "90s",
            "10m"
        ])
        .as_array()
        .expect("a")[..]
    );
    // printBoolPtr of a missing suspend.
    spec.as_object_mut().expect("spec").remove("suspend");
    let t = table("batch", "cronjobs", &[cron_job(spec, json!({}))]);
    assert_eq!(t["rows"][0]["cells"][3], "<unset>");
}
