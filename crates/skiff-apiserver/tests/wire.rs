//! Wire compatibility: Status bytes, protobuf bodies on every verb client-go sends them on
//! (create, update, delete, deletecollection), field selectors per kind on list and watch.

mod common;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, WatchEvent, WatchParams};
use prost::Message;
use serde_json::{json, Value};

use common::{ensure_default_sa, start, TestServer};

/// One raw request; answers the status code and body bytes, whatever the status.
async fn raw(
    t: &TestServer,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> (u16, Vec<u8>) {
    let mut req = http::Request::builder().method(method).uri(path).header(
        "Accept",
        "application/vnd.kubernetes.protobuf,application/json",
    );
    if let Some(ct) = content_type {
        req = req.header("Content-Type", ct);
    }
    let req = req.body(kube::client::Body::from(body)).unwrap();
    let resp = t.client.send(req).await.expect("send");
    let code = resp.status().as_u16();
    let bytes = resp.into_body().collect_bytes().await.expect("body");
    (code, bytes.to_vec())
}

async fn json_req(t: &TestServer, method: &str, path: &str, body: Value) -> (u16, Value) {
    let bytes = if body.is_null() {
        Vec::new()
    } else {
        serde_json::to_vec(&body).unwrap()
    };
    let (code, out) = raw(t, method, path, Some("application/json"), bytes).await;
    let v = serde_json::from_slice(&out).unwrap_or(Value::Null);
    (code, v)
}

/// `k8s\0` + runtime.Unknown{typeMeta, raw}, as client-go's protobuf serializer writes a body.
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

const PB: Option<&str> = Some("application/vnd.kubernetes.protobuf");

/// Names of a list's items.
fn names(list: &Value) -> Vec<String> {
    let mut out: Vec<String> = list["items"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|i| i["metadata"]["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

#[tokio::test]
async fn error_status_bytes_are_upstreams() {
    let t = start().await;
    let cm = json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"dup"}});
    let path = "/api/v1/namespaces/default/configmaps";
    let body = serde_json::to_vec(&cm).unwrap();
    let (code, _) = raw(&t, "POST", path, Some("application/json"), body.clone()).await;
    assert_eq!(code, 201);
    let (code, out) = raw(&t, "POST", path, Some("application/json"), body).await;
    assert_eq!(code, 409);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\
         \"message\":\"configmaps \\\"dup\\\" already exists\",\"reason\":\"AlreadyExists\",\
         \"details\":{\"name\":\"dup\",\"kind\":\"configmaps\"},\"code\":409}\n"
    );
    let (code, out) = raw(&t, "GET", "/api/v1/nope", None, Vec::new()).await;
    assert_eq!(code, 404);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\
         \"message\":\"the server could not find the requested resource\",\"reason\":\"NotFound\",\
         \"details\":{},\"code\":404}\n"
    );
}

fn micro(seconds_after_year_one: i64) -> k8s_pb::apimachinery::pkg::apis::meta::v1::MicroTime {
    // Go's zero time.Time is 0001-01-01T00:00:00Z, 62135596800 s before the Unix epoch.
    k8s_pb::apimachinery::pkg::apis::meta::v1::MicroTime {
        seconds: Some(-62_135_596_800 + seconds_after_year_one),
        nanos: Some(0),
    }
}

fn lease_pb(name: &str, labels: &[(&str, &str)], holder: &str, rv: Option<&str>) -> Vec<u8> {
    use k8s_pb::api::coordination::v1 as coord;
    use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
    let lease = coord::Lease {
        metadata: Some(meta::ObjectMeta {
            name: Some(name.into()),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            resource_version: rv.map(str::to_string),
            ..Default::default()
        }),
        spec: Some(coord::LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(30),
            acquire_time: Some(micro(2)),
            renew_time: Some(micro(5)),
            lease_transitions: Some(0),
            ..Default::default()
        }),
    };
    envelope("coordination.k8s.io/v1", "Lease", lease.encode_to_vec())
}

fn delete_options_pb(
    api_version: &str,
    opts: k8s_pb::apimachinery::pkg::apis::meta::v1::DeleteOptions,
) -> Vec<u8> {
    envelope(api_version, "DeleteOptions", opts.encode_to_vec())
}

/// Upstream's "lease API should be available" conformance steps, with the protobuf bodies
/// client-go sends: create, update, delete and deletecollection (DeleteOptions typed as
/// `coordination.k8s.io/v1`), patch as strategic merge JSON.
#[tokio::test]
async fn client_go_protobuf_verbs_on_leases() {
    use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
    let t = start().await;
    let base = "/apis/coordination.k8s.io/v1/namespaces/default/leases";
    let (code, out) = raw(&t, "POST", base, PB, lease_pb("lease", &[], "holder", None)).await;
    assert_eq!(code, 201, "{}", String::from_utf8_lossy(&out));
    let created: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(
        created["spec"]["acquireTime"],
        "0001-01-01T00:00:02.000000Z"
    );
    assert_eq!(created["spec"]["leaseTransitions"], 0);
    let rv = created["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    // Update (PUT) in protobuf.
    let (code, out) = raw(
        &t,
        "PUT",
        &format!("{base}/lease"),
        PB,
        lease_pb("lease", &[], "holder2", Some(&rv)),
    )
    .await;
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&out));
    let updated: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(updated["spec"]["holderIdentity"], "holder2");
    // Patch: client-go sends patches as JSON whatever its content type for objects.
    let (code, out) = raw(
        &t,
        "PATCH",
        &format!("{base}/lease"),
        Some("application/strategic-merge-patch+json"),
        br#"{"spec":{"holderIdentity":"holder3","leaseDurationSeconds":60}}"#.to_vec(),
    )
    .await;
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&out));
    let (code, _) = raw(
        &t,
        "POST",
        base,
        PB,
        lease_pb("lease2", &[("deletecollection", "true")], "holder", None),
    )
    .await;
    assert_eq!(code, 201);
    // DeleteCollection: DeleteOptions{} in protobuf, the label selector in the query.
    let (code, out) = raw(
        &t,
        "DELETE",
        &format!("{base}?labelSelector=deletecollection%3Dtrue"),
        PB,
        delete_options_pb("coordination.k8s.io/v1", meta::DeleteOptions::default()),
    )
    .await;
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&out));
    let (_, list) = json_req(&t, "GET", base, Value::Null).await;
    assert_eq!(names(&list), ["lease"]);
    // A precondition carried in the protobuf body is honoured.
    let wrong_uid = meta::DeleteOptions {
        preconditions: Some(meta::Preconditions {
            uid: Some("not-the-uid".into()),
            resource_version: None,
        }),
        ..Default::default()
    };
    let (code, out) = raw(
        &t,
        "DELETE",
        &format!("{base}/lease"),
        PB,
        delete_options_pb("coordination.k8s.io/v1", wrong_uid),
    )
    .await;
    assert_eq!(code, 409, "{}", String::from_utf8_lossy(&out));
    let opts = meta::DeleteOptions {
        grace_period_seconds: Some(0),
        propagation_policy: Some("Background".into()),
        ..Default::default()
    };
    let (code, out) = raw(
        &t,
        "DELETE",
        &format!("{base}/lease"),
        PB,
        delete_options_pb("coordination.k8s.io/v1", opts),
    )
    .await;
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&out));
    let (code, _) = json_req(&t, "GET", &format!("{base}/lease"), Value::Null).await;
    assert_eq!(code, 404);
}

/// Core and apps resources get DeleteOptions typed in their own group version (`v1`,
/// `apps/v1`), and the meta group's form is accepted too.
#[tokio::test]
async fn protobuf_delete_options_in_any_group_version() {
    use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
    let t = start().await;
    for (name, api_version) in [("a", "v1"), ("b", "meta.k8s.io/v1"), ("c", "apps/v1")] {
        let (code, _) = json_req(
            &t,
            "POST",
            "/api/v1/namespaces/default/configmaps",
            json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":name,"labels":{"n":name}}}),
        )
        .await;
        assert_eq!(code, 201);
        let (code, out) = raw(
            &t,
            "DELETE",
            &format!("/api/v1/namespaces/default/configmaps/{name}"),
            PB,
            delete_options_pb(api_version, meta::DeleteOptions::default()),
        )
        .await;
        assert_eq!(
            code,
            200,
            "{api_version}: {}",
            String::from_utf8_lossy(&out)
        );
    }
    let (code, _) = json_req(
        &t,
        "POST",
        "/apis/apps/v1/namespaces/default/deployments",
        json!({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d","labels":{"x":"y"}},
            "spec":{"selector":{"matchLabels":{"x":"y"}},"template":{"metadata":{"labels":{"x":"y"}},
            "spec":{"containers":[{"name":"c","image":"i"}]}}}}),
    )
    .await;
    assert_eq!(code, 201);
    let (code, out) = raw(
        &t,
        "DELETE",
        "/apis/apps/v1/namespaces/default/deployments",
        PB,
        delete_options_pb(
            "apps/v1",
            meta::DeleteOptions {
                propagation_policy: Some("Foreground".into()),
                ..Default::default()
            },
        ),
    )
    .await;
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&out));
}

async fn create(t: &TestServer, path: &str, obj: Value) -> Value {
    let (code, out) = json_req(t, "POST", path, obj).await;
    assert!(code == 201 || code == 200, "{path}: {code} {out}");
    out
}

/// GET a list with a field selector; the names it holds.
async fn select(t: &TestServer, path: &str, selector: &str) -> Vec<String> {
    let sel = selector
        .replace('=', "%3D")
        .replace(',', "%2C")
        .replace('!', "%21");
    let (code, out) = json_req(
        t,
        "GET",
        &format!("{path}?fieldSelector={sel}"),
        Value::Null,
    )
    .await;
    assert_eq!(code, 200, "{path} {selector}: {out}");
    names(&out)
}

async fn rejected(t: &TestServer, path: &str, selector: &str) -> String {
    let sel = selector.replace('=', "%3D");
    for q in ["", "&watch=true"] {
        let (code, out) = json_req(
            t,
            "GET",
            &format!("{path}?fieldSelector={sel}{q}"),
            Value::Null,
        )
        .await;
        assert_eq!(code, 400, "{path} {selector}{q}: {out}");
        assert_eq!(out["reason"], "BadRequest");
        if q.is_empty() {
            return out["message"].as_str().unwrap_or("").to_string();
        }
    }
    unreachable!()
}

#[tokio::test]
async fn field_selectors_per_kind() {
    let t = start().await;
    // Nodes: spec.unschedulable reads "false" when unset.
    create(
        &t,
        "/api/v1/nodes",
        json!({"apiVersion":"v1","kind":"Node","metadata":{"name":"n1"}}),
    )
    .await;
    create(
        &t,
        "/api/v1/nodes",
        json!({"apiVersion":"v1","kind":"Node","metadata":{"name":"n2"},"spec":{"unschedulable":true}}),
    )
    .await;
    assert_eq!(
        select(&t, "/api/v1/nodes", "spec.unschedulable=false").await,
        ["n1"]
    );
    assert_eq!(
        select(&t, "/api/v1/nodes", "spec.unschedulable==true").await,
        ["n2"]
    );
    assert_eq!(
        select(&t, "/api/v1/nodes", "spec.unschedulable!=true").await,
        ["n1"]
    );
    assert_eq!(
        select(
            &t,
            "/api/v1/nodes",
            "metadata.name=n2,spec.unschedulable=true"
        )
        .await,
        ["n2"]
    );
    assert!(select(
        &t,
        "/api/v1/nodes",
        "metadata.name=n1,spec.unschedulable=true"
    )
    .await
    .is_empty());
    assert_eq!(
        rejected(&t, "/api/v1/nodes", "spec.foo=bar").await,
        "field label not supported: spec.foo"
    );
    // Node has its own conversion func: no metadata.namespace.
    assert_eq!(
        rejected(&t, "/api/v1/nodes", "metadata.namespace=").await,
        "field label not supported: metadata.namespace"
    );
    // Kinds with only the default conversion.
    assert_eq!(
        rejected(&t, "/api/v1/namespaces/default/configmaps", "data.x=1").await,
        "\"data.x\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
    );
    assert_eq!(
        rejected(&t, "/apis/batch/v1/jobs", "spec.parallelism=1").await,
        "field label \"spec.parallelism\" not supported for batchv1.Job"
    );

    // Pods.
    ensure_default_sa(&t.client, "default").await;
    let pods = "/api/v1/namespaces/default/pods";
    let pod = |name: &str, spec: Value| {
        let mut s = json!({"containers":[{"name":"c","image":"i"}]});
        if let (Some(s), Some(extra)) = (s.as_object_mut(), spec.as_object()) {
            s.extend(extra.clone());
        }
        json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":name},"spec":s})
    };
    create(
        &t,
        pods,
        pod(
            "p1",
            json!({"nodeName":"n1","hostNetwork":true,"restartPolicy":"Never"}),
        ),
    )
    .await;
    create(&t, pods, pod("p2", json!({}))).await;
    assert_eq!(select(&t, pods, "spec.hostNetwork=false").await, ["p2"]);
    assert_eq!(select(&t, pods, "spec.hostNetwork=true").await, ["p1"]);
    assert_eq!(select(&t, pods, "spec.nodeName=n1").await, ["p1"]);
    assert_eq!(select(&t, pods, "spec.host=n1").await, ["p1"]);
    assert_eq!(select(&t, pods, "spec.nodeName=").await, ["p2"]);
    assert_eq!(select(&t, pods, "spec.restartPolicy=Always").await, ["p2"]);
    assert_eq!(
        select(&t, pods, "spec.schedulerName=default-scheduler").await,
        ["p1", "p2"]
    );
    assert_eq!(
        select(&t, pods, "spec.serviceAccountName=default").await,
        ["p1", "p2"]
    );
    assert_eq!(
        select(&t, pods, "status.phase=Pending,status.podIP=").await,
        ["p1", "p2"]
    );
    assert_eq!(
        select(&t, pods, "status.podIPs=,status.nominatedNodeName=").await,
        ["p1", "p2"]
    );
    assert_eq!(
        select(
            &t,
            "/api/v1/pods",
            "metadata.namespace=default,metadata.name!=p1"
        )
        .await,
        ["p2"]
    );
    assert_eq!(
        rejected(&t, pods, "spec.containers=x").await,
        "field label not supported: spec.containers"
    );

    // Events (core/v1): upstream's involvedObject.*, reason, source, type, reportingComponent.
    let events = "/api/v1/namespaces/default/events";
    create(
        &t,
        events,
        json!({"apiVersion":"v1","kind":"Event","metadata":{"name":"e1"},
            "involvedObject":{"kind":"Pod","namespace":"default","name":"p1","uid":"u1","apiVersion":"v1",
                "resourceVersion":"7","fieldPath":"spec.containers{c}"},
            "reason":"Started","message":"m","source":{"component":"kubelet"},"type":"Normal"}),
    )
    .await;
    create(
        &t,
        events,
        json!({"apiVersion":"v1","kind":"Event","metadata":{"name":"e2"},
            "involvedObject":{"kind":"Node","name":"n1"},"reason":"Ready","message":"m",
            "reportingComponent":"ctl","reportingInstance":"i","action":"A",
            "eventTime":"2026-01-01T00:00:00.000000Z","type":"Warning"}),
    )
    .await;
    let cases: &[(&str, &[&str])] = &[
        ("involvedObject.kind=Pod", &["e1"]),
        ("involvedObject.namespace=default", &["e1"]),
        ("involvedObject.name=n1", &["e2"]),
        ("involvedObject.uid=u1", &["e1"]),
        ("involvedObject.apiVersion=v1", &["e1"]),
        ("involvedObject.resourceVersion=7", &["e1"]),
        ("involvedObject.fieldPath=spec.containers{c}", &["e1"]),
        ("reason=Ready", &["e2"]),
        ("reportingComponent=ctl", &["e2"]),
        ("source=kubelet", &["e1"]),
        // source falls back to the reporting controller.
        ("source=ctl", &["e2"]),
        ("type=Warning", &["e2"]),
        ("type!=Warning,reason=Started", &["e1"]),
    ];
    for (sel, want) in cases {
        assert_eq!(select(&t, events, sel).await, *want, "{sel}");
    }

    // events.k8s.io/v1: regarding.* and reportingController.
    let ev2 = "/apis/events.k8s.io/v1/namespaces/default/events";
    create(
        &t,
        ev2,
        json!({"apiVersion":"events.k8s.io/v1","kind":"Event","metadata":{"name":"e3"},
            "regarding":{"kind":"Pod","name":"p2","namespace":"default"},"reason":"Pulled",
            "note":"n","reportingController":"skiff/kubelet","reportingInstance":"i","action":"Pull",
            "eventTime":"2026-01-01T00:00:00.000000Z","type":"Normal"}),
    )
    .await;
    assert_eq!(
        select(
            &t,
            ev2,
            "regarding.name=p2,reportingController=skiff/kubelet,source=skiff/kubelet"
        )
        .await,
        ["e3"]
    );
    assert_eq!(
        rejected(&t, ev2, "involvedObject.name=p2").await,
        "field label not supported: involvedObject.name"
    );

    // Secrets, namespaces, services, replicasets.
    let secrets = "/api/v1/namespaces/default/secrets";
    create(
        &t,
        secrets,
        json!({"apiVersion":"v1","kind":"Secret","metadata":{"name":"s1"}}),
    )
    .await;
    create(
        &t,
        secrets,
        json!({"apiVersion":"v1","kind":"Secret","metadata":{"name":"s2"},"type":"example.com/x"}),
    )
    .await;
    assert_eq!(select(&t, secrets, "type=Opaque").await, ["s1"]);
    assert_eq!(select(&t, secrets, "type=example.com/x").await, ["s2"]);
    assert_eq!(
        select(
            &t,
            "/api/v1/namespaces",
            "status.phase=Active,metadata.name=default"
        )
        .await,
        ["default"]
    );
    assert_eq!(
        rejected(&t, "/api/v1/namespaces", "metadata.namespace=x").await,
        "field label not supported: metadata.namespace"
    );
    let svcs = "/api/v1/namespaces/default/services";
    create(
        &t,
        svcs,
        json!({"apiVersion":"v1","kind":"Service","metadata":{"name":"h"},
            "spec":{"clusterIP":"None","ports":[{"port":80}]}}),
    )
    .await;
    assert_eq!(select(&t, svcs, "spec.clusterIP=None").await, ["h"]);
    assert_eq!(
        select(&t, svcs, "spec.type=ClusterIP,metadata.name=h").await,
        ["h"]
    );
    assert!(select(&t, svcs, "spec.type=NodePort").await.is_empty());
    let rss = "/apis/apps/v1/namespaces/default/replicasets";
    create(
        &t,
        rss,
        json!({"apiVersion":"apps/v1","kind":"ReplicaSet","metadata":{"name":"rs"},
            "spec":{"replicas":0,"selector":{"matchLabels":{"a":"b"}},
            "template":{"metadata":{"labels":{"a":"b"}},"spec":{"containers":[{"name":"c","image":"i"}]}}}}),
    )
    .await;
    assert_eq!(select(&t, rss, "status.replicas=0").await, ["rs"]);
}

#[tokio::test]
async fn field_selectors_on_watch() {
    let t = start().await;
    let nodes: Api<Node> = Api::all(t.client.clone());
    create(
        &t,
        "/api/v1/nodes",
        json!({"apiVersion":"v1","kind":"Node","metadata":{"name":"w1"}}),
    )
    .await;
    create(
        &t,
        "/api/v1/nodes",
        json!({"apiVersion":"v1","kind":"Node","metadata":{"name":"w2"}}),
    )
    .await;
    let (_, list) = json_req(&t, "GET", "/api/v1/nodes", Value::Null).await;
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let wp = WatchParams::default().fields("spec.unschedulable=true");
    let mut stream = nodes.watch(&wp, &rv).await.expect("watch").boxed();
    // w2 changes without entering the selector; w1 enters it.
    let patch = |u: bool| {
        kube::api::Patch::Merge(json!({"spec":{"unschedulable":u},"metadata":{"labels":{"x":"y"}}}))
    };
    nodes
        .patch(
            "w2",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"metadata":{"labels":{"x":"y"}}})),
        )
        .await
        .expect("patch w2");
    nodes
        .patch("w1", &kube::api::PatchParams::default(), &patch(true))
        .await
        .expect("patch w1");
    let ev = tokio::time::timeout(std::time::Duration::from_secs(10), stream.next())
        .await
        .expect("an event")
        .expect("stream open")
        .expect("event");
    match ev {
        WatchEvent::Added(n) | WatchEvent::Modified(n) => {
            assert_eq!(n.metadata.name.as_deref(), Some("w1"));
            assert_eq!(n.spec.and_then(|s| s.unschedulable), Some(true));
        }
        other => panic!("unexpected {other:?}"),
    }
    // An unsupported label fails the watch with upstream's 400.
    let bad = WatchParams::default().fields("spec.podCIDR=x");
    match nodes.watch(&bad, "0").await {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 400);
            assert_eq!(s.message, "field label not supported: spec.podCIDR");
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(s) => match s.boxed().next().await {
            Some(Err(kube::Error::Api(st))) => {
                assert_eq!(st.code, 400);
            }
            other => panic!("watch with a bad selector gave {other:?}"),
        },
    }
}

/// ReplicationController is served as upstream serves it (defaults from the template, the
/// workload checks with a map selector, its field labels); skiff-controllers' tests cover the
/// controller.
#[tokio::test]
async fn replication_controllers_are_served() {
    let t = start().await;
    let rcs = "/api/v1/namespaces/default/replicationcontrollers";
    let rc = create(
        &t,
        rcs,
        json!({"apiVersion":"v1","kind":"ReplicationController","metadata":{"name":"mock"},
            "spec":{"template":{"metadata":{"labels":{"app":"mock"}},
            "spec":{"containers":[{"name":"c","image":"i"}]}}}}),
    )
    .await;
    assert_eq!(rc["spec"]["replicas"], 1);
    assert_eq!(rc["status"], json!({"replicas": 0}));
    assert_eq!(rc["spec"]["selector"], json!({"app": "mock"}));
    assert_eq!(rc["metadata"]["labels"], json!({"app": "mock"}));
    assert_eq!(
        rc["spec"]["template"]["spec"]["restartPolicy"],
        json!("Always")
    );
    let (code, out) = json_req(
        &t,
        "POST",
        rcs,
        json!({"apiVersion":"v1","kind":"ReplicationController","metadata":{"name":"bad"},
            "spec":{"selector":{"app":"other"},"template":{"metadata":{"labels":{"app":"mock"}},
            "spec":{"containers":[{"name":"c","image":"i"}]}}}}),
    )
    .await;
    assert_eq!(code, 422, "{out}");
    assert!(
        out["message"]
            .as_str()
            .unwrap_or("")
            .contains("spec.template.metadata.labels"),
        "{out}"
    );
    assert_eq!(select(&t, rcs, "status.replicas=0").await, ["mock"]);
    let (code, out) = json_req(
        &t,
        "GET",
        "/api/v1/namespaces/default/replicationcontrollers/mock",
        Value::Null,
    )
    .await;
    assert_eq!((code, &out["kind"]), (200, &json!("ReplicationController")));
    let (code, _) = json_req(
        &t,
        "DELETE",
        &format!("{rcs}?propagationPolicy=Background"),
        Value::Null,
    )
    .await;
    assert_eq!(code, 200);
    let (_, list) = json_req(&t, "GET", rcs, Value::Null).await;
    assert!(names(&list).is_empty());
}

/// The subresource writes client-go sends in protobuf: `UpdateScale` (autoscaling/v1 Scale),
/// drain's eviction (policy/v1 Eviction with DeleteOptions inside), `kubectl create token`
/// (authentication.k8s.io/v1 TokenRequest).
#[tokio::test]
async fn client_go_protobuf_subresources() {
    use k8s_pb::api::authentication::v1 as authn;
    use k8s_pb::api::autoscaling::v1 as autoscaling;
    use k8s_pb::api::policy::v1 as policy;
    use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
    let t = start().await;
    ensure_default_sa(&t.client, "default").await;
    create(
        &t,
        "/apis/apps/v1/namespaces/default/deployments",
        json!({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d"},
            "spec":{"selector":{"matchLabels":{"x":"y"}},"template":{"metadata":{"labels":{"x":"y"}},
            "spec":{"containers":[{"name":"c","image":"i"}]}}}}),
    )
    .await;
    let scale = autoscaling::Scale {
        metadata: Some(meta::ObjectMeta {
            name: Some("d".into()),
            namespace: Some("default".into()),
            ..Default::default()
        }),
        spec: Some(autoscaling::ScaleSpec { replicas: Some(3) }),
        status: None,
    };
    let (code, out) = raw(
        &t,
        "PUT",
        "/apis/apps/v1/namespaces/default/deployments/d/scale",
        PB,
        envelope("autoscaling/v1", "Scale", scale.encode_to_vec()),
    )
    .await;
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&out));
    let (_, d) = json_req(
        &t,
        "GET",
        "/apis/apps/v1/namespaces/default/deployments/d",
        Value::Null,
    )
    .await;
    assert_eq!(d["spec"]["replicas"], 3);

    create(
        &t,
        "/api/v1/namespaces/default/pods",
        json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},
            "spec":{"containers":[{"name":"c","image":"i"}]}}),
    )
    .await;
    let eviction = policy::Eviction {
        metadata: Some(meta::ObjectMeta {
            name: Some("p".into()),
            namespace: Some("default".into()),
            ..Default::default()
        }),
        delete_options: Some(meta::DeleteOptions {
            grace_period_seconds: Some(0),
            ..Default::default()
        }),
    };
    let (code, out) = raw(
        &t,
        "POST",
        "/api/v1/namespaces/default/pods/p/eviction",
        PB,
        envelope("policy/v1", "Eviction", eviction.encode_to_vec()),
    )
    .await;
    assert_eq!(code, 201, "{}", String::from_utf8_lossy(&out));
    let (code, _) = json_req(&t, "GET", "/api/v1/namespaces/default/pods/p", Value::Null).await;
    assert_eq!(code, 404, "an unbound pod evicted with grace 0 is gone");

    let tr = authn::TokenRequest {
        metadata: Some(meta::ObjectMeta::default()),
        spec: Some(authn::TokenRequestSpec {
            expiration_seconds: Some(3600),
            ..Default::default()
        }),
        status: None,
    };
    let (code, out) = raw(
        &t,
        "POST",
        "/api/v1/namespaces/default/serviceaccounts/default/token",
        PB,
        envelope(
            "authentication.k8s.io/v1",
            "TokenRequest",
            tr.encode_to_vec(),
        ),
    )
    .await;
    assert_eq!(code, 201, "{}", String::from_utf8_lossy(&out));
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert!(
        v["status"]["token"].as_str().is_some_and(|s| s.len() > 20),
        "{v}"
    );
}

/// deletecollection exists only where discovery lists it and only under a namespace for
/// namespaced kinds (upstream registers no other route): a 405, nothing deleted.
#[tokio::test]
async fn deletecollection_only_where_upstream_routes_it() {
    let t = start().await;
    create(
        &t,
        "/api/v1/namespaces/default/configmaps",
        json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"stay"}}),
    )
    .await;
    for path in ["/api/v1/namespaces", "/api/v1/configmaps"] {
        let (code, out) = raw(&t, "DELETE", path, None, Vec::new()).await;
        assert_eq!(code, 405, "{path}");
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["reason"], "MethodNotAllowed");
    }
    let (code, _) = json_req(
        &t,
        "GET",
        "/api/v1/namespaces/default/configmaps/stay",
        Value::Null,
    )
    .await;
    assert_eq!(code, 200);
    let (code, _) = json_req(&t, "GET", "/api/v1/namespaces/default", Value::Null).await;
    assert_eq!(code, 200);
    // Every kind that lists the verb serves it under a namespace (or cluster-wide if cluster-scoped).
    let (code, out) = json_req(
        &t,
        "DELETE",
        "/apis/rbac.authorization.k8s.io/v1/clusterroles?labelSelector=none%3Dnone",
        Value::Null,
    )
    .await;
    assert_eq!(code, 200, "{out}");
}

/// `kubectl scale rc` goes through the scale subresource; its selector is the RC's label map.
#[tokio::test]
async fn replication_controller_scale_subresource() {
    let t = start().await;
    let rcs = "/api/v1/namespaces/default/replicationcontrollers";
    create(
        &t,
        rcs,
        json!({"apiVersion":"v1","kind":"ReplicationController","metadata":{"name":"s"},
            "spec":{"replicas":1,"selector":{"b":"2","a":"1"},"template":{"metadata":{"labels":{"a":"1","b":"2"}},
            "spec":{"containers":[{"name":"c","image":"i"}]}}}}),
    )
    .await;
    let (code, scale) = json_req(&t, "GET", &format!("{rcs}/s/scale"), Value::Null).await;
    assert_eq!(code, 200, "{scale}");
    assert_eq!(scale["status"]["selector"], "a=1,b=2");
    assert_eq!(scale["spec"]["replicas"], 1);
    let (code, out) = raw(
        &t,
        "PATCH",
        &format!("{rcs}/s/scale"),
        Some("application/merge-patch+json"),
        br#"{"spec":{"replicas":4}}"#.to_vec(),
    )
    .await;
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&out));
    let (_, rc) = json_req(&t, "GET", &format!("{rcs}/s"), Value::Null).await;
    assert_eq!(rc["spec"]["replicas"], 4);
}

/// Metadata-only reads (`as=PartialObjectMetadata[List]`), as kube-rs's `get_metadata`,
/// `list_metadata` and `metadata_watcher` and controller-runtime's metadata-only caches send them.
#[tokio::test]
async fn partial_object_metadata_on_get_list_and_watch() {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{ListParams, PostParams};
    let t = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(t.client.clone(), "default");
    let cm = serde_json::from_value(json!({
        "metadata": {"name": "meta", "labels": {"a": "b"}},
        "data": {"secret-ish": "payload"}
    }))
    .unwrap();
    cms.create(&PostParams::default(), &cm)
        .await
        .expect("create");

    let one = cms.get_metadata("meta").await.expect("get_metadata");
    assert_eq!(
        one.types.as_ref().map(|t| t.kind.as_str()),
        Some("PartialObjectMetadata")
    );
    assert_eq!(one.metadata.labels.unwrap_or_default()["a"], "b");
    let list = cms
        .list_metadata(&ListParams::default())
        .await
        .expect("list_metadata");
    assert_eq!(list.items.len(), 1);
    assert!(list.metadata.resource_version.is_some());
    // The data never leaves the server.
    let (code, body) = raw_accept(
        &t,
        "/api/v1/namespaces/default/configmaps",
        "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1",
    )
    .await;
    assert_eq!(code, 200);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["kind"], "PartialObjectMetadataList");
    assert_eq!(v["apiVersion"], "meta.k8s.io/v1");
    assert!(!String::from_utf8_lossy(&body).contains("payload"));

    let mut events = cms
        .watch_metadata(&WatchParams::default(), "0")
        .await
        .expect("watch_metadata")
        .boxed();
    match events.next().await {
        Some(Ok(WatchEvent::Added(m))) => {
            assert_eq!(m.metadata.name.as_deref(), Some("meta"));
            assert_eq!(
                m.types.map(|t| t.kind),
                Some("PartialObjectMetadata".to_string())
            );
        }
        other => panic!("unexpected first event: {other:?}"),
    }
}

async fn raw_accept(t: &TestServer, path: &str, accept: &str) -> (u16, Vec<u8>) {
    let req = http::Request::builder()
        .uri(path)
        .header("Accept", accept)
        .body(kube::client::Body::empty())
        .unwrap();
    let resp = t.client.send(req).await.expect("send");
    let code = resp.status().as_u16();
    (
        code,
        resp.into_body()
            .collect_bytes()
            .await
            .expect("body")
            .to_vec(),
    )
}
