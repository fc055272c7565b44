//! EndpointSlice and Endpoints controllers against a real API server, the scheduler and fake
//! nodes (which give pods an IP and mark them Running + Ready).

use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchParams};
use kube::core::WatchEvent;
use serde_json::json;

mod common;
use common::TestCluster;

const WAIT: Duration = Duration::from_secs(20);

fn pod(name: &str, app: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": app}},
        "spec": {"terminationGracePeriodSeconds": 30, "containers": [{"name": "c", "image": "nginx",
            "ports": [{"name": "http", "containerPort": 8080}, {"name": "metrics", "containerPort": 9090}]}]}
    }))
    .unwrap()
}

fn service(name: &str, app: &str, publish: bool) -> Service {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"selector": {"app": app}, "publishNotReadyAddresses": publish, "ports": [
            {"name": "web", "port": 80, "targetPort": "http"},
            {"name": "num", "port": 81, "targetPort": 7070}]}
    }))
    .unwrap()
}

async fn slices(api: &Api<EndpointSlice>, svc: &str) -> Vec<EndpointSlice> {
    api.list(&ListParams::default().labels(&format!("kubernetes.io/service-name={svc}")))
        .await
        .unwrap()
        .items
}

/// (ip, ready, serving, terminating) of every endpoint of the service's slices.
async fn endpoints_of(api: &Api<EndpointSlice>, svc: &str) -> Vec<(String, bool, bool, bool)> {
    let mut out = Vec::new();
    for s in slices(api, svc).await {
        for e in s.endpoints {
            let c = e.conditions.unwrap_or_default();
            out.push((
                e.addresses[0].clone(),
                c.ready.unwrap_or(true),
                c.serving.unwrap_or(true),
                c.terminating.unwrap_or(false),
            ));
        }
    }
    out.sort();
    out
}

async fn pod_ip(api: &Api<Pod>, name: &str) -> String {
    api.get(name)
        .await
        .ok()
        .and_then(|p| p.status)
        .and_then(|s| s.pod_ip)
        .unwrap_or_default()
}

#[tokio::test]
async fn slices_and_endpoints_follow_pods() {
    let c = TestCluster::start().await;
    let node = c.add_node("n1").await;
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let svcs: Api<Service> = Api::namespaced(c.client.clone(), "default");
    let sl: Api<EndpointSlice> = Api::namespaced(c.client.clone(), "default");
    let eps: Api<Endpoints> = Api::namespaced(c.client.clone(), "default");
    for i in 0..3 {
        pods.create(&PostParams::default(), &pod(&format!("p{i}"), "web"))
            .await
            .unwrap();
    }
    let svc = svcs
        .create(&PostParams::default(), &service("web", "web", false))
        .await
        .unwrap();
    c.wait_for("3 ready endpoints", WAIT, || async {
        let e = endpoints_of(&sl, "web").await;
        e.len() == 3 && e.iter().all(|e| e.1 && e.2 && !e.3)
    })
    .await;
    let list = slices(&sl, "web").await;
    assert_eq!(list.len(), 1);
    let s = &list[0];
    assert!(s.metadata.name.as_deref().unwrap().starts_with("web-"));
    assert_eq!(s.address_type, "IPv4");
    let labels = s.metadata.labels.clone().unwrap();
    assert_eq!(
        labels["endpointslice.kubernetes.io/managed-by"],
        "endpointslice-controller.k8s.io"
    );
    let owner = &s.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(owner.kind, "Service");
    assert_eq!(Some(&owner.uid), svc.metadata.uid.as_ref());
    assert_eq!(owner.controller, Some(true));
    assert_eq!(owner.block_owner_deletion, Some(true));
    let mut ports: Vec<(String, i32, String)> = s
        .ports
        .clone()
        .unwrap()
        .into_iter()
        .map(|p| (p.name.unwrap(), p.port.unwrap(), p.protocol.unwrap()))
        .collect();
    ports.sort();
    assert_eq!(
        ports,
        vec![
            ("num".into(), 7070, "TCP".into()),
            ("web".into(), 8080, "TCP".into())
        ]
    );
    let e0 = &s.endpoints[0];
    assert_eq!(e0.node_name.as_deref(), Some("n1"));
    let tr = e0.target_ref.as_ref().unwrap();
    assert_eq!(tr.kind.as_deref(), Some("Pod"));
    assert!(tr.uid.is_some());

    // Legacy Endpoints mirror it.
    c.wait_for("Endpoints with 3 addresses", WAIT, || async {
        eps.get("web")
            .await
            .ok()
            .and_then(|e| e.subsets)
            .is_some_and(|s| s.len() == 1 && s[0].addresses.as_ref().map_or(0, Vec::len) == 3)
    })
    .await;
    let ep = eps.get("web").await.unwrap();
    assert_eq!(
        ep.metadata.labels.unwrap()["endpointslice.kubernetes.io/skip-mirror"],
        "true"
    );

    // A not-ready pod: in the slice as ready=false, in notReadyAddresses.
    node.set_ready_delay(Duration::from_secs(3600));
    pods.create(&PostParams::default(), &pod("slow", "web"))
        .await
        .unwrap();
    c.wait_for("slow pod has an IP", WAIT, || async {
        !pod_ip(&pods, "slow").await.is_empty()
    })
    .await;
    let slow_ip = pod_ip(&pods, "slow").await;
    c.wait_for("not-ready endpoint", WAIT, || async {
        endpoints_of(&sl, "web")
            .await
            .contains(&(slow_ip.clone(), false, false, false))
    })
    .await;
    c.wait_for("notReadyAddresses", WAIT, || async {
        eps.get("web")
            .await
            .ok()
            .and_then(|e| e.subsets)
            .is_some_and(|s| {
                s[0].not_ready_addresses
                    .iter()
                    .flatten()
                    .any(|a| a.ip == slow_ip)
            })
    })
    .await;

    // Selector change: nothing matches, the slice empties (placeholder stays).
    svcs.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"selector": {"app": "none"}}})),
    )
    .await
    .unwrap();
    c.wait_for("empty slice", WAIT, || async {
        let l = slices(&sl, "web").await;
        l.len() == 1 && l[0].endpoints.is_empty()
    })
    .await;
    svcs.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"selector": {"app": "web"}}})),
    )
    .await
    .unwrap();
    c.wait_for("4 endpoints again", WAIT, || async {
        endpoints_of(&sl, "web").await.len() == 4
    })
    .await;

    // Deleting the service removes its slices (GC) and Endpoints.
    svcs.delete("web", &DeleteParams::default()).await.unwrap();
    c.wait_for("slices and endpoints gone", WAIT, || async {
        slices(&sl, "web").await.is_empty() && eps.get("web").await.is_err()
    })
    .await;
}

#[tokio::test]
async fn publish_not_ready_addresses() {
    let c = TestCluster::start().await;
    let node = c.add_node("n1").await;
    node.set_ready_delay(Duration::from_secs(3600));
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let svcs: Api<Service> = Api::namespaced(c.client.clone(), "default");
    let sl: Api<EndpointSlice> = Api::namespaced(c.client.clone(), "default");
    let eps: Api<Endpoints> = Api::namespaced(c.client.clone(), "default");
    pods.create(&PostParams::default(), &pod("p", "db"))
        .await
        .unwrap();
    svcs.create(&PostParams::default(), &service("db", "db", true))
        .await
        .unwrap();
    c.wait_for("published not-ready endpoint", WAIT, || async {
        let e = endpoints_of(&sl, "db").await;
        e.len() == 1 && e[0].1 && !e[0].2
    })
    .await;
    c.wait_for("address published", WAIT, || async {
        eps.get("db")
            .await
            .ok()
            .and_then(|e| e.subsets)
            .is_some_and(|s| {
                s[0].addresses.as_ref().map_or(0, Vec::len) == 1
                    && s[0].not_ready_addresses.is_none()
            })
    })
    .await;
}

#[tokio::test]
async fn terminating_pod_leaves_quickly() {
    let c = TestCluster::start().await;
    let _node = c.add_node("n1").await;
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let svcs: Api<Service> = Api::namespaced(c.client.clone(), "default");
    let sl: Api<EndpointSlice> = Api::namespaced(c.client.clone(), "default");
    for i in 0..2 {
        let mut p = pod(&format!("t{i}"), "api");
        // A finalizer keeps the pod terminating after the fake kubelet "stops" it.
        p.metadata.finalizers = Some(vec!["skiff.test/hold".into()]);
        pods.create(&PostParams::default(), &p).await.unwrap();
    }
    svcs.create(&PostParams::default(), &service("api", "api", false))
        .await
        .unwrap();
    c.wait_for("2 ready endpoints", WAIT, || async {
        let e = endpoints_of(&sl, "api").await;
        e.len() == 2 && e.iter().all(|e| e.1)
    })
    .await;
    let ip = pod_ip(&pods, "t0").await;
    let rv = sl
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut watch = sl
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    let started = Instant::now();
    pods.delete("t0", &DeleteParams::default()).await.unwrap();
    let deleted_at = Instant::now();
    let mut latency = None;
    while let Ok(Some(ev)) = tokio::time::timeout(WAIT, watch.next()).await {
        if let Ok(WatchEvent::Modified(s)) = ev {
            let terminating = s.endpoints.iter().any(|e| {
                e.addresses[0] == ip
                    && e.conditions
                        .as_ref()
                        .is_some_and(|c| c.terminating == Some(true) && c.ready == Some(false))
            });
            if terminating {
                latency = Some(started.elapsed());
                break;
            }
        }
    }
    let latency = latency.expect("slice never marked the pod terminating");
    println!(
        "endpoint update latency: {:?} from the delete request ({:?} after its response)",
        latency,
        latency.saturating_sub(deleted_at - started)
    );
    assert!(latency < Duration::from_secs(1), "too slow: {latency:?}");
    // Serving follows readiness while terminating (the pod is still Ready).
    let e = endpoints_of(&sl, "api").await;
    assert!(e.contains(&(ip.clone(), false, true, true)), "{e:?}");
    // Releasing the pod removes the endpoint.
    pods.patch(
        "t0",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    c.wait_for("endpoint removed", WAIT, || async {
        let e = endpoints_of(&sl, "api").await;
        e.len() == 1 && e[0].0 != ip
    })
    .await;
    pods.patch(
        "t1",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
}
